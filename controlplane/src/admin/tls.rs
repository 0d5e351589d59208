//! TLS 1.3 on the admin endpoint (`admin_tls = "required"` in `[server]`), optionally with
//! client-certificate authentication.
//!
//! The server presents `admin_tls_cert_file` (with its intermediates) and `admin_tls_key_file`.
//! When `admin_tls_client_ca_file` is given, every client must present a certificate that chains
//! to that CA (and is valid for client authentication); a connection without one, or with one
//! from another CA, is refused during the handshake, before any HTTP is read.
//!
//! Role of a verified client certificate: its names are the DNS names of its subject
//! alternative name extension and the common names (CN) of its subject. If any of them equals
//! (ASCII case-insensitively, no wildcard matching) an entry of `admin_tls_readonly_names`, the
//! certificate is read-only (GET only); every other certificate the CA issued is an admin. The
//! CA is the boundary of who may connect at all: issue admin certificates only to operators.
//!
//! The files are read when the endpoint starts and again before a new connection's handshake
//! if one of them changed on disk ([`TlsReloader`]); a re-read that fails keeps the previous
//! certificates and says why in the log.
//!
//! The client side is here too: [`load_peer`] builds the TLS 1.3 client of a partner request
//! (`partner_admin_tls = "required"` in a `[[failover]]`, see [`super::peer`]) from a
//! [`PeerTlsSettings`], with the same PEM readers (`pem_certs`, `pem_roots`, `pem_key`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The admin endpoint's TLS settings, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTlsSettings {
    /// `admin_tls_cert_file`: PEM file with the server's certificate (and any intermediates
    /// after it).
    pub cert_file: PathBuf,
    /// `admin_tls_key_file`: PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1);
    /// only its owner may access it.
    pub key_file: PathBuf,
    /// `admin_tls_client_ca_file`: PEM file with the CA certificate(s) that client certificates
    /// must chain to. When set, a client certificate is required and authenticates the client.
    pub client_ca_file: Option<PathBuf>,
    /// `admin_tls_readonly_names`: client certificate names (DNS names or common names) that
    /// get the read-only role.
    pub readonly_names: Vec<String>,
}

/// Which of the TLS files a [`AdminTlsError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// `admin_tls_cert_file`.
    Cert,
    /// `admin_tls_key_file`.
    Key,
    /// `admin_tls_client_ca_file`.
    ClientCa,
}

impl TlsFile {
    /// The configuration key naming the file.
    pub fn key(self) -> &'static str {
        match self {
            TlsFile::Cert => "admin_tls_cert_file",
            TlsFile::Key => "admin_tls_key_file",
            TlsFile::ClientCa => "admin_tls_client_ca_file",
        }
    }
}

/// Why the admin endpoint's TLS files cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdminTlsError {
    /// The file at fault.
    pub file: TlsFile,
    /// What is wrong, naming the key and the file.
    pub message: String,
}

fn fail(file: TlsFile, message: String) -> AdminTlsError {
    AdminTlsError { file, message }
}

fn provider() -> Arc<CryptoProvider> {
    // ring's provider, as on the failover link: it builds with the C compiler alone (aws-lc-rs
    // would need cmake). Its deprecation is about post-quantum key exchange, which an admin
    // endpoint reached by the operator's own tools does without for now.
    #[allow(deprecated)]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

/// The certificates of the PEM file `path`, named `key` in messages (at least one).
pub(crate) fn pem_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {shown}: cannot read: {e}"))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {shown}: not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {shown}: holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block)"
        ));
    }
    Ok(certs)
}

/// The CA certificates of the PEM file `path` (named `key` in messages) as trust anchors.
pub(crate) fn pem_roots(path: &Path, key: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in pem_certs(path, key)? {
        roots
            .add(c)
            .map_err(|e| format!("{key} {}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

fn read_certs(path: &Path, file: TlsFile) -> Result<Vec<CertificateDer<'static>>, AdminTlsError> {
    pem_certs(path, file.key()).map_err(|m| fail(file, m))
}

/// The key file must be a regular file that only its owner may access (as the token file).
fn check_private(path: &Path, key: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{key} {shown}: cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{key} {shown}: not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{key} {shown}: mode {mode:04o} lets users other than its owner access the private \
             key; run `chmod 600 {shown}`"
        ));
    }
    Ok(())
}

/// The private key of the PEM file `path`, named `key` in messages; the file must be private
/// to its owner.
pub(crate) fn pem_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, String> {
    check_private(path, key)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "{key} {}: no usable private key ({e}); expected a PEM \"PRIVATE KEY\", \
             \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block",
            path.display()
        )
    })
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, AdminTlsError> {
    pem_key(path, TlsFile::Key.key()).map_err(|m| fail(TlsFile::Key, m))
}

/// Read the files of `s` and build the server's TLS configuration (TLS 1.3 only, ALPN
/// `http/1.1`, client certificates required when a client CA is configured).
pub fn load(s: &AdminTlsSettings) -> Result<Arc<ServerConfig>, AdminTlsError> {
    let chain = read_certs(&s.cert_file, TlsFile::Cert)?;
    let key = read_key(&s.key_file)?;
    let versions = [&rustls::version::TLS13];
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| fail(TlsFile::Cert, format!("TLS 1.3 set-up: {e}")))?;
    let builder = match &s.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots =
                pem_roots(ca, TlsFile::ClientCa.key()).map_err(|m| fail(TlsFile::ClientCa, m))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| {
                    fail(
                        TlsFile::ClientCa,
                        format!("admin_tls_client_ca_file {}: {e}", ca.display()),
                    )
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        let (c, k) = (s.cert_file.display(), s.key_file.display());
        match e {
            rustls::Error::InconsistentKeys(_) => fail(
                TlsFile::Key,
                format!(
                    "admin_tls_key_file {k} is not the private key of the certificate in \
                     admin_tls_cert_file {c}"
                ),
            ),
            e => fail(
                TlsFile::Cert,
                format!("admin_tls_cert_file {c} with admin_tls_key_file {k}: {e}"),
            ),
        }
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The current TLS configuration of the admin endpoint, re-read when the files change.
pub struct TlsReloader {
    settings: AdminTlsSettings,
    config: Arc<ServerConfig>,
    stamps: [Option<SystemTime>; 3],
}

impl fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsReloader")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// Load the files now.
    pub fn new(settings: AdminTlsSettings) -> Result<TlsReloader, AdminTlsError> {
        let stamps = stamps(&settings);
        let config = load(&settings)?;
        Ok(TlsReloader {
            settings,
            config,
            stamps,
        })
    }

    /// The configuration for a new connection: re-read first if a file changed since the last
    /// reading. A failed re-read keeps the previous configuration (and is retried next time).
    pub fn current(&mut self) -> Arc<ServerConfig> {
        let now = stamps(&self.settings);
        if now != self.stamps {
            match load(&self.settings) {
                Ok(c) => {
                    tracing::info!(
                        cert = %self.settings.cert_file.display(),
                        "admin TLS: certificates changed on disk; reloaded for new connections"
                    );
                    self.config = c;
                    self.stamps = now;
                }
                Err(e) => tracing::error!(error = %e,
                    "admin TLS: certificates changed on disk but cannot be used; keeping the previous ones"),
            }
        }
        self.config.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &AdminTlsSettings {
        &self.settings
    }
}

fn stamps(s: &AdminTlsSettings) -> [Option<SystemTime>; 3] {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [
        m(&s.cert_file),
        m(&s.key_file),
        s.client_ca_file.as_deref().and_then(m),
    ]
}

/// What a verified client certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read only (GET).
    ReadOnly,
}

/// The client of a connection, as its verified certificate identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate's DNS names (subject alternative name), then its subject common names.
    pub names: Vec<String>,
    /// Its role.
    pub role: Role,
}

impl ClientCert {
    /// The client of the end-entity certificate `der` (already verified against the client CA):
    /// read-only if one of its names is in `readonly_names`, else admin.
    pub fn from_der(der: &[u8], readonly_names: &[String]) -> ClientCert {
        let names = certificate_names(der);
        let readonly = names
            .iter()
            .any(|n| readonly_names.iter().any(|r| r.eq_ignore_ascii_case(n)));
        ClientCert {
            names,
            role: if readonly {
                Role::ReadOnly
            } else {
                Role::Admin
            },
        }
    }

    /// The name to show in logs and errors: the first one, or `(no name)`.
    pub fn label(&self) -> &str {
        self.names.first().map_or("(no name)", String::as_str)
    }
}

/// One DER element: its tag and contents.
struct Der<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Take the next DER element off the front of `input` (None if malformed or empty).
fn next<'a>(input: &mut &'a [u8]) -> Option<Der<'a>> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (body, rest) = rest.split_at_checked(len)?;
    *input = rest;
    Some(Der { tag, body })
}

/// Every element of `input` in order (stops at the first malformed one).
fn elements(mut input: &[u8]) -> impl Iterator<Item = Der<'_>> {
    std::iter::from_fn(move || next(&mut input))
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_OCTETS: u8 = 0x04;
/// `[0] EXPLICIT` version of a TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT` extensions of a TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;
/// `dNSName [2] IA5String` of a GeneralName.
const TAG_DNS_NAME: u8 = 0x82;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The names of the X.509 certificate `der`: the DNS names of its subject alternative name
/// extension, then the common names of its subject (empty if it cannot be read).
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let Some((subject, extensions)) = subject_and_extensions(der) else {
        return names;
    };
    if let Some(exts) = extensions {
        for ext in elements(exts).filter(|e| e.tag == TAG_SEQUENCE) {
            let mut parts = ext.body;
            let Some(oid) = next(&mut parts).filter(|o| o.tag == TAG_OID) else {
                continue;
            };
            if oid.body != OID_SUBJECT_ALT_NAME {
                continue;
            }
            // An optional `critical` BOOLEAN, then the OCTET STRING holding GeneralNames.
            let Some(value) = elements(parts).find(|e| e.tag == TAG_OCTETS) else {
                continue;
            };
            let mut v = value.body;
            let Some(general) = next(&mut v).filter(|g| g.tag == TAG_SEQUENCE) else {
                continue;
            };
            for g in elements(general.body).filter(|g| g.tag == TAG_DNS_NAME) {
                if let Ok(s) = std::str::from_utf8(g.body) {
                    names.push(s.to_string());
                }
            }
        }
    }
    for rdn in elements(subject).filter(|r| r.tag == TAG_SET) {
        for atv in elements(rdn.body).filter(|a| a.tag == TAG_SEQUENCE) {
            let mut parts = atv.body;
            let Some(oid) = next(&mut parts).filter(|o| o.tag == TAG_OID) else {
                continue;
            };
            if oid.body != OID_COMMON_NAME {
                continue;
            }
            if let Some(s) = next(&mut parts).and_then(|v| directory_string(&v)) {
                names.push(s);
            }
        }
    }
    names
}

/// The subject Name's contents and, if present, the contents of the extensions' SEQUENCE OF
/// Extension of the certificate `der`.
fn subject_and_extensions(der: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let mut input = der;
    let cert = next(&mut input).filter(|c| c.tag == TAG_SEQUENCE)?;
    let mut c = cert.body;
    let tbs = next(&mut c).filter(|t| t.tag == TAG_SEQUENCE)?;
    let mut t = tbs.body;
    if next(&mut t)?.tag == TAG_VERSION {
        next(&mut t)?; // the serial number
    }
    next(&mut t)?; // signature algorithm
    next(&mut t)?; // issuer
    next(&mut t)?; // validity
    let subject = next(&mut t).filter(|s| s.tag == TAG_SEQUENCE)?;
    next(&mut t)?; // subject public key info
    let extensions = elements(t)
        .find(|e| e.tag == TAG_EXTENSIONS)
        .and_then(|e| {
            let mut b = e.body;
            next(&mut b).filter(|s| s.tag == TAG_SEQUENCE)
        })
        .map(|seq| seq.body);
    Some((subject.body, extensions))
}

/// The text of a DirectoryString (UTF8String, PrintableString, IA5String, TeletexString as
/// Latin-1, BMPString, UniversalString).
fn directory_string(v: &Der<'_>) -> Option<String> {
    match v.tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(v.body).ok().map(str::to_string),
        0x14 => Some(v.body.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units: Vec<u16> = v
                .body
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        0x1c => v
            .body
            .chunks_exact(4)
            .map(|p| char::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
            .collect(),
        _ => None,
    }
}

// ----- The client side: a partner's requests to this server's partner ----------------------

/// The configuration keys the values of a [`PeerTlsSettings`] came from, named in its messages
/// (a `partner_admin_*` key, or the relationship's `tls_*` key it defaults to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerTlsKeys {
    /// Of `ca_file`: `partner_admin_ca_file` or `tls_ca_file`.
    pub ca: &'static str,
    /// Of the client certificate: `partner_admin_cert_file` or `tls_cert_file`.
    pub cert: &'static str,
    /// Of the client key: `partner_admin_key_file` or `tls_key_file`.
    pub key: &'static str,
    /// Of `name`: `partner_admin_name`, `tls_partner_name` or `partner_admin` (its IP address).
    pub name: &'static str,
}

/// How this server reaches its partner's admin endpoint over HTTPS (`partner_admin_tls =
/// "required"` in a `[[failover]]`): for scope replication and relationship changes, whose
/// requests stay signed with the relationship's secret (see [`super::peer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTlsSettings {
    /// PEM file with the CA certificate(s) the partner's admin certificate must chain to.
    pub ca_file: PathBuf,
    /// The name (DNS name or IP address) the partner's admin certificate must be valid for; also
    /// the SNI sent.
    pub name: String,
    /// The client certificate presented, `(certificate file, private key file)`; `None`: none
    /// (a partner whose endpoint asks for client certificates then refuses the handshake).
    pub client: Option<(PathBuf, PathBuf)>,
    /// Where each value came from.
    pub keys: PeerTlsKeys,
}

/// Which value of a [`PeerTlsSettings`] a [`PeerTlsError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerTlsPart {
    /// `ca_file`.
    Ca,
    /// The client certificate file.
    Cert,
    /// The client key file.
    Key,
    /// `name`.
    Name,
}

impl PeerTlsPart {
    /// The configuration key the part came from.
    pub fn key(self, keys: &PeerTlsKeys) -> &'static str {
        match self {
            PeerTlsPart::Ca => keys.ca,
            PeerTlsPart::Cert => keys.cert,
            PeerTlsPart::Key => keys.key,
            PeerTlsPart::Name => keys.name,
        }
    }
}

/// Why the files of a [`PeerTlsSettings`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PeerTlsError {
    /// The value at fault.
    pub part: PeerTlsPart,
    /// What is wrong, naming the key and the file.
    pub message: String,
}

/// A partner request's TLS client: its configuration and the name the partner must prove.
#[derive(Clone)]
pub struct PeerTls {
    /// TLS 1.3 only, ring, the partner's CA as the only trust anchor, the client certificate if
    /// configured, ALPN `http/1.1`.
    pub config: Arc<rustls::ClientConfig>,
    /// The partner's expected name.
    pub name: rustls::pki_types::ServerName<'static>,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Read the files of `s` and build the client configuration of a partner request. Called when
/// the configuration is loaded (a mistake is a configuration error) and again for every request
/// (renewed certificates take effect at once).
pub fn load_peer(s: &PeerTlsSettings) -> Result<PeerTls, PeerTlsError> {
    let perr = |part: PeerTlsPart| move |message: String| PeerTlsError { part, message };
    let name = rustls::pki_types::ServerName::try_from(s.name.clone()).map_err(|_| {
        perr(PeerTlsPart::Name)(format!(
            "{} {:?} is not a DNS name or IP address",
            s.keys.name, s.name
        ))
    })?;
    let roots = pem_roots(&s.ca_file, s.keys.ca).map_err(perr(PeerTlsPart::Ca))?;
    let versions = [&rustls::version::TLS13];
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| perr(PeerTlsPart::Ca)(format!("TLS 1.3 set-up: {e}")))?
        .with_root_certificates(roots);
    let mut config = match &s.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = pem_certs(cert, s.keys.cert).map_err(perr(PeerTlsPart::Cert))?;
            let der = pem_key(key, s.keys.key).map_err(perr(PeerTlsPart::Key))?;
            builder.with_client_auth_cert(chain, der).map_err(|e| {
                let (c, k) = (cert.display(), key.display());
                match e {
                    rustls::Error::InconsistentKeys(_) => perr(PeerTlsPart::Key)(format!(
                        "{} {k} is not the private key of the certificate in {} {c}",
                        s.keys.key, s.keys.cert
                    )),
                    e => perr(PeerTlsPart::Cert)(format!(
                        "{} {c} with {} {k}: {e}",
                        s.keys.cert, s.keys.key
                    )),
                }
            })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(PeerTls {
        config: Arc::new(config),
        name,
    })
}

/// The counted reason a TLS handshake failed, from rustls's error.
pub(crate) fn handshake_refusal(e: &rustls::Error) -> super::server::Refusal {
    use super::server::Refusal;
    use rustls::Error as E;
    match e {
        E::NoCertificatesPresented => Refusal::NoClientCertificate,
        E::InvalidCertificate(_) => Refusal::BadClientCertificate,
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => Refusal::NotTls,
        _ => Refusal::TlsError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of a length-prefixed element.
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if body.len() < 0x80 {
            out.push(body.len() as u8);
        } else {
            let n = body.len().to_be_bytes();
            let skip = n.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (n.len() - skip) as u8);
            out.extend_from_slice(&n[skip..]);
        }
        out.extend_from_slice(body);
        out
    }

    fn cn(name: &str, tag: u8) -> Vec<u8> {
        let atv = [tlv(TAG_OID, OID_COMMON_NAME), tlv(tag, name.as_bytes())].concat();
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &atv))
    }

    /// A certificate-shaped structure (contents not signed: only the parser is under test).
    fn cert(subject: &[u8], dns: &[&str], long: bool) -> Vec<u8> {
        let san: Vec<u8> = dns
            .iter()
            .flat_map(|d| tlv(TAG_DNS_NAME, d.as_bytes()))
            .collect();
        let ext = [
            tlv(TAG_OID, OID_SUBJECT_ALT_NAME),
            tlv(0x01, &[0xff]),
            tlv(TAG_OCTETS, &tlv(TAG_SEQUENCE, &san)),
        ]
        .concat();
        let other_ext = [
            tlv(TAG_OID, &[0x55, 0x1d, 0x13]),
            tlv(TAG_OCTETS, &tlv(TAG_SEQUENCE, &[])),
        ]
        .concat();
        let exts = tlv(
            TAG_SEQUENCE,
            &[tlv(TAG_SEQUENCE, &other_ext), tlv(TAG_SEQUENCE, &ext)].concat(),
        );
        let padding = if long { vec![0u8; 300] } else { Vec::new() };
        let tbs = [
            tlv(TAG_VERSION, &tlv(0x02, &[2])),
            tlv(0x02, &[1, 2, 3]),
            tlv(TAG_SEQUENCE, &tlv(TAG_OID, &[0x2a, 0x86, 0x48])),
            tlv(TAG_SEQUENCE, &cn("Test CA", 0x0c)),
            tlv(
                TAG_SEQUENCE,
                &[tlv(0x17, b"250101000000Z"), tlv(0x17, b"350101000000Z")].concat(),
            ),
            tlv(TAG_SEQUENCE, subject),
            tlv(TAG_SEQUENCE, &tlv(0x03, &padding)),
            tlv(TAG_EXTENSIONS, &exts),
        ]
        .concat();
        tlv(
            TAG_SEQUENCE,
            &[
                tlv(TAG_SEQUENCE, &tbs),
                tlv(TAG_SEQUENCE, &[]),
                tlv(0x03, &[0]),
            ]
            .concat(),
        )
    }

    #[test]
    fn names_are_the_dns_names_then_the_common_names() {
        let subject = [cn("ops-ro", 0x13), cn("second", 0x0c)].concat();
        let der = cert(&subject, &["ro.tandem.test", "alt.tandem.test"], true);
        assert_eq!(
            certificate_names(&der),
            ["ro.tandem.test", "alt.tandem.test", "ops-ro", "second"]
        );
        let bmp: Vec<u8> = "Zoë".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let der = cert(&cn_raw(&bmp), &[], false);
        assert_eq!(certificate_names(&der), ["Zoë"]);
    }

    fn cn_raw(bmp: &[u8]) -> Vec<u8> {
        let atv = [tlv(TAG_OID, OID_COMMON_NAME), tlv(0x1e, bmp)].concat();
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &atv))
    }

    #[test]
    fn malformed_input_gives_no_names_and_no_panic() {
        let der = cert(&cn("x", 0x0c), &["a.test"], true);
        for cut in 0..der.len() {
            let _ = certificate_names(&der[..cut]);
        }
        assert!(certificate_names(&[]).is_empty());
        assert!(certificate_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(certificate_names(b"not DER at all").is_empty());
    }

    #[test]
    fn roles_follow_the_read_only_names() {
        let der = cert(&cn("Ops Reader", 0x0c), &["ro.tandem.test"], false);
        let ro = vec!["RO.tandem.TEST".to_string()];
        assert_eq!(ClientCert::from_der(&der, &ro).role, Role::ReadOnly);
        assert_eq!(
            ClientCert::from_der(&der, &["ops reader".to_string()]).role,
            Role::ReadOnly
        );
        let c = ClientCert::from_der(&der, &["admin.tandem.test".to_string()]);
        assert_eq!(c.role, Role::Admin);
        assert_eq!(c.label(), "ro.tandem.test");
        // No wildcard matching: a wildcard in the certificate is compared as written.
        let wild = cert(&cn("w", 0x0c), &["*.tandem.test"], false);
        assert_eq!(ClientCert::from_der(&wild, &ro).role, Role::Admin);
    }
}
