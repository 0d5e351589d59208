//! Walking the spanned TOML tree: error collection with line/column, key paths, typed getters,
//! and unknown-key detection with suggestions.

use std::collections::HashMap;
use std::ops::Range;

use serde_spanned::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::{ConfigError, ConfigErrors};

/// A spanned TOML value.
pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// A value with the place it came from (byte span and dotted key path).
#[derive(Clone, Debug)]
pub(crate) struct At<T> {
    /// The value.
    pub v: T,
    /// Byte span in the source text.
    pub span: Range<usize>,
    /// Dotted key path.
    pub key: String,
}

impl<T> At<T> {
    pub(crate) fn new(v: T, span: Range<usize>, key: impl Into<String>) -> At<T> {
        At {
            v,
            span,
            key: key.into(),
        }
    }
}

/// Error sink and position bookkeeping for one configuration text.
pub(crate) struct Ctx<'t> {
    origin: String,
    text: &'t str,
    line_starts: Vec<usize>,
    /// Errors found so far, in discovery order.
    pub errors: Vec<ConfigError>,
}

impl<'t> Ctx<'t> {
    pub(crate) fn new(origin: &str, text: &'t str) -> Ctx<'t> {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Ctx {
            origin: origin.to_string(),
            text,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// (line, column), both from 1, of byte offset `at`; columns count characters.
    pub(crate) fn position(&self, at: usize) -> (usize, usize) {
        let at = at.min(self.text.len());
        let line = match self.line_starts.binary_search(&at) {
            Ok(i) => i,
            Err(i) => i - 1, // line_starts[0] == 0 <= at, so i >= 1
        };
        let start = self.line_starts[line];
        let mut prefix = self.text.get(start..at).unwrap_or("");
        if line == 0 {
            prefix = prefix.strip_prefix('\u{feff}').unwrap_or(prefix);
        }
        (line + 1, prefix.chars().count() + 1)
    }

    /// Line (from 1) of byte offset `at`.
    pub(crate) fn line_of(&self, at: usize) -> usize {
        self.position(at).0
    }

    /// Record an error at the start of `span`.
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = self.position(span.start);
        self.errors.push(ConfigError {
            origin: self.origin.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    /// The collected errors, sorted by position (stable: same position keeps discovery order).
    pub(crate) fn finish(&mut self) -> ConfigErrors {
        let mut errors = std::mem::take(&mut self.errors);
        errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(errors)
    }
}

/// The `[header]` (or `[[header]]`) in force at byte offset `at`, for syntax errors; empty before
/// any header.
pub(crate) fn enclosing_header(text: &str, at: usize) -> String {
    let before = text.get(..at.min(text.len())).unwrap_or("");
    for line in before.lines().rev() {
        let l = line.trim();
        if l.starts_with('[') {
            if let Some(end) = l.find(']') {
                let inner = l[..end].trim_start_matches('[').trim();
                return format!("[{inner}]");
            }
        }
    }
    String::new()
}

/// `key` as one segment of a dotted path: bare if it is a TOML bare key, else quoted.
pub(crate) fn segment(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        quoted(key)
    }
}

/// `s` in double quotes, with `"`, `\` and control characters escaped.
pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `path.key` (or `key` at the top level).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        segment(key)
    } else {
        format!("{path}.{}", segment(key))
    }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The value of `key` in `table`.
pub(crate) fn get<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Val<'i>> {
    table.get(key)
}

/// Report every key of `table` not in `allowed`; `misplaced` may explain where a key belongs.
pub(crate) fn check_keys(
    ctx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    path: &str,
    allowed: &[&str],
    misplaced: &dyn Fn(&str) -> Option<String>,
) {
    for (k, _) in table.iter() {
        let name: &str = k.get_ref();
        if allowed.contains(&name) {
            continue;
        }
        let mut message = format!("unknown key `{name}`");
        if let Some(hint) = misplaced(name) {
            message.push_str("; ");
            message.push_str(&hint);
        } else if let Some(s) = suggest(name, allowed) {
            message.push_str(&format!("; did you mean `{s}`?"));
        } else {
            message.push_str(&format!("; expected one of: {}", allowed.join(", ")));
        }
        ctx.error(k.span(), join(path, name), message);
    }
}

/// No hint for any key.
pub(crate) fn no_hint(_: &str) -> Option<String> {
    None
}

/// The candidate closest to `unknown`, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let u = unknown.to_ascii_lowercase().replace('-', "_");
    // A plural where the key is singular (or the reverse) is the likeliest mistake of all.
    let singular = match u.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => u.strip_suffix('s').unwrap_or(&u).to_string(),
    };
    if let Some(&c) = candidates
        .iter()
        .find(|&&c| c == singular || c.strip_suffix('s') == Some(u.as_str()))
    {
        return Some(c);
    }
    let mut best: Option<(usize, &'a str)> = None;
    for &c in candidates {
        let d = levenshtein(&u, c);
        let close = d <= (c.len().max(u.len()) / 3).max(1)
            || (u.len() >= 3 && (c.contains(u.as_str()) || u.contains(c)));
        if close && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// "a string", "an integer", ... for type errors.
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn wrong_type(ctx: &mut Ctx<'_>, v: &Val<'_>, path: &str, expected: &str) {
    ctx.error(
        v.span(),
        path,
        format!("expected {expected}, found {}", type_name(v.get_ref())),
    );
}

/// The string value of `v`, or an error.
pub(crate) fn string<'a>(ctx: &mut Ctx<'_>, v: &'a Val<'_>, path: &str) -> Option<&'a str> {
    match v.get_ref() {
        DeValue::String(s) => Some(s),
        _ => {
            wrong_type(ctx, v, path, "a string");
            None
        }
    }
}

/// The boolean value of `v`, or an error.
pub(crate) fn boolean(ctx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            wrong_type(ctx, v, path, "a boolean (true or false)");
            None
        }
    }
}

/// The integer value of `v` if `v` is an integer (no error otherwise); an error if it overflows.
pub(crate) fn integer_value(ctx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<i128> {
    let DeValue::Integer(i) = v.get_ref() else {
        return None;
    };
    match i128::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) => Some(n),
        Err(_) => {
            ctx.error(v.span(), path, format!("integer {i} is out of range"));
            None
        }
    }
}

/// An integer in `min..=max`, or an error naming the bounds.
pub(crate) fn integer_in(
    ctx: &mut Ctx<'_>,
    v: &Val<'_>,
    path: &str,
    min: i128,
    max: i128,
) -> Option<i128> {
    if !matches!(v.get_ref(), DeValue::Integer(_)) {
        wrong_type(ctx, v, path, "an integer");
        return None;
    }
    let n = integer_value(ctx, v, path)?;
    if n < min || n > max {
        ctx.error(v.span(), path, format!("{n} is out of range {min}..={max}"));
        return None;
    }
    Some(n)
}

/// The array value of `v`, or an error.
pub(crate) fn array<'a, 'i>(
    ctx: &mut Ctx<'_>,
    v: &'a Val<'i>,
    path: &str,
) -> Option<&'a DeArray<'i>> {
    match v.get_ref() {
        DeValue::Array(a) => Some(a),
        _ => {
            wrong_type(ctx, v, path, "an array");
            None
        }
    }
}

/// The table value of `v`, or an error.
pub(crate) fn table<'a, 'i>(
    ctx: &mut Ctx<'_>,
    v: &'a Val<'i>,
    path: &str,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => {
            wrong_type(ctx, v, path, "a table");
            None
        }
    }
}

/// The tables of an array of tables (`[[name]]`); `header` is how to write it, for the message.
pub(crate) fn tables<'a, 'i>(
    ctx: &mut Ctx<'_>,
    v: &'a Val<'i>,
    path: &str,
    header: &str,
) -> Vec<(&'a Val<'i>, &'a DeTable<'i>)> {
    let DeValue::Array(a) = v.get_ref() else {
        ctx.error(
            v.span(),
            path,
            format!(
                "expected an array of tables (write `[[{header}]]`), found {}",
                type_name(v.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::with_capacity(a.len());
    for (i, item) in a.iter().enumerate() {
        match item.get_ref() {
            DeValue::Table(t) => out.push((item, t)),
            other => ctx.error(
                item.span(),
                index(path, i),
                format!("expected a table, found {}", type_name(other)),
            ),
        }
    }
    out
}

/// The items of `v` if it is an array, else `v` alone: for keys that take one value or a list.
/// The paths are `path[i]` for array items and `path` for a lone value.
pub(crate) fn one_or_many<'a, 'i>(v: &'a Val<'i>, path: &str) -> Vec<(String, &'a Val<'i>)> {
    match v.get_ref() {
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, item)| (index(path, i), item))
            .collect(),
        _ => vec![(path.to_string(), v)],
    }
}

/// Parse string `v` with `f`, reporting `f`'s message on failure.
pub(crate) fn parsed<T>(
    ctx: &mut Ctx<'_>,
    v: &Val<'_>,
    path: &str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let s = string(ctx, v, path)?;
    match f(s) {
        Ok(t) => Some(t),
        Err(m) => {
            ctx.error(v.span(), path, m);
            None
        }
    }
}

/// Report a missing required key of the table whose header is at `span`.
pub(crate) fn missing(ctx: &mut Ctx<'_>, span: Range<usize>, path: &str, key: &str, what: &str) {
    ctx.error(
        span,
        join(path, key),
        format!("missing required key `{key}` ({what})"),
    );
}

/// The `name` of item `i` (table `t`, whose header is at `header`) of the array of tables at
/// `array` (like `scope` or `scope."lan".policy`), checked by `parse`; a missing or bad name is
/// recorded (`what` says what the name is for). Also the item's path for its other keys:
/// `array."name"` once the name is known, else `array[i]`.
pub(crate) fn item_name(
    ctx: &mut Ctx<'_>,
    header: Range<usize>,
    t: &DeTable<'_>,
    array: &str,
    i: usize,
    what: &str,
    parse: impl FnOnce(&str) -> Result<String, String>,
) -> (Option<At<String>>, String) {
    let at = index(array, i);
    let name_at = match get(t, "name") {
        None => {
            missing(ctx, header, &at, "name", what);
            None
        }
        Some(v) => parsed(ctx, v, &join(&at, "name"), parse).map(|n| (n, v.span())),
    };
    let path = match &name_at {
        Some((n, _)) => format!("{array}.{}", quoted(n)),
        None => at,
    };
    let name = name_at.map(|(n, span)| At::new(n, span, join(&path, "name")));
    (name, path)
}

/// Choose from a closed set of strings, with a suggestion on a miss.
pub(crate) fn choice<T: Copy>(
    ctx: &mut Ctx<'_>,
    v: &Val<'_>,
    path: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    let s = string(ctx, v, path)?;
    if let Some((_, t)) = choices.iter().find(|(n, _)| *n == s) {
        return Some(*t);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let mut m = format!("`{s}` is not one of: {}", names.join(", "));
    if let Some(g) = suggest(s, &names) {
        m.push_str(&format!("; did you mean `{g}`?"));
    }
    ctx.error(v.span(), path, m);
    None
}

/// A duration in seconds (integer, or string with units) within `min..=max`.
pub(crate) fn duration(
    ctx: &mut Ctx<'_>,
    v: &Val<'_>,
    path: &str,
    min: u64,
    max: u64,
) -> Option<u64> {
    let secs = match v.get_ref() {
        DeValue::Integer(_) => {
            let n = integer_value(ctx, v, path)?;
            if n < 0 {
                ctx.error(
                    v.span(),
                    path,
                    format!("a duration cannot be negative ({n})"),
                );
                return None;
            }
            u64::try_from(n).unwrap_or(u64::MAX)
        }
        DeValue::String(s) => match super::values::duration(s) {
            Ok(n) => n,
            Err(m) => {
                ctx.error(v.span(), path, m);
                return None;
            }
        },
        other => {
            ctx.error(
                v.span(),
                path,
                format!(
                    "expected a duration (seconds, or a string like \"8h\"), found {}",
                    type_name(other)
                ),
            );
            return None;
        }
    };
    if secs < min {
        let m = if min == 1 {
            "must be longer than 0 seconds".to_string()
        } else {
            format!("must be at least {}", super::values::show_duration(min))
        };
        ctx.error(v.span(), path, m);
        return None;
    }
    if secs > max {
        ctx.error(
            v.span(),
            path,
            format!(
                "{secs} seconds is longer than the maximum {max} ({})",
                super::values::show_duration(max)
            ),
        );
        return None;
    }
    Some(secs)
}

/// Report every name that an earlier one already used, pointing at the first use's line.
pub(crate) fn report_duplicate_names<'n>(
    ctx: &mut Ctx<'_>,
    names: impl Iterator<Item = &'n At<String>>,
    what: &str,
    scope_note: &str,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for n in names {
        if let Some(&first) = seen.get(n.v.as_str()) {
            let line = ctx.line_of(first);
            ctx.error(
                n.span.clone(),
                n.key.clone(),
                format!(
                    "{what} {} is already used{scope_note} (line {line})",
                    quoted(&n.v)
                ),
            );
        } else {
            seen.insert(&n.v, n.span.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_typos_and_prefixes() {
        let keys = [
            "ranges",
            "exclusions",
            "lease_time",
            "subnet",
            "dns_servers",
        ];
        assert_eq!(suggest("rangs", &keys), Some("ranges"));
        assert_eq!(suggest("lease", &keys), Some("lease_time"));
        assert_eq!(suggest("dns", &keys), Some("dns_servers"));
        assert_eq!(suggest("lease-time", &keys), Some("lease_time"));
        assert_eq!(suggest("zebra", &keys), None);
        assert_eq!(suggest("policies", &["policy", "options"]), Some("policy"));
        assert_eq!(
            suggest("reservations", &["reservation"]),
            Some("reservation")
        );
        assert_eq!(suggest("exclusion", &keys), Some("exclusions"));
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let ctx = Ctx::new("f", "ab\nçd = 1\n");
        assert_eq!(ctx.position(0), (1, 1));
        assert_eq!(ctx.position(3), (2, 1));
        // 'ç' is two bytes but one column.
        assert_eq!(ctx.position(5), (2, 2));
        let bom = Ctx::new("f", "\u{feff}a = 1");
        assert_eq!(bom.position(3), (1, 1));
    }

    #[test]
    fn segments_quote_non_bare_keys() {
        assert_eq!(segment("lease_time"), "lease_time");
        assert_eq!(segment("a.b"), "\"a.b\"");
        assert_eq!(join("scope[0]", "a b"), "scope[0].\"a b\"");
        assert_eq!(enclosing_header("[server]\nx = \n", 12), "[server]");
        assert_eq!(
            enclosing_header("[[scope]]\n[scope.options]\nx", 26),
            "[scope.options]"
        );
    }
}
