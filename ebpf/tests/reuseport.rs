//! The SO_REUSEPORT steering program on real datagrams: a reuseport group of sockets on
//! loopback (an ephemeral port, no other traffic), the program attached, DHCP requests sent
//! from a client socket; each must arrive at the socket of the worker that owns its client's
//! RFC 3074 bucket (`bucket % workers`, computed here by `tandem_dataplane::hash`), and what the
//! program cannot key must still arrive (somewhere), counted.
//!
//! Needs root (CAP_BPF): fails with a clear message otherwise, never skips.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tandem_dataplane::hash::bucket;
use tandem_ebpf::{ReuseportCounters, ReuseportSteering};

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the reuseport tests load a BPF program: they need root (CAP_BPF). \
         Run `sudo -E cargo test -p tandem-ebpf`."
    );
}

/// `n` sockets in one reuseport group on 127.0.0.1 (port chosen by the kernel for the first).
fn group(n: usize) -> (Vec<UdpSocket>, SocketAddrV4) {
    let mut out: Vec<UdpSocket> = Vec::new();
    let mut addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    for _ in 0..n {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_port(true).expect("SO_REUSEPORT");
        s.bind(&SocketAddr::V4(addr).into()).expect("bind");
        s.set_nonblocking(true).expect("nonblocking");
        let u: UdpSocket = s.into();
        if let SocketAddr::V4(a) = u.local_addr().expect("local addr") {
            addr = a;
        }
        out.push(u);
    }
    (out, addr)
}

/// A BOOTREQUEST with `chaddr` (hlen = its length) and `options` after the cookie.
fn request(chaddr: &[u8], options: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1;
    m[1] = 1;
    m[2] = chaddr.len() as u8;
    m[4..8].copy_from_slice(&0x0bad_cafeu32.to_be_bytes());
    m[28..28 + chaddr.len()].copy_from_slice(chaddr);
    m.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    m.extend_from_slice(&[53, 1, 1]);
    m.extend_from_slice(options);
    m.push(255);
    m
}

/// Sends `msg` to `to` and returns the index of the socket of `socks` that received it.
fn deliver(client: &UdpSocket, socks: &[UdpSocket], to: SocketAddrV4, msg: &[u8]) -> usize {
    client.send_to(msg, to).expect("send");
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    loop {
        for (k, s) in socks.iter().enumerate() {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                assert_eq!(&buf[..n], msg, "socket {k} got another datagram");
                return k;
            }
        }
        assert!(Instant::now() < until, "no socket received the datagram");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn mac(i: u32) -> [u8; 6] {
    let b = i.wrapping_mul(2_654_435_761).to_be_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

fn client() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket")
}

#[test]
fn each_client_reaches_the_socket_of_its_buckets_worker() {
    require_root();
    for workers in [2usize, 3] {
        let (socks, addr) = group(workers);
        let refs: Vec<&UdpSocket> = socks.iter().collect();
        let steer = ReuseportSteering::attach(&refs).expect("attach the reuseport program");
        assert_eq!(steer.workers(), workers);
        let c = client();
        let mut per = vec![0u32; workers];
        for i in 0..200u32 {
            let hw = mac(i);
            let k = deliver(&c, &socks, addr, &request(&hw, &[]));
            assert_eq!(
                k,
                usize::from(bucket(&hw)) % workers,
                "chaddr {hw:02x?} went to worker {k} of {workers}"
            );
            per[k] += 1;
            // The same hardware, keyed by a client identifier (which wins over chaddr).
            let id: Vec<u8> = [&[0xffu8, 0, 0, 0, 1][..], &hw].concat();
            let mut opt = vec![61, id.len() as u8];
            opt.extend_from_slice(&id);
            let k = deliver(&c, &socks, addr, &request(&hw, &opt));
            assert_eq!(k, usize::from(bucket(&id)) % workers, "client id {id:02x?}");
        }
        assert!(
            per.iter().all(|&n| n > 20),
            "every worker gets a share: {per:?}"
        );
        let n = steer.counters().expect("counters");
        assert_eq!(
            n,
            ReuseportCounters {
                steered: 400,
                ..Default::default()
            },
            "{workers} workers"
        );
    }
}

#[test]
fn what_the_program_cannot_key_still_arrives_and_is_counted() {
    require_root();
    let (socks, addr) = group(2);
    let refs: Vec<&UdpSocket> = socks.iter().collect();
    let steer = ReuseportSteering::attach(&refs).expect("attach");
    let c = client();
    let hw = mac(7);
    // Option overload: the key may sit in sname/file.
    deliver(&c, &socks, addr, &request(&hw, &[52, 1, 3]));
    // A repeated option 61 (concatenated by the engine).
    deliver(&c, &socks, addr, &request(&hw, &[61, 2, 1, 2, 61, 2, 3, 4]));
    // An empty option 61 (malformed).
    deliver(&c, &socks, addr, &request(&hw, &[61, 0]));
    // An option running past the end of the datagram.
    let mut m = request(&hw, &[]);
    m.pop();
    m.extend_from_slice(&[12, 40, b'x']);
    deliver(&c, &socks, addr, &m);
    // hlen over 16.
    let mut m = request(&hw, &[]);
    m[2] = 17;
    deliver(&c, &socks, addr, &m);
    // Not DHCP: too short, and a bad cookie.
    deliver(&c, &socks, addr, b"hello");
    let mut m = request(&hw, &[]);
    m[236] = 0;
    deliver(&c, &socks, addr, &m);
    let n = steer.counters().expect("counters");
    assert_eq!(
        n,
        ReuseportCounters {
            steered: 0,
            unknown_key: 5,
            not_dhcp: 2,
            no_socket: 0,
        }
    );
    assert_eq!(n.total(), 7);
}

#[test]
fn a_worker_without_a_socket_leaves_the_choice_to_the_kernel() {
    require_root();
    let (mut socks, addr) = group(2);
    let refs: Vec<&UdpSocket> = socks.iter().collect();
    let steer = ReuseportSteering::attach(&refs).expect("attach");
    drop(refs);
    // Closing worker 1's socket removes it from the group and from the socket array.
    let gone = socks.pop().expect("two sockets");
    drop(gone);
    let c = client();
    let (mut to_1, mut to_0) = (0, 0);
    for i in 0..64u32 {
        let hw = mac(i);
        assert_eq!(deliver(&c, &socks, addr, &request(&hw, &[])), 0);
        if bucket(&hw) % 2 == 1 {
            to_1 += 1;
        } else {
            to_0 += 1;
        }
    }
    let n = steer.counters().expect("counters");
    assert_eq!((n.steered, n.no_socket), (to_0, to_1));
}
