//! The UDP-socket backend's daemon side: the sockets of every worker and, with several workers,
//! the kernel steering that sends each request to the worker owning its client.
//!
//! One socket per worker and interface (`tandem_dataplane::udp::UdpBackend`); with two or more
//! workers the sockets of an interface share the port through SO_REUSEPORT and the steering
//! program (`tandem_ebpf::ReuseportSteering`) selects, per datagram, worker `bucket % workers`
//! (the RFC 3074 bucket of option 61, else chaddr: the engine's owner) for unicast datagrams,
//! while each socket's filter keeps only its own worker's clients of the broadcasts, which reach
//! every socket. What they cannot key goes to worker 0, which hands it to the owner through a
//! bounded queue (`tandem_udp_handoffs_total`); the verdicts are `tandem_udp_steering_total`.
//! Without the programs (no `CAP_BPF`) every worker would receive every broadcast, so the
//! backend then runs one worker, saying why.

use std::sync::Mutex;

use tandem_dataplane::udp::{UdpBackend, UdpError};
use tandem_ebpf::{ReuseportCounters, ReuseportSteering};

use crate::config::Config;

/// The running UDP backend's shared parts (counters for the admin endpoint).
pub struct UdpShared {
    /// The workers.
    pub workers: usize,
    /// Per interface, its steering programs (`None` with one worker).
    steering: Vec<(String, Option<Mutex<ReuseportSteering>>)>,
}

impl std::fmt::Debug for UdpShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpShared")
            .field("workers", &self.workers)
            .field("interfaces", &self.steering.len())
            .finish_non_exhaustive()
    }
}

impl UdpShared {
    /// Per interface with a steering program, its counters (an interface whose counters cannot
    /// be read is left out, logged at debug level).
    pub fn steering_counters(&self) -> Vec<(String, ReuseportCounters)> {
        let mut out = Vec::new();
        for (iface, s) in &self.steering {
            let Some(s) = s else { continue };
            let c = match s.lock() {
                Ok(g) => g.counters(),
                Err(p) => p.into_inner().counters(),
            };
            match c {
                Ok(c) => out.push((iface.clone(), c)),
                Err(e) => tracing::debug!(iface, error = %e, "reading the reuseport counters"),
            }
        }
        out
    }

    /// True if every interface's requests are steered in the kernel.
    pub fn steered(&self) -> bool {
        self.steering.iter().all(|(_, s)| s.is_some())
    }
}

/// Binds `workers` sockets on every interface of `cfg` and, with several workers, attaches
/// the steering programs to each interface's group. If they cannot be loaded (logged), binds one
/// socket per interface instead: the returned [`UdpShared::workers`] is the number to run.
pub fn open(cfg: &Config, workers: usize) -> Result<(UdpBackend, UdpShared), UdpError> {
    let d = &cfg.daemon;
    let backend = UdpBackend::open(&d.interfaces, d.server_port, workers)?;
    if workers < 2 {
        let steering = backend
            .interfaces
            .iter()
            .map(|i| (i.clone(), None))
            .collect();
        return Ok((
            backend,
            UdpShared {
                workers: 1,
                steering,
            },
        ));
    }
    let mut steering = Vec::with_capacity(backend.interfaces.len());
    for (i, iface) in backend.interfaces.iter().enumerate() {
        let group: Vec<&std::net::UdpSocket> =
            backend.workers.iter().filter_map(|w| w.get(i)).collect();
        match ReuseportSteering::attach(&group) {
            Ok(s) => {
                tracing::info!(
                    iface,
                    workers,
                    "UDP requests steered to the worker owning their client (SO_REUSEPORT and \
                     socket filter programs)"
                );
                steering.push((iface.clone(), Some(Mutex::new(s))));
            }
            Err(e) => {
                tracing::warn!(
                    iface,
                    workers,
                    error = %e,
                    "cannot load the UDP steering programs (they need CAP_BPF); without them \
                     every worker would get every broadcast: running one UDP worker"
                );
                drop(steering);
                drop(backend);
                return open(cfg, 1);
            }
        }
    }
    Ok((backend, UdpShared { workers, steering }))
}
