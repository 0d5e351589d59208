//! Recovery: choose the base snapshot, replay the segments after it, truncate torn tails.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::files::{self, FileKind};
use super::record::{self, DecodeError, FileId, Record, RECORD_LEN, RECORD_LEN_U64};
use super::{JournalError, Recovery};
use crate::binding::Binding;

/// Read buffer for scanning files.
const READ_BUF: usize = 1 << 20;

/// Recovered state: the last binding per address, in first-seen order, with an index by address.
///
/// A small index (8 bytes per address) in front of a dense vector stays far more cache-friendly
/// than a map holding whole bindings, which matters at millions of records.
#[derive(Default)]
struct AddrMap {
    index: HashMap<u32, u32, BuildHasherDefault<AddrHasher>>,
    bindings: Vec<Binding>,
    stamps: Vec<u64>,
}

impl AddrMap {
    fn reserve(&mut self, n: usize) {
        self.index.reserve(n);
        self.bindings.reserve(n);
        self.stamps.reserve(n);
    }

    fn insert(&mut self, b: Binding, stamp: u64) {
        let next = self.bindings.len();
        match self.index.entry(u32::from(b.addr)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let i = *e.get() as usize;
                self.bindings[i] = b;
                self.stamps[i] = stamp;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                // At most 2^32 distinct IPv4 addresses exist, so the index fits a u32.
                e.insert(next as u32);
                self.bindings.push(b);
                self.stamps.push(stamp);
            }
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.bindings.clear();
        self.stamps.clear();
    }

    /// The bindings sorted by address, with their stamps.
    fn into_sorted(self) -> (Vec<Binding>, Vec<u64>) {
        let mut v: Vec<(Binding, u64)> = self.bindings.into_iter().zip(self.stamps).collect();
        v.sort_unstable_by_key(|(b, _)| u32::from(b.addr));
        v.into_iter().unzip()
    }
}

/// A cheap hasher for `u32` addresses (splitmix64 finaliser): recovery inserts millions of them,
/// and addresses come from our own pools, so flooding resistance buys nothing here.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).rotate_left(5);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v);
    }

    fn finish(&self) -> u64 {
        let mut x = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

/// What recovery found, for [`super::Journal::open`].
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The caller's view.
    pub(crate) recovery: Recovery,
    /// Segment the journal appends to from now on.
    pub(crate) last_segment: u64,
    /// True if that segment file exists and begins with something (a header, or a damaged header
    /// followed by records); false if it must be created or its header written.
    pub(crate) last_segment_started: bool,
    /// Sequence number of the next record.
    pub(crate) next_seq: u64,
    /// Record slots in the segments replayed (what a compaction would fold away).
    pub(crate) since_base: u64,
}

/// Result of scanning one file slot by slot.
#[derive(Debug)]
struct Scan {
    /// Offset just past the last valid record.
    valid_end: u64,
    /// File length.
    len: u64,
    /// Invalid slots that have a valid record after them (corruption, not a torn tail).
    corrupt: u64,
    /// Offset just past the last slot (or partial slot) holding a non-zero byte: all-zero slots
    /// after the last record are preallocated space ([`super::ZERO_AHEAD`]), not a torn tail.
    nonzero_end: u64,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, offset: u64, reason: &'static str) -> JournalError {
    JournalError::BadRecord {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

/// Read up to one full slot; fewer bytes only at end of file.
fn read_slot(r: &mut impl Read, buf: &mut [u8; RECORD_LEN]) -> io::Result<usize> {
    let mut got = 0;
    while got < RECORD_LEN {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Walk every 128-byte slot of `path`, handing valid records (with their offsets) to `f`.
fn scan(
    path: &Path,
    mut f: impl FnMut(u64, Record) -> Result<(), JournalError>,
) -> Result<Scan, JournalError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut reader = BufReader::with_capacity(READ_BUF, file);
    let mut slot = [0u8; RECORD_LEN];
    let (mut offset, mut valid_end, mut corrupt, mut invalid_run) = (0u64, 0u64, 0u64, 0u64);
    let mut nonzero_end = 0u64;
    loop {
        let got = read_slot(&mut reader, &mut slot).map_err(io_err("read", path))?;
        if slot[..got].iter().any(|&b| b != 0) {
            // The whole slot (or partial slot) is what a write left there.
            nonzero_end = offset + got as u64;
        }
        if got < RECORD_LEN {
            break;
        }
        if slot.iter().all(|&b| b == 0) {
            // Preallocated space (or a hole): invalid, but not garbage.
            invalid_run += 1;
            offset += RECORD_LEN_U64;
            continue;
        }
        match record::decode(&slot) {
            Ok(Some(rec)) => {
                if invalid_run > 0 {
                    tracing::warn!(
                        path = %path.display(),
                        offset = offset - invalid_run * RECORD_LEN_U64,
                        records = invalid_run,
                        "journal: corrupt record(s) followed by valid ones; skipped"
                    );
                }
                corrupt += invalid_run;
                invalid_run = 0;
                f(offset, rec)?;
                valid_end = offset + RECORD_LEN_U64;
            }
            Ok(None) => invalid_run += 1,
            Err(DecodeError::Version(version)) => {
                return Err(JournalError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    offset,
                    version,
                })
            }
            Err(e) => return Err(bad(path, offset, e.reason())),
        }
        offset += RECORD_LEN_U64;
    }
    Ok(Scan {
        valid_end,
        len,
        corrupt,
        nonzero_end,
    })
}

fn check_id(path: &Path, found: FileId, expected: FileId) -> Result<(), JournalError> {
    if found == expected {
        Ok(())
    } else {
        Err(JournalError::ForeignFile {
            path: path.to_path_buf(),
            worker: expected.worker,
            segment: expected.segment,
            found_worker: found.worker,
            found_segment: found.segment,
        })
    }
}

/// How complete a snapshot file is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Quality {
    /// Header, every binding and the end record are intact.
    Complete,
    /// Usable header, but `lost` bindings (or the end record) are unreadable.
    Damaged { lost: u64 },
}

/// A snapshot loaded into the map.
#[derive(Debug)]
struct Snapshot {
    /// First sequence number after the snapshot.
    seq: u64,
    /// Bindings loaded.
    loaded: u64,
    quality: Quality,
}

/// Load snapshot `segment` into `map`. `None` if it has no usable header.
fn load_snapshot(
    path: &Path,
    id: FileId,
    map: &mut AddrMap,
) -> Result<Option<Snapshot>, JournalError> {
    let mut header: Option<(u64, u64)> = None;
    let mut end: Option<(u64, u64, u64)> = None;
    let mut loaded = 0u64;
    let scan = scan(path, |offset, rec| {
        if end.is_some() {
            return Err(bad(path, offset, "record after the snapshot end record"));
        }
        match rec {
            Record::SnapshotHeader {
                seq,
                id: found,
                count,
            } if offset == 0 => {
                check_id(path, found, id)?;
                map.reserve(usize::try_from(count).unwrap_or(0).min(1 << 26));
                header = Some((seq, count));
            }
            Record::SnapshotBinding { binding, stamp, .. } => {
                map.insert(binding, stamp);
                loaded += 1;
            }
            Record::SnapshotEnd {
                seq,
                id: found,
                count,
            } => {
                check_id(path, found, id)?;
                end = Some((seq, count, offset));
            }
            Record::SnapshotHeader { .. } => {
                return Err(bad(
                    path,
                    offset,
                    "snapshot header in the middle of a snapshot",
                ))
            }
            Record::SegmentHeader { .. } | Record::Binding { .. } => {
                return Err(bad(path, offset, "segment record in a snapshot"))
            }
        }
        Ok(())
    })?;
    let Some((seq, count)) = header else {
        return Ok(None);
    };
    let complete = scan.corrupt == 0
        && scan.valid_end == scan.len
        && loaded == count
        && end.is_some_and(|(s, c, _)| s == seq && c == count);
    let quality = if complete {
        Quality::Complete
    } else {
        Quality::Damaged {
            lost: count.saturating_sub(loaded).max(scan.corrupt),
        }
    };
    Ok(Some(Snapshot {
        seq,
        loaded,
        quality,
    }))
}

/// What replaying one segment found.
#[derive(Debug, Default)]
struct Replayed {
    /// Binding records applied.
    records: u64,
    /// Invalid slots followed by valid records.
    corrupt: u64,
    /// Bytes cut from the tail.
    torn: u64,
    /// Length after truncation.
    len: u64,
    /// Sequence number of the header, if intact.
    header_seq: Option<u64>,
    /// Highest sequence number of a binding record.
    last_seq: Option<u64>,
}

/// Replay segment `id` into `map` and cut its torn tail, if any.
fn replay_segment(
    path: &Path,
    id: FileId,
    map: &mut AddrMap,
    mut prev_seq: Option<u64>,
) -> Result<Replayed, JournalError> {
    let mut out = Replayed::default();
    let scan = scan(path, |offset, rec| {
        match rec {
            Record::SegmentHeader { seq, id: found } if offset == 0 => {
                check_id(path, found, id)?;
                out.header_seq = Some(seq);
            }
            Record::Binding {
                seq,
                binding,
                stamp,
            } => {
                if prev_seq.is_some_and(|p| seq <= p) {
                    tracing::warn!(
                        path = %path.display(),
                        offset,
                        seq,
                        "journal: sequence number does not increase; applied in file order"
                    );
                }
                prev_seq = Some(seq);
                out.last_seq = Some(seq);
                map.insert(binding, stamp);
                out.records += 1;
            }
            Record::SegmentHeader { .. } => {
                return Err(bad(
                    path,
                    offset,
                    "segment header in the middle of a segment",
                ))
            }
            Record::SnapshotHeader { .. }
            | Record::SnapshotBinding { .. }
            | Record::SnapshotEnd { .. } => {
                return Err(bad(path, offset, "snapshot record in a segment"))
            }
        }
        Ok(())
    })?;
    out.corrupt = scan.corrupt;
    out.len = scan.valid_end;
    if scan.len > scan.valid_end {
        // Zeros after the last record are the segment's preallocated space: cut, not counted.
        out.torn = scan.nonzero_end.saturating_sub(scan.valid_end);
        if out.torn > 0 {
            tracing::info!(
                path = %path.display(),
                offset = scan.valid_end,
                bytes = out.torn,
                "journal: truncating torn tail"
            );
        } else {
            tracing::debug!(
                path = %path.display(),
                offset = scan.valid_end,
                bytes = scan.len - scan.valid_end,
                "journal: cutting the unused preallocated tail"
            );
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("open", path))?;
        f.set_len(scan.valid_end)
            .map_err(io_err("truncate", path))?;
        f.sync_all().map_err(io_err("sync", path))?;
    }
    Ok(out)
}

/// Recover worker `worker`'s journal in `dir` (which exists).
pub(crate) fn recover(dir: &Path, worker: u16) -> Result<Recovered, JournalError> {
    let listing = files::list(dir, worker)?;
    for &t in &listing.tmps {
        let p = files::path(dir, worker, t, FileKind::SnapshotTmp);
        tracing::info!(path = %p.display(), "journal: removing unfinished snapshot");
        files::remove(&p)?;
    }
    let max_seg = listing.segments.last().copied();
    // Every segment from `base` to the newest must be present for a replay to be complete.
    let chain_ok = |base: u64| match max_seg {
        Some(max) if max >= base => listing.segments.range(base..).count() as u64 == max - base + 1,
        _ => true,
    };
    let id = |segment| FileId { worker, segment };

    let mut map = AddrMap::default();
    // The segment replay starts at, and the snapshot loaded for it (none: from segment 0).
    let mut chosen: Option<(u64, Option<Snapshot>)> = None;
    let mut damaged: Option<u64> = None;
    let mut skipped: Vec<String> = Vec::new();
    for &s in listing.snapshots.iter().rev() {
        let path = files::path(dir, worker, s, FileKind::Snapshot);
        if !chain_ok(s) {
            skipped.push(format!("{}: a segment after it is missing", path.display()));
            continue;
        }
        map.clear();
        match load_snapshot(&path, id(s), &mut map)? {
            Some(snap) if snap.quality == Quality::Complete => {
                chosen = Some((s, Some(snap)));
                break;
            }
            Some(snap) => {
                tracing::warn!(
                    path = %path.display(),
                    quality = ?snap.quality,
                    "journal: damaged snapshot"
                );
                skipped.push(format!("{}: damaged", path.display()));
                damaged.get_or_insert(s);
            }
            None => {
                tracing::warn!(
                    path = %path.display(),
                    "journal: snapshot without a valid header; ignored"
                );
                skipped.push(format!("{}: no valid header", path.display()));
            }
        }
    }
    if chosen.is_none() {
        let genesis = listing.segments.contains(&0)
            || (listing.segments.is_empty() && listing.snapshots.is_empty());
        if genesis && chain_ok(0) {
            map.clear();
            chosen = Some((0, None));
        } else if let Some(s) = damaged {
            map.clear();
            let path = files::path(dir, worker, s, FileKind::Snapshot);
            let snap = load_snapshot(&path, id(s), &mut map)?;
            chosen = Some((s, snap));
        }
    }
    let Some((base_seg, snap)) = chosen else {
        let mut reason = match (listing.segments.first(), max_seg) {
            (Some(lo), Some(hi)) => format!(
                "no usable snapshot, and segments {lo}..={hi} do not reach back to segment 0 \
                 without a gap"
            ),
            _ => "no usable snapshot and no segments".to_string(),
        };
        if !skipped.is_empty() {
            reason.push_str(&format!(" (snapshots rejected: {})", skipped.join("; ")));
        }
        return Err(JournalError::Unrecoverable {
            dir: dir.to_path_buf(),
            worker,
            reason,
        });
    };

    let mut rec = Recovery::default();
    let mut next_seq = 0u64;
    let mut prev_seq = None;
    if let Some(snap) = &snap {
        rec.snapshot_records = snap.loaded;
        if let Quality::Damaged { lost } = snap.quality {
            rec.corrupt_records += lost;
        }
        next_seq = snap.seq;
        prev_seq = snap.seq.checked_sub(1);
    }
    // The chosen snapshot's rename must be durable before anything it replaces is removed.
    files::sync_dir(dir)?;

    let mut last_segment_started = false;
    let mut since_base = 0u64;
    for &s in listing.segments.range(base_seg..) {
        let path = files::path(dir, worker, s, FileKind::Segment);
        let r = replay_segment(&path, id(s), &mut map, prev_seq)?;
        rec.records_replayed += r.records;
        rec.corrupt_records += r.corrupt;
        rec.torn_bytes_truncated += r.torn;
        since_base += r.records + r.corrupt;
        if let Some(h) = r.header_seq {
            next_seq = next_seq.max(h);
        }
        if let Some(l) = r.last_seq {
            next_seq = next_seq.max(l.saturating_add(1));
            prev_seq = Some(l);
        }
        last_segment_started = r.len > 0;
    }
    let last_segment = max_seg.map_or(base_seg, |m| m.max(base_seg));
    if max_seg.is_none_or(|m| m < base_seg) {
        last_segment_started = false;
    }

    let mut removed = false;
    for &s in listing.segments.range(..base_seg) {
        files::remove(&files::path(dir, worker, s, FileKind::Segment))?;
        removed = true;
    }
    for &s in listing.snapshots.range(..base_seg) {
        files::remove(&files::path(dir, worker, s, FileKind::Snapshot))?;
        removed = true;
    }
    if removed {
        files::sync_dir(dir)?;
    }

    let (bindings, stamps) = map.into_sorted();
    if let Some(&newest) = stamps.iter().max() {
        super::record::observe_stamp(newest);
    }
    rec.bindings = bindings;
    rec.stamps = stamps;
    if rec.corrupt_records > 0 {
        tracing::warn!(
            dir = %dir.display(),
            worker,
            corrupt = rec.corrupt_records,
            "journal: recovered with corrupt records; the bindings they held are lost"
        );
    }
    Ok(Recovered {
        recovery: rec,
        last_segment,
        last_segment_started,
        next_seq,
        since_base,
    })
}
