//! Ethernet/IPv4/UDP frame views for the AF_XDP path: find the DHCP payload of a received
//! frame, and write the headers of the reply frame.
//!
//! [`UdpFrame::new_checked`] validates the Ethernet header (with at most one 802.1Q/802.1ad
//! tag), the IPv4 header (version, IHL with options, total length, no fragments) and the UDP
//! header (length within the IP payload). Once it returns `Ok`, no accessor panics: every offset
//! the accessors use was checked against the buffer. Bytes after the IPv4 total length
//! (Ethernet padding) are ignored.
//!
//! Checksums of received frames are not verified: frames sent by a local socket over veth carry
//! `CHECKSUM_PARTIAL` (only the pseudo-header sum in the UDP checksum field), so a correct
//! sender's frame can look "bad" here; the kernel has already dropped frames whose Ethernet FCS
//! failed. [`UdpFrame::ipv4_checksum_ok`] is there for callers who want to check.
//!
//! Replies: [`ReplyHeaders`] says where the reply goes ([`ReplyHeaders::for_request`] derives
//! it from the request and the engine's [`Destination`]); [`ReplyHeaders::emit`] writes
//! Ethernet (+ the request's VLAN tag), a 20-byte IPv4 header with its checksum and the UDP
//! header in front of a payload already placed at [`ReplyHeaders::header_len`]. The UDP
//! checksum is computed by default (RFC 768 allows zero, meaning "none", but a full checksum
//! costs one pass over ~300 bytes and keeps clients that verify it, or frames crossing links
//! that corrupt, safe); `udp_checksum: false` writes zero.

use std::net::Ipv4Addr;

use crate::engine::{Destination, SERVER_PORT};

/// Ethernet header length without a VLAN tag.
pub const ETH_HEADER_LEN: usize = 14;
/// Length of one 802.1Q/802.1ad tag.
pub const VLAN_TAG_LEN: usize = 4;
/// IPv4 header length without options (all replies use it).
pub const IPV4_HEADER_LEN: usize = 20;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;
/// The Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

const ETHERTYPE_IPV4: u16 = 0x0800;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const DEFAULT_TTL: u8 = 64;

/// Why a frame is not an IPv4/UDP datagram we can answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame ends inside a header, or the IPv4/UDP lengths point past its end.
    #[error("frame truncated")]
    Truncated,
    /// Not IPv4 (another EtherType, or more than one VLAN tag).
    #[error("not an IPv4 frame (EtherType {0:#06x})")]
    NotIpv4(u16),
    /// IPv4 version other than 4, IHL under 5, or a total length shorter than the header.
    #[error("malformed IPv4 header")]
    BadIpv4Header,
    /// A fragment (MF set or non-zero offset): left to the kernel to reassemble.
    #[error("IPv4 fragment")]
    Fragment,
    /// IPv4 but not UDP.
    #[error("not UDP (IP protocol {0})")]
    NotUdp(u8),
    /// UDP length under 8 or past the end of the IPv4 payload.
    #[error("bad UDP length")]
    BadUdpLength,
    /// The output buffer cannot hold the reply frame.
    #[error("reply buffer too small")]
    BufferTooSmall,
    /// The reply would exceed the 65535-byte IPv4 limit.
    #[error("reply payload too large")]
    PayloadTooLarge,
}

/// One 802.1Q/802.1ad tag.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VlanTag {
    /// Tag protocol identifier (0x8100 or 0x88a8).
    pub tpid: u16,
    /// Tag control information (priority, DEI, VLAN id).
    pub tci: u16,
}

/// A checked view of an Ethernet/IPv4/UDP frame.
#[derive(Copy, Clone, Debug)]
pub struct UdpFrame<T: AsRef<[u8]>> {
    buf: T,
    vlan: Option<VlanTag>,
    ip: usize,
    udp: usize,
    end: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn mac(b: &[u8], at: usize) -> [u8; 6] {
    [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]
}

impl<T: AsRef<[u8]>> UdpFrame<T> {
    /// Validates `buf` as Ethernet (+ one VLAN tag) / IPv4 / UDP. See the module docs.
    pub fn new_checked(buf: T) -> Result<UdpFrame<T>, FrameError> {
        let b = buf.as_ref();
        if b.len() < ETH_HEADER_LEN {
            return Err(FrameError::Truncated);
        }
        let mut ethertype = be16(b, 12);
        let mut ip = ETH_HEADER_LEN;
        let mut vlan = None;
        if ethertype == TPID_8021Q || ethertype == TPID_8021AD {
            if b.len() < ETH_HEADER_LEN + VLAN_TAG_LEN {
                return Err(FrameError::Truncated);
            }
            vlan = Some(VlanTag {
                tpid: ethertype,
                tci: be16(b, 14),
            });
            ethertype = be16(b, 16);
            ip += VLAN_TAG_LEN;
        }
        if ethertype != ETHERTYPE_IPV4 {
            return Err(FrameError::NotIpv4(ethertype));
        }
        if b.len() < ip + IPV4_HEADER_LEN {
            return Err(FrameError::Truncated);
        }
        let (version, ihl) = (b[ip] >> 4, usize::from(b[ip] & 0x0f) * 4);
        let total = usize::from(be16(b, ip + 2));
        if version != 4 || ihl < IPV4_HEADER_LEN || total < ihl {
            return Err(FrameError::BadIpv4Header);
        }
        if b.len() < ip + total {
            return Err(FrameError::Truncated);
        }
        let frag = be16(b, ip + 6);
        if frag & 0x3fff != 0 {
            // MF (0x2000) or a non-zero fragment offset.
            return Err(FrameError::Fragment);
        }
        if b[ip + 9] != IPPROTO_UDP {
            return Err(FrameError::NotUdp(b[ip + 9]));
        }
        let udp = ip + ihl;
        if total - ihl < UDP_HEADER_LEN {
            return Err(FrameError::Truncated);
        }
        let udp_len = usize::from(be16(b, udp + 4));
        if udp_len < UDP_HEADER_LEN || udp_len > total - ihl {
            return Err(FrameError::BadUdpLength);
        }
        Ok(UdpFrame {
            buf,
            vlan,
            ip,
            udp,
            end: udp + udp_len,
        })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Destination MAC address.
    pub fn dst_mac(&self) -> [u8; 6] {
        mac(self.b(), 0)
    }

    /// Source MAC address.
    pub fn src_mac(&self) -> [u8; 6] {
        mac(self.b(), 6)
    }

    /// The VLAN tag, if the frame has one.
    pub fn vlan(&self) -> Option<VlanTag> {
        self.vlan
    }

    /// Offset of the IPv4 header in the frame.
    pub fn ip_offset(&self) -> usize {
        self.ip
    }

    /// IPv4 header length (IHL × 4, options included).
    pub fn ip_header_len(&self) -> usize {
        self.udp - self.ip
    }

    /// IPv4 source address.
    pub fn src_ip(&self) -> Ipv4Addr {
        addr(self.b(), self.ip + 12)
    }

    /// IPv4 destination address.
    pub fn dst_ip(&self) -> Ipv4Addr {
        addr(self.b(), self.ip + 16)
    }

    /// IPv4 time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[self.ip + 8]
    }

    /// True if the IPv4 header checksum verifies.
    pub fn ipv4_checksum_ok(&self) -> bool {
        checksum(&self.b()[self.ip..self.udp]) == 0
    }

    /// UDP source port.
    pub fn src_port(&self) -> u16 {
        be16(self.b(), self.udp)
    }

    /// UDP destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.b(), self.udp + 2)
    }

    /// The UDP checksum field as received (see the module docs on why it is not verified).
    pub fn udp_checksum(&self) -> u16 {
        be16(self.b(), self.udp + 6)
    }

    /// Offset of the UDP payload in the frame.
    pub fn payload_offset(&self) -> usize {
        self.udp + UDP_HEADER_LEN
    }

    /// The UDP payload (the DHCP message), as long as the UDP length says.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.udp + UDP_HEADER_LEN..self.end]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

/// Where a reply frame goes, from the link layer up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReplyHeaders {
    /// Our interface's MAC address.
    pub src_mac: [u8; 6],
    /// The next hop's MAC address, or [`BROADCAST_MAC`].
    pub dst_mac: [u8; 6],
    /// VLAN tag to carry (the request's).
    pub vlan: Option<VlanTag>,
    /// Our address (the server identifier).
    pub src_ip: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// Source port (67).
    pub src_port: u16,
    /// Destination port (68 to clients, 67 to relays).
    pub dst_port: u16,
    /// IPv4 time to live.
    pub ttl: u8,
    /// Compute the UDP checksum (true) or send zero ("no checksum", RFC 768).
    pub udp_checksum: bool,
}

impl ReplyHeaders {
    /// Headers for the reply to `req` going to `dest` (as the engine decided), from our
    /// `server_mac` and `server_ip`:
    /// - [`Destination::Relay`]: to giaddr:67, at the relay's MAC, which is the request's source
    ///   MAC (the relay sent it);
    /// - [`Destination::Unicast`]: to ciaddr:`client_port`, at the request's source MAC (the
    ///   client itself, or the router it came through);
    /// - [`Destination::Broadcast`]: to 255.255.255.255:`client_port` at ff:ff:ff:ff:ff:ff.
    ///
    /// The request's VLAN tag is kept; the UDP checksum is computed.
    pub fn for_request<T: AsRef<[u8]>>(
        req: &UdpFrame<T>,
        dest: &Destination,
        server_mac: [u8; 6],
        server_ip: Ipv4Addr,
        client_port: u16,
    ) -> ReplyHeaders {
        let (dst_mac, dst_ip, dst_port) = match *dest {
            Destination::Relay(a) => (req.src_mac(), *a.ip(), a.port()),
            Destination::Unicast(a) => (req.src_mac(), *a.ip(), client_port),
            Destination::Broadcast { .. } => (BROADCAST_MAC, Ipv4Addr::BROADCAST, client_port),
        };
        ReplyHeaders {
            src_mac: server_mac,
            dst_mac,
            vlan: req.vlan(),
            src_ip: server_ip,
            dst_ip,
            src_port: SERVER_PORT,
            dst_port,
            ttl: DEFAULT_TTL,
            udp_checksum: true,
        }
    }

    /// Bytes of headers in front of the payload: 42, or 46 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        ETH_HEADER_LEN
            + if self.vlan.is_some() { VLAN_TAG_LEN } else { 0 }
            + IPV4_HEADER_LEN
            + UDP_HEADER_LEN
    }

    /// Writes the headers into `frame[..header_len()]` for the `payload_len` bytes of payload
    /// already at `frame[header_len()..]`, checksums included; returns the frame length.
    pub fn emit(&self, frame: &mut [u8], payload_len: usize) -> Result<usize, FrameError> {
        let hl = self.header_len();
        let udp_len = UDP_HEADER_LEN + payload_len;
        let ip_total = IPV4_HEADER_LEN + udp_len;
        let ip_total16 = u16::try_from(ip_total).map_err(|_| FrameError::PayloadTooLarge)?;
        let frame_len = hl + payload_len;
        let f = frame
            .get_mut(..frame_len)
            .ok_or(FrameError::BufferTooSmall)?;

        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        let mut at = 12;
        if let Some(tag) = self.vlan {
            f[12..14].copy_from_slice(&tag.tpid.to_be_bytes());
            f[14..16].copy_from_slice(&tag.tci.to_be_bytes());
            at = 16;
        }
        f[at..at + 2].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = at + 2;

        let h = &mut f[ip..ip + IPV4_HEADER_LEN];
        h[0] = 0x45; // version 4, IHL 5
        h[1] = 0; // DSCP/ECN
        h[2..4].copy_from_slice(&ip_total16.to_be_bytes());
        h[4..6].copy_from_slice(&[0, 0]); // identification: unfragmented datagram
        h[6..8].copy_from_slice(&[0, 0]); // flags, fragment offset
        h[8] = self.ttl;
        h[9] = IPPROTO_UDP;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src_ip.octets());
        h[16..20].copy_from_slice(&self.dst_ip.octets());
        let c = checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());

        let udp = ip + IPV4_HEADER_LEN;
        // udp_len <= ip_total, which fits in u16.
        let udp_len16 = udp_len as u16;
        let u = &mut f[udp..];
        u[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        u[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        u[4..6].copy_from_slice(&udp_len16.to_be_bytes());
        u[6..8].copy_from_slice(&[0, 0]);
        if self.udp_checksum {
            let c = udp_checksum(self.src_ip, self.dst_ip, &f[udp..]);
            f[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
        }
        Ok(frame_len)
    }
}

/// The Internet checksum (RFC 1071) of `data`: the one's complement of the one's-complement
/// sum of its 16-bit big-endian words (an odd last byte is padded with zero). Over a header
/// that contains its own correct checksum the result is 0.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// The UDP checksum over the IPv4 pseudo-header and `datagram` (UDP header with a zero
/// checksum field, plus payload); a result of 0 is sent as 0xffff (RFC 768).
pub fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, datagram: &[u8]) -> u16 {
    let mut s = sum(0, &src.octets());
    s = sum(s, &dst.octets());
    s += u64::from(IPPROTO_UDP);
    s += datagram.len() as u64;
    let c = !fold(sum(s, datagram));
    if c == 0 {
        0xffff
    } else {
        c
    }
}

fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for w in chunks.by_ref() {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    // The loop leaves s <= 0xffff.
    s as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    /// Independent reference: RFC 1071's byte-order-independent form, summing the even-offset
    /// and odd-offset bytes separately and folding with end-around carry at the end.
    fn ref_checksum(data: &[u8]) -> u16 {
        let (mut hi, mut lo) = (0u32, 0u32);
        for (i, b) in data.iter().enumerate() {
            if i % 2 == 0 {
                hi += u32::from(*b);
            } else {
                lo += u32::from(*b);
            }
        }
        let mut s = (hi << 8) + lo;
        while s >> 16 != 0 {
            s = (s >> 16) + (s & 0xffff);
        }
        !(s as u16)
    }

    const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

    /// A request frame: optional VLAN tag, IHL `ihl` words (options filled with NOP = 1),
    /// UDP 68 -> 67, `payload`, and `pad` bytes of Ethernet padding after the datagram.
    fn request(vlan: Option<u16>, ihl: u8, frag: u16, payload: &[u8], pad: usize) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&BROADCAST_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        if let Some(tci) = vlan {
            f.extend_from_slice(&TPID_8021Q.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = f.len();
        let hl = usize::from(ihl) * 4;
        let total = (hl + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x40 | ihl, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34]);
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[64, 17, 0, 0]);
        f.extend_from_slice(&[10, 1, 2, 3]);
        f.extend_from_slice(&[255, 255, 255, 255]);
        f.resize(ip + hl, 1);
        let c = ref_checksum(&f[ip..ip + hl]);
        f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&68u16.to_be_bytes());
        f.extend_from_slice(&67u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0xab, 0xcd]); // a CHECKSUM_PARTIAL-style "wrong" value
        f.extend_from_slice(payload);
        f.resize(f.len() + pad, 0);
        f
    }

    #[test]
    fn rfc1071_example_and_wikipedia_ipv4_header() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
        assert_eq!(checksum(&d), ref_checksum(&d));
        // A well-known IPv4 header whose checksum field holds 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        // Odd lengths pad with a zero byte.
        assert_eq!(checksum(&[0xff]), ref_checksum(&[0xff, 0x00]));
        assert_eq!(checksum(&[1, 2, 3]), ref_checksum(&[1, 2, 3]));
    }

    #[test]
    fn parses_plain_vlan_and_ip_options() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for (vlan, ihl) in [(None, 5), (Some(0x2064), 5), (None, 6), (Some(7), 15)] {
            let f = request(vlan, ihl, 0, &payload, 0);
            let v = UdpFrame::new_checked(&f[..]).expect("valid frame");
            assert_eq!(v.vlan().map(|t| t.tci), vlan);
            assert_eq!(v.ip_header_len(), usize::from(ihl) * 4);
            assert_eq!((v.src_port(), v.dst_port()), (68, 67));
            assert_eq!(v.src_ip(), Ipv4Addr::new(10, 1, 2, 3));
            assert_eq!(v.dst_ip(), Ipv4Addr::BROADCAST);
            assert_eq!(v.src_mac(), CLIENT_MAC);
            assert_eq!(v.dst_mac(), BROADCAST_MAC);
            assert_eq!(v.ttl(), 64);
            assert!(v.ipv4_checksum_ok());
            assert_eq!(v.udp_checksum(), 0xabcd);
            assert_eq!(v.payload(), &payload[..]);
            assert_eq!(&f[v.payload_offset()..], &payload[..]);
        }
    }

    #[test]
    fn ethernet_padding_after_the_datagram_is_ignored() {
        let f = request(None, 5, 0, &[1, 2, 3], 15);
        let v = UdpFrame::new_checked(&f[..]).unwrap();
        assert_eq!(v.payload(), &[1, 2, 3]);
    }

    #[test]
    fn rejects_what_it_cannot_answer() {
        let good = request(None, 5, 0, &[9; 40], 0);
        // Every truncation point fails cleanly.
        for n in 0..good.len() {
            assert!(UdpFrame::new_checked(&good[..n]).is_err(), "length {n}");
        }
        let err = |f: &[u8]| UdpFrame::new_checked(f).unwrap_err();
        // Fragments: MF set, or a non-zero offset. DF alone is fine.
        assert_eq!(
            err(&request(None, 5, 0x2000, &[0; 8], 0)),
            FrameError::Fragment
        );
        assert_eq!(
            err(&request(None, 5, 0x0001, &[0; 8], 0)),
            FrameError::Fragment
        );
        assert!(UdpFrame::new_checked(&request(None, 5, 0x4000, &[0; 8], 0)[..]).is_ok());
        // Not UDP.
        let mut f = good.clone();
        f[14 + 9] = 6;
        assert_eq!(err(&f), FrameError::NotUdp(6));
        // IHL 4, version 6.
        let mut f = good.clone();
        f[14] = 0x44;
        assert_eq!(err(&f), FrameError::BadIpv4Header);
        let mut f = good.clone();
        f[14] = 0x65;
        assert_eq!(err(&f), FrameError::BadIpv4Header);
        // ARP, and a second VLAN tag.
        let mut f = good.clone();
        f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(err(&f), FrameError::NotIpv4(0x0806));
        let mut f = request(Some(1), 5, 0, &[0; 8], 0);
        f[16..18].copy_from_slice(&TPID_8021Q.to_be_bytes());
        assert_eq!(err(&f), FrameError::NotIpv4(TPID_8021Q));
        // UDP length past the IP payload, and under 8.
        let mut f = good.clone();
        f[34 + 4..34 + 6].copy_from_slice(&49u16.to_be_bytes());
        assert_eq!(err(&f), FrameError::BadUdpLength);
        f[34 + 4..34 + 6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(err(&f), FrameError::BadUdpLength);
        // IP total length past the frame.
        let mut f = good.clone();
        f[16..18].copy_from_slice(&(good.len() as u16).to_be_bytes());
        assert_eq!(err(&f), FrameError::Truncated);
    }

    /// Checks the emitted headers field by field and both checksums against `ref_checksum`.
    fn check_reply(f: &[u8], h: &ReplyHeaders, payload: &[u8]) {
        let v = UdpFrame::new_checked(f).expect("emitted frame parses");
        assert_eq!(v.dst_mac(), h.dst_mac);
        assert_eq!(v.src_mac(), h.src_mac);
        assert_eq!(v.vlan(), h.vlan);
        assert_eq!((v.src_ip(), v.dst_ip()), (h.src_ip, h.dst_ip));
        assert_eq!((v.src_port(), v.dst_port()), (h.src_port, h.dst_port));
        assert_eq!(v.payload(), payload);
        let ip = v.ip_offset();
        let hdr = &f[ip..ip + 20];
        // Independently recompute the IPv4 checksum with the field zeroed.
        let mut z = hdr.to_vec();
        z[10] = 0;
        z[11] = 0;
        assert_eq!(be16(hdr, 10), ref_checksum(&z));
        assert!(v.ipv4_checksum_ok());
        // Independently recompute the UDP checksum over an explicit pseudo-header.
        let udp = &f[ip + 20..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&h.src_ip.octets());
        pseudo.extend_from_slice(&h.dst_ip.octets());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        let mut d = udp.to_vec();
        d[6] = 0;
        d[7] = 0;
        pseudo.extend_from_slice(&d);
        let want = match ref_checksum(&pseudo) {
            0 => 0xffff,
            c => c,
        };
        if h.udp_checksum {
            assert_eq!(v.udp_checksum(), want);
            // And the receiver's check: summing everything, checksum included, gives 0.
            let mut all = pseudo.clone();
            all[12 + 6..12 + 8].copy_from_slice(&want.to_be_bytes());
            assert_eq!(ref_checksum(&all), 0);
        } else {
            assert_eq!(v.udp_checksum(), 0);
        }
    }

    #[test]
    fn broadcast_reply_headers_and_checksums() {
        let req_payload = [7u8; 300];
        let req = request(Some(0x0123), 6, 0, &req_payload, 0);
        let req = UdpFrame::new_checked(&req[..]).unwrap();
        let h = ReplyHeaders::for_request(
            &req,
            &Destination::Broadcast { iface: 0 },
            SERVER_MAC,
            Ipv4Addr::new(10, 0, 0, 1),
            68,
        );
        assert_eq!(h.dst_mac, BROADCAST_MAC);
        assert_eq!(h.dst_ip, Ipv4Addr::BROADCAST);
        assert_eq!((h.src_port, h.dst_port), (67, 68));
        assert_eq!(h.header_len(), 46);
        let payload: Vec<u8> = (0..301u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut buf = [0u8; 2048];
        buf[46..46 + payload.len()].copy_from_slice(&payload);
        let n = h.emit(&mut buf, payload.len()).unwrap();
        assert_eq!(n, 46 + 301);
        check_reply(&buf[..n], &h, &payload);
        // Byte-exact prefix: Ethernet + tag + the fixed IPv4 fields.
        assert_eq!(
            &buf[..24],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x81, 0x00, 0x01, 0x23,
                0x08, 0x00, 0x45, 0x00, 0x01, 0x49, 0x00, 0x00
            ]
        );
    }

    #[test]
    fn relay_and_unicast_replies_go_to_the_senders_mac() {
        let req = request(None, 5, 0, &[1; 250], 0);
        let req = UdpFrame::new_checked(&req[..]).unwrap();
        let relay = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 1), 67);
        let h = ReplyHeaders::for_request(
            &req,
            &Destination::Relay(relay),
            SERVER_MAC,
            Ipv4Addr::new(10, 0, 0, 1),
            68,
        );
        assert_eq!(
            (h.dst_mac, h.dst_ip, h.dst_port),
            (CLIENT_MAC, *relay.ip(), 67)
        );
        assert_eq!(h.header_len(), 42);
        let mut buf = vec![0u8; 42 + 251];
        buf[42..].fill(0x5a);
        let n = h.emit(&mut buf, 251).unwrap();
        check_reply(&buf[..n], &h, &[0x5a; 251]);

        let ci = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 77), 68);
        let mut h = ReplyHeaders::for_request(
            &req,
            &Destination::Unicast(ci),
            SERVER_MAC,
            Ipv4Addr::new(10, 0, 0, 1),
            1068,
        );
        assert_eq!(
            (h.dst_mac, h.dst_ip, h.dst_port),
            (CLIENT_MAC, *ci.ip(), 1068)
        );
        h.udp_checksum = false;
        let n = h.emit(&mut buf, 251).unwrap();
        check_reply(&buf[..n], &h, &[0x5a; 251]);
    }

    #[test]
    fn udp_checksum_of_zero_is_sent_as_ffff() {
        // Search payloads until one sums to a zero checksum; it must come out as 0xffff.
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut d = vec![0, 67, 0, 68, 0, 10, 0, 0, 0, 0];
        let mut found = false;
        for x in 0..=u16::MAX {
            d[8..10].copy_from_slice(&x.to_be_bytes());
            let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 10];
            pseudo.extend_from_slice(&d);
            if ref_checksum(&pseudo) == 0 {
                assert_eq!(udp_checksum(src, dst, &d), 0xffff);
                found = true;
                break;
            }
        }
        assert!(found);
    }

    #[test]
    fn emit_refuses_small_buffers() {
        let req = request(None, 5, 0, &[1; 10], 0);
        let req = UdpFrame::new_checked(&req[..]).unwrap();
        let h = ReplyHeaders::for_request(
            &req,
            &Destination::Broadcast { iface: 0 },
            SERVER_MAC,
            Ipv4Addr::new(10, 0, 0, 1),
            68,
        );
        let mut buf = [0u8; 100];
        assert_eq!(h.emit(&mut buf, 59), Err(FrameError::BufferTooSmall));
        assert_eq!(h.emit(&mut buf, 58), Ok(100));
        let mut big = vec![0u8; 70_000];
        assert_eq!(
            h.emit(&mut big, 65_535 - 27),
            Err(FrameError::PayloadTooLarge)
        );
    }
}
