//! Man pages generated from the command-line definitions, for the Debian package
//! (`deploy/deb/build-deb.sh`): every binary answers the hidden invocation
//! `BINARY --write-man-pages DIR` by writing its page, and one page per subcommand
//! (`tandemctl-failover.1`, ...), into `DIR`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The hidden argument that asks a binary for its man pages.
pub const FLAG: &str = "--write-man-pages";

/// Writes the page of `cmd` (`NAME.SECTION`) and one per visible subcommand, recursively
/// (`NAME-SUB.SECTION`), into `dir`. Returns the files written.
pub fn write_pages(cmd: clap::Command, section: &str, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let name = cmd.get_name().to_string();
    page(cmd, &name, section, dir, &mut written)?;
    Ok(written)
}

fn page(
    cmd: clap::Command,
    name: &str,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let cmd = cmd.name(name.to_string()).display_name(name.to_string());
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(section)
        .source(format!("tandem {}", env!("CARGO_PKG_VERSION")))
        .manual("Tandem")
        .render(&mut buf)?;
    let path = dir.join(format!("{name}.{section}"));
    std::fs::write(&path, buf)?;
    written.push(path);
    for s in subs {
        let sub = format!("{name}-{}", s.get_name());
        page(s, &sub, section, dir, written)?;
    }
    Ok(())
}

/// If this process was started as `BINARY --write-man-pages DIR`, writes the pages of `cmd()`
/// into `DIR` and returns the exit code to leave with; `None` otherwise (parse the command line
/// as usual).
pub fn from_args(cmd: impl FnOnce() -> clap::Command, section: &str) -> Option<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() != 3 || args[1] != FLAG {
        return None;
    }
    let dir = Path::new(&args[2]);
    Some(match write_pages(cmd(), section, dir) {
        Ok(pages) => {
            for p in pages {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write man pages into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand_named_after_the_parent() {
        let cmd = clap::Command::new("tool")
            .about("A tool")
            .arg(clap::Arg::new("config").long("config").help("The file"))
            .subcommand(
                clap::Command::new("lease")
                    .about("Leases")
                    .subcommand(clap::Command::new("list").about("List them")),
            )
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = tempfile::tempdir().expect("temp dir");
        let pages = write_pages(cmd, "1", dir.path()).expect("pages");
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool.1", "tool-lease.1", "tool-lease-list.1"]);
        let main = std::fs::read_to_string(&pages[0]).unwrap();
        assert!(
            main.starts_with(".ie") || main.contains(".TH tool 1"),
            "{main}"
        );
        assert!(main.contains("\\-\\-config"), "{main}");
        let sub = std::fs::read_to_string(&pages[2]).unwrap();
        assert!(
            sub.contains("tool\\-lease\\-list") || sub.contains("tool-lease-list"),
            "{sub}"
        );
    }
}
