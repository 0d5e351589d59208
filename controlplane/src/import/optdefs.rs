//! DHCPv4 option definitions shared by both importers: the standard options by the names ISC
//! dhcpd and Kea give them (RFC 2132 and later), definitions a file adds itself (dhcpd's
//! `option NAME code N = TYPE;`, Kea's `option-def`), and parsing of option values into
//! [`OptValue`]s.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::model::OptValue;

/// The type of one option field.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An IPv4 address.
    Ip,
    /// Text (NVT ASCII).
    Text,
    /// dhcpd's `string`: quoted text or colon-separated hex bytes.
    Str,
    /// Unsigned integer of this many bytes.
    UInt(u8),
    /// Signed integer of this many bytes.
    SInt(u8),
    /// A flag.
    Bool,
    /// A list of domain names (RFC 3397 wire form).
    Domains,
    /// Classless static routes (RFC 3442), Kea's `classless-static-route` syntax.
    Routes,
    /// Raw bytes.
    Hex,
}

/// One option definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Def {
    /// Name as the source writes it.
    pub name: String,
    /// Code.
    pub code: u8,
    /// Field type.
    pub kind: Kind,
    /// The option is an array of `kind`.
    pub array: bool,
}

use Kind::{Bool, Domains, Hex, Ip, Routes, SInt, Str, Text, UInt};

/// (name, code, kind, array) of the standard options; later names of a code are aliases.
const STANDARD: &[(&str, u8, Kind, bool)] = &[
    ("subnet-mask", 1, Ip, false),
    ("time-offset", 2, SInt(4), false),
    ("routers", 3, Ip, true),
    ("time-servers", 4, Ip, true),
    ("ien116-name-servers", 5, Ip, true),
    ("name-servers", 5, Ip, true),
    ("domain-name-servers", 6, Ip, true),
    ("log-servers", 7, Ip, true),
    ("cookie-servers", 8, Ip, true),
    ("lpr-servers", 9, Ip, true),
    ("impress-servers", 10, Ip, true),
    ("resource-location-servers", 11, Ip, true),
    ("host-name", 12, Text, false),
    ("boot-size", 13, UInt(2), false),
    ("merit-dump", 14, Text, false),
    ("domain-name", 15, Text, false),
    ("swap-server", 16, Ip, false),
    ("root-path", 17, Text, false),
    ("extensions-path", 18, Text, false),
    ("ip-forwarding", 19, Bool, false),
    ("non-local-source-routing", 20, Bool, false),
    ("max-dgram-reassembly", 22, UInt(2), false),
    ("default-ip-ttl", 23, UInt(1), false),
    ("path-mtu-aging-timeout", 24, UInt(4), false),
    ("path-mtu-plateau-table", 25, UInt(2), true),
    ("interface-mtu", 26, UInt(2), false),
    ("all-subnets-local", 27, Bool, false),
    ("broadcast-address", 28, Ip, false),
    ("perform-mask-discovery", 29, Bool, false),
    ("mask-supplier", 30, Bool, false),
    ("router-discovery", 31, Bool, false),
    ("router-solicitation-address", 32, Ip, false),
    ("static-routes", 33, Ip, true),
    ("trailer-encapsulation", 34, Bool, false),
    ("arp-cache-timeout", 35, UInt(4), false),
    ("ieee802-3-encapsulation", 36, Bool, false),
    ("default-tcp-ttl", 37, UInt(1), false),
    ("tcp-keepalive-interval", 38, UInt(4), false),
    ("tcp-keepalive-garbage", 39, Bool, false),
    ("nis-domain", 40, Text, false),
    ("nis-servers", 41, Ip, true),
    ("ntp-servers", 42, Ip, true),
    ("vendor-encapsulated-options", 43, Hex, false),
    ("netbios-name-servers", 44, Ip, true),
    ("netbios-dd-server", 45, Ip, true),
    ("netbios-node-type", 46, UInt(1), false),
    ("netbios-scope", 47, Text, false),
    ("font-servers", 48, Ip, true),
    ("x-display-manager", 49, Ip, true),
    ("dhcp-requested-address", 50, Ip, false),
    ("dhcp-lease-time", 51, UInt(4), false),
    ("dhcp-option-overload", 52, UInt(1), false),
    ("dhcp-message-type", 53, UInt(1), false),
    ("dhcp-server-identifier", 54, Ip, false),
    ("dhcp-parameter-request-list", 55, UInt(1), true),
    ("dhcp-message", 56, Text, false),
    ("dhcp-max-message-size", 57, UInt(2), false),
    ("dhcp-renewal-time", 58, UInt(4), false),
    ("dhcp-rebinding-time", 59, UInt(4), false),
    ("vendor-class-identifier", 60, Text, false),
    ("dhcp-client-identifier", 61, Str, false),
    ("nwip-domain", 62, Text, false),
    ("nisplus-domain", 64, Text, false),
    ("nisplus-servers", 65, Ip, true),
    ("tftp-server-name", 66, Text, false),
    ("bootfile-name", 67, Text, false),
    ("boot-file-name", 67, Text, false),
    ("mobile-ip-home-agent", 68, Ip, true),
    ("smtp-server", 69, Ip, true),
    ("pop-server", 70, Ip, true),
    ("nntp-server", 71, Ip, true),
    ("www-server", 72, Ip, true),
    ("finger-server", 73, Ip, true),
    ("irc-server", 74, Ip, true),
    ("streettalk-server", 75, Ip, true),
    ("streettalk-directory-assistance-server", 76, Ip, true),
    ("user-class", 77, Str, false),
    ("slp-directory-agent", 78, Hex, false),
    ("slp-service-scope", 79, Hex, false),
    ("nds-servers", 85, Ip, true),
    ("nds-tree-name", 86, Text, false),
    ("nds-context", 87, Text, false),
    ("pcode", 100, Text, false),
    ("tcode", 101, Text, false),
    ("v6-only-preferred", 108, UInt(4), false),
    ("netinfo-server-address", 112, Ip, true),
    ("netinfo-server-tag", 113, Text, false),
    ("default-url", 114, Text, false),
    ("auto-config", 116, UInt(1), false),
    ("subnet-selection", 118, Ip, false),
    ("domain-search", 119, Domains, false),
    ("classless-static-route", 121, Routes, false),
    ("vivco-suboptions", 124, Hex, false),
    ("vivso-suboptions", 125, Hex, false),
    ("tftp-server-address", 150, Ip, true),
];

/// The option definitions one source file can use: the standard ones plus its own.
#[derive(Clone, Debug, Default)]
pub struct Defs {
    own: HashMap<String, Def>,
}

impl Defs {
    /// Only the standard definitions.
    pub fn new() -> Defs {
        Defs::default()
    }

    /// Add a definition of the file's own (it shadows a standard name).
    pub fn define(&mut self, d: Def) {
        self.own.insert(d.name.to_ascii_lowercase(), d);
    }

    /// The definition named `name` (the file's own first; dhcpd's `unknown-N` names option
    /// `N` as raw bytes).
    pub fn by_name(&self, name: &str) -> Option<Def> {
        let n = name.to_ascii_lowercase();
        if let Some(d) = self.own.get(&n) {
            return Some(d.clone());
        }
        if let Some(code) = n
            .strip_prefix("unknown-")
            .and_then(|c| c.parse::<u8>().ok())
            .filter(|c| (1..=254).contains(c))
        {
            return Some(Def {
                name: n.clone(),
                code,
                kind: Kind::Hex,
                array: false,
            });
        }
        STANDARD
            .iter()
            .find(|(s, ..)| *s == n)
            .map(|&(s, code, kind, array)| Def {
                name: s.to_string(),
                code,
                kind,
                array,
            })
    }

    /// The definition of `code` (the file's own first).
    pub fn by_code(&self, code: u8) -> Option<Def> {
        if let Some(d) = self.own.values().find(|d| d.code == code) {
            return Some(d.clone());
        }
        STANDARD
            .iter()
            .find(|(_, c, ..)| *c == code)
            .map(|&(s, code, kind, array)| Def {
                name: s.to_string(),
                code,
                kind,
                array,
            })
    }
}

/// One field of an option value as the source wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An unquoted word (number, address, hex bytes, keyword).
    Word(String),
    /// A quoted string, unescaped.
    Quoted(Vec<u8>),
}

impl Item {
    fn text(&self) -> String {
        match self {
            Item::Word(w) => w.clone(),
            Item::Quoted(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// Parse hex bytes: `aa:bb:c`, `aa-bb`, `0xaabb`, `aabb` or `aa bb` (groups of one or two
/// digits when separated).
pub fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let bad = || format!("`{s}` is not hex bytes");
    if t.contains([':', '-', ' ']) {
        t.split([':', '-', ' '])
            .filter(|g| !g.is_empty())
            .map(|g| {
                if g.len() > 2 {
                    Err(bad())
                } else {
                    u8::from_str_radix(g, 16).map_err(|_| bad())
                }
            })
            .collect()
    } else {
        if t.len() % 2 == 1 || !t.is_ascii() {
            return Err(bad());
        }
        (0..t.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&t[i..i + 2], 16).map_err(|_| bad()))
            .collect()
    }
}

fn int(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16)
    } else {
        t.parse::<i64>()
    };
    r.map_err(|_| format!("`{s}` is not an integer"))
}

fn one_field(kind: Kind, item: &Item, out: &mut Vec<u8>) -> Result<(), String> {
    match kind {
        Ip => {
            let s = item.text();
            let a: Ipv4Addr = s.trim().parse().map_err(|_| {
                format!("`{s}` is not an IPv4 address (host names are not resolved on import)")
            })?;
            out.extend_from_slice(&a.octets());
        }
        UInt(w) | SInt(w) => {
            let n = int(&item.text())?;
            let bits = u32::from(w) * 8;
            let ok = if matches!(kind, UInt(_)) {
                n >= 0 && (n as u64) < (1u64 << bits)
            } else {
                let lim = 1i64 << (bits - 1);
                (-lim..lim).contains(&n)
            };
            if !ok {
                return Err(format!(
                    "{n} does not fit a{} {bits}-bit integer",
                    if matches!(kind, UInt(_)) {
                        "n unsigned"
                    } else {
                        " signed"
                    }
                ));
            }
            let b = (n as u64).to_be_bytes();
            out.extend_from_slice(&b[8 - usize::from(w)..]);
        }
        Bool => {
            let s = item.text().to_ascii_lowercase();
            out.push(match s.trim() {
                "on" | "true" | "1" => 1,
                "off" | "false" | "0" => 0,
                _ => return Err(format!("`{s}` is not a boolean (on/off, true/false)")),
            });
        }
        Text => out.extend_from_slice(&match item {
            Item::Quoted(b) => b.clone(),
            Item::Word(w) => w.as_bytes().to_vec(),
        }),
        Str | Hex => match item {
            Item::Quoted(b) if kind == Str => out.extend_from_slice(b),
            other => out.extend(hex_bytes(&other.text())?),
        },
        Domains | Routes => return Err("not a scalar field".into()),
    }
    Ok(())
}

/// The value of an option defined by `def` from its written fields.
pub fn value(def: &Def, items: &[Item]) -> Result<OptValue, String> {
    if items.is_empty() {
        return Err("the option has no value".into());
    }
    match def.kind {
        Domains => {
            let mut names = Vec::new();
            for it in items {
                for n in it.text().split([',', ' ']).filter(|n| !n.is_empty()) {
                    names.push(n.to_string());
                }
            }
            if names
                .iter()
                .any(|n| n.len() > 253 || n.split('.').any(|l| l.len() > 63))
            {
                return Err("a domain name is too long".into());
            }
            return Ok(OptValue::Domains(names));
        }
        Routes => return routes(items).map(OptValue::Routes),
        _ => {}
    }
    if !def.array && items.len() > 1 && def.kind != Text {
        return Err(format!(
            "{} takes one value, {} are given",
            def.name,
            items.len()
        ));
    }
    if def.kind == Text {
        let s = items
            .iter()
            .map(Item::text)
            .collect::<Vec<_>>()
            .join(if def.array { "," } else { " " });
        return Ok(OptValue::Text(s));
    }
    let mut bytes = Vec::new();
    for it in items {
        one_field(def.kind, it, &mut bytes)?;
    }
    Ok(match def.kind {
        Ip => OptValue::Ips(
            bytes
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect(),
        ),
        UInt(w) | SInt(w) if !def.array && w != 8 => {
            let mut v = 0u32;
            for b in &bytes {
                v = (v << 8) | u32::from(*b);
            }
            if matches!(def.kind, SInt(_)) {
                OptValue::Hex(bytes)
            } else {
                OptValue::Int { width: w, value: v }
            }
        }
        Bool if !def.array => OptValue::Bool(bytes.first() == Some(&1)),
        Str if items.len() == 1 && matches!(items[0], Item::Quoted(_)) => {
            match String::from_utf8(bytes.clone()) {
                Ok(s) if !s.is_empty() && !s.chars().any(char::is_control) => OptValue::Text(s),
                _ => OptValue::Hex(bytes),
            }
        }
        _ => OptValue::Hex(bytes),
    })
}

/// Kea's `classless-static-route` data: `DEST/PREFIX - GATEWAY, ...`.
fn routes(items: &[Item]) -> Result<Vec<(Ipv4Addr, u8, Ipv4Addr)>, String> {
    let text: String = items.iter().map(Item::text).collect::<Vec<_>>().join(",");
    let mut out = Vec::new();
    for r in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let bad = || format!("`{r}` is not a route like 10.1.0.0/16 - 10.0.0.1");
        let (dest, gw) = r.split_once('-').ok_or_else(bad)?;
        let (a, p) = dest.trim().split_once('/').ok_or_else(bad)?;
        let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let p: u8 = p.trim().parse().map_err(|_| bad())?;
        let gw: Ipv4Addr = gw.trim().parse().map_err(|_| bad())?;
        if p > 32 {
            return Err(bad());
        }
        out.push((a, p, gw));
    }
    Ok(out)
}

/// dhcpd's type syntax of `option NAME code N = TYPE;` (the words of TYPE).
pub fn dhcpd_type(words: &[String]) -> Result<(Kind, bool), String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let (array, w) = match w.as_slice() {
        ["array", "of", rest @ ..] => (true, rest.to_vec()),
        rest => (false, rest.to_vec()),
    };
    let width = |s: &str| match s {
        "8" => Ok(1u8),
        "16" => Ok(2),
        "32" => Ok(4),
        _ => Err(format!("integer width `{s}` is not 8, 16 or 32")),
    };
    let kind = match w.as_slice() {
        ["ip-address"] => Ip,
        ["text"] => Text,
        ["string"] => Str,
        ["boolean"] => Bool,
        ["unsigned", "integer", n] => UInt(width(n)?),
        ["signed", "integer", n] | ["integer", n] => SInt(width(n)?),
        ["domain-list"] | ["domain-list", "compressed"] => Domains,
        _ => {
            return Err(format!(
                "type `{}` (records, encapsulations and IPv6 types) cannot be written as one Tandem option",
                words.join(" ")
            ))
        }
    };
    Ok((kind, array))
}

/// Kea's `option-def` type (and `array` flag).
pub fn kea_type(ty: &str, array: bool) -> Result<(Kind, bool), String> {
    let kind = match ty {
        "ipv4-address" => Ip,
        "string" => Text,
        "binary" => Hex,
        "boolean" => Bool,
        "uint8" => UInt(1),
        "uint16" => UInt(2),
        "uint32" => UInt(4),
        "int8" => SInt(1),
        "int16" => SInt(2),
        "int32" => SInt(4),
        "fqdn" => Domains,
        "empty" => Hex,
        other => {
            return Err(format!(
                "option-def type `{other}` (records, tuples, IPv6 types) cannot be written as one Tandem option"
            ))
        }
    };
    Ok((kind, array))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Item {
        Item::Word(s.into())
    }

    #[test]
    fn standard_names_and_codes_resolve() {
        let d = Defs::new();
        assert_eq!(d.by_name("Routers").unwrap().code, 3);
        assert_eq!(d.by_name("boot-file-name").unwrap().code, 67);
        assert_eq!(d.by_code(6).unwrap().name, "domain-name-servers");
        assert!(d.by_name("no-such-option").is_none());
        let u = d.by_name("unknown-224").unwrap();
        assert_eq!((u.code, u.kind), (224, Kind::Hex));
        assert!(d.by_name("unknown-0").is_none());
    }

    #[test]
    fn own_definitions_shadow_the_standard_ones() {
        let mut d = Defs::new();
        let (kind, array) =
            dhcpd_type(&["array".into(), "of".into(), "ip-address".into()]).expect("type");
        d.define(Def {
            name: "voip-tftp".into(),
            code: 150,
            kind,
            array,
        });
        let def = d.by_name("voip-tftp").unwrap();
        assert_eq!(
            value(&def, &[w("10.0.0.1"), w("10.0.0.2")]).unwrap(),
            OptValue::Ips(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)])
        );
        assert!(dhcpd_type(&["{".into(), "text".into(), "}".into()]).is_err());
    }

    #[test]
    fn values_are_checked_against_their_type() {
        let d = Defs::new();
        let mtu = d.by_name("interface-mtu").unwrap();
        assert_eq!(
            value(&mtu, &[w("1500")]).unwrap(),
            OptValue::Int {
                width: 2,
                value: 1500
            }
        );
        assert!(value(&mtu, &[w("70000")]).is_err());
        assert!(value(&d.by_name("routers").unwrap(), &[w("gw.example")]).is_err());
        let cid = d.by_name("dhcp-client-identifier").unwrap();
        assert_eq!(
            value(&cid, &[w("1:52:54:0:12:34:56")]).unwrap(),
            OptValue::Hex(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        let ds = d.by_name("domain-search").unwrap();
        assert_eq!(
            value(
                &ds,
                &[
                    Item::Quoted(b"a.example".to_vec()),
                    Item::Quoted(b"b".to_vec())
                ]
            )
            .unwrap(),
            OptValue::Domains(vec!["a.example".into(), "b".into()])
        );
        let r = d.by_code(121).unwrap();
        assert_eq!(
            value(&r, &[w("10.1.0.0/16 - 10.0.0.1")]).unwrap(),
            OptValue::Routes(vec![(
                Ipv4Addr::new(10, 1, 0, 0),
                16,
                Ipv4Addr::new(10, 0, 0, 1)
            )])
        );
    }

    #[test]
    fn hex_accepts_the_usual_spellings() {
        assert_eq!(hex_bytes("0x0a0B").unwrap(), [10, 11]);
        assert_eq!(hex_bytes("1:a:ff").unwrap(), [1, 10, 255]);
        assert_eq!(hex_bytes("01 02").unwrap(), [1, 2]);
        assert!(hex_bytes("abc").is_err());
        assert!(hex_bytes("zz").is_err());
    }
}
