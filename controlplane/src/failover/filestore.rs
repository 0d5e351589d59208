//! A [`StateStore`] in a file: one small file per relationship in the state directory.
//!
//! Each write replaces the whole file atomically: the new bytes go to `<file>.tmp`, which is
//! synced (`fdatasync`) and renamed over the file, and then the directory is synced so the rename
//! itself survives a power loss. A crash at any point leaves either the old state or the new one,
//! never a mix; a `.tmp` left behind by a crash is ignored and overwritten by the next write.
//!
//! The bytes are [`PersistedState::to_bytes`]' fixed-size, versioned, checksummed form. A file
//! that does not parse is reported as [`StoreError::Corrupt`] rather than ignored: starting
//! without the saved state would forget, for example, that this server is in PARTNER-DOWN. The
//! operator deletes the file to start the relationship in RECOVER instead.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::peer::{PersistedState, StateStore, StoreError, PERSISTED_LEN};

/// The durable state of one failover relationship, in `<dir>/failover-<name>.state`.
#[derive(Debug)]
pub struct FileStore {
    /// The state file.
    path: PathBuf,
    /// Where each write goes first (`<file>.tmp`).
    tmp: PathBuf,
    /// The directory holding both, synced after each rename.
    dir: PathBuf,
    /// The state file's modification time when it was opened (seconds since the epoch).
    alive_at_open: Option<u32>,
}

/// The state file of relationship `name` in `dir`: `<dir>/failover-<name>.state`.
pub fn state_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("failover-{name}.state"))
}

fn io_error(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

impl FileStore {
    /// Open the store of relationship `name` in `dir` (file `failover-<name>.state`; the
    /// configuration has already limited `name` to `A-Z a-z 0-9 . _ -`); returns the saved state
    /// if a valid one exists.
    ///
    /// No file is `Ok(None)` (a relationship never saved). A file that is not a valid state is
    /// [`StoreError::Corrupt`]; a missing directory or any other read failure is
    /// [`StoreError::Io`] naming the path.
    pub fn open(dir: &Path, name: &str) -> Result<(FileStore, Option<PersistedState>), StoreError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::Io(format!(
                    "{}: not a directory",
                    dir.display()
                )))
            }
            Err(e) => return Err(io_error(dir, &e)),
        }
        let path = state_path(dir, name);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        // The file's modification time: the last write or keep-alive stamp before this start.
        let alive_at_open = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u32::try_from(d.as_secs()).ok());
        let store = FileStore {
            tmp: PathBuf::from(tmp),
            dir: dir.to_path_buf(),
            path,
            alive_at_open,
        };
        let saved = store.read()?;
        Ok((store, saved))
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, if the file exists.
    fn read(&self) -> Result<Option<PersistedState>, StoreError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&self.path, &e)),
        };
        // One byte more than a state: a longer file is corrupt, and is not read whole.
        let mut bytes = Vec::with_capacity(PERSISTED_LEN + 1);
        file.take(PERSISTED_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&self.path, &e))?;
        PersistedState::from_bytes(&bytes).map(Some)
    }

    fn write_tmp(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp)?;
        f.write_all(bytes)?;
        f.sync_data()
    }
}

impl StateStore for FileStore {
    /// Write `state` to `<file>.tmp`, `fdatasync` it, rename it over the file and sync the
    /// directory. Any failure is [`StoreError::Io`] with the path and the OS error; the file then
    /// still holds the previous state (or, if only the directory sync failed, possibly the new
    /// one).
    fn persist(&mut self, state: &PersistedState) -> Result<(), StoreError> {
        self.write_tmp(&state.to_bytes())
            .map_err(|e| io_error(&self.tmp, &e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io_error(&self.path, &e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, &e))
    }

    /// Set the state file's modification time to `now` (no data written, no sync: a lost
    /// stamp only makes the next start think the server was away longer, which is the safe
    /// side).
    fn keep_alive(&mut self, now: u32) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(now));
        let r = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_modified(t));
        if let Err(e) = r {
            tracing::debug!(path = %self.path.display(), error = %e, "failover state: keep-alive stamp");
        }
    }

    fn last_alive(&self) -> Option<u32> {
        self.alive_at_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::peer::{Mode, PartnerDownCause, PeerState, Role};
    use tandem_dataplane::hash::BucketMap;

    fn sample(state: PeerState, stos: u32) -> PersistedState {
        PersistedState {
            state,
            stos,
            prior: state,
            partner_down_cause: (state == PeerState::PartnerDown)
                .then_some(PartnerDownCause::Automatic),
            recover_stos: 0,
            partner_state: Some(PeerState::CommunicationsInterrupted),
            partner_stos: stos - 100,
            partner_last_heard: stos - 50,
            partner_seen_at: stos - 40,
            mclt: 3600,
            hba: BucketMap::from_percent(50),
            mode: Mode::HotStandby {
                active: Role::Primary,
                reserve_percent: 5,
            },
            fresh: false,
        }
    }

    fn tmp_of(store: &FileStore) -> PathBuf {
        let mut t = store.path().as_os_str().to_owned();
        t.push(".tmp");
        PathBuf::from(t)
    }

    #[test]
    fn missing_file_is_no_state_and_a_write_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, saved) = FileStore::open(dir.path(), "lb-pair").unwrap();
        assert_eq!(saved, None);
        assert_eq!(store.path(), dir.path().join("failover-lb-pair.state"));
        assert!(!store.path().exists(), "open alone writes nothing");

        let s = sample(PeerState::Normal, 1_700_000_000);
        store.persist(&s).unwrap();
        let on_disk = std::fs::read(store.path()).unwrap();
        assert_eq!(on_disk, s.to_bytes());
        assert!(!tmp_of(&store).exists(), "the temporary file was renamed");

        let (_, again) = FileStore::open(dir.path(), "lb-pair").unwrap();
        assert_eq!(again, Some(s));
    }

    #[test]
    fn a_write_replaces_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = FileStore::open(dir.path(), "r").unwrap();
        let first = sample(PeerState::Normal, 1_700_000_000);
        let second = sample(PeerState::PartnerDown, 1_700_000_900);
        store.persist(&first).unwrap();
        store.persist(&second).unwrap();
        assert_eq!(FileStore::open(dir.path(), "r").unwrap().1, Some(second));
        // Relationships keep separate files.
        assert_eq!(FileStore::open(dir.path(), "other").unwrap().1, None);
    }

    #[test]
    fn a_corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path(), "r");
        let good = sample(PeerState::Normal, 1_700_000_000).to_bytes();

        let mut flipped = good;
        flipped[7] ^= 0x01;
        std::fs::write(&path, flipped).unwrap();
        assert_eq!(
            FileStore::open(dir.path(), "r").unwrap_err(),
            StoreError::Corrupt("checksum")
        );

        std::fs::write(&path, &good[..PERSISTED_LEN - 1]).unwrap();
        assert_eq!(
            FileStore::open(dir.path(), "r").unwrap_err(),
            StoreError::Corrupt("length")
        );

        let mut longer = good.to_vec();
        longer.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, longer).unwrap();
        assert_eq!(
            FileStore::open(dir.path(), "r").unwrap_err(),
            StoreError::Corrupt("length")
        );

        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            FileStore::open(dir.path(), "r").unwrap_err(),
            StoreError::Corrupt("length")
        );

        // Deleting the file is the way out: the relationship then starts without a state.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(FileStore::open(dir.path(), "r").unwrap().1, None);
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nope");
        match FileStore::open(&gone, "r") {
            Err(StoreError::Io(m)) => {
                assert!(m.starts_with(&format!("{}: ", gone.display())), "{m}");
                assert!(m.contains("No such file or directory"), "{m}");
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }

        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            FileStore::open(&file, "r").unwrap_err(),
            StoreError::Io(format!("{}: not a directory", file.display()))
        );

        // The directory disappearing after open makes the write fail, naming the temporary file.
        let sub = dir.path().join("state");
        std::fs::create_dir(&sub).unwrap();
        let (mut store, _) = FileStore::open(&sub, "r").unwrap();
        std::fs::remove_dir(&sub).unwrap();
        match store.persist(&sample(PeerState::Normal, 1_700_000_000)) {
            Err(StoreError::Io(m)) => {
                assert!(
                    m.starts_with(&format!("{}: ", tmp_of(&store).display())),
                    "{m}"
                );
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn a_temporary_file_left_by_a_crash_is_ignored_then_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = FileStore::open(dir.path(), "r").unwrap();
        let saved = sample(PeerState::Normal, 1_700_000_000);
        store.persist(&saved).unwrap();
        // A crash between writing the temporary file and the rename: half a new state.
        let tmp = tmp_of(&store);
        let next = sample(PeerState::CommunicationsInterrupted, 1_700_000_500).to_bytes();
        std::fs::write(&tmp, &next[..20]).unwrap();

        let (mut store, got) = FileStore::open(dir.path(), "r").unwrap();
        assert_eq!(got, Some(saved), "the last completed write wins");
        // A longer stale file is truncated, not partly overwritten.
        std::fs::write(&tmp, vec![0xee; 3 * PERSISTED_LEN]).unwrap();
        let newer = sample(PeerState::PartnerDown, 1_700_001_000);
        store.persist(&newer).unwrap();
        assert!(!tmp.exists());
        assert_eq!(FileStore::open(dir.path(), "r").unwrap().1, Some(newer));
    }

    #[test]
    fn an_unreadable_state_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: opening works, reading does not.
        std::fs::create_dir(state_path(dir.path(), "r")).unwrap();
        match FileStore::open(dir.path(), "r") {
            Err(StoreError::Io(m)) => assert!(
                m.starts_with(&format!("{}: ", state_path(dir.path(), "r").display())),
                "{m}"
            ),
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
