//! The workers' side of failover: what the relationship threads share with the workers, and how
//! a relationship's work is spread over several workers.
//!
//! A server runs one worker per receive queue, each owning the bindings of its clients' RFC 3074
//! buckets and its shard of every pool ([`tandem_dataplane::engine::owner_of`]). Failover needs,
//! from every worker:
//! - **ownership**: each worker's [`FailoverAuthority`] takes the relationship's
//!   [`OwnershipSnapshot`]s from a [`SnapBus`] between batches (no lock on the request path);
//! - **committed bindings**: each worker's commit hook ([`commit_router`], laid out through a
//!   [`HookBus`]) hands its committed bindings the partner lacks to the relationship thread,
//!   through a bounded lock-free ring per worker and relationship ([`CommitRing`]). A full ring
//!   never blocks the worker: the batch waits, in order, in the hook's own backlog and goes in
//!   at the hook's next call (counted as `ring_full`); beyond [`BACKLOG_MAX`] bindings it is
//!   dropped (counted as `lost`, logged) and the relationship thread resends every binding the
//!   partner has not acknowledged, read from the workers;
//! - **the partner's bindings**, judged against the one record the server holds for their
//!   address, wherever it lives. With one worker that is a single task ([`Fanout::judge_one`]).
//!   With several, a judging round takes three steps: every worker takes what it knows of the
//!   round's addresses out of its engine ([`Engine::extract`], so no worker can lease them
//!   meanwhile) and sends it back; the relationship thread judges each binding against that
//!   record ([`place`], pure); then each worker installs what lands with it (a held binding
//!   with its client's bucket owner, any other where its record was) or puts back what it gave,
//!   and the verdicts go back after that worker's commit, so every BNDACK follows the
//!   fdatasync of the journal holding the binding. One round runs at a time; partner bindings
//!   arriving meanwhile wait for the next one (they batch up under load);
//! - **everything else** (start-up catch-up, UPDREQALL, pool counts, sweeps, pool transfers) runs
//!   on every worker over its own bindings and shards, and the thread adds up the answers.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_queue::ArrayQueue;
use mio::Waker;
use tandem_dataplane::authority::{Authority, LeaseGrant, Verdict};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::engine::{owner_of, shard_of, Engine, Extracted};
use tandem_dataplane::scope::{ServerSettings, Subnet};
use tandem_dataplane::time::Time;
use tandem_dataplane::worker::{
    AfterCommit, CommitHook, Control, EngineTask, PoolRow, WorkerHandle,
};

use super::message::RejectReason;
use super::peer::{needs_update, settle_acked, Judgement, OwnershipSnapshot, UpdateId};

/// A snapshot published by a relationship thread: (layout generation, relationship index,
/// snapshot).
pub type Published = (u64, usize, OwnershipSnapshot);

/// Which relationship decides for which scope, and each relationship's first snapshot: what the
/// worker's [`FailoverAuthority`] takes with the reload that renumbers the scopes.
#[derive(Clone, Debug)]
pub struct Layout {
    pub(super) gen: u64,
    pub(super) scope_rel: Vec<Option<usize>>,
    pub(super) snaps: Vec<OwnershipSnapshot>,
}

impl Layout {
    /// A layout without relationships: every one of `scopes` scopes served alone.
    pub fn standalone(gen: u64, scopes: usize) -> Layout {
        Layout {
            gen,
            scope_rel: vec![None; scopes],
            snaps: Vec::new(),
        }
    }
}

/// The worker's view of every relationship: which snapshot decides for which scope.
pub struct FailoverAuthority {
    gen: u64,
    scope_rel: Vec<Option<usize>>,
    snaps: Vec<OwnershipSnapshot>,
    rx: Receiver<Published>,
    /// Snapshots of a layout the worker has not switched to yet.
    early: Vec<Published>,
}

impl FailoverAuthority {
    /// An authority for a server without relationships (every scope served alone) and the
    /// sender relationship threads publish their snapshots with.
    pub fn new(scopes: usize) -> (FailoverAuthority, Sender<Published>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let a = FailoverAuthority {
            gen: 0,
            scope_rel: vec![None; scopes],
            snaps: Vec::new(),
            rx,
            early: Vec::new(),
        };
        (a, tx)
    }

    /// Switch to `layout` now (before the worker runs; later through a reload).
    pub fn set_layout(&mut self, layout: Layout) {
        self.gen = layout.gen;
        self.scope_rel = layout.scope_rel;
        self.snaps = layout.snaps;
        let early = std::mem::take(&mut self.early);
        for p in early {
            self.take(p);
        }
    }

    fn take(&mut self, (gen, r, snap): Published) {
        if gen == self.gen {
            if let Some(slot) = self.snaps.get_mut(r) {
                *slot = snap;
            }
        } else if gen > self.gen {
            self.early.push((gen, r, snap));
        }
    }

    fn snap(&self, scope_index: usize) -> Option<&OwnershipSnapshot> {
        let r = (*self.scope_rel.get(scope_index)?)?;
        self.snaps.get(r)
    }
}

impl Authority for FailoverAuthority {
    fn verdict(&self, scope_index: usize, bucket: u8, has_binding: bool, now: Time) -> Verdict {
        match self.snap(scope_index) {
            Some(s) => s.verdict(scope_index, bucket, has_binding, now),
            None => Verdict::SERVE_ALL,
        }
    }

    fn grant(
        &self,
        scope_index: usize,
        desired_secs: u32,
        acked_expiry: u32,
        now: Time,
    ) -> Option<LeaseGrant> {
        match self.snap(scope_index) {
            Some(s) => s
                .grant(desired_secs, acked_expiry, now)
                .map(|g| LeaseGrant {
                    lease_secs: g.lease_secs,
                    potential_expiry: g.potential_expiry,
                }),
            None => Some(LeaseGrant {
                lease_secs: desired_secs,
                potential_expiry: 0,
            }),
        }
    }

    fn may_allocate(&self, scope_index: usize, b: &Binding, now: Time) -> bool {
        self.snap(scope_index)
            .is_none_or(|s| s.may_allocate(b, now))
    }

    fn refresh(&mut self) {
        while let Ok(p) = self.rx.try_recv() {
            self.take(p);
        }
    }

    fn reconfigure(&mut self, layout: Box<dyn std::any::Any + Send>) {
        match layout.downcast::<Layout>() {
            Ok(l) => self.set_layout(*l),
            Err(_) => tracing::error!("failover authority: a reload carried an unknown layout"),
        }
    }
}

/// Committed batches one worker hands one relationship thread: a bounded lock-free ring (one
/// producer, the worker's commit hook; one consumer, the relationship thread).
pub struct CommitRing {
    q: ArrayQueue<Vec<Binding>>,
    /// Hook calls that found the ring full (the batch waited in the hook's backlog).
    full: AtomicU64,
    /// Bindings dropped because the backlog exceeded [`BACKLOG_MAX`].
    lost: AtomicU64,
    /// Set with `lost`: the relationship thread must resend what the partner lacks.
    resync: AtomicBool,
    /// The hook holds a backlog: the relationship thread wakes the worker after draining.
    backlogged: AtomicBool,
}

/// Batches one [`CommitRing`] holds.
pub const RING_SLOTS: usize = 1024;

/// Most bindings a commit hook keeps waiting for one full ring before it drops new ones.
pub const BACKLOG_MAX: usize = 1 << 20;

impl CommitRing {
    /// An empty ring of `slots` batches.
    pub fn new(slots: usize) -> CommitRing {
        CommitRing {
            q: ArrayQueue::new(slots.max(1)),
            full: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            resync: AtomicBool::new(false),
            backlogged: AtomicBool::new(false),
        }
    }

    /// The next batch, oldest first.
    pub fn pop(&self) -> Option<Vec<Binding>> {
        self.q.pop()
    }

    /// Hook calls that found the ring full.
    pub fn full_count(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Bindings dropped (the relationship resends what the partner lacks).
    pub fn lost_count(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// True once after bindings were dropped: resend what the partner lacks.
    pub fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::AcqRel)
    }

    /// True once after the hook left a backlog: wake its worker so that it pushes it.
    pub fn take_backlogged(&self) -> bool {
        self.backlogged.swap(false, Ordering::AcqRel)
    }
}

impl std::fmt::Debug for CommitRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitRing")
            .field("len", &self.q.len())
            .field("full", &self.full_count())
            .field("lost", &self.lost_count())
            .finish()
    }
}

/// Where the commit hook sends committed bindings: per scope subnet, the relationship; per
/// relationship, one ring per worker and the thread's waker.
#[derive(Clone)]
pub struct HookLayout {
    pub(super) routes: Vec<(Subnet, usize)>,
    pub(super) senders: Vec<(Vec<Arc<CommitRing>>, Arc<Waker>)>,
}

impl HookLayout {
    /// No relationship: nothing is forwarded.
    pub fn empty() -> HookLayout {
        HookLayout {
            routes: Vec::new(),
            senders: Vec::new(),
        }
    }
}

/// Worker `worker`'s commit hook, routing every committed binding the partner lacks to its
/// relationship's thread, and the sender that gives it a new [`HookLayout`] (taken at its next
/// call). Without a layout it forwards nothing. Called with no bindings, it only pushes what
/// waits in its backlog.
pub fn commit_router(worker: usize) -> (CommitHook, Sender<HookLayout>) {
    commit_router_with(worker, BACKLOG_MAX)
}

/// [`commit_router`] keeping at most `backlog_max` bindings waiting per relationship.
fn commit_router_with(worker: usize, backlog_max: usize) -> (CommitHook, Sender<HookLayout>) {
    let (tx, rx) = crossbeam_channel::unbounded::<HookLayout>();
    let mut layout = HookLayout {
        routes: Vec::new(),
        senders: Vec::new(),
    };
    let mut per: Vec<Vec<Binding>> = Vec::new();
    // Per relationship: batches waiting for room in the ring, oldest first, and their size.
    let mut backlog: Vec<(VecDeque<Vec<Binding>>, usize)> = Vec::new();
    let hook: CommitHook = Box::new(move |bs: &[Binding]| {
        while let Ok(l) = rx.try_recv() {
            per = vec![Vec::new(); l.senders.len()];
            // What waited for the old layout's rings is dropped with them (a relationship
            // restart reads every worker's bindings again).
            backlog = (0..l.senders.len()).map(|_| (VecDeque::new(), 0)).collect();
            layout = l;
        }
        if layout.routes.is_empty() {
            return;
        }
        for b in bs {
            if !needs_update(b) {
                continue;
            }
            if let Some((_, r)) = layout.routes.iter().find(|(s, _)| s.contains(b.addr)) {
                per[*r].push(*b);
            }
        }
        for (r, v) in per.iter_mut().enumerate() {
            let (rings, waker) = &layout.senders[r];
            let Some(ring) = rings.get(worker) else {
                v.clear();
                continue;
            };
            let (waiting, size) = &mut backlog[r];
            let mut pushed = false;
            while let Some(batch) = waiting.pop_front() {
                let n = batch.len();
                match ring.q.push(batch) {
                    Ok(()) => {
                        *size -= n;
                        pushed = true;
                    }
                    Err(batch) => {
                        waiting.push_front(batch);
                        break;
                    }
                }
            }
            if !v.is_empty() {
                let batch = std::mem::take(v);
                if waiting.is_empty() {
                    match ring.q.push(batch) {
                        Ok(()) => pushed = true,
                        Err(batch) => {
                            ring.full.fetch_add(1, Ordering::Relaxed);
                            *size += batch.len();
                            waiting.push_back(batch);
                        }
                    }
                } else if *size + batch.len() <= backlog_max {
                    ring.full.fetch_add(1, Ordering::Relaxed);
                    *size += batch.len();
                    waiting.push_back(batch);
                } else {
                    ring.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    ring.resync.store(true, Ordering::Release);
                    pushed = true;
                    tracing::error!(worker, bindings = batch.len(),
                        "failover: the relationship thread is far behind; committed updates dropped here, it resends what the partner has not acknowledged");
                }
            }
            if !waiting.is_empty() {
                ring.backlogged.store(true, Ordering::Release);
                pushed = true;
            }
            if pushed {
                let _ = waker.wake();
            }
        }
    });
    (hook, tx)
}

/// What the worker sends a relationship thread.
pub enum FromWorker {
    /// Committed local changes the partner must learn (through the worker's [`CommitRing`]).
    Committed(Vec<Binding>),
    /// The verdicts on a batch of partner bindings, after the commit that made them durable.
    Judged {
        /// Per partner update: its id, the verdict, and our binding to send back if refused.
        results: Vec<(UpdateId, Result<(), RejectReason>, Option<Binding>)>,
        /// The commit reached the disk.
        durable: bool,
        /// The first few refused updates, for the log.
        refused: Vec<Refusal>,
    },
    /// One worker's bindings to send (start-up catch-up, or every binding for UPDREQALL when
    /// `all`; the full update ends once every worker sent its part).
    Bindings {
        /// The bindings.
        bindings: Vec<Binding>,
        /// For UPDREQALL (end the full update after them).
        all: bool,
    },
    /// Unleased addresses in the relationship's scopes, in one worker's shards.
    Pools {
        /// The worker.
        worker: usize,
        /// FREE addresses.
        free: u64,
        /// BACKUP addresses.
        backup: u64,
        /// Per scope of the relationship.
        scopes: Vec<ScopeCount>,
    },
    /// Unleased addresses one worker took out of its shard of a scope for another worker
    /// ([`Engine::shard_take`]).
    Taken {
        /// The scope index.
        si: usize,
        /// The worker they go to.
        to: usize,
        /// The addresses with their records.
        items: Vec<(Ipv4Addr, Extracted)>,
        /// The pool they came from (FREE or BACKUP).
        pool: BindingState,
    },
    /// Addresses by binding state, per scope of the relationship, in one worker.
    Counts {
        /// The worker.
        worker: usize,
        /// One row per scope of the relationship.
        pools: Vec<ScopePools>,
    },
    /// What one worker knew of the addresses of a judging round's partner bindings, taken out
    /// of it ([`Engine::extract`]).
    Extracted {
        /// The round.
        round: u64,
        /// The worker.
        worker: usize,
        /// (index into the round's addresses, what was taken).
        found: Vec<(u32, Extracted)>,
    },
}

/// One of the partner's binding updates we refused (for the log).
#[derive(Debug)]
pub struct Refusal {
    /// The address.
    pub addr: Ipv4Addr,
    /// The state the partner sent.
    pub sent: BindingState,
    /// Why we refused it.
    pub reason: RejectReason,
    /// Our binding's state, sent back to the partner, if we hold one.
    pub ours: Option<BindingState>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: {:?}", self.addr, self.sent, self.reason)?;
        match self.ours {
            Some(st) => write!(f, " (ours {st:?})"),
            None => Ok(()),
        }
    }
}

impl From<PoolRow> for ScopePools {
    fn from(r: PoolRow) -> ScopePools {
        ScopePools {
            scope: r.scope,
            free: r.free.saturating_sub(r.backup),
            backup: r.backup,
            active: r.active,
            expired: r.expired,
            abandoned: r.abandoned,
        }
    }
}

/// Addresses of one scope of a relationship, by binding state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopePools {
    /// Scope name.
    pub scope: String,
    /// Unleased, in the primary's FREE pool.
    pub free: u64,
    /// Unleased, in the secondary's BACKUP pool.
    pub backup: u64,
    /// Leased (ACTIVE, including offers).
    pub active: u64,
    /// EXPIRED, RELEASED or RESET, waiting for the partner's acknowledgement before turning
    /// FREE.
    pub expired: u64,
    /// ABANDONED (declined or found in use).
    pub abandoned: u64,
}

/// How many refused updates of one batch the log names.
pub(super) const REFUSALS_LOGGED: usize = 4;

/// Where relationship threads publish their ownership snapshots: to every worker's
/// [`FailoverAuthority`].
#[derive(Clone, Debug, Default)]
pub struct SnapBus {
    txs: Vec<Sender<Published>>,
}

impl SnapBus {
    /// A bus over the senders of the workers' authorities (from [`FailoverAuthority::new`]).
    pub fn new(txs: Vec<Sender<Published>>) -> SnapBus {
        SnapBus { txs }
    }

    /// The workers it reaches.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True if it reaches no worker.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Publish `p` to every worker (a worker that is gone is skipped).
    pub fn publish(&self, p: Published) {
        for tx in &self.txs {
            let _ = tx.send(p);
        }
    }
}

/// Where a new [`HookLayout`] goes: to every worker's commit hook ([`commit_router`]).
#[derive(Clone, Debug, Default)]
pub struct HookBus {
    txs: Vec<Sender<HookLayout>>,
}

impl HookBus {
    /// A bus over the senders of the workers' commit hooks.
    pub fn new(txs: Vec<Sender<HookLayout>>) -> HookBus {
        HookBus { txs }
    }

    /// Give every worker's hook `layout` (taken at its next call).
    pub fn send(&self, layout: &HookLayout) {
        for tx in &self.txs {
            let _ = tx.send(layout.clone());
        }
    }
}

/// What one worker does with the outcome of a judging round ([`place`]).
#[derive(Debug, Default)]
pub struct Part {
    /// Accepted partner bindings that now live with this worker (journaled at its commit).
    pub installs: Vec<Binding>,
    /// What the worker gave up in the round and gets back unchanged (refused or ignored
    /// updates).
    pub restores: Vec<(Ipv4Addr, Extracted)>,
    /// The verdicts answered after this worker's commit: (update, verdict, our binding to send
    /// back if refused).
    pub results: Vec<(UpdateId, Result<(), RejectReason>, Option<Binding>)>,
    /// The first few refusals, for the log.
    pub refused: Vec<Refusal>,
    /// Addresses two workers knew at once (never expected; counted and logged).
    pub duplicates: u32,
}

impl Part {
    fn is_empty(&self) -> bool {
        self.installs.is_empty() && self.restores.is_empty() && self.results.is_empty()
    }
}

/// Where one address of a round stands while [`place`] judges its updates.
struct Current {
    /// The worker its record is with (`None`: no worker knew it).
    at: Option<usize>,
    /// The record (as extracted, or the accepted update).
    x: Extracted,
    /// An update was accepted: install `x.record` at `at`.
    accepted: bool,
}

/// Judge a round's partner bindings (`batch`; `legal[i]` if binding `i` is in the
/// relationship's scopes) against what the workers gave up for them (`found[k]`: worker `k`'s
/// `(index into batch, extract)`), in arrival order, each against the record left by the ones
/// before it. Returns one [`Part`] per worker: an accepted binding goes to its client's bucket
/// owner if it is held, else to the worker that had the address (its initial shard's worker if
/// none); everything not accepted goes back where it came from; each verdict travels with the
/// part whose commit holds the address's final record.
pub fn place(
    batch: &[(UpdateId, Binding)],
    legal: &[bool],
    found: Vec<Vec<(u32, Extracted)>>,
    snap: &OwnershipSnapshot,
    settings: &ServerSettings,
    now: Time,
) -> Vec<Part> {
    let n = found.len().max(1);
    let mut parts: Vec<Part> = (0..n).map(|_| Part::default()).collect();
    let mut cur: HashMap<Ipv4Addr, Current> = HashMap::new();
    for (k, f) in found.into_iter().enumerate() {
        for (i, x) in f {
            let Some((_, b)) = batch.get(i as usize) else {
                continue;
            };
            match cur.get_mut(&b.addr) {
                None => {
                    cur.insert(
                        b.addr,
                        Current {
                            at: Some(k),
                            x,
                            accepted: false,
                        },
                    );
                }
                Some(c) => {
                    // Two workers knew the address: judge against the held (else the first)
                    // record; the other gets its record back without any pool place, so the
                    // address cannot be leased from there.
                    let held = |x: &Extracted| x.record.is_some_and(|r| r.state.is_held());
                    let (loser_at, mut loser) = if held(&x) && !held(&c.x) {
                        let old = std::mem::replace(
                            c,
                            Current {
                                at: Some(k),
                                x,
                                accepted: false,
                            },
                        );
                        (old.at.unwrap_or(0), old.x)
                    } else {
                        (k, x)
                    };
                    loser.pooled = None;
                    let p = &mut parts[loser_at.min(n - 1)];
                    p.duplicates += 1;
                    if loser.record.is_some() || loser.hold.is_some() {
                        p.restores.push((b.addr, loser));
                    }
                }
            }
        }
    }
    let mut verdicts = Vec::with_capacity(batch.len());
    for (i, (id, b)) in batch.iter().enumerate() {
        if !legal.get(i).copied().unwrap_or(false) {
            parts[0]
                .results
                .push((*id, Err(RejectReason::IllegalIpAddress), None));
            continue;
        }
        let c = cur.entry(b.addr).or_insert(Current {
            at: None,
            x: Extracted {
                record: None,
                pooled: None,
                hold: None,
            },
            accepted: false,
        });
        match snap.judge(c.x.record.as_ref(), b, now) {
            Judgement::Accept(nb) => {
                let target = if nb.state.is_held() && !nb.client.is_empty() {
                    owner_of(settings, &nb, n)
                } else {
                    c.at.unwrap_or_else(|| shard_of(settings, nb.addr, n))
                };
                c.at = Some(target.min(n - 1));
                c.x = Extracted {
                    record: Some(nb),
                    pooled: None,
                    hold: None,
                };
                c.accepted = true;
                verdicts.push((*id, b, Ok(()), None));
            }
            Judgement::Ignore => verdicts.push((*id, b, Ok(()), None)),
            Judgement::Reject { reason, resend } => verdicts.push((*id, b, Err(reason), resend)),
        }
    }
    for (addr, c) in &cur {
        match (c.accepted, c.at, c.x.record) {
            (true, Some(t), Some(nb)) => parts[t].installs.push(nb),
            (false, Some(k), _) => parts[k].restores.push((*addr, c.x)),
            _ => {}
        }
    }
    for (id, b, res, resend) in verdicts {
        let w = cur.get(&b.addr).and_then(|c| c.at).unwrap_or(0);
        let p = &mut parts[w];
        if let Err(reason) = res {
            if p.refused.len() < REFUSALS_LOGGED {
                p.refused.push(Refusal {
                    addr: b.addr,
                    sent: b.state,
                    reason,
                    ours: resend.map(|l| l.state),
                });
            }
        }
        p.results.push((id, res, resend));
    }
    parts
}

/// One scope's unleased addresses in one worker's shard: (scope index, FREE, BACKUP).
pub type ScopeCount = (usize, u64, u64);

/// Give `engine` its [`Part`] of a round (what it gave back first, then what it installs); its
/// verdicts go `back` as [`FromWorker::Judged`] after the commit that makes them durable (none
/// if the part has no verdict).
fn apply_part(
    engine: &mut Engine,
    part: Part,
    back: (Sender<FromWorker>, Arc<Waker>),
) -> Option<AfterCommit> {
    for (a, x) in part.restores {
        engine.put_back(a, x);
    }
    for b in part.installs {
        engine.install(b);
    }
    if part.results.is_empty() {
        return None;
    }
    let (results, refused) = (part.results, part.refused);
    let (tx, waker) = back;
    Some(Box::new(move |durable| {
        let _ = tx.send(FromWorker::Judged {
            results,
            durable,
            refused,
        });
        let _ = waker.wake();
    }))
}

/// A worker's extracts of a round (`(index into batch, extract)`) with their addresses.
fn addressed(
    batch: &[(UpdateId, Binding)],
    found: Vec<(u32, Extracted)>,
) -> Vec<(Ipv4Addr, Extracted)> {
    found
        .into_iter()
        .filter_map(|(i, x)| batch.get(i as usize).map(|(_, b)| (b.addr, x)))
        .collect()
}

/// A judging round in flight: waiting for every worker's [`FromWorker::Extracted`].
struct Round {
    id: u64,
    batch: Vec<(UpdateId, Binding)>,
    legal: Vec<bool>,
    found: Vec<Option<Vec<(u32, Extracted)>>>,
    waiting: usize,
}

/// A relationship thread's way to the workers: runs its tasks on one or every worker, judges
/// the partner's bindings across them, and adds up their answers (see the module docs).
pub struct Fanout {
    worker: WorkerHandle,
    settings: Arc<ServerSettings>,
    back: (Sender<FromWorker>, Arc<Waker>),
    next_round: u64,
    queued: Vec<(UpdateId, Binding)>,
    queued_acked: Vec<Binding>,
    round: Option<Round>,
    full_parts: usize,
    pools: Vec<(u64, u64)>,
    counts: Vec<Vec<ScopePools>>,
    /// Per worker, its latest (scope index, FREE, BACKUP) and whether it came since the last
    /// shard move.
    scope_pools: Vec<(Vec<ScopeCount>, bool)>,
    /// A shard move between two workers is under way (no judging round starts meanwhile).
    moving: bool,
    /// Addresses found with two workers at once, over the thread's life.
    pub duplicates: u64,
    /// Shard moves between workers and the addresses they moved, over the thread's life.
    pub shard_moves: (u64, u64),
}

impl Fanout {
    /// Tasks for the workers behind `worker` (serving `settings`), whose answers come back on
    /// `back` (with the relationship thread's waker).
    pub fn new(
        worker: WorkerHandle,
        settings: Arc<ServerSettings>,
        back: (Sender<FromWorker>, Arc<Waker>),
    ) -> Fanout {
        let n = worker.workers().max(1);
        Fanout {
            worker,
            settings,
            back,
            next_round: 0,
            queued: Vec::new(),
            queued_acked: Vec::new(),
            round: None,
            full_parts: 0,
            pools: vec![(0, 0); n],
            counts: vec![Vec::new(); n],
            scope_pools: vec![(Vec::new(), false); n],
            moving: false,
            duplicates: 0,
            shard_moves: (0, 0),
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.worker.workers().max(1)
    }

    /// The sender back to the relationship thread, with its waker.
    pub fn back(&self) -> (Sender<FromWorker>, Arc<Waker>) {
        (self.back.0.clone(), self.back.1.clone())
    }

    /// Run `task` on worker `k`. False if it is gone.
    pub fn run_on(&self, k: usize, task: EngineTask) -> bool {
        let ok = self.worker.send_to(k, Control::Run(task));
        if !ok {
            tracing::error!(worker = k, "failover: the worker is gone");
        }
        ok
    }

    /// Run `make(k)` on every worker `k`. False if one is gone.
    pub fn run_each(&self, mut make: impl FnMut(usize) -> EngineTask) -> bool {
        let mut ok = true;
        for k in 0..self.workers() {
            ok &= self.run_on(k, make(k));
        }
        ok
    }

    /// Judge, install and journal the partner's bindings (`batch`, against `snap`; bindings
    /// outside `subnets` are refused as illegal addresses) and apply the partner's
    /// acknowledgements of our updates (`acked`, see [`settle_acked`]). The verdicts come back
    /// as [`FromWorker::Judged`], each after the commit that made its binding durable.
    pub fn judge(
        &mut self,
        batch: Vec<(UpdateId, Binding)>,
        acked: Vec<Binding>,
        snap: &OwnershipSnapshot,
        subnets: &[Subnet],
    ) {
        if self.workers() == 1 {
            self.judge_one(batch, acked, *snap, subnets.to_vec());
            return;
        }
        self.queued.extend(batch);
        self.queued_acked.extend(acked);
        self.start_round(subnets);
    }

    /// One worker: everything in one task on it.
    fn judge_one(
        &self,
        batch: Vec<(UpdateId, Binding)>,
        acked: Vec<Binding>,
        snap: OwnershipSnapshot,
        subnets: Vec<Subnet>,
    ) {
        let (tx, waker) = self.back();
        let settings = self.settings.clone();
        self.run_on(
            0,
            Box::new(move |engine: &mut Engine, now| {
                // As a round does: the partner's acknowledgements first, then its updates.
                for a in acked {
                    if let Some(s) = engine.binding(a.addr).and_then(|l| settle_acked(l, &a)) {
                        engine.install(s);
                    }
                }
                let legal: Vec<bool> = batch
                    .iter()
                    .map(|(_, b)| subnets.iter().any(|s| s.contains(b.addr)))
                    .collect();
                let found = vec![batch
                    .iter()
                    .zip(&legal)
                    .enumerate()
                    .filter(|(_, (_, ok))| **ok)
                    .filter_map(|(i, ((_, b), _))| engine.extract(b.addr).map(|x| (i as u32, x)))
                    .collect()];
                let mut parts = place(&batch, &legal, found, &snap, &settings, now);
                apply_part(engine, parts.pop().unwrap_or_default(), (tx, waker))
            }),
        );
    }

    /// Start the next round if none is in flight and bindings wait.
    fn start_round(&mut self, subnets: &[Subnet]) {
        if self.round.is_some()
            || self.moving
            || (self.queued.is_empty() && self.queued_acked.is_empty())
        {
            return;
        }
        let batch = std::mem::take(&mut self.queued);
        let acked = Arc::new(std::mem::take(&mut self.queued_acked));
        let legal: Vec<bool> = batch
            .iter()
            .map(|(_, b)| subnets.iter().any(|s| s.contains(b.addr)))
            .collect();
        let addrs: Arc<Vec<(u32, Ipv4Addr)>> = Arc::new(
            batch
                .iter()
                .zip(&legal)
                .enumerate()
                .filter(|(_, (_, ok))| **ok)
                .map(|(i, ((_, b), _))| (i as u32, b.addr))
                .collect(),
        );
        self.next_round += 1;
        let id = self.next_round;
        let n = self.workers();
        self.round = Some(Round {
            id,
            batch,
            legal,
            found: vec![None; n],
            waiting: n,
        });
        let (tx, waker) = self.back();
        self.run_each(|k| {
            let (tx, waker, addrs, acked) =
                (tx.clone(), waker.clone(), addrs.clone(), acked.clone());
            Box::new(move |engine: &mut Engine, _| {
                for a in acked.iter() {
                    if let Some(s) = engine.binding(a.addr).and_then(|l| settle_acked(l, a)) {
                        engine.install(s);
                    }
                }
                let found = addrs
                    .iter()
                    .filter_map(|&(i, a)| engine.extract(a).map(|x| (i, x)))
                    .collect();
                let _ = tx.send(FromWorker::Extracted {
                    round: id,
                    worker: k,
                    found,
                });
                let _ = waker.wake();
                None
            })
        });
    }

    /// Worker `worker`'s answer to round `round`: once every worker answered, judge the round
    /// against `snap` and send each worker its part; then start the next round.
    pub fn on_extracted(
        &mut self,
        round: u64,
        worker: usize,
        found: Vec<(u32, Extracted)>,
        snap: &OwnershipSnapshot,
        subnets: &[Subnet],
        now: Time,
    ) {
        let Some(r) = self.round.as_mut().filter(|r| r.id == round) else {
            tracing::error!(
                round,
                worker,
                "failover: an answer for a judging round not in flight"
            );
            return;
        };
        let Some(slot) = r.found.get_mut(worker) else {
            return;
        };
        if slot.is_none() {
            *slot = Some(found);
            r.waiting -= 1;
        }
        if r.waiting > 0 {
            return;
        }
        let Some(r) = self.round.take() else {
            return;
        };
        let found: Vec<Vec<(u32, Extracted)>> =
            r.found.into_iter().map(Option::unwrap_or_default).collect();
        let parts = place(&r.batch, &r.legal, found, snap, &self.settings, now);
        for (k, part) in parts.into_iter().enumerate() {
            self.duplicates += u64::from(part.duplicates);
            if part.duplicates > 0 {
                tracing::warn!(worker = k, addresses = part.duplicates,
                    "failover: addresses known to two workers at once; kept out of this worker's pools");
            }
            if part.is_empty() {
                continue;
            }
            let (tx, waker) = self.back();
            self.run_on(
                k,
                Box::new(move |engine: &mut Engine, _| apply_part(engine, part, (tx, waker))),
            );
        }
        self.start_round(subnets);
    }

    /// The relationship stops: give the workers back what a judging round or a shard move in
    /// flight took out of them (unchanged: the round's updates stay unacknowledged, so the
    /// partner sends them again), waiting at most `wait` for their answers on `rx`. Without
    /// this, addresses a round had extracted would be unknown to every worker until a restart.
    pub fn drain(&mut self, rx: &Receiver<FromWorker>, wait: Duration) {
        // What the workers that answered already gave up.
        if let Some(r) = self.round.as_mut() {
            let mut back = Vec::new();
            for (k, slot) in r.found.iter_mut().enumerate() {
                if let Some(found) = slot.as_mut() {
                    back.push((k, addressed(&r.batch, std::mem::take(found))));
                }
            }
            for (k, items) in back {
                self.give_back(k, items);
            }
        }
        let deadline = Instant::now() + wait;
        while self.round.is_some() || self.moving {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(m) = rx.recv_timeout(left) else {
                tracing::error!(
                    round = self.round.is_some(),
                    moving = self.moving,
                    "failover: the workers did not answer while the relationship stopped; \
                     the addresses they gave up return at the next start (from the journal)"
                );
                return;
            };
            match m {
                FromWorker::Extracted {
                    round,
                    worker,
                    found,
                } => {
                    let Some(r) = self.round.as_mut().filter(|r| r.id == round) else {
                        continue;
                    };
                    let items = addressed(&r.batch, found);
                    if let Some(slot) = r.found.get_mut(worker).filter(|s| s.is_none()) {
                        *slot = Some(Vec::new());
                        r.waiting -= 1;
                    }
                    if r.waiting == 0 {
                        self.round = None;
                    }
                    self.give_back(worker, items);
                }
                FromWorker::Taken {
                    si,
                    to,
                    items,
                    pool,
                    ..
                } => self.on_taken(si, to, items, pool, &[]),
                _ => {}
            }
        }
    }

    /// Put `items` back into worker `k` unchanged.
    fn give_back(&self, k: usize, items: Vec<(Ipv4Addr, Extracted)>) {
        if items.is_empty() {
            return;
        }
        self.run_on(
            k,
            Box::new(move |engine: &mut Engine, _| {
                for (a, x) in items {
                    engine.put_back(a, x);
                }
                None
            }),
        );
    }

    /// An UPDREQALL's parts are on their way (one per worker).
    pub fn full_update_requested(&mut self) {
        self.full_parts += self.workers();
    }

    /// One worker's part of an UPDREQALL arrived: true if it was the last one.
    pub fn full_part_arrived(&mut self) -> bool {
        self.full_parts = self.full_parts.saturating_sub(1);
        self.full_parts == 0
    }

    /// Worker `worker`'s unleased addresses (in all, and per scope); returns the sums over
    /// every worker's latest. Once every worker reported, a scope whose FREE or BACKUP
    /// addresses run low in one worker's shard gets addresses from the richest one
    /// ([`tandem_dataplane::shards::plan`]): the partner decides which addresses are in our
    /// pool (ISC dhcpd hands the secondary one block), and leases return to the shard of the
    /// worker that held them, so the shards drift apart.
    pub fn pools_part(
        &mut self,
        worker: usize,
        free: u64,
        backup: u64,
        scopes: Vec<ScopeCount>,
    ) -> (u64, u64) {
        if let Some(s) = self.pools.get_mut(worker) {
            *s = (free, backup);
        }
        if let Some(s) = self.scope_pools.get_mut(worker) {
            *s = (scopes, true);
        }
        self.maybe_balance();
        self.pools
            .iter()
            .fold((0, 0), |(f, b), (x, y)| (f + x, b + y))
    }

    /// Start one shard move if every worker reported since the last one, no judging round is
    /// in flight, and a scope's pool runs low with one worker.
    fn maybe_balance(&mut self) {
        if self.workers() < 2
            || self.round.is_some()
            || self.moving
            || !self.scope_pools.iter().all(|(_, fresh)| *fresh)
        {
            return;
        }
        let Some((si, pool, from, to, count)) = self.plan_move() else {
            return;
        };
        self.moving = true;
        for (_, fresh) in &mut self.scope_pools {
            *fresh = false;
        }
        let (tx, waker) = self.back();
        self.run_on(
            from,
            Box::new(move |engine: &mut Engine, _| {
                let items = engine.shard_take(si, pool, count);
                let _ = tx.send(FromWorker::Taken {
                    si,
                    to,
                    items,
                    pool,
                });
                let _ = waker.wake();
                None
            }),
        );
    }

    /// The first (scope index, pool, from, to, count) that evens out a lopsided pool.
    fn plan_move(&self) -> Option<(usize, BindingState, usize, usize, u64)> {
        let first = &self.scope_pools.first()?.0;
        for (j, &(si, ..)) in first.iter().enumerate() {
            for pool in [BindingState::Backup, BindingState::Free] {
                let counts: Option<Vec<u64>> = self
                    .scope_pools
                    .iter()
                    .map(|(rows, _)| {
                        rows.get(j).filter(|r| r.0 == si).map(|&(_, f, b)| {
                            if pool == BindingState::Backup {
                                b
                            } else {
                                f
                            }
                        })
                    })
                    .collect();
                let Some(counts) = counts else {
                    continue;
                };
                if let Some((from, to, n)) = tandem_dataplane::shards::plan(&counts) {
                    return Some((si, pool, from, to, n));
                }
            }
        }
        None
    }

    /// The addresses a shard move took (see [`Fanout::pools_part`]): give them to their new
    /// worker, then let queued judging resume (its extracts run after them on every worker).
    pub fn on_taken(
        &mut self,
        si: usize,
        to: usize,
        items: Vec<(Ipv4Addr, Extracted)>,
        pool: BindingState,
        subnets: &[Subnet],
    ) {
        self.moving = false;
        let n = items.len() as u64;
        if n > 0 {
            self.run_on(
                to,
                Box::new(move |engine: &mut Engine, _| {
                    engine.shard_accept(si, items);
                    None
                }),
            );
            self.shard_moves.0 += 1;
            self.shard_moves.1 += n;
            tracing::info!(scope = si, to, addresses = n, pool = ?pool,
                "failover: unleased addresses moved between workers' shards");
        }
        self.start_round(subnets);
    }

    /// Worker `worker`'s rows per scope; returns the rows summed over every worker's latest.
    pub fn counts_part(&mut self, worker: usize, rows: Vec<ScopePools>) -> Vec<ScopePools> {
        if let Some(s) = self.counts.get_mut(worker) {
            *s = rows;
        }
        let mut out: Vec<ScopePools> = Vec::new();
        for rows in &self.counts {
            for r in rows {
                match out.iter_mut().find(|o| o.scope == r.scope) {
                    Some(o) => {
                        o.free += r.free;
                        o.backup += r.backup;
                        o.active += r.active;
                        o.expired += r.expired;
                        o.abandoned += r.abandoned;
                    }
                    None => out.push(r.clone()),
                }
            }
        }
        out
    }

    /// The share of `count` (a pool transfer) that worker `k` moves from its own shard.
    pub fn share(&self, count: u32, k: usize) -> u32 {
        let n = self.workers() as u32;
        let k = k as u32;
        count / n + u32::from(k < count % n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::peer::{MemoryStore, PeerConfig, Role};

    /// A hook of worker 1 over one relationship whose rings hold `slots` batches, keeping at
    /// most `backlog` bindings waiting; the rings and the poll behind the waker.
    fn ring_hook(slots: usize, backlog: usize) -> (CommitHook, Vec<Arc<CommitRing>>, mio::Poll) {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        let rings: Vec<Arc<CommitRing>> =
            (0..2).map(|_| Arc::new(CommitRing::new(slots))).collect();
        let (hook, tx) = commit_router_with(1, backlog);
        let net = Subnet {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 24,
        };
        tx.send(HookLayout {
            routes: vec![(net, 0)],
            senders: vec![(rings.clone(), waker)],
        })
        .expect("layout");
        (hook, rings, poll)
    }

    /// A binding the partner lacks (an expiry it has not acknowledged).
    fn unacked(last: u8) -> Binding {
        Binding::empty(Ipv4Addr::new(10, 0, 0, last), BindingState::Expired)
    }

    fn drain(ring: &CommitRing) -> Vec<u8> {
        std::iter::from_fn(|| ring.pop())
            .flatten()
            .map(|b| b.addr.octets()[3])
            .collect()
    }

    /// A full ring never blocks the hook: the batches wait in the hook, in order, and go in
    /// at its next call (an empty one too); each wait is counted; nothing is lost.
    #[test]
    fn a_full_ring_keeps_batches_waiting_in_order() {
        let (mut hook, rings, _poll) = ring_hook(2, 1000);
        for last in 1..=5u8 {
            hook(&[unacked(last)]);
        }
        assert_eq!(
            drain(&rings[0]),
            Vec::<u8>::new(),
            "worker 1 uses its own ring"
        );
        assert_eq!(rings[1].full_count(), 3);
        assert!(rings[1].take_backlogged());
        assert_eq!(drain(&rings[1]), vec![1, 2]);
        hook(&[]);
        assert_eq!(drain(&rings[1]), vec![3, 4]);
        hook(&[unacked(6)]);
        assert_eq!(drain(&rings[1]), vec![5, 6]);
        rings[1].take_backlogged();
        hook(&[]);
        assert_eq!(drain(&rings[1]), Vec::<u8>::new());
        assert!(!rings[1].take_backlogged(), "nothing waits any more");
        assert_eq!((rings[1].lost_count(), rings[1].take_resync()), (0, false));
    }

    /// Beyond the backlog's bound new batches are dropped, counted, and the relationship is
    /// told to resend what the partner lacks; what was kept still arrives in order.
    #[test]
    fn beyond_the_backlog_bound_updates_are_dropped_and_a_resync_asked_for() {
        let (mut hook, rings, _poll) = ring_hook(1, 2);
        for last in 1..=5u8 {
            hook(&[unacked(last)]);
        }
        // 1 in the ring, 2 and 3 waiting, 4 and 5 dropped.
        assert_eq!(rings[1].lost_count(), 2);
        assert!(rings[1].take_resync());
        assert!(!rings[1].take_resync(), "asked once");
        let mut got = drain(&rings[1]);
        hook(&[]);
        got.extend(drain(&rings[1]));
        hook(&[]);
        got.extend(drain(&rings[1]));
        assert_eq!(got, vec![1, 2, 3]);
    }

    use super::super::{Peer, PeerState, Start};
    use super::*;
    use std::net::Ipv4Addr;
    use tandem_dataplane::binding::ClientKey;
    use tandem_dataplane::scope::{AddrRange, OptionSet, Scope};
    use tandem_dataplane::worker::Control;

    const NOW: Time = Time(1_800_000_000_000);

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    /// One scope, 10.0.0.10-29: addresses .10-.19 start in worker 0's shard, .20-.29 in 1's.
    fn settings() -> ServerSettings {
        ServerSettings {
            server_id: ip(1),
            global_options: OptionSet::new(),
            scopes: vec![Scope {
                name: "lan".into(),
                subnet: Subnet {
                    network: ip(0),
                    prefix: 24,
                },
                ranges: vec![AddrRange::new(ip(10), ip(29))],
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
            decline_probation_secs: 600,
            duplicate_window_ms: 2000,
        }
    }

    fn snap() -> OwnershipSnapshot {
        let cfg = PeerConfig::new(b"rel", Role::Primary);
        Peer::new(cfg, MemoryStore::default(), Start::Fresh, NOW)
            .unwrap()
            .snapshot()
    }

    /// A MAC whose RFC 3074 bucket belongs to worker `w` of 2.
    fn mac_for(w: usize, skip: usize) -> [u8; 6] {
        (0u32..)
            .map(|i| {
                let b = i.to_be_bytes();
                [2, 0, b[0], b[1], b[2], b[3]]
            })
            .filter(|m| usize::from(tandem_dataplane::hash::client_bucket(None, m, 6)) % 2 == w)
            .nth(skip)
            .unwrap()
    }

    /// An ACTIVE lease of `addr` to `mac`, last touched `ago` seconds before NOW.
    fn active(addr: Ipv4Addr, mac: [u8; 6], ago: u32) -> Binding {
        let t = (NOW.0 / 1000) as u32;
        let mut b = Binding::empty(addr, BindingState::Active);
        b.client = ClientKey::from_hw(1, &mac);
        b.htype = 1;
        b.hlen = 6;
        b.chaddr[..6].copy_from_slice(&mac);
        b.start = t - ago;
        b.cltt = t - ago;
        b.expires = t + 3600;
        b.acked_expiry = t + 3600;
        b
    }

    fn pooled() -> Extracted {
        Extracted {
            record: None,
            pooled: Some(BindingState::Free),
            hold: None,
        }
    }

    fn kept(b: Binding) -> Extracted {
        Extracted {
            record: Some(b),
            pooled: None,
            hold: None,
        }
    }

    fn id(i: u16) -> UpdateId {
        UpdateId::for_test(i)
    }

    #[test]
    fn a_held_partner_binding_lands_with_its_clients_bucket_owner() {
        let s = settings();
        // The partner leased .12 (free in worker 0's shard) to a client worker 1 owns.
        let b = active(ip(12), mac_for(1, 0), 5);
        let batch = vec![(id(0), b)];
        let parts = place(
            &batch,
            &[true],
            vec![vec![(0, pooled())], vec![]],
            &snap(),
            &s,
            NOW,
        );
        assert_eq!(parts.len(), 2);
        assert!(
            parts[0].is_empty(),
            "worker 0 gives the address up for good"
        );
        assert_eq!(parts[1].installs, vec![b]);
        assert_eq!(parts[1].results, vec![(id(0), Ok(()), None)]);
        assert!(parts[1].restores.is_empty());
    }

    #[test]
    fn a_refused_update_leaves_everything_where_it_was() {
        let s = settings();
        // Worker 0 holds .21 for its own client, touched after the partner's claim.
        let ours = active(ip(21), mac_for(0, 0), 1);
        let theirs = active(ip(21), mac_for(1, 1), 50);
        let batch = vec![(id(0), theirs), (id(1), active(ip(200), mac_for(0, 2), 1))];
        let parts = place(
            &batch,
            &[true, false],
            vec![vec![(0, kept(ours))], vec![]],
            &snap(),
            &s,
            NOW,
        );
        assert!(parts[0].installs.is_empty() && parts[1].installs.is_empty());
        assert_eq!(parts[0].restores, vec![(ip(21), kept(ours))]);
        let r0: Vec<_> = parts[0].results.iter().map(|(i, r, _)| (*i, *r)).collect();
        assert!(r0.contains(&(id(0), Err(RejectReason::FatalConflict))));
        // The address outside every scope of the relationship is refused as illegal.
        assert!(r0.contains(&(id(1), Err(RejectReason::IllegalIpAddress))));
        let resent = parts[0]
            .results
            .iter()
            .find(|(i, ..)| *i == id(0))
            .unwrap()
            .2;
        assert_eq!(resent, Some(ours), "our binding goes back to the partner");
        assert_eq!(parts[0].refused.len(), 1);
        assert!(parts[1].is_empty());
    }

    #[test]
    fn updates_of_one_address_chain_and_land_once() {
        let s = settings();
        let mac = mac_for(0, 3);
        let first = active(ip(25), mac, 30);
        let mut second = first;
        second.cltt += 20;
        second.expires += 600;
        let batch = vec![(id(0), first), (id(1), second)];
        // Address .25 was free in worker 1's shard; the client belongs to worker 0.
        let parts = place(
            &batch,
            &[true, true],
            vec![vec![], vec![(0, pooled()), (1, pooled())]],
            &snap(),
            &s,
            NOW,
        );
        assert_eq!(parts[0].installs.len(), 1);
        assert_eq!(parts[0].installs[0].expires, second.expires);
        assert_eq!(parts[0].results.len(), 2);
        assert!(parts[1].is_empty());
    }

    #[test]
    fn an_address_two_workers_knew_is_counted_and_kept_out_of_the_losers_pools() {
        let s = settings();
        let mac = mac_for(1, 4);
        let held = active(ip(14), mac, 10);
        let mut stale = Binding::empty(ip(14), BindingState::Expired);
        stale.cltt = held.cltt - 1000;
        let loser = Extracted {
            record: Some(stale),
            pooled: Some(BindingState::Free),
            hold: None,
        };
        // The partner renews the lease worker 1 holds; worker 0 had a stale copy.
        let mut renewed = held;
        renewed.cltt += 5;
        renewed.expires += 60;
        let batch = vec![(id(0), renewed)];
        let parts = place(
            &batch,
            &[true],
            vec![vec![(0, loser)], vec![(0, kept(held))]],
            &snap(),
            &s,
            NOW,
        );
        assert_eq!(parts[0].duplicates, 1);
        assert_eq!(
            parts[0].restores,
            vec![(
                ip(14),
                Extracted {
                    pooled: None,
                    ..loser
                }
            )]
        );
        assert_eq!(parts[1].installs.len(), 1);
        assert_eq!(parts[1].installs[0].client, held.client);
        assert_eq!(parts[1].results, vec![(id(0), Ok(()), None)]);
    }

    #[test]
    fn a_non_held_binding_stays_with_the_worker_that_had_the_address() {
        let s = settings();
        // The partner's view of .11: EXPIRED after a lease worker 1 held (it had moved there
        // with its client); it stays with worker 1, not with .11's initial shard (worker 0).
        let mut ours = active(ip(11), mac_for(1, 5), 4000);
        ours.expires = ours.start + 3600;
        ours.acked_expiry = ours.expires;
        let mut theirs = ours;
        theirs.state = BindingState::Expired;
        theirs.cltt = ours.expires;
        let batch = vec![(id(0), theirs)];
        let parts = place(
            &batch,
            &[true],
            vec![vec![], vec![(0, kept(ours))]],
            &snap(),
            &s,
            NOW,
        );
        assert!(parts[0].is_empty());
        let total = parts[1].installs.len() + parts[1].restores.len();
        assert_eq!(total, 1, "the address stays with worker 1 either way");
        assert_eq!(parts[1].results.len(), 1);
    }

    fn nth(subnet: Subnet, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(subnet.network) + n)
    }

    #[test]
    fn authority_without_relationship_serves_all() {
        let (a, _tx) = FailoverAuthority::new(1);
        let now = Time::from_secs(1_000_000);
        assert_eq!(a.verdict(0, 7, false, now), Verdict::SERVE_ALL);
        assert_eq!(
            a.grant(0, 3600, 0, now),
            Some(LeaseGrant {
                lease_secs: 3600,
                potential_expiry: 0
            })
        );
        let subnet = Subnet {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 24,
        };
        let mut b = Binding::empty(nth(subnet, 5), BindingState::Backup);
        b.client = ClientKey::new(b"x");
        assert!(a.may_allocate(0, &b, now));
    }

    #[test]
    fn authority_follows_published_snapshots() {
        use super::super::peer::{MemoryStore, PeerConfig};
        let now = Time::from_secs(1_000_000);
        let cfg = PeerConfig::new(b"rel", Role::Secondary);
        let peer = Peer::new(cfg, MemoryStore::default(), Start::Fresh, now).unwrap();
        let (mut a, tx) = FailoverAuthority::new(2);
        // A snapshot of the next layout, published before the worker switched to it, waits.
        tx.send((1, 0, peer.snapshot())).unwrap();
        a.refresh();
        assert!(a.verdict(0, 1, false, now).answer);
        a.set_layout(Layout {
            gen: 1,
            scope_rel: vec![Some(0), None],
            snaps: vec![peer.snapshot()],
        });
        // A fresh secondary in RECOVER answers nobody in its scope, everyone elsewhere.
        assert!(!a.verdict(0, 1, false, now).answer);
        assert!(a.verdict(1, 1, false, now).answer);
        // A new lease is capped at MCLT outside NORMAL and carries a potential expiration.
        let mut primary_cfg = PeerConfig::new(b"rel", Role::Primary);
        primary_cfg.mclt_secs = 600;
        let p = Peer::new(primary_cfg, MemoryStore::default(), Start::Fresh, now).unwrap();
        tx.send((1, 0, p.snapshot())).unwrap();
        // One of an older layout is dropped.
        tx.send((0, 0, peer.snapshot())).unwrap();
        a.refresh();
        assert_eq!(a.snaps[0], p.snapshot());
        assert_eq!(a.snaps[0].state(), PeerState::Recover);
    }

    /// One address as [`Sim::survey`] found it: the workers that know it, its record, its pool.
    type Surveyed = (Ipv4Addr, Vec<usize>, Option<Binding>, Option<BindingState>);

    /// The workers of one server, run by hand: each worker's control queue is drained task by
    /// task in an order the seed picks, and the answers reach the [`Fanout`] in between, as
    /// the relationship thread would take them.
    struct Sim {
        engines: Vec<Engine>,
        ctl: Vec<Receiver<Control>>,
        back: Receiver<FromWorker>,
        fan: Fanout,
        snap: OwnershipSnapshot,
        subnets: Vec<Subnet>,
        judged: Vec<(UpdateId, Result<(), RejectReason>)>,
        rng: u64,
        _poll: mio::Poll,
    }

    impl Sim {
        fn new(n: usize, seed: u64) -> Sim {
            let s = Arc::new(settings());
            let poll = mio::Poll::new().unwrap();
            let stats = Arc::new(tandem_dataplane::engine::Stats::new(n));
            let mut engines = Vec::new();
            let mut handles = Vec::new();
            let mut ctl = Vec::new();
            // One waker per poll: every queue here shares it (nothing waits on it).
            let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
            for k in 0..n {
                let mut e = Engine::new(s.clone(), vec![vec![0]], k, n, stats.clone());
                e.set_replicated(vec!["lan".into()]);
                engines.push(e);
                let (tx, rx) = crossbeam_channel::unbounded();
                handles.push(WorkerHandle::from_parts(tx, waker.clone()));
                ctl.push(rx);
            }
            let (btx, brx) = crossbeam_channel::unbounded();
            let cfg = PeerConfig::new(b"rel", Role::Secondary);
            let snap = Peer::new(cfg, MemoryStore::default(), Start::Fresh, NOW)
                .unwrap()
                .snapshot();
            Sim {
                engines,
                ctl,
                back: brx,
                fan: Fanout::new(WorkerHandle::join(handles), s, (btx, waker)),
                snap,
                subnets: vec![Subnet {
                    network: ip(0),
                    prefix: 24,
                }],
                judged: Vec::new(),
                rng: seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
                _poll: poll,
            }
        }

        fn roll(&mut self, n: u64) -> u64 {
            self.rng = self
                .rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.rng >> 33) % n.max(1)
        }

        /// Run one queued task on worker `k` (its commit succeeds). False if none is queued.
        fn run_one(&mut self, k: usize) -> bool {
            match self.ctl[k].try_recv() {
                Ok(Control::Run(task)) => {
                    let after = task(&mut self.engines[k], NOW);
                    self.engines[k].take_updates().for_each(drop);
                    if let Some(a) = after {
                        a(true);
                    }
                    true
                }
                Ok(_) => true,
                Err(_) => false,
            }
        }

        /// Hand the relationship thread one answer. False if none waits.
        fn deliver_one(&mut self) -> bool {
            let Ok(m) = self.back.try_recv() else {
                return false;
            };
            match m {
                FromWorker::Extracted {
                    round,
                    worker,
                    found,
                } => self
                    .fan
                    .on_extracted(round, worker, found, &self.snap, &self.subnets, NOW),
                FromWorker::Taken {
                    si,
                    to,
                    items,
                    pool,
                } => self.fan.on_taken(si, to, items, pool, &self.subnets),
                FromWorker::Judged { results, .. } => self
                    .judged
                    .extend(results.into_iter().map(|(id, r, _)| (id, r))),
                _ => {}
            }
            true
        }

        /// Every worker reports its pools (the periodic count), in a random order.
        fn report_pools(&mut self) {
            let n = self.engines.len();
            let first = self.roll(n as u64) as usize;
            for i in 0..n {
                let k = (first + i) % n;
                let (f, b) = self.engines[k].pool_counts(0);
                self.fan.pools_part(k, f, b, vec![(0, f, b)]);
            }
        }

        /// Run workers and deliver answers in a seeded order until nothing is left.
        fn settle(&mut self) {
            let n = self.engines.len();
            loop {
                let pick = self.roll(n as u64 + 1) as usize;
                let progressed = if pick == n {
                    self.deliver_one()
                } else {
                    self.run_one(pick)
                };
                if !progressed && (0..n).all(|k| self.ctl[k].is_empty()) && self.back.is_empty() {
                    break;
                }
            }
        }

        /// Per address of the range: which workers know it, and the merged record and pool.
        fn survey(&mut self) -> Vec<Surveyed> {
            (10..=29)
                .map(|n| {
                    let a = ip(n);
                    let mut at = Vec::new();
                    let (mut rec, mut pooled) = (None, None);
                    for (k, e) in self.engines.iter_mut().enumerate() {
                        if let Some(x) = e.extract(a) {
                            at.push(k);
                            rec = rec.or(x.record);
                            pooled = pooled.or(x.pooled);
                            e.put_back(a, x);
                        }
                    }
                    (a, at, rec, pooled)
                })
                .collect()
        }
    }

    fn backup(addr: Ipv4Addr) -> Binding {
        let mut b = Binding::empty(addr, BindingState::Backup);
        b.cltt = (NOW.0 / 1000) as u32 - 100;
        b
    }

    #[test]
    fn a_lopsided_backup_pool_is_evened_out_between_workers() {
        let mut sim = Sim::new(2, 1);
        // The partner hands us .10-.19 as BACKUP: all in worker 0's initial shard.
        let batch: Vec<_> = (0..10).map(|i| (id(i), backup(ip(10 + i as u8)))).collect();
        sim.fan
            .judge(batch, Vec::new(), &sim.snap.clone(), &sim.subnets.clone());
        sim.settle();
        assert_eq!(sim.judged.len(), 10);
        assert!(
            sim.judged.iter().all(|(_, r)| r.is_ok()),
            "{:?}",
            sim.judged
        );
        assert_eq!(sim.engines[0].pool_counts(0).1, 10);
        assert_eq!(sim.engines[1].pool_counts(0).1, 0);
        sim.report_pools();
        sim.settle();
        let (b0, b1) = (
            sim.engines[0].pool_counts(0).1,
            sim.engines[1].pool_counts(0).1,
        );
        assert_eq!((b0, b1), (5, 5));
        assert_eq!(sim.fan.shard_moves, (1, 5));
        for (a, at, rec, _) in sim.survey() {
            assert!(at.len() <= 1, "{a} known to workers {at:?}");
            if u32::from(a) < u32::from(ip(20)) {
                assert_eq!(rec.map(|r| r.state), Some(BindingState::Backup), "{a}");
            }
        }
    }

    /// A relationship that stops with a round in flight (one worker's answer taken in, the
    /// other's still queued) gives every extracted address back, unchanged.
    #[test]
    fn a_stopping_relationship_puts_back_what_a_round_took_out() {
        let mut sim = Sim::new(2, 7);
        // Leases held by both workers, and free addresses in both shards.
        let batch: Vec<_> = (0..4u16)
            .map(|i| {
                (
                    id(i),
                    active(ip(10 + i as u8 * 5), mac_for(usize::from(i % 2), 9), 5),
                )
            })
            .collect();
        sim.fan
            .judge(batch, Vec::new(), &sim.snap.clone(), &sim.subnets.clone());
        sim.settle();
        let before = sim.survey();
        // A second round over the same addresses and two free ones: both workers extract, the
        // thread takes in one answer, then stops.
        let mut renew: Vec<_> = before
            .iter()
            .filter_map(|(_, _, r, _)| r.filter(|r| r.state == BindingState::Active))
            .enumerate()
            .map(|(i, mut r)| {
                r.expires += 60;
                (id(100 + i as u16), r)
            })
            .collect();
        renew.push((id(200), backup(ip(12))));
        renew.push((id(201), backup(ip(27))));
        sim.fan
            .judge(renew, Vec::new(), &sim.snap.clone(), &sim.subnets.clone());
        assert!(sim.run_one(0) && sim.run_one(1), "both workers extract");
        assert!(sim.deliver_one(), "one answer reaches the thread");
        let back = sim.back.clone();
        sim.fan.drain(&back, Duration::from_secs(1));
        // The thread is gone: only the workers run what it left them.
        for k in 0..2 {
            while sim.run_one(k) {}
        }
        assert_eq!(sim.survey(), before, "every address is back where it was");
        assert!(
            sim.judged.len() == 4,
            "the stopped round's updates got no verdict: {:?}",
            sim.judged
        );
    }

    /// Random partner updates (pool transfers, leases to clients of either worker, renewals,
    /// expiries) arrive in batches while shard moves run, the workers and the thread
    /// interleaving as the seed decides: whatever the order, every address is known to at
    /// most one worker, a held binding lives with its client's bucket owner, and the merged
    /// records, pools and verdicts are those one worker alone reaches.
    #[test]
    fn judging_across_workers_matches_one_worker_under_any_interleaving() {
        let (mut moves, mut refused, mut moved_held) = (0, 0, 0);
        for seed in 0..40u64 {
            let mut one = Sim::new(1, seed);
            let mut two = Sim::new(2, seed);
            let mut gen = Sim::new(1, seed ^ 0x5eed);
            let mut next_id = 0u16;
            let t = (NOW.0 / 1000) as u32;
            for _round in 0..6 {
                let size = 1 + gen.roll(8) as usize;
                let mut batch = Vec::new();
                for _ in 0..size {
                    let addr = ip(10 + gen.roll(20) as u8);
                    let b = match gen.roll(4) {
                        0 => backup(addr),
                        1 | 2 => {
                            let mac = mac_for(gen.roll(2) as usize, gen.roll(3) as usize);
                            active(addr, mac, gen.roll(50) as u32)
                        }
                        _ => {
                            let mut e = Binding::empty(addr, BindingState::Expired);
                            e.cltt = t - gen.roll(30) as u32;
                            e.start = e.cltt;
                            e.expires = e.cltt;
                            e
                        }
                    };
                    batch.push((id(next_id), b));
                    next_id += 1;
                }
                for sim in [&mut one, &mut two] {
                    let (snap, subnets) = (sim.snap, sim.subnets.clone());
                    sim.fan.judge(batch.clone(), Vec::new(), &snap, &subnets);
                    // Part of the work runs, then the pool report, then the rest.
                    for _ in 0..gen.roll(6) {
                        let k = gen.roll(sim.engines.len() as u64) as usize;
                        sim.run_one(k);
                        sim.deliver_one();
                    }
                    sim.report_pools();
                    sim.settle();
                }
            }
            let mut v1 = one.judged.clone();
            let mut v2 = two.judged.clone();
            let key = |x: &(UpdateId, Result<(), RejectReason>)| format!("{:?}", x.0);
            v1.sort_by_key(key);
            v2.sort_by_key(key);
            assert_eq!(v1, v2, "seed {seed}: verdicts differ");
            moves += two.fan.shard_moves.0;
            refused += v2.iter().filter(|(_, r)| r.is_err()).count();
            let (s1, s2) = (one.survey(), two.survey());
            let st = settings();
            for ((a, _, r1, p1), (_, at, r2, p2)) in s1.iter().zip(&s2) {
                assert!(at.len() <= 1, "seed {seed}: {a} known to workers {at:?}");
                assert_eq!(r1, r2, "seed {seed}: {a} records differ");
                assert_eq!(p1, p2, "seed {seed}: {a} pools differ");
                if let (Some(r), Some(&k)) = (r2, at.first()) {
                    if r.state.is_held() && !r.client.is_empty() {
                        assert_eq!(
                            k,
                            owner_of(&st, r, 2),
                            "seed {seed}: {a} away from its owner"
                        );
                        moved_held += usize::from(k != shard_of(&st, *a, 2));
                    }
                }
            }
        }
        // The runs did exercise what they check.
        assert!(moves > 0, "no shard move in any run");
        assert!(refused > 0, "no refused update in any run");
        assert!(
            moved_held > 0,
            "no held binding away from its address's shard"
        );
    }
}
