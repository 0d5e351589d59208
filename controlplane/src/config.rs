//! Configuration: one TOML file to validated [`ServerSettings`], the failover relationships, and
//! the daemon's own settings.
//!
//! [`parse`] reads the text into a spanned TOML tree (keeping every key's and value's byte
//! position), walks it table by table, and collects *every* mistake it finds as a
//! [`ConfigError`] carrying the file, line, column, dotted key path and a precise message: unknown
//! keys (with a "did you mean" suggestion), wrong types, bad addresses, subnets with host bits set,
//! ranges outside their subnet or overlapping (within or across scopes), exclusions outside the
//! ranges, duplicate reservations, bad option values, bad durations, T1/T2 ordering, policy ranges
//! outside the scope, failover relationships naming unknown or shared scopes, and so on. TOML
//! syntax errors stop the walk (the tree is not trustworthy after them), but all of them are
//! reported together.
//!
//! Parsing reads a few other files: a relationship's `shared_secret_file`, and TLS certificates
//! and keys (a relationship's `tls_*_file`, the admin endpoint's `admin_tls_*_file`).
//!
//! Option values are encoded into wire form here (RFC 2132 and friends), so the engine only ever
//! sees [`tandem_dataplane::scope::OptionSet`]s of ready bytes.
//!
//! The file format is documented key by key in `docs/config.md`; `deploy/tandem.example.toml` is a
//! commented example.

mod admin_tls;
mod dataplane;
mod ddns;
pub mod edit;
mod failover;
mod keys;
mod options;
mod reader;
mod schema;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use dataplane::{Backend, DataplaneSettings, XdpModeSetting};
pub use ddns::DdnsSettings;
pub(crate) use failover::{read_secret_file, relationship_name};
pub use failover::{FailoverSettings, DEFAULT_FAILOVER_PORT};
pub use tandem_dataplane::scope::Durability;
use tandem_dataplane::scope::ServerSettings;

/// Largest configuration file [`load`] accepts, in bytes.
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// A validated configuration: what the engine serves and how the daemon runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Scopes, options, policies and server-wide engine settings.
    pub settings: ServerSettings,
    /// Settings of the daemon process itself (paths, sockets, threads, logging).
    pub daemon: DaemonSettings,
    /// Per scope, in the order of `settings.scopes`: the interface whose directly attached clients
    /// the scope serves, if the scope names one.
    pub scope_interfaces: Vec<Option<String>>,
    /// The packet backend and its sizes, from the optional `[dataplane]` table.
    pub dataplane: DataplaneSettings,
    /// The failover relationships, from `[[failover]]` in file order (empty: a server on its own).
    pub failover: Vec<FailoverSettings>,
    /// Dynamic DNS settings of the scopes named in `[[ddns]]`, one per scope.
    pub ddns: Vec<DdnsSettings>,
}

/// How the daemon formats its log lines.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the `tandemd` process, from the `[server]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Directory of the lease journal, snapshots and failover state (default `/var/lib/tandem`).
    pub state_dir: PathBuf,
    /// Durability of the lease journal (default [`Durability::Sync`]).
    pub durability: Durability,
    /// Address of the local admin HTTP endpoint (default `127.0.0.1:9167`).
    pub admin_listen: SocketAddr,
    /// File holding the admin API's bearer token (`admin_token_file`); `None` leaves the API
    /// unauthenticated, which the loader allows only on a loopback `admin_listen`.
    pub admin_token_file: Option<PathBuf>,
    /// File holding a read-only bearer token (`admin_readonly_token_file`): it may read
    /// (GET) every route but change nothing. Needs `admin_token_file` beside it.
    pub admin_readonly_token_file: Option<PathBuf>,
    /// TLS on the admin endpoint (`admin_tls = "required"` with `admin_tls_cert_file`,
    /// `admin_tls_key_file`, and optionally `admin_tls_client_ca_file` and
    /// `admin_tls_readonly_names`); `None` (`admin_tls = "off"`, the default): plain HTTP. The
    /// files were read and checked when the configuration was loaded.
    pub admin_tls: Option<crate::admin::tls::AdminTlsSettings>,
    /// Interfaces to serve on (the UDP backend binds one socket per interface); never empty.
    pub interfaces: Vec<String>,
    /// UDP port the server listens on (default 67).
    pub server_port: u16,
    /// UDP port replies to directly attached clients go to (default 68).
    pub client_port: u16,
    /// Number of worker threads, 1..=256 (default 1).
    pub workers: usize,
    /// Packets a worker handles per batch (default 64).
    pub batch_size: usize,
    /// Log line format (default [`LogFormat::Text`]).
    pub log_format: LogFormat,
    /// Journal records after which a snapshot compacts the journal (default 1 000 000).
    pub compact_after_records: u64,
    /// Hostile-input screening of DHCP requests (`strict_client_identity`,
    /// `discover_rate_limit`, `relay_circuit_rate_limit`, `trusted_relays`).
    pub hardening: tandem_dataplane::engine::Hardening,
}

/// One mistake in a configuration file, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File name (or other origin) of the configuration text.
    pub origin: String,
    /// Line, from 1; 0 when the error concerns the whole file (for example, it cannot be read).
    pub line: usize,
    /// Column in characters, from 1; 0 when `line` is 0.
    pub column: usize,
    /// Dotted key path, like `scope."lan".ranges[0]` (array indices count from 0); empty when the
    /// error concerns no particular key.
    pub key: String,
    /// What is wrong, and where useful how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE:COL: KEY: MESSAGE`; without position (`line` 0) `FILE: KEY: MESSAGE`; the
    /// `KEY: ` part is left out when `key` is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in a configuration, sorted by position in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parse and validate configuration `text`; `origin` (usually the file name) prefixes messages.
///
/// Returns every error found: all TOML syntax errors if there are any, else every semantic one.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let mut ctx = reader::Ctx::new(origin, text);
    let (root, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            let at = e.span().map(|s| s.start).unwrap_or(0);
            let key = reader::enclosing_header(text, at);
            ctx.error(at..at, key, e.message().trim_end().to_string());
        }
        return Err(ctx.finish());
    }
    let draft = schema::read_document(&mut ctx, root.get_ref());
    match validate::build(&mut ctx, draft) {
        Some(config) if ctx.errors.is_empty() => Ok(config),
        _ => Err(ctx.finish()),
    }
}

/// Read the file at `path` and [`parse`] it, with the path as origin.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let whole_file = |message: String| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| whole_file(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(whole_file(format!(
            "file is {} bytes, larger than the {MAX_FILE_SIZE}-byte limit",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| whole_file(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        whole_file(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse(&text, &origin)
}
