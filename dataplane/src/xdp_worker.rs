//! The worker loop over AF_XDP: the same semantics as the UDP [`crate::worker`], with frames
//! instead of datagrams.
//!
//! Per batch: take up to `batch` received frames from the sockets' RX rings, check each with
//! [`UdpFrame::new_checked`], let the engine answer the DHCP payload straight into a free UMEM
//! chunk (after room for the headers), write the Ethernet/IPv4/UDP headers with
//! [`ReplyHeaders`], put OFFERs and NAKs on the TX ring and kick it at once, journal and commit
//! the batch's binding changes, and only then put the ACKs on the TX ring and kick again. Sent
//! chunks come back through the completion ring; received chunks go back to the fill ring.
//! Control messages ([`Control`]) are read between batches, and the engine's timers run once per
//! loop.
//!
//! One [`XdpPort`] per interface: one AF_XDP socket bound to one queue, with its own UMEM.
//! The XDP program and the XSKMAP entry are the caller's (`tandem_ebpf::Steering`).
//!
//! The worker waits in `poll(2)` on its sockets for at most 50 ms at a time (less when an engine
//! timer is due sooner), so a control message is noticed within 50 ms even when no frame
//! arrives; the [`WorkerHandle`]'s waker has nothing to wake here.
//!
//! Also here: the interface facts the daemon needs before it opens a port
//! ([`interface_info`]), and the privilege checks ([`missing_capabilities`],
//! [`memlock_limit`]).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::{Poll, Waker};
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::poll::{PollFd, PollFlags, PollTimeout};

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
}

impl XdpStats {
    /// Every counter with a stable name, for the admin endpoint.
    pub fn named(&self) -> [(&'static str, u64); 10] {
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
    /// The interface has more receive queues than the one AF_XDP socket serves.
    #[error(
        "interface {ifname} has {queues} receive queues, but this version serves one (queue \
         {queue}) with one AF_XDP socket and frames on the other queues would be lost; reduce \
         them with `ethtool -L {ifname} combined 1` (or `rx 1 tx 1`), or use backend = \"udp\" \
         until queue-per-worker support"
    )]
    Queues {
        /// The interface.
        ifname: String,
        /// Receive queues it has.
        queues: u32,
        /// The configured queue.
        queue: u32,
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
    /// Chunks free for reply frames.
    free: Vec<Frame>,
    /// Received chunks to give back to the fill ring.
    recycle: Vec<Frame>,
    /// Replies of this batch that leave before the journal commit (OFFER, NAK).
    tx_now: Vec<Frame>,
    /// Replies of this batch that leave after it (ACK).
    tx_durable: Vec<Frame>,
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
            free,
            recycle: Vec::with_capacity(cap),
            tx_now: Vec::with_capacity(cap),
            tx_durable: Vec::with_capacity(cap),
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
            &mut self.tx_durable
        } else {
            &mut self.tx_now
        };
        if list.is_empty() {
            return 0;
        }
        let p = self.sock.parts();
        let mut sent = 0u64;
        let mut tx = p.tx.reserve(list.len() as u32);
        for f in list.drain(..) {
            match tx.push(f) {
                Ok(()) => sent += 1,
                Err(f) => {
                    xs.tx_ring_full.fetch_add(1, Ordering::Relaxed);
                    self.free.push(f);
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
        sent
    }

    /// Takes back sent chunks and lends received ones to the fill ring again; kicks the TX ring
    /// while replies are still on it.
    fn housekeeping(&mut self, xs: &XdpStats) {
        let p = self.sock.parts();
        p.completion.drain_into(&mut self.free, u32::MAX);
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

/// The AF_XDP worker: engine + journal + one [`XdpPort`] per interface.
pub struct XdpWorker<A: Authority> {
    engine: Engine,
    durable: Durable,
    client_port: u16,
    authority: A,
    ports: Vec<XdpPort>,
    rx: Receiver<Control>,
    /// Keeps the handle's waker registered (nothing polls it; see the module docs).
    _poll: Poll,
    stats: Arc<WorkerStats>,
    xstats: Arc<XdpStats>,
    batch: usize,
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
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((
            XdpWorker {
                engine,
                durable: Durable::new(journal, journal_cfg),
                client_port,
                authority,
                ports,
                rx,
                _poll: poll,
                stats,
                xstats,
                batch: batch.clamp(1, 4096),
            },
            WorkerHandle::from_parts(tx, waker),
        ))
    }

    /// Call `hook` with the bindings of every successful journal commit (see
    /// [`crate::worker::CommitHook`]).
    pub fn set_commit_hook(&mut self, hook: crate::worker::CommitHook) {
        self.durable.hook = Some(hook);
    }

    /// Run until [`Control::Shutdown`] (or the handle is dropped).
    pub fn run(mut self) -> Result<(), WorkerError> {
        self.durable.commit(&mut self.engine, &self.stats);
        let mut idle = false;
        let mut last_stats = Instant::now();
        loop {
            if idle {
                for p in &mut self.ports {
                    p.housekeeping(&self.xstats);
                }
                let wait = self
                    .engine
                    .next_timer()
                    .map(|t| Duration::from_millis(t.millis_since(Time::now()).clamp(1, 50)))
                    .unwrap_or(MAX_WAIT)
                    .min(MAX_WAIT);
                self.wait(wait)?;
            }
            // Busy from here to the end of the iteration: everything but the wait in poll(2).
            let busy = Instant::now();
            loop {
                match self.rx.try_recv() {
                    Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => {
                        self.durable.commit(&mut self.engine, &self.stats);
                        self.drain_tx();
                        tracing::info!("AF_XDP worker stopped");
                        return Ok(());
                    }
                    Ok(c) => {
                        apply_control(&mut self.engine, &mut self.durable, &mut self.authority, c)
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.authority.refresh();
            let now = Time::now();
            let mut received = 0;
            for i in 0..self.ports.len() {
                let want = self.batch - received;
                if want == 0 {
                    break;
                }
                received += receive(
                    i,
                    &mut self.ports[i],
                    &mut self.engine,
                    &self.authority,
                    now,
                    want,
                    self.client_port,
                    &self.xstats,
                    &self.stats,
                );
            }
            self.engine.tick(now);
            // Replies that promise nothing durable (OFFER, NAK) need not wait for the flush.
            for p in &mut self.ports {
                p.transmit(false, &self.xstats, &self.stats);
            }
            let durable = self.durable.commit(&mut self.engine, &self.stats);
            for p in &mut self.ports {
                if durable {
                    p.transmit(true, &self.xstats, &self.stats);
                } else {
                    self.stats
                        .withheld_replies
                        .fetch_add(p.tx_durable.len() as u64, Ordering::Relaxed);
                    p.free.append(&mut p.tx_durable);
                }
                p.housekeeping(&self.xstats);
            }
            if received > 0 {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.xstats
                    .rx_frames
                    .fetch_add(received as u64, Ordering::Relaxed);
            }
            idle = received == 0;
            if last_stats.elapsed() >= STATS_EVERY {
                last_stats = Instant::now();
                self.sample_socket_stats();
            }
            self.durable.maybe_compact(&self.engine, &self.stats);
            self.stats.record_busy(busy);
        }
    }

    /// Waits up to `timeout` for a frame on any socket.
    fn wait(&self, timeout: Duration) -> Result<(), WorkerError> {
        let mut fds: Vec<PollFd<'_>> = self
            .ports
            .iter()
            .map(|p| PollFd::new(p.sock.as_fd(), PollFlags::POLLIN))
            .collect();
        // timeout <= MAX_WAIT (50 ms), which fits in a u16 of milliseconds.
        let ms = PollTimeout::from(timeout.as_millis().min(u128::from(u16::MAX)) as u16);
        match nix::poll::poll(&mut fds, ms) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(WorkerError::Io(io::Error::from(e))),
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

    fn sample_socket_stats(&self) {
        let (mut dropped, mut fill_empty, mut ring_full, mut tx_invalid) = (0, 0, 0, 0);
        for p in &self.ports {
            if let Ok(s) = p.sock.statistics() {
                dropped += s.rx_dropped;
                fill_empty += s.rx_fill_ring_empty_descs;
                ring_full += s.rx_ring_full;
                tx_invalid += s.tx_invalid_descs;
            }
        }
        let x = &self.xstats;
        x.xsk_rx_dropped.store(dropped, Ordering::Relaxed);
        x.xsk_rx_fill_ring_empty
            .store(fill_empty, Ordering::Relaxed);
        x.xsk_rx_ring_full.store(ring_full, Ordering::Relaxed);
        x.xsk_tx_invalid.store(tx_invalid, Ordering::Relaxed);
    }
}

/// Takes up to `want` frames from `port`'s RX ring and answers them; replies are queued on the
/// port's `tx_now` / `tx_durable` lists. Returns the number of frames taken.
#[allow(clippy::too_many_arguments)]
fn receive(
    iface: usize,
    port: &mut XdpPort,
    engine: &mut Engine,
    authority: &impl Authority,
    now: Time,
    want: usize,
    client_port: u16,
    xs: &XdpStats,
    ws: &WorkerStats,
) -> usize {
    let p = port.sock.parts();
    // want <= batch <= 4096.
    let mut rx = p.rx.peek(want as u32);
    let mut taken = 0;
    for f in rx.by_ref() {
        taken += 1;
        let Some(mut out) = port.free.pop() else {
            xs.no_tx_chunk.fetch_add(1, Ordering::Relaxed);
            port.recycle.push(f);
            continue;
        };
        // Two distinct tokens of this socket's UMEM: `f` came from its RX ring, `out` from its
        // free list, and a token exists once per chunk.
        let Some((rx_chunk, tx_chunk)) = p.umem.chunk_pair(&f, &out) else {
            port.free.push(out);
            port.recycle.push(f);
            continue;
        };
        let start = f.offset() as usize;
        let pkt = rx_chunk.get(start..start + f.len() as usize).unwrap_or(&[]);
        let req = match UdpFrame::new_checked(pkt) {
            Ok(r) => r,
            Err(_) => {
                xs.unparsed.fetch_add(1, Ordering::Relaxed);
                port.free.push(out);
                port.recycle.push(f);
                continue;
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
            Some(body) => engine.handle(now, &meta, req.payload(), body, authority),
            None => Outcome::Drop(crate::engine::Counter::Received),
        };
        if let Outcome::Reply { len, dest, msg } = outcome {
            let h = ReplyHeaders::for_request(&req, &dest, port.mac, port.ip, client_port);
            match h.emit(tx_chunk, len) {
                Ok(n) => {
                    // n <= chunk size (2048).
                    out.set_packet(0, n as u32);
                    if msg == MessageType::Ack {
                        port.tx_durable.push(out);
                    } else {
                        port.tx_now.push(out);
                    }
                }
                Err(e) => {
                    ws.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "reply frame does not fit its chunk");
                    port.free.push(out);
                }
            }
        } else {
            // One worker per backend in this version, so Handoff cannot occur.
            port.free.push(out);
        }
        port.recycle.push(f);
    }
    rx.release();
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

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
