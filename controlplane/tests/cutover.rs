//! The documented zero-downtime cutover from a live ISC dhcpd failover pair to a Tandem pair
//! (README, "Migrating from ISC dhcpd or Kea"), in network namespaces with real clients:
//!
//! 1. two ISC dhcpd 4.4 (primary and secondary, load balance split 128) serve ISC dhclient,
//!    dhcpcd and busybox udhcpc on one link, and perfdhcp at a low rate throughout;
//! 2. the dhcpd **secondary** is stopped, its `dhcpd.conf` and `dhcpd.leases` imported with
//!    `tandemctl import dhcpd`, and a `tandemd` started on the result at the same address: it
//!    takes the same relationship, recovers every binding from the dhcpd primary by UPDREQALL
//!    and reaches NORMAL with it;
//! 3. the dhcpd **primary** is replaced the same way by a second `tandemd`, which recovers from
//!    the first one; both reach NORMAL.
//!
//! Throughout, the real clients renew (30 s leases) and none changes address from its first
//! renewal with the dhcpd pair on (dhcpd itself sometimes refuses a first renewal as "owned by
//! peer" and moves a client, before any Tandem runs); every client's
//! lease is on both Tandem servers at the end; no address is held by two clients (the clients'
//! own event logs, and the two lease tables); perfdhcp's exchanges are lost only around the
//! two switch moments (counted per phase and printed).
//!
//! Needs root and the tools of `deploy/install-deps.sh` (isc-dhcp-server, dhclient, dhcpcd,
//! udhcpc, perfdhcp); fails saying so otherwise, never skips. Namespaces are
//! `tdm-<pid>-<test>-<role>`, removed on drop.

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "netns/pair_checks.rs"]
mod pair_checks;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use clients::{Client, Kind, Opts};
use harness::{bridge, cpu_exclusive, poll, run, veth, Lab, Netns, Proc, Tandemd, TANDEMCTL};
use pair_checks::{acks_of, active, check_client_leases, check_tables_agree, now_secs};
use serde_json::Value;

const NAME: &str = "pair";
const DHCPD: &str = "/usr/sbin/dhcpd";
const PRIMARY_IP: &str = "10.82.0.2";
const SECONDARY_IP: &str = "10.82.0.3";
const LEASE: u64 = 30;
const BIND_TIMEOUT: Duration = Duration::from_secs(40);
const NORMAL_TIMEOUT: Duration = Duration::from_secs(90);

/// dhcpd's configuration on the primary (`primary`) or the secondary.
fn dhcpd_conf(primary: bool) -> String {
    let (me, peer, role) = if primary {
        (
            PRIMARY_IP,
            SECONDARY_IP,
            "primary;\n  mclt 10;\n  split 128;",
        )
    } else {
        (SECONDARY_IP, PRIMARY_IP, "secondary;")
    };
    format!(
        "# dhcpd.conf of the cutover test ({})\n\
         authoritative;\nddns-update-style none;\ndefault-lease-time {LEASE};\n\
         max-lease-time {LEASE};\nping-check false;\nserver-id-check true;\n\
         failover peer \"{NAME}\" {{\n  {role}\n  address {me};\n  port 647;\n  \
         peer address {peer};\n  peer port 647;\n  max-response-delay 5;\n  \
         max-unacked-updates 10;\n  load balance max seconds 3;\n}}\n\
         subnet 10.82.0.0 netmask 255.255.252.0 {{\n  option routers 10.82.0.1;\n  pool {{\n    \
         failover peer \"{NAME}\";\n    range 10.82.0.10 10.82.3.250;\n  }}\n}}\n",
        if primary { "primary" } else { "secondary" }
    )
}

/// The state dhcpd last logged moving to ("failover peer pair: I move from X to Y").
fn isc_state(log: &str) -> Option<String> {
    let prefix = format!("failover peer {NAME}: I move from ");
    log.lines()
        .rev()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|r| r.split_once(" to "))
        .map(|(_, b)| b.trim().to_string())
        .next()
}

/// One dhcpd server of the pair, in its namespace, with its files in the lab.
struct Isc {
    name: &'static str,
    proc: Proc,
}

impl Isc {
    fn start(lab: &Lab, ns: &Netns, name: &'static str, primary: bool) -> Isc {
        assert!(
            Path::new(DHCPD).exists(),
            "{DHCPD} missing: install isc-dhcp-server (Debian package)"
        );
        let conf = lab.write(&format!("{name}.conf"), &dhcpd_conf(primary));
        let leases = lab.write(&format!("{name}.leases"), "");
        let pid = lab.path(&format!("{name}.pid"));
        let (cf, lf, pf) = (
            conf.display().to_string(),
            leases.display().to_string(),
            pid.display().to_string(),
        );
        let mut proc = ns.spawn(
            lab,
            name,
            &[
                DHCPD, "-4", "-f", "-d", "-cf", &cf, "-lf", &lf, "-pf", &pf, "eth1",
            ],
        );
        let up = poll(Duration::from_secs(15), || {
            if let Some(st) = proc.try_wait() {
                panic!("{name} exited during startup ({st}):\n{}", proc.log_text());
            }
            proc.log_text()
                .contains("Server starting service.")
                .then_some(())
        });
        assert!(up.is_some(), "{name} not serving:\n{}", proc.log_text());
        Isc { name, proc }
    }

    fn state(&self) -> Option<String> {
        isc_state(&self.proc.log_text())
    }
}

fn fo(t: &Tandemd) -> Value {
    t.ctl_json(&["failover", "show", NAME, "--json"])
}

/// True once `t` is NORMAL with its partner NORMAL over a live connection.
fn tandem_normal(t: &Tandemd) -> bool {
    let v = fo(t);
    v["state"] == "NORMAL" && v["partner_state"] == "NORMAL" && v["connected"] == true
}

/// `tandemctl import dhcpd` of `isc`'s files into the files `tandemd` named `name` starts on
/// (`<name>.toml` as text, `<name>-state/`), for this server at `ip` on eth1; returns the TOML.
fn import(lab: &Lab, isc: &Isc, name: &str, ip: &str) -> String {
    let (conf, leases) = (
        lab.path(&format!("{}.conf", isc.name)),
        lab.path(&format!("{}.leases", isc.name)),
    );
    let out = lab.path(&format!("{name}-imported.toml"));
    let state = lab.path(&format!("{name}-state"));
    let iface = format!("eth1/{ip}");
    let argv = [
        TANDEMCTL,
        "import",
        "dhcpd",
        "--conf",
        &conf.display().to_string(),
        "--leases",
        &leases.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--state-dir",
        &state.display().to_string(),
        "--interface",
        &iface,
    ];
    let r = run(&argv);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        r.status.success(),
        "import of {} failed ({}):\n{}{}",
        isc.name,
        r.status,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    eprintln!(
        "import of {}:\n{}{}---\n{text}",
        isc.name,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        text.contains("[[failover]]"),
        "no relationship imported:\n{text}"
    );
    text
}

/// perfdhcp in the background for `secs` s at `rate`/s, cycling over `clients` clients (each
/// comes back for its own address).
fn perfdhcp_bg(lab: &Lab, ns: &Netns, name: &str, rate: u32, clients: u32, secs: u32) -> Proc {
    let (r, c, p) = (rate.to_string(), clients.to_string(), secs.to_string());
    ns.spawn(
        lab,
        name,
        &[
            "perfdhcp",
            "-4",
            "-l",
            "eth1",
            "-r",
            &r,
            "-R",
            &c,
            "-p",
            &p,
            "-b",
            "mac=00:0e:00:00:00:00",
        ],
    )
}

/// Waits for a background perfdhcp to end; returns (DORAs started, ACKs).
fn finish_perfdhcp(mut p: Proc, secs: u32) -> (u64, u64, String) {
    let until = Instant::now() + Duration::from_secs(u64::from(secs) + 20);
    while p.alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = p.log_text();
    assert!(
        text.contains("sent packets"),
        "perfdhcp did not finish:\n{text}"
    );
    let sent = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sent packets:"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .next()
        .unwrap_or(0);
    (sent, acks_of(&text), text)
}

/// Every client's address, from its events: the address of its last binding.
fn client_addrs(clients: &[Client]) -> Vec<Option<Ipv4Addr>> {
    clients
        .iter()
        .map(|c| {
            c.events()
                .iter()
                .rev()
                .find(|e| e.is_bound() || e.is_renew())
                .and_then(|e| e.ip)
        })
        .collect()
}

/// No client held an address other than its baseline from `since` on.
fn assert_no_client_moved(clients: &[Client], first: &[Ipv4Addr], since: u64) {
    for (c, want) in clients.iter().zip(first) {
        let moved: Vec<_> = c
            .events()
            .into_iter()
            .filter(|e| e.t >= since && (e.is_bound() || e.is_renew()) && e.ip != Some(*want))
            .collect();
        assert!(
            moved.is_empty(),
            "client {} moved from {want}: {moved:?}",
            c.mac
        );
    }
}

#[test]
fn dhcpd_pair_replaced_by_tandem_one_server_at_a_time() {
    let _cpu = cpu_exclusive();
    let lab = Lab::new("cut");
    let sw = lab.netns("sw");
    let n1 = lab.netns("s1");
    let n2 = lab.netns("s2");
    let np = lab.netns("p");
    veth(&n1, "eth1", &sw, "tdmcu1");
    veth(&n2, "eth1", &sw, "tdmcu2");
    veth(&np, "eth1", &sw, "tdmcup");
    let kinds = [Kind::Dhclient, Kind::Dhcpcd, Kind::Udhcpc];
    let mut ports = vec!["tdmcu1".to_string(), "tdmcu2".into(), "tdmcup".into()];
    let mut c_ns = Vec::new();
    for i in 0..kinds.len() {
        let ns = lab.netns(&format!("c{i}"));
        let p = format!("tdmcuc{i}");
        veth(&ns, "eth1", &sw, &p);
        ports.push(p);
        c_ns.push(ns);
    }
    let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
    bridge(&sw, "br0", &refs);
    n1.addr("eth1", &format!("{PRIMARY_IP}/22"));
    n2.addr("eth1", &format!("{SECONDARY_IP}/22"));
    np.addr("eth1", "10.82.3.254/22");

    // 1. The live dhcpd pair.
    let mut d1 = Isc::start(&lab, &n1, "dhcpd1", true);
    let mut d2 = Isc::start(&lab, &n2, "dhcpd2", false);
    let normal = poll(NORMAL_TIMEOUT, || {
        (d1.state().as_deref() == Some("normal") && d2.state().as_deref() == Some("normal"))
            .then_some(())
    });
    assert!(
        normal.is_some(),
        "the dhcpd pair never reached normal:\n{}\n{}",
        d1.proc.log_text(),
        d2.proc.log_text()
    );
    let mut clients: Vec<Client> = kinds
        .iter()
        .zip(&c_ns)
        .enumerate()
        .map(|(i, (k, ns))| {
            Client::start(
                &lab,
                ns,
                "eth1",
                *k,
                &format!("{}{i}", k.name()),
                &Opts::default(),
            )
        })
        .collect();
    for c in clients.iter_mut() {
        c.wait_bound(BIND_TIMEOUT);
    }
    // The baseline is each client's address once it renewed with the dhcpd pair: dhcpd itself
    // may refuse a first renewal ("lease owned by peer") and move a client, which is not the
    // cutover's doing.
    let bound_at = now_secs();
    let renewed = poll(Duration::from_secs(60), || {
        clients
            .iter()
            .all(|c| c.events().iter().any(|e| e.is_renew() && e.t >= bound_at))
            .then_some(())
    });
    assert!(
        renewed.is_some(),
        "not every client renewed with the dhcpd pair: {:?}",
        clients.iter().map(Client::events).collect::<Vec<_>>()
    );
    let since = now_secs();
    let first: Vec<Ipv4Addr> = client_addrs(&clients)
        .into_iter()
        .map(|a| a.expect("a bound client has an address"))
        .collect();
    let (sent, acks, out) = finish_perfdhcp(perfdhcp_bg(&lab, &np, "perf-isc", 20, 100, 8), 8);
    assert!(
        acks * 100 >= sent * 95,
        "the dhcpd pair lost exchanges:\n{out}"
    );
    let mut phases = vec![("dhcpd pair", sent, acks)];

    // 2. The secondary: stopped, imported, replaced by Tandem (load runs across the switch).
    let across = perfdhcp_bg(&lab, &np, "perf-switch-2", 10, 100, 30);
    std::thread::sleep(Duration::from_secs(3));
    d2.proc.stop(Duration::from_secs(10));
    let t2_toml = import(&lab, &d2, "t2", SECONDARY_IP);
    assert!(t2_toml.contains("role = \"secondary\""), "{t2_toml}");
    let t2 = Tandemd::start_named(&lab, &n2, "t2", &t2_toml, &[]);
    let ok = poll(NORMAL_TIMEOUT, || {
        (tandem_normal(&t2) && d1.state().as_deref() == Some("normal")).then_some(())
    });
    assert!(
        ok.is_some(),
        "Tandem (secondary) and the dhcpd primary not both NORMAL: {}\n{}",
        fo(&t2),
        d1.proc.log_text()
    );
    let (sent, acks, _) = finish_perfdhcp(across, 30);
    phases.push(("switch: secondary -> Tandem", sent, acks));
    // Every client's lease is on Tandem now (recovered from dhcpd by UPDREQALL, or imported).
    let has_all = poll(Duration::from_secs(20), || {
        let a = active(&t2);
        first.iter().all(|ip| a.contains_key(ip)).then_some(())
    });
    assert!(
        has_all.is_some(),
        "Tandem lacks a client's lease: {:?}",
        t2.leases()
    );
    let (sent, acks, out) = finish_perfdhcp(perfdhcp_bg(&lab, &np, "perf-mixed", 20, 100, 8), 8);
    assert!(
        acks * 100 >= sent * 95,
        "dhcpd primary + Tandem secondary lost exchanges:\n{out}"
    );
    phases.push(("dhcpd primary + Tandem secondary", sent, acks));

    // 3. The primary: stopped, imported, replaced by a second Tandem.
    let across = perfdhcp_bg(&lab, &np, "perf-switch-1", 10, 100, 30);
    std::thread::sleep(Duration::from_secs(3));
    d1.proc.stop(Duration::from_secs(10));
    let t1_toml = import(&lab, &d1, "t1", PRIMARY_IP);
    assert!(t1_toml.contains("role = \"primary\""), "{t1_toml}");
    let t1 = Tandemd::start_named(&lab, &n1, "t1", &t1_toml, &[]);
    let ok = poll(NORMAL_TIMEOUT, || {
        (tandem_normal(&t1) && tandem_normal(&t2)).then_some(())
    });
    assert!(
        ok.is_some(),
        "the Tandem pair not both NORMAL: {}\n{}",
        fo(&t1),
        fo(&t2)
    );
    let (sent, acks, _) = finish_perfdhcp(across, 30);
    phases.push(("switch: primary -> Tandem", sent, acks));
    let (sent, acks, out) = finish_perfdhcp(perfdhcp_bg(&lab, &np, "perf-tandem", 20, 100, 8), 8);
    assert!(
        acks * 100 >= sent * 95,
        "the Tandem pair lost exchanges:\n{out}"
    );
    phases.push(("Tandem pair", sent, acks));

    // The real clients renew through the new pair (a lease is 30 s: T1 at 15 s).
    let renewed_from = now_secs();
    let renewed = poll(Duration::from_secs(45), || {
        clients
            .iter()
            .all(|c| {
                c.events()
                    .iter()
                    .any(|e| e.is_renew() && e.t >= renewed_from)
            })
            .then_some(())
    });
    assert!(
        renewed.is_some(),
        "not every client renewed through the Tandem pair: {:?}",
        clients.iter().map(Client::events).collect::<Vec<_>>()
    );
    assert_no_client_moved(&clients, &first, since);
    assert_eq!(
        client_addrs(&clients),
        first.iter().copied().map(Some).collect::<Vec<_>>()
    );
    check_client_leases(&clients);
    check_tables_agree(&t1, &t2);
    let (a1, a2) = (active(&t1), active(&t2));
    let by_mac: BTreeMap<String, Ipv4Addr> = clients
        .iter()
        .zip(&first)
        .map(|(c, ip)| (c.mac.clone(), *ip))
        .collect();
    for (mac, ip) in &by_mac {
        for (name, table) in [("t1", &a1), ("t2", &a2)] {
            let l = table
                .get(ip)
                .unwrap_or_else(|| panic!("{name} has no lease of {ip} ({mac}): {table:?}"));
            assert_eq!(l.mac.as_deref(), Some(mac.as_str()), "{name}: {l:?}");
        }
    }
    eprintln!("perfdhcp per phase (DORAs started, ACKs):");
    for (what, sent, acks) in &phases {
        eprintln!(
            "  {what:36} {sent:5} {acks:5} lost {}",
            sent.saturating_sub(*acks)
        );
    }
}
