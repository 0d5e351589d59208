//! Two `tandemd` partners in network namespaces, with real clients (ISC dhclient, dhcpcd, busybox
//! udhcpc) and perfdhcp for volume, through a whole failover cycle:
//!
//! NORMAL (clients split by RFC 3074 bucket, every lease on both servers) → `kill -9` of one
//! partner (the other serves everyone, with leases capped at MCLT) → PARTNER-DOWN (by the
//! operator, or after the state switchover interval) → the partner's free addresses are used
//! after MCLT → the dead partner restarts, recovers, and both return to NORMAL. Throughout, a
//! checker verifies that no address was ever held by two clients, from the clients' own event
//! logs and from both servers' lease tables.
//!
//! Both modes: load balance (manual partner-down) and hot standby (automatic partner-down,
//! reserve pool), each with two UDP workers per partner (requests steered to the worker owning
//! their client by the SO_REUSEPORT program) and with two AF_XDP workers per partner on
//! two-queue links (handoffs between the workers, the partner's clients dropped in the kernel).
//! The tests need root and the tools of `deploy/install-deps.sh`; without them
//! they fail saying so (they never skip). Namespaces are `tdm-<pid>-<test>-<role>` and are
//! removed on drop, also on failure.

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "netns/pair_checks.rs"]
mod pair_checks;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use clients::{Client, Kind, Opts};
use harness::{bridge, counter, cpu_exclusive, perfdhcp, poll, veth, Lab, Netns, Tandemd};
use pair_checks::{
    acks_of, active, check_client_leases, check_tables_agree, now_secs, pair_net_queues,
    wait_replicated, PairNet,
};
use serde_json::Value;

const BIND_TIMEOUT: Duration = Duration::from_secs(40);
const MCLT: u64 = 10;
const RANGE: (&str, &str) = ("10.79.0.10", "10.79.0.250");

/// Which failover mode a test runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum TestMode {
    LoadBalance,
    /// A is active, B the standby; automatic partner-down after the switchover interval.
    HotStandby,
}

/// How a test's servers receive DHCP.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Plane {
    /// The kernel UDP backend, two workers (cores 0 and 1) steered by SO_REUSEPORT.
    Udp,
    /// Two AF_XDP workers (cores 0 and 1), one per receive queue of a two-queue veth.
    XdpTwoWorkers,
}

/// The config of server `me` (A primary at .2, B secondary at .3).
fn config(lab: &Lab, me: &str, mode: TestMode, direct: bool, plane: Plane) -> String {
    let (id, mut listen, mut partner, role) = match me {
        "a" => ("10.79.0.2", "10.79.0.2", "10.79.0.3", "primary"),
        _ => ("10.79.0.3", "10.79.0.3", "10.79.0.2", "secondary"),
    };
    if direct {
        // The failover link runs over its own veth pair (`tdmfoa`/`tdmfob`, 10.89.0.0/30).
        (listen, partner) = match me {
            "a" => ("10.89.0.1", "10.89.0.2"),
            _ => ("10.89.0.2", "10.89.0.1"),
        };
    }
    let mode_keys = match mode {
        TestMode::LoadBalance => "mode = \"load-balance\"\nload_balance_percent = 50\n".to_string(),
        TestMode::HotStandby => format!(
            "mode = \"hot-standby\"\nhot_standby_role = \"{}\"\nreserve_percent = 20\n\
             state_switchover_interval = \"12s\"\nmax_clock_skew = \"2s\"\n",
            if me == "a" { "active" } else { "standby" }
        ),
    };
    let dataplane = match plane {
        Plane::Udp => "\n[dataplane]\ncores = [0, 1]\n",
        Plane::XdpTwoWorkers => {
            "\n[dataplane]\nbackend = \"xdp\"\nxdp_mode = \"native\"\ncores = [0, 1]\n"
        }
    };
    format!(
        "{}{dataplane}\n[[scope]]\nname = \"lan\"\nsubnet = \"10.79.0.0/24\"\ninterface = \"eth1\"\n\
         ranges = [\"{}-{}\"]\nlease_time = \"30s\"\nauthoritative = true\n\
         [scope.options]\nrouters = [\"10.79.0.1\"]\n\n\
         [[failover]]\nname = \"pair\"\nrole = \"{role}\"\npartner = \"{partner}\"\nlisten = \"{listen}\"\n\
         mclt = \"{MCLT}s\"\nmax_response_delay = \"5s\"\nstartup_wait = \"2s\"\n{mode_keys}\
         scopes = [\"lan\"]\n",
        Tandemd::server_section_named(lab, me, id, &["eth1"]),
        RANGE.0,
        RANGE.1,
    )
}

/// The failover status of `srv` (`tandemctl failover show pair --json`).
fn fo(srv: &Tandemd) -> Value {
    srv.ctl_json(&["failover", "show", "pair", "--json"])
}

fn state_of(srv: &Tandemd) -> String {
    fo(srv)
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// Wait until `srv` is in `state`; panic with both logs otherwise.
fn wait_state(lab: &Lab, srv: &Tandemd, state: &str, timeout: Duration) {
    if poll(timeout, || (state_of(srv) == state).then_some(())).is_none() {
        panic!(
            "not in {state} after {timeout:?}: {}\n{}",
            fo(srv),
            lab.dump_logs()
        );
    }
}

struct Pair {
    lab: Lab,
    a_ns: Netns,
    /// One namespace per real client (interface `eth1`).
    c_ns: Vec<Netns>,
    /// perfdhcp's namespace (interface `eth1`, 10.79.0.254).
    p_ns: Netns,
    _sw: Netns,
    _b_ns: Netns,
    a: Tandemd,
    b: Tandemd,
}

/// A switch namespace with a bridge; A, B, perfdhcp's namespace and one namespace per client
/// joined to it (their side is `eth1`); with the failover link on a direct veth pair
/// (`tdmfoa`/`tdmfob`) between A and B when `direct`.
fn pair_with(tag: &str, mode: TestMode, clients: usize, direct: bool, plane: Plane) -> Pair {
    let lab = Lab::new(tag);
    let queues = match plane {
        Plane::Udp => 1,
        Plane::XdpTwoWorkers => 2,
    };
    let PairNet {
        sw,
        a: a_ns,
        b: b_ns,
        p: p_ns,
        c: c_ns,
    } = pair_net_queues(&lab, clients, "tdmp", 24, queues);
    if direct {
        veth(&a_ns, "tdmfoa", &b_ns, "tdmfob");
        a_ns.addr("tdmfoa", "10.89.0.1/30");
        b_ns.addr("tdmfob", "10.89.0.2/30");
    }
    let a = Tandemd::start_named(
        &lab,
        &a_ns,
        "a",
        &config(&lab, "a", mode, direct, plane),
        &[],
    );
    let b = Tandemd::start_named(
        &lab,
        &b_ns,
        "b",
        &config(&lab, "b", mode, direct, plane),
        &[],
    );
    Pair {
        lab,
        a_ns,
        c_ns,
        p_ns,
        _sw: sw,
        _b_ns: b_ns,
        a,
        b,
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// `xdp.<name>` of a server's stats.
fn xdp(stats: &Value, name: &str) -> u64 {
    stats["xdp"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats have no xdp.{name}: {stats}"))
}

/// `workers[k].<name>` of a server's stats.
fn per_worker(stats: &Value, k: usize, name: &str) -> u64 {
    stats["workers"][k][name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats have no workers[{k}].{name}: {stats}"))
}

fn run_cycle(tag: &str, mode: TestMode, plane: Plane) {
    let _cpu = cpu_exclusive();
    let mut p = pair_with(tag, mode, 4, false, plane);
    let lab = &p.lab;
    let needles: &[&str] = match plane {
        Plane::XdpTwoWorkers => &["AF_XDP worker pinned", "core=1", "queue=1"],
        Plane::Udp => &[
            "UDP worker pinned",
            "core=1",
            "UDP requests steered to the worker owning their client",
        ],
    };
    for srv in [&p.a, &p.b] {
        let log = srv.log_text();
        for needle in needles {
            assert!(log.contains(needle), "no {needle:?} in the log:\n{log}");
        }
    }
    // 1. Bring-up: both reach NORMAL, the primary hands the secondary its share of the pool.
    wait_state(lab, &p.a, "NORMAL", Duration::from_secs(20));
    wait_state(lab, &p.b, "NORMAL", Duration::from_secs(20));
    let pools_split = poll(Duration::from_secs(10), || {
        let (fa, fb) = (fo(&p.a), fo(&p.b));
        (u(&fa, "backup") > 0 && u(&fb, "backup") == u(&fa, "backup")).then_some(u(&fa, "backup"))
    });
    let backup =
        pools_split.unwrap_or_else(|| panic!("no BACKUP pool after bring-up\n{}", lab.dump_logs()));
    let total = 241u64;
    let want = match mode {
        TestMode::LoadBalance => total / 2,
        TestMode::HotStandby => total * 20 / 100,
    };
    assert!(
        backup.abs_diff(want) <= total / 20 + 1,
        "BACKUP pool {backup}, expected about {want}"
    );

    // 2. Volume: 60 perfdhcp clients. Load balance splits them by bucket; hot standby has A
    //    answer all. Every lease ends up on both servers.
    let out = perfdhcp(&p.p_ns, "eth1", 30, 60, 4, "00:0a:00:00:00:00");
    let (sa, sb) = (p.a.stats(), p.b.stats());
    let (acks_a, acks_b) = (counter(&sa, "ack"), counter(&sb, "ack"));
    assert!(
        acks_a + acks_b >= 55,
        "perfdhcp got {acks_a}+{acks_b} ACKs for 60 clients:\n{out}"
    );
    match mode {
        TestMode::LoadBalance => {
            let share = acks_a * 100 / (acks_a + acks_b);
            assert!(
                (20..=80).contains(&share),
                "load balance 50/50 gave A {share}% of the ACKs ({acks_a} vs {acks_b})"
            );
        }
        TestMode::HotStandby => {
            assert_eq!(acks_b, 0, "the standby answered in NORMAL");
        }
    }
    wait_replicated(lab, &p.a, &p.b, "A's perfdhcp leases on B");
    wait_replicated(lab, &p.b, &p.a, "B's perfdhcp leases on A");
    check_tables_agree(&p.a, &p.b);
    let answering: &[&Tandemd] = match mode {
        TestMode::LoadBalance => &[&p.a, &p.b],
        TestMode::HotStandby => &[&p.a],
    };
    for srv in answering {
        // Both workers of each answering server granted leases (perfdhcp's 60 clients hash
        // to both).
        let st = srv.stats();
        for k in 0..2 {
            assert!(
                per_worker(&st, k, "ack") > 0,
                "worker {k} granted nothing: {st}"
            );
        }
    }
    if plane == Plane::Udp {
        // The kernel put every request on the socket of the worker owning its client (the
        // socket filters for broadcasts, the reuseport program for unicast): none needed
        // handing on in user space, and each broadcast was kept by one socket of two.
        for srv in [&p.a, &p.b] {
            let st = srv.stats();
            let udp = &st["udp"];
            let steer = &udp["steering"]["eth1"];
            let n = |k: &str| steer[k].as_u64().unwrap_or(0);
            assert_eq!(udp["steered_in_kernel"], Value::Bool(true), "{st}");
            assert!(n("filter_accepted") >= 120, "{st}");
            assert_eq!(n("unknown_key") + n("no_socket"), 0, "{st}");
            assert!(n("filter_other_worker") >= 120, "{st}");
            assert_eq!(udp["handoff_out"].as_u64(), Some(0), "{st}");
            assert_eq!(udp["handoff_full"].as_u64(), Some(0), "{st}");
        }
    }
    if plane == Plane::XdpTwoWorkers {
        // Broadcasts arrive on one queue, so the other worker's clients were handed to it,
        // and every handed frame was answered. The kernel dropped the partner's clients
        // before any worker saw them.
        for srv in answering {
            let st = srv.stats();
            assert!(
                xdp(&st, "handoff_out") > 0,
                "no handoff between workers: {st}"
            );
            assert_eq!(xdp(&st, "handoff_in"), xdp(&st, "handoff_out"), "{st}");
            assert_eq!(xdp(&st, "handoff_full"), 0, "{st}");
        }
        for srv in [&p.a, &p.b] {
            let st = srv.stats();
            if mode == TestMode::LoadBalance || std::ptr::eq(srv, &p.b) {
                assert!(xdp(&st, "partner_drop") > 0, "no partner drop in XDP: {st}");
            }
        }
    }

    // 3. Real clients: two dhclient, one dhcpcd, one udhcpc.
    let kinds = [Kind::Dhclient, Kind::Dhcpcd, Kind::Udhcpc, Kind::Dhclient];
    let mut clients: Vec<Client> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Client::start(
                lab,
                &p.c_ns[i],
                "eth1",
                *k,
                &format!("{}{i}", k.name()),
                &Opts::default(),
            )
        })
        .collect();
    let mut addrs = Vec::new();
    for c in clients.iter_mut() {
        addrs.push(c.wait_bound(BIND_TIMEOUT));
    }
    let distinct: BTreeSet<_> = addrs.iter().collect();
    assert_eq!(
        distinct.len(),
        addrs.len(),
        "two clients got one address: {addrs:?}"
    );
    wait_replicated(lab, &p.a, &p.b, "clients' leases on B");
    wait_replicated(lab, &p.b, &p.a, "clients' leases on A");
    for a in &addrs {
        for srv in [&p.a, &p.b] {
            assert!(
                srv.lease(*a).is_some_and(|l| l.state == "active"),
                "{a} not active on both servers"
            );
        }
    }

    // 4. kill -9 A: B serves everyone; clients keep their addresses with MCLT-capped leases.
    let killed_at = now_secs();
    p.a.kill9();
    wait_state(
        lab,
        &p.b,
        "COMMUNICATIONS-INTERRUPTED",
        Duration::from_secs(10),
    );
    // Every client extends its lease through B (those of A's buckets by rebinding).
    for (c, a) in clients.iter().zip(&addrs) {
        let ok = poll(Duration::from_secs(45), || {
            c.events()
                .iter()
                .any(|e| e.t > killed_at + 1 && e.is_renew() && e.ip == Some(*a))
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "{} did not keep {a} through B after the crash: {:?}\n{}",
            c.mac,
            c.events(),
            lab.dump_logs()
        );
    }
    let cut = now_secs();
    for l in active(&p.b).values() {
        if l.start >= cut.saturating_sub(20) && l.start > killed_at + 1 {
            assert!(
                l.expires.saturating_sub(l.start) <= MCLT + 1,
                "B gave {} a {} s lease while the partner was unreachable (MCLT {MCLT} s)",
                l.address,
                l.expires - l.start
            );
        }
    }

    // 5. Partner-down (manual for load balance, automatic after the switchover interval for hot
    //    standby), then, after MCLT, B hands out A's free addresses too.
    match mode {
        TestMode::LoadBalance => {
            let out = p.b.ctl(&["failover", "partner-down", "pair"]);
            assert!(
                out.status.success(),
                "partner-down refused: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            wait_state(lab, &p.b, "PARTNER-DOWN", Duration::from_secs(5));
        }
        TestMode::HotStandby => {
            wait_state(lab, &p.b, "PARTNER-DOWN", Duration::from_secs(40));
        }
    }
    let takeover = u(&fo(&p.b), "takeover_at");
    assert!(
        takeover > 0,
        "no takeover time in PARTNER-DOWN: {}",
        fo(&p.b)
    );
    let _ = poll(Duration::from_secs(60), || {
        (now_secs() > takeover + 1).then_some(())
    });
    // B's own pool alone cannot serve this many new clients: more ACKs prove the takeover.
    let own = u(&fo(&p.b), "backup");
    let n = own as u32 + 20;
    let out = perfdhcp(&p.p_ns, "eth1", 30, n, 6, "00:0b:00:00:00:00");
    let acked = acks_of(&out);
    assert!(
        acked > own,
        "after MCLT in PARTNER-DOWN B acknowledged {acked} of {n} new clients with {own} \
         addresses in its own pool: it did not take the partner's\n{out}\n{}",
        lab.dump_logs()
    );

    // 6. A restarts: recovery brings both back to NORMAL; A learns every binding.
    let (a_ns, lab) = (&p.a_ns, &p.lab);
    p.a.restart(a_ns, lab);
    wait_state(lab, &p.a, "NORMAL", Duration::from_secs(MCLT * 3 + 30));
    wait_state(lab, &p.b, "NORMAL", Duration::from_secs(20));
    wait_replicated(lab, &p.b, &p.a, "B's leases on A after recovery");
    check_tables_agree(&p.a, &p.b);
    // Clients still renew (now from whichever server owns their bucket).
    let back = now_secs();
    for (c, a) in clients.iter().zip(&addrs) {
        let ok = poll(Duration::from_secs(45), || {
            c.events()
                .iter()
                .any(|e| e.t > back && e.is_renew() && e.ip == Some(*a))
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "{} did not renew {a} after recovery: {:?}\n{}",
            c.mac,
            c.events(),
            lab.dump_logs()
        );
    }
    check_client_leases(&clients);
    for (c, ns) in clients.iter_mut().zip(&p.c_ns) {
        c.release(ns, lab);
    }
}

/// Each partner runs two UDP workers.
#[test]
fn load_balance_pair_crash_partner_down_recovery() {
    run_cycle("folb", TestMode::LoadBalance, Plane::Udp);
}

/// Each partner runs two UDP workers.
#[test]
fn hot_standby_pair_crash_automatic_partner_down_recovery() {
    run_cycle("fohs", TestMode::HotStandby, Plane::Udp);
}

/// [`load_balance_pair_crash_partner_down_recovery`] with each partner running two AF_XDP
/// workers on a two-queue link.
#[test]
fn load_balance_pair_of_two_xdp_workers_crash_partner_down_recovery() {
    run_cycle("folbx", TestMode::LoadBalance, Plane::XdpTwoWorkers);
}

/// [`hot_standby_pair_crash_automatic_partner_down_recovery`] with each partner running two
/// AF_XDP workers on a two-queue link.
#[test]
fn hot_standby_pair_of_two_xdp_workers_crash_automatic_partner_down_recovery() {
    run_cycle("fohsx", TestMode::HotStandby, Plane::XdpTwoWorkers);
}

/// `[[failover]]` of one relationship for the hub-and-spoke test: a hot-standby scope of
/// 10.8N.0.0/24 (relayed, no interface), the spoke active.
fn hub_spoke_failover(
    name: &str,
    role: &str,
    partner: &str,
    listen: &str,
    standby: bool,
) -> String {
    format!(
        "\n[[failover]]\nname = \"{name}\"\nrole = \"{role}\"\npartner = \"{partner}\"\n\
         listen = \"{listen}\"\nmode = \"hot-standby\"\nhot_standby_role = \"{}\"\n\
         reserve_percent = 10\nmclt = \"{MCLT}s\"\nmax_response_delay = \"5s\"\n\
         startup_wait = \"2s\"\nscopes = [\"{name}\"]\n",
        if standby { "standby" } else { "active" }
    )
}

/// Spoke `i` of a hub: its server section (`s{i}`, 10.80.0.2{i} on eth1), its relayed scope
/// `site{i}` and its relationship with the hub (`failover`).
fn spoke_config(lab: &Lab, i: u8, failover: &str) -> String {
    format!(
        "{}{}{failover}",
        Tandemd::server_section_named(lab, &format!("s{i}"), &format!("10.80.0.2{i}"), &["eth1"]),
        relayed_scope(&format!("site{i}"), 80 + i),
    )
}

fn relayed_scope(name: &str, net: u8) -> String {
    format!(
        "\n[[scope]]\nname = \"{name}\"\nsubnet = \"10.{net}.0.0/24\"\n\
         ranges = [\"10.{net}.0.10-10.{net}.0.109\"]\nlease_time = \"30s\"\n"
    )
}

/// Wait until both relationships (`site1`, `site2`) are NORMAL on the hub and on their spokes.
fn hub_and_spokes_normal(lab: &Lab, hub: &Tandemd, s1: &Tandemd, s2: &Tandemd, t: Duration) {
    for (srv, rel) in [(s1, "site1"), (s2, "site2"), (hub, "site1"), (hub, "site2")] {
        let ok = poll(t, || {
            let v = srv.ctl_json(&["failover", "show", rel, "--json"]);
            (v.get("state").and_then(Value::as_str) == Some("NORMAL")).then_some(())
        });
        assert!(ok.is_some(), "{rel} not NORMAL:\n{}", lab.dump_logs());
    }
}

/// A central standby for two sites: one server in two relationships (standby in both) on one
/// shared listener, each spoke active in its own; all three reach NORMAL and each spoke hands
/// the hub its reserve.
#[test]
fn hub_standby_for_two_spokes_on_one_listener() {
    let _cpu = cpu_exclusive();
    let lab = Lab::new("fohub");
    let sw = lab.netns("sw");
    let hub_ns = lab.netns("hub");
    let s1_ns = lab.netns("s1");
    let s2_ns = lab.netns("s2");
    veth(&hub_ns, "eth1", &sw, "tdmph");
    veth(&s1_ns, "eth1", &sw, "tdmp1");
    veth(&s2_ns, "eth1", &sw, "tdmp2");
    bridge(&sw, "br0", &["tdmph", "tdmp1", "tdmp2"]);
    hub_ns.addr("eth1", "10.80.0.10/24");
    s1_ns.addr("eth1", "10.80.0.21/24");
    s2_ns.addr("eth1", "10.80.0.22/24");
    let hub_cfg = format!(
        "{}{}{}{}{}",
        Tandemd::server_section_named(&lab, "hub", "10.80.0.10", &["eth1"]),
        relayed_scope("site1", 81),
        relayed_scope("site2", 82),
        hub_spoke_failover("site1", "secondary", "10.80.0.21", "10.80.0.10", true),
        hub_spoke_failover("site2", "secondary", "10.80.0.22", "10.80.0.10", true),
    );
    let spoke_cfg = |i: u8| {
        spoke_config(
            &lab,
            i,
            &hub_spoke_failover(
                &format!("site{i}"),
                "primary",
                "10.80.0.10",
                &format!("10.80.0.2{i}"),
                false,
            ),
        )
    };
    let hub = Tandemd::start_named(&lab, &hub_ns, "hub", &hub_cfg, &[]);
    let s1 = Tandemd::start_named(&lab, &s1_ns, "s1", &spoke_cfg(1), &[]);
    let s2 = Tandemd::start_named(&lab, &s2_ns, "s2", &spoke_cfg(2), &[]);
    assert!(
        hub.wait_log("shared failover listener", Duration::from_secs(5)),
        "the hub did not share its listener:\n{}",
        lab.dump_logs()
    );
    hub_and_spokes_normal(&lab, &hub, &s1, &s2, Duration::from_secs(20));
    // Each spoke gives the hub its reserve: 10 % of 100 addresses.
    for rel in ["site1", "site2"] {
        let backup = poll(Duration::from_secs(10), || {
            let v = hub.ctl_json(&["failover", "show", rel, "--json"]);
            let b = u(&v, "backup");
            (b > 0).then_some(b)
        })
        .unwrap_or_else(|| panic!("{rel}: no reserve on the hub\n{}", lab.dump_logs()));
        assert!(
            (9..=11).contains(&backup),
            "{rel}: hub reserve {backup}, expected 10"
        );
    }
    let all = hub.ctl_json(&["failover", "show", "--json"]);
    let rels = all
        .get("relationships")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    assert_eq!(rels, 2, "failover show lists {rels} relationships: {all}");
}

/// A hub on two AF_XDP workers (two-queue link) in two relationships, plus a scope it serves
/// alone: load balance with spoke 1 for site 1 (10.81/24), standby of spoke 2 for site 2
/// (10.82/24), and its own LAN (10.80/24). perfdhcp relays for each (its giaddr in the site's
/// subnet, broadcast on the link all four servers share): the kernel drops
/// spoke 1's half of site 1 and all of site 2 (the hub is the standby), each counted for its
/// relationship, and never a request of the LAN scope, whatever its bucket.
#[test]
fn hub_of_two_spokes_on_two_xdp_workers_drops_each_relationships_partner_clients() {
    let _cpu = cpu_exclusive();
    let lab = Lab::new("foxhub");
    let sw = lab.netns("sw");
    let hub_ns = lab.netns("hub");
    let s1_ns = lab.netns("s1");
    let s2_ns = lab.netns("s2");
    // perfdhcp relays (its giaddr is its interface's address): one per site, on the link.
    let p_ns: Vec<Netns> = (0..3).map(|i| lab.netns(&format!("p{i}"))).collect();
    pair_checks::veth_queues(&hub_ns, "eth1", &sw, "tdmxh", 2);
    veth(&s1_ns, "eth1", &sw, "tdmx1");
    veth(&s2_ns, "eth1", &sw, "tdmx2");
    for (i, ns) in p_ns.iter().enumerate() {
        veth(ns, "eth1", &sw, &format!("tdmxp{i}"));
        ns.addr("eth1", &format!("10.8{i}.0.254/24"));
    }
    bridge(
        &sw,
        "br0",
        &["tdmxh", "tdmx1", "tdmx2", "tdmxp0", "tdmxp1", "tdmxp2"],
    );
    for (ns, a) in [
        (&hub_ns, "10.80.0.10"),
        (&s1_ns, "10.80.0.21"),
        (&s2_ns, "10.80.0.22"),
    ] {
        ns.addr("eth1", &format!("{a}/24"));
        // The sites' relay addresses (perfdhcp's) are on the same link.
        ns.ip("route add 10.81.0.0/24 dev eth1");
        ns.ip("route add 10.82.0.0/24 dev eth1");
    }
    let rel = |name: &str, role: &str, partner: &str, listen: &str, mode: &str| {
        format!(
            "\n[[failover]]\nname = \"{name}\"\nrole = \"{role}\"\npartner = \"{partner}\"\n\
             listen = \"{listen}\"\n{mode}mclt = \"{MCLT}s\"\nmax_response_delay = \"5s\"\n\
             startup_wait = \"2s\"\nscopes = [\"{name}\"]\n"
        )
    };
    let lb = "mode = \"load-balance\"\nload_balance_percent = 50\n";
    let hs = |r: &str| {
        format!("mode = \"hot-standby\"\nhot_standby_role = \"{r}\"\nreserve_percent = 10\n")
    };
    let lan = "\n[[scope]]\nname = \"lan\"\nsubnet = \"10.80.0.0/24\"\ninterface = \"eth1\"\n\
               ranges = [\"10.80.0.100-10.80.0.199\"]\nlease_time = \"30s\"\n";
    let hub_cfg =
        format!(
        "{}\n[dataplane]\nbackend = \"xdp\"\nxdp_mode = \"native\"\ncores = [0, 1]\n{}{}{lan}{}{}",
        Tandemd::server_section_named(&lab, "hub", "10.80.0.10", &["eth1"]),
        relayed_scope("site1", 81),
        relayed_scope("site2", 82),
        rel("site1", "secondary", "10.80.0.21", "10.80.0.10", lb),
        rel("site2", "secondary", "10.80.0.22", "10.80.0.10", &hs("standby")),
    );
    let spoke = |i: u8, mode: &str| {
        spoke_config(
            &lab,
            i,
            &rel(
                &format!("site{i}"),
                "primary",
                "10.80.0.10",
                &format!("10.80.0.2{i}"),
                mode,
            ),
        )
    };
    let hub = Tandemd::start_named(&lab, &hub_ns, "hub", &hub_cfg, &[]);
    let s1 = Tandemd::start_named(&lab, &s1_ns, "s1", &spoke(1, lb), &[]);
    let s2 = Tandemd::start_named(&lab, &s2_ns, "s2", &spoke(2, &hs("active")), &[]);
    let log = hub.log_text();
    assert!(log.contains("core=1") && log.contains("queue=1"), "{log}");
    hub_and_spokes_normal(&lab, &hub, &s1, &s2, Duration::from_secs(30));
    // Site 1's secondary (the hub) gets its half of the pool before the load.
    let _ = poll(Duration::from_secs(10), || {
        let v = hub.ctl_json(&["failover", "show", "site1", "--json"]);
        (u(&v, "backup") > 20).then_some(())
    });
    let per_rel = |st: &Value, r: &str| {
        st["xdp"]["partner_drop_by_relationship"][r]
            .as_u64()
            .unwrap_or_else(|| panic!("no xdp.partner_drop_by_relationship.{r}: {st}"))
    };
    let st0 = hub.stats();
    let ack0 = counter(&st0, "ack");
    let lan_out = perfdhcp(&p_ns[0], "eth1", 30, 40, 4, "00:0e:00:00:00:00");
    let st1 = hub.stats();
    // The LAN scope is the hub's alone: every client served, none dropped in the kernel.
    assert!(
        acks_of(&lan_out) >= 36,
        "LAN clients not all served:\n{lan_out}"
    );
    assert_eq!(
        xdp(&st1, "partner_drop"),
        xdp(&st0, "partner_drop"),
        "a request of the LAN scope was dropped in the kernel: {st1}"
    );
    assert!(counter(&st1, "ack") - ack0 >= 36, "{st1}");
    let s1_out = perfdhcp(&p_ns[1], "eth1", 30, 40, 4, "00:0f:00:00:00:00");
    let s2_out = perfdhcp(&p_ns[2], "eth1", 30, 40, 4, "00:10:00:00:00:00");
    let st2 = hub.stats();
    let (d1, d2) = (per_rel(&st2, "site1"), per_rel(&st2, "site2"));
    eprintln!("hub drops: site1 {d1}, site2 {d2}; {st2}");
    assert!(
        acks_of(&s1_out) >= 30,
        "site 1 clients not served:\n{s1_out}"
    );
    assert!(
        acks_of(&s2_out) >= 30,
        "site 2 clients not served:\n{s2_out}"
    );
    // Site 1: spoke 1's buckets (about half the requests); site 2: every request (the hub is
    // the standby).
    assert!(d1 > 0, "no site 1 request dropped: {st2}");
    assert!(d2 >= 40, "site 2's requests not all dropped ({d2}): {st2}");
    assert_eq!(
        d1 + d2,
        xdp(&st2, "partner_drop"),
        "the per-relationship drops add up to the total: {st2}"
    );
    // Both of the hub's workers served (a handoff each way between them is answered).
    assert!(xdp(&st2, "handoff_out") > 0, "{st2}");
    assert_eq!(xdp(&st2, "handoff_in"), xdp(&st2, "handoff_out"), "{st2}");
    // The hub and spoke 1 agree on site 1's leases; no address held by two clients.
    wait_replicated(&lab, &s1, &hub, "spoke 1's leases on the hub");
    // The hub's own site 1 leases on spoke 1 (its LAN leases are its alone).
    let missing = poll(Duration::from_secs(10), || {
        let on_s1 = active(&s1);
        let now = now_secs();
        let gap: Vec<Ipv4Addr> = active(&hub)
            .into_values()
            .filter(|l| l.scope == "site1" && l.expires > now + 1)
            .filter(|l| on_s1.get(&l.address).map(|x| &x.mac) != Some(&l.mac))
            .map(|l| l.address)
            .collect();
        gap.is_empty().then_some(())
    });
    assert!(
        missing.is_some(),
        "the hub's site 1 leases did not reach spoke 1\n{}",
        lab.dump_logs()
    );
    check_tables_agree(&hub, &s1);
    check_tables_agree(&hub, &s2);
    // tandemctl stats shows them per relationship too.
    let text = hub.ctl(&["stats"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("xdp.partner_drop_by_relationship.site2"),
        "{text}"
    );
}

/// A partition of the failover link only: clients still reach both servers. Both go to
/// COMMUNICATIONS-INTERRUPTED and serve everyone from their own pools (no address handed to two
/// clients), then the link heals and both return to NORMAL with the same bindings.
#[test]
fn load_balance_partition_of_the_link_only_then_heal() {
    let _cpu = cpu_exclusive();
    let p = pair_with("fopart", TestMode::LoadBalance, 0, true, Plane::Udp);
    let lab = &p.lab;
    wait_state(lab, &p.a, "NORMAL", Duration::from_secs(20));
    wait_state(lab, &p.b, "NORMAL", Duration::from_secs(20));
    let _ = poll(Duration::from_secs(10), || {
        (u(&fo(&p.b), "backup") > 0).then_some(())
    });
    perfdhcp(&p.p_ns, "eth1", 20, 30, 3, "00:0c:00:00:00:00");
    wait_replicated(lab, &p.a, &p.b, "before the partition");

    // Cut the failover link (its own veth); DHCP keeps flowing on the bridge.
    p.a_ns
        .exec_ok(&["ip", "link", "set", "dev", "tdmfoa", "down"]);
    wait_state(
        lab,
        &p.a,
        "COMMUNICATIONS-INTERRUPTED",
        Duration::from_secs(20),
    );
    wait_state(
        lab,
        &p.b,
        "COMMUNICATIONS-INTERRUPTED",
        Duration::from_secs(20),
    );
    let (a0, b0) = (counter(&p.a.stats(), "ack"), counter(&p.b.stats(), "ack"));
    let out = perfdhcp(&p.p_ns, "eth1", 20, 60, 4, "00:0d:00:00:00:00");
    assert!(
        acks_of(&out) >= 50,
        "clients not served during the partition:\n{out}"
    );
    let (a1, b1) = (counter(&p.a.stats(), "ack"), counter(&p.b.stats(), "ack"));
    assert!(
        a1 > a0 && b1 > b0,
        "both partners serve during the partition (A {a0}->{a1}, B {b0}->{b1})"
    );
    // Before the link heals, neither side has given an address another client holds on the other.
    check_tables_agree(&p.a, &p.b);

    p.a_ns
        .exec_ok(&["ip", "link", "set", "dev", "tdmfoa", "up"]);
    wait_state(lab, &p.a, "NORMAL", Duration::from_secs(60));
    wait_state(lab, &p.b, "NORMAL", Duration::from_secs(20));
    wait_replicated(lab, &p.a, &p.b, "A's partition leases on B");
    wait_replicated(lab, &p.b, &p.a, "B's partition leases on A");
    check_tables_agree(&p.a, &p.b);
}
