//! `tandemctl`: command-line client of a running `tandemd`'s admin endpoint.
//!
//! Exit codes, for scripts:
//! - 0: success;
//! - 1: the server answered with an error (bad parameter, unknown lease, invalid configuration
//!   on reload, worker not answering) or with something unreadable;
//! - 2: usage error (bad arguments, unreadable `--token-file`);
//! - 3: the server could not be reached;
//! - 4: the server refused the request as unauthenticated (missing or wrong token).
//!
//! The bearer token is read from `--token-file` (or `TANDEM_TOKEN_FILE`), else from
//! `/etc/tandem/admin.token` if that file exists and is readable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

/// Exit code: the server answered with an error.
const EXIT_SERVER: u8 = 1;
/// Exit code: usage error.
const EXIT_USAGE: u8 = 2;
/// Exit code: the server could not be reached.
const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: not authenticated.
const EXIT_UNAUTHORIZED: u8 = 4;

/// Token file used when neither `--token-file` nor `TANDEM_TOKEN_FILE` is given.
const DEFAULT_TOKEN_FILE: &str = "/etc/tandem/admin.token";

/// Talk to a running tandemd.
///
/// Exit codes: 0 ok, 1 server error, 2 usage, 3 unreachable, 4 unauthorized.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Admin endpoint of the server.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9167",
        env = "TANDEM_ADMIN"
    )]
    admin: String,
    /// File holding the admin API's bearer token [default: /etc/tandem/admin.token if it exists].
    #[arg(long, global = true, env = "TANDEM_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Leases.
    Lease {
        #[command(subcommand)]
        cmd: LeaseCmd,
    },
    /// Counters: requests, replies, drops by reason, journal commits.
    Stats,
    /// Server status and pool usage per scope.
    Status,
    /// Reload the configuration file (as SIGHUP does); prints every error if it is invalid.
    Reload,
    /// Print the Prometheus metrics.
    Metrics,
    /// Failover relationships (as Get-DhcpServerv4Failover and the -PartnerDown switch).
    Failover {
        #[command(subcommand)]
        cmd: FailoverCmd,
    },
}

#[derive(Subcommand, Debug)]
enum FailoverCmd {
    /// Show every relationship, or one: state, partner state, MCLT wait, pools, unacked
    /// updates, last contact, clock skew.
    Show {
        /// The relationship's name (all when omitted).
        name: Option<String>,
    },
    /// Tell the server its partner is down (it serves the partner's clients at once and takes
    /// the partner's free addresses after MCLT). Only when the partner is really not serving.
    PartnerDown {
        /// The relationship's name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum LeaseCmd {
    /// List leases, sorted by address.
    List {
        /// Only leases in this state (active, offered, released, expired, abandoned, free, ...).
        #[arg(long)]
        state: Option<String>,
        /// Only leases of this scope.
        #[arg(long)]
        scope: Option<String>,
        /// At most this many leases.
        #[arg(long)]
        limit: Option<usize>,
        /// Skip this many leases first.
        #[arg(long)]
        offset: Option<usize>,
    },
    /// Show the lease of one address.
    Show {
        /// The leased IPv4 address.
        address: std::net::Ipv4Addr,
    },
}

/// A failed command: exit code and message.
struct Fail(u8, String);

/// Where the token comes from, and the token if it could be read.
enum Auth {
    None,
    Token(String),
    /// The default file exists but cannot be read (the reason is shown if the server says 401).
    Unreadable(String),
}

fn read_token(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))
}

fn auth(args: &Args) -> Result<Auth, Fail> {
    match &args.token_file {
        Some(p) => read_token(p)
            .map(Auth::Token)
            .map_err(|e| Fail(EXIT_USAGE, e)),
        None => {
            let p = Path::new(DEFAULT_TOKEN_FILE);
            if !p.exists() {
                return Ok(Auth::None);
            }
            Ok(match read_token(p) {
                Ok(t) => Auth::Token(t),
                Err(e) => Auth::Unreadable(e),
            })
        }
    }
}

/// An answer of the server: body and the `X-Total-Count` header, if any.
struct Answer {
    body: String,
    total: Option<String>,
}

fn call(
    args: &Args,
    auth: &Auth,
    post: bool,
    path: &str,
    query: &[(&str, String)],
) -> Result<Answer, Fail> {
    let admin = &args.admin;
    let url = format!("http://{admin}{path}");
    let unreachable = |e: ureq::Error| {
        Fail(
            EXIT_UNREACHABLE,
            format!("cannot reach tandemd at {admin}: {e}"),
        )
    };
    fn prepare<B>(
        mut req: ureq::RequestBuilder<B>,
        auth: &Auth,
        query: &[(&str, String)],
    ) -> ureq::RequestBuilder<B> {
        if let Auth::Token(t) = auth {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in query {
            req = req.query(*k, v);
        }
        req.config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
    }
    let sent = if post {
        prepare(ureq::post(&url), auth, query).send_empty()
    } else {
        prepare(ureq::get(&url), auth, query).call()
    };
    let mut resp = sent.map_err(unreachable)?;
    let status = resp.status().as_u16();
    let total = resp
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Lease lists of large servers run to hundreds of megabytes of JSON.
    let body = resp
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .read_to_string()
        .map_err(|e| {
            Fail(
                EXIT_UNREACHABLE,
                format!("reading the answer from {admin}: {e}"),
            )
        })?;
    if status < 400 {
        return Ok(Answer { body, total });
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut msg = format!(
        "tandemd: {} (HTTP {status})",
        v.get("error").and_then(Value::as_str).unwrap_or("error")
    );
    for e in v
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        msg.push_str("\n  ");
        msg.push_str(e.get("text").and_then(Value::as_str).unwrap_or("?"));
    }
    if status == 401 {
        match auth {
            Auth::None => msg.push_str(&format!(
                "\n(no token sent: give --token-file FILE or set TANDEM_TOKEN_FILE; \
                 {DEFAULT_TOKEN_FILE} does not exist)"
            )),
            Auth::Unreadable(why) => msg.push_str(&format!("\n({why})")),
            Auth::Token(_) => {}
        }
        return Err(Fail(EXIT_UNAUTHORIZED, msg));
    }
    Err(Fail(EXIT_SERVER, msg))
}

fn json_of(a: &Answer, admin: &str) -> Result<Value, Fail> {
    serde_json::from_str(&a.body)
        .map_err(|e| Fail(EXIT_SERVER, format!("bad JSON from {admin}: {e}")))
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(x) => x.to_string(),
    }
}

fn when(v: &Value, k: &str) -> String {
    let Some(t) = v.get(k).and_then(Value::as_u64) else {
        return "-".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if t == 0 {
        "-".into()
    } else if t >= now {
        format!("in {}s", t - now)
    } else {
        format!("{}s ago", now - t)
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_leases(leases: &[Value]) {
    println!(
        "{:<16} {:<10} {:<18} {:<12} {:<12} CLIENT-ID",
        "ADDRESS", "STATE", "MAC", "EXPIRES", "SCOPE"
    );
    for l in leases {
        println!(
            "{:<16} {:<10} {:<18} {:<12} {:<12} {}",
            s(l, "address"),
            s(l, "state"),
            s(l, "mac"),
            when(l, "expires"),
            s(l, "scope"),
            s(l, "client_id")
        );
    }
}

fn print_stats(v: &Value) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            match x {
                Value::Object(inner) => {
                    for (k2, y) in inner {
                        println!("{:<32} {}", format!("{k}.{k2}"), y);
                    }
                }
                _ => println!("{k:<32} {x}"),
            }
        }
    }
}

fn print_status(v: &Value) {
    println!("server_id   {}", s(v, "server_id"));
    println!("version     {}", s(v, "version"));
    println!("uptime      {}s", s(v, "uptime_secs"));
    println!("backend     {}", s(v, "backend"));
    println!("durability  {}", s(v, "durability"));
    println!();
    println!(
        "{:<16} {:<20} {:>10} {:>10} {:>10}",
        "SCOPE", "SUBNET", "SIZE", "FREE", "ACTIVE"
    );
    for sc in v
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "{:<16} {:<20} {:>10} {:>10} {:>10}",
            s(sc, "name"),
            s(sc, "subnet"),
            s(sc, "size"),
            s(sc, "free"),
            s(sc, "active")
        );
    }
}

fn print_relationship(v: &Value) {
    let rows = [
        ("relationship", s(v, "name")),
        ("role", s(v, "role")),
        ("mode", s(v, "mode")),
        ("partner", s(v, "partner")),
        ("scopes", {
            let list: Vec<String> = v
                .get("scopes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            list.join(", ")
        }),
        (
            "state",
            format!("{} (since {})", s(v, "state"), when(v, "state_since")),
        ),
        ("partner state", s(v, "partner_state")),
        ("connected", s(v, "connected")),
        ("last connected", when(v, "last_connected")),
        ("mclt", format!("{}s", s(v, "mclt_secs"))),
        ("takeover", when(v, "takeover_at")),
        ("unacked updates", s(v, "unacked_updates")),
        (
            "free / backup",
            format!("{} / {}", s(v, "free"), s(v, "backup")),
        ),
        (
            "partner bindings",
            format!(
                "{} stored, {} refused",
                s(v, "partner_bindings"),
                s(v, "partner_rejected")
            ),
        ),
        (
            "our updates",
            format!(
                "{} acked, {} refused",
                s(v, "updates_acked"),
                s(v, "updates_rejected")
            ),
        ),
        ("replication lag", {
            let l = v.get("replication_lag_ms").cloned().unwrap_or(Value::Null);
            format!(
                "p50 <= {} ms, p99 <= {} ms over {} acknowledged updates",
                s(&l, "p50_le"),
                s(&l, "p99_le"),
                s(&l, "count")
            )
        }),
        ("clock skew", s(v, "clock_skew_secs")),
        ("last refusal", s(v, "last_refusal")),
    ];
    for (k, x) in rows {
        println!("{k:<18} {x}");
    }
}

fn run(args: &Args) -> Result<(), Fail> {
    let auth = auth(args)?;
    let admin = args.admin.as_str();
    match &args.cmd {
        Cmd::Lease {
            cmd:
                LeaseCmd::List {
                    state,
                    scope,
                    limit,
                    offset,
                },
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(x) = state {
                q.push(("state", x.clone()));
            }
            if let Some(x) = scope {
                q.push(("scope", x.clone()));
            }
            if let Some(x) = limit {
                q.push(("limit", x.to_string()));
            }
            if let Some(x) = offset {
                q.push(("offset", x.to_string()));
            }
            let a = call(args, &auth, false, "/v1/leases", &q)?;
            let v = json_of(&a, admin)?;
            if args.json {
                print_json(&v);
            } else {
                let list = v.as_array().cloned().unwrap_or_default();
                print_leases(&list);
                if let Some(total) = &a.total {
                    if limit.is_some() || offset.is_some() {
                        let from = offset.unwrap_or(0);
                        println!(
                            "({} shown from offset {from}, {total} matching)",
                            list.len()
                        );
                    }
                }
            }
        }
        Cmd::Lease {
            cmd: LeaseCmd::Show { address },
        } => {
            let a = call(args, &auth, false, &format!("/v1/leases/{address}"), &[])?;
            let v = json_of(&a, admin)?;
            if args.json {
                print_json(&v);
            } else {
                for k in ["address", "state", "scope", "mac", "client_id", "hostname"] {
                    println!("{k:<10} {}", s(&v, k));
                }
                for k in ["start", "cltt"] {
                    println!("{k:<10} {}", when(&v, k));
                }
                println!("{:<10} {}", "expires", when(&v, "expires"));
            }
        }
        Cmd::Stats => {
            let v = json_of(&call(args, &auth, false, "/v1/stats", &[])?, admin)?;
            if args.json {
                print_json(&v);
            } else {
                print_stats(&v);
            }
        }
        Cmd::Status => {
            let v = json_of(&call(args, &auth, false, "/v1/status", &[])?, admin)?;
            if args.json {
                print_json(&v);
            } else {
                print_status(&v);
            }
        }
        Cmd::Reload => {
            let v = json_of(&call(args, &auth, true, "/v1/reload", &[])?, admin)?;
            if args.json {
                print_json(&v);
            } else {
                println!("configuration reloaded: {} scope(s)", s(&v, "scopes"));
            }
        }
        Cmd::Metrics => {
            let a = call(args, &auth, false, "/metrics", &[])?;
            print!("{}", a.body);
        }
        Cmd::Failover {
            cmd: FailoverCmd::Show { name },
        } => {
            let path = match name {
                Some(n) => format!("/v1/failover/{n}"),
                None => "/v1/failover".into(),
            };
            let v = json_of(&call(args, &auth, false, &path, &[])?, admin)?;
            if args.json {
                print_json(&v);
            } else if name.is_some() {
                print_relationship(&v);
            } else {
                let rels = v
                    .get("relationships")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if rels.is_empty() {
                    println!("no failover relationships configured");
                }
                for (i, r) in rels.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print_relationship(r);
                }
            }
        }
        Cmd::Failover {
            cmd: FailoverCmd::PartnerDown { name },
        } => {
            let path = format!("/v1/failover/{name}/partner-down");
            let v = json_of(&call(args, &auth, true, &path, &[])?, admin)?;
            if args.json {
                print_json(&v);
            } else {
                println!("{}", s(&v, "message"));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("tandemctl: {msg}");
            ExitCode::from(code)
        }
    }
}
