//! DHCP options in the configuration: named options (`[options]` tables), arbitrary options by
//! code and type (`[[option]]` arrays), and their wire encodings.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use tandem_dataplane::scope::OptionSet;
use toml::de::{DeTable, DeValue};

use super::reader::{self, Ctx, Val};
use super::values;

/// How an option value is written in the file and encoded on the wire.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One address.
    Ipv4,
    /// One or more addresses, concatenated.
    Ipv4List,
    /// A contiguous netmask.
    Mask,
    /// One domain name, as ASCII text (option 15).
    Domain,
    /// One or more domain names in DNS wire form (option 119, RFC 3397; no compression).
    DomainList,
    /// Non-empty text.
    Text,
    /// Integer 0..=255.
    U8,
    /// Integer 0..=65535, network byte order.
    U16,
    /// Integer 0..=2^32-1, network byte order.
    U32,
    /// true/false as one byte 1/0.
    Bool,
    /// Raw bytes written in hex.
    Hex,
    /// Interface MTU, 68..=65535, two bytes.
    Mtu,
    /// NetBIOS node type: 1, 2, 4 or 8.
    NodeType,
    /// Classless static routes (RFC 3442).
    Routes,
}

/// A named option key.
pub(crate) struct Named {
    /// Key in an `options` table.
    pub key: &'static str,
    /// Option code.
    pub code: u8,
    /// Value kind.
    pub kind: Kind,
}

/// Every named option, in code order.
pub(crate) const NAMED: &[Named] = &[
    Named {
        key: "subnet_mask",
        code: 1,
        kind: Kind::Mask,
    },
    Named {
        key: "routers",
        code: 3,
        kind: Kind::Ipv4List,
    },
    Named {
        key: "time_servers",
        code: 4,
        kind: Kind::Ipv4List,
    },
    Named {
        key: "dns_servers",
        code: 6,
        kind: Kind::Ipv4List,
    },
    Named {
        key: "log_servers",
        code: 7,
        kind: Kind::Ipv4List,
    },
    Named {
        key: "domain_name",
        code: 15,
        kind: Kind::Domain,
    },
    Named {
        key: "interface_mtu",
        code: 26,
        kind: Kind::Mtu,
    },
    Named {
        key: "broadcast_address",
        code: 28,
        kind: Kind::Ipv4,
    },
    Named {
        key: "ntp_servers",
        code: 42,
        kind: Kind::Ipv4List,
    },
    Named {
        key: "netbios_name_servers",
        code: 44,
        kind: Kind::Ipv4List,
    },
    Named {
        key: "netbios_node_type",
        code: 46,
        kind: Kind::NodeType,
    },
    Named {
        key: "tftp_server_name",
        code: 66,
        kind: Kind::Text,
    },
    Named {
        key: "bootfile_name",
        code: 67,
        kind: Kind::Text,
    },
    Named {
        key: "domain_search",
        code: 119,
        kind: Kind::DomainList,
    },
    Named {
        key: "static_routes",
        code: 121,
        kind: Kind::Routes,
    },
];

/// True if `key` names an option (for "this belongs in an options table" hints).
pub(crate) fn is_named(key: &str) -> bool {
    NAMED.iter().any(|n| n.key == key)
}

fn named_keys() -> Vec<&'static str> {
    NAMED.iter().map(|n| n.key).collect()
}

/// Codes the server sets or reads itself and that the configuration may not set, with why.
pub(crate) const OWNED_CODES: &[(u8, &str)] = &[
    (0, "option 0 is the pad byte, not an option"),
    (
        50,
        "option 50 (requested IP address) is sent by clients, not servers",
    ),
    (
        51,
        "option 51 (IP address lease time) is set by the server; use `lease_time`",
    ),
    (
        52,
        "option 52 (option overload) is managed by the server's encoder",
    ),
    (53, "option 53 (DHCP message type) is set by the server"),
    (
        54,
        "option 54 (server identifier) is set by the server; use `server.server_id`",
    ),
    (
        55,
        "option 55 (parameter request list) is sent by clients, not servers",
    ),
    (
        57,
        "option 57 (maximum DHCP message size) is sent by clients, not servers",
    ),
    (
        58,
        "option 58 (renewal time T1) is set by the server; use `renew_time`",
    ),
    (
        59,
        "option 59 (rebinding time T2) is set by the server; use `rebind_time`",
    ),
    (
        61,
        "option 61 (client identifier) is sent by clients, not servers",
    ),
    (
        82,
        "option 82 (relay agent information) is added by relays, not servers",
    ),
    (255, "option 255 is the end marker, not an option"),
];

const TYPES: &[(&str, Kind)] = &[
    ("ipv4", Kind::Ipv4),
    ("ipv4-list", Kind::Ipv4List),
    ("u8", Kind::U8),
    ("u16", Kind::U16),
    ("u32", Kind::U32),
    ("bool", Kind::Bool),
    ("string", Kind::Text),
    ("hex", Kind::Hex),
];

/// Keys of an `[[option]]` table.
const OPTION_KEYS: &[&str] = &["code", "type", "value"];

/// Parse each item of a value that may be one item or a list of them, requiring at least one.
fn each<T>(
    ctx: &mut Ctx<'_>,
    v: &Val<'_>,
    path: &str,
    what: &str,
    mut f: impl FnMut(&mut Ctx<'_>, &Val<'_>, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let items = reader::one_or_many(v, path);
    if items.is_empty() {
        ctx.error(v.span(), path, format!("needs at least one {what}"));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (p, item) in items {
        match f(ctx, item, &p) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Encode `v` as an option value of `kind`; errors name `path` (or `path[i]` for list items).
pub(crate) fn encode(ctx: &mut Ctx<'_>, v: &Val<'_>, path: &str, kind: Kind) -> Option<Vec<u8>> {
    match kind {
        Kind::Ipv4 => reader::parsed(ctx, v, path, values::ipv4).map(|a| a.octets().to_vec()),
        Kind::Ipv4List => {
            let addrs = each(ctx, v, path, "address", |ctx, item, p| {
                reader::parsed(ctx, item, p, values::ipv4)
            })?;
            Some(addrs.iter().flat_map(|a| a.octets()).collect())
        }
        Kind::Mask => reader::parsed(ctx, v, path, |s| {
            let m = values::ipv4(s)?;
            let bits = u32::from(m);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(format!(
                    "`{s}` is not a netmask (its one bits must be contiguous, like 255.255.255.0)"
                ));
            }
            Ok(m.octets().to_vec())
        }),
        Kind::Domain => reader::parsed(ctx, v, path, values::domain).map(String::into_bytes),
        Kind::DomainList => {
            let names = each(ctx, v, path, "domain name", |ctx, item, p| {
                reader::parsed(ctx, item, p, values::domain)
            })?;
            let mut out = Vec::new();
            for n in &names {
                values::domain_wire(n, &mut out);
            }
            Some(out)
        }
        Kind::Text => reader::parsed(ctx, v, path, |s| {
            if s.is_empty() {
                Err("the text cannot be empty (RFC 2132 options have at least one byte)".into())
            } else {
                Ok(s.as_bytes().to_vec())
            }
        }),
        Kind::U8 => reader::integer_in(ctx, v, path, 0, 255).map(|n| vec![n as u8]),
        Kind::U16 => {
            reader::integer_in(ctx, v, path, 0, 65_535).map(|n| (n as u16).to_be_bytes().to_vec())
        }
        Kind::U32 => reader::integer_in(ctx, v, path, 0, i128::from(u32::MAX))
            .map(|n| (n as u32).to_be_bytes().to_vec()),
        Kind::Bool => reader::boolean(ctx, v, path).map(|b| vec![u8::from(b)]),
        Kind::Hex => reader::parsed(ctx, v, path, values::hex),
        Kind::Mtu => {
            reader::integer_in(ctx, v, path, 68, 65_535).map(|n| (n as u16).to_be_bytes().to_vec())
        }
        Kind::NodeType => {
            let n = reader::integer_in(ctx, v, path, 0, 255)?;
            if ![1, 2, 4, 8].contains(&n) {
                ctx.error(
                    v.span(),
                    path,
                    format!(
                        "{n} is not a NetBIOS node type: expected 1 (B), 2 (P), 4 (M) or 8 (H)"
                    ),
                );
                return None;
            }
            Some(vec![n as u8])
        }
        Kind::Routes => {
            let mut seen: HashSet<(Ipv4Addr, u8)> = HashSet::new();
            let routes = each(ctx, v, path, "route", |ctx, item, p| {
                let r = reader::parsed(ctx, item, p, values::route)?;
                if !seen.insert((r.0, r.1)) {
                    ctx.error(
                        item.span(),
                        p,
                        format!("a route to {}/{} is already listed", r.0, r.1),
                    );
                    return None;
                }
                Some(r)
            })?;
            let mut out = Vec::new();
            for (dest, prefix, gw) in routes {
                values::route_wire(dest, prefix, gw, &mut out);
            }
            Some(out)
        }
    }
}

/// One option set by the file, before conflicts are checked.
struct Entry {
    code: u8,
    value: Vec<u8>,
    at: usize,
    span: std::ops::Range<usize>,
    key: String,
}

/// Read the options of one level: the named `options` table and the `option` array of `table`.
/// `path` is the level's key path, `header` how its `[[…option]]` header is written.
pub(crate) fn read_level(
    ctx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    path: &str,
    header: &str,
) -> OptionSet {
    let mut entries: Vec<Entry> = Vec::new();
    if let Some(v) = reader::get(table, "options") {
        let opath = reader::join(path, "options");
        if let Some(t) = reader::table(ctx, v, &opath) {
            read_named(ctx, t, &opath, header, &mut entries);
        }
    }
    if let Some(v) = reader::get(table, "option") {
        let apath = reader::join(path, "option");
        if matches!(v.get_ref(), DeValue::Table(_)) {
            ctx.error(
                v.span(),
                &apath,
                format!(
                    "`option` is an array of tables: write `[[{header}]]` with code, type and value \
                     (named options such as routers go in `[{header}s]`)"
                ),
            );
        } else {
            for (i, (item, t)) in reader::tables(ctx, v, &apath, header)
                .into_iter()
                .enumerate()
            {
                read_arbitrary(ctx, item, t, &reader::index(&apath, i), &mut entries);
            }
        }
    }
    entries.sort_by_key(|e| e.at);
    let mut set = OptionSet::new();
    let mut first: Vec<Option<(String, usize)>> = vec![None; 256];
    for e in entries {
        if let Some((key, line)) = &first[usize::from(e.code)] {
            let message = format!("option {} is already set by `{key}` (line {line})", e.code);
            ctx.error(e.span, e.key, message);
            continue;
        }
        first[usize::from(e.code)] = Some((e.key, ctx.line_of(e.at)));
        set.set(e.code, e.value);
    }
    set
}

fn read_named(ctx: &mut Ctx<'_>, t: &DeTable<'_>, path: &str, header: &str, out: &mut Vec<Entry>) {
    let keys = named_keys();
    let hint = |k: &str| {
        let k = k.to_ascii_lowercase();
        match k.as_str() {
            "lease_time" | "renew_time" | "rebind_time" => Some(format!(
                "`{k}` is not an option but a key of the scope or policy itself"
            )),
            "hostname" | "host_name" => {
                Some("set a client's host name with `hostname` in its reservation".to_string())
            }
            _ => None,
        }
        .or_else(|| {
            reader::suggest(&k, &keys).is_none().then(|| {
                format!(
                    "named options are {}; set any other option by code in `[[{header}]]`",
                    keys.join(", ")
                )
            })
        })
    };
    reader::check_keys(ctx, t, path, &keys, &hint);
    for (k, v) in t.iter() {
        let Some(named) = NAMED.iter().find(|n| n.key == k.get_ref().as_ref()) else {
            continue;
        };
        let kpath = reader::join(path, named.key);
        if let Some(value) = encode(ctx, v, &kpath, named.kind) {
            out.push(Entry {
                code: named.code,
                value,
                at: k.span().start,
                span: k.span(),
                key: kpath,
            });
        }
    }
}

fn read_arbitrary(
    ctx: &mut Ctx<'_>,
    item: &Val<'_>,
    t: &DeTable<'_>,
    path: &str,
    out: &mut Vec<Entry>,
) {
    reader::check_keys(ctx, t, path, OPTION_KEYS, &reader::no_hint);
    let code = match reader::get(t, "code") {
        None => {
            reader::missing(ctx, item.span(), path, "code", "the option code, 1 to 254");
            None
        }
        Some(v) => {
            let cpath = reader::join(path, "code");
            let n = if matches!(v.get_ref(), DeValue::Integer(_)) {
                reader::integer_value(ctx, v, &cpath)
            } else {
                reader::integer_in(ctx, v, &cpath, 1, 254)
            };
            match n {
                Some(n) if (0..=255).contains(&n) => {
                    let c = n as u8;
                    if let Some((_, why)) = OWNED_CODES.iter().find(|(o, _)| *o == c) {
                        ctx.error(v.span(), &cpath, *why);
                        None
                    } else {
                        Some(c)
                    }
                }
                Some(n) => {
                    ctx.error(
                        v.span(),
                        &cpath,
                        format!("{n} is not an option code: codes are 1 to 254"),
                    );
                    None
                }
                None => None,
            }
        }
    };
    let kind = match reader::get(t, "type") {
        None => {
            reader::missing(
                ctx,
                item.span(),
                path,
                "type",
                "ipv4, ipv4-list, u8, u16, u32, bool, string or hex",
            );
            None
        }
        Some(v) => {
            let tpath = reader::join(path, "type");
            let names: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
            reader::string(ctx, v, &tpath).and_then(|s| {
                let found = TYPES.iter().find(|(n, _)| *n == s).map(|(_, k)| *k);
                if found.is_none() {
                    let mut m = format!("unknown option type `{s}`");
                    if let Some(g) = reader::suggest(s, &names) {
                        m.push_str(&format!("; did you mean `{g}`?"));
                    }
                    m.push_str(&format!(" (types: {})", names.join(", ")));
                    ctx.error(v.span(), &tpath, m);
                }
                found
            })
        }
    };
    let Some(v) = reader::get(t, "value") else {
        reader::missing(ctx, item.span(), path, "value", "the option's value");
        return;
    };
    let (Some(code), Some(kind)) = (code, kind) else {
        return;
    };
    let vpath = reader::join(path, "value");
    if let Some(value) = encode(ctx, v, &vpath, kind) {
        let at = item.span().start;
        out.push(Entry {
            code,
            value,
            at,
            span: item.span(),
            key: path.to_string(),
        });
    }
}
