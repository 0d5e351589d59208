//! Dynamic DNS end to end: `tandemd` with `[[ddns]]`, real DHCP clients (ISC dhclient sending a
//! host name or a client FQDN option) and BIND 9 from Debian taking the updates, each in network
//! namespaces the test makes (`tdm-<pid>-<test>-<role>`, removed on drop, also on failure).
//!
//! BIND serves a forward zone `tdm.test` and the reverse zone of the scope, accepts updates
//! signed with a key made by `tsig-keygen`, and is queried with `dig` inside its namespace: what
//! the tests assert is what DNS answers. The tests need root and the packages of
//! `deploy/install-deps.sh` (bind9, bind9-dnsutils, isc-dhcp-client); without them they fail
//! saying which (they never skip).

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "netns/pair_checks.rs"]
mod pair_checks;

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use clients::{Client, Kind, Opts};
use harness::{bridge, cpu_shared, poll, run_ok, veth, Lab, Netns, Proc, Tandemd};

const BIND_TIMEOUT: Duration = Duration::from_secs(40);
const ZONE: &str = "tdm.test";

/// BIND 9 in a namespace, listening on `listen`:53, with the forward zone `tdm.test` and the
/// reverse zone `reverse`, both updatable with the key `tandem-ddns` (its file: `key_file`).
struct Bind {
    proc: Proc,
    ns: String,
    listen: String,
    /// The key file for tandemd (mode 600).
    key_file: PathBuf,
}

impl Bind {
    fn start(lab: &Lab, ns: &Netns, listen: &str, reverse: &str) -> Bind {
        let dir = lab.path("bind");
        fs::create_dir_all(&dir).expect("bind dir");
        let key = run_ok(&["tsig-keygen", "-a", "hmac-sha256", "tandem-ddns"]);
        let key_file = dir.join("tandem-ddns.key");
        fs::write(&key_file, &key).expect("key file");
        fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("chmod key");
        let soa = format!(
            "$TTL 300\n@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300\n@ IN NS ns.{ZONE}.\n"
        );
        fs::write(dir.join("forward.zone"), format!("{soa}ns IN A {listen}\n")).unwrap();
        fs::write(dir.join("reverse.zone"), &soa).unwrap();
        let d = dir.display();
        let conf = format!(
            "include \"{k}\";\noptions {{\n directory \"{d}\";\n pid-file none;\n session-keyfile none;\n \
             managed-keys-directory \"{d}\";\n listen-on port 53 {{ {listen}; }};\n listen-on-v6 {{ none; }};\n \
             recursion no;\n dnssec-validation no;\n notify no;\n}};\n\
             zone \"{ZONE}\" {{ type primary; file \"{d}/forward.zone\"; allow-update {{ key \"tandem-ddns\"; }}; }};\n\
             zone \"{reverse}\" {{ type primary; file \"{d}/reverse.zone\"; allow-update {{ key \"tandem-ddns\"; }}; }};\n",
            k = key_file.display()
        );
        let conf_path = dir.join("named.conf");
        fs::write(&conf_path, conf).unwrap();
        let c = conf_path.display().to_string();
        let proc = ns.spawn(
            lab,
            "named",
            &["named", "-g", "-c", &c, "-u", "root", "-n", "1"],
        );
        let b = Bind {
            proc,
            ns: ns.name.clone(),
            listen: listen.to_string(),
            key_file,
        };
        let ready = poll(Duration::from_secs(20), || {
            (!b.dig(ZONE, "SOA").is_empty()).then_some(())
        });
        assert!(
            ready.is_some(),
            "named did not answer:\n{}",
            b.proc.log_text()
        );
        b
    }

    /// `dig +short` inside the namespace: the answer lines.
    fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args([
                "--",
                "dig",
                &format!("@{}", self.listen),
                "+short",
                "+norecurse",
            ])
            .args(["+time=1", "+tries=1", name, rtype])
            .output()
            .expect("dig (bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_string)
            .collect()
    }

    /// The A answer for `host` (in tdm.test).
    fn a(&self, host: &str) -> Vec<String> {
        self.dig(&format!("{host}.{ZONE}"), "A")
    }

    /// The PTR answer for `addr`.
    fn ptr(&self, addr: Ipv4Addr) -> Vec<String> {
        let o = addr.octets();
        self.dig(
            &format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]),
            "PTR",
        )
    }

    /// Wait until `f` holds for the DNS answers; panic with `what`, the answers and the server.
    fn wait(&self, what: &str, srv: &Tandemd, timeout: Duration, f: impl Fn(&Bind) -> bool) {
        if poll(timeout, || f(self).then_some(())).is_none() {
            panic!(
                "{what} within {timeout:?}\nddns status: {}\ntandemd log:\n{}\nnamed log:\n{}",
                srv.ctl_json(&["ddns", "status", "--json"]),
                srv.log_text(),
                self.proc.log_text()
            );
        }
    }
}

/// The `[[ddns]]` table for `bind`'s zones.
fn ddns_table(bind: &Bind, scope: &str, extra: &str) -> String {
    format!(
        "\n[[ddns]]\nscopes = [\"{scope}\"]\ndomain = \"{ZONE}\"\nservers = [\"{}\"]\nkey_file = \"{}\"\n{extra}",
        bind.listen,
        bind.key_file.display()
    )
}

/// A counter of `tandemctl ddns status --json`: `path` like `["updates", "add"]`.
fn status_count(srv: &Tandemd, path: &[&str]) -> u64 {
    let v = srv.ctl_json(&["ddns", "status", "--json"]);
    let mut x = &v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64().unwrap_or(0)
}

fn host(name: &str) -> Opts {
    Opts {
        host_name: Some(name.into()),
        ..Opts::default()
    }
}

/// One server, three dhclients on one segment: a host name gets A and PTR; a client FQDN gets
/// them too and RELEASE removes them; a second client claiming a taken name is refused by the
/// DHCID check (its lease is granted, the first client's records stay); the first client's
/// lease runs out and its records go.
#[test]
fn ddns_dhclient_gets_a_and_ptr_release_and_expiry_remove_them_dhcid_refuses_a_taker() {
    let _cpu = cpu_shared();
    let lab = Lab::new("ddns1");
    let s = lab.netns("s");
    let cns: Vec<Netns> = (0..3).map(|i| lab.netns(&format!("c{i}"))).collect();
    for (i, c) in cns.iter().enumerate() {
        veth(c, "eth1", &s, &format!("tdmd{i}"));
    }
    bridge(&s, "br0", &["tdmd0", "tdmd1", "tdmd2"]);
    s.addr("br0", "10.78.0.1/24");
    s.up("lo");
    let bind = Bind::start(&lab, &s, "127.0.0.1", "0.78.10.in-addr.arpa");
    let cfg = Tandemd::server_section(&lab, "10.78.0.1", &["br0"])
        + "\n[[scope]]\nname = \"lan\"\nsubnet = \"10.78.0.0/24\"\ninterface = \"br0\"\n\
           ranges = [\"10.78.0.100-10.78.0.150\"]\nlease_time = \"20s\"\nauthoritative = true\n"
        + &ddns_table(&bind, "lan", "ttl = 60\n");
    let mut srv = Tandemd::start(&lab, &s, &cfg);

    // A host name (option 12): A, PTR and DHCID.
    let mut alpha = Client::start(
        &lab,
        &cns[0],
        "eth1",
        Kind::Dhclient,
        "alpha",
        &host("alpha"),
    );
    let ip1 = alpha.wait_bound(BIND_TIMEOUT);
    bind.wait("alpha's A and PTR", &srv, Duration::from_secs(10), |b| {
        b.a("alpha") == [ip1.to_string()] && b.ptr(ip1) == ["alpha.tdm.test."]
    });
    assert_eq!(
        bind.dig("alpha.tdm.test", "DHCID").len(),
        1,
        "one DHCID record"
    );

    // A client FQDN (option 81, S set): A and PTR; RELEASE removes both.
    let fq = Opts {
        fqdn: Some("beta.tdm.test.".into()),
        ..Opts::default()
    };
    let mut beta = Client::start(&lab, &cns[1], "eth1", Kind::Dhclient, "beta", &fq);
    let ip2 = beta.wait_bound(BIND_TIMEOUT);
    bind.wait("beta's A and PTR", &srv, Duration::from_secs(10), |b| {
        b.a("beta") == [ip2.to_string()] && b.ptr(ip2) == ["beta.tdm.test."]
    });
    beta.release(&cns[1], &lab);
    bind.wait(
        "beta's records removed after RELEASE",
        &srv,
        Duration::from_secs(10),
        |b| {
            b.a("beta").is_empty()
                && b.ptr(ip2).is_empty()
                && b.dig("beta.tdm.test", "DHCID").is_empty()
        },
    );

    // Another client claims "alpha": leased, but the DHCID check leaves alpha's records alone.
    let mut taker = Client::start(
        &lab,
        &cns[2],
        "eth1",
        Kind::Dhclient,
        "taker",
        &host("alpha"),
    );
    let ip3 = taker.wait_bound(BIND_TIMEOUT);
    assert_ne!(ip3, ip1);
    let conflicts = poll(Duration::from_secs(10), || {
        let n = status_count(&srv, &["conflicts"]);
        (n >= 1).then_some(n)
    });
    assert!(
        conflicts.is_some(),
        "no conflict counted: {}",
        srv.ctl_json(&["ddns", "status", "--json"])
    );
    assert_eq!(
        bind.a("alpha"),
        [ip1.to_string()],
        "the first client keeps its name"
    );
    assert!(bind.ptr(ip3).is_empty(), "no PTR for the refused client");
    taker.release(&cns[2], &lab);

    // alpha vanishes without a RELEASE: its lease (20 s) runs out and the records go with it.
    drop(alpha);
    bind.wait(
        "alpha's records removed at expiry",
        &srv,
        Duration::from_secs(40),
        |b| b.a("alpha").is_empty() && b.ptr(ip1).is_empty(),
    );
    let text = String::from_utf8_lossy(&srv.ctl(&["ddns", "status"]).stdout).into_owned();
    assert!(
        text.contains("lan"),
        "tandemctl ddns status names the scope:\n{text}"
    );
    let metrics = String::from_utf8_lossy(&srv.ctl(&["metrics"]).stdout).into_owned();
    assert!(
        metrics.contains("tandem_ddns_"),
        "no tandem_ddns_ metrics:\n{metrics}"
    );
    srv.stop();
}

/// DNS down: leases are served at once, the updates wait and are applied when BIND answers
/// again. A wrong key: the failure is counted with its reason, leases are unaffected.
#[test]
fn ddns_dns_down_queues_updates_and_a_wrong_key_is_counted() {
    let _cpu = cpu_shared();
    let lab = Lab::new("ddns2");
    let s = lab.netns("s");
    let cns: Vec<Netns> = (0..2).map(|i| lab.netns(&format!("c{i}"))).collect();
    for (i, c) in cns.iter().enumerate() {
        veth(c, "eth1", &s, &format!("tdme{i}"));
    }
    bridge(&s, "br0", &["tdme0", "tdme1"]);
    s.addr("br0", "10.78.1.1/24");
    s.up("lo");
    let mut bind = Bind::start(&lab, &s, "127.0.0.1", "1.78.10.in-addr.arpa");
    let scope = "\n[[scope]]\nname = \"lan\"\nsubnet = \"10.78.1.0/24\"\ninterface = \"br0\"\n\
                 ranges = [\"10.78.1.100-10.78.1.150\"]\nlease_time = \"1h\"\nauthoritative = true\n";
    let cfg = Tandemd::server_section(&lab, "10.78.1.1", &["br0"])
        + scope
        + &ddns_table(&bind, "lan", "");
    let mut srv = Tandemd::start(&lab, &s, &cfg);

    // BIND stopped (SIGSTOP: it answers nothing): the lease comes at once, the update waits.
    bind.proc.signal("STOP");
    let mut gamma = Client::start(
        &lab,
        &cns[0],
        "eth1",
        Kind::Dhclient,
        "gamma",
        &host("gamma"),
    );
    let ip = gamma.wait_bound(Duration::from_secs(15));
    let waited = poll(Duration::from_secs(15), || {
        (status_count(&srv, &["failures", "timeout"]) >= 1).then_some(())
    });
    assert!(
        waited.is_some(),
        "no timeout counted while DNS was down: {}",
        srv.ctl_json(&["ddns", "status", "--json"])
    );
    assert!(
        status_count(&srv, &["queue_depth"]) >= 1,
        "the update is queued"
    );
    bind.proc.signal("CONT");
    bind.wait(
        "gamma's records after DNS came back",
        &srv,
        Duration::from_secs(40),
        |b| b.a("gamma") == [ip.to_string()] && b.ptr(ip) == ["gamma.tdm.test."],
    );

    // A wrong key (same name, another secret): BADSIG from BIND, counted; the lease is granted.
    let wrong = lab.path("wrong.key");
    fs::write(
        &wrong,
        "key \"tandem-ddns\" {\n\talgorithm hmac-sha256;\n\tsecret \"d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=\";\n};\n",
    )
    .unwrap();
    fs::set_permissions(&wrong, fs::Permissions::from_mode(0o600)).unwrap();
    let cfg2 = cfg.replace(
        &bind.key_file.display().to_string(),
        &wrong.display().to_string(),
    );
    fs::write(&srv.config, &cfg2).unwrap();
    srv.signal("HUP");
    assert!(
        srv.wait_log("dynamic DNS settings changed", Duration::from_secs(10)),
        "no reload:\n{}",
        srv.log_text()
    );
    let mut delta = Client::start(
        &lab,
        &cns[1],
        "eth1",
        Kind::Dhclient,
        "delta",
        &host("delta"),
    );
    let ip2 = delta.wait_bound(Duration::from_secs(15));
    let bad = poll(Duration::from_secs(15), || {
        let v = srv.ctl_json(&["ddns", "status", "--json"]);
        let f = &v["failures"];
        let n = f["badsig"].as_u64().unwrap_or(0) + f["badkey"].as_u64().unwrap_or(0);
        (n >= 1).then_some(())
    });
    assert!(
        bad.is_some(),
        "no key failure counted: {}",
        srv.ctl_json(&["ddns", "status", "--json"])
    );
    assert!(bind.a("delta").is_empty() && bind.ptr(ip2).is_empty());
    assert_eq!(
        bind.a("gamma"),
        [ip.to_string()],
        "earlier records untouched"
    );
    drop(gamma);
    drop(delta);
    srv.stop();
}

/// The config of pair member `me` (A at .2, the active of a hot-standby pair; B at .3) with
/// `[[ddns]]` for `bind`.
fn pair_config(lab: &Lab, me: &str, bind: &Bind) -> String {
    let (id, partner, role, hs) = match me {
        "a" => ("10.79.0.2", "10.79.0.3", "primary", "active"),
        _ => ("10.79.0.3", "10.79.0.2", "secondary", "standby"),
    };
    format!(
        "{}\n[[scope]]\nname = \"lan\"\nsubnet = \"10.79.0.0/24\"\ninterface = \"eth1\"\n\
         ranges = [\"10.79.0.10-10.79.0.250\"]\nlease_time = \"30s\"\nauthoritative = true\n\n\
         [[failover]]\nname = \"pair\"\nrole = \"{role}\"\npartner = \"{partner}\"\nlisten = \"{id}\"\n\
         mclt = \"10s\"\nmax_response_delay = \"5s\"\nstartup_wait = \"2s\"\nmax_clock_skew = \"2s\"\n\
         mode = \"hot-standby\"\nhot_standby_role = \"{hs}\"\nreserve_percent = 20\n\
         scopes = [\"lan\"]\n{}",
        Tandemd::server_section_named(lab, me, id, &["eth1"]),
        ddns_table(bind, "lan", "ttl = 30\n"),
    )
}

fn fo_state(srv: &Tandemd) -> String {
    srv.ctl_json(&["failover", "show", "pair", "--json"])["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// A failover pair shares the names: the active server A grants a lease and publishes the
/// client's records; the name reaches B in the binding update. A is killed with `kill -9` (and
/// the client vanishes with it), B is put in PARTNER-DOWN, the lease runs out on B, and B removes
/// the records with the same key.
#[test]
fn ddns_pair_survivor_removes_the_names_of_a_killed_partner() {
    let _cpu = cpu_shared();
    let lab = Lab::new("ddnsp");
    let net = pair_checks::pair_net(&lab, 1, "tdmq", 24);
    net.p.up("lo");
    let bind = Bind::start(&lab, &net.p, "10.79.0.254", "0.79.10.in-addr.arpa");
    let mut a = Tandemd::start_named(&lab, &net.a, "a", &pair_config(&lab, "a", &bind), &[]);
    let mut b = Tandemd::start_named(&lab, &net.b, "b", &pair_config(&lab, "b", &bind), &[]);
    let normal = poll(Duration::from_secs(30), || {
        (fo_state(&a) == "NORMAL" && fo_state(&b) == "NORMAL").then_some(())
    });
    assert!(normal.is_some(), "pair not NORMAL:\n{}", lab.dump_logs());

    let mut omega = Client::start(
        &lab,
        &net.c[0],
        "eth1",
        Kind::Dhclient,
        "omega",
        &host("omega"),
    );
    let ip = omega.wait_bound(BIND_TIMEOUT);
    bind.wait(
        "omega's A and PTR (published by A)",
        &a,
        Duration::from_secs(15),
        |x| x.a("omega") == [ip.to_string()] && x.ptr(ip) == ["omega.tdm.test."],
    );
    // B learns the name from A's binding update.
    let on_b = poll(Duration::from_secs(20), || {
        let v = b.ctl_json(&["ddns", "status", "--json"]);
        v["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["addr"] == ip.to_string() && e["fqdn"] == "omega.tdm.test")
            .then_some(())
    });
    assert!(
        on_b.is_some(),
        "B does not know omega's name: {}\n{}",
        b.ctl_json(&["ddns", "status", "--json"]),
        lab.dump_logs()
    );
    // One renewal first, so the lease is the full 30 s rather than MCLT-capped.
    omega.wait_renewed(Duration::from_secs(30));
    drop(omega);
    a.kill9();
    let interrupted = poll(Duration::from_secs(20), || {
        (fo_state(&b) == "COMMUNICATIONS-INTERRUPTED").then_some(())
    });
    assert!(
        interrupted.is_some(),
        "B never noticed:\n{}",
        lab.dump_logs()
    );
    let out = b.ctl(&["failover", "partner-down", "pair"]);
    assert!(out.status.success(), "partner-down: {out:?}");
    bind.wait(
        "omega's records removed by B after expiry",
        &b,
        Duration::from_secs(90),
        |x| x.a("omega").is_empty() && x.ptr(ip).is_empty(),
    );
    b.stop();
}
