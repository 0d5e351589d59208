//! Fuzz the dhcpd importer: arbitrary bytes as dhcpd.conf (includes are not followed) and as
//! dhcpd.leases statements must give a model, reports or a parse error, never a panic; a model
//! renders as TOML that Tandem's own parser reads without panicking.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::import::{dhcpd, dhcpd_leases, lexer::Lexer, Issues};

fuzz_target!(|data: &[u8]| {
    let mut issues = Issues::new();
    if let Ok(p) = dhcpd::parse_conf_alone(data, Path::new("fuzz.conf"), &mut issues) {
        let _ = tandem_controlplane::config::parse(&p.model.to_toml(), "fuzz.toml");
    }
    let mut lx = Lexer::new(Cursor::new(data), "fuzz.leases");
    while let Ok(Some(s)) = lx.next_stmt() {
        if s.w(0) == "lease" && s.block.is_some() {
            let _ = dhcpd_leases::lease_of(&s, "fuzz.leases", &mut issues);
        }
    }
    for i in issues.finish() {
        assert!(!i.why.is_empty());
    }
});
