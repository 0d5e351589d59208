//! Fuzz the Kea importer: arbitrary text as kea-dhcp4.conf (comments, JSON, class tests) and as
//! lease CSV rows must give a model, reports or a parse error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::import::{kea, kea_leases, Issues};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut issues = Issues::new();
    if let Ok(p) = kea::parse_conf(text, "fuzz.conf", &mut issues) {
        let _ = tandem_controlplane::config::parse(&p.model.to_toml(), "fuzz.toml");
    }
    let _ = kea::parse_test(text);
    let _ = kea::index_lines(text);
    let header = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context";
    if let Ok(c) = kea_leases::columns(header, "fuzz.csv") {
        for (n, line) in text.lines().enumerate() {
            let _ = kea_leases::row(&c, line, n + 1, "fuzz.csv", &mut issues);
        }
    }
});
