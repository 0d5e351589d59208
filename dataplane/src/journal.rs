//! The durable per-worker lease journal: append-only segments, group commit, background snapshots,
//! and crash recovery.
//!
//! Each worker owns one [`Journal`] and the bindings it journals; the in-memory bindings live
//! in the worker. The worker [`append`](Journal::append)s one record per binding change while it
//! handles a batch, calls [`commit`](Journal::commit) once (one `write` and, with
//! [`Durability::Sync`], one `fdatasync`), and only then sends the batch's replies. A record is
//! a binding's whole state, so replay is "last record per address wins" and replaying a record
//! twice is harmless.
//!
//! # Background sync (pipelined group commit)
//!
//! With [`start_background_sync`](Journal::start_background_sync) the `fdatasync` moves to a
//! thread of its own (`journal-sync-N`): [`write`](Journal::write) writes the batch (page cache)
//! and returns its *mark*, the worker goes on answering (OFFERs never wait for the disk), and
//! [`poll_sync`](Journal::poll_sync) / [`durable_seq`](Journal::durable_seq) say how far the
//! journal is durable; a reply that confirms a binding leaves once `durable_seq` reaches its
//! batch's mark. One sync runs at a time and covers every batch written before it started, so
//! the number of syncs adapts to the load by itself. [`commit`](Journal::commit),
//! [`compact`](Journal::compact) and shutdown wait for the sync in flight and sync the rest on
//! the caller's thread. A failed background sync poisons the journal like a failed commit.
//!
//! # Files
//!
//! All files of worker `N` live in [`JournalConfig::dir`] (several workers may share it):
//!
//! | name | content |
//! |---|---|
//! | `worker-N.SSSSSSSS.log` | segment `S` (8+ decimal digits): a segment header, then binding records |
//! | `worker-N.SSSSSSSS.snap` | a complete snapshot of every binding written before segment `S` |
//! | `worker-N.SSSSSSSS.snap.tmp` | a snapshot being written; removed by recovery |
//!
//! The state is "newest complete snapshot `S`, then segments `S, S+1, …` in order" (or, with no
//! snapshot, segments `0, 1, …`). Segment numbers are consecutive; a gap is reported as
//! [`JournalError::Unrecoverable`] rather than silently losing what the missing file held.
//!
//! # Record layout (version 1)
//!
//! Every record in every file is 128 bytes, so files are arrays of slots. Integers are
//! little-endian; the address is in network order.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `"TJ"` (`0x54 0x4a`) |
//! | 2 | 1 | format version, `1` |
//! | 3 | 1 | kind: 1 segment header, 2 binding, 3 snapshot header, 4 snapshot binding, 5 snapshot end |
//! | 4 | 8 | sequence number (see below) |
//! | 12 | 4 | address (binding kinds) |
//! | 16 | 1 | [`BindingState`](crate::binding::BindingState) as its `u8` value |
//! | 17 | 1 | flags: bit 0 = `from_partner` |
//! | 18 | 1 | client key length (0..=32) |
//! | 19 | 1 | htype |
//! | 20 | 1 | hlen |
//! | 21 | 3 | zero |
//! | 24 | 32 | client key bytes (zero beyond the length) |
//! | 56 | 16 | chaddr |
//! | 72 | 4 | start |
//! | 76 | 4 | expires |
//! | 80 | 4 | cltt |
//! | 84 | 4 | acked_expiry |
//! | 88 | 4 | sent_expiry |
//! | 92 | 8 | write stamp: milliseconds since the epoch when the record was written (binding kinds; 0 in records of builds before it) |
//! | 100 | 24 | zero |
//! | 124 | 4 | CRC-32 (IEEE, as `crc32fast` computes it) of bytes 0..124 |
//!
//! Header and end records (kinds 1, 3, 5) use bytes 12..14 for the worker number, 16..24 for the
//! segment number and 24..32 for a count (the number of binding records of a snapshot; 0 in a
//! segment header); they must match the file name, or recovery stops with
//! [`JournalError::ForeignFile`].
//!
//! Write stamps order one address's records across the journals of several workers (an
//! address moves between workers' shards while unleased, and only the receiver may write it
//! again): never decreasing within a process, across workers, and after a restart (recovery
//! resumes from the newest stamp it read). A snapshot's bindings carry the stamp of the moment
//! its state was taken.
//!
//! Sequence numbers: every binding record of a segment carries the next value of one counter per
//! worker that only grows (across segments and restarts). A segment header carries the sequence
//! number of the first record the segment will hold; a snapshot's header and end carry the first
//! sequence number it does not cover. Snapshot bindings carry their index in the snapshot.
//!
//! # Corruption and torn writes
//!
//! A slot is *invalid* if its magic or CRC is wrong. A slot with a correct CRC that this build
//! cannot read (another version, unknown kind or state) stops recovery with an error: it was
//! written by different software, and guessing could lose leases.
//!
//! - Invalid slots (or a partial slot) after the last valid record of a segment are a torn tail:
//!   the file is truncated there (and synced), and the bytes cut are counted in
//!   [`Recovery::torn_bytes_truncated`]. In [`Durability::Sync`] a torn tail only ever holds
//!   records whose commit had not returned, so nothing acknowledged is cut.
//! - Invalid slots followed by a valid record are corruption in the middle: they are skipped,
//!   counted in [`Recovery::corrupt_records`] and logged with `tracing::warn!`. The content of such
//!   a record is unknown, so it may have held the newest state of some address (including a
//!   release). The journal cannot repair that; a non-zero count tells the caller its recovered
//!   state may be stale (with a failover partner, ask it for a full update before serving). A
//!   commit torn in the middle (a crash between pages of one `write`) looks the same, but only
//!   ever touches unacknowledged records.
//! - A snapshot whose header, bindings and end record are not all intact is *damaged*. Recovery
//!   then falls back to an older base whose segments are all still present (an older snapshot, or
//!   segment 0); only if there is none does it load the damaged snapshot's readable bindings and
//!   count the rest as corrupt.
//!
//! # Compaction
//!
//! [`compact`](Journal::compact) commits anything pending, creates segment `S+1` and switches to
//! it at once; a background thread then writes `worker-N.{S+1}.snap.tmp`, `fsync`s it, renames it
//! to `.snap`, `fsync`s the directory, and only then removes segments and snapshots numbered below
//! `S+1`. A crash at any point leaves either the old base with every segment after it, or the
//! new snapshot (possibly with obsolete files, which recovery ignores and removes). Snapshots are
//! always synced, even with [`Durability::Relaxed`], because removing segments relies on them.
//!
//! # Failures
//!
//! If a `write`, `fdatasync` or directory sync of a commit fails, the journal is poisoned: every
//! later call returns [`JournalError::Poisoned`] (after a failed `fsync` the kernel may have
//! dropped the dirty pages, so retrying could report success falsely). Reopen the journal to
//! recover. A failed background compaction only logs and leaves the files as they were; it is
//! retried by the next [`compact`](Journal::compact).
//!
//! One [`Journal`] per (directory, worker) at a time: the files are not locked.

mod compact;
mod files;
mod record;
mod recover;
mod syncer;

pub use syncer::Wake;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::binding::Binding;
use crate::scope::Durability;

#[cfg(test)]
use compact::CrashPoint;
use files::FileKind;
use record::{FileId, Record, RECORD_LEN};

/// Bytes of zeros written ahead of the records of the current segment at a time. A record
/// written into already allocated, already written blocks changes neither the file's size nor
/// its block map, so the `fdatasync` that makes it durable flushes data only, without a
/// metadata (ext4 journal) commit: measured on this project's test VM, such syncs take about
/// half as long as syncs of appends. Recovery treats zero slots after the last record as
/// unused space (not a torn tail) and cuts them; a clean close cuts them too.
pub const ZERO_AHEAD: u64 = 1 << 20;

/// Default for [`JournalConfig::compact_after_records`].
pub const DEFAULT_COMPACT_AFTER_RECORDS: u64 = 1_000_000;

/// Records the commit buffer holds before it first grows (32 KiB).
const INITIAL_BUFFER_RECORDS: usize = 256;

/// Where and how a worker's journal is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Directory of the journal files (created if missing; may be shared by several workers).
    pub dir: PathBuf,
    /// Worker number, part of every file name.
    pub worker: u16,
    /// Whether [`Journal::commit`] calls `fdatasync`.
    pub durability: Durability,
    /// [`Journal::needs_compaction`] turns true once this many records were written after the
    /// newest snapshot; 0 disables it.
    pub compact_after_records: u64,
}

impl JournalConfig {
    /// A configuration with the defaults: [`Durability::Sync`] and
    /// [`DEFAULT_COMPACT_AFTER_RECORDS`].
    pub fn new(dir: impl Into<PathBuf>, worker: u16) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            worker,
            durability: Durability::default(),
            compact_after_records: DEFAULT_COMPACT_AFTER_RECORDS,
        }
    }
}

/// What [`Journal::open`] recovered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The last recorded state of every address the journal knows, in any state (Free, Released,
    /// Expired, Backup, … included), sorted by address.
    pub bindings: Vec<Binding>,
    /// The write stamp of each of `bindings`' records (same order; 0 for records of builds
    /// before stamps): [`crate::shards::merge`] orders one address's records across workers by it.
    pub stamps: Vec<u64>,
    /// Binding records replayed from segments (after the snapshot).
    pub records_replayed: u64,
    /// Bytes cut from torn segment tails.
    pub torn_bytes_truncated: u64,
    /// Records skipped as unreadable (see the module doc); non-zero means state may be stale.
    pub corrupt_records: u64,
    /// Bindings loaded from the snapshot.
    pub snapshot_records: u64,
}

/// What one [`Journal::commit`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CommitStats {
    /// Records written.
    pub records: usize,
    /// Bytes written.
    pub bytes: usize,
    /// True if this call ran `fdatasync` (never in [`Durability::Relaxed`], nor when nothing was
    /// pending).
    pub synced: bool,
}

/// What a finished background compaction did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segment number of the snapshot written (the first segment replayed after it).
    pub snapshot_segment: u64,
    /// Bindings in the snapshot.
    pub records: u64,
    /// Size of the snapshot file.
    pub bytes: u64,
    /// Obsolete segments and snapshots removed.
    pub removed_files: u64,
}

/// Journal errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed.
    #[error("journal: {op} {}: {source}", path.display())]
    Io {
        /// The operation ("write", "sync", "rename", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier commit failed to write or sync; the journal must be reopened.
    #[error("journal: an earlier write or sync failed; reopen the journal to recover")]
    Poisoned,
    /// [`Journal::compact`] was called while a compaction is still running.
    #[error("journal: a compaction is still running")]
    CompactionBusy,
    /// A file's header names another worker or segment than its file name.
    #[error(
        "journal: {} holds worker {found_worker} segment {found_segment}, \
         expected worker {worker} segment {segment}",
        path.display()
    )]
    ForeignFile {
        /// The file.
        path: PathBuf,
        /// Worker expected from the name.
        worker: u16,
        /// Segment expected from the name.
        segment: u64,
        /// Worker in the header.
        found_worker: u16,
        /// Segment in the header.
        found_segment: u64,
    },
    /// A record with a correct CRC has a format version this build does not read.
    #[error(
        "journal: {} offset {offset}: record version {version} is not supported \
         (this build reads version 1)",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// The version byte found.
        version: u8,
    },
    /// A record with a correct CRC cannot be used where it is.
    #[error("journal: {} offset {offset}: {reason}", path.display())]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The files on disk do not hold a complete history (a segment or snapshot is missing).
    #[error("journal: cannot recover worker {worker} in {}: {reason}", dir.display())]
    Unrecoverable {
        /// The journal directory.
        dir: PathBuf,
        /// The worker.
        worker: u16,
        /// What is missing.
        reason: String,
    },
    /// The background compaction thread panicked.
    #[error("journal: the compaction thread panicked")]
    CompactionPanicked,
    /// The background sync thread ended (it panicked or could not be reached).
    #[error("journal: the background sync thread is gone")]
    SyncerGone,
}

/// A compaction running in the background.
#[derive(Debug)]
struct Inflight {
    handle: JoinHandle<Result<CompactionStats, JournalError>>,
    /// Records the snapshot folds away (written before the rotation).
    covered: u64,
}

/// One worker's durable lease journal. See the module doc.
#[derive(Debug)]
pub struct Journal {
    cfg: JournalConfig,
    /// The segment being appended to.
    file: File,
    /// Where the next record goes in `file` (the end of its records).
    pos: u64,
    /// The write stamp of the records of the batch being appended.
    stamp: u64,
    /// `file` holds written zeros up to here (see [`ZERO_AHEAD`]).
    zeroed_to: u64,
    segment: u64,
    next_seq: u64,
    /// Encoded records not yet written.
    buf: Vec<u8>,
    pending: usize,
    /// The current segment's directory entry is not known to be durable yet.
    dir_dirty: bool,
    /// Records in segments at or after the newest snapshot.
    since_base: u64,
    poisoned: bool,
    inflight: Option<Inflight>,
    /// The background `fdatasync` thread, if started ([`Journal::start_background_sync`]).
    syncer: Option<syncer::Syncer>,
    /// Every record with a smaller sequence number has been written (page cache at least).
    written: u64,
    /// Every record with a smaller sequence number is durable.
    durable: u64,
    /// The highest mark someone waits for ([`write`](Journal::write),
    /// [`sync_soon`](Journal::sync_soon)); records written past it with
    /// [`write_deferred`](Journal::write_deferred) start no sync of their own.
    needed: u64,
    #[cfg(test)]
    crash_at: Option<CrashPoint>,
}

impl Journal {
    /// Opens (creating the directory if needed), recovers, and returns the journal with the
    /// recovered bindings: the last record per address wins, whatever its state. An address whose
    /// last record is Released comes back as Released, never as an earlier Active.
    pub fn open(cfg: JournalConfig) -> Result<(Journal, Recovery), JournalError> {
        let dir = cfg.dir.clone();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|source| JournalError::Io {
                op: "create directory",
                path: dir.clone(),
                source,
            })?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                files::sync_dir(parent)?;
            }
        }
        let rec = recover::recover(&dir, cfg.worker)?;
        let path = files::path(&dir, cfg.worker, rec.last_segment, FileKind::Segment);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| JournalError::Io { op, path, source }
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open"))?;
        // Recovery cut the segment after its last record.
        let mut pos = file.metadata().map_err(io("stat"))?.len();
        if !rec.last_segment_started {
            let header = segment_header(cfg.worker, rec.last_segment, rec.next_seq);
            file.set_len(0).map_err(io("truncate"))?;
            file.write_all_at(&header, 0).map_err(io("write"))?;
            file.sync_all().map_err(io("sync"))?;
            files::sync_dir(&dir)?;
            pos = RECORD_LEN as u64;
        }
        tracing::info!(
            dir = %dir.display(),
            worker = cfg.worker,
            segment = rec.last_segment,
            bindings = rec.recovery.bindings.len(),
            replayed = rec.recovery.records_replayed,
            snapshot = rec.recovery.snapshot_records,
            "journal: opened"
        );
        let journal = Journal {
            cfg,
            file,
            pos,
            stamp: 0,
            zeroed_to: pos,
            segment: rec.last_segment,
            next_seq: rec.next_seq,
            buf: Vec::with_capacity(INITIAL_BUFFER_RECORDS * RECORD_LEN),
            pending: 0,
            dir_dirty: false,
            since_base: rec.since_base,
            poisoned: false,
            inflight: None,
            syncer: None,
            written: rec.next_seq,
            durable: rec.next_seq,
            needed: rec.next_seq,
            #[cfg(test)]
            crash_at: None,
        };
        Ok((journal, rec.recovery))
    }

    /// Buffers one record; no I/O. Allocates only while the buffer grows to the largest batch.
    pub fn append(&mut self, b: &Binding) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if self.pending == 0 {
            self.stamp = record::next_stamp();
        }
        let rec = record::encode(&Record::Binding {
            seq: self.next_seq,
            binding: *b,
            stamp: self.stamp,
        });
        self.next_seq += 1;
        self.buf.extend_from_slice(&rec);
        self.pending += 1;
        Ok(())
    }

    /// Writes everything appended since the last commit in one `write` and, with
    /// [`Durability::Sync`], runs one `fdatasync` (after the background sync in flight, if any,
    /// and also covering records [`write`](Journal::write) left to it). When it returns `Ok`, the
    /// records are durable (Sync) or in the page cache (Relaxed): the batch's replies may go out.
    pub fn commit(&mut self) -> Result<CommitStats, JournalError> {
        let (records, bytes) = self.write_buffer()?;
        let mut synced = false;
        if self.cfg.durability == Durability::Sync {
            synced = self.sync_inline()?;
        } else {
            self.durable = self.written;
        }
        Ok(CommitStats {
            records,
            bytes,
            synced,
        })
    }

    /// Starts the background `fdatasync` thread (see [`syncer`](self) in the module doc): from
    /// now on [`write`](Journal::write) leaves the sync to it, and `wake` is called from that
    /// thread each time a sync ends. No thread with [`Durability::Relaxed`] (returns false).
    pub fn start_background_sync(&mut self, wake: Wake) -> Result<bool, JournalError> {
        if self.cfg.durability != Durability::Sync || self.syncer.is_some() {
            return Ok(self.syncer.is_some());
        }
        let s =
            syncer::Syncer::start(self.cfg.worker, wake).map_err(|source| JournalError::Io {
                op: "spawn sync thread for",
                path: self.cfg.dir.clone(),
                source,
            })?;
        self.syncer = Some(s);
        Ok(true)
    }

    /// Writes everything appended so far in one `write` and returns the *mark*: the sequence
    /// number [`durable_seq`](Journal::durable_seq) must reach before replies that depend on
    /// these records (or on any earlier one) may leave. With the background sync the
    /// `fdatasync` runs there (one at a time; started here if none is running); without it, or
    /// in [`Durability::Relaxed`], this is [`commit`](Journal::commit).
    pub fn write(&mut self) -> Result<u64, JournalError> {
        if self.syncer.is_none() {
            self.commit()?;
            return Ok(self.written);
        }
        self.write_buffer()?;
        self.needed = self.written;
        self.kick()?;
        Ok(self.written)
    }

    /// [`write`](Journal::write) for records nobody waits for (a timer's state change, the
    /// partner's acknowledgement of an update): written now, made durable by the next sync
    /// anyone needs or by [`sync_soon`](Journal::sync_soon). Losing them in a crash loses
    /// nothing promised. Without the background sync this is `write`.
    pub fn write_deferred(&mut self) -> Result<u64, JournalError> {
        if self.syncer.is_none() {
            return self.write();
        }
        self.write_buffer()?;
        Ok(self.written)
    }

    /// Makes everything written so far durable as soon as the sync thread can (starts a sync
    /// unless one is running; the next starts when it ends).
    pub fn sync_soon(&mut self) -> Result<(), JournalError> {
        self.needed = self.written;
        self.kick()
    }

    /// Collects a finished background sync (never blocks) and starts the next one if records
    /// were written meanwhile. Returns the `fdatasync` time of the sync collected, if one was.
    pub fn poll_sync(&mut self) -> Result<Option<u64>, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let Some(done) = self.syncer.as_mut().and_then(|s| s.collect(false)) else {
            return Ok(None);
        };
        let upto = self.take_done(done.result)?;
        self.durable = self.durable.max(upto);
        self.kick()?;
        Ok(Some(done.sync_nanos))
    }

    /// Every record with a smaller sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable
    }

    /// Every record with a smaller sequence number has been written.
    pub fn written_seq(&self) -> u64 {
        self.written
    }

    /// True while written records wait for a sync (running or still to start).
    pub fn sync_pending(&self) -> bool {
        self.written > self.durable
    }

    /// The outcome of a background sync, poisoning the journal if it failed.
    fn take_done(&mut self, result: Result<u64, JournalError>) -> Result<u64, JournalError> {
        result.map_err(|e| {
            self.poisoned = true;
            tracing::error!(error = %e, "journal: background sync failed; journal poisoned");
            e
        })
    }

    /// Hands everything written but not durable to the syncer, unless a sync is running.
    fn kick(&mut self) -> Result<(), JournalError> {
        let Some(s) = self.syncer.as_mut() else {
            return Ok(());
        };
        if s.busy() || self.needed <= self.durable {
            return Ok(());
        }
        let path = files::path(
            &self.cfg.dir,
            self.cfg.worker,
            self.segment,
            FileKind::Segment,
        );
        let file = &self.file;
        let dir = self.dir_dirty.then(|| self.cfg.dir.clone());
        let res = s.start_job(
            self.written,
            || {
                file.try_clone()
                    .map(|f| (f, path.clone()))
                    .map_err(|source| JournalError::Io {
                        op: "duplicate the descriptor of",
                        path: path.clone(),
                        source,
                    })
            },
            dir,
        );
        match res {
            Ok(()) => {
                self.dir_dirty = false;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                tracing::error!(error = %e, "journal: cannot start a background sync; journal poisoned");
                Err(e)
            }
        }
    }

    /// Waits for the background sync in flight, then syncs whatever is still not durable on this
    /// thread. True if this call ran an `fdatasync`.
    fn sync_inline(&mut self) -> Result<bool, JournalError> {
        if let Some(done) = self.syncer.as_mut().and_then(|s| s.collect(true)) {
            let upto = self.take_done(done.result)?;
            self.durable = self.durable.max(upto);
        }
        if self.written <= self.durable {
            return Ok(false);
        }
        if let Err(e) = self.sync_out() {
            self.poisoned = true;
            tracing::error!(error = %e, "journal: sync failed; journal poisoned");
            return Err(e);
        }
        self.durable = self.written;
        Ok(true)
    }

    /// Writes the buffered records (no sync). Returns (records, bytes) written.
    fn write_buffer(&mut self) -> Result<(usize, usize), JournalError> {
        self.reap(false);
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let (records, bytes) = (self.pending, self.buf.len());
        if records == 0 {
            return Ok((0, 0));
        }
        if let Err(e) = self.write_out() {
            self.poisoned = true;
            tracing::error!(error = %e, "journal: write failed; journal poisoned");
            return Err(e);
        }
        self.buf.clear();
        self.pending = 0;
        self.since_base += records as u64;
        self.written = self.next_seq;
        Ok((records, bytes))
    }

    fn segment_path(&self) -> PathBuf {
        files::path(
            &self.cfg.dir,
            self.cfg.worker,
            self.segment,
            FileKind::Segment,
        )
    }

    fn write_out(&mut self) -> Result<(), JournalError> {
        let end = self.pos + self.buf.len() as u64;
        let res = self
            .zero_ahead(end)
            .and_then(|()| self.file.write_all_at(&self.buf, self.pos));
        res.map_err(|source| JournalError::Io {
            op: "write",
            path: self.segment_path(),
            source,
        })?;
        self.pos = end;
        Ok(())
    }

    /// Make sure the segment holds written zeros up to `end`, extending them by
    /// [`ZERO_AHEAD`] when needed (page cache only: the next sync flushes them with the
    /// records, one metadata commit per `ZERO_AHEAD` bytes instead of one per sync).
    fn zero_ahead(&mut self, end: u64) -> std::io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        if end <= self.zeroed_to {
            return Ok(());
        }
        let target = end.max(self.zeroed_to) + ZERO_AHEAD;
        let mut at = self.zeroed_to;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        self.zeroed_to = target;
        Ok(())
    }

    /// Cut the current segment's unused zeros (a clean close; best effort).
    fn trim(&mut self) {
        if self.zeroed_to > self.pos && self.file.set_len(self.pos).is_ok() {
            self.zeroed_to = self.pos;
        }
    }

    fn sync_out(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Io {
            op: "fdatasync",
            path: self.segment_path(),
            source,
        })?;
        if self.dir_dirty {
            files::sync_dir(&self.cfg.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// True when at least [`JournalConfig::compact_after_records`] records were written after
    /// the newest snapshot and no compaction is running.
    pub fn needs_compaction(&self) -> bool {
        let threshold = self.cfg.compact_after_records;
        if threshold == 0 {
            return false;
        }
        let covered = match &self.inflight {
            Some(f) if !f.handle.is_finished() => return false,
            Some(f) => f.covered,
            None => 0,
        };
        self.since_base.saturating_sub(covered) + self.pending as u64 >= threshold
    }

    /// Starts a compaction. `live` must be the state every record appended so far leads to (the
    /// worker's full set of bindings; addresses left out are forgotten once the snapshot is in
    /// place). Commits pending records first (so this may `fdatasync`), rotates to a new segment
    /// at once, and hands `live` to a background thread that writes and installs the snapshot.
    ///
    /// Returns [`JournalError::CompactionBusy`] (harmless: retry later) if the previous one is
    /// still running. A background failure is logged and leaves the files as they were.
    pub fn compact(&mut self, live: Vec<Binding>) -> Result<(), JournalError> {
        self.reap(false);
        if self.inflight.is_some() {
            return Err(JournalError::CompactionBusy);
        }
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        // Everything before the rotation is durable before the new segment takes records.
        self.commit()?;
        let segment = self.segment + 1;
        let path = files::path(&self.cfg.dir, self.cfg.worker, segment, FileKind::Segment);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| JournalError::Io { op, path, source }
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io("create"))?;
        let header = segment_header(self.cfg.worker, segment, self.next_seq);
        if let Err(e) = file.write_all_at(&header, 0) {
            drop(file);
            let _ = files::remove(&path);
            return Err(io("write")(e));
        }
        // The old segment's records are durable (committed above): cut its spare zeros.
        self.trim();
        self.file = file;
        self.pos = RECORD_LEN as u64;
        self.zeroed_to = self.pos;
        self.segment = segment;
        self.dir_dirty = true;
        if let Some(s) = self.syncer.as_mut() {
            s.segment_changed();
        }
        let job = compact::Job {
            dir: self.cfg.dir.clone(),
            worker: self.cfg.worker,
            segment,
            seq: self.next_seq,
            live,
            stamp: record::next_stamp(),
            #[cfg(test)]
            crash_at: self.crash_at,
        };
        let handle = std::thread::Builder::new()
            .name(format!("journal-compact-{}", self.cfg.worker))
            .spawn(move || compact::run(job))
            .map_err(|source| JournalError::Io {
                op: "spawn compaction thread for",
                path: self.cfg.dir.clone(),
                source,
            })?;
        tracing::info!(
            worker = self.cfg.worker,
            segment,
            "journal: rotated; compacting in the background"
        );
        self.inflight = Some(Inflight {
            handle,
            covered: self.since_base,
        });
        Ok(())
    }

    /// Records appended but not yet committed.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// True while a background compaction thread is still running.
    pub fn compaction_running(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|f| !f.handle.is_finished())
    }

    /// Blocks until the running compaction (if any) ends; returns its outcome. For shutdown and
    /// tests; the worker never needs it ([`compact`](Journal::compact) and
    /// [`commit`](Journal::commit) collect finished compactions).
    pub fn wait_compaction(&mut self) -> Result<Option<CompactionStats>, JournalError> {
        match self.inflight.take() {
            None => Ok(None),
            Some(f) => self.finish(f).map(Some),
        }
    }

    /// The segment number being appended to.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Collects a finished compaction (or waits for it if `block`), logging failures.
    fn reap(&mut self, block: bool) {
        let done = self
            .inflight
            .as_ref()
            .is_some_and(|f| block || f.handle.is_finished());
        if done {
            if let Some(f) = self.inflight.take() {
                // The outcome is logged by finish(); the worker has nothing to do about it.
                let _ = self.finish(f);
            }
        }
    }

    fn finish(&mut self, f: Inflight) -> Result<CompactionStats, JournalError> {
        let outcome = f
            .handle
            .join()
            .unwrap_or(Err(JournalError::CompactionPanicked));
        match &outcome {
            Ok(stats) => {
                self.since_base = self.since_base.saturating_sub(f.covered);
                tracing::info!(
                    worker = self.cfg.worker,
                    segment = stats.snapshot_segment,
                    records = stats.records,
                    removed = stats.removed_files,
                    "journal: compaction done"
                );
            }
            Err(e) => {
                tracing::error!(
                    worker = self.cfg.worker,
                    error = %e,
                    "journal: compaction failed; old segments kept"
                );
            }
        }
        outcome
    }
}

impl Drop for Journal {
    /// Waits for a running compaction and cuts the segment's unused zeros. Records appended but
    /// not committed are discarded.
    fn drop(&mut self) {
        self.reap(true);
        self.trim();
    }
}

fn segment_header(worker: u16, segment: u64, seq: u64) -> [u8; RECORD_LEN] {
    record::encode(&Record::SegmentHeader {
        seq,
        id: FileId { worker, segment },
    })
}

#[cfg(test)]
mod tests;
