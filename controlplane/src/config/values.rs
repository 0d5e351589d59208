//! Parsers for the textual values of the configuration: addresses, subnets, ranges, durations,
//! hardware addresses, hex bytes, domain names and static routes. Each returns a message fit for
//! an operator on failure.

use std::net::Ipv4Addr;
use std::str::FromStr;

use tandem_dataplane::scope::{AddrRange, Subnet};

/// An IPv4 address in dotted-quad form.
pub(crate) fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    Ipv4Addr::from_str(s).map_err(|_| format!("`{s}` is not an IPv4 address (expected a.b.c.d)"))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// `ADDRESS/PREFIX` with host bits kept as written (for [`subnet`] and [`route`]).
fn cidr(s: &str, what: &str, example: &str) -> Result<(Ipv4Addr, u8), String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!(
            "`{s}` is not {what}: expected ADDRESS/PREFIX like {example}"
        ));
    };
    let addr = Ipv4Addr::from_str(addr.trim())
        .map_err(|_| format!("`{s}`: `{}` is not an IPv4 address", addr.trim()))?;
    let prefix: u8 = match prefix.trim().parse() {
        Ok(p) if p <= 32 => p,
        _ => {
            return Err(format!(
                "`{s}`: prefix length `{}` is not a number from 0 to 32",
                prefix.trim()
            ))
        }
    };
    Ok((addr, prefix))
}

/// A subnet `a.b.c.d/p` with host bits zero and `p` in 1..=32.
pub(crate) fn subnet(s: &str) -> Result<Subnet, String> {
    let (addr, prefix) = cidr(s, "a subnet", "10.0.0.0/24")?;
    if prefix == 0 {
        return Err(format!(
            "`{s}`: a /0 subnet covers every address; the prefix length must be 1 to 32"
        ));
    }
    let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
    if network != addr {
        return Err(format!(
            "`{s}` has host bits set; the subnet is {network}/{prefix}"
        ));
    }
    Ok(Subnet { network, prefix })
}

/// A range `a.b.c.d-e.f.g.h` (spaces around `-` allowed); a lone address is a one-address range
/// when `single_ok`.
pub(crate) fn range(s: &str, single_ok: bool) -> Result<AddrRange, String> {
    let Some((a, b)) = s.split_once('-') else {
        if single_ok {
            let addr = Ipv4Addr::from_str(s.trim()).map_err(|_| {
                format!("`{s}` is not an address or a range (expected a.b.c.d or a.b.c.d-e.f.g.h)")
            })?;
            return Ok(AddrRange::new(addr, addr));
        }
        return Err(if Ipv4Addr::from_str(s.trim()).is_ok() {
            format!("`{s}` is a single address; a range needs a start and an end, like \"{s}-{s}\"")
        } else {
            format!("`{s}` is not a range (expected \"a.b.c.d-e.f.g.h\")")
        });
    };
    range_pair(a.trim(), b.trim())
}

/// A range from two address strings.
pub(crate) fn range_pair(a: &str, b: &str) -> Result<AddrRange, String> {
    let start =
        Ipv4Addr::from_str(a).map_err(|_| format!("range start `{a}` is not an IPv4 address"))?;
    let end =
        Ipv4Addr::from_str(b).map_err(|_| format!("range end `{b}` is not an IPv4 address"))?;
    if start > end {
        return Err(format!(
            "range start {start} is after its end {end} (write \"{end}-{start}\")"
        ));
    }
    Ok(AddrRange::new(start, end))
}

/// Render a range as `a-b` (or `a` for one address).
pub(crate) fn show_range(r: &AddrRange) -> String {
    if r.start == r.end {
        r.start.to_string()
    } else {
        format!("{}-{}", r.start, r.end)
    }
}

/// A duration: seconds as digits, or numbers with units `s`, `m`, `h`, `d`, `w`, like `"1h30m"`.
pub(crate) fn duration(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{s}` is not a duration: expected seconds, or numbers with units s, m, h, d, w \
             like \"45s\", \"30m\", \"8h\", \"1d12h\""
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|_| format!("`{s}` is too long a duration"));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}` is too long a duration"))?;
        rest = &rest[digits..];
        let unit = rest.chars().next().ok_or_else(bad)?;
        let factor: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        rest = &rest[unit.len_utf8()..];
        total = n
            .checked_mul(factor)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("`{s}` is too long a duration"))?;
    }
    Ok(total)
}

/// Render seconds the way an operator would write them (`"8h"`, `"1d12h"`, `"90s"`).
pub(crate) fn show_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Bytes written in hex: optional `0x`, then either contiguous pairs (`"0a0b"`) or groups of one
/// or two digits separated by `:` (`"0a:b:0c"`). The empty string is no bytes.
pub(crate) fn hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if let Some(c) = t.chars().find(|c| !c.is_ascii()) {
        return Err(format!("`{s}` is not hex bytes: `{c}` is not a hex digit"));
    }
    let digit = |c: char| c.to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(t.len() / 2);
    if t.contains(':') {
        for group in t.split(':') {
            let b = match group.len() {
                1 | 2 => group
                    .chars()
                    .try_fold(0u8, |acc, c| digit(c).map(|d| acc * 16 + d)),
                _ => None,
            };
            match b {
                Some(b) => out.push(b),
                None => {
                    return Err(format!(
                        "`{s}` is not hex bytes: `{group}` is not one or two hex digits"
                    ))
                }
            }
        }
    } else {
        if t.len() % 2 == 1 {
            return Err(format!(
                "`{s}` is not hex bytes: odd number of hex digits (write two digits per byte)"
            ));
        }
        // All ASCII (checked above), so bytes are characters and the length is even.
        for pair in t.as_bytes().chunks_exact(2) {
            let (h, l) = (char::from(pair[0]), char::from(pair[1]));
            match (digit(h), digit(l)) {
                (Some(h), Some(l)) => out.push(h * 16 + l),
                _ => {
                    return Err(format!(
                        "`{s}` is not hex bytes: `{h}{l}` is not a hex byte"
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// An Ethernet address: six two-digit hex groups separated by `:` or `-`, or twelve hex digits.
pub(crate) fn mac(s: &str) -> Result<[u8; 6], String> {
    let bad =
        || format!("`{s}` is not a MAC address (expected six hex bytes like 52:54:00:12:34:56)");
    let t = s.trim();
    let groups: Vec<&str> = if t.contains(':') {
        t.split(':').collect()
    } else if t.contains('-') {
        t.split('-').collect()
    } else if t.len() == 12 {
        (0..6).filter_map(|i| t.get(2 * i..2 * i + 2)).collect()
    } else {
        return Err(bad());
    };
    if groups.len() != 6 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, g) in out.iter_mut().zip(&groups) {
        if g.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(g, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Check a domain name (RFC 1035 labels, RFC 1123 leading digits allowed); returns it without a
/// trailing dot.
pub(crate) fn domain(s: &str) -> Result<String, String> {
    let t = s.strip_suffix('.').unwrap_or(s);
    if t.is_empty() {
        return Err("a domain name cannot be empty".into());
    }
    if t.len() > 253 {
        return Err(format!(
            "`{s}` is {} characters long; a domain name has at most 253",
            t.len()
        ));
    }
    for label in t.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{s}` has an empty label (two dots in a row, or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "`{s}`: label `{label}` is {} characters long; a label has at most 63",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "`{s}`: label `{label}` contains `{c}`; labels use letters, digits and hyphens (RFC 1035)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{s}`: label `{label}` starts or ends with a hyphen (RFC 1035)"
            ));
        }
    }
    Ok(t.to_string())
}

/// A checked domain name in DNS wire form (length-prefixed labels, then a zero byte).
pub(crate) fn domain_wire(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.') {
        // domain() limits labels to 63 bytes, so the length fits the byte.
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// A static route `DEST/PREFIX via GATEWAY`: (destination, prefix length, gateway).
pub(crate) fn route(s: &str) -> Result<(Ipv4Addr, u8, Ipv4Addr), String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let [dest, via, gw] = words.as_slice() else {
        return Err(format!(
            "`{s}` is not a route: expected \"DEST/PREFIX via GATEWAY\" like \"10.1.0.0/16 via 10.0.0.1\""
        ));
    };
    if !via.eq_ignore_ascii_case("via") {
        return Err(format!(
            "`{s}` is not a route: expected \"DEST/PREFIX via GATEWAY\" like \"10.1.0.0/16 via 10.0.0.1\""
        ));
    }
    let (addr, prefix) = cidr(dest, "a route destination", "10.1.0.0/16")?;
    let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
    if network != addr {
        return Err(format!(
            "route destination `{dest}` has host bits set; the destination is {network}/{prefix}"
        ));
    }
    let gw = Ipv4Addr::from_str(gw)
        .map_err(|_| format!("`{s}`: gateway `{gw}` is not an IPv4 address"))?;
    Ok((network, prefix, gw))
}

/// Append one classless static route in RFC 3442 form: prefix length, the significant octets of
/// the destination, then the router.
pub(crate) fn route_wire(dest: Ipv4Addr, prefix: u8, gw: Ipv4Addr, out: &mut Vec<u8>) {
    out.push(prefix);
    let significant = usize::from(prefix).div_ceil(8);
    out.extend_from_slice(&dest.octets()[..significant]);
    out.extend_from_slice(&gw.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(duration("90"), Ok(90));
        assert_eq!(duration("45s"), Ok(45));
        assert_eq!(duration("30m"), Ok(1800));
        assert_eq!(duration("8h"), Ok(28_800));
        assert_eq!(duration("1d12h"), Ok(129_600));
        assert_eq!(duration("1h 30m"), Ok(5400));
        assert_eq!(duration("2w"), Ok(1_209_600));
        assert!(duration("8x").is_err());
        assert!(duration("h").is_err());
        assert!(duration("").is_err());
        assert!(duration("1.5h").is_err());
        assert!(duration("99999999999999999999w").is_err());
        assert_eq!(show_duration(129_600), "1d12h");
        assert_eq!(show_duration(90), "1m30s");
    }

    #[test]
    fn subnets_need_zero_host_bits() {
        assert_eq!(
            subnet("10.0.0.0/24"),
            Ok(Subnet {
                network: Ipv4Addr::new(10, 0, 0, 0),
                prefix: 24
            })
        );
        assert_eq!(
            subnet("10.0.0.5/24").unwrap_err(),
            "`10.0.0.5/24` has host bits set; the subnet is 10.0.0.0/24"
        );
        assert!(subnet("10.0.0.0/33").is_err());
        assert!(subnet("10.0.0.0").is_err());
        assert!(subnet("0.0.0.0/0").is_err());
        assert!(subnet("10.0.0.1/32").is_ok());
    }

    #[test]
    fn ranges_and_single_addresses() {
        let r = range("10.0.0.1 - 10.0.0.9", false).unwrap();
        assert_eq!(
            r,
            AddrRange::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 9))
        );
        assert!(range("10.0.0.1", false).is_err());
        assert_eq!(range("10.0.0.1", true).unwrap().len(), 1);
        assert!(range("10.0.0.9-10.0.0.1", false)
            .unwrap_err()
            .contains("after its end"));
    }

    #[test]
    fn macs_and_hex() {
        assert_eq!(
            mac("52:54:00:12:34:5A"),
            Ok([0x52, 0x54, 0, 0x12, 0x34, 0x5a])
        );
        assert_eq!(
            mac("52-54-00-12-34-56"),
            Ok([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(mac("525400123456"), Ok([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(mac("52:54:00:12:34").is_err());
        assert!(mac("52:54:00:12:34:5g").is_err());
        assert!(mac("5:54:00:12:34:56").is_err());
        assert_eq!(hex("01:2:ff"), Ok(vec![1, 2, 0xff]));
        assert_eq!(hex("0x0102"), Ok(vec![1, 2]));
        assert_eq!(hex(""), Ok(vec![]));
        assert!(hex("123").is_err());
        assert!(hex("zz").is_err());
        assert!(hex("01::02").is_err());
        assert!(hex("éa").is_err());
        assert!(hex("aé").is_err());
    }

    #[test]
    fn domains_follow_rfc1035() {
        assert_eq!(domain("example.com."), Ok("example.com".into()));
        assert!(domain("3com.example").is_ok());
        assert!(domain("bad_label.example").unwrap_err().contains("`_`"));
        assert!(domain("-x.example").is_err());
        assert!(domain("a..b").is_err());
        assert!(domain(&"a".repeat(64)).is_err());
        let mut w = Vec::new();
        domain_wire("corp.example", &mut w);
        assert_eq!(w, b"\x04corp\x07example\x00");
    }

    #[test]
    fn routes_parse_and_check_host_bits() {
        assert_eq!(
            route("10.1.0.0/16 via 10.0.0.1"),
            Ok((Ipv4Addr::new(10, 1, 0, 0), 16, Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(
            route("10.1.2.0/16 via 10.0.0.1").unwrap_err(),
            "route destination `10.1.2.0/16` has host bits set; the destination is 10.1.0.0/16"
        );
        assert!(route("10.1.0.0/16 10.0.0.1").is_err());
        assert!(route("10.1.0.0/16 via 10.0.0").is_err());
    }
}
