//! Lease bindings: what the server knows about one address.
//!
//! A [`Binding`] is owned by exactly one worker (the owner of its client's RFC 3074 bucket), is
//! journaled by that worker before any reply that depends on it leaves, and is what the failover
//! control plane replicates to the partner (BNDUPD). Times are whole seconds since the Unix epoch,
//! the unit of the failover wire format.

use std::fmt;
use std::net::Ipv4Addr;

/// Longest client identity we keep (option 61 longer than this is hashed down; see [`ClientKey::new`]).
pub const CLIENT_KEY_MAX: usize = 32;

/// A client's identity: option 61 (client identifier) if present, else htype followed by chaddr.
///
/// Stored inline (no allocation). Identifiers longer than [`CLIENT_KEY_MAX`] bytes keep their
/// first 24 bytes followed by an 8-byte FNV-1a digest of the whole identifier, so distinct long
/// identifiers stay distinct in practice.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    len: u8,
    bytes: [u8; CLIENT_KEY_MAX],
}

impl ClientKey {
    /// The empty key (no client).
    pub const EMPTY: ClientKey = ClientKey {
        len: 0,
        bytes: [0; CLIENT_KEY_MAX],
    };

    /// A key from raw identity bytes (option 61 value, or htype + chaddr).
    pub fn new(id: &[u8]) -> ClientKey {
        let mut bytes = [0u8; CLIENT_KEY_MAX];
        if id.len() <= CLIENT_KEY_MAX {
            bytes[..id.len()].copy_from_slice(id);
            ClientKey {
                len: id.len() as u8,
                bytes,
            }
        } else {
            bytes[..24].copy_from_slice(&id[..24]);
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &b in id {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            bytes[24..].copy_from_slice(&h.to_be_bytes());
            ClientKey {
                len: CLIENT_KEY_MAX as u8,
                bytes,
            }
        }
    }

    /// A key from a hardware type and address (the fallback identity of RFC 2131 §4.2).
    pub fn from_hw(htype: u8, chaddr: &[u8]) -> ClientKey {
        let mut buf = [0u8; 17];
        buf[0] = htype;
        let n = chaddr.len().min(16);
        buf[1..1 + n].copy_from_slice(&chaddr[..n]);
        ClientKey::new(&buf[..1 + n])
    }

    /// The identity bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// True for [`ClientKey::EMPTY`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The state of an address, with the failover draft's binding-status meanings.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BindingState {
    /// Free, allocatable by the primary (or by this server outside failover).
    Free = 1,
    /// Leased to a client.
    Active = 2,
    /// The lease ran out; the address is free again once the partner knows (or at once without failover).
    Expired = 3,
    /// The client released it.
    Released = 4,
    /// Abandoned: declined by a client or found in use; quarantined until its probation ends.
    Abandoned = 5,
    /// Reset by an operator.
    Reset = 6,
    /// Free, allocatable by the secondary (failover BACKUP pool).
    Backup = 7,
    /// Offered and held for one client for a short time (never replicated).
    Offered = 8,
}

impl BindingState {
    /// Decode the journal/wire byte.
    pub fn from_u8(v: u8) -> Option<BindingState> {
        Some(match v {
            1 => BindingState::Free,
            2 => BindingState::Active,
            3 => BindingState::Expired,
            4 => BindingState::Released,
            5 => BindingState::Abandoned,
            6 => BindingState::Reset,
            7 => BindingState::Backup,
            8 => BindingState::Offered,
            _ => return None,
        })
    }

    /// True if the address is held by a client (or quarantined) and must not be allocated.
    pub fn is_held(self) -> bool {
        matches!(
            self,
            BindingState::Active | BindingState::Abandoned | BindingState::Offered
        )
    }
}

/// Everything known about one leased (or formerly leased) address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The address.
    pub addr: Ipv4Addr,
    /// State of the address.
    pub state: BindingState,
    /// Client identity (option 61 else htype+chaddr); empty when no client holds it.
    pub client: ClientKey,
    /// Hardware type of the client (1 = Ethernet).
    pub htype: u8,
    /// Hardware address length.
    pub hlen: u8,
    /// Client hardware address (first `hlen` bytes significant).
    pub chaddr: [u8; 16],
    /// Lease start (seconds since the epoch).
    pub start: u32,
    /// Lease end as given to the client (seconds since the epoch); for Abandoned, end of probation.
    pub expires: u32,
    /// Client last transaction time (seconds since the epoch).
    pub cltt: u32,
    /// Potential expiration acknowledged by the failover partner (0 without failover).
    pub acked_expiry: u32,
    /// Potential expiration sent to (or to be sent to) the partner (0 without failover).
    pub sent_expiry: u32,
    /// Set when this binding came from the partner rather than from a client.
    pub from_partner: bool,
    /// `client` is the client's own identifier (option 61), not htype + chaddr. The two can
    /// hold the same bytes (`01` + MAC is common) yet hash to different RFC 3074 buckets.
    pub client_id: bool,
}

impl Binding {
    /// An empty binding for `addr` in `state`.
    pub fn empty(addr: Ipv4Addr, state: BindingState) -> Binding {
        Binding {
            addr,
            state,
            client: ClientKey::EMPTY,
            htype: 0,
            hlen: 0,
            chaddr: [0; 16],
            start: 0,
            expires: 0,
            cltt: 0,
            acked_expiry: 0,
            sent_expiry: 0,
            from_partner: false,
            client_id: false,
        }
    }

    /// The client's hardware address as a slice.
    pub fn hw(&self) -> &[u8] {
        &self.chaddr[..usize::from(self.hlen.min(16))]
    }
}
