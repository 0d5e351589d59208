//! The admin endpoint's TLS keys of `[server]`: `admin_tls`, `admin_tls_cert_file`,
//! `admin_tls_key_file`, `admin_tls_client_ca_file` and `admin_tls_readonly_names`.
//!
//! With `admin_tls = "required"` the files are read and checked here, so that a missing file, a
//! key others may read, a key that does not match the certificate or a CA file without a usable
//! certificate is a configuration error at its key, not a failed start or refused connections
//! later.

use std::ops::Range;
use std::path::PathBuf;

use toml::de::DeTable;

use super::reader::{self, Ctx};
use crate::admin::tls::{self, AdminTlsSettings};

/// Every admin TLS key but `admin_tls` itself.
const FILE_KEYS: [&str; 4] = [
    "admin_tls_cert_file",
    "admin_tls_key_file",
    "admin_tls_client_ca_file",
    "admin_tls_readonly_names",
];

/// Longest name in `admin_tls_readonly_names` (a DNS name is at most 253 characters).
const MAX_NAME_LEN: usize = 255;

/// What the admin TLS keys of `[server]` (table `t`, header at `header`) say: the settings when
/// they are complete and their files usable, and whether a client CA is configured (even one
/// whose file turned out unusable: its error is reported already, and the loopback rule should
/// not add a second one).
pub(crate) fn read(
    ctx: &mut Ctx<'_>,
    t: &DeTable<'_>,
    header: &Range<usize>,
) -> (Option<AdminTlsSettings>, bool) {
    let p = |k: &str| reader::join("server", k);
    let tls_v = reader::get(t, "admin_tls");
    let required = match tls_v {
        None => false,
        Some(v) => {
            match reader::choice(
                ctx,
                v,
                &p("admin_tls"),
                &[("required", true), ("off", false)],
            ) {
                Some(r) => r,
                // The mistake is reported; the other keys are not judged against a guess.
                None => return (None, reader::get(t, "admin_tls_client_ca_file").is_some()),
            }
        }
    };
    if !required {
        for k in FILE_KEYS {
            if let Some(v) = reader::get(t, k) {
                ctx.error(
                    v.span(),
                    p(k),
                    format!(
                        "`{k}` applies only with admin_tls = \"required\"; the admin endpoint is \
                         plain HTTP{}",
                        if tls_v.is_none() {
                            " (admin_tls = \"off\", the default)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        return (None, false);
    }
    let mut ok = true;
    let mut path_of = |ctx: &mut Ctx<'_>, k: &str, what: Option<&str>| -> Option<PathBuf> {
        match reader::get(t, k) {
            None => {
                if let Some(what) = what {
                    reader::missing(ctx, header.clone(), "server", k, what);
                    ok = false;
                }
                None
            }
            Some(v) => match reader::string(ctx, v, &p(k)) {
                Some(s) if s.starts_with('/') => Some(PathBuf::from(s)),
                Some(s) => {
                    ctx.error(
                        v.span(),
                        p(k),
                        format!("`{s}` is not an absolute path (like /etc/tandem/tls/admin.pem)"),
                    );
                    ok = false;
                    None
                }
                None => {
                    ok = false;
                    None
                }
            },
        }
    };
    let cert_file = path_of(
        ctx,
        "admin_tls_cert_file",
        Some("the PEM file of the admin endpoint's certificate (and intermediates)"),
    );
    let key_file = path_of(
        ctx,
        "admin_tls_key_file",
        Some("the PEM file of the admin endpoint's private key, mode 600"),
    );
    let client_ca_file = path_of(ctx, "admin_tls_client_ca_file", None);
    let client_ca_given = reader::get(t, "admin_tls_client_ca_file").is_some();
    let readonly_names = read_names(ctx, t, client_ca_given, &mut ok);
    let (Some(cert_file), Some(key_file), true) = (cert_file, key_file, ok) else {
        return (None, client_ca_given);
    };
    let settings = AdminTlsSettings {
        cert_file,
        key_file,
        client_ca_file,
        readonly_names,
    };
    if let Err(e) = tls::load(&settings) {
        let key = e.file.key();
        let at = reader::get(t, key).map_or(header.clone(), |v| v.span());
        ctx.error(at, p(key), e.message);
        return (None, client_ca_given);
    }
    (Some(settings), client_ca_given)
}

/// `admin_tls_readonly_names`: distinct, non-empty names, and only beside a client CA.
fn read_names(ctx: &mut Ctx<'_>, t: &DeTable<'_>, client_ca: bool, ok: &mut bool) -> Vec<String> {
    let key = "admin_tls_readonly_names";
    let path = reader::join("server", key);
    let Some(v) = reader::get(t, key) else {
        return Vec::new();
    };
    if !client_ca {
        ctx.error(
            v.span(),
            &path,
            "`admin_tls_readonly_names` needs `admin_tls_client_ca_file` beside it: without a \
             client CA no client certificate is asked for, so none can be read-only",
        );
        *ok = false;
        return Vec::new();
    }
    let Some(items) = reader::array(ctx, v, &path) else {
        *ok = false;
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = reader::index(&path, i);
        let Some(s) = reader::string(ctx, item, &ipath) else {
            *ok = false;
            continue;
        };
        let problem = if s.trim().is_empty() {
            Some("a name cannot be empty".to_string())
        } else if s.trim() != s {
            Some(format!("{s:?} has spaces around it"))
        } else if s.chars().any(char::is_control) {
            Some(format!("{s:?} holds control characters"))
        } else if s.chars().count() > MAX_NAME_LEN {
            Some(format!("a name is at most {MAX_NAME_LEN} characters"))
        } else if names.iter().any(|n| n.eq_ignore_ascii_case(s)) {
            Some(format!("{s:?} is listed twice"))
        } else {
            None
        };
        match problem {
            Some(m) => {
                ctx.error(item.span(), &ipath, m);
                *ok = false;
            }
            None => names.push(s.to_string()),
        }
    }
    names
}
