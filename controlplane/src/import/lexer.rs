//! A tokenizer for ISC dhcpd's configuration and lease-file grammar, with line numbers, and a
//! reader of its statements (`words ... ;` or `words ... { statements }`), streamed from any
//! [`BufRead`] one statement at a time so that a large lease file never sits in memory whole.

use std::io::BufRead;

use super::{parse_err, ImportError};

/// Deepest nesting of blocks accepted.
const MAX_DEPTH: usize = 64;
/// Longest line accepted (a quoted string may span lines; this bounds the buffer too).
const MAX_LINE: usize = 1 << 20;

/// One token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A word: keyword, number, address, hex bytes, date, name.
    Word(String),
    /// A quoted string, unescaped (octal `\ooo`, `\xHH`, `\n`, `\t`, `\r`, `\\`, `\"`).
    Str(Vec<u8>),
    /// One of `{ } ; , = ( ) !`.
    Punct(u8),
}

/// A token and the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Line, from 1.
    pub line: usize,
}

impl Token {
    /// The word, lowercased, if this is a word.
    pub fn word(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// The token as the source wrote it (strings quoted), for messages.
    pub fn show(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(b) => format!("\"{}\"", String::from_utf8_lossy(b)),
            Tok::Punct(c) => (*c as char).to_string(),
        }
    }

    /// True if this is the punctuation `c`.
    pub fn is(&self, c: u8) -> bool {
        self.tok == Tok::Punct(c)
    }
}

/// A statement: its words up to `;` or `{`, and its block if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    /// The tokens before `;` or `{`.
    pub words: Vec<Token>,
    /// Line of the first token.
    pub line: usize,
    /// The statements of its `{ ... }` block.
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    /// Word `i`, lowercased (`""` if missing or not a word).
    pub fn w(&self, i: usize) -> String {
        self.words.get(i).and_then(Token::word).unwrap_or_default()
    }

    /// The statement's words as written, for messages (at most the first eight).
    pub fn show(&self) -> String {
        let mut s: Vec<String> = self.words.iter().take(8).map(Token::show).collect();
        if self.words.len() > 8 {
            s.push("...".into());
        }
        s.join(" ")
    }

    /// The leading keywords that name the directive (`option routers`, `failover peer`, ...).
    pub fn directive(&self) -> String {
        let first = self.w(0);
        match first.as_str() {
            "option" | "failover" | "load" | "not" | "binding" | "next" | "rewind" | "allow"
            | "deny" | "ignore" | "hardware" | "peer" | "set" | "on" => {
                let second = self.words.get(1).map(Token::show).unwrap_or_default();
                format!("{first} {second}").trim_end().to_string()
            }
            _ => first,
        }
    }
}

enum Item {
    Stmt(Stmt),
    Close(usize),
    Eof,
}

/// The tokenizer over one input.
pub struct Lexer<R> {
    r: R,
    file: String,
    buf: Vec<u8>,
    pos: usize,
    line: usize,
    eof: bool,
}

fn is_punct(c: u8) -> bool {
    matches!(c, b'{' | b'}' | b';' | b',' | b'=' | b'(' | b')' | b'!')
}

impl<R: BufRead> Lexer<R> {
    /// A tokenizer reading `r`, naming `file` in errors.
    pub fn new(r: R, file: &str) -> Lexer<R> {
        Lexer {
            r,
            file: file.to_string(),
            buf: Vec::new(),
            pos: 0,
            line: 0,
            eof: false,
        }
    }

    /// The current line.
    pub fn line(&self) -> usize {
        self.line
    }

    fn err(&self, m: impl std::fmt::Display) -> ImportError {
        parse_err(&self.file, self.line, m)
    }

    /// Read the next line into the buffer (replacing it unless `append`); false at the end.
    fn fill(&mut self, append: bool) -> Result<bool, ImportError> {
        if self.eof {
            return Ok(false);
        }
        if !append {
            self.buf.clear();
            self.pos = 0;
        }
        let n = <&mut R as std::io::Read>::take(&mut self.r, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| self.err(format!("cannot read: {e}")))?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        if self.buf.len() > MAX_LINE {
            return Err(self.err(format!("line longer than {MAX_LINE} bytes")));
        }
        self.line += 1;
        Ok(true)
    }

    /// The next token, or `None` at the end of the input.
    pub fn next_token(&mut self) -> Result<Option<Token>, ImportError> {
        loop {
            while self.pos < self.buf.len() && self.buf[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.pos >= self.buf.len() || self.buf[self.pos] == b'#' {
                if !self.fill(false)? {
                    return Ok(None);
                }
                continue;
            }
            break;
        }
        let line = self.line;
        let c = self.buf[self.pos];
        if is_punct(c) {
            self.pos += 1;
            return Ok(Some(Token {
                tok: Tok::Punct(c),
                line,
            }));
        }
        if c == b'"' {
            self.pos += 1;
            let s = self.string()?;
            return Ok(Some(Token {
                tok: Tok::Str(s),
                line,
            }));
        }
        let start = self.pos;
        while self.pos < self.buf.len() {
            let c = self.buf[self.pos];
            if c.is_ascii_whitespace() || is_punct(c) || c == b'"' || c == b'#' {
                break;
            }
            self.pos += 1;
        }
        let w = String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned();
        Ok(Some(Token {
            tok: Tok::Word(w),
            line,
        }))
    }

    fn string(&mut self) -> Result<Vec<u8>, ImportError> {
        let mut out = Vec::new();
        loop {
            if self.pos >= self.buf.len() {
                // The string goes on on the next line.
                let keep = self.buf.len();
                if !self.fill(true)? {
                    return Err(self.err("unterminated string"));
                }
                self.pos = keep;
                continue;
            }
            let c = self.buf[self.pos];
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.buf.get(self.pos) else {
                        continue;
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.buf.get(self.pos) {
                                    Some(&d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push((v & 0xff) as u8);
                        }
                        b'x' => {
                            let mut v = 0u32;
                            let mut n = 0;
                            while n < 2 {
                                match self
                                    .buf
                                    .get(self.pos)
                                    .and_then(|d| (*d as char).to_digit(16))
                                {
                                    Some(d) => {
                                        v = v * 16 + d;
                                        self.pos += 1;
                                        n += 1;
                                    }
                                    None => break,
                                }
                            }
                            if n == 0 {
                                out.push(b'x');
                            } else {
                                out.push(v as u8);
                            }
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }

    /// The next top-level statement, or `None` at the end. A `}` without its `{` is an error.
    pub fn next_stmt(&mut self) -> Result<Option<Stmt>, ImportError> {
        match self.item(0)? {
            Item::Stmt(s) => Ok(Some(s)),
            Item::Close(line) => Err(parse_err(&self.file, line, "`}` without a matching `{`")),
            Item::Eof => Ok(None),
        }
    }

    /// Every statement up to the end of the input.
    pub fn all(&mut self) -> Result<Vec<Stmt>, ImportError> {
        let mut v = Vec::new();
        while let Some(s) = self.next_stmt()? {
            v.push(s);
        }
        Ok(v)
    }

    fn item(&mut self, depth: usize) -> Result<Item, ImportError> {
        let mut words: Vec<Token> = Vec::new();
        let mut record = false;
        loop {
            let Some(t) = self.next_token()? else {
                if words.is_empty() {
                    return Ok(Item::Eof);
                }
                return Err(parse_err(
                    &self.file,
                    words[0].line,
                    format!(
                        "statement `{}` is not ended by `;`",
                        words
                            .iter()
                            .take(4)
                            .map(Token::show)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                ));
            };
            if record {
                record = !t.is(b'}');
                words.push(t);
                continue;
            }
            match t.tok {
                Tok::Punct(b';') => {
                    if words.is_empty() {
                        continue;
                    }
                    let line = words[0].line;
                    return Ok(Item::Stmt(Stmt {
                        words,
                        line,
                        block: None,
                    }));
                }
                Tok::Punct(b'}') => {
                    if words.is_empty() {
                        return Ok(Item::Close(t.line));
                    }
                    return Err(parse_err(
                        &self.file,
                        t.line,
                        format!(
                            "`}}` ends the block while statement `{}` lacks its `;`",
                            words
                                .iter()
                                .take(4)
                                .map(Token::show)
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    ));
                }
                Tok::Punct(b'{') => {
                    // `option NAME code N = { type, type };` is a record type, not a block.
                    record = words.last().is_some_and(|w| w.is(b'='))
                        && words.iter().any(|w| w.word().as_deref() == Some("code"));
                    if record {
                        words.push(t);
                        continue;
                    }
                    if words.is_empty() {
                        return Err(parse_err(&self.file, t.line, "`{` without a declaration"));
                    }
                    if depth >= MAX_DEPTH {
                        return Err(parse_err(
                            &self.file,
                            t.line,
                            format!("blocks nested deeper than {MAX_DEPTH}"),
                        ));
                    }
                    let mut block = Vec::new();
                    loop {
                        match self.item(depth + 1)? {
                            Item::Stmt(s) => block.push(s),
                            Item::Close(_) => break,
                            Item::Eof => {
                                return Err(parse_err(
                                    &self.file,
                                    t.line,
                                    "`{` is never closed by `}`",
                                ))
                            }
                        }
                    }
                    let line = words[0].line;
                    return Ok(Item::Stmt(Stmt {
                        words,
                        line,
                        block: Some(block),
                    }));
                }
                _ => words.push(t),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmts(s: &str) -> Result<Vec<Stmt>, ImportError> {
        Lexer::new(s.as_bytes(), "t.conf").all()
    }

    #[test]
    fn statements_blocks_and_lines() {
        let v = stmts("# c\noption routers 10.0.0.1, 10.0.0.2; # x\nsubnet 10.0.0.0 netmask 255.255.255.0 {\n  range 10.0.0.10 10.0.0.20;\n}\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].line, 2);
        assert_eq!(v[0].directive(), "option routers");
        assert_eq!(v[0].words.len(), 5);
        let b = v[1].block.as_ref().unwrap();
        assert_eq!(b[0].line, 4);
        assert_eq!(b[0].w(0), "range");
    }

    #[test]
    fn strings_unescape_octal_and_span_lines() {
        let v = stmts("uid \"\\001RT\\000\\0224V\";\nx \"a\nb\";").unwrap();
        assert_eq!(
            v[0].words[1].tok,
            Tok::Str(vec![1, b'R', b'T', 0, 0o22, b'4', b'V'])
        );
        assert_eq!(v[1].words[1].tok, Tok::Str(b"a\nb".to_vec()));
    }

    #[test]
    fn record_types_are_not_blocks() {
        let v = stmts("option foo code 200 = { ip-address, text };").unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].block.is_none());
    }

    #[test]
    fn bad_input_is_an_error_with_its_line() {
        let e = stmts("a {\n b;\n").unwrap_err().to_string();
        assert!(e.starts_with("t.conf:1:"), "{e}");
        let e = stmts("a;\n}\n").unwrap_err().to_string();
        assert!(e.starts_with("t.conf:2:"), "{e}");
        assert!(stmts("x \"abc").is_err());
        assert!(stmts("a b").is_err());
        assert!(stmts(&"a {".repeat(100)).is_err());
    }
}
