//! The DNS updater (`tandem_controlplane::ddns`) against a real BIND 9: what each test asserts
//! is what DNS answers (`dig` inside the namespace), besides the updater's status and metrics.
//!
//! Each test makes a network namespace (`tdm-dsvc-<pid>-<seq>`, loopback only, deleted on drop)
//! and runs itself again inside it (`nsenter --net=... <this test binary> <test> --exact`), so
//! the whole process, and every thread the updater starts, is in the namespace; named runs
//! there on 127.0.0.1:53 (`ddns/tests/support/named.rs`, shared with the ddns crate's tests).
//!
//! Needs root and the Debian packages bind9, bind9-dnsutils, iproute2, util-linux and procps; a
//! missing tool fails the test naming its package (nothing is skipped).
//! Run with `sudo -E cargo test -p tandem-controlplane --test ddns_service`.

#[path = "../../ddns/tests/support/named.rs"]
mod named;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use named::{server, Named, Netns, FORWARD, REVERSE};
use serde_json::Value;
use tandem_controlplane::ddns::{Ddns, DdnsConfig, Event, Granter, Identity, ScopeDns, STATE_FILE};
use tandem_dataplane::scope::Subnet;
use tandem_ddns::{Binding, Client, ClientConfig, ConflictMode, Dhcid, Name, Plan, TsigKey};

/// Set in the re-executed test: the namespace it runs in.
const CHILD_ENV: &str = "TDM_DDNS_SERVICE_NETNS";

/// Runs `body` in a new network namespace: this binary runs `test` again under nsenter. The
/// child's output is printed; its failure fails the test.
fn in_netns(test: &str, body: impl FnOnce(&Netns)) {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
        body(&Netns::existing(&name));
        return;
    }
    let ns = Netns::new("dsvc");
    let exe = std::env::current_exe().expect("the test binary");
    let start = Instant::now();
    let out = ns
        .command(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &ns.name)
        .output()
        .unwrap_or_else(|e| panic!("running {} in {}: {e}", exe.display(), ns.name));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "--- {test} in {} ({:?}) ---\n{text}",
        ns.name,
        start.elapsed()
    );
    assert!(out.status.success(), "{test} failed in {}", ns.name);
    assert!(
        text.contains("1 passed"),
        "{test} did not run in the namespace"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, last)
}

fn rev(last: u8) -> String {
    format!("{last}.0.77.10.in-addr.arpa.")
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn mac(last: u8) -> Identity {
    Identity {
        htype: 1,
        hw: vec![0x52, 0x54, 0x00, 0x12, 0x34, last],
        client_id: None,
    }
}

fn config(dir: &Path, key: Option<TsigKey>) -> DdnsConfig {
    let mut c = DdnsConfig::new(
        vec![ScopeDns {
            scope: "lan".into(),
            subnet: Subnet {
                network: Ipv4Addr::new(10, 77, 0, 0),
                prefix: 16,
            },
            forward_zone: name(FORWARD),
            reverse_zone: name(REVERSE),
            servers: vec![server()],
            key,
            ttl: 300,
            conflict: ConflictMode::Rfc4703,
        }],
        dir.to_path_buf(),
    );
    c.retry_min = Duration::from_millis(200);
    c.retry_max = Duration::from_secs(1);
    c.timeout = Duration::from_millis(400);
    c
}

fn takeover(flag: bool) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    Arc::new(move |_| flag)
}

fn granted(last: u8, host: &str, id: &Identity, by: Granter) -> Event {
    Event::Granted {
        addr: addr(last),
        fqdn: name(&format!("{host}.{FORWARD}")),
        identity: id.clone(),
        expires: now_secs() + 3600,
        forward: true,
        by,
    }
}

/// The DHCID of `host` for `id`, as dig prints it.
fn dhcid(host: &str, id: &Identity) -> String {
    Dhcid::compute(&id.dhcid_input(), &name(&format!("{host}.{FORWARD}"))).to_base64()
}

/// Polls `f` every 50 ms for up to `secs`; panics with the updater's status and named's log.
fn wait(what: &str, secs: u64, d: &Ddns, named: &Named, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < end,
            "{what} within {secs} s\nstatus: {:#}\nnamed log:\n{}",
            d.status(),
            named.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn num(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |x, p| &x[*p]).as_u64().unwrap_or(0)
}

fn entry(v: &Value, a: Ipv4Addr) -> Option<&Value> {
    v["entries"]
        .as_array()?
        .iter()
        .find(|e| e["addr"] == a.to_string())
}

/// Publishes `host → addr` as the failover partner would (its own RFC 4703 add).
fn publish_as_partner(key: &TsigKey, host: &str, last: u8, id: &Identity) {
    let b = Binding::new(
        name(&format!("{host}.{FORWARD}")),
        name(FORWARD),
        addr(last),
        name(REVERSE),
        &id.dhcid_input(),
        300,
        ConflictMode::Rfc4703,
    )
    .unwrap();
    let mut cfg = ClientConfig::new(server()).with_key(key.clone());
    cfg.timeout = Duration::from_secs(1);
    let r = Client::new(cfg)
        .run(&mut Plan::add(b))
        .expect("the partner's add");
    assert_eq!(r, tandem_ddns::PlanResult::Completed);
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn a_grant_publishes_a_ptr_and_dhcid_and_the_end_removes_them() {
    in_netns(
        "a_grant_publishes_a_ptr_and_dhcid_and_the_end_removes_them",
        |ns| {
            let named = Named::start(ns);
            let dir = tempfile::tempdir().unwrap();
            let d = Ddns::start(
                config(dir.path(), Some(named.key256.clone())),
                takeover(false),
            )
            .unwrap();
            let tx = d.sender();
            let (a, b) = (mac(5), mac(6));
            tx.send(granted(5, "host", &a, Granter::Local)).unwrap();
            // The client updates its own A record: the server writes only the PTR.
            tx.send(Event::Granted {
                addr: addr(6),
                fqdn: name("self.tdm.test"),
                identity: b.clone(),
                expires: now_secs() + 3600,
                forward: false,
                by: Granter::Local,
            })
            .unwrap();
            wait("both published", 10, &d, &named, || {
                num(&d.status(), &["updates", "add"]) == 2
            });
            assert_eq!(ns.dig("host.tdm.test.", "A"), ["10.77.0.5"]);
            assert_eq!(ns.dig("host.tdm.test.", "DHCID"), [dhcid("host", &a)]);
            assert_eq!(ns.dig(&rev(5), "PTR"), ["host.tdm.test."]);
            assert_eq!(ns.dig(&rev(5), "DHCID"), [dhcid("host", &a)]);
            assert_eq!(ns.dig(&rev(6), "PTR"), ["self.tdm.test."]);
            assert_eq!(ns.dig(&rev(6), "DHCID"), [dhcid("self", &b)]);
            assert!(
                ns.dig("self.tdm.test.", "ANY").is_empty(),
                "no A for a client that updates its own"
            );
            assert_eq!(
                d.name_of(addr(5)),
                Some(("host.tdm.test".into(), 0x2 | 0x4))
            );
            assert_eq!(
                d.name_of(addr(6)),
                Some(("self.tdm.test".into(), 0x1 | 0x4))
            );
            let v = d.status();
            assert_eq!(entry(&v, addr(5)).unwrap()["state"], "published");
            assert_eq!(entry(&v, addr(5)).unwrap()["published"], "a+ptr");
            assert_eq!(entry(&v, addr(6)).unwrap()["published"], "ptr");
            assert_eq!(v["servers"][0]["state"], "up");
            let mut m = String::new();
            d.render_metrics(&mut m);
            assert!(m.contains("tandem_ddns_updates_total{op=\"add\"} 2"), "{m}");
            assert!(m.contains("tandem_ddns_published{scope=\"lan\"} 2"), "{m}");

            // A renewal with the same name and client: no DNS traffic.
            tx.send(granted(5, "host", &a, Granter::Local)).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(num(&d.status(), &["updates", "add"]), 2);

            // A new name for the client: the old one goes (with its DHCID), the new one comes.
            tx.send(granted(5, "renamed", &a, Granter::Local)).unwrap();
            wait("renamed", 10, &d, &named, || {
                num(&d.status(), &["updates", "add"]) == 3
            });
            assert!(ns.dig("host.tdm.test.", "ANY").is_empty(), "old name gone");
            assert_eq!(ns.dig("renamed.tdm.test.", "A"), ["10.77.0.5"]);
            assert_eq!(ns.dig(&rev(5), "PTR"), ["renamed.tdm.test."]);
            assert_eq!(ns.dig(&rev(5), "DHCID"), [dhcid("renamed", &a)]);

            // The ends: everything goes.
            tx.send(Event::Ended { addr: addr(5) }).unwrap();
            tx.send(Event::Ended { addr: addr(6) }).unwrap();
            wait("both removed", 10, &d, &named, || {
                d.status()["entries_total"] == 0
            });
            assert_eq!(num(&d.status(), &["updates", "remove"]), 3);
            assert!(ns.dig("renamed.tdm.test.", "ANY").is_empty());
            for last in [5, 6] {
                assert!(ns.dig(&rev(last), "PTR").is_empty());
                assert!(ns.dig(&rev(last), "DHCID").is_empty());
            }
            assert_eq!(d.name_of(addr(5)), None);
            assert_eq!(
                ns.dig("ns.tdm.test.", "A"),
                ["127.0.0.1"],
                "the zone is intact"
            );
            d.stop();
        },
    );
}

#[test]
fn a_lease_expiring_without_an_end_is_removed_at_expiry() {
    in_netns(
        "a_lease_expiring_without_an_end_is_removed_at_expiry",
        |ns| {
            let named = Named::start(ns);
            let dir = tempfile::tempdir().unwrap();
            let d = Ddns::start(
                config(dir.path(), Some(named.key256.clone())),
                takeover(false),
            )
            .unwrap();
            let id = mac(7);
            let expires = now_secs() + 2;
            d.sender()
                .send(Event::Granted {
                    addr: addr(7),
                    fqdn: name("brief.tdm.test"),
                    identity: id.clone(),
                    expires,
                    forward: true,
                    by: Granter::Local,
                })
                .unwrap();
            wait("published", 5, &d, &named, || {
                ns.dig("brief.tdm.test.", "A") == ["10.77.0.7"]
            });
            assert_eq!(ns.dig(&rev(7), "PTR"), ["brief.tdm.test."]);
            wait("removed after the expiry", 8, &d, &named, || {
                ns.dig("brief.tdm.test.", "ANY").is_empty() && ns.dig(&rev(7), "PTR").is_empty()
            });
            assert!(now_secs() >= expires, "not before the lease ended");
            let v = d.status();
            assert_eq!(num(&v, &["expired"]), 1);
            assert_eq!(num(&v, &["updates", "remove"]), 1);
            d.stop();
        },
    );
}

#[test]
fn a_second_client_with_the_same_name_is_a_conflict_that_changes_nothing() {
    in_netns(
        "a_second_client_with_the_same_name_is_a_conflict_that_changes_nothing",
        |ns| {
            let named = Named::start(ns);
            let dir = tempfile::tempdir().unwrap();
            let d = Ddns::start(
                config(dir.path(), Some(named.key256.clone())),
                takeover(false),
            )
            .unwrap();
            let tx = d.sender();
            let (first, second) = (mac(10), mac(11));
            tx.send(granted(10, "shared", &first, Granter::Local))
                .unwrap();
            wait("the first published", 10, &d, &named, || {
                num(&d.status(), &["updates", "add"]) == 1
            });
            tx.send(granted(11, "shared", &second, Granter::Local))
                .unwrap();
            wait("the conflict", 10, &d, &named, || {
                num(&d.status(), &["conflicts"]) == 1
            });
            // Not retried: a while later still one conflict, no failures, nothing pending.
            std::thread::sleep(Duration::from_millis(1500));
            let v = d.status();
            assert_eq!(num(&v, &["conflicts"]), 1);
            assert_eq!(num(&v, &["retries"]), 0);
            assert_eq!(v["queue_depth"], 0);
            let e = entry(&v, addr(11)).unwrap();
            assert_eq!(
                (e["state"].as_str(), e["published"].as_str()),
                (Some("conflict"), Some("conflict"))
            );
            assert_eq!(ns.dig("shared.tdm.test.", "A"), ["10.77.0.10"]);
            assert_eq!(
                ns.dig("shared.tdm.test.", "DHCID"),
                [dhcid("shared", &first)]
            );
            assert_eq!(ns.dig(&rev(10), "PTR"), ["shared.tdm.test."]);
            assert!(
                ns.dig(&rev(11), "PTR").is_empty(),
                "the second's reverse untouched"
            );
            let mut m = String::new();
            d.render_metrics(&mut m);
            assert!(m.contains("tandem_ddns_conflicts_total 1"), "{m}");
            assert_eq!(d.name_of(addr(11)), Some(("shared.tdm.test".into(), 0)));
            // The second client's end removes nothing of the first's.
            tx.send(Event::Ended { addr: addr(11) }).unwrap();
            wait("forgotten", 5, &d, &named, || {
                entry(&d.status(), addr(11)).is_none()
            });
            assert_eq!(ns.dig("shared.tdm.test.", "A"), ["10.77.0.10"]);
            assert_eq!(ns.dig(&rev(10), "PTR"), ["shared.tdm.test."]);
            d.stop();
        },
    );
}

#[test]
fn with_the_server_down_updates_queue_and_retry_then_publish() {
    in_netns(
        "with_the_server_down_updates_queue_and_retry_then_publish",
        |ns| {
            let mut named = Named::prepare(ns); // not started yet
            let dir = tempfile::tempdir().unwrap();
            let d = Ddns::start(
                config(dir.path(), Some(named.key256.clone())),
                takeover(false),
            )
            .unwrap();
            let tx = d.sender();
            let t = Instant::now();
            for i in 0..20u8 {
                tx.try_send(granted(
                    100 + i,
                    &format!("h{i}"),
                    &mac(100 + i),
                    Granter::Local,
                ))
                .expect("never blocks, never full");
            }
            assert!(
                t.elapsed() < Duration::from_millis(100),
                "{:?}",
                t.elapsed()
            );
            wait("failures and retries counted", 10, &d, &named, || {
                let v = d.status();
                num(&v, &["failures", "timeout"]) + num(&v, &["failures", "network"]) >= 2
                    && num(&v, &["retries"]) >= 2
            });
            let v = d.status();
            assert_eq!(v["queue_depth"], 20);
            assert_eq!(v["servers"][0]["state"], "down");
            assert!(v["servers"][0]["last_error"].as_str().is_some());
            assert_eq!(v["oldest_pending"]["op"], "add");
            assert_eq!(d.name_of(addr(100)).map(|n| n.1), Some(0x8), "pending");
            // Only the probes went out: far fewer attempts than names.
            assert!(num(&v, &["retries"]) < 20, "{v:#}");
            let mut m = String::new();
            d.render_metrics(&mut m);
            assert!(m.contains("tandem_ddns_queue_depth 20"), "{m}");
            assert!(
                m.contains("tandem_ddns_server_up{server=\"127.0.0.1:53\"} 0"),
                "{m}"
            );

            named.restart();
            wait("all published without new events", 15, &d, &named, || {
                num(&d.status(), &["updates", "add"]) == 20
            });
            for i in 0..20u8 {
                assert_eq!(
                    ns.dig(&format!("h{i}.tdm.test."), "A"),
                    [format!("10.77.0.{}", 100 + i)]
                );
            }
            assert_eq!(ns.dig(&rev(119), "PTR"), ["h19.tdm.test."]);
            let v = d.status();
            assert_eq!(
                (v["queue_depth"].as_u64(), v["servers"][0]["state"].as_str()),
                (Some(0), Some("up"))
            );
            d.stop();
        },
    );
}

#[test]
fn a_wrong_tsig_key_is_counted_changes_nothing_and_is_retried() {
    in_netns(
        "a_wrong_tsig_key_is_counted_changes_nothing_and_is_retried",
        |ns| {
            let named = Named::start(ns);
            let good = named.key256.clone();
            let wrong_secret = TsigKey::new(good.name().clone(), good.algorithm(), vec![0x5a; 32]);
            let dir = tempfile::tempdir().unwrap();
            let d = Ddns::start(config(dir.path(), Some(wrong_secret)), takeover(false)).unwrap();
            d.sender()
                .send(granted(20, "keyed", &mac(20), Granter::Local))
                .unwrap();
            wait("BADSIG, retried", 10, &d, &named, || {
                num(&d.status(), &["failures", "badsig"]) >= 2
            });
            let v = d.status();
            assert_eq!(num(&v, &["updates", "add"]), 0);
            let e = entry(&v, addr(20)).unwrap();
            assert_eq!(e["state"], "adding");
            assert!(
                e["last_error"]
                    .as_str()
                    .unwrap()
                    .starts_with("badsig at 127.0.0.1:53"),
                "{e}"
            );
            assert!(e["attempts"].as_u64().unwrap() >= 2);
            assert_eq!(v["servers"][0]["state"], "up", "the server answered");
            assert!(ns.dig("keyed.tdm.test.", "ANY").is_empty());
            assert!(ns.dig(&rev(20), "PTR").is_empty());
            let mut m = String::new();
            d.render_metrics(&mut m);
            assert!(
                !m.contains("tandem_ddns_failures_total{reason=\"badsig\"} 0\n"),
                "{m}"
            );

            // A key named differently: BADKEY.
            let unknown =
                TsigKey::new(name("nobody-key"), good.algorithm(), good.secret().to_vec());
            d.reconfigure(config(dir.path(), Some(unknown)));
            wait("BADKEY", 10, &d, &named, || {
                num(&d.status(), &["failures", "badkey"]) >= 1
            });
            assert!(ns.dig("keyed.tdm.test.", "ANY").is_empty());

            // The right key (a reload): the pending add goes through with no new event.
            d.reconfigure(config(dir.path(), Some(good)));
            wait("published with the right key", 10, &d, &named, || {
                ns.dig("keyed.tdm.test.", "A") == ["10.77.0.20"]
            });
            assert_eq!(ns.dig(&rev(20), "PTR"), ["keyed.tdm.test."]);
            d.stop();
        },
    );
}

#[test]
fn pending_work_survives_a_restart_adds_and_removals() {
    in_netns("pending_work_survives_a_restart_adds_and_removals", |ns| {
        let mut named = Named::prepare(ns); // down
        let dir = tempfile::tempdir().unwrap();
        let key = named.key256.clone();
        let (a, b) = (mac(30), mac(31));

        let d = Ddns::start(config(dir.path(), Some(key.clone())), takeover(false)).unwrap();
        d.sender()
            .send(granted(30, "persist", &a, Granter::Local))
            .unwrap();
        wait("a failed attempt", 10, &d, &named, || {
            num(&d.status(), &["failures", "timeout"]) + num(&d.status(), &["failures", "network"])
                >= 1
        });
        d.stop();
        let saved = std::fs::read_to_string(dir.path().join(STATE_FILE)).expect("saved at stop");
        assert!(saved.contains("persist.tdm.test."), "{saved}");

        // A new process: the add resumes as soon as the server answers, with no new event.
        let d = Ddns::start(config(dir.path(), Some(key.clone())), takeover(false)).unwrap();
        let v = d.status();
        assert_eq!(
            entry(&v, addr(30)).map(|e| e["state"].clone()),
            Some("adding".into())
        );
        named.restart();
        wait("published after the restart", 10, &d, &named, || {
            ns.dig("persist.tdm.test.", "A") == ["10.77.0.30"]
        });
        assert_eq!(ns.dig(&rev(30), "PTR"), ["persist.tdm.test."]);

        // An end that could not be sent (server frozen) survives a restart too.
        d.sender()
            .send(granted(31, "gone", &b, Granter::Local))
            .unwrap();
        wait("published", 10, &d, &named, || {
            ns.dig("gone.tdm.test.", "A") == ["10.77.0.31"]
        });
        named.pause();
        let before = num(&d.status(), &["failures", "timeout"]);
        d.sender().send(Event::Ended { addr: addr(31) }).unwrap();
        wait("the removal failing", 10, &d, &named, || {
            num(&d.status(), &["failures", "timeout"]) > before
        });
        assert_eq!(entry(&d.status(), addr(31)).unwrap()["state"], "removing");
        d.stop();
        let d = Ddns::start(config(dir.path(), Some(key)), takeover(false)).unwrap();
        assert_eq!(entry(&d.status(), addr(31)).unwrap()["state"], "removing");
        named.resume();
        wait("removed after the restart", 10, &d, &named, || {
            ns.dig("gone.tdm.test.", "ANY").is_empty() && ns.dig(&rev(31), "PTR").is_empty()
        });
        // The other name is published and stays; nothing was repeated wrongly.
        assert_eq!(ns.dig("persist.tdm.test.", "A"), ["10.77.0.30"]);
        assert_eq!(ns.dig("persist.tdm.test.", "DHCID"), [dhcid("persist", &a)]);
        assert_eq!(entry(&d.status(), addr(30)).unwrap()["state"], "published");
        d.stop();
    });
}

#[test]
fn a_partners_name_is_removed_only_after_takeover() {
    in_netns("a_partners_name_is_removed_only_after_takeover", |ns| {
        let named = Named::start(ns);
        let (p1, p2) = (mac(40), mac(41));
        publish_as_partner(&named.key256, "p1", 40, &p1);
        publish_as_partner(&named.key256, "p2", 41, &p2);
        let dir = tempfile::tempdir().unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let d = Ddns::start(
            config(dir.path(), Some(named.key256.clone())),
            Arc::new(move |_: &str| f.load(Ordering::Relaxed)),
        )
        .unwrap();
        let tx = d.sender();
        tx.send(granted(40, "p1", &p1, Granter::Partner)).unwrap();
        tx.send(granted(41, "p2", &p2, Granter::Partner)).unwrap();
        wait("both recorded", 5, &d, &named, || {
            d.status()["entries_total"] == 2
        });
        assert_eq!(d.name_of(addr(40)).map(|n| n.0), Some("p1.tdm.test".into()));
        assert_eq!(entry(&d.status(), addr(40)).unwrap()["state"], "partner");

        // Not taken over: the partner removes it; this server forgets it.
        tx.send(Event::Ended { addr: addr(40) }).unwrap();
        wait("p1 forgotten", 5, &d, &named, || {
            entry(&d.status(), addr(40)).is_none()
        });
        std::thread::sleep(Duration::from_millis(300));
        let v = d.status();
        assert_eq!(
            (
                num(&v, &["updates", "add"]),
                num(&v, &["updates", "remove"])
            ),
            (0, 0)
        );
        assert_eq!(
            ns.dig("p1.tdm.test.", "A"),
            ["10.77.0.40"],
            "left to the partner"
        );
        assert_eq!(ns.dig(&rev(40), "PTR"), ["p1.tdm.test."]);

        // PARTNER-DOWN: this server acts for the partner's names.
        flag.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1200)); // takeover is asked once a second
        tx.send(Event::Ended { addr: addr(41) }).unwrap();
        wait("p2 removed", 10, &d, &named, || {
            ns.dig("p2.tdm.test.", "ANY").is_empty() && ns.dig(&rev(41), "PTR").is_empty()
        });
        assert!(ns.dig(&rev(41), "DHCID").is_empty());
        assert_eq!(num(&d.status(), &["updates", "remove"]), 1);
        assert_eq!(ns.dig("p1.tdm.test.", "A"), ["10.77.0.40"]);
        d.stop();
    });
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_updater_starts() {
    in_netns(
        "a_corrupt_state_file_is_set_aside_and_the_updater_starts",
        |ns| {
            let named = Named::start(ns);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join(STATE_FILE),
                b"{\"version\": 1, \"entries\": [tru",
            )
            .unwrap();
            let d = Ddns::start(
                config(dir.path(), Some(named.key256.clone())),
                takeover(false),
            )
            .unwrap();
            let aside: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("ddns.state.bad-"))
                .collect();
            assert_eq!(aside.len(), 1, "{aside:?}");
            assert_eq!(
                std::fs::read(dir.path().join(&aside[0])).unwrap(),
                b"{\"version\": 1, \"entries\": [tru",
                "kept as it was"
            );
            assert_eq!(d.status()["entries_total"], 0);
            d.sender()
                .send(granted(50, "fresh", &mac(50), Granter::Local))
                .unwrap();
            wait("published", 10, &d, &named, || {
                ns.dig("fresh.tdm.test.", "A") == ["10.77.0.50"]
            });
            d.stop();
            let v: Value =
                serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap())
                    .unwrap();
            assert_eq!(v["entries"][0]["want"]["fqdn"], "fresh.tdm.test.");
        },
    );
}
