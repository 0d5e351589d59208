//! DHCID RDATA (RFC 4701): which DHCP client a name belongs to, as a SHA-256 digest of the
//! client's identity and the name, so that two DHCP servers (or a server and a client) can tell
//! whose name it is without revealing the identity.

use sha2::{Digest, Sha256};

use crate::name::Name;

/// Identifier-type code: hardware type + chaddr (RFC 4701 §3.3).
pub const ID_TYPE_CHADDR: u16 = 0x0000;
/// Identifier-type code: DHCPv4 client identifier option 61 contents.
pub const ID_TYPE_CLIENT_ID: u16 = 0x0001;
/// Identifier-type code: DUID (DHCPv6, or the DUID inside an RFC 4361 client identifier).
pub const ID_TYPE_DUID: u16 = 0x0002;
/// Digest-type code: SHA-256 (RFC 4701 §3.4), the only one defined.
pub const DIGEST_SHA256: u8 = 1;

/// The DHCP client identity a DHCID is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No option 61: the `htype` field and the `hlen` octets of `chaddr` (identifier type 0).
    HardwareAddress {
        /// BOOTP hardware type (1 = Ethernet).
        htype: u8,
        /// The first `hlen` octets of `chaddr`.
        chaddr: Vec<u8>,
    },
    /// The full contents of DHCPv4 option 61, type octet included (identifier type 1).
    ClientIdentifier(Vec<u8>),
    /// A DUID (identifier type 2).
    Duid(Vec<u8>),
}

impl Identity {
    /// The identity RFC 4701 §3.3 / RFC 4703 §3.1 prescribes for a DHCPv4 client: option 61
    /// when present (the DUID part of an RFC 4361 identifier, type 255, when it holds one),
    /// otherwise htype + chaddr.
    pub fn for_dhcpv4(htype: u8, chaddr: &[u8], client_id: Option<&[u8]>) -> Identity {
        match client_id {
            // RFC 4361: type 255, 4-octet IAID, then the DUID (at least its 2-octet type).
            Some(id) if id.len() >= 5 + 2 && id[0] == 255 => Identity::Duid(id[5..].to_vec()),
            Some(id) if !id.is_empty() => Identity::ClientIdentifier(id.to_vec()),
            _ => Identity::HardwareAddress {
                htype,
                chaddr: chaddr.to_vec(),
            },
        }
    }

    /// The identifier-type code.
    pub fn type_code(&self) -> u16 {
        match self {
            Identity::HardwareAddress { .. } => ID_TYPE_CHADDR,
            Identity::ClientIdentifier(_) => ID_TYPE_CLIENT_ID,
            Identity::Duid(_) => ID_TYPE_DUID,
        }
    }

    fn feed(&self, h: &mut Sha256) {
        match self {
            Identity::HardwareAddress { htype, chaddr } => {
                h.update([*htype]);
                h.update(chaddr);
            }
            Identity::ClientIdentifier(id) | Identity::Duid(id) => h.update(id),
        }
    }
}

/// Why DHCID RDATA was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcidError {
    /// Shorter than the identifier-type and digest-type fields.
    #[error("DHCID RDATA of {len} octets is shorter than the 3-octet type fields")]
    TooShort {
        /// Its length.
        len: usize,
    },
}

/// DHCID RDATA: identifier type (2 octets), digest type (1 octet), digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dhcid {
    rdata: Vec<u8>,
}

impl Dhcid {
    /// Computes the DHCID of `identity` for `fqdn`: SHA-256 over the identifier and the FQDN in
    /// canonical (lowercased, uncompressed) wire form.
    pub fn compute(identity: &Identity, fqdn: &Name) -> Dhcid {
        let mut h = Sha256::new();
        identity.feed(&mut h);
        h.update(fqdn.canonical_wire());
        let digest = h.finalize();
        let mut rdata = Vec::with_capacity(3 + digest.len());
        rdata.extend_from_slice(&identity.type_code().to_be_bytes());
        rdata.push(DIGEST_SHA256);
        rdata.extend_from_slice(&digest);
        Dhcid { rdata }
    }

    /// Wraps RDATA as received. Any identifier and digest type is kept, so that another
    /// party's DHCID can be compared and deleted.
    pub fn from_rdata(rdata: &[u8]) -> Result<Dhcid, DhcidError> {
        if rdata.len() < 3 {
            return Err(DhcidError::TooShort { len: rdata.len() });
        }
        Ok(Dhcid {
            rdata: rdata.to_vec(),
        })
    }

    /// The RDATA octets.
    pub fn as_rdata(&self) -> &[u8] {
        &self.rdata
    }

    /// The identifier-type code.
    pub fn identifier_type(&self) -> u16 {
        u16::from_be_bytes([self.rdata[0], self.rdata[1]])
    }

    /// The digest-type code.
    pub fn digest_type(&self) -> u8 {
        self.rdata[2]
    }

    /// The digest.
    pub fn digest(&self) -> &[u8] {
        &self.rdata[3..]
    }

    /// Presentation form: the RDATA in base64, as in a zone file or `dig` output.
    pub fn to_base64(&self) -> String {
        crate::base64::encode(&self.rdata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    // RFC 4701 §3.6: the three examples (identity, FQDN, expected RDATA in base64).

    #[test]
    fn rfc4701_example_duid() {
        let duid = [
            0x00, 0x01, 0x00, 0x06, 0x41, 0x2d, 0xf1, 0x66, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
        ];
        let d = Dhcid::compute(&Identity::Duid(duid.to_vec()), &n("chi6.example.com"));
        assert_eq!(
            d.to_base64(),
            "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA="
        );
        assert_eq!(d.identifier_type(), ID_TYPE_DUID);
    }

    #[test]
    fn rfc4701_example_client_identifier() {
        let id = [0x01, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c];
        let d = Dhcid::compute(
            &Identity::ClientIdentifier(id.to_vec()),
            &n("chi.example.com"),
        );
        assert_eq!(
            d.to_base64(),
            "AAEBOSD+XR3Os/0LozeXVqcNc7FwCfQdWL3b/NaiUDlW2No="
        );
        assert_eq!(d.identifier_type(), ID_TYPE_CLIENT_ID);
        assert_eq!(d.digest_type(), DIGEST_SHA256);
        assert_eq!(d.digest().len(), 32);
        // Picked by for_dhcpv4 when option 61 is present.
        assert_eq!(
            Identity::for_dhcpv4(1, &[9; 6], Some(&id)),
            Identity::ClientIdentifier(id.to_vec())
        );
    }

    #[test]
    fn rfc4701_example_hardware_address() {
        let identity = Identity::for_dhcpv4(1, &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06], None);
        let d = Dhcid::compute(&identity, &n("client.example.com"));
        assert_eq!(
            d.to_base64(),
            "AAABxLmlskllE0MVjd57zHcWmEH3pCQ6VytcKD//7es/deY="
        );
        assert_eq!(d.identifier_type(), ID_TYPE_CHADDR);
    }

    #[test]
    fn name_case_does_not_matter_identity_does() {
        let id = Identity::ClientIdentifier(vec![1, 2, 3]);
        assert_eq!(
            Dhcid::compute(&id, &n("Host.TDM.test")),
            Dhcid::compute(&id, &n("host.tdm.test."))
        );
        assert_ne!(
            Dhcid::compute(&id, &n("host.tdm.test")),
            Dhcid::compute(
                &Identity::ClientIdentifier(vec![1, 2, 4]),
                &n("host.tdm.test")
            )
        );
        assert_ne!(
            Dhcid::compute(&id, &n("host.tdm.test")),
            Dhcid::compute(&id, &n("other.tdm.test"))
        );
    }

    #[test]
    fn rfc4361_client_identifier_uses_the_duid() {
        // Type 255, IAID 0x01020304, DUID-LL (type 3, hw type 1, MAC).
        let opt = [
            255, 1, 2, 3, 4, 0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        ];
        assert_eq!(
            Identity::for_dhcpv4(1, &[0; 6], Some(&opt)),
            Identity::Duid(opt[5..].to_vec())
        );
        // Too short to hold a DUID: taken as an opaque identifier.
        assert_eq!(
            Identity::for_dhcpv4(1, &[0; 6], Some(&[255, 1, 2, 3, 4])),
            Identity::ClientIdentifier(vec![255, 1, 2, 3, 4])
        );
        // An empty option 61 is no identifier at all.
        assert_eq!(
            Identity::for_dhcpv4(1, &[7; 6], Some(&[])),
            Identity::HardwareAddress {
                htype: 1,
                chaddr: vec![7; 6]
            }
        );
    }

    #[test]
    fn rdata_round_trip() {
        assert_eq!(
            Dhcid::from_rdata(&[0, 1]),
            Err(DhcidError::TooShort { len: 2 })
        );
        let d = Dhcid::from_rdata(&[0, 9, 2, 0xff]).unwrap();
        assert_eq!(
            (d.identifier_type(), d.digest_type(), d.digest()),
            (9, 2, &[0xff][..])
        );
        assert_eq!(crate::base64::decode(&d.to_base64()).unwrap(), d.as_rdata());
    }
}
