//! Fuzz what a partner's request brings to the admin endpoint: the signature header, the JSON
//! request, and the scope and relationship texts it asks to write into the configuration file.
//! Arbitrary input must be refused with a message or applied to the document, never panic.
//!
//! Input: the first line is the `X-Tandem-Peer` header, the rest the request body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::admin::peer::{self, NonceCache, PeerOp, PeerRequest};
use tandem_controlplane::config::edit::ConfigDoc;

const BASE: &str = "[server]\nserver_id = \"10.0.0.2\"\ninterfaces = [\"eth0\"]\n\
[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\ninterface = \"eth0\"\n\
ranges = [\"10.0.0.10-10.0.0.20\"]\n";

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let header = std::str::from_utf8(&data[..split]).ok();
    let body = data.get(split + 1..).unwrap_or_default();
    let mut nonces = NonceCache::default();
    let verdict = peer::verify(
        header,
        b"fuzz-secret",
        "POST",
        "/v1/peer/pair",
        body,
        1_000_000,
        60,
        &mut nonces,
    );
    if let Err(e) = &verdict {
        assert!(!e.is_empty());
    }
    let Ok(req) = serde_json::from_slice::<PeerRequest>(body) else {
        return;
    };
    let again: PeerRequest =
        serde_json::from_str(&serde_json::to_string(&req).expect("encodes")).expect("decodes");
    assert_eq!(again, req);
    let mut doc = ConfigDoc::parse(BASE, "fuzz.toml").expect("the base document parses");
    match &req.op {
        PeerOp::Replicate { scopes } | PeerOp::Add { scopes, .. } => {
            for s in scopes {
                let _ = doc.put_scope(&s.toml, &["interface"]);
            }
        }
        PeerOp::Set { keys } => {
            for (k, v) in keys {
                if let Some(s) = v.as_str() {
                    let _ = doc.set_failover_key("pair", k, Some(s.into()));
                }
            }
        }
        PeerOp::Remove { .. } => {
            let _ = doc.remove_scope("lan");
        }
    }
    if let PeerOp::Add { failover, .. } = &req.op {
        let _ = doc.put_failover(failover);
    }
    // Whatever was written must still be a document the loader reads (with or without errors).
    let _ = doc.check();
    let _ = doc.scope_names();
});
