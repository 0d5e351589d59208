//! Failover wire codec: [`Message`] ⇄ bytes, byte-exact with ISC dhcpd 4.4, plus TCP framing and
//! the message digest.
//!
//! # Wire layout
//!
//! Every message is a 12-byte header followed by options, all integers big-endian:
//!
//! ```text
//! 0  u16 length          whole message, header included; 12..=2048
//! 2  u8  message type    1 POOLREQ … 12 DISCONNECT (ISC numbering: 7 UPDREQALL, 9 UPDREQ)
//! 3  u8  payload offset  where the options start; we send 12
//! 4  u32 time            sender's clock, seconds since the epoch
//! 8  u32 xid             transaction id
//! .. options             code u16, length u16, data
//! ```
//!
//! # Encoding
//!
//! Options are written in the order ISC's `dhcp_failover_send_*` functions write them, so a
//! message built with the same fields is byte-identical to ISC's. The [`Dialect`] decides what is
//! safe for the partner:
//! - [`Dialect::Isc`]: one binding per BNDUPD/BNDACK (a body with several bindings becomes several
//!   consecutive messages that share the body's `time` and `xid`; acknowledgements must therefore
//!   be matched by xid *and* assigned address), and never the DDNS option, because ISC 4.4 drops
//!   the link on a DDNS option with any data in a BNDUPD or BNDACK (its option table gives DDNS a
//!   fixed size of zero).
//! - [`Dialect::Tandem`]: several bindings per message (each binding starts with its
//!   assigned-IP-address option) and every option, including DDNS with the client's host name.
//!
//! With a shared secret ([`Codec::with_secret`]) every message ends with a message-digest option
//! (17): digest type 2 followed by HMAC-SHA256, keyed with the secret, over every byte of the
//! message that precedes the 32 digest bytes (the header with its final length, every option, and
//! the digest option's own code, length and type byte). Encoding fails rather than produce a
//! message above 2048 bytes.
//!
//! # Decoding
//!
//! - The length must be 12..=2048 and the message type known.
//! - A payload offset below 12 is read as 12 (Windows sends 8 and still starts its options at
//!   byte 12; [`Decoded::payload_offset`] reports what was sent); bytes between 12 and a larger
//!   offset are skipped; an offset past the end is an error.
//! - Options with codes outside 1..=29 (including Microsoft's 30..=41) are skipped, as ISC does.
//! - A repeated option is an error (ISC drops the link), checked before the next rule, as ISC
//!   does. In BNDUPD/BNDACK each assigned-IP-address option after the first starts a new binding,
//!   and repetition is checked per binding.
//! - Options the message type does not carry are skipped without looking at their contents.
//! - Fixed-size options must have their exact size (IP-flags may be 1 byte, as Windows sends it);
//!   hash-bucket-assignment must be exactly 32 bytes.
//! - Options a type cannot do without are required: addresses-transferred (POOLRESP),
//!   assigned-IP-address (every binding of BNDUPD/BNDACK), binding-status (every binding of
//!   BNDUPD; a BNDACK without one, as ISC dhcpd 4.4 sends them, decodes to
//!   [`ACK_WITHOUT_STATUS`]), relationship-name (CONNECT), server-state (STATE).
//! - Message digest: with a secret, a message without a digest, with another digest type, with a
//!   digest that is not the last option or with a wrong digest is refused
//!   ([`CodecError::reject_reason`] gives the draft's reason). Without a secret, a digest is
//!   skipped like ISC does (reported as [`DigestStatus::Ignored`]).
//!
//! Decoding never panics and never reads outside the input; every failure is a [`CodecError`].

use std::fmt;
use std::net::Ipv4Addr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::message::{
    BindingAck, BindingStatus, BindingUpdate, BndAck, BndUpd, Body, BucketMap, Connect, ConnectAck,
    Ddns, DdnsFlags, DigestType, Disconnect, HardwareAddr, IpFlags, Message, MessageType,
    OptionCode, PoolResp, RejectReason, ServerFlags, ServerState, State, TlsReply, TlsRequest,
};

/// Length of the fixed message header.
pub const HEADER_LEN: usize = 12;
/// Smallest valid message (a bare header).
pub const MIN_MESSAGE_LEN: usize = HEADER_LEN;
/// Largest valid message (ISC drops the link above this).
pub const MAX_MESSAGE_LEN: usize = 2048;
/// Length of an HMAC-SHA256 digest.
pub const DIGEST_LEN: usize = 32;
/// Bytes the message-digest option adds to a message: code, length, type byte, digest.
pub const DIGEST_OPTION_LEN: usize = 4 + 1 + DIGEST_LEN;
/// Length of an option's code and length fields.
const OPTION_HEADER_LEN: usize = 4;

type HmacSha256 = Hmac<Sha256>;

/// Everything that can go wrong encoding or decoding a failover message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer bytes than the header or the length field promises.
    #[error("message truncated: {needed} bytes needed, {have} available")]
    Truncated {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The length field is below the 12-byte header.
    #[error("message length {0} is shorter than the 12-byte header")]
    LengthTooSmall(usize),
    /// The length field (or an encoded message) exceeds 2048 bytes.
    #[error("message length {0} exceeds the 2048-byte limit")]
    LengthTooLarge(usize),
    /// A buffer handed to [`Codec::decode`] is longer than the message its length field
    /// announces.
    #[error("{have} bytes given for a message of length {length}")]
    TrailingBytes {
        /// The length field.
        length: usize,
        /// Bytes given.
        have: usize,
    },
    /// The message type is not one of 1..=12.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// The payload offset points past the end of the message.
    #[error("payload offset {offset} is past the end of the {length}-byte message")]
    PayloadOffsetPastEnd {
        /// The payload offset.
        offset: u8,
        /// The message length.
        length: usize,
    },
    /// Fewer than 4 bytes remain for an option's code and length.
    #[error("option header at byte {at} runs past the end of the message")]
    OptionHeaderTruncated {
        /// Offset of the option in the message.
        at: usize,
    },
    /// An option's data runs past the end of the message.
    #[error("option {code} at byte {at} with length {len} runs past the end of the message")]
    OptionTruncated {
        /// Option code.
        code: u16,
        /// Declared length.
        len: u16,
        /// Offset of the option in the message.
        at: usize,
    },
    /// An option appears twice (in one binding, for BNDUPD/BNDACK).
    #[error("option {0} repeated")]
    DuplicateOption(u16),
    /// An option's data has the wrong size.
    #[error("option {option:?} has {len} bytes of data; expected {expected}")]
    BadOptionLength {
        /// The option.
        option: OptionCode,
        /// Its data length.
        len: usize,
        /// What the option needs.
        expected: &'static str,
    },
    /// A message lacks an option its type requires.
    #[error("{} lacks required option {option:?}", .message_type.name())]
    MissingOption {
        /// The message type.
        message_type: MessageType,
        /// The missing option.
        option: OptionCode,
        /// The message's xid, so that a refusal can echo it.
        xid: u32,
    },
    /// A secret is configured and the message carries no digest.
    #[error("message digest missing")]
    DigestMissing,
    /// The digest does not match the message.
    #[error("message digest does not match")]
    DigestMismatch,
    /// The digest uses an algorithm other than HMAC-SHA256 (type 2).
    #[error("message digest type {0} not supported")]
    DigestUnsupported(u8),
    /// The digest is not the last option of the message.
    #[error("message digest is not the last option")]
    DigestNotLast,
    /// A BNDUPD or BNDACK with no binding cannot be encoded.
    #[error("{} without any binding", .0.name())]
    NoBindings(MessageType),
    /// An option value is longer than an option can carry (65 535 bytes).
    #[error("option {option:?} value of {len} bytes is too long")]
    OptionTooLong {
        /// The option.
        option: OptionCode,
        /// The value length.
        len: usize,
    },
}

impl CodecError {
    /// The draft's reject reason for this error, where the protocol has one (to put in a
    /// CONNECTACK, BNDACK or DISCONNECT before closing the link).
    ///
    /// Digest failures map to 21 (missing), 20 (compare failed; also a digest that is not last)
    /// and 12 (unsupported type). Missing required options map to 8 (relationship name), 3
    /// (binding information), 5 (MCLT) or 18 (HBA); a hash-bucket-assignment that is not 32
    /// bytes maps to 18. Other errors have no specific reason.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            CodecError::DigestMissing => Some(RejectReason::DigestMissing),
            CodecError::DigestMismatch | CodecError::DigestNotLast => {
                Some(RejectReason::DigestCompareFailed)
            }
            CodecError::DigestUnsupported(_) => Some(RejectReason::DigestNotSupported),
            CodecError::MissingOption { option, .. } => match option {
                OptionCode::RelationshipName => Some(RejectReason::InvalidPartner),
                OptionCode::AssignedIpAddress | OptionCode::BindingStatus => {
                    Some(RejectReason::MissingBindingInfo)
                }
                OptionCode::Mclt => Some(RejectReason::InvalidMclt),
                OptionCode::HashBucketAssignment => Some(RejectReason::HbaConflict),
                _ => None,
            },
            CodecError::BadOptionLength {
                option: OptionCode::HashBucketAssignment,
                ..
            } => Some(RejectReason::HbaConflict),
            _ => None,
        }
    }
}

/// What the partner can take, which decides how messages are encoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Dialect {
    /// An ISC dhcpd 4.x partner: one binding per BNDUPD/BNDACK, no DDNS option.
    #[default]
    Isc,
    /// A Tandem partner: several bindings per BNDUPD/BNDACK, every option.
    Tandem,
}

/// What happened to the message-digest option of a decoded message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DigestStatus {
    /// The message had no digest (and none was required).
    Absent,
    /// A secret is configured and the digest matched.
    Verified,
    /// No secret is configured; the message carried a digest, which was skipped.
    Ignored,
}

/// A decoded message with what the decoder saw on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The message.
    pub message: Message,
    /// The payload offset the sender put in the header (8 suggests a Windows peer).
    pub payload_offset: u8,
    /// The digest outcome.
    pub digest: DigestStatus,
}

/// The fixed header of a message, as read from the wire.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Total message length (12..=2048 once validated).
    pub length: u16,
    /// Raw message type code.
    pub message_type: u8,
    /// Raw payload offset.
    pub payload_offset: u8,
    /// Sender's time.
    pub time: u32,
    /// Transaction id.
    pub xid: u32,
}

impl Header {
    /// Reads the header at the start of `buf` and checks the length bounds.
    pub fn parse(buf: &[u8]) -> Result<Header, CodecError> {
        let length = usize::from(frame_len(buf)?.ok_or(CodecError::Truncated {
            needed: 2,
            have: buf.len(),
        })?);
        if buf.len() < HEADER_LEN {
            return Err(CodecError::Truncated {
                needed: HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(Header {
            length: length as u16,
            message_type: buf[2],
            payload_offset: buf[3],
            time: be32(&buf[4..8]),
            xid: be32(&buf[8..12]),
        })
    }
}

/// The length of the message starting at `buf`: `Ok(None)` until its 2-byte length field is
/// there, an error if the length is outside 12..=2048.
pub fn frame_len(buf: &[u8]) -> Result<Option<u16>, CodecError> {
    let Some(bytes) = buf.get(..2) else {
        return Ok(None);
    };
    let length = u16::from_be_bytes([bytes[0], bytes[1]]);
    if usize::from(length) < MIN_MESSAGE_LEN {
        return Err(CodecError::LengthTooSmall(usize::from(length)));
    }
    if usize::from(length) > MAX_MESSAGE_LEN {
        return Err(CodecError::LengthTooLarge(usize::from(length)));
    }
    Ok(Some(length))
}

/// Encoder and decoder settings for one failover link: dialect and optional shared secret.
#[derive(Clone, Default)]
pub struct Codec {
    dialect: Dialect,
    /// HMAC keyed with the shared secret, cloned per message.
    mac: Option<HmacSha256>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Codec")
            .field("dialect", &self.dialect)
            .field("authenticated", &self.mac.is_some())
            .finish()
    }
}

impl Codec {
    /// A codec for `dialect` with no shared secret.
    pub fn new(dialect: Dialect) -> Codec {
        Codec { dialect, mac: None }
    }

    /// The same codec authenticating every message with `secret` (HMAC-SHA256 digest option).
    /// An empty secret turns authentication off, as a blank secret does on Windows.
    pub fn with_secret(mut self, secret: &[u8]) -> Codec {
        self.mac = if secret.is_empty() {
            None
        } else {
            // HMAC accepts keys of any length, so this is always `Ok`.
            HmacSha256::new_from_slice(secret).ok()
        };
        self
    }

    /// The dialect this codec encodes for.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether a shared secret is configured.
    pub fn is_authenticated(&self) -> bool {
        self.mac.is_some()
    }

    /// Bytes every encoded message takes besides its options: the header, plus the digest
    /// option when a secret is configured.
    pub fn overhead(&self) -> usize {
        HEADER_LEN
            + if self.mac.is_some() {
                DIGEST_OPTION_LEN
            } else {
                0
            }
    }

    /// Bytes one binding adds to a BNDUPD in this codec's dialect (to pack bindings under the
    /// 2048-byte limit: `overhead() + Σ binding_len ≤ MAX_MESSAGE_LEN`). `usize::MAX` if the
    /// binding cannot be encoded at all (a value longer than 65 535 bytes).
    pub fn binding_len(&self, binding: &BindingUpdate) -> usize {
        binding_update_len(binding, self.dialect)
    }

    /// Encodes `msg` and appends it to `out`; returns how many messages were written (more than
    /// one only for a multi-binding BNDUPD/BNDACK in the [`Dialect::Isc`] dialect).
    ///
    /// On error nothing is appended.
    pub fn encode(&self, msg: &Message, out: &mut Vec<u8>) -> Result<usize, CodecError> {
        let start = out.len();
        let result = self.encode_inner(msg, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Encodes `msg` into a new buffer (see [`Codec::encode`]).
    pub fn encode_to_vec(&self, msg: &Message) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        self.encode(msg, &mut out)?;
        Ok(out)
    }

    /// Decodes exactly one message occupying all of `buf`.
    pub fn decode(&self, buf: &[u8]) -> Result<Message, CodecError> {
        self.decode_detailed(buf).map(|d| d.message)
    }

    /// Decodes exactly one message occupying all of `buf`, reporting the payload offset and the
    /// digest outcome as well.
    pub fn decode_detailed(&self, buf: &[u8]) -> Result<Decoded, CodecError> {
        let header = Header::parse(buf)?;
        let length = usize::from(header.length);
        if buf.len() < length {
            return Err(CodecError::Truncated {
                needed: length,
                have: buf.len(),
            });
        }
        if buf.len() > length {
            return Err(CodecError::TrailingBytes {
                length,
                have: buf.len(),
            });
        }
        let message_type = MessageType::from_code(header.message_type)
            .ok_or(CodecError::UnknownMessageType(header.message_type))?;
        let payload_offset = usize::from(header.payload_offset);
        if payload_offset > length {
            return Err(CodecError::PayloadOffsetPastEnd {
                offset: header.payload_offset,
                length,
            });
        }
        let first_option = payload_offset.max(HEADER_LEN);

        let mut builder = BodyBuilder::new(message_type, header.xid, length);
        let mut digest: Option<(usize, &[u8])> = None;
        let mut at = first_option;
        while at < length {
            if length - at < OPTION_HEADER_LEN {
                return Err(CodecError::OptionHeaderTruncated { at });
            }
            let code = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
            let data_start = at + OPTION_HEADER_LEN;
            let data_end = data_start + usize::from(len);
            if data_end > length {
                return Err(CodecError::OptionTruncated { code, len, at });
            }
            let data = &buf[data_start..data_end];
            if code == OptionCode::MessageDigest.code() {
                if digest.is_some() {
                    return Err(CodecError::DuplicateOption(code));
                }
                digest = Some((data_end, data));
            } else {
                builder.option(code, data)?;
            }
            at = data_end;
        }

        let digest_status = match (&self.mac, digest) {
            (None, None) => DigestStatus::Absent,
            (None, Some(_)) => DigestStatus::Ignored,
            (Some(_), None) => return Err(CodecError::DigestMissing),
            (Some(mac), Some((end, data))) => {
                if end != length {
                    return Err(CodecError::DigestNotLast);
                }
                let (&kind, value) = data.split_first().ok_or(CodecError::DigestMismatch)?;
                if DigestType::from_code(kind) != DigestType::HmacSha256 {
                    return Err(CodecError::DigestUnsupported(kind));
                }
                if value.len() != DIGEST_LEN {
                    return Err(CodecError::DigestMismatch);
                }
                let mut mac = mac.clone();
                mac.update(&buf[..length - DIGEST_LEN]);
                mac.verify_slice(value)
                    .map_err(|_| CodecError::DigestMismatch)?;
                DigestStatus::Verified
            }
        };

        Ok(Decoded {
            message: Message {
                time: header.time,
                xid: header.xid,
                body: builder.finish()?,
            },
            payload_offset: header.payload_offset,
            digest: digest_status,
        })
    }

    fn encode_inner(&self, msg: &Message, out: &mut Vec<u8>) -> Result<usize, CodecError> {
        match &msg.body {
            Body::BndUpd(upd) => {
                self.put_batch(out, msg, &upd.bindings, MessageType::BndUpd, put_binding)
            }
            Body::BndAck(ack) => self.put_batch(out, msg, &ack.acks, MessageType::BndAck, put_ack),
            body => {
                self.put_message(out, msg, |o| put_body_options(o, body))?;
                Ok(1)
            }
        }
    }

    /// Writes one message: header, the options `fill` writes, the digest; then patches the
    /// length.
    /// Encode a BNDUPD/BNDACK body: one message per item towards ISC, one message carrying them
    /// all between Tandem peers. Returns how many messages were written.
    fn put_batch<T>(
        &self,
        out: &mut Vec<u8>,
        msg: &Message,
        items: &[T],
        kind: MessageType,
        put: fn(&mut Vec<u8>, &T, Dialect) -> Result<(), CodecError>,
    ) -> Result<usize, CodecError> {
        if items.is_empty() {
            return Err(CodecError::NoBindings(kind));
        }
        if self.dialect == Dialect::Isc {
            for item in items {
                self.put_message(out, msg, |o| put(o, item, self.dialect))?;
            }
            Ok(items.len())
        } else {
            self.put_message(out, msg, |o| {
                items.iter().try_for_each(|item| put(o, item, self.dialect))
            })?;
            Ok(1)
        }
    }

    fn put_message(
        &self,
        out: &mut Vec<u8>,
        msg: &Message,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0]); // length, patched below
        out.push(msg.message_type().code());
        out.push(HEADER_LEN as u8);
        out.extend_from_slice(&msg.time.to_be_bytes());
        out.extend_from_slice(&msg.xid.to_be_bytes());
        fill(out)?;
        let digest_len = if self.mac.is_some() {
            DIGEST_OPTION_LEN
        } else {
            0
        };
        let total = out.len() - start + digest_len;
        if total > MAX_MESSAGE_LEN {
            return Err(CodecError::LengthTooLarge(total));
        }
        // total ≤ 2048, so it fits in u16.
        out[start..start + 2].copy_from_slice(&(total as u16).to_be_bytes());
        if let Some(mac) = &self.mac {
            out.extend_from_slice(&OptionCode::MessageDigest.code().to_be_bytes());
            out.extend_from_slice(&((1 + DIGEST_LEN) as u16).to_be_bytes());
            out.push(DigestType::HmacSha256.code());
            let mut mac = mac.clone();
            mac.update(&out[start..]);
            out.extend_from_slice(&mac.finalize().into_bytes());
        }
        Ok(())
    }
}

/// Incremental decoder for the TCP byte stream of one link.
///
/// Feed it whatever the socket returned ([`push`](FrameDecoder::push)), then take complete
/// messages with [`next_message`](FrameDecoder::next_message) until it returns `Ok(None)`. Any
/// segmentation gives the same messages. After the first error the stream cannot be resynchronised
/// (the link must be dropped): every later call returns the same error.
#[derive(Debug)]
pub struct FrameDecoder {
    codec: Codec,
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
    failed: Option<CodecError>,
    short_payload_offset: bool,
}

impl FrameDecoder {
    /// A decoder that decodes with `codec` (its secret decides whether digests are required).
    pub fn new(codec: Codec) -> FrameDecoder {
        FrameDecoder {
            codec,
            buf: Vec::new(),
            start: 0,
            failed: None,
            short_payload_offset: false,
        }
    }

    /// Appends bytes received from the link.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message; `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, CodecError> {
        Ok(self.next_decoded()?.map(|d| d.message))
    }

    /// The next complete message with its decoding details; `Ok(None)` if more bytes are needed.
    pub fn next_decoded(&mut self) -> Result<Option<Decoded>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let pending = &self.buf[self.start..];
        let result = match frame_len(pending) {
            Ok(None) => return Ok(None),
            Ok(Some(len)) if pending.len() < usize::from(len) => return Ok(None),
            Ok(Some(len)) => {
                let len = usize::from(len);
                let r = self.codec.decode_detailed(&pending[..len]);
                self.start += len;
                r
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(d) => {
                if usize::from(d.payload_offset) < HEADER_LEN {
                    self.short_payload_offset = true;
                }
                Ok(Some(d))
            }
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
        }
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True once a message arrived with a payload offset below 12, which Windows sends (8).
    pub fn saw_short_payload_offset(&self) -> bool {
        self.short_payload_offset
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------------------------

fn put_opt(out: &mut Vec<u8>, option: OptionCode, data: &[u8]) -> Result<(), CodecError> {
    let len = u16::try_from(data.len()).map_err(|_| CodecError::OptionTooLong {
        option,
        len: data.len(),
    })?;
    out.extend_from_slice(&option.code().to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

fn put_u8(out: &mut Vec<u8>, option: OptionCode, v: u8) -> Result<(), CodecError> {
    put_opt(out, option, &[v])
}

fn put_u16(out: &mut Vec<u8>, option: OptionCode, v: u16) -> Result<(), CodecError> {
    put_opt(out, option, &v.to_be_bytes())
}

fn put_u32(out: &mut Vec<u8>, option: OptionCode, v: u32) -> Result<(), CodecError> {
    put_opt(out, option, &v.to_be_bytes())
}

fn put_some_u8(out: &mut Vec<u8>, option: OptionCode, v: Option<u8>) -> Result<(), CodecError> {
    v.map_or(Ok(()), |v| put_u8(out, option, v))
}

fn put_some_u32(out: &mut Vec<u8>, option: OptionCode, v: Option<u32>) -> Result<(), CodecError> {
    v.map_or(Ok(()), |v| put_u32(out, option, v))
}

fn put_some_bytes(
    out: &mut Vec<u8>,
    option: OptionCode,
    v: Option<&Vec<u8>>,
) -> Result<(), CodecError> {
    v.map_or(Ok(()), |v| put_opt(out, option, v))
}

/// The binding fields in ISC's BNDUPD order, up to (excluding) the DDNS/request/reply options.
fn put_binding_core(out: &mut Vec<u8>, b: &BindingUpdate) -> Result<(), CodecError> {
    put_binding_core_with(out, b, true)
}

/// [`put_binding_core`], leaving the binding status out when `with_status` is false.
fn put_binding_core_with(
    out: &mut Vec<u8>,
    b: &BindingUpdate,
    with_status: bool,
) -> Result<(), CodecError> {
    put_opt(out, OptionCode::AssignedIpAddress, &b.assigned_ip.octets())?;
    if with_status {
        put_u8(out, OptionCode::BindingStatus, b.binding_status.code())?;
    }
    put_some_bytes(out, OptionCode::ClientIdentifier, b.client_id.as_ref())?;
    if let Some(hw) = &b.chaddr {
        let mut v = Vec::with_capacity(1 + hw.addr.len());
        v.push(hw.htype);
        v.extend_from_slice(&hw.addr);
        put_opt(out, OptionCode::ClientHardwareAddress, &v)?;
    }
    put_some_u32(out, OptionCode::LeaseExpirationTime, b.lease_expiration)?;
    put_some_u32(
        out,
        OptionCode::PotentialExpirationTime,
        b.potential_expiration,
    )?;
    put_some_u32(out, OptionCode::StartTimeOfState, b.start_time_of_state)?;
    put_some_u32(out, OptionCode::ClientLastTransactionTime, b.cltt)?;
    if let Some(f) = b.ip_flags {
        put_u16(out, OptionCode::IpFlags, f.0)?;
    }
    Ok(())
}

/// DDNS, request options, reply options: the tail ISC leaves as placeholders.
fn put_binding_tail(
    out: &mut Vec<u8>,
    b: &BindingUpdate,
    dialect: Dialect,
) -> Result<(), CodecError> {
    if dialect == Dialect::Tandem {
        if let Some(d) = &b.ddns {
            let mut v = Vec::with_capacity(2 + d.name.len());
            v.extend_from_slice(&d.flags.0.to_be_bytes());
            v.extend_from_slice(&d.name);
            put_opt(out, OptionCode::Ddns, &v)?;
        }
    }
    put_some_bytes(
        out,
        OptionCode::ClientRequestOptions,
        b.client_request_options.as_ref(),
    )?;
    put_some_bytes(
        out,
        OptionCode::ClientReplyOptions,
        b.client_reply_options.as_ref(),
    )
}

fn put_binding(out: &mut Vec<u8>, b: &BindingUpdate, dialect: Dialect) -> Result<(), CodecError> {
    put_binding_core(out, b)?;
    put_binding_tail(out, b, dialect)
}

/// Bytes `b` takes in a BNDUPD in `dialect` (what [`put_binding`] writes), computed without
/// encoding; `usize::MAX` if a value is too long for an option (65 535 bytes).
pub fn binding_update_len(b: &BindingUpdate, dialect: Dialect) -> usize {
    let opt = |len: usize| {
        if len > usize::from(u16::MAX) {
            usize::MAX
        } else {
            OPTION_HEADER_LEN + len
        }
    };
    let some = |v: Option<&Vec<u8>>| v.map_or(0, |v| opt(v.len()));
    let u32s = [
        b.lease_expiration,
        b.potential_expiration,
        b.start_time_of_state,
        b.cltt,
    ]
    .iter()
    .filter(|v| v.is_some())
    .count();
    let parts = [
        opt(4),
        opt(1),
        some(b.client_id.as_ref()),
        b.chaddr.as_ref().map_or(0, |h| opt(1 + h.addr.len())),
        u32s * opt(4),
        b.ip_flags.map_or(0, |_| opt(2)),
        match (&b.ddns, dialect) {
            (Some(d), Dialect::Tandem) => opt(2 + d.name.len()),
            _ => 0,
        },
        some(b.client_request_options.as_ref()),
        some(b.client_reply_options.as_ref()),
    ];
    parts
        .iter()
        .try_fold(0usize, |a, &p| a.checked_add(p))
        .unwrap_or(usize::MAX)
}

/// The binding status a BNDACK without one decodes to. ISC dhcpd 4.4 acknowledges with the
/// assigned address alone (plus reject reason and message when refusing): every other binding
/// option of its BNDACK is compiled out. Such an acknowledgement encodes back without a status.
pub const ACK_WITHOUT_STATUS: BindingStatus = BindingStatus::Other(0);

fn put_ack(out: &mut Vec<u8>, a: &BindingAck, dialect: Dialect) -> Result<(), CodecError> {
    put_binding_core_with(
        out,
        &a.binding,
        a.binding.binding_status != ACK_WITHOUT_STATUS,
    )?;
    if let Some(r) = a.reject_reason {
        put_u8(out, OptionCode::RejectReason, r.code())?;
    }
    put_some_bytes(out, OptionCode::Message, a.message.as_ref())?;
    put_binding_tail(out, &a.binding, dialect)
}

fn put_body_options(out: &mut Vec<u8>, body: &Body) -> Result<(), CodecError> {
    match body {
        Body::PoolReq | Body::UpdReqAll | Body::UpdDone | Body::UpdReq | Body::Contact => Ok(()),
        Body::PoolResp(p) => put_u32(
            out,
            OptionCode::AddressesTransferred,
            p.addresses_transferred,
        ),
        Body::Connect(c) => {
            put_opt(out, OptionCode::RelationshipName, &c.relationship_name)?;
            put_some_u32(out, OptionCode::MaxUnackedBndupd, c.max_unacked_bndupd)?;
            put_some_u32(out, OptionCode::ReceiveTimer, c.receive_timer)?;
            put_some_bytes(
                out,
                OptionCode::VendorClassIdentifier,
                c.vendor_class.as_ref(),
            )?;
            put_some_u8(out, OptionCode::ProtocolVersion, c.protocol_version)?;
            put_some_u8(out, OptionCode::TlsRequest, c.tls_request.map(|t| t.code()))?;
            put_some_u32(out, OptionCode::Mclt, c.mclt)?;
            if let Some(hba) = &c.hba {
                put_opt(out, OptionCode::HashBucketAssignment, hba.as_bytes())?;
            }
            put_some_u8(out, OptionCode::DelayedServiceParameter, c.delayed_service)?;
            put_some_bytes(
                out,
                OptionCode::VendorSpecificOptions,
                c.vendor_options.as_ref(),
            )
        }
        Body::ConnectAck(c) => {
            put_some_bytes(
                out,
                OptionCode::RelationshipName,
                c.relationship_name.as_ref(),
            )?;
            put_some_u32(out, OptionCode::MaxUnackedBndupd, c.max_unacked_bndupd)?;
            put_some_u32(out, OptionCode::ReceiveTimer, c.receive_timer)?;
            put_some_bytes(
                out,
                OptionCode::VendorClassIdentifier,
                c.vendor_class.as_ref(),
            )?;
            put_some_u8(out, OptionCode::ProtocolVersion, c.protocol_version)?;
            put_some_u8(out, OptionCode::TlsReply, c.tls_reply.map(|t| t.code()))?;
            put_some_u8(
                out,
                OptionCode::RejectReason,
                c.reject_reason.map(|r| r.code()),
            )?;
            put_some_bytes(out, OptionCode::Message, c.message.as_ref())?;
            put_some_bytes(
                out,
                OptionCode::VendorSpecificOptions,
                c.vendor_options.as_ref(),
            )
        }
        Body::State(s) => {
            put_u8(out, OptionCode::ServerState, s.server_state.code())?;
            put_some_u8(out, OptionCode::ServerFlags, s.server_flags.map(|f| f.0))?;
            put_some_u32(out, OptionCode::StartTimeOfState, s.start_time_of_state)
        }
        Body::Disconnect(d) => {
            put_some_u8(
                out,
                OptionCode::RejectReason,
                d.reject_reason.map(|r| r.code()),
            )?;
            put_some_bytes(out, OptionCode::Message, d.message.as_ref())
        }
        // Handled by the caller (bindings).
        Body::BndUpd(_) | Body::BndAck(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------------------------

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Bit of option `code` (1..=29) in a presence mask.
const fn bit(code: OptionCode) -> u32 {
    1 << code.code()
}

/// The options each message type carries (ISC's `fto_allowed`, plus delayed-service and
/// vendor-specific options in CONNECT and vendor-specific options in CONNECTACK). Others are
/// skipped.
const fn allowed(t: MessageType) -> u32 {
    use OptionCode as O;
    const BINDING: u32 = bit(O::AssignedIpAddress)
        | bit(O::BindingStatus)
        | bit(O::ClientIdentifier)
        | bit(O::ClientHardwareAddress)
        | bit(O::Ddns)
        | bit(O::IpFlags)
        | bit(O::LeaseExpirationTime)
        | bit(O::PotentialExpirationTime)
        | bit(O::StartTimeOfState)
        | bit(O::ClientLastTransactionTime)
        | bit(O::ClientRequestOptions)
        | bit(O::ClientReplyOptions);
    match t {
        MessageType::PoolReq
        | MessageType::UpdReqAll
        | MessageType::UpdDone
        | MessageType::UpdReq
        | MessageType::Contact => 0,
        MessageType::PoolResp => bit(O::AddressesTransferred),
        MessageType::BndUpd => BINDING,
        MessageType::BndAck => BINDING | bit(O::RejectReason) | bit(O::Message),
        MessageType::Connect => {
            bit(O::RelationshipName)
                | bit(O::MaxUnackedBndupd)
                | bit(O::ReceiveTimer)
                | bit(O::VendorClassIdentifier)
                | bit(O::ProtocolVersion)
                | bit(O::TlsRequest)
                | bit(O::Mclt)
                | bit(O::HashBucketAssignment)
                | bit(O::DelayedServiceParameter)
                | bit(O::VendorSpecificOptions)
        }
        MessageType::ConnectAck => {
            bit(O::RelationshipName)
                | bit(O::MaxUnackedBndupd)
                | bit(O::ReceiveTimer)
                | bit(O::VendorClassIdentifier)
                | bit(O::ProtocolVersion)
                | bit(O::TlsReply)
                | bit(O::RejectReason)
                | bit(O::Message)
                | bit(O::VendorSpecificOptions)
        }
        MessageType::State => bit(O::ServerState) | bit(O::ServerFlags) | bit(O::StartTimeOfState),
        MessageType::Disconnect => bit(O::RejectReason) | bit(O::Message),
    }
}

/// The option values of one message (or one binding), as ISC's `failover_message_t` holds them.
#[derive(Default)]
struct Fields<'a> {
    seen: u32,
    addresses_transferred: Option<u32>,
    assigned_ip: Option<Ipv4Addr>,
    binding_status: Option<u8>,
    client_id: Option<&'a [u8]>,
    chaddr: Option<HardwareAddr>,
    cltt: Option<u32>,
    reply_options: Option<&'a [u8]>,
    request_options: Option<&'a [u8]>,
    ddns: Option<Ddns>,
    delayed_service: Option<u8>,
    hba: Option<BucketMap>,
    ip_flags: Option<u16>,
    lease_expiration: Option<u32>,
    max_unacked: Option<u32>,
    mclt: Option<u32>,
    message: Option<&'a [u8]>,
    potential_expiration: Option<u32>,
    receive_timer: Option<u32>,
    protocol_version: Option<u8>,
    reject_reason: Option<u8>,
    relationship_name: Option<&'a [u8]>,
    server_flags: Option<u8>,
    server_state: Option<u8>,
    stos: Option<u32>,
    tls_reply: Option<u8>,
    tls_request: Option<u8>,
    vendor_class: Option<&'a [u8]>,
    vendor_options: Option<&'a [u8]>,
}

fn exact<const N: usize>(option: OptionCode, data: &[u8]) -> Result<[u8; N], CodecError> {
    data.try_into().map_err(|_| CodecError::BadOptionLength {
        option,
        len: data.len(),
        expected: match N {
            1 => "1 byte",
            2 => "2 bytes",
            4 => "4 bytes",
            _ => "32 bytes",
        },
    })
}

fn opt_u8(option: OptionCode, data: &[u8]) -> Result<u8, CodecError> {
    Ok(exact::<1>(option, data)?[0])
}

fn opt_u32(option: OptionCode, data: &[u8]) -> Result<u32, CodecError> {
    Ok(u32::from_be_bytes(exact::<4>(option, data)?))
}

impl<'a> Fields<'a> {
    /// Stores option `option` with `data`, checking its size.
    fn set(&mut self, option: OptionCode, data: &'a [u8]) -> Result<(), CodecError> {
        use OptionCode as O;
        match option {
            O::AddressesTransferred => self.addresses_transferred = Some(opt_u32(option, data)?),
            O::AssignedIpAddress => {
                self.assigned_ip = Some(Ipv4Addr::from(exact::<4>(option, data)?));
            }
            O::BindingStatus => self.binding_status = Some(opt_u8(option, data)?),
            O::ClientIdentifier => self.client_id = Some(data),
            O::ClientHardwareAddress => {
                let (&htype, addr) = data.split_first().ok_or(CodecError::BadOptionLength {
                    option,
                    len: 0,
                    expected: "at least 1 byte (hardware type)",
                })?;
                self.chaddr = Some(HardwareAddr {
                    htype,
                    addr: addr.to_vec(),
                });
            }
            O::ClientLastTransactionTime => self.cltt = Some(opt_u32(option, data)?),
            O::ClientReplyOptions => self.reply_options = Some(data),
            O::ClientRequestOptions => self.request_options = Some(data),
            O::Ddns => {
                if data.len() < 2 {
                    return Err(CodecError::BadOptionLength {
                        option,
                        len: data.len(),
                        expected: "at least 2 bytes (flags)",
                    });
                }
                self.ddns = Some(Ddns {
                    flags: DdnsFlags(u16::from_be_bytes([data[0], data[1]])),
                    name: data[2..].to_vec(),
                });
            }
            O::DelayedServiceParameter => self.delayed_service = Some(opt_u8(option, data)?),
            O::HashBucketAssignment => {
                self.hba = Some(BucketMap::from_bytes(exact::<32>(option, data)?));
            }
            O::IpFlags => {
                // ISC sends 2 bytes; Windows sends 1 (digest §1.10). Accept both.
                self.ip_flags = Some(match data {
                    [b] => u16::from(*b),
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    _ => {
                        return Err(CodecError::BadOptionLength {
                            option,
                            len: data.len(),
                            expected: "2 bytes (or 1)",
                        })
                    }
                });
            }
            O::LeaseExpirationTime => self.lease_expiration = Some(opt_u32(option, data)?),
            O::MaxUnackedBndupd => self.max_unacked = Some(opt_u32(option, data)?),
            O::Mclt => self.mclt = Some(opt_u32(option, data)?),
            O::Message => self.message = Some(data),
            O::PotentialExpirationTime => {
                self.potential_expiration = Some(opt_u32(option, data)?);
            }
            O::ReceiveTimer => self.receive_timer = Some(opt_u32(option, data)?),
            O::ProtocolVersion => self.protocol_version = Some(opt_u8(option, data)?),
            O::RejectReason => self.reject_reason = Some(opt_u8(option, data)?),
            O::RelationshipName => self.relationship_name = Some(data),
            O::ServerFlags => self.server_flags = Some(opt_u8(option, data)?),
            O::ServerState => self.server_state = Some(opt_u8(option, data)?),
            O::StartTimeOfState => self.stos = Some(opt_u32(option, data)?),
            O::TlsReply => self.tls_reply = Some(opt_u8(option, data)?),
            O::TlsRequest => self.tls_request = Some(opt_u8(option, data)?),
            O::VendorClassIdentifier => self.vendor_class = Some(data),
            O::VendorSpecificOptions => self.vendor_options = Some(data),
            // The digest is handled by the caller; Microsoft codes never reach here.
            _ => {}
        }
        Ok(())
    }

    /// The binding part of a BNDACK: only the assigned address is required (see
    /// [`ACK_WITHOUT_STATUS`]).
    fn binding_of_ack(self, t: MessageType, xid: u32) -> Result<BindingUpdate, CodecError> {
        self.binding_or(t, xid, Some(ACK_WITHOUT_STATUS.code()))
    }

    fn binding(self, t: MessageType, xid: u32) -> Result<BindingUpdate, CodecError> {
        self.binding_or(t, xid, None)
    }

    /// The binding these fields describe (the owned values move into it); without a
    /// binding-status option, `default_status` (or the error that it is missing).
    fn binding_or(
        self,
        t: MessageType,
        xid: u32,
        default_status: Option<u8>,
    ) -> Result<BindingUpdate, CodecError> {
        let missing = |option| CodecError::MissingOption {
            message_type: t,
            option,
            xid,
        };
        Ok(BindingUpdate {
            assigned_ip: self
                .assigned_ip
                .ok_or_else(|| missing(OptionCode::AssignedIpAddress))?,
            binding_status: BindingStatus::from_code(
                self.binding_status
                    .or(default_status)
                    .ok_or_else(|| missing(OptionCode::BindingStatus))?,
            ),
            client_id: self.client_id.map(<[u8]>::to_vec),
            chaddr: self.chaddr,
            lease_expiration: self.lease_expiration,
            potential_expiration: self.potential_expiration,
            start_time_of_state: self.stos,
            cltt: self.cltt,
            ip_flags: self.ip_flags.map(IpFlags),
            ddns: self.ddns,
            client_request_options: self.request_options.map(<[u8]>::to_vec),
            client_reply_options: self.reply_options.map(<[u8]>::to_vec),
        })
    }
}

/// Collects options into the fields of one message type.
struct BodyBuilder<'a> {
    message_type: MessageType,
    xid: u32,
    allowed: u32,
    /// One entry per binding for BNDUPD/BNDACK, exactly one for the other types.
    fields: Vec<Fields<'a>>,
}

impl<'a> BodyBuilder<'a> {
    /// A builder for a message of `length` bytes (the length sizes the list of bindings).
    fn new(message_type: MessageType, xid: u32, length: usize) -> BodyBuilder<'a> {
        let mut fields = Vec::new();
        if matches!(message_type, MessageType::BndUpd | MessageType::BndAck) {
            // A binding with a client takes some 60 bytes or more; a message is at most 2048
            // bytes, so this stays small whatever the partner sends (more bindings than
            // reserved just grow the list).
            fields.reserve(length / 56 + 1);
        }
        fields.push(Fields::default());
        BodyBuilder {
            message_type,
            xid,
            allowed: allowed(message_type),
            fields,
        }
    }

    fn is_binding_type(&self) -> bool {
        matches!(self.message_type, MessageType::BndUpd | MessageType::BndAck)
    }

    /// Takes one option (never the digest).
    fn option(&mut self, code: u16, data: &'a [u8]) -> Result<(), CodecError> {
        let Some(option) = OptionCode::from_code(code) else {
            return Ok(()); // unknown: skip
        };
        if option.is_microsoft() {
            return Ok(()); // layouts unverified: skip like ISC
        }
        let b = bit(option);
        if self.is_binding_type()
            && option == OptionCode::AssignedIpAddress
            && self.fields.last().is_some_and(|f| f.seen & b != 0)
        {
            self.fields.push(Fields::default());
        }
        // `fields` is never empty: it starts with one entry and only grows.
        let Some(f) = self.fields.last_mut() else {
            return Ok(());
        };
        if f.seen & b != 0 {
            return Err(CodecError::DuplicateOption(code));
        }
        f.seen |= b;
        if self.allowed & b == 0 {
            return Ok(()); // not carried by this type: skip
        }
        f.set(option, data)
    }

    fn finish(self) -> Result<Body, CodecError> {
        let t = self.message_type;
        let xid = self.xid;
        let missing = |option| CodecError::MissingOption {
            message_type: t,
            option,
            xid,
        };
        let f = &self.fields[0];
        let bytes = |v: Option<&[u8]>| v.map(<[u8]>::to_vec);
        Ok(match t {
            MessageType::PoolReq => Body::PoolReq,
            MessageType::UpdReqAll => Body::UpdReqAll,
            MessageType::UpdDone => Body::UpdDone,
            MessageType::UpdReq => Body::UpdReq,
            MessageType::Contact => Body::Contact,
            MessageType::PoolResp => Body::PoolResp(PoolResp {
                addresses_transferred: f
                    .addresses_transferred
                    .ok_or_else(|| missing(OptionCode::AddressesTransferred))?,
            }),
            MessageType::BndUpd => Body::BndUpd(BndUpd {
                bindings: self
                    .fields
                    .into_iter()
                    .map(|f| f.binding(t, xid))
                    .collect::<Result<_, _>>()?,
            }),
            MessageType::BndAck => Body::BndAck(BndAck {
                acks: self
                    .fields
                    .into_iter()
                    .map(|f| {
                        let reject_reason = f.reject_reason.map(RejectReason::from_code);
                        let message = bytes(f.message);
                        Ok(BindingAck {
                            binding: f.binding_of_ack(t, xid)?,
                            reject_reason,
                            message,
                        })
                    })
                    .collect::<Result<_, CodecError>>()?,
            }),
            MessageType::Connect => Body::Connect(Connect {
                relationship_name: f
                    .relationship_name
                    .ok_or_else(|| missing(OptionCode::RelationshipName))?
                    .to_vec(),
                max_unacked_bndupd: f.max_unacked,
                receive_timer: f.receive_timer,
                vendor_class: bytes(f.vendor_class),
                protocol_version: f.protocol_version,
                tls_request: f.tls_request.map(TlsRequest::from_code),
                mclt: f.mclt,
                hba: f.hba,
                delayed_service: f.delayed_service,
                vendor_options: bytes(f.vendor_options),
            }),
            MessageType::ConnectAck => Body::ConnectAck(ConnectAck {
                relationship_name: bytes(f.relationship_name),
                max_unacked_bndupd: f.max_unacked,
                receive_timer: f.receive_timer,
                vendor_class: bytes(f.vendor_class),
                protocol_version: f.protocol_version,
                tls_reply: f.tls_reply.map(TlsReply::from_code),
                reject_reason: f.reject_reason.map(RejectReason::from_code),
                message: bytes(f.message),
                vendor_options: bytes(f.vendor_options),
            }),
            MessageType::State => Body::State(State {
                server_state: ServerState::from_code(
                    f.server_state
                        .ok_or_else(|| missing(OptionCode::ServerState))?,
                ),
                server_flags: f.server_flags.map(ServerFlags),
                start_time_of_state: f.stos,
            }),
            MessageType::Disconnect => Body::Disconnect(Disconnect {
                reject_reason: f.reject_reason.map(RejectReason::from_code),
                message: bytes(f.message),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::message::{PoolResp, PROTOCOL_VERSION};
    use proptest::prelude::*;

    /// 2020-09-13T12:26:40Z, the time field of every vector.
    const T0: u32 = 1_600_000_000;

    /// Bytes from whitespace-separated hex; `#` starts a comment to the end of the line.
    fn hex(s: &str) -> Vec<u8> {
        s.lines()
            .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect()
    }

    fn isc() -> Codec {
        Codec::new(Dialect::Isc)
    }

    fn tandem() -> Codec {
        Codec::new(Dialect::Tandem)
    }

    fn msg(xid: u32, body: Body) -> Message {
        Message::new(T0, xid, body)
    }

    /// Checks `m` encodes to exactly `wire` and `wire` decodes to exactly `m`.
    fn assert_vector(codec: &Codec, m: &Message, wire: &[u8]) {
        let got = codec.encode_to_vec(m).expect("encode");
        assert_eq!(got, wire, "encoding of {:?}", m.message_type());
        assert_eq!(
            usize::from(u16::from_be_bytes([wire[0], wire[1]])),
            wire.len()
        );
        assert_eq!(codec.decode(wire).expect("decode"), *m);
    }

    fn isc_binding() -> BindingUpdate {
        BindingUpdate {
            client_id: Some(vec![0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55]),
            chaddr: Some(HardwareAddr::ethernet([0x00, 0x11, 0x22, 0x33, 0x44, 0x55])),
            lease_expiration: Some(T0 + 3600),
            potential_expiration: Some(T0 + 5400),
            start_time_of_state: Some(T0),
            cltt: Some(T0),
            ip_flags: Some(IpFlags::RESERVED),
            ..BindingUpdate::new(Ipv4Addr::new(192, 168, 1, 10), BindingStatus::Active)
        }
    }

    fn full_binding(last: u8) -> BindingUpdate {
        BindingUpdate {
            ddns: Some(Ddns {
                flags: DdnsFlags(DdnsFlags::A.0 | DdnsFlags::D.0),
                name: b"host.example".to_vec(),
            }),
            client_request_options: Some(vec![53, 1, 3, 12, 4, b'h', b'o', b's', b't']),
            client_reply_options: Some(vec![51, 4, 0, 0, 0x0e, 0x10]),
            ..BindingUpdate {
                assigned_ip: Ipv4Addr::new(10, 0, 0, last),
                ..isc_binding()
            }
        }
    }

    /// One message of every type, with every field the type has set.
    fn every_message() -> Vec<Message> {
        vec![
            msg(1, Body::PoolReq),
            msg(
                2,
                Body::PoolResp(PoolResp {
                    addresses_transferred: 40,
                }),
            ),
            msg(
                3,
                Body::BndUpd(BndUpd {
                    bindings: vec![full_binding(1), full_binding(2)],
                }),
            ),
            msg(
                4,
                Body::BndAck(BndAck {
                    acks: vec![
                        BindingAck::accept(&full_binding(1)),
                        BindingAck::reject(
                            &full_binding(2),
                            RejectReason::OutdatedBindingInfo,
                            Some(b"stale".to_vec()),
                        ),
                    ],
                }),
            ),
            msg(
                5,
                Body::Connect(Connect {
                    relationship_name: b"dc1".to_vec(),
                    max_unacked_bndupd: Some(100),
                    receive_timer: Some(60),
                    vendor_class: Some(b"tandem-0.1".to_vec()),
                    protocol_version: Some(PROTOCOL_VERSION),
                    tls_request: Some(TlsRequest::None),
                    mclt: Some(3600),
                    hba: Some(BucketMap::from_percent(50)),
                    delayed_service: Some(3),
                    vendor_options: Some(vec![1, 2, 3]),
                }),
            ),
            msg(
                5,
                Body::ConnectAck(ConnectAck {
                    relationship_name: Some(b"dc1".to_vec()),
                    max_unacked_bndupd: Some(100),
                    receive_timer: Some(60),
                    vendor_class: Some(b"tandem-0.1".to_vec()),
                    protocol_version: Some(PROTOCOL_VERSION),
                    tls_reply: Some(TlsReply::None),
                    reject_reason: Some(RejectReason::TimeMismatch),
                    message: Some(b"time offset too large".to_vec()),
                    vendor_options: Some(vec![9]),
                }),
            ),
            msg(7, Body::UpdReqAll),
            msg(7, Body::UpdDone),
            msg(8, Body::UpdReq),
            msg(
                9,
                Body::State(State {
                    server_state: ServerState::RecoverWait,
                    server_flags: Some(ServerFlags::STARTUP),
                    start_time_of_state: Some(T0 - 60),
                }),
            ),
            msg(10, Body::Contact),
            msg(
                11,
                Body::Disconnect(Disconnect {
                    reject_reason: Some(RejectReason::DuplicateConnection),
                    message: Some(b"already connected".to_vec()),
                }),
            ),
        ]
    }

    // -----------------------------------------------------------------------------------------
    // Round trips
    // -----------------------------------------------------------------------------------------

    #[test]
    fn round_trip_every_message_type_tandem() {
        let codecs = [tandem(), tandem().with_secret(b"s3cret")];
        let all = every_message();
        let types: Vec<_> = all.iter().map(Message::message_type).collect();
        for t in MessageType::ALL {
            assert!(types.contains(&t), "{t:?} not covered");
        }
        for codec in &codecs {
            for m in &all {
                let wire = codec.encode_to_vec(m).expect("encode");
                let d = codec.decode_detailed(&wire).expect("decode");
                assert_eq!(d.message, *m);
                assert_eq!(d.payload_offset, 12);
                let want = if codec.is_authenticated() {
                    DigestStatus::Verified
                } else {
                    DigestStatus::Absent
                };
                assert_eq!(d.digest, want);
            }
        }
    }

    #[test]
    fn round_trip_every_message_type_isc_splits_bindings_and_drops_ddns() {
        let codec = isc();
        for m in every_message() {
            let mut wire = Vec::new();
            let n = codec.encode(&m, &mut wire).expect("encode");
            let mut dec = FrameDecoder::new(codec.clone());
            dec.push(&wire);
            let mut got = Vec::new();
            while let Some(x) = dec.next_message().expect("decode") {
                got.push(x);
            }
            assert_eq!(got.len(), n);
            assert_eq!(dec.buffered(), 0);
            let strip = |b: &BindingUpdate| BindingUpdate {
                ddns: None,
                ..b.clone()
            };
            match &m.body {
                Body::BndUpd(u) => {
                    assert_eq!(n, u.bindings.len());
                    for (g, b) in got.iter().zip(&u.bindings) {
                        assert_eq!((g.time, g.xid), (m.time, m.xid));
                        assert_eq!(
                            g.body,
                            Body::BndUpd(BndUpd {
                                bindings: vec![strip(b)]
                            })
                        );
                    }
                }
                Body::BndAck(a) => {
                    assert_eq!(n, a.acks.len());
                    for (g, a) in got.iter().zip(&a.acks) {
                        let want = BindingAck {
                            binding: strip(&a.binding),
                            ..a.clone()
                        };
                        assert_eq!(g.body, Body::BndAck(BndAck { acks: vec![want] }));
                    }
                }
                _ => {
                    assert_eq!(n, 1);
                    assert_eq!(got, vec![m.clone()]);
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Byte-exact vectors, built by hand from the layout (ISC option order, ISC dialect)
    // -----------------------------------------------------------------------------------------

    #[test]
    fn vector_poolreq() {
        let wire = hex("
            00 0c        # length 12
            01           # type POOLREQ
            0c           # payload offset 12
            5f 5e 10 00  # time 1600000000
            00 00 00 07  # xid 7
        ");
        assert_vector(&isc(), &msg(7, Body::PoolReq), &wire);
    }

    #[test]
    fn vector_poolresp() {
        let wire = hex("
            00 14 02 0c 5f 5e 10 00 00 00 00 07  # length 20, POOLRESP, xid 7
            00 01 00 04 00 00 00 19              # addresses-transferred 25
        ");
        let m = msg(
            7,
            Body::PoolResp(PoolResp {
                addresses_transferred: 25,
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_bndupd() {
        let wire = hex("
            00 55 03 0c 5f 5e 10 00 00 00 00 2a  # length 85, BNDUPD, xid 42
            00 02 00 04 c0 a8 01 0a              # assigned-IP 192.168.1.10
            00 03 00 01 02                       # binding-status ACTIVE
            00 04 00 07 01 00 11 22 33 44 55     # client-identifier 01:00:11:22:33:44:55
            00 05 00 07 01 00 11 22 33 44 55     # chaddr htype 1 + 00:11:22:33:44:55
            00 0d 00 04 5f 5e 1e 10              # lease-expiration T0+3600
            00 12 00 04 5f 5e 25 18              # potential-expiration T0+5400
            00 19 00 04 5f 5e 10 00              # start-time-of-state (lease start) T0
            00 06 00 04 5f 5e 10 00              # CLTT T0
            00 0c 00 02 00 01                    # IP-flags RESERVED (2 bytes, as ISC)
        ");
        let m = msg(
            42,
            Body::BndUpd(BndUpd {
                bindings: vec![isc_binding()],
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_bndack_reject() {
        let wire = hex("
            00 52 04 0c 5f 5e 10 00 00 00 00 2a  # length 82, BNDACK, xid 42 (echoed)
            00 02 00 04 c0 a8 01 0a              # assigned-IP 192.168.1.10
            00 03 00 01 02                       # binding-status ACTIVE
            00 05 00 07 01 00 11 22 33 44 55     # chaddr
            00 0d 00 04 5f 5e 1e 10              # lease-expiration
            00 12 00 04 5f 5e 25 18              # potential-expiration
            00 19 00 04 5f 5e 10 00              # start-time-of-state
            00 06 00 04 5f 5e 10 00              # CLTT
            00 15 00 01 0f                       # reject-reason 15 outdated binding info
            00 10 00 05 73 74 61 6c 65           # message 'stale'
        ");
        let b = BindingUpdate {
            client_id: None,
            ip_flags: None,
            ..isc_binding()
        };
        let m = msg(
            42,
            Body::BndAck(BndAck {
                acks: vec![BindingAck::reject(
                    &b,
                    RejectReason::OutdatedBindingInfo,
                    Some(b"stale".to_vec()),
                )],
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_bndack_accept_minimal() {
        let wire = hex("
            00 21 04 0c 5f 5e 10 00 00 00 00 2b  # length 33, BNDACK, xid 43
            00 02 00 04 0a 00 00 01              # assigned-IP 10.0.0.1
            00 03 00 01 01                       # binding-status FREE
            00 12 00 04 5f 5e 10 00              # potential-expiration T0
        ");
        let b = BindingUpdate {
            potential_expiration: Some(T0),
            ..BindingUpdate::new(Ipv4Addr::new(10, 0, 0, 1), BindingStatus::Free)
        };
        let m = msg(
            43,
            Body::BndAck(BndAck {
                acks: vec![BindingAck::accept(&b)],
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    /// ISC dhcpd 4.4.3 acknowledges with the assigned address alone (its other BNDACK options
    /// are compiled out): 20 bytes on the wire, captured from a real dhcpd.
    #[test]
    fn vector_bndack_from_isc_without_status() {
        let wire = hex("
            00 14 04 0c 5f 5e 10 00 00 00 00 07  # length 20, BNDACK, xid 7
            00 02 00 04 0a 00 00 96              # assigned-IP 10.0.0.150
        ");
        let m = msg(
            7,
            Body::BndAck(BndAck {
                acks: vec![BindingAck::accept(&BindingUpdate::new(
                    Ipv4Addr::new(10, 0, 0, 150),
                    ACK_WITHOUT_STATUS,
                ))],
            }),
        );
        assert_vector(&isc(), &m, &wire);
        // A refusal carries the reason too.
        let wire = hex("
            00 19 04 0c 5f 5e 10 00 00 00 00 08  # length 25, BNDACK, xid 8
            00 02 00 04 0a 00 00 97              # assigned-IP 10.0.0.151
            00 15 00 01 0f                       # reject-reason 15 outdated binding information
        ");
        let got = isc().decode(&wire).expect("decode");
        let Body::BndAck(a) = got.body else {
            panic!("not a BNDACK: {got:?}")
        };
        assert_eq!(a.acks[0].binding.assigned_ip, Ipv4Addr::new(10, 0, 0, 151));
        assert_eq!(
            a.acks[0].reject_reason,
            Some(RejectReason::OutdatedBindingInfo)
        );
        // A BNDUPD still needs its status.
        let wire = hex("
            00 14 03 0c 5f 5e 10 00 00 00 00 09  # length 20, BNDUPD, xid 9
            00 02 00 04 0a 00 00 98              # assigned-IP only
        ");
        assert!(isc().decode(&wire).is_err());
    }

    fn isc_connect() -> Connect {
        Connect {
            relationship_name: b"tandem".to_vec(),
            max_unacked_bndupd: Some(10),
            receive_timer: Some(20),
            vendor_class: Some(b"isc-4.4.3-P1".to_vec()),
            protocol_version: Some(1),
            tls_request: Some(TlsRequest::None),
            mclt: Some(3600),
            hba: Some(BucketMap::from_split(128)),
            delayed_service: None,
            vendor_options: None,
        }
    }

    #[test]
    fn vector_connect() {
        let wire = hex("
            00 6c 05 0c 5f 5e 10 00 00 00 00 01  # length 108, CONNECT, xid 1
            00 16 00 06 74 61 6e 64 65 6d        # relationship-name 'tandem'
            00 0e 00 04 00 00 00 0a              # max-unacked-bndupd 10
            00 13 00 04 00 00 00 14              # receive-timer 20
            00 1c 00 0c 69 73 63 2d 34 2e 34 2e 33 2d 50 31  # vendor-class 'isc-4.4.3-P1'
            00 14 00 01 01                       # protocol-version 1
            00 1b 00 01 00                       # TLS-request 0 (one byte)
            00 0f 00 04 00 00 0e 10              # MCLT 3600
            00 0b 00 20                          # hash-bucket-assignment, 32 bytes: split 128
            ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff
            00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        ");
        assert_vector(&isc(), &msg(1, Body::Connect(isc_connect())), &wire);
    }

    #[test]
    fn vector_connectack_accept() {
        let wire = hex("
            00 40 06 0c 5f 5e 10 00 00 00 00 01  # length 64, CONNECTACK, xid 1 (echoed)
            00 16 00 06 74 61 6e 64 65 6d        # relationship-name 'tandem'
            00 0e 00 04 00 00 00 0a              # max-unacked-bndupd 10
            00 13 00 04 00 00 00 14              # receive-timer 20
            00 1c 00 0c 69 73 63 2d 34 2e 34 2e 33 2d 50 31  # vendor-class
            00 14 00 01 01                       # protocol-version 1
            00 1a 00 01 00                       # TLS-reply 0 (CONNECT had TLS-request)
        ");
        let m = msg(
            1,
            Body::ConnectAck(ConnectAck {
                relationship_name: Some(b"tandem".to_vec()),
                max_unacked_bndupd: Some(10),
                receive_timer: Some(20),
                vendor_class: Some(b"isc-4.4.3-P1".to_vec()),
                protocol_version: Some(1),
                tls_reply: Some(TlsReply::None),
                ..ConnectAck::default()
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_connectack_refusal_without_name() {
        let wire = hex("
            00 32 06 0c 5f 5e 10 00 00 00 00 01  # length 50, CONNECTACK, xid 1
            00 1c 00 0c 69 73 63 2d 34 2e 34 2e 33 2d 50 31  # vendor-class
            00 14 00 01 01                       # protocol-version 1
            00 15 00 01 08                       # reject-reason 8 invalid partner
            00 10 00 08 62 61 64 20 6e 61 6d 65  # message 'bad name'
        ");
        let m = msg(
            1,
            Body::ConnectAck(ConnectAck {
                vendor_class: Some(b"isc-4.4.3-P1".to_vec()),
                protocol_version: Some(1),
                reject_reason: Some(RejectReason::InvalidPartner),
                message: Some(b"bad name".to_vec()),
                ..ConnectAck::default()
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_header_only_types() {
        for (body, code) in [
            (Body::UpdReqAll, 0x07),
            (Body::UpdDone, 0x08),
            (Body::UpdReq, 0x09),
            (Body::Contact, 0x0b),
        ] {
            let wire = hex(&format!(
                "00 0c {code:02x} 0c   # length 12, type, payload offset 12
                 5f 5e 10 00           # time
                 00 00 01 00           # xid 256"
            ));
            assert_vector(&isc(), &msg(256, body), &wire);
        }
    }

    #[test]
    fn vector_state() {
        let wire = hex("
            00 1e 0a 0c 5f 5e 10 00 00 00 00 05  # length 30, STATE, xid 5
            00 18 00 01 02                       # server-state NORMAL
            00 17 00 01 00                       # server-flags none
            00 19 00 04 5f 5e 0f c4              # start-time-of-state T0-60
        ");
        let m = msg(
            5,
            Body::State(State {
                server_state: ServerState::Normal,
                server_flags: Some(ServerFlags::NONE),
                start_time_of_state: Some(T0 - 60),
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_state_recover_wait_is_254() {
        let wire = hex("
            00 1e 0a 0c 5f 5e 10 00 00 00 00 06  # length 30, STATE, xid 6
            00 18 00 01 fe                       # server-state 254 RECOVER-WAIT (ISC)
            00 17 00 01 01                       # server-flags STARTUP
            00 19 00 04 5f 5e 10 00              # STOS
        ");
        let m = msg(
            6,
            Body::State(State {
                server_state: ServerState::RecoverWait,
                server_flags: Some(ServerFlags::STARTUP),
                start_time_of_state: Some(T0),
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_disconnect() {
        let wire = hex("
            00 26 0c 0c 5f 5e 10 00 00 00 00 09  # length 38, DISCONNECT, xid 9
            00 15 00 01 07                       # reject-reason 7 duplicate connection
            00 10 00 11 61 6c 72 65 61 64 79 20 63 6f 6e 6e 65 63 74 65 64  # 'already connected'
        ");
        let m = msg(
            9,
            Body::Disconnect(Disconnect {
                reject_reason: Some(RejectReason::DuplicateConnection),
                message: Some(b"already connected".to_vec()),
            }),
        );
        assert_vector(&isc(), &m, &wire);
    }

    #[test]
    fn vector_tandem_multi_binding_bndupd_with_ddns() {
        let wire = hex("
            00 38 03 0c 5f 5e 10 00 00 00 00 0c  # length 56, BNDUPD, xid 12
            00 02 00 04 0a 00 00 01              # binding 1: assigned-IP 10.0.0.1
            00 03 00 01 02                       #   ACTIVE
            00 09 00 06 00 02 68 6f 73 74        #   DDNS flags A, name 'host'
            00 02 00 04 0a 00 00 02              # binding 2: assigned-IP 10.0.0.2
            00 03 00 01 04                       #   RELEASED
            00 06 00 04 5f 5e 10 00              #   CLTT T0
        ");
        let b1 = BindingUpdate {
            ddns: Some(Ddns {
                flags: DdnsFlags::A,
                name: b"host".to_vec(),
            }),
            ..BindingUpdate::new(Ipv4Addr::new(10, 0, 0, 1), BindingStatus::Active)
        };
        let b2 = BindingUpdate {
            cltt: Some(T0),
            ..BindingUpdate::new(Ipv4Addr::new(10, 0, 0, 2), BindingStatus::Released)
        };
        let m = msg(
            12,
            Body::BndUpd(BndUpd {
                bindings: vec![b1.clone(), b2.clone()],
            }),
        );
        assert_vector(&tandem(), &m, &wire);
        // The ISC codec decodes the same batch (receive side accepts batching) ...
        assert_eq!(isc().decode(&wire).expect("decode"), m);
        // ... but encodes it as two messages without DDNS.
        let split = isc().encode_to_vec(&m).expect("encode");
        let want = hex("
            00 19 03 0c 5f 5e 10 00 00 00 00 0c  # length 25, BNDUPD, xid 12
            00 02 00 04 0a 00 00 01              # assigned-IP 10.0.0.1
            00 03 00 01 02                       # ACTIVE (no DDNS towards ISC)
            00 21 03 0c 5f 5e 10 00 00 00 00 0c  # length 33, BNDUPD, same xid 12
            00 02 00 04 0a 00 00 02              # assigned-IP 10.0.0.2
            00 03 00 01 04                       # RELEASED
            00 06 00 04 5f 5e 10 00              # CLTT T0
        ");
        assert_eq!(split, want);
    }

    // -----------------------------------------------------------------------------------------
    // Message digest
    // -----------------------------------------------------------------------------------------

    #[test]
    fn hmac_sha256_primitive_matches_rfc_4231_case_2() {
        let mut mac = HmacSha256::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        let want = hex("
            5b dc c1 46 bf 60 75 4e 6a 04 24 26 08 95 75 c7
            5a 00 3f 08 9d 27 39 83 9d ec 58 b9 64 ec 38 43
        ");
        assert_eq!(mac.finalize().into_bytes().as_slice(), &want[..]);
    }

    #[test]
    fn digest_is_last_option_over_everything_before_the_digest_bytes() {
        let codec = isc().with_secret(b"Jefe");
        let wire = codec.encode_to_vec(&msg(3, Body::Contact)).expect("encode");
        assert_eq!(wire.len(), 12 + DIGEST_OPTION_LEN);
        assert_eq!(
            &wire[..16],
            &hex("00 31 0b 0c 5f 5e 10 00 00 00 00 03  00 11 00 21")[..]
        );
        assert_eq!(wire[16], 2, "digest type 2 = HMAC-SHA256");
        let mut mac = HmacSha256::new_from_slice(b"Jefe").expect("any key length");
        mac.update(&wire[..wire.len() - DIGEST_LEN]);
        assert_eq!(
            mac.finalize().into_bytes().as_slice(),
            &wire[wire.len() - DIGEST_LEN..]
        );
    }

    #[test]
    fn wrong_or_missing_digest_is_refused_with_reject_reason() {
        let signed = isc().with_secret(b"one");
        let other = isc().with_secret(b"two");
        let m = msg(5, Body::Connect(isc_connect()));
        let wire = signed.encode_to_vec(&m).expect("encode");
        assert_eq!(signed.decode(&wire).expect("decode"), m);

        // Wrong secret.
        let e = other.decode(&wire).unwrap_err();
        assert_eq!(e, CodecError::DigestMismatch);
        assert_eq!(e.reject_reason(), Some(RejectReason::DigestCompareFailed));

        // A flipped bit in the time, the xid, option data or the digest itself is caught.
        // (Bytes 5 and 9: time and xid; 20: inside the relationship name; 45: inside the vendor
        // class; last: the digest.)
        for i in [5usize, 9, 20, 45, wire.len() - 1] {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                signed.decode(&bad),
                Err(CodecError::DigestMismatch),
                "byte {i}"
            );
        }

        // Missing.
        let plain = isc().encode_to_vec(&m).expect("encode");
        let e = signed.decode(&plain).unwrap_err();
        assert_eq!(e, CodecError::DigestMissing);
        assert_eq!(e.reject_reason(), Some(RejectReason::DigestMissing));

        // Type 1 (HMAC-MD5) is not supported.
        let mut md5 = wire.clone();
        let type_at = wire.len() - DIGEST_LEN - 1;
        md5[type_at] = 1;
        let e = signed.decode(&md5).unwrap_err();
        assert_eq!(e, CodecError::DigestUnsupported(1));
        assert_eq!(e.reject_reason(), Some(RejectReason::DigestNotSupported));

        // Truncated digest value.
        let mut short = plain.clone();
        short.extend_from_slice(&hex("00 11 00 05 02 aa bb cc dd"));
        let n = short.len() as u16;
        short[..2].copy_from_slice(&n.to_be_bytes());
        assert_eq!(signed.decode(&short), Err(CodecError::DigestMismatch));

        // Empty digest option.
        let mut empty = plain.clone();
        empty.extend_from_slice(&hex("00 11 00 00"));
        let n = empty.len() as u16;
        empty[..2].copy_from_slice(&n.to_be_bytes());
        assert_eq!(signed.decode(&empty), Err(CodecError::DigestMismatch));
    }

    #[test]
    fn digest_not_last_is_refused_when_authenticating_and_skipped_otherwise() {
        let signed = isc().with_secret(b"k");
        let wire = signed
            .encode_to_vec(&msg(3, Body::Contact))
            .expect("encode");
        // Append an unknown option after the digest.
        let mut moved = wire.clone();
        moved.extend_from_slice(&hex("00 c8 00 00"));
        let n = moved.len() as u16;
        moved[..2].copy_from_slice(&n.to_be_bytes());
        let e = signed.decode(&moved).unwrap_err();
        assert_eq!(e, CodecError::DigestNotLast);
        assert_eq!(e.reject_reason(), Some(RejectReason::DigestCompareFailed));
        // Without a secret the digest is skipped wherever it is (ISC behaviour).
        let d = isc().decode_detailed(&moved).expect("decode");
        assert_eq!(d.digest, DigestStatus::Ignored);
        assert_eq!(d.message, msg(3, Body::Contact));
        // Two digests are a repeated option.
        let mut twice = wire.clone();
        twice.extend_from_slice(&wire[12..]);
        let n = twice.len() as u16;
        twice[..2].copy_from_slice(&n.to_be_bytes());
        assert_eq!(isc().decode(&twice), Err(CodecError::DuplicateOption(17)));
    }

    #[test]
    fn empty_secret_means_no_authentication() {
        let c = isc().with_secret(b"");
        assert!(!c.is_authenticated());
        assert_eq!(c.overhead(), HEADER_LEN);
        assert_eq!(isc().with_secret(b"x").overhead(), HEADER_LEN + 37);
        let wire = c.encode_to_vec(&msg(1, Body::Contact)).expect("encode");
        assert_eq!(wire.len(), 12);
        assert!(!format!("{:?}", isc().with_secret(b"topsecret")).contains("topsecret"));
    }

    // -----------------------------------------------------------------------------------------
    // Hostile input
    // -----------------------------------------------------------------------------------------

    /// A CONTACT header with the given length field, type and payload offset, padded to `len`.
    fn raw(length: u16, ty: u8, payload_offset: u8, options: &[u8]) -> Vec<u8> {
        let mut v = length.to_be_bytes().to_vec();
        v.push(ty);
        v.push(payload_offset);
        v.extend_from_slice(&T0.to_be_bytes());
        v.extend_from_slice(&1u32.to_be_bytes());
        v.extend_from_slice(options);
        v
    }

    fn with_len(ty: u8, options: &[u8]) -> Vec<u8> {
        raw((12 + options.len()) as u16, ty, 12, options)
    }

    #[test]
    fn truncated_header() {
        let c = isc();
        assert_eq!(
            c.decode(&[]),
            Err(CodecError::Truncated { needed: 2, have: 0 })
        );
        assert_eq!(
            c.decode(&[0x00]),
            Err(CodecError::Truncated { needed: 2, have: 1 })
        );
        let full = with_len(11, &[]);
        for n in 2..12 {
            assert_eq!(
                c.decode(&full[..n]),
                Err(CodecError::Truncated {
                    needed: 12,
                    have: n
                }),
                "{n} bytes"
            );
        }
        let longer = with_len(2, &hex("00 01 00 04 00 00 00 01"));
        assert_eq!(
            c.decode(&longer[..15]),
            Err(CodecError::Truncated {
                needed: 20,
                have: 15
            })
        );
    }

    #[test]
    fn length_out_of_bounds() {
        let c = isc();
        for l in [0u16, 1, 11] {
            let mut m = raw(l, 11, 12, &[]);
            m.truncate(12);
            assert_eq!(
                c.decode(&m),
                Err(CodecError::LengthTooSmall(usize::from(l)))
            );
            assert_eq!(
                frame_len(&m),
                Err(CodecError::LengthTooSmall(usize::from(l)))
            );
        }
        for l in [2049u16, 0xffff] {
            let m = raw(l, 11, 12, &[]);
            assert_eq!(
                c.decode(&m),
                Err(CodecError::LengthTooLarge(usize::from(l)))
            );
        }
        // 2048 exactly is fine (an unknown option fills it).
        let mut opt = hex("00 c8 07 f0");
        opt.resize(4 + 0x7f0, 0xee);
        let m = with_len(11, &opt);
        assert_eq!(m.len(), 2048);
        assert_eq!(c.decode(&m).expect("decode"), msg(1, Body::Contact));
        // Extra bytes after the message are refused by the single-message decoder.
        let mut extra = with_len(11, &[]);
        extra.push(0);
        assert_eq!(
            c.decode(&extra),
            Err(CodecError::TrailingBytes {
                length: 12,
                have: 13
            })
        );
    }

    #[test]
    fn unknown_message_type() {
        for ty in [0u8, 13, 200, 255] {
            assert_eq!(
                isc().decode(&with_len(ty, &[])),
                Err(CodecError::UnknownMessageType(ty))
            );
        }
    }

    #[test]
    fn payload_offset_rules() {
        let c = isc();
        // Past the end.
        let m = raw(12, 11, 13, &[]);
        assert_eq!(
            c.decode(&m),
            Err(CodecError::PayloadOffsetPastEnd {
                offset: 13,
                length: 12
            })
        );
        let m = raw(20, 2, 255, &hex("00 01 00 04 00 00 00 01"));
        assert_eq!(
            c.decode(&m),
            Err(CodecError::PayloadOffsetPastEnd {
                offset: 255,
                length: 20
            })
        );
        // Inside the header (Windows sends 8): options still start at 12.
        for po in [0u8, 8, 11] {
            let m = raw(20, 2, po, &hex("00 01 00 04 00 00 00 19"));
            let d = c.decode_detailed(&m).expect("decode");
            assert_eq!(d.payload_offset, po);
            assert_eq!(
                d.message.body,
                Body::PoolResp(PoolResp {
                    addresses_transferred: 25
                })
            );
        }
        // Beyond 12: the extra header bytes are skipped.
        let m = raw(24, 2, 16, &hex("de ad be ef 00 01 00 04 00 00 00 19"));
        assert_eq!(
            c.decode(&m).expect("decode").body,
            Body::PoolResp(PoolResp {
                addresses_transferred: 25
            })
        );
        // Offset exactly at the end: no options.
        let m = raw(16, 11, 16, &hex("00 01 00 04"));
        assert_eq!(c.decode(&m).expect("decode").body, Body::Contact);
    }

    #[test]
    fn option_past_the_end() {
        let c = isc();
        // 1..3 bytes left: no room for code + length.
        for tail in [&hex("00")[..], &hex("00 01")[..], &hex("00 01 00")[..]] {
            assert_eq!(
                c.decode(&with_len(11, tail)),
                Err(CodecError::OptionHeaderTruncated { at: 12 })
            );
        }
        // Declared length longer than what is left.
        assert_eq!(
            c.decode(&with_len(2, &hex("00 01 00 05 00 00 00 19"))),
            Err(CodecError::OptionTruncated {
                code: 1,
                len: 5,
                at: 12
            })
        );
        assert_eq!(
            c.decode(&with_len(11, &hex("00 c8 ff ff 00"))),
            Err(CodecError::OptionTruncated {
                code: 200,
                len: 0xffff,
                at: 12
            })
        );
    }

    #[test]
    fn duplicate_options_are_refused() {
        let c = isc();
        let twice = hex("00 18 00 01 02  00 18 00 01 02");
        assert_eq!(
            c.decode(&with_len(10, &twice)),
            Err(CodecError::DuplicateOption(24))
        );
        // Also when the option is not one the type carries (ISC checks repetition first).
        let twice = hex("00 18 00 01 02  00 0f 00 04 00 00 00 01  00 0f 00 04 00 00 00 01");
        assert_eq!(
            c.decode(&with_len(10, &twice)),
            Err(CodecError::DuplicateOption(15))
        );
        // Within one binding of a BNDUPD.
        let twice = hex("00 02 00 04 0a 00 00 01  00 03 00 01 02  00 03 00 01 03");
        assert_eq!(
            c.decode(&with_len(3, &twice)),
            Err(CodecError::DuplicateOption(3))
        );
        // Unknown options may repeat (they are skipped without bookkeeping, like ISC).
        let unk = hex("00 18 00 01 02  00 c8 00 00  00 c8 00 00");
        assert!(c.decode(&with_len(10, &unk)).is_ok());
    }

    #[test]
    fn unknown_and_foreign_options_are_skipped() {
        let c = isc();
        let opts = hex("
            00 00 00 02 aa bb              # code 0: unknown
            00 18 00 01 02                 # server-state NORMAL
            00 1f 00 04 68 00 00 00        # 31: MS client name (skipped)
            ff ff 00 01 00                 # 65535: unknown
            00 0f 00 03 00 00 01           # MCLT, not carried by STATE: skipped unparsed
            00 17 00 01 00                 # server-flags
        ");
        let got = c.decode(&with_len(10, &opts)).expect("decode");
        assert_eq!(
            got.body,
            Body::State(State {
                server_state: ServerState::Normal,
                server_flags: Some(ServerFlags::NONE),
                start_time_of_state: None,
            })
        );
    }

    #[test]
    fn wrong_option_sizes_are_refused() {
        let c = isc();
        let cases: &[(u8, &str, OptionCode)] = &[
            (2, "00 01 00 03 00 00 19", OptionCode::AddressesTransferred),
            (10, "00 18 00 02 00 02", OptionCode::ServerState),
            (
                10,
                "00 18 00 01 02 00 19 00 05 00 00 00 00 01",
                OptionCode::StartTimeOfState,
            ),
            (
                3,
                "00 02 00 05 0a 00 00 01 00",
                OptionCode::AssignedIpAddress,
            ),
            (
                3,
                "00 02 00 04 0a 00 00 01 00 05 00 00",
                OptionCode::ClientHardwareAddress,
            ),
            (
                3,
                "00 02 00 04 0a 00 00 01 00 09 00 01 00",
                OptionCode::Ddns,
            ),
            (
                3,
                "00 02 00 04 0a 00 00 01 00 0c 00 03 00 00 01",
                OptionCode::IpFlags,
            ),
        ];
        for (ty, opts, option) in cases {
            match c.decode(&with_len(*ty, &hex(opts))) {
                Err(CodecError::BadOptionLength { option: o, .. }) => assert_eq!(o, *option),
                other => panic!("{opts}: {other:?}"),
            }
        }
    }

    #[test]
    fn hba_must_be_32_bytes_and_maps_to_reason_18() {
        let mut opts = hex("00 16 00 01 61  00 0b 00 1f");
        opts.extend_from_slice(&[0xff; 31]);
        let e = isc().decode(&with_len(5, &opts)).unwrap_err();
        assert!(matches!(
            e,
            CodecError::BadOptionLength {
                option: OptionCode::HashBucketAssignment,
                len: 31,
                ..
            }
        ));
        assert_eq!(e.reject_reason(), Some(RejectReason::HbaConflict));
    }

    #[test]
    fn missing_required_options() {
        let c = isc();
        let cases: &[(u8, &str, OptionCode, Option<RejectReason>)] = &[
            (2, "", OptionCode::AddressesTransferred, None),
            (
                3,
                "00 03 00 01 02",
                OptionCode::AssignedIpAddress,
                Some(RejectReason::MissingBindingInfo),
            ),
            (
                3,
                "00 02 00 04 0a 00 00 01",
                OptionCode::BindingStatus,
                Some(RejectReason::MissingBindingInfo),
            ),
            // Second binding of a batch lacks its status.
            (
                3,
                "00 02 00 04 0a 00 00 01 00 03 00 01 02 00 02 00 04 0a 00 00 02",
                OptionCode::BindingStatus,
                Some(RejectReason::MissingBindingInfo),
            ),
            (
                4,
                "",
                OptionCode::AssignedIpAddress,
                Some(RejectReason::MissingBindingInfo),
            ),
            (
                5,
                "00 0f 00 04 00 00 0e 10",
                OptionCode::RelationshipName,
                Some(RejectReason::InvalidPartner),
            ),
            (10, "00 17 00 01 00", OptionCode::ServerState, None),
        ];
        for (ty, opts, option, reason) in cases {
            let e = c.decode(&with_len(*ty, &hex(opts))).unwrap_err();
            assert_eq!(
                e,
                CodecError::MissingOption {
                    message_type: MessageType::from_code(*ty).expect("known"),
                    option: *option,
                    xid: 1,
                },
                "type {ty}"
            );
            assert_eq!(e.reject_reason(), *reason, "type {ty}");
        }
        // Messages whose options are all optional decode empty.
        let ack = c.decode(&with_len(6, &[])).expect("decode");
        assert_eq!(ack.body, Body::ConnectAck(ConnectAck::default()));
        let d = c.decode(&with_len(12, &[])).expect("decode");
        assert_eq!(d.body, Body::Disconnect(Disconnect::default()));
    }

    #[test]
    fn options_before_the_first_address_belong_to_the_first_binding() {
        let opts = hex("00 03 00 01 07  00 02 00 04 0a 00 00 09");
        let got = isc().decode(&with_len(3, &opts)).expect("decode");
        assert_eq!(
            got.body,
            Body::BndUpd(BndUpd {
                bindings: vec![BindingUpdate::new(
                    Ipv4Addr::new(10, 0, 0, 9),
                    BindingStatus::Backup
                )]
            })
        );
    }

    #[test]
    fn encode_errors_leave_the_buffer_untouched() {
        let c = tandem();
        let mut out = vec![0xaa];
        assert_eq!(
            c.encode(&msg(1, Body::BndUpd(BndUpd { bindings: vec![] })), &mut out),
            Err(CodecError::NoBindings(MessageType::BndUpd))
        );
        assert_eq!(
            c.encode(&msg(1, Body::BndAck(BndAck { acks: vec![] })), &mut out),
            Err(CodecError::NoBindings(MessageType::BndAck))
        );
        let big = Connect {
            relationship_name: vec![b'x'; 2037],
            ..Connect::default()
        };
        assert_eq!(
            c.encode(&msg(1, Body::Connect(big)), &mut out),
            Err(CodecError::LengthTooLarge(2053))
        );
        let fits = Connect {
            relationship_name: vec![b'x'; 2032],
            ..Connect::default()
        };
        assert!(c
            .encode_to_vec(&msg(1, Body::Connect(fits.clone())))
            .is_ok());
        assert_eq!(
            c.clone()
                .with_secret(b"k")
                .encode(&msg(1, Body::Connect(fits)), &mut out),
            Err(CodecError::LengthTooLarge(2048 + DIGEST_OPTION_LEN))
        );
        let huge = Disconnect {
            reject_reason: None,
            message: Some(vec![0; 70_000]),
        };
        assert_eq!(
            c.encode(&msg(1, Body::Disconnect(huge)), &mut out),
            Err(CodecError::OptionTooLong {
                option: OptionCode::Message,
                len: 70_000
            })
        );
        assert_eq!(out, vec![0xaa]);
        // A batch that is too long for one message is refused as a whole (ISC dialect too).
        let many = BndUpd {
            bindings: (0..40).map(|i| full_binding(i as u8)).collect(),
        };
        assert!(matches!(
            c.encode(&msg(1, Body::BndUpd(many.clone())), &mut out),
            Err(CodecError::LengthTooLarge(_))
        ));
        assert_eq!(out, vec![0xaa]);
        assert_eq!(isc().encode(&msg(1, Body::BndUpd(many)), &mut out), Ok(40));
    }

    #[test]
    fn binding_len_and_overhead_add_up() {
        for codec in [isc(), tandem(), tandem().with_secret(b"k")] {
            let b = full_binding(7);
            let m = msg(
                1,
                Body::BndUpd(BndUpd {
                    bindings: vec![b.clone()],
                }),
            );
            let wire = codec.encode_to_vec(&m).expect("encode");
            assert_eq!(wire.len(), codec.overhead() + codec.binding_len(&b));
        }
        // The Tandem dialect carries the DDNS option, the ISC one does not.
        let b = full_binding(7);
        assert_eq!(
            tandem().binding_len(&b) - isc().binding_len(&b),
            4 + 2 + b"host.example".len()
        );
    }

    #[test]
    fn binding_len_is_what_the_encoder_writes_for_every_shape() {
        let ip = Ipv4Addr::new(10, 0, 0, 9);
        let bare = BindingUpdate::new(ip, BindingStatus::Free);
        let mut with_id = isc_binding();
        with_id.client_id = Some(vec![0xee; 32]);
        with_id.ip_flags = Some(IpFlags(1));
        let mut options = full_binding(3);
        options.client_request_options = Some(vec![1; 300]);
        options.client_reply_options = Some(Vec::new());
        options.chaddr = None;
        for b in [bare, isc_binding(), with_id, full_binding(5), options] {
            for dialect in [Dialect::Isc, Dialect::Tandem] {
                let mut wire = Vec::new();
                put_binding(&mut wire, &b, dialect).expect("encodable");
                assert_eq!(binding_update_len(&b, dialect), wire.len(), "{b:?}");
            }
        }
        // A value too long for an option cannot be encoded.
        let mut huge = BindingUpdate::new(ip, BindingStatus::Active);
        huge.client_request_options = Some(vec![0; 70_000]);
        assert_eq!(tandem().binding_len(&huge), usize::MAX);
        assert!(put_binding(&mut Vec::new(), &huge, Dialect::Tandem).is_err());
    }

    // -----------------------------------------------------------------------------------------
    // Where ISC and Windows deviate from the draft (digest §1.10)
    // -----------------------------------------------------------------------------------------

    #[test]
    fn deviations_from_the_draft() {
        let c = isc();
        // ISC: RECOVER-WAIT is 254 (vector_state_recover_wait_is_254) and unknown states reach
        // the state machine instead of failing the decode.
        let s = c
            .decode(&with_len(10, &hex("00 18 00 01 00")))
            .expect("decode");
        assert_eq!(
            s.body,
            Body::State(State {
                server_state: ServerState::Other(0),
                server_flags: None,
                start_time_of_state: None
            })
        );
        // ISC: the digest is ignored when no secret is configured (digest_not_last_...).
        // ISC: STOS in BNDUPD carries the lease start: a plain field, passed through.
        // ISC: never sends DDNS and drops the link on it, so the ISC dialect omits it.
        let b = full_binding(1);
        let wire = c
            .encode_to_vec(&msg(1, Body::BndUpd(BndUpd { bindings: vec![b] })))
            .expect("encode");
        assert!(!contains_option(&wire, OptionCode::Ddns));
        // Windows: IP-flags in 1 byte.
        let one = hex("00 02 00 04 0a 00 00 01 00 03 00 01 02 00 0c 00 01 02");
        let got = c.decode(&with_len(3, &one)).expect("decode");
        let Body::BndUpd(u) = got.body else {
            panic!("not a BNDUPD")
        };
        assert_eq!(u.bindings[0].ip_flags, Some(IpFlags::BOOTP));
        // Windows: payload offset 8 (payload_offset_rules), several bindings per BNDUPD
        // (vector_tandem_multi_binding_bndupd_with_ddns), UTF-16LE strings kept as bytes.
        let name: Vec<u8> = "dc1".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let m = msg(
            1,
            Body::Connect(Connect {
                relationship_name: name.clone(),
                ..Connect::default()
            }),
        );
        let back = c
            .decode(&c.encode_to_vec(&m).expect("encode"))
            .expect("decode");
        let Body::Connect(conn) = back.body else {
            panic!("not a CONNECT")
        };
        assert_eq!(conn.relationship_name, name);
        // Windows: options 30..41 are skipped, not misread.
        let ms = hex("00 18 00 01 02 00 29 00 04 00 00 00 01 00 1e 00 04 01 00 00 00");
        assert!(c.decode(&with_len(10, &ms)).is_ok());
    }

    fn contains_option(wire: &[u8], option: OptionCode) -> bool {
        let mut at = 12;
        while at + 4 <= wire.len() {
            let code = u16::from_be_bytes([wire[at], wire[at + 1]]);
            let len = usize::from(u16::from_be_bytes([wire[at + 2], wire[at + 3]]));
            if code == option.code() {
                return true;
            }
            at += 4 + len;
        }
        false
    }

    // -----------------------------------------------------------------------------------------
    // Stream framing
    // -----------------------------------------------------------------------------------------

    fn two_message_stream(codec: &Codec) -> (Vec<Message>, Vec<u8>) {
        let a = msg(1, Body::Connect(isc_connect()));
        let b = msg(
            2,
            Body::BndUpd(BndUpd {
                bindings: vec![full_binding(3)],
            }),
        );
        let mut wire = Vec::new();
        codec.encode(&a, &mut wire).expect("encode");
        codec.encode(&b, &mut wire).expect("encode");
        (vec![a, b], wire)
    }

    fn drain(dec: &mut FrameDecoder, into: &mut Vec<Message>) {
        while let Some(m) = dec.next_message().expect("decode") {
            into.push(m);
        }
    }

    #[test]
    fn framing_across_every_split_point() {
        for codec in [tandem(), tandem().with_secret(b"k")] {
            let (want, wire) = two_message_stream(&codec);
            for cut in 0..=wire.len() {
                let mut dec = FrameDecoder::new(codec.clone());
                let mut got = Vec::new();
                dec.push(&wire[..cut]);
                drain(&mut dec, &mut got);
                dec.push(&wire[cut..]);
                drain(&mut dec, &mut got);
                assert_eq!(got, want, "cut at {cut}");
                assert_eq!(dec.buffered(), 0);
            }
            // Byte by byte, and with every pair of cut points three ways on a coarse grid.
            let mut dec = FrameDecoder::new(codec.clone());
            let mut got = Vec::new();
            for b in &wire {
                dec.push(std::slice::from_ref(b));
                drain(&mut dec, &mut got);
            }
            assert_eq!(got, want);
            for i in (0..=wire.len()).step_by(7) {
                for j in (i..=wire.len()).step_by(5) {
                    let mut dec = FrameDecoder::new(codec.clone());
                    let mut got = Vec::new();
                    for part in [&wire[..i], &wire[i..j], &wire[j..]] {
                        dec.push(part);
                        drain(&mut dec, &mut got);
                    }
                    assert_eq!(got, want, "cuts {i}, {j}");
                }
            }
        }
    }

    #[test]
    fn framing_waits_for_a_whole_message_and_reports_bad_lengths_early() {
        let mut dec = FrameDecoder::new(isc());
        assert_eq!(dec.next_message(), Ok(None));
        dec.push(&[0x00]);
        assert_eq!(dec.next_message(), Ok(None));
        dec.push(&[0x0c, 0x0b]);
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(dec.buffered(), 3);
        // A bad length is reported as soon as the two length bytes are in.
        let mut dec = FrameDecoder::new(isc());
        dec.push(&[0x08, 0x01]);
        assert_eq!(dec.next_message(), Err(CodecError::LengthTooLarge(2049)));
        // The failure is sticky, even if more (valid) bytes arrive.
        dec.push(&with_len(11, &[]));
        assert_eq!(dec.next_message(), Err(CodecError::LengthTooLarge(2049)));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn framing_error_after_a_good_message() {
        let mut dec = FrameDecoder::new(isc());
        let mut wire = with_len(11, &[]);
        wire.extend_from_slice(&with_len(99, &[]));
        wire.extend_from_slice(&with_len(11, &[]));
        dec.push(&wire);
        assert_eq!(dec.next_message(), Ok(Some(msg(1, Body::Contact))));
        assert_eq!(dec.next_message(), Err(CodecError::UnknownMessageType(99)));
        assert_eq!(dec.next_message(), Err(CodecError::UnknownMessageType(99)));
    }

    #[test]
    fn framing_notes_a_windows_payload_offset() {
        let mut dec = FrameDecoder::new(isc());
        dec.push(&with_len(11, &[]));
        assert_eq!(dec.next_message(), Ok(Some(msg(1, Body::Contact))));
        assert!(!dec.saw_short_payload_offset());
        dec.push(&raw(12, 11, 8, &[]));
        let d = dec.next_decoded().expect("decode").expect("complete");
        assert_eq!(d.payload_offset, 8);
        assert!(dec.saw_short_payload_offset());
    }

    #[test]
    fn framing_compacts_its_buffer() {
        let codec = tandem();
        let one = codec.encode_to_vec(&msg(1, Body::Contact)).expect("encode");
        let mut dec = FrameDecoder::new(codec);
        for _ in 0..10_000 {
            dec.push(&one);
            dec.push(&one[..5]);
            assert_eq!(dec.next_message(), Ok(Some(msg(1, Body::Contact))));
            dec.push(&one[5..]);
            assert_eq!(dec.next_message(), Ok(Some(msg(1, Body::Contact))));
            assert_eq!(dec.next_message(), Ok(None));
        }
        assert!(
            dec.buf.capacity() < 1024,
            "buffer grew to {}",
            dec.buf.capacity()
        );
    }

    #[test]
    fn header_and_frame_len() {
        assert_eq!(frame_len(&[]), Ok(None));
        assert_eq!(frame_len(&[0]), Ok(None));
        assert_eq!(frame_len(&[0, 12]), Ok(Some(12)));
        let h = Header::parse(&raw(12, 11, 8, &[])).expect("header");
        assert_eq!(
            h,
            Header {
                length: 12,
                message_type: 11,
                payload_offset: 8,
                time: T0,
                xid: 1
            }
        );
    }

    // -----------------------------------------------------------------------------------------
    // Property tests
    // -----------------------------------------------------------------------------------------

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn binding_strategy() -> impl Strategy<Value = BindingUpdate> {
        (
            (any::<u32>(), any::<u8>(), proptest::option::of(bytes(20))),
            proptest::option::of((any::<u8>(), bytes(17))),
            (
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u32>()),
            ),
            proptest::option::of(any::<u16>()),
            proptest::option::of((any::<u16>(), bytes(40))),
            (
                proptest::option::of(bytes(30)),
                proptest::option::of(bytes(30)),
            ),
        )
            .prop_map(
                |(
                    (ip, status, client_id),
                    hw,
                    (lease, pot, stos, cltt),
                    flags,
                    ddns,
                    (req, rep),
                )| {
                    BindingUpdate {
                        assigned_ip: Ipv4Addr::from(ip),
                        binding_status: BindingStatus::from_code(status),
                        client_id,
                        chaddr: hw.map(|(htype, addr)| HardwareAddr { htype, addr }),
                        lease_expiration: lease,
                        potential_expiration: pot,
                        start_time_of_state: stos,
                        cltt,
                        ip_flags: flags.map(IpFlags),
                        ddns: ddns.map(|(f, name)| Ddns {
                            flags: DdnsFlags(f),
                            name,
                        }),
                        client_request_options: req,
                        client_reply_options: rep,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn binding_update_round_trips(
            bindings in proptest::collection::vec(binding_strategy(), 1..6),
            time in any::<u32>(),
            xid in any::<u32>(),
            secret in bytes(8),
        ) {
            // Tandem dialect: the whole batch in one message.
            let codec = tandem().with_secret(&secret);
            let m = Message::new(time, xid, Body::BndUpd(BndUpd { bindings: bindings.clone() }));
            let wire = codec.encode_to_vec(&m).expect("a batch of 5 fits in 2048 bytes");
            prop_assert_eq!(codec.decode(&wire).expect("decode"), m);

            // BNDACK of the same batch, rejecting every other binding.
            let acks = bindings
                .iter()
                .enumerate()
                .map(|(i, b)| if i & 1 == 0 {
                    BindingAck::accept(b)
                } else {
                    BindingAck::reject(b, RejectReason::from_code(i as u8), Some(vec![b'x'; i]))
                })
                .collect();
            let a = Message::new(time, xid, Body::BndAck(BndAck { acks }));
            let wire = codec.encode_to_vec(&a).expect("fits");
            prop_assert_eq!(codec.decode(&wire).expect("decode"), a);

            // ISC dialect: one message per binding, DDNS dropped, same time and xid.
            let mut dec = FrameDecoder::new(isc());
            let mut wire = Vec::new();
            let n = isc()
                .encode(&Message::new(time, xid, Body::BndUpd(BndUpd { bindings: bindings.clone() })), &mut wire)
                .expect("encode");
            prop_assert_eq!(n, bindings.len());
            dec.push(&wire);
            for b in &bindings {
                let got = dec.next_message().expect("decode").expect("complete");
                let want = BindingUpdate { ddns: None, ..b.clone() };
                prop_assert_eq!(got, Message::new(time, xid, Body::BndUpd(BndUpd { bindings: vec![want] })));
            }
            prop_assert_eq!(dec.next_message(), Ok(None));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in bytes(300), secret in bytes(4)) {
            let codec = tandem().with_secret(&secret);
            if let Ok(m) = codec.decode(&data) {
                let again = codec.encode_to_vec(&m).expect("a decoded message re-encodes");
                prop_assert_eq!(codec.decode(&again).expect("re-decode"), m);
            }
            let mut dec = FrameDecoder::new(codec);
            for chunk in data.chunks(7) {
                dec.push(chunk);
                while let Ok(Some(_)) = dec.next_message() {}
            }
        }
    }
}
