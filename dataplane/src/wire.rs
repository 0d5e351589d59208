//! DHCPv4 wire format: a checked, zero-copy view of a request and an in-place reply writer.
//!
//! [`Request::parse`] validates a BOOTREQUEST once (fixed header, magic cookie, every option's
//! length, option overload into `file`/`sname`, RFC 3396 concatenation of split options) and
//! indexes its options. **Contract:** once `parse` has returned `Ok`, no accessor of [`Request`]
//! panics, whatever the input bytes were. Parsing allocates nothing: option spans and the
//! concatenation area live inside the `Request` value.
//!
//! [`ReplyWriter`] writes a BOOTREPLY into a caller-provided buffer (a reused buffer in the UDP
//! backend, a UMEM frame later) without allocating, splitting options longer than 255 bytes
//! (RFC 3396) and always leaving room for the relay agent option and the end marker.

use std::net::Ipv4Addr;

/// BOOTP op code of a request.
pub const OP_REQUEST: u8 = 1;
/// BOOTP op code of a reply.
pub const OP_REPLY: u8 = 2;
/// The DHCP magic cookie (RFC 2131 §3).
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Length of the fixed BOOTP header, up to and excluding the magic cookie.
pub const HEADER_LEN: usize = 236;
/// Offset of the first option byte.
pub const OPTIONS_OFFSET: usize = HEADER_LEN + 4;
/// Smallest reply we send (BOOTP relays expect at least 300 bytes).
pub const MIN_REPLY_LEN: usize = 300;

/// Option codes the engine reads or writes itself.
pub mod opt {
    /// Pad.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTERS: u8 = 3;
    /// Domain name servers.
    pub const DNS_SERVERS: u8 = 6;
    /// Host name.
    pub const HOSTNAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time.
    pub const LEASE_TIME: u8 = 51;
    /// Option overload.
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Message (error text).
    pub const MESSAGE: u8 = 56;
    /// Maximum DHCP message size.
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Vendor class identifier.
    pub const VENDOR_CLASS: u8 = 60;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// User class (RFC 3004).
    pub const USER_CLASS: u8 = 77;
    /// Relay agent information (RFC 3046).
    pub const RELAY_AGENT_INFO: u8 = 82;
    /// Subnet selection (RFC 3011).
    pub const SUBNET_SELECTION: u8 = 118;
    /// End.
    pub const END: u8 = 255;
}

/// Relay agent information sub-options (RFC 3046, RFC 3527).
pub mod relay_sub {
    /// Agent circuit id.
    pub const CIRCUIT_ID: u8 = 1;
    /// Agent remote id.
    pub const REMOTE_ID: u8 = 2;
    /// Link selection (RFC 3527).
    pub const LINK_SELECTION: u8 = 5;
}

/// DHCP message types (option 53).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// DHCPDISCOVER.
    Discover = 1,
    /// DHCPOFFER.
    Offer = 2,
    /// DHCPREQUEST.
    Request = 3,
    /// DHCPDECLINE.
    Decline = 4,
    /// DHCPACK.
    Ack = 5,
    /// DHCPNAK.
    Nak = 6,
    /// DHCPRELEASE.
    Release = 7,
    /// DHCPINFORM.
    Inform = 8,
}

impl MessageType {
    /// Decode the option 53 value.
    pub fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
}

/// Why a frame was not accepted as a DHCP request. Each is counted, never a panic.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the fixed header plus magic cookie.
    #[error("truncated: shorter than the 240-byte header")]
    Truncated,
    /// The magic cookie is wrong (plain BOOTP or garbage).
    #[error("bad magic cookie")]
    BadMagic,
    /// op is not BOOTREQUEST.
    #[error("not a BOOTREQUEST")]
    NotRequest,
    /// hlen is greater than 16.
    #[error("hardware address length over 16")]
    BadHlen,
    /// An option's length runs past the end of its field.
    #[error("option length runs past the end")]
    OptionOverrun,
    /// No option 53.
    #[error("missing DHCP message type")]
    MissingMessageType,
    /// Option 53 has a bad length or an unknown or server-only value.
    #[error("bad DHCP message type")]
    BadMessageType,
    /// Option 52 is malformed, repeated, or appears inside file/sname.
    #[error("bad option overload")]
    BadOverload,
    /// Split options add up to more than the concatenation area holds.
    #[error("concatenated options too long")]
    ConcatTooLong,
}

#[derive(Copy, Clone, Debug, Default)]
struct Span {
    /// 0: absent; 1: in the frame; 2: in the concatenation area.
    kind: u8,
    off: u16,
    len: u16,
}

const CONCAT_CAP: usize = 1024;

/// A validated DHCP request, borrowing the frame it was parsed from.
pub struct Request<'a> {
    buf: &'a [u8],
    spans: [Span; 256],
    concat: [u8; CONCAT_CAP],
    concat_len: usize,
    msg_type: MessageType,
}

impl<'a> Request<'a> {
    /// Validate `buf` (the UDP payload) as a DHCP BOOTREQUEST and index its options.
    pub fn parse(buf: &'a [u8]) -> Result<Request<'a>, WireError> {
        if buf.len() < OPTIONS_OFFSET {
            return Err(WireError::Truncated);
        }
        if buf[HEADER_LEN..OPTIONS_OFFSET] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if buf[0] != OP_REQUEST {
            return Err(WireError::NotRequest);
        }
        if buf[2] > 16 {
            return Err(WireError::BadHlen);
        }
        let mut req = Request {
            buf,
            spans: [Span::default(); 256],
            concat: [0; CONCAT_CAP],
            concat_len: 0,
            msg_type: MessageType::Discover,
        };
        // First pass over the options field, then (RFC 2131 §4.1) file, then sname if overloaded.
        let overload = req.scan(OPTIONS_OFFSET, buf.len(), true)?;
        if overload & 1 != 0 {
            req.scan(108, 236, false)?;
        }
        if overload & 2 != 0 {
            req.scan(44, 108, false)?;
        }
        let t = req
            .option(opt::MESSAGE_TYPE)
            .ok_or(WireError::MissingMessageType)?;
        if t.len() != 1 {
            return Err(WireError::BadMessageType);
        }
        req.msg_type = match MessageType::from_u8(t[0]) {
            Some(
                m @ (MessageType::Discover
                | MessageType::Request
                | MessageType::Decline
                | MessageType::Release
                | MessageType::Inform),
            ) => m,
            _ => return Err(WireError::BadMessageType),
        };
        Ok(req)
    }

    /// Walk one option area; returns the overload value when `main` and option 52 is present.
    fn scan(&mut self, start: usize, end: usize, main: bool) -> Result<u8, WireError> {
        let mut i = start;
        let mut overload = 0u8;
        while i < end {
            let code = self.buf[i];
            if code == opt::PAD {
                i += 1;
                continue;
            }
            if code == opt::END {
                break;
            }
            if i + 1 >= end {
                return Err(WireError::OptionOverrun);
            }
            let len = usize::from(self.buf[i + 1]);
            let vstart = i + 2;
            let vend = vstart + len;
            if vend > end {
                return Err(WireError::OptionOverrun);
            }
            if code == opt::OVERLOAD {
                if !main || len != 1 || overload != 0 || !(1..=3).contains(&self.buf[vstart]) {
                    return Err(WireError::BadOverload);
                }
                overload = self.buf[vstart];
            }
            self.add_span(code, vstart, len)?;
            i = vend;
        }
        Ok(overload)
    }

    fn add_span(&mut self, code: u8, off: usize, len: usize) -> Result<(), WireError> {
        let s = self.spans[usize::from(code)];
        match s.kind {
            0 => {
                self.spans[usize::from(code)] = Span {
                    kind: 1,
                    off: off as u16,
                    len: len as u16,
                };
            }
            _ => {
                // RFC 3396: a repeated option is the concatenation of its instances.
                let prev_len = usize::from(s.len);
                let total = prev_len + len;
                if self.concat_len + total > CONCAT_CAP {
                    return Err(WireError::ConcatTooLong);
                }
                let dst = self.concat_len;
                if s.kind == 1 {
                    let (o, l) = (usize::from(s.off), prev_len);
                    self.concat[dst..dst + l].copy_from_slice(&self.buf[o..o + l]);
                } else {
                    let o = usize::from(s.off);
                    self.concat.copy_within(o..o + prev_len, dst);
                }
                self.concat[dst + prev_len..dst + total].copy_from_slice(&self.buf[off..off + len]);
                self.concat_len += total;
                self.spans[usize::from(code)] = Span {
                    kind: 2,
                    off: dst as u16,
                    len: total as u16,
                };
            }
        }
        Ok(())
    }

    /// The value of option `code`, concatenated if it was split.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        let s = self.spans[usize::from(code)];
        let (o, l) = (usize::from(s.off), usize::from(s.len));
        match s.kind {
            1 => self.buf.get(o..o + l),
            2 => self.concat.get(o..o + l),
            _ => None,
        }
    }

    /// The DHCP message type.
    pub fn message_type(&self) -> MessageType {
        self.msg_type
    }

    /// The whole request as received.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Hardware address type.
    pub fn htype(&self) -> u8 {
        self.buf[1]
    }

    /// Hardware address length (≤ 16, checked by `parse`).
    pub fn hlen(&self) -> u8 {
        self.buf[2]
    }

    /// Relay hop count.
    pub fn hops(&self) -> u8 {
        self.buf[3]
    }

    /// Transaction id.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    /// Seconds elapsed field.
    pub fn secs(&self) -> u16 {
        u16::from_be_bytes([self.buf[8], self.buf[9]])
    }

    /// Flags field.
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.buf[10], self.buf[11]])
    }

    /// True if the client asked for broadcast replies.
    pub fn broadcast(&self) -> bool {
        self.flags() & 0x8000 != 0
    }

    fn addr_at(&self, o: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.buf[o],
            self.buf[o + 1],
            self.buf[o + 2],
            self.buf[o + 3],
        )
    }

    /// Client IP address (ciaddr).
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr_at(12)
    }

    /// Relay agent address (giaddr).
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr_at(24)
    }

    /// Client hardware address, `hlen` bytes.
    pub fn chaddr(&self) -> &[u8] {
        &self.buf[28..28 + usize::from(self.hlen())]
    }

    /// The Ethernet MAC, if htype is Ethernet and hlen is 6.
    pub fn mac(&self) -> Option<[u8; 6]> {
        if self.htype() == 1 && self.hlen() == 6 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&self.buf[28..34]);
            Some(m)
        } else {
            None
        }
    }

    /// Option 50, requested IP address.
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.option_addr(opt::REQUESTED_IP)
    }

    /// Option 54, server identifier.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option_addr(opt::SERVER_ID)
    }

    /// Option 51, requested lease time.
    pub fn lease_time(&self) -> Option<u32> {
        let v = self.option(opt::LEASE_TIME)?;
        let b: [u8; 4] = v.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// Option 57, maximum message size the client accepts (values under 576 read as 576).
    pub fn max_message_size(&self) -> Option<usize> {
        let v = self.option(opt::MAX_MESSAGE_SIZE)?;
        let b: [u8; 2] = v.try_into().ok()?;
        Some(usize::from(u16::from_be_bytes(b)).max(576))
    }

    /// Option 61, client identifier (empty values are ignored).
    pub fn client_id(&self) -> Option<&[u8]> {
        self.option(opt::CLIENT_ID).filter(|v| !v.is_empty())
    }

    /// Option 55, parameter request list.
    pub fn parameter_request_list(&self) -> Option<&[u8]> {
        self.option(opt::PARAMETER_REQUEST_LIST)
    }

    /// A sub-option of option 82 (relay agent information), if present and well-formed.
    pub fn relay_sub_option(&self, sub: u8) -> Option<&[u8]> {
        let v = self.option(opt::RELAY_AGENT_INFO)?;
        let mut i = 0;
        while i + 2 <= v.len() {
            let (code, len) = (v[i], usize::from(v[i + 1]));
            let val = v.get(i + 2..i + 2 + len)?;
            if code == sub {
                return Some(val);
            }
            i += 2 + len;
        }
        None
    }

    /// The link the client is on as a relay told us: RFC 3527 link selection, else RFC 3011
    /// subnet selection; `None` if neither is present.
    pub fn link_selection(&self) -> Option<Ipv4Addr> {
        let v = self
            .relay_sub_option(relay_sub::LINK_SELECTION)
            .or_else(|| self.option(opt::SUBNET_SELECTION))?;
        let b: [u8; 4] = v.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    }

    fn option_addr(&self, code: u8) -> Option<Ipv4Addr> {
        let v = self.option(code)?;
        let b: [u8; 4] = v.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    }
}

/// Writes a BOOTREPLY into a caller-provided buffer.
///
/// Call order: [`ReplyWriter::new`], any number of [`ReplyWriter::option`], then
/// [`ReplyWriter::finish`]. Options that do not fit (the client's maximum message size, or the
/// buffer) are left out and counted in [`ReplyWriter::skipped`]; room for the relay agent option
/// and the end marker is always kept.
pub struct ReplyWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
    limit: usize,
    reserve: usize,
    skipped: usize,
}

/// Header fields of a reply.
#[derive(Copy, Clone, Debug)]
pub struct ReplyHeader {
    /// Transaction id (copied from the request).
    pub xid: u32,
    /// Flags (copied from the request).
    pub flags: u16,
    /// ciaddr (copied from the request for ACKs to RENEWING/REBINDING/INFORM; else 0).
    pub ciaddr: Ipv4Addr,
    /// The address given to the client.
    pub yiaddr: Ipv4Addr,
    /// Next server address (0).
    pub siaddr: Ipv4Addr,
    /// giaddr (copied from the request).
    pub giaddr: Ipv4Addr,
    /// Hardware type (copied).
    pub htype: u8,
    /// Hardware address length (copied).
    pub hlen: u8,
}

impl<'b> ReplyWriter<'b> {
    /// Start a reply of `msg_type` in `buf`, writing at most `limit` bytes (the client's maximum
    /// message size, capped by the buffer), keeping `reserve` bytes for options written last
    /// (relay agent information). `chaddr` is the request's 16-byte chaddr field.
    ///
    /// Returns `None` if `buf` cannot hold even a minimal reply.
    pub fn new(
        buf: &'b mut [u8],
        limit: usize,
        reserve: usize,
        hdr: &ReplyHeader,
        chaddr: &[u8],
        msg_type: MessageType,
    ) -> Option<ReplyWriter<'b>> {
        let limit = limit.min(buf.len());
        if limit < MIN_REPLY_LEN || buf.len() < MIN_REPLY_LEN {
            return None;
        }
        buf[..OPTIONS_OFFSET].fill(0);
        buf[0] = OP_REPLY;
        buf[1] = hdr.htype;
        buf[2] = hdr.hlen.min(16);
        buf[3] = 0;
        buf[4..8].copy_from_slice(&hdr.xid.to_be_bytes());
        buf[10..12].copy_from_slice(&hdr.flags.to_be_bytes());
        buf[12..16].copy_from_slice(&hdr.ciaddr.octets());
        buf[16..20].copy_from_slice(&hdr.yiaddr.octets());
        buf[20..24].copy_from_slice(&hdr.siaddr.octets());
        buf[24..28].copy_from_slice(&hdr.giaddr.octets());
        let n = chaddr.len().min(16);
        buf[28..28 + n].copy_from_slice(&chaddr[..n]);
        buf[HEADER_LEN..OPTIONS_OFFSET].copy_from_slice(&MAGIC);
        let mut w = ReplyWriter {
            buf,
            pos: OPTIONS_OFFSET,
            limit,
            reserve: reserve + 1,
            skipped: 0,
        };
        w.option(opt::MESSAGE_TYPE, &[msg_type as u8]);
        Some(w)
    }

    /// Append option `code` with `value`, split into 255-byte pieces (RFC 3396). Returns false
    /// (and counts it) if it does not fit.
    pub fn option(&mut self, code: u8, value: &[u8]) -> bool {
        let pieces = value.len().div_ceil(255).max(1);
        let need = value.len() + 2 * pieces;
        if self.pos + need + self.reserve > self.limit {
            self.skipped += 1;
            return false;
        }
        if value.is_empty() {
            self.buf[self.pos] = code;
            self.buf[self.pos + 1] = 0;
            self.pos += 2;
            return true;
        }
        for chunk in value.chunks(255) {
            self.buf[self.pos] = code;
            self.buf[self.pos + 1] = chunk.len() as u8;
            self.buf[self.pos + 2..self.pos + 2 + chunk.len()].copy_from_slice(chunk);
            self.pos += 2 + chunk.len();
        }
        true
    }

    /// Append an option whose value is one IPv4 address.
    pub fn option_addr(&mut self, code: u8, a: Ipv4Addr) -> bool {
        self.option(code, &a.octets())
    }

    /// Append an option whose value is a 32-bit integer.
    pub fn option_u32(&mut self, code: u8, v: u32) -> bool {
        self.option(code, &v.to_be_bytes())
    }

    /// Append the option written last (relay agent information), using the reserved room.
    pub fn option_reserved(&mut self, code: u8, value: &[u8]) -> bool {
        self.reserve = 1;
        self.option(code, value)
    }

    /// Options left out for lack of room.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Write the end marker, pad to the minimum length, and return the reply's length.
    pub fn finish(self) -> usize {
        self.buf[self.pos] = opt::END;
        let mut len = self.pos + 1;
        if len < MIN_REPLY_LEN {
            self.buf[len..MIN_REPLY_LEN].fill(0);
            len = MIN_REPLY_LEN;
        }
        len
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a request frame: header fields and raw option bytes (without END).
    pub(crate) fn frame(
        htype: u8,
        chaddr: &[u8],
        xid: u32,
        ciaddr: Ipv4Addr,
        giaddr: Ipv4Addr,
        flags: u16,
        options: &[u8],
    ) -> Vec<u8> {
        let mut b = vec![0u8; OPTIONS_OFFSET];
        b[0] = OP_REQUEST;
        b[1] = htype;
        b[2] = chaddr.len() as u8;
        b[4..8].copy_from_slice(&xid.to_be_bytes());
        b[10..12].copy_from_slice(&flags.to_be_bytes());
        b[12..16].copy_from_slice(&ciaddr.octets());
        b[24..28].copy_from_slice(&giaddr.octets());
        b[28..28 + chaddr.len()].copy_from_slice(chaddr);
        b[HEADER_LEN..OPTIONS_OFFSET].copy_from_slice(&MAGIC);
        b.extend_from_slice(options);
        b.push(opt::END);
        b
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];
    const Z: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

    #[test]
    fn parses_discover_and_accessors() {
        let f = frame(
            1,
            &MAC,
            0xdead_beef,
            Z,
            Ipv4Addr::new(10, 1, 0, 1),
            0x8000,
            &[
                53, 1, 1, 61, 3, 1, 2, 3, 50, 4, 10, 0, 0, 9, 57, 2, 0x05, 0xdc, 55, 3, 1, 3, 6,
            ],
        );
        let r = Request::parse(&f).unwrap();
        assert_eq!(r.message_type(), MessageType::Discover);
        assert_eq!(r.xid(), 0xdead_beef);
        assert!(r.broadcast());
        assert_eq!(r.giaddr(), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(r.mac(), Some(MAC));
        assert_eq!(r.client_id(), Some(&[1u8, 2, 3][..]));
        assert_eq!(r.requested_ip(), Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(r.max_message_size(), Some(1500));
        assert_eq!(r.parameter_request_list(), Some(&[1u8, 3, 6][..]));
        assert_eq!(r.server_id(), None);
    }

    #[test]
    fn rejects_malformed_frames() {
        let ok = frame(1, &MAC, 1, Z, Z, 0, &[53, 1, 1]);
        assert_eq!(Request::parse(&ok[..239]).err(), Some(WireError::Truncated));
        assert_eq!(Request::parse(&[]).err(), Some(WireError::Truncated));
        let mut bad = ok.clone();
        bad[236] = 0;
        assert_eq!(Request::parse(&bad).err(), Some(WireError::BadMagic));
        let mut bad = ok.clone();
        bad[0] = OP_REPLY;
        assert_eq!(Request::parse(&bad).err(), Some(WireError::NotRequest));
        let mut bad = ok.clone();
        bad[2] = 17;
        assert_eq!(Request::parse(&bad).err(), Some(WireError::BadHlen));
        // option length past the end
        let bad = {
            let mut f = frame(1, &MAC, 1, Z, Z, 0, &[53, 1, 1]);
            f.pop();
            f.extend_from_slice(&[12, 40, b'a', b'b']);
            f
        };
        assert_eq!(Request::parse(&bad).err(), Some(WireError::OptionOverrun));
        // code with no length byte at the very end
        let bad = {
            let mut f = frame(1, &MAC, 1, Z, Z, 0, &[53, 1, 1]);
            f.pop();
            f.push(12);
            f
        };
        assert_eq!(Request::parse(&bad).err(), Some(WireError::OptionOverrun));
        let nomt = frame(1, &MAC, 1, Z, Z, 0, &[61, 2, 1, 2]);
        assert_eq!(
            Request::parse(&nomt).err(),
            Some(WireError::MissingMessageType)
        );
        for bad_mt in [[53u8, 1, 0], [53, 1, 2], [53, 1, 5], [53, 1, 9]] {
            let f = frame(1, &MAC, 1, Z, Z, 0, &bad_mt);
            assert_eq!(Request::parse(&f).err(), Some(WireError::BadMessageType));
        }
        let f = frame(1, &MAC, 1, Z, Z, 0, &[53, 2, 1, 1]);
        assert_eq!(Request::parse(&f).err(), Some(WireError::BadMessageType));
    }

    #[test]
    fn all_pad_is_missing_message_type() {
        let mut f = frame(1, &MAC, 1, Z, Z, 0, &[]);
        f.pop();
        f.extend(std::iter::repeat_n(0u8, 1500));
        assert_eq!(
            Request::parse(&f).err(),
            Some(WireError::MissingMessageType)
        );
    }

    #[test]
    fn option_overload_reads_file_then_sname() {
        // Message type lives in `file`, client id in `sname`.
        let mut f = frame(1, &MAC, 1, Z, Z, 0, &[52, 1, 3]);
        f[108..111].copy_from_slice(&[53, 1, 3]);
        f[111] = opt::END;
        f[44..48].copy_from_slice(&[61, 2, 7, 7]);
        f[48] = opt::END;
        let r = Request::parse(&f).unwrap();
        assert_eq!(r.message_type(), MessageType::Request);
        assert_eq!(r.client_id(), Some(&[7u8, 7][..]));
        // overload inside file is refused
        let mut f = frame(1, &MAC, 1, Z, Z, 0, &[52, 1, 1, 53, 1, 1]);
        f[108..111].copy_from_slice(&[52, 1, 2]);
        assert_eq!(Request::parse(&f).err(), Some(WireError::BadOverload));
        // bad overload values / repeated overload
        let f = frame(1, &MAC, 1, Z, Z, 0, &[52, 1, 4, 53, 1, 1]);
        assert_eq!(Request::parse(&f).err(), Some(WireError::BadOverload));
        let f = frame(1, &MAC, 1, Z, Z, 0, &[52, 1, 1, 52, 1, 1, 53, 1, 1]);
        assert_eq!(Request::parse(&f).err(), Some(WireError::BadOverload));
        // an option overrunning the file field
        let mut f = frame(1, &MAC, 1, Z, Z, 0, &[52, 1, 1, 53, 1, 1]);
        f[234] = 12;
        f[235] = 10;
        assert_eq!(Request::parse(&f).err(), Some(WireError::OptionOverrun));
    }

    #[test]
    fn split_options_are_concatenated() {
        let f = frame(
            1,
            &MAC,
            1,
            Z,
            Z,
            0,
            &[61, 2, 1, 2, 53, 1, 1, 61, 3, 3, 4, 5, 61, 1, 6],
        );
        let r = Request::parse(&f).unwrap();
        assert_eq!(r.client_id(), Some(&[1u8, 2, 3, 4, 5, 6][..]));
    }

    #[test]
    fn relay_sub_options_and_link_selection() {
        let f = frame(
            1,
            &MAC,
            1,
            Z,
            Ipv4Addr::new(10, 9, 0, 1),
            0,
            &[
                53, 1, 1, 82, 14, 1, 2, 0xaa, 0xbb, 2, 0, 5, 4, 10, 2, 0, 0, 9, 5,
            ],
        );
        let r = Request::parse(&f).unwrap();
        assert_eq!(r.relay_sub_option(1), Some(&[0xaa, 0xbb][..]));
        assert_eq!(r.relay_sub_option(2), Some(&[][..]));
        assert_eq!(r.link_selection(), Some(Ipv4Addr::new(10, 2, 0, 0)));
        // truncated sub-option: no panic, just absent
        assert_eq!(r.relay_sub_option(9), None);
    }

    #[test]
    fn reply_writer_layout_and_splitting() {
        let mut buf = [0u8; 1500];
        let hdr = ReplyHeader {
            xid: 7,
            flags: 0x8000,
            ciaddr: Z,
            yiaddr: Ipv4Addr::new(10, 0, 0, 5),
            siaddr: Z,
            giaddr: Z,
            htype: 1,
            hlen: 6,
        };
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&MAC);
        let mut w = ReplyWriter::new(&mut buf, 1500, 0, &hdr, &chaddr, MessageType::Offer).unwrap();
        assert!(w.option_addr(opt::SERVER_ID, Ipv4Addr::new(10, 0, 0, 1)));
        let long = vec![0x41u8; 300];
        assert!(w.option(150, &long));
        let len = w.finish();
        assert_eq!(buf[0], OP_REPLY);
        assert_eq!(&buf[16..20], &[10, 0, 0, 5]);
        assert_eq!(&buf[240..243], &[53, 1, 2]);
        assert_eq!(&buf[243..249], &[54, 4, 10, 0, 0, 1]);
        assert_eq!(&buf[249..251], &[150, 255]);
        assert_eq!(&buf[506..508], &[150, 45]);
        assert_eq!(buf[553], opt::END);
        assert_eq!(len, 554);
    }

    #[test]
    fn reply_writer_respects_limit_and_reserve() {
        let mut buf = [0u8; 1500];
        let hdr = ReplyHeader {
            xid: 7,
            flags: 0,
            ciaddr: Z,
            yiaddr: Z,
            siaddr: Z,
            giaddr: Z,
            htype: 1,
            hlen: 6,
        };
        let mut w = ReplyWriter::new(&mut buf, 576, 20, &hdr, &[0; 16], MessageType::Ack).unwrap();
        assert!(!w.option(150, &[0u8; 400]));
        assert_eq!(w.skipped(), 1);
        assert!(w.option(151, &[0u8; 200]));
        assert!(w.option_reserved(82, &[1, 2, 0xaa, 0xbb]));
        let len = w.finish();
        assert!(len <= 576);
        assert!(
            ReplyWriter::new(&mut [0u8; 100], 100, 0, &hdr, &[0; 16], MessageType::Ack).is_none()
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1600)) {
            if let Ok(r) = Request::parse(&data) {
                let _ = (r.client_id(), r.chaddr(), r.link_selection(), r.relay_sub_option(1));
                for c in 0..=255u8 { let _ = r.option(c); }
            }
        }

        #[test]
        fn parse_never_panics_with_valid_header(opts in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut f = frame(1, &MAC, 1, Z, Z, 0, &opts);
            f.pop();
            if let Ok(r) = Request::parse(&f) {
                for c in 0..=255u8 { let _ = r.option(c); }
                let _ = (r.lease_time(), r.max_message_size(), r.link_selection());
            }
        }
    }
}
