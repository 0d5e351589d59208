use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::compact::CrashPoint;
use super::files::{self, FileKind};
use super::record::{self, FileId, Record, RECORD_LEN};
use super::*;
use crate::binding::{BindingState, ClientKey};

const W: u16 = 3;

fn addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i)
}

/// A binding with every field set, distinct per (i, n).
fn bind(i: u8, state: BindingState, n: u32) -> Binding {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&[0x02, 0, 0, 0, i, n as u8]);
    Binding {
        addr: addr(i),
        state,
        client: ClientKey::new(&[1, 2, 0, 0, 0, i, n as u8]),
        htype: 1,
        hlen: 6,
        chaddr,
        start: 1_700_000_000 + n,
        expires: 1_700_003_600 + n,
        cltt: 1_700_000_000 + n,
        acked_expiry: 1_700_001_000 + n,
        sent_expiry: 1_700_002_000 + n,
        from_partner: n % 2 == 1,
        client_id: n % 3 == 1,
    }
}

fn cfg(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir, W)
}

fn open(dir: &Path) -> (Journal, Recovery) {
    Journal::open(cfg(dir)).expect("open journal")
}

fn seg_path(dir: &Path, segment: u64) -> PathBuf {
    files::path(dir, W, segment, FileKind::Segment)
}

fn snap_path(dir: &Path, segment: u64) -> PathBuf {
    files::path(dir, W, segment, FileKind::Snapshot)
}

fn tmp_path(dir: &Path, segment: u64) -> PathBuf {
    files::path(dir, W, segment, FileKind::SnapshotTmp)
}

fn append_commit(j: &mut Journal, bs: &[Binding]) -> CommitStats {
    for b in bs {
        j.append(b).expect("append");
    }
    j.commit().expect("commit")
}

/// Apply bindings to a model, last one per address wins.
fn model_of(bs: &[Binding]) -> Vec<Binding> {
    let mut m = BTreeMap::new();
    for b in bs {
        m.insert(u32::from(b.addr), *b);
    }
    m.into_values().collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

/// The end of the slots of `p` that hold anything but zeros.
fn records_end(p: &Path) -> u64 {
    let data = fs::read(p).unwrap();
    let slots = data.len().div_ceil(RECORD_LEN);
    (0..slots)
        .rev()
        .find(|&i| {
            data[i * RECORD_LEN..((i + 1) * RECORD_LEN).min(data.len())]
                .iter()
                .any(|&b| b != 0)
        })
        .map_or(0, |i| ((i + 1) * RECORD_LEN).min(data.len()) as u64)
}

fn flip_bit(p: &Path, offset: u64, bit: u8) {
    let mut data = fs::read(p).unwrap();
    data[offset as usize] ^= 1 << bit;
    fs::write(p, data).unwrap();
}

fn append_bytes(p: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn record_round_trip_every_kind() {
    let id = FileId {
        worker: 7,
        segment: 12_345_678_901,
    };
    let mut long = bind(9, BindingState::Abandoned, 3);
    long.client = ClientKey::new(&[0xab; 40]);
    long.hlen = 16;
    long.chaddr = [0xcd; 16];
    let recs = [
        Record::SegmentHeader { seq: 42, id },
        Record::Binding {
            seq: u64::MAX - 1,
            binding: bind(1, BindingState::Active, 1),
            stamp: 1_800_000_000_123,
        },
        Record::Binding {
            seq: 5,
            binding: long,
            stamp: u64::MAX,
        },
        Record::Binding {
            seq: 6,
            binding: Binding::empty(addr(200), BindingState::Free),
            stamp: 0,
        },
        Record::SnapshotHeader {
            seq: 9,
            id,
            count: 3,
        },
        Record::SnapshotBinding {
            seq: 0,
            binding: bind(2, BindingState::Backup, 2),
            stamp: 7,
        },
        Record::SnapshotEnd {
            seq: 9,
            id,
            count: 3,
        },
    ];
    for r in recs {
        let buf = record::encode(&r);
        assert_eq!(&buf[..3], b"TJ\x01");
        assert_eq!(record::decode(&buf), Ok(Some(r)));
        // Any single flipped bit is caught by the magic or the CRC.
        for bit in 0..RECORD_LEN * 8 {
            let mut bad = buf;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(record::decode(&bad), Ok(None), "bit {bit} of {r:?}");
        }
    }
    assert_eq!(record::decode(&[0u8; RECORD_LEN]), Ok(None));
}

#[test]
fn record_with_valid_crc_but_unknown_content_is_an_error() {
    let mut buf = record::encode(&Record::Binding {
        seq: 1,
        binding: bind(1, BindingState::Active, 1),
        stamp: 0,
    });
    let reseal = |b: &mut [u8; RECORD_LEN]| {
        let crc = crc32fast::hash(&b[..RECORD_LEN - 4]);
        b[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    };
    let mut v2 = buf;
    v2[2] = 2;
    reseal(&mut v2);
    assert_eq!(record::decode(&v2), Err(record::DecodeError::Version(2)));
    let mut kind = buf;
    kind[3] = 99;
    reseal(&mut kind);
    assert_eq!(record::decode(&kind), Err(record::DecodeError::Kind));
    buf[16] = 0;
    reseal(&mut buf);
    assert_eq!(record::decode(&buf), Err(record::DecodeError::State));
}

#[test]
fn file_names_parse_only_this_workers_canonical_names() {
    let dir = Path::new("/j");
    let p = files::path(dir, 3, 17, FileKind::Segment);
    assert_eq!(p, Path::new("/j/worker-3.00000017.log"));
    assert_eq!(
        files::parse("worker-3.00000017.log", 3),
        Some((17, FileKind::Segment))
    );
    assert_eq!(
        files::parse("worker-3.00000017.snap", 3),
        Some((17, FileKind::Snapshot))
    );
    assert_eq!(
        files::parse("worker-3.00000017.snap.tmp", 3),
        Some((17, FileKind::SnapshotTmp))
    );
    assert_eq!(
        files::parse("worker-3.123456789.log", 3),
        Some((123_456_789, FileKind::Segment))
    );
    assert_eq!(files::parse("worker-3.00000017.log", 4), None);
    assert_eq!(files::parse("worker-03.00000017.log", 3), None);
    assert_eq!(files::parse("worker-3.17.log", 3), None);
    assert_eq!(files::parse("worker-3.+0000017.log", 3), None);
    assert_eq!(files::parse("worker-3.00000017.log.bak", 3), None);
}

#[test]
fn round_trip_preserves_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let (mut j, rec) = open(&dir);
    assert!(rec.bindings.is_empty());
    assert_eq!(rec, Recovery::default());
    let mut long = bind(4, BindingState::Active, 8);
    long.client = ClientKey::new(&[0x5a; 77]);
    let bs = vec![
        bind(1, BindingState::Active, 1),
        bind(2, BindingState::Offered, 2),
        long,
        Binding::empty(addr(3), BindingState::Backup),
    ];
    let stats = append_commit(&mut j, &bs);
    assert_eq!(
        stats,
        CommitStats {
            records: 4,
            bytes: 4 * RECORD_LEN,
            synced: true
        }
    );
    assert_eq!(j.pending(), 0);
    drop(j);
    let (_j, rec) = open(&dir);
    assert_eq!(rec.bindings, model_of(&bs));
    assert_eq!(rec.records_replayed, 4);
    assert_eq!(rec.torn_bytes_truncated, 0);
    assert_eq!(rec.corrupt_records, 0);
    assert_eq!(rec.snapshot_records, 0);
}

#[test]
fn recovery_after_clean_close_continues_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut all = Vec::new();
    for round in 0..3u32 {
        let (mut j, rec) = open(dir);
        assert_eq!(rec.bindings, model_of(&all));
        assert_eq!(rec.records_replayed, all.len() as u64);
        for batch in 0..4u32 {
            let bs: Vec<_> = (0..5u8)
                .map(|i| {
                    bind(
                        i + (batch as u8 % 2) * 3,
                        BindingState::Active,
                        round * 100 + batch,
                    )
                })
                .collect();
            append_commit(&mut j, &bs);
            all.extend(bs);
        }
        // Appended but never committed: lost on close, by contract.
        j.append(&bind(99, BindingState::Active, 0)).unwrap();
        assert_eq!(j.pending(), 1);
    }
    let (_j, rec) = open(dir);
    assert_eq!(rec.bindings, model_of(&all));
    assert!(rec.bindings.iter().all(|b| b.addr != addr(99)));
    // One segment, one header, every committed record, nothing else.
    assert_eq!(
        file_len(&seg_path(dir, 0)),
        (1 + all.len() as u64) * RECORD_LEN as u64
    );
    // Sequence numbers only grow across reopens.
    let data = fs::read(seg_path(dir, 0)).unwrap();
    let seqs: Vec<u64> = data
        .chunks_exact(RECORD_LEN)
        .skip(1)
        .map(|c| match record::decode(c.try_into().unwrap()) {
            Ok(Some(Record::Binding { seq, .. })) => seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn empty_commit_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = open(tmp.path());
    let before = file_len(&seg_path(tmp.path(), 0));
    assert_eq!(
        j.commit().unwrap(),
        CommitStats {
            records: 0,
            bytes: 0,
            synced: false
        }
    );
    assert_eq!(file_len(&seg_path(tmp.path(), 0)), before);
}

/// Builds a journal with three committed batches and one last committed record; returns all
/// bindings and the last one.
fn torn_fixture(dir: &Path) -> (Vec<Binding>, Binding) {
    let (mut j, _) = open(dir);
    let mut all = Vec::new();
    for n in 0..3u32 {
        let bs: Vec<_> = (1..=4u8)
            .map(|i| bind(i, BindingState::Active, n))
            .collect();
        append_commit(&mut j, &bs);
        all.extend(bs);
    }
    let last = bind(2, BindingState::Released, 77);
    append_commit(&mut j, &[last]);
    (all, last)
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let master = tempfile::tempdir().unwrap();
    let (committed, last) = torn_fixture(master.path());
    let full = file_len(&seg_path(master.path(), 0));
    let good = full - RECORD_LEN as u64;
    for keep in 0..RECORD_LEN as u64 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        copy_dir(master.path(), dir);
        let seg = seg_path(dir, 0);
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(good + keep)
            .unwrap();
        let (mut j, rec) = open(dir);
        assert_eq!(rec.bindings, model_of(&committed), "keep {keep}");
        assert_eq!(rec.torn_bytes_truncated, keep);
        assert_eq!(rec.corrupt_records, 0);
        assert_eq!(file_len(&seg), good, "tail cut at the last whole record");
        // Appending after the cut works and survives another reopen.
        append_commit(&mut j, &[last]);
        drop(j);
        let (_j, rec) = open(dir);
        let mut expect = committed.clone();
        expect.push(last);
        assert_eq!(rec.bindings, model_of(&expect));
        assert_eq!(rec.torn_bytes_truncated, 0);
    }
    // The untouched copy recovers the last record too.
    let (_j, rec) = open(master.path());
    let mut expect = committed;
    expect.push(last);
    assert_eq!(rec.bindings, model_of(&expect));
}

#[test]
fn garbage_after_the_last_record_is_truncated() {
    let master = tempfile::tempdir().unwrap();
    let (mut all, last) = torn_fixture(master.path());
    all.push(last);
    let full = file_len(&seg_path(master.path(), 0));
    // A record-shaped prefix with a wrong CRC, to look as plausible as possible.
    let mut plausible = record::encode(&Record::Binding {
        seq: 1000,
        binding: bind(1, BindingState::Free, 0),
        stamp: 0,
    })
    .to_vec();
    plausible[100] ^= 0xff;
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xa5; 1],
        vec![0x00; 128],
        vec![0x00; 4096],
        (0..300u32).map(|i| (i * 7 + 3) as u8).collect(),
        plausible.clone(),
        [plausible.clone(), vec![0x11; 50]].concat(),
    ];
    for g in garbage {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        copy_dir(master.path(), dir);
        append_bytes(&seg_path(dir, 0), &g);
        let (mut j, rec) = open(dir);
        assert_eq!(rec.bindings, model_of(&all));
        // Zeros after the last record are preallocated space, not a torn tail.
        let torn = if g.iter().all(|&b| b == 0) {
            0
        } else {
            g.len() as u64
        };
        assert_eq!(rec.torn_bytes_truncated, torn);
        assert_eq!(rec.corrupt_records, 0);
        assert_eq!(file_len(&seg_path(dir, 0)), full);
        let more = bind(9, BindingState::Active, 9);
        append_commit(&mut j, &[more]);
        drop(j);
        let (_j, rec) = open(dir);
        let mut expect = all.clone();
        expect.push(more);
        assert_eq!(rec.bindings, model_of(&expect));
    }
}

#[test]
fn torn_segment_header_is_rewritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    drop(open(dir));
    // A crash while the first segment's header was being written.
    OpenOptions::new()
        .write(true)
        .open(seg_path(dir, 0))
        .unwrap()
        .set_len(40)
        .unwrap();
    let (mut j, rec) = open(dir);
    assert_eq!(rec.torn_bytes_truncated, 40);
    assert_eq!(file_len(&seg_path(dir, 0)), RECORD_LEN as u64);
    append_commit(&mut j, &[bind(1, BindingState::Active, 1)]);
    drop(j);
    let (_j, rec) = open(dir);
    assert_eq!(rec.bindings, vec![bind(1, BindingState::Active, 1)]);
    assert_eq!(rec.corrupt_records, 0);
}

#[test]
fn corrupted_record_in_the_middle_is_counted_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    let bs: Vec<_> = (1..=6u8)
        .map(|i| bind(i, BindingState::Active, 1))
        .collect();
    append_commit(&mut j, &bs);
    drop(j);
    let seg = seg_path(dir, 0);
    let len = file_len(&seg);
    // Slot 0 is the header; slot 3 holds bs[2] (address .3). Flip one bit in its expiry.
    flip_bit(&seg, 3 * RECORD_LEN as u64 + 77, 4);
    let (mut j, rec) = open(dir);
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.torn_bytes_truncated, 0);
    assert_eq!(rec.records_replayed, 5);
    let expect: Vec<_> = bs.iter().copied().filter(|b| b.addr != addr(3)).collect();
    assert_eq!(rec.bindings, expect);
    assert_eq!(
        file_len(&seg),
        len,
        "corruption in the middle is not truncated"
    );
    // The journal keeps working after it.
    append_commit(&mut j, &[bind(3, BindingState::Active, 2)]);
    drop(j);
    let (_j, rec) = open(dir);
    assert_eq!(
        rec.corrupt_records, 1,
        "still there until compaction folds it away"
    );
    assert!(rec.bindings.contains(&bind(3, BindingState::Active, 2)));
}

#[test]
fn corrupted_segment_header_followed_by_records_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    let bs = [
        bind(1, BindingState::Active, 1),
        bind(2, BindingState::Active, 1),
    ];
    append_commit(&mut j, &bs);
    drop(j);
    flip_bit(&seg_path(dir, 0), 20, 0);
    let (mut j, rec) = open(dir);
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.bindings, bs.to_vec());
    append_commit(&mut j, &[bind(3, BindingState::Active, 1)]);
    drop(j);
    let (_j, rec) = open(dir);
    assert_eq!(rec.bindings.len(), 3);
}

#[test]
fn released_lease_never_resurrected_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    append_commit(
        &mut j,
        &[
            bind(1, BindingState::Active, 1),
            bind(2, BindingState::Active, 1),
        ],
    );
    append_commit(&mut j, &[bind(1, BindingState::Released, 2)]);
    drop(j);
    let (_j, rec) = open(dir);
    assert_eq!(
        rec.bindings,
        vec![
            bind(1, BindingState::Released, 2),
            bind(2, BindingState::Active, 1)
        ]
    );
}

#[test]
fn released_lease_never_resurrected_across_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    // Release before the compaction: the snapshot holds Released.
    append_commit(
        &mut j,
        &[
            bind(1, BindingState::Active, 1),
            bind(2, BindingState::Active, 1),
        ],
    );
    append_commit(&mut j, &[bind(1, BindingState::Released, 2)]);
    let live = vec![
        bind(1, BindingState::Released, 2),
        bind(2, BindingState::Active, 1),
    ];
    j.compact(live).unwrap();
    assert_eq!(j.wait_compaction().unwrap().unwrap().records, 2);
    // Release after the compaction: the snapshot holds Active, the new segment Released.
    append_commit(&mut j, &[bind(2, BindingState::Released, 3)]);
    drop(j);
    assert!(snap_path(dir, 1).exists());
    assert!(!seg_path(dir, 0).exists());
    let (_j, rec) = open(dir);
    assert_eq!(rec.snapshot_records, 2);
    assert_eq!(rec.records_replayed, 1);
    assert_eq!(
        rec.bindings,
        vec![
            bind(1, BindingState::Released, 2),
            bind(2, BindingState::Released, 3)
        ]
    );
}

#[test]
fn compaction_with_pending_records_commits_them_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    append_commit(&mut j, &[bind(1, BindingState::Active, 1)]);
    j.append(&bind(1, BindingState::Released, 2)).unwrap();
    j.compact(vec![bind(1, BindingState::Released, 2)]).unwrap();
    assert_eq!(j.pending(), 0);
    j.wait_compaction().unwrap();
    drop(j);
    let (_j, rec) = open(dir);
    assert_eq!(rec.bindings, vec![bind(1, BindingState::Released, 2)]);
}

#[test]
fn compaction_runs_while_appends_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = cfg(dir);
    c.compact_after_records = 50;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    let mut model: BTreeMap<u32, Binding> = BTreeMap::new();
    let mut n = 0u32;
    let mut compactions = 0;
    let mut started = false;
    for round in 0..40u32 {
        for k in 0..16u8 {
            let state = match (u32::from(k) + round) % 3 {
                0 => BindingState::Released,
                _ => BindingState::Active,
            };
            let b = bind(k.wrapping_mul(13).wrapping_add(round as u8), state, n);
            n += 1;
            j.append(&b).unwrap();
            model.insert(u32::from(b.addr), b);
        }
        j.commit().unwrap();
        // A compaction started last round ran while this round appended and committed; wait for
        // it now so the number of compactions does not depend on how fast the thread ran.
        if started {
            j.wait_compaction().unwrap();
            started = false;
        }
        if j.needs_compaction() {
            j.compact(model.values().copied().collect()).unwrap();
            compactions += 1;
            started = true;
            assert!(!j.needs_compaction(), "not while one is running");
        }
    }
    assert!(compactions >= 5, "{compactions}");
    j.wait_compaction().unwrap();
    assert!(!j.compaction_running());
    assert_eq!(
        j.wait_compaction().unwrap(),
        None,
        "nothing left to wait for"
    );
    let segment = j.segment();
    drop(j);
    let listing = files::list(dir, W).unwrap();
    assert_eq!(
        listing.segments.iter().copied().collect::<Vec<_>>(),
        vec![segment]
    );
    assert_eq!(
        listing.snapshots.iter().copied().collect::<Vec<_>>(),
        vec![segment]
    );
    assert!(listing.tmps.is_empty());
    let (_j, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.bindings, model.values().copied().collect::<Vec<_>>());
    assert!(rec.snapshot_records > 0);
}

#[test]
fn needs_compaction_follows_the_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = cfg(dir);
    c.compact_after_records = 10;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    let bs: Vec<_> = (0..9u8).map(|i| bind(i, BindingState::Active, 0)).collect();
    append_commit(&mut j, &bs);
    assert!(!j.needs_compaction());
    append_commit(&mut j, &[bind(9, BindingState::Active, 0)]);
    assert!(j.needs_compaction());
    drop(j);
    // The count survives a restart.
    let (mut j, rec) = Journal::open(c.clone()).unwrap();
    assert!(j.needs_compaction());
    j.compact(rec.bindings).unwrap();
    j.wait_compaction().unwrap();
    assert!(!j.needs_compaction());
    drop(j);
    c.compact_after_records = 0;
    let (j, _) = Journal::open(c).unwrap();
    assert!(!j.needs_compaction(), "0 disables it");
}

/// Segment 0: .1-.4 Active; segment 1: .1 Released, .5 Active; compaction to segment 2 with
/// the crash point; after the rotation: .2 Released, .6 Active (committed) and .3 Released
/// (appended, never committed).
fn crash_during_compaction(at: CrashPoint) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    let first: Vec<_> = (1..=4u8)
        .map(|i| bind(i, BindingState::Active, 1))
        .collect();
    append_commit(&mut j, &first);
    j.compact(model_of(&first)).unwrap();
    j.wait_compaction().unwrap();
    let second = [
        bind(1, BindingState::Released, 2),
        bind(5, BindingState::Active, 2),
    ];
    append_commit(&mut j, &second);
    let mut committed = [first.clone(), second.to_vec()].concat();

    j.crash_at = Some(at);
    j.compact(model_of(&committed)).unwrap();
    assert_eq!(j.segment(), 2);
    let after = [
        bind(2, BindingState::Released, 3),
        bind(6, BindingState::Active, 3),
    ];
    append_commit(&mut j, &after);
    committed.extend(after);
    j.wait_compaction().unwrap();
    j.append(&bind(3, BindingState::Released, 4)).unwrap();
    drop(j); // the crash: the pending record is lost

    let listing = files::list(dir, W).unwrap();
    match at {
        CrashPoint::AfterRotate => {
            assert!(listing.tmps.is_empty() && !snap_path(dir, 2).exists());
        }
        CrashPoint::MidSnapshot | CrashPoint::BeforeRename => {
            assert!(tmp_path(dir, 2).exists());
            assert!(!snap_path(dir, 2).exists());
        }
        CrashPoint::AfterRename => {
            assert!(
                snap_path(dir, 2).exists()
                    && seg_path(dir, 1).exists()
                    && snap_path(dir, 1).exists()
            );
        }
        CrashPoint::MidCleanup => {
            assert!(snap_path(dir, 2).exists() && snap_path(dir, 1).exists());
        }
    }
    let (mut j, rec) = open(dir);
    assert_eq!(rec.bindings, model_of(&committed), "{at:?}");
    assert_eq!(rec.corrupt_records, 0);
    let released: Vec<_> = rec
        .bindings
        .iter()
        .filter(|b| b.state == BindingState::Released)
        .map(|b| b.addr)
        .collect();
    assert_eq!(released, vec![addr(1), addr(2)], "{at:?}");
    // Recovery tidied up: no temporary file, nothing older than the base it chose.
    let listing = files::list(dir, W).unwrap();
    assert!(listing.tmps.is_empty());
    let base = if matches!(at, CrashPoint::AfterRename | CrashPoint::MidCleanup) {
        2
    } else {
        1
    };
    assert_eq!(listing.snapshots.first(), Some(&base), "{at:?}");
    assert_eq!(listing.segments.first(), Some(&base), "{at:?}");
    // A later compaction completes normally, and the state still holds.
    let more = bind(7, BindingState::Active, 5);
    append_commit(&mut j, &[more]);
    committed.push(more);
    j.compact(model_of(&committed)).unwrap();
    j.wait_compaction().unwrap();
    drop(j);
    let (_j, rec) = open(dir);
    assert_eq!(rec.bindings, model_of(&committed), "{at:?}");
    let listing = files::list(dir, W).unwrap();
    assert_eq!(listing.snapshots.len(), 1);
    assert_eq!(listing.segments.len(), 1);
}

#[test]
fn crash_right_after_rotation() {
    crash_during_compaction(CrashPoint::AfterRotate);
}

#[test]
fn crash_while_writing_temporary_snapshot() {
    crash_during_compaction(CrashPoint::MidSnapshot);
}

#[test]
fn crash_before_snapshot_rename() {
    crash_during_compaction(CrashPoint::BeforeRename);
}

#[test]
fn crash_after_snapshot_rename_before_cleanup() {
    crash_during_compaction(CrashPoint::AfterRename);
}

#[test]
fn crash_in_the_middle_of_cleanup() {
    crash_during_compaction(CrashPoint::MidCleanup);
}

#[test]
fn damaged_snapshot_falls_back_to_a_complete_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    let bs: Vec<_> = (1..=4u8)
        .map(|i| bind(i, BindingState::Active, 1))
        .collect();
    append_commit(&mut j, &bs);
    j.crash_at = Some(CrashPoint::AfterRename);
    j.compact(model_of(&bs)).unwrap();
    j.wait_compaction().unwrap();
    drop(j);
    // Segment 0 is still there, so a damaged snapshot 1 costs nothing.
    flip_bit(&snap_path(dir, 1), 2 * RECORD_LEN as u64 + 30, 1);
    let (_j, rec) = open(dir);
    assert_eq!(rec.bindings, model_of(&bs));
    assert_eq!(rec.corrupt_records, 0);
    assert_eq!(rec.snapshot_records, 0);
    assert!(seg_path(dir, 0).exists());
}

#[test]
fn damaged_snapshot_without_fallback_loads_what_it_can() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    let bs: Vec<_> = (1..=4u8)
        .map(|i| bind(i, BindingState::Active, 1))
        .collect();
    append_commit(&mut j, &bs);
    j.compact(model_of(&bs)).unwrap();
    j.wait_compaction().unwrap();
    append_commit(&mut j, &[bind(5, BindingState::Active, 2)]);
    drop(j);
    assert!(!seg_path(dir, 0).exists());
    // Slot 0 header, slots 1..=4 bindings: damage .2.
    flip_bit(&snap_path(dir, 1), 2 * RECORD_LEN as u64 + 30, 1);
    let (_j, rec) = open(dir);
    assert_eq!(rec.corrupt_records, 1);
    assert_eq!(rec.snapshot_records, 3);
    let addrs: Vec<_> = rec.bindings.iter().map(|b| b.addr).collect();
    assert_eq!(addrs, vec![addr(1), addr(3), addr(4), addr(5)]);
}

#[test]
fn missing_segment_is_unrecoverable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    append_commit(&mut j, &[bind(1, BindingState::Active, 1)]);
    j.crash_at = Some(CrashPoint::AfterRotate);
    j.compact(vec![bind(1, BindingState::Active, 1)]).unwrap();
    j.wait_compaction().unwrap();
    j.crash_at = Some(CrashPoint::AfterRotate);
    j.compact(vec![bind(1, BindingState::Active, 1)]).unwrap();
    j.wait_compaction().unwrap();
    append_commit(&mut j, &[bind(2, BindingState::Active, 1)]);
    drop(j);
    fs::remove_file(seg_path(dir, 1)).unwrap();
    match Journal::open(cfg(dir)) {
        Err(JournalError::Unrecoverable { worker, reason, .. }) => {
            assert_eq!(worker, W);
            assert!(reason.contains("segments 0..=2"), "{reason}");
        }
        other => panic!("expected Unrecoverable, got {other:?}"),
    }
    // Losing segment 0 without a snapshot is just as unrecoverable.
    let tmp2 = tempfile::tempdir().unwrap();
    copy_dir(dir, tmp2.path());
    fs::remove_file(seg_path(tmp2.path(), 0)).unwrap();
    assert!(matches!(
        Journal::open(cfg(tmp2.path())),
        Err(JournalError::Unrecoverable { .. })
    ));
}

#[test]
fn foreign_or_newer_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    append_commit(&mut j, &[bind(1, BindingState::Active, 1)]);
    drop(j);
    // Worker 3's segment renamed to worker 4's name.
    let other = files::path(dir, 4, 0, FileKind::Segment);
    fs::copy(seg_path(dir, 0), &other).unwrap();
    let mut c = cfg(dir);
    c.worker = 4;
    match Journal::open(c) {
        Err(JournalError::ForeignFile {
            worker: 4,
            found_worker: W,
            ..
        }) => {}
        other => panic!("expected ForeignFile, got {other:?}"),
    }
    // A record of a newer format version, CRC intact.
    let mut rec = record::encode(&Record::Binding {
        seq: 99,
        binding: bind(2, BindingState::Active, 1),
        stamp: 0,
    });
    rec[2] = 2;
    let crc = crc32fast::hash(&rec[..RECORD_LEN - 4]);
    rec[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    append_bytes(&seg_path(dir, 0), &rec);
    match Journal::open(cfg(dir)) {
        Err(JournalError::UnsupportedVersion {
            version: 2, offset, ..
        }) => {
            assert_eq!(offset, 2 * RECORD_LEN as u64)
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn workers_sharing_a_directory_stay_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c0 = cfg(dir);
    c0.worker = 0;
    let mut c1 = cfg(dir);
    c1.worker = 1;
    let (mut j0, _) = Journal::open(c0.clone()).unwrap();
    let (mut j1, _) = Journal::open(c1.clone()).unwrap();
    append_commit(&mut j0, &[bind(1, BindingState::Active, 0)]);
    append_commit(&mut j1, &[bind(2, BindingState::Active, 1)]);
    j1.compact(vec![bind(2, BindingState::Active, 1)]).unwrap();
    j1.wait_compaction().unwrap();
    drop((j0, j1));
    assert_eq!(
        Journal::open(c0).unwrap().1.bindings,
        vec![bind(1, BindingState::Active, 0)]
    );
    assert_eq!(
        Journal::open(c1).unwrap().1.bindings,
        vec![bind(2, BindingState::Active, 1)]
    );
}

#[test]
fn relaxed_mode_writes_without_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = cfg(dir);
    c.durability = Durability::Relaxed;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    let bs = [
        bind(1, BindingState::Active, 1),
        bind(2, BindingState::Expired, 1),
    ];
    let stats = append_commit(&mut j, &bs);
    assert_eq!(
        stats,
        CommitStats {
            records: 2,
            bytes: 2 * RECORD_LEN,
            synced: false
        }
    );
    // Written (to the page cache) at commit, not at drop; zeros preallocated after them.
    assert_eq!(records_end(&seg_path(dir, 0)), 3 * RECORD_LEN as u64);
    assert!(file_len(&seg_path(dir, 0)) >= 3 * RECORD_LEN as u64 + ZERO_AHEAD);
    drop(j);
    let (_j, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.bindings, bs.to_vec());
}

#[test]
fn failed_commit_poisons_the_journal_and_reopen_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    let ok = [bind(1, BindingState::Active, 1)];
    append_commit(&mut j, &ok);
    // Swap in a read-only handle so the next write fails like a full or broken disk would.
    j.file = fs::File::open(seg_path(dir, 0)).unwrap();
    j.append(&bind(2, BindingState::Active, 1)).unwrap();
    match j.commit() {
        Err(JournalError::Io { op: "write", .. }) => {}
        other => panic!("expected a write error, got {other:?}"),
    }
    assert!(matches!(j.commit(), Err(JournalError::Poisoned)));
    assert!(matches!(
        j.append(&bind(3, BindingState::Active, 1)),
        Err(JournalError::Poisoned)
    ));
    assert!(matches!(j.compact(Vec::new()), Err(JournalError::Poisoned)));
    drop(j);
    let (mut j, rec) = open(dir);
    assert_eq!(rec.bindings, ok.to_vec());
    append_commit(&mut j, &[bind(2, BindingState::Active, 2)]);
}

#[test]
fn failed_compaction_keeps_the_old_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = cfg(dir);
    c.compact_after_records = 2;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    let bs = [
        bind(1, BindingState::Active, 1),
        bind(2, BindingState::Active, 1),
    ];
    append_commit(&mut j, &bs);
    assert!(j.needs_compaction());
    // A directory where the temporary snapshot should go makes the snapshot write fail.
    fs::create_dir(tmp_path(dir, 1)).unwrap();
    j.compact(bs.to_vec()).unwrap();
    match j.wait_compaction() {
        Err(JournalError::Io { op: "create", .. }) => {}
        other => panic!("expected a create error, got {other:?}"),
    }
    assert!(seg_path(dir, 0).exists() && !snap_path(dir, 1).exists());
    // The journal carries on, and still wants a compaction.
    let more = bind(3, BindingState::Released, 2);
    append_commit(&mut j, &[more]);
    assert!(j.needs_compaction());
    drop(j);
    fs::remove_dir(tmp_path(dir, 1)).unwrap();
    let (mut j, rec) = Journal::open(c.clone()).unwrap();
    let all = [bs.to_vec(), vec![more]].concat();
    assert_eq!(rec.bindings, model_of(&all));
    j.compact(rec.bindings).unwrap();
    assert_eq!(j.wait_compaction().unwrap().unwrap().snapshot_segment, 2);
    drop(j);
    let (_j, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.bindings, model_of(&all));
    assert_eq!(rec.snapshot_records, 3);
}

#[derive(Clone, Debug)]
enum Op {
    Append(u8, u8, u32),
    Commit,
    Reopen,
    Compact(Option<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..8, 1u8..=8, 0u32..1_000_000).prop_map(|(a, s, n)| Op::Append(a, s, n)),
        3 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        1 => proptest::option::of(0u8..5).prop_map(Op::Compact),
    ]
}

const CRASH_POINTS: [CrashPoint; 5] = [
    CrashPoint::AfterRotate,
    CrashPoint::MidSnapshot,
    CrashPoint::BeforeRename,
    CrashPoint::AfterRename,
    CrashPoint::MidCleanup,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn recovered_state_is_the_last_committed_state(ops in proptest::collection::vec(op(), 1..60)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (mut j, rec) = open(dir);
        prop_assert!(rec.bindings.is_empty());
        let mut committed: BTreeMap<u32, Binding> = BTreeMap::new();
        let mut pending: Vec<Binding> = Vec::new();
        for op in ops {
            match op {
                Op::Append(a, s, n) => {
                    // 1..=8 are exactly the BindingState values.
                    let state = BindingState::from_u8(s).unwrap();
                    let b = bind(a, state, n);
                    j.append(&b).unwrap();
                    pending.push(b);
                }
                Op::Commit => {
                    let stats = j.commit().unwrap();
                    prop_assert_eq!(stats.records, pending.len());
                    for b in pending.drain(..) {
                        committed.insert(u32::from(b.addr), b);
                    }
                }
                Op::Reopen => {
                    drop(j);
                    pending.clear();
                    let (nj, rec) = open(dir);
                    j = nj;
                    let expect: Vec<Binding> = committed.values().copied().collect();
                    prop_assert_eq!(&rec.bindings, &expect);
                    prop_assert_eq!(rec.corrupt_records, 0);
                    prop_assert_eq!(rec.torn_bytes_truncated, 0);
                }
                Op::Compact(crash) => {
                    j.crash_at = crash.map(|c| CRASH_POINTS[usize::from(c)]);
                    let mut live = committed.clone();
                    for b in &pending {
                        live.insert(u32::from(b.addr), *b);
                    }
                    match j.compact(live.values().copied().collect()) {
                        Ok(()) => {
                            committed = live;
                            pending.clear();
                        }
                        Err(JournalError::CompactionBusy) => {}
                        Err(e) => panic!("compact: {e}"),
                    }
                }
            }
        }
        drop(j);
        let (_j, rec) = open(dir);
        prop_assert_eq!(&rec.bindings, &committed.values().copied().collect::<Vec<_>>());
        prop_assert_eq!(rec.corrupt_records, 0);
    }
}

/// Polls the background sync until the journal is durable up to `mark` (at most 10 s).
fn wait_durable(j: &mut Journal, mark: u64) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while j.durable_seq() < mark {
        j.poll_sync().expect("background sync");
        assert!(
            std::time::Instant::now() < until,
            "background sync never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn background_sync_makes_each_written_batch_durable_and_wakes_the_worker() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = open(dir.path());
    let wakes = Arc::new(AtomicU64::new(0));
    let w = wakes.clone();
    assert!(j
        .start_background_sync(Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }))
        .unwrap());
    let mut all = Vec::new();
    let mut last_mark = j.durable_seq();
    for batch in 0..20u32 {
        let bs: Vec<Binding> = (1..=5u8)
            .map(|i| bind(i, BindingState::Active, batch))
            .collect();
        for b in &bs {
            j.append(b).unwrap();
        }
        all.extend_from_slice(&bs);
        let mark = j.write().unwrap();
        // Marks grow by the batch's record count: each batch waits for its own records.
        assert_eq!(mark, last_mark + 5);
        last_mark = mark;
        if batch % 4 == 3 {
            wait_durable(&mut j, mark);
        }
    }
    wait_durable(&mut j, last_mark);
    assert!(!j.sync_pending());
    assert!(wakes.load(Ordering::SeqCst) >= 1);
    drop(j);
    let (_, rec) = open(dir.path());
    assert_eq!(rec.bindings, model_of(&all));
}

#[test]
fn commit_after_background_writes_syncs_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = open(dir.path());
    j.start_background_sync(std::sync::Arc::new(|| {})).unwrap();
    let a = bind(1, BindingState::Active, 0);
    j.append(&a).unwrap();
    let mark = j.write().unwrap();
    // Nothing left to append: commit still waits for (or runs) the sync covering `mark`.
    j.commit().unwrap();
    assert!(j.durable_seq() >= mark);
    assert!(!j.sync_pending());
    // Compaction rotates with a sync in flight or not; later writes land in the new segment
    // and the background sync follows the rotation.
    let b = bind(2, BindingState::Active, 1);
    j.append(&b).unwrap();
    j.write().unwrap();
    j.compact(vec![a, b]).unwrap();
    j.wait_compaction().unwrap();
    let c = bind(3, BindingState::Active, 2);
    j.append(&c).unwrap();
    let mark = j.write().unwrap();
    wait_durable(&mut j, mark);
    assert_eq!(j.segment(), 1);
    drop(j);
    let (_, rec) = open(dir.path());
    assert_eq!(rec.bindings, model_of(&[a, b, c]));
}

#[test]
fn relaxed_journal_has_no_sync_thread_and_marks_are_durable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.durability = Durability::Relaxed;
    let (mut j, _) = Journal::open(c).unwrap();
    assert!(!j.start_background_sync(std::sync::Arc::new(|| {})).unwrap());
    j.append(&bind(1, BindingState::Active, 0)).unwrap();
    let mark = j.write().unwrap();
    assert_eq!(j.durable_seq(), mark);
}

/// Segments carry zeros ahead of their records, extended as records cross them; a crash
/// (no clean close) leaves them behind and recovery cuts them without calling them torn,
/// keeping every committed record, and the journal goes on writing after the last one.
#[test]
fn preallocated_zeros_are_cut_on_recovery_not_counted_as_torn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut j, _) = open(dir);
    let per_mib = (ZERO_AHEAD as usize) / RECORD_LEN;
    // Enough records to cross the first zeroed region twice, committed in batches.
    let mut all = Vec::new();
    for n in 0..(2 * per_mib / 250 + 1) as u32 {
        let bs: Vec<_> = (0..250u32)
            .map(|i| {
                let mut b = bind(1, BindingState::Active, n);
                b.addr = std::net::Ipv4Addr::from(0x0a00_0000 + n * 250 + i);
                b
            })
            .collect();
        append_commit(&mut j, &bs);
        all.extend(bs);
    }
    let seg = seg_path(dir, 0);
    let end = records_end(&seg);
    assert_eq!(end, (all.len() as u64 + 1) * RECORD_LEN as u64);
    assert!(file_len(&seg) > end, "zeros ahead of the records");
    assert!(file_len(&seg) <= end + 2 * ZERO_AHEAD);
    // A crash: no Drop, the zeros stay.
    std::mem::forget(j);
    let (mut j, rec) = open(dir);
    assert_eq!(rec.bindings.len(), all.len());
    assert_eq!(rec.torn_bytes_truncated, 0);
    assert_eq!(rec.corrupt_records, 0);
    assert_eq!(file_len(&seg), end, "the unused zeros were cut");
    let mut more = bind(2, BindingState::Released, 5);
    more.addr = std::net::Ipv4Addr::new(10, 200, 0, 1);
    append_commit(&mut j, &[more]);
    drop(j);
    assert_eq!(
        file_len(&seg),
        end + RECORD_LEN as u64,
        "a clean close cuts them too"
    );
    let (_j, rec) = open(dir);
    assert_eq!(rec.bindings.len(), all.len() + 1);
    assert_eq!(rec.torn_bytes_truncated, 0);
}
