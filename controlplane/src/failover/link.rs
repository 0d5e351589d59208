//! The TCP link of one failover relationship: sockets, framing and timers around a [`Peer`].
//!
//! [`Link`] owns one `mio` poll, an optional listening socket, at most one connection to the
//! partner and the relationship's [`Peer`]. The caller drives it with [`Link::run_once`], which
//! waits at most the given time for socket readiness or the next deadline, then:
//! - accepts one inbound connection (a second one, or one from an address other than the
//!   configured partner's, is refused and logged);
//! - as primary with a partner address, connects out and reconnects after a drop with capped
//!   exponential backoff (the secondary only listens; only the primary sends CONNECT);
//! - feeds received bytes to a [`FrameDecoder`] (built with the shared secret, if any) and every
//!   message to [`Peer::handle_message`];
//! - encodes everything [`Peer::poll_transmit`] yields with the codec for [`Peer::dialect`] into
//!   a write buffer flushed without blocking; while the buffer is above a high-water mark the
//!   peer's messages stay queued in the peer (backpressure);
//! - calls [`Peer::handle_timeout`] at [`Peer::poll_timeout`];
//! - closes the connection on [`Event::CloseLink`], on end of stream, on I/O errors and on codec
//!   errors (after a best-effort DISCONNECT carrying the codec error's reject reason), and
//!   calls [`Peer::connected`] / [`Peer::disconnected`];
//! - with [`LinkConfig::tls`], runs TLS 1.3 with mutual certificate authentication over the
//!   connection (the primary as client, see [`super::tls`]): the peer is told of the connection
//!   only once the handshake succeeded, and a partner that speaks plaintext, presents a
//!   certificate the CA did not issue or issued to another name, or does not finish the
//!   handshake in time is refused ([`LinkEvent::TlsRefused`], with a reason to count).
//!
//! Everything that happened is returned as [`LinkEvent`]s, including every [`Event`] of the
//! peer, for the daemon to act on (journal partner bindings, acknowledge them through
//! [`Link::peer_mut`]). Messages and state changes made through `peer_mut` are sent on the next
//! `run_once`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use tandem_dataplane::time::Time;

use super::codec::{Codec, CodecError, FrameDecoder};
use super::message::{Body, Disconnect, Message, RejectReason};
use super::peer::{Event, Peer, Role, StateStore};
use super::tls::{refusal_reason, TlsError, TlsReloader, TlsSettings};

/// The IANA port for DHCP failover ("dhcp-failover").
pub const DEFAULT_PORT: u16 = 647;

/// Above this many unsent bytes, no more messages are taken from the peer until the socket
/// drains.
const HIGH_WATER: usize = 256 * 1024;
/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 16 * 1024;
const LISTENER: Token = Token(0);
/// The token of [`Link::waker`] (never a connection's: those count up from 1).
const WAKE: Token = Token(usize::MAX);

/// Socket settings of one relationship's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Address to listen on for the partner's connections (`None`: do not listen).
    pub listen: Option<SocketAddr>,
    /// The partner's address. The primary connects to it; inbound connections from any other
    /// IP address are refused.
    pub partner: Option<SocketAddr>,
    /// Shared secret: every message is signed and every received one must carry a valid
    /// digest.
    pub secret: Option<Vec<u8>>,
    /// Delay before reconnecting after a link that completed its handshake went down, and
    /// the first delay after a failed attempt.
    pub backoff_initial: Duration,
    /// Largest delay between connection attempts (the delay doubles after each failure).
    pub backoff_max: Duration,
    /// How long an outbound TCP connect may take.
    pub connect_timeout: Duration,
    /// Report every message sent and received as [`LinkEvent::Sent`] / [`LinkEvent::Received`]
    /// (for diagnostics and interop tests).
    pub trace_messages: bool,
    /// TLS on the connection (`tls = "required"`); `None`: plain TCP.
    pub tls: Option<TlsSettings>,
    /// How long a TLS handshake may take once the TCP connection is up, and then again how
    /// long the failover handshake (CONNECT / CONNECTACK) may take before the connection is
    /// closed and counted as refused.
    pub handshake_timeout: Duration,
}

impl LinkConfig {
    /// A configuration with ISC's retry timing (5 s after a drop, up to 90 s between failed
    /// attempts), no listener, no partner and no secret.
    pub fn new() -> LinkConfig {
        LinkConfig {
            listen: None,
            partner: None,
            secret: None,
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(10),
            trace_messages: false,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig::new()
    }
}

/// Why a connection was closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The partner closed the stream.
    EndOfStream,
    /// A socket error.
    Io(String),
    /// A received message could not be decoded.
    Codec(CodecError),
    /// The peer asked for it ([`Event::CloseLink`]).
    Requested,
    /// The caller dropped it ([`Link::drop_connection`]).
    Dropped,
    /// The TLS session failed or was refused (the reason, see [`LinkEvent::TlsRefused`]).
    Tls(&'static str),
    /// No failover handshake within [`LinkConfig::handshake_timeout`].
    HandshakeTimeout,
}

/// Something that happened on the link, from [`Link::run_once`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// An event of the peer, in order.
    Peer(Event),
    /// A TCP connection to the partner is up and was handed to the peer.
    Connected {
        /// The partner's socket address.
        remote: SocketAddr,
        /// True if we opened it.
        outbound: bool,
    },
    /// The connection is gone (the peer was told).
    Disconnected {
        /// The partner's socket address.
        remote: SocketAddr,
        /// Why.
        cause: CloseCause,
    },
    /// An inbound connection was refused.
    Refused {
        /// Who tried.
        remote: SocketAddr,
        /// Why.
        why: &'static str,
        /// The same as a metrics label: `duplicate` (the relationship has a connection
        /// already), `not_partner` (not the configured partner's address) or
        /// `handshake_timeout` (no CONNECT/CONNECTACK within the handshake timeout).
        reason: &'static str,
    },
    /// A connection was refused at the TLS layer (before the peer saw it), or its TLS session
    /// failed later.
    TlsRefused {
        /// The partner's socket address.
        remote: SocketAddr,
        /// True if we opened the connection.
        outbound: bool,
        /// What went wrong, as a metrics label: `not_tls` (the partner speaks plaintext),
        /// `bad_certificate`, `wrong_name`, `certificate_expired`, `no_certificate`,
        /// `partner_refused_our_certificate`, `incompatible`, `handshake_timeout`,
        /// `closed_in_handshake` or `tls_error`.
        reason: &'static str,
        /// rustls' error, in words.
        error: String,
    },
    /// An outbound connection attempt failed.
    ConnectFailed {
        /// The partner's address.
        remote: SocketAddr,
        /// The error.
        error: String,
        /// When the next attempt is made.
        retry_in: Duration,
    },
    /// A received message could not be decoded; the link is closed after a DISCONNECT with
    /// `reject_reason`, if there is one.
    DecodeFailed {
        /// The codec's error.
        error: CodecError,
        /// The draft's reason for it.
        reject_reason: Option<RejectReason>,
    },
    /// A message from the peer could not be encoded and was dropped (a bug, not an input
    /// problem).
    EncodeFailed {
        /// The codec's error.
        error: CodecError,
    },
    /// A message was received (only with [`LinkConfig::trace_messages`]).
    Received(Message),
    /// A message was queued for sending (only with [`LinkConfig::trace_messages`]).
    Sent(Message),
}

/// Errors setting a link up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The poll could not be created or a socket registered.
    #[error("failover link poll: {0}")]
    Poll(#[source] io::Error),
    /// The TLS files cannot be used.
    #[error("failover TLS: {0}")]
    Tls(#[source] TlsError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// One TCP connection.
struct Conn {
    stream: TcpStream,
    token: Token,
    remote: SocketAddr,
    /// False while an outbound connect is in progress.
    established: bool,
    /// The outbound connect's deadline, then (with TLS) the handshake's.
    connect_deadline: Time,
    decoder: FrameDecoder,
    wbuf: Vec<u8>,
    wpos: usize,
    /// The TLS session, with [`LinkConfig::tls`].
    tls: Option<rustls::Connection>,
    /// The TLS handshake completed (always true without TLS once established).
    secured: bool,
    outbound: bool,
}

impl Conn {
    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Up and (with TLS) secured: the peer was told, messages flow.
    fn ready(&self) -> bool {
        self.established && self.secured
    }

    /// Writes buffered bytes until done or the socket would block.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            if self.wpos < self.wbuf.len() && !tls.is_handshaking() {
                // rustls takes what fits its send buffer; the rest waits here (backpressure).
                let n = tls.writer().write(&self.wbuf[self.wpos..])?;
                self.wpos += n;
            }
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.compact();
            return Ok(());
        }
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.compact();
        Ok(())
    }

    fn compact(&mut self) {
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > HIGH_WATER {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }
}

/// The TCP link of one failover relationship. See the module documentation.
pub struct Link<S> {
    cfg: LinkConfig,
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    local: Option<SocketAddr>,
    peer: Peer<S>,
    conn: Option<Conn>,
    next_token: usize,
    next_connect: Option<Time>,
    backoff: Duration,
    waker: Arc<Waker>,
    /// The codec messages are sent with (rebuilt when the peer's dialect changes; the HMAC key
    /// schedule is not redone per message).
    tx_codec: Codec,
    /// The TLS certificates, with [`LinkConfig::tls`] (re-read when they change on disk).
    tls: Option<TlsReloader>,
    /// Dynamic DNS: the names that travel in BNDUPD ([`Link::set_names`]).
    names: Option<Arc<dyn NameExchange>>,
}

/// What a link exchanges with dynamic DNS: the host names that travel in BNDUPD's DDNS option
/// (Tandem partners only: the codec never sends the option to ISC dhcpd, which drops the link
/// on it), so either partner can remove a client's DNS records.
pub trait NameExchange: Send + Sync {
    /// The name published for `addr` and its DDNS flags, for an ACTIVE binding we send.
    fn name_of(&self, addr: std::net::Ipv4Addr) -> Option<(String, u16)>;
    /// The partner sent a binding with a DDNS option (its name may be empty).
    fn partner_named(&self, update: &super::message::BindingUpdate);
}

impl<S: StateStore> Link<S> {
    /// A link driving `peer` with `cfg`. Binds the listener now; the first outbound connect
    /// happens on the first [`Link::run_once`].
    pub fn new(cfg: LinkConfig, peer: Peer<S>) -> Result<Link<S>, LinkError> {
        let poll = Poll::new().map_err(LinkError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(LinkError::Poll)?);
        let mut listener = None;
        let mut local = None;
        if let Some(addr) = cfg.listen {
            let mut l =
                TcpListener::bind(addr).map_err(|source| LinkError::Listen { addr, source })?;
            poll.registry()
                .register(&mut l, LISTENER, Interest::READABLE)
                .map_err(LinkError::Poll)?;
            local = Some(l.local_addr().map_err(LinkError::Poll)?);
            listener = Some(l);
        }
        let tls = match &cfg.tls {
            Some(t) => Some(TlsReloader::new(t.clone()).map_err(LinkError::Tls)?),
            None => None,
        };
        let next_connect =
            (peer.config().role == Role::Primary && cfg.partner.is_some()).then_some(Time(0));
        let tx_codec = {
            let c = Codec::new(peer.dialect());
            match &cfg.secret {
                Some(s) => c.with_secret(s),
                None => c,
            }
        };
        Ok(Link {
            tx_codec,
            backoff: cfg.backoff_initial,
            cfg,
            poll,
            events: Events::with_capacity(64),
            listener,
            local,
            peer,
            conn: None,
            next_token: 1,
            next_connect,
            waker,
            tls,
            names: None,
        })
    }

    /// Exchange dynamic-DNS names with the partner through `names` from now on.
    pub fn set_names(&mut self, names: Arc<dyn NameExchange>) {
        self.names = Some(names);
    }

    /// Wakes a [`Link::run_once`] that is waiting, from another thread (work arrived for the
    /// peer through a channel).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The state machine.
    pub fn peer(&self) -> &Peer<S> {
        &self.peer
    }

    /// The state machine, mutably (to acknowledge partner bindings, queue local updates,
    /// administrative moves). What it queues is sent on the next [`Link::run_once`].
    pub fn peer_mut(&mut self) -> &mut Peer<S> {
        &mut self.peer
    }

    /// True while a connection to the partner is established (with TLS: and secured).
    pub fn has_connection(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::ready)
    }

    /// True if the link runs TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Drop the connection at once, without a DISCONNECT (as a crash or a cut cable would);
    /// the peer is told and the primary reconnects after its backoff.
    pub fn drop_connection(&mut self) -> Vec<LinkEvent> {
        let mut out = Vec::new();
        let now = Time::now();
        if self.conn.is_some() {
            self.close(now, CloseCause::Dropped, &mut out);
        }
        self.pump(now, &mut out);
        out
    }

    /// Wait at most `max_wait` (or until the next deadline) for the sockets, handle what is
    /// ready and every due deadline, and return what happened.
    ///
    /// Errors only if the poll itself fails; socket errors close the connection and are
    /// reported as events.
    pub fn run_once(&mut self, max_wait: Duration) -> Result<Vec<LinkEvent>, LinkError> {
        let mut out = Vec::new();
        let now = Time::now();
        self.pump(now, &mut out);
        self.maybe_connect(now, &mut out);
        let wait = self.wait(now, max_wait);
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(e) => return Err(LinkError::Poll(e)),
        }
        let ready: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable() || e.is_write_closed() || e.is_error(),
                )
            })
            .collect();
        let now = Time::now();
        for (token, readable, writable) in ready {
            if token == LISTENER {
                self.accept(now, &mut out);
                continue;
            }
            if self.conn.as_ref().is_none_or(|c| c.token != token) {
                continue; // a connection closed earlier in this batch
            }
            if writable {
                self.on_writable(now, &mut out);
            }
            if readable {
                self.on_readable(now, &mut out);
            }
        }
        if let Some(c) = &self.conn {
            if !c.established && now >= c.connect_deadline {
                let remote = c.remote;
                self.connect_failed(now, remote, "connect timed out".into(), &mut out);
            } else if c.established && !c.secured && now >= c.connect_deadline {
                let error = "the TLS handshake did not complete in time".to_string();
                self.tls_refused(now, "handshake_timeout", error, &mut out);
            } else if c.ready() && !self.peer.is_connected() && now >= c.connect_deadline {
                // Connected, but no CONNECT / CONNECTACK in time: whoever this is, it must not
                // hold the relationship's only connection slot until the receive timer.
                let remote = c.remote;
                out.push(LinkEvent::Refused {
                    remote,
                    why: "no failover handshake (CONNECT/CONNECTACK) within the handshake timeout",
                    reason: "handshake_timeout",
                });
                self.close(now, CloseCause::HandshakeTimeout, &mut out);
            }
        }
        if self.peer.poll_timeout().is_some_and(|t| now >= t) {
            self.peer.handle_timeout(now);
        }
        self.maybe_connect(now, &mut out);
        self.pump(now, &mut out);
        Ok(out)
    }

    /// How long the poll may sleep.
    fn wait(&self, now: Time, max_wait: Duration) -> Duration {
        let mut wait = max_wait;
        let mut until = |t: Time| {
            wait = wait.min(Duration::from_millis(t.0.saturating_sub(now.0)));
        };
        if let Some(t) = self.peer.poll_timeout() {
            until(t);
        }
        if self.conn.is_none() {
            if let Some(t) = self.next_connect {
                until(t);
            }
        }
        if let Some(c) = &self.conn {
            if !c.ready() || !self.peer.is_connected() {
                until(c.connect_deadline);
            }
        }
        wait
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    fn maybe_connect(&mut self, now: Time, out: &mut Vec<LinkEvent>) {
        if self.conn.is_some() || self.next_connect.is_none_or(|t| now < t) {
            return;
        }
        let Some(remote) = self.cfg.partner else {
            return;
        };
        match TcpStream::connect(remote) {
            Ok(mut stream) => {
                let token = self.token();
                if let Err(e) = self.poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.connect_failed(now, remote, e.to_string(), out);
                    return;
                }
                tracing::debug!(%remote, "failover: connecting to partner");
                self.next_connect = None;
                match self.new_conn(stream, token, remote, false, now) {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => self.connect_failed(now, remote, e, out),
                }
            }
            Err(e) => self.connect_failed(now, remote, e.to_string(), out),
        }
    }

    /// A connection: `established` for an accepted one (which is inbound), not yet for one
    /// being opened. With TLS its session is set up here: a client session towards the
    /// partner's name when we connect, a server session when it connected to us.
    fn new_conn(
        &mut self,
        stream: TcpStream,
        token: Token,
        remote: SocketAddr,
        established: bool,
        now: Time,
    ) -> Result<Conn, String> {
        let outbound = !established;
        let ms_of = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // Accepted: the TLS handshake's deadline, or without TLS the failover handshake's.
        // Being opened: the TCP connect's.
        let ms = match (established, self.tls.is_some()) {
            (true, true) => ms_of(self.cfg.handshake_timeout),
            (true, false) => self.failover_handshake_ms(),
            (false, _) => ms_of(self.cfg.connect_timeout),
        };
        let tls = match &mut self.tls {
            None => None,
            Some(r) => {
                let m = r.current();
                let c: rustls::Connection = if outbound {
                    rustls::ClientConnection::new(m.client.clone(), m.partner_name.clone())
                        .map_err(|e| format!("TLS client session: {e}"))?
                        .into()
                } else {
                    rustls::ServerConnection::new(m.server.clone())
                        .map_err(|e| format!("TLS server session: {e}"))?
                        .into()
                };
                Some(c)
            }
        };
        Ok(Conn {
            stream,
            token,
            remote,
            established,
            connect_deadline: now.plus_millis(ms),
            decoder: FrameDecoder::new(self.codec()),
            wbuf: Vec::new(),
            wpos: 0,
            secured: tls.is_none(),
            tls,
            outbound,
        })
    }

    /// How long the failover handshake may take on a connection that is up: the handshake
    /// timeout, or the peer's receive timer if shorter (the peer would drop it then anyway, and
    /// the refusal is counted here).
    fn failover_handshake_ms(&self) -> u64 {
        let ht = u64::try_from(self.cfg.handshake_timeout.as_millis()).unwrap_or(u64::MAX);
        let rt = u64::from(self.peer.config().receive_timer_secs) * 1000;
        ht.min(rt.saturating_sub(1).max(1))
    }

    /// The TLS handshake completed: the connection is the partner's, tell the peer.
    fn secured(&mut self, now: Time, out: &mut Vec<LinkEvent>) {
        let ms = self.failover_handshake_ms();
        let Some(c) = &mut self.conn else { return };
        c.secured = true;
        c.connect_deadline = now.plus_millis(ms);
        let (remote, outbound) = (c.remote, c.outbound);
        let suite = c
            .tls
            .as_ref()
            .and_then(|t| t.negotiated_cipher_suite())
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        tracing::info!(%remote, outbound, suite, "failover: TLS 1.3 session with the partner (certificate and name verified)");
        out.push(LinkEvent::Connected { remote, outbound });
        self.peer.connected(now);
    }

    /// Refuse the connection at the TLS layer: count, log, close.
    fn tls_refused(
        &mut self,
        now: Time,
        reason: &'static str,
        error: String,
        out: &mut Vec<LinkEvent>,
    ) {
        let Some(c) = &mut self.conn else { return };
        let (remote, outbound) = (c.remote, c.outbound);
        if let Some(t) = &mut c.tls {
            // The alert rustls queued for the partner, best effort.
            while t.wants_write() {
                if t.write_tls(&mut c.stream).is_err() {
                    break;
                }
            }
        }
        tracing::warn!(%remote, outbound, reason, %error, "failover: TLS with the partner failed; connection refused");
        out.push(LinkEvent::TlsRefused {
            remote,
            outbound,
            reason,
            error,
        });
        self.close(now, CloseCause::Tls(reason), out);
    }

    fn codec(&self) -> Codec {
        let c = Codec::new(self.peer.dialect());
        match &self.cfg.secret {
            Some(s) => c.with_secret(s),
            None => c,
        }
    }

    /// An outbound attempt failed: forget it and schedule the next one.
    fn connect_failed(
        &mut self,
        now: Time,
        remote: SocketAddr,
        error: String,
        out: &mut Vec<LinkEvent>,
    ) {
        if let Some(mut c) = self.conn.take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        let retry_in = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
        self.schedule(now, retry_in);
        tracing::info!(%remote, %error, ?retry_in, "failover: cannot connect to partner");
        out.push(LinkEvent::ConnectFailed {
            remote,
            error,
            retry_in,
        });
    }

    fn schedule(&mut self, now: Time, after: Duration) {
        if self.peer.config().role == Role::Primary && self.cfg.partner.is_some() {
            let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
            self.next_connect = Some(now.plus_millis(ms));
        }
    }

    fn accept(&mut self, now: Time, out: &mut Vec<LinkEvent>) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, remote) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "failover: accept failed");
                    return;
                }
            };
            self.admit(now, stream, remote, out);
        }
    }

    /// Take over an inbound connection accepted elsewhere (a listener shared by several
    /// relationships, which tells them apart by the partner's address). It is checked and
    /// handled exactly like one accepted by this link's own listener.
    pub fn adopt(&mut self, stream: std::net::TcpStream, remote: SocketAddr) -> Vec<LinkEvent> {
        let mut out = Vec::new();
        let now = Time::now();
        match stream.set_nonblocking(true) {
            Ok(()) => self.admit(now, TcpStream::from_std(stream), remote, &mut out),
            Err(e) => {
                tracing::warn!(%remote, error = %e, "failover: cannot use an adopted connection")
            }
        }
        self.pump(now, &mut out);
        out
    }

    /// Check an inbound connection and, if it is the partner's, make it the link's.
    fn admit(
        &mut self,
        now: Time,
        mut stream: TcpStream,
        remote: SocketAddr,
        out: &mut Vec<LinkEvent>,
    ) {
        {
            let why = if self
                .cfg
                .partner
                .is_some_and(|p| !same_ip(p.ip(), remote.ip()))
            {
                Some(("not the configured partner address", "not_partner"))
            } else if self.conn.is_some() {
                Some((
                    "a connection for this relationship already exists",
                    "duplicate",
                ))
            } else {
                None
            };
            if let Some((why, reason)) = why {
                let _ = stream.shutdown(Shutdown::Both);
                out.push(LinkEvent::Refused {
                    remote,
                    why,
                    reason,
                });
                return;
            }
            let token = self.token();
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(%remote, error = %e, "failover: cannot register connection");
                return;
            }
            let _ = stream.set_nodelay(true);
            match self.new_conn(stream, token, remote, true, now) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    tracing::error!(%remote, error = %e, "failover: cannot set up the connection");
                    return;
                }
            }
            if self.tls.is_some() {
                tracing::info!(%remote, "failover: partner connected; TLS handshake");
                return;
            }
            tracing::info!(%remote, "failover: partner connected");
            out.push(LinkEvent::Connected {
                remote,
                outbound: false,
            });
            self.peer.connected(now);
        }
    }

    fn on_writable(&mut self, now: Time, out: &mut Vec<LinkEvent>) {
        let handshake_ms = self.failover_handshake_ms();
        let Some(c) = &mut self.conn else {
            return;
        };
        if !c.established {
            let remote = c.remote;
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    self.connect_failed(now, remote, e.to_string(), out);
                    return;
                }
                Ok(None) => {}
            }
            match c.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.connect_failed(now, remote, e.to_string(), out);
                    return;
                }
            }
            c.established = true;
            let _ = c.stream.set_nodelay(true);
            if c.tls.is_some() {
                tracing::info!(%remote, "failover: connected to partner; TLS handshake");
                let ms = u64::try_from(self.cfg.handshake_timeout.as_millis()).unwrap_or(u64::MAX);
                c.connect_deadline = now.plus_millis(ms);
                if let Err(e) = c.flush() {
                    self.close(now, CloseCause::Io(e.to_string()), out);
                }
                return;
            }
            tracing::info!(%remote, "failover: connected to partner");
            c.connect_deadline = now.plus_millis(handshake_ms);
            out.push(LinkEvent::Connected {
                remote,
                outbound: true,
            });
            self.peer.connected(now);
            return;
        }
        if let Err(e) = c.flush() {
            self.close(now, CloseCause::Io(e.to_string()), out);
        }
    }

    fn on_readable(&mut self, now: Time, out: &mut Vec<LinkEvent>) {
        if self.conn.as_ref().is_some_and(|c| c.tls.is_some()) {
            return self.on_readable_tls(now, out);
        }
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let Some(c) = &mut self.conn else {
                return;
            };
            if !c.established {
                return;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    self.close(now, CloseCause::EndOfStream, out);
                    return;
                }
                Ok(n) => {
                    c.decoder.push(&buf[..n]);
                    if !self.drain_decoder(now, out) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(now, CloseCause::Io(e.to_string()), out);
                    return;
                }
            }
        }
    }

    /// [`Link::on_readable`] through the TLS session: records in, handshake progress, plaintext
    /// to the decoder once secured.
    fn on_readable_tls(&mut self, now: Time, out: &mut Vec<LinkEvent>) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let Some(c) = &mut self.conn else { return };
            if !c.established {
                return;
            }
            let Some(tls) = &mut c.tls else { return };
            let got = match tls.read_tls(&mut c.stream) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(now, CloseCause::Io(e.to_string()), out);
                    return;
                }
            };
            let state = match tls.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    let reason = refusal_reason(&e);
                    self.tls_refused(now, reason, e.to_string(), out);
                    return;
                }
            };
            let mut closed = got == 0 || state.peer_has_closed();
            let mut left = state.plaintext_bytes_to_read();
            while left > 0 {
                match tls.reader().read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        c.decoder.push(&buf[..n]);
                        left = left.saturating_sub(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        closed = true;
                        break;
                    }
                    Err(e) => {
                        self.close(now, CloseCause::Io(e.to_string()), out);
                        return;
                    }
                }
            }
            let handshaking = tls.is_handshaking();
            if let Err(e) = c.flush() {
                self.close(now, CloseCause::Io(e.to_string()), out);
                return;
            }
            if !c.secured {
                if closed {
                    let error = "the partner closed the connection during the TLS handshake";
                    self.tls_refused(now, "closed_in_handshake", error.into(), out);
                    return;
                }
                if handshaking {
                    continue;
                }
                self.secured(now, out);
            }
            if !self.drain_decoder(now, out) {
                return;
            }
            if closed {
                self.close(now, CloseCause::EndOfStream, out);
                return;
            }
        }
    }

    /// Hands every complete message to the peer. False if the link was closed.
    fn drain_decoder(&mut self, now: Time, out: &mut Vec<LinkEvent>) -> bool {
        loop {
            let Some(c) = &mut self.conn else {
                return false;
            };
            match c.decoder.next_message() {
                Ok(Some(msg)) => {
                    if self.cfg.trace_messages {
                        out.push(LinkEvent::Received(msg.clone()));
                    }
                    if let (Some(n), Body::BndUpd(u)) = (&self.names, &msg.body) {
                        for b in u.bindings.iter().filter(|b| b.ddns.is_some()) {
                            n.partner_named(b);
                        }
                    }
                    self.peer.handle_message(now, msg);
                    // Queue replies and act on CloseLink before the next message; the bytes go
                    // out in one write once everything received is handled.
                    self.encode_pending(now, out, false);
                }
                Ok(None) => return true,
                Err(error) => {
                    let reject_reason = error.reject_reason();
                    tracing::warn!(
                        remote = %c.remote,
                        %error,
                        ?reject_reason,
                        "failover: undecodable message from partner; closing the link"
                    );
                    out.push(LinkEvent::DecodeFailed {
                        error: error.clone(),
                        reject_reason,
                    });
                    if let Some(reason) = reject_reason {
                        self.send_disconnect(now, reason, &error);
                    }
                    self.close(now, CloseCause::Codec(error), out);
                    return false;
                }
            }
        }
    }

    /// Best effort: a DISCONNECT written straight to the socket before closing it.
    fn send_disconnect(&mut self, now: Time, reason: RejectReason, error: &CodecError) {
        let msg = Message {
            time: u32::try_from(now.0 / 1000).unwrap_or(u32::MAX),
            xid: 0,
            body: Body::Disconnect(Disconnect {
                reject_reason: Some(reason),
                message: Some(error.to_string().into_bytes()),
            }),
        };
        let codec = self.codec();
        if let Some(c) = &mut self.conn {
            if codec.encode(&msg, &mut c.wbuf).is_ok() {
                let _ = c.flush();
            }
        }
    }

    /// Moves the peer's messages into the write buffer and its events out, until neither has
    /// anything more (closing the link on [`Event::CloseLink`]), and writes the buffer.
    fn pump(&mut self, now: Time, out: &mut Vec<LinkEvent>) {
        self.encode_pending(now, out, true);
    }

    /// [`Link::pump`], writing the buffer to the socket only if `write` (otherwise it is
    /// written by a later pump, or by the close).
    fn encode_pending(&mut self, now: Time, out: &mut Vec<LinkEvent>, write: bool) {
        if self.tx_codec.dialect() != self.peer.dialect() {
            self.tx_codec = self.codec();
        }
        loop {
            let mut progressed = false;
            let codec = &self.tx_codec;
            match &mut self.conn {
                Some(c) if c.ready() => {
                    while c.pending() < HIGH_WATER {
                        let Some(mut msg) = self.peer.poll_transmit() else {
                            break;
                        };
                        progressed = true;
                        if let (Some(n), Body::BndUpd(u)) = (&self.names, &mut msg.body) {
                            attach_names(n.as_ref(), &mut u.bindings);
                        }
                        match codec.encode(&msg, &mut c.wbuf) {
                            Ok(_) => {
                                if self.cfg.trace_messages {
                                    out.push(LinkEvent::Sent(msg));
                                }
                            }
                            Err(error) => {
                                tracing::error!(%error, ?msg, "failover: cannot encode message");
                                out.push(LinkEvent::EncodeFailed { error });
                            }
                        }
                    }
                    if write && c.pending() > 0 {
                        if let Err(e) = c.flush() {
                            self.close(now, CloseCause::Io(e.to_string()), out);
                            continue;
                        }
                    }
                }
                Some(_) => {
                    // Connected but not secured yet: the peer was not told, it has nothing
                    // to send; leave anything queued where it is.
                }
                None => {
                    // No link: the peer only sends on a link, so this is stale output.
                    while let Some(msg) = self.peer.poll_transmit() {
                        tracing::debug!(?msg, "failover: dropping message without a link");
                        progressed = true;
                    }
                }
            }
            let mut close = false;
            while let Some(ev) = self.peer.poll_event() {
                progressed = true;
                if ev == Event::CloseLink {
                    close = true;
                }
                out.push(LinkEvent::Peer(ev));
            }
            if close && self.conn.is_some() {
                self.close(now, CloseCause::Requested, out);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Closes the connection (after one last non-blocking flush) and tells the peer.
    fn close(&mut self, now: Time, cause: CloseCause, out: &mut Vec<LinkEvent>) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        if c.established && cause != CloseCause::Dropped {
            if let Some(t) = &mut c.tls {
                t.send_close_notify();
            }
            let _ = c.flush();
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        let _ = c.stream.shutdown(Shutdown::Both);
        let remote = c.remote;
        let told = c.ready();
        let handshake = self.peer.is_connected();
        drop(c);
        tracing::info!(%remote, ?cause, "failover: link closed");
        out.push(LinkEvent::Disconnected { remote, cause });
        if told {
            self.peer.disconnected(now);
        }
        if handshake {
            self.backoff = self.cfg.backoff_initial;
            self.schedule(now, self.backoff);
        } else {
            let delay = self.backoff;
            self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
            self.schedule(now, delay);
        }
    }
}

/// IPv4 and IPv4-mapped IPv6 forms of the same address are the same partner.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    canon(a) == canon(b)
}

/// Puts the published name of each ACTIVE binding without one into its DDNS option.
fn attach_names(names: &dyn NameExchange, bindings: &mut [super::message::BindingUpdate]) {
    use super::message::{BindingStatus, Ddns, DdnsFlags};
    for b in bindings {
        if b.binding_status == BindingStatus::Active && b.ddns.is_none() {
            if let Some((name, flags)) = names.name_of(b.assigned_ip) {
                b.ddns = Some(Ddns {
                    flags: DdnsFlags(flags),
                    name: name.into_bytes(),
                });
            }
        }
    }
}
