//! Kea's `kea-dhcp4.conf` to Tandem's configuration.
//!
//! Kea's JSON allows `//`, `/* */` and `#` comments: they are blanked out first (keeping every
//! line break, so positions stay), the text is parsed with `serde_json`, and a small scanner
//! indexes the line of every value by its path (`Dhcp4.subnet4[0].pools[1]`), so that every
//! report names its line.
//!
//! Translated: `subnet4` (pools as ranges or prefixes, `interface`, `option-data`,
//! `reservations`, lifetimes, `authoritative`, `client-class`), `shared-networks`, global
//! `option-data` (by name or code, CSV or hex) and `option-def`, `valid-lifetime` (with
//! `min-`/`max-`), `renew-timer`/`rebind-timer`, `client-classes` whose `test` compares the
//! vendor class, user class, client id, MAC or relay sub-options → policies,
//! `interfaces-config`, `decline-probation-period`, and the HA hook (`libdhcp_ha.so`:
//! load-balancing or hot-standby, this-server-name, peers and roles, max-response-delay) →
//! `[[failover]]`. Everything else is reported.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::model::{
    in_subnet, is_domain, mask, set_opt, Cond, Failover, FoMode, Model, Opt, OptValue, Policy,
    ResKey, Reservation, Scope,
};
use super::optdefs::{self, Def, Defs, Item};
use super::{parse_err, ImportError, Issues, Parsed};

/// A test's left side: criterion, hex values, substring, `.exists`.
type KeaLhs = (&'static str, bool, Option<(u64, u64)>, bool);
/// A class as a policy: match any, conditions, options, lease time.
type ClassUse = (bool, Vec<Cond>, Vec<Opt>, Option<u32>);

/// Kea's default `valid-lifetime` (2 hours).
pub const KEA_DEFAULT_LIFETIME: u32 = 7200;

/// Blank out `//`, `/* */` and `#` comments outside strings, keeping line breaks, and the
/// trailing commas Kea's parser accepts (`[1, 2,]`, `{"a": 1,}`).
pub fn strip_comments(text: &str) -> Result<String, String> {
    let out = strip_only_comments(text)?;
    Ok(strip_trailing_commas(&out))
}

/// Blank out a `,` followed (after white space) by `}` or `]`, outside strings.
fn strip_trailing_commas(text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b',' => {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && matches!(b[j], b'}' | b']') {
                    b[i] = b' ';
                }
            }
            _ => {}
        }
        i += 1;
    }
    // Only an ASCII comma was replaced by an ASCII space.
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn strip_only_comments(text: &str) -> Result<String, String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            out.push(c);
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    out.push(b[i]);
                    i += 1;
                }
                if b[i] == b'\n' {
                    line += 1;
                }
                out.push(b[i]);
                i += 1;
            }
            if i < b.len() {
                out.push(b[i]);
                i += 1;
            }
        } else if c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = line;
            out.extend_from_slice(b"  ");
            i += 2;
            loop {
                if i >= b.len() {
                    return Err(format!("line {start}: `/*` comment is never closed"));
                }
                if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    out.extend_from_slice(b"  ");
                    i += 2;
                    break;
                }
                if b[i] == b'\n' {
                    line += 1;
                    out.push(b'\n');
                } else {
                    out.push(b' ');
                }
                i += 1;
            }
        } else if c == b'<' && b.get(i + 1) == Some(&b'?') {
            return Err(format!(
                "line {line}: `<?include ?>` directives are not supported: import the complete file"
            ));
        } else {
            if c == b'\n' {
                line += 1;
            }
            out.push(c);
            i += 1;
        }
    }
    // Only ASCII bytes were replaced, so the text is still UTF-8.
    String::from_utf8(out).map_err(|_| "not UTF-8".to_string())
}

/// The line of every value of a JSON text, by path: `Dhcp4.subnet4[0].pool`. The text must
/// already be valid JSON (comments stripped).
pub fn index_lines(text: &str) -> HashMap<String, usize> {
    enum Frame {
        Obj(String, Option<String>),
        Arr(String, usize),
    }
    let mut map = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut expect_key = false;
    let here = |stack: &Vec<Frame>| -> String {
        match stack.last() {
            None => String::new(),
            Some(Frame::Obj(p, k)) => {
                let k = k.clone().unwrap_or_default();
                if p.is_empty() {
                    k
                } else {
                    format!("{p}.{k}")
                }
            }
            Some(Frame::Arr(p, n)) => format!("{p}[{n}]"),
        }
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => line += 1,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let s = text.get(start..i.min(b.len())).unwrap_or_default();
                if expect_key {
                    if let Some(Frame::Obj(_, k)) = stack.last_mut() {
                        *k = Some(s.to_string());
                    }
                    expect_key = false;
                } else {
                    map.entry(here(&stack)).or_insert(line);
                }
            }
            b'{' | b'[' => {
                let p = here(&stack);
                map.entry(p.clone()).or_insert(line);
                if c == b'{' {
                    stack.push(Frame::Obj(p, None));
                    expect_key = true;
                } else {
                    stack.push(Frame::Arr(p, 0));
                }
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Arr(_, n)) => *n += 1,
                Some(Frame::Obj(..)) => expect_key = true,
                None => {}
            },
            b':' | b' ' | b'\t' | b'\r' => {}
            _ => {
                map.entry(here(&stack)).or_insert(line);
                while i + 1 < b.len() && !matches!(b[i + 1], b',' | b'}' | b']' | b'\n' | b' ') {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    map
}

#[derive(Clone, Debug, Default)]
struct Params {
    valid: Option<u32>,
    min_valid: Option<u32>,
    max_valid: Option<u32>,
    renew: Option<u32>,
    rebind: Option<u32>,
    authoritative: bool,
    options: Vec<Opt>,
    interface: Option<String>,
    client_class: Option<String>,
}

struct ClassDef {
    any: bool,
    conds: Vec<Cond>,
    options: Vec<Opt>,
    lease_time: Option<u32>,
    bad: bool,
    used: bool,
    path: String,
}

struct Conv<'a> {
    file: String,
    lines: HashMap<String, usize>,
    issues: &'a mut Issues,
    defs: Defs,
    model: Model,
    shared: Vec<Option<String>>,
    scope_eff: Vec<Vec<Opt>>,
    global_opts: Vec<Opt>,
    classes: HashMap<String, ClassDef>,
    global_res: Vec<(String, Value)>,
    interfaces: Vec<String>,
}

/// Parse `kea-dhcp4.conf` into a model; untranslatable settings go to `issues`.
pub fn parse_conf(text: &str, file: &str, issues: &mut Issues) -> Result<Parsed, ImportError> {
    let clean = strip_comments(text).map_err(|m| ImportError::Parse(format!("{file}: {m}")))?;
    let root: Value =
        serde_json::from_str(&clean).map_err(|e| parse_err(file, e.line(), format!("{e}")))?;
    let Value::Object(top) = &root else {
        return Err(parse_err(file, 1, "the file is not a JSON object"));
    };
    let mut c = Conv {
        file: file.to_string(),
        lines: index_lines(&clean),
        issues,
        defs: Defs::new(),
        model: Model::default(),
        shared: Vec::new(),
        scope_eff: Vec::new(),
        global_opts: Vec::new(),
        classes: HashMap::new(),
        global_res: Vec::new(),
        interfaces: Vec::new(),
    };
    for (k, v) in top {
        if k == "Dhcp4" {
            continue;
        }
        c.report(
            k,
            k,
            if k == "Logging" {
                "Tandem logs to stderr (the systemd journal)"
            } else {
                "not a DHCPv4 server setting: ignored"
            },
        );
        let _ = v;
    }
    let Some(Value::Object(d)) = top.get("Dhcp4") else {
        return Err(parse_err(file, 1, "no \"Dhcp4\" object"));
    };
    c.dhcp4(d)?;
    c.model.header = vec![
        format!("Imported from Kea's {file} by `tandemctl import kea`."),
        "Check it with `tandemd --check-config FILE`; see docs/config.md for every key.".into(),
    ];
    let mut p = Parsed {
        model: c.model,
        shared: c.shared,
    };
    if p.model.interfaces.is_empty() {
        p.model.interfaces = c
            .interfaces
            .iter()
            .map(|s| s.split('/').next().unwrap_or(s).to_string())
            .collect();
        p.model.interfaces.dedup();
    }
    // Interfaces written as NAME/ADDRESS give the server's address and its directly attached scope.
    for spec in &c.interfaces {
        if let Some((n, a)) = spec.split_once('/') {
            if let Ok(a) = a.parse::<Ipv4Addr>() {
                if p.model.server_id.is_none() {
                    p.model.server_id = Some(a);
                }
                if let Some(si) = p.model.scope_of(a) {
                    if p.model.scopes[si].interface.is_none() {
                        p.model.scopes[si].interface = Some(n.to_string());
                    }
                }
            }
        }
    }
    Ok(p)
}

/// Kea's CSV option data split at unescaped commas, with `\\,` read as `,` and `\\\\` as `\\`.
pub fn csv_fields(data: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = data.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '\\')) => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            },
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn u32_of(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn join(p: &str, k: &str) -> String {
    if p.is_empty() {
        k.to_string()
    } else {
        format!("{p}.{k}")
    }
}

/// A range `A - B` or a prefix `A/N`.
fn pool_range(s: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().ok()?;
        let b: Ipv4Addr = b.trim().parse().ok()?;
        return Some(if u32::from(a) <= u32::from(b) {
            (a, b)
        } else {
            (b, a)
        });
    }
    let (a, n) = s.split_once('/')?;
    let a: Ipv4Addr = a.trim().parse().ok()?;
    let n: u8 = n.trim().parse().ok().filter(|n| *n <= 32)?;
    let lo = u32::from(a) & mask(n);
    Some((Ipv4Addr::from(lo), Ipv4Addr::from(lo | !mask(n))))
}

/// Kea test-expression tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Et {
    Ident(String),
    Str(Vec<u8>),
    Num(u64),
    Hex(Vec<u8>),
    P(char),
    Eq,
}

fn lex_test(s: &str) -> Result<Vec<Et>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' {
            let st = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated string".into());
            }
            out.push(Et::Str(b[st..i].to_vec()));
            i += 1;
        } else if c == b'=' && b.get(i + 1) == Some(&b'=') {
            out.push(Et::Eq);
            i += 2;
        } else if matches!(c, b'(' | b')' | b'[' | b']' | b',' | b'.') {
            out.push(Et::P(c as char));
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                i += 1;
            }
            let w = &s[st..i];
            if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
                out.push(Et::Hex(optdefs::hex_bytes(h)?));
            } else if let Ok(n) = w.parse::<u64>() {
                out.push(Et::Num(n));
            } else {
                out.push(Et::Ident(w.to_ascii_lowercase()));
            }
        } else {
            return Err(format!("unexpected `{}`", c as char));
        }
    }
    Ok(out)
}

/// Parse a Kea class `test` into conditions (see [`super::dhcpd`] for the same subset).
pub fn parse_test(s: &str) -> Result<(bool, Vec<Cond>), String> {
    let t = lex_test(s)?;
    let mut i = 0;
    let mut conds = Vec::new();
    let mut joiner: Option<String> = None;
    // lhs: option[N].text|hex|exists, pkt4.mac, relay4[N].hex, substring(lhs, 0, L)
    fn lhs(t: &[Et], i: &mut usize, inner: bool) -> Result<KeaLhs, String> {
        let id = |k: usize| match t.get(k) {
            Some(Et::Ident(w)) => w.clone(),
            _ => String::new(),
        };
        match id(*i).as_str() {
            "substring" => {
                if inner {
                    return Err("nested substring".into());
                }
                if t.get(*i + 1) != Some(&Et::P('(')) {
                    return Err("expected substring(".into());
                }
                *i += 2;
                let (c, hex, sub, exists) = lhs(t, i, true)?;
                if sub.is_some() || exists {
                    return Err("nested substring".into());
                }
                match (
                    t.get(*i),
                    t.get(*i + 1),
                    t.get(*i + 2),
                    t.get(*i + 3),
                    t.get(*i + 4),
                ) {
                    (
                        Some(Et::P(',')),
                        Some(Et::Num(a)),
                        Some(Et::P(',')),
                        Some(Et::Num(l)),
                        Some(Et::P(')')),
                    ) => {
                        let r = (c, hex, Some((*a, *l)), false);
                        *i += 5;
                        Ok(r)
                    }
                    _ => Err("expected substring(VALUE, START, LENGTH)".into()),
                }
            }
            "option" | "relay4" => {
                let relay = id(*i) == "relay4";
                let n = match (t.get(*i + 1), t.get(*i + 2), t.get(*i + 3), t.get(*i + 4)) {
                    (Some(Et::P('[')), Some(Et::Num(n)), Some(Et::P(']')), Some(Et::P('.'))) => *n,
                    _ => return Err("expected option[CODE].text, .hex or .exists".into()),
                };
                let field = id(*i + 5);
                *i += 6;
                let (c, hex) = match (relay, n) {
                    (false, 60) => ("vendor_class", false),
                    (false, 77) => ("user_class", false),
                    (false, 61) => ("client_id", true),
                    (true, 1) => ("circuit_id", false),
                    (true, 2) => ("remote_id", false),
                    _ => {
                        return Err(format!(
                            "{}[{n}] is not a criterion Tandem policies test",
                            if relay { "relay4" } else { "option" }
                        ))
                    }
                };
                match field.as_str() {
                    "text" | "hex" => Ok((c, hex, None, false)),
                    "exists" => Ok((c, hex, None, true)),
                    other => Err(format!("`.{other}` cannot be translated")),
                }
            }
            "pkt4" => {
                if t.get(*i + 1) == Some(&Et::P('.')) && id(*i + 2) == "mac" {
                    *i += 3;
                    Ok(("mac", true, None, false))
                } else {
                    Err("only pkt4.mac can be translated".into())
                }
            }
            other => Err(format!("`{other}` is not a criterion Tandem policies test")),
        }
    }
    loop {
        let mut not = false;
        if t.get(i) == Some(&Et::Ident("not".into())) {
            not = true;
            i += 1;
        }
        let (c, hex, sub, exists) = lhs(&t, &mut i, false)?;
        let value = if exists {
            "*".to_string()
        } else {
            if t.get(i) != Some(&Et::Eq) {
                return Err("only `==` comparisons can be translated".into());
            }
            let v = match t.get(i + 1) {
                Some(Et::Str(b)) | Some(Et::Hex(b)) => b.clone(),
                _ => return Err("the compared value must be a 'string' or 0xHEX".into()),
            };
            i += 2;
            let prefix =
                match sub {
                    None => false,
                    Some((0, l)) if l as usize == v.len() => true,
                    _ => return Err(
                        "only prefixes (substring from 0 of the value's length) can be translated"
                            .into(),
                    ),
                };
            if c == "mac" || hex {
                let mut s = super::model::hex_colon(&v);
                if prefix {
                    s.push_str(":*");
                }
                s
            } else {
                let txt = String::from_utf8_lossy(&v).into_owned();
                let mut s = if txt.chars().any(|ch| ch.is_control() || ch == '*')
                    || txt.starts_with("hex:")
                    || txt.starts_with("text:")
                {
                    format!("hex:{}", super::model::hex_colon(&v))
                } else {
                    txt
                };
                if prefix {
                    s.push('*');
                }
                s
            }
        };
        conds.push(Cond {
            criterion: c,
            values: vec![value],
            not,
        });
        if i >= t.len() {
            break;
        }
        let op = match t.get(i) {
            Some(Et::Ident(w)) if w == "and" || w == "or" => w.clone(),
            other => return Err(format!("unexpected {other:?}")),
        };
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
    fn line(&self, path: &str) -> usize {
        let mut p = path.to_string();
        loop {
            if let Some(&l) = self.lines.get(&p) {
                return l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return 0,
            }
        }
    }

    fn report(&mut self, path: &str, directive: &str, why: impl Into<String>) {
        let line = self.line(path);
        let file = self.file.clone();
        self.issues.add(&file, line, directive, why);
    }

    fn dhcp4(&mut self, d: &serde_json::Map<String, Value>) -> Result<(), ImportError> {
        let base = "Dhcp4";
        if let Some(Value::Array(defs)) = d.get("option-def") {
            for (i, v) in defs.iter().enumerate() {
                self.option_def(&format!("{base}.option-def[{i}]"), v);
            }
        }
        let mut g = Params::default();
        self.params(base, d, &mut g, true);
        self.global_opts = g.options.clone();
        self.model.options = g.options.clone();
        if let Some(Value::Array(cl)) = d.get("client-classes") {
            for (i, v) in cl.iter().enumerate() {
                self.class(&format!("{base}.client-classes[{i}]"), v, &g);
            }
        }
        if let Some(Value::Array(res)) = d.get("reservations") {
            for (i, v) in res.iter().enumerate() {
                self.global_res
                    .push((format!("{base}.reservations[{i}]"), v.clone()));
            }
        }
        if let Some(Value::Array(a)) = d.get("subnet4") {
            for (i, s) in a.iter().enumerate() {
                self.subnet(&format!("{base}.subnet4[{i}]"), s, &g, None)?;
            }
        }
        if let Some(Value::Array(a)) = d.get("shared-networks") {
            for (i, n) in a.iter().enumerate() {
                self.shared_network(&format!("{base}.shared-networks[{i}]"), n, &g)?;
            }
        }
        for (k, v) in d {
            let p = join(base, k);
            match k.as_str() {
                "subnet4" | "shared-networks" => {}
                "interfaces-config" => {
                    if let Value::Object(o) = v {
                        for (ik, iv) in o {
                            let ip = join(&p, ik);
                            match ik.as_str() {
                                "interfaces" => {
                                    for (j, s) in iv.as_array().into_iter().flatten().enumerate() {
                                        match s.as_str() {
                                            Some("*") | None => self.report(&format!("{ip}[{j}]"), "interfaces", "\"*\" (every interface): name the interfaces with --interface"),
                                            Some(s) => self.interfaces.push(s.to_string()),
                                        }
                                    }
                                }
                                "dhcp-socket-type" | "re-detect" => {}
                                _ => self.report(&ip, ik, "no Tandem counterpart"),
                            }
                        }
                    }
                }
                "lease-database" => {
                    let ty = v.get("type").and_then(Value::as_str).unwrap_or("memfile");
                    if ty != "memfile" {
                        self.report(&p, k, format!("a {ty} lease database is not read: export it to a memfile CSV and give it with --leases"));
                    }
                    if let Some(Value::Object(o)) = Some(v) {
                        for ok in o.keys() {
                            if !matches!(ok.as_str(), "type" | "name" | "persist" | "lfc-interval")
                            {
                                self.report(
                                    &join(&p, ok),
                                    ok,
                                    "no Tandem counterpart (Tandem keeps its own journal)",
                                );
                            }
                        }
                    }
                }
                "hooks-libraries" => self.hooks(&p, v)?,
                "decline-probation-period" => match u32_of(v).filter(|n| *n >= 1) {
                    Some(n) => self.model.decline_probation = Some(n),
                    None => self.report(&p, k, "expected seconds, at least 1"),
                },
                "option-def" | "client-classes" | "reservations" => {}
                "valid-lifetime"
                | "min-valid-lifetime"
                | "max-valid-lifetime"
                | "renew-timer"
                | "rebind-timer"
                | "authoritative"
                | "option-data"
                | "calculate-tee-times"
                | "t1-percent"
                | "t2-percent"
                | "next-server"
                | "boot-file-name"
                | "server-hostname"
                | "match-client-id"
                | "echo-client-id"
                | "host-reservation-identifiers"
                | "reservation-mode"
                | "reservations-global"
                | "reservations-in-subnet"
                | "reservations-out-of-pool"
                | "dhcp-ddns"
                | "ddns-send-updates"
                | "comment"
                | "user-context" => {}
                "control-socket" => self.report(
                    &p,
                    k,
                    "Tandem's admin API (tandemctl) is configured with server.admin_listen",
                ),
                "loggers" => self.report(
                    &p,
                    k,
                    "Tandem logs to stderr (the systemd journal); see server.log_format",
                ),
                "expired-leases-processing" => {
                    self.report(&p, k, "Tandem reclaims expired leases on its own")
                }
                "multi-threading" => self.report(
                    &p,
                    k,
                    "Tandem's workers are set with server.workers / [dataplane]",
                ),
                _ => self.report(&p, k, "no Tandem counterpart"),
            }
        }
        self.place_global_reservations();
        self.finish_classes();
        self.finish_scopes();
        Ok(())
    }

    fn option_def(&mut self, p: &str, v: &Value) {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let code = v
            .get("code")
            .and_then(Value::as_u64)
            .filter(|c| (1..=254).contains(c));
        let space = v.get("space").and_then(Value::as_str).unwrap_or("dhcp4");
        let ty = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let array = v.get("array").and_then(Value::as_bool).unwrap_or(false);
        let Some(code) = code else {
            self.report(p, "option-def", "the code is not a number from 1 to 254");
            return;
        };
        if space != "dhcp4" {
            self.report(
                p,
                "option-def",
                format!("options of space `{space}` (vendor sub-options) cannot be translated"),
            );
            return;
        }
        match optdefs::kea_type(ty, array) {
            Ok((kind, array)) if !name.is_empty() => self.defs.define(Def {
                name,
                code: code as u8,
                kind,
                array,
            }),
            Ok(_) => self.report(p, "option-def", "no name"),
            Err(m) => self.report(p, "option-def", m),
        }
    }

    /// One `option-data` entry into `opts`.
    fn option(&mut self, p: &str, v: &Value, opts: &mut Vec<Opt>, global: bool) {
        let name = v.get("name").and_then(Value::as_str);
        let code = v.get("code").and_then(Value::as_u64);
        let space = v.get("space").and_then(Value::as_str).unwrap_or("dhcp4");
        let shown = name
            .map(str::to_string)
            .or(code.map(|c| format!("code {c}")))
            .unwrap_or_default();
        let directive = format!("option-data {shown}");
        if space != "dhcp4" {
            self.report(
                p,
                &directive,
                format!("options of space `{space}` (vendor sub-options) cannot be translated"),
            );
            return;
        }
        if v.get("never-send").and_then(Value::as_bool) == Some(true) {
            self.report(
                p,
                &directive,
                "never-send has no Tandem counterpart: not imported",
            );
            return;
        }
        let def = match (name, code) {
            (Some(n), _) => self.defs.by_name(n),
            (None, Some(c)) if (1..=254).contains(&c) => self.defs.by_code(c as u8).or(Some(Def {
                name: format!("code {c}"),
                code: c as u8,
                kind: optdefs::Kind::Hex,
                array: false,
            })),
            _ => None,
        };
        let Some(def) = def else {
            self.report(p, &directive, "unknown option (define it in option-def)");
            return;
        };
        let data = v.get("data").and_then(Value::as_str).unwrap_or_default();
        let csv_format = v.get("csv-format").and_then(Value::as_bool).unwrap_or(true);
        if csv_format && matches!(def.code, 43 | 124 | 125) && name.is_some() {
            self.report(
                p,
                &directive,
                "vendor options built from sub-options (enterprise ids, vendor spaces) cannot be translated; give the whole value as hex with csv-format false",
            );
            return;
        }
        let csv = csv_format && def.kind != optdefs::Kind::Hex;
        let value = if !csv {
            optdefs::hex_bytes(data).map(OptValue::Hex)
        } else {
            let fields = csv_fields(data);
            let items: Vec<Item> = if matches!(def.kind, optdefs::Kind::Text) && !def.array {
                vec![Item::Word(fields.join(","))]
            } else {
                fields
                    .into_iter()
                    .map(|s| Item::Word(s.trim().to_string()))
                    .filter(|i| *i != Item::Word(String::new()))
                    .collect()
            };
            optdefs::value(&def, &items)
        };
        let value = match value {
            Ok(v) => v,
            Err(m) => {
                self.report(p, &directive, m);
                return;
            }
        };
        match def.code {
            54 if global => {
                if let OptValue::Ips(a) = &value {
                    self.model.server_id = a.first().copied();
                }
            }
            50..=59 | 61 | 82 => {
                self.report(p, &directive, format!("option {} is set by the server itself in Tandem (use lease_time, renew_time, rebind_time or server_id)", def.code));
            }
            _ => set_opt(
                opts,
                Opt {
                    code: def.code,
                    value,
                },
            ),
        }
    }

    /// The parameters of one level (global, shared network, subnet, pool) into `p`.
    fn params(
        &mut self,
        path: &str,
        o: &serde_json::Map<String, Value>,
        p: &mut Params,
        global: bool,
    ) {
        for (k, v) in o {
            let kp = join(path, k);
            match k.as_str() {
                "valid-lifetime" => p.valid = u32_of(v),
                "min-valid-lifetime" => p.min_valid = u32_of(v),
                "max-valid-lifetime" => p.max_valid = u32_of(v),
                "renew-timer" => p.renew = u32_of(v),
                "rebind-timer" => p.rebind = u32_of(v),
                "authoritative" => p.authoritative = v.as_bool().unwrap_or(false),
                "interface" => p.interface = v.as_str().map(str::to_string),
                "client-class" => p.client_class = v.as_str().map(str::to_string),
                "option-data" => {
                    for (i, od) in v.as_array().into_iter().flatten().enumerate() {
                        let mut opts = std::mem::take(&mut p.options);
                        self.option(&format!("{kp}[{i}]"), od, &mut opts, global);
                        p.options = opts;
                    }
                }
                "calculate-tee-times" => {
                    if v.as_bool() == Some(false) && o.get("renew-timer").is_none() {
                        self.report(
                            &kp,
                            k,
                            "Tandem always sends T1 and T2 (by default 1/2 and 7/8 of the lease)",
                        );
                    }
                }
                "t1-percent" | "t2-percent" => {
                    let def = if k == "t1-percent" { 0.5 } else { 0.875 };
                    if v.as_f64().is_some_and(|x| (x - def).abs() > 1e-9) {
                        self.report(&kp, k, "Tandem's T1/T2 default to 1/2 and 7/8 of the lease; other fractions are not translated (set renew_time/rebind_time)");
                    }
                }
                "boot-file-name" => {
                    if let Some(f) = v.as_str().filter(|s| !s.is_empty()) {
                        set_opt(
                            &mut p.options,
                            Opt {
                                code: 67,
                                value: OptValue::Text(f.to_string()),
                            },
                        );
                        self.report(&kp, k, "written as option 67 (bootfile_name): Tandem does not fill the BOOTP file field");
                    }
                }
                "next-server" | "server-hostname" => {
                    if v.as_str().is_some_and(|s| !s.is_empty() && s != "0.0.0.0") {
                        self.report(&kp, k, "Tandem does not fill the BOOTP siaddr/sname fields");
                    }
                }
                "match-client-id" => {
                    if v.as_bool() == Some(false) {
                        self.report(
                            &kp,
                            k,
                            "Tandem identifies a client by its client identifier when it sends one",
                        );
                    }
                }
                "echo-client-id"
                | "reservation-mode"
                | "reservations-global"
                | "reservations-in-subnet"
                | "reservations-out-of-pool"
                | "comment"
                | "user-context"
                | "id"
                | "subnet"
                | "pools"
                | "reservations"
                | "name"
                | "subnet4"
                | "store-extended-info" => {}
                "host-reservation-identifiers" => {
                    for id in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !matches!(id, "hw-address" | "client-id") {
                            self.report(&kp, k, format!("reservations by `{id}` cannot be translated (Tandem reserves by MAC or client id)"));
                        }
                    }
                }
                "dhcp-ddns" => {
                    if v.get("enable-updates").and_then(Value::as_bool) == Some(true) {
                        self.report(&kp, k, "Tandem does no dynamic DNS updates");
                    }
                }
                "ddns-send-updates" => {
                    if v.as_bool() == Some(true) && global {
                        self.report(&kp, k, "Tandem does no dynamic DNS updates");
                    }
                }
                "relay" => {}
                "require-client-classes" | "evaluate-additional-classes" => {
                    self.report(&kp, k, "required/additional classes cannot be translated")
                }
                _ if global => {}
                _ => self.report(&kp, k, "no Tandem counterpart"),
            }
        }
    }

    fn class(&mut self, p: &str, v: &Value, g: &Params) {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut cp = Params::default();
        let mut def = ClassDef {
            any: false,
            conds: Vec::new(),
            options: Vec::new(),
            lease_time: None,
            bad: false,
            used: false,
            path: p.to_string(),
        };
        let _ = g;
        if let Value::Object(o) = v {
            for (k, x) in o {
                let kp = join(p, k);
                match k.as_str() {
                    "name" | "comment" | "user-context" => {}
                    "test" => match parse_test(x.as_str().unwrap_or_default()) {
                        Ok((any, conds)) => {
                            def.any = any;
                            def.conds = conds;
                        }
                        Err(m) => {
                            self.report(
                                &kp,
                                "test",
                                format!("class {name}: cannot be a policy condition: {m}"),
                            );
                            def.bad = true;
                        }
                    },
                    "option-data" => {
                        for (i, od) in x.as_array().into_iter().flatten().enumerate() {
                            self.option(&format!("{kp}[{i}]"), od, &mut cp.options, false);
                        }
                    }
                    "valid-lifetime" => def.lease_time = u32_of(x),
                    "boot-file-name" => {
                        if let Some(f) = x.as_str().filter(|s| !s.is_empty()) {
                            set_opt(
                                &mut cp.options,
                                Opt {
                                    code: 67,
                                    value: OptValue::Text(f.to_string()),
                                },
                            );
                            self.report(&kp, k, "written as option 67 (bootfile_name): Tandem does not fill the BOOTP file field");
                        }
                    }
                    _ => self.report(&kp, k, format!("class {name}: no Tandem counterpart")),
                }
            }
        }
        if v.get("test").is_none() && !def.bad {
            self.report(
                p,
                "client-classes",
                format!(
                    "class {name} has no test (required or hook-set classes cannot be translated)"
                ),
            );
            def.bad = true;
        }
        def.options = cp.options;
        self.classes.insert(name, def);
    }

    /// The conditions of class `name` (Kea's built-in VENDOR_CLASS_ classes included).
    fn class_conds(&mut self, name: &str, at: &str) -> Option<ClassUse> {
        if let Some(c) = self.classes.get_mut(name) {
            c.used = true;
            if c.bad || c.conds.is_empty() {
                self.report(
                    at,
                    "client-class",
                    format!("class `{name}` could not be translated: these addresses are open to every client"),
                );
                return None;
            }
            return Some((c.any, c.conds.clone(), c.options.clone(), c.lease_time));
        }
        if let Some(vc) = name.strip_prefix("VENDOR_CLASS_") {
            return Some((
                false,
                vec![Cond {
                    criterion: "vendor_class",
                    values: vec![vc.to_string()],
                    not: false,
                }],
                Vec::new(),
                None,
            ));
        }
        self.report(
            at,
            "client-class",
            format!("class `{name}` is not defined (or is built in without a Tandem counterpart): these addresses are open to every client"),
        );
        None
    }

    fn shared_network(&mut self, p: &str, v: &Value, g: &Params) -> Result<(), ImportError> {
        let Value::Object(o) = v else {
            return Err(parse_err(
                &self.file,
                self.line(p),
                "a shared network is an object",
            ));
        };
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("shared")
            .to_string();
        let mut sp = g.clone();
        self.params(p, o, &mut sp, false);
        let before = self.model.scopes.len();
        if let Some(Value::Array(a)) = o.get("subnet4") {
            for (i, s) in a.iter().enumerate() {
                self.subnet(&format!("{p}.subnet4[{i}]"), s, &sp, Some(&name))?;
            }
        }
        let n = self.model.scopes.len() - before;
        if n > 1 && sp.interface.is_none() {
            self.report(p, "shared-networks", format!("its {n} subnets become separate scopes; relayed clients are served from the subnet holding the relay's giaddr only"));
        }
        Ok(())
    }

    fn subnet(
        &mut self,
        p: &str,
        v: &Value,
        parent: &Params,
        shared: Option<&str>,
    ) -> Result<(), ImportError> {
        let Value::Object(o) = v else {
            return Err(parse_err(&self.file, self.line(p), "a subnet is an object"));
        };
        let net = o.get("subnet").and_then(Value::as_str).unwrap_or_default();
        let Some((a, n)) = net.split_once('/').and_then(|(a, n)| {
            Some((
                a.trim().parse::<Ipv4Addr>().ok()?,
                n.trim().parse::<u8>().ok().filter(|n| *n <= 32)?,
            ))
        }) else {
            return Err(parse_err(
                &self.file,
                self.line(&join(p, "subnet")),
                format!("`{net}` is not a subnet like 10.0.0.0/24"),
            ));
        };
        let network = Ipv4Addr::from(u32::from(a) & mask(n));
        let mut sp = parent.clone();
        sp.client_class = None;
        self.params(p, o, &mut sp, false);
        let mut name = format!("{network}/{n}");
        if self.model.scopes.iter().any(|s| s.name == name) {
            name = format!("{name}@{}", self.line(p));
        }
        let mut sc = Scope::new(name, (network, n));
        sc.comments
            .push(format!("subnet {net} ({}:{})", self.file, self.line(p)));
        if let Some(g) = shared {
            sc.comments.push(format!("of shared network {g}"));
        }
        sc.interface = sp.interface.clone();
        sc.authoritative = sp.authoritative;
        let mut lease = sp.valid.unwrap_or(KEA_DEFAULT_LIFETIME);
        if let Some(m) = sp.max_valid.filter(|m| *m < lease) {
            self.report(
                p,
                "max-valid-lifetime",
                format!("{m} s is below valid-lifetime ({lease} s): Tandem grants {m} s"),
            );
            lease = m;
        }
        if let Some(m) = sp.min_valid.filter(|m| *m > lease) {
            self.report(
                p,
                "min-valid-lifetime",
                format!("{m} s is above valid-lifetime ({lease} s): Tandem grants {m} s"),
            );
            lease = m;
        }
        sc.lease_time = Some(lease.clamp(1, 0xFFFF_FFFE));
        let (t1, t2) = (sp.renew, sp.rebind);
        let ok = t1.is_none_or(|t| t > 0 && t < lease)
            && t2.is_none_or(|t| t > 0 && t < lease)
            && match (t1, t2) {
                (Some(a), Some(b)) => a < b,
                (Some(a), None) => a < lease * 7 / 8,
                (None, Some(b)) => b > lease / 2,
                (None, None) => true,
            };
        if ok {
            sc.renew_time = t1;
            sc.rebind_time = t2;
        } else {
            self.report(p, "renew-timer", format!("renew {t1:?} / rebind {t2:?} do not satisfy T1 < T2 < lease time ({lease} s): Tandem's defaults are used"));
        }
        if let Some(Value::Object(r)) = o.get("relay") {
            for (j, ra) in r
                .get("ip-addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let inside = ra
                    .as_str()
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
                    .is_some_and(|x| in_subnet(x, (network, n)));
                if !inside {
                    self.report(&format!("{p}.relay.ip-addresses[{j}]"), "relay", "Tandem chooses a relayed client's scope by the giaddr inside the subnet (or option 82/118 link selection); a relay address outside it is not translated");
                }
            }
        }
        let si = self.model.scopes.len();
        self.model.scopes.push(sc);
        self.shared.push(shared.map(str::to_string));
        self.scope_eff.push(sp.options.clone());
        for (i, pv) in o
            .get("pools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.pool(&format!("{p}.pools[{i}]"), pv, si, &sp);
        }
        if let Some(cls) = sp.client_class.clone() {
            let at = join(p, "client-class");
            if self.model.scopes[si].policies.is_empty() {
                if let Some((any, conds, options, lt)) = self.class_conds(&cls, &at) {
                    let ranges = self.model.scopes[si].ranges.clone();
                    self.model.scopes[si].policies.push(Policy {
                        name: cls.clone(),
                        any: any && conds.len() > 1,
                        conditions: conds,
                        ranges,
                        lease_time: lt,
                        options,
                        origin: format!("subnet client-class {cls}"),
                    });
                }
            } else {
                self.report(&at, "client-class", "a subnet's client-class together with pools' client-classes cannot be translated");
            }
        }
        for (i, rv) in o
            .get("reservations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.reservation(&format!("{p}.reservations[{i}]"), rv, Some(si));
        }
        Ok(())
    }

    fn pool(&mut self, p: &str, v: &Value, si: usize, sp: &Params) {
        let spec = v.get("pool").and_then(Value::as_str).unwrap_or_default();
        let Some((a, b)) = pool_range(spec) else {
            self.report(
                p,
                "pool",
                format!("`{spec}` is not a range like 10.0.0.10 - 10.0.0.200 or a prefix"),
            );
            return;
        };
        let sc = &self.model.scopes[si];
        if !sc.contains(a) || !sc.contains(b) {
            let n = sc.name.clone();
            self.report(p, "pool", format!("{a}-{b} is not inside subnet {n}"));
            return;
        }
        let (net, prefix) = sc.subnet;
        let (mut lo, mut hi) = (u32::from(a), u32::from(b));
        if prefix <= 30 {
            lo = lo.max(u32::from(net) + 1);
            hi = hi.min((u32::from(net) | !mask(prefix)) - 1);
        }
        if lo > hi {
            self.report(
                p,
                "pool",
                format!("{spec} holds only the network or broadcast address"),
            );
            return;
        }
        let r = (Ipv4Addr::from(lo), Ipv4Addr::from(hi));
        self.model.scopes[si].ranges.push(r);
        let mut pp = Params::default();
        let mut opts = Vec::new();
        if let Value::Object(o) = v {
            for (k, x) in o {
                let kp = join(p, k);
                match k.as_str() {
                    "pool" | "comment" | "user-context" | "pool-id" => {}
                    "option-data" => {
                        for (i, od) in x.as_array().into_iter().flatten().enumerate() {
                            self.option(&format!("{kp}[{i}]"), od, &mut opts, false);
                        }
                    }
                    "client-class" => pp.client_class = x.as_str().map(str::to_string),
                    _ => self.report(&kp, k, "no Tandem counterpart"),
                }
            }
        }
        let _ = sp;
        match pp.client_class {
            Some(cls) => {
                let at = join(p, "client-class");
                if let Some((any, conds, mut options, lt)) = self.class_conds(&cls, &at) {
                    for o in opts {
                        set_opt(&mut options, o);
                    }
                    let sc = &mut self.model.scopes[si];
                    let mut name = cls.clone();
                    if sc.policies.iter().any(|x| x.name == name) {
                        name = format!("{cls}@{}", self.lines.get(p).copied().unwrap_or(0));
                    }
                    let sc = &mut self.model.scopes[si];
                    sc.policies.push(Policy { name, any: any && conds.len() > 1, conditions: conds, ranges: vec![r], lease_time: lt, options, origin: format!("pool {spec} for client-class {cls}") });
                }
            }
            None if !opts.is_empty() => self.report(p, "option-data", "options set in a pool without a client-class have no Tandem counterpart (Tandem sets them per scope, policy or reservation): not imported"),
            None => {}
        }
    }

    fn reservation(&mut self, p: &str, v: &Value, scope: Option<usize>) {
        let Value::Object(o) = v else { return };
        let mut key = None;
        let mut addr = None;
        let mut hostname = None;
        let mut opts = Vec::new();
        for (k, x) in o {
            let kp = join(p, k);
            let s = x.as_str().unwrap_or_default();
            match k.as_str() {
                "hw-address" => match optdefs::hex_bytes(s) {
                    Ok(b) if b.len() == 6 => {
                        if key.is_none() {
                            key = Some(ResKey::Mac(b.try_into().unwrap_or([0; 6])));
                        } else {
                            self.report(&kp, k, "a reservation names one client key in Tandem: the first given is used");
                        }
                    }
                    _ => self.report(&kp, k, "only 6-byte Ethernet addresses can be reserved"),
                },
                "client-id" => match optdefs::hex_bytes(s) {
                    Ok(b) if b.len() >= 2 => {
                        if key.is_none() {
                            key = Some(ResKey::ClientId(b));
                        } else {
                            self.report(&kp, k, "a reservation names one client key in Tandem: the first given is used");
                        }
                    }
                    _ => self.report(&kp, k, "a client id of at least 2 hex bytes"),
                },
                "ip-address" => match s.parse::<Ipv4Addr>() {
                    Ok(a) => addr = Some(a),
                    Err(_) => self.report(&kp, k, "not an IPv4 address"),
                },
                "hostname" => {
                    if is_domain(s) {
                        hostname = Some(s.to_string());
                    } else if !s.is_empty() {
                        self.report(&kp, k, "not a host name Tandem can send (RFC 1035 labels)");
                    }
                }
                "option-data" => {
                    for (i, od) in x.as_array().into_iter().flatten().enumerate() {
                        self.option(&format!("{kp}[{i}]"), od, &mut opts, false);
                    }
                }
                "boot-file-name" => {
                    if !s.is_empty() {
                        set_opt(
                            &mut opts,
                            Opt {
                                code: 67,
                                value: OptValue::Text(s.to_string()),
                            },
                        );
                        self.report(&kp, k, "written as option 67 (bootfile_name): Tandem does not fill the BOOTP file field");
                    }
                }
                "comment" | "user-context" => {}
                "duid" | "circuit-id" | "flex-id" => self.report(
                    &kp,
                    k,
                    "Tandem reservations match a MAC or client identifier only",
                ),
                _ => self.report(&kp, k, "no Tandem counterpart"),
            }
        }
        let Some(key) = key else {
            self.report(
                p,
                "reservations",
                "no hw-address or client-id: not imported",
            );
            return;
        };
        let Some(addr) = addr else {
            self.report(
                p,
                "reservations",
                "no ip-address (host-specific options or names only): not imported",
            );
            return;
        };
        let si = match scope {
            Some(si) if self.model.scopes[si].contains(addr) => si,
            _ => match self.model.scope_of(addr) {
                Some(si) => si,
                None => {
                    self.report(
                        p,
                        "reservations",
                        format!("{addr} is in no subnet: not imported"),
                    );
                    return;
                }
            },
        };
        let eff = self.scope_eff[si].clone();
        opts.retain(|o| !eff.contains(o));
        let line = self.line(p);
        let sc = &mut self.model.scopes[si];
        if sc
            .reservations
            .iter()
            .any(|r| r.key == key || r.address == addr)
        {
            let file = self.file.clone();
            self.issues.add(
                &file,
                line,
                "reservations",
                format!(
                    "{addr}: the client or the address is already reserved in {}",
                    sc.name
                ),
            );
            return;
        }
        sc.reservations.push(Reservation {
            key,
            address: addr,
            hostname,
            options: opts,
            origin: format!("{}:{line}", self.file),
        });
    }

    fn place_global_reservations(&mut self) {
        for (p, v) in std::mem::take(&mut self.global_res) {
            self.reservation(&p, &v, None);
        }
    }

    fn finish_classes(&mut self) {
        let mut unused: Vec<(String, String)> = self
            .classes
            .iter()
            .filter(|(_, c)| !c.used)
            .map(|(n, c)| (n.clone(), c.path.clone()))
            .collect();
        unused.sort_by_key(|(_, p)| self.line(p));
        for (name, path) in unused {
            let Some(c) = self.classes.get(&name) else {
                continue;
            };
            if c.bad {
                continue;
            }
            if c.options.is_empty() && c.lease_time.is_none() {
                self.report(&path, "client-classes", format!("class {name} sets nothing and no pool or subnet uses it: nothing to translate"));
                continue;
            }
            let pol = Policy {
                name: name.clone(),
                any: c.any && c.conds.len() > 1,
                conditions: c.conds.clone(),
                ranges: Vec::new(),
                lease_time: c.lease_time,
                options: c.options.clone(),
                origin: format!("client class {name}"),
            };
            for sc in &mut self.model.scopes {
                let mut p = pol.clone();
                if sc.policies.iter().any(|x| x.name == p.name) {
                    p.name = format!("class-{}", p.name);
                }
                sc.policies.push(p);
            }
        }
    }

    fn finish_scopes(&mut self) {
        let mut keep = Vec::new();
        let mut shared = Vec::new();
        for (i, mut sc) in std::mem::take(&mut self.model.scopes)
            .into_iter()
            .enumerate()
        {
            sc.options = self.scope_eff[i]
                .iter()
                .filter(|o| !self.global_opts.contains(o))
                .cloned()
                .collect();
            if sc.ranges.is_empty() {
                if let Some(r) = sc.reservations.first() {
                    sc.ranges.push((r.address, r.address));
                    sc.comments.push("no pool in Kea: the one range is a reserved address, so nothing is handed out dynamically".into());
                } else {
                    let file = self.file.clone();
                    self.issues.add(&file, 0, "subnet4", format!("{} has no pool and no reservation: Tandem needs addresses to serve (not imported)", sc.name));
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
        let names: Vec<String> = self.model.scopes.iter().map(|s| s.name.clone()).collect();
        for f in &mut self.model.failover {
            if f.scopes.is_empty() {
                f.scopes = names.clone();
            }
        }
        self.model.failover.retain(|f| !f.scopes.is_empty());
    }

    fn hooks(&mut self, p: &str, v: &Value) -> Result<(), ImportError> {
        for (i, h) in v.as_array().into_iter().flatten().enumerate() {
            let hp = format!("{p}[{i}]");
            let lib = h.get("library").and_then(Value::as_str).unwrap_or_default();
            if lib.contains("libdhcp_ha") {
                let rels = h
                    .get("parameters")
                    .and_then(|x| x.get("high-availability"))
                    .and_then(Value::as_array);
                match rels {
                    Some(rels) => {
                        for (j, r) in rels.iter().enumerate() {
                            let rp = format!("{hp}.parameters.high-availability[{j}]");
                            if j > 0 {
                                self.report(&rp, "high-availability", "Tandem imports one HA relationship per file: the first is used");
                                continue;
                            }
                            self.ha(&rp, r);
                        }
                    }
                    None => self.report(&hp, "libdhcp_ha.so", "no high-availability parameters"),
                }
            } else if lib.contains("libdhcp_lease_cmds") {
                self.report(
                    &hp,
                    "libdhcp_lease_cmds.so",
                    "Tandem's admin API (tandemctl lease list|show|delete) replaces it",
                );
            } else {
                self.report(
                    &hp,
                    "hooks-libraries",
                    format!("hook {lib} has no Tandem counterpart"),
                );
            }
        }
        Ok(())
    }

    fn ha(&mut self, p: &str, r: &Value) {
        let this = r
            .get("this-server-name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mode = r
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("load-balancing");
        let peers: Vec<(usize, String, Option<Ipv4Addr>, String, bool)> = r
            .get("peers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, x)| {
                let name = x
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let url = x.get("url").and_then(Value::as_str).unwrap_or_default();
                let host = url
                    .split("://")
                    .nth(1)
                    .unwrap_or(url)
                    .split(['/', ':'])
                    .next()
                    .unwrap_or_default();
                let role = x
                    .get("role")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let auto = x
                    .get("auto-failover")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                (i, name, host.parse().ok(), role, auto)
            })
            .collect();
        let Some(me) = peers.iter().find(|x| x.1 == this).cloned() else {
            self.report(
                p,
                "high-availability",
                format!("this-server-name `{this}` is not among the peers: not imported"),
            );
            return;
        };
        let others: Vec<_> = peers
            .iter()
            .filter(|x| x.1 != this && x.3 != "backup")
            .cloned()
            .collect();
        for b in peers.iter().filter(|x| x.3 == "backup") {
            self.report(
                &format!("{p}.peers[{}]", b.0),
                "peers",
                format!(
                    "backup server {}: Tandem relationships have two partners",
                    b.1
                ),
            );
        }
        let [other] = others.as_slice() else {
            self.report(
                p,
                "high-availability",
                "not exactly one partner besides this server: not imported",
            );
            return;
        };
        if mode == "passive-backup" || me.3 == "backup" {
            self.report(
                p,
                "mode",
                "passive-backup (or this server a backup) has no Tandem counterpart: not imported",
            );
            return;
        }
        let Some(partner) = other.2 else {
            self.report(
                &format!("{p}.peers[{}].url", other.0),
                "url",
                "the partner's URL has no IPv4 address (names are not resolved): not imported",
            );
            return;
        };
        let primary = me.3 == "primary";
        let fmode = match mode {
            "hot-standby" => FoMode::HotStandby(primary),
            _ => FoMode::LoadBalance(Some(50)),
        };
        let (pn, sn) = if primary {
            (&me.1, &other.1)
        } else {
            (&other.1, &me.1)
        };
        let name: String = format!("{pn}-{sn}")
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
        let mut f = Failover {
            name,
            primary,
            partner,
            partner_port: None,
            listen: me.2,
            listen_port: None,
            mode: fmode,
            mclt: None,
            switchover: None,
            max_response_delay: None,
            max_unacked: None,
            scopes: Vec::new(),
            comments: vec![
                format!("Kea HA relationship ({}:{}): {mode}, this server {} ({}), partner {} ({})", self.file, self.line(p), me.1, me.3, other.1, other.3),
                "Tandem partners speak the DHCP failover protocol on TCP 647 (not Kea's HTTP URLs); Kea has no MCLT: Tandem's default (1h) applies".into(),
            ],
        };
        if let Some(ms) = r.get("max-response-delay").and_then(Value::as_u64) {
            let s = ms.div_ceil(1000).clamp(3, 3600) as u32;
            f.max_response_delay = Some(s);
        }
        if other.4 {
            // Kea moves to partner-down on its own once the partner stops answering; Tandem
            // does so after state_switchover_interval, at least its minimum for these timers.
            let s = f.max_response_delay.unwrap_or(60) + 2 * 61;
            f.switchover = Some(s);
            f.comments.push(format!("auto-failover: partner-down {s} s after contact is lost (Tandem's shortest for these timers)"));
        }
        if self.model.server_id.is_none() {
            self.model.server_id = me.2;
        }
        if let Value::Object(o) = r {
            for (k, x) in o {
                let kp = join(p, k);
                match k.as_str() {
                    "this-server-name" | "mode" | "peers" | "max-response-delay" => {}
                    "heartbeat-delay" => self.report(&kp, k, "Tandem sends CONTACT every third of max_response_delay"),
                    "max-ack-delay" | "max-unacked-clients" => self.report(&kp, k, "Tandem detects a failed partner by its link alone, not by clients' secs field"),
                    "send-lease-updates" | "sync-leases" | "wait-backup-ack" => {
                        if x.as_bool() == Some(false) {
                            self.report(&kp, k, "Tandem partners always exchange every binding");
                        }
                    }
                    "sync-timeout" | "sync-page-limit" | "delayed-updates-limit" => self.report(&kp, k, "Tandem synchronizes bindings with UPDREQALL; no such tuning"),
                    "multi-threading" | "state-machine" | "trust-anchor" | "cert-file" | "key-file" | "require-client-certs" | "restrict-commands" => self.report(&kp, k, "no Tandem counterpart"),
                    _ => self.report(&kp, k, "no Tandem counterpart"),
                }
            }
        }
        self.model.failover.push(f);
    }
}

#[cfg(test)]
mod tests;
