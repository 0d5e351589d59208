//! `tandem-bench tune`: sweep tandemd's AF_XDP worker settings on this host and pick the best.
//!
//! Each point of the sweep is one tandemd (single server, `deploy/lab/compare/tandem-single.toml`)
//! with `[dataplane] cores` (one worker per listed CPU), `[server] batch_size` and
//! `[dataplane] busy_poll` set as the point says (a dimension not swept is left out of the
//! configuration, so tandemd's default applies), its interface given as many RX/TX queues as
//! workers (`ethtool -L kb0 rx N tx N`), and one bounded flat-out run of tandem-bench's own
//! generator. The best point has the most leases/s among the runs with at most 1 % loss (ties:
//! less server CPU per lease); its `[server]`/`[dataplane]` snippet is written out.
//!
//! With `--pair` every point is the load-balance pair instead (both partners with the point's
//! settings, both interfaces with one queue per worker), as `compare`'s `tandem-pair-*`
//! targets run it: the settings that serve a failover pair best.
//!
//! The lab is [`crate::compare::Lab`]: the same namespaces, addresses and clean-up.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::compare::{
    opt_us, run_own, sh, start_tandem_pair, start_tandem_single, stop_flag, GenBackend, GenIo, Lab,
    LabError, Load, Role, TandemExtra,
};
use crate::cpu;

/// `tandem-bench tune` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// CPU sets to try for `[dataplane] cores`, `;`-separated, each a `,`-separated list of CPU
    /// ids (one worker per CPU), e.g. "0;1;0,1". Empty: the key is left out.
    #[arg(
        long,
        default_value = "0;1;0,1",
        value_name = "SETS",
        allow_hyphen_values = true
    )]
    pub cores: String,
    /// `[server] batch_size` values to try, comma-separated. Empty: the key is left out.
    #[arg(long, default_value = "16,64,256", value_name = "LIST")]
    pub batch_sizes: String,
    /// `[dataplane] busy_poll` values to try, comma-separated (false, true). Empty: left out.
    #[arg(long, default_value = "false,true", value_name = "LIST")]
    pub busy_poll: String,
    /// Packet backend of the tuned tandemd (the worker settings are AF_XDP's).
    #[arg(long, default_value = "xdp", value_name = "udp|xdp")]
    pub backend: String,
    /// Tune the load-balance failover pair (two tandemd, each with the point's settings)
    /// instead of one server.
    #[arg(long)]
    pub pair: bool,
    /// Seconds of load per point (0 < SECS <= 30).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub duration: f64,
    /// Offer this many DORA/s to every point instead of running flat out (e.g. half the best
    /// flat-out figure): every point then serves the same load, and the best is the one with the
    /// lowest DORA p99 (within 5 %: less server CPU per lease).
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub rate: Option<u64>,
    /// Simulated clients, 1..=60000.
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    pub clients: u32,
    /// Most exchanges outstanding at once.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub window: u32,
    /// Runs per point, each with a fresh tandemd (1..=9); the median stands for the point.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// I/O of the generator: udp (in this process) or xdp (`BENCH dora --backend xdp`, which
    /// does not share the generator's limits of the kernel UDP path).
    #[arg(long, value_enum, default_value_t = GenBackend::Udp)]
    pub gen_backend: GenBackend,
    /// The tandem-bench program for `--gen-backend xdp` [default: this program].
    #[arg(long, value_name = "FILE")]
    pub bench: Option<PathBuf>,
    /// tandemd to run [default: next to this program, or one directory up].
    #[arg(long, value_name = "FILE")]
    pub tandemd: Option<PathBuf>,
    /// Write the chosen settings (a `[server]` + `[dataplane]` TOML snippet) to FILE
    /// [default: /tmp/tandem-tune.toml].
    #[arg(long, value_name = "FILE")]
    pub snippet: Option<PathBuf>,
    /// Write every point's result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    pub keep: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One combination of settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    /// `[dataplane] cores` (`None`: left out).
    pub cores: Option<Vec<u32>>,
    /// `[server] batch_size` (`None`: left out).
    pub batch_size: Option<u32>,
    /// `[dataplane] busy_poll` (`None`: left out).
    pub busy_poll: Option<bool>,
}

impl Point {
    /// Workers this point runs (one per core; one without `cores`).
    pub fn workers(&self) -> u32 {
        self.cores.as_ref().map_or(1, |c| c.len() as u32).max(1)
    }

    /// The configuration lines of this point.
    pub fn extra(&self) -> TandemExtra {
        let mut e = TandemExtra::default();
        if let Some(b) = self.batch_size {
            e.server = format!("batch_size = {b}\n");
        }
        if let Some(c) = &self.cores {
            let ids: Vec<String> = c.iter().map(u32::to_string).collect();
            e.dataplane
                .push_str(&format!("cores = [{}]\n", ids.join(", ")));
        }
        if let Some(b) = self.busy_poll {
            e.dataplane.push_str(&format!("busy_poll = {b}\n"));
        }
        e
    }

    /// Short name for the table.
    pub fn label(&self) -> String {
        let cores = self.cores.as_ref().map_or("-".to_string(), |c| {
            let ids: Vec<String> = c.iter().map(u32::to_string).collect();
            format!("[{}]", ids.join(","))
        });
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        format!(
            "cores {cores:<7} batch {:<4} busy_poll {}",
            opt(self.batch_size.map(|b| b.to_string())),
            opt(self.busy_poll.map(|b| b.to_string()))
        )
    }
}

/// One point's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TuneRow {
    /// The settings.
    pub point: Point,
    /// Why it could not be measured (`None`: measured).
    pub error: Option<String>,
    /// Leases/s of every repetition, ascending (the row's figures are the median's).
    pub runs: Vec<f64>,
    /// Completed DORAs per second.
    pub leases_per_s: f64,
    /// Lost exchanges, % of started.
    pub loss_pct: f64,
    /// DISCOVER → ACK 99th percentile, µs.
    pub dora_p99_us: Option<f64>,
    /// Server CPU per lease, µs.
    pub cpu_us_per_lease: Option<f64>,
    /// Server CPU, % of one core.
    pub cpu_pct: Option<f64>,
}

/// The sweep's points: every combination of the listed values, in order.
pub fn points(cores: &str, batch: &str, busy: &str) -> Result<Vec<Point>, String> {
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let mut core_sets: Vec<Option<Vec<u32>>> = Vec::new();
    for set in cores.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let ids = list(set)
            .iter()
            .map(|x| {
                x.parse::<u32>()
                    .map_err(|_| format!("--cores: `{x}` is not a CPU id"))
            })
            .collect::<Result<Vec<u32>, String>>()?;
        let ncpu = cpu::cpus() as u32;
        if let Some(bad) = ids.iter().find(|&&c| c >= ncpu.max(1)) {
            return Err(format!(
                "--cores: CPU {bad} does not exist (this host has {ncpu})"
            ));
        }
        core_sets.push(Some(ids));
    }
    if core_sets.is_empty() {
        core_sets.push(None);
    }
    let mut batches: Vec<Option<u32>> = Vec::new();
    for b in list(batch) {
        match b.parse::<u32>() {
            Ok(n) if (1..=4096).contains(&n) => batches.push(Some(n)),
            _ => return Err(format!("--batch-sizes: `{b}` is not 1..=4096")),
        }
    }
    if batches.is_empty() {
        batches.push(None);
    }
    let mut busies: Vec<Option<bool>> = Vec::new();
    for b in list(busy) {
        match b.as_str() {
            "true" => busies.push(Some(true)),
            "false" => busies.push(Some(false)),
            _ => return Err(format!("--busy-poll: `{b}` is not true or false")),
        }
    }
    if busies.is_empty() {
        busies.push(None);
    }
    let mut out = Vec::new();
    for c in &core_sets {
        for b in &batches {
            for p in &busies {
                out.push(Point {
                    cores: c.clone(),
                    batch_size: *b,
                    busy_poll: *p,
                });
            }
        }
    }
    Ok(out)
}

/// What a sweep looks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Flat out: the most leases/s.
    Throughput,
    /// At an offered rate: the lowest DORA p99.
    Latency,
}

/// The best row: the most leases/s (or, for [`Goal::Latency`], the lowest DORA p99) among the
/// measured rows with at most 1 % loss; near ties (leases/s within 0.5 %, p99 within 5 %) go
/// to less server CPU per lease.
pub fn best(rows: &[TuneRow], goal: Goal) -> Option<usize> {
    let ok = |r: &TuneRow| {
        r.error.is_none()
            && r.leases_per_s > 0.0
            && r.loss_pct <= 1.0
            && (goal == Goal::Throughput || r.dora_p99_us.is_some())
    };
    // Bigger is better in both cases (the p99 is negated).
    let score = |r: &TuneRow| match goal {
        Goal::Throughput => r.leases_per_s,
        Goal::Latency => -r.dora_p99_us.unwrap_or(f64::INFINITY),
    };
    let margin = match goal {
        Goal::Throughput => 0.005,
        Goal::Latency => 0.05,
    };
    let mut best: Option<usize> = None;
    for (i, r) in rows.iter().enumerate().filter(|(_, r)| ok(r)) {
        best = match best {
            None => Some(i),
            Some(b) => {
                let cur = &rows[b];
                let near = (score(r) - score(cur)).abs() <= margin * score(cur).abs();
                let cpu = |x: &TuneRow| x.cpu_us_per_lease.unwrap_or(f64::INFINITY);
                if (near && cpu(r) < cpu(cur)) || (!near && score(r) > score(cur)) {
                    Some(i)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

/// The table of every point, and the choice with its evidence.
pub fn table(rows: &[TuneRow], chosen: Option<usize>, goal: Goal) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  {:<40} {:>10} {:>7} {:>10} {:>9} {:>8}  runs (leases/s)",
        "point", "leases/s", "loss %", "DORA p99", "CPU µs/l", "CPU %"
    );
    for (i, r) in rows.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        match &r.error {
            Some(e) => {
                let _ = writeln!(s, "{mark} {:<40} FAILED: {e}", r.point.label());
            }
            None => {
                let _ = writeln!(
                    s,
                    "{mark} {:<40} {:>10.0} {:>7.2} {:>10} {:>9} {:>8}  {}",
                    r.point.label(),
                    r.leases_per_s,
                    r.loss_pct,
                    opt_us(r.dora_p99_us),
                    r.cpu_us_per_lease.map_or("-".into(), |v| format!("{v:.1}")),
                    r.cpu_pct.map_or("-".into(), |v| format!("{v:.0}")),
                    r.runs
                        .iter()
                        .map(|v| format!("{v:.0}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
    }
    match chosen {
        None => {
            let _ = writeln!(s, "\n  no point ran with at most 1 % loss: nothing chosen");
        }
        Some(c) if goal == Goal::Latency => {
            let b = &rows[c];
            let p99 = |r: &TuneRow| r.dora_p99_us.unwrap_or(f64::INFINITY);
            let _ = write!(
                s,
                "\n  best: {} at DORA p99 {}",
                b.point.label(),
                opt_us(b.dora_p99_us)
            );
            let runner = rows
                .iter()
                .enumerate()
                .filter(|(i, r)| *i != c && r.error.is_none() && r.loss_pct <= 1.0)
                .min_by(|a, b| p99(a.1).total_cmp(&p99(b.1)));
            if let Some((_, r)) = runner {
                let _ = write!(s, "; next {} at {}", r.point.label(), opt_us(r.dora_p99_us));
            }
            let _ = writeln!(s);
        }
        Some(c) => {
            let b = &rows[c];
            let runner = rows
                .iter()
                .enumerate()
                .filter(|(i, r)| *i != c && r.error.is_none() && r.loss_pct <= 1.0)
                .max_by(|a, b| a.1.leases_per_s.total_cmp(&b.1.leases_per_s));
            let _ = write!(
                s,
                "\n  best: {} at {:.0} leases/s",
                b.point.label(),
                b.leases_per_s
            );
            if let Some((_, r)) = runner {
                let _ = write!(
                    s,
                    "; next {} at {:.0} ({:+.1} %)",
                    r.point.label(),
                    r.leases_per_s,
                    100.0 * (r.leases_per_s / b.leases_per_s - 1.0)
                );
            }
            let _ = writeln!(s);
        }
    }
    s
}

/// The chosen settings as a TOML snippet for tandem.toml, with the evidence as comments.
pub fn snippet(rows: &[TuneRow], chosen: usize, backend: &str, rate: Option<u64>) -> String {
    let b = &rows[chosen];
    let e = b.point.extra();
    let mut s = String::new();
    let how = match rate {
        None => format!("{:.0} leases/s flat out", b.leases_per_s),
        Some(r) => format!("DORA p99 {} at {r} DORA/s offered", opt_us(b.dora_p99_us)),
    };
    let _ = writeln!(
        s,
        "# Chosen by `tandem-bench tune` on this host: {how}, {:.2} % loss, \
         server CPU {} µs/lease ({} points measured).",
        b.loss_pct,
        b.cpu_us_per_lease.map_or("-".into(), |v| format!("{v:.1}")),
        rows.iter().filter(|r| r.error.is_none()).count()
    );
    if !e.server.is_empty() {
        let _ = write!(s, "[server]\n{}\n", e.server);
    }
    let _ = write!(s, "[dataplane]\nbackend = \"{backend}\"\n{}", e.dataplane);
    s
}

fn set_queues(lab: &Lab, n: u32) -> Result<(), LabError> {
    let n = n.to_string();
    lab.exec(Role::Srv, &["ethtool", "-L", "kb0", "rx", &n, "tx", &n])
        .map(|_| ())
}

/// Run the sweep; returns every row and the chosen one.
pub fn tune(a: &Args, stop: Arc<AtomicBool>) -> Result<(Vec<TuneRow>, Option<usize>), String> {
    let pts = points(&a.cores, &a.batch_sizes, &a.busy_poll)?;
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 30.0) {
        return Err("--duration must be more than 0 and at most 30 seconds".into());
    }
    if !(1..=60_000).contains(&a.clients) || a.window == 0 {
        return Err("--clients must be 1..=60000 and --window at least 1".into());
    }
    if !(1..=9).contains(&a.repeat) {
        return Err("--repeat must be 1..=9".into());
    }
    let gen_io = match a.gen_backend {
        GenBackend::Udp => GenIo::Udp,
        GenBackend::Xdp => GenIo::Xdp {
            bench: match &a.bench {
                Some(b) => b.clone(),
                None => std::env::current_exe().map_err(|e| e.to_string())?,
            },
        },
    };
    if a.backend != "xdp" && a.backend != "udp" {
        return Err("--backend must be udp or xdp".into());
    }
    let tandemd = match &a.tandemd {
        Some(p) => p.clone(),
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe.parent().ok_or("no directory for this program")?;
            [dir.join("tandemd"), dir.join("../tandemd")]
                .into_iter()
                .find(|p| p.is_file())
                .ok_or("no tandemd next to tandem-bench; give --tandemd")?
        }
    };
    let max_q = pts.iter().map(Point::workers).max().unwrap_or(1);
    let mut lab = Lab::new("tune", max_q, a.keep, stop.clone()).map_err(|e| e.to_string())?;
    if max_q > 1 && sh(&["ethtool", "--version"]).is_err() {
        return Err("ethtool is not installed (needed to give kb0 one queue per worker)".into());
    }
    let load = Load {
        rate: a.rate,
        duration: a.duration,
        clients: a.clients,
        window: a.window,
    };
    let mut rows = Vec::new();
    let total = pts.len();
    for (i, p) in pts.into_iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        if !a.quiet {
            eprintln!("[tune] {}/{total}: {}", i + 1, p.label());
        }
        let mut row = TuneRow {
            point: p.clone(),
            error: None,
            runs: Vec::new(),
            leases_per_s: 0.0,
            loss_pct: 0.0,
            dora_p99_us: None,
            cpu_us_per_lease: None,
            cpu_pct: None,
        };
        let mut runs = Vec::new();
        let mut res = Ok(());
        for rep in 0..a.repeat {
            let one = (|| -> Result<_, String> {
                let tag = format!("p{i}-{rep}");
                let started = if a.pair {
                    lab.set_queues(p.workers()).map_err(|e| e.to_string())?;
                    start_tandem_pair(&mut lab, &tandemd, &a.backend, &p.extra(), &tag)
                } else {
                    if max_q > 1 {
                        set_queues(&lab, p.workers()).map_err(|e| e.to_string())?;
                    }
                    start_tandem_single(&mut lab, &tandemd, &a.backend, &p.extra(), &tag)
                }
                .map_err(|e| e.to_string())?;
                run_own(&lab, &started, &load, &p.label(), &gen_io)
            })();
            lab.stop_all();
            match one {
                Ok(m) => runs.push(m),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        // The median run by leases/s stands for the point (the lower one of an even count).
        runs.sort_by(|a, b| a.leases_per_s.total_cmp(&b.leases_per_s));
        row.runs = runs.iter().map(|m| m.leases_per_s).collect();
        match res.map(|()| runs.get((runs.len().max(1) - 1) / 2).cloned()) {
            Ok(None) => row.error = Some("no run".into()),
            Ok(Some(m)) => {
                row.leases_per_s = m.leases_per_s;
                row.loss_pct = m.loss_pct;
                row.dora_p99_us = m.dora_p99_us;
                row.cpu_us_per_lease = m.server_cpu_us_per_lease;
                row.cpu_pct = m.server_cpu_pct;
            }
            Err(e) => row.error = Some(e),
        }
        rows.push(row);
    }
    let chosen = best(&rows, goal(a));
    Ok((rows, chosen))
}

/// What the sweep of `a` looks for: latency at an offered rate, else throughput.
pub fn goal(a: &Args) -> Goal {
    if a.rate.is_some() {
        Goal::Latency
    } else {
        Goal::Throughput
    }
}

/// `tandem-bench tune`. Exit codes: 0 a point was chosen, 1 none could be (or the lab failed),
/// 2 usage error.
pub fn main(a: Args) -> ExitCode {
    let stop = stop_flag();
    let (rows, chosen) = match tune(&a, stop) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tandem-bench tune: {e}");
            return ExitCode::from(if e.starts_with("--") { 2 } else { 1 });
        }
    };
    let load = a
        .rate
        .map_or("flat out".to_string(), |r| format!("{r} DORA/s offered"));
    println!(
        "tandem-bench tune: {} points, {load} for {:.1} s each, {} CPUs shared by tandemd and the generator\n",
        rows.len(),
        a.duration,
        cpu::cpus()
    );
    print!("{}", table(&rows, chosen, goal(&a)));
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        if let Err(e) = fs::write(p, text + "\n") {
            eprintln!("tandem-bench tune: cannot write {}: {e}", p.display());
        }
    }
    let Some(c) = chosen else {
        return ExitCode::FAILURE;
    };
    let path = a
        .snippet
        .clone()
        .unwrap_or_else(|| PathBuf::from("/tmp/tandem-tune.toml"));
    let text = snippet(&rows, c, &a.backend, a.rate);
    if let Err(e) = fs::write(&path, &text) {
        eprintln!("tandem-bench tune: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("\n  chosen settings written to {}:\n{text}", path.display());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(leases: f64, loss: f64, cpu: f64, err: bool) -> TuneRow {
        TuneRow {
            point: Point {
                cores: Some(vec![0]),
                batch_size: Some(leases as u32),
                busy_poll: None,
            },
            error: err.then(|| "no".into()),
            runs: vec![leases],
            leases_per_s: leases,
            loss_pct: loss,
            dora_p99_us: Some(100.0),
            cpu_us_per_lease: Some(cpu),
            cpu_pct: Some(50.0),
        }
    }

    #[test]
    fn points_are_every_combination_and_empty_dimensions_are_left_out() {
        let p = points("0;0,1", "16,64", "false,true").unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(p[7].cores, Some(vec![0, 1]));
        assert_eq!(p[7].workers(), 2);
        assert_eq!((p[7].batch_size, p[7].busy_poll), (Some(64), Some(true)));
        let p = points("", "32", "").unwrap();
        assert_eq!(
            p,
            vec![Point {
                cores: None,
                batch_size: Some(32),
                busy_poll: None
            }]
        );
        assert_eq!(p[0].extra().server, "batch_size = 32\n");
        assert_eq!(p[0].extra().dataplane, "");
        let e = points("0,1", "", "true").unwrap()[0].extra();
        assert_eq!(e.dataplane, "cores = [0, 1]\nbusy_poll = true\n");
        assert!(points("x", "", "").is_err());
        assert!(points("", "0", "").is_err());
        assert!(points("", "", "yes").is_err());
        assert!(points("9999", "", "").is_err());
    }

    #[test]
    fn best_is_the_most_leases_within_one_percent_loss() {
        let rows = vec![
            row(1000.0, 0.0, 5.0, false),
            row(3000.0, 5.0, 1.0, false),
            row(2000.0, 0.5, 6.0, false),
            row(2005.0, 0.0, 4.0, false),
            row(9000.0, 0.0, 1.0, true),
        ];
        // 2005 and 2000 are within 0.5 %: the cheaper one (index 3) wins; 3000 lost 5 %
        assert_eq!(best(&rows, Goal::Throughput), Some(3));
        assert_eq!(best(&rows[..1], Goal::Throughput), Some(0));
        assert_eq!(best(&rows[4..], Goal::Throughput), None);
        let t = table(&rows, best(&rows, Goal::Throughput), Goal::Throughput);
        assert!(t.contains("best: cores [0]"), "{t}");
        assert!(t.contains("FAILED: no"), "{t}");
        let s = snippet(&rows, 3, "xdp", None);
        assert!(s.contains("[server]\nbatch_size = 2005\n"), "{s}");
        assert!(
            s.contains("[dataplane]\nbackend = \"xdp\"\ncores = [0]\n"),
            "{s}"
        );
        assert!(
            s.starts_with("# Chosen by `tandem-bench tune` on this host: 2005"),
            "{s}"
        );
    }

    #[test]
    fn at_a_rate_the_best_is_the_lowest_p99_within_one_percent_loss() {
        let with_p99 = |leases, loss, cpu, p99| TuneRow {
            dora_p99_us: p99,
            ..row(leases, loss, cpu, false)
        };
        let rows = vec![
            with_p99(5000.0, 0.0, 9.0, Some(400.0)),
            with_p99(5001.0, 0.0, 7.0, Some(180.0)),
            with_p99(5002.0, 0.0, 5.0, Some(185.0)),
            with_p99(5003.0, 3.0, 1.0, Some(50.0)),
            with_p99(5004.0, 0.0, 1.0, None),
        ];
        // 180 and 185 µs are within 5 %: the cheaper (index 2); 50 µs lost 3 %; no p99, no rank
        assert_eq!(best(&rows, Goal::Latency), Some(2));
        assert_eq!(best(&rows[4..], Goal::Latency), None);
        let t = table(&rows, Some(2), Goal::Latency);
        assert!(t.contains("best: cores [0]     batch 5002"), "{t}");
        assert!(t.contains("at DORA p99 185"), "{t}");
        assert!(t.contains("next cores [0]     batch 5001"), "{t}");
        let s = snippet(&rows, 2, "xdp", Some(5000));
        assert!(s.contains("DORA p99 185"), "{s}");
        assert!(s.contains("at 5000 DORA/s offered"), "{s}");
    }
}
