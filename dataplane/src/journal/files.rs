//! Journal file names, directory listing and directory sync.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::JournalError;

/// What a file in the journal directory is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `worker-{N}.{segment:08}.log`: an append-only segment.
    Segment,
    /// `worker-{N}.{segment:08}.snap`: a complete snapshot, replayed before segment `segment`.
    Snapshot,
    /// `worker-{N}.{segment:08}.snap.tmp`: a snapshot being written (or left by a crash).
    SnapshotTmp,
}

impl FileKind {
    fn suffix(self) -> &'static str {
        match self {
            FileKind::Segment => "log",
            FileKind::Snapshot => "snap",
            FileKind::SnapshotTmp => "snap.tmp",
        }
    }
}

/// Path of a journal file of `worker`.
pub(crate) fn path(dir: &Path, worker: u16, segment: u64, kind: FileKind) -> PathBuf {
    dir.join(format!("worker-{worker}.{segment:08}.{}", kind.suffix()))
}

/// Parse a file name; `None` for files that are not this worker's journal files.
pub(crate) fn parse(name: &str, worker: u16) -> Option<(u64, FileKind)> {
    let rest = name.strip_prefix("worker-")?;
    let (w, rest) = rest.split_once('.')?;
    if w != worker.to_string() {
        return None;
    }
    let (seg, suffix) = rest.split_once('.')?;
    if !seg.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let segment = seg.parse::<u64>().ok()?;
    // Only the canonical spelling, so two names never map to one segment number.
    if seg != format!("{segment:08}") {
        return None;
    }
    let kind = match suffix {
        "log" => FileKind::Segment,
        "snap" => FileKind::Snapshot,
        "snap.tmp" => FileKind::SnapshotTmp,
        _ => return None,
    };
    Some((segment, kind))
}

/// This worker's journal files, by kind.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segment numbers of `.log` files.
    pub(crate) segments: BTreeSet<u64>,
    /// Segment numbers of `.snap` files.
    pub(crate) snapshots: BTreeSet<u64>,
    /// Segment numbers of `.snap.tmp` files.
    pub(crate) tmps: BTreeSet<u64>,
}

/// List this worker's journal files in `dir`.
pub(crate) fn list(dir: &Path, worker: u16) -> Result<Listing, JournalError> {
    let io_err = |source| JournalError::Io {
        op: "list directory",
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Listing::default();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((segment, kind)) = parse(name, worker) {
            match kind {
                FileKind::Segment => out.segments.insert(segment),
                FileKind::Snapshot => out.snapshots.insert(segment),
                FileKind::SnapshotTmp => out.tmps.insert(segment),
            };
        }
    }
    Ok(out)
}

/// Make the directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| JournalError::Io {
            op: "sync directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Remove a file; a file that is already gone is not an error.
pub(crate) fn remove(path: &Path) -> Result<(), JournalError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JournalError::Io {
            op: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}
