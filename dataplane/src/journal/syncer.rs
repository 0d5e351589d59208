//! The journal's background `fdatasync`: one thread per journal that makes written records
//! durable while the worker goes on answering (pipelined group commit).
//!
//! The worker writes a batch's records into the segment (page cache, microseconds), hands the
//! syncer a [`Job`] "everything up to sequence `upto`", and keeps serving: OFFERs and NAKs leave
//! at once, ACKs wait in the worker until the syncer reports a sequence at or past their batch's.
//! At most one job is in flight; whatever the worker writes meanwhile is covered by the next
//! `fdatasync`, so under load one sync covers many batches and at low load a sync starts the
//! moment a batch is written. The syncer wakes the worker (its `poll(2)` waker) after each job.
//!
//! A failed sync is reported once and the thread carries on syncing nothing for that file: the
//! journal poisons itself on the report (see the module doc of [`super`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::{files, JournalError};

/// Wakes the worker that owns the journal (called from the syncer thread).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// One request to the syncer thread.
struct Job {
    /// The sequence number every record before which is durable once the job is done.
    upto: u64,
    /// The segment to sync from now on (with its path, for errors), when it changed.
    file: Option<(File, PathBuf)>,
    /// A directory whose entries must be synced too (a new segment's).
    dir: Option<PathBuf>,
}

/// What a finished job reports.
pub(crate) struct Done {
    /// The job's `upto`, or why it failed.
    pub(crate) result: Result<u64, JournalError>,
    /// Time spent in `fdatasync` (and the directory sync), in nanoseconds.
    pub(crate) sync_nanos: u64,
}

/// The worker's end of a syncer thread.
pub(crate) struct Syncer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    /// `upto` of the job in flight.
    inflight: Option<u64>,
    /// The next job must carry the journal's current segment.
    file_changed: bool,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("inflight", &self.inflight)
            .finish_non_exhaustive()
    }
}

impl Syncer {
    /// Starts the thread `journal-sync-<worker>`; it calls `wake` after every job.
    pub(crate) fn start(worker: u16, wake: Wake) -> std::io::Result<Syncer> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(1);
        let (tx, done) = crossbeam_channel::bounded::<Done>(1);
        let handle = std::thread::Builder::new()
            .name(format!("journal-sync-{worker}"))
            .spawn(move || run(rx, tx, wake))?;
        Ok(Syncer {
            jobs: Some(jobs),
            done,
            inflight: None,
            file_changed: true,
            handle: Some(handle),
        })
    }

    /// True while a job is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// The journal switched to another segment: the next job hands it over.
    pub(crate) fn segment_changed(&mut self) {
        self.file_changed = true;
    }

    /// Starts a job (none may be in flight). `file` is asked for only if the segment changed.
    pub(crate) fn start_job(
        &mut self,
        upto: u64,
        file: impl FnOnce() -> Result<(File, PathBuf), JournalError>,
        dir: Option<PathBuf>,
    ) -> Result<(), JournalError> {
        debug_assert!(self.inflight.is_none());
        let file = if self.file_changed {
            Some(file()?)
        } else {
            None
        };
        let job = Job { upto, file, dir };
        let gone = || JournalError::SyncerGone;
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .try_send(job)
            .map_err(|_| gone())?;
        self.file_changed = false;
        self.inflight = Some(upto);
        Ok(())
    }

    /// The outcome of the job in flight if it is done (`block`: wait for it).
    pub(crate) fn collect(&mut self, block: bool) -> Option<Done> {
        self.inflight?;
        let done = if block {
            self.done.recv().ok()
        } else {
            match self.done.try_recv() {
                Ok(d) => Some(d),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        self.inflight = None;
        Some(done.unwrap_or(Done {
            result: Err(JournalError::SyncerGone),
            sync_nanos: 0,
        }))
    }
}

impl Drop for Syncer {
    /// Lets the job in flight finish, then stops the thread.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(jobs: Receiver<Job>, done: Sender<Done>, wake: Wake) {
    let mut current: Option<(File, PathBuf)> = None;
    while let Ok(job) = jobs.recv() {
        if let Some(f) = job.file {
            current = Some(f);
        }
        let t = Instant::now();
        let mut result = match &current {
            Some((file, path)) => file.sync_data().map_err(|source| JournalError::Io {
                op: "fdatasync",
                path: path.clone(),
                source,
            }),
            None => Ok(()),
        };
        if let (Ok(()), Some(dir)) = (&result, &job.dir) {
            result = files::sync_dir(dir);
        }
        let sync_nanos = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let report = Done {
            result: result.map(|()| job.upto),
            sync_nanos,
        };
        if done.send(report).is_err() {
            return;
        }
        wake();
    }
}
