//! ISC dhcpd 4.4 (Debian isc-dhcp-server) as the failover partner of a running `tandemd`, with
//! real clients (ISC dhclient, busybox udhcpc, dhcpcd) and perfdhcp on one bridged link:
//!
//! - both roles: Tandem primary with dhcpd secondary, and the other way round, Tandem on the
//!   UDP backend and on two AF_XDP workers of a two-queue link. Both servers
//!   reach NORMAL, both answer their share of the clients (load balance, split 128 / 50 %),
//!   and every current lease of either server is in the other's table for the same client
//!   (Tandem's `tandemctl lease list`, dhcpd's `dhcpd.leases`);
//! - dhcpd stopped with SIGTERM and started again on the same leases file: meanwhile Tandem
//!   serves every client alone (leases capped at MCLT); dhcpd resumes from its saved state
//!   through STARTUP back to NORMAL with Tandem, the leases from before are still on both
//!   sides, and those Tandem gave alone reach dhcpd.
//!
//! The tests need root and the tools of `deploy/install-deps.sh` plus isc-dhcp-server; without
//! them they fail saying so (they never skip). Namespaces are `tdm-<pid>-<test>-<role>` and are
//! removed on drop, also on failure; only the processes the test started are stopped, by PID.
//! With `TANDEM_TEST_KEEP=1` the scratch directory (logs, `dhcpd.leases`, and `fo647.pcap`, the
//! failover link as seen from Tandem's side, for `tshark -d tcp.port==647,dhcpfo`) is kept.

#[allow(dead_code)]
#[path = "netns/clients.rs"]
mod clients;
#[allow(dead_code)]
#[path = "netns/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "netns/pair_checks.rs"]
mod pair_checks;
#[allow(dead_code)]
#[path = "netns/pcap.rs"]
mod pcap;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clients::{Client, Kind, Opts};
use harness::{bridge, counter, cpu_exclusive, poll, veth, Lab, Netns, Proc, Tandemd};
use serde_json::Value;

/// The relationship's name, on both servers.
const NAME: &str = "pair";
const DHCPD: &str = "/usr/sbin/dhcpd";
const TANDEM_IP: &str = "10.81.0.2";
const ISC_IP: &str = "10.81.0.3";
const RANGE: (&str, &str) = ("10.81.0.10", "10.81.0.250");
const MCLT: u64 = 10;
/// Lease time on both servers (clients first get MCLT, then this once the partner knows).
const LEASE: u64 = 300;
/// Both servers NORMAL from a fresh start (both go through RECOVER) or after a restart.
const NORMAL_TIMEOUT: Duration = Duration::from_secs(60);
const BIND_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the two lease tables may take to agree after a change.
const AGREE_TIMEOUT: Duration = Duration::from_secs(10);
/// A lease counts as current when it ends more than this many seconds from now.
const MARGIN: u64 = 3;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How Tandem receives DHCP.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Plane {
    /// The kernel UDP backend, one worker.
    Udp,
    /// Two AF_XDP workers (cores 0 and 1) on a two-queue link.
    XdpTwoWorkers,
}

/// Which server is the primary.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Primary {
    Tandem,
    Isc,
}

fn tandem_config(lab: &Lab, primary: Primary, plane: Plane) -> String {
    let role = match primary {
        Primary::Tandem => "primary",
        Primary::Isc => "secondary",
    };
    let dataplane = match plane {
        Plane::Udp => "",
        Plane::XdpTwoWorkers => {
            "\n[dataplane]\nbackend = \"xdp\"\nxdp_mode = \"native\"\ncores = [0, 1]\n"
        }
    };
    format!(
        "{}{dataplane}\n[[scope]]\nname = \"lan\"\nsubnet = \"10.81.0.0/24\"\ninterface = \"eth1\"\n\
         ranges = [\"{}-{}\"]\nlease_time = \"{LEASE}s\"\nauthoritative = true\n\
         [scope.options]\nrouters = [\"10.81.0.1\"]\n\n\
         [[failover]]\nname = \"{NAME}\"\nrole = \"{role}\"\npartner = \"{ISC_IP}\"\n\
         listen = \"{TANDEM_IP}\"\nmode = \"load-balance\"\nload_balance_percent = 50\n\
         mclt = \"{MCLT}s\"\nmax_response_delay = \"5s\"\nmax_unacked_updates = 10\n\
         startup_wait = \"2s\"\nscopes = [\"lan\"]\n",
        Tandemd::server_section_named(lab, "tandem", TANDEM_IP, &["eth1"]),
        RANGE.0,
        RANGE.1,
    )
}

/// dhcpd's configuration: the same subnet, range, lease time and router as Tandem's scope, and
/// the matching failover peer (MCLT and split only on the primary, as dhcpd requires).
///
/// `server-id-check true`: without it dhcpd also ACKs a broadcast DHCPREQUEST that names
/// Tandem's server identifier once it knows the lease as active (a deliberate choice in its
/// request handling), so both servers would answer the second exchange of Tandem's clients.
fn isc_config(primary: Primary) -> String {
    let role = match primary {
        Primary::Isc => format!("primary;\n  mclt {MCLT};\n  split 128;"),
        Primary::Tandem => "secondary;".to_string(),
    };
    format!(
        "authoritative;\nddns-update-style none;\ndefault-lease-time {LEASE};\n\
         max-lease-time {LEASE};\nping-check false;\nserver-id-check true;\n\
         failover peer \"{NAME}\" {{\n  {role}\n  address {ISC_IP};\n  port 647;\n  \
         peer address {TANDEM_IP};\n  peer port 647;\n  max-response-delay 5;\n  \
         max-unacked-updates 10;\n  load balance max seconds 3;\n}}\n\
         subnet 10.81.0.0 netmask 255.255.255.0 {{\n  option routers 10.81.0.1;\n  pool {{\n    \
         failover peer \"{NAME}\";\n    range {} {};\n  }}\n}}\n",
        RANGE.0, RANGE.1
    )
}

// ----- dhcpd's leases file and log ----------------------------------------------------------

/// The last record dhcpd wrote for one address in its leases file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IscLease {
    /// `binding state` (active, free, backup, expired, released, ...).
    state: String,
    /// `hardware ethernet`, lowercase.
    mac: Option<String>,
    /// `ends`, Unix seconds (`None` for `ends never`).
    ends: Option<u64>,
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d`.
fn days_since_epoch(y: i64, m: i64, d: i64) -> i64 {
    // Count years from March, so that the leap day is the last day of the counted year.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let cycle = y.div_euclid(400);
    let year_in_cycle = y - cycle * 400;
    let day_in_year = (153 * m + 2) / 5 + d - 1;
    let day_in_cycle = year_in_cycle * 365 + year_in_cycle / 4 - year_in_cycle / 100 + day_in_year;
    cycle * 146_097 + day_in_cycle - 719_468
}

/// A time of dhcpd's leases file after the keyword: `W YYYY/MM/DD HH:MM:SS` (UTC), or
/// `epoch N` (with `db-time-format local`); `None` for `never` or anything unreadable.
fn isc_time(words: &[&str]) -> Option<u64> {
    match words {
        ["epoch", n, ..] => n.parse().ok(),
        [_weekday, date, time, ..] => {
            let d: Vec<i64> = date
                .split('/')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            let t: Vec<i64> = time
                .split(':')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            let ([y, mo, da], [h, mi, s]) = (d.as_slice(), t.as_slice()) else {
                return None;
            };
            let secs = days_since_epoch(*y, *mo, *da) * 86_400 + h * 3600 + mi * 60 + s;
            u64::try_from(secs).ok()
        }
        _ => None,
    }
}

/// Every address of a dhcpd leases file with its last complete `lease A.B.C.D { ... }` record
/// (dhcpd appends a new record on every change; an unfinished record at the end is ignored).
fn parse_isc_leases(text: &str) -> BTreeMap<Ipv4Addr, IscLease> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(Ipv4Addr, IscLease)> = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("lease ") {
            cur = rest.trim_end_matches('{').trim().parse().ok().map(|a| {
                (
                    a,
                    IscLease {
                        state: String::new(),
                        mac: None,
                        ends: None,
                    },
                )
            });
            continue;
        }
        let Some((_, lease)) = cur.as_mut() else {
            continue;
        };
        if l == "}" {
            if let Some((a, lease)) = cur.take() {
                out.insert(a, lease);
            }
            continue;
        }
        // A statement ends at its `;` (a comment may follow it).
        let stmt = l.split(';').next().unwrap_or_default();
        let words: Vec<&str> = stmt.split_whitespace().collect();
        match words.as_slice() {
            ["binding", "state", s] => lease.state = s.to_string(),
            ["hardware", "ethernet", m] => lease.mac = Some(m.to_ascii_lowercase()),
            ["ends", rest @ ..] => lease.ends = isc_time(rest),
            _ => {}
        }
    }
    out
}

/// The state dhcpd last logged moving to ("failover peer pair: I move from X to Y").
fn isc_state(log: &str) -> Option<String> {
    isc_moves(log).last().map(|(_, to)| to.clone())
}

/// dhcpd's own state changes, in order, as (from, to).
fn isc_moves(log: &str) -> Vec<(String, String)> {
    let prefix = format!("failover peer {NAME}: I move from ");
    log.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|r| r.split_once(" to "))
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .collect()
}

/// dhcpd's DHCPACKs as (address, MAC): "DHCPACK on A.B.C.D to aa:bb:.. [(name)] via eth1".
fn isc_acks(log: &str) -> Vec<(Ipv4Addr, String)> {
    log.lines()
        .filter_map(|l| l.strip_prefix("DHCPACK on "))
        .filter_map(|r| {
            let w: Vec<&str> = r.split_whitespace().collect();
            match w.as_slice() {
                [ip, "to", mac, ..] => Some((ip.parse().ok()?, mac.to_ascii_lowercase())),
                _ => None,
            }
        })
        .collect()
}

/// dhcpd's last 60 failover-related log lines (for failure messages).
fn isc_failover_lines(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("failover")
                || l.contains("peer")
                || l.contains("bind update")
                || l.contains("reject")
                || l.contains("pool")
        })
        .collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

// ----- the lab --------------------------------------------------------------------------------

/// Tandem, dhcpd, perfdhcp and the clients on one bridge. Fields drop in order: the processes
/// first, then the namespaces, then the scratch directory (which dumps every log on failure).
struct Setup {
    tandem: Tandemd,
    dhcpd: Option<Proc>,
    _cap: pcap::Capture,
    /// How many times dhcpd was started (its logs are `dhcpd-<n>.log`).
    dhcpd_runs: u32,
    /// When the current dhcpd run was started.
    dhcpd_started: Instant,
    primary: Primary,
    c_ns: Vec<Netns>,
    p_ns: Netns,
    d_ns: Netns,
    _t_ns: Netns,
    _sw: Netns,
    lab: Lab,
}

fn setup(tag: &str, primary: Primary, clients: usize, plane: Plane) -> Setup {
    let lab = Lab::new(tag);
    assert!(
        Path::new(DHCPD).exists(),
        "{DHCPD} missing: install isc-dhcp-server (Debian package)"
    );
    let sw = lab.netns("sw");
    let t_ns = lab.netns("t");
    let d_ns = lab.netns("d");
    let p_ns = lab.netns("p");
    match plane {
        Plane::Udp => veth(&t_ns, "eth1", &sw, "tdmit"),
        Plane::XdpTwoWorkers => pair_checks::veth_queues(&t_ns, "eth1", &sw, "tdmit", 2),
    }
    veth(&d_ns, "eth1", &sw, "tdmid");
    veth(&p_ns, "eth1", &sw, "tdmip");
    let mut ports = vec!["tdmit".to_string(), "tdmid".into(), "tdmip".into()];
    let mut c_ns = Vec::new();
    for i in 0..clients {
        let ns = lab.netns(&format!("c{i}"));
        let p = format!("tdmic{i}");
        veth(&ns, "eth1", &sw, &p);
        ports.push(p);
        c_ns.push(ns);
    }
    let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
    bridge(&sw, "br0", &refs);
    t_ns.addr("eth1", &format!("{TANDEM_IP}/24"));
    d_ns.addr("eth1", &format!("{ISC_IP}/24"));
    // perfdhcp's interface needs an address (outside the range).
    p_ns.addr("eth1", "10.81.0.254/24");
    lab.write("dhcpd.conf", &isc_config(primary));
    lab.write("dhcpd.leases", "");
    let cap = pcap::Capture::start(&lab, &t_ns, "eth1", "fo647", "tcp port 647");
    let tandem = Tandemd::start_named(
        &lab,
        &t_ns,
        "tandem",
        &tandem_config(&lab, primary, plane),
        &[],
    );
    let mut s = Setup {
        tandem,
        dhcpd: None,
        _cap: cap,
        dhcpd_runs: 0,
        dhcpd_started: Instant::now(),
        primary,
        c_ns,
        p_ns,
        d_ns,
        _t_ns: t_ns,
        _sw: sw,
        lab,
    };
    s.start_dhcpd();
    s
}

impl Setup {
    /// Start dhcpd in the foreground on the lab's config and leases file; returns once it
    /// serves ("Server starting service.").
    fn start_dhcpd(&mut self) {
        self.dhcpd_runs += 1;
        self.dhcpd_started = Instant::now();
        let name = format!("dhcpd-{}", self.dhcpd_runs);
        let path = |f: &str| self.lab.path(f).display().to_string();
        let (cf, lf, pf) = (path("dhcpd.conf"), path("dhcpd.leases"), path("dhcpd.pid"));
        let mut p = self.d_ns.spawn(
            &self.lab,
            &name,
            &[
                DHCPD, "-4", "-f", "-d", "-cf", &cf, "-lf", &lf, "-pf", &pf, "eth1",
            ],
        );
        let up = poll(Duration::from_secs(15), || {
            if let Some(st) = p.try_wait() {
                panic!("dhcpd exited during startup ({st}):\n{}", p.log_text());
            }
            p.log_text()
                .contains("Server starting service.")
                .then_some(())
        });
        assert!(
            up.is_some(),
            "dhcpd not serving after 15 s:\n{}",
            p.log_text()
        );
        self.dhcpd = Some(p);
    }

    /// The current dhcpd run's log.
    fn isc_log(&self) -> String {
        self.dhcpd.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Every dhcpd run's log, in order.
    fn isc_logs(&self) -> String {
        (1..=self.dhcpd_runs)
            .map(|i| {
                fs::read_to_string(self.lab.path(&format!("dhcpd-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn leases_file(&self) -> PathBuf {
        self.lab.path("dhcpd.leases")
    }

    fn isc_leases(&self) -> BTreeMap<Ipv4Addr, IscLease> {
        parse_isc_leases(&fs::read_to_string(self.leases_file()).unwrap_or_default())
    }

    fn assert_dhcpd_alive(&mut self) {
        if let Some(p) = self.dhcpd.as_mut() {
            if let Some(st) = p.try_wait() {
                panic!("dhcpd exited ({st}):\n{}", p.log_text());
            }
        }
    }

    /// `tandemctl failover show pair --json`.
    fn fo(&self) -> Value {
        self.tandem.ctl_json(&["failover", "show", NAME, "--json"])
    }

    fn tandem_state(&self) -> String {
        self.fo()
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    }

    /// Both sides' view, for failure messages.
    fn report(&self) -> String {
        format!(
            "Tandem: {}\ndhcpd state changes (current run): {:?}\ndhcpd failover lines (all runs):\n{}",
            self.fo(),
            isc_moves(&self.isc_log()),
            isc_failover_lines(&self.isc_logs())
        )
    }

    /// Wait until Tandem is NORMAL with its partner NORMAL and dhcpd's current run last moved
    /// to normal; returns the time since dhcpd was started.
    fn wait_both_normal(&mut self, timeout: Duration) -> Duration {
        let ok = poll(timeout, || {
            self.assert_dhcpd_alive();
            let fo = self.fo();
            let tandem_ok = fo.get("state").and_then(Value::as_str) == Some("NORMAL")
                && fo.get("partner_state").and_then(Value::as_str) == Some("NORMAL")
                && fo.get("connected").and_then(Value::as_bool) == Some(true);
            (tandem_ok && isc_state(&self.isc_log()).as_deref() == Some("normal")).then_some(())
        });
        if ok.is_none() {
            panic!("not both NORMAL after {timeout:?}\n{}", self.report());
        }
        self.dhcpd_started.elapsed()
    }

    /// perfdhcp on the shared link: `clients` new clients at `rate`/s for `secs` s, MACs from
    /// `base`; returns its output.
    fn perfdhcp(&self, rate: u32, clients: u32, secs: u32, base: &str) -> String {
        harness::perfdhcp(&self.p_ns, "eth1", rate, clients, secs, base)
    }

    /// Start one real client per client namespace (cycling through `kinds`) and wait for all
    /// to be bound; returns them with their addresses (all distinct).
    fn start_clients(&self, kinds: &[Kind]) -> (Vec<Client>, Vec<Ipv4Addr>) {
        let mut clients: Vec<Client> = self
            .c_ns
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let k = kinds[i % kinds.len()];
                Client::start(
                    &self.lab,
                    ns,
                    "eth1",
                    k,
                    &format!("{}{i}", k.name()),
                    &Opts::default(),
                )
            })
            .collect();
        let addrs: Vec<Ipv4Addr> = clients
            .iter_mut()
            .map(|c| c.wait_bound(BIND_TIMEOUT))
            .collect();
        let distinct: BTreeSet<_> = addrs.iter().collect();
        assert_eq!(
            distinct.len(),
            addrs.len(),
            "two clients got one address: {addrs:?}"
        );
        (clients, addrs)
    }
}

/// The outcome of one comparison of the two lease tables.
#[derive(Debug, Default)]
struct Agreement {
    /// Current leases dhcpd granted (a DHCPACK in its log), found active on Tandem.
    isc_granted: usize,
    /// Current leases Tandem granted (no DHCPACK of dhcpd for them), found in dhcpd.leases.
    tandem_granted: usize,
    /// Every current lease on either side, as (address, MAC).
    current: BTreeSet<(Ipv4Addr, String)>,
}

/// Compare the tables once: every current Tandem lease (active, ending more than [`MARGIN`] s
/// from now) is active in dhcpd.leases for the same MAC, and every current dhcpd lease is active
/// on Tandem for the same MAC. `Err` lists the differences.
fn compare_once(s: &Setup) -> Result<Agreement, String> {
    let now = now_secs();
    let tandem: BTreeMap<Ipv4Addr, harness::Lease> = s
        .tandem
        .leases()
        .into_iter()
        .filter(|l| l.state == "active")
        .map(|l| (l.address, l))
        .collect();
    let isc = s.isc_leases();
    let acked: BTreeSet<(Ipv4Addr, String)> = isc_acks(&s.isc_logs()).into_iter().collect();
    let mut bad = Vec::new();
    let mut agree = Agreement::default();
    for l in tandem.values().filter(|l| l.expires > now + MARGIN) {
        let mac = l.mac.clone().unwrap_or_default();
        match isc.get(&l.address) {
            Some(i) if i.state == "active" && i.mac.as_deref() == Some(mac.as_str()) => {
                if !acked.contains(&(l.address, mac.clone())) {
                    agree.tandem_granted += 1;
                }
                agree.current.insert((l.address, mac));
            }
            other => bad.push(format!(
                "{} active on Tandem for {mac} until {} (in {} s), in dhcpd.leases: {other:?}",
                l.address,
                l.expires,
                l.expires.saturating_sub(now)
            )),
        }
    }
    for (a, i) in isc
        .iter()
        .filter(|(_, i)| i.state == "active" && i.ends.is_some_and(|e| e > now + MARGIN))
    {
        let mac = i.mac.clone().unwrap_or_default();
        match tandem.get(a) {
            Some(l) if l.mac.as_deref() == Some(mac.as_str()) => {
                if acked.contains(&(*a, mac.clone())) {
                    agree.isc_granted += 1;
                }
                agree.current.insert((*a, mac));
            }
            other => bad.push(format!(
                "{a} active in dhcpd.leases for {mac} until {:?}, on Tandem: {other:?}",
                i.ends
            )),
        }
    }
    if bad.is_empty() {
        Ok(agree)
    } else {
        Err(bad.join("\n"))
    }
}

/// Wait until the two lease tables agree (replication may lag a little); panic with the
/// differences otherwise.
fn wait_tables_agree(s: &Setup, what: &str) -> Agreement {
    let mut last = String::new();
    let got = poll(AGREE_TIMEOUT, || match compare_once(s) {
        Ok(a) => Some(a),
        Err(e) => {
            last = e;
            None
        }
    });
    got.unwrap_or_else(|| {
        panic!(
            "{what}: the lease tables do not agree after {AGREE_TIMEOUT:?}:\n{last}\n{}",
            s.report()
        )
    })
}

/// Every client's address is active on both servers for that client's MAC.
fn assert_clients_on_both(s: &Setup, clients: &[Client], addrs: &[Ipv4Addr], what: &str) {
    let isc = s.isc_leases();
    for (c, a) in clients.iter().zip(addrs) {
        let t = s.tandem.lease(*a);
        assert!(
            t.as_ref()
                .is_some_and(|l| l.state == "active" && l.mac.as_deref() == Some(c.mac.as_str())),
            "{what}: {} ({}) holds {a}, Tandem has {t:?}",
            c.mac,
            c.kind.name()
        );
        let i = isc.get(a);
        assert!(
            i.is_some_and(|l| l.state == "active" && l.mac.as_deref() == Some(c.mac.as_str())),
            "{what}: {} ({}) holds {a}, dhcpd.leases has {i:?}",
            c.mac,
            c.kind.name()
        );
    }
}

/// The link stayed up since both reached NORMAL: Tandem is NORMAL, connected, and reports no
/// refused connection or bad message; dhcpd's current run never left normal after reaching it.
fn assert_link_steady(s: &Setup, what: &str) {
    let fo = s.fo();
    let moves = isc_moves(&s.isc_log());
    let left_normal: Vec<_> = moves
        .iter()
        .skip_while(|(_, to)| to != "normal")
        .filter(|(from, _)| from == "normal")
        .collect();
    assert!(
        fo.get("state").and_then(Value::as_str) == Some("NORMAL")
            && fo.get("connected").and_then(Value::as_bool) == Some(true)
            && fo.get("last_refusal").is_none_or(Value::is_null)
            && left_normal.is_empty(),
        "{what}: the failover link did not stay up (dhcpd left normal: {left_normal:?})\n{}",
        s.report()
    );
}

/// Neither side refused a binding update of the other.
fn assert_no_rejections(s: &Setup) {
    let fo = s.fo();
    let n = |k: &str| fo.get(k).and_then(Value::as_u64).unwrap_or(0);
    assert_eq!(
        (n("partner_rejected"), n("updates_rejected")),
        (0, 0),
        "binding updates refused (partner's by Tandem, Tandem's by dhcpd)\n{}",
        s.report()
    );
}

/// The number of DISCOVERs perfdhcp sent (its first "sent packets" line).
fn sent_discovers(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("sent packets:"))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// Bring-up, perfdhcp and real clients: both servers answer a share, both tables hold every
/// lease. Returns the setup, the clients and their addresses for more steps.
fn share_leases(tag: &str, primary: Primary, plane: Plane) -> (Setup, Vec<Client>, Vec<Ipv4Addr>) {
    let mut s = setup(tag, primary, 4, plane);
    let took = s.wait_both_normal(NORMAL_TIMEOUT);
    eprintln!(
        "[{tag}] both NORMAL after {took:?}; dhcpd's path: {:?}",
        isc_moves(&s.isc_log())
    );
    // dhcpd's pool balancing (or Tandem's, as primary) gives the secondary its half.
    let split = poll(Duration::from_secs(15), || {
        let backup = s.fo().get("backup").and_then(Value::as_u64).unwrap_or(0);
        (backup > 0).then_some(backup)
    });
    let backup = split.unwrap_or_else(|| panic!("no BACKUP pool on Tandem\n{}", s.report()));
    eprintln!("[{tag}] Tandem's BACKUP pool: {backup} of 241");

    // Volume: 40 perfdhcp clients, split between the servers by their hash bucket.
    let isc_offers = |s: &Setup| s.isc_logs().matches("\nDHCPOFFER on ").count() as u64;
    let (isc_ack0, isc_offer0) = (isc_acks(&s.isc_logs()).len() as u64, isc_offers(&s));
    let st = s.tandem.stats();
    let (tandem_ack0, tandem_offer0) = (counter(&st, "ack"), counter(&st, "offer"));
    let out = s.perfdhcp(30, 40, 4, "00:0c:00:00:00:00");
    assert_link_steady(&s, "after perfdhcp");
    let agree = wait_tables_agree(&s, "after perfdhcp");
    let isc_n = isc_acks(&s.isc_logs()).len() as u64 - isc_ack0;
    let st = s.tandem.stats();
    let tandem_n = counter(&st, "ack") - tandem_ack0;
    let offers = (
        counter(&st, "offer") - tandem_offer0,
        isc_offers(&s) - isc_offer0,
    );
    let discovers = sent_discovers(&out);
    eprintln!(
        "[{tag}] perfdhcp: {discovers} DISCOVERs; OFFERs Tandem {}, dhcpd {}; ACKs Tandem \
         {tandem_n}, dhcpd {isc_n}; current leases: {} granted by Tandem, {} by dhcpd, all on \
         both sides",
        offers.0, offers.1, agree.tandem_granted, agree.isc_granted
    );
    // Both servers hash the clients alike (RFC 3074): each DISCOVER is offered by one of them.
    assert!(
        discovers > 0 && offers.0 + offers.1 <= discovers + 2,
        "{} OFFERs (Tandem {}, dhcpd {}) for {discovers} DISCOVERs: both servers answered some \
         clients\n{out}",
        offers.0 + offers.1,
        offers.0,
        offers.1
    );
    let total = tandem_n + isc_n;
    assert!(
        total >= 60,
        "perfdhcp got only {tandem_n} (Tandem) + {isc_n} (dhcpd) ACKs for about 120 exchanges:\n{out}\n{}",
        s.report()
    );
    let share = tandem_n * 100 / total;
    assert!(
        (15..=85).contains(&share),
        "load balance 50/50 gave Tandem {share}% of the ACKs ({tandem_n} vs {isc_n})\n{out}"
    );
    assert!(
        agree.tandem_granted >= 5 && agree.isc_granted >= 5,
        "too few current leases to compare: {} granted by Tandem, {} by dhcpd\n{out}\n{}",
        agree.tandem_granted,
        agree.isc_granted,
        s.report()
    );

    // Real clients, one namespace each.
    let kinds = [Kind::Dhclient, Kind::Udhcpc, Kind::Dhcpcd, Kind::Udhcpc];
    let (clients, addrs) = s.start_clients(&kinds);
    eprintln!("[{tag}] clients bound: {addrs:?}");
    let agree = wait_tables_agree(&s, "after the real clients");
    assert_clients_on_both(&s, &clients, &addrs, "after binding");
    eprintln!(
        "[{tag}] with the clients: {} current leases, all on both sides",
        agree.current.len()
    );
    assert_no_rejections(&s);
    assert_link_steady(&s, "after the real clients");
    if plane == Plane::XdpTwoWorkers {
        // Both of Tandem's workers served (broadcasts arrive on one queue: the other worker's
        // clients were handed to it) and dhcpd's clients were dropped in the kernel.
        let st = s.tandem.stats();
        let x = |k: &str| st["xdp"][k].as_u64().unwrap_or(0);
        let log = s.tandem.log_text();
        assert!(log.contains("core=1") && log.contains("queue=1"), "{log}");
        assert!(x("handoff_out") > 0, "no handoff between the workers: {st}");
        assert_eq!(x("handoff_in"), x("handoff_out"), "{st}");
        assert!(x("partner_drop") > 0, "no partner drop in XDP: {st}");
    }
    (s, clients, addrs)
}

#[test]
fn tandem_primary_isc_secondary_share_leases() {
    let _cpu = cpu_exclusive();
    let (s, mut clients, _) = share_leases("fois1", Primary::Tandem, Plane::Udp);
    for (c, ns) in clients.iter_mut().zip(&s.c_ns) {
        c.release(ns, &s.lab);
    }
}

#[test]
fn isc_primary_tandem_secondary_share_leases() {
    let _cpu = cpu_exclusive();
    let (s, mut clients, _) = share_leases("fois2", Primary::Isc, Plane::Udp);
    for (c, ns) in clients.iter_mut().zip(&s.c_ns) {
        c.release(ns, &s.lab);
    }
}

/// [`tandem_primary_isc_secondary_share_leases`] with Tandem on two AF_XDP workers.
#[test]
fn two_worker_tandem_primary_isc_secondary_share_leases() {
    let _cpu = cpu_exclusive();
    let (s, mut clients, _) = share_leases("fois1x", Primary::Tandem, Plane::XdpTwoWorkers);
    for (c, ns) in clients.iter_mut().zip(&s.c_ns) {
        c.release(ns, &s.lab);
    }
}

/// [`isc_primary_tandem_secondary_share_leases`] with Tandem on two AF_XDP workers.
#[test]
fn isc_primary_two_worker_tandem_secondary_share_leases() {
    let _cpu = cpu_exclusive();
    let (s, mut clients, _) = share_leases("fois2x", Primary::Isc, Plane::XdpTwoWorkers);
    for (c, ns) in clients.iter_mut().zip(&s.c_ns) {
        c.release(ns, &s.lab);
    }
}

#[test]
fn isc_restart_recovers_to_normal() {
    let _cpu = cpu_exclusive();
    let (mut s, mut clients, addrs) = share_leases("fois3", Primary::Isc, Plane::Udp);
    assert_eq!(s.primary, Primary::Isc);
    // The leases that will still run after the restart.
    let before = wait_tables_agree(&s, "before the restart");
    let lasting: BTreeSet<(Ipv4Addr, String)> = {
        let now = now_secs();
        let t = s.tandem.leases();
        before
            .current
            .iter()
            .filter(|(a, _)| t.iter().any(|l| l.address == *a && l.expires > now + 120))
            .cloned()
            .collect()
    };
    assert!(
        lasting.len() >= 10,
        "too few long leases before the restart: {lasting:?}"
    );

    // SIGTERM. dhcpd 4.4.3 as Debian builds it exits at once (no SHUTDOWN message to the
    // partner); its last state stays in the leases file for the restart.
    let t0 = Instant::now();
    let p = s
        .dhcpd
        .as_mut()
        .unwrap_or_else(|| unreachable!("share_leases started dhcpd"));
    p.signal("TERM");
    let st = p.wait_exit(Duration::from_secs(40));
    assert!(
        st.is_some(),
        "dhcpd did not exit within 40 s of SIGTERM:\n{}",
        p.log_text()
    );
    let saved = isc_state(&p.log_text()).unwrap_or_default();
    eprintln!(
        "[fois3] dhcpd exited {:?} after SIGTERM ({st:?}) in state {saved}",
        t0.elapsed()
    );
    let killed_at = now_secs();
    let left = poll(Duration::from_secs(15), || {
        let st = s.tandem_state();
        (st != "NORMAL").then_some(st)
    });
    let down_state =
        left.unwrap_or_else(|| panic!("Tandem still NORMAL with dhcpd gone\n{}", s.report()));
    eprintln!("[fois3] Tandem with dhcpd gone: {down_state}");
    assert!(
        ["COMMUNICATIONS-INTERRUPTED", "PARTNER-DOWN"].contains(&down_state.as_str()),
        "Tandem went to {down_state} when dhcpd stopped"
    );

    // Alone, Tandem answers every new client (both buckets), each lease capped at MCLT.
    let acks_before = counter(&s.tandem.stats(), "ack");
    let out = s.perfdhcp(20, 20, 2, "00:0d:00:00:00:00");
    let alone = counter(&s.tandem.stats(), "ack") - acks_before;
    assert!(
        alone >= 30,
        "Tandem alone acknowledged {alone} of about 40 exchanges of 20 new clients:\n{out}\n{}",
        s.report()
    );
    let alone_leases: BTreeSet<(Ipv4Addr, String)> = s
        .tandem
        .leases()
        .into_iter()
        .filter(|l| {
            l.state == "active" && l.mac.as_deref().is_some_and(|m| m.starts_with("00:0d:"))
        })
        .map(|l| {
            assert!(
                l.expires.saturating_sub(l.start) <= MCLT + 1 && l.start + 1 >= killed_at,
                "Tandem gave {} a lease from {} to {} with dhcpd down (MCLT {MCLT} s)",
                l.address,
                l.start,
                l.expires
            );
            (l.address, l.mac.unwrap_or_default())
        })
        .collect();
    assert!(
        alone_leases.len() >= 15,
        "only {} of the 20 new clients hold a lease from Tandem: {alone_leases:?}",
        alone_leases.len()
    );

    // Start it again on the same leases file: from its saved state through STARTUP back to
    // NORMAL, with Tandem NORMAL too.
    s.start_dhcpd();
    let took = s.wait_both_normal(Duration::from_secs(MCLT * 3 + 60));
    let moves = isc_moves(&s.isc_log());
    eprintln!("[fois3] both NORMAL {took:?} after the restart; dhcpd's path: {moves:?}");
    assert_eq!(
        moves.first().map(|(a, b)| (a.as_str(), b.as_str())),
        Some((saved.as_str(), "startup")),
        "dhcpd did not resume from its saved state {saved:?} through STARTUP: {moves:?}"
    );
    // Every lease is on both sides: the long ones from before, the clients', and those Tandem
    // gave alone (sent to dhcpd once it was back) that still run.
    let leases = wait_tables_agree(&s, "after the restart");
    let missing: Vec<_> = lasting.difference(&leases.current).collect();
    assert!(
        missing.is_empty(),
        "leases lost in the restart: {missing:?}\n{}",
        s.report()
    );
    assert_clients_on_both(&s, &clients, &addrs, "after the restart");
    let caught_up = alone_leases.intersection(&leases.current).count();
    eprintln!(
        "[fois3] after the restart: {} current leases on both sides; {caught_up} of the {} \
         Tandem gave alone still run and reached dhcpd",
        leases.current.len(),
        alone_leases.len()
    );
    assert!(
        caught_up * 2 >= alone_leases.len(),
        "only {caught_up} of Tandem's {} leases from while dhcpd was down are current on both \
         sides: {alone_leases:?}\n{}",
        alone_leases.len(),
        s.report()
    );
    assert_no_rejections(&s);
    assert_link_steady(&s, "after the restart");
    for (c, ns) in clients.iter_mut().zip(&s.c_ns) {
        c.release(ns, &s.lab);
    }
}

#[test]
fn isc_lease_file_parser_keeps_the_last_complete_record() {
    let text = "\
# The format of this file is documented in the dhcpd.leases(5) manual page.
failover peer \"pair\" state {
  my state normal at 3 2025/11/26 10:00:00;
  partner state normal at 3 2025/11/26 10:00:00;
}
lease 10.81.0.20 {
  starts 3 2025/11/26 10:00:00;
  ends 3 2025/11/26 10:00:10;
  binding state active;
  next binding state expired;
  hardware ethernet 00:0C:00:00:00:2A;
}
lease 10.81.0.21 {
  starts 3 2025/11/26 10:00:00;
  ends never;
  binding state backup;
}
lease 10.81.0.20 {
  starts 3 2025/11/26 10:00:05;
  ends epoch 1764151505; # Wed Nov 26 10:05:05 2025
  binding state active;
  hardware ethernet 00:0c:00:00:00:2b;
}
lease 10.81.0.21 {
  binding state active;
";
    let m = parse_isc_leases(text);
    assert_eq!(m.len(), 2);
    assert_eq!(
        m[&"10.81.0.20".parse::<Ipv4Addr>().unwrap()],
        IscLease {
            state: "active".into(),
            mac: Some("00:0c:00:00:00:2b".into()),
            ends: Some(1_764_151_505),
        }
    );
    // The unfinished record at the end does not replace the complete one.
    assert_eq!(
        m[&"10.81.0.21".parse::<Ipv4Addr>().unwrap()],
        IscLease {
            state: "backup".into(),
            mac: None,
            ends: None,
        }
    );
    // 2025-11-26 10:00:10 UTC; the leap day and the first of March of a leap year.
    assert_eq!(
        isc_time(&["3", "2025/11/26", "10:00:10"]),
        Some(1_764_151_210)
    );
    assert_eq!(
        isc_time(&["4", "2024/02/29", "00:00:00"]),
        Some(1_709_164_800)
    );
    assert_eq!(
        isc_time(&["5", "2024/03/01", "23:59:59"]),
        Some(1_709_337_599)
    );
    assert_eq!(isc_time(&["never"]), None);
    let log = "failover peer pair: I move from recover to startup\n\
               failover peer pair: I move from startup to recover-done\n\
               DHCPACK on 10.81.0.77 to 00:0C:00:00:00:01 (host) via eth1\n\
               failover peer pair: I move from recover-done to normal\n";
    assert_eq!(isc_state(log).as_deref(), Some("normal"));
    assert_eq!(isc_moves(log).len(), 3);
    assert_eq!(
        isc_acks(log),
        vec![(
            "10.81.0.77".parse().unwrap(),
            "00:0c:00:00:00:01".to_string()
        )]
    );
}
