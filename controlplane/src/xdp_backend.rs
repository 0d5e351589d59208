//! Choosing and opening the packet backend: kernel UDP sockets, or AF_XDP sockets fed by the XDP
//! steering program (`[dataplane] backend`).
//!
//! For AF_XDP, per configured interface: check the process may (capabilities, locked memory),
//! check the interface (exists, up, exactly one receive queue, the configured one), load the
//! steering program for the server port (one program instance per interface, so each has its
//! own XSKMAP), attach it in the configured mode, open the AF_XDP socket on the queue with its
//! UMEM, and register the socket in the XSKMAP. Reply frames leave from the interface's MAC
//! address (sysfs) and from `server_id` if the interface has that address, else from the
//! interface's first IPv4 address (`getifaddrs`).
//!
//! `backend = "auto"` falls back to UDP when any of that fails and logs why; `backend = "xdp"`
//! makes the failure a start-up error. Everything opened so far is closed on failure (dropping
//! a `Steering` detaches its program).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use tandem_dataplane::xdp_worker::{
    check_privileges, interface_info, PortConfig, XdpPort, XdpSetupError, XdpStats, CHUNK_SIZE,
};
use tandem_ebpf::{AttachedMode, Counters, SteerError, Steering, XdpMode};

use crate::config::{Backend, Config, XdpModeSetting};

/// Why the AF_XDP backend could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdpBackendError {
    /// A check or the AF_XDP socket failed.
    #[error("{0}")]
    Setup(#[from] XdpSetupError),
    /// The worker settings do not fit together or this host.
    #[error("{0}")]
    Workers(String),
    /// Loading, attaching or registering with the XDP program failed.
    #[error("XDP on {ifname}: {source}")]
    Steering {
        /// The interface.
        ifname: String,
        /// The failure (boxed: aya's errors are large).
        #[source]
        source: Box<SteerError>,
    },
}

/// The opened AF_XDP backend: one steering program per interface, and per worker one port per
/// interface (in the order of `server.interfaces`) on the worker's receive queue.
pub struct XdpBackend {
    /// The AF_XDP ports: `ports[k]` are worker `k`'s.
    pub ports: Vec<Vec<XdpPort>>,
    /// The core each worker is pinned to (`[dataplane] cores`), if any.
    pub cores: Vec<Option<usize>>,
    /// The programs and their counters, for the admin endpoint and for detaching at shutdown.
    pub shared: Arc<XdpShared>,
}

/// What the daemon keeps of the XDP programs while the worker runs.
pub struct XdpShared {
    steering: Mutex<Vec<(String, Steering)>>,
    modes: Vec<(String, AttachedMode)>,
    /// The AF_XDP worker's counters.
    pub stats: Arc<XdpStats>,
    /// The relationship names by slot, as the last [`XdpShared::set_scope_keys`] gave them.
    rel_names: Mutex<Vec<String>>,
}

/// Which failover relationship the XDP programs attribute a request to (see `steer.bpf.c`):
/// per interface, the relationship of its directly attached scopes; per scope subnet, its
/// relationship (for relayed and renewing requests). Relationship `r` of `[[failover]]` is
/// slot `r`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeKeys {
    /// Relationship names, by slot.
    pub names: Vec<String>,
    /// Per interface: the relationship of all its direct scopes, `None` if they are in none or
    /// in several (then only the engine tells them apart and XDP drops nothing there).
    pub direct: Vec<(String, Option<u32>)>,
    /// Every scope subnet with its relationship (`None`: served alone).
    pub subnets: Vec<(Ipv4Addr, u8, Option<u32>)>,
}

/// The [`ScopeKeys`] of `cfg`. Relationships past the program's
/// [`tandem_ebpf::MAX_RELATIONSHIPS`] get no slot (their partner's clients reach the workers,
/// which decide as always), with a warning.
pub fn scope_keys(cfg: &Config) -> ScopeKeys {
    let n = cfg.settings.scopes.len();
    let mut rel_of: Vec<Option<u32>> = vec![None; n];
    for (r, fo) in cfg.failover.iter().enumerate() {
        let slot = u32::try_from(r)
            .ok()
            .filter(|&r| r < tandem_ebpf::MAX_RELATIONSHIPS);
        if slot.is_none() {
            tracing::warn!(relationship = %fo.name, max = tandem_ebpf::MAX_RELATIONSHIPS,
                "more failover relationships than XDP tells apart: this one's partner clients are dropped by the workers, not in the kernel");
        }
        for &si in &fo.scopes {
            if let Some(x) = rel_of.get_mut(si) {
                *x = slot;
            }
        }
    }
    let direct = cfg
        .daemon
        .interfaces
        .iter()
        .map(|ifname| {
            let mut rels = cfg
                .scope_interfaces
                .iter()
                .enumerate()
                .filter(|(_, i)| i.as_deref() == Some(ifname.as_str()))
                .map(|(si, _)| rel_of[si]);
            let first = rels.next().flatten();
            let same = rels.all(|r| r == first);
            (ifname.clone(), first.filter(|_| same))
        })
        .collect();
    let subnets = cfg
        .settings
        .scopes
        .iter()
        .zip(&rel_of)
        .map(|(sc, r)| (sc.subnet.network, sc.subnet.prefix, *r))
        .collect();
    ScopeKeys {
        names: cfg.failover.iter().map(|f| f.name.clone()).collect(),
        direct,
        subnets,
    }
}

impl XdpShared {
    /// The `xdp` object of `/v1/stats`: the XDP programs' counters summed over interfaces (by
    /// the names of `tandem_ebpf::Counters`), the AF_XDP worker's counters, `mode` (like
    /// `"eth1=native"`, comma-separated) and `rx_stamps` (whether the program stamps frames
    /// with their receive time, see `Steering::stamps_frames`).
    pub fn stats_json(&self) -> Value {
        let mut m = Map::new();
        let mode: Vec<String> = self
            .modes
            .iter()
            .map(|(i, md)| format!("{i}={md}"))
            .collect();
        m.insert("mode".into(), json!(mode.join(",")));
        let mut total = Counters::default();
        let steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        // False where the kernel refused the program's receive-time stamp: the queue_wait
        // stage then measures nothing.
        let stamps = steering.iter().all(|(_, s)| s.stamps_frames());
        m.insert("rx_stamps".into(), json!(stamps));
        for (ifname, s) in steering.iter() {
            match s.counters() {
                Ok(c) => total = sum(&total, &c),
                Err(e) => tracing::debug!(interface = %ifname, error = %e, "XDP counters"),
            }
        }
        for (name, v) in total.named() {
            m.insert(name.into(), json!(v));
        }
        drop(steering);
        for (name, v) in self.stats.named() {
            m.insert(name.into(), json!(v));
        }
        let per: Map<String, Value> = self
            .relationship_drops()
            .into_iter()
            .map(|(name, n)| (name, json!(n)))
            .collect();
        m.insert("partner_drop_by_relationship".into(), Value::Object(per));
        Value::Object(m)
    }

    /// Publish `keys` to every interface's program (at start-up and on every reload). A request
    /// attributed to no relationship meanwhile is passed to the workers.
    pub fn set_scope_keys(&self, keys: &ScopeKeys) {
        let mut steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        for (ifname, s) in steering.iter_mut() {
            let direct = keys
                .direct
                .iter()
                .find(|(i, _)| i == ifname)
                .and_then(|(_, r)| *r);
            let mut res = s.clear_subnet_relationships();
            for &(net, prefix, rel) in &keys.subnets {
                res = res.and_then(|()| s.set_subnet_relationship(net, prefix, rel));
            }
            res = res.and_then(|()| s.set_direct_relationship(direct));
            match res {
                Ok(()) => {
                    tracing::info!(interface = %ifname, direct_relationship = ?direct.and_then(|r| keys.names.get(r as usize)),
                    subnets = keys.subnets.len(), "XDP scope keys published")
                }
                Err(e) => tracing::error!(interface = %ifname, error = %e,
                    "cannot publish the scope keys to XDP (the workers still drop the partner's clients)"),
            }
        }
        *self.rel_names.lock().unwrap_or_else(|e| e.into_inner()) = keys.names.clone();
    }

    /// Clear every relationship's buckets (every client is ours) when the relationships restart:
    /// each publishes its own again as it starts.
    pub fn clear_relationship_buckets(&self) {
        let mut steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        for (ifname, s) in steering.iter_mut() {
            for slot in 0..tandem_ebpf::MAX_RELATIONSHIPS {
                if let Err(e) = s.set_relationship_buckets(slot, &[0; 32]) {
                    tracing::error!(interface = %ifname, error = %e, "cannot clear the partner's buckets in XDP");
                    break;
                }
            }
        }
    }

    /// Publish the RFC 3074 buckets the partner of relationship `rel` answers (dropped in the
    /// kernel for its scopes' requests) on every interface; all zero accepts every client.
    /// Layout of `tandem_dataplane::hash::BucketMap::as_bytes()`.
    pub fn set_relationship_buckets(&self, rel: usize, buckets: &[u8; 32]) {
        let Some(slot) = u32::try_from(rel)
            .ok()
            .filter(|&r| r < tandem_ebpf::MAX_RELATIONSHIPS)
        else {
            return;
        };
        let mut steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        for (ifname, s) in steering.iter_mut() {
            if let Err(e) = s.set_relationship_buckets(slot, buckets) {
                tracing::error!(interface = %ifname, error = %e, "cannot publish the partner's buckets to XDP");
            }
        }
    }

    /// Per relationship (by name), the requests the XDP programs dropped as its partner's,
    /// summed over interfaces.
    pub fn relationship_drops(&self) -> Vec<(String, u64)> {
        let names = self
            .rel_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        names
            .into_iter()
            .enumerate()
            .map(|(r, name)| {
                let n = steering
                    .iter()
                    .filter_map(|(_, s)| s.relationship_drops(r as u32).ok())
                    .fold(0u64, u64::wrapping_add);
                (name, n)
            })
            .collect()
    }

    /// The XDP program's counters per interface, in the order of `server.interfaces` (an
    /// interface whose counters cannot be read is left out, logged at debug level).
    pub fn interface_counters(&self) -> Vec<(String, Counters)> {
        let steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        steering
            .iter()
            .filter_map(|(ifname, s)| match s.counters() {
                Ok(c) => Some((ifname.clone(), c)),
                Err(e) => {
                    tracing::debug!(interface = %ifname, error = %e, "XDP counters");
                    None
                }
            })
            .collect()
    }

    /// Detaches the programs from every interface now (also done when the last reference is
    /// dropped).
    pub fn detach(&self) {
        let mut steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        for (ifname, s) in steering.iter_mut() {
            if let Err(e) = s.detach() {
                tracing::warn!(interface = %ifname, error = %e, "XDP detach failed");
            }
        }
    }

    /// The interfaces with the mode the program runs in.
    pub fn modes(&self) -> &[(String, AttachedMode)] {
        &self.modes
    }
}

/// `a + b`, counter by counter (`Counters` is non-exhaustive: built from `since`).
fn sum(a: &Counters, b: &Counters) -> Counters {
    // a + b == b - (0 - a) in wrapping arithmetic.
    let neg_a = Counters::default().since(a);
    b.since(&neg_a)
}

/// The backend to run: `Ok(None)` for UDP, `Ok(Some(_))` for AF_XDP. `backend = "auto"` falls
/// back to UDP on any AF_XDP failure (logged with its cause); `backend = "xdp"` returns it.
pub fn select(cfg: &Config) -> Result<Option<XdpBackend>, XdpBackendError> {
    match cfg.dataplane.backend {
        Backend::Udp => Ok(None),
        Backend::Xdp => open(cfg).map(Some),
        Backend::Auto => match open(cfg) {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                tracing::warn!(error = %e, "AF_XDP backend unavailable; falling back to the UDP backend (backend = \"auto\")");
                Ok(None)
            }
        },
    }
}

/// How many AF_XDP workers `cfg` asks for: one per `[dataplane] cores` entry, else `[server]
/// workers` (failover relationships included: every worker serves its share of each).
pub fn worker_count(cfg: &Config) -> usize {
    if cfg.dataplane.cores.is_empty() {
        cfg.daemon.workers.max(1)
    } else {
        cfg.dataplane.cores.len()
    }
}

/// Opens the AF_XDP backend on every configured interface (see the module docs).
pub fn open(cfg: &Config) -> Result<XdpBackend, XdpBackendError> {
    let d = &cfg.daemon;
    let dp = &cfg.dataplane;
    let workers = worker_count(cfg);
    if !dp.cores.is_empty() && d.workers > 1 && d.workers != dp.cores.len() {
        return Err(XdpBackendError::Workers(format!(
            "[server] workers = {} but [dataplane] cores lists {} core(s); one AF_XDP worker runs per listed core (remove one of the two)",
            d.workers,
            dp.cores.len()
        )));
    }
    let online = core_affinity::get_core_ids().unwrap_or_default();
    for &c in &dp.cores {
        if !online.is_empty() && !online.iter().any(|id| id.id == c) {
            return Err(XdpBackendError::Workers(format!(
                "[dataplane] cores lists core {c}, but this host's usable cores are {:?}",
                online.iter().map(|id| id.id).collect::<Vec<_>>()
            )));
        }
    }
    let per_port = u64::from(dp.frame_count) * u64::from(CHUNK_SIZE);
    check_privileges(per_port * (d.interfaces.len() * workers) as u64)?;
    let mut infos = Vec::with_capacity(d.interfaces.len());
    for ifname in &d.interfaces {
        let info = interface_info(ifname)?;
        if !info.up {
            return Err(XdpSetupError::Down {
                ifname: ifname.clone(),
            }
            .into());
        }
        if dp.queue >= info.rx_queues {
            return Err(XdpSetupError::NoQueue {
                ifname: ifname.clone(),
                queues: info.rx_queues,
                queue: dp.queue,
            }
            .into());
        }
        // workers <= 1024 ([dataplane] cores) or 256 ([server] workers).
        let w = workers as u32;
        let covered = dp.queue + w <= info.rx_queues
            && (info.rx_queues == 1 || (dp.queue == 0 && info.rx_queues == w));
        if !covered {
            return Err(XdpSetupError::Queues {
                ifname: ifname.clone(),
                queues: info.rx_queues,
                queue: dp.queue,
                workers: w,
            }
            .into());
        }
        infos.push(info);
    }
    let mode = match dp.xdp_mode {
        XdpModeSetting::Native => XdpMode::Native,
        XdpModeSetting::Generic => XdpMode::Generic,
        XdpModeSetting::Auto => XdpMode::Auto,
    };
    let mut steering = Vec::with_capacity(infos.len());
    let mut ports: Vec<Vec<XdpPort>> = (0..workers).map(|_| Vec::new()).collect();
    let mut modes = Vec::with_capacity(infos.len());
    for info in &infos {
        let serr = |source: SteerError| XdpBackendError::Steering {
            ifname: info.name.clone(),
            source: Box::new(source),
        };
        let mut s = Steering::load(d.server_port).map_err(serr)?;
        let attached = s.attach(&info.name, mode).map_err(serr)?;
        let ip = info.reply_address(cfg.settings.server_id);
        if !info.ipv4.contains(&ip) {
            tracing::warn!(interface = %info.name, source_ip = %ip,
                "the interface has no IPv4 address; reply frames leave from server_id, which the kernel will not answer ARP for here");
        }
        let mac: Vec<String> = info.mac.iter().map(|b| format!("{b:02x}")).collect();
        for (k, worker_ports) in ports.iter_mut().enumerate() {
            // k < workers, which fits in u32 (checked above).
            let queue = dp.queue + k as u32;
            let pcfg = PortConfig {
                queue,
                frame_count: dp.frame_count,
                ring_size: dp.ring_size,
            };
            let port = XdpPort::open(info, ip, &pcfg)?;
            s.set_xsk(queue, port.socket().as_fd()).map_err(serr)?;
            tracing::info!(interface = %info.name, xdp_mode = %attached, queue, worker = k,
                mac = %mac.join(":"), source_ip = %ip, frame_count = dp.frame_count,
                ring_size = dp.ring_size, carrier = info.running, "AF_XDP socket registered");
            worker_ports.push(port);
        }
        modes.push((info.name.clone(), attached));
        steering.push((info.name.clone(), s));
    }
    let cores = (0..workers).map(|k| dp.cores.get(k).copied()).collect();
    Ok(XdpBackend {
        ports,
        cores,
        shared: Arc::new(XdpShared {
            steering: Mutex::new(steering),
            modes,
            stats: Arc::new(XdpStats::default()),
            rel_names: Mutex::new(Vec::new()),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_name_each_relationship_by_interface_and_subnet() {
        let text = "\
[server]
server_id = \"10.0.0.1\"
interfaces = [\"eth0\", \"eth1\", \"eth2\"]
[[scope]]
name = \"lan\"
subnet = \"10.0.0.0/24\"
interface = \"eth0\"
ranges = [\"10.0.0.100-10.0.0.200\"]
[[scope]]
name = \"voice\"
subnet = \"10.0.1.0/24\"
interface = \"eth1\"
ranges = [\"10.0.1.100-10.0.1.200\"]
[[scope]]
name = \"guest\"
subnet = \"10.0.2.0/24\"
interface = \"eth1\"
ranges = [\"10.0.2.100-10.0.2.200\"]
[[scope]]
name = \"remote\"
subnet = \"10.9.0.0/16\"
ranges = [\"10.9.0.100-10.9.0.200\"]
[[failover]]
name = \"a\"
role = \"primary\"
partner = \"10.0.0.2\"
scopes = [\"lan\", \"remote\"]
[[failover]]
name = \"b\"
role = \"secondary\"
partner = \"10.0.0.3\"
scopes = [\"voice\"]
";
        let cfg = crate::config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let k = scope_keys(&cfg);
        assert_eq!(k.names, vec!["a".to_string(), "b".to_string()]);
        // eth0 holds only "lan" (a); eth1 mixes "voice" (b) with "guest" (alone): no
        // relationship in the kernel; eth2 has no scope.
        assert_eq!(
            k.direct,
            vec![
                ("eth0".to_string(), Some(0)),
                ("eth1".to_string(), None),
                ("eth2".to_string(), None)
            ]
        );
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            k.subnets,
            vec![
                (ip("10.0.0.0"), 24, Some(0)),
                (ip("10.0.1.0"), 24, Some(1)),
                (ip("10.0.2.0"), 24, None),
                (ip("10.9.0.0"), 16, Some(0)),
            ]
        );
    }

    #[test]
    fn counters_add_fieldwise() {
        let mut a = Counters::default();
        let mut b = Counters::default();
        a.redirect = 3;
        a.not_ipv4 = 1;
        b.redirect = 4;
        b.other_port = 2;
        let s = sum(&a, &b);
        assert_eq!((s.redirect, s.not_ipv4, s.other_port), (7, 1, 2));
        assert_eq!(s.frames(), 10);
    }
}
