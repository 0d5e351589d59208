//! Standard base64 (RFC 4648 §4, with padding): TSIG secrets in BIND key files and DHCID RDATA
//! in presentation form.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a base64 text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    /// A character outside the alphabet (whitespace included).
    #[error("invalid base64 character {found:?} at position {at}")]
    InvalidCharacter {
        /// Byte offset.
        at: usize,
        /// The character.
        found: char,
    },
    /// The length is not a multiple of 4.
    #[error("base64 text of {len} characters is not a multiple of 4 long")]
    BadLength {
        /// Its length.
        len: usize,
    },
    /// `=` anywhere but in the last one or two positions, or non-zero bits before the padding.
    #[error("bad base64 padding at position {at}")]
    BadPadding {
        /// Byte offset.
        at: usize,
    },
}

/// Encodes `data` with padding.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((v >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes padded base64, strictly: no whitespace, canonical padding bits.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        // A character error is more telling than a length error when both apply.
        if let Some((at, &c)) = bytes
            .iter()
            .enumerate()
            .find(|(_, &c)| c != b'=' && value(c).is_none())
        {
            return Err(invalid(text, at, c));
        }
        return Err(Base64Error::BadLength { len: bytes.len() });
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (q, quad) in bytes.chunks(4).enumerate() {
        let base = q * 4;
        let last = q + 1 == quads;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(Base64Error::BadPadding { at: base + 4 - pad });
        }
        let mut v = 0u32;
        for (i, &c) in quad[..4 - pad].iter().enumerate() {
            let d = match value(c) {
                Some(d) => d,
                None if c == b'=' => return Err(Base64Error::BadPadding { at: base + i }),
                None => return Err(invalid(text, base + i, c)),
            };
            v |= d << (18 - 6 * i);
        }
        let n = 3 - pad;
        // Bits below the last full octet must be zero for a canonical encoding.
        if pad > 0 && v & ((1 << (8 * pad)) - 1) != 0 {
            return Err(Base64Error::BadPadding { at: base + 3 - pad });
        }
        out.extend_from_slice(&v.to_be_bytes()[1..1 + n]);
    }
    Ok(out)
}

fn invalid(text: &str, at: usize, c: u8) -> Base64Error {
    let found = text[at..].chars().next().unwrap_or(char::from(c));
    Base64Error::InvalidCharacter { at, found }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn all_bytes_round_trip() {
        let data: Vec<u8> = (0..=255).collect();
        for n in 0..data.len() {
            assert_eq!(decode(&encode(&data[..n])).unwrap(), &data[..n]);
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(decode("Zm9"), Err(Base64Error::BadLength { len: 3 }));
        assert_eq!(
            decode("Zm 9v"),
            Err(Base64Error::InvalidCharacter { at: 2, found: ' ' })
        );
        assert_eq!(
            decode("Zm9é"),
            Err(Base64Error::InvalidCharacter { at: 3, found: 'é' })
        );
        assert_eq!(decode("Z==="), Err(Base64Error::BadPadding { at: 1 }));
        assert_eq!(decode("Zg==Zm9v"), Err(Base64Error::BadPadding { at: 2 }));
        assert_eq!(decode("Z=g="), Err(Base64Error::BadPadding { at: 1 }));
        // "Zh==" carries non-zero bits after the single octet.
        assert_eq!(decode("Zh=="), Err(Base64Error::BadPadding { at: 1 }));
    }
}
