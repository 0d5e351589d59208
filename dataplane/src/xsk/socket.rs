//! The AF_XDP socket: creation, UMEM registration, ring mappings, bind, and the four typed
//! rings with their batch APIs.

use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};

use super::ring::{ConsumerRing, ProducerRing, RawRing, ReadBatch, WriteBatch};
use super::umem::{Frame, Geometry, Umem};
use super::{cvt, XskError};

/// How the socket moves frames between the driver and the UMEM.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BindMode {
    /// `XDP_COPY`: the kernel copies frames (works on every driver, veth included).
    Copy,
    /// `XDP_ZEROCOPY`: the driver DMAs into the UMEM (NIC support needed; veth refuses it
    /// with `EOPNOTSUPP`).
    ZeroCopy,
}

/// Ring sizes and bind mode of one socket. Every size must be a power of two.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// Fill ring entries (chunks lent to the kernel for receiving).
    pub fill_size: u32,
    /// Completion ring entries (chunks the kernel has finished sending).
    pub completion_size: u32,
    /// RX ring entries.
    pub rx_size: u32,
    /// TX ring entries.
    pub tx_size: u32,
    /// Copy or zero-copy.
    pub mode: BindMode,
}

impl Default for SocketConfig {
    /// 2048 entries per ring, copy mode: with the default 4096-chunk UMEM, the fill ring can
    /// hold half the chunks and the TX ring the other half.
    fn default() -> Self {
        SocketConfig {
            fill_size: 2048,
            completion_size: 2048,
            rx_size: 2048,
            tx_size: 2048,
            mode: BindMode::Copy,
        }
    }
}

impl SocketConfig {
    fn check(&self) -> Result<(), XskError> {
        for (n, what) in [
            (self.fill_size, "fill ring size must be a power of two"),
            (
                self.completion_size,
                "completion ring size must be a power of two",
            ),
            (self.rx_size, "RX ring size must be a power of two"),
            (self.tx_size, "TX ring size must be a power of two"),
        ] {
            if !n.is_power_of_two() {
                return Err(XskError::Config(what));
            }
        }
        Ok(())
    }
}

/// The kernel's per-socket counters (`XDP_STATISTICS`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Frames the socket dropped (in copy mode this includes the frames also counted in
    /// `rx_fill_ring_empty_descs`).
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Frames dropped because the fill ring had no chunk for them.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was found empty on a kick.
    pub tx_ring_empty_descs: u64,
}

/// The fill ring: lends chunks to the kernel for receiving.
#[derive(Debug)]
pub struct FillRing {
    ring: ProducerRing<u64>,
    geo: Geometry,
    _map: MmapRaw,
}

impl FillRing {
    /// Reserves up to `n` slots.
    pub fn reserve(&mut self, n: u32) -> FillBatch<'_> {
        FillBatch {
            batch: self.ring.reserve(n),
            geo: self.geo,
        }
    }

    /// Moves up to `max` frames from the end of `frames` into the ring (one batch); returns how
    /// many moved. Frames of another UMEM are left in `frames`.
    pub fn fill_from(&mut self, frames: &mut Vec<Frame>, max: u32) -> u32 {
        let mut b = self.reserve(max.min(u32::try_from(frames.len()).unwrap_or(u32::MAX)));
        let mut n = 0;
        while b.remaining() > 0 {
            let Some(f) = frames.pop() else { break };
            if let Err(f) = b.push(f) {
                frames.push(f);
                break;
            }
            n += 1;
        }
        b.commit();
        n
    }

    /// Chunks in the ring not yet taken by the kernel.
    pub fn pending(&self) -> u32 {
        self.ring.pending()
    }

    /// True if the driver wants a `poll()`/`recvfrom()` to notice new fill entries
    /// (`XDP_USE_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }

    /// Capacity.
    pub fn size(&self) -> u32 {
        self.ring.size()
    }
}

/// Reserved fill-ring slots; pushed chunks are published on [`FillBatch::commit`] or drop.
#[derive(Debug)]
pub struct FillBatch<'r> {
    batch: WriteBatch<'r, u64>,
    geo: Geometry,
}

impl FillBatch<'_> {
    /// Slots left.
    pub fn remaining(&self) -> u32 {
        self.batch.remaining()
    }

    /// Lends `f`'s chunk to the kernel. Gives `f` back if the batch is full or `f` belongs to
    /// another UMEM.
    pub fn push(&mut self, f: Frame) -> Result<(), Frame> {
        if !self.geo.owns(&f) || !self.batch.push(f.chunk_addr()) {
            return Err(f);
        }
        Ok(())
    }

    /// Publishes the pushed chunks.
    pub fn commit(self) {
        self.batch.commit();
    }
}

/// The completion ring: chunks the kernel has finished transmitting.
#[derive(Debug)]
pub struct CompletionRing {
    ring: ConsumerRing<u64>,
    geo: Geometry,
    _map: MmapRaw,
}

impl CompletionRing {
    /// Up to `n` completed chunks; the ones iterated are released on
    /// [`CompletionBatch::release`] or drop.
    pub fn peek(&mut self, n: u32) -> CompletionBatch<'_> {
        CompletionBatch {
            batch: self.ring.peek(n),
            geo: self.geo,
        }
    }

    /// Moves up to `max` completed chunks onto `frames`; returns how many.
    pub fn drain_into(&mut self, frames: &mut Vec<Frame>, max: u32) -> u32 {
        let before = frames.len();
        let mut b = self.peek(max);
        frames.extend(b.by_ref());
        b.release();
        // At most `max` (a u32) were added.
        (frames.len() - before) as u32
    }

    /// Capacity.
    pub fn size(&self) -> u32 {
        self.ring.size()
    }
}

/// Peeked completion entries, yielding the chunks as [`Frame`]s (packet extent cleared).
#[derive(Debug)]
pub struct CompletionBatch<'r> {
    batch: ReadBatch<'r, u64>,
    geo: Geometry,
}

impl CompletionBatch<'_> {
    /// Entries not iterated yet.
    pub fn remaining(&self) -> u32 {
        self.batch.remaining()
    }

    /// Releases the iterated entries to the kernel.
    pub fn release(self) {
        self.batch.release();
    }
}

impl Iterator for CompletionBatch<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        // An address outside the UMEM cannot come from a correct kernel; skip it rather than
        // mint a token for memory we do not own.
        self.batch
            .by_ref()
            .find_map(|addr| self.geo.frame_for(addr, 0))
            .map(|mut f| {
                f.set_packet(0, 0);
                f
            })
    }
}

/// The RX ring: frames the kernel received for us.
#[derive(Debug)]
pub struct RxRing {
    ring: ConsumerRing<libc::xdp_desc>,
    geo: Geometry,
    _map: MmapRaw,
}

impl RxRing {
    /// Up to `n` received frames; the ones iterated are released on [`RxBatch::release`] or
    /// drop (their chunks belong to the caller from then on, through the [`Frame`]s).
    pub fn peek(&mut self, n: u32) -> RxBatch<'_> {
        RxBatch {
            batch: self.ring.peek(n),
            geo: self.geo,
        }
    }

    /// Capacity.
    pub fn size(&self) -> u32 {
        self.ring.size()
    }
}

/// Peeked RX descriptors, yielding each received frame as a [`Frame`] whose packet extent is
/// the received bytes.
#[derive(Debug)]
pub struct RxBatch<'r> {
    batch: ReadBatch<'r, libc::xdp_desc>,
    geo: Geometry,
}

impl RxBatch<'_> {
    /// Descriptors not iterated yet.
    pub fn remaining(&self) -> u32 {
        self.batch.remaining()
    }

    /// Releases the iterated descriptors to the kernel.
    pub fn release(self) {
        self.batch.release();
    }
}

impl Iterator for RxBatch<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        // Descriptors the kernel could not have produced (outside the UMEM, or running past
        // the chunk) are skipped.
        self.batch.by_ref().find_map(|d| {
            self.geo
                .frame_for(d.addr, d.len)
                .filter(|f| self.geo.owns(f))
        })
    }
}

/// The TX ring: frames for the kernel to send.
#[derive(Debug)]
pub struct TxRing {
    ring: ProducerRing<libc::xdp_desc>,
    geo: Geometry,
    fd: RawFd,
    _map: MmapRaw,
}

impl TxRing {
    /// Reserves up to `n` slots.
    pub fn reserve(&mut self, n: u32) -> TxBatch<'_> {
        TxBatch {
            batch: self.ring.reserve(n),
            geo: self.geo,
        }
    }

    /// Descriptors submitted but not yet taken by the kernel.
    pub fn pending(&self) -> u32 {
        self.ring.pending()
    }

    /// Capacity.
    pub fn size(&self) -> u32 {
        self.ring.size()
    }

    /// Wakes the kernel to send what is on the ring, only if something is pending and the
    /// kernel asked for a wakeup (`XDP_RING_NEED_WAKEUP`; always the case in copy mode).
    ///
    /// In copy mode one `sendto` sends a bounded batch (32 frames by default) and reports
    /// `EAGAIN` when more remain, so this repeats while descriptors remain and the kernel
    /// keeps taking them, up to `pending / 16 + 2` calls. `EAGAIN`, `EBUSY`, `ENOBUFS` and
    /// `ENETDOWN` are transient (the frames stay on the ring for the next kick). Returns the
    /// number of `sendto` calls made.
    pub fn kick(&mut self) -> Result<u32, XskError> {
        let mut pending = self.ring.pending();
        let budget = pending / 16 + 2;
        let mut calls = 0;
        while pending > 0 && calls < budget && self.ring.needs_wakeup() {
            calls += 1;
            // SAFETY: `fd` is the socket's descriptor, open for as long as this ring exists
            // (both belong to one XskSocket, which closes the fd after unmapping the rings); a
            // null buffer of length 0 is what AF_XDP expects for a TX wakeup and is never read.
            let r = unsafe {
                libc::sendto(
                    self.fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if let Err(e) = cvt(r) {
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => {}
                    _ => {
                        return Err(XskError::Syscall {
                            op: "sendto (AF_XDP TX kick)",
                            source: e,
                        })
                    }
                }
            }
            let now = self.ring.pending();
            if now >= pending {
                // The kernel took nothing (device busy): leave the rest for the next kick.
                break;
            }
            pending = now;
        }
        Ok(calls)
    }
}

/// Reserved TX slots; pushed frames are published on [`TxBatch::commit`] or drop.
#[derive(Debug)]
pub struct TxBatch<'r> {
    batch: WriteBatch<'r, libc::xdp_desc>,
    geo: Geometry,
}

impl TxBatch<'_> {
    /// Slots left.
    pub fn remaining(&self) -> u32 {
        self.batch.remaining()
    }

    /// Queues `f`'s packet (its `offset`/`len`, see [`Frame::set_packet`]) for sending. Gives
    /// `f` back if the batch is full, the frame belongs to another UMEM, its packet does not
    /// fit in its chunk, or it is empty.
    pub fn push(&mut self, f: Frame) -> Result<(), Frame> {
        if f.is_empty() || !self.geo.owns(&f) {
            return Err(f);
        }
        let d = libc::xdp_desc {
            addr: f.packet_addr(),
            len: f.len(),
            options: 0,
        };
        if !self.batch.push(d) {
            return Err(f);
        }
        Ok(())
    }

    /// Publishes the pushed descriptors (call [`TxRing::kick`] afterwards).
    pub fn commit(self) {
        self.batch.commit();
    }
}

/// Borrowed access to all parts of a socket at once, for a worker's loop.
#[derive(Debug)]
pub struct Parts<'a> {
    /// The UMEM (chunk access).
    pub umem: &'a mut Umem,
    /// The fill ring.
    pub fill: &'a mut FillRing,
    /// The completion ring.
    pub completion: &'a mut CompletionRing,
    /// The RX ring.
    pub rx: &'a mut RxRing,
    /// The TX ring.
    pub tx: &'a mut TxRing,
    /// The socket.
    pub fd: BorrowedFd<'a>,
}

/// An AF_XDP socket bound to one (interface, queue), with its UMEM and its four rings.
///
/// Dropping it unmaps the rings, closes the socket (which removes it from any XSKMAP and
/// unregisters the UMEM) and unmaps the UMEM, in that order.
#[derive(Debug)]
pub struct XskSocket {
    // Field order is drop order: ring mappings, then the socket, then the UMEM.
    fill: FillRing,
    completion: CompletionRing,
    rx: RxRing,
    tx: TxRing,
    fd: OwnedFd,
    umem: Umem,
    ifindex: u32,
    queue: u32,
}

impl XskSocket {
    /// Creates an AF_XDP socket, registers `umem` with it, sets up and maps the four rings,
    /// and binds it to queue `queue` of interface `ifindex` with `XDP_USE_NEED_WAKEUP`.
    ///
    /// Needs `CAP_NET_RAW`; the UMEM is charged to `RLIMIT_MEMLOCK` unless the process has
    /// `CAP_IPC_LOCK` ([`XskError::MemLock`]). The fill ring starts empty: lend it chunks with
    /// [`FillRing::fill_from`] before expecting frames.
    pub fn new(
        umem: Umem,
        ifindex: u32,
        queue: u32,
        cfg: &SocketConfig,
    ) -> Result<XskSocket, XskError> {
        cfg.check()?;
        // SAFETY: plain socket(2) call with constant arguments; no pointers involved.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        let raw = cvt(raw).map_err(|source| XskError::Syscall {
            op: "socket(AF_XDP) (needs CAP_NET_RAW)",
            source,
        })?;
        // SAFETY: `raw` is a descriptor socket(2) just returned and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let (addr, len) = umem.region();
        let reg = libc::xdp_umem_reg {
            addr,
            len,
            chunk_size: umem.frame_size(),
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOBUFS) {
                XskError::MemLock { bytes: len }
            } else {
                XskError::Syscall {
                    op: "setsockopt(XDP_UMEM_REG)",
                    source,
                }
            }
        })?;
        for (opt, size, op) in [
            (
                libc::XDP_UMEM_FILL_RING,
                cfg.fill_size,
                "setsockopt(XDP_UMEM_FILL_RING)",
            ),
            (
                libc::XDP_UMEM_COMPLETION_RING,
                cfg.completion_size,
                "setsockopt(XDP_UMEM_COMPLETION_RING)",
            ),
            (libc::XDP_RX_RING, cfg.rx_size, "setsockopt(XDP_RX_RING)"),
            (libc::XDP_TX_RING, cfg.tx_size, "setsockopt(XDP_TX_RING)"),
        ] {
            setsockopt(&fd, opt, &size).map_err(|source| XskError::Syscall { op, source })?;
        }
        let off = mmap_offsets(&fd)?;
        let geo = umem.geometry();

        let (map, raw) =
            map_ring::<u64>(&fd, libc::XDP_UMEM_PGOFF_FILL_RING, &off.fr, cfg.fill_size)?;
        let fill = FillRing {
            ring: ProducerRing::new(raw),
            geo,
            _map: map,
        };
        let (map, raw) = map_ring::<u64>(
            &fd,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            &off.cr,
            cfg.completion_size,
        )?;
        let completion = CompletionRing {
            ring: ConsumerRing::new(raw),
            geo,
            _map: map,
        };
        let (map, raw) =
            map_ring::<libc::xdp_desc>(&fd, libc::XDP_PGOFF_RX_RING as u64, &off.rx, cfg.rx_size)?;
        let rx = RxRing {
            ring: ConsumerRing::new(raw),
            geo,
            _map: map,
        };
        let (map, raw) =
            map_ring::<libc::xdp_desc>(&fd, libc::XDP_PGOFF_TX_RING as u64, &off.tx, cfg.tx_size)?;
        let tx = TxRing {
            ring: ProducerRing::new(raw),
            geo,
            fd: fd.as_raw_fd(),
            _map: map,
        };

        let mode = match cfg.mode {
            BindMode::Copy => libc::XDP_COPY,
            BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
        };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: mode | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a fully initialised sockaddr_xdp that outlives the call, and the
        // length passed is its size; `fd` is open.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        cvt(r).map_err(|source| XskError::Bind {
            ifindex,
            queue,
            source,
        })?;
        Ok(XskSocket {
            fill,
            completion,
            rx,
            tx,
            fd,
            umem,
            ifindex,
            queue,
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue the socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// All parts at once (UMEM and rings), for a worker's loop.
    pub fn parts(&mut self) -> Parts<'_> {
        Parts {
            umem: &mut self.umem,
            fill: &mut self.fill,
            completion: &mut self.completion,
            rx: &mut self.rx,
            tx: &mut self.tx,
            fd: self.fd.as_fd(),
        }
    }

    /// The UMEM.
    pub fn umem_mut(&mut self) -> &mut Umem {
        &mut self.umem
    }

    /// Waits up to `timeout` for received frames (`poll(POLLIN)`; also wakes the driver when
    /// the fill ring asks for it). True if the RX ring has frames; false on timeout or
    /// interruption.
    pub fn poll(&self, timeout: Duration) -> Result<bool, XskError> {
        poll_in(self.fd.as_fd(), timeout)
    }

    /// The kernel's counters for this socket.
    pub fn statistics(&self) -> Result<Statistics, XskError> {
        let mut s = MaybeUninit::<libc::xdp_statistics>::zeroed();
        let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `s` is writable for `len` bytes and `len` is a valid in/out length; the
        // kernel writes at most `len` bytes and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                s.as_mut_ptr().cast(),
                &mut len,
            )
        };
        cvt(r).map_err(|source| XskError::Syscall {
            op: "getsockopt(XDP_STATISTICS)",
            source,
        })?;
        // SAFETY: zero-initialised and then (partly) written by the kernel: every byte is
        // initialised, and all-zero is a valid xdp_statistics (plain integers).
        let s = unsafe { s.assume_init() };
        Ok(Statistics {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}

impl Parts<'_> {
    /// Same as [`XskSocket::poll`].
    pub fn poll(&self, timeout: Duration) -> Result<bool, XskError> {
        poll_in(self.fd, timeout)
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn poll_in(fd: BorrowedFd<'_>, timeout: Duration) -> Result<bool, XskError> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `p` is one valid pollfd that outlives the call, and nfds is 1.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    match cvt(r) {
        Ok(n) => Ok(n > 0 && p.revents & libc::POLLIN != 0),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
        Err(source) => Err(XskError::Syscall {
            op: "poll(AF_XDP socket)",
            source,
        }),
    }
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &T) -> std::io::Result<()> {
    // SAFETY: `v` points to a live, initialised T for the duration of the call and the length
    // passed is exactly its size; `fd` is open. Every T used here is a plain C struct or u32
    // that the option expects.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(r).map(|_| ())
}

fn mmap_offsets(fd: &OwnedFd) -> Result<libc::xdp_mmap_offsets, XskError> {
    let mut off = MaybeUninit::<libc::xdp_mmap_offsets>::zeroed();
    let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `off` is writable for `len` bytes and `len` is a valid in/out length.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            off.as_mut_ptr().cast(),
            &mut len,
        )
    };
    cvt(r).map_err(|source| XskError::Syscall {
        op: "getsockopt(XDP_MMAP_OFFSETS)",
        source,
    })?;
    if len as usize != size_of::<libc::xdp_mmap_offsets>() {
        // Kernels before 5.4 answer with the layout without `flags`; we need the flags word.
        return Err(XskError::Config(
            "kernel too old: XDP_MMAP_OFFSETS has no ring flags (need Linux 5.4+)",
        ));
    }
    // SAFETY: zero-initialised, then fully written by the kernel (len matched); all fields
    // are plain integers.
    Ok(unsafe { off.assume_init() })
}

/// Maps one ring of `size` entries of `T` at page offset `pgoff` of the socket.
fn map_ring<T: Copy>(
    fd: &OwnedFd,
    pgoff: u64,
    off: &libc::xdp_ring_offset,
    size: u32,
) -> Result<(MmapRaw, RawRing<T>), XskError> {
    let bad = XskError::Config("kernel ring layout out of range or misaligned");
    let desc_bytes = (size as usize)
        .checked_mul(size_of::<T>())
        .ok_or(XskError::Config("ring too large"))?;
    let len = usize::try_from(off.desc)
        .ok()
        .and_then(|d| d.checked_add(desc_bytes))
        .ok_or(XskError::Config("ring too large"))?;
    let map = MmapOptions::new()
        .offset(pgoff)
        .len(len)
        .populate()
        .map_raw(fd.as_raw_fd())
        .map_err(|source| XskError::Syscall {
            op: "mmap AF_XDP ring",
            source,
        })?;
    let base = map.as_mut_ptr();
    let word = |o: u64| -> Option<NonNull<u32>> {
        let o = usize::try_from(o).ok()?;
        if o.checked_add(4)? > len || !o.is_multiple_of(4) {
            return None;
        }
        // `o + 4 <= len`: inside the mapping (wrapping_add needs no unsafe; the result is in
        // bounds, and the mapping base is page aligned, so `o % 4 == 0` means aligned).
        NonNull::new(base.wrapping_add(o).cast())
    };
    let (Some(prod), Some(cons), Some(flags)) =
        (word(off.producer), word(off.consumer), word(off.flags))
    else {
        return Err(bad);
    };
    // off.desc + desc_bytes == len, checked above; the alignment is checked here.
    let desc_off = off.desc as usize;
    if !desc_off.is_multiple_of(std::mem::align_of::<T>()) {
        return Err(bad);
    }
    let Some(desc) = NonNull::new(base.wrapping_add(desc_off).cast::<T>()) else {
        return Err(bad);
    };
    // SAFETY: the words and the `size` descriptors lie inside the mapping (checked against
    // `len` above), are aligned (page-aligned base plus checked offsets), and the mapping
    // lives as long as the ring: both are stored in the same typed ring struct, mapping
    // dropped after the ring. The kernel is the only other party and follows the SPSC
    // protocol; `size` was checked to be a power of two.
    let raw = unsafe { RawRing::new(prod, cons, flags, desc, size) };
    Ok((map, raw))
}
