//! The shape of the file: reading each table into a draft (values with their positions), checking
//! keys, types and single values. Checks across values (overlaps, containment, duplicates) are in
//! `validate`.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use tandem_dataplane::scope::{
    AddrRange, Combine, Condition, Criterion, Durability, Matcher, OptionSet, ReservationKey,
    Subnet,
};
use toml::de::{DeTable, DeValue};

use super::keys::{FAILOVER_KEYS, SCOPE_KEYS, SERVER_KEYS, TOP_KEYS};
use super::options;
use super::reader::{self, choice, duration, At, Ctx, Val};
use super::values;
use super::LogFormat;

/// Keys of `[[scope.reservation]]`.
pub(crate) const RESERVATION_KEYS: &[&str] = &[
    "mac",
    "client_id",
    "address",
    "hostname",
    "description",
    "options",
    "option",
];
/// Keys of `[[scope.policy]]`.
pub(crate) const POLICY_KEYS: &[&str] = &[
    "name",
    "description",
    "order",
    "enabled",
    "match",
    "conditions",
    "ranges",
    "lease_time",
    "options",
    "option",
];
/// Criteria keys of a policy condition, with what they look at.
const CRITERIA: &[(&str, Criterion)] = &[
    ("vendor_class", Criterion::VendorClass),
    ("user_class", Criterion::UserClass),
    ("client_id", Criterion::ClientId),
    ("mac", Criterion::Mac),
    ("circuit_id", Criterion::CircuitId),
    ("remote_id", Criterion::RemoteId),
    ("relay_agent", Criterion::RelayAgent),
];
/// Keys of a policy condition.
const CONDITION_KEYS: &[&str] = &[
    "vendor_class",
    "user_class",
    "client_id",
    "mac",
    "circuit_id",
    "remote_id",
    "relay_agent",
    "not",
];

/// Longest lease, renew or rebind time (0xffffffff means "infinite" on the wire; not offered).
pub(crate) const MAX_LEASE_SECS: u64 = 0xFFFF_FFFE;

/// The whole file, read.
pub(crate) struct Draft {
    pub server: Option<ServerDraft>,
    pub global_options: OptionSet,
    pub scopes: Vec<ScopeDraft>,
    pub dataplane: super::DataplaneSettings,
    pub failover: Vec<super::failover::FailoverDraft>,
    pub ddns: Vec<super::ddns::DdnsDraft>,
}

/// `[server]`, read. Fields left at their default when absent or wrong (the error is recorded).
pub(crate) struct ServerDraft {
    pub server_id: Option<At<Ipv4Addr>>,
    pub interfaces: Vec<At<String>>,
    pub state_dir: PathBuf,
    pub durability: Durability,
    pub admin_listen: SocketAddr,
    pub admin_token_file: Option<PathBuf>,
    pub admin_readonly_token_file: Option<PathBuf>,
    pub admin_tls: Option<crate::admin::tls::AdminTlsSettings>,
    pub server_port: u16,
    pub client_port: u16,
    pub workers: usize,
    pub batch_size: usize,
    pub log_format: LogFormat,
    pub compact_after_records: u64,
    pub offer_hold_secs: u32,
    pub decline_probation_secs: u32,
    pub duplicate_window_ms: u64,
    pub hardening: tandem_dataplane::engine::Hardening,
}

/// One `[[scope]]`, read.
pub(crate) struct ScopeDraft {
    /// `scope."name"` or `scope[i]`.
    pub path: String,
    pub name: Option<At<String>>,
    pub subnet: Option<At<Subnet>>,
    pub interface: Option<At<String>>,
    pub ranges: Vec<At<AddrRange>>,
    pub exclusions: Vec<At<AddrRange>>,
    pub lease_time: Option<At<u32>>,
    pub renew_time: Option<At<u32>>,
    pub rebind_time: Option<At<u32>>,
    pub authoritative: bool,
    pub options: OptionSet,
    pub reservations: Vec<ReservationDraft>,
    pub policies: Vec<PolicyDraft>,
}

/// One `[[scope.reservation]]`, read.
pub(crate) struct ReservationDraft {
    pub path: String,
    pub client: Option<At<ReservationKey>>,
    pub address: Option<At<Ipv4Addr>>,
    pub hostname: Option<String>,
    pub options: OptionSet,
}

/// One `[[scope.policy]]`, read.
pub(crate) struct PolicyDraft {
    pub path: String,
    pub header: Range<usize>,
    pub name: Option<At<String>>,
    pub order: Option<At<u32>>,
    pub enabled: bool,
    pub combine: Combine,
    pub conditions: Vec<Condition>,
    pub ranges: Vec<At<AddrRange>>,
    pub lease_time: Option<At<u32>>,
    pub options: OptionSet,
}

fn top_hint(k: &str) -> Option<String> {
    if SERVER_KEYS.contains(&k) {
        Some(format!("`{k}` belongs in the [server] table"))
    } else if options::is_named(k) {
        Some(format!("`{k}` is an option: put it in the [options] table"))
    } else if SCOPE_KEYS.contains(&k) && !TOP_KEYS.contains(&k) {
        Some(format!("`{k}` belongs in a [[scope]]"))
    } else if FAILOVER_KEYS.contains(&k) && reader::suggest(k, TOP_KEYS).is_none() {
        Some(format!("`{k}` belongs in a [[failover]]"))
    } else if matches!(k, "policy" | "policies" | "reservation" | "reservations") {
        Some(format!(
            "`{k}` belongs to a scope: write [[scope.{}]] after its [[scope]]",
            if k.starts_with("pol") {
                "policy"
            } else {
                "reservation"
            }
        ))
    } else {
        None
    }
}

/// Read the document's top level.
pub(crate) fn read_document(ctx: &mut Ctx<'_>, root: &DeTable<'_>) -> Draft {
    reader::check_keys(ctx, root, "", TOP_KEYS, &top_hint);
    let server = match reader::get(root, "server") {
        Some(v) => reader::table(ctx, v, "server").map(|t| read_server(ctx, v.span(), t)),
        None => {
            ctx.error(
                0..0,
                "server",
                "missing required table [server] (it needs at least server_id and interfaces)",
            );
            None
        }
    };
    let dataplane = match reader::get(root, "dataplane") {
        Some(v) => reader::table(ctx, v, "dataplane")
            .map(|t| super::dataplane::read(ctx, v.span(), t))
            .unwrap_or_default(),
        None => super::DataplaneSettings::default(),
    };
    let global_options = options::read_level(ctx, root, "", "option");
    let mut scopes = Vec::new();
    match reader::get(root, "scope") {
        Some(v) => {
            for (i, (item, t)) in reader::tables(ctx, v, "scope", "scope")
                .into_iter()
                .enumerate()
            {
                scopes.push(read_scope(ctx, item, t, i));
            }
        }
        None => ctx.error(
            0..0,
            "scope",
            "no [[scope]]: the server has no addresses to serve",
        ),
    }
    let mut failover = Vec::new();
    if let Some(v) = reader::get(root, "failover") {
        for (i, (item, t)) in reader::tables(ctx, v, "failover", "failover")
            .into_iter()
            .enumerate()
        {
            failover.push(super::failover::read(ctx, item, t, i));
        }
    }
    let mut ddns = Vec::new();
    if let Some(v) = reader::get(root, "ddns") {
        for (i, (item, t)) in reader::tables(ctx, v, "ddns", "ddns")
            .into_iter()
            .enumerate()
        {
            ddns.push(super::ddns::read(ctx, item, t, i));
        }
    }
    Draft {
        server,
        global_options,
        scopes,
        dataplane,
        failover,
        ddns,
    }
}

/// An interface name as the kernel accepts it.
fn interface_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if s.len() > 15 {
        return Err(format!(
            "interface name `{s}` is {} bytes long; Linux allows at most 15",
            s.len()
        ));
    }
    if s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("`{s}` is not a valid interface name"));
    }
    Ok(s.to_string())
}

fn read_server(ctx: &mut Ctx<'_>, span: Range<usize>, t: &DeTable<'_>) -> ServerDraft {
    let hint = |k: &str| {
        if options::is_named(k) {
            Some(format!("`{k}` is an option: put it in the [options] table"))
        } else if SCOPE_KEYS.contains(&k) {
            Some(format!("`{k}` belongs in a [[scope]]"))
        } else {
            None
        }
    };
    reader::check_keys(ctx, t, "server", SERVER_KEYS, &hint);
    let mut d = ServerDraft {
        server_id: None,
        interfaces: Vec::new(),
        state_dir: PathBuf::from("/var/lib/tandem"),
        durability: Durability::Sync,
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 9167)),
        admin_token_file: None,
        admin_readonly_token_file: None,
        admin_tls: None,
        server_port: 67,
        client_port: 68,
        workers: 1,
        batch_size: 256,
        log_format: LogFormat::Text,
        compact_after_records: 1_000_000,
        offer_hold_secs: 30,
        decline_probation_secs: 3600,
        duplicate_window_ms: 2000,
        hardening: tandem_dataplane::engine::Hardening::default(),
    };
    let p = |k: &str| reader::join("server", k);
    match reader::get(t, "server_id") {
        None => reader::missing(
            ctx,
            span.clone(),
            "server",
            "server_id",
            "this server's IPv4 address, sent as option 54",
        ),
        Some(v) => {
            let path = p("server_id");
            if let Some(a) = reader::parsed(ctx, v, &path, values::ipv4) {
                if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
                    ctx.error(
                        v.span(),
                        &path,
                        format!(
                            "{a} cannot identify a server: use a unicast address of this server"
                        ),
                    );
                } else {
                    d.server_id = Some(At::new(a, v.span(), path));
                }
            }
        }
    }
    match reader::get(t, "interfaces") {
        None => reader::missing(
            ctx,
            span.clone(),
            "server",
            "interfaces",
            "the network interfaces to serve on, like [\"eth1\"]",
        ),
        Some(v) => {
            let path = p("interfaces");
            if let Some(a) = reader::array(ctx, v, &path) {
                if a.is_empty() {
                    ctx.error(v.span(), &path, "needs at least one interface");
                }
                for (i, item) in a.iter().enumerate() {
                    let ipath = reader::index(&path, i);
                    if let Some(name) = reader::parsed(ctx, item, &ipath, interface_name) {
                        if d.interfaces.iter().any(|x| x.v == name) {
                            ctx.error(
                                item.span(),
                                &ipath,
                                format!("interface `{name}` is listed twice"),
                            );
                        } else {
                            d.interfaces.push(At::new(name, item.span(), ipath));
                        }
                    }
                }
            }
        }
    }
    if let Some(v) = reader::get(t, "state_dir") {
        if let Some(s) = reader::string(ctx, v, &p("state_dir")) {
            if s.is_empty() {
                ctx.error(
                    v.span(),
                    p("state_dir"),
                    "the state directory cannot be empty",
                );
            } else {
                d.state_dir = PathBuf::from(s);
            }
        }
    }
    if let Some(v) = reader::get(t, "durability") {
        let c = [("sync", Durability::Sync), ("relaxed", Durability::Relaxed)];
        if let Some(x) = choice(ctx, v, &p("durability"), &c) {
            d.durability = x;
        }
    }
    if let Some(v) = reader::get(t, "admin_listen") {
        let parsed = reader::parsed(ctx, v, &p("admin_listen"), |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("`{s}` is not an address and port like 127.0.0.1:9167"))
        });
        if let Some(a) = parsed {
            d.admin_listen = a;
        }
    }
    for (key, slot) in [
        ("admin_token_file", &mut d.admin_token_file),
        (
            "admin_readonly_token_file",
            &mut d.admin_readonly_token_file,
        ),
    ] {
        if let Some(v) = reader::get(t, key) {
            if let Some(s) = reader::string(ctx, v, &p(key)) {
                if s.is_empty() || !s.starts_with('/') {
                    ctx.error(
                        v.span(),
                        p(key),
                        format!("`{s}` is not an absolute path (like /etc/tandem/admin.token)"),
                    );
                } else {
                    *slot = Some(PathBuf::from(s));
                }
            }
        }
    }
    if d.admin_readonly_token_file.is_some() && d.admin_token_file.is_none() {
        if let Some(v) = reader::get(t, "admin_readonly_token_file") {
            ctx.error(
                v.span(),
                p("admin_readonly_token_file"),
                "a read-only token needs an admin token beside it: set `admin_token_file` too \
                 (without one the API would take any request unauthenticated)"
                    .to_string(),
            );
        }
    }
    let (admin_tls, client_ca) = super::admin_tls::read(ctx, t, &span);
    d.admin_tls = admin_tls;
    // Without a token or client certificates the admin API is unauthenticated: only loopback
    // may reach it.
    if d.admin_token_file.is_none() && !client_ca && !d.admin_listen.ip().is_loopback() {
        if let Some(v) = reader::get(t, "admin_listen") {
            ctx.error(
                v.span(),
                p("admin_listen"),
                format!(
                    "{} is not a loopback address: an admin endpoint reachable from the network \
                     needs authentication; set `admin_token_file`, or admin_tls = \"required\" \
                     with `admin_tls_client_ca_file`, or listen on 127.0.0.1",
                    d.admin_listen
                ),
            );
        }
    }
    if let Some(v) = reader::get(t, "server_port") {
        if let Some(n) = reader::integer_in(ctx, v, &p("server_port"), 1, 65_535) {
            d.server_port = n as u16;
        }
    }
    if let Some(v) = reader::get(t, "client_port") {
        if let Some(n) = reader::integer_in(ctx, v, &p("client_port"), 1, 65_535) {
            if n as u16 == d.server_port {
                ctx.error(
                    v.span(),
                    p("client_port"),
                    format!("client_port and server_port are both {n}; they must differ"),
                );
            } else {
                d.client_port = n as u16;
            }
        }
    }
    if let Some(v) = reader::get(t, "workers") {
        if let Some(n) = reader::integer_in(ctx, v, &p("workers"), 1, 256) {
            d.workers = n as usize;
        }
    }
    if let Some(v) = reader::get(t, "batch_size") {
        if let Some(n) = reader::integer_in(ctx, v, &p("batch_size"), 1, 4096) {
            d.batch_size = n as usize;
        }
    }
    if let Some(v) = reader::get(t, "log_format") {
        let c = [("text", LogFormat::Text), ("json", LogFormat::Json)];
        if let Some(x) = choice(ctx, v, &p("log_format"), &c) {
            d.log_format = x;
        }
    }
    if let Some(v) = reader::get(t, "compact_after_records") {
        if let Some(n) = reader::integer_in(
            ctx,
            v,
            &p("compact_after_records"),
            1000,
            i128::from(u64::MAX),
        ) {
            d.compact_after_records = n as u64;
        }
    }
    if let Some(v) = reader::get(t, "offer_hold_time") {
        if let Some(s) = duration(ctx, v, &p("offer_hold_time"), 1, 3600) {
            d.offer_hold_secs = s as u32;
        }
    }
    if let Some(v) = reader::get(t, "decline_probation_time") {
        if let Some(s) = duration(ctx, v, &p("decline_probation_time"), 1, MAX_LEASE_SECS) {
            d.decline_probation_secs = s as u32;
        }
    }
    if let Some(v) = reader::get(t, "duplicate_window_ms") {
        if let Some(n) = reader::integer_in(ctx, v, &p("duplicate_window_ms"), 0, 60_000) {
            d.duplicate_window_ms = n as u64;
        }
    }
    if let Some(v) = reader::get(t, "strict_client_identity") {
        if let Some(b) = reader::boolean(ctx, v, &p("strict_client_identity")) {
            d.hardening.strict_identity = b;
        }
    }
    if let Some(v) = reader::get(t, "discover_rate_limit") {
        if let Some(n) = reader::integer_in(ctx, v, &p("discover_rate_limit"), 0, 100_000) {
            d.hardening.discover_per_client = n as u32;
        }
    }
    if let Some(v) = reader::get(t, "relay_circuit_rate_limit") {
        if let Some(n) = reader::integer_in(ctx, v, &p("relay_circuit_rate_limit"), 0, 1_000_000) {
            d.hardening.per_circuit = n as u32;
        }
    }
    if let Some(v) = reader::get(t, "trusted_relays") {
        let path = p("trusted_relays");
        if let Some(a) = reader::array(ctx, v, &path) {
            for (i, item) in a.iter().enumerate() {
                let ip = reader::parsed(ctx, item, &reader::index(&path, i), |s| {
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| format!("`{s}` is not an IPv4 address (a relay's giaddr)"))
                });
                if let Some(ip) = ip {
                    if d.hardening.trusted_relays.contains(&ip) {
                        ctx.error(
                            item.span(),
                            reader::index(&path, i),
                            format!("{ip} is listed twice"),
                        );
                    } else {
                        d.hardening.trusted_relays.push(ip);
                    }
                }
            }
        }
    }
    d
}

/// A name of a scope or policy: non-empty, no control characters.
fn name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("a name cannot be empty".into())
    } else if s.chars().any(char::is_control) {
        Err("a name cannot contain control characters".into())
    } else {
        Ok(s.to_string())
    }
}

/// One range: `"a-b"` (or `"a"` when `single_ok`), or `["a", "b"]`.
fn range_item(
    ctx: &mut Ctx<'_>,
    v: &Val<'_>,
    path: &str,
    single_ok: bool,
) -> Option<At<AddrRange>> {
    let r = match v.get_ref() {
        DeValue::String(s) => values::range(s, single_ok),
        DeValue::Array(a) => match a.as_ref() {
            [x, y] => match (x.get_ref(), y.get_ref()) {
                (DeValue::String(x), DeValue::String(y)) => values::range_pair(x, y),
                _ => Err(
                    "a range pair is two address strings, like [\"10.0.0.100\", \"10.0.0.200\"]"
                        .into(),
                ),
            },
            _ => Err(format!(
                "a range pair has exactly two addresses (start and end), this has {}",
                a.len()
            )),
        },
        other => Err(format!(
            "expected a range like \"10.0.0.100-10.0.0.200\", found {}",
            reader::type_name(other)
        )),
    };
    match r {
        Ok(r) => Some(At::new(r, v.span(), path)),
        Err(m) => {
            ctx.error(v.span(), path, m);
            None
        }
    }
}

/// A list of ranges under `key` of `t`.
fn range_list(ctx: &mut Ctx<'_>, v: &Val<'_>, path: &str, single_ok: bool) -> Vec<At<AddrRange>> {
    let Some(a) = reader::array(ctx, v, path) else {
        return Vec::new();
    };
    a.iter()
        .enumerate()
        .filter_map(|(i, item)| range_item(ctx, item, &reader::index(path, i), single_ok))
        .collect()
}

fn option_hint(table: &'static str) -> impl Fn(&str) -> Option<String> {
    move |k: &str| {
        if options::is_named(k) {
            Some(format!("`{k}` is an option: put it in [{table}.options]"))
        } else if SERVER_KEYS.contains(&k) {
            Some(format!("`{k}` belongs in the [server] table"))
        } else {
            None
        }
    }
}

fn read_scope(ctx: &mut Ctx<'_>, item: &Val<'_>, t: &DeTable<'_>, i: usize) -> ScopeDraft {
    let header = item.span();
    // The name first: it names the scope in every other key path.
    let (name, path) = reader::item_name(
        ctx,
        header.clone(),
        t,
        "scope",
        i,
        "a name for logs and the admin API",
        name,
    );
    reader::check_keys(ctx, t, &path, SCOPE_KEYS, &option_hint("scope"));
    let p = |k: &str| reader::join(&path, k);

    let subnet = match reader::get(t, "subnet") {
        None => {
            reader::missing(ctx, header.clone(), &path, "subnet", "like \"10.0.0.0/24\"");
            None
        }
        Some(v) => reader::parsed(ctx, v, &p("subnet"), values::subnet)
            .map(|s| At::new(s, v.span(), p("subnet"))),
    };
    let interface = reader::get(t, "interface").and_then(|v| {
        reader::parsed(ctx, v, &p("interface"), interface_name)
            .map(|s| At::new(s, v.span(), p("interface")))
    });
    let ranges = match reader::get(t, "ranges") {
        None => {
            reader::missing(
                ctx,
                header.clone(),
                &path,
                "ranges",
                "like [\"10.0.0.100-10.0.0.200\"]",
            );
            Vec::new()
        }
        Some(v) => {
            if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
                ctx.error(v.span(), p("ranges"), "needs at least one range");
            }
            range_list(ctx, v, &p("ranges"), false)
        }
    };
    let exclusions = reader::get(t, "exclusions")
        .map(|v| range_list(ctx, v, &p("exclusions"), true))
        .unwrap_or_default();
    let lease = |ctx: &mut Ctx<'_>, key: &str| {
        reader::get(t, key).and_then(|v| {
            duration(ctx, v, &p(key), 1, MAX_LEASE_SECS)
                .map(|s| At::new(s as u32, v.span(), p(key)))
        })
    };
    let lease_time = lease(ctx, "lease_time");
    let renew_time = lease(ctx, "renew_time");
    let rebind_time = lease(ctx, "rebind_time");
    let authoritative = reader::get(t, "authoritative")
        .and_then(|v| reader::boolean(ctx, v, &p("authoritative")))
        .unwrap_or(true);
    if let Some(v) = reader::get(t, "description") {
        reader::string(ctx, v, &p("description"));
    }
    let options = options::read_level(ctx, t, &path, "scope.option");
    let mut reservations = Vec::new();
    if let Some(v) = reader::get(t, "reservation") {
        let rpath = p("reservation");
        for (j, (item, rt)) in reader::tables(ctx, v, &rpath, "scope.reservation")
            .into_iter()
            .enumerate()
        {
            reservations.push(read_reservation(ctx, item, rt, &reader::index(&rpath, j)));
        }
    }
    let mut policies = Vec::new();
    if let Some(v) = reader::get(t, "policy") {
        let ppath = p("policy");
        for (j, (item, pt)) in reader::tables(ctx, v, &ppath, "scope.policy")
            .into_iter()
            .enumerate()
        {
            policies.push(read_policy(ctx, item, pt, &ppath, j));
        }
    }
    ScopeDraft {
        path,
        name,
        subnet,
        interface,
        ranges,
        exclusions,
        lease_time,
        renew_time,
        rebind_time,
        authoritative,
        options,
        reservations,
        policies,
    }
}

fn read_reservation(
    ctx: &mut Ctx<'_>,
    item: &Val<'_>,
    t: &DeTable<'_>,
    path: &str,
) -> ReservationDraft {
    let hint = |k: &str| match k {
        "ip" | "ip_address" | "addr" => Some("did you mean `address`?".to_string()),
        "hw_address" | "hwaddr" | "hardware_address" => Some("did you mean `mac`?".to_string()),
        _ => option_hint("scope.reservation")(k),
    };
    reader::check_keys(ctx, t, path, RESERVATION_KEYS, &hint);
    let p = |k: &str| reader::join(path, k);
    let mac = reader::get(t, "mac").and_then(|v| {
        reader::parsed(ctx, v, &p("mac"), values::mac)
            .map(|m| At::new(ReservationKey::Mac(m), v.span(), p("mac")))
    });
    let client_id = reader::get(t, "client_id").and_then(|v| {
        reader::parsed(ctx, v, &p("client_id"), |s| {
            let b = values::hex(s)?;
            if b.len() < 2 {
                return Err(format!(
                    "`{s}` is too short: a client identifier has at least 2 bytes, a type and a value (RFC 2132)"
                ));
            }
            Ok(b)
        })
        .map(|b| At::new(ReservationKey::ClientId(b), v.span(), p("client_id")))
    });
    let client = match (mac, client_id) {
        (Some(m), Some(c)) => {
            let later = if m.span.start > c.span.start { &m } else { &c };
            ctx.error(
                later.span.clone(),
                later.key.clone(),
                "give either `mac` or `client_id`, not both (make two reservations if you need both)",
            );
            None
        }
        (Some(m), None) => Some(m),
        (None, Some(c)) => Some(c),
        (None, None) => {
            if reader::get(t, "mac").is_none() && reader::get(t, "client_id").is_none() {
                ctx.error(
                    item.span(),
                    path,
                    "missing `mac` or `client_id`: a reservation must say which client it is for",
                );
            }
            None
        }
    };
    let address = match reader::get(t, "address") {
        None => {
            reader::missing(
                ctx,
                item.span(),
                path,
                "address",
                "the reserved IPv4 address",
            );
            None
        }
        Some(v) => reader::parsed(ctx, v, &p("address"), values::ipv4)
            .map(|a| At::new(a, v.span(), p("address"))),
    };
    let hostname = reader::get(t, "hostname").and_then(|v| {
        reader::parsed(ctx, v, &p("hostname"), values::domain).map(|h| (h, v.span()))
    });
    if let Some(v) = reader::get(t, "description") {
        reader::string(ctx, v, &p("description"));
    }
    let options = options::read_level(ctx, t, path, "scope.reservation.option");
    if let (Some((_, span)), Some(_)) = (&hostname, options.get(12)) {
        ctx.error(
            span.clone(),
            p("hostname"),
            "option 12 (host name) is also set in this reservation's options; keep one",
        );
    }
    ReservationDraft {
        path: path.to_string(),
        client,
        address,
        hostname: hostname.map(|(h, _)| h),
        options,
    }
}

fn read_policy(
    ctx: &mut Ctx<'_>,
    item: &Val<'_>,
    t: &DeTable<'_>,
    ppath: &str,
    j: usize,
) -> PolicyDraft {
    let header = item.span();
    let (name, path) = reader::item_name(ctx, header.clone(), t, ppath, j, "a name for logs", name);
    let hint = |k: &str| {
        if CONDITION_KEYS.contains(&k) {
            Some(format!(
                "`{k}` is a condition: write conditions = [{{ {k} = \"…\" }}]"
            ))
        } else if matches!(k, "renew_time" | "rebind_time") {
            Some(format!("`{k}` is set per scope only"))
        } else {
            option_hint("scope.policy")(k)
        }
    };
    reader::check_keys(ctx, t, &path, POLICY_KEYS, &hint);
    let p = |k: &str| reader::join(&path, k);
    let order = reader::get(t, "order").and_then(|v| {
        reader::integer_in(ctx, v, &p("order"), 0, i128::from(u32::MAX))
            .map(|n| At::new(n as u32, v.span(), p("order")))
    });
    let enabled = reader::get(t, "enabled")
        .and_then(|v| reader::boolean(ctx, v, &p("enabled")))
        .unwrap_or(true);
    let combine = reader::get(t, "match")
        .and_then(|v| {
            choice(
                ctx,
                v,
                &p("match"),
                &[("all", Combine::All), ("any", Combine::Any)],
            )
        })
        .unwrap_or_default();
    let mut conditions = Vec::new();
    match reader::get(t, "conditions") {
        None => reader::missing(
            ctx,
            header.clone(),
            &path,
            "conditions",
            "like [{ vendor_class = \"MSFT*\" }]",
        ),
        Some(v) => {
            let cpath = p("conditions");
            if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
                ctx.error(v.span(), &cpath, "needs at least one condition");
            }
            for (k, (item, ct)) in reader::tables(ctx, v, &cpath, "scope.policy.conditions")
                .into_iter()
                .enumerate()
            {
                if let Some(c) = read_condition(ctx, item, ct, &reader::index(&cpath, k)) {
                    conditions.push(c);
                }
            }
        }
    }
    let ranges = reader::get(t, "ranges")
        .map(|v| range_list(ctx, v, &p("ranges"), false))
        .unwrap_or_default();
    let lease_time = reader::get(t, "lease_time").and_then(|v| {
        duration(ctx, v, &p("lease_time"), 1, MAX_LEASE_SECS)
            .map(|s| At::new(s as u32, v.span(), p("lease_time")))
    });
    if let Some(v) = reader::get(t, "description") {
        reader::string(ctx, v, &p("description"));
    }
    let options = options::read_level(ctx, t, &path, "scope.policy.option");
    PolicyDraft {
        path,
        header,
        name,
        order,
        enabled,
        combine,
        conditions,
        ranges,
        lease_time,
        options,
    }
}

fn read_condition(
    ctx: &mut Ctx<'_>,
    item: &Val<'_>,
    t: &DeTable<'_>,
    path: &str,
) -> Option<Condition> {
    reader::check_keys(ctx, t, path, CONDITION_KEYS, &reader::no_hint);
    let negate = reader::get(t, "not")
        .and_then(|v| reader::boolean(ctx, v, &reader::join(path, "not")))
        .unwrap_or(false);
    let mut present: Vec<(&Val<'_>, &str, Criterion)> = CRITERIA
        .iter()
        .filter_map(|(k, c)| reader::get(t, k).map(|v| (v, *k, *c)))
        .collect();
    present.sort_by_key(|(v, _, _)| v.span().start);
    let names: Vec<&str> = CRITERIA.iter().map(|(k, _)| *k).collect();
    let Some(&(v, key, criterion)) = present.first() else {
        ctx.error(
            item.span(),
            path,
            format!("a condition needs one of: {}", names.join(", ")),
        );
        return None;
    };
    for (other, k, _) in &present[1..] {
        ctx.error(
            other.span(),
            reader::join(path, k),
            format!(
                "a condition tests one thing (here `{key}`); put `{k}` in a condition of its own"
            ),
        );
    }
    let kpath = reader::join(path, key);
    let items = reader::one_or_many(v, &kpath);
    if items.is_empty() {
        ctx.error(v.span(), &kpath, "needs at least one value to match");
        return None;
    }
    let mut matchers = Vec::with_capacity(items.len());
    for (ipath, item) in items {
        if let Some(m) = reader::parsed(ctx, item, &ipath, |s| matcher(criterion, s)) {
            matchers.push(m);
        }
    }
    (present.len() == 1 && !matchers.is_empty()).then_some(Condition {
        criterion,
        matchers,
        negate,
    })
}

/// A matcher for `criterion` from its text: a trailing `*` makes it a prefix; `hex:` and `text:`
/// prefixes choose how the bytes are written (default: hex for client_id, mac and relay_agent,
/// text for the others).
pub(crate) fn matcher(criterion: Criterion, s: &str) -> Result<Matcher, String> {
    let (body, prefix) = match s.strip_suffix('*') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let default_hex = matches!(
        criterion,
        Criterion::ClientId | Criterion::Mac | Criterion::RelayAgent
    );
    let (body, as_hex) = if let Some(b) = body.strip_prefix("hex:") {
        (b, true)
    } else if let Some(b) = body.strip_prefix("text:") {
        (b, false)
    } else {
        (body, default_hex)
    };
    if !as_hex && body.contains('*') {
        return Err(format!(
            "`{s}`: only a trailing `*` is a wildcard (match a literal `*` with hex: bytes)"
        ));
    }
    let bytes = if as_hex {
        let b = if prefix {
            body.strip_suffix([':', '-']).unwrap_or(body)
        } else {
            body
        };
        let b = if criterion == Criterion::Mac {
            b.replace('-', ":")
        } else {
            b.to_string()
        };
        values::hex(&b).map_err(|m| {
            if body.contains('*') {
                format!("`{s}`: only a trailing `*` is a wildcard")
            } else {
                m
            }
        })?
    } else {
        body.as_bytes().to_vec()
    };
    if criterion == Criterion::Mac {
        if !prefix && bytes.len() != 6 {
            return Err(format!(
                "`{s}` has {} bytes; a MAC address has 6 (end it with `*` to match a prefix)",
                bytes.len()
            ));
        }
        if prefix && bytes.len() > 6 {
            return Err(format!("`{s}`: a MAC prefix has at most 6 bytes"));
        }
    }
    if !prefix && bytes.is_empty() {
        return Err("an empty value matches nothing; use `*` to match any value".into());
    }
    Ok(if prefix {
        Matcher::Prefix(bytes)
    } else {
        Matcher::Exact(bytes)
    })
}
