//! Who answers which client: the interface between the engine and failover.
//!
//! Before it answers, the engine asks an [`Authority`] for a [`Verdict`] on the client's RFC 3074
//! bucket. Without failover, [`Standalone`] answers everything from every pool with no cap. The
//! failover control plane implements the trait over an immutable snapshot of each relationship's
//! state, so the call is allocation-free and lock-free.

use crate::time::Time;

/// Which free addresses the server may hand out to a new client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AllocFrom {
    /// None: renewals of existing bindings only.
    Nothing,
    /// Addresses in FREE state (the primary's share).
    Free,
    /// Addresses in BACKUP state (the secondary's share, or the hot-standby reserve).
    Backup,
    /// Any free address (no failover, or PARTNER-DOWN after MCLT).
    Any,
}

/// The answer to "may I serve this client, and how".
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Answer this client at all (false: stay silent, the partner answers).
    pub answer: bool,
    /// Which free addresses may be allocated to a client without a binding.
    pub alloc: AllocFrom,
    /// Longest lease the client may be given from `now`, in seconds (MCLT rule); `None`: no cap.
    pub lease_cap_secs: Option<u32>,
}

impl Verdict {
    /// Serve everyone from every pool with no cap.
    pub const SERVE_ALL: Verdict = Verdict {
        answer: true,
        alloc: AllocFrom::Any,
        lease_cap_secs: None,
    };
    /// Serve nobody.
    pub const SILENT: Verdict = Verdict {
        answer: false,
        alloc: AllocFrom::Nothing,
        lease_cap_secs: None,
    };
}

/// Decides, per request, whether and how this server answers.
pub trait Authority {
    /// The verdict for a client in RFC 3074 `bucket` of the scope `scope_index`, at `now`.
    /// `has_binding` tells whether this server already holds a binding for the client.
    fn verdict(&self, scope_index: usize, bucket: u8, has_binding: bool, now: Time) -> Verdict;
}

/// A server with no partner: answers everyone.
#[derive(Copy, Clone, Debug, Default)]
pub struct Standalone;

impl Authority for Standalone {
    fn verdict(&self, _scope: usize, _bucket: u8, _has_binding: bool, _now: Time) -> Verdict {
        Verdict::SERVE_ALL
    }
}
