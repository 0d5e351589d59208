use super::*;
use crate::import::model::FoMode;

fn conv(text: &str) -> (Parsed, Issues) {
    let mut issues = Issues::new();
    let p = parse_conf(text.as_bytes(), Path::new("d.conf"), &mut issues).expect("parses");
    (p, issues)
}

/// The reports as `LINE: directive` strings.
fn reported(issues: Issues) -> Vec<String> {
    issues
        .finish()
        .into_iter()
        .map(|i| format!("{}: {}", i.line, i.directive))
        .collect()
}

/// The model rendered with a server id and interface, checked by Tandem's validator.
fn valid_toml(p: &mut Parsed) -> String {
    p.model.server_id.get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
    p.model.interfaces = vec!["eth1".into()];
    p.model.state_dir = "/var/lib/tandem".into();
    for s in &mut p.model.scopes {
        if s.interface.is_some() {
            s.interface = Some("eth1".into());
        }
    }
    let t = p.model.to_toml();
    if let Err(e) = crate::config::parse(&t, "out.toml") {
        panic!("{e}\n{t}");
    }
    t
}

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

#[test]
fn subnets_ranges_pools_and_lease_times() {
    let (mut p, issues) = conv(
        "default-lease-time 600;\nmax-lease-time 300;\nauthoritative;\n\
         subnet 10.0.0.0 netmask 255.255.255.0 {\n  range 10.0.0.0 10.0.0.50;\n  pool { range 10.0.0.100 10.0.0.150; }\n  \
         default-lease-time 100;\n  min-lease-time 200;\n}\n\
         subnet 10.9.0.0 netmask 255.255.0.0 {\n  not authoritative;\n  range 10.9.1.1;\n  option dhcp-renewal-time 50;\n  option dhcp-rebinding-time 80;\n  default-lease-time 100;\n}\n",
    );
    let s = &p.model.scopes;
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].name, "10.0.0.0/24");
    assert_eq!(
        s[0].ranges,
        [
            (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 50)),
            (Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 150))
        ]
    );
    // min-lease-time 200 above the subnet's default 100 wins (and is reported).
    assert_eq!(s[0].lease_time, Some(200));
    assert!(s[0].authoritative);
    assert_eq!(s[1].subnet, (Ipv4Addr::new(10, 9, 0, 0), 16));
    assert_eq!(
        s[1].ranges,
        [(Ipv4Addr::new(10, 9, 1, 1), Ipv4Addr::new(10, 9, 1, 1))]
    );
    assert!(!s[1].authoritative);
    assert_eq!(s[1].lease_time, Some(100));
    assert_eq!((s[1].renew_time, s[1].rebind_time), (Some(50), Some(80)));
    assert!(s[1].options.is_empty(), "T1/T2 are keys, not options");
    assert_eq!(
        reported(issues),
        ["5: range", "8: min-lease-time"],
        "the range with the network address, and the min above the default"
    );
    valid_toml(&mut p);
}

#[test]
fn dhcpd_default_lease_time_is_twelve_hours_and_not_authoritative() {
    let (p, issues) = conv("subnet 10.0.0.0 netmask 255.255.255.0 { range 10.0.0.10 10.0.0.20; }");
    assert_eq!(p.model.scopes[0].lease_time, Some(43_200));
    assert!(!p.model.scopes[0].authoritative);
    assert!(issues.is_empty());
}

#[test]
fn max_lease_time_below_the_default_caps_it() {
    let (p, issues) = conv(
        "default-lease-time 600;\nmax-lease-time 300;\nsubnet 10.0.0.0 netmask 255.255.255.0 { range 10.0.0.10 10.0.0.20; }",
    );
    assert_eq!(p.model.scopes[0].lease_time, Some(300));
    assert_eq!(reported(issues), ["2: max-lease-time"]);
}

#[test]
fn options_by_name_by_code_and_definitions() {
    let (mut p, issues) = conv(
        "option domain-name \"corp.example\";\n\
         option domain-name-servers 10.0.0.53, 10.0.0.54;\n\
         option domain-search \"a.example\", \"b.example\";\n\
         option voip code 150 = array of ip-address;\n\
         option wpad code 252 = text;\n\
         option wpad \"http://wpad/wpad.dat\";\n\
         option no-such-thing 1;\n\
         option rec code 200 = { ip-address, text };\n\
         option vendor.thing code 1 = text;\n\
         option routers gw.example;\n\
         subnet 10.0.0.0 netmask 255.255.255.0 {\n  range 10.0.0.10 10.0.0.20;\n  option routers 10.0.0.1;\n  option voip 10.0.0.69, 10.0.0.70;\n  option interface-mtu 1400;\n  option domain-name \"corp.example\";\n  filename \"pxelinux.0\";\n}\n",
    );
    let g = &p.model.options;
    assert!(g.contains(&Opt {
        code: 15,
        value: OptValue::Text("corp.example".into())
    }));
    assert!(g.contains(&Opt {
        code: 6,
        value: OptValue::Ips(vec![
            Ipv4Addr::new(10, 0, 0, 53),
            Ipv4Addr::new(10, 0, 0, 54)
        ])
    }));
    assert!(g.contains(&Opt {
        code: 119,
        value: OptValue::Domains(vec!["a.example".into(), "b.example".into()])
    }));
    assert!(g.contains(&Opt {
        code: 252,
        value: OptValue::Text("http://wpad/wpad.dat".into())
    }));
    let s = &p.model.scopes[0].options;
    assert!(s.contains(&Opt {
        code: 3,
        value: OptValue::Ips(vec![A])
    }));
    assert!(s.contains(&Opt {
        code: 150,
        value: OptValue::Ips(vec![
            Ipv4Addr::new(10, 0, 0, 69),
            Ipv4Addr::new(10, 0, 0, 70)
        ])
    }));
    assert!(s.contains(&Opt {
        code: 26,
        value: OptValue::Int {
            width: 2,
            value: 1400
        }
    }));
    assert!(s.contains(&Opt {
        code: 67,
        value: OptValue::Text("pxelinux.0".into())
    }));
    assert!(
        !s.iter().any(|o| o.code == 15),
        "the same value as the global one is inherited"
    );
    assert_eq!(
        reported(issues),
        [
            "7: option no-such-thing",
            "8: option rec",
            "9: option vendor.thing",
            "10: option routers",
            "17: filename"
        ]
    );
    let t = valid_toml(&mut p);
    assert!(
        t.contains("domain_search = [\"a.example\", \"b.example\"]"),
        "{t}"
    );
    assert!(t.contains("interface_mtu = 1400"), "{t}");
    assert!(t.contains("code = 150\ntype = \"ipv4-list\""), "{t}");
}

#[test]
fn hosts_become_reservations() {
    let (mut p, issues) = conv(
        "use-host-decl-names on;\n\
         subnet 10.0.0.0 netmask 255.255.255.0 { range 10.0.0.100 10.0.0.200; }\n\
         subnet 10.1.0.0 netmask 255.255.255.0 { range 10.1.0.100 10.1.0.200; }\n\
         host printer { hardware ethernet 52:54:00:aa:bb:cc; fixed-address 10.0.0.20, 10.1.0.20; option host-name \"printer-2f\"; option routers 10.0.0.254; }\n\
         host byid { option dhcp-client-identifier \"\\001RT\\000\\0224V\"; fixed-address 10.0.0.21; }\n\
         host byhex { option dhcp-client-identifier 1:52:54:0:1:2:3; fixed-address 10.0.0.22; }\n\
         host nameonly.example { hardware ethernet 52:54:00:00:00:09; fixed-address 10.0.0.23; }\n\
         host dynamic { hardware ethernet 52:54:00:00:00:10; }\n\
         host byname { hardware ethernet 52:54:00:00:00:11; fixed-address pc.example; }\n\
         host nowhere { hardware ethernet 52:54:00:00:00:12; fixed-address 192.168.9.9; }\n\
         host nokey { fixed-address 10.0.0.24; }\n\
         host both { hardware ethernet 52:54:00:00:00:13; option dhcp-client-identifier 1:2:3; fixed-address 10.0.0.25; }\n",
    );
    let r = &p.model.scopes[0].reservations;
    assert_eq!(r.len(), 5);
    assert_eq!(r[0].key, ResKey::Mac([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]));
    assert_eq!(r[0].address, Ipv4Addr::new(10, 0, 0, 20));
    assert_eq!(r[0].hostname.as_deref(), Some("printer-2f"));
    assert_eq!(
        r[0].options,
        [Opt {
            code: 3,
            value: OptValue::Ips(vec![Ipv4Addr::new(10, 0, 0, 254)])
        }]
    );
    assert_eq!(
        r[1].key,
        ResKey::ClientId(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(r[2].key, ResKey::ClientId(vec![1, 0x52, 0x54, 0, 1, 2, 3]));
    assert_eq!(
        r[3].hostname.as_deref(),
        Some("nameonly.example"),
        "use-host-decl-names"
    );
    assert_eq!(r[4].key, ResKey::Mac([0x52, 0x54, 0, 0, 0, 0x13]));
    let r1 = &p.model.scopes[1].reservations;
    assert_eq!(
        r1.len(),
        1,
        "a second fixed address reserves in its own scope"
    );
    assert_eq!(r1[0].address, Ipv4Addr::new(10, 1, 0, 20));
    assert_eq!(
        reported(issues),
        [
            "8: host",
            "9: fixed-address",
            "9: host",
            "10: fixed-address",
            "11: host",
            "12: host"
        ]
    );
    valid_toml(&mut p);
}

#[test]
fn classes_and_permit_lists_become_policies() {
    let (mut p, issues) = conv(
        "class \"phones\" {\n  match if substring(option vendor-class-identifier, 0, 7) = \"Polycom\" or substring(hardware, 1, 3) = 00:04:f2;\n  option tftp-server-name \"tftp.example\";\n  default-lease-time 86400;\n}\n\
         class \"pxe\" { match option vendor-class-identifier; option bootfile-name \"undionly.kpxe\"; }\n\
         subclass \"pxe\" \"PXEClient:Arch:00000\";\n\
         subclass \"pxe\" \"PXEClient:Arch:00007\";\n\
         class \"guests\" { match if option user-class = \"guest\"; }\n\
         class \"weird\" { match if concat(option host-name, \"x\") = \"y\"; }\n\
         class \"ids\" { match if option dhcp-client-identifier = 1:2:3 and option agent.circuit-id = \"port1\"; }\n\
         subnet 10.0.0.0 netmask 255.255.255.0 {\n  range 10.0.0.10 10.0.0.99;\n  pool { allow members of \"phones\"; range 10.0.0.100 10.0.0.149; }\n  pool { deny members of \"guests\"; range 10.0.0.150 10.0.0.199; }\n  pool { allow members of \"weird\"; range 10.0.0.200 10.0.0.209; }\n  pool { allow unknown-clients; deny known-clients; range 10.0.0.210 10.0.0.219; }\n  pool { allow members of \"ids\"; range 10.0.0.220 10.0.0.229; }\n}\n",
    );
    let pol = &p.model.scopes[0].policies;
    let names: Vec<&str> = pol.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["phones", "not-guests", "ids", "pxe"]);
    assert!(pol[0].any);
    assert_eq!(pol[0].conditions[0].criterion, "vendor_class");
    assert_eq!(pol[0].conditions[0].values, ["Polycom*"]);
    assert_eq!(pol[0].conditions[1].criterion, "mac");
    assert_eq!(pol[0].conditions[1].values, ["00:04:f2:*"]);
    assert_eq!(
        pol[0].ranges,
        [(Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 149))]
    );
    assert_eq!(pol[0].lease_time, Some(86_400));
    assert!(pol[0].options.iter().any(|o| o.code == 66));
    assert!(pol[1].conditions[0].not);
    assert_eq!(pol[1].conditions[0].values, ["guest"]);
    assert!(!pol[2].any, "and");
    assert_eq!(pol[2].conditions[0].values, ["01:02:03"]);
    assert_eq!(pol[2].conditions[1].criterion, "circuit_id");
    assert_eq!(
        pol[3].conditions[0].values,
        ["PXEClient:Arch:00000", "PXEClient:Arch:00007"]
    );
    assert!(
        pol[3].ranges.is_empty(),
        "a class with options but no pool applies scope-wide"
    );
    let r = reported(issues);
    assert!(r.contains(&"10: match".to_string()), "{r:?}");
    assert!(r.contains(&"16: pool".to_string()), "{r:?}");
    assert!(
        r.contains(&"17: allow unknown-clients".to_string()),
        "{r:?}"
    );
    assert!(r.contains(&"17: deny known-clients".to_string()), "{r:?}");
    valid_toml(&mut p);
}

#[test]
fn match_expressions_that_cannot_be_conditions() {
    let toks = |s: &str| {
        Lexer::new(s.as_bytes(), "x")
            .all()
            .expect("lexes")
            .remove(0)
            .words
    };
    assert!(parse_match(&toks("option host-name = \"a\";")).is_err());
    assert!(parse_match(&toks(
        "option user-class = \"a\" or option user-class = \"b\" and option user-class = \"c\";"
    ))
    .is_err());
    assert!(parse_match(&toks("substring(option user-class, 1, 2) = \"ab\";")).is_err());
    assert!(parse_match(&toks("option user-class ~= \"a\";")).is_err());
    let (any, c) = parse_match(&toks("hardware = 1:52:54:0:1:2:3;")).unwrap();
    assert!(!any);
    assert_eq!(c[0].values, ["52:54:00:01:02:03"]);
    let (_, c) = parse_match(&toks("not option vendor-class-identifier = \"a*b\";")).unwrap();
    assert!(c[0].not);
    assert_eq!(
        c[0].values,
        ["hex:61:2a:62"],
        "a literal * is matched as bytes"
    );
}

#[test]
fn failover_peers_become_relationships() {
    let (mut p, issues) = conv(
        "failover peer \"dhcp fo\" {\n  primary;\n  address 10.0.0.2;\n  port 847;\n  peer address 10.0.0.3;\n  peer port 647;\n  max-response-delay 30;\n  max-unacked-updates 10;\n  mclt 1800;\n  split 200;\n  load balance max seconds 3;\n  auto-partner-down 60;\n  max-lease-misbalance 15;\n}\n\
         subnet 10.0.0.0 netmask 255.255.255.0 {\n  pool { failover peer \"dhcp fo\"; range 10.0.0.100 10.0.0.200; }\n}\n\
         subnet 10.1.0.0 netmask 255.255.255.0 { range 10.1.0.10 10.1.0.20; }\n",
    );
    let f = &p.model.failover[0];
    assert_eq!(f.name, "dhcp-fo");
    assert!(f.primary);
    assert_eq!(f.listen, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(f.listen_port, Some(847));
    assert_eq!(f.partner, Ipv4Addr::new(10, 0, 0, 3));
    assert_eq!(f.partner_port, Some(647));
    assert_eq!(f.max_response_delay, Some(30));
    assert_eq!(f.max_unacked, Some(10));
    assert_eq!(f.mclt, Some(1800));
    assert_eq!(f.mode, FoMode::LoadBalance(Some(78)));
    assert_eq!(f.switchover, Some(30 + 122), "raised to Tandem's minimum");
    assert_eq!(f.scopes, ["10.0.0.0/24"]);
    assert_eq!(
        p.model.server_id,
        Some(Ipv4Addr::new(10, 0, 0, 2)),
        "the peer's own address"
    );
    assert_eq!(
        reported(issues),
        [
            "1: failover peer",
            "10: split",
            "11: load balance",
            "12: auto-partner-down",
            "13: max-lease-misbalance"
        ]
    );
    let t = valid_toml(&mut p);
    assert!(t.contains("load_balance_percent = 78"), "{t}");
}

#[test]
fn a_secondary_and_an_unused_peer() {
    let (mut p, issues) = conv(
        "failover peer \"fo\" { secondary; address 10.0.0.3; peer address 10.0.0.2; hba ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00; }\n\
         failover peer \"unused\" { primary; address 10.0.0.3; peer address 10.0.0.9; }\n\
         subnet 10.0.0.0 netmask 255.255.255.0 {\n  failover peer \"fo\";\n  range 10.0.0.100 10.0.0.200;\n}\n",
    );
    let f = &p.model.failover;
    assert_eq!(f.len(), 1);
    assert!(!f[0].primary);
    assert_eq!(f[0].mode, FoMode::LoadBalance(None));
    assert_eq!(reported(issues), ["1: hba", "1: split", "2: failover peer"]);
    valid_toml(&mut p);
}

#[test]
fn shared_networks_and_their_pools() {
    let (mut p, issues) = conv(
        "shared-network office {\n  option ntp-servers 10.1.0.1;\n  subnet 10.1.0.0 netmask 255.255.255.0 { option routers 10.1.0.1; }\n  subnet 10.2.0.0 netmask 255.255.255.0 { option routers 10.2.0.1; }\n  pool { range 10.1.0.10 10.1.0.20; range 10.2.0.10 10.2.0.20; }\n}\n",
    );
    assert_eq!(
        p.shared,
        [Some("office".to_string()), Some("office".to_string())]
    );
    assert_eq!(
        p.model.scopes[0].ranges,
        [(Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 1, 0, 20))]
    );
    assert_eq!(
        p.model.scopes[1].ranges,
        [(Ipv4Addr::new(10, 2, 0, 10), Ipv4Addr::new(10, 2, 0, 20))]
    );
    assert!(
        p.model.scopes[1].options.iter().any(|o| o.code == 42),
        "inherited from the shared network"
    );
    assert_eq!(reported(issues), ["1: shared-network"]);
    // The interface of 10.1.0.2 serves the whole shared network.
    let opts = crate::import::Options {
        source: crate::import::Source::Dhcpd,
        conf: "x".into(),
        leases: None,
        out: "x".into(),
        state_dir: "/s".into(),
        strict: false,
        server_id: None,
        interfaces: vec!["eth7/10.1.0.2".into()],
        dry_run: false,
    };
    crate::import::apply_server(&mut p, &opts).expect("applies");
    assert_eq!(p.model.server_id, Some(Ipv4Addr::new(10, 1, 0, 2)));
    assert!(p
        .model
        .scopes
        .iter()
        .all(|s| s.interface.as_deref() == Some("eth7")));
    valid_toml(&mut p);
}

#[test]
fn subnets_without_ranges() {
    let (mut p, issues) = conv(
        "subnet 10.0.0.0 netmask 255.255.255.0 { }\n\
         subnet 10.1.0.0 netmask 255.255.255.0 { }\n\
         host h { hardware ethernet 52:54:00:00:00:01; fixed-address 10.1.0.5; }\n",
    );
    assert_eq!(p.model.scopes.len(), 1, "the empty subnet is left out");
    assert_eq!(
        p.model.scopes[0].ranges,
        [(Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 1, 0, 5))]
    );
    assert_eq!(reported(issues), ["1: subnet"]);
    valid_toml(&mut p);
}

#[test]
fn untranslatable_directives_are_reported_with_their_line() {
    let (_, issues) = conv(
        "log-facility local7;\nping-check true;\nddns-update-style interim;\nkey k { algorithm hmac-md5; secret x; }\n\
         zone example. { primary 10.0.0.1; }\nomapi-port 7911;\nnext-server 10.0.0.5;\n\
         subnet 10.0.0.0 netmask 255.255.255.0 {\n  range 10.0.0.10 10.0.0.20;\n  if option user-class = \"x\" { option routers 10.0.0.9; }\n  on commit { set x = \"y\"; }\n  frobnicate 3;\n  allow bootp;\n  range dynamic-bootp 10.0.0.30 10.0.0.40;\n}\n\
         ddns-update-style none;\nallow unknown-clients;\ndeny bootp;\nlease-file-name \"/var/lib/dhcp/dhcpd.leases\";\nping-check false;\n",
    );
    assert_eq!(
        reported(issues),
        [
            "1: log-facility",
            "2: ping-check",
            "3: ddns-update-style",
            "4: key",
            "5: zone",
            "6: omapi-port",
            "7: next-server",
            "10: if",
            "11: on commit",
            "12: frobnicate",
            "13: allow bootp",
            "14: range"
        ]
    );
}

#[test]
fn includes_are_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("inner.conf"),
        "subnet 10.0.0.0 netmask 255.255.255.0 {\n range 10.0.0.10 10.0.0.20;\n log-facility x;\n}\n",
    )
    .unwrap();
    let main = dir.path().join("dhcpd.conf");
    let text = "include \"inner.conf\";\n";
    let mut issues = Issues::new();
    let p = parse_conf(text.as_bytes(), &main, &mut issues).expect("parses");
    assert_eq!(p.model.scopes.len(), 1);
    let v = issues.finish();
    assert!(v[0].file.ends_with("inner.conf") && v[0].line == 3, "{v:?}");
    let mut issues = Issues::new();
    assert!(matches!(
        parse_conf(b"include \"missing.conf\";", &main, &mut issues),
        Err(ImportError::Io(_))
    ));
}

#[test]
fn syntax_errors_name_their_line() {
    let mut issues = Issues::new();
    let e = |t: &str, issues: &mut Issues| match parse_conf(
        t.as_bytes(),
        Path::new("d.conf"),
        issues,
    ) {
        Err(ImportError::Parse(m)) => m,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert!(e(
        "subnet 10.0.0.0 netmask 255.255.255.0 {\n range 10.0.0.1 10.0.0.2\n}\n",
        &mut issues
    )
    .starts_with("d.conf:3:"));
    assert!(e("\n\nsubnet 10.0.0.0 {\n}\n", &mut issues).starts_with("d.conf:3:"));
    assert!(e("subnet 10.0.0.0 netmask 255.0.255.0 { }", &mut issues).starts_with("d.conf:1:"));
}

#[test]
fn odd_input_is_reported_never_a_panic() {
    let (_, issues) = conv("option;\noption routers;\nmatch;\nclass \"c\" { match if substring(substring(substring(option user-class, 0, 1), 0, 1), 0, 1) = \"a\"; }\n");
    assert_eq!(
        reported(issues),
        ["1: option", "2: option routers", "3: match", "4: match"]
    );
    let deep = format!(
        "class \"c\" {{ match if {}option user-class = \"a\"; }}",
        "substring(".repeat(100_000)
    );
    let (_, issues) = conv(&deep);
    assert!(issues.has("match"));
    let mut issues = Issues::new();
    let p = parse_conf_alone(
        b"include \"/etc/passwd\";\n",
        Path::new("d.conf"),
        &mut issues,
    )
    .expect("parses");
    assert!(p.model.scopes.is_empty());
    assert!(issues.has("include"));
}

#[test]
fn an_undeclared_peer_is_reported_at_its_subnet() {
    let (p, issues) = conv(
        "\nsubnet 10.0.0.0 netmask 255.255.255.0 {\n  pool { failover peer \"nope\"; range 10.0.0.10 10.0.0.20; }\n}\n",
    );
    assert!(p.model.failover.is_empty());
    assert_eq!(reported(issues), ["2: failover peer"]);
}

#[test]
fn groups_pass_their_parameters_down() {
    let (mut p, issues) = conv(
        "subnet 10.0.0.0 netmask 255.255.255.0 { range 10.0.0.100 10.0.0.200; option routers 10.0.0.1; }\n\
         group {\n  option routers 10.0.0.254;\n  option domain-name \"lab.example\";\n  host a { hardware ethernet 52:54:00:00:00:01; fixed-address 10.0.0.5; }\n  \
         host b { hardware ethernet 52:54:00:00:00:02; fixed-address 10.0.0.6; option routers 10.0.0.1; }\n}\n\
         group { default-lease-time 120; subnet 10.1.0.0 netmask 255.255.255.0 { range 10.1.0.10 10.1.0.20; } }\n",
    );
    let r = &p.model.scopes[0].reservations;
    assert_eq!(
        r[0].options.len(),
        2,
        "routers and domain-name of the group: {:?}",
        r[0].options
    );
    assert_eq!(
        r[1].options,
        [Opt {
            code: 15,
            value: OptValue::Text("lab.example".into())
        }],
        "the host's own routers equal the scope's"
    );
    assert_eq!(p.model.scopes[1].lease_time, Some(120));
    assert!(issues.is_empty());
    valid_toml(&mut p);
}

#[test]
fn a_shared_network_pool_in_a_relationship() {
    let (mut p, issues) = conv(
        "failover peer \"fo\" { primary; address 10.1.0.2; peer address 10.1.0.3; mclt 600; split 128; }\n\
         shared-network office {\n  subnet 10.1.0.0 netmask 255.255.255.0 { }\n  subnet 10.2.0.0 netmask 255.255.255.0 { }\n  \
         pool { failover peer \"fo\"; range 10.1.0.10 10.1.0.20; range 10.2.0.10 10.2.0.20; }\n}\n",
    );
    assert_eq!(p.model.failover[0].scopes, ["10.1.0.0/24", "10.2.0.0/24"]);
    assert_eq!(reported(issues), ["2: shared-network"]);
    valid_toml(&mut p);
}
