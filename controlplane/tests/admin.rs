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

/// The keys of a scope in `GET /v1/scopes` (and `tandemctl scope list --json`).
const SCOPE_KEYS: [&str; 9] = [
    "name",
    "subnet",
    "interface",
    "ranges",
    "lease_time_secs",
    "relationship",
    "size",
    "free",
    "active",
];

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

impl Http {
    /// Parse `curl -i` output.
    fn parse(out: &Output) -> Http {
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
        Http::parse(&out)
    }

    fn get(&self, path: &str) -> Http {
        self.curl("GET", path, Auth::Bearer(TOKEN))
    }

    /// `curl` with `body` as the request body (sent from a file, byte for byte).
    fn curl_body(&self, method: &str, path: &str, auth: Auth<'_>, body: &[u8]) -> Http {
        let file = self.path("request.body");
        fs::write(&file, body).expect("write request body");
        let url = format!("http://{ADMIN}{path}");
        let data = format!("@{}", file.display());
        let hdr;
        let mut argv = vec![
            "curl",
            "-sS",
            "-i",
            "--max-time",
            "20",
            "-X",
            method,
            "-H",
            "Content-Type: application/toml",
            "--data-binary",
            &data,
        ];
        if let Auth::Bearer(t) = auth {
            hdr = format!("Authorization: Bearer {t}");
            argv.extend(["-H", &hdr]);
        }
        argv.push(&url);
        let out = self.srv.exec(&argv);
        Http::parse(&out)
    }

    /// `PUT /v1/scopes/{name}` with the token.
    fn put_scope(&self, name: &str, toml: &str) -> Http {
        self.curl_body(
            "PUT",
            &format!("/v1/scopes/{name}"),
            Auth::Bearer(TOKEN),
            toml.as_bytes(),
        )
    }

    /// `tandemctl ... ARGS` with `input` on its standard input.
    fn ctl_stdin(&self, token_file: &Path, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let tf = token_file.display().to_string();
        let mut child = Command::new("timeout")
            .args(["60", "ip", "netns", "exec", &self.srv.name, TANDEMCTL])
            .args(["--admin", ADMIN, "--token-file", &tf])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tandemctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("tandemctl output")
    }

    /// Run udhcpc once in the client namespace (as the client with `mac`, if given), trying
    /// `tries` times; its output and, if it got a lease, what it learnt (its script's
    /// environment: `ip`, `router`, `lease`, ...).
    fn udhcpc(&self, mac: Option<&str>, tries: u32) -> (Output, Vec<(String, String)>) {
        if let Some(m) = mac {
            self.cli.ip(&format!("link set {CLI_IF} address {m}"));
        }
        let env = self.path("udhcpc.env");
        let _ = fs::remove_file(&env);
        let script = self.path("udhcpc.sh");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
                env.display()
            ),
        )
        .expect("write udhcpc script");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod script");
        let tries = tries.to_string();
        let out = self.cli.exec(&[
            "udhcpc",
            "-i",
            CLI_IF,
            "-f",
            "-q",
            "-n",
            "-t",
            &tries,
            "-T",
            "1",
            "-s",
            &script.display().to_string(),
        ]);
        let vars = fs::read_to_string(&env)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (out, vars)
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

/// A read-only token (`admin_readonly_token_file`) reads every GET route but changes nothing
/// (403, and the daemon did not reload); the admin token still does everything; tandemctl with
/// the read-only token lists leases and is refused a reload.
#[test]
fn the_read_only_token_reads_but_changes_nothing() {
    const RO: &str = "tandem-readonly-test-token-7d1e";
    let mut w = World::new("ro", true);
    let ro = w.path("readonly.token");
    fs::write(&ro, format!("{RO}\n")).expect("write token");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o600)).expect("chmod token");
    let table =
        w.server_table(true) + &format!("admin_readonly_token_file = \"{}\"\n", ro.display());
    fs::write(w.path("tandem.toml"), format!("{table}{}", scope_lan())).expect("write config");
    w.start();
    let addr = w.obtain_lease();
    for path in [
        "/v1/status".to_string(),
        "/v1/leases".to_string(),
        format!("/v1/leases/{addr}"),
        "/v1/stats".to_string(),
        "/metrics".to_string(),
    ] {
        let r = w.curl("GET", &path, Auth::Bearer(RO));
        assert_eq!(r.code, 200, "GET {path} with the read-only token: {r:?}");
    }
    let refused = w.curl("POST", "/v1/reload", Auth::Bearer(RO));
    assert!(refused.expect_error(403).contains("read-only"));
    let refused = w.curl("DELETE", &format!("/v1/leases/{addr}"), Auth::Bearer(RO));
    refused.expect_error(403);
    assert!(
        !w.log().contains("configuration reloaded"),
        "the read-only token reloaded:\n{}",
        w.log()
    );
    let ok = w.curl("POST", "/v1/reload", Auth::Bearer(TOKEN));
    assert_eq!(ok.code, 200, "{ok:?}");
    // The lease is still there (the DELETE was refused).
    assert_eq!(
        w.curl("GET", &format!("/v1/leases/{addr}"), Auth::Bearer(RO))
            .code,
        200
    );
    let out = w.ctl(&ro, &["lease", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w.ctl(&ro, &["reload"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

// ------------------------------------------------------------------------------------------------
// Scopes and lease deletion (issue 6).
// ------------------------------------------------------------------------------------------------

/// The configuration of the scope tests: a commented `lan` scope (range `.100-.{hi}`) served on
/// the veth link.
fn commented_lan(hi: u8) -> String {
    format!(
        "\n# The test link.\n[[scope]]\nname = \"lan\"   # served on the veth\nsubnet = \"10.99.0.0/24\"\n\
         interface = \"{SRV_IF}\"\nranges = [\"10.99.0.100-10.99.0.{hi}\"]\nlease_time = \"10m\"\n\n\
         [scope.options]\nrouters = [\"10.99.0.1\"]\n"
    )
}

/// A relayed scope `remote` with the given range end.
fn remote_scope(hi: u8) -> String {
    format!(
        "[[scope]]\nname = \"remote\"\nsubnet = \"10.98.0.0/24\"\n\
         ranges = [\"10.98.0.10-10.98.0.{hi}\"]\nlease_time = \"1h\"\n"
    )
}

/// The value of `key` in udhcpc's script environment.
fn var<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The scope and lease routes refuse a missing or wrong token, and answer with the right one;
/// so do the failover routes (their behaviour is tested with the pair).
#[test]
fn scope_and_lease_routes_need_the_bearer_token() {
    let mut w = World::new("scauth", true);
    w.start();
    let addr = w.obtain_lease();
    let lease = format!("/v1/leases/{addr}");
    let body = remote_scope(20);
    let routes: [(&str, &str, &[u8]); 13] = [
        ("GET", "/v1/scopes", b""),
        ("GET", "/v1/scopes/lan", b""),
        ("PUT", "/v1/scopes/remote", body.as_bytes()),
        ("DELETE", "/v1/scopes/remote", b""),
        ("DELETE", &lease, b""),
        ("GET", "/v1/failover", b""),
        ("POST", "/v1/failover", b"{}"),
        ("PATCH", "/v1/failover/x", b"{}"),
        ("DELETE", "/v1/failover/x", b""),
        ("POST", "/v1/failover/replicate", b""),
        ("POST", "/v1/failover/x/replicate", b""),
        ("POST", "/v1/failover/x/pause", b""),
        ("POST", "/v1/failover/x/resume", b""),
    ];
    for (method, path, body) in routes {
        let none = w.curl_body(method, path, Auth::None, body);
        let msg = none.expect_error(401);
        assert!(msg.contains("Authorization"), "{method} {path}: {msg}");
        let wrong = w.curl_body(
            method,
            path,
            Auth::Bearer("tandem-admin-test-token-5f0c2a9f"),
            body,
        );
        assert!(wrong.expect_error(401).contains("wrong"), "{method} {path}");
    }
    assert_eq!(w.get(&lease).json()["state"], "active", "nothing was done");
    // With the token, in order: list, show, add, remove, delete the lease, list relationships.
    for (method, path, body) in &routes[..6] {
        let ok = w.curl_body(method, path, Auth::Bearer(TOKEN), body);
        assert_eq!(ok.code, 200, "{method} {path}: {ok:?}");
    }
    // The failover changes get past authentication (their answers are the failover tests').
    for (method, path, body) in &routes[6..] {
        let r = w.curl_body(method, path, Auth::Bearer(TOKEN), body);
        assert!(r.code != 401 && r.code != 0, "{method} {path}: {r:?}");
    }
}

/// Scopes through the API: list and show shapes; a PUT adds a scope (status and the list show
/// it); a PUT replacing a scope's settings keeps its interface, its comments, and a real client
/// then gets the new settings; an invalid change is refused with positioned errors and the file
/// untouched; DELETE removes; unknown names are 404; wrong methods 405.
#[test]
fn scopes_are_listed_changed_and_removed() {
    let mut w = World::new("scopes", true);
    w.write_config(true, &commented_lan(150));
    w.start();
    let addr = w.obtain_lease();

    let list = w.get("/v1/scopes");
    assert_eq!(list.code, 200, "{list:?}");
    let scopes = list.json()["scopes"].clone();
    assert_eq!(scopes.as_array().map(Vec::len), Some(1), "{scopes}");
    let lan = &scopes[0];
    for k in SCOPE_KEYS {
        assert!(lan.get(k).is_some(), "scope lacks {k}: {lan}");
    }
    assert_eq!(lan["name"], "lan");
    assert_eq!(lan["subnet"], "10.99.0.0/24");
    assert_eq!(lan["interface"], SRV_IF);
    assert_eq!(
        lan["ranges"],
        serde_json::json!(["10.99.0.100-10.99.0.150"])
    );
    assert_eq!(lan["lease_time_secs"], 600);
    assert_eq!(lan["relationship"], Value::Null);
    assert_eq!(lan["size"], 51);
    assert_eq!(lan["free"], 50);
    assert_eq!(lan["active"], 1);

    let shown = w.get("/v1/scopes/lan");
    assert_eq!(shown.code, 200, "{shown:?}");
    let shown = shown.json();
    for k in ["name", "subnet", "size", "free", "active", "config"] {
        assert!(shown.get(k).is_some(), "show lacks {k}: {shown}");
    }
    assert_eq!(shown["active"], 1);
    let config = shown["config"].as_str().expect("config text");
    assert!(
        config.starts_with("[[scope]]\nname = \"lan\"   # served on the veth\n"),
        "{config}"
    );
    assert!(
        config.contains("[scope.options]\nrouters = [\"10.99.0.1\"]"),
        "{config}"
    );
    w.get("/v1/scopes/nope").expect_error(404);

    // Add a relayed scope.
    let added = w.put_scope("remote", &format!("# Relayed.\n{}", remote_scope(20)));
    assert_eq!(added.code, 200, "{added:?}");
    assert_eq!(
        added.json(),
        serde_json::json!({ "scope": "remote", "created": true })
    );
    let status = w.get("/v1/status").json();
    let names: Vec<&str> = status["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["lan", "remote"]);
    let remote = &w.get("/v1/scopes").json()["scopes"][1];
    assert_eq!(remote["name"], "remote");
    assert_eq!(remote["interface"], Value::Null);
    assert_eq!(remote["size"], 11);
    assert_eq!(remote["free"], 11);
    let file = fs::read_to_string(w.path("tandem.toml")).expect("config file");
    assert!(file.contains("# The test link.\n[[scope]]"), "{file}");
    assert!(
        file.contains("# Relayed.\n[[scope]]\nname = \"remote\""),
        "{file}"
    );

    // Replace lan's settings: no interface in the body, so it keeps its own.
    let new_lan = "[[scope]]\nname = \"lan\"\nsubnet = \"10.99.0.0/24\"\n\
                   ranges = [\"10.99.0.100-10.99.0.150\"]\nlease_time = \"20m\"\n\n\
                   [scope.options]\nrouters = [\"10.99.0.254\"]\n";
    let changed = w.put_scope("lan", new_lan);
    assert_eq!(changed.code, 200, "{changed:?}");
    assert_eq!(
        changed.json(),
        serde_json::json!({ "scope": "lan", "created": false })
    );
    let lan = w.get("/v1/scopes/lan").json();
    assert_eq!(lan["interface"], SRV_IF, "the interface is kept: {lan}");
    assert_eq!(lan["lease_time_secs"], 1200);
    let file = fs::read_to_string(w.path("tandem.toml")).expect("config file");
    assert!(
        file.contains("# The test link.\n[[scope]]\nname = \"lan\""),
        "{file}"
    );
    assert!(
        file.contains(&format!("interface = \"{SRV_IF}\"")),
        "{file}"
    );
    // A real client renewing its lease now gets the new settings.
    let (out, vars) = w.udhcpc(None, 4);
    assert!(out.status.success(), "udhcpc: {out:?}\n{}", w.log());
    assert_eq!(var(&vars, "ip"), Some(addr.as_str()), "{vars:?}");
    assert_eq!(var(&vars, "router"), Some("10.99.0.254"), "{vars:?}");
    assert_eq!(var(&vars, "lease"), Some("1200"), "{vars:?}");

    // An invalid range: 422 with positioned errors, and the file byte for byte as it was.
    let before = fs::read(w.path("tandem.toml")).expect("config file");
    let bad = w.put_scope(
        "remote",
        &remote_scope(20).replace("10.98.0.10-", "10.97.0.10-"),
    );
    let msg = bad.expect_error(422);
    assert!(msg.contains("nothing changed"), "{msg}");
    let errors = bad.json()["errors"].clone();
    let e = &errors[0];
    assert!(
        e["key"].as_str().is_some_and(|k| k.contains("ranges")),
        "{errors}"
    );
    assert!(
        e["line"].as_u64() > Some(0) && e["column"].as_u64() > Some(0),
        "{errors}"
    );
    for k in ["file", "line", "column", "key", "message", "text"] {
        assert!(e.get(k).is_some(), "error lacks {k}: {e}");
    }
    assert_eq!(
        fs::read(w.path("tandem.toml")).expect("config file"),
        before,
        "the file is untouched"
    );
    // Bad bodies: 400, file untouched.
    let e = w.put_scope("lan", &remote_scope(20)).expect_error(400);
    assert!(e.contains("remote") && e.contains("lan"), "{e}");
    let e = w
        .put_scope("x", "[[scope]]\nname = \"x\"\n[[scope]]\nname = \"y\"\n")
        .expect_error(400);
    assert!(e.contains("exactly one"), "{e}");
    w.put_scope("x", "[[scope]\nname =").expect_error(400);
    w.curl_body(
        "PUT",
        "/v1/scopes/x",
        Auth::Bearer(TOKEN),
        b"[[scope]]\nname = \"\xff\"\n",
    )
    .expect_error(400);
    assert_eq!(
        fs::read(w.path("tandem.toml")).expect("config file"),
        before
    );

    // Remove the relayed scope.
    let removed = w.curl("DELETE", "/v1/scopes/remote", Auth::Bearer(TOKEN));
    assert_eq!(removed.code, 200, "{removed:?}");
    assert_eq!(
        removed.json(),
        serde_json::json!({ "scope": "remote", "deleted": true })
    );
    w.get("/v1/scopes/remote").expect_error(404);
    assert_eq!(
        w.get("/v1/status").json()["scopes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(!fs::read_to_string(w.path("tandem.toml"))
        .expect("config file")
        .contains("remote"));
    w.curl("DELETE", "/v1/scopes/remote", Auth::Bearer(TOKEN))
        .expect_error(404);
    // Removing the last scope leaves an invalid configuration: refused.
    let e = w
        .curl("DELETE", "/v1/scopes/lan", Auth::Bearer(TOKEN))
        .expect_error(422);
    assert!(e.contains("nothing changed"), "{e}");
    assert_eq!(w.get("/v1/scopes/lan").code, 200);

    // Wrong methods.
    for (method, path, allow) in [
        ("POST", "/v1/scopes", "GET"),
        ("DELETE", "/v1/scopes", "GET"),
        ("POST", "/v1/scopes/lan", "GET, PUT, DELETE"),
        ("PATCH", "/v1/scopes/lan", "GET, PUT, DELETE"),
        ("PUT", &format!("/v1/leases/{addr}"), "GET, DELETE"),
    ] {
        let r = w.curl(method, path, Auth::Bearer(TOKEN));
        r.expect_error(405);
        assert_eq!(r.header("Allow"), Some(allow), "{method} {path}");
    }
}

/// A scope in a failover relationship cannot be removed (409 naming the relationship), and
/// the scope list names its relationship; `failover show` prints its state and pools.
#[test]
fn a_scope_in_a_relationship_cannot_be_removed() {
    let mut w = World::new("screl", true);
    let scopes = format!(
        "{}\n{}\n[[failover]]\nname = \"pair\"\nrole = \"primary\"\npartner = \"10.99.0.2\"\n\
         scopes = [\"lan\"]\n",
        scope_lan(),
        remote_scope(20)
    );
    w.write_config(true, &scopes);
    w.start();
    let list = w.get("/v1/scopes").json();
    assert_eq!(list["scopes"][0]["relationship"], "pair", "{list}");
    assert_eq!(list["scopes"][1]["relationship"], Value::Null, "{list}");
    let before = fs::read(w.path("tandem.toml")).expect("config file");
    let e = w
        .curl("DELETE", "/v1/scopes/lan", Auth::Bearer(TOKEN))
        .expect_error(409);
    assert!(
        e.contains("pair") && e.contains("remove it from relationship"),
        "{e}"
    );
    assert_eq!(
        fs::read(w.path("tandem.toml")).expect("config file"),
        before
    );

    let token = w.path("admin.token");
    let out = w.ctl(&token, &["scope", "remove", "lan"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 409"));
    let out = w.ctl(&token, &["scope", "list"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("lan") && l.contains("pair")),
        "{table}"
    );
    let out = w.ctl(&token, &["failover", "show", "pair"]);
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    for part in [
        "relationship",
        "partner state",
        "unacked updates",
        "clock skew",
        "replication lag",
        "mclt wait",
    ] {
        assert!(shown.contains(part), "{part} missing:\n{shown}");
    }
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["SCOPE", "FREE", "BACKUP", "ACTIVE", "EXPIRED", "ABANDONED"]),
        "{shown}"
    );
    let out = w.ctl(&token, &["failover", "show", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["relationships"][0]["name"], "pair");
}

/// A real lease deleted with tandemctl ends at once: the address shows as released and a second
/// client gets it (a one-address pool); the answer carries the lease as it was.
#[test]
fn lease_delete_frees_a_real_lease() {
    let mut w = World::new("ldel", true);
    w.write_config(true, &commented_lan(100));
    w.start();
    let token = w.path("admin.token");
    let (out, vars) = w.udhcpc(Some("02:00:00:00:00:01"), 4);
    assert!(out.status.success(), "first client: {out:?}\n{}", w.log());
    assert_eq!(var(&vars, "ip"), Some("10.99.0.100"));
    let lan = &w.get("/v1/scopes").json()["scopes"][0];
    assert_eq!(
        (lan["free"].as_u64(), lan["active"].as_u64()),
        (Some(0), Some(1))
    );

    // The pool is empty: a second client gets nothing.
    let (out, _) = w.udhcpc(Some("02:00:00:00:00:02"), 2);
    assert!(!out.status.success(), "no address should be left: {out:?}");

    let deleted = w.ctl(&token, &["lease", "delete", "10.99.0.100", "--json"]);
    assert!(deleted.status.success(), "{deleted:?}");
    let v: Value = serde_json::from_slice(&deleted.stdout).expect("JSON");
    assert_eq!(v["address"], "10.99.0.100");
    assert_eq!(v["deleted"], true);
    assert_eq!(v["previous"]["state"], "active");
    assert_eq!(v["previous"]["mac"], "02:00:00:00:00:01");
    assert_eq!(v["previous"]["scope"], "lan");

    let shown = w.get("/v1/leases/10.99.0.100");
    assert_eq!(shown.code, 200, "{shown:?}");
    assert_eq!(shown.json()["state"], "released");
    let lan = &w.get("/v1/scopes").json()["scopes"][0];
    assert_eq!(
        (lan["free"].as_u64(), lan["active"].as_u64()),
        (Some(1), Some(0))
    );
    // Already ended: 404, through the API and the CLI; bad addresses 400.
    let e = w
        .curl("DELETE", "/v1/leases/10.99.0.100", Auth::Bearer(TOKEN))
        .expect_error(404);
    assert!(e.contains("released"), "{e}");
    w.curl("DELETE", "/v1/leases/10.99.0.149", Auth::Bearer(TOKEN))
        .expect_error(404);
    w.curl("DELETE", "/v1/leases/10.99.0.999", Auth::Bearer(TOKEN))
        .expect_error(400);
    let again = w.ctl(&token, &["lease", "delete", "10.99.0.100"]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");

    // The second client now gets the address.
    let (out, vars) = w.udhcpc(Some("02:00:00:00:00:02"), 4);
    assert!(out.status.success(), "second client: {out:?}\n{}", w.log());
    assert_eq!(var(&vars, "ip"), Some("10.99.0.100"));
    let lease = w.get("/v1/leases/10.99.0.100").json();
    assert_eq!(lease["state"], "active");
    assert_eq!(lease["mac"], "02:00:00:00:00:02");
}

/// tandemctl's scope and lease verbs: tables with their headers, `--json` with the contract's
/// keys, `scope set` from a file and from standard input, and the exit codes (1 server error,
/// 2 usage, 3 unreachable, 4 unauthenticated, 5 partner unreachable).
#[test]
fn tandemctl_scope_verbs_and_exit_codes() {
    let mut w = World::new("ctlsc", true);
    w.write_config(true, &commented_lan(150));
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
    let code = |token: &Path, args: &[&str]| w.ctl(token, args).status.code();
    let header = |table: &str| -> Vec<String> {
        table
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };

    // Tables.
    let table = ok(&["scope", "list"]);
    assert_eq!(
        header(&table),
        [
            "NAME",
            "SUBNET",
            "INTERFACE",
            "RANGES",
            "LEASE",
            "RELATIONSHIP",
            "SIZE",
            "FREE",
            "ACTIVE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "lan",
            "10.99.0.0/24",
            SRV_IF,
            "10.99.0.100-10.99.0.150",
            "10m",
            "-",
            "51",
            "50",
            "1"
        ],
        "{table}"
    );
    let status = ok(&["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["SCOPE", "SUBNET", "SIZE", "FREE", "ACTIVE"]),
        "{status}"
    );
    let leases = ok(&["lease", "list"]);
    assert_eq!(
        header(&leases),
        ["ADDRESS", "STATE", "MAC", "EXPIRES", "SCOPE", "CLIENT-ID"],
        "{leases}"
    );
    assert!(
        leases.contains(&addr) && (leases.contains("in 9m") || leases.contains("in 10m")),
        "{leases}"
    );
    let shown = ok(&["scope", "show", "lan"]);
    assert!(shown.contains("10.99.0.0/24"), "{shown}");
    assert!(shown.contains("[[scope]]\nname = \"lan\""), "{shown}");
    assert!(
        shown.contains("lease time") && shown.contains("10m"),
        "{shown}"
    );
    assert!(ok(&["failover", "show"]).contains("no failover relationships configured"));

    // JSON.
    let v: Value = serde_json::from_str(&ok(&["scope", "list", "--json"])).expect("JSON");
    let keys: Vec<&String> = v["scopes"][0].as_object().expect("object").keys().collect();
    for k in SCOPE_KEYS {
        assert!(keys.iter().any(|x| *x == k), "{k} missing: {v}");
    }
    let v: Value = serde_json::from_str(&ok(&["scope", "show", "lan", "--json"])).expect("JSON");
    assert!(
        v["config"]
            .as_str()
            .is_some_and(|c| c.contains("[[scope]]")),
        "{v}"
    );

    // scope set from a file, then from standard input; remove.
    let file = w.path("remote.toml");
    fs::write(&file, remote_scope(20)).expect("write scope file");
    let out = ok(&[
        "scope",
        "set",
        "remote",
        "--file",
        &file.display().to_string(),
    ]);
    assert!(out.contains("scope remote added"), "{out}");
    let out = w.ctl_stdin(
        &good,
        &["scope", "set", "remote", "--file", "-", "--json"],
        &remote_scope(30),
    );
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({ "scope": "remote", "created": false })
    );
    assert_eq!(w.get("/v1/scopes/remote").json()["size"], 21);
    // An invalid scope: exit 1 with the positioned error.
    fs::write(
        &file,
        remote_scope(20).replace("10.98.0.10-", "10.97.0.10-"),
    )
    .expect("write");
    let out = w.ctl(
        &good,
        &[
            "scope",
            "set",
            "remote",
            "--file",
            &file.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 422") && err.contains("tandem.toml:") && err.contains("ranges"),
        "{err}"
    );
    assert!(ok(&["scope", "remove", "remote"]).contains("scope remote removed"));

    // Exit codes.
    assert_eq!(
        code(&good, &["scope", "show", "remote"]),
        Some(1),
        "unknown scope"
    );
    assert_eq!(
        code(&good, &["scope", "remove", "remote"]),
        Some(1),
        "unknown scope"
    );
    assert_eq!(
        code(&good, &["lease", "delete", "10.99.0.149"]),
        Some(1),
        "no lease"
    );
    assert_eq!(code(&good, &["failover", "show", "nope"]), Some(1));
    assert_eq!(code(&good, &["failover", "pause", "nope"]), Some(1));
    assert_eq!(
        code(
            &good,
            &[
                "scope",
                "set",
                "x",
                "--file",
                &w.path("missing.toml").display().to_string()
            ]
        ),
        Some(2),
        "unreadable file"
    );
    assert_eq!(
        code(&good, &["scope", "set", "x"]),
        Some(2),
        "--file missing"
    );
    assert_eq!(
        code(&good, &["failover", "set", "pair"]),
        Some(2),
        "nothing to set"
    );
    assert_eq!(
        code(&good, &["failover", "set", "pair", "--percent", "101"]),
        Some(2)
    );
    for args in [
        &["scope", "list"][..],
        &["scope", "show", "lan"],
        &["scope", "remove", "lan"],
        &["lease", "delete", &addr],
        &["failover", "show"],
    ] {
        assert_eq!(code(&bad, args), Some(4), "wrong token: {args:?}");
    }
    let out = w.srv.exec(&[
        TANDEMCTL,
        "--admin",
        "127.0.0.1:9",
        "--token-file",
        &good.display().to_string(),
        "scope",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(3), "unreachable: {out:?}");
    // A relationship whose partner's admin endpoint does not answer: 502, exit 5, nothing added.
    let secret = w.path("failover-pair.secret");
    fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("write secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod secret");
    let out = w.ctl(
        &good,
        &[
            "failover",
            "add",
            "pair",
            "--partner",
            "10.99.0.2",
            "--scopes",
            "lan",
            "--partner-admin",
            "10.99.0.2:9",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 502"),
        "{out:?}"
    );
    assert!(ok(&["failover", "show"]).contains("no failover relationships configured"));
    // The lease survived all of it.
    assert_eq!(
        w.get(&format!("/v1/leases/{addr}")).json()["state"],
        "active"
    );
}
