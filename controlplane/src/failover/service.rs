//! Failover inside `tandemd`: the relationships' threads (the replication side; the workers'
//! side is in [`super::workers`]).
//!
//! Each `[[failover]]` relationship gets one thread that owns its [`Link`] (the TCP link on 647
//! and the [`Peer`] state machine) and talks to the workers only through channels:
//! - **Workers → relationship**: every worker's commit hook hands over each committed binding of
//!   the relationship's scopes that the partner has not acknowledged ([`needs_update`]); the
//!   thread queues them with [`Peer::local_update`]. Clients are answered first (within the
//!   MCLT rule); replication follows, batched by the peer up to the partner's window.
//! - **Relationship → workers**: partner bindings, acknowledgements, pool transfers and sweeps
//!   run as [`Control::Run`](tandem_dataplane::worker::Control::Run) tasks on the workers' threads, which own the bindings, through a
//!   [`Fanout`]. Partner bindings are judged against the server's one record of their address
//!   ([`OwnershipSnapshot::judge`]), installed with the worker that keeps them, journaled with
//!   that worker's next commit, and only then acknowledged (the BNDACK leaves after the
//!   fdatasync).
//! - **Ownership**: every change of the relationship's [`OwnershipSnapshot`] is published to
//!   every worker's [`FailoverAuthority`] (picked up between batches, no lock on the request
//!   path) and, with the AF_XDP backend, to the relationship's slot of the XDP program's
//!   partner-bucket maps (partner's clients of the relationship's scopes dropped in the kernel
//!   in NORMAL, everyone accepted otherwise).
//!
//! The relationship state is persisted by a [`FileStore`] in the state directory.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;
use serde_json::{json, Value};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::engine::Engine;
use tandem_dataplane::hash::BucketMap;
use tandem_dataplane::scope::{ServerSettings, Subnet};
use tandem_dataplane::time::Time;
use tandem_dataplane::worker::{pool_row, EngineTask, WorkerHandle};

use super::filestore::FileStore;
use super::link::{Link, LinkEvent};
use super::message::RejectReason;
use super::peer::{
    needs_update, transfer, AddrHash, Event, Mode, Peer, PeerState, PoolCounts, Role, Service,
    Start, Sweep, UpdateId,
};
pub use super::workers::{
    commit_router, CommitRing, FailoverAuthority, Fanout, FromWorker, HookBus, HookLayout, Layout,
    Published, Refusal, ScopePools, SnapBus, RING_SLOTS,
};
use crate::config::{Config, FailoverSettings};
use crate::xdp_backend::XdpShared;

/// How often a relationship thread refreshes the pool counts.
const POOL_EVERY: Duration = Duration::from_secs(2);
/// How often a relationship thread sweeps its bindings (expiry of partner leases, settling).
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Longest wait of a relationship thread (status refresh, stop flag).
const TICK: Duration = Duration::from_millis(200);
/// Upper bounds (µs) of the replication lag histogram buckets (client ACK to partner BNDACK).
pub const LAG_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000, 60_000_000,
];
/// Most updates whose hand-over time is remembered for the lag histogram.
const LAG_TRACKED_MAX: usize = 1 << 20;

/// An operator's request to a relationship thread.
enum Command {
    PartnerDown(Sender<Result<String, String>>),
    Pause(Sender<Result<String, String>>),
    Resume(Sender<Result<String, String>>),
    SetMode(Mode, Sender<Result<String, String>>),
}

/// What `tandemctl failover show` and `/v1/failover` report about one relationship.
#[derive(Clone, Debug, Default)]
pub struct RelationshipStatus {
    /// Relationship name.
    pub name: String,
    /// "primary" or "secondary".
    pub role: String,
    /// Mode, like "load-balance 50%" or "hot-standby (active) reserve 5%".
    pub mode: String,
    /// The partner's address.
    pub partner: String,
    /// Scopes covered.
    pub scopes: Vec<String>,
    /// Our state.
    pub state: String,
    /// When we entered it (seconds since the epoch).
    pub state_since: u32,
    /// The partner's last reported state.
    pub partner_state: Option<String>,
    /// The handshake succeeded on the current connection.
    pub connected: bool,
    /// Updates queued or sent and not yet acknowledged.
    pub unacked_updates: usize,
    /// MCLT, seconds.
    pub mclt_secs: u32,
    /// In PARTNER-DOWN: when the partner's addresses become ours (seconds since the epoch).
    pub takeover_at: Option<u64>,
    /// Last clock skew seen beyond the limit (partner minus us, seconds).
    pub clock_skew_secs: Option<i64>,
    /// Last time a connection came up (seconds since the epoch).
    pub last_connected: Option<u64>,
    /// Unleased addresses: FREE and BACKUP.
    pub free: u64,
    /// Unleased addresses in the BACKUP pool.
    pub backup: u64,
    /// Partner bindings stored.
    pub partner_bindings: u64,
    /// Partner bindings refused.
    pub partner_rejected: u64,
    /// Our updates the partner acknowledged.
    pub updates_acked: u64,
    /// Our updates the partner refused.
    pub updates_rejected: u64,
    /// The last refusal of a connection (by us or the partner), in words.
    pub last_refusal: Option<String>,
    /// Replication lag (from the commit that let the client's reply go to the partner's
    /// acknowledgement): count per bucket of [`LAG_BUCKETS_US`], plus one for longer ones.
    pub lag_buckets: Vec<u64>,
    /// Sum of every replication lag counted in `lag_buckets`, microseconds.
    pub lag_sum_us: u64,
    /// Times a worker's commit hook found its ring to this relationship full (the updates
    /// waited in the hook, in order).
    pub ring_full: u64,
    /// Committed updates a worker dropped because this relationship fell far behind (they
    /// were resent from the workers' bindings).
    pub ring_lost: u64,
    /// Per scope of the relationship: addresses by binding state.
    pub pools: Vec<ScopePools>,
    /// Last message received from the partner (seconds since the epoch).
    pub last_contact: Option<u64>,
    /// The operator paused the relationship (`failover pause`).
    pub paused: bool,
    /// The share (percent) of the unleased addresses this server should hold to allocate from
    /// in NORMAL: load balance, its percentage; hot standby, 100 minus the reserve (active) or
    /// the reserve (standby).
    pub share_percent: u8,
    /// The pool this server allocates new addresses from: "free" (primary) or "backup".
    pub allocates_from: String,
    /// Seconds to wait in RECOVER-WAIT before leaving it, when there (seconds since the epoch).
    pub recover_wait_until: Option<u64>,
    /// `comm_interrupted_alarm` of the relationship, seconds.
    pub comm_alarm_secs: u32,
    /// `pool_low_water_percent` of the relationship.
    pub pool_low_percent: u8,
    /// The partner's admin endpoint.
    pub partner_admin: String,
    /// Requests to the partner's admin endpoint go over HTTPS (`partner_admin_tls`).
    pub partner_admin_tls: bool,
    /// "load-balance" or "hot-standby".
    pub mode_name: String,
    /// Load balance: this server's percentage.
    pub load_balance_percent: Option<u8>,
    /// Hot standby: "active" or "standby" (this server's part).
    pub hot_standby_role: Option<String>,
    /// Hot standby: the standby's reserve, percent.
    pub reserve_percent: Option<u8>,
    /// `state_switchover_interval`, seconds (`None`: off).
    pub switchover_secs: Option<u32>,
    /// Alarms raised for the relationship (filled in by the daemon's alarm monitor).
    pub alarms: Vec<String>,
    /// The link runs TLS (`tls = "required"`).
    pub tls: bool,
    /// Connections refused (or TLS sessions failed) at the TLS layer, by reason (the
    /// `reason` of `LinkEvent::TlsRefused`).
    pub tls_refusals: std::collections::BTreeMap<String, u64>,
    /// Inbound connections refused before the failover handshake, by reason (`duplicate`,
    /// `not_partner`, `handshake_timeout`); a shared listener's refusals of an address that is
    /// no relationship's partner count in each relationship on it.
    pub link_refusals: std::collections::BTreeMap<String, u64>,
}

/// At most one log line per [`RefusalLog::EVERY`] for a burst of refusals, saying how many
/// were not logged: a flood of connection attempts must not flood the log.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    last: Option<Time>,
    suppressed: u64,
}

impl RefusalLog {
    const EVERY_MS: u64 = 10_000;

    /// Count one refusal at `now`; `Some(suppressed)` if it is to be logged (with how many
    /// were not logged since the last line).
    pub(crate) fn hit(&mut self, now: Time) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now < t.plus_millis(Self::EVERY_MS))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl RelationshipStatus {
    /// Fill the mode fields from `mode` for this server's `role`.
    fn set_mode(&mut self, mode: Mode, role: Role) {
        self.mode = mode_name(mode, role);
        self.share_percent = share_percent(mode, role);
        match mode {
            Mode::LoadBalance { .. } => {
                self.mode_name = "load-balance".into();
                self.load_balance_percent = Some(self.share_percent);
                self.hot_standby_role = None;
                self.reserve_percent = None;
            }
            Mode::HotStandby {
                active,
                reserve_percent,
            } => {
                self.mode_name = "hot-standby".into();
                self.load_balance_percent = None;
                self.hot_standby_role =
                    Some(if active == role { "active" } else { "standby" }.into());
                self.reserve_percent = Some(reserve_percent);
            }
        }
    }
}

impl RelationshipStatus {
    /// The replication lag quantile `q` (0..1) in milliseconds, as the upper bound of its
    /// histogram bucket; `None` before the first acknowledgement.
    pub fn lag_quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.lag_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.lag_buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                let us = LAG_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX);
                return Some(us as f64 / 1000.0);
            }
        }
        None
    }
}

impl RelationshipStatus {
    /// The JSON object of `/v1/failover`.
    pub fn to_json(&self) -> Value {
        let mut v = self.to_json_main();
        if let Value::Object(m) = &mut v {
            m.insert("ring_full".into(), json!(self.ring_full));
            m.insert("ring_lost".into(), json!(self.ring_lost));
            m.insert("tls".into(), json!(self.tls));
            m.insert("tls_refusals".into(), json!(self.tls_refusals));
            m.insert("link_refusals".into(), json!(self.link_refusals));
        }
        v
    }

    fn to_json_main(&self) -> Value {
        json!({
            "name": self.name,
            "role": self.role,
            "mode": self.mode,
            "partner": self.partner,
            "scopes": self.scopes,
            "state": self.state,
            "state_since": self.state_since,
            "partner_state": self.partner_state,
            "connected": self.connected,
            "unacked_updates": self.unacked_updates,
            "mclt_secs": self.mclt_secs,
            "takeover_at": self.takeover_at,
            "clock_skew_secs": self.clock_skew_secs,
            "last_connected": self.last_connected,
            "free": self.free,
            "backup": self.backup,
            "partner_bindings": self.partner_bindings,
            "partner_rejected": self.partner_rejected,
            "updates_acked": self.updates_acked,
            "updates_rejected": self.updates_rejected,
            "last_refusal": self.last_refusal,
            "pools": self.pools.iter().map(|p| json!({
                "scope": p.scope,
                "free": p.free,
                "backup": p.backup,
                "active": p.active,
                "expired": p.expired,
                "abandoned": p.abandoned,
            })).collect::<Vec<_>>(),
            "last_contact": self.last_contact,
            "paused": self.paused,
            "recover_wait_until": self.recover_wait_until,
            "share_percent": self.share_percent,
            "allocates_from": self.allocates_from,
            "partner_admin": self.partner_admin,
            "partner_admin_tls": self.partner_admin_tls,
            "mode_name": self.mode_name,
            "load_balance_percent": self.load_balance_percent,
            "hot_standby_role": self.hot_standby_role,
            "reserve_percent": self.reserve_percent,
            "switchover_secs": self.switchover_secs,
            "alarms": self.alarms,
            "replication_lag_ms": {
                "count": self.lag_buckets.iter().sum::<u64>(),
                "p50_le": self.lag_quantile_ms(0.5),
                "p99_le": self.lag_quantile_ms(0.99),
                "buckets_le_us": LAG_BUCKETS_US,
                "counts": self.lag_buckets,
            },
        })
    }
}

/// An operator's reading of a TLS refusal reason.
fn tls_words(reason: &str) -> &'static str {
    match reason {
        "not_tls" => "the partner does not speak TLS (is tls = \"required\" set on both servers?)",
        "bad_certificate" => "the partner's certificate is not issued by tls_ca_file",
        "wrong_name" => "the partner's certificate is not issued to tls_partner_name",
        "certificate_expired" => "the partner's certificate has expired or is not valid yet",
        "no_certificate" => "the partner presented no certificate",
        "partner_refused_our_certificate" => "the partner refused our certificate",
        "incompatible" => "the partner offers no TLS 1.3",
        "handshake_timeout" => "the TLS handshake did not complete in time",
        "closed_in_handshake" => "the partner closed the connection during the TLS handshake",
        _ => "TLS error",
    }
}

/// Why failover could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The relationship's saved state cannot be read.
    #[error("failover {name}: {message}")]
    State {
        /// Relationship.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A listener shared by several relationships could not be bound.
    #[error("failover listener {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The link could not be set up (listen address in use, ...).
    #[error("failover {name}: {source}")]
    Link {
        /// Relationship.
        name: String,
        /// The error.
        #[source]
        source: super::link::LinkError,
    },
}

struct RelPrepared {
    settings: FailoverSettings,
    link: Link<FileStore>,
    fresh: bool,
    gen: u64,
    from_worker: Receiver<FromWorker>,
    to_self: Sender<FromWorker>,
    snap_tx: SnapBus,
    /// The server's settings (for the workers' address shards).
    server: Arc<ServerSettings>,
    cmd_rx: Receiver<Command>,
    status: Arc<Mutex<RelationshipStatus>>,
    subnets: Vec<Subnet>,
    /// Connections accepted by a shared listener for this relationship.
    adopt_rx: Receiver<Adopted>,
    /// Per worker, the ring its commit hook hands committed bindings through.
    rings: Vec<Arc<CommitRing>>,
}

/// An inbound connection accepted by a shared listener, with the partner's address.
type Adopted = (TcpStream, SocketAddr);

/// A listener shared by several relationships: hands each inbound connection to the
/// relationship whose partner has the connecting address.
struct SharedListener {
    listener: TcpListener,
    addr: SocketAddr,
    routes: Vec<(std::net::IpAddr, Sender<Adopted>, Arc<Waker>)>,
    /// The statuses of the relationships on this listener (refusals count in each).
    statuses: Vec<Arc<Mutex<RelationshipStatus>>>,
}

impl SharedListener {
    fn run(self, stop: Arc<AtomicBool>) {
        tracing::info!(addr = %self.addr, relationships = self.routes.len(), "shared failover listener");
        let mut log = RefusalLog::default();
        while !stop.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((stream, remote)) => {
                    match self.routes.iter().find(|(ip, _, _)| *ip == remote.ip()) {
                        Some((_, tx, waker)) => {
                            let _ = tx.send((stream, remote));
                            let _ = waker.wake();
                        }
                        None => {
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                            if let Some(suppressed) = log.hit(Time::now()) {
                                tracing::warn!(%remote, addr = %self.addr, suppressed,
                                    "failover: refusing a connection from an address that is no relationship's partner ({suppressed} more not logged since the last line)");
                            }
                            for st in &self.statuses {
                                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                                *s.link_refusals.entry("not_partner".into()).or_default() += 1;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    tracing::warn!(addr = %self.addr, error = %e, "failover: accept failed");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

/// Relationships set up but not running yet: start them with [`Starter::start`] once the
/// worker exists.
pub struct Starter {
    rels: Vec<RelPrepared>,
    handles: Vec<RelHandle>,
    shared: Vec<SharedListener>,
}

struct RelHandle {
    name: String,
    status: Arc<Mutex<RelationshipStatus>>,
    cmd: Sender<Command>,
    waker: Arc<Waker>,
}

/// The daemon's handle on the running relationships.
pub struct FailoverHandle {
    rels: Vec<RelHandle>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Relationships set up (state read back, listeners bound): the authority's layout, the commit
/// hook's routes, and the starter.
pub struct Prepared {
    /// For the worker's [`FailoverAuthority`].
    pub layout: Layout,
    /// For the commit hook ([`commit_router`]).
    pub hook: HookLayout,
    /// Starts the threads.
    pub starter: Starter,
}

/// Set up every relationship of `cfg` for layout generation `gen`, publishing snapshots through
/// `snap_tx` (to every worker's [`FailoverAuthority`]).
pub fn prepare(
    cfg: &Config,
    now: Time,
    gen: u64,
    snap_tx: &SnapBus,
) -> Result<Prepared, ServiceError> {
    let mut scope_rel = vec![None; cfg.settings.scopes.len()];
    let mut snaps = Vec::new();
    let mut rels = Vec::new();
    let mut handles = Vec::new();
    let mut routes: Vec<(Subnet, usize)> = Vec::new();
    let mut senders: Vec<(Vec<Arc<CommitRing>>, Arc<Waker>)> = Vec::new();
    let workers = snap_tx.len().max(1);
    // Relationships on one listen address share one listener.
    let mut by_listen: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
    for (r, fo) in cfg.failover.iter().enumerate() {
        by_listen.entry(fo.listen).or_default().push(r);
    }
    let mut shared: Vec<SharedListener> = Vec::new();
    for (addr, rs) in &by_listen {
        if rs.len() > 1 {
            let listener = TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ServiceError::Listen {
                    addr: *addr,
                    source,
                })?;
            shared.push(SharedListener {
                listener,
                addr: *addr,
                routes: Vec::new(),
                statuses: Vec::new(),
            });
        }
    }
    for (r, fo) in cfg.failover.iter().enumerate() {
        let err = |message: String| ServiceError::State {
            name: fo.name.clone(),
            message,
        };
        let (store, saved) = FileStore::open(&cfg.daemon.state_dir, &fo.name).map_err(|e| {
            err(format!(
                "{e} (delete the file to start this relationship over in RECOVER)"
            ))
        })?;
        let fresh = saved.is_none();
        let start = match saved {
            Some(s) => Start::Saved(s),
            None => Start::Fresh,
        };
        let peer = Peer::new(fo.peer_config(), store, start, now)
            .map_err(|e| err(format!("invalid relationship: {e}")))?;
        let mut link_cfg = fo.link_config();
        let shared_here = shared.iter_mut().find(|s| s.addr == fo.listen);
        if shared_here.is_some() {
            link_cfg.listen = None;
        }
        let link = Link::new(link_cfg, peer).map_err(|source| ServiceError::Link {
            name: fo.name.clone(),
            source,
        })?;
        if link.peer().held_until_contact() {
            tracing::warn!(relationship = %fo.name, away_secs = link.peer().away_secs(),
                mclt_secs = fo.mclt_secs,
                "this server was away longer than MCLT: the partner may be in PARTNER-DOWN and \
                 leasing our free addresses, so new clients get none of ours until the partner is \
                 heard (renewals are served); if the partner is really down, run \
                 `tandemctl failover partner-down {}`", fo.name);
        }
        snaps.push(link.peer().snapshot());
        let mut subnets = Vec::new();
        for &si in &fo.scopes {
            if let Some(slot) = scope_rel.get_mut(si) {
                *slot = Some(r);
            }
            if let Some(sc) = cfg.settings.scopes.get(si) {
                routes.push((sc.subnet, r));
                subnets.push(sc.subnet);
            }
        }
        let (adopt_tx, adopt_rx) = crossbeam_channel::unbounded();
        if let Some(s) = shared_here {
            s.routes.push((fo.partner.ip(), adopt_tx, link.waker()));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let rings: Vec<Arc<CommitRing>> = (0..workers)
            .map(|_| Arc::new(CommitRing::new(RING_SLOTS)))
            .collect();
        senders.push((rings.clone(), link.waker()));
        let status = Arc::new(Mutex::new(RelationshipStatus {
            name: fo.name.clone(),
            role: role_name(fo.role).into(),
            mode: mode_name(fo.mode, fo.role),
            partner: fo.partner.to_string(),
            scopes: fo.scope_names.clone(),
            lag_buckets: vec![0; LAG_BUCKETS_US.len() + 1],
            share_percent: share_percent(fo.mode, fo.role),
            allocates_from: match fo.role {
                Role::Primary => "free".into(),
                Role::Secondary => "backup".into(),
            },
            comm_alarm_secs: fo.comm_alarm_secs,
            pool_low_percent: fo.pool_low_percent,
            partner_admin: fo.partner_admin.to_string(),
            partner_admin_tls: fo.partner_admin_tls.is_some(),
            switchover_secs: fo.switchover_secs,
            tls: fo.tls.is_some(),
            ..RelationshipStatus::default()
        }));
        status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_mode(fo.mode, fo.role);
        if let Some(s) = shared.iter_mut().find(|s| s.addr == fo.listen) {
            s.statuses.push(status.clone());
        }
        handles.push(RelHandle {
            name: fo.name.clone(),
            status: status.clone(),
            cmd: cmd_tx,
            waker: link.waker(),
        });
        rels.push(RelPrepared {
            settings: fo.clone(),
            link,
            fresh,
            gen,
            from_worker: rx,
            to_self: tx,
            snap_tx: snap_tx.clone(),
            server: Arc::new(cfg.settings.clone()),
            cmd_rx,
            status,
            subnets,
            adopt_rx,
            rings,
        });
    }
    Ok(Prepared {
        layout: Layout {
            gen,
            scope_rel,
            snaps,
        },
        hook: HookLayout { routes, senders },
        starter: Starter {
            rels,
            handles,
            shared,
        },
    })
}

impl Starter {
    /// How many relationships it starts.
    pub fn len(&self) -> usize {
        self.rels.len()
    }

    /// True if it starts none.
    pub fn is_empty(&self) -> bool {
        self.rels.is_empty()
    }

    /// Start one thread per relationship, talking to the workers through `worker`, publishing
    /// bucket ownership to `xdp` (if the AF_XDP backend runs), each in its relationship's slot.
    pub fn start(
        self,
        worker: WorkerHandle,
        xdp: Option<Arc<XdpShared>>,
        names: Option<Arc<dyn super::link::NameExchange>>,
    ) -> std::io::Result<FailoverHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (k, l) in self.shared.into_iter().enumerate() {
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tandem-fo-listen-{k}"))
                    .spawn(move || l.run(stop))?,
            );
        }
        for (r, mut rel) in self.rels.into_iter().enumerate() {
            if let Some(n) = &names {
                rel.link.set_names(n.clone());
            }
            let back = (rel.to_self.clone(), rel.link.waker());
            let rt = RelRuntime {
                index: r,
                fan: Fanout::new(worker.clone(), rel.server.clone(), back),
                xdp: xdp.clone(),
                stop: stop.clone(),
                rel,
                last_pools: None,
                last_sweep: None,
                handed_at: HashMap::default(),
                refusal_log: RefusalLog::default(),
            };
            let name = format!("tandem-fo-{r}");
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || rt.run())?,
            );
        }
        Ok(FailoverHandle {
            rels: self.handles,
            stop,
            threads: Mutex::new(threads),
        })
    }
}

impl FailoverHandle {
    /// The status of every relationship.
    pub fn statuses(&self) -> Vec<RelationshipStatus> {
        self.rels
            .iter()
            .map(|h| h.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// The status of relationship `name`.
    pub fn status(&self, name: &str) -> Option<RelationshipStatus> {
        self.rels
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Move relationship `name` to PARTNER-DOWN (the operator vouches that the partner is not
    /// serving). `Err(None)`: no such relationship; `Err(Some(msg))`: refused.
    pub fn partner_down(&self, name: &str) -> Result<String, Option<String>> {
        self.command(name, Command::PartnerDown)
    }

    /// Pause relationship `name`: this server stops serving the relationship's scopes and the
    /// partner treats it as out of contact, until [`FailoverHandle::resume`].
    pub fn pause(&self, name: &str) -> Result<String, Option<String>> {
        self.command(name, Command::Pause)
    }

    /// Resume a paused relationship (through STARTUP, as after a restart).
    pub fn resume(&self, name: &str) -> Result<String, Option<String>> {
        self.command(name, Command::Resume)
    }

    /// Change the mode of relationship `name` without dropping the link.
    pub fn set_mode(&self, name: &str, mode: Mode) -> Result<String, Option<String>> {
        self.command(name, |tx| Command::SetMode(mode, tx))
    }

    fn command(
        &self,
        name: &str,
        make: impl FnOnce(Sender<Result<String, String>>) -> Command,
    ) -> Result<String, Option<String>> {
        let h = self.rels.iter().find(|h| h.name == name).ok_or(None)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        h.cmd
            .send(make(tx))
            .map_err(|_| Some("the relationship thread is not running".to_string()))?;
        let _ = h.waker.wake();
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(Some("no answer from the relationship thread".into())),
        }
    }

    /// Stop every relationship thread (the links are dropped; partners see the connection go).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in &self.rels {
            let _ = h.waker.wake();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Secondary => "secondary",
    }
}

/// The share (percent) of the clients and unleased addresses that `role` has under mode `m`.
pub fn share_percent(m: Mode, role: Role) -> u8 {
    match m {
        Mode::LoadBalance { primary_percent } => {
            let p = primary_percent.min(100);
            if role == Role::Primary {
                p
            } else {
                100 - p
            }
        }
        Mode::HotStandby {
            active,
            reserve_percent,
        } => {
            let r = reserve_percent.min(100);
            if active == role {
                100 - r
            } else {
                r
            }
        }
    }
}

fn mode_name(m: Mode, role: Role) -> String {
    match m {
        Mode::LoadBalance { primary_percent } => {
            let mine = if role == Role::Primary {
                primary_percent
            } else {
                100 - primary_percent.min(100)
            };
            format!("load-balance {mine}% (this server)")
        }
        Mode::HotStandby {
            active,
            reserve_percent,
        } => {
            let me = if active == role { "active" } else { "standby" };
            format!("hot-standby ({me}), reserve {reserve_percent}%")
        }
    }
}

struct RelRuntime {
    index: usize,
    fan: Fanout,
    xdp: Option<Arc<XdpShared>>,
    stop: Arc<AtomicBool>,
    rel: RelPrepared,
    last_pools: Option<Instant>,
    last_sweep: Option<Instant>,
    /// When the latest committed update of each address was handed over, and which version of
    /// the binding it was (for the lag histogram). One entry per address: a newer update
    /// replaces an older one still unacknowledged.
    handed_at: HashMap<Ipv4Addr, ((u32, u8), Instant), AddrHash>,
    /// Rate limit of the refused-connection log lines.
    refusal_log: RefusalLog,
}

/// Acknowledgements of one loop turn, added to the status under one lock.
struct AckTally {
    /// When the turn's events were taken (the end of every lag counted).
    at: Instant,
    acked: u64,
    lag_buckets: [u64; LAG_BUCKETS_US.len() + 1],
    lag_sum_us: u64,
}

impl AckTally {
    fn new(at: Instant) -> AckTally {
        AckTally {
            at,
            acked: 0,
            lag_buckets: [0; LAG_BUCKETS_US.len() + 1],
            lag_sum_us: 0,
        }
    }

    /// One acknowledged update, with its lag if known.
    fn count(&mut self, lag: Option<Duration>) {
        self.acked += 1;
        if let Some(l) = lag {
            let us = u64::try_from(l.as_micros()).unwrap_or(u64::MAX);
            let slot = LAG_BUCKETS_US.partition_point(|&b| b < us);
            self.lag_buckets[slot] += 1;
            self.lag_sum_us = self.lag_sum_us.saturating_add(us);
        }
    }

    fn add_to(&self, s: &mut RelationshipStatus) {
        s.updates_acked += self.acked;
        for (total, n) in s.lag_buckets.iter_mut().zip(self.lag_buckets) {
            *total += n;
        }
        s.lag_sum_us = s.lag_sum_us.saturating_add(self.lag_sum_us);
    }
}

/// Which version of an address's binding an update carries (matches an acknowledgement to
/// the hand-over it answers).
fn lag_version(b: &Binding) -> (u32, u8) {
    (b.sent_expiry, b.state as u8)
}

impl RelRuntime {
    fn name(&self) -> &str {
        &self.rel.settings.name
    }

    fn run(mut self) {
        tracing::info!(relationship = %self.name(), role = role_name(self.rel.settings.role),
            partner = %self.rel.settings.partner, state = %self.rel.link.peer().state(),
            fresh = self.rel.fresh, "failover relationship starting");
        self.publish();
        self.send_catch_up();
        while !self.stop.load(Ordering::SeqCst) {
            let evs = match self.rel.link.run_once(TICK) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(relationship = %self.name(), error = %e, "failover link poll failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let now = Time::now();
            let mut publish = false;
            let mut partner = Vec::new();
            let mut acked = Vec::new();
            let mut evs = evs;
            while let Ok((stream, remote)) = self.rel.adopt_rx.try_recv() {
                evs.extend(self.rel.link.adopt(stream, remote));
            }
            let mut tally = AckTally::new(Instant::now());
            for ev in evs {
                self.on_link_event(ev, now, &mut publish, &mut partner, &mut acked, &mut tally);
            }
            if tally.acked > 0 {
                self.bump(|s| tally.add_to(s));
            }
            if !partner.is_empty() || !acked.is_empty() {
                // One task (one wake of the worker) for both.
                self.judge_and_settle(partner, acked);
            }
            while let Ok(m) = self.rel.from_worker.try_recv() {
                self.on_worker(m, now);
            }
            self.drain_rings(now);
            while let Ok(c) = self.rel.cmd_rx.try_recv() {
                match c {
                    Command::PartnerDown(reply) => {
                        let r = self.rel.link.peer_mut().partner_down(now);
                        let msg = match r {
                            Ok(()) => {
                                tracing::warn!(relationship = %self.name(),
                                    "PARTNER-DOWN set by the operator: this server takes the partner's clients now and its free addresses after MCLT");
                                publish = true;
                                Ok(format!(
                                    "{} is in PARTNER-DOWN; the partner's free addresses are usable after MCLT ({} s)",
                                    self.name(),
                                    self.rel.link.peer().mclt()
                                ))
                            }
                            Err(e) => Err(format!("partner-down refused: {e}")),
                        };
                        let _ = reply.send(msg);
                    }
                    Command::Pause(reply) => {
                        let r = self.rel.link.peer_mut().pause(now);
                        let msg = match r {
                            Ok(()) => {
                                tracing::warn!(relationship = %self.name(),
                                    "relationship PAUSED by the operator: this server serves none of its scopes' clients until resumed");
                                publish = true;
                                self.bump(|s| s.paused = true);
                                Ok(format!("{} is PAUSED; the partner serves its clients (resume with `tandemctl failover resume {}`)", self.name(), self.name()))
                            }
                            Err(e) => Err(format!("pause refused: {e}")),
                        };
                        let _ = reply.send(msg);
                    }
                    Command::Resume(reply) => {
                        let r = self.rel.link.peer_mut().resume(now);
                        let msg = match r {
                            Ok(()) => {
                                tracing::info!(relationship = %self.name(),
                                    "relationship resumed by the operator (through STARTUP)");
                                publish = true;
                                self.bump(|s| s.paused = false);
                                Ok(format!(
                                    "{} resumed; it is in {} now",
                                    self.name(),
                                    self.rel.link.peer().state()
                                ))
                            }
                            Err(e) => Err(format!("resume refused: {e}")),
                        };
                        let _ = reply.send(msg);
                    }
                    Command::SetMode(mode, reply) => {
                        let role = self.rel.settings.role;
                        let r = self.rel.link.peer_mut().set_mode(now, mode);
                        let msg = match r {
                            Ok(()) => {
                                self.rel.settings.mode = mode;
                                let m = mode_name(mode, role);
                                tracing::warn!(relationship = %self.name(), mode = %m,
                                    "mode changed by the operator; pools rebalance now");
                                publish = true;
                                self.bump(|s| s.set_mode(mode, role));
                                Ok(format!("{}: {m}", self.name()))
                            }
                            Err(e) => Err(format!("mode change refused: {e}")),
                        };
                        let _ = reply.send(msg);
                    }
                }
            }
            self.periodic();
            if publish {
                self.publish();
            }
            self.update_status();
        }
        // Nothing a judging round or a shard move took out of the workers stays out.
        self.fan
            .drain(&self.rel.from_worker, Duration::from_secs(2));
        tracing::info!(relationship = %self.name(), "failover relationship stopped");
    }

    fn on_link_event(
        &mut self,
        ev: LinkEvent,
        now: Time,
        publish: &mut bool,
        partner: &mut Vec<(UpdateId, Binding)>,
        acked: &mut Vec<Binding>,
        tally: &mut AckTally,
    ) {
        // The two per-binding events first, without the per-event work of the others.
        let ev = match ev {
            LinkEvent::Peer(Event::PartnerBinding { id, binding }) => {
                partner.push((id, binding));
                return;
            }
            LinkEvent::Peer(Event::UpdateAcked { binding }) => {
                let lag = match self.handed_at.get(&binding.addr) {
                    Some(&(v, t)) if v == lag_version(&binding) => {
                        self.handed_at.remove(&binding.addr);
                        Some(tally.at.saturating_duration_since(t))
                    }
                    _ => None,
                };
                tally.count(lag);
                acked.push(binding);
                return;
            }
            other => other,
        };
        let name = self.rel.settings.name.clone();
        match ev {
            LinkEvent::Peer(e) => match e {
                Event::PartnerBinding { .. } | Event::UpdateAcked { .. } => {}
                Event::UpdateRejected { binding, reason } => {
                    self.bump(|s| s.updates_rejected += 1);
                    tracing::warn!(relationship = %name, addr = %binding.addr, ?reason,
                        "the partner refused our binding update");
                }
                Event::SnapshotChanged => *publish = true,
                Event::StateChanged { from, to } => {
                    tracing::info!(relationship = %name, %from, %to, "failover state changed");
                    *publish = true;
                }
                Event::PartnerStateChanged { state, startup } => {
                    tracing::info!(relationship = %name, partner_state = %state, startup,
                        "partner reported its state");
                }
                Event::TransferAddresses { count, to } => self.transfer(count, to),
                Event::SendAllBindings => self.send_all(),
                Event::PoolResponse { transferred } => {
                    tracing::info!(relationship = %name, transferred, "partner answered our pool request");
                }
                Event::ClockSkew { skew_secs } => {
                    self.bump(|s| s.clock_skew_secs = Some(skew_secs));
                    tracing::error!(relationship = %name, skew_secs,
                        limit_secs = self.rel.settings.max_clock_skew_secs,
                        "the partner's clock differs from ours beyond the limit; its binding updates are refused until the clocks agree (fix NTP on both servers)");
                }
                Event::ConnectRejected { reason, by_us } => {
                    let who = if by_us {
                        "we refused the partner"
                    } else {
                        "the partner refused us"
                    };
                    let why = if reason == RejectReason::TimeMismatch {
                        "clocks differ by more than the limit (reason 4: time mismatch); fix NTP on both servers".to_string()
                    } else {
                        format!("{reason:?}")
                    };
                    let text = format!("{who}: {why}");
                    tracing::error!(relationship = %name, ?reason, by_us, "failover connection refused: {text}");
                    self.bump(|s| s.last_refusal = Some(text));
                }
                Event::PartnerDisconnected { reason } => {
                    tracing::warn!(relationship = %name, ?reason, "partner closed the failover connection");
                }
                Event::PersistFailed { wanted, error } => {
                    tracing::error!(relationship = %name, %wanted, error = %error,
                        "failover state change not persisted; staying in the current state");
                }
                Event::ProtocolViolation { what } => {
                    tracing::warn!(relationship = %name, what, "partner message ignored");
                }
                Event::CloseLink => {}
            },
            LinkEvent::Connected { remote, outbound } => {
                tracing::info!(relationship = %name, %remote, outbound, "failover connection up");
                let t = now.secs();
                self.bump(|s| s.last_connected = Some(t));
            }
            LinkEvent::Disconnected { remote, cause } => {
                tracing::warn!(relationship = %name, %remote, ?cause, "failover connection lost");
                *publish = true;
            }
            LinkEvent::Refused {
                remote,
                why,
                reason,
            } => {
                let logged = self.refusal_log.hit(now);
                if let Some(suppressed) = logged {
                    tracing::warn!(relationship = %name, %remote, why, reason, suppressed,
                        "failover connection refused ({suppressed} more not logged since the last line)");
                }
                self.bump(|s| *s.link_refusals.entry(reason.to_string()).or_default() += 1);
            }
            LinkEvent::TlsRefused {
                remote,
                outbound,
                reason,
                error,
            } => {
                tracing::error!(relationship = %name, %remote, outbound, reason, error = %error,
                    "failover connection refused at the TLS layer (tls = \"required\"): {}",
                    tls_words(reason));
                let text = format!("TLS: {} ({error})", tls_words(reason));
                self.bump(|s| {
                    *s.tls_refusals.entry(reason.to_string()).or_default() += 1;
                    s.last_refusal = Some(text);
                });
            }
            LinkEvent::ConnectFailed {
                remote,
                error,
                retry_in,
            } => {
                tracing::info!(relationship = %name, %remote, error, retry_in_ms = retry_in.as_millis() as u64,
                    "cannot reach the failover partner");
            }
            LinkEvent::DecodeFailed {
                error,
                reject_reason,
            } => {
                tracing::warn!(relationship = %name, error = %error, ?reject_reason,
                    "bad failover message from the partner; connection closed");
                let text = format!("bad message from the partner, connection closed: {error}");
                self.bump(|s| s.last_refusal = Some(text));
            }
            other => tracing::debug!(relationship = %name, event = ?other, "failover link event"),
        }
    }

    fn bump(&self, f: impl FnOnce(&mut RelationshipStatus)) {
        f(&mut self.rel.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Publish the snapshot to every worker and, with XDP, the partner's buckets to the kernel.
    fn publish(&mut self) {
        let snap = self.rel.link.peer().snapshot();
        self.rel.snap_tx.publish((self.rel.gen, self.index, snap));
        if let Some(x) = &self.xdp {
            let partner = if snap.state().service() == Service::OwnBuckets {
                snap.buckets().complement()
            } else {
                BucketMap::EMPTY
            };
            x.set_relationship_buckets(self.index, partner.as_bytes());
            tracing::debug!(relationship = %self.name(), partner_buckets = partner.count(),
                "XDP partner buckets published");
        }
    }

    /// Run `make(k)` on every worker `k`.
    fn run_each(&self, make: impl FnMut(usize) -> EngineTask) {
        if !self.fan.run_each(make) {
            tracing::error!(relationship = %self.name(), "a worker is gone");
        }
    }

    /// Queue the bindings the partner has not acknowledged (every binding of a brand-new
    /// relationship, so a server that served alone before shares its leases), from every
    /// worker.
    fn send_catch_up(&self) {
        let everything = self.rel.fresh;
        self.run_each(|_| {
            let scopes = self.rel.settings.scopes.clone();
            let (tx, waker) = self.fan.back();
            Box::new(move |engine: &mut Engine, _| {
                let bindings = rel_bindings(engine, &scopes)
                    .filter(|b| {
                        if everything {
                            b.state != BindingState::Free || !b.client.is_empty()
                        } else {
                            needs_update(b)
                        }
                    })
                    .copied()
                    .collect();
                let _ = tx.send(FromWorker::Bindings {
                    bindings,
                    all: false,
                });
                let _ = waker.wake();
                None
            })
        });
    }

    /// Every binding of every worker, for the partner's UPDREQALL (ended after the last part).
    fn send_all(&mut self) {
        self.fan.full_update_requested();
        self.run_each(|_| {
            let scopes = self.rel.settings.scopes.clone();
            let (tx, waker) = self.fan.back();
            Box::new(move |engine: &mut Engine, _| {
                let bindings = rel_bindings(engine, &scopes).copied().collect();
                let _ = tx.send(FromWorker::Bindings {
                    bindings,
                    all: true,
                });
                let _ = waker.wake();
                None
            })
        });
    }

    /// Judge, install and journal the partner's bindings (`batch`) with the workers that keep
    /// them, whose verdicts come back as [`FromWorker::Judged`] after the commits that made
    /// them durable; and apply the partner's acknowledgements of our updates (`acked`).
    fn judge_and_settle(&mut self, batch: Vec<(UpdateId, Binding)>, acked: Vec<Binding>) {
        let snap = self.rel.link.peer().snapshot();
        self.fan.judge(batch, acked, &snap, &self.rel.subnets);
    }

    /// Pool balancing: move `count` of our unleased addresses to the partner's pool, each worker
    /// its share from its own shards, from each scope in proportion to what it holds.
    fn transfer(&self, count: u32, to: BindingState) {
        let own = self.rel.link.peer().snapshot().own_pool();
        self.run_each(|k| {
            let count = self.fan.share(count, k);
            let scopes = self.rel.settings.scopes.clone();
            let name = self.name().to_string();
            Box::new(move |engine: &mut Engine, now| {
                if count == 0 {
                    return None;
                }
                let held: Vec<u64> = scopes
                    .iter()
                    .map(|&si| {
                        let (f, b) = engine.pool_counts(si);
                        if own == BindingState::Backup {
                            b
                        } else {
                            f
                        }
                    })
                    .collect();
                let total: u64 = held.iter().sum();
                if total == 0 {
                    return None;
                }
                let mut moved = 0usize;
                for (i, &si) in scopes.iter().enumerate() {
                    let n = (u64::from(count) * held[i]).div_ceil(total).min(held[i]) as usize;
                    for b in engine.take_for_transfer(si, own, n) {
                        engine.install(transfer(&b, to, now));
                        moved += 1;
                    }
                }
                tracing::info!(relationship = %name, worker = k, moved, to = ?to,
                    "pool balancing: addresses handed to the partner");
                None
            })
        });
    }

    /// Take every worker's committed batches (after the channel's messages: a binding read by a
    /// task may be newer than a batch still in a ring, and the ring then brings that newer
    /// version once it is durable, so the last one queued is always the latest). Resend what
    /// the partner lacks when a worker dropped updates; wake a worker whose hook waits for room.
    fn drain_rings(&mut self, now: Time) {
        let mut resync = false;
        for k in 0..self.rel.rings.len() {
            let ring = self.rel.rings[k].clone();
            while let Some(v) = ring.pop() {
                self.on_worker(FromWorker::Committed(v), now);
            }
            if ring.take_resync() {
                resync = true;
            }
            if ring.take_backlogged() {
                self.fan.run_on(k, Box::new(|_, _| None));
            }
        }
        let (full, lost) = self
            .rel
            .rings
            .iter()
            .fold((0, 0), |(f, l), r| (f + r.full_count(), l + r.lost_count()));
        self.bump(|s| {
            s.ring_full = full;
            s.ring_lost = lost;
        });
        if resync {
            tracing::error!(relationship = %self.name(), lost,
                "committed updates were dropped before reaching this thread; resending every binding the partner has not acknowledged");
            self.send_catch_up();
        }
    }

    fn on_worker(&mut self, m: FromWorker, now: Time) {
        let peer = self.rel.link.peer_mut();
        match m {
            FromWorker::Committed(v) => {
                if self.handed_at.len() + v.len() > LAG_TRACKED_MAX {
                    self.handed_at.clear();
                }
                let t = Instant::now();
                for b in &v {
                    self.handed_at.insert(b.addr, (lag_version(b), t));
                }
                peer.local_updates(now, v);
            }
            FromWorker::Judged {
                results,
                durable,
                refused,
            } => {
                if !durable {
                    tracing::error!(relationship = %self.rel.settings.name, n = results.len(),
                        "partner bindings not journaled (commit failed); not acknowledged, the partner sends them again");
                    return;
                }
                let ok = results.iter().filter(|(_, r, _)| r.is_ok()).count() as u64;
                let bad = results.len() as u64 - ok;
                if bad > 0 {
                    tracing::warn!(relationship = %self.rel.settings.name, refused = bad,
                        of = results.len(),
                        first = %refused.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                        "refused binding updates of the partner (our binding, where we hold one, is sent back)");
                }
                let mut resend = Vec::new();
                peer.ack_partner_updates(
                    now,
                    results.into_iter().map(|(id, res, again)| {
                        resend.extend(again);
                        (id, res)
                    }),
                );
                if !resend.is_empty() {
                    peer.local_updates(now, resend);
                }
                self.bump(|s| {
                    s.partner_bindings += ok;
                    s.partner_rejected += bad;
                });
            }
            FromWorker::Bindings { bindings, all } => {
                let n = bindings.len();
                peer.local_updates(now, bindings);
                if all {
                    let last = self.fan.full_part_arrived();
                    if last {
                        peer.end_full_update(now);
                    }
                    tracing::info!(relationship = %self.rel.settings.name, bindings = n, last,
                        "sending every binding to the partner (its update request; one worker's part)");
                } else if n > 0 {
                    tracing::info!(relationship = %self.rel.settings.name, bindings = n,
                        "bindings queued for the partner at start-up");
                }
            }
            FromWorker::Pools {
                worker,
                free,
                backup,
                scopes,
            } => {
                let (free, backup) = self.fan.pools_part(worker, free, backup, scopes);
                let peer = self.rel.link.peer_mut();
                let (own, partner) = match self.rel.settings.role {
                    Role::Primary => (free, backup),
                    Role::Secondary => (backup, free),
                };
                peer.set_pool_counts(PoolCounts {
                    own: u32::try_from(own).unwrap_or(u32::MAX),
                    partner: u32::try_from(partner).unwrap_or(u32::MAX),
                });
                self.bump(|s| {
                    s.free = free;
                    s.backup = backup;
                });
            }
            FromWorker::Counts { worker, pools } => {
                let sum = self.fan.counts_part(worker, pools);
                self.bump(|s| s.pools = sum);
            }
            FromWorker::Taken {
                si,
                to,
                items,
                pool,
            } => self.fan.on_taken(si, to, items, pool, &self.rel.subnets),
            FromWorker::Extracted {
                round,
                worker,
                found,
            } => {
                let snap = peer.snapshot();
                self.fan
                    .on_extracted(round, worker, found, &snap, &self.rel.subnets, now);
            }
        }
    }

    fn periodic(&mut self) {
        let due = |t: Option<Instant>, every: Duration| t.is_none_or(|t| t.elapsed() >= every);
        if due(self.last_pools, POOL_EVERY) {
            self.last_pools = Some(Instant::now());
            self.run_each(|k| {
                let scopes = self.rel.settings.scopes.clone();
                let (tx, waker) = self.fan.back();
                Box::new(move |engine: &mut Engine, _| {
                    let (mut free, mut backup) = (0, 0);
                    let mut per = Vec::with_capacity(scopes.len());
                    for &si in &scopes {
                        let (x, y) = engine.pool_counts(si);
                        free += x;
                        backup += y;
                        per.push((si, x, y));
                    }
                    let _ = tx.send(FromWorker::Pools {
                        worker: k,
                        free,
                        backup,
                        scopes: per,
                    });
                    let _ = waker.wake();
                    None
                })
            });
        }
        if due(self.last_sweep, SWEEP_EVERY) {
            self.last_sweep = Some(Instant::now());
            let snap = self.rel.link.peer().snapshot();
            self.run_each(|k| {
                let scopes = self.rel.settings.scopes.clone();
                let (tx, waker) = self.fan.back();
                Box::new(move |engine: &mut Engine, now| {
                    let pools = scopes
                        .iter()
                        .filter_map(|&si| pool_row(engine, si))
                        .map(ScopePools::from)
                        .collect();
                    let _ = tx.send(FromWorker::Counts { worker: k, pools });
                    let _ = waker.wake();
                    let mut reclaim = Vec::new();
                    let changes: Vec<Binding> = rel_bindings(engine, &scopes)
                        .filter_map(|b| match snap.sweep(b, now) {
                            Sweep::Keep => {
                                let unacked = matches!(
                                    b.state,
                                    BindingState::Expired
                                        | BindingState::Released
                                        | BindingState::Reset
                                );
                                if unacked && snap.may_allocate(b, now) {
                                    // PARTNER-DOWN after MCLT with a silent partner.
                                    reclaim.push(b.addr);
                                }
                                None
                            }
                            Sweep::Expire(e) | Sweep::Settle(e) => Some(e),
                        })
                        .collect();
                    for b in changes {
                        // Expired ones reach the partner through the commit hook (`needs_update`).
                        engine.install(b);
                    }
                    for a in reclaim {
                        engine.reclaim(a);
                    }
                    None
                })
            });
        }
    }

    fn update_status(&self) {
        let p = self.rel.link.peer();
        let snap = p.snapshot();
        let mut s = self.rel.status.lock().unwrap_or_else(|e| e.into_inner());
        s.state = p.state().to_string();
        s.state_since = p.state_since();
        s.partner_state = p.partner_state().map(|x| x.to_string());
        s.connected = p.is_connected();
        s.unacked_updates = p.pending_updates();
        s.mclt_secs = p.mclt();
        s.takeover_at = snap.takeover_at().map(|t| t.secs());
        s.set_mode(p.mode(), self.rel.settings.role);
        s.last_contact = p.last_heard().map(u64::from);
        s.recover_wait_until = p.recover_wait_until().map(|t| t.secs());
        s.paused = p.state() == PeerState::Paused;
    }
}

/// Every durable binding of the relationship's scopes (indices into the settings; a reload
/// that moves them is refused).
fn rel_bindings<'e>(engine: &'e Engine, scopes: &'e [usize]) -> impl Iterator<Item = &'e Binding> {
    scopes.iter().flat_map(move |&si| engine.scope_bindings(si))
}
