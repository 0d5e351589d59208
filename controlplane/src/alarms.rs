//! Alarms over the failover relationships: raised and cleared in the log (`warn` when raised,
//! `info` when cleared) and exported in `/metrics` (`tandem_alarm_active`,
//! `tandem_alarms_raised_total`).
//!
//! Two alarms per relationship:
//!
//! - `comm-interrupted`: the relationship has been in COMMUNICATIONS-INTERRUPTED for more than
//!   its `comm_interrupted_alarm` (counted from the moment it entered the state). Cleared when it
//!   leaves the state.
//! - `pool-low:<scope>`: in NORMAL or COMMUNICATIONS-INTERRUPTED, the addresses this server may
//!   allocate in the scope (FREE for the server that allocates from FREE, BACKUP for the other)
//!   fell below `pool_low_water_percent` percent of its target share, the target being
//!   `share_percent` percent of the scope's unleased addresses (FREE and BACKUP). Off when
//!   `pool_low_water_percent` is 0 or the target is 0. Hysteresis: once raised, the alarm clears
//!   only when the allocatable addresses are back at 1.5 times the threshold (or at the target
//!   itself, if that is lower), so that a pool hovering at the threshold does not flap. It also
//!   clears when the relationship leaves those two states (in PARTNER-DOWN a server allocates
//!   from both pools) or the condition can no longer be evaluated (alarm turned off, scope gone).
//!
//! Alarms of a relationship that disappears (removed from the configuration) are cleared.
//!
//! [`Alarms`] is the pure evaluator (time passed in); [`Monitor`] runs it on a thread at a
//! fixed interval over the relationships' statuses.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tandem_dataplane::time::Time;

use crate::failover::peer::PeerState;
use crate::failover::service::{RelationshipStatus, ScopePools};

/// Name of the COMMUNICATIONS-INTERRUPTED alarm.
pub const COMM_INTERRUPTED: &str = "comm-interrupted";
/// Prefix of the pool alarm's name; the scope's name follows (`pool-low:lan`).
pub const POOL_LOW_PREFIX: &str = "pool-low:";

const STATE_NORMAL: &str = PeerState::Normal.name();
const STATE_COMM_INTERRUPTED: &str = PeerState::CommunicationsInterrupted.name();

/// The name of the pool alarm of `scope`.
pub fn pool_low_name(scope: &str) -> String {
    format!("{POOL_LOW_PREFIX}{scope}")
}

/// A raised alarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    /// The relationship.
    pub relationship: String,
    /// [`COMM_INTERRUPTED`] or `pool-low:<scope>` (see [`pool_low_name`]).
    pub name: String,
    /// When it was raised (seconds since the epoch).
    pub since: u64,
    /// What was seen when it was raised, in words (with the numbers).
    pub detail: String,
}

/// A change of an alarm, as [`Alarms::evaluate`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlarmChange {
    /// The alarm was raised.
    Raised(Alarm),
    /// The alarm (as it was raised) was cleared; the text says why.
    Cleared(Alarm, String),
}

/// The key of an alarm: (relationship, alarm name).
pub type AlarmKey = (String, String);

/// The alarm evaluator: which alarms are raised, and how often each was raised.
#[derive(Clone, Debug, Default)]
pub struct Alarms {
    active: BTreeMap<AlarmKey, Alarm>,
    raised: BTreeMap<AlarmKey, u64>,
}

/// The numbers of a pool alarm for one scope, in units of 1/10 000 address (percent of
/// percent), so that the comparisons stay in integers.
struct PoolLevel {
    /// Addresses this server may allocate.
    allocatable: u64,
    /// Unleased addresses (FREE + BACKUP).
    unleased: u64,
    /// allocatable × 10 000.
    have: u128,
    /// The raise threshold: low% × share% × unleased.
    threshold: u128,
    /// The target: 100 × share% × unleased.
    target: u128,
}

impl PoolLevel {
    /// The level of `p` for relationship `s`, or `None` if the pool alarm does not apply.
    fn of(s: &RelationshipStatus, p: &ScopePools) -> Option<PoolLevel> {
        let state_applies = s.state == STATE_NORMAL || s.state == STATE_COMM_INTERRUPTED;
        if !state_applies || s.pool_low_percent == 0 || s.share_percent == 0 {
            return None;
        }
        let unleased = p.free.saturating_add(p.backup);
        if unleased == 0 {
            return None;
        }
        let allocatable = if s.allocates_from == "free" {
            p.free
        } else {
            p.backup
        };
        let share = u128::from(s.share_percent.min(100));
        let low = u128::from(s.pool_low_percent.min(100));
        Some(PoolLevel {
            allocatable,
            unleased,
            have: u128::from(allocatable) * 10_000,
            threshold: low * share * u128::from(unleased),
            target: 100 * share * u128::from(unleased),
        })
    }

    fn below_threshold(&self) -> bool {
        self.have < self.threshold
    }

    /// Back at 1.5 × the threshold, or at the target if that is lower.
    fn recovered(&self) -> bool {
        2 * self.have >= (3 * self.threshold).min(2 * self.target)
    }

    fn describe(&self, s: &RelationshipStatus, scope: &str) -> String {
        let pool = if s.allocates_from == "free" {
            "FREE"
        } else {
            "BACKUP"
        };
        format!(
            "scope {scope}: {} {pool} addresses left to allocate; this server's target is {}% \
             of the {} unleased ({:.1}), the alarm is under {}% of that ({:.1}) and clears at \
             {:.1}",
            self.allocatable,
            s.share_percent,
            self.unleased,
            self.target as f64 / 10_000.0,
            s.pool_low_percent,
            self.threshold as f64 / 10_000.0,
            (self.threshold as f64 * 1.5).min(self.target as f64) / 10_000.0,
        )
    }
}

impl Alarms {
    /// No alarm raised yet.
    pub fn new() -> Alarms {
        Alarms::default()
    }

    /// Evaluate every alarm against `statuses` at `now_unix` (seconds since the epoch): raise
    /// and clear them, log each change, and return the changes (clears first, then raises).
    pub fn evaluate(&mut self, statuses: &[RelationshipStatus], now_unix: u64) -> Vec<AlarmChange> {
        let mut changes = Vec::new();
        // Conditions met now: key → detail of a new alarm.
        let mut raise: Vec<(AlarmKey, String)> = Vec::new();
        // Alarms that stay raised (their condition holds, or has not recovered yet).
        let mut keep: Vec<AlarmKey> = Vec::new();
        for s in statuses {
            let key = (s.name.clone(), COMM_INTERRUPTED.to_string());
            if s.state == STATE_COMM_INTERRUPTED {
                let lasted = now_unix.saturating_sub(u64::from(s.state_since));
                if self.active.contains_key(&key) {
                    keep.push(key);
                } else if lasted > u64::from(s.comm_alarm_secs) {
                    let detail = format!(
                        "in {STATE_COMM_INTERRUPTED} for {lasted} s (alarm after {} s); \
                         partner {}, last contact {}",
                        s.comm_alarm_secs,
                        s.partner,
                        s.last_contact.map_or("never".to_string(), |t| format!(
                            "{} s ago",
                            now_unix.saturating_sub(t)
                        )),
                    );
                    raise.push((key, detail));
                }
            }
            for p in &s.pools {
                let key = (s.name.clone(), pool_low_name(&p.scope));
                let Some(level) = PoolLevel::of(s, p) else {
                    continue;
                };
                if self.active.contains_key(&key) {
                    if !level.recovered() {
                        keep.push(key);
                    }
                } else if level.below_threshold() {
                    raise.push((key, level.describe(s, &p.scope)));
                }
            }
        }

        let cleared: Vec<AlarmKey> = self
            .active
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in cleared {
            let Some(alarm) = self.active.remove(&key) else {
                continue;
            };
            let why = clear_reason(statuses, &alarm);
            tracing::info!(
                relationship = %alarm.relationship,
                alarm = %alarm.name,
                raised_at = alarm.since,
                lasted_secs = now_unix.saturating_sub(alarm.since),
                reason = %why,
                "alarm cleared"
            );
            changes.push(AlarmChange::Cleared(alarm, why));
        }
        for (key, detail) in raise {
            let alarm = Alarm {
                relationship: key.0.clone(),
                name: key.1.clone(),
                since: now_unix,
                detail,
            };
            tracing::warn!(
                relationship = %alarm.relationship,
                alarm = %alarm.name,
                detail = %alarm.detail,
                "alarm raised"
            );
            *self.raised.entry(key.clone()).or_insert(0) += 1;
            self.active.insert(key, alarm.clone());
            changes.push(AlarmChange::Raised(alarm));
        }
        changes
    }

    /// The raised alarms, by relationship then name.
    pub fn active(&self) -> Vec<Alarm> {
        self.active.values().cloned().collect()
    }

    /// How often each alarm was raised since start-up (only alarms raised at least once).
    pub fn raised_totals(&self) -> BTreeMap<AlarmKey, u64> {
        self.raised.clone()
    }
}

/// Why `alarm` no longer holds, in words.
fn clear_reason(statuses: &[RelationshipStatus], alarm: &Alarm) -> String {
    let Some(s) = statuses.iter().find(|s| s.name == alarm.relationship) else {
        return "the relationship is no longer configured".into();
    };
    if alarm.name == COMM_INTERRUPTED {
        return format!("the relationship is now in {}", s.state);
    }
    let scope = alarm
        .name
        .strip_prefix(POOL_LOW_PREFIX)
        .unwrap_or(&alarm.name);
    let Some(p) = s.pools.iter().find(|p| p.scope == scope) else {
        return format!("scope {scope} is no longer in the relationship");
    };
    match PoolLevel::of(s, p) {
        Some(level) => format!("recovered: {}", level.describe(s, scope)),
        None if s.state != STATE_NORMAL && s.state != STATE_COMM_INTERRUPTED => {
            format!("the relationship is now in {}", s.state)
        }
        None => "the pool alarm no longer applies (turned off, or no share to hold)".into(),
    }
}

/// Where a [`Monitor`] reads the relationships' statuses.
pub type StatusSource = Arc<dyn Fn() -> Vec<RelationshipStatus> + Send + Sync>;

struct Shared {
    alarms: Mutex<Alarms>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// A thread that evaluates the [`Alarms`] over the relationships' statuses at a fixed interval.
pub struct Monitor {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("active", &self.active().len())
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// Start the thread: it evaluates at once, then every `every` (at least 10 ms), until
    /// [`Monitor::stop`].
    pub fn spawn(source: StatusSource, every: Duration) -> std::io::Result<Monitor> {
        let every = every.max(Duration::from_millis(10));
        let shared = Arc::new(Shared {
            alarms: Mutex::new(Alarms::new()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-alarms".into())
            .spawn(move || loop {
                let statuses = source();
                let now = Time::now().secs();
                sh.alarms
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .evaluate(&statuses, now);
                let stop = sh.stop.lock().unwrap_or_else(|e| e.into_inner());
                let (stop, _) = sh
                    .wake
                    .wait_timeout_while(stop, every, |stop| !*stop)
                    .unwrap_or_else(|e| e.into_inner());
                if *stop {
                    return;
                }
            })?;
        Ok(Monitor {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The raised alarms, by relationship then name.
    pub fn active(&self) -> Vec<Alarm> {
        self.shared
            .alarms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .active()
    }

    /// The names of the alarms raised on `relationship` (for its status).
    pub fn active_names(&self, relationship: &str) -> Vec<String> {
        self.active()
            .into_iter()
            .filter(|a| a.relationship == relationship)
            .map(|a| a.name)
            .collect()
    }

    /// How often each alarm was raised since start-up (only alarms raised at least once).
    pub fn raised_totals(&self) -> BTreeMap<AlarmKey, u64> {
        self.shared
            .alarms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .raised_totals()
    }

    /// Stop the thread and wait for it (returns at once if it is already stopped).
    pub fn stop(&self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    /// A relationship in `state` since `T`, with a 300 s COMMUNICATIONS-INTERRUPTED alarm and a
    /// 10% pool low-water mark.
    fn rel(name: &str, state: &str) -> RelationshipStatus {
        RelationshipStatus {
            name: name.into(),
            partner: "10.0.0.2".into(),
            state: state.into(),
            state_since: T as u32,
            comm_alarm_secs: 300,
            pool_low_percent: 10,
            share_percent: 50,
            allocates_from: "free".into(),
            ..RelationshipStatus::default()
        }
    }

    fn pools(scope: &str, free: u64, backup: u64) -> ScopePools {
        ScopePools {
            scope: scope.into(),
            free,
            backup,
            ..ScopePools::default()
        }
    }

    fn names(changes: &[AlarmChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                AlarmChange::Raised(a) => format!("+{}/{}", a.relationship, a.name),
                AlarmChange::Cleared(a, _) => format!("-{}/{}", a.relationship, a.name),
            })
            .collect()
    }

    #[test]
    fn comm_interrupted_is_raised_only_past_the_threshold() {
        let mut al = Alarms::new();
        let s = [rel("r1", "COMMUNICATIONS-INTERRUPTED")];
        assert!(al.evaluate(&s, T).is_empty());
        assert!(
            al.evaluate(&s, T + 300).is_empty(),
            "exactly 300 s is not past 300 s"
        );
        let ch = al.evaluate(&s, T + 301);
        assert_eq!(names(&ch), ["+r1/comm-interrupted"]);
        let AlarmChange::Raised(a) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert_eq!(a.since, T + 301);
        assert!(a.detail.contains("301 s"), "{}", a.detail);
        // Raised once, however long it lasts.
        assert!(al.evaluate(&s, T + 900).is_empty());
        assert_eq!(al.active().len(), 1);
        assert_eq!(
            al.raised_totals()
                .get(&("r1".to_string(), COMM_INTERRUPTED.to_string())),
            Some(&1)
        );
    }

    #[test]
    fn comm_interrupted_clears_when_the_state_changes_and_counts_each_raise() {
        let mut al = Alarms::new();
        let ci = [rel("r1", "COMMUNICATIONS-INTERRUPTED")];
        al.evaluate(&ci, T + 400);
        let normal = [rel("r1", "NORMAL")];
        let ch = al.evaluate(&normal, T + 500);
        assert_eq!(names(&ch), ["-r1/comm-interrupted"]);
        let AlarmChange::Cleared(_, why) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert!(why.contains("NORMAL"), "{why}");
        assert!(al.active().is_empty());
        // Interrupted again later: counted a second time.
        let mut again = rel("r1", "COMMUNICATIONS-INTERRUPTED");
        again.state_since = (T + 1000) as u32;
        assert!(al.evaluate(&[again.clone()], T + 1200).is_empty());
        assert_eq!(
            names(&al.evaluate(&[again], T + 1301)),
            ["+r1/comm-interrupted"]
        );
        assert_eq!(
            al.raised_totals()
                .get(&("r1".to_string(), COMM_INTERRUPTED.to_string())),
            Some(&2)
        );
    }

    #[test]
    fn other_states_never_raise_comm_interrupted() {
        let mut al = Alarms::new();
        for st in PeerState::ALL {
            if st == PeerState::CommunicationsInterrupted {
                continue;
            }
            let s = [rel("r1", st.name())];
            assert!(al.evaluate(&s, T + 10_000).is_empty(), "{st}");
        }
    }

    #[test]
    fn pool_low_raises_below_the_threshold_and_clears_with_hysteresis() {
        let mut al = Alarms::new();
        // Load balance 50%, allocating from FREE, low-water 10%: the target is half of the
        // unleased addresses, the threshold 5% of them.
        let mut s = rel("r1", "NORMAL");
        s.pools = vec![pools("lan", 100, 100)]; // holds 100 of 200: target 100
        assert!(al.evaluate(&[s.clone()], T).is_empty());
        s.pools = vec![pools("lan", 10, 190)]; // 10 of 200: threshold 10, not below
        assert!(al.evaluate(&[s.clone()], T).is_empty());
        s.pools = vec![pools("lan", 9, 191)]; // 9 < 10
        let ch = al.evaluate(&[s.clone()], T + 1);
        assert_eq!(names(&ch), ["+r1/pool-low:lan"]);
        let AlarmChange::Raised(a) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert!(a.detail.contains("9 FREE"), "{}", a.detail);
        // Back over the threshold but under 1.5 × (15): stays raised.
        s.pools = vec![pools("lan", 14, 186)];
        assert!(al.evaluate(&[s.clone()], T + 2).is_empty());
        assert_eq!(al.active().len(), 1);
        // At 1.5 × the threshold: cleared.
        s.pools = vec![pools("lan", 15, 185)];
        let ch = al.evaluate(&[s.clone()], T + 3);
        assert_eq!(names(&ch), ["-r1/pool-low:lan"]);
        assert!(al.active().is_empty());
    }

    #[test]
    fn pool_low_uses_backup_for_the_server_that_allocates_from_it() {
        let mut al = Alarms::new();
        let mut s = rel("r1", "NORMAL");
        s.allocates_from = "backup".into();
        // 50% share, threshold 10 of 200: plenty of FREE, little BACKUP.
        s.pools = vec![pools("lan", 195, 5)];
        let ch = al.evaluate(&[s.clone()], T);
        assert_eq!(names(&ch), ["+r1/pool-low:lan"]);
        let AlarmChange::Raised(a) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert!(a.detail.contains("5 BACKUP"), "{}", a.detail);
        // The mirror image is fine for this server.
        let mut al = Alarms::new();
        s.pools = vec![pools("lan", 5, 195)];
        assert!(al.evaluate(&[s], T).is_empty());
    }

    #[test]
    fn standby_holding_its_reserve_does_not_alarm() {
        let mut al = Alarms::new();
        // Hot standby, this server the standby with a 5% reserve, low-water 10%: it holds its
        // 5% in BACKUP, exactly its target.
        let mut s = rel("hs", "NORMAL");
        s.share_percent = 5;
        s.allocates_from = "backup".into();
        s.pools = vec![pools("lan", 950, 50)];
        assert!(al.evaluate(&[s.clone()], T).is_empty());
        // Even with most of the scope leased, as long as the split holds.
        s.pools = vec![pools("lan", 19, 1)];
        assert!(al.evaluate(&[s.clone()], T).is_empty());
        // It runs dry: 4 of 1000 is under 10% of 50.
        s.pools = vec![pools("lan", 996, 4)];
        assert_eq!(names(&al.evaluate(&[s], T)), ["+hs/pool-low:lan"]);
    }

    #[test]
    fn pool_low_only_in_normal_and_comm_interrupted() {
        for st in PeerState::ALL {
            let mut al = Alarms::new();
            let mut s = rel("r1", st.name());
            s.comm_alarm_secs = 1_000_000; // keep the other alarm out of the way
            s.pools = vec![pools("lan", 0, 200)];
            let ch = al.evaluate(&[s], T);
            let expect_alarm =
                matches!(st, PeerState::Normal | PeerState::CommunicationsInterrupted);
            if expect_alarm {
                assert_eq!(names(&ch), ["+r1/pool-low:lan"], "{st}");
            } else {
                assert!(ch.is_empty(), "{st}: {ch:?}");
            }
        }
    }

    #[test]
    fn pool_low_clears_when_the_state_leaves_normal() {
        let mut al = Alarms::new();
        let mut s = rel("r1", "NORMAL");
        s.pools = vec![pools("lan", 0, 200)];
        al.evaluate(&[s.clone()], T);
        s.state = "PARTNER-DOWN".into();
        let ch = al.evaluate(&[s], T + 5);
        assert_eq!(names(&ch), ["-r1/pool-low:lan"]);
        let AlarmChange::Cleared(_, why) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert!(why.contains("PARTNER-DOWN"), "{why}");
    }

    #[test]
    fn pool_low_off_at_zero_percent_or_without_a_share() {
        let mut al = Alarms::new();
        let mut s = rel("r1", "NORMAL");
        s.pools = vec![pools("lan", 0, 200)];
        s.pool_low_percent = 0;
        assert!(al.evaluate(&[s.clone()], T).is_empty());
        s.pool_low_percent = 10;
        s.share_percent = 0; // hot-standby standby with no reserve: nothing to hold
        assert!(al.evaluate(&[s.clone()], T).is_empty());
        s.share_percent = 50;
        s.pools = vec![pools("lan", 0, 0)]; // every address leased: no share to compare
        assert!(al.evaluate(&[s], T).is_empty());
    }

    #[test]
    fn pool_alarms_are_per_scope_and_relationship() {
        let mut al = Alarms::new();
        let mut a = rel("a", "NORMAL");
        a.pools = vec![pools("lan", 100, 100), pools("lab", 1, 99)];
        let mut b = rel("b", "COMMUNICATIONS-INTERRUPTED");
        b.pools = vec![pools("dmz", 0, 50)];
        let ch = al.evaluate(&[a.clone(), b.clone()], T);
        assert_eq!(names(&ch), ["+a/pool-low:lab", "+b/pool-low:dmz"]);
        // b removed from the configuration: its alarm goes; a's stays.
        let ch = al.evaluate(&[a], T + 1);
        assert_eq!(names(&ch), ["-b/pool-low:dmz"]);
        let AlarmChange::Cleared(_, why) = &ch[0] else {
            panic!("{ch:?}")
        };
        assert!(why.contains("no longer configured"), "{why}");
        let active: Vec<String> = al.active().into_iter().map(|x| x.name).collect();
        assert_eq!(active, ["pool-low:lab"]);
    }

    #[test]
    fn monitor_evaluates_on_its_thread_and_stops() {
        let status = Arc::new(Mutex::new(vec![rel("r1", "COMMUNICATIONS-INTERRUPTED")]));
        // Entered the state long ago: the alarm is due at the first evaluation.
        status.lock().unwrap()[0].state_since = 1;
        let src = status.clone();
        let m = Monitor::spawn(
            Arc::new(move || src.lock().unwrap().clone()),
            Duration::from_millis(20),
        )
        .expect("spawn");
        let t0 = std::time::Instant::now();
        while m.active().is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(m.active_names("r1"), ["comm-interrupted"]);
        assert!(m.active_names("other").is_empty());
        status.lock().unwrap()[0].state = "NORMAL".into();
        let t0 = std::time::Instant::now();
        while !m.active().is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(m.active().is_empty());
        assert_eq!(
            m.raised_totals()
                .get(&("r1".to_string(), COMM_INTERRUPTED.to_string())),
            Some(&1)
        );
        let t0 = std::time::Instant::now();
        m.stop();
        m.stop();
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "stop waits for no interval"
        );
    }
}
