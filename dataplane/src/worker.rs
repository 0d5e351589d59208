//! The worker loop over the UDP backend: receive a batch, answer it with the engine, journal and
//! commit the batch's binding changes, and only then send the batch's replies.
//!
//! The worker owns its [`Engine`], its [`Journal`] and its sockets; nothing is shared with other
//! threads but the counters (atomics) and a control channel ([`Control`]) through which the daemon
//! reloads the configuration, asks for the lease list, or stops the worker. A `mio` waker makes
//! the worker notice control messages at once.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use crossbeam_queue::ArrayQueue;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::authority::Authority;
use crate::binding::{Binding, BindingState};
use crate::engine::{Destination, Engine, Outcome, RxMeta};
use crate::journal::{Journal, JournalConfig, JournalError, Wake};
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
/// journal order), after the commit: failover replicates them from here. Also called with no
/// bindings when a poll of the journal made nothing durable (a hook with work held back can
/// hand it over then).
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
    /// Where a request's time in the server goes, stage by stage.
    pub stages: Stages,
    /// Times a worker came out of `poll(2)` (frames, a control message, a handoff, a finished
    /// sync or a timer).
    pub wakeups: AtomicU64,
    /// Wake-ups that found nothing to do (no frame, no control message, no batch made durable;
    /// AF_XDP backend).
    pub idle_wakeups: AtomicU64,
    /// UDP backend, several workers: requests a worker received for another worker's client
    /// and passed to it (the steering program could not key them).
    pub handoff_out: AtomicU64,
    /// UDP backend: requests a worker took from its handoff queue.
    pub handoff_in: AtomicU64,
    /// UDP backend: requests dropped because the owner's handoff queue was full (the client
    /// retries).
    pub handoff_full: AtomicU64,
}

/// Upper bounds, in microseconds, of the buckets of a [`StageHistogram`] (increasing).
pub const STAGE_BUCKETS_US: [u64; 16] = [
    2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1_000, 2_000, 5_000, 20_000,
];

/// A lock-free histogram of one stage's durations (atomic adds only).
#[derive(Debug, Default)]
pub struct StageHistogram {
    /// Per bucket of [`STAGE_BUCKETS_US`] (not cumulative), the last slot for longer ones.
    pub buckets: [AtomicU64; STAGE_BUCKETS_US.len() + 1],
    /// Sum of the durations, in nanoseconds.
    pub sum_nanos: AtomicU64,
}

impl StageHistogram {
    /// Count one duration.
    pub fn record(&self, d: Duration) {
        self.record_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Count one duration of `nanos` nanoseconds.
    pub fn record_nanos(&self, nanos: u64) {
        let us = nanos.div_ceil(1000);
        let slot = STAGE_BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The upper bound, in microseconds, of the bucket holding quantile `q` (0..=1) of the
    /// durations counted; `u64::MAX` if it lies beyond the last bound, `None` if nothing was
    /// counted.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        quantile_of(&self.counts(), q)
    }

    /// A copy of the bucket counts.
    pub fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// The upper bound, in microseconds, of the bucket of `counts` (per bucket of
/// [`STAGE_BUCKETS_US`], not cumulative) that holds quantile `q`; `u64::MAX` past the last
/// bound, `None` if all counts are 0.
pub fn quantile_of(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile, 1-based: at least the first duration.
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(STAGE_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX));
        }
    }
    Some(u64::MAX)
}

/// The stages of a request's time in the server (all workers together).
///
/// A DISCOVER's time is `queue_wait + engine + transmit`; a REQUEST's adds `ack_wait` (its
/// batch's journal write and the wait for the `fdatasync` that covers it).
#[derive(Debug, Default)]
pub struct Stages {
    /// Frame steered by the XDP program → taken from the RX ring by its worker (per frame;
    /// AF_XDP only: the XDP program stamps each frame it redirects).
    pub queue_wait: StageHistogram,
    /// Answering one batch of frames, from the first taken to the last reply written (per batch).
    pub engine: StageHistogram,
    /// The journal `write(2)` of a batch's records (per batch with records).
    pub journal_write: StageHistogram,
    /// One `fdatasync` (per sync; several batches share one under load).
    pub fdatasync: StageHistogram,
    /// An ACK held for durability: its batch written → the sync covering it seen (per batch
    /// with ACKs; includes waiting for a sync already running).
    pub ack_wait: StageHistogram,
    /// Putting a batch's replies on the TX ring and kicking it (per kick).
    pub transmit: StageHistogram,
}

impl Stages {
    /// The stages by name, as metrics and `tandemctl stats` show them.
    pub fn named(&self) -> [(&'static str, &StageHistogram); 6] {
        [
            ("queue_wait", &self.queue_wait),
            ("engine", &self.engine),
            ("journal_write", &self.journal_write),
            ("fdatasync", &self.fdatasync),
            ("ack_wait", &self.ack_wait),
            ("transmit", &self.transmit),
        ]
    }
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

    /// The counters of several workers added up (the longest commit is the longest of all).
    pub fn total<'a>(all: impl IntoIterator<Item = &'a WorkerStats>) -> WorkerStats {
        let t = WorkerStats::default();
        let add = |to: &AtomicU64, from: &AtomicU64| {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        for w in all {
            for (to, from) in [
                (&t.batches, &w.batches),
                (&t.commits, &w.commits),
                (&t.records, &w.records),
                (&t.commit_nanos, &w.commit_nanos),
                (&t.withheld_replies, &w.withheld_replies),
                (&t.send_errors, &w.send_errors),
                (&t.recv_errors, &w.recv_errors),
                (&t.compactions, &w.compactions),
                (&t.busy_nanos, &w.busy_nanos),
                (&t.wakeups, &w.wakeups),
                (&t.idle_wakeups, &w.idle_wakeups),
                (&t.handoff_out, &w.handoff_out),
                (&t.handoff_in, &w.handoff_in),
                (&t.handoff_full, &w.handoff_full),
            ] {
                add(to, from);
            }
            t.commit_nanos_max.fetch_max(
                w.commit_nanos_max.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            for (to, from) in t.commit_buckets.iter().zip(&w.commit_buckets) {
                add(to, from);
            }
            for ((_, to), (_, from)) in t.stages.named().iter().zip(w.stages.named().iter()) {
                add(&to.sum_nanos, &from.sum_nanos);
                for (a, b) in to.buckets.iter().zip(&from.buckets) {
                    add(a, b);
                }
            }
        }
        t
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
    /// The handle's waker (the journal's sync thread wakes the worker with it).
    waker: Arc<Waker>,
    /// With several workers: the handoff queues ([`Worker::set_handoff`]).
    handoff: Option<UdpHandoff>,
    /// The CPU to pin the worker's thread to ([`Worker::set_core`]).
    core: Option<usize>,
}

/// A request one UDP worker received for another worker's client.
#[derive(Debug)]
pub struct HandedDatagram {
    /// Interface index (as in [`RxMeta`]).
    iface: usize,
    /// Where it came from.
    src: SocketAddrV4,
    /// The UDP payload.
    data: Vec<u8>,
}

/// One bounded lock-free queue per UDP worker, into which the other workers put the requests
/// they received for its clients (the [`RxMeta`] path the steering program could not decide).
pub type HandoffInbox = Arc<ArrayQueue<HandedDatagram>>;

/// The inboxes of `workers` UDP workers, `slots` requests each.
pub fn udp_handoff_inboxes(workers: usize, slots: usize) -> Vec<HandoffInbox> {
    (0..workers)
        .map(|_| Arc::new(ArrayQueue::new(slots.max(1))))
        .collect()
}

/// A UDP worker's view of the handoff queues.
struct UdpHandoff {
    me: usize,
    inboxes: Vec<HandoffInbox>,
    wakers: Vec<Arc<Waker>>,
    /// Workers handed something in this batch (woken once at its end).
    to_wake: Vec<bool>,
}

/// An ACK waiting for its batch to be durable (a copy of the reply: the batch's buffers are
/// reused by the next batch).
struct HeldReply {
    /// The batch's journal mark ([`Durable::write`]).
    mark: u64,
    /// When the batch was written.
    at: Instant,
    reply: Pending,
    frame: Vec<u8>,
}

#[derive(Clone, Copy)]
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
                waker: waker.clone(),
                handoff: None,
                core: None,
            },
            WorkerHandle::from_parts(tx, waker),
        ))
    }

    /// The waker of this worker (for the other workers' [`Worker::set_handoff`]).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Join a group of workers as worker `me`: `inboxes` from [`udp_handoff_inboxes`] and
    /// every worker's [`waker`](Worker::waker), both indexed by worker. A request for another
    /// worker's client (see [`Outcome::Handoff`]) is put in that worker's inbox.
    pub fn set_handoff(&mut self, me: usize, inboxes: Vec<HandoffInbox>, wakers: Vec<Arc<Waker>>) {
        let n = inboxes.len();
        self.handoff = Some(UdpHandoff {
            me,
            inboxes,
            wakers,
            to_wake: vec![false; n],
        });
    }

    /// Pin the worker's thread to CPU `core` when it starts (`None`: unpinned).
    pub fn set_core(&mut self, core: Option<usize>) {
        self.core = core;
    }

    fn pin(&self) {
        let Some(id) = self.core else { return };
        let worker = self.engine.worker();
        if core_affinity::set_for_current(core_affinity::CoreId { id }) {
            tracing::info!(worker, core = id, "UDP worker pinned");
        } else {
            tracing::warn!(
                worker,
                core = id,
                "cannot pin the UDP worker to its core; it runs unpinned"
            );
        }
    }

    /// Pass a request for worker `owner`'s client to it (counted; dropped if its queue is full).
    fn hand_off(&mut self, owner: usize, iface: usize, src: SocketAddrV4, data: &[u8]) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let Some(inbox) = h.inboxes.get(owner).filter(|_| owner != h.me) else {
            return;
        };
        let item = HandedDatagram {
            iface,
            src,
            data: data.to_vec(),
        };
        if inbox.push(item).is_ok() {
            self.stats.handoff_out.fetch_add(1, Ordering::Relaxed);
            h.to_wake[owner] = true;
        } else {
            self.stats.handoff_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wake the workers handed something in this batch.
    fn wake_handed(&mut self) {
        if let Some(h) = self.handoff.as_mut() {
            for (k, w) in h.to_wake.iter_mut().enumerate() {
                if std::mem::take(w) {
                    if let Some(waker) = h.wakers.get(k) {
                        let _ = waker.wake();
                    }
                }
            }
        }
    }

    /// True if another worker handed this one requests that wait.
    fn inbox_waiting(&self) -> bool {
        self.handoff
            .as_ref()
            .and_then(|h| h.inboxes.get(h.me))
            .is_some_and(|q| !q.is_empty())
    }

    /// Run until [`Control::Shutdown`] (or the handle is dropped).
    pub fn run(mut self) -> Result<(), WorkerError> {
        self.pin();
        let mut events = Events::with_capacity(64);
        let mut rx_buf = [0u8; FRAME_LEN];
        let mut tx_bufs = vec![[0u8; FRAME_LEN]; self.batch];
        let mut pending: Vec<Pending> = Vec::with_capacity(self.batch);
        let mut ready = vec![true; self.sockets.len()];
        let mut held: VecDeque<HeldReply> = VecDeque::new();
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let waker = self.waker.clone();
        self.durable.background_sync(Arc::new(move || {
            // A failed wake only delays the ACKs to the next wake-up.
            let _ = waker.wake();
        }));
        // Start-up: journal whatever the engine queued while loading (leases that expired while down).
        self.durable.commit(&mut self.engine, &self.stats);
        loop {
            let mut timeout = self
                .engine
                .next_timer()
                .map(|t| Duration::from_millis(t.millis_since(Time::now()).clamp(1, 1000)))
                .unwrap_or(Duration::from_secs(1));
            if let Some(d) = self.durable.deferred_deadline() {
                let left = d.saturating_duration_since(Instant::now());
                timeout = timeout.min(left.max(Duration::from_millis(1)));
            }
            let any_ready = ready.iter().any(|r| *r) || self.inbox_waiting();
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
                        let durable = self
                            .durable
                            .commit(&mut self.engine, &self.stats)
                            .then(|| self.durable.poll(&mut self.engine, &self.stats))
                            .flatten();
                        self.release(&mut held, &mut spare, durable);
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
            // First what other workers handed us (requests of our clients that reached them).
            while received < self.batch {
                let Some(d) = self
                    .handoff
                    .as_ref()
                    .and_then(|h| h.inboxes.get(h.me))
                    .and_then(|q| q.pop())
                else {
                    break;
                };
                received += 1;
                self.stats.handoff_in.fetch_add(1, Ordering::Relaxed);
                let meta = RxMeta {
                    iface: d.iface,
                    src: d.src,
                };
                let k = pending.len();
                let out = self
                    .engine
                    .handle(now, &meta, &d.data, &mut tx_bufs[k], &self.authority);
                // Never handed on again (the owner of a bucket does not change while running).
                if let Outcome::Reply { len, dest, msg } = out {
                    pending.push(Pending {
                        iface: d.iface,
                        len,
                        dest,
                        durable: msg == MessageType::Ack,
                    });
                }
            }
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
                            match out {
                                Outcome::Reply { len, dest, msg } => pending.push(Pending {
                                    iface: i,
                                    len,
                                    dest,
                                    durable: msg == MessageType::Ack,
                                }),
                                Outcome::Handoff(owner) => {
                                    self.hand_off(owner, i, src, &rx_buf[..len])
                                }
                                _ => {}
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
            if received > 0 {
                self.stats.stages.engine.record(busy.elapsed());
            }
            self.wake_handed();
            self.engine.tick(now);
            // Replies that promise nothing durable (OFFER, NAK) leave at once, never after a
            // flush; ACKs wait for the sync that covers their batch (on the journal's sync
            // thread, which wakes this loop when it is done).
            let t = Instant::now();
            let mut sent = 0;
            for (k, p) in pending.iter().enumerate() {
                if !p.durable {
                    self.send(p, &tx_bufs[k][..p.len]);
                    sent += 1;
                }
            }
            if sent > 0 {
                self.stats.stages.transmit.record(t.elapsed());
            }
            let written = Instant::now();
            let urgent = pending.iter().any(|p| p.durable);
            let mark = self.durable.write(&mut self.engine, &self.stats, urgent);
            for (k, p) in pending.iter().enumerate().filter(|(_, p)| p.durable) {
                match mark {
                    Some(mark) => {
                        let mut frame = spare.pop().unwrap_or_default();
                        frame.clear();
                        frame.extend_from_slice(&tx_bufs[k][..p.len]);
                        held.push_back(HeldReply {
                            mark,
                            at: written,
                            reply: *p,
                            frame,
                        });
                    }
                    None => {
                        self.stats.withheld_replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            self.durable.maybe_compact(&self.engine, &self.stats);
            let durable = match mark {
                Some(_) => self.durable.poll(&mut self.engine, &self.stats),
                None => None,
            };
            self.release(&mut held, &mut spare, durable);
            pending.clear();
            if received > 0 {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
            }
            self.stats.record_busy(busy);
        }
    }

    /// Sends the held ACKs that `durable` covers (`None`: the journal failed, withhold every
    /// held ACK, counted).
    fn release(
        &self,
        held: &mut VecDeque<HeldReply>,
        spare: &mut Vec<Vec<u8>>,
        durable: Option<u64>,
    ) {
        let Some(d) = durable else {
            let n = held.len() as u64;
            self.stats.withheld_replies.fetch_add(n, Ordering::Relaxed);
            spare.extend(held.drain(..).map(|h| h.frame));
            return;
        };
        let t = Instant::now();
        let mut sent = 0;
        while held.front().is_some_and(|h| h.mark <= d) {
            let Some(h) = held.pop_front() else { break };
            self.stats.stages.ack_wait.record(h.at.elapsed());
            self.send(&h.reply, &h.frame);
            spare.push(h.frame);
            sent += 1;
        }
        if sent > 0 {
            self.stats.stages.transmit.record(t.elapsed());
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
///
/// Two ways to commit: [`commit`](Durable::commit) writes and syncs before it returns (start-up,
/// shutdown, the UDP worker); [`write`](Durable::write) + [`poll`](Durable::poll) pipeline it
/// (the AF_XDP worker with [`background_sync`](Durable::background_sync)): `write` journals the
/// batch and returns its mark at once, the sync runs on the journal's sync thread, and `poll`
/// reports how far the journal is durable, running the commit hook and the task continuations
/// of every batch it covers, in journal order. Replies that confirm a binding wait for their
/// batch's mark; nothing else waits for the disk.
pub(crate) struct Durable {
    journal: Journal,
    cfg: JournalConfig,
    /// Told about every committed binding.
    pub(crate) hook: Option<CommitHook>,
    /// Continuations of control tasks waiting for the next commit.
    after: Vec<AfterCommit>,
    /// Written batches waiting to be durable, oldest first.
    waiting: VecDeque<Written>,
    /// Emptied binding lists of finished batches (kept for their allocations).
    spare: Vec<Vec<Binding>>,
    /// Wakes the worker when a background sync ends (kept to restart it after a reopen).
    wake: Option<Wake>,
    /// The oldest deferred write not yet asked to be synced, and the newest mark of those.
    deferred: Option<(Instant, u64)>,
    /// Written batches found durable so far (to tell a wake-up that finished a batch from an
    /// idle one).
    resolved: u64,
}

/// Longest a deferred journal write (nobody waits for it) stays unsynced before the worker asks
/// for a sync of its own.
pub(crate) const DEFERRED_SYNC_AFTER: Duration = Duration::from_millis(20);

/// A batch written to the journal, not yet known to be durable.
struct Written {
    /// [`Journal::durable_seq`] must reach this.
    mark: u64,
    records: u64,
    at: Instant,
    /// The batch's bindings, for the commit hook (empty without one).
    bindings: Vec<Binding>,
    after: Vec<AfterCommit>,
}

impl Durable {
    /// `journal` as opened with `cfg` (kept to reopen it after a failure).
    pub(crate) fn new(journal: Journal, cfg: JournalConfig) -> Durable {
        Durable {
            journal,
            cfg,
            hook: None,
            after: Vec::new(),
            waiting: VecDeque::new(),
            spare: Vec::new(),
            wake: None,
            deferred: None,
            resolved: 0,
        }
    }

    /// Let the journal's sync thread run `fdatasync` from now on, calling `wake` after each.
    /// Without it (or if the thread cannot start, logged) [`write`](Durable::write) syncs
    /// before it returns.
    pub(crate) fn background_sync(&mut self, wake: Wake) {
        match self.journal.start_background_sync(wake.clone()) {
            Ok(_) => self.wake = Some(wake),
            Err(e) => tracing::error!(error = %e, "journal: syncing on the worker thread"),
        }
    }

    /// Journal and commit the engine's queued updates (and everything written before), then tell
    /// the commit hook and the waiting task continuations. False if the commit failed.
    pub(crate) fn commit(&mut self, engine: &mut Engine, stats: &WorkerStats) -> bool {
        if self.write(engine, stats, true).is_none() {
            return false;
        }
        if let Err(e) = self.journal.commit() {
            self.failed(engine, &e);
            return false;
        }
        self.poll(engine, stats).is_some()
    }

    /// Journal the engine's queued updates in one `write` and return the batch's mark (see
    /// [`poll`](Durable::poll)); `None` if the journal failed (it is reopened; every reply
    /// waiting for durability must be withheld, clients will retry). `urgent`: replies wait
    /// for this batch (ACKs); a batch with task continuations is urgent too. Other batches
    /// (timers, settled acknowledgements) start no sync of their own: the next urgent one or,
    /// at the latest after [`DEFERRED_SYNC_AFTER`], [`poll`](Durable::poll) covers them.
    pub(crate) fn write(
        &mut self,
        engine: &mut Engine,
        stats: &WorkerStats,
        urgent: bool,
    ) -> Option<u64> {
        let urgent = urgent || !self.after.is_empty();
        let mut bindings = self.spare.pop().unwrap_or_default();
        let mut records = 0u64;
        let mut failed = None;
        for b in engine.take_updates() {
            records += 1;
            if let Err(e) = self.journal.append(&b) {
                failed = Some(e);
            }
            if self.hook.is_some() {
                bindings.push(b);
            }
        }
        let t = Instant::now();
        let res = match failed {
            Some(e) => Err(e),
            None if urgent => self.journal.write(),
            None => self.journal.write_deferred(),
        };
        match res {
            Ok(mark) => {
                if records > 0 {
                    stats.stages.journal_write.record(t.elapsed());
                }
                if urgent {
                    // The sync asked for covers every deferred write before it.
                    self.deferred = None;
                } else if records > 0 {
                    let since = self.deferred.map_or(t, |(since, _)| since);
                    self.deferred = Some((since, mark));
                }
                if records > 0 || !self.after.is_empty() {
                    self.waiting.push_back(Written {
                        mark,
                        records,
                        at: t,
                        bindings,
                        after: std::mem::take(&mut self.after),
                    });
                } else {
                    self.spare.push(bindings);
                }
                Some(mark)
            }
            Err(e) => {
                self.spare.push(bindings);
                self.failed(engine, &e);
                None
            }
        }
    }

    /// How far the journal is durable (a mark at or below it is), after collecting a finished
    /// background sync; runs the commit hook and continuations of every batch it now covers.
    /// `None` if the journal failed (reopened; withhold every waiting reply).
    pub(crate) fn poll(&mut self, engine: &mut Engine, stats: &WorkerStats) -> Option<u64> {
        if let Some((since, mark)) = self.deferred {
            if self.journal.durable_seq() >= mark {
                self.deferred = None;
            } else if since.elapsed() >= DEFERRED_SYNC_AFTER {
                self.deferred = None;
                if let Err(e) = self.journal.sync_soon() {
                    self.failed(engine, &e);
                    return None;
                }
            }
        }
        match self.journal.poll_sync() {
            Ok(Some(sync_nanos)) => stats.stages.fdatasync.record_nanos(sync_nanos),
            Ok(None) => {}
            Err(e) => {
                self.failed(engine, &e);
                return None;
            }
        }
        let durable = self.journal.durable_seq();
        let mut hooked = false;
        while self.waiting.front().is_some_and(|w| w.mark <= durable) {
            let Some(mut w) = self.waiting.pop_front() else {
                break;
            };
            if w.records > 0 {
                let ns = u64::try_from(w.at.elapsed().as_nanos()).unwrap_or(u64::MAX);
                stats.record_commit(ns, w.records);
            }
            if !w.bindings.is_empty() {
                if let Some(h) = self.hook.as_mut() {
                    h(&w.bindings);
                }
            }
            for f in w.after.drain(..) {
                f(true);
            }
            w.bindings.clear();
            self.spare.push(w.bindings);
            self.resolved += 1;
            hooked = true;
        }
        if !hooked {
            // Lets the hook hand over what it could not before (a full ring downstream).
            if let Some(h) = self.hook.as_mut() {
                h(&[]);
            }
        }
        Some(durable)
    }

    /// Written batches found durable so far (grows by one per batch).
    pub(crate) fn resolved(&self) -> u64 {
        self.resolved
    }

    /// When [`poll`](Durable::poll) will ask for the sync of a deferred write, if one waits
    /// (the worker wakes up for it).
    pub(crate) fn deferred_deadline(&self) -> Option<Instant> {
        self.deferred.map(|(since, _)| since + DEFERRED_SYNC_AFTER)
    }

    /// The journal failed: log, fail every waiting batch's continuations, reopen.
    fn failed(&mut self, engine: &Engine, e: &JournalError) {
        let batches = self.waiting.len();
        tracing::error!(error = %e, batches,
            "journal commit failed: withholding the ACKs waiting for it (clients will retry)");
        for mut w in self.waiting.drain(..) {
            for f in w.after.drain(..) {
                f(false);
            }
        }
        for f in self.after.drain(..) {
            f(false);
        }
        self.reopen(engine);
    }

    /// After a failed write or sync the journal refuses further use: reopen it and write a full
    /// snapshot of the in-memory bindings, which also covers the batch whose commit failed.
    fn reopen(&mut self, engine: &Engine) {
        match Journal::open(self.cfg.clone()) {
            Ok((j, _)) => {
                // The old journal's Drop waits for its compaction thread, if any.
                self.journal = j;
                if let Some(w) = self.wake.clone() {
                    if let Err(e) = self.journal.start_background_sync(w) {
                        tracing::error!(error = %e, "journal: syncing on the worker thread");
                    }
                }
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
            ddns: None,
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

    fn one_scope_engine() -> Engine {
        let settings = ServerSettings {
            server_id: ip("10.0.0.1"),
            global_options: OptionSet::new(),
            scopes: vec![scope("lan", "10.0.0.0", "10.0.0.100", "10.0.0.119")],
            offer_hold_secs: 30,
            decline_probation_secs: 600,
            duplicate_window_ms: 2000,
        };
        Engine::new(
            Arc::new(settings),
            vec![vec![0]],
            0,
            1,
            Arc::new(Stats::default()),
        )
    }

    /// The addresses the commit hook was told about, in order.
    type Seen = Arc<std::sync::Mutex<Vec<Ipv4Addr>>>;

    /// A `Durable` over a fresh journal at `cfg` with the background sync started: the commit
    /// hook records the addresses it is told about, the wake-ups arrive on the receiver.
    fn pipelined(cfg: &JournalConfig) -> (Durable, Seen, crossbeam_channel::Receiver<()>) {
        let (j, _) = Journal::open(cfg.clone()).expect("journal");
        let mut d = Durable::new(j, cfg.clone());
        let seen: Seen = Arc::default();
        let s2 = seen.clone();
        d.hook = Some(Box::new(move |bs: &[Binding]| {
            s2.lock().unwrap().extend(bs.iter().map(|b| b.addr))
        }));
        let (wake_tx, wake_rx) = crossbeam_channel::unbounded::<()>();
        d.background_sync(Arc::new(move || {
            let _ = wake_tx.send(());
        }));
        (d, seen, wake_rx)
    }

    /// The pipelined commit: `write` returns growing marks at once; the commit hook and the
    /// task continuations run only from `poll`, once the sync thread made their batch durable,
    /// in journal order; the sync thread wakes the worker for each sync.
    #[test]
    fn pipelined_commit_runs_hook_and_continuations_only_once_durable() {
        use std::sync::Mutex;
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = JournalConfig::new(dir.path(), 0);
        let (mut d, seen, wake_rx) = pipelined(&cfg);
        let stats = WorkerStats::default();
        let mut e = one_scope_engine();
        let done = Arc::new(Mutex::new(Vec::<bool>::new()));
        e.install(binding("10.0.0.110", BindingState::Active, 1));
        let d2 = done.clone();
        d.after
            .push(Box::new(move |ok| d2.lock().unwrap().push(ok)));
        let m1 = d.write(&mut e, &stats, true).expect("write");
        e.install(binding("10.0.0.111", BindingState::Active, 2));
        let m2 = d.write(&mut e, &stats, false).expect("write");
        assert!(m2 > m1, "marks grow: {m1} then {m2}");
        assert!(seen.lock().unwrap().is_empty(), "hook ran before poll");
        assert!(
            done.lock().unwrap().is_empty(),
            "continuation ran before poll"
        );
        // The second batch waits for nobody: no sync of its own until DEFERRED_SYNC_AFTER.
        let deadline = d.deferred_deadline().expect("a deferred write is pending");
        assert!(deadline <= Instant::now() + DEFERRED_SYNC_AFTER);
        let until = Instant::now() + Duration::from_secs(10);
        let mut wakes = 0;
        loop {
            let durable = d.poll(&mut e, &stats).expect("journal healthy");
            if durable >= m2 {
                break;
            }
            assert!(Instant::now() < until, "never durable: {durable} < {m2}");
            // The sync thread wakes the worker after each sync; the deferred one is asked
            // for by poll once its deadline passed.
            if wake_rx.recv_timeout(Duration::from_millis(5)).is_ok() {
                wakes += 1;
            }
        }
        assert!(wakes >= 1, "the sync thread never woke the worker");
        assert!(d.deferred_deadline().is_none());
        assert_eq!(
            *seen.lock().unwrap(),
            vec![ip("10.0.0.110"), ip("10.0.0.111")]
        );
        assert_eq!(*done.lock().unwrap(), vec![true]);
        assert_eq!(stats.commits.load(Ordering::Relaxed), 2);
        assert!(stats.stages.fdatasync.counts().iter().sum::<u64>() >= 1);
        assert_eq!(stats.stages.journal_write.counts().iter().sum::<u64>(), 2);
        drop(d);
        let (_, rec) = Journal::open(cfg).expect("reopen");
        assert_eq!(rec.bindings.len(), 2);
    }

    /// A deferred batch (nobody waits for it) starts no sync; the next urgent batch's sync covers
    /// it, and its commit hook runs then, before the urgent batch's.
    #[test]
    fn an_urgent_batch_carries_the_deferred_ones_before_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut d, seen, wake_rx) = pipelined(&JournalConfig::new(dir.path(), 0));
        let stats = WorkerStats::default();
        let mut e = one_scope_engine();
        e.install(binding("10.0.0.112", BindingState::Active, 3));
        let lazy = d.write(&mut e, &stats, false).expect("write");
        assert!(d.deferred_deadline().is_some());
        // No sync was asked for (only poll would, after DEFERRED_SYNC_AFTER): nothing wakes
        // the worker, nothing becomes durable.
        assert!(wake_rx.recv_timeout(Duration::from_millis(5)).is_err());
        assert!(stats.stages.fdatasync.counts().iter().all(|&n| n == 0));
        e.install(binding("10.0.0.113", BindingState::Active, 4));
        let urgent = d.write(&mut e, &stats, true).expect("write");
        assert!(d.deferred_deadline().is_none(), "the urgent sync covers it");
        wake_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the urgent batch's sync ends");
        assert!(d.poll(&mut e, &stats).expect("healthy") >= urgent);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![ip("10.0.0.112"), ip("10.0.0.113")]
        );
        assert!(urgent > lazy);
        assert_eq!(stats.stages.fdatasync.counts().iter().sum::<u64>(), 1);
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
