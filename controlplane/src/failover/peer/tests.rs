//! Unit tests of the state machine: transitions, handshake, keepalive, the BNDUPD window,
//! persistence, administrative actions, and the snapshot's rules.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use tandem_dataplane::authority::{AllocFrom, Authority, Verdict};
use tandem_dataplane::binding::{Binding, BindingState, ClientKey};
use tandem_dataplane::time::Time;

use super::*;
use crate::failover::message::{BindingUpdate, BndUpd, Body, Connect, Message, RejectReason};

const T0: u64 = 1_700_000_000;

fn cfg(role: Role) -> PeerConfig {
    let mut c = PeerConfig::new(b"rel", role);
    c.mclt_secs = 600;
    c.receive_timer_secs = 30;
    c.startup_secs = 10;
    c.rebalance_secs = 60;
    c.max_unacked = 2;
    c.batch_max = 1;
    c
}

fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn lease(n: u8, client: u8, expires: u32, sent: u32) -> Binding {
    let mut b = Binding::empty(addr(n), BindingState::Active);
    b.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, client]);
    b.htype = 1;
    b.hlen = 6;
    b.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, client]);
    b.expires = expires;
    b.start = expires.saturating_sub(100);
    b.cltt = b.start;
    b.sent_expiry = sent;
    b
}

/// One server of a unit-test pair: the machine, its bindings, and every event seen.
struct Side {
    peer: Peer<MemoryStore>,
    db: BTreeMap<Ipv4Addr, Binding>,
    seen: Vec<Event>,
    out: Vec<Message>,
}

impl Side {
    fn new(c: PeerConfig, start: Start, now: Time) -> Side {
        Side {
            peer: Peer::new(c, MemoryStore::default(), start, now).expect("valid config"),
            db: BTreeMap::new(),
            seen: Vec::new(),
            out: Vec::new(),
        }
    }

    fn states(&self) -> Vec<PeerState> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::StateChanged { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }
}

/// Two machines wired back to back with zero latency and one shared clock.
struct Pair {
    s: [Side; 2],
    now: Time,
    link: bool,
    /// Handle partner bindings automatically (judge + ack).
    auto_ack: bool,
}

impl Pair {
    fn new(a: Start, b: Start) -> Pair {
        Pair::with(cfg(Role::Primary), cfg(Role::Secondary), a, b)
    }

    fn with(ca: PeerConfig, cb: PeerConfig, a: Start, b: Start) -> Pair {
        let now = Time::from_secs(T0);
        Pair {
            s: [Side::new(ca, a, now), Side::new(cb, b, now)],
            now,
            link: false,
            auto_ack: true,
        }
    }

    fn connect(&mut self) {
        self.link = true;
        for i in 0..2 {
            self.s[i].peer.connected(self.now);
        }
        self.pump();
    }

    fn cut(&mut self) {
        self.link = false;
        for i in 0..2 {
            self.s[i].peer.disconnected(self.now);
        }
        self.pump();
    }

    /// Deliver messages and handle events until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..2 {
                while let Some(m) = self.s[i].peer.poll_transmit() {
                    moved = true;
                    self.s[i].out.push(m.clone());
                    if self.link {
                        self.s[1 - i].peer.handle_message(self.now, m);
                    }
                }
                while let Some(e) = self.s[i].peer.poll_event() {
                    moved = true;
                    self.on_event(i, e);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("pump did not settle");
    }

    fn on_event(&mut self, i: usize, e: Event) {
        let now = self.now;
        self.s[i].seen.push(e.clone());
        match e {
            Event::PartnerBinding { id, binding } if self.auto_ack => {
                let snap = self.s[i].peer.snapshot();
                let local = self.s[i].db.get(&binding.addr).copied();
                let r = match snap.judge(local.as_ref(), &binding, now) {
                    Judgement::Accept(b) => {
                        self.s[i].db.insert(b.addr, b);
                        Ok(())
                    }
                    Judgement::Ignore => Ok(()),
                    Judgement::Reject { reason, resend } => {
                        if let Some(l) = resend {
                            self.s[i].peer.local_update(now, l);
                        }
                        Err(reason)
                    }
                };
                self.s[i].peer.ack_partner_update(now, id, r);
            }
            Event::UpdateAcked { binding } => {
                if let Some(l) = self.s[i].db.get(&binding.addr).copied() {
                    if let Some(s) = settle_acked(&l, &binding) {
                        self.s[i].db.insert(s.addr, s);
                    }
                }
            }
            Event::SendAllBindings => {
                let all: Vec<Binding> = self.s[i].db.values().copied().collect();
                for b in all {
                    self.s[i].peer.local_update(now, b);
                }
                self.s[i].peer.end_full_update(now);
            }
            Event::CloseLink if self.link => {
                self.link = false;
                self.s[1 - i].peer.disconnected(now);
            }
            _ => {}
        }
    }

    /// Advance the clock second by second, firing timers.
    fn advance(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now = self.now.plus_secs(1);
            for i in 0..2 {
                if self.s[i].peer.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.s[i].peer.handle_timeout(self.now);
                }
            }
            self.pump();
        }
    }

    fn state(&self, i: usize) -> PeerState {
        self.s[i].peer.state()
    }
}

fn saved(state: PeerState, role: Role) -> PersistedState {
    let mode = Mode::default();
    let _ = role;
    PersistedState {
        state,
        stos: T0 as u32 - 1000,
        prior: state,
        partner_down_cause: (state == PeerState::PartnerDown)
            .then_some(PartnerDownCause::Administrative),
        recover_stos: T0 as u32 - 100,
        partner_state: Some(PeerState::Normal),
        partner_stos: T0 as u32 - 1000,
        partner_last_heard: T0 as u32 - 5,
        partner_seen_at: T0 as u32 - 1000,
        mclt: 600,
        hba: mode.primary_buckets(),
        mode,
        fresh: false,
    }
}

// ----- bring-up, handshake, skew --------------------------------------------------------------

#[test]
fn fresh_pair_reaches_normal_without_the_mclt_wait() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    assert_eq!(p.state(0), PeerState::Recover);
    p.connect();
    assert_eq!(p.state(0), PeerState::Normal);
    assert_eq!(p.state(1), PeerState::Normal);
    for i in 0..2 {
        let st = p.s[i].states();
        assert!(st.contains(&PeerState::RecoverDone), "{st:?}");
        assert!(!st.contains(&PeerState::RecoverWait), "{st:?}");
        // Persisted before taking effect: the store holds NORMAL.
        assert_eq!(
            p.s[i].peer.store().saved.as_ref().map(|s| s.state),
            Some(PeerState::Normal)
        );
        assert!(!p.s[i].peer.store().saved.as_ref().is_some_and(|s| s.fresh));
    }
    assert!(p.s[0].peer.is_connected() && p.s[1].peer.is_connected());
    assert_eq!(
        p.s[1].peer.dialect(),
        crate::failover::codec::Dialect::Tandem
    );
}

#[test]
fn secondary_adopts_mclt_and_buckets_from_connect() {
    let mut a = cfg(Role::Primary);
    a.mclt_secs = 1234;
    a.mode = Mode::LoadBalance {
        primary_percent: 70,
    };
    let b = cfg(Role::Secondary);
    let mut p = Pair::with(a, b, Start::Fresh, Start::Fresh);
    p.connect();
    assert_eq!(p.s[1].peer.mclt(), 1234);
    let snap = p.s[1].peer.snapshot();
    assert_eq!(snap.mclt(), 1234);
    assert_eq!(snap.buckets().count(), 256 - 179);
    assert_eq!(p.s[0].peer.snapshot().buckets().count(), 179);
    let st = p.s[1].peer.store().saved.clone().expect("persisted");
    assert_eq!(st.mclt, 1234);
    assert_eq!(st.hba, tandem_dataplane::hash::BucketMap::from_split(179));
}

fn connect_msg(p: &Pair, time: u64) -> Connect {
    let _ = p;
    let _ = time;
    Connect {
        relationship_name: b"rel".to_vec(),
        max_unacked_bndupd: Some(4),
        receive_timer: Some(30),
        vendor_class: Some(b"isc-4.4.3-P1".to_vec()),
        protocol_version: Some(1),
        tls_request: None,
        mclt: Some(600),
        hba: Some(tandem_dataplane::hash::BucketMap::from_split(128)),
        ..Connect::default()
    }
}

/// Deliver one CONNECT to a lone secondary and return its answer.
fn refuse(connect: Connect, time: u64) -> (Option<RejectReason>, Vec<Event>) {
    let now = Time::from_secs(T0);
    let mut s = Side::new(cfg(Role::Secondary), Start::Fresh, now);
    s.peer.connected(now);
    s.peer
        .handle_message(now, Message::new(time as u32, 77, Body::Connect(connect)));
    let mut reason = None;
    while let Some(m) = s.peer.poll_transmit() {
        if let Body::ConnectAck(a) = m.body {
            assert_eq!(m.xid, 77);
            reason = a.reject_reason;
        }
    }
    let mut ev = Vec::new();
    while let Some(e) = s.peer.poll_event() {
        ev.push(e);
    }
    (reason, ev)
}

#[test]
fn connect_with_clock_skew_over_60s_is_refused_with_reason_4() {
    let p = Pair::new(Start::Fresh, Start::Fresh);
    let (r, ev) = refuse(connect_msg(&p, T0 + 61), T0 + 61);
    assert_eq!(r, Some(RejectReason::TimeMismatch));
    assert_eq!(r.map(|r| r.code()), Some(4));
    assert!(ev.contains(&Event::ClockSkew { skew_secs: 61 }));
    assert!(ev.contains(&Event::CloseLink));
    assert!(ev.contains(&Event::ConnectRejected {
        reason: RejectReason::TimeMismatch,
        by_us: true
    }));
    // 60 s is still fine, in either direction.
    let (r, _) = refuse(connect_msg(&p, T0 - 60), T0 - 60);
    assert_eq!(r, None);
    let (r, _) = refuse(connect_msg(&p, T0 - 61), T0 - 61);
    assert_eq!(r, Some(RejectReason::TimeMismatch));
}

#[test]
fn connect_refusals_follow_isc_order_and_reasons() {
    let p = Pair::new(Start::Fresh, Start::Fresh);
    let mut c = connect_msg(&p, T0);
    c.relationship_name = b"other".to_vec();
    assert_eq!(refuse(c, T0).0, Some(RejectReason::InvalidPartner));
    let mut c = connect_msg(&p, T0);
    c.hba = None;
    assert_eq!(refuse(c, T0).0, Some(RejectReason::HbaConflict));
    let mut c = connect_msg(&p, T0);
    c.mclt = None;
    assert_eq!(refuse(c, T0).0, Some(RejectReason::InvalidMclt));
    let mut c = connect_msg(&p, T0);
    c.protocol_version = Some(2);
    assert_eq!(refuse(c, T0).0, Some(RejectReason::ProtocolVersionMismatch));
    assert_eq!(refuse(connect_msg(&p, T0), T0).0, None);

    // A primary refuses CONNECT (both configured as primary).
    let now = Time::from_secs(T0);
    let mut s = Side::new(cfg(Role::Primary), Start::Fresh, now);
    s.peer.connected(now);
    while s.peer.poll_transmit().is_some() {}
    s.peer.handle_message(
        now,
        Message::new(T0 as u32, 5, Body::Connect(connect_msg(&p, T0))),
    );
    let ack = std::iter::from_fn(|| s.peer.poll_transmit()).find_map(|m| match m.body {
        Body::ConnectAck(a) => a.reject_reason,
        _ => None,
    });
    assert_eq!(ack, Some(RejectReason::InvalidPartner));
}

#[test]
fn duplicate_connect_on_an_established_link_is_refused_with_reason_7() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    let c = connect_msg(&p, T0);
    p.s[1]
        .peer
        .handle_message(p.now, Message::new(T0 as u32, 9, Body::Connect(c)));
    let reason = std::iter::from_fn(|| p.s[1].peer.poll_transmit()).find_map(|m| match m.body {
        Body::ConnectAck(a) => a.reject_reason,
        _ => None,
    });
    assert_eq!(reason, Some(RejectReason::DuplicateConnection));
}

#[test]
fn refused_connectack_and_skewed_connectack() {
    // The primary sees a refusal: it reports it and closes.
    let now = Time::from_secs(T0);
    let mut s = Side::new(cfg(Role::Primary), Start::Fresh, now);
    s.peer.connected(now);
    let xid = std::iter::from_fn(|| s.peer.poll_transmit())
        .find(|m| matches!(m.body, Body::Connect(_)))
        .map(|m| m.xid)
        .expect("CONNECT sent");
    let ack = crate::failover::message::ConnectAck {
        reject_reason: Some(RejectReason::TimeMismatch),
        ..Default::default()
    };
    s.peer
        .handle_message(now, Message::new(T0 as u32, xid, Body::ConnectAck(ack)));
    let ev: Vec<Event> = std::iter::from_fn(|| s.peer.poll_event()).collect();
    assert!(ev.contains(&Event::ConnectRejected {
        reason: RejectReason::TimeMismatch,
        by_us: false
    }));
    assert!(ev.contains(&Event::CloseLink));
    assert!(!s.peer.is_connected());

    // A CONNECTACK whose time is 2 min off: DISCONNECT with reason 4.
    let mut s = Side::new(cfg(Role::Primary), Start::Fresh, now);
    s.peer.connected(now);
    while s.peer.poll_transmit().is_some() {}
    let ack = crate::failover::message::ConnectAck {
        relationship_name: Some(b"rel".to_vec()),
        ..Default::default()
    };
    s.peer.handle_message(
        now,
        Message::new(T0 as u32 + 120, xid, Body::ConnectAck(ack)),
    );
    let reason = std::iter::from_fn(|| s.peer.poll_transmit()).find_map(|m| match m.body {
        Body::Disconnect(d) => d.reject_reason,
        _ => None,
    });
    assert_eq!(reason, Some(RejectReason::TimeMismatch));
}

#[test]
fn every_message_is_skew_checked_and_bndupd_refused_while_skewed() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    let mut u = BindingUpdate::new(addr(5), crate::failover::message::BindingStatus::Free);
    u.potential_expiration = Some(0);
    let m = Message::new(
        T0 as u32 + 90,
        44,
        Body::BndUpd(BndUpd { bindings: vec![u] }),
    );
    p.s[1].peer.handle_message(p.now, m);
    let ev: Vec<Event> = std::iter::from_fn(|| p.s[1].peer.poll_event()).collect();
    assert!(ev.contains(&Event::ClockSkew { skew_secs: 90 }), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, Event::PartnerBinding { .. })));
    let ack = std::iter::from_fn(|| p.s[1].peer.poll_transmit())
        .find_map(|m| match m.body {
            Body::BndAck(a) if m.xid == 44 => Some(a),
            _ => None,
        })
        .expect("BNDACK");
    assert_eq!(ack.acks[0].reject_reason, Some(RejectReason::TimeMismatch));
    // The state does not change (Windows).
    assert_eq!(p.state(1), PeerState::Normal);
    // Rate-limited: a second skewed message within a minute raises no new event.
    p.s[1]
        .peer
        .handle_message(p.now, Message::new(T0 as u32 + 90, 45, Body::Contact));
    let ev: Vec<Event> = std::iter::from_fn(|| p.s[1].peer.poll_event()).collect();
    assert!(!ev.iter().any(|e| matches!(e, Event::ClockSkew { .. })));
}

// ----- keepalive and communication loss -------------------------------------------------------

#[test]
fn contact_keepalive_and_receive_timeout() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.s[0].out.clear();
    // Partner receive timer 30 s: CONTACT after 10 s of silence.
    p.advance(11);
    assert!(p.s[0].out.iter().any(|m| m.body == Body::Contact));
    // Cut the wire silently: each side drops the link after its own receive timer.
    p.link = false;
    p.advance(31);
    for i in 0..2 {
        assert!(!p.s[i].peer.is_connected());
        assert_eq!(p.state(i), PeerState::CommunicationsInterrupted);
        assert!(p.s[i].seen.contains(&Event::CloseLink));
        assert!(p.s[i].out.iter().any(|m| matches!(
            &m.body,
            Body::Disconnect(d) if d.reject_reason == Some(RejectReason::NoTrafficWithinSufficientTime)
        )));
    }
}

#[test]
fn normal_to_comm_interrupted_and_back() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    assert_eq!(p.state(0), PeerState::CommunicationsInterrupted);
    assert_eq!(p.state(1), PeerState::CommunicationsInterrupted);
    let snap = p.s[0].peer.snapshot();
    // CI: everyone, own pool, MCLT cap.
    let v = snap.verdict(0, 250, false, p.now);
    assert_eq!(
        v,
        Verdict {
            answer: true,
            alloc: AllocFrom::Free,
            lease_cap_secs: Some(600)
        }
    );
    p.connect();
    assert_eq!(p.state(0), PeerState::Normal);
    assert_eq!(p.state(1), PeerState::Normal);
}

#[test]
fn startup_falls_back_to_saved_state_without_contact() {
    let now = Time::from_secs(T0);
    for (saved_state, after) in [
        (PeerState::Normal, PeerState::CommunicationsInterrupted),
        (
            PeerState::PotentialConflict,
            PeerState::ResolutionInterrupted,
        ),
        (PeerState::PartnerDown, PeerState::PartnerDown),
        (PeerState::RecoverWait, PeerState::RecoverWait),
        (PeerState::Shutdown, PeerState::Recover),
    ] {
        let mut s = Side::new(
            cfg(Role::Primary),
            Start::Saved(saved(saved_state, Role::Primary)),
            now,
        );
        assert_eq!(s.peer.state(), PeerState::Startup);
        assert_eq!(
            s.peer.snapshot().verdict(0, 1, true, now),
            Verdict::SILENT,
            "STARTUP serves nobody"
        );
        // (the first keep-alive stamp is due at once)
        s.peer.handle_timeout(now);
        let d = s.peer.poll_timeout().expect("startup deadline");
        assert_eq!(d, now.plus_secs(10));
        s.peer.handle_timeout(d);
        assert_eq!(s.peer.state(), after, "saved {saved_state}");
    }
}

#[test]
fn restart_from_normal_while_partner_is_partner_down_goes_recover() {
    let mut p = Pair::new(
        Start::Saved(saved(PeerState::PartnerDown, Role::Primary)),
        Start::Saved(saved(PeerState::Normal, Role::Secondary)),
    );
    // Primary leaves STARTUP on its own (no contact yet) and restores PARTNER-DOWN.
    p.advance(11);
    assert_eq!(p.state(0), PeerState::PartnerDown);
    assert_eq!(p.state(1), PeerState::CommunicationsInterrupted);
    // A restarted secondary (saved NORMAL) meeting a PARTNER-DOWN primary recovers from it.
    let mut p = Pair::new(
        Start::Saved(saved(PeerState::PartnerDown, Role::Primary)),
        Start::Saved(saved(PeerState::Normal, Role::Secondary)),
    );
    p.advance(11);
    p.s[1] = Side::new(
        cfg(Role::Secondary),
        Start::Saved(saved(PeerState::Normal, Role::Secondary)),
        p.now,
    );
    p.connect();
    let st = p.s[1].states();
    assert_eq!(st.first(), Some(&PeerState::Recover), "{st:?}");
    assert!(p.s[1].out.iter().any(|m| m.body == Body::UpdReqAll));
}

// ----- recovery, conflict resolution ----------------------------------------------------------

#[test]
fn lost_database_recovers_with_the_mclt_wait() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    // The primary has a lease the secondary must learn.
    let b = lease(7, 1, T0 as u32 + 300, T0 as u32 + 900);
    p.s[0].db.insert(b.addr, b);
    p.s[0].peer.local_update(p.now, b);
    p.pump();
    p.cut();
    // The secondary loses everything.
    p.s[1] = Side::new(cfg(Role::Secondary), Start::Lost, p.now);
    assert_eq!(p.state(1), PeerState::Recover);
    p.connect();
    assert_eq!(p.state(0), PeerState::PartnerDown);
    assert_eq!(
        p.s[0].peer.partner_down_cause(),
        Some(PartnerDownCause::PartnerRecovering)
    );
    assert_eq!(p.state(1), PeerState::RecoverWait);
    assert_eq!(p.s[1].db.get(&addr(7)).map(|b| b.client), Some(b.client));
    let until = p.s[1].peer.recover_wait_until().expect("waiting");
    assert_eq!(until, p.now.plus_secs(600));
    // RECOVER-WAIT serves nobody; the wait ends at RECOVER start + MCLT.
    assert_eq!(
        p.s[1].peer.snapshot().verdict(0, 200, true, p.now),
        Verdict::SILENT
    );
    p.advance(599);
    assert_eq!(p.state(1), PeerState::RecoverWait);
    p.advance(2);
    assert_eq!(p.state(0), PeerState::Normal);
    assert_eq!(p.state(1), PeerState::Normal);
    assert!(p.s[1].states().contains(&PeerState::RecoverDone));
}

#[test]
fn partner_down_on_both_sides_resolves_through_potential_conflict() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    p.s[0].peer.partner_down(p.now).expect("allowed");
    p.s[1].peer.partner_down(p.now).expect("allowed");
    p.pump();
    // Each side leased something while apart.
    let a = lease(3, 1, T0 as u32 + 500, T0 as u32 + 900);
    let b = lease(4, 2, T0 as u32 + 500, T0 as u32 + 900);
    p.s[0].db.insert(a.addr, a);
    p.s[0].peer.local_update(p.now, a);
    p.s[1].db.insert(b.addr, b);
    p.s[1].peer.local_update(p.now, b);
    for s in &mut p.s {
        s.seen.clear();
    }
    p.connect();
    assert_eq!(
        p.s[0].states(),
        vec![
            PeerState::PotentialConflict,
            PeerState::ConflictDone,
            PeerState::Normal
        ]
    );
    assert_eq!(
        p.s[1].states(),
        vec![PeerState::PotentialConflict, PeerState::Normal]
    );
    // The primary asked first, the secondary after CONFLICT-DONE.
    assert!(p.s[0].out.iter().any(|m| m.body == Body::UpdReq));
    assert!(p.s[1].out.iter().any(|m| m.body == Body::UpdReq));
    assert_eq!(p.s[0].db.get(&addr(4)).map(|x| x.client), Some(b.client));
    assert_eq!(p.s[1].db.get(&addr(3)).map(|x| x.client), Some(a.client));
    assert_eq!(p.s[0].peer.pending_updates(), 0);
    assert_eq!(p.s[1].peer.pending_updates(), 0);
}

#[test]
fn losing_contact_in_potential_conflict_means_resolution_interrupted() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    p.s[0].peer.partner_down(p.now).expect("allowed");
    p.s[1]
        .peer
        .local_update(p.now, lease(8, 8, T0 as u32 + 300, T0 as u32 + 900));
    p.pump();
    // Hold the primary's acknowledgements back so the pair stays in POTENTIAL-CONFLICT.
    p.auto_ack = false;
    p.connect();
    assert_eq!(p.state(1), PeerState::PotentialConflict);
    p.cut();
    assert_eq!(p.state(1), PeerState::ResolutionInterrupted);
    // RESOLUTION-INTERRUPTED answers every client it knows (Windows), but allocates nothing:
    // the partner was in PARTNER-DOWN and may have leased our unleased addresses, and we never
    // got its bindings (the simulation found the double lease: seed 6341 with two workers).
    let v = p.s[1].peer.snapshot().verdict(0, 1, false, p.now);
    assert!(v.answer && v.alloc == AllocFrom::Nothing);
    let v = p.s[1].peer.snapshot().verdict(0, 1, true, p.now);
    assert!(v.answer && v.lease_cap_secs.is_some());
    p.auto_ack = true;
    p.connect();
    assert_eq!(p.state(0), PeerState::Normal);
    assert_eq!(p.state(1), PeerState::Normal);
}

// ----- automatic and administrative transitions -----------------------------------------------

/// A pair in NORMAL whose primary moves to PARTNER-DOWN 300 s out of contact.
fn switchover_pair() -> Pair {
    let mut a = cfg(Role::Primary);
    a.switchover_secs = Some(300);
    let mut p = Pair::with(a, cfg(Role::Secondary), Start::Fresh, Start::Fresh);
    p.connect();
    p
}

#[test]
fn automatic_partner_down_after_the_switchover_interval_only_when_configured() {
    let mut p = switchover_pair();
    p.cut();
    p.advance(299);
    assert_eq!(p.state(0), PeerState::CommunicationsInterrupted);
    p.advance(1);
    assert_eq!(p.state(0), PeerState::PartnerDown);
    assert_eq!(
        p.s[0].peer.partner_down_cause(),
        Some(PartnerDownCause::Automatic)
    );
    // Off by default: the secondary stays.
    p.advance(3600);
    assert_eq!(p.state(1), PeerState::CommunicationsInterrupted);
}

#[test]
fn administrative_actions() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    // No partner-down while recovering.
    assert_eq!(
        p.s[0].peer.partner_down(p.now),
        Err(AdminError::NotAllowed(PeerState::Recover))
    );
    p.connect();
    // Pause: the partner treats it as out of contact.
    p.s[0].peer.pause(p.now).expect("pause");
    p.pump();
    assert_eq!(p.state(0), PeerState::Paused);
    assert_eq!(p.state(1), PeerState::CommunicationsInterrupted);
    assert_eq!(
        p.s[0].peer.snapshot().verdict(0, 1, true, p.now),
        Verdict::SILENT
    );
    assert!(p.s[0].peer.pause(p.now).is_err());
    p.s[0].peer.resume(p.now).expect("resume");
    p.pump();
    assert_eq!(p.state(0), PeerState::Normal);
    assert_eq!(p.state(1), PeerState::Normal);
    // Shutdown: the partner moves to PARTNER-DOWN; resuming goes through RECOVER.
    p.s[1].peer.shutdown(p.now).expect("shutdown");
    p.pump();
    assert_eq!(p.state(1), PeerState::Shutdown);
    assert_eq!(p.state(0), PeerState::PartnerDown);
    assert_eq!(
        p.s[0].peer.partner_down_cause(),
        Some(PartnerDownCause::PartnerShutdown)
    );
    p.s[1].peer.resume(p.now).expect("resume");
    p.pump();
    assert!(p.s[1].states().contains(&PeerState::Recover));
    // Nothing of the secondary's was outstanding and the primary is in PARTNER-DOWN: no wait.
    assert_eq!(p.state(1), PeerState::Normal);
    assert_eq!(p.state(0), PeerState::Normal);
}

#[test]
fn a_failed_write_refuses_the_transition() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    let writes = p.s[0].peer.store().writes;
    p.s[0].peer.store_mut().fail = true;
    let r = p.s[0].peer.partner_down(p.now);
    assert!(matches!(r, Err(AdminError::Persist(_))));
    assert_eq!(p.state(0), PeerState::CommunicationsInterrupted);
    let ev: Vec<Event> = std::iter::from_fn(|| p.s[0].peer.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::PersistFailed {
            wanted: PeerState::PartnerDown,
            ..
        }
    )));
    p.s[0].peer.store_mut().fail = false;
    p.s[0].peer.partner_down(p.now).expect("now it persists");
    assert_eq!(p.s[0].peer.store().writes, writes + 1);
    let ps = p.s[0].peer.store().saved.clone().expect("saved");
    assert_eq!(ps.state, PeerState::PartnerDown);
    assert_eq!(
        ps.partner_down_cause,
        Some(PartnerDownCause::Administrative)
    );
}

#[test]
fn reaction_table_spot_checks() {
    use PeerState::*;
    let pd = |c| Some((PartnerDown, Some(c)));
    assert_eq!(
        next_state(Normal, PartnerDown),
        Some((PotentialConflict, None))
    );
    assert_eq!(
        next_state(Normal, Recover),
        pd(PartnerDownCause::PartnerRecovering)
    );
    assert_eq!(
        next_state(Normal, Shutdown),
        pd(PartnerDownCause::PartnerShutdown)
    );
    assert_eq!(
        next_state(Normal, Paused),
        Some((CommunicationsInterrupted, None))
    );
    assert_eq!(next_state(Normal, ConflictDone), None);
    assert_eq!(
        next_state(CommunicationsInterrupted, RecoverWait),
        Some((Normal, None))
    );
    assert_eq!(
        next_state(CommunicationsInterrupted, PartnerDown),
        Some((PotentialConflict, None))
    );
    assert_eq!(next_state(CommunicationsInterrupted, Paused), None);
    assert_eq!(next_state(PartnerDown, RecoverDone), Some((Normal, None)));
    assert_eq!(next_state(PartnerDown, Recover), None);
    assert_eq!(next_state(PartnerDown, RecoverWait), None);
    assert_eq!(
        next_state(PartnerDown, PartnerDown),
        Some((PotentialConflict, None))
    );
    assert_eq!(next_state(RecoverDone, Normal), Some((Normal, None)));
    assert_eq!(next_state(RecoverDone, PartnerDown), None);
    assert_eq!(next_state(Recover, Shutdown), None);
    assert_eq!(next_state(RecoverWait, Normal), None);
    assert_eq!(next_state(ConflictDone, Normal), Some((Normal, None)));
    assert_eq!(next_state(ConflictDone, PotentialConflict), None);
    assert_eq!(
        next_state(ResolutionInterrupted, CommunicationsInterrupted),
        Some((PotentialConflict, None))
    );
    assert_eq!(next_state(ResolutionInterrupted, Paused), None);
    assert_eq!(next_state(Paused, PartnerDown), None);
    assert_eq!(next_state(Shutdown, Normal), None);
}

// ----- BNDUPD window, UPDREQ ------------------------------------------------------------------

#[test]
fn bndupd_window_and_retransmission_after_reconnect() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.auto_ack = false;
    for n in 1..=5 {
        p.s[0]
            .peer
            .local_update(p.now, lease(n, n, T0 as u32 + 300, T0 as u32 + 900));
    }
    p.pump();
    // Window of 2 (the secondary's max-unacked), one binding per message (ISC dialect off,
    // batch 1).
    let sent: Vec<u32> = p.s[0]
        .out
        .iter()
        .filter(|m| matches!(m.body, Body::BndUpd(_)))
        .map(|m| m.xid)
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(p.s[0].peer.pending_updates(), 5);
    // The link drops before any BNDACK: everything is sent again on the next link.
    p.cut();
    p.s[0].out.clear();
    p.auto_ack = true;
    p.connect();
    let resent = p.s[0]
        .out
        .iter()
        .filter(|m| matches!(m.body, Body::BndUpd(_)))
        .count();
    assert_eq!(resent, 5);
    assert_eq!(p.s[0].peer.pending_updates(), 0);
    assert_eq!(p.s[1].db.len(), 5);
    let acked = p.s[0]
        .seen
        .iter()
        .filter(|e| matches!(e, Event::UpdateAcked { .. }))
        .count();
    assert_eq!(acked, 5);
}

#[test]
fn acks_for_a_dead_link_are_dropped() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.auto_ack = false;
    p.s[0]
        .peer
        .local_update(p.now, lease(1, 1, T0 as u32 + 300, T0 as u32 + 900));
    p.pump();
    let id = p.s[1]
        .seen
        .iter()
        .find_map(|e| match e {
            Event::PartnerBinding { id, .. } => Some(*id),
            _ => None,
        })
        .expect("binding delivered");
    p.cut();
    p.connect();
    p.s[1].out.clear();
    p.s[1].peer.ack_partner_update(p.now, id, Ok(()));
    assert!(p.s[1].peer.poll_transmit().is_none());
}

#[test]
fn updreq_is_answered_after_every_queued_update_is_acked() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.auto_ack = false;
    for n in 1..=3 {
        p.s[1]
            .peer
            .local_update(p.now, lease(n, n, T0 as u32 + 300, T0 as u32 + 900));
    }
    p.pump();
    p.s[1].out.clear();
    p.s[1]
        .peer
        .handle_message(p.now, Message::new(T0 as u32, 99, Body::UpdReq));
    p.pump();
    assert!(!p.s[1].out.iter().any(|m| m.body == Body::UpdDone));
    // The primary journals and acknowledges each binding: UPDDONE follows the last BNDACK.
    for _ in 0..3 {
        let ids: Vec<UpdateId> = p.s[0]
            .seen
            .drain(..)
            .filter_map(|e| match e {
                Event::PartnerBinding { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        for id in ids {
            p.s[0].peer.ack_partner_update(p.now, id, Ok(()));
        }
        p.pump();
    }
    let out = &p.s[1].out;
    let done = out
        .iter()
        .position(|m| m.body == Body::UpdDone && m.xid == 99)
        .expect("UPDDONE echoes the UPDREQ xid");
    let last_upd = out
        .iter()
        .rposition(|m| matches!(m.body, Body::BndUpd(_)))
        .expect("the third update went out after the first acks");
    assert!(last_upd < done);
    assert_eq!(p.s[1].peer.pending_updates(), 0);
}

// ----- snapshot: verdicts, MCLT, takeover -----------------------------------------------------

#[test]
fn verdicts_by_state_and_mode() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    let now = p.now;
    let (a, b) = (p.s[0].peer.snapshot(), p.s[1].peer.snapshot());
    // Load balance 50/50: bucket 0..127 primary, 128..255 secondary; new clients capped at M.
    assert_eq!(
        a.verdict(0, 10, false, now),
        Verdict {
            answer: true,
            alloc: AllocFrom::Free,
            lease_cap_secs: Some(600)
        }
    );
    assert_eq!(a.verdict(0, 200, true, now), Verdict::SILENT);
    assert_eq!(
        b.verdict(0, 200, true, now),
        Verdict {
            answer: true,
            alloc: AllocFrom::Backup,
            lease_cap_secs: None
        }
    );
    // Hot standby, primary active: the standby answers nobody in NORMAL.
    let hs = Mode::HotStandby {
        active: Role::Primary,
        reserve_percent: 5,
    };
    p.s[0].peer.set_mode(now, hs).expect("mode");
    p.s[1].peer.set_mode(now, hs).expect("mode");
    p.pump();
    for bucket in [0u8, 77, 200, 255] {
        assert!(p.s[0].peer.snapshot().verdict(0, bucket, false, now).answer);
        assert_eq!(
            p.s[1].peer.snapshot().verdict(0, bucket, true, now),
            Verdict::SILENT
        );
    }
    // Out of contact the standby serves new clients from its reserve (BACKUP) only.
    p.cut();
    let v = p.s[1].peer.snapshot().verdict(0, 5, false, p.now);
    assert_eq!(v.alloc, AllocFrom::Backup);
    assert!(v.answer);
}

#[test]
fn partner_down_takeover_waits_mclt() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    p.s[0].peer.partner_down(p.now).expect("allowed");
    let snap = p.s[0].peer.snapshot();
    let t = p.now;
    let stos = T0 as u32;
    assert_eq!(snap.alloc_from(t), AllocFrom::Free);
    assert_eq!(snap.takeover_at(), Some(Time::from_secs(T0 + 600)));
    let backup = Binding::empty(addr(9), BindingState::Backup);
    assert!(!snap.may_allocate(&backup, t.plus_secs(599)));
    assert!(snap.may_allocate(&backup, t.plus_secs(600)));
    assert_eq!(snap.alloc_from(t.plus_secs(600)), AllocFrom::Any);
    // A partner address whose last potential expiry is later waits for it + MCLT + skew.
    let mut late = backup;
    late.acked_expiry = stos + 1000;
    late.sent_expiry = stos + 1000;
    late.from_partner = true;
    assert!(!snap.may_allocate(&late, t.plus_secs(1000 + 600)));
    assert!(snap.may_allocate(&late, t.plus_secs(1000 + 600 + 61)));
    // Released addresses: after max(STOS, A) + MCLT (+ skew) in administrative PARTNER-DOWN.
    let mut rel = lease(10, 3, stos - 10, stos + 100);
    rel.state = BindingState::Released;
    rel.acked_expiry = stos + 100;
    assert!(!snap.may_allocate(&rel, t.plus_secs(600)));
    assert!(snap.may_allocate(&rel, t.plus_secs(100 + 600 + 61)));
    // An address our own transfer is handing to the partner is never taken back.
    let mut giving = backup;
    giving.sent_expiry = stos;
    assert!(!snap.may_allocate(&giving, t.plus_secs(10_000)));
}

#[test]
fn automatic_partner_down_fences_and_swaps_pools() {
    let mut p = switchover_pair();
    let heard = T0 as u32;
    p.cut();
    let snap = p.s[0].peer.snapshot();
    // Fence: leases the partner does not know must end by last heard + S - skew + M.
    let fence = heard + 300 - 61 + 600;
    assert_eq!(snap.fence_end(), Some(fence));
    let g = snap.grant(86_400, 0, p.now.plus_secs(200)).expect("grant");
    assert_eq!(g.lease_secs, 600);
    let g = snap
        .grant(86_400, 0, Time::from_secs(u64::from(fence) - 100))
        .expect("grant");
    assert_eq!(g.expires, fence);
    // A lease the partner acknowledged is not fenced.
    let g = snap
        .grant(
            86_400,
            fence + 5000,
            Time::from_secs(u64::from(fence) - 100),
        )
        .expect("grant");
    assert_eq!(g.lease_secs, 600);
    p.advance(300);
    assert_eq!(p.state(0), PeerState::PartnerDown);
    let snap = p.s[0].peer.snapshot();
    let pd_at = p.now;
    // Before the takeover: own pool until the fence squeezes it shut.
    assert_eq!(snap.alloc_from(pd_at.plus_secs(10)), AllocFrom::Free);
    // After the takeover: the partner's pool only, never expired addresses.
    let after = Time::from_secs(u64::from(fence).max(pd_at.secs() + 600) + 1);
    assert_eq!(snap.alloc_from(after), AllocFrom::Backup);
    let mut exp = lease(3, 3, heard, heard + 10);
    exp.state = BindingState::Expired;
    assert!(!snap.may_allocate(&exp, after.plus_secs(100_000)));
    assert!(!snap.may_allocate(&Binding::empty(addr(1), BindingState::Free), after));
    assert!(snap.may_allocate(&Binding::empty(addr(2), BindingState::Backup), after));
}

#[test]
fn declaring_the_partner_down_from_automatic_partner_down_holds_our_pool_for_mclt() {
    // Both sides in automatic PARTNER-DOWN in a partition: each left its own unleased pool to
    // the other (sim seed 17743). The operator then declares the partner down on the primary:
    // the partner's leases from our pool (capped at MCLT) may still run, so our pool opens
    // MCLT (+ skew) after the declaration, not at once.
    let mut p = switchover_pair();
    let fence = T0 as u32 + 300 - 61 + 600;
    p.cut();
    p.advance(300);
    assert_eq!(p.state(0), PeerState::PartnerDown);
    p.advance(u64::from(fence) + 100 - p.now.secs());
    assert_eq!(p.s[0].peer.snapshot().alloc_from(p.now), AllocFrom::Backup);
    let declared = p.now;
    p.s[0].peer.partner_down(declared).expect("allowed");
    p.pump();
    assert_eq!(p.state(0), PeerState::PartnerDown);
    let snap = p.s[0].peer.snapshot();
    let open = declared.secs() as u32 + 600 + 61;
    assert_eq!(snap.own_pool_held_until(), Some(open));
    let free = Binding::empty(addr(1), BindingState::Free);
    assert!(!snap.may_allocate(&free, declared.plus_secs(10)));
    assert!(!snap.may_allocate(&free, Time::from_secs(u64::from(open) - 1)));
    assert!(snap.may_allocate(&free, Time::from_secs(u64::from(open) + 1)));
}

#[test]
fn grant_follows_the_mclt_rule_in_each_state() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    let t = T0 as u32;
    let snap = p.s[0].peer.snapshot();
    // NORMAL: new client M, renewal after the ack gets the full desired time.
    let g = snap.grant(86_400, 0, p.now).expect("grant");
    assert_eq!((g.lease_secs, g.expires), (600, t + 600));
    assert_eq!(g.potential_expiry, t + 86_400 + 300);
    let g2 = snap
        .grant(86_400, g.potential_expiry, p.now.plus_secs(300))
        .expect("grant");
    assert_eq!(g2.lease_secs, 86_400);
    // Outside NORMAL: never more than MCLT.
    p.cut();
    let snap = p.s[0].peer.snapshot();
    let g3 = snap
        .grant(86_400, g.potential_expiry, p.now.plus_secs(300))
        .expect("grant");
    assert_eq!(g3.lease_secs, 600);
    // Short leases are not capped.
    assert_eq!(snap.grant(60, 0, p.now).map(|g| g.lease_secs), Some(60));
}

#[test]
fn recover_done_renews_only_and_never_past_acked_plus_mclt() {
    let mut ps = saved(PeerState::RecoverDone, Role::Secondary);
    ps.partner_state = Some(PeerState::PartnerDown);
    let s = Side::new(cfg(Role::Secondary), Start::Saved(ps), Time::from_secs(T0));
    let mut peer = s.peer;
    let now = Time::from_secs(T0 + 11);
    peer.handle_timeout(now);
    assert_eq!(peer.state(), PeerState::RecoverDone);
    let snap = peer.snapshot();
    assert_eq!(snap.verdict(0, 1, false, now), Verdict::SILENT);
    let v = snap.verdict(0, 1, true, now);
    assert!(v.answer && v.alloc == AllocFrom::Nothing);
    let t = (T0 + 11) as u32;
    // min(MCLT, A + MCLT - now): A 100 s ahead gives MCLT, A 500 s behind gives 100 s.
    assert_eq!(
        snap.grant(86_400, t + 100, now).map(|g| g.expires),
        Some(t + 600)
    );
    assert_eq!(
        snap.grant(86_400, t - 500, now).map(|g| g.expires),
        Some(t + 100)
    );
    assert_eq!(snap.grant(86_400, t - 700, now), None);
    assert_eq!(snap.grant(86_400, 0, now), None);
}

// ----- judge ----------------------------------------------------------------------------------

/// A fresh pair in NORMAL: the time, and the primary's and the secondary's snapshots (their
/// `judge` rules).
fn judges_in_normal() -> (Time, OwnershipSnapshot, OwnershipSnapshot) {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    (p.now, p.s[0].peer.snapshot(), p.s[1].peer.snapshot())
}

#[test]
fn a_release_crossing_the_primarys_older_backup_record_leaves_one_pool() {
    // Sim seed 10798: the primary gave an address to the secondary's pool (BACKUP, no lease
    // yet); the secondary leased it, the client released it, and on reconnection the two
    // views crossed: the primary's old BACKUP record (an UPDREQALL answer) and the secondary's
    // RELEASED. The primary frees the address into its own pool (the release is newer than its
    // record), so the secondary must not take the old BACKUP record into its pool.
    let (now, prim, sec) = judges_in_normal();
    let t = T0 as u32;
    let mut pooled = Binding::empty(addr(9), BindingState::Backup);
    pooled.acked_expiry = t - 900;
    pooled.sent_expiry = t - 900;
    let mut released = lease(9, 3, t - 30, t + 60);
    released.state = BindingState::Released;
    released.start = t - 400;
    released.cltt = t - 60;
    // The primary takes the newer release: FREE, in its own pool.
    match prim.judge(
        Some(&pooled),
        &{
            let mut r = released;
            r.from_partner = true;
            r
        },
        now,
    ) {
        Judgement::Accept(b) => assert_eq!(b.state, BindingState::Free),
        other => panic!("the primary must take the newer release: {other:?}"),
    }
    // The secondary refuses the primary's older BACKUP record and re-sends its release.
    let mut old = pooled;
    old.from_partner = true;
    assert_eq!(
        sec.judge(Some(&released), &old, now),
        Judgement::Reject {
            reason: RejectReason::OutdatedBindingInfo,
            resend: Some(released)
        }
    );
    // A transfer made after the release (it carries the release's time) is still taken.
    let mut fresh = old;
    fresh.cltt = released.cltt;
    assert!(matches!(
        sec.judge(Some(&released), &fresh, now),
        Judgement::Accept(_)
    ));
}

#[test]
fn conflict_resolution_rules() {
    let (now, prim, sec) = judges_in_normal();
    let t = T0 as u32;
    let mut mine = lease(1, 1, t + 500, t + 900);
    mine.cltt = t - 10;
    let mut theirs = lease(1, 2, t + 500, t + 900);
    theirs.from_partner = true;
    // Newer CLTT wins.
    theirs.cltt = t - 5;
    assert_eq!(
        prim.judge(Some(&mine), &theirs, now),
        Judgement::Accept(theirs)
    );
    theirs.cltt = t - 20;
    assert_eq!(
        prim.judge(Some(&mine), &theirs, now),
        Judgement::Reject {
            reason: RejectReason::FatalConflict,
            resend: Some(mine)
        }
    );
    // A tie goes to the primary.
    theirs.cltt = mine.cltt;
    assert!(matches!(
        prim.judge(Some(&mine), &theirs, now),
        Judgement::Reject { .. }
    ));
    assert_eq!(
        sec.judge(Some(&mine), &theirs, now),
        Judgement::Accept(theirs)
    );
    // ACTIVE beats a non-active state.
    let mut expired = theirs;
    expired.state = BindingState::Expired;
    assert!(matches!(
        prim.judge(Some(&mine), &expired, now),
        Judgement::Reject {
            reason: RejectReason::OutdatedBindingInfo,
            ..
        }
    ));
    // The partner's EXPIRED for its own lease of the same client is accepted while our copy
    // still runs on the skew allowance (the partner expires the leases it issued) ...
    let mut copy = mine;
    copy.from_partner = true;
    let mut ended = copy;
    ended.state = BindingState::Expired;
    assert_eq!(
        prim.judge(Some(&copy), &ended, now),
        Judgement::Accept(ended)
    );
    match prim.sweep(&ended, now) {
        Sweep::Keep => {}
        other => panic!("an EXPIRED copy must wait for its end plus the allowance: {other:?}"),
    }
    // ... but not when the lease is our own, or the client renewed later than it says.
    assert!(matches!(
        prim.judge(
            Some(&mine),
            &{
                let mut e = mine;
                e.state = BindingState::Expired;
                e
            },
            now
        ),
        Judgement::Reject {
            reason: RejectReason::OutdatedBindingInfo,
            ..
        }
    ));
    let mut renewed_copy = copy;
    renewed_copy.expires = copy.expires + 600;
    assert!(matches!(
        prim.judge(Some(&renewed_copy), &ended, now),
        Judgement::Reject { .. }
    ));
    // The partner's RELEASED for the same client wins when it is newer.
    let mut released = mine;
    released.state = BindingState::Released;
    released.from_partner = true;
    released.cltt = mine.cltt + 100;
    match prim.judge(Some(&mine), &released, now) {
        Judgement::Accept(b) => assert_eq!(b.state, BindingState::Free),
        other => panic!("{other:?}"),
    }
    // ... but not when our own transaction is newer.
    released.cltt = mine.cltt;
    assert!(matches!(
        prim.judge(Some(&mine), &released, now),
        Judgement::Reject { .. }
    ));
    // Same client: merged, the later end and the higher acknowledged expiry kept.
    let mut renewed = mine;
    renewed.from_partner = true;
    renewed.expires = t + 800;
    renewed.acked_expiry = t + 1500;
    renewed.sent_expiry = t + 1500;
    match prim.judge(Some(&mine), &renewed, now) {
        Judgement::Accept(b) => {
            assert_eq!(b.expires, t + 800);
            assert_eq!(b.acked_expiry, t + 1500);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn transfers_and_claims() {
    let (now, prim, sec) = judges_in_normal();
    let free = Binding::empty(addr(5), BindingState::Free);
    let mut backup = Binding::empty(addr(5), BindingState::Backup);
    backup.from_partner = true;
    // The primary gives an address: accepted.
    assert_eq!(
        sec.judge(Some(&free), &backup, now),
        Judgement::Accept(backup)
    );
    // The secondary claims one of the primary's: refused, primary wins.
    assert!(matches!(
        prim.judge(Some(&free), &backup, now),
        Judgement::Reject {
            resend: Some(_),
            ..
        }
    ));
    // While our own transfer is unacknowledged, a crossing non-active update is outdated.
    let giving = transfer(&free, BindingState::Backup, now);
    let mut rel = lease(5, 4, T0 as u32 - 100, T0 as u32);
    rel.state = BindingState::Released;
    rel.from_partner = true;
    assert_eq!(
        prim.judge(Some(&giving), &rel, now),
        Judgement::Reject {
            reason: RejectReason::OutdatedBindingInfo,
            resend: None
        }
    );
}

/// The secondary's EXPIRED or RELEASED that ends the lease our BACKUP record already follows
/// (queued there before it took our transfer, sent after) must not free the address into the
/// primary's pool: the secondary holds it as BACKUP. One for a later lease (leased from its
/// pool while we were apart) is news, and frees it.
#[test]
fn stale_end_of_lease_does_not_pull_a_transferred_address_back() {
    let (now, prim, sec) = judges_in_normal();
    let t = T0 as u32;
    let old = lease(6, 3, t - 1000, t - 1000);
    // Ours: the lease ended, went FREE, and was handed to the secondary's pool (acknowledged
    // long ago, so not in transit); the record keeps the lease's times.
    let mut given = freed_for_test(&old);
    given.state = BindingState::Backup;
    given.acked_expiry = given.sent_expiry;
    for end in [
        BindingState::Expired,
        BindingState::Released,
        BindingState::Reset,
    ] {
        let mut stale = old;
        stale.state = end;
        stale.from_partner = true;
        assert_eq!(
            prim.judge(Some(&given), &stale, now),
            Judgement::Reject {
                reason: RejectReason::OutdatedBindingInfo,
                resend: Some(given)
            },
            "{end:?}"
        );
        // A lease the secondary gave later from its pool ends: news, accepted.
        let mut later = stale;
        later.cltt = old.cltt + 10;
        assert!(
            matches!(prim.judge(Some(&given), &later, now), Judgement::Accept(_)),
            "{end:?}"
        );
        // The secondary keeps no such guard: the primary's end of a lease only ever moves an
        // address into the primary's pool, which the primary then holds too.
        let mut ours = given;
        ours.from_partner = true;
        let mut from_primary = old;
        from_primary.state = end;
        assert!(
            matches!(
                sec.judge(Some(&ours), &from_primary, now),
                Judgement::Accept(_)
            ),
            "{end:?}"
        );
    }
}

fn freed_for_test(b: &Binding) -> Binding {
    let mut f = *b;
    f.state = BindingState::Free;
    f.client = ClientKey::EMPTY;
    f
}

// ----- pool balancing -------------------------------------------------------------------------

#[test]
fn pool_balancing_moves_the_excess_between_tandem_peers() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.s[0].peer.set_pool_counts(PoolCounts {
        own: 100,
        partner: 0,
    });
    p.s[1].peer.set_pool_counts(PoolCounts {
        own: 0,
        partner: 100,
    });
    p.connect();
    p.advance(1);
    assert!(p.s[0].seen.contains(&Event::TransferAddresses {
        count: 50,
        to: BindingState::Backup
    }));
    assert!(!p.s[1]
        .seen
        .iter()
        .any(|e| matches!(e, Event::TransferAddresses { .. })));
    // Hot standby with the secondary as standby: the primary keeps 95 %.
    let hs = Mode::HotStandby {
        active: Role::Primary,
        reserve_percent: 5,
    };
    p.s[0].peer.set_pool_counts(PoolCounts {
        own: 50,
        partner: 50,
    });
    p.s[1].peer.set_pool_counts(PoolCounts {
        own: 50,
        partner: 50,
    });
    p.s[0].peer.set_mode(p.now, hs).expect("mode");
    p.s[1].peer.set_mode(p.now, hs).expect("mode");
    p.s[1].seen.clear();
    p.advance(1);
    assert!(p.s[1].seen.contains(&Event::TransferAddresses {
        count: 45,
        to: BindingState::Free
    }));
}

#[test]
fn poolreq_towards_an_isc_partner_and_poolresp() {
    // The secondary talks to an "ISC" primary: it asks with POOLREQ when badly short.
    let mut a = cfg(Role::Primary);
    a.vendor_class = b"isc-4.4.3-P1".to_vec();
    let mut p = Pair::with(a, cfg(Role::Secondary), Start::Fresh, Start::Fresh);
    p.s[1].peer.set_pool_counts(PoolCounts {
        own: 0,
        partner: 100,
    });
    p.connect();
    assert_eq!(p.s[1].peer.dialect(), crate::failover::codec::Dialect::Isc);
    p.advance(1);
    assert!(p.s[1].out.iter().any(|m| m.body == Body::PoolReq));
    // Asked directly, a primary gives its excess over 50 % and says how many in POOLRESP.
    p.s[0].peer.set_pool_counts(PoolCounts {
        own: 90,
        partner: 10,
    });
    p.s[0].seen.clear();
    p.s[0]
        .peer
        .handle_message(p.now, Message::new(T0 as u32 + 1, 4242, Body::PoolReq));
    p.pump();
    let resp = p.s[0].out.iter().find_map(|m| match &m.body {
        Body::PoolResp(r) if m.xid == 4242 => Some(r.addresses_transferred),
        _ => None,
    });
    assert_eq!(resp, Some(40));
    assert!(p.s[0].seen.contains(&Event::TransferAddresses {
        count: 40,
        to: BindingState::Backup
    }));
    assert!(p.s[1]
        .seen
        .contains(&Event::PoolResponse { transferred: 40 }));
}

// ----- conversions and helpers ----------------------------------------------------------------

#[test]
fn binding_update_round_trip() {
    let b = lease(9, 7, T0 as u32 + 60, T0 as u32 + 900);
    let u = update_from_binding(&b).expect("sendable");
    assert_eq!(u.client_id, None, "the key is htype+chaddr");
    assert_eq!(u.potential_expiration, Some(T0 as u32 + 900));
    let r = binding_from_update(&u).expect("valid");
    assert!(r.from_partner);
    assert_eq!(r.client, b.client);
    assert_eq!(r.hw(), b.hw());
    assert_eq!((r.expires, r.start, r.cltt), (b.expires, b.start, b.cltt));
    assert_eq!(r.acked_expiry, T0 as u32 + 900);
    // A client identifier that is not htype+chaddr travels as option 61.
    let mut c = b;
    c.client = ClientKey::new(b"host-17");
    let u = update_from_binding(&c).expect("sendable");
    assert_eq!(u.client_id.as_deref(), Some(&b"host-17"[..]));
    assert_eq!(binding_from_update(&u).map(|x| x.client), Ok(c.client));
    // ACTIVE without an expiry is refused; OFFERED is never sent.
    let mut bad = u.clone();
    bad.lease_expiration = None;
    assert_eq!(
        binding_from_update(&bad),
        Err(RejectReason::MissingBindingInfo)
    );
    let mut o = b;
    o.state = BindingState::Offered;
    assert!(update_from_binding(&o).is_none());
}

#[test]
fn settle_and_needs_update() {
    let t = T0 as u32;
    let mut e = lease(1, 1, t, t + 500);
    e.state = BindingState::Expired;
    assert!(needs_update(&e));
    let s = settle_acked(&e, &e).expect("same update");
    assert_eq!(s.state, BindingState::Free);
    assert!(!needs_update(&s));
    let a = lease(2, 1, t + 100, t + 500);
    assert!(needs_update(&a));
    let s = settle_acked(&a, &a).expect("same update");
    assert_eq!(s.acked_expiry, t + 500);
    assert!(!needs_update(&s));
    // A renewal since: only the acknowledged expiry rises.
    let mut renewed = a;
    renewed.sent_expiry = t + 800;
    renewed.expires = t + 300;
    let s = settle_acked(&renewed, &a).expect("same client");
    assert_eq!((s.acked_expiry, s.sent_expiry), (t + 500, t + 800));
    // A transfer is outstanding until acknowledged.
    let x = transfer(
        &Binding::empty(addr(3), BindingState::Free),
        BindingState::Backup,
        Time::from_secs(T0),
    );
    assert!(needs_update(&x) && in_transit_from_us(&x));
    let s = settle_acked(&x, &x).expect("acked");
    assert!(!in_transit_from_us(&s));
}

#[test]
fn acks_from_a_recovering_partner_do_not_free_addresses() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    let t = T0 as u32;
    let mut e = lease(6, 1, t - 10, t + 500);
    e.state = BindingState::Expired;
    p.s[0].db.insert(e.addr, e);
    p.s[0].peer.local_update(p.now, e);
    p.s[1] = Side::new(cfg(Role::Secondary), Start::Lost, p.now);
    p.connect();
    // Acknowledged in RECOVER / RECOVER-WAIT: not reported, still pending.
    assert_eq!(p.state(1), PeerState::RecoverWait);
    assert_eq!(p.s[0].db[&addr(6)].state, BindingState::Expired);
    assert_eq!(p.s[0].peer.pending_updates(), 1);
    // Once the partner is past its wait, the update goes again and settles.
    p.advance(601);
    assert_eq!(p.state(1), PeerState::Normal);
    assert_eq!(p.s[0].db[&addr(6)].state, BindingState::Free);
    assert_eq!(p.s[0].peer.pending_updates(), 0);
}

#[test]
fn snapshot_changes_are_reported() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    let n = p.s[0]
        .seen
        .iter()
        .filter(|e| **e == Event::SnapshotChanged)
        .count();
    assert!(n >= 1);
    p.s[0].seen.clear();
    p.advance(5); // keepalives only
    assert!(!p.s[0].seen.contains(&Event::SnapshotChanged));
    p.cut();
    assert!(p.s[0].seen.contains(&Event::SnapshotChanged));
}

#[test]
fn operator_can_skip_recover_wait() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    p.s[1] = Side::new(cfg(Role::Secondary), Start::Lost, p.now);
    assert!(p.s[1].peer.skip_recover_wait(p.now).is_err());
    p.connect();
    assert_eq!(p.state(1), PeerState::RecoverWait);
    p.s[1]
        .peer
        .skip_recover_wait(p.now)
        .expect("in RECOVER-WAIT");
    p.pump();
    assert_eq!(p.state(1), PeerState::Normal);
    assert_eq!(p.state(0), PeerState::Normal);
}

#[test]
fn a_restarted_server_holds_its_pool_when_the_partner_hides_its_history() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    // The secondary declares the (dead) primary down, then pauses.
    p.s[1].peer.partner_down(p.now).expect("allowed");
    p.s[1].peer.pause(p.now).expect("pause");
    p.pump();
    let paused_at = p.now.secs() as u32;
    p.advance(30);
    // The primary restarts; the first thing it learns is "PAUSED".
    let ps = p.s[0].peer.store().saved.clone().expect("saved");
    p.s[0] = Side::new(cfg(Role::Primary), Start::Saved(ps), p.now);
    p.connect();
    assert_eq!(p.state(0), PeerState::CommunicationsInterrupted);
    let snap = p.s[0].peer.snapshot();
    assert_eq!(snap.own_pool_held_until(), Some(paused_at + 600 + 61));
    assert_eq!(snap.alloc_from(p.now), AllocFrom::Nothing);
    assert!(snap.alloc_from(Time::from_secs(u64::from(paused_at) + 661)) == AllocFrom::Free);
    // A server that was not down trusts PAUSED: no hold.
    let mut q = Pair::new(Start::Fresh, Start::Fresh);
    q.connect();
    q.s[1].peer.pause(q.now).expect("pause");
    q.pump();
    q.cut();
    q.connect();
    assert_eq!(q.s[0].peer.snapshot().own_pool_held_until(), None);
}

#[test]
fn a_silent_partner_down_is_not_restored_after_the_partner_was_seen() {
    let mut p = Pair::new(Start::Fresh, Start::Fresh);
    p.connect();
    p.cut();
    p.s[1].peer.partner_down(p.now).expect("allowed");
    p.s[1].peer.pause(p.now).expect("pause");
    p.pump();
    p.advance(5);
    // While paused, the secondary sees the primary alive (COMMUNICATIONS-INTERRUPTED).
    p.connect();
    assert_eq!(p.state(1), PeerState::Paused);
    p.cut();
    p.advance(1);
    p.s[1].peer.resume(p.now).expect("resume");
    p.advance(11);
    // Without contact it does not go back to PARTNER-DOWN.
    assert_eq!(p.state(1), PeerState::CommunicationsInterrupted);
    // Without having seen it, it does.
    let mut q = Pair::new(Start::Fresh, Start::Fresh);
    q.connect();
    q.cut();
    q.s[1].peer.partner_down(q.now).expect("allowed");
    q.s[1].peer.pause(q.now).expect("pause");
    q.advance(5);
    q.s[1].peer.resume(q.now).expect("resume");
    q.advance(11);
    assert_eq!(q.state(1), PeerState::PartnerDown);
    assert_eq!(
        q.s[1].peer.partner_down_cause(),
        Some(PartnerDownCause::Administrative)
    );
}

/// A restart after an absence of at least MCLT (by the store's keep-alive stamps) keeps our own
/// pool closed to new clients until the partner is heard: the partner may have been declared
/// down meanwhile and be leasing our free addresses. A short restart does not; the operator's
/// partner-down ends the hold.
#[test]
fn restart_after_an_absence_over_mclt_holds_the_own_pool_until_contact() {
    let t0 = Time::from_secs(T0);
    for (away, held) in [(30u64, false), (4000, true)] {
        let mut store = MemoryStore::default();
        store.keep_alive(T0 as u32);
        let now = t0.plus_secs(away);
        let mut p = Peer::new(
            cfg(Role::Primary),
            store,
            Start::Saved(saved(PeerState::Normal, Role::Primary)),
            now,
        )
        .expect("peer");
        assert_eq!(p.held_until_contact(), held, "away {away} s");
        // Out of contact after STARTUP: COMMUNICATIONS-INTERRUPTED, which serves everyone.
        let later = now.plus_secs(11);
        p.handle_timeout(later);
        assert_eq!(p.state(), PeerState::CommunicationsInterrupted);
        let v = p.snapshot().verdict(0, 1, false, later);
        assert!(v.answer, "away {away} s");
        assert_eq!(
            v.alloc == AllocFrom::Nothing,
            held,
            "away {away} s: new clients {} our pool",
            if held { "must not get" } else { "get" }
        );
        // Renewals are served either way.
        assert!(p.snapshot().verdict(0, 1, true, later).answer);
        if held {
            assert_eq!(p.away_secs(), Some(away as u32));
            p.partner_down(later).expect("partner-down");
            assert!(!p.held_until_contact());
            assert!(p.snapshot().own_pool_open(later));
        }
        // the store got a fresh stamp
        assert!(p.store().alive.is_some_and(|a| u64::from(a) >= T0 + away));
    }
}
