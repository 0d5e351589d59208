//! Kea's memfile lease file (`kea-leases4.csv`), streamed line by line into a Tandem journal.
//!
//! The header names the columns (`address,hwaddr,client_id,valid_lifetime,expire,subnet_id,
//! fqdn_fwd,fqdn_rev,hostname,state,user_context[,pool_id]`); columns are found by name, so
//! older and newer layouts both read. States: 0 default (active, or expired once `expire` has
//! passed), 1 declined (abandoned), 2 expired-reclaimed (expired). A row with
//! `valid_lifetime` 0 is Kea's record of a deleted (released) lease. Kea appends a row per
//! change, so the last row of an address wins, as in the journal.

use std::io::BufRead;
use std::net::Ipv4Addr;

use tandem_dataplane::binding::BindingState;

use super::optdefs::hex_bytes;
use super::{parse_err, ImportError, Issues, Lease, LeaseSink};

/// Longest line read.
const MAX_LINE: usize = 1 << 16;

/// Column positions of a lease file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    address: usize,
    hwaddr: Option<usize>,
    client_id: Option<usize>,
    valid_lifetime: usize,
    expire: usize,
    hostname: Option<usize>,
    state: Option<usize>,
    user_context: Option<usize>,
}

/// Read the header line.
pub fn columns(header: &str, file: &str) -> Result<Columns, ImportError> {
    let names: Vec<&str> = header.trim_end().split(',').map(str::trim).collect();
    let find = |n: &str| names.iter().position(|x| *x == n);
    let need = |n: &str| {
        find(n).ok_or_else(|| {
            parse_err(
                file,
                1,
                format!("the header has no `{n}` column (is this a Kea DHCPv4 memfile?)"),
            )
        })
    };
    Ok(Columns {
        address: need("address")?,
        hwaddr: find("hwaddr"),
        client_id: find("client_id"),
        valid_lifetime: need("valid_lifetime")?,
        expire: need("expire")?,
        hostname: find("hostname"),
        state: find("state"),
        user_context: find("user_context"),
    })
}

/// One row to a [`Lease`], or why it cannot be read.
pub fn row(
    c: &Columns,
    line: &str,
    n: usize,
    file: &str,
    issues: &mut Issues,
) -> Result<Lease, String> {
    let f: Vec<&str> = line.trim_end_matches(['\r', '\n']).split(',').collect();
    let get = |i: usize| f.get(i).copied().unwrap_or_default().trim();
    let opt = |i: Option<usize>| i.map(get).unwrap_or_default();
    let addr: Ipv4Addr = get(c.address)
        .parse()
        .map_err(|_| format!("`{}` is not an IPv4 address", get(c.address)))?;
    let valid: u32 = get(c.valid_lifetime)
        .parse()
        .map_err(|_| format!("valid_lifetime `{}` is not a number", get(c.valid_lifetime)))?;
    let expire: u64 = get(c.expire)
        .parse()
        .map_err(|_| format!("expire `{}` is not a number", get(c.expire)))?;
    let state: u32 = match opt(c.state) {
        "" => 0,
        s => s
            .parse()
            .map_err(|_| format!("state `{s}` is not a number"))?,
    };
    let hw = hex_bytes(opt(c.hwaddr)).map_err(|m| format!("hwaddr: {m}"))?;
    let cid = hex_bytes(opt(c.client_id)).map_err(|m| format!("client_id: {m}"))?;
    let expires = u32::try_from(expire).unwrap_or(u32::MAX);
    let st = match state {
        _ if valid == 0 => BindingState::Released,
        0 => BindingState::Active,
        1 => BindingState::Abandoned,
        2 => BindingState::Expired,
        other => return Err(format!("state {other} is not 0, 1 or 2")),
    };
    if !opt(c.hostname).is_empty() {
        issues.add_grouped(
            "kea-hostname",
            file,
            n,
            "hostname",
            "Tandem's lease journal keeps no client host names: not imported",
        );
    }
    if !opt(c.user_context).is_empty() {
        issues.add_grouped(
            "kea-user-context",
            file,
            n,
            "user_context",
            "Tandem's lease journal keeps no user context: not imported",
        );
    }
    let start = expires.saturating_sub(valid);
    Ok(Lease {
        addr: Some(addr),
        state: Some(st),
        client_id: (!cid.is_empty()).then_some(cid),
        hw: (!hw.is_empty() && hw.len() <= 16).then_some((1, hw)),
        start,
        expires,
        cltt: start,
        tstp: 0,
        tsfp: 0,
        line: n,
    })
}

/// Stream the CSV `r` into `sink`. Unreadable rows are reported (Kea skips them too) and not
/// imported; a missing header is a parse error.
pub fn stream<R: BufRead>(
    mut r: R,
    file: &str,
    sink: &mut LeaseSink<'_>,
    issues: &mut Issues,
) -> Result<(), ImportError> {
    let mut buf = String::new();
    let mut n = 0usize;
    let mut cols: Option<Columns> = None;
    loop {
        buf.clear();
        let got = <&mut R as std::io::Read>::take(&mut r, MAX_LINE as u64)
            .read_line(&mut buf)
            .map_err(|e| parse_err(file, n + 1, format!("cannot read: {e}")))?;
        if got == 0 {
            break;
        }
        n += 1;
        if buf.len() >= MAX_LINE && !buf.ends_with('\n') {
            return Err(parse_err(
                file,
                n,
                format!("line longer than {MAX_LINE} bytes"),
            ));
        }
        if buf.trim().is_empty() {
            continue;
        }
        let Some(c) = &cols else {
            cols = Some(columns(&buf, file)?);
            continue;
        };
        if buf.starts_with("address,") {
            // LFC concatenates files, each with its header.
            cols = Some(columns(&buf, file)?);
            continue;
        }
        match row(c, &buf, n, file, issues) {
            Ok(l) => sink.put(&l, file, issues)?,
            Err(m) => issues.add_grouped(
                "kea-bad-row",
                file,
                n,
                "lease",
                format!("{m}: row not imported"),
            ),
        }
    }
    if cols.is_none() {
        return Err(parse_err(file, 1, "empty file: no header line"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id";

    #[test]
    fn rows_in_every_state() {
        let c = columns(HEADER, "k").unwrap();
        let mut issues = Issues::new();
        let l = row(
            &c,
            "10.0.0.5,52:54:00:12:34:56,01:52:54:00:12:34:56,4000,1796607201,1,0,0,pc1,0,,0\n",
            2,
            "k",
            &mut issues,
        )
        .unwrap();
        assert_eq!(l.addr, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(l.state, Some(BindingState::Active));
        assert_eq!(l.start, 1_796_603_201);
        assert_eq!(l.client_id.as_deref().map(<[u8]>::len), Some(7));
        assert!(issues.has("hostname"));
        for (s, st) in [("1", BindingState::Abandoned), ("2", BindingState::Expired)] {
            let l = row(
                &c,
                &format!("10.0.0.5,,,4000,1796607201,1,0,0,,{s},"),
                3,
                "k",
                &mut issues,
            )
            .unwrap();
            assert_eq!(l.state, Some(st));
            assert!(l.hw.is_none());
        }
        let l = row(
            &c,
            "10.0.0.5,52:54:00:12:34:56,,0,1796607201,1,0,0,,0,",
            4,
            "k",
            &mut issues,
        )
        .unwrap();
        assert_eq!(l.state, Some(BindingState::Released));
        assert!(row(&c, "10.0.0.x,,,1,1,1,0,0,,0,", 5, "k", &mut issues).is_err());
        assert!(row(&c, "10.0.0.5,,,1,1,1,0,0,,7,", 5, "k", &mut issues).is_err());
    }

    #[test]
    fn the_header_names_the_columns() {
        let c = columns(
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname",
            "k",
        )
        .unwrap();
        assert!(c.state.is_none());
        assert!(columns("a,b,c", "k").is_err());
    }
}
