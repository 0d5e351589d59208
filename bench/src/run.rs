//! The I/O shell around [`Generator`]: one UDP socket bound to the relay address (port 67 by
//! default, where servers send relayed replies), a `mio` poll as the sleeper, a monotonic clock,
//! the progress line, and CPU sampling.
//!
//! Direct path ([`Endpoint::Direct`]): the socket is bound to 0.0.0.0:68 with `SO_BROADCAST` and
//! `SO_BINDTODEVICE(interface)`; requests without ciaddr go to 255.255.255.255:67 (the kernel
//! writes the interface's address as IP source, not 0.0.0.0 as a real client would: servers
//! answer by giaddr, ciaddr and the BROADCAST flag, not by the source address), RELEASEs go to
//! the server id, and the broadcast replies arrive on :68. The RENEWING mix is refused: its
//! REQUEST must come from ciaddr and its ACK goes unicast to ciaddr, an address this host does
//! not own (the AF_XDP backend runs it).
//!
//! The loop: receive everything waiting (each reply stamped with the clock as it is read), fire
//! the timeouts, start the exchanges that are due, print progress once a second, and sleep until
//! the next thing is due or a reply arrives. The poll sleeps with millisecond granularity, so at
//! high rates exchanges start in bursts of up to a millisecond's worth (the pacer's backlog
//! absorbs that).

use std::io::{self, Write as _};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cpu;
use crate::dora::{Config, ConfigError, Generator, HeldLease, Mix, Path, Tx, Via};
use crate::report::{malformed_map, Params, Report, ServerCpu};

const SOCK: Token = Token(0);
const NANOS: u64 = 1_000_000_000;
/// Most datagrams read before the timers and the pacer get a turn.
const RECV_BATCH: usize = 1024;

/// DHCP's client port: direct replies go there.
pub const CLIENT_PORT: u16 = 68;
/// DHCP's server port.
pub const SERVER_PORT: u16 = 67;

/// The generator's end of the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A relay agent: the address and port to bind (port 67 normally: servers answer relays on
    /// 67); the address goes into giaddr.
    Relay(SocketAddrV4),
    /// Clients on the server's link, on `interface`: 0.0.0.0:68, giaddr 0, requests broadcast.
    Direct {
        /// The interface the clients sit on.
        interface: String,
    },
}

impl Endpoint {
    /// The path the generator's requests take.
    pub fn path(&self) -> Path {
        match self {
            Endpoint::Relay(a) => Path::Relay(*a.ip()),
            Endpoint::Direct { .. } => Path::Direct,
        }
    }

    /// For the report's `params.relay`: the relay's address and port, or `direct on IFACE`
    /// (see [`crate::report::Params::path`]).
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Relay(a) => a.to_string(),
            Endpoint::Direct { interface } => format!("direct on {interface}"),
        }
    }
}

/// Where to send and listen, and what to measure besides.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The server (port 67 normally).
    pub server: SocketAddrV4,
    /// The relay address to bind and write into giaddr, or the interface of direct clients.
    pub endpoint: Endpoint,
    /// Server process to charge CPU time to.
    pub server_pid: Option<u32>,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The generator's settings are unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The relay socket could not be set up.
    #[error("cannot bind the relay socket to {addr}: {source} (the address must exist on this host or namespace; port 67 needs root or CAP_NET_BIND_SERVICE, and must be free)")]
    Bind {
        /// The address.
        addr: SocketAddrV4,
        /// The OS error.
        source: io::Error,
    },
    /// The direct clients' socket could not be set up.
    #[error("cannot bind 0.0.0.0:68 on {interface} for direct clients: {source} (the interface must exist; port 68 needs root or CAP_NET_BIND_SERVICE and must be free: stop any DHCP client in this namespace)")]
    BindClient {
        /// The interface.
        interface: String,
        /// The OS error.
        source: io::Error,
    },
    /// The renewing mix over UDP on the direct path.
    #[error("--direct with --mix {0} needs --backend xdp: a RENEWING REQUEST comes from the lease's address and the server unicasts its ACK to that address, which this host does not own, so a UDP socket can neither send from it nor receive at it")]
    DirectRenewOverUdp(Mix),
    /// The generator's path does not match the endpoint (a programming error of the caller).
    #[error("the generator's path ({path:?}) does not match the endpoint ({endpoint:?})")]
    PathMismatch {
        /// The generator's.
        path: Path,
        /// The endpoint's.
        endpoint: Endpoint,
    },
    /// A socket, poll or `/proc` failure.
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// A system call or `/proc` read that failed during a run, with either backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysError {
    /// A socket, poll or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The server pid cannot be read.
    #[error("cannot read the CPU time of server pid {pid} from /proc: {source}")]
    ServerPid {
        /// The pid.
        pid: u32,
        /// The error.
        source: io::Error,
    },
}

impl SysError {
    /// For `map_err`: the OS error of doing `what`.
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> SysError {
        move |source| SysError::Io { what, source }
    }

    /// For `map_err` on [`CpuStart::now`]: the server pid whose CPU time cannot be read.
    pub(crate) fn server_pid((pid, source): (u32, io::Error)) -> SysError {
        SysError::ServerPid { pid, source }
    }
}

/// The outcome of a run: the report and the leases the clients hold at the end.
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// Each client's address at the end (ACKed, not released).
    pub held: Vec<HeldLease>,
}

/// The relay socket: bound, non-blocking, with large buffers.
fn bind_relay(addr: SocketAddrV4) -> Result<UdpSocket, RunError> {
    let err = |source| RunError::Bind { addr, source };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    // Large buffers absorb the server's batches and our bursts; the kernel caps them at
    // net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&SocketAddr::V4(addr).into()).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    Ok(s.into())
}

/// The direct clients' socket: 0.0.0.0:68 on `interface`, broadcast allowed, non-blocking,
/// large buffers.
pub(crate) fn bind_client(interface: &str) -> Result<UdpSocket, RunError> {
    let err = |source| RunError::BindClient {
        interface: interface.to_string(),
        source,
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.set_broadcast(true).map_err(err)?;
    s.bind_device(Some(interface.as_bytes())).map_err(err)?;
    let any = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, CLIENT_PORT);
    s.bind(&SocketAddr::V4(any).into()).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    Ok(s.into())
}

/// The destination of a request sent by `route` over a UDP socket (the source is the
/// socket's: the relay address, or the direct interface's address).
pub(crate) fn udp_destination(route: Via, server: SocketAddrV4) -> SocketAddr {
    SocketAddr::V4(match route {
        Via::Relayed => server,
        Via::Broadcast => SocketAddrV4::new(std::net::Ipv4Addr::BROADCAST, SERVER_PORT),
        Via::Unicast { to, .. } => SocketAddrV4::new(to, server.port()),
    })
}

struct SockTx<'a> {
    sock: &'a mio::net::UdpSocket,
    server: SocketAddrV4,
}

impl Tx for SockTx<'_> {
    fn send(&mut self, frame: &[u8], route: Via) -> bool {
        let to = udp_destination(route, self.server);
        loop {
            match self.sock.send_to(frame, to) {
                Ok(_) => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

/// CPU counters at the start of a run (server process, this process, the host), shared by the
/// UDP and AF_XDP shells.
pub(crate) struct CpuStart {
    pub(crate) at: Instant,
    clk: u64,
    server: Option<(u32, u64)>,
    me: Option<u64>,
    host: Option<(u64, u64)>,
}

impl CpuStart {
    /// The counters now; an error if the server's pid cannot be read.
    pub(crate) fn now(server_pid: Option<u32>) -> Result<CpuStart, (u32, io::Error)> {
        let server = match server_pid {
            Some(pid) => Some((pid, cpu::process_ticks(pid).map_err(|e| (pid, e))?)),
            None => None,
        };
        Ok(CpuStart {
            at: Instant::now(),
            clk: cpu::clock_ticks_per_sec(),
            server,
            me: cpu::self_ticks().ok(),
            host: cpu::host_ticks().ok(),
        })
    }

    fn secs(&self, ticks: u64) -> f64 {
        ticks as f64 / self.clk as f64
    }

    /// This process's CPU seconds since the start.
    pub(crate) fn my_cpu_s(&self) -> Option<f64> {
        match (self.me, cpu::self_ticks()) {
            (Some(a), Ok(b)) => Some(self.secs(b.saturating_sub(a))),
            _ => None,
        }
    }

    /// Whole-host CPU use since the start, % of one core.
    pub(crate) fn host_busy_pct(&self) -> Option<f64> {
        match (self.host, cpu::host_ticks()) {
            (Some((b0, t0)), Ok((b1, t1))) if t1 > t0 => {
                Some(100.0 * cpu::cpus() as f64 * (b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        }
    }
}

/// Run the generator against the server until it stops by itself (sending period over and
/// every exchange finished, or the hard stop).
pub fn run(cfg: Config, opts: &RunOptions) -> Result<Outcome, RunError> {
    if cfg.path != opts.endpoint.path() {
        return Err(RunError::PathMismatch {
            path: cfg.path,
            endpoint: opts.endpoint.clone(),
        });
    }
    if cfg.path == Path::Direct && cfg.mix.replies_to_ciaddr() {
        return Err(RunError::DirectRenewOverUdp(cfg.mix));
    }
    let mut gen = Generator::new(cfg)?;
    let std_sock = match &opts.endpoint {
        Endpoint::Relay(a) => bind_relay(*a)?,
        Endpoint::Direct { interface } => bind_client(interface)?,
    };
    let mut sock = mio::net::UdpSocket::from_std(std_sock);
    let mut poll = Poll::new().map_err(SysError::io("creating the poll"))?;
    poll.registry()
        .register(&mut sock, SOCK, Interest::READABLE)
        .map_err(SysError::io("registering the socket"))?;
    let start = CpuStart::now(opts.server_pid).map_err(SysError::server_pid)?;
    let t0 = Instant::now();
    let now = || u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut events = Events::with_capacity(16);
    let mut buf = [0u8; 2048];
    let mut other_source = 0u64;
    let mut recv_errors = 0u64;
    let mut next_progress = NANOS;
    let mut last = Snapshot::default();
    let end = loop {
        let mut more = false;
        {
            let mut tx = SockTx {
                sock: &sock,
                server: opts.server,
            };
            let mut n = 0;
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((len, src)) => {
                        let t = now();
                        if src.ip() != std::net::IpAddr::V4(*opts.server.ip()) {
                            other_source += 1;
                        }
                        gen.on_reply(t, &buf[..len], &mut tx);
                        n += 1;
                        if n >= RECV_BATCH {
                            more = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        recv_errors += 1;
                        break;
                    }
                }
            }
            let t = now();
            gen.on_timers(t, &mut tx);
            gen.start_due(t, &mut tx);
        }
        let t = now();
        if opts.progress && t >= next_progress {
            last = progress(&gen, t, &last, "");
            next_progress += NANOS;
        }
        if gen.done(t) {
            gen.finish(t);
            break t;
        }
        if more {
            continue;
        }
        let mut wake = gen.next_wakeup(t);
        if opts.progress {
            wake = wake.min(next_progress);
        }
        if wake > t {
            match poll.poll(&mut events, Some(Duration::from_nanos(wake - t))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(SysError::io("waiting for replies")(source).into()),
            }
        }
    };
    let report = build_report(&gen, opts, end, &start, other_source, recv_errors);
    Ok(Outcome {
        held: gen.held_leases().collect(),
        report,
    })
}

/// The counts a progress line was computed from.
#[derive(Default)]
pub(crate) struct Snapshot {
    started: u64,
    leases: u64,
}

/// One progress line on stderr (`tag` ends it, like " (AF_XDP)"); returns the counts it was
/// computed from.
pub(crate) fn progress(gen: &Generator, t: u64, last: &Snapshot, tag: &str) -> Snapshot {
    let c = gen.counters();
    let p99 = gen.latencies().dora.quantile(0.99) as f64 / 1000.0;
    let line = format!(
        "[{:>5.1}s] offered {:>7}/s  leases {:>7}/s  in flight {:>6}  lost {}  NAK {}  unexpected {}  p99 DORA so far {:.0} µs{tag}",
        t as f64 / NANOS as f64,
        c.started - last.started,
        c.leases - last.leases,
        gen.outstanding(),
        c.lost,
        c.naks,
        c.unexpected(),
        p99
    );
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{line}");
    Snapshot {
        started: c.started,
        leases: c.leases,
    }
}

/// The report of a finished run (both shells).
pub(crate) fn build_report(
    gen: &Generator,
    opts: &RunOptions,
    end: u64,
    start: &CpuStart,
    other_source: u64,
    recv_errors: u64,
) -> Report {
    let cfg = gen.config();
    let c = gen.counters().clone();
    let secs = |ns: u64| ns as f64 / NANOS as f64;
    let sending = gen.sending_closed_at().unwrap_or(end).max(1);
    let lease_span = gen.last_lease_at().max(sending);
    let wall = start.at.elapsed().as_secs_f64().max(1e-9);
    let server_cpu = start
        .server
        .and_then(|(pid, t0)| match cpu::process_ticks(pid) {
            Ok(t1) => {
                let cpu_s = start.secs(t1.saturating_sub(t0));
                Some(ServerCpu {
                    pid,
                    cpu_s,
                    cpu_us_per_lease: (c.leases > 0).then(|| cpu_s * 1e6 / c.leases as f64),
                    cpu_pct: 100.0 * cpu_s / wall,
                })
            }
            Err(e) => {
                eprintln!("tandem-bench: server pid {pid} could not be read at the end ({e}); no server CPU figures");
                None
            }
        });
    Report {
        tool: "tandem-bench",
        version: env!("CARGO_PKG_VERSION"),
        command: "dora",
        params: Params {
            server: opts.server.to_string(),
            path: opts.endpoint.path().name(),
            relay: opts.endpoint.describe(),
            clients: cfg.clients,
            rate: cfg.rate,
            window: cfg.window,
            duration_s: secs(cfg.duration),
            max_exchanges: cfg.max_exchanges,
            mix: cfg.mix.to_string(),
            timeout_ms: cfg.timeout / 1_000_000,
            retries: cfg.retries,
            client_id: cfg.client_id,
            seed: cfg.seed,
        },
        elapsed_s: secs(end),
        sending_s: secs(sending),
        offered_per_s: c.started as f64 / secs(sending),
        leases_per_s: c.leases as f64 / secs(lease_span),
        loss_pct: Report::loss_pct_of(&c),
        malformed_by_reason: malformed_map(&c.malformed_by_reason),
        counts: c,
        missed_slots: gen.missed_slots(),
        other_source,
        recv_errors,
        latency_us: gen.latencies().summaries(),
        server_cpu,
        generator_cpu_pct: start.my_cpu_s().map_or(0.0, |s| 100.0 * s / wall),
        host_busy_pct: start.host_busy_pct(),
        host_cpus: cpu::cpus(),
        leases_timeline: gen.timeline().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dora::Mix;
    use std::net::Ipv4Addr;
    use tandem_dataplane::wire::{opt, MessageType, ReplyHeader, ReplyWriter, Request};

    /// A loopback test double of a server: answers DISCOVER with an OFFER and REQUEST with an
    /// ACK (addresses 10.0.x.y by client), sends one garbage datagram first, and replies to the
    /// relay address in giaddr on `relay_port`.
    fn fake_server(sock: UdpSocket, relay_port: u16, stop: std::sync::mpsc::Receiver<()>) {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = [0u8; 1500];
        let mut out = [0u8; 1500];
        let mut garbage_sent = false;
        while stop.try_recv().is_err() {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(r) = Request::parse(&buf[..n]) else {
                continue;
            };
            let to = SocketAddr::V4(SocketAddrV4::new(r.giaddr(), relay_port));
            if !garbage_sent {
                garbage_sent = true;
                sock.send_to(b"not dhcp", to).unwrap();
            }
            let mt = match r.message_type() {
                MessageType::Discover => MessageType::Offer,
                MessageType::Request => MessageType::Ack,
                _ => continue,
            };
            let mac = r.mac().unwrap();
            let hdr = ReplyHeader {
                xid: r.xid(),
                flags: 0,
                ciaddr: Ipv4Addr::UNSPECIFIED,
                yiaddr: Ipv4Addr::new(10, 0, mac[4], mac[5]),
                siaddr: Ipv4Addr::UNSPECIFIED,
                giaddr: r.giaddr(),
                htype: 1,
                hlen: 6,
            };
            let mut w = ReplyWriter::new(&mut out, 1500, 0, &hdr, &r.bytes()[28..44], mt).unwrap();
            w.option_addr(opt::SERVER_ID, Ipv4Addr::new(127, 0, 0, 1));
            let len = w.finish();
            sock.send_to(&out[..len], to).unwrap();
        }
    }

    #[test]
    fn runs_over_loopback_and_stops_by_itself() {
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = match srv.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to an IPv4 address"),
        };
        // an unprivileged relay port: find a free one
        let relay = {
            let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
            match probe.local_addr().unwrap() {
                SocketAddr::V4(a) => a,
                SocketAddr::V6(_) => unreachable!("bound to an IPv4 address"),
            }
        };
        let (stop_tx, stop_rx) = std::sync::mpsc::channel();
        let th = std::thread::spawn(move || fake_server(srv, relay.port(), stop_rx));
        let cfg = Config {
            clients: 300,
            seed: 1,
            client_id: true,
            host_name: false,
            path: Path::Relay(*relay.ip()),
            mix: Mix::Dora,
            rate: Some(1000),
            window: 500,
            duration: 300_000_000,
            max_exchanges: Some(250),
            timeout: 200_000_000,
            retries: 2,
            xid_salt: 77,
        };
        let opts = RunOptions {
            server,
            endpoint: Endpoint::Relay(relay),
            server_pid: Some(std::process::id()),
            progress: false,
        };
        let t = Instant::now();
        let out = run(cfg, &opts).unwrap();
        stop_tx.send(()).unwrap();
        th.join().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        let r = &out.report;
        assert_eq!(r.counts.started, 250, "{r:?}");
        assert_eq!(r.counts.leases, 250, "{r:?}");
        assert_eq!(r.counts.lost, 0);
        assert_eq!(r.counts.malformed, 1);
        assert_eq!(r.malformed_by_reason.get("truncated"), Some(&1));
        assert_eq!(r.latency_us.dora.count, 250);
        assert!(r.latency_us.dora.p50_us <= r.latency_us.dora.p99_us);
        assert!(r.latency_us.dora.p99_us <= r.latency_us.dora.max_us);
        assert!(r.latency_us.dora.max_us > 0.0);
        assert!(r.server_cpu.is_some());
        assert_eq!(out.held.len(), 250);
        for h in &out.held {
            assert_eq!(h.addr, Ipv4Addr::new(10, 0, h.mac[4], h.mac[5]));
        }
        // 250 exchanges at 1000/s: sending closed after ~250 ms
        assert!(r.sending_s > 0.2 && r.sending_s < 0.3, "{}", r.sending_s);
        assert!(
            r.offered_per_s > 800.0 && r.offered_per_s < 1300.0,
            "{}",
            r.offered_per_s
        );
    }

    fn direct_cfg(mix: Mix) -> Config {
        Config {
            clients: 1,
            seed: 0,
            client_id: false,
            host_name: false,
            path: Path::Direct,
            mix,
            rate: Some(1),
            window: 1,
            duration: 1,
            max_exchanges: None,
            timeout: 1,
            retries: 0,
            xid_salt: 0,
        }
    }

    #[test]
    fn direct_path_checks_come_before_any_socket() {
        let direct = RunOptions {
            server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 67),
            endpoint: Endpoint::Direct {
                interface: "tdm-no-such-if".into(),
            },
            server_pid: None,
            progress: false,
        };
        // renewing over UDP on the direct path is refused, saying why
        let e = run(direct_cfg(Mix::DoraRenew), &direct)
            .err()
            .expect("refused");
        assert!(
            matches!(e, RunError::DirectRenewOverUdp(Mix::DoraRenew)),
            "{e}"
        );
        assert!(e.to_string().contains("--backend xdp"), "{e}");
        // the generator's path must be the endpoint's
        let relay = RunOptions {
            endpoint: Endpoint::Relay(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6767)),
            ..direct.clone()
        };
        let e = run(direct_cfg(Mix::Dora), &relay).err().expect("mismatch");
        assert!(matches!(e, RunError::PathMismatch { .. }), "{e}");
        // the direct socket names the interface it could not bind to
        let e = run(direct_cfg(Mix::Dora), &direct)
            .err()
            .expect("no such interface");
        assert!(matches!(e, RunError::BindClient { .. }), "{e}");
        assert!(e.to_string().contains("tdm-no-such-if"), "{e}");
        assert_eq!(direct.endpoint.describe(), "direct on tdm-no-such-if");
        assert_eq!(relay.endpoint.describe(), "127.0.0.1:6767");
    }

    #[test]
    fn udp_destinations_follow_the_route() {
        let server = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 67);
        assert_eq!(
            udp_destination(Via::Relayed, server),
            SocketAddr::V4(server)
        );
        assert_eq!(
            udp_destination(Via::Broadcast, server),
            "255.255.255.255:67".parse::<SocketAddr>().unwrap()
        );
        let to = Ipv4Addr::new(10, 0, 0, 9);
        assert_eq!(
            udp_destination(
                Via::Unicast {
                    from: Ipv4Addr::new(10, 0, 3, 3),
                    to
                },
                server
            ),
            SocketAddr::V4(SocketAddrV4::new(to, 67))
        );
    }

    #[test]
    fn bind_failure_is_an_error_not_a_panic() {
        // 192.0.2.1 (TEST-NET-1) is not configured on this host
        let cfg = Config {
            clients: 1,
            seed: 0,
            client_id: false,
            host_name: false,
            path: Path::Relay(Ipv4Addr::new(192, 0, 2, 1)),
            mix: Mix::Dora,
            rate: Some(1),
            window: 1,
            duration: 1,
            max_exchanges: None,
            timeout: 1,
            retries: 0,
            xid_salt: 0,
        };
        let opts = RunOptions {
            server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 67),
            endpoint: Endpoint::Relay(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 6767)),
            server_pid: None,
            progress: false,
        };
        let e = run(cfg, &opts).err().expect("bind fails");
        assert!(matches!(e, RunError::Bind { .. }), "{e}");
        assert!(e.to_string().contains("192.0.2.1:6767"), "{e}");
    }
}
