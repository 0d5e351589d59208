//! Failover between two `tandemd`s in network namespaces: a partner whose clock is 90 s off is
//! refused on both sides (reason 4, time mismatch) until it runs on the right clock; a partner
//! with another shared secret is refused (message digest) until it has the same secret; and
//! Wireshark's DHCP failover dissector decodes what the pair says on TCP 647 (CONNECT,
//! CONNECTACK, STATE, BNDUPD, BNDACK) without a malformed field; and with `tls = "required"`
//! the pair reaches NORMAL over TLS 1.3 (tshark sees only TLS records on 647), refuses a
//! partner with a certificate from another CA, one issued to another name and one speaking
//! plaintext (each counted by reason) while it keeps serving, and takes a renewed certificate
//! at the next connection.
//!
//! Topology: server A (primary, 10.78.N.2) and server B (secondary, 10.78.N.3) in their own
//! namespaces joined by one veth pair; the wire-decode test puts a bridge namespace between them
//! and a client namespace running perfdhcp.
//!
//! The tests need root, the tools of `deploy/install-deps.sh`, Debian's `libfaketime` and
//! `tshark`; without them they fail with a message saying so (they never skip). Namespaces are
//! `tdm-<pid>-<test>-<role>` and are removed on drop, also on failure.

#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "netns/pcap.rs"]
mod pcap;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{bridge, poll, run, veth, Lab, Netns, Tandemd};
use serde_json::Value;

/// The relationship's name on both servers.
const REL: &str = "tdm-pair";
/// The servers' interface on the link between them (the same name in both namespaces).
const IFACE: &str = "tdmfo0";
/// How long the refused pair is watched for a NORMAL that must not come.
const REFUSED_WINDOW: Duration = Duration::from_secs(10);
/// Bound on reaching NORMAL once the pair can agree. The primary retries a refused partner with
/// an exponential backoff (5 s, 10 s, 20 s, ...), so this covers a few of its retries.
const NORMAL_TIMEOUT: Duration = Duration::from_secs(75);
/// B's clock offset in the clock-skew test (the limit is the default `max_clock_skew`, 60 s).
const SKEW_SECS: i64 = 90;

/// Fail (never skip) unless the tools these tests need besides the harness's are installed.
fn require_tools() {
    let mut missing = Vec::new();
    if faketime_lib().is_none() {
        missing.push("libfaketime.so.1 (Debian packages faketime and libfaketime)");
    }
    if !Path::new("/usr/bin/tshark").is_file() && which("tshark").is_none() {
        missing.push("tshark (Debian package tshark)");
    }
    assert!(
        missing.is_empty(),
        "missing tools for the failover namespace tests: {}; install them with \
         `sudo bash deploy/install-deps.sh`",
        missing.join(", ")
    );
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// The libfaketime preload library (what the `faketime` command puts in `LD_PRELOAD`).
fn faketime_lib() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/lib/faketime")];
    if let Ok(rd) = fs::read_dir("/usr/lib") {
        dirs.extend(rd.filter_map(|e| e.ok()).map(|e| e.path().join("faketime")));
    }
    dirs.into_iter()
        .map(|d| d.join("libfaketime.so.1"))
        .find(|p| p.is_file())
}

/// The command-line prefix that runs `tandemd` with its wall clock `offset` seconds off.
///
/// The `faketime` command itself forks and waits for the program (it does not pass SIGTERM on),
/// so the harness's PID would be the wrapper's and stopping it would orphan `tandemd`. `env`
/// execs instead, with the same preload library and clock specification `faketime -f` sets;
/// the monotonic clock stays real, so only the wall clock (and the failover message times) move.
fn faketime_wrapper(offset: i64) -> Vec<String> {
    let lib = faketime_lib().unwrap_or_else(|| {
        panic!("libfaketime.so.1 not found; install it with `sudo bash deploy/install-deps.sh`")
    });
    vec![
        "env".to_string(),
        format!("LD_PRELOAD={}", lib.display()),
        format!("FAKETIME={offset:+}s"),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".to_string(),
    ]
}

/// Seconds since the epoch, now (real clock).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Unix time of a log line that starts with an RFC 3339 UTC timestamp
/// (`2026-01-02T03:04:05.678901Z  INFO ...`, tracing's text format).
fn log_line_time(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| line.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    Some(days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?)
}

/// The time of the daemon's first log line.
fn first_log_time(d: &Tandemd) -> i64 {
    let log = d.log_text();
    log.lines()
        .find_map(log_line_time)
        .unwrap_or_else(|| panic!("no timestamped line in the log:\n{log}"))
}

/// One server of the pair: its namespace, its daemon and its address.
struct Server {
    // the daemon first: it is stopped (by PID) before its namespace goes
    d: Option<Tandemd>,
    ns: Netns,
    name: &'static str,
}

impl Server {
    fn d(&self) -> &Tandemd {
        self.d
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not started", self.name))
    }

    fn d_mut(&mut self) -> &mut Tandemd {
        let name = self.name;
        self.d
            .as_mut()
            .unwrap_or_else(|| panic!("{name} is not started"))
    }

    /// Stop the daemon (it must exit cleanly) and start it again with the same configuration
    /// and state; `plain`: without the wrapper it had (libfaketime).
    fn restart(&mut self, lab: &Lab, plain: bool) {
        let name = self.name;
        let d = self
            .d
            .as_mut()
            .unwrap_or_else(|| panic!("{name} is not started"));
        d.stop();
        if plain {
            d.wrapper.clear();
        }
        d.restart(&self.ns, lab);
    }

    /// `tandemctl failover show REL --json`.
    fn fo(&self) -> Value {
        self.d().ctl_json(&["failover", "show", REL, "--json"])
    }
}

/// Server A (primary) and B (secondary), in namespaces `a` and `b`, addressed on subnet
/// 10.78.`net`.0/24 (not started yet).
struct Pair {
    a: Server,
    b: Server,
    net: u8,
}

impl Pair {
    /// A and B joined by one veth pair.
    fn direct(lab: &Lab, net: u8) -> Pair {
        let na = lab.netns("a");
        let nb = lab.netns("b");
        veth(&na, IFACE, &nb, IFACE);
        Pair::addressed(na, nb, net)
    }

    fn addressed(na: Netns, nb: Netns, net: u8) -> Pair {
        na.addr(IFACE, &format!("10.78.{net}.2/24"));
        nb.addr(IFACE, &format!("10.78.{net}.3/24"));
        Pair {
            a: Server {
                d: None,
                ns: na,
                name: "a",
            },
            b: Server {
                d: None,
                ns: nb,
                name: "b",
            },
            net,
        }
    }

    /// The configuration of `a` (primary) or `b` (secondary); `extra` goes into `[[failover]]`.
    fn config(&self, lab: &Lab, primary: bool, extra: &str) -> String {
        let net = self.net;
        let (name, own, partner, role) = if primary {
            ("a", 2, 3, "primary")
        } else {
            ("b", 3, 2, "secondary")
        };
        let own = format!("10.78.{net}.{own}");
        Tandemd::server_section_named(lab, name, &own, &[IFACE])
            + &format!(
                "\n[[scope]]\nname = \"lan\"\nsubnet = \"10.78.{net}.0/24\"\ninterface = \"{IFACE}\"\n\
                 ranges = [\"10.78.{net}.100-10.78.{net}.149\"]\nlease_time = \"5m\"\n\
                 [scope.options]\nrouters = [\"10.78.{net}.1\"]\n\
                 \n[[failover]]\nname = \"{REL}\"\nrole = \"{role}\"\npartner = \"10.78.{net}.{partner}\"\n\
                 listen = \"{own}\"\nmclt = \"10s\"\nmax_response_delay = \"5s\"\nstartup_wait = \"2s\"\n\
                 scopes = [\"lan\"]\n{extra}"
            )
    }

    /// Start B (the secondary, which only listens) first, then A, so A's first CONNECT finds
    /// B listening.
    fn start(&mut self, lab: &Lab, extra_a: &str, extra_b: &str, wrapper_b: &[String]) {
        let cfg_b = self.config(lab, false, extra_b);
        let wrapper_b: Vec<&str> = wrapper_b.iter().map(String::as_str).collect();
        self.b.d = Some(Tandemd::start_named(
            lab, &self.b.ns, "b", &cfg_b, &wrapper_b,
        ));
        let cfg_a = self.config(lab, true, extra_a);
        self.a.d = Some(Tandemd::start_named(lab, &self.a.ns, "a", &cfg_a, &[]));
    }

    /// Wait until both report NORMAL on a connected link; returns how long it took.
    fn wait_normal(&self, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let mut last = (Value::Null, Value::Null);
        let ok = poll(timeout, || {
            last = (self.a.fo(), self.b.fo());
            [&last.0, &last.1]
                .iter()
                .all(|s| s["state"] == "NORMAL" && s["connected"] == true)
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "the pair did not reach NORMAL within {timeout:?}\nA: {}\nB: {}\n--- A log:\n{}\n--- B log:\n{}",
            last.0,
            last.1,
            self.a.d().log_text(),
            self.b.d().log_text()
        );
        t0.elapsed()
    }

    /// Wait (15 s at most) until both servers had updates acknowledged and have none
    /// outstanding; returns how many each had acknowledged.
    fn wait_replicated(&self) -> Option<(u64, u64)> {
        poll(Duration::from_secs(15), || {
            let (a, b) = (self.a.fo(), self.b.fo());
            let n = |s: &Value, k: &str| s[k].as_u64().unwrap_or(0);
            (n(&a, "updates_acked") > 0
                && n(&b, "updates_acked") > 0
                && n(&a, "unacked_updates") == 0
                && n(&b, "unacked_updates") == 0)
                .then(|| (n(&a, "updates_acked"), n(&b, "updates_acked")))
        })
    }

    /// Watch both for `window`: neither may be NORMAL or connected at any sample. Returns the
    /// states seen, per server.
    fn assert_never_normal(&self, window: Duration) -> (Vec<String>, Vec<String>) {
        let t0 = Instant::now();
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        while t0.elapsed() < window {
            for (srv, seen) in [(&self.a, &mut seen_a), (&self.b, &mut seen_b)] {
                let s = srv.fo();
                let state = s["state"].as_str().unwrap_or_default().to_string();
                assert!(
                    state != "NORMAL" && s["connected"] == false,
                    "{} reached {state} (connected {}) {:?} after the start although it must be \
                     refused: {s}\n--- log:\n{}",
                    srv.name,
                    s["connected"],
                    t0.elapsed(),
                    srv.d().log_text()
                );
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        (seen_a, seen_b)
    }
}

/// A and B on a bridge (switch namespace `sw`) with a client namespace `cl` (interface `tdmcl0`,
/// 10.78.`net`.9); the switch ports are `<port>a`, `<port>b`, `<port>c` (unique per test).
/// Returns the pair and the switch and client namespaces (keep them alive).
fn bridged(lab: &Lab, net: u8, port: &str) -> (Pair, Netns, Netns) {
    let na = lab.netns("a");
    let nb = lab.netns("b");
    let sw = lab.netns("sw");
    let cl = lab.netns("cl");
    let ports = [format!("{port}a"), format!("{port}b"), format!("{port}c")];
    veth(&na, IFACE, &sw, &ports[0]);
    veth(&nb, IFACE, &sw, &ports[1]);
    veth(&cl, "tdmcl0", &sw, &ports[2]);
    bridge(&sw, "tdmbr0", &[&ports[0], &ports[1], &ports[2]]);
    cl.addr("tdmcl0", &format!("10.78.{net}.9/24"));
    (Pair::addressed(na, nb, net), sw, cl)
}

/// The log lines of `d` that contain `needle`.
fn log_lines(d: &Tandemd, needle: &str) -> Vec<String> {
    d.log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn clock_skew_over_a_minute_is_refused_on_both_sides() {
    require_tools();
    let lab = Lab::new("foskew");
    let mut pair = Pair::direct(&lab, 1);
    let t_start = unix_now();
    pair.start(&lab, "", "", &faketime_wrapper(-SKEW_SECS));
    let t_started = Instant::now();

    // libfaketime really moved tandemd's wall clock: B's log is stamped 90 s in the past, A's
    // at the real time
    let (ta, tb) = (first_log_time(pair.a.d()), first_log_time(pair.b.d()));
    assert!(
        (ta - t_start).abs() <= 5,
        "A's log starts at {ta}, the real time was {t_start}"
    );
    let b_off = tb - t_start;
    assert!(
        (-SKEW_SECS - 5..=-SKEW_SECS + 5).contains(&b_off),
        "B runs under libfaketime -{SKEW_SECS}s but its log starts {b_off} s from the real \
         time:\n{}",
        pair.b.d().log_text()
    );

    let (seen_a, seen_b) = pair.assert_never_normal(REFUSED_WINDOW);

    // the refusal is in the logs, with reason 4 in words
    const REFUSED: &str = "failover connection refused";
    const MISMATCH: &str = "reason 4: time mismatch";
    let mut refused_by = Vec::new();
    for srv in [&pair.a, &pair.b] {
        let lines: Vec<String> = log_lines(srv.d(), REFUSED)
            .into_iter()
            .filter(|l| l.contains(MISMATCH))
            .collect();
        let status = srv.fo();
        if lines.is_empty() {
            continue;
        }
        refused_by.push(srv.name);
        // the side that saw the refusal tells the operator why, and by how much the clocks differ
        let last = status["last_refusal"].as_str().unwrap_or_default();
        assert!(
            last.contains("time mismatch"),
            "{} logged {lines:?} but its last_refusal is {:?}: {status}",
            srv.name,
            status["last_refusal"]
        );
        let skew = status["clock_skew_secs"].as_i64().unwrap_or_else(|| {
            panic!(
                "{} refused for the clocks but shows no clock_skew_secs: {status}",
                srv.name
            )
        });
        // partner minus us: A sees B 90 s behind, B sees A 90 s ahead
        let expect = if srv.name == "a" {
            -SKEW_SECS
        } else {
            SKEW_SECS
        };
        assert!(
            (expect - 3..=expect + 3).contains(&skew),
            "{}: clock_skew_secs {skew}, expected about {expect}: {status}",
            srv.name
        );
    }
    assert!(
        !refused_by.is_empty(),
        "neither log has \"{REFUSED}: ...{MISMATCH}...\"\n--- A:\n{}\n--- B:\n{}",
        pair.a.d().log_text(),
        pair.b.d().log_text()
    );
    // B refuses A's CONNECT; A learns it from the CONNECTACK: both sides know
    assert_eq!(
        refused_by,
        ["a", "b"],
        "the time-mismatch refusal was logged only by {refused_by:?}"
    );
    eprintln!(
        "clock skew: refused for {:?}; states seen A {seen_a:?}, B {seen_b:?}",
        t_started.elapsed()
    );

    // the same B on the right clock is accepted
    let t_fix = Instant::now();
    pair.b.restart(&lab, true);
    let tb2 = first_log_time(pair.b.d());
    assert!(
        (tb2 - unix_now()).abs() <= 5,
        "B restarted without libfaketime, but its log starts at {tb2} (now {})",
        unix_now()
    );
    let took = pair.wait_normal(NORMAL_TIMEOUT);
    for srv in [&pair.a, &pair.b] {
        let s = srv.fo();
        assert_eq!(s["partner_state"], "NORMAL", "{}: {s}", srv.name);
        eprintln!(
            "{}: NORMAL; clock_skew_secs (last skew beyond the limit) {}",
            srv.name, s["clock_skew_secs"]
        );
    }
    eprintln!(
        "clock skew: NORMAL {took:?} after B came back on the right clock (restart included: {:?})",
        t_fix.elapsed()
    );
    pair.a.d_mut().stop();
    pair.b.d_mut().stop();
}

/// Write a secret file readable by its owner only.
fn secret_file(lab: &Lab, name: &str, secret: &str) -> PathBuf {
    let p = lab.write(name, secret);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod 600 secret");
    p
}

#[test]
fn shared_secret_mismatch_is_refused_then_the_right_secret_connects() {
    require_tools();
    let lab = Lab::new("fosecret");
    let mut pair = Pair::direct(&lab, 2);
    let secret_a = "5d0c41b7e2a9f3686a1f0e4c9b2d7a31c8e5f60b4a9d2c7e1f3b6a8d0c2e4f6a\n";
    let secret_b = "0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f\n";
    let fa = secret_file(&lab, "a.secret", secret_a);
    let fb = secret_file(&lab, "b.secret", secret_b);
    let line = |p: &Path| format!("shared_secret_file = \"{}\"\n", p.display());
    pair.start(&lab, &line(&fa), &line(&fb), &[]);
    let t_started = Instant::now();

    let (seen_a, seen_b) = pair.assert_never_normal(REFUSED_WINDOW);

    // B cannot authenticate A's CONNECT (and A cannot authenticate B's DISCONNECT)
    const DIGEST: &str = "message digest does not match";
    let digest_a = log_lines(pair.a.d(), DIGEST);
    let digest_b = log_lines(pair.b.d(), DIGEST);
    assert!(
        !digest_b.is_empty(),
        "B's log has no \"{DIGEST}\" for A's CONNECT signed with another secret:\n{}",
        pair.b.d().log_text()
    );
    assert!(
        digest_b.iter().any(|l| l.contains("DigestCompareFailed")),
        "B's digest refusal does not name reject reason 20 (DigestCompareFailed): {digest_b:?}"
    );
    assert!(
        !digest_a.is_empty(),
        "A's log has no \"{DIGEST}\" for B's DISCONNECT signed with another secret:\n{}",
        pair.a.d().log_text()
    );
    // no message got through: neither has heard the other's state
    for srv in [&pair.a, &pair.b] {
        let s = srv.fo();
        assert!(
            s["partner_state"].is_null(),
            "{} learned its partner's state over a link with the wrong secret: {s}",
            srv.name
        );
    }
    eprintln!(
        "secret: refused for {:?}; states seen A {seen_a:?}, B {seen_b:?}; digest lines: A {}, B {}",
        t_started.elapsed(),
        digest_a.len(),
        digest_b.len()
    );
    eprintln!("secret: A's status while refused: {}", pair.a.fo());
    eprintln!("secret: B's status while refused: {}", pair.b.fo());

    // the same B with A's secret is accepted
    let t_fix = Instant::now();
    fs::write(&fb, secret_a).expect("rewrite B's secret");
    let mode = fs::metadata(&fb).expect("stat secret").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "B's secret file lost its mode");
    pair.b.restart(&lab, false);
    let took = pair.wait_normal(NORMAL_TIMEOUT);
    assert!(
        log_lines(pair.b.d(), DIGEST).is_empty(),
        "B, now with A's secret, still fails digests:\n{}",
        pair.b.d().log_text()
    );
    eprintln!(
        "secret: NORMAL {took:?} after B came back with A's secret (restart included: {:?})",
        t_fix.elapsed()
    );
    pair.a.d_mut().stop();
    pair.b.d_mut().stop();
}

/// dhcpfo message type codes.
const TYPE_NAMES: &[(u8, &str)] = &[
    (1, "POOLREQ"),
    (2, "POOLRESP"),
    (3, "BNDUPD"),
    (4, "BNDACK"),
    (5, "CONNECT"),
    (6, "CONNECTACK"),
    (7, "UPDREQ"),
    (8, "UPDDONE"),
    (9, "UPDREQALL"),
    (10, "STATE"),
    (11, "CONTACT"),
    (12, "DISCONNECT"),
];

fn type_name(code: u8) -> String {
    TYPE_NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("type {code}"))
}

/// `tshark -r FILE -d tcp.port==647,dhcpfo ARGS`; must succeed; returns stdout.
fn tshark(file: &Path, args: &[&str]) -> String {
    let f = file.display().to_string();
    let mut argv = vec!["tshark", "-n", "-r", &f, "-d", "tcp.port==647,dhcpfo"];
    argv.extend_from_slice(args);
    let out = run(&argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tshark_decodes_tandem_failover_messages_without_malformed_fields() {
    require_tools();
    let lab = Lab::new("fotshark");
    // A and B on a bridge with a client namespace
    let (mut pair, _sw, cl) = bridged(&lab, 3, "tdmp");

    let cap = pcap::Capture::start(&lab, &pair.a.ns, IFACE, "fo647", "tcp port 647");
    pair.start(&lab, "", "", &[]);
    let took = pair.wait_normal(NORMAL_TIMEOUT);
    eprintln!("tshark: NORMAL after {took:?}");

    // a few DORAs from ten simulated clients, broadcast on the shared link: each server answers
    // its half and replicates it to the other
    let mut perf = cl.spawn(
        &lab,
        "perfdhcp",
        &[
            "timeout", "20", "perfdhcp", "-4", "-l", "tdmcl0", "-r", "5", "-R", "10", "-p", "3",
        ],
    );
    let done = perf.wait_exit(Duration::from_secs(25));
    assert!(done.is_some(), "perfdhcp did not end:\n{}", perf.log_text());
    let acked = pair.wait_replicated();
    let Some((acked_a, acked_b)) = acked else {
        panic!(
            "the servers did not both replicate a lease: A {} B {}\nperfdhcp:\n{}",
            pair.a.fo(),
            pair.b.fo(),
            perf.log_text()
        );
    };
    let leases = pair.a.d().leases().len();
    eprintln!("tshark: updates acked A {acked_a}, B {acked_b}; A lists {leases} leases");
    // one more CONTACT round so the last BNDACKs are surely on the wire
    std::thread::sleep(Duration::from_millis(500));
    let (_, summary) = cap.finish();
    let file = lab.path("fo647.pcap");

    // every message type the pair sent, as tshark decodes it
    let fields = tshark(&file, &["-T", "fields", "-e", "dhcpfo.type"]);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for code in fields
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        let code: u8 = code
            .parse()
            .unwrap_or_else(|e| panic!("tshark printed {code:?} as a dhcpfo.type ({e})"));
        *counts.entry(type_name(code)).or_default() += 1;
    }
    let captured = summary
        .lines()
        .filter(|l| l.contains("packets"))
        .collect::<Vec<_>>()
        .join("; ");
    eprintln!("tshark: decoded message types {counts:?} (tcpdump: {captured})");
    for want in ["CONNECT", "CONNECTACK", "STATE", "BNDUPD", "BNDACK"] {
        assert!(
            counts.get(want).copied().unwrap_or(0) > 0,
            "tshark decoded no {want} in the capture; it decoded {counts:?}"
        );
    }

    // the clients' leases went both ways, and tshark read their fields: an ACTIVE binding
    // (status 2) of an address of the range, with the client's hardware address
    let active = tshark(
        &file,
        &[
            "-Y",
            "dhcpfo.type == 3 && dhcpfo.bindingstatus == 2",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "dhcpfo.assignedipaddress",
            "-e",
            "dhcpfo.clienthardwareaddress",
        ],
    );
    for (srv, src) in [("A", "10.78.3.2"), ("B", "10.78.3.3")] {
        let leases: Vec<(&str, &str)> = active
            .lines()
            .filter_map(|l| {
                let mut w = l.split('\t');
                (w.next()? == src).then_some(())?;
                Some((w.next()?, w.next()?))
            })
            .filter(|(ip, mac)| {
                ip.parse()
                    .is_ok_and(|ip| harness::in_range(ip, "10.78.3.100", "10.78.3.149"))
                    && mac.len() == 17
            })
            .collect();
        assert!(
            !leases.is_empty(),
            "tshark shows no ACTIVE BNDUPD from {srv} ({src}) with an address of the range and \
             a hardware address:\n{active}"
        );
        eprintln!("tshark: {srv} replicated {} ACTIVE bindings", leases.len());
    }

    // and nothing it decoded is malformed or an error
    let verbose = tshark(&file, &["-V"]);
    let bad: Vec<&str> = verbose
        .lines()
        .filter(|l| l.contains("Malformed") || l.contains("[Expert Info (Error"))
        .collect();
    let file_copy = lab.write("tshark-V.txt", &verbose);
    assert!(
        bad.is_empty(),
        "tshark flags the capture ({} lines; full output in {}):\n{}",
        bad.len(),
        file_copy.display(),
        bad.join("\n")
    );
    let notes: BTreeMap<&str, usize> =
        verbose
            .lines()
            .filter(|l| l.contains("[Expert Info"))
            .fold(BTreeMap::new(), |mut m, l| {
                *m.entry(l.trim()).or_default() += 1;
                m
            });
    eprintln!("tshark: other expert info: {notes:?}");
    pair.a.d_mut().stop();
    pair.b.d_mut().stop();
}

// ----- TLS on the failover link ------------------------------------------------------------------

/// `openssl ARGS`; must succeed.
fn openssl(args: &[&str]) {
    let mut argv = vec!["openssl"];
    argv.extend_from_slice(args);
    let out = run(&argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}); is openssl installed? {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA: its certificate and key files.
struct Ca {
    cert: PathBuf,
    key: PathBuf,
}

/// A new self-signed CA `<tag>-ca.pem` / `<tag>-ca.key` (EC P-256).
fn make_ca(lab: &Lab, tag: &str) -> Ca {
    let cert = lab.path(&format!("{tag}-ca.pem"));
    let key = lab.path(&format!("{tag}-ca.key"));
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &k,
        "-out",
        &c,
        "-days",
        "30",
        "-subj",
        &format!("/CN=Tandem test CA {tag}"),
    ]);
    Ca { cert, key }
}

/// A certificate for DNS name `dns` issued by `ca`, with a new key (mode 0600), written to
/// `<file>.pem` / `<file>.key`. Usable by a TLS client and a server (both extended key usages).
fn issue(lab: &Lab, ca: &Ca, file: &str, dns: &str) -> (PathBuf, PathBuf) {
    let cert = lab.path(&format!("{file}.pem"));
    let key = lab.path(&format!("{file}.key"));
    let csr = lab.path(&format!("{file}.csr"));
    let ext = lab.write(
        &format!("{file}.ext"),
        &format!(
            "subjectAltName=DNS:{dns}\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        ),
    );
    let s = |p: &Path| p.display().to_string();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
        "-subj",
        &format!("/CN={dns}"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca.cert),
        "-CAkey",
        &s(&ca.key),
        "-CAcreateserial",
        "-out",
        &s(&cert),
        "-days",
        "30",
        "-extfile",
        &s(&ext),
    ]);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod 600 key");
    (cert, key)
}

/// The `[[failover]]` keys for TLS with these files and the partner's expected name.
fn tls_keys(ca: &Path, cert: &Path, key: &Path, partner_name: &str) -> String {
    format!(
        "tls = \"required\"\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
         tls_partner_name = \"{partner_name}\"\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// `tshark -n -r FILE -d tcp.port==647,tls -Y FILTER -T fields -e frame.number`: how many
/// frames match, decoding TCP 647 as TLS.
fn tls_frames(file: &Path, filter: &str) -> usize {
    let f = file.display().to_string();
    let argv = [
        "tshark",
        "-n",
        "-r",
        &f,
        "-d",
        "tcp.port==647,tls",
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ];
    let out = run(&argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// B's TLS refusals by reason (`tls_refusals` of `failover show --json`).
fn tls_refusals(srv: &Server, reason: &str) -> u64 {
    srv.fo()["tls_refusals"][reason].as_u64().unwrap_or(0)
}

/// Wait until B counted a TLS refusal for `reason`; panic with both logs otherwise.
fn wait_refusal(pair: &Pair, reason: &str, before: u64) -> u64 {
    let n = poll(Duration::from_secs(20), || {
        let n = tls_refusals(&pair.b, reason);
        (n > before).then_some(n)
    });
    n.unwrap_or_else(|| {
        panic!(
            "B counted no TLS refusal {reason:?}: {}\n--- A log:\n{}\n--- B log:\n{}",
            pair.b.fo(),
            pair.a.d().log_text(),
            pair.b.d().log_text()
        )
    })
}

/// Run perfdhcp from `cl` for a few DORAs (ten simulated clients) and return B's ACK count
/// before and after.
fn dora_burst(lab: &Lab, cl: &Netns, b: &Server, name: &str) -> (u64, u64) {
    let acks = |b: &Server| b.d().stats()["ack"].as_u64().unwrap_or(0);
    let before = acks(b);
    let mut perf = cl.spawn(
        lab,
        name,
        &[
            "timeout", "15", "perfdhcp", "-4", "-l", "tdmcl0", "-r", "5", "-R", "10", "-p", "3",
        ],
    );
    let done = perf.wait_exit(Duration::from_secs(20));
    assert!(done.is_some(), "perfdhcp did not end:\n{}", perf.log_text());
    (before, acks(b))
}

#[test]
fn tls_pair_reaches_normal_and_refuses_plaintext_and_wrong_certificates() {
    require_tools();
    let lab = Lab::new("fotls");
    // A and B on a bridge with a client namespace
    let (mut pair, _sw, cl) = bridged(&lab, 4, "tdmt");

    const A_NAME: &str = "dhcp1.tdm.test";
    const B_NAME: &str = "dhcp2.tdm.test";
    let ca = make_ca(&lab, "pair");
    let (a_cert, a_key) = issue(&lab, &ca, "a-cert", A_NAME);
    let (b_cert, b_key) = issue(&lab, &ca, "b-cert", B_NAME);
    let a_tls = tls_keys(&ca.cert, &a_cert, &a_key, B_NAME);
    let b_tls = tls_keys(&ca.cert, &b_cert, &b_key, A_NAME);

    // 1. Both with TLS required: NORMAL, leases replicated, and the wire shows only TLS 1.3.
    let cap = pcap::Capture::start(&lab, &pair.a.ns, IFACE, "tls647", "tcp port 647");
    pair.start(&lab, &a_tls, &b_tls, &[]);
    let took = pair.wait_normal(NORMAL_TIMEOUT);
    for srv in [&pair.a, &pair.b] {
        let s = srv.fo();
        assert_eq!(s["tls"], true, "{}: {s}", srv.name);
        assert!(
            !log_lines(srv.d(), "TLS 1.3 session with the partner").is_empty(),
            "{} logged no TLS session:\n{}",
            srv.name,
            srv.d().log_text()
        );
    }
    let (b0, b1) = dora_burst(&lab, &cl, &pair.b, "perf-normal");
    let acked = pair.wait_replicated().unwrap_or_else(|| {
        panic!(
            "the TLS pair did not replicate both ways: A {} B {}",
            pair.a.fo(),
            pair.b.fo()
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = cap.finish();
    let file = lab.path("tls647.pcap");
    let hellos = tls_frames(&file, "tls.handshake.type == 1");
    let tls13 = tls_frames(
        &file,
        "tls.handshake.type == 2 && tls.handshake.extensions.supported_version == 0x0304",
    );
    // (TLS 1.3 records after the handshake carry the outer type 23, "opaque_type" in tshark)
    let app = tls_frames(
        &file,
        "tls.record.opaque_type == 23 || tls.record.content_type == 23",
    );
    let all = tls_frames(&file, "tcp.len > 0");
    let records = tls_frames(&file, "tcp.len > 0 && tls.record");
    eprintln!(
        "tls: NORMAL after {took:?}; updates acked {acked:?}; B acked {} DORAs; capture: {all} \
         payload frames, {records} with TLS records, {hellos} ClientHello, {tls13} TLS 1.3 \
         ServerHello, {app} application-data",
        b1 - b0
    );
    assert!(
        hellos >= 1 && tls13 >= 1,
        "no TLS 1.3 handshake on 647 in {}",
        file.display()
    );
    assert!(app >= 4, "too little TLS application data on 647: {app}");
    assert_eq!(
        records,
        all,
        "payload on TCP 647 that is not TLS (plaintext failover messages?) in {}",
        file.display()
    );
    // the relationship name (in CONNECT) never crosses in clear
    let payload = {
        let f = file.display().to_string();
        let out = run(&[
            "tshark",
            "-n",
            "-r",
            &f,
            "-Y",
            "tcp.len > 0",
            "-T",
            "fields",
            "-e",
            "tcp.payload",
        ]);
        String::from_utf8_lossy(&out.stdout).replace([':', '\n'], "")
    };
    let name_hex: String = REL.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !payload.contains(&name_hex),
        "the relationship name {REL:?} is readable on the wire"
    );

    // 2. A is replaced by impostors from A's address; B refuses each, counts why, and keeps
    // serving its clients meanwhile.
    pair.a.d_mut().stop();
    let other = make_ca(&lab, "other");
    let (x_cert, x_key) = issue(&lab, &other, "x-cert", A_NAME);
    let (y_cert, y_key) = issue(&lab, &ca, "y-cert", "other.tdm.test");
    let impostors = [
        (
            "a-otherca",
            tls_keys(&ca.cert, &x_cert, &x_key, B_NAME),
            "bad_certificate",
        ),
        ("a-plain", String::new(), "not_tls"),
        (
            "a-wrongname",
            tls_keys(&ca.cert, &y_cert, &y_key, B_NAME),
            "wrong_name",
        ),
    ];
    for (name, keys, reason) in impostors {
        let before = tls_refusals(&pair.b, reason);
        let net = pair.net;
        let cfg = Tandemd::server_section_named(&lab, name, &format!("10.78.{net}.2"), &[IFACE])
            + &pair
                .config(&lab, true, &keys)
                .split_once("\n[[scope]]")
                .map_or_else(
                    || panic!("config without a scope"),
                    |(_, rest)| format!("\n[[scope]]{rest}"),
                );
        pair.a.d = Some(Tandemd::start_named(&lab, &pair.a.ns, name, &cfg, &[]));
        let n = wait_refusal(&pair, reason, before);
        let b = pair.b.fo();
        assert!(
            b["state"] != "NORMAL" && b["connected"] == false,
            "B took the impostor {name}: {b}"
        );
        let lines = log_lines(pair.b.d(), reason);
        assert!(
            lines.iter().any(|l| l.contains("refused at the TLS layer")),
            "B's log does not say why it refused {name}: {lines:?}"
        );
        eprintln!(
            "tls: {name} refused by B as {reason} ({n} so far); A's view: {}",
            pair.a.fo()["last_refusal"]
        );
        pair.a.d_mut().stop();
    }
    let (c0, c1) = dora_burst(&lab, &cl, &pair.b, "perf-alone");
    assert!(
        c1 > c0,
        "B served no client while refusing the impostors: {}",
        pair.b.d().stats()
    );
    let metrics = String::from_utf8_lossy(&pair.b.d().ctl(&["metrics"]).stdout).into_owned();
    for reason in ["bad_certificate", "not_tls", "wrong_name"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("tandem_failover_tls_refusals_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no refusal counter for {reason} in B's metrics"));
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(v >= 1.0, "{line}");
    }

    // 3. B's certificate is renewed on disk (new key, same CA and name) while B runs: B
    // reloads it for the next connection, the real A connects, and the leases are all there.
    let leases_b = pair.b.d().leases().len();
    let (n_cert, n_key) = issue(&lab, &ca, "b-cert-renewed", B_NAME);
    fs::copy(&n_key, &b_key).expect("install the renewed key");
    fs::copy(&n_cert, &b_cert).expect("install the renewed certificate");
    fs::set_permissions(&b_key, fs::Permissions::from_mode(0o600)).expect("chmod 600 key");
    let cfg_a = pair.config(&lab, true, &a_tls);
    pair.a.d = Some(Tandemd::start_named(&lab, &pair.a.ns, "a", &cfg_a, &[]));
    let took = pair.wait_normal(NORMAL_TIMEOUT);
    assert!(
        !log_lines(pair.b.d(), "reloaded for new connections").is_empty(),
        "B did not say it reloaded its certificate:\n{}",
        pair.b.d().log_text()
    );
    let after = pair.b.d().leases().len();
    assert!(
        after >= leases_b,
        "B lost leases over the certificate reload: {leases_b} before, {after} after"
    );
    eprintln!("tls: NORMAL again {took:?} after A returned to B's reloaded certificate; B holds {after} leases");
    pair.a.d_mut().stop();
    pair.b.d_mut().stop();
}

// ----- connection limits on 647 ----------------------------------------------------------------

/// Python run in a namespace: open `n` TCP connections to `host:647`, send `payload` on each
/// (nothing if empty), and report after at most `secs` how many the server closed, and after
/// how long the last close came (`closed=N of M, last_close_s=T`).
const HOLD_CONNECTIONS: &str = r#"
import socket, sys, time, select
host, n, secs, payload = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode()
socks = []
t0 = time.time()
for _ in range(n):
    s = socket.create_connection((host, 647), timeout=5)
    if payload:
        s.sendall(payload)
    socks.append(s)
open_ = set(socks)
last = 0.0
while open_ and time.time() - t0 < secs:
    r, _, _ = select.select(list(open_), [], [], 0.2)
    for s in r:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            open_.discard(s)
            last = time.time() - t0
print(f"closed={n - len(open_)} of {n}, last_close_s={last:.1f}")
"#;

/// Run [`HOLD_CONNECTIONS`] in `ns`; returns (closed, last close in seconds).
fn hold_connections(
    lab: &Lab,
    ns: &Netns,
    host: &str,
    n: u32,
    secs: u32,
    payload: &str,
) -> (u32, f64) {
    let script = lab.write("hold.py", HOLD_CONNECTIONS);
    let out = ns.exec(&[
        "python3",
        &script.display().to_string(),
        host,
        &n.to_string(),
        &secs.to_string(),
        payload,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "connection script failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closed = text
        .split("closed=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {text:?}"));
    let last = text
        .split("last_close_s=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {text:?}"));
    (closed, last)
}

fn link_refusals(srv: &Server, reason: &str) -> u64 {
    srv.fo()["link_refusals"][reason].as_u64().unwrap_or(0)
}

#[test]
fn strangers_duplicates_and_silent_connections_on_647_are_refused_and_counted() {
    require_tools();
    let lab = Lab::new("folimits");
    // A and B on a bridge with a client namespace
    let (mut pair, _sw, cl) = bridged(&lab, 5, "tdml");
    pair.start(&lab, "", "", &[]);
    pair.wait_normal(NORMAL_TIMEOUT);
    let b_ip = "10.78.5.3";

    // 200 connections from an address that is not the partner's: each closed at once.
    let (closed, last) = hold_connections(&lab, &cl, b_ip, 200, 10, "");
    assert_eq!(closed, 200, "B kept connections from a stranger open");
    let strangers = link_refusals(&pair.b, "not_partner");
    assert!(
        strangers >= 200,
        "B counted {strangers} of 200 strangers: {}",
        pair.b.fo()
    );
    let lines = log_lines(pair.b.d(), "failover connection refused");
    assert!(
        lines.len() < 10,
        "200 refusals took {} log lines (not rate-limited)",
        lines.len()
    );
    eprintln!(
        "limits: 200 stranger connections closed within {last:.1} s; {} log lines",
        lines.len()
    );

    // A second connection from the partner's own address while the link is up: refused.
    let (closed, _) = hold_connections(&lab, &pair.a.ns, b_ip, 5, 10, "");
    assert_eq!(closed, 5);
    assert!(link_refusals(&pair.b, "duplicate") >= 5, "{}", pair.b.fo());
    let b = pair.b.fo();
    assert!(
        b["state"] == "NORMAL" && b["connected"] == true,
        "the pair broke: {b}"
    );

    // With A gone, a connection from A's address that never says CONNECT holds the slot only
    // for the handshake timeout (10 s, or the receive timer if shorter: 5 s here); so does one
    // that sends bytes that never make a message.
    pair.a.d_mut().stop();
    let (closed, last) = hold_connections(&lab, &pair.a.ns, b_ip, 1, 30, "");
    assert_eq!(closed, 1, "B kept a silent connection for 30 s");
    assert!(
        (3.0..8.0).contains(&last),
        "the silent connection was closed after {last} s, not after the 5 s handshake limit"
    );
    assert!(
        link_refusals(&pair.b, "handshake_timeout") >= 1,
        "{}",
        pair.b.fo()
    );
    // oversized message: the length prefix says 65000 bytes
    let (closed, last_big) = hold_connections(&lab, &pair.a.ns, b_ip, 1, 30, "\u{fd}\u{e8}");
    assert_eq!(closed, 1);
    eprintln!(
        "limits: silent connection closed after {last:.1} s; an oversized length prefix after \
         {last_big:.1} s"
    );
    let metrics = String::from_utf8_lossy(&pair.b.d().ctl(&["metrics"]).stdout).into_owned();
    for reason in ["not_partner", "duplicate", "handshake_timeout"] {
        assert!(
            metrics.lines().any(
                |l| l.starts_with("tandem_failover_connections_refused_total")
                    && l.contains(&format!("reason=\"{reason}\""))
                    && !l.ends_with(" 0")
            ),
            "no nonzero refusal counter for {reason} in B's metrics"
        );
    }
    // and the real partner still gets in
    let a = pair.a.d.as_mut().expect("A's daemon");
    a.restart(&pair.a.ns, &lab);
    pair.wait_normal(NORMAL_TIMEOUT);
    pair.a.d_mut().stop();
    pair.b.d_mut().stop();
}
