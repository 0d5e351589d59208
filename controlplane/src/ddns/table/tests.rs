//! The table's rules with a made-up clock and made-up DNS results.

use std::path::PathBuf;

use tandem_dataplane::scope::Subnet;
use tandem_ddns::ConflictMode;

use super::*;

const T0: Ms = 1_800_000_000_000;
const S1: &str = "10.77.0.53:53";
const S2: &str = "10.77.0.54:53";

fn cfg(servers: &[&str], queue_max: usize) -> DdnsConfig {
    let mut c = DdnsConfig::new(
        vec![ScopeDns {
            scope: "lan".into(),
            subnet: Subnet {
                network: Ipv4Addr::new(10, 77, 0, 0),
                prefix: 16,
            },
            forward_zone: Name::from_ascii("tdm.test").unwrap(),
            reverse_zone: Name::from_ascii("77.10.in-addr.arpa").unwrap(),
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            key: None,
            ttl: 300,
            conflict: ConflictMode::Rfc4703,
        }],
        PathBuf::from("/nonexistent"),
    );
    c.queue_max = queue_max;
    c.retry_min = Duration::from_secs(1);
    c.retry_max = Duration::from_secs(4);
    c
}

fn table() -> Table {
    Table::new(&cfg(&[S1], 100))
}

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, last)
}

fn id(last: u8) -> Identity {
    Identity {
        htype: 1,
        hw: vec![0x52, 0x54, 0, 0, 0, last],
        client_id: None,
    }
}

fn granted(last: u8, host: &str, who: u8, by: Granter) -> Event {
    Event::Granted {
        addr: addr(last),
        fqdn: Name::from_ascii(&format!("{host}.tdm.test")).unwrap(),
        identity: id(who),
        expires: (T0 / 1000) as u32 + 3600,
        forward: true,
        by,
    }
}

fn never(_: &str) -> bool {
    false
}

fn always(_: &str) -> bool {
    true
}

fn result(job: Job, outcome: JobOutcome) -> JobResult {
    let answered =
        !matches!(&outcome, JobOutcome::Failed { reason, .. } if reason.is_unreachable());
    let servers = job
        .servers
        .iter()
        .map(|s| {
            (
                *s,
                if answered {
                    Ok(())
                } else {
                    Err((Reason::Timeout, "no answer".to_string()))
                },
            )
        })
        .collect();
    let history = match (&outcome, job.op) {
        (JobOutcome::Completed, Op::Remove) => vec![
            (Step::ForwardRemoveAddress, Rcode::NOERROR),
            (Step::ReverseRemove, Rcode::NOERROR),
        ],
        _ => Vec::new(),
    };
    JobResult {
        touched: !matches!(
            &outcome,
            JobOutcome::Failed {
                reason: Reason::Network,
                ..
            }
        ),
        job,
        outcome,
        servers,
        history,
    }
}

fn failed(reason: Reason) -> JobOutcome {
    JobOutcome::Failed {
        reason,
        server: Some(S1.parse().unwrap()),
        text: "test".into(),
    }
}

/// Runs the next job at `now` with `outcome`; returns its op and name.
fn step(t: &mut Table, now: Ms, outcome: JobOutcome) -> (Op, String) {
    let job = t.poll_job(now).expect("a job is due");
    let what = (job.op, show(&job.record.fqdn));
    t.handle_result(now, result(job, outcome));
    what
}

#[test]
fn grant_publishes_renewal_is_quiet_end_removes() {
    let mut t = table();
    t.handle_event(T0, granted(5, "host", 5, Granter::Local), &never);
    assert_eq!(t.pending(), 1);
    assert_eq!(t.name_flags(addr(5)), Some(("host.tdm.test".into(), 0x8)));
    assert_eq!(
        step(&mut t, T0, JobOutcome::Completed),
        (Op::Add, "host.tdm.test".into())
    );
    assert_eq!(t.name_flags(addr(5)), Some(("host.tdm.test".into(), 0x6)));
    assert_eq!((t.pending(), t.stats().added), (0, 1));
    // The same name and client again: expiry only, no DNS work.
    let mut again = granted(5, "HOST", 5, Granter::Local);
    if let Event::Granted { expires, .. } = &mut again {
        *expires += 600;
    }
    t.handle_event(T0 + 10, again, &never);
    assert!(t.poll_job(T0 + 10).is_none());
    assert_eq!(t.entries[&addr(5)].expires, (T0 / 1000) as u32 + 4200);
    t.handle_event(T0 + 20, Event::Ended { addr: addr(5) }, &never);
    assert_eq!(t.name_flags(addr(5)), None, "no name while it goes");
    assert_eq!(step(&mut t, T0 + 20, JobOutcome::Completed).0, Op::Remove);
    assert_eq!((t.len(), t.pending(), t.stats().removed), (0, 0, 1));
    assert_eq!(t.scope_counts()[0].1, Counts::default());
}

#[test]
fn a_new_name_replaces_the_old_one_first() {
    let mut t = table();
    t.handle_event(T0, granted(5, "old", 5, Granter::Local), &never);
    step(&mut t, T0, JobOutcome::Completed);
    t.handle_event(T0, granted(5, "new", 5, Granter::Local), &never);
    let v = t.status(T0, 10);
    assert_eq!(v["entries"][0]["state"], "replacing");
    assert_eq!(v["entries"][0]["pending"], "replace");
    assert_eq!(
        step(&mut t, T0, JobOutcome::Completed),
        (Op::Remove, "old.tdm.test".into())
    );
    assert_eq!(
        step(&mut t, T0, JobOutcome::Completed),
        (Op::Add, "new.tdm.test".into())
    );
    assert!(t.poll_job(T0).is_none());
    assert_eq!(t.name_flags(addr(5)).unwrap(), ("new.tdm.test".into(), 0x6));
    // Another client on the address with the same name: a replace too (the DHCID differs).
    t.handle_event(T0, granted(5, "new", 9, Granter::Local), &never);
    assert_eq!(step(&mut t, T0, JobOutcome::Completed).0, Op::Remove);
    assert_eq!(step(&mut t, T0, JobOutcome::Completed).0, Op::Add);
}

#[test]
fn a_conflict_is_final_for_that_name() {
    let mut t = table();
    t.handle_event(T0, granted(6, "taken", 6, Granter::Local), &never);
    step(&mut t, T0, JobOutcome::Conflict);
    assert_eq!(t.stats().conflicts, 1);
    assert!(t.poll_job(T0 + 3_600_000).is_none(), "never retried");
    let v = t.status(T0, 10);
    assert_eq!(v["entries"][0]["state"], "conflict");
    assert_eq!(v["entries"][0]["published"], "conflict");
    t.handle_event(T0, granted(6, "taken", 6, Granter::Local), &never);
    assert!(t.poll_job(T0).is_none(), "a renewal does not retry it");
    // Its end: nothing of ours to remove.
    t.handle_event(T0, Event::Ended { addr: addr(6) }, &never);
    assert!(t.poll_job(T0).is_none());
    assert_eq!(t.len(), 0);
    // A new lease later starts afresh.
    t.handle_event(T0, granted(6, "taken", 6, Granter::Local), &never);
    assert_eq!(t.poll_job(T0).unwrap().op, Op::Add);
}

#[test]
fn a_partners_names_are_its_own_until_takeover() {
    let mut t = table();
    t.handle_event(T0, granted(7, "p1", 7, Granter::Partner), &never);
    t.handle_event(T0, granted(8, "p2", 8, Granter::Partner), &never);
    assert!(t.poll_job(T0).is_none(), "the partner publishes them");
    assert_eq!(t.pending(), 0);
    assert_eq!(t.name_flags(addr(7)).unwrap().0, "p1.tdm.test");
    t.handle_event(T0, Event::Ended { addr: addr(7) }, &never);
    assert!(t.poll_job(T0).is_none());
    assert!(t.name_flags(addr(7)).is_none(), "forgotten");
    t.handle_event(T0, Event::Ended { addr: addr(8) }, &always);
    let job = t.poll_job(T0).expect("taken over: ours to remove");
    assert_eq!(
        (job.op, show(&job.record.fqdn)),
        (Op::Remove, "p2.tdm.test".into())
    );
}

#[test]
fn the_partner_echoing_our_lease_keeps_it_ours() {
    let mut t = table();
    t.handle_event(T0, granted(9, "ours", 9, Granter::Local), &never);
    step(&mut t, T0, JobOutcome::Completed);
    let exp = t.entries[&addr(9)].expires;
    t.handle_event(
        T0,
        Event::Renewed {
            addr: addr(9),
            expires: exp,
            by: Granter::Partner,
        },
        &never,
    );
    t.handle_event(T0, granted(9, "ours", 9, Granter::Partner), &never);
    assert_eq!(t.entries[&addr(9)].by, Granter::Local);
    t.handle_event(
        T0,
        Event::Renewed {
            addr: addr(9),
            expires: exp + 60,
            by: Granter::Partner,
        },
        &never,
    );
    assert_eq!(
        t.entries[&addr(9)].by,
        Granter::Partner,
        "renewed through the partner"
    );
    assert!(t.poll_job(T0).is_none(), "still published, nothing to do");
    t.handle_event(T0, Event::Ended { addr: addr(9) }, &never);
    assert!(t.poll_job(T0).is_none(), "the partner removes it");
    assert_eq!(t.len(), 0);
}

/// At `at` the one entry's lease expires: its records are removed and the entry goes.
fn expires_and_goes(t: &mut Table, at: Ms) {
    t.handle_timeout(at, &never);
    assert_eq!(t.stats().expired, 1);
    assert_eq!(step(t, at, JobOutcome::Completed).0, Op::Remove);
    assert_eq!(t.len(), 0);
}

#[test]
fn the_expiry_backstop_ends_the_lease() {
    let mut t = table();
    let mut ev = granted(10, "short", 10, Granter::Local);
    if let Event::Granted { expires, .. } = &mut ev {
        *expires = (T0 / 1000) as u32 + 2;
    }
    t.handle_event(T0, ev, &never);
    step(&mut t, T0, JobOutcome::Completed);
    t.handle_timeout(T0 + 1_000, &never);
    assert!(t.poll_job(T0 + 1_000).is_none());
    assert_eq!(t.poll_timeout(), Some(T0 + 2_000));
    expires_and_goes(&mut t, T0 + 2_000);
    // A partner's lease that expires is forgotten (no takeover).
    let mut ev = granted(11, "theirs", 11, Granter::Partner);
    if let Event::Granted { expires, .. } = &mut ev {
        *expires = (T0 / 1000) as u32 + 2;
    }
    t.handle_event(T0, ev, &never);
    t.handle_timeout(T0 + 2_000, &never);
    assert!(t.poll_job(T0 + 2_000).is_none());
    assert_eq!(t.len(), 0);
}

#[test]
fn a_renewal_moves_the_expiry_backstop_and_nothing_else() {
    let mut t = table();
    let end = (T0 / 1000) as u32 + 2;
    let mut ev = granted(12, "renewing", 12, Granter::Local);
    if let Event::Granted { expires, .. } = &mut ev {
        *expires = end;
    }
    t.handle_event(T0, ev, &never);
    step(&mut t, T0, JobOutcome::Completed);
    t.take_changed();
    t.encode(1);
    assert_eq!(t.poll_timeout(), Some(T0 + 2_000));
    // Renewed twice (by the ACK's grant, then by the commit), each time for 60 s more.
    t.handle_event(
        T0 + 1_000,
        granted(12, "renewing", 12, Granter::Local),
        &never,
    );
    t.handle_event(
        T0 + 1_000,
        Event::Renewed {
            addr: addr(12),
            expires: end + 60,
            by: Granter::Local,
        },
        &never,
    );
    assert_eq!(t.poll_timeout(), Some(T0 + 62_000), "the backstop moved");
    assert!(
        t.take_changed().is_empty(),
        "the failover name and flags did not change"
    );
    assert!(t.dirty() && !t.dirty_work());
    t.handle_timeout(T0 + 2_000, &never);
    assert_eq!(t.stats().expired, 0, "not at the old end");
    assert_eq!(t.pending(), 0);
    expires_and_goes(&mut t, T0 + 62_000);
}

#[test]
fn the_queue_bound_drops_grants_not_ends() {
    let mut t = Table::new(&cfg(&[S1], 2));
    for i in 0..5 {
        t.handle_event(
            T0,
            granted(20 + i, &format!("h{i}"), 20 + i, Granter::Local),
            &never,
        );
    }
    assert_eq!(
        (t.pending(), t.stats().dropped_queue_full, t.len()),
        (2, 3, 2)
    );
    // Partner names carry no work: not bounded.
    t.handle_event(T0, granted(30, "p", 30, Granter::Partner), &never);
    assert_eq!(t.len(), 3);
    // Publish one; then its end is taken even with a full queue.
    step(&mut t, T0, JobOutcome::Completed);
    t.handle_event(T0, granted(40, "x", 40, Granter::Local), &never);
    assert_eq!(t.pending(), 2);
    t.handle_event(T0, Event::Ended { addr: addr(20) }, &never);
    assert_eq!(t.pending(), 3, "ends are never dropped");
}

#[test]
fn failures_back_off_and_are_counted() {
    let mut t = table();
    t.handle_event(T0, granted(12, "h", 12, Granter::Local), &never);
    let mut now = T0;
    let mut delays = Vec::new();
    for reason in [
        Reason::Servfail,
        Reason::Refused,
        Reason::Badsig,
        Reason::Badkey,
    ] {
        let job = t.poll_job(now).expect("due");
        t.handle_result(now, result(job, failed(reason)));
        let next = t.entries[&addr(12)].next_try;
        delays.push(next - now);
        assert!(t.poll_job(next - 1).is_none());
        now = next;
    }
    assert_eq!(delays, [1000, 2000, 4000, 4000]);
    let s = t.stats();
    assert_eq!(s.retries, 4);
    for r in [
        Reason::Servfail,
        Reason::Refused,
        Reason::Badsig,
        Reason::Badkey,
    ] {
        assert_eq!(s.failures[r as usize], 1, "{r:?}");
    }
    assert_eq!(t.entries[&addr(12)].attempts, 4);
    assert!(t.entries[&addr(12)]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("badkey at 10.77.0.53:53"));
    step(&mut t, now, JobOutcome::Completed);
    assert_eq!(t.entries[&addr(12)].attempts, 0);
}

#[test]
fn a_dead_server_is_probed_by_one_update_while_the_others_wait() {
    let mut t = table();
    t.handle_event(T0, granted(13, "a", 13, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    t.handle_result(T0, result(job, failed(Reason::Timeout)));
    assert!(!t.server_states()[0].1, "marked down");
    // Another name now: waits for the server without an attempt.
    t.handle_event(T0 + 10, granted(14, "b", 14, Granter::Local), &never);
    assert!(t.poll_job(T0 + 10).is_none());
    assert_eq!(t.entries[&addr(14)].attempts, 0);
    // At the server's next try one update probes it; the other still waits.
    let probe = t.poll_job(T0 + 1_000).expect("the probe");
    assert_eq!(probe.probes, vec![S1.parse::<SocketAddr>().unwrap()]);
    assert!(t.poll_job(T0 + 1_000).is_none());
    // The probe fails: the server's backoff doubles.
    t.handle_result(T0 + 1_000, result(probe, failed(Reason::Timeout)));
    assert!(t.poll_job(T0 + 2_999).is_none());
    let probe = t.poll_job(T0 + 3_000).expect("second probe");
    t.handle_result(T0 + 3_000, result(probe, JobOutcome::Completed));
    assert!(t.server_states()[0].1);
    // Back up: the waiting one goes at once.
    let job = t.poll_job(T0 + 3_000).expect("woken");
    assert_eq!(job.addr, addr(14));
    assert_eq!(t.stats().failures[Reason::Timeout as usize], 2);
}

#[test]
fn servers_are_tried_in_order_skipping_dead_ones() {
    let mut t = Table::new(&cfg(&[S1, S2], 100));
    t.handle_event(T0, granted(15, "a", 15, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    assert_eq!(job.servers.len(), 2);
    // S1 did not answer, S2 did.
    let r = JobResult {
        servers: vec![
            (S1.parse().unwrap(), Err((Reason::Timeout, "x".into()))),
            (S2.parse().unwrap(), Ok(())),
        ],
        ..result(job, JobOutcome::Completed)
    };
    t.handle_result(T0, r);
    t.handle_event(T0, granted(16, "b", 16, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    assert_eq!(job.servers, vec![S2.parse::<SocketAddr>().unwrap()]);
    assert!(job.probes.is_empty());
}

#[test]
fn an_unanswered_add_is_removed_at_the_end_an_unsent_one_is_not() {
    let mut t = table();
    // Timed out: it may have been applied.
    t.handle_event(T0, granted(17, "maybe", 17, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    t.handle_result(T0, result(job, failed(Reason::Timeout)));
    t.handle_event(T0, Event::Ended { addr: addr(17) }, &never);
    assert_eq!(t.status(T0, 10)["entries"][0]["state"], "removing");
    // Refused before anything was applied (network error at send): nothing to remove.
    let mut t = table();
    t.handle_event(T0, granted(18, "never", 18, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    t.handle_result(T0, result(job, failed(Reason::Network)));
    t.handle_event(T0, Event::Ended { addr: addr(18) }, &never);
    assert_eq!(t.len(), 0);
}

#[test]
fn an_end_during_the_add_removes_after_it() {
    let mut t = table();
    t.handle_event(T0, granted(19, "quick", 19, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    t.handle_event(T0, Event::Ended { addr: addr(19) }, &never);
    assert!(t.poll_job(T0).is_none(), "one update per address at a time");
    t.handle_result(T0, result(job, JobOutcome::Completed));
    assert_eq!(step(&mut t, T0, JobOutcome::Completed).0, Op::Remove);
    assert_eq!(t.len(), 0);
}

#[test]
fn names_outside_the_zones_or_scopes_are_ignored() {
    let mut t = table();
    t.handle_event(
        T0,
        Event::Granted {
            addr: addr(1),
            fqdn: Name::from_ascii("host.elsewhere.test").unwrap(),
            identity: id(1),
            expires: 0,
            forward: true,
            by: Granter::Local,
        },
        &never,
    );
    t.handle_event(
        T0,
        Event::Granted {
            addr: Ipv4Addr::new(192, 0, 2, 1),
            fqdn: Name::from_ascii("host.tdm.test").unwrap(),
            identity: id(1),
            expires: 0,
            forward: true,
            by: Granter::Local,
        },
        &never,
    );
    t.handle_event(T0, Event::Ended { addr: addr(99) }, &always);
    t.handle_event(
        T0,
        Event::Renewed {
            addr: addr(99),
            expires: 5,
            by: Granter::Local,
        },
        &always,
    );
    assert_eq!(t.len(), 0);
    assert_eq!(
        (t.stats().ignored_not_in_zone, t.stats().ignored_no_scope),
        (1, 1)
    );
}

#[test]
fn ptr_only_names_flag_the_client_update() {
    let mut t = table();
    let mut ev = granted(21, "self", 21, Granter::Local);
    if let Event::Granted { forward, .. } = &mut ev {
        *forward = false;
    }
    t.handle_event(T0, ev, &never);
    step(&mut t, T0, JobOutcome::Completed);
    assert_eq!(t.name_flags(addr(21)).unwrap().1, 0x1 | 0x4);
    assert_eq!(t.status(T0, 10)["entries"][0]["published"], "ptr");
}

#[test]
fn state_round_trip_resumes_pending_work_only() {
    use super::super::state::{encode_changes, load, Writer};
    let mut t = table();
    t.handle_event(T0, granted(22, "done", 22, Granter::Local), &never);
    step(&mut t, T0, JobOutcome::Completed);
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::default();
    w.snapshot(dir.path(), 1, &t.encode(1)).unwrap();
    assert!(
        t.take_changes(true).is_empty(),
        "the snapshot holds everything"
    );
    // The rest reaches the disk as journal lines only.
    t.handle_event(T0, granted(23, "todo", 23, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    t.handle_result(T0, result(job, failed(Reason::Timeout)));
    t.handle_event(T0, granted(24, "theirs", 24, Granter::Partner), &never);
    let changes = t.take_changes(false);
    assert_eq!(
        changes.len(),
        2,
        "one line per changed address: {changes:?}"
    );
    assert!(!t.dirty_work());
    w.append(&encode_changes(&changes)).unwrap();

    let mut t2 = table();
    let loaded = load(dir.path(), 1);
    assert_eq!((loaded.generation, loaded.replayed), (1, 2));
    t2.load(loaded.entries, T0 + 5_000);
    assert_eq!((t2.len(), t2.pending()), (3, 1));
    assert_eq!(t2.name_flags(addr(22)).unwrap().1, 0x6);
    assert_eq!(t2.entries[&addr(23)].attempts, 1);
    assert_eq!(t2.entries[&addr(24)].by, Granter::Partner);
    let job = t2.poll_job(T0 + 5_000).expect("the pending add resumes");
    assert_eq!((job.addr, job.op), (addr(23), Op::Add));
    assert!(t2.poll_job(T0 + 5_000).is_none());
}

#[test]
fn reconfigure_drops_names_outside_the_new_scopes() {
    let mut t = table();
    t.handle_event(T0, granted(25, "a", 25, Granter::Local), &never);
    step(&mut t, T0, JobOutcome::Completed);
    let mut c = cfg(&[S2], 100);
    c.scopes[0].subnet = Subnet {
        network: Ipv4Addr::new(10, 77, 1, 0),
        prefix: 24,
    };
    t.reconfigure(&c, T0);
    assert_eq!(t.len(), 0);
    assert_eq!(t.server_states(), vec![(S2.parse().unwrap(), true)]);
}

#[test]
fn status_lists_pending_first_and_caps_the_list() {
    let mut t = table();
    for i in 0..5 {
        t.handle_event(
            T0,
            granted(30 + i, &format!("h{i}"), 30 + i, Granter::Local),
            &never,
        );
        step(&mut t, T0, JobOutcome::Completed);
    }
    t.handle_event(T0 + 1000, granted(50, "late", 50, Granter::Local), &never);
    let v = t.status(T0 + 4000, 3);
    assert_eq!(v["entries"].as_array().unwrap().len(), 3);
    assert_eq!(v["entries_total"], 6);
    assert_eq!(v["entries_truncated"], true);
    assert_eq!(v["entries"][0]["fqdn"], "late.tdm.test");
    assert_eq!(v["oldest_pending"]["fqdn"], "late.tdm.test");
    assert_eq!(v["oldest_pending"]["waiting_secs"], 3);
    assert_eq!(v["scopes"][0]["published"], 5);
    assert_eq!(v["scopes"][0]["pending"], 1);
}

#[test]
fn a_grant_after_a_partners_end_during_an_update_is_kept() {
    let mut t = table();
    t.handle_event(T0, granted(60, "x", 60, Granter::Local), &never);
    let job = t.poll_job(T0).unwrap();
    // Renewed through the partner, then ended: the partner's to remove; forgotten once the
    // update in flight is back...
    let exp = t.entries[&addr(60)].expires;
    t.handle_event(
        T0,
        Event::Renewed {
            addr: addr(60),
            expires: exp + 1,
            by: Granter::Partner,
        },
        &never,
    );
    t.handle_event(T0, Event::Ended { addr: addr(60) }, &never);
    // ...unless the address is granted again meanwhile.
    t.handle_event(T0, granted(60, "y", 61, Granter::Local), &never);
    t.handle_result(T0, result(job, JobOutcome::Completed));
    let job = t.poll_job(T0).expect("the old name goes first");
    assert_eq!(
        (job.op, show(&job.record.fqdn)),
        (Op::Remove, "x.tdm.test".into())
    );
    t.handle_result(T0, result(job, JobOutcome::Completed));
    assert_eq!(
        step(&mut t, T0, JobOutcome::Completed),
        (Op::Add, "y.tdm.test".into())
    );
}

#[test]
fn a_renewal_waits_for_the_slow_save_work_goes_at_once() {
    let mut t = table();
    t.handle_event(T0, granted(30, "a", 30, Granter::Local), &never);
    step(&mut t, T0, JobOutcome::Completed);
    t.encode(1);
    assert!(!t.dirty());
    let exp = t.entries[&addr(30)].expires;
    t.handle_event(
        T0,
        Event::Renewed {
            addr: addr(30),
            expires: exp + 600,
            by: Granter::Local,
        },
        &never,
    );
    assert!(t.dirty() && !t.dirty_work(), "an expiry moved: no work");
    assert!(t.take_changes(false).is_empty(), "not in the fast save");
    assert!(t.dirty(), "still to be saved");
    t.handle_event(T0, granted(31, "b", 31, Granter::Local), &never);
    let fast = t.take_changes(false);
    assert!(
        matches!(&fast[..], [Change::Put(s)] if s.addr == addr(31)),
        "{fast:?}"
    );
    let slow = t.take_changes(true);
    assert!(
        matches!(&slow[..], [Change::Put(s)] if s.addr == addr(30) && s.expires == exp + 600),
        "{slow:?}"
    );
    assert!(!t.dirty());
    // An entry gone since is saved as a deletion.
    t.forget(addr(31), T0);
    assert_eq!(t.take_changes(false), vec![Change::Del(addr(31))]);
}
