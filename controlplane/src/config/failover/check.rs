//! The checks of the relationships against each other, the scopes and `[server]`, and the
//! settings they build (called by `validate` once every table was read).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::config::schema::{ScopeDraft, ServerDraft};

fn label(d: &FailoverDraft) -> String {
    match &d.name {
        Some(n) => format!("failover relationship {}", reader::quoted(&n.v)),
        None => d.path.clone(),
    }
}

/// Check the relationships against each other, the scopes and `[server]`, and build them (the
/// result is complete only when no error was recorded).
pub(crate) fn build(
    ctx: &mut Ctx<'_>,
    drafts: &[FailoverDraft],
    scopes: &[ScopeDraft],
    server: Option<&ServerDraft>,
) -> Vec<FailoverSettings> {
    reader::report_duplicate_names(
        ctx,
        drafts.iter().filter_map(|d| d.name.as_ref()),
        "failover relationship name",
        "",
    );
    let scope_index = check_scopes(ctx, drafts, scopes);
    check_partners(ctx, drafts, server);
    check_listeners(ctx, drafts, server);
    let mut out = Vec::with_capacity(drafts.len());
    for (d, scopes) in drafts.iter().zip(scope_index) {
        let Some(settings) = settings_of(d, scopes) else {
            continue;
        };
        if d.clean {
            check_peer_rules(ctx, d, &settings);
        }
        out.push(settings);
    }
    out
}

/// The settings of a relationship whose required keys were all read.
fn settings_of(d: &FailoverDraft, scopes: Vec<usize>) -> Option<FailoverSettings> {
    Some(FailoverSettings {
        name: d.name.as_ref()?.v.clone(),
        role: d.role?,
        mode: d.mode?,
        partner: d.partner.as_ref()?.v,
        listen: d.listen.v,
        mclt_secs: d.mclt_secs,
        switchover_secs: d.switchover.as_ref().map(|s| s.v),
        secret: d.secret.clone(),
        tls: d.tls.clone(),
        scope_names: d.scopes.iter().map(|s| s.v.clone()).collect(),
        scopes,
        max_clock_skew_secs: d.max_clock_skew_secs,
        max_response_delay_secs: d.max_response_delay_secs,
        startup_secs: d.startup_secs,
        max_unacked_updates: d.max_unacked_updates,
        partner_admin: match d.partner_admin {
            Some(a) => a,
            None => SocketAddr::from((d.partner.as_ref()?.v.ip(), DEFAULT_ADMIN_PORT)),
        },
        partner_admin_tls: d.partner_admin_tls.clone(),
        comm_alarm_secs: d.comm_alarm_secs,
        pool_low_percent: d.pool_low_percent,
    })
}

/// Every listed scope exists and belongs to one relationship only; per relationship, the
/// indices of its scopes.
fn check_scopes(
    ctx: &mut Ctx<'_>,
    drafts: &[FailoverDraft],
    scopes: &[ScopeDraft],
) -> Vec<Vec<usize>> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, s) in scopes.iter().enumerate() {
        if let Some(n) = &s.name {
            by_name.entry(n.v.as_str()).or_insert(i);
        }
    }
    let known = || {
        let mut names: Vec<String> = scopes
            .iter()
            .filter_map(|s| s.name.as_ref().map(|n| reader::quoted(&n.v)))
            .collect();
        names.dedup();
        names.join(", ")
    };
    // Scope index -> (relationship, where it was listed).
    let mut claimed: HashMap<usize, (&FailoverDraft, usize)> = HashMap::new();
    let mut out = Vec::with_capacity(drafts.len());
    for d in drafts {
        let mut mine = Vec::with_capacity(d.scopes.len());
        for s in &d.scopes {
            let Some(&i) = by_name.get(s.v.as_str()) else {
                let m = if scopes.is_empty() {
                    format!(
                        "no scope named {}; the file has no scopes",
                        reader::quoted(&s.v)
                    )
                } else {
                    format!(
                        "no scope named {}; scopes are: {}",
                        reader::quoted(&s.v),
                        known()
                    )
                };
                ctx.error(s.span.clone(), s.key.clone(), m);
                continue;
            };
            if let Some((other, at)) = claimed.get(&i) {
                let line = ctx.line_of(*at);
                ctx.error(
                    s.span.clone(),
                    s.key.clone(),
                    format!(
                        "scope {} is in {} (line {line}) and in {}; a scope belongs to at most one \
                         relationship",
                        reader::quoted(&s.v),
                        label(other),
                        label(d)
                    ),
                );
                continue;
            }
            claimed.insert(i, (d, s.span.start));
            mine.push(i);
        }
        out.push(mine);
    }
    out
}

/// Partner addresses are unique, and no partner is this server itself.
fn check_partners(ctx: &mut Ctx<'_>, drafts: &[FailoverDraft], server: Option<&ServerDraft>) {
    let server_id = server.and_then(|s| s.server_id.as_ref()).map(|a| a.v);
    let mut seen: HashMap<IpAddr, (&FailoverDraft, usize)> = HashMap::new();
    for d in drafts {
        let Some(p) = &d.partner else { continue };
        let ip = p.v.ip();
        let listen_ip = d.listen.v.ip();
        if p.v.port() == d.listen.v.port()
            && (Some(ip) == server_id.map(IpAddr::V4)
                || ip == listen_ip
                || (ip.is_loopback() && listen_ip.is_unspecified()))
        {
            let whose = if ip == listen_ip || ip.is_loopback() {
                format!("this relationship's own listen {}", d.listen.v)
            } else {
                format!("server.server_id with listen_port {}", d.listen.v.port())
            };
            ctx.error(
                p.span.clone(),
                p.key.clone(),
                format!(
                    "partner {} is this server itself ({whose}); give the other server's address",
                    p.v
                ),
            );
        }
        if let Some((other, at)) = seen.get(&ip) {
            let line = ctx.line_of(*at);
            ctx.error(
                p.span.clone(),
                p.key.clone(),
                format!(
                    "partner {ip} is already the partner of {} (line {line}); relationships \
                     sharing a listener are told apart by the partner's address, so each needs \
                     its own partner",
                    label(other)
                ),
            );
        } else {
            seen.insert(ip, (d, p.span.start));
        }
    }
}

fn default_note(d: &FailoverDraft) -> &'static str {
    if d.listen_default {
        " (the default)"
    } else {
        ""
    }
}

/// Relationships on one port share one listener address; no listener takes the admin
/// endpoint's port.
fn check_listeners(ctx: &mut Ctx<'_>, drafts: &[FailoverDraft], server: Option<&ServerDraft>) {
    for (k, d) in drafts.iter().enumerate() {
        let l = d.listen.v;
        let clash = drafts[..k].iter().find(|e| {
            let m = e.listen.v;
            m.port() == l.port()
                && m.ip() != l.ip()
                && (m.ip().is_unspecified() || l.ip().is_unspecified())
        });
        if let Some(e) = clash {
            let line = ctx.line_of(e.listen.span.start);
            ctx.error(
                d.listen.span.clone(),
                d.listen.key.clone(),
                format!(
                    "listen {l}{} conflicts with listen {}{} of {} (line {line}); relationships \
                     on one port share its listener, so give them the same listen address",
                    default_note(d),
                    e.listen.v,
                    default_note(e),
                    label(e)
                ),
            );
        }
        let Some(admin) = server.map(|s| s.admin_listen) else {
            continue;
        };
        let overlaps = match admin.ip() {
            IpAddr::V4(a) => {
                a.is_unspecified() || l.ip().is_unspecified() || IpAddr::V4(a) == l.ip()
            }
            IpAddr::V6(a) => a.is_unspecified(),
        };
        if admin.port() == l.port() && overlaps {
            ctx.error(
                d.listen.span.clone(),
                d.listen.key.clone(),
                format!(
                    "listen {l}{} takes the port of server.admin_listen {admin}; use another \
                     listen_port (the failover port is 647)",
                    default_note(d)
                ),
            );
        }
    }
}

/// The state machine's own rules ([`PeerConfig::validate`]), for a relationship read without
/// mistakes.
fn check_peer_rules(ctx: &mut Ctx<'_>, d: &FailoverDraft, settings: &FailoverSettings) {
    match settings.peer_config().validate() {
        Ok(()) => {}
        Err(PeerConfigError::SwitchoverTooShort { secs, min }) => {
            // Only a configured interval can be too short.
            let (span, key) = d.switchover.as_ref().map_or(
                (
                    d.header.clone(),
                    reader::join(&d.path, "state_switchover_interval"),
                ),
                |s| (s.span.clone(), s.key.clone()),
            );
            ctx.error(
                span,
                key,
                format!(
                    "{} is too short: it must be at least {} (max_response_delay {} + 2 x \
                     (max_clock_skew {} + 1s)), or the split-brain fence could act while the \
                     link is still up",
                    show_duration(u64::from(secs)),
                    show_duration(u64::from(min)),
                    show_duration(u64::from(d.max_response_delay_secs)),
                    show_duration(u64::from(d.max_clock_skew_secs)),
                ),
            );
        }
        Err(e) => ctx.error(d.header.clone(), d.path.clone(), e.to_string()),
    }
}
