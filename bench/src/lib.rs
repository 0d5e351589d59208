//! `tandem-bench`: Tandem's DHCPv4 load generator.
//!
//! `tandem-bench dora` runs DORA load over UDP or AF_XDP: many simulated clients, each a distinct
//! MAC, go through DISCOVER → OFFER → REQUEST → ACK (optionally followed by a RELEASE, a DECLINE
//! or a RENEWING REQUEST) through one relay address (giaddr) or, with `--direct`, as clients on
//! the server's own link (giaddr 0, broadcast), at a target rate or flat out, bounded in time and
//! count. It reports leases/s, loss, NAKs, latency percentiles per step and the server's CPU time
//! per lease. `compare` runs it against Tandem and its peers side by side, `tune` sweeps worker
//! pinning, `ceiling` measures the generator alone.
//!
//! ```text
//! # in the relay's namespace (10.77.0.2 must be a local address), tandemd at 10.77.0.1:
//! tandem-bench dora --server 10.77.0.1 --relay 10.77.0.2 --clients 50000 --rate 20000 \
//!     --duration 5 --server-pid "$(pidof tandemd)" --json result.json
//! ```
//!
//! In relay mode the UDP socket is bound to RELAY:67 (servers answer relays on port 67), so the bench needs
//! root or `CAP_NET_BIND_SERVICE`, and must not share a network namespace with a server bound to
//! `0.0.0.0:67` on the same link. The table goes to stdout, a progress line to stderr once a
//! second, and `--json` writes the same [`report::Report`] as JSON.
//!
//! - [`packet`]: request builders and the reply parser.
//! - [`dora`]: the sans-IO generator (clients, matching, retransmission, accounting).
//! - [`pace`]: the rate pacer, in virtual time.
//! - [`latency`]: HdrHistogram latencies and percentile summaries.
//! - [`cpu`]: process CPU time from `/proc`.
//! - [`run`]: the UDP event loop around the generator.
//! - [`xdp_run`]: the AF_XDP event loop around the generator (`dora --backend xdp`), and the
//!   generator's own ceiling (`tandem-bench ceiling`).
//! - [`report`]: the result as a table and as JSON.
//! - [`chart`]: the result as an SVG chart (`--svg`, `tandem-bench chart`).
#![forbid(unsafe_code)]

pub mod chart;
pub mod compare;
pub mod cpu;
pub mod dora;
pub mod latency;
pub mod pace;
pub mod packet;
pub mod report;
pub mod run;
pub mod tune;
pub mod xdp_run;
