//! Configuration of one failover relationship, as the `Peer` sees it.

use tandem_dataplane::binding::BindingState;
use tandem_dataplane::hash::BucketMap;

/// This server's role in the relationship (draft-12 primary/secondary).
///
/// The primary sends CONNECT, sets MCLT and the hash-bucket assignment, allocates FREE addresses
/// and wins ties in conflict resolution; the secondary allocates BACKUP addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The primary server.
    Primary,
    /// The secondary server.
    Secondary,
}

impl Role {
    /// The other role.
    pub const fn other(self) -> Role {
        match self {
            Role::Primary => Role::Secondary,
            Role::Secondary => Role::Primary,
        }
    }

    /// The binding state of the addresses this role may allocate (FREE or BACKUP).
    pub const fn pool_state(self) -> BindingState {
        match self {
            Role::Primary => BindingState::Free,
            Role::Secondary => BindingState::Backup,
        }
    }
}

/// How the two servers share clients (Windows failover modes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Both answer clients: the primary the given percentage of hash buckets, the secondary the
    /// rest. Free addresses are split in the same proportion.
    LoadBalance {
        /// Share of clients (and of free addresses) the primary serves, 0..=100.
        primary_percent: u8,
    },
    /// One server answers everyone; the standby only steps in when the active one is out of
    /// contact, from its reserve of free addresses.
    HotStandby {
        /// Which role is the active server.
        active: Role,
        /// Share of free addresses the standby keeps for new clients while the active server
        /// is unreachable, 0..=100 (Windows default 5).
        reserve_percent: u8,
    },
}

impl Default for Mode {
    /// Load balance 50/50 (the Windows default).
    fn default() -> Mode {
        Mode::LoadBalance {
            primary_percent: 50,
        }
    }
}

impl Mode {
    /// The hash-bucket assignment the primary sends in CONNECT: the buckets the **primary**
    /// answers in NORMAL.
    pub fn primary_buckets(self) -> BucketMap {
        match self {
            Mode::LoadBalance { primary_percent } => BucketMap::from_percent(primary_percent),
            Mode::HotStandby {
                active: Role::Primary,
                ..
            } => BucketMap::FULL,
            Mode::HotStandby {
                active: Role::Secondary,
                ..
            } => BucketMap::EMPTY,
        }
    }

    /// The share (percent) of free addresses `role` should hold after pool balancing.
    pub fn pool_share(self, role: Role) -> u8 {
        match self {
            Mode::LoadBalance { primary_percent } => match role {
                Role::Primary => primary_percent.min(100),
                Role::Secondary => 100 - primary_percent.min(100),
            },
            Mode::HotStandby {
                active,
                reserve_percent,
            } => {
                let reserve = reserve_percent.min(100);
                if role == active {
                    100 - reserve
                } else {
                    reserve
                }
            }
        }
    }

    fn validate(self) -> Result<(), ConfigError> {
        match self {
            Mode::LoadBalance { primary_percent } if primary_percent > 100 => {
                Err(ConfigError::Percent(primary_percent))
            }
            Mode::HotStandby {
                reserve_percent, ..
            } if reserve_percent > 100 => Err(ConfigError::Percent(reserve_percent)),
            _ => Ok(()),
        }
    }
}

/// Everything the state machine needs to know about its relationship.
///
/// Defaults follow Windows Server failover: load balance 50/50, MCLT 1 h, automatic partner-down
/// off, tReceive 3 min (so the partner sends CONTACT every minute), startup 5 min, rebalance
/// 5 min, 60 s clock-skew limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// relationship-name, as sent in CONNECT (ASCII for ISC partners).
    pub name: Vec<u8>,
    /// This server's role.
    pub role: Role,
    /// The relationship's mode (must be the same on both servers).
    pub mode: Mode,
    /// Maximum client lead time in seconds. The secondary uses it only until the primary's
    /// CONNECT tells it the relationship's value.
    pub mclt_secs: u32,
    /// How many BNDUPDs the partner may have outstanding towards us (sent as max-unacked-bndupd).
    pub max_unacked: u32,
    /// Seconds without any message from the partner after which the link is dropped (sent as
    /// receive-timer; the partner sends CONTACT after a third of it).
    pub receive_timer_secs: u32,
    /// Seconds to stay in STARTUP waiting for the partner before falling back to the saved state.
    pub startup_secs: u32,
    /// State switchover interval: seconds in COMMUNICATIONS-INTERRUPTED after which the server
    /// moves to PARTNER-DOWN on its own. `None` (the default) disables it. Must be the same on
    /// both servers: each one fences its own pool assuming the partner uses this value.
    pub switchover_secs: Option<u32>,
    /// Seconds between pool-balancing passes in NORMAL.
    pub rebalance_secs: u32,
    /// Largest tolerated difference between the partners' clocks, in seconds.
    pub max_skew_secs: u32,
    /// vendor-class-identifier sent in CONNECT/CONNECTACK.
    pub vendor_class: Vec<u8>,
    /// Most bindings per BNDUPD towards a Tandem partner (ISC partners get one per message).
    pub batch_max: u16,
}

impl PeerConfig {
    /// A configuration with the Windows defaults for relationship `name` and role `role`.
    pub fn new(name: &[u8], role: Role) -> PeerConfig {
        PeerConfig {
            name: name.to_vec(),
            role,
            mode: Mode::default(),
            mclt_secs: 3600,
            max_unacked: 64,
            receive_timer_secs: 180,
            startup_secs: 300,
            switchover_secs: None,
            rebalance_secs: 300,
            max_skew_secs: 60,
            vendor_class: format!("tandem-{}", env!("CARGO_PKG_VERSION")).into_bytes(),
            batch_max: 32,
        }
    }

    /// The margin every cross-clock comparison adds: the skew limit plus one second of
    /// rounding.
    pub fn skew_allowance(&self) -> u32 {
        self.max_skew_secs.saturating_add(1)
    }

    /// Check the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(ConfigError::Name(self.name.len()));
        }
        if self.mclt_secs == 0 {
            return Err(ConfigError::ZeroMclt);
        }
        self.mode.validate()?;
        if self.max_unacked == 0 {
            return Err(ConfigError::ZeroWindow);
        }
        if self.receive_timer_secs < 3 {
            return Err(ConfigError::ReceiveTimer(self.receive_timer_secs));
        }
        if self.rebalance_secs == 0 {
            return Err(ConfigError::ZeroRebalance);
        }
        if self.batch_max == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        if let Some(s) = self.switchover_secs {
            let min = self.min_switchover_secs();
            if s < min {
                return Err(ConfigError::SwitchoverTooShort { secs: s, min });
            }
        }
        Ok(())
    }

    /// The shortest state switchover interval the split-brain fence allows: the receive timer
    /// plus twice the skew allowance (so the fence never bites while the link is up).
    pub fn min_switchover_secs(&self) -> u32 {
        self.receive_timer_secs
            .saturating_add(self.skew_allowance().saturating_mul(2))
    }
}

/// A configuration the state machine refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The relationship name must be 1..=255 bytes.
    #[error("relationship name must be 1 to 255 bytes, got {0}")]
    Name(usize),
    /// MCLT must not be zero (Windows refuses it too).
    #[error("MCLT must not be zero")]
    ZeroMclt,
    /// A percentage above 100.
    #[error("percentage {0} is above 100")]
    Percent(u8),
    /// max-unacked must be at least 1.
    #[error("max-unacked-bndupd must be at least 1")]
    ZeroWindow,
    /// The receive timer must be at least 3 s (CONTACT goes out every third of it).
    #[error("receive timer must be at least 3 s, got {0}")]
    ReceiveTimer(u32),
    /// The rebalance interval must not be zero.
    #[error("rebalance interval must not be zero")]
    ZeroRebalance,
    /// At least one binding per BNDUPD.
    #[error("bindings per BNDUPD must be at least 1")]
    ZeroBatch,
    /// The switchover interval is shorter than the fence needs.
    #[error("state switchover interval {secs} s is below the minimum {min} s (receive timer + 2 x skew allowance)")]
    SwitchoverTooShort {
        /// The configured interval.
        secs: u32,
        /// The minimum.
        min: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_windows_and_valid() {
        let c = PeerConfig::new(b"rel", Role::Primary);
        assert_eq!(c.mclt_secs, 3600);
        assert_eq!(c.switchover_secs, None);
        assert_eq!(
            c.mode,
            Mode::LoadBalance {
                primary_percent: 50
            }
        );
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validation_errors() {
        let mut c = PeerConfig::new(b"rel", Role::Primary);
        c.mclt_secs = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroMclt));
        c.mclt_secs = 60;
        c.switchover_secs = Some(10);
        assert_eq!(
            c.validate(),
            Err(ConfigError::SwitchoverTooShort {
                secs: 10,
                min: 180 + 2 * 61
            })
        );
        c.switchover_secs = Some(3600);
        c.mode = Mode::LoadBalance {
            primary_percent: 101,
        };
        assert_eq!(c.validate(), Err(ConfigError::Percent(101)));
        c.mode = Mode::default();
        c.name.clear();
        assert_eq!(c.validate(), Err(ConfigError::Name(0)));
    }

    #[test]
    fn buckets_and_shares_per_mode() {
        let lb = Mode::LoadBalance {
            primary_percent: 70,
        };
        assert_eq!(lb.primary_buckets().count(), 179);
        assert_eq!(lb.pool_share(Role::Primary), 70);
        assert_eq!(lb.pool_share(Role::Secondary), 30);
        let hs = Mode::HotStandby {
            active: Role::Secondary,
            reserve_percent: 5,
        };
        assert_eq!(hs.primary_buckets(), BucketMap::EMPTY);
        assert_eq!(hs.pool_share(Role::Secondary), 95);
        assert_eq!(hs.pool_share(Role::Primary), 5);
        let hs = Mode::HotStandby {
            active: Role::Primary,
            reserve_percent: 5,
        };
        assert_eq!(hs.primary_buckets(), BucketMap::FULL);
        assert_eq!(Role::Primary.pool_state(), BindingState::Free);
        assert_eq!(Role::Secondary.pool_state(), BindingState::Backup);
    }
}
