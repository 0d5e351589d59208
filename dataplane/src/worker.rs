//! The worker loop over the UDP backend: receive a batch, answer it with the engine, journal and
//! commit the batch's binding changes, and only then send the batch's replies.
//!
//! The worker owns its [`Engine`], its [`Journal`] and its sockets; nothing is shared with other
//! threads but the counters (atomics) and a control channel ([`Control`]) through which the daemon
//! reloads the configuration, asks for the lease list, or stops the worker. A `mio` waker makes
//! the worker notice control messages at once.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::authority::Authority;
use crate::binding::{Binding, BindingState};
use crate::engine::{Destination, Engine, Outcome, RxMeta};
use crate::journal::{Journal, JournalConfig, JournalError};
use crate::scope::ServerSettings;
use crate::time::Time;
use crate::wire::MessageType;

/// Largest DHCP datagram we read or write.
pub const FRAME_LEN: usize = 1500;
const WAKE: Token = Token(usize::MAX);

/// A lease as the admin endpoint lists it.
#[derive(Clone, Debug)]
pub struct LeaseRow {
    /// Scope name ("" if no scope covers the address any more).
    pub scope: String,
    /// The binding.
    pub binding: Binding,
}

/// Per-scope pool usage as the admin endpoint shows it.
#[derive(Clone, Debug)]
pub struct PoolRow {
    /// Scope name.
    pub scope: String,
    /// Unleased addresses in this worker's shard, FREE and BACKUP alike (`backup` of them are
    /// in the BACKUP pool, so `free - backup` are in FREE).
    pub free: u64,
    /// Addresses in this worker's shard.
    pub size: u64,
    /// Active leases (an address held by an offer counts as the binding the offer replaced).
    pub active: u64,
    /// Unleased addresses in the BACKUP pool (failover: the secondary's to allocate).
    pub backup: u64,
    /// Addresses EXPIRED, RELEASED or RESET waiting for the failover partner's acknowledgement
    /// before turning FREE (always 0 outside failover, where they are free at once).
    pub expired: u64,
    /// ABANDONED addresses (declined, or found in use), quarantined.
    pub abandoned: u64,
}

/// Work the control plane runs on a worker's thread with its engine (failover: store a
/// partner's bindings, settle acknowledged ones, transfer pool addresses, list bindings). What
/// it changes through [`Engine::install`] is journaled in the worker's next commit; the
/// returned [`AfterCommit`], if any, runs once that commit is done.
pub type EngineTask = Box<dyn FnOnce(&mut Engine, Time) -> Option<AfterCommit> + Send>;

/// Runs after the journal commit that follows an [`EngineTask`]; `true` if the commit reached
/// the disk (the task's changes are durable).
pub type AfterCommit = Box<dyn FnOnce(bool) + Send>;

/// Called on the worker's thread with the bindings of every successful journal commit (in
/// journal order), after the commit: failover replicates them from here.
pub type CommitHook = Box<dyn FnMut(&[Binding]) + Send>;

/// Messages from the daemon to a worker.
pub enum Control {
    /// Serve new settings (SIGHUP); every binding is kept.
    Reload {
        /// The new settings.
        settings: Arc<ServerSettings>,
        /// Scopes serving directly attached clients, per interface.
        iface_scopes: Vec<Vec<usize>>,
        /// The names of the scopes shared with a failover partner, when they change.
        replicated: Option<Vec<String>>,
        /// The authority's new layout (see [`Authority::reconfigure`]), applied together with
        /// the settings.
        authority: Option<Box<dyn std::any::Any + Send>>,
    },
    /// Send back every binding.
    Leases(Sender<Vec<LeaseRow>>),
    /// Send back pool usage per scope.
    Pools(Sender<Vec<PoolRow>>),
    /// Run a task with the engine (see [`EngineTask`]).
    Run(EngineTask),
    /// Commit and stop.
    Shutdown,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Reload { iface_scopes, .. } => f
                .debug_struct("Reload")
                .field("iface_scopes", iface_scopes)
                .finish_non_exhaustive(),
            Control::Leases(_) => f.write_str("Leases"),
            Control::Pools(_) => f.write_str("Pools"),
            Control::Run(_) => f.write_str("Run"),
            Control::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// Worker-level counters (the engine's are in [`crate::engine::Stats`]).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Batches processed.
    pub batches: AtomicU64,
    /// Journal commits.
    pub commits: AtomicU64,
    /// Records journaled.
    pub records: AtomicU64,
    /// Sum of commit durations, in nanoseconds.
    pub commit_nanos: AtomicU64,
    /// Longest commit, in nanoseconds.
    pub commit_nanos_max: AtomicU64,
    /// Replies withheld because the journal commit failed.
    pub withheld_replies: AtomicU64,
    /// Send errors.
    pub send_errors: AtomicU64,
    /// Receive errors.
    pub recv_errors: AtomicU64,
    /// Compactions started.
    pub compactions: AtomicU64,
    /// Time spent working (handling frames, running timers, committing, sending, applying
    /// control messages), as opposed to waiting for frames, in nanoseconds.
    pub busy_nanos: AtomicU64,
    /// Commits per duration bucket: slot `i` counts the commits that took more than bucket
    /// `i - 1`'s bound and at most [`COMMIT_BUCKETS_US`]`[i]` microseconds; the last slot counts
    /// the longer ones. Not cumulative (the metrics endpoint sums them up).
    pub commit_buckets: [AtomicU64; COMMIT_BUCKETS_US.len() + 1],
}

/// Upper bounds, in microseconds, of the journal commit duration buckets of
/// [`WorkerStats::commit_buckets`] (increasing).
pub const COMMIT_BUCKETS_US: [u64; 14] = [
    25, 50, 100, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

impl WorkerStats {
    /// Count one successful journal commit of `records` records that took `nanos` nanoseconds.
    /// Lock-free and allocation-free (atomic adds only).
    pub fn record_commit(&self, nanos: u64, records: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.commit_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.commit_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        let us = nanos.div_ceil(1000);
        let slot = COMMIT_BUCKETS_US.partition_point(|&bound| bound < us);
        self.commit_buckets[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Count the time since `since` as busy ([`WorkerStats::busy_nanos`]).
    pub fn record_busy(&self, since: Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The daemon's side of the workers: send control messages and wake them.
///
/// One handle stands for every worker of a server ([`WorkerHandle::join`]). [`send`] delivers
/// a message the way its kind needs: `Reload` and `Shutdown` to every worker (an authority
/// layout, which only a one-worker server with failover relationships uses, to worker 0),
/// `Leases` and `Pools` to every worker (each answers on the sender: expect
/// [`workers`](WorkerHandle::workers) answers), and `Run` to worker 0 (use
/// [`each`](WorkerHandle::each) or [`send_to`](WorkerHandle::send_to) to reach others).
///
/// [`send`]: WorkerHandle::send
#[derive(Clone, Debug)]
pub struct WorkerHandle {
    targets: Vec<(Sender<Control>, Arc<Waker>)>,
}

impl WorkerHandle {
    /// A handle over a worker's control channel and the waker of its poll, for worker loops
    /// outside this module (the AF_XDP worker, `crate::xdp_worker`).
    pub fn from_parts(tx: Sender<Control>, waker: Arc<Waker>) -> WorkerHandle {
        WorkerHandle {
            targets: vec![(tx, waker)],
        }
    }

    /// One handle over several workers' handles, worker `k` being the `k`-th.
    pub fn join(handles: Vec<WorkerHandle>) -> WorkerHandle {
        WorkerHandle {
            targets: handles.into_iter().flat_map(|h| h.targets).collect(),
        }
    }

    /// Number of workers behind the handle.
    pub fn workers(&self) -> usize {
        self.targets.len()
    }

    /// Send `c` to worker `k` and wake it. False if it is gone (or there is no worker `k`).
    pub fn send_to(&self, k: usize, c: Control) -> bool {
        let Some((tx, waker)) = self.targets.get(k) else {
            return false;
        };
        let ok = tx.send(c).is_ok();
        let _ = waker.wake();
        ok
    }

    /// Send `make(k)` to every worker `k`. False if one is gone.
    pub fn each(&self, mut make: impl FnMut(usize) -> Control) -> bool {
        let mut ok = true;
        for k in 0..self.targets.len() {
            ok &= self.send_to(k, make(k));
        }
        ok
    }

    /// Send `c` (see the type's docs for where each kind goes). False if a worker is gone.
    pub fn send(&self, c: Control) -> bool {
        match c {
            Control::Run(_) => self.send_to(0, c),
            Control::Shutdown => self.each(|_| Control::Shutdown),
            Control::Leases(tx) => self.each(|_| Control::Leases(tx.clone())),
            Control::Pools(tx) => self.each(|_| Control::Pools(tx.clone())),
            Control::Reload {
                settings,
                iface_scopes,
                replicated,
                authority,
            } => {
                let mut authority = authority;
                self.each(|_| Control::Reload {
                    settings: settings.clone(),
                    iface_scopes: iface_scopes.clone(),
                    replicated: replicated.clone(),
                    authority: authority.take(),
                })
            }
        }
    }
}

/// Pool rows of several workers summed per scope (the rows of each worker are in settings
/// order; a worker with fewer rows, mid-reload, contributes to those it has).
pub fn sum_pool_rows(per_worker: Vec<Vec<PoolRow>>) -> Vec<PoolRow> {
    let mut it = per_worker.into_iter();
    let Some(mut total) = it.next() else {
        return Vec::new();
    };
    for rows in it {
        for (t, r) in total.iter_mut().zip(rows) {
            if t.scope == r.scope {
                t.free += r.free;
                t.size += r.size;
                t.active += r.active;
                t.backup += r.backup;
                t.expired += r.expired;
                t.abandoned += r.abandoned;
            }
        }
    }
    total
}

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Poll/registration failure.
    #[error("worker I/O: {0}")]
    Io(#[from] io::Error),
    /// The journal failed at shutdown.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
}

/// One worker: engine + journal + sockets.
pub struct Worker<A: Authority> {
    engine: Engine,
    durable: Durable,
    client_port: u16,
    authority: A,
    sockets: Vec<mio::net::UdpSocket>,
    poll: Poll,
    rx: Receiver<Control>,
    stats: Arc<WorkerStats>,
    batch: usize,
}

struct Pending {
    iface: usize,
    len: usize,
    dest: Destination,
    /// True for ACKs: they confirm a binding, so they leave only after the journal commit.
    /// OFFERs and NAKs promise nothing durable and leave before it.
    durable: bool,
}

impl<A: Authority> Worker<A> {
    /// A worker over `sockets` (index = interface index in the engine's `RxMeta`), with at most
    /// `batch` frames per batch. `journal_cfg` is the configuration `journal` was opened with (to
    /// reopen it after a failure). Replies to clients go to `client_port` (68 unless testing).
    /// Returns the worker and the daemon's handle to it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        journal: Journal,
        journal_cfg: JournalConfig,
        authority: A,
        sockets: Vec<UdpSocket>,
        batch: usize,
        client_port: u16,
        stats: Arc<WorkerStats>,
    ) -> io::Result<(Worker<A>, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let mut socks = Vec::with_capacity(sockets.len());
        for (i, s) in sockets.into_iter().enumerate() {
            let mut m = mio::net::UdpSocket::from_std(s);
            poll.registry()
                .register(&mut m, Token(i), Interest::READABLE)?;
            socks.push(m);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((
            Worker {
                engine,
                durable: Durable::new(journal, journal_cfg),
                client_port,
                authority,
                sockets: socks,
                poll,
                rx,
                stats,
                batch: batch.clamp(1, 4096),
            },
            WorkerHandle::from_parts(tx, waker),
        ))
    }

    /// Run until [`Control::Shutdown`] (or the handle is dropped).
    pub fn run(mut self) -> Result<(), WorkerError> {
        let mut events = Events::with_capacity(64);
        let mut rx_buf = [0u8; FRAME_LEN];
        let mut tx_bufs = vec![[0u8; FRAME_LEN]; self.batch];
        let mut pending: Vec<Pending> = Vec::with_capacity(self.batch);
        let mut ready = vec![true; self.sockets.len()];
        // Start-up: journal whatever the engine queued while loading (leases that expired while down).
        self.durable.commit(&mut self.engine, &self.stats);
        loop {
            let timeout = self
                .engine
                .next_timer()
                .map(|t| Duration::from_millis(t.millis_since(Time::now()).clamp(1, 1000)))
                .unwrap_or(Duration::from_secs(1));
            let any_ready = ready.iter().any(|r| *r);
            let wait = if any_ready {
                Some(Duration::ZERO)
            } else {
                Some(timeout)
            };
            if let Err(e) = self.poll.poll(&mut events, wait) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e.into());
                }
            }
            for ev in events.iter() {
                if ev.token() != WAKE {
                    if let Some(r) = ready.get_mut(ev.token().0) {
                        *r = true;
                    }
                }
            }
            // Busy from here to the end of the iteration: everything but the wait in poll.
            let busy = Instant::now();
            loop {
                match self.rx.try_recv() {
                    Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => {
                        self.durable.commit(&mut self.engine, &self.stats);
                        tracing::info!("worker stopped");
                        return Ok(());
                    }
                    Ok(c) => {
                        apply_control(&mut self.engine, &mut self.durable, &mut self.authority, c)
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.authority.refresh();
            let now = Time::now();
            // Receive one batch (at most `batch` frames), round-robin over the ready sockets.
            // Replies are written into `tx_bufs[k]` for the k-th pending reply.
            let mut received = 0;
            while received < self.batch && ready.iter().any(|r| *r) {
                #[allow(clippy::needless_range_loop)]
                // `i` indexes sockets, `ready` and RxMeta alike
                for i in 0..self.sockets.len() {
                    if !ready[i] || received >= self.batch {
                        continue;
                    }
                    match self.sockets[i].recv_from(&mut rx_buf) {
                        Ok((len, SocketAddr::V4(src))) => {
                            received += 1;
                            let meta = RxMeta { iface: i, src };
                            let k = pending.len();
                            let out = self.engine.handle(
                                now,
                                &meta,
                                &rx_buf[..len],
                                &mut tx_bufs[k],
                                &self.authority,
                            );
                            // One worker per backend in this version, so Handoff cannot occur.
                            if let Outcome::Reply { len, dest, msg } = out {
                                pending.push(Pending {
                                    iface: i,
                                    len,
                                    dest,
                                    durable: msg == MessageType::Ack,
                                });
                            }
                        }
                        Ok((_, SocketAddr::V6(_))) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready[i] = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            self.stats.recv_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, "recv failed");
                            ready[i] = false;
                        }
                    }
                }
            }
            self.engine.tick(now);
            // Replies that promise nothing durable (OFFER, NAK) need not wait for the flush.
            for (k, p) in pending.iter().enumerate() {
                if !p.durable {
                    self.send(p, &tx_bufs[k][..p.len]);
                }
            }
            let durable = self.durable.commit(&mut self.engine, &self.stats);
            let acks = pending.iter().filter(|p| p.durable);
            if durable {
                for (k, p) in pending.iter().enumerate() {
                    if p.durable {
                        self.send(p, &tx_bufs[k][..p.len]);
                    }
                }
            } else {
                self.stats
                    .withheld_replies
                    .fetch_add(acks.count() as u64, Ordering::Relaxed);
            }
            pending.clear();
            if received > 0 {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
            }
            self.durable.maybe_compact(&self.engine, &self.stats);
            self.stats.record_busy(busy);
        }
    }

    /// Call `hook` with the bindings of every successful journal commit (see [`CommitHook`]).
    pub fn set_commit_hook(&mut self, hook: CommitHook) {
        self.durable.hook = Some(hook);
    }

    fn send(&self, p: &Pending, frame: &[u8]) {
        let sock = &self.sockets[p.iface];
        let to = match p.dest {
            Destination::Relay(a) => a,
            Destination::Unicast(a) => SocketAddrV4::new(*a.ip(), self.client_port),
            Destination::Broadcast { .. } => {
                SocketAddrV4::new(Ipv4Addr::BROADCAST, self.client_port)
            }
        };
        if let Err(e) = sock.send_to(frame, SocketAddr::V4(to)) {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, %to, "send failed");
        }
    }
}

/// The durable side of a worker: its journal and how to reopen it. Shared by the UDP and the
/// AF_XDP workers so that both commit, recover from a failed flush and compact the same way.
pub(crate) struct Durable {
    journal: Journal,
    cfg: JournalConfig,
    /// Told about every committed binding.
    pub(crate) hook: Option<CommitHook>,
    /// The bindings of the commit in progress (reused).
    committed: Vec<Binding>,
    /// Continuations of control tasks waiting for the next commit.
    after: Vec<AfterCommit>,
}

impl Durable {
    /// `journal` as opened with `cfg` (kept to reopen it after a failure).
    pub(crate) fn new(journal: Journal, cfg: JournalConfig) -> Durable {
        Durable {
            journal,
            cfg,
            hook: None,
            committed: Vec::new(),
            after: Vec::new(),
        }
    }

    /// Journal and commit the engine's queued updates, then tell the commit hook and the
    /// waiting task continuations. False if the commit failed.
    pub(crate) fn commit(&mut self, engine: &mut Engine, stats: &WorkerStats) -> bool {
        let ok = self.commit_journal(engine, stats);
        if ok && !self.committed.is_empty() {
            if let Some(h) = self.hook.as_mut() {
                h(&self.committed);
            }
        }
        self.committed.clear();
        for f in self.after.drain(..) {
            f(ok);
        }
        ok
    }

    /// Journal and commit the engine's queued updates. False if that failed: the caller withholds
    /// the batch's ACKs (clients will retry).
    fn commit_journal(&mut self, engine: &mut Engine, stats: &WorkerStats) -> bool {
        let mut n = 0u64;
        let mut failed = None;
        for b in engine.take_updates() {
            n += 1;
            if let Err(e) = self.journal.append(&b) {
                failed = Some(e);
            }
            if self.hook.is_some() {
                self.committed.push(b);
            }
        }
        if n == 0 && self.journal.pending() == 0 {
            return failed.is_none();
        }
        let t = Instant::now();
        let res = self.journal.commit();
        let ns = t.elapsed().as_nanos() as u64;
        match (failed, res) {
            (None, Ok(_)) => {
                stats.record_commit(ns, n);
                true
            }
            (Some(e), _) | (None, Err(e)) => {
                tracing::error!(error = %e, records = n,
                    "journal commit failed: withholding this batch's ACKs (clients will retry)");
                self.reopen(engine);
                false
            }
        }
    }

    /// After a failed write or sync the journal refuses further use: reopen it and write a full
    /// snapshot of the in-memory bindings, which also covers the batch whose commit failed.
    fn reopen(&mut self, engine: &Engine) {
        match Journal::open(self.cfg.clone()) {
            Ok((j, _)) => {
                // The old journal's Drop waits for its compaction thread, if any.
                self.journal = j;
                match self
                    .journal
                    .compact(live_bindings(engine))
                    .and_then(|_| self.journal.wait_compaction())
                {
                    Ok(_) => {
                        tracing::warn!("journal reopened and rewritten from memory after a failure")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "journal reopened but the snapshot failed; will retry")
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal cannot be reopened; ACKs stay withheld until it can")
            }
        }
    }

    /// Start a background compaction if the journal has grown enough and none is running.
    pub(crate) fn maybe_compact(&mut self, engine: &Engine, stats: &WorkerStats) {
        if !self.journal.needs_compaction() || self.journal.compaction_running() {
            return;
        }
        match self.journal.compact(live_bindings(engine)) {
            Ok(()) => {
                stats.compactions.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "journal compaction failed to start"),
        }
    }
}

/// Every binding worth keeping in a snapshot (offer holds are never durable).
pub(crate) fn live_bindings(engine: &Engine) -> Vec<Binding> {
    engine.durable_bindings().copied().collect()
}

/// Pool usage of every scope of `engine`, in settings order (what [`Control::Pools`] answers).
/// Bindings are counted as durable ones: an address held by an offer counts as the binding the
/// offer replaced.
pub fn pool_rows(engine: &Engine) -> Vec<PoolRow> {
    (0..engine.settings().scopes.len())
        .filter_map(|i| pool_row(engine, i))
        .collect()
}

/// Pool usage of scope `i` of `engine` (see [`pool_rows`]); `None` if there is no such scope.
pub fn pool_row(engine: &Engine, i: usize) -> Option<PoolRow> {
    let s = engine.settings().scopes.get(i)?;
    let (free, size) = engine.pool_usage(i).unwrap_or((0, 0));
    let (_, backup) = engine.pool_counts(i);
    // Outside failover an address is free again as soon as its lease ends: it is in `free`
    // then, whatever its binding's state says.
    let waits = engine.is_replicated(i);
    let (mut active, mut expired, mut abandoned) = (0, 0, 0);
    for b in engine.scope_bindings(i) {
        match b.state {
            BindingState::Active => active += 1,
            BindingState::Expired | BindingState::Released | BindingState::Reset => {
                expired += u64::from(waits)
            }
            BindingState::Abandoned => abandoned += 1,
            BindingState::Free | BindingState::Backup | BindingState::Offered => {}
        }
    }
    Some(PoolRow {
        scope: s.name.clone(),
        free,
        size,
        active,
        backup,
        expired,
        abandoned,
    })
}

/// Apply a control message that reads or reconfigures the engine (both workers share this;
/// `Shutdown` is handled by the worker loop itself).
pub(crate) fn apply_control<A: Authority>(
    engine: &mut Engine,
    durable: &mut Durable,
    authority: &mut A,
    c: Control,
) {
    match c {
        Control::Run(task) => {
            if let Some(after) = task(engine, Time::now()) {
                durable.after.push(after);
            }
        }
        Control::Reload {
            settings,
            iface_scopes,
            replicated,
            authority: layout,
        } => {
            // Engine and authority change in one step: no request sees one without the other.
            if let Some(r) = replicated {
                engine.set_replicated_only(r);
            }
            engine.reconfigure(settings, iface_scopes);
            if let Some(l) = layout {
                authority.reconfigure(l);
            }
            tracing::info!("worker now serves the reloaded configuration");
        }
        Control::Leases(tx) => {
            let rows = engine
                .bindings()
                .filter(|(_, b)| b.state != BindingState::Free || !b.client.is_empty())
                .map(|(s, b)| LeaseRow {
                    scope: s.to_string(),
                    binding: *b,
                })
                .collect();
            let _ = tx.send(rows);
        }
        Control::Pools(tx) => {
            let _ = tx.send(pool_rows(engine));
        }
        Control::Shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::ClientKey;
    use crate::engine::Stats;
    use crate::scope::{AddrRange, OptionSet, Scope, Subnet};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

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
            lease_time: 3600,
            renew_time: None,
            rebind_time: None,
            options: OptionSet::new(),
            policies: vec![],
            authoritative: true,
        }
    }

    fn binding(addr: &str, state: BindingState, client: u8) -> Binding {
        let mut b = Binding::empty(ip(addr), state);
        if client != 0 {
            b.client = ClientKey::new(&[1, 0, 0, 0, 0, 0, client]);
            b.expires = 2_000_000_000;
        }
        b
    }

    /// Every state lands in its own column, per scope, and the columns add up to the pool size.
    #[test]
    fn pool_rows_count_each_state_per_scope() {
        let settings = ServerSettings {
            server_id: ip("10.0.0.1"),
            global_options: OptionSet::new(),
            scopes: vec![
                scope("lan", "10.0.0.0", "10.0.0.100", "10.0.0.119"),
                scope("lab", "10.1.0.0", "10.1.0.10", "10.1.0.14"),
            ],
            offer_hold_secs: 30,
            decline_probation_secs: 600,
            duplicate_window_ms: 2000,
        };
        let mut e = Engine::new(
            Arc::new(settings),
            vec![vec![0]],
            0,
            1,
            Arc::new(Stats::default()),
        );
        e.set_replicated(vec!["lan".into()]);
        for a in ["10.0.0.100", "10.0.0.101", "10.0.0.102", "10.0.0.103"] {
            e.install(binding(a, BindingState::Backup, 0));
        }
        e.install(binding("10.0.0.110", BindingState::Active, 1));
        e.install(binding("10.0.0.111", BindingState::Active, 2));
        e.install(binding("10.0.0.112", BindingState::Expired, 3));
        e.install(binding("10.0.0.113", BindingState::Released, 4));
        e.install(binding("10.0.0.114", BindingState::Abandoned, 0));
        e.install(binding("10.1.0.10", BindingState::Active, 5));
        e.install(binding("10.1.0.11", BindingState::Released, 6));

        let rows = pool_rows(&e);
        assert_eq!(rows.len(), 2);
        let lan = &rows[0];
        assert_eq!(lan.scope, "lan");
        assert_eq!(lan.size, 20);
        assert_eq!(lan.backup, 4);
        assert_eq!(lan.active, 2);
        assert_eq!(lan.expired, 2, "EXPIRED and RELEASED wait for the partner");
        assert_eq!(lan.abandoned, 1);
        // 20 addresses: 2 active, 2 waiting, 1 abandoned; the other 15 are unleased, 4 in BACKUP.
        assert_eq!(lan.free, 15);
        assert_eq!(
            lan.free + lan.active + lan.expired + lan.abandoned,
            lan.size
        );
        // Not shared with a partner: the released address is free at once, not waiting.
        let lab = &rows[1];
        assert_eq!(lab.scope, "lab");
        assert_eq!(
            (
                lab.size,
                lab.free,
                lab.active,
                lab.backup,
                lab.expired,
                lab.abandoned
            ),
            (5, 4, 1, 0, 0, 0)
        );
    }
}
