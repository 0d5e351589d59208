//! Fixtures the integration tests of `tandem-bench` share: commands under a time limit, network
//! namespaces that clean up after themselves, processes stopped on drop, and tandemd started in
//! a namespace.
//!
//! Every test file includes this module (`mod common;`) and uses only part of it.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Run `argv` under `timeout 60`; its output.
pub fn run(argv: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Assert that `out`, the output of `what`, is a success; show its output otherwise.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `argv`, which must succeed; its stdout.
pub fn run_ok(argv: &[&str]) -> String {
    let o = run(argv);
    assert_success(&format!("{argv:?}"), &o);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// True while process `pid` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Send `sig` (a name such as `TERM`) to `pid`; errors are ignored.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Fail unless the test runs as root; `why` is the whole message.
pub fn assert_root(why: &str) {
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(uid, 0, "{why}");
}

/// Fail unless `ip`, `timeout` and `kill` are installed.
pub fn assert_tools() {
    for tool in ["ip", "timeout", "kill"] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file());
        assert!(
            found,
            "this test needs `{tool}` (Debian: iproute2 / coreutils / procps)"
        );
    }
}

/// The names of the network namespaces that exist now.
pub fn netns_names() -> Vec<String> {
    let out = run(&["ip", "netns", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// TERM, then KILL, every process inside `ns`.
pub fn kill_all_in(ns: &str) {
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
        let t = Instant::now();
        while pids.iter().any(|p| alive(*p)) && t.elapsed() < Duration::from_secs(3) {
            sleep(Duration::from_millis(50));
        }
    }
}

/// Stop every process inside namespace `ns`, then delete it (nothing if it does not exist).
/// Only used on the tests' own namespaces.
pub fn remove_netns(ns: &str) {
    if !netns_names().iter().any(|n| n == ns) {
        return;
    }
    kill_all_in(ns);
    let _ = run(&["ip", "netns", "del", ns]);
}

/// A network namespace with its loopback up; deleted (after stopping what runs inside) on drop.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Create namespace `name`, removing a stale one of that name first.
    pub fn new(name: String) -> Netns {
        remove_netns(&name);
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Turn IPv6 off in the namespace (no router solicitations or DAD on its links).
    pub fn disable_ipv6(&self) {
        for k in ["all", "default"] {
            self.exec_ok(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
            ]);
        }
    }

    /// `ip -n NAME ARGS`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run_ok(&argv)
    }

    /// Run `argv` inside the namespace; its output.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// Run `argv` inside the namespace, which must succeed; its stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run_ok(&full)
    }

    /// A counter of `/sys/class/net/IFACE/statistics` in this namespace.
    pub fn if_stat(&self, iface: &str, name: &str) -> u64 {
        let path = format!("/sys/class/net/{iface}/statistics/{name}");
        self.exec_ok(&["cat", &path])
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path} in {}: {e}", self.name))
    }

    /// (InDatagrams, NoPorts) of the namespace's UDP stack (`/proc/net/snmp`).
    pub fn udp_counters(&self) -> (u64, u64) {
        let text = self.exec_ok(&["cat", "/proc/net/snmp"]);
        let udp: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
        assert!(udp.len() >= 2, "no Udp lines in /proc/net/snmp: {text}");
        let names: Vec<&str> = udp[0].split_whitespace().collect();
        let values: Vec<&str> = udp[1].split_whitespace().collect();
        let get = |k: &str| -> u64 {
            let i = names
                .iter()
                .position(|n| *n == k)
                .unwrap_or_else(|| panic!("no {k} in {}", udp[0]));
            values[i].parse().expect("a number")
        };
        (get("InDatagrams"), get("NoPorts"))
    }

    /// True if a socket is bound to UDP port `port` in the namespace (`/proc/net/udp`).
    pub fn udp_bound(&self, port: u16) -> bool {
        let text = self.exec_ok(&["cat", "/proc/net/udp"]);
        let needle = format!(":{port:04X}");
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|local| local.ends_with(&needle))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// One end of a veth pair: its namespace, name and address (`A.B.C.D/LEN`).
pub struct End<'a> {
    /// The namespace it is created in.
    pub ns: &'a Netns,
    /// The interface name.
    pub iface: &'a str,
    /// Its address with prefix length.
    pub cidr: &'a str,
}

/// Create a veth pair between `a` and `b` directly inside their namespaces (nothing appears in
/// the host's namespace), address both ends and bring them up. `per_end` goes after each end's
/// name (e.g. queue counts).
pub fn veth(a: End, b: End, per_end: &[&str]) {
    let mut argv = vec!["ip", "link", "add", a.iface, "netns", &a.ns.name];
    argv.extend_from_slice(per_end);
    argv.extend_from_slice(&["type", "veth", "peer", "name", b.iface, "netns", &b.ns.name]);
    argv.extend_from_slice(per_end);
    run_ok(&argv);
    for e in [&a, &b] {
        e.ns.ip(&["addr", "add", e.cidr, "dev", e.iface]);
    }
    for e in [&a, &b] {
        e.ns.ip(&["link", "set", e.iface, "up"]);
    }
}

/// A process a test started; stopped (TERM, then KILL) on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// The file its stdout and stderr go to.
    pub log: PathBuf,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has written so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait up to 10 s; true if it exited successfully.
    pub fn stop(&mut self) -> bool {
        signal(self.pid(), "TERM");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The target directory's profile directory (`<target>/<profile>`) this test binary lives in
/// (`<target>/<profile>/deps/NAME-HASH`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// `tandemd` from `TANDEM_BIN_DIR`, else from [`profile_dir`].
pub fn tandemd_path() -> PathBuf {
    let dir = std::env::var_os("TANDEM_BIN_DIR").map_or_else(profile_dir, PathBuf::from);
    let p = dir.join("tandemd");
    assert!(
        p.is_file(),
        "{} is missing: build it first with `cargo build -p tandem-controlplane --bin tandemd` \
         (same target directory and profile as this test), or set TANDEM_BIN_DIR",
        p.display()
    );
    p
}

/// The one scope of the test tandemd: relay style, `subnet` holds the relay's address.
pub struct Scope<'a> {
    /// tandemd's server identifier (its address on `iface`).
    pub server: &'a str,
    /// The interface tandemd serves.
    pub iface: &'a str,
    /// The scope's subnet, `A.B.C.D/LEN`.
    pub subnet: &'a str,
    /// Its address range, `FIRST-LAST`.
    pub range: &'a str,
}

/// tandemd's admin endpoint in its namespace.
pub const ADMIN: &str = "127.0.0.1:9167";

/// Start `tandemd` (UDP backend, durability sync, one scope) in namespace `ns`; its config
/// (`tandem.toml`), state (`state/`) and log (`tandemd.log`) live in `dir`. Returns at once:
/// wait for it with [`wait_ready`].
pub fn start_tandemd(ns: &Netns, tandemd: &Path, dir: &Path, scope: &Scope) -> Proc {
    let cfg = dir.join("tandem.toml");
    fs::write(
        &cfg,
        format!(
            "[server]\nserver_id = \"{}\"\ninterfaces = [\"{}\"]\n\
             state_dir = \"{}\"\ndurability = \"sync\"\nadmin_listen = \"{ADMIN}\"\n\
             log_format = \"text\"\n\n\
             [[scope]]\nname = \"bench\"\nsubnet = \"{}\"\n\
             ranges = [\"{}\"]\nlease_time = 3600\n",
            scope.server,
            scope.iface,
            dir.join("state").display(),
            scope.subnet,
            scope.range
        ),
    )
    .expect("write config");
    spawn_tandemd(ns, tandemd, dir, &cfg)
}

/// Run `tandemd --config CFG` in `ns`, its output to `dir/tandemd.log`.
fn spawn_tandemd(ns: &Netns, tandemd: &Path, dir: &Path, cfg: &Path) -> Proc {
    let log = dir.join("tandemd.log");
    let logf = fs::File::create(&log).expect("log file");
    // `ip netns exec` execs the command, so the child's pid is tandemd's
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(tandemd)
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("dup log"))
        .stderr(logf)
        .spawn()
        .expect("start tandemd");
    Proc { child, log }
}

/// Wait up to 10 s for `ready` of the tandemd `srv`; fails if it exits first or is not ready
/// in time (`not_ready` says what is missing).
pub fn wait_ready(srv: &mut Proc, not_ready: &str, mut ready: impl FnMut() -> bool) {
    let t = Instant::now();
    loop {
        if let Ok(Some(st)) = srv.child.try_wait() {
            panic!("tandemd exited ({st}) at start:\n{}", srv.log());
        }
        if ready() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "tandemd {not_ready} after 10 s:\n{}",
            srv.log()
        );
        sleep(Duration::from_millis(50));
    }
}

/// `tandemctl` from `TANDEM_BIN_DIR`, else from [`profile_dir`] (`cargo test --workspace` builds
/// it there).
pub fn tandemctl_path() -> PathBuf {
    let dir = std::env::var_os("TANDEM_BIN_DIR").map_or_else(profile_dir, PathBuf::from);
    let p = dir.join("tandemctl");
    assert!(
        p.is_file(),
        "{} is missing: build it first with `cargo build -p tandem-controlplane --bin tandemctl` \
         (same target directory and profile as this test), or set TANDEM_BIN_DIR",
        p.display()
    );
    p
}

/// Start `tandemd` in namespace `ns` like [`start_tandemd`], but serving `scope` as the local
/// link of `scope.iface` (`interface = ...` in the scope: clients without a relay get addresses
/// from it), on the AF_XDP backend (native XDP) if `xdp`. Returns at once.
pub fn start_tandemd_on_link(
    ns: &Netns,
    tandemd: &Path,
    dir: &Path,
    scope: &Scope,
    xdp: bool,
) -> Proc {
    let cfg = dir.join("tandem.toml");
    let dataplane = if xdp {
        "\n[dataplane]\nbackend = \"xdp\"\nxdp_mode = \"native\"\n"
    } else {
        ""
    };
    fs::write(
        &cfg,
        format!(
            "[server]\nserver_id = \"{}\"\ninterfaces = [\"{}\"]\n\
             state_dir = \"{}\"\ndurability = \"sync\"\nadmin_listen = \"{ADMIN}\"\n\
             log_format = \"text\"\n{dataplane}\n\
             [[scope]]\nname = \"link\"\nsubnet = \"{}\"\ninterface = \"{}\"\n\
             ranges = [\"{}\"]\nlease_time = 3600\nauthoritative = true\n",
            scope.server,
            scope.iface,
            dir.join("state").display(),
            scope.subnet,
            scope.iface,
            scope.range
        ),
    )
    .expect("write config");
    spawn_tandemd(ns, tandemd, dir, &cfg)
}

/// `tandemctl --admin ADMIN --json ARGS` inside `ns`, which must succeed; its JSON.
pub fn tandemctl_json(ns: &Netns, tandemctl: &Path, args: &[&str]) -> serde_json::Value {
    let ctl = tandemctl.to_str().expect("UTF-8 path");
    let mut argv = vec![ctl, "--admin", ADMIN, "--json"];
    argv.extend_from_slice(args);
    let text = ns.exec_ok(&argv);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("tandemctl {args:?}: {e}: {text}"))
}

/// Remove the namespaces `{prefix}<pid>-*` that earlier runs left behind (their process is
/// gone), e.g. after a test was killed before its guards ran.
pub fn remove_stale_netns(prefix: &str) {
    for name in netns_names() {
        let Some(owner) = name
            .strip_prefix(prefix)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if owner != std::process::id() && !alive(owner) {
            remove_netns(&name);
        }
    }
}

/// The two-namespace lab of a test: namespaces `{prefix}<pid>-{tag}-s` (the server's) and `-c`
/// (the generator's), IPv6 off, joined by a veth pair `server.0`/`client.0` addressed
/// `server.1`/`client.1` (`veth_opts` as for [`veth`]), and a temp dir named `{prefix}...`.
/// Returns (server namespace, client namespace, dir).
pub fn two_ns_link(
    prefix: &str,
    tag: &str,
    server: (&str, &str),
    client: (&str, &str),
    veth_opts: &[&str],
) -> (Netns, Netns, tempfile::TempDir) {
    let base = format!("{prefix}{}-{tag}", std::process::id());
    let s = Netns::new(format!("{base}-s"));
    let c = Netns::new(format!("{base}-c"));
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    for ns in [&s, &c] {
        ns.disable_ipv6();
    }
    veth(
        End {
            ns: &s,
            iface: server.0,
            cidr: server.1,
        },
        End {
            ns: &c,
            iface: client.0,
            cidr: client.1,
        },
        veth_opts,
    );
    (s, c, dir)
}
