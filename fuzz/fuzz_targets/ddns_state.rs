//! Fuzz the DNS updater's state files (`ddns.state`, the snapshot, and `ddns.journal`, the
//! changes since it): any bytes must load to a table or be set aside, never panic, and what
//! loads must save and read back whole.
//!
//! The input is the snapshot's bytes, a 0xff byte, and the journal's bytes; without the
//! separator it is the journal alone, and the first byte's low bit says whether the snapshot is
//! there (empty) or missing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::ddns::decode_state_for_fuzzing;

fuzz_target!(|data: &[u8]| {
    match data.iter().position(|b| *b == 0xff) {
        Some(i) => {
            decode_state_for_fuzzing(Some(&data[..i]), Some(&data[i + 1..]));
        }
        None => {
            let snapshot: Option<&[u8]> = match data.first() {
                Some(b) if b & 1 == 1 => Some(b""),
                _ => None,
            };
            decode_state_for_fuzzing(snapshot, Some(data));
        }
    }
});
