//! Several workers in one server: recovering every worker's journal into one set of bindings,
//! rewriting the journals that no longer match their worker, and rebalancing the workers'
//! address shards while they serve.
//!
//! Start-up ([`recover_all`]): the journals of workers `0..workers` are opened, and so is any
//! other worker's journal found in the directory (left by a run with more workers). The
//! bindings are merged, one per address ([`merge`]): a held binding (ACTIVE, ABANDONED) beats an
//! unheld one, and otherwise the most recent (by lease start and last transaction time) wins.
//! An address can be in two journals when it moved between workers; it is never held in two,
//! except through a crash between two workers' commits, which the recency rule settles. Each
//! engine then loads its part ([`Engine::load_part`]), and [`rewrite_stale`] writes a fresh
//! snapshot for every journal whose records are not exactly its worker's part (the previous run
//! had another number of workers, or addresses moved), and empties the journals of workers that
//! no longer exist, so the files agree with memory again before anything is served.
//!
//! While serving ([`Rebalancer`]): a thread asks every worker for its free addresses per scope
//! (as an engine task, between batches) every `period`; when one worker's count falls below a
//! quarter of the richest one's, half the difference moves from the richest to it: the giver
//! takes the addresses out of its pool ([`Engine::shard_give`]) and the receiver adds them to
//! its own ([`Engine::shard_receive`]). In between they are in no pool, so nothing is leased
//! twice. Scopes shared with a failover partner never move (their pools follow failover rules).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::binding::Binding;
use crate::engine::{owner_of, Engine};
use crate::journal::{Journal, JournalConfig, JournalError, Recovery};
use crate::scope::ServerSettings;
use crate::worker::{live_bindings, Control, WorkerHandle};

/// One worker's journal as [`recover_all`] opened it.
pub struct WorkerJournal {
    /// The journal.
    pub journal: Journal,
    /// How it was opened (to reopen it after a failure).
    pub cfg: JournalConfig,
    /// What it recovered.
    pub recovery: Recovery,
}

/// Every journal of a state directory, recovered.
pub struct Recovered {
    /// The journals of workers `0..workers`, in order.
    pub journals: Vec<WorkerJournal>,
    /// Journals of workers beyond the configured number (a previous run had more).
    pub stale: Vec<WorkerJournal>,
    /// One binding per address, merged over every journal (see [`merge`]).
    pub bindings: Vec<Binding>,
}

/// Worker numbers that have journal files in `dir` (`worker-N.*`).
pub fn journal_workers(dir: &std::path::Path) -> std::io::Result<Vec<u16>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("worker-") else {
            continue;
        };
        let Some((num, _)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(n) = num.parse::<u16>() {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Open and recover the journals of workers `0..workers` and every other worker's journal found
/// in `base.dir` (each with `base`'s durability and compaction settings), and merge their
/// bindings.
pub fn recover_all(base: &JournalConfig, workers: usize) -> Result<Recovered, JournalError> {
    let workers = workers.clamp(1, usize::from(u16::MAX));
    let found = journal_workers(&base.dir).map_err(|source| JournalError::Io {
        op: "list directory",
        path: base.dir.clone(),
        source,
    })?;
    let open = |w: u16| -> Result<WorkerJournal, JournalError> {
        let mut cfg = base.clone();
        cfg.worker = w;
        let (journal, recovery) = Journal::open(cfg.clone())?;
        Ok(WorkerJournal {
            journal,
            cfg,
            recovery,
        })
    };
    let mut journals = Vec::with_capacity(workers);
    for w in 0..workers {
        // workers <= u16::MAX.
        journals.push(open(w as u16)?);
    }
    let mut stale = Vec::new();
    for w in found.into_iter().filter(|&w| usize::from(w) >= workers) {
        stale.push(open(w)?);
    }
    let bindings = merge(
        journals
            .iter()
            .chain(stale.iter())
            .map(|j| (j.recovery.bindings.as_slice(), j.recovery.stamps.as_slice())),
    );
    Ok(Recovered {
        journals,
        stale,
        bindings,
    })
}

/// How recent a record is: its lease start or last transaction, then (for records of equal
/// times, such as an unleased address moved to another worker's shard and then handed to the
/// partner's pool there, which keeps both times) the expiry sent to or acknowledged by the
/// failover partner, which a transfer or an acknowledgement only moves forward.
fn recency(b: &Binding) -> (u32, u32) {
    (b.start.max(b.cltt), b.sent_expiry.max(b.acked_expiry))
}

/// True if `a` (written at stamp `sa`) should be kept over `b` (at `sb`) for the same address:
/// the later write when both stamps are known and differ, else by [`recency`].
fn newer((a, sa): (&Binding, u64), (b, sb): (&Binding, u64)) -> bool {
    if sa != 0 && sb != 0 && sa != sb {
        return sa > sb;
    }
    match (a.state.is_held(), b.state.is_held()) {
        (true, false) => recency(a) >= recency(b),
        (false, true) => recency(a) > recency(b),
        _ => recency(a) > recency(b),
    }
}

/// One binding per address over several journals' recovered bindings, each part with the
/// write stamps of its records ([`crate::journal::Recovery::stamps`]; a missing or 0 stamp is
/// unknown): the one written last when the stamps tell, else the newest by lease start or last
/// transaction, then by the expiry sent to or acknowledged by the failover partner, a held
/// binding winning a tie; sorted by address.
pub fn merge<'a>(parts: impl Iterator<Item = (&'a [Binding], &'a [u64])>) -> Vec<Binding> {
    let mut by_addr: HashMap<Ipv4Addr, (Binding, u64)> = HashMap::new();
    for (part, stamps) in parts {
        for (i, b) in part.iter().enumerate() {
            let stamp = stamps.get(i).copied().unwrap_or(0);
            match by_addr.get(&b.addr) {
                Some((cur, cs)) if !newer((b, stamp), (cur, *cs)) => {}
                _ => {
                    by_addr.insert(b.addr, (*b, stamp));
                }
            }
        }
    }
    let mut out: Vec<Binding> = by_addr.into_values().map(|(b, _)| b).collect();
    out.sort_by_key(|b| u32::from(b.addr));
    out
}

/// True if journal `worker` must be rewritten: it recovered a binding that is not what worker
/// `worker` now keeps for that address (another worker keeps it, or another journal had a newer
/// one). `merged` is [`merge`]'s result (sorted by address).
pub fn needs_rewrite(
    recovered: &[Binding],
    merged: &[Binding],
    settings: &ServerSettings,
    worker: usize,
    workers: usize,
) -> bool {
    recovered.iter().any(|b| {
        let kept = merged
            .binary_search_by_key(&u32::from(b.addr), |m| u32::from(m.addr))
            .ok()
            .map(|i| &merged[i]);
        kept != Some(b) || owner_of(settings, b, workers) != worker
    })
}

/// Bring the journals in line with the engines that loaded `rec.bindings`
/// (`engines[k]` is worker `k`'s): every journal that [`needs_rewrite`] gets a snapshot of its
/// engine's bindings, and stale workers' journals an empty one. Waits for the snapshots.
/// Returns the journals of workers `0..workers` with their configurations, and the number of
/// journals rewritten.
pub fn rewrite_stale(
    rec: Recovered,
    engines: &[Engine],
    settings: &ServerSettings,
) -> Result<(Vec<(Journal, JournalConfig)>, usize), JournalError> {
    let workers = rec.journals.len();
    let merged = &rec.bindings;
    let mut rewritten = 0;
    let mut out = Vec::with_capacity(workers);
    for (k, mut wj) in rec.journals.into_iter().enumerate() {
        if needs_rewrite(&wj.recovery.bindings, merged, settings, k, workers) {
            let live = engines.get(k).map(live_bindings).unwrap_or_default();
            wj.journal.compact(live)?;
            wj.journal.wait_compaction()?;
            rewritten += 1;
        }
        out.push((wj.journal, wj.cfg));
    }
    for mut wj in rec.stale {
        if !wj.recovery.bindings.is_empty() {
            wj.journal.compact(Vec::new())?;
            wj.journal.wait_compaction()?;
            rewritten += 1;
        }
    }
    Ok((out, rewritten))
}

/// Counters of the [`Rebalancer`].
#[derive(Debug, Default)]
pub struct RebalanceStats {
    /// Moves done (one scope, one giver, one receiver).
    pub moves: AtomicU64,
    /// Addresses moved.
    pub addresses: AtomicU64,
}

/// The thread that rebalances the workers' shards (see the module docs).
pub struct Rebalancer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<RebalanceStats>,
}

/// How long the rebalancer waits for a worker's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// The move that evens out one scope's free counts (`free[w]` per worker), if one runs low:
/// `(from, to, n)`.
pub fn plan(free: &[u64]) -> Option<(usize, usize, u64)> {
    let (lo_w, &lo) = free.iter().enumerate().min_by_key(|(_, f)| **f)?;
    let (hi_w, &hi) = free.iter().enumerate().max_by_key(|(_, f)| **f)?;
    if hi < 2 || lo.saturating_mul(4) >= hi {
        return None;
    }
    Some((hi_w, lo_w, (hi - lo) / 2))
}

impl Rebalancer {
    /// Start rebalancing the workers behind `workers` every `period`.
    pub fn spawn(workers: WorkerHandle, period: Duration) -> std::io::Result<Rebalancer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RebalanceStats::default());
        let (s2, st2) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("tandem-shards".into())
            .spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    if s2.load(Ordering::Relaxed) || !rebalance_once(&workers, &st2) {
                        break;
                    }
                }
            })?;
        Ok(Rebalancer {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// Stop the thread and wait for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One round: ask, plan and move. False if a worker is gone (the server is stopping).
pub fn rebalance_once(workers: &WorkerHandle, stats: &RebalanceStats) -> bool {
    let n = workers.workers();
    if n < 2 {
        return true;
    }
    let (tx, rx) = crossbeam_channel::bounded(n);
    let sent = workers.each(|k| {
        let tx = tx.clone();
        Control::Run(Box::new(move |e: &mut Engine, _| {
            let free: Vec<u64> = (0..e.settings().scopes.len())
                .map(|si| {
                    if e.is_replicated(si) {
                        0
                    } else {
                        e.shard_free(si)
                    }
                })
                .collect();
            let _ = tx.send((k, free));
            None
        }))
    });
    if !sent {
        return false;
    }
    let mut per_worker: Vec<Vec<u64>> = vec![Vec::new(); n];
    for _ in 0..n {
        match rx.recv_timeout(ANSWER_WAIT) {
            Ok((k, free)) => per_worker[k] = free,
            Err(_) => return true,
        }
    }
    let scopes = per_worker.iter().map(Vec::len).min().unwrap_or(0);
    for si in 0..scopes {
        let free: Vec<u64> = per_worker.iter().map(|f| f[si]).collect();
        let Some((from, to, count)) = plan(&free) else {
            continue;
        };
        let (gtx, grx) = crossbeam_channel::bounded(1);
        let give = Control::Run(Box::new(move |e: &mut Engine, _| {
            let _ = gtx.send(e.shard_give(si, count));
            None
        }));
        if !workers.send_to(from, give) {
            return false;
        }
        let Ok(addrs) = grx.recv_timeout(ANSWER_WAIT) else {
            return true;
        };
        if addrs.is_empty() {
            continue;
        }
        let moved = addrs.len() as u64;
        let take = Control::Run(Box::new(move |e: &mut Engine, _| {
            e.shard_receive(si, &addrs);
            None
        }));
        if !workers.send_to(to, take) {
            return false;
        }
        stats.moves.fetch_add(1, Ordering::Relaxed);
        stats.addresses.fetch_add(moved, Ordering::Relaxed);
        tracing::info!(scope = si, from, to, addresses = moved,
            free_before = ?free, "address shards rebalanced");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{BindingState, ClientKey};

    fn b(addr: [u8; 4], state: BindingState, client: u8, start: u32, cltt: u32) -> Binding {
        let mut b = Binding::empty(Ipv4Addr::from(addr), state);
        if client != 0 {
            b.client = ClientKey::new(&[client]);
        }
        b.start = start;
        b.cltt = cltt;
        b
    }

    #[test]
    fn merge_keeps_the_newest_and_prefers_held_on_a_tie() {
        use BindingState::*;
        let j0 = vec![
            b([10, 0, 0, 1], Released, 1, 100, 150),
            b([10, 0, 0, 2], Active, 2, 100, 100),
            b([10, 0, 0, 3], Abandoned, 0, 100, 100),
        ];
        let j1 = vec![
            // Moved to worker 1 and leased again later: the new lease wins.
            b([10, 0, 0, 1], Active, 3, 200, 200),
            // Released at the same second it was leased elsewhere: held wins the tie.
            b([10, 0, 0, 2], Released, 4, 90, 100),
            // Probation ended later: free wins.
            b([10, 0, 0, 3], Free, 0, 0, 300),
            b([10, 0, 0, 4], Expired, 5, 10, 20),
        ];
        // Records of builds before write stamps: by their times.
        let m = merge([(j0.as_slice(), &[][..]), (j1.as_slice(), &[][..])].into_iter());
        let got: Vec<(u8, BindingState)> =
            m.iter().map(|b| (b.addr.octets()[3], b.state)).collect();
        assert_eq!(got, vec![(1, Active), (2, Active), (3, Free), (4, Expired)]);
        assert_eq!(m[0].client, ClientKey::new(&[3]));
        // Order of the journals does not matter.
        let m2 = merge([(j1.as_slice(), &[][..]), (j0.as_slice(), &[][..])].into_iter());
        assert_eq!(m, m2);
    }

    /// Through real journals: worker 0 journals an unleased address, the address moves to worker
    /// 1 (nothing journaled), which hands it to the partner's pool (same times); after a crash
    /// `recover_all` keeps worker 1's record, and a restart with the stamps recovered keeps
    /// ordering later writes after them.
    #[test]
    fn recover_all_keeps_the_record_written_last_across_workers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = JournalConfig::new(dir.path(), 0);
        let free = b([10, 0, 0, 9], BindingState::Free, 0, 50, 60);
        let mut backup = free;
        backup.state = BindingState::Backup;
        let write = |worker: u16, bs: &[Binding]| {
            let mut cfg = base.clone();
            cfg.worker = worker;
            let (mut j, _) = Journal::open(cfg).expect("open");
            for x in bs {
                j.append(x).expect("append");
            }
            j.commit().expect("commit");
        };
        // Worker 1 writes first something else, so that its journal is not simply "later".
        write(1, &[b([10, 0, 0, 1], BindingState::Free, 0, 0, 0)]);
        write(0, &[free]);
        std::thread::sleep(std::time::Duration::from_millis(3));
        write(1, &[backup]);
        let rec = recover_all(&base, 2).expect("recover");
        let got = rec
            .bindings
            .iter()
            .find(|x| x.addr == free.addr)
            .expect("recovered");
        assert_eq!(got.state, BindingState::Backup);
        for j in &rec.journals {
            assert!(
                j.recovery.stamps.iter().all(|&s| s > 0),
                "every record stamped"
            );
        }
        drop(rec);
        // Back on worker 0, later: that write wins again.
        write(0, &[free]);
        let rec = recover_all(&base, 2).expect("recover");
        let got = rec
            .bindings
            .iter()
            .find(|x| x.addr == free.addr)
            .expect("recovered");
        assert_eq!(got.state, BindingState::Free);
    }

    /// An unleased address moved to worker 1 and handed to the partner's pool there keeps its
    /// times: only the write stamps tell that worker 1's record is the later one.
    #[test]
    fn merge_orders_records_of_equal_times_by_their_write_stamps() {
        use BindingState::*;
        let free = b([10, 0, 0, 7], Free, 0, 50, 60);
        let mut backup = free;
        backup.state = Backup;
        let (j0, j1) = (vec![free], vec![backup]);
        for (s0, s1, want) in [(1000, 2000, Backup), (2000, 1000, Free)] {
            let (st0, st1) = ([s0], [s1]);
            for parts in [
                [(j0.as_slice(), &st0[..]), (j1.as_slice(), &st1[..])],
                [(j1.as_slice(), &st1[..]), (j0.as_slice(), &st0[..])],
            ] {
                let m = merge(parts.into_iter());
                assert_eq!(m[0].state, want, "stamps {s0} / {s1}");
            }
        }
        // A stamp beats the times: a later write of an older-looking record wins.
        let mut old_active = b([10, 0, 0, 8], Active, 1, 10, 10);
        old_active.expires = 1_000;
        let newer_free = b([10, 0, 0, 8], Free, 0, 0, 0);
        let m = merge(
            [
                (std::slice::from_ref(&old_active), &[5][..]),
                (std::slice::from_ref(&newer_free), &[6][..]),
            ]
            .into_iter(),
        );
        assert_eq!(m[0].state, Free);
    }

    #[test]
    fn plan_moves_half_the_difference_only_when_one_runs_low() {
        assert_eq!(plan(&[100, 100]), None);
        assert_eq!(plan(&[30, 100]), None, "not yet below a quarter");
        assert_eq!(plan(&[20, 100]), Some((1, 0, 40)));
        assert_eq!(plan(&[0, 1]), None, "nothing worth moving");
        assert_eq!(plan(&[0, 2]), Some((1, 0, 1)));
        assert_eq!(plan(&[50, 0, 7]), Some((0, 1, 25)));
        assert_eq!(plan(&[]), None);
    }

    #[test]
    fn journal_workers_lists_the_numbers_in_a_directory() {
        let dir = std::env::temp_dir().join(format!("tdm-shards-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        for n in [
            "worker-0.00000000.log",
            "worker-3.00000002.snap",
            "worker-3.00000003.log",
            "tandemd.lock",
            "worker-x.1.log",
        ] {
            std::fs::write(dir.join(n), b"").expect("write");
        }
        assert_eq!(journal_workers(&dir).expect("list"), vec![0, 3]);
        assert!(journal_workers(&dir.join("missing"))
            .expect("missing is empty")
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
