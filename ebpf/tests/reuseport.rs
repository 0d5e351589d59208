//! The SO_REUSEPORT steering programs on real datagrams: a reuseport group of sockets bound to
//! an ephemeral port (no other traffic), the programs attached, DHCP requests sent from a client
//! socket over loopback, unicast (the reuseport program picks the socket) and broadcast to
//! 127.255.255.255 (every socket's filter decides); each must arrive at exactly one socket,
//! the one of the worker that owns its client's RFC 3074 bucket (`bucket % workers`, computed
//! here by `tandem_dataplane::hash`), and what the programs cannot key at worker 0's, counted.
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

/// `n` sockets in one reuseport group on 0.0.0.0 (port chosen by the kernel for the first);
/// the unicast address to reach them on loopback.
fn group(n: usize) -> (Vec<UdpSocket>, SocketAddrV4) {
    let mut out: Vec<UdpSocket> = Vec::new();
    let mut addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
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
    (out, SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port()))
}

/// Loopback's broadcast address at the group's port.
fn bcast(to: SocketAddrV4) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 255, 255, 255), to.port())
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

/// Sends `msg` to `to` and returns the index of the one socket of `socks` that received it.
fn deliver(client: &UdpSocket, socks: &[UdpSocket], to: SocketAddrV4, msg: &[u8]) -> usize {
    client.send_to(msg, to).expect("send");
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    let got = 'found: loop {
        for (k, s) in socks.iter().enumerate() {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                assert_eq!(&buf[..n], msg, "socket {k} got another datagram");
                break 'found k;
            }
        }
        assert!(Instant::now() < until, "no socket received the datagram");
        std::thread::sleep(Duration::from_micros(200));
    };
    // Loopback delivers to every socket within the same send: a second copy would be queued.
    std::thread::sleep(Duration::from_millis(1));
    for (k, s) in socks.iter().enumerate() {
        assert!(
            s.recv_from(&mut buf).is_err(),
            "socket {k} got a copy too (first: {got}), sent to {to}"
        );
    }
    got
}

fn mac(i: u32) -> [u8; 6] {
    let b = i.wrapping_mul(2_654_435_761).to_be_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket");
    c.set_broadcast(true).expect("SO_BROADCAST");
    c
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
        for i in 0..100u32 {
            let hw = mac(i);
            for to in [addr, bcast(addr)] {
                let k = deliver(&c, &socks, to, &request(&hw, &[]));
                assert_eq!(
                    k,
                    usize::from(bucket(&hw)) % workers,
                    "chaddr {hw:02x?} to {to} went to worker {k} of {workers}"
                );
                per[k] += 1;
                // The same hardware, keyed by a client identifier (which wins over chaddr).
                let id: Vec<u8> = [&[0xffu8, 0, 0, 0, 1][..], &hw].concat();
                let mut opt = vec![61, id.len() as u8];
                opt.extend_from_slice(&id);
                let k = deliver(&c, &socks, to, &request(&hw, &opt));
                assert_eq!(k, usize::from(bucket(&id)) % workers, "client id {id:02x?}");
            }
        }
        assert!(
            per.iter().all(|&n| n > 20),
            "every worker gets a share: {per:?}"
        );
        // 200 unicast datagrams steered (each then kept by its socket's filter); 200
        // broadcasts seen by every socket's filter, kept by one.
        let n = steer.counters().expect("counters");
        let w = workers as u64;
        assert_eq!(
            n,
            ReuseportCounters {
                steered: 200,
                filter_accepted: 400,
                filter_other_worker: 200 * (w - 1),
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
    // A client of worker 1, so that "worker 0" below is the programs' choice, not its bucket.
    let hw = (0..)
        .map(mac)
        .find(|hw| bucket(hw) % 2 == 1)
        .expect("a worker-1 client");
    let mut unkeyable = vec![
        // Option overload: the key may sit in sname/file.
        request(&hw, &[52, 1, 3]),
        // A repeated option 61 (concatenated by the engine).
        request(&hw, &[61, 2, 1, 2, 61, 2, 3, 4]),
        // An empty option 61 (malformed).
        request(&hw, &[61, 0]),
    ];
    // An option running past the end of the datagram.
    let mut m = request(&hw, &[]);
    m.pop();
    m.extend_from_slice(&[12, 40, b'x']);
    unkeyable.push(m);
    // hlen over 16.
    let mut m = request(&hw, &[]);
    m[2] = 17;
    unkeyable.push(m);
    // Not DHCP: too short, and a bad cookie.
    let mut bad_cookie = request(&hw, &[]);
    bad_cookie[236] = 0;
    let not_dhcp = [b"hello".to_vec(), bad_cookie];
    for to in [addr, bcast(addr)] {
        for m in unkeyable.iter().chain(&not_dhcp) {
            assert_eq!(deliver(&c, &socks, to, m), 0, "to {to}: {m:02x?}");
        }
    }
    let n = steer.counters().expect("counters");
    assert_eq!(
        n,
        ReuseportCounters {
            steered: 0,
            unknown_key: 5,
            not_dhcp: 2,
            no_socket: 0,
            filter_accepted: 14,
            filter_other_worker: 7,
        }
    );
    assert_eq!(n.unicast(), 7);
}

/// Worker 1's socket closed (its worker gone): its clients' unicast finds no socket in the
/// array, the kernel falls back to worker 0's socket, whose filter does not take another
/// worker's client. Counted, and never answered by the wrong worker.
#[test]
fn a_gone_workers_clients_are_counted_not_misdelivered() {
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
    let mut buf = [0u8; 2048];
    for i in 0..64u32 {
        let hw = mac(i);
        if bucket(&hw).is_multiple_of(2) {
            assert_eq!(deliver(&c, &socks, addr, &request(&hw, &[])), 0);
            to_0 += 1;
        } else {
            c.send_to(&request(&hw, &[]), addr).expect("send");
            std::thread::sleep(Duration::from_millis(1));
            assert!(
                socks[0].recv_from(&mut buf).is_err(),
                "worker 0 got {hw:02x?}"
            );
            to_1 += 1;
        }
    }
    let n = steer.counters().expect("counters");
    assert_eq!(
        (
            n.steered,
            n.no_socket,
            n.filter_accepted,
            n.filter_other_worker
        ),
        (to_0, to_1, to_0, to_1)
    );
}
