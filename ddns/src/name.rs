//! Domain names: parsed from presentation form, kept in uncompressed wire form.
//!
//! Comparison and hashing ignore ASCII case, as DNS does (RFC 4343). The canonical wire form
//! (RFC 4034 §6.2: every ASCII letter lowercased) is what DHCID digests and TSIG MACs cover.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;
/// Longest name in wire form, length octets and the root label included (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;

/// Why a presentation-form name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The text was empty (the root is written ".").
    #[error("empty domain name (the root is written \".\")")]
    Empty,
    /// Two dots in a row, or a leading dot: an empty label.
    #[error("empty label at character {at} of {text:?}")]
    EmptyLabel {
        /// Byte offset in the text.
        at: usize,
        /// The whole text.
        text: String,
    },
    /// A label longer than 63 octets.
    #[error("label {label:?} is {len} octets long, the maximum is 63")]
    LabelTooLong {
        /// The label (lossy text).
        label: String,
        /// Its length in octets.
        len: usize,
    },
    /// The wire form would exceed 255 octets.
    #[error("name {text:?} is {len} octets in wire form, the maximum is 255")]
    NameTooLong {
        /// The whole text.
        text: String,
        /// Its wire length.
        len: usize,
    },
    /// A backslash escape that is neither `\DDD` (decimal, at most 255) nor `\` + a character.
    #[error("bad escape at character {at} of {text:?}")]
    BadEscape {
        /// Byte offset of the backslash.
        at: usize,
        /// The whole text.
        text: String,
    },
}

/// A fully qualified domain name in uncompressed wire form.
///
/// Always absolute: `Name::from_ascii("host.example.com")` and `"host.example.com."` are the same.
#[derive(Clone)]
pub struct Name {
    /// Length-prefixed labels ending with the zero-length root label.
    wire: Vec<u8>,
}

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name { wire: vec![0] }
    }

    /// Parses presentation form: labels separated by dots, an optional final dot, escapes
    /// `\.`, `\\` and `\DDD`. Every name is taken as fully qualified.
    pub fn from_ascii(text: &str) -> Result<Name, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text == "." {
            return Ok(Name::root());
        }
        let bytes = text.as_bytes();
        let mut wire = Vec::with_capacity(bytes.len() + 2);
        let mut label: Vec<u8> = Vec::new();
        let mut label_start = 0usize;
        let mut i = 0usize;
        let finish =
            |label: &mut Vec<u8>, wire: &mut Vec<u8>, at: usize| -> Result<(), NameError> {
                if label.is_empty() {
                    return Err(NameError::EmptyLabel {
                        at,
                        text: text.to_owned(),
                    });
                }
                if label.len() > MAX_LABEL {
                    return Err(NameError::LabelTooLong {
                        label: String::from_utf8_lossy(label).into_owned(),
                        len: label.len(),
                    });
                }
                // Cannot truncate: checked against MAX_LABEL above.
                wire.push(label.len() as u8);
                wire.append(label);
                Ok(())
            };
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    finish(&mut label, &mut wire, label_start)?;
                    i += 1;
                    label_start = i;
                }
                b'\\' => {
                    let bad = || NameError::BadEscape {
                        at: i,
                        text: text.to_owned(),
                    };
                    let rest = &bytes[i + 1..];
                    match rest.first() {
                        None => return Err(bad()),
                        Some(c) if c.is_ascii_digit() => {
                            if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
                                return Err(bad());
                            }
                            let v = rest[..3]
                                .iter()
                                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                            let v = u8::try_from(v).map_err(|_| bad())?;
                            label.push(v);
                            i += 4;
                        }
                        Some(&c) => {
                            label.push(c);
                            i += 2;
                        }
                    }
                }
                c => {
                    label.push(c);
                    i += 1;
                }
            }
        }
        if !label.is_empty() {
            finish(&mut label, &mut wire, label_start)?;
        }
        wire.push(0);
        if wire.len() > MAX_NAME {
            return Err(NameError::NameTooLong {
                text: text.to_owned(),
                len: wire.len(),
            });
        }
        Ok(Name { wire })
    }

    /// Builds a name from already validated wire form (used by the decoder).
    pub(crate) fn from_wire_unchecked(wire: Vec<u8>) -> Name {
        debug_assert!(wire.len() <= MAX_NAME && wire.last() == Some(&0));
        Name { wire }
    }

    /// The reverse-mapping name of an IPv4 address: `d.c.b.a.in-addr.arpa.` (RFC 1035 §3.5).
    pub fn reverse_ipv4(addr: Ipv4Addr) -> Name {
        // Built label by label (no text round trip): the DNS updater asks for one per lease.
        let [a, b, c, d] = addr.octets();
        let mut wire = Vec::with_capacity(30);
        for octet in [d, c, b, a] {
            let digits = [octet / 100, octet / 10 % 10, octet % 10];
            let skip = if octet >= 100 {
                0
            } else if octet >= 10 {
                1
            } else {
                2
            };
            // Cannot truncate: 1 to 3 digits.
            wire.push((3 - skip) as u8);
            wire.extend(digits[skip..].iter().map(|d| b'0' + d));
        }
        wire.extend_from_slice(b"\x07in-addr\x04arpa\x00");
        Name { wire }
    }

    /// Uncompressed wire form as given (case preserved).
    pub fn as_wire(&self) -> &[u8] {
        &self.wire
    }

    /// Canonical wire form: uncompressed, ASCII letters lowercased (RFC 4034 §6.2).
    pub fn canonical_wire(&self) -> Vec<u8> {
        // Length octets are at most 63, so lowercasing the whole buffer never changes them.
        self.wire.to_ascii_lowercase()
    }

    /// The labels, leftmost first, without the root label.
    pub fn labels(&self) -> Labels<'_> {
        Labels { rest: &self.wire }
    }

    /// Number of labels, the root not counted.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// True for the root name.
    pub fn is_root(&self) -> bool {
        self.wire.len() == 1
    }

    /// True when `self` equals `zone` or lies below it (case-insensitive).
    pub fn is_subdomain_of(&self, zone: &Name) -> bool {
        let mine: Vec<&[u8]> = self.labels().collect();
        let theirs: Vec<&[u8]> = zone.labels().collect();
        if theirs.len() > mine.len() {
            return false;
        }
        mine[mine.len() - theirs.len()..]
            .iter()
            .zip(&theirs)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

/// Iterator over the labels of a [`Name`].
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        if len == 0 {
            self.rest = &[];
            return None;
        }
        let (label, rest) = tail.split_at(usize::from(len));
        self.rest = rest;
        Some(label)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.wire.eq_ignore_ascii_case(&other.wire)
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical_wire().hash(state);
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &c in label {
                match c {
                    b'.' | b'\\' => write!(f, "\\{}", char::from(c))?,
                    0x21..=0x7e => write!(f, "{}", char::from(c))?,
                    _ => write!(f, "\\{c:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::from_ascii(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let n = Name::from_ascii("Host.Example.COM").unwrap();
        assert_eq!(n.as_wire(), b"\x04Host\x07Example\x03COM\x00");
        assert_eq!(n.canonical_wire(), b"\x04host\x07example\x03com\x00");
        assert_eq!(n.to_string(), "Host.Example.COM.");
        assert_eq!(n, Name::from_ascii("host.example.com.").unwrap());
        assert_eq!(n.label_count(), 3);
        assert_eq!(Name::from_ascii(".").unwrap(), Name::root());
        assert_eq!(Name::root().to_string(), ".");
    }

    #[test]
    fn escapes() {
        let n = Name::from_ascii(r"a\.b\\c\032d.example").unwrap();
        assert_eq!(n.as_wire(), b"\x07a.b\\c d\x07example\x00");
        assert_eq!(n.to_string(), r"a\.b\\c\032d.example.");
        assert_eq!(
            Name::from_ascii(n.to_string().as_str()).unwrap().as_wire(),
            n.as_wire()
        );
        assert!(matches!(
            Name::from_ascii(r"a\256.b"),
            Err(NameError::BadEscape { at: 1, .. })
        ));
        assert!(matches!(
            Name::from_ascii(r"a\2"),
            Err(NameError::BadEscape { .. })
        ));
        assert!(matches!(
            Name::from_ascii("a\\"),
            Err(NameError::BadEscape { .. })
        ));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Name::from_ascii(""), Err(NameError::Empty));
        assert!(matches!(
            Name::from_ascii("a..b"),
            Err(NameError::EmptyLabel { at: 2, .. })
        ));
        assert!(matches!(
            Name::from_ascii(".a"),
            Err(NameError::EmptyLabel { at: 0, .. })
        ));
        let long = "x".repeat(64);
        assert!(matches!(
            Name::from_ascii(&long),
            Err(NameError::LabelTooLong { len: 64, .. })
        ));
        let ok = ["y".repeat(63).as_str(); 3].join(".") + "." + &"z".repeat(61);
        assert_eq!(Name::from_ascii(&ok).unwrap().as_wire().len(), 255);
        let too_long = ok + "z";
        assert!(matches!(
            Name::from_ascii(&too_long),
            Err(NameError::NameTooLong { len: 256, .. })
        ));
    }

    #[test]
    fn reverse_and_subdomain() {
        let r = Name::reverse_ipv4(Ipv4Addr::new(10, 77, 1, 2));
        assert_eq!(r.to_string(), "2.1.77.10.in-addr.arpa.");
        let zone = Name::from_ascii("77.10.IN-ADDR.arpa").unwrap();
        assert!(r.is_subdomain_of(&zone));
        assert!(zone.is_subdomain_of(&zone));
        assert!(!zone.is_subdomain_of(&r));
        assert!(r.is_subdomain_of(&Name::root()));
        assert!(!Name::from_ascii("x.78.10.in-addr.arpa")
            .unwrap()
            .is_subdomain_of(&zone));
    }

    #[test]
    fn reverse_names_match_their_presentation_form() {
        // Every octet value in every position, against the text form parsed.
        for v in 0..=255u8 {
            for addr in [
                Ipv4Addr::new(v, 1, 20, 200),
                Ipv4Addr::new(9, v, 99, 100),
                Ipv4Addr::new(255, 0, v, 7),
                Ipv4Addr::new(0, 10, 255, v),
            ] {
                let [a, b, c, d] = addr.octets();
                let text = format!("{d}.{c}.{b}.{a}.in-addr.arpa.");
                let r = Name::reverse_ipv4(addr);
                assert_eq!(
                    r.as_wire(),
                    Name::from_ascii(&text).unwrap().as_wire(),
                    "{addr}"
                );
                assert_eq!(r.to_string(), text);
            }
        }
    }
}
