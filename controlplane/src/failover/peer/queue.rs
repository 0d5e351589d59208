//! The outgoing BNDUPD queue and the window of unacknowledged BNDUPDs.
//!
//! Each queued binding carries a sequence number. The queue keeps at most one entry per address
//! (a newer update replaces an older queued one and moves to the back). Bindings sent and not yet
//! acknowledged go back to the front of the queue, in their original order, when the link drops
//! (unless a newer update for the address is already queued). UPDDONE is sent once every entry
//! queued up to a marker has been acknowledged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

use tandem_dataplane::binding::Binding;

/// A cheap hasher for maps keyed by our own addresses (multiply-rotate, as FxHash does).
///
/// Only for keys this server chose (addresses of its own bindings), never for keys a remote
/// party picks freely: it is not collision resistant.
#[derive(Clone, Copy, Default)]
pub(crate) struct AddrHasher(u64);

impl AddrHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        // The multiply mixes upwards: bring the well-mixed high bits down to where the table
        // picks its bucket.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
}

/// [`AddrHasher`] for `HashMap`s.
pub(crate) type AddrHash = BuildHasherDefault<AddrHasher>;

/// One BNDUPD message on the wire, waiting for its BNDACK.
#[derive(Clone, Debug)]
struct InFlight {
    xid: u32,
    /// (sequence, binding, acknowledged)
    items: Vec<(i64, Binding, bool)>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Outbox {
    queue: BTreeMap<i64, Binding>,
    by_addr: HashMap<Ipv4Addr, i64, AddrHash>,
    next_back: i64,
    next_front: i64,
    in_flight: VecDeque<InFlight>,
    parked: Vec<Binding>,
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox {
            next_back: 1,
            next_front: 0,
            ..Outbox::default()
        }
    }

    /// Queue `b` at the back, replacing a queued update for the same address.
    pub(crate) fn push(&mut self, b: Binding) {
        if let Some(old) = self.by_addr.remove(&b.addr) {
            self.queue.remove(&old);
        }
        let seq = self.next_back;
        self.next_back += 1;
        self.queue.insert(seq, b);
        self.by_addr.insert(b.addr, seq);
    }

    /// Queue `b` at the back unless an update for its address is already queued.
    pub(crate) fn push_unless_queued(&mut self, b: Binding) {
        if !self.by_addr.contains_key(&b.addr) {
            self.push(b);
        }
    }

    fn push_front(&mut self, b: Binding) {
        if self.by_addr.contains_key(&b.addr) {
            // A newer update for the address is already queued.
            return;
        }
        let seq = self.next_front;
        self.next_front -= 1;
        self.queue.insert(seq, b);
        self.by_addr.insert(b.addr, seq);
    }

    /// Take up to `n` bindings from the front.
    #[cfg(test)]
    pub(crate) fn pop(&mut self, n: usize) -> Vec<(i64, Binding)> {
        let mut out = Vec::with_capacity(n.min(self.queue.len()));
        while out.len() < n {
            let Some(item) = self.pop_front() else {
                break;
            };
            out.push(item);
        }
        out
    }

    /// The binding at the front, if any.
    pub(crate) fn front(&self) -> Option<&Binding> {
        self.queue.first_key_value().map(|(_, b)| b)
    }

    /// Take the binding at the front.
    pub(crate) fn pop_front(&mut self) -> Option<(i64, Binding)> {
        let (seq, b) = self.queue.pop_first()?;
        self.by_addr.remove(&b.addr);
        Some((seq, b))
    }

    /// Record a BNDUPD sent with `xid` carrying `items`.
    pub(crate) fn sent(&mut self, xid: u32, items: Vec<(i64, Binding)>) {
        self.in_flight.push_back(InFlight {
            xid,
            items: items.into_iter().map(|(s, b)| (s, b, false)).collect(),
        });
    }

    /// Match an acknowledgement for `addr` in the BNDUPD `xid`; the binding as it was sent.
    pub(crate) fn ack(&mut self, xid: u32, addr: Ipv4Addr) -> Option<Binding> {
        let pos = self.in_flight.iter().position(|f| {
            f.xid == xid && f.items.iter().any(|(_, b, done)| !done && b.addr == addr)
        })?;
        let entry = &mut self.in_flight[pos];
        let item = entry
            .items
            .iter_mut()
            .find(|(_, b, done)| !*done && b.addr == addr)?;
        item.2 = true;
        let b = item.1;
        if entry.items.iter().all(|(_, _, done)| *done) {
            self.in_flight.remove(pos);
        }
        Some(b)
    }

    /// Keep a binding the partner refused because of clock skew, to send again on the next link.
    pub(crate) fn park(&mut self, b: Binding) {
        self.parked.push(b);
    }

    /// The link dropped: every unacknowledged binding goes back to the front.
    pub(crate) fn requeue_in_flight(&mut self) {
        let flights: Vec<InFlight> = self.in_flight.drain(..).collect();
        for f in flights.iter().rev() {
            for (_, b, done) in f.items.iter().rev() {
                if !done {
                    self.push_front(*b);
                }
            }
        }
    }

    /// A new link is up: parked bindings are queued again.
    pub(crate) fn unpark(&mut self) {
        for b in std::mem::take(&mut self.parked) {
            if !self.by_addr.contains_key(&b.addr) {
                self.push(b);
            }
        }
    }

    /// Number of BNDUPD messages awaiting their BNDACK.
    pub(crate) fn in_flight_msgs(&self) -> usize {
        self.in_flight.len()
    }

    /// Number of bindings queued or unacknowledged.
    pub(crate) fn outstanding(&self) -> usize {
        self.queue.len()
            + self
                .in_flight
                .iter()
                .map(|f| f.items.iter().filter(|i| !i.2).count())
                .sum::<usize>()
            + self.parked.len()
    }

    pub(crate) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The marker for "everything queued so far".
    pub(crate) fn marker(&self) -> i64 {
        self.next_back - 1
    }

    /// True once nothing queued at or before `marker` is still queued or unacknowledged.
    pub(crate) fn done_up_to(&self, marker: i64) -> bool {
        let queued = self.queue.keys().next().is_some_and(|&s| s <= marker);
        let flying = self
            .in_flight
            .iter()
            .any(|f| f.items.iter().any(|(s, _, done)| !done && *s <= marker));
        !queued && !flying
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_dataplane::binding::BindingState;

    fn b(last: u8, exp: u32) -> Binding {
        let mut b = Binding::empty(Ipv4Addr::new(10, 0, 0, last), BindingState::Active);
        b.expires = exp;
        b
    }

    #[test]
    fn newer_update_replaces_queued_one() {
        let mut o = Outbox::new();
        o.push(b(1, 10));
        o.push(b(2, 10));
        o.push(b(1, 20));
        let got = o.pop(10);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.addr, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(got[1].1.expires, 20);
    }

    #[test]
    fn unacked_return_to_the_front_in_order_unless_superseded() {
        let mut o = Outbox::new();
        for i in 1..=4 {
            o.push(b(i, 10));
        }
        let first = o.pop(2);
        o.sent(7, first);
        let second = o.pop(1);
        o.sent(8, second);
        assert_eq!(
            o.ack(7, Ipv4Addr::new(10, 0, 0, 1)).map(|x| x.expires),
            Some(10)
        );
        o.push(b(3, 99)); // newer update for an in-flight address
        o.requeue_in_flight();
        let order: Vec<(u8, u32)> = o
            .pop(10)
            .into_iter()
            .map(|(_, x)| (x.addr.octets()[3], x.expires))
            .collect();
        assert_eq!(order, vec![(2, 10), (4, 10), (3, 99)]);
    }

    #[test]
    fn done_marker_waits_for_acks() {
        let mut o = Outbox::new();
        o.push(b(1, 1));
        o.push(b(2, 1));
        let m = o.marker();
        assert!(!o.done_up_to(m));
        let items = o.pop(2);
        o.sent(3, items);
        o.push(b(5, 1)); // after the marker
        assert!(!o.done_up_to(m));
        assert!(o.ack(3, Ipv4Addr::new(10, 0, 0, 1)).is_some());
        assert!(!o.done_up_to(m));
        assert!(o.ack(3, Ipv4Addr::new(10, 0, 0, 2)).is_some());
        assert!(o.done_up_to(m));
        assert_eq!(o.in_flight_msgs(), 0);
        assert_eq!(o.outstanding(), 1);
        // Unknown acks are ignored.
        assert!(o.ack(3, Ipv4Addr::new(10, 0, 0, 2)).is_none());
    }
}
