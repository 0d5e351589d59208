//! `tandem-bench`: DHCPv4 load generator. See `tandem-bench dora --help`.
//!
//! Exit codes: 0 the run completed (whatever its loss), 1 the run could not start or its
//! results could not be written (`chart`: a report could not be read or the chart written),
//! 2 usage error.

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, CommandFactory, Parser, Subcommand};
use tandem_bench::chart::{self, label_for, Run};
use tandem_bench::dora::{Config, Mix};
use tandem_bench::run::{run, Endpoint, RunOptions};
use tandem_bench::xdp_run::{self, Backend, CeilingOptions, Purpose, XdpIo, XdpOptions, XdpReport};
use tandem_ebpf::XdpMode;

/// Tandem's DHCPv4 load generator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// DORA load: many simulated clients through one relay address (giaddr), or with --direct
    /// as clients on the server's own link (broadcast, giaddr 0), at a target rate or flat out,
    /// for a bounded time and count.
    Dora(DoraArgs),
    /// Write a lease journal holding N active leases (distinct clients, consecutive addresses),
    /// for start-up, recovery and failover-synchronisation measurements. The directory must hold
    /// no journal yet; point a (stopped) tandemd's `state_dir` at it.
    SeedJournal(SeedArgs),
    /// Draw saved JSON reports (`dora --json`) as one SVG chart: leases/s over time and the
    /// latency CDF of each exchange step; several reports share one chart, a series each.
    Chart(ChartArgs),
    /// The generator's own ceiling: DISCOVERs flat out, for a bounded time, to an address where
    /// nothing answers; prints the frames/s the kernel took and the generator's CPU, so the
    /// limit of a `dora` figure can be told apart from the server's.
    Ceiling(CeilingArgs),
    /// Tandem (AF_XDP and UDP, single and load-balance pair) beside Kea, ISC dhcpd and their
    /// pairs, on the same load in one run, in namespaces: one table with ratios, one chart.
    Compare(tandem_bench::compare::Args),
    /// Sweep tandemd's AF_XDP worker cores, batch sizes and busy-poll on this host, and print
    /// the best setting with the evidence.
    Tune(tandem_bench::tune::Args),
}

#[derive(Args, Debug)]
struct ChartArgs {
    /// A JSON report; repeat to compare several runs in one chart.
    #[arg(long, value_name = "FILE", required = true)]
    json: Vec<PathBuf>,
    /// Names the runs in order: the first --label the first --json, and so on [default: the
    /// file name without its extension].
    #[arg(long, value_name = "TEXT")]
    label: Vec<String>,
    /// Write the chart to FILE.
    #[arg(long, value_name = "FILE")]
    svg: PathBuf,
}

/// Read every report of `a.json` and write their chart to `a.svg`.
fn chart_cmd(a: ChartArgs) -> ExitCode {
    if a.label.len() > a.json.len() {
        eprintln!(
            "tandem-bench: {} --label for {} --json; give at most one label per report",
            a.label.len(),
            a.json.len()
        );
        return ExitCode::from(2);
    }
    let mut runs = Vec::with_capacity(a.json.len());
    for (i, path) in a.json.iter().enumerate() {
        let label = a.label.get(i).cloned().unwrap_or_else(|| label_for(path));
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tandem-bench: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        match Run::from_json(&text, &label) {
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("tandem-bench: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = fs::write(&a.svg, chart::svg(&runs)) {
        eprintln!("tandem-bench: cannot write {}: {e}", a.svg.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[derive(Args, Debug)]
struct SeedArgs {
    /// The state directory to create the journal in.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Number of leases.
    #[arg(long, default_value_t = 1_000_000)]
    leases: u32,
    /// First leased address.
    #[arg(long, value_name = "IP")]
    first: Ipv4Addr,
    /// Lease length from now, seconds.
    #[arg(long, default_value_t = 86_400)]
    lease_secs: u32,
}

/// Write `a.leases` active bindings into a fresh journal in `a.dir`.
fn seed_journal(a: SeedArgs) -> ExitCode {
    use tandem_dataplane::binding::{Binding, BindingState, ClientKey};
    use tandem_dataplane::journal::{Journal, JournalConfig};
    let cfg = JournalConfig::new(&a.dir, 0);
    let (mut j, rec) = match Journal::open(cfg) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "tandem-bench: cannot open a journal in {}: {e}",
                a.dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if !rec.bindings.is_empty() {
        eprintln!(
            "tandem-bench: {} already holds {} bindings; give an empty directory",
            a.dir.display(),
            rec.bindings.len()
        );
        return ExitCode::from(2);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let first = u32::from(a.first);
    let t = std::time::Instant::now();
    for i in 0..a.leases {
        let mut b = Binding::empty(Ipv4Addr::from(first.wrapping_add(i)), BindingState::Active);
        let mac = [
            0x02,
            0x5e,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ];
        b.htype = 1;
        b.hlen = 6;
        b.chaddr[..6].copy_from_slice(&mac);
        b.client = ClientKey::from_hw(1, &mac);
        b.start = now;
        b.cltt = now;
        b.expires = now.saturating_add(a.lease_secs);
        if let Err(e) = j.append(&b) {
            eprintln!("tandem-bench: journal append: {e}");
            return ExitCode::FAILURE;
        }
        if i % 65_536 == 65_535 {
            if let Err(e) = j.commit() {
                eprintln!("tandem-bench: journal commit: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = j.commit() {
        eprintln!("tandem-bench: journal commit: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} active leases from {} into {} in {:.2} s",
        a.leases,
        a.first,
        a.dir.display(),
        t.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// How requests leave and replies come back (`dora`, `ceiling`).
#[derive(Args, Debug)]
struct IoArgs {
    /// I/O: udp (a socket on the relay address), xdp (AF_XDP frames on --interface, replies
    /// steered past the kernel by XDP; needs root), auto (xdp if it can start, else udp, saying
    /// why on stderr).
    #[arg(long, default_value = "udp", value_name = "BACKEND")]
    backend: Backend,
    /// AF_XDP: the interface [default: the one the route to the server uses]. With --direct
    /// (either backend, required): the interface the simulated clients sit on.
    #[arg(long, value_name = "IFACE")]
    interface: Option<String>,
    /// AF_XDP: the queue whose socket sends the requests. Replies are received on every queue
    /// of the interface, one AF_XDP socket (and 8 MiB UMEM) each.
    #[arg(long, default_value_t = 0, value_name = "N")]
    queue: u32,
    /// AF_XDP: destination MAC of the request frames (the server's, or the gateway's when the
    /// server is routed) [default: from the neighbour table, after one UDP probe].
    #[arg(long, value_name = "MAC", value_parser = xdp_run::parse_mac_arg)]
    server_mac: Option<[u8; 6]>,
    /// AF_XDP: how to attach the steering program: auto (native, else generic), native,
    /// generic.
    #[arg(long, default_value = "auto", value_name = "MODE", value_parser = xdp_run::parse_xdp_mode)]
    xdp_mode: XdpMode,
}

impl IoArgs {
    fn xdp_options(&self) -> XdpOptions {
        XdpOptions {
            interface: self.interface.clone(),
            queue: self.queue,
            server_mac: self.server_mac,
            mode: self.xdp_mode,
            ..XdpOptions::default()
        }
    }

    /// The AF_XDP backend if `--backend` asks for it: `Ok(None)` means UDP (asked for, or
    /// `auto` fell back, which is said on stderr); `Err` is the exit code.
    fn open_xdp(
        &self,
        server: SocketAddrV4,
        endpoint: &Endpoint,
        purpose: Purpose,
    ) -> Result<Option<XdpIo>, ExitCode> {
        match self.backend {
            Backend::Udp => Ok(None),
            Backend::Xdp => match XdpIo::open(server, endpoint, &self.xdp_options(), purpose) {
                Ok(io) => Ok(Some(io)),
                Err(e) => {
                    eprintln!("tandem-bench: --backend xdp: {e}");
                    Err(ExitCode::FAILURE)
                }
            },
            Backend::Auto => match XdpIo::open(server, endpoint, &self.xdp_options(), purpose) {
                Ok(io) => Ok(Some(io)),
                Err(e) => {
                    eprintln!("tandem-bench: --backend auto: AF_XDP cannot start ({e}); using UDP");
                    Ok(None)
                }
            },
        }
    }

    /// The direct clients' endpoint: `--interface`, which `--direct` requires (else the usage
    /// error's exit code, said on stderr).
    fn direct_endpoint(&self) -> Result<Endpoint, ExitCode> {
        match &self.interface {
            Some(i) => Ok(Endpoint::Direct {
                interface: i.clone(),
            }),
            None => {
                eprintln!(
                    "tandem-bench: --direct needs --interface IFACE: the link the simulated \
                     clients broadcast on"
                );
                Err(ExitCode::from(2))
            }
        }
    }
}

/// The JSON `v` of a report with the backend that ran it (and its AF_XDP figures) added.
fn with_backend(mut v: serde_json::Value, xdp: Option<&XdpReport>) -> String {
    if let Some(o) = v.as_object_mut() {
        let backend = if xdp.is_some() { "xdp" } else { "udp" };
        o.entry("backend").or_insert_with(|| backend.into());
        if let Some(x) = xdp {
            o.insert("xdp".into(), serde_json::to_value(x).unwrap_or_default());
        }
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[derive(Args, Debug)]
struct CeilingArgs {
    /// Where the DISCOVERs go: an address where nothing answers. For a fair figure its next
    /// hop needs a neighbour entry (`ip neigh replace IP lladdr 02:00:00:00:00:00 dev IFACE nud
    /// permanent`); without one, UDP frames die before the link and AF_XDP frames go to
    /// 02:00:00:00:00:00. Not needed with --direct.
    #[arg(long, value_name = "IP", required_unless_present = "direct")]
    server: Option<Ipv4Addr>,
    /// UDP port of the black hole.
    #[arg(long, default_value_t = 67, value_name = "PORT")]
    server_port: u16,
    /// Source address and giaddr. Default: the local address the route to the server uses.
    #[arg(long, value_name = "IP")]
    relay: Option<Ipv4Addr>,
    /// Source port.
    #[arg(long, default_value_t = 67, value_name = "PORT")]
    relay_port: u16,
    /// Send as clients on the link of --interface instead of a relay: DISCOVERs from
    /// 0.0.0.0:68 to 255.255.255.255:67 (Ethernet broadcast), giaddr 0, BROADCAST flag. Every
    /// DHCP server on that link receives (and answers) them: use a link without one.
    #[arg(long, conflicts_with = "relay")]
    direct: bool,
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    duration: f64,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
    /// Distinct client MACs, round robin, at most 16777216.
    #[arg(long, default_value_t = 65_536, value_name = "N")]
    clients: u32,
    /// Second byte of every MAC.
    #[arg(long, default_value_t = 0, value_name = "BYTE")]
    seed: u8,
    /// Also send a client identifier (option 61).
    #[arg(long)]
    client_id: bool,
    #[command(flatten)]
    io: IoArgs,
    /// Also write the result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn ceiling(a: CeilingArgs) -> ExitCode {
    let (server, endpoint) = if a.direct {
        if let Err(code) = check_duration(a.duration) {
            return code;
        }
        let endpoint = match a.io.direct_endpoint() {
            Ok(e) => e,
            Err(code) => return code,
        };
        let server = a.server.unwrap_or(Ipv4Addr::BROADCAST);
        (SocketAddrV4::new(server, a.server_port), endpoint)
    } else {
        // clap requires --server without --direct
        let Some(server) = a.server else {
            eprintln!("tandem-bench: --server IP is required without --direct");
            return ExitCode::from(2);
        };
        match endpoints(server, a.server_port, a.relay, a.duration) {
            Ok((server, relay_ip)) => (
                server,
                Endpoint::Relay(SocketAddrV4::new(relay_ip, a.relay_port)),
            ),
            Err(code) => return code,
        }
    };
    if a.clients == 0 || a.clients > tandem_bench::dora::MAX_CLIENTS {
        eprintln!(
            "tandem-bench: --clients must be between 1 and {}",
            tandem_bench::dora::MAX_CLIENTS
        );
        return ExitCode::from(2);
    }
    let co = CeilingOptions {
        server,
        endpoint: endpoint.clone(),
        duration: std::time::Duration::from_secs_f64(a.duration),
        max_frames: a.max_frames,
        clients: a.clients,
        seed: a.seed,
        client_id: a.client_id,
        progress: !a.quiet,
    };
    let result = match a.io.open_xdp(server, &endpoint, Purpose::Ceiling) {
        Err(code) => return code,
        Ok(Some(io)) => io.ceiling(&co),
        Ok(None) => xdp_run::ceiling_udp(&co),
    };
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", r.table());
    let _ = std::io::stdout().flush();
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&r).unwrap_or_default();
        if let Err(e) = fs::write(p, text + "\n") {
            eprintln!("tandem-bench: cannot write {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[derive(Args, Debug)]
struct DoraArgs {
    /// The DHCP server's address.
    #[arg(long, value_name = "IP")]
    server: Ipv4Addr,
    /// UDP port of the server.
    #[arg(long, default_value_t = 67, value_name = "PORT")]
    server_port: u16,
    /// Relay address: bound locally (it must exist on this host or namespace) and written into
    /// giaddr; the server sends its replies there. Default: the local address the route to the
    /// server uses.
    #[arg(long, value_name = "IP")]
    relay: Option<Ipv4Addr>,
    /// UDP port to bind on the relay address. Servers answer relays on 67; change it only for
    /// a test double of a server.
    #[arg(long, default_value_t = 67, value_name = "PORT")]
    relay_port: u16,
    /// Run as clients on the server's own link (no relay) on --interface IFACE: requests with
    /// hops 0, giaddr 0 and the BROADCAST flag, from port 68 to 255.255.255.255:67 (Ethernet
    /// broadcast), so every server answers 255.255.255.255:68 without ARP. AF_XDP: IPv4 source
    /// 0.0.0.0 and the interface's MAC as Ethernet source for every client (chaddr carries
    /// each client's own MAC); replies are every UDP frame to port 68. UDP: a socket on
    /// 0.0.0.0:68 bound to IFACE (nothing else may hold port 68 there); the kernel writes the
    /// interface's address as IP source. RELEASE goes unicast from ciaddr (UDP: from the
    /// socket) to the server id; DECLINE is broadcast; the REBINDING REQUEST of dora+rebind is
    /// broadcast with ciaddr set. dora+renew and dora+rebind need --backend xdp: the server
    /// unicasts their ACK to ciaddr; against a
    /// server that sends through the kernel (tandemd's UDP backend, Kea, dhcpd) those ACKs wait
    /// for an ARP answer for ciaddr that never comes, and the renewals are lost.
    #[arg(long, conflicts_with_all = ["relay", "relay_port"])]
    direct: bool,
    /// Simulated clients (distinct MACs), at most 16777216.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    clients: u32,
    /// New exchanges started per second [default: 1000].
    #[arg(long, value_name = "R", conflicts_with = "flat_out")]
    rate: Option<u64>,
    /// Start exchanges as fast as the outstanding window allows.
    #[arg(long)]
    flat_out: bool,
    /// Most exchanges outstanding at once.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    window: u32,
    /// Seconds during which exchanges start (then outstanding ones finish or time out).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Start at most this many exchanges (the run ends sooner if they are done).
    #[arg(long, value_name = "N")]
    max_leases: Option<u64>,
    /// What each exchange does after its DORA: dora, dora+release, dora+renew, dora+rebind
    /// (through a relay the same message as dora+renew; with --direct the REQUEST is unicast to
    /// the server for renew, broadcast for rebind; both AF_XDP only), dora+decline.
    #[arg(long, default_value = "dora", value_name = "MIX")]
    mix: Mix,
    /// How long each request waits for its reply before a retransmission, in ms.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    timeout_ms: u64,
    /// Retransmissions of a request before its exchange counts as lost.
    #[arg(long, default_value_t = 2, value_name = "N")]
    retries: u8,
    /// Also send a client identifier (option 61 = 1 + MAC).
    #[arg(long)]
    client_id: bool,
    /// Also send a host name (option 12) in DISCOVER and every REQUEST, unique per client:
    /// `c<INDEX>` (`c<INDEX>-<SEED>` with --seed), for a server that registers clients in DNS.
    #[arg(long)]
    host_name: bool,
    /// Second byte of every MAC (02:SEED:..): runs with different seeds are different clients.
    #[arg(long, default_value_t = 0, value_name = "BYTE")]
    seed: u8,
    /// The server's pid: report its CPU time per lease and its CPU use (from /proc/PID/stat).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a chart to FILE (SVG): the leases completed in each second against the target
    /// rate, and the latency CDF of each exchange step.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write the leases the clients hold at the end to FILE, one "MAC ADDRESS" per line.
    #[arg(long, value_name = "FILE")]
    leases_file: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    io: IoArgs,
}

/// The local address the kernel would use to reach `server` (no packet is sent).
fn route_source(server: SocketAddrV4) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(server).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}

/// The server's socket address and the relay address (`relay`, else the route's source), after
/// checking `duration`; `Err` is the usage-error exit code, said on stderr.
fn endpoints(
    server: Ipv4Addr,
    server_port: u16,
    relay: Option<Ipv4Addr>,
    duration: f64,
) -> Result<(SocketAddrV4, Ipv4Addr), ExitCode> {
    let server = SocketAddrV4::new(server, server_port);
    let Some(relay_ip) = relay.or_else(|| route_source(server)) else {
        eprintln!("tandem-bench: no route to {server}; give --relay IP");
        return Err(ExitCode::from(2));
    };
    check_duration(duration)?;
    Ok((server, relay_ip))
}

/// `Err` (the usage-error exit code, said on stderr) unless `duration` is a usable --duration.
fn check_duration(duration: f64) -> Result<(), ExitCode> {
    if !(duration.is_finite() && duration > 0.0 && duration <= 86_400.0) {
        eprintln!("tandem-bench: --duration must be more than 0 and at most 86400 seconds");
        return Err(ExitCode::from(2));
    }
    Ok(())
}

fn dora(a: DoraArgs) -> ExitCode {
    let (server, endpoint) = if a.direct {
        if let Err(code) = check_duration(a.duration) {
            return code;
        }
        if a.mix.replies_to_ciaddr() && a.io.backend == Backend::Udp {
            eprintln!(
                "tandem-bench: --direct --mix {} needs --backend xdp: a RENEWING REQUEST comes \
                 from the lease's address and its ACK is unicast to that address, which a UDP \
                 socket on this host can neither send from nor receive at",
                a.mix
            );
            return ExitCode::from(2);
        }
        match a.io.direct_endpoint() {
            Ok(e) => (SocketAddrV4::new(a.server, a.server_port), e),
            Err(code) => return code,
        }
    } else {
        match endpoints(a.server, a.server_port, a.relay, a.duration) {
            Ok((server, relay_ip)) => (
                server,
                Endpoint::Relay(SocketAddrV4::new(relay_ip, a.relay_port)),
            ),
            Err(code) => return code,
        }
    };
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(0)
        ^ std::process::id();
    let cfg = Config {
        clients: a.clients,
        seed: a.seed,
        client_id: a.client_id,
        host_name: a.host_name,
        path: endpoint.path(),
        mix: a.mix,
        rate: if a.flat_out {
            None
        } else {
            Some(a.rate.unwrap_or(1000))
        },
        window: a.window,
        duration: (a.duration * 1e9) as u64,
        max_exchanges: a.max_leases,
        timeout: a.timeout_ms.saturating_mul(1_000_000),
        retries: a.retries,
        xid_salt: salt,
    };
    let opts = RunOptions {
        server,
        endpoint,
        server_pid: a.server_pid,
        progress: !a.quiet,
    };
    if a.io.backend != Backend::Udp {
        // Before anything is attached (the UDP path reports it from `run`, likewise exit 1).
        if let Err(e) = cfg.validate() {
            eprintln!("tandem-bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match a.io.open_xdp(server, &opts.endpoint, Purpose::Dora) {
        Err(code) => return code,
        Ok(Some(io)) => io
            .run_dora(cfg, &opts)
            .map(|o| (o.outcome, Some(o.xdp)))
            .map_err(|e| e.to_string()),
        Ok(None) => run(cfg, &opts)
            .map(|o| (o, None))
            .map_err(|e| e.to_string()),
    };
    let (out, xdp) = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tandem-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", out.report.table());
    if let Some(x) = &xdp {
        print!("{}", x.table());
    }
    let mut ok = true;
    if let Some(p) = &a.json {
        let text = with_backend(out.report.json(), xdp.as_ref());
        if let Err(e) = fs::write(p, text + "\n") {
            eprintln!("tandem-bench: cannot write {}: {e}", p.display());
            ok = false;
        }
    }
    if let Some(p) = &a.svg {
        let written = Run::from_report(&out.report, &label_for(p))
            .map_err(|e| e.to_string())
            .and_then(|r| fs::write(p, chart::svg(&[r])).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("tandem-bench: cannot write {}: {e}", p.display());
            ok = false;
        }
    }
    if let Some(p) = &a.leases_file {
        let mut text = String::new();
        for h in &out.held {
            let m = h.mac;
            text.push_str(&format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} {}\n",
                m[0], m[1], m[2], m[3], m[4], m[5], h.addr
            ));
        }
        if let Err(e) = fs::write(p, text) {
            eprintln!("tandem-bench: cannot write {}: {e}", p.display());
            ok = false;
        }
    }
    let _ = std::io::stdout().flush();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    if let Some(code) = tandem_controlplane::manpage::from_args(Cli::command, "1") {
        return code;
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Dora(a) => dora(a),
        Cmd::SeedJournal(a) => seed_journal(a),
        Cmd::Chart(a) => chart_cmd(a),
        Cmd::Ceiling(a) => ceiling(a),
        Cmd::Compare(a) => tandem_bench::compare::main(a),
        Cmd::Tune(a) => tandem_bench::tune::main(a),
    }
}
