//! The failover TCP link ([`Link`]) over real sockets: two Tandem peers on loopback, and ISC
//! dhcpd 4.4 (`/usr/sbin/dhcpd`) as the partner inside a network namespace.
//!
//! The ISC tests need root (to create the namespace) and Debian's isc-dhcp-server; without them
//! they fail saying so. Every namespace is named `tdm-lk-<pid>-<n>` and removed on drop, and only
//! the dhcpd started by the test is killed, by its PID.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_controlplane::failover::link::{Link, LinkConfig, LinkEvent};
use tandem_controlplane::failover::peer::{MemoryStore, Mode, PeerConfig, Role};
use tandem_controlplane::failover::{Body, Event, Peer, PeerState, RejectReason, Start};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::time::Time;

const NAME: &[u8] = b"tdm-fo";

fn peer(role: Role, mclt: u32) -> Peer<MemoryStore> {
    let mut cfg = PeerConfig::new(NAME, role);
    cfg.mode = Mode::LoadBalance {
        primary_percent: 50,
    };
    cfg.mclt_secs = mclt;
    cfg.receive_timer_secs = 15;
    Peer::new(cfg, MemoryStore::default(), Start::Fresh, Time::now()).expect("valid config")
}

fn link_cfg() -> LinkConfig {
    let mut c = LinkConfig::new();
    c.backoff_initial = Duration::from_millis(100);
    c.backoff_max = Duration::from_secs(1);
    c.trace_messages = true;
    c
}

/// One side of a test: the link and everything it reported.
struct Side {
    tag: &'static str,
    link: Link<MemoryStore>,
    log: Vec<LinkEvent>,
    journal: Vec<Binding>,
}

impl Side {
    fn new(tag: &'static str, cfg: LinkConfig, peer: Peer<MemoryStore>) -> Side {
        Side {
            tag,
            link: Link::new(cfg, peer).expect("link set up"),
            log: Vec::new(),
            journal: Vec::new(),
        }
    }

    /// One round of the link, acting on the events as the daemon would (no bindings here).
    fn step(&mut self, wait: Duration) {
        let evs = self.link.run_once(wait).expect("poll works");
        self.absorb(evs);
    }

    fn absorb(&mut self, evs: Vec<LinkEvent>) {
        for ev in evs {
            eprintln!("[{}] {:?}", self.tag, ev);
            match &ev {
                LinkEvent::Peer(Event::SendAllBindings) => {
                    // No local bindings in these tests: the full update is empty.
                    self.link.peer_mut().end_full_update(Time::now());
                }
                LinkEvent::Peer(Event::PartnerBinding { id, binding }) => {
                    // The test's journal: keep the binding, then acknowledge it.
                    self.journal.push(*binding);
                    self.link
                        .peer_mut()
                        .ack_partner_update(Time::now(), *id, Ok(()));
                }
                _ => {}
            }
            self.log.push(ev);
        }
    }

    fn state(&self) -> PeerState {
        self.link.peer().state()
    }

    fn entered(&self, state: PeerState) -> Vec<usize> {
        self.log
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, LinkEvent::Peer(Event::StateChanged { to, .. }) if *to == state))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Runs every side until `done` holds or `limit` passes; true if it held.
fn run_until(
    sides: &mut [&mut Side],
    limit: Duration,
    done: impl Fn(&[&mut Side]) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        for s in sides.iter_mut() {
            s.step(Duration::from_millis(5));
        }
        if done(sides) {
            return true;
        }
    }
    false
}

fn loopback_pair(primary_secret: Option<&[u8]>, secondary_secret: Option<&[u8]>) -> (Side, Side) {
    let mut scfg = link_cfg();
    scfg.listen = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    scfg.partner = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
    scfg.secret = secondary_secret.map(<[u8]>::to_vec);
    let secondary = Side::new("secondary", scfg, peer(Role::Secondary, 5));
    let mut pcfg = link_cfg();
    pcfg.partner = secondary.link.local_addr();
    pcfg.secret = primary_secret.map(<[u8]>::to_vec);
    let primary = Side::new("primary", pcfg, peer(Role::Primary, 5));
    (primary, secondary)
}

fn both_normal(s: &[&mut Side]) -> bool {
    s.iter()
        .all(|s| s.state() == PeerState::Normal && s.link.peer().is_connected())
}

#[test]
fn tandem_pair_reaches_normal_survives_link_loss_and_reconnects() {
    let (mut p, mut s) = loopback_pair(None, None);
    let t0 = Instant::now();
    assert!(
        run_until(&mut [&mut p, &mut s], Duration::from_secs(10), both_normal),
        "not NORMAL within 10 s: primary {}, secondary {}",
        p.state(),
        s.state()
    );
    eprintln!("NORMAL after {:?}", t0.elapsed());
    // The primary opened the link, the secondary accepted it.
    assert!(p
        .log
        .iter()
        .any(|e| matches!(e, LinkEvent::Connected { outbound: true, .. })));
    assert!(s.log.iter().any(|e| matches!(
        e,
        LinkEvent::Connected {
            outbound: false,
            ..
        }
    )));
    // Only the primary sent CONNECT.
    let sent_connect = |side: &Side| {
        side.log
            .iter()
            .any(|e| matches!(e, LinkEvent::Sent(m) if matches!(m.body, Body::Connect(_))))
    };
    assert!(sent_connect(&p) && !sent_connect(&s));

    // Cut the link: both sides go COMMUNICATIONS-INTERRUPTED, then reconnect to NORMAL.
    let mark = (p.log.len(), s.log.len());
    let evs = p.link.drop_connection();
    p.absorb(evs);
    let reconnected = run_until(&mut [&mut p, &mut s], Duration::from_secs(10), |sides| {
        let marks = [mark.0, mark.1];
        both_normal(sides)
            && sides.iter().zip(marks).all(|(side, m)| {
                let ci = side.entered(PeerState::CommunicationsInterrupted);
                let normal = side.entered(PeerState::Normal);
                ci.iter().any(|&c| c >= m && normal.iter().any(|&n| n > c))
            })
    });
    assert!(
        reconnected,
        "after the cut: primary {} (CI at {:?}), secondary {} (CI at {:?})",
        p.state(),
        p.entered(PeerState::CommunicationsInterrupted),
        s.state(),
        s.entered(PeerState::CommunicationsInterrupted)
    );
    assert!(s.log[mark.1..]
        .iter()
        .any(|e| matches!(e, LinkEvent::Disconnected { .. })));
}

#[test]
fn wrong_shared_secret_is_refused_and_right_one_connects() {
    let (mut p, mut s) = loopback_pair(Some(b"alpha"), Some(b"bravo"));
    let normal = run_until(&mut [&mut p, &mut s], Duration::from_secs(3), |sides| {
        sides.iter().any(|s| s.state() == PeerState::Normal)
    });
    assert!(!normal, "a wrong secret reached NORMAL");
    assert!(p.entered(PeerState::Normal).is_empty() && s.entered(PeerState::Normal).is_empty());
    let refused = |side: &Side| {
        side.log.iter().any(|e| {
            matches!(
                e,
                LinkEvent::DecodeFailed {
                    reject_reason: Some(RejectReason::DigestCompareFailed),
                    ..
                }
            )
        })
    };
    // The secondary refuses the CONNECT; the primary refuses the secondary's DISCONNECT (signed
    // with the other secret) the same way.
    assert!(refused(&s), "secondary did not report reject reason 20");
    assert!(refused(&p), "primary did not report reject reason 20");
    // The primary keeps retrying with backoff.
    let attempts = p
        .log
        .iter()
        .filter(|e| matches!(e, LinkEvent::Connected { .. }))
        .count();
    assert!(attempts >= 2, "primary connected only {attempts} time(s)");

    let (mut p, mut s) = loopback_pair(Some(b"alpha"), Some(b"alpha"));
    assert!(
        run_until(&mut [&mut p, &mut s], Duration::from_secs(10), both_normal),
        "the right secret did not reach NORMAL: primary {}, secondary {}",
        p.state(),
        s.state()
    );
}

#[test]
fn second_connection_is_refused_and_link_stays_up() {
    let (mut p, mut s) = loopback_pair(None, None);
    assert!(run_until(
        &mut [&mut p, &mut s],
        Duration::from_secs(10),
        both_normal
    ));
    let addr = s.link.local_addr().expect("listening");
    let intruder = TcpStream::connect(addr).expect("TCP connect");
    let refused = run_until(&mut [&mut p, &mut s], Duration::from_secs(3), |sides| {
        sides[1]
            .log
            .iter()
            .any(|e| matches!(e, LinkEvent::Refused { .. }))
    });
    assert!(refused, "second connection not refused");
    drop(intruder);
    run_until(&mut [&mut p, &mut s], Duration::from_millis(300), |_| false);
    assert!(both_normal(&[&mut p, &mut s]));
}

// ----- ISC dhcpd interop ---------------------------------------------------------------------

/// A network namespace with a veth pair to the test's namespace, and dhcpd running inside it.
struct IscLab {
    ns: String,
    host_if: String,
    dir: PathBuf,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    dhcpd: Option<Child>,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl IscLab {
    fn new(n: u8) -> IscLab {
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the ISC dhcpd interop test needs root (network namespace)"
        );
        assert!(
            Path::new("/usr/sbin/dhcpd").exists(),
            "/usr/sbin/dhcpd missing: install isc-dhcp-server"
        );
        let pid = std::process::id();
        let third = u8::try_from((pid % 120) * 2).expect("< 240") + n;
        let lab = IscLab {
            ns: format!("tdm-lk-{pid}-{n}"),
            host_if: format!("tdmlk{}h{n}", pid % 100_000),
            dir: tempfile::tempdir().expect("tempdir").keep(),
            host_ip: Ipv4Addr::new(10, 213, third, 1),
            ns_ip: Ipv4Addr::new(10, 213, third, 2),
            dhcpd: None,
        };
        let ns_if = format!("tdmlk{}n{n}", pid % 100_000);
        sh(&["ip", "netns", "add", &lab.ns]);
        sh(&[
            "ip",
            "link",
            "add",
            &lab.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        sh(&["ip", "link", "set", &ns_if, "netns", &lab.ns]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.host_ip),
            "dev",
            &lab.host_if,
        ]);
        sh(&["ip", "link", "set", &lab.host_if, "up"]);
        let nsx = |a: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", lab.ns.as_str()];
            v.extend_from_slice(a);
            sh(&v);
        };
        nsx(&["ip", "link", "set", "lo", "up"]);
        nsx(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lab.ns_ip),
            "dev",
            &ns_if,
        ]);
        nsx(&["ip", "link", "set", &ns_if, "up"]);
        lab
    }

    fn start_dhcpd(&mut self, role_block: &str) {
        let third = self.ns_ip.octets()[2];
        let conf = format!(
            "authoritative;\nddns-update-style none;\ndefault-lease-time 600;\nmax-lease-time 600;\n\
             ping-check false;\n\
             failover peer \"tdm-fo\" {{\n  {role_block}\n  address {ns};\n  port 647;\n  \
             peer address {host};\n  peer port 647;\n  max-response-delay 30;\n  \
             max-unacked-updates 10;\n  load balance max seconds 3;\n}}\n\
             subnet 10.213.{third}.0 netmask 255.255.255.0 {{\n  pool {{\n    \
             failover peer \"tdm-fo\";\n    range 10.213.{third}.100 10.213.{third}.200;\n  }}\n}}\n",
            ns = self.ns_ip,
            host = self.host_ip,
        );
        let cf = self.dir.join("dhcpd.conf");
        let lf = self.dir.join("dhcpd.leases");
        let pf = self.dir.join("dhcpd.pid");
        fs::write(&cf, conf).expect("write conf");
        fs::write(&lf, "").expect("write leases");
        let log = fs::File::create(self.dir.join("dhcpd.log")).expect("log file");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "/usr/sbin/dhcpd",
                "-4",
                "-f",
                "-d",
                "-cf",
            ])
            .arg(&cf)
            .arg("-lf")
            .arg(&lf)
            .arg("-pf")
            .arg(&pf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start dhcpd");
        self.dhcpd = Some(child);
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dhcpd.log")).unwrap_or_default()
    }

    fn assert_dhcpd_alive(&mut self) {
        if let Some(c) = &mut self.dhcpd {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("dhcpd exited ({status}); its log:\n{}", self.log());
            }
        }
    }
}

impl Drop for IscLab {
    fn drop(&mut self) {
        if let Some(mut c) = self.dhcpd.take() {
            // `ip netns exec` execs dhcpd, so this PID is dhcpd's own.
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// dhcpd logged its own move to NORMAL and the partner's.
fn isc_log_normal(log: &str) -> bool {
    log.lines()
        .any(|l| l.starts_with("failover peer tdm-fo: I move from") && l.ends_with("to normal"))
        && log
            .lines()
            .any(|l| l == "failover peer tdm-fo: Both servers normal")
}

/// Runs our side against dhcpd until both are NORMAL and `extra` holds, then one more second
/// to check the link stays up; returns the diagnostic report.
fn run_interop(lab: &mut IscLab, side: &mut Side, extra: impl Fn(&Side) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        side.step(Duration::from_millis(20));
        lab.assert_dhcpd_alive();
        if side.state() == PeerState::Normal && isc_log_normal(&lab.log()) && extra(side) {
            break;
        }
    }
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        side.step(Duration::from_millis(20));
    }
    lab.assert_dhcpd_alive();
    let report = dump(lab, side);
    eprintln!("{report}");
    assert_eq!(
        side.state(),
        PeerState::Normal,
        "Tandem not NORMAL\n{report}"
    );
    assert!(side.link.peer().is_connected(), "link down\n{report}");
    assert!(
        isc_log_normal(&lab.log()),
        "dhcpd did not log both servers normal\n{report}"
    );
    assert!(extra(side), "bindings not replicated as expected\n{report}");
    let trouble: Vec<&LinkEvent> = side
        .log
        .iter()
        .filter(|e| {
            matches!(
                e,
                LinkEvent::Disconnected { .. }
                    | LinkEvent::DecodeFailed { .. }
                    | LinkEvent::EncodeFailed { .. }
                    | LinkEvent::Peer(Event::ProtocolViolation { .. })
                    | LinkEvent::Peer(Event::ConnectRejected { .. })
                    | LinkEvent::Peer(Event::UpdateRejected { .. })
            )
        })
        .collect();
    assert!(trouble.is_empty(), "link trouble: {trouble:?}\n{report}");
    report
}

/// The journal holds one binding in `state` for each address of the dhcpd pool (.100-.200).
fn pool_replicated(side: &Side, third: u8, state: BindingState, want: usize) -> bool {
    let mut addrs: Vec<Ipv4Addr> = side
        .journal
        .iter()
        .filter(|b| b.state == state)
        .map(|b| b.addr)
        .filter(|a| {
            let o = a.octets();
            o[..3] == [10, 213, third] && (100..=200).contains(&o[3])
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.len() >= want
}

fn dump(lab: &IscLab, side: &Side) -> String {
    let msgs: Vec<String> = side
        .log
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Sent(m) => Some(format!("  -> {m:?}")),
            LinkEvent::Received(m) => Some(format!("  <- {m:?}")),
            LinkEvent::Peer(_) | LinkEvent::Connected { .. } => None,
            other => Some(format!("  !! {other:?}")),
        })
        .collect();
    format!("messages:\n{}\ndhcpd log:\n{}", msgs.join("\n"), lab.log())
}

#[test]
fn isc_dhcpd_secondary_with_tandem_primary_reaches_normal() {
    let mut lab = IscLab::new(0);
    lab.start_dhcpd("secondary;");
    let mut cfg = link_cfg();
    cfg.partner = Some(SocketAddr::V4(SocketAddrV4::new(lab.ns_ip, 647)));
    cfg.backoff_initial = Duration::from_millis(300);
    let mut p = Side::new("tandem-primary", cfg, peer(Role::Primary, 10));
    let third = lab.ns_ip.octets()[2];
    // dhcpd answers our UPDREQALL with its whole pool (101 FREE addresses).
    run_interop(&mut lab, &mut p, |s| {
        pool_replicated(s, third, BindingState::Free, 101)
    });
}

#[test]
fn isc_dhcpd_primary_with_tandem_secondary_reaches_normal() {
    let mut lab = IscLab::new(1);
    let mut cfg = link_cfg();
    cfg.listen = Some(SocketAddr::V4(SocketAddrV4::new(lab.host_ip, 647)));
    cfg.partner = Some(SocketAddr::V4(SocketAddrV4::new(lab.ns_ip, 647)));
    let mut s = Side::new("tandem-secondary", cfg, peer(Role::Secondary, 10));
    lab.start_dhcpd("primary;\n  mclt 10;\n  split 128;");
    let third = lab.ns_ip.octets()[2];
    // dhcpd sends its pool in answer to our UPDREQALL, then its pool balancing hands us half
    // of the free addresses as BACKUP (50 of 101).
    run_interop(&mut lab, &mut s, |s| {
        pool_replicated(s, third, BindingState::Free, 101)
            && pool_replicated(s, third, BindingState::Backup, 50)
    });
    // The MCLT and the bucket map came from dhcpd's CONNECT.
    assert_eq!(s.link.peer().mclt(), 10);
}
