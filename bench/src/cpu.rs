//! CPU time of a process (all its threads, also those that ended) and of the whole host, read
//! from `/proc`.
//!
//! `/proc/PID/stat` gives user and system time in clock ticks (`USER_HZ`, 100 on every Linux
//! architecture Tandem targets; [`clock_ticks_per_sec`] asks `getconf CLK_TCK` to be sure). A tick
//! is 10 ms, so a run should last seconds for a per-lease figure to be meaningful.

use std::io;
use std::path::Path;
use std::process::Command;

/// Clock ticks per second of `/proc` CPU times: `getconf CLK_TCK`, else 100 (Linux's fixed
/// `USER_HZ`).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime, in ticks, from the text of a `/proc/PID/stat` file. The command name (field
/// 2) may contain spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime(15).
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks (user + system, every thread) used so far by process `pid`.
pub fn process_ticks(pid: u32) -> io::Result<u64> {
    read_ticks(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// CPU ticks (user + system) used so far by each live thread of process `pid`, with the
/// thread's name (`/proc/PID/task/TID/comm`). Empty if the process is gone.
pub fn thread_ticks(pid: u32) -> Vec<(String, u64)> {
    let dir = Path::new("/proc").join(pid.to_string()).join("task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let t = read_ticks(&e.path().join("stat")).ok()?;
            Some((name.trim().to_string(), t))
        })
        .collect()
}

/// CPU ticks used so far by this process.
pub fn self_ticks() -> io::Result<u64> {
    read_ticks(Path::new("/proc/self/stat"))
}

fn read_ticks(p: &Path) -> io::Result<u64> {
    let text = std::fs::read_to_string(p)?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unexpected format", p.display()),
        )
    })
}

/// Host CPU ticks summed over all CPUs: (busy, total), from the `cpu` line of `/proc/stat`
/// text. Busy is everything but idle and iowait; guest time is already inside user time.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

/// Host CPU ticks (busy, total) over all CPUs.
pub fn host_ticks() -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat")?;
    parse_proc_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat: no cpu line"))
}

/// Number of CPUs the host has (for "% of one core" figures): the `cpuN` lines of
/// `/proc/stat`, which, unlike `available_parallelism`, do not shrink when this process is
/// pinned (`taskset`); that as a fallback.
pub fn cpus() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .map(|t| cpu_lines(&t))
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1)
        })
}

/// The per-CPU lines (`cpu0`, `cpu1`, …) of a `/proc/stat` text.
fn cpu_lines(stat: &str) -> u64 {
    stat.lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .and_then(|r| r.chars().next())
                .is_some_and(|c| c.is_ascii_digit())
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_counts_per_cpu_lines_not_the_total() {
        let stat = "cpu  10 0 5 100 0 0 0 0 0 0\ncpu0 5 0 2 50 0 0 0 0 0 0\ncpu1 5 0 3 50 0 0 0 0 0 0\nintr 1\nctxt 9\n";
        assert_eq!(cpu_lines(stat), 2);
        assert!(cpus() >= 1);
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "4242 (tandem d) worker)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    517 83 0 0 20 0 3 0 12345 123456789 2000 18446744073709551615";
        assert_eq!(parse_stat(line), Some(600));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn reads_our_own_ticks() {
        let a = self_ticks().unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let b = process_ticks(std::process::id()).unwrap();
        assert!(b >= a);
        assert!(process_ticks(u32::MAX).is_err());
        assert!(clock_ticks_per_sec() >= 1);
    }

    #[test]
    fn parses_proc_stat() {
        let text = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 50 2 25 500 10 1 1 1 0 0\nintr 1 2\n";
        // total = 100+5+50+1000+20+1+2+3 = 1181; busy = total - idle - iowait = 161
        assert_eq!(parse_proc_stat(text), Some((161, 1181)));
        assert_eq!(parse_proc_stat("cpu0 1 2 3\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 x 4 5\n"), None);
        assert!(host_ticks().is_ok());
    }
}
