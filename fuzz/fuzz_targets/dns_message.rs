//! Fuzz the DNS response path of tandem-ddns: arbitrary bytes through `Message::decode` and the
//! TSIG verifier (as a response to a fixed request MAC, and as a request), with keys of every
//! algorithm. Nothing may panic. Two properties are checked on the way:
//!
//! * a decoded message without opaque RDATA re-encodes (uncompressed) to bytes that decode to
//!   the same message;
//! * a decoded message without TSIG, signed with `sign_request`, verifies with
//!   `verify_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_ddns::tsig::{self, Algorithm, TsigKey};
use tandem_ddns::{Message, Name, RData};

const NOW: u64 = 1_700_000_000;

fn keys() -> &'static [TsigKey] {
    static KEYS: std::sync::OnceLock<Vec<TsigKey>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        Algorithm::ALL
            .into_iter()
            .map(|a| {
                TsigKey::new(
                    Name::from_ascii("tdm-key").expect("valid name"),
                    a,
                    b"fuzz-secret-fuzz-secret-32-octet".to_vec(),
                )
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let key = &keys()[usize::from(selector) % keys().len()];
    let request_mac = [selector; 32];

    // The verifier must classify every input without panicking.
    let _ = tsig::verify_response(bytes, key, &request_mac, NOW);
    let _ = tsig::verify_request(bytes, key, NOW);

    let Ok(message) = Message::decode(bytes) else {
        return;
    };
    let _ = message.rcode();
    let _ = message.tsig();
    for r in message
        .answers
        .iter()
        .chain(&message.authority)
        .chain(&message.additional)
    {
        let _ = r.name.to_string();
    }

    let opaque = message
        .answers
        .iter()
        .chain(&message.authority)
        .chain(&message.additional)
        .any(|r| matches!(r.rdata, RData::Raw(_)));
    if !opaque {
        if let Ok(encoded) = message.encode() {
            let again = Message::decode(&encoded).expect("our own encoding decodes");
            assert_eq!(again, message, "decode(encode(m)) == m");
        }
    }

    if message.tsig().is_none() {
        if let Ok(signed) = tsig::sign_request(bytes, key, NOW, 300) {
            let v = tsig::verify_request(&signed.bytes, key, NOW)
                .expect("a message we signed verifies");
            assert_eq!(v.mac, signed.mac);
        }
    }
});
