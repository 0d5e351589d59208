//! systemd readiness notification (`sd_notify`), without libsystemd.
//!
//! When systemd starts `tandemd` with `Type=notify`, it puts the path of a datagram socket in
//! `$NOTIFY_SOCKET`; the daemon sends newline-separated `KEY=VALUE` assignments to it:
//! `READY=1` once it serves, `RELOADING=1` while it reloads its configuration (then `READY=1`
//! again), `STOPPING=1` when it shuts down, and `STATUS=...` lines that `systemctl status` shows.
//! A name starting with `@` is a Linux abstract socket (the `@` stands for the leading NUL byte).
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd) every call is a no-op. Failures to notify are
//! logged, never fatal: the service keeps serving.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// One state change to report to systemd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice<'a> {
    /// Start-up finished: the service is serving (`READY=1`).
    Ready,
    /// A configuration reload has begun (`RELOADING=1`); send [`Notice::Ready`] when it is over.
    Reloading,
    /// The service is shutting down (`STOPPING=1`).
    Stopping,
    /// Free-form status text for `systemctl status` (`STATUS=...`).
    Status(&'a str),
}

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is not a usable socket address.
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an abstract name (@...)")]
    BadAddress(String),
    /// Creating the socket or sending the datagram failed.
    #[error("sending to NOTIFY_SOCKET {addr:?}: {source}")]
    Io {
        /// The socket address as given.
        addr: String,
        /// The error.
        source: io::Error,
    },
}

/// The datagram for `notices`: one `KEY=VALUE` line each, newline-terminated. Newlines inside a
/// status text are replaced by spaces (they would end the assignment early).
pub fn format(notices: &[Notice<'_>]) -> String {
    let mut s = String::new();
    for n in notices {
        match n {
            Notice::Ready => s.push_str("READY=1\n"),
            Notice::Reloading => s.push_str("RELOADING=1\n"),
            Notice::Stopping => s.push_str("STOPPING=1\n"),
            Notice::Status(text) => {
                s.push_str("STATUS=");
                s.extend(text.chars().map(|c| if c == '\n' { ' ' } else { c }));
                s.push('\n');
            }
        }
    }
    s
}

fn address(name: &str) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::BadAddress(name.to_string());
    if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes()).map_err(|_| bad())
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// Send `notices` to the socket named `socket` (a path, or `@name` for an abstract socket).
pub fn send_to(socket: &str, notices: &[Notice<'_>]) -> Result<(), NotifyError> {
    let addr = address(socket)?;
    let io_err = |source| NotifyError::Io {
        addr: socket.to_string(),
        source,
    };
    let sock = UnixDatagram::unbound().map_err(io_err)?;
    sock.send_to_addr(format(notices).as_bytes(), &addr)
        .map_err(io_err)?;
    Ok(())
}

/// Send `notices` to `$NOTIFY_SOCKET` if it is set; logs (and otherwise ignores) failures.
/// Returns true if a datagram was sent.
pub fn notify(notices: &[Notice<'_>]) -> bool {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return false;
    };
    let socket = socket.to_string_lossy();
    match send_to(&socket, notices) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_one_assignment_per_line() {
        assert_eq!(
            format(&[Notice::Ready, Notice::Status("serving 2 scopes")]),
            "READY=1\nSTATUS=serving 2 scopes\n"
        );
        assert_eq!(
            format(&[Notice::Reloading, Notice::Stopping]),
            "RELOADING=1\nSTOPPING=1\n"
        );
        assert_eq!(
            format(&[Notice::Status("two\nlines")]),
            "STATUS=two lines\n"
        );
    }

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification datagram");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram")
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        send_to(
            path.to_str().expect("UTF-8 path"),
            &[Notice::Ready, Notice::Status("up")],
        )
        .expect("send");
        assert_eq!(receive(&sock), "READY=1\nSTATUS=up\n");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tandem-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        send_to(&format!("@{name}"), &[Notice::Stopping]).expect("send");
        assert_eq!(receive(&sock), "STOPPING=1\n");
    }

    #[test]
    fn notify_uses_the_environment_variable() {
        // The only test of this crate that touches NOTIFY_SOCKET.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("env-notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        std::env::set_var(NOTIFY_SOCKET_ENV, &path);
        let sent = notify(&[Notice::Reloading, Notice::Status("reloading")]);
        std::env::remove_var(NOTIFY_SOCKET_ENV);
        assert!(sent);
        assert_eq!(receive(&sock), "RELOADING=1\nSTATUS=reloading\n");
        assert!(
            !notify(&[Notice::Ready]),
            "no NOTIFY_SOCKET: nothing is sent"
        );
    }

    #[test]
    fn refuses_relative_names_and_reports_missing_sockets() {
        assert!(matches!(
            send_to("relative.sock", &[Notice::Ready]),
            Err(NotifyError::BadAddress(_))
        ));
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nobody-listens");
        assert!(matches!(
            send_to(missing.to_str().expect("UTF-8 path"), &[Notice::Ready]),
            Err(NotifyError::Io { .. })
        ));
    }
}
