//! Partner-to-partner requests: how one server of a relationship changes the other's
//! configuration (scope-settings replication, relationship add/set/remove), as Windows DHCP does
//! over its management channel.
//!
//! A request is a JSON [`PeerRequest`] sent with `POST /v1/peer/{relationship}` to the partner's
//! admin endpoint (`partner_admin`). It is not bearer-authenticated: it carries the header
//! `X-Tandem-Peer: v1 t=<unix seconds> n=<nonce> s=<signature>`, where the signature is
//! HMAC-SHA256 with the relationship's shared secret over
//! `tandem-peer-v1\n{method}\n{path}\n{t}\n{nonce}\n{hex sha256 of the body}`. The receiver
//! refuses a request whose time is further from its clock than the relationship's
//! `max_clock_skew`, a nonce it has seen, a signature that does not verify, or a sender whose
//! address is not the relationship's partner.
//!
//! Transport: plain HTTP (ureq), or with `partner_admin_tls = "required"` in the relationship
//! HTTPS, TLS 1.3 only (rustls with ring, [`super::tls::load_peer`]): the partner's admin
//! certificate must chain to `partner_admin_ca_file` (default the relationship's `tls_ca_file`)
//! and be valid for `partner_admin_name` (default `tls_partner_name`, else the IP address of
//! `partner_admin`), and this server presents `partner_admin_cert_file`/`partner_admin_key_file`
//! (default the relationship's `tls_cert_file`/`tls_key_file`, else no certificate). The files
//! are read for every request, so renewed certificates count at once. A TLS failure (unknown CA,
//! wrong name, refused or missing client certificate, a plain-HTTP endpoint) is
//! [`SendError::Unreachable`] with the cause in words.
//!
//! Authentication on the receiving side: a peer request is authenticated by its HMAC signature
//! (and the sender's address) only, never by a client certificate or bearer token. On an
//! endpoint that asks for client certificates, the certificate only gets the request through
//! the TLS handshake (it must chain to `admin_tls_client_ca_file`); its role does not count
//! for `/v1/peer/`, so a partner certificate listed in `admin_tls_readonly_names` still
//! delivers signed peer requests, and no certificate (admin or read-only) can make a change
//! there without the relationship's secret.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::tls::{load_peer, PeerTlsSettings};

/// Version of the configuration format carried between partners. A partner running another
/// version refuses replication (the scope tables might not mean the same there).
pub const CONFIG_SCHEMA: u32 = 1;

/// Name of the header carrying a partner's signature.
pub const PEER_HEADER: &str = "X-Tandem-Peer";

/// One scope's settings: its name and its `[[scope]]` table as TOML text.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScopeText {
    /// Scope name.
    pub name: String,
    /// The `[[scope]]` table with its sub-tables, standalone.
    pub toml: String,
}

/// What a partner asks for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum PeerOp {
    /// Overwrite these scopes' settings with the sender's (leases untouched).
    Replicate {
        /// The scopes.
        scopes: Vec<ScopeText>,
    },
    /// Create the relationship on the receiver (its `[[failover]]` table, already in the
    /// receiver's terms) with the scopes it covers.
    Add {
        /// The receiver's `[[failover]]` table as TOML text.
        failover: String,
        /// The scopes.
        scopes: Vec<ScopeText>,
    },
    /// Change keys of the relationship (already mirrored to the receiver's terms; a `null`
    /// value removes the key).
    Set {
        /// Key → new value (TOML value as JSON: string, integer, or null).
        keys: Vec<(String, serde_json::Value)>,
    },
    /// Remove the relationship, and the receiver's copies of its scopes when `scopes` is true.
    Remove {
        /// Remove the scopes too.
        scopes: bool,
    },
}

/// A partner's request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerRequest {
    /// [`CONFIG_SCHEMA`] of the sender.
    pub schema: u32,
    /// The sender's Tandem version.
    pub version: String,
    /// What to do.
    #[serde(flatten)]
    pub op: PeerOp,
}

/// What the partner answered.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerAnswer {
    /// The change is applied and in force there.
    pub applied: bool,
    /// What the partner did, or why it refused.
    pub message: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn signature(secret: &[u8], method: &str, path: &str, t: u64, nonce: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match hmac::Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    let text = format!(
        "tandem-peer-v1\n{method}\n{path}\n{t}\n{nonce}\n{}",
        hex(&Sha256::digest(body))
    );
    mac.update(text.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The `X-Tandem-Peer` header value for a request, at `now_secs`.
pub fn sign(secret: &[u8], method: &str, path: &str, body: &[u8], now_secs: u64) -> String {
    let mut n = [0u8; 16];
    fill_random(&mut n);
    let nonce = hex(&n);
    let s = signature(secret, method, path, now_secs, &nonce, body);
    format!("v1 t={now_secs} n={nonce} s={s}")
}

fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok();
    if !ok {
        // Without /dev/urandom, a nonce from the clock and the process still never repeats
        // within one process's lifetime (uniqueness is all a nonce needs).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = Sha256::digest(format!("{t}-{}", std::process::id()).as_bytes());
        for (d, s) in buf.iter_mut().zip(seed.iter()) {
            *d = *s;
        }
    }
}

/// Nonces seen recently, to refuse a replayed request.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<String, u64>,
}

impl NonceCache {
    /// Remember `nonce` (seen at `now`); false if it was seen already. Forgets nonces older
    /// than `keep_secs`.
    pub fn admit(&mut self, nonce: &str, now: u64, keep_secs: u64) -> bool {
        self.seen.retain(|_, t| now.saturating_sub(*t) <= keep_secs);
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_string(), now);
        true
    }
}

/// Check a partner's header for a request: signed with `secret`, within `max_skew_secs` of
/// `now_secs`, nonce never seen. The error says what is wrong.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    header: Option<&str>,
    secret: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
    now_secs: u64,
    max_skew_secs: u64,
    nonces: &mut NonceCache,
) -> Result<(), String> {
    let h = header.ok_or_else(|| format!("a partner request needs the {PEER_HEADER} header"))?;
    let mut parts = h.split_whitespace();
    if parts.next() != Some("v1") {
        return Err(format!("{PEER_HEADER}: unknown version (expected v1)"));
    }
    let (mut t, mut n, mut s) = (None, None, None);
    for p in parts {
        match p.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("n", v)) => n = Some(v),
            Some(("s", v)) => s = Some(v),
            _ => return Err(format!("{PEER_HEADER}: unreadable part {p:?}")),
        }
    }
    let (Some(t), Some(n), Some(s)) = (t, n, s) else {
        return Err(format!("{PEER_HEADER}: needs t=, n= and s="));
    };
    if n.len() < 16 || n.len() > 64 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{PEER_HEADER}: the nonce must be 16 to 64 hex digits"
        ));
    }
    let want = signature(secret, method, path, t, n, body);
    if !super::constant_time_eq(want.as_bytes(), s.as_bytes()) {
        return Err(
            "the signature does not verify with this relationship's shared secret \
             (are the secret files on both servers the same?)"
                .into(),
        );
    }
    let skew = now_secs.abs_diff(t);
    if skew > max_skew_secs {
        return Err(format!(
            "the request's time is {skew} s away from this server's clock (limit \
             {max_skew_secs} s): fix NTP on both servers"
        ));
    }
    if !nonces.admit(n, now_secs, 2 * max_skew_secs + 60) {
        return Err("this request was seen already (replayed)".into());
    }
    Ok(())
}

/// Why a request to the partner failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The partner could not be reached (connection, timeout).
    Unreachable(String),
    /// The partner answered with an error status.
    Refused {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unreachable(m) => write!(f, "the partner could not be reached: {m}"),
            SendError::Refused { status, message } => {
                write!(f, "the partner refused (HTTP {status}): {message}")
            }
        }
    }
}

/// Longest wait for the partner's admin endpoint to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a whole request may take (connection, handshake, request, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from the partner.
const MAX_ANSWER: usize = 1 << 20;

/// Send `req` for relationship `name` to the partner's admin endpoint `admin`, signed with
/// `secret`: over HTTPS with `tls` (the relationship's `partner_admin_tls = "required"`), else
/// plain HTTP.
pub fn send(
    admin: std::net::SocketAddr,
    tls: Option<&PeerTlsSettings>,
    name: &str,
    secret: &[u8],
    req: &PeerRequest,
) -> Result<PeerAnswer, SendError> {
    let path = format!("/v1/peer/{name}");
    let body = serde_json::to_vec(req).map_err(|e| SendError::Unreachable(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = sign(secret, "POST", &path, &body, now);
    let (url, status, text) = match tls {
        Some(t) => {
            let url = format!("https://{admin}{path}");
            let (status, text) = post_https(admin, t, &path, &header, &body)
                .map_err(|m| SendError::Unreachable(format!("{url}: {m}")))?;
            (url, status, text)
        }
        None => {
            let url = format!("http://{admin}{path}");
            let (status, text) = post_http(&url, &header, &body)?;
            (url, status, text)
        }
    };
    answer(&url, tls.is_some(), status, &text)
}

/// The plain-HTTP request (ureq): the status and the body of the answer.
fn post_http(url: &str, header: &str, body: &[u8]) -> Result<(u16, String), SendError> {
    let resp = ureq::post(url)
        .header(PEER_HEADER, header)
        .header("Content-Type", "application/json")
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .send(body);
    let mut resp = resp.map_err(|e| SendError::Unreachable(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER as u64)
        .read_to_string()
        .map_err(|e| SendError::Unreachable(format!("reading the answer from {url}: {e}")))?;
    Ok((status, text))
}

/// What the partner's answer (`status`, `text`) means.
fn answer(url: &str, over_tls: bool, status: u16, text: &str) -> Result<PeerAnswer, SendError> {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    if status >= 400 {
        let mut message = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or(text)
            .to_string();
        for e in v
            .get("errors")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(t) = e.get("text").and_then(|t| t.as_str()) {
                message.push_str("; ");
                message.push_str(t);
            }
        }
        // A partner whose endpoint requires TLS answers a plain request with this 400.
        if !over_tls && status == 400 && message.contains("HTTPS only") {
            message.push_str(&format!(
                " [{url}: set partner_admin_tls = \"required\" in this relationship (with \
                 partner_admin_ca_file, or tls_ca_file) to reach it]"
            ));
        }
        return Err(SendError::Refused { status, message });
    }
    serde_json::from_value(v).map_err(|e| SendError::Refused {
        status,
        message: format!("unreadable answer: {e}"),
    })
}

// ----- HTTPS --------------------------------------------------------------------------------

/// The rustls error inside an I/O error of a TLS stream, if it is one.
fn rustls_error(e: &io::Error) -> Option<rustls::Error> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned()
}

/// What went wrong at the TLS layer, in the operator's terms, naming the key to look at.
fn tls_words(s: &PeerTlsSettings, e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let ca = format!("{} {}", s.keys.ca, s.ca_file.display());
    let ours = match &s.client {
        Some((cert, _)) => format!("{} {}", s.keys.cert, cert.display()),
        None => String::new(),
    };
    let text = match (crate::failover::tls::refusal_reason(e), e) {
        ("not_tls", _) => "the partner's admin endpoint does not speak TLS (plain HTTP there?): \
             set admin_tls = \"required\" on the partner, or partner_admin_tls = \"off\" here"
            .to_string(),
        ("wrong_name", _) => format!(
            "the partner's admin certificate is not valid for {:?} ({}): set partner_admin_name \
             to a name the certificate carries",
            s.name, s.keys.name
        ),
        ("certificate_expired", _) => "the partner's admin certificate is expired or not yet \
             valid (check it, and both servers' clocks)"
            .to_string(),
        (_, E::InvalidCertificate(C::UnknownIssuer)) => format!(
            "the partner's admin certificate is not issued by the CA in {ca} (unknown issuer); \
             set partner_admin_ca_file to the CA that signed the partner's \
             admin_tls_cert_file"
        ),
        ("bad_certificate", _) => {
            format!("the partner's admin certificate is not acceptable (checked against {ca})")
        }
        ("partner_refused_our_certificate", E::AlertReceived(A::CertificateRequired))
            if s.client.is_none() =>
        {
            "the partner's admin endpoint requires a client certificate and this server \
             presented none: set partner_admin_cert_file and partner_admin_key_file (or the \
             relationship's tls_cert_file and tls_key_file) to a certificate issued by the \
             partner's admin_tls_client_ca_file"
                .to_string()
        }
        ("partner_refused_our_certificate", _) if s.client.is_none() => {
            "the partner's admin endpoint refused the handshake without a client certificate: \
             set partner_admin_cert_file and partner_admin_key_file"
                .to_string()
        }
        ("partner_refused_our_certificate", _) => format!(
            "the partner's admin endpoint refused this server's client certificate ({ours}): it \
             must be issued by the CA in the partner's admin_tls_client_ca_file and valid for \
             client authentication"
        ),
        ("incompatible", _) => {
            "the partner's admin endpoint and this server share no TLS 1.3 parameters".to_string()
        }
        _ => "TLS failure".to_string(),
    };
    format!("TLS: {text} ({e})")
}

/// An I/O error of the exchange, in words (a TLS error with [`tls_words`]).
fn io_words(s: &PeerTlsSettings, what: &str, e: &io::Error) -> String {
    match rustls_error(e) {
        Some(t) => tls_words(s, &t),
        None if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) =>
        {
            format!("{what}: no answer within {} s", REQUEST_TIMEOUT.as_secs())
        }
        None => format!("{what}: {e}"),
    }
}

/// The socket's timeouts for the next step: what is left until `deadline`.
fn arm(sock: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    sock.set_read_timeout(Some(left))?;
    sock.set_write_timeout(Some(left))
}

/// After a failed write, what the partner said: a TLS alert it sent before closing (a refused
/// client certificate arrives after this side's handshake is complete, in TLS 1.3), if any.
fn alert_after(conn: &mut rustls::ClientConnection, sock: &mut TcpStream) -> Option<rustls::Error> {
    for _ in 0..4 {
        match conn.read_tls(sock) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    return Some(e);
                }
            }
        }
    }
    None
}

/// One `POST` over TLS 1.3 to `admin`, checked against `s`: the status and the body of the
/// answer, or what went wrong (the connection is closed after the answer).
fn post_https(
    admin: std::net::SocketAddr,
    s: &PeerTlsSettings,
    path: &str,
    header: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let tls = load_peer(s).map_err(|e| e.message)?;
    let mut sock = TcpStream::connect_timeout(&admin, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    let mut conn = rustls::ClientConnection::new(tls.config, tls.name)
        .map_err(|e| format!("TLS set-up: {e}"))?;
    while conn.is_handshaking() {
        arm(&sock, deadline).map_err(|e| e.to_string())?;
        conn.complete_io(&mut sock)
            .map_err(|e| io_words(s, "TLS handshake", &e))?;
    }
    let host = match admin.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", admin.port()),
        std::net::IpAddr::V4(ip) => format!("{ip}:{}", admin.port()),
    };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{PEER_HEADER}: {header}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let written = arm(&sock, deadline).and_then(|()| {
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        stream.write_all(&request)?;
        stream.flush()
    });
    if let Err(e) = written {
        if let Some(alert) = rustls_error(&e).or_else(|| alert_after(&mut conn, &mut sock)) {
            return Err(tls_words(s, &alert));
        }
        return Err(io_words(s, "sending the request", &e));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        if let Some(done) = parse_answer(&got)? {
            return Ok(done);
        }
        arm(&sock, deadline).map_err(|e| e.to_string())?;
        let n = rustls::Stream::new(&mut conn, &mut sock).read(&mut buf);
        match n {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A close without close_notify ends an answer without Content-Length as well.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !got.is_empty() => break,
            Err(e) => return Err(io_words(s, "reading the answer", &e)),
        }
        if got.len() > MAX_ANSWER + (64 << 10) {
            return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
        }
    }
    // The connection ended: an answer without Content-Length ends here.
    match parse_head(&got)? {
        Some((status, _, start)) => Ok((status, String::from_utf8_lossy(&got[start..]).into())),
        None if got.is_empty() => Err(
            "the partner closed the connection without answering (after the TLS handshake: does \
             its admin endpoint accept this server's client certificate?)"
                .into(),
        ),
        None => Err("the answer ended inside its header".into()),
    }
}

/// The status line and header of an HTTP/1.1 answer in `got`: status, `Content-Length` (if
/// given) and where the body starts; None if the header is not complete yet.
fn parse_head(got: &[u8]) -> Result<Option<(u16, Option<usize>, usize)>, String> {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        if got.len() > 64 << 10 {
            return Err("the answer's header is larger than 64 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&got[..end]).map_err(|_| "the answer's header is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {v:?} in the answer"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("unexpected Transfer-Encoding {v:?} in the answer"));
        }
    }
    Ok(Some((status, length, end + 4)))
}

/// A complete answer in `got` (with `Content-Length`): its status and body.
fn parse_answer(got: &[u8]) -> Result<Option<(u16, String)>, String> {
    let Some((status, Some(len), start)) = parse_head(got)? else {
        return Ok(None);
    };
    if len > MAX_ANSWER {
        return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
    }
    match got.get(start..start + len) {
        Some(b) => Ok(Some((status, String::from_utf8_lossy(b).into_owned()))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_request_verifies_once() {
        let secret = b"0123456789abcdef";
        let body = br#"{"schema":1}"#;
        let h = sign(secret, "POST", "/v1/peer/rel", body, 1_000);
        let mut n = NonceCache::default();
        verify(
            Some(&h),
            secret,
            "POST",
            "/v1/peer/rel",
            body,
            1_010,
            60,
            &mut n,
        )
        .expect("a fresh signed request is accepted");
        let again = verify(
            Some(&h),
            secret,
            "POST",
            "/v1/peer/rel",
            body,
            1_011,
            60,
            &mut n,
        );
        assert!(again.expect_err("replay").contains("seen already"));
    }

    #[test]
    fn tampering_and_skew_are_refused() {
        let secret = b"0123456789abcdef";
        let body = br#"{"schema":1}"#;
        let h = sign(secret, "POST", "/v1/peer/rel", body, 1_000);
        let mut n = NonceCache::default();
        for (sec, m, p, b) in [
            (&b"another secret.."[..], "POST", "/v1/peer/rel", &body[..]),
            (secret, "PUT", "/v1/peer/rel", body),
            (secret, "POST", "/v1/peer/other", body),
            (secret, "POST", "/v1/peer/rel", br#"{"schema":2}"#),
        ] {
            let e = verify(Some(&h), sec, m, p, b, 1_000, 60, &mut n).expect_err("tampered");
            assert!(e.contains("signature"), "{e}");
        }
        let e = verify(
            Some(&h),
            secret,
            "POST",
            "/v1/peer/rel",
            body,
            1_100,
            60,
            &mut n,
        )
        .expect_err("too old");
        assert!(e.contains("100 s away"), "{e}");
        assert!(verify(None, secret, "POST", "/", body, 0, 60, &mut n).is_err());
        let e = verify(
            Some("v1 t=1 n=zz s=00"),
            secret,
            "POST",
            "/",
            body,
            1,
            60,
            &mut n,
        )
        .expect_err("bad nonce");
        assert!(e.contains("nonce"), "{e}");
    }

    #[test]
    fn answers_are_read_by_their_content_length() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-length: 5\r\n\r\n{\"a\"}";
        // Incomplete until the last byte of the body.
        for cut in 0..full.len() {
            assert_eq!(parse_answer(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse_answer(full), Ok(Some((200, "{\"a\"}".to_string()))));
        let e = parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n").expect_err("not HTTP");
        assert!(e.contains("not an HTTP answer"), "{e}");
        let e = parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect_err("chunked");
        assert!(e.contains("Transfer-Encoding"), "{e}");
        // Without Content-Length the body runs to the end of the connection.
        assert_eq!(
            parse_head(b"HTTP/1.0 502 Bad Gateway\r\n\r\nx"),
            Ok(Some((502, None, 28)))
        );
    }

    #[test]
    fn a_plain_request_refused_for_https_names_the_key() {
        let e = answer(
            "http://10.0.0.2:9167/v1/peer/p",
            false,
            400,
            r#"{"error":"this admin endpoint speaks HTTPS only (admin_tls = \"required\")"}"#,
        )
        .expect_err("refused");
        let SendError::Refused {
            status: 400,
            message,
        } = e
        else {
            panic!("{e:?}");
        };
        assert!(
            message.contains("partner_admin_tls = \"required\""),
            "{message}"
        );
    }

    #[test]
    fn requests_round_trip_as_json() {
        let r = PeerRequest {
            schema: CONFIG_SCHEMA,
            version: "0.1.0".into(),
            op: PeerOp::Set {
                keys: vec![
                    ("mode".into(), serde_json::json!("hot-standby")),
                    ("load_balance_percent".into(), serde_json::Value::Null),
                ],
            },
        };
        let text = serde_json::to_string(&r).expect("encodes");
        assert!(text.contains(r#""op":"set""#), "{text}");
        let back: PeerRequest = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back, r);
    }
}
