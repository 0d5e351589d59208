//! `tandemd` with the AF_XDP backend (`[dataplane] backend = "xdp"`) in network namespaces on
//! veth (native XDP): real clients (ISC dhclient, busybox udhcpc, and dhclient behind ISC
//! dhcrelay) get leases while the kernel's UDP stack in the server's namespace sees none of
//! their frames; `backend = "auto"` falls back to UDP where native XDP cannot attach; and
//! `backend = "xdp"` refuses an interface with two receive queues for one worker; and two
//! workers pinned to two cores serve a two-queue interface, handing frames to the worker that
//! owns the client's bucket and rebalancing their address shards, with real dhclient, dhcpcd and
//! udhcpc clients renewing through it, and every lease kept when the server restarts with one
//! worker.
//!
//! The tests need root and the tools of `deploy/install-deps.sh`; without them they fail with a
//! message saying so (they never skip). Namespaces are `tdm-<pid>-<test>-<role>` and are
//! removed on drop, also on failure.

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "netns/pcap.rs"]
mod pcap;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use clients::{dhcrelay, Client, Kind, Opts};
use harness::{
    bridge, cpu_exclusive, cpu_shared, in_range, perfdhcp, poll, run, veth, Lab, Netns, Proc,
    Tandemd, ADMIN, TANDEMCTL, TANDEMD,
};
use serde_json::Value;

const BIND_TIMEOUT: Duration = Duration::from_secs(40);

/// A `[[scope]]` table (lease 20 s).
fn scope(name: &str, subnet: &str, iface: Option<&str>, range: &str, router: &str) -> String {
    let iface = iface
        .map(|i| format!("interface = \"{i}\"\n"))
        .unwrap_or_default();
    format!(
        "\n[[scope]]\nname = \"{name}\"\nsubnet = \"{subnet}\"\n{iface}ranges = [\"{range}\"]\n\
         lease_time = \"20s\"\nauthoritative = true\n[scope.options]\nrouters = [\"{router}\"]\n"
    )
}

/// `[dataplane]` with `backend` and native XDP.
fn dataplane(backend: &str) -> String {
    format!("\n[dataplane]\nbackend = \"{backend}\"\nxdp_mode = \"native\"\n")
}

/// A `tandemd` run by this test (no UDP socket to wait for in XDP mode: ready when it logged
/// "tandemd serving" and answers `tandemctl stats`).
struct Daemon {
    ns: String,
    proc: Proc,
}

impl Daemon {
    fn start(lab: &Lab, ns: &Netns, config: &str) -> Daemon {
        let path = write_config(lab, ns, config);
        let mut proc = ns.spawn(lab, "tandemd", &[TANDEMD, "--config", &path]);
        let d_ns = ns.name.clone();
        let ready = poll(Duration::from_secs(20), || {
            if let Some(st) = proc.try_wait() {
                panic!("tandemd exited during startup ({st}):\n{}", proc.log_text());
            }
            (proc.log_text().contains("tandemd serving")
                && ctl(&d_ns, &["stats", "--json"]).status.success())
            .then_some(())
        });
        assert!(
            ready.is_some(),
            "tandemd not serving after 20 s:\n{}",
            proc.log_text()
        );
        Daemon { ns: d_ns, proc }
    }

    fn stats(&self) -> Value {
        json(&ctl(&self.ns, &["stats", "--json"]))
    }

    fn leases(&self) -> Value {
        json(&ctl(&self.ns, &["lease", "list", "--json"]))
    }

    /// The lease of `ip` once it is active.
    fn wait_active(&self, ip: Ipv4Addr) -> Value {
        poll(Duration::from_secs(10), || {
            self.leases().as_array().and_then(|a| {
                a.iter()
                    .find(|l| {
                        l["address"].as_str() == Some(&ip.to_string())
                            && l["state"].as_str() == Some("active")
                    })
                    .cloned()
            })
        })
        .unwrap_or_else(|| panic!("no active lease of {ip}: {}", self.leases()))
    }

    /// SIGTERM; must exit 0 within 10 s.
    fn stop(&mut self) {
        self.proc.signal("TERM");
        let st = self.proc.wait_exit(Duration::from_secs(10));
        assert!(
            st.is_some_and(|s| s.success()),
            "tandemd did not stop cleanly ({st:?}):\n{}",
            self.proc.log_text()
        );
    }
}

fn write_config(lab: &Lab, ns: &Netns, config: &str) -> String {
    let path: PathBuf = lab.write("tandem.toml", config);
    std::fs::create_dir_all(lab.path("state")).expect("state dir");
    let p = path.to_string_lossy().into_owned();
    let out = ns.exec(&[TANDEMD, "--check-config", &p]);
    assert!(
        out.status.success(),
        "tandemd --check-config rejected the test config:\n{}{}\n--- config:\n{config}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

fn ctl(ns: &str, args: &[&str]) -> Output {
    let mut argv = vec!["ip", "netns", "exec", ns, TANDEMCTL, "--admin", ADMIN];
    argv.extend_from_slice(args);
    run(&argv)
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "tandemctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tandemctl printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Counter `name` of the `xdp` object of the stats.
fn xdp(stats: &Value, name: &str) -> u64 {
    stats["xdp"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats have no xdp.{name}: {stats}"))
}

/// Datagrams the kernel UDP stack of `ns` received (delivered, to no port, or in error).
fn udp_seen(ns: &Netns) -> u64 {
    let snmp = String::from_utf8_lossy(&ns.exec(&["cat", "/proc/net/snmp"]).stdout).into_owned();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (
        lines.next().expect("Udp header"),
        lines.next().expect("Udp values"),
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| matches!(*n, "InDatagrams" | "NoPorts" | "InErrors" | "IgnoredMulti"))
        .map(|(_, v)| v.parse::<u64>().expect("counter"))
        .sum()
}

/// Frames of a pcap file (Ethernet link type): `(destination MAC, IPv4 source)` of each
/// IPv4/UDP frame.
fn pcap_udp_frames(path: &std::path::Path) -> Vec<([u8; 6], Ipv4Addr)> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    if data.len() < 24 {
        return out;
    }
    let le = data[0..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32_at(&data[at + 8..at + 12]) as usize;
        let Some(f) = data.get(at + 16..at + 16 + caplen) else {
            break;
        };
        at += 16 + caplen;
        if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
            continue;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&f[0..6]);
        out.push((mac, Ipv4Addr::new(f[26], f[27], f[28], f[29])));
    }
    out
}

fn mac_bytes(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    v.try_into().expect("six bytes")
}

/// The client's kernel resolves `server_ip` by ARP (the XDP program passes ARP, so the server's
/// kernel answers it): a datagram to the discard port makes the client's kernel ask.
fn assert_arp_resolves(client: &Netns, server_ip: &str, server_mac: &str) {
    let script = format!("echo arp > /dev/udp/{server_ip}/9");
    let out = client.exec(&["bash", "-c", &script]);
    assert!(out.status.success(), "{out:?}");
    let neigh = poll(Duration::from_secs(5), || {
        let n = client.ip(&format!("neigh show {server_ip}"));
        n.to_ascii_lowercase().contains(server_mac).then_some(n)
    });
    assert!(
        neigh.is_some(),
        "{} did not learn {server_ip} at {server_mac} by ARP: {:?}",
        client.name,
        client.ip(&format!("neigh show {server_ip}"))
    );
}

/// No XDP program left on `iface` of `ns`.
fn assert_detached(ns: &Netns, iface: &str) {
    let link = ns.ip(&format!("-d link show dev {iface}"));
    assert!(
        !link.contains("prog/xdp"),
        "an XDP program is still attached to {iface} after shutdown:\n{link}"
    );
}

/// dhclient and udhcpc, each on its own veth to the server (two interfaces, two AF_XDP sockets),
/// obtain leases through XDP; the redirect counter covers every DHCP frame they sent, and the
/// kernel UDP stack of the server saw none (no UDP socket on port 67 exists).
#[test]
fn real_clients_get_leases_through_af_xdp() {
    let _cpu = cpu_shared();
    let lab = Lab::new("xdp-direct");
    let s = lab.netns("s");
    let c1 = lab.netns("c1");
    let c2 = lab.netns("c2");
    veth(&s, "tdm0", &c1, "tdm0");
    veth(&s, "tdm1", &c2, "tdm0");
    s.addr("tdm0", "10.210.0.1/24");
    s.addr("tdm1", "10.210.1.1/24");
    let cfg = Tandemd::server_section(&lab, "10.210.0.1", &["tdm0", "tdm1"])
        + &dataplane("xdp")
        + &scope(
            "a",
            "10.210.0.0/24",
            Some("tdm0"),
            "10.210.0.100-10.210.0.150",
            "10.210.0.1",
        )
        + &scope(
            "b",
            "10.210.1.0/24",
            Some("tdm1"),
            "10.210.1.100-10.210.1.150",
            "10.210.1.1",
        );
    let mut srv = Daemon::start(&lab, &s, &cfg);
    let log = srv.proc.log_text();
    assert!(
        log.contains("backend=\"xdp\"") || log.contains("backend=xdp"),
        "{log}"
    );
    assert!(log.contains("xdp_mode=native"), "{log}");
    assert!(
        !s.udp_listening(67),
        "a UDP socket is open on port 67 in XDP mode"
    );
    let s0 = srv.stats();
    assert_eq!(s0["xdp"]["mode"], "tdm0=native,tdm1=native", "{s0}");
    let udp0 = udp_seen(&s);

    let cap1 = pcap::Capture::start(&lab, &c1, "tdm0", "c1-out", "udp and dst port 67");
    let cap2 = pcap::Capture::start(&lab, &c2, "tdm0", "c2-out", "udp and dst port 67");
    let mut dh = Client::start(
        &lab,
        &c1,
        "tdm0",
        Kind::Dhclient,
        "dhclient",
        &Opts::default(),
    );
    let mut ud = Client::start(&lab, &c2, "tdm0", Kind::Udhcpc, "udhcpc", &Opts::default());
    let ip1 = dh.wait_bound(BIND_TIMEOUT);
    let ip2 = ud.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(ip1, "10.210.0.100", "10.210.0.150"),
        "dhclient got {ip1}"
    );
    assert!(
        in_range(ip2, "10.210.1.100", "10.210.1.150"),
        "udhcpc got {ip2}"
    );
    let l1 = srv.wait_active(ip1);
    let l2 = srv.wait_active(ip2);
    assert_eq!(l1["mac"].as_str(), Some(dh.mac.as_str()), "{l1}");
    assert_eq!(l2["mac"].as_str(), Some(ud.mac.as_str()), "{l2}");
    std::thread::sleep(Duration::from_millis(500));
    let sent1 = pcap_udp_frames(&cap1.file).len() as u64;
    let sent2 = pcap_udp_frames(&cap2.file).len() as u64;
    let s1 = srv.stats();
    let redirected = xdp(&s1, "redirect") - xdp(&s0, "redirect");
    eprintln!(
        "dhclient sent {sent1}, udhcpc sent {sent2} DHCP frames; XDP redirected {redirected}; \
         stats: {s1}"
    );
    assert!(
        sent1 >= 2 && sent2 >= 2,
        "captures: {sent1} and {sent2} frames"
    );
    assert!(
        redirected >= sent1 + sent2,
        "XDP redirected {redirected} frames, the clients sent {}: {s1}",
        sent1 + sent2
    );
    assert_eq!(xdp(&s1, "redirect_failed"), 0, "{s1}");
    assert!(xdp(&s1, "tx_frames") >= 4, "{s1}");
    // Every redirected frame carries the XDP program's time stamp, so the queue wait is
    // measured per frame; each ACK was held for its fdatasync, which ran on the sync thread.
    let stage = |name: &str| s1["stages"][name]["count"].as_u64().unwrap_or(0);
    // Unless this kernel refused the stamp's helper: then the daemon says so and the stage
    // stays empty.
    if s1["xdp"]["rx_stamps"] == serde_json::json!(false) {
        eprintln!("this kernel refuses bpf_xdp_adjust_meta: the program runs without stamps");
        assert_eq!(stage("queue_wait"), 0, "{s1}");
    } else {
        assert_eq!(s1["xdp"]["rx_stamps"], serde_json::json!(true), "{s1}");
        assert!(
            stage("queue_wait") >= redirected,
            "queue_wait counted {} of {redirected} frames: {s1}",
            stage("queue_wait")
        );
        assert!(
            s1["stages"]["queue_wait"]["p50_le_us"].as_u64().is_some(),
            "{s1}"
        );
    }
    assert!(stage("ack_wait") >= 2, "{s1}");
    assert!(stage("fdatasync") >= 1, "{s1}");
    assert!(stage("journal_write") >= 2, "{s1}");
    assert!(stage("engine") >= 1 && stage("transmit") >= 4, "{s1}");
    assert_eq!(
        udp_seen(&s) - udp0,
        0,
        "the server's kernel UDP stack saw datagrams during the XDP run"
    );
    // ARP and ICMP still reach the kernel, which answers them.
    let not_ipv4 = xdp(&s1, "not_ipv4");
    assert_arp_resolves(&c1, "10.210.0.1", &s.mac("tdm0"));
    assert_arp_resolves(&c2, "10.210.1.1", &s.mac("tdm1"));
    assert!(
        xdp(&srv.stats(), "not_ipv4") > not_ipv4,
        "no ARP frame passed the XDP program"
    );
    drop(dh);
    drop(ud);
    srv.stop();
    assert!(
        srv.proc.log_text().contains("XDP steering detached"),
        "{}",
        srv.proc.log_text()
    );
    assert_detached(&s, "tdm0");
    assert_detached(&s, "tdm1");
}

/// dhclient behind ISC dhcrelay: the relay unicasts to the server's address, the XDP program
/// redirects it, and the reply frame goes to the relay's MAC address. The worker busy-polls
/// (`busy_poll = true`, pinned to core 1).
#[test]
fn relayed_client_gets_a_lease_through_af_xdp() {
    let _cpu = cpu_shared();
    let lab = Lab::new("xdp-relay");
    let s = lab.netns("s");
    let r = lab.netns("r");
    let c = lab.netns("c");
    veth(&s, "tdm0", &r, "up0");
    veth(&r, "down0", &c, "tdm0");
    s.addr("tdm0", "10.211.1.1/30");
    s.ip("route add 10.211.2.0/24 via 10.211.1.2");
    r.addr("up0", "10.211.1.2/30");
    r.addr("down0", "10.211.2.1/24");
    r.forwarding();
    let cfg = Tandemd::server_section(&lab, "10.211.1.1", &["tdm0"])
        + &dataplane("xdp")
        + "cores = [1]\nbusy_poll = true\n"
        + &scope(
            "relayed",
            "10.211.2.0/24",
            None,
            "10.211.2.100-10.211.2.150",
            "10.211.2.1",
        );
    let mut srv = Daemon::start(&lab, &s, &cfg);
    let log = srv.proc.log_text();
    assert!(
        log.contains("busy_poll=true") && log.contains("core=1"),
        "{log}"
    );
    let s0 = srv.stats();
    let udp0 = udp_seen(&s);
    let relay = dhcrelay(&lab, &r, "dhcrelay", "down0", "up0", "10.211.1.1");
    let cap = pcap::Capture::start(&lab, &r, "up0", "relay-in", "udp and src port 67");
    let mut cli = Client::start(
        &lab,
        &c,
        "tdm0",
        Kind::Dhclient,
        "relayed",
        &Opts::default(),
    );
    let ip = cli.wait_bound(BIND_TIMEOUT);
    assert!(
        in_range(ip, "10.211.2.100", "10.211.2.150"),
        "client got {ip}"
    );
    let l = srv.wait_active(ip);
    assert_eq!(l["mac"].as_str(), Some(cli.mac.as_str()), "{l}");
    let log = relay.log_text();
    assert!(
        log.contains(&format!("Forwarded BOOTREPLY for {}", cli.mac)),
        "relay log:\n{log}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let relay_mac = mac_bytes(&r.mac("up0"));
    // The capture also holds the relay's own requests to the server (source port 67 as well).
    let server = Ipv4Addr::new(10, 211, 1, 1);
    let replies: Vec<([u8; 6], Ipv4Addr)> = pcap_udp_frames(&cap.file)
        .into_iter()
        .filter(|(_, src)| *src == server)
        .collect();
    assert!(replies.len() >= 2, "replies seen at the relay: {replies:?}");
    assert!(
        replies.iter().all(|(mac, _)| *mac == relay_mac),
        "reply frames not addressed to the relay's MAC {relay_mac:02x?}: {replies:02x?}"
    );
    let s1 = srv.stats();
    assert!(
        xdp(&s1, "redirect") - xdp(&s0, "redirect") >= 2,
        "relayed requests were not redirected: {s1}"
    );
    assert_eq!(udp_seen(&s) - udp0, 0, "the kernel UDP stack saw DHCP");
    // The relay found the server's MAC by ARP, answered by the server's kernel.
    let neigh = r.ip("neigh show 10.211.1.1");
    assert!(
        neigh.to_ascii_lowercase().contains(&s.mac("tdm0")),
        "{neigh}"
    );
    drop(cli);
    srv.stop();
    assert_detached(&s, "tdm0");
}

/// `backend = "auto"` with native XDP on a bridge (no native XDP support): the daemon says why
/// and serves over UDP, and a client gets a lease.
#[test]
fn auto_backend_falls_back_to_udp_when_xdp_cannot_attach() {
    let _cpu = cpu_shared();
    let lab = Lab::new("xdp-auto");
    let s = lab.netns("s");
    let c = lab.netns("c");
    veth(&s, "tdm0", &c, "tdm0");
    bridge(&s, "tdmbr0", &["tdm0"]);
    s.addr("tdmbr0", "10.212.0.1/24");
    let cfg = Tandemd::server_section(&lab, "10.212.0.1", &["tdmbr0"])
        + &dataplane("auto")
        + &scope(
            "lan",
            "10.212.0.0/24",
            Some("tdmbr0"),
            "10.212.0.100-10.212.0.150",
            "10.212.0.1",
        );
    let mut srv = Daemon::start(&lab, &s, &cfg);
    let log = srv.proc.log_text();
    assert!(
        log.contains("falling back to the UDP backend"),
        "no fallback message:\n{log}"
    );
    assert!(
        log.contains("tdmbr0"),
        "the reason names no interface:\n{log}"
    );
    assert!(s.udp_listening(67), "no UDP socket after the fallback");
    let st = srv.stats();
    assert!(st.get("xdp").is_none(), "xdp stats in UDP mode: {st}");
    let status = json(&ctl(&srv.ns, &["status", "--json"]));
    assert_eq!(status["backend"], "udp", "{status}");
    assert_detached(&s, "tdmbr0");
    let mut cli = Client::start(&lab, &c, "tdm0", Kind::Udhcpc, "udhcpc", &Opts::default());
    let ip = cli.wait_bound(BIND_TIMEOUT);
    srv.wait_active(ip);
    drop(cli);
    srv.stop();
}

/// `backend = "xdp"` on an interface with two receive queues fails at start-up and says how to
/// fix it.
#[test]
fn xdp_backend_refuses_an_interface_with_two_queues() {
    let _cpu = cpu_shared();
    let lab = Lab::new("xdp-queues");
    let s = lab.netns("s");
    let c = lab.netns("c");
    veth_queues(&s, &c, 2, 1);
    s.addr("tdm0", "10.213.0.1/24");
    c.up("tdm0");
    let cfg = Tandemd::server_section(&lab, "10.213.0.1", &["tdm0"])
        + &dataplane("xdp")
        + &scope(
            "lan",
            "10.213.0.0/24",
            Some("tdm0"),
            "10.213.0.100-10.213.0.150",
            "10.213.0.1",
        );
    let path = write_config(&lab, &s, &cfg);
    let mut p = s.spawn(&lab, "tandemd", &[TANDEMD, "--config", &path]);
    let st = p
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("tandemd kept running:\n{}", p.log_text()));
    let log = p.log_text();
    assert!(!st.success(), "tandemd exited 0:\n{log}");
    assert!(
        log.contains("tdm0 has 2 receive queue(s), but 1 AF_XDP worker(s)")
            && log.contains("ethtool -L tdm0 combined 1"),
        "{log}"
    );
    assert_detached(&s, "tdm0");
}

/// A veth pair `tdm0` between `a` (`queues_a` receive and transmit queues) and `b`
/// (`queues_b`).
fn veth_queues(a: &Netns, b: &Netns, queues_a: u32, queues_b: u32) {
    let (qa, qb) = (queues_a.to_string(), queues_b.to_string());
    let out = run(&[
        "ip",
        "link",
        "add",
        "tdm0",
        "netns",
        &a.name,
        "numrxqueues",
        &qa,
        "numtxqueues",
        &qa,
        "type",
        "veth",
        "peer",
        "name",
        "tdm0",
        "netns",
        &b.name,
        "numrxqueues",
        &qb,
        "numtxqueues",
        &qb,
    ]);
    assert!(out.status.success(), "{out:?}");
}

/// A MAC `02:74:ww:00:00:nn` whose RFC 3074 bucket belongs to worker `worker` of 2.
fn mac_for_worker(worker: usize, skip: usize) -> String {
    (0u8..=255)
        .map(|n| [0x02, 0x74, worker as u8, 0, 0, n])
        .filter(|m| usize::from(tandem_dataplane::hash::client_bucket(None, m, 6)) % 2 == worker)
        .nth(skip)
        .map(|m| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .expect("some MAC hashes to each worker")
}

/// Two AF_XDP workers pinned to cores 0 and 1 serve a two-queue veth (queue k → worker k):
/// DHCP broadcasts of several clients share one flow and so one queue, so the clients whose
/// bucket the other worker owns are handed to it through the handoff ring and answered from its
/// own socket. dhclient (worker 0's bucket), dhcpcd and udhcpc (worker 1's) bind and renew; the
/// address shards start lopsided (exclusions leave worker 1 two addresses) and the rebalancer
/// moves addresses so perfdhcp's clients of both workers are served; no address is leased twice.
/// Restarted with one worker, the server keeps every lease of both workers' journals.
#[test]
fn two_workers_hand_off_rebalance_and_keep_leases_across_a_restart() {
    let _cpu = cpu_exclusive();
    let lab = Lab::new("xdp-2w");
    let s = lab.netns("s");
    let lan = lab.netns("lan");
    let load = lab.netns("load");
    let cs: Vec<Netns> = ["c1", "c2", "c3"].iter().map(|r| lab.netns(r)).collect();
    veth_queues(&s, &lan, 2, 2);
    s.up("tdm0");
    s.addr("tdm0", "10.215.0.1/24");
    let mut ports = vec!["tdm0".to_string()];
    for (i, c) in cs.iter().chain(std::iter::once(&load)).enumerate() {
        let port = format!("tdm{}", i + 1);
        veth(&lan, &port, c, "tdm0");
        ports.push(port);
    }
    let port_refs: Vec<&str> = ports.iter().map(String::as_str).collect();
    bridge(&lan, "tdmbr0", &port_refs);
    // perfdhcp needs an address on the interface it sends from (outside the ranges).
    load.addr("tdm0", "10.215.0.250/24");
    // dhclient in worker 0's buckets, dhcpcd and udhcpc in worker 1's.
    let macs = [
        mac_for_worker(0, 0),
        mac_for_worker(1, 0),
        mac_for_worker(1, 1),
    ];
    for (c, mac) in cs.iter().zip(&macs) {
        c.ip(&format!("link set tdm0 address {mac}"));
    }
    // 40 addresses, shard 0 = .100-.119, shard 1 = .120-.139 of which .122-.139 are excluded:
    // 22 free, 20 with worker 0 and 2 with worker 1 at start.
    let scope_text =
        "\n[[scope]]\nname = \"lan\"\nsubnet = \"10.215.0.0/24\"\ninterface = \"tdm0\"\n\
         ranges = [\"10.215.0.100-10.215.0.139\"]\nexclusions = [\"10.215.0.122-10.215.0.139\"]\n\
         lease_time = \"20s\"\nauthoritative = true\n[scope.options]\nrouters = [\"10.215.0.1\"]\n";
    let two = Tandemd::server_section(&lab, "10.215.0.1", &["tdm0"])
        + "\n[dataplane]\nbackend = \"xdp\"\nxdp_mode = \"native\"\ncores = [0, 1]\n"
        + scope_text;
    let mut srv = Daemon::start(&lab, &s, &two);
    let log = srv.proc.log_text();
    for needle in [
        "core=0",
        "core=1",
        "AF_XDP worker pinned",
        "queue=1",
        "worker=1",
    ] {
        assert!(log.contains(needle), "no {needle:?} in the log:\n{log}");
    }
    // The rebalancer evens out the lopsided shards before any client asks.
    let moved = poll(Duration::from_secs(5), || {
        srv.proc
            .log_text()
            .contains("address shards rebalanced")
            .then_some(())
    });
    assert!(moved.is_some(), "no rebalancing:\n{}", srv.proc.log_text());

    let s0 = srv.stats();
    let kinds = [
        (Kind::Dhclient, "dhclient"),
        (Kind::Dhcpcd, "dhcpcd"),
        (Kind::Udhcpc, "udhcpc"),
    ];
    let mut clients: Vec<Client> = cs
        .iter()
        .zip(kinds)
        .map(|(c, (k, n))| Client::start(&lab, c, "tdm0", k, n, &Opts::default()))
        .collect();
    let ips: Vec<Ipv4Addr> = clients
        .iter_mut()
        .map(|c| c.wait_bound(BIND_TIMEOUT))
        .collect();
    for (ip, mac) in ips.iter().zip(&macs) {
        assert!(in_range(*ip, "10.215.0.100", "10.215.0.121"), "{ip}");
        let l = srv.wait_active(*ip);
        assert_eq!(l["mac"].as_str(), Some(mac.as_str()), "{l}");
    }
    let s1 = srv.stats();
    let handed = xdp(&s1, "handoff_out") - xdp(&s0, "handoff_out");
    eprintln!("handoffs: {handed}; stats {s1}");
    assert!(handed >= 2, "no frame was handed to its owner: {s1}");
    assert_eq!(
        xdp(&s1, "handoff_in"),
        xdp(&s1, "handoff_out"),
        "every handed frame was answered by its owner: {s1}"
    );
    assert_eq!(xdp(&s1, "handoff_full"), 0, "{s1}");
    assert_eq!(xdp(&s1, "redirect_failed"), 0, "{s1}");

    // Load from 16 more clients (perfdhcp, both workers' buckets); 19 of the 22 addresses.
    let text = perfdhcp(&load, "tdm0", 40, 16, 6, "02:75:00:00:00:00");
    eprintln!("{text}");
    // The three real clients renew through XDP (lease 20 s, renewal at 10 s) and keep their
    // addresses.
    for (c, ip) in clients.iter_mut().zip(&ips) {
        let ev = c.wait_renewed(Duration::from_secs(30));
        assert_eq!(ev.ip, Some(*ip), "{} renewed to {ev:?}", c.kind.name());
    }
    let leases = srv.leases();
    let active: Vec<&Value> = leases
        .as_array()
        .expect("lease list")
        .iter()
        .filter(|l| l["state"].as_str() == Some("active"))
        .collect();
    let mut addrs: Vec<&str> = active
        .iter()
        .filter_map(|l| l["address"].as_str())
        .collect();
    let mut owners: Vec<&str> = active.iter().filter_map(|l| l["mac"].as_str()).collect();
    let n = addrs.len();
    addrs.sort_unstable();
    addrs.dedup();
    owners.sort_unstable();
    owners.dedup();
    assert_eq!(addrs.len(), n, "an address is leased twice: {leases}");
    assert_eq!(owners.len(), n, "a client holds two leases: {leases}");
    let perf_clients = owners.iter().filter(|m| m.starts_with("02:75")).count();
    assert!(
        perf_clients >= 8,
        "only {perf_clients} perfdhcp clients hold a lease (rebalancing should have served both workers' clients): {leases}"
    );
    let before: Vec<(String, String)> = active
        .iter()
        .map(|l| {
            (
                l["address"].as_str().unwrap_or_default().to_string(),
                l["mac"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    drop(clients);
    srv.stop();
    assert_detached(&s, "tdm0");

    // One worker on one queue now: both workers' journals are read and merged, worker 1's is
    // emptied, and every binding is there with its client.
    // (Native XDP on veth needs at least as many receive queues as the peer has transmit
    // queues: shrink both ends.)
    s.exec_ok(&["ethtool", "-L", "tdm0", "rx", "1", "tx", "1"]);
    lan.exec_ok(&["ethtool", "-L", "tdm0", "rx", "1", "tx", "1"]);
    let one = two.replace("cores = [0, 1]", "cores = [0]");
    let mut srv = Daemon::start(&lab, &s, &one);
    let log = srv.proc.log_text();
    assert!(log.contains("journals_rewritten=1"), "{log}");
    let after = srv.leases();
    for (addr, mac) in &before {
        let l = after
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|l| l["address"].as_str() == Some(addr.as_str()))
            })
            .unwrap_or_else(|| {
                panic!("the binding of {addr} was lost across the restart: {after}")
            });
        assert_eq!(l["mac"].as_str(), Some(mac.as_str()), "{l}");
    }
    srv.stop();
    assert_detached(&s, "tdm0");
}
