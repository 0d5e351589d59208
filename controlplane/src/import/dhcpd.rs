//! ISC dhcpd's `dhcpd.conf` to Tandem's configuration.
//!
//! Translated: `subnet` (with `range` and `pool`), `shared-network` (each subnet a scope, all on
//! the shared network's interface), `group`, `host` (`hardware ethernet` or
//! `dhcp-client-identifier` with `fixed-address` → reservations, with their options and
//! `host-name`; `use-host-decl-names`), `option NAME VALUE` by name and `option NAME code N =
//! TYPE` definitions, `default-lease-time` / `max-lease-time` / `min-lease-time`,
//! `dhcp-renewal-time` / `dhcp-rebinding-time` / `dhcp-lease-time` options, `authoritative`,
//! `server-identifier`, `local-port` / `remote-port`, `class` with `match if` on the vendor
//! class, user class, client id, hardware address or relay agent sub-options (and `subclass`
//! lists) → policies, pools' `allow`/`deny members of` → policy ranges, `failover peer` (role,
//! addresses and ports, mclt, split or hba, max-response-delay, max-unacked-updates,
//! auto-partner-down) → `[[failover]]`, and `include`. Everything else is reported.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::lexer::{Lexer, Stmt, Tok, Token};
use super::model::{
    in_subnet, is_domain, mask, set_opt, Cond, Failover, FoMode, Model, Opt, OptValue, Policy,
    ResKey, Reservation, Scope,
};
use super::optdefs::{self, Def, Defs, Item};
use super::{parse_err, ImportError, Issues, Parsed};

/// dhcpd's default `default-lease-time` (12 hours).
pub const DHCPD_DEFAULT_LEASE: u32 = 43_200;
/// Deepest chain of `include`s followed.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Inherited parameters of a level of the declaration tree.
#[derive(Clone, Debug, Default)]
struct Params {
    options: Vec<Opt>,
    default_lease: Option<(u32, usize)>,
    max_lease: Option<(u32, usize)>,
    min_lease: Option<(u32, usize)>,
    authoritative: bool,
    use_host_decl_names: bool,
    failover_peer: Option<(String, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Global,
    Shared,
    Subnet,
    Pool,
    Group,
    Host,
    Class,
}

#[derive(Debug)]
enum Permit {
    Members(String, bool),
}

#[derive(Debug)]
struct PoolDecl {
    file: String,
    line: usize,
    scope: Option<usize>,
    ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    permits: Vec<Permit>,
    options: Vec<Opt>,
    lease_time: Option<u32>,
}

#[derive(Debug, Default)]
struct HostDecl {
    name: String,
    file: String,
    line: usize,
    mac: Option<[u8; 6]>,
    client_id: Option<Vec<u8>>,
    fixed: Vec<Ipv4Addr>,
    options: Vec<Opt>,
    use_host_decl_names: bool,
}

#[derive(Debug, Default)]
struct ClassDecl {
    name: String,
    file: String,
    line: usize,
    any: bool,
    conds: Vec<Cond>,
    /// `match <expr>;` for subclasses: the criterion and how a subclass value maps to it.
    spawn: Option<(&'static str, bool)>,
    /// The class could not be expressed (already reported).
    bad: bool,
    options: Vec<Opt>,
    lease_time: Option<u32>,
    used: bool,
}

#[derive(Debug, Default)]
struct PeerDecl {
    name: String,
    file: String,
    line: usize,
    stmts: Vec<Stmt>,
}

struct Conv<'a> {
    issues: &'a mut Issues,
    defs: Defs,
    model: Model,
    shared: Vec<Option<String>>,
    scope_eff: Vec<Vec<Opt>>,
    scope_at: Vec<(String, usize)>,
    global_opts: Vec<Opt>,
    pools: Vec<PoolDecl>,
    shared_pools: Vec<(PoolDecl, String)>,
    hosts: Vec<HostDecl>,
    classes: Vec<ClassDecl>,
    peers: Vec<PeerDecl>,
    peer_scopes: HashMap<String, Vec<usize>>,
    include_depth: usize,
    follow_includes: bool,
    dir: PathBuf,
}

/// Parse `dhcpd.conf` (its bytes, read from `path`) into a model; untranslatable directives go
/// to `issues`.
pub fn parse_conf(text: &[u8], path: &Path, issues: &mut Issues) -> Result<Parsed, ImportError> {
    parse(text, path, issues, true)
}

/// [`parse_conf`] without reading any other file: `include` statements are reported, not
/// followed (for fuzzing, and for checking a file on its own).
pub fn parse_conf_alone(
    text: &[u8],
    path: &Path,
    issues: &mut Issues,
) -> Result<Parsed, ImportError> {
    parse(text, path, issues, false)
}

fn parse(
    text: &[u8],
    path: &Path,
    issues: &mut Issues,
    follow_includes: bool,
) -> Result<Parsed, ImportError> {
    let file = path.display().to_string();
    let stmts = Lexer::new(text, &file).all()?;
    let mut c = Conv {
        issues,
        defs: Defs::new(),
        model: Model::default(),
        shared: Vec::new(),
        scope_eff: Vec::new(),
        scope_at: Vec::new(),
        global_opts: Vec::new(),
        pools: Vec::new(),
        shared_pools: Vec::new(),
        hosts: Vec::new(),
        classes: Vec::new(),
        peers: Vec::new(),
        peer_scopes: HashMap::new(),
        include_depth: 0,
        follow_includes,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    // Option definitions and includes first: values anywhere may use them.
    let stmts = c.expand(&file, stmts)?;
    for (f, s) in &stmts {
        if s.w(0) == "option" && s.w(2) == "code" {
            c.define(f, s);
        }
    }
    let global = c.params(&stmts, &Params::default(), Level::Global);
    c.global_opts = global.options.clone();
    c.model.options = global.options.clone();
    c.decls(&stmts, &global, Level::Global, None, None)?;
    c.finish_shared_pools();
    c.finish_pools();
    c.finish_classes();
    c.finish_hosts();
    c.finish_peers();
    c.finish_scopes();
    c.model.header = vec![
        format!("Imported from ISC dhcpd's {file} by `tandemctl import dhcpd`."),
        "Check it with `tandemd --check-config FILE`; see docs/config.md for every key.".into(),
    ];
    Ok(Parsed {
        model: c.model,
        shared: c.shared,
    })
}

/// A statement with the file it came from.
type Fs = (String, Stmt);

fn ipv4(t: Option<&Token>) -> Option<Ipv4Addr> {
    match &t?.tok {
        Tok::Word(w) => w.parse().ok(),
        _ => None,
    }
}

fn number(t: Option<&Token>) -> Option<u64> {
    match &t?.tok {
        Tok::Word(w) => w.parse().ok(),
        _ => None,
    }
}

fn text(t: Option<&Token>) -> Option<String> {
    match &t?.tok {
        Tok::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Tok::Word(w) => Some(w.clone()),
        Tok::Punct(_) => None,
    }
}

/// A Tandem matcher value for bytes compared as text.
fn text_matcher(b: &[u8], prefix: bool) -> String {
    let s = String::from_utf8_lossy(b);
    let printable = !b.is_empty()
        && std::str::from_utf8(b).is_ok()
        && !s.chars().any(|c| c.is_control() || c == '*');
    let mut v = if printable {
        if s.starts_with("hex:") || s.starts_with("text:") {
            format!("text:{s}")
        } else {
            s.into_owned()
        }
    } else {
        format!("hex:{}", super::model::hex_colon(b))
    };
    if prefix {
        v.push('*');
    }
    v
}

fn hex_matcher(b: &[u8], prefix: bool) -> String {
    let mut v = super::model::hex_colon(b);
    if prefix {
        v.push_str(":*");
    }
    v
}

/// Bytes of a hex word or a quoted string.
fn bytes_of(t: &Token) -> Option<Vec<u8>> {
    match &t.tok {
        Tok::Str(b) => Some(b.clone()),
        Tok::Word(w) => optdefs::hex_bytes(w).ok(),
        Tok::Punct(_) => None,
    }
}

/// Criterion of `option NAME` in a class expression (name as written), and whether its values
/// are hex bytes.
fn criterion_of(name: &str) -> Option<(&'static str, bool)> {
    Some(match name {
        "vendor-class-identifier" => ("vendor_class", false),
        "user-class" => ("user_class", false),
        "dhcp-client-identifier" => ("client_id", true),
        "agent.circuit-id" => ("circuit_id", false),
        "agent.remote-id" => ("remote_id", false),
        _ => return None,
    })
}

/// What an expression's left side looks at.
#[derive(Debug, PartialEq, Eq)]
enum Lhs {
    Option(&'static str, bool),
    Hardware,
}

/// Parse `lhs` at `w[i..]`: `option NAME`, `hardware`, or `substring(lhs, OFF, LEN)`; returns
/// the left side, the substring (offset, length) and the index after it.
/// A parsed left side: what it looks at, its substring, the index after it.
type ParsedLhs = (Lhs, Option<(u64, u64)>, usize);

fn parse_lhs(w: &[Token], i: usize) -> Result<ParsedLhs, String> {
    parse_lhs_in(w, i, false)
}

fn parse_lhs_in(w: &[Token], i: usize, inner: bool) -> Result<ParsedLhs, String> {
    let word = |k: usize| w.get(k).and_then(Token::word).unwrap_or_default();
    match word(i).as_str() {
        "option" => {
            let n = word(i + 1);
            criterion_of(&n)
                .map(|(c, hex)| (Lhs::Option(c, hex), None, i + 2))
                .ok_or_else(|| format!("`option {n}` is not a criterion Tandem policies test"))
        }
        "hardware" => Ok((Lhs::Hardware, None, i + 1)),
        "substring" => {
            if inner {
                return Err("nested substring".into());
            }
            if !w.get(i + 1).is_some_and(|t| t.is(b'(')) {
                return Err("expected `substring(`".into());
            }
            let (lhs, _, j) = parse_lhs_in(w, i + 2, true)?;
            let comma = |k: usize| w.get(k).is_some_and(|t| t.is(b','));
            let (Some(off), Some(len)) = (number(w.get(j + 1)), number(w.get(j + 3))) else {
                return Err("substring needs a numeric offset and length".into());
            };
            if !comma(j) || !comma(j + 2) || !w.get(j + 4).is_some_and(|t| t.is(b')')) {
                return Err("expected `substring(VALUE, OFFSET, LENGTH)`".into());
            }
            Ok((lhs, Some((off, len)), j + 5))
        }
        other => Err(format!("`{other}` is not a criterion Tandem policies test")),
    }
}

/// Parse `match if EXPR` into conditions: comparisons `LHS = VALUE` joined by all-`or` or
/// all-`and` (and `not`/`!=` for a negated one).
fn parse_match(w: &[Token]) -> Result<(bool, Vec<Cond>), String> {
    let mut i = 0;
    let mut conds = Vec::new();
    let mut joiner: Option<String> = None;
    let word = |k: usize| w.get(k).and_then(Token::word).unwrap_or_default();
    loop {
        let mut not = false;
        if word(i) == "not" {
            not = true;
            i += 1;
        }
        let (lhs, sub, j) = parse_lhs(w, i)?;
        let mut j = j;
        if w.get(j).is_some_and(|t| t.is(b'!')) && w.get(j + 1).is_some_and(|t| t.is(b'=')) {
            not = !not;
            j += 2;
        } else if w.get(j).is_some_and(|t| t.is(b'=')) {
            j += 1;
        } else {
            return Err("only `=` comparisons can be translated".into());
        }
        let v = w
            .get(j)
            .and_then(bytes_of)
            .ok_or("the compared value is not a string or hex bytes")?;
        let cond = match (lhs, sub) {
            (Lhs::Option(c, hex), None) => (c, if hex { hex_matcher(&v, false) } else { text_matcher(&v, false) }),
            (Lhs::Option(c, hex), Some((0, len))) if len as usize == v.len() => {
                (c, if hex { hex_matcher(&v, true) } else { text_matcher(&v, true) })
            }
            (Lhs::Hardware, None) if v.len() == 7 => ("mac", hex_matcher(&v[1..], false)),
            (Lhs::Hardware, Some((1, len))) if len as usize == v.len() && (1..=6).contains(&v.len()) => {
                if v.len() == 6 {
                    ("mac", hex_matcher(&v, false))
                } else {
                    ("mac", hex_matcher(&v, true))
                }
            }
            _ => {
                return Err(
                    "only whole values, prefixes (substring from 0, or from 1 of hardware) and whole hardware addresses can be translated"
                        .into(),
                )
            }
        };
        conds.push(Cond {
            criterion: cond.0,
            values: vec![cond.1],
            not,
        });
        i = j + 1;
        if i >= w.len() {
            break;
        }
        let op = word(i);
        if op != "or" && op != "and" {
            return Err(format!("unexpected `{}`", w[i].show()));
        }
        if joiner.as_ref().is_some_and(|j| *j != op) {
            return Err(
                "`and` and `or` mixed: Tandem's policies combine their conditions one way".into(),
            );
        }
        joiner = Some(op);
        i += 1;
    }
    Ok((joiner.as_deref() == Some("or"), conds))
}

impl Conv<'_> {
    fn report(&mut self, file: &str, s: &Stmt, why: impl Into<String>) {
        self.issues.add(file, s.line, s.directive(), why);
    }

    /// Replace `include "FILE";` statements by the file's statements.
    fn expand(&mut self, file: &str, stmts: Vec<Stmt>) -> Result<Vec<Fs>, ImportError> {
        let mut out = Vec::with_capacity(stmts.len());
        for s in stmts {
            if s.w(0) == "include" && s.block.is_none() {
                let Some(name) = text(s.words.get(1)) else {
                    return Err(parse_err(file, s.line, "include needs a file name"));
                };
                if self.include_depth >= MAX_INCLUDE_DEPTH {
                    return Err(parse_err(file, s.line, "includes nested too deep"));
                }
                let p = PathBuf::from(&name);
                let p = if p.is_absolute() || p.exists() {
                    p
                } else {
                    self.dir.join(p)
                };
                if !self.follow_includes {
                    self.report(file, &s, "includes are not followed here");
                    continue;
                }
                let io = |e: String| {
                    ImportError::Io(format!("{file}:{}: include {}: {e}", s.line, p.display()))
                };
                let meta = std::fs::metadata(&p).map_err(|e| io(e.to_string()))?;
                if !meta.is_file() || meta.len() > crate::config::MAX_FILE_SIZE {
                    return Err(io(format!(
                        "not a regular file of at most {} bytes",
                        crate::config::MAX_FILE_SIZE
                    )));
                }
                let text = std::fs::read(&p).map_err(|e| io(e.to_string()))?;
                let f = p.display().to_string();
                let inner = Lexer::new(text.as_slice(), &f).all()?;
                self.include_depth += 1;
                let inner = self.expand(&f, inner)?;
                self.include_depth -= 1;
                out.extend(inner);
            } else {
                out.push((file.to_string(), s));
            }
        }
        Ok(out)
    }

    /// `option NAME code N = TYPE;`
    fn define(&mut self, file: &str, s: &Stmt) {
        let name = s.words.get(1).map(Token::show).unwrap_or_default();
        let Some(code) = number(s.words.get(3)).filter(|c| (1..=254).contains(c)) else {
            self.report(file, s, "the option code is not a number from 1 to 254");
            return;
        };
        if !s.words.get(4).is_some_and(|t| t.is(b'=')) {
            self.report(file, s, "expected `option NAME code N = TYPE;`");
            return;
        }
        if name.contains('.') {
            self.report(
                file,
                s,
                "options of other option spaces (vendor sub-options) cannot be translated",
            );
            return;
        }
        let ty: Vec<String> = s.words[5..].iter().map(Token::show).collect();
        match optdefs::dhcpd_type(&ty) {
            Ok((kind, array)) => self.defs.define(Def {
                name,
                code: code as u8,
                kind,
                array,
            }),
            Err(m) => self.report(file, s, m),
        }
    }

    /// `option NAME VALUE...;` into `p`, or a report.
    fn option(&mut self, file: &str, s: &Stmt, p: &mut Params, level: Level) {
        let name = s.words.get(1).map(Token::show).unwrap_or_default();
        let Some(def) = self.defs.by_name(&name) else {
            self.report(
                file,
                s,
                if name.contains('.') {
                    "options of other option spaces (vendor sub-options) cannot be translated"
                        .to_string()
                } else {
                    format!(
                        "unknown option `{name}` (define it with `option {name} code N = TYPE;`)"
                    )
                },
            );
            return;
        };
        let mut items = Vec::new();
        for t in s.words.get(2..).unwrap_or_default() {
            match &t.tok {
                Tok::Punct(b',') => {}
                Tok::Word(w) => items.push(Item::Word(w.clone())),
                Tok::Str(b) => items.push(Item::Quoted(b.clone())),
                Tok::Punct(_) => {
                    self.report(
                        file,
                        s,
                        "an expression as option value cannot be translated (only literal values)",
                    );
                    return;
                }
            }
        }
        let v = match optdefs::value(&def, &items) {
            Ok(v) => v,
            Err(m) => {
                self.report(file, s, m);
                return;
            }
        };
        match def.code {
            51 => {
                if let OptValue::Int { value, .. } = v {
                    p.default_lease = Some((value, s.line));
                    p.max_lease = None;
                }
                return;
            }
            54 => {
                if level == Level::Global {
                    if let OptValue::Ips(a) = &v {
                        self.model.server_id = a.first().copied();
                        return;
                    }
                }
                self.report(
                    file,
                    s,
                    "Tandem has one server identifier (server.server_id), set globally",
                );
                return;
            }
            50 | 52 | 53 | 55 | 57 | 82 => {
                self.report(
                    file,
                    s,
                    format!(
                        "option {} is not set by a server's configuration in Tandem",
                        def.code
                    ),
                );
                return;
            }
            61 if level != Level::Host => {
                self.report(
                    file,
                    s,
                    "a client identifier outside a host declaration cannot be translated",
                );
                return;
            }
            _ => {}
        }
        set_opt(
            &mut p.options,
            Opt {
                code: def.code,
                value: v,
            },
        );
    }

    /// Apply the parameters among `stmts` to a copy of `parent`; declarations are skipped.
    fn params(&mut self, stmts: &[Fs], parent: &Params, level: Level) -> Params {
        let mut p = parent.clone();
        if level == Level::Class {
            p = Params::default();
        }
        for (file, s) in stmts {
            if s.block.is_some() {
                continue;
            }
            let lt = |s: &Stmt| {
                number(s.words.get(1)).map(|n| (n.min(u64::from(u32::MAX)) as u32, s.line))
            };
            match s.w(0).as_str() {
                "option" if s.w(2) == "code" => {
                    if level != Level::Global {
                        self.report(file, s, "option definitions are read only at the top level");
                    }
                }
                "option" => self.option(file, s, &mut p, level),
                "default-lease-time" => match lt(s) {
                    Some(v) => p.default_lease = Some(v),
                    None => self.report(file, s, "expected a number of seconds"),
                },
                "max-lease-time" => match lt(s) {
                    Some(v) => p.max_lease = Some(v),
                    None => self.report(file, s, "expected a number of seconds"),
                },
                "min-lease-time" => match lt(s) {
                    Some(v) => p.min_lease = Some(v),
                    None => self.report(file, s, "expected a number of seconds"),
                },
                "authoritative" => p.authoritative = true,
                "not" if s.w(1) == "authoritative" => p.authoritative = false,
                "use-host-decl-names" => {
                    p.use_host_decl_names = !matches!(s.w(1).as_str(), "off" | "false");
                }
                "ddns-update-style" if s.w(1) == "none" => {}
                "ddns-updates" if matches!(s.w(1).as_str(), "off" | "false") => {}
                "lease-file-name" => {}
                "server-identifier" => match ipv4(s.words.get(1)) {
                    Some(a) if level == Level::Global => self.model.server_id = Some(a),
                    _ => self.report(
                        file,
                        s,
                        "Tandem has one server identifier (server.server_id), an address, set globally",
                    ),
                },
                "local-port" | "remote-port" if level == Level::Global => {
                    match number(s.words.get(1)).filter(|n| (1..=65_535).contains(n)) {
                        Some(n) if s.w(0) == "local-port" => self.model.server_port = Some(n as u16),
                        Some(n) => self.model.client_port = Some(n as u16),
                        None => self.report(file, s, "expected a port number"),
                    }
                }
                "filename" => {
                    let f = text(s.words.get(1)).unwrap_or_default();
                    if f.is_empty() {
                        self.report(file, s, "expected a file name");
                    } else {
                        set_opt(&mut p.options, Opt { code: 67, value: OptValue::Text(f) });
                        self.report(
                            file,
                            s,
                            "written as option 67 (bootfile_name): Tandem does not fill the BOOTP file field",
                        );
                    }
                }
                "failover" if s.w(1) == "peer" && matches!(level, Level::Pool | Level::Subnet | Level::Shared) => {
                    match text(s.words.get(2)) {
                        Some(n) => p.failover_peer = Some((n, s.line)),
                        None => self.report(file, s, "expected a peer name"),
                    }
                }
                "range" | "hardware" | "fixed-address" | "match" | "allow" | "deny" | "ignore"
                | "subclass" | "include" | "host-identifier" | "spawn" | "lease" | "primary"
                | "secondary" => {}
                "ddns-update-style" | "ddns-updates" | "ddns-domainname" | "ddns-rev-domainname"
                | "ddns-hostname" | "update-static-leases" | "update-optimization"
                | "update-conflict-detection" | "ddns-ttl" => self.report(file, s, "Tandem does no dynamic DNS updates"),
                "log-facility" => self.report(file, s, "Tandem logs to stderr (the systemd journal); see log_format"),
                "ping-check" if matches!(s.w(1).as_str(), "false" | "off") => {}
                "ping-check" | "ping-timeout" | "ping-cltt-secs" | "ping-timeout-ms" => {
                    self.report(file, s, "Tandem does not probe addresses with ICMP before offering them")
                }
                "next-server" | "server-name" => {
                    self.report(file, s, "Tandem does not fill the BOOTP siaddr/sname fields")
                }
                "one-lease-per-client" | "get-lease-hostnames" | "stash-agent-options" | "boot-unknown-clients"
                | "always-reply-rfc1048" | "always-broadcast" | "dynamic-bootp-lease-cutoff"
                | "dynamic-bootp-lease-length" | "abandon-lease-time" | "adaptive-lease-time-threshold"
                | "db-time-format" | "pid-file-name" | "omapi-port" | "omapi-key" | "local-address"
                | "echo-client-id" | "lease-id-format" | "max-ack-delay" | "max-outstanding-acks"
                | "dont-use-fsync" | "server-duid" | "vendor-option-space" | "site-option-space"
                | "delayed-ack" | "limit-addrs-per-ia" | "persist-eui-64-leases" => {
                    self.report(file, s, "no Tandem counterpart")
                }
                _ => self.report(file, s, "not understood by the importer; no Tandem counterpart"),
            }
        }
        p
    }

    /// Walk the declarations among `stmts`.
    fn decls(
        &mut self,
        stmts: &[Fs],
        p: &Params,
        level: Level,
        shared: Option<&str>,
        subnet: Option<usize>,
    ) -> Result<(), ImportError> {
        for (file, s) in stmts {
            let Some(block) = &s.block else {
                match s.w(0).as_str() {
                    "range" => self.range(file, s, subnet, level),
                    "allow" | "deny" | "ignore" if level != Level::Pool => {
                        self.flag(file, s, level)
                    }
                    "subclass" => self.subclass(file, s),
                    "hardware" | "fixed-address" | "host-identifier" | "match" | "spawn" => self
                        .report(
                            file,
                            s,
                            "only meaningful inside a host or class declaration",
                        ),
                    "failover" if level == Level::Global => self.report(
                        file,
                        s,
                        "a pool's `failover peer` outside a pool is not understood",
                    ),
                    "primary" | "secondary" | "lease" => {
                        self.report(file, s, "not understood here")
                    }
                    _ => {}
                }
                continue;
            };
            let inner: Vec<Fs> = block.iter().map(|b| (file.clone(), b.clone())).collect();
            match s.w(0).as_str() {
                "subnet" => self.subnet(file, s, &inner, p, shared)?,
                "shared-network" => {
                    if level != Level::Global && level != Level::Group {
                        self.report(
                            file,
                            s,
                            "a shared-network is only understood at the top level",
                        );
                        continue;
                    }
                    let name = text(s.words.get(1)).unwrap_or_else(|| format!("shared-{}", s.line));
                    let sp = self.params(&inner, p, Level::Shared);
                    let before = self.model.scopes.len();
                    self.decls(&inner, &sp, Level::Shared, Some(&name), None)?;
                    let n = self.model.scopes.len() - before;
                    if n > 1 {
                        self.issues.add(
                            file,
                            s.line,
                            "shared-network",
                            format!(
                                "its {n} subnets become separate scopes (sharing the interface where it is this server's); relayed clients are served from the subnet holding the relay's giaddr only"
                            ),
                        );
                    }
                }
                "pool" => {
                    if !matches!(level, Level::Subnet | Level::Shared) {
                        self.report(file, s, "a pool outside a subnet or shared-network");
                        continue;
                    }
                    self.pool(file, s, &inner, p, shared, subnet)?;
                }
                "group" => {
                    let gp = self.params(&inner, p, Level::Group);
                    self.decls(&inner, &gp, level, shared, subnet)?;
                }
                "host" => self.host(file, s, &inner, p),
                "class" => self.class(file, s, &inner),
                "subclass" => {
                    self.subclass(file, s);
                    self.report(
                        file,
                        s,
                        "the subclass's own statements cannot be translated",
                    );
                }
                "failover" if s.w(1) == "peer" && level == Level::Global => {
                    self.peers.push(PeerDecl {
                        name: text(s.words.get(2)).unwrap_or_default(),
                        file: file.clone(),
                        line: s.line,
                        stmts: block.clone(),
                    });
                }
                "if" | "elsif" | "else" => {
                    self.report(file, s, "conditional statements cannot be translated")
                }
                "on" => self.report(
                    file,
                    s,
                    "event statements (on commit/expiry/release) cannot be translated",
                ),
                "key" | "zone" => self.report(file, s, "Tandem does no dynamic DNS updates"),
                _ => self.report(
                    file,
                    s,
                    "not understood by the importer; no Tandem counterpart",
                ),
            }
        }
        Ok(())
    }

    fn flag(&mut self, file: &str, s: &Stmt, level: Level) {
        let what = s.words[1..]
            .iter()
            .map(Token::show)
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        let allow = s.w(0) == "allow";
        match what.as_str() {
            "unknown-clients" | "known-clients" | "booting" | "duplicates" if allow => {}
            "bootp" if !allow => {}
            "client-updates" if !allow => {}
            _ if level == Level::Class => {}
            _ => self.report(file, s, "no Tandem counterpart"),
        }
    }

    fn subnet(
        &mut self,
        file: &str,
        s: &Stmt,
        inner: &[Fs],
        p: &Params,
        shared: Option<&str>,
    ) -> Result<(), ImportError> {
        let (Some(net), true, Some(m)) = (
            ipv4(s.words.get(1)),
            s.w(2) == "netmask",
            ipv4(s.words.get(3)),
        ) else {
            return Err(parse_err(
                file,
                s.line,
                "expected `subnet ADDRESS netmask MASK {`",
            ));
        };
        let bits = u32::from(m);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(parse_err(file, s.line, format!("{m} is not a netmask")));
        }
        let prefix = bits.leading_ones() as u8;
        let network = Ipv4Addr::from(u32::from(net) & bits);
        let mut name = format!("{network}/{prefix}");
        if self.model.scopes.iter().any(|x| x.name == name) {
            name = format!("{name}@{}", s.line);
        }
        let sp = self.params(inner, p, Level::Subnet);
        let mut sc = Scope::new(name, (network, prefix));
        sc.comments
            .push(format!("subnet {net} netmask {m} ({file}:{})", s.line));
        if let Some(g) = shared {
            sc.comments.push(format!("of shared-network {g}"));
        }
        self.lease_times(file, s.line, &sp, &mut sc);
        sc.authoritative = sp.authoritative;
        let si = self.model.scopes.len();
        self.model.scopes.push(sc);
        self.shared.push(shared.map(str::to_string));
        self.scope_eff.push(sp.options.clone());
        self.scope_at.push((file.to_string(), s.line));
        if let Some((peer, _)) = &sp.failover_peer {
            self.peer_scopes.entry(peer.clone()).or_default().push(si);
        }
        self.decls(inner, &sp, Level::Subnet, shared, Some(si))
    }

    /// Lease, renew and rebind times of a scope from its parameters.
    fn lease_times(&mut self, file: &str, line: usize, p: &Params, sc: &mut Scope) {
        let mut lease = p.default_lease.map_or(DHCPD_DEFAULT_LEASE, |(v, _)| v);
        if let Some((max, line)) = p.max_lease {
            if max < lease {
                self.issues.add(file, line, "max-lease-time", format!("{max} s is below the default lease time ({lease} s): Tandem grants {max} s to every client"));
                lease = max;
            }
        }
        if let Some((min, line)) = p.min_lease {
            if min > lease {
                self.issues.add(file, line, "min-lease-time", format!("{min} s is above the default lease time ({lease} s): Tandem grants {min} s to every client"));
                lease = min;
            }
        }
        sc.lease_time = Some(lease.clamp(1, 0xFFFF_FFFE));
        let take = |code: u8| {
            p.options
                .iter()
                .find(|o| o.code == code)
                .and_then(|o| match o.value {
                    OptValue::Int { value, .. } => Some(value),
                    _ => None,
                })
        };
        let (t1, t2) = (take(58), take(59));
        let l = sc.lease_time.unwrap_or(lease);
        let t1_ok = t1.is_none_or(|t| t > 0 && t < l && t2.is_none_or(|t2| t < t2));
        let t2_ok = t2.is_none_or(|t| t > 0 && t < l && t > t1.unwrap_or(l / 2));
        if t1_ok && t2_ok {
            sc.renew_time = t1;
            sc.rebind_time = t2;
        } else {
            self.issues.add(file, line, "option dhcp-renewal-time", format!("T1 {t1:?} / T2 {t2:?} do not satisfy T1 < T2 < lease time ({l} s) in scope {}: Tandem's defaults (1/2 and 7/8 of the lease) are used", sc.name));
        }
    }

    fn range(&mut self, file: &str, s: &Stmt, subnet: Option<usize>, level: Level) {
        let _ = level;
        let mut i = 1;
        if s.w(1) == "dynamic-bootp" {
            self.report(
                file,
                s,
                "Tandem does not serve BOOTP clients: the range is imported for DHCP only",
            );
            i = 2;
        }
        let Some(a) = ipv4(s.words.get(i)) else {
            self.report(file, s, "expected an address range");
            return;
        };
        let b = ipv4(s.words.get(i + 1)).unwrap_or(a);
        let (a, b) = if u32::from(a) <= u32::from(b) {
            (a, b)
        } else {
            (b, a)
        };
        let target = subnet.or_else(|| self.model.scope_of(a));
        let Some(si) = target else {
            self.report(file, s, format!("{a}-{b} is in no declared subnet"));
            return;
        };
        self.add_range(file, s.line, si, a, b);
    }

    fn add_range(&mut self, file: &str, line: usize, si: usize, a: Ipv4Addr, b: Ipv4Addr) {
        let sc = &mut self.model.scopes[si];
        if !in_subnet(a, sc.subnet) || !in_subnet(b, sc.subnet) {
            self.issues.add(
                file,
                line,
                "range",
                format!("{a}-{b} is not inside subnet {}", sc.name),
            );
            return;
        }
        let (net, prefix) = sc.subnet;
        let (mut lo, mut hi) = (u32::from(a), u32::from(b));
        if prefix <= 30 {
            let n = u32::from(net);
            let bc = n | !mask(prefix);
            lo = lo.max(n + 1);
            hi = hi.min(bc - 1);
        }
        if lo > hi {
            self.issues.add(
                file,
                line,
                "range",
                format!("{a}-{b} holds only the network or broadcast address"),
            );
            return;
        }
        if (lo, hi) != (u32::from(a), u32::from(b)) {
            self.issues.add(file, line, "range", format!("{a}-{b} includes the network or broadcast address, which Tandem never hands out: imported as {}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi)));
        }
        sc.ranges.push((Ipv4Addr::from(lo), Ipv4Addr::from(hi)));
    }

    fn pool(
        &mut self,
        file: &str,
        s: &Stmt,
        inner: &[Fs],
        p: &Params,
        shared: Option<&str>,
        subnet: Option<usize>,
    ) -> Result<(), ImportError> {
        let pp = self.params(inner, p, Level::Pool);
        let mut d = PoolDecl {
            file: file.to_string(),
            line: s.line,
            scope: subnet,
            ranges: Vec::new(),
            permits: Vec::new(),
            options: Vec::new(),
            lease_time: None,
        };
        for o in &pp.options {
            if !p.options.contains(o) && !matches!(o.code, 58 | 59) {
                d.options.push(o.clone());
            }
        }
        if pp.default_lease != p.default_lease {
            d.lease_time = pp.default_lease.map(|(v, _)| v);
        }
        for (f, x) in inner {
            if x.block.is_some() {
                self.report(f, x, "declarations inside a pool are not understood");
                continue;
            }
            match x.w(0).as_str() {
                "range" => {
                    let mut i = 1;
                    if x.w(1) == "dynamic-bootp" {
                        self.report(f, x, "Tandem does not serve BOOTP clients: the range is imported for DHCP only");
                        i = 2;
                    }
                    match ipv4(x.words.get(i)) {
                        Some(a) => {
                            let b = ipv4(x.words.get(i + 1)).unwrap_or(a);
                            d.ranges.push(if u32::from(a) <= u32::from(b) {
                                (a, b)
                            } else {
                                (b, a)
                            });
                        }
                        None => self.report(f, x, "expected an address range"),
                    }
                }
                "allow" | "deny" => {
                    let allow = x.w(0) == "allow";
                    let what: Vec<String> = x.words[1..].iter().filter_map(Token::word).collect();
                    match what.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                        ["members", "of"] => match text(x.words.get(3)) {
                            Some(c) => d.permits.push(Permit::Members(c, allow)),
                            None => self.report(f, x, "expected a class name"),
                        },
                        ["all", "clients"] if allow => {}
                        ["unknown-clients"] | ["known-clients"] | ["unknown", "clients"] | ["known", "clients"] => {
                            self.report(f, x, "Tandem has no known/unknown-client permits (reservations are per client; dynamic ranges serve every client)")
                        }
                        ["dynamic", "bootp", "clients"] | ["bootp"] if !allow => {}
                        _ => self.report(f, x, "this permit has no Tandem counterpart"),
                    }
                }
                "ignore" => self.report(f, x, "no Tandem counterpart"),
                _ => {}
            }
        }
        if let Some((peer, _)) = &pp.failover_peer {
            if p.failover_peer.as_ref().map(|x| &x.0) != Some(peer) {
                if let Some(si) = subnet {
                    self.peer_scopes.entry(peer.clone()).or_default().push(si);
                } else {
                    self.peer_scopes.entry(format!("\0{peer}")).or_default();
                    // Resolved once the pool's ranges find their subnet.
                    d.permits.shrink_to_fit();
                }
            }
        }
        match (subnet, shared) {
            (Some(si), _) => {
                for &(a, b) in &d.ranges.clone() {
                    self.add_range(file, s.line, si, a, b);
                }
                d.ranges = self.model.scopes[si]
                    .ranges
                    .iter()
                    .filter(|r| d.ranges.iter().any(|x| x.0 <= r.0 && r.1 <= x.1))
                    .copied()
                    .collect();
                self.pools.push(d);
            }
            (None, Some(g)) => {
                let peer = pp.failover_peer.map(|x| x.0).unwrap_or_default();
                self.shared_pools.push((d, format!("{g}\0{peer}")));
            }
            (None, None) => self.report(file, s, "a pool outside a subnet or shared-network"),
        }
        Ok(())
    }

    fn finish_shared_pools(&mut self) {
        for (mut d, key) in std::mem::take(&mut self.shared_pools) {
            let (_, peer) = key.split_once('\0').unwrap_or((&key, ""));
            let mut placed = Vec::new();
            for &(a, b) in &d.ranges {
                match self.model.scope_of(a) {
                    Some(si) if self.model.scopes[si].contains(b) => {
                        self.add_range(&d.file, d.line, si, a, b);
                        placed.push((si, a, b));
                    }
                    _ => self.issues.add(
                        &d.file,
                        d.line,
                        "range",
                        format!("{a}-{b} is not inside one subnet of the shared network"),
                    ),
                }
            }
            for (si, a, b) in placed {
                if !peer.is_empty() {
                    self.peer_scopes
                        .entry(peer.to_string())
                        .or_default()
                        .push(si);
                }
                let ranges = self.model.scopes[si]
                    .ranges
                    .iter()
                    .filter(|r| a <= r.0 && r.1 <= b)
                    .copied()
                    .collect();
                self.pools.push(PoolDecl {
                    file: d.file.clone(),
                    line: d.line,
                    scope: Some(si),
                    ranges,
                    permits: std::mem::take(&mut d.permits),
                    options: d.options.clone(),
                    lease_time: d.lease_time,
                });
            }
        }
        self.peer_scopes.retain(|k, _| !k.starts_with('\0'));
    }

    fn host(&mut self, file: &str, s: &Stmt, inner: &[Fs], p: &Params) {
        let hp = self.params(inner, p, Level::Host);
        let mut h = HostDecl {
            name: text(s.words.get(1)).unwrap_or_default(),
            file: file.to_string(),
            line: s.line,
            use_host_decl_names: hp.use_host_decl_names,
            ..HostDecl::default()
        };
        for o in hp.options {
            if o.code == 61 {
                match o.value {
                    OptValue::Hex(b) => h.client_id = Some(b),
                    OptValue::Text(t) => h.client_id = Some(t.into_bytes()),
                    _ => {}
                }
            } else {
                h.options.push(o);
            }
        }
        for (f, x) in inner {
            if x.block.is_some() {
                self.report(f, x, "declarations inside a host are not understood");
                continue;
            }
            match x.w(0).as_str() {
                "hardware" => {
                    let kind = x.w(1);
                    match (kind.as_str(), x.words.get(2).and_then(bytes_of)) {
                        ("ethernet", Some(b)) if b.len() == 6 => h.mac = b.try_into().ok(),
                        _ => self.report(
                            f,
                            x,
                            "only 6-byte `hardware ethernet` addresses can be reserved",
                        ),
                    }
                }
                "fixed-address" => {
                    for t in &x.words[1..] {
                        match &t.tok {
                            Tok::Punct(b',') => {}
                            Tok::Word(w) => match w.parse::<Ipv4Addr>() {
                                Ok(a) => h.fixed.push(a),
                                Err(_) => self.issues.add(f, x.line, "fixed-address", format!("`{w}` is a host name: only addresses are imported (names are not resolved)")),
                            },
                            _ => self.report(f, x, "expected addresses"),
                        }
                    }
                }
                "host-identifier" => self.report(
                    f,
                    x,
                    "Tandem reservations match a MAC or client identifier only",
                ),
                "ddns-hostname" | "ddns-domainname" => {
                    self.report(f, x, "Tandem does no dynamic DNS updates")
                }
                _ => {}
            }
        }
        self.hosts.push(h);
    }

    fn class(&mut self, file: &str, s: &Stmt, inner: &[Fs]) {
        let cp = self.params(inner, &Params::default(), Level::Class);
        let mut c = ClassDecl {
            name: text(s.words.get(1)).unwrap_or_default(),
            file: file.to_string(),
            line: s.line,
            options: cp.options.clone(),
            lease_time: cp.default_lease.map(|(v, _)| v),
            ..ClassDecl::default()
        };
        for (f, x) in inner {
            match x.w(0).as_str() {
                "match" if x.w(1) == "if" => match parse_match(&x.words[2..]) {
                    Ok((any, conds)) => {
                        c.any = any || conds.len() == 1;
                        c.conds = conds;
                    }
                    Err(m) => {
                        self.report(f, x, format!("cannot be a policy condition: {m}"));
                        c.bad = true;
                    }
                },
                "match" | "spawn" => {
                    let rest = if x.w(0) == "spawn" { 2 } else { 1 };
                    match parse_lhs(&x.words, rest) {
                        Ok((Lhs::Option(cr, hex), None, j)) if j == x.words.len() => {
                            c.spawn = Some((cr, hex))
                        }
                        Ok((Lhs::Hardware, None, j)) if j == x.words.len() => {
                            c.spawn = Some(("mac", true))
                        }
                        Ok(_) => {
                            self.report(
                                f,
                                x,
                                "only `match option NAME;` or `match hardware;` can key subclasses",
                            );
                            c.bad = true;
                        }
                        Err(m) => {
                            self.report(f, x, format!("cannot be a policy condition: {m}"));
                            c.bad = true;
                        }
                    }
                    if x.w(0) == "spawn" {
                        self.report(f, x, "spawned classes (lease limits per subclass) have no Tandem counterpart; members are matched as one class");
                    }
                }
                "lease" => self.report(f, x, "lease limits have no Tandem counterpart"),
                _ if x.block.is_some() => {
                    self.report(f, x, "declarations inside a class are not understood")
                }
                _ => {}
            }
        }
        if let Some((_, line)) = cp.max_lease.or(cp.min_lease) {
            self.issues.add(file, line, "max-lease-time", "per-class lease time limits are not translated (the policy's lease time is the class's default-lease-time)");
        }
        self.classes.push(c);
    }

    fn subclass(&mut self, file: &str, s: &Stmt) {
        let name = text(s.words.get(1)).unwrap_or_default();
        let Some(ci) = self.classes.iter().position(|c| c.name == name) else {
            self.report(file, s, format!("class `{name}` is not declared before it"));
            return;
        };
        let Some((criterion, hex)) = self.classes[ci].spawn else {
            self.report(
                file,
                s,
                format!("class `{name}` has no `match` expression for its subclasses"),
            );
            return;
        };
        let Some(v) = s.words.get(2).and_then(bytes_of) else {
            self.report(file, s, "expected a value");
            return;
        };
        let value = if criterion == "mac" {
            if v.len() != 7 {
                self.report(
                    file,
                    s,
                    "a hardware subclass value is the type byte and 6 address bytes",
                );
                return;
            }
            hex_matcher(&v[1..], false)
        } else if hex {
            hex_matcher(&v, false)
        } else {
            text_matcher(&v, false)
        };
        let c = &mut self.classes[ci];
        match c.conds.first_mut() {
            Some(cond) if cond.criterion == criterion => cond.values.push(value),
            _ => c.conds.push(Cond {
                criterion,
                values: vec![value],
                not: false,
            }),
        }
        c.any = true;
    }

    fn finish_pools(&mut self) {
        for d in std::mem::take(&mut self.pools) {
            let Some(si) = d.scope else { continue };
            if d.permits.is_empty() {
                if !d.options.is_empty() || d.lease_time.is_some() {
                    self.issues.add(&d.file, d.line, "pool", "options or lease times set in a pool without a permit list have no Tandem counterpart (Tandem sets them per scope, policy or reservation): not imported");
                }
                continue;
            }
            let mut conds: Vec<Cond> = Vec::new();
            let mut any = true;
            let mut names = Vec::new();
            let mut ok = true;
            let allows = d
                .permits
                .iter()
                .filter(|p| matches!(p, Permit::Members(_, true)))
                .count();
            let denies = d.permits.len() - allows;
            if allows > 0 && denies > 0 {
                self.issues.add(
                    &d.file,
                    d.line,
                    "pool",
                    "allow and deny members of classes in one pool cannot be translated",
                );
                continue;
            }
            for Permit::Members(name, allow) in &d.permits {
                let Some(c) = self.classes.iter_mut().find(|c| c.name == *name) else {
                    self.issues.add(
                        &d.file,
                        d.line,
                        "pool",
                        format!("class `{name}` is not declared: the pool's range is open to every client"),
                    );
                    ok = false;
                    continue;
                };
                c.used = true;
                if c.bad || c.conds.is_empty() {
                    self.issues.add(&d.file, d.line, "pool", format!("class `{name}` could not be translated, so neither can this pool's permit list: its range is open to every client"));
                    ok = false;
                    continue;
                }
                names.push(name.clone());
                if *allow {
                    if !c.any && d.permits.len() > 1 {
                        self.issues.add(&d.file, d.line, "pool", "several classes of which one needs all its conditions cannot be combined in one policy");
                        ok = false;
                        continue;
                    }
                    any = c.any || d.permits.len() > 1;
                    conds.extend(c.conds.iter().cloned());
                } else {
                    // not (a or b) = (not a) and (not b); not (a and b) = (not a) or (not b).
                    if d.permits.len() > 1 && c.any != (conds.is_empty() || !any) {
                        self.issues.add(
                            &d.file,
                            d.line,
                            "pool",
                            "several denied classes cannot be combined in one policy",
                        );
                        ok = false;
                        continue;
                    }
                    any = !c.any || c.conds.len() == 1 && d.permits.len() == 1;
                    conds.extend(c.conds.iter().cloned().map(|mut x| {
                        x.not = !x.not;
                        x
                    }));
                }
            }
            if !ok || conds.is_empty() {
                continue;
            }
            let lease_time = d.lease_time.or_else(|| {
                d.permits.iter().find_map(|Permit::Members(n, a)| {
                    if *a {
                        self.classes
                            .iter()
                            .find(|c| c.name == *n)
                            .and_then(|c| c.lease_time)
                    } else {
                        None
                    }
                })
            });
            let mut options = Vec::new();
            for Permit::Members(n, a) in &d.permits {
                if *a {
                    if let Some(c) = self.classes.iter().find(|c| c.name == *n) {
                        for o in &c.options {
                            set_opt(&mut options, o.clone());
                        }
                    }
                }
            }
            for o in d.options {
                set_opt(&mut options, o);
            }
            let prefix = if denies > 0 { "not-" } else { "" };
            let sc = &mut self.model.scopes[si];
            let mut name = format!("{prefix}{}", names.join("+"));
            if sc.policies.iter().any(|p| p.name == name) {
                name = format!("{name}@{}", d.line);
            }
            sc.policies.push(Policy {
                name,
                any: any && conds.len() > 1,
                conditions: conds,
                ranges: d.ranges,
                lease_time,
                options,
                origin: format!("pool at {}:{} with its permit list", d.file, d.line),
            });
        }
    }

    fn finish_classes(&mut self) {
        for ci in 0..self.classes.len() {
            let c = &self.classes[ci];
            if c.used {
                continue;
            }
            if c.options.is_empty() && c.lease_time.is_none() {
                if !c.bad {
                    self.issues.add(
                        &c.file,
                        c.line,
                        "class",
                        format!(
                            "class `{}` sets nothing and no pool permits it: nothing to translate",
                            c.name
                        ),
                    );
                }
                continue;
            }
            if c.bad || c.conds.is_empty() {
                self.issues.add(&c.file, c.line, "class", format!("class `{}` has options or a lease time, but its match could not be translated", c.name));
                continue;
            }
            let p = Policy {
                name: c.name.clone(),
                any: c.any && c.conds.len() > 1,
                conditions: c.conds.clone(),
                ranges: Vec::new(),
                lease_time: c.lease_time,
                options: c.options.clone(),
                origin: format!("class {} ({}:{})", c.name, c.file, c.line),
            };
            for sc in &mut self.model.scopes {
                let mut p = p.clone();
                if sc.policies.iter().any(|x| x.name == p.name) {
                    p.name = format!("class-{}", p.name);
                }
                sc.policies.push(p);
            }
        }
    }

    fn finish_hosts(&mut self) {
        for h in std::mem::take(&mut self.hosts) {
            if h.fixed.is_empty() {
                self.issues.add(&h.file, h.line, "host", format!("host {} has no fixed-address given as an IPv4 address: Tandem reservations need one (the client gets a dynamic address as before; its host options are not imported)", h.name));
                continue;
            }
            let key = match (&h.mac, &h.client_id) {
                (Some(m), cid) => {
                    if cid.is_some() {
                        self.issues.add(&h.file, h.line, "host", format!("host {} names both a MAC and a client identifier: reserved by MAC (Tandem reservations name one client key)", h.name));
                    }
                    ResKey::Mac(*m)
                }
                (None, Some(c)) if c.len() >= 2 => ResKey::ClientId(c.clone()),
                _ => {
                    self.issues.add(&h.file, h.line, "host", format!("host {} has no hardware ethernet address or client identifier (of 2 bytes or more) to reserve for", h.name));
                    continue;
                }
            };
            for &addr in &h.fixed {
                let Some(si) = self.model.scope_of(addr) else {
                    self.issues.add(
                        &h.file,
                        h.line,
                        "fixed-address",
                        format!("{addr} of host {} is in no declared subnet", h.name),
                    );
                    continue;
                };
                let eff = &self.scope_eff[si];
                let mut options: Vec<Opt> = h
                    .options
                    .iter()
                    .filter(|o| !eff.contains(o) && !matches!(o.code, 51 | 58 | 59))
                    .cloned()
                    .collect();
                let mut hostname = None;
                if let Some(i) = options.iter().position(|o| o.code == 12) {
                    if let OptValue::Text(t) = &options[i].value {
                        if is_domain(t) {
                            hostname = Some(t.clone());
                            options.remove(i);
                        }
                    }
                }
                if hostname.is_none()
                    && h.use_host_decl_names
                    && is_domain(&h.name)
                    && !options.iter().any(|o| o.code == 12)
                {
                    hostname = Some(h.name.clone());
                }
                let sc = &mut self.model.scopes[si];
                if sc.reservations.iter().any(|r| r.key == key) {
                    self.issues.add(&h.file, h.line, "host", format!("host {}: the same client is already reserved in {}: Tandem keeps one reservation per client and scope", h.name, sc.name));
                    continue;
                }
                if sc.reservations.iter().any(|r| r.address == addr) {
                    self.issues.add(
                        &h.file,
                        h.line,
                        "fixed-address",
                        format!(
                            "{addr} of host {} is already reserved for another client",
                            h.name
                        ),
                    );
                    continue;
                }
                sc.reservations.push(Reservation {
                    key: key.clone(),
                    address: addr,
                    hostname,
                    options,
                    origin: format!("host {} ({}:{})", h.name, h.file, h.line),
                });
            }
        }
    }

    fn finish_peers(&mut self) {
        for d in std::mem::take(&mut self.peers) {
            let mut f = Failover {
                name: String::new(),
                primary: true,
                partner: Ipv4Addr::UNSPECIFIED,
                partner_port: None,
                listen: None,
                listen_port: None,
                mode: FoMode::LoadBalance(None),
                mclt: None,
                switchover: None,
                max_response_delay: None,
                max_unacked: None,
                scopes: Vec::new(),
                comments: vec![format!(
                    "failover peer \"{}\" ({}:{})",
                    d.name, d.file, d.line
                )],
            };
            let name: String = d
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .take(64)
                .collect();
            if name != d.name {
                self.issues.add(&d.file, d.line, "failover peer", format!("the name \"{}\" is written as \"{name}\" (Tandem allows A-Z a-z 0-9 . _ -): an ISC partner must use the same name", d.name));
            }
            f.name = if name.is_empty() {
                "failover".into()
            } else {
                name
            };
            let mut role = None;
            let mut partner = None;
            let mut split = None;
            let mut auto_pd = None;
            for s in &d.stmts {
                let file = d.file.as_str();
                let n = |i: usize| number(s.words.get(i));
                match (s.w(0).as_str(), s.w(1).as_str()) {
                    ("primary", _) => role = Some(true),
                    ("secondary", _) => role = Some(false),
                    ("address", _) => match ipv4(s.words.get(1)) {
                        Some(a) => f.listen = Some(a),
                        None => self.report(file, s, "only an IPv4 address can be translated (names are not resolved)"),
                    },
                    ("port", _) => f.listen_port = n(1).filter(|p| (1..=65_535).contains(p)).map(|p| p as u16),
                    ("peer", "address") => match ipv4(s.words.get(2)) {
                        Some(a) => partner = Some(a),
                        None => self.report(file, s, "only an IPv4 address can be translated (names are not resolved)"),
                    },
                    ("peer", "port") => f.partner_port = n(2).filter(|p| (1..=65_535).contains(p)).map(|p| p as u16),
                    ("max-response-delay", _) => match n(1) {
                        Some(v) if (3..=3600).contains(&v) => f.max_response_delay = Some(v as u32),
                        _ => self.report(file, s, "Tandem's max_response_delay is 3 s to 1 h"),
                    },
                    ("max-unacked-updates", _) => match n(1) {
                        Some(v) if (1..=1024).contains(&v) => f.max_unacked = Some(v as u32),
                        _ => self.report(file, s, "Tandem's max_unacked_updates is 1 to 1024"),
                    },
                    ("mclt", _) => match n(1) {
                        Some(v) if (1..=30 * 86_400).contains(&v) => f.mclt = Some(v as u32),
                        _ => self.report(file, s, "Tandem's mclt is 1 s to 30 days"),
                    },
                    ("split", _) => match n(1) {
                        Some(v) if v <= 256 => split = Some((v as u32, s.line)),
                        _ => self.report(file, s, "split is 0 to 256"),
                    },
                    ("hba", _) => match s.words.get(1).and_then(bytes_of) {
                        Some(b) if b.len() == 32 => {
                            let bits: u32 = b.iter().map(|x| x.count_ones()).sum();
                            split = Some((bits, s.line));
                            self.report(file, s, format!("the bitmap assigns {bits} of 256 buckets to the primary: Tandem assigns its own buckets for that share"));
                        }
                        _ => self.report(file, s, "hba is 32 hex bytes"),
                    },
                    ("auto-partner-down", _) => match n(1) {
                        Some(v) => auto_pd = Some((v as u32, s.line)),
                        None => self.report(file, s, "expected seconds"),
                    },
                    ("load", _) => self.report(file, s, "Tandem serves a partner's clients only when the partner is down, not by their secs field"),
                    ("max-lease-misbalance" | "max-lease-ownership" | "min-balance" | "max-balance", _) => {
                        self.report(file, s, "Tandem balances the free addresses between the partners on its own (every minute)")
                    }
                    _ => self.report(file, s, "not understood in a failover peer"),
                }
            }
            let Some(primary) = role else {
                self.issues.add(
                    &d.file,
                    d.line,
                    "failover peer",
                    "neither primary nor secondary: not imported",
                );
                continue;
            };
            f.primary = primary;
            let Some(partner) = partner else {
                self.issues.add(
                    &d.file,
                    d.line,
                    "failover peer",
                    "no `peer address`: not imported",
                );
                continue;
            };
            f.partner = partner;
            if self.model.server_id.is_none() {
                self.model.server_id = f.listen;
            }
            match split {
                Some((v, line)) if primary => {
                    let pct = (v * 100 + 128) / 256;
                    if (v * 100) % 256 != 0 {
                        self.issues.add(&d.file, line, "split", format!("{v}/256 of the clients is not a whole percentage: load_balance_percent = {pct}"));
                    }
                    f.mode = FoMode::LoadBalance(Some(pct as u8));
                }
                Some((_, line)) => self.issues.add(
                    &d.file,
                    line,
                    "split",
                    "a secondary's split is ignored (the primary's counts)",
                ),
                None if !primary => {
                    self.issues.add(&d.file, d.line, "failover peer", "the split is set on the primary: load_balance_percent is left at 50; set it to 100 minus the primary's share");
                }
                None => f.mode = FoMode::LoadBalance(Some(50)),
            }
            if let Some((v, line)) = auto_pd {
                if v > 0 {
                    let min = f.max_response_delay.unwrap_or(60) + 2 * 61;
                    if v < min {
                        self.issues.add(&d.file, line, "auto-partner-down", format!("{v} s is below Tandem's minimum here ({min} s: max_response_delay + 2 x (max_clock_skew + 1 s)): written as {min}"));
                    }
                    f.switchover = Some(v.max(min));
                }
            }
            let mut scopes: Vec<usize> = self.peer_scopes.remove(&d.name).unwrap_or_default();
            scopes.sort_unstable();
            scopes.dedup();
            if scopes.is_empty() {
                self.issues.add(
                    &d.file,
                    d.line,
                    "failover peer",
                    "no pool refers to this peer: not imported",
                );
                continue;
            }
            f.scopes = scopes
                .iter()
                .map(|&i| self.model.scopes[i].name.clone())
                .collect();
            self.model.failover.push(f);
        }
        let mut undeclared: Vec<(String, Vec<usize>)> =
            std::mem::take(&mut self.peer_scopes).into_iter().collect();
        undeclared.sort();
        for (peer, scopes) in undeclared {
            let (f, l) = scopes
                .first()
                .and_then(|&i| self.scope_at.get(i).cloned())
                .unwrap_or_default();
            self.issues.add(
                &f,
                l,
                "failover peer",
                format!(
                    "pools of this subnet refer to peer \"{peer}\", which is not declared: no relationship"
                ),
            );
        }
    }

    fn finish_scopes(&mut self) {
        let mut keep = Vec::new();
        let mut shared = Vec::new();
        for (i, mut sc) in std::mem::take(&mut self.model.scopes)
            .into_iter()
            .enumerate()
        {
            let eff = &self.scope_eff[i];
            sc.options = eff
                .iter()
                .filter(|o| !self.global_opts.contains(o) && !matches!(o.code, 51 | 58 | 59))
                .cloned()
                .collect();
            if sc.ranges.is_empty() {
                if let Some(r) = sc.reservations.first() {
                    // A range of one reserved address: nothing dynamic, but the reservations
                    // have their scope.
                    sc.ranges.push((r.address, r.address));
                    sc.comments.push("no dynamic range in dhcpd: the one range is a reserved address, so nothing is handed out dynamically".into());
                } else {
                    let rel = self
                        .model
                        .failover
                        .iter()
                        .any(|f| f.scopes.contains(&sc.name));
                    let (f, l) = self.scope_at[i].clone();
                    self.issues.add(&f, l, "subnet", format!("{} has no range and no host: Tandem needs addresses to serve (not imported{})", sc.name, if rel { "; its relationship loses it" } else { "" }));
                    for f in &mut self.model.failover {
                        f.scopes.retain(|n| *n != sc.name);
                    }
                    continue;
                }
            }
            keep.push(sc);
            shared.push(self.shared[i].clone());
        }
        self.model.scopes = keep;
        self.shared = shared;
        self.model.failover.retain(|f| !f.scopes.is_empty());
    }
}

#[cfg(test)]
mod tests;
