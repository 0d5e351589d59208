//! `tandemd`: wires the configuration, the journal, the engine, the UDP backend, the worker thread
//! and the admin endpoint together, and handles signals (SIGHUP reloads scopes and policies,
//! SIGTERM/SIGINT stop cleanly after a final journal commit).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tandem_dataplane::engine::{Engine, Stats};
use tandem_dataplane::journal::JournalConfig;
use tandem_dataplane::time::Time;
use tandem_dataplane::worker::{Control, Worker, WorkerHandle, WorkerStats};

use crate::admin::{Admin, AdminState};
use crate::config::{self, Config, LogFormat};
use crate::failover::manager::{self, FailoverManager};
use crate::failover::service::{self as failover, FailoverAuthority, HookBus, SnapBus};
use crate::notify::{self, Notice};

/// How often the address shards of several workers are checked for one running low.
const REBALANCE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Requests one UDP worker's handoff queue holds (what the steering program left to the
/// kernel's choice, in flight to their owner).
const UDP_HANDOFF_SLOTS: usize = 4096;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration is invalid (every error is listed).
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    /// The state directory cannot be used.
    #[error("state directory {}: {message}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The journal could not be opened or recovered.
    #[error("{0}")]
    Journal(#[from] tandem_dataplane::journal::JournalError),
    /// The UDP sockets could not be opened.
    #[error("{0}")]
    Udp(#[from] tandem_dataplane::udp::UdpError),
    /// The admin endpoint could not start.
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    /// Another start-up failure.
    #[error("{0}")]
    Other(String),
}

/// Which scopes serve directly attached clients on each interface, by interface index.
pub fn iface_scopes(cfg: &Config) -> Vec<Vec<usize>> {
    cfg.daemon
        .interfaces
        .iter()
        .map(|ifname| {
            cfg.scope_interfaces
                .iter()
                .enumerate()
                .filter(|(_, i)| i.as_deref() == Some(ifname.as_str()))
                .map(|(k, _)| k)
                .collect()
        })
        .collect()
}

/// Set up logging to stderr in the configured format (`RUST_LOG` overrides the level).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// Lock the state directory so that two daemons never write the same journal.
fn lock_state_dir(dir: &Path) -> Result<File, DaemonError> {
    let err = |message: String| DaemonError::StateDir {
        path: dir.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create: {e}")))?;
    let lock = File::create(dir.join("tandemd.lock"))
        .map_err(|e| err(format!("cannot create lock file: {e}")))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(err("another tandemd is using it".into())),
        Err(std::fs::TryLockError::Error(e)) => Err(err(format!("cannot lock: {e}"))),
    }
}

/// Run the daemon with the configuration file at `path` until SIGTERM/SIGINT.
pub fn run(path: &Path) -> Result<(), DaemonError> {
    let cfg = config::load(path)?;
    init_logging(cfg.daemon.log_format);
    let d = &cfg.daemon;
    let _lock = lock_state_dir(&d.state_dir)?;
    // `[dataplane] backend`: AF_XDP (`xdp`, or `auto` when it can run here) or kernel UDP.
    let xdp = crate::xdp_backend::select(&cfg)
        .map_err(|e| DaemonError::Other(format!("backend = \"xdp\": {e}")))?;
    let backend_name = if xdp.is_some() { "xdp" } else { "udp" };
    // The UDP backend's sockets are bound now: whether its steering programs load decides how
    // many workers it runs (see `udp_backend`), and the journals are recovered for that many.
    let mut udp = match &xdp {
        Some(_) => None,
        None => Some(crate::udp_backend::open(
            &cfg,
            crate::xdp_backend::worker_count(&cfg),
        )?),
    };
    let workers = match (&xdp, &udp) {
        (Some(x), _) => x.ports.len(),
        (None, Some((_, shared))) => shared.workers,
        (None, None) => 1,
    };
    let mut jcfg = JournalConfig::new(&d.state_dir, 0);
    jcfg.durability = d.durability;
    jcfg.compact_after_records = d.compact_after_records;
    let t = Instant::now();
    let rec = tandem_dataplane::shards::recover_all(&jcfg, workers)?;
    for j in rec.journals.iter().chain(rec.stale.iter()) {
        let r = &j.recovery;
        tracing::info!(
            worker = j.cfg.worker,
            bindings = r.bindings.len(),
            snapshot_records = r.snapshot_records,
            records_replayed = r.records_replayed,
            torn_bytes_truncated = r.torn_bytes_truncated,
            corrupt_records = r.corrupt_records,
            "lease journal recovered"
        );
        if r.corrupt_records > 0 {
            tracing::warn!(
                worker = j.cfg.worker,
                corrupt_records = r.corrupt_records,
                "the journal had unreadable records; they were skipped"
            );
        }
    }
    let stats = Arc::new(Stats::new(workers));
    let wstats: Vec<Arc<WorkerStats>> = (0..workers).map(|_| Arc::default()).collect();
    let settings = Arc::new(cfg.settings.clone());
    let now = Time::now();
    let mut engines: Vec<Engine> = (0..workers)
        .map(|k| {
            let mut e = Engine::new(
                settings.clone(),
                iface_scopes(&cfg),
                k,
                workers,
                stats.clone(),
            );
            e.set_replicated(manager::replicated_names(&cfg));
            e.set_hardening(cfg.daemon.hardening.clone());
            e.load_part(&rec.bindings, now);
            e
        })
        .collect();
    // Dynamic DNS: the updater runs whether or not a scope has DNS now (a reload may add one);
    // the engines send it names, the commit taps the bindings' ends, failover the partner's.
    let fo_cell = Arc::new(std::sync::OnceLock::new());
    let ddns = Arc::new(
        crate::ddns::Ddns::start(
            crate::ddns_feed::ddns_config(&cfg),
            crate::ddns_feed::takeover(fo_cell.clone()),
        )
        .map_err(|e| DaemonError::Other(format!("cannot start the DNS updater: {e}")))?,
    );
    let dns_subnets = crate::ddns_feed::DnsSubnets::new(&cfg);
    let name_tx = crate::ddns_feed::spawn_name_feed(ddns.clone())
        .map_err(|e| DaemonError::Other(format!("cannot start the DNS name feed: {e}")))?;
    for e in &mut engines {
        e.set_name_sink(name_tx.clone());
    }
    drop(name_tx);
    let merged = rec.bindings.len();
    let (journals, rewritten) =
        tandem_dataplane::shards::rewrite_stale(rec, &engines, &cfg.settings)?;
    tracing::info!(
        bindings = merged,
        workers,
        journals_rewritten = rewritten,
        elapsed_ms = t.elapsed().as_millis() as u64,
        "leases loaded"
    );
    // Failover relationships: saved state read back and listeners bound before serving; every
    // worker's authority and commit hook has their layout before the worker answers anyone.
    let (mut authorities, snap_txs): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| FailoverAuthority::new(cfg.settings.scopes.len()))
        .unzip();
    let (hooks, hook_txs): (Vec<_>, Vec<_>) = (0..workers).map(failover::commit_router).unzip();
    let mut hooks: Vec<_> = hooks
        .into_iter()
        .map(|h| crate::ddns_feed::tap(h, ddns.sender(), ddns.clone(), dns_subnets.clone()))
        .collect();
    let (snap_bus, hook_bus) = (SnapBus::new(snap_txs), HookBus::new(hook_txs));
    let gen = 1;
    let prepared = if cfg.failover.is_empty() {
        None
    } else {
        let p = failover::prepare(&cfg, Time::now(), gen, &snap_bus)
            .map_err(|e| DaemonError::Other(e.to_string()))?;
        for a in &mut authorities {
            a.set_layout(p.layout.clone());
        }
        hook_bus.send(&p.hook);
        Some(p)
    };
    let mut threads = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    let spawn = |k: usize| std::thread::Builder::new().name(format!("tandem-worker-{k}"));
    let start_err =
        |e: std::io::Error| DaemonError::Other(format!("cannot start a worker thread: {e}"));
    let mut udp_shared = None;
    let xdp_shared = if let Some(x) = xdp {
        let mut group = Vec::with_capacity(workers);
        let busy_poll = cfg.dataplane.busy_poll;
        for (k, ((((ports, engine), (journal, jc)), auth), hook)) in x
            .ports
            .into_iter()
            .zip(engines.drain(..))
            .zip(journals)
            .zip(authorities.drain(..))
            .zip(hooks.drain(..))
            .enumerate()
        {
            let (mut worker, handle) = tandem_dataplane::xdp_worker::XdpWorker::new(
                engine,
                journal,
                jc,
                auth,
                ports,
                d.batch_size,
                d.client_port,
                wstats[k].clone(),
                x.shared.stats.clone(),
            )
            .map_err(|e| DaemonError::Other(format!("worker {k} set-up: {e}")))?;
            worker.set_commit_hook(hook);
            worker.set_busy_poll(busy_poll);
            worker.set_core(x.cores.get(k).copied().flatten());
            group.push(worker);
            handles.push(handle);
        }
        if workers > 1 {
            let wakers: Vec<_> = group.iter().map(|w| w.waker()).collect();
            // As many frames each way between two workers as one RX ring holds: a full RX batch
            // of the other worker's clients always fits.
            let slots = cfg.dataplane.ring_size as usize;
            let mesh = tandem_dataplane::xdp_worker::handoff_mesh(workers, slots);
            for (w, h) in group.iter_mut().zip(mesh) {
                w.set_handoff(h, &wakers);
            }
        }
        for (k, worker) in group.into_iter().enumerate() {
            threads.push(spawn(k).spawn(move || worker.run()).map_err(start_err)?);
        }
        Some(x.shared)
    } else if let Some((backend, shared)) = udp.take() {
        let mut group = Vec::with_capacity(workers);
        for (k, ((((sockets, engine), (journal, jc)), auth), hook)) in backend
            .workers
            .into_iter()
            .zip(engines.drain(..))
            .zip(journals)
            .zip(authorities.drain(..))
            .zip(hooks.drain(..))
            .enumerate()
        {
            let (mut worker, handle) = Worker::new(
                engine,
                journal,
                jc,
                auth,
                sockets,
                d.batch_size,
                d.client_port,
                wstats[k].clone(),
            )
            .map_err(|e| DaemonError::Other(format!("worker {k} set-up: {e}")))?;
            worker.set_commit_hook(hook);
            worker.set_core(cfg.dataplane.cores.get(k).copied());
            group.push(worker);
            handles.push(handle);
        }
        if workers > 1 {
            let wakers: Vec<_> = group.iter().map(|w| w.waker()).collect();
            let inboxes = tandem_dataplane::worker::udp_handoff_inboxes(workers, UDP_HANDOFF_SLOTS);
            for (k, w) in group.iter_mut().enumerate() {
                w.set_handoff(k, inboxes.clone(), wakers.clone());
            }
        }
        for (k, worker) in group.into_iter().enumerate() {
            threads.push(spawn(k).spawn(move || worker.run()).map_err(start_err)?);
        }
        udp_shared = Some(Arc::new(shared));
        None
    } else {
        return Err(DaemonError::Other("no backend opened".into()));
    };
    let handle = WorkerHandle::join(handles);
    let rebalancer = if workers > 1 {
        Some(
            tandem_dataplane::shards::Rebalancer::spawn(handle.clone(), REBALANCE_EVERY).map_err(
                |e| DaemonError::Other(format!("cannot start the shard rebalancer: {e}")),
            )?,
        )
    } else {
        None
    };
    if let Some(x) = &xdp_shared {
        // Before any relationship publishes its partner's buckets.
        x.set_scope_keys(&crate::xdp_backend::scope_keys(&cfg));
    }
    let fo = Arc::new(
        FailoverManager::start(
            &cfg,
            prepared,
            gen,
            handle.clone(),
            xdp_shared.clone(),
            snap_bus,
            hook_bus,
            Some(Arc::new(crate::ddns_feed::Names::new(ddns.clone()))),
        )
        .map_err(|e| DaemonError::Other(format!("cannot start the failover threads: {e}")))?,
    );
    let _ = fo_cell.set(fo.clone());
    let dns = Dns {
        ddns: ddns.clone(),
        subnets: dns_subnets,
    };
    let alarms = {
        let fo = fo.clone();
        let source: crate::alarms::StatusSource = Arc::new(move || fo.statuses());
        Arc::new(
            crate::alarms::Monitor::spawn(source, std::time::Duration::from_secs(5))
                .map_err(|e| DaemonError::Other(format!("cannot start the alarm monitor: {e}")))?,
        )
    };
    let shared = Arc::new(RwLock::new(cfg.clone()));
    let reload_fn: crate::admin::ReloadFn = {
        let (path, shared, fo) = (path.to_path_buf(), shared.clone(), fo.clone());
        let workers = handle.clone();
        let dns = dns.clone();
        Arc::new(move || reload(&path, &shared, &fo, &workers, &dns))
    };
    let admin = Admin::start(
        d.admin_listen,
        AdminState {
            config: shared.clone(),
            worker: handle.clone(),
            stats,
            worker_stats: wstats,
            started: Instant::now(),
            reload: reload_fn,
            xdp: xdp_shared.clone(),
            udp: udp_shared.clone(),
            failover: fo.clone(),
            config_path: path.to_path_buf(),
            edit_lock: Arc::new(std::sync::Mutex::new(())),
            peer_nonces: std::sync::Mutex::new(Default::default()),
            alarms: Some(alarms.clone()),
            ddns: Some(ddns.clone()),
        },
    )?;
    tracing::info!(
        server_id = %cfg.settings.server_id,
        interfaces = ?d.interfaces,
        scopes = cfg.settings.scopes.len(),
        durability = ?d.durability,
        admin = %d.admin_listen,
        backend = backend_name,
        failover_relationships = cfg.failover.len(),
        xdp_mode = ?xdp_shared.as_ref().map(|x| x.modes().to_vec()),
        "tandemd serving"
    );
    let ready = format!("serving {} scope(s)", cfg.settings.scopes.len());
    notify::notify(&[Notice::Ready, Notice::Status(&ready)]);
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])
        .map_err(|e| DaemonError::Other(format!("signal set-up: {e}")))?;
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                let _ = reload(path, &shared, &fo, &handle, &dns);
            }
            _ => {
                tracing::info!(signal = sig, "stopping");
                notify::notify(&[Notice::Stopping, Notice::Status("stopping")]);
                break;
            }
        }
    }
    admin.stop();
    alarms.stop();
    if let Some(r) = rebalancer {
        r.stop();
    }
    fo.stop();
    handle.send(Control::Shutdown);
    let joined: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    if let Some(x) = xdp_shared {
        x.detach();
    }
    ddns.stop();
    for (k, j) in joined.into_iter().enumerate() {
        match j {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(DaemonError::Other(format!("worker {k} failed: {e}"))),
            Err(_) => return Err(DaemonError::Other(format!("worker {k} panicked"))),
        }
    }
    Ok(())
}

/// Reload the configuration at `path` (SIGHUP, `POST /v1/reload`, changes made through the
/// admin API): the number of scopes now served, or every error (the running configuration
/// stays). Tells systemd while it runs.
/// The DNS updater and what the commit taps know of it, for reloads.
#[derive(Clone)]
struct Dns {
    ddns: Arc<crate::ddns::Ddns>,
    subnets: Arc<crate::ddns_feed::DnsSubnets>,
}

fn reload(
    path: &Path,
    shared: &Arc<RwLock<Config>>,
    fo: &FailoverManager,
    workers: &WorkerHandle,
    dns: &Dns,
) -> Result<usize, config::ConfigErrors> {
    notify::notify(&[
        Notice::Reloading,
        Notice::Status("reloading the configuration"),
    ]);
    let result = reload_config(path, shared, fo, workers, dns);
    let status = match &result {
        Ok(n) => format!("serving {n} scope(s)"),
        Err(e) => format!(
            "reload refused ({} configuration error(s)); serving the previous configuration",
            e.0.len()
        ),
    };
    notify::notify(&[Notice::Ready, Notice::Status(&status)]);
    result
}

fn reload_config(
    path: &Path,
    shared: &Arc<RwLock<Config>>,
    fo: &FailoverManager,
    workers: &WorkerHandle,
    dns: &Dns,
) -> Result<usize, config::ConfigErrors> {
    match config::load(path) {
        Err(errs) => {
            for e in &errs.0 {
                tracing::error!(error = %e, "reload refused: configuration error");
            }
            tracing::error!("reload refused; still serving the previous configuration");
            Err(errs)
        }
        Ok(mut new) => {
            let mut cur = shared.write().unwrap_or_else(|e| e.into_inner());
            let hardening = new.daemon.hardening.clone();
            let mut same = new.daemon.clone();
            same.hardening = cur.daemon.hardening.clone();
            if same != cur.daemon {
                tracing::warn!("changes to [server] settings (interfaces, ports, state_dir, admin_listen, durability, workers) take effect at restart only; scopes, policies, request screening and failover relationships are reloaded now");
            }
            new.daemon = cur.daemon.clone();
            if hardening != cur.daemon.hardening {
                tracing::info!(?hardening, "request screening changed");
                let ok = workers.each(|_| {
                    let h = hardening.clone();
                    Control::Run(Box::new(move |e, _| {
                        e.set_hardening(h);
                        None
                    }))
                });
                if !ok {
                    tracing::error!("a worker is gone; it keeps the old request screening");
                }
                new.daemon.hardening = hardening;
            }
            if let Err(message) = fo.apply(&new, iface_scopes(&new)) {
                let e = config::ConfigError {
                    origin: path.display().to_string(),
                    line: 0,
                    column: 0,
                    key: "failover".into(),
                    message,
                };
                tracing::error!(error = %e, "reload failed");
                return Err(config::ConfigErrors(vec![e]));
            }
            if new.ddns != cur.ddns {
                dns.ddns.reconfigure(crate::ddns_feed::ddns_config(&new));
                dns.subnets.set(&new);
                tracing::info!(scopes = new.ddns.len(), "dynamic DNS settings changed");
            }
            let scopes = new.settings.scopes.len();
            tracing::info!(
                scopes,
                relationships = new.failover.len(),
                "configuration reloaded"
            );
            *cur = new;
            Ok(scopes)
        }
    }
}
