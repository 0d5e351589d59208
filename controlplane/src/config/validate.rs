//! Checks across values (containment, overlaps, duplicates, T1/T2 ordering) and the assembly of
//! the validated [`Config`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use tandem_dataplane::scope::{
    AddrRange, Policy, Reservation, ReservationKey, Scope, ServerSettings, Subnet,
};

use super::reader::{self, report_duplicate_names, At, Ctx};
use super::schema::{Draft, PolicyDraft, ScopeDraft, ServerDraft};
use super::values::{show_duration, show_range};
use super::{Config, DaemonSettings};

/// Lease time of a scope that sets none: one day.
pub(crate) const DEFAULT_LEASE_SECS: u32 = 86_400;

/// One range taking part in an overlap sweep.
struct Swept<'a> {
    range: AddrRange,
    /// Index of the owner (scope, or policy within a scope).
    owner: usize,
    at: &'a At<AddrRange>,
}

/// Call `report(later, earlier)` for every pair of overlapping ranges; "later" is the one written
/// later in the file.
fn sweep<'a>(mut items: Vec<Swept<'a>>, mut report: impl FnMut(&Swept<'a>, &Swept<'a>)) {
    items.sort_by_key(|s| (s.range.start, s.at.span.start));
    let mut active: Vec<usize> = Vec::new();
    for i in 0..items.len() {
        let start = items[i].range.start;
        active.retain(|&a| items[a].range.end >= start);
        for &a in &active {
            let (x, y) = (&items[a], &items[i]);
            if x.at.span.start > y.at.span.start {
                report(x, y);
            } else {
                report(y, x);
            }
        }
        active.push(i);
    }
}

/// Why `r` (an exclusion or policy range) is not inside the scope's ranges `cover`, if it is not.
fn outside_pool(what: &str, r: &AddrRange, cover: &[AddrRange]) -> Option<String> {
    let a = uncovered(r, cover)?;
    Some(if r.start == r.end {
        format!("{what} {} is not inside the scope's ranges", r.start)
    } else {
        format!(
            "{what} {} is not inside the scope's ranges ({a} is in none of them)",
            show_range(r)
        )
    })
}

/// The first address of `r` outside every range of `cover`, if any.
fn uncovered(r: &AddrRange, cover: &[AddrRange]) -> Option<Ipv4Addr> {
    let mut sorted: Vec<AddrRange> = cover.to_vec();
    sorted.sort();
    let mut cursor = u32::from(r.start);
    let end = u32::from(r.end);
    loop {
        let c = Ipv4Addr::from(cursor);
        let Some(hit) = sorted
            .iter()
            .filter(|x| x.contains(c))
            .map(|x| u32::from(x.end))
            .max()
        else {
            return Some(c);
        };
        if hit >= end {
            return None;
        }
        cursor = hit + 1; // hit < end <= u32::MAX, no overflow
    }
}

fn subnet_str(s: &Subnet) -> String {
    format!("{}/{}", s.network, s.prefix)
}

fn subnet_range(s: &Subnet) -> AddrRange {
    AddrRange::new(s.network, s.broadcast())
}

fn scope_label(s: &ScopeDraft) -> String {
    match &s.name {
        Some(n) => format!("scope {}", reader::quoted(&n.v)),
        None => s.path.clone(),
    }
}

/// Validate the draft and build the configuration (None if anything is wrong; errors in `ctx`).
pub(crate) fn build(ctx: &mut Ctx<'_>, draft: Draft) -> Option<Config> {
    let Draft {
        server,
        global_options,
        scopes,
        dataplane,
        failover,
        ddns,
    } = draft;
    for s in &scopes {
        check_scope(ctx, s, server.as_ref());
    }
    unique_scope_names(ctx, &scopes);
    subnets_disjoint(ctx, &scopes);
    ranges_disjoint(ctx, &scopes);
    let failover = super::failover::check::build(ctx, &failover, &scopes, server.as_ref());
    let ddns = super::ddns::build(ctx, ddns, &scopes);
    let server = server?;
    if !ctx.errors.is_empty() {
        return None;
    }
    let server_id = server.server_id.as_ref()?.v;
    let scope_interfaces = scopes
        .iter()
        .map(|s| s.interface.as_ref().map(|i| i.v.clone()))
        .collect();
    let mut built = Vec::with_capacity(scopes.len());
    for s in scopes {
        built.push(finish_scope(s)?);
    }
    super::ddns::apply(&mut built, &ddns);
    let ServerDraft {
        interfaces,
        state_dir,
        durability,
        admin_listen,
        admin_token_file,
        admin_readonly_token_file,
        admin_tls,
        server_port,
        client_port,
        workers,
        batch_size,
        log_format,
        compact_after_records,
        offer_hold_secs,
        decline_probation_secs,
        duplicate_window_ms,
        hardening,
        ..
    } = server;
    Some(Config {
        settings: ServerSettings {
            server_id,
            global_options,
            scopes: built,
            offer_hold_secs,
            decline_probation_secs,
            duplicate_window_ms,
        },
        daemon: DaemonSettings {
            state_dir,
            durability,
            admin_listen,
            admin_token_file,
            admin_readonly_token_file,
            admin_tls,
            interfaces: interfaces.into_iter().map(|i| i.v).collect(),
            server_port,
            client_port,
            workers,
            batch_size,
            log_format,
            compact_after_records,
            hardening,
        },
        scope_interfaces,
        dataplane,
        failover,
        ddns: ddns.into_iter().map(|(_, _, d)| d).collect(),
    })
}

fn unique_scope_names(ctx: &mut Ctx<'_>, scopes: &[ScopeDraft]) {
    report_duplicate_names(
        ctx,
        scopes.iter().filter_map(|s| s.name.as_ref()),
        "scope name",
        "",
    );
}

fn subnets_disjoint(ctx: &mut Ctx<'_>, scopes: &[ScopeDraft]) {
    let items = scopes
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.subnet.as_ref().map(|sub| (i, sub)))
        .collect::<Vec<_>>();
    // Subnets are swept as the ranges they cover.
    let covers: Vec<At<AddrRange>> = items
        .iter()
        .map(|(_, sub)| At::new(subnet_range(&sub.v), sub.span.clone(), sub.key.clone()))
        .collect();
    let swept = items
        .iter()
        .zip(&covers)
        .map(|((i, _), at)| Swept {
            range: at.v,
            owner: *i,
            at,
        })
        .collect();
    let mut found = Vec::new();
    sweep(swept, |later, earlier| {
        found.push((later.owner, earlier.owner));
    });
    for (l, e) in found {
        let (later, earlier) = (&scopes[l], &scopes[e]);
        // Both subnets exist: only scopes with a subnet were swept.
        let (Some(ls), Some(es)) = (&later.subnet, &earlier.subnet) else {
            continue;
        };
        let line = ctx.line_of(es.span.start);
        ctx.error(
            ls.span.clone(),
            ls.key.clone(),
            format!(
                "subnet {} overlaps subnet {} of {} (line {line}); subnets of different scopes must not overlap",
                subnet_str(&ls.v),
                subnet_str(&es.v),
                scope_label(earlier)
            ),
        );
    }
}

fn ranges_disjoint(ctx: &mut Ctx<'_>, scopes: &[ScopeDraft]) {
    let swept = scopes
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.ranges.iter().map(move |at| Swept {
                range: at.v,
                owner: i,
                at,
            })
        })
        .collect();
    let mut found: Vec<(&At<AddrRange>, &At<AddrRange>, usize, usize)> = Vec::new();
    sweep(swept, |later, earlier| {
        found.push((later.at, earlier.at, later.owner, earlier.owner));
    });
    for (later, earlier, lo, eo) in found {
        let line = ctx.line_of(earlier.span.start);
        let whose = if lo == eo {
            String::new()
        } else {
            format!(" of {}", scope_label(&scopes[eo]))
        };
        ctx.error(
            later.span.clone(),
            later.key.clone(),
            format!(
                "range {} overlaps range {}{whose} (line {line})",
                show_range(&later.v),
                show_range(&earlier.v)
            ),
        );
    }
}

fn check_scope(ctx: &mut Ctx<'_>, s: &ScopeDraft, server: Option<&ServerDraft>) {
    let server_id = server.and_then(|d| d.server_id.as_ref()).map(|a| a.v);
    if let Some(sub) = &s.subnet {
        let subnet = sub.v;
        for r in &s.ranges {
            range_in_subnet(ctx, r, &subnet, "range");
        }
    }
    let pool: Vec<AddrRange> = s.ranges.iter().map(|r| r.v).collect();
    if let Some(id) = server_id {
        for r in &s.ranges {
            if r.v.contains(id) && !s.exclusions.iter().any(|x| x.v.contains(id)) {
                ctx.error(
                    r.span.clone(),
                    r.key.clone(),
                    format!(
                        "range {} contains this server's server_id {id}; exclude it or shrink the range",
                        show_range(&r.v)
                    ),
                );
            }
        }
    }
    // Exclusions: inside the ranges, not overlapping one another.
    for x in &s.exclusions {
        if let Some(m) = outside_pool("exclusion", &x.v, &pool) {
            ctx.error(x.span.clone(), x.key.clone(), m);
        }
    }
    let swept = s
        .exclusions
        .iter()
        .map(|at| Swept {
            range: at.v,
            owner: 0,
            at,
        })
        .collect();
    let mut found = Vec::new();
    sweep(swept, |later, earlier| found.push((later.at, earlier.at)));
    for (later, earlier) in found {
        let line = ctx.line_of(earlier.span.start);
        ctx.error(
            later.span.clone(),
            later.key.clone(),
            format!(
                "exclusion {} overlaps exclusion {} (line {line})",
                show_range(&later.v),
                show_range(&earlier.v)
            ),
        );
    }
    check_reservations(ctx, s, server_id);
    let lease = s.lease_time.as_ref().map_or(DEFAULT_LEASE_SECS, |l| l.v);
    check_times(ctx, s, lease);
    check_policies(ctx, s, &pool);
    if let (Some(i), Some(server)) = (&s.interface, server) {
        if !server.interfaces.is_empty() && !server.interfaces.iter().any(|x| x.v == i.v) {
            let listed: Vec<&str> = server.interfaces.iter().map(|x| x.v.as_str()).collect();
            ctx.error(
                i.span.clone(),
                i.key.clone(),
                format!(
                    "interface `{}` is not in server.interfaces ({}); the server does not listen on it",
                    i.v,
                    listed.join(", ")
                ),
            );
        }
    }
}

/// `r` inside `subnet`, and holding neither its network nor its broadcast address.
fn range_in_subnet(ctx: &mut Ctx<'_>, r: &At<AddrRange>, subnet: &Subnet, what: &str) {
    let shown = show_range(&r.v);
    let sub = subnet_str(subnet);
    let (a, b) = (subnet.contains(r.v.start), subnet.contains(r.v.end));
    let message = if !a && !b && !r.v.contains(subnet.network) {
        Some(format!("{what} {shown} is outside subnet {sub}"))
    } else if !a || !b {
        Some(format!(
            "{what} {shown} extends beyond subnet {sub} ({} to {})",
            subnet.network,
            subnet.broadcast()
        ))
    } else if subnet.prefix <= 30 && r.v.contains(subnet.network) {
        Some(format!(
            "{what} {shown} includes the network address {} of {sub}",
            subnet.network
        ))
    } else if subnet.prefix <= 30 && r.v.contains(subnet.broadcast()) {
        Some(format!(
            "{what} {shown} includes the broadcast address {} of {sub}",
            subnet.broadcast()
        ))
    } else {
        None
    };
    if let Some(m) = message {
        ctx.error(r.span.clone(), r.key.clone(), m);
    }
}

fn check_reservations(ctx: &mut Ctx<'_>, s: &ScopeDraft, server_id: Option<Ipv4Addr>) {
    let mut by_addr: HashMap<Ipv4Addr, (&str, usize)> = HashMap::new();
    let mut by_client: HashMap<&ReservationKey, (&str, usize)> = HashMap::new();
    for r in &s.reservations {
        if let Some(a) = &r.address {
            let addr = a.v;
            if let Some(sub) = &s.subnet {
                let subnet = sub.v;
                let m = if !subnet.contains(addr) {
                    Some(format!("{addr} is outside subnet {}", subnet_str(&subnet)))
                } else if subnet.prefix <= 30 && addr == subnet.network {
                    Some(format!(
                        "{addr} is the network address of {}",
                        subnet_str(&subnet)
                    ))
                } else if subnet.prefix <= 30 && addr == subnet.broadcast() {
                    Some(format!(
                        "{addr} is the broadcast address of {}",
                        subnet_str(&subnet)
                    ))
                } else {
                    None
                };
                if let Some(m) = m {
                    ctx.error(a.span.clone(), a.key.clone(), m);
                }
            }
            if server_id == Some(addr) {
                ctx.error(
                    a.span.clone(),
                    a.key.clone(),
                    format!("{addr} is this server's server_id"),
                );
            }
            if let Some((key, at)) = by_addr.get(&addr) {
                let line = ctx.line_of(*at);
                ctx.error(
                    a.span.clone(),
                    a.key.clone(),
                    format!("{addr} is already reserved by {key} (line {line})"),
                );
            } else {
                by_addr.insert(addr, (&r.path, a.span.start));
            }
        }
        if let Some(c) = &r.client {
            if let Some((key, at)) = by_client.get(&c.v) {
                let line = ctx.line_of(*at);
                let who = match &c.v {
                    ReservationKey::Mac(_) => "MAC address",
                    ReservationKey::ClientId(_) => "client identifier",
                };
                ctx.error(
                    c.span.clone(),
                    c.key.clone(),
                    format!(
                        "this {who} already has a reservation in this scope: {key} (line {line})"
                    ),
                );
            } else {
                by_client.insert(&c.v, (&r.path, c.span.start));
            }
        }
    }
}

fn check_times(ctx: &mut Ctx<'_>, s: &ScopeDraft, lease: u32) {
    let lease = u64::from(lease);
    let t2_default = lease * 7 / 8;
    let t2 = s
        .rebind_time
        .as_ref()
        .map_or(t2_default, |b| u64::from(b.v));
    if let Some(r) = &s.renew_time {
        if u64::from(r.v) >= t2 {
            let t2_desc = match &s.rebind_time {
                Some(_) => format!("rebind_time (T2) {}", show_duration(t2)),
                None => format!(
                    "the default rebind_time (T2, 7/8 of the lease time) {}",
                    show_duration(t2)
                ),
            };
            ctx.error(
                r.span.clone(),
                r.key.clone(),
                format!(
                    "renew_time (T1) {} must be shorter than {t2_desc}",
                    show_duration(u64::from(r.v))
                ),
            );
        }
    }
    if let Some(b) = &s.rebind_time {
        if u64::from(b.v) >= lease {
            let lease_desc = if s.lease_time.is_some() {
                "lease_time"
            } else {
                "the default lease_time"
            };
            ctx.error(
                b.span.clone(),
                b.key.clone(),
                format!(
                    "rebind_time (T2) {} must be shorter than {lease_desc} {}",
                    show_duration(u64::from(b.v)),
                    show_duration(lease)
                ),
            );
        }
    }
}

fn check_policies(ctx: &mut Ctx<'_>, s: &ScopeDraft, pool: &[AddrRange]) {
    let ps = &s.policies;
    // Names unique within the scope.
    report_duplicate_names(
        ctx,
        ps.iter().filter_map(|p| p.name.as_ref()),
        "policy name",
        " in this scope",
    );
    // Orders: every policy has one, or none has; no two alike.
    let with_order = ps.iter().filter(|p| p.order.is_some()).count();
    if with_order > 0 && with_order < ps.len() {
        for p in ps.iter().filter(|p| p.order.is_none()) {
            ctx.error(
                p.header.clone(),
                reader::join(&p.path, "order"),
                "missing `order` while other policies of this scope have one: give every policy an order, or none (file order)",
            );
        }
    }
    let mut orders: HashMap<u32, (&PolicyDraft, usize)> = HashMap::new();
    for p in ps {
        let Some(o) = &p.order else { continue };
        if let Some((first, at)) = orders.get(&o.v) {
            let line = ctx.line_of(*at);
            ctx.error(
                o.span.clone(),
                o.key.clone(),
                format!(
                    "order {} is already used by {} (line {line})",
                    o.v,
                    policy_label(first)
                ),
            );
        } else {
            orders.insert(o.v, (p, o.span.start));
        }
    }
    // Ranges: inside the scope's ranges (and subnet), disjoint across the scope's policies.
    for p in ps {
        for r in &p.ranges {
            if let Some(m) = outside_pool("policy range", &r.v, pool) {
                ctx.error(r.span.clone(), r.key.clone(), m);
            }
        }
    }
    let swept = ps
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            p.ranges.iter().map(move |at| Swept {
                range: at.v,
                owner: i,
                at,
            })
        })
        .collect();
    let mut found = Vec::new();
    sweep(swept, |later, earlier| {
        found.push((later.at, earlier.at, later.owner, earlier.owner))
    });
    for (later, earlier, lo, eo) in found {
        let line = ctx.line_of(earlier.span.start);
        let whose = if lo == eo {
            String::new()
        } else {
            format!(" of {}", policy_label(&ps[eo]))
        };
        ctx.error(
            later.span.clone(),
            later.key.clone(),
            format!(
                "range {} overlaps range {}{whose} (line {line})",
                show_range(&later.v),
                show_range(&earlier.v)
            ),
        );
    }
    // Lease times: the scope's explicit T1/T2 apply to policy leases too.
    let explicit = [
        s.renew_time.as_ref().map(|r| ("renew_time (T1)", r.v)),
        s.rebind_time.as_ref().map(|r| ("rebind_time (T2)", r.v)),
    ];
    let longest = explicit.iter().flatten().max_by_key(|(_, v)| *v);
    if let Some((what, t)) = longest {
        for p in ps {
            let Some(l) = &p.lease_time else { continue };
            if l.v <= *t {
                ctx.error(
                    l.span.clone(),
                    l.key.clone(),
                    format!(
                        "lease_time {} is not longer than the scope's {what} {}; T1 < T2 < lease time must hold for this policy's leases too",
                        show_duration(u64::from(l.v)),
                        show_duration(u64::from(*t))
                    ),
                );
            }
        }
    }
}

fn policy_label(p: &PolicyDraft) -> String {
    match &p.name {
        Some(n) => format!("policy {}", reader::quoted(&n.v)),
        None => p.path.clone(),
    }
}

fn sorted(ranges: Vec<At<AddrRange>>) -> Vec<AddrRange> {
    let mut v: Vec<AddrRange> = ranges.into_iter().map(|r| r.v).collect();
    v.sort();
    v
}

/// The engine's scope from a checked draft (None only if a required part is missing, which the
/// checks have reported).
fn finish_scope(s: ScopeDraft) -> Option<Scope> {
    let subnet = s.subnet?.v;
    let mut options = s.options;
    if options.get(1).is_none() {
        options.set(1, subnet.mask().octets().to_vec());
    }
    let mut reservations = Vec::with_capacity(s.reservations.len());
    for r in s.reservations {
        reservations.push(Reservation {
            key: r.client?.v,
            addr: r.address?.v,
            hostname: r.hostname,
            options: r.options,
        });
    }
    let mut policies = Vec::with_capacity(s.policies.len());
    for (i, p) in s.policies.into_iter().enumerate() {
        if !p.enabled {
            continue;
        }
        policies.push(Policy {
            name: p.name?.v,
            order: p.order.map_or(i as u32 + 1, |o| o.v),
            conditions: p.conditions,
            combine: p.combine,
            ranges: sorted(p.ranges),
            options: p.options,
            lease_time: p.lease_time.map(|l| l.v),
        });
    }
    policies.sort_by_key(|p| p.order);
    Some(Scope {
        name: s.name?.v,
        subnet,
        ranges: sorted(s.ranges),
        exclusions: sorted(s.exclusions),
        reservations,
        lease_time: s.lease_time.map_or(DEFAULT_LEASE_SECS, |l| l.v),
        renew_time: s.renew_time.map(|r| r.v),
        rebind_time: s.rebind_time.map(|r| r.v),
        options,
        policies,
        authoritative: s.authoritative,
        ddns: None, // set from [[ddns]] once every scope is known
    })
}
