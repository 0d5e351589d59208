//! `GET /metrics`: the server's counters in the Prometheus text format (version 0.0.4), encoded
//! with the `prometheus-client` crate.
//!
//! Nothing here sits on the packet path: the engine and the worker keep their plain atomic
//! counters ([`Stats`], [`WorkerStats`], including the commit-duration buckets), and a scrape
//! copies them into a [`Snapshot`] that a `prometheus-client` collector encodes.
//!
//! Every engine [`Counter`] is exported, grouped by its stable name:
//!
//! | engine counters | metric |
//! |---|---|
//! | `received` | `tandem_dhcp_frames_received_total` |
//! | `discover`, `request`, `release`, `decline`, `inform` | `tandem_dhcp_messages_received_total{type}` |
//! | `offer`, `ack`, `nak` | `tandem_dhcp_replies_sent_total{type}` |
//! | `drop_*` | `tandem_dhcp_dropped_total{reason}` (malformed or unusable frames) |
//! | `silent_*` | `tandem_dhcp_unanswered_total{reason}` (valid requests that get no reply) |
//! | `duplicate`, `duplicate_other_relay` | `tandem_dhcp_duplicate_requests_total`, `tandem_dhcp_duplicate_requests_other_relay_total` |
//! | `expired`, `offer_expired`, `probation_ended` | `tandem_lease_events_total{event}` |
//! | any other | `tandem_engine_events_total{counter}` |
//!
//! Besides: `tandem_leases{scope,state="active"|"free"}` and `tandem_pool_size{scope}` (from the
//! worker; left out, with `tandem_worker_responding 0`, if the worker does not answer),
//! `tandem_journal_commits_total`, `tandem_journal_records_total`,
//! `tandem_journal_compactions_total`, the histogram `tandem_journal_commit_duration_seconds`,
//! `tandem_worker_batches_total`, `tandem_replies_withheld_total`, `tandem_send_errors_total`,
//! `tandem_receive_errors_total` and `tandem_uptime_seconds`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tandem_dataplane::engine::{Counter, Stats};
use tandem_dataplane::worker::{PoolRow, WorkerStats, COMMIT_BUCKETS_US};

/// `Content-Type` of the `/metrics` answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything one scrape reports, copied from the live counters.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Every engine counter with its value, in [`Counter::ALL`] order.
    pub counters: Vec<(Counter, u64)>,
    /// Pool usage per scope, or `None` if the worker did not answer in time.
    pub pools: Option<Vec<PoolRow>>,
    /// Journal commits.
    pub commits: u64,
    /// Journal records written.
    pub records: u64,
    /// Sum of commit durations, nanoseconds.
    pub commit_nanos: u64,
    /// Commits per duration bucket (not cumulative; see [`WorkerStats::commit_buckets`]).
    pub commit_buckets: Vec<u64>,
    /// Journal compactions started.
    pub compactions: u64,
    /// Batches processed by the worker.
    pub batches: u64,
    /// Replies withheld because their journal commit failed.
    pub withheld_replies: u64,
    /// Send errors.
    pub send_errors: u64,
    /// Receive errors.
    pub recv_errors: u64,
    /// Time since the daemon started.
    pub uptime: Duration,
}

impl Snapshot {
    /// Copy the current values of `stats` and `worker` (plus the worker's answer about pools).
    pub fn take(
        stats: &Stats,
        worker: &WorkerStats,
        pools: Option<Vec<PoolRow>>,
        uptime: Duration,
    ) -> Snapshot {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            counters: Counter::ALL.iter().map(|&c| (c, stats.get(c))).collect(),
            pools,
            commits: load(&worker.commits),
            records: load(&worker.records),
            commit_nanos: load(&worker.commit_nanos),
            commit_buckets: worker.commit_buckets.iter().map(load).collect(),
            compactions: load(&worker.compactions),
            batches: load(&worker.batches),
            withheld_replies: load(&worker.withheld_replies),
            send_errors: load(&worker.send_errors),
            recv_errors: load(&worker.recv_errors),
            uptime,
        }
    }
}

/// Metric name, help text and optional (label name, label value) of an engine counter.
pub fn counter_metric(
    c: Counter,
) -> (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
) {
    let name = c.name();
    match name {
        "received" => ("tandem_dhcp_frames_received", "DHCP frames received", None),
        "discover" | "request" | "release" | "decline" | "inform" => (
            "tandem_dhcp_messages_received",
            "DHCP client messages received, by message type",
            Some(("type", name)),
        ),
        "offer" | "ack" | "nak" => (
            "tandem_dhcp_replies_sent",
            "DHCP replies produced, by message type",
            Some(("type", name)),
        ),
        "duplicate" => (
            "tandem_dhcp_duplicate_requests",
            "Requests answered again from the duplicate cache (retransmissions, redundant relays)",
            None,
        ),
        "duplicate_other_relay" => (
            "tandem_dhcp_duplicate_requests_other_relay",
            "Duplicate requests that arrived through a different relay than the first copy",
            None,
        ),
        "expired" | "offer_expired" | "probation_ended" => (
            "tandem_lease_events",
            "Lease timers that ran out: leases, offer holds, decline probations",
            Some(("event", name)),
        ),
        _ => {
            if let Some(reason) = name.strip_prefix("drop_") {
                (
                    "tandem_dhcp_dropped",
                    "Frames dropped as malformed or unusable, by reason",
                    Some(("reason", reason)),
                )
            } else if let Some(reason) = name.strip_prefix("silent_") {
                (
                    "tandem_dhcp_unanswered",
                    "Valid requests that got no reply, by reason",
                    Some(("reason", reason)),
                )
            } else {
                (
                    "tandem_engine_events",
                    "Other engine counters, by counter name",
                    Some(("counter", name)),
                )
            }
        }
    }
}

type Sample = (Option<(&'static str, &'static str)>, u64);

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Group the engine counters into families, keeping the first-seen order of names.
        let mut order: Vec<&'static str> = Vec::new();
        let mut families: BTreeMap<&'static str, (&'static str, Vec<Sample>)> = BTreeMap::new();
        for &(c, v) in &self.counters {
            let (name, help, label) = counter_metric(c);
            let entry = families.entry(name).or_insert_with(|| {
                order.push(name);
                (help, Vec::new())
            });
            entry.1.push((label, v));
        }
        for name in order {
            let Some((help, samples)) = families.get(name) else {
                continue;
            };
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (label, v) in samples {
                match label {
                    Some(l) => ConstCounter::new(*v).encode(m.encode_family(&[*l])?)?,
                    None => {
                        // An unlabelled counter is alone in its family.
                        ConstCounter::new(*v).encode(m)?;
                        break;
                    }
                }
            }
        }

        let responding = u64::from(self.pools.is_some());
        let m = enc.encode_descriptor(
            "tandem_worker_responding",
            "1 if the worker answered this scrape's pool query in time, else 0",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(responding).encode(m)?;
        if let Some(pools) = &self.pools {
            let mut m = enc.encode_descriptor(
                "tandem_leases",
                "Addresses per scope: active leases and free addresses",
                None,
                MetricType::Gauge,
            )?;
            for p in pools {
                for (state, v) in [("active", p.active), ("free", p.free)] {
                    let labels = [("scope", p.scope.as_str()), ("state", state)];
                    ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
                }
            }
            let mut m = enc.encode_descriptor(
                "tandem_pool_size",
                "Addresses in each scope's pool",
                None,
                MetricType::Gauge,
            )?;
            for p in pools {
                let labels = [("scope", p.scope.as_str())];
                ConstGauge::new(p.size).encode(m.encode_family(&labels)?)?;
            }
        }

        let plain: [(&str, &str, u64); 7] = [
            (
                "tandem_journal_commits",
                "Journal commits (one fdatasync each with durability sync)",
                self.commits,
            ),
            (
                "tandem_journal_records",
                "Lease records written to the journal",
                self.records,
            ),
            (
                "tandem_journal_compactions",
                "Journal compactions (snapshots) started",
                self.compactions,
            ),
            (
                "tandem_worker_batches",
                "Receive batches processed by the worker",
                self.batches,
            ),
            (
                "tandem_replies_withheld",
                "Replies withheld because their journal commit failed",
                self.withheld_replies,
            ),
            (
                "tandem_send_errors",
                "Replies the kernel refused to send",
                self.send_errors,
            ),
            (
                "tandem_receive_errors",
                "Socket receive errors",
                self.recv_errors,
            ),
        ];
        for (name, help, v) in plain {
            let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(m)?;
        }

        let mut buckets: Vec<(f64, u64)> = COMMIT_BUCKETS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.commit_buckets.iter().copied())
            .collect();
        buckets.truncate(COMMIT_BUCKETS_US.len() + 1);
        // Count from the buckets themselves, so that the +Inf bucket always equals _count.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let mut m = enc.encode_descriptor(
            "tandem_journal_commit_duration_seconds",
            "Duration of journal commits (write and, with durability sync, fdatasync)",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(self.commit_nanos as f64 / 1e9, count, &buckets, None)?;

        let m = enc.encode_descriptor(
            "tandem_uptime_seconds",
            "Seconds since tandemd started",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.uptime.as_secs_f64()).encode(m)?;
        Ok(())
    }
}

/// Encode `snapshot` in the Prometheus text format.
pub fn render(snapshot: Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let stats = Stats::default();
        for _ in 0..3 {
            stats.bump(Counter::Discover);
        }
        stats.bump(Counter::Ack);
        stats.bump(Counter::DropBadMagic);
        stats.bump(Counter::SilentNoAddress);
        let ws = WorkerStats::default();
        ws.record_commit(150_000, 4); // 150 µs: the 200 µs bucket
        ws.record_commit(20_000, 1); // 20 µs: the 25 µs bucket
        ws.record_commit(3_000_000_000, 2); // 3 s: only +Inf
        ws.withheld_replies.fetch_add(7, Ordering::Relaxed);
        let pools = vec![PoolRow {
            scope: "lan".into(),
            free: 90,
            size: 100,
            active: 10,
        }];
        render(Snapshot::take(
            &stats,
            &ws,
            Some(pools),
            Duration::from_secs(42),
        ))
        .expect("encoding never fails into a String")
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
            .parse()
            .expect("numeric sample")
    }

    #[test]
    fn exports_counters_by_type_and_reason() {
        let t = sample();
        assert_eq!(
            value(&t, "tandem_dhcp_messages_received_total{type=\"discover\"}"),
            3.0
        );
        assert_eq!(
            value(&t, "tandem_dhcp_messages_received_total{type=\"request\"}"),
            0.0
        );
        assert_eq!(
            value(&t, "tandem_dhcp_replies_sent_total{type=\"ack\"}"),
            1.0
        );
        assert_eq!(
            value(&t, "tandem_dhcp_dropped_total{reason=\"bad_magic\"}"),
            1.0
        );
        assert_eq!(
            value(&t, "tandem_dhcp_unanswered_total{reason=\"no_address\"}"),
            1.0
        );
        assert_eq!(value(&t, "tandem_replies_withheld_total"), 7.0);
        assert_eq!(value(&t, "tandem_journal_commits_total"), 3.0);
        assert_eq!(value(&t, "tandem_journal_records_total"), 7.0);
        assert_eq!(value(&t, "tandem_uptime_seconds"), 42.0);
        assert_eq!(value(&t, "tandem_worker_responding"), 1.0);
        assert_eq!(
            value(&t, "tandem_leases{scope=\"lan\",state=\"active\"}"),
            10.0
        );
        assert_eq!(
            value(&t, "tandem_leases{scope=\"lan\",state=\"free\"}"),
            90.0
        );
        assert_eq!(value(&t, "tandem_pool_size{scope=\"lan\"}"), 100.0);
        // One TYPE line per family, even though the engine counters come one by one.
        assert_eq!(
            t.matches("# TYPE tandem_dhcp_dropped_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn every_engine_counter_is_exported() {
        let t = sample();
        for &c in Counter::ALL {
            let (name, _, label) = counter_metric(c);
            let series = match label {
                Some((k, v)) => format!("{name}_total{{{k}=\"{v}\"}}"),
                None => format!("{name}_total"),
            };
            value(&t, &series);
        }
    }

    #[test]
    fn commit_histogram_is_cumulative_and_consistent() {
        let t = sample();
        assert_eq!(
            value(
                &t,
                "tandem_journal_commit_duration_seconds_bucket{le=\"2.5e-05\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &t,
                "tandem_journal_commit_duration_seconds_bucket{le=\"0.0001\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &t,
                "tandem_journal_commit_duration_seconds_bucket{le=\"0.0002\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &t,
                "tandem_journal_commit_duration_seconds_bucket{le=\"1\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &t,
                "tandem_journal_commit_duration_seconds_bucket{le=\"+Inf\"}"
            ),
            3.0
        );
        assert_eq!(
            value(&t, "tandem_journal_commit_duration_seconds_count"),
            3.0
        );
        let sum = value(&t, "tandem_journal_commit_duration_seconds_sum");
        assert!((sum - 3.00017).abs() < 1e-9, "sum {sum}");
    }

    #[test]
    fn pool_gauges_are_left_out_when_the_worker_is_silent() {
        let t = render(Snapshot::take(
            &Stats::default(),
            &WorkerStats::default(),
            None,
            Duration::ZERO,
        ))
        .expect("encode");
        assert_eq!(value(&t, "tandem_worker_responding"), 0.0);
        assert!(!t.contains("tandem_leases{"), "{t}");
    }

    #[test]
    fn record_commit_buckets_by_upper_bound() {
        let ws = WorkerStats::default();
        ws.record_commit(25_000, 1); // exactly 25 µs: first bucket
        ws.record_commit(25_001, 1); // just over: second bucket
        ws.record_commit(u64::MAX / 2, 1); // overflow slot
        let got: Vec<u64> = ws
            .commit_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(got[0], 1);
        assert_eq!(got[1], 1);
        assert_eq!(got[COMMIT_BUCKETS_US.len()], 1);
        assert_eq!(got.iter().sum::<u64>(), 3);
        assert_eq!(ws.commits.load(Ordering::Relaxed), 3);
    }
}
