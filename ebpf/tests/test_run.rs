//! The XDP program on synthetic frames through `BPF_PROG_TEST_RUN`, and attach/detach on veth
//! and loopback interfaces inside network namespaces created here (named `tdm<pid>n<seq>`,
//! deleted on drop).
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces), `ip` (iproute2, built with
//! libbpf, to plant a stale program) and clang (to build a foreign program): every test fails
//! with a clear message otherwise, none is skipped. Run with `sudo -E cargo test -p tandem-ebpf`.
//!
//! With no AF_XDP socket in the XSKMAP, `bpf_redirect_map(..., XDP_PASS)` returns PASS, so the
//! redirect path is asserted through the program's own counters (`redirect_failed`: "meant for
//! user space, no socket on queue 0") as well as the action.

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tandem_dataplane::hash::{bucket, BucketMap};
use tandem_ebpf::{
    AttachedMode, Counters, SteerError, Steering, XdpAction, XdpMode, DHCP_SERVER_PORT,
    MAX_RELATIONSHIPS, PROGRAM_NAME,
};

// ---------------------------------------------------------------------------------------------
// Frame building

const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// A DHCP message (UDP payload).
#[derive(Clone)]
struct Dhcp {
    hlen: u8,
    chaddr: [u8; 16],
    cookie: [u8; 4],
    /// Option bytes after the magic cookie, END included.
    options: Vec<u8>,
    /// Zero padding after the options up to this many bytes (BOOTP minimum is 300).
    min_len: usize,
    /// `ciaddr` (a renewing client's address).
    ciaddr: [u8; 4],
    /// `giaddr` (the relay's address).
    giaddr: [u8; 4],
}

impl Dhcp {
    /// A DISCOVER from `CLIENT_MAC` without option 61.
    fn discover() -> Dhcp {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&CLIENT_MAC);
        Dhcp {
            hlen: 6,
            chaddr,
            cookie: MAGIC,
            options: vec![53, 1, 1, 55, 4, 1, 3, 6, 15, 57, 2, 5, 220, 255],
            min_len: 300,
            ciaddr: [0; 4],
            giaddr: [0; 4],
        }
    }

    /// Same, with option 61 = `id` right after option 53.
    fn with_client_id(mut self, id: &[u8]) -> Dhcp {
        let mut opt = vec![
            61,
            u8::try_from(id.len()).expect("option 61 is at most 255 bytes"),
        ];
        opt.extend_from_slice(id);
        self.options.splice(3..3, opt);
        self
    }

    /// Hardware address `hw` (at most 16 bytes); the rest of chaddr is filled with junk that must
    /// not be hashed.
    fn with_chaddr(mut self, hw: &[u8]) -> Dhcp {
        self.chaddr = [0x99; 16];
        self.chaddr[..hw.len()].copy_from_slice(hw);
        self.hlen = u8::try_from(hw.len()).expect("short hardware address");
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 1; // BOOTREQUEST
        m[1] = 1; // Ethernet
        m[2] = self.hlen;
        m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        m[10] = 0x80; // broadcast flag
        m[12..16].copy_from_slice(&self.ciaddr);
        m[24..28].copy_from_slice(&self.giaddr);
        m[28..44].copy_from_slice(&self.chaddr);
        m.extend_from_slice(&self.cookie);
        m.extend_from_slice(&self.options);
        if m.len() < self.min_len {
            m.resize(self.min_len, 0);
        }
        m
    }
}

/// An Ethernet frame carrying IPv4/UDP (or whatever the fields say).
#[derive(Clone)]
struct Frame {
    /// TPIDs of VLAN tags, outermost first.
    tags: Vec<u16>,
    ethertype: u16,
    version: u8,
    ihl: u8,
    /// The IPv4 flags + fragment offset field.
    frag: u16,
    proto: u8,
    dport: u16,
    /// UDP length field override (default: header + payload).
    udp_len: Option<u16>,
    payload: Vec<u8>,
}

impl Frame {
    fn dhcp(d: &Dhcp) -> Frame {
        Frame {
            tags: Vec::new(),
            ethertype: ETH_P_IP,
            version: 4,
            ihl: 5,
            frag: 0,
            proto: IPPROTO_UDP,
            dport: 67,
            udp_len: None,
            payload: d.bytes(),
        }
    }

    fn discover() -> Frame {
        Frame::dhcp(&Dhcp::discover())
    }

    fn bytes(&self) -> Vec<u8> {
        let mut f = vec![0xff; 6]; // broadcast
        f.extend_from_slice(&CLIENT_MAC);
        for (i, tpid) in self.tags.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes()); // VLAN id
        }
        f.extend_from_slice(&self.ethertype.to_be_bytes());

        let ip_start = f.len();
        let ip_hlen = usize::from(self.ihl) * 4;
        let l4_len = 8 + self.payload.len();
        let total = u16::try_from(ip_hlen.max(20) + l4_len).expect("frame fits");
        f.push((self.version << 4) | self.ihl);
        f.push(0x10);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&0x4242u16.to_be_bytes());
        f.extend_from_slice(&self.frag.to_be_bytes());
        f.push(64);
        f.push(self.proto);
        f.extend_from_slice(&[0, 0]); // checksum, below
        f.extend_from_slice(&[0, 0, 0, 0]); // 0.0.0.0
        f.extend_from_slice(&[255, 255, 255, 255]);
        // IP options: NOPs, then an End of Options List.
        for i in 20..ip_hlen.max(20) {
            f.push(if i + 1 == ip_hlen { 0 } else { 1 });
        }
        let sum = ip_checksum(&f[ip_start..ip_start + ip_hlen.max(20)]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());

        let udp_len = self
            .udp_len
            .unwrap_or(u16::try_from(l4_len).expect("frame fits"));
        f.extend_from_slice(&68u16.to_be_bytes());
        f.extend_from_slice(&self.dport.to_be_bytes());
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum
        f.extend_from_slice(&self.payload);
        f
    }
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    f.resize(60, 0);
    f
}

// ---------------------------------------------------------------------------------------------
// Harness

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "tandem-ebpf tests load XDP programs and create network namespaces: they need root \
         (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN). Run `sudo -E cargo test -p tandem-ebpf`."
    );
}

fn load() -> Steering {
    require_root();
    Steering::load(DHCP_SERVER_PORT).unwrap_or_else(|e| panic!("loading the XDP program: {e:?}"))
}

/// Runs one frame; returns the verdict and the counter increase, after checking the counter
/// invariants (one verdict per frame; one key class per frame that reached the bucket decision).
fn run(s: &Steering, frame: &[u8]) -> (XdpAction, Counters) {
    let before = s.counters().expect("counters");
    let out = s
        .test_run(frame)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e:?}"));
    let d = s.counters().expect("counters").since(&before);
    assert_eq!(d.frames(), 1, "one verdict per frame: {d:?}");
    let keyed = d.partner_drop + d.redirect + d.redirect_failed;
    let keys = d.key_client_id + d.key_chaddr + d.key_unknown + d.bad_dhcp;
    assert_eq!(keys, keyed, "one key class per DHCP frame: {d:?}");
    (out.action, d)
}

/// Asserts that exactly the counters in `names` went up, by one each.
#[track_caller]
fn assert_counted(d: &Counters, names: &[&str]) {
    for (name, v) in d.named() {
        let want = u64::from(names.contains(&name));
        assert_eq!(
            v, want,
            "counter {name}: got {v}, want {want} (increase: {d:?})"
        );
    }
}

/// Asserts the frame is steered to user space (PASS with an empty XSKMAP, counted as a redirect
/// attempt) with key class `key`.
#[track_caller]
fn assert_to_user_space(s: &Steering, frame: &[u8], key: &str) {
    let (action, d) = run(s, frame);
    assert_eq!(action, XdpAction::Pass);
    assert_counted(&d, &["redirect_failed", key]);
}

/// Asserts the frame is passed to the kernel with verdict counter `verdict`.
#[track_caller]
fn assert_passed(s: &Steering, frame: &[u8], verdict: &str) {
    let (action, d) = run(s, frame);
    assert_eq!(action, XdpAction::Pass);
    assert_counted(&d, &[verdict]);
}

/// The program's bucket for `frame` is exactly `want`: dropped when only `want` is the
/// partner's, not dropped when only another bucket is, nor when every bucket but `want` is.
#[track_caller]
fn assert_bucket(s: &mut Steering, frame: &[u8], want: u8, key: &str, what: &str) {
    let mut only = BucketMap::EMPTY;
    only.insert(want);
    s.set_partner_buckets(only.as_bytes()).expect("set map");
    let (action, d) = run(s, frame);
    assert_eq!(
        action,
        XdpAction::Drop,
        "{what}: bucket {want} is the partner's"
    );
    assert_counted(&d, &["partner_drop", key]);

    let mut other = BucketMap::EMPTY;
    other.insert(want.wrapping_add(1));
    s.set_partner_buckets(other.as_bytes()).expect("set map");
    let (action, d) = run(s, frame);
    assert_eq!(
        action,
        XdpAction::Pass,
        "{what}: only bucket {} is the partner's",
        want.wrapping_add(1)
    );
    assert_counted(&d, &["redirect_failed", key]);

    s.set_partner_buckets(only.complement().as_bytes())
        .expect("set map");
    let (action, d) = run(s, frame);
    assert_eq!(
        action,
        XdpAction::Pass,
        "{what}: every bucket but {want} is the partner's"
    );
    assert_counted(&d, &["redirect_failed", key]);
}

/// Fixed-seed SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Between `lo` and `hi` (inclusive) random bytes.
    fn bytes_between(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.bytes(n)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Verdicts

#[test]
fn plain_broadcast_discover_goes_to_user_space() {
    let s = load();
    assert_to_user_space(&s, &Frame::discover().bytes(), "key_chaddr");
    let id = [1, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
    let f = Frame::dhcp(&Dhcp::discover().with_client_id(&id));
    assert_to_user_space(&s, &f.bytes(), "key_client_id");
    // Counters accumulate across runs.
    let c = s.counters().expect("counters");
    assert_eq!(
        (c.redirect_failed, c.key_chaddr, c.key_client_id),
        (2, 1, 1)
    );
    assert_eq!(c.frames(), 2);
}

#[test]
fn ip_options_ihl_6_and_15() {
    let mut s = load();
    for ihl in [6u8, 7, 15] {
        let mut f = Frame::discover();
        f.ihl = ihl;
        let bytes = f.bytes();
        assert_eq!(
            bytes.len(),
            Frame::discover().bytes().len() + (usize::from(ihl) - 5) * 4
        );
        assert_to_user_space(&s, &bytes, "key_chaddr");
        assert_bucket(&mut s, &bytes, bucket(&CLIENT_MAC), "key_chaddr", "ihl");
    }
}

#[test]
fn bad_ipv4_headers_pass() {
    let s = load();
    let mut f = Frame::discover();
    f.ihl = 4;
    assert_passed(&s, &f.bytes(), "bad_ipv4");
    let mut f = Frame::discover();
    f.version = 6;
    assert_passed(&s, &f.bytes(), "bad_ipv4");
}

#[test]
fn vlan_8021q_tag() {
    let mut s = load();
    let mut f = Frame::discover();
    f.tags = vec![ETH_P_8021Q];
    assert_to_user_space(&s, &f.bytes(), "key_chaddr");
    assert_bucket(
        &mut s,
        &f.bytes(),
        bucket(&CLIENT_MAC),
        "key_chaddr",
        "802.1Q",
    );
    f.ihl = 15;
    assert_bucket(
        &mut s,
        &f.bytes(),
        bucket(&CLIENT_MAC),
        "key_chaddr",
        "802.1Q + IHL 15",
    );
}

#[test]
fn qinq_outer_8021ad_tag() {
    let mut s = load();
    let mut f = Frame::discover();
    f.tags = vec![ETH_P_8021AD];
    assert_to_user_space(&s, &f.bytes(), "key_chaddr");
    assert_bucket(
        &mut s,
        &f.bytes(),
        bucket(&CLIENT_MAC),
        "key_chaddr",
        "802.1ad",
    );
    // Only one tag is parsed: a double-tagged (802.1ad + 802.1Q) frame goes to the kernel.
    f.tags = vec![ETH_P_8021AD, ETH_P_8021Q];
    assert_passed(&s, &f.bytes(), "not_ipv4");
}

#[test]
fn fragments_pass_and_dont_fragment_does_not_matter() {
    let mut s = load();
    let mut f = Frame::discover();
    f.frag = 0x2000; // first fragment: MF, offset 0
    assert_passed(&s, &f.bytes(), "fragment");
    f.frag = 185; // non-first fragment (offset 1480), last
    assert_passed(&s, &f.bytes(), "fragment");
    f.frag = 0x2000 | 185; // middle fragment
    assert_passed(&s, &f.bytes(), "fragment");
    f.frag = 0x4000; // DF only: a whole datagram
    assert_to_user_space(&s, &f.bytes(), "key_chaddr");
    assert_bucket(&mut s, &f.bytes(), bucket(&CLIENT_MAC), "key_chaddr", "DF");
}

#[test]
fn other_traffic_passes() {
    let s = load();
    let mut f = Frame::discover();
    f.dport = 68;
    assert_passed(&s, &f.bytes(), "other_port");
    let mut f = Frame::discover();
    f.proto = IPPROTO_TCP;
    assert_passed(&s, &f.bytes(), "not_udp");
    assert_passed(&s, &arp_request(), "not_ipv4");
    let mut f = Frame::discover();
    f.ethertype = ETH_P_IPV6;
    assert_passed(&s, &f.bytes(), "not_ipv4");
}

#[test]
fn port_is_set_at_load() {
    require_root();
    let s = Steering::load(1067).expect("load");
    assert_eq!(s.port(), 1067);
    let mut f = Frame::discover();
    assert_passed(&s, &f.bytes(), "other_port");
    f.dport = 1067;
    assert_to_user_space(&s, &f.bytes(), "key_chaddr");
    assert!(matches!(Steering::load(0), Err(SteerError::InvalidPort)));
}

#[test]
fn runt_frames_pass_without_reading_past_the_end() {
    let s = load();
    let full = Frame::discover().bytes();
    // 15 bytes: Ethernet header and one byte of IPv4.
    assert_passed(&s, &full[..15], "runt");
    // Ethernet + IPv4 header, no UDP header.
    assert_passed(&s, &full[..14 + 20], "runt");
    // Truncated UDP header.
    assert_passed(&s, &full[..14 + 20 + 4], "runt");
    // A tag and nothing after it.
    let mut f = Frame::discover();
    f.tags = vec![ETH_P_8021Q];
    assert_passed(&s, &f.bytes()[..16], "runt");
    // IP options announced but cut off.
    let mut f = Frame::discover();
    f.ihl = 15;
    assert_passed(&s, &f.bytes()[..14 + 40], "runt");
    // Every other cut of a DHCP frame: never dropped, never an error.
    let mut s2 = load();
    s2.set_partner_buckets(BucketMap::FULL.as_bytes())
        .expect("set map");
    for cut in 14..full.len() {
        let (action, _) = run(&s2, &full[..cut]);
        assert_eq!(action, XdpAction::Pass, "cut at {cut}");
    }
    // Below an Ethernet header the kernel refuses the run itself.
    assert!(s.test_run(&full[..13]).is_err());
}

#[test]
fn short_or_bad_dhcp_is_never_dropped() {
    let mut s = load();
    s.set_partner_buckets(BucketMap::FULL.as_bytes())
        .expect("set map");
    // UDP payload shorter than the fixed header (UDP length consistent with it).
    let mut f = Frame::discover();
    f.payload.truncate(100);
    assert_to_user_space(&s, &f.bytes(), "bad_dhcp");
    // Fixed header but no room for the magic cookie.
    f.payload = Dhcp::discover().bytes()[..238].to_vec();
    assert_to_user_space(&s, &f.bytes(), "bad_dhcp");
    // Empty UDP payload.
    f.payload.clear();
    assert_to_user_space(&s, &f.bytes(), "bad_dhcp");
    // UDP length below its own header.
    let mut f = Frame::discover();
    f.udp_len = Some(4);
    assert_to_user_space(&s, &f.bytes(), "bad_dhcp");
    // UDP length beyond the frame (truncated datagram).
    let mut f = Frame::discover();
    f.udp_len = Some(1400);
    assert_to_user_space(&s, &f.bytes(), "bad_dhcp");
    // Bad magic cookie (plain BOOTP).
    let mut d = Dhcp::discover();
    d.cookie = [0, 0, 0, 0];
    assert_to_user_space(&s, &Frame::dhcp(&d).bytes(), "bad_dhcp");
    // And the same frame with a good cookie is dropped (the map is full).
    let (action, d) = run(&s, &Frame::discover().bytes());
    assert_eq!(action, XdpAction::Drop);
    assert_counted(&d, &["partner_drop", "key_chaddr"]);
}

#[test]
fn undeterminable_keys_are_never_dropped() {
    let mut s = load();
    s.set_partner_buckets(BucketMap::FULL.as_bytes())
        .expect("set map");
    let id = [1u8, 2, 3, 4, 5, 6, 7];
    let unknown = |d: &Dhcp| Frame::dhcp(d).bytes();

    // Option overload (52): the key may be in file/sname.
    let mut d = Dhcp::discover();
    d.options.splice(0..0, [52, 1, 3]);
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
    let mut d = Dhcp::discover().with_client_id(&id);
    d.options.splice(0..0, [52, 1, 1]);
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
    // Repeated option 61 (concatenated by the engine, RFC 3396).
    let d = Dhcp::discover().with_client_id(&id).with_client_id(&id);
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
    // Empty option 61.
    let d = Dhcp::discover().with_client_id(&[]);
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
    // hlen over 16.
    let mut d = Dhcp::discover();
    d.hlen = 17;
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
    // An option whose length runs past the payload.
    let mut d = Dhcp::discover();
    d.options = vec![53, 1, 1, 61, 200, 1, 2, 3];
    d.min_len = 0;
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
    // A code byte with no room for its length byte.
    let mut d = Dhcp::discover();
    d.options = vec![53, 1, 1, 12];
    d.min_len = 0;
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
    // More options than the program walks.
    let mut d = Dhcp::discover().with_client_id(&id);
    d.options.splice(0..0, std::iter::repeat_n(0u8, 300));
    assert_to_user_space(&s, &unknown(&d), "key_unknown");
}

/// Two relationships and a scope served alone on one program: a request is dropped only by
/// the bitmap of its own scope's relationship, found from giaddr (relayed), ciaddr (renewing)
/// or the interface (direct), and counted for that relationship; a request that may name its
/// link (option 82 or 118), or whose scope is in no relationship, is never dropped.
#[test]
fn each_relationship_drops_only_its_own_scopes_partner_clients() {
    let mut s = load();
    let ip = |a: [u8; 4]| std::net::Ipv4Addr::from(a);
    let b = bucket(&CLIENT_MAC);
    let mut only = BucketMap::EMPTY;
    only.insert(b);
    // Slot 0 drops our client's bucket, slot 1 nothing; slot 1 is the interface's.
    s.set_relationship_buckets(0, only.as_bytes())
        .expect("slot 0");
    s.set_relationship_buckets(1, BucketMap::EMPTY.as_bytes())
        .expect("slot 1");
    s.set_direct_relationship(Some(1)).expect("direct");
    s.set_subnet_relationship(ip([10, 1, 0, 0]), 16, Some(0))
        .expect("10.1/16");
    // A standalone scope nested in it: the longer prefix wins.
    s.set_subnet_relationship(ip([10, 1, 9, 0]), 24, None)
        .expect("10.1.9/24");
    let relayed = |gi: [u8; 4]| {
        let mut d = Dhcp::discover();
        d.giaddr = gi;
        Frame::dhcp(&d).bytes()
    };
    let drops = |s: &Steering| {
        (0..2)
            .map(|r| s.relationship_drops(r).unwrap())
            .collect::<Vec<_>>()
    };
    // Direct: slot 1, which drops nothing.
    assert_to_user_space(&s, &Frame::discover().bytes(), "key_chaddr");
    // Relayed from 10.1.2.1: slot 0 drops it, counted for slot 0.
    let (action, d) = run(&s, &relayed([10, 1, 2, 1]));
    assert_eq!(action, XdpAction::Drop);
    assert_counted(&d, &["partner_drop", "key_chaddr"]);
    assert_eq!(drops(&s), vec![1, 0]);
    // Relayed from the standalone scope, or from a subnet no scope has: never dropped.
    assert_to_user_space(&s, &relayed([10, 1, 9, 1]), "key_chaddr");
    assert_to_user_space(&s, &relayed([192, 0, 2, 1]), "key_chaddr");
    // A direct renewal from 10.1.3.7 (ciaddr): its scope's relationship, slot 0.
    let mut d = Dhcp::discover();
    d.ciaddr = [10, 1, 3, 7];
    let (action, _) = run(&s, &Frame::dhcp(&d).bytes());
    assert_eq!(action, XdpAction::Drop);
    // A ciaddr in no scope: the interface's relationship (slot 1), not dropped.
    d.ciaddr = [172, 16, 0, 9];
    assert_to_user_space(&s, &Frame::dhcp(&d).bytes(), "key_chaddr");
    // The relay names the link (RFC 3527 sub-option 5 of option 82, else option 118): the
    // scope key is that link, as the engine selects it. 10.2/16 is slot 1's (drops nothing).
    s.set_subnet_relationship(ip([10, 2, 0, 0]), 16, Some(1))
        .expect("10.2/16");
    let link_cases: [(&str, [u8; 4], Vec<u8>, bool); 10] = [
        (
            "118 names slot 1's link",
            [10, 1, 2, 1],
            vec![118, 4, 10, 2, 0, 0],
            false,
        ),
        (
            "82.5 names slot 1's link",
            [10, 1, 2, 1],
            vec![82, 6, 5, 4, 10, 2, 0, 0],
            false,
        ),
        (
            "82 without 5: giaddr",
            [10, 1, 2, 1],
            vec![82, 4, 1, 2, 0xab, 0xcd],
            true,
        ),
        (
            "82.1 then 82.5",
            [10, 1, 2, 1],
            vec![82, 10, 1, 2, 0xab, 0xcd, 5, 4, 10, 2, 0, 0],
            false,
        ),
        (
            "82.5 of 3 bytes names nothing, 118 not looked at: giaddr",
            [10, 1, 2, 1],
            vec![82, 5, 5, 3, 10, 2, 0, 118, 4, 10, 2, 0, 0],
            true,
        ),
        (
            "82 malformed before 5: 118",
            [10, 1, 2, 1],
            vec![82, 3, 1, 9, 0, 118, 4, 10, 2, 0, 0],
            false,
        ),
        (
            "relay of slot 1, 118 of slot 0's link",
            [10, 2, 0, 1],
            vec![118, 4, 10, 1, 2, 0],
            true,
        ),
        (
            "not relayed, 118 of slot 0's link",
            [0; 4],
            vec![118, 4, 10, 1, 2, 0],
            true,
        ),
        (
            "118 twice (concatenated by the engine): its call",
            [10, 1, 2, 1],
            vec![118, 2, 10, 1, 118, 2, 2, 0],
            false,
        ),
        (
            "118 of 3 bytes names nothing: giaddr",
            [10, 1, 2, 1],
            vec![118, 3, 10, 2, 0],
            true,
        ),
    ];
    let mut dropped = 2;
    for (what, gi, opt, drop) in link_cases {
        let mut d = Dhcp::discover();
        d.giaddr = gi;
        d.options.splice(3..3, opt);
        // The engine's own reading of the request agrees with the case's expectation.
        let payload = d.bytes();
        let req = tandem_dataplane::wire::Request::parse(&payload).expect("a valid request");
        let key = match req.link_selection() {
            Some(l) => Some(l),
            None if !req.giaddr().is_unspecified() => Some(req.giaddr()),
            None => None,
        };
        let in_slot0 = key.is_some_and(|k| k.octets()[..2] == [10, 1] && k.octets()[2] != 9);
        let repeated = what.contains("twice");
        assert_eq!(
            in_slot0 && !repeated,
            drop,
            "{what}: the engine reads key {key:?}"
        );
        let f = Frame::dhcp(&d).bytes();
        if drop {
            let (action, _) = run(&s, &f);
            assert_eq!(action, XdpAction::Drop, "{what}");
            dropped += 1;
        } else {
            assert_to_user_space(&s, &f, "key_chaddr");
        }
    }
    assert_eq!(drops(&s), vec![dropped, 0]);
    // The interface's scopes move to slot 0; then the subnets are forgotten: relayed requests
    // are in no relationship again.
    s.set_direct_relationship(Some(0)).expect("direct");
    let (action, _) = run(&s, &Frame::discover().bytes());
    assert_eq!(action, XdpAction::Drop);
    s.clear_subnet_relationships().expect("clear");
    assert_to_user_space(&s, &relayed([10, 1, 2, 1]), "key_chaddr");
    s.set_direct_relationship(None).expect("direct");
    assert_to_user_space(&s, &Frame::discover().bytes(), "key_chaddr");
    assert_eq!(drops(&s), vec![dropped + 1, 0]);
    // Slots past the program's limit are refused.
    assert!(matches!(
        s.set_relationship_buckets(MAX_RELATIONSHIPS, BucketMap::FULL.as_bytes()),
        Err(SteerError::RelationshipSlot(_))
    ));
}

#[test]
fn option_walk_edge_cases_decide_like_the_engine() {
    let mut s = load();
    let id = [1u8, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
    // Option 61 after many other options and PAD bytes.
    let mut d = Dhcp::discover();
    let mut opts = vec![0u8; 20];
    // (118, subnet selection, would name the link: not among them.)
    for code in (100..131u8).filter(|&c| c != 118) {
        opts.extend_from_slice(&[code, 2, 0xaa, 0xbb]);
    }
    opts.extend_from_slice(&[61, id.len() as u8]);
    opts.extend_from_slice(&id);
    opts.push(255);
    d.options = opts;
    assert_bucket(
        &mut s,
        &Frame::dhcp(&d).bytes(),
        bucket(&id),
        "key_client_id",
        "late 61",
    );

    // No END: the options run to the end of the UDP payload (accepted like the engine does).
    let mut d = Dhcp::discover().with_client_id(&id);
    d.options.pop();
    d.min_len = 0;
    assert_bucket(
        &mut s,
        &Frame::dhcp(&d).bytes(),
        bucket(&id),
        "key_client_id",
        "no END",
    );

    // Options after END are not read.
    let mut d = Dhcp::discover();
    d.options.extend_from_slice(&[61, 3, 9, 9, 9]);
    let f = Frame::dhcp(&d).bytes();
    assert_bucket(
        &mut s,
        &f,
        bucket(&CLIENT_MAC),
        "key_chaddr",
        "61 after END",
    );

    // Bytes past the UDP length (Ethernet padding) are not options.
    let mut d = Dhcp::discover();
    d.options.pop(); // no END: the payload ends right after the last option
    d.min_len = 0;
    let mut f = Frame::dhcp(&d);
    let udp_len = 8 + f.payload.len() as u16;
    f.udp_len = Some(udp_len);
    f.payload.extend_from_slice(&[61, 3, 9, 9, 9, 255]);
    assert_bucket(
        &mut s,
        &f.bytes(),
        bucket(&CLIENT_MAC),
        "key_chaddr",
        "61 in padding",
    );

    // hlen 0: the empty key, bucket 0; hlen 16: the whole field.
    let d = Dhcp::discover().with_chaddr(&[]);
    assert_bucket(&mut s, &Frame::dhcp(&d).bytes(), 0, "key_chaddr", "hlen 0");
    let hw: Vec<u8> = (1..=16).collect();
    let d = Dhcp::discover().with_chaddr(&hw);
    assert_bucket(
        &mut s,
        &Frame::dhcp(&d).bytes(),
        bucket(&hw),
        "key_chaddr",
        "hlen 16",
    );

    // A 255-byte client identifier.
    let long: Vec<u8> = (0..255u32).map(|i| (i * 7 + 3) as u8).collect();
    let d = Dhcp::discover().with_client_id(&long);
    assert_bucket(
        &mut s,
        &Frame::dhcp(&d).bytes(),
        bucket(&long),
        "key_client_id",
        "255 bytes",
    );
}

#[test]
fn partner_owned_bucket_is_dropped_own_bucket_is_not() {
    let mut s = load();
    let frame = Frame::discover().bytes();
    let b = bucket(&CLIENT_MAC);
    assert_eq!(b, 1, "digest vector 52:54:00:ab:cd:ef");

    // Partner answers the lower half (split 128 is the primary's share; here the partner's).
    let partner = BucketMap::from_split(128);
    assert!(partner.contains(b));
    s.set_partner_buckets(partner.as_bytes()).expect("set map");
    assert_eq!(&s.partner_buckets().expect("read map"), partner.as_bytes());
    let (action, d) = run(&s, &frame);
    assert_eq!(action, XdpAction::Drop);
    assert_counted(&d, &["partner_drop", "key_chaddr"]);
    assert_eq!(s.counters().expect("counters").partner_drop, 1);

    // Our half: to user space.
    s.set_partner_buckets(partner.complement().as_bytes())
        .expect("set map");
    assert_to_user_space(&s, &frame, "key_chaddr");

    // No partner.
    s.set_partner_buckets(BucketMap::EMPTY.as_bytes())
        .expect("set map");
    assert_to_user_space(&s, &frame, "key_chaddr");
    let c = s.counters().expect("counters");
    assert_eq!((c.partner_drop, c.redirect_failed, c.key_chaddr), (1, 2, 3));
}

// ---------------------------------------------------------------------------------------------
// The bucket computed in BPF equals the user-space one

/// The digest's §3.5 vectors (key, RFC 3074 hash), as in `tandem_dataplane::hash`'s tests.
const VECTORS: &[(&[u8], u8)] = &[
    (&[], 0),
    (&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00], 254),
    (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 79),
    (&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 135),
    (&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06], 179),
    (&[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff], 57),
    (&[0x08, 0x00, 0x27, 0x12, 0x34, 0x56], 52),
    (&[0x52, 0x54, 0x00, 0xab, 0xcd, 0xef], 1),
    (&[0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55], 223),
    (&[0x01, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff], 102),
    (&[0x0e], 232),
];

#[test]
fn bucket_equals_user_space_on_digest_vectors() {
    let mut s = load();
    for &(key, hash) in VECTORS {
        let want = bucket(key);
        assert_eq!(want, hash, "user-space hash of {key:02x?}");
        // As chaddr (hlen = key length).
        let d = Dhcp::discover().with_chaddr(key);
        let what = format!("chaddr {key:02x?}");
        assert_bucket(&mut s, &Frame::dhcp(&d).bytes(), want, "key_chaddr", &what);
        // As option 61 (an empty option 61 is left to user space, tested elsewhere).
        if !key.is_empty() {
            let d = Dhcp::discover().with_client_id(key);
            let what = format!("client id {key:02x?}");
            assert_bucket(
                &mut s,
                &Frame::dhcp(&d).bytes(),
                want,
                "key_client_id",
                &what,
            );
        }
    }
}

#[test]
fn bucket_equals_user_space_on_every_one_byte_client_id() {
    // A one-byte key b hashes to MIX[1 ^ b]: these 256 keys read every entry of the table.
    let mut s = load();
    let mut seen = BucketMap::EMPTY;
    for b in 0..=255u8 {
        let want = bucket(&[b]);
        seen.insert(want);
        let d = Dhcp::discover().with_client_id(&[b]);
        let what = format!("client id [{b:#04x}]");
        assert_bucket(
            &mut s,
            &Frame::dhcp(&d).bytes(),
            want,
            "key_client_id",
            &what,
        );
    }
    assert_eq!(seen, BucketMap::FULL);
}

#[test]
fn bucket_equals_user_space_on_random_keys() {
    let mut s = load();
    let mut rng = Rng(0x7a6e_6465_6d21_0004);
    for i in 0..300 {
        // A hardware address of 1..=16 bytes, junk after hlen.
        let hw = rng.bytes_between(1, 16);
        let d = Dhcp::discover().with_chaddr(&hw);
        let what = format!("random chaddr #{i} {hw:02x?}");
        assert_bucket(
            &mut s,
            &Frame::dhcp(&d).bytes(),
            bucket(&hw),
            "key_chaddr",
            &what,
        );

        // A client identifier of 1..=255 bytes (every fourth one type 1 + MAC), sometimes
        // after other options, sometimes under a VLAN tag or IP options.
        let id = if i % 4 == 0 {
            let mut id = vec![1u8];
            id.extend(rng.bytes(6));
            id
        } else {
            rng.bytes_between(1, 255)
        };
        let mut d = Dhcp::discover().with_client_id(&id);
        for _ in 0..rng.range(0, 6) {
            // Not 82 or 118: they may name the client's link (another test covers them).
            let code = match rng.range(64, 120) as u8 {
                82 | 118 => 81,
                c => c,
            };
            let val = rng.bytes_between(0, 20);
            let mut opt = vec![code, val.len() as u8];
            opt.extend(val);
            d.options.splice(0..0, opt);
        }
        let mut f = Frame::dhcp(&d);
        if i % 3 == 0 {
            f.tags = vec![ETH_P_8021Q];
        }
        if i % 5 == 0 {
            f.ihl = rng.range(6, 15) as u8;
        }
        let what = format!("random client id #{i} {id:02x?}");
        assert_bucket(&mut s, &f.bytes(), bucket(&id), "key_client_id", &what);
    }
}

#[test]
fn verifier_cost_stays_small() {
    let s = load();
    let n = s
        .verified_instructions()
        .expect("program info")
        .expect("kernel reports verified instructions");
    println!("verifier processed {n} instructions");
    // The kernel's limit is 1 000 000; stay far below it so the program keeps loading quickly.
    assert!(n < 200_000, "verifier processed {n} instructions");
}

// ---------------------------------------------------------------------------------------------
// Attaching inside network namespaces

static NETNS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace `tdm<pid>n<seq>`, deleted (with its interfaces) on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        require_root();
        let name = format!(
            "tdm{}n{}",
            std::process::id(),
            NETNS_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "dev", "lo", "up"]);
        ns
    }

    /// A veth pair `tdm0` / `tdm1`, both up.
    fn with_veth(self) -> Netns {
        self.ip(&[
            "link", "add", "tdm0", "type", "veth", "peer", "name", "tdm1",
        ]);
        self.ip(&["link", "set", "dev", "tdm0", "up"]);
        self.ip(&["link", "set", "dev", "tdm1", "up"]);
        self
    }

    /// Runs `ip -n <ns> args...`; panics on failure; returns stdout.
    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ip -d link show dev <ifname>` in the namespace.
    fn link(&self, ifname: &str) -> String {
        self.ip(&["-d", "link", "show", "dev", ifname])
    }

    /// Runs `f` on a thread that has entered the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The XDP program ids `ip -d link` shows for an interface ("prog/xdp id N").
fn xdp_prog_ids(link: &str) -> Vec<u32> {
    let words: Vec<&str> = link.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[0] == "prog/xdp" && w[1] == "id")
        .map(|w| w[2].parse().expect("program id"))
        .collect()
}

/// The XDP mode keyword on the first line of `ip -d link`: "xdp" (native) or "xdpgeneric".
fn xdp_mode_word(link: &str) -> Option<&str> {
    link.lines()
        .next()?
        .split_whitespace()
        .find(|w| w.starts_with("xdp"))
}

#[test]
fn attach_native_then_generic_on_veth_and_detach() {
    let ns = Netns::new().with_veth();
    ns.enter(|| {
        let mut s = load();
        let id = s.program_id().expect("program id");

        assert_eq!(
            s.attach("tdm0", XdpMode::Native).expect("native"),
            AttachedMode::Native
        );
        let link = ns.link("tdm0");
        assert_eq!(xdp_prog_ids(&link), vec![id], "{link}");
        assert_eq!(xdp_mode_word(&link), Some("xdp"), "{link}");
        assert!(link.contains(PROGRAM_NAME), "{link}");
        assert_eq!(
            s.attachments().collect::<Vec<_>>(),
            vec![("tdm0", AttachedMode::Native)]
        );
        assert!(matches!(
            s.attach("tdm0", XdpMode::Generic),
            Err(SteerError::AlreadyAttached(_))
        ));

        s.detach().expect("detach");
        let link = ns.link("tdm0");
        assert!(xdp_prog_ids(&link).is_empty(), "{link}");
        assert_eq!(s.attachments().count(), 0);

        assert_eq!(
            s.attach("tdm0", XdpMode::Generic).expect("generic"),
            AttachedMode::Generic
        );
        let link = ns.link("tdm0");
        assert_eq!(xdp_prog_ids(&link), vec![id], "{link}");
        assert_eq!(xdp_mode_word(&link), Some("xdpgeneric"), "{link}");
        // Both ends at once, then everything goes on drop.
        assert_eq!(
            s.attach("tdm1", XdpMode::Auto).expect("auto"),
            AttachedMode::Native
        );
        assert_eq!(xdp_prog_ids(&ns.link("tdm1")), vec![id]);
        drop(s);
        for dev in ["tdm0", "tdm1"] {
            let link = ns.link(dev);
            assert!(xdp_prog_ids(&link).is_empty(), "after drop: {link}");
            assert_eq!(xdp_mode_word(&link), None, "after drop: {link}");
        }
    });
}

#[test]
fn auto_falls_back_to_generic_without_driver_support() {
    // The loopback device has no native XDP support.
    let ns = Netns::new();
    ns.enter(|| {
        let mut s = load();
        let err = s
            .attach("lo", XdpMode::Native)
            .expect_err("lo has no native XDP");
        assert!(
            matches!(
                err,
                SteerError::Attach {
                    mode: AttachedMode::Native,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(xdp_prog_ids(&ns.link("lo")).is_empty());
        assert_eq!(
            s.attach("lo", XdpMode::Auto).expect("auto"),
            AttachedMode::Generic
        );
        let link = ns.link("lo");
        assert_eq!(
            xdp_prog_ids(&link),
            vec![s.program_id().expect("id")],
            "{link}"
        );
        assert_eq!(xdp_mode_word(&link), Some("xdpgeneric"), "{link}");
        drop(s);
        assert!(xdp_prog_ids(&ns.link("lo")).is_empty());
    });
}

#[test]
fn unknown_interface_is_an_error() {
    let ns = Netns::new();
    ns.enter(|| {
        let mut s = load();
        assert!(matches!(
            s.attach("tdmnothere", XdpMode::Auto),
            Err(SteerError::UnknownInterface(n)) if n == "tdmnothere"
        ));
        assert!(matches!(
            s.attach("a-name-longer-than-15", XdpMode::Auto),
            Err(SteerError::UnknownInterface(_))
        ));
    });
}

#[test]
fn stale_program_left_by_a_crash_is_replaced() {
    let ns = Netns::new().with_veth();
    // What a crashed loader that attached through netlink leaves behind: our program, attached
    // with no process holding it.
    // (The build without the metadata stamp: every kernel takes it, and its program has the
    // same name.)
    let object = concat!(env!("OUT_DIR"), "/steer_nometa.bpf.o");
    ns.ip(&[
        "link",
        "set",
        "dev",
        "tdm0",
        "xdpgeneric",
        "obj",
        object,
        "sec",
        "xdp",
    ]);
    let stale = xdp_prog_ids(&ns.link("tdm0"));
    assert_eq!(stale.len(), 1, "stale program attached");
    ns.enter(|| {
        let mut s = load();
        assert_eq!(
            s.attach("tdm0", XdpMode::Native).expect("attach"),
            AttachedMode::Native
        );
        let link = ns.link("tdm0");
        assert_eq!(
            xdp_prog_ids(&link),
            vec![s.program_id().expect("id")],
            "{link}"
        );
        assert_ne!(xdp_prog_ids(&link), stale);
        assert_eq!(xdp_mode_word(&link), Some("xdp"), "{link}");
        drop(s);
        let link = ns.link("tdm0");
        assert!(xdp_prog_ids(&link).is_empty(), "nothing left: {link}");
    });
}

#[test]
fn program_held_by_a_live_loader_is_not_taken_over() {
    let ns = Netns::new().with_veth();
    ns.enter(|| {
        let mut a = load();
        a.attach("tdm0", XdpMode::Generic).expect("attach a");
        let mut b = load();
        let err = b
            .attach("tdm0", XdpMode::Generic)
            .expect_err("b must not steal a's program");
        assert!(
            matches!(err, SteerError::InUse { id, .. } if id == a.program_id().expect("id")),
            "{err:?}"
        );
        assert_eq!(
            xdp_prog_ids(&ns.link("tdm0")),
            vec![a.program_id().expect("id")]
        );
        drop(a);
        assert_eq!(
            b.attach("tdm0", XdpMode::Generic).expect("attach b"),
            AttachedMode::Generic
        );
    });
}

#[test]
fn foreign_program_is_left_alone() {
    let ns = Netns::new().with_veth();
    let dir = std::env::temp_dir().join(format!("tdm-ebpf-foreign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join("other.bpf.c");
    let obj = dir.join("other.bpf.o");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n\
         SEC(\"xdp\") int other_prog(struct xdp_md *c) { return XDP_PASS; }\n\
         char LICENSE[] SEC(\"license\") = \"Apache-2.0\";\n",
    )
    .expect("write source");
    let src_s = src.to_string_lossy().into_owned();
    let obj_s = obj.to_string_lossy().into_owned();
    // Debian keeps <asm/*.h> in the multiarch include directory (as build.rs does).
    let multiarch = format!(
        "-I/usr/include/{}",
        sh(&["clang", "-print-multiarch"]).trim()
    );
    sh(&[
        "clang", "-target", "bpf", "-O2", "-g", &multiarch, "-c", &src_s, "-o", &obj_s,
    ]);
    ns.ip(&[
        "link",
        "set",
        "dev",
        "tdm0",
        "xdpgeneric",
        "obj",
        &obj_s,
        "sec",
        "xdp",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let foreign = xdp_prog_ids(&ns.link("tdm0"));
    assert_eq!(foreign.len(), 1);
    ns.enter(|| {
        let mut s = load();
        let err = s.attach("tdm0", XdpMode::Auto).expect_err("foreign program");
        assert!(
            matches!(&err, SteerError::ForeignProgram { id, name, .. } if *id == foreign[0] && name == "other_prog"),
            "{err:?}"
        );
        assert_eq!(xdp_prog_ids(&ns.link("tdm0")), foreign, "left in place");
    });
}
