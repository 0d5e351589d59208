//! Deterministic simulation of a failover pair: the safety invariant under faults.
//!
//! - `TANDEM_SIM_SEEDS=N`: how many random seeds `random_scenarios` runs (default below).
//! - `TANDEM_SIM_SEED=N`: run only that seed, with a trace printed on failure
//!   (`TANDEM_SIM_TRACE=all` prints the trace as it goes).

mod sim;

use sim::{run_seed, Failure};

fn report(seed: u64, f: &Failure) -> String {
    let mut s = format!(
        "seed {seed} FAILED: {}\nreplay with: TANDEM_SIM_SEED={seed} cargo test -p tandem-controlplane --test failover_sim random_scenarios -- --nocapture\n",
        f.what
    );
    for l in &f.trace {
        s.push_str(l);
        s.push('\n');
    }
    s
}

#[test]
fn random_scenarios() {
    if let Ok(seed) = std::env::var("TANDEM_SIM_SEED") {
        let seed: u64 = seed.parse().expect("TANDEM_SIM_SEED must be a number");
        match run_seed(seed, true) {
            Ok(w) => println!("seed {seed} ok: {}", w.summary()),
            Err(e) => panic!("{}", report(seed, &e.1)),
        }
        return;
    }
    let n: u64 = std::env::var("TANDEM_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let threads = 2u64;
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut seed = k;
                while seed < n {
                    if let Err(e) = run_seed(seed, false) {
                        failures.push((seed, e.1.what));
                    }
                    seed += threads;
                }
                failures
            })
        })
        .collect();
    let mut failures: Vec<(u64, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("simulation thread panicked"))
        .collect();
    failures.sort();
    if !failures.is_empty() {
        let mut msg = format!("{} of {n} seeds failed:\n", failures.len());
        for (s, w) in failures.iter().take(20) {
            msg.push_str(&format!("  seed {s}: {w}\n"));
        }
        msg.push_str("replay one with TANDEM_SIM_SEED=<seed>\n");
        panic!("{msg}");
    }
}

// ----- pinned scenarios -----------------------------------------------------------------------

use sim::{Fault, Params, World};
use tandem_controlplane::failover::peer::{Mode, PartnerDownCause, PeerState, Role};
use tandem_dataplane::binding::BindingState;

fn ok(r: Result<(), Failure>, seed: u64) {
    if let Err(f) = r {
        panic!("{}", report(seed, &f));
    }
}

fn visited(w: &World, i: usize, s: PeerState) -> bool {
    w.stats.visited[i].contains(&s)
}

fn converge(w: &mut World, seed: u64) {
    let limit = u64::from(w.p.mclt) * 6 + 1800;
    ok(w.heal_and_converge(limit), seed);
    if let Err(e) = w.views_agree() {
        panic!("views disagree: {e}");
    }
}

#[test]
fn new_pair_bring_up() {
    let mut w = World::new(Params::basic(), 1);
    ok(w.run_for(5), 1);
    // Both fresh: RECOVER, no MCLT wait, NORMAL within a few seconds.
    for i in 0..2 {
        assert_eq!(w.state(i), Some(PeerState::Normal));
        assert!(visited(&w, i, PeerState::Recover));
        assert!(!visited(&w, i, PeerState::RecoverWait));
    }
    ok(w.run_for(600), 1);
    // Pool balancing gave the secondary its half of the free addresses.
    let total = 40;
    let backup = w.count_state(1, BindingState::Backup);
    let leased = w.count_state(1, BindingState::Active);
    assert!(
        backup + leased >= total / 4,
        "secondary holds {backup} BACKUP"
    );
    // Both answered their own hash buckets.
    assert!(w.stats.allocations_by(0) > 0 && w.stats.allocations_by(1) > 0);
    assert!(w.bound_clients() >= 20, "{} bound", w.bound_clients());
    converge(&mut w, 1);
}

fn crash_and_recover(lose_db: bool, seed: u64) -> World {
    let mut p = Params::basic();
    p.mclt = 120;
    p.lease = 600;
    let mut w = World::new(p, seed);
    ok(w.run_for(600), seed);
    w.schedule(
        650,
        Fault::Crash {
            server: 1,
            lose_db,
            secs: 400,
        },
    );
    ok(w.run_for(300), seed);
    assert_eq!(w.state(1), None);
    assert_eq!(w.state(0), Some(PeerState::CommunicationsInterrupted));
    // Alone, the primary serves everyone (its own pool, renewals for MCLT).
    let before = w.stats.allocations_by(0) + w.stats.renewals_by(0);
    ok(w.run_for(100), seed);
    assert!(w.stats.allocations_by(0) + w.stats.renewals_by(0) > before);
    ok(w.run_for(900), seed);
    converge(&mut w, seed);
    w
}

#[test]
fn partner_crash_and_recovery_with_its_database() {
    let w = crash_and_recover(false, 2);
    assert!(visited(&w, 1, PeerState::Startup));
    assert!(
        !visited(&w, 1, PeerState::RecoverWait),
        "{:?}",
        w.stats.visited[1]
    );
    assert!(!visited(&w, 0, PeerState::PartnerDown));
}

#[test]
fn partner_crash_and_recovery_without_its_database() {
    let w = crash_and_recover(true, 3);
    // The amnesic secondary fetched everything, waited MCLT, then came back.
    let v = &w.stats.visited[1];
    let pos = |s| v.iter().rposition(|x| *x == s).expect("visited");
    assert!(pos(PeerState::Recover) < pos(PeerState::RecoverWait));
    assert!(pos(PeerState::RecoverWait) < pos(PeerState::RecoverDone));
    // Its partner served everyone in PARTNER-DOWN meanwhile.
    assert!(visited(&w, 0, PeerState::PartnerDown));
    assert!(w
        .stats
        .grants
        .iter()
        .any(|g| g.server == 0 && g.state == PeerState::PartnerDown));
    // RECOVER and RECOVER-WAIT served nobody.
    assert!(!w
        .stats
        .grants
        .iter()
        .any(|g| g.server == 1 && matches!(g.state, PeerState::Recover | PeerState::RecoverWait)));
}

#[test]
fn partition_in_load_balance_then_heal() {
    let mut p = Params::basic();
    p.release_pct = 20;
    p.away_secs = 60;
    let mut w = World::new(p, 4);
    ok(w.run_for(300), 4);
    w.schedule(300, Fault::Partition { secs: 1200 });
    ok(w.run_for(1100), 4);
    for i in 0..2 {
        assert_eq!(w.state(i), Some(PeerState::CommunicationsInterrupted));
    }
    ok(w.run_for(600), 4);
    for i in 0..2 {
        assert!(w
            .stats
            .grants
            .iter()
            .any(|g| g.server == i && g.state == PeerState::CommunicationsInterrupted && g.new));
        assert!(!visited(&w, i, PeerState::PartnerDown));
    }
    // In COMMUNICATIONS-INTERRUPTED every new lease came from the server's own pool.
    assert!(w
        .stats
        .grants
        .iter()
        .filter(|g| g.new && g.state == PeerState::CommunicationsInterrupted)
        .all(|g| g.own_pool));
    converge(&mut w, 4);
}

#[test]
fn partition_longer_than_switchover_heals_through_potential_conflict() {
    let mut p = Params::basic();
    p.mclt = 120;
    p.lease = 600;
    p.switchover = Some(300);
    p.clients = 34;
    p.release_pct = 20;
    p.away_secs = 60;
    let mut w = World::new(p, 5);
    ok(w.run_for(300), 5);
    w.schedule(300, Fault::Partition { secs: 2400 });
    ok(w.run_for(2300), 5);
    // The Windows split-brain case: both servers in automatic PARTNER-DOWN.
    for i in 0..2 {
        assert_eq!(w.state(i), Some(PeerState::PartnerDown));
        assert_eq!(
            w.peer(i).and_then(|p| p.partner_down_cause()),
            Some(PartnerDownCause::Automatic)
        );
    }
    // After the fence and MCLT each took over the other's unleased addresses ...
    assert!(w.stats.takeovers_by(0) > 0 && w.stats.takeovers_by(1) > 0);
    ok(w.run_for(600), 5);
    // ... and the heal went through POTENTIAL-CONFLICT to NORMAL with no duplicate (the
    // checker ran after every step).
    converge(&mut w, 5);
    for i in 0..2 {
        assert!(
            visited(&w, i, PeerState::PotentialConflict),
            "{:?}",
            w.stats.visited[i]
        );
    }
    assert!(visited(&w, 0, PeerState::ConflictDone));
}

#[test]
fn hot_standby_reserve_exhaustion() {
    let mut p = Params::basic();
    p.mode = Mode::HotStandby {
        active: Role::Primary,
        reserve_percent: 10,
    };
    p.mclt = 120;
    p.lease = 600;
    p.clients = 30;
    p.release_pct = 25;
    p.away_secs = 30;
    let mut w = World::new(p, 6);
    ok(w.run_for(900), 6);
    // NORMAL: the standby answered nobody; the reserve is 10 % of the free addresses.
    assert_eq!(w.stats.allocations_by(1) + w.stats.renewals_by(1), 0);
    let reserve = w.count_state(1, BindingState::Backup);
    let free = w.count_state(1, BindingState::Free) + reserve;
    assert!(
        reserve >= 1 && reserve <= free / 10 + 2,
        "reserve {reserve} of {free} free"
    );
    // The active server dies for a long time.
    w.schedule(
        900,
        Fault::Crash {
            server: 0,
            lose_db: false,
            secs: 3000,
        },
    );
    ok(w.run_for(1200), 6);
    assert_eq!(w.state(1), Some(PeerState::CommunicationsInterrupted));
    // New clients got the reserve, then nothing: the reserve ran out ...
    let from_reserve = w
        .stats
        .grants
        .iter()
        .filter(|g| g.server == 1 && g.new)
        .count();
    assert!(from_reserve > 0);
    assert!(w.allocatable(1) == 0, "reserve left: {}", w.allocatable(1));
    assert!(w.stats.exhausted > 0);
    // ... while existing clients were renewed, for at most MCLT.
    assert!(w.stats.renewals_by(1) > 0);
    // The operator declares the active down: after MCLT the standby owns the whole pool.
    let before = w.stats.takeovers_by(1);
    w.schedule(2100, Fault::AdminPartnerDown { server: 1 });
    ok(w.run_for(100), 6);
    assert_eq!(w.state(1), Some(PeerState::PartnerDown));
    assert_eq!(w.stats.takeovers_by(1), before, "no takeover before MCLT");
    ok(w.run_for(600), 6);
    assert!(w.stats.takeovers_by(1) > before);
    converge(&mut w, 6);
}

#[test]
fn mode_switch_from_load_balance_to_hot_standby() {
    let mut w = World::new(Params::basic(), 7);
    ok(w.run_for(900), 7);
    assert!(w.stats.allocations_by(1) + w.stats.renewals_by(1) > 0);
    let hs = Mode::HotStandby {
        active: Role::Primary,
        reserve_percent: 5,
    };
    w.schedule(900, Fault::SetMode(hs));
    ok(w.run_for(10), 7);
    let switched = w.now;
    ok(w.run_for(1800), 7);
    // After the switch the standby (secondary) serves nobody in NORMAL ...
    assert!(!w
        .stats
        .grants
        .iter()
        .any(|g| g.server == 1 && g.at > switched && g.state == PeerState::Normal));
    // ... its clients moved to the active server ...
    assert!(w
        .stats
        .grants
        .iter()
        .any(|g| g.server == 0 && g.at > switched));
    // ... and the free addresses were rebalanced down to the reserve.
    let backup = w.count_state(1, BindingState::Backup);
    let free = w.count_state(0, BindingState::Free);
    assert!(backup <= 3 && free > backup, "backup {backup}, free {free}");
    for i in 0..2 {
        assert_eq!(w.state(i), Some(PeerState::Normal));
    }
    converge(&mut w, 7);
}

#[test]
fn clock_skew_over_60s_refuses_the_connection_then_recovers() {
    let mut w = World::new(Params::basic(), 8);
    ok(w.run_for(300), 8);
    // The secondary's clock falls 100 s behind; the link is reset.
    w.schedule(
        300,
        Fault::ClockStep {
            server: 1,
            offset_ms: -100_000,
        },
    );
    w.schedule(301, Fault::LinkReset);
    ok(w.run_for(300), 8);
    assert!(
        w.stats.connect_rejects.contains(&4),
        "{:?}",
        w.stats.connect_rejects
    );
    assert!(w.stats.skew_events > 0);
    for i in 0..2 {
        assert_eq!(w.state(i), Some(PeerState::CommunicationsInterrupted));
    }
    // The clock is fixed: the pair reconnects and converges.
    w.schedule(
        600,
        Fault::ClockStep {
            server: 1,
            offset_ms: 0,
        },
    );
    ok(w.run_for(120), 8);
    converge(&mut w, 8);
}

#[test]
fn administrative_partner_down_with_a_dead_partner() {
    let mut p = Params::basic();
    p.mclt = 120;
    p.lease = 600;
    let mut w = World::new(p, 9);
    ok(w.run_for(300), 9);
    w.schedule(
        300,
        Fault::Crash {
            server: 1,
            lose_db: false,
            secs: 1500,
        },
    );
    w.schedule(400, Fault::AdminPartnerDown { server: 0 });
    ok(w.run_for(1200), 9);
    assert_eq!(w.state(0), Some(PeerState::PartnerDown));
    assert_eq!(
        w.peer(0).and_then(|p| p.partner_down_cause()),
        Some(PartnerDownCause::Administrative)
    );
    // The whole pool after MCLT: BACKUP addresses went to clients.
    assert!(w.stats.takeovers_by(0) > 0);
    assert!(w
        .stats
        .grants
        .iter()
        .filter(|g| g.takeover)
        .all(|g| g.state == PeerState::PartnerDown && g.at >= sim::EPOCH_MS + 520_000));
    converge(&mut w, 9);
    assert!(visited(&w, 1, PeerState::Recover));
}
