//! Tests of the configuration loader: the example file, every class of mistake (with exact line
//! and key), defaults, and byte-exact option encodings.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tandem_dataplane::scope::{
    AddrRange, Combine, Condition, Criterion, Durability, Matcher, ReservationKey, Subnet,
};

use super::*;

/// Three lines: the smallest valid `[server]`.
const SERVER: &str = "[server]\nserver_id = \"10.0.0.1\"\ninterfaces = [\"eth0\"]\n";

/// A document: `SERVER` (lines 1-3) followed by `rest` (its first line is line 4).
fn doc(rest: &str) -> String {
    format!("{SERVER}{rest}")
}

/// (line, key, message) of every error, in report order.
fn errors(text: &str) -> Vec<(usize, String, String)> {
    match parse(text, "t.toml") {
        Ok(_) => panic!("expected errors, the configuration parsed"),
        Err(e) => {
            e.0.into_iter()
                .map(|e| (e.line, e.key, e.message))
                .collect()
        }
    }
}

/// (line, key) of every error.
fn where_(text: &str) -> Vec<(usize, String)> {
    errors(text).into_iter().map(|(l, k, _)| (l, k)).collect()
}

/// The only error: (line, key, message).
fn only(text: &str) -> (usize, String, String) {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

fn ok(text: &str) -> Config {
    match parse(text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn range(a: &str, b: &str) -> AddrRange {
    AddrRange::new(ip(a), ip(b))
}

/// A one-scope document with the scope's extra lines `extra` (starting at line 8).
/// Lines 4-7: `[[scope]]`, name, subnet 10.0.0.0/24, ranges 10.0.0.100-10.0.0.200.
fn scope(extra: &str) -> String {
    doc(&format!("{LAN}{extra}"))
}

/// Four lines: a scope "lan" on 10.0.0.0/24 with range 10.0.0.100-10.0.0.200.
const LAN: &str =
    "[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\nranges = [\"10.0.0.100-10.0.0.200\"]\n";

#[test]
fn example_file_parses() {
    let c = ok(include_str!("../../../deploy/tandem.example.toml"));
    let s = &c.settings;
    assert_eq!(s.server_id, ip("10.20.0.2"));
    assert_eq!(c.daemon.interfaces, vec!["eth1".to_string()]);
    assert_eq!((c.daemon.workers, c.daemon.batch_size), (1, 256));
    assert_eq!(c.daemon.durability, Durability::Sync);
    assert_eq!(c.scope_interfaces, vec![Some("eth1".to_string()), None]);
    assert_eq!(
        s.global_options.get(6),
        Some(&[10, 0, 0, 53, 10, 0, 1, 53][..])
    );
    assert_eq!(s.global_options.get(15), Some(&b"corp.example"[..]));
    assert_eq!(
        s.global_options.get(119),
        Some(&b"\x04corp\x07example\x00\x07example\x00"[..])
    );

    let names: Vec<&str> = s.scopes.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["hq-lan", "branch-voice"]);
    let hq = &s.scopes[0];
    assert_eq!(
        hq.subnet,
        Subnet {
            network: ip("10.20.0.0"),
            prefix: 24
        }
    );
    assert_eq!(hq.ranges, vec![range("10.20.0.50", "10.20.0.249")]);
    assert_eq!(
        hq.exclusions,
        vec![
            range("10.20.0.77", "10.20.0.77"),
            range("10.20.0.100", "10.20.0.109")
        ]
    );
    assert_eq!(hq.lease_time, 8 * 3600);
    assert_eq!((hq.renew_time, hq.rebind_time), (None, None));
    assert!(hq.authoritative);
    assert_eq!(
        hq.options.get(1),
        Some(&[255, 255, 255, 0][..]),
        "mask computed from the subnet"
    );
    assert_eq!(hq.options.get(3), Some(&[10, 20, 0, 1][..]));
    assert_eq!(hq.options.get(26), Some(&[0x05, 0xdc][..]));
    assert_eq!(
        hq.options.get(252),
        Some(&b"http://wpad.corp.example/wpad.dat"[..])
    );
    assert_eq!(hq.reservations.len(), 2);
    assert_eq!(
        hq.reservations[0].key,
        ReservationKey::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(hq.reservations[0].hostname.as_deref(), Some("printer-2f"));
    assert_eq!(
        hq.reservations[1].key,
        ReservationKey::ClientId(vec![1, 0x52, 0x54, 0, 0xab, 0xcd, 0xef])
    );
    assert_eq!(hq.reservations[1].options.get(6), Some(&[10, 20, 0, 5][..]));
    assert!(hq.reservations[0].options.is_empty());

    assert_eq!(hq.policies.len(), 2);
    let phones = &hq.policies[0];
    assert_eq!((phones.name.as_str(), phones.order), ("ip-phones", 1));
    assert_eq!(phones.combine, Combine::Any);
    assert_eq!(phones.ranges, vec![range("10.20.0.200", "10.20.0.249")]);
    assert_eq!(phones.lease_time, Some(86_400));
    assert_eq!(
        phones.conditions,
        vec![
            Condition {
                criterion: Criterion::VendorClass,
                matchers: vec![Matcher::Prefix(b"Polycom".to_vec())],
                negate: false
            },
            Condition {
                criterion: Criterion::Mac,
                matchers: vec![Matcher::Prefix(vec![0x00, 0x04, 0xf2])],
                negate: false
            },
            Condition {
                criterion: Criterion::Mac,
                matchers: vec![
                    Matcher::Prefix(vec![0x64, 0x16, 0x7f]),
                    Matcher::Prefix(vec![0x00, 0xe0, 0xdb])
                ],
                negate: false
            },
        ]
    );
    assert_eq!(phones.options.get(42), Some(&[10, 20, 0, 1][..]));
    assert_eq!(
        phones.options.get(66),
        Some(&b"provisioning.corp.example"[..])
    );
    let pxe = &hq.policies[1];
    assert_eq!(pxe.combine, Combine::All);
    assert!(pxe.ranges.is_empty());
    assert_eq!(
        pxe.conditions[1],
        Condition {
            criterion: Criterion::UserClass,
            matchers: vec![Matcher::Exact(b"iPXE".to_vec())],
            negate: true
        }
    );

    let br = &s.scopes[1];
    assert_eq!(br.ranges.len(), 2);
    assert_eq!(
        (br.lease_time, br.renew_time, br.rebind_time),
        (43_200, Some(14_400), Some(32_400))
    );
    assert_eq!(br.options.get(150), Some(&[10, 0, 0, 69, 10, 0, 1, 69][..]));
    assert_eq!(
        br.options.get(121),
        Some(
            &[
                8, 10, 10, 30, 5, 1, // 10.0.0.0/8 via 10.30.5.1
                24, 192, 168, 50, 10, 30, 5, 254, // 192.168.50.0/24 via 10.30.5.254
                0, 10, 30, 5, 1, // default via 10.30.5.1
            ][..]
        )
    );
    assert_eq!(br.policies[0].conditions[0].criterion, Criterion::CircuitId);
    assert_eq!(br.policies[0].lease_time, Some(45_000));
}

#[test]
fn minimal_config_takes_the_defaults() {
    let c = ok(&scope(""));
    let d = &c.daemon;
    assert_eq!(d.state_dir, PathBuf::from("/var/lib/tandem"));
    assert_eq!(d.durability, Durability::Sync);
    assert_eq!(
        d.admin_listen,
        "127.0.0.1:9167".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(d.interfaces, vec!["eth0".to_string()]);
    assert_eq!((d.server_port, d.client_port), (67, 68));
    assert_eq!((d.workers, d.batch_size), (1, 256));
    assert_eq!(d.log_format, LogFormat::Text);
    assert_eq!(d.compact_after_records, 1_000_000);
    let s = &c.settings;
    assert_eq!(s.offer_hold_secs, 30);
    assert_eq!(s.decline_probation_secs, 3600);
    assert_eq!(s.duplicate_window_ms, 2000);
    assert!(s.global_options.is_empty());
    let sc = &s.scopes[0];
    assert_eq!(sc.lease_time, 86_400);
    assert!(sc.authoritative);
    assert!(sc.exclusions.is_empty() && sc.reservations.is_empty() && sc.policies.is_empty());
    assert_eq!(
        sc.options.iter().collect::<Vec<_>>(),
        vec![(1, &[255, 255, 255, 0][..])]
    );
    assert_eq!(c.scope_interfaces, vec![None]);
}

#[test]
fn server_settings_are_read() {
    let c = ok(&scope("").replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\", \"eth1\"]\nstate_dir = \"/tmp/t\"\ndurability = \"relaxed\"\n\
         admin_listen = \"[::1]:8080\"\nserver_port = 1067\nclient_port = 1068\nworkers = 4\n\
         batch_size = 128\nlog_format = \"json\"\ncompact_after_records = 5000\n\
         offer_hold_time = \"1m\"\ndecline_probation_time = 600\nduplicate_window_ms = 500\n",
    ));
    let d = &c.daemon;
    assert_eq!(d.interfaces, vec!["eth0".to_string(), "eth1".to_string()]);
    assert_eq!(d.state_dir, PathBuf::from("/tmp/t"));
    assert_eq!(d.durability, Durability::Relaxed);
    assert_eq!(d.admin_listen, "[::1]:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(
        (d.server_port, d.client_port, d.workers, d.batch_size),
        (1067, 1068, 4, 128)
    );
    assert_eq!(d.log_format, LogFormat::Json);
    assert_eq!(d.compact_after_records, 5000);
    let s = &c.settings;
    assert_eq!(
        (
            s.offer_hold_secs,
            s.decline_probation_secs,
            s.duplicate_window_ms
        ),
        (60, 600, 500)
    );
}

#[test]
fn unknown_key_at_top_level() {
    let (line, key, msg) = only(&format!("\nscopes = 1\n{}", scope("")));
    assert_eq!((line, key.as_str()), (2, "scopes"));
    assert_eq!(msg, "unknown key `scopes`; did you mean `scope`?");
    let (line, key, msg) = only(&format!("lease_time = \"1h\"\n{}", scope("")));
    assert_eq!((line, key.as_str()), (1, "lease_time"));
    assert_eq!(
        msg,
        "unknown key `lease_time`; `lease_time` belongs in a [[scope]]"
    );
}

#[test]
fn unknown_key_in_server_names_the_table() {
    let text = scope("").replace(
        "[server]\n",
        "[server]\nworker = 2\nrouters = [\"10.0.0.1\"]\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            (
                2,
                "server.worker".into(),
                "unknown key `worker`; did you mean `workers`?".into()
            ),
            (
                3,
                "server.routers".into(),
                "unknown key `routers`; `routers` is an option: put it in the [options] table"
                    .into()
            ),
        ]
    );
}

#[test]
fn unknown_key_in_scope() {
    let (line, key, msg) = only(&scope("rangs = [\"10.0.0.5-10.0.0.6\"]\n"));
    assert_eq!((line, key.as_str()), (8, "scope.\"lan\".rangs"));
    assert_eq!(msg, "unknown key `rangs`; did you mean `ranges`?");
    let (line, key, msg) = only(&scope("dns_servers = [\"10.0.0.53\"]\n"));
    assert_eq!((line, key.as_str()), (8, "scope.\"lan\".dns_servers"));
    assert_eq!(
        msg,
        "unknown key `dns_servers`; `dns_servers` is an option: put it in [scope.options]"
    );
}

#[test]
fn unknown_key_in_options() {
    let (line, key, msg) = only(&scope("[scope.options]\nrouter = [\"10.0.0.1\"]\n"));
    assert_eq!((line, key.as_str()), (9, "scope.\"lan\".options.router"));
    assert_eq!(msg, "unknown key `router`; did you mean `routers`?");
    let (line, key, msg) = only(&doc(&format!("[options]\nwpad = \"x\"\n{LAN}")));
    assert_eq!((line, key.as_str()), (5, "options.wpad"));
    assert!(
        msg.starts_with("unknown key `wpad`; named options are subnet_mask, routers,"),
        "{msg}"
    );
    assert!(
        msg.ends_with("set any other option by code in `[[option]]`"),
        "{msg}"
    );
}

#[test]
fn unknown_key_in_arbitrary_option() {
    let text = scope("[[scope.option]]\ncod = 150\ntype = \"u8\"\nvalue = 1\n");
    assert_eq!(
        errors(&text),
        vec![
            (
                8,
                "scope.\"lan\".option[0].code".into(),
                "missing required key `code` (the option code, 1 to 254)".into()
            ),
            (
                9,
                "scope.\"lan\".option[0].cod".into(),
                "unknown key `cod`; did you mean `code`?".into()
            ),
        ]
    );
}

#[test]
fn unknown_key_in_policy_and_condition() {
    let text =
        scope("[[scope.policy]]\nname = \"p\"\nordr = 1\nconditions = [{ vendor_clas = \"x\" }]\n");
    assert_eq!(
        errors(&text),
        vec![
            (10, "scope.\"lan\".policy.\"p\".ordr".into(), "unknown key `ordr`; did you mean `order`?".into()),
            (
                11,
                "scope.\"lan\".policy.\"p\".conditions[0]".into(),
                "a condition needs one of: vendor_class, user_class, client_id, mac, circuit_id, remote_id, relay_agent".into()
            ),
            (
                11,
                "scope.\"lan\".policy.\"p\".conditions[0].vendor_clas".into(),
                "unknown key `vendor_clas`; did you mean `vendor_class`?".into()
            ),
        ]
    );
}

#[test]
fn overlapping_ranges_in_one_scope() {
    let text = doc(
        "[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\nranges = [\n  \"10.0.0.10-10.0.0.50\",\n  \"10.0.0.40-10.0.0.60\",\n]\n",
    );
    let (line, key, msg) = only(&text);
    assert_eq!((line, key.as_str()), (9, "scope.\"lan\".ranges[1]"));
    assert_eq!(
        msg,
        "range 10.0.0.40-10.0.0.60 overlaps range 10.0.0.10-10.0.0.50 (line 8)"
    );
}

#[test]
fn overlapping_ranges_across_scopes() {
    let text = scope(
        "[[scope]]\nname = \"guest\"\nsubnet = \"10.0.0.128/25\"\nranges = [\"10.0.0.150-10.0.0.160\"]\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            (
                10,
                "scope.\"guest\".subnet".into(),
                "subnet 10.0.0.128/25 overlaps subnet 10.0.0.0/24 of scope \"lan\" (line 6); subnets of different scopes must not overlap".into()
            ),
            (
                11,
                "scope.\"guest\".ranges[0]".into(),
                "range 10.0.0.150-10.0.0.160 overlaps range 10.0.0.100-10.0.0.200 of scope \"lan\" (line 7)".into()
            ),
        ]
    );
}

#[test]
fn range_outside_or_partly_outside_the_subnet() {
    let text = doc(
        "[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\nranges = [\"10.0.1.10-10.0.1.20\", \"10.0.0.250-10.0.1.5\", \"10.0.0.0-10.0.0.9\", \"10.0.0.240-10.0.0.255\"]\n",
    )
    .replace("\"10.0.0.1\"", "\"10.9.9.9\"");
    assert_eq!(
        errors(&text),
        vec![
            (7, "scope.\"lan\".ranges[0]".into(), "range 10.0.1.10-10.0.1.20 is outside subnet 10.0.0.0/24".into()),
            (
                7,
                "scope.\"lan\".ranges[1]".into(),
                "range 10.0.0.250-10.0.1.5 extends beyond subnet 10.0.0.0/24 (10.0.0.0 to 10.0.0.255)".into()
            ),
            (
                7,
                "scope.\"lan\".ranges[2]".into(),
                "range 10.0.0.0-10.0.0.9 includes the network address 10.0.0.0 of 10.0.0.0/24".into()
            ),
            (
                7,
                "scope.\"lan\".ranges[3]".into(),
                "range 10.0.0.240-10.0.0.255 includes the broadcast address 10.0.0.255 of 10.0.0.0/24".into()
            ),
            (
                7,
                "scope.\"lan\".ranges[3]".into(),
                "range 10.0.0.240-10.0.0.255 overlaps range 10.0.0.250-10.0.1.5 (line 7)".into()
            ),
        ]
    );
}

#[test]
fn subnet_with_host_bits_set() {
    let text = scope("").replace("\"10.0.0.0/24\"", "\"10.0.0.1/24\"");
    let (line, key, msg) = only(&text);
    assert_eq!((line, key.as_str()), (6, "scope.\"lan\".subnet"));
    assert_eq!(
        msg,
        "`10.0.0.1/24` has host bits set; the subnet is 10.0.0.0/24"
    );
}

#[test]
fn bad_ipv4_addresses() {
    let text = scope("exclusions = [\"10.0.0.1x\"]\n").replace("\"10.0.0.1\"", "\"10.0.0.256\"");
    assert_eq!(
        errors(&text),
        vec![
            (
                2,
                "server.server_id".into(),
                "`10.0.0.256` is not an IPv4 address (expected a.b.c.d)".into()
            ),
            (
                8,
                "scope.\"lan\".exclusions[0]".into(),
                "`10.0.0.1x` is not an address or a range (expected a.b.c.d or a.b.c.d-e.f.g.h)"
                    .into()
            ),
        ]
    );
    let text = scope("").replace("10.0.0.100-10.0.0.200", "10.0.0.100-10.0.0.300");
    let (line, key, msg) = only(&text);
    assert_eq!((line, key.as_str()), (7, "scope.\"lan\".ranges[0]"));
    assert_eq!(msg, "range end `10.0.0.300` is not an IPv4 address");
}

#[test]
fn bad_values_for_each_arbitrary_option_type() {
    let opt = |code: u32, ty: &str, value: &str| {
        scope(&format!(
            "[[scope.option]]\ncode = {code}\ntype = \"{ty}\"\nvalue = {value}\n"
        ))
    };
    let cases: &[(&str, &str, &str, &str)] = &[
        ("ipv4", "\"10.0.0\"", "value", "`10.0.0` is not an IPv4 address (expected a.b.c.d)"),
        ("ipv4-list", "[\"10.0.0.1\", 7]", "value[1]", "expected a string, found an integer"),
        ("ipv4-list", "[]", "value", "needs at least one address"),
        ("u8", "256", "value", "256 is out of range 0..=255"),
        ("u16", "70000", "value", "70000 is out of range 0..=65535"),
        ("u32", "-1", "value", "-1 is out of range 0..=4294967295"),
        ("bool", "\"yes\"", "value", "expected a boolean (true or false), found a string"),
        ("string", "\"\"", "value", "the text cannot be empty (RFC 2132 options have at least one byte)"),
        ("hex", "\"0g\"", "value", "`0g` is not hex bytes: `0g` is not a hex byte"),
        ("ipv6", "\"::1\"", "type", "unknown option type `ipv6`; did you mean `ipv4`? (types: ipv4, ipv4-list, u8, u16, u32, bool, string, hex)"),
    ];
    for (ty, value, key, message) in cases {
        let (line, k, m) = only(&opt(200, ty, value));
        let want_line = if *key == "type" { 10 } else { 11 };
        assert_eq!(line, want_line, "{ty} {value}");
        assert_eq!(k, format!("scope.\"lan\".option[0].{key}"), "{ty} {value}");
        assert_eq!(&m, message, "{ty} {value}");
    }
}

#[test]
fn bad_values_for_named_options() {
    let cases: &[(&str, &str, &str)] = &[
        ("domain_name = \"corp_x.example\"", "domain_name", "`corp_x.example`: label `corp_x` contains `_`; labels use letters, digits and hyphens (RFC 1035)"),
        ("interface_mtu = 60", "interface_mtu", "60 is out of range 68..=65535"),
        ("static_routes = [\"10.1.2.0/16 via 10.0.0.1\"]", "static_routes[0]", "route destination `10.1.2.0/16` has host bits set; the destination is 10.1.0.0/16"),
        ("static_routes = [\"10.1.0.0/16 10.0.0.1\"]", "static_routes[0]", "`10.1.0.0/16 10.0.0.1` is not a route: expected \"DEST/PREFIX via GATEWAY\" like \"10.1.0.0/16 via 10.0.0.1\""),
        ("netbios_node_type = 3", "netbios_node_type", "3 is not a NetBIOS node type: expected 1 (B), 2 (P), 4 (M) or 8 (H)"),
        ("subnet_mask = \"255.0.255.0\"", "subnet_mask", "`255.0.255.0` is not a netmask (its one bits must be contiguous, like 255.255.255.0)"),
        ("routers = \"10.0.0.1.1\"", "routers", "`10.0.0.1.1` is not an IPv4 address (expected a.b.c.d)"),
        ("domain_search = [\"a..b\"]", "domain_search[0]", "`a..b` has an empty label (two dots in a row, or a leading dot)"),
        ("tftp_server_name = 5", "tftp_server_name", "expected a string, found an integer"),
    ];
    for (line_text, key, message) in cases {
        let (line, k, m) = only(&scope(&format!("[scope.options]\n{line_text}\n")));
        assert_eq!(line, 9, "{line_text}");
        assert_eq!(k, format!("scope.\"lan\".options.{key}"), "{line_text}");
        assert_eq!(&m, message, "{line_text}");
    }
}

#[test]
fn server_owned_and_invalid_option_codes() {
    let cases: &[(&str, &str)] = &[
        (
            "51",
            "option 51 (IP address lease time) is set by the server; use `lease_time`",
        ),
        (
            "54",
            "option 54 (server identifier) is set by the server; use `server.server_id`",
        ),
        (
            "82",
            "option 82 (relay agent information) is added by relays, not servers",
        ),
        ("0", "option 0 is the pad byte, not an option"),
        ("255", "option 255 is the end marker, not an option"),
        ("300", "300 is not an option code: codes are 1 to 254"),
        ("\"3\"", "expected an integer, found a string"),
    ];
    for (code, message) in cases {
        let text = scope(&format!(
            "[[scope.option]]\ncode = {code}\ntype = \"u8\"\nvalue = 1\n"
        ));
        let (line, key, m) = only(&text);
        assert_eq!(
            (line, key.as_str()),
            (9, "scope.\"lan\".option[0].code"),
            "{code}"
        );
        assert_eq!(&m, message);
    }
    for code in [50, 52, 53, 55, 57, 58, 59, 61] {
        let text = scope(&format!(
            "[[scope.option]]\ncode = {code}\ntype = \"u8\"\nvalue = 1\n"
        ));
        let (_, _, m) = only(&text);
        assert!(m.starts_with(&format!("option {code} (")), "{m}");
    }
}

#[test]
fn an_option_set_twice_in_one_place() {
    let text = scope("[scope.options]\nrouters = [\"10.0.0.1\"]\n[[scope.option]]\ncode = 3\ntype = \"ipv4\"\nvalue = \"10.0.0.2\"\n");
    let (line, key, msg) = only(&text);
    assert_eq!((line, key.as_str()), (10, "scope.\"lan\".option[0]"));
    assert_eq!(
        msg,
        "option 3 is already set by `scope.\"lan\".options.routers` (line 9)"
    );
}

#[test]
fn bad_durations() {
    let cases: &[(&str, &str)] = &[
        ("\"8x\"", "`8x` is not a duration: expected seconds, or numbers with units s, m, h, d, w like \"45s\", \"30m\", \"8h\", \"1d12h\""),
        ("0", "must be longer than 0 seconds"),
        ("-5", "a duration cannot be negative (-5)"),
        ("1.5", "expected a duration (seconds, or a string like \"8h\"), found a float"),
        ("\"10000w\"", "6048000000 seconds is longer than the maximum 4294967294 (7101w3d6h28m14s)"),
    ];
    for (value, message) in cases {
        let (line, key, m) = only(&scope(&format!("lease_time = {value}\n")));
        assert_eq!(
            (line, key.as_str()),
            (8, "scope.\"lan\".lease_time"),
            "{value}"
        );
        assert_eq!(&m, message);
    }
    // Long but within bounds.
    let c = ok(&scope("lease_time = \"200w\"\n"));
    assert_eq!(c.settings.scopes[0].lease_time, 120_960_000);
}

#[test]
fn renew_and_rebind_times_must_be_ordered() {
    let (line, key, msg) = only(&scope(
        "lease_time = \"8h\"\nrenew_time = \"4h\"\nrebind_time = \"2h\"\n",
    ));
    assert_eq!((line, key.as_str()), (9, "scope.\"lan\".renew_time"));
    assert_eq!(
        msg,
        "renew_time (T1) 4h must be shorter than rebind_time (T2) 2h"
    );
    let (line, key, msg) = only(&scope("lease_time = \"8h\"\nrebind_time = \"8h\"\n"));
    assert_eq!((line, key.as_str()), (9, "scope.\"lan\".rebind_time"));
    assert_eq!(
        msg,
        "rebind_time (T2) 8h must be shorter than lease_time 8h"
    );
    let (line, key, msg) = only(&scope("lease_time = \"8h\"\nrenew_time = \"7h\"\n"));
    assert_eq!((line, key.as_str()), (9, "scope.\"lan\".renew_time"));
    assert_eq!(msg, "renew_time (T1) 7h must be shorter than the default rebind_time (T2, 7/8 of the lease time) 7h");
    let c = ok(&scope(
        "lease_time = 1000\nrenew_time = 400\nrebind_time = 800\n",
    ));
    let s = &c.settings.scopes[0];
    assert_eq!(
        (s.lease_time, s.renew_time, s.rebind_time),
        (1000, Some(400), Some(800))
    );
}

#[test]
fn duplicate_reservations() {
    let text = scope(
        "[[scope.reservation]]\nmac = \"52:54:00:00:00:01\"\naddress = \"10.0.0.50\"\n\
         [[scope.reservation]]\nmac = \"52-54-00-00-00-01\"\naddress = \"10.0.0.50\"\n\
         [[scope.reservation]]\nclient_id = \"01:02\"\naddress = \"10.0.0.51\"\n\
         [[scope.reservation]]\nclient_id = \"0102\"\naddress = \"10.0.0.52\"\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            (
                12,
                "scope.\"lan\".reservation[1].mac".into(),
                "this MAC address already has a reservation in this scope: scope.\"lan\".reservation[0] (line 9)".into()
            ),
            (
                13,
                "scope.\"lan\".reservation[1].address".into(),
                "10.0.0.50 is already reserved by scope.\"lan\".reservation[0] (line 10)".into()
            ),
            (
                18,
                "scope.\"lan\".reservation[3].client_id".into(),
                "this client identifier already has a reservation in this scope: scope.\"lan\".reservation[2] (line 15)".into()
            ),
        ]
    );
}

#[test]
fn reservation_mistakes() {
    let text = scope(
        "[[scope.reservation]]\nmac = \"52:54:00:00:00:01\"\nclient_id = \"01:02\"\naddress = \"10.0.1.5\"\n\
         [[scope.reservation]]\naddress = \"10.0.0.255\"\n\
         [[scope.reservation]]\nmac = \"52:54:00:00:01\"\naddress = \"10.0.0.1\"\nhostname = \"bad_host\"\n",
    );
    assert_eq!(
        where_(&text),
        vec![
            (10, "scope.\"lan\".reservation[0].client_id".into()),
            (11, "scope.\"lan\".reservation[0].address".into()),
            (12, "scope.\"lan\".reservation[1]".into()),
            (13, "scope.\"lan\".reservation[1].address".into()),
            (15, "scope.\"lan\".reservation[2].mac".into()),
            (16, "scope.\"lan\".reservation[2].address".into()),
            (17, "scope.\"lan\".reservation[2].hostname".into()),
        ]
    );
    let e = errors(&text);
    assert_eq!(e[1].2, "10.0.1.5 is outside subnet 10.0.0.0/24");
    assert_eq!(e[3].2, "10.0.0.255 is the broadcast address of 10.0.0.0/24");
    assert_eq!(
        e[4].2,
        "`52:54:00:00:01` is not a MAC address (expected six hex bytes like 52:54:00:12:34:56)"
    );
    assert_eq!(e[5].2, "10.0.0.1 is this server's server_id");
}

#[test]
fn policy_range_outside_the_scope_ranges() {
    let text = scope(
        "[[scope.policy]]\nname = \"phones\"\nconditions = [{ mac = \"00:04:f2:*\" }]\nranges = [\"10.0.0.190-10.0.0.210\"]\n",
    );
    let (line, key, msg) = only(&text);
    assert_eq!(
        (line, key.as_str()),
        (11, "scope.\"lan\".policy.\"phones\".ranges[0]")
    );
    assert_eq!(
        msg,
        "policy range 10.0.0.190-10.0.0.210 is not inside the scope's ranges (10.0.0.201 is in none of them)"
    );
}

#[test]
fn policy_names_orders_and_ranges_are_checked_together() {
    let text = scope(
        "[[scope.policy]]\nname = \"a\"\norder = 5\nconditions = [{ vendor_class = \"x\" }]\nranges = [\"10.0.0.100-10.0.0.120\"]\n\
         [[scope.policy]]\nname = \"a\"\norder = 5\nconditions = [{ user_class = \"y\" }]\nranges = [\"10.0.0.110-10.0.0.130\"]\n\
         [[scope.policy]]\nname = \"c\"\nconditions = [{ client_id = \"01:02:03\", remote_id = \"r\" }]\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            (
                14,
                "scope.\"lan\".policy.\"a\".name".into(),
                "policy name \"a\" is already used in this scope (line 9)".into()
            ),
            (15, "scope.\"lan\".policy.\"a\".order".into(), "order 5 is already used by policy \"a\" (line 10)".into()),
            (
                17,
                "scope.\"lan\".policy.\"a\".ranges[0]".into(),
                "range 10.0.0.110-10.0.0.130 overlaps range 10.0.0.100-10.0.0.120 of policy \"a\" (line 12)".into()
            ),
            (
                18,
                "scope.\"lan\".policy.\"c\".order".into(),
                "missing `order` while other policies of this scope have one: give every policy an order, or none (file order)".into()
            ),
            (
                20,
                "scope.\"lan\".policy.\"c\".conditions[0].remote_id".into(),
                "a condition tests one thing (here `client_id`); put `remote_id` in a condition of its own".into()
            ),
        ]
    );
}

#[test]
fn policies_are_sorted_disabled_ones_dropped_and_matchers_parsed() {
    let text = scope(
        "renew_time = \"1h\"\n\
         [[scope.policy]]\nname = \"late\"\norder = 9\nconditions = [{ circuit_id = \"hex:00:04*\" }]\nlease_time = \"2h\"\n\
         [[scope.policy]]\nname = \"off\"\norder = 3\nenabled = false\nconditions = [{ mac = \"00:11:22:33:44:55\" }]\n\
         [[scope.policy]]\nname = \"early\"\norder = 1\nmatch = \"any\"\nconditions = [{ client_id = [\"01:aa:bb\", \"ff*\"] }, { relay_agent = \"0102\", not = true }, { remote_id = \"text:hex:x\" }, { user_class = \"*\" }]\n",
    );
    let c = ok(&text);
    let ps = &c.settings.scopes[0].policies;
    let names: Vec<&str> = ps.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["early", "late"]);
    assert_eq!(
        ps[1].conditions[0].matchers,
        vec![Matcher::Prefix(vec![0, 4])]
    );
    assert_eq!(ps[1].lease_time, Some(7200));
    let early = &ps[0];
    assert_eq!(early.combine, Combine::Any);
    assert_eq!(
        early.conditions,
        vec![
            Condition {
                criterion: Criterion::ClientId,
                matchers: vec![
                    Matcher::Exact(vec![1, 0xaa, 0xbb]),
                    Matcher::Prefix(vec![0xff])
                ],
                negate: false
            },
            Condition {
                criterion: Criterion::RelayAgent,
                matchers: vec![Matcher::Exact(vec![1, 2])],
                negate: true
            },
            Condition {
                criterion: Criterion::RemoteId,
                matchers: vec![Matcher::Exact(b"hex:x".to_vec())],
                negate: false
            },
            Condition {
                criterion: Criterion::UserClass,
                matchers: vec![Matcher::Prefix(vec![])],
                negate: false
            },
        ]
    );
    // Without orders, file order decides.
    let c = ok(&scope(
        "[[scope.policy]]\nname = \"x\"\nconditions = [{ mac = \"00:11:*\" }]\n\
         [[scope.policy]]\nname = \"y\"\nconditions = [{ mac = \"00:12:*\" }]\n",
    ));
    let orders: Vec<(&str, u32)> = c.settings.scopes[0]
        .policies
        .iter()
        .map(|p| (p.name.as_str(), p.order))
        .collect();
    assert_eq!(orders, [("x", 1), ("y", 2)]);
}

#[test]
fn policy_lease_must_exceed_the_scope_t1_t2() {
    let text = scope(
        "lease_time = \"8h\"\nrenew_time = \"2h\"\nrebind_time = \"3h\"\n\
         [[scope.policy]]\nname = \"short\"\nconditions = [{ mac = \"00:11:*\" }]\nlease_time = \"3h\"\n",
    );
    let (line, key, msg) = only(&text);
    assert_eq!(
        (line, key.as_str()),
        (14, "scope.\"lan\".policy.\"short\".lease_time")
    );
    assert_eq!(
        msg,
        "lease_time 3h is not longer than the scope's rebind_time (T2) 3h; T1 < T2 < lease time must hold for this policy's leases too"
    );
}

#[test]
fn bad_condition_values() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "{ mac = \"00:11:22:33:44\" }",
            "mac",
            "`00:11:22:33:44` has 5 bytes; a MAC address has 6 (end it with `*` to match a prefix)",
        ),
        (
            "{ vendor_class = \"MS*FT\" }",
            "vendor_class",
            "`MS*FT`: only a trailing `*` is a wildcard (match a literal `*` with hex: bytes)",
        ),
        (
            "{ client_id = \"zz\" }",
            "client_id",
            "`zz` is not hex bytes: `zz` is not a hex byte",
        ),
        (
            "{ user_class = \"\" }",
            "user_class",
            "an empty value matches nothing; use `*` to match any value",
        ),
        ("{ mac = [] }", "mac", "needs at least one value to match"),
        (
            "{ mac = \"00:11:*\", not = 1 }",
            "not",
            "expected a boolean (true or false), found an integer",
        ),
    ];
    for (cond, key, message) in cases {
        let text = scope(&format!(
            "[[scope.policy]]\nname = \"p\"\nconditions = [{cond}]\n"
        ));
        let (line, k, m) = only(&text);
        assert_eq!(line, 10, "{cond}");
        assert_eq!(
            k,
            format!("scope.\"lan\".policy.\"p\".conditions[0].{key}"),
            "{cond}"
        );
        assert_eq!(&m, message);
    }
}

#[test]
fn exclusions_must_lie_in_the_ranges_and_not_overlap() {
    let text = scope(
        "exclusions = [\"10.0.0.90-10.0.0.110\", \"10.0.0.150\", \"10.0.0.140-10.0.0.160\", \"10.0.0.50\"]\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            (
                8,
                "scope.\"lan\".exclusions[0]".into(),
                "exclusion 10.0.0.90-10.0.0.110 is not inside the scope's ranges (10.0.0.90 is in none of them)".into()
            ),
            (
                8,
                "scope.\"lan\".exclusions[2]".into(),
                "exclusion 10.0.0.140-10.0.0.160 overlaps exclusion 10.0.0.150 (line 8)".into()
            ),
            (
                8,
                "scope.\"lan\".exclusions[3]".into(),
                "exclusion 10.0.0.50 is not inside the scope's ranges".into()
            ),
        ]
    );
    // An exclusion spanning two adjacent ranges is inside them.
    let c = ok(
        &scope("exclusions = [\"10.0.0.195-10.0.0.205\"]\n").replace(
            "[\"10.0.0.100-10.0.0.200\"]",
            "[\"10.0.0.100-10.0.0.200\", \"10.0.0.201-10.0.0.210\"]",
        ),
    );
    assert_eq!(
        c.settings.scopes[0].exclusions,
        vec![range("10.0.0.195", "10.0.0.205")]
    );
}

#[test]
fn server_id_inside_a_range_and_interfaces() {
    let text = scope("interface = \"eth9\"\n").replace("\"10.0.0.1\"", "\"10.0.0.150\"");
    assert_eq!(
        errors(&text),
        vec![
            (
                7,
                "scope.\"lan\".ranges[0]".into(),
                "range 10.0.0.100-10.0.0.200 contains this server's server_id 10.0.0.150; exclude it or shrink the range".into()
            ),
            (
                8,
                "scope.\"lan\".interface".into(),
                "interface `eth9` is not in server.interfaces (eth0); the server does not listen on it".into()
            ),
        ]
    );
    // Excluding the server's address is enough.
    ok(&scope("exclusions = [\"10.0.0.150\"]\n").replace("\"10.0.0.1\"", "\"10.0.0.150\""));
}

#[test]
fn missing_required_keys() {
    let text = "[options]\nrouters = [\"10.0.0.1\"]\n[[scope]]\nname = \"x\"\n";
    assert_eq!(
        errors(text),
        vec![
            (
                1,
                "server".into(),
                "missing required table [server] (it needs at least server_id and interfaces)"
                    .into()
            ),
            (
                3,
                "scope.\"x\".subnet".into(),
                "missing required key `subnet` (like \"10.0.0.0/24\")".into()
            ),
            (
                3,
                "scope.\"x\".ranges".into(),
                "missing required key `ranges` (like [\"10.0.0.100-10.0.0.200\"])".into()
            ),
        ]
    );
    let e = where_("[server]\n");
    assert_eq!(
        e,
        vec![
            (1, "server.server_id".into()),
            (1, "server.interfaces".into()),
            (1, "scope".into()),
        ]
    );
}

#[test]
fn several_errors_are_reported_together_in_file_order() {
    let text = "\
[server]
server_id = \"10.0.0.1\"
interfaces = [\"eth0\"]
workers = 0
durability = \"synced\"

[[scope]]
name = \"lan\"
subnet = \"10.0.0.0/24\"
ranges = [\"10.0.0.100-10.0.0.200\", \"10.0.1.1-10.0.1.9\"]
lease_time = \"8x\"

[scope.options]
routers = [\"10.0.0.1\", \"10.0.0.999\"]

[[scope]]
name = \"lan\"
subnet = \"10.0.3.0/23\"
ranges = [\"10.0.2.10-10.0.2.20\"]
";
    let e = parse(text, "tandem.toml").unwrap_err();
    let got: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "tandem.toml:4:11: server.workers: 0 is out of range 1..=256",
            "tandem.toml:5:14: server.durability: `synced` is not one of: sync, relaxed; did you mean `sync`?",
            "tandem.toml:10:36: scope.\"lan\".ranges[1]: range 10.0.1.1-10.0.1.9 is outside subnet 10.0.0.0/24",
            "tandem.toml:11:14: scope.\"lan\".lease_time: `8x` is not a duration: expected seconds, or numbers with units s, m, h, d, w like \"45s\", \"30m\", \"8h\", \"1d12h\"",
            "tandem.toml:14:24: scope.\"lan\".options.routers[1]: `10.0.0.999` is not an IPv4 address (expected a.b.c.d)",
            "tandem.toml:17:8: scope.\"lan\".name: scope name \"lan\" is already used (line 8)",
            "tandem.toml:18:10: scope.\"lan\".subnet: `10.0.3.0/23` has host bits set; the subnet is 10.0.2.0/23",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    );
    assert_eq!(e.to_string(), got.join("\n"));
}

#[test]
fn syntax_errors_stop_the_walk_and_are_all_reported() {
    let text = "[server]\nserver_id = \"10.0.0.1\nworkers = 1\nworkers = 2\n";
    let e = errors(text);
    assert!(e.len() >= 2, "{e:#?}");
    assert_eq!(e[0].0, 2);
    assert_eq!(e[0].1, "[server]");
    assert!(
        e.iter().any(|(l, _, m)| *l == 4 && m == "duplicate key"),
        "{e:#?}"
    );
}

#[test]
fn type_errors_name_what_was_expected() {
    let text = doc("[scope]\nname = \"x\"\n");
    let (line, key, msg) = only(&text);
    assert_eq!((line, key.as_str()), (4, "scope"));
    assert_eq!(
        msg,
        "expected an array of tables (write `[[scope]]`), found a table"
    );
    let (line, key, msg) = only(&scope("[scope.option]\ncode = 3\n"));
    assert_eq!((line, key.as_str()), (8, "scope.\"lan\".option"));
    assert!(
        msg.starts_with("`option` is an array of tables: write `[[scope.option]]`"),
        "{msg}"
    );
    let (line, key, msg) = only(&scope("").replace(
        "ranges = [\"10.0.0.100-10.0.0.200\"]",
        "ranges = [\"10.0.0.100\"]",
    ));
    assert_eq!((line, key.as_str()), (7, "scope.\"lan\".ranges[0]"));
    assert_eq!(msg, "`10.0.0.100` is a single address; a range needs a start and an end, like \"10.0.0.100-10.0.0.100\"");
}

#[test]
fn range_pairs_are_accepted() {
    let c = ok(&scope("").replace(
        "[\"10.0.0.100-10.0.0.200\"]",
        "[[\"10.0.0.100\", \"10.0.0.110\"], \"10.0.0.120 - 10.0.0.130\"]",
    ));
    assert_eq!(
        c.settings.scopes[0].ranges,
        vec![
            range("10.0.0.100", "10.0.0.110"),
            range("10.0.0.120", "10.0.0.130")
        ]
    );
}

#[test]
fn option_encodings_are_byte_exact() {
    let text = scope(
        "[scope.options]\n\
         subnet_mask = \"255.255.255.128\"\n\
         routers = [\"10.0.0.1\", \"10.0.0.2\"]\n\
         time_servers = \"10.0.0.3\"\n\
         dns_servers = [\"1.2.3.4\"]\n\
         log_servers = [\"10.0.0.4\"]\n\
         domain_name = \"corp.example.\"\n\
         interface_mtu = 9000\n\
         broadcast_address = \"10.0.0.255\"\n\
         netbios_name_servers = [\"10.0.0.6\"]\n\
         netbios_node_type = 8\n\
         bootfile_name = \"pxelinux.0\"\n\
         domain_search = [\"a.example\", \"b\"]\n\
         static_routes = [\"0.0.0.0/0 via 10.0.0.1\", \"10.9.8.7/32 via 10.0.0.2\", \"10.1.0.0/16 via 10.0.0.3\", \"172.16.128.0/17 via 10.0.0.4\", \"192.168.1.0/24 via 0.0.0.0\", \"10.128.0.0/9 via 10.0.0.5\"]\n\
         [[scope.option]]\ncode = 200\ntype = \"u16\"\nvalue = 0x1234\n\
         [[scope.option]]\ncode = 201\ntype = \"u32\"\nvalue = 4294967295\n\
         [[scope.option]]\ncode = 202\ntype = \"bool\"\nvalue = true\n\
         [[scope.option]]\ncode = 203\ntype = \"hex\"\nvalue = \"de:ad:be:ef\"\n\
         [[scope.option]]\ncode = 204\ntype = \"u8\"\nvalue = 7\n\
         [[scope.option]]\ncode = 205\ntype = \"ipv4\"\nvalue = \"192.0.2.1\"\n\
         [[scope.option]]\ncode = 206\ntype = \"string\"\nvalue = \"héllo\"\n\
         [[scope.option]]\ncode = 207\ntype = \"hex\"\nvalue = \"\"\n\
         [[scope.option]]\ncode = 208\ntype = \"ipv4-list\"\nvalue = \"192.0.2.2\"\n",
    );
    let c = ok(&text);
    let o = &c.settings.scopes[0].options;
    let get = |code: u8| {
        o.get(code)
            .unwrap_or_else(|| panic!("option {code} missing"))
            .to_vec()
    };
    assert_eq!(
        get(1),
        [255, 255, 255, 128],
        "an explicit mask overrides the computed one"
    );
    assert_eq!(get(3), [10, 0, 0, 1, 10, 0, 0, 2]);
    assert_eq!(get(4), [10, 0, 0, 3]);
    assert_eq!(get(6), [1, 2, 3, 4]);
    assert_eq!(get(7), [10, 0, 0, 4]);
    assert_eq!(get(15), b"corp.example", "trailing dot dropped, no NUL");
    assert_eq!(get(26), [0x23, 0x28]);
    assert_eq!(get(28), [10, 0, 0, 255]);
    assert_eq!(get(44), [10, 0, 0, 6]);
    assert_eq!(get(46), [8]);
    assert_eq!(get(67), b"pxelinux.0");
    assert_eq!(get(119), b"\x01a\x07example\x00\x01b\x00");
    assert_eq!(
        get(121),
        [
            0, 10, 0, 0, 1, // 0.0.0.0/0: no destination octets
            32, 10, 9, 8, 7, 10, 0, 0, 2, // /32: all four
            16, 10, 1, 10, 0, 0, 3, // /16: two
            17, 172, 16, 128, 10, 0, 0, 4, // /17: three
            24, 192, 168, 1, 0, 0, 0, 0, // /24 on-link (router 0.0.0.0)
            9, 10, 128, 10, 0, 0, 5, // /9: two
        ]
    );
    assert_eq!(get(200), [0x12, 0x34]);
    assert_eq!(get(201), [0xff, 0xff, 0xff, 0xff]);
    assert_eq!(get(202), [1]);
    assert_eq!(get(203), [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(get(204), [7]);
    assert_eq!(get(205), [192, 0, 2, 1]);
    assert_eq!(get(206), "héllo".as_bytes());
    assert_eq!(get(207), Vec::<u8>::new());
    assert_eq!(get(208), [192, 0, 2, 2]);
    assert_eq!(o.len(), 22);
}

#[test]
fn duplicate_static_routes_are_rejected() {
    let (line, key, msg) = only(&scope(
        "[scope.options]\nstatic_routes = [\"10.1.0.0/16 via 10.0.0.1\", \"10.1.0.0/16 via 10.0.0.2\"]\n",
    ));
    assert_eq!(
        (line, key.as_str()),
        (9, "scope.\"lan\".options.static_routes[1]")
    );
    assert_eq!(msg, "a route to 10.1.0.0/16 is already listed");
}

#[test]
fn reservation_options_and_hostname_conflict() {
    let (line, key, msg) = only(&scope(
        "[[scope.reservation]]\nmac = \"52:54:00:00:00:01\"\naddress = \"10.0.0.50\"\nhostname = \"h\"\n\
         [[scope.reservation.option]]\ncode = 12\ntype = \"string\"\nvalue = \"h2\"\n",
    ));
    assert_eq!(
        (line, key.as_str()),
        (11, "scope.\"lan\".reservation[0].hostname")
    );
    assert_eq!(
        msg,
        "option 12 (host name) is also set in this reservation's options; keep one"
    );
}

#[test]
fn error_display_formats() {
    let e = ConfigError {
        origin: "a.toml".into(),
        line: 3,
        column: 7,
        key: "scope[0].ranges[1]".into(),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "a.toml:3:7: scope[0].ranges[1]: bad");
    let whole = ConfigError {
        origin: "a.toml".into(),
        line: 0,
        column: 0,
        key: String::new(),
        message: "cannot read".into(),
    };
    assert_eq!(whole.to_string(), "a.toml: cannot read");
    assert_eq!(
        ConfigErrors(vec![e, whole]).to_string(),
        "a.toml:3:7: scope[0].ranges[1]: bad\na.toml: cannot read"
    );
}

#[test]
fn load_reads_files_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, scope("")).unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.settings.scopes[0].name, "lan");

    std::fs::write(&path, scope("bogus = 1\n")).unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(e.0[0].origin, path.display().to_string());
    assert_eq!((e.0[0].line, e.0[0].column), (8, 1));

    let missing = dir.path().join("nope.toml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, 0);
    assert!(
        e.0[0].message.starts_with("cannot read: "),
        "{}",
        e.0[0].message
    );

    std::fs::write(&path, b"a = \"\xff\"\n").unwrap();
    let e = load(&path).unwrap_err();
    assert_eq!(e.0[0].message, "not UTF-8 text (invalid byte at offset 5)");
}

#[test]
fn scope_names_with_odd_characters_are_quoted_in_keys() {
    let text = scope("bogus = 1\n").replace("name = \"lan\"", "name = \"a \\\"b\\\".c\"");
    let (_, key, _) = only(&text);
    assert_eq!(key, "scope.\"a \\\"b\\\".c\".bogus");
    let (line, key, _) = only(&scope("").replace("name = \"lan\"\n", "name = 5\n"));
    assert_eq!((line, key.as_str()), (5, "scope[0].name"));
}

#[test]
fn request_screening_is_read_with_its_defaults() {
    let d = ok(&scope("")).daemon;
    assert_eq!(d.hardening, tandem_dataplane::engine::Hardening::default());
    assert!(d.hardening.strict_identity);
    let c = ok(&scope("").replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nstrict_client_identity = false\ndiscover_rate_limit = 10\n\
         relay_circuit_rate_limit = 200\ntrusted_relays = [\"10.1.0.1\", \"10.2.0.1\"]\n",
    ));
    let h = &c.daemon.hardening;
    assert!(!h.strict_identity);
    assert_eq!((h.discover_per_client, h.per_circuit), (10, 200));
    assert_eq!(
        h.trusted_relays,
        vec![
            "10.1.0.1".parse::<std::net::Ipv4Addr>().unwrap(),
            "10.2.0.1".parse().unwrap()
        ]
    );
}

#[test]
fn bad_request_screening_settings_are_reported_with_their_key() {
    let e = errors(&scope("").replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\ndiscover_rate_limit = -1\n\
         trusted_relays = [\"10.1.0.1\", \"relay\", \"10.1.0.1\"]\nstrict_client_identity = 1\n",
    ));
    let keys: Vec<&str> = e.iter().map(|(_, k, _)| k.as_str()).collect();
    assert!(keys.contains(&"server.discover_rate_limit"), "{e:?}");
    assert!(keys.contains(&"server.trusted_relays[1]"), "{e:?}");
    assert!(keys.contains(&"server.trusted_relays[2]"), "{e:?}");
    assert!(keys.contains(&"server.strict_client_identity"), "{e:?}");
}

#[test]
fn a_read_only_token_needs_an_admin_token() {
    let e = errors(&scope("").replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nadmin_readonly_token_file = \"/etc/tandem/ro.token\"\n",
    ));
    assert!(
        e.iter()
            .any(|(_, k, m)| k == "server.admin_readonly_token_file"
                && m.contains("admin_token_file")),
        "{e:?}"
    );
    let c = ok(&scope("").replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nadmin_token_file = \"/etc/tandem/a.token\"\n\
         admin_readonly_token_file = \"/etc/tandem/ro.token\"\n",
    ));
    assert_eq!(
        c.daemon.admin_readonly_token_file,
        Some(PathBuf::from("/etc/tandem/ro.token"))
    );
}

/// `[server]` with `extra` from line 4, then the scope "lan".
fn server_with(extra: &str) -> String {
    format!("{SERVER}{extra}{LAN}")
}

/// A PEM block of `label` around bytes that are not a certificate or key (the loader reads
/// the PEM framing before rustls looks inside).
fn pem_block(label: &str) -> String {
    format!("-----BEGIN {label}-----\nAAECAwQFBgcICQoLDA0ODw==\n-----END {label}-----\n")
}

#[test]
fn admin_tls_keys_need_admin_tls_required() {
    let (line, key, msg) = only(&server_with(
        "admin_tls_cert_file = \"/etc/tandem/tls/admin.pem\"\n",
    ));
    assert_eq!((line, key.as_str()), (4, "server.admin_tls_cert_file"));
    assert_eq!(
        msg,
        "`admin_tls_cert_file` applies only with admin_tls = \"required\"; the admin endpoint \
         is plain HTTP (admin_tls = \"off\", the default)"
    );
    let e = where_(&server_with(
        "admin_tls = \"off\"\nadmin_tls_client_ca_file = \"/ca.pem\"\n\
         admin_tls_readonly_names = [\"ro\"]\n",
    ));
    assert_eq!(
        e,
        [
            (5, "server.admin_tls_client_ca_file".to_string()),
            (6, "server.admin_tls_readonly_names".to_string())
        ]
    );
    let (line, key, msg) = only(&server_with("admin_tls = \"on\"\n"));
    assert_eq!((line, key.as_str()), (4, "server.admin_tls"));
    assert!(msg.contains("`on` is not one of: required, off"), "{msg}");
    // Off, explicitly or by default: no TLS.
    let c = ok(&server_with("admin_tls = \"off\"\n"));
    assert_eq!(c.daemon.admin_tls, None);
    assert_eq!(ok(&scope("")).daemon.admin_tls, None);
}

#[test]
fn admin_tls_required_needs_its_files_as_absolute_paths() {
    let e = errors(&server_with("admin_tls = \"required\"\n"));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e.iter().all(|(line, _, _)| *line == 1), "{e:#?}");
    assert_eq!(e[0].1, "server.admin_tls_cert_file");
    assert!(
        e[0].2
            .starts_with("missing required key `admin_tls_cert_file`"),
        "{e:#?}"
    );
    assert_eq!(e[1].1, "server.admin_tls_key_file");
    let (line, key, msg) = only(&server_with(
        "admin_tls = \"required\"\nadmin_tls_cert_file = \"/a.pem\"\n\
         admin_tls_key_file = \"tls/admin.key\"\n",
    ));
    assert_eq!((line, key.as_str()), (6, "server.admin_tls_key_file"));
    assert!(
        msg.contains("`tls/admin.key` is not an absolute path"),
        "{msg}"
    );
}

#[test]
fn admin_tls_read_only_names_are_checked() {
    let (line, key, msg) = only(&server_with(
        "admin_tls = \"required\"\nadmin_tls_cert_file = \"/a.pem\"\n\
         admin_tls_key_file = \"/a.key\"\nadmin_tls_readonly_names = [\"ro.example\"]\n",
    ));
    assert_eq!((line, key.as_str()), (7, "server.admin_tls_readonly_names"));
    assert!(msg.contains("needs `admin_tls_client_ca_file`"), "{msg}");
    let e = errors(&server_with(
        "admin_tls = \"required\"\nadmin_tls_cert_file = \"/a.pem\"\n\
         admin_tls_key_file = \"/a.key\"\nadmin_tls_client_ca_file = \"/ca.pem\"\n\
         admin_tls_readonly_names = [\"ro.example\", \"\", \"RO.example\", 7, \" pad\"]\n",
    ));
    let got: Vec<(&str, &str)> = e.iter().map(|(_, k, m)| (k.as_str(), m.as_str())).collect();
    assert_eq!(got.len(), 4, "{e:#?}");
    assert_eq!(
        got[0],
        (
            "server.admin_tls_readonly_names[1]",
            "a name cannot be empty"
        )
    );
    assert_eq!(
        got[1],
        (
            "server.admin_tls_readonly_names[2]",
            "\"RO.example\" is listed twice"
        )
    );
    assert_eq!(got[2].0, "server.admin_tls_readonly_names[3]");
    assert_eq!(
        got[3],
        (
            "server.admin_tls_readonly_names[4]",
            "\" pad\" has spaces around it"
        )
    );
}

#[test]
fn admin_tls_files_are_read_at_load_time() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, text: &str, mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.display().to_string()
    };
    let cert = file("admin.pem", &pem_block("CERTIFICATE"), 0o644);
    let shared_key = file("shared.key", &pem_block("PRIVATE KEY"), 0o640);
    let not_a_key = file("none.key", &pem_block("CERTIFICATE"), 0o600);
    let no_cert = file("empty.pem", "no PEM here\n", 0o644);
    let missing = dir.path().join("missing.pem").display().to_string();
    let tls = |cert: &str, key: &str, ca: Option<&str>| {
        let ca = ca.map_or(String::new(), |c| {
            format!("admin_tls_client_ca_file = \"{c}\"\n")
        });
        server_with(&format!(
            "admin_tls = \"required\"\nadmin_tls_cert_file = \"{cert}\"\n\
             admin_tls_key_file = \"{key}\"\n{ca}"
        ))
    };
    let (line, key, msg) = only(&tls(&missing, &shared_key, None));
    assert_eq!((line, key.as_str()), (5, "server.admin_tls_cert_file"));
    assert!(
        msg.starts_with(&format!("admin_tls_cert_file {missing}: cannot read")),
        "{msg}"
    );
    let (line, key, msg) = only(&tls(&no_cert, &shared_key, None));
    assert_eq!((line, key.as_str()), (5, "server.admin_tls_cert_file"));
    assert!(msg.contains("holds no certificate"), "{msg}");
    let (line, key, msg) = only(&tls(&cert, &shared_key, None));
    assert_eq!((line, key.as_str()), (6, "server.admin_tls_key_file"));
    assert!(
        msg.contains("mode 0640") && msg.contains("chmod 600"),
        "{msg}"
    );
    let (line, key, msg) = only(&tls(&cert, &not_a_key, None));
    assert_eq!((line, key.as_str()), (6, "server.admin_tls_key_file"));
    assert!(msg.contains("no usable private key"), "{msg}");
    let private = file("private.key", &pem_block("PRIVATE KEY"), 0o600);
    let (line, key, msg) = only(&tls(&cert, &private, Some(&missing)));
    assert_eq!((line, key.as_str()), (7, "server.admin_tls_client_ca_file"));
    assert!(msg.starts_with("admin_tls_client_ca_file"), "{msg}");
}

#[test]
fn a_non_loopback_admin_listen_needs_a_token_or_a_client_ca() {
    let (line, key, msg) = only(&server_with("admin_listen = \"10.0.0.1:9167\"\n"));
    assert_eq!((line, key.as_str()), (4, "server.admin_listen"));
    assert!(
        msg.contains("admin_token_file") && msg.contains("admin_tls_client_ca_file"),
        "{msg}"
    );
    // TLS without a client CA authenticates nobody: still refused.
    let e = where_(&server_with(
        "admin_listen = \"10.0.0.1:9167\"\nadmin_tls = \"required\"\n\
         admin_tls_cert_file = \"/nonexistent/a.pem\"\nadmin_tls_key_file = \"/a.key\"\n",
    ));
    assert!(e.contains(&(4, "server.admin_listen".to_string())), "{e:?}");
    // With a client CA, the only error is the unreadable file, not the address.
    let e = where_(&server_with(
        "admin_listen = \"10.0.0.1:9167\"\nadmin_tls = \"required\"\n\
         admin_tls_cert_file = \"/nonexistent/a.pem\"\nadmin_tls_key_file = \"/a.key\"\n\
         admin_tls_client_ca_file = \"/nonexistent/ca.pem\"\n",
    ));
    assert_eq!(e, [(6, "server.admin_tls_cert_file".to_string())]);
}

#[test]
fn ddns_settings_defaults_and_scope_flags() {
    let c = ok(&scope(
        "lease_time = \"1h\"\n[[ddns]]\nscopes = [\"lan\"]\ndomain = \"Tdm.Test.\"\nservers = [\"10.0.0.53\", \"10.0.0.54:5353\"]\n",
    ));
    assert_eq!(c.ddns.len(), 1);
    let d = &c.ddns[0];
    assert_eq!(d.scope, "lan");
    assert_eq!(d.forward_zone, "tdm.test");
    assert_eq!(d.reverse_zone, "0.0.10.in-addr.arpa");
    assert_eq!(
        d.servers,
        vec![
            "10.0.0.53:53".parse().unwrap(),
            "10.0.0.54:5353".parse().unwrap()
        ]
    );
    assert_eq!(d.ttl, 1200, "a third of the lease time");
    assert!(d.key.is_none());
    assert_eq!(d.conflict, tandem_ddns::ConflictMode::Rfc4703);
    let sd = c.settings.scopes[0].ddns.as_ref().unwrap();
    assert_eq!(sd.domain, "tdm.test");
    assert_eq!(
        sd.client_updates,
        tandem_dataplane::scope::ClientUpdates::Override
    );
    assert!(sd.use_host_name);
    let c = ok(&scope(
        "[[ddns]]\nscopes = \"lan\"\ndomain = \"a.tdm.test\"\nforward_zone = \"tdm.test\"\nreverse_zone = \"10.in-addr.arpa\"\nservers = \"10.0.0.53\"\nttl = 90\nclient_updates = \"honor\"\nuse_host_name = false\nconflict = \"no-check\"\n",
    ));
    let d = &c.ddns[0];
    assert_eq!((d.reverse_zone.as_str(), d.ttl), ("10.in-addr.arpa", 90));
    assert_eq!(d.conflict, tandem_ddns::ConflictMode::NoCheckWithDhcid);
    let sd = c.settings.scopes[0].ddns.as_ref().unwrap();
    assert_eq!(
        sd.client_updates,
        tandem_dataplane::scope::ClientUpdates::Honor
    );
    assert!(!sd.use_host_name);
}

#[test]
fn ddns_errors_name_their_key_and_line() {
    // Lines 8..: the [[ddns]] table.
    let (l, k, m) = only(&scope(
        "[[ddns]]\nscopes = [\"lan\", \"wan\"]\ndomain = \"tdm.test\"\nservers = [\"10.0.0.53\"]\n",
    ));
    assert_eq!((l, k.as_str()), (9, "ddns[0].scopes[1]"));
    assert!(m.contains("no [[scope]] is named `wan`"), "{m}");
    let (l, k, m) = only(&scope(
        "[[ddns]]\nscopes = [\"lan\"]\ndomain = \"tdm.test\"\nreverse_zone = \"9.10.in-addr.arpa\"\nservers = [\"10.0.0.53\"]\n",
    ));
    assert_eq!((l, k.as_str()), (11, "ddns[0].reverse_zone"));
    assert!(m.contains("outside the reverse zone"), "{m}");
    let (_, k, m) = only(&scope(
        "[[ddns]]\nscopes = [\"lan\"]\ndomain = \"tdm.test\"\nforward_zone = \"other.test\"\nservers = [\"10.0.0.53\"]\n",
    ));
    assert_eq!(k, "ddns[0].forward_zone");
    assert!(m.contains("not inside the forward zone"), "{m}");
    let e = where_(&scope(
        "[[ddns]]\nscopes = [\"lan\"]\ndomain = \"bad_name.test\"\nservers = [\"dns.example\"]\nconflict = \"check\"\nttl = 1\nkey_file = \"/nonexistent/k.key\"\n[[ddns]]\nscopes = [\"lan\"]\ndomain = \"tdm.test\"\nservers = [\"10.0.0.53\"]\n",
    ));
    assert_eq!(
        e,
        vec![
            (10, "ddns[0].domain".to_string()),
            (11, "ddns[0].servers[0]".to_string()),
            (12, "ddns[0].conflict".to_string()),
            (13, "ddns[0].ttl".to_string()),
            (14, "ddns[0].key_file".to_string()),
        ]
    );
    let (l, k, m) = only(&scope(
        "[[ddns]]\nscopes = [\"lan\"]\ndomain = \"tdm.test\"\nservers = [\"10.0.0.53\"]\n[[ddns]]\nscopes = [\"lan\"]\ndomain = \"tdm.test\"\nservers = [\"10.0.0.53\"]\n",
    ));
    assert_eq!((l, k.as_str()), (13, "ddns[1].scopes[0]"));
    assert!(m.contains("already in [[ddns]] number 1 (line 9)"), "{m}");
    let (_, k, _) = only(&scope(
        "[[ddns]]\ndomain = \"tdm.test\"\nservers = []\nscopes = [\"lan\"]\n",
    ));
    assert_eq!(k, "ddns[0].servers");
}

#[test]
fn ddns_key_file_is_read_and_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ddns.key");
    std::fs::write(
        &f,
        "key \"tandem-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n",
    )
    .unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = scope(&format!(
        "[[ddns]]\nscopes = [\"lan\"]\ndomain = \"tdm.test\"\nservers = [\"10.0.0.53\"]\nkey_file = \"{}\"\n",
        f.display()
    ));
    let (_, k, m) = only(&text);
    assert_eq!(k, "ddns[0].key_file");
    assert!(m.contains("chmod 600"), "{m}");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = ok(&text);
    let key = c.ddns[0].key.as_ref().unwrap();
    assert_eq!(format!("{}", key.algorithm()), "hmac-sha256");
}
