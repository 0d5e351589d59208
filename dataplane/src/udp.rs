//! The UDP-socket backend: one socket per served interface, bound to port 67 with
//! `SO_BINDTODEVICE`, so a reply always leaves through the interface its request came in on and
//! broadcasts reach the right link.
//!
//! This is the backend for hosts where XDP is unavailable (no privileges, old kernel) and for
//! tests. The sockets are non-blocking and registered with a `mio` poll by the worker.

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

/// One bound socket per interface.
#[derive(Debug)]
pub struct UdpBackend {
    /// `(interface name, socket)` in configuration order.
    pub sockets: Vec<(String, UdpSocket)>,
}

impl UdpBackend {
    /// Bind `0.0.0.0:port` on each interface (SO_BINDTODEVICE, SO_REUSEADDR, SO_BROADCAST), non-blocking.
    pub fn open(interfaces: &[String], port: u16) -> Result<UdpBackend, UdpError> {
        let mut sockets = Vec::with_capacity(interfaces.len());
        for iface in interfaces {
            let err = |what: &'static str| {
                let iface = iface.clone();
                move |source: io::Error| UdpError::Socket {
                    iface,
                    what,
                    source,
                }
            };
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
                .map_err(err("socket"))?;
            s.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
            s.set_broadcast(true).map_err(err("SO_BROADCAST"))?;
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
            sockets.push((iface.clone(), s.into()));
        }
        Ok(UdpBackend { sockets })
    }
}
