//! The immutable view of one relationship that the data plane reads on every request.
//!
//! [`OwnershipSnapshot`] is a small `Copy` value produced by [`super::Peer::snapshot`]. Workers
//! keep their own copy (republished on [`super::Event::SnapshotChanged`]) and ask it, without
//! locks or allocation:
//! - [`Authority::verdict`]: answer this client at all, from which free pool, with which
//!   binding-independent lease cap;
//! - [`OwnershipSnapshot::grant`]: the lease a client may get under the MCLT rule, and the
//!   potential expiration to send the partner;
//! - [`OwnershipSnapshot::may_allocate`]: whether one address may be handed to a new client now;
//! - [`OwnershipSnapshot::judge`] and [`OwnershipSnapshot::sweep`] (in `rules`): what to do
//!   with a partner's binding update, and when a binding expires or settles.
//!
//! Everything that depends on time takes `now`, so a snapshot stays valid while the clock moves
//! (PARTNER-DOWN takeover and the split-brain fence are computed from it, not pushed by timers).

use tandem_dataplane::authority::{AllocFrom, Authority, Verdict};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::hash::BucketMap;
use tandem_dataplane::time::Time;

use super::config::Role;
use super::mclt;
use super::state::{PartnerDownCause, PeerState, Service};

/// Shortest lease worth handing a *new* client when the split-brain fence squeezes leases; below
/// it the own pool counts as closed (capped at MCLT for tiny MCLTs).
pub const MIN_NEW_LEASE_SECS: u32 = 30;

/// What a grant gives a client, from [`OwnershipSnapshot::grant`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Lease time to give the client, seconds.
    pub lease_secs: u32,
    /// The lease end to store (`now + lease_secs`, seconds since the epoch).
    pub expires: u32,
    /// The potential expiration to put in the binding's `sent_expiry` and send the partner.
    pub potential_expiry: u32,
}

/// PARTNER-DOWN facts the snapshot needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartnerDownInfo {
    /// Start time of PARTNER-DOWN (our clock, seconds).
    pub(crate) since: u32,
    /// Why.
    pub(crate) cause: PartnerDownCause,
}

/// An immutable, `Copy` view of one relationship's ownership rules at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OwnershipSnapshot {
    pub(crate) role: Role,
    pub(crate) state: PeerState,
    pub(crate) serve: BucketMap,
    pub(crate) mclt: u32,
    pub(crate) partner_down: Option<PartnerDownInfo>,
    pub(crate) fence_end: Option<u32>,
    pub(crate) own_hold_until: Option<u32>,
    pub(crate) own_hold_until_contact: bool,
    pub(crate) partner_resuming: bool,
    pub(crate) skew: u32,
}

impl OwnershipSnapshot {
    /// This server's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The state the snapshot was taken in.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// The relationship's MCLT in seconds.
    pub fn mclt(&self) -> u32 {
        self.mclt
    }

    /// The hash buckets this server answers in NORMAL.
    pub fn buckets(&self) -> BucketMap {
        self.serve
    }

    /// The skew allowance (seconds) added whenever a time from the partner's clock is compared
    /// with ours.
    pub fn skew_allowance(&self) -> u32 {
        self.skew
    }

    /// The split-brain fence: when automatic partner-down is configured and the partner may be
    /// counting towards it, every lease the partner does not know about must end by this time
    /// (seconds). `None` when no fence applies.
    pub fn fence_end(&self) -> Option<u32> {
        self.fence_end
    }

    /// Until when our own pool stays closed to new clients because the partner, first seen on
    /// this link in PAUSED, SHUTDOWN, RECOVER or RECOVER-WAIT, may have allocated from it in
    /// PARTNER-DOWN before (its state's start + MCLT + skew allowance).
    pub fn own_pool_held_until(&self) -> Option<u32> {
        self.own_hold_until
    }

    /// When the partner's unleased addresses become ours (PARTNER-DOWN start + MCLT, and in
    /// automatic PARTNER-DOWN not before the fence end), if in PARTNER-DOWN.
    pub fn takeover_at(&self) -> Option<Time> {
        self.partner_down.map(|pd| {
            let mut at = pd.since.saturating_add(self.mclt);
            if pd.cause == PartnerDownCause::Automatic {
                at = at.max(self.fence_end.unwrap_or(0));
            }
            Time::from_secs(u64::from(at))
        })
    }

    /// The binding state of the addresses this server allocates in NORMAL (FREE on the
    /// primary, BACKUP on the secondary).
    pub fn own_pool(&self) -> BindingState {
        self.role.pool_state()
    }

    /// The binding state of the partner's addresses.
    pub fn partner_pool(&self) -> BindingState {
        self.role.other().pool_state()
    }

    /// True once PARTNER-DOWN has lasted MCLT: the partner's unleased addresses are usable.
    ///
    /// In automatic PARTNER-DOWN also not before the fence end: by then every lease of ours the
    /// partner does not know about has ended, so from here on such leases are all on the
    /// partner's addresses (which the partner has fenced off for itself). Closed again while
    /// the partner, back in RECOVER-DONE, is about to resume its own pool.
    pub fn partner_pool_open(&self, now: Time) -> bool {
        let t = secs(now);
        let Some(pd) = self.partner_down else {
            return false;
        };
        if self.state != PeerState::PartnerDown
            || self.partner_resuming
            || t < pd.since.saturating_add(self.mclt)
        {
            return false;
        }
        pd.cause != PartnerDownCause::Automatic || self.fence_end.is_none_or(|f| t >= f)
    }

    /// True once PARTNER-DOWN has lasted MCLT and the partner is known to be silent: expired,
    /// released and reset addresses may be reclaimed without the partner's acknowledgement.
    pub fn reclaim_open(&self, now: Time) -> bool {
        self.partner_pool_open(now)
            && self
                .partner_down
                .is_some_and(|pd| pd.cause.partner_silent())
    }

    /// True if this server may hand its own unleased addresses to new clients now.
    pub fn own_pool_open(&self, now: Time) -> bool {
        match self.state.service() {
            Service::Nobody | Service::RenewOnly => return false,
            Service::OwnBuckets | Service::Everyone => {}
        }
        if self.own_hold_until_contact {
            // Back from an absence longer than MCLT and not in contact since: the partner may
            // be in PARTNER-DOWN and leasing our unleased addresses (see
            // `Peer::held_until_contact`).
            return false;
        }
        if self.state == PeerState::ResolutionInterrupted {
            // The conflict resolution broke off before we had the partner's bindings: it may
            // have been in PARTNER-DOWN and leased our unleased addresses (after an automatic
            // one, split brain, both servers swapped pools). Known clients keep their leases;
            // new ones wait for the resolution.
            return false;
        }
        let t = secs(now);
        if self.own_hold_until.is_some_and(|h| t < h) {
            // Back in contact with a partner whose recent history is hidden (see
            // `Self::own_pool_held_until`).
            return false;
        }
        if let Some(pd) = self.partner_down {
            if pd.cause == PartnerDownCause::Automatic && self.partner_pool_open(now) {
                // Split brain: the partner, if alive, takes our pool at the same moment we take
                // its pool. Our own pool is the partner's now.
                return false;
            }
        }
        match self.new_lease_room(t) {
            Some(room) => room >= MIN_NEW_LEASE_SECS.min(self.mclt),
            None => true,
        }
    }

    /// Seconds a lease unknown to the partner may still run, if the fence applies at `t`.
    fn new_lease_room(&self, t: u32) -> Option<u32> {
        let fence_end = self.fence_end?;
        if self.partner_pool_open(Time::from_secs(u64::from(t))) {
            // After the takeover every live lease unknown to the partner is on one of the
            // partner's addresses, which the partner has fenced off for itself.
            return None;
        }
        Some(fence_end.saturating_sub(t))
    }

    /// Which free pool a client without a binding may be given an address from.
    pub fn alloc_from(&self, now: Time) -> AllocFrom {
        match (self.own_pool_open(now), self.partner_pool_open(now)) {
            (true, true) => AllocFrom::Any,
            (true, false) => pool_alloc(self.own_pool()),
            (false, true) => pool_alloc(self.partner_pool()),
            (false, false) => AllocFrom::Nothing,
        }
    }

    /// The lease a client may get now under the MCLT rule, or `None` if it may get none.
    ///
    /// `desired_secs` is the configured lease time; `acked_expiry` the potential expiration the
    /// partner has acknowledged for *this client's* binding on this address (the binding's
    /// `acked_expiry` when the client keeps its address, 0 for a new allocation). Outside NORMAL
    /// the lease is also capped at MCLT (Windows' "temporary lease"), and a lease the partner
    /// does not know about (`acked_expiry == 0`) ends by the split-brain fence. In
    /// RECOVER-DONE (renewals only) the lease never ends after `acked_expiry + M`, since the
    /// partner may be reclaiming expired addresses in PARTNER-DOWN.
    pub fn grant(&self, desired_secs: u32, acked_expiry: u32, now: Time) -> Option<Grant> {
        let t = secs(now);
        let mut g = mclt::allowed_lease(desired_secs, acked_expiry, self.mclt, t);
        if self.state != PeerState::Normal {
            g = g.min(self.mclt);
        }
        if self.state == PeerState::RecoverDone {
            // The partner may be in PARTNER-DOWN treating us as silent: it reclaims an expired
            // address after `A + M`, so no renewal here may reach beyond that.
            g = g.min(acked_expiry.saturating_add(self.mclt).saturating_sub(t));
        }
        if acked_expiry == 0 {
            if let Some(room) = self.new_lease_room(t) {
                g = g.min(room);
            }
        }
        if g == 0 {
            return None;
        }
        let expires = if g == mclt::INFINITE {
            mclt::INFINITE
        } else {
            t.saturating_add(g)
        };
        Some(Grant {
            lease_secs: g,
            expires,
            potential_expiry: mclt::potential_expiry(t, desired_secs, g),
        })
    }

    /// Whether address binding `b` (an unleased pool address, or a former lease) may be given
    /// to a new client now. Pass `Binding::empty(addr, state)` for an address that never had a
    /// binding.
    ///
    /// - Own pool (FREE on the primary, BACKUP on the secondary): while [`Self::own_pool_open`].
    /// - The partner's pool: in PARTNER-DOWN after MCLT, and after `A + M` (+ skew allowance)
    ///   for the last potential expiration `A` known for the address, and never while our own
    ///   transfer of it to the partner is unacknowledged.
    /// - EXPIRED, RELEASED, RESET (and ACTIVE whose end has passed): only in PARTNER-DOWN after
    ///   MCLT with a silent partner, and after `A + M` (+ skew allowance). Otherwise they wait
    ///   for the partner's acknowledgement, which turns them FREE.
    /// - ACTIVE, OFFERED, ABANDONED: never.
    pub fn may_allocate(&self, b: &Binding, now: Time) -> bool {
        let t = secs(now);
        let after_known = |b: &Binding| {
            let known = b.acked_expiry.max(b.sent_expiry);
            known == 0 || t >= known.saturating_add(self.mclt).saturating_add(self.skew)
        };
        match b.state {
            BindingState::Free | BindingState::Backup => {
                if b.state == self.own_pool() {
                    self.own_pool_open(now)
                } else {
                    self.partner_pool_open(now) && !in_transit_from_us(b) && after_known(b)
                }
            }
            BindingState::Expired | BindingState::Released | BindingState::Reset => {
                self.reclaim_open(now) && after_known(b) && t >= binding_end(b, self.skew)
            }
            BindingState::Active => {
                t >= binding_end(b, self.skew) && self.reclaim_open(now) && after_known(b)
            }
            BindingState::Offered | BindingState::Abandoned => false,
        }
    }
}

impl Authority for OwnershipSnapshot {
    /// The verdict for a client in `bucket` (the scope index is not used: one snapshot covers
    /// one relationship, and the daemon picks the snapshot by scope).
    ///
    /// `lease_cap_secs` is the binding-independent cap: MCLT for new clients and for every
    /// client outside NORMAL (shortened by the split-brain fence for new clients). The
    /// per-binding MCLT rule still applies on top; use [`OwnershipSnapshot::grant`].
    fn verdict(&self, _scope_index: usize, bucket: u8, has_binding: bool, now: Time) -> Verdict {
        let t = secs(now);
        let new_cap = || {
            let room = self.new_lease_room(t).unwrap_or(u32::MAX);
            Some(self.mclt.min(room))
        };
        match self.state.service() {
            Service::Nobody => Verdict::SILENT,
            Service::RenewOnly => {
                if has_binding {
                    Verdict {
                        answer: true,
                        alloc: AllocFrom::Nothing,
                        lease_cap_secs: Some(self.mclt),
                    }
                } else {
                    Verdict::SILENT
                }
            }
            Service::OwnBuckets => {
                if !self.serve.contains(bucket) {
                    return Verdict::SILENT;
                }
                Verdict {
                    answer: true,
                    alloc: self.alloc_from(now),
                    lease_cap_secs: if has_binding { None } else { new_cap() },
                }
            }
            Service::Everyone => Verdict {
                answer: true,
                alloc: self.alloc_from(now),
                lease_cap_secs: if has_binding {
                    Some(self.mclt)
                } else {
                    new_cap()
                },
            },
        }
    }
}

/// The end of binding `b` as this server must respect it: its lease end, plus the skew
/// allowance when the time came from the partner's clock.
pub fn binding_end(b: &Binding, skew_allowance: u32) -> u32 {
    if b.from_partner {
        b.expires.saturating_add(skew_allowance)
    } else {
        b.expires
    }
}

/// True if `b` is an update of ours the partner has not acknowledged yet.
pub fn in_transit_from_us(b: &Binding) -> bool {
    !b.from_partner && b.sent_expiry > b.acked_expiry
}

fn pool_alloc(state: BindingState) -> AllocFrom {
    if state == BindingState::Free {
        AllocFrom::Free
    } else {
        AllocFrom::Backup
    }
}

/// `now` in whole seconds as the wire carries them.
pub(crate) fn secs(now: Time) -> u32 {
    u32::try_from(now.secs()).unwrap_or(u32::MAX)
}
