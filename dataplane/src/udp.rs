//! The UDP-socket backend: one socket per served interface, bound to port 67 with
//! `SO_BINDTODEVICE`, so a reply always leaves through the interface its request came in on and
//! broadcasts reach the right link.
//!
//! This is the backend for hosts where XDP is unavailable (no privileges, old kernel) and for
//! tests. The sockets are non-blocking and registered with a `mio` poll by the worker.
//!
//! With several workers every worker has its own socket on every interface, all bound with
//! `SO_REUSEPORT`: the sockets of one interface form one reuseport group, and the daemon
//! attaches the steering program (`tandem_ebpf::ReuseportSteering`) that sends each request to
//! the socket of the worker owning its client.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Why the UDP backend could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UdpError {
    /// Creating or configuring the socket failed.
    #[error("interface {iface}: {what}: {source}")]
    Socket {
        /// Interface name.
        iface: String,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// The bound sockets: one per interface and worker.
#[derive(Debug)]
pub struct UdpBackend {
    /// The interfaces, in configuration order.
    pub interfaces: Vec<String>,
    /// Per worker, its socket on each interface (in `interfaces` order).
    pub workers: Vec<Vec<UdpSocket>>,
}

impl UdpBackend {
    /// Bind `0.0.0.0:port` on each interface (SO_BINDTODEVICE, SO_REUSEADDR, SO_BROADCAST),
    /// non-blocking, once per worker (`workers` ≥ 2: with SO_REUSEPORT).
    pub fn open(interfaces: &[String], port: u16, workers: usize) -> Result<UdpBackend, UdpError> {
        let workers = workers.max(1);
        let mut out: Vec<Vec<UdpSocket>> = (0..workers)
            .map(|_| Vec::with_capacity(interfaces.len()))
            .collect();
        for iface in interfaces {
            for socks in out.iter_mut() {
                socks.push(bind(iface, port, workers > 1)?);
            }
        }
        Ok(UdpBackend {
            interfaces: interfaces.to_vec(),
            workers: out,
        })
    }
}

/// One socket bound to `0.0.0.0:port` on `iface` (with SO_REUSEPORT if `shared`).
fn bind(iface: &str, port: u16, shared: bool) -> Result<UdpSocket, UdpError> {
    let err = |what: &'static str| {
        let iface = iface.to_string();
        move |source: io::Error| UdpError::Socket {
            iface,
            what,
            source,
        }
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    s.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
    s.set_broadcast(true).map_err(err("SO_BROADCAST"))?;
    if shared {
        s.set_reuse_port(true).map_err(err("SO_REUSEPORT"))?;
    }
    s.bind_device(Some(iface.as_bytes())).map_err(err(
        "SO_BINDTODEVICE (does the interface exist? are we root / CAP_NET_RAW?)",
    ))?;
    // Large buffers absorb bursts while a batch is being committed.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    s.bind(&addr.into())
        .map_err(err("bind to port (is another DHCP server running?)"))?;
    s.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    Ok(s.into())
}
