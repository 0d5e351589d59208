//! The daemon's hold on its failover relationships across configuration changes.
//!
//! [`FailoverManager`] owns the running relationship threads ([`FailoverHandle`]) and applies a
//! new configuration to them without stopping the service:
//! - nothing changed in `[[failover]]` nor in the layout of the replicated scopes: the worker
//!   just reloads its scopes;
//! - only modes or load-balance splits changed: each relationship changes mode in place
//!   ([`FailoverHandle::set_mode`]); the link stays up and the pools rebalance;
//! - anything else (a relationship added or removed, scopes added to one, MCLT, the shared
//!   secret, addresses): the relationship threads stop, the new set is prepared (state files
//!   read back, listeners bound), and the worker switches to the new scopes, the new replicated
//!   set and the new ownership layout in one control message; then the threads start. The links
//!   drop for that moment (the partners see COMMUNICATIONS-INTERRUPTED and keep serving), and
//!   every committed binding the partner has not acknowledged is queued again at start.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use tandem_dataplane::time::Time;
use tandem_dataplane::worker::{Control, WorkerHandle};

use super::link::NameExchange;
use super::service::{
    prepare, FailoverHandle, HookBus, HookLayout, Layout, Prepared, RelationshipStatus,
    ServiceError, SnapBus,
};
use crate::config::{Config, FailoverSettings};
use crate::xdp_backend::XdpShared;

/// The replicated scopes as (index, name, subnet): when these move, the relationships restart.
pub fn replicated_layout(cfg: &Config) -> Vec<(usize, String, String)> {
    cfg.failover
        .iter()
        .flat_map(|f| f.scopes.iter())
        .filter_map(|&si| {
            cfg.settings.scopes.get(si).map(|s| {
                (
                    si,
                    s.name.clone(),
                    format!("{}/{}", s.subnet.network, s.subnet.prefix),
                )
            })
        })
        .collect()
}

/// The names of the scopes shared with a partner.
pub fn replicated_names(cfg: &Config) -> Vec<String> {
    cfg.failover
        .iter()
        .flat_map(|f| f.scope_names.iter().cloned())
        .collect()
}

/// Per scope, the index of the interface it serves directly (as the daemon computes it).
pub type IfaceScopes = Vec<Vec<usize>>;

/// How a configuration change reached the relationships.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The relationships did not change.
    Unchanged,
    /// Modes changed in place (relationship names).
    ModesChanged(Vec<String>),
    /// The relationships were restarted with the new settings (how many run now).
    Restarted(usize),
}

struct Inner {
    gen: u64,
    running: Option<FailoverHandle>,
    settings: Vec<FailoverSettings>,
    layout: Vec<(usize, String, String)>,
}

/// The running relationships and what is needed to replace them.
pub struct FailoverManager {
    worker: WorkerHandle,
    /// Dynamic DNS's side of the links: host names in BNDUPD.
    names: Option<Arc<dyn NameExchange>>,
    xdp: Option<Arc<XdpShared>>,
    snap_tx: SnapBus,
    hook_tx: HookBus,
    inner: Mutex<Inner>,
}

/// `a` and `b` are the same relationship apart from the mode.
fn same_but_mode(a: &FailoverSettings, b: &FailoverSettings) -> bool {
    let mut x = a.clone();
    x.mode = b.mode;
    x == *b
}

impl FailoverManager {
    /// A manager for the relationships of `cfg`, already prepared as generation `gen` (`None`
    /// without `[[failover]]`), whose layout the worker's authority already has; starts them.
    #[allow(clippy::too_many_arguments)] // each is a separate piece of the daemon's wiring
    pub fn start(
        cfg: &Config,
        prepared: Option<Prepared>,
        gen: u64,
        worker: WorkerHandle,
        xdp: Option<Arc<XdpShared>>,
        snap_tx: SnapBus,
        hook_tx: HookBus,
        names: Option<Arc<dyn NameExchange>>,
    ) -> std::io::Result<FailoverManager> {
        let running = match prepared {
            Some(p) => Some(
                p.starter
                    .start(worker.clone(), xdp.clone(), names.clone())?,
            ),
            None => None,
        };
        Ok(FailoverManager {
            worker,
            names,
            xdp,
            snap_tx,
            hook_tx,
            inner: Mutex::new(Inner {
                gen,
                running,
                settings: cfg.failover.clone(),
                layout: replicated_layout(cfg),
            }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status of every relationship.
    pub fn statuses(&self) -> Vec<RelationshipStatus> {
        self.inner()
            .running
            .as_ref()
            .map(|r| r.statuses())
            .unwrap_or_default()
    }

    /// The status of relationship `name`.
    pub fn status(&self, name: &str) -> Option<RelationshipStatus> {
        self.inner().running.as_ref().and_then(|r| r.status(name))
    }

    /// The settings relationship `name` runs with.
    pub fn settings(&self, name: &str) -> Option<FailoverSettings> {
        self.inner()
            .settings
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// Every relationship's settings.
    pub fn all_settings(&self) -> Vec<FailoverSettings> {
        self.inner().settings.clone()
    }

    fn with_running(
        &self,
        f: impl FnOnce(&FailoverHandle) -> Result<String, Option<String>>,
    ) -> Result<String, Option<String>> {
        match self.inner().running.as_ref() {
            Some(r) => f(r),
            None => Err(None),
        }
    }

    /// See [`FailoverHandle::partner_down`].
    pub fn partner_down(&self, name: &str) -> Result<String, Option<String>> {
        self.with_running(|r| r.partner_down(name))
    }

    /// See [`FailoverHandle::pause`].
    pub fn pause(&self, name: &str) -> Result<String, Option<String>> {
        self.with_running(|r| r.pause(name))
    }

    /// See [`FailoverHandle::resume`].
    pub fn resume(&self, name: &str) -> Result<String, Option<String>> {
        self.with_running(|r| r.resume(name))
    }

    /// Serve `new` (already validated; `iface_scopes` computed from it): reload the worker's
    /// scopes and bring the relationships in line, as the module documentation describes.
    pub fn apply(&self, new: &Config, iface_scopes: IfaceScopes) -> Result<Applied, String> {
        let mut inner = self.inner();
        let layout = replicated_layout(new);
        let reload = |replicated: Option<Vec<String>>, authority: Option<Layout>| Control::Reload {
            settings: Arc::new(new.settings.clone()),
            iface_scopes: iface_scopes.clone(),
            replicated,
            authority: authority.map(|l| Box::new(l) as Box<dyn std::any::Any + Send>),
        };
        if layout == inner.layout
            && new.failover.len() == inner.settings.len()
            && new
                .failover
                .iter()
                .zip(&inner.settings)
                .all(|(a, b)| same_but_mode(a, b))
        {
            self.worker.send(reload(None, None));
            // Scopes served alone may have come or gone beside the relationships' own.
            if let Some(x) = &self.xdp {
                x.set_scope_keys(&crate::xdp_backend::scope_keys(new));
            }
            let changed: Vec<FailoverSettings> = new
                .failover
                .iter()
                .zip(&inner.settings)
                .filter(|(a, b)| a.mode != b.mode)
                .map(|(a, _)| a.clone())
                .collect();
            if changed.is_empty() {
                return Ok(Applied::Unchanged);
            }
            let mut names = Vec::new();
            for c in &changed {
                let r = inner
                    .running
                    .as_ref()
                    .ok_or("no relationship is running")?
                    .set_mode(&c.name, c.mode);
                match r {
                    Ok(msg) => tracing::info!(relationship = %c.name, "{msg}"),
                    Err(e) => {
                        return Err(format!(
                            "relationship {}: {}",
                            c.name,
                            e.unwrap_or_else(|| "not running".into())
                        ))
                    }
                }
                names.push(c.name.clone());
            }
            inner.settings = new.failover.clone();
            return Ok(Applied::ModesChanged(names));
        }
        // Restart the relationships with the new settings.
        if let Some(r) = inner.running.take() {
            r.stop();
        }
        inner.gen += 1;
        let gen = inner.gen;
        let prepared = if new.failover.is_empty() {
            None
        } else {
            match prepare(new, Time::now(), gen, &self.snap_tx) {
                Ok(p) => Some(p),
                Err(e) => return Err(self.fall_back(&mut inner, e)),
            }
        };
        let (authority, hook) = match &prepared {
            Some(p) => (p.layout.clone(), p.hook.clone()),
            None => (
                Layout::standalone(gen, new.settings.scopes.len()),
                HookLayout::empty(),
            ),
        };
        // Every worker switches to the new scopes and layout together with its authority.
        let names = replicated_names(new);
        self.worker
            .each(|_| reload(Some(names.clone()), Some(authority.clone())));
        self.hook_tx.send(&hook);
        // The kernel attributes requests to the new relationships (all buckets ours until each
        // publishes its own).
        if let Some(x) = &self.xdp {
            x.clear_relationship_buckets();
            x.set_scope_keys(&crate::xdp_backend::scope_keys(new));
        }
        inner.settings = new.failover.clone();
        inner.layout = layout;
        let n = new.failover.len();
        if let Some(p) = prepared {
            let started = p
                .starter
                .start(self.worker.clone(), self.xdp.clone(), self.names.clone())
                .map_err(|e| format!("cannot start the failover threads: {e}"))?;
            inner.running = Some(started);
        }
        tracing::info!(
            relationships = n,
            "failover relationships restarted with the new configuration"
        );
        Ok(Applied::Restarted(n))
    }

    /// The new relationships could not be prepared: the old threads are stopped and the worker
    /// still serves the old scopes with the old layout, whose snapshots no longer change. Say so.
    fn fall_back(&self, inner: &mut Inner, e: ServiceError) -> String {
        let msg = format!(
            "the new failover relationships could not start: {e}; the previous relationships \
             are stopped (their last state stays in force in the server) — fix the \
             configuration and reload, or restart tandemd"
        );
        tracing::error!("{msg}");
        inner.running = None;
        msg
    }

    /// Stop every relationship thread.
    pub fn stop(&self) {
        if let Some(r) = self.inner().running.take() {
            r.stop();
        }
    }
}

/// The address a partner reaches this server's relationship `fo` at: its `listen` address,
/// or `server_id` when it listens on all addresses.
pub fn failover_address(cfg: &Config, fo: &FailoverSettings) -> Ipv4Addr {
    match fo.listen.ip() {
        std::net::IpAddr::V4(a) if !a.is_unspecified() => a,
        _ => cfg.settings.server_id,
    }
}
