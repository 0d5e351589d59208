//! The updater's state on disk: a snapshot, `state_dir/ddns.state`, and a journal of the
//! changes since it, `state_dir/ddns.journal`.
//!
//! * The snapshot is JSON `{"version": 1, "generation": G, "entries": [...]}`, written to a
//!   temp file, fsynced, renamed over the old one, and the directory fsynced.
//! * The journal starts with the line `{"journal": 1, "generation": G}` and holds one JSON line
//!   per change after snapshot G: `{"put": {entry}}` or `{"del": "10.0.0.5"}`. Appends are
//!   `fdatasync`ed; they cost what changed, not the size of the table (rewriting the whole table
//!   every 200 ms under load took a core's worth of JSON and disk bandwidth away from the lease
//!   journal). A new snapshot (generation G + 1) is followed by a fresh journal for G + 1.
//!
//! Loading reads the snapshot, then replays the journal when its generation is the snapshot's
//! (a journal from an older generation is already contained in the snapshot: a crash came
//! between writing the two). A last line without its newline is a write cut short by a crash and
//! is ignored. A snapshot that cannot be read or parsed is renamed aside to
//! `ddns.state.bad-<unix time>`, and so is a journal whose first line is not valid; a change
//! line that is not valid ends the replay there (logged).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{Blocked, Certainty};
use super::{Granter, Identity, JOURNAL_FILE, STATE_FILE};

/// The format version written.
const VERSION: u32 = 1;
/// The journal's format version.
const JOURNAL_VERSION: u32 = 1;

/// One entry as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Saved {
    pub addr: Ipv4Addr,
    pub scope: String,
    pub want: Option<SavedRecord>,
    pub held: Option<SavedHeld>,
    pub expires: u32,
    pub by: Granter,
    pub blocked: Option<Blocked>,
    pub attempts: u32,
    /// Unix milliseconds.
    pub next_try: u64,
    /// Unix milliseconds.
    pub pending_since: Option<u64>,
    pub last_error: Option<String>,
}

/// A name with its client, as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SavedRecord {
    /// Presentation form.
    pub fqdn: String,
    pub identity: Identity,
    pub forward: bool,
}

/// What DNS holds, as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SavedHeld {
    pub record: SavedRecord,
    pub certainty: Certainty,
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Change {
    /// The entry of this address is now this.
    Put(Box<Saved>),
    /// The address has no entry any more.
    Del(Ipv4Addr),
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// Absent in files written before the journal: 0.
    #[serde(default)]
    generation: u64,
    entries: Vec<Saved>,
}

#[derive(Serialize, Deserialize)]
struct JournalHead {
    journal: u32,
    generation: u64,
}

/// The snapshot's bytes for `entries`.
pub(super) fn encode(generation: u64, entries: Vec<Saved>) -> Vec<u8> {
    let f = StateFile {
        version: VERSION,
        generation,
        entries,
    };
    // Plain data (strings, numbers, arrays): serializing it cannot fail.
    serde_json::to_vec(&f).unwrap_or_default()
}

/// Journal lines for `changes`, each ending with a newline.
pub(super) fn encode_changes(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::with_capacity(changes.len() * 256);
    for c in changes {
        // As above: cannot fail.
        if serde_json::to_writer(&mut out, c).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// What [`load`] read back.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// The entries, by address.
    pub entries: Vec<Saved>,
    /// The snapshot's generation (0 without one).
    pub generation: u64,
    /// Journal lines replayed on top of the snapshot.
    pub replayed: usize,
    /// Whether either file was there (read or set aside).
    pub found: bool,
}

/// Why a file read back cannot be used (it is set aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unusable {
    /// The snapshot, and why.
    Snapshot(String),
    /// The journal's first line is not a valid header.
    JournalHeader,
}

/// What [`decode`] makes of the two files' bytes.
#[derive(Debug, Default)]
pub(super) struct Decoded {
    /// As [`Loaded`]; `found` is left false.
    pub loaded: Loaded,
    /// The files to set aside.
    pub unusable: Vec<Unusable>,
}

/// Decodes the snapshot and the journal (no file access): the entries after the replay, and
/// which file cannot be used. `None`: the file is not there.
pub(super) fn decode(snapshot: Option<&[u8]>, journal: Option<&[u8]>) -> Decoded {
    let mut out = Decoded::default();
    let mut rows: BTreeMap<Ipv4Addr, Saved> = BTreeMap::new();
    if let Some(bytes) = snapshot {
        match serde_json::from_slice::<StateFile>(bytes) {
            Ok(f) if f.version == VERSION => {
                out.loaded.generation = f.generation;
                for s in f.entries {
                    rows.insert(s.addr, s);
                }
            }
            Ok(f) => out.unusable.push(Unusable::Snapshot(format!(
                "has an unknown format version ({})",
                f.version
            ))),
            Err(e) => out
                .unusable
                .push(Unusable::Snapshot(format!("is not valid ({e})"))),
        }
    }
    if let Some(bytes) = journal {
        match replay(bytes, out.loaded.generation, &mut rows) {
            Some(n) => out.loaded.replayed = n,
            None => out.unusable.push(Unusable::JournalHeader),
        }
    }
    out.loaded.entries = rows.into_values().collect();
    out
}

/// Reads the snapshot and replays the journal on it. A file that cannot be read or parsed is
/// renamed aside with the suffix `.bad-<now_secs>` (logged); what remains is returned.
pub(super) fn load(dir: &Path, now_secs: u64) -> Loaded {
    let (path, jpath) = (dir.join(STATE_FILE), dir.join(JOURNAL_FILE));
    let read = |p: &Path, consequence: &str| match fs::read(p) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            set_aside(p, now_secs, &format!("cannot be read ({e})"), consequence);
            None
        }
    };
    const LOST_ALL: &str =
        "pending DNS updates are lost; names are published again at their next renewal";
    const LOST_CHANGES: &str = "the changes since the last snapshot are lost";
    let snapshot = read(&path, LOST_ALL);
    let journal = read(&jpath, LOST_CHANGES);
    let found = path.exists() || jpath.exists();
    let d = decode(snapshot.as_deref(), journal.as_deref());
    for u in &d.unusable {
        match u {
            Unusable::Snapshot(problem) => set_aside(&path, now_secs, problem, LOST_ALL),
            Unusable::JournalHeader => set_aside(
                &jpath,
                now_secs,
                "does not start with a valid header",
                LOST_CHANGES,
            ),
        }
    }
    Loaded { found, ..d.loaded }
}

/// Applies the journal `bytes` to `rows` when it continues snapshot `generation`: the lines
/// applied, or `None` when its header is not valid.
fn replay(bytes: &[u8], generation: u64, rows: &mut BTreeMap<Ipv4Addr, Saved>) -> Option<usize> {
    let mut lines = bytes.split_inclusive(|b| *b == b'\n');
    let head = lines
        .next()
        .and_then(|l| serde_json::from_slice::<JournalHead>(l).ok())
        .filter(|h| h.journal == JOURNAL_VERSION)?;
    if head.generation != generation {
        // Written before the snapshot that contains it (a crash between the two writes).
        tracing::info!(
            journal = head.generation,
            snapshot = generation,
            "ddns: the journal belongs to an older snapshot; not replayed"
        );
        return Some(0);
    }
    let mut n = 0usize;
    for (i, line) in lines.enumerate() {
        if line.last() != Some(&b'\n') {
            tracing::warn!(
                line = i + 2,
                "ddns: the journal's last line was cut short (a crash while writing); ignored"
            );
            break;
        }
        match serde_json::from_slice::<Change>(line) {
            Ok(Change::Put(s)) => {
                rows.insert(s.addr, *s);
            }
            Ok(Change::Del(a)) => {
                rows.remove(&a);
            }
            Err(e) => {
                tracing::error!(
                    line = i + 2,
                    error = %e,
                    "ddns: a journal line is not valid; the changes from it on are ignored"
                );
                break;
            }
        }
        n += 1;
    }
    Some(n)
}

/// Renames `path` to `<path>.bad-<now_secs>` (or `-1`, `-2`... when taken), logging why.
fn set_aside(path: &Path, now_secs: u64, problem: &str, consequence: &str) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut aside = dir.join(format!("{name}.bad-{now_secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{name}.bad-{now_secs}-{n}"));
        n += 1;
    }
    match fs::rename(path, &aside) {
        Ok(()) => tracing::error!(
            file = %path.display(),
            "ddns: {name} {problem}; moved to {} and starting without it ({consequence})",
            aside.display()
        ),
        Err(e) => tracing::error!(
            file = %path.display(),
            "ddns: {name} {problem}, and it cannot be moved aside ({e}); starting without it"
        ),
    }
}

/// Writes snapshots and appends to the journal; owned by one thread.
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// The open journal and the directory it is in.
    journal: Option<(PathBuf, File)>,
}

impl Writer {
    /// Writes `bytes` as `dir/ddns.state` atomically (temp file, fsync, rename, fsync of
    /// `dir`), then starts an empty journal for `generation` the same way and keeps it open.
    /// On error the journal is closed: appends fail until the next snapshot.
    pub(super) fn snapshot(&mut self, dir: &Path, generation: u64, bytes: &[u8]) -> io::Result<()> {
        self.journal = None;
        replace(dir, STATE_FILE, bytes)?;
        let mut head = serde_json::to_vec(&JournalHead {
            journal: JOURNAL_VERSION,
            generation,
        })
        .unwrap_or_default();
        head.push(b'\n');
        replace(dir, JOURNAL_FILE, &head)?;
        let f = OpenOptions::new()
            .append(true)
            .open(dir.join(JOURNAL_FILE))?;
        self.journal = Some((dir.to_path_buf(), f));
        Ok(())
    }

    /// Appends journal lines and `fdatasync`s them. Fails without an open journal (none yet,
    /// or a write failed since the last snapshot: a part-written line may be in it).
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some((_, f)) = self.journal.as_mut() else {
            return Err(io::Error::other(
                "no journal open (waiting for a new snapshot)",
            ));
        };
        let r = f.write_all(bytes).and_then(|()| f.sync_data());
        if r.is_err() {
            self.journal = None;
        }
        r
    }

    /// The directory of the open journal, if one is open.
    pub(super) fn dir(&self) -> Option<&Path> {
        self.journal.as_ref().map(|(d, _)| d.as_path())
    }
}

/// Writes `dir/name` atomically: a temp file, fsync, rename, fsync of `dir`.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(addr: [u8; 4]) -> Saved {
        Saved {
            addr: Ipv4Addr::from(addr),
            scope: "lan".into(),
            want: Some(SavedRecord {
                fqdn: "host.tdm.test.".into(),
                identity: Identity {
                    htype: 1,
                    hw: vec![0x52, 0x54, 0, 0, 0, 5],
                    client_id: None,
                },
                forward: true,
            }),
            held: None,
            expires: 1_900_000_000,
            by: Granter::Local,
            blocked: None,
            attempts: 3,
            next_try: 1_800_000_000_000,
            pending_since: Some(1_799_999_999_000),
            last_error: Some("timeout at 10.77.0.53:53: no answer".into()),
        }
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![saved([10, 77, 0, 5]), saved([10, 77, 0, 6])];
        Writer::default()
            .snapshot(dir.path(), 3, &encode(3, rows.clone()))
            .unwrap();
        let l = load(dir.path(), 1);
        assert_eq!(
            (l.entries, l.generation, l.replayed, l.found),
            (rows, 3, 0, true)
        );
        assert!(!dir.path().join(format!("{STATE_FILE}.tmp")).exists());
        assert!(!dir.path().join(format!("{JOURNAL_FILE}.tmp")).exists());
    }

    #[test]
    fn changes_appended_to_the_journal_are_replayed_on_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::default();
        w.snapshot(dir.path(), 1, &encode(1, vec![saved([10, 77, 0, 5])]))
            .unwrap();
        let mut changed = saved([10, 77, 0, 5]);
        changed.attempts = 9;
        w.append(&encode_changes(&[
            Change::Put(Box::new(saved([10, 77, 0, 6]))),
            Change::Put(Box::new(changed.clone())),
        ]))
        .unwrap();
        w.append(&encode_changes(&[Change::Del(Ipv4Addr::new(10, 77, 0, 6))]))
            .unwrap();
        let l = load(dir.path(), 1);
        assert_eq!((l.entries, l.replayed), (vec![changed.clone()], 3));

        // A crash in the middle of an append leaves a line without its newline: ignored.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        let torn = encode_changes(&[Change::Del(Ipv4Addr::new(10, 77, 0, 5))]);
        f.write_all(&torn[..torn.len() - 1]).unwrap();
        let l = load(dir.path(), 1);
        assert_eq!((l.entries, l.replayed), (vec![changed], 3));

        // The next snapshot starts an empty journal.
        w.snapshot(dir.path(), 2, &encode(2, Vec::new())).unwrap();
        let l = load(dir.path(), 1);
        assert_eq!((l.entries.len(), l.generation, l.replayed), (0, 2, 0));
    }

    #[test]
    fn a_journal_of_an_older_snapshot_is_not_replayed() {
        // A crash after the new snapshot was renamed in, before its fresh journal was.
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::default();
        w.snapshot(dir.path(), 4, &encode(4, Vec::new())).unwrap();
        w.append(&encode_changes(&[Change::Put(Box::new(saved([
            10, 77, 0, 5,
        ])))]))
        .unwrap();
        fs::write(
            dir.path().join(STATE_FILE),
            encode(5, vec![saved([10, 77, 0, 7])]),
        )
        .unwrap();
        let l = load(dir.path(), 1);
        assert_eq!(
            (l.entries, l.generation, l.replayed),
            (vec![saved([10, 77, 0, 7])], 5, 0)
        );
    }

    #[test]
    fn a_bad_journal_line_ends_the_replay_and_a_bad_header_sets_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join(JOURNAL_FILE);
        let mut bytes = br#"{"journal": 1, "generation": 0}"#.to_vec();
        bytes.push(b'\n');
        bytes.extend(encode_changes(&[Change::Put(Box::new(saved([
            10, 77, 0, 5,
        ])))]));
        bytes.extend(b"{\"put\": 7}\n");
        bytes.extend(encode_changes(&[Change::Put(Box::new(saved([
            10, 77, 0, 6,
        ])))]));
        fs::write(&j, &bytes).unwrap();
        // No snapshot: generation 0, so the journal continues it.
        let l = load(dir.path(), 1);
        assert_eq!((l.entries, l.replayed), (vec![saved([10, 77, 0, 5])], 1));

        fs::write(&j, b"garbage\n").unwrap();
        let l = load(dir.path(), 9);
        assert!(l.entries.is_empty() && l.found);
        assert!(!j.exists());
        assert!(dir.path().join("ddns.journal.bad-9").is_file());
    }

    #[test]
    fn a_snapshot_from_before_the_journal_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let row = serde_json::to_string(&saved([10, 77, 0, 5])).unwrap();
        fs::write(
            dir.path().join(STATE_FILE),
            format!(r#"{{"version": 1, "entries": [{row}]}}"#),
        )
        .unwrap();
        let l = load(dir.path(), 1);
        assert_eq!((l.entries, l.generation), (vec![saved([10, 77, 0, 5])], 0));
    }

    #[test]
    fn decoding_says_which_file_is_unusable_and_touches_nothing() {
        let d = decode(None, None);
        assert!(d.loaded.entries.is_empty() && d.unusable.is_empty());
        let d = decode(Some(b"{"), Some(b"nope\n"));
        assert!(
            matches!(&d.unusable[..], [Unusable::Snapshot(p), Unusable::JournalHeader] if p.starts_with("is not valid")),
            "{:?}",
            d.unusable
        );
        let mut journal = br#"{"journal": 1, "generation": 0}"#.to_vec();
        journal.push(b'\n');
        journal.extend(encode_changes(&[Change::Put(Box::new(saved([
            10, 77, 0, 5,
        ])))]));
        let d = decode(Some(&encode(0, Vec::new())), Some(&journal));
        assert_eq!((d.loaded.entries.len(), d.loaded.replayed), (1, 1));
    }

    #[test]
    fn appends_fail_until_a_snapshot_opens_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::default();
        assert!(w.append(b"{}\n").is_err());
        assert!(w.dir().is_none());
        w.snapshot(dir.path(), 1, &encode(1, Vec::new())).unwrap();
        assert_eq!(w.dir(), Some(dir.path()));
        w.append(&encode_changes(&[Change::Del(Ipv4Addr::new(10, 77, 0, 5))]))
            .unwrap();
        // A snapshot into a directory that is gone fails and closes the journal.
        let gone = dir.path().join("gone");
        assert!(w.snapshot(&gone, 2, b"{}").is_err());
        assert!(w.append(b"{}\n").is_err());
    }

    #[test]
    fn a_missing_file_is_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let l = load(dir.path(), 1);
        assert!(l.entries.is_empty() && !l.found);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_files_are_set_aside_never_twice_to_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        for (i, bytes) in [
            &b"{ not json"[..],
            br#"{"version": 99, "entries": []}"#,
            br#"{"version": 1, "entries": [{"addr": "300.1.1.1"}]}"#,
            &[0xff, 0xfe, 0x00][..],
        ]
        .into_iter()
        .enumerate()
        {
            fs::write(&path, bytes).unwrap();
            assert!(load(dir.path(), 1234).entries.is_empty(), "case {i}");
            assert!(!path.exists(), "case {i}: moved aside");
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ddns.state.bad-1234",
                "ddns.state.bad-1234-1",
                "ddns.state.bad-1234-2",
                "ddns.state.bad-1234-3"
            ]
        );
    }

    #[test]
    fn a_directory_in_the_way_is_set_aside_too() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(STATE_FILE)).unwrap();
        assert!(load(dir.path(), 7).entries.is_empty());
        assert!(dir.path().join("ddns.state.bad-7").is_dir());
    }
}
