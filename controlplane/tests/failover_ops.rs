//! The operator's failover verbs on two live `tandemd` partners in network namespaces, through
//! `tandemctl` (as an operator types them) and the partner-to-partner channel:
//!
//! - scope-settings replication both ways: a scope changed on A and replicated reaches a real
//!   dhclient served by B; changed on B and replicated back, it overwrites A's;
//! - live changes under perfdhcp load: a range added (and replicated) and the relationship
//!   switched from load balance to hot standby while clients keep arriving; no lease lost, no
//!   client-visible failure, and the real clients keep their addresses;
//! - a relationship's whole life from the CLI: `failover add` (which creates it on the partner
//!   with its scopes), `set`, `pause`/`resume`, `remove` (the partner drops its copies of the
//!   scopes, this server keeps serving them), and refusals of unsigned, wrongly signed,
//!   foreign and incompatible partner requests.
//!
//! Needs root and the tools of `deploy/install-deps.sh` (fails, never skips, without them).

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "netns/pair_checks.rs"]
mod pair_checks;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use clients::{Client, Kind, Opts};
use harness::{counter, cpu_exclusive, perfdhcp, poll, Lab, Netns, Tandemd};
use pair_checks::{
    acks_of, active, check_client_leases, check_tables_agree, pair_net, wait_replicated, PairNet,
};
use serde_json::Value;
use tandem_controlplane::metrics;

/// The admin token of every daemon in these tests (the same file content everywhere).
const TOKEN: &str = "ops-test-admin-token-0123456789abcdef";
/// The relationship's shared secret.
const SECRET: &str = "ops-test-failover-secret-0123456789";
const BIND: Duration = Duration::from_secs(40);

/// Point tandemctl (run by the harness) at a token file, once per test process.
fn token_env() -> PathBuf {
    static ONCE: Once = Once::new();
    let path = PathBuf::from(format!("/tmp/tdm-ops-token-{}", std::process::id()));
    ONCE.call_once(|| {
        std::fs::write(&path, TOKEN).expect("token file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // SAFETY-free in edition 2021: set before any test thread runs tandemctl.
        std::env::set_var("TANDEM_TOKEN_FILE", &path);
    });
    path
}

fn private(lab: &Lab, name: &str, text: &str) -> PathBuf {
    let p = lab.write(name, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

/// The `[server]` table of `me` with the admin endpoint open to the partner (token required).
fn server(lab: &Lab, me: &str, id: &str) -> String {
    let token = private(lab, "admin.token", TOKEN);
    Tandemd::server_section_named(lab, me, id, &["eth1"]).replace(
        "admin_listen = \"127.0.0.1:9167\"",
        &format!(
            "admin_listen = \"0.0.0.0:9167\"\nadmin_token_file = \"{}\"",
            token.display()
        ),
    )
}

/// Scope `lan`: 10.79.0.0/16 on eth1, `ranges`, `domain`.
fn lan(ranges: &[&str], domain: &str) -> String {
    let r: Vec<String> = ranges.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "[[scope]]\nname = \"lan\"\nsubnet = \"10.79.0.0/16\"\ninterface = \"eth1\"\n\
         ranges = [{}]\nlease_time = \"30s\"\nauthoritative = true\n\
         [scope.options]\nrouters = [\"10.79.0.1\"]\ndomain_name = \"{domain}\"\n",
        r.join(", ")
    )
}

/// The relationship `pair` as server `me` ("a" primary, "b" secondary) sees it (alarm after 3 s
/// of COMMUNICATIONS-INTERRUPTED).
fn relationship(lab: &Lab, me: &str) -> String {
    let secret = private(lab, "failover-pair.secret", SECRET);
    let (role, listen, partner, pct) = match me {
        "a" => ("primary", "10.79.0.2", "10.79.0.3", 50),
        _ => ("secondary", "10.79.0.3", "10.79.0.2", 50),
    };
    format!(
        "[[failover]]\nname = \"pair\"\nrole = \"{role}\"\npartner = \"{partner}\"\n\
         listen = \"{listen}\"\npartner_admin = \"{partner}:9167\"\nmclt = \"10s\"\n\
         max_response_delay = \"5s\"\nstartup_wait = \"2s\"\nmode = \"load-balance\"\n\
         load_balance_percent = {pct}\nshared_secret_file = \"{}\"\nscopes = [\"lan\"]\n\
         comm_interrupted_alarm = \"3s\"\n",
        secret.display()
    )
}

struct Ops {
    lab: Lab,
    a_ns: Netns,
    _b_ns: Netns,
    p_ns: Netns,
    c_ns: Vec<Netns>,
    _sw: Netns,
    a: Tandemd,
    b: Tandemd,
}

/// A and B (10.79.0.2/.3), perfdhcp's namespace (10.79.0.254) and `clients` client namespaces
/// on one bridge; `a_cfg`/`b_cfg` give what follows each `[server]` table.
fn ops(
    tag: &str,
    clients: usize,
    a_cfg: impl Fn(&Lab) -> String,
    b_cfg: impl Fn(&Lab) -> String,
) -> Ops {
    token_env();
    let lab = Lab::new(tag);
    let PairNet {
        sw,
        a: a_ns,
        b: b_ns,
        p: p_ns,
        c: c_ns,
    } = pair_net(&lab, clients, "tdmo", 16);
    let a = Tandemd::start_named(
        &lab,
        &a_ns,
        "a",
        &format!("{}\n{}", server(&lab, "a", "10.79.0.2"), a_cfg(&lab)),
        &[],
    );
    let b = Tandemd::start_named(
        &lab,
        &b_ns,
        "b",
        &format!("{}\n{}", server(&lab, "b", "10.79.0.3"), b_cfg(&lab)),
        &[],
    );
    Ops {
        lab,
        a_ns,
        _b_ns: b_ns,
        p_ns,
        c_ns,
        _sw: sw,
        a,
        b,
    }
}

fn fo(srv: &Tandemd) -> Value {
    srv.ctl_json(&["failover", "show", "pair", "--json"])
}

fn state_of(srv: &Tandemd) -> String {
    let out = srv.ctl(&["failover", "show", "pair", "--json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn wait_state(lab: &Lab, srv: &Tandemd, state: &str, timeout: Duration) {
    if poll(timeout, || (state_of(srv) == state).then_some(())).is_none() {
        panic!(
            "not in {state} after {timeout:?}: {}\n{}",
            String::from_utf8_lossy(&srv.ctl(&["failover", "show", "pair", "--json"]).stdout),
            lab.dump_logs()
        );
    }
}

/// `tandemctl ARGS` must exit 0; its standard output.
fn ctl_ok(srv: &Tandemd, args: &[&str]) -> String {
    let out = srv.ctl(args);
    assert!(
        out.status.success(),
        "tandemctl {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A MAC (02:00:00:00:xx:yy) whose RFC 3074 bucket the primary serves under a 50 % split
/// (`primary`), or the secondary.
fn mac_for(primary: bool, skip: usize) -> String {
    let own = tandem_dataplane::hash::BucketMap::from_percent(50);
    (0u16..)
        .map(|n| [2u8, 0, 0, 0, (n >> 8) as u8, n as u8])
        .filter(|m| own.contains(tandem_dataplane::hash::bucket(m)) == primary)
        .nth(skip)
        .map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default()
}

/// Start a dhclient asking for the domain name, with MAC `mac`, in `ns`.
fn dhclient(lab: &Lab, ns: &Netns, name: &str, mac: &str) -> Client {
    ns.ip(&format!("link set eth1 address {mac}"));
    let opts = Opts {
        request: vec!["domain-name".into()],
        ..Opts::default()
    };
    Client::start(lab, ns, "eth1", Kind::Dhclient, name, &opts)
}

/// The last lease in a dhclient lease file: (server identifier, domain name).
fn last_lease(c: &Client) -> (String, String) {
    let text = std::fs::read_to_string(c.lease_file()).unwrap_or_default();
    let last = text
        .rsplit("lease {")
        .next()
        .unwrap_or_default()
        .to_string();
    let opt = |name: &str| {
        last.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("option {name} ")))
            .map(|v| v.trim_end_matches(';').trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (opt("dhcp-server-identifier"), opt("domain-name"))
}

/// The `config` TOML of scope `lan` on `srv` (without its `interface` line).
fn lan_config(srv: &Tandemd) -> String {
    let v = srv.ctl_json(&["scope", "show", "lan", "--json"]);
    v.get("config")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("scope show has no config: {v}"))
        .lines()
        .filter(|l| !l.trim_start().starts_with("interface"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn replication_overwrites_the_partner_and_reaches_clients() {
    let _cpu = cpu_exclusive();
    let range = ["10.79.1.0-10.79.1.200"];
    let mut o = ops(
        "opsrep",
        2,
        |lab| lan(&range, "before.example") + "\n" + &relationship(lab, "a"),
        |lab| lan(&range, "before.example") + "\n" + &relationship(lab, "b"),
    );
    let lab = &o.lab;
    wait_state(lab, &o.a, "NORMAL", Duration::from_secs(30));
    wait_state(lab, &o.b, "NORMAL", Duration::from_secs(30));

    // 1. Change the scope on A, replicate from A: B's file and B's clients get it.
    let changed = lan(&["10.79.1.0-10.79.1.200"], "from-a.example")
        + "\n[[scope.reservation]]\nmac = \"02:aa:00:00:00:01\"\naddress = \"10.79.9.9\"\n";
    let f = lab.write("lan-a.toml", &changed);
    ctl_ok(
        &o.a,
        &["scope", "set", "lan", "--file", &f.display().to_string()],
    );
    let r: Value =
        serde_json::from_str(&ctl_ok(&o.a, &["failover", "replicate", "pair", "--json"]))
            .expect("replicate --json");
    assert_eq!(r["partner"]["applied"], Value::Bool(true), "{r}");
    let b_file = std::fs::read_to_string(&o.b.config).expect("b config");
    assert!(b_file.contains("from-a.example"), "B's file:\n{b_file}");
    assert!(
        b_file.contains("10.79.9.9"),
        "B's file lacks the reservation:\n{b_file}"
    );
    assert_eq!(
        lan_config(&o.a),
        lan_config(&o.b),
        "B's scope differs from A's after replication"
    );
    let mut cb = dhclient(lab, &o.c_ns[0], "dhc-b", &mac_for(false, 0));
    cb.wait_bound(BIND);
    let (server_id, domain) = last_lease(&cb);
    assert_eq!(
        server_id, "10.79.0.3",
        "the client in B's buckets was served by {server_id}"
    );
    assert_eq!(domain, "from-a.example", "B served the old settings");

    // 2. Change it on B, replicate from B: A is overwritten and serves it.
    let changed_b = lan(&["10.79.1.0-10.79.1.220"], "from-b.example");
    let f = lab.write("lan-b.toml", &changed_b);
    ctl_ok(
        &o.b,
        &["scope", "set", "lan", "--file", &f.display().to_string()],
    );
    ctl_ok(&o.b, &["failover", "replicate", "pair", "--scope", "lan"]);
    let a_file = std::fs::read_to_string(&o.a.config).expect("a config");
    assert!(a_file.contains("from-b.example"), "A's file:\n{a_file}");
    assert!(
        !a_file.contains("10.79.9.9"),
        "A kept its own reservation:\n{a_file}"
    );
    assert!(
        a_file.contains("interface = \"eth1\""),
        "A lost its interface:\n{a_file}"
    );
    assert_eq!(
        lan_config(&o.a),
        lan_config(&o.b),
        "A's scope differs from B's"
    );
    let mut ca = dhclient(lab, &o.c_ns[1], "dhc-a", &mac_for(true, 0));
    ca.wait_bound(BIND);
    let (server_id, domain) = last_lease(&ca);
    assert_eq!(
        server_id, "10.79.0.2",
        "the client in A's buckets was served by {server_id}"
    );
    assert_eq!(domain, "from-b.example", "A served its old settings");

    // Leases are untouched by replication: both clients' leases are on both servers.
    wait_replicated(lab, &o.a, &o.b, "A's leases on B");
    wait_replicated(lab, &o.b, &o.a, "B's leases on A");
    check_tables_agree(&o.a, &o.b);
    check_client_leases(&[ca, cb]);

    // Metrics of the live pair, then the COMMUNICATIONS-INTERRUPTED alarm once B is gone.
    let scrape = |srv: &Tandemd| {
        let out = srv.ctl(&["metrics"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        metrics::parse_text(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let rel = ("relationship", "pair");
    let m = scrape(&o.a);
    assert_eq!(
        metrics::value(&m, "tandem_failover_state", &[rel, ("state", "NORMAL")]),
        Some(1.0)
    );
    assert_eq!(
        metrics::value(&m, "tandem_failover_connected", &[rel]),
        Some(1.0)
    );
    let lag = metrics::value(&m, "tandem_failover_replication_lag_seconds_count", &[rel]);
    assert!(
        lag.unwrap_or(0.0) >= 1.0,
        "no replication lag sample: {lag:?}"
    );
    assert_eq!(
        metrics::value(
            &m,
            "tandem_alarm_active",
            &[rel, ("alarm", "comm-interrupted")]
        ),
        Some(0.0)
    );
    o.b.kill9();
    wait_state(
        lab,
        &o.a,
        "COMMUNICATIONS-INTERRUPTED",
        Duration::from_secs(20),
    );
    let raised = poll(Duration::from_secs(20), || {
        let m = scrape(&o.a);
        (metrics::value(
            &m,
            "tandem_alarm_active",
            &[rel, ("alarm", "comm-interrupted")],
        ) == Some(1.0))
        .then_some(m)
    });
    let m = raised.unwrap_or_else(|| panic!("no comm-interrupted alarm\n{}", lab.dump_logs()));
    assert_eq!(
        metrics::value(
            &m,
            "tandem_failover_state",
            &[rel, ("state", "COMMUNICATIONS-INTERRUPTED")]
        ),
        Some(1.0)
    );
    let alarms = fo(&o.a)["alarms"].clone();
    assert!(
        alarms
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "comm-interrupted")),
        "failover show lists no alarm: {alarms}"
    );
    assert!(
        o.a.wait_log("comm-interrupted", Duration::from_secs(5)),
        "the alarm was not logged"
    );
}

/// Leases in `lo..=hi` among `leases`.
fn in_range(
    leases: &std::collections::BTreeMap<std::net::Ipv4Addr, harness::Lease>,
    lo: &str,
    hi: &str,
) -> usize {
    leases
        .keys()
        .filter(|a| harness::in_range(**a, lo, hi))
        .count()
}

#[test]
fn live_range_and_mode_change_under_load() {
    let _cpu = cpu_exclusive();
    let old = "10.79.1.0-10.79.2.87"; // 344 addresses
    let o = ops(
        "opslive",
        2,
        |lab| lan(&[old], "lab.example") + "\n" + &relationship(lab, "a"),
        |lab| lan(&[old], "lab.example") + "\n" + &relationship(lab, "b"),
    );
    let lab = &o.lab;
    wait_state(lab, &o.a, "NORMAL", Duration::from_secs(30));
    wait_state(lab, &o.b, "NORMAL", Duration::from_secs(30));
    let split = poll(Duration::from_secs(15), || {
        (fo(&o.b)["backup"].as_u64().unwrap_or(0) > 100).then_some(())
    });
    assert!(split.is_some(), "no BACKUP pool on B: {}", fo(&o.b));

    // Two real clients (30 s leases: they renew during the changes).
    let mut real = vec![
        dhclient(lab, &o.c_ns[0], "live-a", &mac_for(true, 3)),
        dhclient(lab, &o.c_ns[1], "live-b", &mac_for(false, 3)),
    ];
    let bound: Vec<_> = real.iter_mut().map(|c| c.wait_bound(BIND)).collect();

    // perfdhcp: 600 new clients at 40/s over 15 s, more than the old range holds.
    let new_range = "10.79.3.0-10.79.4.255";
    let (out, b_acks_at_switch, b_acks_end) = std::thread::scope(|s| {
        let load = s.spawn(|| perfdhcp(&o.p_ns, "eth1", 40, 600, 15, "00:0b:00:00:00:00"));
        std::thread::sleep(Duration::from_secs(4));
        // A range added on A and replicated to B, under load.
        let f = lab.write("lan-wider.toml", &lan(&[old, new_range], "lab.example"));
        ctl_ok(
            &o.a,
            &["scope", "set", "lan", "--file", &f.display().to_string()],
        );
        ctl_ok(&o.a, &["failover", "replicate", "pair"]);
        std::thread::sleep(Duration::from_secs(3));
        // Load balance → hot standby (A active), under load.
        ctl_ok(
            &o.a,
            &[
                "failover",
                "set",
                "pair",
                "--mode",
                "hot-standby",
                "--standby-role",
                "active",
                "--reserve",
                "5",
            ],
        );
        std::thread::sleep(Duration::from_secs(1));
        let at_switch = counter(&o.b.stats(), "ack");
        let out = load.join().expect("perfdhcp thread");
        (out, at_switch, counter(&o.b.stats(), "ack"))
    });
    let acks = acks_of(&out);
    let sent: u64 = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sent packets:"))
        .filter_map(|n| n.trim().parse().ok())
        .nth(1)
        .unwrap_or(0);
    println!("perfdhcp during the changes:\n{out}");
    assert!(sent > 0, "perfdhcp sent no REQUEST:\n{out}");
    assert_eq!(
        acks,
        sent,
        "REQUESTs without an ACK during the live changes:\n{out}\n{}",
        lab.dump_logs()
    );

    // The mode is in force on both servers and in both files; the standby stopped answering.
    let (fa, fb) = (fo(&o.a), fo(&o.b));
    assert_eq!(fa["mode_name"], "hot-standby", "{fa}");
    assert_eq!(fb["mode_name"], "hot-standby", "{fb}");
    assert_eq!(fa["hot_standby_role"], "active", "{fa}");
    assert_eq!(fb["hot_standby_role"], "standby", "{fb}");
    assert_eq!(
        b_acks_end, b_acks_at_switch,
        "the standby still answered new clients"
    );
    let b_file = std::fs::read_to_string(&o.b.config).expect("b config");
    assert!(
        b_file.contains(new_range) && b_file.contains("hot-standby"),
        "{b_file}"
    );

    // No lease lost: every perfdhcp ACK is a lease on both servers, some from the new range.
    wait_replicated(lab, &o.a, &o.b, "A's leases on B");
    wait_replicated(lab, &o.b, &o.a, "B's leases on A");
    check_tables_agree(&o.a, &o.b);
    let la = active(&o.a);
    assert!(
        la.len() as u64 >= acks,
        "{} active leases for {acks} ACKs",
        la.len()
    );
    assert!(
        in_range(&la, "10.79.3.0", "10.79.4.255") > 0,
        "nothing leased from the new range"
    );

    // The real clients kept their addresses through both changes and renewed.
    for (c, ip) in real.iter().zip(&bound) {
        let ev = c.events();
        assert!(
            ev.iter().any(|e| e.is_renew()),
            "{} did not renew: {ev:?}",
            c.mac
        );
        for e in &ev {
            assert!(
                e.ip.is_none_or(|a| a == *ip) && !matches!(e.reason.as_str(), "EXPIRE" | "FAIL"),
                "{} lost {ip}: {ev:?}",
                c.mac
            );
        }
    }
    check_client_leases(&real);
}

/// `curl` in `ns`: (HTTP status, body).
fn curl(ns: &Netns, method: &str, url: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut argv = vec![
        "curl",
        "-s",
        "-o",
        "/dev/stdout",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ];
    for h in headers {
        argv.push("-H");
        argv.push(h);
    }
    argv.extend_from_slice(&["--data-binary", body, url]);
    let out = ns.exec(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn relationship_lifecycle_from_the_cli() {
    let _cpu = cpu_exclusive();
    let spare = "[[scope]]\nname = \"spare\"\nsubnet = \"10.78.0.0/24\"\nranges = [\"10.78.0.10-10.78.0.20\"]\n";
    // The secret goes where both servers look for it: failover-pair.secret next to their
    // configuration files (both in the lab directory).
    let o = ops(
        "opslife",
        1,
        |lab| {
            private(lab, "failover-pair.secret", SECRET);
            lan(&["10.79.1.0-10.79.1.200"], "life.example")
        },
        |_| spare.to_string(),
    );
    let lab = &o.lab;

    // Unauthenticated and unsigned requests are refused.
    let (code, _) = curl(
        &o.a_ns,
        "POST",
        "http://10.79.0.2:9167/v1/failover",
        &[],
        "{}",
    );
    assert_eq!(code, 401, "POST /v1/failover without a token");

    // 1. failover add on A creates the relationship on B too, with scope lan.
    let out = ctl_ok(
        &o.a,
        &[
            "failover",
            "add",
            "pair",
            "--partner",
            "10.79.0.3",
            "--partner-admin",
            "10.79.0.3:9167",
            "--listen",
            "10.79.0.2",
            "--scopes",
            "lan",
            "--mode",
            "load-balance",
            "--percent",
            "60",
            "--mclt",
            "10s",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).expect("add --json");
    assert_eq!(v["partner"]["applied"], Value::Bool(true), "{v}");
    let b_file = std::fs::read_to_string(&o.b.config).expect("b config");
    assert!(b_file.contains("name = \"pair\""), "{b_file}");
    assert!(b_file.contains("role = \"secondary\""), "{b_file}");
    assert!(b_file.contains("load_balance_percent = 40"), "{b_file}");
    assert!(
        b_file.contains("name = \"lan\""),
        "B did not get the scope:\n{b_file}"
    );
    wait_state(lab, &o.a, "NORMAL", Duration::from_secs(30));
    wait_state(lab, &o.b, "NORMAL", Duration::from_secs(30));
    assert_eq!(fo(&o.a)["share_percent"], 60);
    assert_eq!(fo(&o.b)["share_percent"], 40);
    let mut c = dhclient(lab, &o.c_ns[0], "life", &mac_for(true, 7));
    let ip = c.wait_bound(BIND);
    wait_replicated(lab, &o.a, &o.b, "the client's lease on B");

    // Partner requests: unsigned, wrongly signed, from a stranger, another schema.
    let url = "http://10.79.0.3:9167/v1/peer/pair";
    let body = r#"{"schema":1,"version":"0","op":"remove","scopes":true}"#;
    let (code, text) = curl(&o.a_ns, "POST", url, &[], body);
    assert_eq!(code, 401, "unsigned: {text}");
    let now = pair_checks::now_secs();
    let bad = tandem_controlplane::admin::peer::sign(
        b"not the secret",
        "POST",
        "/v1/peer/pair",
        body.as_bytes(),
        now,
    );
    let (code, text) = curl(
        &o.a_ns,
        "POST",
        url,
        &[format!("X-Tandem-Peer: {bad}")],
        body,
    );
    assert_eq!(code, 401, "wrong secret: {text}");
    assert!(text.contains("signature"), "{text}");
    let good = tandem_controlplane::admin::peer::sign(
        SECRET.as_bytes(),
        "POST",
        "/v1/peer/pair",
        body.as_bytes(),
        now,
    );
    let (code, text) = curl(
        &o.p_ns,
        "POST",
        url,
        &[format!("X-Tandem-Peer: {good}")],
        body,
    );
    assert_eq!(code, 403, "from a stranger's address: {text}");
    let other = r#"{"schema":99,"version":"9.9","op":"remove","scopes":true}"#;
    let sig = tandem_controlplane::admin::peer::sign(
        SECRET.as_bytes(),
        "POST",
        "/v1/peer/pair",
        other.as_bytes(),
        now,
    );
    let (code, text) = curl(
        &o.a_ns,
        "POST",
        url,
        &[format!("X-Tandem-Peer: {sig}")],
        other,
    );
    assert_eq!(code, 409, "other schema: {text}");
    assert!(text.contains("schema"), "{text}");
    assert_eq!(state_of(&o.b), "NORMAL", "a refused request changed B");

    // 2. set: the split changes on both servers without dropping the link.
    let connected_since = fo(&o.a)["last_connected"].clone();
    ctl_ok(&o.a, &["failover", "set", "pair", "--percent", "30"]);
    assert_eq!(fo(&o.a)["share_percent"], 30);
    assert_eq!(fo(&o.b)["share_percent"], 70);
    assert_eq!(
        fo(&o.a)["last_connected"],
        connected_since,
        "the link was dropped"
    );
    let a_file = std::fs::read_to_string(&o.a.config).expect("a config");
    assert!(a_file.contains("load_balance_percent = 30"), "{a_file}");

    // The operator's view: state, time in it, pools per scope, last contact.
    let shown = ctl_ok(&o.a, &["failover", "show", "pair"]);
    for word in [
        "NORMAL",
        "FREE",
        "BACKUP",
        "ACTIVE",
        "EXPIRED",
        "last contact",
        "lan",
    ] {
        assert!(
            shown.contains(word),
            "`failover show` lacks {word:?}:\n{shown}"
        );
    }

    // Secret rotation: the new secret on both servers, then `set`; the link comes back.
    let rotated = private(
        lab,
        "failover-pair-2.secret",
        "the-rotated-secret-0123456789",
    );
    ctl_ok(
        &o.a,
        &[
            "failover",
            "set",
            "pair",
            "--secret-file",
            &rotated.display().to_string(),
        ],
    );
    for f in [&o.a.config, &o.b.config] {
        let text = std::fs::read_to_string(f).expect("config");
        assert!(text.contains("failover-pair-2.secret"), "{text}");
    }
    wait_state(lab, &o.a, "NORMAL", Duration::from_secs(30));
    wait_state(lab, &o.b, "NORMAL", Duration::from_secs(30));
    // Updates flow under the new secret: the client's next renewal reaches B (the restarted
    // relationship counts from zero).
    let flowed = poll(Duration::from_secs(40), || {
        (fo(&o.a)["updates_acked"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    assert!(
        flowed.is_some(),
        "no update acknowledged under the new secret\n{}",
        lab.dump_logs()
    );

    // 3. pause / resume on B.
    let out = ctl_ok(&o.b, &["failover", "pause", "pair"]);
    assert!(out.contains("PAUSED"), "{out}");
    wait_state(lab, &o.b, "PAUSED", Duration::from_secs(5));
    let again = o.b.ctl(&["failover", "pause", "pair"]);
    assert_eq!(again.status.code(), Some(1), "a second pause is refused");
    ctl_ok(&o.b, &["failover", "resume", "pair"]);
    wait_state(lab, &o.b, "NORMAL", Duration::from_secs(30));
    wait_state(lab, &o.a, "NORMAL", Duration::from_secs(30));

    // 4. remove: B drops the relationship and its copy of lan; A serves lan alone.
    ctl_ok(&o.a, &["failover", "remove", "pair"]);
    let b_file = std::fs::read_to_string(&o.b.config).expect("b config");
    assert!(!b_file.contains("[[failover]]"), "{b_file}");
    assert!(!b_file.contains("name = \"lan\""), "{b_file}");
    assert_eq!(
        o.a.ctl(&["failover", "show", "pair"]).status.code(),
        Some(1)
    );
    let before = c.events().len();
    let renewed = poll(Duration::from_secs(30), || {
        c.events()[before..].iter().find(|e| e.is_renew()).cloned()
    });
    let e = renewed.unwrap_or_else(|| panic!("no renewal after the removal\n{}", lab.dump_logs()));
    assert_eq!(e.ip, Some(ip), "the client changed address");
    assert!(o.b.ctl(&["failover", "show"]).status.success());
    check_client_leases(&[c]);
}
