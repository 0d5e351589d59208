//! The RFC 3074 load-balancing hash and the failover hash-bucket bitmap.
//!
//! Every DHCP client falls into one of 256 buckets ([`bucket`]), computed from its hash key
//! ([`hash_key`]: the client identifier if the client sent one, else its hardware address). A
//! failover pair splits the buckets with a [`BucketMap`]: the 256-bit hash-bucket assignment (HBA)
//! that the primary sends in CONNECT. The primary answers the clients whose bucket is in the map,
//! the secondary answers the rest.
//!
//! The hash is the one ISC dhcpd and Kea use (a Pearson hash over a fixed permutation, walking the
//! key from its last byte to its first), so a Tandem server and an ISC partner agree on every
//! client's bucket. The bitmap layout is ISC's: bucket `b` is bit `b & 7` (least significant bit
//! first) of byte `b >> 3`.
//!
//! Pure code: no allocation, no I/O, no panics on any input.

use std::fmt;

/// The mixing table of RFC 3074 §6: a fixed permutation of `0..=255`.
///
/// Identical in ISC dhcpd and Kea; the unit tests check that it is a permutation and that it
/// reproduces the team's test vectors.
const MIX: [u8; 256] = [
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232, //
    31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223, //
    59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65, //
    180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16, //
    40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67, //
    207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5, //
    20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245, //
    230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105, //
    39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84, //
    82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239, //
    195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253, //
    137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238, //
    56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50, //
    33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213, //
    96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4, //
    216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151, //
];

/// Number of hash buckets.
pub const BUCKETS: usize = 256;

/// The RFC 3074 bucket (0..=255) of a client hash key.
///
/// The hash starts from the key length (mod 256) and folds the key in one byte at a time, from
/// the last byte to the first, through the mixing table. The empty key lands in bucket 0.
pub fn bucket(key: &[u8]) -> u8 {
    // Truncation is the algorithm: the seed is the length modulo 256.
    let mut h = key.len() as u8;
    for &b in key.iter().rev() {
        h = MIX[usize::from(h ^ b)];
    }
    h
}

/// The key a request is hashed on (RFC 3074 §5, as ISC dhcpd and Kea choose it).
///
/// - `client_id`: the full value of DHCP option 61 (type byte included) if the request carries
///   the option. A present option is used even if it is empty (ISC does the same; an empty
///   option 61 is malformed anyway and hashes to bucket 0).
/// - `chaddr`: the request's `chaddr` field (usually 16 bytes) and `hlen` its hardware address
///   length; the key is `chaddr[..hlen]`, without the hardware type. An `hlen` beyond the field is
///   clamped to the field.
///
/// Note: a hardware address stored with its type byte first (as the failover
/// client-hardware-address option carries it) must have that byte removed before hashing; see
/// [`hash_key_from_hw`].
pub fn hash_key<'a>(client_id: Option<&'a [u8]>, chaddr: &'a [u8], hlen: u8) -> &'a [u8] {
    match client_id {
        Some(id) => id,
        None => {
            let n = usize::from(hlen).min(chaddr.len());
            &chaddr[..n]
        }
    }
}

/// The key for a binding known by its stored identity: option 61 if known, else a hardware
/// address given as `htype` followed by the address bytes (the failover wire layout).
///
/// The type byte is dropped before hashing, so this agrees with [`hash_key`] on the original
/// request. An empty `hw` gives the empty key.
pub fn hash_key_from_hw<'a>(client_id: Option<&'a [u8]>, hw: &'a [u8]) -> &'a [u8] {
    match client_id {
        Some(id) => id,
        None => hw.get(1..).unwrap_or(&[]),
    }
}

/// The bucket of a request: [`bucket`] of [`hash_key`].
pub fn client_bucket(client_id: Option<&[u8]>, chaddr: &[u8], hlen: u8) -> u8 {
    bucket(hash_key(client_id, chaddr, hlen))
}

/// A set of hash buckets: the 256-bit hash-bucket assignment (HBA) of the failover protocol.
///
/// Bucket `b` is bit `b & 7` (counting from the least significant bit) of byte `b >> 3`, which is
/// the byte layout of the hash-bucket-assignment option (code 11) and of ISC's `hba` statement.
/// In a failover pair the map names the buckets the **primary** serves; the secondary serves the
/// [`complement`](BucketMap::complement).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct BucketMap([u8; 32]);

impl BucketMap {
    /// No bucket.
    pub const EMPTY: BucketMap = BucketMap([0; 32]);
    /// Every bucket.
    pub const FULL: BucketMap = BucketMap([0xff; 32]);

    /// The map from its 32 wire bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> BucketMap {
        BucketMap(bytes)
    }

    /// The map from a wire slice; `None` unless it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<BucketMap> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(BucketMap(arr))
    }

    /// The 32 wire bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Buckets `0..n` (ISC's `split n`); `n` above 256 is treated as 256.
    ///
    /// `from_split(128)` is 16 bytes of `ff` then 16 bytes of `00`; `from_split(179)` is 22 bytes
    /// of `ff`, one `07`, then `00`s.
    pub fn from_split(n: u16) -> BucketMap {
        let n = usize::from(n).min(BUCKETS);
        let mut bytes = [0u8; 32];
        let full = n / 8;
        for b in bytes.iter_mut().take(full) {
            *b = 0xff;
        }
        let rest = n % 8;
        if rest != 0 {
            // full < 32 here, because n < 256 whenever rest != 0.
            bytes[full] = (1u8 << rest) - 1;
        }
        BucketMap(bytes)
    }

    /// The buckets the **primary** serves when it answers `pct` percent of the clients
    /// (a Windows-style load-balance percentage, 0..=100; larger values are treated as 100).
    ///
    /// Rule: the primary gets buckets `0..n` with `n = round(256 × pct / 100)`, i.e. ISC's
    /// `split n`. The secondary gets the [`complement`](BucketMap::complement). The rounding
    /// never has a tie (256 × pct is never ≡ 50 mod 100), so it is exact integer arithmetic:
    /// `n = (256 × pct + 50) / 100`. Examples: 0 → 0 buckets, 50 → 128 (`split 128`),
    /// 70 → 179 (`split 179`), 100 → 256. Contiguous low buckets keep the map equal to the one an
    /// ISC primary configured with the same `split` would send.
    pub fn from_percent(pct: u8) -> BucketMap {
        let pct = u16::from(pct.min(100));
        BucketMap::from_split((256 * pct + 50) / 100)
    }

    /// Whether `bucket` is in the map.
    pub const fn contains(&self, bucket: u8) -> bool {
        self.0[(bucket >> 3) as usize] & (1 << (bucket & 7)) != 0
    }

    /// Add `bucket` to the map.
    pub fn insert(&mut self, bucket: u8) {
        self.0[usize::from(bucket >> 3)] |= 1 << (bucket & 7);
    }

    /// Remove `bucket` from the map.
    pub fn remove(&mut self, bucket: u8) {
        self.0[usize::from(bucket >> 3)] &= !(1 << (bucket & 7));
    }

    /// Every bucket not in this map (the partner's share).
    pub fn complement(&self) -> BucketMap {
        let mut out = [0u8; 32];
        for (o, b) in out.iter_mut().zip(self.0.iter()) {
            *o = !b;
        }
        BucketMap(out)
    }

    /// Number of buckets in the map (0..=256).
    pub fn count(&self) -> u16 {
        self.0.iter().map(|b| b.count_ones() as u16).sum()
    }

    /// The buckets in the map, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(move |&b| self.contains(b))
    }
}

impl fmt::Debug for BucketMap {
    /// Colon-separated hex, the syntax of ISC's `hba` statement.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BucketMap(")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of the digest's §3.5 table: key, hash, (byte, bit) in the HBA, served by the
    /// primary under `split 128`, and the Kea two-server choice (true = server1 = even hash).
    type Vector = (&'static [u8], u8, (usize, u8), bool, bool);

    /// The digest's §3.5 vectors.
    const VECTORS: &[Vector] = &[
        (&[], 0, (0, 0), true, true),
        (
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            254,
            (31, 6),
            false,
            true,
        ),
        (
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            79,
            (9, 7),
            true,
            false,
        ),
        (
            &[0x00, 0x11, 0x22, 0x33, 0x44, 0x55],
            135,
            (16, 7),
            false,
            false,
        ),
        (
            &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06],
            179,
            (22, 3),
            false,
            false,
        ),
        (
            &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
            57,
            (7, 1),
            true,
            false,
        ),
        (
            &[0x08, 0x00, 0x27, 0x12, 0x34, 0x56],
            52,
            (6, 4),
            true,
            true,
        ),
        (
            &[0x52, 0x54, 0x00, 0xab, 0xcd, 0xef],
            1,
            (0, 1),
            true,
            false,
        ),
        (
            &[0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55],
            223,
            (27, 7),
            false,
            false,
        ),
        (
            &[0x01, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
            102,
            (12, 6),
            true,
            true,
        ),
        (&[0x0e], 232, (29, 0), false, true),
    ];

    #[test]
    fn mix_table_is_a_permutation() {
        let mut seen = [false; 256];
        for &v in MIX.iter() {
            assert!(!seen[usize::from(v)], "value {v} appears twice");
            seen[usize::from(v)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn hash_matches_digest_vectors() {
        for &(key, want, _, _, _) in VECTORS {
            assert_eq!(bucket(key), want, "key {key:02x?}");
        }
    }

    #[test]
    fn hash_vector_positions_in_hba() {
        let split = BucketMap::from_split(128);
        for &(key, h, (byte, bit), primary, kea_server1) in VECTORS {
            let b = bucket(key);
            assert_eq!((usize::from(b >> 3), b & 7), (byte, bit), "key {key:02x?}");
            // The bit at (byte, bit) of a map holding only this bucket is the only one set.
            let mut m = BucketMap::EMPTY;
            m.insert(b);
            assert_eq!(m.as_bytes()[byte], 1 << bit);
            assert_eq!(m.count(), 1);
            assert_eq!(split.contains(b), primary, "split 128, key {key:02x?}");
            assert_eq!(h & 1 == 0, kea_server1, "kea, key {key:02x?}");
        }
    }

    #[test]
    fn same_mac_hashes_differently_inside_option_61() {
        let mac = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        let id = [0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        assert_eq!(bucket(&mac), 135);
        assert_eq!(bucket(&id), 223);
    }

    #[test]
    fn hash_key_prefers_option_61_and_cuts_chaddr_at_hlen() {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        chaddr[6] = 0x99; // padding past hlen must not be hashed
        assert_eq!(hash_key(None, &chaddr, 6), &chaddr[..6]);
        assert_eq!(client_bucket(None, &chaddr, 6), 135);
        let id = [0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        assert_eq!(hash_key(Some(&id), &chaddr, 6), &id);
        assert_eq!(client_bucket(Some(&id), &chaddr, 6), 223);
        // A present but empty option 61 wins over chaddr (ISC behaviour): bucket 0.
        assert_eq!(client_bucket(Some(&[]), &chaddr, 6), 0);
        // hlen beyond the field is clamped.
        assert_eq!(hash_key(None, &chaddr, 200).len(), 16);
        assert_eq!(hash_key(None, &chaddr, 0), &[] as &[u8]);
    }

    #[test]
    fn hash_key_from_hw_drops_the_type_byte() {
        let hw = [0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        assert_eq!(bucket(hash_key_from_hw(None, &hw)), 135);
        assert_eq!(hash_key_from_hw(None, &[]), &[] as &[u8]);
        assert_eq!(hash_key_from_hw(None, &[1]), &[] as &[u8]);
        assert_eq!(hash_key_from_hw(Some(&[7, 8]), &hw), &[7, 8]);
    }

    #[test]
    fn split_layouts_match_isc() {
        let m = BucketMap::from_split(128);
        let mut want = [0u8; 32];
        want[..16].fill(0xff);
        assert_eq!(m.as_bytes(), &want);

        let m = BucketMap::from_split(179);
        let mut want = [0u8; 32];
        want[..22].fill(0xff);
        want[22] = 0x07;
        assert_eq!(m.as_bytes(), &want);
        assert_eq!(m.count(), 179);

        assert_eq!(BucketMap::from_split(0), BucketMap::EMPTY);
        assert_eq!(BucketMap::from_split(256), BucketMap::FULL);
        assert_eq!(BucketMap::from_split(1000), BucketMap::FULL);
        assert_eq!(BucketMap::from_split(1).as_bytes()[0], 0x01);
        assert_eq!(BucketMap::from_split(255).as_bytes()[31], 0x7f);
    }

    #[test]
    fn from_percent_rounds_to_nearest_bucket_count() {
        assert_eq!(BucketMap::from_percent(0), BucketMap::EMPTY);
        assert_eq!(BucketMap::from_percent(50), BucketMap::from_split(128));
        assert_eq!(BucketMap::from_percent(70), BucketMap::from_split(179));
        assert_eq!(BucketMap::from_percent(100), BucketMap::FULL);
        assert_eq!(BucketMap::from_percent(200), BucketMap::FULL);
        for pct in 0..=100u8 {
            let m = BucketMap::from_percent(pct);
            let n = m.count();
            // n is the integer nearest to 2.56 * pct.
            let exact = 2.56 * f64::from(pct);
            assert!(
                (f64::from(n) - exact).abs() <= 0.5,
                "pct {pct}: {n} buckets"
            );
            // Contiguous from bucket 0.
            assert!(m.iter().enumerate().all(|(i, b)| usize::from(b) == i));
            // Primary and secondary shares partition the buckets.
            let c = m.complement();
            assert_eq!(n + c.count(), 256);
            assert!((0..=255u8).all(|b| m.contains(b) != c.contains(b)));
        }
        assert_eq!(BucketMap::from_percent(1).count(), 3);
        assert_eq!(BucketMap::from_percent(99).count(), 253);
    }

    #[test]
    fn insert_remove_contains() {
        let mut m = BucketMap::EMPTY;
        for b in [0u8, 7, 8, 127, 128, 255] {
            assert!(!m.contains(b));
            m.insert(b);
            assert!(m.contains(b));
        }
        assert_eq!(m.count(), 6);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 7, 8, 127, 128, 255]);
        m.remove(7);
        assert!(!m.contains(7));
        assert_eq!(m.count(), 5);
        assert_eq!(m.as_bytes()[0], 0x01);
        assert_eq!(m.as_bytes()[31], 0x80);
    }

    #[test]
    fn bytes_round_trip_and_slice_length_check() {
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        let m = BucketMap::from_bytes(raw);
        assert_eq!(m.as_bytes(), &raw);
        assert_eq!(BucketMap::from_slice(&raw), Some(m));
        assert_eq!(BucketMap::from_slice(&raw[..31]), None);
        assert_eq!(BucketMap::from_slice(&[0u8; 33]), None);
        assert_eq!(m.complement().complement(), m);
        // The aa.. and 55.. maps are the other two 50/50 splits mentioned by ISC.
        let aa = BucketMap::from_bytes([0xaa; 32]);
        assert_eq!(aa.count(), 128);
        assert_eq!(aa.complement(), BucketMap::from_bytes([0x55; 32]));
    }

    #[test]
    fn sequential_macs_split_exactly_in_half() {
        // 00:11:22:00:00:00 .. 00:11:22:ff:ff:ff would be 16M keys; the digest's claim is over the
        // last two bytes varying (65 536 keys), which we check exactly.
        let split = BucketMap::from_split(128);
        let mut primary = 0u32;
        let mut even = 0u32;
        for i in 0..=0xffffu32 {
            let [_, _, hi, lo] = i.to_be_bytes();
            let b = bucket(&[0x00, 0x11, 0x22, 0x00, hi, lo]);
            primary += u32::from(split.contains(b));
            even += u32::from(b & 1 == 0);
        }
        assert_eq!(primary, 32768);
        assert_eq!(even, 32768);
    }

    #[test]
    fn debug_is_colon_hex() {
        let s = format!("{:?}", BucketMap::from_split(12));
        assert!(s.starts_with("BucketMap(ff:0f:00:"), "{s}");
    }
}
