//! Failover relationship changes through the admin API (the failover cmdlets' verbs), and the
//! receiving side of a partner's requests ([`super::peer`]).
//!
//! Every change edits the configuration file ([`ConfigDoc`]), validates the whole result, writes
//! it atomically and applies it as a reload, holding [`AdminState::edit_lock`]. A change that
//! concerns both servers (add, set, remove) is made on the partner too, through its admin
//! endpoint, signed with the relationship's shared secret; if the partner cannot make it,
//! nothing changes here (unless the operator forces a local-only change).
//!
//! Order of a split or mode change: the server whose share grows applies first, then the one
//! whose share shrinks, so for the moment between the two changes some clients may be answered
//! by both servers (each from its own pool), never by neither.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::peer::{self, PeerAnswer, PeerOp, PeerRequest, ScopeText, SendError, CONFIG_SCHEMA};
use super::{error, AdminState, Req, Resp};
use crate::config::edit::ConfigDoc;
use crate::config::{Config, ConfigErrors, FailoverSettings};
use crate::failover::peer::{Mode, Role};
use crate::failover::service::share_percent;

/// The body of `POST /v1/failover`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    name: String,
    partner: Ipv4Addr,
    scopes: Vec<String>,
    partner_admin: Option<String>,
    role: Option<String>,
    mode: Option<String>,
    load_balance_percent: Option<u8>,
    hot_standby_role: Option<String>,
    reserve_percent: Option<u8>,
    mclt: Option<Value>,
    state_switchover_interval: Option<Value>,
    listen: Option<Ipv4Addr>,
    shared_secret_file: Option<String>,
    partner_admin_tls: Option<String>,
    partner_admin_ca_file: Option<String>,
    partner_admin_name: Option<String>,
    partner_admin_cert_file: Option<String>,
    partner_admin_key_file: Option<String>,
}

/// Keys `PATCH /v1/failover/{name}` may change.
const SET_KEYS: &[&str] = &[
    "mode",
    "load_balance_percent",
    "hot_standby_role",
    "reserve_percent",
    "mclt",
    "state_switchover_interval",
    "shared_secret_file",
    "partner_admin",
    "partner_admin_tls",
    "partner_admin_ca_file",
    "partner_admin_name",
    "partner_admin_cert_file",
    "partner_admin_key_file",
];

/// Keys of [`SET_KEYS`] that describe how this server reaches the partner's admin endpoint
/// (its address, and this server's files for HTTPS to it): they change on this server only,
/// and a partner may not change them here.
const LOCAL_KEYS: &[&str] = &[
    "partner_admin",
    "partner_admin_tls",
    "partner_admin_ca_file",
    "partner_admin_name",
    "partner_admin_cert_file",
    "partner_admin_key_file",
];

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The 422 answer for an invalid configuration, in the shape of `POST /v1/reload`: `what`,
/// then "nothing changed".
pub(super) fn invalid(errs: &ConfigErrors, what: &str) -> Resp {
    config_errors(
        errs,
        &format!(
            "{what}: the configuration would have {} error(s); nothing changed",
            errs.0.len()
        ),
    )
}

/// A 422 answer: `message`, and every configuration error with its position.
pub(super) fn config_errors(errs: &ConfigErrors, message: &str) -> Resp {
    let list: Vec<Value> = errs
        .0
        .iter()
        .map(|e| {
            json!({
                "file": e.origin,
                "line": e.line,
                "column": e.column,
                "key": e.key,
                "message": e.message,
                "text": e.to_string(),
            })
        })
        .collect();
    Resp::json(422, &json!({ "error": message, "errors": list }))
}

/// Write `doc` and apply it (the configuration must have been checked). If the running server
/// refuses it, the file is put back as it was.
fn commit(state: &AdminState, doc: &ConfigDoc) -> Result<(), Resp> {
    doc.save()
        .map_err(|e| error(500, &format!("cannot write the configuration file: {e}")))?;
    (state.reload)().map(|_| ()).map_err(|errs| {
        if let Err(e) = doc.revert() {
            tracing::error!(error = %e, "the refused configuration could not be taken back out of the file");
        }
        invalid(&errs, "the server could not apply the change")
    })
}

fn load_doc(state: &AdminState) -> Result<ConfigDoc, Resp> {
    ConfigDoc::load(&state.config_path)
        .map_err(|e| error(500, &format!("cannot read the configuration file: {e}")))
}

fn checked(doc: &ConfigDoc, what: &str) -> Result<Config, Resp> {
    doc.check().map_err(|e| invalid(&e, what))
}

/// The directory of the configuration file (where partners keep relationship secrets).
fn config_dir(state: &AdminState) -> PathBuf {
    state
        .config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/etc/tandem"))
}

/// Where a relationship's secret lives by default: `<config dir>/failover-NAME.secret`.
fn default_secret_path(state: &AdminState, name: &str) -> PathBuf {
    config_dir(state).join(format!("failover-{name}.secret"))
}

/// The admin address a partner reaches this server at.
fn own_admin(cfg: &Config) -> SocketAddr {
    let a = cfg.daemon.admin_listen;
    match a.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => a,
        _ => SocketAddr::from((cfg.settings.server_id, a.port())),
    }
}

fn toml_value(v: &Value) -> Result<Option<toml_edit::Value>, String> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(i.into()),
            None => return Err(format!("{n} is not an integer")),
        },
        Value::Bool(b) => Some((*b).into()),
        other => return Err(format!("{other} is not a string, an integer or null")),
    })
}

/// The status to answer when the partner could not make a change: 409 if it refused for a
/// conflict (another configuration schema), 502 otherwise.
fn partner_status(e: &SendError) -> u16 {
    match e {
        SendError::Refused { status: 409, .. } => 409,
        _ => 502,
    }
}

fn partner_error(e: &SendError) -> Resp {
    Resp::json(
        partner_status(e),
        &json!({
            "error": format!("{e}; nothing changed on this server (a local-only change needs force=true)"),
            "partner_error": e.to_string(),
        }),
    )
}

fn request(op: PeerOp) -> PeerRequest {
    PeerRequest {
        schema: CONFIG_SCHEMA,
        version: env!("CARGO_PKG_VERSION").into(),
        op,
    }
}

fn send(fo: &FailoverSettings, op: PeerOp) -> Result<PeerAnswer, SendError> {
    let Some(secret) = fo.secret.as_deref() else {
        return Err(SendError::Refused {
            status: 412,
            message: format!(
                "relationship {} has no shared_secret_file: changes reach the partner only \
                 signed with the relationship's secret",
                fo.name
            ),
        });
    };
    peer::send(
        fo.partner_admin,
        fo.partner_admin_tls.as_ref(),
        &fo.name,
        secret,
        &request(op),
    )
}

/// The `[[scope]]` texts of `names` from `doc`.
fn scope_texts(doc: &ConfigDoc, names: &[String]) -> Result<Vec<ScopeText>, Resp> {
    names
        .iter()
        .map(|n| {
            doc.scope_text(n)
                .map(|toml| ScopeText {
                    name: n.clone(),
                    toml,
                })
                .ok_or_else(|| {
                    error(
                        500,
                        &format!("scope {n:?} is not in the configuration file"),
                    )
                })
        })
        .collect()
}

fn status_json(state: &AdminState, name: &str) -> Value {
    state
        .failover
        .status(name)
        .map(|s| s.to_json())
        .unwrap_or(Value::Null)
}

// ----- POST /v1/failover ---------------------------------------------------------------------

/// The `[[failover]]` table for `b`, as TOML text.
fn failover_table(b: &AddBody, secret_file: &str) -> Result<String, String> {
    let mut t = toml_edit::Table::new();
    t["name"] = toml_edit::value(b.name.as_str());
    t["role"] = toml_edit::value(b.role.as_deref().unwrap_or("primary"));
    t["partner"] = toml_edit::value(b.partner.to_string());
    if let Some(a) = &b.partner_admin {
        t["partner_admin"] = toml_edit::value(a.as_str());
    }
    // How this server reaches the partner's admin endpoint over HTTPS (checked with the rest).
    for (k, v) in [
        ("partner_admin_tls", &b.partner_admin_tls),
        ("partner_admin_ca_file", &b.partner_admin_ca_file),
        ("partner_admin_name", &b.partner_admin_name),
        ("partner_admin_cert_file", &b.partner_admin_cert_file),
        ("partner_admin_key_file", &b.partner_admin_key_file),
    ] {
        if let Some(v) = v {
            t[k] = toml_edit::value(v.as_str());
        }
    }
    if let Some(l) = b.listen {
        t["listen"] = toml_edit::value(l.to_string());
    }
    if let Some(m) = &b.mode {
        t["mode"] = toml_edit::value(m.as_str());
    }
    if let Some(p) = b.load_balance_percent {
        t["load_balance_percent"] = toml_edit::value(i64::from(p));
    }
    if let Some(r) = &b.hot_standby_role {
        t["hot_standby_role"] = toml_edit::value(r.as_str());
    }
    if let Some(r) = b.reserve_percent {
        t["reserve_percent"] = toml_edit::value(i64::from(r));
    }
    for (k, v) in [
        ("mclt", &b.mclt),
        ("state_switchover_interval", &b.state_switchover_interval),
    ] {
        if let Some(v) = v {
            if let Some(tv) = toml_value(v).map_err(|e| format!("{k}: {e}"))? {
                t[k] = toml_edit::Item::Value(tv);
            }
        }
    }
    t["shared_secret_file"] = toml_edit::value(secret_file);
    let mut scopes = toml_edit::Array::new();
    for s in &b.scopes {
        scopes.push(s.as_str());
    }
    t["scopes"] = toml_edit::value(scopes);
    Ok(table_text(t))
}

fn table_text(t: toml_edit::Table) -> String {
    let mut aot = toml_edit::ArrayOfTables::new();
    aot.push(t);
    let mut doc = toml_edit::DocumentMut::new();
    doc.insert("failover", toml_edit::Item::ArrayOfTables(aot));
    doc.to_string()
}

/// The partner's `[[failover]]` table for our relationship `fo` (without its secret file,
/// which the partner names itself).
fn mirrored_table(cfg: &Config, fo: &FailoverSettings) -> String {
    let mut t = toml_edit::Table::new();
    t["name"] = toml_edit::value(fo.name.as_str());
    t["role"] = toml_edit::value(match fo.role {
        Role::Primary => "secondary",
        Role::Secondary => "primary",
    });
    let me = crate::failover::manager::failover_address(cfg, fo);
    t["partner"] = toml_edit::value(me.to_string());
    if fo.listen.port() != crate::config::DEFAULT_FAILOVER_PORT {
        t["partner_port"] = toml_edit::value(i64::from(fo.listen.port()));
    }
    if fo.partner.port() != crate::config::DEFAULT_FAILOVER_PORT {
        t["listen_port"] = toml_edit::value(i64::from(fo.partner.port()));
    }
    t["partner_admin"] = toml_edit::value(own_admin(cfg).to_string());
    t["listen"] = toml_edit::value(fo.partner.ip().to_string());
    for (k, v) in mode_keys(fo.mode, fo.role.other()) {
        if let Some(v) = v {
            t[k] = toml_edit::Item::Value(v);
        }
    }
    t["mclt"] = toml_edit::value(i64::from(fo.mclt_secs));
    if let Some(s) = fo.switchover_secs {
        t["state_switchover_interval"] = toml_edit::value(i64::from(s));
    }
    t["max_clock_skew"] = toml_edit::value(i64::from(fo.max_clock_skew_secs));
    t["max_response_delay"] = toml_edit::value(i64::from(fo.max_response_delay_secs));
    t["startup_wait"] = toml_edit::value(i64::from(fo.startup_secs));
    t["max_unacked_updates"] = toml_edit::value(i64::from(fo.max_unacked_updates));
    t["comm_interrupted_alarm"] = toml_edit::value(i64::from(fo.comm_alarm_secs));
    t["pool_low_water_percent"] = toml_edit::value(i64::from(fo.pool_low_percent));
    let mut scopes = toml_edit::Array::new();
    for s in &fo.scope_names {
        scopes.push(s.as_str());
    }
    t["scopes"] = toml_edit::value(scopes);
    table_text(t)
}

/// The mode keys of a `[[failover]]` table for `role` under `mode` (None: the key is absent).
fn mode_keys(mode: Mode, role: Role) -> [(&'static str, Option<toml_edit::Value>); 4] {
    match mode {
        Mode::LoadBalance { primary_percent } => {
            let mine = if role == Role::Primary {
                primary_percent
            } else {
                100 - primary_percent.min(100)
            };
            [
                ("mode", Some("load-balance".into())),
                ("load_balance_percent", Some(i64::from(mine).into())),
                ("hot_standby_role", None),
                ("reserve_percent", None),
            ]
        }
        Mode::HotStandby {
            active,
            reserve_percent,
        } => [
            ("mode", Some("hot-standby".into())),
            ("load_balance_percent", None),
            (
                "hot_standby_role",
                Some(if active == role { "active" } else { "standby" }.into()),
            ),
            ("reserve_percent", Some(i64::from(reserve_percent).into())),
        ],
    }
}

/// `POST /v1/failover`: create a relationship here and on the partner, replicating its scopes.
/// What `POST /v1/failover` makes of its request body before it touches the configuration:
/// the relationship's name and its `[[failover]]` table text (`secret_file(name)` gives the
/// shared secret file when the body names none), or the message of the 400 answer.
pub fn relationship_table(
    body: &[u8],
    secret_file: impl FnOnce(&str) -> String,
) -> Result<(String, String), String> {
    let b: AddBody = serde_json::from_slice(body).map_err(|e| format!("bad relationship: {e}"))?;
    crate::config::relationship_name(&b.name).map_err(|e| format!("name: {e}"))?;
    let file = b
        .shared_secret_file
        .clone()
        .unwrap_or_else(|| secret_file(&b.name));
    let text = failover_table(&b, &file)?;
    Ok((b.name, text))
}

pub(super) fn add(state: &AdminState, body: &[u8]) -> Resp {
    let b: AddBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return error(400, &format!("bad relationship: {e}")),
    };
    if let Err(e) = crate::config::relationship_name(&b.name) {
        return error(400, &format!("name: {e}"));
    }
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut doc = match load_doc(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if doc.failover_names().contains(&b.name) {
        return error(
            409,
            &format!("a relationship named {:?} exists already", b.name),
        );
    }
    let text = match relationship_table(body, |name| {
        default_secret_path(state, name).display().to_string()
    }) {
        Ok((_, t)) => t,
        Err(e) => return error(400, &e),
    };
    if let Err(e) = doc.put_failover(&text) {
        return error(400, &format!("bad relationship: {e}"));
    }
    let new = match checked(&doc, "adding the relationship") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(fo) = new.failover.iter().find(|f| f.name == b.name) else {
        return error(
            500,
            "the new relationship is missing from the checked configuration",
        );
    };
    let scopes = match scope_texts(&doc, &fo.scope_names) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let op = PeerOp::Add {
        failover: mirrored_table(&new, fo),
        scopes,
    };
    let answer = match send(fo, op) {
        Ok(a) => a,
        Err(e) => return partner_error(&e),
    };
    tracing::info!(relationship = %b.name, partner = %fo.partner, "relationship created on the partner; starting it here");
    if let Err(r) = commit(state, &doc) {
        return r;
    }
    Resp::json(
        201,
        &json!({
            "relationship": status_json(state, &b.name),
            "partner": answer,
        }),
    )
}

// ----- PATCH /v1/failover/{name} -------------------------------------------------------------

/// Our key changes and the partner's (mirrored), from a PATCH body.
type KeyChanges = Vec<(String, Option<toml_edit::Value>)>;

fn patch_changes(fo: &FailoverSettings, body: &Value) -> Result<(KeyChanges, KeyChanges), String> {
    let obj = body
        .as_object()
        .ok_or("the body must be a JSON object of keys to change")?;
    if obj.is_empty() {
        return Err(format!(
            "nothing to change; give some of: {}",
            SET_KEYS.join(", ")
        ));
    }
    let (mut mine, mut theirs): (KeyChanges, KeyChanges) = (Vec::new(), Vec::new());
    for (k, v) in obj {
        if !SET_KEYS.contains(&k.as_str()) {
            return Err(format!(
                "{k:?} cannot be changed this way (changeable: {})",
                SET_KEYS.join(", ")
            ));
        }
        let tv = toml_value(v).map_err(|e| format!("{k}: {e}"))?;
        match k.as_str() {
            "mode" => {
                let m = v
                    .as_str()
                    .ok_or("mode: expected \"load-balance\" or \"hot-standby\"")?;
                let drop: &[&str] = match m {
                    "load-balance" => &["hot_standby_role", "reserve_percent"],
                    "hot-standby" => &["load_balance_percent"],
                    _ => {
                        return Err(format!(
                            "mode: {m:?} is not \"load-balance\" or \"hot-standby\""
                        ))
                    }
                };
                for d in drop {
                    if !obj.contains_key(*d) {
                        mine.push((d.to_string(), None));
                        theirs.push((d.to_string(), None));
                    }
                }
                if m == "hot-standby"
                    && !obj.contains_key("hot_standby_role")
                    && !matches!(fo.mode, Mode::HotStandby { .. })
                {
                    return Err(
                        "switching to hot-standby needs hot_standby_role (\"active\" or \"standby\", this server's part)"
                            .into(),
                    );
                }
                mine.push((k.clone(), tv.clone()));
                theirs.push((k.clone(), tv));
            }
            "load_balance_percent" => {
                let p = v
                    .as_u64()
                    .filter(|p| *p <= 100)
                    .ok_or("load_balance_percent: expected an integer from 0 to 100")?;
                mine.push((k.clone(), tv));
                theirs.push((k.clone(), Some(((100 - p) as i64).into())));
            }
            "hot_standby_role" => {
                let other = match v.as_str() {
                    Some("active") => "standby",
                    Some("standby") => "active",
                    _ => return Err("hot_standby_role: expected \"active\" or \"standby\"".into()),
                };
                mine.push((k.clone(), tv));
                theirs.push((k.clone(), Some(other.into())));
            }
            // The partner's own `partner_admin` points at us, and the files are this server's:
            // ours change here only.
            k if LOCAL_KEYS.contains(&k) => mine.push((k.to_string(), tv)),
            _ => {
                mine.push((k.clone(), tv.clone()));
                theirs.push((k.clone(), tv));
            }
        }
    }
    Ok((mine, theirs))
}

/// `PATCH /v1/failover/{name}`: change keys of a relationship on both servers.
pub(super) fn set(state: &AdminState, name: &str, body: &[u8], force: bool) -> Resp {
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("the body is not JSON: {e}")),
    };
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let Some(old) = state.failover.settings(name) else {
        return error(404, &format!("no failover relationship named {name:?}"));
    };
    let (mine, theirs) = match patch_changes(&old, &body) {
        Ok(c) => c,
        Err(e) => return error(400, &e),
    };
    let mut doc = match load_doc(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    for (k, v) in &mine {
        if let Err(e) = doc.set_failover_key(name, k, v.clone()) {
            return error(400, &format!("{k}: {e}"));
        }
    }
    let new = match checked(&doc, "changing the relationship") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(fo_new) = new.failover.iter().find(|f| f.name == name) else {
        return error(
            500,
            "the relationship is missing from the checked configuration",
        );
    };
    let local_first = share_percent(fo_new.mode, fo_new.role) > share_percent(old.mode, old.role);
    if local_first {
        if let Err(r) = commit(state, &doc) {
            return r;
        }
    }
    // Signed with the secret in force on both servers (the old one when rotating).
    let answer = if theirs.is_empty() {
        Ok(PeerAnswer {
            applied: true,
            message: "nothing to change on the partner".into(),
        })
    } else {
        let keys = theirs
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v.as_ref())))
            .collect();
        send(&old, PeerOp::Set { keys })
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) if force => {
            tracing::warn!(relationship = name, error = %e, "the partner could not make the change; applied here only (forced)");
            PeerAnswer {
                applied: false,
                message: e.to_string(),
            }
        }
        Err(e) => {
            if local_first {
                // Undo ours: the two servers keep agreeing.
                let undone = doc
                    .revert()
                    .map_err(|e| e.to_string())
                    .and_then(|()| (state.reload)().map_err(|e| e.to_string()));
                if let Err(e) = undone {
                    tracing::error!(
                        relationship = name,
                        "the change could not be undone here after the partner refused it: {e}"
                    );
                }
            }
            return partner_error(&e);
        }
    };
    if !local_first {
        if let Err(r) = commit(state, &doc) {
            return r;
        }
    }
    tracing::info!(relationship = name, keys = ?mine.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), "relationship changed");
    Resp::json(
        200,
        &json!({ "relationship": status_json(state, name), "partner": answer }),
    )
}

fn toml_to_json(v: Option<&toml_edit::Value>) -> Value {
    match v {
        None => Value::Null,
        Some(toml_edit::Value::String(s)) => Value::String(s.value().clone()),
        Some(toml_edit::Value::Integer(i)) => json!(*i.value()),
        Some(toml_edit::Value::Boolean(b)) => json!(*b.value()),
        Some(other) => Value::String(other.to_string().trim().to_string()),
    }
}

// ----- DELETE /v1/failover/{name} ------------------------------------------------------------

/// `DELETE /v1/failover/{name}`: remove the relationship on both servers; the partner deletes
/// its copies of the scopes, this server keeps serving them alone.
pub(super) fn remove(state: &AdminState, name: &str, force: bool) -> Resp {
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let Some(old) = state.failover.settings(name) else {
        return error(404, &format!("no failover relationship named {name:?}"));
    };
    let mut doc = match load_doc(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Err(e) = doc.remove_failover(name) {
        return error(500, &format!("{e}"));
    }
    if let Err(r) = checked(&doc, "removing the relationship") {
        return r;
    }
    let answer = match send(&old, PeerOp::Remove { scopes: true }) {
        Ok(a) => a,
        Err(e) if force => {
            tracing::warn!(relationship = name, error = %e, "the partner could not remove the relationship; removed here only (forced): make sure the partner stops serving these scopes");
            PeerAnswer {
                applied: false,
                message: e.to_string(),
            }
        }
        Err(e) => return partner_error(&e),
    };
    if let Err(r) = commit(state, &doc) {
        return r;
    }
    tracing::warn!(relationship = name, scopes = ?old.scope_names, "relationship removed; this server serves its scopes alone");
    Resp::json(200, &json!({ "removed": name, "partner": answer }))
}

// ----- replication ---------------------------------------------------------------------------

fn replicate_one(
    doc: &ConfigDoc,
    fo: &FailoverSettings,
    scope: Option<&str>,
) -> Result<Value, (u16, Value)> {
    let names: Vec<String> = match scope {
        Some(s) => vec![s.to_string()],
        None => fo.scope_names.clone(),
    };
    let scopes = scope_texts(doc, &names)
        .map_err(|r| (r.code, serde_json::from_str(&r.body).unwrap_or(Value::Null)))?;
    match send(fo, PeerOp::Replicate { scopes }) {
        Ok(a) => {
            tracing::info!(relationship = %fo.name, scopes = ?names, "scope settings replicated to the partner");
            Ok(json!({ "relationship": fo.name, "scopes": names, "partner": a }))
        }
        Err(e) => Err((
            partner_status(&e),
            json!({
                "relationship": fo.name,
                "scopes": names,
                "error": e.to_string(),
                "partner_error": e.to_string(),
            }),
        )),
    }
}

/// `POST /v1/failover/{name}/replicate[?scope=S]`.
pub(super) fn replicate(state: &AdminState, name: &str, scope: Option<&str>) -> Resp {
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let Some(fo) = state.failover.settings(name) else {
        return error(404, &format!("no failover relationship named {name:?}"));
    };
    if let Some(s) = scope {
        if !fo.scope_names.iter().any(|n| n == s) {
            return error(
                400,
                &format!(
                    "scope={s:?}: relationship {name} does not share that scope (it shares {})",
                    fo.scope_names.join(", ")
                ),
            );
        }
    }
    let doc = match load_doc(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match replicate_one(&doc, &fo, scope) {
        Ok(v) => Resp::json(200, &v),
        Err((code, v)) => Resp::json(code, &v),
    }
}

/// `POST /v1/failover/replicate[?scope=S]`: every relationship (or the one sharing scope S).
pub(super) fn replicate_all(state: &AdminState, scope: Option<&str>) -> Resp {
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let all = state.failover.all_settings();
    let chosen: Vec<&FailoverSettings> = match scope {
        Some(s) => all
            .iter()
            .filter(|f| f.scope_names.iter().any(|n| n == s))
            .collect(),
        None => all.iter().collect(),
    };
    if chosen.is_empty() {
        return error(
            404,
            &match scope {
                Some(s) => format!("no failover relationship shares scope {s:?}"),
                None => "this server has no failover relationship".to_string(),
            },
        );
    }
    let doc = match load_doc(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut results = Vec::new();
    let mut failed = false;
    for fo in chosen {
        match replicate_one(&doc, fo, scope) {
            Ok(v) => results.push(v),
            Err((_, v)) => {
                failed = true;
                results.push(v);
            }
        }
    }
    let mut body = json!({ "results": results });
    if failed {
        body["error"] = json!("replication to at least one partner failed (see results)");
    }
    Resp::json(if failed { 502 } else { 200 }, &body)
}

// ----- pause / resume ------------------------------------------------------------------------

/// `POST /v1/failover/{name}/pause` and `/resume`.
pub(super) fn pause_resume(state: &AdminState, name: &str, pause: bool) -> Resp {
    let r = if pause {
        state.failover.pause(name)
    } else {
        state.failover.resume(name)
    };
    match r {
        Ok(msg) => Resp::json(200, &json!({ "relationship": name, "message": msg })),
        Err(None) => error(404, &format!("no failover relationship named {name:?}")),
        Err(Some(msg)) => error(409, &msg),
    }
}

// ----- the partner's requests ----------------------------------------------------------------

/// A partner's scope text for this server: `interface` names the partner's own interface, so it
/// is dropped (an existing scope keeps this server's), except for a new scope when this server
/// serves an interface of that name. Also returns the interface kept, if any.
fn localize_scope(
    text: &str,
    ifaces: &[String],
    is_new: bool,
) -> Result<(String, Option<String>), String> {
    let mut d: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("the scope's settings are not TOML: {e}"))?;
    let mut kept = None;
    if let Some(t) = d
        .get_mut("scope")
        .and_then(|s| s.as_array_of_tables_mut())
        .and_then(|a| a.get_mut(0))
    {
        let iface = t
            .get("interface")
            .and_then(|i| i.as_str())
            .map(str::to_string);
        match iface {
            Some(i) if is_new && ifaces.contains(&i) => kept = Some(i),
            Some(_) => {
                t.remove("interface");
            }
            None => {}
        }
    }
    Ok((d.to_string(), kept))
}

fn put_scopes(
    doc: &mut ConfigDoc,
    scopes: &[ScopeText],
    ifaces: &[String],
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let existing = doc.scope_names();
    for s in scopes {
        let is_new = !existing.contains(&s.name);
        let (text, iface) = localize_scope(&s.toml, ifaces, is_new)?;
        let put = doc
            .put_scope(&text, &["interface"])
            .map_err(|e| format!("scope {}: {e}", s.name))?;
        if put.name != s.name {
            return Err(format!(
                "scope {}: the text names scope {}",
                s.name, put.name
            ));
        }
        if is_new && iface.is_none() {
            notes.push(format!(
                "scope {} is new here and serves relayed clients only (set its interface to serve a local link)",
                s.name
            ));
        }
    }
    Ok(notes)
}

/// `POST /v1/peer/{name}`: a partner's signed request.
pub(super) fn receive(state: &AdminState, name: &str, r: &Req) -> Resp {
    if let Err(e) = crate::config::relationship_name(name) {
        return error(400, &format!("relationship name: {e}"));
    }
    let req: PeerRequest = match serde_json::from_slice(&r.body) {
        Ok(q) => q,
        Err(e) => return error(400, &format!("unreadable partner request: {e}")),
    };
    let _guard = state.edit_lock.lock().unwrap_or_else(|e| e.into_inner());
    let current = state.failover.settings(name);
    // The secret: the relationship's, or for a new one the file the operator put in place.
    let (secret, partner_ip, max_skew) = match (&current, &req.op) {
        (Some(_), PeerOp::Add { .. }) => {
            return error(409, &format!("relationship {name} exists on this server already"));
        }
        (Some(fo), _) => match &fo.secret {
            Some(s) => (s.clone(), Some(fo.partner.ip()), u64::from(fo.max_clock_skew_secs)),
            None => {
                return error(
                    403,
                    &format!("relationship {name} has no shared_secret_file here, so its partner's requests cannot be authenticated"),
                )
            }
        },
        (None, PeerOp::Add { .. }) => {
            let path = default_secret_path(state, name);
            match crate::config::read_secret_file(&path) {
                Ok(s) => (s, None, 60),
                Err(e) => {
                    return error(
                        403,
                        &format!("no shared secret for a new relationship {name} here: {e} (copy the secret to {} on this server, mode 600, first)", path.display()),
                    )
                }
            }
        }
        (None, _) => return error(404, &format!("no failover relationship named {name:?}")),
    };
    let path = r.url.split_once('?').map_or(r.url.as_str(), |(p, _)| p);
    {
        let mut nonces = state.peer_nonces.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = peer::verify(
            r.peer_auth.as_deref(),
            &secret,
            "POST",
            path,
            &r.body,
            now_secs(),
            max_skew,
            &mut nonces,
        ) {
            tracing::warn!(relationship = name, remote = ?r.remote, error = %e, "partner request refused");
            return error(401, &format!("partner request refused: {e}"));
        }
    }
    if let (Some(want), Some(got)) = (partner_ip, r.remote) {
        if got.ip() != want {
            tracing::warn!(relationship = name, remote = %got, partner = %want, "partner request from another address refused");
            return error(
                403,
                &format!(
                    "relationship {name}: requests come from its partner {want} only, not {}",
                    got.ip()
                ),
            );
        }
    }
    if req.schema != CONFIG_SCHEMA {
        return error(
            409,
            &format!(
                "configuration schema mismatch: this server (Tandem {}) uses schema {CONFIG_SCHEMA}, the partner (Tandem {}) schema {}; run the same Tandem version on both servers before replicating",
                env!("CARGO_PKG_VERSION"),
                req.version,
                req.schema
            ),
        );
    }
    let mut doc = match load_doc(state) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let ifaces = state
        .config
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .daemon
        .interfaces
        .clone();
    let mut notes = Vec::new();
    let what = match &req.op {
        PeerOp::Replicate { scopes } => {
            let shared = current
                .as_ref()
                .map(|f| f.scope_names.clone())
                .unwrap_or_default();
            if let Some(s) = scopes.iter().find(|s| !shared.contains(&s.name)) {
                return error(
                    403,
                    &format!(
                        "scope {} is not shared by relationship {name} here; refused",
                        s.name
                    ),
                );
            }
            match put_scopes(&mut doc, scopes, &ifaces) {
                Ok(n) => notes = n,
                Err(e) => return error(400, &e),
            }
            format!(
                "scope settings of {} replicated from the partner",
                scopes
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        PeerOp::Add { failover, scopes } => {
            match doc.put_failover(failover) {
                Ok(p) if p.name == name => {}
                Ok(p) => {
                    return error(
                        400,
                        &format!("the relationship text names {}, not {name}", p.name),
                    )
                }
                Err(e) => return error(400, &format!("bad relationship: {e}")),
            }
            let secret_file = default_secret_path(state, name).display().to_string();
            if let Err(e) = doc.set_failover_key(
                name,
                "shared_secret_file",
                Some(secret_file.as_str().into()),
            ) {
                return error(500, &e.to_string());
            }
            match put_scopes(&mut doc, scopes, &ifaces) {
                Ok(n) => notes = n,
                Err(e) => return error(400, &e),
            }
            format!(
                "relationship {name} created with scopes {}",
                scopes
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        PeerOp::Set { keys } => {
            for (k, v) in keys {
                if !SET_KEYS.contains(&k.as_str()) || LOCAL_KEYS.contains(&k.as_str()) {
                    return error(400, &format!("{k:?} cannot be changed by the partner"));
                }
                let tv = match toml_value(v) {
                    Ok(t) => t,
                    Err(e) => return error(400, &format!("{k}: {e}")),
                };
                if let Err(e) = doc.set_failover_key(name, k, tv) {
                    return error(400, &format!("{k}: {e}"));
                }
            }
            format!(
                "relationship {name} changed: {}",
                keys.iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        PeerOp::Remove { scopes } => {
            if let Err(e) = doc.remove_failover(name) {
                return error(500, &e.to_string());
            }
            let names = current
                .as_ref()
                .map(|f| f.scope_names.clone())
                .unwrap_or_default();
            if *scopes {
                for s in &names {
                    if let Err(e) = doc.remove_scope(s) {
                        return error(500, &e.to_string());
                    }
                }
            }
            format!(
                "relationship {name} removed{}",
                if *scopes {
                    format!(" with scopes {}", names.join(", "))
                } else {
                    String::new()
                }
            )
        }
    };
    if let Err(r) = checked(&doc, "the partner's change") {
        return r;
    }
    if let Err(r) = commit(state, &doc) {
        return r;
    }
    tracing::info!(relationship = name, remote = ?r.remote, "{what}");
    let mut message = what;
    for n in notes {
        message.push_str("; ");
        message.push_str(&n);
    }
    Resp::json(
        200,
        &json!(PeerAnswer {
            applied: true,
            message
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(primary_percent: u8, role: Role) -> FailoverSettings {
        let cfg = crate::config::parse(
            &format!(
                r#"
[server]
server_id = "10.0.0.2"
interfaces = ["eth0"]
[[scope]]
name = "lan"
subnet = "10.0.0.0/24"
ranges = ["10.0.0.10-10.0.0.20"]
[[failover]]
name = "pair"
role = "{}"
partner = "10.0.0.3"
load_balance_percent = {}
scopes = ["lan"]
"#,
                if role == Role::Primary {
                    "primary"
                } else {
                    "secondary"
                },
                if role == Role::Primary {
                    primary_percent
                } else {
                    100 - primary_percent
                }
            ),
            "t.toml",
        )
        .expect("valid");
        cfg.failover[0].clone()
    }

    fn share_of(fo: &FailoverSettings) -> u8 {
        share_percent(fo.mode, fo.role)
    }

    fn shown(c: &KeyChanges) -> Vec<(String, Option<String>)> {
        c.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().map(|v| v.to_string().trim().to_string()),
                )
            })
            .collect()
    }

    fn kv(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn patch_mirrors_the_split_and_the_standby_role() {
        let fo = lb(50, Role::Primary);
        let (mine, theirs) =
            patch_changes(&fo, &json!({"load_balance_percent": 70})).expect("valid change");
        assert_eq!(shown(&mine), vec![kv("load_balance_percent", Some("70"))]);
        assert_eq!(shown(&theirs), vec![kv("load_balance_percent", Some("30"))]);
        let (mine, theirs) = patch_changes(
            &fo,
            &json!({"mode": "hot-standby", "hot_standby_role": "active", "reserve_percent": 10}),
        )
        .expect("valid change");
        let mine = shown(&mine);
        let theirs = shown(&theirs);
        assert!(mine.contains(&kv("load_balance_percent", None)), "{mine:?}");
        assert!(
            mine.contains(&kv("hot_standby_role", Some("\"active\""))),
            "{mine:?}"
        );
        assert!(
            theirs.contains(&kv("hot_standby_role", Some("\"standby\""))),
            "{theirs:?}"
        );
        assert!(
            theirs.contains(&kv("reserve_percent", Some("10"))),
            "{theirs:?}"
        );
        assert!(
            theirs.contains(&kv("mode", Some("\"hot-standby\""))),
            "{theirs:?}"
        );
    }

    #[test]
    fn partner_admin_keys_change_here_only() {
        let fo = lb(50, Role::Primary);
        let (mine, theirs) = patch_changes(
            &fo,
            &json!({"partner_admin_tls": "required", "partner_admin_ca_file": "/etc/tandem/ca.pem"}),
        )
        .expect("valid change");
        let mine = shown(&mine);
        assert!(
            mine.contains(&kv("partner_admin_tls", Some("\"required\""))),
            "{mine:?}"
        );
        assert!(
            mine.contains(&kv("partner_admin_ca_file", Some("\"/etc/tandem/ca.pem\""))),
            "{mine:?}"
        );
        assert!(theirs.is_empty(), "{:?}", shown(&theirs));
    }

    #[test]
    fn a_new_relationship_may_reach_the_partner_over_https() {
        let body = json!({
            "name": "pair",
            "partner": "10.0.0.3",
            "scopes": ["lan"],
            "partner_admin": "https://10.0.0.3:9443",
            "partner_admin_ca_file": "/etc/tandem/ca.pem",
            "partner_admin_name": "dhcp2.example.net",
        });
        let (name, text) = relationship_table(body.to_string().as_bytes(), |n| {
            format!("/etc/tandem/{n}.secret")
        })
        .expect("valid");
        assert_eq!(name, "pair");
        let d: toml_edit::DocumentMut = text.parse().expect("TOML");
        let t = &d["failover"][0];
        assert_eq!(t["partner_admin"].as_str(), Some("https://10.0.0.3:9443"));
        assert_eq!(
            t["partner_admin_ca_file"].as_str(),
            Some("/etc/tandem/ca.pem")
        );
        assert_eq!(t["partner_admin_name"].as_str(), Some("dhcp2.example.net"));
        assert!(t.get("partner_admin_cert_file").is_none());
    }

    #[test]
    fn patch_refuses_what_it_cannot_change() {
        let fo = lb(50, Role::Primary);
        for (body, needle) in [
            (json!({}), "nothing to change"),
            (json!({"role": "secondary"}), "cannot be changed"),
            (json!({"mode": "hot-standby"}), "hot_standby_role"),
            (json!({"mode": "round-robin"}), "round-robin"),
            (json!({"load_balance_percent": 101}), "0 to 100"),
            (json!({"hot_standby_role": "idle"}), "active"),
            (json!([1]), "JSON object"),
        ] {
            let e = patch_changes(&fo, &body).expect_err("refused");
            assert!(e.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn the_gaining_server_applies_first() {
        assert_eq!(share_of(&lb(50, Role::Primary)), 50);
        assert_eq!(share_of(&lb(70, Role::Secondary)), 30);
        let mut hs = lb(50, Role::Secondary);
        hs.mode = Mode::HotStandby {
            active: Role::Primary,
            reserve_percent: 5,
        };
        assert_eq!(share_of(&hs), 5);
        hs.role = Role::Primary;
        assert_eq!(share_of(&hs), 95);
    }

    #[test]
    fn mirrored_table_is_the_partner_side() {
        let cfg = crate::config::parse(
            r#"
[server]
server_id = "10.0.0.2"
interfaces = ["eth0"]
admin_listen = "127.0.0.1:9167"
[[scope]]
name = "lan"
subnet = "10.0.0.0/24"
ranges = ["10.0.0.10-10.0.0.20"]
[[failover]]
name = "pair"
role = "primary"
partner = "10.0.0.3"
load_balance_percent = 70
mclt = "10m"
scopes = ["lan"]
"#,
            "t.toml",
        )
        .expect("valid");
        let text = mirrored_table(&cfg, &cfg.failover[0]);
        let d: toml_edit::DocumentMut = text.parse().expect("TOML");
        let t = &d["failover"][0];
        assert_eq!(t["role"].as_str(), Some("secondary"));
        assert_eq!(t["partner"].as_str(), Some("10.0.0.2"));
        assert_eq!(t["listen"].as_str(), Some("10.0.0.3"));
        assert_eq!(t["partner_admin"].as_str(), Some("10.0.0.2:9167"));
        assert_eq!(t["load_balance_percent"].as_integer(), Some(30));
        assert_eq!(t["mclt"].as_integer(), Some(600));
        assert!(t.get("hot_standby_role").is_none());
    }

    #[test]
    fn scope_interfaces_stay_local() {
        let text = "[[scope]]\nname = \"lan\"\ninterface = \"eth9\"\nsubnet = \"10.0.0.0/24\"\n";
        let (out, iface) = localize_scope(text, &["eth0".into()], true).expect("TOML");
        assert!(!out.contains("interface"), "{out}");
        assert_eq!(iface, None);
        let (out, iface) = localize_scope(text, &["eth9".into()], true).expect("TOML");
        assert_eq!(iface.as_deref(), Some("eth9"));
        assert!(out.contains("interface = \"eth9\""), "{out}");
        let (out, _) = localize_scope(text, &["eth9".into()], false).expect("TOML");
        assert!(!out.contains("interface"), "{out}");
    }
}
