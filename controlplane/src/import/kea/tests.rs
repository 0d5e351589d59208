use super::*;
use crate::import::model::FoMode;

fn conv(text: &str) -> (Parsed, Issues) {
    let mut issues = Issues::new();
    let p = parse_conf(text, "k.conf", &mut issues).expect("parses");
    (p, issues)
}

fn reported(issues: Issues) -> Vec<String> {
    issues
        .finish()
        .into_iter()
        .map(|i| format!("{}: {}", i.line, i.directive))
        .collect()
}

fn valid_toml(p: &mut Parsed) -> String {
    p.model.server_id.get_or_insert(Ipv4Addr::new(10, 0, 0, 2));
    if p.model.interfaces.is_empty() {
        p.model.interfaces = vec!["eth0".into()];
    }
    p.model.state_dir = "/var/lib/tandem".into();
    let t = p.model.to_toml();
    if let Err(e) = crate::config::parse(&t, "out.toml") {
        panic!("{e}\n{t}");
    }
    t
}

#[test]
fn comments_are_blanked_and_lines_kept() {
    let s = strip_comments("{ // a\n \"a#b\": 1, # c\n /* x\n y */ \"b\": \"//\" }").unwrap();
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["a#b"], 1);
    assert_eq!(v["b"], "//");
    assert_eq!(s.lines().count(), 4);
    assert!(strip_comments("{ /* open").is_err());
    let s = strip_comments("{ \"a\": [1, 2, ], // x\n \"b\": \",]\", }").unwrap();
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["a"][1], 2);
    assert_eq!(v["b"], ",]");
    assert!(strip_comments("<?include \"x.json\"?>").is_err());
}

#[test]
fn every_value_has_its_line() {
    let text = "{\n \"Dhcp4\": {\n  \"subnet4\": [\n   { \"subnet\": \"10.0.0.0/24\",\n     \"pools\": [ { \"pool\": \"a\" },\n  { \"pool\": \"b\" } ] },\n   { \"id\": 2 }\n  ],\n  \"x\": true\n }\n}";
    let m = index_lines(text);
    assert_eq!(m["Dhcp4"], 2);
    assert_eq!(m["Dhcp4.subnet4[0].subnet"], 4);
    assert_eq!(m["Dhcp4.subnet4[0].pools[1].pool"], 6);
    assert_eq!(m["Dhcp4.subnet4[1].id"], 7);
    assert_eq!(m["Dhcp4.x"], 9);
}

const FULL: &str = r#"// A Kea configuration with a bit of everything.
{
"Dhcp4": {
    "interfaces-config": { "interfaces": [ "eth0/192.168.50.2" ] },
    "lease-database": { "type": "memfile", "persist": true, "name": "/var/lib/kea/kea-leases4.csv" },
    "valid-lifetime": 4000,
    "renew-timer": 1000,
    "rebind-timer": 2000,
    "authoritative": true,
    "decline-probation-period": 600,
    "option-def": [ { "name": "tftp-list", "code": 150, "type": "ipv4-address", "array": true },
                    { "name": "rec", "code": 200, "type": "record", "record-types": "uint8, string" } ],
    "option-data": [
        { "name": "domain-name-servers", "data": "192.168.50.1, 192.168.50.3" },
        { "code": 15, "data": "example.org" },
        { "name": "domain-search", "data": "a.example, b.example" },
        { "name": "tftp-list", "data": "192.168.50.9, 192.168.50.10" },
        { "code": 252, "csv-format": false, "data": "68747470" },
        { "name": "vendor-thing", "space": "vendor-4491", "data": "1" },
        { "name": "dhcp-lease-time", "data": "100" }
    ],
    "client-classes": [
        { "name": "ipxe", "test": "option[77].text == 'iPXE'", "option-data": [ { "name": "boot-file-name", "data": "menu.ipxe" } ] },
        { "name": "phones", "test": "substring(option[60].hex,0,7) == 'Polycom' or pkt4.mac == 0x001122334455", "valid-lifetime": 86400 },
        { "name": "odd", "test": "pkt4.msgtype == 1" }
    ],
    "subnet4": [
        {
            "id": 1,
            "subnet": "192.168.50.0/24",
            "pools": [ { "pool": "192.168.50.10 - 192.168.50.200" },
                       { "pool": "192.168.50.201 - 192.168.50.220", "client-class": "phones" },
                       { "pool": "192.168.50.224/28", "client-class": "VENDOR_CLASS_MSFT 5.0" } ],
            "option-data": [ { "name": "routers", "data": "192.168.50.1" } ],
            "reservations": [
                { "hw-address": "1a:1b:1c:1d:1e:1f", "ip-address": "192.168.50.5", "hostname": "special" },
                { "client-id": "01:11:22:33:44:55:66", "ip-address": "192.168.50.6",
                  "option-data": [ { "name": "domain-name-servers", "data": "10.9.9.9" } ] },
                { "duid": "01:02", "ip-address": "192.168.50.7" }
            ],
            "relay": { "ip-addresses": [ "10.77.0.1" ] }
        }
    ],
    "shared-networks": [ {
        "name": "office", "interface": "eth0", "valid-lifetime": 600,
        "subnet4": [ { "subnet": "10.1.0.0/24", "pools": [ { "pool": "10.1.0.10-10.1.0.20" } ] },
                     { "subnet": "10.2.0.0/24", "pools": [ { "pool": "10.2.0.10-10.2.0.20" } ], "valid-lifetime": 700 } ]
    } ],
    "reservations": [ { "hw-address": "aa:bb:cc:dd:ee:ff", "ip-address": "10.1.0.5" } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "INFO" } ],
    "sanity-checks": { "lease-checks": "warn" }
}
}
"#;

#[test]
fn a_full_configuration() {
    let (mut p, issues) = conv(FULL);
    let m = &p.model;
    assert_eq!(m.server_id, Some(Ipv4Addr::new(192, 168, 50, 2)));
    assert_eq!(m.interfaces, ["eth0"]);
    assert_eq!(m.decline_probation, Some(600));
    assert!(m.options.iter().any(|o| o.code == 6));
    assert!(m.options.contains(&Opt {
        code: 15,
        value: OptValue::Text("example.org".into())
    }));
    assert!(m.options.contains(&Opt {
        code: 119,
        value: OptValue::Domains(vec!["a.example".into(), "b.example".into()])
    }));
    assert!(m.options.contains(&Opt {
        code: 252,
        value: OptValue::Hex(b"http".to_vec())
    }));
    assert!(m
        .options
        .iter()
        .any(|o| o.code == 150 && matches!(&o.value, OptValue::Ips(a) if a.len() == 2)));
    let s = &m.scopes[0];
    assert_eq!(s.interface.as_deref(), Some("eth0"));
    assert_eq!(s.lease_time, Some(4000));
    assert_eq!((s.renew_time, s.rebind_time), (Some(1000), Some(2000)));
    assert!(s.authoritative);
    assert_eq!(s.ranges.len(), 3);
    assert_eq!(
        s.ranges[2],
        (
            Ipv4Addr::new(192, 168, 50, 224),
            Ipv4Addr::new(192, 168, 50, 239)
        )
    );
    assert_eq!(s.reservations.len(), 2);
    assert_eq!(s.reservations[0].hostname.as_deref(), Some("special"));
    assert_eq!(
        s.reservations[1].key,
        ResKey::ClientId(vec![1, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66])
    );
    assert_eq!(s.reservations[1].options.len(), 1);
    let pol: Vec<&str> = s.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pol, ["phones", "VENDOR_CLASS_MSFT 5.0", "ipxe"]);
    assert!(s.policies[0].any);
    assert_eq!(s.policies[0].lease_time, Some(86_400));
    assert_eq!(s.policies[1].conditions[0].values, ["MSFT 5.0"]);
    assert_eq!(m.scopes[1].lease_time, Some(600));
    assert_eq!(m.scopes[2].lease_time, Some(700));
    assert_eq!(m.scopes[1].interface.as_deref(), Some("eth0"));
    assert_eq!(
        m.scopes[1].reservations.len(),
        1,
        "a global reservation lands in its subnet"
    );
    assert_eq!(
        reported(issues),
        [
            "12: option-def",
            "19: option-data vendor-thing",
            "20: option-data dhcp-lease-time",
            "25: test",
            "39: duid",
            "39: reservations",
            "41: relay",
            // the shared network's lifetimes are shorter than the global T1/T2
            "46: renew-timer",
            "47: renew-timer",
            "50: loggers",
            "51: sanity-checks"
        ]
    );
    let t = valid_toml(&mut p);
    assert!(t.contains("decline_probation_time = 600"), "{t}");
}

#[test]
fn class_tests() {
    let (any, c) = parse_test("option[60].text == 'MSFT 5.0'").unwrap();
    assert!(!any);
    assert_eq!(
        (c[0].criterion, c[0].values[0].as_str()),
        ("vendor_class", "MSFT 5.0")
    );
    let (_, c) = parse_test("option[61].hex == 0x0102 and not relay4[2].hex == 'r1'").unwrap();
    assert_eq!(c[0].values, ["01:02"]);
    assert_eq!(c[1].criterion, "remote_id");
    assert!(c[1].not);
    let (_, c) = parse_test("substring(pkt4.mac,0,3) == 0x00aabb").unwrap();
    assert_eq!(c[0].values, ["00:aa:bb:*"]);
    assert!(parse_test("option[82].exists").is_err());
    let (_, c) = parse_test("relay4[1].exists").unwrap();
    assert_eq!(c[0].values, ["*"]);
    assert!(parse_test(
        "option[60].text == 'a' or option[60].text == 'b' and option[60].text == 'c'"
    )
    .is_err());
    assert!(parse_test("member('x')").is_err());
    assert!(parse_test("substring(option[60].hex,1,3) == 'abc'").is_err());
    assert!(parse_test("option[60].text == 'unterminated").is_err());
}

#[test]
fn ha_load_balancing_secondary() {
    let (mut p, issues) = conv(
        r#"{ "Dhcp4": {
  "subnet4": [ { "subnet": "10.0.0.0/24", "pools": [ { "pool": "10.0.0.10-10.0.0.99" } ] } ],
  "hooks-libraries": [ { "library": "/usr/lib/kea/hooks/libdhcp_ha.so", "parameters": { "high-availability": [ {
      "this-server-name": "b", "mode": "load-balancing", "max-response-delay": 20000, "heartbeat-delay": 5000,
      "send-lease-updates": false,
      "peers": [ { "name": "a", "url": "http://10.0.0.2:8000/", "role": "primary" },
                 { "name": "b", "url": "http://10.0.0.3:8000/", "role": "secondary", "auto-failover": false },
                 { "name": "c", "url": "http://10.0.0.4:8000/", "role": "backup" } ] } ] } } ] } }"#,
    );
    let f = &p.model.failover[0];
    assert_eq!(f.name, "a-b");
    assert!(!f.primary);
    assert_eq!(f.partner, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(f.listen, Some(Ipv4Addr::new(10, 0, 0, 3)));
    assert_eq!(f.mode, FoMode::LoadBalance(Some(50)));
    assert_eq!(f.max_response_delay, Some(20));
    assert_eq!(
        f.switchover,
        Some(20 + 122),
        "the partner fails over automatically"
    );
    assert_eq!(f.scopes, ["10.0.0.0/24"]);
    assert_eq!(p.model.server_id, Some(Ipv4Addr::new(10, 0, 0, 3)));
    assert_eq!(
        reported(issues),
        ["4: heartbeat-delay", "5: send-lease-updates", "8: peers"]
    );
    valid_toml(&mut p);
}

#[test]
fn ha_that_cannot_be_translated() {
    let (p, issues) = conv(
        r#"{ "Dhcp4": {
  "subnet4": [ { "subnet": "10.0.0.0/24", "pools": [ { "pool": "10.0.0.10-10.0.0.99" } ] } ],
  "hooks-libraries": [ { "library": "libdhcp_ha.so", "parameters": { "high-availability": [ {
      "this-server-name": "a", "mode": "passive-backup",
      "peers": [ { "name": "a", "url": "http://10.0.0.2:8000/", "role": "primary" },
                 { "name": "b", "url": "http://server-b:8000/", "role": "secondary" } ] } ] } },
     { "library": "libdhcp_flex_id.so" } ] } }"#,
    );
    assert!(p.model.failover.is_empty());
    assert_eq!(reported(issues), ["3: mode", "7: hooks-libraries"]);
}

#[test]
fn errors_carry_their_line() {
    let mut issues = Issues::new();
    match parse_conf(
        "{\n \"Dhcp4\": {\n  \"a\": 1 2,\n }\n}",
        "k.conf",
        &mut issues,
    ) {
        Err(ImportError::Parse(m)) => assert!(m.starts_with("k.conf:3:"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    match parse_conf(
        "{ \"Dhcp4\": { \"subnet4\": [\n { \"subnet\": \"10.0.0.0/33\" } ] } }",
        "k.conf",
        &mut issues,
    ) {
        Err(ImportError::Parse(m)) => assert!(m.starts_with("k.conf:2:"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(parse_conf("[]", "k.conf", &mut issues).is_err());
    assert!(parse_conf("{ \"Dhcp6\": {} }", "k.conf", &mut issues).is_err());
}

#[test]
fn nested_substrings_are_refused() {
    let deep = format!("{}option[60].hex", "substring(".repeat(10_000));
    assert!(parse_test(&deep).is_err());
    assert!(parse_test("substring(substring(option[60].hex,0,1),0,1) == 'a'").is_err());
}

#[test]
fn csv_option_data_unescapes_commas() {
    assert_eq!(csv_fields(r"a\,b,c\\d,e\x"), ["a,b", r"c\d", r"e\x"]);
    let (p, issues) = conv(
        r#"{ "Dhcp4": { "option-data": [
            { "name": "boot-file-name", "data": "EST5EDT4\\,M3.2.0/02:00\\,M11.1.0/02:00" },
            { "name": "vivso-suboptions", "data": "4491" },
            { "code": 43, "csv-format": false, "data": "01:04:0a:00:00:01" } ],
          "subnet4": [ { "subnet": "10.0.0.0/24", "pools": [ { "pool": "10.0.0.10-10.0.0.20" } ] } ] } }"#,
    );
    assert!(p.model.options.contains(&Opt {
        code: 67,
        value: OptValue::Text("EST5EDT4,M3.2.0/02:00,M11.1.0/02:00".into())
    }));
    assert!(p.model.options.contains(&Opt {
        code: 43,
        value: OptValue::Hex(vec![1, 4, 10, 0, 0, 1])
    }));
    assert!(!p.model.options.iter().any(|o| o.code == 125));
    assert_eq!(reported(issues), ["3: option-data vivso-suboptions"]);
}

#[test]
fn subnet_client_classes_and_untranslatable_pool_classes() {
    let (mut p, issues) = conv(
        r#"{ "Dhcp4": {
  "client-classes": [ { "name": "lab", "test": "option[77].text == 'lab'" },
                      { "name": "odd", "test": "pkt4.msgtype == 1" } ],
  "subnet4": [
    { "subnet": "10.0.0.0/24", "client-class": "lab",
      "pools": [ { "pool": "10.0.0.10-10.0.0.20" }, { "pool": "10.0.0.30-10.0.0.40" } ] },
    { "subnet": "10.1.0.0/24",
      "pools": [ { "pool": "10.1.0.10-10.1.0.20", "client-class": "odd" },
                 { "pool": "10.1.0.30-10.1.0.40", "client-class": "nope" } ] } ] } }"#,
    );
    let s = &p.model.scopes;
    assert_eq!(s[0].policies.len(), 1);
    assert_eq!(
        s[0].policies[0].ranges, s[0].ranges,
        "the whole subnet is the class's"
    );
    assert!(s[1].policies.is_empty());
    assert_eq!(
        s[1].ranges.len(),
        2,
        "the ranges stay, open to every client"
    );
    assert_eq!(
        reported(issues),
        ["3: test", "8: client-class", "9: client-class"]
    );
    valid_toml(&mut p);
}
