//! The admin endpoint: HTTP/JSON (or HTTPS) on the configured `admin_listen` address, read by
//! `tandemctl` and by Prometheus.
//!
//! Routes (versioned under `/v1`, except the conventional `/metrics`):
//! - `GET /v1/status`: server identity, uptime, durability, per-scope pool usage.
//! - `GET /v1/leases[?state=S&scope=N&limit=L&offset=O]`: bindings sorted by address (see
//!   [`lease_json`] for the shape), filtered, then paged; the `X-Total-Count` header gives the
//!   number that matched the filters before paging.
//! - `GET /v1/leases/{address}`: one lease (404 if the server has no record of the address).
//! - `GET /v1/stats`: engine counters by name, drops by reason, journal commit figures, and the
//!   admin endpoint's own connection counters (`admin`).
//! - `GET /v1/ddns`: the DNS updater: per scope counts, the queue, pending and failed updates
//!   (`tandemctl ddns status`).
//! - `POST /v1/reload`: reload the configuration file, as `SIGHUP` does; 200 with the number of
//!   scopes, or 422 with every configuration error (the running configuration stays in force).
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]), followed by the admin
//!   endpoint's counters: `tandem_admin_refused_total{reason}` (see [`Refusal`] for the
//!   reasons), `tandem_admin_connections_accepted_total`, `tandem_admin_connections_open`.
//!
//! Authentication, in this order:
//! - With `admin_tls = "required"` and `admin_tls_client_ca_file`, the client certificate is the
//!   credential: the TLS handshake refuses a client without a certificate that chains to that CA,
//!   and the verified certificate authenticates every request of its connection by itself. Its
//!   role is read-only (GET only; anything else is 403) if one of its names (subject alternative
//!   DNS names and subject common names, compared exactly, ASCII case-insensitively) is listed in
//!   `admin_tls_readonly_names`, else admin (see [`tls`]). `Authorization` headers are not
//!   consulted on such an endpoint: token files, if also configured, are still read at start but
//!   grant nothing there.
//! - Otherwise, when `admin_token_file` is configured, every request (metrics included) must
//!   carry `Authorization: Bearer <token>`; the token is compared in constant time. The token of
//!   `admin_readonly_token_file` may read (GET) but not change anything (403). This holds on a
//!   plain HTTP endpoint and on a TLS endpoint without a client CA alike.
//! - Without either, the configuration loader only accepts a loopback `admin_listen`; a
//!   non-loopback one needs a token file or a client CA.
//!
//! Partners' requests (`POST /v1/peer/...`) are authenticated by their HMAC signature instead
//! (see [`peer`]), and must come from the partner's address. They come over plain HTTP or, with
//! the relationship's `partner_admin_tls = "required"`, over HTTPS with the sender's client
//! certificate, which only gets them through the handshake (see [`peer`]).
//!
//! Transport (see [`AdminLimits`] for the numbers): at most 32 connections are open at once;
//! more are accepted and closed at once (plain HTTP: with a 503) and counted. A TLS handshake
//! must finish within 10 s; a request must start and send its header within 10 s of the
//! connection's start or of the previous answer (a connection that sends nothing is closed then,
//! and counted), and its body within 30 s more. Headers are capped at 16 KiB in 100 fields (431),
//! bodies at [`MAX_BODY`] (413). Only TLS 1.3 is offered; plain HTTP sent to a TLS endpoint gets
//! a plain-HTTP 400 saying to use https (and a TLS handshake sent to a plain endpoint a 400 at
//! once, which TLS clients report as "not TLS"). Requests are handled one at a time, as before.
//!
//! Errors are JSON objects `{"error": "..."}` with the matching status: 400 bad parameter, 401
//! missing or wrong token, 403 read-only credential, 404 unknown resource, 405 wrong method (with
//! `Allow`), 408 request too slow, 413 body too large, 422 invalid configuration on reload, 431
//! header too large, 503 the worker did not answer or too many connections.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::engine::{Counter, Stats};
use tandem_dataplane::worker::{Control, LeaseRow, WorkerHandle, WorkerStats};

use crate::config::{Config, ConfigErrors};
use crate::metrics;

mod fo;
pub mod http;
pub mod peer;
mod server;
pub mod tls;

pub use server::{AdminCounters, AdminLimits, Refusal};

pub use fo::relationship_table;
mod scopes;

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 4 << 20;

/// Reloads the configuration file as `SIGHUP` does: the number of scopes now served, or every
/// error found (the running configuration then stays in force).
pub type ReloadFn = Arc<dyn Fn() -> Result<usize, ConfigErrors> + Send + Sync>;

/// What the admin endpoint reads.
pub struct AdminState {
    /// The configuration in force (replaced on reload).
    pub config: Arc<RwLock<Config>>,
    /// The worker to query.
    pub worker: WorkerHandle,
    /// Engine counters.
    pub stats: Arc<Stats>,
    /// Worker counters, one set per worker (in worker order).
    pub worker_stats: Vec<Arc<WorkerStats>>,
    /// When the daemon started.
    pub started: Instant,
    /// What `POST /v1/reload` runs.
    pub reload: ReloadFn,
    /// The XDP programs and AF_XDP counters when the AF_XDP backend runs (`xdp` in `/v1/stats`).
    pub xdp: Option<Arc<crate::xdp_backend::XdpShared>>,
    /// The UDP backend's steering when it runs (`udp` in `/v1/stats`).
    pub udp: Option<Arc<crate::udp_backend::UdpShared>>,
    /// The failover relationships (none, or those of `[[failover]]`; they change with the
    /// configuration).
    pub failover: Arc<crate::failover::manager::FailoverManager>,
    /// The configuration file: changes made through the API are written there (atomically),
    /// then applied as a reload.
    pub config_path: PathBuf,
    /// Held while a change edits the configuration file and applies it, so that changes never
    /// interleave.
    pub edit_lock: Arc<Mutex<()>>,
    /// Nonces of partner requests seen recently (replays are refused).
    pub peer_nonces: Mutex<peer::NonceCache>,
    /// The alarm monitor (its alarms are exported in `/metrics`), when it runs.
    pub alarms: Option<Arc<crate::alarms::Monitor>>,
    /// The DNS updater (`GET /v1/ddns`, and its metrics in `/metrics`), when it runs.
    pub ddns: Option<Arc<crate::ddns::Ddns>>,
}

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The listening socket or the serving thread could not be set up.
    #[error("admin endpoint on {addr}: {message}")]
    Listen {
        /// The configured `admin_listen`.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The token file cannot be used.
    #[error("admin_token_file {}: {message}", path.display())]
    TokenFile {
        /// The configured `admin_token_file`.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The TLS files cannot be used.
    #[error("admin TLS: {0}")]
    Tls(#[from] tls::AdminTlsError),
}

/// Largest token file accepted, in bytes.
pub const MAX_TOKEN_FILE: u64 = 4096;
/// Shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin API's bearer token. Only its SHA-256 digest is kept, so comparing two tokens takes
/// the same time whatever their lengths and contents.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// True if `a == b`, in time that depends only on their lengths (no early exit).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Token {
    /// A token from its text: surrounding whitespace (a trailing newline) is ignored; it must be
    /// at least [`MIN_TOKEN_LEN`] visible ASCII characters.
    pub fn new(text: &str) -> Result<Token, String> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token is {} characters long; use at least {MIN_TOKEN_LEN} \
                 (for example `openssl rand -hex 32`)",
                t.len()
            ));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be visible ASCII characters without spaces".into());
        }
        Ok(Token {
            digest: digest(t.as_bytes()),
        })
    }

    /// Read the token from `path`, refusing a file that its owner does not keep private (any
    /// permission for group or others) or that is not a regular file.
    pub fn load(path: &Path) -> Result<Token, AdminError> {
        let err = |message: String| AdminError::TokenFile {
            path: path.to_path_buf(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "mode {mode:04o} lets users other than its owner access it; \
                 run `chmod 600 {}`",
                path.display()
            )));
        }
        if meta.len() > MAX_TOKEN_FILE {
            return Err(err(format!(
                "{} bytes; a token file holds one token (at most {MAX_TOKEN_FILE} bytes)",
                meta.len()
            )));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TOKEN_FILE).read_to_string(&mut text))
            .map_err(|e| err(format!("cannot read: {e}")))?;
        Token::new(&text).map_err(err)
    }

    /// True if the `Authorization` header value `header` is `Bearer <this token>`.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let Some((scheme, given)) = h.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        constant_time_eq(&self.digest, &digest(given.trim().as_bytes()))
    }
}

/// A running admin endpoint.
pub struct Admin {
    server: server::Server,
    counters: Arc<AdminCounters>,
}

/// A request as the router sees it.
#[derive(Clone, Debug)]
pub struct Req {
    /// HTTP method.
    pub method: http::Method,
    /// Path and query, as sent.
    pub url: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `X-Tandem-Peer` header (a partner's signed request), if any.
    pub peer_auth: Option<String>,
    /// Who sent the request.
    pub remote: Option<SocketAddr>,
    /// The client's verified certificate, on a TLS endpoint with a client CA.
    pub client: Option<tls::ClientCert>,
    /// The request body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

/// An answer: status, body, content type and extra headers.
#[derive(Clone, Debug)]
pub struct Resp {
    /// HTTP status code.
    pub code: u16,
    /// Body.
    pub body: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Resp {
    fn json(code: u16, v: &Value) -> Resp {
        Resp {
            code,
            body: v.to_string(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }
}

fn error(code: u16, msg: &str) -> Resp {
    Resp::json(code, &json!({ "error": msg }))
}

impl Admin {
    /// Bind `addr` and serve in background threads, with the default [`AdminLimits`]. The
    /// token files the configuration names are read first, and with `admin_tls = "required"`
    /// the certificates (start-up fails if any cannot be used).
    pub fn start(addr: SocketAddr, state: AdminState) -> Result<Admin, AdminError> {
        Admin::start_with(addr, state, AdminLimits::default())
    }

    /// [`Admin::start`] with other limits.
    pub fn start_with(
        addr: SocketAddr,
        state: AdminState,
        limits: AdminLimits,
    ) -> Result<Admin, AdminError> {
        let (token_file, readonly_file, tls_settings) = {
            let cfg = state.config.read().unwrap_or_else(|e| e.into_inner());
            (
                cfg.daemon.admin_token_file.clone(),
                cfg.daemon.admin_readonly_token_file.clone(),
                cfg.daemon.admin_tls.clone(),
            )
        };
        let tokens = Tokens {
            admin: token_file.as_deref().map(Token::load).transpose()?,
            readonly: readonly_file.as_deref().map(Token::load).transpose()?,
        };
        let client_ca = tls_settings
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        let authentication = match (&tokens.admin, &tokens.readonly) {
            _ if client_ca => "client certificates",
            (Some(_), Some(_)) => "bearer tokens (admin and read-only)",
            (Some(_), None) => "bearer token",
            _ => "none (loopback only)",
        };
        if client_ca && tokens.admin.is_some() {
            tracing::warn!(
                "admin endpoint: admin_tls_client_ca_file is set, so client certificates \
                 authenticate; the bearer token files grant nothing on this endpoint"
            );
        }
        let tls_side = match &tls_settings {
            None => None,
            Some(t) => Some(server::TlsSide {
                reloader: Mutex::new(tls::TlsReloader::new(t.clone())?),
            }),
        };
        let transport = match &tls_settings {
            None => "http",
            Some(_) => "https (TLS 1.3)",
        };
        let counters = Arc::new(AdminCounters::default());
        let handler: server::Handler = {
            let counters = counters.clone();
            Box::new(move |info: &server::ConnInfo, req: http::Request| {
                let r = Req {
                    authorization: req.header("Authorization").map(str::to_string),
                    peer_auth: req.header(peer::PEER_HEADER).map(str::to_string),
                    remote: Some(info.remote),
                    client: info.client.clone(),
                    method: req.method,
                    url: req.target,
                    body: req.body,
                };
                let out = handle(&state, &tokens, &counters, &r);
                tracing::debug!(
                    method = %r.method,
                    url = %r.url,
                    status = out.code,
                    client = r.client.as_ref().map(|c| c.label()),
                    "admin request"
                );
                out
            })
        };
        let server = server::Server::start(addr, limits, tls_side, handler, counters.clone())
            .map_err(|e| AdminError::Listen {
                addr,
                message: e.to_string(),
            })?;
        tracing::info!(
            %addr,
            transport,
            authentication,
            max_connections = limits.max_connections,
            "admin endpoint listening"
        );
        Ok(Admin { server, counters })
    }

    /// The endpoint's connection counters.
    pub fn counters(&self) -> &AdminCounters {
        &self.counters
    }

    /// Stop serving, close the connections and join the threads.
    pub fn stop(self) {
        self.server.stop();
    }
}

/// The admin API's bearer tokens: the admin token may do everything, the read-only one only
/// read (GET and HEAD).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// `admin_token_file`'s token (`None`: the API is unauthenticated, loopback only).
    pub admin: Option<Token>,
    /// `admin_readonly_token_file`'s token.
    pub readonly: Option<Token>,
}

/// Authenticate `r` (by its client certificate, else with `tokens`) and route it.
fn handle(state: &AdminState, tokens: &Tokens, counters: &AdminCounters, r: &Req) -> Resp {
    // A partner's request is authenticated by its signature (see `peer`), not the token.
    let peer_route = r.url.starts_with("/v1/peer/");
    let reading = matches!(r.method, http::Method::Get | http::Method::Head);
    if let Some(cert) = r.client.as_ref().filter(|_| !peer_route) {
        if cert.role == tls::Role::ReadOnly && !reading {
            return error(
                403,
                &format!(
                    "the client certificate {:?} is read-only (listed in the server's \
                     admin_tls_readonly_names): it may read (GET) but not change anything; \
                     use an admin certificate",
                    cert.label()
                ),
            );
        }
    } else if let Some(t) = tokens.admin.as_ref().filter(|_| !peer_route) {
        let readonly = tokens
            .readonly
            .as_ref()
            .is_some_and(|ro| ro.accepts(r.authorization.as_deref()));
        if readonly && !reading {
            return error(
                403,
                "this is the read-only token: it may read (GET) but not change anything; \
                 use the admin token",
            );
        }
        if !readonly && !t.accepts(r.authorization.as_deref()) {
            let msg = if r.authorization.is_some() {
                "wrong bearer token"
            } else {
                "authentication required: send `Authorization: Bearer <token>` \
                 (the token is in the server's admin_token_file)"
            };
            let mut resp = error(401, msg);
            resp.headers
                .push(("WWW-Authenticate", "Bearer realm=\"tandem\"".into()));
            return resp;
        }
    }
    route(state, counters, r)
}

/// Decode `%XX` escapes and `+` (space) in a query component.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// Split a query string into decoded `(key, value)` pairs; a key given twice is an error.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("query parameter {k:?} is given twice"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn method_not_allowed(allow: &str) -> Resp {
    let mut r = error(405, &format!("method not allowed here (allowed: {allow})"));
    r.headers.push(("Allow", allow.to_string()));
    r
}

fn route(state: &AdminState, counters: &AdminCounters, r: &Req) -> Resp {
    use http::Method::{Delete, Get, Patch, Post, Put};
    let (path, query) = r.url.split_once('?').unwrap_or((&r.url, ""));
    let params = match parse_query(query) {
        Ok(p) => p,
        Err(e) => return error(400, &e),
    };
    let get_only = |f: &dyn Fn() -> Resp| {
        if r.method == Get {
            f()
        } else {
            method_not_allowed("GET")
        }
    };
    let no_params = |f: &dyn Fn() -> Resp| match params.first() {
        Some((k, _)) => error(
            400,
            &format!("unknown query parameter {k:?} (this resource takes none)"),
        ),
        None => f(),
    };
    match path {
        "/v1/status" => get_only(&|| no_params(&|| status(state))),
        "/v1/stats" => get_only(&|| no_params(&|| Resp::json(200, &stats(state, counters)))),
        "/v1/leases" => get_only(&|| leases(state, &params)),
        "/metrics" => get_only(&|| no_params(&|| metrics_page(state, counters))),
        "/v1/reload" => {
            if r.method == Post {
                no_params(&|| reload(state))
            } else {
                method_not_allowed("POST")
            }
        }
        "/v1/failover" => match r.method {
            Get => no_params(&|| failover_list(state)),
            Post => no_params(&|| fo::add(state, &r.body)),
            _ => method_not_allowed("GET, POST"),
        },
        "/v1/failover/replicate" => {
            if r.method == Post {
                only_params(&params, &["scope"], |p| {
                    fo::replicate_all(state, param(p, "scope"))
                })
            } else {
                method_not_allowed("POST")
            }
        }
        "/v1/scopes" => get_only(&|| no_params(&|| scopes::list(state))),
        "/v1/ddns" => get_only(&|| {
            no_params(&|| match &state.ddns {
                Some(d) => Resp::json(200, &d.status()),
                None => error(404, "the DNS updater is not running"),
            })
        }),
        _ => {
            if let Some(addr) = path.strip_prefix("/v1/leases/") {
                if !addr.is_empty() && !addr.contains('/') {
                    return match r.method {
                        Get => no_params(&|| lease_show(state, addr)),
                        Delete => no_params(&|| scopes::lease_delete(state, addr)),
                        _ => method_not_allowed("GET, DELETE"),
                    };
                }
            }
            if let Some(name) = path.strip_prefix("/v1/scopes/") {
                if !name.is_empty() && !name.contains('/') {
                    let name = match percent_decode(name) {
                        Ok(n) => n,
                        Err(e) => return error(400, &e),
                    };
                    return match r.method {
                        Get => no_params(&|| scopes::show(state, &name)),
                        Put => no_params(&|| scopes::put(state, &name, &r.body)),
                        Delete => no_params(&|| scopes::delete(state, &name)),
                        _ => method_not_allowed("GET, PUT, DELETE"),
                    };
                }
            }
            if let Some(name) = path.strip_prefix("/v1/peer/") {
                if !name.is_empty() && !name.contains('/') {
                    return if r.method == Post {
                        fo::receive(state, name, r)
                    } else {
                        method_not_allowed("POST")
                    };
                }
            }
            if let Some(rest) = path.strip_prefix("/v1/failover/") {
                let post = |f: &dyn Fn() -> Resp| {
                    if r.method == Post {
                        f()
                    } else {
                        method_not_allowed("POST")
                    }
                };
                match rest.split_once('/') {
                    None if !rest.is_empty() => {
                        return match r.method {
                            Get => no_params(&|| failover_show(state, rest)),
                            Patch => only_params(&params, &["force"], |p| match flag(p, "force") {
                                Ok(force) => fo::set(state, rest, &r.body, force),
                                Err(e) => error(400, &e),
                            }),
                            Delete => {
                                only_params(&params, &["force"], |p| match flag(p, "force") {
                                    Ok(force) => fo::remove(state, rest, force),
                                    Err(e) => error(400, &e),
                                })
                            }
                            _ => method_not_allowed("GET, PATCH, DELETE"),
                        };
                    }
                    Some((name, "partner-down")) if !name.is_empty() => {
                        return post(&|| no_params(&|| failover_partner_down(state, name)));
                    }
                    Some((name, "pause")) if !name.is_empty() => {
                        return post(&|| no_params(&|| fo::pause_resume(state, name, true)));
                    }
                    Some((name, "resume")) if !name.is_empty() => {
                        return post(&|| no_params(&|| fo::pause_resume(state, name, false)));
                    }
                    Some((name, "replicate")) if !name.is_empty() => {
                        return post(&|| {
                            only_params(&params, &["scope"], |p| {
                                fo::replicate(state, name, param(p, "scope"))
                            })
                        });
                    }
                    _ => {}
                }
            }
            error(404, &format!("no such resource: {path}"))
        }
    }
}

/// `s` with the alarms the monitor holds for its relationship.
fn with_alarms(
    state: &AdminState,
    mut s: crate::failover::service::RelationshipStatus,
) -> crate::failover::service::RelationshipStatus {
    if let Some(m) = &state.alarms {
        s.alarms = m.active_names(&s.name);
    }
    s
}

/// Run `f` if every query parameter is one of `known`.
fn only_params(
    params: &[(String, String)],
    known: &[&str],
    f: impl FnOnce(&[(String, String)]) -> Resp,
) -> Resp {
    match params.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => error(
            400,
            &format!(
                "unknown query parameter {k:?} (known: {})",
                known.join(", ")
            ),
        ),
        None => f(params),
    }
}

/// The value of query parameter `key`.
fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A boolean query parameter (`true`/`false`, `1`/`0`; absent is false).
fn flag(params: &[(String, String)], key: &str) -> Result<bool, String> {
    match param(params, key) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(v) => Err(format!("{key}={v:?}: expected true or false")),
    }
}

fn failover_list(state: &AdminState) -> Resp {
    let rels: Vec<Value> = state
        .failover
        .statuses()
        .into_iter()
        .map(|s| with_alarms(state, s).to_json())
        .collect();
    Resp::json(200, &json!({ "relationships": rels }))
}

fn failover_show(state: &AdminState, name: &str) -> Resp {
    match state.failover.status(name) {
        Some(s) => Resp::json(200, &with_alarms(state, s).to_json()),
        None => error(404, &format!("no failover relationship named {name:?}")),
    }
}

fn failover_partner_down(state: &AdminState, name: &str) -> Resp {
    match state.failover.partner_down(name) {
        Ok(msg) => {
            tracing::warn!(
                relationship = name,
                "partner-down requested through the admin API"
            );
            Resp::json(200, &json!({ "relationship": name, "message": msg }))
        }
        Err(None) => error(404, &format!("no failover relationship named {name:?}")),
        Err(Some(msg)) => error(409, &msg),
    }
}

/// Ask every worker (`make` builds the message around the answer channel; `Leases` and `Pools`
/// reach every worker, see `WorkerHandle::send`) and collect one answer from each; `None` if a
/// worker is gone or does not answer within 5 s.
fn ask_all<T>(
    state: &AdminState,
    make: impl FnOnce(crossbeam_channel::Sender<T>) -> Control,
) -> Option<Vec<T>> {
    let n = state.worker.workers();
    let (tx, rx) = crossbeam_channel::bounded(n);
    if !state.worker.send(make(tx)) {
        return None;
    }
    let until = std::time::Instant::now() + Duration::from_secs(5);
    (0..n).map(|_| rx.recv_deadline(until).ok()).collect()
}

/// Pool usage per scope, summed over the workers.
pub(crate) fn pools(state: &AdminState) -> Option<Vec<tandem_dataplane::worker::PoolRow>> {
    ask_all(state, Control::Pools).map(tandem_dataplane::worker::sum_pool_rows)
}

/// Every binding of every worker.
fn all_leases(state: &AdminState) -> Option<Vec<tandem_dataplane::worker::LeaseRow>> {
    ask_all(state, Control::Leases).map(|v| v.into_iter().flatten().collect())
}

fn status(state: &AdminState) -> Resp {
    let Some(pools) = pools(state) else {
        return error(503, "the worker did not answer");
    };
    let cfg = state.config.read().unwrap_or_else(|e| e.into_inner());
    let scopes: Vec<Value> = cfg
        .settings
        .scopes
        .iter()
        .zip(pools)
        .map(|(s, p)| {
            json!({
                "name": s.name,
                "subnet": format!("{}/{}", s.subnet.network, s.subnet.prefix),
                "size": p.size,
                "free": p.free,
                "active": p.active,
            })
        })
        .collect();
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "server_id": cfg.settings.server_id.to_string(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "durability": format!("{:?}", cfg.daemon.durability).to_lowercase(),
        "state_dir": cfg.daemon.state_dir.display().to_string(),
        "interfaces": cfg.daemon.interfaces,
        "backend": if state.xdp.is_some() { "xdp" } else { "udp" },
        "scopes": scopes,
    });
    Resp::json(200, &body)
}

/// Lower-case name of a binding state, as the API shows it.
pub fn state_name(s: BindingState) -> &'static str {
    match s {
        BindingState::Free => "free",
        BindingState::Active => "active",
        BindingState::Expired => "expired",
        BindingState::Released => "released",
        BindingState::Abandoned => "abandoned",
        BindingState::Reset => "reset",
        BindingState::Backup => "backup",
        BindingState::Offered => "offered",
    }
}

/// Every state name [`state_name`] can return (the values `?state=` accepts).
pub const STATE_NAMES: &[&str] = &[
    "free",
    "active",
    "expired",
    "released",
    "abandoned",
    "reset",
    "backup",
    "offered",
];

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// JSON shape of one lease: `address`, `state`, `client_id` (hex), `mac` (hex of chaddr),
/// `hostname` (null until hostnames are stored), `start`, `expires`, `cltt` (Unix seconds),
/// `scope`.
pub fn lease_json(scope: &str, b: &Binding) -> Value {
    json!({
        "address": b.addr.to_string(),
        "state": state_name(b.state),
        "client_id": hex(b.client.as_bytes()),
        "mac": hex(b.hw()),
        "hostname": Value::Null,
        "start": b.start,
        "expires": b.expires,
        "cltt": b.cltt,
        "scope": scope,
    })
}

/// Largest `limit` of one page of leases.
pub const MAX_PAGE: usize = 100_000;

/// Filters and paging of `GET /v1/leases`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseQuery {
    /// Only this state.
    pub state: Option<String>,
    /// Only this scope.
    pub scope: Option<String>,
    /// At most this many (1..=[`MAX_PAGE`]); all if `None`.
    pub limit: Option<usize>,
    /// Skip this many first.
    pub offset: usize,
}

impl LeaseQuery {
    /// Parse and check the query parameters; the error names the bad parameter.
    pub fn parse(params: &[(String, String)]) -> Result<LeaseQuery, String> {
        let mut q = LeaseQuery::default();
        let number = |k: &str, v: &str, lo: usize, hi: usize| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{k}={v:?}: expected an integer from {lo} to {hi}"))
        };
        for (k, v) in params {
            match k.as_str() {
                "state" => {
                    if !STATE_NAMES.contains(&v.as_str()) {
                        return Err(format!(
                            "state={v:?}: expected one of {}",
                            STATE_NAMES.join(", ")
                        ));
                    }
                    q.state = Some(v.clone());
                }
                "scope" => q.scope = Some(v.clone()),
                "limit" => q.limit = Some(number(k, v, 1, MAX_PAGE)?),
                "offset" => q.offset = number(k, v, 0, usize::MAX)?,
                _ => {
                    return Err(format!(
                        "unknown query parameter {k:?} (known: state, scope, limit, offset)"
                    ))
                }
            }
        }
        Ok(q)
    }

    /// Filter `rows` (sorted by address first), then page them: the page and the number of rows
    /// that matched before paging.
    pub fn apply(&self, mut rows: Vec<LeaseRow>) -> (Vec<LeaseRow>, usize) {
        rows.sort_by_key(|r| r.binding.addr);
        rows.retain(|r| {
            self.state
                .as_deref()
                .is_none_or(|s| s == state_name(r.binding.state))
                && self.scope.as_deref().is_none_or(|s| s == r.scope)
        });
        let total = rows.len();
        let page = rows
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect();
        (page, total)
    }
}

fn leases(state: &AdminState, params: &[(String, String)]) -> Resp {
    let q = match LeaseQuery::parse(params) {
        Ok(q) => q,
        Err(e) => return error(400, &e),
    };
    if let Some(scope) = &q.scope {
        let cfg = state.config.read().unwrap_or_else(|e| e.into_inner());
        if !cfg.settings.scopes.iter().any(|s| s.name == *scope) {
            return error(400, &format!("scope={scope:?}: no such scope"));
        }
    }
    let Some(rows) = all_leases(state) else {
        return error(503, "the worker did not answer");
    };
    let (page, total) = q.apply(rows);
    let list: Vec<Value> = page
        .iter()
        .map(|r| lease_json(&r.scope, &r.binding))
        .collect();
    let mut resp = Resp::json(200, &Value::Array(list));
    resp.headers.push(("X-Total-Count", total.to_string()));
    resp
}

fn lease_show(state: &AdminState, addr: &str) -> Resp {
    let Ok(a) = percent_decode(addr).and_then(|s| s.parse::<Ipv4Addr>().map_err(|e| e.to_string()))
    else {
        return error(400, &format!("{addr:?} is not an IPv4 address"));
    };
    let Some(rows) = all_leases(state) else {
        return error(503, "the worker did not answer");
    };
    match rows.iter().find(|r| r.binding.addr == a) {
        Some(r) => Resp::json(200, &lease_json(&r.scope, &r.binding)),
        None => error(404, &format!("no lease for {a}")),
    }
}

fn reload(state: &AdminState) -> Resp {
    match (state.reload)() {
        Ok(scopes) => Resp::json(200, &json!({ "reloaded": true, "scopes": scopes })),
        Err(errs) => fo::config_errors(
            &errs,
            &format!(
                "the configuration has {} error(s); still serving the previous configuration",
                errs.0.len()
            ),
        ),
    }
}

fn metrics_page(state: &AdminState, counters: &AdminCounters) -> Resp {
    let mut snap = metrics::Snapshot::take(
        &state.stats,
        &state.worker_stats,
        pools(state),
        state.started.elapsed(),
    );
    snap.failover = state.failover.statuses();
    snap.alarms = state.alarms.as_deref().map(metrics::AlarmSnapshot::of);
    snap.xdp = state.xdp.as_deref().map(metrics::XdpSnapshot::of);
    snap.udp = state.udp.as_deref().map(|u| {
        metrics::UdpSnapshot::of(
            u,
            &WorkerStats::total(state.worker_stats.iter().map(|w| &**w)),
        )
    });
    let mut dns = String::new();
    if let Some(d) = &state.ddns {
        d.render_metrics(&mut dns);
    }
    match metrics::render(snap).and_then(|m| Ok(m + &counters.render_metrics()? + &dns)) {
        Ok(body) => Resp {
            code: 200,
            body,
            content_type: metrics::CONTENT_TYPE,
            headers: Vec::new(),
        },
        Err(_) => error(500, "encoding the metrics failed"),
    }
}

fn stats(state: &AdminState, counters: &AdminCounters) -> Value {
    let mut m = Map::new();
    let mut dropped = Map::new();
    for &c in Counter::ALL {
        let v = state.stats.get(c);
        m.insert(c.name().to_string(), json!(v));
        if let Some(reason) = c.name().strip_prefix("drop_") {
            dropped.insert(reason.to_string(), json!(v));
        }
    }
    let replied = state.stats.get(Counter::Offer)
        + state.stats.get(Counter::Ack)
        + state.stats.get(Counter::Nak);
    m.insert("replied".into(), json!(replied));
    m.insert("dropped".into(), Value::Object(dropped));
    let active = pools(state)
        .map(|p| p.iter().map(|r| r.active).sum::<u64>())
        .unwrap_or(0);
    m.insert("leases_active".into(), json!(active));
    let ws = &WorkerStats::total(state.worker_stats.iter().map(|w| &**w));
    let commits = ws.commits.load(Ordering::Relaxed);
    let nanos = ws.commit_nanos.load(Ordering::Relaxed);
    m.insert(
        "journal".into(),
        json!({
            "commits": commits,
            "records": ws.records.load(Ordering::Relaxed),
            "commit_avg_us": nanos.checked_div(commits).unwrap_or(0) / 1000,
            "commit_max_us": ws.commit_nanos_max.load(Ordering::Relaxed) / 1000,
            "compactions": ws.compactions.load(Ordering::Relaxed),
        }),
    );
    m.insert("batches".into(), json!(ws.batches.load(Ordering::Relaxed)));
    m.insert("stages".into(), stages_json(&ws.stages));
    m.insert(
        "wakeups".into(),
        json!({
            "total": ws.wakeups.load(Ordering::Relaxed),
            "idle": ws.idle_wakeups.load(Ordering::Relaxed),
        }),
    );
    m.insert(
        "withheld_replies".into(),
        json!(ws.withheld_replies.load(Ordering::Relaxed)),
    );
    m.insert(
        "send_errors".into(),
        json!(ws.send_errors.load(Ordering::Relaxed)),
    );
    m.insert(
        "recv_errors".into(),
        json!(ws.recv_errors.load(Ordering::Relaxed)),
    );
    if let Some(x) = &state.xdp {
        m.insert("xdp".into(), x.stats_json());
    }
    if let Some(u) = &state.udp {
        let steering: Map<String, Value> = u
            .steering_counters()
            .into_iter()
            .map(|(iface, c)| {
                let v: Map<String, Value> = c
                    .named()
                    .iter()
                    .map(|(n, v)| (n.to_string(), json!(v)))
                    .collect();
                (iface, Value::Object(v))
            })
            .collect();
        m.insert(
            "udp".into(),
            json!({
                "workers": u.workers,
                "steered_in_kernel": u.steered(),
                "steering": steering,
                "handoff_out": ws.handoff_out.load(Ordering::Relaxed),
                "handoff_in": ws.handoff_in.load(Ordering::Relaxed),
                "handoff_full": ws.handoff_full.load(Ordering::Relaxed),
            }),
        );
    }
    let per_worker: Vec<Value> = state
        .worker_stats
        .iter()
        .enumerate()
        .map(|(k, w)| {
            json!({
                "worker": k,
                "discover": state.stats.get_at(k, Counter::Discover),
                "request": state.stats.get_at(k, Counter::Request),
                "offer": state.stats.get_at(k, Counter::Offer),
                "ack": state.stats.get_at(k, Counter::Ack),
                "nak": state.stats.get_at(k, Counter::Nak),
                "batches": w.batches.load(Ordering::Relaxed),
                "busy_ms": w.busy_nanos.load(Ordering::Relaxed) / 1_000_000,
                "commits": w.commits.load(Ordering::Relaxed),
                "wakeups": w.wakeups.load(Ordering::Relaxed),
            })
        })
        .collect();
    m.insert("workers".into(), Value::Array(per_worker));
    m.insert("admin".into(), counters.to_json());
    Value::Object(m)
}

/// Per stage of a request's time in the server: how often it was counted, its mean, and the
/// upper bounds of the histogram buckets holding its p50 and p99 (`null` when beyond the last
/// bound), and the bucket counts themselves (per bound of
/// [`tandem_dataplane::worker::STAGE_BUCKETS_US`], then the longer ones; not cumulative).
fn stages_json(stages: &tandem_dataplane::worker::Stages) -> Value {
    let mut m = serde_json::Map::new();
    for (name, h) in stages.named() {
        let counts = h.counts();
        let n: u64 = counts.iter().sum();
        let bound = |q| match tandem_dataplane::worker::quantile_of(&counts, q) {
            Some(u64::MAX) | None => Value::Null,
            Some(us) => json!(us),
        };
        m.insert(
            name.to_string(),
            json!({
                "count": n,
                "mean_us": (h.sum_nanos.load(Ordering::Relaxed).checked_div(n).unwrap_or(0)) as f64 / 1000.0,
                "p50_le_us": bound(0.5),
                "p99_le_us": bound(0.99),
                "buckets": counts,
            }),
        );
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_accepts_only_its_bearer_header() {
        let t = Token::new(&format!("{SECRET}\n")).expect("valid token");
        assert!(t.accepts(Some(&format!("Bearer {SECRET}"))));
        assert!(t.accepts(Some(&format!("bearer {SECRET}"))));
        assert!(!t.accepts(None));
        assert!(!t.accepts(Some(SECRET)));
        assert!(!t.accepts(Some(&format!("Basic {SECRET}"))));
        assert!(!t.accepts(Some(&format!("Bearer {SECRET}x"))));
        assert!(!t.accepts(Some(&format!("Bearer {}", &SECRET[1..]))));
        assert!(!t.accepts(Some("Bearer ")));
    }

    #[test]
    fn token_text_is_checked() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in the middle of it").is_err());
        assert!(Token::new(SECRET).is_ok());
    }

    #[test]
    fn token_file_must_be_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("admin.token");
        std::fs::write(&path, SECRET).expect("write token");
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = Token::load(&path).expect_err("a shared token file is refused");
            let msg = err.to_string();
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let t = Token::load(&path).expect("a private token file is accepted");
        assert!(t.accepts(Some(&format!("Bearer {SECRET}"))));
        let missing = Token::load(&dir.path().join("none")).expect_err("missing file");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }

    #[test]
    fn query_strings_are_decoded_and_checked() {
        assert_eq!(
            parse_query("scope=my%20lan&state=active").expect("valid"),
            vec![
                ("scope".to_string(), "my lan".to_string()),
                ("state".to_string(), "active".to_string())
            ]
        );
        assert_eq!(
            parse_query("scope=a+b").expect("valid")[0].1,
            "a b".to_string()
        );
        assert!(parse_query("scope=%zz").is_err());
        assert!(parse_query("scope=%4").is_err());
        assert!(parse_query("limit=1&limit=2").is_err());
    }

    fn params(q: &str) -> Vec<(String, String)> {
        parse_query(q).expect("valid query")
    }

    #[test]
    fn lease_query_checks_each_parameter() {
        let q = LeaseQuery::parse(&params("state=active&limit=10&offset=5")).expect("valid");
        assert_eq!(q.state.as_deref(), Some("active"));
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.offset, 5);
        for bad in [
            "limit=0",
            "limit=-1",
            "limit=100001",
            "offset=x",
            "state=bogus",
            "colour=red",
        ] {
            let e = LeaseQuery::parse(&params(bad)).expect_err(bad);
            let key = bad.split('=').next().unwrap_or_default();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    fn row(scope: &str, last: u8, state: BindingState) -> LeaseRow {
        LeaseRow {
            scope: scope.into(),
            binding: Binding::empty(Ipv4Addr::new(10, 0, 0, last), state),
        }
    }

    #[test]
    fn lease_query_filters_sorts_then_pages() {
        let rows = vec![
            row("lan", 9, BindingState::Active),
            row("lan", 3, BindingState::Active),
            row("lan", 5, BindingState::Released),
            row("dmz", 7, BindingState::Active),
            row("lan", 1, BindingState::Active),
        ];
        let q = LeaseQuery {
            state: Some("active".into()),
            scope: Some("lan".into()),
            limit: Some(2),
            offset: 1,
        };
        let (page, total) = q.apply(rows.clone());
        assert_eq!(total, 3);
        let got: Vec<Ipv4Addr> = page.iter().map(|r| r.binding.addr).collect();
        assert_eq!(
            got,
            [Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 9)]
        );
        let past_end = LeaseQuery {
            offset: 10,
            ..LeaseQuery::default()
        };
        let (page, total) = past_end.apply(rows);
        assert!(page.is_empty());
        assert_eq!(total, 5);
    }
}
