//! Network-namespace integration tests: `tandemd` (UDP backend) against real DHCP clients from
//! Debian packages (ISC dhclient, dhcpcd, busybox udhcpc), ISC dhcrelay, and perfdhcp load with
//! `kill -9`.
//!
//! Every test builds its own namespaces (`tdm-<pid>-<test>-<role>`) joined by veth pairs, runs
//! the daemon and the clients inside them, and removes everything on drop, also on failure. No
//! packet leaves the test's namespaces; clients use scripts that only touch their own namespace.
//! The tests need root and the tools from `deploy/install-deps.sh`; without them they fail with
//! a message saying so (they never skip).
//!
//! Tests run two at a time by default (cargo's test threads); the perfdhcp crash test takes a
//! lock that keeps every other test of this file out while it loads the CPUs.

#[path = "netns/clients.rs"]
mod clients;
#[path = "netns/harness.rs"]
mod harness;
#[path = "netns/pcap.rs"]
mod pcap;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use clients::{dhcrelay, Client, Kind, Opts};
use harness::{
    bridge, counter, cpu_exclusive, cpu_shared, in_range, poll, veth, Lab, Lease, Tandemd,
};

const BIND_TIMEOUT: Duration = Duration::from_secs(40);

/// A `[[scope]]` table with the short timers of the renew tests (lease 20 s, T1 8 s, T2 15 s).
fn scope(name: &str, subnet: &str, iface: Option<&str>, ranges: &[&str], router: &str) -> String {
    let ranges: Vec<String> = ranges.iter().map(|r| format!("\"{r}\"")).collect();
    let iface = iface
        .map(|i| format!("interface = \"{i}\"\n"))
        .unwrap_or_default();
    format!(
        "\n[[scope]]\nname = \"{name}\"\nsubnet = \"{subnet}\"\n{iface}ranges = [{}]\n\
         lease_time = \"20s\"\nrenew_time = \"8s\"\nrebind_time = \"15s\"\nauthoritative = true\n\
         [scope.options]\nrouters = [\"{router}\"]\ndomain_name = \"test.tandem\"\n",
        ranges.join(", ")
    )
}

/// Poll the server until `addr` has a lease satisfying `f`; panic with `what` and the lease list.
fn wait_lease(srv: &Tandemd, addr: Ipv4Addr, what: &str, f: impl Fn(&Lease) -> bool) -> Lease {
    poll(Duration::from_secs(10), || srv.lease(addr).filter(|l| f(l))).unwrap_or_else(|| {
        panic!(
            "{what}: lease of {addr} is {:?}\nall leases: {:#?}\nstats: {}",
            srv.lease(addr),
            srv.leases(),
            srv.stats()
        )
    })
}

/// One client obtains, renews (verified by the lease's new expiry on the server) and releases
/// (verified by the lease's state "released") a 20 s lease on a directly attached segment.
fn obtain_renew_release(kind: Kind, net: u8) {
    let _cpu = cpu_shared();
    let lab = Lab::new(kind.name());
    let s = lab.netns("s");
    let c = lab.netns("c");
    veth(&s, "tdm0", &c, "tdm0");
    let p = format!("10.{net}.0");
    s.addr("tdm0", &format!("{p}.1/24"));
    let (lo, hi) = (format!("{p}.100"), format!("{p}.150"));
    let cfg = Tandemd::server_section(&lab, &format!("{p}.1"), &["tdm0"])
        + &scope(
            "lan",
            &format!("{p}.0/24"),
            Some("tdm0"),
            &[&format!("{lo}-{hi}")],
            &format!("{p}.1"),
        );
    let mut srv = Tandemd::start(&lab, &s, &cfg);

    let mut cli = Client::start(&lab, &c, "tdm0", kind, kind.name(), &Opts::default());
    let ip = cli.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(ip, &lo, &hi),
        "{} got {ip}, outside the scope's range {lo}-{hi}",
        kind.name()
    );
    let first = wait_lease(&srv, ip, "after the first ACK", |l| l.state == "active");
    assert_eq!(
        first.mac.as_deref(),
        Some(cli.mac.as_str()),
        "lease of {ip} has the wrong MAC: {first:?}"
    );
    assert_eq!(
        first.scope, "lan",
        "lease of {ip} is in the wrong scope: {first:?}"
    );
    assert!(
        (19..=21).contains(&first.expires.saturating_sub(first.start)),
        "lease_time is 20 s but the lease runs {}..{}: {first:?}",
        first.start,
        first.expires
    );

    // renew: T1 is 8 s; the client says it renewed and the server moved the expiry forward
    let ev = cli.wait_renewed(Duration::from_secs(30));
    assert_eq!(
        ev.ip,
        Some(ip),
        "{} renewed a different address: {ev:?}",
        kind.name()
    );
    let renewed = wait_lease(&srv, ip, "after the renewal", |l| l.expires > first.expires);
    assert_eq!(
        renewed.state, "active",
        "renewed lease is not active: {renewed:?}"
    );
    assert_eq!(renewed.mac, first.mac);
    assert_eq!(
        srv.leases().iter().filter(|l| l.mac == first.mac).count(),
        1,
        "{:#?}",
        srv.leases()
    );

    // release
    cli.release(&c, &lab);
    let released = wait_lease(&srv, ip, "after DHCPRELEASE", |l| l.state == "released");
    assert_eq!(released.mac, first.mac);
    let stats = srv.stats();
    assert!(
        counter(&stats, "release") >= 1,
        "no RELEASE counted: {stats}"
    );
    // DISCOVER, REQUEST (selecting) and at least one REQUEST (renewing), each answered
    assert!(
        counter(&stats, "discover") >= 1 && counter(&stats, "offer") >= 1,
        "{stats}"
    );
    assert!(
        counter(&stats, "request") >= 2 && counter(&stats, "ack") >= 2,
        "{stats}"
    );
    srv.stop();
}

#[test]
fn netns_dhclient_obtains_renews_releases() {
    obtain_renew_release(Kind::Dhclient, 201);
}

#[test]
fn netns_dhcpcd_obtains_renews_releases() {
    obtain_renew_release(Kind::Dhcpcd, 202);
}

#[test]
fn netns_udhcpc_obtains_renews_releases() {
    obtain_renew_release(Kind::Udhcpc, 203);
}

/// INIT-REBOOT with a real client: dhclient restarted with its lease file asks for its old
/// address and gets it (REBOOT); the same lease file on another segment (another scope) gets a
/// NAK from the authoritative server, after which the client DISCOVERs a lease there.
#[test]
fn netns_dhclient_init_reboot_ack_and_nak_on_wrong_segment() {
    let _cpu = cpu_shared();
    let lab = Lab::new("reboot");
    let s = lab.netns("s");
    let c1 = lab.netns("c1");
    let c2 = lab.netns("c2");
    veth(&s, "tdm0", &c1, "tdm0");
    veth(&s, "tdm1", &c2, "tdm0");
    s.addr("tdm0", "10.210.0.1/24");
    s.addr("tdm1", "10.210.1.1/24");
    let cfg = Tandemd::server_section(&lab, "10.210.0.1", &["tdm0", "tdm1"])
        + &scope(
            "a",
            "10.210.0.0/24",
            Some("tdm0"),
            &["10.210.0.100-10.210.0.150"],
            "10.210.0.1",
        )
        + &scope(
            "b",
            "10.210.1.0/24",
            Some("tdm1"),
            &["10.210.1.100-10.210.1.150"],
            "10.210.1.1",
        );
    let mut srv = Tandemd::start(&lab, &s, &cfg);
    let none = Opts::default();
    // dhclient keeps its lease in <name>/dhclient.leases: hand it on to the next client
    let carry = |from: &str, to: &str| {
        std::fs::create_dir_all(lab.path(to)).expect("client dir");
        std::fs::copy(
            lab.path(&format!("{from}/dhclient.leases")),
            lab.path(&format!("{to}/dhclient.leases")),
        )
        .expect("copy dhclient lease file");
    };

    let mut first = Client::start(&lab, &c1, "tdm0", Kind::Dhclient, "first", &none);
    let ip = first.wait_bound(BIND_TIMEOUT);
    assert!(in_range(ip, "10.210.0.100", "10.210.0.150"), "got {ip}");
    drop(first); // SIGTERM: dhclient exits without releasing

    carry("first", "reboot");
    let mut again = Client::start(&lab, &c1, "tdm0", Kind::Dhclient, "reboot", &none);
    let back = again.wait_bound(BIND_TIMEOUT);
    let evs = again.events();
    assert_eq!(
        back, ip,
        "INIT-REBOOT did not get the old address back: {evs:?}"
    );
    assert!(
        evs.iter().any(|e| e.reason == "REBOOT" && e.ip == Some(ip)),
        "dhclient did not bind through INIT-REBOOT (REBOOT event): {evs:?}"
    );
    drop(again);
    let naks_before = counter(&srv.stats(), "nak");

    carry("reboot", "moved");
    let cap = pcap::Capture::start(&lab, &c2, "tdm0", "moved-capture", "udp and dst port 68");
    let mut moved = Client::start(&lab, &c2, "tdm0", Kind::Dhclient, "moved", &none);
    let nip = moved.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(nip, "10.210.1.100", "10.210.1.150"),
        "on segment b the client got {nip} (events {:?})",
        moved.events()
    );
    let (replies, _) = cap.finish();
    assert!(
        replies.iter().any(|r| r.msg_type == pcap::NAK),
        "no NAK for the INIT-REBOOT of {ip} on the wrong segment: {replies:#?}"
    );
    assert!(
        counter(&srv.stats(), "nak") > naks_before,
        "NAK not counted"
    );
    wait_lease(&srv, nip, "after the NAK and a new DISCOVER", |l| {
        l.state == "active" && l.scope == "b"
    });
    srv.stop();
}

/// SIGHUP reloads scopes without dropping leases: a client bound under a 20 s lease time keeps
/// its address, and its next renewal gets the new 40 s lease time from the edited file.
#[test]
fn netns_sighup_reload_keeps_lease_and_applies_new_lease_time() {
    let _cpu = cpu_shared();
    let lab = Lab::new("reload");
    let s = lab.netns("s");
    let c = lab.netns("c");
    veth(&s, "tdm0", &c, "tdm0");
    s.addr("tdm0", "10.209.0.1/24");
    let cfg = Tandemd::server_section(&lab, "10.209.0.1", &["tdm0"])
        + &scope(
            "lan",
            "10.209.0.0/24",
            Some("tdm0"),
            &["10.209.0.100-10.209.0.150"],
            "10.209.0.1",
        );
    let mut srv = Tandemd::start(&lab, &s, &cfg);
    let mut cli = Client::start(&lab, &c, "tdm0", Kind::Udhcpc, "udhcpc", &Opts::default());
    let ip = cli.wait_bound(BIND_TIMEOUT);
    let first = wait_lease(&srv, ip, "before the reload", |l| l.state == "active");
    assert!(first.expires - first.start <= 21, "{first:?}");

    let edited = cfg
        .replace("lease_time = \"20s\"", "lease_time = \"40s\"")
        .replace("rebind_time = \"15s\"", "rebind_time = \"30s\"");
    assert_ne!(edited, cfg);
    std::fs::write(&srv.config, &edited).expect("rewrite config");
    srv.signal("HUP");
    assert!(
        srv.wait_log("configuration reloaded", Duration::from_secs(10)),
        "no reload logged after SIGHUP:\n{}",
        srv.log_text()
    );
    assert!(srv.alive(), "tandemd died on SIGHUP:\n{}", srv.log_text());
    let kept = srv.lease(ip);
    assert_eq!(
        kept.as_ref().map(|l| l.state.as_str()),
        Some("active"),
        "lease lost by the reload: {kept:?}"
    );

    let ev = cli.wait_renewed(Duration::from_secs(30));
    assert_eq!(
        ev.ip,
        Some(ip),
        "the client lost its address across the reload: {ev:?}"
    );
    let renewed = wait_lease(&srv, ip, "after the renewal under the new config", |l| {
        l.expires > first.expires
    });
    let runs = renewed.expires.saturating_sub(ev.t);
    assert!(
        (38..=41).contains(&runs),
        "renewed after the reload, the lease should run 40 s but runs {runs} s: {renewed:?}"
    );
    srv.stop();
}

/// Two scopes: a client on the server's own segment gets a lease from the direct scope, and a
/// client behind dhcrelay in a router namespace gets one from the relayed scope (chosen by
/// giaddr), then renews it by unicast through the router.
#[test]
fn netns_dhcrelay_client_gets_lease_from_relayed_scope() {
    let _cpu = cpu_shared();
    let lab = Lab::new("relay");
    let s = lab.netns("s");
    let r = lab.netns("r");
    let c1 = lab.netns("c1");
    let c2 = lab.netns("c2");
    veth(&s, "tdm0", &c1, "tdm0");
    veth(&s, "tdm1", &r, "up0");
    veth(&r, "down0", &c2, "tdm0");
    s.addr("tdm0", "10.204.0.1/24");
    s.addr("tdm1", "10.204.1.1/30");
    s.ip("route add 10.204.2.0/24 via 10.204.1.2");
    r.addr("up0", "10.204.1.2/30");
    r.addr("down0", "10.204.2.1/24");
    r.ip("route add 10.204.0.0/24 via 10.204.1.1"); // the server_id, for unicast renewals
    r.forwarding();
    let cfg = Tandemd::server_section(&lab, "10.204.0.1", &["tdm0", "tdm1"])
        + &scope(
            "direct",
            "10.204.0.0/24",
            Some("tdm0"),
            &["10.204.0.100-10.204.0.150"],
            "10.204.0.1",
        )
        + &scope(
            "relayed",
            "10.204.2.0/24",
            None,
            &["10.204.2.100-10.204.2.150"],
            "10.204.2.1",
        );
    let mut srv = Tandemd::start(&lab, &s, &cfg);
    let relay = dhcrelay(&lab, &r, "dhcrelay", "down0", "up0", "10.204.1.1");

    let cap = pcap::Capture::start(&lab, &c2, "tdm0", "c2-capture", "udp and dst port 68");
    let mut direct = Client::start(&lab, &c1, "tdm0", Kind::Udhcpc, "direct", &Opts::default());
    let mut relayed = Client::start(
        &lab,
        &c2,
        "tdm0",
        Kind::Dhclient,
        "relayed",
        &Opts::default(),
    );
    let dip = direct.wait_bound(BIND_TIMEOUT);
    let rip = relayed.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(dip, "10.204.0.100", "10.204.0.150"),
        "direct client got {dip}"
    );
    assert!(
        in_range(rip, "10.204.2.100", "10.204.2.150"),
        "relayed client got {rip}, not from the relayed scope"
    );
    let dl = wait_lease(&srv, dip, "direct client", |l| l.state == "active");
    let rl = wait_lease(&srv, rip, "relayed client", |l| l.state == "active");
    assert_eq!(
        (dl.scope.as_str(), dl.mac.as_deref()),
        ("direct", Some(direct.mac.as_str()))
    );
    assert_eq!(
        (rl.scope.as_str(), rl.mac.as_deref()),
        ("relayed", Some(relayed.mac.as_str()))
    );
    // it really went through the relay, both ways
    let log = relay.log_text();
    assert!(
        log.contains(&format!("Forwarded BOOTREQUEST for {}", relayed.mac)),
        "relay log:\n{log}"
    );
    assert!(
        log.contains(&format!("Forwarded BOOTREPLY for {}", relayed.mac)),
        "relay log:\n{log}"
    );
    assert!(
        !log.contains(&direct.mac),
        "the direct client went through the relay:\n{log}"
    );
    // renewing is unicast from the client to the server, routed through the router namespace
    // (not relayed), and answered unicast to the client's address
    let ev = relayed.wait_renewed(Duration::from_secs(30));
    assert_eq!(
        ev.ip,
        Some(rip),
        "relayed client renewed another address: {ev:?}"
    );
    wait_lease(&srv, rip, "after the relayed client's renewal", |l| {
        l.state == "active" && l.expires > rl.expires
    });
    // dhcrelay also relays the renewal (its packet socket sees the unicast pass), so the server
    // gets two copies; the one that came routed must be answered unicast to ciaddr:68
    let (replies, _) = cap.finish();
    let direct_ack = replies.iter().any(|r| {
        r.msg_type == pcap::ACK
            && r.yiaddr == rip
            && r.dst == rip
            && r.dport == 68
            && r.src != "10.204.2.1".parse::<Ipv4Addr>().unwrap()
    });
    assert!(
        direct_ack,
        "no unicast ACK from the server to the renewing client {rip}: {replies:#?}"
    );
    srv.stop();
}

/// Two routers, each running dhcrelay, on the client's segment forward every request of the
/// client twice (different giaddrs): the server makes one decision, so the client ends with one
/// lease, both relays carry the same answer, and the server counts the duplicates.
#[test]
fn netns_two_relays_same_client_one_lease() {
    let _cpu = cpu_shared();
    let lab = Lab::new("2relay");
    let s = lab.netns("s");
    let r1 = lab.netns("r1");
    let r2 = lab.netns("r2");
    let seg = lab.netns("seg");
    let c = lab.netns("c");
    veth(&s, "tdm1", &r1, "up0");
    veth(&s, "tdm2", &r2, "up0");
    veth(&r1, "down0", &seg, "p1");
    veth(&r2, "down0", &seg, "p2");
    veth(&c, "tdm0", &seg, "p3");
    bridge(&seg, "br0", &["p1", "p2", "p3"]);
    s.addr("tdm1", "10.205.1.1/30");
    s.addr("tdm2", "10.205.1.5/30");
    s.ip("route add 10.205.2.2/32 via 10.205.1.6");
    s.ip("route add 10.205.2.0/24 via 10.205.1.2");
    r1.addr("up0", "10.205.1.2/30");
    r1.addr("down0", "10.205.2.1/24");
    r2.addr("up0", "10.205.1.6/30");
    r2.addr("down0", "10.205.2.2/24");
    r1.forwarding();
    r2.forwarding();
    let cfg = Tandemd::server_section(&lab, "10.205.1.1", &["tdm1", "tdm2"])
        + &scope(
            "relayed",
            "10.205.2.0/24",
            None,
            &["10.205.2.100-10.205.2.150"],
            "10.205.2.1",
        );
    let mut srv = Tandemd::start(&lab, &s, &cfg);
    let relay1 = dhcrelay(&lab, &r1, "dhcrelay1", "down0", "up0", "10.205.1.1");
    let relay2 = dhcrelay(&lab, &r2, "dhcrelay2", "down0", "up0", "10.205.1.5");

    let mut cli = Client::start(&lab, &c, "tdm0", Kind::Dhclient, "client", &Opts::default());
    let ip = cli.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(ip, "10.205.2.100", "10.205.2.150"),
        "client got {ip}"
    );
    wait_lease(&srv, ip, "client behind two relays", |l| {
        l.state == "active"
    });
    // both relays forwarded the client's requests and carried an answer naming the same address
    for (name, relay) in [("dhcrelay1", &relay1), ("dhcrelay2", &relay2)] {
        let log = relay.log_text();
        assert!(
            log.contains(&format!("Forwarded BOOTREQUEST for {}", cli.mac)),
            "{name} forwarded nothing:\n{log}"
        );
        let replies: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(&format!("Forwarded BOOTREPLY for {}", cli.mac)))
            .collect();
        assert!(
            !replies.is_empty(),
            "{name} carried no reply for the client:\n{log}"
        );
        assert!(
            replies.iter().all(|l| l.ends_with(&format!(" to {ip}"))),
            "{name} carried a different answer than {ip}:\n{log}"
        );
    }
    // settle (late duplicates are in flight), then: exactly one lease, for this client
    std::thread::sleep(Duration::from_secs(1));
    let leases = srv.leases();
    let mine: Vec<&Lease> = leases
        .iter()
        .filter(|l| l.mac.as_deref() == Some(cli.mac.as_str()))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "the client holds {} leases: {leases:#?}",
        mine.len()
    );
    let held: Vec<&Lease> = leases
        .iter()
        .filter(|l| matches!(l.state.as_str(), "active" | "offered"))
        .collect();
    assert_eq!(held.len(), 1, "more than one address is held: {leases:#?}");
    // the DISCOVER and the REQUEST each arrived once through the other relay
    let stats = srv.stats();
    assert!(
        counter(&stats, "duplicate_other_relay") >= 2,
        "the server did not count the copies from the second relay: {stats}"
    );
    srv.stop();
}

/// Reservations by MAC are honoured: a dhclient client (no client id) and a dhcpcd client (sends a
/// client id) get their reserved addresses, one outside and one inside the dynamic range; an
/// unreserved client gets neither.
#[test]
fn netns_reservation_is_honoured() {
    let _cpu = cpu_shared();
    let lab = Lab::new("resv");
    let s = lab.netns("s");
    let c1 = lab.netns("c1");
    let c2 = lab.netns("c2");
    let c3 = lab.netns("c3");
    veth(&s, "p1", &c1, "tdm0");
    veth(&s, "p2", &c2, "tdm0");
    veth(&s, "p3", &c3, "tdm0");
    bridge(&s, "tdm0", &["p1", "p2", "p3"]);
    s.addr("tdm0", "10.206.0.1/24");
    let (mac1, mac2) = ("02:00:5e:10:00:01", "02:00:5e:10:00:02");
    c1.ip(&format!("link set tdm0 address {mac1}"));
    c2.ip(&format!("link set tdm0 address {mac2}"));
    let cfg = Tandemd::server_section(&lab, "10.206.0.1", &["tdm0"])
        + &scope(
            "lan",
            "10.206.0.0/24",
            Some("tdm0"),
            &["10.206.0.100-10.206.0.150"],
            "10.206.0.1",
        )
        + &format!(
            "\n[[scope.reservation]]\nmac = \"{mac1}\"\naddress = \"10.206.0.10\"\n\
             \n[[scope.reservation]]\nmac = \"{mac2}\"\naddress = \"10.206.0.120\"\n"
        );
    let mut srv = Tandemd::start(&lab, &s, &cfg);
    let mut a = Client::start(
        &lab,
        &c1,
        "tdm0",
        Kind::Dhclient,
        "reserved1",
        &Opts::default(),
    );
    let mut b = Client::start(
        &lab,
        &c2,
        "tdm0",
        Kind::Dhcpcd,
        "reserved2",
        &Opts::default(),
    );
    let mut u = Client::start(
        &lab,
        &c3,
        "tdm0",
        Kind::Udhcpc,
        "unreserved",
        &Opts::default(),
    );
    assert_eq!(
        a.wait_bound(BIND_TIMEOUT),
        "10.206.0.10".parse::<Ipv4Addr>().unwrap(),
        "dhclient ignored its reservation"
    );
    assert_eq!(
        b.wait_bound(BIND_TIMEOUT),
        "10.206.0.120".parse::<Ipv4Addr>().unwrap(),
        "dhcpcd ignored its reservation"
    );
    let uip = u.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(uip, "10.206.0.100", "10.206.0.150"),
        "unreserved client got {uip}"
    );
    assert_ne!(
        uip,
        "10.206.0.120".parse::<Ipv4Addr>().unwrap(),
        "a reserved address went to another client"
    );
    for (addr, mac) in [("10.206.0.10", mac1), ("10.206.0.120", mac2)] {
        let l = wait_lease(&srv, addr.parse().unwrap(), "reserved lease", |l| {
            l.state == "active"
        });
        assert_eq!(l.mac.as_deref(), Some(mac), "{l:?}");
    }
    srv.stop();
}

/// A policy on vendor class (option 60) restricts matching clients to its range: udhcpc (-V) and
/// dhclient (`send vendor-class-identifier`) with the class land there; dhcpcd (its own vendor
/// class) does not, and is kept out of the policy's range although that range holds the scope's
/// lowest free addresses (Windows semantics).
#[test]
fn netns_vendor_class_policy_lands_client_in_its_range() {
    let _cpu = cpu_shared();
    let lab = Lab::new("policy");
    let s = lab.netns("s");
    let c1 = lab.netns("c1");
    let c2 = lab.netns("c2");
    let c3 = lab.netns("c3");
    veth(&s, "p1", &c1, "tdm0");
    veth(&s, "p2", &c2, "tdm0");
    veth(&s, "p3", &c3, "tdm0");
    bridge(&s, "tdm0", &["p1", "p2", "p3"]);
    s.addr("tdm0", "10.207.0.1/24");
    let cfg = Tandemd::server_section(&lab, "10.207.0.1", &["tdm0"])
        + &scope("lan", "10.207.0.0/24", Some("tdm0"), &["10.207.0.100-10.207.0.199"], "10.207.0.1")
        + "\n[[scope.policy]]\nname = \"phones\"\norder = 1\n\
           conditions = [{ vendor_class = \"tandem-phone\" }]\nranges = [\"10.207.0.100-10.207.0.119\"]\n";
    let mut srv = Tandemd::start(&lab, &s, &cfg);
    let phone = Opts {
        vendor_class: Some("tandem-phone".into()),
        ..Opts::default()
    };
    let mut a = Client::start(&lab, &c1, "tdm0", Kind::Udhcpc, "phone-udhcpc", &phone);
    let mut b = Client::start(&lab, &c2, "tdm0", Kind::Dhclient, "phone-dhclient", &phone);
    let mut o = Client::start(
        &lab,
        &c3,
        "tdm0",
        Kind::Dhcpcd,
        "other-dhcpcd",
        &Opts::default(),
    );
    let aip = a.wait_bound(BIND_TIMEOUT);
    let bip = b.wait_bound(BIND_TIMEOUT);
    let oip = o.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(aip, "10.207.0.100", "10.207.0.119"),
        "udhcpc -V tandem-phone got {aip}, outside the policy range"
    );
    assert!(
        in_range(bip, "10.207.0.100", "10.207.0.119"),
        "dhclient with the vendor class got {bip}, outside the policy range"
    );
    assert!(
        in_range(oip, "10.207.0.120", "10.207.0.199"),
        "dhcpcd (no matching class) got {oip}, inside the policy range or outside the scope"
    );
    for ip in [aip, bip, oip] {
        wait_lease(&srv, ip, "policy client", |l| {
            l.state == "active" && l.scope == "lan"
        });
    }
    srv.stop();
}

/// `kill -9` under perfdhcp load, restart: every lease the clients saw ACKed (captured with
/// tcpdump on the clients' side) is still there after the restart, for the same chaddr. Two
/// rounds on the same state directory (the config asks for two workers, so this covers several
/// journals once the backend runs them): the second round's load also re-DORAs the clients
/// recovered from the first, which must get their own addresses back.
#[test]
fn netns_crash_kill9_under_load_keeps_every_acked_lease() {
    let _cpu = cpu_exclusive();
    let lab = Lab::new("crash");
    let s = lab.netns("s");
    let p = lab.netns("p");
    veth(&s, "tdm0", &p, "tdm0");
    s.addr("tdm0", "10.208.0.1/16");
    p.addr("tdm0", "10.208.0.2/16");
    // relay-style load (perfdhcp sets giaddr 10.208.0.2); a long lease so nothing expires
    let cfg = Tandemd::server_section(&lab, "10.208.0.1", &["tdm0"])
        + "workers = 2\n\n[[scope]]\nname = \"load\"\nsubnet = \"10.208.0.0/16\"\n\
           ranges = [\"10.208.1.0-10.208.200.255\"]\nlease_time = \"1h\"\n";
    let mut srv = Tandemd::start(&lab, &s, &cfg);

    // what the clients were promised: per chaddr, the address of its ACKs
    let mut promised: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for round in 1..=2 {
        let cap = pcap::Capture::start(
            &lab,
            &p,
            "tdm0",
            &format!("capture{round}"),
            "udp and src host 10.208.0.1 and src port 67",
        );
        // bounded: at most 12 s or 9600 exchanges at 800/s over 20 000 simulated clients,
        // under `timeout`
        let mut perf = p.spawn(
            &lab,
            &format!("perfdhcp{round}"),
            &[
                "timeout",
                "40",
                "perfdhcp",
                "-4",
                "-r",
                "800",
                "-n",
                "9600",
                "-R",
                "20000",
                "-p",
                "12",
                "-l",
                "10.208.0.2",
                "10.208.0.1",
            ],
        );
        // let it hand out a few hundred leases, then crash it mid-load (perfdhcp's clients come
        // in the same order every run: round 2 first renews round 1's clients, then adds new ones)
        let want = 400 * round;
        let acked = poll(Duration::from_secs(15), || {
            let n = cap
                .replies()
                .iter()
                .filter(|r| r.msg_type == pcap::ACK)
                .count();
            (n >= want).then_some(n)
        });
        assert!(
            acked.is_some(),
            "round {round}: fewer than {want} ACKs in 15 s of load\nperfdhcp:\n{}\ntandemd:\n{}",
            perf.log_text(),
            srv.log_text()
        );
        assert!(srv.alive(), "tandemd died under load:\n{}", srv.log_text());
        srv.kill9();
        assert!(
            perf.wait_exit(Duration::from_secs(45)).is_some(),
            "perfdhcp did not stop"
        );
        let (replies, tcpdump_summary) = cap.finish();

        let mut conflicts = Vec::new();
        let mut acks = 0;
        for r in replies.iter().filter(|r| r.msg_type == pcap::ACK) {
            acks += 1;
            if let Some(prev) = promised.insert(r.chaddr.clone(), r.yiaddr) {
                if prev != r.yiaddr {
                    conflicts.push(format!("{}: ACKed {prev} then {}", r.chaddr, r.yiaddr));
                }
            }
        }
        assert!(
            conflicts.is_empty(),
            "round {round}: {} clients were ACKed a different address than before: {:?}",
            conflicts.len(),
            &conflicts[..conflicts.len().min(20)]
        );
        // no address ACKed to two clients
        let mut owner: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        for (mac, a) in &promised {
            if let Some(other) = owner.insert(*a, mac) {
                panic!("round {round}: {a} was ACKed to both {other} and {mac}");
            }
        }

        srv.restart(&s, &lab);
        let leases = srv.leases();
        let by_addr: BTreeMap<Ipv4Addr, &Lease> = leases.iter().map(|l| (l.address, l)).collect();
        let mut lost = Vec::new();
        for (mac, a) in &promised {
            match by_addr.get(a) {
                Some(l) if l.state == "active" && l.mac.as_deref() == Some(mac.as_str()) => {}
                other => lost.push(format!("{a} for {mac}: after restart {other:?}")),
            }
        }
        eprintln!(
            "crash round {round}: {acks} ACKs captured, {} ACKed clients so far, {} leases after \
             restart; tcpdump: {}",
            promised.len(),
            leases.len(),
            tcpdump_summary
                .lines()
                .filter(|l| l.contains("packets"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} ACKed leases were lost by kill -9 + restart; first ones:\n{}",
            lost.len(),
            promised.len(),
            lost.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
        );
        let active = counter(&srv.stats(), "leases_active");
        assert!(
            active >= promised.len() as u64,
            "round {round}: leases_active {active} < {} ACKed clients",
            promised.len()
        );
    }
    srv.stop();
}
