//! The per-relationship failover state machine ([`Peer`]), sans-IO.
//!
//! One `Peer` drives one failover relationship. It owns no socket, no clock and no lease table:
//! - the daemon feeds it the link (`connected`, `disconnected`), typed messages
//!   (`handle_message`), the time (`handle_timeout`, and `now` on every call), local binding
//!   changes (`local_update`), and its verdicts on the partner's updates (`ack_partner_update`);
//! - it hands back messages (`poll_transmit`), the next deadline (`poll_timeout`), and events
//!   (`poll_event`): state changes, partner bindings to judge and journal, acknowledgements,
//!   pool transfers, "send every binding", clock skew, "close the link";
//! - the data plane reads an immutable [`OwnershipSnapshot`] (`snapshot`), which implements
//!   [`tandem_dataplane::authority::Authority`] and carries the MCLT and ownership rules.
//!
//! Durable facts go through a [`StateStore`] before a change takes effect.
//!
//! # What the daemon does with it
//!
//! - After every call: send everything [`Peer::poll_transmit`] returns (encoded with
//!   [`Peer::dialect`]), then handle every [`Peer::poll_event`]; on [`Event::CloseLink`] close
//!   the connection after those sends. Call [`Peer::handle_timeout`] at [`Peer::poll_timeout`].
//! - At start: [`Peer::local_update`] every binding for which [`needs_update`] is true.
//! - Engine: answer per [`OwnershipSnapshot`]'s `verdict`, allocate only addresses for which
//!   `may_allocate` holds, size leases with `grant` (store its `potential_expiry` in
//!   `sent_expiry`), then `local_update` the binding. Periodically apply
//!   [`OwnershipSnapshot::sweep`] to the bindings.
//! - Binding fields: `sent_expiry` is the potential expiration of our latest update (for a pool
//!   transfer any value above `acked_expiry`, as [`transfer`] sets it); `acked_expiry` is the one
//!   the partner acknowledged for the *current client* (0 for a new allocation; for a binding
//!   stored from the partner, the potential expiration it sent); `from_partner` says the content
//!   (and its times, on the partner's clock) came from the partner.
//! - [`Event::PartnerBinding`]: [`OwnershipSnapshot::judge`] against the local binding, journal
//!   the result, then [`Peer::ack_partner_update`] (and `local_update` a binding to re-send).
//! - [`Event::UpdateAcked`]: [`settle_acked`]. [`Event::TransferAddresses`]: [`transfer`] that
//!   many unleased own addresses and `local_update` each. Keep [`Peer::set_pool_counts`] current.
//!
//! # Protocol summary
//!
//! States and transitions follow draft-12 as ISC dhcpd 4.4 implements it (digest §2.2, table in
//! [`next_state`]), with Windows/draft service semantics: CONFLICT-DONE serves from the own
//! pool, RECOVER-DONE renews existing clients only. Where the
//! deterministic simulation (`controlplane/tests/failover_sim.rs`) found an address held by two
//! clients, the machine was made stricter than ISC/Windows; each rule names the case:
//! - RECOVER stays in RECOVER when the partner announces SHUTDOWN (ISC moves to PARTNER-DOWN
//!   without a database), and asks a NORMAL or COMMUNICATIONS-INTERRUPTED partner for every
//!   binding instead of starting a conflict resolution.
//! - Illegal sequences (NORMAL seeing POTENTIAL-CONFLICT and the like) lead to
//!   POTENTIAL-CONFLICT rather than SHUTDOWN: a resolution is always safe and converges.
//! - The RECOVER-WAIT skip of a first bring-up happens only for a [`Start::Fresh`] server.
//! - RECOVER-DONE renews for at most `A + MCLT` (no "MCLT from now"): the partner may be in
//!   PARTNER-DOWN treating us as silent and reclaims expired addresses after `A + MCLT`.
//! - An EXPIRED/RELEASED/RESET update acknowledged by a partner in RECOVER or RECOVER-WAIT is not
//!   reported (such a partner cannot vouch for leases it forgot) and is sent again later.
//! - PARTNER-DOWN → NORMAL (partner in RECOVER-DONE) waits until the partner acknowledged every
//!   update queued so far, and stops using the partner's pool meanwhile, so the partner never
//!   resumes its pool without knowing our leases on it.
//! - A PARTNER-DOWN that assumed a silent partner (administrative, or caused by the partner's
//!   SHUTDOWN/RECOVER) is not restored after PAUSED, SHUTDOWN or a restart if the partner was seen
//!   serving since; without contact that is COMMUNICATIONS-INTERRUPTED.
//! - RESOLUTION-INTERRUPTED answers every client with a binding but allocates nothing (Windows
//!   serves from the own pool): the resolution broke off before we had the partner's bindings,
//!   and the partner, in PARTNER-DOWN before, may have leased our unleased addresses.
//! - A partner's lease stays ACTIVE here, and its ended ACTIVE update is stored rather than
//!   ignored, until the potential expiration we acknowledged plus MCLT (+ skew allowance): the
//!   partner may have renewed the client up to there in an update we never got, then lost its
//!   database.
//! - Between two non-active views the primary's wins: the secondary's EXPIRED, RELEASED or RESET
//!   for an address in its pool (BACKUP on the primary) is outdated unless it ends a later lease
//!   than our record's; its FREE for one is outdated unless it is newer (potential expiration)
//!   than our transfer; its FREE/BACKUP older (CLTT) than an ended lease we know is outdated.
//! - PAUSED, SHUTDOWN and RECOVER(-WAIT) hide whether the partner was in PARTNER-DOWN before.
//!   If it could have been (its last known state, our own downtime, or automatic partner-down
//!   with a long silence), our own pool stays closed to new clients until that state's start +
//!   MCLT ([`OwnershipSnapshot::own_pool_held_until`]).
//!
//! # Automatic partner-down and the split-brain fence
//!
//! With a state switchover interval `S`, Windows moves to PARTNER-DOWN after `S` out of contact
//! and takes the whole pool after MCLT. In a partition both servers do, and both allocate the
//! same addresses. Tandem keeps automatic partner-down safe in a partition:
//! - each server assumes the partner may reach PARTNER-DOWN `S` after it was last heard (or
//!   after the COMMUNICATIONS-INTERRUPTED start it reported) and take our unleased addresses
//!   MCLT later; so every lease the partner does not know about ends by that moment (minus the
//!   skew allowance): the *fence* ([`OwnershipSnapshot::fence_end`]);
//! - in automatic PARTNER-DOWN, after MCLT and the fence, a server takes the partner's unleased
//!   addresses and stops using its own (the partner, if alive, does the mirror image), and never
//!   reclaims expired or released addresses without an acknowledgement;
//! - only an administrative PARTNER-DOWN (or a partner that announced SHUTDOWN or RECOVER) gives
//!   the whole pool, including expired and released addresses, after MCLT.
//!
//! The interval must be the same on both servers. An ISC partner does not fence itself, so
//! automatic partner-down is only split-brain safe between Tandem servers.
//!
//! # Clocks
//!
//! Times from the partner's clock (its lease ends, potential expirations) are compared with ours
//! plus the skew allowance (the configured limit + 1 s). CONNECT/CONNECTACK beyond the limit are
//! refused with reason 4; every later message is checked too ([`Event::ClockSkew`], BNDUPDs
//! refused with reason 4 while it lasts, as Windows does).

mod config;
pub mod mclt;
mod queue;
mod rules;
mod snapshot;
mod state;
mod store;

use std::collections::VecDeque;

use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::hash::BucketMap;
use tandem_dataplane::time::Time;

use super::codec::{binding_update_len, Dialect, DIGEST_OPTION_LEN, HEADER_LEN, MAX_MESSAGE_LEN};
use super::message::{
    BindingAck, BndAck, BndUpd, Body, Connect, ConnectAck, Disconnect, Message, PoolResp,
    RejectReason, ServerFlags, State as StateBody, TlsReply, TlsRequest, PROTOCOL_VERSION,
};

pub use config::{ConfigError, Mode, PeerConfig, Role};
pub use rules::{
    binding_from_update, needs_update, settle_acked, transfer, update_from_binding, Judgement,
    Sweep,
};
pub use snapshot::{binding_end, in_transit_from_us, Grant, OwnershipSnapshot, MIN_NEW_LEASE_SECS};
pub use state::{PartnerDownCause, PeerState, Service};
pub use store::{MemoryStore, PersistedState, Start, StateStore, StoreError, PERSISTED_LEN};

pub(crate) use queue::AddrHash;
use queue::Outbox;
use snapshot::{secs, PartnerDownInfo};

/// Identifies one binding of a partner's BNDUPD, for [`Peer::ack_partner_update`].
///
/// Valid only on the link it arrived on: after a reconnect the acknowledgement is dropped (the
/// partner sends the update again).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpdateId {
    epoch: u64,
    batch: u64,
    index: u16,
}

#[cfg(test)]
impl UpdateId {
    /// An id for tests of code that only carries ids around.
    pub(crate) fn for_test(index: u16) -> UpdateId {
        UpdateId {
            epoch: 0,
            batch: 0,
            index,
        }
    }
}

/// How many unleased addresses each side holds, as this server sees them (for pool balancing).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Unleased addresses in our own pool (FREE on the primary, BACKUP on the secondary),
    /// excluding those we are handing to the partner.
    pub own: u32,
    /// Unleased addresses in the partner's pool (including those we are handing to it).
    pub partner: u32,
}

/// Something the daemon must act on, from [`Peer::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Our state changed (already persisted).
    StateChanged {
        /// The previous state.
        from: PeerState,
        /// The new state.
        to: PeerState,
    },
    /// The partner reported a state.
    PartnerStateChanged {
        /// Its state (its saved state while `startup` is set).
        state: PeerState,
        /// The partner is in STARTUP.
        startup: bool,
    },
    /// [`Peer::snapshot`] changed: publish it to the workers.
    SnapshotChanged,
    /// A binding from the partner: judge it ([`OwnershipSnapshot::judge`]), journal the
    /// result, then call [`Peer::ack_partner_update`].
    PartnerBinding {
        /// Pass back to `ack_partner_update`.
        id: UpdateId,
        /// The partner's binding (`from_partner` set).
        binding: Binding,
    },
    /// The partner acknowledged one of our updates; apply [`settle_acked`] to the local
    /// binding.
    ///
    /// An EXPIRED, RELEASED or RESET update acknowledged by a partner that is recovering its
    /// database (RECOVER, RECOVER-WAIT) is not reported: such a partner cannot vouch that no
    /// lease it gave before losing its database is still running. The update is sent again
    /// once the partner has left those states.
    UpdateAcked {
        /// The binding as we sent it.
        binding: Binding,
    },
    /// The partner refused one of our updates; it is not sent again.
    UpdateRejected {
        /// The binding as we sent it.
        binding: Binding,
        /// The partner's reason.
        reason: RejectReason,
    },
    /// The partner lost its database: queue every binding with [`Peer::local_update`], then
    /// call [`Peer::end_full_update`].
    SendAllBindings,
    /// Pool balancing: move `count` of our unleased addresses to the partner's pool (`to`),
    /// each with [`transfer`] followed by [`Peer::local_update`].
    TransferAddresses {
        /// How many addresses.
        count: u32,
        /// The partner's pool state (BACKUP from the primary, FREE from the secondary).
        to: BindingState,
    },
    /// The partner answered our POOLREQ.
    PoolResponse {
        /// Addresses it says it moved to us.
        transferred: u32,
    },
    /// A message's time differs from our clock by more than the skew limit (raised at most once
    /// a minute while it lasts). The partner's BNDUPDs are refused meanwhile.
    ClockSkew {
        /// Partner's time minus ours, seconds.
        skew_secs: i64,
    },
    /// Close the TCP connection (the machine already treats the link as down).
    CloseLink,
    /// The handshake was refused (by the partner, or by us).
    ConnectRejected {
        /// The reject reason.
        reason: RejectReason,
        /// True if we refused the partner's CONNECT/CONNECTACK, false if the partner refused ours.
        by_us: bool,
    },
    /// The partner closed the link with DISCONNECT.
    PartnerDisconnected {
        /// Its reason, if given.
        reason: Option<RejectReason>,
    },
    /// A state change could not be persisted and was not made.
    PersistFailed {
        /// The state we wanted.
        wanted: PeerState,
        /// The store's error.
        error: StoreError,
    },
    /// The partner sent something the protocol does not allow here; it was ignored.
    ProtocolViolation {
        /// What.
        what: &'static str,
    },
}

/// An administrative request the machine refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Not allowed in the current state.
    #[error("not allowed in state {0}")]
    NotAllowed(PeerState),
    /// The new state could not be persisted.
    #[error(transparent)]
    Persist(#[from] StoreError),
    /// An invalid mode.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The TCP link as the machine knows it.
#[derive(Clone, Debug)]
struct Link {
    epoch: u64,
    up_at: Time,
    handshake: bool,
    window: u32,
    partner_receive_timer: u32,
    dialect: Dialect,
    updreq_sent: bool,
    updreqall_sent: bool,
    state_seen: bool,
    /// What we knew of the partner when this link came up.
    known_before: Option<PeerState>,
    heard_before: u32,
}

/// A partner BNDUPD waiting for the daemon's verdicts.
#[derive(Clone, Debug)]
struct Incoming {
    batch: u64,
    xid: u32,
    updates: Vec<super::message::BindingUpdate>,
    outcomes: Vec<Option<Result<(), RejectReason>>>,
}

/// An UPDREQ/UPDREQALL we are answering.
#[derive(Copy, Clone, Debug)]
struct PendingDone {
    xid: u32,
    /// `None` while the daemon is still queueing every binding (UPDREQALL).
    marker: Option<i64>,
}

/// The failover state machine of one relationship. See the module documentation.
pub struct Peer<S> {
    cfg: PeerConfig,
    store: S,
    mode: Mode,
    state: PeerState,
    stos: u32,
    saved: PeerState,
    saved_stos: u32,
    prior: PeerState,
    pd_cause: Option<PartnerDownCause>,
    recover_stos: u32,
    fresh: bool,
    partner: Option<PeerState>,
    partner_stos: u32,
    partner_startup: bool,
    last_heard: u32,
    partner_seen_at: u32,
    was_down: bool,
    own_hold_until: Option<u32>,
    /// Restarted after an absence of at least MCLT: our own pool stays closed to new clients
    /// until the partner is heard (or the operator declares it down).
    hold_until_contact: bool,
    /// When to record the next keep-alive in the store.
    next_keep_alive: Time,
    /// How long we were away before this start, when that set `hold_until_contact`.
    away_secs: Option<u32>,
    sync_marker: Option<i64>,
    mclt: u32,
    hba: BucketMap,
    startup_deadline: Option<Time>,
    link: Option<Link>,
    epoch: u64,
    xid: u32,
    batch: u64,
    last_received: Time,
    last_sent: Time,
    skewed: bool,
    skew_event_at: Option<Time>,
    outbox: Outbox,
    deferred: Vec<Binding>,
    incoming: Vec<Incoming>,
    pending_done: Option<PendingDone>,
    pool: Option<PoolCounts>,
    rebalance_at: Option<Time>,
    poolreq_at: Option<Time>,
    transmit: VecDeque<Message>,
    events: VecDeque<Event>,
}

impl<S: StateStore> Peer<S> {
    /// A machine for relationship `cfg`, persisting through `store`, starting as `start` says.
    pub fn new(cfg: PeerConfig, store: S, start: Start, now: Time) -> Result<Peer<S>, ConfigError> {
        cfg.validate()?;
        let t = secs(now);
        let mode = cfg.mode;
        let mut p = Peer {
            mode,
            state: PeerState::Recover,
            stos: t,
            saved: PeerState::Recover,
            saved_stos: t,
            prior: PeerState::Recover,
            pd_cause: None,
            recover_stos: t,
            fresh: false,
            partner: None,
            partner_stos: 0,
            partner_startup: false,
            last_heard: 0,
            partner_seen_at: 0,
            was_down: !matches!(start, Start::Fresh),
            own_hold_until: None,
            hold_until_contact: false,
            next_keep_alive: now,
            away_secs: None,
            sync_marker: None,
            mclt: cfg.mclt_secs,
            hba: mode.primary_buckets(),
            startup_deadline: None,
            link: None,
            epoch: 0,
            xid: 0,
            batch: 0,
            last_received: now,
            last_sent: now,
            skewed: false,
            skew_event_at: None,
            outbox: Outbox::new(),
            deferred: Vec::new(),
            incoming: Vec::new(),
            pending_done: None,
            pool: None,
            rebalance_at: None,
            poolreq_at: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            cfg,
            store,
        };
        match start {
            Start::Fresh => p.fresh = true,
            Start::Lost => {}
            Start::Saved(ps) => {
                p.state = PeerState::Startup;
                p.saved = if ps.state == PeerState::Startup {
                    PeerState::Recover
                } else {
                    ps.state
                };
                p.saved_stos = ps.stos;
                p.prior = ps.prior;
                p.pd_cause = ps.partner_down_cause;
                p.recover_stos = ps.recover_stos;
                p.fresh = ps.fresh;
                p.partner = ps.partner_state;
                p.partner_stos = ps.partner_stos;
                p.last_heard = ps.partner_last_heard;
                p.partner_seen_at = ps.partner_seen_at;
                if p.cfg.role == Role::Secondary {
                    p.mclt = ps.mclt;
                    p.hba = ps.hba;
                }
                p.startup_deadline = Some(now.plus_secs(u64::from(p.cfg.startup_secs)));
                // Away at least MCLT (by the store's last keep-alive): an operator may rightly
                // have declared us down meanwhile, and the partner, in PARTNER-DOWN, may lease
                // our unleased addresses now. Until we hear it, ours stay closed.
                let away = p.store.last_alive().map(|a| secs(now).saturating_sub(a));
                let limit = p.mclt.saturating_sub(p.cfg.skew_allowance());
                if away.is_some_and(|a| a >= limit) && ps.state != PeerState::PartnerDown {
                    p.hold_until_contact = true;
                    p.away_secs = away;
                }
            }
        }
        Ok(p)
    }

    /// True while our own pool is closed because we restarted after an absence of at least
    /// MCLT and have not heard the partner since (it may be in PARTNER-DOWN, leasing our
    /// unleased addresses). Contact with the partner, or the operator's
    /// [`Peer::partner_down`], ends it.
    pub fn held_until_contact(&self) -> bool {
        self.hold_until_contact
    }

    /// How long we were away before this start (seconds), when that closed our pool (see
    /// [`Peer::held_until_contact`]).
    pub fn away_secs(&self) -> Option<u32> {
        self.away_secs
    }

    /// Seconds between two keep-alive stamps in the store: a quarter of MCLT, at most a minute.
    fn keep_alive_ms(&self) -> u64 {
        (u64::from(self.mclt) * 250).clamp(1000, 60_000)
    }

    // ----- accessors -------------------------------------------------------------------------

    /// The current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// When the current state began (seconds, our clock).
    pub fn state_since(&self) -> u32 {
        self.stos
    }

    /// The partner's last reported state.
    pub fn partner_state(&self) -> Option<PeerState> {
        self.partner
    }

    /// When the partner last sent a message (its timestamp, seconds); `None` if never.
    pub fn last_heard(&self) -> Option<u32> {
        (self.last_heard > 0).then_some(self.last_heard)
    }

    /// The configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// The mode in effect.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The relationship's MCLT (seconds).
    pub fn mclt(&self) -> u32 {
        self.mclt
    }

    /// Why we are in PARTNER-DOWN, if we are.
    pub fn partner_down_cause(&self) -> Option<PartnerDownCause> {
        (self.state == PeerState::PartnerDown)
            .then_some(self.pd_cause)
            .flatten()
    }

    /// True once CONNECT/CONNECTACK succeeded on the current link.
    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.handshake)
    }

    /// How to encode messages for the partner (from its vendor class; ISC until known).
    pub fn dialect(&self) -> Dialect {
        self.link.as_ref().map_or(Dialect::Isc, |l| l.dialect)
    }

    /// Bindings queued or sent and not yet acknowledged.
    pub fn pending_updates(&self) -> usize {
        self.outbox.outstanding() + self.deferred.len()
    }

    /// When RECOVER-WAIT ends (for the operator's countdown), if in RECOVER-WAIT.
    pub fn recover_wait_until(&self) -> Option<Time> {
        (self.state == PeerState::RecoverWait).then(|| self.recover_wait_end())
    }

    /// The store (for inspection).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (tests inject failures through it).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The ownership snapshot the data plane decides with.
    pub fn snapshot(&self) -> OwnershipSnapshot {
        let serve = match self.cfg.role {
            Role::Primary => self.hba,
            Role::Secondary => self.hba.complement(),
        };
        OwnershipSnapshot {
            role: self.cfg.role,
            state: self.state,
            serve,
            mclt: self.mclt,
            partner_down: if self.state == PeerState::PartnerDown {
                Some(PartnerDownInfo {
                    since: self.stos,
                    cause: self.pd_cause.unwrap_or(PartnerDownCause::Automatic),
                })
            } else {
                None
            },
            fence_end: self.fence_end(),
            own_hold_until: self.own_hold_until,
            own_hold_until_contact: self.hold_until_contact,
            partner_resuming: self.partner_resuming(),
            skew: self.cfg.skew_allowance(),
        }
    }

    /// In PARTNER-DOWN with the partner back in RECOVER-DONE: the partner resumes its own pool
    /// once we go NORMAL, so we stop taking from it and sync first.
    fn partner_resuming(&self) -> bool {
        self.state == PeerState::PartnerDown
            && self.is_connected()
            && self.partner == Some(PeerState::RecoverDone)
            && !self.partner_startup
    }

    fn fence_end(&self) -> Option<u32> {
        let s = self.cfg.switchover_secs?;
        if self.state == PeerState::PartnerDown && self.pd_cause.is_some_and(|c| c.partner_silent())
        {
            return None;
        }
        let partner_counting = matches!(
            self.partner,
            Some(PeerState::CommunicationsInterrupted | PeerState::PartnerDown)
        );
        if self.is_connected() && self.partner.is_some() && !partner_counting {
            return None;
        }
        let reference = match self.partner {
            Some(PeerState::CommunicationsInterrupted) => self.partner_stos.min(self.last_heard),
            Some(PeerState::PartnerDown) => self.partner_stos.saturating_sub(s),
            _ => self.last_heard,
        };
        Some(
            reference
                .saturating_add(s)
                .saturating_sub(self.cfg.skew_allowance())
                .saturating_add(self.mclt),
        )
    }

    // ----- sans-IO interface -----------------------------------------------------------------

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.transmit.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Peer::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut next: Option<Time> = None;
        let mut at = |t: Time| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state == PeerState::Startup {
            if let Some(d) = self.startup_deadline {
                at(d);
            }
        }
        if let Some(l) = &self.link {
            let rt = u64::from(self.cfg.receive_timer_secs) * 1000;
            if l.handshake {
                at(self.last_received.plus_millis(rt));
                at(self
                    .last_sent
                    .plus_millis(contact_interval_ms(l.partner_receive_timer)));
            } else {
                at(l.up_at.plus_millis(rt));
            }
        }
        if let Some(d) = self.auto_partner_down_at() {
            at(d);
        }
        if self.state == PeerState::RecoverWait {
            at(self.recover_wait_end());
        }
        if let Some(r) = self.rebalance_at {
            if self.balancing() {
                at(r);
            }
        }
        at(self.next_keep_alive);
        next
    }

    /// Handle every deadline that has passed at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        let before = self.snapshot();
        if now >= self.next_keep_alive {
            self.store.keep_alive(secs(now));
            self.next_keep_alive = now.plus_millis(self.keep_alive_ms());
        }
        if self.state == PeerState::Startup && self.startup_deadline.is_some_and(|d| now >= d) {
            self.leave_startup(now, false);
        }
        if let Some(l) = &self.link {
            let rt = u64::from(self.cfg.receive_timer_secs) * 1000;
            if !l.handshake && now >= l.up_at.plus_millis(rt) {
                self.close_link(now);
            } else if l.handshake && now >= self.last_received.plus_millis(rt) {
                self.send(
                    now,
                    0,
                    Body::Disconnect(Disconnect {
                        reject_reason: Some(RejectReason::NoTrafficWithinSufficientTime),
                        message: Some(b"receive timer expired".to_vec()),
                    }),
                );
                self.close_link(now);
            } else if l.handshake
                && now
                    >= self
                        .last_sent
                        .plus_millis(contact_interval_ms(l.partner_receive_timer))
            {
                let xid = self.next_xid();
                self.send(now, xid, Body::Contact);
            }
        }
        if self.auto_partner_down_at().is_some_and(|d| now >= d) {
            self.set_state(
                now,
                PeerState::PartnerDown,
                Some(PartnerDownCause::Automatic),
            );
        }
        if self.state == PeerState::RecoverWait && now >= self.recover_wait_end() {
            self.set_state(now, PeerState::RecoverDone, None);
        }
        if self.balancing() && self.rebalance_at.is_some_and(|r| now >= r) {
            self.rebalance(now, false);
            self.rebalance_at = Some(now.plus_secs(u64::from(self.cfg.rebalance_secs)));
        }
        self.finish(now, before);
    }

    /// A TCP connection to the partner is established (any previous one is gone). The primary
    /// sends CONNECT; the secondary waits for it.
    pub fn connected(&mut self, now: Time) {
        let before = self.snapshot();
        if self.link.is_some() {
            self.drop_link(now);
        }
        self.epoch += 1;
        self.link = Some(Link {
            epoch: self.epoch,
            up_at: now,
            handshake: false,
            window: 1,
            partner_receive_timer: self.cfg.receive_timer_secs,
            dialect: Dialect::Isc,
            updreq_sent: false,
            updreqall_sent: false,
            state_seen: false,
            known_before: self.partner,
            heard_before: self.last_heard,
        });
        self.last_received = now;
        if self.cfg.role == Role::Primary {
            let xid = self.next_xid();
            let body = Body::Connect(Connect {
                relationship_name: self.cfg.name.clone(),
                max_unacked_bndupd: Some(self.cfg.max_unacked),
                receive_timer: Some(self.cfg.receive_timer_secs),
                vendor_class: Some(self.cfg.vendor_class.clone()),
                protocol_version: Some(PROTOCOL_VERSION),
                tls_request: Some(TlsRequest::None),
                mclt: Some(self.mclt),
                hba: Some(self.hba),
                ..Connect::default()
            });
            self.send(now, xid, body);
        }
        self.finish(now, before);
    }

    /// The TCP connection is gone (closed by the partner, reset, or closed after
    /// [`Event::CloseLink`]). Idempotent.
    pub fn disconnected(&mut self, now: Time) {
        let before = self.snapshot();
        if self.link.is_some() {
            self.drop_link(now);
        }
        self.finish(now, before);
    }

    /// A message from the partner arrived on the current link.
    pub fn handle_message(&mut self, now: Time, msg: Message) {
        let before = self.snapshot();
        if self.link.is_none() {
            self.violation("message without a link");
            self.finish(now, before);
            return;
        }
        self.last_received = now;
        let skew = i64::from(msg.time) - i64::from(secs(now));
        self.skewed = skew.unsigned_abs() > u64::from(self.cfg.max_skew_secs);
        if self.skewed && self.skew_event_at.is_none_or(|t| now >= t.plus_secs(60)) {
            self.skew_event_at = Some(now);
            self.events.push_back(Event::ClockSkew { skew_secs: skew });
        }
        let handshake = self.is_connected();
        match msg.body {
            Body::Connect(c) => self.on_connect(now, msg.xid, c),
            Body::ConnectAck(a) => self.on_connect_ack(now, a),
            Body::Disconnect(d) => {
                self.events.push_back(Event::PartnerDisconnected {
                    reason: d.reject_reason,
                });
                self.close_link(now);
            }
            _ if !handshake => self.violation("message before the handshake"),
            body => {
                self.last_heard = msg.time;
                match body {
                    Body::State(s) => self.on_state(now, s),
                    Body::BndUpd(u) => self.on_bndupd(now, msg.xid, u),
                    Body::BndAck(a) => self.on_bndack(msg.xid, a),
                    Body::UpdReq => {
                        let marker = Some(self.outbox.marker());
                        self.pending_done = Some(PendingDone {
                            xid: msg.xid,
                            marker,
                        });
                    }
                    Body::UpdReqAll => {
                        self.pending_done = Some(PendingDone {
                            xid: msg.xid,
                            marker: None,
                        });
                        self.events.push_back(Event::SendAllBindings);
                    }
                    Body::UpdDone => self.on_upddone(now),
                    Body::PoolReq => {
                        let n = if self.balancing() {
                            self.rebalance(now, true)
                        } else {
                            0
                        };
                        self.send(
                            now,
                            msg.xid,
                            Body::PoolResp(PoolResp {
                                addresses_transferred: n,
                            }),
                        );
                    }
                    Body::PoolResp(r) => self.events.push_back(Event::PoolResponse {
                        transferred: r.addresses_transferred,
                    }),
                    Body::Contact => {}
                    Body::Connect(_) | Body::ConnectAck(_) | Body::Disconnect(_) => {}
                }
            }
        }
        self.finish(now, before);
    }

    /// A binding changed locally (a lease given, renewed, released or expired; a pool
    /// transfer; or every binding after [`Event::SendAllBindings`]). It is queued and sent
    /// within the partner's window when the states allow. OFFERED bindings are never sent.
    pub fn local_update(&mut self, now: Time, binding: Binding) {
        self.local_updates(now, std::iter::once(binding));
    }

    /// Several local changes at once (see [`Peer::local_update`]): every binding is queued
    /// before anything is sent, so towards a Tandem partner they share BNDUPD messages (up to
    /// the configured batch size each) instead of one message per binding while the window has
    /// room.
    pub fn local_updates(&mut self, now: Time, bindings: impl IntoIterator<Item = Binding>) {
        let before = self.snapshot();
        for b in bindings {
            if b.state != BindingState::Offered {
                self.outbox.push(b);
            }
        }
        self.finish(now, before);
    }

    /// Every binding has been queued after [`Event::SendAllBindings`]: UPDDONE follows once the
    /// partner acknowledged them.
    pub fn end_full_update(&mut self, now: Time) {
        let before = self.snapshot();
        if let Some(p) = &mut self.pending_done {
            if p.marker.is_none() {
                p.marker = Some(self.outbox.marker());
            }
        }
        self.finish(now, before);
    }

    /// The daemon's verdict on a partner binding ([`Event::PartnerBinding`]): `Ok` once it is
    /// journaled, or the reason to refuse it. A BNDACK goes out when every binding of the
    /// partner's message has its verdict. Verdicts for a link that is gone are dropped.
    pub fn ack_partner_update(
        &mut self,
        now: Time,
        id: UpdateId,
        result: Result<(), RejectReason>,
    ) {
        self.ack_partner_updates(now, std::iter::once((id, result)));
    }

    /// Several verdicts at once (see [`Peer::ack_partner_update`]): every BNDACK they complete
    /// is sent, in the order the partner's messages arrived, before anything else is done.
    pub fn ack_partner_updates(
        &mut self,
        now: Time,
        results: impl IntoIterator<Item = (UpdateId, Result<(), RejectReason>)>,
    ) {
        let before = self.snapshot();
        let epoch = self.link.as_ref().map(|l| l.epoch);
        let mut any = false;
        // Verdicts come back in the order the bindings arrived: look where the last one was
        // first.
        let mut pos = 0;
        for (id, result) in results {
            if epoch != Some(id.epoch) {
                continue;
            }
            if self.incoming.get(pos).is_none_or(|b| b.batch != id.batch) {
                match self.incoming.iter().position(|b| b.batch == id.batch) {
                    Some(p) => pos = p,
                    None => continue,
                }
            }
            if let Some(slot) = self.incoming[pos].outcomes.get_mut(usize::from(id.index)) {
                *slot = Some(result);
                any = true;
            }
        }
        if any {
            let mut pos = 0;
            while pos < self.incoming.len() {
                if !self.flush_incoming(now, pos) {
                    pos += 1;
                }
            }
        }
        self.finish(now, before);
    }

    /// Tell the machine how many unleased addresses each side holds (call when they change).
    pub fn set_pool_counts(&mut self, counts: PoolCounts) {
        self.pool = Some(counts);
    }

    // ----- administrative --------------------------------------------------------------------

    /// Declare the partner down (the operator asserts it is not serving and will not restart
    /// without contacting us). After MCLT the whole pool is ours.
    pub fn partner_down(&mut self, now: Time) -> Result<(), AdminError> {
        match self.state {
            PeerState::PartnerDown if self.pd_cause == Some(PartnerDownCause::Administrative) => {
                return Ok(())
            }
            PeerState::Recover | PeerState::Paused | PeerState::Shutdown => {
                return Err(AdminError::NotAllowed(self.state))
            }
            _ => {}
        }
        // The operator says the partner is not serving: our pool is ours again.
        self.hold_until_contact = false;
        if self.fence_end().is_some_and(|f| secs(now) >= f) {
            // Past the split-brain fence the partner may have taken our unleased addresses in
            // an automatic PARTNER-DOWN before it went silent. Its leases there are capped at
            // MCLT, so they have ended MCLT from now (the operator says it is down): until
            // then our own pool stays closed to new clients, like the partner's. This holds
            // too when we are in automatic PARTNER-DOWN ourselves: there we left our own pool
            // to the partner, and the declaration gives it back to us only after MCLT.
            let until = secs(now)
                .saturating_add(self.mclt)
                .saturating_add(self.cfg.skew_allowance());
            self.own_hold_until = Some(self.own_hold_until.map_or(until, |h| h.max(until)));
        }
        self.admin_move(
            now,
            PeerState::PartnerDown,
            Some(PartnerDownCause::Administrative),
        )
    }

    /// Pause this server (a short planned outage): it serves nobody; the partner treats it as
    /// out of contact.
    pub fn pause(&mut self, now: Time) -> Result<(), AdminError> {
        if matches!(self.state, PeerState::Paused | PeerState::Shutdown) {
            return Err(AdminError::NotAllowed(self.state));
        }
        self.admin_move(now, PeerState::Paused, None)
    }

    /// Shut this server down: it serves nobody and the partner moves to PARTNER-DOWN. It comes
    /// back through RECOVER ([`Peer::resume`] or a restart).
    pub fn shutdown(&mut self, now: Time) -> Result<(), AdminError> {
        if self.state == PeerState::Shutdown {
            return Ok(());
        }
        self.admin_move(now, PeerState::Shutdown, None)
    }

    /// Leave PAUSED or SHUTDOWN through STARTUP, as after a restart.
    pub fn resume(&mut self, now: Time) -> Result<(), AdminError> {
        if !matches!(self.state, PeerState::Paused | PeerState::Shutdown) {
            return Err(AdminError::NotAllowed(self.state));
        }
        let before = self.snapshot();
        self.saved = self.state;
        self.saved_stos = self.stos;
        self.state = PeerState::Startup;
        self.startup_deadline = Some(now.plus_secs(u64::from(self.cfg.startup_secs)));
        self.events.push_back(Event::StateChanged {
            from: self.saved,
            to: PeerState::Startup,
        });
        self.send_state(now);
        if self.is_connected() && self.partner.is_some() && !self.partner_startup {
            self.leave_startup(now, true);
        }
        self.finish(now, before);
        Ok(())
    }

    /// Operator override: leave RECOVER-WAIT now, asserting the partner has been down (or this
    /// server has served nobody) for longer than MCLT.
    pub fn skip_recover_wait(&mut self, now: Time) -> Result<(), AdminError> {
        if self.state != PeerState::RecoverWait {
            return Err(AdminError::NotAllowed(self.state));
        }
        self.admin_move(now, PeerState::RecoverDone, None)
    }

    /// Change the mode (apply it on both servers). The primary sends the new bucket map at the
    /// next CONNECT; each side uses its own map and pool target at once, and balancing runs now.
    /// The mode is persisted, but after a restart the configuration's mode is used: put the new
    /// mode in the configuration too (or call this again).
    pub fn set_mode(&mut self, now: Time, mode: Mode) -> Result<(), AdminError> {
        let mut c = self.cfg.clone();
        c.mode = mode;
        c.validate()?;
        let before = self.snapshot();
        let mut ps = self.persisted();
        ps.mode = mode;
        ps.hba = mode.primary_buckets();
        self.store.persist(&ps)?;
        self.cfg.mode = mode;
        self.mode = mode;
        self.hba = mode.primary_buckets();
        self.rebalance_at = Some(now);
        self.finish(now, before);
        Ok(())
    }

    fn admin_move(
        &mut self,
        now: Time,
        to: PeerState,
        cause: Option<PartnerDownCause>,
    ) -> Result<(), AdminError> {
        let before = self.snapshot();
        let r = self.try_set_state(now, to, cause);
        self.finish(now, before);
        r.map_err(AdminError::Persist)
    }

    // ----- state changes ---------------------------------------------------------------------

    fn persisted(&self) -> PersistedState {
        let (state, stos) = if self.state == PeerState::Startup {
            (self.saved, self.saved_stos)
        } else {
            (self.state, self.stos)
        };
        PersistedState {
            state,
            stos,
            prior: self.prior,
            partner_down_cause: self.pd_cause,
            recover_stos: self.recover_stos,
            partner_state: self.partner,
            partner_stos: self.partner_stos,
            partner_last_heard: self.last_heard,
            partner_seen_at: self.partner_seen_at,
            mclt: self.mclt,
            hba: self.hba,
            mode: self.mode,
            fresh: self.fresh,
        }
    }

    fn set_state(&mut self, now: Time, to: PeerState, cause: Option<PartnerDownCause>) -> bool {
        self.try_set_state(now, to, cause).is_ok()
    }

    /// Persist, then move to `to`. On a store failure nothing changes.
    fn try_set_state(
        &mut self,
        now: Time,
        to: PeerState,
        cause: Option<PartnerDownCause>,
    ) -> Result<(), StoreError> {
        let t = secs(now);
        if to == self.state && (to != PeerState::PartnerDown || cause == self.pd_cause) {
            return Ok(());
        }
        let from = self.state;
        let mut ps = self.persisted();
        ps.state = to;
        ps.stos = t;
        if matches!(to, PeerState::Paused | PeerState::Shutdown) {
            ps.prior = if from == PeerState::Startup {
                self.saved
            } else {
                from
            };
            if matches!(ps.prior, PeerState::Paused | PeerState::Shutdown) {
                ps.prior = self.prior;
            }
        } else {
            ps.prior = to;
        }
        ps.partner_down_cause = match to {
            PeerState::PartnerDown => cause
                .or(self.pd_cause)
                .or(Some(PartnerDownCause::Automatic)),
            // Kept for the way back from PAUSED or SHUTDOWN.
            PeerState::Paused | PeerState::Shutdown => self.pd_cause,
            _ => None,
        };
        if to == PeerState::Recover && from != PeerState::Recover {
            ps.recover_stos = t;
        }
        if to == PeerState::Normal {
            ps.fresh = false;
        }
        if let Err(error) = self.store.persist(&ps) {
            self.events.push_back(Event::PersistFailed {
                wanted: to,
                error: error.clone(),
            });
            return Err(error);
        }
        self.state = to;
        self.stos = t;
        self.sync_marker = None;
        self.prior = ps.prior;
        self.pd_cause = ps.partner_down_cause;
        self.recover_stos = ps.recover_stos;
        self.fresh = ps.fresh;
        self.events.push_back(Event::StateChanged { from, to });
        self.on_enter(now);
        self.send_state(now);
        Ok(())
    }

    /// Return from STARTUP to the saved state (already persisted, with its own start time).
    fn restore_saved(&mut self, now: Time) {
        let to = self.saved;
        self.state = to;
        self.stos = self.saved_stos;
        self.events.push_back(Event::StateChanged {
            from: PeerState::Startup,
            to,
        });
        self.on_enter(now);
        self.send_state(now);
    }

    fn on_enter(&mut self, now: Time) {
        match self.state {
            PeerState::Normal => {
                self.rebalance_at = Some(now);
                self.poolreq_at = None;
            }
            PeerState::PotentialConflict => {
                if let Some(l) = &mut self.link {
                    l.updreq_sent = false;
                }
            }
            PeerState::Recover => {
                if let Some(l) = &mut self.link {
                    l.updreqall_sent = false;
                }
            }
            PeerState::Paused | PeerState::Shutdown => self.was_down = true,
            _ => {}
        }
        self.connection_actions(now);
    }

    /// Requests that depend on the state and the link: UPDREQALL in RECOVER, UPDREQ in
    /// POTENTIAL-CONFLICT (the primary at once, the secondary once the primary is in
    /// CONFLICT-DONE).
    fn connection_actions(&mut self, now: Time) {
        let Some(l) = &self.link else { return };
        if !l.handshake {
            return;
        }
        match self.state {
            PeerState::Recover if !l.updreqall_sent => {
                let xid = self.next_xid();
                if let Some(l) = &mut self.link {
                    l.updreqall_sent = true;
                }
                self.send(now, xid, Body::UpdReqAll);
            }
            PeerState::PotentialConflict if !l.updreq_sent => {
                let go = self.cfg.role == Role::Primary
                    || (self.partner == Some(PeerState::ConflictDone) && !self.partner_startup);
                if go {
                    let xid = self.next_xid();
                    if let Some(l) = &mut self.link {
                        l.updreq_sent = true;
                    }
                    self.send(now, xid, Body::UpdReq);
                }
            }
            _ => {}
        }
    }

    /// Leave STARTUP: on contact (the partner's state is known) or when the startup timer ran
    /// out (contact lost mapping).
    fn leave_startup(&mut self, now: Time, contact: bool) {
        if self.state != PeerState::Startup {
            return;
        }
        let saved = self.saved;
        if saved == PeerState::Shutdown {
            // Back from SHUTDOWN: the partner may have taken our pool; recover from it. With
            // nothing of ours outstanding and the partner in PARTNER-DOWN, the wait is skipped
            // (our leases are all known to it).
            if self.set_state(now, PeerState::Recover, None)
                && contact
                && self.partner == Some(PeerState::PartnerDown)
                && self.outbox.outstanding() == 0
            {
                self.recover_stos = secs(now).saturating_sub(self.mclt);
            }
            if contact {
                self.react(now);
            }
            return;
        }
        let base = if saved == PeerState::Paused {
            self.prior
        } else {
            saved
        };
        if contact {
            if base == PeerState::Normal && self.partner == Some(PeerState::PartnerDown) {
                self.set_state(now, PeerState::Recover, None);
            } else if base == saved {
                self.restore_saved(now);
            } else {
                self.set_state(now, base, self.pd_cause);
            }
            self.react(now);
        } else {
            let mut target = base.on_contact_lost();
            let silent = self.pd_cause.is_some_and(|c| c.partner_silent());
            // A live partner seen while we were in PARTNER-DOWN would have moved us on, so
            // "seen after the saved state began" (PARTNER-DOWN, or PAUSED/SHUTDOWN entered from
            // it) means seen after PARTNER-DOWN's assertion was made.
            if target == PeerState::PartnerDown && silent && self.partner_seen_at > self.saved_stos
            {
                // The partner was seen alive after PARTNER-DOWN began: "it is not serving" no
                // longer holds. Out of contact again, this is COMMUNICATIONS-INTERRUPTED.
                target = PeerState::CommunicationsInterrupted;
            }
            if target == saved {
                self.restore_saved(now);
            } else {
                self.set_state(now, target, self.pd_cause);
            }
        }
    }

    /// Apply the reaction table to the partner's (non-STARTUP) state until nothing changes.
    fn react(&mut self, now: Time) {
        for _ in 0..4 {
            if self.partner_startup || self.state == PeerState::Startup {
                return;
            }
            let Some(partner) = self.partner else { return };
            match next_state(self.state, partner) {
                Some((PeerState::Normal, _))
                    if self.state == PeerState::PartnerDown && !self.synced_for_normal() =>
                {
                    break
                }
                Some((to, cause)) => {
                    if !self.set_state(now, to, cause) {
                        return;
                    }
                }
                None => break,
            }
        }
        self.connection_actions(now);
    }

    /// PARTNER-DOWN → NORMAL waits until the partner has acknowledged every update queued
    /// when it reported RECOVER-DONE (our leases on its addresses among them), so it never
    /// resumes its pool without knowing them.
    fn synced_for_normal(&mut self) -> bool {
        let marker = *self.sync_marker.get_or_insert(self.outbox.marker());
        self.outbox.done_up_to(marker) && self.deferred.is_empty()
    }

    fn auto_partner_down_at(&self) -> Option<Time> {
        let s = self.cfg.switchover_secs?;
        if self.state != PeerState::CommunicationsInterrupted || self.is_connected() {
            return None;
        }
        Some(Time::from_secs(u64::from(self.stos.saturating_add(s))))
    }

    fn recover_wait_end(&self) -> Time {
        Time::from_secs(u64::from(self.recover_stos.saturating_add(self.mclt)))
    }

    // ----- link ------------------------------------------------------------------------------

    fn close_link(&mut self, now: Time) {
        self.events.push_back(Event::CloseLink);
        self.drop_link(now);
    }

    fn drop_link(&mut self, now: Time) {
        if self.link.take().is_none() {
            return;
        }
        self.outbox.requeue_in_flight();
        self.sync_marker = None;
        self.incoming.clear();
        self.pending_done = None;
        self.partner_startup = false;
        let to = self.state.on_contact_lost();
        if to != self.state {
            self.set_state(now, to, None);
        }
    }

    fn handshake_done(&mut self, now: Time) {
        if let Some(l) = &mut self.link {
            l.handshake = true;
        }
        self.last_received = now;
        self.outbox.unpark();
        self.send_state(now);
        self.connection_actions(now);
    }

    fn reject_connect(&mut self, now: Time, xid: u32, reason: RejectReason, text: &str) {
        self.events.push_back(Event::ConnectRejected {
            reason,
            by_us: true,
        });
        let body = Body::ConnectAck(ConnectAck {
            relationship_name: Some(self.cfg.name.clone()),
            reject_reason: Some(reason),
            message: Some(text.as_bytes().to_vec()),
            ..ConnectAck::default()
        });
        self.send(now, xid, body);
        self.close_link(now);
    }

    fn disconnect_with(&mut self, now: Time, reason: RejectReason, text: &str) {
        self.events.push_back(Event::ConnectRejected {
            reason,
            by_us: true,
        });
        self.send(
            now,
            0,
            Body::Disconnect(Disconnect {
                reject_reason: Some(reason),
                message: Some(text.as_bytes().to_vec()),
            }),
        );
        self.close_link(now);
    }

    fn on_connect(&mut self, now: Time, xid: u32, c: Connect) {
        if self.cfg.role == Role::Primary {
            return self.reject_connect(
                now,
                xid,
                RejectReason::InvalidPartner,
                "both servers are configured as primary",
            );
        }
        if self.is_connected() {
            return self.reject_connect(now, xid, RejectReason::DuplicateConnection, "duplicate");
        }
        if c.relationship_name != self.cfg.name {
            return self.reject_connect(
                now,
                xid,
                RejectReason::InvalidPartner,
                "unknown relationship name",
            );
        }
        if self.skewed {
            return self.reject_connect(
                now,
                xid,
                RejectReason::TimeMismatch,
                "clocks differ by more than the limit",
            );
        }
        if c.protocol_version.is_some_and(|v| v != PROTOCOL_VERSION) {
            return self.reject_connect(
                now,
                xid,
                RejectReason::ProtocolVersionMismatch,
                "protocol version",
            );
        }
        let Some(hba) = c.hba else {
            return self.reject_connect(now, xid, RejectReason::HbaConflict, "no HBA");
        };
        let Some(mclt) = c.mclt.filter(|&m| m > 0) else {
            return self.reject_connect(now, xid, RejectReason::InvalidMclt, "no MCLT");
        };
        if mclt != self.mclt || hba != self.hba {
            let mut ps = self.persisted();
            ps.mclt = mclt;
            ps.hba = hba;
            if let Err(error) = self.store.persist(&ps) {
                self.events.push_back(Event::PersistFailed {
                    wanted: self.state,
                    error,
                });
                return self.reject_connect(
                    now,
                    xid,
                    RejectReason::Miscellaneous,
                    "cannot persist",
                );
            }
            self.mclt = mclt;
            self.hba = hba;
        }
        if let Some(l) = &mut self.link {
            l.window = c.max_unacked_bndupd.unwrap_or(1).max(1);
            l.partner_receive_timer = c.receive_timer.unwrap_or(self.cfg.receive_timer_secs);
            l.dialect = dialect_of(c.vendor_class.as_deref());
        }
        let body = Body::ConnectAck(ConnectAck {
            relationship_name: Some(self.cfg.name.clone()),
            max_unacked_bndupd: Some(self.cfg.max_unacked),
            receive_timer: Some(self.cfg.receive_timer_secs),
            vendor_class: Some(self.cfg.vendor_class.clone()),
            protocol_version: Some(PROTOCOL_VERSION),
            tls_reply: c.tls_request.map(|_| TlsReply::None),
            ..ConnectAck::default()
        });
        self.send(now, xid, body);
        self.handshake_done(now);
    }

    fn on_connect_ack(&mut self, now: Time, a: ConnectAck) {
        if self.cfg.role == Role::Secondary || self.is_connected() {
            return self.violation("unexpected CONNECTACK");
        }
        if let Some(reason) = a.reject_reason {
            self.events.push_back(Event::ConnectRejected {
                reason,
                by_us: false,
            });
            return self.close_link(now);
        }
        if a.relationship_name.as_deref() != Some(self.cfg.name.as_slice()) {
            return self.disconnect_with(now, RejectReason::InvalidPartner, "relationship name");
        }
        if self.skewed {
            return self.disconnect_with(
                now,
                RejectReason::TimeMismatch,
                "clocks differ by more than the limit",
            );
        }
        if let Some(l) = &mut self.link {
            l.window = a.max_unacked_bndupd.unwrap_or(1).max(1);
            l.partner_receive_timer = a.receive_timer.unwrap_or(self.cfg.receive_timer_secs);
            l.dialect = dialect_of(a.vendor_class.as_deref());
        }
        self.handshake_done(now);
    }

    fn on_state(&mut self, now: Time, s: StateBody) {
        let Some(st) = PeerState::from_wire(s.server_state) else {
            return self.disconnect_with(now, RejectReason::Miscellaneous, "unknown server state");
        };
        let startup = s
            .server_flags
            .is_some_and(|f| f.contains(ServerFlags::STARTUP))
            || st == PeerState::Startup;
        let stos = s.start_time_of_state.unwrap_or(self.last_heard);
        let first = self.link.as_ref().is_some_and(|l| !l.state_seen);
        if self.partner != Some(st) || self.partner_stos != stos || first {
            let mut ps = self.persisted();
            ps.partner_state = Some(st);
            ps.partner_stos = stos;
            ps.partner_last_heard = self.last_heard;
            if serving_capable(st) {
                ps.partner_seen_at = secs(now);
            }
            if let Err(error) = self.store.persist(&ps) {
                self.events.push_back(Event::PersistFailed {
                    wanted: self.state,
                    error,
                });
                return;
            }
            self.partner = Some(st);
            self.partner_stos = stos;
            self.partner_seen_at = ps.partner_seen_at;
        }
        self.partner_startup = startup;
        let hidden_takeover = self.link.as_ref().is_some_and(|l| {
            // Could the partner have been in PARTNER-DOWN without our knowing? Only if that is
            // the last we knew of it, if we were down ourselves meanwhile (restarted, paused or
            // shut down: an operator may rightly have declared us down), or if automatic
            // partner-down is configured and we had not heard from it for the switchover
            // interval. (An operator declaring a live partner down is outside the protocol's
            // guarantees.)
            self.was_down
                || l.known_before == Some(PeerState::PartnerDown)
                || self.cfg.switchover_secs.is_some_and(|s| {
                    l.known_before.is_some()
                        && secs(now)
                            >= l.heard_before
                                .saturating_add(s)
                                .saturating_sub(self.cfg.skew_allowance())
                })
        });
        if let Some(l) = &mut self.link {
            l.state_seen = true;
        }
        if first && self.hold_until_contact {
            // The partner speaks: what it did while we were away is known from here on (its
            // state; the hold below if it hides its history).
            self.hold_until_contact = false;
        }
        let admin_down = self.state == PeerState::PartnerDown
            && self.pd_cause == Some(PartnerDownCause::Administrative);
        if first && hidden_takeover && hides_history(st) && !admin_down {
            // The partner may have served from our pool (in PARTNER-DOWN) before it paused,
            // shut down or lost its database; such leases end by its state's start + MCLT.
            let until = stos
                .saturating_add(self.mclt)
                .saturating_add(self.cfg.skew_allowance());
            self.own_hold_until = Some(self.own_hold_until.map_or(until, |h| h.max(until)));
        }
        if first && !matches!(self.state, PeerState::Paused | PeerState::Shutdown) {
            self.was_down = false;
        }
        if partner_vouches(self.partner) {
            for b in std::mem::take(&mut self.deferred) {
                self.outbox.push_unless_queued(b);
            }
        }
        self.events
            .push_back(Event::PartnerStateChanged { state: st, startup });
        if startup {
            return;
        }
        if self.state == PeerState::Startup {
            self.leave_startup(now, true);
        } else {
            self.react(now);
        }
    }

    fn on_upddone(&mut self, now: Time) {
        match self.state {
            PeerState::Recover => {
                if !self.link.as_ref().is_some_and(|l| l.updreqall_sent) {
                    return self.violation("UPDDONE without UPDREQALL");
                }
                let partner_new = matches!(
                    self.partner,
                    Some(PeerState::Recover | PeerState::RecoverWait | PeerState::RecoverDone)
                );
                if (self.fresh && partner_new) || now >= self.recover_wait_end() {
                    self.set_state(now, PeerState::RecoverDone, None);
                } else {
                    self.set_state(now, PeerState::RecoverWait, None);
                }
                self.react(now);
            }
            PeerState::PotentialConflict => {
                if self.cfg.role == Role::Primary {
                    self.set_state(now, PeerState::ConflictDone, None);
                } else if self.partner == Some(PeerState::ConflictDone) {
                    self.set_state(now, PeerState::Normal, None);
                }
                self.react(now);
            }
            _ => {}
        }
    }

    fn on_bndupd(&mut self, now: Time, xid: u32, u: BndUpd) {
        let Some(epoch) = self.link.as_ref().map(|l| l.epoch) else {
            return;
        };
        if u.bindings.is_empty() {
            return self.violation("BNDUPD without bindings");
        }
        let batch = self.batch;
        self.batch += 1;
        let mut outcomes = Vec::with_capacity(u.bindings.len());
        for (i, upd) in u.bindings.iter().enumerate() {
            if self.skewed {
                outcomes.push(Some(Err(RejectReason::TimeMismatch)));
                continue;
            }
            let Ok(index) = u16::try_from(i) else {
                outcomes.push(Some(Err(RejectReason::Miscellaneous)));
                continue;
            };
            match binding_from_update(upd) {
                Ok(binding) => {
                    outcomes.push(None);
                    self.events.push_back(Event::PartnerBinding {
                        id: UpdateId {
                            epoch,
                            batch,
                            index,
                        },
                        binding,
                    });
                }
                Err(reason) => outcomes.push(Some(Err(reason))),
            }
        }
        self.incoming.push(Incoming {
            batch,
            xid,
            updates: u.bindings,
            outcomes,
        });
        let pos = self.incoming.len() - 1;
        self.flush_incoming(now, pos);
    }

    /// Send the BNDACK of incoming batch `pos` if every verdict is in (true: sent, and the
    /// batch removed).
    fn flush_incoming(&mut self, now: Time, pos: usize) -> bool {
        if self.incoming[pos].outcomes.iter().any(Option::is_none) {
            return false;
        }
        let inc = self.incoming.remove(pos);
        // The acknowledgement echoes each update: move it rather than copy it.
        let acks = inc
            .updates
            .into_iter()
            .zip(inc.outcomes)
            .map(|(binding, o)| BindingAck {
                binding,
                reject_reason: match o {
                    Some(Err(reason)) => Some(reason),
                    _ => None,
                },
                message: None,
            })
            .collect();
        self.send(now, inc.xid, Body::BndAck(BndAck { acks }));
        true
    }

    fn on_bndack(&mut self, xid: u32, a: BndAck) {
        let vouches = partner_vouches(self.partner);
        for ack in a.acks {
            let Some(b) = self.outbox.ack(xid, ack.binding.assigned_ip) else {
                continue;
            };
            match ack.reject_reason {
                None if !vouches && frees(b.state) => {
                    self.deferred.retain(|d| d.addr != b.addr);
                    self.deferred.push(b);
                }
                None => self.events.push_back(Event::UpdateAcked { binding: b }),
                Some(RejectReason::TimeMismatch) => self.outbox.park(b),
                Some(reason) => self
                    .events
                    .push_back(Event::UpdateRejected { binding: b, reason }),
            }
        }
    }

    // ----- sending ---------------------------------------------------------------------------

    fn next_xid(&mut self) -> u32 {
        self.xid = self.xid.wrapping_add(1);
        if self.xid == 0 {
            self.xid = 1;
        }
        self.xid
    }

    fn send(&mut self, now: Time, xid: u32, body: Body) {
        if self.link.is_none() {
            return;
        }
        self.last_sent = now;
        self.transmit.push_back(Message::new(secs(now), xid, body));
    }

    fn send_state(&mut self, now: Time) {
        if !self.is_connected() {
            return;
        }
        let (st, stos, flags) = if self.state == PeerState::Startup {
            (self.saved, self.saved_stos, ServerFlags::STARTUP)
        } else {
            (self.state, self.stos, ServerFlags::NONE)
        };
        let xid = self.next_xid();
        self.send(
            now,
            xid,
            Body::State(StateBody {
                server_state: st.to_wire(),
                server_flags: Some(flags),
                start_time_of_state: Some(stos),
            }),
        );
    }

    /// Send what the window and the states allow; UPDDONE when a request is answered.
    fn pump(&mut self, now: Time) {
        let Some(l) = &self.link else { return };
        if !l.handshake {
            return;
        }
        let window = l.window as usize;
        let per_msg = match l.dialect {
            Dialect::Tandem => usize::from(self.cfg.batch_max),
            Dialect::Isc => 1,
        };
        let quiet = |s: PeerState| {
            matches!(
                s,
                PeerState::Startup
                    | PeerState::Recover
                    | PeerState::PotentialConflict
                    | PeerState::ResolutionInterrupted
            )
        };
        let may_push = self.pending_done.is_some()
            || (!self.partner_startup
                && !quiet(self.state)
                && self.partner.is_some_and(|p| !quiet(p)));
        if may_push {
            // Room for the bindings of one message: what is left of the 2048 bytes after the
            // header and a digest (counted whether or not the link signs its messages).
            let room = MAX_MESSAGE_LEN - HEADER_LEN - DIGEST_OPTION_LEN;
            let dialect = l.dialect;
            while self.outbox.in_flight_msgs() < window && !self.outbox.queue_is_empty() {
                let mut items = Vec::new();
                let mut bindings = Vec::new();
                let mut used = 0usize;
                while items.len() < per_msg {
                    let Some(b) = self.outbox.front() else { break };
                    let Some(u) = update_from_binding(b) else {
                        // Never queued (offers are not sent): drop it.
                        self.outbox.pop_front();
                        continue;
                    };
                    let len = binding_update_len(&u, dialect);
                    if !bindings.is_empty() && used.saturating_add(len) > room {
                        break;
                    }
                    used = used.saturating_add(len);
                    let Some(item) = self.outbox.pop_front() else {
                        break;
                    };
                    items.push(item);
                    bindings.push(u);
                }
                if bindings.is_empty() {
                    continue;
                }
                let xid = self.next_xid();
                self.send(now, xid, Body::BndUpd(BndUpd { bindings }));
                self.outbox.sent(xid, items);
            }
        }
        if let Some(p) = self.pending_done {
            if let Some(marker) = p.marker {
                if self.outbox.done_up_to(marker) {
                    self.pending_done = None;
                    self.send(now, p.xid, Body::UpdDone);
                }
            }
        }
    }

    // ----- pool balancing --------------------------------------------------------------------

    fn balancing(&self) -> bool {
        self.state == PeerState::Normal
            && self.partner == Some(PeerState::Normal)
            && !self.partner_startup
            && self.is_connected()
    }

    /// One balancing pass: give away our excess (returns how many), or ask an ISC partner for
    /// addresses when badly short.
    fn rebalance(&mut self, now: Time, on_request: bool) -> u32 {
        let Some(c) = self.pool else { return 0 };
        let total = u64::from(c.own) + u64::from(c.partner);
        if total == 0 {
            return 0;
        }
        let dialect = self.dialect();
        let share = match dialect {
            Dialect::Tandem => u64::from(self.mode.pool_share(self.cfg.role)),
            Dialect::Isc => 50,
        };
        let target = (total * share + 50) / 100;
        let threshold = (total / 50).max(1);
        let own = u64::from(c.own);
        if own > target + threshold || (on_request && own > target) {
            let give = u32::try_from(own - target).unwrap_or(u32::MAX);
            self.events.push_back(Event::TransferAddresses {
                count: give,
                to: self.cfg.role.other().pool_state(),
            });
            self.pool = Some(PoolCounts {
                own: c.own - give,
                partner: c.partner.saturating_add(give),
            });
            return give;
        }
        let isc_short = (total * 15 / 100).max(1);
        if dialect == Dialect::Isc
            && !on_request
            && target > own + 2 * isc_short
            && self
                .poolreq_at
                .is_none_or(|t| now >= t.plus_secs(u64::from(self.cfg.rebalance_secs)))
        {
            self.poolreq_at = Some(now);
            let xid = self.next_xid();
            self.send(now, xid, Body::PoolReq);
        }
        0
    }

    // ----- bookkeeping -----------------------------------------------------------------------

    fn violation(&mut self, what: &'static str) {
        self.events.push_back(Event::ProtocolViolation { what });
    }

    /// End of every entry point: send what can be sent, and report a changed snapshot.
    fn finish(&mut self, now: Time, before: OwnershipSnapshot) {
        if self.is_connected() {
            self.react(now);
        }
        self.pump(now);
        if self.snapshot() != before {
            self.events.push_back(Event::SnapshotChanged);
        }
    }
}

impl<S> std::fmt::Debug for Peer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("role", &self.cfg.role)
            .field("state", &self.state)
            .field("partner", &self.partner)
            .field("connected", &self.link.as_ref().map(|l| l.handshake))
            .field("outstanding", &self.outbox.outstanding())
            .finish()
    }
}

/// False while the partner is recovering its database: its acknowledgements cannot vouch that
/// it holds no forgotten lease.
fn partner_vouches(partner: Option<PeerState>) -> bool {
    !matches!(partner, Some(PeerState::Recover | PeerState::RecoverWait))
}

/// States of a partner that is alive and serves (or is about to serve) clients: seeing one
/// voids a PARTNER-DOWN that assumed the partner silent.
fn serving_capable(s: PeerState) -> bool {
    !matches!(
        s,
        PeerState::Recover | PeerState::RecoverWait | PeerState::Paused | PeerState::Shutdown
    )
}

/// Partner states that say it is not serving now but hide whether it was in PARTNER-DOWN (and
/// used our pool) before.
fn hides_history(s: PeerState) -> bool {
    matches!(
        s,
        PeerState::Paused | PeerState::Shutdown | PeerState::Recover | PeerState::RecoverWait
    )
}

/// States that turn FREE when the partner acknowledges them.
fn frees(state: BindingState) -> bool {
    matches!(
        state,
        BindingState::Expired | BindingState::Released | BindingState::Reset
    )
}

/// The partner's dialect from its vendor class: `tandem…` is a Tandem server, anything else is
/// treated as ISC.
fn dialect_of(vendor_class: Option<&[u8]>) -> Dialect {
    match vendor_class {
        Some(v) if v.starts_with(b"tandem") => Dialect::Tandem,
        _ => Dialect::Isc,
    }
}

/// CONTACT goes out after a third of the partner's receive timer without sending (at least 1 s).
fn contact_interval_ms(partner_receive_timer: u32) -> u64 {
    (u64::from(partner_receive_timer) * 1000 / 3).max(1000)
}

/// The reaction table: where a server in `my` state goes when the partner reports `partner`
/// (digest §2.2, with the deviations listed in the module documentation). `None`: stay.
pub fn next_state(
    my: PeerState,
    partner: PeerState,
) -> Option<(PeerState, Option<PartnerDownCause>)> {
    use PeerState::*;
    let pd = |c| Some((PartnerDown, Some(c)));
    match (my, partner) {
        (Normal, PartnerDown) => Some((PotentialConflict, None)),
        (Normal, Recover) => pd(PartnerDownCause::PartnerRecovering),
        (Normal, Shutdown) => pd(PartnerDownCause::PartnerShutdown),
        (Normal, Paused) => Some((CommunicationsInterrupted, None)),
        (Normal, PotentialConflict | ResolutionInterrupted) => Some((PotentialConflict, None)),

        (CommunicationsInterrupted, Recover) => pd(PartnerDownCause::PartnerRecovering),
        (
            CommunicationsInterrupted,
            Normal | CommunicationsInterrupted | RecoverDone | RecoverWait,
        ) => Some((Normal, None)),
        (
            CommunicationsInterrupted,
            PotentialConflict | PartnerDown | ResolutionInterrupted | ConflictDone,
        ) => Some((PotentialConflict, None)),
        (CommunicationsInterrupted, Shutdown) => pd(PartnerDownCause::PartnerShutdown),

        (PartnerDown, RecoverDone) => Some((Normal, None)),
        (
            PartnerDown,
            Normal
            | CommunicationsInterrupted
            | PartnerDown
            | PotentialConflict
            | ResolutionInterrupted
            | ConflictDone,
        ) => Some((PotentialConflict, None)),

        (RecoverDone, Normal | RecoverDone) => Some((Normal, None)),
        (RecoverDone, Shutdown) => pd(PartnerDownCause::PartnerShutdown),

        (PotentialConflict, Recover) => pd(PartnerDownCause::PartnerRecovering),
        (PotentialConflict, Shutdown) => pd(PartnerDownCause::PartnerShutdown),

        (ConflictDone, Normal) => Some((Normal, None)),
        (ConflictDone, Shutdown) => pd(PartnerDownCause::PartnerShutdown),
        (ConflictDone, Recover) => pd(PartnerDownCause::PartnerRecovering),

        (ResolutionInterrupted, Shutdown) => pd(PartnerDownCause::PartnerShutdown),
        (ResolutionInterrupted, Recover) => pd(PartnerDownCause::PartnerRecovering),
        (ResolutionInterrupted, Paused | Startup) => None,
        (ResolutionInterrupted, _) => Some((PotentialConflict, None)),

        _ => None,
    }
}

#[cfg(test)]
mod tests;

/// The batch forms of `local_update` and `ack_partner_update` (what the daemon's relationship
/// thread uses): message packing and acknowledgement order.
#[cfg(test)]
mod batch_tests {
    use std::net::Ipv4Addr;

    use tandem_dataplane::binding::{Binding, BindingState, ClientKey};
    use tandem_dataplane::time::Time;

    use super::*;

    const T0: u64 = 1_700_000_000;

    fn lease(n: u8) -> Binding {
        let mut b = Binding::empty(Ipv4Addr::new(10, 0, 0, n), BindingState::Active);
        b.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, n]);
        b.htype = 1;
        b.hlen = 6;
        b.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, n]);
        b.expires = T0 as u32 + 300;
        b.start = T0 as u32;
        b.cltt = b.start;
        b.sent_expiry = T0 as u32 + 900;
        b
    }

    /// A fresh primary and secondary, connected and in NORMAL; `batch_max` bindings per
    /// BNDUPD, a window of 4 messages.
    fn normal_pair(batch_max: u16) -> [Peer<MemoryStore>; 2] {
        let now = Time::from_secs(T0);
        let mk = |role| {
            let mut c = PeerConfig::new(b"rel", role);
            c.batch_max = batch_max;
            c.max_unacked = 4;
            Peer::new(c, MemoryStore::default(), Start::Fresh, now).expect("valid config")
        };
        let mut p = [mk(Role::Primary), mk(Role::Secondary)];
        for s in &mut p {
            s.connected(now);
        }
        shuttle(&mut p, now);
        assert_eq!(p[0].state(), PeerState::Normal);
        assert_eq!(p[1].state(), PeerState::Normal);
        assert_eq!(p[0].dialect(), Dialect::Tandem);
        p
    }

    /// Deliver every message both ways until none is left; return what each side sent and
    /// the events it raised.
    fn shuttle(p: &mut [Peer<MemoryStore>; 2], now: Time) -> [(Vec<Message>, Vec<Event>); 2] {
        let mut seen: [(Vec<Message>, Vec<Event>); 2] = Default::default();
        loop {
            let mut moved = false;
            for i in 0..2 {
                while let Some(m) = p[i].poll_transmit() {
                    moved = true;
                    seen[i].0.push(m.clone());
                    p[1 - i].handle_message(now, m);
                }
                while let Some(e) = p[i].poll_event() {
                    if e == Event::SendAllBindings {
                        // No bindings here: the full update is empty.
                        p[i].end_full_update(now);
                    }
                    seen[i].1.push(e);
                }
            }
            if !moved {
                return seen;
            }
        }
    }

    fn bndupds(msgs: &[Message]) -> Vec<usize> {
        msgs.iter()
            .filter_map(|m| match &m.body {
                Body::BndUpd(u) => Some(u.bindings.len()),
                _ => None,
            })
            .collect()
    }

    fn partner_ids(events: &[Event]) -> Vec<UpdateId> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::PartnerBinding { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_batch_of_local_updates_shares_bndupds() {
        let now = Time::from_secs(T0);
        let mut p = normal_pair(4);
        p[0].local_updates(now, (1..=10).map(lease));
        let seen = shuttle(&mut p, now);
        // 10 bindings, 4 per message: 3 messages, not one per binding.
        assert_eq!(bndupds(&seen[0].0), vec![4, 4, 2]);
        assert_eq!(partner_ids(&seen[1].1).len(), 10);
        // One at a time, each goes out alone while the window has room.
        let mut q = normal_pair(4);
        for n in 1..=3 {
            q[0].local_update(now, lease(n));
        }
        let seen = shuttle(&mut q, now);
        assert_eq!(bndupds(&seen[0].0), vec![1, 1, 1]);
    }

    #[test]
    fn bndupds_stay_within_2048_bytes_with_a_digest() {
        use crate::failover::codec::Codec;
        let now = Time::from_secs(T0);
        let mut p = normal_pair(32);
        // Long client identifiers (not the hardware address): about 100 bytes per binding,
        // so 32 of them do not fit in one message.
        let big = (1..=32).map(|n| {
            let mut b = lease(n);
            b.client = ClientKey::new(&[n; 32]);
            b
        });
        p[0].local_updates(now, big);
        let seen = shuttle(&mut p, now);
        let counts = bndupds(&seen[0].0);
        assert!(counts.len() > 1, "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 32);
        let signed = Codec::new(Dialect::Tandem).with_secret(b"secret");
        for m in seen[0]
            .0
            .iter()
            .filter(|m| matches!(m.body, Body::BndUpd(_)))
        {
            let wire = signed.encode_to_vec(m).expect("fits in 2048 bytes");
            assert!(wire.len() <= crate::failover::codec::MAX_MESSAGE_LEN);
        }
        // Every binding got to the partner.
        assert_eq!(partner_ids(&seen[1].1).len(), 32);
    }

    #[test]
    fn offers_are_never_queued_by_the_batch_form() {
        let now = Time::from_secs(T0);
        let mut p = normal_pair(8);
        let mut offered = lease(2);
        offered.state = BindingState::Offered;
        p[0].local_updates(now, [lease(1), offered, lease(3)]);
        let seen = shuttle(&mut p, now);
        assert_eq!(bndupds(&seen[0].0), vec![2]);
        assert_eq!(p[0].pending_updates(), 2);
    }

    #[test]
    fn batched_verdicts_send_one_bndack_per_bndupd_in_arrival_order() {
        let now = Time::from_secs(T0);
        let mut p = normal_pair(3);
        p[0].local_updates(now, (1..=5).map(lease));
        let seen = shuttle(&mut p, now);
        let ids = partner_ids(&seen[1].1);
        assert_eq!(ids.len(), 5);
        // Refuse the fourth binding, accept the others, all in one call.
        let verdicts = ids.iter().enumerate().map(|(k, id)| {
            let r = if k == 3 {
                Err(RejectReason::OutdatedBindingInfo)
            } else {
                Ok(())
            };
            (*id, r)
        });
        p[1].ack_partner_updates(now, verdicts);
        let seen = shuttle(&mut p, now);
        let acks: Vec<Vec<(Ipv4Addr, Option<RejectReason>)>> = seen[1]
            .0
            .iter()
            .filter_map(|m| match &m.body {
                Body::BndAck(a) => Some(
                    a.acks
                        .iter()
                        .map(|x| (x.binding.assigned_ip, x.reject_reason))
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        let ip = |n| Ipv4Addr::new(10, 0, 0, n);
        assert_eq!(
            acks,
            vec![
                vec![(ip(1), None), (ip(2), None), (ip(3), None)],
                vec![
                    (ip(4), Some(RejectReason::OutdatedBindingInfo)),
                    (ip(5), None)
                ],
            ]
        );
        // The sender saw four acknowledgements and one refusal, and has nothing outstanding.
        let acked = seen[0]
            .1
            .iter()
            .filter(|e| matches!(e, Event::UpdateAcked { .. }))
            .count();
        let refused = seen[0]
            .1
            .iter()
            .filter(|e| matches!(e, Event::UpdateRejected { .. }))
            .count();
        assert_eq!((acked, refused), (4, 1));
        assert_eq!(p[0].pending_updates(), 0);
    }

    #[test]
    fn verdicts_arriving_in_pieces_complete_a_bndack_only_when_all_are_in() {
        let now = Time::from_secs(T0);
        let mut p = normal_pair(4);
        p[0].local_updates(now, (1..=4).map(lease));
        let seen = shuttle(&mut p, now);
        let ids = partner_ids(&seen[1].1);
        p[1].ack_partner_updates(now, ids[..3].iter().map(|id| (*id, Ok(()))));
        assert!(shuttle(&mut p, now)[1].0.is_empty());
        // The last verdict completes the message.
        p[1].ack_partner_updates(now, [(ids[3], Ok(()))]);
        let seen = shuttle(&mut p, now);
        let n: Vec<usize> = seen[1]
            .0
            .iter()
            .filter_map(|m| match &m.body {
                Body::BndAck(a) => Some(a.acks.len()),
                _ => None,
            })
            .collect();
        assert_eq!(n, vec![4]);
        assert_eq!(p[0].pending_updates(), 0);
        // Verdicts for a message already acknowledged are ignored.
        p[1].ack_partner_updates(now, ids.iter().map(|id| (*id, Ok(()))));
        assert!(shuttle(&mut p, now)[1].0.is_empty());
    }
}
