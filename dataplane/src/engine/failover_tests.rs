//! Engine behaviour in scopes shared with a failover partner: the FREE/BACKUP pools, the MCLT
//! grant, acknowledged frees, offer holds over older bindings, partner bindings, reclaim and
//! pool transfers.

use std::cell::RefCell;

use super::*;
use crate::authority::Verdict;
use crate::scope::{OptionSet, Subnet};

use super::tests::{ip, send_at, updates, Reply, Req, SID, T0};
/// Seconds of `T0`.
const T0S: u32 = 1_800_000_000;
/// The configured lease time of every test scope.
const LEASE: u32 = 3600;
/// The potential expiration the default test grant reports.
const PE: u32 = T0S + 5400;
/// When a lease of `LEASE` s from T0 of this server expires in a replicated scope (its end
/// plus the late-renewal grace).
const ENDED: u64 = (LEASE + REPLICATED_EXPIRY_GRACE_SECS) as u64;

fn scope(name: &str, net: &str, lo: &str, hi: &str) -> Scope {
    Scope {
        name: name.into(),
        subnet: Subnet {
            network: ip(net),
            prefix: 24,
        },
        ranges: vec![AddrRange::new(ip(lo), ip(hi))],
        exclusions: vec![],
        reservations: vec![],
        lease_time: LEASE,
        renew_time: None,
        rebind_time: None,
        options: OptionSet::new(),
        policies: vec![],
        authoritative: true,
        ddns: None,
    }
}

/// An engine with one scope "lan" (10.0.0.0/24, range .100 to `.{hi}`) on interface 0,
/// shared with a partner if `replicated`.
fn engine(hi: u8, replicated: bool) -> Engine {
    let s = ServerSettings {
        server_id: SID,
        global_options: OptionSet::new(),
        scopes: vec![scope(
            "lan",
            "10.0.0.0",
            "10.0.0.100",
            &format!("10.0.0.{hi}"),
        )],
        offer_hold_secs: 30,
        decline_probation_secs: 600,
        duplicate_window_ms: 2000,
    };
    let mut e = Engine::new(Arc::new(s), vec![vec![0]], 0, 1, Arc::new(Stats::default()));
    if replicated {
        e.set_replicated(vec!["lan".into()]);
    }
    e
}

/// A test authority: every field is set per test, and the calls the engine makes are recorded.
struct Partner {
    answer: bool,
    alloc: AllocFrom,
    cap: Option<u32>,
    /// What every `grant` call returns.
    fixed_grant: Option<LeaseGrant>,
    /// The `may_allocate` predicate.
    may: Box<dyn Fn(&Binding) -> bool>,
    /// `(desired_secs, acked_expiry)` of every `grant` call.
    grants: RefCell<Vec<(u32, u32)>>,
    /// The binding of every `may_allocate` call.
    asked: RefCell<Vec<Binding>>,
}

impl Partner {
    fn new(alloc: AllocFrom) -> Partner {
        Partner {
            answer: true,
            alloc,
            cap: None,
            fixed_grant: Some(LeaseGrant {
                lease_secs: LEASE,
                potential_expiry: PE,
            }),
            may: Box::new(|_| true),
            grants: RefCell::new(vec![]),
            asked: RefCell::new(vec![]),
        }
    }
    fn with_grant(mut self, g: Option<LeaseGrant>) -> Partner {
        self.fixed_grant = g;
        self
    }
    fn with_cap(mut self, cap: u32) -> Partner {
        self.cap = Some(cap);
        self
    }
    fn with_may(mut self, f: impl Fn(&Binding) -> bool + 'static) -> Partner {
        self.may = Box::new(f);
        self
    }
    fn silent(mut self) -> Partner {
        self.answer = false;
        self
    }
    fn grants(&self) -> Vec<(u32, u32)> {
        self.grants.borrow().clone()
    }
    fn asked(&self) -> Vec<Binding> {
        self.asked.borrow().clone()
    }
}

impl Authority for Partner {
    fn verdict(&self, _: usize, _: u8, _: bool, _: Time) -> Verdict {
        Verdict {
            answer: self.answer,
            alloc: self.alloc,
            lease_cap_secs: self.cap,
        }
    }
    fn grant(&self, _: usize, desired: u32, acked: u32, _: Time) -> Option<LeaseGrant> {
        self.grants.borrow_mut().push((desired, acked));
        self.fixed_grant
    }
    fn may_allocate(&self, _: usize, b: &Binding, _: Time) -> bool {
        self.asked.borrow_mut().push(*b);
        (self.may)(b)
    }
    fn replicated(&self, _: usize) -> bool {
        true
    }
}

fn mac(last: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, last]
}

/// The engine's identity of test client `last`.
fn client(last: u8) -> ClientKey {
    ClientKey::from_hw(1, &mac(last))
}

/// DISCOVER then REQUEST (SELECTING) at `now`; returns the ACKed address.
fn lease_at(e: &mut Engine, now: Time, mac_last: u8, auth: &impl Authority) -> Ipv4Addr {
    let offer = send_at(e, now, &Req::new(MessageType::Discover, mac_last), auth);
    assert_eq!(offer.msg(), Some(MessageType::Offer), "{:?}", offer.outcome);
    let ack = send_at(
        e,
        now,
        &Req::new(MessageType::Request, mac_last)
            .xid(0x9000 + u32::from(mac_last))
            .sid(SID)
            .requested(offer.yiaddr()),
        auth,
    );
    assert_eq!(ack.msg(), Some(MessageType::Ack), "{:?}", ack.outcome);
    assert_eq!(ack.yiaddr(), offer.yiaddr());
    ack.yiaddr()
}

/// A DISCOVER from `mac_last` with a fresh xid (so the duplicate cache never answers it).
fn discover(e: &mut Engine, now: Time, mac_last: u8, xid: u32, auth: &impl Authority) -> Reply {
    send_at(
        e,
        now,
        &Req::new(MessageType::Discover, mac_last).xid(xid),
        auth,
    )
}

/// An unleased binding in pool `state`, as the partner's pool transfer or acknowledgement
/// installs it.
fn unleased(addr: Ipv4Addr, state: BindingState) -> Binding {
    let mut b = Binding::empty(addr, state);
    b.cltt = T0S;
    b
}

/// An ACTIVE binding of test client `last` on `addr`.
fn active(addr: Ipv4Addr, last: u8, expires: u32) -> Binding {
    let mut b = Binding::empty(addr, BindingState::Active);
    b.client = client(last);
    b.htype = 1;
    b.hlen = 6;
    b.chaddr[..6].copy_from_slice(&mac(last));
    b.start = T0S - 100;
    b.cltt = T0S - 100;
    b.expires = expires;
    b
}

#[test]
fn secondary_offers_only_backup_addresses() {
    let mut e = engine(103, true);
    let sec = Partner::new(AllocFrom::Backup);
    assert!(e.is_replicated(0));
    assert_eq!(e.pool_counts(0), (4, 0), "a fresh scope is all FREE");
    // nothing in BACKUP yet: no offer, and a FREE address is not confirmed either
    let r = discover(&mut e, T0, 1, 1, &sec);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
    let r = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Request, 1).requested(ip("10.0.0.100")),
        &sec,
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    assert!(updates(&mut e).is_empty());
    assert_eq!(e.pool_counts(0), (4, 0));

    // the primary hands two addresses over
    let handed = [ip("10.0.0.101"), ip("10.0.0.102")];
    for a in handed {
        e.install(unleased(a, BindingState::Backup));
    }
    let u = updates(&mut e);
    assert_eq!(
        u.iter().map(|b| (b.addr, b.state)).collect::<Vec<_>>(),
        vec![
            (handed[0], BindingState::Backup),
            (handed[1], BindingState::Backup)
        ],
        "installed bindings are journaled"
    );
    assert_eq!(e.pool_counts(0), (2, 2));
    assert_eq!(
        e.binding(handed[0]).map(|b| b.state),
        Some(BindingState::Backup)
    );

    let o1 = discover(&mut e, T0, 2, 2, &sec);
    let o2 = discover(&mut e, T0, 3, 3, &sec);
    let o3 = discover(&mut e, T0, 4, 4, &sec);
    assert_eq!(o1.msg(), Some(MessageType::Offer));
    assert_eq!(o2.msg(), Some(MessageType::Offer));
    let mut got = vec![o1.yiaddr(), o2.yiaddr()];
    got.sort();
    assert_eq!(got, handed, "only the BACKUP addresses are offered");
    assert_eq!(o3.outcome, Outcome::Silent(Counter::SilentNoAddress));
    assert_eq!(
        e.pool_counts(0),
        (2, 0),
        "offer holds leave the BACKUP pool"
    );
    // the authority was asked about the BACKUP addresses as BACKUP bindings, never about FREE ones
    let asked = sec.asked();
    assert!(!asked.is_empty());
    assert!(asked
        .iter()
        .all(|b| b.state == BindingState::Backup && handed.contains(&b.addr)));

    let ack = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Request, 2)
            .xid(0x22)
            .sid(SID)
            .requested(o1.yiaddr()),
        &sec,
    );
    assert_eq!(ack.msg(), Some(MessageType::Ack));
    let b = e.binding(o1.yiaddr()).unwrap();
    assert_eq!((b.state, b.client), (BindingState::Active, client(2)));
    assert_eq!(e.pool_counts(0), (2, 0));
}

#[test]
fn primary_never_offers_backup_addresses() {
    let mut e = engine(103, true);
    let pri = Partner::new(AllocFrom::Free);
    let backup = [ip("10.0.0.101"), ip("10.0.0.102")];
    for a in backup {
        e.install(unleased(a, BindingState::Backup));
    }
    updates(&mut e);
    assert_eq!(e.pool_counts(0), (2, 2));
    // asking for a BACKUP address gets a FREE one instead
    let o1 = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 1).requested(backup[0]),
        &pri,
    );
    assert_eq!(o1.msg(), Some(MessageType::Offer));
    let o2 = discover(&mut e, T0, 2, 2, &pri);
    let mut got = vec![o1.yiaddr(), o2.yiaddr()];
    got.sort();
    assert_eq!(got, vec![ip("10.0.0.100"), ip("10.0.0.103")]);
    let o3 = discover(&mut e, T0, 3, 3, &pri);
    assert_eq!(o3.outcome, Outcome::Silent(Counter::SilentNoAddress));
    // INIT-REBOOT into a BACKUP address is refused
    let r = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Request, 3).requested(backup[1]),
        &pri,
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    assert_eq!(e.pool_counts(0), (0, 2), "the BACKUP pool is untouched");
    for a in backup {
        assert_eq!(e.binding(a).map(|b| b.state), Some(BindingState::Backup));
    }
    assert!(updates(&mut e).is_empty());
}

#[test]
fn any_allocates_from_both_pools() {
    let mut e = engine(103, true);
    let any = Partner::new(AllocFrom::Any);
    for a in [ip("10.0.0.101"), ip("10.0.0.102")] {
        e.install(unleased(a, BindingState::Backup));
    }
    assert_eq!(e.pool_counts(0), (2, 2));
    let mut got: Vec<Ipv4Addr> = (1..=4u8).map(|m| lease_at(&mut e, T0, m, &any)).collect();
    got.sort();
    let all: Vec<Ipv4Addr> = (100..=103u8).map(|x| Ipv4Addr::new(10, 0, 0, x)).collect();
    assert_eq!(got, all);
    assert_eq!(e.pool_counts(0), (0, 0));
    let r = discover(&mut e, T0, 5, 5, &any);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));

    // without a partner there is one pool: a BACKUP binding is just free
    let mut solo = engine(103, false);
    solo.install(unleased(ip("10.0.0.101"), BindingState::Backup));
    assert_eq!(solo.pool_counts(0), (4, 0));
}

#[test]
fn ack_carries_the_grant_and_records_expiries() {
    let mut e = engine(103, true);
    let short = Partner::new(AllocFrom::Free).with_grant(Some(LeaseGrant {
        lease_secs: 600,
        potential_expiry: PE,
    }));
    let o = discover(&mut e, T0, 1, 1, &short);
    assert_eq!(
        o.times(),
        (600, 300, 525),
        "the offer carries the grant too"
    );
    let a = o.yiaddr();
    let ack = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Request, 1)
            .xid(2)
            .sid(SID)
            .requested(a),
        &short,
    );
    assert_eq!(ack.msg(), Some(MessageType::Ack));
    assert_eq!(ack.times(), (600, 300, 525));
    assert_eq!(
        short.grants(),
        vec![(LEASE, 0), (LEASE, 0)],
        "a new address has no acknowledged expiry"
    );
    let b = *e.binding(a).unwrap();
    assert_eq!(b.state, BindingState::Active);
    assert_eq!((b.start, b.expires), (T0S, T0S + 600));
    assert_eq!((b.sent_expiry, b.acked_expiry), (PE, 0));
    assert!(!b.from_partner);
    assert_eq!(updates(&mut e), vec![b]);

    // the partner acknowledges PE; a renewal later passes it to the grant and keeps it
    let mut acked = b;
    acked.acked_expiry = PE;
    e.install(acked);
    updates(&mut e);
    let later = T0.plus_secs(300);
    let pe2 = T0S + 300 + 2000;
    let renew = Partner::new(AllocFrom::Free)
        .with_cap(1000)
        .with_grant(Some(LeaseGrant {
            lease_secs: 900,
            potential_expiry: pe2,
        }));
    let r = send_at(
        &mut e,
        later,
        &Req::new(MessageType::Request, 1).xid(3).ci(a),
        &renew,
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.dest(), Destination::Unicast(SocketAddrV4::new(a, 68)));
    assert_eq!(r.times(), (900, 450, 784));
    assert_eq!(
        renew.grants(),
        vec![(1000, PE)],
        "desired lease is capped by the verdict; acked expiry from the client's binding"
    );
    let b = *e.binding(a).unwrap();
    assert_eq!(b.expires, T0S + 300 + 900);
    assert_eq!((b.sent_expiry, b.acked_expiry), (pe2, PE));
    assert_eq!(updates(&mut e), vec![b]);
}

#[test]
fn no_grant_means_no_reply_counted_as_mclt() {
    let mut e = engine(103, true);
    let ok = Partner::new(AllocFrom::Free);
    let a = lease_at(&mut e, T0, 1, &ok);
    let before = *e.binding(a).unwrap();
    updates(&mut e);
    let (free, backup) = e.pool_counts(0);
    let none = Partner::new(AllocFrom::Free).with_grant(None);
    let later = T0.plus_secs(100);
    // renewing
    let r = send_at(
        &mut e,
        later,
        &Req::new(MessageType::Request, 1).xid(5).ci(a),
        &none,
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentMclt));
    // DISCOVER of a client with a binding
    let r = discover(&mut e, later, 1, 6, &none);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentMclt));
    // INIT-REBOOT of a new client into a free address
    let r = send_at(
        &mut e,
        later,
        &Req::new(MessageType::Request, 2).requested(ip("10.0.0.103")),
        &none,
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentMclt));
    assert_eq!(e.stats().get(Counter::SilentMclt), 3);
    assert_eq!(e.stats().get(Counter::Ack), 1);
    assert_eq!(none.grants().len(), 3);
    assert!(updates(&mut e).is_empty());
    assert_eq!(e.binding(a), Some(&before), "the lease is unchanged");
    assert_eq!(e.binding(ip("10.0.0.103")), None);
    assert_eq!(e.pool_counts(0), (free, backup), "nothing taken in vain");
}

#[test]
fn new_client_discover_without_grant_is_counted_as_mclt() {
    let mut e = engine(103, true);
    let none = Partner::new(AllocFrom::Free).with_grant(None);
    let r = discover(&mut e, T0, 1, 1, &none);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentMclt));
    assert_eq!(e.stats().get(Counter::SilentMclt), 1);
    assert_eq!(e.stats().get(Counter::SilentNoAddress), 0);
    assert_eq!(e.pool_counts(0), (4, 0));
}

/// Client 1 leases .100, client 2 leases .101 and releases it, client 1's lease runs out.
/// Returns the two addresses.
fn expire_and_release(e: &mut Engine, auth: &Partner) -> (Ipv4Addr, Ipv4Addr) {
    let a = lease_at(e, T0, 1, auth);
    let b = lease_at(e, T0, 2, auth);
    assert_eq!((a, b), (ip("10.0.0.100"), ip("10.0.0.101")));
    updates(e);
    let r = send_at(
        e,
        T0,
        &Req::new(MessageType::Release, 2).ci(b).sid(SID),
        auth,
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoReply));
    e.tick(T0.plus_secs(u64::from(LEASE)));
    let mut u = updates(e);
    if e.is_replicated(0) {
        // At its end the lease stays the client's for the grace: only the release is news.
        assert_eq!(
            u.iter().map(|x| (x.addr, x.state)).collect::<Vec<_>>(),
            vec![(b, BindingState::Released)]
        );
        assert_eq!(e.binding(a).map(|x| x.state), Some(BindingState::Active));
        e.tick(T0.plus_secs(ENDED));
        u.extend(updates(e));
    }
    assert_eq!(
        u.iter().map(|x| (x.addr, x.state)).collect::<Vec<_>>(),
        vec![(b, BindingState::Released), (a, BindingState::Expired)]
    );
    assert_eq!(e.stats().get(Counter::Expired), 1);
    (a, b)
}

#[test]
fn replicated_expired_and_released_wait_for_the_partner() {
    let mut e = engine(101, true);
    let pri = Partner::new(AllocFrom::Free);
    let (a, b) = expire_and_release(&mut e, &pri);
    assert_eq!(e.pool_counts(0), (0, 0), "neither is back in a pool");
    let now = T0.plus_secs(u64::from(LEASE) + 10);
    let any = Partner::new(AllocFrom::Any);
    for (i, auth) in [&pri, &any].into_iter().enumerate() {
        let x = 10 * i as u32;
        let r = discover(&mut e, now, 3, 0x30 + x, auth);
        assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
        let r = send_at(
            &mut e,
            now,
            &Req::new(MessageType::Discover, 3)
                .xid(0x31 + x)
                .requested(a),
            auth,
        );
        assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
        for addr in [a, b] {
            let r = send_at(
                &mut e,
                now,
                &Req::new(MessageType::Request, 3)
                    .xid(0x32 + x + u32::from(addr.octets()[3]))
                    .requested(addr),
                auth,
            );
            assert_eq!(r.msg(), Some(MessageType::Nak), "{addr} is not free yet");
        }
    }
    assert!(updates(&mut e).is_empty());
    assert_eq!(e.binding(a).map(|x| x.state), Some(BindingState::Expired));
    assert_eq!(e.binding(b).map(|x| x.state), Some(BindingState::Released));

    // the partner acknowledged: the bindings turn FREE and the addresses are usable again
    e.install(unleased(a, BindingState::Free));
    assert_eq!(e.pool_counts(0), (1, 0));
    let o = discover(&mut e, now, 3, 0x40, &pri);
    assert_eq!(o.yiaddr(), a);
    e.install(unleased(b, BindingState::Free));
    assert_eq!(e.pool_counts(0), (1, 0));
    assert_eq!(lease_at(&mut e, now, 4, &pri), b);
}

#[test]
fn standalone_scope_frees_expired_and_released_at_once() {
    let mut e = engine(101, false);
    let pri = Partner::new(AllocFrom::Free);
    let (a, b) = expire_and_release(&mut e, &pri);
    assert_eq!(e.pool_counts(0), (2, 0));
    let now = T0.plus_secs(u64::from(LEASE) + 10);
    let mut got = vec![
        lease_at(&mut e, now, 3, &pri),
        lease_at(&mut e, now, 4, &pri),
    ];
    got.sort();
    assert_eq!(got, vec![a, b]);
}

#[test]
fn refused_address_is_skipped_and_stays_in_its_pool() {
    let mut e = engine(103, true);
    let no100 = Partner::new(AllocFrom::Free).with_may(|b| b.addr != ip("10.0.0.100"));
    let o = discover(&mut e, T0, 1, 1, &no100);
    assert_eq!(o.msg(), Some(MessageType::Offer));
    assert_ne!(o.yiaddr(), ip("10.0.0.100"));
    assert!(
        no100
            .asked()
            .iter()
            .any(|b| *b == Binding::empty(ip("10.0.0.100"), BindingState::Free)),
        "asked about the never-leased address as an empty FREE binding"
    );
    assert_eq!(
        e.pool_counts(0),
        (3, 0),
        "only the offered address left the pool"
    );
    // asking for it explicitly does not help
    let o2 = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 2).requested(ip("10.0.0.100")),
        &no100,
    );
    assert_eq!(o2.msg(), Some(MessageType::Offer));
    assert_ne!(o2.yiaddr(), ip("10.0.0.100"));
    let r = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Request, 3).requested(ip("10.0.0.100")),
        &no100,
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    assert_eq!(e.pool_counts(0), (2, 0));
    // refusing everything: no offer, and nothing leaves the pool
    let never = Partner::new(AllocFrom::Free).with_may(|_| false);
    let r = discover(&mut e, T0, 4, 4, &never);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
    assert_eq!(e.pool_counts(0), (2, 0));
    // once allowed, it is there
    let ok = Partner::new(AllocFrom::Free);
    let r = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 5).requested(ip("10.0.0.100")),
        &ok,
    );
    assert_eq!(r.yiaddr(), ip("10.0.0.100"));

    // the same in the BACKUP pool
    let mut s = engine(103, true);
    for x in [101u8, 102] {
        s.install(unleased(Ipv4Addr::new(10, 0, 0, x), BindingState::Backup));
    }
    let sec = Partner::new(AllocFrom::Backup).with_may(|b| b.addr != ip("10.0.0.101"));
    let o = discover(&mut s, T0, 1, 1, &sec);
    assert_eq!(o.yiaddr(), ip("10.0.0.102"));
    assert_eq!(s.pool_counts(0), (2, 1));
    let r = discover(&mut s, T0, 2, 2, &sec);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
    assert_eq!(
        s.pool_counts(0),
        (2, 1),
        "the refused address is still BACKUP"
    );
}

#[test]
fn offer_hold_over_a_backup_binding_gives_it_back() {
    let mut e = engine(101, true);
    let sec = Partner::new(AllocFrom::Backup);
    let a = ip("10.0.0.101");
    let mut prev = unleased(a, BindingState::Backup);
    prev.acked_expiry = T0S - 50;
    prev.sent_expiry = T0S - 50;
    prev.from_partner = true;
    e.install(prev);
    updates(&mut e);
    assert_eq!(e.pool_counts(0), (1, 1));
    let o = discover(&mut e, T0, 1, 1, &sec);
    assert_eq!(o.yiaddr(), a);
    assert_eq!(
        e.binding(a),
        Some(&prev),
        "the hold shows the binding it replaced"
    );
    assert_eq!(e.pool_counts(0), (1, 0));
    assert!(updates(&mut e).is_empty(), "holds are not journaled");
    // another secondary client finds nothing while the hold lasts
    let r = discover(&mut e, T0.plus_secs(10), 2, 2, &sec);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
    e.tick(T0.plus_secs(31));
    assert_eq!(e.stats().get(Counter::OfferExpired), 1);
    assert_eq!(e.binding(a), Some(&prev));
    assert_eq!(e.pool_counts(0), (1, 1), "back in the BACKUP pool");
    assert!(updates(&mut e).is_empty());
    let o = discover(&mut e, T0.plus_secs(40), 2, 3, &sec);
    assert_eq!(o.yiaddr(), a);
}

#[test]
fn offer_hold_over_an_expired_lease_gives_it_back() {
    let mut e = engine(101, true);
    let pri = Partner::new(AllocFrom::Free);
    let a = lease_at(&mut e, T0, 1, &pri);
    let exp = T0.plus_secs(ENDED);
    e.tick(exp);
    updates(&mut e);
    let prev = *e.binding(a).unwrap();
    assert_eq!(prev.state, BindingState::Expired);
    // the client comes back and is offered its old address over the EXPIRED binding
    let now = exp.plus_secs(5);
    let o = discover(&mut e, now, 1, 7, &pri);
    assert_eq!(o.yiaddr(), a);
    assert_eq!(e.binding(a), Some(&prev));
    e.tick(now.plus_secs(31));
    assert_eq!(e.stats().get(Counter::OfferExpired), 1);
    assert_eq!(e.binding(a), Some(&prev), "the EXPIRED binding is back");
    assert_eq!(e.pool_counts(0), (1, 0), "and still out of the pools");
    let r = send_at(
        &mut e,
        now.plus_secs(40),
        &Req::new(MessageType::Discover, 2).requested(a),
        &pri,
    );
    assert_eq!(
        r.yiaddr(),
        ip("10.0.0.101"),
        "another client gets another address"
    );
    // the client still has it
    let o = discover(&mut e, now.plus_secs(40), 1, 8, &pri);
    assert_eq!(o.yiaddr(), a);
}

#[test]
fn durable_listings_keep_the_binding_an_offer_hold_replaced() {
    let mut e = engine(101, true);
    let sec = Partner::new(AllocFrom::Backup);
    let a = ip("10.0.0.101");
    let prev = unleased(a, BindingState::Backup);
    e.install(prev);
    let o = discover(&mut e, T0, 1, 1, &sec);
    assert_eq!(o.yiaddr(), a);
    assert_eq!(e.binding(a), Some(&prev));
    // what the failover sweep, catch-up and UPDREQALL read
    let listed: Vec<Binding> = e.scope_bindings(0).copied().collect();
    assert_eq!(
        listed,
        vec![prev],
        "scope_bindings lists the durable binding"
    );
    // what journal compaction writes to the snapshot
    let live = crate::worker::live_bindings(&e);
    assert_eq!(
        live,
        vec![prev],
        "the journal snapshot keeps the durable binding"
    );
    // so a restart from that snapshot still has the address in the BACKUP pool
    let mut e2 = engine(101, true);
    e2.load(live, T0);
    assert_eq!(e2.pool_counts(0), (1, 1));
}

#[test]
fn partner_active_binding_belongs_to_its_client() {
    let mut e = engine(103, true);
    let pri = Partner::new(AllocFrom::Free);
    let a = ip("10.0.0.102");
    let mut x = active(a, 5, T0S + 1000);
    x.acked_expiry = T0S + 1500;
    x.sent_expiry = T0S + 1500;
    x.from_partner = true;
    e.install(x);
    assert_eq!(updates(&mut e), vec![x], "queued for the journal");
    assert_eq!(e.binding(a), Some(&x));
    assert_eq!(e.pool_counts(0), (3, 0));
    // another client: NAKed whichever way it asks, and offered something else
    for (i, r) in [
        Req::new(MessageType::Request, 6).requested(a),
        Req::new(MessageType::Request, 6)
            .xid(2)
            .sid(SID)
            .requested(a),
        Req::new(MessageType::Request, 6).xid(3).ci(a),
    ]
    .iter()
    .enumerate()
    {
        let r = send_at(&mut e, T0, r, &pri);
        assert_eq!(r.msg(), Some(MessageType::Nak), "case {i}");
    }
    let o = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 6).xid(4).requested(a),
        &pri,
    );
    assert_eq!(o.msg(), Some(MessageType::Offer));
    assert_ne!(o.yiaddr(), a);
    assert!(updates(&mut e).is_empty());
    assert_eq!(e.binding(a), Some(&x));
    // the client itself renews it
    let r = send_at(&mut e, T0, &Req::new(MessageType::Request, 5).ci(a), &pri);
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.yiaddr(), a);
    assert_eq!(pri.grants(), vec![(LEASE, 0), (LEASE, T0S + 1500)]);
    let b = *e.binding(a).unwrap();
    assert_eq!((b.state, b.client), (BindingState::Active, client(5)));
    assert_eq!(
        (b.expires, b.sent_expiry, b.acked_expiry),
        (T0S + LEASE, PE, T0S + 1500)
    );
    assert!(!b.from_partner);
    assert_eq!(updates(&mut e), vec![b]);
}

#[test]
fn partner_active_binding_is_left_to_the_sweep() {
    let mut e = engine(103, true);
    let mut x = active(ip("10.0.0.102"), 5, T0S + 100);
    x.from_partner = true;
    e.install(x);
    updates(&mut e);
    e.tick(T0.plus_secs(200));
    assert!(updates(&mut e).is_empty());
    assert_eq!(e.stats().get(Counter::Expired), 0);
    assert_eq!(e.binding(x.addr), Some(&x));
    // our own lease in the same scope does expire on the tick
    let own = active(ip("10.0.0.101"), 6, T0S + 100);
    e.install(own);
    updates(&mut e);
    e.tick(T0.plus_secs(300));
    let u = updates(&mut e);
    assert_eq!(
        u.iter().map(|b| (b.addr, b.state)).collect::<Vec<_>>(),
        vec![(own.addr, BindingState::Expired)]
    );
}

#[test]
fn reclaim_makes_an_expired_address_a_candidate() {
    let mut e = engine(100, true);
    let pd = Partner::new(AllocFrom::Any);
    let a = lease_at(&mut e, T0, 1, &pd);
    assert!(!e.reclaim(a), "an ACTIVE lease is not reclaimed");
    assert!(!e.reclaim(ip("10.0.0.50")), "no binding");
    assert!(!e.reclaim(ip("192.0.2.1")), "no scope");
    let exp = T0.plus_secs(ENDED);
    e.tick(exp);
    updates(&mut e);
    let now = exp.plus_secs(10);
    let r = discover(&mut e, now, 2, 1, &pd);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
    assert_eq!(e.pool_counts(0), (0, 0));

    assert!(e.reclaim(a));
    assert_eq!(e.pool_counts(0), (1, 0));
    assert!(
        updates(&mut e).is_empty(),
        "reclaim alone changes no binding"
    );
    // the authority still decides, looking at the EXPIRED binding
    let not_yet = Partner::new(AllocFrom::Any).with_may(|b| b.state != BindingState::Expired);
    let r = discover(&mut e, now, 2, 2, &not_yet);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
    let asked = not_yet.asked();
    assert!(asked
        .iter()
        .any(|b| b.addr == a && b.state == BindingState::Expired && b.client == client(1)));
    assert_eq!(e.pool_counts(0), (1, 0), "refused, it stays a candidate");
    let r = send_at(
        &mut e,
        now,
        &Req::new(MessageType::Request, 2).xid(3).requested(a),
        &not_yet,
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    // allowed: the next client gets it
    assert_eq!(lease_at(&mut e, now, 2, &pd), a);
    let b = e.binding(a).unwrap();
    assert_eq!((b.state, b.client), (BindingState::Active, client(2)));
    assert_eq!(e.pool_counts(0), (0, 0));
    // a RELEASED address can be reclaimed too
    let r = send_at(
        &mut e,
        now,
        &Req::new(MessageType::Release, 2).ci(a).sid(SID),
        &pd,
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoReply));
    assert_eq!(e.pool_counts(0), (0, 0));
    assert!(e.reclaim(a));
    assert_eq!(e.pool_counts(0), (1, 0));
}

#[test]
fn take_for_transfer_moves_distinct_addresses_out_of_the_pool() {
    let mut e = engine(103, true);
    let t = e.take_for_transfer(0, BindingState::Free, 3);
    assert_eq!(t.len(), 3);
    let mut addrs: Vec<Ipv4Addr> = t.iter().map(|b| b.addr).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 3, "distinct");
    for b in &t {
        assert_eq!(*b, Binding::empty(b.addr, BindingState::Free));
        assert!(AddrRange::new(ip("10.0.0.100"), ip("10.0.0.103")).contains(b.addr));
    }
    assert_eq!(e.pool_counts(0), (1, 0));
    assert!(e.take_for_transfer(0, BindingState::Backup, 2).is_empty());
    assert!(e.take_for_transfer(7, BindingState::Free, 2).is_empty());
    // the taken addresses are no one's to offer now
    let pri = Partner::new(AllocFrom::Any);
    let o = discover(&mut e, T0, 1, 1, &pri);
    assert!(!addrs.contains(&o.yiaddr()));
    let r = discover(&mut e, T0, 2, 2, &pri);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
    assert!(updates(&mut e).is_empty());
    // the caller installs them in the partner's pool
    for b in &t {
        e.install(unleased(b.addr, BindingState::Backup));
    }
    assert_eq!(e.pool_counts(0), (0, 3));
    let back = e.take_for_transfer(0, BindingState::Backup, 5);
    assert_eq!(back.len(), 3, "only what the pool holds");
    let mut again: Vec<Ipv4Addr> = back.iter().map(|b| b.addr).collect();
    again.sort();
    assert_eq!(again, addrs);
    assert!(back
        .iter()
        .all(|b| *b == unleased(b.addr, BindingState::Backup)));
    assert_eq!(e.pool_counts(0), (0, 0));
}

#[test]
fn client_gets_its_just_expired_address_back() {
    let mut e = engine(101, true);
    let pri = Partner::new(AllocFrom::Free);
    let a = lease_at(&mut e, T0, 1, &pri);
    let b = lease_at(&mut e, T0, 2, &pri);
    // the partner acknowledged both
    for addr in [a, b] {
        let mut x = *e.binding(addr).unwrap();
        x.acked_expiry = x.sent_expiry;
        e.install(x);
    }
    let exp = T0.plus_secs(ENDED);
    e.tick(exp);
    updates(&mut e);
    assert_eq!(e.binding(a).unwrap().state, BindingState::Expired);
    assert_eq!(e.binding(b).unwrap().state, BindingState::Expired);
    let now = exp.plus_secs(20);
    let auth = Partner::new(AllocFrom::Free);
    // client 1 renews (INIT-REBOOT) its expired address
    let r = send_at(
        &mut e,
        now,
        &Req::new(MessageType::Request, 1).xid(11).requested(a),
        &auth,
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.yiaddr(), a);
    // client 2 goes through DISCOVER
    let o = discover(&mut e, now, 2, 12, &auth);
    assert_eq!(o.yiaddr(), b);
    let r = send_at(
        &mut e,
        now,
        &Req::new(MessageType::Request, 2)
            .xid(13)
            .sid(SID)
            .requested(b),
        &auth,
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.yiaddr(), b);
    assert_eq!(
        auth.grants(),
        vec![(LEASE, PE), (LEASE, PE), (LEASE, PE)],
        "the acknowledged expiry of the client's own binding is passed on"
    );
    let now_s = now.secs() as u32;
    for (addr, c) in [(a, 1), (b, 2)] {
        let x = e.binding(addr).unwrap();
        assert_eq!((x.state, x.client), (BindingState::Active, client(c)));
        assert_eq!(
            (x.expires, x.acked_expiry, x.sent_expiry),
            (now_s + LEASE, PE, PE)
        );
    }
    assert_eq!(updates(&mut e).len(), 2);
    // with renewals only (no new allocations), an expired lease is not revived
    let mut e2 = engine(101, true);
    let a2 = lease_at(&mut e2, T0, 1, &pri);
    e2.tick(exp);
    let renew_only = Partner::new(AllocFrom::Nothing);
    let r = send_at(
        &mut e2,
        now,
        &Req::new(MessageType::Request, 1).xid(14).requested(a2),
        &renew_only,
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    assert_eq!(e2.binding(a2).unwrap().state, BindingState::Expired);
}

#[test]
fn silent_verdict_still_takes_releases() {
    let mut e = engine(101, true);
    let pri = Partner::new(AllocFrom::Free);
    let a = lease_at(&mut e, T0, 1, &pri);
    updates(&mut e);
    let quiet = Partner::new(AllocFrom::Free).silent();
    let r = discover(&mut e, T0, 2, 2, &quiet);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentPartner));
    let r = send_at(&mut e, T0, &Req::new(MessageType::Release, 1).ci(a), &quiet);
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoReply));
    let u = updates(&mut e);
    assert_eq!(
        u.iter().map(|b| (b.addr, b.state)).collect::<Vec<_>>(),
        vec![(a, BindingState::Released)]
    );
    assert_eq!(e.pool_counts(0), (1, 0), "released, not yet free");
    assert!(quiet.grants().is_empty() && quiet.asked().is_empty());
}

#[test]
fn late_renewal_in_the_grace_keeps_the_address() {
    let mut e = engine(101, true);
    let pri = Partner::new(AllocFrom::Free);
    let a = lease_at(&mut e, T0, 1, &pri);
    updates(&mut e);
    // Ended 5 s ago (busybox udhcpc renews a short lease late): still the client's.
    let late = T0.plus_secs(u64::from(LEASE) + 5);
    e.tick(late);
    assert!(updates(&mut e).is_empty(), "no EXPIRED inside the grace");
    assert_eq!(e.stats().get(Counter::Expired), 0);
    let r = send_at(
        &mut e,
        late,
        &Req::new(MessageType::Request, 1).xid(21).ci(a),
        &pri,
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.yiaddr(), a);
    let x = *e.binding(a).unwrap();
    assert_eq!((x.state, x.client), (BindingState::Active, client(1)));
    assert_eq!(updates(&mut e), vec![x], "the renewal goes to the partner");
    // The renewed lease expires at its own end plus the grace; the old timers do nothing.
    e.tick(T0.plus_secs(ENDED + 1));
    assert!(
        updates(&mut e).is_empty(),
        "the first lease's timers are superseded"
    );
    let end = u64::from(x.expires - T0S);
    e.tick(T0.plus_secs(end + u64::from(REPLICATED_EXPIRY_GRACE_SECS)));
    let u = updates(&mut e);
    assert_eq!(
        u.iter().map(|b| (b.addr, b.state)).collect::<Vec<_>>(),
        vec![(a, BindingState::Expired)]
    );
}
