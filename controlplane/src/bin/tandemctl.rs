//! `tandemctl`: command-line client of a running `tandemd`'s admin endpoint.
//!
//! Human-readable tables by default; `--json` prints the server's JSON answer as is (pretty).
//!
//! Exit codes, for scripts:
//! - 0: success;
//! - 1: the server answered with an error (bad parameter, unknown lease or scope, invalid
//!   configuration, worker not answering) or with something unreadable;
//! - 2: usage error (bad arguments, unreadable `--token-file`, `--file`, `--ca`, `--cert` or
//!   `--key`);
//! - 3: the server could not be reached (including a TLS handshake that failed on our side: the
//!   server's certificate does not verify against `--ca`, or the endpoint is not TLS);
//! - 4: the server refused the request as unauthenticated (missing or wrong token) or refused
//!   the client certificate (none given where one is required, or one from another CA);
//! - 5: the failover partner could not be reached or refused the change (HTTP 502).
//!
//! The bearer token is read from `--token-file` (or `TANDEM_TOKEN_FILE`), else from
//! `/etc/tandem/admin.token` if that file exists and is readable.
//!
//! HTTPS (for a server with `admin_tls = "required"`) is used when `--admin` is an
//! `https://HOST:PORT` URL, or `--tls` is given, or any of `--ca`, `--cert`, `--key`. The
//! server's certificate is verified against `--ca FILE` (else the system's CA bundle
//! `/etc/ssl/certs/ca-certificates.crt`) and must be valid for the host in `--admin` (a DNS
//! name, or an IP address in its subject alternative names). `--cert FILE --key FILE` present a
//! client certificate (a server with `admin_tls_client_ca_file` requires one). Each option has
//! an environment variable: `TANDEM_ADMIN`, `TANDEM_TLS`, `TANDEM_CA`, `TANDEM_CERT`,
//! `TANDEM_KEY`.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, CommandFactory, Parser, Subcommand};
use serde_json::{json, Map, Value};

/// Exit code: the server answered with an error.
const EXIT_SERVER: u8 = 1;
/// Exit code: usage error.
const EXIT_USAGE: u8 = 2;
/// Exit code: the server could not be reached.
const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: not authenticated.
const EXIT_UNAUTHORIZED: u8 = 4;
/// Exit code: the failover partner could not be reached or refused (HTTP 502).
const EXIT_PARTNER: u8 = 5;

/// Token file used when neither `--token-file` nor `TANDEM_TOKEN_FILE` is given.
const DEFAULT_TOKEN_FILE: &str = "/etc/tandem/admin.token";

/// CA bundle used for HTTPS when `--ca` is not given (Debian's `ca-certificates`).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Largest scope file `scope set` sends, in bytes (the server's own limit is 4 MiB).
const MAX_SCOPE_FILE: u64 = 4 << 20;

/// Talk to a running tandemd.
///
/// Exit codes: 0 ok, 1 server error, 2 usage, 3 unreachable, 4 unauthorized (token or client
/// certificate refused), 5 failover partner unreachable or refusing.
///
/// HTTPS: give --admin https://HOST:PORT (or --tls, or any of --ca, --cert, --key) for a server
/// with admin_tls = "required". The server's certificate must chain to --ca (default: the
/// system CA bundle) and be valid for HOST; --cert and --key present a client certificate,
/// which a server with admin_tls_client_ca_file requires.
#[derive(Parser, Debug)]
#[command(name = "tandemctl", version, about)]
struct Args {
    /// Admin endpoint of the server: HOST:PORT, http://HOST:PORT or https://HOST:PORT.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9167",
        env = "TANDEM_ADMIN",
        value_name = "ADDR"
    )]
    admin: String,
    /// File holding the admin API's bearer token [default: /etc/tandem/admin.token if it exists].
    #[arg(long, global = true, env = "TANDEM_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Use HTTPS (TLS 1.3) with a HOST:PORT --admin.
    #[arg(
        long,
        global = true,
        env = "TANDEM_TLS",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    tls: bool,
    /// PEM file of the CA to verify the server's certificate with (implies HTTPS)
    /// [default: /etc/ssl/certs/ca-certificates.crt].
    #[arg(long, global = true, env = "TANDEM_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// PEM file of the client certificate (and intermediates) to present (implies HTTPS; needs
    /// --key).
    #[arg(
        long,
        global = true,
        env = "TANDEM_CERT",
        value_name = "FILE",
        requires = "key"
    )]
    cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (needs --cert).
    #[arg(
        long,
        global = true,
        env = "TANDEM_KEY",
        value_name = "FILE",
        requires = "cert"
    )]
    key: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Server status and pool usage per scope.
    Status,
    /// Counters: requests, replies, drops by reason, journal commits.
    Stats,
    /// Print the Prometheus metrics.
    Metrics,
    /// Reload the configuration file (as SIGHUP does); prints every error if it is invalid.
    Reload,
    /// Leases: list, show, delete.
    Lease {
        #[command(subcommand)]
        cmd: LeaseCmd,
    },
    /// Scopes: list, show, set (add or replace), remove. Changes are written to the
    /// configuration file and applied at once.
    Scope {
        #[command(subcommand)]
        cmd: ScopeCmd,
    },
    /// Failover relationships (as the Windows failover cmdlets): show, add, set, remove,
    /// replicate, partner-down, pause, resume.
    Failover {
        #[command(subcommand)]
        cmd: FailoverCmd,
    },
    /// Dynamic DNS: what the DNS updater published, what waits and what failed.
    Ddns {
        #[command(subcommand)]
        cmd: DdnsCmd,
    },
    /// Migrate from ISC dhcpd or Kea: translate the configuration into Tandem's TOML (checked
    /// as `tandemd --check-config` does) and the leases into a journal in the state directory.
    /// Runs offline (no server needed). Whatever cannot be translated is printed on stderr as
    /// `FILE:LINE: directive: why`. Exit codes: 0 ok, 1 usage or I/O error, 2 an input does
    /// not parse, 3 --strict and something cannot be translated (nothing written), 4 the
    /// generated configuration fails validation (nothing written).
    Import {
        #[command(subcommand)]
        cmd: ImportCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ImportCmd {
    /// Import ISC dhcpd's dhcpd.conf and dhcpd.leases.
    Dhcpd(ImportArgs),
    /// Import Kea's kea-dhcp4.conf and its memfile lease CSV (kea-leases4.csv).
    Kea(ImportArgs),
}

#[derive(ClapArgs, Debug)]
struct ImportArgs {
    /// The other server's configuration file.
    #[arg(long, value_name = "FILE")]
    conf: PathBuf,
    /// Its lease file (without it, only the configuration is imported).
    #[arg(long, value_name = "FILE")]
    leases: Option<PathBuf>,
    /// The Tandem configuration to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Tandem's state directory: the journal is written here and it becomes server.state_dir
    /// (it must not hold a journal yet).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Fail (exit 3, nothing written) if anything cannot be translated.
    #[arg(long)]
    strict: bool,
    /// This server's address (server.server_id) [default: from the files, else the first
    /// --interface address].
    #[arg(long, value_name = "ADDRESS")]
    server_id: Option<Ipv4Addr>,
    /// An interface to serve on, as NAME or NAME/ADDRESS (this server's address on it: the
    /// subnet holding it serves the interface's directly attached clients). Repeatable.
    #[arg(long = "interface", value_name = "IFACE[/ADDRESS]")]
    interfaces: Vec<String>,
    /// Parse, translate, check and report, but write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand, Debug)]
enum LeaseCmd {
    /// List leases, sorted by address.
    List {
        /// Only leases in this state (active, offered, released, expired, abandoned, free, ...).
        #[arg(long)]
        state: Option<String>,
        /// Only leases of this scope.
        #[arg(long)]
        scope: Option<String>,
        /// At most this many leases.
        #[arg(long)]
        limit: Option<usize>,
        /// Skip this many leases first.
        #[arg(long)]
        offset: Option<usize>,
    },
    /// Show the lease of one address.
    Show {
        /// The leased IPv4 address.
        address: Ipv4Addr,
    },
    /// End the lease of one address now, as a DHCPRELEASE from its client would (in a failover
    /// scope the address turns free once the partner has acknowledged).
    Delete {
        /// The leased IPv4 address.
        address: Ipv4Addr,
    },
}

#[derive(Subcommand, Debug)]
enum ScopeCmd {
    /// List the scopes with their pool usage.
    List,
    /// Show one scope and its [[scope]] table from the configuration file.
    Show {
        /// The scope's name.
        name: String,
    },
    /// Add a scope, or replace the one of that name: FILE holds its [[scope]] table (with its
    /// [scope.options], [[scope.reservation]], [[scope.policy]], ... sub-tables). An existing
    /// scope keeps its `interface` if FILE has none.
    Set {
        /// The scope's name (the table's `name` must be the same).
        name: String,
        /// The TOML file holding the [[scope]] table; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        file: String,
    },
    /// Remove a scope (it must be in no failover relationship).
    Remove {
        /// The scope's name.
        name: String,
    },
}

/// The settings `failover add` and `failover set` share.
#[derive(ClapArgs, Debug, Default)]
struct FailoverSettingsArgs {
    /// Mode: load-balance or hot-standby.
    #[arg(long, value_parser = ["load-balance", "hot-standby"])]
    mode: Option<String>,
    /// Load balance: the share of clients this server serves, in percent.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    percent: Option<u8>,
    /// Hot standby: this server's role, active or standby.
    #[arg(long, value_parser = ["active", "standby"])]
    standby_role: Option<String>,
    /// Hot standby: the share of free addresses the standby keeps, in percent.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    reserve: Option<u8>,
    /// Maximum client lead time, like 1h or 30m.
    #[arg(long, value_name = "DUR")]
    mclt: Option<String>,
    /// Move from COMMUNICATIONS-INTERRUPTED to PARTNER-DOWN after this long, like 1h.
    #[arg(long, value_name = "DUR")]
    switchover: Option<String>,
    /// File holding the shared secret that signs the partners' messages (absolute path).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<String>,
    /// The partner's admin endpoint, IP:PORT.
    #[arg(long, value_name = "ADDR")]
    partner_admin: Option<String>,
}

impl FailoverSettingsArgs {
    /// The body keys of the settings given.
    fn body(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("mode", self.mode.clone().map(Value::from));
        put("load_balance_percent", self.percent.map(Value::from));
        put(
            "hot_standby_role",
            self.standby_role.clone().map(Value::from),
        );
        put("reserve_percent", self.reserve.map(Value::from));
        put("mclt", self.mclt.clone().map(Value::from));
        put(
            "state_switchover_interval",
            self.switchover.clone().map(Value::from),
        );
        put(
            "shared_secret_file",
            self.secret_file.clone().map(Value::from),
        );
        put("partner_admin", self.partner_admin.clone().map(Value::from));
        m
    }
}

#[derive(Subcommand, Debug)]
enum DdnsCmd {
    /// Per scope: names published, updates done and failed by reason, the queue, and every
    /// name with pending or failed work (its last error and next try).
    Status,
}

#[derive(Subcommand, Debug)]
enum FailoverCmd {
    /// Show every relationship, or one: state and for how long, the partner's state, any MCLT
    /// wait, pools per scope, unacknowledged updates, last contact, clock skew, replication
    /// lag and alarms.
    Show {
        /// The relationship's name (all when omitted).
        name: Option<String>,
    },
    /// Create a relationship with a partner, on both servers (the partner receives the scopes'
    /// settings).
    Add {
        /// The relationship's name.
        name: String,
        /// The partner server's address.
        #[arg(long)]
        partner: Ipv4Addr,
        /// The scopes to share, comma-separated.
        #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// This server's role: primary (default) or secondary.
        #[arg(long, value_parser = ["primary", "secondary"])]
        role: Option<String>,
        /// Where this server accepts the partner's connections.
        #[arg(long)]
        listen: Option<Ipv4Addr>,
        #[command(flatten)]
        settings: FailoverSettingsArgs,
    },
    /// Change a relationship's settings, on both servers.
    Set {
        /// The relationship's name.
        name: String,
        #[command(flatten)]
        settings: FailoverSettingsArgs,
        /// Turn the automatic switchover to PARTNER-DOWN off.
        #[arg(long, conflicts_with = "switchover")]
        no_switchover: bool,
        /// Apply here even if the partner cannot be reached or refuses.
        #[arg(long)]
        force: bool,
    },
    /// Remove a relationship: this server keeps the scopes and serves them alone; the partner
    /// removes the relationship and its copies of the scopes.
    Remove {
        /// The relationship's name.
        name: String,
        /// Remove it here even if the partner cannot be reached or refuses.
        #[arg(long)]
        force: bool,
    },
    /// Copy the scopes' settings to the partner (of one relationship, or of all).
    Replicate {
        /// The relationship's name (all relationships when omitted).
        name: Option<String>,
        /// Only this scope.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Tell the server its partner is down (it serves the partner's clients at once and takes
    /// the partner's free addresses after MCLT). Only when the partner is really not serving.
    PartnerDown {
        /// The relationship's name.
        name: String,
    },
    /// Pause the relationship (stop talking to the partner, as if it were unreachable).
    Pause {
        /// The relationship's name.
        name: String,
    },
    /// Resume a paused relationship.
    Resume {
        /// The relationship's name.
        name: String,
    },
}

/// A failed command: exit code and message.
struct Fail(u8, String);

/// Where the token comes from, and the token if it could be read.
enum Auth {
    None,
    Token(String),
    /// The default file exists but cannot be read (the reason is shown if the server says 401).
    Unreadable(String),
}

fn read_token(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))
}

fn auth(args: &Args) -> Result<Auth, Fail> {
    match &args.token_file {
        Some(p) => read_token(p)
            .map(Auth::Token)
            .map_err(|e| Fail(EXIT_USAGE, e)),
        None => {
            let p = Path::new(DEFAULT_TOKEN_FILE);
            if !p.exists() {
                return Ok(Auth::None);
            }
            Ok(match read_token(p) {
                Ok(t) => Auth::Token(t),
                Err(e) => Auth::Unreadable(e),
            })
        }
    }
}

/// HTTP methods the admin API uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A request body.
enum Body {
    None,
    Json(Value),
    Toml(String),
}

/// An answer of the server: body and the `X-Total-Count` header, if any.
struct Answer {
    body: String,
    total: Option<String>,
}

/// `s` with every byte but unreserved ASCII percent-encoded, for one path segment.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The message of an error answer: the server's `error`, then any configuration `errors`, the
/// partner's error and failed `results`.
fn error_message(status: u16, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut msg = format!(
        "tandemd: {} (HTTP {status})",
        v.get("error").and_then(Value::as_str).unwrap_or("error")
    );
    for e in v
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        msg.push_str("\n  ");
        msg.push_str(e.get("text").and_then(Value::as_str).unwrap_or("?"));
    }
    if let Some(p) = v.get("partner_error").and_then(Value::as_str) {
        msg.push_str(&format!("\n  partner: {p}"));
    }
    for r in v
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            msg.push_str(&format!("\n  {}: {e}", s(r, "relationship")));
        }
    }
    msg
}

/// Where the admin endpoint is and how to speak to it, from `--admin` and the TLS options.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    base: String,
    /// HOST:PORT, for messages.
    addr: String,
    /// HTTPS.
    tls: bool,
}

/// Read `--admin` with `--tls`: the scheme of a URL decides, else `tls` (which is also set by
/// `--ca`, `--cert` and `--key`).
fn endpoint(admin: &str, tls: bool) -> Result<Endpoint, String> {
    let (scheme, rest) = match admin.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, admin),
    };
    let addr = rest.strip_suffix('/').unwrap_or(rest);
    if addr.is_empty() || addr.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "--admin {admin:?}: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT"
        ));
    }
    let tls = match scheme.as_deref() {
        None => tls,
        Some("https") => true,
        Some("http") if tls => {
            return Err(format!(
                "--admin {admin:?} is plain HTTP, but --tls, --ca, --cert or --key asks for \
                 HTTPS: use https:// (or drop those options)"
            ))
        }
        Some("http") => false,
        Some(other) => {
            return Err(format!(
                "--admin {admin:?}: unknown scheme {other:?} (use http:// or https://)"
            ))
        }
    };
    Ok(Endpoint {
        base: format!("{}://{addr}", if tls { "https" } else { "http" }),
        addr: addr.to_string(),
        tls,
    })
}

/// The ring provider, as the server uses.
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring builds with the C compiler alone; its deprecation is about post-quantum key
    // exchange, which the admin endpoint (the operator's own CA) does without for now.
    #[allow(deprecated)]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

/// The certificates of PEM file `path` (`what` names the option).
fn pem_certs(
    path: &Path,
    what: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Fail> {
    use rustls::pki_types::pem::PemObject;
    let usage = |m: String| Fail(EXIT_USAGE, m);
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| usage(format!("{what} {}: cannot read: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage(format!("{what} {}: not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(usage(format!(
            "{what} {}: holds no PEM \"BEGIN CERTIFICATE\" block",
            path.display()
        )));
    }
    Ok(certs)
}

/// The HTTP agent: plain, or HTTPS with the CA and client certificate of the options (checked
/// here, so that a bad file is a usage error with its name).
fn agent(ep: &Endpoint, args: &Args) -> Result<ureq::Agent, Fail> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let mut config = ureq::Agent::config_builder();
    if ep.tls {
        let usage = |m: String| Fail(EXIT_USAGE, m);
        let (ca_path, what) = match &args.ca {
            Some(p) => (p.clone(), "--ca"),
            None => (PathBuf::from(SYSTEM_CA_BUNDLE), "the system CA bundle"),
        };
        if args.ca.is_none() && !ca_path.exists() {
            return Err(usage(format!(
                "HTTPS needs the CA of the server's certificate: give --ca FILE \
                 ({SYSTEM_CA_BUNDLE} does not exist)"
            )));
        }
        let roots = pem_certs(&ca_path, what)?;
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots.iter().cloned());
        if added == 0 {
            return Err(usage(format!(
                "{what} {}: no usable CA certificate",
                ca_path.display()
            )));
        }
        let client = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => {
                let chain = pem_certs(cert, "--cert")?;
                let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    usage(format!(
                        "--key {}: no usable private key ({e}); expected a PEM \"PRIVATE KEY\", \
                         \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block",
                        key.display()
                    ))
                })?;
                // The same check rustls makes when connecting, made here for a clear message.
                rustls::ClientConfig::builder_with_provider(crypto_provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .and_then(|b| {
                        b.with_root_certificates(store.clone())
                            .with_client_auth_cert(chain.clone(), der.clone_key())
                    })
                    .map_err(|e| {
                        let (c, k) = (cert.display(), key.display());
                        usage(match e {
                            rustls::Error::InconsistentKeys(_) => format!(
                                "--key {k} is not the private key of the certificate in --cert {c}"
                            ),
                            e => format!("--cert {c} with --key {k}: {e}"),
                        })
                    })?;
                let pem = std::fs::read(key)
                    .map_err(|e| usage(format!("--key {}: cannot read: {e}", key.display())))?;
                let key = PrivateKey::from_pem(&pem)
                    .map_err(|e| usage(format!("--key {}: {e}", key.display())))?;
                let chain: Vec<Certificate<'static>> = chain
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect();
                Some(ClientCert::new_with_certs(&chain, key))
            }
            _ => None,
        };
        let roots: Vec<Certificate<'static>> = roots
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        config = config.tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&roots))
                .client_cert(client)
                .unversioned_rustls_crypto_provider(crypto_provider())
                .build(),
        );
    }
    Ok(config.build().new_agent())
}

/// The rustls error inside a ureq error, if it is one.
fn tls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

/// A failed exchange as the failure to report: the server refusing our certificate is an
/// authentication failure (exit 4), anything else an unreachable server (exit 3), with a hint
/// where the cause is clear.
fn transport_failure(ep: &Endpoint, with_cert: bool, e: &ureq::Error) -> Fail {
    use rustls::AlertDescription as A;
    let addr = &ep.addr;
    let Some(t) = tls_error(e) else {
        let hint = if ep.tls
            && matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof || io.kind() == std::io::ErrorKind::ConnectionReset)
        {
            " (the server closed the TLS connection: if it is plain HTTP, use http:// and drop \
             --tls/--ca/--cert/--key)"
        } else {
            ""
        };
        return Fail(
            EXIT_UNREACHABLE,
            format!("cannot reach tandemd at {addr}: {e}{hint}"),
        );
    };
    match t {
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => {
            let hint = if with_cert {
                "the server does not accept this client certificate: give --cert and --key of \
                 one issued by the CA in the server's admin_tls_client_ca_file"
            } else {
                "the server requires a client certificate: give --cert FILE --key FILE"
            };
            Fail(
                EXIT_UNAUTHORIZED,
                format!("tandemd at {addr} refused the TLS connection ({t}): {hint}"),
            )
        }
        rustls::Error::InvalidCertificate(c) => Fail(
            EXIT_UNREACHABLE,
            format!(
                "the certificate of tandemd at {addr} does not verify ({c:?}): give --ca with \
                 the CA that issued it, and an --admin host its certificate is valid for"
            ),
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => Fail(
            EXIT_UNREACHABLE,
            format!(
                "tandemd at {addr} does not speak TLS ({t}): if its admin endpoint is plain \
                 HTTP, use http:// and drop --tls/--ca/--cert/--key"
            ),
        ),
        _ => Fail(
            EXIT_UNREACHABLE,
            format!("TLS with tandemd at {addr} failed: {t}"),
        ),
    }
}

/// The connection to the admin endpoint.
struct Client {
    endpoint: Endpoint,
    agent: ureq::Agent,
    auth: Auth,
    /// A client certificate is presented.
    with_cert: bool,
}

impl Client {
    /// Send a request; the answer if the status is below 400, else the failure with its exit
    /// code.
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Answer, Fail> {
        let admin = self.endpoint.addr.as_str();
        let url = format!("{}{path}", self.endpoint.base);
        let unreachable = |e: ureq::Error| transport_failure(&self.endpoint, self.with_cert, &e);
        fn prepare<B>(
            mut req: ureq::RequestBuilder<B>,
            auth: &Auth,
            query: &[(&str, String)],
        ) -> ureq::RequestBuilder<B> {
            if let Auth::Token(t) = auth {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            for (k, v) in query {
                req = req.query(*k, v);
            }
            req.config()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
        }
        let with_body = |req: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            let req = prepare(req, &self.auth, query);
            match &body {
                Body::None => req.send_empty(),
                Body::Json(v) => req
                    .header("Content-Type", "application/json")
                    .send(v.to_string()),
                Body::Toml(t) => req.header("Content-Type", "application/toml").send(t),
            }
        };
        let a = &self.agent;
        let sent = match method {
            Method::Get => prepare(a.get(&url), &self.auth, query).call(),
            Method::Delete => prepare(a.delete(&url), &self.auth, query).call(),
            Method::Post => with_body(a.post(&url)),
            Method::Put => with_body(a.put(&url)),
            Method::Patch => with_body(a.patch(&url)),
        };
        let mut resp = sent.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let total = resp
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Lease lists of large servers run to hundreds of megabytes of JSON.
        let text = resp
            .body_mut()
            .with_config()
            .limit(4 << 30)
            .read_to_string()
            .map_err(|e| match tls_error(&e) {
                Some(_) => transport_failure(&self.endpoint, self.with_cert, &e),
                None => Fail(
                    EXIT_UNREACHABLE,
                    format!("reading the answer from {admin}: {e}"),
                ),
            })?;
        if status < 400 {
            return Ok(Answer { body: text, total });
        }
        let mut msg = error_message(status, &text);
        match status {
            401 => {
                match &self.auth {
                    Auth::None => msg.push_str(&format!(
                        "\n(no token sent: give --token-file FILE or set TANDEM_TOKEN_FILE; \
                         {DEFAULT_TOKEN_FILE} does not exist)"
                    )),
                    Auth::Unreadable(why) => msg.push_str(&format!("\n({why})")),
                    Auth::Token(_) => {}
                }
                Err(Fail(EXIT_UNAUTHORIZED, msg))
            }
            502 => Err(Fail(EXIT_PARTNER, msg)),
            _ => Err(Fail(EXIT_SERVER, msg)),
        }
    }

    /// [`Client::call`], then the answer as JSON.
    fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Value, Fail> {
        let a = self.call(method, path, query, body)?;
        json_of(&a, &self.endpoint.addr)
    }
}

fn json_of(a: &Answer, admin: &str) -> Result<Value, Fail> {
    serde_json::from_str(&a.body)
        .map_err(|e| Fail(EXIT_SERVER, format!("bad JSON from {admin}: {e}")))
}

/// `v[k]` as text: strings as they are, null or missing as `-`.
fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(x) => x.to_string(),
    }
}

/// A list of strings `v[k]`, comma-separated.
fn list(v: &Value, k: &str) -> String {
    let items: Vec<String> = v
        .get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|x| match x {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        })
        .collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// A duration in words: `4m12s`, `2h5m`, `3d4h`, `12s` (the two largest units).
fn dur(secs: u64) -> String {
    let (d, h, m, sec) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")];
    let Some(first) = parts.iter().position(|(n, _)| *n > 0) else {
        return "0s".into();
    };
    let mut out = format!("{}{}", parts[first].0, parts[first].1);
    if let Some((n, u)) = parts.get(first + 1) {
        if *n > 0 {
            out.push_str(&format!("{n}{u}"));
        }
    }
    out
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A time `v[k]` (Unix seconds) relative to now: `in 4m12s`, `3s ago`, or `-` (none or 0).
fn when(v: &Value, k: &str) -> String {
    let Some(t) = v.get(k).and_then(Value::as_u64).filter(|t| *t > 0) else {
        return "-".into();
    };
    let now = now_secs();
    if t > now {
        format!("in {}", dur(t - now))
    } else {
        format!("{} ago", dur(now - t))
    }
}

/// Seconds `v[k]` as a duration, or `-`.
fn secs(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_u64)
        .map_or_else(|| "-".into(), dur)
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Print `rows` under `headers` in aligned columns; `right[i]` right-aligns column `i`
/// (numbers). The last column is not padded.
fn print_table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = width.get(i).copied().unwrap_or(0);
            if i > 0 {
                out.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                out.push_str(&format!("{c:>w$}"));
            } else if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}"));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Print `pairs` as `key  value` lines, keys aligned.
fn print_pairs(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<w$}  {v}");
    }
}

fn print_leases(leases: &[Value]) {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                s(l, "address"),
                s(l, "state"),
                s(l, "mac"),
                when(l, "expires"),
                s(l, "scope"),
                s(l, "client_id"),
            ]
        })
        .collect();
    print_table(
        &["ADDRESS", "STATE", "MAC", "EXPIRES", "SCOPE", "CLIENT-ID"],
        &[],
        &rows,
    );
}

fn print_lease(v: &Value) {
    print_pairs(&[
        ("address", s(v, "address")),
        ("state", s(v, "state")),
        ("scope", s(v, "scope")),
        ("mac", s(v, "mac")),
        ("client_id", s(v, "client_id")),
        ("hostname", s(v, "hostname")),
        ("start", when(v, "start")),
        ("cltt", when(v, "cltt")),
        ("expires", when(v, "expires")),
    ]);
}

fn print_stats(v: &Value) {
    fn flat(prefix: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flat(&key, x);
                }
            }
            _ => println!("{prefix:<32} {v}"),
        }
    }
    flat("", v);
}

/// `tandemctl ddns status`: the totals as `key value` lines, then one row per name with work.
fn print_ddns(v: &Value) {
    let mut totals = v.clone();
    let entries = totals
        .as_object_mut()
        .and_then(|m| m.remove("entries"))
        .unwrap_or(Value::Null);
    print_stats(&totals);
    let rows: Vec<Vec<String>> = entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            [
                "addr",
                "fqdn",
                "scope",
                "state",
                "attempts",
                "next_try_in_secs",
                "last_error",
            ]
            .iter()
            .map(|k| match e.get(*k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "-".to_string(),
                Some(x) => x.to_string(),
            })
            .collect()
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print_table(
            &[
                "ADDRESS",
                "NAME",
                "SCOPE",
                "STATE",
                "TRIES",
                "NEXT(s)",
                "LAST ERROR",
            ],
            &[false, false, false, false, true, true, false],
            &rows,
        );
    }
}

fn print_status(v: &Value) {
    print_pairs(&[
        ("server_id", s(v, "server_id")),
        ("version", s(v, "version")),
        ("uptime", secs(v, "uptime_secs")),
        ("backend", s(v, "backend")),
        ("durability", s(v, "durability")),
        ("interfaces", list(v, "interfaces")),
    ]);
    println!();
    let rows: Vec<Vec<String>> = v
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|sc| {
            ["name", "subnet", "size", "free", "active"]
                .iter()
                .map(|k| s(sc, k))
                .collect()
        })
        .collect();
    print_table(
        &["SCOPE", "SUBNET", "SIZE", "FREE", "ACTIVE"],
        &[false, false, true, true, true],
        &rows,
    );
}

/// The columns of `scope list`.
const SCOPE_COLUMNS: [&str; 9] = [
    "NAME",
    "SUBNET",
    "INTERFACE",
    "RANGES",
    "LEASE",
    "RELATIONSHIP",
    "SIZE",
    "FREE",
    "ACTIVE",
];

fn scope_row(sc: &Value) -> Vec<String> {
    vec![
        s(sc, "name"),
        s(sc, "subnet"),
        s(sc, "interface"),
        list(sc, "ranges"),
        secs(sc, "lease_time_secs"),
        s(sc, "relationship"),
        s(sc, "size"),
        s(sc, "free"),
        s(sc, "active"),
    ]
}

fn print_scopes(v: &Value) {
    let rows: Vec<Vec<String>> = v
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(scope_row)
        .collect();
    print_table(
        &SCOPE_COLUMNS,
        &[false, false, false, false, false, false, true, true, true],
        &rows,
    );
}

fn print_scope(v: &Value) {
    print_pairs(&[
        ("name", s(v, "name")),
        ("subnet", s(v, "subnet")),
        ("interface", s(v, "interface")),
        ("ranges", list(v, "ranges")),
        ("lease time", secs(v, "lease_time_secs")),
        ("relationship", s(v, "relationship")),
        (
            "addresses",
            format!(
                "{} in the pool, {} free, {} active",
                s(v, "size"),
                s(v, "free"),
                s(v, "active")
            ),
        ),
    ]);
    println!();
    match v.get("config").and_then(Value::as_str) {
        Some(text) => {
            println!("# In the configuration file:");
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        None => println!("# Not in the configuration file (changed since the last reload)."),
    }
}

/// The mode of a relationship in words: `load-balance, this server 50%`,
/// `hot-standby, active, reserve 5%`.
fn mode_words(v: &Value) -> String {
    let name = v
        .get("mode_name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| s(v, "mode"));
    let mut out = name;
    if let Some(p) = v.get("load_balance_percent").and_then(Value::as_u64) {
        out.push_str(&format!(", this server {p}%"));
    }
    if let Some(r) = v.get("hot_standby_role").and_then(Value::as_str) {
        out.push_str(&format!(", {r}"));
    }
    if let Some(r) = v.get("reserve_percent").and_then(Value::as_u64) {
        out.push_str(&format!(", reserve {r}%"));
    }
    out
}

/// Time left in an MCLT wait of a relationship, if it is in one.
fn mclt_wait(v: &Value) -> String {
    let now = now_secs();
    let left = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .filter(|t| *t > 0)
            .map(|t| dur(t.saturating_sub(now)))
    };
    match (left("takeover_at"), left("recover_wait_until")) {
        (Some(t), _) => format!("the partner's addresses are taken over in {t}"),
        (None, Some(t)) => format!("RECOVER-WAIT ends in {t}"),
        (None, None) => "none".into(),
    }
}

/// Replication lag percentiles in words (`replication_lag_ms` of a relationship).
fn lag_words(lag: &Value) -> String {
    match lag.get("count").and_then(Value::as_u64) {
        Some(0) => "no acknowledged updates yet".into(),
        Some(n) => format!(
            "p50 <= {} ms, p99 <= {} ms over {n} acknowledged updates",
            s(lag, "p50_le"),
            s(lag, "p99_le")
        ),
        None => "-".into(),
    }
}

fn print_relationship(v: &Value) {
    let since = v
        .get("state_since")
        .and_then(Value::as_u64)
        .filter(|t| *t > 0)
        .map(|t| format!(" for {}", dur(now_secs().saturating_sub(t))))
        .unwrap_or_default();
    let lag = v.get("replication_lag_ms").cloned().unwrap_or(Value::Null);
    let skew = match v.get("clock_skew_secs").and_then(Value::as_i64) {
        Some(x) => format!("{x:+}s"),
        None => "within limits".into(),
    };
    let alarms = match v.get("alarms").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => list(v, "alarms"),
        Some(_) => "none".into(),
        None => "-".into(),
    };
    let partner = match v.get("partner_admin").and_then(Value::as_str) {
        Some(a) => format!("{} (admin {a})", s(v, "partner")),
        None => s(v, "partner"),
    };
    let connected = if v.get("connected").and_then(Value::as_bool) == Some(true) {
        "yes"
    } else {
        "no"
    };
    let mut pairs = vec![
        ("relationship", s(v, "name")),
        ("role", s(v, "role")),
        ("mode", mode_words(v)),
        ("partner", partner),
        ("scopes", list(v, "scopes")),
        ("state", format!("{}{since}", s(v, "state"))),
        ("partner state", s(v, "partner_state")),
        ("connected", connected.to_string()),
        ("last contact", when(v, "last_contact")),
        ("last connected", when(v, "last_connected")),
        ("mclt", secs(v, "mclt_secs")),
        ("mclt wait", mclt_wait(v)),
        (
            "switchover",
            match v.get("switchover_secs") {
                Some(Value::Null) => "off".into(),
                _ => secs(v, "switchover_secs"),
            },
        ),
        ("unacked updates", s(v, "unacked_updates")),
        (
            "worker rings",
            format!(
                "full {} times, {} updates lost",
                s(v, "ring_full"),
                s(v, "ring_lost")
            ),
        ),
        (
            "our updates",
            format!(
                "{} acked, {} refused",
                s(v, "updates_acked"),
                s(v, "updates_rejected")
            ),
        ),
        (
            "partner bindings",
            format!(
                "{} stored, {} refused",
                s(v, "partner_bindings"),
                s(v, "partner_rejected")
            ),
        ),
        ("replication lag", lag_words(&lag)),
        ("clock skew", skew),
        ("last refusal", s(v, "last_refusal")),
        ("link", tls_words(v)),
        ("alarms", alarms),
    ];
    if v.get("paused").and_then(Value::as_bool) == Some(true) {
        pairs.insert(6, ("paused", "yes (failover pause)".into()));
    }
    print_pairs(&pairs);
    let pools: Vec<Vec<String>> = v
        .get("pools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            ["scope", "free", "backup", "active", "expired", "abandoned"]
                .iter()
                .map(|k| s(p, k))
                .collect()
        })
        .collect();
    if !pools.is_empty() {
        println!();
        print_table(
            &["SCOPE", "FREE", "BACKUP", "ACTIVE", "EXPIRED", "ABANDONED"],
            &[false, true, true, true, true, true],
            &pools,
        );
    }
}

/// The partner's part of a failover change, in words.
fn partner_words(v: &Value) -> String {
    let p = v.get("partner").cloned().unwrap_or(Value::Null);
    let applied = p.get("applied").and_then(Value::as_bool);
    let msg = p.get("message").and_then(Value::as_str).unwrap_or("");
    match applied {
        Some(true) => format!("partner: applied. {msg}").trim_end().to_string(),
        Some(false) => format!("partner: NOT applied (forced here only). {msg}")
            .trim_end()
            .to_string(),
        None => "partner: -".into(),
    }
}

fn print_replicated(v: &Value) {
    println!(
        "relationship {}: scopes {} replicated; {}",
        s(v, "relationship"),
        list(v, "scopes"),
        partner_words(v)
    );
}

/// The body of `scope set`: the file, or standard input for `-`.
fn read_scope_file(file: &str) -> Result<String, Fail> {
    let mut text = String::new();
    let res = if file == "-" {
        std::io::stdin()
            .take(MAX_SCOPE_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_SCOPE_FILE + 1).read_to_string(&mut text))
    };
    let shown = if file == "-" { "standard input" } else { file };
    res.map_err(|e| Fail(EXIT_USAGE, format!("cannot read {shown}: {e}")))?;
    if text.len() as u64 > MAX_SCOPE_FILE {
        return Err(Fail(
            EXIT_USAGE,
            format!("{shown} is larger than {MAX_SCOPE_FILE} bytes"),
        ));
    }
    Ok(text)
}

/// `tandemctl import dhcpd|kea`: the exit code and what to print last.
fn run_import(cmd: &ImportCmd) -> Result<(), Fail> {
    use tandem_controlplane::import::{self, ImportError, Options, Source};
    let (source, a) = match cmd {
        ImportCmd::Dhcpd(a) => (Source::Dhcpd, a),
        ImportCmd::Kea(a) => (Source::Kea, a),
    };
    let opts = Options {
        source,
        conf: a.conf.clone(),
        leases: a.leases.clone(),
        out: a.out.clone(),
        state_dir: a.state_dir.clone(),
        strict: a.strict,
        server_id: a.server_id,
        interfaces: a.interfaces.clone(),
        dry_run: a.dry_run,
    };
    match import::run(&opts) {
        Ok(o) => {
            for i in &o.issues {
                eprintln!("{i}");
            }
            let leases: Vec<String> = o.written.iter().map(|(n, c)| format!("{c} {n}")).collect();
            println!(
                "{}{}: {} scope(s), {} reservation(s), {} policy(ies), {} failover relationship(s); {} lease entries read, {} journal records written ({}) into {}; {} thing(s) not (fully) translated{}",
                if a.dry_run { "dry run, nothing written: " } else { "" },
                a.out.display(),
                o.scopes,
                o.reservations,
                o.policies,
                o.relationships,
                o.leases_read,
                o.written.iter().map(|(_, c)| c).sum::<u64>(),
                if leases.is_empty() { "none".to_string() } else { leases.join(", ") },
                a.state_dir.display(),
                o.issues.len(),
                if o.issues.is_empty() { "" } else { " (listed on stderr)" },
            );
            Ok(())
        }
        Err(e) => {
            let code = e.exit_code();
            match &e {
                ImportError::Untranslatable(v) => {
                    for i in v {
                        eprintln!("{i}");
                    }
                }
                ImportError::Invalid(_, text, reported) => {
                    for i in reported {
                        eprintln!("{i}");
                    }
                    if !a.dry_run {
                        let mut p = a.out.as_os_str().to_owned();
                        p.push(".rejected");
                        if std::fs::write(&p, text).is_ok() {
                            eprintln!(
                                "tandemctl: the rejected configuration is in {}",
                                Path::new(&p).display()
                            );
                        }
                    }
                }
                _ => {}
            }
            Err(Fail(code, e.to_string()))
        }
    }
}

fn run(args: &Args) -> Result<(), Fail> {
    if let Cmd::Import { cmd } = &args.cmd {
        return run_import(cmd);
    }
    let tls = args.tls || args.ca.is_some() || args.cert.is_some() || args.key.is_some();
    let endpoint = endpoint(&args.admin, tls).map_err(|m| Fail(EXIT_USAGE, m))?;
    let c = Client {
        agent: agent(&endpoint, args)?,
        endpoint,
        auth: auth(args)?,
        with_cert: args.cert.is_some(),
    };
    // Print the answer's JSON with `--json`, else with `human`.
    let show = |v: &Value, human: &dyn Fn(&Value)| {
        if args.json {
            print_json(v);
        } else {
            human(v);
        }
    };
    use Method::{Delete, Get, Post, Put};
    match &args.cmd {
        Cmd::Status => show(&c.json(Get, "/v1/status", &[], Body::None)?, &print_status),
        Cmd::Stats => show(&c.json(Get, "/v1/stats", &[], Body::None)?, &print_stats),
        Cmd::Metrics => print!("{}", c.call(Get, "/metrics", &[], Body::None)?.body),
        Cmd::Ddns {
            cmd: DdnsCmd::Status,
        } => show(&c.json(Get, "/v1/ddns", &[], Body::None)?, &print_ddns),
        Cmd::Reload => show(&c.json(Post, "/v1/reload", &[], Body::None)?, &|v| {
            println!("configuration reloaded: {} scope(s)", s(v, "scopes"))
        }),
        Cmd::Lease { cmd } => match cmd {
            LeaseCmd::List {
                state,
                scope,
                limit,
                offset,
            } => {
                let mut q: Vec<(&str, String)> = Vec::new();
                if let Some(x) = state {
                    q.push(("state", x.clone()));
                }
                if let Some(x) = scope {
                    q.push(("scope", x.clone()));
                }
                if let Some(x) = limit {
                    q.push(("limit", x.to_string()));
                }
                if let Some(x) = offset {
                    q.push(("offset", x.to_string()));
                }
                let a = c.call(Get, "/v1/leases", &q, Body::None)?;
                let v = json_of(&a, &c.endpoint.addr)?;
                if args.json {
                    print_json(&v);
                } else {
                    let list = v.as_array().cloned().unwrap_or_default();
                    print_leases(&list);
                    if let Some(total) = &a.total {
                        if limit.is_some() || offset.is_some() {
                            let from = offset.unwrap_or(0);
                            println!(
                                "({} shown from offset {from}, {total} matching)",
                                list.len()
                            );
                        }
                    }
                }
            }
            LeaseCmd::Show { address } => show(
                &c.json(Get, &format!("/v1/leases/{address}"), &[], Body::None)?,
                &print_lease,
            ),
            LeaseCmd::Delete { address } => show(
                &c.json(Delete, &format!("/v1/leases/{address}"), &[], Body::None)?,
                &|v| {
                    let p = v.get("previous").cloned().unwrap_or(Value::Null);
                    println!(
                        "lease of {} deleted (it was {} for mac {}, client-id {}, expiring {})",
                        s(v, "address"),
                        s(&p, "state"),
                        s(&p, "mac"),
                        s(&p, "client_id"),
                        when(&p, "expires")
                    );
                },
            ),
        },
        Cmd::Scope { cmd } => match cmd {
            ScopeCmd::List => show(&c.json(Get, "/v1/scopes", &[], Body::None)?, &print_scopes),
            ScopeCmd::Show { name } => show(
                &c.json(
                    Get,
                    &format!("/v1/scopes/{}", segment(name)),
                    &[],
                    Body::None,
                )?,
                &print_scope,
            ),
            ScopeCmd::Set { name, file } => {
                let text = read_scope_file(file)?;
                let v = c.json(
                    Put,
                    &format!("/v1/scopes/{}", segment(name)),
                    &[],
                    Body::Toml(text),
                )?;
                show(&v, &|v| {
                    let what = if v.get("created").and_then(Value::as_bool) == Some(true) {
                        "added"
                    } else {
                        "changed"
                    };
                    println!(
                        "scope {} {what}; the configuration is applied",
                        s(v, "scope")
                    );
                });
            }
            ScopeCmd::Remove { name } => show(
                &c.json(
                    Delete,
                    &format!("/v1/scopes/{}", segment(name)),
                    &[],
                    Body::None,
                )?,
                &|v| println!("scope {} removed", s(v, "scope")),
            ),
        },
        Cmd::Failover { cmd } => run_failover(&c, args, cmd)?,
        Cmd::Import { cmd } => run_import(cmd)?,
    }
    Ok(())
}

fn run_failover(c: &Client, args: &Args, cmd: &FailoverCmd) -> Result<(), Fail> {
    use Method::{Delete, Get, Patch, Post};
    let show = |v: &Value, human: &dyn Fn(&Value)| {
        if args.json {
            print_json(v);
        } else {
            human(v);
        }
    };
    let force_query = |force: bool| {
        if force {
            vec![("force", "true".to_string())]
        } else {
            Vec::new()
        }
    };
    let rel_path = |name: &str, rest: &str| format!("/v1/failover/{}{rest}", segment(name));
    match cmd {
        FailoverCmd::Show { name } => {
            let path = match name {
                Some(n) => rel_path(n, ""),
                None => "/v1/failover".into(),
            };
            let v = c.json(Get, &path, &[], Body::None)?;
            show(&v, &|v| {
                if name.is_some() {
                    print_relationship(v);
                    return;
                }
                let rels = v
                    .get("relationships")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if rels.is_empty() {
                    println!("no failover relationships configured");
                }
                for (i, r) in rels.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print_relationship(r);
                }
            });
        }
        FailoverCmd::Add {
            name,
            partner,
            scopes,
            role,
            listen,
            settings,
        } => {
            let mut body = settings.body();
            body.insert("name".into(), json!(name));
            body.insert("partner".into(), json!(partner.to_string()));
            body.insert("scopes".into(), json!(scopes));
            if let Some(r) = role {
                body.insert("role".into(), json!(r));
            }
            if let Some(l) = listen {
                body.insert("listen".into(), json!(l.to_string()));
            }
            let v = c.json(Post, "/v1/failover", &[], Body::Json(Value::Object(body)))?;
            show(&v, &|v| {
                println!("relationship {name} added; {}", partner_words(v));
            });
        }
        FailoverCmd::Set {
            name,
            settings,
            no_switchover,
            force,
        } => {
            let mut body = settings.body();
            if *no_switchover {
                body.insert("state_switchover_interval".into(), Value::Null);
            }
            if body.is_empty() {
                return Err(Fail(
                    EXIT_USAGE,
                    "nothing to change: give at least one of --mode, --percent, --standby-role, \
                     --reserve, --mclt, --switchover, --no-switchover, --secret-file, \
                     --partner-admin"
                        .into(),
                ));
            }
            let v = c.json(
                Patch,
                &rel_path(name, ""),
                &force_query(*force),
                Body::Json(Value::Object(body)),
            )?;
            show(&v, &|v| {
                println!("relationship {name} changed; {}", partner_words(v));
            });
        }
        FailoverCmd::Remove { name, force } => {
            let v = c.json(
                Delete,
                &rel_path(name, ""),
                &force_query(*force),
                Body::None,
            )?;
            show(&v, &|v| {
                println!(
                    "relationship {} removed; this server keeps its scopes; {}",
                    s(v, "removed"),
                    partner_words(v)
                );
            });
        }
        FailoverCmd::Replicate { name, scope } => {
            let q: Vec<(&str, String)> = scope.iter().map(|x| ("scope", x.clone())).collect();
            match name {
                Some(n) => {
                    let v = c.json(Post, &rel_path(n, "/replicate"), &q, Body::None)?;
                    show(&v, &print_replicated);
                }
                None => {
                    let v = c.json(Post, "/v1/failover/replicate", &q, Body::None)?;
                    show(&v, &|v| {
                        let results = v
                            .get("results")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        if results.is_empty() {
                            println!("no failover relationships configured");
                        }
                        for r in &results {
                            print_replicated(r);
                        }
                    });
                }
            }
        }
        FailoverCmd::PartnerDown { name } => {
            let v = c.json(Post, &rel_path(name, "/partner-down"), &[], Body::None)?;
            show(&v, &|v| println!("{}", s(v, "message")));
        }
        FailoverCmd::Pause { name } => {
            let v = c.json(Post, &rel_path(name, "/pause"), &[], Body::None)?;
            show(&v, &|v| println!("{}", s(v, "message")));
        }
        FailoverCmd::Resume { name } => {
            let v = c.json(Post, &rel_path(name, "/resume"), &[], Body::None)?;
            show(&v, &|v| println!("{}", s(v, "message")));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Some(code) = tandem_controlplane::manpage::from_args(Args::command, "1") {
        return code;
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        // `import` documents exit code 1 for usage errors (2 is its parse error).
        Err(e) if e.use_stderr() && std::env::args().skip(1).any(|a| a == "import") => {
            let _ = e.print();
            return ExitCode::from(tandem_controlplane::import::EXIT_IO);
        }
        Err(e) => e.exit(),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("tandemctl: {msg}");
            ExitCode::from(code)
        }
    }
}

/// The link line of `failover show`: TLS or not, and the TLS refusals by reason.
fn tls_words(v: &Value) -> String {
    let refused: Vec<String> = v
        .get("link_refusals")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k} {}", n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let refused = if refused.is_empty() {
        String::new()
    } else {
        format!("; connections refused: {}", refused.join(", "))
    };
    if v.get("tls").and_then(Value::as_bool) != Some(true) {
        return format!("plain TCP (tls = \"off\"){refused}");
    }
    let refusals: Vec<String> = v
        .get("tls_refusals")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k} {}", n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    if refusals.is_empty() {
        format!("TLS 1.3, mutual certificates; no TLS refusals{refused}")
    } else {
        format!(
            "TLS 1.3, mutual certificates; TLS refusals: {}{refused}",
            refusals.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_two_largest_units() {
        assert_eq!(dur(0), "0s");
        assert_eq!(dur(12), "12s");
        assert_eq!(dur(252), "4m12s");
        assert_eq!(dur(3600), "1h");
        assert_eq!(dur(3600 + 5 * 60 + 7), "1h5m");
        assert_eq!(dur(3 * 86_400 + 4 * 3600 + 59), "3d4h");
        assert_eq!(dur(86_400 + 30), "1d");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("lan-1.a_b~"), "lan-1.a_b~");
        assert_eq!(segment("my lan/2"), "my%20lan%2F2");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn error_messages_carry_every_detail() {
        let m = error_message(
            422,
            r#"{"error":"bad","errors":[{"text":"t.toml:3:1: scope: x"}],"partner_error":"refused","results":[{"relationship":"a","error":"down"},{"relationship":"b"}]}"#,
        );
        assert_eq!(
            m,
            "tandemd: bad (HTTP 422)\n  t.toml:3:1: scope: x\n  partner: refused\n  a: down"
        );
        assert_eq!(error_message(500, "not json"), "tandemd: error (HTTP 500)");
    }

    #[test]
    fn admin_addresses_choose_the_scheme() {
        let ep = |a: &str, tls: bool| endpoint(a, tls).map(|e| (e.base, e.addr, e.tls));
        let plain = (
            "http://127.0.0.1:9167".to_string(),
            "127.0.0.1:9167".to_string(),
            false,
        );
        assert_eq!(ep("127.0.0.1:9167", false), Ok(plain.clone()));
        assert_eq!(ep("http://127.0.0.1:9167/", false), Ok(plain));
        let tls = (
            "https://dhcp1.example:9167".to_string(),
            "dhcp1.example:9167".to_string(),
            true,
        );
        assert_eq!(ep("dhcp1.example:9167", true), Ok(tls.clone()));
        assert_eq!(ep("HTTPS://dhcp1.example:9167", false), Ok(tls));
        assert!(ep("http://127.0.0.1:9167", true).is_err_and(|e| e.contains("https://")));
        assert!(ep("ftp://127.0.0.1:9167", false).is_err_and(|e| e.contains("scheme")));
        assert!(ep("https://h:1/v1/status", false).is_err());
        assert!(ep("", false).is_err());
        // TLS options on the command line and from the environment.
        let a = Args::try_parse_from([
            "tandemctl",
            "--admin",
            "https://h:1",
            "--ca",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "status",
        ])
        .expect("parses");
        assert_eq!(a.ca.as_deref(), Some(Path::new("ca.pem")));
        assert!(Args::try_parse_from(["tandemctl", "--cert", "c.pem", "status"]).is_err());
        assert!(Args::try_parse_from(["tandemctl", "--key", "k.pem", "status"]).is_err());
    }

    #[test]
    fn failover_settings_become_body_keys() {
        let a = FailoverSettingsArgs {
            mode: Some("hot-standby".into()),
            reserve: Some(5),
            switchover: Some("1h".into()),
            ..Default::default()
        };
        let b = a.body();
        assert_eq!(b["mode"], "hot-standby");
        assert_eq!(b["reserve_percent"], 5);
        assert_eq!(b["state_switchover_interval"], "1h");
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn the_import_command_line_parses() {
        let a = Args::try_parse_from([
            "tandemctl",
            "import",
            "kea",
            "--conf",
            "k.conf",
            "--leases",
            "k.csv",
            "--out",
            "t.toml",
            "--state-dir",
            "s",
            "--interface",
            "eth0/10.0.0.1",
            "--interface",
            "eth1",
            "--strict",
        ])
        .expect("parses");
        match a.cmd {
            Cmd::Import {
                cmd: ImportCmd::Kea(i),
            } => {
                assert_eq!(i.interfaces, ["eth0/10.0.0.1", "eth1"]);
                assert!(i.strict && !i.dry_run);
                assert_eq!(i.leases.as_deref(), Some(Path::new("k.csv")));
            }
            other => panic!("{other:?}"),
        }
        assert!(Args::try_parse_from(["tandemctl", "import", "dhcpd", "--conf", "x"]).is_err());
        assert!(Args::try_parse_from([
            "tandemctl",
            "import",
            "dhcpd",
            "--conf",
            "x",
            "--out",
            "y",
            "--state-dir",
            "z",
            "--server-id",
            "nope",
        ])
        .is_err());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let a = Args::try_parse_from([
            "tandemctl",
            "failover",
            "add",
            "pair",
            "--partner",
            "10.0.0.2",
            "--scopes",
            "lan,voice",
            "--percent",
            "60",
        ])
        .expect("parses");
        match a.cmd {
            Cmd::Failover {
                cmd: FailoverCmd::Add {
                    scopes, settings, ..
                },
            } => {
                assert_eq!(scopes, ["lan", "voice"]);
                assert_eq!(settings.percent, Some(60));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Args::try_parse_from(["tandemctl", "failover", "set", "p", "--percent", "101"])
                .is_err()
        );
        assert!(Args::try_parse_from([
            "tandemctl",
            "failover",
            "set",
            "p",
            "--switchover",
            "1h",
            "--no-switchover"
        ])
        .is_err());
        let a = Args::try_parse_from(["tandemctl", "scope", "set", "lan", "--file", "-"])
            .expect("stdin");
        assert!(matches!(a.cmd, Cmd::Scope { cmd: ScopeCmd::Set { ref file, .. } } if file == "-"));
    }
}
