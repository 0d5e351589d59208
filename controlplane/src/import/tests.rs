use super::*;
use std::io::Write as _;

struct Dir {
    d: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            d: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.d.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
    fn path(&self, name: &str) -> PathBuf {
        self.d.path().join(name)
    }
    fn opts(&self, source: Source, conf: &str, leases: &str) -> Options {
        let (c, l) = match source {
            Source::Dhcpd => ("dhcpd.conf", "dhcpd.leases"),
            Source::Kea => ("kea-dhcp4.conf", "kea-leases4.csv"),
        };
        Options {
            source,
            conf: self.write(c, conf),
            leases: Some(self.write(l, leases)),
            out: self.path("tandem.toml"),
            state_dir: self.path("state"),
            strict: false,
            server_id: None,
            interfaces: vec!["eth1/10.0.0.2".into()],
            dry_run: false,
        }
    }
}

fn recovered(dir: &Path) -> Vec<Binding> {
    let (_, rec) = Journal::open(JournalConfig::new(dir, 0)).expect("journal");
    rec.bindings
}

const CONF: &str = "authoritative;\nsubnet 10.0.0.0 netmask 255.255.255.0 {\n  range 10.0.0.100 10.0.0.200;\n  option routers 10.0.0.1;\n}\n";

const LEASES: &str = "\
authoring-byte-order little-endian;
server-duid \"\\000\\001\";
lease 10.0.0.100 {
  starts 1 2026/12/07 00:00:00;
  ends 1 2099/12/07 00:00:00;
  cltt 1 2026/12/07 00:00:00;
  binding state active;
  next binding state free;
  hardware ethernet 52:54:00:00:00:01;
  uid \"\\001RT\\000\\000\\000\\001\";
  client-hostname \"one\";
}
lease 10.0.0.101 {
  starts 1 2026/12/07 00:00:00;
  ends 1 2099/12/07 00:00:00;
  binding state active;
  hardware ethernet 52:54:00:00:00:02;
}
lease 10.0.0.101 {
  starts 1 2026/12/07 00:00:00;
  ends 1 2026/12/07 01:00:00;
  binding state released;
  hardware ethernet 52:54:00:00:00:02;
}
lease 10.0.0.102 { binding state free; }
lease 10.0.0.103 { binding state backup; hardware ethernet 52:54:00:00:00:03; }
lease 10.0.0.104 { starts 1 2026/12/07 00:00:00; ends 1 2026/12/07 01:00:00; binding state expired; uid 01:52:54:00:00:00:04; }
lease 10.0.0.105 { starts 1 2026/12/07 00:00:00; ends 1 2099/12/07 01:00:00; binding state abandoned; }
lease 10.0.0.106 { binding state reset; hardware ethernet 52:54:00:00:00:06; }
lease 10.0.0.107 { binding state active; ends never; hardware ethernet 52:54:00:00:00:07; set vendor-class = \"x\"; }
lease 192.168.0.1 { binding state active; hardware ethernet 52:54:00:00:00:08; }
";

#[test]
fn a_dhcpd_import_writes_the_config_and_the_journal() {
    let d = Dir::new();
    let o = d.opts(Source::Dhcpd, CONF, LEASES);
    let out = run(&o).expect("imports");
    assert_eq!(out.leases_read, 10);
    let cfg = crate::config::load(&o.out).expect("the written file validates");
    assert_eq!(cfg.settings.scopes.len(), 1);
    assert_eq!(cfg.daemon.interfaces, ["eth1"]);
    assert_eq!(cfg.daemon.state_dir, d.path("state"));
    assert_eq!(cfg.scope_interfaces, [Some("eth1".to_string())]);
    let b = recovered(&d.path("state"));
    let by = |a: [u8; 4]| b.iter().find(|x| x.addr == Ipv4Addr::from(a)).copied();
    let one = by([10, 0, 0, 100]).expect("active lease");
    assert_eq!(one.state, BindingState::Active);
    assert!(one.client_id);
    assert_eq!(one.client.as_bytes(), [1, 0x52, 0x54, 0, 0, 0, 1]);
    assert_eq!(one.hw(), [0x52, 0x54, 0, 0, 0, 1]);
    assert_eq!(one.start, 1_796_601_600);
    assert_eq!(one.cltt, one.start);
    let two = by([10, 0, 0, 101]).expect("released");
    assert_eq!(two.state, BindingState::Released, "the later entry wins");
    assert!(!two.client_id);
    assert_eq!(two.client.as_bytes(), [1, 0x52, 0x54, 0, 0, 0, 2]);
    assert!(
        by([10, 0, 0, 102]).is_none(),
        "a free address nobody held is just free"
    );
    assert_eq!(
        by([10, 0, 0, 103]).map(|x| x.state),
        Some(BindingState::Free),
        "backup without failover"
    );
    assert_eq!(
        by([10, 0, 0, 104]).map(|x| x.state),
        Some(BindingState::Expired)
    );
    assert_eq!(
        by([10, 0, 0, 105]).map(|x| x.state),
        Some(BindingState::Abandoned)
    );
    assert_eq!(
        by([10, 0, 0, 106]).map(|x| x.state),
        Some(BindingState::Reset)
    );
    assert_eq!(by([10, 0, 0, 107]).map(|x| x.expires), Some(u32::MAX));
    assert!(by([192, 168, 0, 1]).is_none());
    let shown: Vec<String> = out.issues.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("{}:11: client-hostname: Tandem's lease journal keeps no client host names: not imported", o.leases.as_ref().unwrap().display()),
            format!("{}:30: set vendor-class: Tandem's lease journal keeps no such lease attribute: not imported", o.leases.as_ref().unwrap().display()),
            format!("{}:31: lease: 192.168.0.1 is in no imported subnet: not imported", o.leases.as_ref().unwrap().display()),
        ]
    );
    // A second import into the same state directory is refused.
    let e = run(&o).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_IO, "{e}");
}

#[test]
fn failover_scopes_keep_free_and_backup_addresses_and_partner_times() {
    let d = Dir::new();
    let conf = "failover peer \"fo\" { secondary; address 10.0.0.2; peer address 10.0.0.3; }\n\
                subnet 10.0.0.0 netmask 255.255.255.0 { pool { failover peer \"fo\"; range 10.0.0.100 10.0.0.200; } }\n";
    let leases = "lease 10.0.0.100 { binding state free; }\nlease 10.0.0.101 { binding state backup; }\n\
                  lease 10.0.0.102 { starts epoch 1796601600; ends epoch 1896601600; tstp epoch 1896601600; tsfp epoch 1796605200; atsfp epoch 1796608800; binding state active; hardware ethernet 52:54:00:00:00:02; }\n";
    let o = d.opts(Source::Dhcpd, conf, leases);
    run(&o).expect("imports");
    let b = recovered(&d.path("state"));
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].state, BindingState::Free);
    assert_eq!(b[1].state, BindingState::Backup);
    assert_eq!(b[2].sent_expiry, 1_896_601_600);
    assert_eq!(
        b[2].acked_expiry, 1_796_608_800,
        "the later of tsfp and atsfp"
    );
}

#[test]
fn a_kea_import() {
    let d = Dir::new();
    let conf = r#"{ "Dhcp4": { "valid-lifetime": 4000,
        "subnet4": [ { "subnet": "10.0.0.0/24", "interface": "eth1", "pools": [ { "pool": "10.0.0.100 - 10.0.0.200" } ] } ] } }"#;
    let csv = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n\
               10.0.0.100,52:54:00:00:00:01,01:52:54:00:00:00:01,4000,1896607201,1,0,0,,0,\n\
               10.0.0.101,52:54:00:00:00:02,,4000,1896607201,1,0,0,,0,\n\
               10.0.0.101,52:54:00:00:00:02,,0,1796607201,1,0,0,,0,\n\
               10.0.0.102,,,4000,1796607201,1,0,0,,1,\n\
               10.0.0.103,52:54:00:00:00:03,,4000,1796607201,1,0,0,,2,{ \"x\": 1 }\n";
    let mut o = d.opts(Source::Kea, conf, csv);
    o.interfaces = vec!["eth1".into()];
    o.server_id = Some(Ipv4Addr::new(10, 0, 0, 2));
    let out = run(&o).expect("imports");
    assert_eq!(out.leases_read, 5);
    let b = recovered(&d.path("state"));
    let st: Vec<BindingState> = b.iter().map(|x| x.state).collect();
    assert_eq!(
        st,
        [
            BindingState::Active,
            BindingState::Released,
            BindingState::Abandoned,
            BindingState::Expired
        ]
    );
    assert_eq!(b[0].start, 1_896_607_201 - 4000);
    assert!(b[0].client_id);
    assert!(out
        .issues
        .iter()
        .any(|i| i.directive == "user_context" && i.line == 6));
    crate::config::load(&o.out).expect("valid");
}

#[test]
fn strict_writes_nothing_and_exits_3() {
    let d = Dir::new();
    let conf = format!("log-facility local7;\n{CONF}");
    let mut o = d.opts(Source::Dhcpd, &conf, LEASES);
    o.strict = true;
    let e = run(&o).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_UNTRANSLATABLE);
    let ImportError::Untranslatable(v) = &e else {
        panic!("{e}")
    };
    assert!(v[0].to_string().ends_with("dhcpd.conf:1: log-facility: Tandem logs to stderr (the systemd journal); see log_format"), "{}", v[0]);
    assert!(!o.out.exists());
    assert!(journal_files(&d.path("state")).unwrap().is_empty());
    // Without --strict the same files import.
    o.strict = false;
    run(&o).expect("imports");
    assert!(o.out.exists());
}

#[test]
fn exit_codes_of_failures() {
    let d = Dir::new();
    // 2: a parse error, with its line.
    let o = d.opts(
        Source::Dhcpd,
        "subnet 10.0.0.0 netmask 255.255.255.0 {\n range 10.0.0.1 10.0.0.9\n",
        "",
    );
    let e = run(&o).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_PARSE, "{e}");
    let o = d.opts(Source::Dhcpd, CONF, "lease 10.0.0.100 {\n starts 9;\n}\n");
    let e = run(&o).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_PARSE, "{e}");
    assert!(e.to_string().contains("dhcpd.leases:2: starts"), "{e}");
    assert!(!o.out.exists(), "nothing written");
    // 4: Tandem refuses the result (overlapping subnets).
    let o = d.opts(
        Source::Dhcpd,
        "subnet 10.0.0.0 netmask 255.255.255.0 { range 10.0.0.10 10.0.0.20; }\nsubnet 10.0.0.0 netmask 255.255.255.128 { range 10.0.0.30 10.0.0.40; }\n",
        "",
    );
    let e = run(&o).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_INVALID, "{e}");
    // 1: unreadable input, no server address.
    let mut o = d.opts(Source::Kea, "{}", "");
    o.conf = d.path("missing.conf");
    assert_eq!(run(&o).unwrap_err().exit_code(), EXIT_IO);
    let mut o = d.opts(Source::Dhcpd, CONF, "");
    o.interfaces = vec!["eth1".into()];
    assert_eq!(run(&o).unwrap_err().exit_code(), EXIT_IO);
    o.interfaces = vec!["eth1/x".into()];
    assert_eq!(run(&o).unwrap_err().exit_code(), EXIT_IO);
}

#[test]
fn a_dry_run_writes_nothing() {
    let d = Dir::new();
    let mut o = d.opts(Source::Dhcpd, CONF, LEASES);
    o.dry_run = true;
    let out = run(&o).expect("runs");
    assert_eq!(out.leases_read, 10);
    assert!(!o.out.exists());
    assert!(journal_files(&d.path("state")).unwrap().is_empty());
}

#[test]
fn dates_become_epoch_seconds() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2026, 12, 7), 20_794);
}

/// Write a dhcpd.leases of about `lines` lines (11 per lease, addresses from 10.0.0.0/8).
pub(crate) fn write_big_leases(path: &Path, lines: usize) -> usize {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let n = lines / 11;
    for i in 0..n {
        let a = Ipv4Addr::from(0x0a00_0001 + i as u32);
        let mac = [
            0x52,
            0x54,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ];
        let m = model::hex_colon(&mac);
        let state = if i % 10 == 0 { "free" } else { "active" };
        writeln!(
            w,
            "lease {a} {{\n  starts 1 2026/12/07 00:00:00;\n  ends 1 2099/12/07 00:00:00;\n  cltt 1 2026/12/07 00:00:00;\n  binding state {state};\n  next binding state free;\n  rewind binding state free;\n  hardware ethernet {m};\n  uid \"\\001{}\";\n  client-hostname \"host-{i}\";\n}}",
            mac.iter().map(|b| format!("\\{b:03o}")).collect::<String>()
        )
        .expect("write");
    }
    n
}

/// `cargo test -p tandem-controlplane --release --lib import::tests::a_million_line_lease_file -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: about 1 M lines"]
fn a_million_line_lease_file() {
    let d = Dir::new();
    let leases = d.path("big.leases");
    let n = write_big_leases(&leases, 1_000_000);
    let mut o = d.opts(
        Source::Dhcpd,
        "subnet 10.0.0.0 netmask 255.0.0.0 { range 10.0.0.1 10.255.255.254; }\n",
        "",
    );
    o.leases = Some(leases);
    let t = std::time::Instant::now();
    let out = run(&o).expect("imports");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} leases ({} written) from a 1 M-line dhcpd.leases in {secs:.2} s",
        out.leases_read,
        out.written.iter().map(|(_, c)| c).sum::<u64>()
    );
    assert_eq!(out.leases_read, n as u64);
}
