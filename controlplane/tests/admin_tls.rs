//! HTTPS with client certificates on the admin endpoint, and the endpoint's connection limits,
//! against the real `tandemd` and `tandemctl` that cargo built.
//!
//! Everything runs on the host's loopback (127.0.0.1 only, no namespaces): each test starts its
//! own tandemd serving DHCP on free high UDP ports of `lo` with its admin endpoint on a free TCP
//! port. The certificates (two CAs, a server certificate, admin, read-only and foreign client
//! certificates) are made with the `openssl` CLI in the test's temporary directory; HTTP
//! requests are made with `curl` (OpenSSL), `tandemctl` (rustls) and raw sockets. The tests need
//! root (tandemd binds to the `lo` device), `openssl` and `curl`; without them they fail saying
//! so (`sudo bash deploy/install-deps.sh` installs both tools).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/pki.rs"]
mod pki;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use pki::Pki;

use tandem_controlplane::metrics::{parse_text, value, Sample};

const TANDEMCTL: &str = env!("CARGO_BIN_EXE_tandemctl");
/// The admin endpoint's connection limit and idle timeout (the defaults of `AdminLimits`).
const MAX_CONNECTIONS: usize = 32;
const IDLE: Duration = Duration::from_secs(10);

fn preflight() {
    daemon::need_tools("the admin TLS tests", &["openssl", "curl", "timeout"]);
}

fn run(argv: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("timeout")
        .arg("60")
        .args(argv)
        .env_remove("TANDEM_ADMIN")
        .env_remove("TANDEM_TOKEN_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ------------------------------------------------------------------------------------------------
// Certificates, made with openssl.
// ------------------------------------------------------------------------------------------------

/// The certificates of one test, in its directory.
impl Pki {
    fn new(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.join("pki"),
        };
        fs::create_dir_all(&pki.dir).expect("pki dir");
        pki.ca("ca", "Tandem test CA");
        pki.ca("other", "Some other CA");
        pki.leaf(
            "server",
            "ca",
            "tandem admin endpoint",
            "IP:127.0.0.1,DNS:localhost",
            "serverAuth",
        );
        pki.leaf(
            "admin",
            "ca",
            "admin.tandem.test",
            "DNS:admin.tandem.test",
            "clientAuth",
        );
        pki.leaf(
            "reader",
            "ca",
            "reader.tandem.test",
            "DNS:reader.tandem.test",
            "clientAuth",
        );
        // Same name as the admin certificate, issued by a CA the server does not trust.
        pki.leaf(
            "stranger",
            "other",
            "admin.tandem.test",
            "DNS:admin.tandem.test",
            "clientAuth",
        );
        pki
    }

    /// The `[server]` lines of TLS with this server certificate, and a client CA if `client_ca`.
    fn server_keys(&self, client_ca: bool) -> String {
        let mut s = format!(
            "admin_tls = \"required\"\nadmin_tls_cert_file = \"{}\"\nadmin_tls_key_file = \"{}\"\n",
            self.pem("server"),
            self.key("server")
        );
        if client_ca {
            s.push_str(&format!(
                "admin_tls_client_ca_file = \"{}\"\nadmin_tls_readonly_names = [\"reader.tandem.test\"]\n",
                self.pem("ca")
            ));
        }
        s
    }

    /// curl's options for HTTPS as client `who` (none: no client certificate).
    fn curl_tls(&self, who: Option<&str>) -> Vec<String> {
        let mut v = vec!["--cacert".to_string(), self.pem("ca")];
        if let Some(w) = who {
            v.extend(["--cert".into(), self.pem(w), "--key".into(), self.key(w)]);
        }
        v
    }

    /// tandemctl's options for HTTPS as client `who` (none: no client certificate).
    fn ctl_tls(&self, who: Option<&str>) -> Vec<String> {
        let mut v = vec!["--ca".to_string(), self.pem("ca")];
        if let Some(w) = who {
            v.extend(["--cert".into(), self.pem(w), "--key".into(), self.key(w)]);
        }
        v
    }
}

// ------------------------------------------------------------------------------------------------
// The daemon.
// ------------------------------------------------------------------------------------------------

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// A tandemd on the loopback, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
    /// `127.0.0.1:PORT` of the admin endpoint.
    admin: String,
}

impl Daemon {
    /// Start tandemd with `extra` added to its `[server]` table and wait until the admin port
    /// accepts connections.
    fn start(dir: &Path, name: &str, extra: &str) -> Daemon {
        preflight();
        let admin = format!("127.0.0.1:{}", free_tcp_port());
        let server_port = free_udp_port();
        let client_port = loop {
            let p = free_udp_port();
            if p != server_port {
                break p;
            }
        };
        let config = format!(
            "[server]\nserver_id = \"192.0.2.1\"\ninterfaces = [\"lo\"]\nstate_dir = \"{}\"\n\
             durability = \"relaxed\"\nadmin_listen = \"{admin}\"\nserver_port = {server_port}\n\
             client_port = {client_port}\n{extra}\n\
             [[scope]]\nname = \"lan\"\nsubnet = \"192.0.2.0/24\"\n\
             ranges = [\"192.0.2.100-192.0.2.150\"]\n",
            dir.join(format!("state-{name}")).display()
        );
        let cfg = dir.join(format!("{name}.toml"));
        fs::write(&cfg, config).expect("write config");
        let log = dir.join(format!("{name}.log"));
        let mut child = daemon::spawn(&cfg, &log);
        daemon::wait_admin(&mut child, &admin, &log, "tandemd");
        Daemon { child, log, admin }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.admin)
    }

    /// `curl -i` with `opts`: (status, body); status 0 if no HTTP answer came.
    fn curl(&self, opts: &[String], method: &str, url: &str) -> (u16, String, Output) {
        let mut argv = vec!["curl", "-sS", "-i", "--max-time", "20", "-X", method];
        argv.extend(opts.iter().map(String::as_str));
        argv.push(url);
        let out = run(&argv, &[]);
        let body = text(&out.stdout);
        let code = body
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = body
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body, out)
    }

    /// `tandemctl --admin ADMIN OPTS ARGS`.
    fn ctl(&self, admin: &str, opts: &[String], args: &[&str]) -> Output {
        let mut argv = vec![TANDEMCTL, "--admin", admin];
        argv.extend(opts.iter().map(String::as_str));
        argv.extend_from_slice(args);
        run(&argv, &[])
    }

    /// `/metrics`, through curl with `opts` and `scheme`.
    fn metrics(&self, scheme: &str, opts: &[String]) -> Vec<Sample> {
        let (code, body, out) = self.curl(opts, "GET", &self.url(scheme, "/metrics"));
        assert_eq!(code, 200, "{body}{}", text(&out.stderr));
        parse_text(&body).unwrap_or_else(|e| panic!("bad metrics ({e:?}):\n{body}"))
    }
}

impl Daemon {
    /// Wait until no connection but a scrape's own is open (earlier connections, like the
    /// start-up probe, are closed by their threads a moment after the client closed them).
    fn wait_quiet(&self, scheme: &str, opts: &[String]) {
        let t0 = Instant::now();
        loop {
            let m = self.metrics(scheme, opts);
            if value(&m, "tandem_admin_connections_open", &[]) == Some(1.0) {
                // The scrape's own connection ends a moment after curl closed it.
                sleep(Duration::from_millis(300));
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "connections stay open on an idle endpoint"
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn refused(samples: &[Sample], reason: &str) -> f64 {
    value(samples, "tandem_admin_refused_total", &[("reason", reason)])
        .unwrap_or_else(|| panic!("no tandem_admin_refused_total{{reason={reason:?}}}"))
}

fn tmp(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tdm-admtls-{tag}-"))
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// How long until the server closes `s` (which sends nothing more), at most `limit`; and the
/// bytes it sent before closing.
fn until_closed(s: &mut TcpStream, since: Instant, limit: Duration) -> (Duration, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(since.elapsed());
        assert!(
            !left.is_zero(),
            "the server kept the connection past {limit:?}"
        );
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return (since.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (since.elapsed(), got),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the connection past {limit:?}")
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The tests.
// ------------------------------------------------------------------------------------------------

/// With a client CA: no certificate or one from another CA is refused at the handshake; an
/// admin certificate does everything (tandemctl and curl); a certificate named in
/// `admin_tls_readonly_names` reads but gets 403 on a change; plain HTTP to the TLS port gets a
/// plain 400 saying to use https; every refusal is counted by reason.
#[test]
fn client_certificates_authenticate_and_decide_the_role() {
    let dir = tmp("certs");
    let pki = Pki::new(dir.path());
    let d = Daemon::start(dir.path(), "certs", &pki.server_keys(true));
    let https = d.url("https", "");

    // No client certificate: refused during the handshake, no HTTP answer.
    let (code, _, out) = d.curl(&pki.curl_tls(None), "GET", &d.url("https", "/v1/status"));
    assert_eq!(code, 0, "answered without a client certificate");
    assert!(!out.status.success());
    let out = d.ctl(&https, &pki.ctl_tls(None), &["status"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("requires a client certificate") && err.contains("--cert"),
        "{err}"
    );

    // The admin certificate: tandemctl status, and (env variables) stats.
    let out = d.ctl(&https, &pki.ctl_tls(Some("admin")), &["status"]);
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let status = text(&out.stdout);
    assert!(
        status.contains("192.0.2.1") && status.contains("lan"),
        "{status}"
    );
    let out = run(
        &[TANDEMCTL, "--json", "status"],
        &[
            ("TANDEM_ADMIN", &d.admin),
            ("TANDEM_TLS", "1"),
            ("TANDEM_CA", &pki.pem("ca")),
            ("TANDEM_CERT", &pki.pem("admin")),
            ("TANDEM_KEY", &pki.key("admin")),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(v["server_id"], "192.0.2.1");

    // A certificate from another CA, with the admin's name: refused at the handshake.
    let (code, _, _) = d.curl(
        &[
            "--cacert".into(),
            pki.pem("ca"),
            "--cert".into(),
            pki.pem("stranger"),
            "--key".into(),
            pki.key("stranger"),
        ],
        "GET",
        &d.url("https", "/v1/status"),
    );
    assert_eq!(code, 0, "answered a certificate of another CA");
    let stranger = vec![
        "--ca".to_string(),
        pki.pem("ca"),
        "--cert".into(),
        pki.pem("stranger"),
        "--key".into(),
        pki.key("stranger"),
    ];
    let out = d.ctl(&https, &stranger, &["status"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        text(&out.stderr).contains("does not accept this client certificate"),
        "{out:?}"
    );

    // The read-only certificate: GET works, a change is 403.
    let ro = pki.curl_tls(Some("reader"));
    let (code, body, _) = d.curl(&ro, "GET", &d.url("https", "/v1/status"));
    assert_eq!(code, 200, "{body}");
    let (code, body, _) = d.curl(&ro, "POST", &d.url("https", "/v1/reload"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let out = d.ctl(&https, &pki.ctl_tls(Some("reader")), &["reload"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("HTTP 403"), "{out:?}");
    // The admin certificate may reload.
    let (code, body, _) = d.curl(
        &pki.curl_tls(Some("admin")),
        "POST",
        &d.url("https", "/v1/reload"),
    );
    assert_eq!(code, 200, "{body}");
    // A bearer header changes nothing on a client-certificate endpoint.
    let mut ro_bearer = ro.clone();
    ro_bearer.extend([
        "-H".into(),
        "Authorization: Bearer nonsense-token-1234".into(),
    ]);
    let (code, _, _) = d.curl(&ro_bearer, "GET", &d.url("https", "/v1/stats"));
    assert_eq!(code, 200);

    // Plain HTTP to the TLS port: a plain 400 that says to use https.
    let (code, body, _) = d.curl(&[], "GET", &d.url("http", "/v1/status"));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("HTTPS") && body.contains("https://"),
        "{body}"
    );
    let out = d.ctl(&d.admin, &[], &["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("speaks HTTPS only"), "{out:?}");
    // HTTPS with the wrong CA for the server's certificate: our side refuses (exit 3).
    let out = d.ctl(
        &https,
        &[
            "--ca".into(),
            pki.pem("other"),
            "--cert".into(),
            pki.pem("admin"),
            "--key".into(),
            pki.key("admin"),
        ],
        &["status"],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text(&out.stderr).contains("does not verify"), "{out:?}");

    // Counted by reason.
    let m = d.metrics("https", &pki.curl_tls(Some("admin")));
    assert_eq!(refused(&m, "no_client_certificate"), 2.0);
    assert_eq!(refused(&m, "bad_client_certificate"), 2.0);
    assert_eq!(refused(&m, "not_tls"), 2.0);
    assert_eq!(refused(&m, "max_connections"), 0.0);
    let log = d.log();
    assert!(
        log.contains("reason=\"no_client_certificate\"") && log.contains("UnknownIssuer"),
        "{log}"
    );
}

/// TLS without a client CA: the bearer tokens authenticate as on plain HTTP.
#[test]
fn tokens_still_work_over_tls_without_a_client_ca() {
    let dir = tmp("tokens");
    let pki = Pki::new(dir.path());
    let token = dir.path().join("admin.token");
    fs::write(&token, "tandem-tls-test-token-0123456789\n").expect("token");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).expect("chmod");
    let extra = format!(
        "{}admin_token_file = \"{}\"\n",
        pki.server_keys(false),
        token.display()
    );
    let d = Daemon::start(dir.path(), "tokens", &extra);
    let https = d.url("https", "");
    let tf = token.display().to_string();
    let mut opts = pki.ctl_tls(None);
    opts.extend(["--token-file".into(), tf]);
    let out = d.ctl(&https, &opts, &["status"]);
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let out = d.ctl(&https, &pki.ctl_tls(None), &["status"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(text(&out.stderr).contains("HTTP 401"), "{out:?}");
    let (code, _, _) = d.curl(&pki.curl_tls(None), "GET", &d.url("https", "/v1/status"));
    assert_eq!(code, 401);
}

/// The loader: a client CA lets a TLS endpoint listen beyond loopback without a token; TLS
/// alone does not; a bad key file is an error at its key with the line.
#[test]
fn a_client_ca_allows_a_non_loopback_listener() {
    preflight();
    let dir = tmp("check");
    let pki = Pki::new(dir.path());
    let check = |extra: &str| {
        let cfg = dir.path().join("check.toml");
        fs::write(
            &cfg,
            format!(
                "[server]\nserver_id = \"192.0.2.1\"\ninterfaces = [\"lo\"]\n\
                 admin_listen = \"0.0.0.0:9167\"\n{extra}\n[[scope]]\nname = \"lan\"\n\
                 subnet = \"192.0.2.0/24\"\nranges = [\"192.0.2.100-192.0.2.150\"]\n"
            ),
        )
        .expect("write");
        run(
            &[
                daemon::TANDEMD,
                "--check-config",
                &cfg.display().to_string(),
            ],
            &[],
        )
    };
    let out = check(&pki.server_keys(true));
    assert!(out.status.success(), "{out:?}");
    let out = check(&pki.server_keys(false));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("server.admin_listen") && err.contains("admin_tls_client_ca_file"),
        "{err}"
    );
    fs::set_permissions(pki.key("server"), fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = check(&pki.server_keys(true));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(":7:") && err.contains("server.admin_tls_key_file") && err.contains("0640"),
        "{err}"
    );
}

/// Over TLS: 32 silent connections fill the endpoint, the 33rd is closed at once; the silent
/// ones are closed when the handshake time runs out (10 s); both are counted.
#[test]
fn tls_connections_are_limited_and_silent_handshakes_time_out() {
    let dir = tmp("tlslimit");
    let pki = Pki::new(dir.path());
    let d = Daemon::start(dir.path(), "tlslimit", &pki.server_keys(true));
    d.wait_quiet("https", &pki.curl_tls(Some("admin")));
    let t0 = Instant::now();
    let mut silent: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(&d.admin).expect("connect"))
        .collect();
    // Let the acceptor take them all before the one over the limit.
    sleep(Duration::from_millis(500));
    let mut extra = TcpStream::connect(&d.admin).expect("connect");
    let (after, got) = until_closed(&mut extra, Instant::now(), Duration::from_secs(3));
    assert!(
        got.is_empty(),
        "TLS: no plain answer to the refused one: {got:?}"
    );
    assert!(after < Duration::from_secs(2), "closed after {after:?}");
    for s in &mut silent {
        let (at, got) = until_closed(s, t0, IDLE + Duration::from_secs(10));
        assert!(got.is_empty(), "{got:?}");
        assert!(
            at >= IDLE - Duration::from_secs(1),
            "closed early, after {at:?}"
        );
    }
    let m = d.metrics("https", &pki.curl_tls(Some("admin")));
    assert_eq!(refused(&m, "max_connections"), 1.0);
    assert_eq!(refused(&m, "handshake_timeout"), MAX_CONNECTIONS as f64);
    assert_eq!(
        value(&m, "tandem_admin_connections_open", &[]),
        Some(1.0),
        "only the scrape itself"
    );
    assert!(
        d.log().contains("reason=\"max_connections\""),
        "{}",
        d.log()
    );
}

/// Over plain HTTP: silent connections are closed after the idle timeout, a client that
/// trickles its header is cut off with 408 at the same time, the connection over the limit gets
/// a 503 at once, and an oversized header a 431; each counted by reason. Afterwards the
/// endpoint serves as usual.
#[test]
fn plain_http_limits_idle_slow_and_oversized_requests() {
    let dir = tmp("plainlimit");
    let d = Daemon::start(dir.path(), "plainlimit", "");
    d.wait_quiet("http", &[]);
    let t0 = Instant::now();
    let mut silent: Vec<TcpStream> = (0..MAX_CONNECTIONS - 1)
        .map(|_| TcpStream::connect(&d.admin).expect("connect"))
        .collect();
    // Connected here, so that the 33rd below is queued after all 32 (accepted in order).
    let mut s = TcpStream::connect(&d.admin).expect("connect");
    let slow = std::thread::spawn(move || {
        let start = Instant::now();
        s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        // One header byte a second: never a complete header.
        let mut answer = Vec::new();
        s.set_read_timeout(Some(Duration::from_millis(900)))
            .expect("timeout");
        while start.elapsed() < Duration::from_secs(25) {
            if s.write_all(b"X").is_err() {
                break;
            }
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        (
            start.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });
    sleep(Duration::from_millis(500));
    let mut extra = TcpStream::connect(&d.admin).expect("connect");
    let (after, got) = until_closed(&mut extra, Instant::now(), Duration::from_secs(3));
    let got = text(&got);
    assert!(got.starts_with("HTTP/1.1 503 "), "{got:?}");
    assert!(got.contains("32 connections open"), "{got}");
    assert!(after < Duration::from_secs(2), "closed after {after:?}");
    for s in &mut silent {
        let (at, got) = until_closed(s, t0, IDLE + Duration::from_secs(10));
        assert!(got.is_empty(), "{got:?}");
        assert!(
            at >= IDLE - Duration::from_secs(1),
            "closed early, after {at:?}"
        );
    }
    let (took, answer) = slow.join().expect("slow client");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(
        took >= IDLE - Duration::from_secs(1) && took < IDLE + Duration::from_secs(5),
        "the trickling client was cut off after {took:?}"
    );
    // An oversized header.
    let big = format!(
        "GET /v1/status HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let mut s = TcpStream::connect(&d.admin).expect("connect");
    s.write_all(big.as_bytes()).expect("write");
    let (_, got) = until_closed(&mut s, Instant::now(), Duration::from_secs(5));
    assert!(text(&got).starts_with("HTTP/1.1 431 "), "{}", text(&got));
    // The endpoint serves as before, and counted it all.
    let m = d.metrics("http", &[]);
    assert_eq!(refused(&m, "idle_timeout"), (MAX_CONNECTIONS - 1) as f64);
    assert_eq!(refused(&m, "request_timeout"), 1.0);
    assert_eq!(refused(&m, "max_connections"), 1.0);
    assert_eq!(refused(&m, "too_large"), 1.0);
    let out = d.ctl(&d.admin, &[], &["stats", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["admin"]["refused"]["idle_timeout"], MAX_CONNECTIONS - 1);
}
