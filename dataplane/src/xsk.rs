//! AF_XDP: the UMEM, the fill/completion/RX/TX rings and the socket that ties them to one
//! (interface, queue). The only module of the data plane with `unsafe` code.
//!
//! What it gives a worker:
//! - [`Umem`]: an anonymous mapping cut into 2048- or 4096-byte chunks, and [`Frame`] tokens:
//!   holding a `Frame` is what allows touching its chunk (see the `umem` module docs).
//! - [`XskSocket`]: creates the socket, registers the UMEM, maps the rings, binds with
//!   `XDP_USE_NEED_WAKEUP` in copy (or zero-copy) mode. [`XskSocket::parts`] lends the UMEM and
//!   the four rings at once.
//! - Reserve-then-commit batches on every ring: [`FillRing::reserve`] → [`FillBatch::push`] →
//!   commit; [`RxRing::peek`] → iterate [`Frame`]s → release; [`TxRing::reserve`] →
//!   [`TxBatch::push`] → commit, then [`TxRing::kick`] (a `sendto(MSG_DONTWAIT)` only while
//!   descriptors are pending and the kernel asked for a wakeup); [`CompletionRing::peek`] /
//!   [`CompletionRing::drain_into`]. Committing or releasing is one atomic store per batch.
//! - [`XskSocket::poll`] to wait for frames, [`XskSocket::statistics`] for the kernel's drop
//!   counters.
//!
//! Not here: the XSKMAP entry (`tandem_ebpf::Steering::set_xsk` takes the socket's fd), frame
//! parsing and reply headers ([`crate::frame`]), the worker loop, and shared UMEMs
//! (`XDP_SHARED_UMEM`, one fill ring for several sockets on one queue).
//!
//! Unsafe discipline: every `unsafe` block carries a `// SAFETY:` comment naming the invariant
//! it relies on, every `unsafe fn` a `# Safety` section; every libc call that reports failure
//! as -1 goes through `cvt`. The ring index arithmetic (`ring`) only needs pointers to three
//! words and a descriptor array, so its unit tests run it over plain heap memory (and under
//! miri).
//!
//! Sizing and the fill ring: the kernel can only receive into chunks lent through the fill
//! ring; when it runs dry, frames for this socket are dropped by the kernel and counted in
//! [`Statistics::rx_fill_ring_empty_descs`] and [`Statistics::rx_dropped`] (the XDP program
//! still counts them as redirected; the `xsk_veth` test measures this).
//! Chunks come back through the RX ring (request frames) and the completion ring (sent
//! replies), so the UMEM should hold the fill ring's share plus the replies in flight on TX:
//! the defaults are 4096 chunks of 2048 bytes and 2048-entry rings.

use std::ffi::CString;
use std::io;

mod ring;
mod socket;
mod umem;

pub use socket::{
    BindMode, CompletionBatch, CompletionRing, FillBatch, FillRing, Parts, RxBatch, RxRing,
    SocketConfig, Statistics, TxBatch, TxRing, XskSocket,
};
pub use umem::{Frame, Umem, UmemConfig};

/// Headroom the kernel leaves in front of a received frame in its chunk (copy mode).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Errors of the AF_XDP layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XskError {
    /// A size or mode that cannot work.
    #[error("AF_XDP configuration: {0}")]
    Config(&'static str),
    /// Registering the UMEM failed with `ENOBUFS`: it is charged to the locked-memory limit.
    #[error(
        "registering a {bytes}-byte UMEM failed (ENOBUFS): it exceeds RLIMIT_MEMLOCK; raise the \
         limit (LimitMEMLOCK= in the systemd unit, ulimit -l) or grant CAP_IPC_LOCK"
    )]
    MemLock {
        /// UMEM size.
        bytes: u64,
    },
    /// Binding to the interface queue failed (`EINVAL`: no such queue; `EBUSY`: another socket
    /// has it; `EOPNOTSUPP`: zero-copy unsupported by the driver).
    #[error("binding the AF_XDP socket to ifindex {ifindex} queue {queue}: {source}")]
    Bind {
        /// Interface index.
        ifindex: u32,
        /// Queue.
        queue: u32,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Any other system call failure.
    #[error("{op}: {source}")]
    Syscall {
        /// The call.
        op: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; if_nametoindex only
    // reads it.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    // if_nametoindex is the one call here that reports failure as 0 rather than -1.
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// A libc return value that signals failure as -1 (with `errno` set).
pub(crate) trait SysResult: Copy + PartialEq {
    /// The failure value.
    const FAILED: Self;
}

impl SysResult for libc::c_int {
    const FAILED: Self = -1;
}

impl SysResult for libc::ssize_t {
    const FAILED: Self = -1;
}

/// Turns a libc return value of -1 into the `errno` as an [`io::Error`].
pub(crate) fn cvt<T: SysResult>(r: T) -> io::Result<T> {
    if r == T::FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvt_maps_minus_one_to_errno() {
        assert_eq!(cvt(3i32).unwrap(), 3);
        assert_eq!(cvt(0isize).unwrap(), 0);
        // SAFETY: close(-1) touches no memory and fails with EBADF.
        let r = unsafe { libc::close(-1) };
        let e = cvt(r).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn unknown_interface_has_no_index() {
        assert!(interface_index("tdm-no-such-if").is_err());
        assert!(interface_index("bad\0name").is_err());
        assert!(interface_index("lo").unwrap() > 0);
    }
}
