//! Tandem's XDP steering program and its loader.
//!
//! The kernel side is `src/steer.bpf.c`, compiled by clang in `build.rs` and embedded here. Per
//! received frame it parses Ethernet (at most one 802.1Q/802.1ad tag), IPv4 with options and UDP
//! to the DHCP server port, computes the RFC 3074 bucket of the client (option 61, else
//! `chaddr[..hlen]`, exactly as `tandem_dataplane::hash` does), drops the frames whose bucket the
//! failover partner of the request's scope answers, sends the rest to the AF_XDP socket of the
//! receiving queue, and
//! passes every other frame (and IPv4 fragments) to the kernel. Per-CPU counters record every
//! verdict ([`Counters`]).
//!
//! The user-space engine stays authoritative: the program drops a frame only when it has
//! determined the client's key exactly as the engine would. A frame whose key it cannot determine
//! (option overload, a repeated or empty option 61, malformed options, more options than the
//! program walks, `hlen` over 16, a payload too short for the DHCP header, a bad magic cookie) is
//! redirected, never dropped.
//!
//! The entry type is [`Steering`]: [`Steering::load`] loads the program for one UDP port,
//! [`Steering::attach`] attaches it to interfaces (native, generic, or native with generic as
//! fallback), [`Steering::set_relationship_buckets`] publishes one failover relationship's bucket
//! split, [`Steering::set_direct_relationship`] and [`Steering::set_subnet_relationship`] say which
//! relationship a request belongs to (the scope subnet holding the link it names, RFC 3527
//! option 82 sub-option 5 or RFC 3011 option 118, else its giaddr or ciaddr, else its ingress
//! interface), and
//! [`Steering::counters`] reads the counters. [`Steering::test_run`] runs the program on one
//! frame through `BPF_PROG_TEST_RUN`, without any interface.
//!
//! Not here: the AF_XDP sockets and the XSKMAP entries (the data plane's `xsk` module), and
//! pinning (nothing outlives the process: on a crash the kernel drops the program's links, and
//! [`Steering::attach`] replaces a stale Tandem program that an older loader left attached through
//! netlink).
//!
//! Everything needs root (or `CAP_BPF` + `CAP_NET_ADMIN`). Interface names are resolved, and
//! programs attached and detached, in the network namespace of the calling thread.

#![forbid(unsafe_code)]

mod netlink;
mod reuseport;

pub use reuseport::{
    ReuseportCounters, ReuseportSteering, MAX_REUSEPORT_WORKERS, REUSEPORT_NAMES,
    REUSEPORT_PROGRAM_NAME,
};

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use std::net::Ipv4Addr;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{loaded_programs, ProgramError, TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use tracing::{info, warn};

/// The compiled XDP object, built from `src/steer.bpf.c` by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// The same program without the receive-time metadata stamp, for kernels whose verifier refuses
/// `bpf_xdp_adjust_meta` in it.
static OBJECT_NO_META: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer_nometa.bpf.o"));

/// Name of the XDP program in the kernel (the C function name, at most 15 bytes).
pub const PROGRAM_NAME: &str = "tandem_steer";

/// The DHCP server port, the usual argument of [`Steering::load`].
pub const DHCP_SERVER_PORT: u16 = 67;

const PORT_GLOBAL: &str = "dhcp_port";
const COUNTERS_MAP: &str = "counters";
const REL_BUCKETS_MAP: &str = "rel_buckets";
const REL_DROPS_MAP: &str = "rel_drops";
const DIRECT_REL_MAP: &str = "direct_rel";
const SUBNET_REL_MAP: &str = "subnet_rel";

/// How many failover relationships one program tells apart (relationship slots
/// `0..MAX_RELATIONSHIPS`, `MAX_RELS` of `steer.bpf.c`).
pub const MAX_RELATIONSHIPS: u32 = 64;

/// "In no relationship" in the program's maps (`REL_NONE` of `steer.bpf.c`).
const REL_NONE: u32 = u32::MAX;
const XSK_MAP: &str = "xsks";

/// How to attach the program to an interface.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only: works on every interface, slower.
    Generic,
    /// Native mode, falling back to generic mode if the driver refuses; the choice is logged.
    Auto,
}

/// The mode the program actually runs in on an interface.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttachedMode {
    /// Native (driver) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        })
    }
}

/// An XDP verdict (the program's return value).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum XdpAction {
    /// `XDP_ABORTED` (0): a program error; the frame is dropped and traced.
    Aborted,
    /// `XDP_DROP` (1).
    Drop,
    /// `XDP_PASS` (2): on to the kernel network stack.
    Pass,
    /// `XDP_TX` (3).
    Tx,
    /// `XDP_REDIRECT` (4): here, into an AF_XDP socket.
    Redirect,
    /// Any other value.
    Unknown(u32),
}

impl XdpAction {
    /// The verdict for a raw program return value.
    pub fn from_raw(v: u32) -> XdpAction {
        match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => XdpAction::Unknown(other),
        }
    }
}

/// The result of one [`Steering::test_run`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// What the program returned.
    pub action: XdpAction,
    /// Run time reported by the kernel (the average per run).
    pub duration: Duration,
}

/// The program's counters, summed over all CPUs.
///
/// Every frame increments exactly one of the verdict counters (`runt` ..= `redirect_failed`;
/// their sum is [`Counters::frames`]). Every frame that reached the bucket decision
/// (`partner_drop + redirect + redirect_failed`) also increments exactly one of the key counters
/// (`key_client_id`, `key_chaddr`, `key_unknown`, `bad_dhcp`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Counters {
    /// Frame ends inside its Ethernet, VLAN, IPv4 or UDP header: passed.
    pub runt: u64,
    /// Not IPv4 (ARP, IPv6, two VLAN tags, ...): passed.
    pub not_ipv4: u64,
    /// IPv4 header with a version other than 4 or an IHL under 5: passed.
    pub bad_ipv4: u64,
    /// IPv4 but not UDP: passed.
    pub not_udp: u64,
    /// A UDP fragment (first with MF set, or non-first): passed to the kernel to reassemble.
    pub fragment: u64,
    /// UDP to another port: passed.
    pub other_port: u64,
    /// DHCP for a bucket the partner answers: dropped.
    pub partner_drop: u64,
    /// DHCP redirected to the receiving queue's AF_XDP socket.
    pub redirect: u64,
    /// DHCP for user space, but the receiving queue has no AF_XDP socket: passed.
    pub redirect_failed: u64,
    /// Bucket computed from option 61.
    pub key_client_id: u64,
    /// Bucket computed from chaddr.
    pub key_chaddr: u64,
    /// Key not determinable in the program (overload, repeated/empty option 61, malformed or too
    /// many options, hlen over 16): never dropped.
    pub key_unknown: u64,
    /// UDP payload is no DHCP message (shorter than the 240-byte header, bad magic cookie,
    /// truncated datagram): never dropped.
    pub bad_dhcp: u64,
}

/// Counter names in map-slot order: slot `i` of the BPF `counters` map is `NAMES[i]`
/// (the `enum counter` of `steer.bpf.c`).
const NAMES: [&str; 13] = [
    "runt",
    "not_ipv4",
    "bad_ipv4",
    "not_udp",
    "fragment",
    "other_port",
    "partner_drop",
    "redirect",
    "redirect_failed",
    "key_client_id",
    "key_chaddr",
    "key_unknown",
    "bad_dhcp",
];

impl Counters {
    /// Frames seen: the sum of the verdict counters.
    pub fn frames(&self) -> u64 {
        self.slots()[..9]
            .iter()
            .fold(0u64, |a, &b| a.wrapping_add(b))
    }

    /// The increase from `earlier` to `self` (counters only grow; wraps like them).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let (now, then) = (self.slots(), earlier.slots());
        let mut out = [0u64; NAMES.len()];
        for (o, (a, b)) in out.iter_mut().zip(now.iter().zip(then.iter())) {
            *o = a.wrapping_sub(*b);
        }
        Counters::from_slots(out)
    }

    /// Every counter with its name (the names of the fields), for stats output.
    pub fn named(&self) -> [(&'static str, u64); 13] {
        let slots = self.slots();
        let mut out = [("", 0u64); NAMES.len()];
        for (o, (name, v)) in out.iter_mut().zip(NAMES.iter().zip(slots.iter())) {
            *o = (name, *v);
        }
        out
    }

    fn slots(&self) -> [u64; 13] {
        [
            self.runt,
            self.not_ipv4,
            self.bad_ipv4,
            self.not_udp,
            self.fragment,
            self.other_port,
            self.partner_drop,
            self.redirect,
            self.redirect_failed,
            self.key_client_id,
            self.key_chaddr,
            self.key_unknown,
            self.bad_dhcp,
        ]
    }

    fn from_slots(s: [u64; 13]) -> Counters {
        let [runt, not_ipv4, bad_ipv4, not_udp, fragment, other_port, partner_drop, redirect, redirect_failed, key_client_id, key_chaddr, key_unknown, bad_dhcp] =
            s;
        Counters {
            runt,
            not_ipv4,
            bad_ipv4,
            not_udp,
            fragment,
            other_port,
            partner_drop,
            redirect,
            redirect_failed,
            key_client_id,
            key_chaddr,
            key_unknown,
            bad_dhcp,
        }
    }
}

/// Errors of the loader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SteerError {
    /// Port 0 cannot be a DHCP server port.
    #[error("port 0 is not a valid DHCP server port")]
    InvalidPort,
    /// Creating the maps or loading the object failed (needs root, or CAP_BPF and CAP_NET_ADMIN).
    #[error("loading the XDP object failed (needs root, or CAP_BPF + CAP_NET_ADMIN): {0}")]
    Load(#[source] aya::EbpfError),
    /// The kernel refused the program (verifier) or a program operation failed.
    #[error("XDP program: {0}")]
    Program(#[source] ProgramError),
    /// A map operation failed.
    #[error("BPF map {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The failure.
        #[source]
        source: aya::maps::MapError,
    },
    /// A relationship slot at or over [`MAX_RELATIONSHIPS`].
    #[error(
        "relationship slot {0} is out of range (the XDP program tells {MAX_RELATIONSHIPS} apart)"
    )]
    RelationshipSlot(u32),
    /// The embedded object lacks something this loader expects (a build mismatch).
    #[error("the embedded XDP object has no {0}")]
    Object(&'static str),
    /// No interface of that name in this thread's network namespace.
    #[error("no network interface named {0:?}")]
    UnknownInterface(String),
    /// This loader already has the program attached to that interface.
    #[error("the program is already attached to {0}")]
    AlreadyAttached(String),
    /// Another XDP program (not Tandem's) is attached to the interface; it is left alone.
    #[error("interface {ifname} already runs XDP program {id} ({name:?}), which is not Tandem's; remove it first")]
    ForeignProgram {
        /// The interface.
        ifname: String,
        /// Kernel id of the program.
        id: u32,
        /// Its name.
        name: String,
    },
    /// A Tandem program on the interface is held by a BPF link (a running process or a pinned
    /// link owns it), so it is not stale and is not removed.
    #[error("interface {ifname} runs Tandem XDP program {id} held by a BPF link (is another tandemd running?)")]
    InUse {
        /// The interface.
        ifname: String,
        /// Kernel id of the program.
        id: u32,
    },
    /// Attaching failed in the requested mode (for `Auto`: in generic mode, after native failed).
    #[error("attaching XDP to {ifname} in {mode} mode failed: {source}")]
    Attach {
        /// The interface.
        ifname: String,
        /// The mode tried last.
        mode: AttachedMode,
        /// The failure.
        #[source]
        source: ProgramError,
    },
    /// A netlink request (interface lookup, stale program removal) failed.
    #[error("netlink ({what}): {source}")]
    Netlink {
        /// The request.
        what: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

struct Attachment {
    ifname: String,
    mode: AttachedMode,
    link: XdpLinkId,
}

/// The loaded XDP steering program, its maps, and the interfaces it is attached to.
///
/// Dropping it detaches the program from every interface and unloads it.
pub struct Steering {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    rel_buckets: Array<MapData, [u8; 32]>,
    rel_drops: PerCpuArray<MapData, u64>,
    direct: Array<MapData, u32>,
    subnets: LpmTrie<MapData, u32, u32>,
    port: u16,
    attachments: Vec<Attachment>,
    stamps: bool,
}

impl fmt::Debug for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steering")
            .field("port", &self.port)
            .field("attachments", &self.attachments().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Loads `object` with the DHCP port set and its XDP program through the verifier.
fn load_object(object: &[u8], port: u16) -> Result<Ebpf, SteerError> {
    let mut ebpf = EbpfLoader::new()
        .override_global(PORT_GLOBAL, &port, true)
        .load(object)
        .map_err(SteerError::Load)?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or(SteerError::Object("program tandem_steer"))?
        .try_into()
        .map_err(SteerError::Program)?;
    prog.load().map_err(SteerError::Program)?;
    Ok(ebpf)
}

impl Steering {
    /// Loads the program (through the verifier) and its maps for DHCP requests to UDP `port`.
    ///
    /// The program is not attached anywhere yet; every bucket is ours (no partner).
    pub fn load(port: u16) -> Result<Steering, SteerError> {
        if port == 0 {
            return Err(SteerError::InvalidPort);
        }
        let (mut ebpf, stamps) = match load_object(OBJECT, port) {
            Ok(ebpf) => (ebpf, true),
            Err(SteerError::Program(e)) if format!("{e:?}").contains("bpf_xdp_adjust_meta") => {
                warn!(
                    "XDP: this kernel refuses bpf_xdp_adjust_meta in the steering program; \
                     loading it without receive-time stamps (the rx-wait stage is not measured)"
                );
                (load_object(OBJECT_NO_META, port)?, false)
            }
            Err(e) => return Err(e),
        };

        let counters = ebpf
            .take_map(COUNTERS_MAP)
            .ok_or(SteerError::Object("map counters"))?;
        let counters: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(counters).map_err(|source| SteerError::Map {
                map: COUNTERS_MAP,
                source,
            })?;
        if (counters.len() as usize) < NAMES.len() {
            return Err(SteerError::Object("counter slot for every counter"));
        }
        let map_err = |map: &'static str| move |source| SteerError::Map { map, source };
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(SteerError::Object(name))
        };
        let rel_buckets: Array<MapData, [u8; 32]> =
            Array::try_from(take(&mut ebpf, REL_BUCKETS_MAP)?).map_err(map_err(REL_BUCKETS_MAP))?;
        let rel_drops: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(take(&mut ebpf, REL_DROPS_MAP)?)
                .map_err(map_err(REL_DROPS_MAP))?;
        let mut direct: Array<MapData, u32> =
            Array::try_from(take(&mut ebpf, DIRECT_REL_MAP)?).map_err(map_err(DIRECT_REL_MAP))?;
        let subnets: LpmTrie<MapData, u32, u32> =
            LpmTrie::try_from(take(&mut ebpf, SUBNET_REL_MAP)?).map_err(map_err(SUBNET_REL_MAP))?;
        // Direct clients start in no relationship (an array starts at slot 0).
        direct
            .set(0, REL_NONE, 0)
            .map_err(map_err(DIRECT_REL_MAP))?;
        Ok(Steering {
            ebpf,
            counters,
            rel_buckets,
            rel_drops,
            direct,
            subnets,
            port,
            attachments: Vec::new(),
            stamps,
        })
    }

    /// True if the program puts its receive-time metadata before every redirected frame (false
    /// when the kernel refused the helper and the program was loaded without it).
    pub fn stamps_frames(&self) -> bool {
        self.stamps
    }

    /// The UDP port the program was loaded for.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The kernel's id of the loaded program (as `ip -d link` and `bpftool` show it).
    pub fn program_id(&self) -> Result<u32, SteerError> {
        let info = self.program()?.info().map_err(SteerError::Program)?;
        Ok(info.id())
    }

    /// How many instructions the verifier processed to accept the program (Linux 5.16+), a
    /// measure of its complexity against the kernel's limit of one million.
    pub fn verified_instructions(&self) -> Result<Option<u32>, SteerError> {
        let info = self.program()?.info().map_err(SteerError::Program)?;
        Ok(info.verified_instruction_count())
    }

    /// Attaches the program to interface `ifname` and returns the mode it runs in.
    ///
    /// A stale Tandem program left on the interface through netlink (by a loader that crashed
    /// or an older version) is removed first and logged. A program that is not Tandem's, or a
    /// Tandem program held by a live BPF link, is left alone and reported as an error.
    /// [`XdpMode::Auto`] tries native mode, then generic mode, and logs which one runs.
    pub fn attach(&mut self, ifname: &str, mode: XdpMode) -> Result<AttachedMode, SteerError> {
        if self.attachments.iter().any(|a| a.ifname == ifname) {
            return Err(SteerError::AlreadyAttached(ifname.to_owned()));
        }
        let link = netlink::link_by_name(ifname)
            .map_err(|source| SteerError::Netlink {
                what: "interface lookup",
                source,
            })?
            .ok_or_else(|| SteerError::UnknownInterface(ifname.to_owned()))?;
        self.remove_stale(ifname, &link)?;

        let (mode, link_id) = match mode {
            XdpMode::Native => (
                AttachedMode::Native,
                self.attach_in(ifname, link.index, AttachedMode::Native)?,
            ),
            XdpMode::Generic => (
                AttachedMode::Generic,
                self.attach_in(ifname, link.index, AttachedMode::Generic)?,
            ),
            XdpMode::Auto => match self.attach_in(ifname, link.index, AttachedMode::Native) {
                Ok(id) => (AttachedMode::Native, id),
                Err(e) => {
                    warn!(interface = ifname, error = %e, "native XDP unavailable, trying generic mode");
                    (
                        AttachedMode::Generic,
                        self.attach_in(ifname, link.index, AttachedMode::Generic)?,
                    )
                }
            },
        };
        info!(interface = ifname, %mode, port = self.port, "XDP steering attached");
        self.attachments.push(Attachment {
            ifname: ifname.to_owned(),
            mode,
            link: link_id,
        });
        Ok(mode)
    }

    /// The interfaces the program is attached to, with their modes.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, AttachedMode)> + '_ {
        self.attachments.iter().map(|a| (a.ifname.as_str(), a.mode))
    }

    /// Detaches the program from every interface. The program stays loaded (test runs and
    /// counters keep working) and may be attached again.
    ///
    /// Tries every interface and returns the first error.
    pub fn detach(&mut self) -> Result<(), SteerError> {
        let mut first_err = None;
        let attachments = std::mem::take(&mut self.attachments);
        let prog = self.program_mut()?;
        for a in attachments {
            match prog.detach(a.link) {
                Ok(()) => info!(interface = a.ifname.as_str(), "XDP steering detached"),
                Err(e) => {
                    warn!(interface = a.ifname.as_str(), error = %e, "XDP detach failed");
                    first_err.get_or_insert(SteerError::Program(e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Publishes the buckets the partner of relationship slot `rel` answers: bucket `b` is bit
    /// `b & 7` (least significant first) of byte `b >> 3`, the layout of
    /// `tandem_dataplane::hash::BucketMap::as_bytes()`. All zero: every bucket is ours.
    ///
    /// The kernel copies the map value while frames may be in flight; each bucket's bit is seen
    /// either before or after the update, never torn.
    pub fn set_relationship_buckets(
        &mut self,
        rel: u32,
        buckets: &[u8; 32],
    ) -> Result<(), SteerError> {
        if rel >= MAX_RELATIONSHIPS {
            return Err(SteerError::RelationshipSlot(rel));
        }
        self.rel_buckets
            .set(rel, buckets, 0)
            .map_err(|source| SteerError::Map {
                map: REL_BUCKETS_MAP,
                source,
            })
    }

    /// The buckets of relationship slot `rel` as last published.
    pub fn relationship_buckets(&self, rel: u32) -> Result<[u8; 32], SteerError> {
        if rel >= MAX_RELATIONSHIPS {
            return Err(SteerError::RelationshipSlot(rel));
        }
        self.rel_buckets
            .get(&rel, 0)
            .map_err(|source| SteerError::Map {
                map: REL_BUCKETS_MAP,
                source,
            })
    }

    /// Frames of relationship slot `rel` dropped as its partner's, summed over all CPUs.
    pub fn relationship_drops(&self, rel: u32) -> Result<u64, SteerError> {
        if rel >= MAX_RELATIONSHIPS {
            return Err(SteerError::RelationshipSlot(rel));
        }
        let values = self
            .rel_drops
            .get(&rel, 0)
            .map_err(|source| SteerError::Map {
                map: REL_DROPS_MAP,
                source,
            })?;
        Ok(values.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
    }

    /// The relationship of the requests of clients attached directly to the interface (no
    /// giaddr, and a ciaddr in no scope subnet): `None` when its scopes are in none, or in
    /// several (only the engine tells those apart; nothing is dropped).
    pub fn set_direct_relationship(&mut self, rel: Option<u32>) -> Result<(), SteerError> {
        let v = match rel {
            Some(r) if r >= MAX_RELATIONSHIPS => return Err(SteerError::RelationshipSlot(r)),
            Some(r) => r,
            None => REL_NONE,
        };
        self.direct.set(0, v, 0).map_err(|source| SteerError::Map {
            map: DIRECT_REL_MAP,
            source,
        })
    }

    /// Says that requests relayed from (giaddr), or renewing an address (ciaddr) in,
    /// `network/prefix` belong to relationship slot `rel` (`None`: a scope served alone). The
    /// longest matching prefix decides; a giaddr in no listed subnet is in no relationship.
    pub fn set_subnet_relationship(
        &mut self,
        network: Ipv4Addr,
        prefix: u8,
        rel: Option<u32>,
    ) -> Result<(), SteerError> {
        let v = match rel {
            Some(r) if r >= MAX_RELATIONSHIPS => return Err(SteerError::RelationshipSlot(r)),
            Some(r) => r,
            None => REL_NONE,
        };
        let key = Key::new(
            u32::from(prefix.min(32)),
            u32::from_ne_bytes(network.octets()),
        );
        self.subnets
            .insert(&key, v, 0)
            .map_err(|source| SteerError::Map {
                map: SUBNET_REL_MAP,
                source,
            })
    }

    /// Forgets every subnet of [`Steering::set_subnet_relationship`].
    pub fn clear_subnet_relationships(&mut self) -> Result<(), SteerError> {
        let keys: Vec<Key<u32>> = self.subnets.keys().filter_map(Result::ok).collect();
        for k in keys {
            self.subnets.remove(&k).map_err(|source| SteerError::Map {
                map: SUBNET_REL_MAP,
                source,
            })?;
        }
        Ok(())
    }

    /// One relationship for the interface's direct clients: publishes `buckets` in slot 0 and
    /// makes slot 0 the direct clients' relationship (see
    /// [`set_relationship_buckets`](Steering::set_relationship_buckets)).
    pub fn set_partner_buckets(&mut self, buckets: &[u8; 32]) -> Result<(), SteerError> {
        self.set_relationship_buckets(0, buckets)?;
        self.set_direct_relationship(Some(0))
    }

    /// Slot 0's buckets as last published (see
    /// [`set_partner_buckets`](Steering::set_partner_buckets)).
    pub fn partner_buckets(&self) -> Result<[u8; 32], SteerError> {
        self.relationship_buckets(0)
    }

    /// Registers the AF_XDP socket `fd` for receive queue `queue`: from now on the program
    /// redirects DHCP frames received on that queue to it. The socket must be bound to that
    /// queue of the interface the frames arrive on (a socket only receives from its own
    /// (interface, queue); a mismatch drops the frames while the program counts them as
    /// redirected). Replaces a previous entry; closing the socket removes the entry.
    pub fn set_xsk(&mut self, queue: u32, fd: BorrowedFd<'_>) -> Result<(), SteerError> {
        self.xsk_map()?
            .set(queue, fd, 0)
            .map_err(|source| SteerError::Map {
                map: XSK_MAP,
                source,
            })
    }

    /// Removes the AF_XDP socket of receive queue `queue`: its DHCP frames go to the kernel
    /// again (counted as `redirect_failed`). Removing an empty entry is an error (`ENOENT`).
    pub fn clear_xsk(&mut self, queue: u32) -> Result<(), SteerError> {
        self.xsk_map()?
            .unset(queue)
            .map_err(|source| SteerError::Map {
                map: XSK_MAP,
                source,
            })
    }

    fn xsk_map(&mut self) -> Result<XskMap<&mut MapData>, SteerError> {
        let map = self
            .ebpf
            .map_mut(XSK_MAP)
            .ok_or(SteerError::Object("map xsks"))?;
        XskMap::try_from(map).map_err(|source| SteerError::Map {
            map: XSK_MAP,
            source,
        })
    }

    /// The counters, summed over all CPUs.
    pub fn counters(&self) -> Result<Counters, SteerError> {
        let mut slots = [0u64; NAMES.len()];
        for (i, slot) in slots.iter_mut().enumerate() {
            // i < NAMES.len() = 13, far below u32::MAX.
            let values = self
                .counters
                .get(&(i as u32), 0)
                .map_err(|source| SteerError::Map {
                    map: COUNTERS_MAP,
                    source,
                })?;
            *slot = values.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        }
        Ok(Counters::from_slots(slots))
    }

    /// Runs the program once on `frame` through `BPF_PROG_TEST_RUN` (no interface involved;
    /// the receive queue is 0). Counters count the run like a received frame.
    ///
    /// The kernel refuses frames shorter than an Ethernet header (14 bytes) with `EINVAL`.
    /// Note: with no AF_XDP socket in the XSKMAP, a frame for user space comes back as
    /// [`XdpAction::Pass`] and counts as `redirect_failed`.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutcome, SteerError> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        let result = self
            .program()?
            .test_run(opts)
            .map_err(SteerError::Program)?;
        Ok(TestRunOutcome {
            action: XdpAction::from_raw(result.return_value),
            duration: result.duration,
        })
    }

    fn program(&self) -> Result<&Xdp, SteerError> {
        self.ebpf
            .program(PROGRAM_NAME)
            .ok_or(SteerError::Object("program tandem_steer"))?
            .try_into()
            .map_err(SteerError::Program)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, SteerError> {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(SteerError::Object("program tandem_steer"))?
            .try_into()
            .map_err(SteerError::Program)
    }

    fn attach_in(
        &mut self,
        ifname: &str,
        index: u32,
        mode: AttachedMode,
    ) -> Result<XdpLinkId, SteerError> {
        let aya_mode = match mode {
            AttachedMode::Native => aya::programs::XdpMode::Driver,
            AttachedMode::Generic => aya::programs::XdpMode::Skb,
        };
        self.program_mut()?
            .attach_to_if_index(index, aya_mode)
            .map_err(|source| SteerError::Attach {
                ifname: ifname.to_owned(),
                mode,
                source,
            })
    }

    /// Removes Tandem programs attached to `link` through netlink (stale: no process owns
    /// them); refuses foreign programs and Tandem programs held by a BPF link.
    fn remove_stale(&self, ifname: &str, link: &netlink::Link) -> Result<(), SteerError> {
        for &(point, id) in &link.xdp {
            let Some(info) = loaded_programs()
                .filter_map(Result::ok)
                .find(|p| p.id() == id)
            else {
                // Unloaded since the lookup: nothing left to remove.
                continue;
            };
            let name = String::from_utf8_lossy(info.name()).into_owned();
            if name != PROGRAM_NAME {
                return Err(SteerError::ForeignProgram {
                    ifname: ifname.to_owned(),
                    id,
                    name,
                });
            }
            let fd = info.fd().map_err(SteerError::Program)?;
            match netlink::detach_program(link.index, point, fd.as_fd().as_raw_fd()) {
                Ok(()) => {
                    warn!(interface = ifname, program_id = id, mode = %point, "removed a stale Tandem XDP program");
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    return Err(SteerError::InUse {
                        ifname: ifname.to_owned(),
                        id,
                    });
                }
                Err(source) => {
                    return Err(SteerError::Netlink {
                        what: "removing a stale XDP program",
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            warn!(error = %e, "detaching XDP steering on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_match_fields() {
        let c = Counters {
            runt: 1,
            bad_dhcp: 13,
            redirect: 8,
            ..Counters::default()
        };
        let named = c.named();
        assert_eq!(named[0], ("runt", 1));
        assert_eq!(named[7], ("redirect", 8));
        assert_eq!(named[12], ("bad_dhcp", 13));
        assert_eq!(Counters::from_slots(c.slots()), c);
        assert_eq!(c.frames(), 9);
    }

    #[test]
    fn since_subtracts_fieldwise() {
        let a = Counters {
            partner_drop: 5,
            key_chaddr: 7,
            ..Counters::default()
        };
        let mut b = a;
        b.partner_drop = 9;
        b.key_chaddr = 8;
        let d = b.since(&a);
        assert_eq!((d.partner_drop, d.key_chaddr, d.frames()), (4, 1, 4));
    }

    #[test]
    fn xdp_action_from_raw() {
        assert_eq!(XdpAction::from_raw(1), XdpAction::Drop);
        assert_eq!(XdpAction::from_raw(2), XdpAction::Pass);
        assert_eq!(XdpAction::from_raw(4), XdpAction::Redirect);
        assert_eq!(XdpAction::from_raw(9), XdpAction::Unknown(9));
    }
}
