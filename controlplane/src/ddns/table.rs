//! The updater's table, sans-IO: entries keyed by address, what each wants published and what
//! DNS holds of ours, the pending work derived from the two, DNS server health, counters.
//!
//! Time comes in as unix milliseconds (`now`); DNS work goes out as [`Job`]s from
//! [`Table::poll_job`] and comes back as [`JobResult`]s to [`Table::handle_result`]. The
//! updater thread drives it; the unit tests drive it with a made-up clock.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tandem_ddns::{Name, Rcode, Step};

use super::state::{Change, Saved, SavedHeld, SavedRecord};
use super::{DdnsConfig, Event, Granter, Identity, ScopeDns};

/// Unix time in milliseconds.
pub(super) type Ms = u64;

/// Why an attempt failed (the `reason` label of the failure counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Reason {
    Timeout,
    Network,
    Refused,
    Servfail,
    Notauth,
    Badkey,
    Badsig,
    Badtime,
    Other,
}

impl Reason {
    pub(super) const ALL: [Reason; 9] = [
        Reason::Timeout,
        Reason::Network,
        Reason::Refused,
        Reason::Servfail,
        Reason::Notauth,
        Reason::Badkey,
        Reason::Badsig,
        Reason::Badtime,
        Reason::Other,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Network => "network",
            Reason::Refused => "refused",
            Reason::Servfail => "servfail",
            Reason::Notauth => "notauth",
            Reason::Badkey => "badkey",
            Reason::Badsig => "badsig",
            Reason::Badtime => "badtime",
            Reason::Other => "other",
        }
    }

    /// The server did not answer (it is then marked down).
    pub(super) fn is_unreachable(self) -> bool {
        matches!(self, Reason::Timeout | Reason::Network)
    }

    /// A TSIG problem: the key (name, algorithm, secret) or the clock.
    fn is_key_problem(self) -> bool {
        matches!(
            self,
            Reason::Badkey | Reason::Badsig | Reason::Badtime | Reason::Notauth
        )
    }
}

/// Counters (monotonic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Stats {
    pub added: u64,
    pub removed: u64,
    pub conflicts: u64,
    pub retries: u64,
    pub failures: [u64; Reason::ALL.len()],
    pub dropped_queue_full: u64,
    pub ignored_no_scope: u64,
    pub ignored_not_in_zone: u64,
    pub expired: u64,
}

/// Per scope gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub entries: u64,
    pub pending: u64,
    pub published: u64,
    pub blocked: u64,
}

/// A name as published: the DHCID is computed over `fqdn` and `identity`.
#[derive(Clone, Debug)]
pub(super) struct Record {
    pub fqdn: Name,
    pub identity: Identity,
    /// The server writes the A record too (else only the PTR).
    pub forward: bool,
}

impl Record {
    /// Same name, same client (same DHCID), same records.
    fn same(&self, o: &Record) -> bool {
        self.forward == o.forward
            && self.fqdn == o.fqdn
            && (self.identity == o.identity
                || self.identity.dhcid_input() == o.identity.dhcid_input())
    }
}

/// A delay as logs show it: "250 ms", "4 s".
fn delay_text(ms: Ms) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{} s", ms.div_ceil(1000))
    }
}

/// The name without its final dot, as logs, status and failover show it.
pub(super) fn show(n: &Name) -> String {
    let s = n.to_string();
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => s,
    }
}

/// How sure we are that DNS holds a record of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Certainty {
    /// Our add completed.
    Published,
    /// An add was sent without a clear answer, or the partner published it.
    Maybe,
}

/// What DNS holds (or may hold) of an entry.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub record: Record,
    pub certainty: Certainty,
}

/// Why the wanted name is not being published (final for that name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Blocked {
    /// RFC 4703: another client's DHCID holds the name.
    Conflict,
    /// The name or the address is outside the scope's zones (after a reload).
    NotInZone,
}

/// An UPDATE procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Add,
    Remove,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
        }
    }
}

/// One address's entry.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub scope: String,
    /// What should be published; `None` once the lease ended (the records are to go).
    pub want: Option<Record>,
    /// What DNS holds of ours.
    pub held: Option<Held>,
    pub expires: u32,
    pub by: Granter,
    pub blocked: Option<Blocked>,
    pub attempts: u32,
    pub next_try: Ms,
    pub pending_since: Option<Ms>,
    pub last_error: Option<String>,
    // Not persisted.
    in_flight: bool,
    /// Waiting for a DNS server to come back (no attempt counted).
    deferred: bool,
    /// Forget the entry once the update in flight is back.
    forget: bool,
    due_at: Option<Ms>,
    expiry_at: Option<u32>,
    class: Class,
    /// `class` is counted in the table's gauges.
    counted: bool,
}

/// What an entry counts as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Class {
    pending: bool,
    published: bool,
    blocked: bool,
}

impl Entry {
    fn new(scope: &str, want: Record, expires: u32, by: Granter, now: Ms) -> Entry {
        Entry {
            scope: scope.to_string(),
            want: Some(want),
            held: None,
            expires,
            by,
            blocked: None,
            attempts: 0,
            next_try: now,
            pending_since: None,
            last_error: None,
            in_flight: false,
            deferred: false,
            forget: false,
            due_at: None,
            expiry_at: None,
            class: Class::default(),
            counted: false,
        }
    }

    /// The work this entry needs next.
    fn next_op(&self) -> Option<(Op, &Record)> {
        match (&self.want, &self.held) {
            (None, None) => None,
            (None, Some(h)) => Some((Op::Remove, &h.record)),
            (Some(w), Some(h)) if !h.record.same(w) => {
                // Replace: the old name goes first (ours to remove when we granted the new
                // lease, or when we published the old name ourselves).
                if self.by == Granter::Local || h.certainty == Certainty::Published {
                    Some((Op::Remove, &h.record))
                } else {
                    None
                }
            }
            (Some(_), Some(h)) if h.certainty == Certainty::Published => None,
            (Some(w), _) => {
                if self.by == Granter::Partner || self.blocked.is_some() {
                    None
                } else {
                    Some((Op::Add, w))
                }
            }
        }
    }

    /// "add", "remove" or "replace".
    fn pending_label(&self) -> Option<&'static str> {
        match self.next_op()? {
            (Op::Add, _) => Some("add"),
            (Op::Remove, _) if self.want.is_some() => Some("replace"),
            (Op::Remove, _) => Some("remove"),
        }
    }

    fn published_here(&self) -> bool {
        matches!((&self.want, &self.held), (Some(w), Some(h)) if h.certainty == Certainty::Published && h.record.same(w))
    }

    fn classify(&self) -> Class {
        Class {
            pending: self.next_op().is_some(),
            published: self.published_here(),
            blocked: self.blocked.is_some() && self.want.is_some(),
        }
    }

    /// The name and DDNS flags for failover (0x1 client updates A, 0x2 A, 0x4 PTR, 0x8
    /// pending).
    fn flags(&self) -> Option<(String, u16)> {
        let w = self.want.as_ref()?;
        let mut f = 0u16;
        if !w.forward {
            f |= 0x1;
        }
        if self.published_here() {
            if w.forward {
                f |= 0x2;
            }
            f |= 0x4;
        }
        if self.class.pending {
            f |= 0x8;
        }
        Some((show(&w.fqdn), f))
    }

    fn state_label(&self) -> &'static str {
        match self.pending_label() {
            Some("add") => return "adding",
            Some("replace") => return "replacing",
            Some(_) => return "removing",
            None => {}
        }
        match self.blocked {
            Some(Blocked::Conflict) => return "conflict",
            Some(Blocked::NotInZone) => return "not_in_zone",
            None => {}
        }
        if self.published_here() {
            "published"
        } else if self.by == Granter::Partner {
            "partner"
        } else {
            "idle"
        }
    }

    fn published_label(&self) -> &'static str {
        if self.blocked == Some(Blocked::Conflict) && self.held.is_none() {
            return "conflict";
        }
        match &self.held {
            None => "nothing",
            Some(h) if h.certainty == Certainty::Maybe => "unknown",
            Some(h) if h.record.forward => "a+ptr",
            Some(_) => "ptr",
        }
    }
}

/// Work for a DNS thread.
#[derive(Clone, Debug)]
pub(super) struct Job {
    pub addr: Ipv4Addr,
    pub op: Op,
    pub record: Record,
    pub scope: Arc<ScopeDns>,
    /// In order; the first that answers wins.
    pub servers: Vec<SocketAddr>,
    /// The servers in `servers` that are marked down and probed by this job.
    pub probes: Vec<SocketAddr>,
    pub timeout: Duration,
    /// `held` was set to "maybe" when the job went out.
    pub set_held: bool,
}

/// How a job ended.
#[derive(Clone, Debug)]
pub(super) enum JobOutcome {
    Completed,
    Conflict,
    Failed {
        reason: Reason,
        server: Option<SocketAddr>,
        text: String,
    },
    /// The binding could not be built (name or address outside the zones).
    BadBinding(String),
}

/// Whether a server answered: `Err` with why not (timeout, network).
pub(super) type Answer = Result<(), (Reason, String)>;

/// A job back from a DNS thread.
#[derive(Clone, Debug)]
pub(super) struct JobResult {
    pub job: Job,
    pub outcome: JobOutcome,
    /// Each server tried: `Ok` it answered, `Err` it did not (timeout, network).
    pub servers: Vec<(SocketAddr, Answer)>,
    /// An update may have been applied (a step succeeded, or one timed out).
    pub touched: bool,
    /// The steps of the plan that ended the job, with their response codes.
    pub history: Vec<(Step, Rcode)>,
}

/// A DNS server's health.
#[derive(Clone, Debug, Default)]
struct Server {
    down_since: Option<Ms>,
    /// Next probe no earlier than this.
    until: Ms,
    backoff: Ms,
    probing: bool,
    last_error: Option<(Ms, String)>,
    last_ok: Option<Ms>,
}

/// Rate limit for warn lines: `burst` lines per `window`, then a count of what was left out.
#[derive(Clone, Debug)]
struct LogLimit {
    window: Ms,
    burst: u32,
    start: Ms,
    used: u32,
    suppressed: u64,
}

impl LogLimit {
    fn new(window: Ms, burst: u32) -> LogLimit {
        LogLimit {
            window,
            burst,
            start: 0,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether to log now; reports the lines left out in the previous window.
    fn allow(&mut self, now: Ms, what: &str) -> bool {
        if now.saturating_sub(self.start) >= self.window {
            if self.suppressed > 0 {
                tracing::warn!(
                    "ddns: {} more {what} not logged in the last {} s",
                    self.suppressed,
                    self.window / 1000
                );
            }
            self.start = now;
            self.used = 0;
            self.suppressed = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// The settings the table works with.
#[derive(Clone, Debug)]
struct Settings {
    scopes: Vec<Arc<ScopeDns>>,
    queue_max: usize,
    retry_min: Ms,
    retry_max: Ms,
    timeout: Duration,
}

impl Settings {
    fn of(cfg: &DdnsConfig) -> Settings {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let retry_min = ms(cfg.retry_min).max(1);
        Settings {
            scopes: cfg.scopes.iter().cloned().map(Arc::new).collect(),
            queue_max: cfg.queue_max,
            retry_min,
            retry_max: ms(cfg.retry_max).max(retry_min),
            timeout: cfg.timeout.max(Duration::from_millis(10)),
        }
    }
}

/// The table.
pub(super) struct Table {
    cfg: Settings,
    /// Boxed: the map grows by rehashing (a burst that moves every value), and sync takes
    /// an entry out and puts it back; both then move a pointer, not a few hundred bytes.
    entries: HashMap<Ipv4Addr, Box<Entry>>,
    /// (next try, address) of the entries with work, not in flight.
    due: BTreeSet<(Ms, Ipv4Addr)>,
    /// (expiry, address) of the entries with a name.
    expiring: BTreeSet<(u32, Ipv4Addr)>,
    pending: usize,
    counts: HashMap<String, Counts>,
    servers: HashMap<SocketAddr, Server>,
    stats: Stats,
    changed: HashSet<Ipv4Addr>,
    /// Addresses whose pending work or published records changed since they were last saved.
    unsaved_work: HashSet<Ipv4Addr>,
    /// Addresses with other changes (expiry, next try, last error) not saved yet.
    unsaved_soft: HashSet<Ipv4Addr>,
    dirty_work: bool,
    dirty_expiry: bool,
    queue_full_log: Option<Ms>,
    zone_log: LogLimit,
    fail_log: LogLimit,
}

impl Table {
    pub(super) fn new(cfg: &DdnsConfig) -> Table {
        Table {
            cfg: Settings::of(cfg),
            entries: HashMap::new(),
            due: BTreeSet::new(),
            expiring: BTreeSet::new(),
            pending: 0,
            counts: HashMap::new(),
            servers: HashMap::new(),
            stats: Stats::default(),
            changed: HashSet::new(),
            unsaved_work: HashSet::new(),
            unsaved_soft: HashSet::new(),
            dirty_work: false,
            dirty_expiry: false,
            queue_full_log: None,
            zone_log: LogLimit::new(10_000, 10),
            fail_log: LogLimit::new(10_000, 20),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reading

    pub(super) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Entries with pending work (in flight included).
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn dirty(&self) -> bool {
        self.dirty_work || self.dirty_expiry
    }

    pub(super) fn dirty_work(&self) -> bool {
        self.dirty_work
    }

    pub(super) fn mark_clean(&mut self) {
        self.dirty_work = false;
        self.dirty_expiry = false;
    }

    pub(super) fn mark_dirty(&mut self) {
        self.dirty_work = true;
    }

    pub(super) fn scope_names(&self) -> Vec<String> {
        self.cfg.scopes.iter().map(|s| s.scope.clone()).collect()
    }

    /// The name and DDNS flags of `addr`.
    pub(super) fn name_flags(&self, addr: Ipv4Addr) -> Option<(String, u16)> {
        self.entries.get(&addr)?.flags()
    }

    pub(super) fn all_names(&self) -> Vec<(Ipv4Addr, (String, u16))> {
        self.entries
            .iter()
            .filter_map(|(a, e)| Some((*a, e.flags()?)))
            .collect()
    }

    /// Addresses whose name or flags may have changed since the last call.
    pub(super) fn take_changed(&mut self) -> Vec<Ipv4Addr> {
        self.changed.drain().collect()
    }

    pub(super) fn scope_counts(&self) -> Vec<(String, Counts)> {
        self.cfg
            .scopes
            .iter()
            .map(|s| {
                (
                    s.scope.clone(),
                    self.counts.get(&s.scope).copied().unwrap_or_default(),
                )
            })
            .collect()
    }

    pub(super) fn server_states(&self) -> Vec<(SocketAddr, bool)> {
        let mut v: Vec<(SocketAddr, bool)> = self
            .server_list()
            .into_iter()
            .map(|a| {
                (
                    a,
                    self.servers.get(&a).is_none_or(|s| s.down_since.is_none()),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn server_list(&self) -> Vec<SocketAddr> {
        let mut seen = Vec::new();
        for s in &self.cfg.scopes {
            for a in &s.servers {
                if !seen.contains(a) {
                    seen.push(*a);
                }
            }
        }
        seen
    }

    /// When the table next has something to do (a try or an expiry), if ever.
    pub(super) fn poll_timeout(&self) -> Option<Ms> {
        let due = self.due.first().map(|(t, _)| *t);
        let exp = self.expiring.first().map(|(x, _)| u64::from(*x) * 1000);
        match (due, exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn scope_for(&self, addr: Ipv4Addr) -> Option<&Arc<ScopeDns>> {
        self.cfg.scopes.iter().find(|s| s.subnet.contains(addr))
    }

    fn backoff(&self, attempts: u32) -> Ms {
        let shift = attempts.saturating_sub(1).min(40);
        self.cfg
            .retry_min
            .saturating_mul(1u64 << shift)
            .min(self.cfg.retry_max)
    }

    // -----------------------------------------------------------------------------------------
    // Index upkeep: every change to an entry ends with `sync`.

    /// Re-files `addr` after a change: due and expiry indexes, counts, the names to publish;
    /// drops the entry when nothing is wanted or held.
    fn sync(&mut self, addr: Ipv4Addr, now: Ms, work: bool) {
        self.changed.insert(addr);
        if work {
            self.dirty_work = true;
            self.unsaved_work.insert(addr);
        } else {
            self.dirty_expiry = true;
            self.unsaved_soft.insert(addr);
        }
        let Some(mut e) = self.entries.remove(&addr) else {
            return;
        };
        if let Some(t) = e.due_at.take() {
            self.due.remove(&(t, addr));
        }
        if let Some(x) = e.expiry_at.take() {
            self.expiring.remove(&(x, addr));
        }
        self.uncount(&mut e);
        // A partner's name is taken as published by the partner (so that its end, after a
        // takeover, removes it).
        if e.by == Granter::Partner {
            if let Some(w) = &e.want {
                let keep = e
                    .held
                    .as_ref()
                    .is_some_and(|h| h.certainty == Certainty::Published || h.record.same(w));
                if !keep {
                    e.held = Some(Held {
                        record: w.clone(),
                        certainty: Certainty::Maybe,
                    });
                }
            }
        }
        if e.want.is_none() && e.held.is_none() && !e.in_flight {
            return; // nothing left: forgotten
        }
        if e.want.is_none() {
            e.blocked = None;
        }
        e.class = e.classify();
        if e.class.pending {
            e.pending_since.get_or_insert(now);
            if !e.in_flight {
                self.due.insert((e.next_try, addr));
                e.due_at = Some(e.next_try);
            }
        } else {
            e.pending_since = None;
            e.attempts = 0;
            e.deferred = false;
        }
        if e.want.is_some() && e.expires != 0 {
            self.expiring.insert((e.expires, addr));
            e.expiry_at = Some(e.expires);
        }
        self.count(&mut e);
        self.entries.insert(addr, e);
    }

    fn count(&mut self, e: &mut Entry) {
        debug_assert!(!e.counted);
        e.counted = true;
        let c = self.counts.entry(e.scope.clone()).or_default();
        c.entries += 1;
        c.pending += u64::from(e.class.pending);
        c.published += u64::from(e.class.published);
        c.blocked += u64::from(e.class.blocked);
        self.pending += usize::from(e.class.pending);
    }

    fn uncount(&mut self, e: &mut Entry) {
        if !e.counted {
            return;
        }
        e.counted = false;
        if let Some(c) = self.counts.get_mut(&e.scope) {
            c.entries = c.entries.saturating_sub(1);
            c.pending = c.pending.saturating_sub(u64::from(e.class.pending));
            c.published = c.published.saturating_sub(u64::from(e.class.published));
            c.blocked = c.blocked.saturating_sub(u64::from(e.class.blocked));
        }
        self.pending = self.pending.saturating_sub(usize::from(e.class.pending));
    }

    /// Drops `addr`'s entry whatever it holds.
    fn forget(&mut self, addr: Ipv4Addr, now: Ms) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.want = None;
            e.held = None;
            e.in_flight = false;
        }
        self.sync(addr, now, true);
    }

    // -----------------------------------------------------------------------------------------
    // Events

    /// Takes one event. `takeover(scope)`: this server acts for the partner's names there.
    pub(super) fn handle_event(&mut self, now: Ms, ev: Event, takeover: &dyn Fn(&str) -> bool) {
        match ev {
            Event::Granted {
                addr,
                fqdn,
                identity,
                expires,
                forward,
                by,
            } => self.granted(
                now,
                addr,
                Record {
                    fqdn,
                    identity,
                    forward,
                },
                expires,
                by,
            ),
            Event::Renewed { addr, expires, by } => self.renewed(now, addr, expires, by),
            Event::Ended { addr } => self.ended(now, addr, takeover),
        }
    }

    fn granted(&mut self, now: Ms, addr: Ipv4Addr, rec: Record, expires: u32, by: Granter) {
        let known = self
            .entries
            .get(&addr)
            .and_then(|e| e.want.as_ref())
            .is_some_and(|w| w.same(&rec));
        if known {
            // Every ACK of a renewal: refresh the lease only, no DNS traffic. The name was
            // checked against its scope's zones when it was first granted (a reload keeps the
            // entries of the scopes it keeps, see `reconfigure`), so that check is not redone
            // for each of the renewals.
            self.renewed(now, addr, expires, by);
            return;
        }
        let Some(scope) = self.scope_for(addr).cloned() else {
            self.stats.ignored_no_scope += 1;
            tracing::debug!(%addr, name = %show(&rec.fqdn), "ddns: the address is in no scope with DNS; name ignored");
            return;
        };
        let in_zone = rec.fqdn.is_subdomain_of(&scope.forward_zone)
            && Name::reverse_ipv4(addr).is_subdomain_of(&scope.reverse_zone);
        if !in_zone {
            self.stats.ignored_not_in_zone += 1;
            if self.zone_log.allow(now, "names outside their zones") {
                tracing::warn!(
                    scope = %scope.scope,
                    "ddns: not registering {} for {addr}: outside the zones {} / {}",
                    show(&rec.fqdn),
                    show(&scope.forward_zone),
                    show(&scope.reverse_zone)
                );
            }
            return;
        }
        let e = match self.entries.get(&addr) {
            None => Box::new(Entry::new(&scope.scope, rec.clone(), expires, by, now)),
            Some(old) => {
                let mut e = old.clone();
                // A new name, a new client, or granted again after an end (if the removal has
                // not run yet, what DNS holds is kept: `next_op` finds nothing to do).
                e.by = by;
                e.blocked = None;
                e.want = Some(rec.clone());
                e.forget = false;
                e.expires = expires;
                e.scope = scope.scope.clone();
                e.attempts = 0;
                e.next_try = now;
                e.last_error = None;
                e
            }
        };
        // The bound: a grant may not add an entry with pending work to a full queue.
        let was_pending = self.entries.get(&addr).is_some_and(|o| o.class.pending);
        if !was_pending && e.next_op().is_some() && self.pending >= self.cfg.queue_max {
            self.stats.dropped_queue_full += 1;
            let log = self
                .queue_full_log
                .is_none_or(|t| now.saturating_sub(t) >= 10_000);
            if log {
                self.queue_full_log = Some(now);
                tracing::warn!(
                    queue_max = self.cfg.queue_max,
                    "ddns: the update queue is full ({} entries wait); not registering {} for {addr} (counted as dropped, reason queue_full)",
                    self.pending,
                    show(&rec.fqdn)
                );
            }
            return;
        }
        // `e` is a copy of the stored entry (index fields included, which sync clears).
        self.entries.insert(addr, e);
        self.sync(addr, now, true);
    }

    fn renewed(&mut self, now: Ms, addr: Ipv4Addr, expires: u32, by: Granter) {
        let Some(e) = self.entries.get_mut(&addr) else {
            return;
        };
        if e.want.is_none() {
            return; // ended: a renewal without a name does not bring the name back
        }
        let (who, exp) = after_renewal(e.by, e.expires, by, expires);
        if (who, exp) == (e.by, e.expires) {
            return;
        }
        if who == e.by {
            // Only the lease's end moved (every renewal): the entry's class, name and failover
            // flags are what they were, so only the expiry backstop moves and the change is
            // saved with the others of its kind (see `take_changes`).
            e.expires = exp;
            if let Some(x) = e.expiry_at.take() {
                self.expiring.remove(&(x, addr));
            }
            if exp != 0 {
                self.expiring.insert((exp, addr));
                e.expiry_at = Some(exp);
            }
            self.dirty_expiry = true;
            self.unsaved_soft.insert(addr);
            return;
        }
        e.by = who;
        e.expires = exp;
        self.sync(addr, now, true);
    }

    fn ended(&mut self, now: Ms, addr: Ipv4Addr, takeover: &dyn Fn(&str) -> bool) {
        let Some(e) = self.entries.get_mut(&addr) else {
            return;
        };
        if e.want.is_none() {
            return; // already ending
        }
        let ours = e.by == Granter::Local || takeover(&e.scope);
        if !ours {
            // The partner's to remove.
            if e.in_flight {
                e.forget = true;
                e.want = None;
                e.held = None;
                self.sync(addr, now, true);
            } else {
                self.forget(addr, now);
            }
            return;
        }
        e.want = None;
        e.blocked = None;
        e.attempts = 0;
        e.next_try = now;
        e.deferred = false;
        self.sync(addr, now, true);
    }

    /// The expiry backstop: leases past their end with no end seen are ended now.
    pub(super) fn handle_timeout(&mut self, now: Ms, takeover: &dyn Fn(&str) -> bool) {
        while let Some(&(x, addr)) = self.expiring.first() {
            if u64::from(x) * 1000 > now {
                break;
            }
            self.expiring.remove(&(x, addr));
            if let Some(e) = self.entries.get_mut(&addr) {
                e.expiry_at = None;
                if let Some(w) = &e.want {
                    self.stats.expired += 1;
                    tracing::info!(scope = %e.scope,
                        "ddns: the lease on {addr} ({}) expired with no end seen; ending its name",
                        show(&w.fqdn));
                }
            }
            self.ended(now, addr, takeover);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Work

    /// The next update due at `now`, if a server can take it.
    pub(super) fn poll_job(&mut self, now: Ms) -> Option<Job> {
        loop {
            let &(t, addr) = self.due.first()?;
            if t > now {
                return None;
            }
            self.due.remove(&(t, addr));
            let Some(e) = self.entries.get_mut(&addr) else {
                continue;
            };
            e.due_at = None;
            let Some((op, rec)) = e.next_op().map(|(o, r)| (o, r.clone())) else {
                self.sync(addr, now, false);
                continue;
            };
            let scope_name = e.scope.clone();
            let Some(scope) = self
                .cfg
                .scopes
                .iter()
                .find(|s| s.scope == scope_name && s.subnet.contains(addr))
                .cloned()
            else {
                self.forget(addr, now);
                continue;
            };
            let (servers, probes, wake) = self.pick_servers(&scope, now);
            let Some(e) = self.entries.get_mut(&addr) else {
                continue;
            };
            if servers.is_empty() {
                // Every server of the scope is down and waits for its next probe.
                e.deferred = true;
                e.next_try = wake.max(now.saturating_add(1));
                if scope.servers.is_empty() {
                    e.last_error = Some("no DNS server configured for the scope".into());
                }
                self.sync(addr, now, false);
                continue;
            }
            let set_held = op == Op::Add && e.held.is_none();
            if set_held {
                e.held = Some(Held {
                    record: rec.clone(),
                    certainty: Certainty::Maybe,
                });
            }
            e.in_flight = true;
            e.deferred = false;
            for p in &probes {
                self.servers.entry(*p).or_default().probing = true;
            }
            self.sync(addr, now, set_held);
            return Some(Job {
                addr,
                op,
                record: rec,
                scope,
                servers,
                probes,
                timeout: self.cfg.timeout,
                set_held,
            });
        }
    }

    /// The servers a job may try now (in order), those among them it probes, and when to
    /// look again if there are none.
    fn pick_servers(
        &mut self,
        scope: &ScopeDns,
        now: Ms,
    ) -> (Vec<SocketAddr>, Vec<SocketAddr>, Ms) {
        let mut list = Vec::new();
        let mut probes = Vec::new();
        let mut wake = now.saturating_add(self.cfg.retry_max);
        // A probe runs at most every server's steps × two transmissions.
        let probe_wait = u64::try_from(self.cfg.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(3)
            .saturating_add(500);
        for a in &scope.servers {
            let s = self.servers.entry(*a).or_default();
            if s.down_since.is_none() {
                list.push(*a);
            } else if !s.probing && s.until <= now {
                list.push(*a);
                probes.push(*a);
            } else if s.probing {
                wake = wake.min(now.saturating_add(probe_wait));
            } else {
                wake = wake.min(s.until);
            }
        }
        (list, probes, wake)
    }

    /// Takes a job's result.
    pub(super) fn handle_result(&mut self, now: Ms, r: JobResult) {
        let JobResult {
            job,
            outcome,
            servers,
            touched,
            history,
        } = r;
        self.server_results(now, &job, &servers);
        let addr = job.addr;
        let backoff_next = {
            let attempts = self
                .entries
                .get(&addr)
                .map_or(0, |e| e.attempts)
                .saturating_add(1);
            self.backoff(attempts)
        };
        let Some(e) = self.entries.get_mut(&addr) else {
            return;
        };
        e.in_flight = false;
        if e.forget {
            self.forget(addr, now);
            return;
        }
        let name = show(&job.record.fqdn);
        let held_is = |e: &Entry| e.held.as_ref().is_some_and(|h| h.record.same(&job.record));
        match (&outcome, job.op) {
            (JobOutcome::Completed, Op::Add) => {
                self.stats.added += 1;
                e.held = Some(Held {
                    record: job.record.clone(),
                    certainty: Certainty::Published,
                });
                e.attempts = 0;
                e.last_error = None;
                e.next_try = now;
                if job.record.forward {
                    tracing::info!(scope = %e.scope, "ddns: published {name} A {addr} and PTR");
                } else {
                    tracing::info!(scope = %e.scope,
                        "ddns: published PTR {addr} -> {name} (the client updates its own A record)");
                }
            }
            (JobOutcome::Completed, Op::Remove) => {
                self.stats.removed += 1;
                if held_is(e) {
                    e.held = None;
                }
                e.attempts = 0;
                e.last_error = None;
                e.next_try = now;
                let hit = |s: Step| {
                    history
                        .iter()
                        .any(|(st, rc)| *st == s && *rc == Rcode::NOERROR)
                };
                let (a, ptr) = (hit(Step::ForwardRemoveAddress), hit(Step::ReverseRemove));
                let scope = &e.scope;
                match (a, ptr) {
                    (true, true) => tracing::info!(%scope, "ddns: removed {name} A {addr} and PTR"),
                    (true, false) => tracing::info!(%scope,
                        "ddns: removed {name} A {addr} (the PTR was not ours or already gone)"),
                    (false, true) if job.record.forward => tracing::info!(%scope,
                        "ddns: removed PTR {addr} -> {name} (the A record was not ours or already gone)"),
                    (false, true) => tracing::info!(%scope, "ddns: removed PTR {addr} -> {name}"),
                    (false, false) => tracing::info!(%scope,
                        "ddns: nothing to remove for {name} / {addr}: the records are gone or belong to another client"),
                }
            }
            (JobOutcome::Conflict, _) => {
                self.stats.conflicts += 1;
                if held_is(e)
                    && e.held
                        .as_ref()
                        .is_some_and(|h| h.certainty == Certainty::Maybe)
                {
                    e.held = None;
                }
                if e.want.as_ref().is_some_and(|w| w.same(&job.record)) {
                    e.blocked = Some(Blocked::Conflict);
                }
                e.attempts = 0;
                e.last_error = Some("conflict: another client's DHCID holds the name".into());
                tracing::warn!(scope = %e.scope,
                    "ddns: not publishing {name} for {addr}: the name belongs to another client (its DHCID differs; RFC 4703)");
            }
            (JobOutcome::BadBinding(text), op) => {
                match op {
                    Op::Add => {
                        if job.set_held && held_is(e) {
                            e.held = None;
                        }
                        if e.want.as_ref().is_some_and(|w| w.same(&job.record)) {
                            e.blocked = Some(Blocked::NotInZone);
                        }
                    }
                    Op::Remove => {
                        if held_is(e) {
                            e.held = None;
                        }
                    }
                }
                e.last_error = Some(text.clone());
                tracing::warn!(scope = %e.scope, "ddns: cannot {} {name} for {addr}: {text}", op.as_str());
            }
            (
                JobOutcome::Failed {
                    reason,
                    server,
                    text,
                },
                op,
            ) => {
                if job.op == Op::Add
                    && job.set_held
                    && !touched
                    && e.held
                        .as_ref()
                        .is_some_and(|h| h.certainty == Certainty::Maybe)
                    && held_is(e)
                {
                    e.held = None; // nothing was sent that could have been applied
                }
                self.stats.failures[*reason as usize] += 1;
                self.stats.retries += 1;
                e.attempts = e.attempts.saturating_add(1);
                let delay = backoff_next;
                e.next_try = now.saturating_add(delay);
                let at = server.map_or_else(|| "no server".to_string(), |s| s.to_string());
                e.last_error = Some(format!("{} at {at}: {text}", reason.as_str()));
                let retry = delay_text(delay);
                let op_word = match (op, e.want.is_some()) {
                    (Op::Add, _) => "publishing",
                    (Op::Remove, true) => "replacing",
                    (Op::Remove, false) => "removing",
                };
                if self.fail_log.allow(now, "update failures") {
                    let scope = &e.scope;
                    if reason.is_key_problem() {
                        tracing::error!(%scope,
                            "ddns: update of {name} ({op_word} {addr}) failed ({} at {at}: the server refused our TSIG key; check that the key name, algorithm and secret match the server's, and the clock), retry in {retry}",
                            reason.as_str());
                    } else {
                        tracing::warn!(%scope,
                            "ddns: update of {name} ({op_word} {addr}) failed ({} at {at}: {text}), retry in {retry}",
                            reason.as_str());
                    }
                }
            }
        }
        self.sync(addr, now, true);
    }

    /// Server health from a job's result.
    fn server_results(&mut self, now: Ms, job: &Job, tried: &[(SocketAddr, Answer)]) {
        let (retry_min, retry_max) = (self.cfg.retry_min, self.cfg.retry_max);
        let mut back_up = Vec::new();
        for (a, r) in tried {
            let probed = job.probes.contains(a);
            let s = self.servers.entry(*a).or_default();
            if probed {
                s.probing = false;
            }
            match r {
                Ok(()) => {
                    s.last_ok = Some(now);
                    if let Some(since) = s.down_since.take() {
                        tracing::info!(
                            "ddns: DNS server {a} answers again (after {} s); the updates waiting for it go now",
                            now.saturating_sub(since).div_ceil(1000)
                        );
                        s.backoff = 0;
                        back_up.push(*a);
                    }
                }
                Err((reason, text)) => {
                    s.last_error = Some((now, format!("{}: {text}", reason.as_str())));
                    if s.down_since.is_none() {
                        s.down_since = Some(now);
                        s.backoff = retry_min;
                        s.until = now.saturating_add(retry_min);
                        tracing::warn!(
                            "ddns: DNS server {a} is not answering ({}); updates through it wait for it, next try in {}",
                            reason.as_str(),
                            delay_text(retry_min)
                        );
                    } else if probed {
                        s.backoff = s.backoff.saturating_mul(2).clamp(retry_min, retry_max);
                        s.until = now.saturating_add(s.backoff);
                    }
                }
            }
        }
        for p in &job.probes {
            if let Some(s) = self.servers.get_mut(p) {
                s.probing = false;
            }
        }
        if !back_up.is_empty() {
            let waiting: Vec<Ipv4Addr> = self
                .entries
                .iter()
                .filter(|(_, e)| e.deferred && !e.in_flight)
                .map(|(a, _)| *a)
                .collect();
            for a in waiting {
                let uses = self
                    .scope_for(a)
                    .is_some_and(|s| s.servers.iter().any(|x| back_up.contains(x)));
                if let Some(e) = self.entries.get_mut(&a).filter(|_| uses) {
                    e.deferred = false;
                    e.next_try = now;
                    self.sync(a, now, false);
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Settings, persistence

    /// New settings: entries move to the scope their address is in now; those in none are
    /// forgotten.
    pub(super) fn reconfigure(&mut self, cfg: &DdnsConfig, now: Ms) {
        self.cfg = Settings::of(cfg);
        let keep: HashSet<SocketAddr> = self.server_list().into_iter().collect();
        self.servers.retain(|a, _| keep.contains(a));
        let addrs: Vec<Ipv4Addr> = self.entries.keys().copied().collect();
        let mut dropped = 0usize;
        for a in addrs {
            match self.scope_for(a).map(|s| s.scope.clone()) {
                Some(name) => {
                    if let Some(mut e) = self.entries.remove(&a) {
                        if e.scope != name {
                            self.uncount(&mut e);
                            e.scope = name;
                        }
                        self.entries.insert(a, e);
                    }
                    self.sync(a, now, true);
                }
                None => {
                    dropped += 1;
                    self.forget(a, now);
                }
            }
        }
        self.counts.retain(|_, c| c.entries > 0);
        if dropped > 0 {
            tracing::info!(
                "ddns: {dropped} names forgotten: their addresses are no longer in a scope with DNS (their records stay in DNS)"
            );
        }
        tracing::info!(scopes = self.cfg.scopes.len(), "ddns: settings reloaded");
    }

    /// Takes entries read from the state file.
    pub(super) fn load(&mut self, saved: Vec<Saved>, now: Ms) {
        let total = saved.len();
        let (mut no_scope, mut bad) = (0usize, 0usize);
        for s in saved {
            let addr = s.addr;
            let Some(scope) = self.scope_for(addr).map(|x| x.scope.clone()) else {
                no_scope += 1;
                continue;
            };
            let Some(e) = entry_of(s, scope) else {
                bad += 1;
                continue;
            };
            if let Some(mut old) = self.entries.insert(addr, Box::new(e)) {
                // A duplicate in the file: the last one counts.
                self.uncount(&mut old);
                if let Some(t) = old.due_at {
                    self.due.remove(&(t, addr));
                }
                if let Some(x) = old.expiry_at {
                    self.expiring.remove(&(x, addr));
                }
            }
            self.sync(addr, now, false);
        }
        self.mark_clean();
        if total > 0 {
            tracing::info!(
                entries = self.entries.len(),
                pending = self.pending,
                "ddns: state loaded; pending updates resume"
            );
        }
        if no_scope > 0 {
            tracing::info!("ddns: {no_scope} saved names dropped: their addresses are in no scope with DNS now");
        }
        if bad > 0 {
            tracing::error!("ddns: {bad} saved entries were not valid and were dropped");
        }
    }

    /// A snapshot of every entry for generation `generation`; nothing is unsaved after it.
    pub(super) fn encode(&mut self, generation: u64) -> Vec<u8> {
        self.unsaved_work.clear();
        self.unsaved_soft.clear();
        self.mark_clean();
        let mut rows: Vec<Saved> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.forget)
            .map(|(a, e)| saved_of(*a, e))
            .collect();
        rows.sort_by_key(|s| s.addr);
        super::state::encode(generation, rows)
    }

    /// The changes not saved yet, for the journal: what the entry of each changed address is
    /// now, or that it has none. Only those that changed pending work or what DNS holds unless
    /// `all` (the others, such as an expiry moved by a renewal, can wait for a later call).
    pub(super) fn take_changes(&mut self, all: bool) -> Vec<Change> {
        let mut addrs: Vec<Ipv4Addr> = self.unsaved_work.drain().collect();
        if all {
            addrs.extend(self.unsaved_soft.drain());
        } else {
            for a in &addrs {
                self.unsaved_soft.remove(a);
            }
        }
        addrs.sort_unstable();
        addrs.dedup();
        self.dirty_work = false;
        self.dirty_expiry = !self.unsaved_soft.is_empty();
        addrs
            .into_iter()
            .map(|a| match self.entries.get(&a).filter(|e| !e.forget) {
                Some(e) => Change::Put(Box::new(saved_of(a, e))),
                None => Change::Del(a),
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Status

    /// The table's part of the status: per scope counts, queue, servers, entries.
    pub(super) fn status(&self, now: Ms, max_entries: usize) -> Value {
        let secs_until = |t: Ms| t.saturating_sub(now).div_ceil(1000);
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| e.class.pending)
            .min_by_key(|(a, e)| (e.pending_since.unwrap_or(now), **a))
            .map(|(a, e)| {
                json!({
                    "addr": a.to_string(),
                    "fqdn": entry_name(e),
                    "op": e.pending_label(),
                    "waiting_secs": now.saturating_sub(e.pending_since.unwrap_or(now)) / 1000,
                    "attempts": e.attempts,
                    "last_error": e.last_error,
                })
            });
        let scopes: Vec<Value> = self
            .cfg
            .scopes
            .iter()
            .map(|s| {
                let c = self.counts.get(&s.scope).copied().unwrap_or_default();
                json!({
                    "scope": s.scope,
                    "forward_zone": show(&s.forward_zone),
                    "reverse_zone": show(&s.reverse_zone),
                    "servers": s.servers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "key": s.key.as_ref().map(|k| show(k.name())),
                    "entries": c.entries, "published": c.published, "pending": c.pending,
                    "conflicts": c.blocked,
                })
            })
            .collect();
        let servers: Vec<Value> = self
            .server_list()
            .into_iter()
            .map(|a| {
                let s = self.servers.get(&a).cloned().unwrap_or_default();
                json!({
                    "server": a.to_string(),
                    "state": if s.down_since.is_some() { "down" } else { "up" },
                    "down_secs": s.down_since.map(|t| now.saturating_sub(t) / 1000),
                    "next_probe_in_secs": s.down_since.map(|_| secs_until(s.until)),
                    "last_error": s.last_error.as_ref().map(|(_, e)| e.clone()),
                    "last_error_secs_ago": s.last_error.as_ref().map(|(t, _)| now.saturating_sub(*t) / 1000),
                    "last_ok_secs_ago": s.last_ok.map(|t| now.saturating_sub(t) / 1000),
                })
            })
            .collect();
        let mut list: Vec<(&Ipv4Addr, &Entry)> =
            self.entries.iter().map(|(a, e)| (a, &**e)).collect();
        // Pending work first (oldest first), then the rest by address.
        list.sort_by_key(|(a, e)| {
            (
                !e.class.pending,
                if e.class.pending {
                    e.pending_since.unwrap_or(0)
                } else {
                    0
                },
                **a,
            )
        });
        let entries: Vec<Value> = list
            .iter()
            .take(max_entries)
            .map(|(a, e)| {
                json!({
                    "addr": a.to_string(),
                    "fqdn": entry_name(e),
                    "scope": e.scope,
                    "state": e.state_label(),
                    "published": e.published_label(),
                    "pending": e.pending_label(),
                    "in_flight": e.in_flight,
                    "granted_by": match e.by { Granter::Local => "local", Granter::Partner => "partner" },
                    "forward": e.want.as_ref().or(e.held.as_ref().map(|h| &h.record)).is_some_and(|r| r.forward),
                    "expires": e.expires,
                    "attempts": e.attempts,
                    "next_try_in_secs": (e.class.pending && !e.in_flight).then(|| secs_until(e.next_try)),
                    "last_error": e.last_error,
                })
            })
            .collect();
        json!({
            "queue_depth": self.pending,
            "queue_max": self.cfg.queue_max,
            "oldest_pending": oldest,
            "scopes": scopes,
            "servers": servers,
            "entries_total": self.entries.len(),
            "entries_truncated": self.entries.len() > max_entries,
            "entries": entries,
        })
    }
}

/// The name an entry shows: the wanted one, else the one being removed.
fn entry_name(e: &Entry) -> Option<String> {
    e.want
        .as_ref()
        .or(e.held.as_ref().map(|h| &h.record))
        .map(|r| show(&r.fqdn))
}

/// Who is responsible for a lease, and its expiry, after `by` reported it with `expires`:
/// this server whenever it granted or renewed it; the partner when it extended the lease. The
/// partner echoing our own lease back (recovery, UPDREQALL: same or older expiry) changes
/// nothing, so that each server never leaves the removal to the other.
fn after_renewal(cur_by: Granter, cur_exp: u32, by: Granter, expires: u32) -> (Granter, u32) {
    match by {
        Granter::Local => (Granter::Local, expires),
        Granter::Partner if expires > cur_exp => (Granter::Partner, expires),
        Granter::Partner => (cur_by, cur_exp),
    }
}

fn saved_record(r: &Record) -> SavedRecord {
    SavedRecord {
        fqdn: r.fqdn.to_string(),
        identity: r.identity.clone(),
        forward: r.forward,
    }
}

fn record_of(s: SavedRecord) -> Option<Record> {
    Some(Record {
        fqdn: Name::from_ascii(&s.fqdn).ok()?,
        identity: s.identity,
        forward: s.forward,
    })
}

fn saved_of(addr: Ipv4Addr, e: &Entry) -> Saved {
    Saved {
        addr,
        scope: e.scope.clone(),
        want: e.want.as_ref().map(saved_record),
        held: e.held.as_ref().map(|h| SavedHeld {
            record: saved_record(&h.record),
            certainty: h.certainty,
        }),
        expires: e.expires,
        by: e.by,
        blocked: e.blocked,
        attempts: e.attempts,
        next_try: e.next_try,
        pending_since: e.pending_since,
        last_error: e.last_error.clone(),
    }
}

fn entry_of(s: Saved, scope: String) -> Option<Entry> {
    let want = match s.want {
        Some(w) => Some(record_of(w)?),
        None => None,
    };
    let held = match s.held {
        Some(h) => Some(Held {
            record: record_of(h.record)?,
            certainty: h.certainty,
        }),
        None => None,
    };
    Some(Entry {
        scope,
        want,
        held,
        expires: s.expires,
        by: s.by,
        blocked: s.blocked,
        attempts: s.attempts,
        next_try: s.next_try,
        pending_since: s.pending_since,
        last_error: s.last_error,
        in_flight: false,
        deferred: false,
        forget: false,
        due_at: None,
        expiry_at: None,
        class: Class::default(),
        counted: false,
    })
}

#[cfg(test)]
mod tests;
