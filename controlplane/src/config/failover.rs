//! `[[failover]]`: the failover relationships this server takes part in, each with one partner
//! and the scopes the two share.
//!
//! Reading a table checks its keys and single values (and reads the shared-secret file); the
//! checks across relationships, scopes and `[server]` (scope names, partner addresses, listeners,
//! the state machine's own rules) run in [`check::build`]. Reading needs only the leaf readers
//! (`reader`, `values`, `keys`); `schema` reads `[[failover]]` through it, and `validate` builds
//! through `check`, so the three form no circle.

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::admin::tls::{load_peer, PeerTlsKeys, PeerTlsSettings};
use crate::failover::link::LinkConfig;
use crate::failover::peer::{ConfigError as PeerConfigError, Mode, PeerConfig, Role};
use crate::failover::tls::{self, TlsSettings};

use super::keys::{FAILOVER_KEYS, SCOPE_KEYS, SERVER_KEYS};
use super::reader::{self, At, Ctx, Val};
use super::values::{self, show_duration};

pub(super) mod check;
#[cfg(test)]
mod tests;

/// The failover port (TCP 647, as ISC dhcpd and Windows use): default of `partner_port` and
/// `listen_port`.
pub const DEFAULT_FAILOVER_PORT: u16 = 647;
/// Longest relationship name, in characters.
const MAX_NAME_LEN: usize = 64;
/// Largest shared-secret file read, in bytes.
const MAX_SECRET_FILE: u64 = 4096;
/// Longest `mclt` and `state_switchover_interval`: 30 days.
const MAX_LONG_SECS: u64 = 30 * 86_400;
/// Longest `max_clock_skew`, `max_response_delay` and `startup_wait`: one hour.
const MAX_SHORT_SECS: u64 = 3600;
/// Port of the partner's admin endpoint when `partner_admin` gives none (tandemd's default
/// `admin_listen` port).
pub const DEFAULT_ADMIN_PORT: u16 = 9167;
/// Default `comm_interrupted_alarm`: five minutes.
const DEFAULT_COMM_ALARM_SECS: u32 = 300;
/// Default `pool_low_water_percent`.
const DEFAULT_POOL_LOW_PERCENT: u8 = 10;

/// One failover relationship, validated: this server's side of it.
#[derive(Clone, PartialEq, Eq)]
pub struct FailoverSettings {
    /// Relationship name (`name`): 1 to 64 characters from `A-Z a-z 0-9 . _ -`, unique among the
    /// relationships; sent in CONNECT and used in the state file's name.
    pub name: String,
    /// This server's role (`role`).
    pub role: Role,
    /// The relationship's mode, from `mode`, `load_balance_percent`, `hot_standby_role` and
    /// `reserve_percent`, expressed in primary/secondary terms.
    pub mode: Mode,
    /// The partner's address (`partner`, `partner_port`): the primary connects to it, and only
    /// connections from its IP address are accepted.
    pub partner: SocketAddr,
    /// Where this server accepts the partner's connections (`listen`, `listen_port`).
    pub listen: SocketAddr,
    /// Maximum client lead time in seconds (`mclt`).
    pub mclt_secs: u32,
    /// Seconds in COMMUNICATIONS-INTERRUPTED before moving to PARTNER-DOWN on its own
    /// (`state_switchover_interval`); `None`: never automatically.
    pub switchover_secs: Option<u32>,
    /// The shared secret that signs every message (`shared_secret_file` or `shared_secret`);
    /// `None`: messages are not signed.
    pub secret: Option<Vec<u8>>,
    /// TLS on the link (`tls = "required"` with `tls_ca_file`, `tls_cert_file`, `tls_key_file`
    /// and `tls_partner_name`); `None` (`tls = "off"`, the default): plain TCP.
    pub tls: Option<TlsSettings>,
    /// The relationship's scopes, as indices into `Config::settings.scopes`, in the order listed.
    pub scopes: Vec<usize>,
    /// The same scopes by name.
    pub scope_names: Vec<String>,
    /// Largest tolerated difference between the two servers' clocks, in seconds
    /// (`max_clock_skew`).
    pub max_clock_skew_secs: u32,
    /// Seconds without any message from the partner after which the link is dropped
    /// (`max_response_delay`; the partner's receive timer).
    pub max_response_delay_secs: u32,
    /// Seconds to wait in STARTUP for the partner (`startup_wait`).
    pub startup_secs: u32,
    /// How many binding updates the partner may have unacknowledged towards this server
    /// (`max_unacked_updates`).
    pub max_unacked_updates: u32,
    /// The partner's admin endpoint (`partner_admin`, default the partner's address on port
    /// 9167): scope-settings replication and relationship changes go there, signed with the
    /// shared secret.
    pub partner_admin: SocketAddr,
    /// HTTPS to the partner's admin endpoint (`partner_admin_tls = "required"`, or
    /// `partner_admin = "https://..."`, with `partner_admin_ca_file`, `partner_admin_name`,
    /// `partner_admin_cert_file` and `partner_admin_key_file`, which default to the link's
    /// `tls_*` keys); `None` (`partner_admin_tls = "off"`, the default): plain HTTP.
    pub partner_admin_tls: Option<PeerTlsSettings>,
    /// Seconds in COMMUNICATIONS-INTERRUPTED after which an alarm is raised
    /// (`comm_interrupted_alarm`).
    pub comm_alarm_secs: u32,
    /// Alarm when the addresses this server may allocate in a scope fall below this percentage
    /// of its share of the scope's free addresses (`pool_low_water_percent`; 0 turns it off).
    pub pool_low_percent: u8,
}

impl fmt::Debug for FailoverSettings {
    /// Every field, except that the secret shows only its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self
            .secret
            .as_ref()
            .map(|s| format!("<{} bytes, not shown>", s.len()));
        f.debug_struct("FailoverSettings")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("mode", &self.mode)
            .field("partner", &self.partner)
            .field("listen", &self.listen)
            .field("mclt_secs", &self.mclt_secs)
            .field("switchover_secs", &self.switchover_secs)
            .field("secret", &secret)
            .field("tls", &self.tls)
            .field("scopes", &self.scopes)
            .field("scope_names", &self.scope_names)
            .field("max_clock_skew_secs", &self.max_clock_skew_secs)
            .field("max_response_delay_secs", &self.max_response_delay_secs)
            .field("startup_secs", &self.startup_secs)
            .field("max_unacked_updates", &self.max_unacked_updates)
            .field("partner_admin", &self.partner_admin)
            .field("partner_admin_tls", &self.partner_admin_tls)
            .field("comm_alarm_secs", &self.comm_alarm_secs)
            .field("pool_low_percent", &self.pool_low_percent)
            .finish()
    }
}

impl FailoverSettings {
    /// The state machine's configuration: [`PeerConfig::new`] for this name and role, with the
    /// mode, MCLT, switchover interval, clock-skew limit, receive timer, startup wait and
    /// unacked-update window of these settings.
    pub fn peer_config(&self) -> PeerConfig {
        let mut c = PeerConfig::new(self.name.as_bytes(), self.role);
        c.mode = self.mode;
        c.mclt_secs = self.mclt_secs;
        c.switchover_secs = self.switchover_secs;
        c.max_skew_secs = self.max_clock_skew_secs;
        c.receive_timer_secs = self.max_response_delay_secs;
        c.startup_secs = self.startup_secs;
        c.max_unacked = self.max_unacked_updates;
        // Balance the free addresses every minute (the state machine's default is five): a
        // busy partner must not run dry long before the next pass.
        c.rebalance_secs = 60;
        c
    }

    /// The link's configuration: [`LinkConfig::new`]'s timing with this listener, partner and
    /// secret.
    pub fn link_config(&self) -> LinkConfig {
        let mut c = LinkConfig::new();
        c.listen = Some(self.listen);
        c.partner = Some(self.partner);
        c.secret = self.secret.clone();
        c.tls = self.tls.clone();
        c
    }
}

/// One `[[failover]]`, read. Values stay at their defaults when absent or wrong (the error is
/// recorded).
pub(crate) struct FailoverDraft {
    /// `failover."name"` or `failover[i]`.
    path: String,
    header: Range<usize>,
    name: Option<At<String>>,
    role: Option<Role>,
    mode: Option<Mode>,
    partner: Option<At<SocketAddr>>,
    /// The listener, placed at `listen` (or `listen_port`, or the header when both are absent).
    listen: At<SocketAddr>,
    /// `listen` was not given (0.0.0.0, all addresses).
    listen_default: bool,
    mclt_secs: u32,
    switchover: Option<At<u32>>,
    secret: Option<Vec<u8>>,
    tls: Option<TlsSettings>,
    scopes: Vec<At<String>>,
    max_clock_skew_secs: u32,
    max_response_delay_secs: u32,
    startup_secs: u32,
    max_unacked_updates: u32,
    /// `partner_admin` as given (the port defaults later to 9167 on the partner's address).
    partner_admin: Option<SocketAddr>,
    /// `partner_admin_tls` and its keys, read and checked.
    partner_admin_tls: Option<PeerTlsSettings>,
    comm_alarm_secs: u32,
    pool_low_percent: u8,
    /// No mistake was found in this table: the checks that combine its values may run.
    clean: bool,
}

/// What `mode` says.
#[derive(Copy, Clone, PartialEq, Eq)]
enum ModeKind {
    LoadBalance,
    HotStandby,
}

impl ModeKind {
    fn as_str(self) -> &'static str {
        match self {
            ModeKind::LoadBalance => "load-balance",
            ModeKind::HotStandby => "hot-standby",
        }
    }
}

fn key_hint(k: &str) -> Option<String> {
    match k {
        "peer" | "peer_address" | "address" | "partner_address" => {
            Some("did you mean `partner` (the partner's IPv4 address)?".into())
        }
        "peer_port" | "port" => {
            Some("did you mean `partner_port` (the partner's port) or `listen_port` (ours)?".into())
        }
        "split" | "hba" => Some(
            "did you mean `load_balance_percent` (the share of clients this server serves)?".into(),
        ),
        "secret" | "key" => Some("did you mean `shared_secret_file` or `shared_secret`?".into()),
        "scope" => Some("did you mean `scopes` (the names of the shared scopes)?".into()),
        _ if SCOPE_KEYS.contains(&k) && !FAILOVER_KEYS.contains(&k) => Some(format!(
            "`{k}` belongs in a [[scope]]; a relationship lists its scopes by name in `scopes`"
        )),
        _ if SERVER_KEYS.contains(&k) => Some(format!("`{k}` belongs in the [server] table")),
        _ => None,
    }
}

/// A relationship name: 1 to 64 characters from `A-Z a-z 0-9 . _ -` (it is part of a file name).
pub(crate) fn relationship_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a relationship name cannot be empty".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{} contains {}; a relationship name uses only letters, digits, `.`, `_` and `-` \
             (it names the relationship's state file)",
            reader::quoted(s),
            reader::quoted(&c.to_string())
        ));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!(
            "`{s}` is {} characters long; a relationship name has at most {MAX_NAME_LEN}",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// The contents of a shared-secret file: a regular file kept private by its owner, at most
/// [`MAX_SECRET_FILE`] bytes, without its trailing line break, not empty.
pub(crate) fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} has mode {mode:04o}, so users other than its owner can access the secret; \
             run `chmod 600 {shown}`"
        ));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "{shown} is {} bytes; a shared-secret file holds one secret (at most \
             {MAX_SECRET_FILE} bytes)",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!(
            "{shown} is empty (a trailing line break does not count); write the secret into it"
        ));
    }
    Ok(bytes)
}

/// A duration key of `t` within `min..=max` seconds, or `default` (also when wrong).
fn duration_or(
    ctx: &mut Ctx<'_>,
    t: &DeTable<'_>,
    path: &str,
    key: &str,
    (min, max): (u64, u64),
    default: u32,
) -> u32 {
    reader::get(t, key)
        .and_then(|v| reader::duration(ctx, v, &reader::join(path, key), min, max))
        // The bounds are at most 30 days, so the value fits a u32.
        .map_or(default, |s| s as u32)
}

/// An integer key of `t` within `min..=max`, with its value (None when absent or wrong).
fn integer_key<'a, 'i>(
    ctx: &mut Ctx<'_>,
    t: &'a DeTable<'i>,
    path: &str,
    key: &str,
    (min, max): (i128, i128),
) -> Option<(i128, &'a Val<'i>)> {
    let v = reader::get(t, key)?;
    reader::integer_in(ctx, v, &reader::join(path, key), min, max).map(|n| (n, v))
}

/// Report a key that belongs to the other mode.
fn wrong_mode(
    ctx: &mut Ctx<'_>,
    v: &Val<'_>,
    path: &str,
    key: &str,
    mode: ModeKind,
    explicit: bool,
) {
    let (needed, here) = match mode {
        ModeKind::LoadBalance => (ModeKind::HotStandby, ModeKind::LoadBalance),
        ModeKind::HotStandby => (ModeKind::LoadBalance, ModeKind::HotStandby),
    };
    ctx.error(
        v.span(),
        reader::join(path, key),
        format!(
            "`{key}` applies only with mode = \"{}\"; this relationship's mode is \"{}\"{}",
            needed.as_str(),
            here.as_str(),
            if explicit { "" } else { " (the default)" }
        ),
    );
}

/// Read one `[[failover]]` table (item `i` of the array).
pub(crate) fn read(ctx: &mut Ctx<'_>, item: &Val<'_>, t: &DeTable<'_>, i: usize) -> FailoverDraft {
    let before = ctx.errors.len();
    let header = item.span();
    let (name, path) = reader::item_name(
        ctx,
        header.clone(),
        t,
        "failover",
        i,
        "the relationship's name, the same on both servers",
        relationship_name,
    );
    reader::check_keys(ctx, t, &path, FAILOVER_KEYS, &key_hint);
    let p = |k: &str| reader::join(&path, k);

    let role = match reader::get(t, "role") {
        None => {
            reader::missing(
                ctx,
                header.clone(),
                &path,
                "role",
                "\"primary\" or \"secondary\"; the partner has the other",
            );
            None
        }
        Some(v) => reader::choice(
            ctx,
            v,
            &p("role"),
            &[("primary", Role::Primary), ("secondary", Role::Secondary)],
        ),
    };

    let partner_port = integer_key(ctx, t, &path, "partner_port", (1, 65_535))
        .map_or(DEFAULT_FAILOVER_PORT, |(n, _)| n as u16);
    let partner = match reader::get(t, "partner") {
        None => {
            reader::missing(
                ctx,
                header.clone(),
                &path,
                "partner",
                "the partner server's IPv4 address",
            );
            None
        }
        Some(v) => {
            let at = reader::parsed(ctx, v, &p("partner"), values::ipv4);
            match at {
                Some(a) if a.is_unspecified() || a.is_broadcast() || a.is_multicast() => {
                    ctx.error(
                        v.span(),
                        p("partner"),
                        format!(
                            "{a} cannot be a partner's address: use the partner server's \
                             unicast address"
                        ),
                    );
                    None
                }
                Some(a) => Some(At::new(
                    SocketAddr::from((a, partner_port)),
                    v.span(),
                    p("partner"),
                )),
                None => None,
            }
        }
    };

    let listen_port_v = integer_key(ctx, t, &path, "listen_port", (1, 65_535));
    let listen_port = listen_port_v.map_or(DEFAULT_FAILOVER_PORT, |(n, _)| n as u16);
    let mut listen = At::new(
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, listen_port)),
        listen_port_v.map_or(header.clone(), |(_, v)| v.span()),
        p(if listen_port_v.is_some() {
            "listen_port"
        } else {
            "listen"
        }),
    );
    if let Some(v) = reader::get(t, "listen") {
        if let Some(a) = reader::parsed(ctx, v, &p("listen"), values::ipv4) {
            if a.is_broadcast() || a.is_multicast() {
                ctx.error(
                    v.span(),
                    p("listen"),
                    format!(
                        "{a} is not an address to listen on: use one of this server's \
                         addresses, or 0.0.0.0 for all"
                    ),
                );
            } else {
                listen = At::new(SocketAddr::from((a, listen_port)), v.span(), p("listen"));
            }
        }
    }

    let listen_default = reader::get(t, "listen").is_none();
    let mode = read_mode(ctx, t, &path, &header, role);

    let mclt_secs = duration_or(ctx, t, &path, "mclt", (1, MAX_LONG_SECS), 3600);
    let switchover = reader::get(t, "state_switchover_interval").and_then(|v| {
        let k = p("state_switchover_interval");
        reader::duration(ctx, v, &k, 1, MAX_LONG_SECS).map(|s| At::new(s as u32, v.span(), k))
    });
    let max_clock_skew_secs = duration_or(ctx, t, &path, "max_clock_skew", (1, MAX_SHORT_SECS), 60);
    let max_response_delay_secs =
        duration_or(ctx, t, &path, "max_response_delay", (3, MAX_SHORT_SECS), 60);
    let startup_secs = duration_or(ctx, t, &path, "startup_wait", (1, MAX_SHORT_SECS), 10);
    let max_unacked_updates =
        integer_key(ctx, t, &path, "max_unacked_updates", (1, 1024)).map_or(64, |(n, _)| n as u32);

    let secret = read_secret(ctx, t, &path);
    let tls = read_tls(ctx, t, &path, &header);
    let partner_admin_v = reader::get(t, "partner_admin");
    let partner_admin_at = partner_admin_v
        .and_then(|v| reader::parsed(ctx, v, &p("partner_admin"), admin_address).map(|a| (a, v)));
    let partner_admin = partner_admin_at.as_ref().map(|((a, _), _)| *a);
    let scheme = partner_admin_at
        .as_ref()
        .and_then(|((_, https), v)| https.map(|h| (h, v.span())));
    let link_required = matches!(
        reader::get(t, "tls").map(|v| v.get_ref()),
        Some(DeValue::String(s)) if &**s == "required"
    );
    let admin_ip = partner_admin
        .map(|a| a.ip())
        .or_else(|| partner.as_ref().map(|a| a.v.ip()));
    let partner_admin_tls = read_partner_admin_tls(
        ctx,
        t,
        &path,
        &header,
        PeerTlsContext {
            link: tls.as_ref(),
            link_unusable: link_required && tls.is_none(),
            scheme,
            admin_ip,
        },
    );
    let comm_alarm_secs = duration_or(
        ctx,
        t,
        &path,
        "comm_interrupted_alarm",
        (1, MAX_LONG_SECS),
        DEFAULT_COMM_ALARM_SECS,
    );
    let pool_low_percent = integer_key(ctx, t, &path, "pool_low_water_percent", (0, 100))
        .map_or(DEFAULT_POOL_LOW_PERCENT, |(n, _)| n as u8);

    let mut scopes: Vec<At<String>> = Vec::new();
    match reader::get(t, "scopes") {
        None => reader::missing(
            ctx,
            header.clone(),
            &path,
            "scopes",
            "the names of the scopes this relationship shares, like [\"lan\"]",
        ),
        Some(v) => {
            if let Some(a) = reader::array(ctx, v, &p("scopes")) {
                if a.is_empty() {
                    ctx.error(
                        v.span(),
                        p("scopes"),
                        "needs at least one scope: the scopes this relationship shares with the \
                         partner",
                    );
                }
                for (j, item) in a.iter().enumerate() {
                    let ipath = reader::index(&p("scopes"), j);
                    let Some(s) = reader::string(ctx, item, &ipath) else {
                        continue;
                    };
                    if let Some(first) = scopes.iter().find(|x| x.v == s) {
                        let line = ctx.line_of(first.span.start);
                        ctx.error(
                            item.span(),
                            &ipath,
                            format!(
                                "scope {} is already listed (line {line})",
                                reader::quoted(s)
                            ),
                        );
                    } else {
                        scopes.push(At::new(s.to_string(), item.span(), ipath));
                    }
                }
            }
        }
    }

    FailoverDraft {
        path,
        header,
        name,
        role,
        mode,
        partner,
        listen,
        listen_default,
        mclt_secs,
        switchover,
        secret,
        tls,
        scopes,
        max_clock_skew_secs,
        max_response_delay_secs,
        startup_secs,
        max_unacked_updates,
        partner_admin,
        partner_admin_tls,
        comm_alarm_secs,
        pool_low_percent,
        clean: ctx.errors.len() == before,
    }
}

/// The mode in primary/secondary terms (None when a part of it is missing or wrong).
fn read_mode(
    ctx: &mut Ctx<'_>,
    t: &DeTable<'_>,
    path: &str,
    header: &Range<usize>,
    role: Option<Role>,
) -> Option<Mode> {
    let mode_v = reader::get(t, "mode");
    let kind = match mode_v {
        None => Some(ModeKind::LoadBalance),
        Some(v) => reader::choice(
            ctx,
            v,
            &reader::join(path, "mode"),
            &[
                ("load-balance", ModeKind::LoadBalance),
                ("hot-standby", ModeKind::HotStandby),
            ],
        ),
    };
    let explicit = mode_v.is_some();
    let (lb, hs, reserve) = (
        reader::get(t, "load_balance_percent"),
        reader::get(t, "hot_standby_role"),
        reader::get(t, "reserve_percent"),
    );
    match kind? {
        ModeKind::LoadBalance => {
            for (v, key) in [(hs, "hot_standby_role"), (reserve, "reserve_percent")] {
                if let Some(v) = v {
                    wrong_mode(ctx, v, path, key, ModeKind::LoadBalance, explicit);
                }
            }
            let percent = match lb {
                None => 50,
                Some(_) => integer_key(ctx, t, path, "load_balance_percent", (0, 100))?.0 as u8,
            };
            if hs.is_some() || reserve.is_some() {
                return None;
            }
            // `load_balance_percent` is this server's share; the mode names the primary's.
            let primary_percent = match role? {
                Role::Primary => percent,
                Role::Secondary => 100 - percent,
            };
            Some(Mode::LoadBalance { primary_percent })
        }
        ModeKind::HotStandby => {
            if let Some(v) = lb {
                wrong_mode(
                    ctx,
                    v,
                    path,
                    "load_balance_percent",
                    ModeKind::HotStandby,
                    explicit,
                );
            }
            let active = match hs {
                None => {
                    reader::missing(
                        ctx,
                        header.clone(),
                        path,
                        "hot_standby_role",
                        "with mode = \"hot-standby\": \"active\" or \"standby\", this server's \
                         part",
                    );
                    None
                }
                Some(v) => reader::choice(
                    ctx,
                    v,
                    &reader::join(path, "hot_standby_role"),
                    &[("active", true), ("standby", false)],
                ),
            };
            let reserve_percent = match reserve {
                None => Some(5),
                Some(_) => {
                    integer_key(ctx, t, path, "reserve_percent", (0, 100)).map(|(n, _)| n as u8)
                }
            };
            let (active, reserve_percent, role) = (active?, reserve_percent?, role?);
            if lb.is_some() {
                return None;
            }
            Some(Mode::HotStandby {
                active: if active { role } else { role.other() },
                reserve_percent,
            })
        }
    }
}

/// `shared_secret_file` or `shared_secret` (an error if both are given).
/// The TLS file keys of a relationship, with what each holds.
const TLS_FILES: [(&str, &str); 3] = [
    (
        "tls_ca_file",
        "the PEM file of the CA that issued both partners' certificates",
    ),
    (
        "tls_cert_file",
        "the PEM file of this server's certificate (and intermediates)",
    ),
    ("tls_key_file", "the PEM file of this server's private key"),
];

/// `tls` and its keys. With `tls = "required"` every file and the partner's name must be given,
/// and the files are read and checked now (a mistake in them is a configuration error, not a
/// refused connection later).
fn read_tls(
    ctx: &mut Ctx<'_>,
    t: &DeTable<'_>,
    path: &str,
    header: &Range<usize>,
) -> Option<TlsSettings> {
    let p = |k: &str| reader::join(path, k);
    let tls_v = reader::get(t, "tls");
    let required = match tls_v {
        None => false,
        Some(v) => reader::choice(ctx, v, &p("tls"), &[("required", true), ("off", false)])?,
    };
    let keys = [
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_partner_name",
    ];
    if !required {
        for k in keys {
            if let Some(v) = reader::get(t, k) {
                ctx.error(
                    v.span(),
                    p(k),
                    format!(
                        "`{k}` applies only with tls = \"required\"; this relationship's link is \
                         plain TCP{}",
                        if tls_v.is_none() {
                            " (tls = \"off\", the default)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        return None;
    }
    let mut files = Vec::new();
    let mut ok = true;
    for (k, what) in TLS_FILES {
        match reader::get(t, k) {
            None => {
                reader::missing(ctx, header.clone(), path, k, what);
                ok = false;
            }
            Some(v) => match reader::string(ctx, v, &p(k)) {
                Some(s) if s.starts_with('/') => files.push(PathBuf::from(s)),
                Some(s) => {
                    ctx.error(
                        v.span(),
                        p(k),
                        format!("`{s}` is not an absolute path (like /etc/tandem/tls/{k}.pem)"),
                    );
                    ok = false;
                }
                None => ok = false,
            },
        }
    }
    let name = match reader::get(t, "tls_partner_name") {
        None => {
            reader::missing(
                ctx,
                header.clone(),
                path,
                "tls_partner_name",
                "the DNS name in the partner's certificate, like \"dhcp2.example.net\"",
            );
            None
        }
        Some(v) => reader::string(ctx, v, &p("tls_partner_name")).map(str::to_owned),
    };
    let (Some(name), true) = (name, ok) else {
        return None;
    };
    let mut it = files.into_iter();
    let (Some(ca_file), Some(cert_file), Some(key_file)) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    let settings = TlsSettings {
        ca_file,
        cert_file,
        key_file,
        partner_name: name,
    };
    if let Err(e) = tls::load(&settings) {
        let at = tls_v.map_or(header.clone(), |v| v.span());
        ctx.error(at, p("tls"), e.to_string());
        return None;
    }
    Some(settings)
}

/// `partner_admin`: `IP:PORT` or an IPv4 address (port 9167), either optionally after
/// `https://` or `http://` (and with a trailing `/`); the address, and whether a scheme asked for
/// HTTPS (None: no scheme).
fn admin_address(s: &str) -> Result<(SocketAddr, Option<bool>), String> {
    let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
        (Some(true), r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (Some(false), r)
    } else {
        (None, s)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.parse::<SocketAddr>()
        .or_else(|_| {
            rest.parse::<Ipv4Addr>()
                .map(|a| SocketAddr::from((a, DEFAULT_ADMIN_PORT)))
        })
        .map(|a| (a, https))
        .map_err(|_| {
            format!(
                "{} is not an address: give the partner's admin endpoint as \
                 \"IP:PORT\" (like \"10.0.0.3:9167\") or an IPv4 address (port 9167), \
                 optionally after https:// (the same as partner_admin_tls = \"required\")",
                reader::quoted(s)
            )
        })
}

/// The keys of HTTPS to the partner's admin endpoint, besides `partner_admin_tls` itself.
const PEER_TLS_KEYS: [&str; 4] = [
    "partner_admin_ca_file",
    "partner_admin_name",
    "partner_admin_cert_file",
    "partner_admin_key_file",
];

/// What [`read_partner_admin_tls`] takes from the rest of the relationship.
struct PeerTlsContext<'a> {
    /// The link's TLS settings (`tls = "required"`, usable): the defaults.
    link: Option<&'a TlsSettings>,
    /// `tls = "required"` but its keys are wrong (reported already): the defaults are unknown.
    link_unusable: bool,
    /// `partner_admin` began with `https://` (true) or `http://` (false), at this span.
    scheme: Option<(bool, Range<usize>)>,
    /// The partner admin endpoint's IP address: the last default of the expected name.
    admin_ip: Option<IpAddr>,
}

/// An absolute path at key `k` of `t`: Ok(None) if absent, Err if wrong (reported).
fn abs_path(
    ctx: &mut Ctx<'_>,
    t: &DeTable<'_>,
    path: &str,
    k: &str,
) -> Result<Option<PathBuf>, ()> {
    let Some(v) = reader::get(t, k) else {
        return Ok(None);
    };
    let key = reader::join(path, k);
    match reader::string(ctx, v, &key) {
        Some(s) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
        Some(s) => {
            ctx.error(
                v.span(),
                key,
                format!("`{s}` is not an absolute path (like /etc/tandem/tls/{k}.pem)"),
            );
            Err(())
        }
        None => Err(()),
    }
}

/// `partner_admin_tls` and its keys. With HTTPS required, the CA, the name and the client
/// certificate come from the `partner_admin_*` keys or default to the link's `tls_*` keys
/// (the name finally to the partner admin endpoint's IP address, the certificate to none), and
/// the files are read and checked now, as the link's.
fn read_partner_admin_tls(
    ctx: &mut Ctx<'_>,
    t: &DeTable<'_>,
    path: &str,
    header: &Range<usize>,
    c: PeerTlsContext<'_>,
) -> Option<PeerTlsSettings> {
    let p = |k: &str| reader::join(path, k);
    let tls_v = reader::get(t, "partner_admin_tls");
    let explicit = match tls_v {
        None => None,
        Some(v) => Some(reader::choice(
            ctx,
            v,
            &p("partner_admin_tls"),
            &[("required", true), ("off", false)],
        )?),
    };
    if let (Some(want), Some((https, _)), Some(v)) = (explicit, &c.scheme, tls_v) {
        if want != *https {
            ctx.error(
                v.span(),
                p("partner_admin_tls"),
                format!(
                    "partner_admin_tls = \"{}\" contradicts partner_admin, which begins with \
                     {}; give the address without a scheme, or make the two agree",
                    if want { "required" } else { "off" },
                    if *https { "https://" } else { "http://" }
                ),
            );
            return None;
        }
    }
    let required = explicit.or(c.scheme.as_ref().map(|s| s.0)).unwrap_or(false);
    if !required {
        for k in PEER_TLS_KEYS {
            if let Some(v) = reader::get(t, k) {
                ctx.error(
                    v.span(),
                    p(k),
                    format!(
                        "`{k}` applies only with partner_admin_tls = \"required\"; requests to \
                         the partner's admin endpoint go over plain HTTP{}",
                        if explicit.is_none() {
                            " (partner_admin_tls = \"off\", the default)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        return None;
    }
    // Where an error about a defaulted value goes: what asked for HTTPS.
    let (at, at_key) = match (tls_v, &c.scheme) {
        (Some(v), _) => (v.span(), "partner_admin_tls"),
        (None, Some((_, span))) => (span.clone(), "partner_admin"),
        (None, None) => (header.clone(), "partner_admin_tls"),
    };
    let mut ok = true;

    let ca = match abs_path(ctx, t, path, "partner_admin_ca_file") {
        Err(()) => None,
        Ok(Some(f)) => Some((f, "partner_admin_ca_file")),
        Ok(None) => match c.link {
            Some(l) => Some((l.ca_file.clone(), "tls_ca_file")),
            None if c.link_unusable => None,
            None => {
                reader::missing(
                    ctx,
                    header.clone(),
                    path,
                    "partner_admin_ca_file",
                    "with partner_admin_tls = \"required\" and no tls_ca_file: the PEM file of \
                     the CA that signed the partner's admin endpoint certificate",
                );
                None
            }
        },
    };
    ok &= ca.is_some();

    let cert = abs_path(ctx, t, path, "partner_admin_cert_file");
    let key = abs_path(ctx, t, path, "partner_admin_key_file");
    let client = match (cert, key) {
        (Err(()), _) | (_, Err(())) => {
            ok = false;
            None
        }
        (Ok(Some(cert)), Ok(Some(key))) => Some((
            cert,
            key,
            "partner_admin_cert_file",
            "partner_admin_key_file",
        )),
        (Ok(given), Ok(_)) => {
            let one = if given.is_some() {
                ["partner_admin_cert_file", "partner_admin_key_file"]
            } else {
                ["partner_admin_key_file", "partner_admin_cert_file"]
            };
            match reader::get(t, one[0]) {
                Some(v) => {
                    ctx.error(
                        v.span(),
                        p(one[0]),
                        format!(
                            "`{}` needs `{}` beside it: the client certificate and its private key \
                             go together",
                            one[0], one[1]
                        ),
                    );
                    ok = false;
                    None
                }
                None => match c.link {
                    Some(l) => Some((
                        l.cert_file.clone(),
                        l.key_file.clone(),
                        "tls_cert_file",
                        "tls_key_file",
                    )),
                    None => {
                        ok &= !c.link_unusable;
                        None
                    }
                },
            }
        }
    };

    let name = match reader::get(t, "partner_admin_name") {
        Some(v) => reader::string(ctx, v, &p("partner_admin_name"))
            .map(|s| (s.to_string(), "partner_admin_name")),
        None => match (c.link, c.admin_ip) {
            (Some(l), _) => Some((l.partner_name.clone(), "tls_partner_name")),
            (None, _) if c.link_unusable => None,
            (None, Some(ip)) => Some((ip.to_string(), "partner_admin")),
            // The partner's address is missing or wrong (reported).
            (None, None) => None,
        },
    };
    let (Some((ca_file, ca_key)), Some((name, name_key)), true) = (ca, name, ok) else {
        return None;
    };
    let (client, cert_key, key_key) = match client {
        Some((c, k, ck, kk)) => (Some((c, k)), ck, kk),
        None => (None, "partner_admin_cert_file", "partner_admin_key_file"),
    };
    let settings = PeerTlsSettings {
        ca_file,
        name,
        client,
        keys: PeerTlsKeys {
            ca: ca_key,
            cert: cert_key,
            key: key_key,
            name: name_key,
        },
    };
    if let Err(e) = load_peer(&settings) {
        let key = e.part.key(&settings.keys);
        match reader::get(t, key).filter(|_| key.starts_with("partner_admin_")) {
            Some(v) => ctx.error(v.span(), p(key), e.message),
            None => ctx.error(at, p(at_key), e.message),
        }
        return None;
    }
    Some(settings)
}

fn read_secret(ctx: &mut Ctx<'_>, t: &DeTable<'_>, path: &str) -> Option<Vec<u8>> {
    let file_v = reader::get(t, "shared_secret_file");
    let inline_v = reader::get(t, "shared_secret");
    if let (Some(f), Some(s)) = (file_v, inline_v) {
        let (later, key) = if f.span().start > s.span().start {
            (f, "shared_secret_file")
        } else {
            (s, "shared_secret")
        };
        ctx.error(
            later.span(),
            reader::join(path, key),
            "give either `shared_secret_file` or `shared_secret`, not both",
        );
        return None;
    }
    if let Some(v) = file_v {
        let k = reader::join(path, "shared_secret_file");
        let s = reader::string(ctx, v, &k)?;
        if !s.starts_with('/') {
            ctx.error(
                v.span(),
                k,
                format!("`{s}` is not an absolute path (like /etc/tandem/failover.secret)"),
            );
            return None;
        }
        return match read_secret_file(Path::new(s)) {
            Ok(b) => Some(b),
            Err(m) => {
                ctx.error(v.span(), k, m);
                None
            }
        };
    }
    let v = inline_v?;
    let k = reader::join(path, "shared_secret");
    let s = reader::string(ctx, v, &k)?;
    if s.is_empty() {
        ctx.error(
            v.span(),
            k,
            "the shared secret cannot be empty; leave the key out to send unsigned messages",
        );
        return None;
    }
    Some(s.as_bytes().to_vec())
}
