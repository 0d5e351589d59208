//! Fuzz the admin endpoint's HTTP/1.1 request reader (`admin::http::read_request`): arbitrary
//! bytes from a client, read as a sequence of pipelined requests until the reader stops. It
//! must refuse malformed or oversized input with an error, never panic, never hand back a
//! body or header beyond its limits, and never loop without consuming input.
#![no_main]

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tandem_controlplane::admin::http::{read_request, Deadline, InBuf, RequestLimits};

/// The client's bytes, delivered in small pieces (as a socket would), and a sink for what the
/// server writes (the `100 Continue` interim answer).
struct Wire<'a> {
    data: &'a [u8],
    pos: usize,
    step: usize,
    written: usize,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Deadline for Wire<'_> {
    fn set_read_deadline(&mut self, _at: Instant) {}
}

const LIMITS: RequestLimits = RequestLimits {
    max_header_bytes: 2048,
    max_headers: 20,
    max_body: 4096,
    body_timeout: Duration::from_secs(30),
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut wire = Wire {
        data: rest,
        pos: 0,
        step: usize::from(first % 64) + 1,
        written: 0,
    };
    let mut inb = InBuf::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Each request consumes at least one byte, so this many reads end the input.
    for _ in 0..=rest.len() {
        match read_request(&mut wire, &mut inb, &LIMITS, deadline) {
            Ok(req) => {
                assert!(req.body.len() <= LIMITS.max_body);
                assert!(req.headers.len() <= LIMITS.max_headers);
                assert!(req.target.len() <= LIMITS.max_header_bytes);
                if !req.keep_alive {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    panic!("read_request kept returning requests past the end of its input");
});
