//! The HTTP/1.1 side of the admin endpoint's transport: reading one request at a time from a
//! connection, within limits and deadlines, and writing answers.
//!
//! What is read: a request line (`METHOD TARGET HTTP/1.1` or `HTTP/1.0`), header fields, and a
//! body framed by `Content-Length` or `Transfer-Encoding: chunked`; `Expect: 100-continue` is
//! answered before the body is read. Connections are kept alive (HTTP/1.1 unless
//! `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`), and requests may be
//! pipelined. Everything else (obsolete line folding, other transfer codings, a header block
//! or body over the limits, a request that does not arrive in time) is refused with the
//! matching status, after which the connection is closed.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant, SystemTime};

/// An HTTP request method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// Any other method, as sent.
    Other(String),
}

impl Method {
    /// The method named `s` (case-sensitive, as HTTP methods are).
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method's name.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Limits on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest request line plus header fields, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Largest body, in bytes (413 beyond).
    pub max_body: usize,
    /// Time the body may take to arrive once the header is in (408 beyond).
    pub body_timeout: Duration,
}

/// A request, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// The request target as sent (path and query).
    pub target: String,
    /// True for HTTP/1.0, false for HTTP/1.1.
    pub http10: bool,
    /// Header fields in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Whether the connection may carry another request after the answer.
    pub keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A connection whose reads the request reader can put a deadline on.
pub trait Deadline {
    /// Reads after `at` fail with [`io::ErrorKind::TimedOut`].
    fn set_read_deadline(&mut self, at: Instant);
}

/// Why no request was read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    /// Nothing arrived before the deadline.
    Idle,
    /// A request started but did not arrive completely in time (answer 408).
    Timeout,
    /// The request is refused with this status and message (then the connection is closed).
    Refused(u16, String),
    /// The connection failed.
    Io(io::Error),
}

/// Bytes received and not used yet (on a kept-alive connection, the start of the next
/// request).
#[derive(Debug, Default)]
pub struct InBuf {
    buf: Vec<u8>,
}

impl InBuf {
    /// Read once from `s`, appending; the number of bytes read (0: end of stream).
    fn fill<S: Read>(&mut self, s: &mut S) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// True for the errors a read deadline produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn refused(code: u16, msg: impl Into<String>) -> ReadError {
    ReadError::Refused(code, msg.into())
}

/// `tchar` of RFC 9110 (method and field-name characters).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Index just past the empty line ending the header block in `buf`, if it is there (lines may
/// end in CRLF or LF).
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// How the body is framed.
enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// Make `inb` hold at least `n` bytes, reading from `s`.
fn need<S: Read>(s: &mut S, inb: &mut InBuf, n: usize) -> Result<(), ReadError> {
    while inb.buf.len() < n {
        match inb.fill(s) {
            Ok(0) => {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed in the middle of a request",
                )))
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(ReadError::Timeout),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(())
}

/// One line (without its CRLF or LF) of at most `max` bytes, taken from `inb`.
fn line<S: Read>(s: &mut S, inb: &mut InBuf, max: usize, what: &str) -> Result<Vec<u8>, ReadError> {
    loop {
        if let Some(nl) = inb.buf.iter().position(|&b| b == b'\n') {
            let mut l: Vec<u8> = inb.buf.drain(..=nl).collect();
            l.pop();
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            return Ok(l);
        }
        if inb.buf.len() > max {
            return Err(refused(400, format!("{what} longer than {max} bytes")));
        }
        let have = inb.buf.len();
        need(s, inb, have + 1)?;
    }
}

fn read_chunked<S: Read>(
    s: &mut S,
    inb: &mut InBuf,
    lim: &RequestLimits,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let l = line(s, inb, 1024, "a chunk size line")?;
        let text = String::from_utf8_lossy(&l);
        let hex = text.split(';').next().unwrap_or("").trim();
        let size = (!hex.is_empty() && hex.len() <= 16)
            .then(|| usize::from_str_radix(hex, 16).ok())
            .flatten()
            .ok_or_else(|| refused(400, format!("bad chunk size {hex:?}")))?;
        if size == 0 {
            let mut trailers = 0;
            loop {
                let t = line(s, inb, lim.max_header_bytes, "a trailer field")?;
                if t.is_empty() {
                    return Ok(body);
                }
                trailers += t.len();
                if trailers > lim.max_header_bytes {
                    return Err(refused(
                        431,
                        format!("trailer fields larger than {} bytes", lim.max_header_bytes),
                    ));
                }
            }
        }
        if body.len().saturating_add(size) > lim.max_body {
            return Err(refused(
                413,
                format!("the request body is larger than {} bytes", lim.max_body),
            ));
        }
        need(s, inb, size + 1)?;
        let ending = if inb.buf[size] == b'\n' {
            1
        } else {
            need(s, inb, size + 2)?;
            if inb.buf[size..size + 2] != *b"\r\n" {
                return Err(refused(400, "a chunk does not end with CRLF"));
            }
            2
        };
        body.extend(inb.buf.drain(..size));
        inb.buf.drain(..ending);
    }
}

/// Read the next request from `s` (bytes left over from the previous one first). The header
/// must be complete by `header_deadline`; the body then gets `lim.body_timeout`.
pub fn read_request<S: Read + Write + Deadline>(
    s: &mut S,
    inb: &mut InBuf,
    lim: &RequestLimits,
    header_deadline: Instant,
) -> Result<Request, ReadError> {
    s.set_read_deadline(header_deadline);
    let mut started = false;
    let head_len = loop {
        // Empty lines before a request line are ignored (RFC 9112 section 2.2).
        let blank = inb
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        inb.buf.drain(..blank);
        started |= !inb.buf.is_empty();
        // A TLS handshake record (a client that wants HTTPS): no request line starts so.
        if inb.buf.first() == Some(&0x16) {
            return Err(refused(
                400,
                "this admin endpoint speaks plain HTTP, not TLS: use http:// \
                 (or set admin_tls = \"required\" on the server)",
            ));
        }
        if let Some(n) = header_end(&inb.buf) {
            if n > lim.max_header_bytes {
                return Err(refused(
                    431,
                    format!(
                        "the request header is larger than {} bytes",
                        lim.max_header_bytes
                    ),
                ));
            }
            break n;
        }
        if inb.buf.len() > lim.max_header_bytes {
            return Err(refused(
                431,
                format!(
                    "the request header is larger than {} bytes",
                    lim.max_header_bytes
                ),
            ));
        }
        match inb.fill(s) {
            Ok(0) if started => {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed in the middle of a request header",
                )))
            }
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                return Err(if started {
                    ReadError::Timeout
                } else {
                    ReadError::Idle
                })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    };
    let head: Vec<u8> = inb.buf.drain(..head_len).collect();
    let text =
        std::str::from_utf8(&head).map_err(|_| refused(400, "the request header is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(m), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused(
            400,
            "malformed request line (expected `METHOD TARGET HTTP/1.1`)",
        ));
    };
    if m.is_empty() || !m.bytes().all(is_tchar) {
        return Err(refused(400, "malformed request method"));
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(refused(400, "malformed request target"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.len() == 8
            && v.starts_with("HTTP/")
            && v.as_bytes()[5].is_ascii_digit()
            && v.as_bytes()[6] == b'.'
            && v.as_bytes()[7].is_ascii_digit() =>
        {
            return Err(refused(
                505,
                format!("{v} is not supported; this server speaks HTTP/1.1 and HTTP/1.0"),
            ))
        }
        _ => return Err(refused(400, "malformed HTTP version")),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        if l.starts_with([' ', '\t']) {
            return Err(refused(400, "obsolete line folding in the request header"));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(refused(400, "a header line without a colon"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(refused(
                400,
                format!("malformed header field name {name:?}"),
            ));
        }
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(refused(
                400,
                format!("control characters in the value of header {name}"),
            ));
        }
        if headers.len() == lim.max_headers {
            return Err(refused(
                431,
                format!("more than {} header fields", lim.max_headers),
            ));
        }
        headers.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    let all = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    };
    let te = all("Transfer-Encoding");
    let cl = all("Content-Length");
    let framing = if !te.is_empty() {
        if !cl.is_empty() {
            return Err(refused(
                400,
                "both Content-Length and Transfer-Encoding are given",
            ));
        }
        if te.len() != 1 || !te[0].eq_ignore_ascii_case("chunked") {
            return Err(refused(
                501,
                format!(
                    "transfer coding {:?} is not supported (only chunked)",
                    te.join(", ")
                ),
            ));
        }
        Framing::Chunked
    } else if let Some(first) = cl.first() {
        if cl.iter().any(|v| v != first) {
            return Err(refused(400, "conflicting Content-Length values"));
        }
        let n = (first.len() <= 19 && first.bytes().all(|b| b.is_ascii_digit()))
            .then(|| first.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| refused(400, format!("bad Content-Length {first:?}")))?;
        if n > lim.max_body as u64 {
            return Err(refused(
                413,
                format!("the request body is larger than {} bytes", lim.max_body),
            ));
        }
        Framing::Length(n as usize)
    } else {
        Framing::None
    };
    let has_body =
        matches!(framing, Framing::Chunked) || matches!(framing, Framing::Length(n) if n > 0);
    let expect = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Expect"))
        .map(|(_, v)| v.as_str());
    if let Some(e) = expect {
        if !e.eq_ignore_ascii_case("100-continue") {
            return Err(refused(
                417,
                format!("expectation {e:?} is not supported (only 100-continue)"),
            ));
        }
        if !http10 && has_body && inb.buf.is_empty() {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| s.flush())
                .map_err(ReadError::Io)?;
        }
    }
    s.set_read_deadline(Instant::now() + lim.body_timeout);
    let body = match framing {
        Framing::None => Vec::new(),
        Framing::Length(n) => {
            need(s, inb, n)?;
            inb.buf.drain(..n).collect()
        }
        Framing::Chunked => read_chunked(s, inb, lim)?,
    };
    let conn = all("Connection");
    let has = |t: &str| conn.iter().any(|c| c.eq_ignore_ascii_case(t));
    let keep_alive = if http10 {
        has("keep-alive") && !has("close")
    } else {
        !has("close")
    };
    Ok(Request {
        method: Method::parse(m),
        target: target.to_string(),
        http10,
        headers,
        body,
        keep_alive,
    })
}

/// The reason phrase of status `code`.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        c if c < 200 => "Informational",
        c if c < 300 => "Success",
        c if c < 400 => "Redirection",
        c if c < 500 => "Client Error",
        _ => "Server Error",
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `t` as an HTTP date (IMF-fixdate, like `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Write an answer: status line, `Date`, `Content-Length`, the `headers` (those whose name is
/// not a token or whose value holds CR or LF are left out), `Connection: close` if `close`, then
/// the body unless `head` (an answer to HEAD).
pub fn write_response<W: Write>(
    w: &mut W,
    code: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    head: bool,
    close: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nDate: {}\r\nContent-Length: {}\r\n",
        reason(code),
        http_date(SystemTime::now()),
        body.len()
    );
    for (k, v) in headers {
        if !k.is_empty() && k.bytes().all(is_tchar) && !v.contains(['\r', '\n']) {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    if !head {
        w.write_all(body)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory connection: reads come from `input` (at most `step` bytes a call, then a
    /// timeout once it runs dry unless `eof`), writes go to `output`.
    struct Pipe {
        input: Vec<u8>,
        pos: usize,
        step: usize,
        eof: bool,
        output: Vec<u8>,
        deadlines: usize,
    }

    impl Pipe {
        fn new(input: &[u8], step: usize, eof: bool) -> Pipe {
            Pipe {
                input: input.to_vec(),
                pos: 0,
                step,
                eof,
                output: Vec::new(),
                deadlines: 0,
            }
        }
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.input.len() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::TimedOut.into())
                };
            }
            let n = buf.len().min(self.step).min(self.input.len() - self.pos);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Deadline for Pipe {
        fn set_read_deadline(&mut self, _at: Instant) {
            self.deadlines += 1;
        }
    }

    const LIM: RequestLimits = RequestLimits {
        max_header_bytes: 1024,
        max_headers: 8,
        max_body: 64,
        body_timeout: Duration::from_secs(1),
    };

    fn read_all(input: &[u8], step: usize) -> (Vec<Result<Request, ReadError>>, Pipe) {
        let mut p = Pipe::new(input, step, true);
        let mut inb = InBuf::default();
        let mut out = Vec::new();
        loop {
            let r = read_request(&mut p, &mut inb, &LIM, Instant::now());
            let stop = !matches!(r, Ok(ref q) if q.keep_alive);
            out.push(r);
            if stop {
                return (out, p);
            }
        }
    }

    fn one(input: &str) -> Result<Request, ReadError> {
        let mut p = Pipe::new(input.as_bytes(), 7, true);
        read_request(&mut p, &mut InBuf::default(), &LIM, Instant::now())
    }

    fn code(r: Result<Request, ReadError>) -> u16 {
        match r {
            Err(ReadError::Refused(c, m)) => {
                assert!(!m.is_empty());
                c
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn pipelined_requests_with_every_framing() {
        for step in [1, 3, 8192] {
            let (rs, p) = read_all(
                b"\r\nGET /v1/status?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization:  Bearer t \r\n\r\n\
                  POST /v1/reload HTTP/1.1\nContent-Length: 5\n\nhello\
                  PUT /v1/scopes/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n\
                  GET /last HTTP/1.0\r\n\r\n",
                step,
            );
            assert_eq!(rs.len(), 4, "step {step}: {rs:?}");
            let rs: Vec<Request> = rs.into_iter().map(|r| r.expect("request")).collect();
            assert_eq!(rs[0].method, Method::Get);
            assert_eq!(rs[0].target, "/v1/status?x=1");
            assert_eq!(rs[0].header("authorization"), Some("Bearer t"));
            assert!(rs[0].keep_alive && rs[0].body.is_empty());
            assert_eq!(
                (rs[1].method.as_str(), &rs[1].body[..]),
                ("POST", &b"hello"[..])
            );
            assert_eq!(rs[2].body, b"abcde");
            assert!(rs[3].http10 && !rs[3].keep_alive);
            assert!(p.output.is_empty(), "no 100 Continue without Expect");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let ka = |s: &str| one(s).expect("request").keep_alive;
        assert!(ka("GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.1\r\nConnection: TE, Close\r\n\r\n"));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn expect_continue_is_answered_before_the_body() {
        let mut p = Pipe::new(
            b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
            4096,
            true,
        );
        // The header arrives alone first (a real client waits for the 100).
        p.input.truncate(p.input.len() - 2);
        let mut inb = InBuf::default();
        let r = read_request(&mut p, &mut inb, &LIM, Instant::now());
        assert!(matches!(r, Err(ReadError::Io(_))), "{r:?}");
        assert_eq!(p.output, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(
            code(one(
                "PUT /x HTTP/1.1\r\nExpect: magic\r\nContent-Length: 2\r\n\r\nok"
            )),
            417
        );
        // Too large: refused before the body, without a 100.
        let mut p = Pipe::new(
            b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 65\r\n\r\n",
            4096,
            true,
        );
        let r = read_request(&mut p, &mut InBuf::default(), &LIM, Instant::now());
        assert_eq!(code(r), 413);
        assert!(p.output.is_empty());
    }

    #[test]
    fn limits_and_malformed_requests_are_refused_with_their_status() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(1100));
        assert_eq!(code(one(&big)), 431);
        let endless = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(1100));
        assert_eq!(code(one(&endless)), 431);
        let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(code(one(&format!("GET / HTTP/1.1\r\n{many}\r\n"))), 431);
        assert_eq!(
            code(one("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n")),
            413
        );
        let chunks = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n{}\r\n0\r\n\r\n",
            "a".repeat(65)
        );
        assert_eq!(code(one(&chunks)), 413);
        for bad in [
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
            "GET / HTTX/1.1\r\n\r\n",
        ] {
            assert_eq!(code(one(bad)), 400, "{bad:?}");
        }
        assert_eq!(code(one("GET / HTTP/2.0\r\n\r\n")), 505);
        assert_eq!(
            code(one("\u{16}\u{3}\u{1}\u{2}\u{0}")),
            400,
            "a TLS ClientHello"
        );
        assert_eq!(
            code(one(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            )),
            501
        );
    }

    #[test]
    fn silence_and_stalls_are_told_apart() {
        let mut inb = InBuf::default();
        let mut p = Pipe::new(b"", 1, false);
        let r = read_request(&mut p, &mut inb, &LIM, Instant::now());
        assert!(matches!(r, Err(ReadError::Idle)), "{r:?}");
        let mut p = Pipe::new(b"GET / HTTP/1.1\r\nHost", 1, false);
        let r = read_request(&mut p, &mut InBuf::default(), &LIM, Instant::now());
        assert!(matches!(r, Err(ReadError::Timeout)), "{r:?}");
        let mut p = Pipe::new(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", 1, false);
        let r = read_request(&mut p, &mut InBuf::default(), &LIM, Instant::now());
        assert!(matches!(r, Err(ReadError::Timeout)), "{r:?}");
        assert_eq!(p.deadlines, 2, "the header deadline, then the body's");
        let mut p = Pipe::new(b"", 1, true);
        let r = read_request(&mut p, &mut InBuf::default(), &LIM, Instant::now());
        assert!(matches!(r, Err(ReadError::Closed)), "{r:?}");
    }

    #[test]
    fn answers_are_framed_and_headers_sanitised() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            405,
            &[
                ("Content-Type", "application/json"),
                ("Allow", "GET"),
                ("Bad", "a\r\nInjected: 1"),
                ("Bad Name", "x"),
            ],
            b"{}",
            false,
            true,
        )
        .expect("write");
        let text = String::from_utf8(out).expect("ASCII");
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\nDate: "),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
        assert!(text.contains("\r\nAllow: GET\r\n"), "{text}");
        assert!(
            !text.contains("Injected") && !text.contains("Bad"),
            "{text}"
        );
        assert!(text.ends_with("Connection: close\r\n\r\n{}"), "{text}");
        let mut head = Vec::new();
        write_response(&mut head, 200, &[], b"body", true, false).expect("write");
        assert!(String::from_utf8_lossy(&head).ends_with("Content-Length: 4\r\n\r\n"));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
