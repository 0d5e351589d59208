//! The local admin endpoint: HTTP/JSON on the configured `admin_listen` address (loopback by
//! default), read by `tandemctl`.
//!
//! Routes (all `GET`, versioned under `/v1`):
//! - `/v1/status`: server identity, uptime, durability, per-scope pool usage.
//! - `/v1/leases[?state=S&scope=N]`: every binding (see [`lease_json`] for the shape).
//! - `/v1/stats`: engine counters by name, drops by reason, journal commit figures.
//!
//! Errors are JSON objects `{"error": "..."}` with a matching status code. The full operator
//! surface (authentication, write verbs, metrics) is a later issue; this endpoint is read-only and
//! should stay bound to loopback.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::engine::{Counter, Stats};
use tandem_dataplane::worker::{Control, LeaseRow, WorkerHandle, WorkerStats};

use crate::config::Config;

/// What the admin endpoint reads.
pub struct AdminState {
    /// The configuration in force (replaced on reload).
    pub config: Arc<RwLock<Config>>,
    /// The worker to query.
    pub worker: WorkerHandle,
    /// Engine counters.
    pub stats: Arc<Stats>,
    /// Worker counters.
    pub worker_stats: Arc<WorkerStats>,
    /// When the daemon started.
    pub started: Instant,
}

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("admin endpoint on {addr}: {message}")]
pub struct AdminError {
    addr: SocketAddr,
    message: String,
}

/// A running admin endpoint.
pub struct Admin {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Admin {
    /// Bind `addr` and serve in a background thread.
    pub fn start(addr: SocketAddr, state: AdminState) -> Result<Admin, AdminError> {
        let server = tiny_http::Server::http(addr).map_err(|e| AdminError {
            addr,
            message: e.to_string(),
        })?;
        let server = Arc::new(server);
        let srv = server.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-admin".into())
            .spawn(move || {
                for req in srv.incoming_requests() {
                    let (code, body) = route(&state, req.method(), req.url());
                    let resp = tiny_http::Response::from_string(body)
                        .with_status_code(code)
                        .with_header(
                            tiny_http::Header::from_bytes(
                                &b"Content-Type"[..],
                                &b"application/json"[..],
                            )
                            .expect("static header is valid"),
                        );
                    let _ = req.respond(resp);
                }
            })
            .map_err(|e| AdminError {
                addr,
                message: e.to_string(),
            })?;
        Ok(Admin {
            server,
            thread: Some(thread),
        })
    }

    /// Stop serving and join the thread.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(code: u16, msg: &str) -> (u16, String) {
    (code, json!({ "error": msg }).to_string())
}

fn route(state: &AdminState, method: &tiny_http::Method, url: &str) -> (u16, String) {
    if *method != tiny_http::Method::Get {
        return error(405, "only GET is supported on this endpoint");
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    match path {
        "/v1/status" => status(state),
        "/v1/leases" => leases(state, &params),
        "/v1/stats" => (200, stats(state).to_string()),
        _ => error(404, &format!("no such resource: {path}")),
    }
}

fn ask<T>(
    state: &AdminState,
    make: impl FnOnce(crossbeam_channel::Sender<T>) -> Control,
) -> Option<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    if !state.worker.send(make(tx)) {
        return None;
    }
    rx.recv_timeout(Duration::from_secs(5)).ok()
}

fn status(state: &AdminState) -> (u16, String) {
    let Some(pools) = ask(state, Control::Pools) else {
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
        "backend": "udp",
        "scopes": scopes,
    });
    (200, body.to_string())
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

fn leases(state: &AdminState, params: &[(&str, &str)]) -> (u16, String) {
    let mut want_state = None;
    let mut want_scope = None;
    for (k, v) in params {
        match *k {
            "state" => want_state = Some(*v),
            "scope" => want_scope = Some(*v),
            _ => {
                return error(
                    400,
                    &format!("unknown query parameter {k:?} (known: state, scope)"),
                )
            }
        }
    }
    let Some(mut rows) = ask(state, Control::Leases) else {
        return error(503, "the worker did not answer");
    };
    rows.sort_by_key(|r: &LeaseRow| r.binding.addr);
    let list: Vec<Value> = rows
        .iter()
        .filter(|r| want_state.is_none_or(|s| s == state_name(r.binding.state)))
        .filter(|r| want_scope.is_none_or(|s| s == r.scope))
        .map(|r| lease_json(&r.scope, &r.binding))
        .collect();
    (200, Value::Array(list).to_string())
}

fn stats(state: &AdminState) -> Value {
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
    let active = ask(state, Control::Pools)
        .map(|p| p.iter().map(|r| r.active).sum::<u64>())
        .unwrap_or(0);
    m.insert("leases_active".into(), json!(active));
    let ws = &state.worker_stats;
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
    Value::Object(m)
}
