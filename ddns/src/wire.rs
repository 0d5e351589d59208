//! DNS message wire format (RFC 1035 §4), enough for UPDATE (RFC 2136) and its responses.
//!
//! Encoding never compresses names. Decoding follows compression pointers (backwards only, a
//! bounded number of hops) and returns a precise [`DecodeError`] on anything malformed; it never
//! panics and allocates no more than the input length justifies.

use std::fmt;
use std::net::Ipv4Addr;

use crate::dhcid::Dhcid;
use crate::name::{Name, MAX_LABEL, MAX_NAME};

/// A resource record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RrType(pub u16);

impl RrType {
    /// IPv4 address (RFC 1035).
    pub const A: RrType = RrType(1);
    /// Name server (RFC 1035).
    pub const NS: RrType = RrType(2);
    /// Canonical name (RFC 1035).
    pub const CNAME: RrType = RrType(5);
    /// Start of authority (RFC 1035).
    pub const SOA: RrType = RrType(6);
    /// Domain name pointer (RFC 1035).
    pub const PTR: RrType = RrType(12);
    /// Text strings (RFC 1035).
    pub const TXT: RrType = RrType(16);
    /// IPv6 address (RFC 3596).
    pub const AAAA: RrType = RrType(28);
    /// EDNS(0) pseudo-record (RFC 6891).
    pub const OPT: RrType = RrType(41);
    /// DHCP identifier (RFC 4701).
    pub const DHCID: RrType = RrType(49);
    /// Transaction signature (RFC 8945).
    pub const TSIG: RrType = RrType(250);
    /// Any type (query / UPDATE meta-type).
    pub const ANY: RrType = RrType(255);

    /// The mnemonic, when this crate knows one.
    pub fn mnemonic(self) -> Option<&'static str> {
        Some(match self {
            RrType::A => "A",
            RrType::NS => "NS",
            RrType::CNAME => "CNAME",
            RrType::SOA => "SOA",
            RrType::PTR => "PTR",
            RrType::TXT => "TXT",
            RrType::AAAA => "AAAA",
            RrType::OPT => "OPT",
            RrType::DHCID => "DHCID",
            RrType::TSIG => "TSIG",
            RrType::ANY => "ANY",
            _ => return None,
        })
    }
}

impl fmt::Display for RrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "TYPE{}", self.0),
        }
    }
}

/// A resource record class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Class(pub u16);

impl Class {
    /// The Internet.
    pub const IN: Class = Class(1);
    /// NONE (RFC 2136: "does not exist" prerequisites, "delete this RR" updates).
    pub const NONE: Class = Class(254);
    /// ANY (RFC 2136: "exists" prerequisites, RRset deletions; TSIG records).
    pub const ANY: Class = Class(255);
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Class::IN => f.write_str("IN"),
            Class::NONE => f.write_str("NONE"),
            Class::ANY => f.write_str("ANY"),
            Class(c) => write!(f, "CLASS{c}"),
        }
    }
}

/// A header opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

impl Opcode {
    /// Standard query.
    pub const QUERY: Opcode = Opcode(0);
    /// Dynamic update (RFC 2136).
    pub const UPDATE: Opcode = Opcode(5);
}

/// A response code, extended to 12 bits (EDNS) or 16 bits (TSIG error field).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

impl fmt::Debug for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => write!(f, "Rcode({m})"),
            None => write!(f, "Rcode({})", self.0),
        }
    }
}

impl Rcode {
    /// No error.
    pub const NOERROR: Rcode = Rcode(0);
    /// Format error.
    pub const FORMERR: Rcode = Rcode(1);
    /// Server failure.
    pub const SERVFAIL: Rcode = Rcode(2);
    /// Name does not exist (UPDATE: a "name in use" prerequisite failed).
    pub const NXDOMAIN: Rcode = Rcode(3);
    /// Not implemented.
    pub const NOTIMP: Rcode = Rcode(4);
    /// Refused by policy.
    pub const REFUSED: Rcode = Rcode(5);
    /// A name exists that should not (UPDATE: a "name not in use" prerequisite failed).
    pub const YXDOMAIN: Rcode = Rcode(6);
    /// An RRset exists that should not.
    pub const YXRRSET: Rcode = Rcode(7);
    /// An RRset that should exist does not (or not with the given value).
    pub const NXRRSET: Rcode = Rcode(8);
    /// Not authoritative for the zone, or (with TSIG) not authorized.
    pub const NOTAUTH: Rcode = Rcode(9);
    /// A name is outside the zone.
    pub const NOTZONE: Rcode = Rcode(10);
    /// TSIG: the MAC did not verify (RFC 8945).
    pub const BADSIG: Rcode = Rcode(16);
    /// TSIG: the key is not known to the server.
    pub const BADKEY: Rcode = Rcode(17);
    /// TSIG: the time signed is outside the fudge.
    pub const BADTIME: Rcode = Rcode(18);
    /// TSIG: a truncated MAC too short for policy.
    pub const BADTRUNC: Rcode = Rcode(22);

    /// The mnemonic (`"NXRRSET"`), or `None` for a code this crate does not name.
    pub fn mnemonic(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            6 => "YXDOMAIN",
            7 => "YXRRSET",
            8 => "NXRRSET",
            9 => "NOTAUTH",
            10 => "NOTZONE",
            16 => "BADSIG",
            17 => "BADKEY",
            18 => "BADTIME",
            19 => "BADMODE",
            20 => "BADNAME",
            21 => "BADALG",
            22 => "BADTRUNC",
            23 => "BADCOOKIE",
            _ => return None,
        })
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "RCODE{}", self.0),
        }
    }
}

/// The fixed 12-octet header, flags unpacked (section counts are derived from the sections).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Transaction ID.
    pub id: u16,
    /// QR: this is a response.
    pub response: bool,
    /// Opcode (4 bits).
    pub opcode: u8,
    /// AA: authoritative answer.
    pub authoritative: bool,
    /// TC: the message was truncated (retry over TCP).
    pub truncated: bool,
    /// RD: recursion desired.
    pub recursion_desired: bool,
    /// RA: recursion available.
    pub recursion_available: bool,
    /// AD: authentic data (RFC 4035).
    pub authentic_data: bool,
    /// CD: checking disabled (RFC 4035).
    pub checking_disabled: bool,
    /// The low 4 bits of the response code.
    pub rcode: u8,
}

impl Header {
    fn flags(&self) -> u16 {
        (u16::from(self.response) << 15)
            | (u16::from(self.opcode & 0x0f) << 11)
            | (u16::from(self.authoritative) << 10)
            | (u16::from(self.truncated) << 9)
            | (u16::from(self.recursion_desired) << 8)
            | (u16::from(self.recursion_available) << 7)
            | (u16::from(self.authentic_data) << 5)
            | (u16::from(self.checking_disabled) << 4)
            | u16::from(self.rcode & 0x0f)
    }

    fn from_flags(id: u16, f: u16) -> Header {
        Header {
            id,
            response: f & 0x8000 != 0,
            opcode: ((f >> 11) & 0x0f) as u8,
            authoritative: f & 0x0400 != 0,
            truncated: f & 0x0200 != 0,
            recursion_desired: f & 0x0100 != 0,
            recursion_available: f & 0x0080 != 0,
            authentic_data: f & 0x0020 != 0,
            checking_disabled: f & 0x0010 != 0,
            rcode: (f & 0x0f) as u8,
        }
    }
}

/// A question (for UPDATE: the zone section, whose type is SOA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// QNAME (UPDATE: ZNAME).
    pub name: Name,
    /// QTYPE (UPDATE: ZTYPE, always SOA).
    pub rtype: RrType,
    /// QCLASS (UPDATE: ZCLASS, the zone's class).
    pub class: Class,
}

/// TSIG RDATA (RFC 8945 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigRdata {
    /// The MAC algorithm, e.g. `hmac-sha256.`.
    pub algorithm: Name,
    /// Seconds since the epoch (48 bits on the wire).
    pub time_signed: u64,
    /// Permitted clock error in seconds.
    pub fudge: u16,
    /// The MAC (empty in BADKEY / BADSIG replies).
    pub mac: Vec<u8>,
    /// The message ID the MAC was computed with.
    pub original_id: u16,
    /// Extended rcode: BADSIG, BADKEY, BADTIME, BADTRUNC, or NOERROR.
    pub error: Rcode,
    /// Other data (BADTIME: the server's time, 48 bits).
    pub other: Vec<u8>,
}

impl TsigRdata {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.algorithm.as_wire());
        out.extend_from_slice(&self.time_signed.to_be_bytes()[2..]);
        out.extend_from_slice(&self.fudge.to_be_bytes());
        // Lengths are checked by the TSIG signer; a MAC or other data over 65535 octets cannot
        // be represented, and the caller gets an EncodeError for the RDATA length anyway.
        out.extend_from_slice(&(self.mac.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&self.original_id.to_be_bytes());
        out.extend_from_slice(&self.error.0.to_be_bytes());
        out.extend_from_slice(&(self.other.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.other);
    }
}

/// Typed RDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// Zero-length RDATA (UPDATE prerequisites and deletions).
    Empty,
    /// An IPv4 address.
    A(Ipv4Addr),
    /// A PTR target.
    Ptr(Name),
    /// A DHCID (RFC 4701).
    Dhcid(Dhcid),
    /// A transaction signature.
    Tsig(TsigRdata),
    /// Any other type, octets as received (names inside are left compressed).
    Raw(Vec<u8>),
}

impl RData {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RData::Empty => {}
            RData::A(a) => out.extend_from_slice(&a.octets()),
            RData::Ptr(n) => out.extend_from_slice(n.as_wire()),
            RData::Dhcid(d) => out.extend_from_slice(d.as_rdata()),
            RData::Tsig(t) => t.encode(out),
            RData::Raw(r) => out.extend_from_slice(r),
        }
    }
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name.
    pub name: Name,
    /// Type.
    pub rtype: RrType,
    /// Class (IN, or the UPDATE meta-classes NONE / ANY).
    pub class: Class,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The data.
    pub rdata: RData,
}

/// A DNS message.
///
/// For UPDATE (RFC 2136 §2) the four sections are the zone, prerequisite, update and
/// additional sections; [`Message::zone`], [`Message::prerequisites`] and [`Message::updates`]
/// name them so.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// Question section (UPDATE: zone section).
    pub questions: Vec<Question>,
    /// Answer section (UPDATE: prerequisite section).
    pub answers: Vec<Record>,
    /// Authority section (UPDATE: update section).
    pub authority: Vec<Record>,
    /// Additional section (TSIG last, when present).
    pub additional: Vec<Record>,
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A section holds more than 65535 entries.
    #[error("the {section} section has {count} entries, more than 65535")]
    TooManyRecords {
        /// Section name.
        section: &'static str,
        /// Entry count.
        count: usize,
    },
    /// An RDATA longer than 65535 octets.
    #[error("RDATA of a {rtype} record at {name} is {len} octets, more than 65535")]
    RdataTooLong {
        /// Owner.
        name: Name,
        /// Type.
        rtype: RrType,
        /// Length.
        len: usize,
    },
    /// The whole message exceeds 65535 octets (the TCP length prefix limit).
    #[error("the message is {len} octets, more than 65535")]
    MessageTooLong {
        /// Length.
        len: usize,
    },
}

/// Why a received message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("message truncated: {what} at offset {at} needs {need} octets, {have} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset of the field.
        at: usize,
        /// Octets needed.
        need: usize,
        /// Octets available.
        have: usize,
    },
    /// A label length octet with the reserved top bits 01 or 10.
    #[error("reserved label type 0x{octet:02x} at offset {at}")]
    BadLabelType {
        /// Offset.
        at: usize,
        /// The octet.
        octet: u8,
    },
    /// A compression pointer that does not point before the part of the name it continues
    /// (a loop, or a forward reference), or points into the header.
    #[error("compression pointer at offset {at} to {target} does not point back to a name")]
    BadPointer {
        /// Offset of the pointer.
        at: usize,
        /// Its target.
        target: usize,
    },
    /// More compression pointers in one name than a name could need.
    #[error("too many compression pointers in the name at offset {at}")]
    TooManyPointers {
        /// Offset where the name starts.
        at: usize,
    },
    /// The decompressed name exceeds 255 octets.
    #[error("name at offset {at} exceeds 255 octets")]
    NameTooLong {
        /// Offset where the name starts.
        at: usize,
    },
    /// An RDATA whose length does not fit its type.
    #[error("bad {rtype} RDATA at offset {at}: {reason}")]
    BadRdata {
        /// Type.
        rtype: RrType,
        /// Offset of the RDATA.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A TSIG record that is not the last record of the additional section (RFC 8945 §5.1).
    #[error("TSIG record at offset {at} is not the last record of the message")]
    TsigNotLast {
        /// Offset of the TSIG record.
        at: usize,
    },
    /// Octets after the last record the header announced.
    #[error("{count} octets after the last record (offset {at})")]
    TrailingData {
        /// Offset.
        at: usize,
        /// How many.
        count: usize,
    },
}

/// Where the TSIG record lies in a decoded message (for MAC verification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TsigPosition {
    /// Offset of the TSIG record's owner name.
    pub start: usize,
}

/// Length of the fixed header.
const HEADER_LEN: usize = 12;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let have = self.buf.len() - self.pos;
        if have < n {
            return Err(DecodeError::Truncated {
                what,
                at: self.pos,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u48(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let s = self.take(6, what)?;
        Ok(s.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads a possibly compressed name; `self.pos` moves past its in-place part.
    fn name(&mut self) -> Result<Name, DecodeError> {
        let start = self.pos;
        let mut wire = Vec::with_capacity(32);
        let mut pos = self.pos;
        // Set once the first pointer is followed: where reading resumes afterwards.
        let mut resume: Option<usize> = None;
        let mut hops = 0usize;
        let mut segment_start = start;
        loop {
            let Some(&len) = self.buf.get(pos) else {
                return Err(DecodeError::Truncated {
                    what: "label length",
                    at: pos,
                    need: 1,
                    have: 0,
                });
            };
            match len & 0xc0 {
                0x00 => {
                    let len = usize::from(len);
                    if len == 0 {
                        wire.push(0);
                        if wire.len() > MAX_NAME {
                            return Err(DecodeError::NameTooLong { at: start });
                        }
                        self.pos = resume.unwrap_or(pos + 1);
                        return Ok(Name::from_wire_unchecked(wire));
                    }
                    debug_assert!(len <= MAX_LABEL);
                    let have = self.buf.len().saturating_sub(pos + 1);
                    if have < len {
                        return Err(DecodeError::Truncated {
                            what: "label",
                            at: pos + 1,
                            need: len,
                            have,
                        });
                    }
                    // +1 for the root label still to come.
                    if wire.len() + 1 + len + 1 > MAX_NAME {
                        return Err(DecodeError::NameTooLong { at: start });
                    }
                    wire.extend_from_slice(&self.buf[pos..pos + 1 + len]);
                    pos += 1 + len;
                }
                0xc0 => {
                    let Some(&low) = self.buf.get(pos + 1) else {
                        return Err(DecodeError::Truncated {
                            what: "compression pointer",
                            at: pos,
                            need: 2,
                            have: 1,
                        });
                    };
                    let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                    // Each pointer must land before the start of the segment it ends, so the
                    // segment starts strictly decrease and the walk always ends; and past the
                    // 12-octet header, where no name can be (TSIG rewrites ID and ARCOUNT, which
                    // would change such a name).
                    if target < HEADER_LEN || target >= segment_start {
                        return Err(DecodeError::BadPointer { at: pos, target });
                    }
                    hops += 1;
                    if hops > MAX_NAME / 2 {
                        return Err(DecodeError::TooManyPointers { at: start });
                    }
                    if resume.is_none() {
                        resume = Some(pos + 2);
                    }
                    pos = target;
                    segment_start = target;
                }
                _ => {
                    return Err(DecodeError::BadLabelType {
                        at: pos,
                        octet: len,
                    })
                }
            }
        }
    }

    fn question(&mut self) -> Result<Question, DecodeError> {
        let name = self.name()?;
        let rtype = RrType(self.u16("question type")?);
        let class = Class(self.u16("question class")?);
        Ok(Question { name, rtype, class })
    }

    fn record(&mut self) -> Result<Record, DecodeError> {
        let name = self.name()?;
        let rtype = RrType(self.u16("record type")?);
        let class = Class(self.u16("record class")?);
        let ttl = self.u32("record TTL")?;
        let rdlen = usize::from(self.u16("RDATA length")?);
        let at = self.pos;
        if self.remaining() < rdlen {
            return Err(DecodeError::Truncated {
                what: "RDATA",
                at,
                need: rdlen,
                have: self.remaining(),
            });
        }
        let end = at + rdlen;
        let rdata = self.rdata(rtype, rdlen, end)?;
        if self.pos != end {
            return Err(DecodeError::BadRdata {
                rtype,
                at,
                reason: "RDATA length does not match its contents",
            });
        }
        Ok(Record {
            name,
            rtype,
            class,
            ttl,
            rdata,
        })
    }

    fn rdata(&mut self, rtype: RrType, rdlen: usize, end: usize) -> Result<RData, DecodeError> {
        let at = self.pos;
        let bad = |reason| DecodeError::BadRdata { rtype, at, reason };
        if rdlen == 0 {
            // Empty RDATA is what UPDATE prerequisites and deletions carry, for any type but
            // TSIG, whose fields are mandatory.
            if rtype == RrType::TSIG {
                return Err(bad("empty TSIG RDATA"));
            }
            return Ok(RData::Empty);
        }
        // Typed fields are read from a reader limited to the RDATA, so they cannot run past it,
        // but compression pointers may reach anywhere earlier in the whole message.
        let mut sub = Reader {
            buf: &self.buf[..end],
            pos: at,
        };
        let rdata = match rtype {
            RrType::A => {
                let o = sub
                    .take(4, "A RDATA")
                    .map_err(|_| bad("A RDATA is not 4 octets"))?;
                RData::A(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
            }
            RrType::PTR => RData::Ptr(sub.name()?),
            RrType::DHCID => {
                let raw = sub.take(rdlen, "DHCID RDATA")?;
                RData::Dhcid(
                    Dhcid::from_rdata(raw).map_err(|_| bad("DHCID RDATA shorter than 3 octets"))?,
                )
            }
            RrType::TSIG => {
                let algorithm = sub.name()?;
                let time_signed = sub.u48("TSIG time signed")?;
                let fudge = sub.u16("TSIG fudge")?;
                let mac_len = usize::from(sub.u16("TSIG MAC size")?);
                let mac = sub.take(mac_len, "TSIG MAC")?.to_vec();
                let original_id = sub.u16("TSIG original ID")?;
                let error = Rcode(sub.u16("TSIG error")?);
                let other_len = usize::from(sub.u16("TSIG other length")?);
                let other = sub.take(other_len, "TSIG other data")?.to_vec();
                RData::Tsig(TsigRdata {
                    algorithm,
                    time_signed,
                    fudge,
                    mac,
                    original_id,
                    error,
                    other,
                })
            }
            _ => RData::Raw(sub.take(rdlen, "RDATA")?.to_vec()),
        };
        self.pos = sub.pos;
        Ok(rdata)
    }
}

/// Writes an unsigned length as u16, or reports `err`.
fn put_len<E>(out: &mut Vec<u8>, len: usize, err: impl FnOnce() -> E) -> Result<(), E> {
    let v = u16::try_from(len).map_err(|_| err())?;
    out.extend_from_slice(&v.to_be_bytes());
    Ok(())
}

impl Record {
    /// Appends the record, uncompressed.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(self.name.as_wire());
        out.extend_from_slice(&self.rtype.0.to_be_bytes());
        out.extend_from_slice(&self.class.0.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        self.rdata.encode(out);
        let len = out.len() - len_at - 2;
        let v = u16::try_from(len).map_err(|_| EncodeError::RdataTooLong {
            name: self.name.clone(),
            rtype: self.rtype,
            len,
        })?;
        out[len_at..len_at + 2].copy_from_slice(&v.to_be_bytes());
        Ok(())
    }
}

impl Message {
    /// An empty UPDATE request for `zone` (class IN) with transaction ID `id`.
    pub fn update(id: u16, zone: Name) -> Message {
        Message {
            header: Header {
                id,
                opcode: Opcode::UPDATE.0,
                ..Header::default()
            },
            questions: vec![Question {
                name: zone,
                rtype: RrType::SOA,
                class: Class::IN,
            }],
            ..Message::default()
        }
    }

    /// A standard query for `name` / `rtype` (class IN), recursion not desired.
    pub fn query(id: u16, name: Name, rtype: RrType) -> Message {
        Message {
            header: Header {
                id,
                ..Header::default()
            },
            questions: vec![Question {
                name,
                rtype,
                class: Class::IN,
            }],
            ..Message::default()
        }
    }

    /// UPDATE zone section: the zone name, when there is exactly one entry.
    pub fn zone(&self) -> Option<&Name> {
        match self.questions.as_slice() {
            [q] => Some(&q.name),
            _ => None,
        }
    }

    /// UPDATE prerequisite section (the answer section).
    pub fn prerequisites(&self) -> &[Record] {
        &self.answers
    }

    /// UPDATE update section (the authority section).
    pub fn updates(&self) -> &[Record] {
        &self.authority
    }

    /// The TSIG record's RDATA, if the message carries one (always the last record).
    pub fn tsig(&self) -> Option<(&Name, &TsigRdata)> {
        match self.additional.last() {
            Some(Record {
                name,
                rdata: RData::Tsig(t),
                ..
            }) => Some((name, t)),
            _ => None,
        }
    }

    /// The response code: the header's 4 bits, extended by an OPT record's upper 8 bits
    /// (RFC 6891 §6.1.3) when there is one.
    pub fn rcode(&self) -> Rcode {
        let low = u16::from(self.header.rcode & 0x0f);
        let high = self
            .additional
            .iter()
            .find(|r| r.rtype == RrType::OPT)
            .map_or(0, |r| (r.ttl >> 24) as u16);
        Rcode((high << 4) | low)
    }

    /// The response code with TSIG taken into account: the TSIG error field when the message
    /// carries a TSIG record with a non-zero one (BADSIG, BADKEY, BADTIME, BADTRUNC; RFC 8945
    /// §5.3), otherwise [`Message::rcode`].
    pub fn effective_rcode(&self) -> Rcode {
        match self.tsig() {
            Some((_, t)) if t.error != Rcode::NOERROR => t.error,
            _ => self.rcode(),
        }
    }

    /// Encodes without compression.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&self.header.id.to_be_bytes());
        out.extend_from_slice(&self.header.flags().to_be_bytes());
        for (section, count) in [
            ("zone/question", self.questions.len()),
            ("prerequisite/answer", self.answers.len()),
            ("update/authority", self.authority.len()),
            ("additional", self.additional.len()),
        ] {
            put_len(&mut out, count, || EncodeError::TooManyRecords {
                section,
                count,
            })?;
        }
        for q in &self.questions {
            out.extend_from_slice(q.name.as_wire());
            out.extend_from_slice(&q.rtype.0.to_be_bytes());
            out.extend_from_slice(&q.class.0.to_be_bytes());
        }
        for r in self
            .answers
            .iter()
            .chain(&self.authority)
            .chain(&self.additional)
        {
            r.encode(&mut out)?;
        }
        if out.len() > usize::from(u16::MAX) {
            return Err(EncodeError::MessageTooLong { len: out.len() });
        }
        Ok(out)
    }

    /// Decodes a message, following compression pointers; the TSIG record, when present,
    /// must be the last record.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        Message::decode_with_tsig_position(buf).map(|(m, _)| m)
    }

    pub(crate) fn decode_with_tsig_position(
        buf: &[u8],
    ) -> Result<(Message, Option<TsigPosition>), DecodeError> {
        let mut r = Reader { buf, pos: 0 };
        let id = r.u16("header ID")?;
        let flags = r.u16("header flags")?;
        let counts = [
            r.u16("QDCOUNT")?,
            r.u16("ANCOUNT")?,
            r.u16("NSCOUNT")?,
            r.u16("ARCOUNT")?,
        ];
        let header = Header::from_flags(id, flags);
        // A question takes at least 5 octets, a record at least 11: never reserve more entries
        // than the remaining input could hold.
        let cap =
            |count: u16, min: usize, r: &Reader<'_>| usize::from(count).min(r.remaining() / min);
        let mut questions = Vec::with_capacity(cap(counts[0], 5, &r));
        for _ in 0..counts[0] {
            questions.push(r.question()?);
        }
        let mut sections: [Vec<Record>; 3] = Default::default();
        let mut tsig = None;
        let total_records: usize = counts[1..].iter().map(|&c| usize::from(c)).sum();
        let mut seen = 0usize;
        for (section, &count) in sections.iter_mut().zip(&counts[1..]) {
            section.reserve(cap(count, 11, &r));
            for _ in 0..count {
                let start = r.pos;
                let rec = r.record()?;
                seen += 1;
                if rec.rtype == RrType::TSIG {
                    if seen != total_records {
                        return Err(DecodeError::TsigNotLast { at: start });
                    }
                    tsig = Some(TsigPosition { start });
                }
                section.push(rec);
            }
        }
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingData {
                at: r.pos,
                count: r.remaining(),
            });
        }
        let [answers, authority, additional] = sections;
        // A TSIG in the answer or authority section as the very last record is still misplaced.
        if tsig.is_some() && additional.last().is_none_or(|x| x.rtype != RrType::TSIG) {
            return Err(DecodeError::TsigNotLast {
                at: tsig.map_or(0, |t| t.start),
            });
        }
        Ok((
            Message {
                header,
                questions,
                answers,
                authority,
                additional,
            },
            tsig,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn sample() -> Message {
        let mut m = Message::update(0xbeef, n("tdm.test"));
        m.answers.push(Record {
            name: n("host.tdm.test"),
            rtype: RrType::ANY,
            class: Class::NONE,
            ttl: 0,
            rdata: RData::Empty,
        });
        m.authority.push(Record {
            name: n("host.tdm.test"),
            rtype: RrType::A,
            class: Class::IN,
            ttl: 300,
            rdata: RData::A(Ipv4Addr::new(10, 77, 0, 5)),
        });
        m.authority.push(Record {
            name: n("5.0.77.10.in-addr.arpa"),
            rtype: RrType::PTR,
            class: Class::IN,
            ttl: 300,
            rdata: RData::Ptr(n("host.tdm.test")),
        });
        m
    }

    #[test]
    fn update_round_trips_with_exact_bytes() {
        let m = sample();
        let b = m.encode().unwrap();
        // Header: ID, opcode 5 (0x2800), counts 1/1/2/0.
        assert_eq!(&b[..12], &[0xbe, 0xef, 0x28, 0x00, 0, 1, 0, 1, 0, 2, 0, 0]);
        // Zone section: tdm.test. SOA IN.
        assert_eq!(&b[12..26], b"\x03tdm\x04test\x00\x00\x06\x00\x01");
        // Prerequisite: host.tdm.test. ANY NONE TTL 0 RDLENGTH 0.
        assert_eq!(
            &b[26..51],
            b"\x04host\x03tdm\x04test\x00\x00\xff\x00\xfe\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(Message::decode(&b).unwrap(), m);
        assert_eq!(m.zone(), Some(&n("tdm.test")));
        assert_eq!(m.prerequisites().len(), 1);
        assert_eq!(m.updates().len(), 2);
    }

    #[test]
    fn decodes_compressed_names() {
        // Response-like message: question host.tdm.test A, answer with owner pointer to the
        // question name and a PTR whose target is "x" + pointer to offset 17 (tdm.test).
        let mut b = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 2, 0, 0, 0, 0];
        b.extend_from_slice(b"\x04host\x03tdm\x04test\x00\x00\x01\x00\x01");
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 77, 0, 5]);
        b.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 17]);
        let m = Message::decode(&b).unwrap();
        assert!(m.header.response && m.header.authoritative);
        assert_eq!(m.answers[0].name, n("host.tdm.test"));
        assert_eq!(m.answers[0].rdata, RData::A(Ipv4Addr::new(10, 77, 0, 5)));
        assert_eq!(m.answers[1].rdata, RData::Ptr(n("x.tdm.test")));
    }

    #[test]
    fn rejects_pointer_loops_and_forward_pointers() {
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::BadPointer { at: 12, target: 12 })
        );
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[1, b'a', 0xc0, 40, 0, 1, 0, 1]);
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::BadPointer { at: 14, target: 40 })
        );
        // A chain of pointers each one step back reaching a label: fine while short.
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0];
        b.extend_from_slice(&[0xc0, 12, 0xc0, 15, 0xc0, 17]);
        b[5] = 1;
        let mut r = Reader { buf: &b, pos: 19 };
        assert_eq!(r.name().unwrap(), n("a"));
        assert_eq!(r.pos, 21);
    }

    #[test]
    fn rejects_overlong_names_built_from_pointers() {
        // 64 labels of one octet chained backwards by pointers: 64*2 + 1 = 129 octets is fine,
        // but labels of 10 octets each chained overflow 255.
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&[
            10, b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', b'x', 0,
        ]);
        let mut prev = 12usize;
        for _ in 0..30 {
            let here = b.len();
            b.extend_from_slice(&[
                10, b'y', b'y', b'y', b'y', b'y', b'y', b'y', b'y', b'y', b'y',
            ]);
            b.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
            prev = here;
        }
        let mut r = Reader { buf: &b, pos: prev };
        assert_eq!(r.name(), Err(DecodeError::NameTooLong { at: prev }));
    }

    #[test]
    fn precise_errors() {
        assert_eq!(
            Message::decode(&[0, 1, 2]),
            Err(DecodeError::Truncated {
                what: "header flags",
                at: 2,
                need: 2,
                have: 1
            })
        );
        let mut b = sample().encode().unwrap();
        b.push(0);
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::TrailingData {
                at: b.len() - 1,
                count: 1
            })
        );
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 1, 0, 1];
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::BadLabelType {
                at: 12,
                octet: 0x40
            })
        );
        b[12] = 6;
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::Truncated {
                what: "label",
                at: 13,
                need: 6,
                have: 5
            })
        );
        // A pointer into the header (found by the fuzzer: a "name" made of the ID, flags and
        // counts would change when TSIG processing rewrites them).
        let b = [
            0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0xc0, 0, 0, 1, 0, 1,
        ];
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::BadPointer { at: 14, target: 0 })
        );
        // A label followed by a pointer back to the start of its own name: a loop.
        let b = [
            0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0xc0, 12, 0, 1, 0, 1,
        ];
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::BadPointer { at: 14, target: 12 })
        );
        // An A record with 5 octets of RDATA.
        let mut b = vec![
            0, 0, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 5,
        ];
        b.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::BadRdata {
                rtype: RrType::A,
                at: 23,
                reason: "RDATA length does not match its contents"
            })
        );
        // Counts far above what the input holds: a clean truncation error, no huge allocation.
        let b = [
            0, 0, 0x80, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(matches!(
            Message::decode(&b),
            Err(DecodeError::Truncated {
                what: "label length",
                ..
            })
        ));
    }

    #[test]
    fn tsig_must_be_last() {
        let tsig = Record {
            name: n("key"),
            rtype: RrType::TSIG,
            class: Class::ANY,
            ttl: 0,
            rdata: RData::Tsig(TsigRdata {
                algorithm: n("hmac-sha256"),
                time_signed: 0x0102_0304_0506,
                fudge: 300,
                mac: vec![7; 32],
                original_id: 9,
                error: Rcode::NOERROR,
                other: vec![],
            }),
        };
        let mut m = sample();
        m.additional.push(tsig.clone());
        let b = m.encode().unwrap();
        let decoded = Message::decode(&b).unwrap();
        assert_eq!(decoded.tsig().unwrap().1.time_signed, 0x0102_0304_0506);
        assert_eq!(decoded.effective_rcode(), Rcode::NOERROR);
        // NOTAUTH in the header, BADKEY in the TSIG error field: the extended code wins.
        let mut notauth = m.clone();
        notauth.header.rcode = 9;
        if let Some(Record {
            rdata: RData::Tsig(t),
            ..
        }) = notauth.additional.last_mut()
        {
            t.error = Rcode::BADKEY;
        }
        let decoded = Message::decode(&notauth.encode().unwrap()).unwrap();
        assert_eq!(decoded.rcode(), Rcode::NOTAUTH);
        assert_eq!(decoded.effective_rcode(), Rcode::BADKEY);
        m.additional.push(Record {
            name: n("x"),
            rtype: RrType::A,
            class: Class::IN,
            ttl: 0,
            rdata: RData::A(Ipv4Addr::LOCALHOST),
        });
        assert!(matches!(
            Message::decode(&m.encode().unwrap()),
            Err(DecodeError::TsigNotLast { .. })
        ));
        // A TSIG record with no RDATA (found by the fuzzer) is malformed, not "unsigned".
        let mut m = sample();
        m.additional.push(Record {
            rdata: RData::Empty,
            ..tsig.clone()
        });
        let b = m.encode().unwrap();
        assert_eq!(
            Message::decode(&b),
            Err(DecodeError::BadRdata {
                rtype: RrType::TSIG,
                at: b.len(),
                reason: "empty TSIG RDATA"
            })
        );
        let mut m = sample();
        m.authority.push(tsig);
        assert!(matches!(
            Message::decode(&m.encode().unwrap()),
            Err(DecodeError::TsigNotLast { .. })
        ));
    }

    #[test]
    fn rcode_extension_and_names() {
        let mut m = sample();
        m.header.rcode = 0x0a;
        assert_eq!(m.rcode(), Rcode::NOTZONE);
        m.additional.push(Record {
            name: Name::root(),
            rtype: RrType::OPT,
            class: Class(1232),
            ttl: 1 << 24,
            rdata: RData::Empty,
        });
        m.header.rcode = 0;
        assert_eq!(m.rcode(), Rcode::BADSIG);
        assert_eq!(Rcode::NXRRSET.to_string(), "NXRRSET");
        assert_eq!(Rcode(4000).to_string(), "RCODE4000");
        assert_eq!(RrType(99).to_string(), "TYPE99");
        assert_eq!(Class::NONE.to_string(), "NONE");
    }
}
