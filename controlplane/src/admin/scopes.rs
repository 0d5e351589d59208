//! Scopes and leases through the admin API:
//! - `GET /v1/scopes`, `GET /v1/scopes/{name}`: the scopes in force with their pool usage (and,
//!   for one scope, its `[[scope]]` table as the configuration file has it);
//! - `PUT /v1/scopes/{name}`, `DELETE /v1/scopes/{name}`: change the configuration file (see
//!   [`crate::config::edit`]) and apply it as a reload;
//! - `DELETE /v1/leases/{address}`: end a lease as a DHCPRELEASE would.
//!
//! A configuration change holds [`AdminState::edit_lock`] from reading the file to applying it:
//! it edits the file's text, validates the whole result (422 with every error, in the shape of
//! `POST /v1/reload`, and nothing written if invalid), replaces the file atomically, then runs
//! the reload. If the reload refuses the new file, the old text is written back, so the file and
//! the configuration in force never disagree because of the API.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::worker::{Control, EngineTask, PoolRow};

use super::fo::invalid;
use super::{error, lease_json, percent_decode, pools, state_name, AdminState, Resp};
use crate::config::edit::{ConfigDoc, EditError};
use crate::config::Config;

/// Keys of an existing `[[scope]]` that a `PUT` without them keeps: the interface is this
/// server's own business (the same scope may be served on another interface by a partner).
const KEEP: &[&str] = &["interface"];

/// How long a lease deletion waits for the worker and its journal commit.
const LEASE_DELETE_WAIT: Duration = Duration::from_secs(10);

/// The JSON of scope `i` of `cfg`, with the pool numbers of `pools` (zero if the worker does
/// not serve it yet).
fn scope_json(cfg: &Config, i: usize, pools: &[PoolRow]) -> Value {
    let Some(s) = cfg.settings.scopes.get(i) else {
        return Value::Null;
    };
    let pool = pools.iter().find(|p| p.scope == s.name);
    let relationship = cfg
        .failover
        .iter()
        .find(|f| f.scope_names.contains(&s.name))
        .map(|f| f.name.clone());
    let ranges: Vec<String> = s
        .ranges
        .iter()
        .map(|r| format!("{}-{}", r.start, r.end))
        .collect();
    json!({
        "name": s.name,
        "subnet": format!("{}/{}", s.subnet.network, s.subnet.prefix),
        "interface": cfg.scope_interfaces.get(i).cloned().flatten(),
        "ranges": ranges,
        "lease_time_secs": s.lease_time,
        "relationship": relationship,
        "size": pool.map_or(0, |p| p.size),
        "free": pool.map_or(0, |p| p.free),
        "active": pool.map_or(0, |p| p.active),
    })
}

/// `GET /v1/scopes`.
pub(super) fn list(state: &AdminState) -> Resp {
    let Some(pools) = pools(state) else {
        return error(503, "the worker did not answer");
    };
    let cfg = state.config.read().unwrap_or_else(|e| e.into_inner());
    let scopes: Vec<Value> = (0..cfg.settings.scopes.len())
        .map(|i| scope_json(&cfg, i, &pools))
        .collect();
    Resp::json(200, &json!({ "scopes": scopes }))
}

/// `GET /v1/scopes/{name}`.
pub(super) fn show(state: &AdminState, name: &str) -> Resp {
    let Some(pools) = pools(state) else {
        return error(503, "the worker did not answer");
    };
    let mut body = {
        let cfg = state.config.read().unwrap_or_else(|e| e.into_inner());
        match cfg.settings.scopes.iter().position(|s| s.name == name) {
            Some(i) => scope_json(&cfg, i, &pools),
            None => return error(404, &format!("no scope named {name:?}")),
        }
    };
    let doc = match ConfigDoc::load(&state.config_path) {
        Ok(d) => d,
        Err(e) => return error(500, &format!("cannot read the configuration file: {e}")),
    };
    // Null if the file no longer has the scope (edited by hand and not reloaded yet).
    body["config"] = doc.scope_text(name).map_or(Value::Null, Value::String);
    Resp::json(200, &body)
}

/// The answer for an edit that failed: 400 for the request's text, 404 for an unknown table, 409
/// for a file changed behind our back, 500 for the file itself.
fn edit_error(e: EditError) -> Resp {
    let code = match &e {
        EditError::Text(_) | EditError::NameMismatch { .. } => 400,
        EditError::NotFound { .. } => 404,
        EditError::Changed { .. } => 409,
        EditError::Io { .. } | EditError::File { .. } | EditError::NoFile { .. } => 500,
    };
    error(code, &e.to_string())
}

/// Read the configuration file for an edit.
fn load(state: &AdminState) -> Result<ConfigDoc, Resp> {
    ConfigDoc::load(&state.config_path)
        .map_err(|e| error(500, &format!("cannot edit the configuration file: {e}")))
}

/// Validate the edited `doc`, write it and apply it; `what` names the change in messages. If
/// the reload refuses it, the file gets its old text back.
fn apply(state: &AdminState, doc: &ConfigDoc, what: &str) -> Result<(), Resp> {
    if let Err(errs) = doc.check() {
        return Err(invalid(&errs, what));
    }
    doc.save().map_err(|e| match e {
        EditError::Changed { .. } => error(409, &e.to_string()),
        e => error(500, &format!("cannot write the configuration file: {e}")),
    })?;
    let Err(errs) = (state.reload)() else {
        return Ok(());
    };
    match doc.revert() {
        Ok(()) => Err(invalid(
            &errs,
            &format!("{what}: refused when applied, and the configuration file was restored"),
        )),
        Err(e) => {
            tracing::error!(error = %e, "the configuration file could not be restored after a refused change");
            Err(error(
                500,
                &format!(
                    "{what}: the new configuration file was refused when applied ({errs}), and \
                     restoring the old one failed: {e}; the file on disk is not the \
                     configuration in force"
                ),
            ))
        }
    }
}

/// `PUT /v1/scopes/{name}`.
pub(super) fn put(state: &AdminState, name: &str, body: &[u8]) -> Resp {
    let Ok(text) = std::str::from_utf8(body) else {
        return error(
            400,
            "the body is not UTF-8 text; send the scope's [[scope]] table as TOML",
        );
    };
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut doc = match load(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let put = match doc.put_scope_as(name, text, KEEP) {
        Ok(p) => p,
        Err(e) => return edit_error(e),
    };
    let verb = if put.created { "adding" } else { "changing" };
    if let Err(r) = apply(state, &doc, &format!("{verb} scope {name}")) {
        return r;
    }
    tracing::info!(
        scope = name,
        created = put.created,
        "scope written through the admin API"
    );
    Resp::json(200, &json!({ "scope": name, "created": put.created }))
}

/// `DELETE /v1/scopes/{name}`.
pub(super) fn delete(state: &AdminState, name: &str) -> Resp {
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut doc = match load(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if !doc.scope_names().iter().any(|n| n == name) {
        return error(404, &format!("no scope named {name:?}"));
    }
    if let Some(rel) = doc.failovers_with_scope(name).first() {
        return error(
            409,
            &format!(
                "scope {name:?} is in failover relationship {rel:?}: remove it from relationship \
                 {rel} first"
            ),
        );
    }
    if let Err(e) = doc.remove_scope(name) {
        return edit_error(e);
    }
    if let Err(r) = apply(state, &doc, &format!("removing scope {name}")) {
        return r;
    }
    tracing::info!(scope = name, "scope removed through the admin API");
    Resp::json(200, &json!({ "scope": name, "deleted": true }))
}

/// What the worker did with a lease deletion.
enum Ended {
    /// Nothing to end: the address's binding state, if it has a binding.
    NoLease(Option<BindingState>),
    /// The lease ended; `durable` if the journal commit that recorded it succeeded.
    Done {
        scope: String,
        previous: Binding,
        durable: bool,
    },
}

/// `DELETE /v1/leases/{address}`.
pub(super) fn lease_delete(state: &AdminState, addr: &str) -> Resp {
    let Ok(a) = percent_decode(addr).and_then(|s| s.parse::<Ipv4Addr>().map_err(|e| e.to_string()))
    else {
        return error(400, &format!("{addr:?} is not an IPv4 address"));
    };
    // Every worker is asked (the lease lives with the worker owning its client's bucket); at
    // most one holds it.
    let n = state.worker.workers();
    let (tx, rx) = crossbeam_channel::bounded(n);
    let make = |_| {
        let tx = tx.clone();
        let task: EngineTask = Box::new(move |engine, now| {
            let Some(previous) = engine.end_lease(a, now) else {
                let _ = tx.send(Ended::NoLease(engine.binding(a).map(|b| b.state)));
                return None;
            };
            let scope = engine
                .settings()
                .scopes
                .iter()
                .find(|s| s.subnet.contains(a))
                .map(|s| s.name.clone())
                .unwrap_or_default();
            // Answer only once the journal commit that records the end is done.
            Some(Box::new(move |durable| {
                let _ = tx.send(Ended::Done {
                    scope,
                    previous,
                    durable,
                });
            }))
        });
        Control::Run(task)
    };
    if !state.worker.each(make) {
        return error(503, "the worker did not answer");
    }
    let until = std::time::Instant::now() + LEASE_DELETE_WAIT;
    let mut answer: Result<Ended, ()> = Err(());
    for _ in 0..n {
        match rx.recv_deadline(until) {
            Err(_) => {
                answer = Err(());
                break;
            }
            Ok(e @ Ended::Done { .. }) => {
                answer = Ok(e);
                break;
            }
            Ok(Ended::NoLease(st)) => {
                // A worker that knows the address's state tells more than one that does not.
                if !matches!(answer, Ok(Ended::NoLease(Some(_)))) {
                    answer = Ok(Ended::NoLease(st));
                }
            }
        }
    }
    match answer {
        Err(()) => error(
            503,
            &format!("the worker did not answer in time; the lease of {a} may still end"),
        ),
        Ok(Ended::NoLease(None)) => error(404, &format!("no lease for {a}")),
        Ok(Ended::NoLease(Some(s))) => error(
            404,
            &format!("no active lease for {a} (its binding is {})", state_name(s)),
        ),
        Ok(Ended::Done { durable: false, .. }) => error(
            500,
            &format!(
                "the lease of {a} ended, but the journal commit that records it failed (the \
                 journal is rewritten from memory; see the server's log)"
            ),
        ),
        Ok(Ended::Done {
            scope, previous, ..
        }) => {
            tracing::info!(address = %a, scope, "lease deleted through the admin API");
            Resp::json(
                200,
                &json!({
                    "address": a.to_string(),
                    "deleted": true,
                    "previous": lease_json(&scope, &previous),
                }),
            )
        }
    }
}
