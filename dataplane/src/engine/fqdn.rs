//! Client names for dynamic DNS: which name a client of a scope with `[[ddns]]` gets, from its
//! client FQDN option (81, RFC 4702) or its host name (option 12, RFC 2132), and what the server
//! answers in option 81.
//!
//! The engine only decides the name and who updates what; it hands a [`NameNote`] to the DNS
//! updater in the control plane, off the hot path. Names are built in fixed buffers: nothing
//! here allocates.
//!
//! Rules:
//! - Option 81 wins over option 12; a reservation's `hostname` is used when the client sends
//!   neither. Option 12 gives a host label: what follows its first dot is ignored.
//! - A partial name (option 81 without the root label in the canonical encoding, or without a
//!   dot in the deprecated ASCII encoding; every option 12 name) gets the scope's domain.
//! - Letters are lower-cased; a byte that is not a letter, digit or hyphen becomes a hyphen;
//!   hyphens at either end of a label are dropped. An empty label, a label over 63 bytes or a
//!   name over 253 bytes is refused (counted as `ddns_bad_name`; the lease is still granted).
//! - Flag N (no server update) or S clear (the client updates its A record) stand with
//!   `client_updates = "honor"`; with `"override"` the server updates A and PTR and sets O.

use crate::binding::Binding;
use crate::scope::{ClientUpdates, ScopeDdns};

/// DHCP option code of the client FQDN option (RFC 4702).
pub const FQDN_OPTION: u8 = 81;
/// Longest name, in text form without the trailing dot (RFC 1035 §2.3.4 less the root).
pub const NAME_MAX: usize = 253;

/// Flag S: the server performs the A update.
const FLAG_S: u8 = 0x01;
/// Flag O: the server overrode the client's S.
const FLAG_O: u8 = 0x02;
/// Flag E: canonical wire encoding of the name.
const FLAG_E: u8 = 0x04;
/// Flag N: the server performs no update.
const FLAG_N: u8 = 0x08;

/// A fully qualified name in a fixed buffer (text form, lower case, no trailing dot).
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct NameBuf {
    bytes: [u8; NAME_MAX],
    len: u8,
}

impl NameBuf {
    const EMPTY: NameBuf = NameBuf {
        bytes: [0; NAME_MAX],
        len: 0,
    };

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters, digits, hyphens and dots are ever written.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    fn push(&mut self, b: u8) -> Result<(), BadName> {
        let at = usize::from(self.len);
        if at >= NAME_MAX {
            return Err(BadName);
        }
        self.bytes[at] = b;
        self.len += 1;
        Ok(())
    }

    /// Append one label, cleaned as the module docs say.
    fn push_label(&mut self, raw: &[u8]) -> Result<(), BadName> {
        let mut clean = [0u8; 63];
        let mut n = 0;
        for &c in raw {
            let c = match c {
                b'A'..=b'Z' => c.to_ascii_lowercase(),
                b'a'..=b'z' | b'0'..=b'9' | b'-' => c,
                _ => b'-',
            };
            if n == clean.len() {
                return Err(BadName);
            }
            clean[n] = c;
            n += 1;
        }
        let label = trim_hyphens(&clean[..n]);
        if label.is_empty() {
            return Err(BadName);
        }
        if self.len > 0 {
            self.push(b'.')?;
        }
        for &c in label {
            self.push(c)?;
        }
        Ok(())
    }

    /// Append the dotted `text` label by label.
    fn push_dotted(&mut self, text: &[u8]) -> Result<(), BadName> {
        for label in text.split(|&c| c == b'.') {
            self.push_label(label)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn trim_hyphens(mut s: &[u8]) -> &[u8] {
    while let [b'-', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'-'] = s {
        s = rest;
    }
    s
}

/// A name the client sent that cannot become a DNS name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BadName;

/// What the engine decided about a client's name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClientName {
    /// The fully qualified name.
    pub name: NameBuf,
    /// The server updates DNS at all (false: the client asked for no update and may).
    pub update: bool,
    /// The server updates the A record (false: the client does; the server only the PTR).
    pub forward: bool,
    /// Option 81 flags to answer with, if the client sent option 81.
    reply_flags: Option<u8>,
}

impl ClientName {
    /// Write option 81's value for the reply into `out` (flags, RCODE1 and RCODE2 = 255, the
    /// name in the client's encoding); its length, or `None` if the client sent no option 81.
    pub fn reply_value(&self, out: &mut [u8; 3 + NAME_MAX + 2]) -> Option<usize> {
        let flags = self.reply_flags?;
        out[0] = flags;
        out[1] = 255;
        out[2] = 255;
        let name = self.name.as_str().as_bytes();
        let mut n = 3;
        if flags & FLAG_E != 0 {
            for label in name.split(|&c| c == b'.') {
                out[n] = label.len() as u8;
                n += 1;
                out[n..n + label.len()].copy_from_slice(label);
                n += label.len();
            }
            out[n] = 0;
            n += 1;
        } else {
            out[n..n + name.len()].copy_from_slice(name);
            n += name.len();
        }
        Some(n)
    }
}

/// The name a client of a scope with dynamic DNS gets: from option 81 (`fqdn`), option 12
/// (`host_name`, when the scope uses it) or the reservation's host name. `Ok(None)`: the
/// client has no name.
pub fn client_name(
    cfg: &ScopeDdns,
    fqdn: Option<&[u8]>,
    host_name: Option<&[u8]>,
    reserved: Option<&str>,
) -> Result<Option<ClientName>, BadName> {
    let mut name = NameBuf::EMPTY;
    let mut partial = true;
    let mut reply_flags = None;
    let (mut update, mut forward) = (true, true);
    let override_ = cfg.client_updates == ClientUpdates::Override;
    if let Some(v) = fqdn {
        let [flags, _rcode1, _rcode2, data @ ..] = v else {
            return Err(BadName);
        };
        let (flags, encoded) = (*flags, flags & FLAG_E != 0);
        if encoded {
            partial = push_wire(&mut name, data)?;
        } else {
            let text = data.strip_suffix(b".").map_or(data, |t| {
                partial = false;
                t
            });
            if !text.is_empty() {
                if text.contains(&b'.') {
                    partial = false;
                }
                name.push_dotted(text)?;
            }
        }
        let mut out = FLAG_S | (flags & FLAG_E);
        if flags & FLAG_N != 0 {
            if override_ {
                out |= FLAG_O;
            } else {
                update = false;
                out = FLAG_N | (flags & FLAG_E);
            }
        } else if flags & FLAG_S == 0 {
            if override_ {
                out |= FLAG_O;
            } else {
                forward = false;
                out &= !FLAG_S;
            }
        }
        reply_flags = Some(out);
    }
    if name.len == 0 {
        // No name in option 81 (or none sent): the host name, else the reservation's.
        partial = true;
        if let Some(h) = host_name.filter(|_| cfg.use_host_name) {
            let label = h.split(|&c| c == b'.').next().unwrap_or(h);
            let label = label.strip_suffix(&[0]).unwrap_or(label); // NUL-terminated hosts
            if !label.is_empty() {
                name.push_label(label)?;
            }
        }
        if name.len == 0 {
            if let Some(r) = reserved {
                if r.contains('.') {
                    partial = false;
                }
                name.push_dotted(r.trim_end_matches('.').as_bytes())?;
            }
        }
        if name.len == 0 {
            return if fqdn.is_some() {
                Err(BadName)
            } else {
                Ok(None)
            };
        }
    }
    if partial {
        name.push_dotted(cfg.domain.as_bytes())?;
    }
    Ok(Some(ClientName {
        name,
        update,
        forward,
        reply_flags,
    }))
}

/// Append a name in canonical wire encoding; true if it is partial (no root label).
fn push_wire(name: &mut NameBuf, mut data: &[u8]) -> Result<bool, BadName> {
    loop {
        match data {
            [] => return Ok(true),
            [0, ..] => return Ok(false),
            [len, rest @ ..] => {
                let len = usize::from(*len);
                if len > 63 || len > rest.len() {
                    return Err(BadName);
                }
                name.push_label(&rest[..len])?;
                data = &rest[len..];
            }
        }
    }
}

/// A client's name for the DNS updater: the committed lease (address, client identity,
/// expiry) and the name, sent when the engine ACKs a client of a scope with dynamic DNS.
#[derive(Copy, Clone, Debug)]
pub struct NameNote {
    /// The binding as the ACK made it.
    pub binding: Binding,
    /// The fully qualified name.
    pub name: NameBuf,
    /// The server updates the A record (false: only the PTR; the client updates its A).
    pub forward: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(client_updates: ClientUpdates) -> ScopeDdns {
        ScopeDdns {
            domain: "tdm.test".into(),
            client_updates,
            use_host_name: true,
        }
    }

    fn name(c: &ClientName) -> &str {
        c.name.as_str()
    }

    #[test]
    fn host_name_gets_the_scope_domain() {
        let c = client_name(
            &cfg(ClientUpdates::Override),
            None,
            Some(b"PC-1.corp"),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(name(&c), "pc-1.tdm.test");
        assert!(c.update && c.forward);
        let mut out = [0u8; 3 + NAME_MAX + 2];
        assert_eq!(
            c.reply_value(&mut out),
            None,
            "no option 81 without the client's"
        );
    }

    #[test]
    fn fqdn_option_encoded_full_and_partial() {
        let full = b"\x05\x00\x00\x04host\x03tdm\x04test\x00"; // S|E, host.tdm.test.
        let c = client_name(&cfg(ClientUpdates::Honor), Some(full), Some(b"x"), None)
            .unwrap()
            .unwrap();
        assert_eq!(name(&c), "host.tdm.test");
        let mut out = [0u8; 3 + NAME_MAX + 2];
        let n = c.reply_value(&mut out).unwrap();
        assert_eq!(&out[..n], b"\x05\xff\xff\x04host\x03tdm\x04test\x00");
        let partial = b"\x05\x00\x00\x04host";
        let c = client_name(&cfg(ClientUpdates::Honor), Some(partial), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(name(&c), "host.tdm.test");
        let other = b"\x05\x00\x00\x01a\x07example\x03net\x00";
        let c = client_name(&cfg(ClientUpdates::Honor), Some(other), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(name(&c), "a.example.net");
    }

    #[test]
    fn ascii_encoding() {
        let c = client_name(
            &cfg(ClientUpdates::Honor),
            Some(b"\x01\x00\x00Laptop"),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(name(&c), "laptop.tdm.test");
        let mut out = [0u8; 3 + NAME_MAX + 2];
        let n = c.reply_value(&mut out).unwrap();
        assert_eq!(&out[..n], b"\x01\xff\xfflaptop.tdm.test");
        let c = client_name(
            &cfg(ClientUpdates::Honor),
            Some(b"\x01\x00\x00a.b.c."),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(name(&c), "a.b.c");
    }

    #[test]
    fn client_choices_honoured_or_overridden() {
        let s_clear = b"\x04\x00\x00\x04host\x00";
        let c = client_name(&cfg(ClientUpdates::Honor), Some(s_clear), None, None)
            .unwrap()
            .unwrap();
        assert!(
            c.update && !c.forward,
            "the client updates its A, the server the PTR"
        );
        let mut out = [0u8; 3 + NAME_MAX + 2];
        c.reply_value(&mut out).unwrap();
        assert_eq!(out[0], FLAG_E);
        let c = client_name(&cfg(ClientUpdates::Override), Some(s_clear), None, None)
            .unwrap()
            .unwrap();
        assert!(c.update && c.forward);
        c.reply_value(&mut out).unwrap();
        assert_eq!(out[0], FLAG_S | FLAG_O | FLAG_E);
        let n_set = b"\x0c\x00\x00\x04host\x00";
        let c = client_name(&cfg(ClientUpdates::Honor), Some(n_set), None, None)
            .unwrap()
            .unwrap();
        assert!(!c.update);
        c.reply_value(&mut out).unwrap();
        assert_eq!(out[0], FLAG_N | FLAG_E);
        let c = client_name(&cfg(ClientUpdates::Override), Some(n_set), None, None)
            .unwrap()
            .unwrap();
        assert!(c.update && c.forward);
    }

    #[test]
    fn bad_names_are_refused_and_odd_ones_cleaned() {
        let h = cfg(ClientUpdates::Honor);
        assert_eq!(client_name(&h, Some(b"\x01\x00"), None, None), Err(BadName));
        assert_eq!(
            client_name(&h, Some(b"\x05\x00\x00\x40"), None, None),
            Err(BadName)
        );
        assert_eq!(client_name(&h, None, Some(b"---"), None), Err(BadName));
        assert_eq!(client_name(&h, None, Some(&[b'a'; 64]), None), Err(BadName));
        let long = [b'a'; 63];
        let mut v = vec![5, 0, 0];
        for _ in 0..4 {
            v.push(63);
            v.extend_from_slice(&long);
        }
        assert_eq!(client_name(&h, Some(&v), None, None), Err(BadName));
        let c = client_name(&h, None, Some(b"my_pc\0"), None)
            .unwrap()
            .unwrap();
        assert_eq!(name(&c), "my-pc.tdm.test");
        assert_eq!(client_name(&h, None, None, None), Ok(None));
        let c = client_name(&h, None, None, Some("printer"))
            .unwrap()
            .unwrap();
        assert_eq!(name(&c), "printer.tdm.test");
        let off = ScopeDdns {
            use_host_name: false,
            ..h
        };
        assert_eq!(client_name(&off, None, Some(b"pc"), None), Ok(None));
    }
}
