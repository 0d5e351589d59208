//! The generator driven in virtual time: against Tandem's real engine (no sockets), against a
//! silent server, and with hand-made bad replies.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use tandem_dataplane::authority::Standalone;
use tandem_dataplane::binding::BindingState;
use tandem_dataplane::engine::{Destination, Engine, Outcome, RxMeta, Stats};
use tandem_dataplane::scope::{AddrRange, OptionSet, Scope, ServerSettings, Subnet};
use tandem_dataplane::time::Time;
use tandem_dataplane::wire::{opt, MessageType, ReplyHeader, ReplyWriter, Request};

use super::*;

const MS: u64 = 1_000_000;
const SID: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const GI: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Wall-clock base of the virtual run, for the engine (ms since the epoch).
const EPOCH_MS: u64 = 1_800_000_000_000;

fn cfg(clients: u32, rate: Option<u64>, duration_ms: u64, mix: Mix) -> Config {
    Config {
        clients,
        seed: 9,
        client_id: false,
        host_name: false,
        path: Path::Relay(GI),
        mix,
        rate,
        window: 1000,
        duration: duration_ms * MS,
        max_exchanges: None,
        timeout: 100 * MS,
        retries: 2,
        xid_salt: 0x5a5a_1234,
    }
}

/// Collects what the generator sends, and by which route.
#[derive(Default)]
struct Frames(Vec<Vec<u8>>, Vec<Via>);

impl Tx for Frames {
    fn send(&mut self, frame: &[u8], route: Via) -> bool {
        self.0.push(frame.to_vec());
        self.1.push(route);
        true
    }
}

/// A server model: given the time, a request and how it was sent, the replies and their delays.
trait Server {
    fn handle(&mut self, now: u64, frame: &[u8], route: Via) -> Vec<(u64, Vec<u8>)>;
}

/// Tandem's engine answering every request after a fixed delay per message type. Relay style
/// (the scope serves the relay's subnet) unless `direct`: then the scope serves the receiving
/// interface, requests come from 0.0.0.0:68 (or ciaddr:68), and every route and destination is
/// checked against what a client on the link sends and gets.
struct EngineServer {
    engine: Engine,
    offer_delay: u64,
    ack_delay: u64,
    direct: bool,
    /// Replies per destination kind: (relay, unicast to ciaddr:68, broadcast).
    dests: (u64, u64, u64),
    /// Broadcast requests with ciaddr set (REBINDING).
    rebinding: u64,
}

fn settings() -> ServerSettings {
    ServerSettings {
        server_id: SID,
        global_options: OptionSet::new(),
        scopes: vec![Scope {
            name: "kb".into(),
            subnet: Subnet {
                network: Ipv4Addr::new(10, 77, 0, 0),
                prefix: 16,
            },
            ranges: vec![AddrRange::new(
                Ipv4Addr::new(10, 77, 0, 10),
                Ipv4Addr::new(10, 77, 255, 250),
            )],
            exclusions: vec![],
            reservations: vec![],
            lease_time: 3600,
            renew_time: None,
            rebind_time: None,
            options: OptionSet::new(),
            policies: vec![],
            authoritative: true,
            ddns: None,
        }],
        offer_hold_secs: 30,
        decline_probation_secs: 3600,
        duplicate_window_ms: 2000,
    }
}

impl EngineServer {
    fn new() -> EngineServer {
        EngineServer::with_path(false)
    }

    fn with_path(direct: bool) -> EngineServer {
        // direct: the scope is the local link of interface 0
        let iface_scopes = if direct { vec![vec![0]] } else { vec![vec![]] };
        EngineServer {
            engine: Engine::new(
                Arc::new(settings()),
                iface_scopes,
                0,
                1,
                Arc::new(Stats::default()),
            ),
            offer_delay: 100_000,
            ack_delay: 250_000,
            direct,
            dests: (0, 0, 0),
            rebinding: 0,
        }
    }
}

impl Server for EngineServer {
    fn handle(&mut self, now: u64, frame: &[u8], route: Via) -> Vec<(u64, Vec<u8>)> {
        let t = Time(EPOCH_MS + now / MS);
        let req = Request::parse(frame).expect("the generator's requests parse");
        let src = match route {
            Via::Relayed => SocketAddrV4::new(GI, 67),
            Via::Broadcast => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
            Via::Unicast { from, to } => {
                assert_eq!(to, SID, "unicast to the server id");
                assert_eq!(from, req.ciaddr(), "unicast from ciaddr");
                SocketAddrV4::new(from, 68)
            }
        };
        if self.direct {
            assert_ne!(route, Via::Relayed, "a direct run relays nothing");
            assert_eq!((req.hops(), req.giaddr()), (0, Ipv4Addr::UNSPECIFIED));
            // The BROADCAST flag: a client without an address (a REBINDING one has ciaddr).
            let no_address = req.ciaddr().is_unspecified();
            assert_eq!(req.broadcast(), route == Via::Broadcast && no_address);
            if route == Via::Broadcast && !no_address {
                self.rebinding += 1;
            }
        } else {
            assert_eq!(route, Via::Relayed);
        }
        let meta = RxMeta { iface: 0, src };
        let mut out = vec![0u8; 1500];
        let o = self.engine.handle(t, &meta, frame, &mut out, &Standalone);
        self.engine.take_updates().for_each(drop);
        match o {
            Outcome::Reply { len, dest, msg } => {
                match dest {
                    Destination::Relay(a) => {
                        assert_eq!(a, SocketAddrV4::new(GI, 67));
                        self.dests.0 += 1;
                    }
                    Destination::Unicast(a) => {
                        assert_eq!(a, SocketAddrV4::new(req.ciaddr(), 68));
                        self.dests.1 += 1;
                    }
                    Destination::Broadcast { iface } => {
                        assert_eq!(iface, 0);
                        self.dests.2 += 1;
                    }
                }
                out.truncate(len);
                let d = if msg == MessageType::Offer {
                    self.offer_delay
                } else {
                    self.ack_delay
                };
                vec![(d, out)]
            }
            _ => vec![],
        }
    }
}

/// Never answers.
struct Silent;

impl Server for Silent {
    fn handle(&mut self, _: u64, _: &[u8], _: Via) -> Vec<(u64, Vec<u8>)> {
        vec![]
    }
}

/// Drive `g` against `srv` in virtual time until it is done; returns the end time.
fn simulate(g: &mut Generator, srv: &mut impl Server) -> u64 {
    let mut inflight: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut now = 0u64;
    let mut frames = Frames::default();
    for _ in 0..10_000_000 {
        while let Some(Reverse((t, _, _))) = inflight.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, _, f))) = inflight.pop() else {
                break;
            };
            g.on_reply(now, &f, &mut frames);
        }
        g.on_timers(now, &mut frames);
        g.start_due(now, &mut frames);
        for (f, route) in frames.0.drain(..).zip(frames.1.drain(..)) {
            for (delay, reply) in srv.handle(now, &f, route) {
                seq += 1;
                inflight.push(Reverse((now + delay, seq, reply)));
            }
        }
        if g.done(now) {
            g.finish(now);
            return now;
        }
        let mut next = g.next_wakeup(now);
        if let Some(Reverse((t, _, _))) = inflight.peek() {
            next = next.min(*t);
        }
        assert!(next >= now, "time went backwards: {next} < {now}");
        // A wake-up at `now` means work is due now (flat out); step on by 1 µs anyway so
        // that a generator which never makes progress cannot loop here forever.
        now = next.max(now + 1_000);
    }
    panic!("the generator did not stop");
}

#[test]
fn dora_against_the_engine_is_lossless_and_exact() {
    let mut g = Generator::new(cfg(500, Some(1000), 2000, Mix::Dora)).unwrap();
    let mut srv = EngineServer::new();
    let end = simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    // 1000/s for 2 s: slots at 0, 1, ..., 1999 ms
    assert_eq!(c.started, 2000);
    assert_eq!(c.completed, 2000);
    assert_eq!(c.leases, 2000);
    assert_eq!(c.lost, 0);
    assert_eq!(c.naks, 0);
    assert_eq!(c.retransmits, 0);
    assert_eq!(c.unexpected(), 0, "{c:?}");
    assert_eq!(c.sent_discover, 2000);
    assert_eq!(c.sent_request, 2000);
    assert_eq!(g.missed_slots(), 0);
    // the last exchange started at 1999 ms and took 350 µs; sending closed at 2 s
    assert_eq!(end, 2000 * MS);
    // virtual latencies are exact
    let l = g.latencies().summaries();
    assert_eq!(l.discover_offer.count, 2000);
    assert_eq!(l.discover_offer.p50_us, 100.0);
    assert_eq!(l.discover_offer.max_us, 100.0);
    assert_eq!(l.request_ack.p99_us, 250.0);
    assert_eq!(l.dora.p50_us, 350.0);
    assert_eq!(l.dora.max_us, 350.0);
    assert_eq!(l.renew.count, 0);
    assert_eq!(g.timeline(), &[1000, 1000]);
    // 500 clients came round four times and kept their addresses: 500 distinct leases, each
    // active in the engine for the right MAC
    let held: Vec<HeldLease> = g.held_leases().collect();
    assert_eq!(held.len(), 500);
    let mut addrs: Vec<Ipv4Addr> = held.iter().map(|h| h.addr).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 500);
    for h in &held {
        let (_, b) = srv
            .engine
            .bindings()
            .find(|(_, b)| b.addr == h.addr)
            .unwrap_or_else(|| panic!("no binding for {}", h.addr));
        assert_eq!(b.state, BindingState::Active);
        assert_eq!(b.hw(), &h.mac);
        assert_eq!(h.mac, client_mac(9, h.client));
    }
}

#[test]
fn dora_release_frees_every_address() {
    let mut g = Generator::new(cfg(100, Some(500), 1000, Mix::DoraRelease)).unwrap();
    let mut srv = EngineServer::new();
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!(c.started, 500);
    assert_eq!(c.leases, 500);
    assert_eq!(c.sent_release, 500);
    assert_eq!(c.completed, 500);
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    assert_eq!(g.held_leases().count(), 0);
    let active = srv
        .engine
        .bindings()
        .filter(|(_, b)| b.state == BindingState::Active)
        .count();
    assert_eq!(active, 0, "every lease was released");
}

#[test]
fn dora_decline_quarantines_every_address() {
    let mut g = Generator::new(cfg(100, Some(50), 1000, Mix::DoraDecline)).unwrap();
    let mut srv = EngineServer::new();
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!(
        (c.started, c.leases, c.sent_decline, c.completed),
        (50, 50, 50, 50)
    );
    assert_eq!(c.sent_release, 0);
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    assert_eq!(g.held_leases().count(), 0);
    // The real engine took every DECLINE: 50 addresses quarantined, none active.
    let states: Vec<BindingState> = srv.engine.bindings().map(|(_, b)| b.state).collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == BindingState::Abandoned)
            .count(),
        50,
        "{states:?}"
    );
    assert!(!states.contains(&BindingState::Active));
}

#[test]
fn dora_renew_renews_from_ciaddr() {
    let mut g = Generator::new(cfg(300, Some(300), 1000, Mix::DoraRenew)).unwrap();
    let mut srv = EngineServer::new();
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!(c.started, 300);
    assert_eq!(c.leases, 300);
    assert_eq!(c.sent_renew, 300);
    assert_eq!(c.renewed, 300);
    assert_eq!(c.completed, 300);
    assert_eq!(c.acks, 600);
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    let l = g.latencies().summaries();
    assert_eq!(l.renew.count, 300);
    assert_eq!(l.renew.p50_us, 250.0);
    assert_eq!(g.held_leases().count(), 300);
}

#[test]
fn silent_server_loses_everything_and_stops_by_itself() {
    let mut c = cfg(50, Some(100), 500, Mix::Dora);
    c.retries = 3;
    let hard = c.hard_stop();
    let mut g = Generator::new(c).unwrap();
    let end = simulate(&mut g, &mut Silent);
    let k = g.counters().clone();
    assert_eq!(k.started, 50);
    assert_eq!(k.lost, 50);
    assert_eq!(k.lost_discover, 50);
    assert_eq!(
        k.unfinished, 0,
        "every exchange timed out before the hard stop"
    );
    assert_eq!(k.retransmits, 150);
    assert_eq!(k.leases, 0);
    // last start at 490 ms, 4 transmissions of 100 ms each
    assert_eq!(end, 490 * MS + 400 * MS);
    assert!(end <= hard);
}

#[test]
fn window_bounds_outstanding_exchanges_when_flat_out() {
    let mut c = cfg(1000, None, 300, Mix::Dora);
    c.window = 10;
    c.retries = 0;
    let mut g = Generator::new(c).unwrap();
    let mut frames = Frames::default();
    let mut now = 0;
    while !g.done(now) {
        g.on_timers(now, &mut frames);
        g.start_due(now, &mut frames);
        assert!(g.outstanding() <= 10);
        now = g.next_wakeup(now).max(now + 1);
    }
    // 10 at a time, each lost after 100 ms: starts at 0, 100 and 200 ms
    assert_eq!(g.counters().started, 30);
    assert_eq!(frames.0.len(), 30);
}

#[test]
fn max_exchanges_is_a_hard_count() {
    let mut c = cfg(1000, None, 10_000, Mix::Dora);
    c.max_exchanges = Some(700);
    let mut g = Generator::new(c).unwrap();
    let mut srv = EngineServer::new();
    let end = simulate(&mut g, &mut srv);
    assert_eq!(g.counters().started, 700);
    assert_eq!(g.counters().leases, 700);
    assert!(end < 10 * MS, "stopped long before the duration: {end}");
    assert!(g.sending_closed_at().is_some());
}

#[test]
fn hard_stop_cuts_off_what_is_outstanding() {
    let mut g = Generator::new(cfg(10, Some(10), 1000, Mix::Dora)).unwrap();
    let mut frames = Frames::default();
    g.start_due(0, &mut frames);
    assert_eq!(g.outstanding(), 1);
    let hard = g.config().hard_stop();
    assert!(g.done(hard));
    g.finish(hard);
    assert_eq!(g.counters().lost, 1);
    assert_eq!(g.counters().unfinished, 1);
    assert_eq!(g.outstanding(), 0);
}

/// A reply to `req` (a request frame the generator sent) with `f` to adjust it.
fn answer(
    req: &[u8],
    mt: MessageType,
    yiaddr: Ipv4Addr,
    sid: Option<Ipv4Addr>,
    f: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let r = Request::parse(req).expect("generator requests parse");
    let hdr = ReplyHeader {
        xid: r.xid(),
        flags: 0,
        ciaddr: r.ciaddr(),
        yiaddr,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: r.giaddr(),
        htype: 1,
        hlen: 6,
    };
    let mut out = vec![0u8; 600];
    let mut w = ReplyWriter::new(&mut out, 600, 0, &hdr, &req[28..44], mt).unwrap();
    if let Some(s) = sid {
        w.option_addr(opt::SERVER_ID, s);
    }
    let n = w.finish();
    out.truncate(n);
    f(&mut out);
    out
}

#[test]
fn replies_are_validated_and_bad_ones_counted() {
    let yi = Ipv4Addr::new(10, 77, 1, 1);
    // 5 clients: 3 bits of client index, so indexes 5..=7 belong to no client
    let mut g = Generator::new(cfg(5, Some(1000), 10, Mix::Dora)).unwrap();
    let mut tx = Frames::default();
    g.start_due(0, &mut tx);
    let disc = tx.0.pop().unwrap();
    assert_eq!(
        Request::parse(&disc).unwrap().message_type(),
        MessageType::Discover
    );

    // garbage, a request echoed back, and a truncated OFFER: malformed
    g.on_reply(MS, &[1, 2, 3], &mut tx);
    g.on_reply(MS, &disc, &mut tx);
    let offer = answer(&disc, MessageType::Offer, yi, Some(SID), |_| {});
    g.on_reply(MS, &offer[..200], &mut tx);
    assert_eq!(g.counters().malformed, 3);
    assert_eq!(
        g.counters().malformed_by_reason[ReplyError::NotReply.index()],
        1
    );
    // another MAC, and an xid for a client index beyond the run: foreign
    let other_mac = answer(&disc, MessageType::Offer, yi, Some(SID), |b| b[33] ^= 0xff);
    g.on_reply(MS, &other_mac, &mut tx);
    let bad_xid = answer(&disc, MessageType::Offer, yi, Some(SID), |b| {
        b[4..8].copy_from_slice(&(0x5a5a_1234u32 ^ (1 << 3 | 6)).to_be_bytes());
    });
    g.on_reply(MS, &bad_xid, &mut tx);
    assert_eq!(g.counters().foreign, 2);
    // the client's own xid but an older exchange number: late
    let stale = answer(&disc, MessageType::Offer, yi, Some(SID), |b| {
        let x = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) ^ 0x5a5a_1234;
        b[4..8].copy_from_slice(&((x + (1 << 3)) ^ 0x5a5a_1234).to_be_bytes());
    });
    g.on_reply(MS, &stale, &mut tx);
    assert_eq!(g.counters().late, 1);
    // an ACK to a DISCOVER: wrong type
    g.on_reply(
        MS,
        &answer(&disc, MessageType::Ack, yi, Some(SID), |_| {}),
        &mut tx,
    );
    assert_eq!(g.counters().wrong_type, 1);
    // an OFFER with giaddr 0 to a relayed DISCOVER: the server did not see our giaddr
    g.on_reply(
        MS,
        &answer(&disc, MessageType::Offer, yi, Some(SID), |b| {
            b[24..28].copy_from_slice(&[0; 4])
        }),
        &mut tx,
    );
    assert_eq!(g.counters().wrong_giaddr, 1);
    // OFFERs without server id or without address: invalid
    g.on_reply(
        MS,
        &answer(&disc, MessageType::Offer, yi, None, |_| {}),
        &mut tx,
    );
    g.on_reply(
        MS,
        &answer(
            &disc,
            MessageType::Offer,
            Ipv4Addr::UNSPECIFIED,
            Some(SID),
            |_| {},
        ),
        &mut tx,
    );
    assert_eq!(g.counters().invalid_offer, 2);
    assert!(tx.0.is_empty(), "nothing answered the bad replies");

    // the real OFFER: the REQUEST carries option 50 = yiaddr and 54 = the server id, same xid
    g.on_reply(2 * MS, &offer, &mut tx);
    let req = tx.0.pop().unwrap();
    let r = Request::parse(&req).unwrap();
    assert_eq!(r.message_type(), MessageType::Request);
    assert_eq!(r.requested_ip(), Some(yi));
    assert_eq!(r.server_id(), Some(SID));
    assert_eq!(r.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.giaddr(), GI);
    assert_eq!(r.xid(), Request::parse(&disc).unwrap().xid());
    assert_eq!(r.mac(), Some(client_mac(9, 0)));
    // a duplicate OFFER now is late
    g.on_reply(2 * MS, &offer, &mut tx);
    assert_eq!(g.counters().late, 2);
    // ACKs for another address or from another server: invalid
    g.on_reply(
        3 * MS,
        &answer(
            &req,
            MessageType::Ack,
            Ipv4Addr::new(10, 77, 9, 9),
            Some(SID),
            |_| {},
        ),
        &mut tx,
    );
    g.on_reply(
        3 * MS,
        &answer(
            &req,
            MessageType::Ack,
            yi,
            Some(Ipv4Addr::new(10, 77, 0, 3)),
            |_| {},
        ),
        &mut tx,
    );
    g.on_reply(
        3 * MS,
        &answer(&req, MessageType::Ack, yi, None, |_| {}),
        &mut tx,
    );
    assert_eq!(g.counters().invalid_ack, 3);
    assert_eq!(g.counters().leases, 0);
    // the right ACK
    g.on_reply(
        4 * MS,
        &answer(&req, MessageType::Ack, yi, Some(SID), |_| {}),
        &mut tx,
    );
    let c = g.counters().clone();
    assert_eq!((c.offers, c.acks, c.leases, c.completed), (1, 1, 1, 1));
    assert_eq!(g.outstanding(), 0);
    let l = g.latencies().summaries();
    assert_eq!(l.discover_offer.max_us, 2000.0);
    assert_eq!(l.request_ack.max_us, 2000.0);
    assert_eq!(l.dora.max_us, 4000.0);
    let held: Vec<HeldLease> = g.held_leases().collect();
    assert_eq!(
        held,
        vec![HeldLease {
            client: 0,
            mac: client_mac(9, 0),
            addr: yi
        }]
    );
    // and a duplicate ACK after the exchange ended is late
    g.on_reply(
        4 * MS,
        &answer(&req, MessageType::Ack, yi, Some(SID), |_| {}),
        &mut tx,
    );
    assert_eq!(g.counters().late, 3);
    assert_eq!(
        g.counters().received,
        17,
        "16 before the wrong-giaddr OFFER"
    );
}

#[test]
fn nak_ends_the_exchange() {
    let yi = Ipv4Addr::new(10, 77, 1, 1);
    let mut g = Generator::new(cfg(1, Some(1), 10, Mix::Dora)).unwrap();
    let mut tx = Frames::default();
    g.start_due(0, &mut tx);
    let disc = tx.0.pop().unwrap();
    g.on_reply(
        MS,
        &answer(&disc, MessageType::Offer, yi, Some(SID), |_| {}),
        &mut tx,
    );
    let req = tx.0.pop().unwrap();
    g.on_reply(
        MS,
        &answer(
            &req,
            MessageType::Nak,
            Ipv4Addr::UNSPECIFIED,
            Some(SID),
            |_| {},
        ),
        &mut tx,
    );
    let c = g.counters().clone();
    assert_eq!((c.naks, c.leases, c.completed, c.lost), (1, 0, 0, 0));
    assert_eq!(g.outstanding(), 0);
    assert!(!g.done(MS), "sending is still open");
    assert!(g.done(10 * MS));
}

#[test]
fn retransmission_keeps_the_xid_and_latency_counts_from_the_first_send() {
    let yi = Ipv4Addr::new(10, 77, 1, 1);
    let mut g = Generator::new(cfg(1, Some(1), 10, Mix::Dora)).unwrap();
    let mut tx = Frames::default();
    g.start_due(0, &mut tx);
    g.on_timers(100 * MS, &mut tx);
    assert_eq!(tx.0.len(), 2);
    assert_eq!(g.counters().retransmits, 1);
    let (a, b) = (
        Request::parse(&tx.0[0]).unwrap(),
        Request::parse(&tx.0[1]).unwrap(),
    );
    assert_eq!(a.xid(), b.xid());
    assert_eq!(b.message_type(), MessageType::Discover);
    let disc = tx.0.pop().unwrap();
    tx.0.clear();
    g.on_reply(
        150 * MS,
        &answer(&disc, MessageType::Offer, yi, Some(SID), |_| {}),
        &mut tx,
    );
    // the old timer (token of the first transmission) and the retransmission's timer are both
    // dead now: nothing is resent at their deadlines
    g.on_timers(200 * MS, &mut tx);
    assert_eq!(tx.0.len(), 1, "only the REQUEST");
    assert_eq!(g.latencies().summaries().discover_offer.max_us, 150_000.0);
}

#[test]
fn xids_round_trip_for_every_client_count() {
    for n in [1u32, 2, 3, 255, 256, 257, 65_536, 1_000_000, MAX_CLIENTS] {
        let x = XidCodec::new(n, 0xdead_beef);
        assert!(
            x.gen_mask() >= 255,
            "at least 8 bits of exchange number for n={n}"
        );
        for client in [0, n / 2, n - 1] {
            for gen in [0u32, 1, 200, 255] {
                assert_eq!(x.decode(x.encode(client, gen)), (client, gen), "n={n}");
            }
        }
        // distinct clients never share an xid
        if n > 1 {
            assert_ne!(x.encode(0, 1), x.encode(n - 1, 1));
        }
    }
}

#[test]
fn config_is_validated() {
    let mut c = cfg(0, Some(1), 10, Mix::Dora);
    assert_eq!(
        Generator::new(c.clone()).err(),
        Some(ConfigError::Clients(0))
    );
    c.clients = MAX_CLIENTS + 1;
    assert!(matches!(
        Generator::new(c.clone()),
        Err(ConfigError::Clients(_))
    ));
    c.clients = 1;
    c.rate = Some(0);
    assert_eq!(Generator::new(c.clone()).err(), Some(ConfigError::Rate));
    c.rate = None;
    c.window = 0;
    assert_eq!(Generator::new(c.clone()).err(), Some(ConfigError::Window));
    c.window = 1;
    c.duration = 0;
    assert_eq!(Generator::new(c.clone()).err(), Some(ConfigError::Duration));
    c.duration = 1;
    c.timeout = 0;
    assert_eq!(Generator::new(c).err(), Some(ConfigError::Timeout));
    assert_eq!("dora+renew".parse::<Mix>(), Ok(Mix::DoraRenew));
    assert_eq!(Mix::DoraRelease.to_string(), "dora+release");
    assert_eq!("dora+rebind".parse::<Mix>(), Ok(Mix::DoraRebind));
    assert_eq!("dora+decline".parse::<Mix>(), Ok(Mix::DoraDecline));
    assert_eq!(Mix::DoraDecline.to_string(), "dora+decline");
    assert!("dhcp".parse::<Mix>().is_err());
}

fn direct_cfg(clients: u32, rate: u64, duration_ms: u64, mix: Mix) -> Config {
    Config {
        path: Path::Direct,
        ..cfg(clients, Some(rate), duration_ms, mix)
    }
}

#[test]
fn direct_dora_against_the_engine_is_broadcast_both_ways() {
    let mut g = Generator::new(direct_cfg(200, 1000, 300, Mix::Dora)).unwrap();
    let mut srv = EngineServer::with_path(true);
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!((c.started, c.leases, c.completed), (300, 300, 300));
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    // every OFFER and ACK went to 255.255.255.255:68 (the BROADCAST flag, no ciaddr, no relay)
    assert_eq!(srv.dests, (0, 0, 600));
    // 200 clients, 300 exchanges: 200 distinct leases, active for the right MACs
    let held: Vec<HeldLease> = g.held_leases().collect();
    assert_eq!(held.len(), 200);
    for h in &held {
        let (_, b) = srv
            .engine
            .bindings()
            .find(|(_, b)| b.addr == h.addr)
            .unwrap_or_else(|| panic!("no binding for {}", h.addr));
        assert_eq!((b.state, b.hw()), (BindingState::Active, &h.mac[..]));
    }
}

#[test]
fn direct_release_and_decline_reach_the_engine() {
    let mut g = Generator::new(direct_cfg(100, 500, 200, Mix::DoraRelease)).unwrap();
    let mut srv = EngineServer::with_path(true);
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!((c.leases, c.sent_release, c.completed), (100, 100, 100));
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    assert_eq!(srv.dests, (0, 0, 200));
    assert!(
        srv.engine
            .bindings()
            .all(|(_, b)| b.state != BindingState::Active),
        "every lease was released"
    );

    let mut g = Generator::new(direct_cfg(50, 500, 100, Mix::DoraDecline)).unwrap();
    let mut srv = EngineServer::with_path(true);
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!((c.leases, c.sent_decline), (50, 50));
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    let abandoned = srv
        .engine
        .bindings()
        .filter(|(_, b)| b.state == BindingState::Abandoned)
        .count();
    assert_eq!(abandoned, 50);
}

#[test]
fn direct_renew_goes_unicast_and_is_answered_to_ciaddr() {
    let mut g = Generator::new(direct_cfg(100, 1000, 100, Mix::DoraRenew)).unwrap();
    let mut srv = EngineServer::with_path(true);
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!((c.leases, c.sent_renew, c.renewed), (100, 100, 100));
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    // OFFER and first ACK broadcast, the renewal's ACK unicast to ciaddr:68
    assert_eq!(srv.dests, (0, 100, 200));
}

#[test]
fn direct_rebind_is_broadcast_with_ciaddr_and_answered_to_ciaddr() {
    let mut g = Generator::new(direct_cfg(100, 1000, 100, Mix::DoraRebind)).unwrap();
    let mut srv = EngineServer::with_path(true);
    simulate(&mut g, &mut srv);
    let c = g.counters().clone();
    assert_eq!((c.leases, c.sent_renew, c.renewed), (100, 100, 100));
    assert_eq!(c.lost + c.naks + c.unexpected(), 0, "{c:?}");
    assert_eq!(srv.rebinding, 100, "every REBINDING REQUEST broadcast");
    assert_eq!(srv.dests, (0, 100, 200));
    // through a relay, rebinding is the renewing message relayed
    let mut g = Generator::new(cfg(50, Some(50), 1000, Mix::DoraRebind)).unwrap();
    let mut srv = EngineServer::new();
    simulate(&mut g, &mut srv);
    assert_eq!(g.counters().renewed, 50);
    assert_eq!(srv.dests, (150, 0, 0));
}

#[test]
fn direct_routes_follow_the_request() {
    let yi = Ipv4Addr::new(10, 77, 1, 1);
    let mut g = Generator::new(direct_cfg(1, 1000, 10, Mix::DoraRelease)).unwrap();
    let mut tx = Frames::default();
    g.start_due(0, &mut tx);
    assert_eq!(tx.1, [Via::Broadcast]);
    let disc = tx.0[0].clone();
    // a relayed-looking reply (giaddr set) is not ours on the direct path
    g.on_reply(
        MS,
        &answer(&disc, MessageType::Offer, yi, Some(SID), |b| {
            b[24..28].copy_from_slice(&GI.octets())
        }),
        &mut tx,
    );
    assert_eq!(g.counters().wrong_giaddr, 1);
    assert_eq!(tx.0.len(), 1);
    g.on_reply(
        MS,
        &answer(&disc, MessageType::Offer, yi, Some(SID), |_| {}),
        &mut tx,
    );
    let req = tx.0[1].clone();
    g.on_reply(
        2 * MS,
        &answer(&req, MessageType::Ack, yi, Some(SID), |_| {}),
        &mut tx,
    );
    // DISCOVER and REQUEST broadcast, RELEASE unicast from the lease to the server id
    assert_eq!(
        tx.1,
        [
            Via::Broadcast,
            Via::Broadcast,
            Via::Unicast { from: yi, to: SID }
        ]
    );
    let rel = Request::parse(&tx.0[2]).unwrap();
    assert_eq!(rel.message_type(), MessageType::Release);
    assert_eq!((rel.ciaddr(), rel.giaddr()), (yi, Ipv4Addr::UNSPECIFIED));
    assert_eq!(g.counters().leases, 1);
}
