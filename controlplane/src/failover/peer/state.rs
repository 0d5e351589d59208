//! The failover states and what each one lets a server do.

use crate::failover::message::ServerState;

/// A failover state of one server in one relationship (draft-12 §9, digest §2.1).
///
/// Closed set: a wire value this implementation does not know stays a [`ServerState::Other`]
/// and is never turned into a `PeerState`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Just started: probing the partner, serving nobody.
    Startup,
    /// In contact with the partner; each server answers its own clients.
    Normal,
    /// Out of contact; serving from its own pool with MCLT-capped leases.
    CommunicationsInterrupted,
    /// The partner is known (or declared) down; the whole pool after MCLT.
    PartnerDown,
    /// Both may have allocated: reconciling bindings, serving nobody.
    PotentialConflict,
    /// Lost contact while reconciling; serving from its own pool like COMMUNICATIONS-INTERRUPTED.
    ResolutionInterrupted,
    /// Primary only: reconciliation finished on this side; serving from its own pool.
    ConflictDone,
    /// Fetching the partner's bindings (the local database is missing or stale).
    Recover,
    /// Bindings fetched; waiting until MCLT has passed since RECOVER began.
    RecoverWait,
    /// Waited out MCLT; renewing existing clients only until the partner agrees to NORMAL.
    RecoverDone,
    /// Administratively paused (a short outage); the partner treats it as out of contact.
    Paused,
    /// Administratively shut down; the partner moves to PARTNER-DOWN.
    Shutdown,
}

impl PeerState {
    /// Every state, in wire-code order (RECOVER-WAIT last).
    pub const ALL: [PeerState; 12] = [
        PeerState::Startup,
        PeerState::Normal,
        PeerState::CommunicationsInterrupted,
        PeerState::PartnerDown,
        PeerState::PotentialConflict,
        PeerState::Recover,
        PeerState::Paused,
        PeerState::Shutdown,
        PeerState::RecoverDone,
        PeerState::ResolutionInterrupted,
        PeerState::ConflictDone,
        PeerState::RecoverWait,
    ];

    /// The wire value (ISC numbering; RECOVER-WAIT is 254).
    pub const fn to_wire(self) -> ServerState {
        match self {
            PeerState::Startup => ServerState::Startup,
            PeerState::Normal => ServerState::Normal,
            PeerState::CommunicationsInterrupted => ServerState::CommunicationsInterrupted,
            PeerState::PartnerDown => ServerState::PartnerDown,
            PeerState::PotentialConflict => ServerState::PotentialConflict,
            PeerState::ResolutionInterrupted => ServerState::ResolutionInterrupted,
            PeerState::ConflictDone => ServerState::ConflictDone,
            PeerState::Recover => ServerState::Recover,
            PeerState::RecoverWait => ServerState::RecoverWait,
            PeerState::RecoverDone => ServerState::RecoverDone,
            PeerState::Paused => ServerState::Paused,
            PeerState::Shutdown => ServerState::Shutdown,
        }
    }

    /// The state for a wire value; `None` for codes this implementation does not know.
    pub const fn from_wire(s: ServerState) -> Option<PeerState> {
        Some(match s {
            ServerState::Startup => PeerState::Startup,
            ServerState::Normal => PeerState::Normal,
            ServerState::CommunicationsInterrupted => PeerState::CommunicationsInterrupted,
            ServerState::PartnerDown => PeerState::PartnerDown,
            ServerState::PotentialConflict => PeerState::PotentialConflict,
            ServerState::ResolutionInterrupted => PeerState::ResolutionInterrupted,
            ServerState::ConflictDone => PeerState::ConflictDone,
            ServerState::Recover => PeerState::Recover,
            ServerState::RecoverWait => PeerState::RecoverWait,
            ServerState::RecoverDone => PeerState::RecoverDone,
            ServerState::Paused => PeerState::Paused,
            ServerState::Shutdown => PeerState::Shutdown,
            ServerState::Other(_) => return None,
        })
    }

    /// A stable one-byte code for persistence (the wire code).
    pub const fn code(self) -> u8 {
        self.to_wire().code()
    }

    /// The state for a persisted code.
    pub const fn from_code(code: u8) -> Option<PeerState> {
        PeerState::from_wire(ServerState::from_code(code))
    }

    /// Short upper-case name, as the draft writes it.
    pub const fn name(self) -> &'static str {
        match self {
            PeerState::Startup => "STARTUP",
            PeerState::Normal => "NORMAL",
            PeerState::CommunicationsInterrupted => "COMMUNICATIONS-INTERRUPTED",
            PeerState::PartnerDown => "PARTNER-DOWN",
            PeerState::PotentialConflict => "POTENTIAL-CONFLICT",
            PeerState::ResolutionInterrupted => "RESOLUTION-INTERRUPTED",
            PeerState::ConflictDone => "CONFLICT-DONE",
            PeerState::Recover => "RECOVER",
            PeerState::RecoverWait => "RECOVER-WAIT",
            PeerState::RecoverDone => "RECOVER-DONE",
            PeerState::Paused => "PAUSED",
            PeerState::Shutdown => "SHUTDOWN",
        }
    }

    /// What a server in this state may do for clients (digest §2.1, Windows/draft semantics).
    pub const fn service(self) -> Service {
        match self {
            PeerState::Normal => Service::OwnBuckets,
            PeerState::CommunicationsInterrupted
            | PeerState::PartnerDown
            | PeerState::ResolutionInterrupted
            | PeerState::ConflictDone => Service::Everyone,
            PeerState::RecoverDone => Service::RenewOnly,
            PeerState::Startup
            | PeerState::PotentialConflict
            | PeerState::Recover
            | PeerState::RecoverWait
            | PeerState::Paused
            | PeerState::Shutdown => Service::Nobody,
        }
    }

    /// The state a server moves to when it loses (or never gets) contact with its partner
    /// (digest §2.2 "communication lost"): NORMAL → COMMUNICATIONS-INTERRUPTED,
    /// POTENTIAL-CONFLICT → RESOLUTION-INTERRUPTED, every other state stays.
    pub const fn on_contact_lost(self) -> PeerState {
        match self {
            PeerState::Normal => PeerState::CommunicationsInterrupted,
            PeerState::PotentialConflict => PeerState::ResolutionInterrupted,
            other => other,
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which clients a state lets a server answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// Nobody.
    Nobody,
    /// Only clients that already hold a binding here (renewing or rebinding).
    RenewOnly,
    /// Clients whose hash bucket this server owns (NORMAL).
    OwnBuckets,
    /// Every client (load balancing is off).
    Everyone,
}

/// Why a server is in PARTNER-DOWN, which decides how much of the partner's pool it may take.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PartnerDownCause {
    /// An operator declared the partner down (asserting it is not serving).
    Administrative,
    /// The partner announced SHUTDOWN.
    PartnerShutdown,
    /// The partner announced RECOVER (it lost its database and serves nobody until it has ours).
    PartnerRecovering,
    /// The state-switchover timer fired while out of contact: the partner may still be alive
    /// on the other side of a partition.
    Automatic,
}

impl PartnerDownCause {
    /// True if the partner is known not to be serving, so the whole pool (including expired and
    /// released addresses) may be taken after MCLT. False for [`PartnerDownCause::Automatic`],
    /// where only the partner's unleased pool may be taken (see the module docs of
    /// [`super`] on the split-brain fence).
    pub const fn partner_silent(self) -> bool {
        !matches!(self, PartnerDownCause::Automatic)
    }

    /// A stable one-byte code for persistence.
    pub const fn code(self) -> u8 {
        match self {
            PartnerDownCause::Administrative => 1,
            PartnerDownCause::PartnerShutdown => 2,
            PartnerDownCause::PartnerRecovering => 3,
            PartnerDownCause::Automatic => 4,
        }
    }

    /// The cause for a persisted code.
    pub const fn from_code(code: u8) -> Option<PartnerDownCause> {
        Some(match code {
            1 => PartnerDownCause::Administrative,
            2 => PartnerDownCause::PartnerShutdown,
            3 => PartnerDownCause::PartnerRecovering,
            4 => PartnerDownCause::Automatic,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_round_trip_and_recover_wait_is_254() {
        for s in PeerState::ALL {
            assert_eq!(PeerState::from_wire(s.to_wire()), Some(s));
            assert_eq!(PeerState::from_code(s.code()), Some(s));
        }
        assert_eq!(PeerState::RecoverWait.code(), 254);
        assert_eq!(PeerState::Normal.code(), 2);
        assert_eq!(PeerState::ConflictDone.code(), 11);
        assert_eq!(PeerState::from_wire(ServerState::Other(0)), None);
        assert_eq!(PeerState::from_code(12), None);
    }

    #[test]
    fn quiet_states_serve_nobody() {
        for s in [
            PeerState::Startup,
            PeerState::PotentialConflict,
            PeerState::Recover,
            PeerState::RecoverWait,
            PeerState::Paused,
            PeerState::Shutdown,
        ] {
            assert_eq!(s.service(), Service::Nobody, "{s}");
        }
        assert_eq!(PeerState::RecoverDone.service(), Service::RenewOnly);
        assert_eq!(PeerState::Normal.service(), Service::OwnBuckets);
        assert_eq!(PeerState::ConflictDone.service(), Service::Everyone);
        assert_eq!(
            PeerState::ResolutionInterrupted.service(),
            Service::Everyone
        );
    }

    #[test]
    fn contact_lost_mapping() {
        assert_eq!(
            PeerState::Normal.on_contact_lost(),
            PeerState::CommunicationsInterrupted
        );
        assert_eq!(
            PeerState::PotentialConflict.on_contact_lost(),
            PeerState::ResolutionInterrupted
        );
        for s in PeerState::ALL {
            if !matches!(s, PeerState::Normal | PeerState::PotentialConflict) {
                assert_eq!(s.on_contact_lost(), s);
            }
        }
    }

    #[test]
    fn partner_down_causes() {
        for c in [
            PartnerDownCause::Administrative,
            PartnerDownCause::PartnerShutdown,
            PartnerDownCause::PartnerRecovering,
            PartnerDownCause::Automatic,
        ] {
            assert_eq!(PartnerDownCause::from_code(c.code()), Some(c));
        }
        assert!(!PartnerDownCause::Automatic.partner_silent());
        assert!(PartnerDownCause::Administrative.partner_silent());
        assert_eq!(PartnerDownCause::from_code(0), None);
    }
}
