//! Fuzz the configuration edit path (what `tandemctl scope`/`failover` changes and partner
//! replication write into tandem.toml): arbitrary scope and relationship texts put into, and
//! removed from, a valid document, with keys set on a relationship. Every operation must
//! succeed or fail with an error; the document's text must always parse again, and a document
//! that checks must check again from its written text. Never a panic.
//!
//! Input: NUL-separated parts: a scope text, a relationship text, a key, a TOML value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::config::edit::ConfigDoc;

const BASE: &str = "# the operator's comment\n[server]\nserver_id = \"10.0.0.2\"\n\
interfaces = [\"eth0\"]\n\n[[scope]]\nname = \"lan\"\nsubnet = \"10.0.0.0/24\"\n\
interface = \"eth0\"\nranges = [\"10.0.0.10-10.0.0.20\"]\n\n[[failover]]\nname = \"pair\"\n\
role = \"primary\"\npartner = \"10.0.0.3\"\nscopes = [\"lan\"]\n";

fn reparses(doc: &ConfigDoc) {
    let text = doc.text();
    let again = ConfigDoc::parse(&text, "again.toml").expect("the edited text parses again");
    assert_eq!(again.text(), text);
    if doc.check().is_ok() {
        assert!(again.check().is_ok(), "checked once, not again:\n{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.split('\0');
    let scope = parts.next().unwrap_or("");
    let failover = parts.next().unwrap_or("");
    let key = parts.next().unwrap_or("mclt");
    let value = parts.next().unwrap_or("\"30s\"");
    let mut doc = ConfigDoc::parse(BASE, "fuzz.toml").expect("the base document parses");
    let _ = doc.put_scope(scope, &["ranges"]);
    reparses(&doc);
    let _ = doc.put_scope_as("lan", scope, &[]);
    reparses(&doc);
    let _ = doc.put_failover(failover);
    reparses(&doc);
    if let Ok(v) = value.parse::<toml_edit::Value>() {
        let _ = doc.set_failover_key("pair", key, Some(v));
        reparses(&doc);
    }
    let _ = doc.set_failover_key("pair", key, None);
    reparses(&doc);
    for name in doc.scope_names() {
        let _ = doc.remove_scope(&name);
        reparses(&doc);
    }
    for name in doc.failover_names() {
        let _ = doc.remove_failover(&name);
        reparses(&doc);
    }
});
