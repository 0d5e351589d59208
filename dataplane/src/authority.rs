//! Who answers which client: the interface between the engine and failover.
//!
//! Before it answers, the engine asks an [`Authority`] for a [`Verdict`] on the client's RFC 3074
//! bucket. Without failover, [`Standalone`] answers everything from every pool with no cap. The
//! failover control plane implements the trait over an immutable snapshot of each relationship's
//! state, so the call is allocation-free and lock-free.

use crate::binding::Binding;
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

/// The lease a client may be given, from [`Authority::grant`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Lease time to give the client, seconds.
    pub lease_secs: u32,
    /// The potential expiration to record in the binding's `sent_expiry` (and send the
    /// failover partner); 0 without failover.
    pub potential_expiry: u32,
}

/// Decides, per request, whether and how this server answers.
///
/// Only [`Authority::verdict`] is required; the other methods default to a server without a
/// partner (every lease as configured, every unleased address usable, released and expired
/// addresses back in the pool at once).
pub trait Authority {
    /// The verdict for a client in RFC 3074 `bucket` of the scope `scope_index`, at `now`.
    /// `has_binding` tells whether this server already holds a binding for the client.
    fn verdict(&self, scope_index: usize, bucket: u8, has_binding: bool, now: Time) -> Verdict;

    /// The lease a client may get in scope `scope_index` (the MCLT rule): `desired_secs` is the
    /// configured lease time, `acked_expiry` the potential expiration the partner acknowledged
    /// for this client's binding on the address (0 for a new allocation). `None`: no lease may
    /// be given now (the client is NAKed or ignored).
    fn grant(
        &self,
        _scope_index: usize,
        desired_secs: u32,
        _acked_expiry: u32,
        _now: Time,
    ) -> Option<LeaseGrant> {
        Some(LeaseGrant {
            lease_secs: desired_secs,
            potential_expiry: 0,
        })
    }

    /// Whether the address of binding `b` (unleased, or a former lease) may go to a new client
    /// now. For an address that never had a binding, `b` is `Binding::empty(addr, Free)`.
    fn may_allocate(&self, _scope_index: usize, _b: &Binding, _now: Time) -> bool {
        true
    }

    /// True if scope `scope_index` is shared with a failover partner: an expired, released or
    /// declined-then-freed address returns to the pool only once the partner acknowledged it,
    /// and the free addresses are split into FREE (primary) and BACKUP (secondary) pools.
    fn replicated(&self, _scope_index: usize) -> bool {
        false
    }

    /// Pick up changes published by the control plane (called by the worker between batches;
    /// must not block).
    fn refresh(&mut self) {}

    /// Take a new layout (which relationship decides for which scope), delivered with the
    /// [`crate::worker::Control::Reload`] that renumbers the scopes, so that the engine and the
    /// authority change together. The payload's type is the implementation's own; others are
    /// ignored.
    fn reconfigure(&mut self, _layout: Box<dyn std::any::Any + Send>) {}
}

/// A server with no partner: answers everyone.
#[derive(Copy, Clone, Debug, Default)]
pub struct Standalone;

impl Authority for Standalone {
    fn verdict(&self, _scope: usize, _bucket: u8, _has_binding: bool, _now: Time) -> Verdict {
        Verdict::SERVE_ALL
    }
}
