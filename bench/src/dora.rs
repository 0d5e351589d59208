//! The DORA load generator's core: simulated clients, pacing, reply matching, retransmission,
//! loss and latency accounting. Sans-IO: the caller passes the time (nanoseconds on its monotonic
//! clock, 0 = start of the run), hands in every datagram it receives, and sends the frames the
//! generator gives its [`Tx`].
//!
//! Each simulated client `i` has MAC [`client_mac`]`(seed, i)`. An *exchange* is one client's
//! DISCOVER → OFFER → REQUEST → ACK, then, by [`Mix`], nothing, a RELEASE, or a RENEWING
//! REQUEST → ACK. Exchanges start at the target rate (or as fast as the outstanding window allows)
//! on the next idle client, round robin; a client that finished goes to the back of the queue,
//! so with more starts than clients the clients come round again (and keep their address).
//!
//! Matching: the transaction id encodes the client index and the exchange number (and a per-run
//! salt), so a reply finds its client in O(1). A reply counts only if its xid is the client's
//! current one, its chaddr is the client's MAC, its type fits the client's state, and its content
//! is right: an OFFER needs a yiaddr and a server id; the REQUEST then carries option 50 = that
//! yiaddr and option 54 = that server id; the ACK must confirm the same address from the same
//! server. Everything else is counted by reason (malformed, foreign, late, wrong type, invalid)
//! and otherwise ignored.
//!
//! Every request waits `timeout` for its reply and is retransmitted (same xid) at most `retries`
//! times; then the exchange is lost. Latencies run from the first transmission.
//!
//! [`Config::path`] says how requests reach the server: through a relay (giaddr set, every request
//! unicast to the server) or directly as clients on its link (giaddr 0, BROADCAST flag, requests
//! broadcast, RELEASE and RENEWING REQUEST unicast from ciaddr). Every frame goes to the [`Tx`]
//! with its [`Via`]; a reply whose giaddr is not the path's (the server echoes the request's)
//! is counted as `wrong_giaddr` and ignored.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;
use tandem_dataplane::wire::MessageType;

use crate::latency::{Latency, Summary};
use crate::pace::Pacer;
use crate::packet::{
    build_request, client_mac, Ident, Reply, ReplyError, RequestKind, REQUEST_LEN,
};
pub use crate::packet::{Path, Via};

const NANOS: u64 = 1_000_000_000;

/// Most clients one run simulates (the transaction id keeps 8 bits for the exchange number).
pub const MAX_CLIENTS: u32 = 1 << 24;

/// Most exchanges started in one step when running flat out (keeps socket buffers from
/// overflowing at the start of a run).
pub const FLAT_OUT_BATCH: u64 = 256;

/// What each exchange does after its DORA.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mix {
    /// DISCOVER, OFFER, REQUEST, ACK.
    Dora,
    /// The DORA, then a RELEASE (no reply expected).
    DoraRelease,
    /// The DORA, then a RENEWING REQUEST (ciaddr set, unicast to the server) answered by an
    /// ACK.
    DoraRenew,
    /// The DORA, then a REBINDING REQUEST: the renewing message, but broadcast on the direct
    /// path (through a relay both are the same relayed message).
    DoraRebind,
    /// The DORA, then a DECLINE of the address (no reply expected): the server quarantines it,
    /// so each exchange uses up an address for the probation time.
    DoraDecline,
}

impl Mix {
    /// True if the mix sends requests from ciaddr (RELEASE, RENEWING REQUEST): on the direct
    /// path those go unicast to the server.
    pub fn sends_unicast(self) -> bool {
        matches!(self, Mix::DoraRelease | Mix::DoraRenew)
    }

    /// True if the server answers the mix's last request by unicast to ciaddr (RENEWING and
    /// REBINDING): on the direct path only the AF_XDP generator takes those replies.
    pub fn replies_to_ciaddr(self) -> bool {
        matches!(self, Mix::DoraRenew | Mix::DoraRebind)
    }

    /// Requests of one exchange that wait for a reply.
    pub fn answered_requests(self) -> u64 {
        match self {
            Mix::Dora | Mix::DoraRelease | Mix::DoraDecline => 2,
            Mix::DoraRenew | Mix::DoraRebind => 3,
        }
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        match s {
            "dora" => Ok(Mix::Dora),
            "dora+release" => Ok(Mix::DoraRelease),
            "dora+renew" => Ok(Mix::DoraRenew),
            "dora+rebind" => Ok(Mix::DoraRebind),
            "dora+decline" => Ok(Mix::DoraDecline),
            _ => Err(format!(
                "unknown mix {s:?} (known: dora, dora+release, dora+renew, dora+rebind, dora+decline)"
            )),
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mix::Dora => "dora",
            Mix::DoraRelease => "dora+release",
            Mix::DoraRenew => "dora+renew",
            Mix::DoraRebind => "dora+rebind",
            Mix::DoraDecline => "dora+decline",
        })
    }
}

/// How to run. Times are in nanoseconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Simulated clients (1 ..= [`MAX_CLIENTS`]).
    pub clients: u32,
    /// Second byte of every MAC (tells runs apart).
    pub seed: u8,
    /// Send option 61 (client identifier = 1 + MAC).
    pub client_id: bool,
    /// Send option 12 (host name [`crate::packet::client_host_name`]: `c<index>`, unique per
    /// client) in DISCOVER and every REQUEST, for servers that register names in DNS.
    pub host_name: bool,
    /// Through a relay (its address in giaddr) or direct (giaddr 0, broadcast).
    pub path: Path,
    /// What each exchange does.
    pub mix: Mix,
    /// New exchanges per second; `None` runs flat out (limited by `window`).
    pub rate: Option<u64>,
    /// Most exchanges outstanding at once.
    pub window: u32,
    /// Exchanges start during this long.
    pub duration: u64,
    /// At most this many exchanges start.
    pub max_exchanges: Option<u64>,
    /// How long each request waits for its reply.
    pub timeout: u64,
    /// Retransmissions of a request before its exchange is lost.
    pub retries: u8,
    /// XORed into every transaction id (tells this run's replies from a previous run's).
    pub xid_salt: u32,
}

/// Why a configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Number of clients out of range.
    #[error("--clients must be between 1 and {MAX_CLIENTS}, not {0}")]
    Clients(u64),
    /// Zero rate.
    #[error("--rate must be at least 1 exchange per second")]
    Rate,
    /// Zero window.
    #[error("--window must be at least 1")]
    Window,
    /// Zero duration.
    #[error("--duration must be more than 0")]
    Duration,
    /// Zero timeout.
    #[error("--timeout-ms must be at least 1")]
    Timeout,
}

impl Config {
    /// Check the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(ConfigError::Clients(u64::from(self.clients)));
        }
        if self.rate == Some(0) {
            return Err(ConfigError::Rate);
        }
        if self.window == 0 {
            return Err(ConfigError::Window);
        }
        if self.duration == 0 {
            return Err(ConfigError::Duration);
        }
        if self.timeout == 0 {
            return Err(ConfigError::Timeout);
        }
        Ok(())
    }

    /// The longest an exchange can last: every answered request timing out after every
    /// retransmission.
    pub fn exchange_lifetime(&self) -> u64 {
        self.mix
            .answered_requests()
            .saturating_mul(u64::from(self.retries) + 1)
            .saturating_mul(self.timeout)
    }

    /// The hard stop: the sending period plus one exchange lifetime (so every exchange started
    /// in time can finish or time out) plus one timeout of margin.
    pub fn hard_stop(&self) -> u64 {
        self.duration
            .saturating_add(self.exchange_lifetime())
            .saturating_add(self.timeout)
    }
}

/// Where the generator's frames go: all to the server, each by its [`Via`].
pub trait Tx {
    /// Send one frame (a DHCP message) by `route`; false if the send failed (counted; the
    /// retransmission timer still runs).
    fn send(&mut self, frame: &[u8], route: Via) -> bool;
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Idle,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST sent, waiting for the ACK.
    Requesting,
    /// Renewing REQUEST sent, waiting for the ACK.
    Renewing,
}

#[derive(Copy, Clone, Debug, Default)]
struct Client {
    phase: Phase,
    tries: u8,
    /// Exchange number (part of the xid).
    gen: u32,
    /// Bumped on every transmission; a timer is live only if its token is the current one.
    token: u32,
    exch_start: u64,
    msg_start: u64,
    offered: u32,
    server_id: u32,
    /// The address the client holds now (0: none).
    bound: u32,
}

/// Transaction ids: `salt XOR (exchange number << bits | client index)`, with `bits` just
/// enough for the client count; the exchange number keeps the remaining (at least 8) bits.
#[derive(Copy, Clone, Debug)]
struct XidCodec {
    bits: u32,
    salt: u32,
}

impl XidCodec {
    fn new(clients: u32, salt: u32) -> XidCodec {
        XidCodec {
            bits: 32 - clients.saturating_sub(1).leading_zeros(),
            salt,
        }
    }

    fn encode(&self, client: u32, gen: u32) -> u32 {
        let g = gen.checked_shl(self.bits).unwrap_or(0);
        (g | client) ^ self.salt
    }

    /// Client index and exchange number encoded in `xid`.
    fn decode(&self, xid: u32) -> (u32, u32) {
        let v = xid ^ self.salt;
        let mask = 1u32.checked_shl(self.bits).map_or(u32::MAX, |m| m - 1);
        (v & mask, v.checked_shr(self.bits).unwrap_or(0))
    }

    fn gen_mask(&self) -> u32 {
        u32::MAX.checked_shr(self.bits).unwrap_or(0)
    }
}

#[derive(Copy, Clone, Debug)]
struct Timer {
    deadline: u64,
    client: u32,
    token: u32,
}

/// Counts of everything sent, received and decided.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Exchanges started.
    pub started: u64,
    /// Exchanges that ran to their end (ACK, or RELEASE sent, or renew ACK).
    pub completed: u64,
    /// DORAs completed (ACK to the SELECTING REQUEST): the leases.
    pub leases: u64,
    /// Renewals ACKed.
    pub renewed: u64,
    /// Exchanges that never completed: timed out after every retransmission, or still
    /// outstanding at the hard stop.
    pub lost: u64,
    /// Of `lost`: no OFFER to the DISCOVER.
    pub lost_discover: u64,
    /// Of `lost`: no ACK to the SELECTING REQUEST.
    pub lost_request: u64,
    /// Of `lost`: no ACK to the renewing REQUEST.
    pub lost_renew: u64,
    /// Of `lost`: cut off by the hard stop.
    pub unfinished: u64,
    /// Exchanges ended by a NAK.
    pub naks: u64,
    /// DISCOVERs sent (first transmissions).
    pub sent_discover: u64,
    /// SELECTING REQUESTs sent (first transmissions).
    pub sent_request: u64,
    /// Renewing REQUESTs sent (first transmissions).
    pub sent_renew: u64,
    /// RELEASEs sent.
    pub sent_release: u64,
    /// DECLINEs sent.
    pub sent_decline: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Datagrams received.
    pub received: u64,
    /// OFFERs accepted.
    pub offers: u64,
    /// ACKs accepted.
    pub acks: u64,
    /// Replies that did not parse (by reason in `malformed_by_reason`).
    pub malformed: u64,
    /// Per [`ReplyError`] reason, in [`ReplyError::ALL`] order.
    #[serde(skip)]
    pub malformed_by_reason: [u64; ReplyError::ALL.len()],
    /// Well-formed replies for no simulated client (xid or chaddr not ours).
    pub foreign: u64,
    /// Replies for a client's earlier exchange or step (duplicates, answers to retransmissions).
    pub late: u64,
    /// Replies whose type does not fit the client's state (an ACK to a DISCOVER…).
    pub wrong_type: u64,
    /// OFFERs without yiaddr or server id.
    pub invalid_offer: u64,
    /// ACKs for another address or from another server than the OFFER's, or without server id.
    pub invalid_ack: u64,
    /// Replies whose giaddr is not the path's (the relay's address, or 0 when direct): the
    /// server saw another giaddr than the generator sent.
    pub wrong_giaddr: u64,
}

impl Counters {
    /// Every unexpected reply: malformed + foreign + late + wrong type + invalid.
    pub fn unexpected(&self) -> u64 {
        self.malformed
            + self.foreign
            + self.late
            + self.wrong_type
            + self.invalid_offer
            + self.invalid_ack
            + self.wrong_giaddr
    }
}

/// Latency histograms per step.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// DISCOVER sent → OFFER received.
    pub discover_offer: Latency,
    /// SELECTING REQUEST sent → ACK received.
    pub request_ack: Latency,
    /// DISCOVER sent → ACK received.
    pub dora: Latency,
    /// Renewing REQUEST sent → ACK received.
    pub renew: Latency,
}

/// Latency summaries per step, in µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummaries {
    /// DISCOVER → OFFER.
    pub discover_offer: Summary,
    /// REQUEST → ACK.
    pub request_ack: Summary,
    /// DISCOVER → ACK.
    pub dora: Summary,
    /// Renewing REQUEST → ACK (count 0 unless the mix renews).
    pub renew: Summary,
}

impl Latencies {
    /// Summarise every histogram.
    pub fn summaries(&self) -> LatencySummaries {
        LatencySummaries {
            discover_offer: self.discover_offer.summary(),
            request_ack: self.request_ack.summary(),
            dora: self.dora.summary(),
            renew: self.renew.summary(),
        }
    }
}

/// One line of the lease list: a client and the address it holds at the end of the run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    /// Client index.
    pub client: u32,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The address.
    pub addr: Ipv4Addr,
}

/// The generator. See the module documentation.
pub struct Generator {
    cfg: Config,
    clients: Vec<Client>,
    idle: VecDeque<u32>,
    timers: VecDeque<Timer>,
    pacer: Option<Pacer>,
    xids: XidCodec,
    buf: [u8; REQUEST_LEN],
    outstanding: u32,
    closed_at: Option<u64>,
    last_lease_at: u64,
    finished: bool,
    counters: Counters,
    lat: Latencies,
    timeline: Vec<u64>,
}

impl Generator {
    /// A generator for `cfg` (validated), starting at time 0.
    pub fn new(cfg: Config) -> Result<Generator, ConfigError> {
        cfg.validate()?;
        let n = cfg.clients;
        let pacer = cfg
            .rate
            .map(|r| Pacer::new(r, 0, Pacer::default_backlog(r)));
        Ok(Generator {
            clients: vec![Client::default(); n as usize],
            idle: (0..n).collect(),
            timers: VecDeque::new(),
            pacer,
            xids: XidCodec::new(n, cfg.xid_salt),
            buf: [0; REQUEST_LEN],
            outstanding: 0,
            closed_at: None,
            last_lease_at: 0,
            finished: false,
            counters: Counters::default(),
            lat: Latencies::default(),
            timeline: Vec::new(),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The latency histograms so far.
    pub fn latencies(&self) -> &Latencies {
        &self.lat
    }

    /// Exchanges in flight.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// Leases completed in each second of the run (index = second since the start).
    pub fn timeline(&self) -> &[u64] {
        &self.timeline
    }

    /// Pacing slots that could not be used in time (0 when flat out).
    pub fn missed_slots(&self) -> u64 {
        self.pacer.as_ref().map_or(0, Pacer::missed)
    }

    /// When no more exchanges were started (None while sending is open).
    pub fn sending_closed_at(&self) -> Option<u64> {
        self.closed_at
    }

    /// When the last lease was completed.
    pub fn last_lease_at(&self) -> u64 {
        self.last_lease_at
    }

    fn xid(&self, client: u32, gen: u32) -> u32 {
        self.xids.encode(client, gen)
    }

    fn ident(&self, client: u32) -> Ident {
        Ident {
            mac: client_mac(self.cfg.seed, client),
            client_id: self.cfg.client_id,
            host_name: self.cfg.host_name,
        }
    }

    /// (Re)transmit the request of `client`'s current phase and arm its timer.
    fn transmit(&mut self, now: u64, client: u32, tx: &mut impl Tx) {
        let c = self.clients[client as usize];
        let kind = match c.phase {
            Phase::Idle => return,
            Phase::Selecting => RequestKind::Discover,
            Phase::Requesting => RequestKind::Select {
                requested: Ipv4Addr::from(c.offered),
                server_id: Ipv4Addr::from(c.server_id),
            },
            Phase::Renewing if self.cfg.mix == Mix::DoraRebind => RequestKind::Rebind {
                ciaddr: Ipv4Addr::from(c.bound),
            },
            Phase::Renewing => RequestKind::Renew {
                ciaddr: Ipv4Addr::from(c.bound),
            },
        };
        let secs = u16::try_from(now.saturating_sub(c.exch_start) / NANOS).unwrap_or(u16::MAX);
        let ident = self.ident(client);
        let xid = self.xid(client, c.gen);
        build_request(&mut self.buf, &ident, xid, secs, self.cfg.path, &kind);
        let route = self.cfg.path.via(&kind, Ipv4Addr::from(c.server_id));
        let token = c.token.wrapping_add(1);
        self.clients[client as usize].token = token;
        self.timers.push_back(Timer {
            deadline: now.saturating_add(self.cfg.timeout),
            client,
            token,
        });
        if !tx.send(&self.buf, route) {
            self.counters.send_errors += 1;
        }
    }

    /// Enter `phase` with a new request and send it.
    fn begin(&mut self, now: u64, client: u32, phase: Phase, tx: &mut impl Tx) {
        let c = &mut self.clients[client as usize];
        c.phase = phase;
        c.tries = 0;
        c.msg_start = now;
        match phase {
            Phase::Selecting => self.counters.sent_discover += 1,
            Phase::Requesting => self.counters.sent_request += 1,
            Phase::Renewing => self.counters.sent_renew += 1,
            Phase::Idle => {}
        }
        self.transmit(now, client, tx);
    }

    fn end_exchange(&mut self, client: u32) {
        self.clients[client as usize].phase = Phase::Idle;
        self.outstanding -= 1;
        self.idle.push_back(client);
    }

    /// True while new exchanges may start at `now`.
    fn sending_open(&self, now: u64) -> bool {
        self.closed_at.is_none()
            && now < self.cfg.duration
            && self
                .cfg
                .max_exchanges
                .is_none_or(|m| self.counters.started < m)
    }

    fn close_sending(&mut self, now: u64) {
        if self.closed_at.is_none() {
            self.closed_at = Some(now.min(self.cfg.duration));
        }
    }

    /// How many exchanges could start right now, ignoring the pacer.
    fn room(&self) -> u64 {
        let window = u64::from(self.cfg.window.saturating_sub(self.outstanding));
        let left = self
            .cfg
            .max_exchanges
            .map_or(u64::MAX, |m| m.saturating_sub(self.counters.started));
        window.min(self.idle.len() as u64).min(left)
    }

    /// Start the exchanges due at `now`.
    pub fn start_due(&mut self, now: u64, tx: &mut impl Tx) {
        if !self.sending_open(now) {
            self.close_sending(now);
            return;
        }
        let room = self.room();
        let n = match &mut self.pacer {
            Some(p) => p.take(now, room),
            None => room.min(FLAT_OUT_BATCH),
        };
        for _ in 0..n {
            let Some(client) = self.idle.pop_front() else {
                break;
            };
            let c = &mut self.clients[client as usize];
            c.gen = c.gen.wrapping_add(1) & self.xids.gen_mask();
            c.exch_start = now;
            self.counters.started += 1;
            self.outstanding += 1;
            self.begin(now, client, Phase::Selecting, tx);
        }
        if !self.sending_open(now) {
            self.close_sending(now);
        }
    }

    /// Retransmit or give up on the requests whose timeout has passed by `now`.
    pub fn on_timers(&mut self, now: u64, tx: &mut impl Tx) {
        while let Some(t) = self.timers.front().copied() {
            if t.deadline > now {
                break;
            }
            self.timers.pop_front();
            let c = self.clients[t.client as usize];
            if c.token != t.token || c.phase == Phase::Idle {
                continue;
            }
            if c.tries < self.cfg.retries {
                self.clients[t.client as usize].tries += 1;
                self.counters.retransmits += 1;
                self.transmit(now, t.client, tx);
                continue;
            }
            self.counters.lost += 1;
            match c.phase {
                Phase::Selecting => self.counters.lost_discover += 1,
                Phase::Requesting => self.counters.lost_request += 1,
                Phase::Renewing => self.counters.lost_renew += 1,
                Phase::Idle => {}
            }
            self.end_exchange(t.client);
        }
    }

    /// Handle one received datagram (the UDP payload).
    pub fn on_reply(&mut self, now: u64, frame: &[u8], tx: &mut impl Tx) {
        self.counters.received += 1;
        let r = match Reply::parse(frame) {
            Ok(r) => r,
            Err(e) => {
                self.counters.malformed += 1;
                self.counters.malformed_by_reason[e.index()] += 1;
                return;
            }
        };
        let (client, gen) = self.xids.decode(r.xid);
        if client >= self.cfg.clients || r.hw() != client_mac(self.cfg.seed, client) {
            self.counters.foreign += 1;
            return;
        }
        if r.giaddr != self.cfg.path.giaddr() {
            self.counters.wrong_giaddr += 1;
            return;
        }
        let c = self.clients[client as usize];
        if c.phase == Phase::Idle || c.gen != gen {
            self.counters.late += 1;
            return;
        }
        match (c.phase, r.msg_type) {
            (Phase::Selecting, MessageType::Offer) => {
                let Some(sid) = r.server_id.filter(|_| !r.yiaddr.is_unspecified()) else {
                    self.counters.invalid_offer += 1;
                    return;
                };
                self.counters.offers += 1;
                self.lat
                    .discover_offer
                    .record(now.saturating_sub(c.msg_start));
                let cm = &mut self.clients[client as usize];
                cm.offered = u32::from(r.yiaddr);
                cm.server_id = u32::from(sid);
                self.begin(now, client, Phase::Requesting, tx);
            }
            (Phase::Requesting, MessageType::Ack) => {
                if u32::from(r.yiaddr) != c.offered
                    || r.server_id.map(u32::from) != Some(c.server_id)
                {
                    self.counters.invalid_ack += 1;
                    return;
                }
                self.counters.acks += 1;
                self.counters.leases += 1;
                self.lat.request_ack.record(now.saturating_sub(c.msg_start));
                self.lat.dora.record(now.saturating_sub(c.exch_start));
                self.last_lease_at = now;
                let sec = (now / NANOS) as usize;
                if self.timeline.len() <= sec {
                    self.timeline.resize(sec + 1, 0);
                }
                self.timeline[sec] += 1;
                self.clients[client as usize].bound = c.offered;
                match self.cfg.mix {
                    Mix::Dora => self.complete(client),
                    Mix::DoraRelease | Mix::DoraDecline => {
                        let (addr, sid) = (Ipv4Addr::from(c.offered), Ipv4Addr::from(c.server_id));
                        let kind = if self.cfg.mix == Mix::DoraDecline {
                            self.counters.sent_decline += 1;
                            RequestKind::Decline {
                                requested: addr,
                                server_id: sid,
                            }
                        } else {
                            self.counters.sent_release += 1;
                            RequestKind::Release {
                                ciaddr: addr,
                                server_id: sid,
                            }
                        };
                        let ident = self.ident(client);
                        let xid = self.xid(client, c.gen);
                        build_request(&mut self.buf, &ident, xid, 0, self.cfg.path, &kind);
                        let route = self.cfg.path.via(&kind, sid);
                        if !tx.send(&self.buf, route) {
                            self.counters.send_errors += 1;
                        }
                        self.clients[client as usize].bound = 0;
                        self.complete(client);
                    }
                    Mix::DoraRenew | Mix::DoraRebind => {
                        let cm = &mut self.clients[client as usize];
                        cm.gen = cm.gen.wrapping_add(1) & self.xids.gen_mask();
                        self.begin(now, client, Phase::Renewing, tx);
                    }
                }
            }
            (Phase::Renewing, MessageType::Ack) => {
                if u32::from(r.yiaddr) != c.bound || r.server_id.map(u32::from) != Some(c.server_id)
                {
                    self.counters.invalid_ack += 1;
                    return;
                }
                self.counters.acks += 1;
                self.counters.renewed += 1;
                self.lat.renew.record(now.saturating_sub(c.msg_start));
                self.complete(client);
            }
            (Phase::Requesting | Phase::Renewing, MessageType::Nak) => {
                self.counters.naks += 1;
                if c.phase == Phase::Renewing {
                    self.clients[client as usize].bound = 0;
                }
                self.end_exchange(client);
            }
            // An OFFER answering a retransmitted DISCOVER after we moved on.
            (Phase::Requesting, MessageType::Offer) => self.counters.late += 1,
            _ => self.counters.wrong_type += 1,
        }
    }

    fn complete(&mut self, client: u32) {
        self.counters.completed += 1;
        self.end_exchange(client);
    }

    /// True when the run is over at `now`: sending has closed and nothing is outstanding, or
    /// the hard stop has passed.
    pub fn done(&self, now: u64) -> bool {
        self.finished
            || (!self.sending_open(now) && self.outstanding == 0)
            || now >= self.cfg.hard_stop()
    }

    /// The next time something is due (a pacing slot, a timeout, the end of sending, the hard
    /// stop), for the caller to sleep until; never later than the hard stop.
    pub fn next_wakeup(&self, now: u64) -> u64 {
        let mut t = self.cfg.hard_stop();
        if let Some(tm) = self.timers.front() {
            t = t.min(tm.deadline);
        }
        if self.sending_open(now) {
            t = t.min(self.cfg.duration);
            if self.room() > 0 {
                t = t.min(self.pacer.as_ref().map_or(now, Pacer::next_due));
            }
        }
        t
    }

    /// End the run at `now`: every exchange still outstanding is lost (cut off).
    pub fn finish(&mut self, now: u64) {
        if self.finished {
            return;
        }
        self.close_sending(now);
        for i in 0..self.clients.len() {
            if self.clients[i].phase != Phase::Idle {
                self.counters.lost += 1;
                self.counters.unfinished += 1;
                self.clients[i].phase = Phase::Idle;
            }
        }
        self.outstanding = 0;
        self.timers.clear();
        self.finished = true;
    }

    /// The addresses the clients hold now (ACKed and not released or NAKed since).
    pub fn held_leases(&self) -> impl Iterator<Item = HeldLease> + '_ {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.bound != 0)
            .map(|(i, c)| HeldLease {
                client: i as u32,
                mac: client_mac(self.cfg.seed, i as u32),
                addr: Ipv4Addr::from(c.bound),
            })
    }
}

#[cfg(test)]
mod tests;
