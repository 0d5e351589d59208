//! The result of a run: one [`Report`], printed as a table ([`Report::table`]) and written as
//! JSON (the same fields, via serde).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::dora::{Counters, LatencySummaries};
use crate::latency::Summary;
use crate::packet::ReplyError;

/// What was asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Params {
    /// Server address and port.
    pub server: String,
    /// Which path the requests took: `"relay"` (through a relay, giaddr set) or `"direct"`
    /// (clients on the server's link: giaddr 0, broadcast).
    pub path: &'static str,
    /// Relay address and port (giaddr and where replies come back), or `direct on IFACE`.
    pub relay: String,
    /// Simulated clients.
    pub clients: u32,
    /// Target exchanges per second (`None`: flat out).
    pub rate: Option<u64>,
    /// Most exchanges outstanding at once.
    pub window: u32,
    /// Sending period, seconds.
    pub duration_s: f64,
    /// At most this many exchanges.
    pub max_exchanges: Option<u64>,
    /// Exchange mix (`dora`, `dora+release`, `dora+renew`).
    pub mix: String,
    /// Per-request timeout, ms.
    pub timeout_ms: u64,
    /// Retransmissions per request.
    pub retries: u8,
    /// Whether option 61 was sent.
    pub client_id: bool,
    /// MAC seed byte.
    pub seed: u8,
}

/// Server CPU use over the run (from `/proc/PID/stat`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerCpu {
    /// The server's pid.
    pub pid: u32,
    /// CPU time used during the run, seconds (tick resolution, usually 10 ms).
    pub cpu_s: f64,
    /// CPU time per completed lease, µs (`None` without leases).
    pub cpu_us_per_lease: Option<f64>,
    /// CPU use as % of one core.
    pub cpu_pct: f64,
}

/// The result of one `dora` run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Always `"tandem-bench"`.
    pub tool: &'static str,
    /// The bench's version.
    pub version: &'static str,
    /// The subcommand (`"dora"`).
    pub command: &'static str,
    /// What was asked for.
    pub params: Params,
    /// Wall time from the first send to the stop, seconds.
    pub elapsed_s: f64,
    /// Time during which exchanges were started, seconds.
    pub sending_s: f64,
    /// Exchanges started per second of the sending period.
    pub offered_per_s: f64,
    /// Completed DORAs (leases) per second, over the time up to the last lease (at least the
    /// sending period).
    pub leases_per_s: f64,
    /// Lost exchanges, % of those started.
    pub loss_pct: f64,
    /// Every count.
    pub counts: Counters,
    /// Malformed replies by reason (only reasons seen).
    pub malformed_by_reason: BTreeMap<&'static str, u64>,
    /// Pacing slots that could not be used in time (the offered rate fell short of the target:
    /// the window was full or the generator was too slow).
    pub missed_slots: u64,
    /// Replies whose source address was not the server's.
    pub other_source: u64,
    /// Receive errors on the socket.
    pub recv_errors: u64,
    /// Latency percentiles and CDF per step, µs.
    pub latency_us: LatencySummaries,
    /// Server CPU use, with `--server-pid`.
    pub server_cpu: Option<ServerCpu>,
    /// The generator's own CPU use, % of one core.
    pub generator_cpu_pct: f64,
    /// Whole-host CPU use over the run, % of one core (100 × cores = all busy).
    pub host_busy_pct: Option<f64>,
    /// CPUs on the host.
    pub host_cpus: u64,
    /// Leases completed in each second of the run.
    pub leases_timeline: Vec<u64>,
}

/// Per-reason malformed counts, keyed by reason name, zero reasons left out.
pub fn malformed_map(by_reason: &[u64; ReplyError::ALL.len()]) -> BTreeMap<&'static str, u64> {
    ReplyError::ALL
        .iter()
        .zip(by_reason.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(e, n)| (e.name(), *n))
        .collect()
}

fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

impl Report {
    /// Lost exchanges as % of started (0 when none started).
    pub fn loss_pct_of(c: &Counters) -> f64 {
        if c.started == 0 {
            0.0
        } else {
            100.0 * c.lost as f64 / c.started as f64
        }
    }

    /// The report as JSON: its fields, plus `"path"` at the top (a copy of `params.path`, so
    /// a reader of several reports sees at once which path each ran).
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("path".into(), self.params.path.into());
        }
        v
    }

    /// The human-readable result table.
    pub fn table(&self) -> String {
        let p = &self.params;
        let c = &self.counts;
        let mut s = String::new();
        let rate = p.rate.map_or("flat out".to_string(), |r| format!("{r}/s"));
        let via = match p.path {
            "direct" => format!("{} (giaddr 0, broadcast)", p.relay),
            _ => format!("via relay {}", p.relay),
        };
        let _ = writeln!(
            s,
            "tandem-bench dora: {} clients, {} {via} to {}, {} for {:.1} s{}",
            p.clients,
            p.mix,
            p.server,
            rate,
            p.duration_s,
            p.max_exchanges
                .map_or(String::new(), |m| format!(" (at most {m} exchanges)"))
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  leases/s      {:>10.0}    offered/s {:>10.0}    elapsed {:.2} s",
            self.leases_per_s, self.offered_per_s, self.elapsed_s
        );
        let _ = writeln!(
            s,
            "  exchanges     {:>10}    completed {:>10}    leases  {}",
            c.started, c.completed, c.leases
        );
        let _ = writeln!(
            s,
            "  lost          {:>10}    ({:.3} %: {} at DISCOVER, {} at REQUEST, {} at renew, {} cut off)",
            c.lost, self.loss_pct, c.lost_discover, c.lost_request, c.lost_renew, c.unfinished
        );
        let _ = writeln!(
            s,
            "  NAKs          {:>10}    retransmits {:>8}    send errors {}",
            c.naks, c.retransmits, c.send_errors
        );
        if c.sent_renew > 0 || c.sent_release > 0 || c.sent_decline > 0 {
            let _ = writeln!(
                s,
                "  renewed       {:>10}    releases sent {:>6}    declines sent {}",
                c.renewed, c.sent_release, c.sent_decline
            );
        }
        let _ = writeln!(
            s,
            "  unexpected    {:>10}    (malformed {}, foreign {}, late {}, wrong type {}, invalid {}, wrong giaddr {})",
            c.unexpected(),
            c.malformed,
            c.foreign,
            c.late,
            c.wrong_type,
            c.invalid_offer + c.invalid_ack,
            c.wrong_giaddr
        );
        if self.missed_slots > 0 {
            let _ = writeln!(
                s,
                "  missed slots  {:>10}    (the offered rate fell short of the target)",
                self.missed_slots
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  latency           {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let row = |s: &mut String, name: &str, l: &Summary| {
            if l.count == 0 {
                return;
            }
            let _ = writeln!(
                s,
                "  {:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                l.count,
                fmt_us(l.p50_us),
                fmt_us(l.p90_us),
                fmt_us(l.p99_us),
                fmt_us(l.p999_us),
                fmt_us(l.max_us)
            );
        };
        let l = &self.latency_us;
        row(&mut s, "DISCOVER→OFFER", &l.discover_offer);
        row(&mut s, "REQUEST→ACK", &l.request_ack);
        row(&mut s, "DORA", &l.dora);
        row(&mut s, "RENEW→ACK", &l.renew);
        let _ = writeln!(s);
        if let Some(sc) = &self.server_cpu {
            let per = sc
                .cpu_us_per_lease
                .map_or("-".to_string(), |v| format!("{v:.1} µs"));
            let _ = writeln!(
                s,
                "  server (pid {}) CPU  {} per lease, {:.0} % of one core ({:.2} s)",
                sc.pid, per, sc.cpu_pct, sc.cpu_s
            );
        }
        let _ = write!(
            s,
            "  generator CPU  {:.0} % of one core",
            self.generator_cpu_pct
        );
        if let Some(h) = self.host_busy_pct {
            let _ = write!(
                s,
                "    host busy {:.0} % of one core ({} cores)",
                h, self.host_cpus
            );
        }
        let _ = writeln!(s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let counts = Counters {
            started: 1000,
            completed: 998,
            leases: 998,
            lost: 2,
            lost_discover: 2,
            malformed: 1,
            ..Counters::default()
        };
        let lat = Summary {
            count: 998,
            min_us: 50.0,
            mean_us: 120.0,
            p50_us: 100.0,
            p90_us: 150.0,
            p99_us: 900.0,
            p999_us: 2500.0,
            max_us: 12_000.0,
            cdf: vec![[50.0, 0.001], [100.0, 0.5], [900.0, 0.99], [12_000.0, 1.0]],
        };
        Report {
            tool: "tandem-bench",
            version: "0.1.0",
            command: "dora",
            params: Params {
                server: "10.77.0.1:67".into(),
                path: "relay",
                relay: "10.77.0.2:67".into(),
                clients: 2000,
                rate: Some(500),
                window: 1000,
                duration_s: 2.0,
                max_exchanges: None,
                mix: "dora".into(),
                timeout_ms: 1000,
                retries: 2,
                client_id: false,
                seed: 0,
            },
            elapsed_s: 2.01,
            sending_s: 2.0,
            offered_per_s: 500.0,
            leases_per_s: 499.0,
            loss_pct: Report::loss_pct_of(&counts),
            malformed_by_reason: malformed_map(&{
                let mut m = [0u64; ReplyError::ALL.len()];
                m[ReplyError::BadMagic.index()] = 1;
                m
            }),
            counts,
            missed_slots: 0,
            other_source: 0,
            recv_errors: 0,
            latency_us: LatencySummaries {
                discover_offer: lat.clone(),
                request_ack: lat.clone(),
                dora: lat,
                renew: Summary::default(),
            },
            server_cpu: Some(ServerCpu {
                pid: 42,
                cpu_s: 0.5,
                cpu_us_per_lease: Some(501.0),
                cpu_pct: 25.0,
            }),
            generator_cpu_pct: 10.0,
            host_busy_pct: Some(40.0),
            host_cpus: 2,
            leases_timeline: vec![499, 499],
        }
    }

    #[test]
    fn table_shows_the_headline_figures() {
        let t = sample().table();
        assert!(t.contains("leases/s             499"), "{t}");
        assert!(t.contains("(0.200 %: 2 at DISCOVER"), "{t}");
        assert!(t.contains("DISCOVER→OFFER"), "{t}");
        assert!(t.contains("100 µs"), "{t}");
        assert!(t.contains("2.50 ms"), "{t}");
        assert!(t.contains("12.0 ms"), "{t}");
        assert!(!t.contains("RENEW→ACK"), "empty rows are left out: {t}");
        assert!(t.contains("501.0 µs per lease, 25 % of one core"), "{t}");
    }

    #[test]
    fn json_has_the_same_fields() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["leases_per_s"], 499.0);
        assert_eq!(v["counts"]["lost"], 2);
        assert_eq!(v["latency_us"]["dora"]["p99_us"], 900.0);
        assert_eq!(v["latency_us"]["renew"]["count"], 0);
        assert_eq!(v["server_cpu"]["cpu_us_per_lease"], 501.0);
        assert_eq!(v["malformed_by_reason"]["bad_magic"], 1);
        assert_eq!(v["params"]["rate"], 500);
        assert_eq!(v["leases_timeline"][1], 499);
        assert_eq!(
            v["latency_us"]["request_ack"]["cdf"],
            serde_json::json!([[50.0, 0.001], [100.0, 0.5], [900.0, 0.99], [12_000.0, 1.0]])
        );
        assert_eq!(v["latency_us"]["renew"]["cdf"], serde_json::json!([]));
    }

    #[test]
    fn the_path_shows_in_table_and_json() {
        let relay = sample();
        assert_eq!(relay.params.path, "relay");
        assert!(relay
            .table()
            .contains("dora via relay 10.77.0.2:67 to 10.77.0.1:67"));
        assert_eq!(relay.json()["path"], "relay");
        let mut direct = sample();
        direct.params.path = "direct";
        direct.params.relay = "direct on eth1".into();
        assert_eq!(direct.params.path, "direct");
        let t = direct.table();
        assert!(
            t.contains("dora direct on eth1 (giaddr 0, broadcast) to 10.77.0.1:67"),
            "{t}"
        );
        let v = direct.json();
        assert_eq!(v["path"], "direct");
        assert_eq!(v["params"]["relay"], "direct on eth1");
        assert_eq!(v["leases_per_s"], 499.0, "the other fields stay");
    }

    #[test]
    fn loss_of_nothing_is_zero() {
        assert_eq!(Report::loss_pct_of(&Counters::default()), 0.0);
    }
}
