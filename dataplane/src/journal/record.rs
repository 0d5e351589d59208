//! The 128-byte journal record: encoding and decoding (layout in the parent module's doc).

use std::net::Ipv4Addr;

use crate::binding::{Binding, BindingState, ClientKey, CLIENT_KEY_MAX};

/// Size of every record, in every file.
pub(crate) const RECORD_LEN: usize = 128;
/// Record size as a file offset.
pub(crate) const RECORD_LEN_U64: u64 = RECORD_LEN as u64;
/// The two magic bytes that open every record ("TJ").
const MAGIC: [u8; 2] = *b"TJ";
/// The record format version this build writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Offset of the CRC; the CRC covers every byte before it.
const CRC_AT: usize = RECORD_LEN - 4;
/// Where binding records keep their write stamp (bytes 92..100, zero in records written before
/// stamps existed; older builds ignore them).
const STAMP_AT: usize = 92;

/// The newest stamp handed out or recovered in this process (see [`next_stamp`]).
static STAMP_CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A write stamp for records written now: the wall clock in milliseconds, but never below a
/// stamp handed out or recovered before in this process, so that across every worker's
/// journal a later write never carries an earlier stamp (records of one address written by
/// two workers, one after the other, are ordered by it on recovery).
pub(crate) fn next_stamp() -> u64 {
    use std::sync::atomic::Ordering;
    let now = crate::time::Time::now().0;
    STAMP_CLOCK.fetch_max(now, Ordering::AcqRel).max(now)
}

/// Stamps recovered from disk: later stamps are at least `stamp`.
pub(crate) fn observe_stamp(stamp: u64) {
    STAMP_CLOCK.fetch_max(stamp, std::sync::atomic::Ordering::AcqRel);
}

/// Record kinds (byte 3).
const KIND_SEGMENT_HEADER: u8 = 1;
const KIND_BINDING: u8 = 2;
const KIND_SNAPSHOT_HEADER: u8 = 3;
const KIND_SNAPSHOT_BINDING: u8 = 4;
const KIND_SNAPSHOT_END: u8 = 5;

/// Identity of a journal file, carried by segment and snapshot header records.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    /// Worker that owns the file.
    pub(crate) worker: u16,
    /// Segment number (for a snapshot: the first segment replayed after it).
    pub(crate) segment: u64,
}

/// One decoded record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// First record of a `.log` segment; `seq` is the sequence number of its first binding record.
    SegmentHeader { seq: u64, id: FileId },
    /// A binding state change in a segment; `stamp` is when it was written ([`next_stamp`]).
    Binding {
        seq: u64,
        binding: Binding,
        stamp: u64,
    },
    /// First record of a `.snap`: `seq` is the first sequence number *not* covered by the snapshot,
    /// `count` the number of binding records that follow.
    SnapshotHeader { seq: u64, id: FileId, count: u64 },
    /// One live binding in a snapshot; `seq` is its index in the snapshot, `stamp` when the
    /// snapshot's state was taken.
    SnapshotBinding {
        seq: u64,
        binding: Binding,
        stamp: u64,
    },
    /// Last record of a `.snap`; repeats the header's `seq` and `count`.
    SnapshotEnd { seq: u64, id: FileId, count: u64 },
}

/// Why a slot whose CRC is correct still cannot be used.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Written by a different (newer) format version.
    Version(u8),
    /// Unknown record kind.
    Kind,
    /// Unknown binding state byte.
    State,
    /// Client key length above [`CLIENT_KEY_MAX`].
    KeyLen,
}

impl DecodeError {
    /// Human-readable reason, for errors.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            DecodeError::Version(_) => "unsupported record version",
            DecodeError::Kind => "unknown record kind",
            DecodeError::State => "unknown binding state",
            DecodeError::KeyLen => "client key longer than 32 bytes",
        }
    }
}

fn put_u16(buf: &mut [u8; RECORD_LEN], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(buf: &mut [u8; RECORD_LEN], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8; RECORD_LEN], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u16(buf: &[u8; RECORD_LEN], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn get_u32(buf: &[u8; RECORD_LEN], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn get_u64(buf: &[u8; RECORD_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn start(kind: u8, seq: u64) -> [u8; RECORD_LEN] {
    let mut buf = [0u8; RECORD_LEN];
    buf[0..2].copy_from_slice(&MAGIC);
    buf[2] = VERSION;
    buf[3] = kind;
    put_u64(&mut buf, 4, seq);
    buf
}

fn seal(mut buf: [u8; RECORD_LEN]) -> [u8; RECORD_LEN] {
    let crc = crc32fast::hash(&buf[..CRC_AT]);
    put_u32(&mut buf, CRC_AT, crc);
    buf
}

fn put_binding(buf: &mut [u8; RECORD_LEN], b: &Binding) {
    buf[12..16].copy_from_slice(&b.addr.octets());
    buf[16] = b.state as u8;
    // Flags: bit 0 from the partner, bit 1 the key is option 61 (records written before bit 1
    // existed read as "htype + chaddr", the old reading).
    buf[17] = u8::from(b.from_partner) | (u8::from(b.client_id) << 1);
    let key = b.client.as_bytes();
    // ClientKey never holds more than CLIENT_KEY_MAX (32) bytes, so the length fits a u8.
    buf[18] = key.len() as u8;
    buf[19] = b.htype;
    buf[20] = b.hlen;
    buf[24..24 + key.len()].copy_from_slice(key);
    buf[56..72].copy_from_slice(&b.chaddr);
    put_u32(buf, 72, b.start);
    put_u32(buf, 76, b.expires);
    put_u32(buf, 80, b.cltt);
    put_u32(buf, 84, b.acked_expiry);
    put_u32(buf, 88, b.sent_expiry);
}

fn put_file(buf: &mut [u8; RECORD_LEN], id: FileId, count: u64) {
    put_u16(buf, 12, id.worker);
    put_u64(buf, 16, id.segment);
    put_u64(buf, 24, count);
}

/// Encode `rec` into a sealed 128-byte record.
pub(crate) fn encode(rec: &Record) -> [u8; RECORD_LEN] {
    match *rec {
        Record::SegmentHeader { seq, id } => {
            let mut buf = start(KIND_SEGMENT_HEADER, seq);
            put_file(&mut buf, id, 0);
            seal(buf)
        }
        Record::Binding {
            seq,
            ref binding,
            stamp,
        } => {
            let mut buf = start(KIND_BINDING, seq);
            put_binding(&mut buf, binding);
            put_u64(&mut buf, STAMP_AT, stamp);
            seal(buf)
        }
        Record::SnapshotHeader { seq, id, count } => {
            let mut buf = start(KIND_SNAPSHOT_HEADER, seq);
            put_file(&mut buf, id, count);
            seal(buf)
        }
        Record::SnapshotBinding {
            seq,
            ref binding,
            stamp,
        } => {
            let mut buf = start(KIND_SNAPSHOT_BINDING, seq);
            put_binding(&mut buf, binding);
            put_u64(&mut buf, STAMP_AT, stamp);
            seal(buf)
        }
        Record::SnapshotEnd { seq, id, count } => {
            let mut buf = start(KIND_SNAPSHOT_END, seq);
            put_file(&mut buf, id, count);
            seal(buf)
        }
    }
}

fn get_binding(buf: &[u8; RECORD_LEN]) -> Result<Binding, DecodeError> {
    let state = BindingState::from_u8(buf[16]).ok_or(DecodeError::State)?;
    let key_len = usize::from(buf[18]);
    if key_len > CLIENT_KEY_MAX {
        return Err(DecodeError::KeyLen);
    }
    let mut chaddr = [0u8; 16];
    chaddr.copy_from_slice(&buf[56..72]);
    Ok(Binding {
        addr: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        state,
        client: ClientKey::new(&buf[24..24 + key_len]),
        htype: buf[19],
        hlen: buf[20],
        chaddr,
        start: get_u32(buf, 72),
        expires: get_u32(buf, 76),
        cltt: get_u32(buf, 80),
        acked_expiry: get_u32(buf, 84),
        sent_expiry: get_u32(buf, 88),
        from_partner: buf[17] & 1 != 0,
        client_id: buf[17] & 2 != 0,
    })
}

fn get_file(buf: &[u8; RECORD_LEN]) -> (FileId, u64) {
    let id = FileId {
        worker: get_u16(buf, 12),
        segment: get_u64(buf, 16),
    };
    (id, get_u64(buf, 24))
}

/// Decode one slot.
///
/// `Ok(None)` means the slot is not a record (wrong magic or CRC mismatch: garbage, a torn write,
/// or a flipped bit). `Err` means the CRC is right but this build cannot interpret the record.
pub(crate) fn decode(buf: &[u8; RECORD_LEN]) -> Result<Option<Record>, DecodeError> {
    if buf[0..2] != MAGIC || get_u32(buf, CRC_AT) != crc32fast::hash(&buf[..CRC_AT]) {
        return Ok(None);
    }
    if buf[2] != VERSION {
        return Err(DecodeError::Version(buf[2]));
    }
    let seq = get_u64(buf, 4);
    let rec = match buf[3] {
        KIND_SEGMENT_HEADER => Record::SegmentHeader {
            seq,
            id: get_file(buf).0,
        },
        KIND_BINDING => Record::Binding {
            seq,
            binding: get_binding(buf)?,
            stamp: get_u64(buf, STAMP_AT),
        },
        KIND_SNAPSHOT_HEADER => {
            let (id, count) = get_file(buf);
            Record::SnapshotHeader { seq, id, count }
        }
        KIND_SNAPSHOT_BINDING => Record::SnapshotBinding {
            seq,
            binding: get_binding(buf)?,
            stamp: get_u64(buf, STAMP_AT),
        },
        KIND_SNAPSHOT_END => {
            let (id, count) = get_file(buf);
            Record::SnapshotEnd { seq, id, count }
        }
        _ => return Err(DecodeError::Kind),
    };
    Ok(Some(rec))
}
