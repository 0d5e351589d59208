//! Hostile DHCP input against a running `tandemd` (UDP backend, two workers) in network
//! namespaces: an attacker namespace sends crafted requests (identities the RFCs call invalid,
//! a DISCOVER flood from one MAC, forged RELEASE and DECLINE of a real client's lease, relay
//! agent information without a trusted relay) while real clients (ISC dhclient, busybox udhcpc)
//! are served. Every attack must be a counted drop with its own reason, no lease may go to an
//! attacker identity, and the real client keeps its lease and renews it.
//!
//! Needs root, python3 and the clients of `deploy/install-deps.sh`; fails saying so otherwise,
//! never skips. Namespaces are `tdm-<pid>-<test>-<role>`, removed on drop.

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;

use std::net::Ipv4Addr;
use std::time::Duration;

use clients::{Client, Kind, Opts};
use harness::{bridge, counter, cpu_shared, poll, veth, Lab, Tandemd};

const BIND_TIMEOUT: Duration = Duration::from_secs(40);

/// The attacker: sends DHCP requests built from a JSON list of specs from UDP port 68 to the
/// broadcast address on eth1. Each spec: op-specific fields (see `build`).
const ATTACKER: &str = r#"
import json, socket, struct, sys
specs = json.loads(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth1")
s.bind(("0.0.0.0", 68))
def ip(a):
    return socket.inet_aton(a or "0.0.0.0")
def build(p):
    hw = bytes.fromhex(p.get("chaddr", "020000000000"))
    m = struct.pack("!BBBBIHH4s4s4s4s", 1, p.get("htype", 1), p.get("hlen", len(hw)), 0,
                    p["xid"], 0, 0x8000, ip(p.get("ciaddr")), b"\0" * 4, b"\0" * 4,
                    ip(p.get("giaddr")))
    m += hw.ljust(16, b"\0") + b"\0" * 192 + b"\x63\x82\x53\x63"
    m += bytes([53, 1, p["type"]])
    for code, hexval in p.get("options", []):
        v = bytes.fromhex(hexval)
        m += bytes([code, len(v)]) + v
    m += b"\xff"
    return m.ljust(300, b"\0")
n = 0
for p in specs:
    for i in range(p.get("repeat", 1)):
        q = dict(p)
        q["xid"] = p["xid"] + i
        s.sendto(build(q), ("255.255.255.255", 67))
        n += 1
print("sent", n)
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn hostile_requests_are_counted_drops_and_real_clients_keep_their_leases() {
    let _cpu = cpu_shared();
    let lab = Lab::new("hostile");
    let sw = lab.netns("sw");
    let s = lab.netns("s");
    let c = lab.netns("c");
    let c2 = lab.netns("c2");
    let x = lab.netns("x");
    veth(&s, "eth1", &sw, "tdmhs");
    veth(&c, "eth1", &sw, "tdmhc");
    veth(&c2, "eth1", &sw, "tdmhc2");
    veth(&x, "eth1", &sw, "tdmhx");
    bridge(&sw, "br0", &["tdmhs", "tdmhc", "tdmhc2", "tdmhx"]);
    s.addr("eth1", "10.86.0.1/24");
    // The attacker needs a route for its broadcasts (an address outside the range).
    x.addr("eth1", "10.86.0.250/24");
    let cfg = format!(
        "{}discover_rate_limit = 5\ntrusted_relays = [\"10.86.9.1\"]\n\n[dataplane]\ncores = [0, 1]\n\n\
         [[scope]]\nname = \"lan\"\nsubnet = \"10.86.0.0/24\"\ninterface = \"eth1\"\n\
         ranges = [\"10.86.0.100-10.86.0.200\"]\nlease_time = \"20s\"\nrenew_time = \"8s\"\n\
         rebind_time = \"15s\"\nauthoritative = true\n[scope.options]\nrouters = [\"10.86.0.1\"]\n",
        Tandemd::server_section(&lab, "10.86.0.1", &["eth1"])
    );
    let srv = Tandemd::start(&lab, &s, &cfg);

    // The victim: a real dhclient with its lease.
    let mut victim = Client::start(&lab, &c, "eth1", Kind::Dhclient, "victim", &Opts::default());
    let addr = victim.wait_bound(BIND_TIMEOUT);
    let victim_mac = victim.mac.replace(':', "");

    // The attacks.
    let a = addr.to_string();
    let sid = hex(&"10.86.0.1".parse::<Ipv4Addr>().expect("ip").octets());
    let specs = serde_json::json!([
        // Option 61 of one byte.
        {"type": 1, "xid": 100, "chaddr": "02aa00000001", "options": [[61, "01"]]},
        // hlen 0 and no client identifier.
        {"type": 1, "xid": 200, "chaddr": "02aa00000002", "hlen": 0},
        // Ethernet with a 4-byte hardware address.
        {"type": 1, "xid": 300, "chaddr": "02aa0003", "hlen": 4},
        // An all-zero chaddr and no client identifier.
        {"type": 1, "xid": 400, "chaddr": "000000000000"},
        // A REQUEST that names no address (no option 50, ciaddr 0).
        {"type": 3, "xid": 500, "chaddr": "02aa00000005"},
        // Relay agent information sent directly (no trusted relay).
        {"type": 1, "xid": 600, "chaddr": "02aa00000006", "options": [[82, "0103703137"]]},
        // A DISCOVER flood from one MAC: 200 in a row.
        {"type": 1, "xid": 1000, "chaddr": "02aa000000ff", "repeat": 200},
        // A forged RELEASE of the victim's address (another MAC).
        {"type": 7, "xid": 700, "chaddr": "02aa00000007", "ciaddr": a, "options": [[54, sid]]},
        // A forged DECLINE of it.
        {"type": 4, "xid": 800, "chaddr": "02aa00000008",
         "options": [[50, hex(&addr.octets())], [54, sid]]},
    ]);
    let out = x.exec(&["python3", "-c", ATTACKER, &specs.to_string()]);
    assert!(
        out.status.success(),
        "attacker failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let want = [
        ("drop_short_client_id", 1),
        ("drop_bad_hardware", 2),
        ("drop_zero_chaddr", 1),
        ("drop_bad_request", 1),
        ("drop_untrusted_relay", 1),
    ];
    // A forged RELEASE/DECLINE reaches the worker owning the forger's bucket: where that worker
    // holds the victim's binding it is `not_owner`, elsewhere the address is unknown to it
    // (`silent_unknown_lease`); either way nothing is released.
    let forged = |st: &serde_json::Value| {
        counter(st, "drop_not_owner") + counter(st, "silent_unknown_lease")
    };
    let counted = poll(Duration::from_secs(10), || {
        let st = srv.stats();
        (want.iter().all(|(k, n)| counter(&st, k) >= *n)
            && counter(&st, "drop_rate_limited") >= 180
            && forged(&st) >= 2)
            .then_some(st)
    });
    let st = counted.unwrap_or_else(|| panic!("attacks not all counted: {}", srv.stats()));
    for (k, n) in want {
        assert_eq!(counter(&st, k), n, "{k}: {st}");
    }
    assert_eq!(forged(&st), 2, "{st}");
    assert_eq!(counter(&st, "release") + counter(&st, "decline"), 2, "{st}");
    // The burst lets 10 of the flood's DISCOVERs through; they share one offer.
    let limited = counter(&st, "drop_rate_limited");
    assert!(
        (185..=190).contains(&limited),
        "drop_rate_limited {limited}: {st}"
    );
    assert_eq!(
        st["dropped"]["rate_limited"].as_u64(),
        Some(limited),
        "the reason is listed among the drops: {st}"
    );

    // No attacker identity holds a lease; the victim's is intact and it renews it.
    let leases = srv.leases();
    for l in &leases {
        let mac = l.mac.clone().unwrap_or_default().replace(':', "");
        assert!(
            !mac.starts_with("02aa") || (mac == "02aa000000ff" && l.state != "active"),
            "an attacker identity got a lease: {l:?}"
        );
    }
    let v = srv
        .lease(addr)
        .unwrap_or_else(|| panic!("the victim's lease is gone: {leases:#?}"));
    assert_eq!(v.state, "active", "{v:?}");
    assert_eq!(
        v.mac.as_deref().map(|m| m.replace(':', "")),
        Some(victim_mac),
        "{v:?}"
    );
    let ev = victim.wait_renewed(Duration::from_secs(30));
    assert_eq!(
        ev.ip,
        Some(addr),
        "the victim renewed another address: {ev:?}"
    );

    // Another real client is served right after the flood.
    let mut other = Client::start(&lab, &c2, "eth1", Kind::Udhcpc, "other", &Opts::default());
    let got = other.wait_bound(BIND_TIMEOUT);
    assert_ne!(got, addr);
    // Both UDP workers are in play (the steering programs keep each client on its owner).
    assert_eq!(st["udp"]["workers"].as_u64(), Some(2), "{st}");
}
