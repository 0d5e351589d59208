//! What the state machine persists, and the trait through which it does.
//!
//! Every change of the relationship's durable facts (our state and its start time, the
//! partner's last state, MCLT, the hash-bucket assignment, PARTNER-DOWN's cause, RECOVER's start
//! time) goes through [`StateStore::persist`] *before* it takes effect, as draft-12 requires.
//! If the write fails the change is refused and the machine stays where it was.

use tandem_dataplane::hash::BucketMap;

use super::config::{Mode, Role};
use super::state::{PartnerDownCause, PeerState};

/// The durable facts of one relationship.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedState {
    /// Our state (never STARTUP: a server in STARTUP persists the state it will return to).
    pub state: PeerState,
    /// When we entered `state` (seconds since the epoch, our clock).
    pub stos: u32,
    /// The state before PAUSED or SHUTDOWN (equal to `state` otherwise).
    pub prior: PeerState,
    /// Why we are in PARTNER-DOWN (also kept through PAUSED and SHUTDOWN entered from it).
    pub partner_down_cause: Option<PartnerDownCause>,
    /// When RECOVER began (kept through RECOVER-WAIT so a restart does not reset the wait).
    pub recover_stos: u32,
    /// The partner's last reported state.
    pub partner_state: Option<PeerState>,
    /// The partner's start time of that state (the partner's clock).
    pub partner_stos: u32,
    /// The time field of the last message heard from the partner (the partner's clock), as of
    /// this write. Used after a restart to place the split-brain fence conservatively.
    pub partner_last_heard: u32,
    /// When (our clock) we last saw the partner in a state where it serves (or is about to
    /// serve) clients. A PARTNER-DOWN that assumed a silent partner is not restored without
    /// contact if the partner was seen alive after it began.
    pub partner_seen_at: u32,
    /// The relationship's MCLT (the secondary stores the primary's).
    pub mclt: u32,
    /// The hash-bucket assignment (the primary's buckets).
    pub hba: BucketMap,
    /// The mode in effect.
    pub mode: Mode,
    /// True while a brand-new relationship has never finished its first recovery (the MCLT
    /// wait may be skipped when both servers are new).
    pub fresh: bool,
}

const MAGIC: [u8; 4] = *b"TFPS";
const VERSION: u8 = 1;
/// Length of [`PersistedState::to_bytes`]' output.
pub const PERSISTED_LEN: usize = 4 + 1 + 1 + 4 + 1 + 1 + 4 + 1 + 4 + 4 + 4 + 4 + 32 + 4 + 1 + 4;

impl PersistedState {
    /// A fixed-size, versioned, checksummed byte form for the daemon to write atomically.
    pub fn to_bytes(&self) -> [u8; PERSISTED_LEN] {
        let mut o = [0u8; PERSISTED_LEN];
        let mut w = Writer { buf: &mut o, at: 0 };
        w.put(&MAGIC);
        w.put(&[VERSION, self.state.code()]);
        w.put(&self.stos.to_be_bytes());
        w.put(&[
            self.prior.code(),
            self.partner_down_cause.map_or(0, PartnerDownCause::code),
        ]);
        w.put(&self.recover_stos.to_be_bytes());
        w.put(&[self.partner_state.map_or(0, PeerState::code)]);
        w.put(&self.partner_stos.to_be_bytes());
        w.put(&self.partner_last_heard.to_be_bytes());
        w.put(&self.partner_seen_at.to_be_bytes());
        w.put(&self.mclt.to_be_bytes());
        w.put(self.hba.as_bytes());
        let (kind, a, b) = match self.mode {
            Mode::LoadBalance { primary_percent } => (1u8, 0u8, primary_percent),
            Mode::HotStandby {
                active,
                reserve_percent,
            } => (2, u8::from(active == Role::Secondary), reserve_percent),
        };
        w.put(&[kind, a, b, 0]);
        w.put(&[u8::from(self.fresh)]);
        let crc = checksum(&w.buf[..w.at]);
        w.put(&crc.to_be_bytes());
        o
    }

    /// Parse [`PersistedState::to_bytes`]' output.
    pub fn from_bytes(buf: &[u8]) -> Result<PersistedState, StoreError> {
        if buf.len() != PERSISTED_LEN {
            return Err(StoreError::Corrupt("length"));
        }
        let (body, crc) = buf.split_at(PERSISTED_LEN - 4);
        if checksum(body).to_be_bytes() != crc {
            return Err(StoreError::Corrupt("checksum"));
        }
        let mut r = Reader { buf: body, at: 0 };
        if r.take::<4>() != MAGIC {
            return Err(StoreError::Corrupt("magic"));
        }
        let [version, state] = r.take::<2>();
        if version != VERSION {
            return Err(StoreError::Corrupt("version"));
        }
        let state = PeerState::from_code(state).ok_or(StoreError::Corrupt("state"))?;
        let stos = u32::from_be_bytes(r.take());
        let [prior, cause] = r.take::<2>();
        let prior = PeerState::from_code(prior).ok_or(StoreError::Corrupt("prior state"))?;
        let partner_down_cause = match cause {
            0 => None,
            c => Some(PartnerDownCause::from_code(c).ok_or(StoreError::Corrupt("cause"))?),
        };
        let recover_stos = u32::from_be_bytes(r.take());
        let [ps] = r.take::<1>();
        let partner_state = match ps {
            0 => None,
            c => Some(PeerState::from_code(c).ok_or(StoreError::Corrupt("partner state"))?),
        };
        let partner_stos = u32::from_be_bytes(r.take());
        let partner_last_heard = u32::from_be_bytes(r.take());
        let partner_seen_at = u32::from_be_bytes(r.take());
        let mclt = u32::from_be_bytes(r.take());
        let hba = BucketMap::from_bytes(r.take());
        let [kind, a, b, _] = r.take::<4>();
        let mode = match (kind, a) {
            (1, _) if b <= 100 => Mode::LoadBalance { primary_percent: b },
            (2, 0 | 1) if b <= 100 => Mode::HotStandby {
                active: if a == 1 {
                    Role::Secondary
                } else {
                    Role::Primary
                },
                reserve_percent: b,
            },
            _ => return Err(StoreError::Corrupt("mode")),
        };
        let [fresh] = r.take::<1>();
        Ok(PersistedState {
            state,
            stos,
            prior,
            partner_down_cause,
            recover_stos,
            partner_state,
            partner_stos,
            partner_last_heard,
            partner_seen_at,
            mclt,
            hba,
            mode,
            fresh: fresh != 0,
        })
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        // Callers write exactly PERSISTED_LEN bytes in total, so the range is in bounds.
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        // from_bytes checked the total length, and the reads add up to it.
        out.copy_from_slice(&self.buf[self.at..self.at + N]);
        self.at += N;
        out
    }
}

/// FNV-1a over the bytes (enough to detect a torn or corrupted write).
fn checksum(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Why persisting (or loading) the relationship state failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The write did not reach stable storage.
    #[error("failover state not persisted: {0}")]
    Io(String),
    /// Stored bytes are not a valid state.
    #[error("stored failover state is corrupt ({0})")]
    Corrupt(&'static str),
}

/// Durable storage for one relationship's [`PersistedState`], implemented by the daemon.
pub trait StateStore {
    /// Write `state` to stable storage; return only once it is there.
    fn persist(&mut self, state: &PersistedState) -> Result<(), StoreError>;

    /// Record that the server is alive at `now` (seconds since the epoch; called every
    /// [`super::Peer`] keep-alive interval). Need not be durable at once: it only tells a restart
    /// how long the server was away. The default records nothing.
    fn keep_alive(&mut self, now: u32) {
        let _ = now;
    }

    /// The last time recorded by [`StateStore::keep_alive`] (or the last write) before this
    /// start, if the store knows it.
    fn last_alive(&self) -> Option<u32> {
        None
    }
}

/// A [`StateStore`] in memory (tests and simulations). Can be told to fail.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// The last state written.
    pub saved: Option<PersistedState>,
    /// Number of successful writes.
    pub writes: u64,
    /// While true, every write fails.
    pub fail: bool,
    /// The last [`StateStore::keep_alive`] time.
    pub alive: Option<u32>,
}

impl StateStore for MemoryStore {
    fn persist(&mut self, state: &PersistedState) -> Result<(), StoreError> {
        if self.fail {
            return Err(StoreError::Io("injected failure".into()));
        }
        self.saved = Some(state.clone());
        self.writes += 1;
        Ok(())
    }

    fn keep_alive(&mut self, now: u32) {
        self.alive = Some(now);
    }

    fn last_alive(&self) -> Option<u32> {
        self.alive
    }
}

/// How a `Peer` starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// A brand-new relationship: no client was ever served under it by either server. Starts in
    /// RECOVER; if the partner is new too, the MCLT wait is skipped (first bring-up).
    Fresh,
    /// The state (and the lease database) was lost: RECOVER with the full MCLT wait.
    Lost,
    /// A restart with the state read back from the store: STARTUP, then the saved state.
    Saved(PersistedState),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PersistedState {
        PersistedState {
            state: PeerState::PartnerDown,
            stos: 1_700_000_000,
            prior: PeerState::PartnerDown,
            partner_down_cause: Some(PartnerDownCause::Automatic),
            recover_stos: 7,
            partner_state: Some(PeerState::RecoverWait),
            partner_stos: 1_699_999_000,
            partner_last_heard: 1_699_999_500,
            partner_seen_at: 1_699_999_600,
            mclt: 3600,
            hba: BucketMap::from_split(179),
            mode: Mode::HotStandby {
                active: Role::Secondary,
                reserve_percent: 5,
            },
            fresh: true,
        }
    }

    #[test]
    fn bytes_round_trip() {
        let s = sample();
        assert_eq!(PersistedState::from_bytes(&s.to_bytes()), Ok(s.clone()));
        let mut t = s;
        t.partner_state = None;
        t.partner_down_cause = None;
        t.mode = Mode::LoadBalance {
            primary_percent: 70,
        };
        t.fresh = false;
        assert_eq!(PersistedState::from_bytes(&t.to_bytes()), Ok(t));
    }

    #[test]
    fn corruption_is_detected() {
        let b = sample().to_bytes();
        for i in 0..PERSISTED_LEN {
            let mut c = b;
            c[i] ^= 0x40;
            assert!(PersistedState::from_bytes(&c).is_err(), "byte {i}");
        }
        assert_eq!(
            PersistedState::from_bytes(&b[..10]),
            Err(StoreError::Corrupt("length"))
        );
    }

    #[test]
    fn memory_store_can_fail() {
        let mut m = MemoryStore::default();
        assert!(m.persist(&sample()).is_ok());
        m.fail = true;
        assert!(m.persist(&sample()).is_err());
        assert_eq!(m.writes, 1);
    }
}
