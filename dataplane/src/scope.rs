//! Scopes, ranges, reservations, options and policies: the validated configuration the engine
//! serves from.
//!
//! These are plain validated types. Parsing and validation with line-and-key error messages
//! belong to the control plane's `config` module, which builds a [`ServerSettings`]; the engine
//! never sees TOML.

use std::net::Ipv4Addr;

/// An inclusive range of IPv4 addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrRange {
    /// First address of the range.
    pub start: Ipv4Addr,
    /// Last address of the range (inclusive).
    pub end: Ipv4Addr,
}

impl AddrRange {
    /// A range from `start` to `end` inclusive.
    pub fn new(start: Ipv4Addr, end: Ipv4Addr) -> AddrRange {
        AddrRange { start, end }
    }

    /// True if `addr` is inside the range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        addr >= self.start && addr <= self.end
    }

    /// Number of addresses in the range (0 if `end < start`).
    pub fn len(&self) -> u64 {
        let (s, e) = (u32::from(self.start), u32::from(self.end));
        if e < s {
            0
        } else {
            u64::from(e - s) + 1
        }
    }

    /// True if the range holds no address.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the two ranges share an address.
    pub fn overlaps(&self, other: &AddrRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// An IPv4 subnet: network address and prefix length.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    /// Network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Subnet {
    /// The subnet mask.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_u32())
    }

    fn mask_u32(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        }
    }

    /// True if `addr` is inside the subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask_u32() == u32::from(self.network) & self.mask_u32()
    }

    /// The broadcast address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask_u32())
    }
}

/// DHCP options to send, as (code, encoded value) pairs kept sorted by code, one entry per code.
///
/// Values are already in wire form (RFC 2132 encodings); values longer than 255 bytes are split
/// into several instances on the wire (RFC 3396) by the encoder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionSet {
    entries: Vec<(u8, Vec<u8>)>,
}

impl OptionSet {
    /// An empty set.
    pub fn new() -> OptionSet {
        OptionSet::default()
    }

    /// Set (or replace) option `code` to `value`.
    pub fn set(&mut self, code: u8, value: Vec<u8>) {
        match self.entries.binary_search_by_key(&code, |e| e.0) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (code, value)),
        }
    }

    /// The value of option `code`, if set.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.entries
            .binary_search_by_key(&code, |e| e.0)
            .ok()
            .map(|i| self.entries[i].1.as_slice())
    }

    /// Remove option `code`.
    pub fn remove(&mut self, code: u8) {
        if let Ok(i) = self.entries.binary_search_by_key(&code, |e| e.0) {
            self.entries.remove(i);
        }
    }

    /// Iterate over (code, value) in code order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.entries.iter().map(|(c, v)| (*c, v.as_slice()))
    }

    /// Number of options set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no option is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Copy every option of `other` into `self`, replacing options `self` already has.
    pub fn overlay(&mut self, other: &OptionSet) {
        for (c, v) in other.iter() {
            self.set(c, v.to_vec());
        }
    }
}

/// How a reservation recognises its client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReservationKey {
    /// By Ethernet hardware address (chaddr with htype 1, hlen 6).
    Mac([u8; 6]),
    /// By client identifier (option 61 value, exact bytes).
    ClientId(Vec<u8>),
}

/// A fixed address for one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Who the reservation is for.
    pub key: ReservationKey,
    /// The reserved address (inside the scope's subnet; may be outside its ranges).
    pub addr: Ipv4Addr,
    /// Host name to send (option 12), if any.
    pub hostname: Option<String>,
    /// Options for this client only, layered over scope and policy options.
    pub options: OptionSet,
}

/// How a policy condition compares a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// The whole value equals these bytes.
    Exact(Vec<u8>),
    /// The value starts with these bytes (Windows' trailing `*` wildcard).
    Prefix(Vec<u8>),
}

impl Matcher {
    /// True if `value` matches.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            Matcher::Exact(b) => value == b.as_slice(),
            Matcher::Prefix(b) => value.starts_with(b),
        }
    }
}

/// Which part of the request a condition looks at.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// Option 60, vendor class identifier.
    VendorClass,
    /// Option 77, user class (the whole option value).
    UserClass,
    /// Option 61, client identifier.
    ClientId,
    /// chaddr (hlen bytes).
    Mac,
    /// Option 82 sub-option 1, agent circuit id.
    CircuitId,
    /// Option 82 sub-option 2, agent remote id.
    RemoteId,
    /// Option 82, the whole relay agent information value.
    RelayAgent,
}

/// One condition of a policy: criterion, matcher, and whether the match is negated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// What to look at.
    pub criterion: Criterion,
    /// Any one of these matchers matching makes the condition true (Windows' value list).
    pub matchers: Vec<Matcher>,
    /// True for "not equals": the condition holds when no matcher matches.
    pub negate: bool,
}

/// How a policy combines its conditions.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Combine {
    /// Every condition must hold.
    #[default]
    All,
    /// Any one condition suffices.
    Any,
}

/// Policy-based assignment, as in Windows DHCP: the first enabled policy (in processing order)
/// whose conditions hold decides the client's range, options and lease time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Name, for logs and the admin API.
    pub name: String,
    /// Processing order: lower first.
    pub order: u32,
    /// The conditions.
    pub conditions: Vec<Condition>,
    /// How the conditions combine.
    pub combine: Combine,
    /// Address ranges inside the scope the client is restricted to; empty = the scope's ranges.
    pub ranges: Vec<AddrRange>,
    /// Options for matching clients, layered over the scope's.
    pub options: OptionSet,
    /// Lease time for matching clients (seconds), if it differs from the scope's.
    pub lease_time: Option<u32>,
}

/// One scope: a subnet the server hands addresses out in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Operator-chosen name.
    pub name: String,
    /// The subnet.
    pub subnet: Subnet,
    /// Allocatable ranges (non-overlapping, inside the subnet).
    pub ranges: Vec<AddrRange>,
    /// Addresses inside the ranges that are never handed out.
    pub exclusions: Vec<AddrRange>,
    /// Fixed addresses for known clients.
    pub reservations: Vec<Reservation>,
    /// Default lease time in seconds.
    pub lease_time: u32,
    /// Renewal time T1 in seconds (default: half the lease time).
    pub renew_time: Option<u32>,
    /// Rebinding time T2 in seconds (default: 7/8 of the lease time).
    pub rebind_time: Option<u32>,
    /// Options of this scope, layered over the global ones.
    pub options: OptionSet,
    /// Policies of this scope, sorted by `order`.
    pub policies: Vec<Policy>,
    /// Answer requests for unknown or wrong addresses with NAK (RFC 2131 "authoritative").
    pub authoritative: bool,
    /// Dynamic DNS for this scope's clients, if configured (`[[ddns]]`).
    pub ddns: Option<ScopeDdns>,
}

/// The engine's part of dynamic DNS for one scope: which name a client gets and what the server
/// tells it (RFC 4702). The DNS updates themselves run in the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeDdns {
    /// Domain appended to a host name (option 12) and to a partial name in option 81: lower
    /// case, no trailing dot, at most 200 characters.
    pub domain: String,
    /// What the server does when a client asks to update its own A record (option 81 flag S
    /// clear) or asks for no update by the server (flag N).
    pub client_updates: ClientUpdates,
    /// Register clients that send only a host name (option 12), not option 81.
    pub use_host_name: bool,
}

/// Whether a client's own choice in option 81 stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ClientUpdates {
    /// A client may update its own A record (the server then updates only the PTR), or ask the
    /// server to update nothing.
    Honor,
    /// The server updates A and PTR whatever the client asks, and says so (flag O).
    #[default]
    Override,
}

impl Scope {
    /// True if `addr` is allocatable: inside a range and not excluded.
    pub fn in_pool(&self, addr: Ipv4Addr) -> bool {
        self.ranges.iter().any(|r| r.contains(addr))
            && !self.exclusions.iter().any(|r| r.contains(addr))
    }

    /// Find the reservation for a client, by client id first, then by MAC.
    pub fn reservation_for(
        &self,
        client_id: Option<&[u8]>,
        mac: Option<[u8; 6]>,
    ) -> Option<&Reservation> {
        if let Some(id) = client_id {
            if let Some(r) = self
                .reservations
                .iter()
                .find(|r| matches!(&r.key, ReservationKey::ClientId(k) if k.as_slice() == id))
            {
                return Some(r);
            }
        }
        let mac = mac?;
        self.reservations
            .iter()
            .find(|r| matches!(&r.key, ReservationKey::Mac(m) if *m == mac))
    }

    /// The reservation holding `addr`, if any.
    pub fn reservation_of(&self, addr: Ipv4Addr) -> Option<&Reservation> {
        self.reservations.iter().find(|r| r.addr == addr)
    }
}

/// Durability of the lease journal.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// One `fdatasync` per batch before the batch's replies are sent (default).
    #[default]
    Sync,
    /// Journal writes reach the page cache only; a power loss can lose recent leases.
    Relaxed,
}

/// Server-wide settings the engine serves from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// Server identifier (option 54) and source address of replies.
    pub server_id: Ipv4Addr,
    /// Options for every scope (overridden by scope, policy and reservation options).
    pub global_options: OptionSet,
    /// The scopes.
    pub scopes: Vec<Scope>,
    /// How long an OFFERed address stays held for its client, in seconds.
    pub offer_hold_secs: u32,
    /// How long a declined address stays quarantined, in seconds.
    pub decline_probation_secs: u32,
    /// Window within which the same request (client, xid, type) through another relay is a duplicate, in ms.
    pub duplicate_window_ms: u64,
}
