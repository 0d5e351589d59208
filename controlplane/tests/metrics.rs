//! `/metrics` of a real `tandemd` serving real clients in network namespaces: the pool families
//! follow a lease from DISCOVER to RELEASE, the message counters and the worker's load move,
//! and with the AF_XDP backend the XDP verdicts and AF_XDP ring counters count the client's
//! frames. Scrapes are read with [`tandem_controlplane::metrics::parse_text`], the parser the
//! failover tests use too.
//!
//! The tests need root and the tools of `deploy/install-deps.sh`; without them they fail saying
//! so (they never skip). Namespaces are `tdm-<pid>-<test>-<role>` and are removed on drop, also
//! on failure.

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;

use std::time::Duration;

use clients::{Client, Kind, Opts};
use harness::{cpu_shared, in_range, poll, run, veth, Lab, Netns, Tandemd, ADMIN, TANDEMCTL};
use tandem_controlplane::metrics::{parse_text, Sample};

const BIND_TIMEOUT: Duration = Duration::from_secs(40);

/// A `[[scope]]` table with a 10-minute lease.
fn scope(name: &str, subnet: &str, iface: &str, range: &str, router: &str) -> String {
    format!(
        "\n[[scope]]\nname = \"{name}\"\nsubnet = \"{subnet}\"\ninterface = \"{iface}\"\n\
         ranges = [\"{range}\"]\nlease_time = \"10m\"\nauthoritative = true\n\
         [scope.options]\nrouters = [\"{router}\"]\n"
    )
}

/// `tandemctl metrics` in namespace `ns`, parsed.
fn scrape(ns: &str) -> Vec<Sample> {
    let out = run(&[
        "ip", "netns", "exec", ns, TANDEMCTL, "--admin", ADMIN, "metrics",
    ]);
    assert!(
        out.status.success(),
        "tandemctl metrics failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    parse_text(&text).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{text}"))
}

/// The value of the sample `name` with `labels`; panics with the scrape if there is none.
fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    tandem_controlplane::metrics::value(samples, name, labels).unwrap_or_else(|| {
        let names: Vec<String> = samples
            .iter()
            .map(|s| format!("{}{:?} {}", s.name, s.labels, s.value))
            .collect();
        panic!("no sample {name}{labels:?} in:\n{}", names.join("\n"))
    })
}

/// True if any sample's name starts with `prefix`.
fn has_family(samples: &[Sample], prefix: &str) -> bool {
    samples.iter().any(|s| s.name.starts_with(prefix))
}

/// The pool families of scope `scope`: (free, backup, active, expired, abandoned).
fn pool(samples: &[Sample], scope: &str) -> [f64; 5] {
    ["free", "backup", "active", "expired", "abandoned"].map(|state| {
        get(
            samples,
            "tandem_pool_addresses",
            &[("scope", scope), ("state", state)],
        )
    })
}

/// A real dhclient's lease shows in the pool families (and leaves them on release), the request
/// and reply counters move, and the worker's load counters grow.
#[test]
fn metrics_follow_a_real_dhclient_lease() {
    let _cpu = cpu_shared();
    let lab = Lab::new("metrics");
    let s = lab.netns("s");
    let c = lab.netns("c");
    veth(&s, "tdm0", &c, "tdm0");
    s.addr("tdm0", "10.214.0.1/24");
    let cfg = Tandemd::server_section(&lab, "10.214.0.1", &["tdm0"])
        + &scope(
            "lan",
            "10.214.0.0/24",
            "tdm0",
            "10.214.0.100-10.214.0.150",
            "10.214.0.1",
        );
    let mut srv = Tandemd::start(&lab, &s, &cfg);

    let before = scrape(&s.name);
    assert_eq!(get(&before, "tandem_worker_responding", &[]), 1.0);
    assert_eq!(pool(&before, "lan"), [51.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(get(&before, "tandem_pool_size", &[("scope", "lan")]), 51.0);
    assert_eq!(
        get(
            &before,
            "tandem_pool_utilisation_ratio",
            &[("scope", "lan")]
        ),
        0.0
    );
    let counter = |m: &[Sample], name: &str, ty: &str| get(m, name, &[("type", ty)]);
    assert_eq!(
        counter(&before, "tandem_dhcp_messages_received_total", "request"),
        0.0
    );
    // Without failover and with the UDP backend, those families are absent.
    for family in [
        "tandem_failover_",
        "tandem_alarm",
        "tandem_xdp_",
        "tandem_afxdp_",
    ] {
        assert!(!has_family(&before, family), "{family} present");
    }
    let busy0 = get(
        &before,
        "tandem_worker_busy_seconds_total",
        &[("worker", "0")],
    );
    let batches0 = get(&before, "tandem_worker_batches_total", &[("worker", "0")]);

    let mut cli = Client::start(
        &lab,
        &c,
        "tdm0",
        Kind::Dhclient,
        "dhclient",
        &Opts::default(),
    );
    let ip = cli.wait_bound(BIND_TIMEOUT);
    assert!(in_range(ip, "10.214.0.100", "10.214.0.150"), "got {ip}");
    let bound = poll(Duration::from_secs(10), || {
        let m = scrape(&s.name);
        (pool(&m, "lan")[2] == 1.0).then_some(m)
    })
    .unwrap_or_else(|| panic!("the lease of {ip} never showed as active in /metrics"));
    assert_eq!(pool(&bound, "lan"), [50.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(
        get(
            &bound,
            "tandem_leases",
            &[("scope", "lan"), ("state", "active")]
        ),
        1.0
    );
    let ratio = get(&bound, "tandem_pool_utilisation_ratio", &[("scope", "lan")]);
    assert!((ratio - 1.0 / 51.0).abs() < 1e-9, "{ratio}");
    for (name, ty) in [
        ("tandem_dhcp_messages_received_total", "discover"),
        ("tandem_dhcp_messages_received_total", "request"),
        ("tandem_dhcp_replies_sent_total", "offer"),
        ("tandem_dhcp_replies_sent_total", "ack"),
    ] {
        assert!(counter(&bound, name, ty) >= 1.0, "{name}{{type={ty}}}");
    }
    let busy1 = get(
        &bound,
        "tandem_worker_busy_seconds_total",
        &[("worker", "0")],
    );
    let batches1 = get(&bound, "tandem_worker_batches_total", &[("worker", "0")]);
    assert!(busy1 > 0.0 && busy1 > busy0, "busy {busy0} then {busy1}");
    let uptime = get(&bound, "tandem_uptime_seconds", &[]);
    assert!(busy1 < uptime, "busy {busy1} s in {uptime} s of uptime");
    assert!(
        batches1 >= batches0 + 2.0,
        "DISCOVER and REQUEST come in separate batches: {batches0} then {batches1}"
    );
    let commits = get(&bound, "tandem_journal_commits_total", &[]);
    assert!(commits >= 1.0, "the ACK's binding was committed");
    assert_eq!(
        get(
            &bound,
            "tandem_journal_commit_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        get(&bound, "tandem_journal_commit_duration_seconds_count", &[])
    );

    // DHCPRELEASE: outside failover the address is free again at once (never "expired").
    cli.release(&c, &lab);
    let released = poll(Duration::from_secs(10), || {
        let m = scrape(&s.name);
        (pool(&m, "lan")[2] == 0.0).then_some(m)
    })
    .unwrap_or_else(|| panic!("the released lease of {ip} still shows as active"));
    assert_eq!(pool(&released, "lan"), [51.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(counter(&released, "tandem_dhcp_messages_received_total", "release") >= 1.0);
    srv.stop();
}

/// With the AF_XDP backend, the XDP program's verdicts (per interface) and the AF_XDP ring
/// counters count a real client's frames.
#[test]
fn af_xdp_backend_exports_verdicts_and_ring_counters() {
    let _cpu = cpu_shared();
    let lab = Lab::new("metrics-xdp");
    let s = lab.netns("s");
    let c = lab.netns("c");
    veth(&s, "tdm0", &c, "tdm0");
    s.addr("tdm0", "10.215.0.1/24");
    let cfg = Tandemd::server_section(&lab, "10.215.0.1", &["tdm0"])
        + "\n[dataplane]\nbackend = \"xdp\"\nxdp_mode = \"native\"\n"
        + &scope(
            "lan",
            "10.215.0.0/24",
            "tdm0",
            "10.215.0.100-10.215.0.150",
            "10.215.0.1",
        );
    let mut daemon = start_xdp(&lab, &s, &cfg);

    let before = scrape(&s.name);
    let verdict = |m: &[Sample], v: &str| {
        get(
            m,
            "tandem_xdp_packets_total",
            &[("interface", "tdm0"), ("verdict", v)],
        )
    };
    let verdicts: Vec<&str> = before
        .iter()
        .filter(|x| x.name == "tandem_xdp_packets_total")
        .filter_map(|x| x.label("verdict"))
        .collect();
    for v in [
        "redirect",
        "partner_drop",
        "not_ipv4",
        "other_port",
        "redirect_failed",
    ] {
        assert!(verdicts.contains(&v), "no verdict {v} in {verdicts:?}");
    }
    let redirect0 = verdict(&before, "redirect");

    let mut cli = Client::start(&lab, &c, "tdm0", Kind::Udhcpc, "udhcpc", &Opts::default());
    let ip = cli.wait_bound(BIND_TIMEOUT);
    assert!(in_range(ip, "10.215.0.100", "10.215.0.150"), "got {ip}");
    let m = poll(Duration::from_secs(10), || {
        let m = scrape(&s.name);
        (pool(&m, "lan")[2] == 1.0).then_some(m)
    })
    .unwrap_or_else(|| panic!("the lease of {ip} never showed as active in /metrics"));
    // DISCOVER and REQUEST at least, each redirected to the AF_XDP socket, none dropped as the
    // partner's (there is no partner).
    let redirected = verdict(&m, "redirect") - redirect0;
    assert!(redirected >= 2.0, "{redirected} frames redirected");
    assert_eq!(verdict(&m, "partner_drop"), 0.0);
    let rx = get(&m, "tandem_afxdp_frames_total", &[("direction", "rx")]);
    let tx = get(&m, "tandem_afxdp_frames_total", &[("direction", "tx")]);
    assert!(rx >= 2.0, "rx {rx}");
    assert!(tx >= 2.0, "OFFER and ACK left through the TX ring: tx {tx}");
    assert!(
        rx <= verdict(&m, "redirect"),
        "the socket cannot take more frames than were redirected to it"
    );
    let keys: f64 = m
        .iter()
        .filter(|x| x.name == "tandem_xdp_bucket_keys_total")
        .map(|x| x.value)
        .sum();
    assert!(
        keys >= redirected,
        "every DHCP frame had its bucket key counted"
    );
    assert_eq!(
        get(
            &m,
            "tandem_afxdp_dropped_total",
            &[("reason", "tx_ring_full")]
        ),
        0.0
    );
    assert!(get(&m, "tandem_worker_busy_seconds_total", &[("worker", "0")]) > 0.0);
    // The stage histograms: every redirected frame's queue wait, each ACK's wait for its
    // fdatasync (one per sync), as cumulative Prometheus histograms.
    let stage = |name: &str, suffix: &str| {
        get(
            &m,
            &format!("tandem_worker_stage_duration_seconds_{suffix}"),
            &[("stage", name)],
        )
    };
    // (Without stamps, where this kernel refuses the program's helper, the stage is empty.)
    let stats = run(&[
        "ip", "netns", "exec", &s.name, TANDEMCTL, "--admin", ADMIN, "stats", "--json",
    ]);
    let stats: serde_json::Value =
        serde_json::from_slice(&stats.stdout).expect("tandemctl stats --json prints JSON");
    let stamps = stats["xdp"]["rx_stamps"] != serde_json::json!(false);
    if stamps {
        assert!(stage("queue_wait", "count") >= redirected);
    } else {
        assert_eq!(stage("queue_wait", "count"), 0.0);
    }
    assert!(stage("ack_wait", "count") >= 1.0);
    assert!(stage("fdatasync", "count") >= 1.0);
    assert!(stage("fdatasync", "sum") > 0.0);
    assert_eq!(
        get(
            &m,
            "tandem_worker_stage_duration_seconds_bucket",
            &[("stage", "ack_wait"), ("le", "+Inf")]
        ),
        stage("ack_wait", "count")
    );
    assert!(get(&m, "tandem_worker_wakeups_total", &[("worker", "0")]) >= 1.0);
    let st = daemon.stop(Duration::from_secs(10));
    assert!(
        st.success(),
        "tandemd exited with {st}:\n{}",
        daemon.log_text()
    );
}

/// Start `tandemd` with the AF_XDP backend (no UDP socket to wait for: ready when it logs
/// "tandemd serving" and answers `tandemctl stats`).
fn start_xdp(lab: &Lab, ns: &Netns, config: &str) -> harness::Proc {
    let path = lab.write("tandem.toml", config);
    std::fs::create_dir_all(lab.path("state")).expect("state dir");
    let p = path.to_string_lossy().into_owned();
    let mut proc = ns.spawn(lab, "tandemd", &[harness::TANDEMD, "--config", &p]);
    let ready = poll(Duration::from_secs(20), || {
        if let Some(st) = proc.try_wait() {
            panic!("tandemd exited during startup ({st}):\n{}", proc.log_text());
        }
        let stats = run(&[
            "ip", "netns", "exec", &ns.name, TANDEMCTL, "--admin", ADMIN, "stats", "--json",
        ]);
        (proc.log_text().contains("tandemd serving") && stats.status.success()).then_some(())
    });
    assert!(
        ready.is_some(),
        "tandemd not serving after 20 s:\n{}",
        proc.log_text()
    );
    proc
}
