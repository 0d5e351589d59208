//! A CPU bandwidth cap on one process (`compare --named-cpu`), through the cgroup CPU
//! controller: v2 (`cpu.max`) where the unified hierarchy has it, else v1
//! (`cpu.cfs_quota_us`). The group is made for the process and removed with the cap.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::LabError;

/// The CFS period the quota is a share of, µs.
const PERIOD_US: u64 = 100_000;

/// A process held to a share of one CPU; dropping it moves what is left of the process back to
/// the parent group and removes the group.
#[derive(Debug)]
pub struct CpuCap {
    dir: PathBuf,
    parent_procs: PathBuf,
    pct: u8,
}

/// Where a CPU controller is mounted, and which kind.
fn controller() -> Option<(PathBuf, bool)> {
    let unified = Path::new("/sys/fs/cgroup");
    let has_cpu_v2 = fs::read_to_string(unified.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|k| k == "cpu"));
    if has_cpu_v2 {
        return Some((unified.to_path_buf(), true));
    }
    ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
        .iter()
        .map(|d| unified.join(d))
        .find(|d| d.join("cpu.cfs_quota_us").is_file())
        .map(|d| (d, false))
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    fs::write(path, text).map_err(|source| LabError::File {
        path: path.to_path_buf(),
        source,
    })
}

impl CpuCap {
    /// Holds `pid` (all its threads) to `pct` % of one CPU (1..=100), in a group named after
    /// `tag`.
    pub fn apply(pid: u32, pct: u8, tag: &str) -> Result<CpuCap, LabError> {
        let (root, v2) = controller().ok_or_else(|| {
            LabError::NotReady(
                "--named-cpu: no cgroup CPU controller (neither cpu in /sys/fs/cgroup/cgroup.controllers nor a v1 cpu hierarchy)".into(),
            )
        })?;
        if v2 {
            // The root's children get the CPU controller only when the root hands it down.
            let sub = root.join("cgroup.subtree_control");
            let on =
                fs::read_to_string(&sub).is_ok_and(|c| c.split_whitespace().any(|k| k == "cpu"));
            if !on {
                write(&sub, "+cpu")?;
            }
        }
        let dir = root.join(format!("tandem-bench-{tag}-{pid}"));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(LabError::File { path: dir, source }),
        }
        let cap = CpuCap {
            parent_procs: root.join("cgroup.procs"),
            dir,
            pct,
        };
        let quota = u64::from(pct.clamp(1, 100)) * PERIOD_US / 100;
        if v2 {
            write(&cap.dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
        } else {
            write(&cap.dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&cap.dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        // cgroup.procs moves every thread of the process.
        write(&cap.dir.join("cgroup.procs"), &pid.to_string())?;
        Ok(cap)
    }

    /// The share of one CPU, %.
    pub fn pct(&self) -> u8 {
        self.pct
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // A process still in the group (not stopped yet) goes back to the parent first: a
        // group with members cannot be removed.
        if let Ok(procs) = fs::read_to_string(self.dir.join("cgroup.procs")) {
            for p in procs.split_whitespace() {
                let _ = fs::write(&self.parent_procs, p);
            }
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!(
                "[compare] cannot remove the cgroup {}: {e}",
                self.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A real child held to 5 %, its group gone after the cap is dropped (root only, where a
    /// CPU controller exists: it writes to /sys/fs/cgroup).
    #[test]
    fn caps_a_process_and_removes_its_group() {
        use std::os::unix::fs::MetadataExt;
        let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if !root || controller().is_none() {
            eprintln!("skipped: needs root and a cgroup CPU controller");
            return;
        }
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        let cap = CpuCap::apply(child.id(), 5, "test").expect("cap");
        let members = fs::read_to_string(cap.dir.join("cgroup.procs")).unwrap();
        assert_eq!(members.trim(), child.id().to_string());
        let (_, v2) = controller().unwrap();
        if v2 {
            let max = fs::read_to_string(cap.dir.join("cpu.max")).unwrap();
            assert_eq!(max.trim(), "5000 100000");
        } else {
            let q = fs::read_to_string(cap.dir.join("cpu.cfs_quota_us")).unwrap();
            assert_eq!(q.trim(), "5000");
        }
        let dir = cap.dir.clone();
        // Dropped while the child still runs: it moves back, and the group goes.
        drop(cap);
        assert!(!dir.exists(), "{} left behind", dir.display());
        let _ = child.kill();
        let _ = child.wait();
    }
}
