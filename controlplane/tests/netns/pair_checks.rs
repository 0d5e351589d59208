//! What the tests that run two `tandemd` partners share: their network (one bridge for both
//! servers, perfdhcp and the clients), and the checks: leases replicated, no address held by two
//! clients (in the servers' tables and in what the clients saw), perfdhcp's ACKs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clients::Client;
use crate::harness::{bridge, poll, run_ok, veth, Lab, Lease, Netns, Tandemd};

/// The namespaces of a pair's network: A (10.79.0.2), B (10.79.0.3), perfdhcp's (10.79.0.254)
/// and one per client, each with `eth1` on the switch's bridge.
pub struct PairNet {
    /// The switch (bridge `br0`).
    pub sw: Netns,
    /// Server A.
    pub a: Netns,
    /// Server B.
    pub b: Netns,
    /// perfdhcp's.
    pub p: Netns,
    /// One per client.
    pub c: Vec<Netns>,
}

/// Build a [`PairNet`] with `clients` client namespaces; the switch ports are named
/// `<port>a`, `<port>b`, `<port>p`, `<port>cN` (`port` like `tdmp`, unique per test file), and
/// the servers' and perfdhcp's addresses have prefix length `prefix`.
pub fn pair_net(lab: &Lab, clients: usize, port: &str, prefix: u8) -> PairNet {
    pair_net_queues(lab, clients, port, prefix, 1)
}

/// [`pair_net`] with `queues` receive and transmit queues on both servers' links (one AF_XDP
/// worker per queue).
pub fn pair_net_queues(lab: &Lab, clients: usize, port: &str, prefix: u8, queues: u32) -> PairNet {
    let sw = lab.netns("sw");
    let (a, b, p) = (lab.netns("a"), lab.netns("b"), lab.netns("p"));
    let mut ports = Vec::new();
    for (ns, tag) in [(&a, "a"), (&b, "b"), (&p, "p")] {
        let name = format!("{port}{tag}");
        if tag == "p" || queues <= 1 {
            veth(ns, "eth1", &sw, &name);
        } else {
            veth_queues(ns, "eth1", &sw, &name, queues);
        }
        ports.push(name);
    }
    let mut c = Vec::new();
    for i in 0..clients {
        let ns = lab.netns(&format!("c{i}"));
        let name = format!("{port}c{i}");
        veth(&ns, "eth1", &sw, &name);
        ports.push(name);
        c.push(ns);
    }
    let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
    bridge(&sw, "br0", &refs);
    a.addr("eth1", &format!("10.79.0.2/{prefix}"));
    b.addr("eth1", &format!("10.79.0.3/{prefix}"));
    // perfdhcp's interface needs an address (outside the scopes' ranges).
    p.addr("eth1", &format!("10.79.0.254/{prefix}"));
    PairNet { sw, a, b, p, c }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The active leases of `srv`, by address.
pub fn active(srv: &Tandemd) -> BTreeMap<Ipv4Addr, Lease> {
    srv.leases()
        .into_iter()
        .filter(|l| l.state == "active")
        .map(|l| (l.address, l))
        .collect()
}

/// Every lease `from` holds actively (and that has not ended) is on `to` too, for the same
/// client (waits for replication, at most 10 s).
pub fn wait_replicated(lab: &Lab, from: &Tandemd, to: &Tandemd, what: &str) {
    let mut last = String::new();
    let ok = poll(Duration::from_secs(10), || {
        let now = now_secs();
        let a = active(from);
        let b = active(to);
        let missing: Vec<String> = a
            .values()
            .filter(|l| l.expires > now + 1)
            .filter(|l| b.get(&l.address).is_none_or(|m| m.mac != l.mac))
            .map(|l| format!("{} {:?}", l.address, l.mac))
            .collect();
        last = missing.join(", ");
        missing.is_empty().then_some(())
    });
    if ok.is_none() {
        panic!(
            "{what}: leases not replicated to the partner: {last}\n{}",
            lab.dump_logs()
        );
    }
}

/// No address is active on the two servers for different clients.
pub fn check_tables_agree(a: &Tandemd, b: &Tandemd) {
    let now = now_secs();
    let (la, lb) = (active(a), active(b));
    for (addr, x) in &la {
        if let Some(y) = lb.get(addr) {
            if x.expires > now + 1 && y.expires > now + 1 {
                assert_eq!(
                    x.mac, y.mac,
                    "{addr} is active on A for {:?} and on B for {:?}",
                    x.mac, y.mac
                );
            }
        }
    }
}

/// The no-duplicate checker over what the clients themselves saw: from each client's events,
/// the intervals during which it held each address (from a BOUND/RENEW/REBIND/REBOOT event to
/// the client's next event or now); no two clients' intervals on one address overlap.
pub fn check_client_leases(clients: &[Client]) {
    let now = now_secs();
    let mut held: BTreeMap<Ipv4Addr, Vec<(u64, u64, String)>> = BTreeMap::new();
    for c in clients {
        let ev = c.events();
        for (i, e) in ev.iter().enumerate() {
            if !(e.is_bound() || e.is_renew()) {
                continue;
            }
            let Some(ip) = e.ip else { continue };
            let end = ev.get(i + 1).map_or(now, |n| n.t);
            held.entry(ip).or_default().push((e.t, end, c.mac.clone()));
        }
    }
    for (ip, mut spans) in held {
        spans.sort();
        for w in spans.windows(2) {
            let (x, y) = (&w[0], &w[1]);
            assert!(
                x.2 == y.2 || x.1 <= y.0,
                "address {ip} held by two clients at once: {} from {} to {}, {} from {}",
                x.2,
                x.0,
                x.1,
                y.2,
                y.0
            );
        }
    }
}

/// The number of ACKs perfdhcp received (its second "received packets" line).
pub fn acks_of(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("received packets:"))
        .filter_map(|n| n.trim().parse().ok())
        .nth(1)
        .unwrap_or(0)
}

/// [`veth`](crate::harness::veth) with `queues` receive and transmit queues on both ends (AF_XDP workers serve one
/// receive queue each).
pub fn veth_queues(a: &Netns, a_if: &str, b: &Netns, b_if: &str, queues: u32) {
    let q = queues.to_string();
    run_ok(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        &a.name,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        &b.name,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
    ]);
    a.up(a_if);
    b.up(b_if);
}
