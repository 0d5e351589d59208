//! The UMEM: one anonymous memory region cut into equal chunks, shared with the kernel, and the
//! [`Frame`] tokens that say which side owns which chunk.
//!
//! User space may touch a chunk only while it holds its [`Frame`]. Frames are created once, by
//! [`Umem::take_frames`], and afterwards only move: into the kernel through the fill and TX
//! rings (which consume the token) and back out of the RX and completion rings (which create a
//! token for the chunk the kernel returned). Chunk access goes through `&self`/`&mut self` of
//! the [`Umem`], so at most one mutable view exists at a time, and never of a chunk the kernel
//! may be writing.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::XskError;

/// UMEM layout.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UmemConfig {
    /// Chunk size in bytes: 2048 or 4096 (aligned chunk mode needs a power of two, and a chunk
    /// must hold `XDP_PACKET_HEADROOM` (256) plus a full Ethernet frame).
    pub frame_size: u32,
    /// Number of chunks.
    pub frame_count: u32,
}

impl Default for UmemConfig {
    /// 4096 chunks of 2048 bytes (8 MiB): half for the fill ring, half for replies in flight.
    fn default() -> Self {
        UmemConfig {
            frame_size: 2048,
            frame_count: 4096,
        }
    }
}

impl UmemConfig {
    /// Total size in bytes, if it fits in a `usize`.
    pub fn len(&self) -> Option<usize> {
        usize::try_from(u64::from(self.frame_size) * u64::from(self.frame_count)).ok()
    }

    /// True if there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.frame_count == 0
    }

    fn check(&self) -> Result<usize, XskError> {
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(XskError::Config("UMEM frame size must be 2048 or 4096"));
        }
        if self.frame_count == 0 {
            return Err(XskError::Config("UMEM needs at least one frame"));
        }
        self.len()
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or(XskError::Config("UMEM size does not fit in memory"))
    }
}

static NEXT_UMEM_ID: AtomicU32 = AtomicU32::new(1);

/// Ownership of one UMEM chunk, plus the extent of the packet in it.
///
/// Not `Clone`: holding it is what allows touching the chunk. `offset` and `len` describe the
/// packet inside the chunk: set by the RX ring on receive, by [`Frame::set_packet`] before
/// transmit.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    chunk: u64,
    umem: u32,
    offset: u32,
    len: u32,
}

impl Frame {
    /// UMEM address of the chunk's first byte.
    pub fn chunk_addr(&self) -> u64 {
        self.chunk
    }

    /// Offset of the packet inside the chunk.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Packet length.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True if the packet is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the packet extent (for transmit); checked against the chunk size when the frame is
    /// given to the TX ring or read through the [`Umem`].
    pub fn set_packet(&mut self, offset: u32, len: u32) {
        self.offset = offset;
        self.len = len;
    }

    /// The descriptor address of the packet (chunk address plus offset).
    pub(crate) fn packet_addr(&self) -> u64 {
        self.chunk + u64::from(self.offset)
    }
}

/// What the rings know of their UMEM: its id, size and chunk size.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Geometry {
    id: u32,
    len: u64,
    frame_size: u32,
}

impl Geometry {
    /// A token for the chunk containing kernel-returned address `addr` (RX or completion
    /// descriptor), or `None` if the address is outside the region.
    pub(crate) fn frame_for(&self, addr: u64, len: u32) -> Option<Frame> {
        if addr >= self.len {
            return None;
        }
        let size = u64::from(self.frame_size);
        let chunk = addr - addr % size;
        Some(Frame {
            chunk,
            umem: self.id,
            // addr - chunk < frame_size <= 4096.
            offset: (addr - chunk) as u32,
            len,
        })
    }

    /// True if `f` may be handed to the kernel: ours, and its packet fits in its chunk.
    pub(crate) fn owns(&self, f: &Frame) -> bool {
        f.umem == self.id
            && f.chunk < self.len
            && f.offset
                .checked_add(f.len)
                .is_some_and(|e| e <= self.frame_size)
    }
}

/// The UMEM region: `frame_count` chunks of `frame_size` bytes on an anonymous mapping.
#[derive(Debug)]
pub struct Umem {
    area: MmapRaw,
    base: NonNull<u8>,
    len: usize,
    frame_size: u32,
    frame_count: u32,
    id: u32,
    frames_taken: bool,
}

// SAFETY: the Umem owns its mapping (`area`; `base` points into it); nothing is tied to the
// creating thread, and chunk access goes through `&self`/`&mut self`.
unsafe impl Send for Umem {}

impl Umem {
    /// Maps an anonymous region for `cfg` (populated up front). It is registered with the
    /// kernel, and charged to `RLIMIT_MEMLOCK`, when a socket is created over it.
    pub fn new(cfg: &UmemConfig) -> Result<Umem, XskError> {
        let len = cfg.check()?;
        let area: MmapRaw = MmapOptions::new()
            .len(len)
            .populate()
            .map_anon()
            .map_err(|source| XskError::Syscall {
                op: "mmap UMEM",
                source,
            })?
            .into();
        let base = NonNull::new(area.as_mut_ptr())
            .ok_or(XskError::Config("UMEM mapping returned a null pointer"))?;
        Ok(Umem {
            area,
            base,
            len,
            frame_size: cfg.frame_size,
            frame_count: cfg.frame_count,
            id: NEXT_UMEM_ID.fetch_add(1, Ordering::Relaxed),
            frames_taken: false,
        })
    }

    /// Chunk size.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Number of chunks.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Region size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the region is empty (never: a UMEM has at least one chunk).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The token of every chunk, the first time it is called; empty afterwards (tokens are
    /// never duplicated).
    pub fn take_frames(&mut self) -> Vec<Frame> {
        if std::mem::replace(&mut self.frames_taken, true) {
            return Vec::new();
        }
        (0..self.frame_count)
            .map(|i| Frame {
                chunk: u64::from(i) * u64::from(self.frame_size),
                umem: self.id,
                offset: 0,
                len: 0,
            })
            .collect()
    }

    /// The whole chunk of `f`; `None` if `f` is from another UMEM.
    pub fn chunk(&self, f: &Frame) -> Option<&[u8]> {
        let start = self.chunk_start(f)?;
        // SAFETY: `chunk_start` checked that [start, start + frame_size) lies inside the
        // mapping; `f` proves user space owns the chunk, so the kernel does not write it, and
        // `&self` excludes a concurrent `&mut` view through this Umem.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(start), self.frame_size as usize)
        })
    }

    /// The whole chunk of `f`, writable; `None` if `f` is from another UMEM.
    pub fn chunk_mut(&mut self, f: &Frame) -> Option<&mut [u8]> {
        let start = self.chunk_start(f)?;
        // SAFETY: in bounds as in `chunk`; `&mut self` makes this the only view into the
        // region, and `f` proves the kernel does not own (so does not write) the chunk.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), self.frame_size as usize)
        })
    }

    /// The packet bytes of `f` (`offset..offset + len` of its chunk); `None` if `f` is from
    /// another UMEM or its extent does not fit in the chunk.
    pub fn packet(&self, f: &Frame) -> Option<&[u8]> {
        let end = f.offset.checked_add(f.len)? as usize;
        self.chunk(f)?.get(f.offset as usize..end)
    }

    /// The chunk of `src` to read and the chunk of `dst` to write, at once (to build a reply
    /// to a received frame in another chunk). `None` if either is from another UMEM or both
    /// name the same chunk.
    pub fn chunk_pair(&mut self, src: &Frame, dst: &Frame) -> Option<(&[u8], &mut [u8])> {
        let s = self.chunk_start(src)?;
        let d = self.chunk_start(dst)?;
        if s == d {
            return None;
        }
        let size = self.frame_size as usize;
        // SAFETY: both ranges are in bounds (`chunk_start`) and disjoint (distinct chunk
        // starts, chunks do not overlap); the frames prove user space owns both chunks, and
        // `&mut self` makes these the only views into the region.
        Some(unsafe {
            (
                std::slice::from_raw_parts(self.base.as_ptr().add(s), size),
                std::slice::from_raw_parts_mut(self.base.as_ptr().add(d), size),
            )
        })
    }

    /// The geometry the rings need to turn addresses into tokens and back.
    pub(crate) fn geometry(&self) -> Geometry {
        Geometry {
            id: self.id,
            len: self.len as u64,
            frame_size: self.frame_size,
        }
    }

    /// Start address and length of the region (for `XDP_UMEM_REG`).
    pub(crate) fn region(&self) -> (u64, u64) {
        (self.area.as_mut_ptr() as u64, self.len as u64)
    }

    fn chunk_start(&self, f: &Frame) -> Option<usize> {
        if f.umem != self.id {
            return None;
        }
        let start = usize::try_from(f.chunk).ok()?;
        (start.checked_add(self.frame_size as usize)? <= self.len
            && start % self.frame_size as usize == 0)
            .then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Umem {
        Umem::new(&UmemConfig {
            frame_size: 2048,
            frame_count: 4,
        })
        .expect("anonymous mapping of 8 KiB")
    }

    #[test]
    fn config_is_checked() {
        for (fs, n) in [(1024, 4), (3000, 4), (2048, 0)] {
            let e = Umem::new(&UmemConfig {
                frame_size: fs,
                frame_count: n,
            })
            .unwrap_err();
            assert!(matches!(e, XskError::Config(_)), "{fs}x{n}: {e}");
        }
    }

    #[test]
    fn frames_are_handed_out_once_and_chunks_are_disjoint() {
        let mut u = small();
        let frames = u.take_frames();
        assert_eq!(frames.len(), 4);
        assert!(u.take_frames().is_empty());
        for (i, f) in frames.iter().enumerate() {
            u.chunk_mut(f).expect("own chunk").fill(i as u8 + 1);
        }
        for (i, f) in frames.iter().enumerate() {
            let c = u.chunk(f).expect("own chunk");
            assert_eq!(c.len(), 2048);
            assert!(c.iter().all(|&b| b == i as u8 + 1));
        }
        let (a, b) = u
            .chunk_pair(&frames[0], &frames[3])
            .expect("distinct chunks");
        b[..4].copy_from_slice(&a[..4]);
        assert_eq!(&u.chunk(&frames[3]).unwrap()[..5], &[1, 1, 1, 1, 4]);
        assert!(u.chunk_pair(&frames[1], &frames[1]).is_none());
    }

    #[test]
    fn foreign_or_out_of_range_frames_are_refused() {
        let mut a = small();
        let mut b = small();
        let fa = a.take_frames();
        let _ = b.take_frames();
        let g = b.geometry();
        assert!(b.chunk(&fa[0]).is_none());
        assert!(!g.owns(&fa[0]));
        assert!(g.frame_for(4 * 2048, 0).is_none());
        let f = g.frame_for(2048 + 256, 300).expect("inside the region");
        assert_eq!((f.chunk_addr(), f.offset(), f.len()), (2048, 256, 300));
        assert_eq!(f.packet_addr(), 2048 + 256);
        assert!(g.owns(&f));
        assert_eq!(b.packet(&f).map(<[u8]>::len), Some(300));
        let mut h = g.frame_for(0, 0).expect("inside");
        h.set_packet(2000, 100);
        assert!(!g.owns(&h));
        assert!(b.packet(&h).is_none());
    }
}
