//! Just enough rtnetlink to find an interface and the XDP programs attached to it, and to remove
//! a program attached through the legacy netlink interface (a stale one, left behind by a crash).
//!
//! Everything goes through a `NETLINK_ROUTE` socket of the calling thread's network namespace,
//! built and parsed here from plain byte buffers (no `unsafe`). Constants are the kernel's UAPI
//! values (`linux/netlink.h`, `linux/rtnetlink.h`, `linux/if_link.h`).

use std::io::{self, Read};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const IFLA_IFNAME: u16 = 3;
const IFLA_XDP: u16 = 43;
const IFLA_EXT_MASK: u16 = 29;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// Replies bigger than this are cut by the kernel; a link message without stats is far smaller.
const RECV_BUF: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where an XDP program runs on an interface, as netlink reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum AttachPoint {
    /// Native (driver) mode.
    Driver,
    /// Generic (skb) mode.
    Skb,
    /// Offloaded to the NIC.
    Hardware,
}

impl std::fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachPoint::Driver => "native",
            AttachPoint::Skb => "generic",
            AttachPoint::Hardware => "offload",
        })
    }
}

impl AttachPoint {
    fn flags(self) -> u32 {
        match self {
            AttachPoint::Driver => XDP_FLAGS_DRV_MODE,
            AttachPoint::Skb => XDP_FLAGS_SKB_MODE,
            AttachPoint::Hardware => XDP_FLAGS_HW_MODE,
        }
    }
}

/// An interface as found by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// Interface index.
    pub(crate) index: u32,
    /// XDP programs attached now: where, and the program id.
    pub(crate) xdp: Vec<(AttachPoint, u32)>,
}

/// Looks `name` up in the calling thread's network namespace. `Ok(None)`: no such interface.
pub(crate) fn link_by_name(name: &str) -> io::Result<Option<Link>> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.as_bytes().contains(&0) {
        return Ok(None);
    }
    let mut name_z = name.as_bytes().to_vec();
    name_z.push(0);
    let mut msg = Message::new(RTM_GETLINK, NLM_F_REQUEST, 0);
    msg.attr(IFLA_IFNAME, &name_z);
    msg.attr(IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    let reply = match transact(&msg.finish())? {
        Reply::Link(link) => link,
        Reply::Ack => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "RTM_GETLINK answered without a link",
            ))
        }
        Reply::Error(e) if e == libc::ENODEV => return Ok(None),
        Reply::Error(e) => return Err(io::Error::from_raw_os_error(e)),
    };
    Ok(Some(reply))
}

/// Removes the program attached at `point` of interface `index`, but only if it is still the
/// program `expected_fd` refers to (`XDP_FLAGS_REPLACE`, Linux 5.7+).
///
/// Fails with `EBUSY` if the program is held by a BPF link (a live process or a pinned link owns
/// it) rather than attached through netlink, and with `EEXIST` if another program replaced it.
pub(crate) fn detach_program(index: u32, point: AttachPoint, expected_fd: i32) -> io::Result<()> {
    let mut msg = Message::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, index);
    let nest = msg.begin_nest(IFLA_XDP);
    msg.attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    msg.attr(
        IFLA_XDP_FLAGS,
        &(point.flags() | XDP_FLAGS_REPLACE).to_ne_bytes(),
    );
    msg.attr(IFLA_XDP_EXPECTED_FD, &expected_fd.to_ne_bytes());
    msg.end_nest(nest);
    match transact(&msg.finish())? {
        Reply::Ack => Ok(()),
        Reply::Error(e) => Err(io::Error::from_raw_os_error(e)),
        Reply::Link(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "RTM_SETLINK answered with a link",
        )),
    }
}

enum Reply {
    Ack,
    Error(i32),
    Link(Link),
}

const SEQ: u32 = 1;

/// Sends one request and reads until its answer (an error/ack or a link message).
fn transact(request: &[u8]) -> io::Result<Reply> {
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    // An unbound netlink socket is bound to a kernel-chosen port id by its first send, and a
    // send without an address goes to the kernel.
    let sent = sock.send(request)?;
    if sent != request.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short netlink send",
        ));
    }
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = (&sock).read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink socket closed",
            ));
        }
        if let Some(reply) = parse_reply(&buf[..n])? {
            return Ok(reply);
        }
    }
}

/// The answer to our request in one datagram, or `None` if it holds none (keep reading).
fn parse_reply(mut data: &[u8]) -> io::Result<Option<Reply>> {
    while data.len() >= NLMSG_HDRLEN {
        let len = read_u32(data, 0) as usize;
        let kind = read_u16(data, 4);
        let seq = read_u32(data, 8);
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(bad("netlink message length out of range"));
        }
        let body = &data[NLMSG_HDRLEN..len];
        if seq == SEQ {
            match kind {
                NLMSG_ERROR => {
                    if body.len() < 4 {
                        return Err(bad("short NLMSG_ERROR"));
                    }
                    let code = read_u32(body, 0) as i32;
                    return Ok(Some(if code == 0 {
                        Reply::Ack
                    } else {
                        Reply::Error(code.saturating_neg())
                    }));
                }
                RTM_NEWLINK => return parse_link(body).map(|l| Some(Reply::Link(l))),
                NLMSG_DONE => return Err(bad("netlink dump ended without an answer")),
                _ => {}
            }
        }
        data = &data[align4(len).min(data.len())..];
    }
    Ok(None)
}

fn parse_link(body: &[u8]) -> io::Result<Link> {
    if body.len() < IFINFOMSG_LEN {
        return Err(bad("short ifinfomsg"));
    }
    let index = read_u32(body, 4);
    let mut xdp = Vec::new();
    for (kind, value) in attrs(&body[IFINFOMSG_LEN..]) {
        if kind != IFLA_XDP {
            continue;
        }
        let (mut attached, mut prog, mut drv, mut skb, mut hw) = (0u8, 0u32, 0u32, 0u32, 0u32);
        for (k, v) in attrs(value) {
            match k {
                IFLA_XDP_ATTACHED => attached = v.first().copied().unwrap_or(0),
                IFLA_XDP_PROG_ID => prog = u32_attr(v),
                IFLA_XDP_DRV_PROG_ID => drv = u32_attr(v),
                IFLA_XDP_SKB_PROG_ID => skb = u32_attr(v),
                IFLA_XDP_HW_PROG_ID => hw = u32_attr(v),
                _ => {}
            }
        }
        let candidates = match attached {
            XDP_ATTACHED_DRV => [
                (AttachPoint::Driver, prog),
                (AttachPoint::Skb, 0),
                (AttachPoint::Hardware, 0),
            ],
            XDP_ATTACHED_SKB => [
                (AttachPoint::Driver, 0),
                (AttachPoint::Skb, prog),
                (AttachPoint::Hardware, 0),
            ],
            XDP_ATTACHED_HW => [
                (AttachPoint::Driver, 0),
                (AttachPoint::Skb, 0),
                (AttachPoint::Hardware, prog),
            ],
            XDP_ATTACHED_MULTI => [
                (AttachPoint::Driver, drv),
                (AttachPoint::Skb, skb),
                (AttachPoint::Hardware, hw),
            ],
            _ => [
                (AttachPoint::Driver, 0),
                (AttachPoint::Skb, 0),
                (AttachPoint::Hardware, 0),
            ],
        };
        xdp.extend(candidates.into_iter().filter(|&(_, id)| id != 0));
    }
    Ok(Link { index, xdp })
}

/// Iterates the route attributes in `data` as (type without flags, payload); stops at the first
/// malformed one.
fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(read_u16(data, 0));
        let kind = read_u16(data, 2) & NLA_TYPE_MASK;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[align4(len).min(data.len())..];
        Some((kind, value))
    })
}

fn u32_attr(v: &[u8]) -> u32 {
    if v.len() >= 4 {
        read_u32(v, 0)
    } else {
        0
    }
}

/// A request under construction: header, ifinfomsg, attributes.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, index: u32) -> Message {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&SEQ.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
                                                    // struct ifinfomsg: family AF_UNSPEC, pad, type, index, flags, change.
        buf.extend_from_slice(&[0, 0, 0, 0]);
        buf.extend_from_slice(&index.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Message { buf }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        // Attribute payloads here are at most a few bytes; the u16 length cannot overflow.
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    fn begin_nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Callers check `data.len() >= at + 2` first.
fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([data[at], data[at + 1]])
}

/// Callers check `data.len() >= at + 4` first.
fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        while m.len() & 3 != 0 {
            m.push(0);
        }
        m
    }

    fn rta(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() & 3 != 0 {
            a.push(0);
        }
        a
    }

    fn link_body(index: u32, xdp: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&[0u8; 8]);
        b.extend_from_slice(&rta(IFLA_IFNAME, b"tdm0\0"));
        b.extend_from_slice(&rta(IFLA_XDP | NLA_F_NESTED, xdp));
        b
    }

    #[test]
    fn request_layout() {
        let mut m = Message::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 7);
        let nest = m.begin_nest(IFLA_XDP);
        m.attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        m.end_nest(nest);
        let b = m.finish();
        assert_eq!(b.len(), NLMSG_HDRLEN + IFINFOMSG_LEN + 4 + 8);
        assert_eq!(read_u32(&b, 0) as usize, b.len());
        assert_eq!(read_u16(&b, 4), RTM_SETLINK);
        assert_eq!(read_u32(&b, 20), 7);
        assert_eq!(read_u16(&b, 32), 12);
        assert_eq!(read_u16(&b, 34), IFLA_XDP | NLA_F_NESTED);
        assert_eq!(read_u16(&b, 36), 8);
        assert_eq!(read_u32(&b, 40) as i32, -1);
    }

    #[test]
    fn parses_single_and_multi_attachments() {
        let mut xdp = rta(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB]);
        xdp.extend(rta(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()));
        let msg = nlmsg(RTM_NEWLINK, SEQ, &link_body(5, &xdp));
        match parse_reply(&msg).unwrap() {
            Some(Reply::Link(l)) => {
                assert_eq!(l.index, 5);
                assert_eq!(l.xdp, vec![(AttachPoint::Skb, 42)]);
            }
            _ => panic!("expected a link"),
        }

        let mut xdp = rta(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_MULTI]);
        xdp.extend(rta(IFLA_XDP_DRV_PROG_ID, &7u32.to_ne_bytes()));
        xdp.extend(rta(IFLA_XDP_SKB_PROG_ID, &9u32.to_ne_bytes()));
        let msg = nlmsg(RTM_NEWLINK, SEQ, &link_body(6, &xdp));
        match parse_reply(&msg).unwrap() {
            Some(Reply::Link(l)) => {
                assert_eq!(l.xdp, vec![(AttachPoint::Driver, 7), (AttachPoint::Skb, 9)])
            }
            _ => panic!("expected a link"),
        }

        let xdp = rta(IFLA_XDP_ATTACHED, &[0]);
        let msg = nlmsg(RTM_NEWLINK, SEQ, &link_body(6, &xdp));
        match parse_reply(&msg).unwrap() {
            Some(Reply::Link(l)) => assert!(l.xdp.is_empty()),
            _ => panic!("expected a link"),
        }
    }

    #[test]
    fn parses_errors_acks_and_skips_other_sequences() {
        let ack = nlmsg(NLMSG_ERROR, SEQ, &0i32.to_ne_bytes());
        assert!(matches!(parse_reply(&ack).unwrap(), Some(Reply::Ack)));
        let err = nlmsg(NLMSG_ERROR, SEQ, &(-libc::EBUSY).to_ne_bytes());
        assert!(matches!(parse_reply(&err).unwrap(), Some(Reply::Error(e)) if e == libc::EBUSY));
        let other = nlmsg(NLMSG_ERROR, SEQ + 1, &0i32.to_ne_bytes());
        assert!(parse_reply(&other).unwrap().is_none());
        let mut both = other.clone();
        both.extend(err);
        assert!(matches!(parse_reply(&both).unwrap(), Some(Reply::Error(_))));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut m = nlmsg(NLMSG_ERROR, SEQ, &0i32.to_ne_bytes());
        m[0] = 200; // length beyond the datagram
        assert!(parse_reply(&m).is_err());
        let short = nlmsg(NLMSG_ERROR, SEQ, &[0, 0]);
        assert!(parse_reply(&short).is_err());
        let short_link = nlmsg(RTM_NEWLINK, SEQ, &[0; 8]);
        assert!(parse_reply(&short_link).is_err());
        // A truncated attribute ends the attribute walk quietly.
        assert_eq!(attrs(&[8, 0, 1, 0, 0]).count(), 0);
        for cut in 0..40 {
            let mut xdp = rta(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_DRV]);
            xdp.extend(rta(IFLA_XDP_PROG_ID, &1u32.to_ne_bytes()));
            let msg = nlmsg(RTM_NEWLINK, SEQ, &link_body(1, &xdp));
            let _ = parse_reply(&msg[..cut.min(msg.len())]);
        }
    }
}
