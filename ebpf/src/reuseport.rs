//! SO_REUSEPORT steering for the UDP backend with several workers (`src/reuseport.bpf.c`).
//!
//! Each worker has one socket per interface; the sockets of one interface form one reuseport
//! group. [`ReuseportSteering::attach`] loads one instance of the program for a group, puts
//! worker `k`'s socket at index `k` of its socket array and attaches it to the group: from then
//! on a datagram reaches the socket of the worker that owns its client's RFC 3074 bucket
//! (bucket `b` → worker `b % workers`), the same owner the engine computes. What the program
//! cannot key (see the C file) is left to the kernel's 4-tuple hash, and the receiving worker
//! hands it on in user space. [`ReuseportSteering::counters`] reads the verdicts.
//!
//! The program stays attached to the group as long as one of its sockets is open; dropping the
//! loader does not detach it.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use aya::maps::{MapData, PerCpuArray, ReusePortSockArray};
use aya::programs::SkReuseport;
use aya::{Ebpf, EbpfLoader};

use crate::SteerError;

/// The compiled program, built from `src/reuseport.bpf.c` by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reuseport.bpf.o"));

/// Name of the program (the C function name).
pub const REUSEPORT_PROGRAM_NAME: &str = "tandem_reuseport";

/// Most workers one group steers to (the socket array's size).
pub const MAX_REUSEPORT_WORKERS: usize = 256;

const WORKERS_GLOBAL: &str = "workers";
const SOCKS_MAP: &str = "socks";
const COUNTERS_MAP: &str = "counters";

/// Names of the program's counters, in slot order (`enum counter` of `reuseport.bpf.c`).
pub const REUSEPORT_NAMES: [&str; 4] = ["steered", "unknown_key", "not_dhcp", "no_socket"];

/// The program's verdicts, summed over all CPUs (one per datagram).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReuseportCounters {
    /// Datagrams sent to the socket of the worker owning the client.
    pub steered: u64,
    /// Datagrams whose key could not be determined (the kernel chose).
    pub unknown_key: u64,
    /// Datagrams too short for DHCP or with a bad magic cookie (the kernel chose).
    pub not_dhcp: u64,
    /// Datagrams whose owner had no socket in the array (the kernel chose).
    pub no_socket: u64,
}

impl ReuseportCounters {
    /// The counters with their names, in [`REUSEPORT_NAMES`] order.
    pub fn named(&self) -> [(&'static str, u64); 4] {
        [
            (REUSEPORT_NAMES[0], self.steered),
            (REUSEPORT_NAMES[1], self.unknown_key),
            (REUSEPORT_NAMES[2], self.not_dhcp),
            (REUSEPORT_NAMES[3], self.no_socket),
        ]
    }

    /// Every datagram the program saw.
    pub fn total(&self) -> u64 {
        self.steered + self.unknown_key + self.not_dhcp + self.no_socket
    }

    /// Field-wise sum.
    pub fn add(&self, o: &ReuseportCounters) -> ReuseportCounters {
        ReuseportCounters {
            steered: self.steered + o.steered,
            unknown_key: self.unknown_key + o.unknown_key,
            not_dhcp: self.not_dhcp + o.not_dhcp,
            no_socket: self.no_socket + o.no_socket,
        }
    }
}

/// One reuseport group's loaded steering program and its maps.
pub struct ReuseportSteering {
    _ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    _socks: ReusePortSockArray<MapData>,
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
    /// Loads the program for one reuseport group whose sockets are `sockets` (worker `k`'s at
    /// index `k`, all bound with SO_REUSEPORT to the same address, port and device) and
    /// attaches it to the group. Needs `CAP_BPF` (or root).
    pub fn attach(sockets: &[&UdpSocket]) -> Result<ReuseportSteering, SteerError> {
        let workers = sockets.len();
        if workers == 0 || workers > MAX_REUSEPORT_WORKERS {
            return Err(SteerError::Object("between 1 and 256 reuseport sockets"));
        }
        // workers <= 256 (checked above).
        let w = workers as u32;
        let mut ebpf = EbpfLoader::new()
            .override_global(WORKERS_GLOBAL, &w, true)
            .load(OBJECT)
            .map_err(SteerError::Load)?;
        let map_err = |map: &'static str| move |source| SteerError::Map { map, source };
        let mut socks: ReusePortSockArray<MapData> = ReusePortSockArray::try_from(
            ebpf.take_map(SOCKS_MAP)
                .ok_or(SteerError::Object("map socks"))?,
        )
        .map_err(map_err(SOCKS_MAP))?;
        for (k, s) in sockets.iter().enumerate() {
            // k < 256.
            socks
                .set(k as u32, &s.as_raw_fd(), 0)
                .map_err(map_err(SOCKS_MAP))?;
        }
        let counters: PerCpuArray<MapData, u64> = PerCpuArray::try_from(
            ebpf.take_map(COUNTERS_MAP)
                .ok_or(SteerError::Object("map counters"))?,
        )
        .map_err(map_err(COUNTERS_MAP))?;
        let prog: &mut SkReuseport = ebpf
            .program_mut(REUSEPORT_PROGRAM_NAME)
            .ok_or(SteerError::Object("program tandem_reuseport"))?
            .try_into()
            .map_err(SteerError::Program)?;
        prog.load().map_err(SteerError::Program)?;
        prog.attach(sockets[0]).map_err(SteerError::Program)?;
        Ok(ReuseportSteering {
            _ebpf: ebpf,
            counters,
            _socks: socks,
            workers,
        })
    }

    /// Workers the group steers to.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The counters, summed over all CPUs.
    pub fn counters(&self) -> Result<ReuseportCounters, SteerError> {
        let mut slots = [0u64; REUSEPORT_NAMES.len()];
        for (i, slot) in slots.iter_mut().enumerate() {
            // i < 4.
            let values = self
                .counters
                .get(&(i as u32), 0)
                .map_err(|source| SteerError::Map {
                    map: COUNTERS_MAP,
                    source,
                })?;
            *slot = values.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        }
        Ok(ReuseportCounters {
            steered: slots[0],
            unknown_key: slots[1],
            not_dhcp: slots[2],
            no_socket: slots[3],
        })
    }
}
