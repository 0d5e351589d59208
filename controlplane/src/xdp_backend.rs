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
}

impl XdpShared {
    /// The `xdp` object of `/v1/stats`: the XDP programs' counters summed over interfaces (by
    /// the names of `tandem_ebpf::Counters`), the AF_XDP worker's counters, and `mode` (like
    /// `"eth1=native"`, comma-separated).
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
        for (ifname, s) in steering.iter() {
            match s.counters() {
                Ok(c) => total = sum(&total, &c),
                Err(e) => tracing::debug!(interface = %ifname, error = %e, "XDP counters"),
            }
        }
        for (name, v) in total.named() {
            m.insert(name.into(), json!(v));
        }
        for (name, v) in self.stats.named() {
            m.insert(name.into(), json!(v));
        }
        Value::Object(m)
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

    /// Publish the RFC 3074 buckets the failover partner answers (dropped in the kernel) on
    /// every interface; all zero accepts every client. Layout of
    /// `tandem_dataplane::hash::BucketMap::as_bytes()`.
    pub fn set_partner_buckets(&self, buckets: &[u8; 32]) {
        let mut steering = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        for (ifname, s) in steering.iter_mut() {
            if let Err(e) = s.set_partner_buckets(buckets) {
                tracing::error!(interface = %ifname, error = %e, "cannot publish the partner's buckets to XDP");
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
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
