//! A deterministic simulation of a failover pair: two `Peer`s, their daemons (one or several
//! model lease engines each, the workers, honouring the ownership snapshot), a TCP-like link,
//! DHCP clients, virtual time, and faults. A checker runs after every step that changed a lease.
//!
//! Time: one real (virtual) clock in milliseconds; each server sees it through its own offset
//! (clock skew). Everything is driven from seeded PRNGs, so a seed replays exactly.
//!
//! With one worker per server ([`Params::workers`] 1) the server is a single engine whose commits
//! are durable at once. With several, the model in [`workers`] applies: each worker owns its
//! clients' buckets and a shard of the pool, journals with its own latency, talks to the
//! relationship thread (the `Peer`) through its own queues, and sees each new ownership snapshot
//! at its own moment.

#![allow(dead_code)]

pub mod rng;
mod workers;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use tandem_controlplane::failover::message::Message;
use tandem_controlplane::failover::peer::{
    binding_end, needs_update, settle_acked, transfer, Event, Judgement, MemoryStore, Mode,
    OwnershipSnapshot, Peer, PeerConfig, PeerState, PoolCounts, Role, Start, Sweep, UpdateId,
};
use tandem_dataplane::authority::{AllocFrom, Authority};
use tandem_dataplane::binding::{Binding, BindingState, ClientKey};
use tandem_dataplane::hash;
use tandem_dataplane::scope::{AddrRange, OptionSet, Scope, ServerSettings, Subnet};
use tandem_dataplane::time::Time;

use rng::Rng;

/// Real time at the start of every simulation (ms since the epoch).
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// Parameters of one simulated pair.
#[derive(Clone, Debug)]
pub struct Params {
    /// Relationship mode.
    pub mode: Mode,
    /// MCLT (s).
    pub mclt: u32,
    /// Desired lease time (s).
    pub lease: u32,
    /// Receive timer (s).
    pub receive_timer: u32,
    /// Startup window (s).
    pub startup: u32,
    /// Automatic partner-down interval (s).
    pub switchover: Option<u32>,
    /// Rebalance interval (s).
    pub rebalance: u32,
    /// max-unacked-bndupd of each server.
    pub max_unacked: [u32; 2],
    /// Bindings per BNDUPD.
    pub batch: u16,
    /// Number of addresses in the pool.
    pub addresses: u32,
    /// Number of clients.
    pub clients: u32,
    /// Clock offsets of the two servers (ms).
    pub offsets: [i64; 2],
    /// One-way latency range (ms).
    pub latency: (u64, u64),
    /// Probability (per message, in 1/1000) of a latency spike (TCP retransmission).
    pub spike_per_mille: u32,
    /// Journal latency range for partner updates (ms).
    pub journal: (u64, u64),
    /// Mean seconds a client stays away after releasing.
    pub away_secs: u32,
    /// Probability (1/100) that a client releases at a renewal.
    pub release_pct: u32,
    /// Server whose vendor class says "isc-…", so its partner speaks the ISC dialect to it.
    pub isc_vendor: Option<usize>,
    /// Workers of each server (1: a single engine whose commits are durable at once).
    pub workers: [usize; 2],
    /// With several workers: the range each worker's fdatasync latency is drawn from (ms; each
    /// worker gets its own upper bound within it).
    pub sync_ms: (u64, u64),
    /// With several workers: the delay range of one hop of a queue between a worker and the
    /// relationship thread, either way (ms; each worker gets its own upper bound within it).
    pub hop_ms: (u64, u64),
    /// With several workers: the delay range before a worker picks up a new ownership
    /// snapshot (ms; each worker gets its own upper bound within it).
    pub snap_ms: (u64, u64),
    /// With several workers: the range of the interval between two shard-balancing attempts
    /// (ms).
    pub shard_every_ms: (u64, u64),
    /// With several workers: recover the journals by the order their records were written
    /// instead of the library's `shards::merge`, whose recency rule cannot order two journals'
    /// records of an address that changed without a new lease start or transaction time
    /// (see the ignored test `shard_move_then_pool_transfer_then_crash_keeps_the_transfer`).
    pub recover_by_write_order: bool,
}

impl Params {
    /// A small, quick default pair: load balance 50/50.
    pub fn basic() -> Params {
        Params {
            mode: Mode::LoadBalance {
                primary_percent: 50,
            },
            mclt: 300,
            lease: 1800,
            receive_timer: 15,
            startup: 10,
            switchover: None,
            rebalance: 60,
            max_unacked: [4, 4],
            batch: 4,
            addresses: 40,
            clients: 24,
            offsets: [0, 0],
            latency: (1, 20),
            spike_per_mille: 0,
            journal: (0, 5),
            away_secs: 300,
            release_pct: 5,
            isc_vendor: None,
            workers: [1, 1],
            sync_ms: (1, 20),
            hop_ms: (0, 3),
            snap_ms: (0, 5),
            shard_every_ms: (2_000, 30_000),
            recover_by_write_order: false,
        }
    }

    /// The same pair with `n` workers on each server.
    pub fn with_workers(mut self, n: [usize; 2]) -> Params {
        self.workers = n;
        self
    }

    /// The engine settings both servers serve: one scope holding the pool (what
    /// `shard_of`/`owner_of` split between workers).
    pub fn settings(&self) -> ServerSettings {
        let first = Ipv4Addr::new(10, 0, 0, 10);
        let last = Ipv4Addr::from(u32::from(first) + self.addresses.max(1) - 1);
        ServerSettings {
            server_id: Ipv4Addr::new(10, 0, 0, 1),
            global_options: OptionSet::new(),
            scopes: vec![Scope {
                name: "sim".into(),
                subnet: Subnet {
                    network: Ipv4Addr::new(10, 0, 0, 0),
                    prefix: 24,
                },
                ranges: vec![AddrRange::new(first, last)],
                exclusions: vec![],
                reservations: vec![],
                lease_time: self.lease,
                renew_time: None,
                rebind_time: None,
                options: OptionSet::new(),
                policies: vec![],
                authoritative: true,
                ddns: None,
            }],
            offer_hold_secs: 30,
            decline_probation_secs: 600,
            duplicate_window_ms: 2000,
        }
    }

    /// The peer configuration of server `i` (0 = primary, 1 = secondary).
    pub fn peer_config(&self, i: usize) -> PeerConfig {
        let role = if i == 0 {
            Role::Primary
        } else {
            Role::Secondary
        };
        let mut c = PeerConfig::new(b"sim-pair", role);
        c.mode = self.mode;
        c.mclt_secs = self.mclt;
        c.receive_timer_secs = self.receive_timer;
        c.startup_secs = self.startup;
        c.switchover_secs = self.switchover;
        c.rebalance_secs = self.rebalance;
        c.max_unacked = self.max_unacked[i];
        c.batch_max = self.batch;
        if self.isc_vendor == Some(i) {
            c.vendor_class = b"isc-4.4.3-P1".to_vec();
        }
        c
    }

    /// The pool's addresses.
    pub fn pool(&self) -> impl Iterator<Item = Ipv4Addr> {
        let n = self.addresses;
        (0..n).map(|k| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + k))
    }
}

/// A fault or operator action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Cut the link between the servers (clients are split too) for `secs`.
    Partition {
        /// Duration (s).
        secs: u32,
    },
    /// Reset the TCP connection (pending data lost).
    LinkReset,
    /// Crash server `server`, losing its databases if `lose_db`, restarting after `secs`.
    Crash {
        /// Which server.
        server: usize,
        /// Lose the lease store and the failover state.
        lose_db: bool,
        /// Downtime (s).
        secs: u32,
    },
    /// Operator: PARTNER-DOWN on `server` (only done if its partner is really down).
    AdminPartnerDown {
        /// Which server.
        server: usize,
    },
    /// Operator: pause `server` for `secs`.
    Pause {
        /// Which server.
        server: usize,
        /// Duration (s).
        secs: u32,
    },
    /// Operator: shut `server` down for `secs`.
    Shutdown {
        /// Which server.
        server: usize,
        /// Duration (s).
        secs: u32,
    },
    /// Operator: change the mode on both servers.
    SetMode(Mode),
    /// Step server `server`'s clock to `offset_ms` from real time.
    ClockStep {
        /// Which server.
        server: usize,
        /// The new offset (ms).
        offset_ms: i64,
    },
}

/// One lease a server handed out.
#[derive(Copy, Clone, Debug)]
pub struct GrantRec {
    /// Real time (ms).
    pub at: u64,
    /// Which server.
    pub server: usize,
    /// Its state then.
    pub state: PeerState,
    /// A new allocation (else a renewal).
    pub new: bool,
    /// The address came from the partner's pool.
    pub takeover: bool,
    /// The address was in the server's own pool before (new allocations).
    pub own_pool: bool,
    /// The worker that served it.
    pub worker: usize,
}

/// What a client believes it holds.
#[derive(Copy, Clone, Debug)]
struct ClientLease {
    addr: Ipv4Addr,
    server: usize,
    start: u64,
    end: u64,
}

#[derive(Clone, Debug)]
struct Client {
    id: u32,
    key: ClientKey,
    mac: [u8; 6],
    bucket: u8,
    lease: Option<ClientLease>,
    next_at: u64,
    reach: [bool; 2],
}

/// One item in a direction of the link.
#[derive(Clone, Debug)]
enum Wire {
    Msg(Message),
    Close,
}

#[derive(Clone, Debug)]
struct Conn {
    epoch: u64,
    open: [bool; 2],
    /// Items from side i to side 1-i: (deliver at, item).
    q: [VecDeque<(u64, Wire)>; 2],
    last: [u64; 2],
}

/// A lease table: at most one binding per pool address, indexed by address. A server with one
/// worker has a binding for every address; with several, each worker's table holds what that
/// worker knows (and a journal, what it made durable).
#[derive(Clone, Debug)]
pub struct Db {
    base: u32,
    v: Vec<Option<Binding>>,
}

impl Db {
    /// Every address FREE.
    fn new(p: &Params) -> Db {
        let mut d = Db::blank(p);
        for a in p.pool() {
            d.insert(a, Binding::empty(a, BindingState::Free));
        }
        d
    }

    /// Nothing known of any address.
    fn blank(p: &Params) -> Db {
        Db {
            base: p.pool().next().map_or(0, u32::from),
            v: vec![None; p.addresses as usize],
        }
    }

    fn idx(&self, a: &Ipv4Addr) -> Option<usize> {
        let k = u32::from(*a).checked_sub(self.base)? as usize;
        (k < self.v.len()).then_some(k)
    }

    /// The binding of `a`.
    pub fn get(&self, a: &Ipv4Addr) -> Option<&Binding> {
        self.idx(a).and_then(|k| self.v[k].as_ref())
    }

    /// True if `a` is a pool address.
    fn contains_key(&self, a: &Ipv4Addr) -> bool {
        self.idx(a).is_some()
    }

    fn insert(&mut self, a: Ipv4Addr, b: Binding) {
        if let Some(k) = self.idx(&a) {
            self.v[k] = Some(b);
        }
    }

    /// Forget `a`, returning what was known.
    fn remove(&mut self, a: &Ipv4Addr) -> Option<Binding> {
        self.idx(a).and_then(|k| self.v[k].take())
    }

    /// Every binding, in address order.
    pub fn values(&self) -> impl Iterator<Item = &Binding> {
        self.v.iter().flatten()
    }
}

impl std::ops::Index<&Ipv4Addr> for Db {
    type Output = Binding;
    fn index(&self, a: &Ipv4Addr) -> &Binding {
        self.get(a).expect("address known")
    }
}

struct Server {
    idx: usize,
    cfg: PeerConfig,
    peer: Option<Peer<MemoryStore>>,
    store: MemoryStore,
    /// The workers (one: the single-engine model).
    w: Vec<workers::Worker>,
    /// The relationship thread's side of several workers.
    rel: workers::Rel,
    /// Nothing of the workers' is due before this (several workers only).
    wdue: u64,
    /// The next pool report of the workers (several workers only).
    next_pools: u64,
    counts_dirty: bool,
    offset: i64,
    acks: Vec<(
        u64,
        UpdateId,
        Result<(), tandem_controlplane::failover::message::RejectReason>,
    )>,
    db_complete: bool,
    down_until: Option<u64>,
    fenced: bool,
    paused_until: Option<u64>,
    shutdown_until: Option<u64>,
}

/// Why a run failed.
#[derive(Debug)]
pub struct Failure {
    /// What broke.
    pub what: String,
    /// The recent trace (only when tracing).
    pub trace: Vec<String>,
}

/// The simulated world.
pub struct World {
    /// Parameters.
    pub p: Params,
    rng: Rng,
    /// Real time (ms).
    pub now: u64,
    servers: [Server; 2],
    clients: Vec<Client>,
    conn: Option<Conn>,
    epoch: u64,
    partitioned_until: Option<u64>,
    next_connect: u64,
    next_sweep: u64,
    faults: Vec<(u64, Fault)>,
    dirty: bool,
    trace_on: bool,
    trace: VecDeque<String>,
    failure: Option<String>,
    /// The PRNG of the workers' model (delays, shard moves), apart from `rng` so that a server
    /// with one worker draws exactly what it drew before workers were modelled.
    wrng: Rng,
    /// The engine settings of both servers (for `shard_of` / `owner_of`).
    settings: ServerSettings,
    /// When each server next tries a shard move between its workers (several workers only).
    next_shard: [u64; 2],
    /// When each server last lost its databases.
    lost_db_at: [Option<u64>; 2],
    /// Journal records written so far (orders the records of every worker's journal).
    journal_writes: u64,
    /// No client acts before this (the earliest `next_at`, or earlier).
    clients_next: u64,
    /// Statistics.
    pub stats: Stats,
}

/// Counters a test can assert on.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Leases granted (new allocations).
    pub allocations: u64,
    /// Renewals granted.
    pub renewals: u64,
    /// Requests nobody answered.
    pub unanswered: u64,
    /// NAKs.
    pub naks: u64,
    /// Releases.
    pub releases: u64,
    /// Allocations from the partner's pool.
    pub takeovers: u64,
    /// Allocations by state at the time.
    pub alloc_in_state: HashMap<&'static str, u64>,
    /// States each server visited.
    pub visited: [Vec<PeerState>; 2],
    /// Messages delivered.
    pub messages: u64,
    /// Faults applied.
    pub faults: u64,
    /// Refused discovers because no address was allocatable.
    pub exhausted: u64,
    /// Clock-skew events.
    pub skew_events: u64,
    /// CONNECT refusals seen (reason codes).
    pub connect_rejects: Vec<u8>,
    /// Partner updates rejected by the judge.
    pub judge_rejects: u64,
    /// Every lease handed out.
    pub grants: Vec<GrantRec>,
    /// Judging rounds across several workers (one per batch of partner bindings judged).
    pub rounds: u64,
    /// Shard moves between workers, and the addresses they moved.
    pub shard_moves: (u64, u64),
    /// Commits written but not yet durable when their server crashed (lost).
    pub lost_commits: u64,
    /// Grants whose worker served with a snapshot older than the relationship's.
    pub stale_grants: u64,
    /// Simulation steps run.
    pub steps: u64,
}

impl Stats {
    /// New allocations by `server`.
    pub fn allocations_by(&self, server: usize) -> usize {
        self.grants
            .iter()
            .filter(|g| g.server == server && g.new)
            .count()
    }

    /// Renewals by `server`.
    pub fn renewals_by(&self, server: usize) -> usize {
        self.grants
            .iter()
            .filter(|g| g.server == server && !g.new)
            .count()
    }

    /// Takeovers (allocations from the partner's pool) by `server`.
    pub fn takeovers_by(&self, server: usize) -> usize {
        self.grants
            .iter()
            .filter(|g| g.server == server && g.takeover)
            .count()
    }
}

impl World {
    /// A new pair, both servers fresh, clients not yet started.
    pub fn new(p: Params, seed: u64) -> World {
        let trace_on = std::env::var("TANDEM_SIM_TRACE").is_ok();
        let mut rng = Rng::new(seed);
        let now = EPOCH_MS;
        let mut wrng = Rng::new(seed ^ 0x0077_6f72_6b65_7273);
        let mut mk = |i: usize, p: &Params| Server {
            idx: i,
            cfg: p.peer_config(i),
            peer: None,
            store: MemoryStore::default(),
            w: workers::Worker::for_server(p, p.workers[i], &mut wrng),
            rel: workers::Rel::default(),
            wdue: u64::MAX,
            next_pools: 0,
            counts_dirty: true,
            offset: p.offsets[i],
            acks: Vec::new(),
            db_complete: true,
            down_until: None,
            fenced: false,
            paused_until: None,
            shutdown_until: None,
        };
        let servers = [mk(0, &p), mk(1, &p)];
        let mut clients = Vec::new();
        for id in 0..p.clients {
            let mut mac = [0u8; 6];
            for b in mac.iter_mut() {
                *b = rng.below(256) as u8;
            }
            mac[0] = 0x02;
            clients.push(Client {
                id,
                key: ClientKey::from_hw(1, &mac),
                mac,
                bucket: hash::bucket(&mac),
                lease: None,
                next_at: now + rng.range(1_000, 60_000),
                reach: [true, true],
            });
        }
        let settings = p.settings();
        let next_shard = [now + p.shard_every_ms.1, now + p.shard_every_ms.1];
        let mut w = World {
            p,
            wrng,
            settings,
            next_shard,
            lost_db_at: [None, None],
            journal_writes: 0,
            clients_next: now,
            rng,
            now,
            servers,
            clients,
            conn: None,
            epoch: 0,
            partitioned_until: None,
            next_connect: now + 500,
            next_sweep: now + 1000,
            faults: Vec::new(),
            dirty: false,
            trace_on,
            trace: VecDeque::new(),
            failure: None,
            stats: Stats::default(),
        };
        for i in 0..2 {
            w.start_server(i, Start::Fresh);
        }
        w
    }

    /// Client `ci` acts next at `t`.
    fn set_next(&mut self, ci: usize, t: u64) {
        self.clients[ci].next_at = t;
        self.clients_next = self.clients_next.min(t);
    }

    /// Turn the trace on (for replays).
    pub fn trace(&mut self, on: bool) {
        self.trace_on = on;
    }

    fn log(&mut self, f: impl FnOnce() -> String) {
        if self.trace_on {
            let line = format!("[{:>9.3}] {}", (self.now - EPOCH_MS) as f64 / 1000.0, f());
            if std::env::var("TANDEM_SIM_TRACE").is_ok_and(|v| v == "all") {
                eprintln!("{line}");
            }
            self.trace.push_back(line);
            if self.trace.len() > 400 {
                self.trace.pop_front();
            }
        }
    }

    fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            self.log(|| format!("FAILURE: {what}"));
            self.failure = Some(what);
        }
    }

    /// Schedule `fault` at `secs` seconds from the start.
    pub fn schedule(&mut self, secs_from_start: u64, fault: Fault) {
        self.faults.push((EPOCH_MS + secs_from_start * 1000, fault));
        self.faults.sort_by_key(|f| f.0);
    }

    /// Server `i`'s clock.
    fn clock(&self, i: usize) -> Time {
        Time((self.now as i64 + self.servers[i].offset) as u64)
    }

    /// Real time of server `i`'s clock reading `t`.
    fn real_of(&self, i: usize, t: Time) -> u64 {
        (t.millis() as i64 - self.servers[i].offset).max(0) as u64
    }

    /// Real end (ms) of a lease ending at server-clock second `expires` on server `i`.
    fn real_end(&self, i: usize, expires: u32) -> u64 {
        ((u64::from(expires) * 1000) as i64 - self.servers[i].offset).max(0) as u64
    }

    /// The state of server `i`, if up.
    pub fn state(&self, i: usize) -> Option<PeerState> {
        self.servers[i].peer.as_ref().map(|p| p.state())
    }

    /// The peer of server `i`, if up.
    pub fn peer(&self, i: usize) -> Option<&Peer<MemoryStore>> {
        self.servers[i].peer.as_ref()
    }

    /// The peer of server `i`, mutably, if up.
    pub fn peer_mut(&mut self, i: usize) -> Option<&mut Peer<MemoryStore>> {
        self.servers[i].peer.as_mut()
    }

    /// Bindings of server `i`: every worker's, and those in flight between its workers.
    pub fn db(&self, i: usize) -> Db {
        self.view(i)
    }

    /// Number of clients holding a lease now.
    pub fn bound_clients(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.lease.is_some_and(|l| l.end > self.now))
            .count()
    }

    /// The failure, if any, with the trace.
    pub fn failure(&self) -> Option<Failure> {
        self.failure.as_ref().map(|w| Failure {
            what: w.clone(),
            trace: self.trace.iter().cloned().collect(),
        })
    }

    /// True while the servers are partitioned.
    pub fn partitioned(&self) -> bool {
        self.partitioned_until.is_some_and(|u| u > self.now)
    }

    // ----- servers ---------------------------------------------------------------------------

    fn start_server(&mut self, i: usize, start: Start) {
        let now = self.clock(i);
        let cfg = self.servers[i].cfg.clone();
        let store = self.servers[i].store.clone();
        let peer = match Peer::new(cfg, store, start.clone(), now) {
            Ok(p) => p,
            Err(e) => return self.fail(format!("server {i}: Peer::new failed: {e}")),
        };
        self.log(|| format!("S{i} start {:?}", start_name(&start)));
        if self.multi(i) {
            self.start_workers(i, peer);
            self.update_counts(i);
            self.flush_counts(i);
            self.note_state(i);
            self.drain(i);
            return;
        }
        let s = &mut self.servers[i];
        s.w[0].snap = Some(peer.snapshot());
        s.peer = Some(peer);
        s.down_until = None;
        let requeue: Vec<Binding> = s.w[0]
            .db
            .values()
            .filter(|b| needs_update(b))
            .copied()
            .collect();
        for b in requeue {
            if let Some(p) = self.servers[i].peer.as_mut() {
                p.local_update(now, b);
            }
        }
        self.update_counts(i);
        self.flush_counts(i);
        self.note_state(i);
        self.drain(i);
    }

    fn crash(&mut self, i: usize, lose_db: bool, secs: u32) {
        if self.servers[i].peer.is_none() {
            return;
        }
        if lose_db && !self.servers[1 - i].db_complete {
            // Losing both databases loses leases for good: not a failure the protocol covers.
            return;
        }
        self.log(|| format!("S{i} CRASH lose_db={lose_db} for {secs}s"));
        self.stats.faults += 1;
        let multi = self.multi(i);
        let s = &mut self.servers[i];
        if let Some(p) = s.peer.take() {
            s.store = p.store().clone();
        }
        s.acks.clear();
        s.paused_until = None;
        s.shutdown_until = None;
        if multi {
            self.stats.lost_commits += s.w.iter().map(|w| w.syncing.len() as u64).sum::<u64>();
            for w in &mut s.w {
                w.crash(&self.p, lose_db);
            }
            s.rel = workers::Rel::default();
        } else {
            s.w[0].snap = None;
            if lose_db {
                s.w[0].db = Db::new(&self.p);
            }
        }
        if lose_db {
            s.store = MemoryStore::default();
            self.servers[i].db_complete = false;
            self.lost_db_at[i] = Some(self.now);
        }
        self.servers[i].down_until = Some(self.now + u64::from(secs) * 1000);
        self.close_side(i);
        self.dirty = true;
    }

    fn restart(&mut self, i: usize) {
        let start = match self.servers[i].store.saved.clone() {
            Some(ps) => Start::Saved(ps),
            None => Start::Lost,
        };
        self.start_server(i, start);
    }

    fn note_state(&mut self, i: usize) {
        if let Some(st) = self.state(i) {
            let v = &mut self.stats.visited[i];
            if v.last() != Some(&st) {
                v.push(st);
            }
        }
    }

    fn update_counts(&mut self, i: usize) {
        self.servers[i].counts_dirty = true;
    }

    fn flush_counts(&mut self, i: usize) {
        if !self.servers[i].counts_dirty {
            return;
        }
        if self.multi(i) {
            // The workers report their pools every 2 s (as `tandemd`'s relationship thread
            // asks them to).
            if self.now < self.servers[i].next_pools {
                return;
            }
            self.servers[i].next_pools = self.now + 2_000;
        }
        self.servers[i].counts_dirty = false;
        let s = &mut self.servers[i];
        let Some(p) = s.peer.as_mut() else { return };
        let own = s.cfg.role.pool_state();
        let mut c = PoolCounts::default();
        for b in s.w.iter().flat_map(|w| w.db.values()) {
            if b.state == own {
                c.own += 1;
            } else if matches!(b.state, BindingState::Free | BindingState::Backup) {
                c.partner += 1;
            }
        }
        p.set_pool_counts(c);
    }

    /// Move everything server `i`'s peer produced: messages to the link, events to the daemon.
    fn drain(&mut self, i: usize) {
        for _ in 0..100_000 {
            let Some(p) = self.servers[i].peer.as_mut() else {
                return;
            };
            if let Some(m) = p.poll_transmit() {
                self.transmit(i, m);
                continue;
            }
            let Some(ev) = p.poll_event() else {
                if self.multi(i) {
                    self.start_round(i);
                }
                return;
            };
            self.on_event(i, ev);
        }
        self.fail(format!("server {i}: drain did not terminate"));
    }

    fn on_event(&mut self, i: usize, ev: Event) {
        let now = self.clock(i);
        match ev {
            Event::SnapshotChanged => {
                let snap = self.servers[i].peer.as_ref().map(|p| p.snapshot());
                if self.multi(i) {
                    if let Some(snap) = snap {
                        self.publish(i, snap);
                    }
                } else {
                    self.servers[i].w[0].snap = snap;
                }
            }
            Event::StateChanged { from, to } => {
                self.log(|| format!("S{i} {from} -> {to}"));
                if from == PeerState::Recover
                    && matches!(to, PeerState::RecoverWait | PeerState::RecoverDone)
                {
                    self.servers[i].db_complete = true;
                }
                if to != PeerState::Startup {
                    self.servers[i].fenced = false;
                }
                self.note_state(i);
            }
            Event::PartnerStateChanged { state, startup } => {
                self.log(|| {
                    format!(
                        "S{i} partner is {state}{}",
                        if startup { " (startup)" } else { "" }
                    )
                });
            }
            Event::PartnerBinding { id, binding } if self.multi(i) => {
                self.servers[i].rel.queued.push((id, binding));
            }
            Event::UpdateAcked { binding } if self.multi(i) => {
                self.servers[i].rel.queued_acked.push(binding);
            }
            Event::SendAllBindings if self.multi(i) => self.send_all(i),
            Event::TransferAddresses { count, to } if self.multi(i) => {
                self.transfer_from_workers(i, count, to);
            }
            Event::PartnerBinding { id, binding } => {
                let snap = match self.servers[i].peer.as_ref() {
                    Some(p) => p.snapshot(),
                    None => return,
                };
                let in_pool = self.servers[i].w[0].db.contains_key(&binding.addr);
                let local = self.servers[i].w[0].db.get(&binding.addr).copied();
                let j = if in_pool {
                    snap.judge(local.as_ref(), &binding, now)
                } else {
                    Judgement::Reject {
                        reason:
                            tandem_controlplane::failover::message::RejectReason::IllegalIpAddress,
                        resend: None,
                    }
                };
                self.log(|| {
                    format!(
                        "S{i} judge {} {:?} {} exp={} local={} -> {}",
                        binding.addr,
                        binding.state,
                        binding.client,
                        binding.expires,
                        local.map_or("-".into(), |l| format!(
                            "{:?} {} exp={}",
                            l.state, l.client, l.expires
                        )),
                        match &j {
                            Judgement::Accept(b) => format!("accept {:?}", b.state),
                            Judgement::Ignore => "ignore".into(),
                            Judgement::Reject { reason, resend } =>
                                format!("reject {reason:?} resend={}", resend.is_some()),
                        }
                    )
                });
                let result = match j {
                    Judgement::Accept(b) => {
                        self.servers[i].w[0].db.insert(b.addr, b);
                        self.dirty = true;
                        Ok(())
                    }
                    Judgement::Reject { reason, resend } => {
                        self.stats.judge_rejects += 1;
                        if let Some(l) = resend {
                            if let Some(p) = self.servers[i].peer.as_mut() {
                                p.local_update(now, l);
                            }
                        }
                        Err(reason)
                    }
                    _ => Ok(()),
                };
                let (lo, hi) = self.p.journal;
                let at = self.now + self.rng.range(lo, hi + 1);
                self.servers[i].acks.push((at, id, result));
                self.update_counts(i);
            }
            Event::UpdateAcked { binding } => {
                if let Some(l) = self.servers[i].w[0].db.get(&binding.addr).copied() {
                    let settled = settle_acked(&l, &binding);
                    if let Some(s) = settled {
                        self.servers[i].w[0].db.insert(s.addr, s);
                        self.update_counts(i);
                    }
                }
            }
            Event::UpdateRejected { binding, reason } => {
                self.log(|| {
                    format!(
                        "S{i} update {} {:?} rejected: {reason:?}",
                        binding.addr, binding.state
                    )
                });
            }
            Event::SendAllBindings => {
                let all: Vec<Binding> = self.servers[i].w[0].db.values().copied().collect();
                self.log(|| format!("S{i} sends all {} bindings", all.len()));
                if let Some(p) = self.servers[i].peer.as_mut() {
                    for b in all {
                        p.local_update(now, b);
                    }
                    p.end_full_update(now);
                }
            }
            Event::TransferAddresses { count, to } => {
                let own = self.servers[i].cfg.role.pool_state();
                let mut cands: Vec<Ipv4Addr> = self.servers[i].w[0]
                    .db
                    .values()
                    .filter(|b| b.state == own)
                    .map(|b| b.addr)
                    .collect();
                self.rng.shuffle(&mut cands);
                cands.truncate(count as usize);
                self.log(|| format!("S{i} transfers {} addresses to {to:?}", cands.len()));
                for a in cands {
                    let b = self.servers[i].w[0].db[&a];
                    let t = transfer(&b, to, now);
                    self.servers[i].w[0].db.insert(a, t);
                    if let Some(p) = self.servers[i].peer.as_mut() {
                        p.local_update(now, t);
                    }
                }
                self.update_counts(i);
            }
            Event::ClockSkew { skew_secs } => {
                self.stats.skew_events += 1;
                self.log(|| format!("S{i} clock skew {skew_secs}s"));
            }
            Event::CloseLink => {
                self.log(|| format!("S{i} closes the link"));
                self.close_side(i);
            }
            Event::ConnectRejected { reason, by_us } => {
                self.stats.connect_rejects.push(reason.code());
                self.log(|| format!("S{i} connect rejected {reason:?} by_us={by_us}"));
            }
            Event::PersistFailed { wanted, error } => {
                self.log(|| format!("S{i} persist failed wanting {wanted}: {error}"));
            }
            Event::ProtocolViolation { what } => {
                self.fail(format!("server {i}: protocol violation: {what}"));
            }
            other => {
                self.log(|| format!("S{i} event {other:?}"));
            }
        }
    }

    // ----- link ------------------------------------------------------------------------------

    fn transmit(&mut self, i: usize, m: Message) {
        let (lo, hi) = self.p.latency;
        let mut lat = self.rng.range(lo, hi + 1);
        if self.p.spike_per_mille > 0 && self.rng.below(1000) < u64::from(self.p.spike_per_mille) {
            lat += self.rng.range(200, 3_000);
        }
        let now = self.now;
        let trace = self.trace_on;
        let Some(c) = self.conn.as_mut() else { return };
        if !c.open[i] {
            return;
        }
        let at = (now + lat).max(c.last[i]);
        c.last[i] = at;
        if trace {
            let line = format!("S{i} -> {:?} xid={}", m.body.message_type(), m.xid);
            let desc = if matches!(
                m.body,
                tandem_controlplane::failover::message::Body::BndUpd(_)
                    | tandem_controlplane::failover::message::Body::BndAck(_)
                    | tandem_controlplane::failover::message::Body::State(_)
            ) {
                format!("{line} {:?}", m.body)
            } else {
                line
            };
            self.log(|| desc);
        }
        if let Some(c) = self.conn.as_mut() {
            c.q[i].push_back((at, Wire::Msg(m)));
        }
    }

    /// Side `i` closed its end (or crashed): the other side learns after the queued data.
    fn close_side(&mut self, i: usize) {
        let now = self.now;
        let Some(c) = self.conn.as_mut() else { return };
        if !c.open[i] {
            return;
        }
        c.open[i] = false;
        let at = (now + 5).max(c.last[i]);
        c.last[i] = at;
        c.q[i].push_back((at, Wire::Close));
        if !c.open[1 - i] && c.q.iter().all(|q| q.is_empty()) {
            self.conn = None;
        }
    }

    fn try_connect(&mut self) {
        if self.partitioned() {
            return;
        }
        if self.servers.iter().any(|s| s.peer.is_none()) {
            return;
        }
        let need = match &self.conn {
            None => true,
            Some(c) => !(c.open[0] && c.open[1]),
        };
        if !need {
            return;
        }
        self.epoch += 1;
        self.log(|| "link up".to_string());
        self.conn = Some(Conn {
            epoch: self.epoch,
            open: [true, true],
            q: [VecDeque::new(), VecDeque::new()],
            last: [self.now, self.now],
        });
        for i in 0..2 {
            let now = self.clock(i);
            if let Some(p) = self.servers[i].peer.as_mut() {
                p.connected(now);
            }
        }
        self.drain(0);
        self.drain(1);
    }

    fn deliver_due(&mut self) -> bool {
        if self.partitioned() {
            return false;
        }
        let mut any = false;
        for dir in 0..2 {
            loop {
                let now = self.now;
                let Some(c) = self.conn.as_mut() else {
                    return any;
                };
                let Some(&(at, _)) = c.q[dir].front() else {
                    break;
                };
                if at > now {
                    break;
                }
                let Some((_, item)) = c.q[dir].pop_front() else {
                    break;
                };
                let to = 1 - dir;
                if !c.open[to] {
                    c.q[dir].clear();
                    if !c.open[dir] && c.q[to].is_empty() {
                        self.conn = None;
                    }
                    break;
                }
                any = true;
                match item {
                    Wire::Msg(m) => {
                        self.stats.messages += 1;
                        let t = self.clock(to);
                        if let Some(p) = self.servers[to].peer.as_mut() {
                            p.handle_message(t, m);
                        }
                        self.drain(to);
                    }
                    Wire::Close => {
                        if let Some(c) = self.conn.as_mut() {
                            c.open[to] = false;
                        }
                        let t = self.clock(to);
                        self.log(|| format!("S{to} sees the link close"));
                        if let Some(p) = self.servers[to].peer.as_mut() {
                            p.disconnected(t);
                        }
                        self.drain(to);
                        if let Some(c) = self.conn.as_ref() {
                            if !c.open[0] && !c.open[1] {
                                self.conn = None;
                            }
                        }
                    }
                }
            }
        }
        any
    }

    fn next_delivery(&self) -> Option<u64> {
        if self.partitioned() {
            return None;
        }
        let c = self.conn.as_ref()?;
        c.q.iter().filter_map(|q| q.front().map(|x| x.0)).min()
    }

    // ----- clients ---------------------------------------------------------------------------

    fn reachable(&self, c: &Client, i: usize) -> bool {
        c.reach[i] && self.servers[i].peer.is_some()
    }

    fn client_act(&mut self, ci: usize) {
        let c = self.clients[ci].clone();
        let now = self.now;
        match c.lease {
            Some(l) if now >= l.end => {
                self.log(|| format!("C{} lease on {} ended", c.id, l.addr));
                self.clients[ci].lease = None;
                let t = now + self.rng.range(100, 5_000);
                self.set_next(ci, t);
            }
            None => self.discover(ci),
            Some(l) => {
                let dur = l.end - l.start;
                let t2 = l.start + dur * 7 / 8;
                if self.rng.below(100) < u64::from(self.p.release_pct) {
                    self.release(ci, l);
                    return;
                }
                if now >= t2 {
                    let mut order = [0usize, 1];
                    if self.rng.below(2) == 1 {
                        order.swap(0, 1);
                    }
                    for s in order {
                        if !self.reachable(&c, s) {
                            continue;
                        }
                        match self.serve(s, ci, Req::Renew(l.addr)) {
                            Reply::Ack => return,
                            Reply::Nak => {
                                self.stats.naks += 1;
                                self.clients[ci].lease = None;
                                self.set_next(ci, now + 1_000);
                                return;
                            }
                            Reply::Silent => {}
                        }
                    }
                    self.stats.unanswered += 1;
                    self.set_next(ci, (now + ((l.end - now) / 2).max(1_000)).min(l.end));
                } else {
                    let s = l.server;
                    if self.reachable(&c, s) {
                        match self.serve(s, ci, Req::Renew(l.addr)) {
                            Reply::Ack => return,
                            Reply::Nak => {
                                self.stats.naks += 1;
                                self.clients[ci].lease = None;
                                self.set_next(ci, now + 1_000);
                                return;
                            }
                            Reply::Silent => {}
                        }
                    }
                    self.stats.unanswered += 1;
                    self.set_next(ci, (now + ((t2 - now) / 2).max(1_000)).min(t2));
                }
            }
        }
    }

    fn discover(&mut self, ci: usize) {
        let c = self.clients[ci].clone();
        let now = self.now;
        let mut order = [0usize, 1];
        if self.rng.below(2) == 1 {
            order.swap(0, 1);
        }
        for s in order {
            if !self.reachable(&c, s) {
                continue;
            }
            if let Reply::Ack = self.serve(s, ci, Req::Discover) {
                return;
            }
        }
        self.stats.unanswered += 1;
        let t = now + self.rng.range(2_000, 30_000);
        self.set_next(ci, t);
    }

    fn release(&mut self, ci: usize, l: ClientLease) {
        let c = self.clients[ci].clone();
        self.stats.releases += 1;
        if self.reachable(&c, l.server) {
            self.serve(l.server, ci, Req::Release(l.addr));
        }
        self.log(|| format!("C{} releases {}", c.id, l.addr));
        self.clients[ci].lease = None;
        let away = u64::from(self.p.away_secs) * 1000;
        let t = self.now + self.rng.range(1_000, away.max(2_000) * 2);
        self.set_next(ci, t);
        self.dirty = true;
    }

    /// The model engine of server `s` answering client `ci`.
    fn serve(&mut self, s: usize, ci: usize, req: Req) -> Reply {
        let c = self.clients[ci].clone();
        // The worker owning the client's bucket answers it.
        let wk = usize::from(c.bucket) % self.servers[s].w.len();
        let Some(snap) = self.servers[s].w[wk].snap else {
            return Reply::Silent;
        };
        if self.servers[s].peer.is_none() {
            return Reply::Silent;
        }
        let t = self.clock(s);
        let ts = (t.millis() / 1000) as u32;
        let skew = snap.skew_allowance();
        // The client's running binding here, if any.
        let mine = self.servers[s].w[wk]
            .db
            .values()
            .find(|b| {
                b.state == BindingState::Active && b.client == c.key && ts < binding_end(b, skew)
            })
            .copied();
        let v = snap.verdict(0, c.bucket, mine.is_some(), t);
        if !v.answer {
            return Reply::Silent;
        }
        let target = match req {
            Req::Discover => mine.map(|b| b.addr),
            Req::Renew(a) | Req::Release(a) => Some(a),
        };
        if let Req::Release(a) = req {
            if let Some(b) = self.servers[s].w[wk].db.get(&a).copied() {
                if b.state == BindingState::Active && b.client == c.key {
                    let mut r = b;
                    r.state = BindingState::Released;
                    r.cltt = ts;
                    r.from_partner = false;
                    if self.multi(s) {
                        self.commit(s, wk, vec![r], workers::AfterSync::Nothing);
                        return Reply::Silent;
                    }
                    self.servers[s].w[wk].db.insert(a, r);
                    if let Some(p) = self.servers[s].peer.as_mut() {
                        p.local_update(t, r);
                    }
                    self.drain(s);
                    self.update_counts(s);
                }
            }
            return Reply::Silent;
        }
        if let Some(a) = target {
            // Renew / rebind / discover with an existing binding.
            let Some(b) = self.servers[s].w[wk].db.get(&a).copied() else {
                return Reply::Silent;
            };
            let running = |b: &Binding| {
                matches!(
                    b.state,
                    BindingState::Active | BindingState::Offered | BindingState::Abandoned
                ) && ts < binding_end(b, skew)
            };
            if b.state == BindingState::Active && b.client == c.key && running(&b) {
                let Some(g) = snap.grant(self.p.lease, b.acked_expiry, t) else {
                    return Reply::Silent;
                };
                self.check_grant(
                    s,
                    &snap,
                    &c,
                    &b,
                    b.acked_expiry,
                    &g,
                    v.lease_cap_secs,
                    false,
                );
                let mut n = b;
                n.expires = g.expires;
                n.cltt = ts;
                n.sent_expiry = g.potential_expiry;
                n.from_partner = false;
                self.commit_lease(s, wk, ci, n, t);
                self.stats.renewals += 1;
                self.stats.grants.push(GrantRec {
                    at: self.now,
                    server: s,
                    state: snap.state(),
                    new: false,
                    takeover: false,
                    own_pool: false,
                    worker: wk,
                });
                return Reply::Ack;
            }
            if running(&b) && b.client != c.key {
                return Reply::Nak;
            }
            if matches!(req, Req::Renew(_)) {
                return Reply::Silent;
            }
        }
        // New allocation.
        if v.alloc == AllocFrom::Nothing {
            self.stats.exhausted += 1;
            return Reply::Silent;
        }
        let pool_ok = |st: BindingState| pool_allows(v.alloc, st);
        let cands: Vec<Binding> = self.servers[s].w[wk]
            .db
            .values()
            .filter(|b| pool_ok(b.state) && snap.may_allocate(b, t))
            .copied()
            .collect();
        if cands.is_empty() {
            self.stats.exhausted += 1;
            return Reply::Silent;
        }
        let b = cands[self.rng.below(cands.len() as u64) as usize];
        let Some(g) = snap.grant(self.p.lease, 0, t) else {
            return Reply::Silent;
        };
        self.check_grant(s, &snap, &c, &b, 0, &g, v.lease_cap_secs, true);
        self.log(|| format!("S{s} allocates {} from {b:?}", b.addr));
        let takeover = b.state != snap.own_pool();
        self.stats.grants.push(GrantRec {
            at: self.now,
            server: s,
            state: snap.state(),
            new: true,
            takeover,
            own_pool: b.state == snap.own_pool(),
            worker: wk,
        });
        if takeover {
            self.stats.takeovers += 1;
            let ok = snap.state() == PeerState::PartnerDown
                && snap.takeover_at().is_some_and(|at| t >= at);
            if !ok {
                self.fail(format!(
                    "server {s} allocated {} ({:?}, not its pool) in {} before the takeover time",
                    b.addr,
                    b.state,
                    snap.state()
                ));
            }
        }
        let mut n = Binding::empty(b.addr, BindingState::Active);
        n.client = c.key;
        n.htype = 1;
        n.hlen = 6;
        n.chaddr[..6].copy_from_slice(&c.mac);
        n.start = ts;
        n.expires = g.expires;
        n.cltt = ts;
        n.acked_expiry = 0;
        n.sent_expiry = g.potential_expiry;
        *self
            .stats
            .alloc_in_state
            .entry(snap.state().name())
            .or_default() += 1;
        self.stats.allocations += 1;
        self.commit_lease(s, wk, ci, n, t);
        Reply::Ack
    }

    /// Worker `wk` of server `s` commits lease `n` to client `ci`; the client has it once the
    /// commit is durable (at once with one worker).
    fn commit_lease(&mut self, s: usize, wk: usize, ci: usize, n: Binding, t: Time) {
        let end = self.real_end(s, n.expires);
        let cid = self.clients[ci].id;
        let left = end.saturating_sub(self.now) / 1000;
        self.log(|| {
            format!(
                "S{s} leases {} to C{cid} until {} (real +{left}s)",
                n.addr, n.expires
            )
        });
        if self.multi(s) {
            let lease = ClientLease {
                addr: n.addr,
                server: s,
                start: self.now,
                end,
            };
            let at = self.commit(s, wk, vec![n], workers::AfterSync::Client { ci, lease });
            // No answer yet: the client retries if the ACK never comes (a crash before the
            // commit reached the disk).
            self.set_next(ci, at + 1_000);
            return;
        }
        self.servers[s].w[0].db.insert(n.addr, n);
        if let Some(p) = self.servers[s].peer.as_mut() {
            p.local_update(t, n);
        }
        self.clients[ci].lease = Some(ClientLease {
            addr: n.addr,
            server: s,
            start: self.now,
            end,
        });
        let dur = end.saturating_sub(self.now);
        self.set_next(ci, self.now + (dur / 2).max(500));
        self.dirty = true;
        self.drain(s);
        self.update_counts(s);
    }

    /// The independent checks on one grant: service allowed in this state, the MCLT rule, the
    /// verdict's cap.
    #[allow(clippy::too_many_arguments)]
    fn check_grant(
        &mut self,
        s: usize,
        snap: &OwnershipSnapshot,
        c: &Client,
        b: &Binding,
        acked: u32,
        g: &tandem_controlplane::failover::peer::Grant,
        cap: Option<u32>,
        new: bool,
    ) {
        let Some(mut actual) = self.state(s) else {
            return;
        };
        // A worker that has not picked up the relationship's newest snapshot yet serves by the
        // one it has: judge the service by that snapshot's state and buckets (the safety checks
        // cover what the brief disagreement could break).
        let stale = self.multi(s) && self.peer(s).is_some_and(|p| p.snapshot() != *snap);
        if stale {
            self.stats.stale_grants += 1;
            actual = snap.state();
        }
        let t = (self.clock(s).millis() / 1000) as u32;
        let role = self.servers[s].cfg.role;
        // Independent service table (digest §2.1, Windows semantics).
        let allowed = match actual {
            PeerState::Normal if stale => snap.buckets().contains(c.bucket),
            PeerState::Normal => match self.servers[s].cfg.mode {
                Mode::LoadBalance { .. } | Mode::HotStandby { .. } => {
                    let primary_buckets = self.primary_map(s);
                    let primary_serves = primary_buckets.contains(c.bucket);
                    (role == Role::Primary) == primary_serves
                }
            },
            PeerState::CommunicationsInterrupted
            | PeerState::PartnerDown
            | PeerState::ResolutionInterrupted
            | PeerState::ConflictDone => true,
            PeerState::RecoverDone => !new,
            _ => false,
        };
        if !allowed {
            self.fail(format!(
                "server {s} served C{} (bucket {}) in {actual} (new={new})",
                c.id, c.bucket
            ));
        }
        let latest = tandem_controlplane::failover::peer::mclt::latest_end(t, acked, snap.mclt());
        if g.expires > latest {
            self.fail(format!(
                "server {s} gave {} a lease to {} beyond max(now {t}, acked {acked}) + MCLT = {latest}",
                b.addr, g.expires
            ));
        }
        if g.lease_secs > self.p.lease {
            self.fail(format!("server {s} gave more than the desired lease"));
        }
        if actual != PeerState::Normal && g.lease_secs > snap.mclt() {
            self.fail(format!("server {s} gave more than MCLT outside NORMAL"));
        }
        if let Some(cap) = cap {
            if g.lease_secs > cap && (new || actual != PeerState::Normal) {
                self.fail(format!("server {s} exceeded the verdict's cap {cap}"));
            }
        }
    }

    /// The buckets the primary answers in NORMAL, from the configuration (independent of the
    /// peer's own map).
    fn primary_map(&self, s: usize) -> hash::BucketMap {
        // The secondary adopts the primary's HBA, which follows the primary's mode.
        let _ = s;
        self.servers[0].cfg.mode.primary_buckets()
    }

    // ----- checker ---------------------------------------------------------------------------

    /// Every server's records of `addr` (each worker's), for a failure message.
    fn records_of(&self, addr: Ipv4Addr) -> String {
        let mut out = String::new();
        for (s, srv) in self.servers.iter().enumerate() {
            if let Some(p) = &srv.peer {
                out.push_str(&format!("\n  S{s} snapshot: {:?}", p.snapshot()));
            }
            for (k, w) in srv.w.iter().enumerate() {
                for b in w.db.values().filter(|b| b.addr == addr) {
                    out.push_str(&format!("\n  S{s} worker {k}: {b:?}"));
                }
            }
        }
        out
    }

    fn check(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let now = self.now;
        // 1. Clients' own view.
        let n = self.p.addresses as usize;
        let base = self.servers[0].w[0].db.base;
        let slot = |a: Ipv4Addr| (u32::from(a).wrapping_sub(base) as usize).min(n);
        let mut held: Vec<Option<u32>> = vec![None; n + 1];
        for c in &self.clients {
            if let Some(l) = c.lease {
                if l.end > now {
                    if let Some(other) = held[slot(l.addr)].replace(c.id) {
                        let what = format!(
                            "address {} held by clients C{other} and C{} at once{}",
                            l.addr,
                            c.id,
                            self.records_of(l.addr)
                        );
                        return self.fail(what);
                    }
                }
            }
        }
        // 2. Both servers' views of their own grants, every worker's (and what is in flight
        // between workers); 3. in the same pass, within a server with several workers: every
        // address known to one worker at most, or in flight between them.
        let mut granted: Vec<Option<(usize, ClientKey)>> = vec![None; n + 1];
        let mut bad = None;
        'outer: for s in 0..2 {
            let off = self.servers[s].offset;
            let multi = self.multi(s);
            let flying = if multi { self.in_flight(s) } else { Vec::new() };
            let mut known: Vec<Option<workers::Loc>> = vec![None; if multi { n + 1 } else { 0 }];
            let tables = self.servers[s]
                .w
                .iter()
                .enumerate()
                .flat_map(|(k, w)| w.db.values().map(move |b| (workers::Loc::Worker(k), b)));
            for (loc, b) in tables.chain(flying.iter().map(|(l, b)| (*l, b))) {
                if multi {
                    if let Some(first) = known[slot(b.addr)].replace(loc) {
                        bad = Some(format!(
                            "server {s}: address {} is known to {first} and to {loc} at once",
                            b.addr
                        ));
                        break 'outer;
                    }
                }
                let real_end = (i64::from(b.expires) * 1000 - off).max(0) as u64;
                if b.state == BindingState::Active && !b.from_partner && real_end > now {
                    if let Some((o, k)) = granted[slot(b.addr)].replace((s, b.client)) {
                        if k != b.client {
                            bad = Some(format!(
                                "address {}: server {o} granted it to {k}, server {s} to {}, both running",
                                b.addr, b.client
                            ));
                            break 'outer;
                        }
                    }
                }
            }
        }
        if let Some(what) = bad {
            self.fail(what);
        }
    }

    // ----- driving ---------------------------------------------------------------------------

    fn apply_fault(&mut self, f: Fault) {
        self.log(|| format!("FAULT {f:?}"));
        match f {
            Fault::Partition { secs } => {
                if self.partitioned() {
                    return;
                }
                if self.servers.iter().any(|s| s.fenced) {
                    return;
                }
                self.stats.faults += 1;
                self.partitioned_until = Some(self.now + u64::from(secs) * 1000);
                for ci in 0..self.clients.len() {
                    self.clients[ci].reach = match self.rng.below(10) {
                        0..=3 => [true, false],
                        4..=7 => [false, true],
                        _ => [true, true],
                    };
                }
            }
            Fault::LinkReset => {
                if let Some(c) = self.conn.as_mut() {
                    self.stats.faults += 1;
                    c.q[0].clear();
                    c.q[1].clear();
                    for i in 0..2 {
                        self.close_side(i);
                    }
                }
            }
            Fault::Crash {
                server,
                lose_db,
                secs,
            } => self.crash(server, lose_db, secs),
            Fault::AdminPartnerDown { server } => {
                let other = 1 - server;
                if self.servers[other].peer.is_some() || self.servers[server].peer.is_none() {
                    return;
                }
                let t = self.clock(server);
                let ok = self.servers[server]
                    .peer
                    .as_mut()
                    .map(|p| p.partner_down(t).is_ok())
                    .unwrap_or(false);
                if ok {
                    self.stats.faults += 1;
                    self.servers[other].fenced = true;
                }
                self.drain(server);
            }
            Fault::Pause { server, secs } => {
                let t = self.clock(server);
                if let Some(p) = self.servers[server].peer.as_mut() {
                    if p.pause(t).is_ok() {
                        self.stats.faults += 1;
                        self.servers[server].paused_until = Some(self.now + u64::from(secs) * 1000);
                    }
                }
                self.drain(server);
            }
            Fault::Shutdown { server, secs } => {
                let t = self.clock(server);
                if let Some(p) = self.servers[server].peer.as_mut() {
                    if p.shutdown(t).is_ok() {
                        self.stats.faults += 1;
                        self.servers[server].shutdown_until =
                            Some(self.now + u64::from(secs) * 1000);
                    }
                }
                self.drain(server);
            }
            Fault::SetMode(mode) => {
                self.stats.faults += 1;
                for i in 0..2 {
                    self.servers[i].cfg.mode = mode;
                    let t = self.clock(i);
                    if let Some(p) = self.servers[i].peer.as_mut() {
                        if let Err(e) = p.set_mode(t, mode) {
                            self.fail(format!("set_mode failed: {e}"));
                        }
                    }
                    self.drain(i);
                }
                self.p.mode = mode;
            }
            Fault::ClockStep { server, offset_ms } => {
                self.stats.faults += 1;
                self.servers[server].offset = offset_ms;
            }
        }
        self.dirty = true;
    }

    fn next_time(&self, end: u64) -> u64 {
        let mut next = end;
        let mut at = |t: u64| next = next.min(t);
        for i in 0..2 {
            if let Some(p) = &self.servers[i].peer {
                if let Some(t) = p.poll_timeout() {
                    at(self.real_of(i, t).max(self.now));
                }
            }
            for (t, _, _) in &self.servers[i].acks {
                at(*t);
            }
            if let Some(t) = self.servers[i].down_until {
                at(t);
            }
            if let Some(t) = self.servers[i].paused_until {
                at(t);
            }
            if let Some(t) = self.servers[i].shutdown_until {
                at(t);
            }
            if self.servers[i].w.len() > 1 {
                at(self.servers[i].wdue);
                at(self.next_shard[i]);
            }
        }
        if let Some(t) = self.next_delivery() {
            at(t);
        }
        if let Some(t) = self.partitioned_until {
            at(t);
        }
        at(self.clients_next);
        if let Some((t, _)) = self.faults.first() {
            at(*t);
        }
        at(self.next_connect);
        at(self.next_sweep);
        next.max(self.now)
    }

    /// Run until real time `end` (ms since the simulation start, in seconds: `secs`).
    pub fn run_for(&mut self, secs: u64) -> Result<(), Failure> {
        let end = self.now + secs * 1000;
        self.run_until(end)
    }

    fn run_until(&mut self, end: u64) -> Result<(), Failure> {
        self.run_until_or(end, false)
    }

    /// Run until real time `end`, or (if `until_converged`) until the pair has converged.
    fn run_until_or(&mut self, end: u64, until_converged: bool) -> Result<(), Failure> {
        let mut guard = 0u64;
        while self.now < end && self.failure.is_none() {
            if until_converged && self.converged() {
                break;
            }
            let next = self.next_time(end);
            if next == self.now {
                guard += 1;
                if guard > 10_000 {
                    self.fail("no progress: an event keeps firing at the same time".into());
                    break;
                }
            } else {
                guard = 0;
            }
            self.now = next;
            self.stats.steps += 1;
            self.step();
            self.check();
        }
        match self.failure() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn step(&mut self) {
        let now = self.now;
        // Partition end.
        if self.partitioned_until.is_some_and(|u| u <= now) {
            self.partitioned_until = None;
            self.log(|| "partition healed".into());
            for c in &mut self.clients {
                c.reach = [true, true];
            }
        }
        // Faults.
        while self.faults.first().is_some_and(|f| f.0 <= now) {
            let (_, f) = self.faults.remove(0);
            self.apply_fault(f);
        }
        // Restarts and admin ends.
        for i in 0..2 {
            if self.servers[i].down_until.is_some_and(|t| t <= now) {
                let other_ok = self.servers[1 - i].peer.is_some() && !self.partitioned();
                if !self.servers[i].fenced || other_ok {
                    self.restart(i);
                } else {
                    self.servers[i].down_until = Some(now + 5_000);
                }
            }
            if self.servers[i].paused_until.is_some_and(|t| t <= now) {
                self.servers[i].paused_until = None;
                let t = self.clock(i);
                if let Some(p) = self.servers[i].peer.as_mut() {
                    let _ = p.resume(t);
                }
                self.drain(i);
            }
            if self.servers[i].shutdown_until.is_some_and(|t| t <= now) {
                self.servers[i].shutdown_until = None;
                let t = self.clock(i);
                if let Some(p) = self.servers[i].peer.as_mut() {
                    let _ = p.resume(t);
                }
                self.drain(i);
            }
        }
        // Link.
        self.deliver_due();
        if self.next_connect <= now {
            self.try_connect();
            self.next_connect = now + self.rng.range(1_000, 4_000);
        }
        // Journal acknowledgements.
        for i in 0..2 {
            let mut due = Vec::new();
            self.servers[i].acks.retain(|a| {
                if a.0 <= now {
                    due.push((a.1, a.2));
                    false
                } else {
                    true
                }
            });
            let t = self.clock(i);
            for (id, r) in due {
                if let Some(p) = self.servers[i].peer.as_mut() {
                    p.ack_partner_update(t, id, r);
                }
            }
            self.drain(i);
        }
        // Several workers: their snapshots, tasks, syncs and queues; shard moves.
        for i in 0..2 {
            if self.multi(i) {
                self.run_workers(i);
                if self.next_shard[i] <= now {
                    let (lo, hi) = self.p.shard_every_ms;
                    self.next_shard[i] = now + self.wrng.range(lo, hi + 1).max(1);
                    self.maybe_move_shard(i);
                }
            }
        }
        // Peer timers.
        for i in 0..2 {
            self.flush_counts(i);
            let t = self.clock(i);
            let due = self.servers[i]
                .peer
                .as_ref()
                .and_then(|p| p.poll_timeout())
                .is_some_and(|d| d <= t);
            if due {
                if let Some(p) = self.servers[i].peer.as_mut() {
                    p.handle_timeout(t);
                }
                self.drain(i);
            }
        }
        // Engine sweeps.
        if self.next_sweep <= now {
            self.next_sweep = now + 5_000;
            for i in 0..2 {
                self.sweep(i);
            }
        }
        // Clients.
        if self.clients_next <= now {
            for ci in 0..self.clients.len() {
                if self.clients[ci].next_at <= now {
                    self.client_act(ci);
                }
            }
            self.clients_next = self
                .clients
                .iter()
                .map(|c| c.next_at)
                .min()
                .unwrap_or(u64::MAX);
        }
    }

    fn sweep(&mut self, i: usize) {
        if self.multi(i) {
            return self.sweep_workers(i);
        }
        let Some(snap) = self.servers[i].w[0].snap else {
            return;
        };
        if self.servers[i].peer.is_none() {
            return;
        }
        let t = self.clock(i);
        let mut changed = Vec::new();
        for b in self.servers[i].w[0].db.values() {
            match snap.sweep(b, t) {
                Sweep::Keep => {}
                Sweep::Expire(e) => changed.push((e, true)),
                Sweep::Settle(s) => changed.push((s, false)),
            }
        }
        if changed.is_empty() {
            return;
        }
        for (b, send) in changed {
            self.servers[i].w[0].db.insert(b.addr, b);
            if send {
                if let Some(p) = self.servers[i].peer.as_mut() {
                    p.local_update(t, b);
                }
            }
        }
        self.drain(i);
        self.update_counts(i);
    }

    /// End every fault (heal the partition, restart, resume) and run until both servers are in
    /// NORMAL with nothing outstanding, within `limit_secs`.
    pub fn heal_and_converge(&mut self, limit_secs: u64) -> Result<(), Failure> {
        self.faults.clear();
        if self.partitioned() {
            self.partitioned_until = Some(self.now);
        }
        let deadline = self.now + limit_secs * 1000;
        loop {
            for i in 0..2 {
                if self.servers[i].down_until.is_some() {
                    self.servers[i].down_until =
                        Some(self.now.min(self.servers[i].down_until.unwrap_or(self.now)));
                }
                if self.servers[i].paused_until.is_some() {
                    self.servers[i].paused_until = Some(self.now);
                }
                if self.servers[i].shutdown_until.is_some() {
                    self.servers[i].shutdown_until = Some(self.now);
                }
            }
            let step_end = (self.now + 10_000).min(deadline);
            // With several workers updates are in flight for longer (syncs, queue hops), so a
            // busy pair is rarely idle at a 10 s boundary: look after every step.
            let early = self.multi(0) || self.multi(1);
            self.run_until_or(step_end, early)?;
            if self.converged() {
                return Ok(());
            }
            if self.now >= deadline {
                let what = format!(
                    "no convergence after healing: states {:?}/{:?}, outstanding {:?}/{:?}",
                    self.state(0),
                    self.state(1),
                    self.peer(0).map(|p| p.pending_updates()),
                    self.peer(1).map(|p| p.pending_updates())
                );
                self.fail(what);
                return Err(self.failure().expect("just failed"));
            }
        }
    }

    /// Both servers up, in NORMAL, connected, and with no update outstanding.
    pub fn converged(&self) -> bool {
        (0..2).all(|i| {
            self.servers[i].peer.as_ref().is_some_and(|p| {
                p.state() == PeerState::Normal
                    && p.partner_state() == Some(PeerState::Normal)
                    && p.is_connected()
                    && p.pending_updates() == 0
            }) && self.workers_quiet(i)
        })
    }

    /// After convergence: the two servers agree on every running lease.
    pub fn views_agree(&self) -> Result<(), String> {
        let t = [self.clock(0), self.clock(1)];
        let views = [self.view(0), self.view(1)];
        for b0 in views[0].values() {
            let a = &b0.addr;
            let Some(b1) = views[1].get(a) else {
                return Err(format!("{a} missing on server 1"));
            };
            let running = |s: usize, b: &Binding| {
                b.state == BindingState::Active
                    && u64::from(binding_end(b, 0)) * 1000 > t[s].millis() + 120_000
            };
            if (running(0, b0) || running(1, b1))
                && (b0.state != b1.state || b0.client != b1.client)
            {
                return Err(format!(
                    "{a}: server 0 has {:?} {}, server 1 has {:?} {}",
                    b0.state, b0.client, b1.state, b1.client
                ));
            }
        }
        Ok(())
    }

    /// After convergence: every lease a client was ACKed and still holds (for a minute more at
    /// least) is recorded for that client by a server, unless the server that granted it lost
    /// its databases since.
    pub fn leases_kept(&self) -> Result<(), String> {
        let views = [self.view(0), self.view(1)];
        for c in &self.clients {
            let Some(l) = c.lease else { continue };
            if l.end <= self.now + 60_000 {
                continue;
            }
            if self.lost_db_at[l.server].is_some_and(|t| t >= l.start) {
                continue;
            }
            let kept = views.iter().any(|v| {
                v.get(&l.addr)
                    .is_some_and(|b| b.state == BindingState::Active && b.client == c.key)
            });
            if !kept {
                return Err(format!(
                    "C{} was ACKed {} by server {} (until +{}s) but no server records it: {:?} / {:?}",
                    c.id,
                    l.addr,
                    l.server,
                    (l.end - self.now) / 1000,
                    views[0].get(&l.addr).map(|b| (b.state, b.client)),
                    views[1].get(&l.addr).map(|b| (b.state, b.client)),
                ));
            }
        }
        Ok(())
    }

    /// A one-line summary for reports.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "steps={} workers={:?} alloc={} renew={} takeover={} naks={} exhausted={} msgs={} faults={} rounds={} shard_moves={:?} lost_commits={} stale_grants={} states={:?}/{:?}",
            self.stats.steps,
            self.p.workers,
            self.stats.allocations,
            self.stats.renewals,
            self.stats.takeovers,
            self.stats.naks,
            self.stats.exhausted,
            self.stats.messages,
            self.stats.faults,
            self.stats.rounds,
            self.stats.shard_moves,
            self.stats.lost_commits,
            self.stats.stale_grants,
            self.state(0),
            self.state(1)
        );
        s
    }

    /// The snapshot server `i`'s first worker serves with.
    pub fn snapshot(&self, i: usize) -> Option<OwnershipSnapshot> {
        self.servers[i].w[0].snap
    }

    /// Server `i`'s clock now.
    pub fn server_time(&self, i: usize) -> Time {
        self.clock(i)
    }

    /// Clients holding a lease from a server's pool now (real time), per address.
    pub fn holders(&self) -> Vec<(Ipv4Addr, u32)> {
        self.clients
            .iter()
            .filter_map(|c| c.lease.filter(|l| l.end > self.now).map(|l| (l.addr, c.id)))
            .collect()
    }

    /// Number of addresses each server could allocate to a new client right now.
    pub fn allocatable(&self, i: usize) -> usize {
        let t = self.clock(i);
        let mut n = 0;
        for w in &self.servers[i].w {
            let Some(snap) = w.snap else { continue };
            let alloc = snap.alloc_from(t);
            n +=
                w.db.values()
                    .filter(|b| pool_allows(alloc, b.state) && snap.may_allocate(b, t))
                    .count();
        }
        n
    }

    /// Count of addresses in `state` on server `i`.
    pub fn count_state(&self, i: usize, state: BindingState) -> usize {
        self.view(i).values().filter(|b| b.state == state).count()
    }

    /// Ask server `i` to do an admin action now.
    pub fn admin(&mut self, i: usize, f: impl FnOnce(&mut Peer<MemoryStore>, Time)) {
        let t = self.clock(i);
        if let Some(p) = self.servers[i].peer.as_mut() {
            f(p, t);
        }
        self.drain(i);
        self.dirty = true;
    }
}

#[derive(Copy, Clone, Debug)]
enum Req {
    Discover,
    Renew(Ipv4Addr),
    Release(Ipv4Addr),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Reply {
    Ack,
    Nak,
    Silent,
}

/// Whether a verdict's pool choice allows an address in `state`.
fn pool_allows(alloc: AllocFrom, state: BindingState) -> bool {
    matches!(
        (alloc, state),
        (AllocFrom::Any, _)
            | (AllocFrom::Free, BindingState::Free)
            | (AllocFrom::Backup, BindingState::Backup)
    )
}

fn start_name(s: &Start) -> &'static str {
    match s {
        Start::Fresh => "fresh",
        Start::Lost => "lost",
        Start::Saved(_) => "saved",
    }
}

/// A random scenario for `seed`: parameters and a fault timeline over `duration` seconds.
pub fn random_scenario(seed: u64) -> (Params, Vec<(u64, Fault)>, u64) {
    let mut r = Rng::new(seed ^ 0x5eed_5eed_5eed_5eed);
    let mut p = Params::basic();
    p.mode = if r.below(10) < 7 {
        Mode::LoadBalance {
            primary_percent: [50, 50, 30, 70, 100, 0][r.below(6) as usize],
        }
    } else {
        Mode::HotStandby {
            active: if r.below(2) == 0 {
                Role::Primary
            } else {
                Role::Secondary
            },
            reserve_percent: [5, 10, 20][r.below(3) as usize],
        }
    };
    p.mclt = [60, 120, 300, 600][r.below(4) as usize];
    p.lease = match r.below(3) {
        0 => p.mclt / 2,
        1 => p.mclt * 2,
        _ => p.mclt * 6,
    };
    p.receive_timer = r.range(6, 31) as u32;
    p.startup = r.range(3, 20) as u32;
    let min_switch = p.receive_timer + 2 * 61;
    p.switchover = if r.below(2) == 0 {
        None
    } else {
        Some(min_switch + r.range(0, 600) as u32)
    };
    p.rebalance = r.range(20, 120) as u32;
    p.max_unacked = [r.range(1, 9) as u32, r.range(1, 9) as u32];
    p.batch = r.range(1, 9) as u16;
    p.addresses = r.range(12, 48) as u32;
    p.clients = (u64::from(p.addresses) * r.range(30, 130) / 100).max(4) as u32;
    p.offsets = [
        r.range(0, 50_001) as i64 - 25_000,
        r.range(0, 50_001) as i64 - 25_000,
    ];
    p.latency = (1, r.range(2, 80));
    p.spike_per_mille = [0, 5, 30][r.below(3) as usize];
    p.journal = (0, r.range(1, 50));
    p.away_secs = r.range(30, 900) as u32;
    p.release_pct = r.range(0, 15) as u32;

    if p.mode
        == (Mode::LoadBalance {
            primary_percent: 50,
        })
        && r.below(3) == 0
    {
        p.isc_vendor = Some(r.below(2) as usize);
    }
    let duration = u64::from(p.mclt) * r.range(6, 14) + 1800;
    let mut faults = Vec::new();
    let mut t = r.range(60, 600);
    while t < duration {
        let f = match r.below(16) {
            0..=3 => Fault::Partition {
                secs: match r.below(3) {
                    0 => r.range(5, 60) as u32,
                    1 => r.range(60, 600) as u32,
                    _ => (p.switchover.unwrap_or(300) + p.mclt * 2) + r.range(0, 600) as u32,
                },
            },
            4 | 5 => Fault::LinkReset,
            6..=8 => Fault::Crash {
                server: r.below(2) as usize,
                lose_db: r.below(3) == 0,
                secs: match r.below(3) {
                    0 => r.range(1, 20) as u32,
                    1 => r.range(20, 400) as u32,
                    _ => p.mclt * 2 + r.range(0, 600) as u32,
                },
            },
            9 | 10 => Fault::AdminPartnerDown {
                server: r.below(2) as usize,
            },
            11 => Fault::Pause {
                server: r.below(2) as usize,
                secs: r.range(5, 300) as u32,
            },
            12 => Fault::Shutdown {
                server: r.below(2) as usize,
                secs: r.range(5, 900) as u32,
            },
            13 if p.isc_vendor.is_some() => Fault::LinkReset,
            13 => Fault::SetMode(if r.below(2) == 0 {
                Mode::LoadBalance {
                    primary_percent: [50, 30, 70][r.below(3) as usize],
                }
            } else {
                Mode::HotStandby {
                    active: if r.below(2) == 0 {
                        Role::Primary
                    } else {
                        Role::Secondary
                    },
                    reserve_percent: [5, 10][r.below(2) as usize],
                }
            }),
            _ => Fault::Crash {
                server: r.below(2) as usize,
                lose_db: false,
                secs: r.range(1, 10) as u32,
            },
        };
        faults.push((t, f));
        t += r.range(30, u64::from(p.mclt) * 3);
    }
    // Workers per server (drawn last, so the draws above are those of one worker): 1, 2 or
    // 3, the same on both servers in most seeds.
    let pick = |r: &mut Rng| [1usize, 1, 1, 2, 3][r.below(5) as usize];
    let w0 = pick(&mut r);
    let w1 = if r.below(3) == 0 { pick(&mut r) } else { w0 };
    p.workers = [w0, w1];
    p.sync_ms = (r.range(0, 3), r.range(3, 60));
    p.hop_ms = (0, [1, 3, 20][r.below(3) as usize]);
    p.snap_ms = (0, [1, 5, 40][r.below(3) as usize]);
    let every = r.range(5_000, 60_000);
    p.shard_every_ms = (every / 2, every);
    // Recover with the library's merge of the workers' journals (`shards::merge`).
    p.recover_by_write_order = false;
    (p, faults, duration)
}

/// Run the random scenario of `seed` to the end, heal, and check convergence.
pub fn run_seed(seed: u64, trace: bool) -> Result<World, Box<(World, Failure)>> {
    let (mut p, faults, duration) = random_scenario(seed);
    if let Some(n) = std::env::var("TANDEM_SIM_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        p.workers = [n.max(1), n.max(1)];
    }
    let mclt = u64::from(p.mclt);
    let startup = u64::from(p.startup);
    let mut w = World::new(p, seed);
    w.trace(trace);
    for (t, f) in faults {
        w.schedule(t, f);
    }
    if let Err(f) = w.run_for(duration) {
        return Err(Box::new((w, f)));
    }
    if let Err(f) = w.heal_and_converge(6 * mclt + 4 * startup + 1800) {
        return Err(Box::new((w, f)));
    }
    if let Err(e) = w.views_agree() {
        w.fail(format!("views disagree after convergence: {e}"));
        let f = w.failure().expect("just failed");
        return Err(Box::new((w, f)));
    }
    if let Err(e) = w.leases_kept() {
        w.fail(format!("an ACKed lease was lost: {e}"));
        let f = w.failure().expect("just failed");
        return Err(Box::new((w, f)));
    }
    Ok(w)
}
