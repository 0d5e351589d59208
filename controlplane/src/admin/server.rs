//! The admin endpoint's transport: the listening socket, one thread per connection up to a
//! limit, TLS when configured, deadlines on everything a client sends, and the counters of what
//! was refused.
//!
//! An acceptor thread waits on the listening socket (mio, so that stopping wakes it). Each
//! accepted connection gets its own thread while fewer than
//! [`AdminLimits::max_connections`] are open; beyond that it is accepted and closed at once
//! (plain HTTP: after a best-effort `503`), and counted. A connection thread does the TLS
//! handshake (within [`AdminLimits::handshake_timeout`]), then reads requests one at a time
//! with [`super::http`]: each must start and its header be complete within
//! [`AdminLimits::idle_timeout`] of the previous answer (or of the connection's start), and its
//! body then gets [`AdminLimits::body_timeout`]. The requests themselves are handled one at a
//! time across all connections, as before (a handler lock), so the API's semantics do not
//! change; only the I/O runs in parallel, and a slow or silent client holds one connection
//! slot for a bounded time, never the API.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rustls::{ServerConnection, StreamOwned};
use serde_json::{json, Map, Value};

use super::http::{self, Deadline, InBuf, ReadError, RequestLimits};
use super::tls::{ClientCert, TlsReloader};
use super::Resp;

/// Limits on the admin endpoint's connections and requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections open at once (handshaking or serving); more are accepted and closed at once.
    pub max_connections: usize,
    /// Time a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Time a request may take to start and send its header, from the previous answer (or the
    /// connection's start); a connection that sends nothing is closed after it.
    pub idle_timeout: Duration,
    /// Time a request body may take to arrive once its header is in.
    pub body_timeout: Duration,
    /// Time one write of an answer may block (a client that stops reading is dropped).
    pub write_timeout: Duration,
    /// Largest request line plus header fields, in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Largest request body, in bytes.
    pub max_body: usize,
}

impl Default for AdminLimits {
    /// 32 connections; 10 s for a handshake and for a request's header; 30 s for a body and for
    /// each write; 16 KiB of header in at most 100 fields; bodies up to [`super::MAX_BODY`].
    fn default() -> AdminLimits {
        AdminLimits {
            max_connections: 32,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 16 << 10,
            max_headers: 100,
            max_body: super::MAX_BODY,
        }
    }
}

impl AdminLimits {
    fn request(&self) -> RequestLimits {
        RequestLimits {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_body: self.max_body,
            body_timeout: self.body_timeout,
        }
    }
}

/// Why the admin endpoint refused a connection or a request (the `reason` label of
/// `tandem_admin_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// [`AdminLimits::max_connections`] were open.
    MaxConnections,
    /// Nothing arrived within [`AdminLimits::idle_timeout`] on a new connection.
    IdleTimeout,
    /// A request started but did not arrive completely in time (408).
    RequestTimeout,
    /// A request's header or body was over the limits (431, 413).
    TooLarge,
    /// A request could not be read as HTTP/1.1 (400, 417, 501, 505).
    BadRequest,
    /// Plain HTTP (or something else that is not TLS) on a TLS endpoint.
    NotTls,
    /// The TLS handshake did not finish within [`AdminLimits::handshake_timeout`].
    HandshakeTimeout,
    /// The client presented no certificate where one is required.
    NoClientCertificate,
    /// The client's certificate did not verify against the client CA (another CA, expired,
    /// not for client authentication).
    BadClientCertificate,
    /// Another TLS failure (incompatible client, the client refused the server's certificate,
    /// the connection dropped during the handshake).
    TlsError,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 10] = [
        Refusal::MaxConnections,
        Refusal::IdleTimeout,
        Refusal::RequestTimeout,
        Refusal::TooLarge,
        Refusal::BadRequest,
        Refusal::NotTls,
        Refusal::HandshakeTimeout,
        Refusal::NoClientCertificate,
        Refusal::BadClientCertificate,
        Refusal::TlsError,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::IdleTimeout => "idle_timeout",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::TooLarge => "too_large",
            Refusal::BadRequest => "bad_request",
            Refusal::NotTls => "not_tls",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::NoClientCertificate => "no_client_certificate",
            Refusal::BadClientCertificate => "bad_client_certificate",
            Refusal::TlsError => "tls_error",
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// At most one log line per refusal reason in this interval (the others are counted into it).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The admin endpoint's connection counters.
#[derive(Debug, Default)]
pub struct AdminCounters {
    refused: [AtomicU64; 10],
    accepted: AtomicU64,
    open: AtomicU64,
    /// Per reason: when it was last logged and how many were not logged since.
    logged: Mutex<[(Option<Instant>, u64); 10]>,
}

impl AdminCounters {
    /// Refusals for `r` so far.
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused[r.index()].load(Ordering::Relaxed)
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Count a refusal and log it, at most once per [`LOG_EVERY`] and reason.
    pub(crate) fn refuse(&self, r: Refusal, remote: SocketAddr, detail: &dyn fmt::Display) {
        self.refused[r.index()].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let more = {
            let mut g = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            let (last, suppressed) = &mut g[r.index()];
            if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
                *suppressed += 1;
                return;
            }
            *last = Some(now);
            std::mem::take(suppressed)
        };
        tracing::warn!(
            reason = r.label(),
            %remote,
            detail = %detail,
            not_logged_since_last = more,
            "admin endpoint refused a connection"
        );
    }

    /// `{"connections_open": n, "connections_accepted": n, "refused": {reason: n}}`.
    pub fn to_json(&self) -> Value {
        let refused: Map<String, Value> = Refusal::ALL
            .iter()
            .map(|r| (r.label().to_string(), json!(self.refused(*r))))
            .collect();
        json!({
            "connections_open": self.open(),
            "connections_accepted": self.accepted(),
            "refused": refused,
        })
    }

    /// The counters in the Prometheus text format: `tandem_admin_refused_total{reason}`,
    /// `tandem_admin_connections_accepted_total` and `tandem_admin_connections_open`.
    pub fn render_metrics(&self) -> Result<String, fmt::Error> {
        let snap = CountersSnapshot {
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.label(), self.refused(*r)))
                .collect(),
            accepted: self.accepted(),
            open: self.open(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snap));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

#[derive(Debug)]
struct CountersSnapshot {
    refused: Vec<(&'static str, u64)>,
    accepted: u64,
    open: u64,
}

impl Collector for CountersSnapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut m = enc.encode_descriptor(
            "tandem_admin_refused",
            "Admin endpoint connections and requests refused, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in &self.refused {
            ConstCounter::new(*v).encode(m.encode_family(&[("reason", *reason)])?)?;
        }
        let m = enc.encode_descriptor(
            "tandem_admin_connections_accepted",
            "Connections the admin endpoint accepted (refused ones included)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.accepted).encode(m)?;
        let m = enc.encode_descriptor(
            "tandem_admin_connections_open",
            "Connections open on the admin endpoint now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.open as i64).encode(m)
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client's verified certificate, when the endpoint requires one.
    pub client: Option<ClientCert>,
}

/// Answers one request.
pub(crate) type Handler = Box<dyn Fn(&ConnInfo, http::Request) -> Resp + Send + Sync>;

/// TLS on the endpoint.
pub(crate) struct TlsSide {
    /// The certificates, re-read when they change.
    pub reloader: Mutex<TlsReloader>,
}

struct Entry {
    /// A handle on the socket, to shut it down when the endpoint stops.
    sock: TcpStream,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    limits: AdminLimits,
    tls: Option<TlsSide>,
    handler: Handler,
    /// Requests are handled one at a time.
    handler_lock: Mutex<()>,
    counters: Arc<AdminCounters>,
    conns: Mutex<HashMap<u64, Entry>>,
    stopping: AtomicBool,
}

/// A running transport.
pub(crate) struct Server {
    shared: Arc<Shared>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

const LISTENER: mio::Token = mio::Token(0);
const WAKE: mio::Token = mio::Token(1);

impl Server {
    /// Bind `addr` and serve in background threads.
    pub fn start(
        addr: SocketAddr,
        limits: AdminLimits,
        tls: Option<TlsSide>,
        handler: Handler,
        counters: Arc<AdminCounters>,
    ) -> io::Result<Server> {
        let std_listener = TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let mut listener = mio::net::TcpListener::from_std(std_listener);
        let poll = mio::Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, mio::Interest::READABLE)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
        let shared = Arc::new(Shared {
            limits,
            tls,
            handler,
            handler_lock: Mutex::new(()),
            counters,
            conns: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-admin".into())
            .spawn(move || accept_loop(&sh, poll, listener))?;
        Ok(Server {
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// Stop accepting, close every connection and join the threads.
    pub fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let entries: Vec<Entry> = {
            let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.drain().map(|(_, e)| e).collect()
        };
        let mut threads = Vec::new();
        for mut e in entries {
            let _ = e.sock.shutdown(Shutdown::Both);
            threads.extend(e.thread.take());
        }
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(sh: &Arc<Shared>, mut poll: mio::Poll, listener: mio::net::TcpListener) {
    let mut events = mio::Events::with_capacity(16);
    let mut next_id: u64 = 0;
    while !sh.stopping.load(Ordering::SeqCst) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "admin endpoint: waiting for connections failed");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        // Accept until the queue is empty (the listener is edge-triggered).
        while !sh.stopping.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((sock, remote)) => {
                    next_id += 1;
                    accepted(sh, TcpStream::from(sock), remote, next_id);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors and the like: wait, then take the queue again.
                    tracing::error!(error = %e, "admin endpoint: accepting a connection failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// A new connection: refused if the limit is reached, else served by its own thread.
fn accepted(sh: &Arc<Shared>, sock: TcpStream, remote: SocketAddr, id: u64) {
    sh.counters.accepted.fetch_add(1, Ordering::Relaxed);
    let mut conns = sh.conns.lock().unwrap_or_else(|e| e.into_inner());
    if conns.len() >= sh.limits.max_connections {
        drop(conns);
        let max = sh.limits.max_connections;
        sh.counters.refuse(
            Refusal::MaxConnections,
            remote,
            &format_args!("{max} connections open"),
        );
        if sh.tls.is_none() {
            // Best effort, without blocking the acceptor: the socket is still non-blocking.
            let body = json!({
                "error": format!("the admin endpoint has {max} connections open, its limit; try again later")
            })
            .to_string();
            let _ = http::write_response(
                &mut &sock,
                503,
                &[("Content-Type", "application/json"), ("Retry-After", "1")],
                body.as_bytes(),
                false,
                true,
            );
        }
        let _ = sock.shutdown(Shutdown::Both);
        return;
    }
    let handle = match sock.try_clone() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, %remote, "admin endpoint: cannot keep a handle on a connection");
            return;
        }
    };
    let sh2 = sh.clone();
    // Spawned with the table locked, so the thread's removal of itself comes after its entry.
    let spawned = std::thread::Builder::new()
        .name("tandem-admin-conn".into())
        .spawn(move || {
            serve(&sh2, sock, remote);
            let mut conns = sh2.conns.lock().unwrap_or_else(|e| e.into_inner());
            let entry = conns.remove(&id);
            drop(conns);
            if entry.is_some() {
                sh2.counters.open.fetch_sub(1, Ordering::Relaxed);
            }
            // Only now is the socket closed (the entry held a handle on it): the client sees
            // the end after the counters.
            drop(entry);
        });
    match spawned {
        Ok(t) => {
            conns.insert(
                id,
                Entry {
                    sock: handle,
                    thread: Some(t),
                },
            );
            sh.counters.open.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::error!(error = %e, %remote, "admin endpoint: cannot start a connection thread");
        }
    }
}

/// The socket, with a deadline on reads and a timeout on each write.
struct Timed {
    sock: TcpStream,
    deadline: Instant,
    write_timeout: Duration,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.read(buf).map_err(timed_out)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.write_timeout))?;
        self.sock.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// A socket timeout (EAGAIN) as [`io::ErrorKind::TimedOut`], so that rustls does not take it
/// for non-blocking I/O.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::ErrorKind::TimedOut.into()
    } else {
        e
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(Timed),
    Tls(Box<StreamOwned<ServerConnection, Timed>>),
}

impl Conn {
    fn timed(&mut self) -> &mut Timed {
        match self {
            Conn::Plain(t) => t,
            Conn::Tls(s) => &mut s.sock,
        }
    }
}

impl Deadline for Conn {
    fn set_read_deadline(&mut self, at: Instant) {
        self.timed().deadline = at;
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(t) => t.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(t) => t.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(t) => t.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn json_error(msg: &str) -> Vec<u8> {
    json!({ "error": msg }).to_string().into_bytes()
}

/// Answer with an error and close (the remaining input is drained for a moment first, so that
/// the client sees the answer rather than a reset).
fn refuse_request(conn: &mut Conn, code: u16, msg: &str) {
    let _ = http::write_response(
        conn,
        code,
        &[("Content-Type", "application/json")],
        &json_error(msg),
        false,
        true,
    );
    linger(conn);
}

fn linger(conn: &mut Conn) {
    if let Conn::Tls(s) = conn {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let t = conn.timed();
    let _ = t.sock.shutdown(Shutdown::Write);
    t.deadline = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 1 << 20 {
        match t.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Serve one connection until it closes, fails, times out or the endpoint stops.
fn serve(sh: &Shared, sock: TcpStream, remote: SocketAddr) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_nodelay(true);
    let timed = Timed {
        sock,
        deadline: Instant::now() + sh.limits.handshake_timeout,
        write_timeout: sh.limits.write_timeout,
    };
    let (mut conn, client) = match &sh.tls {
        None => (Conn::Plain(timed), None),
        Some(tls) => match handshake(sh, tls, timed, remote) {
            Some(c) => c,
            None => return,
        },
    };
    let info = ConnInfo { remote, client };
    let limits = sh.limits.request();
    let mut inb = InBuf::default();
    let mut served = 0u64;
    while !sh.stopping.load(Ordering::SeqCst) {
        let deadline = Instant::now() + sh.limits.idle_timeout;
        match http::read_request(&mut conn, &mut inb, &limits, deadline) {
            Ok(req) => {
                served += 1;
                let keep_alive = req.keep_alive;
                let head = req.method == http::Method::Head;
                let out = {
                    let _one = sh.handler_lock.lock().unwrap_or_else(|e| e.into_inner());
                    (sh.handler)(&info, req)
                };
                let close = !keep_alive || sh.stopping.load(Ordering::SeqCst);
                let headers: Vec<(&str, &str)> =
                    std::iter::once(("Content-Type", out.content_type))
                        .chain(out.headers.iter().map(|(k, v)| (*k, v.as_str())))
                        .collect();
                let written = http::write_response(
                    &mut conn,
                    out.code,
                    &headers,
                    out.body.as_bytes(),
                    head,
                    close,
                );
                if written.is_err() || close {
                    break;
                }
            }
            Err(ReadError::Closed) | Err(ReadError::Io(_)) => break,
            Err(ReadError::Idle) => {
                if served == 0 {
                    sh.counters.refuse(
                        Refusal::IdleTimeout,
                        remote,
                        &format_args!(
                            "no request within {} s",
                            sh.limits.idle_timeout.as_secs_f64()
                        ),
                    );
                }
                break;
            }
            Err(ReadError::Timeout) => {
                sh.counters.refuse(
                    Refusal::RequestTimeout,
                    remote,
                    &"the request came too slowly",
                );
                refuse_request(
                    &mut conn,
                    408,
                    &format!(
                        "the request did not arrive in time (the header within {} s, the body within {} s)",
                        sh.limits.idle_timeout.as_secs_f64(),
                        sh.limits.body_timeout.as_secs_f64()
                    ),
                );
                return;
            }
            Err(ReadError::Refused(code, msg)) => {
                let r = if matches!(code, 413 | 431) {
                    Refusal::TooLarge
                } else {
                    Refusal::BadRequest
                };
                sh.counters.refuse(r, remote, &msg);
                refuse_request(&mut conn, code, &msg);
                return;
            }
        }
    }
    if let Conn::Tls(s) = &mut conn {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
}

/// The TLS handshake (plain HTTP is recognised by its first byte and answered in plain
/// HTTP); the connection and its verified client, or None if it was refused.
fn handshake(
    sh: &Shared,
    tls: &TlsSide,
    mut timed: Timed,
    remote: SocketAddr,
) -> Option<(Conn, Option<ClientCert>)> {
    let refuse = |r: Refusal, detail: &dyn fmt::Display| sh.counters.refuse(r, remote, detail);
    let limit = sh.limits.handshake_timeout.as_secs_f64();
    // A TLS connection starts with a handshake record (0x16); an HTTP request with a letter.
    let mut first = [0u8; 1];
    let left = timed.deadline.saturating_duration_since(Instant::now());
    let peeked = timed
        .sock
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .and_then(|()| timed.sock.peek(&mut first));
    match peeked {
        Ok(0) => return None,
        Ok(_) if first[0].is_ascii_alphabetic() => {
            refuse(Refusal::NotTls, &"plain HTTP on the TLS endpoint");
            let mut conn = Conn::Plain(timed);
            let lim = sh.limits.request();
            let deadline = Instant::now() + sh.limits.idle_timeout;
            let _ = http::read_request(&mut conn, &mut InBuf::default(), &lim, deadline);
            refuse_request(
                &mut conn,
                400,
                "this admin endpoint speaks HTTPS only (admin_tls = \"required\"): use https:// \
                 (tandemctl: --admin https://ADDR, with --ca and, if the server asks for one, \
                 --cert and --key)",
            );
            return None;
        }
        Ok(_) => {}
        Err(e) if http::is_timeout(&e) => {
            refuse(
                Refusal::HandshakeTimeout,
                &format_args!("nothing sent within {limit} s"),
            );
            return None;
        }
        Err(_) => return None,
    }
    let (config, readonly_names, client_auth) = {
        let mut r = tls.reloader.lock().unwrap_or_else(|e| e.into_inner());
        let config = r.current();
        let s = r.settings();
        (config, s.readonly_names.clone(), s.client_ca_file.is_some())
    };
    let mut conn = match ServerConnection::new(config) {
        Ok(c) => c,
        Err(e) => {
            refuse(Refusal::TlsError, &e);
            return None;
        }
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut timed) {
            let tls_err = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned();
            match tls_err {
                Some(t) => refuse(super::tls::handshake_refusal(&t), &t),
                None if http::is_timeout(&e) => refuse(
                    Refusal::HandshakeTimeout,
                    &format_args!("the handshake took longer than {limit} s"),
                ),
                None => refuse(Refusal::TlsError, &e),
            }
            return None;
        }
    }
    let client = if client_auth {
        let Some(der) = conn.peer_certificates().and_then(|c| c.first()) else {
            refuse(Refusal::NoClientCertificate, &"no client certificate");
            return None;
        };
        let c = ClientCert::from_der(der, &readonly_names);
        tracing::debug!(%remote, client = c.label(), role = ?c.role, "admin TLS client verified");
        Some(c)
    } else {
        None
    };
    Some((Conn::Tls(Box::new(StreamOwned::new(conn, timed))), client))
}
