//! Partner-to-partner admin requests (scope replication, relationship changes) over HTTPS with
//! client certificates (`partner_admin_tls = "required"`), against the real `tandemd` and
//! `tandemctl` that cargo built.
//!
//! Everything runs on the host's loopback (127.0.0.1 only, no namespaces): each test starts its
//! own partners, each serving DHCP on free high UDP ports of `lo`, with its admin endpoint and
//! its failover listener on free TCP ports. Both admin endpoints require TLS 1.3 and client
//! certificates from the test CA, made with the `openssl` CLI in the test's temporary
//! directory. The tests need root (tandemd binds to the `lo` device) and `openssl` and `curl`;
//! without them they fail saying so (`sudo bash deploy/install-deps.sh` installs both).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/pki.rs"]
mod pki;

use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use pki::Pki;

use tandem_controlplane::admin::peer::{self, PeerOp, PeerRequest, ScopeText, SendError};
use tandem_controlplane::admin::tls::{PeerTlsKeys, PeerTlsSettings};

const TANDEMCTL: &str = env!("CARGO_BIN_EXE_tandemctl");
/// The relationship's shared secret (the same file content on both partners).
const SECRET: &[u8] = b"peer-tls-test-secret-0123456789";

fn preflight() {
    daemon::need_tools("the partner TLS tests", &["openssl", "curl", "timeout"]);
}

fn run(argv: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .args(argv)
        .env_remove("TANDEM_ADMIN")
        .env_remove("TANDEM_TOKEN_FILE")
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

/// The certificates of one test: the CA both partners trust, another CA, each partner's
/// certificate (one per server, for the failover link and the admin endpoint alike: its DNS
/// name and 127.0.0.1, valid for server and client authentication), the operator's client
/// certificate, and a partner-like certificate from the other CA.
impl Pki {
    fn new(dir: &Path) -> Pki {
        preflight();
        let pki = Pki {
            dir: dir.join("pki"),
        };
        fs::create_dir_all(&pki.dir).expect("pki dir");
        pki.ca("ca", "Tandem test CA");
        pki.ca("other", "Some other CA");
        for (name, ca, dns) in [
            ("a", "ca", "a.tandem.test"),
            ("b", "ca", "b.tandem.test"),
            ("stranger", "other", "a.tandem.test"),
        ] {
            pki.leaf(
                name,
                ca,
                dns,
                &format!("DNS:{dns},IP:127.0.0.1"),
                "serverAuth,clientAuth",
            );
        }
        pki.leaf(
            "op",
            "ca",
            "operator.tandem.test",
            "DNS:operator.tandem.test",
            "clientAuth",
        );
        pki
    }

    /// tandemctl's options for HTTPS as the operator.
    fn ctl_tls(&self) -> Vec<String> {
        vec![
            "--ca".into(),
            self.pem("ca"),
            "--cert".into(),
            self.pem("op"),
            "--key".into(),
            self.key("op"),
        ]
    }

    /// curl's options for HTTPS as client `who`.
    fn curl_tls(&self, who: &str) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.pem("ca"),
            "--cert".into(),
            self.pem(who),
            "--key".into(),
            self.key(who),
        ]
    }
}

// ------------------------------------------------------------------------------------------------
// The partners.
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

/// The ports of a pair: each partner's admin endpoint and failover listener.
#[derive(Clone, Copy)]
struct Ports {
    admin_a: u16,
    admin_b: u16,
    link_a: u16,
    link_b: u16,
}

impl Ports {
    fn new() -> Ports {
        let mut seen = Vec::new();
        let mut next = || loop {
            let p = free_tcp_port();
            if !seen.contains(&p) {
                seen.push(p);
                break p;
            }
        };
        Ports {
            admin_a: next(),
            admin_b: next(),
            link_a: next(),
            link_b: next(),
        }
    }
}

/// One partner's side of the test relationship "pair".
struct Side<'a> {
    /// "a" (primary) or "b" (secondary); also its certificate's name in the PKI.
    name: &'a str,
    /// This side's admin and failover ports, and the partner's.
    admin: u16,
    link: u16,
    partner_admin: u16,
    partner_link: u16,
    /// The lease time of scope "lan".
    lease_time: &'a str,
    /// More `[server]` lines.
    server_extra: String,
    /// More `[[failover]]` lines (replacing the default `partner_admin_tls = "required"`).
    failover_extra: String,
}

/// A tandemd on the loopback, killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
    config: PathBuf,
    /// `127.0.0.1:PORT` of the admin endpoint.
    admin: String,
}

impl Daemon {
    /// Start `side`'s tandemd (admin endpoint on HTTPS with client certificates from the test
    /// CA, the relationship with TLS on its link) and wait until its admin port accepts
    /// connections.
    fn start(dir: &Path, pki: &Pki, side: &Side<'_>) -> Daemon {
        let n = side.name;
        let admin = format!("127.0.0.1:{}", side.admin);
        let server_port = free_udp_port();
        let client_port = loop {
            let p = free_udp_port();
            if p != server_port {
                break p;
            }
        };
        let secret = dir.join(format!("{n}.secret"));
        fs::write(&secret, SECRET).expect("secret");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
        let (role, other) = if n == "a" {
            ("primary", "b")
        } else {
            ("secondary", "a")
        };
        let config = format!(
            "[server]\nserver_id = \"192.0.2.{id}\"\ninterfaces = [\"lo\"]\n\
             state_dir = \"{state}\"\ndurability = \"relaxed\"\nadmin_listen = \"{admin}\"\n\
             server_port = {server_port}\nclient_port = {client_port}\n\
             admin_tls = \"required\"\nadmin_tls_cert_file = \"{cert}\"\n\
             admin_tls_key_file = \"{key}\"\nadmin_tls_client_ca_file = \"{ca}\"\n{sx}\n\
             [[scope]]\nname = \"lan\"\nsubnet = \"192.0.2.0/24\"\n\
             ranges = [\"192.0.2.100-192.0.2.150\"]\nlease_time = \"{lt}\"\n\n\
             [[failover]]\nname = \"pair\"\nrole = \"{role}\"\npartner = \"127.0.0.1\"\n\
             partner_port = {pl}\nlisten = \"127.0.0.1\"\nlisten_port = {ll}\n\
             partner_admin = \"127.0.0.1:{pa}\"\nshared_secret_file = \"{secret}\"\n\
             scopes = [\"lan\"]\nmclt = 60\n\
             tls = \"required\"\ntls_ca_file = \"{ca}\"\ntls_cert_file = \"{cert}\"\n\
             tls_key_file = \"{key}\"\ntls_partner_name = \"{other}.tandem.test\"\n{fx}\n",
            id = if n == "a" { 1 } else { 2 },
            state = dir.join(format!("state-{n}")).display(),
            cert = pki.pem(n),
            key = pki.key(n),
            ca = pki.pem("ca"),
            sx = side.server_extra,
            lt = side.lease_time,
            pl = side.partner_link,
            ll = side.link,
            pa = side.partner_admin,
            secret = secret.display(),
            fx = side.failover_extra,
        );
        let cfg = dir.join(format!("{n}.toml"));
        fs::write(&cfg, config).expect("write config");
        let log = dir.join(format!("{n}.log"));
        let mut child = daemon::spawn(&cfg, &log);
        daemon::wait_admin(&mut child, &admin, &log, &format!("tandemd {n}"));
        Daemon {
            child,
            log,
            config: cfg,
            admin,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn https(&self) -> String {
        format!("https://{}", self.admin)
    }

    /// `tandemctl --admin https://ADMIN` as the operator.
    fn ctl(&self, pki: &Pki, args: &[&str]) -> Output {
        let https = self.https();
        let mut argv = vec![TANDEMCTL, "--admin", https.as_str()];
        let tls = pki.ctl_tls();
        argv.extend(tls.iter().map(String::as_str));
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// `curl -i` as client `who`: (status, body); status 0 if no HTTP answer came.
    fn curl(
        &self,
        pki: &Pki,
        who: &str,
        method: &str,
        path: &str,
        extra: &[&str],
    ) -> (u16, String) {
        let url = format!("{}{path}", self.https());
        let mut argv = vec!["curl", "-sS", "-i", "--max-time", "20", "-X", method];
        let tls = pki.curl_tls(who);
        argv.extend(tls.iter().map(String::as_str));
        argv.extend_from_slice(extra);
        argv.push(&url);
        let out = run(&argv);
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
        (code, body)
    }

    /// Scope "lan"'s lease time as the running server has it (through the API, as the
    /// operator).
    fn lease_time(&self, pki: &Pki) -> u64 {
        let out = self.ctl(pki, &["--json", "scope", "show", "lan"]);
        assert!(out.status.success(), "scope show: {out:?}\n{}", self.log());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON scope");
        let scope = v.get("scope").unwrap_or(&v);
        scope["lease_time_secs"]
            .as_u64()
            .unwrap_or_else(|| panic!("no lease_time_secs in {v}"))
    }

    fn config_text(&self) -> String {
        fs::read_to_string(&self.config).expect("config")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tmp(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tdm-peertls-{tag}-"))
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// A pair: A (primary, scope "lan" with a 2 h lease time, `a_extra` in its relationship) and B
/// (secondary, 1 h, `b_server` in its `[server]`).
fn pair(dir: &Path, pki: &Pki, a_extra: &str, b_server: &str) -> (Daemon, Daemon) {
    let p = Ports::new();
    let b = side_b(dir, pki, p, b_server);
    let a = Daemon::start(
        dir,
        pki,
        &Side {
            name: "a",
            admin: p.admin_a,
            link: p.link_a,
            partner_admin: p.admin_b,
            partner_link: p.link_b,
            lease_time: "2h",
            server_extra: String::new(),
            failover_extra: a_extra.to_string(),
        },
    );
    (a, b)
}

/// B alone (its partner A is not started).
fn side_b(dir: &Path, pki: &Pki, p: Ports, b_server: &str) -> Daemon {
    Daemon::start(
        dir,
        pki,
        &Side {
            name: "b",
            admin: p.admin_b,
            link: p.link_b,
            partner_admin: p.admin_a,
            partner_link: p.link_a,
            lease_time: "1h",
            server_extra: b_server.to_string(),
            failover_extra: "partner_admin_tls = \"required\"\n".into(),
        },
    )
}

/// `tandemctl failover replicate pair` on A, as the operator.
fn replicate(a: &Daemon, pki: &Pki) -> Output {
    a.ctl(pki, &["failover", "replicate", "pair"])
}

// ------------------------------------------------------------------------------------------------
// The tests.
// ------------------------------------------------------------------------------------------------

/// Both admin endpoints require client certificates from the CA; A's relationship has
/// `partner_admin_tls = "required"` and nothing else, so the CA, the name and the client
/// certificate are the link's (`tls_ca_file`, `tls_partner_name`, `tls_cert_file`). B lists A's
/// certificate as read-only: the peer route is authenticated by the HMAC signature, so the
/// replication is applied; the same certificate still cannot make an operator's change there,
/// and a peer request it carries without a valid signature is refused.
#[test]
fn replication_over_https_with_client_certificates() {
    let dir = tmp("ok");
    let pki = Pki::new(dir.path());
    let (a, b) = pair(
        dir.path(),
        &pki,
        "partner_admin_tls = \"required\"\n",
        "admin_tls_readonly_names = [\"a.tandem.test\"]\n",
    );
    assert_eq!(b.lease_time(&pki), 3600);
    assert_eq!(a.lease_time(&pki), 7200);

    let out = replicate(&a, &pki);
    assert!(
        out.status.success(),
        "replicate failed: {out:?}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let said = text(&out.stdout);
    assert!(said.contains("pair") && said.contains("lan"), "{said}");
    // In force on B (its API) and in B's file.
    assert_eq!(b.lease_time(&pki), 7200, "B:\n{}", b.log());
    assert!(
        b.config_text().contains("lease_time = 7200") || b.config_text().contains("\"2h\""),
        "B's file:\n{}",
        b.config_text()
    );

    // A's certificate is read-only on B for everything but the (signed) peer route.
    let (code, body) = b.curl(&pki, "a", "POST", "/v1/reload", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let (code, body) = b.curl(
        &pki,
        "a",
        "POST",
        "/v1/peer/pair",
        &[
            "-H",
            "X-Tandem-Peer: v1 t=1 n=00112233445566778899aabbccddeeff s=00",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{\"schema\":1,\"version\":\"0\",\"op\":\"remove\",\"scopes\":true}",
        ],
    );
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("signature"), "{body}");
    assert!(b.config_text().contains("[[failover]]"));
}

/// A trusts another CA for the partner's admin certificate (`partner_admin_ca_file`): the
/// replication fails, `tandemctl` says the certificate is not issued by that CA, and B is
/// unchanged.
#[test]
fn replication_refused_when_the_partner_ca_does_not_match() {
    let dir = tmp("ca");
    let pki = Pki::new(dir.path());
    let extra = format!(
        "partner_admin_tls = \"required\"\npartner_admin_ca_file = \"{}\"\n",
        pki.pem("other")
    );
    let (a, b) = pair(dir.path(), &pki, &extra, "");
    let before = b.config_text();
    let out = replicate(&a, &pki);
    assert!(!out.status.success(), "replicated anyway: {out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("could not be reached")
            && err.contains("not issued by the CA in partner_admin_ca_file")
            && err.contains(&pki.pem("other"))
            && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert_eq!(b.lease_time(&pki), 3600);
    assert_eq!(b.config_text(), before, "B's file changed");
}

/// `peer::send` from this process (at 127.0.0.1, the partner's address for B) to B's admin
/// endpoint, with HTTPS settings `tls`.
fn send_to(b: &Daemon, tls: Option<&PeerTlsSettings>) -> Result<peer::PeerAnswer, SendError> {
    let req = PeerRequest {
        schema: peer::CONFIG_SCHEMA,
        version: "test".into(),
        op: PeerOp::Replicate {
            scopes: vec![ScopeText {
                name: "lan".into(),
                toml: "[[scope]]\nname = \"lan\"\nsubnet = \"192.0.2.0/24\"\n\
                       ranges = [\"192.0.2.100-192.0.2.150\"]\nlease_time = \"3h\"\n"
                    .into(),
            }],
        },
    };
    let admin: SocketAddr = b.admin.parse().expect("address");
    peer::send(admin, tls, "pair", SECRET, &req)
}

/// The explicit keys: `partner_admin_ca_file`, `partner_admin_name`, `partner_admin_cert_file`,
/// `partner_admin_key_file`.
fn explicit(pki: &Pki, ca: &str, name: &str, client: Option<&str>) -> PeerTlsSettings {
    PeerTlsSettings {
        ca_file: pki.pem(ca).into(),
        name: name.into(),
        client: client.map(|c| (pki.pem(c).into(), pki.key(c).into())),
        keys: PeerTlsKeys {
            ca: "partner_admin_ca_file",
            cert: "partner_admin_cert_file",
            key: "partner_admin_key_file",
            name: "partner_admin_name",
        },
    }
}

fn unreachable(r: Result<peer::PeerAnswer, SendError>) -> String {
    match r {
        Err(SendError::Unreachable(m)) => m,
        other => panic!("expected SendError::Unreachable, got {other:?}"),
    }
}

/// Each TLS failure of a partner request is `SendError::Unreachable` naming its cause: wrong
/// name, no client certificate, a client certificate of another CA, a plain-HTTP endpoint;
/// plain HTTP to an HTTPS endpoint is the partner's 400 with the key to set. Then the right
/// settings go through (by IP address, as the default name without link TLS would be).
#[test]
fn tls_failures_name_their_cause() {
    let dir = tmp("why");
    let pki = Pki::new(dir.path());
    let b = side_b(dir.path(), &pki, Ports::new(), "");

    let m = unreachable(send_to(
        &b,
        Some(&explicit(&pki, "ca", "c.tandem.test", Some("a"))),
    ));
    assert!(
        m.contains("not valid for \"c.tandem.test\" (partner_admin_name)"),
        "{m}"
    );

    let m = unreachable(send_to(
        &b,
        Some(&explicit(&pki, "ca", "b.tandem.test", None)),
    ));
    assert!(
        m.contains("requires a client certificate") && m.contains("presented none"),
        "{m}"
    );

    let m = unreachable(send_to(
        &b,
        Some(&explicit(&pki, "ca", "b.tandem.test", Some("stranger"))),
    ));
    assert!(
        m.contains("refused this server's client certificate") && m.contains(&pki.pem("stranger")),
        "{m}"
    );

    let m = unreachable(send_to(
        &b,
        Some(&explicit(&pki, "other", "b.tandem.test", Some("a"))),
    ));
    assert!(
        m.contains("not issued by the CA in partner_admin_ca_file"),
        "{m}"
    );

    // HTTPS to a plain-HTTP admin endpoint (a tandemd without admin TLS).
    let plain = plain_daemon(dir.path());
    let admin: SocketAddr = plain.admin.parse().expect("address");
    let req = PeerRequest {
        schema: peer::CONFIG_SCHEMA,
        version: "test".into(),
        op: PeerOp::Remove { scopes: false },
    };
    let tls = explicit(&pki, "ca", "127.0.0.1", Some("a"));
    let m = unreachable(peer::send(admin, Some(&tls), "pair", SECRET, &req));
    assert!(m.contains("does not speak TLS"), "{m}");

    // Plain HTTP to B's HTTPS endpoint: B answers 400, with the key to set.
    match send_to(&b, None) {
        Err(SendError::Refused {
            status: 400,
            message,
        }) => {
            assert!(
                message.contains("partner_admin_tls = \"required\""),
                "{message}"
            )
        }
        other => panic!("expected B's 400, got {other:?}"),
    }
    assert_eq!(b.lease_time(&pki), 3600, "B changed by a refused request");

    // Right: the CA, B's certificate by its IP address, A's client certificate.
    let ok = send_to(&b, Some(&explicit(&pki, "ca", "127.0.0.1", Some("a")))).expect("applied");
    assert!(ok.applied, "{ok:?}");
    assert_eq!(b.lease_time(&pki), 10_800, "B:\n{}", b.log());
}

/// A tandemd with a plain-HTTP admin endpoint on the loopback (no relationship).
fn plain_daemon(dir: &Path) -> Daemon {
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    let server_port = free_udp_port();
    let client_port = loop {
        let p = free_udp_port();
        if p != server_port {
            break p;
        }
    };
    let config = format!(
        "[server]\nserver_id = \"192.0.2.3\"\ninterfaces = [\"lo\"]\nstate_dir = \"{}\"\n\
         durability = \"relaxed\"\nadmin_listen = \"{admin}\"\nserver_port = {server_port}\n\
         client_port = {client_port}\n\
         [[scope]]\nname = \"lan\"\nsubnet = \"192.0.2.0/24\"\n\
         ranges = [\"192.0.2.100-192.0.2.150\"]\n",
        dir.join("state-plain").display()
    );
    let cfg = dir.join("plain.toml");
    fs::write(&cfg, config).expect("write config");
    let log = dir.join("plain.log");
    let mut child = daemon::spawn(&cfg, &log);
    daemon::wait_admin(&mut child, &admin, &log, "plain tandemd");
    Daemon {
        child,
        log,
        config: cfg,
        admin,
    }
}
