//! `tandem-bench dora` against the real `tandemd` of this workspace, in two network namespaces.
//!
//! Layout: namespace `tdmbn-s` runs tandemd on veth `tdmbn0` (10.78.0.1/16); namespace `tdmbn-c`
//! holds the other end `tdmbn1` (10.78.0.2/16), the relay address the bench binds and writes into
//! giaddr. The scope 10.78.0.0/16 contains the relay address, so tandemd serves the relayed
//! requests from it and answers to 10.78.0.2:67. The bench runs ~3 s at 500 exchanges/s with 2000
//! clients; the test checks zero loss, that every lease the bench obtained is active in tandemd
//! with the right MAC (`tandemctl --json lease list` inside the server namespace), and that the
//! latency figures are present and ordered.
//!
//! Needs root (namespaces, veth, port 67); without it the test fails saying so, it never skips.
//! Namespaces of the same names left by an earlier run are removed first (after stopping what
//! runs inside them); everything is removed on drop, also when the test fails. A lock file
//! (`/tmp/tdmbn-test.lock`) keeps two runs of this test from sharing the names.
//!
//! Binaries: `tandem-bench` is this package's (`CARGO_BIN_EXE_tandem-bench`). `tandemd` and
//! `tandemctl` belong to `tandem-controlplane`; the test runs `cargo build -p tandem-controlplane
//! --bin tandemd --bin tandemctl` into the same target directory and profile first (a no-op when
//! they are up to date, e.g. after `cargo test --workspace`), and takes them from the directory
//! that holds `tandem-bench`. Set `TANDEM_BIN_DIR` to use prebuilt binaries from elsewhere
//! instead (no build).

mod common;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_ok, Netns, ADMIN};
use serde_json::Value;

const NS_SRV: &str = "tdmbn-s";
const NS_CLI: &str = "tdmbn-c";
const IF_SRV: &str = "tdmbn0";
const IF_CLI: &str = "tdmbn1";
const SERVER: &str = "10.78.0.1";
const RELAY: &str = "10.78.0.2";

/// The two namespaces and the veth pair; removed on drop.
struct Lab {
    // Drop order: the client side, then the server side, then the lock.
    c: Netns,
    s: Netns,
    _lock: File,
}

impl Lab {
    fn new() -> Lab {
        let lock = File::create("/tmp/tdmbn-test.lock").expect("create /tmp/tdmbn-test.lock");
        lock.lock().expect("lock /tmp/tdmbn-test.lock");
        // stale namespaces of an earlier, interrupted run are removed first
        let s = Netns::new(NS_SRV.to_string());
        let c = Netns::new(NS_CLI.to_string());
        common::veth(
            common::End {
                ns: &s,
                iface: IF_SRV,
                cidr: &format!("{SERVER}/16"),
            },
            common::End {
                ns: &c,
                iface: IF_CLI,
                cidr: &format!("{RELAY}/16"),
            },
            &[],
        );
        Lab { c, s, _lock: lock }
    }
}

/// The directory holding tandemd and tandemctl, built if needed (see the module docs).
fn server_bins() -> PathBuf {
    if let Some(d) = std::env::var_os("TANDEM_BIN_DIR") {
        return PathBuf::from(d);
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_tandem-bench"));
    let dir = bench
        .parent()
        .expect("CARGO_BIN_EXE_tandem-bench has a parent directory");
    let target = dir.parent().expect("the profile directory has a parent");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "tandem-controlplane"])
        .args(["--bin", "tandemd", "--bin", "tandemctl"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target);
    if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", env!("CARGO")));
    assert!(
        out.status.success(),
        "building tandemd and tandemctl failed ({:?}):\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

fn preflight() {
    common::assert_root(
        "this test needs root: it creates network namespaces and a veth pair and binds UDP port 67 \
         (run e.g. `sudo -E cargo test -p tandem-bench --test against_tandemd`)",
    );
    common::assert_tools();
}

/// The JSON leases tandemd lists, by address.
fn server_leases(tandemctl: &Path) -> HashMap<String, Value> {
    let ctl = tandemctl.to_str().expect("UTF-8 path");
    let text = run_ok(&[
        "ip", "netns", "exec", NS_SRV, ctl, "--admin", ADMIN, "--json", "lease", "list",
    ]);
    let v: Value = serde_json::from_str(&text).expect("tandemctl prints JSON");
    v.as_array()
        .expect("a JSON array of leases")
        .iter()
        .map(|l| (l["address"].as_str().unwrap_or("").to_string(), l.clone()))
        .collect()
}

fn assert_ordered(name: &str, l: &Value, count: u64) {
    let f = |k: &str| {
        l[k].as_f64()
            .unwrap_or_else(|| panic!("latency {name}.{k} missing: {l}"))
    };
    assert_eq!(l["count"].as_u64(), Some(count), "{name}: {l}");
    let (p50, p90, p99, p999, max) = (
        f("p50_us"),
        f("p90_us"),
        f("p99_us"),
        f("p999_us"),
        f("max_us"),
    );
    assert!(p50 > 0.0, "{name}: p50 is {p50}: {l}");
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{name}: percentiles out of order: {l}"
    );
    assert!(
        max < 3_000_000.0,
        "{name}: a latency above the retransmission budget: {l}"
    );
}

#[test]
fn dora_against_tandemd_in_netns_has_no_loss_and_every_lease_is_active() {
    preflight();
    let bins = server_bins();
    let (tandemd, tandemctl) = (bins.join("tandemd"), bins.join("tandemctl"));
    for b in [&tandemd, &tandemctl] {
        assert!(b.is_file(), "{} is missing", b.display());
    }
    let bench = env!("CARGO_BIN_EXE_tandem-bench");
    let tmp = tempfile::Builder::new()
        .prefix("tdmbn-")
        .tempdir()
        .expect("temp dir");
    let lab = Lab::new();

    let mut srv = common::start_tandemd(
        &lab.s,
        &tandemd,
        tmp.path(),
        &common::Scope {
            server: SERVER,
            iface: IF_SRV,
            subnet: "10.78.0.0/16",
            range: "10.78.0.10-10.78.255.250",
        },
    );
    let ctl = tandemctl.to_str().expect("UTF-8 path");
    common::wait_ready(&mut srv, "not answering its admin endpoint", || {
        lab.s
            .exec(&[ctl, "--admin", ADMIN, "status"])
            .status
            .success()
    });

    let json = tmp.path().join("report.json");
    let leases = tmp.path().join("leases.txt");
    let pid = srv.pid().to_string();
    let t = Instant::now();
    let out = lab.c.exec(&[
        bench,
        "dora",
        "--server",
        SERVER,
        "--relay",
        RELAY,
        "--clients",
        "2000",
        "--rate",
        "500",
        "--duration",
        "3",
        "--timeout-ms",
        "1000",
        "--retries",
        "2",
        "--server-pid",
        &pid,
        "--json",
        json.to_str().expect("UTF-8"),
        "--leases-file",
        leases.to_str().expect("UTF-8"),
    ]);
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "tandem-bench failed ({}):\n{stdout}\n{}\ntandemd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
    assert!(took < Duration::from_secs(10), "the bench took {took:?}");

    let r: Value = serde_json::from_str(&fs::read_to_string(&json).expect("JSON report"))
        .expect("the report is JSON");
    let c = &r["counts"];
    let n = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("counts.{k} missing: {c}"))
    };
    let ctx = format!("report: {r:#}\ntandemd log:\n{}", srv.log());
    assert_eq!(n("lost"), 0, "loss: {ctx}");
    assert_eq!(n("naks"), 0, "NAKs: {ctx}");
    for k in [
        "malformed",
        "foreign",
        "wrong_type",
        "invalid_offer",
        "invalid_ack",
    ] {
        assert_eq!(n(k), 0, "{k}: {ctx}");
    }
    let started = n("started");
    assert!(
        (1350..=1502).contains(&started),
        "3 s at 500/s should start ~1500 exchanges, started {started}: {ctx}"
    );
    assert_eq!(n("leases"), started, "{ctx}");
    assert_eq!(n("completed"), started, "{ctx}");
    let leases_per_s = r["leases_per_s"].as_f64().expect("leases_per_s");
    assert!(
        (400.0..=520.0).contains(&leases_per_s),
        "leases/s {leases_per_s}: {ctx}"
    );

    let lat = &r["latency_us"];
    for step in ["discover_offer", "request_ack", "dora"] {
        assert_ordered(step, &lat[step], started);
    }
    assert!(
        lat["dora"]["p50_us"].as_f64() >= lat["discover_offer"]["p50_us"].as_f64(),
        "a DORA cannot be faster than its DISCOVER→OFFER: {lat}"
    );
    let cpu = &r["server_cpu"];
    assert_eq!(cpu["pid"].as_u64(), Some(u64::from(srv.pid())), "{ctx}");
    assert!(
        cpu["cpu_us_per_lease"].as_f64().is_some_and(|v| v > 0.0),
        "server CPU per lease missing: {ctx}"
    );

    // Every lease the bench holds is active in tandemd, for the right MAC, and nothing else is.
    let held: Vec<(String, String)> = fs::read_to_string(&leases)
        .expect("leases file")
        .lines()
        .map(|l| {
            let (mac, addr) = l.split_once(' ').expect("MAC ADDRESS lines");
            (mac.to_string(), addr.to_string())
        })
        .collect();
    // 2000 clients and ~1500 exchanges: every client ran at most once, so one lease each
    assert_eq!(held.len() as u64, started, "{ctx}");
    let on_server = server_leases(&tandemctl);
    for (mac, addr) in &held {
        let l = on_server
            .get(addr)
            .unwrap_or_else(|| panic!("{addr} ({mac}) is not in tandemd's lease list"));
        assert_eq!(l["state"], "active", "{addr}: {l}");
        assert_eq!(l["mac"].as_str(), Some(mac.as_str()), "{addr}: {l}");
    }
    let active = on_server
        .values()
        .filter(|l| l["state"] == "active")
        .count();
    assert_eq!(
        active,
        held.len(),
        "tandemd has active leases the bench does not know"
    );

    assert!(srv.stop(), "tandemd did not stop cleanly:\n{}", srv.log());
    drop(lab);
}
