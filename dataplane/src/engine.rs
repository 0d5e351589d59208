//! The per-core DHCP logic (RFC 2131/2132, relays per RFC 3046/3527).
//!
//! One [`Engine`] per worker. It owns the bindings of the clients whose RFC 3074 bucket the worker
//! owns, and allocates from its own [`Pool`] shard of every scope, so it needs no lock. It is pure:
//! [`Engine::handle`] takes `now`, the request bytes, a reply buffer and an [`Authority`]
//! (failover's verdict), and returns what to do; the binding changes that must be durable before
//! the reply leaves are queued and drained with [`Engine::take_updates`] by the worker, which
//! journals and commits them before sending the batch's replies.
//!
//! Protocol decisions, in brief:
//! - Client identity is option 61 if present, else htype + chaddr.
//! - An OFFERed address is held for that client for `offer_hold_secs` (not journaled).
//! - REQUEST in SELECTING naming another server releases our hold silently.
//! - INIT-REBOOT, RENEWING and REBINDING are ACKed when the address is the client's (or free and
//!   allowed for it); NAKed when it is wrong and the scope is `authoritative`; otherwise silent.
//! - DECLINE quarantines the address until `decline_probation_secs` have passed.
//! - The same request (client, xid, type) arriving again within `duplicate_window_ms` (two relays,
//!   or a retransmission) gets the first decision again: no second allocation, no second journal
//!   record, an identical answer.
//! - Replies go to giaddr:67 when relayed, to ciaddr:68 when the client has an address, else are
//!   broadcast on the receiving interface.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// The engine's hash maps: keyed by what clients send (client identifiers, MACs, xids), so the
/// hasher is keyed per process (`ahash`, HashDoS-resistant) but several times cheaper than
/// std's SipHash on these short keys (the dedup table alone costs two hashes per request).
type Map<K, V> = HashMap<K, V, ahash::RandomState>;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::authority::{AllocFrom, Authority, LeaseGrant};
use crate::binding::{Binding, BindingState, ClientKey};
use crate::hash;
use crate::pool::Pool;
use crate::scope::{AddrRange, Combine, Criterion, Policy, Reservation, Scope, ServerSettings};
use crate::time::Time;
use crate::wire::{opt, MessageType, ReplyHeader, ReplyWriter, Request, WireError};

/// Port DHCP servers and relays listen on.
pub const SERVER_PORT: u16 = 67;
/// Port DHCP clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// Seconds a lease this server issued in a replicated scope stays bound to its client after
/// its end before it expires (and the EXPIRED goes to the partner): a client that renews a
/// little late (busybox udhcpc renews a lease shorter than 30 s as if it lasted 30 s, so an
/// MCLT-capped lease is always renewed after its end) gets its address confirmed instead of a
/// NAK. Safe: the address is not reused during the grace (it is not back in any pool), and a
/// renewal is capped by the MCLT rule like any other grant. Shorter than the failover skew
/// allowance (61 s by default), so the partner's copy of the lease still runs when the EXPIRED
/// arrives and the partner does not expire its copy first.
pub const REPLICATED_EXPIRY_GRACE_SECS: u32 = 15;

/// Where a request came from.
#[derive(Copy, Clone, Debug)]
pub struct RxMeta {
    /// Index of the receiving interface in the daemon's interface list.
    pub iface: usize,
    /// Source address and port of the datagram.
    pub src: SocketAddrV4,
}

/// Where to send a reply.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent (giaddr, port 67).
    Relay(SocketAddrV4),
    /// To the client's own address (ciaddr, port 68).
    Unicast(SocketAddrV4),
    /// Broadcast (255.255.255.255:68) on the receiving interface.
    Broadcast {
        /// Interface index, as in [`RxMeta::iface`].
        iface: usize,
    },
}

/// What the worker should do with a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the first `len` bytes of the reply buffer to `dest`.
    Reply {
        /// Reply length.
        len: usize,
        /// Where to send it.
        dest: Destination,
        /// Reply message type.
        msg: MessageType,
    },
    /// No answer is due (the reason is counted).
    Silent(Counter),
    /// The frame was malformed or unusable (the reason is counted).
    Drop(Counter),
    /// The client's bucket belongs to another worker: hand the frame to it.
    Handoff(usize),
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident = $s:literal,)*) => {
        /// Everything the engine counts. Names are stable: they appear in `tandemctl stats`.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        #[non_exhaustive]
        pub enum Counter { $($(#[$doc])* $name,)* }
        impl Counter {
            /// Every counter, in order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];
            /// The counter's stable name.
            pub fn name(self) -> &'static str {
                match self { $(Counter::$name => $s,)* }
            }
        }
    };
}

counters! {
    /// Frames received.
    Received = "received",
    /// DHCPDISCOVER received.
    Discover = "discover",
    /// DHCPREQUEST received.
    Request = "request",
    /// DHCPRELEASE received.
    Release = "release",
    /// DHCPDECLINE received.
    Decline = "decline",
    /// DHCPINFORM received.
    Inform = "inform",
    /// DHCPOFFER sent.
    Offer = "offer",
    /// DHCPACK sent.
    Ack = "ack",
    /// DHCPNAK sent.
    Nak = "nak",
    /// Requests answered again from the duplicate cache (redundant relays, retransmissions).
    Duplicate = "duplicate",
    /// Duplicates that arrived through a different relay than the first copy.
    DuplicateOtherRelay = "duplicate_other_relay",
    /// Dropped: shorter than the fixed header.
    DropTruncated = "drop_truncated",
    /// Dropped: bad magic cookie.
    DropBadMagic = "drop_bad_magic",
    /// Dropped: not a BOOTREQUEST.
    DropNotRequest = "drop_not_request",
    /// Dropped: hlen over 16.
    DropBadHlen = "drop_bad_hlen",
    /// Dropped: option length past the end.
    DropOptionOverrun = "drop_option_overrun",
    /// Dropped: no message type.
    DropMissingMessageType = "drop_missing_message_type",
    /// Dropped: bad message type.
    DropBadMessageType = "drop_bad_message_type",
    /// Dropped: bad option overload.
    DropBadOverload = "drop_bad_overload",
    /// Dropped: split options too long.
    DropConcatTooLong = "drop_concat_too_long",
    /// Dropped: REQUEST with neither requested address nor ciaddr.
    DropBadRequest = "drop_bad_request",
    /// Dropped: no scope serves the client's link.
    DropNoScope = "drop_no_scope",
    /// Dropped: a client identifier (option 61) shorter than 2 bytes (RFC 2132).
    DropShortClientId = "drop_short_client_id",
    /// Dropped: no hardware address (hlen 0) and no client identifier, or an Ethernet htype
    /// whose hlen is not 6.
    DropBadHardware = "drop_bad_hardware",
    /// Dropped: an all-zero chaddr and no client identifier.
    DropZeroChaddr = "drop_zero_chaddr",
    /// Dropped: relay agent information (option 82) from a relay not in `trusted_relays`.
    DropUntrustedRelay = "drop_untrusted_relay",
    /// Dropped: the client sent DISCOVERs faster than `discover_rate_limit`.
    DropRateLimited = "drop_rate_limited",
    /// Dropped: the relay circuit's requests came faster than `relay_circuit_rate_limit`.
    DropCircuitRateLimited = "drop_circuit_rate_limited",
    /// Dropped: a RELEASE or DECLINE of an address held by another client (forged).
    DropNotOwner = "drop_not_owner",
    /// Dropped: reply buffer too small (internal).
    DropNoRoom = "drop_no_room",
    /// Silent: the failover partner answers this client.
    SilentPartner = "silent_partner",
    /// Silent: the client chose another server.
    SilentOtherServer = "silent_other_server",
    /// Silent: no free address for the client.
    SilentNoAddress = "silent_no_address",
    /// Silent: failover's MCLT rule leaves no lease time to give the client now.
    SilentMclt = "silent_mclt",
    /// Silent: no record of the client and the scope is not authoritative.
    SilentNotAuthoritative = "silent_not_authoritative",
    /// Silent: RELEASE/DECLINE processed (no reply is due).
    SilentNoReply = "silent_no_reply",
    /// Silent: RELEASE/DECLINE for an address the client does not hold.
    SilentUnknownLease = "silent_unknown_lease",
    /// Leases that ran out.
    Expired = "expired",
    /// Offer holds that ran out.
    OfferExpired = "offer_expired",
    /// Declined addresses back in the pool after probation.
    ProbationEnded = "probation_ended",
    /// Dynamic DNS: a client's name (option 81 or 12) could not become a DNS name; the lease
    /// was granted without one.
    DdnsBadName = "ddns_bad_name",
    /// Dynamic DNS: a name for the DNS updater was dropped, its queue being full.
    DdnsDropped = "ddns_dropped",
}

/// The engines' counters, shared read-only with the admin endpoint: one set per worker (each
/// engine bumps its own, so workers on different cores never write the same cache line), summed
/// when read.
#[derive(Debug)]
pub struct Stats {
    lanes: Vec<Box<[AtomicU64]>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(1)
    }
}

impl Stats {
    /// Counters for `workers` engines.
    pub fn new(workers: usize) -> Stats {
        Stats {
            lanes: (0..workers.max(1))
                .map(|_| Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    /// Add one to `c` (worker 0's set).
    pub fn bump(&self, c: Counter) {
        self.bump_at(0, c);
    }

    /// Add one to worker `worker`'s `c`.
    pub fn bump_at(&self, worker: usize, c: Counter) {
        // lanes is never empty (new takes at least one).
        let lane = &self.lanes[worker % self.lanes.len()];
        lane[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Current value of worker `worker`'s `c` (0 past the last worker).
    pub fn get_at(&self, worker: usize, c: Counter) -> u64 {
        self.lanes
            .get(worker)
            .map_or(0, |l| l[c as usize].load(Ordering::Relaxed))
    }

    /// Number of workers counted.
    pub fn workers(&self) -> usize {
        self.lanes.len()
    }

    /// Current value of `c`, summed over the workers.
    pub fn get(&self, c: Counter) -> u64 {
        self.lanes
            .iter()
            .map(|l| l[c as usize].load(Ordering::Relaxed))
            .sum()
    }
}

fn wire_counter(e: WireError) -> Counter {
    match e {
        WireError::Truncated => Counter::DropTruncated,
        WireError::BadMagic => Counter::DropBadMagic,
        WireError::NotRequest => Counter::DropNotRequest,
        WireError::BadHlen => Counter::DropBadHlen,
        WireError::OptionOverrun => Counter::DropOptionOverrun,
        WireError::MissingMessageType => Counter::DropMissingMessageType,
        WireError::BadMessageType => Counter::DropBadMessageType,
        WireError::BadOverload => Counter::DropBadOverload,
        WireError::ConcatTooLong => Counter::DropConcatTooLong,
    }
}

/// The RFC 3074 bucket of a request's client: option 61 if present (even empty, as ISC dhcpd
/// does, so both partners agree), else chaddr.
pub fn client_bucket(req: &Request<'_>) -> u8 {
    hash::client_bucket(req.option(opt::CLIENT_ID), req.chaddr(), req.hlen())
}

/// Client identity of a request (option 61, else htype + chaddr).
pub fn client_key(req: &Request<'_>) -> ClientKey {
    match req.client_id() {
        Some(id) => ClientKey::new(id),
        None => ClientKey::from_hw(req.htype(), req.chaddr()),
    }
}

/// The decision for one request, kept so duplicates get the identical answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Decision {
    Offer {
        scope: usize,
        addr: Ipv4Addr,
        lease: u32,
    },
    Ack {
        scope: usize,
        addr: Ipv4Addr,
        lease: u32,
    },
    InformAck {
        scope: usize,
    },
    Nak {
        scope: usize,
    },
    Silent(Counter),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
struct DedupKey {
    client: ClientKey,
    xid: u32,
    msg: u8,
}

#[derive(Copy, Clone, Debug)]
struct DedupEntry {
    at: Time,
    giaddr: Ipv4Addr,
    decision: Decision,
}

/// State of one scope inside one worker.
#[derive(Debug)]
struct ScopeState {
    pool: Pool,
    bindings: Map<Ipv4Addr, Binding>,
    by_client: Map<ClientKey, Ipv4Addr>,
    /// Union of the policies' ranges: clients matching no policy are kept out of them.
    policy_ranges: Vec<AddrRange>,
    /// Unleased addresses in the failover BACKUP state (the secondary's pool); empty without
    /// failover. `pool` holds the FREE ones.
    backup: Pool,
    /// Bindings replaced by an offer hold, restored if the hold lapses.
    prior: Map<Ipv4Addr, Binding>,
    /// The scope is shared with a failover partner.
    replicated: bool,
}

impl ScopeState {
    /// Take `addr` out of both pools.
    fn take_addr(&mut self, addr: Ipv4Addr) {
        self.pool.take(addr);
        self.backup.take(addr);
    }

    /// The binding of the unleased `addr` in pool `state` (an empty one if it never had one).
    fn binding_or_empty(&self, addr: Ipv4Addr, state: BindingState) -> Binding {
        self.bindings
            .get(&addr)
            .copied()
            .unwrap_or_else(|| Binding::empty(addr, state))
    }

    /// Put `addr` in the pool of `state` (BACKUP, else FREE).
    fn put_state(&mut self, addr: Ipv4Addr, state: BindingState) {
        if state == BindingState::Backup && self.replicated {
            self.backup.put(addr);
        } else {
            self.pool.put(addr);
        }
    }

    /// The pool an address with binding `b` belongs to, if it is allocatable at all by its
    /// state: held addresses never; with failover, EXPIRED, RELEASED and RESET only once the
    /// partner acknowledged them (they turn FREE then).
    fn pool_of(&self, b: &Binding) -> Option<BindingState> {
        if b.state.is_held() {
            return None;
        }
        if !self.replicated {
            return Some(BindingState::Free);
        }
        match b.state {
            BindingState::Free | BindingState::Backup => Some(b.state),
            _ => None,
        }
    }
}

/// True if a free address in pool `state` may be taken under `from`.
fn pool_allows(from: AllocFrom, state: BindingState) -> bool {
    match from {
        AllocFrom::Nothing => false,
        AllocFrom::Any => true,
        AllocFrom::Free => state == BindingState::Free,
        AllocFrom::Backup => state == BindingState::Backup,
    }
}

/// The leasing conditions of one request (from the verdict).
#[derive(Copy, Clone, Debug)]
struct Grant {
    cap: Option<u32>,
    from: AllocFrom,
    now: Time,
}

/// Per-worker DHCP engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    settings: Arc<ServerSettings>,
    iface_scopes: Vec<Vec<usize>>,
    scopes: Vec<ScopeState>,
    orphans: Map<Ipv4Addr, Binding>,
    expiry: BinaryHeap<Reverse<(u64, u32)>>,
    dedup: Map<DedupKey, DedupEntry>,
    dedup_order: VecDeque<(Time, DedupKey)>,
    updates: Vec<Binding>,
    stats: Arc<Stats>,
    worker: usize,
    workers: usize,
    bucket_owner: [u16; 256],
    /// Names of the scopes shared with a failover partner.
    replicated: Vec<String>,
    /// Hostile-input screening ([`Engine::set_hardening`]).
    screen: screen::Screen,
    /// Where clients' names go for dynamic DNS ([`Engine::set_name_sink`]).
    name_sink: Option<crossbeam_channel::Sender<fqdn::NameNote>>,
}

impl Engine {
    /// An engine for worker `worker` of `workers`, serving `settings`. `iface_scopes[i]` lists the
    /// scopes that serve directly attached clients on interface `i`.
    pub fn new(
        settings: Arc<ServerSettings>,
        iface_scopes: Vec<Vec<usize>>,
        worker: usize,
        workers: usize,
        stats: Arc<Stats>,
    ) -> Engine {
        let workers = workers.max(1);
        let mut bucket_owner = [0u16; 256];
        for (b, o) in bucket_owner.iter_mut().enumerate() {
            *o = (b % workers) as u16;
        }
        let scopes = build_scopes(&settings, worker, workers, &[]);
        Engine {
            settings,
            iface_scopes,
            scopes,
            orphans: Map::default(),
            expiry: BinaryHeap::new(),
            dedup: Map::default(),
            dedup_order: VecDeque::new(),
            updates: Vec::new(),
            stats,
            worker,
            workers,
            bucket_owner,
            replicated: Vec::new(),
            screen: screen::Screen::new(Hardening::default()),
            name_sink: None,
        }
    }

    /// Send a [`fqdn::NameNote`] to `sink` for every ACK in a scope with dynamic DNS (never
    /// blocking: a full channel drops the note, counted as `ddns_dropped`).
    pub fn set_name_sink(&mut self, sink: crossbeam_channel::Sender<fqdn::NameNote>) {
        self.name_sink = Some(sink);
    }

    /// The dynamic-DNS name of the client of `req` in scope `si`, if the scope has dynamic
    /// DNS; a name that cannot be one is counted (once per ACK, by the caller's `count`).
    fn client_name(&self, si: usize, req: &Request<'_>, count: bool) -> Option<fqdn::ClientName> {
        let sc = &self.settings.scopes[si];
        let cfg = sc.ddns.as_ref()?;
        let reserved = sc
            .reservation_for(req.client_id(), req.mac())
            .and_then(|r| r.hostname.as_deref());
        match fqdn::client_name(
            cfg,
            req.option(fqdn::FQDN_OPTION),
            req.option(opt::HOSTNAME),
            reserved,
        ) {
            Ok(n) => n,
            Err(fqdn::BadName) => {
                if count {
                    self.stats.bump_at(self.worker, Counter::DdnsBadName);
                }
                None
            }
        }
    }

    /// Screen requests with `rules` from now on (kept across reloads until set again).
    pub fn set_hardening(&mut self, rules: Hardening) {
        if self.screen.rules != rules {
            self.screen = screen::Screen::new(rules);
        }
    }

    /// The screening rules in force.
    pub fn hardening(&self) -> &Hardening {
        &self.screen.rules
    }

    /// Mark the scopes named in `names` as shared with a failover partner (see
    /// [`Authority`]'s FREE/BACKUP split and acknowledged frees). Every binding is kept; call it
    /// before [`Engine::load`] to avoid the rebuild.
    pub fn set_replicated(&mut self, names: Vec<String>) {
        self.replicated = names;
        let (settings, ifs) = (self.settings.clone(), self.iface_scopes.clone());
        self.reconfigure(settings, ifs);
    }

    /// Record which scopes are shared with a partner, taking effect at the next
    /// [`Engine::reconfigure`] (which a reload runs anyway).
    pub fn set_replicated_only(&mut self, names: Vec<String>) {
        self.replicated = names;
    }

    /// True if scope `si` is shared with a failover partner.
    pub fn is_replicated(&self, si: usize) -> bool {
        self.scopes.get(si).is_some_and(|s| s.replicated)
    }

    /// The index of the scope named `name`.
    pub fn scope_index(&self, name: &str) -> Option<usize> {
        self.settings.scopes.iter().position(|s| s.name == name)
    }

    /// The durable binding of `addr` (for an address under an offer hold, the binding the hold
    /// replaced), if any.
    pub fn binding(&self, addr: Ipv4Addr) -> Option<&Binding> {
        let Some(si) = self.scope_of(addr) else {
            return self.orphans.get(&addr);
        };
        let st = &self.scopes[si];
        match st.bindings.get(&addr) {
            Some(b) if b.state == BindingState::Offered => st.prior.get(&addr),
            other => other,
        }
    }

    /// Every durable binding of scope `si` (offer holds excluded).
    pub fn scope_bindings(&self, si: usize) -> impl Iterator<Item = &Binding> {
        self.scopes.get(si).into_iter().flat_map(|s| {
            s.bindings.values().filter_map(move |b| {
                if b.state == BindingState::Offered {
                    s.prior.get(&b.addr)
                } else {
                    Some(b)
                }
            })
        })
    }

    /// Every durable binding (offer holds give way to the binding they replaced), for journal
    /// snapshots.
    pub fn durable_bindings(&self) -> impl Iterator<Item = &Binding> {
        (0..self.scopes.len())
            .flat_map(move |si| self.scope_bindings(si))
            .chain(self.orphans.values())
    }

    /// Store `b` as the binding of its address (a failover partner's update, an acknowledged or
    /// swept binding), replacing whatever was there, offer holds included, and queue it for the
    /// journal.
    pub fn install(&mut self, b: Binding) {
        if let Some(si) = self.scope_of(b.addr) {
            let st = &mut self.scopes[si];
            st.prior.remove(&b.addr);
            if let Some(old) = st.bindings.remove(&b.addr) {
                if st.by_client.get(&old.client) == Some(&b.addr) {
                    st.by_client.remove(&old.client);
                }
            }
        }
        self.updates.push(b);
        self.insert_binding(b);
    }

    /// Make the EXPIRED, RELEASED or RESET address `addr` a candidate for allocation again
    /// before the partner acknowledged it (failover PARTNER-DOWN reclaim): it goes back to the
    /// FREE pool, and the authority's `may_allocate` decides on each use. False if `addr` has
    /// no such binding.
    pub fn reclaim(&mut self, addr: Ipv4Addr) -> bool {
        let Some(si) = self.scope_of(addr) else {
            return false;
        };
        let sc = &self.settings.scopes[si];
        let poolable = sc.in_pool(addr) && sc.reservation_of(addr).is_none();
        let st = &mut self.scopes[si];
        match st.bindings.get(&addr) {
            Some(b)
                if poolable
                    && matches!(
                        b.state,
                        BindingState::Expired | BindingState::Released | BindingState::Reset
                    ) =>
            {
                st.pool.put(addr);
                true
            }
            _ => false,
        }
    }

    /// Unleased addresses of scope `si` in this worker's shard: (FREE, BACKUP).
    pub fn pool_counts(&self, si: usize) -> (u64, u64) {
        self.scopes
            .get(si)
            .map_or((0, 0), |s| (s.pool.free(), s.backup.free()))
    }

    /// Take up to `n` unleased addresses of pool `state` (FREE or BACKUP) of scope `si` for a
    /// failover pool transfer, with their current bindings (`Binding::empty` for addresses that
    /// never had one). The caller installs the transferred bindings.
    pub fn take_for_transfer(&mut self, si: usize, state: BindingState, n: usize) -> Vec<Binding> {
        let mut out = Vec::new();
        let Some(sc) = self.settings.scopes.get(si) else {
            return out;
        };
        let Some(st) = self.scopes.get_mut(si) else {
            return out;
        };
        let pool = if state == BindingState::Backup {
            &mut st.backup
        } else {
            &mut st.pool
        };
        let free = pool.free();
        if n == 0 || free == 0 {
            return out;
        }
        let n = (n as u64).min(free);
        // Evenly spread over the scope's ranges (every k-th free address), so that each
        // policy's range and each part of the pool is shared in the same proportion.
        let mut seen = 0u64;
        let mut picked = Vec::with_capacity(n as usize);
        'ranges: for r in &sc.ranges {
            for a in u32::from(r.start)..=u32::from(r.end) {
                let addr = Ipv4Addr::from(a);
                if !pool.is_free(addr) {
                    continue;
                }
                seen += 1;
                // Pick when the share of picks so far falls behind n / free.
                if (picked.len() as u64) * free < seen * n {
                    picked.push(addr);
                    if picked.len() as u64 == n {
                        break 'ranges;
                    }
                }
            }
        }
        for &a in &picked {
            pool.take(a);
        }
        out.extend(picked.into_iter().map(|a| st.binding_or_empty(a, state)));
        out
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// This engine's worker index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The settings in force.
    pub fn settings(&self) -> &Arc<ServerSettings> {
        &self.settings
    }

    /// The worker that owns RFC 3074 `bucket`.
    pub fn bucket_owner(&self, bucket: u8) -> usize {
        usize::from(self.bucket_owner[usize::from(bucket)])
    }

    /// Load recovered bindings (from the journal) at start-up. Active leases that ran out while
    /// the server was down become Expired (queued as updates); Offered holds are dropped.
    pub fn load(&mut self, bindings: impl IntoIterator<Item = Binding>, now: Time) {
        let now_s = now.secs() as u32;
        for mut b in bindings {
            match b.state {
                BindingState::Offered => continue,
                BindingState::Active if b.expires <= now_s => {
                    b.state = BindingState::Expired;
                    self.updates.push(b);
                    self.stats.bump_at(self.worker, Counter::Expired);
                }
                _ => {}
            }
            self.insert_binding(b);
        }
    }

    /// Replace the settings (SIGHUP reload) without losing a binding: every binding is carried
    /// into the scope that now contains its address (or kept aside if none does, still listed).
    pub fn reconfigure(&mut self, settings: Arc<ServerSettings>, iface_scopes: Vec<Vec<usize>>) {
        let mut all: Vec<Binding> = self.orphans.drain().map(|(_, b)| b).collect();
        for mut s in self.scopes.drain(..) {
            // An offer hold over an older binding gives way to that binding.
            all.extend(
                s.bindings
                    .drain()
                    .map(|(a, b)| s.prior.remove(&a).unwrap_or(b)),
            );
        }
        self.scopes = build_scopes(&settings, self.worker, self.workers, &self.replicated);
        self.settings = settings;
        self.iface_scopes = iface_scopes;
        self.dedup.clear();
        self.dedup_order.clear();
        for b in all {
            self.insert_binding(b);
        }
    }

    fn insert_binding(&mut self, b: Binding) {
        let Some(si) = self.scope_of(b.addr) else {
            self.orphans.insert(b.addr, b);
            return;
        };
        let sc = &self.settings.scopes[si];
        let poolable = sc.in_pool(b.addr) && sc.reservation_of(b.addr).is_none();
        let s = &mut self.scopes[si];
        s.take_addr(b.addr);
        if let Some(state) = s.pool_of(&b).filter(|_| poolable) {
            s.put_state(b.addr, state);
        }
        if !b.client.is_empty() && b.state != BindingState::Abandoned {
            s.by_client.insert(b.client, b.addr);
        }
        if matches!(
            b.state,
            BindingState::Active | BindingState::Abandoned | BindingState::Offered
        ) {
            self.expiry
                .push(Reverse((u64::from(b.expires) * 1000, u32::from(b.addr))));
        }
        s.bindings.insert(b.addr, b);
    }

    fn scope_of(&self, addr: Ipv4Addr) -> Option<usize> {
        self.settings
            .scopes
            .iter()
            .position(|s| s.subnet.contains(addr))
    }

    /// Drain the binding changes queued since the last call (to journal before replying).
    pub fn take_updates(&mut self) -> std::vec::Drain<'_, Binding> {
        self.updates.drain(..)
    }

    /// Number of binding changes queued.
    pub fn pending_updates(&self) -> usize {
        self.updates.len()
    }

    /// Every binding this engine holds, with its scope name ("" for addresses no scope covers).
    pub fn bindings(&self) -> impl Iterator<Item = (&str, &Binding)> {
        self.scopes
            .iter()
            .zip(self.settings.scopes.iter())
            .flat_map(|(st, sc)| st.bindings.values().map(move |b| (sc.name.as_str(), b)))
            .chain(self.orphans.values().map(|b| ("", b)))
    }

    /// Unleased (FREE and BACKUP) and total addresses of this worker's shard of scope `i`.
    pub fn pool_usage(&self, i: usize) -> Option<(u64, u64)> {
        self.scopes
            .get(i)
            .map(|s| (s.pool.free() + s.backup.free(), s.pool.size()))
    }

    /// The earliest time at which [`Engine::tick`] has work.
    pub fn next_timer(&self) -> Option<Time> {
        self.expiry.peek().map(|Reverse((t, _))| Time(*t))
    }

    /// Run timers due at `now`: expire leases, end offer holds and probations, prune the
    /// duplicate cache.
    pub fn tick(&mut self, now: Time) {
        while let Some(Reverse((t, a))) = self.expiry.peek().copied() {
            if t > now.0 {
                break;
            }
            self.expiry.pop();
            let addr = Ipv4Addr::from(a);
            let Some(si) = self.scope_of(addr) else {
                continue;
            };
            let when = (t / 1000) as u32;
            let s = &mut self.scopes[si];
            let Some(b) = s.bindings.get_mut(&addr) else {
                continue;
            };
            let graced = b.expires.saturating_add(REPLICATED_EXPIRY_GRACE_SECS);
            let own_replicated = s.replicated && !b.from_partner && b.state == BindingState::Active;
            if b.expires != when && !(own_replicated && graced == when) {
                continue; // superseded (renewed, released...)
            }
            match b.state {
                BindingState::Active if s.replicated && b.from_partner => {
                    // The partner's lease, on the partner's clock: the failover sweep expires
                    // it with the skew allowance.
                }
                BindingState::Active if own_replicated && when < graced => {
                    // Ours, ended: still the client's for the grace (a late renewal).
                    self.expiry
                        .push(Reverse((u64::from(graced) * 1000, u32::from(addr))));
                }
                BindingState::Active => {
                    b.state = BindingState::Expired;
                    b.cltt = now.secs() as u32;
                    let b = *b;
                    if !s.replicated {
                        // With a partner the address is free only once it acknowledged.
                        s.pool.put(addr);
                    }
                    self.updates.push(b);
                    self.stats.bump_at(self.worker, Counter::Expired);
                }
                BindingState::Offered => {
                    let client = b.client;
                    release_hold(s, addr, client);
                    self.stats.bump_at(self.worker, Counter::OfferExpired);
                }
                BindingState::Abandoned => {
                    let mut nb = Binding::empty(addr, BindingState::Free);
                    nb.cltt = now.secs() as u32;
                    if s.replicated {
                        // Free again only once the partner knows: outstanding until acknowledged
                        // (EXPIRED turns FREE on the acknowledgement).
                        nb.state = BindingState::Expired;
                        nb.acked_expiry = b.acked_expiry;
                        nb.sent_expiry = b.acked_expiry.saturating_add(1).max(nb.cltt);
                    } else {
                        s.pool.put(addr);
                    }
                    *b = nb;
                    self.updates.push(nb);
                    self.stats.bump_at(self.worker, Counter::ProbationEnded);
                }
                _ => {}
            }
        }
        let window = self.settings.duplicate_window_ms;
        while let Some((at, k)) = self.dedup_order.front().copied() {
            if now.millis_since(at) <= window {
                break;
            }
            self.dedup_order.pop_front();
            if self.dedup.get(&k).is_some_and(|e| e.at == at) {
                self.dedup.remove(&k);
            }
        }
    }

    /// Handle one request frame (the UDP payload). The reply, if any, is written into `out`.
    pub fn handle(
        &mut self,
        now: Time,
        meta: &RxMeta,
        frame: &[u8],
        out: &mut [u8],
        authority: &impl Authority,
    ) -> Outcome {
        let req = match Request::parse(frame) {
            Ok(r) => r,
            Err(e) => {
                self.stats.bump_at(self.worker, Counter::Received);
                let c = wire_counter(e);
                self.stats.bump_at(self.worker, c);
                return Outcome::Drop(c);
            }
        };
        let bucket = client_bucket(&req);
        let owner = self.bucket_owner(bucket);
        if owner != self.worker {
            // Counted once, by the owner that handles it.
            return Outcome::Handoff(owner);
        }
        self.stats.bump_at(self.worker, Counter::Received);
        self.stats.bump_at(
            self.worker,
            match req.message_type() {
                MessageType::Discover => Counter::Discover,
                MessageType::Request => Counter::Request,
                MessageType::Release => Counter::Release,
                MessageType::Decline => Counter::Decline,
                _ => Counter::Inform,
            },
        );
        let client = client_key(&req);
        if let Some(c) = self.screen.check(&req, &client, now, self.workers) {
            self.stats.bump_at(self.worker, c);
            return Outcome::Drop(c);
        }
        let Some(si) = self.select_scope(&req, meta, &client) else {
            self.stats.bump_at(self.worker, Counter::DropNoScope);
            return Outcome::Drop(Counter::DropNoScope);
        };
        let mt = req.message_type();
        let dkey = DedupKey {
            client,
            xid: req.xid(),
            msg: mt as u8,
        };
        let dedup = matches!(mt, MessageType::Discover | MessageType::Request);
        let decision = match self.dedup.get(&dkey) {
            Some(e) if dedup && now.millis_since(e.at) <= self.settings.duplicate_window_ms => {
                self.stats.bump_at(self.worker, Counter::Duplicate);
                if e.giaddr != req.giaddr() {
                    self.stats
                        .bump_at(self.worker, Counter::DuplicateOtherRelay);
                }
                e.decision
            }
            _ => {
                let has_binding = self.scopes[si].by_client.contains_key(&client);
                let verdict = authority.verdict(si, bucket, has_binding, now);
                let d = if !verdict.answer
                    && matches!(
                        mt,
                        MessageType::Discover | MessageType::Request | MessageType::Inform
                    ) {
                    Decision::Silent(Counter::SilentPartner)
                } else {
                    let cap = verdict.lease_cap_secs;
                    let from = verdict.alloc;
                    match mt {
                        MessageType::Discover => {
                            self.discover(now, &req, si, client, cap, from, authority)
                        }
                        MessageType::Request => {
                            self.request(now, &req, si, client, cap, from, authority)
                        }
                        MessageType::Release => self.release(now, &req, si, client),
                        MessageType::Decline => self.decline(now, &req, si, client),
                        _ => Decision::InformAck { scope: si },
                    }
                };
                if dedup {
                    let e = DedupEntry {
                        at: now,
                        giaddr: req.giaddr(),
                        decision: d,
                    };
                    self.dedup.insert(dkey, e);
                    self.dedup_order.push_back((now, dkey));
                }
                d
            }
        };
        self.answer(&req, meta, decision, out)
    }

    fn select_scope(&self, req: &Request<'_>, meta: &RxMeta, client: &ClientKey) -> Option<usize> {
        let scopes = &self.settings.scopes;
        let gi = req.giaddr();
        if !gi.is_unspecified() {
            let link = req.link_selection().unwrap_or(gi);
            return scopes.iter().position(|s| s.subnet.contains(link));
        }
        if let Some(link) = req.link_selection() {
            return scopes.iter().position(|s| s.subnet.contains(link));
        }
        let ci = req.ciaddr();
        if !ci.is_unspecified() {
            if let Some(i) = scopes.iter().position(|s| s.subnet.contains(ci)) {
                return Some(i);
            }
        }
        let local = self.iface_scopes.get(meta.iface)?;
        local
            .iter()
            .copied()
            .find(|&i| {
                self.scopes
                    .get(i)
                    .is_some_and(|s| s.by_client.contains_key(client))
            })
            .or_else(|| {
                local.iter().copied().find(|&i| {
                    self.scopes
                        .get(i)
                        .is_some_and(|s| s.pool.free() + s.backup.free() > 0)
                })
            })
            .or_else(|| local.first().copied())
    }

    fn policy_for(&self, si: usize, req: &Request<'_>) -> Option<usize> {
        self.settings.scopes[si]
            .policies
            .iter()
            .position(|p| policy_matches(p, req))
    }

    /// True if `addr` may be given to a client of policy `pi` (or of no policy) in scope `si`.
    fn allowed(&self, si: usize, pi: Option<usize>, addr: Ipv4Addr) -> bool {
        let sc = &self.settings.scopes[si];
        if !sc.in_pool(addr) || !self.scopes[si].pool.contains(addr) {
            return false;
        }
        match pi {
            Some(p) if !sc.policies[p].ranges.is_empty() => {
                sc.policies[p].ranges.iter().any(|r| r.contains(addr))
            }
            _ => !self.scopes[si]
                .policy_ranges
                .iter()
                .any(|r| r.contains(addr)),
        }
    }

    fn lease_time(&self, si: usize, pi: Option<usize>, req: &Request<'_>, cap: Option<u32>) -> u32 {
        let sc = &self.settings.scopes[si];
        let mut t = pi
            .and_then(|p| sc.policies[p].lease_time)
            .unwrap_or(sc.lease_time);
        if let Some(asked) = req.lease_time() {
            t = t.min(asked.max(1));
        }
        if let Some(c) = cap {
            t = t.min(c.max(1));
        }
        t
    }

    fn reservation(&self, si: usize, req: &Request<'_>) -> Option<&Reservation> {
        self.settings.scopes[si].reservation_for(req.client_id(), req.mac())
    }

    /// The potential expiration the partner acknowledged for `client`'s binding on `addr` (0 if
    /// the address is not, or was not last, the client's).
    fn acked_for(&self, si: usize, addr: Ipv4Addr, client: ClientKey) -> u32 {
        let st = &self.scopes[si];
        let b = match st.bindings.get(&addr) {
            Some(b) if b.state == BindingState::Offered => st.prior.get(&addr),
            other => other,
        };
        b.filter(|b| b.client == client)
            .map_or(0, |b| b.acked_expiry)
    }

    /// True if the unleased `addr` may go to a new client now: in a pool the verdict allows
    /// (`from`), and accepted by the authority (failover's ownership and MCLT rules).
    fn can_take(
        &self,
        si: usize,
        addr: Ipv4Addr,
        from: AllocFrom,
        auth: &impl Authority,
        now: Time,
    ) -> bool {
        let st = &self.scopes[si];
        let state = if st.pool.is_free(addr) {
            BindingState::Free
        } else if st.backup.is_free(addr) {
            BindingState::Backup
        } else {
            return false;
        };
        if !pool_allows(from, state) {
            return false;
        }
        auth.may_allocate(si, &st.binding_or_empty(addr, state), now)
    }

    /// Take a new address for a client of policy `pi` from the pools `from` allows, skipping
    /// addresses the authority refuses (they stay in their pool).
    fn allocate_new(
        &mut self,
        si: usize,
        pi: Option<usize>,
        from: AllocFrom,
        auth: &impl Authority,
        now: Time,
    ) -> Option<Ipv4Addr> {
        const TRIES: usize = 16;
        let settings = self.settings.clone();
        let sc = &settings.scopes[si];
        for state in [BindingState::Free, BindingState::Backup] {
            if !pool_allows(from, state) {
                continue;
            }
            let mut refused: Vec<Ipv4Addr> = Vec::new();
            let mut found = None;
            for _ in 0..TRIES {
                let st = &mut self.scopes[si];
                let pool = if state == BindingState::Free {
                    &mut st.pool
                } else {
                    &mut st.backup
                };
                let got = match pi {
                    Some(p) if !sc.policies[p].ranges.is_empty() => {
                        pool.allocate(&sc.policies[p].ranges, &[])
                    }
                    _ => pool.allocate(&[], &st.policy_ranges),
                };
                let Some(a) = got else { break };
                if auth.may_allocate(si, &st.binding_or_empty(a, state), now) {
                    found = Some(a);
                    break;
                }
                refused.push(a);
            }
            let st = &mut self.scopes[si];
            for a in refused {
                st.put_state(a, state);
            }
            if found.is_some() {
                return found;
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn discover(
        &mut self,
        now: Time,
        req: &Request<'_>,
        si: usize,
        client: ClientKey,
        cap: Option<u32>,
        from: AllocFrom,
        auth: &impl Authority,
    ) -> Decision {
        let pi = self.policy_for(si, req);
        let desired = self.lease_time(si, pi, req, cap);
        if let Some(r) = self.reservation(si, req) {
            let addr = r.addr;
            match self.scopes[si].bindings.get(&addr) {
                Some(b) if b.state.is_held() && b.client != client => {
                    tracing::warn!(%addr, "reserved address is held by another client; not offering it");
                    return Decision::Silent(Counter::SilentNoAddress);
                }
                _ => {
                    let acked = self.acked_for(si, addr, client);
                    let Some(g) = auth.grant(si, desired, acked, now) else {
                        return Decision::Silent(Counter::SilentMclt);
                    };
                    return Decision::Offer {
                        scope: si,
                        addr,
                        lease: g.lease_secs,
                    };
                }
            }
        }
        let st = &self.scopes[si];
        let mut pick = None;
        if let Some(&prev) = st.by_client.get(&client) {
            if let Some(b) = st.bindings.get(&prev) {
                let usable = match b.state {
                    BindingState::Active | BindingState::Offered => b.client == client,
                    // The client's own lease that just ended: nobody else can have been given
                    // it (with a partner, it stays out of the pool until acknowledged).
                    BindingState::Expired | BindingState::Released => {
                        b.client == client && from != AllocFrom::Nothing
                    }
                    _ => false,
                };
                if usable && self.allowed(si, pi, prev) {
                    pick = Some(prev);
                }
            }
        }
        if pick.is_none() && from != AllocFrom::Nothing {
            if let Some(r) = req.requested_ip() {
                if self.can_take(si, r, from, auth, now) && self.allowed(si, pi, r) {
                    pick = Some(r);
                }
            }
        }
        let g = match pick {
            Some(addr) => auth.grant(si, desired, self.acked_for(si, addr, client), now),
            None if from != AllocFrom::Nothing => {
                // A new allocation: ask for the grant first, so nothing is taken in vain.
                let g = auth.grant(si, desired, 0, now);
                if g.is_some() {
                    pick = self.allocate_new(si, pi, from, auth, now);
                }
                g
            }
            None => None,
        };
        if pick.is_none() && from == AllocFrom::Nothing {
            return Decision::Silent(Counter::SilentNoAddress);
        }
        let Some(g) = g else {
            return Decision::Silent(Counter::SilentMclt);
        };
        let Some(addr) = pick else {
            tracing::debug!(scope = %self.settings.scopes[si].name, client = %client, "no free address to offer");
            return Decision::Silent(Counter::SilentNoAddress);
        };
        self.hold(now, si, addr, client, req);
        Decision::Offer {
            scope: si,
            addr,
            lease: g.lease_secs,
        }
    }

    /// Hold `addr` for `client` as an offer (unless the client already has it Active). The
    /// binding the hold replaces is kept aside and comes back if the hold lapses.
    fn hold(&mut self, now: Time, si: usize, addr: Ipv4Addr, client: ClientKey, req: &Request<'_>) {
        let hold_until = (now.secs() + u64::from(self.settings.offer_hold_secs)) as u32;
        let st = &mut self.scopes[si];
        st.take_addr(addr);
        if let Some(b) = st.bindings.get(&addr).copied() {
            if b.state == BindingState::Active && b.client == client {
                return;
            }
            if b.client != client && st.by_client.get(&b.client) == Some(&addr) {
                st.by_client.remove(&b.client);
            }
            if b.state != BindingState::Offered {
                st.prior.insert(addr, b);
            }
        }
        if let Some(prev) = st.by_client.insert(client, addr) {
            if prev != addr {
                release_hold(st, prev, client);
            }
        }
        let mut b = Binding::empty(addr, BindingState::Offered);
        fill_client(&mut b, client, req);
        b.expires = hold_until;
        b.cltt = now.secs() as u32;
        st.bindings.insert(addr, b);
        self.expiry
            .push(Reverse((u64::from(hold_until) * 1000, u32::from(addr))));
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        now: Time,
        req: &Request<'_>,
        si: usize,
        client: ClientKey,
        cap: Option<u32>,
        from: AllocFrom,
        auth: &impl Authority,
    ) -> Decision {
        let ci = req.ciaddr();
        if let Some(sid) = req.server_id() {
            // SELECTING
            if sid != self.settings.server_id {
                let st = &mut self.scopes[si];
                if let Some(&a) = st.by_client.get(&client) {
                    release_hold(st, a, client);
                }
                return Decision::Silent(Counter::SilentOtherServer);
            }
            let addr = match req.requested_ip() {
                Some(a) => a,
                None if !ci.is_unspecified() => ci,
                None => return Decision::Nak { scope: si },
            };
            let grant = Grant { cap, from, now };
            return self.confirm(req, si, client, addr, grant, auth, true);
        }
        let addr = match req.requested_ip() {
            Some(a) if ci.is_unspecified() => a, // INIT-REBOOT
            _ if !ci.is_unspecified() => ci,     // RENEWING / REBINDING
            _ => {
                return Decision::Silent(Counter::DropBadRequest);
            }
        };
        if !self.settings.scopes[si].subnet.contains(addr) {
            return self.wrong(si);
        }
        let grant = Grant { cap, from, now };
        self.confirm(req, si, client, addr, grant, auth, false)
    }

    /// Not ours to confirm: NAK when authoritative, else stay silent.
    fn wrong(&self, si: usize) -> Decision {
        if self.settings.scopes[si].authoritative {
            Decision::Nak { scope: si }
        } else {
            Decision::Silent(Counter::SilentNotAuthoritative)
        }
    }

    /// ACK `addr` to `client` if it is theirs (or free and allowed for them), else NAK/silent.
    #[allow(clippy::too_many_arguments)]
    fn confirm(
        &mut self,
        req: &Request<'_>,
        si: usize,
        client: ClientKey,
        addr: Ipv4Addr,
        g: Grant,
        auth: &impl Authority,
        selecting: bool,
    ) -> Decision {
        let now = g.now;
        let pi = self.policy_for(si, req);
        let desired = self.lease_time(si, pi, req, g.cap);
        if let Some(r) = self.reservation(si, req) {
            if r.addr != addr {
                return if selecting {
                    Decision::Nak { scope: si }
                } else {
                    self.wrong(si)
                };
            }
            if let Some(b) = self.scopes[si].bindings.get(&addr) {
                if b.state.is_held() && b.client != client {
                    return Decision::Nak { scope: si };
                }
            }
            return self.ack(now, req, si, client, addr, desired, auth);
        }
        let reserved_for_other = self.settings.scopes[si].reservation_of(addr).is_some();
        let st = &self.scopes[si];
        let ok = match st.bindings.get(&addr) {
            Some(b)
                if b.client == client
                    && b.state.is_held()
                    && b.state != BindingState::Abandoned =>
            {
                self.allowed(si, pi, addr)
            }
            Some(b) if b.state.is_held() => false,
            // The client's own lease that just ended (a late renewal): still theirs to have.
            Some(b)
                if b.client == client
                    && matches!(b.state, BindingState::Expired | BindingState::Released)
                    && g.from != AllocFrom::Nothing =>
            {
                !reserved_for_other && self.allowed(si, pi, addr)
            }
            _ => {
                !reserved_for_other
                    && self.can_take(si, addr, g.from, auth, now)
                    && self.allowed(si, pi, addr)
            }
        };
        if ok {
            return self.ack(now, req, si, client, addr, desired, auth);
        }
        if selecting {
            // The address is someone else's, not allowed, or ours but unusable: refuse it.
            Decision::Nak { scope: si }
        } else {
            self.wrong(si)
        }
    }

    /// Bind `addr` to `client` for the lease the authority grants (the MCLT rule), or stay
    /// silent if it grants none.
    #[allow(clippy::too_many_arguments)]
    fn ack(
        &mut self,
        now: Time,
        req: &Request<'_>,
        si: usize,
        client: ClientKey,
        addr: Ipv4Addr,
        desired: u32,
        auth: &impl Authority,
    ) -> Decision {
        let acked = self.acked_for(si, addr, client);
        let Some(g) = auth.grant(si, desired, acked, now) else {
            return Decision::Silent(Counter::SilentMclt);
        };
        self.bind(now, si, addr, client, req, g, acked);
        if let Some(sink) = &self.name_sink {
            if let Some(n) = self.client_name(si, req, true).filter(|n| n.update) {
                if let Some(b) = self.scopes[si].bindings.get(&addr) {
                    let note = fqdn::NameNote {
                        binding: *b,
                        name: n.name,
                        forward: n.forward,
                    };
                    if sink.try_send(note).is_err() {
                        self.stats.bump_at(self.worker, Counter::DdnsDropped);
                    }
                }
            }
        }
        Decision::Ack {
            scope: si,
            addr,
            lease: g.lease_secs,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bind(
        &mut self,
        now: Time,
        si: usize,
        addr: Ipv4Addr,
        client: ClientKey,
        req: &Request<'_>,
        g: LeaseGrant,
        acked: u32,
    ) {
        let now_s = now.secs() as u32;
        let st = &mut self.scopes[si];
        st.take_addr(addr);
        st.prior.remove(&addr);
        if let Some(prev) = st.by_client.insert(client, addr) {
            if prev != addr {
                release_hold(st, prev, client);
            }
        }
        if let Some(old) = st.bindings.get(&addr) {
            if old.client != client && st.by_client.get(&old.client) == Some(&addr) {
                let oc = old.client;
                st.by_client.remove(&oc);
            }
        }
        let mut b = Binding::empty(addr, BindingState::Active);
        fill_client(&mut b, client, req);
        b.start = now_s;
        b.cltt = now_s;
        b.expires = now_s.saturating_add(g.lease_secs);
        b.acked_expiry = acked;
        b.sent_expiry = g.potential_expiry;
        st.bindings.insert(addr, b);
        self.updates.push(b);
        self.expiry
            .push(Reverse((u64::from(b.expires) * 1000, u32::from(addr))));
    }
    fn release(&mut self, now: Time, req: &Request<'_>, si: usize, client: ClientKey) -> Decision {
        if req
            .server_id()
            .is_some_and(|s| s != self.settings.server_id)
        {
            return Decision::Silent(Counter::SilentOtherServer);
        }
        let addr = req.ciaddr();
        let held_by = self.scopes[si]
            .bindings
            .get(&addr)
            .map(|b| (b.client, b.state.is_held()));
        match held_by {
            Some((c, _)) if c == client => {
                if self.end_active(now, si, addr).is_some() {
                    tracing::debug!(%addr, client = %client, "lease released");
                    Decision::Silent(Counter::SilentNoReply)
                } else {
                    Decision::Silent(Counter::SilentUnknownLease)
                }
            }
            Some((c, true)) if !c.is_empty() => {
                tracing::warn!(%addr, from = %client, "RELEASE of another client's lease ignored");
                Decision::Silent(Counter::DropNotOwner)
            }
            _ => Decision::Silent(Counter::SilentUnknownLease),
        }
    }

    /// End the ACTIVE lease on `addr` in scope `si` as RELEASED at `now` and queue it for the
    /// journal: the address is FREE at once in a scope of this server alone, and only once the
    /// partner acknowledges in a replicated one. The ended binding; `None` (nothing changed) if
    /// `addr` has no ACTIVE binding. Shared by DHCPRELEASE and the admin API's lease deletion.
    fn end_active(&mut self, now: Time, si: usize, addr: Ipv4Addr) -> Option<Binding> {
        let st = self.scopes.get_mut(si)?;
        let b = st
            .bindings
            .get_mut(&addr)
            .filter(|b| b.state == BindingState::Active)?;
        let now_s = now.secs() as u32;
        b.state = BindingState::Released;
        b.cltt = now_s;
        b.expires = now_s;
        b.from_partner = false;
        let b = *b;
        if !st.replicated {
            // With a partner the address is free only once it acknowledged.
            st.pool.put(addr);
        }
        self.updates.push(b);
        Some(b)
    }

    fn decline(&mut self, now: Time, req: &Request<'_>, si: usize, client: ClientKey) -> Decision {
        if req
            .server_id()
            .is_some_and(|s| s != self.settings.server_id)
        {
            return Decision::Silent(Counter::SilentOtherServer);
        }
        let Some(addr) = req.requested_ip() else {
            return Decision::Silent(Counter::SilentUnknownLease);
        };
        let until = (now.secs() + u64::from(self.settings.decline_probation_secs)) as u32;
        let st = &mut self.scopes[si];
        match st.bindings.get_mut(&addr) {
            Some(b) if b.client == client && b.state.is_held() => {
                b.state = BindingState::Abandoned;
                b.cltt = now.secs() as u32;
                b.expires = until;
                b.from_partner = false;
                // Outstanding towards a failover partner until it acknowledges.
                b.sent_expiry = b.acked_expiry.saturating_add(1).max(b.cltt);
                let b = *b;
                st.pool.take(addr);
                if st.by_client.get(&client) == Some(&addr) {
                    st.by_client.remove(&client);
                }
                self.updates.push(b);
                self.expiry
                    .push(Reverse((u64::from(until) * 1000, u32::from(addr))));
                tracing::warn!(%addr, client = %client, probation_secs = self.settings.decline_probation_secs,
                    "address declined by client (in use on the link?); quarantined");
                Decision::Silent(Counter::SilentNoReply)
            }
            Some(b) if b.state.is_held() && !b.client.is_empty() => {
                tracing::warn!(%addr, from = %client, "DECLINE of another client's lease ignored");
                Decision::Silent(Counter::DropNotOwner)
            }
            _ => Decision::Silent(Counter::SilentUnknownLease),
        }
    }

    /// Turn a decision into a reply (or a silent outcome).
    fn answer(&self, req: &Request<'_>, meta: &RxMeta, d: Decision, out: &mut [u8]) -> Outcome {
        let (mt, si, yiaddr, lease) = match d {
            Decision::Silent(c) => {
                self.stats.bump_at(self.worker, c);
                return Outcome::Silent(c);
            }
            Decision::Offer { scope, addr, lease } => {
                (MessageType::Offer, scope, addr, Some(lease))
            }
            Decision::Ack { scope, addr, lease } => (MessageType::Ack, scope, addr, Some(lease)),
            Decision::InformAck { scope } => (MessageType::Ack, scope, Ipv4Addr::UNSPECIFIED, None),
            Decision::Nak { scope } => {
                tracing::debug!(client = %client_key(req), ciaddr = %req.ciaddr(),
                    requested = ?req.requested_ip(), server_id = ?req.server_id(),
                    scope = %self.settings.scopes[scope].name, "NAK");
                (MessageType::Nak, scope, Ipv4Addr::UNSPECIFIED, None)
            }
        };
        let gi = req.giaddr();
        let nak = mt == MessageType::Nak;
        let ciaddr = if nak || mt == MessageType::Offer {
            Ipv4Addr::UNSPECIFIED
        } else {
            req.ciaddr()
        };
        let mut flags = req.flags();
        if nak && !gi.is_unspecified() {
            flags |= 0x8000; // RFC 2131 §4.3.2: relays broadcast NAKs
        }
        let hdr = ReplyHeader {
            xid: req.xid(),
            flags,
            ciaddr,
            yiaddr,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: gi,
            htype: req.htype(),
            hlen: req.hlen(),
        };
        let relay_info = req.option(opt::RELAY_AGENT_INFO);
        let reserve = relay_info.map_or(0, |v| v.len() + 2 * v.len().div_ceil(255).max(1));
        let limit = req.max_message_size().unwrap_or(576).max(576);
        let chaddr = &req.bytes()[28..44];
        let Some(mut w) = ReplyWriter::new(out, limit, reserve, &hdr, chaddr, mt) else {
            self.stats.bump_at(self.worker, Counter::DropNoRoom);
            return Outcome::Drop(Counter::DropNoRoom);
        };
        let settings = &self.settings;
        let sc = &settings.scopes[si];
        w.option_addr(opt::SERVER_ID, settings.server_id);
        if !nak {
            if let Some(lease) = lease {
                let t1 = sc.renew_time.unwrap_or(lease / 2).min(lease);
                let t2 = sc.rebind_time.unwrap_or(lease / 8 * 7).min(lease);
                let (t1, t2) = if lease < sc.lease_time {
                    (lease / 2, lease / 8 * 7)
                } else {
                    (t1, t2)
                };
                w.option_u32(opt::LEASE_TIME, lease);
                w.option_u32(opt::RENEWAL_TIME, t1);
                w.option_u32(opt::REBINDING_TIME, t2);
            }
            w.option_addr(opt::SUBNET_MASK, sc.subnet.mask());
            let pi = self.policy_for(si, req);
            let policy: Option<&Policy> = pi.map(|p| &sc.policies[p]);
            let resv = sc.reservation_for(req.client_id(), req.mac());
            let lookup = |code: u8| -> Option<&[u8]> {
                if code == opt::HOSTNAME {
                    if let Some(h) = resv.and_then(|r| r.hostname.as_deref()) {
                        return Some(h.as_bytes());
                    }
                }
                resv.and_then(|r| r.options.get(code))
                    .or_else(|| policy.and_then(|p| p.options.get(code)))
                    .or_else(|| sc.options.get(code))
                    .or_else(|| settings.global_options.get(code))
            };
            // The client FQDN option answers the client's (RFC 4702 §4): never a configured one.
            let mut fqdn_buf = [0u8; 3 + fqdn::NAME_MAX + 2];
            let fqdn_len = if lease.is_some() {
                self.client_name(si, req, false)
                    .and_then(|n| n.reply_value(&mut fqdn_buf))
            } else {
                None
            };
            if let Some(n) = fqdn_len {
                w.option(fqdn::FQDN_OPTION, &fqdn_buf[..n]);
            }
            let owned = |code: u8| {
                matches!(code, 0 | 1 | 50..=59 | 61 | 82 | 255)
                    || (code == fqdn::FQDN_OPTION && fqdn_len.is_some())
            };
            match req.parameter_request_list() {
                Some(prl) => {
                    for (i, &code) in prl.iter().enumerate() {
                        if owned(code) || prl[..i].contains(&code) {
                            continue;
                        }
                        if let Some(v) = lookup(code) {
                            w.option(code, v);
                        }
                    }
                }
                None => {
                    for code in 1..=254u8 {
                        if owned(code) {
                            continue;
                        }
                        if let Some(v) = lookup(code) {
                            w.option(code, v);
                        }
                    }
                }
            }
        } else {
            w.option(opt::MESSAGE, b"requested address not available");
        }
        if let Some(ri) = relay_info {
            w.option_reserved(opt::RELAY_AGENT_INFO, ri);
        }
        let len = w.finish();
        self.stats.bump_at(
            self.worker,
            match mt {
                MessageType::Offer => Counter::Offer,
                MessageType::Nak => Counter::Nak,
                _ => Counter::Ack,
            },
        );
        let dest = if !gi.is_unspecified() {
            Destination::Relay(SocketAddrV4::new(gi, SERVER_PORT))
        } else if !nak && !req.ciaddr().is_unspecified() {
            Destination::Unicast(SocketAddrV4::new(req.ciaddr(), CLIENT_PORT))
        } else {
            Destination::Broadcast { iface: meta.iface }
        };
        Outcome::Reply { len, dest, msg: mt }
    }
}

fn build_scopes(
    settings: &ServerSettings,
    worker: usize,
    workers: usize,
    replicated: &[String],
) -> Vec<ScopeState> {
    settings
        .scopes
        .iter()
        .map(|s: &Scope| {
            let pool = Pool::new(s, worker, workers);
            (s, pool)
        })
        .map(|(s, pool)| ScopeState {
            backup: pool.emptied(),
            prior: Map::default(),
            replicated: replicated.contains(&s.name),
            pool,
            bindings: Map::default(),
            by_client: Map::default(),
            policy_ranges: s
                .policies
                .iter()
                .flat_map(|p| p.ranges.iter().copied())
                .collect(),
        })
        .collect()
}

/// Drop an offer hold of `client` on `addr` (no journal record: holds are never durable),
/// restoring the binding it replaced, if any.
fn release_hold(st: &mut ScopeState, addr: Ipv4Addr, client: ClientKey) {
    if let Some(b) = st.bindings.get(&addr) {
        if b.state == BindingState::Offered && b.client == client {
            st.bindings.remove(&addr);
            if st.by_client.get(&client) == Some(&addr) {
                st.by_client.remove(&client);
            }
            match st.prior.remove(&addr) {
                Some(p) => {
                    if let Some(state) = st.pool_of(&p) {
                        st.put_state(addr, state);
                    }
                    if !p.client.is_empty()
                        && p.state != BindingState::Abandoned
                        && !st.by_client.contains_key(&p.client)
                    {
                        st.by_client.insert(p.client, addr);
                    }
                    st.bindings.insert(addr, p);
                }
                None => st.put_state(addr, BindingState::Free),
            }
        }
    }
}

fn fill_client(b: &mut Binding, client: ClientKey, req: &Request<'_>) {
    b.client = client;
    b.client_id = req.client_id().is_some();
    b.htype = req.htype();
    b.hlen = req.hlen();
    let hw = req.chaddr();
    b.chaddr = [0; 16];
    b.chaddr[..hw.len()].copy_from_slice(hw);
}

fn criterion_value<'r>(c: Criterion, req: &'r Request<'_>) -> Option<&'r [u8]> {
    match c {
        Criterion::VendorClass => req.option(opt::VENDOR_CLASS),
        Criterion::UserClass => req.option(opt::USER_CLASS),
        Criterion::ClientId => req.option(opt::CLIENT_ID),
        Criterion::Mac => Some(req.chaddr()),
        Criterion::CircuitId => req.relay_sub_option(crate::wire::relay_sub::CIRCUIT_ID),
        Criterion::RemoteId => req.relay_sub_option(crate::wire::relay_sub::REMOTE_ID),
        Criterion::RelayAgent => req.option(opt::RELAY_AGENT_INFO),
    }
}

/// True if the request matches the policy's conditions.
pub fn policy_matches(p: &Policy, req: &Request<'_>) -> bool {
    if p.conditions.is_empty() {
        return false;
    }
    let eval = |c: &crate::scope::Condition| {
        let hit = criterion_value(c.criterion, req)
            .is_some_and(|v| c.matchers.iter().any(|m| m.matches(v)));
        hit != c.negate
    };
    match p.combine {
        Combine::All => p.conditions.iter().all(eval),
        Combine::Any => p.conditions.iter().any(eval),
    }
}

mod admin_ops;
pub mod fqdn;
mod screen;
mod shard_ops;

pub use screen::Hardening;
pub use shard_ops::{binding_bucket, owner_of, shard_of, Extracted};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod failover_tests;
