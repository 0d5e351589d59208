//! The generator's DHCP messages: requests as a relay agent forwards them or as a client on the
//! server's link sends them ([`Path`]), how each leaves ([`Via`]), and a checked view of the
//! server's replies.
//!
//! Requests are built into a fixed-size buffer ([`REQUEST_LEN`] bytes, the BOOTP minimum) without
//! allocating. Replies are parsed by [`Reply::parse`], which validates the whole frame (header,
//! magic cookie, every option length, option overload) and never panics: a bad reply is an
//! [`ReplyError`], counted by the caller.

use std::net::Ipv4Addr;

use tandem_dataplane::wire::{
    opt, MessageType, HEADER_LEN, MAGIC, OPTIONS_OFFSET, OP_REPLY, OP_REQUEST,
};

/// Length of every request the generator sends (the 300-byte BOOTP minimum; all options fit).
pub const REQUEST_LEN: usize = 300;

/// Parameter request list sent in DISCOVER and REQUEST (mask, routers, DNS, domain, lease time,
/// server id, T1, T2), like a typical client.
pub const PARAMETER_REQUEST_LIST: [u8; 8] = [1, 3, 6, 15, 51, 54, 58, 59];

/// Maximum DHCP message size the generator announces (option 57).
pub const MAX_MESSAGE_SIZE: u16 = 1500;

/// The MAC address of simulated client `index` in a run with `seed`: locally administered
/// unicast `02:SS:ii:ii:ii:ii` (SS = seed, ii = index, big-endian). Distinct for every index
/// below 2^32, and distinct across seeds.
pub fn client_mac(seed: u8, index: u32) -> [u8; 6] {
    let i = index.to_be_bytes();
    [0x02, seed, i[0], i[1], i[2], i[3]]
}

/// Longest host name [`client_host_name`] writes: `c` + 10 digits + `-` + 3 digits.
pub const HOST_NAME_MAX: usize = 15;

/// The host name (option 12) of the simulated client with `mac` ([`client_mac`]`(seed, i)`):
/// `c<i>` (decimal index) for seed 0, `c<i>-<seed>` otherwise, so distinct for every client of
/// every seed and a valid DNS label (letters, digits, hyphen). Written into `out`; returns the
/// length. No allocation (it is built for every DISCOVER and REQUEST).
pub fn client_host_name(mac: &[u8; 6], out: &mut [u8; HOST_NAME_MAX]) -> usize {
    fn digits(mut v: u32, out: &mut [u8], at: usize) -> usize {
        let mut tmp = [0u8; 10];
        let mut n = 0;
        loop {
            tmp[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for k in 0..n {
            out[at + k] = tmp[n - 1 - k];
        }
        at + n
    }
    out[0] = b'c';
    let index = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let mut len = digits(index, out, 1);
    if mac[1] != 0 {
        out[len] = b'-';
        len = digits(u32::from(mac[1]), out, len + 1);
    }
    len
}

/// Who sends a request: the simulated client's hardware address, whether it also sends a
/// client identifier (option 61 = hardware type 1 followed by the MAC), and whether it sends a
/// host name (option 12 = [`client_host_name`], in DISCOVER and every REQUEST).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// Client hardware address (Ethernet).
    pub mac: [u8; 6],
    /// Send option 61.
    pub client_id: bool,
    /// Send option 12 (what a server with dynamic DNS registers).
    pub host_name: bool,
}

/// Which way the generator's requests reach the server.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// Through a relay agent at this address: giaddr = the address, hops 1, flags 0; every
    /// request goes unicast relay:67 → server:67 and the server answers giaddr:67.
    Relay(Ipv4Addr),
    /// As clients on the server's own link: giaddr 0, hops 0, the BROADCAST flag set while the
    /// client has no address (so the server answers 255.255.255.255:68 without ARP); requests
    /// without ciaddr are broadcast 0.0.0.0:68 → 255.255.255.255:67, those with ciaddr (RELEASE,
    /// RENEWING REQUEST) go unicast ciaddr:68 → server id:67.
    Direct,
}

impl Path {
    /// The giaddr of every request (0.0.0.0 when direct), which the server echoes in replies.
    pub fn giaddr(self) -> Ipv4Addr {
        match self {
            Path::Relay(a) => a,
            Path::Direct => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// `"relay"` or `"direct"` (the report's `path`).
    pub fn name(self) -> &'static str {
        match self {
            Path::Relay(_) => "relay",
            Path::Direct => "direct",
        }
    }

    /// How a request of `kind` leaves on this path; `server_id` is the server the client got
    /// its lease from (the unicast destination of RELEASE and RENEWING REQUEST when direct).
    pub fn via(self, kind: &RequestKind, server_id: Ipv4Addr) -> Via {
        match (self, kind) {
            (Path::Relay(_), _) => Via::Relayed,
            (Path::Direct, RequestKind::Renew { ciaddr } | RequestKind::Release { ciaddr, .. }) => {
                Via::Unicast {
                    from: *ciaddr,
                    to: server_id,
                }
            }
            (Path::Direct, _) => Via::Broadcast,
        }
    }
}

/// How one request leaves the generator (the I/O shells turn it into addresses and ports).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// Relay agent → server, unicast, port 67 → 67 ([`Path::Relay`]).
    Relayed,
    /// A client without an address: 0.0.0.0:68 → 255.255.255.255:67, Ethernet broadcast.
    Broadcast,
    /// A client with an address: `from`:68 → `to`:67, unicast to the server.
    Unicast {
        /// The client's address (ciaddr).
        from: Ipv4Addr,
        /// The server identifier the lease came from.
        to: Ipv4Addr,
    },
}

/// Which request to build.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPREQUEST in SELECTING state: option 50 = the offered address, option 54 = the server
    /// that offered it, ciaddr zero.
    Select {
        /// The OFFER's yiaddr.
        requested: Ipv4Addr,
        /// The OFFER's server identifier.
        server_id: Ipv4Addr,
    },
    /// DHCPREQUEST in RENEWING state: ciaddr = the leased address, no option 50 or 54,
    /// unicast to the server that granted the lease.
    Renew {
        /// The leased address.
        ciaddr: Ipv4Addr,
    },
    /// DHCPREQUEST in REBINDING state: the same message as [`RequestKind::Renew`], broadcast
    /// (to any server) on the direct path.
    Rebind {
        /// The leased address.
        ciaddr: Ipv4Addr,
    },
    /// DHCPRELEASE: ciaddr = the leased address, option 54 = the server.
    Release {
        /// The leased address.
        ciaddr: Ipv4Addr,
        /// The server that granted the lease.
        server_id: Ipv4Addr,
    },
    /// DHCPDECLINE (the address was found in use): option 50 = the address, option 54 = the
    /// server, ciaddr zero (RFC 2131 table 5).
    Decline {
        /// The declined address.
        requested: Ipv4Addr,
        /// The server that offered it.
        server_id: Ipv4Addr,
    },
}

impl RequestKind {
    /// The DHCP message type of this request.
    pub fn message_type(&self) -> MessageType {
        match self {
            RequestKind::Discover => MessageType::Discover,
            RequestKind::Select { .. } | RequestKind::Renew { .. } | RequestKind::Rebind { .. } => {
                MessageType::Request
            }
            RequestKind::Release { .. } => MessageType::Release,
            RequestKind::Decline { .. } => MessageType::Decline,
        }
    }
}

/// The BROADCAST bit of the `flags` field (RFC 2131 §2).
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Write one request into `buf` and return its length ([`REQUEST_LEN`]).
///
/// Header: BOOTREQUEST, Ethernet, hlen 6, `xid`, `secs`, the ciaddr of the kind, chaddr = the
/// MAC, and by `path`: [`Path::Relay`] hops 1 (one relay), flags 0, giaddr = the relay;
/// [`Path::Direct`] hops 0, giaddr 0, flags = BROADCAST unless the kind carries a ciaddr (a
/// client with an address takes unicast). Options: 53, 61 (if asked), 50/54 as the kind
/// requires, 12 (if asked; not in RELEASE or DECLINE), 57 and 55 (not in RELEASE or DECLINE),
/// END, then zero padding.
pub fn build_request(
    buf: &mut [u8; REQUEST_LEN],
    ident: &Ident,
    xid: u32,
    secs: u16,
    path: Path,
    kind: &RequestKind,
) -> usize {
    buf.fill(0);
    buf[0] = OP_REQUEST;
    buf[1] = 1;
    buf[2] = 6;
    buf[3] = match path {
        Path::Relay(_) => 1,
        Path::Direct => 0,
    };
    buf[4..8].copy_from_slice(&xid.to_be_bytes());
    buf[8..10].copy_from_slice(&secs.to_be_bytes());
    let ciaddr = match kind {
        RequestKind::Renew { ciaddr }
        | RequestKind::Rebind { ciaddr }
        | RequestKind::Release { ciaddr, .. } => *ciaddr,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    if path == Path::Direct && ciaddr.is_unspecified() {
        buf[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    }
    buf[12..16].copy_from_slice(&ciaddr.octets());
    buf[24..28].copy_from_slice(&path.giaddr().octets());
    buf[28..34].copy_from_slice(&ident.mac);
    buf[HEADER_LEN..OPTIONS_OFFSET].copy_from_slice(&MAGIC);
    let mut w = OptWriter {
        buf,
        pos: OPTIONS_OFFSET,
    };
    w.put(opt::MESSAGE_TYPE, &[kind.message_type() as u8]);
    if ident.client_id {
        let m = ident.mac;
        w.put(opt::CLIENT_ID, &[1, m[0], m[1], m[2], m[3], m[4], m[5]]);
    }
    match kind {
        RequestKind::Select {
            requested,
            server_id,
        }
        | RequestKind::Decline {
            requested,
            server_id,
        } => {
            w.put(opt::REQUESTED_IP, &requested.octets());
            w.put(opt::SERVER_ID, &server_id.octets());
        }
        RequestKind::Release { server_id, .. } => {
            w.put(opt::SERVER_ID, &server_id.octets());
        }
        RequestKind::Discover | RequestKind::Renew { .. } | RequestKind::Rebind { .. } => {}
    }
    if !matches!(
        kind,
        RequestKind::Release { .. } | RequestKind::Decline { .. }
    ) {
        if ident.host_name {
            let mut name = [0u8; HOST_NAME_MAX];
            let n = client_host_name(&ident.mac, &mut name);
            w.put(opt::HOSTNAME, &name[..n]);
        }
        w.put(opt::MAX_MESSAGE_SIZE, &MAX_MESSAGE_SIZE.to_be_bytes());
        w.put(opt::PARAMETER_REQUEST_LIST, &PARAMETER_REQUEST_LIST);
    }
    w.end();
    REQUEST_LEN
}

/// Appends options; the largest request (every option above, the longest host name included)
/// takes 296 of the 300 bytes, so no bounds can be exceeded (checked by the `largest_request_fits` test).
struct OptWriter<'a> {
    buf: &'a mut [u8; REQUEST_LEN],
    pos: usize,
}

impl OptWriter<'_> {
    fn put(&mut self, code: u8, value: &[u8]) {
        let end = self.pos + 2 + value.len();
        // Invariant (see the type's doc): every request's options fit in REQUEST_LEN - 1 bytes.
        debug_assert!(end < REQUEST_LEN);
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst[0] = code;
            dst[1] = value.len() as u8;
            dst[2..].copy_from_slice(value);
            self.pos = end;
        }
    }

    fn end(&mut self) {
        if let Some(b) = self.buf.get_mut(self.pos) {
            *b = opt::END;
        }
    }
}

/// Why a reply was not accepted. Counted per reason, never a panic.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// Shorter than the fixed header plus magic cookie.
    #[error("truncated: shorter than the 240-byte header")]
    Truncated,
    /// The magic cookie is wrong.
    #[error("bad magic cookie")]
    BadMagic,
    /// op is not BOOTREPLY.
    #[error("not a BOOTREPLY")]
    NotReply,
    /// hlen is greater than 16.
    #[error("hardware address length over 16")]
    BadHlen,
    /// An option's length runs past the end of its field.
    #[error("option length runs past the end")]
    OptionOverrun,
    /// Option 52 (overload) is malformed, repeated or inside file/sname.
    #[error("bad option overload")]
    BadOverload,
    /// No option 53.
    #[error("missing DHCP message type")]
    MissingMessageType,
    /// Option 53 has a bad length or is not OFFER, ACK or NAK.
    #[error("bad DHCP message type for a server reply")]
    BadMessageType,
    /// Option 54 or 51 has a length other than 4.
    #[error("bad option length")]
    BadOptionLength,
}

impl ReplyError {
    /// Every reason, in a fixed order (for per-reason counters).
    pub const ALL: [ReplyError; 9] = [
        ReplyError::Truncated,
        ReplyError::BadMagic,
        ReplyError::NotReply,
        ReplyError::BadHlen,
        ReplyError::OptionOverrun,
        ReplyError::BadOverload,
        ReplyError::MissingMessageType,
        ReplyError::BadMessageType,
        ReplyError::BadOptionLength,
    ];

    /// A short stable name (used as a JSON key).
    pub fn name(self) -> &'static str {
        match self {
            ReplyError::Truncated => "truncated",
            ReplyError::BadMagic => "bad_magic",
            ReplyError::NotReply => "not_reply",
            ReplyError::BadHlen => "bad_hlen",
            ReplyError::OptionOverrun => "option_overrun",
            ReplyError::BadOverload => "bad_overload",
            ReplyError::MissingMessageType => "missing_message_type",
            ReplyError::BadMessageType => "bad_message_type",
            ReplyError::BadOptionLength => "bad_option_length",
        }
    }

    /// Position of this reason in [`ReplyError::ALL`].
    pub fn index(self) -> usize {
        ReplyError::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

/// The fields of a server reply the generator checks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub msg_type: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// Client address the reply echoes (ACK to RENEWING).
    pub ciaddr: Ipv4Addr,
    /// The address offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Hardware address length.
    pub hlen: u8,
    /// The 16-byte chaddr field.
    pub chaddr: [u8; 16],
    /// Option 54, server identifier.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51, lease time in seconds.
    pub lease_time: Option<u32>,
}

impl Reply {
    /// Validate `buf` (a UDP payload) as a DHCP BOOTREPLY of type OFFER, ACK or NAK.
    ///
    /// Options are read from the options field, then `file` and `sname` when option 52 says
    /// so (RFC 2131 §4.1). The first instance of options 51, 53 and 54 is used.
    pub fn parse(buf: &[u8]) -> Result<Reply, ReplyError> {
        if buf.len() < OPTIONS_OFFSET {
            return Err(ReplyError::Truncated);
        }
        if buf[HEADER_LEN..OPTIONS_OFFSET] != MAGIC {
            return Err(ReplyError::BadMagic);
        }
        if buf[0] != OP_REPLY {
            return Err(ReplyError::NotReply);
        }
        if buf[2] > 16 {
            return Err(ReplyError::BadHlen);
        }
        let mut found = Found::default();
        let overload = scan(buf, OPTIONS_OFFSET, buf.len(), true, &mut found)?;
        if overload & 1 != 0 {
            scan(buf, 108, 236, false, &mut found)?;
        }
        if overload & 2 != 0 {
            scan(buf, 44, 108, false, &mut found)?;
        }
        let mt = found.msg_type.ok_or(ReplyError::MissingMessageType)?;
        let msg_type = match MessageType::from_u8(mt) {
            Some(m @ (MessageType::Offer | MessageType::Ack | MessageType::Nak)) => m,
            _ => return Err(ReplyError::BadMessageType),
        };
        let addr = |o: usize| Ipv4Addr::new(buf[o], buf[o + 1], buf[o + 2], buf[o + 3]);
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&buf[28..44]);
        Ok(Reply {
            msg_type,
            xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ciaddr: addr(12),
            yiaddr: addr(16),
            giaddr: addr(24),
            hlen: buf[2],
            chaddr,
            server_id: found.server_id.map(Ipv4Addr::from),
            lease_time: found.lease_time,
        })
    }

    /// The first `hlen` bytes of chaddr.
    pub fn hw(&self) -> &[u8] {
        &self.chaddr[..usize::from(self.hlen.min(16))]
    }
}

#[derive(Default)]
struct Found {
    msg_type: Option<u8>,
    server_id: Option<[u8; 4]>,
    lease_time: Option<u32>,
}

/// Walk one option area of `buf[start..end]`; returns option 52's value when `main`.
fn scan(
    buf: &[u8],
    start: usize,
    end: usize,
    main: bool,
    found: &mut Found,
) -> Result<u8, ReplyError> {
    let mut i = start;
    let mut overload = 0u8;
    while i < end {
        let code = buf[i];
        if code == opt::PAD {
            i += 1;
            continue;
        }
        if code == opt::END {
            break;
        }
        let len = usize::from(
            *buf.get(i + 1)
                .filter(|_| i + 1 < end)
                .ok_or(ReplyError::OptionOverrun)?,
        );
        let v = buf
            .get(i + 2..i + 2 + len)
            .filter(|_| i + 2 + len <= end)
            .ok_or(ReplyError::OptionOverrun)?;
        match code {
            opt::OVERLOAD => {
                if !main || len != 1 || overload != 0 || !(1..=3).contains(&v[0]) {
                    return Err(ReplyError::BadOverload);
                }
                overload = v[0];
            }
            opt::MESSAGE_TYPE if found.msg_type.is_none() => {
                if len != 1 {
                    return Err(ReplyError::BadMessageType);
                }
                found.msg_type = Some(v[0]);
            }
            opt::SERVER_ID if found.server_id.is_none() => {
                let a: [u8; 4] = v.try_into().map_err(|_| ReplyError::BadOptionLength)?;
                found.server_id = Some(a);
            }
            opt::LEASE_TIME if found.lease_time.is_none() => {
                let a: [u8; 4] = v.try_into().map_err(|_| ReplyError::BadOptionLength)?;
                found.lease_time = Some(u32::from_be_bytes(a));
            }
            _ => {}
        }
        i += 2 + len;
    }
    Ok(overload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_dataplane::wire::{ReplyHeader, ReplyWriter, Request};

    const GI: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const SID: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const YI: Ipv4Addr = Ipv4Addr::new(10, 77, 3, 4);

    fn ident(client_id: bool) -> Ident {
        Ident {
            mac: client_mac(7, 0x0102_0304),
            client_id,
            host_name: false,
        }
    }

    fn build(kind: RequestKind, client_id: bool) -> [u8; REQUEST_LEN] {
        let mut b = [0xffu8; REQUEST_LEN];
        let n = build_request(
            &mut b,
            &ident(client_id),
            0xabcd_0001,
            3,
            Path::Relay(GI),
            &kind,
        );
        assert_eq!(n, REQUEST_LEN);
        b
    }

    #[test]
    fn macs_are_distinct_and_locally_administered() {
        assert_eq!(client_mac(7, 0x0102_0304), [2, 7, 1, 2, 3, 4]);
        assert_ne!(client_mac(0, 1), client_mac(1, 1));
        assert_ne!(client_mac(0, 1), client_mac(0, 256));
        let m = client_mac(0, 0);
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
    }

    #[test]
    fn discover_parses_with_the_server_parser() {
        let b = build(RequestKind::Discover, true);
        let r = Request::parse(&b).expect("the server accepts our DISCOVER");
        assert_eq!(r.message_type(), MessageType::Discover);
        assert_eq!(r.xid(), 0xabcd_0001);
        assert_eq!(r.secs(), 3);
        assert_eq!(r.hops(), 1);
        assert_eq!(r.giaddr(), GI);
        assert_eq!(r.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.mac(), Some([2, 7, 1, 2, 3, 4]));
        assert_eq!(r.client_id(), Some(&[1u8, 2, 7, 1, 2, 3, 4][..]));
        assert_eq!(r.requested_ip(), None);
        assert_eq!(r.server_id(), None);
        assert_eq!(r.max_message_size(), Some(1500));
        assert_eq!(
            r.parameter_request_list(),
            Some(&PARAMETER_REQUEST_LIST[..])
        );
        assert!(!r.broadcast());
    }

    #[test]
    fn select_request_carries_offer_fields() {
        let b = build(
            RequestKind::Select {
                requested: YI,
                server_id: SID,
            },
            false,
        );
        let r = Request::parse(&b).unwrap();
        assert_eq!(r.message_type(), MessageType::Request);
        assert_eq!(r.requested_ip(), Some(YI));
        assert_eq!(r.server_id(), Some(SID));
        assert_eq!(r.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.client_id(), None);
        assert_eq!(r.giaddr(), GI);
    }

    #[test]
    fn renew_and_release_set_ciaddr() {
        let b = build(RequestKind::Renew { ciaddr: YI }, false);
        let r = Request::parse(&b).unwrap();
        assert_eq!(r.message_type(), MessageType::Request);
        assert_eq!(r.ciaddr(), YI);
        assert_eq!(r.requested_ip(), None);
        assert_eq!(r.server_id(), None);
        assert_eq!(r.giaddr(), GI);

        let b = build(
            RequestKind::Release {
                ciaddr: YI,
                server_id: SID,
            },
            true,
        );
        let r = Request::parse(&b).unwrap();
        assert_eq!(r.message_type(), MessageType::Release);
        assert_eq!(r.ciaddr(), YI);
        assert_eq!(r.server_id(), Some(SID));
        assert_eq!(r.parameter_request_list(), None);

        let b = build(
            RequestKind::Decline {
                requested: YI,
                server_id: SID,
            },
            false,
        );
        let r = Request::parse(&b).unwrap();
        assert_eq!(r.message_type(), MessageType::Decline);
        assert_eq!(r.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.requested_ip(), Some(YI));
        assert_eq!(r.server_id(), Some(SID));
        assert_eq!(r.parameter_request_list(), None);
    }

    fn build_direct(kind: RequestKind) -> [u8; REQUEST_LEN] {
        let mut b = [0xffu8; REQUEST_LEN];
        let n = build_request(&mut b, &ident(true), 0x0102_0304, 0, Path::Direct, &kind);
        assert_eq!(n, REQUEST_LEN);
        b
    }

    #[test]
    fn direct_requests_are_a_client_s_own() {
        // DISCOVER, SELECTING REQUEST, DECLINE: no address yet, so hops 0, giaddr 0, the
        // BROADCAST flag set (bytes 10..12 = 0x8000), and broadcast on the wire
        let select = RequestKind::Select {
            requested: YI,
            server_id: SID,
        };
        let decline = RequestKind::Decline {
            requested: YI,
            server_id: SID,
        };
        for kind in [RequestKind::Discover, select, decline] {
            let b = build_direct(kind);
            assert_eq!(b[3], 0, "hops: {kind:?}");
            assert_eq!(&b[10..12], &[0x80, 0x00], "flags: {kind:?}");
            assert_eq!(&b[12..16], &[0; 4], "ciaddr: {kind:?}");
            assert_eq!(&b[24..28], &[0; 4], "giaddr: {kind:?}");
            let r = Request::parse(&b).unwrap();
            assert_eq!(r.message_type(), kind.message_type());
            assert_eq!(r.hops(), 0);
            assert!(r.broadcast(), "{kind:?}");
            assert_eq!(r.giaddr(), Ipv4Addr::UNSPECIFIED);
            assert_eq!(r.mac(), Some([2, 7, 1, 2, 3, 4]));
            assert_eq!(Path::Direct.via(&kind, SID), Via::Broadcast);
        }
        // RENEWING REQUEST and RELEASE: the client has ciaddr, takes unicast (flag clear) and
        // sends unicast from ciaddr to the server that leased it
        for kind in [
            RequestKind::Renew { ciaddr: YI },
            RequestKind::Release {
                ciaddr: YI,
                server_id: SID,
            },
        ] {
            let b = build_direct(kind);
            assert_eq!(b[3], 0, "hops: {kind:?}");
            assert_eq!(&b[10..12], &[0, 0], "flags: {kind:?}");
            let r = Request::parse(&b).unwrap();
            assert_eq!(r.ciaddr(), YI);
            assert_eq!(r.giaddr(), Ipv4Addr::UNSPECIFIED);
            assert!(!r.broadcast());
            assert_eq!(
                Path::Direct.via(&kind, SID),
                Via::Unicast { from: YI, to: SID }
            );
        }
        // the relay path: hops 1, flags 0, giaddr set, always relayed
        let b = build(RequestKind::Discover, false);
        assert_eq!(
            (b[3], &b[10..12], &b[24..28]),
            (1, &[0u8, 0][..], &GI.octets()[..])
        );
        assert_eq!(
            Path::Relay(GI).via(&RequestKind::Renew { ciaddr: YI }, SID),
            Via::Relayed
        );
        assert_eq!(Path::Relay(GI).giaddr(), GI);
        assert_eq!(Path::Direct.giaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            (Path::Relay(GI).name(), Path::Direct.name()),
            ("relay", "direct")
        );
    }

    #[test]
    fn largest_request_fits() {
        // Select with a client id has every option; END must be inside the frame and the
        // rest zero padding.
        let b = build(
            RequestKind::Select {
                requested: YI,
                server_id: SID,
            },
            true,
        );
        let end = b[OPTIONS_OFFSET..]
            .iter()
            .position(|&x| x == opt::END)
            .expect("END present")
            + OPTIONS_OFFSET;
        assert!(end < REQUEST_LEN - 1);
        assert!(b[end + 1..].iter().all(|&x| x == 0));
    }

    fn name_of(mac: [u8; 6]) -> String {
        let mut b = [0u8; HOST_NAME_MAX];
        let n = client_host_name(&mac, &mut b);
        String::from_utf8(b[..n].to_vec()).unwrap()
    }

    #[test]
    fn host_names_are_distinct_dns_labels() {
        assert_eq!(name_of(client_mac(0, 0)), "c0");
        assert_eq!(name_of(client_mac(0, 19_999)), "c19999");
        assert_eq!(name_of(client_mac(7, 0x0102_0304)), "c16909060-7");
        assert_eq!(name_of(client_mac(255, u32::MAX)), "c4294967295-255");
        assert_eq!(name_of(client_mac(255, u32::MAX)).len(), HOST_NAME_MAX);
        let mut seen = std::collections::HashSet::new();
        for seed in [0u8, 1, 10] {
            for i in (0..2000u32).chain([99_999, 1 << 24]) {
                let n = name_of(client_mac(seed, i));
                assert!(n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
                assert!(seen.insert(n), "duplicate name for seed {seed} index {i}");
            }
        }
    }

    #[test]
    fn host_name_is_option_12_in_discover_and_requests_only() {
        let id = Ident {
            mac: client_mac(0, 4242),
            client_id: true,
            host_name: true,
        };
        let kinds = [
            RequestKind::Discover,
            RequestKind::Select {
                requested: YI,
                server_id: SID,
            },
            RequestKind::Renew { ciaddr: YI },
            RequestKind::Rebind { ciaddr: YI },
            RequestKind::Release {
                ciaddr: YI,
                server_id: SID,
            },
            RequestKind::Decline {
                requested: YI,
                server_id: SID,
            },
        ];
        for kind in kinds {
            for path in [Path::Relay(GI), Path::Direct] {
                let mut b = [0u8; REQUEST_LEN];
                build_request(&mut b, &id, 1, 0, path, &kind);
                let r = Request::parse(&b).expect("the server parses it");
                let sent = matches!(
                    kind,
                    RequestKind::Discover
                        | RequestKind::Select { .. }
                        | RequestKind::Renew { .. }
                        | RequestKind::Rebind { .. }
                );
                assert_eq!(
                    r.option(opt::HOSTNAME),
                    sent.then_some(&b"c4242"[..]),
                    "{kind:?} {path:?}"
                );
                // the wire form: code 12, length 5, the name
                let at = b[OPTIONS_OFFSET..]
                    .windows(7)
                    .position(|w| w == [12, 5, b'c', b'4', b'2', b'4', b'2']);
                assert_eq!(at.is_some(), sent, "{kind:?}");
                // the other options are still there
                assert_eq!(r.message_type(), kind.message_type());
                assert_eq!(r.client_id(), Some(&[1u8, 2, 0, 0, 0, 0x10, 0x92][..]));
            }
        }
        // without the flag, no option 12
        let mut b = [0u8; REQUEST_LEN];
        build_request(
            &mut b,
            &Ident {
                host_name: false,
                ..id
            },
            1,
            0,
            Path::Relay(GI),
            &RequestKind::Discover,
        );
        assert_eq!(Request::parse(&b).unwrap().option(opt::HOSTNAME), None);
    }

    #[test]
    fn largest_request_with_the_longest_host_name_fits() {
        // 10 digits and a 3-digit seed, and no 0xff byte in the MAC (option 61 carries it)
        let id = Ident {
            mac: client_mac(199, 3_333_333_333),
            client_id: true,
            host_name: true,
        };
        let mut b = [0u8; REQUEST_LEN];
        build_request(
            &mut b,
            &id,
            1,
            0,
            Path::Relay(GI),
            &RequestKind::Select {
                requested: YI,
                server_id: SID,
            },
        );
        let r = Request::parse(&b).unwrap();
        assert_eq!(r.option(opt::HOSTNAME), Some(&b"c3333333333-199"[..]));
        assert_eq!(
            r.parameter_request_list(),
            Some(&PARAMETER_REQUEST_LIST[..])
        );
        let end = b[OPTIONS_OFFSET..]
            .iter()
            .position(|&x| x == opt::END)
            .expect("END present")
            + OPTIONS_OFFSET;
        assert_eq!(end, 295);
        assert!(b[end + 1..].iter().all(|&x| x == 0));
    }

    fn reply(mt: MessageType, f: impl FnOnce(&mut ReplyWriter<'_>)) -> Vec<u8> {
        let mut buf = vec![0u8; 600];
        let hdr = ReplyHeader {
            xid: 0xabcd_0001,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: YI,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: GI,
            htype: 1,
            hlen: 6,
        };
        let mut ch = [0u8; 16];
        ch[..6].copy_from_slice(&ident(false).mac);
        let mut w = ReplyWriter::new(&mut buf, 600, 0, &hdr, &ch, mt).unwrap();
        f(&mut w);
        let n = w.finish();
        buf.truncate(n);
        buf
    }

    #[test]
    fn parses_server_replies() {
        let b = reply(MessageType::Offer, |w| {
            w.option_addr(opt::SERVER_ID, SID);
            w.option_u32(opt::LEASE_TIME, 3600);
        });
        let r = Reply::parse(&b).unwrap();
        assert_eq!(r.msg_type, MessageType::Offer);
        assert_eq!(r.xid, 0xabcd_0001);
        assert_eq!(r.yiaddr, YI);
        assert_eq!(r.giaddr, GI);
        assert_eq!(r.hw(), &ident(false).mac);
        assert_eq!(r.server_id, Some(SID));
        assert_eq!(r.lease_time, Some(3600));
        let b = reply(MessageType::Nak, |w| {
            w.option_addr(opt::SERVER_ID, SID);
        });
        assert_eq!(Reply::parse(&b).unwrap().msg_type, MessageType::Nak);
    }

    #[test]
    fn rejects_bad_replies() {
        let good = reply(MessageType::Ack, |w| {
            w.option_addr(opt::SERVER_ID, SID);
        });
        assert_eq!(Reply::parse(&good[..239]), Err(ReplyError::Truncated));
        assert_eq!(Reply::parse(&[]), Err(ReplyError::Truncated));
        let mut b = good.clone();
        b[237] = 0;
        assert_eq!(Reply::parse(&b), Err(ReplyError::BadMagic));
        let mut b = good.clone();
        b[0] = OP_REQUEST;
        assert_eq!(Reply::parse(&b), Err(ReplyError::NotReply));
        let mut b = good.clone();
        b[2] = 17;
        assert_eq!(Reply::parse(&b), Err(ReplyError::BadHlen));
        // our own requests are not replies
        let req = build(RequestKind::Discover, false);
        assert_eq!(Reply::parse(&req), Err(ReplyError::NotReply));
        // a client message type in a BOOTREPLY
        let mut b = good.clone();
        b[242] = MessageType::Request as u8;
        assert_eq!(Reply::parse(&b), Err(ReplyError::BadMessageType));
        let mut b = good.clone();
        b[242] = 99;
        assert_eq!(Reply::parse(&b), Err(ReplyError::BadMessageType));
        // server id of length 3
        let b = reply(MessageType::Ack, |w| {
            w.option(opt::SERVER_ID, &[1, 2, 3]);
        });
        assert_eq!(Reply::parse(&b), Err(ReplyError::BadOptionLength));
        // an option running past the end of the frame (END is at 249, after 53 and 54)
        let mut c = good.clone();
        c[249] = 12;
        c[250] = 255;
        assert_eq!(Reply::parse(&c), Err(ReplyError::OptionOverrun));
        // a code byte as the very last byte has no length
        let mut d = good[..249].to_vec();
        d.push(12);
        assert_eq!(Reply::parse(&d), Err(ReplyError::OptionOverrun));
        // no message type at all
        let mut e = good.clone();
        e[240] = opt::PAD;
        e[241] = opt::PAD;
        e[242] = opt::PAD;
        assert_eq!(Reply::parse(&e), Err(ReplyError::MissingMessageType));
    }

    #[test]
    fn reads_overloaded_file_field() {
        // message type in `file`, server id in `sname`
        let mut b = reply(MessageType::Ack, |_| {});
        b[240..243].copy_from_slice(&[52, 1, 3]);
        b[243] = opt::END;
        b[108..111].copy_from_slice(&[53, 1, 2]);
        b[111] = opt::END;
        b[44..50].copy_from_slice(&[54, 4, 10, 77, 0, 1]);
        b[50] = opt::END;
        let r = Reply::parse(&b).unwrap();
        assert_eq!(r.msg_type, MessageType::Offer);
        assert_eq!(r.server_id, Some(SID));
        // overload inside `file` is refused
        b[112..115].copy_from_slice(&[52, 1, 1]);
        b[111] = opt::PAD;
        assert_eq!(Reply::parse(&b), Err(ReplyError::BadOverload));
    }

    #[test]
    fn parse_never_panics_on_any_prefix_or_byte_flip() {
        let good = reply(MessageType::Offer, |w| {
            w.option_addr(opt::SERVER_ID, SID);
            w.option_u32(opt::LEASE_TIME, 60);
            w.option(150, &[7u8; 300]);
        });
        for n in 0..=good.len() {
            let _ = Reply::parse(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 2, 52, 53, 54, 255] {
                let mut b = good.clone();
                b[i] = v;
                let _ = Reply::parse(&b);
            }
        }
    }
}
