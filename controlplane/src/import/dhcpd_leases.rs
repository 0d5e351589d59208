//! ISC dhcpd's `dhcpd.leases`, streamed statement by statement into a Tandem journal.
//!
//! Every `lease ADDRESS { ... }` entry is read (binding states active, free, backup, expired,
//! released, abandoned, reset; `uid` in octal-escaped string or hex form, `hardware`,
//! `starts`/`ends`/`tstp`/`tsfp`/`atsfp`/`cltt` in `W YYYY/MM/DD HH:MM:SS` (UTC) or
//! `epoch N` form) and written as it comes: the journal keeps the last record of an address, as
//! dhcpd keeps the last entry. Memory stays bounded by one statement.

use std::io::BufRead;
use std::net::Ipv4Addr;

use tandem_dataplane::binding::BindingState;

use super::lexer::{Lexer, Stmt, Tok, Token};
use super::{days_from_civil, parse_err, ImportError, Issues, Lease, LeaseSink};

/// A dhcpd time: `W YYYY/MM/DD HH:MM:SS`, `epoch N` or `never` (seconds since the epoch;
/// `never` is the largest time).
pub fn parse_time(words: &[Token]) -> Result<u32, String> {
    let w: Vec<String> = words
        .iter()
        .map(|t| match &t.tok {
            Tok::Word(w) => w.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["never"] => Ok(u32::MAX),
        ["epoch", n, ..] => n
            .parse::<u32>()
            .map_err(|_| format!("`{n}` is not a time in seconds")),
        [_, date, time] => {
            let bad = || format!("`{date} {time}` is not a date like 2026/12/07 10:00:00");
            let d: Vec<&str> = date.split('/').collect();
            let t: Vec<&str> = time.split(':').collect();
            if d.len() != 3 || t.len() != 3 {
                return Err(bad());
            }
            let y: i64 = d[0].parse().map_err(|_| bad())?;
            let mo: u32 = d[1].parse().map_err(|_| bad())?;
            let da: u32 = d[2].parse().map_err(|_| bad())?;
            let h: i64 = t[0].parse().map_err(|_| bad())?;
            let mi: i64 = t[1].parse().map_err(|_| bad())?;
            let s: i64 = t[2].parse().map_err(|_| bad())?;
            if !(1900..=2200).contains(&y)
                || !(1..=12).contains(&mo)
                || !(1..=31).contains(&da)
                || !(0..=23).contains(&h)
                || !(0..=59).contains(&mi)
                || !(0..=60).contains(&s)
            {
                return Err(bad());
            }
            let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + s;
            u32::try_from(secs.max(0)).map_err(|_| bad())
        }
        _ => Err(format!(
            "`{}` is not a time (expected `W YYYY/MM/DD HH:MM:SS`, `epoch N` or `never`)",
            w.join(" ")
        )),
    }
}

fn state_of(w: &str) -> Option<BindingState> {
    Some(match w {
        "active" => BindingState::Active,
        "free" => BindingState::Free,
        "backup" => BindingState::Backup,
        "expired" => BindingState::Expired,
        "released" => BindingState::Released,
        "abandoned" => BindingState::Abandoned,
        "reset" => BindingState::Reset,
        _ => return None,
    })
}

fn bytes_of(t: Option<&Token>) -> Option<Vec<u8>> {
    match &t?.tok {
        Tok::Str(b) => Some(b.clone()),
        Tok::Word(w) => super::optdefs::hex_bytes(w).ok(),
        Tok::Punct(_) => None,
    }
}

/// One `lease` statement to a [`Lease`]; what it holds that Tandem keeps no record of is
/// reported (once per kind, with a count).
pub fn lease_of(s: &Stmt, file: &str, issues: &mut Issues) -> Result<Lease, ImportError> {
    let addr: Ipv4Addr = match s.words.get(1).map(|t| &t.tok) {
        Some(Tok::Word(w)) => w
            .parse()
            .map_err(|_| parse_err(file, s.line, format!("`lease {w}`: not an IPv4 address")))?,
        _ => return Err(parse_err(file, s.line, "expected `lease ADDRESS {`")),
    };
    let mut l = Lease {
        addr: Some(addr),
        line: s.line,
        ..Lease::default()
    };
    let mut abandoned_flag = false;
    for x in s.block.as_deref().unwrap_or_default() {
        let time = |i: usize| {
            parse_time(&x.words[i..])
                .map_err(|m| parse_err(file, x.line, format!("{}: {m}", x.w(0))))
        };
        match x.w(0).as_str() {
            "starts" => l.start = time(1)?,
            "ends" => l.expires = time(1)?,
            "cltt" => l.cltt = time(1)?,
            "tstp" => l.tstp = time(1)?,
            "tsfp" => l.tsfp = l.tsfp.max(time(1)?),
            "atsfp" => l.tsfp = l.tsfp.max(time(1)?),
            "binding" if x.w(1) == "state" => match state_of(&x.w(2)) {
                Some(st) => l.state = Some(st),
                None => {
                    issues.add_grouped(
                        &format!("state-{}", x.w(2)),
                        file,
                        x.line,
                        "binding state",
                        format!(
                            "state `{}` has no Tandem counterpart: entry not imported",
                            x.w(2)
                        ),
                    );
                    l.state = None;
                }
            },
            "next" | "rewind" => {}
            "hardware" => match bytes_of(x.words.get(2)) {
                Some(hw) if !hw.is_empty() && hw.len() <= 16 => {
                    let htype = match x.w(1).as_str() {
                        "ethernet" => 1,
                        "token-ring" => 6,
                        "fddi" => 8,
                        "infiniband" => 32,
                        _ => 1,
                    };
                    l.hw = Some((htype, hw));
                }
                _ => {
                    return Err(parse_err(
                        file,
                        x.line,
                        "hardware: expected hex bytes like 52:54:00:12:34:56",
                    ))
                }
            },
            "uid" => match bytes_of(x.words.get(1)) {
                Some(b) => l.client_id = Some(b),
                None => {
                    return Err(parse_err(
                        file,
                        x.line,
                        "uid: expected a string or hex bytes",
                    ))
                }
            },
            "client-hostname" => issues.add_grouped(
                "client-hostname",
                file,
                x.line,
                "client-hostname",
                "Tandem's lease journal keeps no client host names: not imported",
            ),
            "abandoned" => abandoned_flag = true,
            "set"
            | "on"
            | "option"
            | "vendor-class-identifier"
            | "ddns-text"
            | "ddns-fwd-name"
            | "ddns-rev-name"
            | "ddns-client-fqdn"
            | "bootp"
            | "reserved"
            | "dynamic-bootp" => {
                let d = x.directive();
                let key = format!("lease-{}", x.w(0));
                issues.add_grouped(
                    &key,
                    file,
                    x.line,
                    d,
                    "Tandem's lease journal keeps no such lease attribute: not imported",
                );
            }
            _ => {
                let key = format!("lease-other-{}", x.w(0));
                issues.add_grouped(
                    &key,
                    file,
                    x.line,
                    x.directive(),
                    "not understood in a lease: not imported",
                );
            }
        }
    }
    if abandoned_flag && l.state.is_none() {
        l.state = Some(BindingState::Abandoned);
    }
    if l.cltt == 0 {
        l.cltt = l.start;
    }
    Ok(l)
}

/// Stream the lease file `r` into `sink`.
pub fn stream<R: BufRead>(
    r: R,
    file: &str,
    sink: &mut LeaseSink<'_>,
    issues: &mut Issues,
) -> Result<(), ImportError> {
    let mut lx = Lexer::new(r, file);
    while let Some(s) = lx.next_stmt()? {
        match s.w(0).as_str() {
            "lease" if s.block.is_some() => {
                let l = lease_of(&s, file, issues)?;
                sink.put(&l, file, issues)?;
            }
            "authoring-byte-order" | "server-duid" => {}
            "failover" => issues.add_grouped(
                "failover-state",
                file,
                s.line,
                "failover peer state",
                "the relationship's saved state is not imported: Tandem starts it afresh (and learns the partner's bindings from it)",
            ),
            "host" => issues.add_grouped(
                "lease-host",
                file,
                s.line,
                "host",
                "hosts created through OMAPI are not imported: declare them in the configuration",
            ),
            "ia-na" | "ia-ta" | "ia-pd" => issues.add_grouped(
                "lease-v6",
                file,
                s.line,
                s.w(0),
                "DHCPv6 leases: Tandem serves DHCPv4 only",
            ),
            _ => issues.add_grouped(
                &format!("lease-top-{}", s.w(0)),
                file,
                s.line,
                s.directive(),
                "not understood in a lease file: not imported",
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(text: &str) -> (Lease, Issues) {
        let mut issues = Issues::new();
        let s = Lexer::new(text.as_bytes(), "l")
            .next_stmt()
            .unwrap()
            .unwrap();
        (lease_of(&s, "l", &mut issues).unwrap(), issues)
    }

    #[test]
    fn times_in_both_forms() {
        let t = |s: &str| {
            let toks: Vec<Token> = s
                .split(' ')
                .map(|w| Token {
                    tok: Tok::Word(w.into()),
                    line: 1,
                })
                .collect();
            parse_time(&toks)
        };
        assert_eq!(t("1 1970/01/01 00:00:00"), Ok(0));
        assert_eq!(t("1 2026/12/07 00:26:41"), Ok(1_796_603_201));
        assert_eq!(t("epoch 1796603201"), Ok(1_796_603_201));
        assert_eq!(t("never"), Ok(u32::MAX));
        assert!(t("1 2026/13/07 00:00:00").is_err());
        assert!(t("x").is_err());
    }

    #[test]
    fn a_full_lease_entry() {
        let (l, issues) = lease(
            "lease 10.0.0.50 {\n  starts 1 2026/12/07 00:00:00;\n  ends 1 2026/12/07 12:00:00;\n  tstp 1 2026/12/07 12:00:00;\n  tsfp 1 2026/12/07 12:00:00;\n  atsfp 1 2026/12/07 12:00:00;\n  cltt 1 2026/12/07 00:00:00;\n  binding state active;\n  next binding state free;\n  rewind binding state free;\n  hardware ethernet 52:54:00:12:34:56;\n  uid \"\\001RT\\000\\0224V\";\n  client-hostname \"pc1\";\n}\n",
        );
        assert_eq!(l.addr, Some(Ipv4Addr::new(10, 0, 0, 50)));
        assert_eq!(l.state, Some(BindingState::Active));
        assert_eq!(
            l.client_id.as_deref(),
            Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..])
        );
        assert_eq!(l.hw, Some((1, vec![0x52, 0x54, 0, 0x12, 0x34, 0x56])));
        assert_eq!(l.expires - l.start, 43_200);
        assert_eq!(l.tstp, l.expires);
        assert!(issues.has("client-hostname"));
    }

    #[test]
    fn hex_uid_and_every_state() {
        for (w, st) in [
            ("free", BindingState::Free),
            ("backup", BindingState::Backup),
            ("expired", BindingState::Expired),
            ("released", BindingState::Released),
            ("abandoned", BindingState::Abandoned),
            ("reset", BindingState::Reset),
        ] {
            let (l, _) = lease(&format!(
                "lease 10.0.0.1 {{ binding state {w}; uid 01:02:03; }}"
            ));
            assert_eq!(l.state, Some(st));
            assert_eq!(l.client_id.as_deref(), Some(&[1, 2, 3][..]));
        }
    }

    #[test]
    fn bad_entries_are_errors_with_their_line() {
        let mut issues = Issues::new();
        let s = Lexer::new(
            &b"lease 10.0.0.1 {\n starts 1 2026/02/31 99:00:00;\n}"[..],
            "l",
        )
        .next_stmt()
        .unwrap()
        .unwrap();
        let e = lease_of(&s, "l", &mut issues).unwrap_err().to_string();
        assert!(e.starts_with("l:2: starts"), "{e}");
        let s = Lexer::new(&b"lease x.y {\n}"[..], "l")
            .next_stmt()
            .unwrap()
            .unwrap();
        assert!(lease_of(&s, "l", &mut issues).is_err());
    }
}
