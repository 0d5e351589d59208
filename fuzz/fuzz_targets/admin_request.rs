//! Fuzz the admin endpoint's request path up to the configuration it would write: the URL's
//! query (percent-decoding, repeated keys), the lease listing's parameters, and a
//! `POST /v1/failover` body turned into a `[[failover]]` table and put into a configuration
//! document, which is then checked like any edit. Arbitrary input must be refused with a
//! message or lead to a document that checks or fails with errors, never panic.
//!
//! Input: the first line is the URL (path and query), the rest the request body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::admin::{parse_query, percent_decode, relationship_table, LeaseQuery};
use tandem_controlplane::config::edit::ConfigDoc;

const BASE: &str = "[server]\nserver_id = \"10.0.0.2\"\ninterfaces = [\"eth0\"]\n\
[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\ninterface = \"eth0\"\n\
ranges = [\"10.0.0.10-10.0.0.20\"]\n";

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let body = data.get(split + 1..).unwrap_or_default();
    if let Ok(url) = std::str::from_utf8(&data[..split]) {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if let Some(seg) = path.strip_prefix("/v1/leases/") {
            if let Err(e) = percent_decode(seg) {
                assert!(!e.is_empty());
            }
        }
        match parse_query(query) {
            Ok(params) => {
                if let Err(e) = LeaseQuery::parse(&params) {
                    assert!(!e.is_empty());
                }
            }
            Err(e) => assert!(!e.is_empty()),
        }
    }
    let (name, text) = match relationship_table(body, |n| format!("/etc/tandem/{n}.secret")) {
        Ok(x) => x,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    let mut doc = ConfigDoc::parse(BASE, "fuzz.toml").expect("the base document parses");
    if doc.put_failover(&text).is_err() {
        return;
    }
    assert!(doc.failover_names().contains(&name), "{text}");
    if let Ok(cfg) = doc.check() {
        assert!(cfg.failover.iter().any(|f| f.name == name));
        // What was checked is what would be written.
        let again = ConfigDoc::parse(&doc.text(), "again.toml").expect("the written text parses");
        assert!(again.check().is_ok());
    }
});
