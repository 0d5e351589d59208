//! What an import produces before it is written: a [`Model`] of Tandem's configuration (server,
//! options, scopes with their reservations and policies, failover relationships) and its
//! rendering as a commented TOML file that `tandemd --check-config` reads.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// An option value, typed the way the source wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// One or more IPv4 addresses.
    Ips(Vec<Ipv4Addr>),
    /// Text.
    Text(String),
    /// An unsigned integer of `width` bytes (1, 2 or 4).
    Int {
        /// Width in bytes.
        width: u8,
        /// The value (fits the width).
        value: u32,
    },
    /// A flag byte.
    Bool(bool),
    /// Raw bytes.
    Hex(Vec<u8>),
    /// Domain names (option 119 style: DNS wire form when written by code).
    Domains(Vec<String>),
    /// Classless static routes (destination, prefix length, gateway).
    Routes(Vec<(Ipv4Addr, u8, Ipv4Addr)>),
}

impl OptValue {
    /// The value in wire form.
    pub fn wire(&self) -> Vec<u8> {
        match self {
            OptValue::Ips(a) => a.iter().flat_map(|a| a.octets()).collect(),
            OptValue::Text(s) => s.as_bytes().to_vec(),
            OptValue::Int { width, value } => {
                let b = value.to_be_bytes();
                b[4 - usize::from(*width).min(4)..].to_vec()
            }
            OptValue::Bool(b) => vec![u8::from(*b)],
            OptValue::Hex(b) => b.clone(),
            OptValue::Domains(names) => {
                let mut out = Vec::new();
                for n in names {
                    let n = n.strip_suffix('.').unwrap_or(n);
                    for label in n.split('.') {
                        out.push(label.len().min(63) as u8);
                        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
                    }
                    out.push(0);
                }
                out
            }
            OptValue::Routes(rs) => {
                let mut out = Vec::new();
                for (dest, prefix, gw) in rs {
                    out.push(*prefix);
                    let n = usize::from(prefix.div_ceil(8));
                    out.extend_from_slice(&dest.octets()[..n.min(4)]);
                    out.extend_from_slice(&gw.octets());
                }
                out
            }
        }
    }
}

/// One option of a level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    /// Option code.
    pub code: u8,
    /// Its value.
    pub value: OptValue,
}

/// Set `o` in `list`, replacing an earlier value of the same code (inner levels override).
pub fn set_opt(list: &mut Vec<Opt>, o: Opt) {
    if let Some(x) = list.iter_mut().find(|x| x.code == o.code) {
        *x = o;
    } else {
        list.push(o);
    }
}

/// Which client a reservation is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResKey {
    /// Ethernet address.
    Mac([u8; 6]),
    /// Client identifier bytes (option 61).
    ClientId(Vec<u8>),
}

/// A `[[scope.reservation]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The client.
    pub key: ResKey,
    /// The reserved address.
    pub address: Ipv4Addr,
    /// Option 12 for this client.
    pub hostname: Option<String>,
    /// Options for this client only.
    pub options: Vec<Opt>,
    /// Where it came from (`FILE:LINE`), written as a comment.
    pub origin: String,
}

/// One condition of a policy: one criterion, any of its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Tandem's criterion key (`vendor_class`, `mac`, ...).
    pub criterion: &'static str,
    /// Values in Tandem's matcher syntax (trailing `*` for a prefix, `hex:`/`text:`).
    pub values: Vec<String>,
    /// Holds when none of the values matches.
    pub not: bool,
}

/// A `[[scope.policy]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Unique within the scope.
    pub name: String,
    /// `match = "any"` when true, else all.
    pub any: bool,
    /// The conditions.
    pub conditions: Vec<Cond>,
    /// The ranges its clients are confined to (empty: the scope's).
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Lease time of matching clients.
    pub lease_time: Option<u32>,
    /// Options of matching clients.
    pub options: Vec<Opt>,
    /// Where it came from, written as a comment.
    pub origin: String,
}

/// A `[[scope]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Unique scope name.
    pub name: String,
    /// Network address and prefix length.
    pub subnet: (Ipv4Addr, u8),
    /// Interface whose directly attached clients it serves.
    pub interface: Option<String>,
    /// Allocation ranges, inclusive.
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Single addresses inside the ranges never handed out.
    pub exclusions: Vec<Ipv4Addr>,
    /// Lease time.
    pub lease_time: Option<u32>,
    /// T1.
    pub renew_time: Option<u32>,
    /// T2.
    pub rebind_time: Option<u32>,
    /// NAK wrong requests.
    pub authoritative: bool,
    /// The scope's own options (those that differ from the global ones).
    pub options: Vec<Opt>,
    /// Reservations.
    pub reservations: Vec<Reservation>,
    /// Policies, in order.
    pub policies: Vec<Policy>,
    /// Comment lines written above the scope (origin, notes).
    pub comments: Vec<String>,
}

impl Scope {
    /// A scope named `name` for `subnet`, with no ranges yet.
    pub fn new(name: String, subnet: (Ipv4Addr, u8)) -> Scope {
        Scope {
            name,
            subnet,
            interface: None,
            ranges: Vec::new(),
            exclusions: Vec::new(),
            lease_time: None,
            renew_time: None,
            rebind_time: None,
            authoritative: false,
            options: Vec::new(),
            reservations: Vec::new(),
            policies: Vec::new(),
            comments: Vec::new(),
        }
    }

    /// True if `a` lies in the scope's subnet.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        in_subnet(a, self.subnet)
    }
}

/// True if `a` lies in `net`.
pub fn in_subnet(a: Ipv4Addr, net: (Ipv4Addr, u8)) -> bool {
    let m = mask(net.1);
    u32::from(a) & m == u32::from(net.0) & m
}

/// The netmask of a prefix length as bits.
pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// How the two partners of a relationship share the clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoMode {
    /// Load balance; this server's share in percent (`None`: Tandem's default).
    LoadBalance(Option<u8>),
    /// Hot standby; true if this server is the active one.
    HotStandby(bool),
}

/// A `[[failover]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// Relationship name (Tandem's character set).
    pub name: String,
    /// True for the primary.
    pub primary: bool,
    /// The partner's address.
    pub partner: Ipv4Addr,
    /// The partner's port.
    pub partner_port: Option<u16>,
    /// This server's listener address.
    pub listen: Option<Ipv4Addr>,
    /// This server's listener port.
    pub listen_port: Option<u16>,
    /// Mode and share.
    pub mode: FoMode,
    /// MCLT in seconds.
    pub mclt: Option<u32>,
    /// Automatic partner-down after this many seconds.
    pub switchover: Option<u32>,
    /// Receive timer in seconds.
    pub max_response_delay: Option<u32>,
    /// Update window.
    pub max_unacked: Option<u32>,
    /// Scope names.
    pub scopes: Vec<String>,
    /// Comment lines written above the table.
    pub comments: Vec<String>,
}

/// A whole Tandem configuration, ready to render.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// `server.server_id`.
    pub server_id: Option<Ipv4Addr>,
    /// `server.interfaces`.
    pub interfaces: Vec<String>,
    /// `server.state_dir`.
    pub state_dir: PathBuf,
    /// `server.server_port`.
    pub server_port: Option<u16>,
    /// `server.client_port`.
    pub client_port: Option<u16>,
    /// `server.decline_probation_time`.
    pub decline_probation: Option<u32>,
    /// Global options.
    pub options: Vec<Opt>,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Failover relationships.
    pub failover: Vec<Failover>,
    /// Comment lines at the top of the file.
    pub header: Vec<String>,
}

impl Model {
    /// The index of the scope whose subnet contains `a` (the longest prefix if several do).
    pub fn scope_of(&self, a: Ipv4Addr) -> Option<usize> {
        self.scopes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.contains(a))
            .max_by_key(|(_, s)| s.subnet.1)
            .map(|(i, _)| i)
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        let mut o = String::new();
        for h in &self.header {
            let _ = writeln!(o, "# {h}");
        }
        o.push_str("\n[server]\n");
        if let Some(a) = self.server_id {
            let _ = writeln!(o, "server_id = {}", q(&a.to_string()));
        }
        let _ = writeln!(o, "interfaces = {}", str_array(&self.interfaces));
        let _ = writeln!(
            o,
            "state_dir = {}",
            q(&self.state_dir.display().to_string())
        );
        if let Some(p) = self.server_port {
            let _ = writeln!(o, "server_port = {p}");
        }
        if let Some(p) = self.client_port {
            let _ = writeln!(o, "client_port = {p}");
        }
        if let Some(s) = self.decline_probation {
            let _ = writeln!(o, "decline_probation_time = {s}");
        }
        write_options(&mut o, "", &self.options);
        for s in &self.scopes {
            o.push('\n');
            for c in &s.comments {
                let _ = writeln!(o, "# {c}");
            }
            o.push_str("[[scope]]\n");
            let _ = writeln!(o, "name = {}", q(&s.name));
            let _ = writeln!(
                o,
                "subnet = {}",
                q(&format!("{}/{}", s.subnet.0, s.subnet.1))
            );
            if let Some(i) = &s.interface {
                let _ = writeln!(o, "interface = {}", q(i));
            }
            let _ = writeln!(o, "ranges = {}", range_array(&s.ranges));
            if !s.exclusions.is_empty() {
                let ex: Vec<String> = s.exclusions.iter().map(ToString::to_string).collect();
                let _ = writeln!(o, "exclusions = {}", str_array(&ex));
            }
            if let Some(t) = s.lease_time {
                let _ = writeln!(o, "lease_time = {t}");
            }
            if let Some(t) = s.renew_time {
                let _ = writeln!(o, "renew_time = {t}");
            }
            if let Some(t) = s.rebind_time {
                let _ = writeln!(o, "rebind_time = {t}");
            }
            let _ = writeln!(o, "authoritative = {}", s.authoritative);
            write_options(&mut o, "scope.", &s.options);
            for r in &s.reservations {
                o.push('\n');
                if !r.origin.is_empty() {
                    let _ = writeln!(o, "# {}", r.origin);
                }
                o.push_str("[[scope.reservation]]\n");
                match &r.key {
                    ResKey::Mac(m) => {
                        let _ = writeln!(o, "mac = {}", q(&hex_colon(m)));
                    }
                    ResKey::ClientId(c) => {
                        let _ = writeln!(o, "client_id = {}", q(&hex_colon(c)));
                    }
                }
                let _ = writeln!(o, "address = {}", q(&r.address.to_string()));
                if let Some(h) = &r.hostname {
                    let _ = writeln!(o, "hostname = {}", q(h));
                }
                write_options(&mut o, "scope.reservation.", &r.options);
            }
            for p in &s.policies {
                o.push('\n');
                if !p.origin.is_empty() {
                    let _ = writeln!(o, "# {}", p.origin);
                }
                o.push_str("[[scope.policy]]\n");
                let _ = writeln!(o, "name = {}", q(&p.name));
                if p.any {
                    o.push_str("match = \"any\"\n");
                }
                o.push_str("conditions = [\n");
                for c in &p.conditions {
                    let _ = write!(o, "    {{ {} = {}", c.criterion, str_array(&c.values));
                    if c.not {
                        o.push_str(", not = true");
                    }
                    o.push_str(" },\n");
                }
                o.push_str("]\n");
                if !p.ranges.is_empty() {
                    let _ = writeln!(o, "ranges = {}", range_array(&p.ranges));
                }
                if let Some(t) = p.lease_time {
                    let _ = writeln!(o, "lease_time = {t}");
                }
                write_options(&mut o, "scope.policy.", &p.options);
            }
        }
        for f in &self.failover {
            o.push('\n');
            for c in &f.comments {
                let _ = writeln!(o, "# {c}");
            }
            o.push_str("[[failover]]\n");
            let _ = writeln!(o, "name = {}", q(&f.name));
            let _ = writeln!(
                o,
                "role = {}",
                q(if f.primary { "primary" } else { "secondary" })
            );
            let _ = writeln!(o, "partner = {}", q(&f.partner.to_string()));
            if let Some(p) = f.partner_port {
                let _ = writeln!(o, "partner_port = {p}");
            }
            if let Some(a) = f.listen {
                let _ = writeln!(o, "listen = {}", q(&a.to_string()));
            }
            if let Some(p) = f.listen_port {
                let _ = writeln!(o, "listen_port = {p}");
            }
            match f.mode {
                FoMode::LoadBalance(p) => {
                    o.push_str("mode = \"load-balance\"\n");
                    if let Some(p) = p {
                        let _ = writeln!(o, "load_balance_percent = {p}");
                    }
                }
                FoMode::HotStandby(active) => {
                    o.push_str("mode = \"hot-standby\"\n");
                    let _ = writeln!(
                        o,
                        "hot_standby_role = {}",
                        q(if active { "active" } else { "standby" })
                    );
                }
            }
            if let Some(m) = f.mclt {
                let _ = writeln!(o, "mclt = {m}");
            }
            if let Some(s) = f.switchover {
                let _ = writeln!(o, "state_switchover_interval = {s}");
            }
            if let Some(s) = f.max_response_delay {
                let _ = writeln!(o, "max_response_delay = {s}");
            }
            if let Some(n) = f.max_unacked {
                let _ = writeln!(o, "max_unacked_updates = {n}");
            }
            let _ = writeln!(o, "scopes = {}", str_array(&f.scopes));
        }
        o
    }
}

/// Tandem's named option keys and the kinds of value they take, by code.
fn named_key(code: u8, v: &OptValue) -> Option<&'static str> {
    let ips = matches!(v, OptValue::Ips(_));
    let text = matches!(v, OptValue::Text(s) if !s.is_empty());
    Some(match code {
        1 if matches!(v, OptValue::Ips(a) if a.len() == 1 && {
            let b = u32::from(a[0]);
            b.leading_ones() + b.trailing_zeros() == 32
        }) =>
        {
            "subnet_mask"
        }
        3 if ips => "routers",
        4 if ips => "time_servers",
        6 if ips => "dns_servers",
        7 if ips => "log_servers",
        15 if matches!(v, OptValue::Text(s) if is_domain(s)) => "domain_name",
        26 if matches!(v, OptValue::Int { value, .. } if (68..=65_535).contains(value)) => {
            "interface_mtu"
        }
        28 if matches!(v, OptValue::Ips(a) if a.len() == 1) => "broadcast_address",
        42 if ips => "ntp_servers",
        44 if ips => "netbios_name_servers",
        46 if matches!(
            v,
            OptValue::Int {
                value: 1 | 2 | 4 | 8,
                ..
            }
        ) =>
        {
            "netbios_node_type"
        }
        66 if text => "tftp_server_name",
        67 if text => "bootfile_name",
        119 if matches!(v, OptValue::Domains(d) if !d.is_empty() && d.iter().all(|n| is_domain(n))) => {
            "domain_search"
        }
        121 if matches!(v, OptValue::Routes(r) if !r.is_empty()) => "static_routes",
        _ => return None,
    })
}

/// True if `s` is a domain name as Tandem's `domain_name` accepts it (RFC 1035 labels).
pub fn is_domain(s: &str) -> bool {
    let t = s.strip_suffix('.').unwrap_or(s);
    !t.is_empty()
        && t.len() <= 253
        && t.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn write_options(o: &mut String, prefix: &str, opts: &[Opt]) {
    let mut named = Vec::new();
    let mut coded = Vec::new();
    for x in opts {
        match named_key(x.code, &x.value) {
            Some(k) => named.push((k, x)),
            None => coded.push(x),
        }
    }
    if !named.is_empty() {
        let _ = writeln!(o, "\n[{prefix}options]");
        for (k, x) in named {
            let v = match &x.value {
                OptValue::Ips(a) if k == "subnet_mask" || k == "broadcast_address" => {
                    q(&a[0].to_string())
                }
                OptValue::Ips(a) => {
                    str_array(&a.iter().map(ToString::to_string).collect::<Vec<_>>())
                }
                OptValue::Text(s) => q(s),
                OptValue::Int { value, .. } => value.to_string(),
                OptValue::Domains(d) => str_array(d),
                OptValue::Routes(r) => str_array(
                    &r.iter()
                        .map(|(d, p, g)| format!("{d}/{p} via {g}"))
                        .collect::<Vec<_>>(),
                ),
                OptValue::Bool(b) => b.to_string(),
                OptValue::Hex(b) => q(&hex_colon(b)),
            };
            let _ = writeln!(o, "{k} = {v}");
        }
    }
    for x in coded {
        let _ = writeln!(o, "\n[[{prefix}option]]");
        let _ = writeln!(o, "code = {}", x.code);
        let (ty, v) = match &x.value {
            OptValue::Ips(a) if a.len() == 1 => ("ipv4", q(&a[0].to_string())),
            OptValue::Ips(a) => (
                "ipv4-list",
                str_array(&a.iter().map(ToString::to_string).collect::<Vec<_>>()),
            ),
            OptValue::Text(s) if !s.is_empty() => ("string", q(s)),
            OptValue::Int { width: 1, value } => ("u8", value.to_string()),
            OptValue::Int { width: 2, value } => ("u16", value.to_string()),
            OptValue::Int { value, .. } => ("u32", value.to_string()),
            OptValue::Bool(b) => ("bool", b.to_string()),
            other => ("hex", q(&hex_colon(&other.wire()))),
        };
        let _ = writeln!(o, "type = {}", q(ty));
        let _ = writeln!(o, "value = {v}");
    }
}

/// Bytes as `aa:bb:cc` (empty for no bytes).
pub fn hex_colon(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// A TOML basic string.
pub fn q(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn str_array(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s)).collect();
    format!("[{}]", items.join(", "))
}

fn range_array(v: &[(Ipv4Addr, Ipv4Addr)]) -> String {
    let items: Vec<String> = v.iter().map(|(a, b)| q(&format!("{a}-{b}"))).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_toml() {
        assert_eq!(q("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn options_are_named_when_tandem_names_them_else_by_code() {
        let mut o = String::new();
        write_options(
            &mut o,
            "scope.",
            &[
                Opt {
                    code: 3,
                    value: OptValue::Ips(vec![Ipv4Addr::new(10, 0, 0, 1)]),
                },
                Opt {
                    code: 150,
                    value: OptValue::Ips(vec![Ipv4Addr::new(10, 0, 0, 2)]),
                },
                Opt {
                    code: 119,
                    value: OptValue::Domains(vec!["a.b".into()]),
                },
                Opt {
                    code: 200,
                    value: OptValue::Domains(vec!["a".into()]),
                },
            ],
        );
        assert!(
            o.contains("[scope.options]\nrouters = [\"10.0.0.1\"]"),
            "{o}"
        );
        assert!(o.contains("domain_search = [\"a.b\"]"), "{o}");
        assert!(
            o.contains("code = 150\ntype = \"ipv4\"\nvalue = \"10.0.0.2\""),
            "{o}"
        );
        assert!(
            o.contains("code = 200\ntype = \"hex\"\nvalue = \"01:61:00\""),
            "{o}"
        );
    }

    #[test]
    fn routes_and_ints_have_their_wire_form() {
        let r = OptValue::Routes(vec![(
            Ipv4Addr::new(10, 1, 0, 0),
            16,
            Ipv4Addr::new(10, 0, 0, 1),
        )]);
        assert_eq!(r.wire(), [16, 10, 1, 10, 0, 0, 1]);
        assert_eq!(
            OptValue::Int {
                width: 2,
                value: 1500
            }
            .wire(),
            [5, 220]
        );
    }
}
