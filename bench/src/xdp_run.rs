//! The AF_XDP I/O shell around [`Generator`] (`tandem-bench dora --backend xdp`), and the
//! generator's own ceiling (`tandem-bench ceiling`): how many requests per second it can put on
//! the wire when nothing answers.
//!
//! ```text
//! # in the relay's namespace (10.77.0.2 on eth1), tandemd at 10.77.0.1; pin the generator to
//! # a core of its own (it busy-polls):
//! taskset -c 1 tandem-bench dora --backend xdp --interface eth1 --server 10.77.0.1 \
//!     --relay 10.77.0.2 --flat-out --duration 5 --server-pid "$(pidof tandemd)"
//! # its ceiling: DISCOVERs into 10.77.0.99, where nothing answers
//! ip neigh replace 10.77.0.99 lladdr 02:00:00:00:00:00 dev eth1 nud permanent
//! taskset -c 1 tandem-bench ceiling --backend xdp --interface eth1 --server 10.77.0.99 --duration 5
//! ```
//!
//! Direct path (`dora --direct`, [`Endpoint::Direct`]): the generator plays clients on the
//! server's link. Requests without ciaddr leave as Ethernet broadcasts from the interface's MAC
//! (every simulated client shares it; chaddr carries the simulated MAC) and IPv4 0.0.0.0:68 to
//! 255.255.255.255:67; RELEASE and RENEWING REQUEST leave unicast from ciaddr:68 to the server
//! id:67 at the server's MAC. The steering program is loaded for port 68 and every UDP frame to
//! port 68 is a reply for the generator, whatever its destination MAC and address (broadcast,
//! or unicast to a client's ciaddr): so renewals work against a server that sends its unicast
//! ACK to the MAC the request came from (tandemd on AF_XDP). A server on the kernel's stack
//! first ARPs for ciaddr, which nobody answers (the addresses are not on the interface), and
//! its ACKs never leave: those renewals are lost.
//!
//! Set-up ([`XdpIo::open`]), in this order, each step with its own error:
//! 1. the interface: `--interface`, else the one the route to the server leaves by
//!    (`/proc/net/route`); it must be up, and for `dora` the relay address must be one of its
//!    addresses (the server's ARP request for giaddr is answered by the kernel);
//! 2. privileges and locked memory ([`check_privileges`]);
//! 3. the server's MAC: `--server-mac`, else the neighbour-table entry of the next hop
//!    (`/proc/net/arp`); for `dora`, after a UDP probe to the server's discard port (9) if the
//!    entry is missing, waiting at most 1 s; the ceiling never probes and falls back to
//!    [`BLACKHOLE_MAC`]; on the direct path a missing MAC is an error only when the mix sends
//!    unicast (RELEASE, RENEWING REQUEST), and said when the run starts;
//! 4. the steering program of `tandem-ebpf` loaded for the relay port (68 when direct), one
//!    AF_XDP socket per receive queue of the interface, each registered in the XSKMAP, then the
//!    program attached (native, else generic with `--xdp-mode auto`).
//!
//! Queues: every receive queue gets its own socket and UMEM, because a socket only receives
//! from the queue it is bound to and the NIC (or veth) picks the queue of each reply; requests
//! leave through the socket of `--queue` (default 0).
//!
//! Per loop iteration ([`XdpIo::run_dora`]): take up to [`RX_BATCH`] frames from every RX ring,
//! check each with [`UdpFrame::new_checked`] (frames to another address or port than the relay's
//! are counted in [`XdpReport::not_for_us`]), copy the DHCP payload out and stamp it with the
//! clock, give the chunks back to the fill ring, then hand the payloads to
//! [`Generator::on_reply`], fire the timers and start what is due. Every request the generator
//! sends is written as a whole Ethernet/IPv4/UDP frame into a free UMEM chunk
//! ([`write_request_frame`]); the iteration ends by putting the frames on the TX ring and kicking
//! it once. While exchanges are outstanding the loop never sleeps (it owns its core: run the
//! server on another); otherwise it waits in `poll(2)` on the sockets until the next start or
//! timer is due (it spins instead when that is less than a millisecond away, below `poll`'s
//! resolution, so paced starts keep their spacing).
//!
//! Why copy the payload out of the RX chunk: answering a reply may send a request, which needs
//! the UMEM writable while the reply's chunk is borrowed. A DHCP reply is a few hundred bytes;
//! the copy is cheaper than the bookkeeping that would avoid it.
//!
//! The program is detached when the run ends, and on every error path (the [`Steering`] detaches
//! when dropped; the kernel also drops its link if the process dies).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tandem_dataplane::frame::{FrameError, ReplyHeaders, UdpFrame};
use tandem_dataplane::xdp_worker::{
    check_privileges, interface_info, parse_mac, InterfaceInfo, XdpSetupError, CHUNK_SIZE,
};
use tandem_dataplane::xsk::{
    BindMode, CompletionRing, Frame, SocketConfig, Umem, UmemConfig, XskError, XskSocket,
};
use tandem_ebpf::{AttachedMode, Counters as ProgramCounters, SteerError, Steering, XdpMode};

use crate::cpu;
use crate::dora::{Config, ConfigError, Generator, Path, Tx, Via};
use crate::packet::{build_request, client_mac, Ident, RequestKind, REQUEST_LEN};
use crate::run::{
    bind_client, build_report, progress, udp_destination, CpuStart, Endpoint, Outcome, RunError,
    RunOptions, Snapshot, SysError, CLIENT_PORT, SERVER_PORT,
};
use tandem_dataplane::frame::BROADCAST_MAC;

const NANOS: u64 = 1_000_000_000;
/// Most frames taken from one RX ring before the timers and the pacer get a turn.
pub const RX_BATCH: u32 = 256;
/// Destination MAC of ceiling frames when neither `--server-mac` nor a neighbour entry gives
/// one: a locally administered unicast address that no interface should carry, so the frames
/// leave the interface and the next hop drops them at once.
pub const BLACKHOLE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x00];
/// Port of the UDP probe that makes the kernel resolve the next hop (discard).
const PROBE_PORT: u16 = 9;
/// How long the neighbour entry may take to appear after the probe.
const RESOLVE_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for sent frames to leave when a run ends.
const DRAIN_WAIT: Duration = Duration::from_millis(200);
/// IPv4 time to live of request frames (a relay forwards with a fresh TTL).
const TTL: u8 = 64;

/// Which I/O the generator uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One UDP socket bound to the relay address (the kernel's stack both ways).
    Udp,
    /// AF_XDP: frames built in user space, replies steered past the kernel's stack.
    Xdp,
    /// AF_XDP if it can be set up, else UDP (the reason goes to stderr).
    Auto,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "udp" => Ok(Backend::Udp),
            "xdp" => Ok(Backend::Xdp),
            "auto" => Ok(Backend::Auto),
            _ => Err(format!("unknown backend {s:?} (known: udp, xdp, auto)")),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Udp => "udp",
            Backend::Xdp => "xdp",
            Backend::Auto => "auto",
        })
    }
}

/// Parses an XDP attach mode: `auto` (native, else generic), `native`, `generic`.
pub fn parse_xdp_mode(s: &str) -> Result<XdpMode, String> {
    match s {
        "auto" => Ok(XdpMode::Auto),
        "native" => Ok(XdpMode::Native),
        "generic" => Ok(XdpMode::Generic),
        _ => Err(format!(
            "unknown XDP mode {s:?} (known: auto, native, generic)"
        )),
    }
}

/// Parses a MAC address (`aa:bb:cc:dd:ee:ff`) for the command line.
pub fn parse_mac_arg(s: &str) -> Result<[u8; 6], String> {
    parse_mac(s).ok_or_else(|| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// How to set up the AF_XDP backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpOptions {
    /// The interface; `None`: the one the route to the server uses.
    pub interface: Option<String>,
    /// The queue whose socket sends the requests (replies are received on every queue).
    pub queue: u32,
    /// The next hop's MAC (the server's on a shared link); `None`: from the neighbour table.
    pub server_mac: Option<[u8; 6]>,
    /// How to attach the steering program.
    pub mode: XdpMode,
    /// UMEM chunks (of [`CHUNK_SIZE`] bytes) per socket.
    pub frame_count: u32,
    /// Entries of each ring (a power of two; at most half of `frame_count` is lent to the fill
    /// ring).
    pub ring_size: u32,
}

impl Default for XdpOptions {
    /// Route's interface, queue 0, MAC from the neighbour table, native else generic, 4096
    /// chunks and 2048-entry rings (8 MiB of UMEM per queue).
    fn default() -> Self {
        XdpOptions {
            interface: None,
            queue: 0,
            server_mac: None,
            mode: XdpMode::Auto,
            frame_count: 4096,
            ring_size: 2048,
        }
    }
}

/// Why the AF_XDP backend could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpRunError {
    /// The generator's settings are unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// No `--interface` and no route to the server.
    #[error("no route to {server} in /proc/net/route; give --interface")]
    NoRoute {
        /// The server.
        server: Ipv4Addr,
    },
    /// The interface, the privileges, the locked memory or an AF_XDP socket.
    #[error("{0}")]
    Setup(#[from] XdpSetupError),
    /// The relay address is not on the interface.
    #[error(
        "the relay address {relay} is not an address of {ifname} (it has {have}): the server \
         sends its replies to giaddr, so the address must be on the interface the replies \
         arrive on; add it (ip addr add {relay}/PREFIX dev {ifname}) or give --relay"
    )]
    RelayNotLocal {
        /// The relay address.
        relay: Ipv4Addr,
        /// The interface.
        ifname: String,
        /// Its addresses, comma-separated.
        have: String,
    },
    /// The generator's path does not match the backend's endpoint (a programming error of the
    /// caller).
    #[error(
        "the generator's path ({path:?}) does not match the endpoint the backend was opened for"
    )]
    PathMismatch {
        /// The generator's.
        path: Path,
    },
    /// The direct clients' UDP socket (ceiling over UDP) could not be set up.
    #[error("{0}")]
    Udp(#[from] RunError),
    /// The next hop's MAC could not be found.
    #[error(
        "cannot resolve the MAC address of {next_hop} on {ifname}: {detail}; give --server-mac"
    )]
    NoServerMac {
        /// The next hop (the server, or the gateway to it).
        next_hop: Ipv4Addr,
        /// The interface.
        ifname: String,
        /// What was tried.
        detail: String,
    },
    /// Loading, attaching or filling the maps of the steering program failed.
    #[error("XDP steering program: {0}")]
    Steering(#[from] SteerError),
    /// An AF_XDP ring or socket operation failed during the run.
    #[error("AF_XDP: {0}")]
    Xsk(#[from] XskError),
    /// A socket, poll or `/proc` failure.
    #[error(transparent)]
    Sys(#[from] SysError),
}

// ---------------------------------------------------------------------------------------------
// Routes and neighbours

/// One usable IPv4 route of `/proc/net/route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Outgoing interface.
    pub iface: String,
    /// Destination network.
    pub dest: Ipv4Addr,
    /// Gateway (`None`: on-link).
    pub gateway: Option<Ipv4Addr>,
    /// Netmask.
    pub mask: Ipv4Addr,
    /// Metric (lower wins among equal prefixes).
    pub metric: u32,
}

/// An address as `/proc/net/route` prints it: the 32-bit word in memory order, in hex.
fn proc_addr(hex: &str) -> Option<Ipv4Addr> {
    let v = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(v.to_ne_bytes()))
}

/// The routes that are up, from the text of `/proc/net/route` (malformed lines are skipped).
pub fn parse_routes(text: &str) -> Vec<Route> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & RTF_UP == 0 {
                return None;
            }
            let gw = proc_addr(f[2])?;
            Some(Route {
                iface: f[0].to_string(),
                dest: proc_addr(f[1])?,
                gateway: (flags & RTF_GATEWAY != 0 && !gw.is_unspecified()).then_some(gw),
                mask: proc_addr(f[7])?,
                metric: f[6].parse().ok()?,
            })
        })
        .collect()
}

/// The route the kernel would pick for `dst` among `routes` (longest prefix, then lowest
/// metric), optionally only through interface `iface`: (interface, next hop).
pub fn next_hop(
    routes: &[Route],
    dst: Ipv4Addr,
    iface: Option<&str>,
) -> Option<(String, Ipv4Addr)> {
    routes
        .iter()
        .filter(|r| iface.is_none_or(|i| r.iface == i))
        .filter(|r| u32::from(dst) & u32::from(r.mask) == u32::from(r.dest) & u32::from(r.mask))
        .max_by_key(|r| (u32::from(r.mask).count_ones(), std::cmp::Reverse(r.metric)))
        .map(|r| (r.iface.clone(), r.gateway.unwrap_or(dst)))
}

/// The MAC of the complete entry for `ip` on `iface` in the text of `/proc/net/arp`.
pub fn parse_neighbour(text: &str, ip: Ipv4Addr, iface: &str) -> Option<[u8; 6]> {
    const ATF_COM: u32 = 0x2;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[5] != iface || f[0].parse::<Ipv4Addr>().ok()? != ip {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        (flags & ATF_COM != 0).then(|| parse_mac(f[3])).flatten()
    })
}

fn read_proc(path: &'static str) -> Result<String, XdpRunError> {
    Ok(std::fs::read_to_string(path).map_err(SysError::io(path))?)
}

/// The neighbour-table MAC of `next_hop` on `ifname`; with `probe`, a missing entry is asked for
/// by sending one empty UDP datagram to `probe` (again every 250 ms) and waiting up to 1 s.
fn resolve_mac(
    ifname: &str,
    next_hop: Ipv4Addr,
    probe: Option<SocketAddrV4>,
) -> Result<[u8; 6], XdpRunError> {
    if let Some(m) = parse_neighbour(&read_proc("/proc/net/arp")?, next_hop, ifname) {
        return Ok(m);
    }
    let Some(probe) = probe else {
        return Err(XdpRunError::NoServerMac {
            next_hop,
            ifname: ifname.to_string(),
            detail: "no complete entry in the neighbour table".into(),
        });
    };
    let sock =
        UdpSocket::bind("0.0.0.0:0").map_err(SysError::io("UDP socket for the neighbour probe"))?;
    let start = Instant::now();
    let mut next_probe = start;
    while start.elapsed() < RESOLVE_WAIT {
        if Instant::now() >= next_probe {
            // A failed send (no route yet, EHOSTUNREACH from an earlier failed resolution) is
            // retried with the next probe; the table decides.
            let _ = sock.send_to(&[], probe);
            next_probe += Duration::from_millis(250);
        }
        std::thread::sleep(Duration::from_millis(5));
        if let Some(m) = parse_neighbour(&read_proc("/proc/net/arp")?, next_hop, ifname) {
            return Ok(m);
        }
    }
    Err(XdpRunError::NoServerMac {
        next_hop,
        ifname: ifname.to_string(),
        detail: format!(
            "no complete neighbour entry {} ms after UDP probes to {probe}",
            RESOLVE_WAIT.as_millis()
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Frames

/// The Ethernet/IPv4/UDP headers of every request: from our interface's MAC and the relay
/// address (and port) to the next hop's MAC and the server (UDP checksum computed).
pub fn request_headers(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    relay: SocketAddrV4,
    server: SocketAddrV4,
) -> ReplyHeaders {
    ReplyHeaders {
        src_mac,
        dst_mac,
        vlan: None,
        src_ip: *relay.ip(),
        dst_ip: *server.ip(),
        src_port: relay.port(),
        dst_port: server.port(),
        ttl: TTL,
        udp_checksum: true,
    }
}

/// The headers of direct requests without ciaddr: from our interface's MAC and 0.0.0.0:68 to
/// ff:ff:ff:ff:ff:ff and 255.255.255.255:67.
pub fn broadcast_headers(src_mac: [u8; 6]) -> ReplyHeaders {
    ReplyHeaders {
        src_mac,
        dst_mac: BROADCAST_MAC,
        vlan: None,
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: CLIENT_PORT,
        dst_port: SERVER_PORT,
        ttl: TTL,
        udp_checksum: true,
    }
}

/// The headers of direct requests with ciaddr: from our interface's MAC and `from`:68 to the
/// server's MAC and `to`:67.
pub fn unicast_headers(
    src_mac: [u8; 6],
    server_mac: [u8; 6],
    from: Ipv4Addr,
    to: Ipv4Addr,
) -> ReplyHeaders {
    ReplyHeaders {
        src_mac,
        dst_mac: server_mac,
        vlan: None,
        src_ip: from,
        dst_ip: to,
        src_port: CLIENT_PORT,
        dst_port: SERVER_PORT,
        ttl: TTL,
        udp_checksum: true,
    }
}

/// The headers of every request frame, by [`Via`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RequestHeaders {
    /// Relay path: every request relay → server ([`request_headers`]).
    Relay(ReplyHeaders),
    /// Direct path, from the interface's MAC: broadcasts, and unicasts to the server's MAC if
    /// it is known.
    Direct {
        /// Our interface's MAC.
        src_mac: [u8; 6],
        /// The server's MAC (`None`: unknown, unicast requests cannot be sent).
        server_mac: Option<[u8; 6]>,
    },
}

impl RequestHeaders {
    /// The headers of a request sent by `route`; `None` if this path cannot send it (a relayed
    /// route on the direct path or the reverse, or a unicast without the server's MAC).
    pub fn for_route(&self, route: Via) -> Option<ReplyHeaders> {
        match (self, route) {
            (RequestHeaders::Relay(h), Via::Relayed) => Some(*h),
            (RequestHeaders::Direct { src_mac, .. }, Via::Broadcast) => {
                Some(broadcast_headers(*src_mac))
            }
            (
                RequestHeaders::Direct {
                    src_mac,
                    server_mac: Some(m),
                },
                Via::Unicast { from, to },
            ) => Some(unicast_headers(*src_mac, *m, from, to)),
            _ => None,
        }
    }

    /// The destination MAC reported as `server_mac`: the relay path's next hop, the direct
    /// path's server (`ff:ff:ff:ff:ff:ff` when unknown: only broadcasts are sent).
    fn next_hop_mac(&self) -> [u8; 6] {
        match self {
            RequestHeaders::Relay(h) => h.dst_mac,
            RequestHeaders::Direct { server_mac, .. } => server_mac.unwrap_or(BROADCAST_MAC),
        }
    }
}

/// Writes `payload` (a DHCP message) behind the headers `hdr` into `chunk`, checksums included;
/// returns the frame length.
pub fn write_request_frame(
    chunk: &mut [u8],
    hdr: &ReplyHeaders,
    payload: &[u8],
) -> Result<usize, FrameError> {
    let hl = hdr.header_len();
    chunk
        .get_mut(hl..hl + payload.len())
        .ok_or(FrameError::BufferTooSmall)?
        .copy_from_slice(payload);
    hdr.emit(chunk, payload.len())
}

// ---------------------------------------------------------------------------------------------
// The sockets

/// One AF_XDP socket with its chunks outside the kernel.
struct Port {
    sock: XskSocket,
    /// Chunks free for request frames.
    free: Vec<Frame>,
    /// Received chunks to lend to the fill ring again.
    recycle: Vec<Frame>,
    /// Written request frames not yet on the TX ring (FIFO).
    queued: Vec<Frame>,
}

impl Port {
    fn open(info: &InterfaceInfo, queue: u32, xo: &XdpOptions) -> Result<Port, XdpSetupError> {
        let err = |source: XskError| XdpSetupError::Socket {
            ifname: info.name.clone(),
            queue,
            source,
        };
        let mut umem = Umem::new(&UmemConfig {
            frame_size: CHUNK_SIZE,
            frame_count: xo.frame_count,
        })
        .map_err(err)?;
        let mut free = umem.take_frames();
        let mut sock = XskSocket::new(
            umem,
            info.index,
            queue,
            &SocketConfig {
                fill_size: xo.ring_size,
                completion_size: xo.ring_size,
                rx_size: xo.ring_size,
                tx_size: xo.ring_size,
                mode: BindMode::Copy,
            },
        )
        .map_err(err)?;
        let lend = xo.ring_size.min(xo.frame_count / 2);
        sock.parts().fill.fill_from(&mut free, lend);
        let cap = xo.frame_count as usize;
        Ok(Port {
            sock,
            free,
            recycle: Vec::with_capacity(cap),
            queued: Vec::with_capacity(cap),
        })
    }
}

/// Counts of the AF_XDP shell, kept while running.
#[derive(Clone, Debug, Default)]
struct ShellCounts {
    rx_frames: u64,
    unparsed: u64,
    not_for_us: u64,
    other_source: u64,
    tx_frames: u64,
    tx_completed: u64,
    tx_kicks: u64,
    tx_kick_errors: u64,
    no_tx_chunk: u64,
    frame_errors: u64,
}

/// What the AF_XDP backend saw during a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct XdpReport {
    /// The interface.
    pub interface: String,
    /// How the steering program ran (`native` or `generic`).
    pub attach_mode: String,
    /// Receive queues, one AF_XDP socket each.
    pub queues: u32,
    /// The queue whose socket sent the requests.
    pub tx_queue: u32,
    /// Destination MAC of the request frames.
    pub server_mac: String,
    /// The steering program's counters over the run (see `tandem_ebpf::Counters`): `redirect`
    /// counts the replies that went to the AF_XDP sockets, `redirect_failed` those the kernel's
    /// stack got instead.
    pub program: BTreeMap<&'static str, u64>,
    /// Frames taken from the RX rings.
    pub rx_frames: u64,
    /// Of those: not Ethernet/IPv4/UDP.
    pub unparsed: u64,
    /// Of those: to another address or port than the relay's (not given to the generator).
    pub not_for_us: u64,
    /// Request frames put on the TX ring.
    pub tx_frames: u64,
    /// Request frames the kernel reported sent (completion ring).
    pub tx_completed: u64,
    /// TX wake-ups (`sendto`).
    pub tx_kicks: u64,
    /// TX wake-ups that failed with a lasting error.
    pub tx_kick_errors: u64,
    /// Requests not sent because no UMEM chunk was free.
    pub no_tx_chunk: u64,
    /// Requests that did not fit their chunk (never expected).
    pub frame_errors: u64,
    /// Kernel, summed over the sockets: frames dropped.
    pub xsk_rx_dropped: u64,
    /// Kernel: frames dropped because the fill ring was empty.
    pub xsk_rx_fill_ring_empty: u64,
    /// Kernel: frames dropped because the RX ring was full.
    pub xsk_rx_ring_full: u64,
    /// Kernel: invalid TX descriptors.
    pub xsk_tx_invalid: u64,
}

impl XdpReport {
    /// Lines for the end of the result table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let p = |k: &str| self.program.get(k).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "AF_XDP        {} ({} XDP, {} queue{}, TX on queue {}), next hop {}",
            self.interface,
            self.attach_mode,
            self.queues,
            if self.queues == 1 { "" } else { "s" },
            self.tx_queue,
            self.server_mac
        );
        let _ = writeln!(
            s,
            "  frames      rx {}  tx {} (completed {}, kicks {})  not for us {}  unparsed {}  no chunk {}",
            self.rx_frames,
            self.tx_frames,
            self.tx_completed,
            self.tx_kicks,
            self.not_for_us,
            self.unparsed,
            self.no_tx_chunk
        );
        let _ = writeln!(
            s,
            "  program     redirect {}  redirect_failed {}  passed {}  kernel drops {} (fill ring empty {}, RX ring full {})",
            p("redirect"),
            p("redirect_failed"),
            p("not_ipv4") + p("other_port") + p("not_udp") + p("runt") + p("bad_ipv4") + p("fragment"),
            self.xsk_rx_dropped,
            self.xsk_rx_fill_ring_empty,
            self.xsk_rx_ring_full
        );
        s
    }
}

/// Queues `tx` frames: each request goes into a free chunk of the sending socket's UMEM.
struct XdpTx<'a> {
    umem: &'a mut Umem,
    completion: &'a mut CompletionRing,
    free: &'a mut Vec<Frame>,
    queued: &'a mut Vec<Frame>,
    hdrs: &'a RequestHeaders,
    counts: &'a mut ShellCounts,
}

impl Tx for XdpTx<'_> {
    fn send(&mut self, payload: &[u8], route: Via) -> bool {
        let Some(hdr) = self.hdrs.for_route(route) else {
            self.counts.frame_errors += 1;
            return false;
        };
        if self.free.is_empty() {
            self.counts.tx_completed += u64::from(self.completion.drain_into(self.free, u32::MAX));
        }
        let Some(mut f) = self.free.pop() else {
            self.counts.no_tx_chunk += 1;
            return false;
        };
        let written = self
            .umem
            .chunk_mut(&f)
            .ok_or(FrameError::BufferTooSmall)
            .and_then(|chunk| write_request_frame(chunk, &hdr, payload));
        match written {
            Ok(n) => {
                // n <= CHUNK_SIZE (the chunk's length bounds the frame).
                f.set_packet(0, n as u32);
                self.queued.push(f);
                true
            }
            Err(_) => {
                self.counts.frame_errors += 1;
                self.free.push(f);
                false
            }
        }
    }
}

/// Replies copied out of the RX rings in one iteration: (receive time, range in `bytes`).
#[derive(Default)]
struct RxBuf {
    bytes: Vec<u8>,
    items: Vec<(u64, usize, usize)>,
}

/// The AF_XDP backend, set up on one interface: the steering program attached, one socket per
/// receive queue. Dropping it detaches the program and closes the sockets.
pub struct XdpIo {
    // Field order is drop order: detach the program before the sockets close.
    steering: Steering,
    ports: Vec<Port>,
    tx: usize,
    info: InterfaceInfo,
    mode: AttachedMode,
    hdrs: RequestHeaders,
    server: SocketAddrV4,
    endpoint: Endpoint,
    /// Direct path without the server's MAC: why (said when a mix needs unicast).
    no_server_mac: Option<XdpRunError>,
    baseline: ProgramCounters,
    counts: ShellCounts,
}

impl fmt::Debug for XdpIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpIo")
            .field("interface", &self.info.name)
            .field("mode", &self.mode)
            .field("queues", &self.ports.len())
            .field("headers", &self.hdrs)
            .finish_non_exhaustive()
    }
}

/// What the set-up is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A `dora` run: the relay address must be on the interface, the next hop is resolved
    /// (probing if needed).
    Dora,
    /// A ceiling run: requests go nowhere; the next hop's MAC is taken from `--server-mac` or
    /// the neighbour table, else [`BLACKHOLE_MAC`].
    Ceiling,
}

impl XdpIo {
    /// Sets the backend up for requests from `endpoint` (a relay address, or clients on the
    /// direct interface, which overrides `xo.interface`) to `server` (see the module docs for
    /// the steps). Nothing is attached when this fails.
    pub fn open(
        server: SocketAddrV4,
        endpoint: &Endpoint,
        xo: &XdpOptions,
        purpose: Purpose,
    ) -> Result<XdpIo, XdpRunError> {
        let routes = parse_routes(&read_proc("/proc/net/route")?);
        let ifname = match (endpoint, &xo.interface) {
            (Endpoint::Direct { interface }, _) => interface.clone(),
            (Endpoint::Relay(_), Some(i)) => i.clone(),
            (Endpoint::Relay(_), None) => {
                next_hop(&routes, *server.ip(), None)
                    .ok_or(XdpRunError::NoRoute {
                        server: *server.ip(),
                    })?
                    .0
            }
        };
        let info = interface_info(&ifname)?;
        if !info.up {
            return Err(XdpSetupError::Down { ifname }.into());
        }
        if xo.queue >= info.rx_queues {
            return Err(XdpSetupError::NoQueue {
                ifname,
                queues: info.rx_queues,
                queue: xo.queue,
            }
            .into());
        }
        if let (Purpose::Dora, Endpoint::Relay(relay)) = (purpose, endpoint) {
            if !info.ipv4.contains(relay.ip()) {
                let have: Vec<String> = info.ipv4.iter().map(Ipv4Addr::to_string).collect();
                return Err(XdpRunError::RelayNotLocal {
                    relay: *relay.ip(),
                    ifname,
                    have: if have.is_empty() {
                        "no IPv4 address".into()
                    } else {
                        have.join(", ")
                    },
                });
            }
        }
        let per_socket = u64::from(CHUNK_SIZE) * u64::from(xo.frame_count);
        check_privileges(per_socket * u64::from(info.rx_queues))?;
        let hop =
            next_hop(&routes, *server.ip(), Some(&ifname)).map_or(*server.ip(), |(_, hop)| hop);
        let probe = Some(SocketAddrV4::new(*server.ip(), PROBE_PORT));
        let mut no_server_mac = None;
        let (hdrs, port) = match endpoint {
            Endpoint::Relay(relay) => {
                let dst_mac = match (xo.server_mac, purpose) {
                    (Some(m), _) => m,
                    (None, Purpose::Dora) => resolve_mac(&ifname, hop, probe)?,
                    (None, Purpose::Ceiling) => {
                        resolve_mac(&ifname, hop, None).unwrap_or(BLACKHOLE_MAC)
                    }
                };
                let h = request_headers(info.mac, dst_mac, *relay, server);
                (RequestHeaders::Relay(h), relay.port())
            }
            Endpoint::Direct { .. } => {
                // Only RELEASE and RENEWING REQUEST need the server's MAC; the probe needs an
                // address on the interface, which direct clients need not have.
                let m = match (xo.server_mac, purpose) {
                    (Some(m), _) => Some(m),
                    (None, Purpose::Dora) => {
                        let probe = probe.filter(|_| !info.ipv4.is_empty());
                        match resolve_mac(&ifname, hop, probe) {
                            Ok(m) => Some(m),
                            Err(e) => {
                                no_server_mac = Some(e);
                                None
                            }
                        }
                    }
                    (None, Purpose::Ceiling) => None,
                };
                let h = RequestHeaders::Direct {
                    src_mac: info.mac,
                    server_mac: m,
                };
                (h, CLIENT_PORT)
            }
        };

        let mut steering = Steering::load(port)?;
        let mut ports = Vec::with_capacity(info.rx_queues as usize);
        for q in 0..info.rx_queues {
            let port = Port::open(&info, q, xo)?;
            steering.set_xsk(q, port.sock.as_fd())?;
            ports.push(port);
        }
        let mode = steering.attach(&ifname, xo.mode)?;
        let baseline = steering.counters()?;
        Ok(XdpIo {
            steering,
            ports,
            tx: xo.queue as usize,
            hdrs,
            info,
            mode,
            server,
            endpoint: endpoint.clone(),
            no_server_mac,
            baseline,
            counts: ShellCounts::default(),
        })
    }

    /// The interface the backend runs on.
    pub fn interface(&self) -> &str {
        &self.info.name
    }

    /// How the steering program runs.
    pub fn attach_mode(&self) -> AttachedMode {
        self.mode
    }

    /// The headers of the request frames.
    pub fn headers(&self) -> &RequestHeaders {
        &self.hdrs
    }

    /// The sender for the generator: writes into the TX socket's UMEM.
    fn sender(&mut self) -> XdpTx<'_> {
        let port = &mut self.ports[self.tx];
        let p = port.sock.parts();
        XdpTx {
            umem: p.umem,
            completion: p.completion,
            free: &mut port.free,
            queued: &mut port.queued,
            hdrs: &self.hdrs,
            counts: &mut self.counts,
        }
    }

    /// Takes up to [`RX_BATCH`] frames from every RX ring; copies the DHCP payloads for the
    /// relay (for the direct clients: every UDP frame to port 68) into `buf` (stamped by `now`)
    /// and lends the chunks to the fill rings again. Returns true if some ring had a full batch
    /// (more may be waiting).
    fn receive(&mut self, now: &impl Fn() -> u64, buf: &mut RxBuf) -> bool {
        buf.bytes.clear();
        buf.items.clear();
        let mut full = false;
        let ours = |ip: Ipv4Addr, port: u16| match &self.endpoint {
            Endpoint::Relay(r) => ip == *r.ip() && port == r.port(),
            Endpoint::Direct { .. } => port == CLIENT_PORT,
        };
        let server_ip = *self.server.ip();
        for port in &mut self.ports {
            let p = port.sock.parts();
            let mut rx = p.rx.peek(RX_BATCH);
            let mut n = 0;
            for f in rx.by_ref() {
                n += 1;
                let t = now();
                let pkt = p.umem.packet(&f).unwrap_or(&[]);
                match UdpFrame::new_checked(pkt) {
                    Err(_) => self.counts.unparsed += 1,
                    Ok(u) if !ours(u.dst_ip(), u.dst_port()) => self.counts.not_for_us += 1,
                    Ok(u) => {
                        if u.src_ip() != server_ip {
                            self.counts.other_source += 1;
                        }
                        let start = buf.bytes.len();
                        buf.bytes.extend_from_slice(u.payload());
                        buf.items.push((t, start, buf.bytes.len()));
                    }
                }
                port.recycle.push(f);
            }
            rx.release();
            self.counts.rx_frames += n;
            full |= n >= u64::from(RX_BATCH);
            if !port.recycle.is_empty() {
                p.fill.fill_from(&mut port.recycle, u32::MAX);
            }
            if p.fill.needs_wakeup() {
                // Zero timeout: only wakes the driver to look at the fill ring.
                let _ = p.poll(Duration::ZERO);
            }
        }
        full
    }

    /// Puts the queued request frames on the TX ring (what does not fit stays queued), kicks it
    /// once, and takes back the chunks the kernel has sent.
    fn flush(&mut self) {
        let port = &mut self.ports[self.tx];
        let p = port.sock.parts();
        if !port.queued.is_empty() {
            // queued.len() <= frame_count, a u32.
            let mut b = p.tx.reserve(port.queued.len() as u32);
            let k = (b.remaining() as usize).min(port.queued.len());
            for f in port.queued.drain(..k) {
                match b.push(f) {
                    Ok(()) => self.counts.tx_frames += 1,
                    Err(f) => {
                        self.counts.frame_errors += 1;
                        port.free.push(f);
                    }
                }
            }
            b.commit();
        }
        if p.tx.pending() > 0 {
            match p.tx.kick() {
                Ok(calls) => self.counts.tx_kicks += u64::from(calls),
                Err(_) => self.counts.tx_kick_errors += 1,
            }
        }
        self.counts.tx_completed += u64::from(p.completion.drain_into(&mut port.free, u32::MAX));
    }

    /// Frames written but not yet sent by the kernel.
    fn tx_backlog(&mut self) -> usize {
        let port = &mut self.ports[self.tx];
        port.queued.len() + port.sock.parts().tx.pending() as usize
    }

    /// Waits up to `timeout` for a frame on any socket.
    fn wait(&self, timeout: Duration) -> Result<(), XdpRunError> {
        let mut fds: Vec<PollFd<'_>> = self
            .ports
            .iter()
            .map(|p| PollFd::new(p.sock.as_fd(), PollFlags::POLLIN))
            .collect();
        // At least 1 ms (poll's resolution), at most u16::MAX ms; callers wake at least once a
        // second anyway.
        let ms = timeout.as_millis().clamp(1, u128::from(u16::MAX)) as u16;
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(SysError::io("poll(2) on the AF_XDP sockets")(e.into()).into()),
        }
    }

    /// Lets the last frames leave (at most [`DRAIN_WAIT`]).
    fn drain(&mut self) {
        let until = Instant::now() + DRAIN_WAIT;
        while self.tx_backlog() > 0 && Instant::now() < until {
            self.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
        self.flush();
    }

    /// Detaches the program and reports what the backend saw.
    fn finish(mut self) -> XdpReport {
        let program = match self.steering.counters() {
            Ok(c) => c.since(&self.baseline).named().into_iter().collect(),
            Err(e) => {
                eprintln!("tandem-bench: cannot read the XDP program's counters: {e}");
                BTreeMap::new()
            }
        };
        if let Err(e) = self.steering.detach() {
            eprintln!(
                "tandem-bench: detaching XDP from {} failed: {e} (it is detached when the \
                 program is unloaded, at exit)",
                self.info.name
            );
        }
        let (mut dropped, mut fill_empty, mut ring_full, mut tx_invalid) = (0, 0, 0, 0);
        for p in &self.ports {
            if let Ok(s) = p.sock.statistics() {
                dropped += s.rx_dropped;
                fill_empty += s.rx_fill_ring_empty_descs;
                ring_full += s.rx_ring_full;
                tx_invalid += s.tx_invalid_descs;
            }
        }
        let c = &self.counts;
        XdpReport {
            interface: self.info.name.clone(),
            attach_mode: self.mode.to_string(),
            queues: self.ports.len() as u32,
            tx_queue: self.tx as u32,
            server_mac: format_mac(&self.hdrs.next_hop_mac()),
            program,
            rx_frames: c.rx_frames,
            unparsed: c.unparsed,
            not_for_us: c.not_for_us,
            tx_frames: c.tx_frames,
            tx_completed: c.tx_completed,
            tx_kicks: c.tx_kicks,
            tx_kick_errors: c.tx_kick_errors,
            no_tx_chunk: c.no_tx_chunk,
            frame_errors: c.frame_errors,
            xsk_rx_dropped: dropped,
            xsk_rx_fill_ring_empty: fill_empty,
            xsk_rx_ring_full: ring_full,
            xsk_tx_invalid: tx_invalid,
        }
    }

    /// Runs the generator over this backend until it stops by itself (sending period over and
    /// every exchange finished, or the hard stop), then detaches the program.
    pub fn run_dora(mut self, cfg: Config, opts: &RunOptions) -> Result<XdpOutcome, XdpRunError> {
        if cfg.path != self.endpoint.path() || opts.endpoint != self.endpoint {
            return Err(XdpRunError::PathMismatch { path: cfg.path });
        }
        if cfg.mix.sends_unicast() {
            if let Some(e) = self.no_server_mac.take() {
                return Err(e);
            }
        }
        let mut gen = Generator::new(cfg)?;
        let start = CpuStart::now(opts.server_pid).map_err(SysError::server_pid)?;
        let t0 = Instant::now();
        let now = || u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut buf = RxBuf {
            bytes: Vec::with_capacity(RX_BATCH as usize * 2048),
            items: Vec::with_capacity(RX_BATCH as usize),
        };
        let mut next_progress = NANOS;
        let mut last = Snapshot::default();
        let end = loop {
            let more = self.receive(&now, &mut buf);
            {
                let mut tx = self.sender();
                for &(t, s, e) in &buf.items {
                    gen.on_reply(t, &buf.bytes[s..e], &mut tx);
                }
                let t = now();
                gen.on_timers(t, &mut tx);
                gen.start_due(t, &mut tx);
            }
            self.flush();
            let t = now();
            if opts.progress && t >= next_progress {
                last = progress(&gen, t, &last, " (AF_XDP)");
                next_progress += NANOS;
            }
            if gen.done(t) {
                gen.finish(t);
                break t;
            }
            if more {
                continue;
            }
            if gen.outstanding() > 0 || self.tx_backlog() > 0 {
                // Busy-poll: replies are due, and the generator owns its core. Yielding lets
                // kernel threads on this core (the journal's fsync work, softirq threads) run
                // at once instead of after a scheduler slice; without others it returns
                // immediately.
                std::thread::yield_now();
                continue;
            }
            let mut wake = gen.next_wakeup(t);
            if opts.progress {
                wake = wake.min(next_progress);
            }
            if wake > t {
                if wake - t < 1_000_000 {
                    // poll(2) cannot sleep less than a millisecond: spin to keep the pace.
                    std::thread::yield_now();
                    continue;
                }
                self.wait(Duration::from_nanos(wake - t))?;
            }
        };
        self.drain();
        let other_source = self.counts.other_source;
        let recv_errors = self.counts.unparsed;
        let xdp = self.finish();
        let report = build_report(&gen, opts, end, &start, other_source, recv_errors);
        Ok(XdpOutcome {
            outcome: Outcome {
                held: gen.held_leases().collect(),
                report,
            },
            xdp,
        })
    }

    /// Sends DISCOVERs flat out for `co.duration` (or `co.max_frames`), nothing expected back,
    /// and reports the rate the kernel took them at (the frames still on the TX ring when the
    /// time is up are let out, and counted, within the elapsed time).
    pub fn ceiling(mut self, co: &CeilingOptions) -> Result<CeilingReport, XdpRunError> {
        let start = CpuStart::now(None).map_err(SysError::server_pid)?;
        let t0 = Instant::now();
        let limit = co.max_frames.unwrap_or(u64::MAX);
        let mut req = RequestSource::new(co);
        let mut next_progress = Duration::from_secs(1);
        let mut last_sent = 0u64;
        let mut written = 0u64;
        // Half a TX ring per kick: the kernel sends while the next half is written.
        let burst = u64::from(self.ports[self.tx].sock.parts().tx.size() / 2).max(1);
        loop {
            let elapsed = t0.elapsed();
            if elapsed >= co.duration || self.counts.tx_completed >= limit {
                break;
            }
            {
                let mut tx = self.sender();
                for _ in 0..limit.saturating_sub(written).min(burst) {
                    let route = req.route();
                    if !tx.send(req.next_request(), route) {
                        break;
                    }
                    written += 1;
                }
            }
            self.flush();
            if co.progress && elapsed >= next_progress {
                eprintln!(
                    "[{:>5.1}s] sent {:>8}/s",
                    elapsed.as_secs_f64(),
                    self.counts.tx_completed - last_sent
                );
                last_sent = self.counts.tx_completed;
                next_progress += Duration::from_secs(1);
            }
        }
        self.drain();
        let elapsed = t0.elapsed();
        let sent = self.counts.tx_completed;
        let send_errors = self.counts.frame_errors;
        let xdp = self.finish();
        Ok(CeilingReport::new(
            Backend::Xdp,
            co,
            elapsed,
            sent,
            send_errors,
            &start,
            Some(xdp),
        ))
    }
}

/// The outcome of an AF_XDP `dora` run.
pub struct XdpOutcome {
    /// The report and the leases held, as over UDP.
    pub outcome: Outcome,
    /// What the AF_XDP backend saw.
    pub xdp: XdpReport,
}

// ---------------------------------------------------------------------------------------------
// Reports

// ---------------------------------------------------------------------------------------------
// The ceiling

/// What a ceiling run sends.
#[derive(Clone, Debug, PartialEq)]
pub struct CeilingOptions {
    /// Where the DISCOVERs go (nothing needs to listen); on the direct path they are broadcast
    /// and this is only reported.
    pub server: SocketAddrV4,
    /// The relay address (giaddr and source), or direct clients on an interface (broadcasts
    /// 0.0.0.0:68 → 255.255.255.255:67: whatever serves DHCP on that link answers them).
    pub endpoint: Endpoint,
    /// How long to send.
    pub duration: Duration,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Distinct client MACs, round robin (1 ..= 2^24).
    pub clients: u32,
    /// MAC seed byte.
    pub seed: u8,
    /// Also send option 61.
    pub client_id: bool,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
}

/// DISCOVERs for the ceiling, one per call, each from the next client with its own xid.
struct RequestSource {
    buf: [u8; REQUEST_LEN],
    n: u32,
    clients: u32,
    seed: u8,
    client_id: bool,
    path: Path,
}

impl RequestSource {
    fn new(co: &CeilingOptions) -> RequestSource {
        RequestSource {
            buf: [0; REQUEST_LEN],
            n: 0,
            clients: co.clients.max(1),
            seed: co.seed,
            client_id: co.client_id,
            path: co.endpoint.path(),
        }
    }

    /// How every request leaves (a DISCOVER: relayed, or broadcast).
    fn route(&self) -> Via {
        self.path.via(&RequestKind::Discover, Ipv4Addr::UNSPECIFIED)
    }

    fn next_request(&mut self) -> &[u8] {
        let ident = Ident {
            mac: client_mac(self.seed, self.n % self.clients),
            client_id: self.client_id,
            host_name: false,
        };
        build_request(
            &mut self.buf,
            &ident,
            self.n,
            0,
            self.path,
            &RequestKind::Discover,
        );
        self.n = self.n.wrapping_add(1);
        &self.buf
    }
}

/// The result of a ceiling run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CeilingReport {
    /// Always `"tandem-bench"`.
    pub tool: &'static str,
    /// The bench's version.
    pub version: &'static str,
    /// Always `"ceiling"`.
    pub command: &'static str,
    /// `udp` or `xdp`.
    pub backend: Backend,
    /// Destination address and port (255.255.255.255:67 on the direct path).
    pub server: String,
    /// Source address and port, or `direct on IFACE`.
    pub relay: String,
    /// Sending time, seconds.
    pub elapsed_s: f64,
    /// Frames the kernel took (UDP: `sendto` successes; AF_XDP: TX completions).
    pub frames_sent: u64,
    /// Frames per second.
    pub frames_per_s: f64,
    /// Sends that failed (UDP: errors and timeouts; AF_XDP: frames that did not fit a chunk;
    /// waiting for a free chunk is normal flat out and counted in `xdp.no_tx_chunk`).
    pub send_errors: u64,
    /// The generator's CPU use, % of one core (includes kernel work done on its behalf).
    pub generator_cpu_pct: f64,
    /// The generator's CPU time per frame sent, ns.
    pub generator_cpu_ns_per_frame: Option<f64>,
    /// Whole-host CPU use, % of one core (100 × cores = all busy).
    pub host_busy_pct: Option<f64>,
    /// CPUs on the host.
    pub host_cpus: u64,
    /// AF_XDP details (backend `xdp`).
    pub xdp: Option<XdpReport>,
}

impl CeilingReport {
    fn new(
        backend: Backend,
        co: &CeilingOptions,
        elapsed: Duration,
        sent: u64,
        send_errors: u64,
        start: &CpuStart,
        xdp: Option<XdpReport>,
    ) -> CeilingReport {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let cpu_s = start.my_cpu_s();
        CeilingReport {
            tool: "tandem-bench",
            version: env!("CARGO_PKG_VERSION"),
            command: "ceiling",
            backend,
            server: udp_destination(RequestSource::new(co).route(), co.server).to_string(),
            relay: co.endpoint.describe(),
            elapsed_s: secs,
            frames_sent: sent,
            frames_per_s: sent as f64 / secs,
            send_errors,
            generator_cpu_pct: cpu_s.map_or(0.0, |c| 100.0 * c / secs),
            generator_cpu_ns_per_frame: cpu_s.filter(|_| sent > 0).map(|c| c * 1e9 / sent as f64),
            host_busy_pct: start.host_busy_pct(),
            host_cpus: cpu::cpus(),
            xdp,
        }
    }

    /// The human-readable result.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "tandem-bench ceiling over {}: DISCOVERs {} -> {} (nothing answers)",
            self.backend, self.relay, self.server
        );
        let _ = writeln!(
            s,
            "sent          {} frames in {:.2} s = {:.0} frames/s ({} send errors)",
            self.frames_sent, self.elapsed_s, self.frames_per_s, self.send_errors
        );
        let per = self
            .generator_cpu_ns_per_frame
            .map_or_else(|| "-".to_string(), |n| format!("{n:.0} ns/frame"));
        let host = self
            .host_busy_pct
            .map_or_else(|| "-".to_string(), |h| format!("{h:.0}%"));
        let _ = writeln!(
            s,
            "generator CPU {:.0}% of one core, {per}; host busy {host} of one core ({} cores)",
            self.generator_cpu_pct, self.host_cpus
        );
        if let Some(x) = &self.xdp {
            s.push_str(&x.table());
        }
        s
    }
}

/// The ceiling over a UDP socket bound to the relay address: blocking `sendto` of one
/// DISCOVER after another (the sends of `dora --backend udp`, without its replies).
///
/// Without a complete neighbour entry for the next hop the kernel drops the frames before the
/// link (the figure is then only the system-call rate); a warning says so.
pub fn ceiling_udp(co: &CeilingOptions) -> Result<CeilingReport, XdpRunError> {
    let sock = match &co.endpoint {
        Endpoint::Relay(addr) => relay_sender(co.server, *addr)?,
        Endpoint::Direct { interface } => {
            let s = bind_client(interface)?;
            s.set_nonblocking(false)
                .map_err(SysError::io("blocking mode"))?;
            s.set_write_timeout(Some(Duration::from_millis(100)))
                .map_err(SysError::io("SO_SNDTIMEO"))?;
            s
        }
    };
    let start = CpuStart::now(None).map_err(SysError::server_pid)?;
    let t0 = Instant::now();
    let limit = co.max_frames.unwrap_or(u64::MAX);
    let mut req = RequestSource::new(co);
    let to = udp_destination(req.route(), co.server);
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut next_progress = Duration::from_secs(1);
    let mut last_sent = 0u64;
    'outer: loop {
        // Check the clock once per 64 frames.
        for _ in 0..64 {
            if sent >= limit {
                break 'outer;
            }
            match sock.send_to(req.next_request(), to) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
        let elapsed = t0.elapsed();
        if elapsed >= co.duration {
            break;
        }
        if co.progress && elapsed >= next_progress {
            eprintln!(
                "[{:>5.1}s] sent {:>8}/s",
                elapsed.as_secs_f64(),
                sent - last_sent
            );
            last_sent = sent;
            next_progress += Duration::from_secs(1);
        }
    }
    Ok(CeilingReport::new(
        Backend::Udp,
        co,
        t0.elapsed(),
        sent,
        errors,
        &start,
        None,
    ))
}

/// The ceiling's relay socket, blocking with a send timeout; warns when the next hop to
/// `server` has no neighbour entry.
fn relay_sender(server: SocketAddrV4, addr: SocketAddrV4) -> Result<UdpSocket, XdpRunError> {
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        if let Some((ifname, hop)) = next_hop(&parse_routes(&text), *server.ip(), None) {
            let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
            if parse_neighbour(&arp, hop, &ifname).is_none() {
                eprintln!(
                    "tandem-bench: warning: {hop} has no complete neighbour entry on {ifname}: \
                     the kernel drops these frames before the link, so this measures system \
                     calls only; add one (ip neigh replace {hop} lladdr {} dev {ifname} nud \
                     permanent)",
                    format_mac(&BLACKHOLE_MAC)
                );
            }
        }
    }
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(SysError::io("UDP socket"))?;
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&SocketAddr::V4(addr).into()).map_err(SysError::io(
        "binding the relay address (port 67 needs root)",
    ))?;
    s.set_write_timeout(Some(Duration::from_millis(100)))
        .map_err(SysError::io("SO_SNDTIMEO"))?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_dataplane::wire::Request;

    /// RFC 1071 checksum computed independently: 32-bit accumulation of big-endian words,
    /// carries folded at the end.
    fn ones_complement_sum(parts: &[&[u8]]) -> u16 {
        let mut bytes = Vec::new();
        for p in parts {
            bytes.extend_from_slice(p);
        }
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut s: u32 = 0;
        for w in bytes.chunks(2) {
            s += (u32::from(w[0]) << 8) | u32::from(w[1]);
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    fn sample_request() -> [u8; REQUEST_LEN] {
        let mut buf = [0u8; REQUEST_LEN];
        build_request(
            &mut buf,
            &Ident {
                mac: client_mac(7, 12345),
                client_id: true,
                host_name: false,
            },
            0xdead_beef,
            0,
            Path::Relay(Ipv4Addr::new(10, 78, 0, 2)),
            &RequestKind::Discover,
        );
        buf
    }

    /// The frame of `payload` behind `hdr`, checked like `request_frames_carry_correct_...`:
    /// returns (Ethernet dst, Ethernet src, IPv4 src, IPv4 dst, UDP src port, UDP dst port).
    fn checked_frame(
        hdr: &ReplyHeaders,
        payload: &[u8],
    ) -> ([u8; 6], [u8; 6], Ipv4Addr, Ipv4Addr, u16, u16) {
        let mut chunk = vec![0u8; CHUNK_SIZE as usize];
        let n = write_request_frame(&mut chunk, hdr, payload).unwrap();
        let f = &chunk[..n];
        let ip = &f[14..34];
        assert_eq!(ones_complement_sum(&[ip]), 0xffff, "IPv4 checksum");
        let udp = &f[34..];
        let len = (udp.len() as u16).to_be_bytes();
        assert_eq!(
            ones_complement_sum(&[&ip[12..20], &[0, 17], &len[..], udp]),
            0xffff,
            "UDP checksum"
        );
        let v = UdpFrame::new_checked(f).unwrap();
        assert_eq!(v.payload(), payload);
        (
            v.dst_mac(),
            v.src_mac(),
            v.src_ip(),
            v.dst_ip(),
            u16::from_be_bytes([udp[0], udp[1]]),
            v.dst_port(),
        )
    }

    #[test]
    fn direct_frames_are_broadcast_or_unicast_from_ciaddr() {
        let ours = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
        let srv = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02];
        let sid = Ipv4Addr::new(10, 78, 0, 1);
        let ci = Ipv4Addr::new(10, 78, 3, 4);
        let mut disc = [0u8; REQUEST_LEN];
        build_request(
            &mut disc,
            &Ident {
                mac: client_mac(7, 1),
                client_id: false,
                host_name: false,
            },
            1,
            0,
            Path::Direct,
            &RequestKind::Discover,
        );
        let h = RequestHeaders::Direct {
            src_mac: ours,
            server_mac: Some(srv),
        };
        // DISCOVER: Ethernet broadcast from our MAC (not the client's chaddr), 0.0.0.0:68 ->
        // 255.255.255.255:67; the payload has giaddr 0, hops 0, the BROADCAST flag
        let b = h.for_route(Via::Broadcast).unwrap();
        assert_eq!(
            checked_frame(&b, &disc),
            (
                BROADCAST_MAC,
                ours,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                68,
                67
            )
        );
        let r = Request::parse(&disc).unwrap();
        assert_eq!(
            (r.hops(), r.giaddr(), r.broadcast()),
            (0, Ipv4Addr::UNSPECIFIED, true)
        );
        // RELEASE / RENEWING REQUEST: unicast from ciaddr:68 to the server id:67, server's MAC
        let u = h.for_route(Via::Unicast { from: ci, to: sid }).unwrap();
        assert_eq!(checked_frame(&u, &disc), (srv, ours, ci, sid, 68, 67));
        // no relayed frames on the direct path, no unicast without the server's MAC
        assert_eq!(h.for_route(Via::Relayed), None);
        let blind = RequestHeaders::Direct {
            src_mac: ours,
            server_mac: None,
        };
        assert_eq!(blind.for_route(Via::Unicast { from: ci, to: sid }), None);
        assert!(blind.for_route(Via::Broadcast).is_some());
        assert_eq!(blind.next_hop_mac(), BROADCAST_MAC);
        assert_eq!(h.next_hop_mac(), srv);
        // and the relay path sends only relayed frames
        let relay = SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 2), 67);
        let rh = RequestHeaders::Relay(request_headers(
            ours,
            srv,
            relay,
            SocketAddrV4::new(sid, 67),
        ));
        assert_eq!(rh.for_route(Via::Broadcast), None);
        assert_eq!(
            checked_frame(&rh.for_route(Via::Relayed).unwrap(), &disc),
            (srv, ours, *relay.ip(), sid, 67, 67)
        );
    }

    #[test]
    fn request_frames_carry_correct_headers_and_checksums() {
        let relay = SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 2), 67);
        let server = SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 1), 67);
        let src = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
        let dst = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02];
        let hdr = request_headers(src, dst, relay, server);
        let payload = sample_request();
        let mut chunk = vec![0x55u8; CHUNK_SIZE as usize];
        let n = write_request_frame(&mut chunk, &hdr, &payload).unwrap();
        assert_eq!(n, 14 + 20 + 8 + REQUEST_LEN);
        let f = &chunk[..n];
        // Ethernet
        assert_eq!(&f[0..6], &dst);
        assert_eq!(&f[6..12], &src);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // IPv4: a header with its checksum in place sums to 0xffff
        let ip = &f[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(
            u16::from_be_bytes([ip[2], ip[3]]) as usize,
            20 + 8 + REQUEST_LEN
        );
        assert_eq!(ip[8], TTL);
        assert_eq!(ip[9], 17);
        assert_eq!(&ip[12..16], &[10, 78, 0, 2]);
        assert_eq!(&ip[16..20], &[10, 78, 0, 1]);
        assert_eq!(ones_complement_sum(&[ip]), 0xffff);
        // UDP: pseudo-header + datagram, checksum included, sums to 0xffff
        let udp = &f[34..];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 67);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 67);
        assert_eq!(
            u16::from_be_bytes([udp[4], udp[5]]) as usize,
            8 + REQUEST_LEN
        );
        assert_ne!(u16::from_be_bytes([udp[6], udp[7]]), 0, "checksum computed");
        let len = (udp.len() as u16).to_be_bytes();
        let pseudo = [&ip[12..20], &[0, 17], &len[..], udp];
        assert_eq!(ones_complement_sum(&pseudo), 0xffff);
        // a single flipped payload bit breaks the UDP checksum
        let mut bad = f.to_vec();
        bad[34 + 8 + 100] ^= 0x01;
        let badudp = &bad[34..];
        assert_ne!(
            ones_complement_sum(&[&ip[12..20], &[0, 17], &len[..], badudp]),
            0xffff
        );
        // the payload is the request, and the frame parses as the server's parser would
        assert_eq!(&udp[8..], &payload[..]);
        let v = UdpFrame::new_checked(f).unwrap();
        assert_eq!(v.payload(), &payload[..]);
        assert!(v.ipv4_checksum_ok());
        let r = Request::parse(v.payload()).unwrap();
        assert_eq!(r.xid(), 0xdead_beef);
        assert_eq!(r.giaddr(), Ipv4Addr::new(10, 78, 0, 2));
        // bytes past the frame are untouched
        assert!(chunk[n..].iter().all(|&b| b == 0x55));
    }

    #[test]
    fn request_frame_that_does_not_fit_is_an_error() {
        let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 67);
        let hdr = request_headers([2; 6], [4; 6], a, a);
        let mut small = [0u8; 200];
        assert!(write_request_frame(&mut small, &hdr, &sample_request()).is_err());
        let mut exact = vec![0u8; 42 + REQUEST_LEN];
        assert_eq!(
            write_request_frame(&mut exact, &hdr, &sample_request()),
            Ok(42 + REQUEST_LEN)
        );
    }

    fn route_line(
        iface: &str,
        dest: Ipv4Addr,
        gw: Ipv4Addr,
        flags: u32,
        metric: u32,
        mask: Ipv4Addr,
    ) -> String {
        let h = |a: Ipv4Addr| format!("{:08X}", u32::from_ne_bytes(a.octets()));
        format!(
            "{iface}\t{}\t{}\t{flags:04X}\t0\t0\t{metric}\t{}\t0\t0\t0\n",
            h(dest),
            h(gw),
            h(mask)
        )
    }

    #[test]
    fn routes_pick_the_longest_prefix_and_its_next_hop() {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut text = String::from(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        text += &route_line("eth0", z, Ipv4Addr::new(192, 168, 1, 1), 3, 100, z);
        text += &route_line(
            "tdm1",
            Ipv4Addr::new(10, 78, 0, 0),
            z,
            1,
            0,
            Ipv4Addr::new(255, 255, 0, 0),
        );
        text += &route_line(
            "tdm2",
            Ipv4Addr::new(10, 78, 5, 0),
            Ipv4Addr::new(10, 78, 0, 254),
            3,
            0,
            Ipv4Addr::new(255, 255, 255, 0),
        );
        // down: ignored
        text += &route_line(
            "dead",
            Ipv4Addr::new(10, 78, 0, 1),
            z,
            0,
            0,
            Ipv4Addr::BROADCAST,
        );
        text += "garbage line\n";
        let routes = parse_routes(&text);
        assert_eq!(routes.len(), 3, "{routes:?}");
        assert_eq!(
            next_hop(&routes, Ipv4Addr::new(10, 78, 0, 1), None),
            Some(("tdm1".into(), Ipv4Addr::new(10, 78, 0, 1)))
        );
        assert_eq!(
            next_hop(&routes, Ipv4Addr::new(10, 78, 5, 9), None),
            Some(("tdm2".into(), Ipv4Addr::new(10, 78, 0, 254)))
        );
        assert_eq!(
            next_hop(&routes, Ipv4Addr::new(8, 8, 8, 8), None),
            Some(("eth0".into(), Ipv4Addr::new(192, 168, 1, 1)))
        );
        // restricted to an interface
        assert_eq!(
            next_hop(&routes, Ipv4Addr::new(10, 78, 5, 9), Some("tdm1")),
            Some(("tdm1".into(), Ipv4Addr::new(10, 78, 5, 9)))
        );
        assert_eq!(
            next_hop(&routes, Ipv4Addr::new(8, 8, 8, 8), Some("tdm1")),
            None
        );
        assert_eq!(next_hop(&[], Ipv4Addr::new(8, 8, 8, 8), None), None);
    }

    #[test]
    fn neighbour_entries_must_be_complete_and_on_the_interface() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.78.0.1        0x1         0x2         aa:bb:cc:dd:ee:01     *        tdm1\n\
                    10.78.0.3        0x1         0x0         00:00:00:00:00:00     *        tdm1\n\
                    10.78.0.4        0x1         0x6         aa:bb:cc:dd:ee:04     *        tdm1\n\
                    10.78.0.1        0x1         0x2         aa:bb:cc:dd:ee:99     *        other\n\
                    bogus\n";
        let ip = |d| Ipv4Addr::new(10, 78, 0, d);
        assert_eq!(
            parse_neighbour(text, ip(1), "tdm1"),
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01])
        );
        assert_eq!(
            parse_neighbour(text, ip(1), "other"),
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x99])
        );
        assert_eq!(parse_neighbour(text, ip(3), "tdm1"), None, "incomplete");
        assert_eq!(
            parse_neighbour(text, ip(4), "tdm1"),
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x04]),
            "permanent"
        );
        assert_eq!(parse_neighbour(text, ip(2), "tdm1"), None);
    }

    #[test]
    fn command_line_values_parse_strictly() {
        assert_eq!("xdp".parse::<Backend>(), Ok(Backend::Xdp));
        assert_eq!("udp".parse::<Backend>(), Ok(Backend::Udp));
        assert_eq!("auto".parse::<Backend>(), Ok(Backend::Auto));
        assert!("XDP".parse::<Backend>().is_err());
        for b in [Backend::Udp, Backend::Xdp, Backend::Auto] {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
        }
        assert_eq!(parse_xdp_mode("generic"), Ok(XdpMode::Generic));
        assert_eq!(parse_xdp_mode("native"), Ok(XdpMode::Native));
        assert_eq!(parse_xdp_mode("auto"), Ok(XdpMode::Auto));
        assert!(parse_xdp_mode("skb").is_err());
        let m = parse_mac_arg("02:AB:00:00:00:09").unwrap();
        assert_eq!(format_mac(&m), "02:ab:00:00:00:09");
        assert!(parse_mac_arg("02:ab:00:00:00").is_err());
    }

    #[test]
    fn ceiling_requests_are_distinct_discovers() {
        let co = CeilingOptions {
            server: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 67),
            endpoint: Endpoint::Relay(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 67)),
            duration: Duration::from_secs(1),
            max_frames: None,
            clients: 3,
            seed: 9,
            client_id: false,
            progress: false,
        };
        let mut src = RequestSource::new(&co);
        let mut seen = Vec::new();
        for i in 0..4u32 {
            let r = Request::parse(src.next_request()).unwrap();
            assert_eq!(r.xid(), i);
            assert_eq!(r.giaddr(), Ipv4Addr::new(10, 0, 0, 2));
            assert_eq!(
                r.message_type(),
                tandem_dataplane::wire::MessageType::Discover
            );
            seen.push(r.mac().unwrap());
        }
        // three clients, round robin
        assert_eq!(seen[0], client_mac(9, 0));
        assert_eq!(seen[2], client_mac(9, 2));
        assert_eq!(seen[3], seen[0]);
        assert_eq!(src.route(), Via::Relayed);
        // direct: giaddr 0, the BROADCAST flag, broadcast
        let mut src = RequestSource::new(&CeilingOptions {
            endpoint: Endpoint::Direct {
                interface: "eth9".into(),
            },
            ..co
        });
        let r = Request::parse(src.next_request()).unwrap();
        assert_eq!(
            (r.giaddr(), r.hops(), r.broadcast()),
            (Ipv4Addr::UNSPECIFIED, 0, true)
        );
        assert_eq!(src.route(), Via::Broadcast);
    }

    #[test]
    fn setup_errors_name_the_problem() {
        let server = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 67);
        let relay = Endpoint::Relay(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 2), 67));
        let xo = XdpOptions {
            interface: Some("tdm-no-such-if".into()),
            ..XdpOptions::default()
        };
        let e = XdpIo::open(server, &relay, &xo, Purpose::Dora).unwrap_err();
        assert!(
            matches!(e, XdpRunError::Setup(XdpSetupError::NoInterface { .. })),
            "{e}"
        );
        // lo exists and is up, but the relay address is not on it
        let xo = XdpOptions {
            interface: Some("lo".into()),
            ..XdpOptions::default()
        };
        let e = XdpIo::open(server, &relay, &xo, Purpose::Dora).unwrap_err();
        assert!(matches!(e, XdpRunError::RelayNotLocal { .. }), "{e}");
        assert!(e.to_string().contains("10.99.0.2"), "{e}");
        // queue out of range
        let xo = XdpOptions {
            interface: Some("lo".into()),
            queue: 4096,
            ..XdpOptions::default()
        };
        let e = XdpIo::open(server, &relay, &xo, Purpose::Ceiling).unwrap_err();
        assert!(
            matches!(e, XdpRunError::Setup(XdpSetupError::NoQueue { .. })),
            "{e}"
        );
        // the direct path opens its own interface, whatever --interface says
        let direct = Endpoint::Direct {
            interface: "tdm-no-such-if".into(),
        };
        let xo = XdpOptions {
            interface: Some("lo".into()),
            ..XdpOptions::default()
        };
        let e = XdpIo::open(server, &direct, &xo, Purpose::Dora).unwrap_err();
        assert!(e.to_string().contains("tdm-no-such-if"), "{e}");
    }
}
