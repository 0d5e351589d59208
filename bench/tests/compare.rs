//! `tandem-bench compare` and `tune` against real servers in network namespaces
//! (`tdm-cmp-<pid>-*`, `tdm-tune-<pid>-*`, removed by the lab's Drop).
//!
//! Needs root, kea-dhcp4 (install-deps.sh --lab) and a built tandemd next to the test binary's
//! target directory (`cargo build -p tandem-controlplane --bins` first, same profile). Missing
//! any of them fails the test with the reason; nothing is skipped.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use tandem_bench::compare::{self, Status};
use tandem_bench::tune;

#[derive(Parser)]
struct CompareCli {
    #[command(flatten)]
    a: compare::Args,
}

#[derive(Parser)]
struct TuneCli {
    #[command(flatten)]
    a: tune::Args,
}

/// One lab at a time: the tests share the CPUs and check that no namespace is left behind.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require_root() {
    common::assert_root("these tests build network namespaces: run them as root");
}

/// tandemd of the same profile as this test binary (or from `TANDEM_BIN_DIR`).
fn tandemd() -> String {
    common::tandemd_path().display().to_string()
}

fn no_namespaces_left(prefix: &str) {
    let left: Vec<String> = common::netns_names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn compare_tandem_udp_and_kea_at_a_low_rate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let args = format!(
        "x --targets kea,tandem-udp --rate 300 --duration 2 --clients 2000 --quiet --tandemd {} --json {} --svg {}",
        tandemd(),
        json.display(),
        dir.path().join("c.svg").display()
    );
    let a = CompareCli::try_parse_from(args.split_whitespace())
        .unwrap()
        .a;
    let (cmp, runs) = compare::compare(&a, Arc::new(AtomicBool::new(false))).unwrap();
    no_namespaces_left(&format!("tdm-cmp-{}-", std::process::id()));
    assert_eq!(cmp.rows.len(), 2, "{}", cmp.table());
    let names: Vec<&str> = cmp.rows.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(names, ["tandem-udp", "kea"]);
    for r in &cmp.rows {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.leases_per_s > 0.0, "{r:?}");
        assert!(r.loss_pct <= 1.0, "{r:?}");
        assert!(r.server_cpu_us_per_lease.is_some_and(|c| c > 0.0), "{r:?}");
        assert!(r.do_p50_us.is_some() && r.ra_p99_us.is_some(), "{r:?}");
    }
    // 300/s for 2 s: about 600 leases each
    for r in &cmp.rows {
        assert!(r.leases_per_s > 200.0 && r.leases_per_s < 400.0, "{r:?}");
    }
    let (t, k) = (&cmp.rows[0], &cmp.rows[1]);
    assert_eq!(cmp.best_peer.as_deref(), Some("kea"));
    assert_eq!(cmp.tandem_single.as_deref(), Some("tandem-udp"));
    assert_eq!(t.ratio_to_best_peer, Some(t.leases_per_s / k.leases_per_s));
    assert_eq!(
        k.ratio_to_tandem_single,
        Some(k.leases_per_s / t.leases_per_s)
    );
    assert_eq!(t.ratio_to_tandem_single, Some(1.0));
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.timeline.iter().sum::<u64>() > 0));
    let table = cmp.table();
    assert!(
        table.contains("tandem-udp") && table.contains("kea"),
        "{table}"
    );
}

#[test]
fn compare_reports_missing_software_as_skipped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let args = "x --targets tandem-udp,echo --rate 100 --duration 1 --quiet --tandemd /bin/true \
                --echo-source /nonexistent/kb-echo.c";
    let a = CompareCli::try_parse_from(args.split_whitespace())
        .unwrap()
        .a;
    let (cmp, _) = compare::compare(&a, Arc::new(AtomicBool::new(false))).unwrap();
    let echo = &cmp.rows[0];
    assert_eq!(echo.status, Status::Skipped, "{echo:?}");
    assert!(echo
        .reason
        .as_deref()
        .unwrap()
        .contains("/nonexistent/kb-echo.c"));
    // /bin/true is not a tandemd: it fails its configuration check, a failed row with the reason
    let t = &cmp.rows[1];
    assert_eq!(t.status, Status::Failed, "{t:?}");
    assert!(
        t.reason.as_deref().unwrap().contains("could not start"),
        "{t:?}"
    );
    no_namespaces_left(&format!("tdm-cmp-{}-", std::process::id()));
}

#[test]
fn tune_two_points_chooses_the_best_row() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let snippet = dir.path().join("t.toml");
    let args = format!(
        "x --cores= --batch-sizes 16,256 --busy-poll= --backend xdp --duration 1 --clients 5000 --quiet --tandemd {} --snippet {}",
        tandemd(),
        snippet.display()
    );
    let a = TuneCli::try_parse_from(args.split_whitespace()).unwrap().a;
    let (rows, chosen) = tune::tune(&a, Arc::new(AtomicBool::new(false))).unwrap();
    no_namespaces_left(&format!("tdm-tune-{}-", std::process::id()));
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r.error.is_none(), "{r:?}");
        assert!(r.leases_per_s > 0.0, "{r:?}");
    }
    let c = chosen.expect("a point is chosen");
    let other = &rows[1 - c];
    let best = &rows[c];
    assert!(best.loss_pct <= 1.0, "{best:?}");
    // the chosen row is the best one: more leases/s, or (within 0.5 %) less CPU per lease,
    // unless the other lost more than 1 %
    let near = (other.leases_per_s - best.leases_per_s).abs() <= 0.005 * best.leases_per_s;
    assert!(
        other.loss_pct > 1.0
            || (!near && best.leases_per_s > other.leases_per_s)
            || (near && best.cpu_us_per_lease <= other.cpu_us_per_lease),
        "{rows:?}"
    );
    assert_eq!(tune::best(&rows, tune::Goal::Throughput), Some(c));
    let text = tune::snippet(&rows, c, "xdp", None);
    assert!(
        text.contains(&format!("batch_size = {}", best.point.batch_size.unwrap())),
        "{text}"
    );
}
