//! `tandem-bench compare`: Tandem beside Kea and ISC dhcpd, on the same load, in one run.
//!
//! One lab of network namespaces (`tdm-cmp-<pid>-srv`, `-srv2`, `-cli`), the same topology and
//! addresses as the shared peer lab: the server on `kb0` / 10.77.0.1, a second server (pairs) on
//! `kb2` / 10.77.0.3, the generator on bridge `br0` / 10.77.0.2 in the client namespace, as a
//! relay (giaddr 10.77.0.2). Every target starts from an empty lease database, gets the same
//! bounded load, and is stopped (by PID) before the next one; namespaces go at the end, also on
//! failure and on Ctrl-C ([`Lab`]'s `Drop`, and SIGINT/SIGTERM set a flag the waits check).
//!
//! Pairs see every request: the generator sends to 10.77.0.9, a second address both partners
//! hold on their interface, whose neighbour entry in the client namespace is the broadcast MAC,
//! so the bridge floods each request to both partners (what a relay configured with both servers
//! does, in one datagram). Kea's raw sockets only take datagrams to the interface's first address
//! or to broadcast, so the Kea HA pair runs with `dhcp-socket-type = "udp"` (one socket per
//! address, 10.77.0.9 included); the single Kea rows keep the shared lab's raw sockets.
//! perfdhcp (`--generator perfdhcp`) is given the same destination, relay style
//! (`-l 10.77.0.2 10.77.0.9` for pairs, `-l 10.77.0.2 10.77.0.1` otherwise).
//!
//! `tandem-xdp-ddns` is `tandem-xdp` with dynamic DNS (issue #16: leases/s with DNS updates on
//! and off): BIND 9 runs in the server namespace on 127.0.0.1:53 (started before tandemd,
//! stopped by PID after the target, its files on tmpfs and removed), with the forward zone
//! `bench.test` and the reverse zone of the scope (`77.10.in-addr.arpa`), both updatable with a
//! key made by `tsig-keygen`; tandemd gets a `[[ddns]]` table for the scope, and the generator
//! sends every client's own host name (option 12, `c<index>`) in DISCOVER and REQUEST. After
//! the load the row gets the updater's side (`GET /v1/ddns`: updates, failures, the queue left
//! and how long it took to drain), BIND's CPU, the records BIND holds and a sample of clients
//! looked up with `dig` (see [`dns`]).
//!
//! Configurations come from `deploy/lab/compare/` (embedded at build time; `@RUN@`, `@STATE@`
//! and friends are filled in per run). The result is one table ([`Comparison::table`]), one JSON
//! document (the [`Comparison`]) and one SVG chart (every run drawn with [`chart::svg`]).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::chart::{self, Run, Step};
use crate::cpu;
use crate::dora::{Config, Mix};
use crate::latency::Summary;
use crate::run::{run, Endpoint, RunOptions};

mod cgroup;
mod dns;
pub use dns::{DdnsCounters, DdnsFigures, Dns};

/// The first server's address (`kb0` in the server namespace).
pub const SRV_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The second server's address (`kb2` in the second server namespace).
pub const SRV2_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// The generator's (relay's) address, on the client bridge.
pub const CLI_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The address both partners of a pair hold, reached through the broadcast MAC.
pub const PAIR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);
/// Addresses in the pool every configuration serves (10.77.0.10 - 10.77.255.250).
pub const POOL_SIZE: u32 = 65_265;

const KEA_ST: &str = include_str!("../../deploy/lab/compare/kea-st-persist.json");
const KEA_MT: &str = include_str!("../../deploy/lab/compare/kea-mt2-persist.json");
const KEA_HA1: &str = include_str!("../../deploy/lab/compare/kea-ha1.json");
const KEA_HA2: &str = include_str!("../../deploy/lab/compare/kea-ha2.json");
const DHCPD: &str = include_str!("../../deploy/lab/compare/dhcpd.conf");
const DHCPD_FO_P: &str = include_str!("../../deploy/lab/compare/dhcpd-fo-primary.conf");
const DHCPD_FO_S: &str = include_str!("../../deploy/lab/compare/dhcpd-fo-secondary.conf");
const TANDEM_SINGLE: &str = include_str!("../../deploy/lab/compare/tandem-single.toml");
const TANDEM_PAIR: &str = include_str!("../../deploy/lab/compare/tandem-pair.toml");
const KEA_HOOKS: &str = "/usr/lib/x86_64-linux-gnu/kea/hooks";

/// What a target is, for the ratios.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One tandemd.
    TandemSingle,
    /// A tandemd load-balance pair.
    TandemPair,
    /// Kea or ISC dhcpd, single or pair.
    Peer,
    /// Not a DHCP server: the generator's own ceiling.
    Ceiling,
}

/// A server (or pair) under test.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// tandemd, `[dataplane] backend = "xdp"`.
    TandemXdp,
    /// tandemd, UDP backend.
    TandemUdp,
    /// Two tandemd, one load-balance relationship, UDP backend.
    TandemPairUdp,
    /// Two tandemd, one load-balance relationship, XDP backend.
    TandemPairXdp,
    /// tandemd, XDP backend, two AF_XDP workers (cores 0 and 1, two receive queues).
    TandemXdp2w,
    /// tandemd, XDP backend, `durability = "relaxed"` (no fdatasync: what Kea's memfile does).
    TandemXdpRelaxed,
    /// [`Target::TandemXdp`] with dynamic DNS: a `[[ddns]]` table for the bench's scope, BIND 9
    /// in the server namespace taking the updates, and clients sending host names.
    TandemXdpDdns,
    /// Two tandemd, one load-balance relationship, XDP backend, two AF_XDP workers each.
    TandemPairXdp2w,
    /// One tandemd on the UDP backend, two workers (cores 0 and 1, steered by SO_REUSEPORT).
    TandemUdp2w,
    /// The load-balance pair on the UDP backend, two workers each.
    TandemPairUdp2w,
    /// Kea, single-threaded, memfile persist.
    Kea,
    /// Kea, multi-threaded (2 threads), memfile persist.
    KeaMt,
    /// ISC dhcpd, one server.
    Dhcpd,
    /// Kea HA load-balancing pair.
    KeaHa,
    /// ISC dhcpd failover pair.
    DhcpdFo,
    /// The shared lab's stateless reflector (not a DHCP server): the generator's ceiling.
    Echo,
}

impl Target {
    /// Every target, in table order.
    pub const ALL: [Target; 16] = [
        Target::Echo,
        Target::TandemXdp,
        Target::TandemXdpDdns,
        Target::TandemXdp2w,
        Target::TandemXdpRelaxed,
        Target::TandemUdp,
        Target::TandemUdp2w,
        Target::TandemPairXdp,
        Target::TandemPairXdp2w,
        Target::TandemPairUdp,
        Target::TandemPairUdp2w,
        Target::Kea,
        Target::KeaMt,
        Target::Dhcpd,
        Target::KeaHa,
        Target::DhcpdFo,
    ];

    /// The name `--targets` takes.
    pub fn name(self) -> &'static str {
        match self {
            Target::TandemXdp => "tandem-xdp",
            Target::TandemUdp => "tandem-udp",
            Target::TandemPairUdp => "tandem-pair-udp",
            Target::TandemPairXdp => "tandem-pair-xdp",
            Target::TandemXdp2w => "tandem-xdp-2w",
            Target::TandemXdpRelaxed => "tandem-xdp-relaxed",
            Target::TandemXdpDdns => "tandem-xdp-ddns",
            Target::TandemPairXdp2w => "tandem-pair-xdp-2w",
            Target::TandemUdp2w => "tandem-udp-2w",
            Target::TandemPairUdp2w => "tandem-pair-udp-2w",
            Target::Kea => "kea",
            Target::KeaMt => "kea-mt",
            Target::Dhcpd => "dhcpd",
            Target::KeaHa => "kea-ha",
            Target::DhcpdFo => "dhcpd-fo",
            Target::Echo => "echo",
        }
    }

    /// One line saying what runs.
    pub fn describe(self) -> &'static str {
        match self {
            Target::TandemXdp => "tandemd, AF_XDP backend, durability sync",
            Target::TandemUdp => "tandemd, UDP backend, durability sync",
            Target::TandemPairUdp => "two tandemd, load-balance failover, UDP backend, sync",
            Target::TandemPairXdp => "two tandemd, load-balance failover, AF_XDP backend, sync",
            Target::TandemXdp2w => "tandemd, AF_XDP backend, 2 workers (cores 0,1), sync",
            Target::TandemXdpRelaxed => {
                "tandemd, AF_XDP backend, durability relaxed (no fdatasync, as Kea's memfile)"
            }
            Target::TandemXdpDdns => {
                "tandemd, AF_XDP backend, sync, dynamic DNS: A+PTR (TSIG) to BIND 9 in the server \
                 namespace (zones on tmpfs) for every client's host name (perfdhcp: one name for \
                 all, -o 12, so all but the first are DHCID conflicts)"
            }
            Target::TandemPairXdp2w => {
                "two tandemd, load-balance failover, AF_XDP, 2 workers each (cores 0,1), sync"
            }
            Target::TandemUdp2w => "tandemd, UDP backend, 2 workers (cores 0,1), sync",
            Target::TandemPairUdp2w => {
                "two tandemd, load-balance failover, UDP, 2 workers each (cores 0,1), sync"
            }
            Target::Kea => "Kea kea-dhcp4, memfile persist, single thread",
            Target::KeaMt => "Kea kea-dhcp4, memfile persist, 2 threads",
            Target::Dhcpd => "ISC dhcpd, lease file, one server",
            Target::KeaHa => "Kea HA load-balancing pair, persist, 2 threads each",
            Target::DhcpdFo => "ISC dhcpd failover pair (split 128)",
            Target::Echo => "kb-echo: stateless reflector, NOT a server (generator ceiling)",
        }
    }

    /// Its kind.
    pub fn kind(self) -> Kind {
        match self {
            Target::TandemXdp
            | Target::TandemXdpDdns
            | Target::TandemXdp2w
            | Target::TandemXdpRelaxed
            | Target::TandemUdp
            | Target::TandemUdp2w => Kind::TandemSingle,
            Target::TandemPairUdp
            | Target::TandemPairXdp
            | Target::TandemPairXdp2w
            | Target::TandemPairUdp2w => Kind::TandemPair,
            Target::Echo => Kind::Ceiling,
            _ => Kind::Peer,
        }
    }

    /// Whether two servers answer.
    pub fn is_pair(self) -> bool {
        matches!(
            self,
            Target::TandemPairUdp
                | Target::TandemPairXdp
                | Target::TandemPairXdp2w
                | Target::TandemPairUdp2w
                | Target::KeaHa
                | Target::DhcpdFo
        )
    }

    /// Receive queues per server interface (one AF_XDP worker each).
    pub fn queues(self) -> u32 {
        match self {
            Target::TandemXdp2w | Target::TandemPairXdp2w => 2,
            _ => 1,
        }
    }

    /// Whether the target registers clients in DNS: the generator then sends each client's
    /// host name (option 12), and the row gets the DNS figures ([`DdnsFigures`]).
    pub fn ddns(self) -> bool {
        self == Target::TandemXdpDdns
    }

    /// The target named `s`.
    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// Which load generator drives the targets.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// tandem-bench's own (`run::run`), in the client namespace.
    Tandem,
    /// ISC perfdhcp (`-r RATE -p SECS`, relay style), as published figures are measured.
    Perfdhcp,
}

/// How tandem-bench's own generator sends and receives.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GenBackend {
    /// One kernel UDP socket.
    Udp,
    /// AF_XDP frames on the client bridge (`tandem-bench dora --backend xdp --interface br0`).
    Xdp,
}

/// `tandem-bench compare` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Targets, comma-separated, in any order (the table keeps its own): tandem-xdp,
    /// tandem-xdp-ddns (tandem-xdp with dynamic DNS: BIND 9 takes an A and a PTR update for
    /// every client, which sends a host name; needs bind9 and bind9-dnsutils),
    /// tandem-xdp-2w, tandem-xdp-relaxed (durability relaxed: no fdatasync, as Kea's memfile),
    /// tandem-udp, tandem-udp-2w, tandem-pair-xdp, tandem-pair-xdp-2w, tandem-pair-udp,
    /// tandem-pair-udp-2w, kea,
    /// kea-mt, dhcpd, kea-ha, dhcpd-fo, echo (the generator's ceiling), or `all`. The -2w
    /// targets run two AF_XDP workers per server (cores 0 and 1, two queues per interface).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "all",
        value_name = "LIST"
    )]
    pub targets: Vec<String>,
    /// New exchanges started per second, the same for every target (1..=200000).
    #[arg(long, default_value_t = 2000, value_name = "R")]
    pub rate: u64,
    /// tandem-bench's generator only: start exchanges as fast as the window allows instead.
    #[arg(long)]
    pub flat_out: bool,
    /// tandem-xdp-ddns: run BIND 9 this much nicer than the servers (0..=19). BIND stands in
    /// for a DNS server elsewhere; on this machine it shares the cores with the server and the
    /// generator, and at a nice of 10 or more it takes little CPU from them while both are busy.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=19))]
    pub named_nice: u8,
    /// tandem-xdp-ddns: hold BIND 9 to this share of one CPU, % (1..=100; cgroup CPU
    /// bandwidth, v2 or v1). A DNS server on another machine takes none of the server's and
    /// the generator's CPU; capped here, BIND takes little of it and answers slower (updates
    /// wait in the updater's queue and drain after the load). 0: no cap.
    #[arg(long, default_value_t = 0, value_name = "PCT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub named_cpu: u8,
    /// Seconds of load per target (0 < SECS <= 60).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub duration: f64,
    /// Simulated clients (distinct MACs), 1..=60000 (the pool holds 65265 addresses).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub clients: u32,
    /// Most exchanges outstanding at once (tandem-bench's generator) [default: 4 × rate, at
    /// least 2000, at most 60000].
    #[arg(long, value_name = "N")]
    pub window: Option<u32>,
    /// The load generator.
    #[arg(long, value_enum, default_value_t = Generator::Tandem)]
    pub generator: Generator,
    /// I/O of tandem-bench's generator.
    #[arg(long, value_enum, default_value_t = GenBackend::Udp)]
    pub gen_backend: GenBackend,
    /// tandemd to run [default: next to this program, or one directory up].
    #[arg(long, value_name = "FILE")]
    pub tandemd: Option<PathBuf>,
    /// The tandem-bench program that runs the AF_XDP generator (`--gen-backend xdp`)
    /// [default: this program].
    #[arg(long, value_name = "FILE")]
    pub bench: Option<PathBuf>,
    /// Source of the shared lab's reflector (target `echo`), compiled with gcc.
    #[arg(long, value_name = "FILE")]
    pub echo_source: Option<PathBuf>,
    /// Write the comparison as JSON to FILE [default: /tmp/tandem-compare.json].
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the chart to FILE [default: /tmp/tandem-compare.svg].
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Keep the work directory (configurations, logs, lease files) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Why a comparison could not run at all (one target's failure is a row, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// The namespaces could not be built.
    #[error("{0}")]
    Lab(#[from] LabError),
    /// SIGINT or SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

/// A failure of the namespace lab or of a process in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A command could not run or failed.
    #[error("`{cmd}` failed: {detail}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its stderr or the OS error.
        detail: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    File {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Entering a namespace failed.
    #[error("cannot enter network namespace {ns}: {detail}")]
    Netns {
        /// The namespace.
        ns: String,
        /// Why.
        detail: String,
    },
    /// A server did not come up.
    #[error("{0}")]
    NotReady(String),
    /// SIGINT or SIGTERM while waiting.
    #[error("interrupted")]
    Interrupted,
}

/// Whether a row was measured.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured.
    Ok,
    /// Not run: its software is missing (the reason says which).
    Skipped,
    /// It was run but could not be measured (the reason says why).
    Failed,
}

/// One target's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Target name.
    pub target: String,
    /// What ran.
    pub description: String,
    /// Its kind.
    pub kind: Kind,
    /// Measured, skipped or failed.
    pub status: Status,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// Exchanges started per second.
    pub offered_per_s: f64,
    /// Completed DORAs per second.
    pub leases_per_s: f64,
    /// Exchanges without an ACK, % of started.
    pub loss_pct: f64,
    /// DISCOVER → OFFER median, µs.
    pub do_p50_us: Option<f64>,
    /// DISCOVER → OFFER 99th percentile, µs.
    pub do_p99_us: Option<f64>,
    /// REQUEST → ACK median, µs.
    pub ra_p50_us: Option<f64>,
    /// REQUEST → ACK 99th percentile, µs.
    pub ra_p99_us: Option<f64>,
    /// Server CPU time (both partners for pairs) per lease, µs.
    pub server_cpu_us_per_lease: Option<f64>,
    /// Server CPU use (both partners), % of one core.
    pub server_cpu_pct: Option<f64>,
    /// The generator's CPU use, % of one core.
    pub generator_cpu_pct: Option<f64>,
    /// Leases/s over those of the best peer row.
    pub ratio_to_best_peer: Option<f64>,
    /// Leases/s over those of the best Tandem single-server row.
    pub ratio_to_tandem_single: Option<f64>,
    /// Server CPU µs per lease by thread name (see [`Measured::threads`]).
    pub threads: Vec<(String, f64)>,
    /// Tandem: where the requests' time in the server went during the load, stage by stage
    /// (both partners of a pair together).
    pub stages: Vec<StageFigure>,
    /// Tandem: worker wake-ups out of `poll(2)` per lease during the load, and how many of
    /// them found nothing to do (both partners of a pair together).
    pub wakeups_per_lease: Option<(f64, f64)>,
    /// Tandem: per worker and replication figures during the load.
    pub workers: Option<WorkerFigures>,
    /// Targets with dynamic DNS ([`Target::ddns`]): the DNS updater's and BIND's side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddns: Option<DdnsFigures>,
}

/// How a Tandem run's work spread over the workers and, for pairs, the replication (the
/// difference between the end and the start of the load, from `/v1/stats` and
/// `/v1/failover`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorkerFigures {
    /// Per server (`srv`, `srv2`): ACKs per second of each of its workers.
    pub leases_per_s: Vec<(String, Vec<f64>)>,
    /// Requests handed from the receiving worker to the owner, % of those received (AF_XDP:
    /// frames on another worker's queue; UDP: what the kernel could not steer).
    pub handoff_pct: f64,
    /// Pairs: binding updates the partners acknowledged per second (both ways).
    pub updates_acked_per_s: Option<f64>,
    /// Pairs: upper bound of the replication lag bucket holding the 99th percentile of the
    /// updates acknowledged during the load (commit to partner's BNDACK), ms.
    pub lag_p99_le_ms: Option<f64>,
}

/// One Tandem server's counters at a moment: per worker ACKs, handoffs out, received, and per
/// relationship (acknowledged updates, lag bucket counts).
#[derive(Clone, Debug, Default)]
struct ServerCounters {
    acks: Vec<u64>,
    handoffs: u64,
    received: u64,
    acked: u64,
    lag: Vec<u64>,
}

fn server_counters(lab: &Lab, role: Role) -> Option<ServerCounters> {
    let v = curl(lab, role, "http://127.0.0.1:9167/v1/stats", None)?;
    let u = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let mut c = ServerCounters {
        acks: v["workers"]
            .as_array()
            .map(|a| a.iter().map(|w| u(&w["ack"])).collect())
            .unwrap_or_default(),
        handoffs: u(&v["xdp"]["handoff_out"]) + u(&v["udp"]["handoff_out"]),
        received: u(&v["received"]),
        ..ServerCounters::default()
    };
    if let Some(f) = curl(lab, role, "http://127.0.0.1:9167/v1/failover", None) {
        for r in f["relationships"].as_array().into_iter().flatten() {
            c.acked += u(&r["updates_acked"]);
            let counts: Vec<u64> = r["replication_lag_ms"]["counts"]
                .as_array()
                .map(|a| a.iter().map(u).collect())
                .unwrap_or_default();
            c.lag.resize(c.lag.len().max(counts.len()), 0);
            for (a, b) in c.lag.iter_mut().zip(counts) {
                *a += b;
            }
        }
    }
    Some(c)
}

/// The figures between `before` and `after` (per role) over `secs` seconds.
fn worker_figures(
    roles: &[Role],
    before: &[Option<ServerCounters>],
    after: &[Option<ServerCounters>],
    secs: f64,
    pair: bool,
) -> Option<WorkerFigures> {
    let mut f = WorkerFigures::default();
    let (mut handed, mut received, mut acked) = (0u64, 0u64, 0u64);
    let mut lag: Vec<u64> = Vec::new();
    for ((role, b), a) in roles.iter().zip(before).zip(after) {
        let (Some(b), Some(a)) = (b, a) else { continue };
        let per: Vec<f64> = a
            .acks
            .iter()
            .enumerate()
            .map(|(k, n)| n.saturating_sub(b.acks.get(k).copied().unwrap_or(0)) as f64 / secs)
            .collect();
        f.leases_per_s.push((role.suffix().to_string(), per));
        handed += a.handoffs.saturating_sub(b.handoffs);
        received += a.received.saturating_sub(b.received);
        acked += a.acked.saturating_sub(b.acked);
        lag.resize(lag.len().max(a.lag.len()), 0);
        for (i, n) in a.lag.iter().enumerate() {
            lag[i] += n.saturating_sub(b.lag.get(i).copied().unwrap_or(0));
        }
    }
    if f.leases_per_s.is_empty() {
        return None;
    }
    f.handoff_pct = if received > 0 {
        handed as f64 * 100.0 / received as f64
    } else {
        0.0
    };
    if pair {
        f.updates_acked_per_s = Some(acked as f64 / secs);
        let total: u64 = lag.iter().sum();
        if total > 0 {
            let rank = ((total as f64 * 0.99).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, n) in lag.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    f.lag_p99_le_ms = LAG_BOUNDS_US.get(i).map(|&us| us as f64 / 1000.0);
                    break;
                }
            }
        }
    }
    Some(f)
}

/// Upper bounds (µs) of the replication lag buckets of `/v1/failover` (the server's
/// `LAG_BUCKETS_US`); the last count is for longer lags.
const LAG_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000, 60_000_000,
];

/// One stage of a Tandem server's time during a run (from its `stages` statistics, the
/// difference between the end and the start of the load).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageFigure {
    /// The stage (`queue_wait`, `engine`, `journal_write`, `fdatasync`, `ack_wait`, `transmit`).
    pub stage: String,
    /// How often it was counted during the load.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Upper bound of the histogram bucket holding the median, µs (`None`: beyond the last).
    pub p50_le_us: Option<u64>,
    /// Upper bound of the bucket holding the 99th percentile, µs (`None`: beyond the last).
    pub p99_le_us: Option<u64>,
}

/// A Tandem server's stage statistics now: `(stage, count... per bucket, sum of µs)`.
type StageCounts = Vec<(String, Vec<u64>, f64)>;

/// The stage statistics and wake-ups (total, idle) of the Tandem servers of `roles` (summed),
/// from `/v1/stats`.
fn stage_counts(lab: &Lab, roles: &[Role]) -> (StageCounts, (u64, u64)) {
    let mut out: StageCounts = Vec::new();
    let mut wakeups = (0, 0);
    for &role in roles {
        let Some(v) = curl(lab, role, "http://127.0.0.1:9167/v1/stats", None) else {
            continue;
        };
        wakeups.0 += v["wakeups"]["total"].as_u64().unwrap_or(0);
        wakeups.1 += v["wakeups"]["idle"].as_u64().unwrap_or(0);
        let Some(stages) = v.get("stages").and_then(|s| s.as_object()) else {
            continue;
        };
        for (name, st) in stages {
            let counts: Vec<u64> = st["buckets"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default();
            let n: u64 = counts.iter().sum();
            let sum_us = st["mean_us"].as_f64().unwrap_or(0.0) * n as f64;
            match out.iter_mut().find(|(s, _, _)| s == name) {
                Some((_, c, sum)) => {
                    c.resize(c.len().max(counts.len()), 0);
                    for (a, b) in c.iter_mut().zip(&counts) {
                        *a += b;
                    }
                    *sum += sum_us;
                }
                None => out.push((name.clone(), counts, sum_us)),
            }
        }
    }
    (out, wakeups)
}

/// The stages counted between `before` and `after`.
fn stage_figures(before: &StageCounts, after: &StageCounts) -> Vec<StageFigure> {
    const ORDER: [&str; 6] = [
        "queue_wait",
        "engine",
        "journal_write",
        "fdatasync",
        "ack_wait",
        "transmit",
    ];
    let mut out: Vec<StageFigure> = after
        .iter()
        .map(|(name, counts, sum)| {
            let (c0, s0) = before
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, c, s)| (c.clone(), *s))
                .unwrap_or_default();
            let delta: Vec<u64> = counts
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(c0.get(i).copied().unwrap_or(0)))
                .collect();
            let count: u64 = delta.iter().sum();
            let bound =
                |q| tandem_dataplane::worker::quantile_of(&delta, q).filter(|&b| b != u64::MAX);
            StageFigure {
                stage: name.clone(),
                count,
                mean_us: if count > 0 {
                    (sum - s0).max(0.0) / count as f64
                } else {
                    0.0
                },
                p50_le_us: bound(0.5),
                p99_le_us: bound(0.99),
            }
        })
        .filter(|f| f.count > 0)
        .collect();
    out.sort_by_key(|f| {
        ORDER
            .iter()
            .position(|o| *o == f.stage)
            .unwrap_or(ORDER.len())
    });
    out
}

impl Row {
    fn empty(t: Target, status: Status, reason: Option<String>) -> Row {
        Row {
            target: t.name().to_string(),
            description: t.describe().to_string(),
            kind: t.kind(),
            status,
            reason,
            offered_per_s: 0.0,
            leases_per_s: 0.0,
            loss_pct: 0.0,
            do_p50_us: None,
            do_p99_us: None,
            ra_p50_us: None,
            ra_p99_us: None,
            server_cpu_us_per_lease: None,
            server_cpu_pct: None,
            generator_cpu_pct: None,
            ratio_to_best_peer: None,
            ratio_to_tandem_single: None,
            threads: Vec::new(),
            stages: Vec::new(),
            wakeups_per_lease: None,
            workers: None,
            ddns: None,
        }
    }

    /// A row for a target that was not run, and why.
    pub fn skipped(t: Target, reason: impl Into<String>) -> Row {
        Row::empty(t, Status::Skipped, Some(reason.into()))
    }

    /// A row for a target that could not be measured, and why.
    pub fn failed(t: Target, reason: impl Into<String>) -> Row {
        Row::empty(t, Status::Failed, Some(reason.into()))
    }

    /// A measured row.
    pub fn measured(t: Target, m: &Measured) -> Row {
        Row {
            offered_per_s: m.offered_per_s,
            leases_per_s: m.leases_per_s,
            loss_pct: m.loss_pct,
            do_p50_us: m.do_p50_us,
            do_p99_us: m.do_p99_us,
            ra_p50_us: m.ra_p50_us,
            ra_p99_us: m.ra_p99_us,
            server_cpu_us_per_lease: m.server_cpu_us_per_lease,
            server_cpu_pct: m.server_cpu_pct,
            generator_cpu_pct: m.generator_cpu_pct,
            threads: m.threads.clone(),
            ..Row::empty(t, Status::Ok, None)
        }
    }
}

/// What one bounded run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    /// Exchanges started per second.
    pub offered_per_s: f64,
    /// Completed DORAs per second.
    pub leases_per_s: f64,
    /// Lost exchanges, % of started.
    pub loss_pct: f64,
    /// DISCOVER → OFFER median, µs.
    pub do_p50_us: Option<f64>,
    /// DISCOVER → OFFER 99th percentile, µs.
    pub do_p99_us: Option<f64>,
    /// REQUEST → ACK median, µs.
    pub ra_p50_us: Option<f64>,
    /// REQUEST → ACK 99th percentile, µs.
    pub ra_p99_us: Option<f64>,
    /// DISCOVER → ACK 99th percentile, µs (tandem-bench's generator only).
    pub dora_p99_us: Option<f64>,
    /// Server CPU µs per lease (all server processes).
    pub server_cpu_us_per_lease: Option<f64>,
    /// Server CPU, % of one core (all server processes).
    pub server_cpu_pct: Option<f64>,
    /// Generator CPU, % of one core.
    pub generator_cpu_pct: Option<f64>,
    /// Server CPU µs per lease by thread name, summed over the server processes (Tandem: the
    /// workers `tandem-worker-K`, the relationship threads `tandem-fo-R`, ...); threads that
    /// used none are left out.
    pub threads: Vec<(String, f64)>,
    /// The run as the chart draws it.
    pub chart: Option<Run>,
}

/// The whole comparison, as the JSON file holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Always `"tandem-bench"`.
    pub tool: &'static str,
    /// Always `"compare"`.
    pub command: &'static str,
    /// The generator used.
    pub generator: Generator,
    /// Its I/O.
    pub gen_backend: GenBackend,
    /// Offered rate (`None`: flat out).
    pub rate: Option<u64>,
    /// Seconds of load per target.
    pub duration_s: f64,
    /// Simulated clients.
    pub clients: u32,
    /// CPUs on the host (generator and servers share them).
    pub host_cpus: u64,
    /// Peer row the `ratio_to_best_peer` column divides by.
    pub best_peer: Option<String>,
    /// Tandem row the `ratio_to_tandem_single` column divides by.
    pub tandem_single: Option<String>,
    /// One row per target asked for, in table order.
    pub rows: Vec<Row>,
}

/// Fill in the ratio columns of `rows` and return the names of the reference rows: the peer row
/// with the most leases/s, and the Tandem single-server row with the most (ties: the first in
/// table order). Only measured rows with leases are references; every measured row gets ratios.
pub fn compute_ratios(rows: &mut [Row]) -> (Option<String>, Option<String>) {
    // Ties go to the first row in table order.
    let best = |rows: &[Row], kind: Kind| {
        rows.iter()
            .filter(|r| r.kind == kind && r.status == Status::Ok && r.leases_per_s > 0.0)
            .fold(None::<&Row>, |b, r| match b {
                Some(b) if b.leases_per_s >= r.leases_per_s => Some(b),
                _ => Some(r),
            })
            .map(|r| (r.target.clone(), r.leases_per_s))
    };
    let peer = best(rows, Kind::Peer);
    let tandem = best(rows, Kind::TandemSingle);
    for r in rows.iter_mut() {
        let measured = r.status == Status::Ok;
        r.ratio_to_best_peer = peer
            .as_ref()
            .filter(|_| measured)
            .map(|(_, l)| r.leases_per_s / l);
        r.ratio_to_tandem_single = tandem
            .as_ref()
            .filter(|_| measured)
            .map(|(_, l)| r.leases_per_s / l);
    }
    (peer.map(|p| p.0), tandem.map(|t| t.0))
}

/// A latency for the tables: µs below 1 ms, else ms; `-` for none.
pub(crate) fn opt_us(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(us) if us >= 10_000.0 => format!("{:.1}ms", us / 1000.0),
        Some(us) if us >= 1000.0 => format!("{:.2}ms", us / 1000.0),
        Some(us) => format!("{us:.0}µs"),
    }
}

fn opt_ratio(v: Option<f64>) -> String {
    v.map_or("-".into(), |r| format!("{r:.2}"))
}

impl Comparison {
    /// The result table: one line per row, then the skipped and failed rows with their reasons.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let load = self
            .rate
            .map_or("flat out".to_string(), |r| format!("{r} DORA/s offered"));
        let _ = writeln!(
            s,
            "tandem-bench compare: {load} for {:.1} s per target, {} clients, generator {}{}, {} CPUs shared by servers and generator",
            self.duration_s,
            self.clients,
            match self.generator {
                Generator::Tandem => "tandem-bench",
                Generator::Perfdhcp => "perfdhcp",
            },
            if self.generator == Generator::Tandem && self.gen_backend == GenBackend::Xdp {
                " (AF_XDP)"
            } else {
                ""
            },
            self.host_cpus
        );
        let _ = writeln!(s);
        let head = [
            "target",
            "leases/s",
            "loss %",
            "DO p50",
            "DO p99",
            "RA p50",
            "RA p99",
            "CPU µs/l",
            "srv CPU%",
            "gen CPU%",
            "×peer",
            "×tandem",
        ];
        let mut lines: Vec<[String; 12]> = vec![head.map(String::from)];
        for r in self.rows.iter().filter(|r| r.status == Status::Ok) {
            lines.push([
                r.target.clone(),
                format!("{:.0}", r.leases_per_s),
                format!("{:.2}", r.loss_pct),
                opt_us(r.do_p50_us),
                opt_us(r.do_p99_us),
                opt_us(r.ra_p50_us),
                opt_us(r.ra_p99_us),
                r.server_cpu_us_per_lease
                    .map_or("-".into(), |v| format!("{v:.1}")),
                r.server_cpu_pct.map_or("-".into(), |v| format!("{v:.0}")),
                r.generator_cpu_pct
                    .map_or("-".into(), |v| format!("{v:.0}")),
                opt_ratio(r.ratio_to_best_peer),
                opt_ratio(r.ratio_to_tandem_single),
            ]);
        }
        let widths: Vec<usize> = (0..12)
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for l in &lines {
            let mut line = String::from(" ");
            for (i, c) in l.iter().enumerate() {
                let pad = widths[i] - c.chars().count();
                if i == 0 {
                    line.push(' ');
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  ×peer: leases/s over {}; ×tandem: over {}. CPU µs/l: server CPU (both partners of a pair) per lease.",
            self.best_peer.as_deref().unwrap_or("(no peer measured)"),
            self.tandem_single
                .as_deref()
                .unwrap_or("(no Tandem single server measured)")
        );
        for r in self.rows.iter().filter(|r| r.status == Status::Ok) {
            for l in r.ddns.iter().flat_map(|d| d.lines(&r.target)) {
                let _ = writeln!(s, "  {l}");
            }
        }
        for r in self.rows.iter().filter(|r| r.status != Status::Ok) {
            let _ = writeln!(
                s,
                "  {} {}: {}",
                r.target,
                if r.status == Status::Skipped {
                    "skipped"
                } else {
                    "FAILED"
                },
                r.reason.as_deref().unwrap_or("")
            );
        }
        s
    }
}

// ------------------------------------------------------------------------------------- lab

/// Find `prog` on PATH (and in the sbin directories, which `sudo` may leave out).
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// A started process.
struct Proc {
    name: String,
    child: Child,
}

/// The namespaces of one compare or tune run, the processes started in them, and the work
/// directory. Dropping it stops the processes (by PID: TERM, KILL after 5 s) and removes the
/// namespaces and (unless kept) the work directory.
pub struct Lab {
    prefix: String,
    work: PathBuf,
    namespaces: Vec<String>,
    procs: Vec<Proc>,
    keep: bool,
    stop: Arc<AtomicBool>,
    /// Queues the veth pairs were made with (the most [`Lab::set_queues`] can give).
    queues: u32,
    /// Directories outside the work directory (BIND's, on tmpfs), removed with it.
    scratch: Vec<PathBuf>,
}

/// Role of a namespace.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The first server (`kb0`, 10.77.0.1).
    Srv,
    /// The second server (`kb2`, 10.77.0.3).
    Srv2,
    /// The generator (`br0`, 10.77.0.2).
    Cli,
}

impl Role {
    fn suffix(self) -> &'static str {
        match self {
            Role::Srv => "srv",
            Role::Srv2 => "srv2",
            Role::Cli => "cli",
        }
    }
}

fn cmd_line(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Run `argv`, return its stdout, or an error with its stderr.
pub fn sh(argv: &[&str]) -> Result<String, LabError> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(LabError::Command {
            cmd: String::new(),
            detail: "empty command".into(),
        });
    };
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            cmd: cmd_line(argv),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: cmd_line(argv),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Lab {
    /// Build the namespaces `tdm-<tag>-<pid>-<n>-{srv,srv2,cli}` (`n` counts the labs of this
    /// process): veth `kb0`–`kb1` and `kb2`–`kb3`
    /// (each end with `queues` queues), `kb1` and `kb3` on bridge `br0` in the client namespace,
    /// the second server's port down until [`Lab::pair`]. `stop` is checked by every wait.
    pub fn new(tag: &str, queues: u32, keep: bool, stop: Arc<AtomicBool>) -> Result<Lab, LabError> {
        // Several labs of one process (tests run in threads) each get their own names.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("tdm-{tag}-{}-{n}", std::process::id());
        let work = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).map_err(|source| LabError::File {
            path: work.clone(),
            source,
        })?;
        let mut lab = Lab {
            prefix,
            work,
            namespaces: Vec::new(),
            procs: Vec::new(),
            keep,
            stop,
            queues: queues.max(1),
            scratch: Vec::new(),
        };
        lab.build(queues.max(1))?;
        Ok(lab)
    }

    /// Give both servers' interfaces (`kb0`, `kb2`) `n` receive and transmit queues (one AF_XDP
    /// worker each); nothing to do in a lab built with one queue.
    pub fn set_queues(&self, n: u32) -> Result<(), LabError> {
        if self.queues <= 1 {
            return Ok(());
        }
        let n = n.clamp(1, self.queues).to_string();
        for (role, iface) in [(Role::Srv, "kb0"), (Role::Srv2, "kb2")] {
            // The previous target's AF_XDP sockets may still be closing (the kernel refuses
            // fewer channels than they use): retry for a few seconds.
            let mut tries = 0;
            loop {
                match self.exec(role, &["ethtool", "-L", iface, "rx", &n, "tx", &n]) {
                    Ok(_) => break,
                    Err(_) if tries < 25 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn build(&mut self, q: u32) -> Result<(), LabError> {
        for r in [Role::Srv, Role::Srv2, Role::Cli] {
            let ns = self.ns(r);
            sh(&["ip", "netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            let _ = sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
        }
        let (srv, srv2, cli) = (self.ns(Role::Srv), self.ns(Role::Srv2), self.ns(Role::Cli));
        let q = q.to_string();
        for (ns, a, b) in [(&srv, "kb0", "kb1"), (&srv2, "kb2", "kb3")] {
            sh(&[
                "ip",
                "link",
                "add",
                a,
                "netns",
                ns,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                &cli,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ])?;
        }
        sh(&[
            "ip",
            "-n",
            &cli,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        for port in ["kb1", "kb3"] {
            sh(&["ip", "-n", &cli, "link", "set", port, "master", "br0"])?;
        }
        sh(&[
            "ip",
            "-n",
            &cli,
            "addr",
            "add",
            "10.77.0.2/16",
            "dev",
            "br0",
        ])?;
        sh(&[
            "ip",
            "-n",
            &srv,
            "addr",
            "add",
            "10.77.0.1/16",
            "dev",
            "kb0",
        ])?;
        sh(&[
            "ip",
            "-n",
            &srv2,
            "addr",
            "add",
            "10.77.0.3/16",
            "dev",
            "kb2",
        ])?;
        for (ns, dev) in [(&srv, "kb0"), (&srv2, "kb2")] {
            sh(&["ip", "-n", ns, "addr", "add", "10.77.0.9/32", "dev", dev])?;
        }
        sh(&[
            "ip",
            "-n",
            &cli,
            "neigh",
            "replace",
            "10.77.0.9",
            "lladdr",
            "ff:ff:ff:ff:ff:ff",
            "dev",
            "br0",
            "nud",
            "permanent",
        ])?;
        sh(&["ip", "-n", &srv, "link", "set", "kb0", "up"])?;
        sh(&["ip", "-n", &srv2, "link", "set", "kb2", "up"])?;
        sh(&["ip", "-n", &cli, "link", "set", "kb1", "up"])?;
        sh(&["ip", "-n", &cli, "link", "set", "br0", "up"])?;
        self.wait_forwarding("kb1")
    }

    fn wait_forwarding(&self, port: &str) -> Result<(), LabError> {
        let cli = self.ns(Role::Cli);
        for _ in 0..50 {
            let out = sh(&["bridge", "-n", &cli, "link", "show", "dev", port]).unwrap_or_default();
            if out.contains("state forwarding") {
                return Ok(());
            }
            self.sleep(Duration::from_millis(100))?;
        }
        Err(LabError::NotReady(format!(
            "bridge port {port} not forwarding after 5 s"
        )))
    }

    /// The namespace of `role`.
    pub fn ns(&self, role: Role) -> String {
        format!("{}-{}", self.prefix, role.suffix())
    }

    /// The work directory (configurations, logs, state).
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// Sleep, unless a stop was asked for.
    pub fn sleep(&self, d: Duration) -> Result<(), LabError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(LabError::Interrupted);
        }
        std::thread::sleep(d);
        if self.stop.load(Ordering::Relaxed) {
            return Err(LabError::Interrupted);
        }
        Ok(())
    }

    /// Connect (or disconnect) the second server's namespace to the client bridge.
    pub fn pair(&self, on: bool) -> Result<(), LabError> {
        let cli = self.ns(Role::Cli);
        sh(&[
            "ip",
            "-n",
            &cli,
            "link",
            "set",
            "kb3",
            if on { "up" } else { "down" },
        ])?;
        if on {
            self.wait_forwarding("kb3")?;
        }
        Ok(())
    }

    /// Write `text` to `name` in the work directory; returns the path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf, LabError> {
        let p = self.work.join(name);
        fs::write(&p, text).map_err(|source| LabError::File {
            path: p.clone(),
            source,
        })?;
        Ok(p)
    }

    /// Start `argv` in `role`'s namespace with `env` added, output to `<name>.log` in the work
    /// directory; returns its PID (`ip netns exec` execs the command, so it is the server's).
    pub fn spawn(
        &mut self,
        name: &str,
        role: Role,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<u32, LabError> {
        let log = self.work.join(format!("{name}.log"));
        let out = fs::File::create(&log).map_err(|source| LabError::File {
            path: log.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| LabError::File {
            path: log.clone(),
            source,
        })?;
        let ns = self.ns(role);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().map_err(|e| LabError::Command {
            cmd: cmd_line(argv),
            detail: e.to_string(),
        })?;
        let pid = child.id();
        self.procs.push(Proc {
            name: name.to_string(),
            child,
        });
        Ok(pid)
    }

    /// Whether the process `name` started is still running.
    pub fn alive(&mut self, name: &str) -> bool {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// The last lines of `name`'s log.
    pub fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.work.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    /// Run `argv` in `role`'s namespace, return its stdout.
    pub fn exec(&self, role: Role, argv: &[&str]) -> Result<String, LabError> {
        let ns = self.ns(role);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(argv);
        sh(&full)
    }

    /// Whether something listens on UDP port 67 in `role`'s namespace.
    pub fn udp67(&self, role: Role) -> bool {
        self.exec(role, &["ss", "-Hulnp", "sport = :67"])
            .is_ok_and(|o| !o.trim().is_empty())
    }

    /// Wait until `ready` holds (checked every 100 ms) while `name` runs, at most `secs`.
    pub fn wait_ready(
        &mut self,
        name: &str,
        secs: u64,
        mut ready: impl FnMut(&Lab) -> bool,
    ) -> Result<(), LabError> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            if !self.alive(name) {
                return Err(LabError::NotReady(format!(
                    "{name} exited: {}",
                    self.log_tail(name)
                )));
            }
            if ready(self) {
                return Ok(());
            }
            self.sleep(Duration::from_millis(100))?;
        }
        Err(LabError::NotReady(format!(
            "{name} not ready after {secs} s: {}",
            self.log_tail(name)
        )))
    }

    /// Stop every process started so far (TERM, KILL after 5 s), in reverse order.
    pub fn stop_all(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            if let Ok(None) = p.child.try_wait() {
                let _ = Command::new("kill")
                    .args(["-TERM", &p.child.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(5) {
                    if !matches!(p.child.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
    }

    /// A directory of this lab outside the work directory (`base`/`<lab prefix>-<name>`, e.g.
    /// on tmpfs), created empty; removed by [`Lab::remove_scratch`] or when the lab is dropped
    /// (kept with `--keep`).
    pub fn scratch_dir(&mut self, base: &Path, name: &str) -> Result<PathBuf, LabError> {
        let d = base.join(format!("{}-{name}", self.prefix));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).map_err(|source| LabError::File {
            path: d.clone(),
            source,
        })?;
        if !self.scratch.contains(&d) {
            self.scratch.push(d.clone());
        }
        Ok(d)
    }

    /// Remove the scratch directory `d` now (unless `--keep`: then say where it is).
    pub fn remove_scratch(&mut self, d: &Path) {
        self.scratch.retain(|x| x != d);
        if self.keep {
            eprintln!("tandem-bench: kept {}", d.display());
        } else {
            let _ = fs::remove_dir_all(d);
        }
    }

    /// Run `f` on a thread inside `role`'s network namespace.
    pub fn in_netns<T: Send + 'static>(
        &self,
        role: Role,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LabError> {
        let ns = self.ns(role);
        let path = Path::new("/run/netns").join(&ns);
        let h = std::thread::spawn(move || -> Result<T, String> {
            let file = fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns: {e}"))?;
            Ok(f())
        });
        match h.join() {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(detail)) => Err(LabError::Netns { ns, detail }),
            Err(_) => Err(LabError::Netns {
                ns,
                detail: "the thread panicked".into(),
            }),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all();
        for ns in self.namespaces.drain(..).rev() {
            // Anything still inside is something a server of ours forked.
            if let Ok(pids) = sh(&["ip", "netns", "pids", &ns]) {
                for pid in pids.split_whitespace() {
                    let _ = Command::new("kill")
                        .args(["-KILL", pid])
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = sh(&["ip", "netns", "del", &ns]);
        }
        if self.keep {
            eprintln!("tandem-bench: kept {}", self.work.display());
        } else {
            let _ = fs::remove_dir_all(&self.work);
        }
        for d in std::mem::take(&mut self.scratch) {
            self.remove_scratch(&d);
        }
    }
}

// ------------------------------------------------------------------------------- servers

/// What a started target serves on.
pub struct Started {
    /// Server process ids (CPU is charged to all of them).
    pub pids: Vec<u32>,
    /// Where tandem-bench's generator sends.
    pub addr: Ipv4Addr,
    /// The generator sends each client's host name (option 12): the target registers names
    /// in DNS.
    pub host_names: bool,
    /// The DNS server taking the target's updates ([`Target::TandemXdpDdns`]).
    pub dns: Option<Dns>,
}

impl Started {
    /// Servers `pids` answering at `addr`, no DNS.
    pub fn at(pids: Vec<u32>, addr: Ipv4Addr) -> Started {
        Started {
            pids,
            addr,
            host_names: false,
            dns: None,
        }
    }
}

/// Tandem single-server settings beyond the backend (tune's sweep points).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TandemExtra {
    /// Lines added to `[server]`.
    pub server: String,
    /// Lines added to `[dataplane]`.
    pub dataplane: String,
    /// `[server] durability` instead of `"sync"`.
    pub durability: Option<String>,
    /// Text appended at the end of the file: top-level tables such as `[[ddns]]`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tail: String,
}

fn curl(lab: &Lab, role: Role, url: &str, post: Option<&str>) -> Option<serde_json::Value> {
    let mut argv = vec!["curl", "-s", "-m", "1"];
    if let Some(body) = post {
        argv.extend_from_slice(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ]);
    }
    argv.push(url);
    let out = lab.exec(role, &argv).ok()?;
    serde_json::from_str(&out).ok()
}

/// Start one tandemd (`backend` "udp" or "xdp") in the server namespace and wait until its
/// admin endpoint answers.
pub fn start_tandem_single(
    lab: &mut Lab,
    tandemd: &Path,
    backend: &str,
    extra: &TandemExtra,
    tag: &str,
) -> Result<Started, LabError> {
    let state = lab.work().join(format!("state-{tag}"));
    let _ = fs::remove_dir_all(&state);
    let text = tandem_single_config(&state, backend, extra);
    let cfg = lab.write(&format!("tandem-{tag}.toml"), &text)?;
    let cfg = cfg.display().to_string();
    let bin = tandemd.display().to_string();
    sh(&[&bin, "--check-config", &cfg])?;
    let name = format!("tandemd-{tag}");
    let pid = lab.spawn(&name, Role::Srv, &[&bin, "--config", &cfg], &[])?;
    lab.wait_ready(&name, 20, |l| {
        curl(l, Role::Srv, "http://127.0.0.1:9167/v1/status", None).is_some()
    })?;
    Ok(Started::at(vec![pid], SRV_IP))
}

/// The single server's configuration: [`TANDEM_SINGLE`] with `state`, `backend` and `extra`.
fn tandem_single_config(state: &Path, backend: &str, extra: &TandemExtra) -> String {
    let text = TANDEM_SINGLE
        .replace("@STATE@", &state.display().to_string())
        .replace("@BACKEND@", backend)
        .replace("@SERVER_EXTRA@", &extra.server)
        .replace("@DATAPLANE_EXTRA@", &extra.dataplane);
    let mut text = match &extra.durability {
        Some(d) => text.replace("durability = \"sync\"", &format!("durability = \"{d}\"")),
        None => text,
    };
    if !extra.tail.is_empty() {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&extra.tail);
    }
    text
}

/// Two AF_XDP workers pinned to cores 0 and 1.
fn two_workers() -> TandemExtra {
    TandemExtra {
        dataplane: "cores = [0, 1]\n".into(),
        ..TandemExtra::default()
    }
}

/// Start BIND 9 in the server namespace (zones for the bench's scope, updates signed with a
/// fresh key), wait until it answers, then tandemd on AF_XDP with a `[[ddns]]` table pointing
/// at it. BIND stops with the target's other processes; its directory goes with
/// [`Lab::remove_scratch`].
fn start_tandem_ddns(
    lab: &mut Lab,
    tandemd: &Path,
    tag: &str,
    named: dns::NamedLimits,
) -> Result<Started, LabError> {
    let (scope, net, prefix) = dns::scope_of(TANDEM_SINGLE).ok_or_else(|| {
        LabError::NotReady("no [[scope]] name and subnet in tandem-single.toml".into())
    })?;
    let reverse = dns::reverse_zone(net, prefix).ok_or_else(|| {
        LabError::NotReady(format!(
            "no reverse zone for the scope's subnet {net}/{prefix}"
        ))
    })?;
    let mut bind = Dns::start(lab, Role::Srv, tag, &reverse)?;
    if named.nice > 0 {
        bind.renice(named.nice)?;
    }
    if named.cpu_pct > 0 {
        bind.cap_cpu(named.cpu_pct)?;
    }
    let extra = TandemExtra {
        tail: dns::ddns_table(&scope, bind.listen(), bind.key_file()),
        ..TandemExtra::default()
    };
    let mut started = start_tandem_single(lab, tandemd, "xdp", &extra, tag)?;
    started.host_names = true;
    started.dns = Some(bind);
    Ok(started)
}

/// Start the load-balance pair (`backend`, `dataplane` added to `[dataplane]`; files and logs
/// named after `tag`) and wait until both are NORMAL with their pools balanced.
/// Start the load-balance pair (both partners with `extra`'s `[server]` and `[dataplane]`
/// lines) and wait until both are NORMAL with balanced pools.
pub fn start_tandem_pair(
    lab: &mut Lab,
    tandemd: &Path,
    backend: &str,
    extra: &TandemExtra,
    tag: &str,
) -> Result<Started, LabError> {
    lab.pair(true)?;
    let bin = tandemd.display().to_string();
    let mut pids = Vec::new();
    for (i, role, id, partner, iface, frole) in [
        (1, Role::Srv, SRV_IP, SRV2_IP, "kb0", "primary"),
        (2, Role::Srv2, SRV2_IP, SRV_IP, "kb2", "secondary"),
    ] {
        let state = lab.work().join(format!("state-pair-{tag}-{i}"));
        let _ = fs::remove_dir_all(&state);
        let text = TANDEM_PAIR
            .replace("@STATE@", &state.display().to_string())
            .replace("@BACKEND@", backend)
            .replace("@ID@", &id.to_string())
            .replace("@PARTNER@", &partner.to_string())
            .replace("@IFACE@", iface)
            .replace("@ROLE@", frole)
            .replace("@SERVER_EXTRA@", &extra.server)
            .replace("@DATAPLANE_EXTRA@", &extra.dataplane);
        let cfg = lab.write(&format!("tandem-pair-{tag}-{i}.toml"), &text)?;
        let cfg = cfg.display().to_string();
        sh(&[&bin, "--check-config", &cfg])?;
        let name = format!("tandemd-pair-{tag}-{i}");
        pids.push(lab.spawn(&name, role, &[&bin, "--config", &cfg], &[])?);
        lab.wait_ready(&name, 20, |l| {
            curl(l, role, "http://127.0.0.1:9167/v1/status", None).is_some()
        })?;
    }
    // Both NORMAL, and each partner has free addresses to give (the pool is balanced).
    let url = "http://127.0.0.1:9167/v1/failover/cmp-pair";
    let view = |l: &Lab, role| {
        curl(l, role, url, None).map(|v| {
            (
                v["state"].as_str().unwrap_or("?").to_string(),
                v["free"].as_u64().unwrap_or(0),
            )
        })
    };
    let name = format!("tandemd-pair-{tag}-1");
    let mut last = (0, 0);
    let mut stable = 0;
    lab.wait_ready(&name, 60, |l| {
        let (Some((s1, f1)), Some((s2, f2))) = (view(l, Role::Srv), view(l, Role::Srv2)) else {
            return false;
        };
        if s1 != "NORMAL" || s2 != "NORMAL" || f1 == 0 || f2 == 0 {
            return false;
        }
        stable = if (f1, f2) == last { stable + 1 } else { 0 };
        last = (f1, f2);
        stable >= 5
    })
    .map_err(|e| LabError::NotReady(format!("Tandem pair not NORMAL and balanced: {e}")))?;
    Ok(Started::at(pids, PAIR_IP))
}

fn kea_env(lab: &Lab) -> [(String, String); 2] {
    let w = lab.work().display().to_string();
    [
        ("KEA_PIDFILE_DIR".into(), w.clone()),
        ("KEA_LOCKFILE_DIR".into(), w),
    ]
}

fn start_kea(lab: &mut Lab, template: &str, name: &str, role: Role) -> Result<u32, LabError> {
    let run = lab.work().display().to_string();
    for f in [
        format!("{name}.leases4.csv"),
        format!("{name}.leases4.csv.2"),
    ] {
        let _ = fs::remove_file(lab.work().join(f));
    }
    let cfg = lab.write(&format!("{name}.json"), &template.replace("@RUN@", &run))?;
    let cfg = cfg.display().to_string();
    let env = kea_env(lab);
    let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let pid = lab.spawn(name, role, &["kea-dhcp4", "-c", &cfg], &env)?;
    lab.wait_ready(name, 15, |l| l.udp67(role))?;
    Ok(pid)
}

fn start_dhcpd(
    lab: &mut Lab,
    template: &str,
    name: &str,
    role: Role,
    iface: &str,
) -> Result<u32, LabError> {
    let leases = lab.write(&format!("{name}.leases"), "")?;
    let cfg = lab.write(&format!("{name}.conf"), template)?;
    let pidf = lab.work().join(format!("{name}.pidfile"));
    let (leases, cfg, pidf) = (
        leases.display().to_string(),
        cfg.display().to_string(),
        pidf.display().to_string(),
    );
    let argv = [
        "dhcpd", "-f", "-q", "-4", "-cf", &cfg, "-lf", &leases, "-pf", &pidf, iface,
    ];
    let pid = lab.spawn(name, role, &argv, &[])?;
    lab.wait_ready(name, 15, |l| l.udp67(role))?;
    Ok(pid)
}

fn ha_state(lab: &Lab, role: Role, ip: Ipv4Addr) -> String {
    let body = r#"{"command":"ha-heartbeat","service":["dhcp4"]}"#;
    curl(lab, role, &format!("http://{ip}:8067/"), Some(body))
        .and_then(|v| v[0]["arguments"]["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// "my-state partner-state" of the last failover state record in a dhcpd lease file.
fn fo_state(path: &Path) -> (String, String) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let (mut me, mut partner, mut inside) = (String::new(), String::new(), false);
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("failover peer") {
            inside = true;
        } else if inside && l.starts_with("my state") {
            me = l.split_whitespace().nth(2).unwrap_or("").to_string();
        } else if inside && l.starts_with("partner state") {
            partner = l.split_whitespace().nth(2).unwrap_or("").to_string();
        } else if l.starts_with('}') {
            inside = false;
        }
    }
    (me, partner)
}

fn start_target(
    lab: &mut Lab,
    t: Target,
    tandemd: &Path,
    echo: &Path,
    named: dns::NamedLimits,
) -> Result<Started, LabError> {
    match t {
        Target::TandemXdp => {
            start_tandem_single(lab, tandemd, "xdp", &TandemExtra::default(), "xdp")
        }
        Target::TandemUdp => {
            start_tandem_single(lab, tandemd, "udp", &TandemExtra::default(), "udp")
        }
        Target::TandemXdp2w => start_tandem_single(lab, tandemd, "xdp", &two_workers(), "xdp-2w"),
        Target::TandemXdpDdns => start_tandem_ddns(lab, tandemd, "xdp-ddns", named),
        Target::TandemXdpRelaxed => {
            let relaxed = TandemExtra {
                durability: Some("relaxed".into()),
                ..TandemExtra::default()
            };
            start_tandem_single(lab, tandemd, "xdp", &relaxed, "xdp-relaxed")
        }
        Target::TandemPairUdp => {
            start_tandem_pair(lab, tandemd, "udp", &TandemExtra::default(), "udp")
        }
        Target::TandemPairXdp => {
            start_tandem_pair(lab, tandemd, "xdp", &TandemExtra::default(), "xdp")
        }
        Target::TandemPairXdp2w => start_tandem_pair(lab, tandemd, "xdp", &two_workers(), "xdp-2w"),
        Target::TandemUdp2w => start_tandem_single(lab, tandemd, "udp", &two_workers(), "udp-2w"),
        Target::TandemPairUdp2w => start_tandem_pair(lab, tandemd, "udp", &two_workers(), "udp-2w"),
        Target::Kea => Ok(Started::at(
            vec![start_kea(lab, KEA_ST, "kea-st-persist", Role::Srv)?],
            SRV_IP,
        )),
        Target::KeaMt => Ok(Started::at(
            vec![start_kea(lab, KEA_MT, "kea-mt2-persist", Role::Srv)?],
            SRV_IP,
        )),
        Target::Dhcpd => Ok(Started::at(
            vec![start_dhcpd(lab, DHCPD, "dhcpd", Role::Srv, "kb0")?],
            SRV_IP,
        )),
        Target::KeaHa => {
            lab.pair(true)?;
            let p1 = start_kea(lab, KEA_HA1, "kea-ha1", Role::Srv)?;
            let p2 = start_kea(lab, KEA_HA2, "kea-ha2", Role::Srv2)?;
            lab.wait_ready("kea-ha1", 60, |l| {
                ha_state(l, Role::Srv, SRV_IP) == "load-balancing"
                    && ha_state(l, Role::Srv2, SRV2_IP) == "load-balancing"
            })
            .map_err(|e| LabError::NotReady(format!("Kea HA not load-balancing: {e}")))?;
            Ok(Started::at(vec![p1, p2], PAIR_IP))
        }
        Target::DhcpdFo => {
            lab.pair(true)?;
            let p1 = start_dhcpd(lab, DHCPD_FO_P, "dhcpd-fo-p", Role::Srv, "kb0")?;
            let p2 = start_dhcpd(lab, DHCPD_FO_S, "dhcpd-fo-s", Role::Srv2, "kb2")?;
            let (lp, ls) = (
                lab.work().join("dhcpd-fo-p.leases"),
                lab.work().join("dhcpd-fo-s.leases"),
            );
            let normal = |p: &Path| fo_state(p) == ("normal".into(), "normal".into());
            lab.wait_ready("dhcpd-fo-p", 120, |_| normal(&lp) && normal(&ls))
                .map_err(|e| LabError::NotReady(format!("dhcpd failover not normal: {e}")))?;
            // The primary hands half the free leases to the secondary: wait until the
            // secondary's backup count stops changing.
            let (mut prev, mut same) = (usize::MAX, 0);
            lab.wait_ready("dhcpd-fo-p", 120, |l| {
                let text = fs::read_to_string(&ls).unwrap_or_default();
                let n = text.matches("binding state backup").count();
                same = if n > 0 && n == prev { same + 1 } else { 0 };
                prev = n;
                // ~2 s without a change (checks every 100 ms, plus this pause)
                let _ = l.sleep(Duration::from_millis(150));
                same >= 8
            })
            .map_err(|e| LabError::NotReady(format!("dhcpd failover pool not balanced: {e}")))?;
            Ok(Started::at(vec![p1, p2], PAIR_IP))
        }
        Target::Echo => {
            let bin = echo.display().to_string();
            let pid = lab.spawn("echo", Role::Srv, &[&bin, "0.0.0.0", "10.77.0.1"], &[])?;
            lab.wait_ready("echo", 10, |l| l.udp67(Role::Srv))?;
            Ok(Started::at(vec![pid], SRV_IP))
        }
    }
}

// ---------------------------------------------------------------------------- generators

/// Settings of one bounded load run.
#[derive(Clone, Debug)]
pub struct Load {
    /// Offered rate (`None`: flat out, tandem-bench's generator only).
    pub rate: Option<u64>,
    /// Seconds of load.
    pub duration: f64,
    /// Simulated clients.
    pub clients: u32,
    /// Most exchanges outstanding.
    pub window: u32,
}

fn ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|&p| cpu::process_ticks(p).unwrap_or(0))
        .sum()
}

/// Every thread's CPU ticks so far, by name, summed over `pids`.
fn thread_ticks(pids: &[u32]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for &p in pids {
        for (name, t) in cpu::thread_ticks(p) {
            *m.entry(name).or_insert(0) += t;
        }
    }
    m
}

/// µs per lease of each thread name since `t0` ([`thread_ticks`]).
fn thread_figures(
    pids: &[u32],
    t0: &std::collections::BTreeMap<String, u64>,
    acks: u64,
) -> Vec<(String, f64)> {
    if acks == 0 {
        return Vec::new();
    }
    let hz = cpu::clock_ticks_per_sec() as f64;
    thread_ticks(pids)
        .into_iter()
        .filter_map(|(name, t)| {
            let d = t.saturating_sub(t0.get(&name).copied().unwrap_or(0));
            (d > 0).then(|| (name, d as f64 / hz * 1e6 / acks as f64))
        })
        .collect()
}

fn cpu_figures(pids: &[u32], t0: u64, wall: f64, acks: u64) -> (Option<f64>, Option<f64>) {
    let secs = ticks(pids).saturating_sub(t0) as f64 / cpu::clock_ticks_per_sec() as f64;
    let per = (acks > 0).then(|| secs * 1e6 / acks as f64);
    (per, Some(100.0 * secs / wall.max(1e-9)))
}

/// One bounded run of tandem-bench's own generator from the client namespace to `started`.
pub fn run_own(
    lab: &Lab,
    started: &Started,
    load: &Load,
    label: &str,
    io: &GenIo,
) -> Result<Measured, String> {
    if let GenIo::Xdp { bench } = io {
        return run_own_xdp(lab, started, load, label, bench);
    }
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    let cfg = Config {
        clients: load.clients,
        seed: 0,
        client_id: false,
        host_name: started.host_names,
        path: crate::dora::Path::Relay(CLI_IP),
        mix: Mix::Dora,
        rate: load.rate,
        window: load.window,
        duration: (load.duration * 1e9) as u64,
        max_exchanges: None,
        timeout: 1_000_000_000,
        retries: 2,
        xid_salt: salt,
    };
    let opts = RunOptions {
        server: SocketAddrV4::new(started.addr, 67),
        endpoint: Endpoint::Relay(SocketAddrV4::new(CLI_IP, 67)),
        server_pid: None,
        progress: false,
    };
    let t0 = ticks(&started.pids);
    let th0 = thread_ticks(&started.pids);
    let at = Instant::now();
    let out = lab
        .in_netns(Role::Cli, move || {
            run(cfg, &opts).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())??;
    let wall = at.elapsed().as_secs_f64();
    let r = &out.report;
    let (per, pct) = cpu_figures(&started.pids, t0, wall, r.counts.leases);
    let threads = thread_figures(&started.pids, &th0, r.counts.leases);
    let q = |s: &Summary, p: f64| (s.count > 0).then_some(p);
    let l = &r.latency_us;
    Ok(Measured {
        offered_per_s: r.offered_per_s,
        leases_per_s: r.leases_per_s,
        loss_pct: r.loss_pct,
        do_p50_us: q(&l.discover_offer, l.discover_offer.p50_us),
        do_p99_us: q(&l.discover_offer, l.discover_offer.p99_us),
        ra_p50_us: q(&l.request_ack, l.request_ack.p50_us),
        ra_p99_us: q(&l.request_ack, l.request_ack.p99_us),
        dora_p99_us: q(&l.dora, l.dora.p99_us),
        server_cpu_us_per_lease: per,
        server_cpu_pct: pct,
        generator_cpu_pct: Some(r.generator_cpu_pct),
        threads,
        chart: Run::from_report(r, label).ok(),
    })
}

/// How tandem-bench's own generator runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenIo {
    /// In this process, over a UDP socket (`run::run` on a thread in the client namespace).
    Udp,
    /// `BENCH dora --backend xdp --interface br0` under `ip netns exec` (the AF_XDP shell reads
    /// the interface from `/sys`, which only `ip netns exec` mounts for the namespace).
    Xdp {
        /// The tandem-bench program.
        bench: PathBuf,
    },
}

/// The figures of a saved `dora --json` report.
pub fn measured_from_json(text: &str, label: &str) -> Result<Measured, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the generator's JSON report: {e}"))?;
    let num = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("the generator's JSON report has no number `{k}`"))
    };
    let step = |k: &str, q: &str| {
        let s = &v["latency_us"][k];
        (s["count"].as_u64().unwrap_or(0) > 0)
            .then(|| s[q].as_f64())
            .flatten()
    };
    Ok(Measured {
        offered_per_s: num("offered_per_s")?,
        leases_per_s: num("leases_per_s")?,
        loss_pct: num("loss_pct")?,
        do_p50_us: step("discover_offer", "p50_us"),
        do_p99_us: step("discover_offer", "p99_us"),
        ra_p50_us: step("request_ack", "p50_us"),
        ra_p99_us: step("request_ack", "p99_us"),
        dora_p99_us: step("dora", "p99_us"),
        server_cpu_us_per_lease: None,
        server_cpu_pct: None,
        threads: Vec::new(),
        generator_cpu_pct: v["generator_cpu_pct"].as_f64(),
        chart: Run::from_json(text, label).ok(),
    })
}

/// One bounded run of tandem-bench's generator over AF_XDP, as a child in the client namespace.
fn run_own_xdp(
    lab: &Lab,
    started: &Started,
    load: &Load,
    label: &str,
    bench: &Path,
) -> Result<Measured, String> {
    let json = lab.work().join(format!("dora-xdp-{label}.json"));
    let rate = load.rate.map_or_else(
        || vec!["--flat-out".to_string()],
        |r| vec!["--rate".into(), r.to_string()],
    );
    let mut argv: Vec<String> = [
        bench.display().to_string(),
        "dora".into(),
        "--backend".into(),
        "xdp".into(),
        "--interface".into(),
        "br0".into(),
        "--server".into(),
        started.addr.to_string(),
        "--relay".into(),
        CLI_IP.to_string(),
        "--clients".into(),
        load.clients.to_string(),
        "--window".into(),
        load.window.to_string(),
        "--duration".into(),
        load.duration.to_string(),
        "--quiet".into(),
        "--json".into(),
        json.display().to_string(),
    ]
    .into();
    argv.extend(rate);
    if started.host_names {
        argv.push("--host-name".into());
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let t0 = ticks(&started.pids);
    let th0 = thread_ticks(&started.pids);
    let at = Instant::now();
    let limit = Duration::from_secs_f64(load.duration + 30.0);
    let mut full = vec!["ip", "netns", "exec"];
    let ns = lab.ns(Role::Cli);
    full.push(&ns);
    full.extend_from_slice(&argv);
    let out = Command::new("ip")
        .args(&full[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bench.display()))?;
    let res = wait_bounded(out, limit, lab)?;
    let wall = at.elapsed().as_secs_f64();
    if !res.status.success() {
        return Err(format!(
            "AF_XDP generator: {}: {}",
            res.status,
            String::from_utf8_lossy(&res.stderr).trim()
        ));
    }
    let text = fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
    let mut m = measured_from_json(&text, label)?;
    let leases = (m.leases_per_s * load.duration).round() as u64;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let acks = v["counts"]["leases"].as_u64().unwrap_or(leases);
    let (per, pct) = cpu_figures(&started.pids, t0, wall, acks);
    m.server_cpu_us_per_lease = per;
    m.server_cpu_pct = pct;
    m.threads = thread_figures(&started.pids, &th0, acks);
    Ok(m)
}

/// Wait for `child` at most `limit` (then kill it), or until a stop is asked for.
fn wait_bounded(
    mut child: Child,
    limit: Duration,
    lab: &Lab,
) -> Result<std::process::Output, String> {
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t.elapsed() < limit && lab.sleep(Duration::from_millis(50)).is_ok() => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(
                    "the generator did not finish in time (or a stop was asked for)".into(),
                );
            }
        }
    }
    child.wait_with_output().map_err(|e| e.to_string())
}

/// The figures of one perfdhcp (Kea 2.2) DHCPv4 run, from its output with `-x t`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerfdhcpStats {
    /// DISCOVERs sent.
    pub do_sent: u64,
    /// OFFERs received.
    pub do_rcvd: u64,
    /// REQUESTs sent.
    pub ra_sent: u64,
    /// ACKs received.
    pub ra_rcvd: u64,
    /// DISCOVER → OFFER delays, µs, sorted.
    pub do_delays_us: Vec<f64>,
    /// REQUEST → ACK delays, µs, sorted.
    pub ra_delays_us: Vec<f64>,
    /// When each ACK arrived, seconds after the first DISCOVER was sent.
    pub ack_times_s: Vec<f64>,
}

/// Why perfdhcp's output could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PerfdhcpError {
    /// A statistics section is missing.
    #[error("no \"Statistics for: {0}\" section in perfdhcp's output")]
    NoSection(&'static str),
    /// A counter is missing or not a number.
    #[error("perfdhcp {section}: no number for \"{field}\"")]
    NoField {
        /// The section.
        section: &'static str,
        /// The field.
        field: &'static str,
    },
}

fn section<'a>(text: &'a str, head: &str) -> Option<&'a str> {
    let at = text.find(head)? + head.len();
    let rest = &text[at..];
    let end = rest.find("***").unwrap_or(rest.len());
    Some(&rest[..end])
}

fn field(block: &str, name: &str) -> Option<u64> {
    block.lines().find_map(|l| {
        let v = l.trim().strip_prefix(name)?.trim().strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// `(sent, received)` timestamps, seconds, of every answered packet of a timestamps section.
fn stamps(block: &str) -> Vec<(f64, f64)> {
    block
        .lines()
        .filter_map(|l| {
            let v = l.split("sent / received:").nth(1)?;
            let mut it = v.split('/').map(str::trim);
            let a: f64 = it.next()?.parse().ok()?;
            let b: f64 = it.next()?.split_whitespace().next()?.parse().ok()?;
            Some((a, b))
        })
        .collect()
}

/// Read perfdhcp's (Kea 2.2, DHCPv4) final statistics and, with `-x t`, its per-packet
/// timestamps.
pub fn parse_perfdhcp(text: &str) -> Result<PerfdhcpStats, PerfdhcpError> {
    let mut s = PerfdhcpStats::default();
    let stats_end = text.find("***Timestamps").unwrap_or(text.len());
    let stats = &text[..stats_end];
    let mut first_sent = f64::INFINITY;
    for (name, sent, rcvd, delays) in [
        (
            "DISCOVER-OFFER",
            &mut s.do_sent,
            &mut s.do_rcvd,
            &mut s.do_delays_us,
        ),
        (
            "REQUEST-ACK",
            &mut s.ra_sent,
            &mut s.ra_rcvd,
            &mut s.ra_delays_us,
        ),
    ] {
        let block = section(stats, &format!("***Statistics for: {name}***"))
            .ok_or(PerfdhcpError::NoSection(name))?;
        *sent = field(block, "sent packets").ok_or(PerfdhcpError::NoField {
            section: name,
            field: "sent packets",
        })?;
        *rcvd = field(block, "received packets").ok_or(PerfdhcpError::NoField {
            section: name,
            field: "received packets",
        })?;
        if let Some(ts) = section(text, &format!("***Timestamps for packets: {name}***")) {
            let st = stamps(ts);
            for &(a, b) in &st {
                delays.push((b - a).max(0.0) * 1e6);
                if name == "DISCOVER-OFFER" {
                    first_sent = first_sent.min(a);
                }
            }
            if name == "REQUEST-ACK" {
                s.ack_times_s = st.iter().map(|&(_, b)| b).collect();
            }
        }
        delays.sort_by(f64::total_cmp);
    }
    if first_sent.is_finite() {
        for t in &mut s.ack_times_s {
            *t -= first_sent;
        }
    } else {
        s.ack_times_s.clear();
    }
    Ok(s)
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn cdf_of(sorted: &[f64]) -> Vec<[f64; 2]> {
    if sorted.is_empty() {
        return Vec::new();
    }
    let n = sorted.len();
    let mut out: Vec<[f64; 2]> = (1..=100)
        .map(|k| {
            let i = (k * n).div_ceil(100).clamp(1, n);
            [sorted[i - 1], i as f64 / n as f64]
        })
        .collect();
    out.dedup_by(|b, a| a[0] == b[0] && a[1] >= b[1]);
    out
}

fn perf_chart(s: &PerfdhcpStats, label: &str, load: &Load, server: &str) -> Run {
    let mut timeline = Vec::new();
    for &t in &s.ack_times_s {
        let i = t.max(0.0) as usize;
        if i >= timeline.len() {
            timeline.resize(i + 1, 0);
        }
        timeline[i] += 1;
    }
    let step = |key: &str, name: &str, d: &[f64]| Step {
        key: key.into(),
        name: name.into(),
        count: d.len() as u64,
        cdf: cdf_of(d),
    };
    let mut steps = Vec::new();
    if !s.do_delays_us.is_empty() {
        steps.push(step("discover_offer", "DISCOVER→OFFER", &s.do_delays_us));
    }
    if !s.ra_delays_us.is_empty() {
        steps.push(step("request_ack", "REQUEST→ACK", &s.ra_delays_us));
    }
    Run {
        label: label.into(),
        command: "perfdhcp".into(),
        server: server.into(),
        mix: "dora".into(),
        rate: load.rate,
        clients: load.clients,
        timeline,
        steps,
    }
}

fn perfdhcp_figures(s: &PerfdhcpStats, duration: f64) -> Measured {
    Measured {
        offered_per_s: s.do_sent as f64 / duration,
        leases_per_s: s.ra_rcvd as f64 / duration,
        loss_pct: if s.do_sent == 0 {
            100.0
        } else {
            100.0 * (1.0 - s.ra_rcvd as f64 / s.do_sent as f64)
        },
        do_p50_us: quantile(&s.do_delays_us, 0.5),
        do_p99_us: quantile(&s.do_delays_us, 0.99),
        ra_p50_us: quantile(&s.ra_delays_us, 0.5),
        ra_p99_us: quantile(&s.ra_delays_us, 0.99),
        ..Measured::default()
    }
}

/// The host name perfdhcp sends (`-o 12,...`) for a target with dynamic DNS: the same for
/// every client (perfdhcp has no per-client options).
pub const PERFDHCP_HOST_NAME: &str = "perfdhcp";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One bounded perfdhcp run from the client namespace, relay style (`-l 10.77.0.2`), to the
/// server (or, for pairs, to the address both partners receive).
fn run_perfdhcp(
    lab: &mut Lab,
    started: &Started,
    load: &Load,
    label: &str,
) -> Result<Measured, String> {
    let rate = load.rate.ok_or("perfdhcp needs a rate")?.to_string();
    let dest = started.addr.to_string();
    let secs = (load.duration.ceil() as u64).max(1);
    let period = secs.to_string();
    let clients = load.clients.to_string();
    let limit = (secs + 30).to_string();
    let mut argv = vec![
        "timeout", &limit, "perfdhcp", "-4", "-r", &rate, "-R", &clients, "-p", &period, "-W",
        "1000000", "-x", "t",
    ];
    // perfdhcp sends the same options in every packet: one host name for all its clients.
    let host_name = format!("12,{}", hex(PERFDHCP_HOST_NAME.as_bytes()));
    if started.host_names {
        argv.extend_from_slice(&["-o", &host_name]);
    }
    argv.extend_from_slice(&["-l", "10.77.0.2", &dest]);
    let name = format!("perfdhcp-{label}");
    let t0 = ticks(&started.pids);
    let th0 = thread_ticks(&started.pids);
    let at = Instant::now();
    let pid = lab
        .spawn(&name, Role::Cli, &argv, &[])
        .map_err(|e| e.to_string())?;
    // `timeout` runs perfdhcp as its child: sample the CPU of both while they live.
    let mut gen_ticks = 0;
    loop {
        let child = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()));
        let t = ticks(&[pid]) + child.map_or(0, |c| ticks(&[c]));
        gen_ticks = gen_ticks.max(t);
        if !lab.alive(&name) {
            break;
        }
        if lab.sleep(Duration::from_millis(50)).is_err() {
            return Err("interrupted".into());
        }
    }
    let wall = at.elapsed().as_secs_f64();
    let text = fs::read_to_string(lab.work().join(format!("{name}.log")))
        .map_err(|e| format!("perfdhcp output: {e}"))?;
    let s = parse_perfdhcp(&text).map_err(|e| format!("{e}: {}", lab.log_tail(&name)))?;
    let mut m = perfdhcp_figures(&s, secs as f64);
    let (per, pct) = cpu_figures(&started.pids, t0, wall, s.ra_rcvd);
    m.server_cpu_us_per_lease = per;
    m.server_cpu_pct = pct;
    m.threads = thread_figures(&started.pids, &th0, s.ra_rcvd);
    m.generator_cpu_pct =
        Some(100.0 * gen_ticks as f64 / cpu::clock_ticks_per_sec() as f64 / wall.max(1e-9));
    m.chart = Some(perf_chart(&s, label, load, &format!("{dest}:67")));
    Ok(m)
}

// ---------------------------------------------------------------------------------- main

fn default_tandemd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("tandemd"), dir.parent()?.join("tandemd")]
        .into_iter()
        .find(|p| p.is_file())
}

fn default_echo_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/lab/tools/kb-echo.c")
}

/// Check `a`; returns the targets in table order.
pub fn check_args(a: &Args) -> Result<Vec<Target>, CompareError> {
    let mut want = Vec::new();
    for t in &a.targets {
        let t = t.trim();
        if t == "all" {
            want.extend(Target::ALL);
        } else if let Some(x) = Target::parse(t) {
            want.push(x);
        } else {
            let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
            return Err(CompareError::Usage(format!(
                "unknown target `{t}`; choose from: all, {}",
                names.join(", ")
            )));
        }
    }
    if !(1..=200_000).contains(&a.rate) {
        return Err(CompareError::Usage("--rate must be 1..=200000".into()));
    }
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 60.0) {
        return Err(CompareError::Usage(
            "--duration must be more than 0 and at most 60 seconds".into(),
        ));
    }
    if !(1..=60_000).contains(&a.clients) {
        return Err(CompareError::Usage(
            "--clients must be 1..=60000 (the pool holds 65265 addresses)".into(),
        ));
    }
    if a.window.is_some_and(|w| w == 0) {
        return Err(CompareError::Usage("--window must be at least 1".into()));
    }
    if a.generator == Generator::Perfdhcp && a.flat_out {
        return Err(CompareError::Usage(
            "--flat-out needs --generator tandem (perfdhcp runs at a --rate)".into(),
        ));
    }
    if a.gen_backend == GenBackend::Xdp && a.generator != Generator::Tandem {
        return Err(CompareError::Usage(
            "--gen-backend xdp is for --generator tandem (perfdhcp has its own sockets)".into(),
        ));
    }
    Ok(Target::ALL
        .into_iter()
        .filter(|t| want.contains(t))
        .collect())
}

/// Why `t` cannot run here, if it cannot.
fn missing(t: Target, tandemd: Option<&Path>, echo_src: &Path) -> Option<String> {
    let need = |p: &str| which(p).is_none().then(|| format!("{p} is not installed"));
    match t.kind() {
        Kind::TandemSingle | Kind::TandemPair => match tandemd {
            None => Some(
                "no tandemd next to tandem-bench (build it: cargo build -p tandem-controlplane --bins; or give --tandemd)"
                    .into(),
            ),
            Some(_) => need("curl")
                .or_else(|| {
                    (t.queues() > 1)
                        .then(|| {
                            need("ethtool").map(|m| m + " (one queue per worker: ethtool -L)")
                        })
                        .flatten()
                })
                .or_else(|| t.ddns().then(dns::missing).flatten()),
        },
        Kind::Peer => match t {
            Target::Kea | Target::KeaMt => {
                need("kea-dhcp4").map(|m| m + " (install-deps.sh --lab: kea-dhcp4-server)")
            }
            Target::KeaHa => need("kea-dhcp4")
                .map(|m| m + " (install-deps.sh --lab: kea-dhcp4-server)")
                .or_else(|| need("curl"))
                .or_else(|| {
                    ["libdhcp_ha.so", "libdhcp_lease_cmds.so"]
                        .iter()
                        .map(|l| Path::new(KEA_HOOKS).join(l))
                        .find(|p| !p.is_file())
                        .map(|p| format!("Kea hook library {} is missing", p.display()))
                }),
            _ => need("dhcpd").map(|m| m + " (isc-dhcp-server)"),
        },
        Kind::Ceiling => need("gcc").or_else(|| {
            (!echo_src.is_file()).then(|| {
                format!(
                    "the reflector's source {} is missing (give --echo-source)",
                    echo_src.display()
                )
            })
        }),
    }
}

/// How many clients sent a host name in a run that started `started` exchanges over
/// `clients` clients, and the names of a sample of them to look up in DNS: tandem-bench's
/// clients each send their own ([`crate::packet::client_host_name`], seed 0), perfdhcp's all
/// the same ([`PERFDHCP_HOST_NAME`]).
fn sampled_names(generator: Generator, started: f64, clients: u32) -> (u64, Vec<String>) {
    let used = (started.round().max(0.0) as u64).min(u64::from(clients));
    match generator {
        Generator::Tandem => {
            let names = dns::sample_indices(used as u32, dns::SAMPLE)
                .into_iter()
                .map(|i| {
                    let mut b = [0u8; crate::packet::HOST_NAME_MAX];
                    let mac = crate::packet::client_mac(0, i);
                    let n = crate::packet::client_host_name(&mac, &mut b);
                    String::from_utf8_lossy(&b[..n]).into_owned()
                })
                .collect();
            (used, names)
        }
        Generator::Perfdhcp => (used, vec![PERFDHCP_HOST_NAME.to_string()]),
    }
}

fn log(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("[compare] {msg}");
    }
}

/// Run the comparison: every target of `a` in turn, in one lab. `stop` (set by SIGINT/SIGTERM)
/// ends it early, after the namespaces are removed.
pub fn compare(a: &Args, stop: Arc<AtomicBool>) -> Result<(Comparison, Vec<Run>), CompareError> {
    let targets = check_args(a)?;
    let tandemd = a.tandemd.clone().or_else(default_tandemd);
    if let Some(p) = &a.tandemd {
        if !p.is_file() {
            return Err(CompareError::Usage(format!(
                "--tandemd {}: no such file",
                p.display()
            )));
        }
    }
    let echo_src = a.echo_source.clone().unwrap_or_else(default_echo_source);
    let named = dns::NamedLimits {
        nice: a.named_nice,
        cpu_pct: a.named_cpu,
    };
    let load = Load {
        rate: (!a.flat_out).then_some(a.rate),
        duration: a.duration,
        clients: a.clients,
        window: a
            .window
            .unwrap_or_else(|| (a.rate.saturating_mul(4)).clamp(2000, 60_000) as u32),
    };
    let gen_io = match a.gen_backend {
        GenBackend::Udp => GenIo::Udp,
        GenBackend::Xdp => GenIo::Xdp {
            bench: match &a.bench {
                Some(b) => b.clone(),
                None => std::env::current_exe().map_err(|e| {
                    CompareError::Usage(format!("cannot find this program ({e}); give --bench"))
                })?,
            },
        },
    };
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    // Veth pairs with as many queues as the most workers a target runs.
    let queues = targets.iter().map(|t| t.queues()).max().unwrap_or(1);
    let mut lab = Lab::new("cmp", queues, a.keep, stop.clone())?;
    let echo_bin = lab.work().join("kb-echo");
    let perf_missing = (a.generator == Generator::Perfdhcp && which("perfdhcp").is_none())
        .then(|| "perfdhcp is not installed (kea-admin)".to_string());
    for t in targets {
        if stop.load(Ordering::Relaxed) {
            return Err(CompareError::Interrupted);
        }
        if let Some(why) = perf_missing
            .clone()
            .or_else(|| missing(t, tandemd.as_deref(), &echo_src))
        {
            log(a.quiet, &format!("{}: skipped: {why}", t.name()));
            rows.push(Row::skipped(t, why));
            continue;
        }
        if t == Target::Echo && !echo_bin.is_file() {
            let (src, bin) = (
                echo_src.display().to_string(),
                echo_bin.display().to_string(),
            );
            if let Err(e) = sh(&["gcc", "-O2", "-o", &bin, &src]) {
                rows.push(Row::failed(t, format!("cannot build the reflector: {e}")));
                continue;
            }
        }
        log(
            a.quiet,
            &format!("{}: starting ({})", t.name(), t.describe()),
        );
        // unwrap_or: only Tandem targets read it, and they are skipped above without tandemd
        let bin = tandemd.clone().unwrap_or_default();
        let started = lab
            .set_queues(t.queues())
            .and_then(|()| start_target(&mut lab, t, &bin, &echo_bin, named));
        let row = match started {
            Err(LabError::Interrupted) => return Err(CompareError::Interrupted),
            Err(e) => Row::failed(t, format!("could not start: {e}")),
            Ok(started) => {
                let stage_roles: &[Role] = match t.kind() {
                    Kind::TandemSingle => &[Role::Srv],
                    Kind::TandemPair => &[Role::Srv, Role::Srv2],
                    _ => &[],
                };
                let stages0 = stage_counts(&lab, stage_roles);
                let counters0: Vec<_> = stage_roles
                    .iter()
                    .map(|&r| server_counters(&lab, r))
                    .collect();
                let dns0 = started.dns.as_ref().map(|d| d.before(&lab));
                log(
                    a.quiet,
                    &format!("{}: load for {:.1} s", t.name(), a.duration),
                );
                let m = match a.generator {
                    Generator::Tandem => run_own(&lab, &started, &load, t.name(), &gen_io),
                    Generator::Perfdhcp => run_perfdhcp(&mut lab, &started, &load, t.name()),
                };
                match m {
                    Ok(mut m) => {
                        if let Some(r) = m.chart.take() {
                            runs.push(r);
                        }
                        let mut row = Row::measured(t, &m);
                        let (stages1, wake1) = stage_counts(&lab, stage_roles);
                        let counters1: Vec<_> = stage_roles
                            .iter()
                            .map(|&r| server_counters(&lab, r))
                            .collect();
                        row.workers = worker_figures(
                            stage_roles,
                            &counters0,
                            &counters1,
                            a.duration,
                            t.kind() == Kind::TandemPair,
                        );
                        row.stages = stage_figures(&stages0.0, &stages1);
                        let leases = row.leases_per_s * a.duration;
                        if !row.stages.is_empty() && leases > 0.0 {
                            row.wakeups_per_lease = Some((
                                wake1.0.saturating_sub(stages0.1 .0) as f64 / leases,
                                wake1.1.saturating_sub(stages0.1 .1) as f64 / leases,
                            ));
                        }
                        if let (Some(d), Some(b)) = (&started.dns, &dns0) {
                            log(
                                a.quiet,
                                &format!(
                                    "{}: waiting for the DNS updater's queue to drain (at most {} s)",
                                    t.name(),
                                    dns::DRAIN_LIMIT.as_secs()
                                ),
                            );
                            let (clients, names) = sampled_names(
                                a.generator,
                                row.offered_per_s * a.duration,
                                a.clients,
                            );
                            let f = d.figures(&lab, b, a.duration, leases, clients, &names);
                            for l in f.lines(t.name()) {
                                log(a.quiet, &l);
                            }
                            row.ddns = Some(f);
                        }
                        log(
                            a.quiet,
                            &format!(
                                "{}: {:.0} leases/s, loss {:.2} %",
                                t.name(),
                                row.leases_per_s,
                                row.loss_pct
                            ),
                        );
                        if !row.threads.is_empty() {
                            let by: Vec<String> = row
                                .threads
                                .iter()
                                .map(|(n, us)| format!("{n} {us:.2}"))
                                .collect();
                            log(
                                a.quiet,
                                &format!(
                                    "{}: server CPU µs/lease by thread: {}",
                                    t.name(),
                                    by.join(", ")
                                ),
                            );
                        }
                        if !row.stages.is_empty() {
                            let le = |b: Option<u64>| b.map_or(">20ms".into(), |b| format!("{b}"));
                            let by: Vec<String> = row
                                .stages
                                .iter()
                                .map(|f| {
                                    format!(
                                        "{} {} × mean {:.1} p50≤{} p99≤{}",
                                        f.stage,
                                        f.count,
                                        f.mean_us,
                                        le(f.p50_le_us),
                                        le(f.p99_le_us)
                                    )
                                })
                                .collect();
                            log(
                                a.quiet,
                                &format!("{}: stages (µs): {}", t.name(), by.join("; ")),
                            );
                            if let Some(w) = &row.workers {
                                let per: Vec<String> = w
                                    .leases_per_s
                                    .iter()
                                    .map(|(r, v)| {
                                        let v: Vec<String> =
                                            v.iter().map(|x| format!("{x:.0}")).collect();
                                        format!("{r} [{}]", v.join(", "))
                                    })
                                    .collect();
                                let mut line = format!(
                                    "{}: ACKs/s per worker: {}; handoffs {:.1} % of requests",
                                    t.name(),
                                    per.join(", "),
                                    w.handoff_pct
                                );
                                if let Some(u) = w.updates_acked_per_s {
                                    line.push_str(&format!(
                                        "; updates acked by the partner {u:.0}/s, replication lag p99 ≤ {}",
                                        w.lag_p99_le_ms
                                            .map_or("-".into(), |ms| format!("{ms} ms"))
                                    ));
                                }
                                log(a.quiet, &line);
                            }
                            if let Some((w, idle)) = row.wakeups_per_lease {
                                log(
                                    a.quiet,
                                    &format!(
                                        "{}: worker wake-ups per lease {w:.2} ({idle:.2} idle)",
                                        t.name()
                                    ),
                                );
                            }
                        }
                        row
                    }
                    Err(e) => Row::failed(t, format!("run failed: {e}")),
                }
            }
        };
        if stop.load(Ordering::Relaxed) {
            return Err(CompareError::Interrupted);
        }
        rows.push(row);
        lab.stop_all();
        // BIND's zones, journal and key (stopped with the target's other processes)
        for d in lab.scratch.clone() {
            lab.remove_scratch(&d);
        }
        let _ = lab.pair(false);
    }
    drop(lab);
    let (best_peer, tandem_single) = compute_ratios(&mut rows);
    Ok((
        Comparison {
            tool: "tandem-bench",
            command: "compare",
            generator: a.generator,
            gen_backend: a.gen_backend,
            rate: load.rate,
            duration_s: a.duration,
            clients: a.clients,
            host_cpus: cpu::cpus(),
            best_peer,
            tandem_single,
            rows,
        },
        runs,
    ))
}

/// Register SIGINT and SIGTERM to set the returned flag (instead of ending the process), so
/// the lab is taken down by its `Drop`.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!(
                "tandem-bench: cannot catch signal {sig} ({e}); Ctrl-C may leave namespaces behind"
            );
        }
    }
    stop
}

/// `tandem-bench compare`. Exit codes: 0 done (whatever was skipped or failed), 1 the lab could
/// not be built or the results not written, 2 usage error, 130 interrupted.
pub fn main(a: Args) -> ExitCode {
    let stop = stop_flag();
    let (cmp, runs) = match compare(&a, stop) {
        Ok(x) => x,
        Err(CompareError::Usage(m)) => {
            eprintln!("tandem-bench compare: {m}");
            return ExitCode::from(2);
        }
        Err(CompareError::Interrupted) => {
            eprintln!("tandem-bench compare: interrupted; namespaces removed");
            return ExitCode::from(130);
        }
        Err(e) => {
            eprintln!("tandem-bench compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", cmp.table());
    let json = a
        .json
        .clone()
        .unwrap_or_else(|| PathBuf::from("/tmp/tandem-compare.json"));
    let svg = a
        .svg
        .clone()
        .unwrap_or_else(|| PathBuf::from("/tmp/tandem-compare.svg"));
    let mut ok = true;
    let text = serde_json::to_string_pretty(&cmp).unwrap_or_default();
    if let Err(e) = fs::write(&json, text + "\n") {
        eprintln!("tandem-bench compare: cannot write {}: {e}", json.display());
        ok = false;
    }
    if !runs.is_empty() {
        if let Err(e) = fs::write(&svg, chart::svg(&runs)) {
            eprintln!("tandem-bench compare: cannot write {}: {e}", svg.display());
            ok = false;
        }
    }
    if ok {
        println!("  JSON: {}   chart: {}", json.display(), svg.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-worker rates, handoff share, acknowledged updates and the lag p99 come from the
    /// counters' differences over the load.
    #[test]
    fn worker_figures_are_differences_over_the_load() {
        let c = |acks: Vec<u64>, handoffs, received, acked, lag: Vec<u64>| {
            Some(ServerCounters {
                acks,
                handoffs,
                received,
                acked,
                lag,
            })
        };
        let before = [
            c(vec![10, 20], 5, 100, 7, vec![1, 0, 0]),
            c(vec![0, 0], 0, 0, 0, vec![]),
        ];
        let after = [
            c(vec![110, 320], 25, 1100, 507, vec![1, 90, 9]),
            c(vec![200, 200], 0, 400, 300, vec![0, 0, 0, 3]),
        ];
        let f =
            worker_figures(&[Role::Srv, Role::Srv2], &before, &after, 2.0, true).expect("figures");
        assert_eq!(
            f.leases_per_s,
            vec![
                ("srv".to_string(), vec![50.0, 150.0]),
                ("srv2".to_string(), vec![100.0, 100.0])
            ]
        );
        assert!((f.handoff_pct - 20.0 * 100.0 / 1400.0).abs() < 1e-9);
        assert_eq!(f.updates_acked_per_s, Some(400.0));
        // 102 lags during the load: 90 ≤ 250 µs, 9 ≤ 500 µs, 3 ≤ 1 ms; the 101st is ≤ 1 ms.
        assert_eq!(f.lag_p99_le_ms, Some(1.0));
        let single =
            worker_figures(&[Role::Srv], &before[..1], &after[..1], 2.0, false).expect("figures");
        assert_eq!(
            (single.updates_acked_per_s, single.lag_p99_le_ms),
            (None, None)
        );
    }

    fn ok_row(t: Target, leases: f64) -> Row {
        Row::measured(
            t,
            &Measured {
                offered_per_s: 1000.0,
                leases_per_s: leases,
                ..Measured::default()
            },
        )
    }

    #[test]
    fn ratios_divide_by_the_best_peer_and_the_best_tandem_single() {
        let mut rows = vec![
            ok_row(Target::Echo, 9000.0),
            ok_row(Target::TandemXdp, 1900.0),
            ok_row(Target::TandemUdp, 2000.0),
            ok_row(Target::TandemPairUdp, 1800.0),
            ok_row(Target::Kea, 1000.0),
            ok_row(Target::KeaMt, 1250.0),
            Row::skipped(Target::Dhcpd, "dhcpd is not installed"),
            Row::failed(Target::KeaHa, "could not start"),
        ];
        let (peer, tandem) = compute_ratios(&mut rows);
        assert_eq!(peer.as_deref(), Some("kea-mt"));
        assert_eq!(tandem.as_deref(), Some("tandem-udp"));
        assert_eq!(rows[1].ratio_to_best_peer, Some(1900.0 / 1250.0));
        assert_eq!(rows[3].ratio_to_tandem_single, Some(0.9));
        assert_eq!(rows[4].ratio_to_tandem_single, Some(0.5));
        assert_eq!(rows[5].ratio_to_best_peer, Some(1.0));
        assert_eq!(rows[0].ratio_to_best_peer, Some(9000.0 / 1250.0));
        assert_eq!(rows[6].ratio_to_best_peer, None);
        assert_eq!(rows[7].ratio_to_tandem_single, None);
    }

    #[test]
    fn no_reference_no_ratio() {
        let mut rows = vec![ok_row(Target::TandemUdp, 0.0), ok_row(Target::Echo, 10.0)];
        assert_eq!(compute_ratios(&mut rows), (None, None));
        assert!(rows.iter().all(|r| r.ratio_to_best_peer.is_none()));
        // equal leases/s: the first peer in table order is the reference
        let mut rows = vec![
            ok_row(Target::Kea, 1000.0),
            ok_row(Target::KeaMt, 1000.0),
            ok_row(Target::KeaHa, 1000.0),
        ];
        assert_eq!(compute_ratios(&mut rows).0.as_deref(), Some("kea"));
    }

    #[test]
    fn table_lists_measured_rows_and_says_why_others_are_missing() {
        let mut rows = vec![
            ok_row(Target::TandemUdp, 2000.0),
            ok_row(Target::Kea, 1000.0),
            Row::skipped(Target::Dhcpd, "dhcpd is not installed"),
        ];
        let (best_peer, tandem_single) = compute_ratios(&mut rows);
        let c = Comparison {
            tool: "tandem-bench",
            command: "compare",
            generator: Generator::Tandem,
            gen_backend: GenBackend::Udp,
            rate: Some(1000),
            duration_s: 2.0,
            clients: 100,
            host_cpus: 2,
            best_peer,
            tandem_single,
            rows,
        };
        let t = c.table();
        let cells = |name: &str| -> Vec<String> {
            let line = t
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap();
            line.split_whitespace().map(String::from).collect()
        };
        let udp = cells("tandem-udp");
        assert_eq!((udp[1].as_str(), udp[2].as_str()), ("2000", "0.00"), "{t}");
        assert_eq!(udp[10..], ["2.00", "1.00"], "{t}");
        assert_eq!(cells("kea")[10..], ["1.00", "0.50"], "{t}");
        assert!(t.contains("dhcpd skipped: dhcpd is not installed"), "{t}");
        assert!(t.contains("×peer: leases/s over kea"), "{t}");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["rows"][2]["status"], "skipped");
        assert_eq!(v["rows"][0]["kind"], "tandem-single");
        assert_eq!(v["rows"][1]["ratio_to_tandem_single"], 0.5);
    }

    const PERF: &str = "\
Running: perfdhcp -4 -r 100 -x t
***Rate statistics***
Rate: 99.5 4-way exchanges/second, expected rate: 100

***Statistics for: DISCOVER-OFFER***
sent packets: 4
received packets: 3
drops: 1
drops ratio: 25 %
orphans: 0
rejected leases: 0
non unique addresses: 0

min delay: 0.100 ms
avg delay: 0.200 ms
max delay: 0.300 ms

***Statistics for: REQUEST-ACK***
sent packets: 3
received packets: 2
drops: 1

***Timestamps for packets: DISCOVER-OFFER***
sent / received: 100.000000 / 100.000100
sent / received: 100.500000 / 100.500200
sent / received: 101.000000 / 101.000300

***Timestamps for packets: REQUEST-ACK***
sent / received: 100.000200 / 100.000600
sent / received: 101.200000 / 101.201000
";

    #[test]
    fn perfdhcp_output_is_read() {
        let s = parse_perfdhcp(PERF).unwrap();
        assert_eq!((s.do_sent, s.do_rcvd, s.ra_sent, s.ra_rcvd), (4, 3, 3, 2));
        let r = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
        assert_eq!(r(&s.do_delays_us), vec![100.0, 200.0, 300.0]);
        assert_eq!(r(&s.ra_delays_us), vec![400.0, 1000.0]);
        assert_eq!(s.ack_times_s.len(), 2);
        assert!((s.ack_times_s[1] - 1.201).abs() < 1e-6);
        let m = perfdhcp_figures(&s, 2.0);
        assert_eq!(
            (m.offered_per_s, m.leases_per_s, m.loss_pct),
            (2.0, 1.0, 50.0)
        );
        assert_eq!(m.do_p50_us.map(f64::round), Some(200.0));
        assert_eq!(m.ra_p99_us.map(f64::round), Some(1000.0));
        let load = Load {
            rate: Some(2),
            duration: 2.0,
            clients: 4,
            window: 10,
        };
        let run = perf_chart(&s, "kea", &load, "x");
        assert_eq!(run.timeline, vec![1, 1]);
        assert_eq!(run.steps.len(), 2);
        assert_eq!(run.steps[0].cdf.last().unwrap()[1], 1.0);
        let svg = chart::svg(&[run]);
        assert_eq!(
            svg.matches("<polyline class=\"series\"").count(),
            3,
            "{svg}"
        );
    }

    #[test]
    fn perfdhcp_output_without_statistics_is_an_error() {
        assert_eq!(
            parse_perfdhcp("Running: perfdhcp\nError running perfdhcp: no socket\n"),
            Err(PerfdhcpError::NoSection("DISCOVER-OFFER"))
        );
        let cut = PERF.replace("sent packets: 3\n", "");
        assert_eq!(
            parse_perfdhcp(&cut),
            Err(PerfdhcpError::NoField {
                section: "REQUEST-ACK",
                field: "sent packets"
            })
        );
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
        let c = cdf_of(&[5.0, 5.0, 7.0]);
        assert_eq!(c.first().unwrap()[0], 5.0);
        assert_eq!(*c.last().unwrap(), [7.0, 1.0]);
        assert!(c
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
    }

    #[test]
    fn arguments_are_checked() {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            a: Args,
        }
        let p = |s: &str| W::try_parse_from(s.split_whitespace()).unwrap().a;
        let t = check_args(&p("x --targets kea,tandem-udp,echo")).unwrap();
        assert_eq!(t, vec![Target::Echo, Target::TandemUdp, Target::Kea]);
        assert_eq!(check_args(&p("x")).unwrap().len(), Target::ALL.len());
        for bad in [
            "x --targets kea,nope",
            "x --rate 0",
            "x --duration 0",
            "x --clients 70000",
            "x --generator perfdhcp --flat-out",
            "x --gen-backend xdp --generator perfdhcp",
        ] {
            assert!(
                matches!(check_args(&p(bad)), Err(CompareError::Usage(_))),
                "{bad}"
            );
        }
    }

    /// The configuration of tandem-xdp-ddns is tandem-xdp's with a `[[ddns]]` table that
    /// tandemd's own configuration reader accepts, for the bench's scope, with the reverse zone
    /// BIND is given.
    #[test]
    fn ddns_target_config_is_tandem_xdp_plus_a_ddns_table_tandemd_accepts() {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("tandem-bench.key");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        std::io::Write::write_all(
            &mut f,
            b"key \"tandem-bench\" {\n\talgorithm hmac-sha256;\n\tsecret \"bWJ5dGVzIG9mIGEgdGVzdCBrZXkgZm9yIHRoZSBiZW5jaA==\";\n};\n",
        )
        .unwrap();
        let (scope, net, len) = dns::scope_of(TANDEM_SINGLE).unwrap();
        let extra = TandemExtra {
            tail: dns::ddns_table(&scope, dns::LISTEN, &key),
            ..TandemExtra::default()
        };
        let state = dir.path().join("state");
        let plain = tandem_single_config(&state, "xdp", &TandemExtra::default());
        let text = tandem_single_config(&state, "xdp", &extra);
        assert!(
            text.starts_with(&plain),
            "the ddns config extends tandem-xdp's"
        );
        assert!(
            text[plain.len()..].contains(
                "[[ddns]]\nscopes = [\"kb\"]\ndomain = \"bench.test\"\nservers = [\"127.0.0.1\"]\n"
            ),
            "{text}"
        );
        assert!(
            !plain.contains("[[ddns]]") && !plain.contains("_EXTRA@"),
            "{plain}"
        );
        let cfg = tandem_controlplane::config::parse(&text, "tandem-xdp-ddns.toml")
            .unwrap_or_else(|e| panic!("tandemd refuses the configuration:\n{e}\n{text}"));
        assert_eq!(cfg.ddns.len(), 1);
        let d = &cfg.ddns[0];
        assert_eq!(d.scope, "kb");
        assert_eq!(d.forward_zone.trim_end_matches('.'), "bench.test");
        assert_eq!(
            d.reverse_zone.trim_end_matches('.'),
            dns::reverse_zone(net, len).unwrap()
        );
        assert_eq!(d.servers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert!(d.key.is_some(), "the key file is read");
        // the other targets' configurations have no DNS
        let relaxed = TandemExtra {
            durability: Some("relaxed".into()),
            ..TandemExtra::default()
        };
        let t = tandem_single_config(&state, "xdp", &relaxed);
        assert!(t.contains("durability = \"relaxed\"") && !t.contains("[[ddns]]"));
        assert!(tandem_controlplane::config::parse(&t, "x")
            .unwrap()
            .ddns
            .is_empty());
    }

    #[test]
    fn only_the_ddns_target_sends_host_names() {
        assert_eq!(
            Target::parse("tandem-xdp-ddns"),
            Some(Target::TandemXdpDdns)
        );
        assert_eq!(Target::TandemXdpDdns.kind(), Kind::TandemSingle);
        assert_eq!(Target::TandemXdpDdns.queues(), 1);
        assert!(!Target::TandemXdpDdns.is_pair());
        let with: Vec<Target> = Target::ALL.into_iter().filter(|t| t.ddns()).collect();
        assert_eq!(with, vec![Target::TandemXdpDdns]);
        // right after tandem-xdp in the table, and `all` includes it
        let i = Target::ALL
            .iter()
            .position(|t| *t == Target::TandemXdp)
            .unwrap();
        assert_eq!(Target::ALL[i + 1], Target::TandemXdpDdns);
        assert!(Target::TandemXdpDdns.describe().contains("DNS"));
        // the names looked up afterwards are the generator's own
        let (n, names) = sampled_names(Generator::Tandem, 25_000.0, 20_000);
        assert_eq!((n, names.len()), (20_000, 20));
        assert_eq!((names[0].as_str(), names[19].as_str()), ("c0", "c19999"));
        let (n, names) = sampled_names(Generator::Tandem, 7.0, 20_000);
        assert_eq!((n, names.len()), (7, 7));
        assert_eq!(names[6], "c6");
        let (_, names) = sampled_names(Generator::Perfdhcp, 100.0, 20_000);
        assert_eq!(names, vec!["perfdhcp".to_string()]);
        assert_eq!(hex(PERFDHCP_HOST_NAME.as_bytes()), "7065726664686370");
    }

    #[test]
    fn the_table_prints_the_dns_lines_of_a_ddns_row() {
        let mut ddns = ok_row(Target::TandemXdpDdns, 1800.0);
        ddns.ddns = Some(DdnsFigures {
            updates_during_load: 3600,
            updates_per_s_during_load: 1800.0,
            drain_s: Some(0.2),
            clients: 2000,
            sample: 20,
            sample_a: 20,
            sample_ptr: 20,
            ..DdnsFigures::default()
        });
        let mut rows = vec![ok_row(Target::TandemXdp, 2000.0), ddns];
        let (best_peer, tandem_single) = compute_ratios(&mut rows);
        let c = Comparison {
            tool: "tandem-bench",
            command: "compare",
            generator: Generator::Tandem,
            gen_backend: GenBackend::Udp,
            rate: Some(2000),
            duration_s: 2.0,
            clients: 2000,
            host_cpus: 2,
            best_peer,
            tandem_single,
            rows,
        };
        let t = c.table();
        assert!(
            t.contains("  tandem-xdp-ddns DNS: 3600 updates during the load (1800/s), 0 failed; queue 0 at its end, drained 0.2 s after it\n"),
            "{t}"
        );
        assert!(
            t.contains("sample of 20: 20 with A, 20 with matching PTR"),
            "{t}"
        );
        let line = t
            .lines()
            .find(|l| l.trim_start().starts_with("tandem-xdp-ddns "))
            .unwrap();
        assert!(
            line.trim_end().ends_with("0.90"),
            "×tandem of the DNS row: {line}"
        );
        let v = serde_json::to_value(&c).unwrap();
        assert!(v["rows"][0].get("ddns").is_none());
        assert_eq!(v["rows"][1]["ddns"]["updates_during_load"], 3600);
    }

    #[test]
    fn dhcpd_failover_state_is_read_from_the_lease_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        fs::write(
            &p,
            "failover peer \"kb-fo\" state {\n  my state startup at 1;\n  partner state unknown-state at 1;\n}\n\
             failover peer \"kb-fo\" state {\n  my state normal at 2;\n  partner state normal at 2;\n}\n",
        )
        .unwrap();
        assert_eq!(fo_state(&p), ("normal".into(), "normal".into()));
        assert_eq!(
            fo_state(&dir.path().join("none")),
            (String::new(), String::new())
        );
    }
}
