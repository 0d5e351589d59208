//! The DNS updater (issue #16): publishes and withdraws the names of DHCP clients (RFC 2136
//! UPDATE signed with TSIG, RFC 4703 conflict resolution, all from `tandem_ddns`) on threads of
//! its own, so a slow or dead DNS server never slows a lease down.
//!
//! [`Ddns::start`] gives the running updater. The daemon feeds it [`Event`]s through
//! [`Ddns::sender`] (bounded; producers `try_send` and report a full channel with
//! [`Ddns::note_dropped`]): names at ACK ([`Event::Granted`]), renewals ([`Event::Renewed`]) and
//! ends of leases ([`Event::Ended`]), its own and its failover partner's. Failover reads back
//! the name and DDNS flags of an address with [`Ddns::name_of`].
//!
//! # What it keeps
//!
//! One entry per address that has a name: the scope, the name and client identity (the DHCID is
//! computed over both), the lease's expiry, who granted it ([`Granter`]), the wanted records,
//! what DNS holds of ours (nothing, A + PTR, PTR only, or not known for sure: an add that got
//! no answer, or a name the partner published), and the pending operation: add, remove, or
//! replace (remove the old name with its old DHCID, then add the new one), with attempts, next
//! try and last error.
//!
//! * **Responsibility.** The server that granted (or last renewed) a lease updates DNS for it.
//!   A name the partner granted is only recorded; at its end it is removed here only when
//!   `takeover(scope)` says this server acts for the partner (PARTNER-DOWN, or no partner),
//!   else forgotten (the partner removes it). A lease whose expiry passes with no renewal or end
//!   seen is treated as ended then (a backstop; the same rule applies).
//! * **Retries.** Timeouts, network errors, SERVFAIL, REFUSED, NOTAUTH and TSIG errors (BADSIG,
//!   BADKEY, BADTIME: logged as key problems) are retried with a backoff from `retry_min`
//!   doubling to `retry_max`. A server that does not answer is marked down with the same
//!   backoff: while it is down one update at a time probes it and the others wait (no attempt
//!   counted), so thousands of names waiting for a dead server cost no timeouts; when it answers
//!   again they all go. Servers are tried in order and the first that answers wins.
//! * **Conflicts.** When RFC 4703 finds the name held by another client's DHCID, the name is
//!   not published: logged once at warn, counted, never retried for that name (a new name, or
//!   a new lease, starts afresh).
//! * **Bounds.** At most `queue_max` entries with pending work: a grant beyond that is dropped,
//!   counted (`dropped`, reason `queue_full`) and logged at most every 10 s. Ends and renewals
//!   are never dropped here (they add no entry).
//!
//! # Persistence, and why repeating work is safe
//!
//! The entries (pending work and what is published) are kept in `state_dir`: a snapshot,
//! `ddns.state`, and a journal of the changes since, `ddns.journal` (JSON lines; see
//! `state.rs`). Every 200 ms while pending work or published records changed, the changed
//! entries are appended to the journal and `fdatasync`ed; other changes (an expiry moved by a
//! renewal, the next try of a waiting update) go with the next append, and at least every 10 s.
//! The cost is that of what changed, not of the table: under load the updater writes a few
//! hundred bytes per changed name, not the whole table five times a second. When the journal
//! holds more lines than four times the entries (at least 65 536), a new snapshot replaces both
//! files; so does [`Ddns::stop`]. [`Ddns::start`] loads the snapshot, replays the journal and
//! resumes the pending work. A file that cannot be read or parsed is renamed aside
//! (`ddns.state.bad-<unix time>`, `ddns.journal.bad-<unix time>`) with an error line, and the
//! updater starts without it.
//!
//! A crash can therefore lose the last fraction of a second, or make an update run twice (it
//! was sent but its success not yet saved). Running one twice is harmless because every
//! operation is idempotent and conditioned on the client's DHCID (RFC 4703): a repeated add
//! finds the name in use with our DHCID and replaces the A with the same address; a repeated
//! removal deletes the A, the DHCID and the PTR only where our DHCID is still there, so it never
//! deletes records another client (or the partner, for another client) wrote meanwhile. An add
//! that was sent without an answer is remembered as "maybe published", so an end that follows
//! still removes it. Conversely nothing is lost by the throttle beyond what a crash loses
//! anyway: the next renewal with a name publishes it again.
//!
//! # Threads
//!
//! `tandem-ddns` owns the table and handles events, results, the clock and status requests;
//! four `tandem-ddns-dns` threads run the DNS exchanges ([`tandem_ddns::Client`], blocking);
//! `tandem-ddns-save` writes the snapshot and the journal. The DNS and save threads run
//! [`BACKGROUND_NICE`] nicer than the daemon, so a CPU-bound server serves leases first and
//! publishes names when it has CPU to spare; the table thread runs [`TABLE_NICE`] nicer, so it
//! never holds back a worker or a journal sync woken on its CPU. All are created by
//! [`Ddns::start`] on the calling thread, so they share its network namespace.

#![forbid(unsafe_code)]

mod dns;
mod state;
mod table;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_dataplane::scope::Subnet;
use tandem_ddns::{ConflictMode, Name, TsigKey};

use table::{Counts, Job, JobResult, Reason, Stats, Table};

/// Capacity of the event channel ([`Ddns::sender`]).
pub const EVENT_CHANNEL: usize = 65_536;
/// Name of the state file in [`DdnsConfig::state_dir`].
pub const STATE_FILE: &str = "ddns.state";
/// Name of the journal of changes since the snapshot, beside [`STATE_FILE`].
pub const JOURNAL_FILE: &str = "ddns.journal";
/// Threads running DNS exchanges (updates in flight at once).
const DNS_THREADS: usize = 4;
/// Most entries listed by [`Ddns::status`].
const STATUS_ENTRIES: usize = 1000;
/// Save at most this often while pending work changes.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// Save at most this often while only expiries change.
const SAVE_EXPIRY_EVERY: Duration = Duration::from_secs(10);
/// A new snapshot when the journal holds more lines than this many times the entries...
const COMPACT_FACTOR: usize = 4;
/// ... and at least this many.
const COMPACT_MIN_LINES: usize = 65_536;

/// How much nicer than the daemon the DNS exchange and save threads run: on a busy machine the
/// workers and the failover link come first, and DNS work waits in the queue until there is CPU
/// to spare (the table thread, which takes the events, runs only [`TABLE_NICE`] nicer so that
/// no event is dropped).
pub const BACKGROUND_NICE: i32 = 10;

/// How much nicer than the daemon the table thread runs. Enough that a worker or a journal's
/// sync thread woken on its CPU runs at once instead of waiting out the table thread's slice
/// (measured: a 2 ms burst of a save of a thousand new names held an `fdatasync` completion,
/// and so ACKs, that long), and little enough that it keeps up with every event: it needs
/// about 1 µs per lease, a tenth of a core at 100 000 leases/s, and gets a third of a core
/// against one busy thread of the daemon's priority.
pub const TABLE_NICE: i32 = 5;

/// Lowers the calling thread's priority by [`BACKGROUND_NICE`] (Linux nice is per thread);
/// a failure is logged and the thread goes on at the daemon's priority.
fn into_background() {
    nicer_by(BACKGROUND_NICE);
}

/// Lowers the calling thread's priority by `by`; a failure is logged and the thread goes on
/// at the daemon's priority.
fn nicer_by(by: i32) {
    let tid = rustix::thread::gettid();
    let r = rustix::process::getpriority_process(Some(tid))
        .and_then(|nice| rustix::process::setpriority_process(Some(tid), (nice + by).min(19)));
    if let Err(e) = r {
        tracing::warn!(error = %e, "ddns: cannot lower the priority of an updater thread; it runs at the daemon's");
    }
}

/// Work for the saver thread.
enum SaveJob {
    /// A snapshot of generation `generation` (and an empty journal for it).
    Snapshot {
        dir: PathBuf,
        generation: u64,
        bytes: Vec<u8>,
    },
    /// Journal lines, for the journal in `dir`.
    Append { dir: PathBuf, bytes: Vec<u8> },
}
/// How often `takeover(scope)` is asked again.
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
/// After taking a batch of events, the updater thread leaves the events channel alone this long
/// (DNS results are still taken at once), and the name feed thread sleeps this long: under load
/// they then wake a few hundred times a second for hundreds of events each, instead of once or
/// twice per lease, which cost more in wake-ups and channel locks than the events themselves.
pub(crate) const GATHER: Duration = Duration::from_millis(2);
/// The metrics [`Ddns::render_metrics`] prints are refreshed at most this often.
const METRICS_EVERY: Duration = Duration::from_millis(100);
/// How long [`Ddns::stop`] waits for updates in flight before saving.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The DNS settings of one scope.
#[derive(Clone, Debug)]
pub struct ScopeDns {
    /// Scope name (logs, status, metrics labels).
    pub scope: String,
    /// The scope's addresses: an event's address picks its scope.
    pub subnet: Subnet,
    /// Zone of the A and forward DHCID records; a client's name must lie in it.
    pub forward_zone: Name,
    /// Zone of the PTR records; the scope's `in-addr.arpa` names must lie in it.
    pub reverse_zone: Name,
    /// The servers updates go to, tried in order (the first one answering wins).
    pub servers: Vec<SocketAddr>,
    /// The TSIG key updates are signed with, if any.
    pub key: Option<TsigKey>,
    /// TTL of the records written.
    pub ttl: u32,
    /// How a name held by another client is treated.
    pub conflict: ConflictMode,
}

/// The updater's settings.
#[derive(Clone, Debug)]
pub struct DdnsConfig {
    /// The scopes with dynamic DNS.
    pub scopes: Vec<ScopeDns>,
    /// Where [`STATE_FILE`] is kept.
    pub state_dir: PathBuf,
    /// Most entries with pending work (default 65 536).
    pub queue_max: usize,
    /// First retry delay (default 1 s); doubles per failure up to `retry_max`.
    pub retry_min: Duration,
    /// Longest retry delay (default 300 s).
    pub retry_max: Duration,
    /// Longest wait for one DNS exchange (default 2 s; sent twice, half of it each).
    pub timeout: Duration,
}

impl DdnsConfig {
    /// `scopes`, state in `state_dir`, with the default bounds: 65 536 pending entries,
    /// retries from 1 s to 300 s, 2 s per exchange.
    pub fn new(scopes: Vec<ScopeDns>, state_dir: PathBuf) -> DdnsConfig {
        DdnsConfig {
            scopes,
            state_dir,
            queue_max: 65_536,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Decodes state-file bytes as [`Ddns::start`] reads them (`snapshot` as [`STATE_FILE`],
/// `journal` as [`JOURNAL_FILE`], `None` for a file that is not there), loads the entries into
/// a table with one scope covering every address, saves that table as a new snapshot and
/// decodes it again: the entries kept. Panics if the saved table does not read back the same,
/// or if decoding ever yields two entries for one address. No file is touched; this is the
/// `ddns_state` fuzz target's way in.
#[doc(hidden)]
pub fn decode_state_for_fuzzing(snapshot: Option<&[u8]>, journal: Option<&[u8]>) -> usize {
    let d = state::decode(snapshot, journal);
    assert!(
        d.loaded.entries.windows(2).all(|w| w[0].addr < w[1].addr),
        "one entry per address, in order"
    );
    let (Ok(forward_zone), Ok(reverse_zone)) = (
        Name::from_ascii("fuzz.test"),
        Name::from_ascii("in-addr.arpa"),
    ) else {
        return 0;
    };
    let cfg = DdnsConfig::new(
        vec![ScopeDns {
            scope: "fuzz".into(),
            subnet: Subnet {
                network: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
            },
            forward_zone,
            reverse_zone,
            servers: Vec::new(),
            key: None,
            ttl: 300,
            conflict: ConflictMode::Rfc4703,
        }],
        PathBuf::new(),
    );
    let mut table = Table::new(&cfg);
    table.load(d.loaded.entries, 1_800_000_000_000);
    let kept = table.len();
    let again = state::decode(Some(&table.encode(d.loaded.generation + 1)), None);
    assert!(again.unusable.is_empty(), "a saved table reads back");
    assert_eq!(
        again.loaded.entries.len(),
        kept,
        "a saved table reads back whole"
    );
    kept
}

/// The client identity a DHCID is computed over (RFC 4701 §3.3, through
/// [`tandem_ddns::Identity::for_dhcpv4`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// BOOTP hardware type.
    pub htype: u8,
    /// Hardware address (`chaddr`, `hlen` octets).
    pub hw: Vec<u8>,
    /// The client identifier (option 61, type octet included), if the client sent one.
    pub client_id: Option<Vec<u8>>,
}

impl Identity {
    /// The identity as `tandem_ddns` computes the DHCID over it.
    pub fn dhcid_input(&self) -> tandem_ddns::Identity {
        tandem_ddns::Identity::for_dhcpv4(self.htype, &self.hw, self.client_id.as_deref())
    }
}

/// Who granted (or last renewed) a lease.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Granter {
    /// This server.
    Local,
    /// The failover partner.
    Partner,
}

/// What the updater is told.
#[derive(Clone, Debug)]
pub enum Event {
    /// A lease granted or renewed with a name: publish (or keep) `fqdn → addr`.
    Granted {
        /// The leased address.
        addr: Ipv4Addr,
        /// The client's fully qualified name (in the scope's forward zone).
        fqdn: Name,
        /// The client.
        identity: Identity,
        /// End of the lease, unix seconds (0: unknown, no expiry backstop).
        expires: u32,
        /// False: the client updates its own A record, the server only the PTR.
        forward: bool,
        /// Who granted it.
        by: Granter,
    },
    /// A committed ACTIVE binding seen again (a renewal) without a name: refresh its expiry.
    Renewed {
        /// The leased address.
        addr: Ipv4Addr,
        /// End of the lease, unix seconds.
        expires: u32,
        /// Who renewed it.
        by: Granter,
    },
    /// The lease on `addr` ended (released, expired, reset, declined, freed), as committed.
    Ended {
        /// The address.
        addr: Ipv4Addr,
    },
}

/// Requests to the updater thread.
enum Ctl {
    Status(Sender<Value>),
    Reconfigure(Box<DdnsConfig>),
    Stop,
}

/// What other threads read without asking the updater thread.
#[derive(Default)]
struct Shared {
    /// Address → (name, DDNS flags), for [`Ddns::name_of`].
    names: RwLock<HashMap<Ipv4Addr, (String, u16)>>,
    metrics: Mutex<Snapshot>,
    /// Events the producers could not send (full channel).
    channel_dropped: AtomicU64,
    /// Set by the saver thread when a write failed: the updater saves again.
    save_failed: Mutex<Option<String>>,
    running: AtomicBool,
}

/// The numbers [`Ddns::render_metrics`] prints, refreshed by the updater thread.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    stats: Stats,
    queue_depth: usize,
    in_flight: usize,
    entries: usize,
    scopes: Vec<(String, Counts)>,
    servers: Vec<(SocketAddr, bool)>,
}

/// The running updater: see the [module docs](self).
pub struct Ddns {
    events: Sender<Event>,
    ctl: Sender<Ctl>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ddns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ddns")
            .field("running", &self.shared.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ddns {
    /// Loads `state_dir/ddns.state` (setting an unreadable one aside), re-queues its pending
    /// work and starts the updater threads (on this thread's network namespace).
    ///
    /// `takeover(scope)` says whether this server must also act for the names its partner
    /// granted in `scope` (true in PARTNER-DOWN, or when the scope has no partner); it is asked
    /// about once a second per scope, from the updater thread.
    ///
    /// Fails only when `state_dir` cannot be created or a thread cannot be started.
    pub fn start(
        cfg: DdnsConfig,
        takeover: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> std::io::Result<Ddns> {
        std::fs::create_dir_all(&cfg.state_dir)?;
        let now = unix_ms();
        let loaded = state::load(&cfg.state_dir, now / 1000);
        let mut table = Table::new(&cfg);
        let (generation, found) = (loaded.generation, loaded.found);
        table.load(loaded.entries, now);
        if found {
            // Start a new generation from what was read: the journal read is not appended to.
            table.mark_dirty();
        }

        let (events_tx, events) = crossbeam_channel::bounded(EVENT_CHANNEL);
        let (ctl_tx, ctl) = crossbeam_channel::unbounded();
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (result_tx, results) = crossbeam_channel::unbounded::<JobResult>();
        let (save_tx, save_rx) = crossbeam_channel::bounded::<SaveJob>(1);
        let shared = Arc::new(Shared::default());
        shared.running.store(true, Ordering::Relaxed);

        let mut workers = Vec::with_capacity(DNS_THREADS);
        for i in 0..DNS_THREADS {
            let jobs = job_rx.clone();
            let results = result_tx.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("tandem-ddns-dns{i}"))
                    .spawn(move || {
                        into_background();
                        for job in jobs {
                            if results.send(dns::execute(job)).is_err() {
                                return;
                            }
                        }
                    })?,
            );
        }
        let saver_shared = shared.clone();
        let saver = std::thread::Builder::new()
            .name("tandem-ddns-save".into())
            .spawn(move || {
                into_background();
                // A failing disk is logged once a minute, not at every try.
                let mut logged: Option<Instant> = None;
                let mut writer = state::Writer::default();
                for job in save_rx {
                    let (dir, what, r) = match job {
                        SaveJob::Snapshot {
                            dir,
                            generation,
                            bytes,
                        } => {
                            let r = writer.snapshot(&dir, generation, &bytes);
                            (dir, "the state file", r)
                        }
                        SaveJob::Append { dir, bytes } => {
                            let r = if writer.dir() == Some(dir.as_path()) {
                                writer.append(&bytes)
                            } else {
                                Err(std::io::Error::other(
                                    "the journal open is in another directory",
                                ))
                            };
                            (dir, "the journal", r)
                        }
                    };
                    if let Err(e) = r {
                        if logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                            logged = Some(Instant::now());
                            tracing::error!(dir = %dir.display(), error = %e,
                                "ddns: cannot save {what}; writing a new snapshot next");
                        }
                        *lock(&saver_shared.save_failed) = Some(e.to_string());
                    }
                }
            })?;

        let mut up = Updater {
            table,
            state_dir: cfg.state_dir.clone(),
            events,
            ctl,
            results,
            jobs: Some(job_tx),
            workers,
            save: Some(save_tx),
            saver: Some(saver),
            shared: shared.clone(),
            takeover,
            takeover_cache: HashMap::new(),
            takeover_at: None,
            in_flight: 0,
            last_save: Instant::now(),
            last_soft_save: Instant::now(),
            save_error: None,
            generation,
            need_snapshot: true,
            journal_lines: 0,
            metrics_at: None,
            metrics_stale: false,
        };
        up.publish(true);
        let thread = std::thread::Builder::new()
            .name("tandem-ddns".into())
            .spawn(move || {
                nicer_by(TABLE_NICE);
                up.run()
            })?;
        Ok(Ddns {
            events: events_tx,
            ctl: ctl_tx,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The channel events go in. It is bounded ([`EVENT_CHANNEL`]): producers use `try_send`
    /// and count a full channel with [`Ddns::note_dropped`].
    pub fn sender(&self) -> Sender<Event> {
        self.events.clone()
    }

    /// Counts `n` events a producer dropped because the channel was full (`dropped`, reason
    /// `channel_full`).
    pub fn note_dropped(&self, n: u64) {
        self.shared.channel_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The name of the client on `addr` and the DDNS flags for the failover BNDUPD DDNS
    /// option: 0x1 the client updates its A record, 0x2 the A record is published, 0x4 the PTR
    /// is published, 0x8 an update is pending. `None` when `addr` has no name (or its removal
    /// is under way).
    pub fn name_of(&self, addr: Ipv4Addr) -> Option<(String, u16)> {
        self.shared
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
            .cloned()
    }

    /// The status for `GET /v1/ddns` and `tandemctl ddns status`: counters, per scope counts,
    /// the queue and its oldest item, each server's state and last error, and the entries
    /// (pending first, at most 1000).
    pub fn status(&self) -> Value {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.ctl.send(Ctl::Status(tx)).is_ok() {
            if let Ok(v) = rx.recv_timeout(Duration::from_secs(2)) {
                return v;
            }
        }
        // Stopped (or stuck): the last numbers published.
        let m = lock(&self.shared.metrics).clone();
        let mut v = status_counters(
            &m.stats,
            self.shared.channel_dropped.load(Ordering::Relaxed),
        );
        v["running"] = json!(false);
        v["queue_depth"] = json!(m.queue_depth);
        v
    }

    /// Appends the updater's metrics in the Prometheus text format (names `tandem_ddns_*`).
    pub fn render_metrics(&self, out: &mut String) {
        let m = lock(&self.shared.metrics).clone();
        let channel = self.shared.channel_dropped.load(Ordering::Relaxed);
        render_metrics(out, &m, channel);
    }

    /// Takes new settings (a configuration reload). Entries of addresses no longer in a scope
    /// with DNS are forgotten (their records stay in DNS); the rest use the new settings from
    /// their next update on.
    pub fn reconfigure(&self, cfg: DdnsConfig) {
        let _ = self.ctl.send(Ctl::Reconfigure(Box::new(cfg)));
    }

    /// Stops: takes the events still queued, waits briefly for updates in flight, saves the
    /// state and joins the threads. Idempotent.
    pub fn stop(&self) {
        let Some(t) = lock(&self.thread).take() else {
            return;
        };
        let _ = self.ctl.send(Ctl::Stop);
        if t.join().is_err() {
            tracing::error!("ddns: the updater thread panicked");
        }
        self.shared.running.store(false, Ordering::Relaxed);
    }
}

impl Drop for Ddns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The updater thread.
struct Updater {
    table: Table,
    state_dir: PathBuf,
    events: Receiver<Event>,
    ctl: Receiver<Ctl>,
    results: Receiver<JobResult>,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    save: Option<Sender<SaveJob>>,
    saver: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    takeover: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    takeover_cache: HashMap<String, bool>,
    takeover_at: Option<Instant>,
    in_flight: usize,
    last_save: Instant,
    /// When every change (expiries too) was last saved.
    last_soft_save: Instant,
    save_error: Option<String>,
    /// Generation of the last snapshot sent to the saver.
    generation: u64,
    /// The next save must be a snapshot (none yet, a write failed, the directory changed).
    need_snapshot: bool,
    /// Lines appended to the journal since the last snapshot.
    journal_lines: usize,
    /// When the metrics snapshot was last refreshed.
    metrics_at: Option<Instant>,
    /// A refresh was skipped since (the thread wakes for it within METRICS_EVERY).
    metrics_stale: bool,
}

impl Updater {
    fn run(mut self) {
        // After a batch of events, the events channel is left alone until then (see GATHER);
        // DNS results and control requests are still taken at once.
        let mut gather_until: Option<Instant> = None;
        loop {
            let mut wait = self.wait(unix_ms());
            let left = gather_until.map(|t| t.saturating_duration_since(Instant::now()));
            let stop = match left.filter(|l| !l.is_zero()) {
                Some(left) => {
                    wait = wait.min(left);
                    crossbeam_channel::select! {
                        recv(self.results) -> r => {
                            self.take_results(r);
                            false
                        },
                        recv(self.ctl) -> c => self.control(c),
                        default(wait) => false,
                    }
                }
                None => {
                    gather_until = None;
                    crossbeam_channel::select! {
                        recv(self.events) -> ev => match ev {
                            Ok(ev) => {
                                self.take_events(ev);
                                gather_until = Some(Instant::now() + GATHER);
                                false
                            }
                            Err(_) => true,
                        },
                        recv(self.results) -> r => {
                            self.take_results(r);
                            false
                        },
                        recv(self.ctl) -> c => self.control(c),
                        default(wait) => false,
                    }
                }
            };
            if stop {
                break;
            }
            self.tick();
        }
        self.shutdown();
    }

    /// `first` and what else is queued (a burst, up to 4096, before the clock is looked at).
    fn take_events(&mut self, first: Event) {
        let now = unix_ms();
        self.refresh_takeover(false);
        self.event(first, now);
        for _ in 0..4096 {
            match self.events.try_recv() {
                Ok(ev) => self.event(ev, now),
                Err(_) => break,
            }
        }
    }

    /// `first` (if the DNS threads are still there) and every other result queued.
    fn take_results(&mut self, first: Result<JobResult, crossbeam_channel::RecvError>) {
        if let Ok(r) = first {
            self.result(r);
            while let Ok(r) = self.results.try_recv() {
                self.result(r);
            }
        }
    }

    /// One control request; true to stop.
    fn control(&mut self, c: Result<Ctl, crossbeam_channel::RecvError>) -> bool {
        match c {
            Ok(Ctl::Status(tx)) => {
                self.tick();
                // Metrics read after a status agree with it.
                self.refresh_metrics();
                let _ = tx.send(self.status());
                false
            }
            Ok(Ctl::Reconfigure(cfg)) => {
                self.refresh_takeover(true);
                if self.state_dir != cfg.state_dir {
                    self.need_snapshot = true;
                }
                self.state_dir = cfg.state_dir.clone();
                self.table.reconfigure(&cfg, unix_ms());
                false
            }
            Ok(Ctl::Stop) | Err(_) => true,
        }
    }

    /// How long to sleep at most.
    fn wait(&self, now: u64) -> Duration {
        let mut ms = 1000u64;
        if self.in_flight < DNS_THREADS {
            if let Some(t) = self.table.poll_timeout() {
                ms = ms.min(t.saturating_sub(now));
            }
        }
        let left = if self.table.dirty_work() {
            Some(SAVE_EVERY.saturating_sub(self.last_save.elapsed()))
        } else if self.table.dirty() {
            Some(SAVE_EXPIRY_EVERY.saturating_sub(self.last_soft_save.elapsed()))
        } else {
            None
        };
        if let Some(left) = left {
            ms = ms.min(u64::try_from(left.as_millis()).unwrap_or(0));
        }
        if self.metrics_stale {
            let left = self.metrics_at.map_or(Duration::ZERO, |t| {
                METRICS_EVERY.saturating_sub(t.elapsed())
            });
            ms = ms.min(u64::try_from(left.as_millis()).unwrap_or(0) + 1);
        }
        Duration::from_millis(ms)
    }

    fn refresh_takeover(&mut self, force: bool) {
        if !force
            && self
                .takeover_at
                .is_some_and(|t| t.elapsed() < TAKEOVER_EVERY)
        {
            return;
        }
        self.takeover_at = Some(Instant::now());
        self.takeover_cache.clear();
        for s in self.table.scope_names() {
            let v = (self.takeover)(&s);
            self.takeover_cache.insert(s, v);
        }
    }

    fn event(&mut self, ev: Event, now: u64) {
        let (table, cache, takeover) = (&mut self.table, &self.takeover_cache, &self.takeover);
        table.handle_event(now, ev, &|s: &str| {
            cache.get(s).copied().unwrap_or_else(|| takeover(s))
        });
    }

    fn result(&mut self, r: JobResult) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.table.handle_result(unix_ms(), r);
    }

    /// Everything time-driven: expiries, dispatching due work, publishing, saving.
    fn tick(&mut self) {
        let now = unix_ms();
        self.refresh_takeover(false);
        {
            let (table, cache, takeover) = (&mut self.table, &self.takeover_cache, &self.takeover);
            table.handle_timeout(now, &|s: &str| {
                cache.get(s).copied().unwrap_or_else(|| takeover(s))
            });
        }
        while self.in_flight < DNS_THREADS {
            let Some(job) = self.table.poll_job(now) else {
                break;
            };
            let sent = match &self.jobs {
                Some(tx) => tx.send(job).map_err(|e| e.into_inner()),
                None => Err(job),
            };
            match sent {
                Ok(()) => self.in_flight += 1,
                // No DNS thread left (stopping): the job goes back as not sent.
                Err(job) => self
                    .table
                    .handle_result(now, dns::not_sent(job, "the updater is stopping")),
            }
        }
        if let Some(e) = lock(&self.shared.save_failed).take() {
            self.save_error = Some(e);
            self.need_snapshot = true;
            self.table.mark_dirty();
        }
        self.publish(false);
        self.save();
    }

    /// Hands what changed to the saver when it is due: journal lines, or a new snapshot when
    /// one is needed or the journal has grown past [`COMPACT_FACTOR`] × the entries.
    fn save(&mut self) {
        let soft_due = self.last_soft_save.elapsed() >= SAVE_EXPIRY_EVERY;
        let due = (self.table.dirty_work() && self.last_save.elapsed() >= SAVE_EVERY)
            || (self.table.dirty() && soft_due);
        let Some(tx) = &self.save else {
            return;
        };
        // The previous write is still going (a bounded channel of one): at the next tick.
        if !due || tx.is_full() {
            return;
        }
        let compact =
            self.journal_lines >= COMPACT_MIN_LINES.max(COMPACT_FACTOR * self.table.len());
        let (job, lines) = if self.need_snapshot || compact {
            let generation = self.generation + 1;
            let bytes = self.table.encode(generation);
            let job = SaveJob::Snapshot {
                dir: self.state_dir.clone(),
                generation,
                bytes,
            };
            (job, None)
        } else {
            let changes = self.table.take_changes(soft_due);
            let job = SaveJob::Append {
                dir: self.state_dir.clone(),
                bytes: state::encode_changes(&changes),
            };
            (job, Some(changes.len()))
        };
        let is_snapshot = lines.is_none();
        match tx.try_send(job) {
            Ok(()) => {
                if let Some(n) = lines {
                    self.journal_lines += n;
                } else {
                    self.generation += 1;
                    self.journal_lines = 0;
                    self.need_snapshot = false;
                }
                self.last_save = Instant::now();
                if soft_due || is_snapshot {
                    self.last_soft_save = self.last_save;
                }
                self.save_error = None;
            }
            // Only this thread sends, and the channel had room; the saver is gone (stopping):
            // the final snapshot at stop saves everything.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.need_snapshot = true;
                self.table.mark_dirty();
            }
        }
    }

    /// Names for `name_of` and the metrics snapshot.
    fn publish(&mut self, all: bool) {
        let changed = self.table.take_changed();
        if all || !changed.is_empty() {
            let mut names = self.shared.names.write().unwrap_or_else(|e| e.into_inner());
            if all {
                names.clear();
                for (addr, v) in self.table.all_names() {
                    names.insert(addr, v);
                }
            } else {
                for addr in changed {
                    match self.table.name_flags(addr) {
                        Some(v) => names.insert(addr, v),
                        None => names.remove(&addr),
                    };
                }
            }
        }
        // The metrics snapshot (a few allocations) at most every METRICS_EVERY: the thread
        // passes here after every DNS result.
        if !all && self.metrics_at.is_some_and(|t| t.elapsed() < METRICS_EVERY) {
            self.metrics_stale = true;
            return;
        }
        self.refresh_metrics();
    }

    /// The metrics snapshot, now.
    fn refresh_metrics(&mut self) {
        self.metrics_at = Some(Instant::now());
        self.metrics_stale = false;
        let snap = Snapshot {
            stats: self.table.stats().clone(),
            queue_depth: self.table.pending(),
            in_flight: self.in_flight,
            entries: self.table.len(),
            scopes: self.table.scope_counts(),
            servers: self.table.server_states(),
        };
        *lock(&self.shared.metrics) = snap;
    }

    fn status(&self) -> Value {
        let now = unix_ms();
        let mut v = status_counters(
            self.table.stats(),
            self.shared.channel_dropped.load(Ordering::Relaxed),
        );
        let t = self.table.status(now, STATUS_ENTRIES);
        if let (Some(o), Value::Object(t)) = (v.as_object_mut(), t) {
            o.extend(t);
        }
        v["running"] = json!(true);
        v["in_flight"] = json!(self.in_flight);
        v["state_file"] = json!(self.state_dir.join(STATE_FILE).display().to_string());
        v["journal_file"] = json!(self.state_dir.join(JOURNAL_FILE).display().to_string());
        v["journal_lines"] = json!(self.journal_lines);
        v["last_save_error"] = json!(self.save_error);
        v
    }

    fn shutdown(&mut self) {
        // Events already committed (ends above all) are taken before the final save.
        self.refresh_takeover(false);
        while let Ok(ev) = self.events.try_recv() {
            self.event(ev, unix_ms());
        }
        let deadline = Instant::now() + STOP_GRACE;
        while self.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.results.recv_timeout(left) {
                Ok(r) => self.result(r),
                Err(_) => break,
            }
        }
        if self.in_flight > 0 {
            tracing::info!(
                in_flight = self.in_flight,
                "ddns: stopping with updates in flight; they are saved as pending and run again at the next start"
            );
        }
        // DNS threads end after their current exchange; the saver after its current write.
        self.jobs = None;
        self.save = None;
        if let Some(s) = self.saver.take() {
            let _ = s.join();
        }
        let generation = self.generation + 1;
        let bytes = self.table.encode(generation);
        match state::Writer::default().snapshot(&self.state_dir, generation, &bytes) {
            Ok(()) => self.generation = generation,
            Err(e) => tracing::error!(dir = %self.state_dir.display(), error = %e,
                "ddns: cannot save the state file at stop"),
        }
        self.publish(true);
        for w in self.workers.drain(..) {
            if w.is_finished() {
                let _ = w.join();
            }
            // Else it is in an exchange (bounded by the timeout) and exits after it, detached.
        }
        tracing::info!(
            entries = self.table.len(),
            pending = self.table.pending(),
            "ddns: updater stopped"
        );
    }
}

/// The counters of the status, as JSON.
fn status_counters(s: &Stats, channel_dropped: u64) -> Value {
    let failures: serde_json::Map<String, Value> = Reason::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), json!(s.failures[*r as usize])))
        .collect();
    json!({
        "updates": {"add": s.added, "remove": s.removed},
        "failures": failures,
        "conflicts": s.conflicts,
        "retries": s.retries,
        "dropped": s.dropped_queue_full + channel_dropped,
        "dropped_by_reason": {"queue_full": s.dropped_queue_full, "channel_full": channel_dropped},
        "ignored": {"no_scope": s.ignored_no_scope, "not_in_zone": s.ignored_not_in_zone},
        "expired": s.expired,
    })
}

fn render_metrics(out: &mut String, m: &Snapshot, channel_dropped: u64) {
    let s = &m.stats;
    let mut family = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    family(
        "tandem_ddns_updates_total",
        "counter",
        "DNS updates completed, by operation.",
        &[
            ("{op=\"add\"}".into(), s.added),
            ("{op=\"remove\"}".into(), s.removed),
        ],
    );
    let rows: Vec<(String, u64)> = Reason::ALL
        .iter()
        .map(|r| {
            (
                format!("{{reason=\"{}\"}}", r.as_str()),
                s.failures[*r as usize],
            )
        })
        .collect();
    family(
        "tandem_ddns_failures_total",
        "counter",
        "DNS update attempts that failed, by reason (retried later).",
        &rows,
    );
    family(
        "tandem_ddns_conflicts_total",
        "counter",
        "Names not published because another client's DHCID holds them (RFC 4703).",
        &[(String::new(), s.conflicts)],
    );
    family(
        "tandem_ddns_retries_total",
        "counter",
        "DNS updates scheduled again after a failure.",
        &[(String::new(), s.retries)],
    );
    family(
        "tandem_ddns_dropped_total",
        "counter",
        "Events not taken: the pending queue (queue_full) or the event channel (channel_full) was full.",
        &[
            ("{reason=\"queue_full\"}".into(), s.dropped_queue_full),
            ("{reason=\"channel_full\"}".into(), channel_dropped),
        ],
    );
    family(
        "tandem_ddns_ignored_total",
        "counter",
        "Names not registered: the address is in no scope with DNS (no_scope), or the name or address is outside the scope's zones (not_in_zone).",
        &[
            ("{reason=\"no_scope\"}".into(), s.ignored_no_scope),
            ("{reason=\"not_in_zone\"}".into(), s.ignored_not_in_zone),
        ],
    );
    family(
        "tandem_ddns_expired_total",
        "counter",
        "Leases treated as ended at their expiry because no renewal or end was seen.",
        &[(String::new(), s.expired)],
    );
    family(
        "tandem_ddns_queue_depth",
        "gauge",
        "Entries with a pending DNS update (in flight included).",
        &[(String::new(), m.queue_depth as u64)],
    );
    family(
        "tandem_ddns_in_flight",
        "gauge",
        "DNS updates being exchanged now.",
        &[(String::new(), m.in_flight as u64)],
    );
    family(
        "tandem_ddns_entries",
        "gauge",
        "Addresses with a name known to the updater.",
        &[(String::new(), m.entries as u64)],
    );
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut pubs = Vec::new();
    let mut pend = Vec::new();
    for (scope, c) in &m.scopes {
        pubs.push((format!("{{scope=\"{}\"}}", label(scope)), c.published));
        pend.push((format!("{{scope=\"{}\"}}", label(scope)), c.pending));
    }
    family(
        "tandem_ddns_published",
        "gauge",
        "Names published by this server, by scope.",
        &pubs,
    );
    family(
        "tandem_ddns_pending",
        "gauge",
        "Entries with a pending DNS update, by scope.",
        &pend,
    );
    let rows: Vec<(String, u64)> = m
        .servers
        .iter()
        .map(|(a, up)| (format!("{{server=\"{a}\"}}"), u64::from(*up)))
        .collect();
    family(
        "tandem_ddns_server_up",
        "gauge",
        "1 while the DNS server answers, 0 while it is marked down (not answering).",
        &rows,
    );
}
