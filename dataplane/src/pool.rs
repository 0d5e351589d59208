//! Address shards: the addresses of each scope one worker may allocate.
//!
//! Each scope range is cut into segments at the edges of the scope's policy ranges
//! ([`segments`]), each segment into `shards` contiguous slices, and worker `k` starts owning
//! slice `k` of every segment, so no two workers ever allocate the same address, allocation
//! needs no lock, and every policy's range is shared by all workers from the start (a client
//! matching a policy is served by the worker owning its bucket, whichever it is). A worker's pool keeps one bit per address of the whole range (1 = free *and* this
//! worker's to allocate), so addresses can move between workers: a worker that releases an
//! address it leased puts it in its own pool, wherever the address started, and shards
//! rebalance by moving free addresses from one pool to another ([`Pool::give`],
//! [`Pool::receive`]). The invariant is that an address is free in at most one worker's pool.
//! Memory: one bit per address per worker (a /8 with two workers: 4 MiB); ARCHITECTURE §3's
//! budget of one bit per free address holds for one worker.
//!
//! Allocation searches from a rotating cursor, so a just-freed address is not handed to the next
//! new client at once (clients coming back find their previous address still free more often).

use std::net::Ipv4Addr;

use crate::scope::{AddrRange, Scope};

/// One contiguous slice of a range, as a bitmap.
#[derive(Clone, Debug)]
struct Slice {
    start: u32,
    end: u32,
    words: Vec<u64>,
    free: u64,
    cursor: u32,
}

impl Slice {
    fn new(start: u32, end: u32) -> Slice {
        let n = u64::from(end - start) + 1;
        let nwords = n.div_ceil(64) as usize;
        let mut words = vec![u64::MAX; nwords];
        let tail = (n % 64) as u32;
        if tail != 0 {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << tail) - 1;
            }
        }
        Slice {
            start,
            end,
            words,
            free: n,
            cursor: 0,
        }
    }

    /// Clear every bit outside the offset intervals `keep` (each `lo..hi`, sorted, disjoint,
    /// inside the slice), and start the cursor at the first.
    fn keep_only(&mut self, keep: &[(u32, u32)]) {
        let mut words = vec![0u64; self.words.len()];
        let mut free = 0u64;
        for &(lo, hi) in keep {
            for off in lo..hi {
                words[(off / 64) as usize] |= 1 << (off % 64);
            }
            free += u64::from(hi.saturating_sub(lo));
        }
        self.words = words;
        self.free = free;
        self.cursor = keep.first().map_or(0, |k| k.0);
    }

    fn contains(&self, a: u32) -> bool {
        a >= self.start && a <= self.end
    }

    fn bit(&self, a: u32) -> (usize, u64) {
        let i = a - self.start;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn is_free(&self, a: u32) -> bool {
        let (w, m) = self.bit(a);
        self.words[w] & m != 0
    }

    fn take(&mut self, a: u32) -> bool {
        let (w, m) = self.bit(a);
        if self.words[w] & m != 0 {
            self.words[w] &= !m;
            self.free -= 1;
            true
        } else {
            false
        }
    }

    fn put(&mut self, a: u32) -> bool {
        let (w, m) = self.bit(a);
        if self.words[w] & m == 0 {
            self.words[w] |= m;
            self.free += 1;
            true
        } else {
            false
        }
    }

    /// First free address in `[lo, hi]` (absolute addresses, clamped to the slice).
    fn first_free(&self, lo: u32, hi: u32) -> Option<u32> {
        let lo = lo.max(self.start);
        let hi = hi.min(self.end);
        if lo > hi {
            return None;
        }
        let (mut i, last) = (lo - self.start, hi - self.start);
        while i <= last {
            let w = (i / 64) as usize;
            let bits = self.words[w] >> (i % 64);
            if bits != 0 {
                let found = i + bits.trailing_zeros();
                return (found <= last).then_some(self.start + found);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }
}

/// The segments of the range `s..=e` of `scope` that are shared out to the workers one by one:
/// the range cut at every edge of a policy range inside it, so each policy's addresses are
/// split between all workers. Sorted, disjoint, covering `s..=e`.
pub fn segments(scope: &Scope, s: u32, e: u32) -> Vec<(u32, u32)> {
    let mut cuts: Vec<u32> = scope
        .policies
        .iter()
        .flat_map(|p| p.ranges.iter())
        .flat_map(|r| {
            let (a, b) = (u32::from(r.start), u32::from(r.end));
            [Some(a), b.checked_add(1)]
        })
        .flatten()
        .filter(|&c| c > s && c <= e)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = s;
    for c in cuts {
        out.push((from, c - 1));
        from = c;
    }
    out.push((from, e));
    out
}

/// A worker's shard of one scope's ranges.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    slices: Vec<Slice>,
    /// Addresses this shard is accountable for (its initial slice, plus what it received, minus
    /// what it gave): summed over the workers, the scope's pool size.
    size: u64,
}

impl Pool {
    /// The shard `shard` of `shards` of the scope's ranges, all free except exclusions and
    /// reserved addresses.
    pub fn new(scope: &Scope, shard: usize, shards: usize) -> Pool {
        let shards = shards.max(1) as u64;
        let shard = shard as u64;
        let mut slices = Vec::new();
        let mut size = 0;
        for r in &scope.ranges {
            let (s, e) = (u32::from(r.start), u32::from(r.end));
            if e < s {
                continue;
            }
            // The whole range is in the bitmap; only this shard's slice of each segment starts
            // free.
            let mut slice = Slice::new(s, e);
            let mut keep = Vec::new();
            for (a, b) in segments(scope, s, e) {
                let n = u64::from(b - a) + 1;
                let lo = u64::from(a) + n * shard / shards;
                let hi = u64::from(a) + n * (shard + 1) / shards;
                // lo..hi lies inside s..=e, so the offsets fit in u32.
                keep.push(((lo - u64::from(s)) as u32, (hi - u64::from(s)) as u32));
                size += hi - lo;
            }
            if shards > 1 {
                slice.keep_only(&keep);
            }
            slices.push(slice);
        }
        let mut pool = Pool { slices, size };
        for x in &scope.exclusions {
            let (s, e) = (u32::from(x.start), u32::from(x.end));
            for a in s..=e {
                pool.take(Ipv4Addr::from(a));
            }
        }
        for r in &scope.reservations {
            pool.take(r.addr);
        }
        pool
    }

    /// Take up to `n` free addresses, spread evenly over the ranges (so every part of the pool
    /// and every policy's range shares in proportion), for another worker's [`Pool::receive`].
    /// The shard's size shrinks by the number given.
    pub fn give(&mut self, n: u64) -> Vec<Ipv4Addr> {
        let free = self.free();
        let n = n.min(free);
        let mut picked: Vec<u32> = Vec::with_capacity(n as usize);
        if n == 0 {
            return Vec::new();
        }
        let mut seen = 0u64;
        'slices: for s in &self.slices {
            let mut a = s.start;
            while let Some(f) = s.first_free(a, s.end) {
                seen += 1;
                // Pick when the share of picks so far falls behind n / free.
                if (picked.len() as u64) * free < seen * n {
                    picked.push(f);
                    if picked.len() as u64 == n {
                        break 'slices;
                    }
                }
                match f.checked_add(1) {
                    Some(next) if next <= s.end => a = next,
                    _ => break,
                }
            }
        }
        for &a in &picked {
            self.take(Ipv4Addr::from(a));
        }
        self.size -= picked.len() as u64;
        picked.into_iter().map(Ipv4Addr::from).collect()
    }

    /// Add addresses another worker gave ([`Pool::give`]) as free ones of this shard. Returns
    /// how many were added (addresses outside the ranges, or already free here, are not).
    pub fn receive(&mut self, addrs: &[Ipv4Addr]) -> u64 {
        let n = addrs.iter().filter(|&&a| self.put(a)).count() as u64;
        self.size += n;
        n
    }

    /// The same shard with no free address (the failover BACKUP pool starts this way and
    /// fills as the partner's transfers arrive).
    pub fn emptied(&self) -> Pool {
        let mut p = self.clone();
        for s in &mut p.slices {
            s.words.iter_mut().for_each(|w| *w = 0);
            s.free = 0;
            s.cursor = 0;
        }
        p
    }

    fn slice_of(&self, a: u32) -> Option<usize> {
        self.slices.iter().position(|s| s.contains(a))
    }

    /// True if `addr` is in the scope's ranges (any worker's shard).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.slice_of(u32::from(addr)).is_some()
    }

    /// True if `addr` is free in this shard.
    pub fn is_free(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        self.slice_of(a).is_some_and(|i| self.slices[i].is_free(a))
    }

    /// Mark `addr` as in use; false if it was not free here.
    pub fn take(&mut self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        match self.slice_of(a) {
            Some(i) => self.slices[i].take(a),
            None => false,
        }
    }

    /// Mark `addr` as free in this shard; false if it was already free (or is outside the
    /// ranges).
    pub fn put(&mut self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        match self.slice_of(a) {
            Some(i) => self.slices[i].put(a),
            None => false,
        }
    }

    /// Number of free addresses in the shard.
    pub fn free(&self) -> u64 {
        self.slices.iter().map(|s| s.free).sum()
    }

    /// Number of addresses this shard is accountable for (see the field); the sizes of all
    /// shards of a scope add up to its pool.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Take a free address inside `allowed` (every range if empty) and outside every range of
    /// `denied`, searching from each slice's rotating cursor. `None` if there is none.
    pub fn allocate(&mut self, allowed: &[AddrRange], denied: &[AddrRange]) -> Option<Ipv4Addr> {
        for i in 0..self.slices.len() {
            let s = &self.slices[i];
            if s.free == 0 {
                continue;
            }
            let cur = s.start + s.cursor.min(s.end - s.start);
            let found = self.search(i, cur, s.end, allowed, denied).or_else(|| {
                self.search(
                    i,
                    s.start,
                    cur.saturating_sub(1).max(s.start),
                    allowed,
                    denied,
                )
            });
            if let Some(a) = found {
                let s = &mut self.slices[i];
                s.take(a);
                s.cursor = if a >= s.end { 0 } else { a + 1 - s.start };
                return Some(Ipv4Addr::from(a));
            }
        }
        None
    }

    fn search(
        &self,
        i: usize,
        lo: u32,
        hi: u32,
        allowed: &[AddrRange],
        denied: &[AddrRange],
    ) -> Option<u32> {
        if allowed.is_empty() {
            return self.search_denied(i, lo, hi, denied);
        }
        allowed.iter().find_map(|r| {
            let (l, h) = (lo.max(u32::from(r.start)), hi.min(u32::from(r.end)));
            if l > h {
                None
            } else {
                self.search_denied(i, l, h, denied)
            }
        })
    }

    fn search_denied(&self, i: usize, mut lo: u32, hi: u32, denied: &[AddrRange]) -> Option<u32> {
        let s = &self.slices[i];
        while lo <= hi {
            let a = s.first_free(lo, hi)?;
            match denied.iter().find(|d| d.contains(Ipv4Addr::from(a))) {
                None => return Some(a),
                Some(d) => {
                    let next = u32::from(d.end).checked_add(1)?;
                    lo = next;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{OptionSet, Reservation, ReservationKey, Subnet};
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn scope(ranges: &[(&str, &str)]) -> Scope {
        Scope {
            name: "t".into(),
            subnet: Subnet {
                network: ip("10.0.0.0"),
                prefix: 16,
            },
            ranges: ranges
                .iter()
                .map(|(a, b)| AddrRange::new(ip(a), ip(b)))
                .collect(),
            exclusions: vec![],
            reservations: vec![],
            lease_time: 3600,
            renew_time: None,
            rebind_time: None,
            options: OptionSet::new(),
            policies: vec![],
            authoritative: true,
            ddns: None,
        }
    }

    #[test]
    fn every_policy_range_is_shared_by_every_shard() {
        // .100-.199 with a policy range .180-.199 (inside one contiguous half on its own).
        let mut s = scope(&[("10.0.0.100", "10.0.0.199")]);
        s.policies.push(crate::scope::Policy {
            name: "phones".into(),
            order: 1,
            conditions: vec![],
            combine: crate::scope::Combine::All,
            ranges: vec![AddrRange::new(ip("10.0.0.180"), ip("10.0.0.199"))],
            options: OptionSet::new(),
            lease_time: None,
        });
        let (lo, hi) = (u32::from(ip("10.0.0.100")), u32::from(ip("10.0.0.199")));
        assert_eq!(
            segments(&s, lo, hi),
            vec![
                (lo, u32::from(ip("10.0.0.179"))),
                (u32::from(ip("10.0.0.180")), hi)
            ]
        );
        let pools: Vec<Pool> = (0..2).map(|k| Pool::new(&s, k, 2)).collect();
        for p in &pools {
            let phones = (180..=199)
                .filter(|n| p.is_free(ip(&format!("10.0.0.{n}"))))
                .count();
            assert_eq!(phones, 10, "each shard holds half of the policy's range");
            assert_eq!(p.size(), 50);
        }
        // Every address is free in exactly one shard.
        for n in 100..=199 {
            let a = ip(&format!("10.0.0.{n}"));
            assert_eq!(pools.iter().filter(|p| p.is_free(a)).count(), 1, "{a}");
        }
    }

    #[test]
    fn exclusions_and_reservations_are_never_allocated() {
        let mut s = scope(&[("10.0.0.10", "10.0.0.20")]);
        s.exclusions
            .push(AddrRange::new(ip("10.0.0.12"), ip("10.0.0.14")));
        s.reservations.push(Reservation {
            key: ReservationKey::Mac([1, 2, 3, 4, 5, 6]),
            addr: ip("10.0.0.16"),
            hostname: None,
            options: OptionSet::new(),
        });
        let mut p = Pool::new(&s, 0, 1);
        assert_eq!(p.size(), 11);
        assert_eq!(p.free(), 7);
        let mut got = vec![];
        while let Some(a) = p.allocate(&[], &[]) {
            got.push(a);
        }
        got.sort();
        let want: Vec<_> = [
            "10.0.0.10",
            "10.0.0.11",
            "10.0.0.15",
            "10.0.0.17",
            "10.0.0.18",
            "10.0.0.19",
            "10.0.0.20",
        ]
        .iter()
        .map(|s| ip(s))
        .collect();
        assert_eq!(got, want);
        assert_eq!(p.free(), 0);
    }

    #[test]
    fn allowed_and_denied_ranges() {
        let s = scope(&[("10.0.0.1", "10.0.0.100")]);
        let mut p = Pool::new(&s, 0, 1);
        let policy = AddrRange::new(ip("10.0.0.50"), ip("10.0.0.59"));
        for _ in 0..10 {
            let a = p.allocate(&[policy], &[]).unwrap();
            assert!(policy.contains(a));
        }
        assert_eq!(p.allocate(&[policy], &[]), None);
        for _ in 0..90 {
            let a = p.allocate(&[], &[policy]).unwrap();
            assert!(!policy.contains(a));
        }
        assert_eq!(p.allocate(&[], &[]), None);
        assert!(p.put(ip("10.0.0.55")));
        assert!(!p.put(ip("10.0.0.55")));
        assert_eq!(p.allocate(&[], &[policy]), None);
        assert_eq!(p.allocate(&[], &[]), Some(ip("10.0.0.55")));
    }

    #[test]
    fn cursor_rotates_before_reusing() {
        let s = scope(&[("10.0.0.1", "10.0.0.4")]);
        let mut p = Pool::new(&s, 0, 1);
        let a = p.allocate(&[], &[]).unwrap();
        p.put(a);
        let b = p.allocate(&[], &[]).unwrap();
        assert_ne!(a, b, "a released address is not the next one handed out");
    }

    #[test]
    fn a_shard_gives_spread_addresses_and_another_receives_them() {
        let s = scope(&[("10.0.0.0", "10.0.0.99"), ("10.0.1.0", "10.0.1.99")]);
        let mut a = Pool::new(&s, 0, 2);
        let mut b = Pool::new(&s, 1, 2);
        assert_eq!(
            (a.size(), b.size(), a.free(), b.free()),
            (100, 100, 100, 100)
        );
        // Worker 0 starts with the first half of each range only.
        assert!(a.is_free(ip("10.0.0.0")) && !a.is_free(ip("10.0.0.50")));
        assert!(b.is_free(ip("10.0.0.50")) && !b.is_free(ip("10.0.0.49")));
        let moved = b.give(40);
        assert_eq!(moved.len(), 40);
        // Spread: both ranges contribute in proportion.
        let in_first = moved.iter().filter(|m| m.octets()[2] == 0).count();
        assert_eq!(in_first, 20, "{moved:?}");
        for m in &moved {
            assert!(!b.is_free(*m));
        }
        assert_eq!(a.receive(&moved), 40);
        assert_eq!((a.size(), b.size(), a.free(), b.free()), (140, 60, 140, 60));
        // An address is free in at most one pool, and every address is free somewhere.
        let mut seen = std::collections::HashSet::new();
        for p in [&mut a, &mut b] {
            while let Some(x) = p.allocate(&[], &[]) {
                assert!(seen.insert(x), "{x} free in two shards");
            }
        }
        assert_eq!(seen.len(), 200);
        // A released address goes to the pool of the worker that releases it, wherever it
        // started.
        assert!(a.put(ip("10.0.1.99")));
        assert_eq!(
            a.receive(&[ip("10.0.1.99"), ip("10.9.9.9")]),
            0,
            "already free, or outside"
        );
        assert!(b.give(5).is_empty(), "nothing free to give");
    }

    proptest! {
        #[test]
        fn shards_partition_the_ranges(
            start in 0u32..1000, len in 1u32..300, len2 in 1u32..50, shards in 1usize..8,
        ) {
            let a = u32::from(ip("10.0.0.0")) + start;
            let b = a + 400;
            let s = scope(&[
                (&Ipv4Addr::from(a).to_string(), &Ipv4Addr::from(a + len - 1).to_string()),
                (&Ipv4Addr::from(b).to_string(), &Ipv4Addr::from(b + len2 - 1).to_string()),
            ]);
            let mut pools: Vec<Pool> = (0..shards).map(|k| Pool::new(&s, k, shards)).collect();
            let total: u64 = pools.iter().map(|p| p.size()).sum();
            prop_assert_eq!(total, u64::from(len + len2));
            let mut seen = std::collections::HashSet::new();
            for p in pools.iter_mut() {
                let size = p.size();
                let mut n = 0;
                while let Some(x) = p.allocate(&[], &[]) {
                    prop_assert!(seen.insert(x), "address in two shards");
                    n += 1;
                    prop_assert_eq!(p.free() + n, size);
                }
            }
            prop_assert_eq!(seen.len() as u64, total);
        }

        #[test]
        fn free_plus_taken_is_size(ops in proptest::collection::vec((0u32..64, proptest::bool::ANY), 0..200)) {
            let s = scope(&[("10.0.0.0", "10.0.0.63")]);
            let mut p = Pool::new(&s, 0, 1);
            let mut taken = std::collections::HashSet::new();
            for (off, take) in ops {
                let a = Ipv4Addr::from(u32::from(ip("10.0.0.0")) + off);
                if take {
                    prop_assert_eq!(p.take(a), taken.insert(a));
                } else {
                    prop_assert_eq!(p.put(a), taken.remove(&a));
                }
                prop_assert_eq!(p.free() + taken.len() as u64, p.size());
            }
        }
    }
}
