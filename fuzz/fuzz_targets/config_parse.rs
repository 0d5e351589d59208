//! Fuzz the configuration loader: arbitrary text must give a config or precise errors (each with
//! a message), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match tandem_controlplane::config::parse(text, "fuzz.toml") {
        Ok(cfg) => assert!(!cfg.daemon.interfaces.is_empty()),
        Err(errs) => {
            assert!(!errs.0.is_empty());
            for e in &errs.0 {
                assert!(!e.message.is_empty());
            }
        }
    }
});
