//! Single-producer single-consumer rings shared with the kernel, as AF_XDP lays them out: a
//! producer index, a consumer index, a flags word and a power-of-two array of descriptors.
//!
//! Indices are free-running `u32`s: they only ever grow (wrapping at `u32::MAX`), the slot of
//! index `i` is `i & (size - 1)`, and the number of entries in flight is `producer - consumer`
//! in wrapping arithmetic. Because the size is a power of two it divides 2^32, so the slot
//! mapping stays continuous across the wrap.
//!
//! Memory ordering (the kernel's `xsk_queue.h` contract): the side that reads the other side's
//! index loads it with `Acquire` (so the descriptors it then reads, or the slots it then
//! overwrites, are ordered after the other side's writes or reads of them), and the side that
//! publishes its own index stores it with `Release` (so its descriptor writes or reads are
//! complete before the other side sees the new index).
//!
//! [`RawRing`] only holds pointers; it works the same over a kernel mapping and over plain memory,
//! which is how the unit tests below (and miri) exercise the index arithmetic: a
//! [`ProducerRing`] and a [`ConsumerRing`] over the same heap buffer play both sides.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Pointers to one ring's shared words and descriptor array.
#[derive(Debug)]
pub(crate) struct RawRing<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    desc: NonNull<T>,
    mask: u32,
}

// SAFETY: a RawRing is only pointers into memory that stays mapped while the ring exists (the
// contract of `RawRing::new`); nothing about it is tied to the creating thread, and the owning
// ProducerRing/ConsumerRing methods take `&mut self`, so one thread at a time drives this side.
unsafe impl<T: Send> Send for RawRing<T> {}

impl<T: Copy> RawRing<T> {
    /// A ring over the given words and `size` descriptors.
    ///
    /// # Safety
    ///
    /// - `producer`, `consumer` and `flags` point to properly aligned `u32`s, and `desc` to
    ///   `size` properly aligned `T`s, that stay valid for reads and writes for as long as the
    ///   returned ring (and anything built from it) exists;
    /// - the memory is only accessed by this ring, by at most one ring of the opposite role
    ///   (the kernel, or a test's stand-in) following the SPSC protocol, and through atomics
    ///   for the three words;
    /// - `size` is a power of two.
    pub(crate) unsafe fn new(
        producer: NonNull<u32>,
        consumer: NonNull<u32>,
        flags: NonNull<u32>,
        desc: NonNull<T>,
        size: u32,
    ) -> RawRing<T> {
        debug_assert!(size.is_power_of_two(), "ring size must be a power of two");
        RawRing {
            producer: producer.cast(),
            consumer: consumer.cast(),
            flags: flags.cast(),
            desc,
            mask: size.wrapping_sub(1),
        }
    }

    fn size(&self) -> u32 {
        self.mask.wrapping_add(1)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: `new`'s contract: the word is aligned, valid while `self` lives, and only
        // accessed atomically; AtomicU32 has the layout of u32.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref() }
    }

    /// Reads the descriptor at index `idx`.
    ///
    /// # Safety
    ///
    /// The calling side owns slot `idx & mask`: for a consumer, the other side published `idx`
    /// (an `Acquire` load of its producer index is above `idx`) and this side has not released
    /// it; for a producer, the slot is not in flight.
    unsafe fn read(&self, idx: u32) -> T {
        // SAFETY: `idx & mask < size`, so the pointer stays inside the `size`-element array of
        // `new`'s contract; the caller owns the slot, so no write races with this read.
        unsafe { self.desc.as_ptr().add((idx & self.mask) as usize).read() }
    }

    /// Writes the descriptor at index `idx`.
    ///
    /// # Safety
    ///
    /// The calling producer owns slot `idx & mask`: it lies between the consumer index last
    /// loaded with `Acquire` plus the ring size and the producer index not yet published.
    unsafe fn write(&self, idx: u32, v: T) {
        // SAFETY: in bounds as in `read`; the caller owns the slot, so the other side neither
        // reads nor writes it until the producer index is published with `Release`.
        unsafe { self.desc.as_ptr().add((idx & self.mask) as usize).write(v) }
    }
}

/// The producing side of a ring (fill and TX rings: user space produces, the kernel consumes).
#[derive(Debug)]
pub(crate) struct ProducerRing<T> {
    raw: RawRing<T>,
    /// Our producer index: everything below is published.
    cached_prod: u32,
    /// The consumer index last loaded, plus the ring size: the first index we may not write.
    cached_cons: u32,
}

impl<T: Copy> ProducerRing<T> {
    /// The producer side of `raw`, starting from the indices currently in the ring.
    pub(crate) fn new(raw: RawRing<T>) -> ProducerRing<T> {
        let cached_prod = raw.producer().load(Ordering::Relaxed);
        let cached_cons = raw
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(raw.size());
        ProducerRing {
            raw,
            cached_prod,
            cached_cons,
        }
    }

    /// Free slots for up to `want` entries: re-reads the consumer index only when the cached
    /// view shows fewer than `want` free.
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return want;
        }
        self.cached_cons = self
            .raw
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.raw.size());
        self.cached_cons.wrapping_sub(self.cached_prod).min(want)
    }

    /// Reserves up to `want` slots. Nothing is visible to the consumer until
    /// [`WriteBatch::commit`] (or the batch's drop) publishes the entries pushed into it.
    pub(crate) fn reserve(&mut self, want: u32) -> WriteBatch<'_, T> {
        let cap = self.free(want);
        WriteBatch {
            start: self.cached_prod,
            cap,
            written: 0,
            ring: self,
        }
    }

    /// Entries published but not yet taken by the consumer (loads its index).
    pub(crate) fn pending(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }

    /// True if the consumer asked to be woken up (`XDP_RING_NEED_WAKEUP`).
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.raw.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Ring capacity.
    pub(crate) fn size(&self) -> u32 {
        self.raw.size()
    }

    fn publish(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.raw
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }
}

/// Slots reserved on a [`ProducerRing`]; entries are pushed in order and published together.
#[derive(Debug)]
pub(crate) struct WriteBatch<'r, T: Copy> {
    ring: &'r mut ProducerRing<T>,
    start: u32,
    cap: u32,
    written: u32,
}

impl<T: Copy> WriteBatch<'_, T> {
    /// Slots left in this batch.
    pub(crate) fn remaining(&self) -> u32 {
        self.cap - self.written
    }

    /// Writes `v` into the next reserved slot; false (nothing written) if the batch is full.
    pub(crate) fn push(&mut self, v: T) -> bool {
        if self.written == self.cap {
            return false;
        }
        let idx = self.start.wrapping_add(self.written);
        // SAFETY: `idx` lies in [cached_prod, cached_prod + cap) and cap <= cached_cons -
        // cached_prod, where cached_cons came from an Acquire load of the consumer index plus
        // the size: the consumer has finished with this slot and will not look at it before
        // the Release store in `publish`.
        unsafe { self.ring.raw.write(idx, v) };
        self.written += 1;
        true
    }

    /// Publishes the pushed entries (one `Release` store of the producer index).
    pub(crate) fn commit(self) {
        // Drop publishes.
    }
}

impl<T: Copy> Drop for WriteBatch<'_, T> {
    fn drop(&mut self) {
        self.ring.publish(self.written);
    }
}

/// The consuming side of a ring (RX and completion rings: the kernel produces).
#[derive(Debug)]
pub(crate) struct ConsumerRing<T> {
    raw: RawRing<T>,
    /// Our consumer index: everything below is released.
    cached_cons: u32,
    /// The producer index last loaded.
    cached_prod: u32,
}

impl<T: Copy> ConsumerRing<T> {
    /// The consumer side of `raw`, starting from the indices currently in the ring.
    pub(crate) fn new(raw: RawRing<T>) -> ConsumerRing<T> {
        let cached_cons = raw.consumer().load(Ordering::Relaxed);
        let cached_prod = raw.producer().load(Ordering::Acquire);
        ConsumerRing {
            raw,
            cached_cons,
            cached_prod,
        }
    }

    /// Entries ready, up to `want`: re-reads the producer index only when the cached view shows
    /// fewer than `want`.
    pub(crate) fn available(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail >= want {
            return want;
        }
        self.cached_prod = self.raw.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons).min(want)
    }

    /// Up to `want` published entries, to be read in order; those read are released together
    /// by [`ReadBatch::release`] (or the batch's drop).
    pub(crate) fn peek(&mut self, want: u32) -> ReadBatch<'_, T> {
        let len = self.available(want);
        ReadBatch {
            start: self.cached_cons,
            len,
            read: 0,
            ring: self,
        }
    }

    /// Ring capacity.
    pub(crate) fn size(&self) -> u32 {
        self.raw.size()
    }

    fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.raw
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}

/// Entries peeked from a [`ConsumerRing`]; the ones read are released together.
#[derive(Debug)]
pub(crate) struct ReadBatch<'r, T: Copy> {
    ring: &'r mut ConsumerRing<T>,
    start: u32,
    len: u32,
    read: u32,
}

impl<T: Copy> ReadBatch<'_, T> {
    /// Entries in the batch not read yet.
    pub(crate) fn remaining(&self) -> u32 {
        self.len - self.read
    }

    /// Releases the entries read so far (one `Release` store of the consumer index); unread
    /// entries stay in the ring for the next peek.
    pub(crate) fn release(self) {
        // Drop releases.
    }
}

impl<T: Copy> Iterator for ReadBatch<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.read == self.len {
            return None;
        }
        let idx = self.start.wrapping_add(self.read);
        // SAFETY: `idx` lies in [cached_cons, cached_prod), where cached_prod came from an
        // Acquire load of the producer index: the producer wrote the slot before that index was
        // published, and will not write it again before our Release store of the consumer index.
        let v = unsafe { self.ring.raw.read(idx) };
        self.read += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining() as usize;
        (n, Some(n))
    }
}

impl<T: Copy> Drop for ReadBatch<'_, T> {
    fn drop(&mut self) {
        self.ring.release(self.read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring in plain heap memory: three words and `size` descriptors, allocated once so both
    /// rings (and `word`) use pointers derived from the same allocation.
    struct Mem {
        words: NonNull<u32>,
        desc: NonNull<u64>,
        size: u32,
    }

    impl Mem {
        /// A ring of `size` slots whose producer and consumer indices both start at `start`.
        fn new(size: u32, start: u32) -> Mem {
            let words = Box::into_raw(Box::new([start, start, 0u32]));
            let desc = Box::into_raw(vec![0u64; size as usize].into_boxed_slice());
            Mem {
                words: NonNull::new(words.cast()).expect("box pointer"),
                desc: NonNull::new(desc.cast()).expect("box pointer"),
                size,
            }
        }

        fn raw(&self) -> RawRing<u64> {
            let w = self.words.as_ptr();
            // SAFETY: the three words and `size` descriptors are aligned heap allocations that
            // live until `Mem` drops, which each test does after its rings; they are only
            // accessed through the rings and `word` (atomically); test sizes are powers of two.
            unsafe {
                RawRing::new(
                    self.words,
                    NonNull::new(w.add(1)).expect("in the allocation"),
                    NonNull::new(w.add(2)).expect("in the allocation"),
                    self.desc,
                    self.size,
                )
            }
        }

        fn pair(&self) -> (ProducerRing<u64>, ConsumerRing<u64>) {
            (ProducerRing::new(self.raw()), ConsumerRing::new(self.raw()))
        }

        /// Word `i` (0 producer, 1 consumer, 2 flags), read atomically.
        fn word(&self, i: usize) -> u32 {
            assert!(i < 3);
            // SAFETY: `i < 3` keeps the pointer inside the three-word allocation, which is
            // aligned for u32 (so for AtomicU32) and only ever accessed atomically while shared.
            unsafe { AtomicU32::from_ptr(self.words.as_ptr().add(i)) }.load(Ordering::Acquire)
        }
    }

    impl Drop for Mem {
        fn drop(&mut self) {
            // SAFETY: both pointers came from Box::into_raw in `new` with these exact types and
            // lengths, and are freed exactly once, here.
            unsafe {
                drop(Box::from_raw(self.words.as_ptr().cast::<[u32; 3]>()));
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.desc.as_ptr(),
                    self.size as usize,
                )));
            }
        }
    }

    fn produce(p: &mut ProducerRing<u64>, vals: impl IntoIterator<Item = u64>, want: u32) -> u32 {
        let mut b = p.reserve(want);
        let mut n = 0;
        for v in vals {
            if !b.push(v) {
                break;
            }
            n += 1;
        }
        b.commit();
        n
    }

    #[test]
    fn empty_ring_has_nothing_to_read_and_all_slots_free() {
        let m = Mem::new(8, 0);
        let (mut p, mut c) = m.pair();
        assert_eq!(c.available(8), 0);
        assert_eq!(c.peek(4).count(), 0);
        assert_eq!(p.free(100), 8);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn full_ring_refuses_more_until_the_consumer_releases() {
        let m = Mem::new(4, 0);
        let (mut p, mut c) = m.pair();
        assert_eq!(produce(&mut p, 10..20, 10), 4);
        assert_eq!(p.free(1), 0);
        assert_eq!(produce(&mut p, [99], 1), 0);
        assert_eq!(p.pending(), 4);
        // Read two, release them: exactly two slots come back.
        let got: Vec<u64> = c.peek(2).collect();
        assert_eq!(got, [10, 11]);
        assert_eq!(p.free(4), 2);
        assert_eq!(produce(&mut p, [20, 21, 22], 3), 2);
        let got: Vec<u64> = c.peek(10).collect();
        assert_eq!(got, [12, 13, 20, 21]);
        assert_eq!(c.available(1), 0);
    }

    #[test]
    fn indices_wrap_at_u32_max() {
        let start = u32::MAX - 5;
        let m = Mem::new(8, start);
        let (mut p, mut c) = m.pair();
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        // 40 rounds of uneven batches cross the wrap several times over (in index space the
        // wrap comes after 6 entries; in slot space every 8).
        for round in 0..40u32 {
            let want = round % 7 + 1;
            let n = produce(&mut p, next_in.., want);
            next_in += u64::from(n);
            let take = round % 5 + 1;
            let mut b = c.peek(take);
            for v in b.by_ref() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
            b.release();
        }
        for v in c.peek(8) {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_in, next_out);
        assert!(next_in > 40);
        // Both indices went past u32::MAX and agree.
        let prod = m.word(0);
        let cons = m.word(1);
        assert_eq!(prod, cons);
        assert_eq!(prod, start.wrapping_add(next_in as u32));
        assert!(prod < start);
    }

    #[test]
    fn full_and_empty_are_told_apart_across_the_wrap() {
        // Producer index u32::MAX - 1, consumer index u32::MAX - 1: empty; fill it completely
        // so the producer index wraps to 2: full, not empty.
        let m = Mem::new(4, u32::MAX - 1);
        let (mut p, mut c) = m.pair();
        assert_eq!(produce(&mut p, 0..4, 4), 4);
        assert_eq!(m.word(0), 2);
        assert_eq!(p.free(1), 0);
        assert_eq!(c.available(8), 4);
        assert_eq!(c.peek(8).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(c.available(8), 0);
        assert_eq!(p.free(8), 4);
    }

    #[test]
    fn partial_batches_publish_only_what_was_written() {
        let m = Mem::new(8, 0);
        let (mut p, mut c) = m.pair();
        {
            let mut b = p.reserve(6);
            assert_eq!(b.remaining(), 6);
            assert!(b.push(1));
            assert!(b.push(2));
            assert_eq!(b.remaining(), 4);
            // Dropped without commit: the two written entries are published, no more.
        }
        assert_eq!(p.pending(), 2);
        let mut b = c.peek(8);
        assert_eq!(b.remaining(), 2);
        assert_eq!(b.next(), Some(1));
        b.release(); // Only the one read is released.
        assert_eq!(p.pending(), 1);
        assert_eq!(c.peek(8).collect::<Vec<_>>(), [2]);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn reserve_with_an_empty_batch_publishes_nothing() {
        let m = Mem::new(8, 7);
        let (mut p, mut c) = m.pair();
        p.reserve(3).commit();
        assert_eq!(m.word(0), 7);
        assert_eq!(c.available(1), 0);
        // A consumer peek that reads nothing releases nothing.
        produce(&mut p, [5], 1);
        c.peek(1).release();
        assert_eq!(p.pending(), 1);
    }

    #[test]
    fn cached_views_refresh_only_when_short() {
        let m = Mem::new(8, 0);
        let (mut p, mut c) = m.pair();
        produce(&mut p, 0..3, 3);
        // The consumer's first look loads the producer index.
        assert_eq!(c.available(2), 2);
        produce(&mut p, 3..5, 2);
        // Two are still cached as available: the cache answers without a reload.
        assert_eq!(c.available(2), 2);
        assert_eq!(c.cached_prod, 3);
        // Asking for more reloads and sees all five.
        assert_eq!(c.available(8), 5);
        assert_eq!(c.cached_prod, 5);
    }

    #[test]
    fn need_wakeup_flag_is_read_from_the_flags_word() {
        let m = Mem::new(2, 0);
        let raw = m.raw();
        let p = ProducerRing::new(raw);
        assert!(!p.needs_wakeup());
        p.raw
            .flags()
            .store(libc::XDP_RING_NEED_WAKEUP, Ordering::Relaxed);
        assert!(p.needs_wakeup());
        assert_eq!(p.size(), 2);
    }
}
