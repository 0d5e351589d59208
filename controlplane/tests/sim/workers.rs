//! Several workers per server, as `tandemd` runs them, modelled around the real `Peer`:
//!
//! - worker `k` owns the bindings of the clients whose RFC 3074 bucket `b` has `b % N == k`
//!   (a held binding lives with that worker), and a shard of the pool (initially the
//!   contiguous slices of `shard_of`); every address is known to one worker at most;
//! - a worker's commits become durable after its own fdatasync latency (group commit, in
//!   order); only then is the client answered and the binding handed to the relationship
//!   thread through the worker's own queue (each hop with its own delay), so updates of
//!   different workers interleave at the `Peer` while each worker's keep their order;
//! - the partner's bindings are judged in rounds as `Fanout` does: every worker takes what it
//!   knows of the round's addresses out of its table (at its own moment), the relationship
//!   thread judges them with the library's `place`, every worker applies its part, and the
//!   verdicts go back after that worker's commit is durable (the BNDACK waits for all of them);
//! - free (or BACKUP) addresses move between workers' shards only while unleased, at random
//!   moments, the giver forgetting them; nothing is journaled for a move;
//! - each worker picks up a new ownership snapshot after its own delay;
//! - a crash loses every worker's unsynced commits; a restart merges every worker's journal
//!   (`shards::merge`) and gives each binding to the worker that keeps it (`owner_of`).
//!
//! Every delay comes from the world's second PRNG (`wrng`), so a server with one worker never
//! draws from it and behaves exactly as the single-engine model.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use tandem_controlplane::failover::message::RejectReason;
use tandem_controlplane::failover::peer::{
    needs_update, settle_acked, transfer, MemoryStore, OwnershipSnapshot, Peer, Sweep, UpdateId,
};
use tandem_controlplane::failover::workers::{place, Part};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::engine::{owner_of, Extracted};
use tandem_dataplane::shards;

use super::rng::Rng;
use super::{ClientLease, Db, Params, World};

/// The workers' events happen on a grid of this many ms (fewer distinct moments to simulate;
/// workers still interleave, at this resolution).
const GRID_MS: u64 = 4;

/// Verdicts on partner bindings: (update, verdict, our binding to send back if refused).
type Results = Vec<(UpdateId, Result<(), RejectReason>, Option<Binding>)>;

/// What waits for a commit to be durable.
pub(super) enum AfterSync {
    /// Nothing but the commit hook.
    Nothing,
    /// The client's ACK.
    Client {
        /// The client.
        ci: usize,
        /// What it gets.
        lease: ClientLease,
    },
    /// The verdicts of this worker's part of a judging round.
    Judged(Results),
}

/// One commit of a worker: its records and what waits for it.
pub(super) struct Commit {
    recs: Vec<Binding>,
    after: AfterSync,
}

/// A task the relationship thread runs on a worker (between the worker's batches).
enum Task {
    /// Settle the partner's acknowledgements, then take the round's addresses out.
    Extract {
        round: u64,
        addrs: Vec<(u32, Ipv4Addr)>,
        acked: Vec<Binding>,
    },
    /// Apply this worker's part of a judged round.
    Apply(Part),
    /// Give up to `n` unleased addresses of `pool` to worker `to`.
    Take {
        pool: BindingState,
        n: u64,
        to: usize,
    },
    /// Take addresses another worker gave.
    Accept(Vec<(Ipv4Addr, Extracted)>),
    /// Pool balancing: move `count` own addresses to the partner's pool (`to`).
    Transfer { count: u32, to: BindingState },
    /// Every binding, for the partner's UPDREQALL.
    SendAll,
    /// The bindings the partner lacks, at start-up.
    CatchUp,
    /// Expire and settle by this snapshot.
    Sweep(OwnershipSnapshot),
}

/// What a worker sends the relationship thread.
enum Up {
    /// Committed bindings the partner lacks (the commit hook).
    Committed(Vec<Binding>),
    /// Verdicts, after the commit that made them durable.
    Judged(Results),
    /// What the worker took out for a round.
    Extracted {
        round: u64,
        found: Vec<(u32, Extracted)>,
    },
    /// What the worker gave up for a shard move.
    Taken {
        to: usize,
        items: Vec<(Ipv4Addr, Extracted)>,
    },
    /// Bindings to send (start-up catch-up, or UPDREQALL when `all`).
    Bindings { bindings: Vec<Binding>, all: bool },
}

/// One worker of a server.
pub(super) struct Worker {
    /// What the worker knows now (in memory).
    pub(super) db: Db,
    /// Its journal: the newest durable record of each address it journaled.
    journal: Db,
    /// When each of those records was written (a server-wide count of journal writes; what
    /// `Params::recover_by_write_order` recovers by).
    written: Vec<u64>,
    /// The ownership snapshot it serves with.
    pub(super) snap: Option<OwnershipSnapshot>,
    /// Snapshots published to it, picked up at the time given.
    snaps: VecDeque<(u64, OwnershipSnapshot)>,
    /// Tasks sent to it, run at the time given.
    tasks: VecDeque<(u64, Task)>,
    /// Commits written, durable at the time given.
    pub(super) syncing: VecDeque<(u64, Commit)>,
    /// Its queue to the relationship thread, arriving at the time given.
    up: VecDeque<(u64, Up)>,
    /// Its fdatasync latency range (ms).
    sync_ms: (u64, u64),
    /// Its queue hop delay range (ms).
    hop_ms: (u64, u64),
    /// Its snapshot pick-up delay range (ms).
    snap_ms: (u64, u64),
}

impl Worker {
    /// A worker knowing `db`, with `journal` on disk and no delays.
    fn new(db: Db, journal: Db) -> Worker {
        let written = vec![0; journal.v.len()];
        Worker {
            db,
            journal,
            written,
            snap: None,
            snaps: VecDeque::new(),
            tasks: VecDeque::new(),
            syncing: VecDeque::new(),
            up: VecDeque::new(),
            sync_ms: (0, 0),
            hop_ms: (0, 0),
            snap_ms: (0, 0),
        }
    }

    /// The workers of a server with `n` of them: one holding every address (the
    /// single-engine model, drawing nothing), or `n` with empty tables (loaded at start) and
    /// their own latencies drawn from `wrng`.
    pub(super) fn for_server(p: &Params, n: usize, wrng: &mut Rng) -> Vec<Worker> {
        if n <= 1 {
            return vec![Worker::new(Db::new(p), Db::blank(p))];
        }
        let mut draw = |(lo, hi): (u64, u64)| (lo, wrng.range(lo, hi + 1));
        (0..n)
            .map(|_| {
                let mut w = Worker::new(Db::blank(p), Db::blank(p));
                w.sync_ms = draw(p.sync_ms);
                w.hop_ms = draw(p.hop_ms);
                w.snap_ms = draw(p.snap_ms);
                w
            })
            .collect()
    }

    /// The process died: memory, queues and unsynced commits are gone; the journal stays
    /// unless `lose_db`.
    pub(super) fn crash(&mut self, p: &Params, lose_db: bool) {
        self.db = Db::blank(p);
        self.snap = None;
        self.snaps.clear();
        self.tasks.clear();
        self.syncing.clear();
        self.up.clear();
        if lose_db {
            self.journal = Db::blank(p);
            self.written.iter_mut().for_each(|w| *w = 0);
        }
    }

    /// Nothing queued, picked up or syncing.
    fn quiet(&self) -> bool {
        self.snaps.is_empty()
            && self.tasks.is_empty()
            && self.syncing.is_empty()
            && self.up.is_empty()
    }

    /// When the next of its queued items is due.
    fn next(&self) -> Option<u64> {
        [
            self.snaps.front().map(|x| x.0),
            self.tasks.front().map(|x| x.0),
            self.syncing.front().map(|x| x.0),
            self.up.front().map(|x| x.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The relationship thread's side of several workers (as `Fanout`).
#[derive(Default)]
pub(super) struct Rel {
    /// Partner bindings waiting for the next round.
    pub(super) queued: Vec<(UpdateId, Binding)>,
    /// The partner's acknowledgements waiting for the next round.
    pub(super) queued_acked: Vec<Binding>,
    round: Option<Round>,
    next_round: u64,
    /// A shard move is under way (no round starts meanwhile, and no move during a round).
    moving: bool,
    /// UPDREQALL parts still to come.
    full_parts: usize,
}

/// A judging round in flight.
struct Round {
    id: u64,
    batch: Vec<(UpdateId, Binding)>,
    legal: Vec<bool>,
    found: Vec<Option<Vec<(u32, Extracted)>>>,
    waiting: usize,
}

/// Where a record of a server with several workers is.
#[derive(Copy, Clone, Debug)]
pub(super) enum Loc {
    /// In worker `k`'s table.
    Worker(usize),
    /// Taken out by worker `k` for a judging round.
    Round(usize),
    /// A round's restore on its way to worker `k`.
    Restore(usize),
    /// A round's install on its way to worker `k`.
    Install(usize),
    /// A shard move from worker `k`, on its way to the relationship thread.
    MoveFrom(usize),
    /// A shard move on its way to worker `k`.
    MoveTo(usize),
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loc::Worker(k) => write!(f, "worker {k}"),
            Loc::Round(k) => write!(f, "a judging round (from worker {k})"),
            Loc::Restore(k) => write!(f, "a round's restore to worker {k}"),
            Loc::Install(k) => write!(f, "a round's install to worker {k}"),
            Loc::MoveFrom(k) => write!(f, "a shard move from worker {k}"),
            Loc::MoveTo(k) => write!(f, "a shard move to worker {k}"),
        }
    }
}

/// Queue `x` at `at`, but never before what is queued already (each queue is FIFO).
fn push<T>(q: &mut VecDeque<(u64, T)>, at: u64, x: T) -> u64 {
    let at = q.back().map_or(at, |b| b.0.max(at));
    q.push_back((at, x));
    at
}

/// The front of `q` if it is due at `now`.
fn pop_due<T>(q: &mut VecDeque<(u64, T)>, now: u64) -> Option<T> {
    if q.front().is_some_and(|x| x.0 <= now) {
        q.pop_front().map(|x| x.1)
    } else {
        None
    }
}

/// What `Engine::extract` gives for an address whose record is `b`.
fn extracted(b: Binding) -> Extracted {
    Extracted {
        record: Some(b),
        pooled: match b.state {
            BindingState::Free => Some(BindingState::Free),
            BindingState::Backup => Some(BindingState::Backup),
            _ => None,
        },
        hold: None,
    }
}

impl World {
    /// True if server `i` runs several workers.
    pub(super) fn multi(&self, i: usize) -> bool {
        self.servers[i].w.len() > 1
    }

    /// A moment `lo..=hi` ms from now, on the model's grid.
    fn later(&mut self, (lo, hi): (u64, u64)) -> u64 {
        let t = self.now + self.wrng.range(lo, hi + 1);
        t.div_ceil(GRID_MS) * GRID_MS
    }

    /// When something sent now between worker `k` of server `i` and its relationship thread
    /// arrives.
    fn hop(&mut self, i: usize, k: usize) -> u64 {
        let r = self.servers[i].w[k].hop_ms;
        self.later(r)
    }

    /// The relationship thread of server `i` sends `task` to its worker `k`.
    fn send_task(&mut self, i: usize, k: usize, task: Task) {
        let at = self.hop(i, k);
        let at = push(&mut self.servers[i].w[k].tasks, at, task);
        self.due(i, at);
    }

    /// Worker `k` of server `i` sends `up` to its relationship thread.
    fn send_up(&mut self, i: usize, k: usize, up: Up) {
        let at = self.hop(i, k);
        let at = push(&mut self.servers[i].w[k].up, at, up);
        self.due(i, at);
    }

    /// True if `a` is in the relationship's pool (else the partner's binding is illegal).
    fn in_pool(&self, a: Ipv4Addr) -> bool {
        self.servers[0].w[0].db.contains_key(&a)
    }

    /// A new snapshot of server `i`'s relationship reaches each worker at its own moment.
    pub(super) fn publish(&mut self, i: usize, snap: OwnershipSnapshot) {
        for k in 0..self.servers[i].w.len() {
            let r = self.servers[i].w[k].snap_ms;
            let at = self.later(r);
            let at = push(&mut self.servers[i].w[k].snaps, at, snap);
            self.due(i, at);
        }
    }

    /// What server `i`'s journals recover: one binding per address, sorted by address. By the
    /// library's `shards::merge` over the records and their write stamps, or with
    /// `Params::recover_by_write_order` (the model's own answer) the record written last.
    fn recover(&self, i: usize) -> Vec<Binding> {
        let s = &self.servers[i];
        if self.p.recover_by_write_order {
            let mut out = Vec::new();
            for k in 0..self.p.addresses as usize {
                let last =
                    s.w.iter()
                        .filter_map(|w| w.journal.v[k].map(|b| (w.written[k], b)))
                        .max_by_key(|x| x.0);
                out.extend(last.map(|x| x.1));
            }
            return out;
        }
        // The journals' write stamps: the server-wide write count (a perfect clock; the
        // library's stamps are milliseconds, never decreasing across workers). 0 is unknown.
        let parts: Vec<(Vec<Binding>, Vec<u64>)> =
            s.w.iter()
                .map(|w| {
                    (0..self.p.addresses as usize)
                        .filter_map(|k| w.journal.v[k].map(|b| (b, w.written[k] + 1)))
                        .unzip()
                })
                .collect();
        shards::merge(parts.iter().map(|(b, st)| (b.as_slice(), st.as_slice())))
    }

    /// Start server `i` with several workers: recover every worker's journal into one binding
    /// per address, give each to the worker that keeps it (its journal rewritten to match), and
    /// queue the catch-up of what the partner lacks.
    pub(super) fn start_workers(&mut self, i: usize, peer: Peer<MemoryStore>) {
        let n = self.servers[i].w.len();
        let parts: Vec<Vec<Binding>> = self.servers[i]
            .w
            .iter()
            .map(|w| w.journal.values().copied().collect())
            .collect();
        let merged = self.recover(i);
        if self.trace_on {
            // Addresses two journals disagree on, and which record the merge kept.
            for m in &merged {
                let recs: Vec<(usize, Binding)> = parts
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.iter().find(|b| b.addr == m.addr).map(|b| (k, *b)))
                    .collect();
                if recs.len() > 1 {
                    let what: Vec<String> = recs
                        .iter()
                        .map(|(k, b)| {
                            format!(
                                "w{k}: {:?} {} start={} cltt={}",
                                b.state, b.client, b.start, b.cltt
                            )
                        })
                        .collect();
                    self.log(|| {
                        format!(
                            "S{i} recovery: {} in {} journals [{}] -> kept {:?} {}",
                            m.addr,
                            recs.len(),
                            what.join("; "),
                            m.state,
                            m.client
                        )
                    });
                }
            }
        }
        let snap = peer.snapshot();
        let p = self.p.clone();
        let written: Vec<u64> = (0..p.addresses as usize)
            .map(|k| {
                self.servers[i]
                    .w
                    .iter()
                    .map(|w| w.written[k])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for w in &mut self.servers[i].w {
            w.crash(&p, true);
            w.snap = Some(snap);
        }
        let mut m = merged.iter().peekable();
        for a in p.pool() {
            let rec = match m.peek() {
                Some(b) if b.addr == a => m.next().copied(),
                _ => None,
            };
            let b = rec.unwrap_or_else(|| Binding::empty(a, BindingState::Free));
            let k = owner_of(&self.settings, &b, n);
            let w = &mut self.servers[i].w[k];
            w.db.insert(a, b);
            if rec.is_some() {
                w.journal.insert(a, b);
                if let Some(slot) = w.journal.idx(&a) {
                    w.written[slot] = written[slot];
                }
            }
        }
        let s = &mut self.servers[i];
        s.peer = Some(peer);
        s.down_until = None;
        s.rel = Rel::default();
        for k in 0..n {
            self.send_task(i, k, Task::CatchUp);
        }
        self.dirty = true;
    }

    /// Worker `k` of server `i` commits `recs` (in memory now, durable after its sync);
    /// `after` waits for the sync. Returns when it will be durable.
    pub(super) fn commit(
        &mut self,
        i: usize,
        k: usize,
        recs: Vec<Binding>,
        after: AfterSync,
    ) -> u64 {
        let r = self.servers[i].w[k].sync_ms;
        let at = self.later(r);
        // The checker looks once the commit is durable (the client has its ACK then).
        for b in &recs {
            self.put(i, k, *b);
        }
        let at = push(
            &mut self.servers[i].w[k].syncing,
            at,
            Commit { recs, after },
        );
        self.due(i, at);
        self.update_counts(i);
        at
    }

    /// Worker `k` of server `i` now keeps `b`: fails the run if another worker knows its
    /// address (the full check with what is in flight runs with the checker).
    fn put(&mut self, i: usize, k: usize, b: Binding) {
        let other = (0..self.servers[i].w.len())
            .find(|&j| j != k && self.servers[i].w[j].db.get(&b.addr).is_some());
        if let Some(j) = other {
            self.fail(format!(
                "server {i}: {} {:?} lands with worker {k} while worker {j} knows the address",
                b.addr, b.state
            ));
        }
        self.servers[i].w[k].db.insert(b.addr, b);
    }

    /// Something of server `i`'s workers is due at `at`.
    fn due(&mut self, i: usize, at: u64) {
        let s = &mut self.servers[i];
        s.wdue = s.wdue.min(at);
    }

    /// Run whatever is due on server `i`'s workers and queues.
    pub(super) fn run_workers(&mut self, i: usize) {
        if self.servers[i].wdue > self.now {
            return;
        }
        self.run_due(i);
        self.servers[i].wdue = self.workers_next(i).unwrap_or(u64::MAX);
    }

    /// Run every item of server `i`'s workers due now, until none is (an item may queue
    /// another one due at once).
    fn run_due(&mut self, i: usize) {
        let now = self.now;
        loop {
            if self.servers[i].peer.is_none() || self.failure.is_some() {
                return;
            }
            let mut any = false;
            for k in 0..self.servers[i].w.len() {
                while let Some(snap) = pop_due(&mut self.servers[i].w[k].snaps, now) {
                    self.servers[i].w[k].snap = Some(snap);
                    any = true;
                }
                while let Some(t) = pop_due(&mut self.servers[i].w[k].tasks, now) {
                    self.run_task(i, k, t);
                    any = true;
                }
                while let Some(c) = pop_due(&mut self.servers[i].w[k].syncing, now) {
                    self.durable(i, k, c);
                    any = true;
                }
                while let Some(u) = pop_due(&mut self.servers[i].w[k].up, now) {
                    self.on_up(i, k, u);
                    any = true;
                    if self.servers[i].peer.is_none() {
                        return;
                    }
                }
            }
            if !any {
                return;
            }
        }
    }

    /// The next moment something is due on server `i`'s workers.
    pub(super) fn workers_next(&self, i: usize) -> Option<u64> {
        self.servers[i].w.iter().filter_map(Worker::next).min()
    }

    /// Nothing under way between server `i`'s workers and its relationship thread.
    pub(super) fn workers_quiet(&self, i: usize) -> bool {
        let s = &self.servers[i];
        s.w.iter().all(Worker::quiet)
            && s.rel.round.is_none()
            && !s.rel.moving
            && s.rel.queued.is_empty()
            && s.rel.queued_acked.is_empty()
    }

    /// Worker `k` of server `i` runs `task` (between its batches).
    fn run_task(&mut self, i: usize, k: usize, task: Task) {
        let t = self.clock(i);
        match task {
            Task::Extract {
                round,
                addrs,
                acked,
            } => {
                let w = &self.servers[i].w[k];
                let settled: Vec<Binding> = acked
                    .iter()
                    .filter_map(|a| w.db.get(&a.addr).and_then(|l| settle_acked(l, a)))
                    .collect();
                if !settled.is_empty() {
                    self.commit(i, k, settled, AfterSync::Nothing);
                }
                let w = &mut self.servers[i].w[k];
                let found: Vec<(u32, Extracted)> = addrs
                    .iter()
                    .filter_map(|&(ix, a)| w.db.remove(&a).map(|b| (ix, extracted(b))))
                    .collect();
                self.send_up(i, k, Up::Extracted { round, found });
            }
            Task::Apply(part) => {
                for (_, x) in part.restores {
                    if let Some(b) = x.record {
                        self.put(i, k, b);
                    }
                }
                if !part.installs.is_empty() || !part.results.is_empty() {
                    self.commit(i, k, part.installs, AfterSync::Judged(part.results));
                }
            }
            Task::Take { pool, n, to } => {
                let mut cands: Vec<Ipv4Addr> = self.servers[i].w[k]
                    .db
                    .values()
                    .filter(|b| b.state == pool)
                    .map(|b| b.addr)
                    .collect();
                self.wrng.shuffle(&mut cands);
                cands.truncate(n as usize);
                let w = &mut self.servers[i].w[k];
                let items: Vec<(Ipv4Addr, Extracted)> = cands
                    .iter()
                    .filter_map(|a| w.db.remove(a).map(|b| (*a, extracted(b))))
                    .collect();
                self.send_up(i, k, Up::Taken { to, items });
            }
            Task::Accept(items) => {
                for (_, x) in items {
                    if let Some(b) = x.record {
                        self.put(i, k, b);
                    }
                }
                self.update_counts(i);
            }
            Task::Transfer { count, to } => {
                let own = self.servers[i].cfg.role.pool_state();
                let mut cands: Vec<Binding> = self.servers[i].w[k]
                    .db
                    .values()
                    .filter(|b| b.state == own)
                    .copied()
                    .collect();
                self.wrng.shuffle(&mut cands);
                cands.truncate(count as usize);
                let addrs: Vec<String> = cands.iter().map(|b| b.addr.to_string()).collect();
                self.log(|| format!("S{i}w{k} transfers [{}] to {to:?}", addrs.join(" ")));
                if !cands.is_empty() {
                    let recs = cands.iter().map(|b| transfer(b, to, t)).collect();
                    self.commit(i, k, recs, AfterSync::Nothing);
                }
            }
            Task::SendAll => {
                let bindings = self.servers[i].w[k].db.values().copied().collect();
                self.send_up(
                    i,
                    k,
                    Up::Bindings {
                        bindings,
                        all: true,
                    },
                );
            }
            Task::CatchUp => {
                let bindings: Vec<Binding> = self.servers[i].w[k]
                    .db
                    .values()
                    .filter(|b| needs_update(b))
                    .copied()
                    .collect();
                if !bindings.is_empty() {
                    self.send_up(
                        i,
                        k,
                        Up::Bindings {
                            bindings,
                            all: false,
                        },
                    );
                }
            }
            Task::Sweep(snap) => {
                let changes: Vec<Binding> = self.servers[i].w[k]
                    .db
                    .values()
                    .filter_map(|b| match snap.sweep(b, t) {
                        Sweep::Keep => None,
                        Sweep::Expire(e) | Sweep::Settle(e) => Some(e),
                    })
                    .collect();
                if !changes.is_empty() {
                    self.commit(i, k, changes, AfterSync::Nothing);
                }
            }
        }
    }

    /// A commit of worker `k` reached the disk: journal it, run the commit hook, answer what
    /// waited.
    fn durable(&mut self, i: usize, k: usize, c: Commit) {
        let w = &mut self.servers[i].w[k];
        for b in &c.recs {
            w.journal.insert(b.addr, *b);
            if let Some(slot) = w.journal.idx(&b.addr) {
                self.journal_writes += 1;
                w.written[slot] = self.journal_writes;
            }
        }
        let ups: Vec<Binding> = c.recs.iter().filter(|b| needs_update(b)).copied().collect();
        if !ups.is_empty() {
            self.send_up(i, k, Up::Committed(ups));
        }
        match c.after {
            AfterSync::Nothing => {}
            AfterSync::Client { ci, mut lease } => {
                let now = self.now;
                lease.start = now;
                let cid = self.clients[ci].id;
                self.log(|| format!("S{i}w{k} ACKs {} to C{cid}", lease.addr));
                self.clients[ci].lease = Some(lease);
                let dur = lease.end.saturating_sub(now);
                self.set_next(ci, now + (dur / 2).max(500));
                self.dirty = true;
            }
            AfterSync::Judged(results) => self.send_up(i, k, Up::Judged(results)),
        }
    }

    /// The relationship thread of server `i` takes a message of worker `k`.
    fn on_up(&mut self, i: usize, k: usize, up: Up) {
        let t = self.clock(i);
        match up {
            Up::Committed(v) => {
                if let Some(p) = self.servers[i].peer.as_mut() {
                    p.local_updates(t, v);
                }
                self.drain(i);
            }
            Up::Judged(results) => {
                self.stats.judge_rejects += results.iter().filter(|r| r.1.is_err()).count() as u64;
                let mut resend = Vec::new();
                if let Some(p) = self.servers[i].peer.as_mut() {
                    p.ack_partner_updates(
                        t,
                        results.into_iter().map(|(id, r, again)| {
                            resend.extend(again);
                            (id, r)
                        }),
                    );
                    p.local_updates(t, resend);
                }
                self.drain(i);
            }
            Up::Extracted { round, found } => self.on_extracted(i, k, round, found),
            Up::Taken { to, items } => {
                self.servers[i].rel.moving = false;
                if !items.is_empty() {
                    self.stats.shard_moves.0 += 1;
                    self.stats.shard_moves.1 += items.len() as u64;
                    let addrs: Vec<String> = items.iter().map(|(a, _)| a.to_string()).collect();
                    self.log(|| {
                        format!(
                            "S{i} moves unleased [{}] from worker {k} to {to}",
                            addrs.join(" ")
                        )
                    });
                    self.send_task(i, to, Task::Accept(items));
                }
                self.start_round(i);
            }
            Up::Bindings { bindings, all } => {
                if let Some(p) = self.servers[i].peer.as_mut() {
                    p.local_updates(t, bindings);
                }
                if all {
                    let rel = &mut self.servers[i].rel;
                    rel.full_parts = rel.full_parts.saturating_sub(1);
                    if rel.full_parts == 0 {
                        if let Some(p) = self.servers[i].peer.as_mut() {
                            p.end_full_update(t);
                        }
                    }
                }
                self.drain(i);
            }
        }
    }

    /// Start the next judging round of server `i` if none is in flight, no shard move is under
    /// way, and partner bindings or acknowledgements wait.
    pub(super) fn start_round(&mut self, i: usize) {
        let n = self.servers[i].w.len();
        let rel = &self.servers[i].rel;
        if rel.round.is_some()
            || rel.moving
            || (rel.queued.is_empty() && rel.queued_acked.is_empty())
            || self.servers[i].peer.is_none()
        {
            return;
        }
        let rel = &mut self.servers[i].rel;
        let batch = std::mem::take(&mut rel.queued);
        let acked = std::mem::take(&mut rel.queued_acked);
        rel.next_round += 1;
        let id = rel.next_round;
        let legal: Vec<bool> = batch.iter().map(|(_, b)| self.in_pool(b.addr)).collect();
        let addrs: Vec<(u32, Ipv4Addr)> = batch
            .iter()
            .enumerate()
            .filter(|(ix, _)| legal[*ix])
            .map(|(ix, (_, b))| (ix as u32, b.addr))
            .collect();
        self.servers[i].rel.round = Some(Round {
            id,
            batch,
            legal,
            found: vec![None; n],
            waiting: n,
        });
        self.stats.rounds += 1;
        for k in 0..n {
            let task = Task::Extract {
                round: id,
                addrs: addrs.clone(),
                acked: acked.clone(),
            };
            self.send_task(i, k, task);
        }
    }

    /// Worker `k`'s extracts for round `round`: once every worker answered, judge the round
    /// (`place`, the library's) and send each worker its part.
    fn on_extracted(&mut self, i: usize, k: usize, round: u64, found: Vec<(u32, Extracted)>) {
        let Some(r) = self.servers[i].rel.round.as_mut().filter(|r| r.id == round) else {
            return;
        };
        if r.found[k].is_none() {
            r.found[k] = Some(found);
            r.waiting -= 1;
        }
        if r.waiting > 0 {
            return;
        }
        let Some(r) = self.servers[i].rel.round.take() else {
            return;
        };
        let Some(snap) = self.servers[i].peer.as_ref().map(|p| p.snapshot()) else {
            return;
        };
        let t = self.clock(i);
        let found: Vec<Vec<(u32, Extracted)>> =
            r.found.into_iter().map(Option::unwrap_or_default).collect();
        let locals: Vec<String> = if self.trace_on {
            r.batch
                .iter()
                .map(|(_, b)| {
                    let mut v = Vec::new();
                    for (w, f) in found.iter().enumerate() {
                        for (ix, x) in f {
                            if r.batch
                                .get(*ix as usize)
                                .is_some_and(|(_, o)| o.addr == b.addr)
                            {
                                if let Some(l) = x.record {
                                    v.push(format!(
                                        "w{w}: {:?} {} exp={} acked={} sent={}",
                                        l.state, l.client, l.expires, l.acked_expiry, l.sent_expiry
                                    ));
                                }
                            }
                        }
                    }
                    v.dedup();
                    v.join("; ")
                })
                .collect()
        } else {
            Vec::new()
        };
        let parts = place(&r.batch, &r.legal, found, &snap, &self.settings, t);
        if self.trace_on {
            for (j, (id, b)) in r.batch.iter().enumerate() {
                let v = parts
                    .iter()
                    .enumerate()
                    .find_map(|(w, p)| p.results.iter().find(|x| x.0 == *id).map(|x| (w, x.1)));
                let local = &locals[j];
                self.log(|| {
                    format!(
                        "S{i} round {round} judges {} {:?} {} exp={} local=[{local}] -> {v:?}",
                        b.addr, b.state, b.client, b.expires
                    )
                });
            }
        }
        for (w, part) in parts.into_iter().enumerate() {
            if self.trace_on {
                for b in &part.installs {
                    self.log(|| {
                        format!(
                            "S{i} round {round} installs {} {:?} {} exp={} acked={} sent={} with worker {w}",
                            b.addr, b.state, b.client, b.expires, b.acked_expiry, b.sent_expiry
                        )
                    });
                }
            }
            if part.duplicates > 0 {
                self.fail(format!(
                    "server {i}: round {round} found {} addresses known to two workers",
                    part.duplicates
                ));
            }
            if part.installs.is_empty() && part.restores.is_empty() && part.results.is_empty() {
                continue;
            }
            self.send_task(i, w, Task::Apply(part));
        }
        self.start_round(i);
    }

    /// Now and then: move unleased addresses between two of server `i`'s workers, as the
    /// shard balancer plans it, or (a third of the other times) at random.
    pub(super) fn maybe_move_shard(&mut self, i: usize) {
        let s = &self.servers[i];
        if s.peer.is_none() || s.rel.round.is_some() || s.rel.moving {
            return;
        }
        let n = s.w.len();
        let pool = if self.wrng.below(2) == 0 {
            BindingState::Free
        } else {
            BindingState::Backup
        };
        let counts: Vec<u64> = self.servers[i]
            .w
            .iter()
            .map(|w| w.db.values().filter(|b| b.state == pool).count() as u64)
            .collect();
        let mut plan = shards::plan(&counts);
        if plan.is_none() && self.wrng.below(3) == 0 {
            let from = self.wrng.below(n as u64) as usize;
            let to = (from + 1 + self.wrng.below(n as u64 - 1) as usize) % n;
            if counts[from] > 0 {
                plan = Some((from, to, self.wrng.range(1, counts[from] + 1)));
            }
        }
        let Some((from, to, count)) = plan else {
            return;
        };
        self.servers[i].rel.moving = true;
        self.send_task(i, from, Task::Take { pool, n: count, to });
    }

    /// UPDREQALL on server `i`: every worker sends its part; the last part ends it.
    pub(super) fn send_all(&mut self, i: usize) {
        let n = self.servers[i].w.len();
        self.servers[i].rel.full_parts += n;
        self.log(|| format!("S{i} sends all bindings (from {n} workers)"));
        for k in 0..n {
            self.send_task(i, k, Task::SendAll);
        }
    }

    /// Pool balancing on server `i`: each worker moves its share of `count` from its shard.
    pub(super) fn transfer_from_workers(&mut self, i: usize, count: u32, to: BindingState) {
        let n = self.servers[i].w.len() as u32;
        for k in 0..n {
            let share = count / n + u32::from(k < count % n);
            if share > 0 {
                self.send_task(i, k as usize, Task::Transfer { count: share, to });
            }
        }
    }

    /// The periodic sweep of server `i`: every worker, by the relationship's snapshot now.
    pub(super) fn sweep_workers(&mut self, i: usize) {
        let Some(snap) = self.servers[i].peer.as_ref().map(|p| p.snapshot()) else {
            return;
        };
        // A background chore: run it behind what each worker has queued, without a delay of its
        // own (fewer simulation steps; its order against the other tasks is what matters).
        for k in 0..self.servers[i].w.len() {
            let at = push(&mut self.servers[i].w[k].tasks, self.now, Task::Sweep(snap));
            self.due(i, at);
        }
    }

    /// Every record of server `i` in flight between its workers: (where, binding).
    pub(super) fn in_flight(&self, i: usize) -> Vec<(Loc, Binding)> {
        let s = &self.servers[i];
        let mut out = Vec::new();
        if let Some(r) = &s.rel.round {
            for (k, f) in r.found.iter().enumerate() {
                for (_, x) in f.iter().flatten() {
                    out.extend(x.record.map(|b| (Loc::Round(k), b)));
                }
            }
        }
        for (k, w) in s.w.iter().enumerate() {
            for (_, task) in &w.tasks {
                match task {
                    Task::Apply(part) => {
                        for (_, x) in &part.restores {
                            out.extend(x.record.map(|b| (Loc::Restore(k), b)));
                        }
                        out.extend(part.installs.iter().map(|b| (Loc::Install(k), *b)));
                    }
                    Task::Accept(items) => {
                        for (_, x) in items {
                            out.extend(x.record.map(|b| (Loc::MoveTo(k), b)));
                        }
                    }
                    _ => {}
                }
            }
            for (_, up) in &w.up {
                match up {
                    Up::Extracted { found, .. } => {
                        for (_, x) in found {
                            out.extend(x.record.map(|b| (Loc::Round(k), b)));
                        }
                    }
                    Up::Taken { items, .. } => {
                        for (_, x) in items {
                            out.extend(x.record.map(|b| (Loc::MoveFrom(k), b)));
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Server `i`'s bindings as one table: what its workers know and what is in flight between
    /// them; for a server down with several workers, what its journals would recover.
    pub(super) fn view(&self, i: usize) -> Db {
        let s = &self.servers[i];
        if !self.multi(i) {
            return s.w[0].db.clone();
        }
        let mut d = Db::blank(&self.p);
        if s.peer.is_none() {
            for b in self.recover(i) {
                d.insert(b.addr, b);
            }
        } else {
            for b in s.w.iter().flat_map(|w| w.db.values()) {
                if d.get(&b.addr).is_none() {
                    d.insert(b.addr, *b);
                }
            }
            for (_, b) in self.in_flight(i) {
                if d.get(&b.addr).is_none() {
                    d.insert(b.addr, b);
                }
            }
        }
        for a in self.p.pool() {
            if d.get(&a).is_none() {
                d.insert(a, Binding::empty(a, BindingState::Free));
            }
        }
        d
    }
}
