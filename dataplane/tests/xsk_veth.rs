//! The AF_XDP path end to end on a veth pair: real DHCP DISCOVER frames from a client network
//! namespace are steered by the XDP program (native mode) into an AF_XDP socket on queue 0,
//! answered by a real `Engine`, and the OFFER frames, built in the UMEM with `frame`, go back
//! out through the TX ring to a plain UDP socket in the client namespace.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN for namespaces) and `ip`
//! (iproute2): fails with a clear message otherwise, never skips. Namespaces are named
//! `tdm<pid>n<seq><role>` and deleted on drop. Run with `sudo -E cargo test -p tandem-dataplane --test
//! xsk_veth`.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tandem_dataplane::authority::Standalone;
use tandem_dataplane::engine::{Engine, Outcome, RxMeta, Stats};
use tandem_dataplane::frame::{ReplyHeaders, UdpFrame};
use tandem_dataplane::scope::{AddrRange, OptionSet, Scope, ServerSettings, Subnet};
use tandem_dataplane::time::Time;
use tandem_dataplane::wire::MessageType;
use tandem_dataplane::xsk::{
    interface_index, BindMode, Frame, SocketConfig, Statistics, Umem, UmemConfig, XskSocket,
};
use tandem_ebpf::{Counters, Steering, XdpMode, DHCP_SERVER_PORT};

const N: usize = 1000;
/// DISCOVERs in flight at once (the client's socket buffer must hold a window of OFFERs).
const WINDOW: usize = 50;
const SERVER_IF: &str = "tdmS";
const CLIENT_IF: &str = "tdmC";
const SERVER_MAC: [u8; 6] = [0x02, 0x74, 0x64, 0x6d, 0x00, 0x01];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 0);
const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 77, 4, 255);
/// Ring sizes small enough that 1000 frames wrap every ring several times.
const RING: u32 = 256;
const FRAMES: u32 = 512;
const BATCH: u32 = 64;

// ---------------------------------------------------------------------------------------------
// Harness

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the AF_XDP veth test creates network namespaces, loads XDP and opens AF_XDP sockets: \
         it needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN). Run \
         `sudo -E cargo test -p tandem-dataplane --test xsk_veth`."
    );
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with its interfaces) on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(role: &str) -> Netns {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("tdm{}n{seq}{role}", std::process::id());
        // A leftover from a crashed run with a recycled pid would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "dev", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Moves the calling thread into this namespace.
    fn enter(&self) {
        let path = format!("/run/netns/{}", self.name);
        let f = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
    }

    /// Datagrams the kernel UDP stack of this namespace took in, by any path: delivered
    /// (InDatagrams), no socket (NoPorts), errors (InErrors), broadcast nobody wanted
    /// (IgnoredMulti).
    fn udp_seen(&self) -> u64 {
        let snmp = sh(&["ip", "netns", "exec", &self.name, "cat", "/proc/net/snmp"]);
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (
            lines.next().expect("Udp header"),
            lines.next().expect("Udp values"),
        );
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .filter(|(n, _)| matches!(*n, "InDatagrams" | "NoPorts" | "InErrors" | "IgnoredMulti"))
            .map(|(_, v)| v.parse::<u64>().expect("counter"))
            .sum()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Server namespace (`tdmS`, 10.77.0.1/24, XDP + AF_XDP) and client namespace (`tdmC`,
/// 10.77.0.2/24), joined by a veth pair.
fn topology() -> (Netns, Netns) {
    require_root();
    let server = Netns::new("s");
    let client = Netns::new("c");
    server.ip(&[
        "link",
        "add",
        SERVER_IF,
        "address",
        "02:74:64:6d:00:01",
        "type",
        "veth",
        "peer",
        "name",
        CLIENT_IF,
        "address",
        "02:74:64:6d:00:02",
        "netns",
        &client.name,
    ]);
    server.ip(&["addr", "add", "10.77.0.1/24", "dev", SERVER_IF]);
    client.ip(&["addr", "add", "10.77.0.2/24", "dev", CLIENT_IF]);
    server.ip(&["link", "set", "dev", SERVER_IF, "up"]);
    client.ip(&["link", "set", "dev", CLIENT_IF, "up"]);
    (server, client)
}

fn settings() -> ServerSettings {
    let mut options = OptionSet::new();
    options.set(3, SERVER_IP.octets().to_vec());
    ServerSettings {
        server_id: SERVER_IP,
        global_options: OptionSet::new(),
        scopes: vec![Scope {
            name: "veth".into(),
            subnet: Subnet {
                network: Ipv4Addr::new(10, 77, 0, 0),
                prefix: 16,
            },
            ranges: vec![AddrRange::new(POOL_START, POOL_END)],
            exclusions: vec![],
            reservations: vec![],
            lease_time: 3600,
            renew_time: None,
            rebind_time: None,
            options,
            policies: vec![],
            authoritative: true,
            ddns: None,
        }],
        offer_hold_secs: 60,
        decline_probation_secs: 600,
        duplicate_window_ms: 2000,
    }
}

fn client_mac(i: usize) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x77, (i >> 8) as u8, i as u8]
}

fn xid(i: usize) -> u32 {
    0x7a00_0000 + i as u32
}

/// A DISCOVER from client `i`, broadcast flag set.
fn discover(i: usize) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid(i).to_be_bytes());
    m[10] = 0x80;
    m[28..34].copy_from_slice(&client_mac(i));
    m.extend_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, 1, 55, 3, 1, 3, 54, 255]);
    m.resize(300, 0);
    m
}

/// Checks a datagram the client received; returns the client index if it is the OFFER that
/// client `i` is owed.
fn check_offer(d: &[u8]) -> Result<usize, String> {
    if d.len() < 240 || d[0] != 2 || d[236..240] != [99, 130, 83, 99] {
        return Err(format!("not a BOOTREPLY ({} bytes)", d.len()));
    }
    let x = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    let i = x.wrapping_sub(0x7a00_0000) as usize;
    if i >= N {
        return Err(format!("unknown xid {x:#x}"));
    }
    if d[28..34] != client_mac(i) {
        return Err(format!("chaddr does not match xid {x:#x}"));
    }
    let yiaddr = Ipv4Addr::new(d[16], d[17], d[18], d[19]);
    if !(POOL_START..=POOL_END).contains(&yiaddr) {
        return Err(format!("yiaddr {yiaddr} outside the pool"));
    }
    let (mut msg, mut sid, mut at) = (None, None, 240);
    while at < d.len() && d[at] != 255 {
        if d[at] == 0 {
            at += 1;
            continue;
        }
        let len = usize::from(*d.get(at + 1).ok_or("option past the end")?);
        let v = d.get(at + 2..at + 2 + len).ok_or("option past the end")?;
        match d[at] {
            53 if len == 1 => msg = Some(v[0]),
            54 if len == 4 => sid = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            _ => {}
        }
        at += 2 + len;
    }
    if msg != Some(MessageType::Offer as u8) || sid != Some(SERVER_IP) {
        return Err(format!("xid {x:#x}: type {msg:?}, server id {sid:?}"));
    }
    Ok(i)
}

// ---------------------------------------------------------------------------------------------
// The two sides

/// A UDP socket as a DHCP client uses it: 0.0.0.0:68 on `CLIENT_IF`, broadcast allowed.
fn client_socket() -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("UDP socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.set_broadcast(true).expect("SO_BROADCAST");
    s.bind_device(Some(CLIENT_IF.as_bytes()))
        .expect("SO_BINDTODEVICE");
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())
        .expect("bind 0.0.0.0:68");
    s.set_recv_buffer_size(1 << 20).expect("SO_RCVBUF");
    s.into()
}

fn send_discover(s: &UdpSocket, i: usize) {
    let to = SocketAddr::from((Ipv4Addr::BROADCAST, DHCP_SERVER_PORT));
    s.send_to(&discover(i), to)
        .unwrap_or_else(|e| panic!("sending DISCOVER {i}: {e}"));
}

/// What the client saw.
#[derive(Debug, Default)]
struct ClientReport {
    offers: usize,
    duplicates: usize,
    invalid: Vec<String>,
    elapsed: Duration,
}

/// Sends DISCOVERs `0..N` in windows of `WINDOW`, collecting OFFERs; each window waits at most
/// two seconds, the whole run at most 60.
fn run_client(s: &UdpSocket) -> ClientReport {
    let mut seen = vec![false; N];
    let mut rep = ClientReport::default();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("SO_RCVTIMEO");
    let mut sent = 0;
    while sent < N && start.elapsed() < Duration::from_secs(60) {
        let end = (sent + WINDOW).min(N);
        for i in sent..end {
            send_discover(s, i);
        }
        sent = end;
        let window_deadline = Instant::now() + Duration::from_secs(2);
        while rep.offers < sent && Instant::now() < window_deadline {
            match s.recv(&mut buf) {
                Ok(n) => match check_offer(&buf[..n]) {
                    Ok(i) if seen[i] => rep.duplicates += 1,
                    Ok(i) => {
                        seen[i] = true;
                        rep.offers += 1;
                    }
                    Err(e) => rep.invalid.push(e),
                },
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("client recv: {e}"),
            }
        }
    }
    rep.elapsed = start.elapsed();
    rep
}

/// What the server side measured.
#[derive(Debug)]
struct ServerReport {
    before_register: Counters,
    after_register: Counters,
    end: Counters,
    answered: usize,
    unparsed: usize,
    no_tx_frame: usize,
    not_offer: Vec<String>,
    stats: Statistics,
}

/// Messages from the test to the server thread.
enum Cmd {
    Register,
}

/// The server thread: XDP on `SERVER_IF`, one AF_XDP socket on queue 0, the engine.
fn run_server(
    ready: mpsc::Sender<()>,
    cmds: mpsc::Receiver<Cmd>,
    stop: &AtomicBool,
) -> ServerReport {
    let mut steering =
        Steering::load(DHCP_SERVER_PORT).unwrap_or_else(|e| panic!("loading XDP: {e}"));
    steering
        .attach(SERVER_IF, XdpMode::Native)
        .unwrap_or_else(|e| panic!("attaching XDP natively to {SERVER_IF}: {e}"));
    let ifindex = interface_index(SERVER_IF).expect("server ifindex");
    let mut umem = Umem::new(&UmemConfig {
        frame_size: 2048,
        frame_count: FRAMES,
    })
    .expect("UMEM");
    let mut free: Vec<Frame> = umem.take_frames();
    let mut sock = XskSocket::new(
        umem,
        ifindex,
        0,
        &SocketConfig {
            fill_size: RING,
            completion_size: RING,
            rx_size: RING,
            tx_size: RING,
            mode: BindMode::Copy,
        },
    )
    .unwrap_or_else(|e| panic!("AF_XDP socket on {SERVER_IF} queue 0: {e}"));
    // Half the chunks to the fill ring, half kept for replies in flight.
    let lent = sock.parts().fill.fill_from(&mut free, RING);
    assert_eq!(lent, RING);
    let mut recycle: Vec<Frame> = Vec::with_capacity(FRAMES as usize);

    let before_register = steering.counters().expect("counters");
    ready.send(()).expect("test thread alive");
    match cmds.recv_timeout(Duration::from_secs(30)) {
        Ok(Cmd::Register) => {}
        Err(e) => panic!("no register command: {e}"),
    }
    let after_register = steering.counters().expect("counters");
    steering
        .set_xsk(0, sock.as_fd())
        .unwrap_or_else(|e| panic!("set_xsk(0): {e}"));
    ready.send(()).expect("test thread alive");

    let mut engine = Engine::new(
        Arc::new(settings()),
        vec![vec![0]],
        0,
        1,
        Arc::new(Stats::default()),
    );
    let (mut answered, mut unparsed, mut no_tx_frame) = (0, 0, 0);
    let mut not_offer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let p = sock.parts();
        p.completion.drain_into(&mut free, RING);
        let now = Time::now();
        let mut rx = p.rx.peek(BATCH);
        if rx.remaining() == 0 {
            drop(rx);
            if p.tx.pending() > 0 {
                p.tx.kick().expect("TX kick");
            }
            p.poll(Duration::from_millis(5)).expect("poll");
            continue;
        }
        let mut tx = p.tx.reserve(BATCH);
        for f in rx.by_ref() {
            let Some(mut out) = free.pop() else {
                no_tx_frame += 1;
                recycle.push(f);
                continue;
            };
            let (rx_chunk, tx_chunk) = p.umem.chunk_pair(&f, &out).expect("distinct own chunks");
            let start = f.offset() as usize;
            let pkt = &rx_chunk[start..start + f.len() as usize];
            let Ok(req) = UdpFrame::new_checked(pkt) else {
                unparsed += 1;
                recycle.push(f);
                free.push(out);
                continue;
            };
            let hl = if req.vlan().is_some() { 46 } else { 42 };
            let meta = RxMeta {
                iface: 0,
                src: SocketAddrV4::new(req.src_ip(), req.src_port()),
            };
            let outcome =
                engine.handle(now, &meta, req.payload(), &mut tx_chunk[hl..], &Standalone);
            match outcome {
                Outcome::Reply {
                    len,
                    dest,
                    msg: MessageType::Offer,
                } => {
                    let h = ReplyHeaders::for_request(&req, &dest, SERVER_MAC, SERVER_IP, 68);
                    assert_eq!(h.header_len(), hl);
                    let n = h.emit(tx_chunk, len).expect("reply fits in a chunk");
                    out.set_packet(0, n as u32);
                    if let Err(out) = tx.push(out) {
                        // TX ring full (cannot happen: as many slots as chunks for replies).
                        no_tx_frame += 1;
                        free.push(out);
                    } else {
                        answered += 1;
                    }
                }
                other => {
                    not_offer.push(format!("{other:?}"));
                    free.push(out);
                }
            }
            recycle.push(f);
        }
        rx.release();
        tx.commit();
        engine.take_updates().for_each(drop);
        p.fill.fill_from(&mut recycle, RING);
        p.tx.kick().expect("TX kick");
    }
    // Let the last replies leave and come back through the completion ring.
    let settle = Instant::now() + Duration::from_secs(2);
    loop {
        let p = sock.parts();
        p.completion.drain_into(&mut free, RING);
        if p.tx.pending() == 0 || Instant::now() > settle {
            break;
        }
        p.tx.kick().expect("TX kick");
        std::thread::sleep(Duration::from_millis(1));
    }
    ServerReport {
        before_register,
        after_register,
        end: steering.counters().expect("counters"),
        answered,
        unparsed,
        no_tx_frame,
        not_offer,
        stats: sock.statistics().expect("XDP_STATISTICS"),
    }
}

#[test]
fn discovers_are_answered_through_af_xdp_on_veth() {
    let (server_ns, client_ns) = topology();
    let stop = AtomicBool::new(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            server_ns.enter();
            run_server(ready_tx, cmd_rx, &stop)
        });
        let wait_ready = |what: &str| {
            ready_rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("server not {what}: {e}"))
        };
        wait_ready("attached");

        // Control: with XDP attached but no socket in the XSKMAP, a DISCOVER reaches the
        // kernel stack (proving the UDP counters below would see a leak).
        let udp0 = server_ns.udp_seen();
        scope
            .spawn(|| {
                client_ns.enter();
                let s = client_socket();
                send_discover(&s, 0);
            })
            .join()
            .expect("control client");
        let t = Instant::now();
        while server_ns.udp_seen() == udp0 && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let udp1 = server_ns.udp_seen();
        assert_eq!(
            udp1 - udp0,
            1,
            "control DISCOVER not seen by the server's kernel UDP stack"
        );

        cmd_tx.send(Cmd::Register).expect("server alive");
        wait_ready("registered");
        let client = scope.spawn(|| {
            client_ns.enter();
            let s = client_socket();
            run_client(&s)
        });
        let crep = client.join().expect("client thread");
        stop.store(true, Ordering::Relaxed);
        let srep = server.join().expect("server thread");
        let udp2 = server_ns.udp_seen();

        let control = srep.after_register.since(&srep.before_register);
        let main = srep.end.since(&srep.after_register);
        eprintln!(
            "client: {} OFFERs for {N} DISCOVERs in {:?} ({:.0} round trips/s, windows of \
             {WINDOW}); server: {srep:?}; XDP during the run: {main:?}",
            crep.offers,
            crep.elapsed,
            crep.offers as f64 / crep.elapsed.as_secs_f64()
        );
        assert_eq!(
            (control.redirect, control.redirect_failed),
            (0, 1),
            "control frame: {control:?}"
        );
        assert!(
            crep.invalid.is_empty(),
            "invalid replies: {:?}",
            crep.invalid
        );
        assert_eq!(crep.duplicates, 0);
        assert_eq!(crep.offers, N, "valid OFFERs received by the client");
        assert_eq!(srep.answered, N);
        assert_eq!((srep.unparsed, srep.no_tx_frame), (0, 0));
        assert!(srep.not_offer.is_empty(), "{:?}", srep.not_offer);
        assert_eq!(main.redirect as usize, N, "XDP redirect counter: {main:?}");
        assert_eq!(main.redirect_failed, 0);
        assert_eq!(main.partner_drop, 0);
        assert_eq!(
            udp2 - udp1,
            0,
            "the server's kernel UDP stack saw DHCP frames during the AF_XDP run"
        );
        assert_eq!(srep.stats.rx_fill_ring_empty_descs, 0, "{:?}", srep.stats);
        assert_eq!(srep.stats.rx_dropped, 0, "{:?}", srep.stats);
        assert_eq!(srep.stats.tx_invalid_descs, 0, "{:?}", srep.stats);
    });
}

/// With only 8 chunks lent to the fill ring and none given back, the socket receives 8 frames
/// of 40; the kernel drops the rest and counts them in the socket's statistics, while the XDP
/// program counts all 40 as redirected.
#[test]
fn a_dry_fill_ring_drops_in_the_kernel_and_is_counted() {
    const SENT: usize = 40;
    const LENT: u32 = 8;
    let (server_ns, client_ns) = topology();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server_ns = &server_ns;
    std::thread::scope(|scope| {
        let server = scope.spawn(move || {
            server_ns.enter();
            let mut steering =
                Steering::load(DHCP_SERVER_PORT).unwrap_or_else(|e| panic!("loading XDP: {e}"));
            steering
                .attach(SERVER_IF, XdpMode::Native)
                .unwrap_or_else(|e| panic!("attaching XDP: {e}"));
            let mut umem = Umem::new(&UmemConfig {
                frame_size: 4096,
                frame_count: 64,
            })
            .expect("UMEM");
            let mut free = umem.take_frames();
            let mut sock = XskSocket::new(
                umem,
                interface_index(SERVER_IF).expect("ifindex"),
                0,
                &SocketConfig {
                    fill_size: 64,
                    completion_size: 64,
                    rx_size: 64,
                    tx_size: 64,
                    mode: BindMode::Copy,
                },
            )
            .unwrap_or_else(|e| panic!("AF_XDP socket: {e}"));
            assert_eq!(sock.parts().fill.fill_from(&mut free, LENT), LENT);
            steering.set_xsk(0, sock.as_fd()).expect("set_xsk");
            let c0 = steering.counters().expect("counters");
            ready_tx.send(()).expect("test alive");
            done_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("client done");
            let t = Instant::now();
            while steering.counters().expect("counters").since(&c0).redirect < SENT as u64
                && t.elapsed() < Duration::from_secs(3)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            let redirected = steering.counters().expect("counters").since(&c0).redirect;
            let mut received = Vec::new();
            let p = sock.parts();
            for f in p.rx.peek(64) {
                let pkt = p.umem.packet(&f).expect("own frame");
                let req = UdpFrame::new_checked(pkt).expect("a DHCP frame");
                received.push(u32::from_be_bytes([
                    req.payload()[4],
                    req.payload()[5],
                    req.payload()[6],
                    req.payload()[7],
                ]));
            }
            let fill_pending = p.fill.pending();
            (
                redirected,
                received,
                fill_pending,
                sock.statistics().expect("stats"),
            )
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server ready");
        scope
            .spawn(|| {
                client_ns.enter();
                let s = client_socket();
                for i in 0..SENT {
                    send_discover(&s, i);
                }
            })
            .join()
            .expect("client");
        done_tx.send(()).expect("server alive");
        let (redirected, received, fill_pending, stats) = server.join().expect("server");
        eprintln!("dry fill ring: redirected {redirected}, received {received:x?}, {stats:?}");
        assert_eq!(redirected, SENT as u64);
        // The first LENT frames got chunks, in order.
        assert_eq!(received, (0..LENT as usize).map(xid).collect::<Vec<_>>());
        assert_eq!(fill_pending, 0);
        assert_eq!(
            stats.rx_fill_ring_empty_descs,
            (SENT - LENT as usize) as u64,
            "{stats:?}"
        );
        // Copy mode counts each such drop twice: as "fill ring empty" and as "dropped".
        assert_eq!(stats.rx_dropped, (SENT - LENT as usize) as u64, "{stats:?}");
        assert_eq!(stats.rx_ring_full, 0);
    });
}
