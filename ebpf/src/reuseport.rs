//! SO_REUSEPORT steering for the UDP backend with several workers (`src/reuseport.bpf.c`).
//!
//! Each worker has one socket per interface; the sockets of one interface form one reuseport
//! group. [`ReuseportSteering::attach`] loads one instance of the object per socket: every
//! socket gets the socket filter that keeps only its own worker's clients (broadcasts reach
//! every socket of a group), and worker 0's instance lists the group in its socket array and
//! attaches the reuseport program, which picks the owner's socket for unicast datagrams. Either
//! way a request reaches the worker that owns its client's RFC 3074 bucket (bucket `b` → worker
//! `b % workers`), the same owner the engine computes. What the programs cannot key (see the C
//! file) goes to worker 0, which hands it on in user space if the engine finds another owner.
//! [`ReuseportSteering::counters`] reads the verdicts.
//!
//! The programs stay attached as long as their sockets are open; dropping the loader does not
//! detach them.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use aya::maps::{MapData, PerCpuArray, ReusePortSockArray};
use aya::programs::{SkReuseport, SocketFilter};
use aya::{Ebpf, EbpfLoader};

use crate::SteerError;

/// The compiled program, built from `src/reuseport.bpf.c` by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reuseport.bpf.o"));

/// Name of the reuseport program (the C function name).
pub const REUSEPORT_PROGRAM_NAME: &str = "tandem_reuseport";
/// Name of the socket filter program.
const FILTER_PROGRAM_NAME: &str = "tandem_sockfilter";

/// Most workers one group steers to (the socket array's size).
pub const MAX_REUSEPORT_WORKERS: usize = 256;

const WORKERS_GLOBAL: &str = "workers";
const ME_GLOBAL: &str = "me";
const SOCKS_MAP: &str = "socks";
const COUNTERS_MAP: &str = "counters";

/// Names of the programs' counters, in slot order (`enum counter` of `reuseport.bpf.c`).
pub const REUSEPORT_NAMES: [&str; 6] = [
    "steered",
    "unknown_key",
    "not_dhcp",
    "no_socket",
    "filter_accepted",
    "filter_other_worker",
];

/// The programs' verdicts, summed over all CPUs and sockets.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReuseportCounters {
    /// Unicast datagrams sent to the socket of the worker owning the client.
    pub steered: u64,
    /// Unicast datagrams whose key could not be determined (sent to worker 0).
    pub unknown_key: u64,
    /// Unicast datagrams too short for DHCP or with a bad magic cookie (sent to worker 0).
    pub not_dhcp: u64,
    /// Unicast datagrams whose worker had no socket in the array (the kernel chose).
    pub no_socket: u64,
    /// Datagrams a socket's filter kept (its worker's clients; worker 0: also the unkeyed).
    pub filter_accepted: u64,
    /// Datagrams a socket's filter left to another worker's socket (broadcasts reach every
    /// socket: with `n` workers each broadcast counts here `n - 1` times).
    pub filter_other_worker: u64,
}

impl ReuseportCounters {
    /// The counters with their names, in [`REUSEPORT_NAMES`] order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            (REUSEPORT_NAMES[0], self.steered),
            (REUSEPORT_NAMES[1], self.unknown_key),
            (REUSEPORT_NAMES[2], self.not_dhcp),
            (REUSEPORT_NAMES[3], self.no_socket),
            (REUSEPORT_NAMES[4], self.filter_accepted),
            (REUSEPORT_NAMES[5], self.filter_other_worker),
        ]
    }

    /// Unicast datagrams the reuseport program saw.
    pub fn unicast(&self) -> u64 {
        self.steered + self.unknown_key + self.not_dhcp + self.no_socket
    }
}

/// One worker's loaded instance of the object.
struct Instance {
    _ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    _socks: ReusePortSockArray<MapData>,
}

/// One reuseport group's loaded steering programs and their maps.
pub struct ReuseportSteering {
    instances: Vec<Instance>,
    workers: usize,
}

impl std::fmt::Debug for ReuseportSteering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReuseportSteering")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl ReuseportSteering {
    /// Loads the programs for one reuseport group whose sockets are `sockets` (worker `k`'s at
    /// index `k`, all bound with SO_REUSEPORT to the same address, port and device): a socket
    /// filter on every socket, the reuseport program on the group. Needs `CAP_BPF` (or root).
    pub fn attach(sockets: &[&UdpSocket]) -> Result<ReuseportSteering, SteerError> {
        let workers = sockets.len();
        if workers == 0 || workers > MAX_REUSEPORT_WORKERS {
            return Err(SteerError::Object("between 1 and 256 reuseport sockets"));
        }
        let mut instances = Vec::with_capacity(workers);
        for (k, sock) in sockets.iter().enumerate() {
            // k < workers <= 256 (checked above).
            let (w, me) = (workers as u32, k as u32);
            let mut ebpf = EbpfLoader::new()
                .override_global(WORKERS_GLOBAL, &w, true)
                .override_global(ME_GLOBAL, &me, true)
                .load(OBJECT)
                .map_err(SteerError::Load)?;
            let map_err = |map: &'static str| move |source| SteerError::Map { map, source };
            let mut socks: ReusePortSockArray<MapData> = ReusePortSockArray::try_from(
                ebpf.take_map(SOCKS_MAP)
                    .ok_or(SteerError::Object("map socks"))?,
            )
            .map_err(map_err(SOCKS_MAP))?;
            let counters: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
                ebpf.take_map(COUNTERS_MAP)
                    .ok_or(SteerError::Object("map counters"))?,
            )
            .map_err(map_err(COUNTERS_MAP))?;
            let filter: &mut SocketFilter = ebpf
                .program_mut(FILTER_PROGRAM_NAME)
                .ok_or(SteerError::Object("program tandem_sockfilter"))?
                .try_into()
                .map_err(SteerError::Program)?;
            filter.load().map_err(SteerError::Program)?;
            filter.attach(*sock).map_err(SteerError::Program)?;
            if k == 0 {
                for (j, s) in sockets.iter().enumerate() {
                    // j < 256.
                    socks
                        .set(j as u32, &s.as_raw_fd(), 0)
                        .map_err(map_err(SOCKS_MAP))?;
                }
                let prog: &mut SkReuseport = ebpf
                    .program_mut(REUSEPORT_PROGRAM_NAME)
                    .ok_or(SteerError::Object("program tandem_reuseport"))?
                    .try_into()
                    .map_err(SteerError::Program)?;
                prog.load().map_err(SteerError::Program)?;
                prog.attach(*sock).map_err(SteerError::Program)?;
            }
            instances.push(Instance {
                _ebpf: ebpf,
                counters,
                _socks: socks,
            });
        }
        Ok(ReuseportSteering { instances, workers })
    }

    /// Workers the group steers to.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The counters, summed over all CPUs and sockets.
    pub fn counters(&self) -> Result<ReuseportCounters, SteerError> {
        let mut slots = [0u64; REUSEPORT_NAMES.len()];
        for inst in &self.instances {
            for (i, slot) in slots.iter_mut().enumerate() {
                // i < 6.
                let values =
                    inst.counters
                        .get(&(i as u32), 0)
                        .map_err(|source| SteerError::Map {
                            map: COUNTERS_MAP,
                            source,
                        })?;
                *slot = values.iter().fold(*slot, |a, &b| a.wrapping_add(b));
            }
        }
        Ok(ReuseportCounters {
            steered: slots[0],
            unknown_key: slots[1],
            not_dhcp: slots[2],
            no_socket: slots[3],
            filter_accepted: slots[4],
            filter_other_worker: slots[5],
        })
    }
}
