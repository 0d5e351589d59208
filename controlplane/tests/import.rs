//! `tandemctl import` on files written by the real programs, in network namespaces:
//!
//! - ISC dhcpd serves a real dhclient; dhcpd is stopped, its `dhcpd.conf` and `dhcpd.leases`
//!   are imported, `tandemd` (UDP backend) starts on the result, and dhclient, started again on
//!   its lease file, goes through INIT-REBOOT and is ACKed the same address (REBOOT);
//! - Kea serves perfdhcp (a few hundred leases in its memfile CSV); Kea is stopped, its
//!   configuration and `kea-leases4.csv` are imported, `tandemd` lists every lease Kea held
//!   (same address, same MAC), and a REQUEST for one of them from its client (INIT-REBOOT with
//!   that client's MAC) gets an ACK for it.
//!
//! Namespaces are `tdm-<pid>-<test>-<role>` (see `netns/harness.rs`) and are removed on drop,
//! also on failure. The tests need root, dhcpd, kea-dhcp4, perfdhcp and dhclient.

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use clients::{Client, Kind, Opts};
use harness::{
    counter, cpu_exclusive, cpu_shared, poll, run, veth, Lab, Netns, Proc, Tandemd, TANDEMCTL,
};

const BIND_TIMEOUT: Duration = Duration::from_secs(40);

/// Run `tandemctl import SOURCE ...` with `--out <lab>/imported.toml --state-dir <lab>/state`;
/// returns the imported TOML and the report lines (stderr). Panics unless it exits 0.
fn import(lab: &Lab, source: &str, conf: &str, leases: &str, iface: &str) -> (String, String) {
    let out = lab.path("imported.toml");
    let state = lab.path("state");
    let (o, s) = (out.display().to_string(), state.display().to_string());
    let r = run(&[
        TANDEMCTL,
        "import",
        source,
        "--conf",
        conf,
        "--leases",
        leases,
        "--out",
        &o,
        "--state-dir",
        &s,
        "--interface",
        iface,
    ]);
    let stdout = String::from_utf8_lossy(&r.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(
        r.status.success(),
        "tandemctl import {source} failed ({}):\n{stdout}{stderr}",
        r.status
    );
    let text = fs::read_to_string(&out).expect("imported config");
    eprintln!("import {source}: {stdout}{stderr}---\n{text}");
    (text, stderr)
}

/// A dhcpd.conf as an operator would write it (some lines Tandem reports).
fn dhcpd_conf() -> String {
    "# dhcpd.conf of the import test\n\
     authoritative;\n\
     ddns-update-style none;\n\
     log-facility local7;\n\
     default-lease-time 3600;\n\
     max-lease-time 7200;\n\
     ping-check false;\n\
     one-lease-per-client true;\n\
     option domain-name \"import.test\";\n\
     option domain-name-servers 10.83.0.53;\n\
     subnet 10.83.0.0 netmask 255.255.255.0 {\n\
     \x20 option routers 10.83.0.1;\n\
     \x20 range 10.83.0.100 10.83.0.150;\n\
     }\n"
    .to_string()
}

#[test]
fn dhcpd_leases_imported_and_dhclient_reboots_onto_its_address() {
    let _cpu = cpu_shared();
    let lab = Lab::new("impd");
    let s = lab.netns("s");
    let c = lab.netns("c");
    veth(&s, "eth1", &c, "eth0");
    s.addr("eth1", "10.83.0.2/24");
    c.up("eth0");

    let cf = lab.write("dhcpd.conf", &dhcpd_conf());
    let lf = lab.write("dhcpd.leases", "");
    let pf = lab.path("dhcpd.pid");
    let (cf, lf, pf) = (
        cf.display().to_string(),
        lf.display().to_string(),
        pf.display().to_string(),
    );
    let mut dhcpd = s.spawn(
        &lab,
        "dhcpd",
        &[
            "/usr/sbin/dhcpd",
            "-4",
            "-f",
            "-d",
            "-cf",
            &cf,
            "-lf",
            &lf,
            "-pf",
            &pf,
            "eth1",
        ],
    );
    assert!(
        poll(Duration::from_secs(15), || s
            .udp_listening(67)
            .then_some(()))
        .is_some(),
        "dhcpd did not start:\n{}",
        dhcpd.log_text()
    );
    let mut first = Client::start(&lab, &c, "eth0", Kind::Dhclient, "dhc1", &Opts::default());
    let addr = first.wait_bound(BIND_TIMEOUT);
    assert!(
        (u32::from(Ipv4Addr::new(10, 83, 0, 100))..=u32::from(Ipv4Addr::new(10, 83, 0, 150)))
            .contains(&u32::from(addr)),
        "dhcpd gave {addr}"
    );
    let mac = first.mac.clone();
    let lease_file = first.lease_file();
    // The client goes away without releasing; dhcpd stops (its leases file is complete).
    drop(first);
    let st = dhcpd.stop(Duration::from_secs(10));
    eprintln!("dhcpd stopped: {st}");
    let leases = fs::read_to_string(&lf).expect("dhcpd.leases");
    assert!(
        leases.contains(&format!("lease {addr} {{")) && leases.contains(&mac),
        "dhcpd.leases has no lease of {addr} for {mac}:\n{leases}"
    );

    // --strict: dhcpd.conf has lines Tandem cannot translate, so nothing is written (exit 3).
    let strict = run(&[
        TANDEMCTL,
        "import",
        "dhcpd",
        "--strict",
        "--conf",
        &cf,
        "--leases",
        &lf,
        "--out",
        &lab.path("imported.toml").display().to_string(),
        "--state-dir",
        &lab.path("state").display().to_string(),
        "--interface",
        "eth1/10.83.0.2",
    ]);
    assert_eq!(
        strict.status.code(),
        Some(3),
        "--strict: {}",
        String::from_utf8_lossy(&strict.stderr)
    );
    assert!(!lab.path("imported.toml").exists());
    let (text, report) = import(&lab, "dhcpd", &cf, &lf, "eth1/10.83.0.2");
    assert!(
        report.contains("dhcpd.conf:4: log-facility:"),
        "reports name their line: {report}"
    );
    assert!(
        report.contains("dhcpd.conf:8: one-lease-per-client:") && !report.contains("ping-check"),
        "reports name their line: {report}"
    );
    assert!(text.contains("interface = \"eth1\""), "{text}");
    let srv = Tandemd::start(&lab, &s, &text);
    let l = srv
        .lease(addr)
        .unwrap_or_else(|| panic!("tandemd has no lease of {addr}: {:#?}", srv.leases()));
    assert_eq!(l.state, "active", "{l:?}");
    assert_eq!(l.mac.as_deref(), Some(mac.as_str()), "{l:?}");

    // dhclient again, on its old lease file: INIT-REBOOT for the old address.
    let dir = lab.path("dhc2");
    fs::create_dir_all(&dir).expect("client dir");
    fs::copy(&lease_file, dir.join("dhclient.leases")).expect("copy the lease file");
    let mut again = Client::start(&lab, &c, "eth0", Kind::Dhclient, "dhc2", &Opts::default());
    let got = again.wait_bound(BIND_TIMEOUT);
    let ev = again.events();
    assert_eq!(got, addr, "tandemd gave another address; events {ev:?}");
    assert!(
        ev.iter()
            .any(|e| e.reason == "REBOOT" && e.ip == Some(addr)),
        "not an INIT-REBOOT ACK: {ev:?}\n{}",
        srv.log_text()
    );
    let stats = srv.stats();
    assert_eq!(
        counter(&stats, "discover"),
        0,
        "the client needed no DISCOVER: {stats}"
    );
    assert!(counter(&stats, "ack") >= 1, "{stats}");
}

/// Kea's configuration of the perfdhcp test (relayed clients on the 10.84.0.0/22 link).
fn kea_conf(lab: &Lab) -> String {
    format!(
        r#"// kea-dhcp4.conf of the import test
{{
"Dhcp4": {{
    "interfaces-config": {{ "interfaces": [ "eth1" ], "dhcp-socket-type": "udp" }},
    "lease-database": {{ "type": "memfile", "persist": true, "lfc-interval": 0,
                        "name": "{}" }},
    "valid-lifetime": 3600,
    "renew-timer": 900,
    "rebind-timer": 1800,
    "authoritative": true,
    /* the options every client gets */
    "option-data": [ {{ "name": "domain-name-servers", "data": "10.84.0.53" }} ],
    "subnet4": [ {{
        "id": 1,
        "subnet": "10.84.0.0/22",
        "pools": [ {{ "pool": "10.84.1.0 - 10.84.3.250" }} ],
        "option-data": [ {{ "name": "routers", "data": "10.84.0.1" }} ]
    }} ],
    "loggers": [ {{ "name": "kea-dhcp4", "severity": "INFO",
                   "output_options": [ {{ "output": "stdout" }} ] }} ]
}}
}}
"#,
        lab.path("kea-leases4.csv").display()
    )
}

/// The last row per address of a Kea lease CSV that is a live lease: address → MAC.
fn kea_live_leases(csv: &str) -> BTreeMap<Ipv4Addr, (String, String)> {
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |n: &str| {
        head.iter()
            .position(|h| *h == n)
            .unwrap_or_else(|| panic!("no {n} column"))
    };
    let (a, hw, cid, valid, state) = (
        col("address"),
        col("hwaddr"),
        col("client_id"),
        col("valid_lifetime"),
        col("state"),
    );
    let mut m = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let Some(addr) = f.get(a).and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        if f.get(valid) != Some(&"0") && f.get(state) == Some(&"0") {
            m.insert(addr, (f[hw].to_ascii_lowercase(), f[cid].to_string()));
        } else {
            m.remove(&addr);
        }
    }
    m
}

fn wait_ready(p: &mut Proc, ns: &Netns, what: &str) {
    assert!(
        poll(Duration::from_secs(15), || {
            if let Some(st) = p.try_wait() {
                panic!("{what} exited ({st}):\n{}", p.log_text());
            }
            ns.udp_listening(67).then_some(())
        })
        .is_some(),
        "{what} did not start:\n{}",
        p.log_text()
    );
}

#[test]
fn kea_leases_from_perfdhcp_imported_and_served() {
    let _cpu = cpu_exclusive();
    let lab = Lab::new("impk");
    let s = lab.netns("s");
    let p = lab.netns("p");
    veth(&s, "eth1", &p, "eth0");
    s.addr("eth1", "10.84.0.1/22");
    p.addr("eth0", "10.84.0.2/22");

    let cfg = lab.write("kea-dhcp4.conf", &kea_conf(&lab));
    let cfg = cfg.display().to_string();
    let dir = lab.path("").display().to_string();
    let (pid_env, lock_env) = (
        format!("KEA_PIDFILE_DIR={dir}"),
        format!("KEA_LOCKFILE_DIR={dir}"),
    );
    let mut kea = s.spawn(
        &lab,
        "kea",
        &["env", &pid_env, &lock_env, "kea-dhcp4", "-c", &cfg],
    );
    wait_ready(&mut kea, &s, "kea-dhcp4");
    // Relay-style load (giaddr 10.84.0.2): 400 exchanges over 300 simulated clients.
    let mut perf = p.spawn(
        &lab,
        "perfdhcp",
        &[
            "timeout",
            "60",
            "perfdhcp",
            "-4",
            "-r",
            "50",
            "-n",
            "400",
            "-R",
            "300",
            "-p",
            "20",
            "-l",
            "10.84.0.2",
            "10.84.0.1",
        ],
    );
    assert!(
        perf.wait_exit(Duration::from_secs(70)).is_some(),
        "perfdhcp did not stop"
    );
    kea.stop(Duration::from_secs(10));
    let csv_path = lab.path("kea-leases4.csv");
    let csv = fs::read_to_string(&csv_path).expect("Kea's lease file");
    let live = kea_live_leases(&csv);
    assert!(
        live.len() >= 100,
        "Kea holds only {} leases after perfdhcp:\n{}",
        live.len(),
        perf.log_text()
    );

    let (text, report) = import(
        &lab,
        "kea",
        &cfg,
        &csv_path.display().to_string(),
        "eth1/10.84.0.1",
    );
    assert!(
        report.contains("kea-dhcp4.conf:19: loggers:"),
        "reports name their line: {report}"
    );
    let srv = Tandemd::start(&lab, &s, &text);
    let held: BTreeMap<Ipv4Addr, harness::Lease> =
        srv.leases().into_iter().map(|l| (l.address, l)).collect();
    let mut missing = Vec::new();
    for (a, (mac, _)) in &live {
        match held.get(a) {
            Some(l) if l.state == "active" && l.mac.as_deref() == Some(mac.as_str()) => {}
            other => missing.push(format!("{a} {mac}: {other:?}")),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of Kea's {} leases are not held by tandemd: {:?}",
        missing.len(),
        live.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!("tandemd holds all {} leases Kea held", live.len());

    // A client of one of those leases asks for it (INIT-REBOOT): dhclient with that client's
    // MAC and client identifier, and a lease file naming the address.
    let (addr, (mac, cid)) = live
        .iter()
        .next()
        .map(|(a, x)| (*a, x.clone()))
        .expect("a lease");
    p.ip("link set eth0 down");
    p.ip(&format!("link set eth0 address {mac}"));
    p.ip("link set eth0 up");
    let events = reboot_with_dhclient(&lab, &p, "eth0", addr, &cid);
    assert!(
        events
            .iter()
            .any(|(r, a)| r == "REBOOT" && *a == Some(addr)),
        "the REQUEST for {addr} (MAC {mac}, client id {cid:?}) was not ACKed: {events:?}\n{}",
        srv.log_text()
    );
    let stats = srv.stats();
    assert_eq!(counter(&stats, "discover"), 0, "{stats}");
    assert!(counter(&stats, "ack") >= 1, "{stats}");
}

/// Run dhclient on `iface` with a lease file naming `addr` (so it starts in INIT-REBOOT),
/// sending client identifier `cid` (colon hex; none if empty), until it reports a lease or 40 s
/// pass; returns its (reason, address) events.
fn reboot_with_dhclient(
    lab: &Lab,
    ns: &Netns,
    iface: &str,
    addr: Ipv4Addr,
    cid: &str,
) -> Vec<(String, Option<Ipv4Addr>)> {
    let dir = lab.path("reboot");
    fs::create_dir_all(&dir).expect("client dir");
    let d = dir.display().to_string();
    let ev = format!("{d}/events");
    fs::write(&ev, "").expect("events");
    let script = lab.script(
        "reboot/script",
        &format!(
            "#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
             echo \"$reason ${{new_ip_address:--}}\" >> {ev}\n\
             case $reason in\n\
             BOUND|RENEW|REBIND|REBOOT) ip addr replace \"$new_ip_address/$new_subnet_mask\" dev \"$interface\" ;;\n\
             esac\nexit 0\n"
        ),
    );
    let mut conf = String::from("request subnet-mask, routers;\n");
    if !cid.is_empty() {
        conf.push_str(&format!("send dhcp-client-identifier {cid};\n"));
    }
    lab.write("reboot/dhclient.conf", &conf);
    lab.write(
        "reboot/dhclient.leases",
        &format!(
            "lease {{\n  interface \"{iface}\";\n  fixed-address {addr};\n  option subnet-mask 255.255.252.0;\n  \
             option dhcp-lease-time 3600;\n  option dhcp-server-identifier 10.84.0.1;\n  \
             renew 4 2099/01/01 00:00:00;\n  rebind 4 2099/01/01 00:00:00;\n  expire 4 2099/01/01 00:00:00;\n}}\n"
        ),
    );
    let (cf, lf, pf, sf) = (
        format!("{d}/dhclient.conf"),
        format!("{d}/dhclient.leases"),
        format!("{d}/dhclient.pid"),
        script.display().to_string(),
    );
    let _client = ns.spawn(
        lab,
        "reboot-dhclient",
        &[
            "dhclient", "-4", "-d", "-v", "-cf", &cf, "-lf", &lf, "-pf", &pf, "-sf", &sf, iface,
        ],
    );
    let read = || -> Vec<(String, Option<Ipv4Addr>)> {
        fs::read_to_string(&ev)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next().and_then(|a| a.parse().ok())))
            })
            .collect()
    };
    let _ = poll(BIND_TIMEOUT, || {
        read()
            .iter()
            .any(|(r, a)| a.is_some() && matches!(r.as_str(), "BOUND" | "REBOOT"))
            .then_some(())
    });
    read()
}
