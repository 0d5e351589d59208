//! Starting the `tandemd` that cargo built, for the tests that run it on loopback: the tool
//! check, the start with its output in a log file, and the wait for its admin endpoint.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The daemon under test.
pub const TANDEMD: &str = env!("CARGO_BIN_EXE_tandemd");

/// Whether `tool` is on the PATH (or in the usual system directories).
pub fn which(tool: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|d| Path::new(d).join(tool).is_file())
}

/// Fails the test, naming `what`, when any of `tools` is missing.
pub fn need_tools(what: &str, tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !which(t)).collect();
    assert!(
        missing.is_empty(),
        "missing tools for {what}: {missing:?}; install them with \
         `sudo bash deploy/install-deps.sh`"
    );
}

/// Starts `tandemd --config config` with stdout and stderr in `log`.
pub fn spawn(config: &Path, log: &Path) -> Child {
    let out = fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("dup log");
    Command::new(TANDEMD)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start tandemd")
}

/// Waits until `admin` (`127.0.0.1:PORT`) accepts connections; fails the test with the log if
/// tandemd (`name` in messages) exits first or 20 s pass. The connection is closed without a
/// byte, which the endpoint neither serves nor counts.
pub fn wait_admin(child: &mut Child, admin: &str, log: &Path, name: &str) {
    let log_text = || fs::read_to_string(log).unwrap_or_default();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("tandemd status") {
            panic!("{name} exited during start-up ({st}):\n{}", log_text());
        }
        if TcpStream::connect(admin).is_ok() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{name} not listening after 20 s:\n{}",
            log_text()
        );
        sleep(Duration::from_millis(50));
    }
}
