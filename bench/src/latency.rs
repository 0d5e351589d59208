//! Latency recording (HdrHistogram, 3 significant digits, 1 ns to 100 s) and the percentile
//! summary the report prints.
//!
//! HdrHistogram answers a quantile with the highest value equivalent to its bucket, which can lie
//! a little above the largest value recorded. The summary clamps every percentile into the exact
//! `[min, max]` seen, so `p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max` always holds and `max` is exact.
//!
//! The summary also carries the distribution itself as a CDF ([`Latency::cdf`]): the latency at
//! every percentile, at 99.9, 99.99 and 99.999 %, and at the exact min and max, each with the
//! fraction of samples at or below it (to the histogram's resolution), so a saved report can be
//! charted ([`crate::chart`]) without the histogram.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Smallest value discernible, in ns (so that µs-scale latencies keep 3 significant digits).
const LOW_NS: u64 = 1;
/// Largest value tracked, in ns (larger values are recorded as this).
const HIGH_NS: u64 = 100_000_000_000;

/// The tail quantiles the CDF samples beyond every percentile.
const CDF_TAIL: [f64; 3] = [0.999, 0.9999, 0.99999];

/// A latency histogram in nanoseconds with exact min and max.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // The bounds are constants that satisfy HdrHistogram's requirements (low ≥ 1,
        // high ≥ 2 × low, sigfig ≤ 5), so creation cannot fail.
        let hist = Histogram::new_with_bounds(LOW_NS, HIGH_NS, 3)
            .expect("constant histogram bounds are valid");
        Latency {
            hist,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    /// Record one latency of `ns` nanoseconds.
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(LOW_NS, HIGH_NS));
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.sum += u128::from(ns);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at quantile `q` (0..=1), in ns, clamped into the exact `[min, max]`; 0 when
    /// empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count() == 0 {
            return 0;
        }
        self.hist
            .value_at_quantile(q.clamp(0.0, 1.0))
            .clamp(self.min, self.max)
    }

    /// Percentiles and extremes, in microseconds.
    pub fn summary(&self) -> Summary {
        let us = |ns: u64| ns as f64 / 1000.0;
        let n = self.count();
        Summary {
            count: n,
            min_us: if n == 0 { 0.0 } else { us(self.min) },
            mean_us: if n == 0 {
                0.0
            } else {
                self.sum as f64 / n as f64 / 1000.0
            },
            p50_us: us(self.quantile(0.50)),
            p90_us: us(self.quantile(0.90)),
            p99_us: us(self.quantile(0.99)),
            p999_us: us(self.quantile(0.999)),
            max_us: us(if n == 0 { 0 } else { self.max }),
            cdf: self.cdf(),
        }
    }

    /// The distribution as `[latency_us, fraction]` points: the latencies at quantiles 0, 0.01,
    /// …, 1 and at the tail quantiles 0.999, 0.9999 and 0.99999 (clamped as in
    /// [`Latency::quantile`]), and the exact min and max, each with the fraction of samples at or
    /// below it. One point per histogram bucket (the smallest of those latencies in it), plus the
    /// exact max: latencies increase, fractions never decrease, the first point is at the exact
    /// min and the last is `[max, 1.0]`. Empty when nothing was recorded.
    ///
    /// A fraction counts the whole bucket its latency falls in, so it may include samples up to
    /// 0.1 % above that latency.
    pub fn cdf(&self) -> Vec<[f64; 2]> {
        if self.count() == 0 {
            return Vec::new();
        }
        let mut at: Vec<u64> = (0..=100u32)
            .map(|p| f64::from(p) / 100.0)
            .chain(CDF_TAIL)
            .map(|q| self.quantile(q))
            .chain([self.min, self.max])
            .collect();
        at.sort_unstable();
        at.dedup();
        // Recorded values were clamped into [LOW_NS, HIGH_NS]: buckets are looked up the same way.
        let bucket = |ns: u64| ns.clamp(LOW_NS, HIGH_NS);
        let mut out: Vec<[f64; 2]> = Vec::with_capacity(at.len());
        let mut last: Option<u64> = None;
        for ns in at {
            if ns != self.max && last.is_some_and(|l| self.hist.equivalent(l, bucket(ns))) {
                continue;
            }
            last = Some(bucket(ns));
            let fraction = if ns >= self.max {
                1.0
            } else {
                self.hist.quantile_below(bucket(ns))
            };
            out.push([ns as f64 / 1000.0, fraction]);
        }
        out
    }
}

/// Latency percentiles of one exchange step, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest (exact).
    pub min_us: f64,
    /// Mean (exact).
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest (exact).
    pub max_us: f64,
    /// The distribution: `[latency_us, fraction of samples ≤ latency_us]` points, latency
    /// increasing, fraction never decreasing, ending at `[max_us, 1.0]`; empty without samples.
    /// See [`Latency::cdf`].
    pub cdf: Vec<[f64; 2]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error HdrHistogram allows at 3 significant digits.
    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 0.001 + 0.001
    }

    #[test]
    fn uniform_one_to_ten_thousand_us() {
        let mut l = Latency::new();
        for v in 1..=10_000u64 {
            l.record(v * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_us, 5000.0), "p50 {}", s.p50_us);
        assert!(close(s.p90_us, 9000.0), "p90 {}", s.p90_us);
        assert!(close(s.p99_us, 9900.0), "p99 {}", s.p99_us);
        assert!(close(s.p999_us, 9990.0), "p99.9 {}", s.p999_us);
        assert_eq!(s.max_us, 10_000.0);
        assert_eq!(s.min_us, 1.0);
        assert!(close(s.mean_us, 5000.5));
    }

    #[test]
    fn tail_is_seen_by_high_percentiles_only() {
        // 990 fast (100 µs), 10 slow (50 ms): p50 and p90 are fast, p99.9 and max slow.
        let mut l = Latency::new();
        for _ in 0..990 {
            l.record(100_000);
        }
        for _ in 0..10 {
            l.record(50_000_000);
        }
        let s = l.summary();
        assert!(close(s.p50_us, 100.0), "{s:?}");
        assert!(close(s.p90_us, 100.0), "{s:?}");
        assert!(close(s.p99_us, 100.0), "{s:?}");
        assert!(close(s.p999_us, 50_000.0), "{s:?}");
        assert_eq!(s.max_us, 50_000.0);
    }

    #[test]
    fn percentiles_never_exceed_the_exact_max() {
        // A value in the middle of a bucket: the bucket's upper end is above it.
        let mut l = Latency::new();
        for _ in 0..100 {
            l.record(1_234_567);
        }
        let s = l.summary();
        assert_eq!(s.max_us, 1234.567);
        assert_eq!(s.min_us, 1234.567);
        assert_eq!(s.p50_us, 1234.567);
        assert_eq!(s.p999_us, 1234.567);
    }

    #[test]
    fn ordered_for_any_data() {
        let mut l = Latency::new();
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            // xorshift: spread over 1 µs .. ~1 s
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            l.record(1000 + x % 1_000_000_000);
        }
        let s = l.summary();
        assert!(s.min_us <= s.p50_us);
        assert!(s.p50_us <= s.p90_us);
        assert!(s.p90_us <= s.p99_us);
        assert!(s.p99_us <= s.p999_us);
        assert!(s.p999_us <= s.max_us);
        check_cdf_shape(&s);
    }

    /// Latency strictly increasing, fraction never decreasing, from the exact min to
    /// `[max, 1.0]`.
    fn check_cdf_shape(s: &Summary) {
        let c = &s.cdf;
        assert!(!c.is_empty());
        assert_eq!(c[0][0], s.min_us);
        assert_eq!(*c.last().unwrap(), [s.max_us, 1.0]);
        for w in c.windows(2) {
            assert!(w[1][0] > w[0][0], "{w:?}");
            assert!(w[1][1] >= w[0][1], "{w:?}");
        }
        assert!(c.iter().all(|p| p[1] > 0.0 && p[1] <= 1.0), "{c:?}");
    }

    #[test]
    fn cdf_follows_the_data_at_every_percentile() {
        let mut l = Latency::new();
        for v in 1..=10_000u64 {
            l.record(v * 1000);
        }
        let s = l.summary();
        check_cdf_shape(&s);
        assert_eq!(s.cdf, l.cdf());
        // Values are 1..=10000 µs, so the exact fraction at or below x is floor(x) / 10000; a
        // fraction counts x's whole bucket, which ends less than 0.1 % above x.
        let le = |x: f64| x.floor().min(10_000.0) / 10_000.0;
        for &[x, f] in &s.cdf {
            assert!(f >= le(x) && f <= le(x * 1.001), "[{x}, {f}]");
        }
        // Every percentile has its point.
        for p in 1..100 {
            let q = f64::from(p) / 100.0;
            assert!(
                s.cdf.iter().any(|&[_, f]| (f - q).abs() <= 0.001),
                "no point near {q}: {:?}",
                s.cdf
            );
        }
        assert!((101..=106).contains(&s.cdf.len()), "{}", s.cdf.len());
    }

    #[test]
    fn cdf_resolves_the_far_tail() {
        // 99 990 at 100 µs, 9 at 10 ms, 1 at 1 s: the percentiles all sit at 100 µs; the tail
        // quantiles find the rest.
        let mut l = Latency::new();
        for _ in 0..99_990 {
            l.record(100_000);
        }
        for _ in 0..9 {
            l.record(10_000_000);
        }
        l.record(1_000_000_000);
        let c = l.summary().cdf;
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0], [100.0, 0.9999]);
        assert!((c[1][0] - 10_000.0).abs() <= 10.0, "{c:?}");
        assert_eq!(c[1][1], 0.99999);
        assert_eq!(c[2], [1_000_000.0, 1.0]);
    }

    #[test]
    fn cdf_of_one_value_is_one_point() {
        let mut l = Latency::new();
        for _ in 0..10 {
            l.record(1_234_567);
        }
        assert_eq!(l.cdf(), [[1234.567, 1.0]]);
    }

    #[test]
    fn out_of_range_values_are_kept() {
        let mut l = Latency::new();
        l.record(0);
        l.record(200_000_000_000);
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.min_us, 0.0);
        assert_eq!(s.max_us, 200_000_000.0);
        assert!(s.p50_us <= s.max_us);
        assert_eq!(s.cdf.first(), Some(&[0.0, 0.5]));
        check_cdf_shape(&s);
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = Latency::new().summary();
        assert_eq!(s, Summary::default());
    }
}
