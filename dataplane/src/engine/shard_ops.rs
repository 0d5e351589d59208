//! What lets several workers share a server: which worker owns a binding, loading one worker's
//! part of the recovered bindings, and moving free addresses between workers' shards.
//!
//! The invariant across workers: every address is, at any moment, free in at most one worker's
//! pool or held (ACTIVE, ABANDONED, or under an offer) by at most one worker's binding. A held
//! binding lives with the worker that owns its client's RFC 3074 bucket, so the client's next
//! request reaches it; an unheld one (free, expired, released) lives with the worker whose shard
//! the address started in. Addresses move only while free ([`Engine::shard_give`] →
//! [`Engine::shard_receive`]), and the giver forgets its record of them so that nothing it
//! remembers can send the address to a returning client.

use std::net::Ipv4Addr;

use super::Engine;
use crate::binding::{Binding, BindingState, ClientKey};
use crate::hash;
use crate::scope::ServerSettings;
use crate::time::Time;

/// The RFC 3074 bucket of a stored binding's client: its option 61 if the binding was keyed by
/// one, else its hardware address (the bucket its requests hash to). A client identifier longer
/// than 32 bytes is stored digested and hashes differently; such a client's binding may then
/// live with another worker than its requests reach (it gets a new address; nothing is leased
/// twice).
pub fn binding_bucket(b: &Binding) -> u8 {
    if !b.client_id && b.client == ClientKey::from_hw(b.htype, b.hw()) {
        hash::client_bucket(None, b.hw(), b.hlen)
    } else {
        hash::bucket(b.client.as_bytes())
    }
}

/// The worker of `workers` whose initial shard holds `addr` (0 if no scope range of `settings`
/// contains it).
pub fn shard_of(settings: &ServerSettings, addr: Ipv4Addr, workers: usize) -> usize {
    let workers = workers.max(1) as u64;
    let a = u64::from(u32::from(addr));
    for s in &settings.scopes {
        for r in &s.ranges {
            let (start, end) = (u32::from(r.start), u32::from(r.end));
            if a < u64::from(start) || a > u64::from(end) {
                continue;
            }
            for (x, y) in crate::pool::segments(s, start, end) {
                let (lo, hi) = (u64::from(x), u64::from(y));
                if a < lo || a > hi {
                    continue;
                }
                let n = hi - lo + 1;
                // Shard k covers lo + n*k/w .. lo + n*(k+1)/w of each segment (see Pool::new).
                for k in 0..workers {
                    if a < lo + n * (k + 1) / workers {
                        return k as usize;
                    }
                }
            }
        }
    }
    0
}

/// The worker of `workers` that keeps binding `b`: the owner of its client's bucket (bucket `b`
/// → worker `b % workers`, as [`Engine::bucket_owner`]) if the address is held, else the worker
/// of the address's initial shard.
pub fn owner_of(settings: &ServerSettings, b: &Binding, workers: usize) -> usize {
    let workers = workers.max(1);
    if b.state.is_held() && !b.client.is_empty() {
        usize::from(binding_bucket(b)) % workers
    } else {
        shard_of(settings, b.addr, workers)
    }
}

/// What [`Engine::extract`] took out of a worker for one address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The durable binding, if the worker had one.
    pub record: Option<Binding>,
    /// The pool the address was free in (FREE or BACKUP), if any.
    pub pooled: Option<BindingState>,
    /// An offer hold over the address, if any (its durable binding is `record`).
    pub hold: Option<Binding>,
}

impl Engine {
    /// Load this worker's part of the bindings recovered from every worker's journal
    /// (`all`, one binding per address): those [`owner_of`] gives this worker are loaded as
    /// [`Engine::load`] does, and the addresses other workers hold are taken out of this
    /// worker's pools. Returns the number loaded.
    pub fn load_part(&mut self, all: &[Binding], now: Time) -> usize {
        let (me, n) = (self.worker, self.workers);
        let settings = self.settings.clone();
        let mine: Vec<Binding> = all
            .iter()
            .filter(|b| owner_of(&settings, b, n) == me)
            .copied()
            .collect();
        let count = mine.len();
        self.load(mine, now);
        for b in all {
            if b.state.is_held() && owner_of(&settings, b, n) != me {
                if let Some(si) = self.scope_of(b.addr) {
                    self.scopes[si].take_addr(b.addr);
                }
            }
        }
        count
    }

    /// Free addresses of scope `si` in this worker's FREE pool.
    pub fn shard_free(&self, si: usize) -> u64 {
        self.scopes.get(si).map_or(0, |s| s.pool.free())
    }

    /// Give up to `n` free addresses of scope `si` (spread over its ranges) for another
    /// worker's [`Engine::shard_receive`]; this worker forgets its records of them. Scopes shared
    /// with a failover partner are never split this way (their pools move by failover rules).
    pub fn shard_give(&mut self, si: usize, n: u64) -> Vec<Ipv4Addr> {
        let Some(st) = self.scopes.get_mut(si) else {
            return Vec::new();
        };
        if st.replicated {
            return Vec::new();
        }
        let given = st.pool.give(n);
        for a in &given {
            if let Some(old) = st.bindings.remove(a) {
                if st.by_client.get(&old.client) == Some(a) {
                    st.by_client.remove(&old.client);
                }
            }
            st.prior.remove(a);
        }
        given
    }

    /// Take everything this worker knows about `addr` out of it, for a failover partner's
    /// update judged across workers: its durable binding, an offer hold over it, and its place
    /// in the FREE or BACKUP pool. Until [`Engine::put_back`] or an [`Engine::install`] somewhere, the
    /// address is in no worker's pool and held by none, so nothing can lease it meanwhile.
    /// `None` if this worker knows nothing of `addr`. Nothing is journaled: the binding stays
    /// in this worker's journal until a newer record (here or in another worker's journal)
    /// supersedes it.
    pub fn extract(&mut self, addr: Ipv4Addr) -> Option<Extracted> {
        let Some(si) = self.scope_of(addr) else {
            return self.orphans.remove(&addr).map(|b| Extracted {
                record: Some(b),
                pooled: None,
                hold: None,
            });
        };
        let st = &mut self.scopes[si];
        let mut hold = None;
        let record = match st.bindings.remove(&addr) {
            Some(h) if h.state == BindingState::Offered => {
                if st.by_client.get(&h.client) == Some(&addr) {
                    st.by_client.remove(&h.client);
                }
                hold = Some(h);
                st.prior.remove(&addr)
            }
            Some(b) => Some(b),
            None => None,
        };
        if let Some(b) = &record {
            if st.by_client.get(&b.client) == Some(&addr) {
                st.by_client.remove(&b.client);
            }
        }
        let pooled = if st.pool.take(addr) {
            Some(BindingState::Free)
        } else if st.backup.take(addr) {
            Some(BindingState::Backup)
        } else {
            None
        };
        if record.is_none() && pooled.is_none() && hold.is_none() {
            return None;
        }
        Some(Extracted {
            record,
            pooled,
            hold,
        })
    }

    /// Undo an [`Engine::extract`] of this worker: the binding and the pool place come back as
    /// they were, without a journal record (nothing changed on disk).
    pub fn put_back(&mut self, addr: Ipv4Addr, x: Extracted) {
        if let Some(b) = x.record {
            self.insert_binding(b);
        }
        if let Some(si) = self.scope_of(addr) {
            let st = &mut self.scopes[si];
            st.take_addr(addr);
            match x.pooled {
                Some(BindingState::Backup) => {
                    st.backup.put(addr);
                }
                Some(_) => {
                    st.pool.put(addr);
                }
                None => {}
            }
            if let Some(h) = x.hold {
                // The offer stands again, over the record it replaced.
                st.take_addr(addr);
                if let Some(b) = x.record {
                    if b.client != h.client && st.by_client.get(&b.client) == Some(&addr) {
                        st.by_client.remove(&b.client);
                    }
                    st.prior.insert(addr, b);
                }
                st.by_client.insert(h.client, addr);
                st.bindings.insert(addr, h);
            }
        }
    }

    /// Take up to `n` unleased addresses of scope `si` out of this worker's FREE pool (or its
    /// BACKUP pool when `pool` is [`BindingState::Backup`]), each with its record, for another
    /// worker's [`Engine::shard_accept`]: shard balancing of a scope shared with a failover
    /// partner, where an unleased address's record (its FREE/BACKUP state and transfer
    /// marks) must travel with it. Nothing is journaled (see [`Engine::extract`]).
    pub fn shard_take(
        &mut self,
        si: usize,
        pool: BindingState,
        n: u64,
    ) -> Vec<(Ipv4Addr, Extracted)> {
        let pool = if pool == BindingState::Backup {
            BindingState::Backup
        } else {
            BindingState::Free
        };
        let Some(st) = self.scopes.get_mut(si) else {
            return Vec::new();
        };
        let given = if pool == BindingState::Backup {
            st.backup.give(n)
        } else {
            st.pool.give(n)
        };
        given
            .into_iter()
            .map(|a| {
                let mut x = self.extract(a).unwrap_or(Extracted {
                    record: None,
                    pooled: None,
                    hold: None,
                });
                x.pooled = Some(pool);
                (a, x)
            })
            .collect()
    }

    /// Take what another worker's [`Engine::shard_take`] gave into this worker's shard of
    /// scope `si` (records and pool places). Returns how many addresses were added.
    pub fn shard_accept(&mut self, si: usize, items: Vec<(Ipv4Addr, Extracted)>) -> u64 {
        let mut n = 0;
        for (a, x) in items {
            let pooled = x.pooled;
            self.put_back(a, x);
            let Some(st) = self.scopes.get_mut(si) else {
                continue;
            };
            // The shard grows by what it was given (Pool::receive's bookkeeping).
            let pool = match pooled {
                Some(BindingState::Backup) => &mut st.backup,
                _ => &mut st.pool,
            };
            if pool.is_free(a) {
                pool.take(a);
                n += pool.receive(&[a]);
            }
        }
        n
    }

    /// Take addresses another worker gave ([`Engine::shard_give`]) into scope `si`'s FREE
    /// pool. Returns how many were added.
    pub fn shard_receive(&mut self, si: usize, addrs: &[Ipv4Addr]) -> u64 {
        self.scopes
            .get_mut(si)
            .map_or(0, |st| st.pool.receive(addrs))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::super::tests::{ip, scope, send_at, settings as test_settings, Req, SID, T0};
    use super::*;
    use crate::authority::Standalone;
    use crate::binding::BindingState;
    use crate::engine::{Outcome, Stats};
    use crate::wire::MessageType;

    fn settings(lo: &str, hi: &str) -> Arc<ServerSettings> {
        Arc::new(test_settings(vec![scope("lan", "10.0.0.0", 24, lo, hi)]))
    }

    fn engines(s: &Arc<ServerSettings>, n: usize) -> Vec<Engine> {
        let stats = Arc::new(Stats::default());
        (0..n)
            .map(|k| Engine::new(s.clone(), vec![vec![0]], k, n, stats.clone()))
            .collect()
    }

    /// A client (by MAC) whose bucket belongs to worker `w` of `n`.
    fn mac_for(w: usize, n: usize, skip: usize) -> [u8; 6] {
        (0u32..)
            .map(|i| {
                let b = i.to_be_bytes();
                [2, 0, b[0], b[1], b[2], b[3]]
            })
            .filter(|m| usize::from(hash::client_bucket(None, m, 6)) % n == w)
            .nth(skip)
            .expect("some MAC hashes to every worker")
    }

    /// DORA for `mac` on whichever engine owns it; the leased address.
    fn lease(es: &mut [Engine], mac: [u8; 6], at: Time) -> Option<Ipv4Addr> {
        let n = es.len();
        let w = usize::from(hash::client_bucket(None, &mac, 6)) % n;
        let offer = send_at(
            &mut es[w],
            at,
            &Req::new(MessageType::Discover, 0).mac(mac),
            &Standalone,
        );
        offer.msg()?;
        let req = Req::new(MessageType::Request, 0)
            .mac(mac)
            .xid(0x9000)
            .sid(SID)
            .requested(offer.yiaddr());
        let ack = send_at(&mut es[w], at, &req, &Standalone);
        (ack.msg() == Some(MessageType::Ack)).then(|| ack.yiaddr())
    }

    #[test]
    fn each_worker_counts_in_its_own_set_and_reads_add_them_up() {
        let s = settings("10.0.0.10", "10.0.0.29");
        let stats = Arc::new(Stats::new(2));
        let mut es: Vec<Engine> = (0..2)
            .map(|k| Engine::new(s.clone(), vec![vec![0]], k, 2, stats.clone()))
            .collect();
        lease(&mut es, mac_for(0, 2, 0), T0).expect("worker 0 leases");
        lease(&mut es, mac_for(1, 2, 0), T0).expect("worker 1 leases");
        lease(&mut es, mac_for(1, 2, 1), T0).expect("worker 1 leases");
        assert_eq!(stats.get(crate::engine::Counter::Ack), 3);
        assert_eq!(stats.get(crate::engine::Counter::Discover), 3);
        // A handed-off frame is counted by the owner only.
        send_at(
            &mut es[0],
            T0,
            &Req::new(MessageType::Discover, 0).mac(mac_for(1, 2, 2)),
            &Standalone,
        );
        assert_eq!(stats.get(crate::engine::Counter::Discover), 3);
        assert_eq!(stats.get(crate::engine::Counter::Received), 6);
    }

    #[test]
    fn a_worker_hands_off_clients_it_does_not_own() {
        let s = settings("10.0.0.10", "10.0.0.29");
        let mut es = engines(&s, 2);
        let mac = mac_for(1, 2, 0);
        let r = send_at(
            &mut es[0],
            T0,
            &Req::new(MessageType::Discover, 0).mac(mac),
            &Standalone,
        );
        assert_eq!(r.outcome, Outcome::Handoff(1));
    }

    #[test]
    fn a_dry_shard_serves_again_after_receiving_addresses() {
        let s = settings("10.0.0.10", "10.0.0.29"); // 20 addresses, 10 per worker
        let mut es = engines(&s, 2);
        let mut got = HashSet::new();
        for i in 0..10 {
            let a = lease(&mut es, mac_for(0, 2, i), T0).expect("worker 0 has 10");
            assert!(got.insert(a));
        }
        assert_eq!(es[0].shard_free(0), 0);
        assert_eq!(
            lease(&mut es, mac_for(0, 2, 10), T0),
            None,
            "shard 0 is dry"
        );
        let moved = es[1].shard_give(0, 5);
        assert_eq!(moved.len(), 5);
        assert_eq!(es[0].shard_receive(0, &moved), 5);
        // Later than the duplicate window, so the silent answer to the retry is not replayed.
        let later = Time(T0.0 + 5_000);
        for i in 10..15 {
            let a = lease(&mut es, mac_for(0, 2, i), later).expect("received addresses serve");
            assert!(got.insert(a), "{a} leased twice");
        }
        for i in 0..5 {
            let a = lease(&mut es, mac_for(1, 2, i), T0).expect("worker 1 keeps 5");
            assert!(got.insert(a), "{a} leased twice");
        }
        assert_eq!(lease(&mut es, mac_for(1, 2, 5), T0), None);
        assert_eq!(got.len(), 20);
    }

    #[test]
    fn the_giver_forgets_the_records_of_given_addresses() {
        let s = settings("10.0.0.10", "10.0.0.13"); // 2 per worker
        let mut es = engines(&s, 2);
        let c = mac_for(1, 2, 0);
        let a = lease(&mut es, c, T0).expect("lease");
        // The client releases; worker 1 still remembers the address as the client's.
        let rel = Req::new(MessageType::Release, 0)
            .mac(c)
            .xid(0x9100)
            .ci(a)
            .sid(SID);
        send_at(&mut es[1], T0, &rel, &Standalone);
        assert_eq!(
            es[1].binding(a).map(|b| b.state),
            Some(BindingState::Released)
        );
        let moved = es[1].shard_give(0, 2);
        assert!(moved.contains(&a));
        assert_eq!(es[1].binding(a), None);
        es[0].shard_receive(0, &moved);
        // The returning client does not get its old address back from worker 1: it moved.
        let again = lease(&mut es, c, Time(T0.0 + 10_000));
        assert_eq!(again, None, "worker 1 has nothing left to lease");
    }

    #[test]
    fn each_worker_loads_its_part_and_keeps_out_of_the_others_addresses() {
        let s = settings("10.0.0.10", "10.0.0.29");
        // One server run with a single worker leases 12 addresses.
        let mut one = engines(&s, 1);
        let mut leased = Vec::new();
        for i in 0..12 {
            let a = lease(&mut one, mac_for(0, 1, i), T0).expect("lease");
            leased.push(a);
        }
        let all: Vec<Binding> = one[0].durable_bindings().copied().collect();
        assert_eq!(all.len(), 12);
        // Restarted with two workers: every binding is loaded by exactly one, the one owning
        // its client's bucket.
        let mut two = engines(&s, 2);
        let loaded: usize = two.iter_mut().map(|e| e.load_part(&all, T0)).sum();
        assert_eq!(loaded, 12);
        for b in &all {
            let w = owner_of(&s, b, 2);
            assert!(two[w].binding(b.addr).is_some());
            assert!(two[1 - w].binding(b.addr).is_none());
        }
        // The 8 addresses left are leased to new clients without touching the 12.
        let mut fresh = HashSet::new();
        for w in 0..2 {
            for i in 100..120 {
                if let Some(a) = lease(&mut two, mac_for(w, 2, i), T0) {
                    assert!(!leased.contains(&a), "{a} was held already");
                    assert!(fresh.insert(a), "{a} leased twice");
                }
            }
        }
        assert_eq!(fresh.len(), 8);
        // And every old client renews its own address with the worker that loaded it.
        for (i, &a) in leased.iter().enumerate() {
            assert_eq!(lease(&mut two, mac_for(0, 1, i), T0), Some(a));
        }
    }

    #[test]
    fn extract_takes_an_address_out_and_put_back_restores_it_exactly() {
        let s = settings("10.0.0.10", "10.0.0.13"); // 2 per worker
        let mut es = engines(&s, 2);
        let c = mac_for(0, 2, 0);
        let a = lease(&mut es, c, T0).expect("lease");
        let before = *es[0].binding(a).expect("leased");
        let (free0, _) = es[0].pool_counts(0);
        // A leased address: its record comes out, nothing is pooled, and meanwhile the
        // worker neither knows it nor can lease it.
        let x = es[0].extract(a).expect("known");
        assert_eq!(x.record, Some(before));
        assert_eq!((x.pooled, x.hold), (None, None));
        assert_eq!(es[0].binding(a), None);
        assert_eq!(es[0].extract(a), None, "taken once");
        es[0].put_back(a, x);
        assert_eq!(es[0].binding(a), Some(&before));
        assert_eq!(es[0].pool_counts(0).0, free0);
        // The client renews its address as before.
        assert_eq!(lease(&mut es, c, Time(T0.0 + 10_000)), Some(a));
        // A free address leaves the pool and comes back to it.
        let free_addr = (10..=11)
            .map(|n| ip(&format!("10.0.0.{n}")))
            .find(|&f| f != a)
            .expect("worker 0 has a second address");
        let x = es[0].extract(free_addr).expect("pooled");
        assert_eq!(x.pooled, Some(BindingState::Free));
        assert_eq!(es[0].pool_counts(0).0, free0 - 1);
        es[0].put_back(free_addr, x);
        assert_eq!(es[0].pool_counts(0).0, free0);
        // An outstanding offer survives the round trip: the REQUEST that follows is ACKed.
        let c2 = mac_for(0, 2, 1);
        let offer = send_at(
            &mut es[0],
            T0,
            &Req::new(MessageType::Discover, 0).mac(c2),
            &Standalone,
        );
        let offered = offer.yiaddr();
        assert_eq!(offered, free_addr);
        let x = es[0].extract(offered).expect("offered");
        assert_eq!(x.hold.map(|h| h.state), Some(BindingState::Offered));
        es[0].put_back(offered, x);
        let req = Req::new(MessageType::Request, 0)
            .mac(c2)
            .xid(0x9200)
            .sid(SID)
            .requested(offered);
        let ack = send_at(&mut es[0], T0, &req, &Standalone);
        assert_eq!(ack.msg(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), offered);
        // An address no worker knows (another worker's shard) gives nothing.
        assert_eq!(es[0].extract(ip("10.0.0.12")), None);
    }

    #[test]
    fn shard_take_moves_unleased_addresses_with_their_records() {
        let s = settings("10.0.0.10", "10.0.0.29");
        let mut es = engines(&s, 2);
        let before0 = es[0].shard_free(0);
        // A FREE record (as failover keeps them) travels with its address.
        let mut rec = Binding::empty(ip("10.0.0.10"), BindingState::Free);
        rec.cltt = 77;
        es[0].load_part(&[rec], T0);
        let items = es[0].shard_take(0, BindingState::Free, before0);
        assert_eq!(items.len() as u64, before0, "the whole shard");
        assert_eq!(es[0].shard_free(0), 0);
        let carried = items
            .iter()
            .find(|(a, _)| *a == rec.addr)
            .map(|(_, x)| x.record);
        assert_eq!(
            carried,
            Some(Some(rec)),
            "the record travels with its address"
        );
        for (a, _) in &items {
            assert_eq!(es[0].binding(*a), None, "{a} still known to the giver");
        }
        let before1 = es[1].shard_free(0);
        assert_eq!(es[1].shard_accept(0, items), before0);
        assert_eq!(es[1].shard_free(0), before1 + before0);
        assert_eq!(es[1].binding(rec.addr), Some(&rec));
        // Nothing is free in both shards.
        for n in 10..=29 {
            let a = ip(&format!("10.0.0.{n}"));
            assert!(
                !(es[0].extract(a).is_some_and(|x| x.pooled.is_some())
                    && es[1].extract(a).is_some_and(|x| x.pooled.is_some())),
                "{a} free twice"
            );
        }
        // An empty BACKUP pool gives nothing.
        assert!(es[0].shard_take(0, BindingState::Backup, 3).is_empty());
    }

    #[test]
    fn shard_of_agrees_with_the_initial_pools_also_with_policy_ranges() {
        let mut sc = scope("lan", "10.0.0.0", 24, "10.0.0.10", "10.0.0.49");
        sc.policies.push(crate::scope::Policy {
            name: "p".into(),
            order: 1,
            conditions: vec![],
            combine: crate::scope::Combine::All,
            ranges: vec![crate::scope::AddrRange::new(
                ip("10.0.0.40"),
                ip("10.0.0.47"),
            )],
            options: crate::scope::OptionSet::new(),
            lease_time: None,
        });
        let s = Arc::new(test_settings(vec![sc]));
        for n in [2usize, 3] {
            let mut es = engines(&s, n);
            for a in 10..=49u8 {
                let addr = ip(&format!("10.0.0.{a}"));
                // Which workers' initial pools hold it (extract, then put back unchanged).
                let free: Vec<usize> = (0..n)
                    .filter(|&k| match es[k].extract(addr) {
                        Some(x) => {
                            let pooled = x.pooled.is_some();
                            es[k].put_back(addr, x);
                            pooled
                        }
                        None => false,
                    })
                    .collect();
                assert_eq!(free, vec![shard_of(&s, addr, n)], "{addr} with {n} workers");
            }
        }
    }

    #[test]
    fn owners_follow_buckets_for_held_and_shards_for_the_rest() {
        let s = settings("10.0.0.10", "10.0.0.29");
        assert_eq!(shard_of(&s, ip("10.0.0.10"), 2), 0);
        assert_eq!(shard_of(&s, ip("10.0.0.19"), 2), 0);
        assert_eq!(shard_of(&s, ip("10.0.0.20"), 2), 1);
        assert_eq!(shard_of(&s, ip("10.0.0.29"), 2), 1);
        let mac = mac_for(1, 2, 3);
        let mut b = Binding::empty(ip("10.0.0.11"), BindingState::Active);
        b.client = ClientKey::from_hw(1, &mac);
        b.htype = 1;
        b.hlen = 6;
        b.chaddr[..6].copy_from_slice(&mac);
        assert_eq!(binding_bucket(&b), hash::client_bucket(None, &mac, 6));
        assert_eq!(owner_of(&s, &b, 2), 1);
        b.state = BindingState::Released;
        assert_eq!(owner_of(&s, &b, 2), 0);
        // Keyed by option 61: the identifier's bucket.
        b.state = BindingState::Active;
        b.client = ClientKey::new(b"\x00host-17");
        assert_eq!(binding_bucket(&b), hash::bucket(b"\x00host-17"));
    }

    /// A client whose option 61 is `01` + its MAC (udhcpc, Windows) has the key a client without
    /// option 61 gets from its chaddr, but its requests hash the 7 identifier bytes: the binding
    /// must live with the worker those requests reach, or a renewal finds no lease there.
    #[test]
    fn a_client_id_of_htype_and_mac_keeps_its_own_bucket() {
        let s = settings("10.0.0.10", "10.0.0.29");
        let mut es = engines(&s, 2);
        // A MAC whose chaddr bucket and `01`+MAC bucket belong to different workers.
        let mac = (0u32..)
            .map(|i| {
                let b = i.to_be_bytes();
                [2, 0x61, b[0], b[1], b[2], b[3]]
            })
            .find(|m| {
                let mut id = vec![1u8];
                id.extend_from_slice(m);
                hash::client_bucket(None, m, 6) % 2 != hash::bucket(&id) % 2
            })
            .expect("such a MAC exists");
        let mut id = vec![1u8];
        id.extend_from_slice(&mac);
        let w = usize::from(hash::bucket(&id)) % 2;
        let discover = Req::new(MessageType::Discover, 0).mac(mac).opt(61, &id);
        let offer = send_at(&mut es[w], T0, &discover, &Standalone);
        let req = Req::new(MessageType::Request, 0)
            .mac(mac)
            .opt(61, &id)
            .xid(0x9300)
            .sid(SID)
            .requested(offer.yiaddr());
        let ack = send_at(&mut es[w], T0, &req, &Standalone);
        assert_eq!(ack.msg(), Some(MessageType::Ack));
        let b = *es[w].binding(ack.yiaddr()).expect("leased");
        assert!(b.client_id);
        assert_eq!(b.client, ClientKey::from_hw(1, &mac), "the ambiguous key");
        assert_eq!(
            owner_of(&s, &b, 2),
            w,
            "the binding's owner is the requests' worker"
        );
        // Loaded again on two workers (a restart), it lands there too.
        let mut two = engines(&s, 2);
        for e in &mut two {
            e.load_part(&[b], T0);
        }
        assert!(two[w].binding(b.addr).is_some());
        assert!(two[1 - w].binding(b.addr).is_none());
    }
}
