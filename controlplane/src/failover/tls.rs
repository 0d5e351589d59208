//! TLS 1.3 with mutual certificate authentication for the failover link between two Tandem
//! partners (`tls = "required"` in a `[[failover]]`).
//!
//! Both servers hold a certificate issued by a CA they both trust (`tls_ca_file`), with their own
//! key (`tls_cert_file`, `tls_key_file`), and name the DNS name the partner's certificate must
//! carry (`tls_partner_name`). Only the primary connects, so it is the TLS client and the
//! secondary the TLS server; each checks the other's chain against the CA and the name against
//! `tls_partner_name`. Only TLS 1.3 is offered or accepted.
//!
//! The files are read when the link starts and again before each new connection if one of them
//! changed on disk ([`TlsReloader`]), so renewed certificates take effect at the next
//! connection without a restart; a connection that is up keeps going, and leases are never
//! touched. A reload that fails (a half-written file, a key that does not match) keeps the
//! previous certificates and says why in the log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

/// The TLS settings of one relationship, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the CA certificate(s) the partner's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM file with this server's certificate (and any intermediates after it).
    pub cert_file: PathBuf,
    /// PEM file with this server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The DNS name the partner's certificate must be valid for.
    pub partner_name: String,
}

/// Why the TLS files cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Both directions' rustls configurations, built from one reading of the files.
pub struct TlsMaterial {
    /// For the primary, which connects.
    pub client: Arc<ClientConfig>,
    /// For the secondary, which accepts.
    pub server: Arc<ServerConfig>,
    /// The partner's expected name (also the SNI the primary sends).
    pub partner_name: ServerName<'static>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("partner_name", &self.partner_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    // ring's provider: it builds with the C compiler alone (aws-lc-rs would need cmake). Its
    // deprecation is about post-quantum key exchange, which the failover link (two servers of
    // one operator, certificates pinned to one CA) does without for now.
    #[allow(deprecated)]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display();
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("cannot read {what} {shown}: {e}")))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{what} {shown} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{what} {shown} holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block)"
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let shown = path.display();
    check_private(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "tls_key_file {shown}: no usable private key ({e}); expected a PEM \"PRIVATE KEY\", \
             \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block"
        ))
    })
}

/// The key file must not be readable by other users (as with the shared-secret file).
fn check_private(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| TlsError(format!("cannot read tls_key_file {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError(format!(
            "tls_key_file {} has mode {mode:04o}, so users other than its owner can read the \
             private key; chmod 600 it",
            path.display()
        )));
    }
    Ok(())
}

/// Read the files of `s` and build both configurations.
pub fn load(s: &TlsSettings) -> Result<TlsMaterial, TlsError> {
    let name = ServerName::try_from(s.partner_name.clone()).map_err(|_| {
        TlsError(format!(
            "tls_partner_name {:?} is not a DNS name or IP address",
            s.partner_name
        ))
    })?;
    let mut roots = RootCertStore::empty();
    for c in read_certs(&s.ca_file, "tls_ca_file")? {
        roots.add(c).map_err(|e| {
            TlsError(format!(
                "tls_ca_file {}: not a usable CA certificate: {e}",
                s.ca_file.display()
            ))
        })?;
    }
    let roots = Arc::new(roots);
    let chain = read_certs(&s.cert_file, "tls_cert_file")?;
    let key = read_key(&s.key_file)?;
    let versions = [&rustls::version::TLS13];

    let bad = |e: rustls::Error| {
        TlsError(format!(
            "tls_cert_file {} with tls_key_file {}: {e}",
            s.cert_file.display(),
            s.key_file.display()
        ))
    };
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(bad)?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .map_err(bad)?;
    let inner = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError(format!("tls_ca_file {}: {e}", s.ca_file.display())))?;
    let verifier = Arc::new(NamedClientVerifier {
        inner,
        name: name.clone(),
    });
    let server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(bad)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(bad)?;
    Ok(TlsMaterial {
        client: Arc::new(client),
        server: Arc::new(server),
        partner_name: name,
    })
}

/// The CA check of [`WebPkiClientVerifier`], then the partner's name: a certificate from the
/// same CA issued to another server is refused.
#[derive(Debug)]
struct NamedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
}

impl ClientCertVerifier for NamedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(&self.name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The current [`TlsMaterial`] of a relationship, re-read when the files change.
pub struct TlsReloader {
    settings: TlsSettings,
    material: Arc<TlsMaterial>,
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
    /// Load the files now (an error here stops the daemon's start with its message).
    pub fn new(settings: TlsSettings) -> Result<TlsReloader, TlsError> {
        let stamps = stamps(&settings);
        let material = Arc::new(load(&settings)?);
        Ok(TlsReloader {
            settings,
            material,
            stamps,
        })
    }

    /// The material for a new connection: re-read first if a file changed since the last
    /// reading. A failed re-read keeps the old material (and is retried at the next call).
    pub fn current(&mut self) -> Arc<TlsMaterial> {
        let now = stamps(&self.settings);
        if now != self.stamps {
            match load(&self.settings) {
                Ok(m) => {
                    tracing::info!(
                        cert = %self.settings.cert_file.display(),
                        "failover TLS: certificates changed on disk; reloaded for new connections"
                    );
                    self.material = Arc::new(m);
                    self.stamps = now;
                }
                Err(e) => tracing::error!(error = %e,
                    "failover TLS: certificates changed on disk but cannot be used; keeping the previous ones"),
            }
        }
        self.material.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

fn stamps(s: &TlsSettings) -> [Option<SystemTime>; 3] {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [m(&s.ca_file), m(&s.cert_file), m(&s.key_file)]
}

/// The counted reason a TLS session with the partner failed (metrics label and log word).
pub fn refusal_reason(e: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription as A, Error as E};
    match e {
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => "not_tls",
        E::InvalidCertificate(CertificateError::NotValidForName)
        | E::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => "wrong_name",
        E::InvalidCertificate(CertificateError::Expired)
        | E::InvalidCertificate(CertificateError::ExpiredContext { .. })
        | E::InvalidCertificate(CertificateError::NotValidYet)
        | E::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
            "certificate_expired"
        }
        E::InvalidCertificate(_) => "bad_certificate",
        E::NoCertificatesPresented => "no_certificate",
        E::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::AccessDenied,
        ) => "partner_refused_our_certificate",
        E::PeerIncompatible(_) | E::AlertReceived(A::ProtocolVersion) => "incompatible",
        _ => "tls_error",
    }
}
