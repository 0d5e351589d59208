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

use std::collections::HashMap;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// Send `req` for relationship `name` to the partner's admin endpoint `admin`, signed with
/// `secret`.
pub fn send(
    admin: std::net::SocketAddr,
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
    let url = format!("http://{admin}{path}");
    let resp = ureq::post(&url)
        .header(PEER_HEADER, &header)
        .header("Content-Type", "application/json")
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .send(&body[..]);
    let mut resp = resp.map_err(|e| SendError::Unreachable(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| SendError::Unreachable(format!("reading the answer from {url}: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if status >= 400 {
        let mut message = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or(text.as_str())
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
        return Err(SendError::Refused { status, message });
    }
    serde_json::from_value(v).map_err(|e| SendError::Refused {
        status,
        message: format!("unreadable answer: {e}"),
    })
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
