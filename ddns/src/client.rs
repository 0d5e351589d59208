//! A small blocking DNS client for UPDATE: UDP with a per-attempt timeout and retransmission,
//! TCP when the response comes back truncated, TSIG signing and verification.
//!
//! Meant to be called from a background thread; every call ends within
//! `attempts × timeout` (plus one TCP exchange of at most 3 × `timeout` when the UDP answer
//! was truncated).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::rfc4703::{Plan, PlanResult, Step};
use crate::tsig::{self, TsigKey, VerifyError, DEFAULT_FUDGE};
use crate::wire::{DecodeError, EncodeError, Message, Rcode};

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The primary server of the zone.
    pub server: SocketAddr,
    /// How long to wait for the answer to one UDP transmission (and for each TCP phase).
    pub timeout: Duration,
    /// UDP transmissions before giving up (at least 1).
    pub attempts: u32,
    /// The TSIG key to sign with; `None` sends unsigned.
    pub key: Option<TsigKey>,
    /// The TSIG fudge in seconds.
    pub fudge: u16,
}

impl ClientConfig {
    /// `server` with a 2 s timeout, 3 attempts, no key.
    pub fn new(server: SocketAddr) -> ClientConfig {
        ClientConfig {
            server,
            timeout: Duration::from_secs(2),
            attempts: 3,
            key: None,
            fudge: DEFAULT_FUDGE,
        }
    }

    /// The same, signing with `key`.
    pub fn with_key(mut self, key: TsigKey) -> ClientConfig {
        self.key = Some(key);
        self
    }
}

/// Why an exchange produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The response's TSIG did not verify, was missing, or the server reported a TSIG error
    /// (BIND: NOTAUTH with BADKEY / BADSIG).
    #[error("TSIG failure: {0}")]
    Tsig(VerifyError),
    /// No response in time.
    #[error("no response from the server after {attempts} attempt(s) in {elapsed:?}")]
    Timeout {
        /// Transmissions made (UDP), or 1 for a TCP exchange that stalled.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
    },
    /// A socket error.
    #[error("{op}: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error kind.
        kind: io::ErrorKind,
        /// The error text.
        message: String,
    },
    /// The response is not well-formed DNS.
    #[error("malformed response: {0}")]
    Malformed(DecodeError),
    /// The request could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(EncodeError),
    /// The request could not be signed.
    #[error("cannot sign the request: {0}")]
    Sign(tsig::SignError),
}

/// What became of an UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR: the update was applied.
    Success,
    /// The server answered with this response code (a failed prerequisite such as YXDOMAIN or
    /// NXRRSET, or REFUSED, NOTZONE, SERVFAIL ...). Its `Display` is the rcode's mnemonic.
    Refused {
        /// The response code.
        rcode: Rcode,
    },
    /// No usable response.
    Failed(Failure),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Refused { rcode } => write!(f, "refused with {rcode}"),
            Outcome::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// A response that passed the ID and (when signing) TSIG checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The decoded response.
    pub response: Message,
    /// Whether it came over TCP (the UDP answer was truncated).
    pub over_tcp: bool,
}

/// A plan step that ended without a response code to go on with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step:?}: {failure}")]
pub struct StepFailure {
    /// The step.
    pub step: Step,
    /// What went wrong.
    pub failure: Failure,
}

/// A blocking UPDATE client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
}

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An unpredictable transaction ID (std's randomly keyed SipHash over a counter and the clock).
fn random_id() -> u16 {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (RandomState::new().hash_one((n, t)) & 0xffff) as u16
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io_failure(op: &'static str, e: &io::Error) -> Failure {
    Failure::Io {
        op,
        kind: e.kind(),
        message: e.to_string(),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Client {
        Client { config }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sends an UPDATE and classifies the answer. The message's ID is replaced by a random one.
    pub fn update(&self, message: &Message) -> Outcome {
        match self.exchange(message) {
            Ok(x) if x.response.rcode() == Rcode::NOERROR => Outcome::Success,
            Ok(x) => Outcome::Refused {
                rcode: x.response.rcode(),
            },
            Err(f) => Outcome::Failed(f),
        }
    }

    /// Runs a plan to its end: each step's message is sent and its rcode fed back. Stops at
    /// the first step without a usable response; [`Plan::history`] tells what was done.
    pub fn run(&self, plan: &mut Plan) -> Result<PlanResult, StepFailure> {
        while let Some(step) = plan.current_step() {
            let Some(message) = plan.next_message(0) else {
                break;
            };
            let rcode = match self.update(&message) {
                Outcome::Success => Rcode::NOERROR,
                Outcome::Refused { rcode } => rcode,
                Outcome::Failed(failure) => return Err(StepFailure { step, failure }),
            };
            plan.advance(rcode);
        }
        Ok(plan
            .result()
            .expect("a plan without a current step has a result"))
    }

    /// Sends any message (an UPDATE, or a query) with a fresh random ID and returns the
    /// response, whatever its rcode.
    pub fn exchange(&self, message: &Message) -> Result<Exchange, Failure> {
        let mut message = message.clone();
        message.header.id = random_id();
        let id = message.header.id;
        let plain = message.encode().map_err(Failure::Encode)?;
        let (wire, mac) = match &self.config.key {
            Some(key) => {
                let s = tsig::sign_request(&plain, key, unix_now(), self.config.fudge)
                    .map_err(Failure::Sign)?;
                (s.bytes, Some(s.mac))
            }
            None => (plain, None),
        };
        let (raw, over_tcp) = match self.udp(&wire, id)? {
            Udp::Answer(raw) => (raw, false),
            Udp::Truncated => (self.tcp(&wire, id)?, true),
        };
        let response = match (&self.config.key, &mac) {
            (Some(key), Some(mac)) => match tsig::verify_response(&raw, key, mac, unix_now()) {
                Ok(v) => v.message,
                Err(VerifyError::Malformed(e)) => return Err(Failure::Malformed(e)),
                Err(e) => return Err(Failure::Tsig(e)),
            },
            _ => Message::decode(&raw).map_err(Failure::Malformed)?,
        };
        Ok(Exchange { response, over_tcp })
    }

    fn udp(&self, wire: &[u8], id: u16) -> Result<Udp, Failure> {
        let server = self.config.server;
        let local: SocketAddr = match server.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        // Not connected: ICMP port-unreachable from a stopped server is then not reported, and
        // a server that is down looks like one that does not answer (a timeout), as it should.
        let sock = UdpSocket::bind(local).map_err(|e| io_failure("bind UDP socket", &e))?;
        let start = Instant::now();
        let attempts = self.config.attempts.max(1);
        let mut buf = vec![0u8; 65535];
        for _ in 0..attempts {
            sock.send_to(wire, server)
                .map_err(|e| io_failure("send UDP request", &e))?;
            let deadline = Instant::now() + self.config.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                sock.set_read_timeout(Some(left))
                    .map_err(|e| io_failure("set UDP timeout", &e))?;
                let (n, from) = match sock.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if is_timeout(&e) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_failure("receive UDP response", &e)),
                };
                let pkt = &buf[..n];
                // Stray datagrams (another source, another ID, not a response) are ignored.
                if from != server || n < 12 || u16::from_be_bytes([pkt[0], pkt[1]]) != id {
                    continue;
                }
                if pkt[2] & 0x80 == 0 {
                    continue;
                }
                if pkt[2] & 0x02 != 0 {
                    return Ok(Udp::Truncated);
                }
                return Ok(Udp::Answer(pkt.to_vec()));
            }
        }
        Err(Failure::Timeout {
            attempts,
            elapsed: start.elapsed(),
        })
    }

    fn tcp(&self, wire: &[u8], id: u16) -> Result<Vec<u8>, Failure> {
        let start = Instant::now();
        let timeout = self.config.timeout;
        let stalled = |e: &io::Error, op| {
            if is_timeout(e) {
                Failure::Timeout {
                    attempts: 1,
                    elapsed: start.elapsed(),
                }
            } else {
                io_failure(op, e)
            }
        };
        let mut s = TcpStream::connect_timeout(&self.config.server, timeout)
            .map_err(|e| stalled(&e, "connect TCP"))?;
        s.set_read_timeout(Some(timeout))
            .and_then(|()| s.set_write_timeout(Some(timeout)))
            .map_err(|e| io_failure("set TCP timeouts", &e))?;
        // Encoded and signed messages never exceed 65535 octets.
        let len = u16::try_from(wire.len())
            .map_err(|_| Failure::Encode(EncodeError::MessageTooLong { len: wire.len() }))?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(wire);
        s.write_all(&out)
            .map_err(|e| stalled(&e, "send TCP request"))?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)
            .map_err(|e| stalled(&e, "receive TCP response length"))?;
        let mut resp = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut resp)
            .map_err(|e| stalled(&e, "receive TCP response"))?;
        if resp.len() >= 2 && u16::from_be_bytes([resp[0], resp[1]]) != id {
            return Err(Failure::Io {
                op: "receive TCP response",
                kind: io::ErrorKind::InvalidData,
                message: format!(
                    "response ID {:#06x} does not match request ID {id:#06x}",
                    u16::from_be_bytes([resp[0], resp[1]])
                ),
            });
        }
        Ok(resp)
    }
}

enum Udp {
    Answer(Vec<u8>),
    Truncated,
}

#[cfg(test)]
mod tests {
    //! The client against in-process fake servers on loopback (the BIND tests are in
    //! tests/bind.rs).

    use super::*;
    use crate::name::Name;
    use crate::tsig::Algorithm;
    use std::net::TcpListener;
    use std::thread;

    fn nm(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn key() -> TsigKey {
        TsigKey::new(nm("k"), Algorithm::HmacSha256, vec![9; 32])
    }

    /// Turns a request into a response header with `rcode` (same ID, QR set).
    fn respond(req: &[u8], rcode: u8, tc: bool) -> Vec<u8> {
        let mut m = Message::decode(req).unwrap();
        m.additional.clear();
        m.header.response = true;
        m.header.rcode = rcode;
        m.header.truncated = tc;
        m.encode().unwrap()
    }

    fn config(server: SocketAddr) -> ClientConfig {
        let mut c = ClientConfig::new(server);
        c.timeout = Duration::from_millis(300);
        c.attempts = 2;
        c
    }

    #[test]
    fn retransmits_then_succeeds_signed() {
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = srv.local_addr().unwrap();
        let t = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            // Drop the first transmission, answer the second (signed, and a stray first).
            let (n1, _) = srv.recv_from(&mut buf).unwrap();
            let first = buf[..n1].to_vec();
            let (n, from) = srv.recv_from(&mut buf).unwrap();
            assert_eq!(
                &buf[..n],
                &first[..],
                "a retransmission is the same datagram"
            );
            let v = tsig::verify_request(&buf[..n], &key(), unix_now()).unwrap();
            let mut stray = respond(&buf[..n], 0, false);
            stray[0] ^= 0xff;
            srv.send_to(&stray, from).unwrap();
            let resp = respond(&buf[..n], 0, false);
            let s =
                tsig::sign_response(&resp, &key(), &v.mac, unix_now(), 300, Rcode::NOERROR, &[])
                    .unwrap();
            srv.send_to(&s.bytes, from).unwrap();
        });
        let c = Client::new(config(addr).with_key(key()));
        let start = Instant::now();
        assert_eq!(
            c.update(&Message::update(0, nm("tdm.test"))),
            Outcome::Success
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        t.join().unwrap();
    }

    #[test]
    fn refusals_carry_the_rcode_name() {
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = srv.local_addr().unwrap();
        let t = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (n, from) = srv.recv_from(&mut buf).unwrap();
            srv.send_to(&respond(&buf[..n], 8, false), from).unwrap();
        });
        let o = Client::new(config(addr)).update(&Message::update(0, nm("tdm.test")));
        assert_eq!(
            o,
            Outcome::Refused {
                rcode: Rcode::NXRRSET
            }
        );
        assert_eq!(o.to_string(), "refused with NXRRSET");
        t.join().unwrap();
    }

    #[test]
    fn unsigned_or_forged_answers_are_tsig_failures() {
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = srv.local_addr().unwrap();
        let t = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (n, from) = srv.recv_from(&mut buf).unwrap();
            srv.send_to(&respond(&buf[..n], 0, false), from).unwrap();
            let (len, from) = srv.recv_from(&mut buf).unwrap();
            let other = TsigKey::new(nm("k"), Algorithm::HmacSha256, vec![8; 32]);
            let s = tsig::sign_response(
                &respond(&buf[..len], 0, false),
                &other,
                &[0; 32],
                unix_now(),
                300,
                Rcode::NOERROR,
                &[],
            )
            .unwrap();
            srv.send_to(&s.bytes, from).unwrap();
        });
        let c = Client::new(config(addr).with_key(key()));
        assert_eq!(
            c.update(&Message::update(0, nm("tdm.test"))),
            Outcome::Failed(Failure::Tsig(VerifyError::Unsigned {
                rcode: Rcode::NOERROR
            }))
        );
        assert_eq!(
            c.update(&Message::update(0, nm("tdm.test"))),
            Outcome::Failed(Failure::Tsig(VerifyError::BadMac))
        );
        t.join().unwrap();
    }

    #[test]
    fn truncated_udp_falls_back_to_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        let t = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            udp.send_to(&respond(&buf[..n], 0, true), from).unwrap();
            let (mut s, _) = tcp.accept().unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut req = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut req).unwrap();
            let v = tsig::verify_request(&req, &key(), unix_now()).unwrap();
            let resp = respond(&req, 6, false);
            let signed =
                tsig::sign_response(&resp, &key(), &v.mac, unix_now(), 300, Rcode::NOERROR, &[])
                    .unwrap();
            let mut out = (signed.bytes.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&signed.bytes);
            s.write_all(&out).unwrap();
        });
        let c = Client::new(config(addr).with_key(key()));
        let x = c.exchange(&Message::update(0, nm("tdm.test"))).unwrap();
        assert!(x.over_tcp);
        assert_eq!(x.response.rcode(), Rcode::YXDOMAIN);
        t.join().unwrap();
    }

    #[test]
    fn silent_server_times_out_on_schedule() {
        // A bound socket that never answers.
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = Client::new(config(srv.local_addr().unwrap()));
        let start = Instant::now();
        let o = c.update(&Message::update(0, nm("tdm.test")));
        let took = start.elapsed();
        match o {
            Outcome::Failed(Failure::Timeout { attempts, elapsed }) => {
                assert_eq!(attempts, 2);
                assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(took < Duration::from_millis(1500), "{took:?}");
        // Both transmissions arrived.
        srv.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        assert!(srv.recv_from(&mut buf).is_ok());
        assert!(srv.recv_from(&mut buf).is_ok());
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 48, "{} distinct IDs of 64", ids.len());
    }
}
