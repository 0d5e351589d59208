//! TSIG (RFC 8945): HMAC transaction signatures on UPDATE requests and their responses, and
//! TSIG keys read from BIND key files (`tsig-keygen` output).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};

use crate::base64::Base64Error;
use crate::name::{Name, NameError};
use crate::wire::{Class, DecodeError, Message, RData, Rcode, Record, RrType, TsigRdata};

/// The fudge this crate signs with: the permitted clock difference in seconds (RFC 8945
/// recommends 300).
pub const DEFAULT_FUDGE: u16 = 300;

/// A TSIG MAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `hmac-sha1.` (RFC 4635).
    HmacSha1,
    /// `hmac-sha224.`.
    HmacSha224,
    /// `hmac-sha256.`, the one every implementation must support.
    HmacSha256,
    /// `hmac-sha384.`.
    HmacSha384,
    /// `hmac-sha512.`.
    HmacSha512,
}

impl Algorithm {
    /// Every algorithm, weakest first.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::HmacSha1,
        Algorithm::HmacSha224,
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ];

    /// The BIND spelling (`hmac-sha256`), which is also the algorithm name's only label.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha224 => "hmac-sha224",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm name carried in the TSIG record.
    pub fn name(self) -> Name {
        Name::from_ascii(self.mnemonic()).expect("algorithm names are valid")
    }

    /// The algorithm a TSIG record names, case-insensitively.
    pub fn from_name(name: &Name) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == *name)
    }

    /// The algorithm named as in a BIND key file (`hmac-sha256`, case-insensitive, a final dot
    /// allowed).
    pub fn from_mnemonic(text: &str) -> Option<Algorithm> {
        let t = text.strip_suffix('.').unwrap_or(text);
        Algorithm::ALL
            .into_iter()
            .find(|a| a.mnemonic().eq_ignore_ascii_case(t))
    }

    /// Length of the full (untruncated) MAC in octets.
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha224 => 28,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }

    fn compute(self, secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut m =
                <M as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::HmacSha1 => run::<Hmac<sha1::Sha1>>(secret, parts),
            Algorithm::HmacSha224 => run::<Hmac<sha2::Sha224>>(secret, parts),
            Algorithm::HmacSha256 => run::<Hmac<sha2::Sha256>>(secret, parts),
            Algorithm::HmacSha384 => run::<Hmac<sha2::Sha384>>(secret, parts),
            Algorithm::HmacSha512 => run::<Hmac<sha2::Sha512>>(secret, parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

/// A TSIG key: name, algorithm and shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    name: Name,
    algorithm: Algorithm,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} octets>", self.secret.len()))
            .finish()
    }
}

impl TsigKey {
    /// A key from its parts.
    pub fn new(name: Name, algorithm: Algorithm, secret: Vec<u8>) -> TsigKey {
        TsigKey {
            name,
            algorithm,
            secret,
        }
    }

    /// A key whose secret is given in base64, as `tsig-keygen` prints it.
    pub fn from_base64(
        name: Name,
        algorithm: Algorithm,
        secret: &str,
    ) -> Result<TsigKey, Base64Error> {
        Ok(TsigKey::new(
            name,
            algorithm,
            crate::base64::decode(secret)?,
        ))
    }

    /// The only key statement of a BIND key file (`key "name" { algorithm ...; secret "...";
    /// };`).
    pub fn from_bind_key_file(text: &str) -> Result<TsigKey, KeyFileError> {
        let mut keys = parse_bind_keys(text)?;
        match keys.len() {
            0 => Err(KeyFileError::NoKey),
            1 => Ok(keys.remove(0)),
            count => Err(KeyFileError::MultipleKeys { count }),
        }
    }

    /// The key name (the TSIG record's owner).
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The shared secret.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The octets are not even a DNS header.
    #[error("message of {len} octets is shorter than a DNS header")]
    NotAMessage {
        /// Its length.
        len: usize,
    },
    /// ARCOUNT is already 65535.
    #[error("the additional section is full (ARCOUNT 65535)")]
    AdditionalFull,
    /// The signed message would exceed 65535 octets.
    #[error("the signed message would be {len} octets, more than 65535")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The other-data field exceeds 65535 octets.
    #[error("TSIG other data of {len} octets is too long")]
    OtherTooLong {
        /// Its length.
        len: usize,
    },
}

/// A signed message and its MAC (needed to verify the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The message with the TSIG record appended.
    pub bytes: Vec<u8>,
    /// The MAC placed in the TSIG record.
    pub mac: Vec<u8>,
}

/// Why a signed message did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The message is not well-formed DNS.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// No TSIG record although one was expected (a server that knows no TSIG, or a forgery).
    #[error("unsigned message (rcode {rcode}) where a TSIG was expected")]
    Unsigned {
        /// The header rcode of the unsigned message.
        rcode: Rcode,
    },
    /// The TSIG record's class is not ANY or its TTL is not 0.
    #[error("TSIG record with class {class} and TTL {ttl} (must be ANY and 0)")]
    BadTsigRecord {
        /// Its class.
        class: Class,
        /// Its TTL.
        ttl: u32,
    },
    /// The server reported a TSIG error (BADSIG, BADKEY, BADTIME, BADTRUNC ...). When the MAC
    /// is empty (BADSIG, BADKEY) the report itself is unauthenticated.
    #[error("the server reported TSIG error {error} (rcode {rcode}{})", if *.signed { ", signed" } else { ", unsigned" })]
    ServerError {
        /// The TSIG error field.
        error: Rcode,
        /// The header rcode (NOTAUTH for BIND).
        rcode: Rcode,
        /// Whether the report carried a MAC that verified.
        signed: bool,
    },
    /// Signed with another key name.
    #[error("signed with key {got}, expected {expected}")]
    WrongKey {
        /// The key we hold.
        expected: Name,
        /// The key name in the message.
        got: Name,
    },
    /// Signed with another algorithm.
    #[error("signed with algorithm {got}, expected {expected}")]
    WrongAlgorithm {
        /// Our key's algorithm.
        expected: Algorithm,
        /// The algorithm name in the message.
        got: Name,
    },
    /// A MAC longer than the algorithm's, or truncated below max(10, half) octets
    /// (RFC 8945 §5.2.2.1).
    #[error("MAC of {got} octets for {algorithm} (full length {full})")]
    BadMacLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// Received length.
        got: usize,
        /// Full length.
        full: usize,
    },
    /// The MAC does not match: wrong secret, or the message was altered.
    #[error("the MAC does not verify (wrong secret or altered message)")]
    BadMac,
    /// The time signed is further from our clock than the fudge allows.
    #[error("time signed {time_signed} is more than {fudge} s from our clock {now}")]
    BadTime {
        /// Time signed in the message.
        time_signed: u64,
        /// Our clock.
        now: u64,
        /// The message's fudge.
        fudge: u16,
    },
}

/// A message whose TSIG verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The decoded message (TSIG record included, last in the additional section).
    pub message: Message,
    /// Its MAC.
    pub mac: Vec<u8>,
    /// Its time signed.
    pub time_signed: u64,
}

/// The TSIG variables (RFC 8945 §4.3.3) in wire form.
fn variables(key: &TsigKey, time_signed: u64, fudge: u16, error: Rcode, other: &[u8]) -> Vec<u8> {
    let mut v = key.name.canonical_wire();
    v.extend_from_slice(&Class::ANY.0.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&key.algorithm.name().canonical_wire());
    v.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    v.extend_from_slice(&fudge.to_be_bytes());
    v.extend_from_slice(&error.0.to_be_bytes());
    // Other data never exceeds 65535 octets here: checked by the signer, and bounded by the
    // RDATA length on decode.
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

fn mac_input_prefix(prior_mac: Option<&[u8]>) -> Vec<u8> {
    match prior_mac {
        None => Vec::new(),
        Some(m) => {
            let mut p = (m.len() as u16).to_be_bytes().to_vec();
            p.extend_from_slice(m);
            p
        }
    }
}

/// Signs `message` (its TSIG-less wire form); for a response, `prior_mac` is the request's MAC.
fn sign(
    message: &[u8],
    key: &TsigKey,
    prior_mac: Option<&[u8]>,
    time_signed: u64,
    fudge: u16,
    error: Rcode,
    other: &[u8],
) -> Result<Signed, SignError> {
    if message.len() < 12 {
        return Err(SignError::NotAMessage { len: message.len() });
    }
    if other.len() > usize::from(u16::MAX) {
        return Err(SignError::OtherTooLong { len: other.len() });
    }
    let arcount = u16::from_be_bytes([message[10], message[11]]);
    let arcount = arcount.checked_add(1).ok_or(SignError::AdditionalFull)?;
    let prefix = mac_input_prefix(prior_mac);
    let vars = variables(key, time_signed & 0xffff_ffff_ffff, fudge, error, other);
    let mac = key
        .algorithm
        .compute(&key.secret, &[&prefix, message, &vars]);
    let record = Record {
        name: key.name.clone(),
        rtype: RrType::TSIG,
        class: Class::ANY,
        ttl: 0,
        rdata: RData::Tsig(TsigRdata {
            algorithm: key.algorithm.name(),
            time_signed: time_signed & 0xffff_ffff_ffff,
            fudge,
            mac: mac.clone(),
            original_id: u16::from_be_bytes([message[0], message[1]]),
            error,
            other: other.to_vec(),
        }),
    };
    let mut bytes = message.to_vec();
    bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
    // The RDATA is at most a few hundred octets plus `other`, checked above.
    record
        .encode(&mut bytes)
        .map_err(|_| SignError::OtherTooLong { len: other.len() })?;
    if bytes.len() > usize::from(u16::MAX) {
        return Err(SignError::TooLong { len: bytes.len() });
    }
    Ok(Signed { bytes, mac })
}

/// Signs a request at `time_signed` (seconds since the epoch) with `fudge`.
pub fn sign_request(
    message: &[u8],
    key: &TsigKey,
    time_signed: u64,
    fudge: u16,
) -> Result<Signed, SignError> {
    sign(message, key, None, time_signed, fudge, Rcode::NOERROR, &[])
}

/// Signs a response to a request whose MAC was `request_mac` (what a server does; used by
/// tests and test servers). `error` and `other` fill the TSIG error and other-data fields.
pub fn sign_response(
    message: &[u8],
    key: &TsigKey,
    request_mac: &[u8],
    time_signed: u64,
    fudge: u16,
    error: Rcode,
    other: &[u8],
) -> Result<Signed, SignError> {
    sign(
        message,
        key,
        Some(request_mac),
        time_signed,
        fudge,
        error,
        other,
    )
}

/// Verifies a signed request at our clock `now` (what a server does).
pub fn verify_request(bytes: &[u8], key: &TsigKey, now: u64) -> Result<Verified, VerifyError> {
    verify(bytes, key, None, now)
}

/// Verifies the response to a request signed with MAC `request_mac`, at our clock `now`.
///
/// A response that reports a TSIG error gives [`VerifyError::ServerError`]; a response with
/// no TSIG gives [`VerifyError::Unsigned`].
pub fn verify_response(
    bytes: &[u8],
    key: &TsigKey,
    request_mac: &[u8],
    now: u64,
) -> Result<Verified, VerifyError> {
    verify(bytes, key, Some(request_mac), now)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn verify(
    bytes: &[u8],
    key: &TsigKey,
    prior_mac: Option<&[u8]>,
    now: u64,
) -> Result<Verified, VerifyError> {
    let (message, pos) = Message::decode_with_tsig_position(bytes)?;
    let rcode = message.rcode();
    let (Some(pos), Some(record)) = (pos, message.additional.last()) else {
        return Err(VerifyError::Unsigned { rcode });
    };
    let RData::Tsig(tsig) = &record.rdata else {
        return Err(VerifyError::Unsigned { rcode });
    };
    if record.class != Class::ANY || record.ttl != 0 {
        return Err(VerifyError::BadTsigRecord {
            class: record.class,
            ttl: record.ttl,
        });
    }
    if tsig.error != Rcode::NOERROR && tsig.mac.is_empty() {
        return Err(VerifyError::ServerError {
            error: tsig.error,
            rcode,
            signed: false,
        });
    }
    if record.name != key.name {
        return Err(VerifyError::WrongKey {
            expected: key.name.clone(),
            got: record.name.clone(),
        });
    }
    if Algorithm::from_name(&tsig.algorithm) != Some(key.algorithm) {
        return Err(VerifyError::WrongAlgorithm {
            expected: key.algorithm,
            got: tsig.algorithm.clone(),
        });
    }
    let full = key.algorithm.mac_len();
    let got = tsig.mac.len();
    if got > full || got < (full / 2).max(10) {
        return Err(VerifyError::BadMacLength {
            algorithm: key.algorithm,
            got,
            full,
        });
    }
    // The message as it was before signing: TSIG record removed, ARCOUNT one less, the
    // original ID restored. The decoder guarantees 12 header octets and ARCOUNT >= 1.
    let mut unsigned = bytes[..pos.start].to_vec();
    let arcount = u16::from_be_bytes([unsigned[10], unsigned[11]]) - 1;
    unsigned[10..12].copy_from_slice(&arcount.to_be_bytes());
    unsigned[0..2].copy_from_slice(&tsig.original_id.to_be_bytes());
    let prefix = mac_input_prefix(prior_mac);
    let vars = variables(key, tsig.time_signed, tsig.fudge, tsig.error, &tsig.other);
    let expected = key
        .algorithm
        .compute(&key.secret, &[&prefix, &unsigned, &vars]);
    if !ct_eq(&expected[..got], &tsig.mac) {
        return Err(VerifyError::BadMac);
    }
    if tsig.error != Rcode::NOERROR {
        return Err(VerifyError::ServerError {
            error: tsig.error,
            rcode,
            signed: true,
        });
    }
    if now.abs_diff(tsig.time_signed) > u64::from(tsig.fudge) {
        return Err(VerifyError::BadTime {
            time_signed: tsig.time_signed,
            now,
            fudge: tsig.fudge,
        });
    }
    let mac = tsig.mac.clone();
    let time_signed = tsig.time_signed;
    Ok(Verified {
        message,
        mac,
        time_signed,
    })
}

// ---------------------------------------------------------------------------------------------
// BIND key files

/// Why a BIND key file was rejected. Lines are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// A `"` without its closing `"`.
    #[error("line {line}: unterminated string")]
    UnterminatedString {
        /// Line of the opening quote.
        line: usize,
    },
    /// A `/*` without its `*/`.
    #[error("line {line}: unterminated comment")]
    UnterminatedComment {
        /// Line of the `/*`.
        line: usize,
    },
    /// Something else than the grammar allows here.
    #[error("line {line}: expected {expected}, found {found}")]
    Unexpected {
        /// Line.
        line: usize,
        /// What the grammar wanted.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// The file ended inside a statement.
    #[error("line {line}: unexpected end of file, expected {expected}")]
    UnexpectedEof {
        /// Last line.
        line: usize,
        /// What the grammar wanted.
        expected: &'static str,
    },
    /// A top-level statement other than `key`.
    #[error("line {line}: unknown statement {word:?} (a key file holds key statements only)")]
    UnknownStatement {
        /// Line.
        line: usize,
        /// The statement keyword.
        word: String,
    },
    /// A key field other than `algorithm` and `secret`.
    #[error("line {line}: key {key}: unknown field {field:?}")]
    UnknownField {
        /// Line.
        line: usize,
        /// Key name.
        key: String,
        /// The field.
        field: String,
    },
    /// A field given twice.
    #[error("line {line}: key {key}: {field} given twice")]
    DuplicateField {
        /// Line of the second one.
        line: usize,
        /// Key name.
        key: String,
        /// The field.
        field: &'static str,
    },
    /// An algorithm this crate does not implement (hmac-md5 included).
    #[error("line {line}: key {key}: unsupported algorithm {name:?} (supported: hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512)")]
    UnknownAlgorithm {
        /// Line.
        line: usize,
        /// Key name.
        key: String,
        /// The algorithm as written.
        name: String,
    },
    /// The secret is not base64.
    #[error("line {line}: key {key}: secret is not valid base64: {source}")]
    BadSecret {
        /// Line.
        line: usize,
        /// Key name.
        key: String,
        /// The base64 error.
        source: Base64Error,
    },
    /// The secret decodes to nothing.
    #[error("line {line}: key {key}: empty secret")]
    EmptySecret {
        /// Line.
        line: usize,
        /// Key name.
        key: String,
    },
    /// A key without `algorithm` or without `secret`.
    #[error("line {line}: key {key} has no {field}")]
    MissingField {
        /// Line of the key's closing brace.
        line: usize,
        /// Key name.
        key: String,
        /// The missing field.
        field: &'static str,
    },
    /// The key name is not a domain name.
    #[error("line {line}: bad key name {name:?}: {source}")]
    BadKeyName {
        /// Line.
        line: usize,
        /// The name as written.
        name: String,
        /// Why.
        source: NameError,
    },
    /// The same key name twice.
    #[error("line {line}: key {key} defined twice")]
    DuplicateKey {
        /// Line of the second definition.
        line: usize,
        /// Key name.
        key: String,
    },
    /// No key statement at all.
    #[error("no key statement found")]
    NoKey,
    /// More than one key where one was asked for.
    #[error("{count} key statements found, expected exactly one")]
    MultipleKeys {
        /// How many.
        count: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semi,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Quoted(q) => format!("string \"{q}\""),
            Token::Open => "'{'".into(),
            Token::Close => "'}'".into(),
            Token::Semi => "';'".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<(Vec<(usize, Token)>, usize), KeyFileError> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let start = line;
                chars.next();
                let mut prev = '\0';
                loop {
                    let Some(c) = chars.next() else {
                        return Err(KeyFileError::UnterminatedComment { line: start });
                    };
                    if c == '\n' {
                        line += 1;
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(KeyFileError::UnterminatedString { line: start }),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            None => return Err(KeyFileError::UnterminatedString { line: start }),
                            Some(e) => s.push(e),
                        },
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            s.push(c);
                        }
                    }
                }
                out.push((start, Token::Quoted(s)));
            }
            '{' => out.push((line, Token::Open)),
            '}' => out.push((line, Token::Close)),
            ';' => out.push((line, Token::Semi)),
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push((line, Token::Word(w)));
            }
        }
    }
    Ok((out, line))
}

struct Tokens {
    items: std::vec::IntoIter<(usize, Token)>,
    last_line: usize,
}

impl Tokens {
    fn next(&mut self, expected: &'static str) -> Result<(usize, Token), KeyFileError> {
        self.items.next().ok_or(KeyFileError::UnexpectedEof {
            line: self.last_line,
            expected,
        })
    }

    fn expect(&mut self, want: Token, expected: &'static str) -> Result<usize, KeyFileError> {
        let (line, t) = self.next(expected)?;
        if t == want {
            Ok(line)
        } else {
            Err(KeyFileError::Unexpected {
                line,
                expected,
                found: t.describe(),
            })
        }
    }

    /// A word or quoted string.
    fn value(&mut self, expected: &'static str) -> Result<(usize, String), KeyFileError> {
        match self.next(expected)? {
            (line, Token::Word(w) | Token::Quoted(w)) => Ok((line, w)),
            (line, t) => Err(KeyFileError::Unexpected {
                line,
                expected,
                found: t.describe(),
            }),
        }
    }
}

/// Every key statement of a BIND key file (the format `tsig-keygen` writes and `named.conf`
/// includes). Comments (`#`, `//`, `/* */`) are allowed; other statements are errors.
pub fn parse_bind_keys(text: &str) -> Result<Vec<TsigKey>, KeyFileError> {
    let (items, last_line) = tokenize(text)?;
    let mut t = Tokens {
        items: items.into_iter(),
        last_line,
    };
    let mut keys: Vec<TsigKey> = Vec::new();
    while let Some((line, tok)) = t.items.next() {
        match tok {
            Token::Word(w) if w.eq_ignore_ascii_case("key") => {}
            Token::Word(w) => return Err(KeyFileError::UnknownStatement { line, word: w }),
            other => {
                return Err(KeyFileError::Unexpected {
                    line,
                    expected: "a key statement",
                    found: other.describe(),
                })
            }
        }
        let (name_line, raw_name) = t.value("the key name")?;
        let name = Name::from_ascii(&raw_name).map_err(|source| KeyFileError::BadKeyName {
            line: name_line,
            name: raw_name.clone(),
            source,
        })?;
        let label = name.to_string();
        if keys.iter().any(|k| k.name == name) {
            return Err(KeyFileError::DuplicateKey {
                line: name_line,
                key: label,
            });
        }
        t.expect(Token::Open, "'{' after the key name")?;
        let mut algorithm: Option<Algorithm> = None;
        let mut secret: Option<Vec<u8>> = None;
        let close_line = loop {
            let (line, tok) = t.next("a key field or '}'")?;
            let field = match tok {
                Token::Close => break line,
                Token::Word(w) => w,
                other => {
                    return Err(KeyFileError::Unexpected {
                        line,
                        expected: "a key field or '}'",
                        found: other.describe(),
                    })
                }
            };
            if field.eq_ignore_ascii_case("algorithm") {
                let (vline, v) = t.value("an algorithm name")?;
                if algorithm.is_some() {
                    return Err(KeyFileError::DuplicateField {
                        line,
                        key: label,
                        field: "algorithm",
                    });
                }
                algorithm = Some(Algorithm::from_mnemonic(&v).ok_or_else(|| {
                    KeyFileError::UnknownAlgorithm {
                        line: vline,
                        key: label.clone(),
                        name: v.clone(),
                    }
                })?);
            } else if field.eq_ignore_ascii_case("secret") {
                let (vline, v) = t.value("the secret in base64")?;
                if secret.is_some() {
                    return Err(KeyFileError::DuplicateField {
                        line,
                        key: label,
                        field: "secret",
                    });
                }
                let s = crate::base64::decode(&v).map_err(|source| KeyFileError::BadSecret {
                    line: vline,
                    key: label.clone(),
                    source,
                })?;
                if s.is_empty() {
                    return Err(KeyFileError::EmptySecret {
                        line: vline,
                        key: label,
                    });
                }
                secret = Some(s);
            } else {
                return Err(KeyFileError::UnknownField {
                    line,
                    key: label,
                    field,
                });
            }
            t.expect(Token::Semi, "';' after the field")?;
        };
        t.expect(Token::Semi, "';' after the key statement")?;
        let missing = |field| KeyFileError::MissingField {
            line: close_line,
            key: label.clone(),
            field,
        };
        let algorithm = algorithm.ok_or_else(|| missing("algorithm"))?;
        let secret = secret.ok_or_else(|| missing("secret"))?;
        keys.push(TsigKey::new(name, algorithm, secret));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn key(alg: Algorithm) -> TsigKey {
        TsigKey::new(
            n("tdm-key"),
            alg,
            b"0123456789abcdef0123456789abcdef".to_vec(),
        )
    }

    fn request() -> Vec<u8> {
        Message::update(0x4242, n("tdm.test")).encode().unwrap()
    }

    // RFC 4231 test case 2 (key "Jefe"), through our dispatch: checks each algorithm is wired
    // to the right hash.
    #[test]
    fn hmac_known_answers() {
        let data: &[&[u8]] = &[b"what do ya want ", b"for nothing?"];
        let hex = |v: Vec<u8>| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(Algorithm::HmacSha256.compute(b"Jefe", data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(Algorithm::HmacSha224.compute(b"Jefe", data)),
            "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"
        );
        assert!(hex(Algorithm::HmacSha384.compute(b"Jefe", data)).starts_with("af45d2e376484031"));
        assert!(hex(Algorithm::HmacSha512.compute(b"Jefe", data)).starts_with("164b7a7bfcf819e2"));
        // RFC 2202 test case 2 for HMAC-SHA1.
        assert_eq!(
            hex(Algorithm::HmacSha1.compute(b"Jefe", data)),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        for a in Algorithm::ALL {
            assert_eq!(a.compute(b"k", data).len(), a.mac_len());
            assert_eq!(Algorithm::from_name(&a.name()), Some(a));
            assert_eq!(
                Algorithm::from_mnemonic(&a.mnemonic().to_uppercase()),
                Some(a)
            );
        }
        assert_eq!(Algorithm::from_mnemonic("hmac-md5"), None);
    }

    #[test]
    fn request_round_trip_every_algorithm() {
        for alg in Algorithm::ALL {
            let k = key(alg);
            let s = sign_request(&request(), &k, 1_700_000_000, 300).unwrap();
            assert_eq!(s.mac.len(), alg.mac_len());
            let v = verify_request(&s.bytes, &k, 1_700_000_100).unwrap();
            assert_eq!(v.mac, s.mac);
            assert_eq!(v.message.additional.len(), 1);
            let (name, t) = v.message.tsig().unwrap();
            assert_eq!(name, &n("tdm-key"));
            assert_eq!(
                (t.original_id, t.fudge, t.time_signed),
                (0x4242, 300, 1_700_000_000)
            );
        }
    }

    #[test]
    fn response_mac_covers_request_mac() {
        let k = key(Algorithm::HmacSha256);
        let req = sign_request(&request(), &k, 1_700_000_000, 300).unwrap();
        let mut resp = Message::update(0x4242, n("tdm.test"));
        resp.header.response = true;
        let resp = resp.encode().unwrap();
        let signed =
            sign_response(&resp, &k, &req.mac, 1_700_000_001, 300, Rcode::NOERROR, &[]).unwrap();
        verify_response(&signed.bytes, &k, &req.mac, 1_700_000_002).unwrap();
        // Another request's MAC: the response does not verify.
        let mut other = req.mac.clone();
        other[0] ^= 1;
        assert_eq!(
            verify_response(&signed.bytes, &k, &other, 1_700_000_002),
            Err(VerifyError::BadMac)
        );
        // Taken as a request (no prior MAC): no match either.
        assert_eq!(
            verify_request(&signed.bytes, &k, 1_700_000_002),
            Err(VerifyError::BadMac)
        );
    }

    #[test]
    fn detects_tampering_keys_and_time() {
        let k = key(Algorithm::HmacSha256);
        let s = sign_request(&request(), &k, 1_700_000_000, 300).unwrap();
        // Flip one bit of the zone name.
        let mut bad = s.bytes.clone();
        bad[13] ^= 0x20;
        assert_eq!(
            verify_request(&bad, &k, 1_700_000_000),
            Err(VerifyError::BadMac)
        );
        // Changed ID (allowed: the original ID is in the TSIG) still verifies.
        let mut reid = s.bytes.clone();
        reid[0] = 0x99;
        verify_request(&reid, &k, 1_700_000_000).unwrap();
        let other_secret = TsigKey::new(n("tdm-key"), Algorithm::HmacSha256, b"nope".to_vec());
        assert_eq!(
            verify_request(&s.bytes, &other_secret, 1_700_000_000),
            Err(VerifyError::BadMac)
        );
        let other_name = TsigKey::new(n("k2"), Algorithm::HmacSha256, k.secret.clone());
        assert!(matches!(
            verify_request(&s.bytes, &other_name, 1_700_000_000),
            Err(VerifyError::WrongKey { .. })
        ));
        assert!(matches!(
            verify_request(&s.bytes, &key(Algorithm::HmacSha512), 1_700_000_000),
            Err(VerifyError::WrongAlgorithm {
                expected: Algorithm::HmacSha512,
                ..
            })
        ));
        assert_eq!(
            verify_request(&s.bytes, &k, 1_700_000_301),
            Err(VerifyError::BadTime {
                time_signed: 1_700_000_000,
                now: 1_700_000_301,
                fudge: 300
            })
        );
        verify_request(&s.bytes, &k, 1_699_999_700).unwrap();
        assert_eq!(
            verify_request(&request(), &k, 0),
            Err(VerifyError::Unsigned {
                rcode: Rcode::NOERROR
            })
        );
    }

    #[test]
    fn truncated_macs() {
        let k = key(Algorithm::HmacSha256);
        let s = sign_request(&request(), &k, 1_700_000_000, 300).unwrap();
        // Rebuild the TSIG with the MAC cut to 16 octets (allowed) and 8 (not allowed).
        for (keep, ok) in [(16usize, true), (15, false), (8, false)] {
            let mut m = Message::decode(&s.bytes).unwrap();
            if let Some(Record {
                rdata: RData::Tsig(t),
                ..
            }) = m.additional.last_mut()
            {
                t.mac.truncate(keep);
            }
            let r = verify_request(&m.encode().unwrap(), &k, 1_700_000_000);
            if ok {
                r.unwrap();
            } else {
                assert_eq!(
                    r,
                    Err(VerifyError::BadMacLength {
                        algorithm: Algorithm::HmacSha256,
                        got: keep,
                        full: 32
                    })
                );
            }
        }
    }

    #[test]
    fn server_errors() {
        let k = key(Algorithm::HmacSha256);
        let req = sign_request(&request(), &k, 1_700_000_000, 300).unwrap();
        // BADKEY as BIND sends it: NOTAUTH, TSIG with an empty MAC.
        let mut m = Message::update(0x4242, n("tdm.test"));
        m.header.response = true;
        m.header.rcode = 9;
        m.additional.push(Record {
            name: n("tdm-key"),
            rtype: RrType::TSIG,
            class: Class::ANY,
            ttl: 0,
            rdata: RData::Tsig(TsigRdata {
                algorithm: Algorithm::HmacSha256.name(),
                time_signed: 1_700_000_000,
                fudge: 300,
                mac: vec![],
                original_id: 0x4242,
                error: Rcode::BADKEY,
                other: vec![],
            }),
        });
        assert_eq!(
            verify_response(&m.encode().unwrap(), &k, &req.mac, 1_700_000_000),
            Err(VerifyError::ServerError {
                error: Rcode::BADKEY,
                rcode: Rcode::NOTAUTH,
                signed: false
            })
        );
        // BADTIME is signed and carries the server's time.
        let mut r = Message::update(0x4242, n("tdm.test"));
        r.header.response = true;
        r.header.rcode = 9;
        let server_time = 1_700_009_999u64.to_be_bytes()[2..].to_vec();
        let s = sign_response(
            &r.encode().unwrap(),
            &k,
            &req.mac,
            1_700_000_000,
            300,
            Rcode::BADTIME,
            &server_time,
        )
        .unwrap();
        assert_eq!(
            verify_response(&s.bytes, &k, &req.mac, 1_700_000_000),
            Err(VerifyError::ServerError {
                error: Rcode::BADTIME,
                rcode: Rcode::NOTAUTH,
                signed: true
            })
        );
    }

    const KEYGEN: &str = "key \"tdm-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\";\n};\n";

    #[test]
    fn reads_tsig_keygen_output() {
        let k = TsigKey::from_bind_key_file(KEYGEN).unwrap();
        assert_eq!(k, key(Algorithm::HmacSha256));
        assert!(!format!("{k:?}").contains("MDEy"));
        assert!(format!("{k:?}").contains("<32 octets>"));
        let text = "# made by hand\nkey a.example. { // first\n  algorithm \"HMAC-SHA512\"; /* multi\nline */ secret \"AAEC\";\n};\nkey b { algorithm hmac-sha1; secret \"/w==\"; };";
        let keys = parse_bind_keys(text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].name(), &n("a.example"));
        assert_eq!(keys[0].algorithm(), Algorithm::HmacSha512);
        assert_eq!(keys[0].secret(), &[0, 1, 2]);
        assert_eq!(keys[1].secret(), &[0xff]);
        assert_eq!(
            TsigKey::from_bind_key_file(text),
            Err(KeyFileError::MultipleKeys { count: 2 })
        );
        assert_eq!(
            TsigKey::from_bind_key_file("# nothing\n"),
            Err(KeyFileError::NoKey)
        );
    }

    #[test]
    fn key_file_errors_are_precise() {
        let cases: &[(&str, KeyFileError)] = &[
            (
                "key \"k\" {\n algorithm hmac-md5;\n secret \"AAAA\";\n};",
                KeyFileError::UnknownAlgorithm {
                    line: 2,
                    key: "k.".into(),
                    name: "hmac-md5".into(),
                },
            ),
            (
                "key k {\n algorithm hmac-sha256;\n secret \"AA*A\";\n};",
                KeyFileError::BadSecret {
                    line: 3,
                    key: "k.".into(),
                    source: Base64Error::InvalidCharacter { at: 2, found: '*' },
                },
            ),
            (
                "key k {\n algorithm hmac-sha256;\n};",
                KeyFileError::MissingField {
                    line: 3,
                    key: "k.".into(),
                    field: "secret",
                },
            ),
            (
                "key k { secret \"AAAA\"; };",
                KeyFileError::MissingField {
                    line: 1,
                    key: "k.".into(),
                    field: "algorithm",
                },
            ),
            (
                "key k { algorithm hmac-sha256 secret \"AAAA\"; };",
                KeyFileError::Unexpected {
                    line: 1,
                    expected: "';' after the field",
                    found: "\"secret\"".into(),
                },
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\";\n",
                KeyFileError::UnexpectedEof {
                    line: 2,
                    expected: "a key field or '}'",
                },
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\n",
                KeyFileError::UnterminatedString { line: 1 },
            ),
            ("/* open", KeyFileError::UnterminatedComment { line: 1 }),
            (
                "options { };",
                KeyFileError::UnknownStatement {
                    line: 1,
                    word: "options".into(),
                },
            ),
            (
                "key k { algorithm hmac-sha256; algorithm hmac-sha1; };",
                KeyFileError::DuplicateField {
                    line: 1,
                    key: "k.".into(),
                    field: "algorithm",
                },
            ),
            (
                "key k { owner x; };",
                KeyFileError::UnknownField {
                    line: 1,
                    key: "k.".into(),
                    field: "owner".into(),
                },
            ),
            (
                "key k { secret \"\"; };",
                KeyFileError::EmptySecret {
                    line: 1,
                    key: "k.".into(),
                },
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\"; }\n",
                KeyFileError::UnexpectedEof {
                    line: 2,
                    expected: "';' after the key statement",
                },
            ),
            (
                "key k { algorithm hmac-sha256; secret \"AAAA\"; };\nkey K. { algorithm hmac-sha256; secret \"AAAA\"; };",
                KeyFileError::DuplicateKey {
                    line: 2,
                    key: "K.".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bind_keys(text).as_ref(), Err(want), "{text}");
        }
        assert!(matches!(
            parse_bind_keys("key \"a..b\" { };"),
            Err(KeyFileError::BadKeyName { line: 1, .. })
        ));
    }
}
