//! Packet captures for the tests: `tcpdump` into the test's scratch directory (never the
//! repository), and a small reader of the pcap file that extracts DHCP replies.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{poll, Lab, Netns, Proc};

/// A running `tcpdump -U -w FILE` on one interface of a namespace.
pub struct Capture {
    /// The pcap file.
    pub file: PathBuf,
    proc: Proc,
}

impl Capture {
    /// Start capturing `filter` on `iface` in `ns`; returns once tcpdump is listening.
    pub fn start(lab: &Lab, ns: &Netns, iface: &str, name: &str, filter: &str) -> Capture {
        let file = lab.path(&format!("{name}.pcap"));
        let f = file.display().to_string();
        // -U, --immediate-mode: hand over and write each packet as it arrives, so the file is
        // complete at any moment and nothing is left in the ring when tcpdump stops
        // -B: 16 MiB kernel buffer so bursts are not dropped; -n: no name lookups
        let mut argv = vec![
            "tcpdump",
            "-n",
            "-U",
            "--immediate-mode",
            "-B",
            "16384",
            "-s",
            "1500",
            "-i",
            iface,
            "-w",
            &f,
        ];
        argv.extend(filter.split_whitespace());
        let proc = ns.spawn(lab, name, &argv);
        let ok = poll(Duration::from_secs(10), || {
            proc.log_text().contains("listening on").then_some(())
        });
        assert!(ok.is_some(), "tcpdump did not start:\n{}", proc.log_text());
        Capture { file, proc }
    }

    /// Replies captured so far (the file may end in a partial record: it is ignored).
    pub fn replies(&self) -> Vec<Reply> {
        read_replies(&fs::read(&self.file).unwrap_or_default())
    }

    /// Stop tcpdump (it flushes on SIGTERM) and return every reply captured, plus tcpdump's
    /// own summary (packets captured / dropped by kernel).
    pub fn finish(mut self) -> (Vec<Reply>, String) {
        self.proc.stop(Duration::from_secs(5));
        let summary = self.proc.log_text();
        (self.replies(), summary)
    }
}

/// One DHCP reply seen on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Message type (option 53): 2 OFFER, 5 ACK, 6 NAK.
    pub msg_type: u8,
    /// Transaction id.
    pub xid: u32,
    /// yiaddr.
    pub yiaddr: Ipv4Addr,
    /// chaddr (first 6 bytes), lowercase `aa:bb:..`.
    pub chaddr: String,
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// IPv4 destination address.
    pub dst: Ipv4Addr,
    /// UDP destination port.
    pub dport: u16,
}

/// DHCP message type ACK.
pub const ACK: u8 = 5;
/// DHCP message type NAK.
pub const NAK: u8 = 6;

/// Parse a classic pcap file (Ethernet link type) and return every BOOTREPLY with its
/// message type. Anything that is not Ethernet/IPv4/UDP/BOOTREPLY is skipped.
pub fn read_replies(data: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    if data.len() < 24 {
        return out;
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return out,
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    if u32_at(data, 20) != 1 {
        return out; // not Ethernet
    }
    let mut i = 24;
    while i + 16 <= data.len() {
        let incl = u32_at(data, i + 8) as usize;
        let start = i + 16;
        let Some(end) = start.checked_add(incl).filter(|e| *e <= data.len()) else {
            break;
        };
        if let Some(r) = parse_frame(&data[start..end]) {
            out.push(r);
        }
        i = end;
    }
    out
}

fn parse_frame(f: &[u8]) -> Option<Reply> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
    if ethertype == 0x8100 {
        off += 4;
        ethertype = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = f.get(off + 2..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.len() < ihl + 8 || ip[9] != 17 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &ip[ihl..];
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let d = udp.get(8..)?;
    if d.len() < 240 || d[0] != 2 || d[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let mut msg_type = None;
    let mut j = 240;
    while j < d.len() {
        match d[j] {
            0 => j += 1,
            255 => break,
            code => {
                let len = usize::from(*d.get(j + 1)?);
                if code == 53 && len == 1 {
                    msg_type = d.get(j + 2).copied();
                }
                j += 2 + len;
            }
        }
    }
    let chaddr = d[28..34]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Some(Reply {
        msg_type: msg_type?,
        xid: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        yiaddr: Ipv4Addr::new(d[16], d[17], d[18], d[19]),
        chaddr,
        src,
        dst,
        dport,
    })
}
