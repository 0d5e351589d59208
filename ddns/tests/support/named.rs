//! BIND 9 in a network namespace, for the tests that send real UPDATEs: the tool lookup, a
//! namespace with loopback up (`tdm-<tag>-<pid>-<seq>`, deleted on drop) and `named -g` inside it
//! on 127.0.0.1:53 with a forward zone `tdm.test.` and a reverse zone `77.10.in-addr.arpa.` that
//! accept updates signed with keys made by `tsig-keygen`.
//!
//! Shared by `ddns/tests/bind.rs` and `controlplane/tests/ddns_service.rs` (included with
//! `#[path]`), so it uses std alone: commands run inside the namespace through `nsenter`, and
//! signals go through `kill(1)`. Entering the namespace from a thread is left to the includer.
//!
//! Needs root (network namespaces, port 53) and the Debian packages bind9 (named,
//! tsig-keygen), bind9-dnsutils (dig), iproute2 (ip), util-linux (nsenter) and procps (kill):
//! a test fails naming the package when a tool is missing; none is skipped.

#![allow(dead_code)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tandem_ddns::TsigKey;

/// The forward zone named serves.
pub const FORWARD: &str = "tdm.test";
/// The reverse zone named serves.
pub const REVERSE: &str = "77.10.in-addr.arpa";

/// Finds `tool` in PATH or the sbin directories, or fails naming the Debian package.
pub fn tool(tool: &str, package: &str) -> PathBuf {
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

/// Fails unless the test runs as root.
pub fn require_root() {
    let uid = run(Command::new(tool("id", "coreutils")).arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "these tests create network namespaces and bind port 53: run them as root (sudo -E cargo test ...)"
    );
}

/// Runs `cmd` to completion; panics with its output unless it succeeded. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
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

/// The server named listens on.
pub fn server() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 53).into()
}

// ---------------------------------------------------------------------------------------------
// Network namespace

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace with loopback up; deleted on drop (also when the test panics) unless it
/// was only looked up with [`Netns::existing`].
pub struct Netns {
    /// Its name (under /run/netns).
    pub name: String,
    owned: bool,
}

impl Netns {
    /// Creates `tdm-<tag>-<pid>-<seq>`.
    pub fn new(tag: &str) -> Netns {
        require_root();
        let ip = tool("ip", "iproute2");
        let name = format!(
            "tdm-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new(&ip).args(["netns", "add", &name]));
        // From here on, drop removes it.
        let ns = Netns { name, owned: true };
        run(Command::new(&ip).args(["-n", &ns.name, "link", "set", "dev", "lo", "up"]));
        ns
    }

    /// A namespace another process made (and deletes).
    pub fn existing(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
            owned: false,
        }
    }

    /// Its path, for setns(2) or `nsenter --net=`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command run inside the namespace through nsenter (which execs it: same PID).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(tool("nsenter", "util-linux"));
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// `dig @127.0.0.1 +short name type` inside the namespace: the answer lines, whitespace
    /// removed.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
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
        if self.owned {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// named

/// A BIND 9 instance in a namespace, with its config and zones in a temp dir; stopped by PID on
/// drop. [`Named::stop`] and [`Named::restart`] keep the directory, so the zones' journals
/// (updates received so far) survive a restart.
pub struct Named {
    child: Option<Child>,
    ns_path: String,
    conf: PathBuf,
    /// Config, zones, journals and `named.log`.
    pub dir: tempfile::TempDir,
    /// `tdm-key`, hmac-sha256, allowed to update both zones.
    pub key256: TsigKey,
    /// `tdm-key512`, hmac-sha512, allowed to update both zones.
    pub key512: TsigKey,
}

impl Named {
    /// Writes the config and starts named in `ns`; returns once it answers.
    pub fn start(ns: &Netns) -> Named {
        let mut n = Named::prepare(ns);
        n.restart();
        n
    }

    /// Writes the config without starting named (see [`Named::restart`]).
    pub fn prepare(ns: &Netns) -> Named {
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
        let mut keys = keys.into_iter().map(|(_, k)| k);
        Named {
            child: None,
            ns_path: ns.path(),
            conf: conf_path,
            dir,
            key256: keys.next().unwrap(),
            key512: keys.next().unwrap(),
        }
    }

    /// Starts named (again, after [`Named::prepare`] or [`Named::stop`]); returns once it
    /// answers an SOA query for the forward zone.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "named is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("named.log"))
            .unwrap();
        let child = Command::new(tool("nsenter", "util-linux"))
            .arg(format!("--net={}", self.ns_path))
            .arg("--")
            .arg(tool("named", "bind9"))
            .arg("-g")
            .arg("-c")
            .arg(&self.conf)
            .args(["-u", "root", "-n", "1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting named: {e}"));
        self.child = Some(child);
        self.wait_ready();
    }

    /// named's PID (nsenter exec'd it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (a kill(1) name: STOP, CONT, TERM, KILL) to named.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("named is running");
        run(Command::new(tool("kill", "procps")).args([&format!("-{signal}"), &pid.to_string()]));
    }

    /// Freezes named (SIGSTOP): it holds its socket and answers nothing.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused named go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Stops named (SIGTERM, then SIGKILL after 5 s) and waits for it; the zones stay.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new(tool("kill", "procps"))
            .args(["-CONT", &child.id().to_string()])
            .status();
        let _ = Command::new(tool("kill", "procps"))
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// named's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Waits until named answers an SOA query for the forward zone (with dig in the namespace).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let dig = tool("dig", "bind9-dnsutils");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    panic!("named exited ({status}) before answering:\n{}", self.log());
                }
            }
            let out = Command::new(tool("nsenter", "util-linux"))
                .arg(format!("--net={}", self.ns_path))
                .arg("--")
                .arg(&dig)
                .args([
                    "@127.0.0.1",
                    "+norecurse",
                    "+time=1",
                    "+tries=1",
                    FORWARD,
                    "SOA",
                ])
                .output();
            if let Ok(out) = out {
                let text = String::from_utf8_lossy(&out.stdout);
                if out.status.success() && text.contains("status: NOERROR") && text.contains(" aa")
                {
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
        self.stop();
    }
}
