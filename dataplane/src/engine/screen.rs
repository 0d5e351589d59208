//! Hostile-input screening of requests before the engine answers them: client identities the
//! RFCs call invalid, relay agent information from relays not trusted, and per-client and
//! per-relay-circuit rate limits (DISCOVER floods, pool starvation). Each refusal is a counted
//! drop with its own reason ([`Counter`]).
//!
//! The limits are token buckets kept per worker: a client's requests always reach the worker
//! owning its bucket, so a per-client limit is exact; the clients of one relay circuit spread
//! over the workers, so each worker allows the circuit `limit / workers` (at least 1) per second.

use std::net::Ipv4Addr;

use super::{Counter, Map};
use crate::binding::ClientKey;
use crate::time::Time;
use crate::wire::{MessageType, Request};

/// What the screen refuses (operators differ: every check can be turned off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hardening {
    /// Drop a client identifier shorter than 2 bytes (RFC 2132 §9.14), `hlen` 0 without a
    /// client identifier, an Ethernet `htype` (1) whose `hlen` is not 6, and an all-zero
    /// `chaddr` without a client identifier (default true).
    pub strict_identity: bool,
    /// DISCOVERs per second one client (its identifier, else its hardware address) may send,
    /// with a burst of twice that; 0: no limit (default).
    pub discover_per_client: u32,
    /// Requests per second through one relay circuit (giaddr + option 82 circuit id), burst
    /// twice that; 0: no limit (default).
    pub per_circuit: u32,
    /// Relays (giaddr) whose relay agent information (option 82) is accepted; a request with
    /// option 82 from any other source, or sent directly (giaddr 0), is dropped. Empty: every
    /// relay is trusted (default).
    pub trusted_relays: Vec<Ipv4Addr>,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            strict_identity: true,
            discover_per_client: 0,
            per_circuit: 0,
            trusted_relays: Vec::new(),
        }
    }
}

/// Token buckets kept at most; beyond it idle ones are forgotten first, then all (a flood of
/// fresh identities cannot grow memory without bound).
const MAX_BUCKETS: usize = 1 << 18;
/// A bucket idle this long is full again and can be forgotten (ms).
const IDLE_MS: u64 = 10_000;

#[derive(Copy, Clone, Debug)]
struct Tokens {
    /// Tokens left, in thousandths.
    milli: u64,
    at_ms: u64,
}

/// One kind of limit: `rate` per second, burst `2 * rate`.
#[derive(Debug)]
struct Limiter<K> {
    buckets: Map<K, Tokens>,
}

impl<K> Default for Limiter<K> {
    fn default() -> Self {
        Limiter {
            buckets: Map::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Limiter<K> {
    /// Take one token for `key` at `now_ms`; false if none is left.
    fn take(&mut self, key: K, rate: u32, now_ms: u64) -> bool {
        let cap = u64::from(rate) * 2 * 1000;
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
            self.buckets
                .retain(|_, t| now_ms.saturating_sub(t.at_ms) < IDLE_MS);
            if self.buckets.len() >= MAX_BUCKETS {
                self.buckets.clear();
            }
        }
        let t = self.buckets.entry(key).or_insert(Tokens {
            milli: cap,
            at_ms: now_ms,
        });
        let refill = now_ms.saturating_sub(t.at_ms) * u64::from(rate);
        t.milli = (t.milli + refill).min(cap);
        t.at_ms = now_ms;
        if t.milli >= 1000 {
            t.milli -= 1000;
            true
        } else {
            false
        }
    }

    fn forget_idle(&mut self, now_ms: u64) {
        self.buckets
            .retain(|_, t| now_ms.saturating_sub(t.at_ms) < IDLE_MS);
    }
}

/// The screen's state in one engine.
#[derive(Debug)]
pub(super) struct Screen {
    pub(super) rules: Hardening,
    clients: Limiter<ClientKey>,
    /// (giaddr, digest of the circuit id).
    circuits: Limiter<(Ipv4Addr, u64)>,
    last_sweep_ms: u64,
}

impl Screen {
    pub(super) fn new(rules: Hardening) -> Screen {
        Screen {
            rules,
            clients: Limiter::default(),
            circuits: Limiter::default(),
            last_sweep_ms: 0,
        }
    }

    /// The reason to drop `req` of `client`, if any; `workers` share a circuit's limit.
    pub(super) fn check(
        &mut self,
        req: &Request<'_>,
        client: &ClientKey,
        now: Time,
        workers: usize,
    ) -> Option<Counter> {
        let r = &self.rules;
        if r.strict_identity {
            let cid = req.client_id();
            if cid.is_some_and(|c| c.len() < 2) {
                return Some(Counter::DropShortClientId);
            }
            if cid.is_none() {
                let hw = &req.chaddr()[..usize::from(req.hlen())];
                if hw.is_empty() {
                    return Some(Counter::DropBadHardware);
                }
                if hw.iter().all(|&b| b == 0) {
                    return Some(Counter::DropZeroChaddr);
                }
            }
            if req.htype() == 1 && req.hlen() != 6 {
                return Some(Counter::DropBadHardware);
            }
        }
        let relay_info = req.option(crate::wire::opt::RELAY_AGENT_INFO).is_some();
        if relay_info && !r.trusted_relays.is_empty() && !r.trusted_relays.contains(&req.giaddr()) {
            return Some(Counter::DropUntrustedRelay);
        }
        let now_ms = now.0;
        if now_ms.saturating_sub(self.last_sweep_ms) >= IDLE_MS {
            self.last_sweep_ms = now_ms;
            self.clients.forget_idle(now_ms);
            self.circuits.forget_idle(now_ms);
        }
        if r.discover_per_client > 0
            && req.message_type() == MessageType::Discover
            && !self.clients.take(*client, r.discover_per_client, now_ms)
        {
            return Some(Counter::DropRateLimited);
        }
        if r.per_circuit > 0 && !req.giaddr().is_unspecified() {
            if let Some(circuit) = req.relay_sub_option(1) {
                let rate = (r.per_circuit / workers.max(1) as u32).max(1);
                let key = (req.giaddr(), digest(circuit));
                if !self.circuits.take(key, rate, now_ms) {
                    return Some(Counter::DropCircuitRateLimited);
                }
            }
        }
        None
    }
}

/// A 64-bit digest of a circuit id (a collision only merges two circuits' limits).
fn digest(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}
