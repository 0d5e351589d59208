//! Decodes arbitrary bytes as one failover message, with and without a shared secret. Whatever
//! decodes must re-encode, and the re-encoding must decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::failover::codec::{Codec, CodecError, Dialect, FrameDecoder};
use tandem_controlplane::failover::message::{BindingAck, BindingUpdate, BndAck, BndUpd, Body};

fuzz_target!(|data: &[u8]| {
    let plain = Codec::new(Dialect::Tandem);
    let signed = Codec::new(Dialect::Tandem).with_secret(b"fuzz-secret");
    for codec in [&plain, &signed] {
        let Ok(message) = codec.decode(data) else {
            continue;
        };
        let wire = match codec.encode_to_vec(&message) {
            Ok(wire) => wire,
            // Re-encoding is canonical: a 1-byte IP-flags option (Windows) comes back as 2 bytes,
            // so a message decoded at the 2048-byte limit may no longer fit.
            Err(CodecError::LengthTooLarge(_)) => continue,
            Err(e) => panic!("decoded message does not re-encode: {e}"),
        };
        let again = codec.decode(&wire).expect("re-encoded message decodes");
        assert_eq!(again, message);

        // The ISC dialect splits batches into one message per binding and drops DDNS.
        let isc = Codec::new(Dialect::Isc);
        let Ok(parts) = isc.encode_to_vec(&message) else {
            continue;
        };
        let mut stream = FrameDecoder::new(isc);
        stream.push(&parts);
        let strip = |b: &BindingUpdate| BindingUpdate {
            ddns: None,
            ..b.clone()
        };
        let expected: Vec<Body> = match &message.body {
            Body::BndUpd(u) => u
                .bindings
                .iter()
                .map(|b| {
                    Body::BndUpd(BndUpd {
                        bindings: vec![strip(b)],
                    })
                })
                .collect(),
            Body::BndAck(a) => a
                .acks
                .iter()
                .map(|a| {
                    Body::BndAck(BndAck {
                        acks: vec![BindingAck {
                            binding: strip(&a.binding),
                            ..a.clone()
                        }],
                    })
                })
                .collect(),
            other => vec![other.clone()],
        };
        for body in expected {
            let m = stream
                .next_message()
                .expect("ISC-dialect part decodes")
                .expect("ISC-dialect part is complete");
            assert_eq!((m.time, m.xid), (message.time, message.xid));
            assert_eq!(m.body, body);
        }
        assert_eq!(stream.next_message(), Ok(None));
    }
});
