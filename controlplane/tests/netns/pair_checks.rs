//! Checks shared by the tests that run two `tandemd` partners: leases replicated, no address
//! held by two clients (in the servers' tables and in what the clients saw), perfdhcp's ACKs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clients::Client;
use crate::harness::{poll, Lab, Lease, Tandemd};

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
