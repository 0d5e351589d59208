//! `tandem-bench dora --direct`: the generator as clients on the server's own link (no relay:
//! hops 0, giaddr 0, the BROADCAST flag, requests broadcast from port 68), against the real
//! `tandemd` of this workspace serving that link, over both generator backends.
//!
//! Layout per test: namespaces `tdm-dr-<pid>-<test>-s` (tandemd) and `...-c` (the generator),
//! joined by one veth pair `tdmdr0` (s, 10.81.0.1/16) / `tdmdr1` (c, 10.81.0.2/16), one queue
//! each end. tandemd's only scope is the local link of `tdmdr0` (`interface = "tdmdr0"`), so
//! it answers requests without giaddr by broadcast to 255.255.255.255:68 (and a renewal by
//! unicast to ciaddr:68); an answer to a relayed request would go to giaddr:67, where nothing
//! listens. Every run is bounded in count and time (each command under `timeout 60`).
//!
//! - `direct_udp_generator_against_tandemd_udp`: DORA, DORA+RELEASE and DORA+DECLINE over the
//!   generator's UDP socket on 0.0.0.0:68; the renewing mix is refused over UDP with exit 2.
//! - `direct_xdp_generator_against_tandemd_xdp`: the same path over AF_XDP on both sides (the
//!   generator's steering program on port 68 takes every reply), DORA+RENEW included: tandemd
//!   sends its unicast ACK to the MAC the request came from, which the generator's program
//!   redirects whatever the destination address.
//! - `direct_renewals_against_a_kernel_stack_server_are_lost`: DORA+RENEW over AF_XDP against
//!   tandemd's UDP backend: the server ACKs every renewal, but its kernel ARPs for ciaddr, which
//!   nobody owns, so the ACKs never leave and every renewal is lost (what `--help` says).
//!
//! Needs root (namespaces, veth, XDP, AF_XDP, ports 67 and 68); without it the tests fail saying
//! so, they never skip. Namespaces and processes are removed on drop, also when a test fails,
//! and namespaces `tdm-dr-<pid>-*` whose creating process is gone are removed first. The tests
//! of this file run one at a time (a lock). `tandemd` and `tandemctl` are taken from the target
//! directory of this test binary, or from `TANDEM_BIN_DIR` (`cargo test --workspace` builds
//! them; alone: `cargo build -p tandem-controlplane --bins` with the same profile first).

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Mutex, MutexGuard, Once};

use common::{Netns, Proc};
use serde_json::Value;

const IF_S: &str = "tdmdr0";
const IF_C: &str = "tdmdr1";
const SERVER: &str = "10.81.0.1";
const GEN: &str = "10.81.0.2";

static SERIAL: Mutex<()> = Mutex::new(());
static STALE: Once = Once::new();

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn preflight() {
    common::assert_root(
        "this test needs root: it creates network namespaces and a veth pair, attaches XDP, opens \
         AF_XDP sockets and binds UDP ports 67 and 68 (run e.g. `sudo -E cargo test -p \
         tandem-bench --test direct`)",
    );
    common::assert_tools();
    STALE.call_once(|| common::remove_stale_netns("tdm-dr-"));
}

/// The two namespaces of one test, the veth pair between them, tandemd and a scratch directory.
struct Lab {
    // Drop order: tandemd, the generator side, the server side, then the directory.
    srv: Proc,
    c: Netns,
    s: Netns,
    dir: tempfile::TempDir,
    ctl: PathBuf,
}

impl Lab {
    /// The lab, with tandemd (AF_XDP backend if `xdp`) serving the link, ready.
    fn new(tag: &str, xdp: bool) -> Lab {
        preflight();
        let ctl = common::tandemctl_path();
        let (s, c, dir) = common::two_ns_link(
            "tdm-dr-",
            tag,
            (IF_S, &format!("{SERVER}/16")),
            (IF_C, &format!("{GEN}/16")),
            &[],
        );
        let mut srv = common::start_tandemd_on_link(
            &s,
            &common::tandemd_path(),
            dir.path(),
            &common::Scope {
                server: SERVER,
                iface: IF_S,
                subnet: "10.81.0.0/16",
                range: "10.81.1.0-10.81.255.250",
            },
            xdp,
        );
        let ctl_s = ctl.to_str().expect("UTF-8 path").to_string();
        common::wait_ready(&mut srv, "not answering its admin endpoint", || {
            s.exec(&[&ctl_s, "--admin", common::ADMIN, "status"])
                .status
                .success()
        });
        if !xdp {
            common::wait_ready(&mut srv, "has not bound UDP port 67", || s.udp_bound(67));
        }
        Lab {
            srv,
            c,
            s,
            dir,
            ctl,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// tandemd's counters (`tandemctl stats`).
    fn stats(&self) -> Value {
        common::tandemctl_json(&self.s, &self.ctl, &["stats"])
    }

    /// tandemd's leases by MAC: (address, state).
    fn leases(&self) -> HashMap<String, (String, String)> {
        let v = common::tandemctl_json(&self.s, &self.ctl, &["lease", "list"]);
        v.as_array()
            .expect("a JSON array of leases")
            .iter()
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
                (s("mac"), (s("address"), s("state")))
            })
            .collect()
    }

    /// Run `tandem-bench dora --direct --interface IF_C --server SERVER ARGS --quiet --json
    /// NAME.json --leases-file NAME.txt` in the generator's namespace, which must succeed;
    /// (report, held leases as (MAC, address), stdout).
    fn dora(&self, name: &str, args: &[&str]) -> (Value, Vec<(String, String)>, String) {
        let json = self.path(&format!("{name}.json"));
        let held = self.path(&format!("{name}.txt"));
        let mut argv = vec![
            env!("CARGO_BIN_EXE_tandem-bench"),
            "dora",
            "--direct",
            "--interface",
            IF_C,
            "--server",
            SERVER,
            "--quiet",
            "--json",
            json.to_str().expect("UTF-8 path"),
            "--leases-file",
            held.to_str().expect("UTF-8 path"),
        ];
        argv.extend_from_slice(args);
        let out = self.c.exec(&argv);
        common::assert_success(
            &format!("tandem-bench {args:?}\ntandemd log:\n{}", self.srv.log()),
            &out,
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{stdout}");
        let report: Value = serde_json::from_str(&fs::read_to_string(&json).expect("JSON report"))
            .expect("valid JSON");
        let held = fs::read_to_string(&held)
            .expect("leases file")
            .lines()
            .map(|l| {
                let (m, a) = l.split_once(' ').expect("MAC ADDRESS lines");
                (m.to_string(), a.to_string())
            })
            .collect();
        (report, held, stdout)
    }

    /// Run tandem-bench with `args` in the generator's namespace (any outcome).
    fn bench_raw(&self, args: &[&str]) -> Output {
        let mut argv = vec![env!("CARGO_BIN_EXE_tandem-bench")];
        argv.extend_from_slice(args);
        self.c.exec(&argv)
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing or not a count in {v}"))
}

/// `tandemd`'s counter `k` grew by exactly `n` from `before` to `after`.
fn grew(before: &Value, after: &Value, k: &str) -> u64 {
    u(after, k) - u(before, k)
}

/// The report of a direct run of `n` exchanges that all completed: the path, the counts, and
/// that every reply was for us with giaddr 0.
fn assert_all_answered(r: &Value, n: u64, backend: &str) {
    let ctx = format!("report: {r:#}");
    assert_eq!(r["path"], "direct", "{ctx}");
    assert_eq!(r["backend"], backend, "{ctx}");
    assert_eq!(r["params"]["relay"], format!("direct on {IF_C}"), "{ctx}");
    let c = &r["counts"];
    for k in ["started", "completed", "leases", "offers", "sent_discover"] {
        assert_eq!(u(c, k), n, "counts.{k}: {ctx}");
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
        "wrong_giaddr",
    ] {
        assert_eq!(u(c, k), 0, "counts.{k}: {ctx}");
    }
    assert_eq!(
        u(c, "received"),
        u(c, "offers") + u(c, "acks") + u(c, "late"),
        "every reply is accounted for: {ctx}"
    );
    assert_eq!(
        u(r, "other_source"),
        0,
        "replies from the server only: {ctx}"
    );
    assert_eq!(u(&r["latency_us"]["dora"], "count"), n, "{ctx}");
}

/// Every held lease is distinct and active in tandemd for its MAC.
fn assert_held_active(lab: &Lab, held: &[(String, String)], n: usize) {
    assert_eq!(held.len(), n, "{held:?}");
    let addrs: HashSet<&String> = held.iter().map(|(_, a)| a).collect();
    assert_eq!(addrs.len(), n, "every lease distinct: {held:?}");
    let on_server = lab.leases();
    for (mac, addr) in held {
        let (a, state) = on_server
            .get(mac)
            .unwrap_or_else(|| panic!("{mac} has no lease in tandemd"));
        assert_eq!((a, state.as_str()), (addr, "active"), "{mac}");
    }
}

/// No lease of a client with MAC seed `seed` (02:SS:...) is active in tandemd; returns how
/// many such clients tandemd knows.
fn none_active(lab: &Lab, seed: u8) -> usize {
    let prefix = format!("02:{seed:02x}:");
    let mine: Vec<(String, String)> = lab
        .leases()
        .into_iter()
        .filter(|(m, _)| m.starts_with(&prefix))
        .map(|(m, (_, st))| (m, st))
        .collect();
    let active: Vec<&(String, String)> = mine.iter().filter(|(_, s)| s == "active").collect();
    assert!(active.is_empty(), "still active: {active:?}");
    mine.len()
}

#[test]
fn direct_udp_generator_against_tandemd_udp() {
    let _serial = one_at_a_time();
    let lab = Lab::new("udp", false);
    let s0 = lab.stats();

    // DORA: every exchange answered by broadcast to :68, every lease active in tandemd
    let (r, held, stdout) = lab.dora(
        "dora",
        &[
            "--backend",
            "udp",
            "--seed",
            "1",
            "--clients",
            "300",
            "--max-leases",
            "300",
            "--rate",
            "1000",
            "--duration",
            "5",
        ],
    );
    assert!(
        stdout.contains(&format!("direct on {IF_C} (giaddr 0, broadcast)")),
        "{stdout}"
    );
    assert_all_answered(&r, 300, "udp");
    assert!(r.get("xdp").is_none(), "{r:#}");
    assert_held_active(&lab, &held, 300);
    let s1 = lab.stats();
    let c = &r["counts"];
    let retrans = u(c, "retransmits");
    assert_eq!(
        grew(&s0, &s1, "discover") + grew(&s0, &s1, "request"),
        600 + retrans,
        "tandemd got every request: {s1:#}"
    );
    assert!(grew(&s0, &s1, "ack") >= 300, "{s1:#}");
    assert_eq!(
        u(&s1["dropped"], "no_scope"),
        0,
        "served by the link's scope: {s1:#}"
    );
    assert_eq!(u(&s1, "duplicate_other_relay"), 0, "{s1:#}");
    assert_eq!(u(&s1, "leases_active"), 300, "{s1:#}");

    // DORA+RELEASE: RELEASE unicast to the server id, every lease released
    let (r, held, _) = lab.dora(
        "release",
        &[
            "--backend",
            "udp",
            "--mix",
            "dora+release",
            "--seed",
            "2",
            "--clients",
            "100",
            "--max-leases",
            "100",
            "--rate",
            "1000",
        ],
    );
    assert_all_answered(&r, 100, "udp");
    assert_eq!(u(&r["counts"], "sent_release"), 100, "{r:#}");
    assert!(held.is_empty(), "released leases are not held: {held:?}");
    let s2 = lab.stats();
    assert_eq!(grew(&s1, &s2, "release"), 100, "{s2:#}");
    assert_eq!(grew(&s1, &s2, "silent_unknown_lease"), 0, "{s2:#}");
    assert_eq!(
        none_active(&lab, 2),
        100,
        "tandemd knows the 100 released clients"
    );
    assert_eq!(u(&s2, "leases_active"), 300, "{s2:#}");

    // DORA+DECLINE: DECLINE broadcast, every address quarantined
    let (r, _, _) = lab.dora(
        "decline",
        &[
            "--backend",
            "udp",
            "--mix",
            "dora+decline",
            "--seed",
            "3",
            "--clients",
            "20",
            "--max-leases",
            "20",
            "--rate",
            "500",
        ],
    );
    assert_all_answered(&r, 20, "udp");
    assert_eq!(u(&r["counts"], "sent_decline"), 20, "{r:#}");
    let s3 = lab.stats();
    assert_eq!(grew(&s2, &s3, "decline"), 20, "{s3:#}");
    none_active(&lab, 3);

    // DORA+RENEW over UDP: refused before anything is sent, saying why
    let o = lab.bench_raw(&[
        "dora",
        "--direct",
        "--interface",
        IF_C,
        "--server",
        SERVER,
        "--backend",
        "udp",
        "--mix",
        "dora+renew",
        "--max-leases",
        "1",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("needs --backend xdp"), "{err}");
    // --direct without --interface: a usage error
    let o = lab.bench_raw(&["dora", "--direct", "--server", SERVER, "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--direct needs --interface"));
    assert_eq!(grew(&s3, &lab.stats(), "received"), 0, "nothing was sent");
}

#[test]
fn direct_xdp_generator_against_tandemd_xdp() {
    let _serial = one_at_a_time();
    let lab = Lab::new("xdp", true);
    let s0 = lab.stats();
    let (in0, noport0) = lab.c.udp_counters();

    let (r, held, _) = lab.dora(
        "dora",
        &[
            "--backend",
            "xdp",
            "--seed",
            "1",
            "--clients",
            "300",
            "--max-leases",
            "300",
            "--rate",
            "1000",
            "--duration",
            "5",
        ],
    );
    assert_all_answered(&r, 300, "xdp");
    assert_held_active(&lab, &held, 300);
    let c = &r["counts"];
    let received = u(c, "received");
    let sent = u(c, "sent_discover") + u(c, "sent_request") + u(c, "retransmits");
    // every reply came through the generator's steering program (port 68) into AF_XDP
    let x = &r["xdp"];
    let ctx = format!("report: {r:#}");
    assert_eq!(x["interface"], IF_C, "{ctx}");
    assert_eq!(u(&x["program"], "redirect"), received, "{ctx}");
    assert_eq!(u(&x["program"], "redirect_failed"), 0, "{ctx}");
    assert_eq!(u(x, "rx_frames"), received, "{ctx}");
    for k in [
        "unparsed",
        "not_for_us",
        "no_tx_chunk",
        "frame_errors",
        "xsk_tx_invalid",
    ] {
        assert_eq!(u(x, k), 0, "xdp.{k}: {ctx}");
    }
    assert_eq!(u(x, "tx_frames"), sent, "{ctx}");
    assert_eq!(u(x, "tx_completed"), sent, "{ctx}");
    // ... and through tandemd's AF_XDP worker
    let s1 = lab.stats();
    assert_eq!(
        grew(&s0, &s1, "discover") + grew(&s0, &s1, "request"),
        sent,
        "{s1:#}"
    );
    assert!(u(&s1["xdp"], "rx_frames") >= sent, "{s1:#}");
    assert_eq!(u(&s1["dropped"], "no_scope"), 0, "{s1:#}");

    // DORA+RENEW: the RENEWING REQUEST unicast from ciaddr, the ACK unicast to ciaddr:68
    let (r, held, _) = lab.dora(
        "renew",
        &[
            "--backend",
            "xdp",
            "--mix",
            "dora+renew",
            "--seed",
            "4",
            "--clients",
            "100",
            "--max-leases",
            "100",
            "--rate",
            "1000",
        ],
    );
    assert_all_answered(&r, 100, "xdp");
    let c = &r["counts"];
    assert_eq!((u(c, "sent_renew"), u(c, "renewed")), (100, 100), "{r:#}");
    assert_eq!(u(&r["latency_us"]["renew"], "count"), 100, "{r:#}");
    assert_eq!(
        u(&r["xdp"]["program"], "redirect"),
        u(c, "received"),
        "{r:#}"
    );
    assert_held_active(&lab, &held, 100);
    let s2 = lab.stats();
    assert!(grew(&s1, &s2, "ack") >= 200, "{s2:#}");

    // DORA+REBIND: the REBINDING REQUEST broadcast with ciaddr set, the ACK unicast to ciaddr:68
    let (r, held, _) = lab.dora(
        "rebind",
        &[
            "--backend",
            "xdp",
            "--mix",
            "dora+rebind",
            "--seed",
            "7",
            "--clients",
            "100",
            "--max-leases",
            "100",
            "--rate",
            "1000",
        ],
    );
    assert_all_answered(&r, 100, "xdp");
    let c = &r["counts"];
    assert_eq!((u(c, "sent_renew"), u(c, "renewed")), (100, 100), "{r:#}");
    assert_eq!(r["params"]["mix"], "dora+rebind", "{r:#}");
    assert_held_active(&lab, &held, 100);
    let s2 = lab.stats();

    // DORA+RELEASE
    let (r, held, _) = lab.dora(
        "release",
        &[
            "--backend",
            "xdp",
            "--mix",
            "dora+release",
            "--seed",
            "5",
            "--clients",
            "100",
            "--max-leases",
            "100",
            "--rate",
            "1000",
        ],
    );
    assert_all_answered(&r, 100, "xdp");
    assert_eq!(u(&r["counts"], "sent_release"), 100, "{r:#}");
    assert!(held.is_empty());
    let s3 = lab.stats();
    assert_eq!(grew(&s2, &s3, "release"), 100, "{s3:#}");
    assert_eq!(none_active(&lab, 5), 100);

    // the generator's kernel stack saw none of it
    let (in1, noport1) = lab.c.udp_counters();
    assert_eq!(
        (in1 - in0, noport1 - noport0),
        (0, 0),
        "InDatagrams, NoPorts"
    );
}

#[test]
fn direct_renewals_against_a_kernel_stack_server_are_lost() {
    let _serial = one_at_a_time();
    let lab = Lab::new("kern", false);
    let s0 = lab.stats();
    let (r, held, _) = lab.dora(
        "renew",
        &[
            "--backend",
            "xdp",
            "--mix",
            "dora+renew",
            "--seed",
            "6",
            "--clients",
            "30",
            "--max-leases",
            "30",
            "--rate",
            "300",
            "--timeout-ms",
            "300",
            "--retries",
            "0",
        ],
    );
    let c = &r["counts"];
    let ctx = format!("report: {r:#}");
    assert_eq!(r["path"], "direct", "{ctx}");
    // the DORAs worked (broadcast replies) ...
    assert_eq!(u(c, "leases"), 30, "{ctx}");
    assert_eq!(u(c, "sent_renew"), 30, "{ctx}");
    // ... but no renewal's ACK arrived
    assert_eq!(u(c, "renewed"), 0, "{ctx}");
    assert_eq!((u(c, "lost"), u(c, "lost_renew")), (30, 30), "{ctx}");
    for k in [
        "naks",
        "foreign",
        "wrong_giaddr",
        "malformed",
        "invalid_ack",
    ] {
        assert_eq!(u(c, k), 0, "counts.{k}: {ctx}");
    }
    // though tandemd got and ACKed every renewal: its kernel could not deliver them to ciaddr
    let s1 = lab.stats();
    assert_eq!(grew(&s0, &s1, "request"), 60, "{s1:#}");
    assert_eq!(grew(&s0, &s1, "ack"), 60, "{s1:#}");
    // a lost renewal leaves the client its lease, which tandemd holds as active
    assert_held_active(&lab, &held, 30);
}
