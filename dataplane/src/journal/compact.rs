//! The background half of compaction: write the snapshot, make it durable, retire what it replaces.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::files::{self, FileKind};
use super::record::{self, FileId, Record, RECORD_LEN_U64};
use super::{CompactionStats, JournalError};
use crate::binding::Binding;

/// Where a simulated crash stops the compaction (tests only).
#[cfg(test)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// After the rotation, before the snapshot file exists.
    AfterRotate,
    /// Half of the temporary snapshot written, not synced.
    MidSnapshot,
    /// Temporary snapshot complete and synced, not renamed.
    BeforeRename,
    /// Snapshot renamed into place and directory synced; no obsolete file removed.
    AfterRename,
    /// One obsolete segment removed, the rest still there.
    MidCleanup,
}

/// One snapshot to write.
#[derive(Debug)]
pub(crate) struct Job {
    /// Journal directory.
    pub(crate) dir: PathBuf,
    /// Worker.
    pub(crate) worker: u16,
    /// The segment the journal rotated to: the snapshot covers everything before it.
    pub(crate) segment: u64,
    /// First sequence number of that segment.
    pub(crate) seq: u64,
    /// The live bindings at the rotation.
    pub(crate) live: Vec<Binding>,
    /// The write stamp of that moment (every snapshot binding carries it).
    pub(crate) stamp: u64,
    /// Simulated crash point.
    #[cfg(test)]
    pub(crate) crash_at: Option<CrashPoint>,
}

#[cfg(test)]
impl Job {
    fn crash(&self, at: CrashPoint) -> bool {
        self.crash_at == Some(at)
    }
}

/// Expands to a crash check in tests and to nothing otherwise.
macro_rules! crash_point {
    ($job:expr, $at:ident, $ret:expr) => {
        #[cfg(test)]
        if $job.crash(CrashPoint::$at) {
            return $ret;
        }
    };
}

/// Write, sync and install the snapshot, then remove the segments and snapshots it replaces.
///
/// Every step leaves the directory recoverable: the snapshot is only visible under its final
/// name once complete and synced, and nothing is removed before that name is durable.
pub(crate) fn run(job: Job) -> Result<CompactionStats, JournalError> {
    let Job {
        ref dir,
        worker,
        segment,
        seq,
        ref live,
        ..
    } = job;
    let tmp = files::path(dir, worker, segment, FileKind::SnapshotTmp);
    let snap = files::path(dir, worker, segment, FileKind::Snapshot);
    let io = |op: &'static str, path: &PathBuf| {
        let path = path.clone();
        move |source| JournalError::Io { op, path, source }
    };
    let mut stats = CompactionStats {
        snapshot_segment: segment,
        records: live.len() as u64,
        bytes: (live.len() as u64 + 2) * RECORD_LEN_U64,
        removed_files: 0,
    };
    crash_point!(job, AfterRotate, Ok(stats));

    let id = FileId { worker, segment };
    let count = live.len() as u64;
    let written = (|| -> Result<(), JournalError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let header = record::encode(&Record::SnapshotHeader { seq, id, count });
        w.write_all(&header).map_err(io("write", &tmp))?;
        for (i, b) in live.iter().enumerate() {
            #[cfg(test)]
            if job.crash(CrashPoint::MidSnapshot) && i == live.len() / 2 {
                w.flush().map_err(io("write", &tmp))?;
                return Ok(());
            }
            let rec = Record::SnapshotBinding {
                seq: i as u64,
                binding: *b,
                stamp: job.stamp,
            };
            w.write_all(&record::encode(&rec))
                .map_err(io("write", &tmp))?;
        }
        let end = record::encode(&Record::SnapshotEnd { seq, id, count });
        w.write_all(&end).map_err(io("write", &tmp))?;
        let file: File = w.into_inner().map_err(|e| JournalError::Io {
            op: "write",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io("sync", &tmp))
    })();
    if let Err(e) = written {
        let _ = files::remove(&tmp);
        return Err(e);
    }
    crash_point!(job, MidSnapshot, Ok(stats));
    crash_point!(job, BeforeRename, Ok(stats));

    std::fs::rename(&tmp, &snap).map_err(io("rename", &tmp))?;
    files::sync_dir(dir)?;
    crash_point!(job, AfterRename, Ok(stats));

    let listing = files::list(dir, worker)?;
    for &s in listing.segments.range(..segment) {
        files::remove(&files::path(dir, worker, s, FileKind::Segment))?;
        stats.removed_files += 1;
        crash_point!(job, MidCleanup, Ok(stats));
    }
    for &s in listing.snapshots.range(..segment) {
        files::remove(&files::path(dir, worker, s, FileKind::Snapshot))?;
        stats.removed_files += 1;
    }
    files::sync_dir(dir)?;
    Ok(stats)
}
