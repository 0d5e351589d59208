//! Engine state per message type, reservations, policies, relays, duplicates, expiry.
//!
//! The request builder, the reply reader and the constants are shared with `failover_tests`.

use super::*;
use crate::authority::{Standalone, Verdict};
use crate::scope::{Condition, Matcher, OptionSet, Reservation, ReservationKey, Subnet};
use crate::wire::tests::frame;

pub(super) const SID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const Z: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
pub(super) const T0: Time = Time(1_800_000_000_000);

pub(super) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(super) fn scope(name: &str, net: &str, prefix: u8, lo: &str, hi: &str) -> Scope {
    let mut options = OptionSet::new();
    let mut router = ip(net).octets();
    router[3] = 1;
    options.set(3, router.to_vec());
    Scope {
        name: name.into(),
        subnet: Subnet {
            network: ip(net),
            prefix,
        },
        ranges: vec![AddrRange::new(ip(lo), ip(hi))],
        exclusions: vec![],
        reservations: vec![],
        lease_time: 3600,
        renew_time: None,
        rebind_time: None,
        options,
        policies: vec![],
        authoritative: true,
        ddns: None,
    }
}

pub(super) fn settings(scopes: Vec<Scope>) -> ServerSettings {
    let mut global = OptionSet::new();
    global.set(6, vec![10, 0, 0, 53]);
    global.set(15, b"example.test".to_vec());
    ServerSettings {
        server_id: SID,
        global_options: global,
        scopes,
        offer_hold_secs: 30,
        decline_probation_secs: 600,
        duplicate_window_ms: 2000,
    }
}

fn engine_with(s: ServerSettings) -> Engine {
    let n = s.scopes.len();
    Engine::new(
        Arc::new(s),
        vec![(0..n).collect()],
        0,
        1,
        Arc::new(Stats::default()),
    )
}

fn engine() -> Engine {
    engine_with(settings(vec![
        scope("lan", "10.0.0.0", 24, "10.0.0.100", "10.0.0.110"),
        scope("remote", "10.9.0.0", 24, "10.9.0.100", "10.9.0.110"),
    ]))
}

/// A request builder.
#[derive(Clone)]
pub(super) struct Req {
    mac: [u8; 6],
    xid: u32,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    flags: u16,
    opts: Vec<u8>,
}

impl Req {
    pub(super) fn new(mt: MessageType, mac_last: u8) -> Req {
        Req {
            mac: [0x52, 0x54, 0, 0, 0, mac_last],
            xid: 0x1000 + u32::from(mac_last),
            ciaddr: Z,
            giaddr: Z,
            flags: 0x8000,
            opts: vec![53, 1, mt as u8],
        }
    }
    pub(super) fn mac(mut self, mac: [u8; 6]) -> Req {
        self.mac = mac;
        self
    }
    pub(super) fn opt(mut self, code: u8, v: &[u8]) -> Req {
        self.opts.push(code);
        self.opts.push(v.len() as u8);
        self.opts.extend_from_slice(v);
        self
    }
    pub(super) fn requested(self, a: Ipv4Addr) -> Req {
        self.opt(50, &a.octets())
    }
    pub(super) fn sid(self, a: Ipv4Addr) -> Req {
        self.opt(54, &a.octets())
    }
    pub(super) fn ci(mut self, a: Ipv4Addr) -> Req {
        self.ciaddr = a;
        self
    }
    fn gi(mut self, a: Ipv4Addr) -> Req {
        self.giaddr = a;
        self
    }
    pub(super) fn xid(mut self, x: u32) -> Req {
        self.xid = x;
        self
    }
    pub(super) fn bytes(&self) -> Vec<u8> {
        frame(
            1,
            &self.mac,
            self.xid,
            self.ciaddr,
            self.giaddr,
            self.flags,
            &self.opts,
        )
    }
}

pub(super) struct Reply {
    pub(super) outcome: Outcome,
    pub(super) buf: Vec<u8>,
}

impl Reply {
    pub(super) fn msg(&self) -> Option<MessageType> {
        match self.outcome {
            Outcome::Reply { msg, .. } => Some(msg),
            _ => None,
        }
    }
    pub(super) fn dest(&self) -> Destination {
        match self.outcome {
            Outcome::Reply { dest, .. } => dest,
            o => panic!("no reply: {o:?}"),
        }
    }
    pub(super) fn yiaddr(&self) -> Ipv4Addr {
        assert!(self.msg().is_some(), "no reply: {:?}", self.outcome);
        Ipv4Addr::new(self.buf[16], self.buf[17], self.buf[18], self.buf[19])
    }
    /// Options of the reply as (code, value), in order.
    fn options(&self) -> Vec<(u8, Vec<u8>)> {
        let mut v = vec![];
        let mut i = 240;
        while i < self.buf.len() && self.buf[i] != 255 {
            if self.buf[i] == 0 {
                i += 1;
                continue;
            }
            let l = self.buf[i + 1] as usize;
            v.push((self.buf[i], self.buf[i + 2..i + 2 + l].to_vec()));
            i += 2 + l;
        }
        v
    }
    pub(super) fn option(&self, code: u8) -> Option<Vec<u8>> {
        self.options()
            .into_iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v)
    }
    fn lease(&self) -> u32 {
        self.u32_option(51)
    }
    fn u32_option(&self, code: u8) -> u32 {
        u32::from_be_bytes(self.option(code).unwrap().try_into().unwrap())
    }
    /// Lease time, T1 and T2 (options 51, 58, 59).
    pub(super) fn times(&self) -> (u32, u32, u32) {
        (
            self.u32_option(51),
            self.u32_option(58),
            self.u32_option(59),
        )
    }
}

pub(super) fn send_at(e: &mut Engine, now: Time, r: &Req, auth: &impl Authority) -> Reply {
    let mut buf = vec![0u8; 1500];
    let meta = RxMeta {
        iface: 0,
        src: SocketAddrV4::new(r.ciaddr, 68),
    };
    let outcome = e.handle(now, &meta, &r.bytes(), &mut buf, auth);
    if let Outcome::Reply { len, .. } = outcome {
        buf.truncate(len);
    }
    Reply { outcome, buf }
}

fn send(e: &mut Engine, r: &Req) -> Reply {
    send_at(e, T0, r, &Standalone)
}

pub(super) fn updates(e: &mut Engine) -> Vec<Binding> {
    e.take_updates().collect()
}

/// DISCOVER then REQUEST; returns the ACKed address.
fn lease(e: &mut Engine, mac_last: u8) -> Ipv4Addr {
    let offer = send(e, &Req::new(MessageType::Discover, mac_last));
    assert_eq!(offer.msg(), Some(MessageType::Offer));
    let ack = send(
        e,
        &Req::new(MessageType::Request, mac_last)
            .xid(0x9000 + u32::from(mac_last))
            .sid(SID)
            .requested(offer.yiaddr()),
    );
    assert_eq!(ack.msg(), Some(MessageType::Ack));
    ack.yiaddr()
}

#[test]
fn discover_gets_offer_with_options() {
    let mut e = engine();
    let r = send(&mut e, &Req::new(MessageType::Discover, 1));
    assert_eq!(r.msg(), Some(MessageType::Offer));
    assert!(AddrRange::new(ip("10.0.0.100"), ip("10.0.0.110")).contains(r.yiaddr()));
    assert_eq!(r.buf[0], 2);
    assert_eq!(&r.buf[4..8], &0x1001u32.to_be_bytes());
    assert_eq!(r.option(54), Some(SID.octets().to_vec()));
    assert_eq!(r.lease(), 3600);
    assert_eq!(r.option(58), Some(1800u32.to_be_bytes().to_vec()));
    assert_eq!(r.option(59), Some(3150u32.to_be_bytes().to_vec()));
    assert_eq!(r.option(1), Some(vec![255, 255, 255, 0]));
    assert_eq!(r.option(3), Some(vec![10, 0, 0, 1]));
    assert_eq!(r.option(6), Some(vec![10, 0, 0, 53]));
    assert_eq!(r.dest(), Destination::Broadcast { iface: 0 });
    assert!(updates(&mut e).is_empty(), "offers are not journaled");
}

#[test]
fn parameter_request_list_filters_and_orders() {
    let mut e = engine();
    let r = send(
        &mut e,
        &Req::new(MessageType::Discover, 1).opt(55, &[15, 1, 3]),
    );
    let codes: Vec<u8> = r.options().iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, vec![53, 54, 51, 58, 59, 1, 15, 3]);
}

#[test]
fn selecting_request_acks_and_journals() {
    let mut e = engine();
    let a = lease(&mut e, 1);
    let u = updates(&mut e);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].addr, a);
    assert_eq!(u[0].state, BindingState::Active);
    assert_eq!(u[0].expires as u64, T0.secs() + 3600);
    assert_eq!(u[0].hw(), &[0x52, 0x54, 0, 0, 0, 1]);
    assert_eq!(e.stats().get(Counter::Ack), 1);
}

#[test]
fn request_for_another_server_releases_the_hold() {
    let mut e = engine();
    let offer = send(&mut e, &Req::new(MessageType::Discover, 1));
    let (free_before, _) = e.pool_usage(0).unwrap();
    let r = send(
        &mut e,
        &Req::new(MessageType::Request, 1)
            .sid(ip("10.0.0.2"))
            .requested(offer.yiaddr()),
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentOtherServer));
    assert_eq!(e.pool_usage(0).unwrap().0, free_before + 1);
}

#[test]
fn offer_is_held_for_its_client_only_until_hold_ends() {
    let mut e = engine_with(settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.100",
    )]));
    let o1 = send(&mut e, &Req::new(MessageType::Discover, 1));
    assert_eq!(o1.yiaddr(), ip("10.0.0.100"));
    // another client gets nothing while the hold lasts, even asking for it
    let o2 = send(
        &mut e,
        &Req::new(MessageType::Discover, 2).requested(ip("10.0.0.100")),
    );
    assert_eq!(o2.outcome, Outcome::Silent(Counter::SilentNoAddress));
    let r2 = send(
        &mut e,
        &Req::new(MessageType::Request, 2)
            .sid(SID)
            .requested(ip("10.0.0.100")),
    );
    assert_eq!(r2.msg(), Some(MessageType::Nak));
    // the same client gets the same offer again
    let o1b = send(&mut e, &Req::new(MessageType::Discover, 1).xid(77));
    assert_eq!(o1b.yiaddr(), ip("10.0.0.100"));
    e.tick(T0.plus_secs(31));
    assert_eq!(e.stats().get(Counter::OfferExpired), 1);
    let o3 = send_at(
        &mut e,
        T0.plus_secs(32),
        &Req::new(MessageType::Discover, 3),
        &Standalone,
    );
    assert_eq!(o3.yiaddr(), ip("10.0.0.100"));
}

#[test]
fn init_reboot_renew_rebind() {
    let mut e = engine();
    let a = lease(&mut e, 1);
    updates(&mut e);
    // INIT-REBOOT for its own address
    let r = send(
        &mut e,
        &Req::new(MessageType::Request, 1).xid(5).requested(a),
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.yiaddr(), a);
    // INIT-REBOOT on the wrong network: NAK (authoritative)
    let r = send(
        &mut e,
        &Req::new(MessageType::Request, 1)
            .xid(6)
            .requested(ip("192.168.1.5")),
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    assert_eq!(r.dest(), Destination::Broadcast { iface: 0 });
    assert_eq!(r.yiaddr(), Z);
    // another client's address: NAK
    let b = lease(&mut e, 2);
    let r = send(
        &mut e,
        &Req::new(MessageType::Request, 1).xid(7).requested(b),
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    updates(&mut e);
    // RENEWING: unicast from ciaddr, ACK unicast back, expiry extended
    let later = T0.plus_secs(1800);
    let r = send_at(
        &mut e,
        later,
        &Req::new(MessageType::Request, 1).xid(8).ci(a),
        &Standalone,
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.dest(), Destination::Unicast(SocketAddrV4::new(a, 68)));
    assert_eq!(&r.buf[12..16], &a.octets());
    let u = updates(&mut e);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].expires as u64, later.secs() + 3600);
    // REBINDING with ciaddr for an address we have no record of, non-authoritative: silent
    let mut s = settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.110",
    )]);
    s.scopes[0].authoritative = false;
    let mut e2 = engine_with(s);
    let r = send(
        &mut e2,
        &Req::new(MessageType::Request, 3).ci(ip("10.0.0.50")),
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNotAuthoritative));
    // authoritative: NAK for an address outside the pool
    let mut e3 = engine();
    let r = send(
        &mut e3,
        &Req::new(MessageType::Request, 3).ci(ip("10.0.0.50")),
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
}

#[test]
fn init_reboot_of_a_free_address_is_reinstated() {
    // A client whose lease the server forgot (e.g. restored from an old backup) keeps its address.
    let mut e = engine();
    let r = send(
        &mut e,
        &Req::new(MessageType::Request, 9).requested(ip("10.0.0.105")),
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(updates(&mut e).len(), 1);
}

#[test]
fn release_frees_the_address_and_is_journaled() {
    let mut e = engine_with(settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.100",
    )]));
    let a = lease(&mut e, 1);
    updates(&mut e);
    let r = send(&mut e, &Req::new(MessageType::Release, 1).ci(a).sid(SID));
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoReply));
    let u = updates(&mut e);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, BindingState::Released);
    // releasing again or by another client changes nothing
    let r = send(&mut e, &Req::new(MessageType::Release, 2).ci(a));
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentUnknownLease));
    assert!(updates(&mut e).is_empty());
    // the address is free for someone else now
    assert_eq!(lease(&mut e, 2), a);
}

#[test]
fn decline_quarantines_until_probation_ends() {
    let mut e = engine_with(settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.101",
    )]));
    let a = lease(&mut e, 1);
    updates(&mut e);
    let r = send(
        &mut e,
        &Req::new(MessageType::Decline, 1).requested(a).sid(SID),
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoReply));
    let u = updates(&mut e);
    assert_eq!(u[0].state, BindingState::Abandoned);
    // neither the decliner nor anyone else is offered it during probation
    for (i, mac) in [1u8, 2, 3].iter().enumerate() {
        let now = T0.plus_secs(10 + i as u64 * 100);
        e.tick(now);
        let o = send_at(
            &mut e,
            now,
            &Req::new(MessageType::Discover, *mac).xid(i as u32),
            &Standalone,
        );
        if let Some(MessageType::Offer) = o.msg() {
            assert_ne!(o.yiaddr(), a);
        }
    }
    e.tick(T0.plus_secs(601));
    assert_eq!(e.stats().get(Counter::ProbationEnded), 1);
    let u = updates(&mut e);
    assert!(u
        .iter()
        .any(|b| b.addr == a && b.state == BindingState::Free));
    let now = T0.plus_secs(700);
    let o = send_at(
        &mut e,
        now,
        &Req::new(MessageType::Discover, 4).requested(a),
        &Standalone,
    );
    assert_eq!(o.yiaddr(), a);
}

#[test]
fn inform_gets_options_without_lease() {
    let mut e = engine();
    let r = send(
        &mut e,
        &Req::new(MessageType::Inform, 1).ci(ip("10.0.0.20")),
    );
    assert_eq!(r.msg(), Some(MessageType::Ack));
    assert_eq!(r.yiaddr(), Z);
    assert_eq!(r.option(51), None);
    assert_eq!(r.option(6), Some(vec![10, 0, 0, 53]));
    assert_eq!(
        r.dest(),
        Destination::Unicast(SocketAddrV4::new(ip("10.0.0.20"), 68))
    );
    assert!(updates(&mut e).is_empty());
}

#[test]
fn relayed_requests_use_giaddr_scope_and_echo_option_82() {
    let mut e = engine();
    let ri = [1u8, 3, b'e', b't', b'h', 2, 2, 0xab, 0xcd];
    let r = send(
        &mut e,
        &Req::new(MessageType::Discover, 1)
            .gi(ip("10.9.0.1"))
            .opt(82, &ri),
    );
    assert_eq!(r.msg(), Some(MessageType::Offer));
    assert!(AddrRange::new(ip("10.9.0.100"), ip("10.9.0.110")).contains(r.yiaddr()));
    assert_eq!(
        r.dest(),
        Destination::Relay(SocketAddrV4::new(ip("10.9.0.1"), 67))
    );
    assert_eq!(&r.buf[24..28], &[10, 9, 0, 1]);
    let opts = r.options();
    assert_eq!(
        opts.last().unwrap(),
        &(82u8, ri.to_vec()),
        "option 82 echoed unchanged, last"
    );
    // link selection overrides giaddr
    let r = send(
        &mut e,
        &Req::new(MessageType::Discover, 2)
            .gi(ip("192.0.2.1"))
            .opt(82, &[5, 4, 10, 0, 0, 0]),
    );
    assert!(AddrRange::new(ip("10.0.0.100"), ip("10.0.0.110")).contains(r.yiaddr()));
    assert_eq!(
        r.dest(),
        Destination::Relay(SocketAddrV4::new(ip("192.0.2.1"), 67))
    );
    // unknown relay link: dropped, counted
    let r = send(
        &mut e,
        &Req::new(MessageType::Discover, 3).gi(ip("192.0.2.1")),
    );
    assert_eq!(r.outcome, Outcome::Drop(Counter::DropNoScope));
    // NAK through a relay has the broadcast bit
    let r = send(
        &mut e,
        &Req::new(MessageType::Request, 4)
            .gi(ip("10.9.0.1"))
            .requested(ip("10.9.0.7")),
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
    assert_eq!(r.buf[10] & 0x80, 0x80);
}

#[test]
fn duplicates_from_two_relays_give_one_decision() {
    let mut e = engine();
    let d1 = send(
        &mut e,
        &Req::new(MessageType::Discover, 1).gi(ip("10.9.0.1")),
    );
    let d2 = send(
        &mut e,
        &Req::new(MessageType::Discover, 1).gi(ip("10.9.0.2")),
    );
    assert_eq!(d1.yiaddr(), d2.yiaddr());
    assert_eq!(e.pool_usage(1).unwrap().0, 10, "one hold only");
    let req = Req::new(MessageType::Request, 1)
        .xid(42)
        .sid(SID)
        .requested(d1.yiaddr());
    let a1 = send(&mut e, &req.clone().gi(ip("10.9.0.1")));
    let a2 = send(&mut e, &req.clone().gi(ip("10.9.0.2")));
    assert_eq!(a1.msg(), Some(MessageType::Ack));
    assert_eq!(updates(&mut e).len(), 1, "one journal record");
    let (mut b1, mut b2) = (a1.buf.clone(), a2.buf.clone());
    b1[24..28].fill(0);
    b2[24..28].fill(0);
    assert_eq!(b1, b2, "identical answers apart from giaddr");
    assert_eq!(
        a2.dest(),
        Destination::Relay(SocketAddrV4::new(ip("10.9.0.2"), 67))
    );
    assert_eq!(e.stats().get(Counter::Duplicate), 2);
    assert_eq!(e.stats().get(Counter::DuplicateOtherRelay), 2);
    // after the window the same xid is a new request (a real retransmission much later)
    e.tick(T0.plus_secs(5));
    let a3 = send_at(
        &mut e,
        T0.plus_secs(5),
        &req.clone().gi(ip("10.9.0.1")),
        &Standalone,
    );
    assert_eq!(a3.msg(), Some(MessageType::Ack));
    assert_eq!(updates(&mut e).len(), 1);
}

#[test]
fn reservations_by_mac_and_client_id() {
    let mut s = settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.110",
    )]);
    s.scopes[0].reservations = vec![
        Reservation {
            key: ReservationKey::Mac([0x52, 0x54, 0, 0, 0, 1]),
            addr: ip("10.0.0.50"),
            hostname: Some("printer".into()),
            options: OptionSet::new(),
        },
        Reservation {
            key: ReservationKey::ClientId(vec![0xff, 1, 2, 3]),
            addr: ip("10.0.0.105"),
            hostname: None,
            options: OptionSet::new(),
        },
    ];
    let mut e = engine_with(s);
    let o = send(
        &mut e,
        &Req::new(MessageType::Discover, 1).opt(55, &[12, 3]),
    );
    assert_eq!(o.yiaddr(), ip("10.0.0.50"));
    assert_eq!(o.option(12), Some(b"printer".to_vec()));
    assert_eq!(lease(&mut e, 1), ip("10.0.0.50"));
    let o = send(
        &mut e,
        &Req::new(MessageType::Discover, 2).opt(61, &[0xff, 1, 2, 3]),
    );
    assert_eq!(o.yiaddr(), ip("10.0.0.105"));
    // nobody else is ever given the reserved addresses
    for m in 10..20u8 {
        let o = send(&mut e, &Req::new(MessageType::Discover, m));
        assert_ne!(o.yiaddr(), ip("10.0.0.105"));
        assert_ne!(o.yiaddr(), ip("10.0.0.50"));
    }
    // a reserved client asking for another address is NAKed
    let r = send(
        &mut e,
        &Req::new(MessageType::Request, 1)
            .xid(3)
            .requested(ip("10.0.0.101")),
    );
    assert_eq!(r.msg(), Some(MessageType::Nak));
}

#[test]
fn policy_by_vendor_class_restricts_range_and_sets_options() {
    let mut s = settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.110",
    )]);
    let mut popts = OptionSet::new();
    popts.set(42, vec![10, 0, 0, 123]);
    s.scopes[0].policies = vec![Policy {
        name: "phones".into(),
        order: 1,
        conditions: vec![Condition {
            criterion: Criterion::VendorClass,
            matchers: vec![Matcher::Prefix(b"Polycom".to_vec())],
            negate: false,
        }],
        combine: Combine::All,
        ranges: vec![AddrRange::new(ip("10.0.0.108"), ip("10.0.0.110"))],
        options: popts,
        lease_time: Some(600),
    }];
    let mut e = engine_with(s);
    for m in 1..=3u8 {
        let o = send(
            &mut e,
            &Req::new(MessageType::Discover, m).opt(60, b"Polycom-VVX"),
        );
        assert!(AddrRange::new(ip("10.0.0.108"), ip("10.0.0.110")).contains(o.yiaddr()));
        assert_eq!(o.lease(), 600);
        assert_eq!(o.option(42), Some(vec![10, 0, 0, 123]));
    }
    let o = send(
        &mut e,
        &Req::new(MessageType::Discover, 4).opt(60, b"Polycom-VVX"),
    );
    assert_eq!(
        o.outcome,
        Outcome::Silent(Counter::SilentNoAddress),
        "policy range exhausted"
    );
    for m in 10..18u8 {
        let o = send(
            &mut e,
            &Req::new(MessageType::Discover, m).opt(60, b"MSFT 5.0"),
        );
        assert!(!AddrRange::new(ip("10.0.0.108"), ip("10.0.0.110")).contains(o.yiaddr()));
        assert_eq!(o.option(42), None);
        assert_eq!(o.lease(), 3600);
    }
    // negated and MAC-prefix conditions
    let p = Policy {
        name: "n".into(),
        order: 1,
        conditions: vec![
            Condition {
                criterion: Criterion::Mac,
                matchers: vec![Matcher::Prefix(vec![0x52, 0x54])],
                negate: false,
            },
            Condition {
                criterion: Criterion::UserClass,
                matchers: vec![Matcher::Exact(b"x".to_vec())],
                negate: true,
            },
        ],
        combine: Combine::All,
        ranges: vec![],
        options: OptionSet::new(),
        lease_time: None,
    };
    let f1 = Req::new(MessageType::Discover, 1).bytes();
    assert!(policy_matches(&p, &Request::parse(&f1).unwrap()));
    let f2 = Req::new(MessageType::Discover, 1).opt(77, b"x").bytes();
    assert!(!policy_matches(&p, &Request::parse(&f2).unwrap()));
}

#[test]
fn client_id_is_the_identity_when_present() {
    let mut e = engine();
    let a = lease(&mut e, 1);
    // same MAC, different client id: a different client
    let o = send(
        &mut e,
        &Req::new(MessageType::Discover, 1)
            .xid(99)
            .opt(61, &[1, 2, 3]),
    );
    assert_ne!(o.yiaddr(), a);
}

#[test]
fn leases_expire_back_to_the_pool() {
    let mut e = engine_with(settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.100",
    )]));
    let a = lease(&mut e, 1);
    updates(&mut e);
    assert!(e.next_timer().is_some());
    e.tick(T0.plus_secs(3599));
    assert!(updates(&mut e).is_empty());
    e.tick(T0.plus_secs(3600));
    let u = updates(&mut e);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, BindingState::Expired);
    assert_eq!(e.pool_usage(0).unwrap().0, 1);
    // the same client comes back and gets its old address (affinity)
    let o = send_at(
        &mut e,
        T0.plus_secs(4000),
        &Req::new(MessageType::Discover, 1).xid(5),
        &Standalone,
    );
    assert_eq!(o.yiaddr(), a);
}

#[test]
fn renewal_supersedes_the_old_expiry() {
    let mut e = engine();
    let a = lease(&mut e, 1);
    let later = T0.plus_secs(3000);
    send_at(
        &mut e,
        later,
        &Req::new(MessageType::Request, 1).xid(3).ci(a),
        &Standalone,
    );
    updates(&mut e);
    e.tick(T0.plus_secs(3601));
    assert!(
        updates(&mut e).is_empty(),
        "old expiry is stale after renewal"
    );
    e.tick(later.plus_secs(3600));
    assert_eq!(updates(&mut e)[0].state, BindingState::Expired);
}

#[test]
fn load_and_reconfigure_keep_bindings() {
    let mut e = engine();
    let a = lease(&mut e, 1);
    let b = lease(&mut e, 2);
    let mut recs = updates(&mut e);
    // a lease that ran out while down
    recs[1].expires = (T0.secs() - 10) as u32;
    let mut e2 = engine();
    e2.load(recs, T0);
    let u = updates(&mut e2);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].addr, u[0].state), (b, BindingState::Expired));
    let r = send(&mut e2, &Req::new(MessageType::Request, 1).xid(3).ci(a));
    assert_eq!(r.msg(), Some(MessageType::Ack));
    // reload with the lan range moved: the binding survives and is listed
    let s2 = settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.120",
        "10.0.0.130",
    )]);
    e2.reconfigure(Arc::new(s2), vec![vec![0]]);
    assert!(e2
        .bindings()
        .any(|(sc, x)| sc == "lan" && x.addr == a && x.state == BindingState::Active));
    // another scope removed entirely: its bindings are kept aside, still listed
    let s3 = settings(vec![scope(
        "other",
        "10.5.0.0",
        24,
        "10.5.0.10",
        "10.5.0.20",
    )]);
    e2.reconfigure(Arc::new(s3), vec![vec![0]]);
    assert!(e2.bindings().any(|(sc, x)| sc.is_empty() && x.addr == a));
}

struct Fixed(Verdict);
impl Authority for Fixed {
    fn verdict(&self, _: usize, _: u8, _: bool, _: Time) -> Verdict {
        self.0
    }
}

#[test]
fn authority_verdicts_are_obeyed() {
    let mut e = engine();
    let r = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 1),
        &Fixed(Verdict::SILENT),
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentPartner));
    let capped = Verdict {
        answer: true,
        alloc: AllocFrom::Any,
        lease_cap_secs: Some(300),
    };
    let r = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 2),
        &Fixed(capped),
    );
    assert_eq!(r.lease(), 300);
    assert_eq!(r.option(58), Some(150u32.to_be_bytes().to_vec()));
    let renew_only = Verdict {
        answer: true,
        alloc: AllocFrom::Nothing,
        lease_cap_secs: None,
    };
    let r = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 3),
        &Fixed(renew_only),
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::SilentNoAddress));
}

#[test]
fn malformed_frames_are_counted_and_dropped() {
    let mut e = engine();
    let mut buf = vec![0u8; 1500];
    let meta = RxMeta {
        iface: 0,
        src: SocketAddrV4::new(Z, 68),
    };
    let mut f = Req::new(MessageType::Discover, 1).bytes();
    f[2] = 17;
    assert_eq!(
        e.handle(T0, &meta, &f, &mut buf, &Standalone),
        Outcome::Drop(Counter::DropBadHlen)
    );
    assert_eq!(
        e.handle(T0, &meta, &f[..100], &mut buf, &Standalone),
        Outcome::Drop(Counter::DropTruncated)
    );
    let mut pad = Req::new(MessageType::Discover, 1).bytes();
    pad.truncate(240);
    pad.extend(std::iter::repeat_n(0, 1500));
    assert_eq!(
        e.handle(T0, &meta, &pad, &mut buf, &Standalone),
        Outcome::Drop(Counter::DropMissingMessageType)
    );
    let r = Req {
        opts: vec![53, 1, 3],
        ..Req::new(MessageType::Request, 1)
    };
    assert_eq!(
        send(&mut e, &r).outcome,
        Outcome::Silent(Counter::DropBadRequest)
    );
    assert_eq!(e.stats().get(Counter::DropBadHlen), 1);
    assert_eq!(e.stats().get(Counter::Received), 4);
}

#[test]
fn handoff_to_the_bucket_owner() {
    let s = Arc::new(settings(vec![scope(
        "lan",
        "10.0.0.0",
        24,
        "10.0.0.100",
        "10.0.0.200",
    )]));
    let mut e0 = Engine::new(s.clone(), vec![vec![0]], 0, 2, Arc::new(Stats::default()));
    let mut e1 = Engine::new(s, vec![vec![0]], 1, 2, Arc::new(Stats::default()));
    let mut handed = 0;
    for m in 0..20u8 {
        let f = Req::new(MessageType::Discover, m).bytes();
        let owner = e0.bucket_owner(client_bucket(&Request::parse(&f).unwrap()));
        let mut buf = vec![0u8; 1500];
        let meta = RxMeta {
            iface: 0,
            src: SocketAddrV4::new(Z, 68),
        };
        let (mine, other) = if owner == 0 {
            (&mut e0, &mut e1)
        } else {
            (&mut e1, &mut e0)
        };
        assert_eq!(
            other.handle(T0, &meta, &f, &mut buf, &Standalone),
            Outcome::Handoff(owner)
        );
        handed += 1;
        let out = mine.handle(T0, &meta, &f, &mut buf, &Standalone);
        assert!(
            matches!(
                out,
                Outcome::Reply {
                    msg: MessageType::Offer,
                    ..
                }
            ),
            "{out:?}"
        );
        // each worker allocates from its own half of the range only
        let y = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
        assert_eq!(
            u32::from(y) < u32::from(ip("10.0.0.150")),
            owner == 0,
            "{y} from shard {owner}"
        );
    }
    assert_eq!(handed, 20);
}

/// Sends raw request bytes (a [`Req`] edited by the test).
fn send_raw(e: &mut Engine, now: Time, bytes: &[u8]) -> Outcome {
    let mut buf = vec![0u8; 1500];
    let meta = RxMeta {
        iface: 0,
        src: SocketAddrV4::new(Z, 68),
    };
    e.handle(now, &meta, bytes, &mut buf, &Standalone)
}

/// Identities the RFCs call invalid are counted drops with their own reason; with
/// `strict_identity` off they are served.
#[test]
fn invalid_client_identities_are_dropped_by_reason() {
    let mut e = engine();
    let d = || Req::new(MessageType::Discover, 7);
    let drop = |e: &mut Engine, b: &[u8], c: Counter| {
        assert_eq!(send_raw(e, T0, b), Outcome::Drop(c), "{}", c.name());
    };
    drop(
        &mut e,
        &d().opt(61, &[1]).bytes(),
        Counter::DropShortClientId,
    );
    let mut b = d().bytes();
    b[2] = 0; // hlen 0, no client identifier
    drop(&mut e, &b, Counter::DropBadHardware);
    let mut b = d().bytes();
    b[2] = 4; // Ethernet with a 4-byte address
    drop(&mut e, &b, Counter::DropBadHardware);
    drop(&mut e, &d().mac([0; 6]).bytes(), Counter::DropZeroChaddr);
    // An all-zero chaddr is fine with a client identifier to key the client.
    let ok = send(&mut e, &d().mac([0; 6]).opt(61, &[0xff, 1, 2, 3]));
    assert_eq!(ok.msg(), Some(MessageType::Offer));
    for c in [
        Counter::DropShortClientId,
        Counter::DropBadHardware,
        Counter::DropZeroChaddr,
    ] {
        assert_eq!(
            e.stats.get(c),
            if c == Counter::DropBadHardware { 2 } else { 1 },
            "{}",
            c.name()
        );
    }
    e.set_hardening(Hardening {
        strict_identity: false,
        ..Hardening::default()
    });
    let r = send(&mut e, &d().mac([0; 6]));
    assert_eq!(r.msg(), Some(MessageType::Offer), "served when not strict");
}

/// A forged RELEASE or DECLINE (another client's identity) leaves the lease alone, counted.
#[test]
fn release_and_decline_of_another_clients_lease_are_dropped() {
    let mut e = engine();
    let a = lease(&mut e, 1);
    updates(&mut e);
    let r = send(&mut e, &Req::new(MessageType::Release, 2).ci(a).sid(SID));
    assert_eq!(r.outcome, Outcome::Silent(Counter::DropNotOwner));
    let r = send(
        &mut e,
        &Req::new(MessageType::Decline, 3).requested(a).sid(SID),
    );
    assert_eq!(r.outcome, Outcome::Silent(Counter::DropNotOwner));
    assert!(updates(&mut e).is_empty(), "nothing changed");
    assert_eq!(e.stats.get(Counter::DropNotOwner), 2);
    let b = e.binding(a).expect("still bound");
    assert_eq!(b.state, BindingState::Active);
}

/// DISCOVERs beyond the per-client rate are dropped (burst of twice the rate, refilled over
/// time); other clients are not affected.
#[test]
fn a_discover_flood_from_one_client_is_rate_limited() {
    let mut e = engine();
    e.set_hardening(Hardening {
        discover_per_client: 5,
        ..Hardening::default()
    });
    let flood = |e: &mut Engine, now: Time, n: u32| -> u32 {
        (0..n)
            .filter(|i| {
                let r = send_at(
                    e,
                    now,
                    &Req::new(MessageType::Discover, 9).xid(0x7000 + i),
                    &Standalone,
                );
                r.outcome == Outcome::Drop(Counter::DropRateLimited)
            })
            .count() as u32
    };
    // A burst of 10 passes, the other 90 are dropped.
    assert_eq!(flood(&mut e, T0, 100), 90);
    let other = send_at(
        &mut e,
        T0,
        &Req::new(MessageType::Discover, 10),
        &Standalone,
    );
    assert_eq!(
        other.msg(),
        Some(MessageType::Offer),
        "another client is served"
    );
    // One second later, 5 more tokens.
    assert_eq!(flood(&mut e, T0.plus_secs(1), 10), 5);
    assert_eq!(e.stats.get(Counter::DropRateLimited), 95);
    // The flooding client holds at most one offer.
    let held = e
        .bindings()
        .filter(|(_, b)| b.client == ClientKey::from_hw(1, &[0x52, 0x54, 0, 0, 0, 9]))
        .count();
    assert!(held <= 1, "{held} addresses for the flooding client");
}

/// Relay agent information is accepted only from trusted relays; per-circuit limits apply to
/// relayed requests carrying a circuit id.
#[test]
fn relay_info_from_untrusted_relays_and_circuit_floods_are_dropped() {
    let mut e = engine();
    let gi = ip("10.9.0.1");
    e.set_hardening(Hardening {
        trusted_relays: vec![gi],
        per_circuit: 3,
        ..Hardening::default()
    });
    let relayed = |mac: u8, relay: Ipv4Addr| {
        Req::new(MessageType::Discover, mac)
            .gi(relay)
            .opt(82, &[1, 3, b'p', b'1', b'7'])
    };
    let r = send(&mut e, &relayed(1, ip("10.9.0.99")));
    assert_eq!(r.outcome, Outcome::Drop(Counter::DropUntrustedRelay));
    // Sent directly (giaddr 0) with option 82: not from a trusted relay either.
    let direct = Req::new(MessageType::Discover, 2).opt(82, &[1, 1, b'x']);
    assert_eq!(
        send(&mut e, &direct).outcome,
        Outcome::Drop(Counter::DropUntrustedRelay)
    );
    // The trusted relay: 6 requests of the circuit pass (burst), then it is limited, whoever
    // the clients are; without option 82 nothing is limited per circuit.
    let passed = (10..20u8)
        .filter(|&m| send(&mut e, &relayed(m, gi)).msg() == Some(MessageType::Offer))
        .count();
    assert_eq!(passed, 6);
    assert_eq!(e.stats.get(Counter::DropCircuitRateLimited), 4);
    let plain = Req::new(MessageType::Discover, 30).gi(gi);
    assert_eq!(send(&mut e, &plain).msg(), Some(MessageType::Offer));
}

/// A REQUEST that names no address is one drop, counted once.
#[test]
fn a_request_without_an_address_is_counted_once() {
    let mut e = engine();
    let r = send(&mut e, &Req::new(MessageType::Request, 4));
    assert_eq!(r.outcome, Outcome::Silent(Counter::DropBadRequest));
    assert_eq!(e.stats.get(Counter::DropBadRequest), 1);
}

#[test]
fn ddns_scope_answers_option_81_and_notes_the_name_at_ack() {
    use crate::engine::fqdn::NameNote;
    use crate::scope::{ClientUpdates, ScopeDdns};
    let mut sc = scope("lan", "10.0.0.0", 24, "10.0.0.100", "10.0.0.110");
    sc.ddns = Some(ScopeDdns {
        domain: "tdm.test".into(),
        client_updates: ClientUpdates::Honor,
        use_host_name: true,
    });
    let mut e = engine_with(settings(vec![sc]));
    let (tx, rx) = crossbeam_channel::bounded::<NameNote>(1);
    e.set_name_sink(tx);
    // S clear, canonical encoding, partial name: the client updates its A record.
    let fqdn = b"\x04\x00\x00\x03Box";
    let offer = send(&mut e, &Req::new(MessageType::Discover, 7).opt(81, fqdn));
    assert_eq!(
        offer.option(81),
        Some(b"\x04\xff\xff\x03box\x03tdm\x04test\x00".to_vec())
    );
    assert!(rx.try_recv().is_err(), "no note before the ACK");
    let ack = send(
        &mut e,
        &Req::new(MessageType::Request, 7)
            .xid(0x77)
            .sid(SID)
            .requested(offer.yiaddr())
            .opt(81, fqdn),
    );
    assert_eq!(ack.msg(), Some(MessageType::Ack));
    assert_eq!(ack.option(81), offer.option(81));
    let note = rx.try_recv().expect("a note at the ACK");
    assert_eq!(note.name.as_str(), "box.tdm.test");
    assert!(!note.forward);
    assert_eq!(note.binding.addr, ack.yiaddr());
    assert_eq!(note.binding.state, BindingState::Active);
    // A host name only: no option 81 in the reply, a note with the domain.
    let a2 = lease_with(&mut e, 8, &[(12, b"laptop")]);
    assert_eq!(a2.msg(), Some(MessageType::Ack));
    assert!(a2.option(81).is_none());
    // The sink is full (capacity 1): counted, the lease is still granted.
    let a3 = lease_with(&mut e, 9, &[(12, b"printer")]);
    assert_eq!(a3.msg(), Some(MessageType::Ack));
    assert_eq!(e.stats().get(Counter::DdnsDropped), 1);
    assert_eq!(rx.try_recv().unwrap().name.as_str(), "laptop.tdm.test");
    assert!(rx.try_recv().is_err());
    // An unusable name: counted, leased anyway, no note.
    let a4 = lease_with(&mut e, 10, &[(12, b"---")]);
    assert_eq!(a4.msg(), Some(MessageType::Ack));
    assert_eq!(e.stats().get(Counter::DdnsBadName), 1);
    assert!(rx.try_recv().is_err());
}

/// DISCOVER then REQUEST with extra options on both; returns the ACK.
fn lease_with(e: &mut Engine, mac_last: u8, opts: &[(u8, &[u8])]) -> Reply {
    let mut d = Req::new(MessageType::Discover, mac_last);
    for (c, v) in opts {
        d = d.opt(*c, v);
    }
    let offer = send(e, &d);
    let mut r = Req::new(MessageType::Request, mac_last)
        .xid(0x9100 + u32::from(mac_last))
        .sid(SID)
        .requested(offer.yiaddr());
    for (c, v) in opts {
        r = r.opt(*c, v);
    }
    send(e, &r)
}
