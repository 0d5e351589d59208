//! Test harness for the network-namespace tests: namespaces and veth links with cleanup on drop,
//! process guards that stop only the processes they started (by PID), a `tandemd` guard with
//! readiness checks and admin-API helpers, and the per-test scratch directory.
//!
//! Every namespace is named `tdm-<pid>-<test>-<role>`, so a later run can tell its own live
//! namespaces from stale ones left by a run that was killed (its `<pid>` is gone), and remove only
//! those. Veth pairs are created directly inside their namespaces (`ip link add .. netns ..`), so
//! nothing is ever created in, or sent into, the host's namespace.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Once, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The daemon under test, as built by cargo for this test run.
pub const TANDEMD: &str = env!("CARGO_BIN_EXE_tandemd");
/// The admin CLI, as built by cargo for this test run.
pub const TANDEMCTL: &str = env!("CARGO_BIN_EXE_tandemctl");
/// Admin endpoint of every test daemon (each runs in its own namespace, so they never clash).
pub const ADMIN: &str = "127.0.0.1:9167";

/// Tests that load the CPUs (the crash test) take this lock exclusively, the others share it, so
/// the timing-sensitive client tests never run beside perfdhcp on the 2 cores.
static CPU_LOCK: RwLock<()> = RwLock::new(());

/// Share the CPU with other client tests.
pub fn cpu_shared() -> RwLockReadGuard<'static, ()> {
    CPU_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// Run alone (no other namespace test runs at the same time).
pub fn cpu_exclusive() -> RwLockWriteGuard<'static, ()> {
    CPU_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

/// Poll `f` every 100 ms until it returns `Some`, or `None` after `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() >= timeout {
            return None;
        }
        sleep(Duration::from_millis(100));
    }
}

/// Run a command to completion (bounded by `timeout(1)`), returning its output.
pub fn run(argv: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("60").args(argv).stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Run a command that must succeed; panic with its stderr otherwise.
pub fn run_ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "command {argv:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Send `signal` (a name like `TERM`) to `pid`; true if delivered.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Tools the tests run, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("timeout", "coreutils"),
    ("kill", "procps"),
    ("dhclient", "isc-dhcp-client"),
    ("dhcpcd", "dhcpcd-base"),
    ("udhcpc", "udhcpc"),
    ("dhcrelay", "isc-dhcp-relay"),
    ("perfdhcp", "kea-admin"),
    ("tcpdump", "tcpdump"),
];

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file());
    found
}

static STALE_CLEANUP: Once = Once::new();

/// Check the test can run at all: root, the tools, then (once per process) remove stale
/// namespaces of earlier runs. Fails the test with a clear message instead of skipping it.
pub fn preflight() {
    let euid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        euid, 0,
        "the network-namespace tests need root (they create namespaces and veth links); \
         run them as root, e.g. `sudo bash deploy/test-all.sh`"
    );
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| which(t).is_none())
        .map(|(t, p)| format!("{t} (Debian package {p})"))
        .collect();
    assert!(
        missing.is_empty(),
        "missing tools for the network-namespace tests: {}; install them with \
         `sudo bash deploy/install-deps.sh`",
        missing.join(", ")
    );
    STALE_CLEANUP.call_once(cleanup_stale_namespaces);
}

/// Delete `tdm-<pid>-*` namespaces whose creating process is gone, after killing the processes
/// still inside them (they were started by that earlier run of this harness or the demo).
fn cleanup_stale_namespaces() {
    let out = run(&["ip", "netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("tdm-") else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if owner == std::process::id() || pid_alive(owner) {
            continue;
        }
        eprintln!("netns harness: removing stale namespace {name} (its creator {owner} is gone)");
        kill_all_in(name);
        let _ = run(&["ip", "netns", "del", name]);
    }
}

fn kill_all_in(ns: &str) {
    for sig in ["TERM", "KILL"] {
        let out = run(&["ip", "netns", "pids", ns]);
        let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for p in &pids {
            signal(*p, sig);
        }
        let _ = poll(Duration::from_secs(2), || {
            pids.iter().all(|p| !pid_alive(*p)).then_some(())
        });
    }
}

/// One test's scratch directory (under /tmp) and name; dumps every log in it if the test fails.
pub struct Lab {
    /// Short test name, part of every namespace name.
    pub tag: String,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Lab {
    /// Run the preflight checks and create the scratch directory for test `tag`.
    pub fn new(tag: &str) -> Lab {
        preflight();
        let dir = tempfile::Builder::new()
            .prefix(&format!("tdm-{tag}-"))
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let path = dir.path().to_path_buf();
        // dhcpcd drops privileges to its own user and must read its files here
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        Lab {
            tag: tag.to_string(),
            dir: Some(dir),
            path,
        }
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Write a file in the scratch directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// Write an executable shell script in the scratch directory; returns its path.
    pub fn script(&self, name: &str, text: &str) -> PathBuf {
        let p = self.write(name, text);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod script");
        p
    }

    /// A new namespace `tdm-<pid>-<tag>-<role>` with `lo` up and IPv6 off.
    pub fn netns(&self, role: &str) -> Netns {
        Netns::new(&format!("tdm-{}-{}-{}", std::process::id(), self.tag, role))
    }

    /// Everything the test's processes logged, for failure messages.
    pub fn dump_logs(&self) -> String {
        let mut s = String::new();
        let mut files: Vec<PathBuf> = fs::read_dir(&self.path)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for f in files.iter().filter(|f| {
            matches!(
                f.extension().and_then(|e| e.to_str()),
                Some("log" | "events" | "toml")
            )
        }) {
            let text = fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(80);
            let _ = writeln!(
                s,
                "----- {} (last {} lines)",
                f.display(),
                lines.len() - from
            );
            for l in &lines[from..] {
                let _ = writeln!(s, "{l}");
            }
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== logs of failed test {} =====\n{}",
                self.tag,
                self.dump_logs()
            );
        }
        if std::env::var_os("TANDEM_TEST_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("TANDEM_TEST_KEEP: kept {}", d.keep().display());
            }
        }
    }
}

/// A network namespace, deleted (after killing whatever still runs inside it) on drop.
pub struct Netns {
    /// Its name (`tdm-...`).
    pub name: String,
}

impl Netns {
    fn new(name: &str) -> Netns {
        let _ = run(&["ip", "netns", "del", name]);
        run_ok(&["ip", "netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip("link set lo up");
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    /// `ip -n <ns> ARGS` (split on whitespace); must succeed.
    pub fn ip(&self, args: &str) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend(args.split_whitespace());
        run_ok(&argv)
    }

    /// Run `argv` inside the namespace and return its output.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// Run `argv` inside the namespace; must succeed; returns stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run_ok(&full)
    }

    /// Add `cidr` to `iface` and bring it up.
    pub fn addr(&self, iface: &str, cidr: &str) {
        self.ip(&format!("addr add {cidr} dev {iface}"));
        self.ip(&format!("link set {iface} up"));
    }

    /// Bring `iface` up.
    pub fn up(&self, iface: &str) {
        self.ip(&format!("link set {iface} up"));
    }

    /// Enable IPv4 forwarding (routers).
    pub fn forwarding(&self) {
        self.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }

    /// The MAC address of `iface`, lowercase `aa:bb:..`.
    pub fn mac(&self, iface: &str) -> String {
        let out = self.ip(&format!("-br link show dev {iface}"));
        out.split_whitespace()
            .find(|w| w.len() == 17 && w.matches(':').count() == 5)
            .unwrap_or_else(|| panic!("no MAC for {iface} in {}: {out}", self.name))
            .to_ascii_lowercase()
    }

    /// True if some process listens on UDP port `port` in the namespace.
    pub fn udp_listening(&self, port: u16) -> bool {
        let out = self.exec(&["ss", "-Hlun", &format!("sport = :{port}")]);
        out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }

    /// A process started inside the namespace, logging to `<name>.log` in the lab directory.
    pub fn spawn(&self, lab: &Lab, name: &str, argv: &[&str]) -> Proc {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        Proc::spawn(lab, name, &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A veth pair with one end `a_if` in `a` and the other `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    run_ok(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.up(a_if);
    b.up(b_if);
}

/// A bridge `br` in `ns` (no STP, no forwarding delay) with `ports` enslaved, all up.
pub fn bridge(ns: &Netns, br: &str, ports: &[&str]) {
    ns.ip(&format!(
        "link add {br} type bridge stp_state 0 forward_delay 0"
    ));
    for p in ports {
        ns.ip(&format!("link set {p} master {br}"));
        ns.up(p);
    }
    ns.up(br);
    for p in ports {
        let ok = poll(Duration::from_secs(5), || {
            let out = run(&["bridge", "-n", &ns.name, "link", "show", "dev", p]);
            String::from_utf8_lossy(&out.stdout)
                .contains("state forwarding")
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "bridge port {p} in {} never reached forwarding",
            ns.name
        );
    }
}

/// A process this test started; stopped (TERM, then KILL after 3 s) by PID when dropped.
pub struct Proc {
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Proc {
    /// Start `argv` with stdout+stderr to `<lab>/<name>.log`.
    pub fn spawn(lab: &Lab, name: &str, argv: &[&str]) -> Proc {
        let log = lab.path(&format!("{name}.log"));
        let f = fs::File::create(&log).expect("create log");
        let f2 = f.try_clone().expect("dup log fd");
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        Proc { child, log }
    }

    /// Its PID (`ip netns exec` execs the program, so this is the program's own PID).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Send a signal by name.
    pub fn signal(&mut self, sig: &str) {
        if self.alive() {
            signal(self.pid(), sig);
        }
    }

    /// Wait up to `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.try_wait())
    }

    /// SIGTERM, then SIGKILL if still running after `grace`; returns its exit status.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        if let Some(s) = self.try_wait() {
            return s;
        }
        signal(self.pid(), "TERM");
        if let Some(s) = self.wait_exit(grace) {
            return s;
        }
        self.kill9()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("wait for killed child")
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.stop(Duration::from_secs(3));
        }
    }
}

/// One lease as `tandemctl lease list --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Leased address.
    pub address: Ipv4Addr,
    /// State, lowercase ("active", "released", ...).
    pub state: String,
    /// Client identifier as printed (if any).
    pub client_id: Option<String>,
    /// Hardware address, lowercase `aa:bb:..` (if any).
    pub mac: Option<String>,
    /// Host name (if any).
    pub hostname: Option<String>,
    /// Start, Unix seconds.
    pub start: u64,
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// Scope name.
    pub scope: String,
}

fn opt_str(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Lease {
    fn from_json(v: &Value) -> Result<Lease, String> {
        let address = v
            .get("address")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("lease without a valid \"address\": {v}"))?;
        let num = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("lease without numeric \"{k}\": {v}"))
        };
        Ok(Lease {
            address,
            state: opt_str(v, "state").ok_or_else(|| format!("lease without \"state\": {v}"))?,
            client_id: opt_str(v, "client_id"),
            mac: opt_str(v, "mac").map(|m| m.to_ascii_lowercase()),
            hostname: opt_str(v, "hostname"),
            start: num("start")?,
            expires: num("expires")?,
            scope: opt_str(v, "scope").unwrap_or_default(),
        })
    }
}

/// Counter `name` of `tandemctl stats --json` (a top-level number); panics if it is missing.
pub fn counter(stats: &Value, name: &str) -> u64 {
    stats
        .get(name)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("stats have no counter {name:?}: {stats}"))
}

/// A `tandemd` started by this test inside a namespace, with its config and state directory.
pub struct Tandemd {
    ns: String,
    /// The config file.
    pub config: PathBuf,
    proc: Option<Proc>,
    starts: u32,
    /// Prefix of its files in the lab (config, state directory, logs).
    name: String,
    /// Extra words put before `tandemd` on its command line (e.g. `env LD_PRELOAD=... FAKETIME=-90s`;
    /// it must `exec` tandemd so that signals reach it).
    pub wrapper: Vec<String>,
}

impl Tandemd {
    /// The `[server]` table every test config starts with.
    pub fn server_section(lab: &Lab, server_id: &str, interfaces: &[&str]) -> String {
        Tandemd::server_section_named(lab, "tandemd", server_id, interfaces)
    }

    /// The `[server]` table of the daemon called `name` in this lab (its own state directory
    /// `<name>-state`; `tandemd` is the name [`Tandemd::start`] uses).
    pub fn server_section_named(
        lab: &Lab,
        name: &str,
        server_id: &str,
        interfaces: &[&str],
    ) -> String {
        let ifs: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
        let state = if name == "tandemd" {
            lab.path("state")
        } else {
            lab.path(&format!("{name}-state"))
        };
        format!(
            "[server]\nserver_id = \"{server_id}\"\nstate_dir = \"{}\"\ndurability = \"sync\"\n\
             admin_listen = \"{ADMIN}\"\ninterfaces = [{}]\n",
            state.display(),
            ifs.join(", ")
        )
    }

    /// Write `config` to `<lab>/tandem.toml`, check it with `--check-config` (a failure shows
    /// the daemon's messages), start `tandemd --config` in `ns` and wait until it serves.
    pub fn start(lab: &Lab, ns: &Netns, config: &str) -> Tandemd {
        Tandemd::start_named(lab, ns, "tandemd", config, &[])
    }

    /// [`Tandemd::start`] for one of several daemons of a lab: files `<name>.toml`,
    /// `<name>-state/` (use [`Tandemd::server_section_named`]) and logs `<name>-N.log`;
    /// `wrapper` goes before `tandemd` on the command line (e.g. `["env", "FAKETIME=-90s", ...]`).
    pub fn start_named(
        lab: &Lab,
        ns: &Netns,
        name: &str,
        config: &str,
        wrapper: &[&str],
    ) -> Tandemd {
        let (cfg_file, state) = if name == "tandemd" {
            ("tandem.toml".to_string(), lab.path("state"))
        } else {
            (format!("{name}.toml"), lab.path(&format!("{name}-state")))
        };
        let path = lab.write(&cfg_file, config);
        fs::create_dir_all(state).expect("state dir");
        let p = path.to_string_lossy().into_owned();
        let out = ns.exec(&[TANDEMD, "--check-config", &p]);
        assert!(
            out.status.success(),
            "tandemd --check-config rejected the test config ({}):\n{}{}\n--- config:\n{config}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut d = Tandemd {
            ns: ns.name.clone(),
            config: path,
            proc: None,
            starts: 0,
            name: name.to_string(),
            wrapper: wrapper.iter().map(|w| w.to_string()).collect(),
        };
        d.launch(ns, lab);
        d
    }

    fn launch(&mut self, ns: &Netns, lab: &Lab) {
        assert_eq!(ns.name, self.ns);
        self.starts += 1;
        let name = format!("{}-{}", self.name, self.starts);
        let cfg = self.config.to_string_lossy().into_owned();
        let mut argv: Vec<&str> = self.wrapper.iter().map(String::as_str).collect();
        argv.extend_from_slice(&[TANDEMD, "--config", &cfg]);
        let mut p = ns.spawn(lab, &name, &argv);
        let ready = poll(Duration::from_secs(20), || {
            if let Some(st) = p.try_wait() {
                panic!("tandemd exited during startup ({st}):\n{}", p.log_text());
            }
            // The UDP backend binds port 67; the AF_XDP backend binds nothing and logs when
            // it serves.
            let serving = ns.udp_listening(67) || p.log_text().contains("tandemd serving");
            (serving && self.ctl(&["stats", "--json"]).status.success()).then_some(())
        });
        assert!(
            ready.is_some(),
            "tandemd not serving after 20 s:\n{}",
            p.log_text()
        );
        self.proc = Some(p);
    }

    /// Start it again (same config and state directory) after [`Tandemd::kill9`] or [`Tandemd::stop`].
    pub fn restart(&mut self, ns: &Netns, lab: &Lab) {
        assert!(
            self.proc.as_mut().map(|p| !p.alive()).unwrap_or(true),
            "restart of a running tandemd"
        );
        self.launch(ns, lab);
    }

    /// Its log (current run).
    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        self.proc.as_mut().map(Proc::alive).unwrap_or(false)
    }

    /// Run `tandemctl --admin ADMIN ARGS` in the daemon's namespace.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut argv = vec!["ip", "netns", "exec", &self.ns, TANDEMCTL, "--admin", ADMIN];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// `tandemctl ARGS` (which must print JSON), parsed; panics if it fails.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "tandemctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "tandemctl {args:?} printed invalid JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `tandemctl lease list --json`, parsed.
    pub fn leases(&self) -> Vec<Lease> {
        let v = self.ctl_json(&["lease", "list", "--json"]);
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("lease list --json is not an array: {v}"));
        arr.iter()
            .map(|l| Lease::from_json(l).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    /// The lease of `addr`, if listed.
    pub fn lease(&self, addr: Ipv4Addr) -> Option<Lease> {
        self.leases().into_iter().find(|l| l.address == addr)
    }

    /// `tandemctl stats --json`, parsed.
    pub fn stats(&self) -> Value {
        self.ctl_json(&["stats", "--json"])
    }

    /// Send a signal (by name) to the daemon.
    pub fn signal(&mut self, sig: &str) {
        if let Some(p) = self.proc.as_mut() {
            p.signal(sig);
        }
    }

    /// Wait until the current run's log contains `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) -> bool {
        poll(timeout, || self.log_text().contains(text).then_some(())).is_some()
    }

    /// SIGKILL the daemon (no chance to flush anything).
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
    }

    /// SIGTERM and require a clean exit (status 0) within 10 s.
    pub fn stop(&mut self) {
        let Some(p) = self.proc.as_mut() else { return };
        signal(p.pid(), "TERM");
        let st = p.wait_exit(Duration::from_secs(10));
        assert!(
            st.is_some(),
            "tandemd did not exit within 10 s of SIGTERM:\n{}",
            p.log_text()
        );
        let st = st.unwrap_or_else(|| unreachable!());
        assert!(
            st.success(),
            "tandemd exited with {st} after SIGTERM:\n{}",
            p.log_text()
        );
    }
}

/// True if `a` lies in the inclusive range `lo..=hi`.
pub fn in_range(a: Ipv4Addr, lo: &str, hi: &str) -> bool {
    let lo: Ipv4Addr = lo.parse().expect("range start");
    let hi: Ipv4Addr = hi.parse().expect("range end");
    (u32::from(lo)..=u32::from(hi)).contains(&u32::from(a))
}

/// perfdhcp in `ns` on `iface` (which needs an address): `clients` new clients at `rate`/s for
/// at most `secs` s, MACs from `base` (like `00:0a:00:00:00:00`); returns its output.
#[allow(dead_code)] // not every test binary that includes the harness runs perfdhcp
pub fn perfdhcp(ns: &Netns, iface: &str, rate: u32, clients: u32, secs: u32, base: &str) -> String {
    let out = ns.exec(&[
        "timeout",
        &(secs + 15).to_string(),
        "perfdhcp",
        "-4",
        "-l",
        iface,
        "-r",
        &rate.to_string(),
        "-R",
        &clients.to_string(),
        "-p",
        &secs.to_string(),
        "-b",
        &format!("mac={base}"),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("sent packets"),
        "perfdhcp did not run ({}):\n{text}",
        out.status
    );
    text
}
