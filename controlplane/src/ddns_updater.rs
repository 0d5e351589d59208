//! The DNS updater: publishes and withdraws clients' names (RFC 2136 with TSIG, RFC 4703
//! conflict resolution from `tandem_ddns`) on a thread of its own, so a slow or dead DNS server
//! never slows leases down.
//!
//! It keeps one entry per address with a name: the name, the client identity its DHCID is
//! computed over, the lease's expiry, who granted it (this server or the failover partner), what
//! is published, and the pending operation with its attempts. Events ([`Event`]) come from the
//! engines (names at ACK), the commit taps (renewals, ends) and failover (the partner's names).
//!
//! - **Responsibility**: the server that granted (or last renewed) a lease updates DNS for it; a
//!   lease the partner granted is acted on only when `takeover(scope)` says so (PARTNER-DOWN).
//! - **Retries**: timeouts, network errors, SERVFAIL / REFUSED / NOTAUTH and TSIG errors are
//!   retried with a backoff from `retry_min` doubling to `retry_max`. An RFC 4703 conflict (the
//!   name is another client's) is final: logged once, counted.
//! - **Persistence**: the entries with pending work or published records are written to
//!   `state_dir/ddns.state` (temp file, fsync, rename; at most every 200 ms while changed, and at
//!   stop) and reloaded at start, so pending work survives a restart. Repeating an operation
//!   after a crash is harmless: every update is conditioned on the client's DHCID (RFC 4703), so
//!   a repeated add changes nothing and a repeated removal never deletes another client's
//!   records. A state file that cannot be read is set aside (`ddns.state.bad-<unix time>`).
//! - **Bounds**: at most `queue_max` entries with pending work; a grant beyond that is dropped
//!   and counted (`dropped`), as is an event that found the channel full.

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_dataplane::scope::Subnet;
use tandem_ddns::client::Failure;
use tandem_ddns::tsig::VerifyError;
use tandem_ddns::{
    Binding, Client, ClientConfig, ConflictMode, Name, Plan, PlanResult, Rcode, TsigKey,
};

/// Capacity of the event channel.
pub const EVENT_CHANNEL: usize = 65_536;
/// Name of the state file in the state directory.
pub const STATE_FILE: &str = "ddns.state";
/// Most entries listed in [`Ddns::status`].
const STATUS_ENTRIES: usize = 1000;

/// The DNS settings of one scope.
#[derive(Clone, Debug)]
pub struct ScopeDns {
    /// Scope name (logs, status, metrics).
    pub scope: String,
    /// The scope's addresses.
    pub subnet: Subnet,
    /// Zone of the A records.
    pub forward_zone: Name,
    /// Zone of the PTR records.
    pub reverse_zone: Name,
    /// Servers, tried in order.
    pub servers: Vec<SocketAddr>,
    /// The TSIG key, if updates are signed.
    pub key: Option<TsigKey>,
    /// TTL of the records.
    pub ttl: u32,
    /// How names held by another client are treated.
    pub conflict: ConflictMode,
}

/// The updater's settings.
#[derive(Clone, Debug)]
pub struct DdnsConfig {
    /// The scopes with DNS.
    pub scopes: Vec<ScopeDns>,
    /// Where [`STATE_FILE`] lives.
    pub state_dir: PathBuf,
    /// Most entries with pending work.
    pub queue_max: usize,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Wait for one DNS answer.
    pub timeout: Duration,
}

impl DdnsConfig {
    /// `scopes` with the default bounds: 65 536 pending entries, retries 1 s to 300 s, 2 s
    /// timeout.
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

/// The client identity a DHCID is computed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Hardware type.
    pub htype: u8,
    /// Hardware address.
    pub hw: Vec<u8>,
    /// Client identifier (option 61), if the client sent one.
    pub client_id: Option<Vec<u8>>,
}

impl Identity {
    fn dhcid_input(&self) -> tandem_ddns::Identity {
        tandem_ddns::Identity::for_dhcpv4(self.htype, &self.hw, self.client_id.as_deref())
    }
}

/// Who granted a lease.
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
    /// A lease granted or renewed with a name: publish (or keep) `fqdn → addr`; `forward`
    /// false: the client updates its A record, the server only the PTR.
    Granted {
        /// The address.
        addr: Ipv4Addr,
        /// The client's name.
        fqdn: Name,
        /// The client.
        identity: Identity,
        /// Lease end (unix seconds).
        expires: u32,
        /// The server updates the A record.
        forward: bool,
        /// Who granted it.
        by: Granter,
    },
    /// A committed ACTIVE binding seen again (a renewal): refresh its expiry.
    Renewed {
        /// The address.
        addr: Ipv4Addr,
        /// Lease end (unix seconds).
        expires: u32,
        /// Who renewed it.
        by: Granter,
    },
    /// The lease on `addr` ended.
    Ended {
        /// The address.
        addr: Ipv4Addr,
    },
}

/// What DNS holds for an entry, as far as the updater knows.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Published {
    Nothing,
    Records,
    Conflict,
}

/// The operation an entry waits for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Want {
    Idle,
    Add,
    Remove,
}

/// A name to withdraw before the entry's own is published (the client changed its name, or the
/// address changed hands).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Old {
    fqdn: String,
    identity: Identity,
    forward: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    addr: Ipv4Addr,
    scope: String,
    fqdn: String,
    identity: Identity,
    expires: u32,
    by: Granter,
    forward: bool,
    published: Published,
    want: Want,
    old: Option<Old>,
    attempts: u32,
    /// Unix milliseconds.
    next_try: u64,
    last_error: Option<String>,
    /// An add was sent at least once: DNS may hold the records even if no answer came.
    #[serde(default)]
    sent: bool,
}

/// Failure reasons counted.
const REASONS: &[&str] = &[
    "timeout",
    "network",
    "refused",
    "servfail",
    "notauth",
    "badkey",
    "badsig",
    "badtime",
    "not_in_zone",
    "other",
];

#[derive(Default)]
struct Counters {
    added: AtomicU64,
    removed: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    failures: [AtomicU64; 10],
}

/// What other threads read.
struct Shared {
    counters: Counters,
    /// Published names (address → (name, DDNS flags)), for the failover BNDUPD.
    names: Mutex<HashMap<Ipv4Addr, (String, u16)>>,
    /// The last status, refreshed by the updater thread.
    status: Mutex<Value>,
    queue_depth: AtomicU64,
    config: Mutex<Option<DdnsConfig>>,
}

/// The running updater.
pub struct Ddns {
    tx: Sender<Event>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Ddns {
    /// Load the state file, re-queue its pending work and start the updater thread.
    /// `takeover(scope)`: act for the partner's grants too (polled every second).
    pub fn start(
        cfg: DdnsConfig,
        takeover: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> std::io::Result<Ddns> {
        let (tx, rx) = crossbeam_channel::bounded(EVENT_CHANNEL);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            names: Mutex::new(HashMap::new()),
            status: Mutex::new(Value::Null),
            queue_depth: AtomicU64::new(0),
            config: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let entries = load_state(&cfg.state_dir);
        let mut up = Updater {
            cfg,
            rx,
            shared: shared.clone(),
            stop: stop.clone(),
            takeover,
            entries: HashMap::new(),
            due: BTreeSet::new(),
            dirty: false,
            last_save: Instant::now(),
            takeover_cache: HashMap::new(),
            last_takeover: Instant::now() - Duration::from_secs(10),
            queue_full_logged: None,
        };
        for e in entries {
            up.insert(e);
        }
        up.refresh_shared();
        let thread = std::thread::Builder::new()
            .name("tandem-ddns".into())
            .spawn(move || up.run())?;
        Ok(Ddns {
            tx,
            shared,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The channel events go in (bounded: use `try_send` and [`Ddns::note_dropped`]).
    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    /// Count `n` events dropped because the channel was full.
    pub fn note_dropped(&self, n: u64) {
        self.shared.counters.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The name published for `addr` and its DDNS flags (0x2 A updated, 0x4 PTR updated, 0x8
    /// pending, 0x1 the client updates its A record).
    pub fn name_of(&self, addr: Ipv4Addr) -> Option<(String, u16)> {
        lock(&self.shared.names).get(&addr).cloned()
    }

    /// The status: totals, failures by reason, per scope counts, and the entries with work.
    pub fn status(&self) -> Value {
        lock(&self.shared.status).clone()
    }

    /// The counters in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let c = &self.shared.counters;
        let _ = writeln!(
            out,
            "# HELP tandem_ddns_updates_total DNS updates completed, by operation.\n\
             # TYPE tandem_ddns_updates_total counter\n\
             tandem_ddns_updates_total{{op=\"add\"}} {}\n\
             tandem_ddns_updates_total{{op=\"remove\"}} {}",
            c.added.load(Ordering::Relaxed),
            c.removed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tandem_ddns_failures_total DNS update attempts that failed, by reason.\n\
             # TYPE tandem_ddns_failures_total counter"
        );
        for (i, r) in REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "tandem_ddns_failures_total{{reason=\"{r}\"}} {}",
                c.failures[i].load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "tandem_ddns_conflicts_total",
                "Names left alone because another client's DHCID holds them (RFC 4703).",
                c.conflicts.load(Ordering::Relaxed),
            ),
            (
                "tandem_ddns_retries_total",
                "DNS updates retried after a failure.",
                c.retries.load(Ordering::Relaxed),
            ),
            (
                "tandem_ddns_dropped_total",
                "Names not queued: the queue or the event channel was full.",
                c.dropped.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tandem_ddns_queue_depth Names waiting for a DNS update.\n\
             # TYPE tandem_ddns_queue_depth gauge\ntandem_ddns_queue_depth {}",
            self.shared.queue_depth.load(Ordering::Relaxed)
        );
    }

    /// Take new settings (a reload).
    pub fn reconfigure(&self, cfg: DdnsConfig) {
        *lock(&self.shared.config) = Some(cfg);
    }

    /// Save the state and stop the thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ddns {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn load_state(dir: &Path) -> Vec<Entry> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "ddns: cannot read the state file; starting without it");
            return Vec::new();
        }
    };
    match serde_json::from_slice::<Vec<Entry>>(&text) {
        Ok(v) => {
            tracing::info!(entries = v.len(), "ddns: state loaded");
            v
        }
        Err(e) => {
            let aside = dir.join(format!("{STATE_FILE}.bad-{}", now_ms() / 1000));
            let _ = std::fs::rename(&path, &aside);
            tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e,
                "ddns: the state file is unreadable; set aside, starting without it");
            Vec::new()
        }
    }
}

struct Updater {
    cfg: DdnsConfig,
    rx: Receiver<Event>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    takeover: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    entries: HashMap<Ipv4Addr, Entry>,
    /// (next try, address) of the entries with work.
    due: BTreeSet<(u64, Ipv4Addr)>,
    dirty: bool,
    last_save: Instant,
    takeover_cache: HashMap<String, bool>,
    last_takeover: Instant,
    queue_full_logged: Option<Instant>,
}

impl Updater {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let now = now_ms();
            let wait = self
                .due
                .iter()
                .next()
                .map_or(200, |(t, _)| t.saturating_sub(now).min(200));
            match self.rx.recv_timeout(Duration::from_millis(wait)) {
                Ok(ev) => {
                    self.handle(ev);
                    while let Ok(ev) = self.rx.try_recv() {
                        self.handle(ev);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // New settings apply to every update from now on, including those just queued.
            if let Some(cfg) = lock(&self.shared.config).take() {
                self.cfg = cfg;
            }
            self.expire();
            self.work();
            if self.dirty && self.last_save.elapsed() >= Duration::from_millis(200) {
                self.save();
            }
            self.refresh_shared();
        }
        while let Ok(ev) = self.rx.try_recv() {
            self.handle(ev);
        }
        self.save();
    }

    fn scope_of(&self, addr: Ipv4Addr) -> Option<&ScopeDns> {
        self.cfg.scopes.iter().find(|s| s.subnet.contains(addr))
    }

    fn responsible(&mut self, e: &Entry) -> bool {
        if e.by == Granter::Local {
            return true;
        }
        if self.last_takeover.elapsed() >= Duration::from_secs(1) {
            self.takeover_cache.clear();
            self.last_takeover = Instant::now();
        }
        let t = self.takeover.clone();
        *self
            .takeover_cache
            .entry(e.scope.clone())
            .or_insert_with(|| t(&e.scope))
    }

    fn pending(&self) -> usize {
        self.due.len()
    }

    fn insert(&mut self, e: Entry) {
        if let Some(old) = self.entries.get(&e.addr) {
            self.due.remove(&(old.next_try, old.addr));
        }
        if e.want != Want::Idle {
            self.due.insert((e.next_try, e.addr));
        }
        self.entries.insert(e.addr, e);
        self.dirty = true;
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Granted {
                addr,
                fqdn,
                identity,
                expires,
                forward,
                by,
            } => {
                let Some(scope) = self.scope_of(addr).map(|s| s.scope.clone()) else {
                    return;
                };
                let fqdn = fqdn.to_string().trim_end_matches('.').to_ascii_lowercase();
                match self.entries.get(&addr).cloned() {
                    Some(mut e)
                        if e.fqdn == fqdn && e.identity == identity && e.forward == forward =>
                    {
                        e.by = takes_over(&e, by, expires);
                        e.expires = e.expires.max(expires);
                        if e.want == Want::Remove {
                            // Granted again before the removal ran: keep the records.
                            e.want = if e.published == Published::Records {
                                Want::Idle
                            } else {
                                Want::Add
                            };
                        } else if e.published == Published::Nothing && e.want == Want::Idle {
                            e.want = Want::Add;
                        }
                        self.insert(e);
                    }
                    prev => {
                        if prev.is_none() && self.pending() >= self.cfg.queue_max {
                            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                            let log = self
                                .queue_full_logged
                                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
                            if log {
                                self.queue_full_logged = Some(Instant::now());
                                tracing::warn!(queue_max = self.cfg.queue_max, %addr, %fqdn,
                                    "ddns: the update queue is full; name not registered (counted as dropped)");
                            }
                            return;
                        }
                        let old = prev
                            .filter(|p| p.published == Published::Records || p.old.is_some())
                            .map(|p| {
                                p.old.clone().unwrap_or(Old {
                                    fqdn: p.fqdn.clone(),
                                    identity: p.identity.clone(),
                                    forward: p.forward,
                                })
                            });
                        let e = Entry {
                            addr,
                            scope,
                            fqdn,
                            identity,
                            expires,
                            by,
                            forward,
                            published: Published::Nothing,
                            want: Want::Add,
                            old,
                            attempts: 0,
                            next_try: 0,
                            last_error: None,
                            sent: false,
                        };
                        self.insert(e);
                    }
                }
            }
            Event::Renewed { addr, expires, by } => {
                if let Some(mut e) = self.entries.get(&addr).cloned() {
                    let who = takes_over(&e, by, expires);
                    if expires > e.expires || who != e.by {
                        e.expires = e.expires.max(expires);
                        e.by = who;
                        self.insert(e);
                    }
                }
            }
            Event::Ended { addr } => self.end(addr),
        }
    }

    /// The lease on `addr` ended: remove its records if ours to remove, else forget them.
    fn end(&mut self, addr: Ipv4Addr) {
        let Some(mut e) = self.entries.get(&addr).cloned() else {
            return;
        };
        if e.want == Want::Remove {
            return;
        }
        let ours = self.responsible(&e);
        let in_dns = e.published == Published::Records || e.old.is_some() || e.sent;
        if !ours || !in_dns {
            self.due.remove(&(e.next_try, addr));
            self.entries.remove(&addr);
            self.dirty = true;
            return;
        }
        e.want = Want::Remove;
        e.attempts = 0;
        e.next_try = 0;
        self.insert(e);
    }

    /// Entries whose lease ran out without an end seen (a backstop: the engines report ends).
    fn expire(&mut self) {
        let now = (now_ms() / 1000) as u32;
        let ended: Vec<Ipv4Addr> = self
            .entries
            .values()
            .filter(|e| {
                e.want != Want::Remove && e.expires != 0 && e.expires < now.saturating_sub(5)
            })
            .map(|e| e.addr)
            .collect();
        for a in ended {
            self.end(a);
        }
    }

    /// Run every operation that is due (a few at most per call, so events keep flowing).
    fn work(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) {
            let now = now_ms();
            let Some(&(t, addr)) = self.due.iter().next() else {
                return;
            };
            if t > now {
                return;
            }
            self.due.remove(&(t, addr));
            let Some(e) = self.entries.get(&addr).cloned() else {
                continue;
            };
            self.execute(e);
        }
    }

    fn execute(&mut self, mut e: Entry) {
        let Some(scope) = self.scope_of(e.addr).cloned() else {
            // The scope lost its DNS settings: nothing to do with it any more.
            self.entries.remove(&e.addr);
            self.dirty = true;
            return;
        };
        // A name to withdraw first.
        if let Some(old) = e.old.clone() {
            match self.run_plan(&scope, e.addr, &old.fqdn, &old.identity, old.forward, false) {
                Ok(_) => {
                    e.old = None;
                }
                Err(err) => return self.failed(e, err),
            }
        }
        let add = e.want == Want::Add;
        if e.want == Want::Idle {
            self.insert(e);
            return;
        }
        let (fqdn, identity) = (e.fqdn.clone(), e.identity.clone());
        if add && !e.sent {
            e.sent = true;
            self.dirty = true;
        }
        match self.run_plan(&scope, e.addr, &fqdn, &identity, e.forward, add) {
            Ok(PlanResult::Completed) if add => {
                self.shared.counters.added.fetch_add(1, Ordering::Relaxed);
                tracing::info!(addr = %e.addr, name = %e.fqdn, scope = %e.scope,
                    records = if e.forward { "A and PTR" } else { "PTR" }, "ddns: published");
                e.published = Published::Records;
                e.want = Want::Idle;
                e.attempts = 0;
                e.last_error = None;
                self.insert(e);
            }
            Ok(PlanResult::Conflict) => {
                self.shared
                    .counters
                    .conflicts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(addr = %e.addr, name = %e.fqdn, scope = %e.scope,
                    "ddns: the name belongs to another client (its DHCID differs); left alone");
                e.published = Published::Conflict;
                e.want = Want::Idle;
                e.last_error = Some("conflict: the name is another client's".into());
                self.insert(e);
            }
            Ok(PlanResult::Completed) => {
                self.shared.counters.removed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(addr = %e.addr, name = %e.fqdn, scope = %e.scope, "ddns: removed");
                self.entries.remove(&e.addr);
                self.dirty = true;
            }
            Ok(PlanResult::Failed { step, rcode }) => {
                let reason = rcode_reason(rcode);
                self.failed(e, (reason, format!("{step:?} answered {rcode}")));
            }
            Err(err) => self.failed(e, err),
        }
    }

    fn failed(&mut self, mut e: Entry, (reason, text): (&'static str, String)) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.shared.counters.failures[i].fetch_add(1, Ordering::Relaxed);
        }
        if reason == "not_in_zone" {
            tracing::warn!(addr = %e.addr, name = %e.fqdn, scope = %e.scope, error = %text,
                "ddns: the name is outside the configured zones; not registered");
            self.entries.remove(&e.addr);
            self.dirty = true;
            return;
        }
        let shift = e.attempts.min(20);
        let delay = self
            .cfg
            .retry_min
            .saturating_mul(1u32 << shift.min(16))
            .min(self.cfg.retry_max);
        e.attempts += 1;
        if e.attempts > 1 {
            self.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        e.next_try = now_ms() + delay.as_millis() as u64;
        let key_problem = matches!(reason, "badkey" | "badsig" | "badtime" | "notauth");
        if key_problem {
            tracing::error!(addr = %e.addr, name = %e.fqdn, scope = %e.scope, error = %text,
                retry_in_secs = delay.as_secs(),
                "ddns: the DNS server refused our TSIG key (check key_file against the server's key)");
        } else {
            tracing::warn!(addr = %e.addr, name = %e.fqdn, scope = %e.scope, error = %text,
                retry_in_secs = delay.as_secs(), "ddns: update failed; will retry");
        }
        e.last_error = Some(format!("{reason}: {text}"));
        self.insert(e);
    }

    /// Run the add or removal plan for one name against the scope's servers in order.
    fn run_plan(
        &self,
        scope: &ScopeDns,
        addr: Ipv4Addr,
        fqdn: &str,
        identity: &Identity,
        forward: bool,
        add: bool,
    ) -> Result<PlanResult, (&'static str, String)> {
        let name = Name::from_ascii(fqdn).map_err(|e| ("other", format!("{fqdn}: {e}")))?;
        let binding = Binding::new(
            name,
            scope.forward_zone.clone(),
            addr,
            scope.reverse_zone.clone(),
            &identity.dhcid_input(),
            scope.ttl,
            scope.conflict,
        )
        .map_err(|e| ("not_in_zone", e.to_string()))?;
        let mut last = ("network", "no DNS server configured".to_string());
        for server in &scope.servers {
            let mut plan = match (add, forward) {
                (true, true) => Plan::add(binding.clone()),
                (true, false) => Plan::add_reverse_only(binding.clone()),
                (false, true) => Plan::remove(binding.clone()),
                (false, false) => Plan::remove_reverse_only(binding.clone()),
            };
            let mut cc = ClientConfig::new(*server);
            cc.timeout = self.cfg.timeout;
            cc.attempts = 2;
            cc.key = scope.key.clone();
            match Client::new(cc).run(&mut plan) {
                Ok(r) => return Ok(r),
                Err(f) => {
                    let reason = failure_reason(&f.failure);
                    last = (reason, format!("{server}: {f}"));
                    // Try the next server only when this one did not answer.
                    if !matches!(reason, "timeout" | "network") {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn save(&mut self) {
        self.dirty = false;
        self.last_save = Instant::now();
        let keep: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.want != Want::Idle || e.published == Published::Records)
            .collect();
        let path = self.cfg.state_dir.join(STATE_FILE);
        let tmp = self.cfg.state_dir.join(format!("{STATE_FILE}.tmp"));
        let res = (|| -> std::io::Result<()> {
            if keep.is_empty() && !path.exists() {
                return Ok(());
            }
            let bytes = serde_json::to_vec(&keep).map_err(std::io::Error::other)?;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if let Err(e) = res {
            self.dirty = true;
            tracing::error!(file = %path.display(), error = %e, "ddns: cannot save the state file");
        }
    }

    fn refresh_shared(&mut self) {
        let mut names = HashMap::new();
        let mut per_scope: HashMap<&str, (u64, u64, u64)> = HashMap::new();
        for e in self.entries.values() {
            let s = per_scope.entry(e.scope.as_str()).or_default();
            match e.published {
                Published::Records => s.0 += 1,
                Published::Conflict => s.2 += 1,
                Published::Nothing => {}
            }
            if e.want != Want::Idle {
                s.1 += 1;
            }
            let mut flags = if e.forward { 0x2 | 0x4 } else { 0x1 | 0x4 };
            if e.published != Published::Records {
                flags = (flags & 0x1) | 0x8;
            }
            names.insert(e.addr, (e.fqdn.clone(), flags));
        }
        *lock(&self.shared.names) = names;
        self.shared
            .queue_depth
            .store(self.pending() as u64, Ordering::Relaxed);
        let c = &self.shared.counters;
        let now = now_ms();
        let mut failures = serde_json::Map::new();
        for (i, r) in REASONS.iter().enumerate() {
            failures.insert((*r).into(), c.failures[i].load(Ordering::Relaxed).into());
        }
        let scopes: Vec<Value> = self
            .cfg
            .scopes
            .iter()
            .map(|s| {
                let (p, q, x) = per_scope.get(s.scope.as_str()).copied().unwrap_or_default();
                json!({
                    "scope": s.scope,
                    "forward_zone": s.forward_zone.to_string(),
                    "reverse_zone": s.reverse_zone.to_string(),
                    "servers": s.servers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "key": s.key.as_ref().map(|k| k.name().to_string()),
                    "published": p, "pending": q, "conflicts": x,
                })
            })
            .collect();
        let mut work: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| {
                e.want != Want::Idle
                    || e.published != Published::Records
                    || e.by == Granter::Partner
            })
            .collect();
        work.sort_by_key(|e| (e.next_try, e.addr));
        let entries: Vec<Value> = work
            .iter()
            .take(STATUS_ENTRIES)
            .map(|e| {
                let state = match (e.want, e.published) {
                    (Want::Add, _) => "adding",
                    (Want::Remove, _) => "removing",
                    (Want::Idle, Published::Records) => "published",
                    (Want::Idle, Published::Conflict) => "conflict",
                    (Want::Idle, Published::Nothing) => "idle",
                };
                json!({
                    "addr": e.addr.to_string(), "fqdn": e.fqdn, "scope": e.scope,
                    "state": state, "granted_by": match e.by { Granter::Local => "local", Granter::Partner => "partner" },
                    "expires": e.expires, "attempts": e.attempts,
                    "next_try_in_secs": (e.want != Want::Idle).then(|| e.next_try.saturating_sub(now) / 1000),
                    "last_error": e.last_error,
                })
            })
            .collect();
        *lock(&self.shared.status) = json!({
            "queue_depth": self.pending(),
            "updates": {"add": c.added.load(Ordering::Relaxed), "remove": c.removed.load(Ordering::Relaxed)},
            "conflicts": c.conflicts.load(Ordering::Relaxed),
            "retries": c.retries.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "failures": failures,
            "scopes": scopes,
            "entries": entries,
        });
    }
}

/// Who is responsible for an entry after `by` reported it with `expires`: this server when it
/// granted or renewed the lease; the partner only when it extended the lease (a renewal through
/// the partner). The partner echoing our own lease back (recovery, UPDREQALL) changes nothing,
/// so that both partners never each leave the removal to the other.
fn takes_over(e: &Entry, by: Granter, expires: u32) -> Granter {
    match by {
        Granter::Local => Granter::Local,
        Granter::Partner if expires > e.expires => Granter::Partner,
        Granter::Partner => e.by,
    }
}

fn rcode_reason(rcode: Rcode) -> &'static str {
    match rcode {
        Rcode::SERVFAIL => "servfail",
        Rcode::REFUSED => "refused",
        Rcode::NOTAUTH => "notauth",
        Rcode::BADSIG => "badsig",
        Rcode::BADKEY => "badkey",
        Rcode::BADTIME => "badtime",
        _ => "other",
    }
}

fn failure_reason(f: &Failure) -> &'static str {
    match f {
        Failure::Timeout { .. } => "timeout",
        Failure::Io { .. } => "network",
        Failure::Tsig(VerifyError::ServerError { error, .. }) => rcode_reason(*error),
        Failure::Tsig(VerifyError::BadTime { .. }) => "badtime",
        Failure::Tsig(VerifyError::Unsigned { rcode }) if *rcode == Rcode::NOTAUTH => "notauth",
        Failure::Tsig(_) => "badsig",
        _ => "other",
    }
}
