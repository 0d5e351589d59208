//! `tandem-bench` over AF_XDP, in network namespaces: `dora --backend xdp` against the real
//! `tandemd` of this workspace (UDP backend, relay-style scope), the `auto` fallback to UDP, and
//! the generator's ceiling over AF_XDP and UDP into a black hole.
//!
//! Layout per test: namespaces `tdm-bx-<pid>-<test>-s` (the server side) and `...-c` (the
//! generator), joined by one veth pair `tdmbx0` (s, 10.79.0.1/16) / `tdmbx1` (c, 10.79.0.2/16),
//! both ends with two queues so the generator opens one AF_XDP socket per queue. Nothing else is
//! connected: no frame leaves the two namespaces. Every test is bounded in time (each command
//! runs under `timeout 60`) and in count.
//!
//! Needs root (namespaces, veth, XDP, AF_XDP, port 67); without it the tests fail saying so,
//! they never skip. Namespaces and processes are removed on drop, also when a test fails, and
//! namespaces `tdm-bx-<pid>-*` whose creating process is gone are removed first. The tests of
//! this file run one at a time (a lock), so their timings do not disturb each other.
//!
//! `tandemd` is not built here: the test takes it from the target directory this test binary
//! lives in (`<target>/<profile>/tandemd`, the parent of `deps/`), or from `TANDEM_BIN_DIR`.
//! CI builds it first: `cargo build -p tandem-controlplane --bin tandemd` (same profile).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use common::{Netns, Proc};
use serde_json::Value;

const IF_S: &str = "tdmbx0";
const IF_C: &str = "tdmbx1";
const SERVER: &str = "10.79.0.1";
const RELAY: &str = "10.79.0.2";
/// The ceiling's black hole: no host has it; a permanent neighbour entry sends its frames to a
/// MAC nobody carries.
const HOLE: &str = "10.79.0.99";
const HOLE_MAC: &str = "02:00:00:00:00:99";

static SERIAL: Mutex<()> = Mutex::new(());
static STALE: Once = Once::new();

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn preflight() {
    common::assert_root(
        "this test needs root: it creates network namespaces and a veth pair, attaches XDP, opens \
         AF_XDP sockets and binds UDP port 67 (run e.g. `sudo -E cargo test -p tandem-bench \
         --test xdp_generator`)",
    );
    common::assert_tools();
    STALE.call_once(|| common::remove_stale_netns("tdm-bx-"));
}

/// The two namespaces of one test, the veth pair between them (two queues each end), and a
/// scratch directory.
struct Lab {
    // Drop order: the generator side, then the server side, then the directory.
    c: Netns,
    s: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        preflight();
        // two queues each end: the generator opens one AF_XDP socket per queue
        let (s, c, dir) = common::two_ns_link(
            "tdm-bx-",
            tag,
            (IF_S, &format!("{SERVER}/16")),
            (IF_C, &format!("{RELAY}/16")),
            &["numtxqueues", "2", "numrxqueues", "2"],
        );
        Lab { c, s, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Start tandemd (UDP backend, durability sync, one relay-style scope holding the relay's
/// subnet) in the lab's server namespace and wait until it has bound port 67.
fn start_tandemd(lab: &Lab) -> Proc {
    let mut srv = common::start_tandemd(
        &lab.s,
        &common::tandemd_path(),
        lab.dir.path(),
        &common::Scope {
            server: SERVER,
            iface: IF_S,
            subnet: "10.79.0.0/16",
            range: "10.79.1.0-10.79.255.250",
        },
    );
    common::wait_ready(&mut srv, "has not bound UDP port 67", || {
        lab.s.udp_bound(67)
    });
    srv
}

/// Run tandem-bench in the generator's namespace; panics with its output if it fails.
fn bench(lab: &Lab, args: &[&str]) -> Output {
    let mut argv = vec![env!("CARGO_BIN_EXE_tandem-bench")];
    argv.extend_from_slice(args);
    let out = lab.c.exec(&argv);
    common::assert_success(&format!("tandem-bench {args:?}"), &out);
    out
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).expect("JSON report")).expect("valid JSON")
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing or not a count in {v}"))
}

/// True if XDP is attached to `iface` in `ns` (`ip link` shows `xdp` / `prog/xdp`).
fn xdp_attached(ns: &Netns, iface: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", iface]).contains("xdp")
}

#[test]
fn xdp_dora_against_tandemd_answers_every_lease_through_af_xdp() {
    let _serial = one_at_a_time();
    let lab = Lab::new("dora");
    let mut srv = start_tandemd(&lab);
    let report = lab.path("xdp.json");
    let pid = srv.pid().to_string();
    let (in0, noport0) = lab.c.udp_counters();
    let t = Instant::now();
    let out = bench(
        &lab,
        &[
            "dora",
            "--backend",
            "xdp",
            "--interface",
            IF_C,
            "--server",
            SERVER,
            "--relay",
            RELAY,
            "--clients",
            "2000",
            "--max-leases",
            "2000",
            "--rate",
            "1000",
            "--window",
            "2000",
            "--duration",
            "5",
            "--timeout-ms",
            "1000",
            "--retries",
            "2",
            "--server-pid",
            &pid,
            "--quiet",
            "--json",
            report.to_str().expect("UTF-8 path"),
        ],
    );
    let took = t.elapsed();
    let (in1, noport1) = lab.c.udp_counters();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    let r = json(&report);
    let ctx = format!("report: {r:#}\ntandemd log:\n{}", srv.log());
    assert!(took < Duration::from_secs(15), "the run took {took:?}");
    assert_eq!(r["backend"], "xdp", "{ctx}");
    assert!(
        stdout.contains("AF_XDP"),
        "no AF_XDP lines in the table: {stdout}"
    );

    // every lease answered
    let c = &r["counts"];
    for k in [
        "started",
        "completed",
        "leases",
        "offers",
        "acks",
        "sent_discover",
        "sent_request",
    ] {
        assert_eq!(u(c, k), 2000, "counts.{k}: {ctx}");
    }
    for k in [
        "lost",
        "naks",
        "send_errors",
        "malformed",
        "foreign",
        "wrong_type",
        "invalid_offer",
        "invalid_ack",
    ] {
        assert_eq!(u(c, k), 0, "counts.{k}: {ctx}");
    }
    assert_eq!(r["loss_pct"].as_f64(), Some(0.0), "{ctx}");
    assert_eq!(u(&r["latency_us"]["dora"], "count"), 2000, "{ctx}");
    assert_eq!(u(&r, "other_source"), 0, "{ctx}");
    let received = u(c, "received");
    assert_eq!(
        received,
        u(c, "offers") + u(c, "acks") + u(c, "late"),
        "every reply is accounted for: {ctx}"
    );
    let sent = u(c, "sent_discover") + u(c, "sent_request") + u(c, "retransmits");
    assert!(
        r["server_cpu"]["cpu_us_per_lease"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{ctx}"
    );

    // the replies went through the XDP program into the AF_XDP sockets, not the kernel stack
    let x = &r["xdp"];
    assert_eq!(x["interface"], IF_C, "{ctx}");
    assert_eq!(u(x, "queues"), 2, "one socket per queue: {ctx}");
    let p = &x["program"];
    assert_eq!(u(p, "redirect"), received, "program redirects: {ctx}");
    assert_eq!(u(p, "redirect_failed"), 0, "{ctx}");
    assert_eq!(u(x, "rx_frames"), received, "{ctx}");
    for k in [
        "unparsed",
        "not_for_us",
        "no_tx_chunk",
        "frame_errors",
        "xsk_rx_dropped",
        "xsk_tx_invalid",
    ] {
        assert_eq!(u(x, k), 0, "xdp.{k}: {ctx}");
    }
    assert_eq!(
        u(x, "tx_frames"),
        sent,
        "every request left over AF_XDP: {ctx}"
    );
    assert_eq!(u(x, "tx_completed"), sent, "{ctx}");
    assert!(u(x, "tx_kicks") > 0, "{ctx}");
    assert_eq!(
        (in1 - in0, noport1 - noport0),
        (0, 0),
        "the generator namespace's UDP stack saw datagrams (InDatagrams, NoPorts): {ctx}"
    );
    assert_eq!(
        x["server_mac"].as_str(),
        Some(
            lab.s
                .ip(&["-br", "link", "show", "dev", IF_S])
                .split_whitespace()
                .nth(2)
                .unwrap_or("")
        ),
        "next hop resolved to the server's MAC: {ctx}"
    );
    assert!(
        !xdp_attached(&lab.c, IF_C),
        "XDP still attached after the run"
    );

    // auto with an interface that does not exist: says why and runs over UDP
    let report2 = lab.path("auto.json");
    let out = bench(
        &lab,
        &[
            "dora",
            "--backend",
            "auto",
            "--interface",
            "tdm-no-such-if",
            "--server",
            SERVER,
            "--relay",
            RELAY,
            "--seed",
            "7",
            "--clients",
            "200",
            "--max-leases",
            "200",
            "--rate",
            "1000",
            "--duration",
            "5",
            "--quiet",
            "--json",
            report2.to_str().expect("UTF-8 path"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AF_XDP cannot start") && stderr.contains("tdm-no-such-if"),
        "auto did not say why it fell back: {stderr}"
    );
    let r2 = json(&report2);
    assert_eq!(r2["backend"], "udp", "{r2:#}");
    assert!(r2.get("xdp").is_none(), "{r2:#}");
    assert_eq!(u(&r2["counts"], "leases"), 200, "{r2:#}");
    assert_eq!(u(&r2["counts"], "lost"), 0, "{r2:#}");

    // xdp without a usable interface is an error, not a fallback
    let o = lab.c.exec(&[
        env!("CARGO_BIN_EXE_tandem-bench"),
        "dora",
        "--backend",
        "xdp",
        "--interface",
        "tdm-no-such-if",
        "--server",
        SERVER,
        "--relay",
        RELAY,
        "--max-leases",
        "1",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no such interface"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    assert!(srv.stop(), "tandemd did not stop cleanly:\n{}", srv.log());
}

#[test]
fn ceiling_sends_into_a_black_hole_over_af_xdp_and_udp() {
    let _serial = one_at_a_time();
    let lab = Lab::new("ceil");
    lab.c.ip(&[
        "neigh",
        "replace",
        HOLE,
        "lladdr",
        HOLE_MAC,
        "dev",
        IF_C,
        "nud",
        "permanent",
    ]);
    for backend in ["xdp", "udp"] {
        let report = lab.path(&format!("ceiling-{backend}.json"));
        let link = || {
            (
                lab.s.if_stat(IF_S, "rx_packets"),
                lab.s.if_stat(IF_S, "rx_dropped") + lab.c.if_stat(IF_C, "tx_dropped"),
            )
        };
        let (rx0, drop0) = link();
        let out = bench(
            &lab,
            &[
                "ceiling",
                "--backend",
                backend,
                "--interface",
                IF_C,
                "--server",
                HOLE,
                "--relay",
                RELAY,
                "--duration",
                "1",
                "--max-frames",
                "300000",
                "--quiet",
                "--json",
                report.to_str().expect("UTF-8 path"),
            ],
        );
        let (rx1, drop1) = link();
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        let r = json(&report);
        assert_eq!(r["command"], "ceiling", "{r:#}");
        assert_eq!(r["backend"], backend, "{r:#}");
        let sent = u(&r, "frames_sent");
        assert!(sent >= 1000, "{backend}: only {sent} frames in 1 s: {r:#}");
        assert!(sent <= 300_000, "{backend}: --max-frames exceeded: {r:#}");
        let elapsed = r["elapsed_s"].as_f64().expect("elapsed_s");
        assert!(elapsed <= 1.5, "{backend}: ran {elapsed} s: {r:#}");
        let fps = r["frames_per_s"].as_f64().expect("frames_per_s");
        assert!(
            (fps - sent as f64 / elapsed).abs() < 1.0,
            "{backend}: frames_per_s {fps}: {r:#}"
        );
        assert!(
            r["generator_cpu_pct"].as_f64().is_some_and(|v| v > 0.0),
            "{r:#}"
        );
        // every frame counted as sent went onto the veth: received by the other end, or
        // dropped there when its backlog overflowed (a few more frames, such as ARP, may cross
        // as well)
        let (crossed, dropped) = (rx1 - rx0, drop1 - drop0);
        assert!(
            crossed + dropped >= sent && crossed + dropped <= sent + 20,
            "{backend}: {sent} sent but {crossed} crossed the link and {dropped} were dropped \
             on it: {r:#}"
        );
        assert!(
            crossed >= sent / 2,
            "{backend}: {sent} sent, only {crossed} crossed: {r:#}"
        );
        if backend == "xdp" {
            let x = &r["xdp"];
            assert_eq!(x["server_mac"], HOLE_MAC, "{r:#}");
            assert_eq!(u(x, "tx_completed"), sent, "{r:#}");
            assert_eq!(u(x, "xsk_tx_invalid"), 0, "{r:#}");
            assert!(!xdp_attached(&lab.c, IF_C), "XDP still attached");
        } else {
            assert!(r["xdp"].is_null(), "{r:#}");
        }
    }
}
