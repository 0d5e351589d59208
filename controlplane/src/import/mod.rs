//! Migration from ISC dhcpd and Kea: `tandemctl import dhcpd|kea`.
//!
//! An import reads the other server's configuration (dhcpd.conf, or kea-dhcp4.conf) into a
//! [`model::Model`] of Tandem's configuration, renders it as TOML, checks the text with the same
//! validator as `tandemd --check-config` ([`crate::config::parse`]), then streams the other
//! server's lease file (dhcpd.leases, or Kea's memfile CSV) into a Tandem lease journal in the
//! state directory, so that a `tandemd` started on the result knows every client the old server
//! knew and gives each the address it had.
//!
//! Whatever cannot be translated is collected as an [`Issue`] (`FILE:LINE: directive: why`);
//! nothing is dropped without one. With [`Options::strict`] any issue fails the import and
//! nothing is written. The files are written only once everything succeeded: the journal into a
//! temporary directory first (moved into place at the end), the configuration atomically.
//!
//! Parsers: [`dhcpd`] (a tokenizer with line numbers for dhcpd's grammar, shared with
//! [`dhcpd_leases`], which streams the lease file statement by statement), [`kea`] (comments
//! stripped, then `serde_json`, with a position index for line numbers) and [`kea_leases`] (the
//! CSV, streamed line by line). All return errors for bad input; none panics.

pub mod dhcpd;
pub mod dhcpd_leases;
pub mod kea;
pub mod kea_leases;
pub mod lexer;
pub mod model;
pub mod optdefs;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tandem_dataplane::binding::{Binding, BindingState, ClientKey};
use tandem_dataplane::journal::{Journal, JournalConfig};

use model::Model;

/// Exit code: the import succeeded (issues may have been reported).
pub const EXIT_OK: u8 = 0;
/// Exit code: usage or I/O error (bad arguments, unreadable input, unwritable output).
pub const EXIT_IO: u8 = 1;
/// Exit code: an input file could not be parsed.
pub const EXIT_PARSE: u8 = 2;
/// Exit code: `--strict` and something could not be translated.
pub const EXIT_UNTRANSLATABLE: u8 = 3;
/// Exit code: the generated configuration fails Tandem's validation.
pub const EXIT_INVALID: u8 = 4;

/// Journal records written, by state name.
type Written = Vec<(&'static str, u64)>;

/// Lease records written between two journal commits.
const COMMIT_EVERY: u64 = 65_536;

/// Which server the files come from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// ISC dhcpd 4.x: dhcpd.conf and dhcpd.leases.
    Dhcpd,
    /// Kea 2.x: kea-dhcp4.conf (JSON with comments) and the memfile kea-leases4.csv.
    Kea,
}

/// One thing that could not be translated (or was translated with a difference worth knowing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The input file.
    pub file: String,
    /// Line in it, from 1 (0: the whole file).
    pub line: usize,
    /// The directive, as the source names it.
    pub directive: String,
    /// Why it is not (fully) translated.
    pub why: String,
}

impl fmt::Display for Issue {
    /// `FILE:LINE: directive: why`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.directive, self.why
        )
    }
}

/// The issues of one import, in the order found; issues of the same kind in a lease file are
/// reported once, with how many entries had them.
#[derive(Clone, Debug, Default)]
pub struct Issues {
    list: Vec<Issue>,
    counts: Vec<u64>,
    grouped: HashMap<String, usize>,
}

impl Issues {
    /// No issues.
    pub fn new() -> Issues {
        Issues::default()
    }

    /// Record an issue.
    pub fn add(
        &mut self,
        file: &str,
        line: usize,
        directive: impl Into<String>,
        why: impl Into<String>,
    ) {
        self.list.push(Issue {
            file: file.to_string(),
            line,
            directive: directive.into(),
            why: why.into(),
        });
        self.counts.push(1);
    }

    /// Record an issue of kind `group`: only the first of a kind is listed, with a count.
    pub fn add_grouped(
        &mut self,
        group: &str,
        file: &str,
        line: usize,
        directive: impl Into<String>,
        why: impl Into<String>,
    ) {
        if let Some(&i) = self.grouped.get(group) {
            self.counts[i] += 1;
            return;
        }
        self.grouped.insert(group.to_string(), self.list.len());
        self.add(file, line, directive, why);
    }

    /// True if nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many issues (a group counts once).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The issues as reported, by file (in the order the files were read) and line; grouped
    /// ones say how many entries they stand for.
    pub fn finish(self) -> Vec<Issue> {
        let mut files: Vec<String> = Vec::new();
        for i in &self.list {
            if !files.contains(&i.file) {
                files.push(i.file.clone());
            }
        }
        let mut v: Vec<(Issue, u64)> = self.list.into_iter().zip(self.counts).collect();
        v.sort_by_key(|(i, _)| (files.iter().position(|f| *f == i.file), i.line));
        v.into_iter()
            .map(|(mut i, n)| {
                if n > 1 {
                    i.why = format!("{} ({n} entries; the first is shown)", i.why);
                }
                i
            })
            .collect()
    }

    /// True if some issue's directive is `d` (for tests).
    pub fn has(&self, d: &str) -> bool {
        self.list.iter().any(|i| i.directive == d)
    }
}

/// Why an import failed.
#[derive(Debug)]
pub enum ImportError {
    /// Bad arguments or an I/O failure (exit 1).
    Io(String),
    /// An input file could not be parsed: `FILE:LINE: message` (exit 2).
    Parse(String),
    /// `--strict` and these could not be translated (exit 3).
    Untranslatable(Vec<Issue>),
    /// The generated configuration is invalid: the validator's errors, the text, and what was
    /// reported while translating (exit 4).
    Invalid(crate::config::ConfigErrors, String, Vec<Issue>),
}

impl ImportError {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            ImportError::Io(_) => EXIT_IO,
            ImportError::Parse(_) => EXIT_PARSE,
            ImportError::Untranslatable(_) => EXIT_UNTRANSLATABLE,
            ImportError::Invalid(..) => EXIT_INVALID,
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io(m) | ImportError::Parse(m) => f.write_str(m),
            ImportError::Untranslatable(v) => write!(
                f,
                "--strict: {} thing(s) cannot be translated; nothing was written",
                v.len()
            ),
            ImportError::Invalid(e, ..) => write!(
                f,
                "the generated configuration fails validation (a bug in the importer, or an \
                 input Tandem cannot serve):\n{e}"
            ),
        }
    }
}

impl std::error::Error for ImportError {}

/// A parse error at `file:line`.
pub(crate) fn parse_err(file: &str, line: usize, m: impl fmt::Display) -> ImportError {
    ImportError::Parse(format!("{file}:{line}: {m}"))
}

/// What to import and where to.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the files come from.
    pub source: Source,
    /// The configuration file.
    pub conf: PathBuf,
    /// The lease file (none: configuration only).
    pub leases: Option<PathBuf>,
    /// The Tandem configuration to write.
    pub out: PathBuf,
    /// The state directory for the journal (becomes `server.state_dir`).
    pub state_dir: PathBuf,
    /// Fail on any untranslatable directive.
    pub strict: bool,
    /// `server.server_id` (else from the source, else the first interface address).
    pub server_id: Option<Ipv4Addr>,
    /// Interfaces as `NAME` or `NAME/ADDRESS` (this server's address on it).
    pub interfaces: Vec<String>,
    /// Check and report, write nothing.
    pub dry_run: bool,
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Everything not (fully) translated.
    pub issues: Vec<Issue>,
    /// The TOML written.
    pub toml: String,
    /// Scopes, reservations, policies and relationships written.
    pub scopes: usize,
    /// Reservations written.
    pub reservations: usize,
    /// Policies written.
    pub policies: usize,
    /// Relationships written.
    pub relationships: usize,
    /// Lease entries read from the lease file.
    pub leases_read: u64,
    /// Journal records written, by Tandem state name.
    pub written: Vec<(&'static str, u64)>,
}

/// A lease as read from either lease file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub addr: Option<Ipv4Addr>,
    /// Its state.
    pub state: Option<BindingState>,
    /// Option 61 of the client.
    pub client_id: Option<Vec<u8>>,
    /// Hardware type and address.
    pub hw: Option<(u8, Vec<u8>)>,
    /// Start time.
    pub start: u32,
    /// End time.
    pub expires: u32,
    /// Client last transaction time.
    pub cltt: u32,
    /// Expiry sent to the failover partner.
    pub tstp: u32,
    /// Expiry the partner acknowledged.
    pub tsfp: u32,
    /// Line where the entry starts.
    pub line: usize,
}

/// Streams leases into a journal, against the scopes of the imported configuration.
pub struct LeaseSink<'a> {
    journal: Journal,
    model: &'a Model,
    failover_scopes: Vec<bool>,
    pending: u64,
    written: [u64; 9],
    /// Entries read.
    pub read: u64,
}

impl<'a> LeaseSink<'a> {
    /// A sink writing a fresh journal (worker 0) in `dir`.
    pub fn open(dir: &Path, model: &'a Model) -> Result<LeaseSink<'a>, ImportError> {
        let cfg = JournalConfig::new(dir, 0);
        let (journal, rec) = Journal::open(cfg).map_err(|e| {
            ImportError::Io(format!(
                "cannot create a lease journal in {}: {e}",
                dir.display()
            ))
        })?;
        if !rec.bindings.is_empty() {
            return Err(ImportError::Io(format!(
                "{} already holds a journal with {} bindings",
                dir.display(),
                rec.bindings.len()
            )));
        }
        let failover_scopes = model
            .scopes
            .iter()
            .map(|s| model.failover.iter().any(|f| f.scopes.contains(&s.name)))
            .collect();
        Ok(LeaseSink {
            journal,
            model,
            failover_scopes,
            pending: 0,
            written: [0; 9],
            read: 0,
        })
    }

    /// Write one lease (the journal's last record per address wins, as the lease files' last
    /// entry does), or report why it is not written.
    pub fn put(&mut self, l: &Lease, file: &str, issues: &mut Issues) -> Result<(), ImportError> {
        self.read += 1;
        let (Some(addr), Some(mut state)) = (l.addr, l.state) else {
            issues.add_grouped(
                "lease-incomplete",
                file,
                l.line,
                "lease",
                "entry without an address or binding state: not imported",
            );
            return Ok(());
        };
        let Some(si) = self.model.scope_of(addr) else {
            issues.add_grouped(
                "lease-outside",
                file,
                l.line,
                "lease",
                format!("{addr} is in no imported subnet: not imported"),
            );
            return Ok(());
        };
        let in_failover = self.failover_scopes[si];
        if state == BindingState::Backup && !in_failover {
            state = BindingState::Free;
        }
        let mut b = Binding::empty(addr, state);
        if let Some((htype, hw)) = &l.hw {
            let n = hw.len().min(16);
            b.htype = *htype;
            b.hlen = n as u8;
            b.chaddr[..n].copy_from_slice(&hw[..n]);
        }
        match (&l.client_id, &l.hw) {
            (Some(id), _) if !id.is_empty() => {
                b.client = ClientKey::new(id);
                b.client_id = true;
            }
            (_, Some((htype, hw))) if !hw.is_empty() => {
                b.client = ClientKey::from_hw(*htype, hw);
            }
            _ => {}
        }
        if b.client.is_empty() && matches!(state, BindingState::Free | BindingState::Backup) {
            if !in_failover {
                // A free address nobody held: Tandem's pools start that way.
                return Ok(());
            }
        } else if b.client.is_empty() && state == BindingState::Active {
            issues.add_grouped(
                "lease-noclient",
                file,
                l.line,
                "lease",
                format!("active lease of {addr} names no client (no uid, no hardware): imported as expired"),
            );
            b.state = BindingState::Expired;
        }
        b.start = l.start;
        b.expires = l.expires;
        b.cltt = l.cltt;
        if in_failover {
            b.sent_expiry = l.tstp;
            b.acked_expiry = l.tsfp;
        }
        self.journal
            .append(&b)
            .map_err(|e| ImportError::Io(format!("journal: {e}")))?;
        self.written[usize::from(b.state as u8)] += 1;
        self.pending += 1;
        if self.pending >= COMMIT_EVERY {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), ImportError> {
        self.pending = 0;
        self.journal
            .commit()
            .map(|_| ())
            .map_err(|e| ImportError::Io(format!("journal commit: {e}")))
    }

    /// Commit what is left; the records written, by state name.
    pub fn finish(mut self) -> Result<Vec<(&'static str, u64)>, ImportError> {
        self.commit()?;
        Ok(self
            .written
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .filter_map(|(i, c)| {
                let state = BindingState::from_u8(u8::try_from(i).ok()?)?;
                Some((crate::admin::state_name(state), *c))
            })
            .collect())
    }
}

/// The source's view of the configuration, before the command line's settings are applied.
pub struct Parsed {
    /// The model.
    pub model: Model,
    /// For each scope, the shared network it belongs to (dhcpd shared-network, Kea
    /// shared-networks).
    pub shared: Vec<Option<String>>,
}

/// Apply `--server-id` and `--interface` to the model.
pub(crate) fn apply_server(p: &mut Parsed, opts: &Options) -> Result<(), ImportError> {
    let mut ifaces: Vec<(String, Option<Ipv4Addr>)> = Vec::new();
    for spec in &opts.interfaces {
        let (name, addr) = match spec.split_once('/') {
            Some((n, a)) => {
                let a: Ipv4Addr = a.parse().map_err(|_| {
                    ImportError::Io(format!(
                        "--interface {spec}: `{a}` is not an IPv4 address (write NAME or NAME/ADDRESS)"
                    ))
                })?;
                (n.to_string(), Some(a))
            }
            None => (spec.clone(), None),
        };
        if name.is_empty() {
            return Err(ImportError::Io(format!(
                "--interface {spec}: no interface name"
            )));
        }
        ifaces.push((name, addr));
    }
    if !ifaces.is_empty() {
        p.model.interfaces = ifaces.iter().map(|(n, _)| n.clone()).collect();
        p.model.interfaces.dedup();
    }
    if let Some(a) = opts.server_id {
        p.model.server_id = Some(a);
    }
    if p.model.server_id.is_none() {
        p.model.server_id = ifaces.iter().find_map(|(_, a)| *a);
    }
    let Some(server_id) = p.model.server_id else {
        return Err(ImportError::Io(
            "cannot tell this server's address from the files: give --server-id ADDRESS or \
             --interface NAME/ADDRESS"
                .into(),
        ));
    };
    if p.model.interfaces.is_empty() {
        return Err(ImportError::Io(
            "no interface to serve on: give --interface NAME (or NAME/ADDRESS; repeatable)".into(),
        ));
    }
    // The server's own address is never handed out (Tandem refuses a range holding it).
    for s in &mut p.model.scopes {
        let inside = s.ranges.iter().any(|(a, b)| (*a..=*b).contains(&server_id));
        if inside && !s.exclusions.contains(&server_id) {
            s.exclusions.push(server_id);
            s.comments.push(format!(
                "{server_id}, this server's address, is excluded from the ranges"
            ));
        }
    }
    // Scopes of directly attached clients: the subnet holding the interface's address, with
    // the rest of its shared network.
    let explicit: Vec<(String, Ipv4Addr)> = if ifaces.iter().any(|(_, a)| a.is_some()) {
        ifaces
            .iter()
            .filter_map(|(n, a)| a.map(|a| (n.clone(), a)))
            .collect()
    } else if p.model.interfaces.len() == 1 {
        vec![(p.model.interfaces[0].clone(), server_id)]
    } else {
        Vec::new()
    };
    for (name, addr) in explicit {
        let Some(si) = p.model.scope_of(addr) else {
            continue;
        };
        let group = p.shared[si].clone();
        for (i, s) in p.model.scopes.iter_mut().enumerate() {
            let same = i == si || (group.is_some() && p.shared[i] == group);
            if same && s.interface.is_none() {
                s.interface = Some(name.clone());
            }
        }
    }
    Ok(())
}

/// Make `p` absolute against the current directory.
fn absolute(p: &Path) -> Result<PathBuf, ImportError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .map_err(|e| ImportError::Io(format!("cannot find the current directory: {e}")))
}

/// Parse the configuration of `opts.source`, apply the command line, render and validate.
pub fn translate(opts: &Options, issues: &mut Issues) -> Result<(Model, String), ImportError> {
    let origin = opts.conf.display().to_string();
    let text = std::fs::read(&opts.conf)
        .map_err(|e| ImportError::Io(format!("{origin}: cannot read: {e}")))?;
    let mut parsed = match opts.source {
        Source::Dhcpd => dhcpd::parse_conf(&text, &opts.conf, issues)?,
        Source::Kea => {
            let text = String::from_utf8(text)
                .map_err(|e| parse_err(&origin, 0, format!("not UTF-8 ({e})")))?;
            kea::parse_conf(&text, &origin, issues)?
        }
    };
    parsed.model.state_dir = absolute(&opts.state_dir)?;
    apply_server(&mut parsed, opts)?;
    let text = parsed.model.to_toml();
    let out = opts.out.display().to_string();
    if let Err(e) = crate::config::parse(&text, &out) {
        let reported = std::mem::take(issues).finish();
        return Err(ImportError::Invalid(e, text, reported));
    }
    Ok((parsed.model, text))
}

fn journal_files(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ImportError::Io(format!(
                "{}: cannot list: {e}",
                dir.display()
            )))
        }
    };
    let mut v = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with("worker-") && (n.ends_with(".log") || n.ends_with(".snap")) {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

/// Run a whole import: translate, check, stream the leases, write.
pub fn run(opts: &Options) -> Result<Outcome, ImportError> {
    let mut issues = Issues::new();
    let (model, toml) = translate(opts, &mut issues)?;
    let state_dir = model.state_dir.clone();
    if !journal_files(&state_dir)?.is_empty() {
        return Err(ImportError::Io(format!(
            "{} already holds a Tandem lease journal; import into an empty state directory",
            state_dir.display()
        )));
    }
    let mut out = Outcome {
        scopes: model.scopes.len(),
        reservations: model.scopes.iter().map(|s| s.reservations.len()).sum(),
        policies: model.scopes.iter().map(|s| s.policies.len()).sum(),
        relationships: model.failover.len(),
        ..Outcome::default()
    };
    let tmp = state_dir.join(".tandem-import.tmp");
    if let Some(leases) = &opts.leases {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| ImportError::Io(format!("{}: cannot remove: {e}", tmp.display())))?;
        }
        std::fs::create_dir_all(&tmp)
            .map_err(|e| ImportError::Io(format!("{}: cannot create: {e}", tmp.display())))?;
        let r = stream_leases(opts.source, leases, &tmp, &model, &mut issues);
        match r {
            Ok((read, written)) => {
                out.leases_read = read;
                out.written = written;
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        }
    }
    let issues = issues.finish();
    if opts.strict && !issues.is_empty() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ImportError::Untranslatable(issues));
    }
    if opts.dry_run {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        if opts.leases.is_some() {
            for f in journal_files(&tmp)? {
                let to = state_dir.join(f.file_name().unwrap_or_default());
                std::fs::rename(&f, &to).map_err(|e| {
                    ImportError::Io(format!(
                        "cannot move {} to {}: {e}",
                        f.display(),
                        to.display()
                    ))
                })?;
            }
            let _ = std::fs::remove_dir_all(&tmp);
        }
        write_atomic(&opts.out, &toml)?;
    }
    out.issues = issues;
    out.toml = toml;
    Ok(out)
}

fn stream_leases(
    source: Source,
    leases: &Path,
    dir: &Path,
    model: &Model,
    issues: &mut Issues,
) -> Result<(u64, Written), ImportError> {
    let origin = leases.display().to_string();
    let f = std::fs::File::open(leases)
        .map_err(|e| ImportError::Io(format!("{origin}: cannot read: {e}")))?;
    let r = std::io::BufReader::with_capacity(1 << 16, f);
    let mut sink = LeaseSink::open(dir, model)?;
    match source {
        Source::Dhcpd => dhcpd_leases::stream(r, &origin, &mut sink, issues)?,
        Source::Kea => kea_leases::stream(r, &origin, &mut sink, issues)?,
    }
    let read = sink.read;
    Ok((read, sink.finish()?))
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ImportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .map_err(|e| ImportError::Io(format!("{}: cannot write: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| ImportError::Io(format!("{}: cannot write: {e}", path.display())))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
