//! Binding rules: how a partner's update meets the local binding, how bindings expire and
//! settle, and how a [`Binding`] travels in a BNDUPD.
//!
//! The daemon's workers own the bindings, so these rules are functions of an
//! [`OwnershipSnapshot`] and the bindings involved; the `Peer` never holds a lease table.
//!
//! Conventions on the [`Binding`] fields (the daemon must keep them):
//! - `sent_expiry`: the potential expiration of our latest update (for a pool transfer, any
//!   value above `acked_expiry`, see [`transfer`]).
//! - `acked_expiry`: the potential expiration the partner acknowledged for the *current
//!   client* of the address; 0 for a fresh allocation. For a binding stored from a partner
//!   update it is the potential expiration the partner sent (the partner is bound by it).
//! - `from_partner`: the binding's current content came from the partner (its times are on the
//!   partner's clock).
//!
//! An update of ours is outstanding while `sent_expiry > acked_expiry`, or while the state is
//! EXPIRED, RELEASED or RESET (those turn FREE on acknowledgement): see [`needs_update`].

use tandem_dataplane::binding::{Binding, BindingState, ClientKey};
use tandem_dataplane::engine::REPLICATED_EXPIRY_GRACE_SECS;
use tandem_dataplane::time::Time;

use crate::failover::message::{BindingStatus, BindingUpdate, HardwareAddr, RejectReason};

use super::config::Role;
use super::snapshot::{binding_end, secs, OwnershipSnapshot};

/// What to do with one binding the partner sent (the answer of [`OwnershipSnapshot::judge`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Store this binding (the partner's, or the local one merged with it), journal it, then
    /// acknowledge.
    Accept(Binding),
    /// Acknowledge without changing anything (the update carries nothing the local view lacks).
    Ignore,
    /// Refuse the update with `reason`. If `resend` is set, the local binding wins: queue it
    /// with `Peer::local_update` so the partner learns it.
    Reject {
        /// The reject reason for the BNDACK.
        reason: RejectReason,
        /// The local binding to send back, if any.
        resend: Option<Binding>,
    },
}

/// What a periodic look at one binding decided (the answer of [`OwnershipSnapshot::sweep`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Nothing to do.
    Keep,
    /// The lease ended: store this EXPIRED binding and queue it with `Peer::local_update`.
    Expire(Binding),
    /// Store this binding without telling the partner (it already knows).
    Settle(Binding),
}

impl OwnershipSnapshot {
    /// Decide what to do with `incoming`, a binding the partner sent (as
    /// [`binding_from_update`] built it), given the `local` binding for the same address.
    ///
    /// Rules (draft-12 §7.1.2 and ISC's conflict resolution, digest §1.8), in every state
    /// (RECOVER included: a server recovering with an empty database accepts everything by these
    /// rules anyway, and one recovering with its database keeps its running leases):
    /// - ACTIVE for the client that holds the address here: merged (the later lease end, the
    ///   higher acknowledged potential expiration).
    /// - ACTIVE for another client while the local lease still runs: a conflict; the newer
    ///   client-last-transaction time wins, a tie goes to the primary. A losing update is
    ///   rejected (fatal conflict) and the local binding re-sent.
    /// - A non-active state (EXPIRED, FREE, BACKUP) never overrides a running local lease
    ///   (ACTIVE beats non-active): rejected as outdated, local binding re-sent. RELEASED, RESET
    ///   and ABANDONED from the partner do override a lease of the *same* client (the client may
    ///   have talked only to the partner).
    /// - EXPIRED is stored as EXPIRED and settles to FREE once its end (+ skew allowance) has
    ///   passed here ([`Self::sweep`]); RELEASED and RESET become FREE at once. The partner's
    ///   EXPIRED for a lease it issued (our copy came from it, same client, no later end here)
    ///   is accepted even while our copy still runs on the skew allowance: the partner expires
    ///   its own leases.
    /// - FREE/BACKUP (pool transfers): the partner's pool record older (by
    ///   client-last-transaction time) than our ended lease of the address is outdated. The
    ///   partner claiming one of our own unleased addresses
    ///   is accepted only from the primary; giving an address to us is accepted, except on the
    ///   primary when the secondary's FREE for an address in its pool (BACKUP here) is not
    ///   newer (by potential expiration, the transfer time) than our transfer to it.
    /// - While our own transfer of an unleased address is unacknowledged, any non-active update
    ///   for it is outdated (it crossed our transfer) and is rejected.
    /// - On the primary, EXPIRED for an address in the secondary's pool (BACKUP here) is
    ///   outdated unless its client-last-transaction time is later than our record's: the
    ///   transfer came after that lease ended.
    /// - An ACTIVE update whose lease has ended is ignored unless it conflicts.
    pub fn judge(&self, local: Option<&Binding>, incoming: &Binding, now: Time) -> Judgement {
        let t = secs(now);
        let r = incoming;
        let held = local.filter(|l| held_at(l, t, self.skew));
        if let Some(l) = local {
            let transferring = matches!(l.state, BindingState::Free | BindingState::Backup)
                && super::snapshot::in_transit_from_us(l);
            if transferring && r.state != BindingState::Active {
                // Our pool transfer of this address is on its way: the partner's non-active view
                // predates it and must not move the address back.
                return Judgement::Reject {
                    reason: RejectReason::OutdatedBindingInfo,
                    resend: None,
                };
            }
        }
        // Our BACKUP record (on the primary: the secondary's pool) of an address whose last
        // lease is the one a partner's EXPIRED, RELEASED or RESET ends, or a later one: that
        // news predates our pool transfer (an update the partner queued before it took our
        // transfer, say from an UPDREQALL answer, and sends after). Freeing the address here
        // would put it in our pool while the partner keeps it in its own: both would lease it.
        let stale_free = local.filter(|l| {
            self.role == Role::Primary && l.state == self.partner_pool() && r.cltt <= l.cltt
        });
        let resend = |l: &Binding, reason| Judgement::Reject {
            reason,
            resend: Some(*l),
        };
        match r.state {
            BindingState::Active | BindingState::Offered => match held {
                None => {
                    // An ended lease is news only while its client may still hold it by a
                    // renewal we never heard of (ours, if we lost our database since).
                    if t >= binding_end(r, self.skew)
                        && (r.state == BindingState::Offered
                            || t >= renewable_until(r, self.skew, self.mclt))
                    {
                        Judgement::Ignore
                    } else {
                        Judgement::Accept(*r)
                    }
                }
                Some(l) if l.client == r.client => Judgement::Accept(merge_same_client(l, r)),
                Some(l) => {
                    if t >= binding_end(r, self.skew) {
                        return resend(l, RejectReason::FatalConflict);
                    }
                    let remote_wins = match r.cltt.cmp(&l.cltt) {
                        std::cmp::Ordering::Greater => true,
                        std::cmp::Ordering::Less => false,
                        std::cmp::Ordering::Equal => self.role == Role::Secondary,
                    };
                    if remote_wins {
                        Judgement::Accept(*r)
                    } else {
                        resend(l, RejectReason::FatalConflict)
                    }
                }
            },
            BindingState::Expired => match held {
                // The partner's own lease of the same client, ended on the partner's clock: it
                // issued the lease, so its EXPIRED is the news (stored EXPIRED, free here only
                // after the end plus the skew allowance, see `sweep`).
                Some(l) if l.from_partner && l.client == r.client && r.expires >= l.expires => {
                    Judgement::Accept(*r)
                }
                Some(l) => resend(l, RejectReason::OutdatedBindingInfo),
                None => match stale_free {
                    Some(l) => resend(l, RejectReason::OutdatedBindingInfo),
                    None => Judgement::Accept(*r),
                },
            },
            BindingState::Released | BindingState::Reset | BindingState::Abandoned => match held {
                Some(l) if l.client != r.client || !not_older(r, l, self.skew) => {
                    resend(l, RejectReason::OutdatedBindingInfo)
                }
                None if r.state != BindingState::Abandoned => match stale_free {
                    Some(l) => resend(l, RejectReason::OutdatedBindingInfo),
                    None => Judgement::Accept(settle_incoming(r)),
                },
                _ => Judgement::Accept(settle_incoming(r)),
            },
            BindingState::Free | BindingState::Backup => {
                if let Some(l) = held {
                    return resend(l, RejectReason::OutdatedBindingInfo);
                }
                if let Some(l) = local {
                    let pooled = matches!(l.state, BindingState::Free | BindingState::Backup);
                    if !pooled && r.cltt < l.cltt {
                        // The partner's pool record predates the lease we know ended since (it
                        // sends what it had before that lease, say in a full update after a
                        // restart, or its answer to an UPDREQALL crossing our RELEASED):
                        // accepting would put the address in a pool the partner has left. On
                        // the secondary too: the primary, taking our newer end, frees the
                        // address into its own pool, so its older BACKUP must not also put it
                        // in ours (sim seed 10798: both leased it).
                        return resend(l, RejectReason::OutdatedBindingInfo);
                    }
                    let claim = r.state == self.partner_pool() && l.state == self.own_pool();
                    if claim && self.role == Role::Primary {
                        return resend(l, RejectReason::OutdatedBindingInfo);
                    }
                    // The secondary handing back an address we gave its pool: a return it
                    // decided after our transfer carries a later potential expiration (its
                    // transfer time) than ours. One that does not is its older view (a record
                    // from before our transfer, or a blank one after it lost its database, sent
                    // in a full update while ours crossed it): the primary's view wins, or
                    // both pools would hold the address.
                    let stale_return = self.role == Role::Primary
                        && r.state == self.own_pool()
                        && l.state == self.partner_pool()
                        && r.acked_expiry <= l.sent_expiry;
                    if stale_return {
                        return resend(l, RejectReason::OutdatedBindingInfo);
                    }
                }
                Judgement::Accept(*r)
            }
        }
    }

    /// Look at binding `b` at `now`:
    /// - our ACTIVE lease that ended more than the late-renewal grace ago (one from the partner:
    ///   after the skew allowance) becomes EXPIRED and must be sent to the partner;
    /// - an EXPIRED binding that came from the partner becomes FREE once its end (+ skew
    ///   allowance) has passed;
    /// - a RELEASED or RESET binding from the partner becomes FREE.
    pub fn sweep(&self, b: &Binding, now: Time) -> Sweep {
        let t = secs(now);
        match b.state {
            BindingState::Active if t >= sweep_end(b, self.skew, self.mclt) => {
                let mut e = *b;
                e.state = BindingState::Expired;
                e.from_partner = false;
                // Keep sent/acked as they are: EXPIRED is outstanding by state.
                Sweep::Expire(e)
            }
            BindingState::Expired if b.from_partner && t >= binding_end(b, self.skew) => {
                Sweep::Settle(freed(b))
            }
            BindingState::Released | BindingState::Reset if b.from_partner => {
                Sweep::Settle(freed(b))
            }
            _ => Sweep::Keep,
        }
    }
}

/// When the sweep expires an ACTIVE binding: the partner's after the skew allowance, and not
/// before [`renewable_until`] (the partner may have renewed the client up to there in an
/// update we never received, and if it then lost its database, nobody else knows); ours after
/// the late-renewal grace of the data plane (the engine keeps our ended lease the client's that
/// long, see [`REPLICATED_EXPIRY_GRACE_SECS`]).
fn sweep_end(b: &Binding, skew: u32, mclt: u32) -> u32 {
    if b.from_partner {
        binding_end(b, skew).max(renewable_until(b, skew, mclt))
    } else {
        b.expires.saturating_add(REPLICATED_EXPIRY_GRACE_SECS)
    }
}

/// Until when the partner may have renewed its lease `b` (a binding from the partner: its
/// `acked_expiry` is the potential expiration we acknowledged) without our knowing: the MCLT
/// rule caps its renewals at that potential expiration plus MCLT (plus the skew allowance, its
/// clock).
fn renewable_until(b: &Binding, skew: u32, mclt: u32) -> u32 {
    b.acked_expiry.saturating_add(mclt).saturating_add(skew)
}

/// True if the partner's `r` is at least as recent as the local `l` (client-last-transaction
/// times; when `l`'s time is on our clock, `r` must beat it by the skew allowance).
fn not_older(r: &Binding, l: &Binding, skew: u32) -> bool {
    if l.from_partner {
        r.cltt >= l.cltt
    } else {
        r.cltt >= l.cltt.saturating_add(skew)
    }
}

/// True if `b` holds its address at `t` (a running lease, an offer, or a quarantine).
fn held_at(b: &Binding, t: u32, skew: u32) -> bool {
    match b.state {
        BindingState::Active | BindingState::Offered | BindingState::Abandoned => {
            t < binding_end(b, skew)
        }
        _ => false,
    }
}

fn merge_same_client(l: &Binding, r: &Binding) -> Binding {
    let acked = l.acked_expiry.max(r.acked_expiry);
    if r.expires >= l.expires {
        let mut m = *r;
        m.acked_expiry = acked;
        m.sent_expiry = acked;
        m.cltt = l.cltt.max(r.cltt);
        m
    } else {
        let mut m = *l;
        m.acked_expiry = acked;
        m.cltt = l.cltt.max(r.cltt);
        m
    }
}

/// RELEASED and RESET from the partner are free at once; the rest is stored as sent.
fn settle_incoming(r: &Binding) -> Binding {
    match r.state {
        BindingState::Released | BindingState::Reset => freed(r),
        _ => *r,
    }
}

/// The binding turned FREE (the primary's pool), keeping its history fields.
fn freed(b: &Binding) -> Binding {
    let mut f = *b;
    f.state = BindingState::Free;
    f.sent_expiry = f.acked_expiry;
    f
}

/// The local binding after the partner acknowledged `acked` (an update of ours, from
/// [`super::Event::UpdateAcked`]), or `None` if `local` changed in a way the acknowledgement no
/// longer concerns.
///
/// The same update (state, client, potential expiration): `acked_expiry` becomes the sent
/// potential expiration, and EXPIRED, RELEASED and RESET become FREE. An ACTIVE binding of the
/// same client renewed since: only `acked_expiry` is raised.
pub fn settle_acked(local: &Binding, acked: &Binding) -> Option<Binding> {
    if local.addr != acked.addr || local.from_partner {
        return None;
    }
    if local.state == acked.state
        && local.client == acked.client
        && local.sent_expiry == acked.sent_expiry
    {
        let mut s = *local;
        s.acked_expiry = s.acked_expiry.max(acked.sent_expiry);
        if matches!(
            s.state,
            BindingState::Expired | BindingState::Released | BindingState::Reset
        ) {
            s.state = BindingState::Free;
        }
        return Some(s);
    }
    if local.state == BindingState::Active
        && acked.state == BindingState::Active
        && local.client == acked.client
        && acked.sent_expiry > local.acked_expiry
    {
        let mut s = *local;
        s.acked_expiry = acked.sent_expiry;
        return Some(s);
    }
    None
}

/// True if `b` carries a change of ours the partner has not acknowledged: queue it again with
/// `Peer::local_update` after a restart.
pub fn needs_update(b: &Binding) -> bool {
    !b.from_partner
        && (b.sent_expiry > b.acked_expiry
            || matches!(
                b.state,
                BindingState::Expired | BindingState::Released | BindingState::Reset
            ))
}

/// Binding `b` (one of our unleased addresses) handed to the partner's pool `to`, marked
/// outstanding until the partner acknowledges it. Store it, then queue it with
/// `Peer::local_update`.
pub fn transfer(b: &Binding, to: BindingState, now: Time) -> Binding {
    let mut x = *b;
    x.state = to;
    x.from_partner = false;
    x.sent_expiry = secs(now).max(x.acked_expiry.saturating_add(1));
    x
}

/// A binding update for the wire from a local binding.
///
/// The client identifier is sent only when the binding's client key is not simply the
/// hardware type followed by the hardware address.
pub fn update_from_binding(b: &Binding) -> Option<BindingUpdate> {
    let status = match b.state {
        BindingState::Free => BindingStatus::Free,
        BindingState::Active => BindingStatus::Active,
        BindingState::Expired => BindingStatus::Expired,
        BindingState::Released => BindingStatus::Released,
        BindingState::Abandoned => BindingStatus::Abandoned,
        BindingState::Reset => BindingStatus::Reset,
        BindingState::Backup => BindingStatus::Backup,
        BindingState::Offered => return None,
    };
    let mut u = BindingUpdate::new(b.addr, status);
    let hw = b.hw();
    if !b.client.is_empty() {
        let hw_key = ClientKey::from_hw(b.htype, hw);
        if b.client_id || b.hlen == 0 || hw_key != b.client {
            u.client_id = Some(b.client.as_bytes().to_vec());
        }
    }
    if b.hlen > 0 {
        u.chaddr = Some(HardwareAddr {
            htype: b.htype,
            addr: hw.to_vec(),
        });
    }
    u.lease_expiration = Some(b.expires);
    u.potential_expiration = Some(b.sent_expiry);
    u.start_time_of_state = Some(b.start);
    u.cltt = Some(b.cltt);
    Some(u)
}

/// A binding (marked `from_partner`) from a partner's update, or the reason to refuse it.
pub fn binding_from_update(u: &BindingUpdate) -> Result<Binding, RejectReason> {
    let state = match u.binding_status {
        BindingStatus::Free => BindingState::Free,
        BindingStatus::Active => BindingState::Active,
        BindingStatus::Expired => BindingState::Expired,
        BindingStatus::Released => BindingState::Released,
        BindingStatus::Abandoned => BindingState::Abandoned,
        BindingStatus::Reset => BindingState::Reset,
        BindingStatus::Backup => BindingState::Backup,
        BindingStatus::Other(_) => return Err(RejectReason::MissingBindingInfo),
    };
    if state == BindingState::Active
        && (u.lease_expiration.is_none() || (u.client_id.is_none() && u.chaddr.is_none()))
    {
        return Err(RejectReason::MissingBindingInfo);
    }
    let mut b = Binding::empty(u.assigned_ip, state);
    if let Some(hw) = &u.chaddr {
        let n = hw.addr.len().min(16);
        b.htype = hw.htype;
        b.hlen = n as u8;
        b.chaddr[..n].copy_from_slice(&hw.addr[..n]);
    }
    b.client_id = u.client_id.is_some();
    b.client = match (&u.client_id, &u.chaddr) {
        (Some(id), _) => ClientKey::new(id),
        (None, Some(hw)) => ClientKey::from_hw(hw.htype, &hw.addr),
        (None, None) => ClientKey::EMPTY,
    };
    b.expires = u.lease_expiration.unwrap_or(0);
    b.start = u.start_time_of_state.unwrap_or(0);
    b.cltt = u.cltt.unwrap_or(0);
    let potential = u.potential_expiration.unwrap_or(b.expires);
    b.acked_expiry = potential;
    b.sent_expiry = potential;
    b.from_partner = true;
    Ok(b)
}
