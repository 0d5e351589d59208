//! `tandemd`: the Tandem DHCPv4 server daemon.
//!
//! `tandemd --config FILE` runs the server in the foreground (logs on stderr);
//! `tandemd --check-config FILE` validates a configuration and prints every mistake with its line
//! and key, exiting 1 if there is any.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Tandem DHCPv4 server.
#[derive(Parser, Debug)]
#[command(name = "tandemd", version, about)]
struct Args {
    /// Run the server with this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit (0: valid, 1: errors printed).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    if let Some(code) = tandem_controlplane::manpage::from_args(Args::command, "8") {
        return code;
    }
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match tandem_controlplane::config::load(&path) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} scope(s), server_id {})",
                    path.display(),
                    cfg.settings.scopes.len(),
                    cfg.settings.server_id
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{errs}");
                eprintln!("{}: {} error(s)", path.display(), errs.0.len());
                ExitCode::FAILURE
            }
        };
    }
    let Some(path) = args.config else {
        eprintln!(
            "tandemd: give --config FILE to run, or --check-config FILE to validate (see --help)"
        );
        return ExitCode::from(2);
    };
    match tandem_controlplane::daemon::run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tandemd stopped");
            eprintln!("tandemd: {e}");
            ExitCode::FAILURE
        }
    }
}
