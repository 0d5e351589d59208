//! Admin API and `tandemctl` tests against the real `tandemd` that cargo built.
//!
//! Each test makes two network namespaces, `tdm-<pid>-adm<tag>-srv` (the daemon, on one end of a
//! veth pair, admin endpoint on the namespace's own loopback) and `tdm-<pid>-adm<tag>-cli` (a
//! busybox `udhcpc` on the other end, to create a real lease), and removes both on drop. HTTP
//! requests are made with `curl` inside the server's namespace, so nothing touches the host's
//! network. The tests need root, `ip`, `curl` and `udhcpc`; without them they fail saying so.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

const TANDEMD: &str = env!("CARGO_BIN_EXE_tandemd");
const TANDEMCTL: &str = env!("CARGO_BIN_EXE_tandemctl");
const ADMIN: &str = "127.0.0.1:9167";
const TOKEN: &str = "tandem-admin-test-token-5f0c2a9e";
const SRV_IF: &str = "tdms";
const CLI_IF: &str = "tdmc";

// ------------------------------------------------------------------------------------------------
// Small harness: root check, namespaces, the daemon, curl.
// ------------------------------------------------------------------------------------------------

fn which(tool: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|d| Path::new(d).join(tool).is_file())
}

fn preflight() {
    let euid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        euid, 0,
        "the admin API tests need root (they create network namespaces and veth links and run \
         tandemd on port 67); run them as root, e.g. `sudo cargo test -p tandem-controlplane --test admin`"
    );
    let missing: Vec<&str> = ["ip", "curl", "udhcpc", "timeout", "kill"]
        .into_iter()
        .filter(|t| !which(t))
        .collect();
    assert!(
        missing.is_empty(),
        "missing tools for the admin API tests: {missing:?}; install them with \
         `sudo bash deploy/install-deps.sh`"
    );
}

fn run(argv: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

fn run_ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
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

/// A network namespace; whatever still runs inside is killed and the namespace deleted on drop.
struct Ns {
    name: String,
}

impl Ns {
    fn new(name: String) -> Ns {
        let _ = run(&["ip", "netns", "del", &name]);
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Ns { name };
        run_ok(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run(&full)
    }

    fn ip(&self, args: &str) {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend(args.split_whitespace());
        run_ok(&argv);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        for sig in ["TERM", "KILL"] {
            let out = run(&["ip", "netns", "pids", &self.name]);
            let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if pids.is_empty() {
                break;
            }
            for p in &pids {
                let _ = run(&["kill", "-s", sig, p]);
            }
            sleep(Duration::from_millis(300));
        }
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// An HTTP answer seen through curl.
#[derive(Debug)]
struct Http {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Assert a JSON error `{"error": "..."}` with status `code`; returns the message.
    fn expect_error(&self, code: u16) -> String {
        assert_eq!(self.code, code, "{self:?}");
        let v = self.json();
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("error without an \"error\" string: {v}"));
        assert!(!msg.is_empty());
        msg.to_string()
    }
}

/// Which `Authorization` header to send.
#[derive(Copy, Clone, Debug)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
}

/// One test's world: scratch directory, namespaces, config, token, and the daemon.
struct World {
    dir: tempfile::TempDir,
    srv: Ns,
    cli: Ns,
    daemon: Option<Child>,
    starts: u32,
}

fn scope_lan() -> String {
    format!(
        "\n[[scope]]\nname = \"lan\"\nsubnet = \"10.99.0.0/24\"\ninterface = \"{SRV_IF}\"\n\
         ranges = [\"10.99.0.100-10.99.0.150\"]\nlease_time = \"10m\"\nauthoritative = true\n"
    )
}

impl World {
    /// Namespaces joined by a veth pair, the server at 10.99.0.1/24, and a config with (or
    /// without) `admin_token_file`.
    fn new(tag: &str, with_token: bool) -> World {
        preflight();
        let dir = tempfile::Builder::new()
            .prefix(&format!("tdm-adm{tag}-"))
            .tempdir_in("/tmp")
            .expect("temp dir");
        let base = format!("tdm-{}-adm{tag}", std::process::id());
        let srv = Ns::new(format!("{base}-srv"));
        let cli = Ns::new(format!("{base}-cli"));
        run_ok(&[
            "ip", "link", "add", SRV_IF, "netns", &srv.name, "type", "veth", "peer", "name",
            CLI_IF, "netns", &cli.name,
        ]);
        srv.ip(&format!("addr add 10.99.0.1/24 dev {SRV_IF}"));
        srv.ip(&format!("link set {SRV_IF} up"));
        cli.ip(&format!("link set {CLI_IF} up"));
        let w = World {
            dir,
            srv,
            cli,
            daemon: None,
            starts: 0,
        };
        let token = w.path("admin.token");
        fs::write(&token, format!("{TOKEN}\n")).expect("write token");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).expect("chmod token");
        w.write_config(with_token, &scope_lan());
        w
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_table(&self, with_token: bool) -> String {
        let token = if with_token {
            format!(
                "admin_token_file = \"{}\"\n",
                self.path("admin.token").display()
            )
        } else {
            String::new()
        };
        format!(
            "[server]\nserver_id = \"10.99.0.1\"\ninterfaces = [\"{SRV_IF}\"]\nstate_dir = \"{}\"\n\
             durability = \"sync\"\nadmin_listen = \"{ADMIN}\"\n{token}",
            self.path("state").display()
        )
    }

    fn write_config(&self, with_token: bool, scopes: &str) {
        let text = format!("{}{scopes}", self.server_table(with_token));
        fs::write(self.path("tandem.toml"), text).expect("write config");
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path(&format!("tandemd-{}.log", self.starts))).unwrap_or_default()
    }

    /// Start tandemd (with `env` added) and return without waiting.
    fn spawn(&mut self, env: &[(&str, &Path)]) {
        self.starts += 1;
        let log =
            fs::File::create(self.path(&format!("tandemd-{}.log", self.starts))).expect("log file");
        let log2 = log.try_clone().expect("dup log");
        let cfg = self.path("tandem.toml");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.srv.name, TANDEMD, "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.daemon = Some(cmd.spawn().expect("start tandemd"));
    }

    /// Start tandemd and wait until its admin endpoint answers.
    fn start(&mut self) {
        self.spawn(&[]);
        self.wait_serving();
    }

    fn wait_serving(&mut self) {
        let ready = poll(Duration::from_secs(20), || {
            if let Some(st) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tandemd exited during start-up ({st}):\n{}", self.log());
            }
            (self.curl("GET", "/v1/stats", Auth::Bearer(TOKEN)).code == 200).then_some(())
        });
        assert!(
            ready.is_some(),
            "tandemd not serving after 20 s:\n{}",
            self.log()
        );
    }

    /// Wait up to `timeout` for the daemon to exit; its status.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.daemon.as_mut()?;
        poll(timeout, || child.try_wait().ok().flatten())
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .daemon
            .as_ref()
            .expect("daemon started")
            .id()
            .to_string();
        run_ok(&["kill", "-s", sig, &pid]);
    }

    /// `curl` the admin endpoint inside the server namespace.
    fn curl(&self, method: &str, path: &str, auth: Auth<'_>) -> Http {
        let url = format!("http://{ADMIN}{path}");
        let hdr;
        let mut argv = vec!["curl", "-sS", "-i", "--max-time", "20", "-X", method];
        if let Auth::Bearer(t) = auth {
            hdr = format!("Authorization: Bearer {t}");
            argv.extend(["-H", &hdr]);
        }
        argv.push(&url);
        let out = self.srv.exec(&argv);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return Http {
                code: 0,
                headers: Vec::new(),
                body: format!("curl failed: {}", String::from_utf8_lossy(&out.stderr)),
            };
        };
        let mut lines = head.lines();
        let code = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Http {
            code,
            headers,
            body: body.to_string(),
        }
    }

    fn get(&self, path: &str) -> Http {
        self.curl("GET", path, Auth::Bearer(TOKEN))
    }

    /// `tandemctl --admin ADMIN --token-file FILE ARGS` in the server namespace.
    fn ctl(&self, token_file: &Path, args: &[&str]) -> Output {
        let tf = token_file.display().to_string();
        let mut argv = vec![TANDEMCTL, "--admin", ADMIN, "--token-file", &tf];
        argv.extend_from_slice(args);
        self.srv.exec(&argv)
    }

    /// Get a real lease with busybox udhcpc in the client namespace; its address.
    fn obtain_lease(&self) -> String {
        let out = self.cli.exec(&[
            "udhcpc",
            "-i",
            CLI_IF,
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-T",
            "2",
            "-s",
            "/bin/true",
        ]);
        assert!(
            out.status.success(),
            "udhcpc got no lease ({}):\n{}{}\n--- tandemd:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let leases = self.get("/v1/leases?state=active").json();
        let first = leases
            .as_array()
            .and_then(|a| a.first())
            .unwrap_or_else(|| panic!("no active lease after udhcpc: {leases}"));
        first["address"]
            .as_str()
            .expect("address string")
            .to_string()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = run(&["kill", "-s", "TERM", &c.id().to_string()]);
                if poll(Duration::from_secs(5), || c.try_wait().ok().flatten()).is_none() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("----- tandemd log:\n{}", self.log());
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Prometheus text format check.
// ------------------------------------------------------------------------------------------------

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parse `{k="v",...}`; the labels, or why not.
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .ok_or("labels not in braces")?;
    let mut out = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !is_metric_name(k) || k.contains(':') {
            return Err(format!("bad label name {k:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in label value".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        out.push((k.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

/// One sample: name, labels, value.
type PromSample = (String, Vec<(String, String)>, f64);

/// Check that every line is a comment or `name{labels} value`; the samples.
fn parse_prometheus(text: &str) -> Vec<PromSample> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if line.starts_with('#') {
            let mut w = line.split_whitespace();
            w.next();
            match w.next() {
                Some("HELP") | Some("TYPE") => {
                    let name = w.next().unwrap_or_default();
                    assert!(is_metric_name(name), "bad metric name in comment, {}", at());
                }
                _ => {}
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value, {}", at()));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value, {}", at())),
        };
        let (name, labels) = match series.find('{') {
            Some(i) => (
                &series[..i],
                parse_labels(&series[i..]).unwrap_or_else(|e| panic!("{e}, {}", at())),
            ),
            None => (series, Vec::new()),
        };
        assert!(is_metric_name(name), "bad metric name, {}", at());
        samples.push((name.to_string(), labels, value));
    }
    samples
}

fn sample(samples: &[PromSample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.2)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

// ------------------------------------------------------------------------------------------------
// Tests.
// ------------------------------------------------------------------------------------------------

/// Every route refuses a missing or wrong token with 401 and a JSON error, and answers with the
/// right one.
#[test]
fn every_route_needs_the_bearer_token() {
    let mut w = World::new("auth", true);
    w.start();
    let addr = w.obtain_lease();
    let routes = [
        ("GET", "/v1/status".to_string()),
        ("GET", "/v1/leases".to_string()),
        (
            "GET",
            "/v1/leases?state=active&limit=1&offset=0".to_string(),
        ),
        ("GET", format!("/v1/leases/{addr}")),
        ("GET", "/v1/stats".to_string()),
        ("GET", "/metrics".to_string()),
        ("POST", "/v1/reload".to_string()),
        ("GET", "/v1/nonexistent".to_string()),
    ];
    for (method, path) in &routes {
        let none = w.curl(method, path, Auth::None);
        let msg = none.expect_error(401);
        assert!(msg.contains("Authorization"), "{method} {path}: {msg}");
        assert_eq!(
            none.header("WWW-Authenticate"),
            Some("Bearer realm=\"tandem\""),
            "{method} {path}"
        );
        let wrong = w.curl(
            method,
            path,
            Auth::Bearer("tandem-admin-test-token-5f0c2a9f"),
        );
        assert!(wrong.expect_error(401).contains("wrong"), "{method} {path}");
        let truncated = w.curl(method, path, Auth::Bearer(&TOKEN[..TOKEN.len() - 1]));
        truncated.expect_error(401);
    }
    for (method, path) in &routes[..routes.len() - 1] {
        let ok = w.curl(method, path, Auth::Bearer(TOKEN));
        assert_eq!(ok.code, 200, "{method} {path}: {ok:?}");
    }
    w.get("/v1/nonexistent").expect_error(404);
}

/// Status, leases (list, paging, show) and stats keep their JSON shapes; errors carry the right
/// codes.
#[test]
fn json_shapes_paging_and_errors() {
    let mut w = World::new("json", true);
    w.start();
    let addr = w.obtain_lease();

    let status = w.get("/v1/status").json();
    for k in [
        "version",
        "server_id",
        "uptime_secs",
        "durability",
        "state_dir",
        "interfaces",
        "backend",
        "scopes",
    ] {
        assert!(status.get(k).is_some(), "status lacks {k}: {status}");
    }
    assert_eq!(status["server_id"], "10.99.0.1");
    assert_eq!(status["durability"], "sync");
    let scope = &status["scopes"][0];
    assert_eq!(scope["name"], "lan");
    assert_eq!(scope["subnet"], "10.99.0.0/24");
    assert_eq!(scope["size"], 51);
    assert_eq!(scope["active"], 1);
    assert_eq!(scope["free"], 50);

    let list = w.get("/v1/leases");
    assert_eq!(list.header("X-Total-Count"), Some("1"));
    let leases = list.json();
    let lease = &leases.as_array().expect("array")[0];
    for k in [
        "address",
        "state",
        "client_id",
        "mac",
        "hostname",
        "start",
        "expires",
        "cltt",
        "scope",
    ] {
        assert!(lease.get(k).is_some(), "lease lacks {k}: {lease}");
    }
    assert_eq!(lease["address"], addr.as_str());
    assert_eq!(lease["state"], "active");
    assert_eq!(lease["scope"], "lan");
    assert!(lease["expires"].as_u64() > lease["start"].as_u64());

    let shown = w.get(&format!("/v1/leases/{addr}"));
    assert_eq!(shown.code, 200);
    assert_eq!(&shown.json(), lease, "show and list agree");

    // Paging: the one lease is on page 0, not past it; the total is the same on both.
    let page = w.get("/v1/leases?limit=1&offset=0");
    assert_eq!(page.json().as_array().map(Vec::len), Some(1));
    let past = w.get("/v1/leases?limit=1&offset=1");
    assert_eq!(past.json().as_array().map(Vec::len), Some(0));
    assert_eq!(past.header("X-Total-Count"), Some("1"));
    let released = w.get("/v1/leases?state=released");
    assert_eq!(released.json().as_array().map(Vec::len), Some(0));

    let stats = w.get("/v1/stats").json();
    for k in [
        "received",
        "discover",
        "request",
        "offer",
        "ack",
        "replied",
        "dropped",
        "leases_active",
        "journal",
        "withheld_replies",
    ] {
        assert!(stats.get(k).is_some(), "stats lack {k}: {stats}");
    }
    assert!(stats["ack"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["leases_active"], 1);
    assert!(stats["journal"]["commits"].as_u64() >= Some(1), "{stats}");

    // Errors, each a JSON object with the right status.
    w.get("/v1/leases/10.99.0.149").expect_error(404);
    assert!(w
        .get("/v1/leases/10.99.0.999")
        .expect_error(400)
        .contains("IPv4"));
    assert!(w
        .get("/v1/leases?limit=0")
        .expect_error(400)
        .contains("limit"));
    assert!(w
        .get("/v1/leases?offset=-3")
        .expect_error(400)
        .contains("offset"));
    assert!(w
        .get("/v1/leases?state=happy")
        .expect_error(400)
        .contains("state"));
    assert!(w
        .get("/v1/leases?scope=nope")
        .expect_error(400)
        .contains("scope"));
    assert!(w
        .get("/v1/leases?colour=red")
        .expect_error(400)
        .contains("colour"));
    assert!(w.get("/v1/status?x=1").expect_error(400).contains("x"));
    let post_status = w.curl("POST", "/v1/status", Auth::Bearer(TOKEN));
    post_status.expect_error(405);
    assert_eq!(post_status.header("Allow"), Some("GET"));
    let get_reload = w.get("/v1/reload");
    get_reload.expect_error(405);
    assert_eq!(get_reload.header("Allow"), Some("POST"));
    w.get("/v2/status").expect_error(404);
}

/// `/metrics` is valid Prometheus text with the expected families, and its values follow a real
/// DORA exchange.
#[test]
fn metrics_are_prometheus_text() {
    let mut w = World::new("metrics", true);
    w.start();
    w.obtain_lease();
    let m = w.get("/metrics");
    assert_eq!(m.code, 200, "{m:?}");
    assert!(
        m.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        m.header("Content-Type")
    );
    let samples = parse_prometheus(&m.body);
    for name in [
        "tandem_dhcp_frames_received_total",
        "tandem_dhcp_messages_received_total",
        "tandem_dhcp_replies_sent_total",
        "tandem_dhcp_dropped_total",
        "tandem_dhcp_unanswered_total",
        "tandem_lease_events_total",
        "tandem_leases",
        "tandem_pool_size",
        "tandem_journal_commits_total",
        "tandem_journal_commit_duration_seconds_bucket",
        "tandem_journal_commit_duration_seconds_sum",
        "tandem_journal_commit_duration_seconds_count",
        "tandem_replies_withheld_total",
        "tandem_uptime_seconds",
        "tandem_worker_responding",
    ] {
        assert!(
            samples.iter().any(|(n, _, _)| n == name),
            "no {name} in /metrics:\n{}",
            m.body
        );
    }
    let v = |name: &str, labels: &[(&str, &str)]| sample(&samples, name, labels);
    assert!(
        v(
            "tandem_dhcp_messages_received_total",
            &[("type", "discover")]
        ) >= 1.0
    );
    assert!(
        v(
            "tandem_dhcp_messages_received_total",
            &[("type", "request")]
        ) >= 1.0
    );
    assert!(v("tandem_dhcp_replies_sent_total", &[("type", "offer")]) >= 1.0);
    assert!(v("tandem_dhcp_replies_sent_total", &[("type", "ack")]) >= 1.0);
    assert_eq!(
        v("tandem_dhcp_dropped_total", &[("reason", "bad_magic")]),
        0.0
    );
    assert_eq!(
        v("tandem_leases", &[("scope", "lan"), ("state", "active")]),
        1.0
    );
    assert_eq!(
        v("tandem_leases", &[("scope", "lan"), ("state", "free")]),
        50.0
    );
    assert_eq!(v("tandem_pool_size", &[("scope", "lan")]), 51.0);
    assert_eq!(v("tandem_worker_responding", &[]), 1.0);
    let commits = v("tandem_journal_commits_total", &[]);
    assert!(commits >= 1.0);
    assert_eq!(
        v("tandem_journal_commit_duration_seconds_count", &[]),
        commits
    );
    assert_eq!(
        v(
            "tandem_journal_commit_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        commits
    );
    assert!(v("tandem_journal_commit_duration_seconds_sum", &[]) > 0.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| n == "tandem_journal_commit_duration_seconds_bucket")
        .map(|s| s.2)
        .collect();
    assert!(buckets.windows(2).all(|p| p[0] <= p[1]), "{buckets:?}");
}

/// A reload with a broken file answers 422 with the errors by line and key and keeps serving the
/// old configuration; a good file is then taken (also through tandemctl).
#[test]
fn reload_refuses_a_broken_config_and_keeps_serving() {
    let mut w = World::new("reload", true);
    w.start();
    let broken = format!(
        "{}\n[[scope]]\nname = \"lan\"\nsubnet = \"10.99.0.0/24\"\ninterface = \"{SRV_IF}\"\n\
         ranges = [\"10.99.0.100-10.99.0.150\"]\nlease_tme = \"10m\"\n",
        w.server_table(true)
    );
    fs::write(w.path("tandem.toml"), &broken).expect("write broken config");
    let r = w.curl("POST", "/v1/reload", Auth::Bearer(TOKEN));
    assert!(r.expect_error(422).contains("previous configuration"));
    let errors = r.json()["errors"].clone();
    let e = &errors[0];
    assert_eq!(e["key"], "scope.\"lan\".lease_tme", "{errors}");
    let line = broken
        .lines()
        .position(|l| l.starts_with("lease_tme"))
        .expect("line")
        + 1;
    assert_eq!(e["line"], line, "{errors}");
    assert!(e["text"].as_str().is_some_and(|t| t.contains("lease_tme")));

    // tandemctl shows the same refusal and exits 1.
    let out = w.ctl(&w.path("admin.token"), &["reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("lease_tme"));

    // Still serving the old configuration: its scope, and a real client gets a lease from it.
    let status = w.get("/v1/status").json();
    assert_eq!(status["scopes"].as_array().map(Vec::len), Some(1));
    let addr = w.obtain_lease();
    assert!(addr.starts_with("10.99.0."), "{addr}");

    // A good file with a second (relayed) scope is taken.
    w.write_config(
        true,
        &format!(
            "{}\n[[scope]]\nname = \"remote\"\nsubnet = \"10.98.0.0/24\"\n\
             ranges = [\"10.98.0.10-10.98.0.20\"]\n",
            scope_lan()
        ),
    );
    let out = w.ctl(&w.path("admin.token"), &["reload", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["scopes"], 2);
    let status = w.get("/v1/status").json();
    assert_eq!(status["scopes"][1]["name"], "remote");
    // The lease survived the reload.
    assert_eq!(
        w.get(&format!("/v1/leases/{addr}")).json()["state"],
        "active"
    );
}

/// tandemctl: 0 on success for each verb, 1 on a server error, 2 on usage errors, 3 when
/// unreachable, 4 on a wrong token.
#[test]
fn tandemctl_verbs_and_exit_codes() {
    let mut w = World::new("ctl", true);
    w.start();
    let addr = w.obtain_lease();
    let good = w.path("admin.token");
    let bad = w.path("wrong.token");
    fs::write(&bad, "not-the-right-token-at-all").expect("write wrong token");

    let ok = |args: &[&str]| {
        let out = w.ctl(&good, args);
        assert!(out.status.success(), "tandemctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown: Value =
        serde_json::from_str(&ok(&["lease", "show", &addr, "--json"])).expect("JSON");
    assert_eq!(shown["address"], addr.as_str());
    assert!(ok(&["lease", "show", &addr]).contains("active"));
    let page: Value = serde_json::from_str(&ok(&[
        "lease", "list", "--limit", "1", "--offset", "0", "--json",
    ]))
    .expect("JSON");
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    let table = ok(&["lease", "list", "--limit", "5", "--offset", "1"]);
    assert!(
        table.contains("0 shown from offset 1, 1 matching"),
        "{table}"
    );
    assert!(ok(&["status"]).contains("10.99.0.1"));
    assert!(ok(&["stats"]).contains("journal.commits"));
    assert!(ok(&["reload"]).contains("1 scope(s)"));
    let metrics = ok(&["metrics"]);
    assert!(!parse_prometheus(&metrics).is_empty());

    let code = |token: &Path, args: &[&str]| w.ctl(token, args).status.code();
    assert_eq!(code(&bad, &["status"]), Some(4), "wrong token");
    assert_eq!(code(&bad, &["metrics"]), Some(4), "wrong token");
    assert_eq!(
        code(&good, &["lease", "show", "10.99.0.149"]),
        Some(1),
        "unknown lease"
    );
    assert_eq!(
        code(&good, &["lease", "list", "--state", "happy"]),
        Some(1),
        "bad parameter"
    );
    assert_eq!(
        code(&good, &["lease", "show", "not-an-ip"]),
        Some(2),
        "usage"
    );
    assert_eq!(code(&good, &["frobnicate"]), Some(2), "usage");
    assert_eq!(
        code(&w.path("missing.token"), &["status"]),
        Some(2),
        "unreadable token file"
    );
    let out = w.srv.exec(&[
        TANDEMCTL,
        "--admin",
        "127.0.0.1:9",
        "--token-file",
        &good.display().to_string(),
        "status",
    ]);
    assert_eq!(out.status.code(), Some(3), "unreachable: {out:?}");
}

/// A token file that others may read is refused at start with a message saying how to fix it.
#[test]
fn shared_token_file_is_refused_at_start() {
    let mut w = World::new("perm", true);
    fs::set_permissions(w.path("admin.token"), fs::Permissions::from_mode(0o644)).expect("chmod");
    w.spawn(&[]);
    let st = w
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("tandemd kept running with a 0644 token file:\n{}", w.log()));
    assert!(!st.success());
    let log = w.log();
    assert!(log.contains("admin_token_file"), "{log}");
    assert!(log.contains("0644") && log.contains("chmod 600"), "{log}");
}

/// Without a token file the admin endpoint must be on loopback: `--check-config` says so with
/// the line and key; with a token file the same address is accepted.
#[test]
fn non_loopback_admin_needs_a_token() {
    let w = World::new("loop", false);
    let cfg = format!(
        "[server]\nserver_id = \"10.99.0.1\"\ninterfaces = [\"{SRV_IF}\"]\n\
         admin_listen = \"10.99.0.1:9167\"\n{}",
        scope_lan()
    );
    let path = w.path("open.toml");
    fs::write(&path, &cfg).expect("write");
    let out = run(&[TANDEMD, "--check-config", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:", path.display())) && err.contains("server.admin_listen"),
        "{err}"
    );
    assert!(
        err.contains("loopback") && err.contains("admin_token_file"),
        "{err}"
    );

    let with_token = cfg.replace(
        "admin_listen",
        &format!(
            "admin_token_file = \"{}\"\nadmin_listen",
            w.path("admin.token").display()
        ),
    );
    fs::write(&path, with_token).expect("write");
    let out = run(&[TANDEMD, "--check-config", &path.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
}

/// Without a token file (loopback), the API answers without authentication.
#[test]
fn loopback_without_token_is_open() {
    let mut w = World::new("open", false);
    w.start();
    assert_eq!(w.curl("GET", "/v1/status", Auth::None).code, 200);
    assert_eq!(w.curl("GET", "/metrics", Auth::None).code, 200);
}

/// Under systemd (`NOTIFY_SOCKET`), tandemd reports READY, RELOADING/READY around a reload
/// (SIGHUP or the API), and STOPPING.
#[test]
fn systemd_notifications() {
    let mut w = World::new("notify", true);
    let sock_path = w.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let recv = || {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).expect("a notification from tandemd");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    w.spawn(&[("NOTIFY_SOCKET", &sock_path)]);
    let first = recv();
    assert!(
        first.starts_with("READY=1\nSTATUS=serving 1 scope(s)"),
        "{first:?}"
    );
    w.wait_serving();

    w.signal("HUP");
    assert!(recv().starts_with("RELOADING=1\n"));
    assert_eq!(recv(), "READY=1\nSTATUS=serving 1 scope(s)\n");

    assert_eq!(w.curl("POST", "/v1/reload", Auth::Bearer(TOKEN)).code, 200);
    assert!(recv().starts_with("RELOADING=1\n"));
    assert!(recv().starts_with("READY=1\n"));

    w.signal("TERM");
    assert!(recv().starts_with("STOPPING=1\n"));
    let st = w.wait_exit(Duration::from_secs(10)).expect("tandemd exits");
    assert!(st.success(), "{st}\n{}", w.log());
}
