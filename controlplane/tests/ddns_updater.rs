//! The DNS updater's own rules, without a DNS server: its servers are a loopback port nobody
//! listens on, so every update fails at once (ICMP port unreachable) and stays pending. What is
//! checked is what the updater keeps, persists, forgets and refuses: pending work survives a
//! restart, an unreadable state file is set aside, a partner's name is left to the partner
//! unless this server has taken over, and the queue bound holds.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem_controlplane::ddns::{
    Ddns, DdnsConfig, Event, Granter, Identity, ScopeDns, JOURNAL_FILE, STATE_FILE,
};
use tandem_dataplane::scope::Subnet;
use tandem_ddns::{ConflictMode, Name};

/// A loopback UDP port with nothing behind it (bound, then closed).
fn dead_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

fn config(dir: &std::path::Path, queue_max: usize) -> DdnsConfig {
    let mut c = DdnsConfig::new(
        vec![ScopeDns {
            scope: "lan".into(),
            subnet: Subnet {
                network: Ipv4Addr::new(10, 77, 0, 0),
                prefix: 24,
            },
            forward_zone: Name::from_ascii("tdm.test").unwrap(),
            reverse_zone: Name::from_ascii("0.77.10.in-addr.arpa").unwrap(),
            servers: vec![dead_port()],
            key: None,
            ttl: 300,
            conflict: ConflictMode::Rfc4703,
        }],
        dir.to_path_buf(),
    );
    c.queue_max = queue_max;
    c.retry_min = Duration::from_millis(200);
    c.retry_max = Duration::from_secs(1);
    c.timeout = Duration::from_millis(300);
    c
}

fn granted(last: u8, host: &str, by: Granter) -> Event {
    Event::Granted {
        addr: Ipv4Addr::new(10, 77, 0, last),
        fqdn: Name::from_ascii(&format!("{host}.tdm.test")).unwrap(),
        identity: Identity {
            htype: 1,
            hw: vec![0x52, 0x54, 0, 0, 0, last],
            client_id: None,
        },
        expires: (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600) as u32,
        forward: true,
        by,
    }
}

/// Poll `d`'s status until `f` holds; panic with the status otherwise.
fn wait_status(d: &Ddns, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let v = d.status();
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < end, "{what}: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn entry<'v>(v: &'v Value, addr: &str) -> Option<&'v Value> {
    v["entries"].as_array()?.iter().find(|e| e["addr"] == addr)
}

fn always(b: bool) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    Arc::new(move |_| b)
}

/// Copies the state files of `from` into a new directory, as a crash would leave them.
fn crash_copy(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for f in [STATE_FILE, JOURNAL_FILE] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.path().join(f)).unwrap();
        }
    }
    to
}

/// Lines in the journal of `dir` (its header included).
fn journal_lines(dir: &std::path::Path) -> usize {
    std::fs::read(dir.join(JOURNAL_FILE))
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn changes_reach_the_journal_without_a_stop_and_a_crash_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = Ddns::start(config(dir.path(), 100), always(false)).unwrap();
    d.sender()
        .send(granted(5, "first", Granter::Local))
        .unwrap();
    // The first save is a snapshot (there was none) with an empty journal.
    let end = Instant::now() + Duration::from_secs(5);
    while journal_lines(dir.path()) == 0 {
        assert!(Instant::now() < end, "no snapshot written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let snapshot = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
    // The first add is tried (no answer: DNS may hold its records), then its lease ends: a
    // removal is pending. Fifty more names wait to be added.
    wait_status(&d, "the first add tried", |v| {
        entry(v, "10.77.0.5").is_some_and(|e| !e["last_error"].is_null())
    });
    for i in 10..60u8 {
        d.sender()
            .send(granted(i, &format!("h{i}"), Granter::Local))
            .unwrap();
    }
    d.sender()
        .send(Event::Ended {
            addr: Ipv4Addr::new(10, 77, 0, 5),
        })
        .unwrap();
    let names = |v: &Value| -> Vec<(String, String, String)> {
        let mut l: Vec<_> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
                (s("addr"), s("fqdn"), s("state"))
            })
            .collect();
        l.sort();
        l
    };
    let live = names(&wait_status(&d, "51 entries, one removal", |v| {
        v["entries_total"] == 51 && entry(v, "10.77.0.5").is_some_and(|e| e["state"] == "removing")
    }));
    // Within a fraction of a second the changes are in the journal (a crash keeps them), and
    // the snapshot is not rewritten for them.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let copy = crash_copy(dir.path());
        let d2 = Ddns::start(config(copy.path(), 100), always(false)).unwrap();
        let v = d2.status();
        d2.stop();
        if names(&v) == live {
            break;
        }
        assert!(
            Instant::now() < end,
            "the journal never held the changes: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read(dir.path().join(STATE_FILE)).unwrap(),
        snapshot,
        "changes go to the journal, not into a rewritten snapshot"
    );
    assert!(journal_lines(dir.path()) > 1);
    d.stop();
    // The stop writes one snapshot and an empty journal.
    assert_eq!(journal_lines(dir.path()), 1);
    let d = Ddns::start(config(dir.path(), 100), always(false)).unwrap();
    assert_eq!(d.status()["entries_total"], 51);
    d.stop();
}

#[test]
fn pending_work_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = Ddns::start(config(dir.path(), 100), always(false)).unwrap();
    d.sender()
        .send(granted(5, "alpha", Granter::Local))
        .unwrap();
    let v = wait_status(&d, "a failed attempt", |v| {
        v["failures"]["network"].as_u64().unwrap_or(0)
            + v["failures"]["timeout"].as_u64().unwrap_or(0)
            >= 1
    });
    assert_eq!(v["queue_depth"], 1);
    let e = entry(&v, "10.77.0.5").expect("the entry is listed");
    assert_eq!(e["state"], "adding");
    assert!(
        e["last_error"].as_str().unwrap_or("").contains("127.0.0.1"),
        "{e}"
    );
    assert_eq!(
        d.name_of(Ipv4Addr::new(10, 77, 0, 5)).map(|n| n.1 & 0x8),
        Some(0x8),
        "pending"
    );
    d.stop();
    assert!(
        dir.path().join(STATE_FILE).is_file(),
        "state written at stop"
    );

    let d = Ddns::start(config(dir.path(), 100), always(false)).unwrap();
    let v = d.status();
    let e = entry(&v, "10.77.0.5").expect("the pending add came back");
    assert_eq!(
        (e["fqdn"].as_str(), e["state"].as_str()),
        (Some("alpha.tdm.test"), Some("adding"))
    );
    // Ended: the add was sent (no answer came), so DNS may hold the records: a removal is
    // queued (conditioned on the DHCID, harmless if nothing is there).
    d.sender()
        .send(Event::Ended {
            addr: Ipv4Addr::new(10, 77, 0, 5),
        })
        .unwrap();
    wait_status(&d, "a removal queued", |v| {
        entry(v, "10.77.0.5").is_some_and(|e| e["state"] == "removing") && v["queue_depth"] == 1
    });
    d.stop();
    // The pending removal is persisted too (a long retry delay keeps it waiting).
    let mut c = config(dir.path(), 100);
    c.retry_min = Duration::from_secs(60);
    let d = Ddns::start(c, always(false)).unwrap();
    wait_status(&d, "the removal still pending", |v| v["queue_depth"] == 1);
    d.stop();
}

#[test]
fn an_unreadable_state_file_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), b"{ not json").unwrap();
    let d = Ddns::start(config(dir.path(), 100), always(false)).unwrap();
    assert_eq!(d.status()["queue_depth"], 0);
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{STATE_FILE}.bad-")))
        .collect();
    assert_eq!(aside.len(), 1, "set aside once: {aside:?}");
    d.stop();
}

#[test]
fn a_partners_name_is_left_to_the_partner_until_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let took_over = Arc::new(AtomicBool::new(false));
    let t = took_over.clone();
    let d = Ddns::start(
        config(dir.path(), 100),
        Arc::new(move |_| t.load(Ordering::Relaxed)),
    )
    .unwrap();
    let tx = d.sender();
    tx.send(granted(7, "p1", Granter::Partner)).unwrap();
    tx.send(granted(8, "p2", Granter::Partner)).unwrap();
    wait_status(&d, "both known", |v| {
        entry(v, "10.77.0.7").is_some() && entry(v, "10.77.0.8").is_some()
    });
    assert_eq!(
        d.name_of(Ipv4Addr::new(10, 77, 0, 7)).unwrap().0,
        "p1.tdm.test"
    );
    // Not ours: the partner removes it; we forget it.
    tx.send(Event::Ended {
        addr: Ipv4Addr::new(10, 77, 0, 7),
    })
    .unwrap();
    let v = wait_status(&d, "p1 forgotten", |v| entry(v, "10.77.0.7").is_none());
    assert!(entry(&v, "10.77.0.8").is_some());
    assert_eq!(v["updates"]["remove"], 0);
    // After takeover (PARTNER-DOWN) the survivor acts for the partner's names. p2 was never
    // published here (the updates fail), so its end needs no removal either: it is dropped;
    // a renewal through this server makes it ours.
    took_over.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1100)); // the updater polls takeover every second
    tx.send(Event::Renewed {
        addr: Ipv4Addr::new(10, 77, 0, 8),
        expires: 4_000_000_000,
        by: Granter::Local,
    })
    .unwrap();
    let v = wait_status(&d, "p2 renewed through us", |v| {
        entry(v, "10.77.0.8").is_some_and(|e| e["granted_by"] == "local")
    });
    assert_eq!(entry(&v, "10.77.0.8").unwrap()["expires"], 4_000_000_000u64);
    d.stop();
}

#[test]
fn the_queue_bound_holds_and_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = Ddns::start(config(dir.path(), 2), always(true)).unwrap();
    let tx = d.sender();
    for i in 0..5u8 {
        tx.send(granted(10 + i, &format!("h{i}"), Granter::Local))
            .unwrap();
    }
    let v = wait_status(&d, "three dropped", |v| v["dropped"] == 3);
    assert_eq!(v["queue_depth"], 2);
    d.note_dropped(4);
    wait_status(&d, "channel drops added", |v| v["dropped"] == 7);
    let mut m = String::new();
    d.render_metrics(&mut m);
    assert!(
        m.contains("tandem_ddns_dropped_total{reason=\"queue_full\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("tandem_ddns_dropped_total{reason=\"channel_full\"} 4"),
        "{m}"
    );
    assert!(m.contains("tandem_ddns_queue_depth 2"), "{m}");
    d.stop();
}

#[test]
fn the_partner_echoing_our_lease_does_not_take_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = Ddns::start(config(dir.path(), 100), always(false)).unwrap();
    let tx = d.sender();
    let ev = granted(20, "ours", Granter::Local);
    let Event::Granted { expires, .. } = ev.clone() else {
        unreachable!()
    };
    tx.send(ev).unwrap();
    let addr = Ipv4Addr::new(10, 77, 0, 20);
    // Recovery or UPDREQALL: the partner sends our own binding back, same expiry.
    tx.send(Event::Renewed {
        addr,
        expires,
        by: Granter::Partner,
    })
    .unwrap();
    let v = wait_status(&d, "known", |v| entry(v, "10.77.0.20").is_some());
    std::thread::sleep(Duration::from_millis(300));
    let v2 = d.status();
    assert_eq!(
        entry(&v2, "10.77.0.20").unwrap()["granted_by"],
        "local",
        "{v:#}"
    );
    // The client renewed through the partner: now the partner's to update and remove.
    tx.send(Event::Renewed {
        addr,
        expires: expires + 600,
        by: Granter::Partner,
    })
    .unwrap();
    wait_status(&d, "the partner's now", |v| {
        entry(v, "10.77.0.20").is_some_and(|e| e["granted_by"] == "partner")
    });
    d.stop();
}

/// (comm, nice) of every thread of this process.
fn thread_nices() -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(t.unwrap().path().join("stat")) else {
            continue; // ended meanwhile
        };
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let comm = stat[open + 1..close].to_string();
        // Fields after the name start at 3 (state); nice is field 19.
        let nice = stat[close + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        out.push((comm, nice));
    }
    out
}

#[test]
fn updater_threads_run_nicer_than_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let base: i32 = {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let close = stat.rfind(')').unwrap();
        stat[close + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    };
    let d = Ddns::start(config(dir.path(), 100), always(false)).unwrap();
    let want = (base + tandem_controlplane::ddns::BACKGROUND_NICE).min(19);
    let table_want = (base + tandem_controlplane::ddns::TABLE_NICE).min(19);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let t = thread_nices();
        let dns: Vec<i32> = t
            .iter()
            .filter(|(c, _)| c == "tandem-ddns-dns")
            .map(|x| x.1)
            .collect();
        let save: Vec<i32> = t
            .iter()
            .filter(|(c, _)| c == "tandem-ddns-sav")
            .map(|x| x.1)
            .collect();
        let table: Vec<i32> = t
            .iter()
            .filter(|(c, _)| c == "tandem-ddns")
            .map(|x| x.1)
            .collect();
        // Other tests of this binary run updaters of their own at the same time.
        if dns.len() >= 4
            && dns.iter().chain(&save).all(|n| *n == want)
            && !save.is_empty()
            && !table.is_empty()
            && table.iter().all(|n| *n == table_want)
        {
            break;
        }
        assert!(Instant::now() < end, "threads not at nice {want}: {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.stop();
}
