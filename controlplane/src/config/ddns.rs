//! `[[ddns]]`: dynamic DNS for the clients of some scopes (RFC 2136 updates, TSIG, RFC 4703
//! conflict resolution by the DNS updater in `crate::ddns`).
//!
//! ```toml
//! [[ddns]]
//! scopes = ["lan"]                    # each scope in at most one [[ddns]]
//! domain = "tdm.test"                 # appended to host names and partial names
//! forward_zone = "tdm.test"           # default: domain
//! reverse_zone = "77.10.in-addr.arpa" # default: from the scope's subnet (/8, /16, /24)
//! servers = ["10.77.0.53"]            # port 53 unless given
//! key_file = "/etc/tandem/ddns.key"   # BIND key file (tsig-keygen), mode 600
//! ttl = "5m"                          # default: a third of the scope's lease time
//! client_updates = "override"         # or "honor": the client may update its own A record
//! use_host_name = true                # register clients that send only option 12
//! conflict = "check-with-dhcid"       # or "no-check", "no-check-without-dhcid"
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use tandem_dataplane::scope::{ClientUpdates, Scope, ScopeDdns, Subnet};
use tandem_ddns::{ConflictMode, Name, TsigKey};
use toml::de::DeTable;

use super::reader::{self, At, Ctx, Val};
use super::schema::ScopeDraft;

/// Keys of `[[ddns]]`.
pub(crate) const DDNS_KEYS: &[&str] = &[
    "scopes",
    "domain",
    "forward_zone",
    "reverse_zone",
    "servers",
    "key_file",
    "ttl",
    "client_updates",
    "use_host_name",
    "conflict",
];

/// Longest `domain`: leaves room for a 52-character host label in a 253-byte name.
const MAX_DOMAIN_LEN: usize = 200;
/// Shortest and longest `ttl`.
const TTL_RANGE: (u64, u64) = (10, 7 * 86_400);

/// The DNS settings of one scope, validated (one per scope named by a `[[ddns]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdnsSettings {
    /// The scope.
    pub scope: String,
    /// The scope's subnet.
    pub subnet: Subnet,
    /// Zone of the clients' A records (lower case, no trailing dot).
    pub forward_zone: String,
    /// Zone of their PTR records.
    pub reverse_zone: String,
    /// DNS servers taking the updates, tried in order.
    pub servers: Vec<SocketAddr>,
    /// The TSIG key file, if updates are signed.
    pub key_file: Option<PathBuf>,
    /// The TSIG key read from it.
    pub key: Option<TsigKey>,
    /// TTL of the records, in seconds.
    pub ttl: u32,
    /// How names held by another client are treated.
    pub conflict: ConflictMode,
}

/// One `[[ddns]]`, read.
pub(crate) struct DdnsDraft {
    path: String,
    header: Range<usize>,
    scopes: Vec<At<String>>,
    domain: Option<String>,
    forward_zone: Option<String>,
    reverse_zone: Option<At<String>>,
    servers: Vec<SocketAddr>,
    key_file: Option<PathBuf>,
    key: Option<TsigKey>,
    ttl: Option<u32>,
    client_updates: ClientUpdates,
    use_host_name: bool,
    conflict: ConflictMode,
}

/// A DNS name given in the configuration, checked, in lower case without the trailing dot.
fn dns_name(s: &str) -> Result<String, String> {
    let t = s.trim_end_matches('.');
    if t.is_empty() {
        return Err("a zone or domain cannot be empty or the root".into());
    }
    Name::from_ascii(t).map_err(|e| format!("`{s}` is not a DNS name: {e}"))?;
    if !t
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    {
        return Err(format!(
            "`{s}` is not a host-name domain: labels are letters, digits and hyphens"
        ));
    }
    Ok(t.to_ascii_lowercase())
}

/// Read `[[ddns]]` number `i`.
pub(crate) fn read(ctx: &mut Ctx<'_>, item: &Val<'_>, t: &DeTable<'_>, i: usize) -> DdnsDraft {
    let path = reader::index("ddns", i);
    let header = item.span();
    let p = |k: &str| reader::join(&path, k);
    reader::check_keys(ctx, t, &path, DDNS_KEYS, &reader::no_hint);
    let mut scopes = Vec::new();
    match reader::get(t, "scopes") {
        None => reader::missing(
            ctx,
            header.clone(),
            &path,
            "scopes",
            "the names of the scopes whose clients get DNS names",
        ),
        Some(v) => {
            for (k, item) in reader::one_or_many(v, &p("scopes")) {
                if let Some(s) = reader::string(ctx, item, &k) {
                    scopes.push(At::new(s.to_string(), item.span(), k));
                }
            }
        }
    }
    let domain = match reader::get(t, "domain") {
        None => {
            reader::missing(
                ctx,
                header.clone(),
                &path,
                "domain",
                "the domain appended to the clients' host names, like \"lan.example.net\"",
            );
            None
        }
        Some(v) => reader::parsed(ctx, v, &p("domain"), |s| {
            let d = dns_name(s)?;
            if d.len() > MAX_DOMAIN_LEN {
                return Err(format!(
                    "a domain of {} bytes leaves too little room for host names (at most \
                     {MAX_DOMAIN_LEN})",
                    d.len()
                ));
            }
            Ok(d)
        }),
    };
    let forward_zone = reader::get(t, "forward_zone")
        .and_then(|v| reader::parsed(ctx, v, &p("forward_zone"), dns_name));
    let reverse_zone = reader::get(t, "reverse_zone").and_then(|v| {
        let k = p("reverse_zone");
        reader::parsed(ctx, v, &k, |s| {
            let z = dns_name(s)?;
            if !(z == "in-addr.arpa" || z.ends_with(".in-addr.arpa")) {
                return Err(format!(
                    "`{s}` is not a reverse zone: IPv4 reverse zones end in in-addr.arpa"
                ));
            }
            Ok(z)
        })
        .map(|z| At::new(z, v.span(), k))
    });
    let mut servers = Vec::new();
    match reader::get(t, "servers") {
        None => reader::missing(
            ctx,
            header.clone(),
            &path,
            "servers",
            "the DNS servers that take the updates, like [\"10.0.0.53\"]",
        ),
        Some(v) => {
            let items = reader::one_or_many(v, &p("servers"));
            if items.is_empty() {
                ctx.error(v.span(), p("servers"), "name at least one DNS server");
            }
            for (k, item) in items {
                if let Some(a) = reader::parsed(ctx, item, &k, |s| {
                    s.parse::<SocketAddr>()
                        .or_else(|_| s.parse::<Ipv4Addr>().map(|a| SocketAddr::from((a, 53))))
                        .map_err(|_| {
                            format!("`{s}` is not an IPv4 address or address:port of a DNS server")
                        })
                }) {
                    servers.push(a);
                }
            }
        }
    }
    let (mut key_file, mut key) = (None, None);
    if let Some(v) = reader::get(t, "key_file") {
        let k = p("key_file");
        if let Some(s) = reader::string(ctx, v, &k) {
            let file = PathBuf::from(s);
            match super::failover::read_secret_file(&file).and_then(|bytes| {
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("{s} is not a text file (a BIND key file)"))?;
                TsigKey::from_bind_key_file(&text).map_err(|e| {
                    format!("{s} is not a usable BIND key file (as tsig-keygen writes): {e}")
                })
            }) {
                Ok(kk) => {
                    key = Some(kk);
                    key_file = Some(file);
                }
                Err(m) => ctx.error(v.span(), k, m),
            }
        }
    }
    let ttl = reader::get(t, "ttl").and_then(|v| {
        reader::duration(ctx, v, &p("ttl"), TTL_RANGE.0, TTL_RANGE.1).map(|s| s as u32)
    });
    let client_updates = reader::get(t, "client_updates")
        .and_then(|v| {
            reader::choice(
                ctx,
                v,
                &p("client_updates"),
                &[
                    ("override", ClientUpdates::Override),
                    ("honor", ClientUpdates::Honor),
                ],
            )
        })
        .unwrap_or_default();
    let use_host_name = reader::get(t, "use_host_name")
        .and_then(|v| reader::boolean(ctx, v, &p("use_host_name")))
        .unwrap_or(true);
    let conflict = reader::get(t, "conflict")
        .and_then(|v| {
            reader::choice(
                ctx,
                v,
                &p("conflict"),
                &[
                    ("check-with-dhcid", ConflictMode::Rfc4703),
                    ("no-check", ConflictMode::NoCheckWithDhcid),
                    ("no-check-without-dhcid", ConflictMode::NoCheckWithoutDhcid),
                ],
            )
        })
        .unwrap_or_default();
    DdnsDraft {
        path,
        header,
        scopes,
        domain,
        forward_zone,
        reverse_zone,
        servers,
        key_file,
        key,
        ttl,
        client_updates,
        use_host_name,
        conflict,
    }
}

/// The reverse zone a subnet's PTR records fall in when it is /8, /16 or /24 aligned (or
/// narrower: the enclosing /24, /16 or /8).
fn default_reverse_zone(s: &Subnet) -> Option<String> {
    let o = s.network.octets();
    match s.prefix {
        24..=32 => Some(format!("{}.{}.{}.in-addr.arpa", o[2], o[1], o[0])),
        16..=23 => Some(format!("{}.{}.in-addr.arpa", o[1], o[0])),
        8..=15 => Some(format!("{}.in-addr.arpa", o[0])),
        _ => None,
    }
}

/// True if every address of `s` has its PTR name inside `zone`.
fn subnet_in_zone(s: &Subnet, zone: &str) -> bool {
    let Ok(z) = Name::from_ascii(zone) else {
        return false;
    };
    [s.network, s.broadcast()]
        .iter()
        .all(|a| Name::reverse_ipv4(*a).is_subdomain_of(&z))
        && default_reverse_zone(s)
            .is_some_and(|d| Name::from_ascii(&d).is_ok_and(|d| d.is_subdomain_of(&z)))
}

/// Check the drafts against the scopes (`drafts` name scopes of `scope_drafts`, whose built
/// forms are `built`, in the same order), set each named scope's [`ScopeDdns`], and return
/// each scope's DNS settings.
pub(crate) fn build(
    ctx: &mut Ctx<'_>,
    drafts: Vec<DdnsDraft>,
    scope_drafts: &[ScopeDraft],
) -> Vec<(usize, ScopeDdns, DdnsSettings)> {
    let mut out: Vec<(usize, ScopeDdns, DdnsSettings)> = Vec::new();
    // Scope name, [[ddns]] number, position of its first mention.
    let mut seen: Vec<(String, usize, usize)> = Vec::new();
    for (di, d) in drafts.into_iter().enumerate() {
        let Some(domain) = d.domain.clone() else {
            continue;
        };
        let forward_zone = d.forward_zone.clone().unwrap_or_else(|| domain.clone());
        let (Ok(fz), Ok(dn)) = (Name::from_ascii(&forward_zone), Name::from_ascii(&domain)) else {
            continue;
        };
        if !dn.is_subdomain_of(&fz) {
            ctx.error(
                d.header.clone(),
                reader::join(&d.path, "forward_zone"),
                format!(
                    "the domain {domain} is not inside the forward zone {forward_zone}: the \
                     clients' names could never be updated there"
                ),
            );
            continue;
        }
        for s in &d.scopes {
            let Some(si) = scope_drafts
                .iter()
                .position(|sd| sd.name.as_ref().is_some_and(|n| n.v == s.v))
            else {
                ctx.error(
                    s.span.clone(),
                    s.key.clone(),
                    format!("no [[scope]] is named `{}`", s.v),
                );
                continue;
            };
            if let Some((_, first, at)) = seen.iter().find(|(n, _, _)| *n == s.v) {
                let m = format!(
                    "scope `{}` is already in [[ddns]] number {} (line {}); a scope has one set \
                     of DNS settings",
                    s.v,
                    first + 1,
                    ctx.line_of(*at)
                );
                ctx.error(s.span.clone(), s.key.clone(), m);
                continue;
            }
            let sd = &scope_drafts[si];
            let Some(subnet) = sd.subnet.as_ref().map(|s| s.v) else {
                continue;
            };
            let reverse_zone = match &d.reverse_zone {
                Some(z) => {
                    if !subnet_in_zone(&subnet, &z.v) {
                        ctx.error(
                            z.span.clone(),
                            z.key.clone(),
                            format!(
                                "scope `{}` ({}/{}) has addresses outside the reverse zone {}",
                                s.v, subnet.network, subnet.prefix, z.v
                            ),
                        );
                        continue;
                    }
                    z.v.clone()
                }
                None => match default_reverse_zone(&subnet) {
                    Some(z) => z,
                    None => {
                        ctx.error(
                            d.header.clone(),
                            reader::join(&d.path, "reverse_zone"),
                            format!(
                                "scope `{}` is a /{}: name its reverse zone with reverse_zone",
                                s.v, subnet.prefix
                            ),
                        );
                        continue;
                    }
                },
            };
            let lease = sd
                .lease_time
                .as_ref()
                .map_or(super::validate::DEFAULT_LEASE_SECS, |l| l.v);
            let ttl = d
                .ttl
                .unwrap_or_else(|| (lease / 3).clamp(TTL_RANGE.0 as u32, TTL_RANGE.1 as u32));
            seen.push((s.v.clone(), di, s.span.start));
            out.push((
                si,
                ScopeDdns {
                    domain: domain.clone(),
                    client_updates: d.client_updates,
                    use_host_name: d.use_host_name,
                },
                DdnsSettings {
                    scope: s.v.clone(),
                    subnet,
                    forward_zone: forward_zone.clone(),
                    reverse_zone,
                    servers: d.servers.clone(),
                    key_file: d.key_file.clone(),
                    key: d.key.clone(),
                    ttl,
                    conflict: d.conflict,
                },
            ));
        }
    }
    out
}

/// Set each scope's [`ScopeDdns`] from what [`build`] returned.
pub(crate) fn apply(scopes: &mut [Scope], built: &[(usize, ScopeDdns, DdnsSettings)]) {
    for (si, sd, _) in built {
        if let Some(s) = scopes.get_mut(*si) {
            s.ddns = Some(sd.clone());
        }
    }
}
