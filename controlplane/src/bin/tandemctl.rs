//! `tandemctl`: command-line client of a running `tandemd`'s admin endpoint.
//!
//! Exit codes: 0 success, 1 the server answered with an error, 2 usage error, 3 the server could
//! not be reached.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

/// Talk to a running tandemd.
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
}

#[derive(Subcommand, Debug)]
enum LeaseCmd {
    /// List leases.
    List {
        /// Only leases in this state (active, offered, released, expired, abandoned, free).
        #[arg(long)]
        state: Option<String>,
        /// Only leases of this scope.
        #[arg(long)]
        scope: Option<String>,
    },
}

fn get(admin: &str, path: &str) -> Result<Value, (u8, String)> {
    let url = format!("http://{admin}{path}");
    let mut resp = ureq::get(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .map_err(|e| (3, format!("cannot reach tandemd at {admin}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| (3, format!("reading the answer from {admin}: {e}")))?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| (1, format!("bad JSON from {admin}: {e}")))?;
    if status >= 400 {
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string();
        return Err((1, format!("tandemd: {msg} (HTTP {status})")));
    }
    Ok(v)
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

fn main() -> ExitCode {
    let args = Args::parse();
    let (path, kind) = match &args.cmd {
        Cmd::Lease {
            cmd: LeaseCmd::List { state, scope },
        } => {
            let mut q = vec![];
            if let Some(st) = state {
                q.push(format!("state={st}"));
            }
            if let Some(sc) = scope {
                q.push(format!("scope={sc}"));
            }
            let qs = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            (format!("/v1/leases{qs}"), "leases")
        }
        Cmd::Stats => ("/v1/stats".to_string(), "stats"),
        Cmd::Status => ("/v1/status".to_string(), "status"),
    };
    let v = match get(&args.admin, &path) {
        Ok(v) => v,
        Err((code, msg)) => {
            eprintln!("tandemctl: {msg}");
            return ExitCode::from(code);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    match kind {
        "leases" => {
            println!(
                "{:<16} {:<10} {:<18} {:<12} {:<12} CLIENT-ID",
                "ADDRESS", "STATE", "MAC", "EXPIRES", "SCOPE"
            );
            for l in v.as_array().into_iter().flatten() {
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
        "stats" => {
            if let Value::Object(m) = &v {
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
        _ => {
            println!("server_id   {}", s(&v, "server_id"));
            println!("version     {}", s(&v, "version"));
            println!("uptime      {}s", s(&v, "uptime_secs"));
            println!("backend     {}", s(&v, "backend"));
            println!("durability  {}", s(&v, "durability"));
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
    }
    ExitCode::SUCCESS
}
