//! The workers' side of failover: what the relationship threads share with the workers, and how
//! a relationship's work is spread over several workers.
//!
//! A server runs one worker per receive queue, each owning the bindings of its clients' RFC 3074
//! buckets and its shard of every pool ([`tandem_dataplane::engine::owner_of`]). Failover needs,
//! from every worker:
//! - **ownership**: each worker's [`FailoverAuthority`] takes the relationship's
//!   [`OwnershipSnapshot`]s from a [`SnapBus`] between batches (no lock on the request path);
//! - **committed bindings**: each worker's commit hook ([`commit_router`], laid out through a
//!   [`HookBus`]) hands its committed bindings the partner lacks to the relationship thread;
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

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use tandem_dataplane::authority::{Authority, LeaseGrant, Verdict};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::engine::{owner_of, shard_of, Engine, Extracted};
use tandem_dataplane::scope::{ServerSettings, Subnet};
use tandem_dataplane::time::Time;
use tandem_dataplane::worker::{CommitHook, Control, EngineTask, PoolRow, WorkerHandle};

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

/// Where the commit hook sends committed bindings: per scope subnet, the relationship thread.
#[derive(Clone)]
pub struct HookLayout {
    pub(super) routes: Vec<(Subnet, usize)>,
    pub(super) senders: Vec<(Sender<FromWorker>, Arc<Waker>)>,
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

/// The worker's commit hook, routing every committed binding the partner lacks to its
/// relationship's thread, and the sender that gives it a new [`HookLayout`] (taken at its next
/// call). Without a layout it forwards nothing.
pub fn commit_router() -> (CommitHook, Sender<HookLayout>) {
    let (tx, rx) = crossbeam_channel::unbounded::<HookLayout>();
    let mut layout = HookLayout {
        routes: Vec::new(),
        senders: Vec::new(),
    };
    let mut per: Vec<Vec<Binding>> = Vec::new();
    let hook: CommitHook = Box::new(move |bs: &[Binding]| {
        while let Ok(l) = rx.try_recv() {
            per = vec![Vec::new(); l.senders.len()];
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
            if !v.is_empty() {
                let (tx, waker) = &layout.senders[r];
                let _ = tx.send(FromWorker::Committed(std::mem::take(v)));
                let _ = waker.wake();
            }
        }
    });
    (hook, tx)
}

/// What the worker sends a relationship thread.
pub enum FromWorker {
    /// Committed local changes the partner must learn.
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
    /// Addresses found with two workers at once, over the thread's life.
    pub duplicates: u64,
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
            duplicates: 0,
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
                let judged = !batch.is_empty();
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
                let part = parts.pop().unwrap_or_default();
                for (a, x) in part.restores {
                    engine.put_back(a, x);
                }
                for b in part.installs {
                    engine.install(b);
                }
                for a in acked {
                    if let Some(s) = engine.binding(a.addr).and_then(|l| settle_acked(l, &a)) {
                        engine.install(s);
                    }
                }
                if !judged {
                    return None;
                }
                let (results, refused) = (part.results, part.refused);
                Some(Box::new(move |durable| {
                    let _ = tx.send(FromWorker::Judged {
                        results,
                        durable,
                        refused,
                    });
                    let _ = waker.wake();
                }))
            }),
        );
    }

    /// Start the next round if none is in flight and bindings wait.
    fn start_round(&mut self, subnets: &[Subnet]) {
        if self.round.is_some() || (self.queued.is_empty() && self.queued_acked.is_empty()) {
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
                Box::new(move |engine: &mut Engine, _| {
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
                    Some(Box::new(move |durable| {
                        let _ = tx.send(FromWorker::Judged {
                            results,
                            durable,
                            refused,
                        });
                        let _ = waker.wake();
                    }))
                }),
            );
        }
        self.start_round(subnets);
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

    /// Worker `worker`'s unleased addresses; returns the sums over every worker's latest.
    pub fn pools_part(&mut self, worker: usize, free: u64, backup: u64) -> (u64, u64) {
        if let Some(s) = self.pools.get_mut(worker) {
            *s = (free, backup);
        }
        self.pools
            .iter()
            .fold((0, 0), |(f, b), (x, y)| (f + x, b + y))
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
    use super::super::{Peer, PeerState, Start};
    use super::*;
    use std::net::Ipv4Addr;
    use tandem_dataplane::binding::ClientKey;
    use tandem_dataplane::scope::{AddrRange, OptionSet, Scope};

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
}
