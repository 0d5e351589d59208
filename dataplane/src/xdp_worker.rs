//! The worker loop over AF_XDP: the same semantics as the UDP [`crate::worker`], with frames
//! instead of datagrams.
//!
//! Per batch: take up to `batch` received frames from the sockets' RX rings, check each with
//! [`UdpFrame::new_checked`], let the engine answer the DHCP payload straight into a free UMEM
//! chunk (after room for the headers), write the Ethernet/IPv4/UDP headers with
//! [`ReplyHeaders`], put OFFERs and NAKs on the TX ring and kick it at once, write the batch's
//! binding changes to the journal and hold its ACKs until the journal's sync thread reports the
//! `fdatasync` that covers them (the loop keeps serving meanwhile and is woken when the sync
//! ends), then put them on the TX ring and kick again. Per-stage durations (queue wait from
//! the XDP program's time stamp, engine, journal write, fdatasync, ACK wait, transmit) go to
//! [`crate::worker::Stages`]. Sent
//! chunks come back through the completion ring; received chunks go back to the fill ring.
//! Control messages ([`Control`]) are read between batches, and the engine's timers run once per
//! loop.
//!
//! One [`XdpPort`] per interface: one AF_XDP socket bound to one queue, with its own UMEM.
//! The XDP program and the XSKMAP entry are the caller's (`tandem_ebpf::Steering`).
//!
//! **Several workers** (one per receive queue, each pinned to its core with
//! [`XdpWorker::set_core`]): worker `k` binds queue `k` of every interface. The RFC 3074 bucket of
//! a client decides which worker owns its binding (bucket `b` → worker `b % workers`, see
//! [`Engine::bucket_owner`]); the NIC's queue choice knows nothing of that (broadcast and relayed
//! traffic share one flow), so a worker that receives a frame of another worker's client copies
//! it into a slot of the bounded lock-free ring to that worker ([`handoff_mesh`]: one ring per
//! ordered pair of workers, one producer and one consumer each, slots allocated once and
//! recycled through a second ring) and wakes it once per batch; the owner answers it from its
//! own socket on the same interface. A full ring drops the frame, counted (`handoff_full`; the
//! client retries).
//!
//! The worker waits in `poll(2)` on its sockets and on its waker (the [`WorkerHandle`]'s, also
//! woken by handoffs) for at most 50 ms at a time, less when an engine timer is due sooner; with
//! [`XdpWorker::set_busy_poll`] it never sleeps and spins over its rings instead (lower latency,
//! one core at 100 %).
//!
//! Also here: the interface facts the daemon needs before it opens a port
//! ([`interface_info`]), and the privilege checks ([`missing_capabilities`],
//! [`memlock_limit`]).

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use crossbeam_queue::ArrayQueue;
use mio::{Events, Poll, Waker};
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use std::os::fd::AsRawFd;

use crate::authority::Authority;
use crate::engine::{Engine, Outcome, RxMeta};
use crate::frame::{
    ReplyHeaders, UdpFrame, ETH_HEADER_LEN, IPV4_HEADER_LEN, UDP_HEADER_LEN, VLAN_TAG_LEN,
};
use crate::journal::{Journal, JournalConfig};
use crate::time::Time;
use crate::wire::MessageType;
use crate::worker::{apply_control, Control, Durable, WorkerError, WorkerHandle, WorkerStats};
use crate::xsk::{
    interface_index, BindMode, Frame, SocketConfig, Umem, UmemConfig, XskError, XskSocket,
};

/// UMEM chunk size used by the AF_XDP backend.
pub const CHUNK_SIZE: u32 = 2048;
/// Longest wait in `poll(2)` between control-message checks.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How often the sockets' kernel statistics are copied into [`XdpStats`].
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Counters of the AF_XDP worker (besides the [`WorkerStats`] both workers share).
#[derive(Debug, Default)]
pub struct XdpStats {
    /// Frames taken from the RX rings.
    pub rx_frames: AtomicU64,
    /// Reply frames put on the TX rings.
    pub tx_frames: AtomicU64,
    /// Received frames that are not Ethernet/IPv4/UDP as [`UdpFrame::new_checked`] requires.
    pub unparsed: AtomicU64,
    /// Requests dropped because no UMEM chunk was free for the reply.
    pub no_tx_chunk: AtomicU64,
    /// Replies dropped because the TX ring was full.
    pub tx_ring_full: AtomicU64,
    /// TX kicks (`sendto` wake-ups).
    pub tx_kicks: AtomicU64,
    /// Kernel: frames dropped for this worker's sockets (sum over sockets, sampled each second).
    pub xsk_rx_dropped: AtomicU64,
    /// Kernel: frames dropped because the fill ring was empty (sampled).
    pub xsk_rx_fill_ring_empty: AtomicU64,
    /// Kernel: frames dropped because the RX ring was full (sampled).
    pub xsk_rx_ring_full: AtomicU64,
    /// Kernel: invalid TX descriptors (sampled).
    pub xsk_tx_invalid: AtomicU64,
    /// Frames handed to the worker that owns their client's bucket.
    pub handoff_out: AtomicU64,
    /// Frames answered for another worker that received them.
    pub handoff_in: AtomicU64,
    /// Frames dropped because the ring to their owner was full.
    pub handoff_full: AtomicU64,
}

impl XdpStats {
    /// Every counter with a stable name, for the admin endpoint.
    pub fn named(&self) -> [(&'static str, u64); 13] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("rx_frames", g(&self.rx_frames)),
            ("tx_frames", g(&self.tx_frames)),
            ("unparsed", g(&self.unparsed)),
            ("no_tx_chunk", g(&self.no_tx_chunk)),
            ("tx_ring_full", g(&self.tx_ring_full)),
            ("tx_kicks", g(&self.tx_kicks)),
            ("xsk_rx_dropped", g(&self.xsk_rx_dropped)),
            ("xsk_rx_fill_ring_empty", g(&self.xsk_rx_fill_ring_empty)),
            ("xsk_rx_ring_full", g(&self.xsk_rx_ring_full)),
            ("xsk_tx_invalid", g(&self.xsk_tx_invalid)),
            ("handoff_out", g(&self.handoff_out)),
            ("handoff_in", g(&self.handoff_in)),
            ("handoff_full", g(&self.handoff_full)),
        ]
    }
}

/// Why the AF_XDP backend cannot run on an interface.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpSetupError {
    /// No interface of that name in this network namespace.
    #[error("interface {ifname}: no such interface in this network namespace")]
    NoInterface {
        /// The interface.
        ifname: String,
    },
    /// The interface is administratively down.
    #[error("interface {ifname} is down (ip link set {ifname} up)")]
    Down {
        /// The interface.
        ifname: String,
    },
    /// The interface's receive queues are not exactly the ones the AF_XDP workers serve.
    #[error(
        "interface {ifname} has {queues} receive queue(s), but {workers} AF_XDP worker(s) serve \
         queue(s) {queue}..{last} and frames on any other queue would be lost; give the interface \
         one queue per worker (`ethtool -L {ifname} combined {workers}`, or `rx {workers} tx \
         {workers}` on veth) or list one core per queue in [dataplane] cores",
        last = queue + workers - 1
    )]
    Queues {
        /// The interface.
        ifname: String,
        /// Receive queues it has.
        queues: u32,
        /// The first queue served.
        queue: u32,
        /// Workers (one queue each).
        workers: u32,
    },
    /// The configured queue does not exist on the interface.
    #[error("interface {ifname} has no receive queue {queue} (it has {queues})")]
    NoQueue {
        /// The interface.
        ifname: String,
        /// Receive queues it has.
        queues: u32,
        /// The configured queue.
        queue: u32,
    },
    /// Reading the interface's facts failed.
    #[error("interface {ifname}: {what}: {source}")]
    Lookup {
        /// The interface.
        ifname: String,
        /// What was read.
        what: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The process lacks capabilities XDP needs.
    #[error(
        "missing capabilities {missing}: loading and attaching XDP needs CAP_NET_ADMIN and \
         CAP_BPF (or CAP_SYS_ADMIN), AF_XDP sockets need CAP_NET_RAW; run as root or grant \
         them (AmbientCapabilities= in the systemd unit)"
    )]
    Capabilities {
        /// The missing capabilities, comma-separated.
        missing: String,
    },
    /// The UMEMs exceed the locked-memory limit.
    #[error(
        "the AF_XDP UMEMs need {needed} bytes of locked memory but RLIMIT_MEMLOCK is {limit} \
         bytes; raise it (LimitMEMLOCK= in the systemd unit, ulimit -l), grant CAP_IPC_LOCK, \
         or lower [dataplane] frame_count"
    )]
    MemLock {
        /// Bytes needed.
        needed: u64,
        /// The soft limit.
        limit: u64,
    },
    /// Creating or binding the AF_XDP socket failed.
    #[error("AF_XDP socket on {ifname} queue {queue}: {source}")]
    Socket {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The failure.
        #[source]
        source: XskError,
    },
}

/// What the daemon needs to know about an interface to serve it over AF_XDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Its name.
    pub name: String,
    /// Kernel interface index.
    pub index: u32,
    /// Its MAC address (`/sys/class/net/NAME/address`).
    pub mac: [u8; 6],
    /// Its IPv4 addresses (`getifaddrs`), in the kernel's order.
    pub ipv4: Vec<Ipv4Addr>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_RUNNING`).
    pub running: bool,
    /// Receive queues (`/sys/class/net/NAME/queues/rx-*`).
    pub rx_queues: u32,
}

impl InterfaceInfo {
    /// The source address of reply frames on this interface: `server_id` if the interface has
    /// it, else its first IPv4 address, else `server_id` (a misconfiguration the caller logs).
    pub fn reply_address(&self, server_id: Ipv4Addr) -> Ipv4Addr {
        if self.ipv4.contains(&server_id) {
            return server_id;
        }
        self.ipv4.first().copied().unwrap_or(server_id)
    }
}

/// Parses a MAC address written as six `:`-separated hex pairs.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The facts of interface `name` in this thread's network namespace (sysfs must be the
/// namespace's own, as `ip netns exec` arranges).
pub fn interface_info(name: &str) -> Result<InterfaceInfo, XdpSetupError> {
    let index = interface_index(name).map_err(|_| XdpSetupError::NoInterface {
        ifname: name.to_owned(),
    })?;
    let lookup = |what: &'static str| {
        move |source: io::Error| XdpSetupError::Lookup {
            ifname: name.to_owned(),
            what,
            source,
        }
    };
    let sys = std::path::Path::new("/sys/class/net").join(name);
    let mac_text = std::fs::read_to_string(sys.join("address")).map_err(lookup("MAC address"))?;
    let mac = parse_mac(&mac_text).ok_or_else(|| XdpSetupError::Lookup {
        ifname: name.to_owned(),
        what: "MAC address",
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an Ethernet address: {:?}", mac_text.trim()),
        ),
    })?;
    let rx_queues = std::fs::read_dir(sys.join("queues"))
        .map_err(lookup("receive queues"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32;
    let mut info = InterfaceInfo {
        name: name.to_owned(),
        index,
        mac,
        ipv4: Vec::new(),
        up: false,
        running: false,
        rx_queues,
    };
    let addrs = getifaddrs().map_err(|e| lookup("getifaddrs")(io::Error::from(e)))?;
    for a in addrs.filter(|a| a.interface_name == name) {
        info.up |= a.flags.contains(InterfaceFlags::IFF_UP);
        info.running |= a.flags.contains(InterfaceFlags::IFF_RUNNING);
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            info.ipv4.push(sin.ip());
        }
    }
    Ok(info)
}

/// Capability numbers (linux/capability.h).
const CAPS: [(u32, &str); 5] = [
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (14, "CAP_IPC_LOCK"),
    (21, "CAP_SYS_ADMIN"),
    (39, "CAP_BPF"),
];

/// The effective capability set of this process (`CapEff` of `/proc/self/status`).
pub fn effective_capabilities() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff in /proc/self/status"))
}

fn has_cap(eff: u64, name: &str) -> bool {
    CAPS.iter()
        .find(|(_, n)| *n == name)
        .is_some_and(|(bit, _)| eff & (1u64 << bit) != 0)
}

/// The capabilities XDP + AF_XDP need that `eff` lacks (empty: all there).
pub fn missing_capabilities(eff: u64) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !has_cap(eff, "CAP_NET_ADMIN") {
        missing.push("CAP_NET_ADMIN");
    }
    if !has_cap(eff, "CAP_BPF") && !has_cap(eff, "CAP_SYS_ADMIN") {
        missing.push("CAP_BPF");
    }
    if !has_cap(eff, "CAP_NET_RAW") {
        missing.push("CAP_NET_RAW");
    }
    missing
}

/// True if `eff` holds `CAP_IPC_LOCK` (locked memory is then not limited).
pub fn has_ipc_lock(eff: u64) -> bool {
    has_cap(eff, "CAP_IPC_LOCK")
}

/// The soft `RLIMIT_MEMLOCK` in bytes; `None` if unlimited.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
        .map_err(io::Error::from)?;
    Ok((soft != nix::sys::resource::RLIM_INFINITY).then_some(soft))
}

/// Checks, before anything is loaded, that this process may run the AF_XDP backend with
/// `umem_bytes` of UMEM in total.
pub fn check_privileges(umem_bytes: u64) -> Result<(), XdpSetupError> {
    let eff = effective_capabilities().map_err(|source| XdpSetupError::Lookup {
        ifname: String::new(),
        what: "process capabilities",
        source,
    })?;
    let missing = missing_capabilities(eff);
    if !missing.is_empty() {
        return Err(XdpSetupError::Capabilities {
            missing: missing.join(", "),
        });
    }
    if !has_ipc_lock(eff) {
        let limit = memlock_limit().map_err(|source| XdpSetupError::Lookup {
            ifname: String::new(),
            what: "RLIMIT_MEMLOCK",
            source,
        })?;
        if let Some(limit) = limit.filter(|&l| l < umem_bytes) {
            return Err(XdpSetupError::MemLock {
                needed: umem_bytes,
                limit,
            });
        }
    }
    Ok(())
}

/// Sizes of one port.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive queue to bind.
    pub queue: u32,
    /// UMEM chunks (of [`CHUNK_SIZE`] bytes).
    pub frame_count: u32,
    /// Entries of each ring (a power of two; `frame_count` ≥ 2 × `ring_size`).
    pub ring_size: u32,
}

/// One interface served over AF_XDP: the socket (with its UMEM and rings), the addresses reply
/// frames leave from, and the chunks that are not lent to the kernel.
#[derive(Debug)]
pub struct XdpPort {
    /// The interface.
    pub ifname: String,
    /// Source MAC of reply frames.
    pub mac: [u8; 6],
    /// Source IPv4 address of reply frames.
    pub ip: Ipv4Addr,
    sock: XskSocket,
    /// Received chunks to give back to the fill ring.
    recycle: Vec<Frame>,
    /// Chunks for replies (a field of its own, so it can be borrowed beside the socket).
    out: Replies,
}

/// The reply chunks of a port that are not lent to the kernel.
#[derive(Debug)]
struct Replies {
    /// Chunks free for reply frames.
    free: Vec<Frame>,
    /// Replies of this batch that leave before the journal commit (OFFER, NAK).
    tx_now: Vec<Frame>,
    /// Replies of this batch that leave after it (ACK).
    tx_durable: Vec<Frame>,
    /// ACKs of written batches waiting for the sync that covers their mark, oldest first.
    held: VecDeque<Held>,
}

/// An ACK waiting for its batch to be durable.
#[derive(Debug)]
struct Held {
    /// The batch's journal mark ([`Durable::write`]).
    mark: u64,
    /// When the batch was written.
    at: Instant,
    frame: Frame,
}

impl Replies {
    /// Queue the reply written into `out` (or give the chunk back if there is none).
    fn queue(&mut self, mut out: Frame, a: &Answered) {
        match *a {
            Answered::Reply { len, durable } => {
                // len <= chunk size (2048).
                out.set_packet(0, len as u32);
                if durable {
                    self.tx_durable.push(out);
                } else {
                    self.tx_now.push(out);
                }
            }
            _ => self.free.push(out),
        }
    }
}

impl XdpPort {
    /// Opens the AF_XDP socket of `info` for `cfg.queue`, lends half the chunks (at most a fill
    /// ring's worth) to the fill ring and keeps the rest for replies; replies leave from
    /// `info.mac` and `ip`.
    pub fn open(
        info: &InterfaceInfo,
        ip: Ipv4Addr,
        cfg: &PortConfig,
    ) -> Result<XdpPort, XdpSetupError> {
        let err = |source: XskError| XdpSetupError::Socket {
            ifname: info.name.clone(),
            queue: cfg.queue,
            source,
        };
        let mut umem = Umem::new(&UmemConfig {
            frame_size: CHUNK_SIZE,
            frame_count: cfg.frame_count,
        })
        .map_err(err)?;
        let mut free = umem.take_frames();
        let mut sock = XskSocket::new(
            umem,
            info.index,
            cfg.queue,
            &SocketConfig {
                fill_size: cfg.ring_size,
                completion_size: cfg.ring_size,
                rx_size: cfg.ring_size,
                tx_size: cfg.ring_size,
                mode: BindMode::Copy,
            },
        )
        .map_err(err)?;
        let lend = cfg.ring_size.min(cfg.frame_count / 2);
        sock.parts().fill.fill_from(&mut free, lend);
        let cap = cfg.frame_count as usize;
        Ok(XdpPort {
            ifname: info.name.clone(),
            mac: info.mac,
            ip,
            sock,
            recycle: Vec::with_capacity(cap),
            out: Replies {
                free,
                tx_now: Vec::with_capacity(cap),
                tx_durable: Vec::with_capacity(cap),
                held: VecDeque::with_capacity(cap),
            },
        })
    }

    /// The socket, for the XSKMAP entry (`Steering::set_xsk`).
    pub fn socket(&self) -> &XskSocket {
        &self.sock
    }

    /// Puts `frames` on the TX ring (those that do not fit go back to the free list) and kicks
    /// it. Returns the number queued.
    fn transmit(&mut self, durable: bool, xs: &XdpStats, ws: &WorkerStats) -> u64 {
        let list = if durable {
            &mut self.out.tx_durable
        } else {
            &mut self.out.tx_now
        };
        if list.is_empty() {
            return 0;
        }
        let t = Instant::now();
        let p = self.sock.parts();
        let mut sent = 0u64;
        let mut tx = p.tx.reserve(list.len() as u32);
        for f in list.drain(..) {
            match tx.push(f) {
                Ok(()) => sent += 1,
                Err(f) => {
                    xs.tx_ring_full.fetch_add(1, Ordering::Relaxed);
                    self.out.free.push(f);
                }
            }
        }
        tx.commit();
        match p.tx.kick() {
            Ok(calls) => {
                xs.tx_kicks.fetch_add(u64::from(calls), Ordering::Relaxed);
            }
            Err(e) => {
                ws.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, interface = %self.ifname, "AF_XDP TX kick failed");
            }
        }
        xs.tx_frames.fetch_add(sent, Ordering::Relaxed);
        ws.stages.transmit.record(t.elapsed());
        sent
    }

    /// This batch's ACKs wait for `mark` (or, if the journal write failed, are withheld).
    fn hold(&mut self, mark: Option<u64>, at: Instant, ws: &WorkerStats) {
        match mark {
            Some(mark) => {
                for frame in self.out.tx_durable.drain(..) {
                    self.out.held.push_back(Held { mark, at, frame });
                }
            }
            None => self.withhold(ws),
        }
    }

    /// Moves the held ACKs that `durable` covers to the TX list (`None`: the journal failed,
    /// withhold every held ACK).
    fn release(&mut self, durable: Option<u64>, ws: &WorkerStats) {
        let Some(d) = durable else {
            self.withhold(ws);
            return;
        };
        while self.out.held.front().is_some_and(|h| h.mark <= d) {
            if let Some(h) = self.out.held.pop_front() {
                ws.stages.ack_wait.record(h.at.elapsed());
                self.out.tx_durable.push(h.frame);
            }
        }
    }

    /// Drops every ACK of this batch and every held one (counted): their bindings are not known
    /// to be durable.
    fn withhold(&mut self, ws: &WorkerStats) {
        let n = self.out.tx_durable.len() + self.out.held.len();
        ws.withheld_replies.fetch_add(n as u64, Ordering::Relaxed);
        self.out.free.append(&mut self.out.tx_durable);
        self.out
            .free
            .extend(self.out.held.drain(..).map(|h| h.frame));
    }

    /// Takes back sent chunks and lends received ones to the fill ring again; kicks the TX ring
    /// while replies are still on it.
    fn housekeeping(&mut self, xs: &XdpStats) {
        let p = self.sock.parts();
        p.completion.drain_into(&mut self.out.free, u32::MAX);
        if !self.recycle.is_empty() {
            p.fill.fill_from(&mut self.recycle, u32::MAX);
        }
        if p.tx.pending() > 0 {
            if let Ok(calls) = p.tx.kick() {
                xs.tx_kicks.fetch_add(u64::from(calls), Ordering::Relaxed);
            }
        }
    }
}

/// A frame copied for the worker that owns its client.
struct Slot {
    /// Interface it arrived on (index into the workers' ports).
    iface: usize,
    /// Bytes of `data` used.
    len: usize,
    data: [u8; CHUNK_SIZE as usize],
}

/// The one-way ring from one worker to another: frames in `full`, slots to reuse in `empty`.
/// One producer (the receiving worker) and one consumer (the owner) each way.
struct Lane {
    full: ArrayQueue<Box<Slot>>,
    empty: ArrayQueue<Box<Slot>>,
}

impl Lane {
    fn new(slots: usize) -> Lane {
        let slots = slots.max(1);
        let empty = ArrayQueue::new(slots);
        for _ in 0..slots {
            let _ = empty.push(Box::new(Slot {
                iface: 0,
                len: 0,
                data: [0; CHUNK_SIZE as usize],
            }));
        }
        Lane {
            full: ArrayQueue::new(slots),
            empty,
        }
    }
}

/// One worker's ends of the handoff rings (see the module docs).
pub struct Handoff {
    /// Ring to worker `j` (none to itself).
    out: Vec<Option<Arc<Lane>>>,
    /// Ring from worker `j`.
    inn: Vec<Option<Arc<Lane>>>,
    /// Wakers of the other workers, set by [`XdpWorker::set_handoff`].
    wakers: Vec<Option<Arc<Waker>>>,
    /// Workers handed a frame in this batch (to wake once).
    pending_wake: Vec<bool>,
}

impl Handoff {
    /// Copy `frame` into a slot of the ring to `owner`; false if the ring is full.
    fn send(&mut self, owner: usize, iface: usize, frame: &[u8]) -> bool {
        let Some(Some(lane)) = self.out.get(owner) else {
            return false;
        };
        let Some(mut slot) = lane.empty.pop() else {
            return false;
        };
        let n = frame.len().min(slot.data.len());
        slot.data[..n].copy_from_slice(&frame[..n]);
        slot.len = n;
        slot.iface = iface;
        match lane.full.push(slot) {
            Ok(()) => {
                if let Some(w) = self.pending_wake.get_mut(owner) {
                    *w = true;
                }
                true
            }
            Err(slot) => {
                // Cannot happen (as many slots as places), but never lose a slot.
                let _ = lane.empty.push(slot);
                false
            }
        }
    }

    /// Wake the workers handed frames since the last call.
    fn wake(&mut self) {
        for (j, w) in self.pending_wake.iter_mut().enumerate() {
            if std::mem::take(w) {
                if let Some(Some(waker)) = self.wakers.get(j) {
                    let _ = waker.wake();
                }
            }
        }
    }
}

/// The handoff rings of `workers` workers, `slots` frames each way per pair: element `k` is
/// worker `k`'s ends.
pub fn handoff_mesh(workers: usize, slots: usize) -> Vec<Handoff> {
    // lanes[i][j]: the ring from worker i to worker j.
    let lanes: Vec<Vec<Option<Arc<Lane>>>> = (0..workers)
        .map(|i| {
            (0..workers)
                .map(|j| (i != j).then(|| Arc::new(Lane::new(slots))))
                .collect()
        })
        .collect();
    (0..workers)
        .map(|k| Handoff {
            out: lanes[k].clone(),
            inn: (0..workers).map(|i| lanes[i][k].clone()).collect(),
            wakers: vec![None; workers],
            pending_wake: vec![false; workers],
        })
        .collect()
}

/// The AF_XDP worker: engine + journal + one [`XdpPort`] per interface.
pub struct XdpWorker<A: Authority> {
    engine: Engine,
    durable: Durable,
    client_port: u16,
    authority: A,
    ports: Vec<XdpPort>,
    rx: Receiver<Control>,
    /// The sockets and the handle's waker are registered here, so a frame, a control message
    /// or a handoff wakes the worker.
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    stats: Arc<WorkerStats>,
    xstats: Arc<XdpStats>,
    batch: usize,
    handoff: Option<Handoff>,
    busy_poll: bool,
    core: Option<usize>,
    /// The worker's number, for logs and the thread name.
    id: usize,
    /// This worker's sockets' kernel counters at the last sample (dropped, fill ring empty,
    /// RX ring full, TX invalid).
    last_sample: [u64; 4],
}

impl<A: Authority> XdpWorker<A> {
    /// A worker over `ports` (index = interface index in the engine's `RxMeta`), at most `batch`
    /// frames per batch. `journal_cfg` is the configuration `journal` was opened with (to reopen
    /// it after a failure). Replies to clients go to `client_port`. Returns the worker and the
    /// daemon's handle to it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        journal: Journal,
        journal_cfg: JournalConfig,
        authority: A,
        ports: Vec<XdpPort>,
        batch: usize,
        client_port: u16,
        stats: Arc<WorkerStats>,
        xstats: Arc<XdpStats>,
    ) -> io::Result<(XdpWorker<A>, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0))?);
        for (i, p) in ports.iter().enumerate() {
            let fd = p.sock.as_fd().as_raw_fd();
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(i + 1),
                mio::Interest::READABLE,
            )?;
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let id = usize::from(journal_cfg.worker);
        Ok((
            XdpWorker {
                engine,
                durable: Durable::new(journal, journal_cfg),
                client_port,
                authority,
                ports,
                rx,
                poll,
                events: Events::with_capacity(16),
                last_sample: [0; 4],
                waker: waker.clone(),
                stats,
                xstats,
                batch: batch.clamp(1, 4096),
                handoff: None,
                busy_poll: false,
                core: None,
                id,
            },
            WorkerHandle::from_parts(tx, waker),
        ))
    }

    /// Call `hook` with the bindings of every successful journal commit (see
    /// [`crate::worker::CommitHook`]).
    pub fn set_commit_hook(&mut self, hook: crate::worker::CommitHook) {
        self.durable.hook = Some(hook);
    }

    /// The waker of this worker (for the other workers' [`XdpWorker::set_handoff`]).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Join a group of workers: `handoff` is this worker's element of [`handoff_mesh`], and
    /// `wakers[j]` worker `j`'s [`XdpWorker::waker`].
    pub fn set_handoff(&mut self, mut handoff: Handoff, wakers: &[Arc<Waker>]) {
        for (j, w) in wakers.iter().enumerate() {
            if let Some(slot) = handoff.wakers.get_mut(j) {
                *slot = Some(w.clone());
            }
        }
        self.handoff = Some(handoff);
    }

    /// Spin over the rings instead of sleeping in `poll(2)` when idle.
    pub fn set_busy_poll(&mut self, on: bool) {
        self.busy_poll = on;
    }

    /// Pin the worker's thread to CPU `core` when it starts running.
    pub fn set_core(&mut self, core: Option<usize>) {
        self.core = core;
    }

    fn pin(&self) {
        let Some(id) = self.core else { return };
        if core_affinity::set_for_current(core_affinity::CoreId { id }) {
            tracing::info!(worker = self.id, core = id, "AF_XDP worker pinned");
        } else {
            tracing::warn!(
                worker = self.id,
                core = id,
                "cannot pin the AF_XDP worker to its core; it runs unpinned"
            );
        }
    }

    /// Run until [`Control::Shutdown`] (or the handle is dropped).
    pub fn run(mut self) -> Result<(), WorkerError> {
        self.pin();
        tracing::info!(
            worker = self.id,
            queues = ?self.ports.iter().map(|p| (p.ifname.clone(), p.sock.queue())).collect::<Vec<_>>(),
            busy_poll = self.busy_poll,
            "AF_XDP worker running"
        );
        let waker = self.waker.clone();
        self.durable.background_sync(Arc::new(move || {
            // A failed wake only delays the ACKs to the next wake-up (at most MAX_WAIT).
            let _ = waker.wake();
        }));
        self.durable.commit(&mut self.engine, &self.stats);
        let mut idle = false;
        let mut woke;
        let mut last_stats = Instant::now();
        loop {
            woke = false;
            if idle {
                for p in &mut self.ports {
                    p.housekeeping(&self.xstats);
                }
                if self.busy_poll {
                    std::hint::spin_loop();
                } else {
                    let wait = self
                        .engine
                        .next_timer()
                        .map(|t| Duration::from_millis(t.millis_since(Time::now()).clamp(1, 50)))
                        .unwrap_or(MAX_WAIT)
                        .min(MAX_WAIT);
                    let wait = match self.durable.deferred_deadline() {
                        Some(d) => wait.min(
                            d.saturating_duration_since(Instant::now())
                                .max(Duration::from_millis(1)),
                        ),
                        None => wait,
                    };
                    self.wait(wait)?;
                    self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                    woke = true;
                }
            }
            // Busy from here to the end of the iteration: everything but the wait in poll(2).
            let busy = Instant::now();
            let mut controls = 0;
            let resolved = self.durable.resolved();
            loop {
                match self.rx.try_recv() {
                    Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => {
                        let ok = self.durable.commit(&mut self.engine, &self.stats);
                        let durable = ok.then(|| self.durable.poll(&mut self.engine, &self.stats));
                        for p in &mut self.ports {
                            p.release(durable.flatten(), &self.stats);
                            p.transmit(true, &self.xstats, &self.stats);
                        }
                        self.drain_tx();
                        tracing::info!(worker = self.id, "AF_XDP worker stopped");
                        return Ok(());
                    }
                    Ok(c) => {
                        controls += 1;
                        apply_control(&mut self.engine, &mut self.durable, &mut self.authority, c)
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.authority.refresh();
            let now = Time::now();
            let mut received = 0;
            let mut ctx = Ctx {
                mono_now: monotonic_nanos(),
                engine: &mut self.engine,
                authority: &self.authority,
                now,
                client_port: self.client_port,
                xs: &self.xstats,
                ws: &self.stats,
                handoff: self.handoff.as_mut(),
            };
            for i in 0..self.ports.len() {
                let want = self.batch - received;
                if want == 0 {
                    break;
                }
                received += receive(i, &mut self.ports[i], &mut ctx, want);
            }
            let handed = take_handoffs(&mut self.ports, &mut ctx, self.batch);
            if let Some(h) = self.handoff.as_mut() {
                h.wake();
            }
            if received + handed > 0 {
                self.stats.stages.engine.record(busy.elapsed());
            }
            self.engine.tick(now);
            // Replies that promise nothing durable (OFFER, NAK) leave at once, never after a
            // flush; ACKs wait for the sync that covers their batch (the journal's sync thread
            // runs it while this loop goes on serving, and wakes it when it is done).
            for p in &mut self.ports {
                p.transmit(false, &self.xstats, &self.stats);
            }
            let written = Instant::now();
            let urgent = self.ports.iter().any(|p| !p.out.tx_durable.is_empty());
            let mark = self.durable.write(&mut self.engine, &self.stats, urgent);
            for p in &mut self.ports {
                p.hold(mark, written, &self.stats);
            }
            self.durable.maybe_compact(&self.engine, &self.stats);
            let durable = self.durable.poll(&mut self.engine, &self.stats);
            let mut released = 0;
            for p in &mut self.ports {
                p.release(durable, &self.stats);
                released += p.transmit(true, &self.xstats, &self.stats);
                p.housekeeping(&self.xstats);
            }
            let finished = self.durable.resolved() != resolved;
            if woke && received + handed == 0 && released == 0 && controls == 0 && !finished {
                self.stats.idle_wakeups.fetch_add(1, Ordering::Relaxed);
            }
            if received + handed > 0 {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.xstats
                    .rx_frames
                    .fetch_add(received as u64, Ordering::Relaxed);
            }
            idle = received + handed == 0;
            if last_stats.elapsed() >= STATS_EVERY {
                last_stats = Instant::now();
                self.sample_socket_stats();
            }
            if !idle || !self.busy_poll {
                self.stats.record_busy(busy);
            }
        }
    }

    /// Waits up to `timeout` for a frame on any socket, a control message or a handoff (the
    /// sockets and the waker are registered in the worker's `mio` poll).
    fn wait(&mut self, timeout: Duration) -> Result<(), WorkerError> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(WorkerError::Io(e)),
        }
    }

    /// Lets the last replies leave (at most 200 ms).
    fn drain_tx(&mut self) {
        let until = Instant::now() + Duration::from_millis(200);
        for p in &mut self.ports {
            loop {
                p.housekeeping(&self.xstats);
                if p.sock.parts().tx.pending() == 0 || Instant::now() > until {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Add what this worker's sockets' kernel counters grew by since the last sample to the
    /// shared counters (every worker adds its own).
    fn sample_socket_stats(&mut self) {
        let mut now = [0u64; 4];
        for p in &self.ports {
            if let Ok(s) = p.sock.statistics() {
                now[0] += s.rx_dropped;
                now[1] += s.rx_fill_ring_empty_descs;
                now[2] += s.rx_ring_full;
                now[3] += s.tx_invalid_descs;
            }
        }
        let x = &self.xstats;
        let shared = [
            &x.xsk_rx_dropped,
            &x.xsk_rx_fill_ring_empty,
            &x.xsk_rx_ring_full,
            &x.xsk_tx_invalid,
        ];
        for ((c, n), last) in shared.iter().zip(now).zip(self.last_sample.iter_mut()) {
            c.fetch_add(n.saturating_sub(*last), Ordering::Relaxed);
            *last = n;
        }
    }
}

/// What answering one frame needs besides the port.
struct Ctx<'a, A: Authority> {
    /// `CLOCK_MONOTONIC` at the start of the batch, in nanoseconds (the XDP program's clock).
    mono_now: Option<u64>,
    engine: &'a mut Engine,
    authority: &'a A,
    now: Time,
    client_port: u16,
    xs: &'a XdpStats,
    ws: &'a WorkerStats,
    handoff: Option<&'a mut Handoff>,
}

/// What became of one frame.
enum Answered {
    /// A reply of `len` bytes is in the TX chunk; `durable`: an ACK (leaves after the commit).
    Reply { len: usize, durable: bool },
    /// The client belongs to worker `owner`.
    Handoff(usize),
    /// Nothing to send.
    Nothing,
}

/// Answer the frame `pkt` received on interface `iface`, writing the reply frame into
/// `tx_chunk`.
fn answer<A: Authority>(
    ctx: &mut Ctx<'_, A>,
    iface: usize,
    mac: [u8; 6],
    ip: Ipv4Addr,
    pkt: &[u8],
    tx_chunk: &mut [u8],
) -> Answered {
    let req = match UdpFrame::new_checked(pkt) {
        Ok(r) => r,
        Err(_) => {
            ctx.xs.unparsed.fetch_add(1, Ordering::Relaxed);
            return Answered::Nothing;
        }
    };
    let hl = ETH_HEADER_LEN
        + if req.vlan().is_some() {
            VLAN_TAG_LEN
        } else {
            0
        }
        + IPV4_HEADER_LEN
        + UDP_HEADER_LEN;
    let meta = RxMeta {
        iface,
        src: SocketAddrV4::new(req.src_ip(), req.src_port()),
    };
    let outcome = match tx_chunk.get_mut(hl..) {
        Some(body) => ctx
            .engine
            .handle(ctx.now, &meta, req.payload(), body, ctx.authority),
        None => Outcome::Drop(crate::engine::Counter::Received),
    };
    match outcome {
        Outcome::Reply { len, dest, msg } => {
            let h = ReplyHeaders::for_request(&req, &dest, mac, ip, ctx.client_port);
            match h.emit(tx_chunk, len) {
                Ok(n) => Answered::Reply {
                    len: n,
                    durable: msg == MessageType::Ack,
                },
                Err(e) => {
                    ctx.ws.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "reply frame does not fit its chunk");
                    Answered::Nothing
                }
            }
        }
        Outcome::Handoff(owner) => Answered::Handoff(owner),
        _ => Answered::Nothing,
    }
}

/// Takes up to `want` frames from `port`'s RX ring and answers them (or hands them to their
/// owner); replies are queued on the port's `tx_now` / `tx_durable` lists. Returns the number
/// of frames taken.
fn receive<A: Authority>(
    iface: usize,
    port: &mut XdpPort,
    ctx: &mut Ctx<'_, A>,
    want: usize,
) -> usize {
    let (mac, ip) = (port.mac, port.ip);
    let p = port.sock.parts();
    // want <= batch <= 4096.
    let mut rx = p.rx.peek(want as u32);
    let mut taken = 0;
    for f in rx.by_ref() {
        taken += 1;
        let Some(out) = port.out.free.pop() else {
            ctx.xs.no_tx_chunk.fetch_add(1, Ordering::Relaxed);
            port.recycle.push(f);
            continue;
        };
        // Two distinct tokens of this socket's UMEM: `f` came from its RX ring, `out` from its
        // free list, and a token exists once per chunk.
        let Some((rx_chunk, tx_chunk)) = p.umem.chunk_pair(&f, &out) else {
            port.out.free.push(out);
            port.recycle.push(f);
            continue;
        };
        let start = f.offset() as usize;
        if let Some(ns) = ctx
            .mono_now
            .and_then(|now| queue_wait_nanos(rx_chunk, start, now))
        {
            ctx.ws.stages.queue_wait.record_nanos(ns);
        }
        let pkt = rx_chunk.get(start..start + f.len() as usize).unwrap_or(&[]);
        let a = answer(ctx, iface, mac, ip, pkt, tx_chunk);
        if let Answered::Handoff(owner) = a {
            let sent = ctx
                .handoff
                .as_deref_mut()
                .is_some_and(|h| h.send(owner, iface, pkt));
            let c = if sent {
                &ctx.xs.handoff_out
            } else {
                &ctx.xs.handoff_full
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        port.out.queue(out, &a);
        port.recycle.push(f);
    }
    rx.release();
    taken
}

/// Magic of the metadata the XDP program puts before every frame it redirects (`TANDEM_META_MAGIC`
/// in `steer.bpf.c`): `magic: u32, zero: u32, stamp: u64` (native byte order), `stamp` being
/// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) when the program ran.
pub const META_MAGIC: u32 = 0x5444_4d31;
/// Length of that metadata.
pub const META_LEN: usize = 16;

/// How long the frame at `start` of `chunk` waited between the XDP program and `now`
/// (`CLOCK_MONOTONIC` nanoseconds), if the program stamped it. A frame stamped just after `now`
/// (it arrived while the batch began) waited 0; stamps further in the future or older than 10 s
/// (a chunk reused without metadata) are ignored.
fn queue_wait_nanos(chunk: &[u8], start: usize, now: u64) -> Option<u64> {
    let meta = chunk.get(start.checked_sub(META_LEN)?..start)?;
    let magic = u32::from_ne_bytes(meta[0..4].try_into().ok()?);
    if magic != META_MAGIC {
        return None;
    }
    let stamp = u64::from_ne_bytes(meta[8..16].try_into().ok()?);
    if stamp > now {
        return (stamp - now < 10_000_000).then_some(0);
    }
    Some(now - stamp).filter(|&ns| ns < 10_000_000_000)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
fn monotonic_nanos() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let secs = u64::try_from(t.tv_sec()).ok()?;
    let nanos = u64::try_from(t.tv_nsec()).ok()?;
    Some(secs * 1_000_000_000 + nanos)
}

/// Answers up to `want` frames other workers handed to this one, from this worker's port of the
/// interface they arrived on. Returns the number answered.
fn take_handoffs<A: Authority>(ports: &mut [XdpPort], ctx: &mut Ctx<'_, A>, want: usize) -> usize {
    // The inbound lanes, out of the context while frames are answered through it.
    let Some(inn) = ctx
        .handoff
        .as_deref_mut()
        .map(|h| std::mem::take(&mut h.inn))
    else {
        return 0;
    };
    let mut done = 0;
    'lanes: for lane in inn.iter().flatten() {
        while done < want {
            let Some(slot) = lane.full.pop() else {
                continue 'lanes;
            };
            done += 1;
            ctx.xs.handoff_in.fetch_add(1, Ordering::Relaxed);
            match ports.get_mut(slot.iface) {
                Some(port) => match port.out.free.pop() {
                    Some(out) => {
                        let (mac, ip) = (port.mac, port.ip);
                        let a = match port.sock.parts().umem.chunk_mut(&out) {
                            Some(tx) => {
                                answer(ctx, slot.iface, mac, ip, &slot.data[..slot.len], tx)
                            }
                            None => Answered::Nothing,
                        };
                        // This worker owns the bucket: no second handoff.
                        port.out.queue(out, &a);
                    }
                    None => {
                        ctx.xs.no_tx_chunk.fetch_add(1, Ordering::Relaxed);
                    }
                },
                None => {
                    ctx.xs.unparsed.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = lane.empty.push(slot);
        }
        break;
    }
    if let Some(h) = ctx.handoff.as_deref_mut() {
        h.inn = inn;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_wait_is_read_from_the_xdp_programs_metadata() {
        let mut chunk = vec![0u8; 512];
        let start = 256;
        // No metadata: nothing.
        assert_eq!(queue_wait_nanos(&chunk, start, 5_000), None);
        chunk[start - META_LEN..start - META_LEN + 4].copy_from_slice(&META_MAGIC.to_ne_bytes());
        chunk[start - 8..start].copy_from_slice(&1_000u64.to_ne_bytes());
        assert_eq!(queue_wait_nanos(&chunk, start, 5_000), Some(4_000));
        // Stamped just after the batch's clock reading: it waited nothing.
        assert_eq!(queue_wait_nanos(&chunk, start, 900), Some(0));
        // Far in the future or 10 s old: a stale chunk, not a measurement.
        assert_eq!(queue_wait_nanos(&chunk, start, 0), Some(0));
        chunk[start - 8..start].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert_eq!(queue_wait_nanos(&chunk, start, 5_000), None);
        chunk[start - 8..start].copy_from_slice(&1u64.to_ne_bytes());
        assert_eq!(queue_wait_nanos(&chunk, start, 20_000_000_000), None);
        // No room before the frame.
        assert_eq!(queue_wait_nanos(&chunk, 8, 5_000), None);
    }

    #[test]
    fn mac_addresses_parse_strictly() {
        assert_eq!(
            parse_mac("52:54:00:ab:CD:ef\n"),
            Some([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef])
        );
        assert_eq!(parse_mac("52:54:00:ab:cd"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:ef:01"), None);
        assert_eq!(parse_mac("5:54:00:ab:cd:ef"), None);
        assert_eq!(parse_mac("zz:54:00:ab:cd:ef"), None);
    }

    #[test]
    fn capabilities_are_named_by_what_is_missing() {
        let all = (1u64 << 12) | (1 << 13) | (1 << 14) | (1 << 39);
        assert!(missing_capabilities(all).is_empty());
        assert!(has_ipc_lock(all));
        // CAP_SYS_ADMIN stands in for CAP_BPF on older kernels.
        assert!(missing_capabilities((1 << 12) | (1 << 13) | (1 << 21)).is_empty());
        assert_eq!(
            missing_capabilities(1 << 13),
            vec!["CAP_NET_ADMIN", "CAP_BPF"]
        );
        assert_eq!(
            missing_capabilities(0),
            vec!["CAP_NET_ADMIN", "CAP_BPF", "CAP_NET_RAW"]
        );
        assert!(!has_ipc_lock(1 << 12));
    }

    #[test]
    fn reply_address_prefers_server_id_on_the_interface() {
        let sid = Ipv4Addr::new(10, 0, 0, 1);
        let mut i = InterfaceInfo {
            name: "x".into(),
            index: 1,
            mac: [0; 6],
            ipv4: vec![Ipv4Addr::new(10, 1, 0, 1), sid],
            up: true,
            running: true,
            rx_queues: 1,
        };
        assert_eq!(i.reply_address(sid), sid);
        i.ipv4.remove(1);
        assert_eq!(i.reply_address(sid), Ipv4Addr::new(10, 1, 0, 1));
        i.ipv4.clear();
        assert_eq!(i.reply_address(sid), sid);
    }

    #[test]
    fn loopback_facts_are_read() {
        let lo = interface_info("lo").expect("lo exists");
        assert!(lo.index > 0);
        assert!(lo.up);
        assert!(lo.rx_queues >= 1);
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");
        assert!(matches!(
            interface_info("tdm-no-such-if"),
            Err(XdpSetupError::NoInterface { .. })
        ));
    }
}
