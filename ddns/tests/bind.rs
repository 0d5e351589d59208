//! The UPDATE client, TSIG and the RFC 4703 procedure against a real BIND 9.
//!
//! Each test makes its own network namespace (`tdm-ddns-<pid>-<seq>`, loopback only, deleted
//! on drop) and, where it needs one, runs `named -g` inside it on 127.0.0.1:53 with a forward
//! zone `tdm.test.` and a reverse zone `77.10.in-addr.arpa.` that accept updates signed with
//! keys made by `tsig-keygen`. The zones are checked with `dig` inside the namespace and with
//! this crate's own decoder. The host's network is never touched.
//!
//! Needs root (network namespaces, port 53) and the Debian packages bind9 (named,
//! tsig-keygen), bind9-dnsutils (dig), iproute2 (ip) and util-linux (nsenter): a test fails
//! with the package's name when a tool is missing; none is skipped.
//! Run with `sudo -E cargo test -p tandem-ddns --test bind`.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tandem_ddns::client::Failure;
use tandem_ddns::tsig::VerifyError;
use tandem_ddns::{
    Binding, Client, ClientConfig, ConflictMode, Identity, Message, Name, Outcome, Plan,
    PlanResult, RData, Rcode, RrType, Step, TsigKey, Update,
};

// ---------------------------------------------------------------------------------------------
// Tools

/// Finds `tool` in PATH or the sbin directories, or fails naming the Debian package.
fn tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{tool}` not found: install the Debian package {package} (apt-get install -y {package}; deploy/install-deps.sh does)");
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create network namespaces and bind port 53: run them as root (sudo -E cargo test -p tandem-ddns --test bind)"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Network namespace

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace with loopback up, deleted on drop (also when the test panics).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        require_root();
        let ip = tool("ip", "iproute2");
        let name = format!(
            "tdm-ddns-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new(&ip).args(["netns", "add", &name]));
        // From here on, drop removes it.
        let ns = Netns { name };
        run(Command::new(&ip).args(["-n", &ns.name, "link", "set", "dev", "lo", "up"]));
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command run inside the namespace through nsenter (which execs it: same PID).
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(tool("nsenter", "util-linux"));
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `f` on a thread that has joined the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// `dig @127.0.0.1 +short name type` inside the namespace: the answer lines.
    fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = run(self.command(&tool("dig", "bind9-dnsutils")).args([
            "@127.0.0.1",
            "+short",
            "+norecurse",
            "+time=2",
            "+tries=2",
            name,
            rtype,
        ]));
        out.lines()
            .map(|l| l.split_whitespace().collect::<String>())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// named

const FORWARD: &str = "tdm.test";
const REVERSE: &str = "77.10.in-addr.arpa";

/// A BIND 9 instance in a namespace, with its config in a temp dir; stopped by PID on drop.
struct Named {
    child: Child,
    dir: tempfile::TempDir,
    key256: TsigKey,
    key512: TsigKey,
}

impl Named {
    fn start(ns: &Netns) -> Named {
        let named = tool("named", "bind9");
        let keygen = tool("tsig-keygen", "bind9");
        let dir = tempfile::Builder::new()
            .prefix("tdm-ddns-bind")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let mut keys = Vec::new();
        for (alg, name) in [("hmac-sha256", "tdm-key"), ("hmac-sha512", "tdm-key512")] {
            let text = run(Command::new(&keygen).args(["-a", alg, name]));
            let file = d.join(format!("{name}.key"));
            fs::write(&file, &text).expect("write key file");
            let key = TsigKey::from_bind_key_file(&text)
                .unwrap_or_else(|e| panic!("tsig-keygen output {text:?}: {e}"));
            keys.push((file, key));
        }
        let soa = "$TTL 300\n@ IN SOA ns.tdm.test. hostmaster.tdm.test. 1 3600 600 86400 300\n@ IN NS ns.tdm.test.\n";
        fs::write(d.join("forward.zone"), format!("{soa}ns IN A 127.0.0.1\n")).unwrap();
        fs::write(d.join("reverse.zone"), soa).unwrap();
        let dp = d.display();
        let conf = format!(
            r#"include "{k256}";
include "{k512}";
options {{
    directory "{dp}";
    pid-file none;
    session-keyfile none;
    managed-keys-directory "{dp}";
    listen-on port 53 {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
zone "{FORWARD}" {{
    type primary;
    file "{dp}/forward.zone";
    allow-update {{ key "tdm-key"; key "tdm-key512"; }};
}};
zone "{REVERSE}" {{
    type primary;
    file "{dp}/reverse.zone";
    allow-update {{ key "tdm-key"; key "tdm-key512"; }};
}};
"#,
            k256 = keys[0].0.display(),
            k512 = keys[1].0.display(),
        );
        let conf_path = d.join("named.conf");
        fs::write(&conf_path, conf).unwrap();
        let log = File::create(d.join("named.log")).unwrap();
        let child = ns
            .command(&named)
            .arg("-g")
            .arg("-c")
            .arg(&conf_path)
            .args(["-u", "root", "-n", "1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting named: {e}"));
        let mut keys = keys.into_iter().map(|(_, k)| k);
        let mut n = Named {
            child,
            dir,
            key256: keys.next().unwrap(),
            key512: keys.next().unwrap(),
        };
        n.wait_ready(ns);
        n
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Waits until named answers an SOA query for the forward zone (with this crate's client).
    fn wait_ready(&mut self, ns: &Netns) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("named exited ({status}) before answering:\n{}", self.log());
            }
            let mut cfg = ClientConfig::new(server());
            cfg.timeout = Duration::from_millis(200);
            cfg.attempts = 1;
            let q = Message::query(0, name(FORWARD), RrType::SOA);
            let ok = ns.enter(|| Client::new(cfg).exchange(&q));
            if let Ok(x) = ok {
                if x.response.rcode() == Rcode::NOERROR && x.response.header.authoritative {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "named did not answer within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        // nsenter exec'd named, so this is named's PID.
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn server() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 53).into()
}

fn client(key: &TsigKey) -> Client {
    let mut cfg = ClientConfig::new(server()).with_key(key.clone());
    cfg.timeout = Duration::from_secs(2);
    cfg.attempts = 2;
    Client::new(cfg)
}

fn binding(host: &str, addr: Ipv4Addr, identity: &Identity) -> Binding {
    Binding::new(
        name(&format!("{host}.{FORWARD}")),
        name(FORWARD),
        addr,
        name(REVERSE),
        identity,
        300,
        ConflictMode::Rfc4703,
    )
    .unwrap()
}

/// Runs a plan inside the namespace; panics on a transport / TSIG failure.
fn run_plan(ns: &Netns, c: &Client, plan: &mut Plan) -> PlanResult {
    let r = ns.enter(|| c.run(plan));
    println!(
        "{:?} {}: {:?} -> {r:?}",
        plan.operation(),
        plan.binding().fqdn(),
        plan.history()
    );
    r.unwrap_or_else(|e| panic!("plan for {} stopped: {e}", plan.binding().fqdn()))
}

fn mac(last: u8) -> Identity {
    Identity::for_dhcpv4(1, &[0x52, 0x54, 0x00, 0x12, 0x34, last], None)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn add_conflict_and_removal_follow_rfc4703() {
    let ns = Netns::new();
    let named = Named::start(&ns);
    let c = client(&named.key256);
    let fqdn = "host.tdm.test.";

    // Client A: not in use, so A + DHCID and then PTR + DHCID are added.
    let a_id = Identity::for_dhcpv4(
        1,
        &[0; 6],
        Some(&[0x01, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01]),
    );
    let a = binding("host", Ipv4Addr::new(10, 77, 0, 5), &a_id);
    let mut plan = Plan::add(a.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::NOERROR),
            (Step::ReverseAdd, Rcode::NOERROR)
        ]
    );
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.5"]);
    assert_eq!(ns.dig(fqdn, "DHCID"), [a.dhcid().to_base64()]);
    assert_eq!(ns.dig("5.0.77.10.in-addr.arpa.", "PTR"), [fqdn]);
    assert_eq!(
        ns.dig("5.0.77.10.in-addr.arpa.", "DHCID"),
        [a.dhcid().to_base64()]
    );
    // The same, read with this crate's decoder (BIND compresses the answer's names).
    let q = Message::query(0, name(fqdn), RrType::DHCID);
    let x = ns.enter(|| c.exchange(&q)).expect("DHCID query");
    assert!(!x.over_tcp);
    assert_eq!(x.response.answers.len(), 1);
    assert_eq!(x.response.answers[0].name, name(fqdn));
    assert_eq!(x.response.answers[0].rdata, RData::Dhcid(a.dhcid().clone()));
    assert!(
        x.response.tsig().is_some(),
        "BIND signed the answer and it verified"
    );

    // Client B (another identity) claims the same name: YXDOMAIN, then NXRRSET on the DHCID
    // check; nothing changes, and B's reverse name is not written.
    let b = binding("host", Ipv4Addr::new(10, 77, 0, 6), &mac(0x06));
    assert_ne!(a.dhcid(), b.dhcid());
    let mut plan = Plan::add(b.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Conflict);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::YXDOMAIN),
            (Step::ForwardReplace, Rcode::NXRRSET)
        ]
    );
    assert_eq!(
        ns.dig(fqdn, "A"),
        ["10.77.0.5"],
        "the A still points to client A"
    );
    assert_eq!(ns.dig(fqdn, "DHCID"), [a.dhcid().to_base64()]);
    assert!(ns.dig("6.0.77.10.in-addr.arpa.", "PTR").is_empty());

    // B releasing "its" binding removes nothing of A's: the DHCID prerequisite fails.
    let mut plan = Plan::remove(b.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardRemoveAddress, Rcode::NXRRSET),
            (Step::ReverseRemove, Rcode::NXRRSET)
        ]
    );
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.5"]);

    // A moves to another address: YXDOMAIN, then the replace is allowed (our DHCID).
    let a2 = binding("host", Ipv4Addr::new(10, 77, 0, 7), &a_id);
    assert_eq!(
        a2.dhcid(),
        a.dhcid(),
        "the DHCID depends on identity and name only"
    );
    let mut plan = Plan::add(a2.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::YXDOMAIN),
            (Step::ForwardReplace, Rcode::NOERROR),
            (Step::ReverseAdd, Rcode::NOERROR)
        ]
    );
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.7"]);
    assert_eq!(ns.dig("7.0.77.10.in-addr.arpa.", "PTR"), [fqdn]);

    // Release: A, DHCID and PTR (+ its DHCID) go.
    let mut plan = Plan::remove(a2.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardRemoveAddress, Rcode::NOERROR),
            (Step::ForwardRemoveDhcid, Rcode::NOERROR),
            (Step::ReverseRemove, Rcode::NOERROR)
        ]
    );
    assert!(ns.dig(fqdn, "A").is_empty());
    assert!(ns.dig(fqdn, "DHCID").is_empty());
    assert!(ns.dig("7.0.77.10.in-addr.arpa.", "PTR").is_empty());
    assert!(ns.dig("7.0.77.10.in-addr.arpa.", "DHCID").is_empty());
    // The old PTR of .5 is still there: A's first lease was never released in this story.
    assert_eq!(ns.dig("5.0.77.10.in-addr.arpa.", "PTR"), [fqdn]);
    // The name is free now, so B gets it at the first step.
    let mut plan = Plan::add(b);
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(plan.history()[0], (Step::ForwardAdd, Rcode::NOERROR));
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.6"]);
    drop(named);
}

#[test]
fn wrong_tsig_keys_are_tsig_failures_and_change_nothing() {
    let ns = Netns::new();
    let named = Named::start(&ns);
    let good = &named.key256;
    let b = binding("victim", Ipv4Addr::new(10, 77, 1, 1), &mac(0x11));

    // The right key name with another secret: BIND answers NOTAUTH + BADSIG, unsigned.
    let wrong_secret = TsigKey::new(good.name().clone(), good.algorithm(), vec![0x5a; 32]);
    let o = ns.enter(|| client(&wrong_secret).update(&b.message(Step::ForwardAdd, 0)));
    println!("wrong secret: {o}");
    assert_eq!(
        o,
        Outcome::Failed(Failure::Tsig(VerifyError::ServerError {
            error: Rcode::BADSIG,
            rcode: Rcode::NOTAUTH,
            signed: false
        }))
    );
    // A key BIND does not know: NOTAUTH + BADKEY.
    let unknown = TsigKey::new(name("nobody-key"), good.algorithm(), good.secret().to_vec());
    let o = ns.enter(|| client(&unknown).update(&b.message(Step::ForwardAdd, 0)));
    println!("unknown key: {o}");
    assert_eq!(
        o,
        Outcome::Failed(Failure::Tsig(VerifyError::ServerError {
            error: Rcode::BADKEY,
            rcode: Rcode::NOTAUTH,
            signed: false
        }))
    );
    // The plan stops at its first step with that failure.
    let mut plan = Plan::add(b.clone());
    let r = ns.enter(|| client(&wrong_secret).run(&mut plan));
    assert!(
        matches!(&r, Err(e) if e.step == Step::ForwardAdd && matches!(e.failure, Failure::Tsig(_))),
        "{r:?}"
    );
    assert!(plan.history().is_empty());
    // Nothing was written.
    assert!(ns.dig("victim.tdm.test.", "ANY").is_empty());
    assert!(ns.dig("1.1.77.10.in-addr.arpa.", "PTR").is_empty());
    // Unsigned updates are refused by policy.
    let mut cfg = ClientConfig::new(server());
    cfg.timeout = Duration::from_secs(2);
    let o = ns.enter(|| Client::new(cfg).update(&b.message(Step::ForwardAdd, 0)));
    assert_eq!(
        o,
        Outcome::Refused {
            rcode: Rcode::REFUSED
        }
    );
    assert!(ns.dig("victim.tdm.test.", "A").is_empty());
    // And the good key works on the same server.
    let mut plan = Plan::add(b);
    assert_eq!(
        run_plan(&ns, &client(good), &mut plan),
        PlanResult::Completed
    );
    assert_eq!(ns.dig("victim.tdm.test.", "A"), ["10.77.1.1"]);
    drop(named);
}

#[test]
fn hmac_sha512_and_tcp_fallback() {
    let ns = Netns::new();
    let named = Named::start(&ns);
    let key = &named.key512;
    assert_eq!(key.algorithm(), tandem_ddns::Algorithm::HmacSha512);
    let c = client(key);
    let b = binding("big", Ipv4Addr::new(10, 77, 2, 1), &mac(0x21));
    let mut plan = Plan::add(b.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(ns.dig("big.tdm.test.", "A"), ["10.77.2.1"]);
    assert_eq!(ns.dig("1.2.77.10.in-addr.arpa.", "PTR"), ["big.tdm.test."]);

    // Grow the A RRset to 60 addresses (a plain RFC 2136 update), so that the answer no
    // longer fits 512 octets of UDP: BIND sets TC and the client retries over TCP.
    let mut m = Message::update(0, name(FORWARD));
    for i in 2..=61u8 {
        m.push_update(&Update::Add {
            name: name("big.tdm.test"),
            ttl: 300,
            rdata: RData::A(Ipv4Addr::new(10, 77, 2, i)),
        });
    }
    assert_eq!(ns.enter(|| c.update(&m)), Outcome::Success);
    let q = Message::query(0, name("big.tdm.test"), RrType::A);
    let x = ns.enter(|| c.exchange(&q)).expect("A query");
    assert!(x.over_tcp, "61 A records do not fit a 512-octet UDP answer");
    assert_eq!(x.response.answers.len(), 61);
    let mut got: Vec<Ipv4Addr> = x
        .response
        .answers
        .iter()
        .map(|r| match r.rdata {
            RData::A(a) => a,
            ref other => panic!("not an A: {other:?}"),
        })
        .collect();
    got.sort();
    let want: Vec<Ipv4Addr> = (1..=61u8).map(|i| Ipv4Addr::new(10, 77, 2, i)).collect();
    assert_eq!(got, want);
    assert_eq!(ns.dig("big.tdm.test.", "A").len(), 61);

    // Removal with other addresses left: our A goes, the DHCID stays (YXRRSET), PTR goes.
    let mut plan = Plan::remove(b);
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardRemoveAddress, Rcode::NOERROR),
            (Step::ForwardRemoveDhcid, Rcode::YXRRSET),
            (Step::ReverseRemove, Rcode::NOERROR)
        ]
    );
    let left = ns.dig("big.tdm.test.", "A");
    assert_eq!(left.len(), 60);
    assert!(!left.contains(&"10.77.2.1".to_string()));
    assert_eq!(ns.dig("big.tdm.test.", "DHCID").len(), 1);
    assert!(ns.dig("1.2.77.10.in-addr.arpa.", "PTR").is_empty());
    drop(named);
}

#[test]
fn no_check_mode_overwrites_another_clients_name() {
    let ns = Netns::new();
    let named = Named::start(&ns);
    let c = client(&named.key256);
    let first = binding("shared", Ipv4Addr::new(10, 77, 3, 1), &mac(0x31));
    assert_eq!(
        run_plan(&ns, &c, &mut Plan::add(first.clone())),
        PlanResult::Completed
    );
    let second = Binding::new(
        name("shared.tdm.test"),
        name(FORWARD),
        Ipv4Addr::new(10, 77, 3, 2),
        name(REVERSE),
        &mac(0x32),
        300,
        ConflictMode::NoCheckWithDhcid,
    )
    .unwrap();
    let mut plan = Plan::add(second.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::NOERROR),
            (Step::ReverseAdd, Rcode::NOERROR)
        ]
    );
    assert_eq!(ns.dig("shared.tdm.test.", "A"), ["10.77.3.2"]);
    assert_eq!(
        ns.dig("shared.tdm.test.", "DHCID"),
        [second.dhcid().to_base64()]
    );
    // The first client's RFC 4703 removal now finds a DHCID that is not its own.
    let mut plan = Plan::remove(first);
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history()[0],
        (Step::ForwardRemoveAddress, Rcode::NXRRSET)
    );
    assert_eq!(ns.dig("shared.tdm.test.", "A"), ["10.77.3.2"]);
    drop(named);
}

#[test]
fn server_down_is_a_timeout_within_the_configured_time() {
    // A namespace with nothing listening on port 53.
    let ns = Netns::new();
    let key = TsigKey::new(
        name("tdm-key"),
        tandem_ddns::Algorithm::HmacSha256,
        vec![1; 32],
    );
    let mut cfg = ClientConfig::new(server()).with_key(key);
    cfg.timeout = Duration::from_millis(400);
    cfg.attempts = 2;
    let b = binding("down", Ipv4Addr::new(10, 77, 4, 1), &mac(0x41));
    let start = Instant::now();
    let o = ns.enter(|| Client::new(cfg).update(&b.message(Step::ForwardAdd, 0)));
    let took = start.elapsed();
    println!("server down: {o} (call took {took:?})");
    match o {
        Outcome::Failed(Failure::Timeout { attempts, elapsed }) => {
            assert_eq!(attempts, 2);
            assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        took < Duration::from_millis(800 + 500),
        "2 attempts x 400 ms took {took:?}"
    );
}
