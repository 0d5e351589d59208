//! Feeds an arbitrary byte stream to the failover `FrameDecoder` in arbitrary chunks and checks
//! that the chunking changes nothing: the same messages, then the same error (if any), as when
//! the whole stream arrives at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::failover::codec::{Codec, CodecError, Dialect, FrameDecoder};
use tandem_controlplane::failover::message::Message;

/// Drains every ready message; returns the error that stopped it, if any.
fn drain(dec: &mut FrameDecoder, into: &mut Vec<Message>) -> Option<CodecError> {
    loop {
        match dec.next_message() {
            Ok(Some(m)) => into.push(m),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let codec = if seed & 1 == 0 {
        Codec::new(Dialect::Tandem)
    } else {
        Codec::new(Dialect::Tandem).with_secret(b"fuzz-secret")
    };

    let mut whole = FrameDecoder::new(codec.clone());
    whole.push(stream);
    let mut want = Vec::new();
    let want_err = drain(&mut whole, &mut want);

    // Chunk sizes 1..=64 from a small LCG seeded by the first byte.
    let mut chunked = FrameDecoder::new(codec);
    let mut got = Vec::new();
    let mut got_err = None;
    let mut rest = stream;
    let mut state = u32::from(seed);
    while !rest.is_empty() && got_err.is_none() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 1 + (state >> 16) as usize % 64;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        chunked.push(chunk);
        got_err = drain(&mut chunked, &mut got);
    }
    assert_eq!(got, want);
    assert_eq!(got_err, want_err);
    if got_err.is_none() {
        assert_eq!(chunked.buffered(), whole.buffered());
    }
});
