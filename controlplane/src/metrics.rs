//! `GET /metrics`: the server's counters in the Prometheus text format (version 0.0.4), encoded
//! with the `prometheus-client` crate.
//!
//! Nothing here sits on the packet path: the engine and the worker keep their plain atomic
//! counters ([`Stats`], [`WorkerStats`], including the commit-duration buckets), and a scrape
//! copies them, with the worker's pool answer, the failover relationships' statuses, the alarm
//! monitor's state and the XDP counters, into a [`Snapshot`] that a `prometheus-client`
//! collector encodes. [`parse_text`] reads such a scrape back (for tests and tools).
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
//! Pools (from the worker; left out, with `tandem_worker_responding 0`, if it does not answer):
//! `tandem_leases{scope,state="active"|"free"}` (free: FREE and BACKUP together),
//! `tandem_pool_size{scope}`, `tandem_pool_addresses{scope,state}` with state `free` (the FREE
//! pool), `backup`, `active`, `expired` (EXPIRED, RELEASED or RESET waiting for the failover
//! partner's acknowledgement) and `abandoned`, and
//! `tandem_pool_utilisation_ratio{scope}` (active / size).
//!
//! Journal and worker: `tandem_journal_commits_total`, `tandem_journal_records_total`,
//! `tandem_journal_compactions_total`, the histogram `tandem_journal_commit_duration_seconds`,
//! `tandem_worker_batches_total{worker}`, `tandem_worker_busy_seconds_total{worker}` (time not
//! spent waiting for frames), `tandem_worker_acks_total{worker}` (leases granted or renewed by
//! each worker), `tandem_worker_wakeups_total{worker}`,
//! `tandem_worker_idle_wakeups_total{worker}`, the histogram
//! `tandem_worker_stage_duration_seconds{stage}` (see [`tandem_dataplane::worker::Stages`]),
//! `tandem_replies_withheld_total`, `tandem_send_errors_total`,
//! `tandem_receive_errors_total` and `tandem_uptime_seconds`.
//!
//! Failover, per relationship (label `relationship`): `tandem_failover_state{state}` and
//! `tandem_failover_partner_state{state}` (1 for the current state, 0 for every other state of
//! the draft), `tandem_failover_state_since_timestamp_seconds`, `tandem_failover_connected`,
//! `tandem_failover_unacked_updates`, `tandem_failover_updates_acked_total`,
//! `tandem_failover_updates_rejected_total`, `tandem_failover_ring_full_total` and
//! `tandem_failover_ring_lost_total` (the workers' rings of committed updates to the
//! relationship thread), `tandem_failover_partner_bindings_total`,
//! `tandem_failover_partner_bindings_rejected_total`, `tandem_failover_tls` (1 with TLS on the
//! link), `tandem_failover_tls_refusals_total{reason}`,
//! `tandem_failover_connections_refused_total{reason}`, `tandem_failover_pool_share_percent`,
//! `tandem_failover_clock_skew_seconds` (once a skew was seen),
//! `tandem_failover_last_contact_timestamp_seconds` (once the partner was heard) and the
//! histogram `tandem_failover_replication_lag_seconds` (client ACK's commit to the partner's
//! acknowledgement).
//!
//! Alarms (with the alarm monitor, see [`crate::alarms`]): `tandem_alarm_active{relationship,alarm}`
//! (1 while raised; 0 for the alarms each relationship can raise) and
//! `tandem_alarms_raised_total{relationship,alarm}`.
//!
//! AF_XDP backend only: `tandem_xdp_packets_total{interface,verdict}` (the XDP program's verdict
//! per frame: `redirect` to the AF_XDP socket, `partner_drop` dropped as the failover partner's
//! client, the others passed to the kernel: `runt`, `not_ipv4`, `bad_ipv4`, `not_udp`,
//! `fragment`, `other_port`, `redirect_failed`), `tandem_xdp_bucket_keys_total{interface,key}`
//! (what the load-balancing bucket was computed from: `client_id`, `chaddr`, `unknown`,
//! `bad_dhcp`), `tandem_afxdp_frames_total{direction="rx"|"tx"}`,
//! `tandem_afxdp_dropped_total{reason}` (`unparsed`, `no_tx_chunk`, `tx_ring_full`,
//! `handoff_full`, and the kernel's socket statistics `xsk_rx_dropped`,
//! `xsk_rx_fill_ring_empty`, `xsk_rx_ring_full`, `xsk_tx_invalid`),
//! `tandem_afxdp_tx_kicks_total` and `tandem_afxdp_handoffs_total{direction="out"|"in"}` (frames
//! handed between workers to the owner of the client's bucket).
//!
//! UDP backend only: `tandem_udp_steering_total{interface,verdict}` (with several workers, the
//! SO_REUSEPORT program's verdict per request: `steered` to the owner's socket, or left to the
//! kernel: `unknown_key`, `not_dhcp`, `no_socket`), `tandem_udp_handoffs_total{direction}` and
//! `tandem_udp_dropped_total{reason="handoff_full"}` (requests passed between workers).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tandem_dataplane::engine::{Counter, Stats};
use tandem_dataplane::worker::{PoolRow, WorkerStats, COMMIT_BUCKETS_US, STAGE_BUCKETS_US};

use crate::alarms::{self, Alarm, AlarmKey, Monitor};
use crate::failover::peer::PeerState;
use crate::failover::service::{RelationshipStatus, LAG_BUCKETS_US};

/// The reasons `tandem_failover_tls_refusals_total` shows for every TLS relationship.
const TLS_REFUSAL_REASONS: [&str; 10] = [
    "not_tls",
    "bad_certificate",
    "wrong_name",
    "certificate_expired",
    "no_certificate",
    "partner_refused_our_certificate",
    "incompatible",
    "handshake_timeout",
    "closed_in_handshake",
    "tls_error",
];

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
    /// Time the worker spent working rather than waiting, nanoseconds.
    pub busy_nanos: u64,
    /// Replies withheld because their journal commit failed.
    pub withheld_replies: u64,
    /// Per stage of a request's time in the server: `(stage, sum in nanoseconds, per-bucket
    /// counts)` (not cumulative; see [`tandem_dataplane::worker::StageHistogram`]).
    pub stages: Vec<(&'static str, u64, Vec<u64>)>,
    /// Wake-ups of the workers out of `poll(2)`.
    pub wakeups: u64,
    /// Wake-ups that found nothing to do.
    pub idle_wakeups: u64,
    /// Send errors.
    pub send_errors: u64,
    /// Receive errors.
    pub recv_errors: u64,
    /// Time since the daemon started.
    pub uptime: Duration,
    /// The failover relationships' statuses (empty without failover).
    pub failover: Vec<RelationshipStatus>,
    /// The alarm monitor's state, when it runs.
    pub alarms: Option<AlarmSnapshot>,
    /// The XDP and AF_XDP counters, when the AF_XDP backend runs.
    pub xdp: Option<XdpSnapshot>,
    /// Per worker, in worker order.
    pub workers: Vec<WorkerRow>,
    /// The UDP backend's steering and handoff counters, when it runs.
    pub udp: Option<UdpSnapshot>,
}

/// One worker's counters at a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerRow {
    /// Receive batches.
    pub batches: u64,
    /// Time spent working, nanoseconds.
    pub busy_nanos: u64,
    /// Wake-ups out of `poll(2)`.
    pub wakeups: u64,
    /// Wake-ups that found nothing to do.
    pub idle_wakeups: u64,
    /// ACKs the worker's engine produced (leases granted or renewed).
    pub acks: u64,
}

/// The UDP backend's counters at a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpSnapshot {
    /// Per interface with a steering program: its verdicts by name
    /// (`tandem_ebpf::ReuseportCounters::named`).
    pub steering: Vec<(String, Vec<(&'static str, u64)>)>,
    /// Requests handed to the worker owning their client.
    pub handoff_out: u64,
    /// Requests taken from the handoff queues.
    pub handoff_in: u64,
    /// Requests dropped because a handoff queue was full.
    pub handoff_full: u64,
}

impl UdpSnapshot {
    /// The counters of the running UDP backend (handoffs summed over `workers`).
    pub fn of(shared: &crate::udp_backend::UdpShared, workers: &WorkerStats) -> UdpSnapshot {
        UdpSnapshot {
            steering: shared
                .steering_counters()
                .into_iter()
                .map(|(i, c)| (i, c.named().to_vec()))
                .collect(),
            handoff_out: workers.handoff_out.load(Ordering::Relaxed),
            handoff_in: workers.handoff_in.load(Ordering::Relaxed),
            handoff_full: workers.handoff_full.load(Ordering::Relaxed),
        }
    }
}

/// The alarm monitor's state at a scrape.
#[derive(Clone, Debug, Default)]
pub struct AlarmSnapshot {
    /// The raised alarms.
    pub active: Vec<Alarm>,
    /// How often each alarm was raised since start-up.
    pub raised: BTreeMap<AlarmKey, u64>,
}

impl AlarmSnapshot {
    /// The current state of `monitor`.
    pub fn of(monitor: &Monitor) -> AlarmSnapshot {
        AlarmSnapshot {
            active: monitor.active(),
            raised: monitor.raised_totals(),
        }
    }
}

/// The XDP program's and the AF_XDP worker's counters at a scrape.
#[derive(Clone, Debug, Default)]
pub struct XdpSnapshot {
    /// Per interface: the XDP program's counters by their stable names
    /// (`tandem_ebpf::Counters::named`).
    pub programs: Vec<(String, Vec<(&'static str, u64)>)>,
    /// The AF_XDP worker's counters by their stable names
    /// (`tandem_dataplane::xdp_worker::XdpStats::named`), summed over its sockets.
    pub sockets: Vec<(&'static str, u64)>,
    /// Per failover relationship: requests the XDP programs dropped as its partner's.
    pub relationship_drops: Vec<(String, u64)>,
}

impl XdpSnapshot {
    /// The counters of the running AF_XDP backend: each interface's program, and the AF_XDP
    /// worker's socket counters.
    pub fn of(shared: &crate::xdp_backend::XdpShared) -> XdpSnapshot {
        XdpSnapshot {
            programs: shared
                .interface_counters()
                .into_iter()
                .map(|(i, c)| (i, c.named().to_vec()))
                .collect(),
            sockets: shared.stats.named().to_vec(),
            relationship_drops: shared.relationship_drops(),
        }
    }
}

impl Snapshot {
    /// Copy the current values of `stats` and of every worker's `workers` (plus the workers'
    /// answer about pools). The failover, alarm, XDP and UDP parts start empty; fill them in
    /// before rendering.
    pub fn take(
        stats: &Stats,
        workers: &[std::sync::Arc<WorkerStats>],
        pools: Option<Vec<PoolRow>>,
        uptime: Duration,
    ) -> Snapshot {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let rows = workers
            .iter()
            .enumerate()
            .map(|(k, w)| WorkerRow {
                batches: load(&w.batches),
                busy_nanos: load(&w.busy_nanos),
                wakeups: load(&w.wakeups),
                idle_wakeups: load(&w.idle_wakeups),
                acks: stats.get_at(k, Counter::Ack),
            })
            .collect();
        let worker = &WorkerStats::total(workers.iter().map(|w| &**w));
        Snapshot {
            counters: Counter::ALL.iter().map(|&c| (c, stats.get(c))).collect(),
            pools,
            commits: load(&worker.commits),
            records: load(&worker.records),
            commit_nanos: load(&worker.commit_nanos),
            commit_buckets: worker.commit_buckets.iter().map(load).collect(),
            compactions: load(&worker.compactions),
            batches: load(&worker.batches),
            busy_nanos: load(&worker.busy_nanos),
            withheld_replies: load(&worker.withheld_replies),
            stages: worker
                .stages
                .named()
                .iter()
                .map(|(n, h)| (*n, load(&h.sum_nanos), h.counts()))
                .collect(),
            wakeups: load(&worker.wakeups),
            idle_wakeups: load(&worker.idle_wakeups),
            send_errors: load(&worker.send_errors),
            recv_errors: load(&worker.recv_errors),
            uptime,
            failover: Vec::new(),
            alarms: None,
            xdp: None,
            workers: rows,
            udp: None,
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

type EngineSample = (Option<(&'static str, &'static str)>, u64);

/// The labels of one series.
type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A gauge family; left out if `rows` is empty (a family without series says nothing).
fn gauges<'a, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: Vec<(Labels<'a>, V)>,
) -> Result<(), std::fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family (`_total` is appended to `name`); left out if `rows` is empty.
fn counters<'a, V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: Vec<(Labels<'a>, V)>,
) -> Result<(), std::fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram family, one histogram per label set: `(labels, sum, per-bucket counts)` with
/// the counts not cumulative, one per bound of `bounds` plus the `+Inf` one.
fn histograms<'a>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    bounds: &[f64],
    rows: Vec<(Labels<'a>, f64, Vec<u64>)>,
) -> Result<(), std::fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, sum, counts) in rows {
        let buckets = histogram_buckets(bounds, &counts);
        // Count from the buckets themselves, so that the +Inf bucket always equals _count.
        let count = buckets.iter().map(|(_, n)| n).sum();
        m.encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// `(upper bound, count)` per bucket, `+Inf` last: missing counts are 0, counts beyond the
/// `+Inf` slot are added to it.
fn histogram_buckets(bounds: &[f64], counts: &[u64]) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .enumerate()
        .map(|(i, b)| (b, counts.get(i).copied().unwrap_or(0)))
        .collect();
    let extra: u64 = counts.iter().skip(out.len()).sum();
    if let Some(last) = out.last_mut() {
        last.1 += extra;
    }
    out
}

/// 1 if `b`, else 0.
fn flag(b: bool) -> u64 {
    u64::from(b)
}

impl Snapshot {
    fn encode_engine(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Group the engine counters into families, keeping the first-seen order of names.
        let mut order: Vec<&'static str> = Vec::new();
        let mut families: BTreeMap<&'static str, (&'static str, Vec<EngineSample>)> =
            BTreeMap::new();
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
        Ok(())
    }

    fn encode_pools(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        gauges(
            enc,
            "tandem_worker_responding",
            "1 if the worker answered this scrape's pool query in time, else 0",
            vec![(Vec::new(), flag(self.pools.is_some()))],
        )?;
        let Some(pools) = &self.pools else {
            return Ok(());
        };
        let mut leases = Vec::new();
        let mut sizes = Vec::new();
        let mut addresses = Vec::new();
        let mut utilisation = Vec::new();
        for p in pools {
            let scope = p.scope.as_str();
            for (state, v) in [("active", p.active), ("free", p.free)] {
                leases.push((vec![("scope", scope), ("state", state)], v));
            }
            sizes.push((vec![("scope", scope)], p.size));
            for (state, v) in [
                ("free", p.free.saturating_sub(p.backup)),
                ("backup", p.backup),
                ("active", p.active),
                ("expired", p.expired),
                ("abandoned", p.abandoned),
            ] {
                addresses.push((vec![("scope", scope), ("state", state)], v));
            }
            let ratio = if p.size == 0 {
                0.0
            } else {
                p.active as f64 / p.size as f64
            };
            utilisation.push((vec![("scope", scope)], ratio));
        }
        gauges(
            enc,
            "tandem_leases",
            "Addresses per scope: active leases and unleased (FREE and BACKUP) addresses",
            leases,
        )?;
        gauges(
            enc,
            "tandem_pool_size",
            "Addresses in each scope's pool",
            sizes,
        )?;
        gauges(
            enc,
            "tandem_pool_addresses",
            "Addresses per scope by state: free (FREE pool), backup (BACKUP pool), active, \
             expired (EXPIRED, RELEASED or RESET waiting for the failover partner), abandoned",
            addresses,
        )?;
        gauges(
            enc,
            "tandem_pool_utilisation_ratio",
            "Active leases divided by the scope's pool size",
            utilisation,
        )
    }

    fn encode_journal_and_worker(
        &self,
        enc: &mut DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let plain: [(&str, &str, u64); 6] = [
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
            counters(enc, name, help, vec![(Vec::new(), v)])?;
        }
        let names: Vec<String> = (0..self.workers.len()).map(|k| k.to_string()).collect();
        let per = |f: fn(&WorkerRow) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
            self.workers
                .iter()
                .zip(&names)
                .map(|(w, n)| (vec![("worker", n.as_str())], f(w)))
                .collect()
        };
        counters(
            enc,
            "tandem_worker_batches",
            "Receive batches processed, per worker",
            per(|w| w.batches),
        )?;
        counters(
            enc,
            "tandem_worker_busy_seconds",
            "Time each worker spent handling frames, timers, journal commits and control \
             messages (not waiting for frames)",
            self.workers
                .iter()
                .zip(&names)
                .map(|(w, n)| (vec![("worker", n.as_str())], w.busy_nanos as f64 / 1e9))
                .collect(),
        )?;
        counters(
            enc,
            "tandem_worker_wakeups",
            "Times the workers came out of poll(2) (frames, control messages, handoffs, \
             finished journal syncs, timers)",
            per(|w| w.wakeups),
        )?;
        counters(
            enc,
            "tandem_worker_idle_wakeups",
            "Worker wake-ups that found nothing to do",
            per(|w| w.idle_wakeups),
        )?;
        counters(
            enc,
            "tandem_worker_acks",
            "ACKs (leases granted or renewed) per worker",
            per(|w| w.acks),
        )?;
        let stage_bounds: Vec<f64> = STAGE_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
        histograms(
            enc,
            "tandem_worker_stage_duration_seconds",
            "Where a request's time in the server goes: queue_wait (XDP program to worker, per \
             frame), engine (per batch), journal_write (per batch), fdatasync (per sync), \
             ack_wait (an ACK held for durability, per ACK), transmit (per TX kick)",
            &stage_bounds,
            self.stages
                .iter()
                .map(|(n, sum, counts)| (vec![("stage", *n)], *sum as f64 / 1e9, counts.clone()))
                .collect(),
        )?;
        let bounds: Vec<f64> = COMMIT_BUCKETS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .collect();
        histograms(
            enc,
            "tandem_journal_commit_duration_seconds",
            "Journal commits: a batch written until the fdatasync that covers it is done \
             (with durability sync)",
            &bounds,
            vec![(
                Vec::new(),
                self.commit_nanos as f64 / 1e9,
                self.commit_buckets.clone(),
            )],
        )?;
        gauges(
            enc,
            "tandem_uptime_seconds",
            "Seconds since tandemd started",
            vec![(Vec::new(), self.uptime.as_secs_f64())],
        )
    }

    fn encode_failover(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let rels = &self.failover;
        let per = |f: &dyn Fn(&RelationshipStatus) -> u64| -> Vec<(Labels<'_>, u64)> {
            rels.iter()
                .map(|s| (vec![("relationship", s.name.as_str())], f(s)))
                .collect()
        };
        let states = |current: &dyn Fn(&RelationshipStatus) -> Option<&str>| {
            let mut rows: Vec<(Labels<'_>, u64)> = Vec::new();
            for s in rels {
                let cur = current(s);
                for st in PeerState::ALL {
                    let labels = vec![("relationship", s.name.as_str()), ("state", st.name())];
                    rows.push((labels, flag(cur == Some(st.name()))));
                }
                // A state this table does not know still shows.
                if let Some(c) = cur.filter(|c| PeerState::ALL.iter().all(|st| st.name() != *c)) {
                    rows.push((vec![("relationship", s.name.as_str()), ("state", c)], 1));
                }
            }
            rows
        };
        gauges(
            enc,
            "tandem_failover_state",
            "1 for the relationship's current failover state, 0 for the others",
            states(&|s| Some(s.state.as_str()).filter(|x| !x.is_empty())),
        )?;
        gauges(
            enc,
            "tandem_failover_partner_state",
            "1 for the partner's last reported failover state, 0 for the others (all 0 if unknown)",
            states(&|s| s.partner_state.as_deref()),
        )?;
        gauges(
            enc,
            "tandem_failover_state_since_timestamp_seconds",
            "When the relationship entered its current state (seconds since the epoch)",
            per(&|s| u64::from(s.state_since)),
        )?;
        gauges(
            enc,
            "tandem_failover_connected",
            "1 while the failover connection to the partner is up (handshake done)",
            per(&|s| flag(s.connected)),
        )?;
        gauges(
            enc,
            "tandem_failover_unacked_updates",
            "Binding updates sent or queued and not yet acknowledged by the partner",
            per(&|s| s.unacked_updates as u64),
        )?;
        counters(
            enc,
            "tandem_failover_updates_acked",
            "Binding updates the partner acknowledged",
            per(&|s| s.updates_acked),
        )?;
        counters(
            enc,
            "tandem_failover_updates_rejected",
            "Binding updates the partner refused",
            per(&|s| s.updates_rejected),
        )?;
        counters(
            enc,
            "tandem_failover_ring_full",
            "Times a worker found its ring of committed updates to the relationship thread full \
             (the updates waited in the worker, in order; the client's reply did not)",
            per(&|s| s.ring_full),
        )?;
        counters(
            enc,
            "tandem_failover_ring_lost",
            "Committed updates a worker dropped because the relationship thread fell far \
             behind (resent from the workers' bindings)",
            per(&|s| s.ring_lost),
        )?;
        counters(
            enc,
            "tandem_failover_partner_bindings",
            "Binding updates from the partner stored here",
            per(&|s| s.partner_bindings),
        )?;
        counters(
            enc,
            "tandem_failover_partner_bindings_rejected",
            "Binding updates from the partner refused here",
            per(&|s| s.partner_rejected),
        )?;
        gauges(
            enc,
            "tandem_failover_tls",
            "1 if the failover link runs TLS 1.3 with mutual certificates (tls = \"required\")",
            per(&|s| flag(s.tls)),
        )?;
        // Every reason of a TLS relationship shows, at 0 until it happens.
        let mut tls_rows: Vec<(Labels<'_>, u64)> = Vec::new();
        for s in rels.iter().filter(|s| s.tls) {
            for reason in TLS_REFUSAL_REASONS {
                let n = s.tls_refusals.get(reason).copied().unwrap_or(0);
                tls_rows.push((
                    vec![("relationship", s.name.as_str()), ("reason", reason)],
                    n,
                ));
            }
            for (reason, n) in &s.tls_refusals {
                if !TLS_REFUSAL_REASONS.contains(&reason.as_str()) {
                    tls_rows.push((
                        vec![
                            ("relationship", s.name.as_str()),
                            ("reason", reason.as_str()),
                        ],
                        *n,
                    ));
                }
            }
        }
        counters(
            enc,
            "tandem_failover_tls_refusals",
            "Failover connections refused at the TLS layer, by reason (not_tls: the partner \
             speaks plaintext; bad_certificate, wrong_name, certificate_expired, no_certificate: \
             its certificate; partner_refused_our_certificate; handshake_timeout; ...)",
            tls_rows,
        )?;
        let mut refused: Vec<(Labels<'_>, u64)> = Vec::new();
        for s in rels {
            for reason in ["duplicate", "not_partner", "handshake_timeout"] {
                let n = s.link_refusals.get(reason).copied().unwrap_or(0);
                refused.push((
                    vec![("relationship", s.name.as_str()), ("reason", reason)],
                    n,
                ));
            }
        }
        counters(
            enc,
            "tandem_failover_connections_refused",
            "Inbound failover connections refused before the failover handshake, by reason \
             (duplicate: the relationship has one already; not_partner: from an address that \
             is not the partner's; handshake_timeout: no CONNECT/CONNECTACK in time)",
            refused,
        )?;
        gauges(
            enc,
            "tandem_failover_pool_share_percent",
            "Percentage of the unleased addresses this server should hold to allocate from",
            per(&|s| u64::from(s.share_percent)),
        )?;
        let skew: Vec<(Labels<'_>, i64)> = rels
            .iter()
            .filter_map(|s| Some((vec![("relationship", s.name.as_str())], s.clock_skew_secs?)))
            .collect();
        gauges(
            enc,
            "tandem_failover_clock_skew_seconds",
            "Last clock difference seen beyond the limit (partner minus this server)",
            skew,
        )?;
        let contact: Vec<(Labels<'_>, u64)> = rels
            .iter()
            .filter_map(|s| Some((vec![("relationship", s.name.as_str())], s.last_contact?)))
            .collect();
        gauges(
            enc,
            "tandem_failover_last_contact_timestamp_seconds",
            "Last message received from the partner (seconds since the epoch)",
            contact,
        )?;
        let bounds: Vec<f64> = LAG_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
        histograms(
            enc,
            "tandem_failover_replication_lag_seconds",
            "Replication lag: from the journal commit that lets a client's ACK go to the \
             partner's acknowledgement of the binding",
            &bounds,
            rels.iter()
                .map(|s| {
                    (
                        vec![("relationship", s.name.as_str())],
                        s.lag_sum_us as f64 / 1e6,
                        s.lag_buckets.clone(),
                    )
                })
                .collect(),
        )
    }

    fn encode_alarms(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(a) = &self.alarms else {
            return Ok(());
        };
        // Every alarm each relationship can raise, plus any raised before (a relationship
        // since removed, a scope since moved).
        let mut keys: BTreeSet<(&str, String)> = BTreeSet::new();
        for s in &self.failover {
            keys.insert((s.name.as_str(), alarms::COMM_INTERRUPTED.to_string()));
            let scopes = s.scopes.iter().chain(s.pools.iter().map(|p| &p.scope));
            for scope in scopes {
                keys.insert((s.name.as_str(), alarms::pool_low_name(scope)));
            }
        }
        for x in &a.active {
            keys.insert((x.relationship.as_str(), x.name.clone()));
        }
        for (rel, name) in a.raised.keys() {
            keys.insert((rel.as_str(), name.clone()));
        }
        let active: BTreeSet<(&str, &str)> = a
            .active
            .iter()
            .map(|x| (x.relationship.as_str(), x.name.as_str()))
            .collect();
        let mut raised_rows = Vec::new();
        let mut active_rows = Vec::new();
        for (rel, name) in &keys {
            let labels = vec![("relationship", *rel), ("alarm", name.as_str())];
            let raised = a
                .raised
                .iter()
                .find(|((r, n), _)| r == rel && n == name)
                .map_or(0, |(_, v)| *v);
            active_rows.push((
                labels.clone(),
                flag(active.contains(&(*rel, name.as_str()))),
            ));
            raised_rows.push((labels, raised));
        }
        gauges(
            enc,
            "tandem_alarm_active",
            "1 while the alarm is raised",
            active_rows,
        )?;
        counters(
            enc,
            "tandem_alarms_raised",
            "Times each alarm was raised since start-up",
            raised_rows,
        )
    }

    fn encode_xdp(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(x) = &self.xdp else {
            return Ok(());
        };
        let mut verdicts = Vec::new();
        let mut keys = Vec::new();
        for (ifname, named) in &x.programs {
            for &(name, v) in named {
                let iface = ("interface", ifname.as_str());
                if let Some(key) = name.strip_prefix("key_") {
                    keys.push((vec![iface, ("key", key)], v));
                } else if name == "bad_dhcp" {
                    keys.push((vec![iface, ("key", name)], v));
                } else {
                    verdicts.push((vec![iface, ("verdict", name)], v));
                }
            }
        }
        counters(
            enc,
            "tandem_xdp_packets",
            "Frames seen by the XDP program, by verdict: redirect (to the AF_XDP socket), \
             partner_drop (dropped: the failover partner's client), any other passed to the \
             kernel",
            verdicts,
        )?;
        counters(
            enc,
            "tandem_xdp_bucket_keys",
            "DHCP frames by what the XDP program computed the load-balancing bucket from",
            keys,
        )?;
        let per_rel: Vec<(Vec<(&str, &str)>, u64)> = x
            .relationship_drops
            .iter()
            .map(|(name, v)| (vec![("relationship", name.as_str())], *v))
            .collect();
        counters(
            enc,
            "tandem_xdp_partner_drops",
            "DHCP requests the XDP programs dropped because the failover partner of their \
             scope's relationship answers their bucket, by relationship",
            per_rel,
        )?;
        let mut frames = Vec::new();
        let mut dropped = Vec::new();
        let mut kicks = Vec::new();
        let mut handoffs = Vec::new();
        let mut other = Vec::new();
        for &(name, v) in &x.sockets {
            match name {
                "rx_frames" => frames.push((vec![("direction", "rx")], v)),
                "tx_frames" => frames.push((vec![("direction", "tx")], v)),
                "tx_kicks" => kicks.push((Vec::new(), v)),
                "handoff_out" => handoffs.push((vec![("direction", "out")], v)),
                "handoff_in" => handoffs.push((vec![("direction", "in")], v)),
                "unparsed" | "no_tx_chunk" | "tx_ring_full" | "handoff_full" => {
                    dropped.push((vec![("reason", name)], v))
                }
                _ if name.starts_with("xsk_") => dropped.push((vec![("reason", name)], v)),
                _ => other.push((vec![("counter", name)], v)),
            }
        }
        counters(
            enc,
            "tandem_afxdp_frames",
            "Frames taken from the AF_XDP RX rings (rx) and put on the TX rings (tx)",
            frames,
        )?;
        counters(
            enc,
            "tandem_afxdp_dropped",
            "Frames lost on the AF_XDP path, by reason (xsk_*: the kernel's socket statistics)",
            dropped,
        )?;
        counters(
            enc,
            "tandem_afxdp_tx_kicks",
            "Wake-ups of the kernel to send the TX ring",
            kicks,
        )?;
        counters(
            enc,
            "tandem_afxdp_handoffs",
            "Frames handed between AF_XDP workers: out to the worker owning the client's bucket, in from the worker that received them",
            handoffs,
        )?;
        counters(
            enc,
            "tandem_afxdp_events",
            "Other AF_XDP worker counters, by name",
            other,
        )
    }
}

impl Snapshot {
    fn encode_udp(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(u) = &self.udp else {
            return Ok(());
        };
        let mut verdicts = Vec::new();
        for (ifname, named) in &u.steering {
            for &(name, v) in named {
                verdicts.push((vec![("interface", ifname.as_str()), ("verdict", name)], v));
            }
        }
        counters(
            enc,
            "tandem_udp_steering",
            "Requests seen by the SO_REUSEPORT steering program (several UDP workers), by \
             verdict: steered (to the socket of the worker owning the client), any other left \
             to the kernel's choice (unknown_key, not_dhcp, no_socket)",
            verdicts,
        )?;
        counters(
            enc,
            "tandem_udp_handoffs",
            "Requests handed between UDP workers: out to the worker owning the client's \
             bucket, in from the worker that received them",
            vec![
                (vec![("direction", "out")], u.handoff_out),
                (vec![("direction", "in")], u.handoff_in),
            ],
        )?;
        counters(
            enc,
            "tandem_udp_dropped",
            "Requests lost between UDP workers, by reason (handoff_full: the owner's queue \
             was full; the client retries)",
            vec![(vec![("reason", "handoff_full")], u.handoff_full)],
        )
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_udp(&mut enc)?;
        self.encode_engine(&mut enc)?;
        self.encode_pools(&mut enc)?;
        self.encode_journal_and_worker(&mut enc)?;
        self.encode_failover(&mut enc)?;
        self.encode_alarms(&mut enc)?;
        self.encode_xdp(&mut enc)
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

/// One sample of a scrape: series name (with any `_total`, `_bucket`, ... suffix), labels in
/// the order written, and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series name.
    pub name: String,
    /// Labels, unescaped.
    pub labels: Vec<(String, String)>,
    /// Value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True if the sample is called `name` and has every label of `labels` (it may have more).
    pub fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name
            && labels
                .iter()
                .all(|(k, v)| self.label(k).is_some_and(|x| x == *v))
    }
}

/// Why a scrape could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A sample line is malformed.
    #[error("line {line}: {message}: {text:?}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
        /// The line.
        text: String,
    },
}

/// Read a scrape in the Prometheus text format into its samples, in order. Comment lines
/// (`# HELP`, `# TYPE`, `# EOF`) and blank lines are skipped; a timestamp after the value is
/// ignored.
pub fn parse_text(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = |message: &str| ParseError::Line {
            line: i + 1,
            message: message.to_string(),
            text: line.to_string(),
        };
        out.push(parse_line(l).map_err(|m| err(&m))?);
    }
    Ok(out)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_line(l: &str) -> Result<Sample, String> {
    let name_end = l
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(l.len(), |(i, _)| i);
    if name_end == 0 {
        return Err("no metric name".into());
    }
    let name = &l[..name_end];
    let mut rest = &l[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let key_end = rest
                .char_indices()
                .find(|&(i, c)| {
                    !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()))
                })
                .map_or(rest.len(), |(i, _)| i);
            if key_end == 0 {
                return Err("bad label name".into());
            }
            let key = &rest[..key_end];
            rest = rest[key_end..]
                .strip_prefix("=\"")
                .ok_or("label without =\"value\"")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("bad escape in a label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = rest[close + 1..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected , or } after a label".into());
            }
        }
    }
    let mut words = rest.split_whitespace();
    let value = match words.next().ok_or("no value")? {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = words.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if words.next().is_some() {
        return Err("unexpected text after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The value of the first sample called `name` with every label of `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.matches(name, labels))
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::Alarms;
    use crate::failover::service::ScopePools;

    fn pool_row() -> PoolRow {
        PoolRow {
            scope: "lan".into(),
            free: 90,
            size: 100,
            active: 6,
            backup: 30,
            expired: 3,
            abandoned: 1,
        }
    }

    fn base() -> Snapshot {
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
        ws.batches.fetch_add(11, Ordering::Relaxed);
        ws.busy_nanos.fetch_add(2_500_000_000, Ordering::Relaxed);
        Snapshot::take(
            &stats,
            &[std::sync::Arc::new(ws)],
            Some(vec![pool_row()]),
            Duration::from_secs(42),
        )
    }

    fn sample() -> String {
        render(base()).expect("encoding never fails into a String")
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
            .parse()
            .expect("numeric sample")
    }

    fn parsed(text: &str) -> Vec<Sample> {
        parse_text(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        super::value(samples, name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {samples:#?}"))
    }

    /// Every sample belongs to a family declared once with `# TYPE`, and no family is declared
    /// twice.
    fn check_families(text: &str) {
        let mut declared: Vec<(String, String)> = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let mut w = rest.split_whitespace();
                let (n, t) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
                assert!(
                    declared.iter().all(|(d, _)| d != n),
                    "{n} declared twice:\n{text}"
                );
                declared.push((n.to_string(), t.to_string()));
            }
        }
        for s in parsed(text) {
            let ok = declared.iter().any(|(fam, ty)| match ty.as_str() {
                "counter" => s.name == format!("{fam}_total") || s.name == *fam,
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suf| s.name == format!("{fam}{suf}")),
                _ => s.name == *fam,
            });
            assert!(ok, "{} has no TYPE line:\n{text}", s.name);
        }
    }

    fn rel(name: &str, state: &str) -> RelationshipStatus {
        RelationshipStatus {
            name: name.into(),
            role: "primary".into(),
            partner: "10.0.0.2".into(),
            scopes: vec!["lan".into()],
            state: state.into(),
            state_since: 1_800_000_000,
            partner_state: Some("NORMAL".into()),
            connected: true,
            unacked_updates: 4,
            updates_acked: 120,
            updates_rejected: 2,
            partner_bindings: 77,
            partner_rejected: 1,
            share_percent: 50,
            allocates_from: "free".into(),
            last_contact: Some(1_800_000_100),
            lag_buckets: vec![0; LAG_BUCKETS_US.len() + 1],
            comm_alarm_secs: 300,
            pool_low_percent: 10,
            pools: vec![ScopePools {
                scope: "lan".into(),
                free: 100,
                backup: 100,
                ..ScopePools::default()
            }],
            ..RelationshipStatus::default()
        }
    }

    fn with_failover() -> (Snapshot, String) {
        let mut snap = base();
        let mut a = rel("a", "NORMAL");
        // 3 lags of 80 µs (first bucket), 2 of 3 ms (the 5 ms bucket), 1 of 2 minutes (+Inf).
        a.lag_buckets[0] = 3;
        a.lag_buckets[5] = 2;
        a.lag_buckets[LAG_BUCKETS_US.len()] = 1;
        a.lag_sum_us = 3 * 80 + 2 * 3_000 + 120_000_000;
        a.clock_skew_secs = Some(-7);
        let mut b = rel("b", "COMMUNICATIONS-INTERRUPTED");
        b.partner_state = None;
        b.connected = false;
        b.last_contact = None;
        b.lag_buckets = Vec::new(); // a status that never counted: every bucket 0
        b.pools[0].free = 2; // under 10% of its 50% share of 200
        b.pools[0].backup = 198;
        snap.failover = vec![a, b];
        let mut al = Alarms::new();
        al.evaluate(&snap.failover, 1_800_000_500);
        snap.alarms = Some(AlarmSnapshot {
            active: al.active(),
            raised: al.raised_totals(),
        });
        let text = render(snap.clone()).expect("encode");
        (snap, text)
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
            6.0
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
        check_families(&t);
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
            &[std::sync::Arc::new(WorkerStats::default())],
            None,
            Duration::ZERO,
        ))
        .expect("encode");
        assert_eq!(value(&t, "tandem_worker_responding"), 0.0);
        assert!(!t.contains("tandem_leases{"), "{t}");
        assert!(!t.contains("tandem_pool_addresses"), "{t}");
        assert!(!t.contains("tandem_pool_utilisation_ratio"), "{t}");
        check_families(&t);
    }

    /// Two workers: the worker families carry one series each, with that worker's own values;
    /// the journal families add both up.
    #[test]
    fn worker_families_have_one_series_per_worker() {
        use std::sync::Arc;
        let stats = Stats::new(2);
        stats.bump_at(0, Counter::Ack);
        for _ in 0..3 {
            stats.bump_at(1, Counter::Ack);
        }
        let (w0, w1) = (
            Arc::new(WorkerStats::default()),
            Arc::new(WorkerStats::default()),
        );
        w0.batches.fetch_add(5, Ordering::Relaxed);
        w1.batches.fetch_add(8, Ordering::Relaxed);
        w1.wakeups.fetch_add(2, Ordering::Relaxed);
        w0.record_commit(150_000, 4);
        w1.record_commit(150_000, 6);
        w1.stages.fdatasync.record_nanos(90_000);
        let t = render(Snapshot::take(&stats, &[w0, w1], None, Duration::ZERO)).expect("encode");
        check_families(&t);
        let s = parsed(&t);
        let w = |name, k| get(&s, name, &[("worker", k)]);
        assert_eq!(
            (
                w("tandem_worker_batches_total", "0"),
                w("tandem_worker_batches_total", "1")
            ),
            (5.0, 8.0)
        );
        assert_eq!(
            (
                w("tandem_worker_acks_total", "0"),
                w("tandem_worker_acks_total", "1")
            ),
            (1.0, 3.0)
        );
        assert_eq!(w("tandem_worker_wakeups_total", "1"), 2.0);
        assert_eq!(value(&t, "tandem_journal_records_total"), 10.0);
        assert_eq!(value(&t, "tandem_journal_commits_total"), 2.0);
        assert!(
            !t.contains("tandem_udp_"),
            "no UDP families without the backend:\n{t}"
        );
    }

    #[test]
    fn udp_steering_and_handoff_families() {
        let mut snap = base();
        let steered = tandem_ebpf::ReuseportCounters {
            steered: 40,
            unknown_key: 2,
            not_dhcp: 1,
            filter_accepted: 60,
            ..Default::default()
        };
        snap.udp = Some(UdpSnapshot {
            steering: vec![("eth1".into(), steered.named().to_vec())],
            handoff_out: 2,
            handoff_in: 2,
            handoff_full: 0,
        });
        let t = render(snap).expect("encode");
        check_families(&t);
        let s = parsed(&t);
        let v = |verdict| {
            get(
                &s,
                "tandem_udp_steering_total",
                &[("interface", "eth1"), ("verdict", verdict)],
            )
        };
        assert_eq!(
            (v("steered"), v("unknown_key"), v("not_dhcp")),
            (40.0, 2.0, 1.0)
        );
        assert_eq!(
            get(&s, "tandem_udp_handoffs_total", &[("direction", "out")]),
            2.0
        );
        assert_eq!(
            get(
                &s,
                "tandem_udp_dropped_total",
                &[("reason", "handoff_full")]
            ),
            0.0
        );
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

    #[test]
    fn pool_addresses_by_state_and_utilisation() {
        let s = parsed(&sample());
        let lan = |state| {
            get(
                &s,
                "tandem_pool_addresses",
                &[("scope", "lan"), ("state", state)],
            )
        };
        // 90 unleased of which 30 BACKUP: 60 FREE.
        assert_eq!(lan("free"), 60.0);
        assert_eq!(lan("backup"), 30.0);
        assert_eq!(lan("active"), 6.0);
        assert_eq!(lan("expired"), 3.0);
        assert_eq!(lan("abandoned"), 1.0);
        let states: Vec<&str> = s
            .iter()
            .filter(|x| x.name == "tandem_pool_addresses")
            .filter_map(|x| x.label("state"))
            .collect();
        assert_eq!(states, ["free", "backup", "active", "expired", "abandoned"]);
        let ratio = get(&s, "tandem_pool_utilisation_ratio", &[("scope", "lan")]);
        assert!((ratio - 0.06).abs() < 1e-12, "{ratio}");
    }

    #[test]
    fn utilisation_of_an_empty_pool_is_zero() {
        let mut snap = base();
        snap.pools = Some(vec![PoolRow {
            scope: "none".into(),
            free: 0,
            size: 0,
            active: 0,
            backup: 0,
            expired: 0,
            abandoned: 0,
        }]);
        let s = parsed(&render(snap).expect("encode"));
        assert_eq!(
            get(&s, "tandem_pool_utilisation_ratio", &[("scope", "none")]),
            0.0
        );
    }

    #[test]
    fn worker_load_per_worker() {
        let s = parsed(&sample());
        assert_eq!(
            get(&s, "tandem_worker_batches_total", &[("worker", "0")]),
            11.0
        );
        assert_eq!(
            get(&s, "tandem_worker_busy_seconds_total", &[("worker", "0")]),
            2.5
        );
    }

    #[test]
    fn failover_state_is_one_hot_over_the_draft_states() {
        let (_, t) = with_failover();
        check_families(&t);
        let s = parsed(&t);
        for rel in ["a", "b"] {
            let rows: Vec<&Sample> = s
                .iter()
                .filter(|x| {
                    x.name == "tandem_failover_state" && x.label("relationship") == Some(rel)
                })
                .collect();
            assert_eq!(rows.len(), PeerState::ALL.len(), "{rows:?}");
            assert_eq!(rows.iter().map(|x| x.value).sum::<f64>(), 1.0, "{rows:?}");
        }
        assert_eq!(
            get(
                &s,
                "tandem_failover_state",
                &[("relationship", "a"), ("state", "NORMAL")]
            ),
            1.0
        );
        assert_eq!(
            get(
                &s,
                "tandem_failover_state",
                &[
                    ("relationship", "b"),
                    ("state", "COMMUNICATIONS-INTERRUPTED")
                ]
            ),
            1.0
        );
        assert_eq!(
            get(
                &s,
                "tandem_failover_state",
                &[("relationship", "b"), ("state", "NORMAL")]
            ),
            0.0
        );
        // The partner's state: known for a, unknown (all 0) for b.
        assert_eq!(
            get(
                &s,
                "tandem_failover_partner_state",
                &[("relationship", "a"), ("state", "NORMAL")]
            ),
            1.0
        );
        let b_partner: f64 = s
            .iter()
            .filter(|x| {
                x.name == "tandem_failover_partner_state" && x.label("relationship") == Some("b")
            })
            .map(|x| x.value)
            .sum();
        assert_eq!(b_partner, 0.0);
    }

    #[test]
    fn failover_gauges_and_counters_per_relationship() {
        let (_, t) = with_failover();
        let s = parsed(&t);
        let a = [("relationship", "a")];
        let b = [("relationship", "b")];
        assert_eq!(get(&s, "tandem_failover_connected", &a), 1.0);
        assert_eq!(get(&s, "tandem_failover_connected", &b), 0.0);
        assert_eq!(get(&s, "tandem_failover_unacked_updates", &a), 4.0);
        assert_eq!(get(&s, "tandem_failover_updates_acked_total", &a), 120.0);
        assert_eq!(get(&s, "tandem_failover_updates_rejected_total", &a), 2.0);
        assert_eq!(get(&s, "tandem_failover_partner_bindings_total", &a), 77.0);
        assert_eq!(
            get(&s, "tandem_failover_partner_bindings_rejected_total", &a),
            1.0
        );
        assert_eq!(get(&s, "tandem_failover_pool_share_percent", &a), 50.0);
        assert_eq!(
            get(&s, "tandem_failover_state_since_timestamp_seconds", &a),
            1_800_000_000.0
        );
        // Known only for a.
        assert_eq!(get(&s, "tandem_failover_clock_skew_seconds", &a), -7.0);
        assert!(super::value(&s, "tandem_failover_clock_skew_seconds", &b).is_none());
        assert_eq!(
            get(&s, "tandem_failover_last_contact_timestamp_seconds", &a),
            1_800_000_100.0
        );
        assert!(super::value(&s, "tandem_failover_last_contact_timestamp_seconds", &b).is_none());
    }

    #[test]
    fn replication_lag_histogram_is_cumulative_per_relationship() {
        let (_, t) = with_failover();
        let s = parsed(&t);
        let name = "tandem_failover_replication_lag_seconds";
        let buckets = |rel: &str| -> Vec<(String, f64)> {
            s.iter()
                .filter(|x| {
                    x.name == format!("{name}_bucket") && x.label("relationship") == Some(rel)
                })
                .map(|x| (x.label("le").unwrap_or("").to_string(), x.value))
                .collect()
        };
        let a = buckets("a");
        assert_eq!(a.len(), LAG_BUCKETS_US.len() + 1);
        assert!(a.windows(2).all(|w| w[0].1 <= w[1].1), "{a:?}");
        assert_eq!(a[0], ("0.0001".to_string(), 3.0));
        assert_eq!(a[4].1, 3.0); // le 2.5 ms
        assert_eq!(a[5], ("0.005".to_string(), 5.0));
        assert_eq!(a[LAG_BUCKETS_US.len() - 1], ("60".to_string(), 5.0));
        assert_eq!(a[LAG_BUCKETS_US.len()], ("+Inf".to_string(), 6.0));
        let rel_a = [("relationship", "a")];
        assert_eq!(get(&s, &format!("{name}_count"), &rel_a), 6.0);
        let sum = get(&s, &format!("{name}_sum"), &rel_a);
        assert!((sum - 120.00624).abs() < 1e-9, "{sum}");
        // b never counted anything: every bucket present, all 0.
        let b = buckets("b");
        assert_eq!(b.len(), LAG_BUCKETS_US.len() + 1);
        assert!(b.iter().all(|(_, v)| *v == 0.0), "{b:?}");
        assert_eq!(
            get(&s, &format!("{name}_count"), &[("relationship", "b")]),
            0.0
        );
    }

    #[test]
    fn histogram_buckets_pad_and_fold() {
        let bounds = [1.0, 2.0];
        assert_eq!(
            histogram_buckets(&bounds, &[4]),
            [(1.0, 4), (2.0, 0), (f64::INFINITY, 0)]
        );
        assert_eq!(
            histogram_buckets(&bounds, &[1, 2, 3, 4, 5]),
            [(1.0, 1), (2.0, 2), (f64::INFINITY, 12)]
        );
    }

    #[test]
    fn alarms_are_exported_with_zeroes_for_the_quiet_ones() {
        let (snap, t) = with_failover();
        let s = parsed(&t);
        let alarm = |rel: &str, name: &str| {
            (
                get(
                    &s,
                    "tandem_alarm_active",
                    &[("relationship", rel), ("alarm", name)],
                ),
                get(
                    &s,
                    "tandem_alarms_raised_total",
                    &[("relationship", rel), ("alarm", name)],
                ),
            )
        };
        // b: interrupted for 500 s (alarm after 300 s) and its FREE share ran dry.
        assert_eq!(alarm("b", "comm-interrupted"), (1.0, 1.0));
        assert_eq!(alarm("b", "pool-low:lan"), (1.0, 1.0));
        // a: quiet, but its series exist so that alerts can test `== 1`.
        assert_eq!(alarm("a", "comm-interrupted"), (0.0, 0.0));
        assert_eq!(alarm("a", "pool-low:lan"), (0.0, 0.0));
        let active = s
            .iter()
            .filter(|x| x.name == "tandem_alarm_active" && x.value == 1.0)
            .count();
        assert_eq!(active, snap.alarms.as_ref().map_or(0, |a| a.active.len()));
    }

    #[test]
    fn alarm_raised_on_a_removed_relationship_still_counts() {
        let mut snap = base();
        let mut raised = BTreeMap::new();
        raised.insert(("gone".to_string(), "comm-interrupted".to_string()), 3);
        snap.alarms = Some(AlarmSnapshot {
            active: Vec::new(),
            raised,
        });
        let s = parsed(&render(snap).expect("encode"));
        let labels = [("relationship", "gone"), ("alarm", "comm-interrupted")];
        assert_eq!(get(&s, "tandem_alarms_raised_total", &labels), 3.0);
        assert_eq!(get(&s, "tandem_alarm_active", &labels), 0.0);
    }

    #[test]
    fn failover_alarm_and_xdp_families_are_absent_when_not_running() {
        let t = sample();
        for family in [
            "tandem_failover_",
            "tandem_alarm",
            "tandem_xdp_",
            "tandem_afxdp_",
        ] {
            assert!(!t.contains(family), "{family} without its source:\n{t}");
        }
    }

    #[test]
    fn xdp_verdicts_keys_and_socket_counters() {
        let mut c = tandem_ebpf::Counters::default();
        c.redirect = 40;
        c.partner_drop = 35;
        c.not_ipv4 = 9;
        c.key_chaddr = 70;
        c.key_client_id = 5;
        c.bad_dhcp = 1;
        let sockets = tandem_dataplane::xdp_worker::XdpStats::default();
        sockets.rx_frames.store(40, Ordering::Relaxed);
        sockets.tx_frames.store(38, Ordering::Relaxed);
        sockets.tx_ring_full.store(2, Ordering::Relaxed);
        sockets.xsk_rx_fill_ring_empty.store(4, Ordering::Relaxed);
        sockets.tx_kicks.store(20, Ordering::Relaxed);
        let mut snap = base();
        snap.xdp = Some(XdpSnapshot {
            programs: vec![
                ("eth1".into(), c.named().to_vec()),
                (
                    "eth2".into(),
                    tandem_ebpf::Counters::default().named().to_vec(),
                ),
            ],
            sockets: sockets.named().to_vec(),
            relationship_drops: vec![("spoke1".into(), 30), ("spoke2".into(), 5)],
        });
        let t = render(snap).expect("encode");
        check_families(&t);
        let s = parsed(&t);
        let v = |verdict| {
            get(
                &s,
                "tandem_xdp_packets_total",
                &[("interface", "eth1"), ("verdict", verdict)],
            )
        };
        assert_eq!(v("redirect"), 40.0);
        assert_eq!(v("partner_drop"), 35.0);
        let rel = |r| get(&s, "tandem_xdp_partner_drops_total", &[("relationship", r)]);
        assert_eq!((rel("spoke1"), rel("spoke2")), (30.0, 5.0));
        assert_eq!(v("not_ipv4"), 9.0);
        assert_eq!(v("runt"), 0.0);
        // Nine verdicts per interface, whose sum is every frame the program saw.
        let eth1: Vec<&Sample> = s
            .iter()
            .filter(|x| {
                x.name == "tandem_xdp_packets_total" && x.label("interface") == Some("eth1")
            })
            .collect();
        assert_eq!(eth1.len(), 9, "{eth1:?}");
        assert_eq!(eth1.iter().map(|x| x.value).sum::<f64>(), c.frames() as f64);
        assert_eq!(
            get(
                &s,
                "tandem_xdp_packets_total",
                &[("interface", "eth2"), ("verdict", "redirect")]
            ),
            0.0
        );
        let key = |k| {
            get(
                &s,
                "tandem_xdp_bucket_keys_total",
                &[("interface", "eth1"), ("key", k)],
            )
        };
        assert_eq!(key("chaddr"), 70.0);
        assert_eq!(key("client_id"), 5.0);
        assert_eq!(key("unknown"), 0.0);
        assert_eq!(key("bad_dhcp"), 1.0);
        assert_eq!(
            get(&s, "tandem_afxdp_frames_total", &[("direction", "rx")]),
            40.0
        );
        assert_eq!(
            get(&s, "tandem_afxdp_frames_total", &[("direction", "tx")]),
            38.0
        );
        assert_eq!(
            get(
                &s,
                "tandem_afxdp_dropped_total",
                &[("reason", "tx_ring_full")]
            ),
            2.0
        );
        assert_eq!(
            get(
                &s,
                "tandem_afxdp_dropped_total",
                &[("reason", "xsk_rx_fill_ring_empty")]
            ),
            4.0
        );
        assert_eq!(get(&s, "tandem_afxdp_tx_kicks_total", &[]), 20.0);
        // Every socket counter lands in one of the named families, none in the catch-all.
        assert!(!t.contains("tandem_afxdp_events"), "{t}");
    }

    #[test]
    fn parse_reads_labels_escapes_specials_and_timestamps() {
        let text = "# HELP x y\n# TYPE x gauge\n\
                    x 1\n\
                    x{a=\"b\",c=\"d \\\"q\\\" \\\\ \\n\"} 2.5 1700000000000\n\
                    x_bucket{le=\"+Inf\",} +Inf\n\
                    y -Inf\n\
                    z NaN\n\
                    # EOF\n";
        let s = parse_text(text).expect("valid");
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].name, "x");
        assert!(s[0].labels.is_empty());
        assert_eq!(s[1].label("a"), Some("b"));
        assert_eq!(s[1].label("c"), Some("d \"q\" \\ \n"));
        assert_eq!(s[1].value, 2.5);
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert_eq!(s[2].value, f64::INFINITY);
        assert_eq!(s[3].value, f64::NEG_INFINITY);
        assert!(s[4].value.is_nan());
        assert!(s[1].matches("x", &[("c", "d \"q\" \\ \n")]));
        assert!(!s[1].matches("x", &[("a", "other")]));
        assert_eq!(super::value(&s, "x", &[("a", "b")]), Some(2.5));
        assert_eq!(super::value(&s, "x", &[("zz", "b")]), None);
    }

    #[test]
    fn parse_refuses_malformed_lines_with_their_number() {
        for (bad, why) in [
            ("x", "no value"),
            ("x{a=\"b\" 1", "expected , or }"),
            ("x{a=b} 1", "label without"),
            ("x{a=\"b} 1", "unterminated"),
            ("x{a=\"\\t\"} 1", "bad escape"),
            ("x one", "bad value"),
            ("x 1 2 3", "unexpected text"),
            ("x 1 soon", "bad timestamp"),
            ("{a=\"b\"} 1", "no metric name"),
            ("x{=\"b\"} 1", "bad label name"),
        ] {
            let text = format!("# TYPE x gauge\nx 1\n{bad}\n");
            let e = parse_text(&text).expect_err(bad).to_string();
            assert!(e.starts_with("line 3: "), "{bad}: {e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_full_scrape_parses_back_to_what_was_rendered() {
        let (_, t) = with_failover();
        let s = parsed(&t);
        let lines = t
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(s.len(), lines);
        assert_eq!(
            get(
                &s,
                "tandem_dhcp_messages_received_total",
                &[("type", "discover")]
            ),
            3.0
        );
    }
}
