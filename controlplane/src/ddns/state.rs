//! The state file, `state_dir/ddns.state`: JSON `{"version": 1, "entries": [...]}`, written
//! to a temp file, fsynced, renamed over the old one, and the directory fsynced. A file that
//! cannot be read or parsed is renamed aside to `ddns.state.bad-<unix time>`.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::table::{Blocked, Certainty};
use super::{Granter, Identity, STATE_FILE};

/// The format version written.
const VERSION: u32 = 1;

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

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    entries: Vec<Saved>,
}

/// The file's bytes for `entries`.
pub(super) fn encode(entries: Vec<Saved>) -> Vec<u8> {
    let f = StateFile {
        version: VERSION,
        entries,
    };
    // Plain data (strings, numbers, arrays): serializing it cannot fail.
    serde_json::to_vec(&f).unwrap_or_default()
}

/// Reads `dir/ddns.state`: its entries, or none when it is missing. A file that cannot be read
/// or parsed is renamed to `ddns.state.bad-<now_secs>` (logged), and nothing is returned.
pub(super) fn load(dir: &Path, now_secs: u64) -> Vec<Saved> {
    let path = dir.join(STATE_FILE);
    let problem = match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(f) if f.version == VERSION => return f.entries,
            Ok(f) => format!("has an unknown format version ({})", f.version),
            Err(e) => format!("is not valid ({e})"),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => format!("cannot be read ({e})"),
    };
    let mut aside = dir.join(format!("{STATE_FILE}.bad-{now_secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{STATE_FILE}.bad-{now_secs}-{n}"));
        n += 1;
    }
    match fs::rename(&path, &aside) {
        Ok(()) => tracing::error!(
            file = %path.display(),
            "ddns: the state file {problem}; moved to {} and starting without it (pending DNS updates are lost; names are published again at their next renewal)",
            aside.display()
        ),
        Err(e) => tracing::error!(
            file = %path.display(),
            "ddns: the state file {problem}, and it cannot be moved aside ({e}); starting without it"
        ),
    }
    Vec::new()
}

/// Writes `bytes` as `dir/ddns.state` atomically (temp file, fsync, rename, fsync of `dir`).
pub(super) fn write(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
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
        write(dir.path(), &encode(rows.clone())).unwrap();
        assert_eq!(load(dir.path(), 1), rows);
        assert!(!dir.path().join(format!("{STATE_FILE}.tmp")).exists());
    }

    #[test]
    fn a_missing_file_is_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), 1).is_empty());
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
            assert!(load(dir.path(), 1234).is_empty(), "case {i}");
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
        assert!(load(dir.path(), 7).is_empty());
        assert!(dir.path().join("ddns.state.bad-7").is_dir());
    }
}
