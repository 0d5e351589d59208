//! Fuzz the DHCP decode path: arbitrary bytes through `Request::parse` and, when they parse,
//! through the whole engine (every message type, relays, reservations, policies) with the reply
//! written into a fixed buffer. Nothing may panic; any reply must be a well-formed BOOTREPLY.
//! One scope has dynamic DNS, so client FQDN (81) and host name (12) options become names,
//! which must be valid DNS names.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tandem_dataplane::authority::Standalone;
use tandem_dataplane::engine::{Engine, Outcome, RxMeta, Stats};
use tandem_dataplane::scope::*;
use tandem_dataplane::time::Time;
use tandem_dataplane::wire::Request;

fn settings() -> Arc<ServerSettings> {
    static S: OnceLock<Arc<ServerSettings>> = OnceLock::new();
    S.get_or_init(|| {
        let mut opts = OptionSet::new();
        opts.set(3, vec![10, 0, 0, 1]);
        opts.set(150, vec![0x41; 600]);
        let scope = |name: &str, net: [u8; 4], lo: [u8; 4], hi: [u8; 4]| Scope {
            name: name.into(),
            subnet: Subnet {
                network: Ipv4Addr::from(net),
                prefix: 24,
            },
            ranges: vec![AddrRange::new(Ipv4Addr::from(lo), Ipv4Addr::from(hi))],
            exclusions: vec![AddrRange::new(Ipv4Addr::from(lo), Ipv4Addr::from(lo))],
            reservations: vec![Reservation {
                key: ReservationKey::Mac([0x52, 0x54, 0, 0, 0, 1]),
                addr: Ipv4Addr::from([net[0], net[1], net[2], 50]),
                hostname: Some("r".into()),
                options: OptionSet::new(),
            }],
            lease_time: 600,
            renew_time: None,
            rebind_time: None,
            options: opts.clone(),
            policies: vec![Policy {
                name: "p".into(),
                order: 1,
                conditions: vec![Condition {
                    criterion: Criterion::VendorClass,
                    matchers: vec![Matcher::Prefix(b"A".to_vec())],
                    negate: false,
                }],
                combine: Combine::All,
                ranges: vec![AddrRange::new(
                    Ipv4Addr::from([net[0], net[1], net[2], 200]),
                    Ipv4Addr::from(hi),
                )],
                options: OptionSet::new(),
                lease_time: Some(60),
            }],
            authoritative: net[1] == 0,
            // Scope "a" has dynamic DNS: option 81 and 12 become names and option 81 answers.
            ddns: (net[1] == 0).then(|| ScopeDdns {
                domain: "fuzz.test".into(),
                client_updates: ClientUpdates::Honor,
                use_host_name: true,
            }),
        };
        Arc::new(ServerSettings {
            server_id: Ipv4Addr::new(10, 0, 0, 1),
            global_options: OptionSet::new(),
            scopes: vec![
                scope("a", [10, 0, 0, 0], [10, 0, 0, 10], [10, 0, 0, 250]),
                scope("b", [10, 9, 0, 0], [10, 9, 0, 10], [10, 9, 0, 250]),
            ],
            offer_hold_secs: 5,
            decline_probation_secs: 60,
            duplicate_window_ms: 1000,
        })
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::parse(data) {
        for c in 0..=255u8 {
            let _ = r.option(c);
        }
        let _ = (
            r.link_selection(),
            r.relay_sub_option(1),
            r.max_message_size(),
            r.lease_time(),
        );
    }
    // A fresh engine per input keeps runs reproducible; feed the input twice (and once more later)
    // so the duplicate cache, holds and expiry paths run too.
    let mut e = Engine::new(
        settings(),
        vec![vec![0, 1]],
        0,
        1,
        Arc::new(Stats::default()),
    );
    let meta = RxMeta {
        iface: 0,
        src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
    };
    let (names, noted) = crossbeam_channel::bounded(4);
    e.set_name_sink(names);
    let mut out = [0u8; 1500];
    let t0 = Time::from_secs(1_800_000_000);
    for now in [t0, t0, t0.plus_secs(3)] {
        e.tick(now);
        if let Outcome::Reply { len, .. } = e.handle(now, &meta, data, &mut out, &Standalone) {
            assert!(len >= 300 && len <= out.len());
            assert_eq!(out[0], 2, "reply is a BOOTREPLY");
            assert_eq!(&out[236..240], &[99, 130, 83, 99]);
        }
        let _ = e.take_updates().count();
        for n in noted.try_iter() {
            // Names handed over are DNS names: letters, digits, hyphens and dots only.
            let name = n.name.as_str();
            assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
            assert!(name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'));
            assert!(
                name.split('.').all(|l| !l.is_empty() && l.len() <= 63),
                "{name:?}"
            );
        }
    }
    e.tick(t0.plus_secs(100_000));
});
