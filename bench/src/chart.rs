//! A run as a chart: one SVG with two panels, leases per second over the run and the latency
//! CDF of every exchange step measured, drawn from a [`Report`] or from its saved JSON; several
//! runs go into one chart for comparison.
//!
//! The SVG is written by hand (a small, fixed XML document) rather than with a plotting crate:
//! no dependency to fetch or build, and the output is deterministic and easy to check. Every text
//! that reaches it (labels from the command line, the server and mix from a JSON file) is escaped
//! ([`escape`]).
//!
//! Structure, which tests and later tools (`compare`) may rely on:
//! - `<g id="leases-per-second">`: one `<polyline class="series">` per run with one point per
//!   second of its timeline (second `i`, the leases completed from `i` to `i + 1` s after the
//!   first request, drawn at `i + 0.5` s), and a dashed `<line class="target">` at the target
//!   rate of each run that had one.
//! - `<g id="latency-cdf">`: one `<polyline class="series">` per run and step measured; x is the
//!   latency on a log scale, y the fraction of samples at or below it. The CDF is drawn as steps,
//!   two polyline points per CDF point: the fraction holds at the previous point's level up to
//!   the point's latency, then rises to the point's fraction (the first rise is from 0). Between
//!   two CDF points the true curve can only be higher, by at most the 1 % between percentiles,
//!   whereas a straight line would invent samples inside gaps of the distribution.
//! - Legends draw their samples with `<line>`, so the polylines are the data series and nothing
//!   else. Every series carries its legend text in `data-series`.
//!
//! With one run, the steps of the CDF panel differ by colour; with several, each run keeps one
//! colour in both panels and the steps differ by dash pattern.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::report::Report;

/// Exchange steps in the order the chart lists them, by JSON key, with their display names.
/// Steps a report names otherwise follow in key order, under their key.
const STEPS: [(&str, &str); 4] = [
    ("discover_offer", "DISCOVER→OFFER"),
    ("request_ack", "REQUEST→ACK"),
    ("dora", "DORA (DISCOVER→ACK)"),
    ("renew", "RENEW→ACK"),
];

/// Width of the chart, px.
const WIDTH: f64 = 960.0;
/// Left edge of the plot areas (room for tick labels and the y axis label), px.
const PLOT_LEFT: f64 = 84.0;
/// Right edge of the plot areas, px.
const PLOT_RIGHT: f64 = 640.0;
/// Left edge of the legends, px.
const LEGEND_LEFT: f64 = 660.0;
/// Smallest plot height, px (taller when the legend needs it).
const PLOT_MIN_HEIGHT: f64 = 260.0;
/// Height of one legend row, px.
const LEGEND_ROW: f64 = 18.0;
/// Longest legend text, characters (longer ones are cut with an ellipsis).
const LEGEND_CHARS: usize = 36;
/// Timelines up to this many seconds also get a dot per point.
const MARKER_MAX_POINTS: usize = 60;
/// Series colours.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];
/// Dash patterns of the steps when several runs share the CDF panel (the first is solid).
const DASHES: [&str; 4] = ["", "8 4", "2 3", "10 3 2 3"];
/// Dash pattern of a target-rate line.
const TARGET_DASH: &str = "6 4";
/// Decades of the latency axis, as powers of ten of a µs: 1 ns to 10⁶ s.
const LOG_MIN_EXP: i32 = -3;
/// See [`LOG_MIN_EXP`].
const LOG_MAX_EXP: i32 = 12;

/// Why a report cannot be charted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChartError {
    /// The text is not JSON, or lacks a field the chart needs, or has one of the wrong type.
    #[error("not a tandem-bench report: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is a report of some other tool.
    #[error("not a tandem-bench report (\"tool\" is {0:?})")]
    OtherTool(String),
    /// A latency CDF point is out of range or out of order.
    #[error("latency_us.{step}.cdf[{index}] = [{latency_us}, {fraction}]: {problem}")]
    BadCdf {
        /// The step's JSON key.
        step: String,
        /// Index of the point.
        index: usize,
        /// Its latency, µs.
        latency_us: f64,
        /// Its fraction.
        fraction: f64,
        /// What is wrong.
        problem: &'static str,
    },
}

/// One run as the chart draws it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Names the run in legends and subtitles when several runs are drawn.
    pub label: String,
    /// The bench subcommand that measured it (`"dora"`).
    pub command: String,
    /// Server address and port.
    pub server: String,
    /// Exchange mix.
    pub mix: String,
    /// Target exchanges per second (`None`: flat out).
    pub rate: Option<u64>,
    /// Simulated clients.
    pub clients: u32,
    /// Leases completed in each second of the run.
    pub timeline: Vec<u64>,
    /// Latency CDFs of the steps measured, in chart order.
    pub steps: Vec<Step>,
}

/// The latency CDF of one exchange step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Its key in the report's `latency_us`.
    pub key: String,
    /// Its display name.
    pub name: String,
    /// Samples.
    pub count: u64,
    /// `[latency_us, fraction]` points (see [`crate::latency::Latency::cdf`]), checked: latency
    /// finite, ≥ 0 and never decreasing, fraction within 0..=1 and never decreasing.
    pub cdf: Vec<[f64; 2]>,
}

/// The field that tells a tandem-bench report from other JSON, read first.
#[derive(Deserialize)]
struct ToolView {
    tool: String,
}

/// The part of a JSON report the chart reads (other fields are ignored).
#[derive(Deserialize)]
struct ReportView {
    command: String,
    params: ParamsView,
    leases_timeline: Vec<u64>,
    latency_us: BTreeMap<String, StepView>,
}

#[derive(Deserialize)]
struct ParamsView {
    server: String,
    mix: String,
    rate: Option<u64>,
    clients: u32,
}

#[derive(Deserialize)]
struct StepView {
    count: u64,
    #[serde(default)]
    cdf: Vec<[f64; 2]>,
}

impl Run {
    /// The run of a saved JSON report (as `tandem-bench dora --json` writes it), labelled
    /// `label`. Steps without samples or without a CDF are left out.
    pub fn from_json(text: &str, label: &str) -> Result<Run, ChartError> {
        let tool = serde_json::from_str::<ToolView>(text)?.tool;
        if tool != "tandem-bench" {
            return Err(ChartError::OtherTool(tool));
        }
        Run::from_view(serde_json::from_str(text)?, label)
    }

    /// The run of `report`, labelled `label`. It goes through the report's JSON text, so a
    /// report and its saved JSON draw the same chart.
    pub fn from_report(report: &Report, label: &str) -> Result<Run, ChartError> {
        Run::from_json(&serde_json::to_string(report)?, label)
    }

    fn from_view(v: ReportView, label: &str) -> Result<Run, ChartError> {
        let mut steps = Vec::new();
        for (key, s) in v.latency_us {
            check_cdf(&key, &s.cdf)?;
            if s.count == 0 || s.cdf.is_empty() {
                continue;
            }
            let name = STEPS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or_else(|| key.clone(), |(_, n)| (*n).to_string());
            steps.push(Step {
                key,
                name,
                count: s.count,
                cdf: s.cdf,
            });
        }
        // Stable: unknown steps (rank STEPS.len()) stay in key order after the known ones.
        steps.sort_by_key(|s| step_rank(&s.key));
        Ok(Run {
            label: label.to_string(),
            command: v.command,
            server: v.params.server,
            mix: v.params.mix,
            rate: v.params.rate,
            clients: v.params.clients,
            timeline: v.leases_timeline,
            steps,
        })
    }

    /// Server, mix, rate and clients, as the title shows them.
    pub fn describe(&self) -> String {
        let rate = self
            .rate
            .map_or_else(|| "flat out".to_string(), |r| format!("rate {r}/s"));
        format!(
            "server {}, mix {}, {}, {} clients",
            self.server, self.mix, rate, self.clients
        )
    }
}

/// A run's label from the path of its file: the file name without its extension.
pub fn label_for(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

fn check_cdf(step: &str, cdf: &[[f64; 2]]) -> Result<(), ChartError> {
    let mut prev = [0.0, 0.0];
    for (index, &[x, f]) in cdf.iter().enumerate() {
        let problem = if !(x.is_finite() && x >= 0.0) {
            Some("the latency is not a finite number ≥ 0")
        } else if !(0.0..=1.0).contains(&f) {
            Some("the fraction is not within 0..=1")
        } else if x < prev[0] {
            Some("the latency is below the previous point's")
        } else if f < prev[1] {
            Some("the fraction is below the previous point's")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ChartError::BadCdf {
                step: step.to_string(),
                index,
                latency_us: x,
                fraction: f,
                problem,
            });
        }
        prev = [x, f];
    }
    Ok(())
}

/// Position of a step in chart order (unknown steps after the known ones).
fn step_rank(key: &str) -> usize {
    STEPS
        .iter()
        .position(|(k, _)| *k == key)
        .unwrap_or(STEPS.len())
}

/// `text` made safe for XML character data and attribute values: the five markup characters
/// become entity references, and characters XML 1.0 does not allow (control characters other
/// than tab, line feed and carriage return; U+FFFE, U+FFFF) become U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to at most `max` characters, the last one an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A plot area, px.
#[derive(Copy, Clone)]
struct Area {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Area {
    /// x of a position `t` (0 = left edge, 1 = right edge).
    fn x(&self, t: f64) -> f64 {
        self.left + t.clamp(0.0, 1.0) * (self.right - self.left)
    }

    /// y of a position `t` (0 = bottom edge, 1 = top edge).
    fn y(&self, t: f64) -> f64 {
        self.bottom - t.clamp(0.0, 1.0) * (self.bottom - self.top)
    }
}

/// A linear axis from 0 to `top` with ticks every `step`.
#[derive(Copy, Clone, Debug, PartialEq)]
struct Linear {
    top: f64,
    step: f64,
}

impl Linear {
    /// An axis from 0 that holds `max` with about `ticks` steps of 1, 2 or 5 × 10ⁿ, each at
    /// least `min_step`.
    fn new(max: f64, ticks: f64, min_step: f64) -> Linear {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            min_step
        };
        let raw = max / ticks;
        let mag = 10f64.powf(raw.log10().floor());
        let norm = raw / mag;
        let nice = if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
        let step = (nice * mag).max(min_step);
        Linear {
            top: (max / step).ceil().max(1.0) * step,
            step,
        }
    }

    fn pos(&self, v: f64) -> f64 {
        v / self.top
    }

    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let n = (self.top / self.step).round() as u32;
        (0..=n).map(move |i| f64::from(i) * self.step)
    }

    fn label(&self, v: f64) -> String {
        fmt_tick(v, self.step)
    }
}

/// A tick value with as many decimals as the step needs; thousands as `k`.
fn fmt_tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if step >= 1000.0 {
        return format!("{}k", fmt_tick(v / 1000.0, step / 1000.0));
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    };
    format!("{v:.decimals$}")
}

/// A log axis of latencies in µs, from 10^`lo` to 10^`hi`.
#[derive(Copy, Clone, Debug, PartialEq)]
struct Log {
    lo: i32,
    hi: i32,
}

impl Log {
    /// The whole decades holding the positive latencies of `points` (1 µs to 10 µs without any).
    fn new<'a>(points: impl Iterator<Item = &'a [f64; 2]>) -> Log {
        let (mut min, mut max) = (f64::INFINITY, 0.0f64);
        for &[x, _] in points {
            if x > 0.0 {
                min = min.min(x);
                max = max.max(x);
            }
        }
        if max == 0.0 {
            return Log { lo: 0, hi: 1 };
        }
        let lo = (min.log10().floor() as i32).clamp(LOG_MIN_EXP, LOG_MAX_EXP - 1);
        let hi = (max.log10().ceil() as i32).clamp(lo + 1, LOG_MAX_EXP);
        Log { lo, hi }
    }

    /// Position of a latency; 0 and anything below the axis sit on its left edge.
    fn pos(&self, us: f64) -> f64 {
        if us <= 0.0 {
            return 0.0;
        }
        (us.log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo)
    }
}

/// 10^`exp` µs as a tick label: `1 ns` … `100 ns`, `1 µs` … `100 µs`, `1 ms` … `100 ms`, then
/// seconds.
fn fmt_decade(exp: i32) -> String {
    let (base, unit) = match exp {
        ..=-1 => (-3, "ns"),
        0..=2 => (0, "µs"),
        3..=5 => (3, "ms"),
        _ => (6, "s"),
    };
    format!("{} {unit}", 10u64.pow((exp - base).clamp(0, 18) as u32))
}

/// One legend row.
struct Entry {
    text: String,
    colour: &'static str,
    dash: &'static str,
}

/// The SVG text under construction.
#[derive(Default)]
struct Doc {
    s: String,
}

impl Doc {
    fn raw(&mut self, text: &str) {
        self.s.push_str(text);
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, class: &str, content: &str) {
        let _ = writeln!(
            self.s,
            r#"<text class="{class}" x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
            escape(content)
        );
    }

    fn line(&mut self, class: &str, (x1, y1): (f64, f64), (x2, y2): (f64, f64), style: &str) {
        let _ = writeln!(
            self.s,
            r#"<line class="{class}" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" {style}/>"#
        );
    }

    fn polyline(&mut self, label: &str, colour: &str, dash: &str, points: &[(f64, f64)]) {
        let mut pts = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            if i > 0 {
                pts.push(' ');
            }
            let _ = write!(pts, "{x:.1},{y:.1}");
        }
        let _ = writeln!(
            self.s,
            r#"<polyline class="series" data-series="{}" fill="none" stroke="{colour}" stroke-width="1.6" stroke-linejoin="round"{} points="{pts}"/>"#,
            escape(label),
            dash_attr(dash)
        );
    }

    /// The plot frame, the panel title, and the axis labels.
    fn frame(&mut self, a: Area, title: &str, x_label: &str, y_label: &str) {
        self.text(a.left, a.top - 12.0, "start", "panel-title", title);
        let _ = writeln!(
            self.s,
            r##"<rect class="frame" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#444"/>"##,
            a.left,
            a.top,
            a.right - a.left,
            a.bottom - a.top
        );
        self.text(
            (a.left + a.right) / 2.0,
            a.bottom + 40.0,
            "middle",
            "axis-label",
            x_label,
        );
        let (x, y) = (a.left - 58.0, (a.top + a.bottom) / 2.0);
        let _ = writeln!(
            self.s,
            r#"<text class="axis-label" x="{x:.1}" y="{y:.1}" text-anchor="middle" transform="rotate(-90 {x:.1} {y:.1})">{}</text>"#,
            escape(y_label)
        );
    }

    /// A horizontal grid line and its label at position `t` of the y axis.
    fn y_tick(&mut self, a: Area, t: f64, label: &str) {
        let y = a.y(t);
        self.line(
            "grid",
            (a.left, y),
            (a.right, y),
            r##"stroke="#ddd" stroke-width="1""##,
        );
        self.text(a.left - 6.0, y + 4.0, "end", "tick", label);
    }

    /// A vertical grid line at position `t` of the x axis, labelled unless `label` is empty.
    fn x_tick(&mut self, a: Area, t: f64, label: &str) {
        let x = a.x(t);
        let colour = if label.is_empty() { "#eee" } else { "#ddd" };
        self.line(
            "grid",
            (x, a.top),
            (x, a.bottom),
            &format!(r#"stroke="{colour}" stroke-width="1""#),
        );
        if !label.is_empty() {
            self.text(x, a.bottom + 16.0, "middle", "tick", label);
        }
    }

    fn legend(&mut self, a: Area, entries: &[Entry]) {
        self.raw("<g class=\"legend\">\n");
        for (i, e) in entries.iter().enumerate() {
            let y = a.top + 10.0 + LEGEND_ROW * i as f64;
            self.line(
                "legend-sample",
                (LEGEND_LEFT, y),
                (LEGEND_LEFT + 28.0, y),
                &format!(
                    r#"stroke="{}" stroke-width="2"{}"#,
                    e.colour,
                    dash_attr(e.dash)
                ),
            );
            self.text(
                LEGEND_LEFT + 34.0,
                y + 4.0,
                "start",
                "legend-text",
                &shorten(&e.text, LEGEND_CHARS),
            );
        }
        self.raw("</g>\n");
    }
}

fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

/// Height of a plot area that also has room for `rows` legend rows.
fn plot_height(rows: usize) -> f64 {
    PLOT_MIN_HEIGHT.max(10.0 + LEGEND_ROW * rows as f64)
}

/// Space above a plot area (panel title), px.
const PANEL_HEAD: f64 = 34.0;
/// Space below a plot area (tick labels, axis label), px.
const PANEL_FOOT: f64 = 56.0;

/// The chart of `runs` as an SVG document. With one run the title names its server, mix, rate
/// and clients; with several, a subtitle per run does, under the run's label and colour. See
/// the module documentation for the structure.
pub fn svg(runs: &[Run]) -> String {
    let several = runs.len() > 1;
    let title = match runs {
        [] => "tandem-bench: no runs".to_string(),
        [r] => format!("tandem-bench {}: {}", r.command, r.describe()),
        _ => format!("tandem-bench: {} runs compared", runs.len()),
    };
    let mut d = Doc::default();
    let mut y = 28.0;
    d.text(PLOT_LEFT, y, "start", "title", &title);
    if several {
        for (i, r) in runs.iter().enumerate() {
            y += 18.0;
            let _ = writeln!(
                d.s,
                r#"<text class="subtitle" x="{PLOT_LEFT:.1}" y="{y:.1}" fill="{}">{}</text>"#,
                PALETTE[i % PALETTE.len()],
                escape(&format!("{}: {}", r.label, r.describe()))
            );
        }
    }
    let y = leases_panel(&mut d, runs, y + 16.0);
    let y = cdf_panel(&mut d, runs, y + 8.0);
    let height = y + 8.0;
    let mut out = String::with_capacity(d.s.len() + 600);
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(&title));
    out.push_str(
        "<style>.title{font-size:16px;font-weight:bold}.subtitle{font-size:13px}\
         .panel-title{font-size:14px;font-weight:bold}.tick{fill:#333}</style>\n",
    );
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    out.push('\n');
    out.push_str(&d.s);
    out.push_str("</svg>\n");
    out
}

/// Panel 1, from `top` (px); returns its bottom.
fn leases_panel(d: &mut Doc, runs: &[Run], top: f64) -> f64 {
    let several = runs.len() > 1;
    let mut legend = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        legend.push(Entry {
            text: if several {
                r.label.clone()
            } else {
                "leases/s".to_string()
            },
            colour,
            dash: "",
        });
        if let Some(rate) = r.rate {
            legend.push(Entry {
                text: if several {
                    format!("{}: target {rate}/s", r.label)
                } else {
                    format!("target {rate}/s")
                },
                colour,
                dash: TARGET_DASH,
            });
        }
    }
    let a = Area {
        left: PLOT_LEFT,
        right: PLOT_RIGHT,
        top: top + PANEL_HEAD,
        bottom: top + PANEL_HEAD + plot_height(legend.len()),
    };
    let seconds = runs.iter().map(|r| r.timeline.len()).max().unwrap_or(0);
    let x_axis = Linear::new(seconds as f64, 8.0, 1.0);
    let peak = runs
        .iter()
        .flat_map(|r| r.timeline.iter().copied().chain(r.rate))
        .max()
        .unwrap_or(0);
    let y_axis = Linear::new(peak as f64 * 1.05, 5.0, 1.0);

    d.raw("<g id=\"leases-per-second\" class=\"panel\">\n");
    for v in x_axis.ticks() {
        d.x_tick(a, x_axis.pos(v), &x_axis.label(v));
    }
    for v in y_axis.ticks() {
        d.y_tick(a, y_axis.pos(v), &y_axis.label(v));
    }
    d.frame(
        a,
        "Leases per second",
        "time since the first request (s); each point is the leases completed in that second",
        "leases/s",
    );
    for (i, r) in runs.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let label = if several {
            r.label.as_str()
        } else {
            "leases/s"
        };
        let points: Vec<(f64, f64)> = r
            .timeline
            .iter()
            .enumerate()
            .map(|(s, &n)| (a.x(x_axis.pos(s as f64 + 0.5)), a.y(y_axis.pos(n as f64))))
            .collect();
        d.polyline(label, colour, "", &points);
        if points.len() <= MARKER_MAX_POINTS {
            d.raw("<g class=\"markers\">\n");
            for (x, y) in &points {
                let _ = writeln!(
                    d.s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{colour}"/>"#
                );
            }
            d.raw("</g>\n");
        }
        if let Some(rate) = r.rate {
            let y = a.y(y_axis.pos(rate as f64));
            d.line(
                "target",
                (a.left, y),
                (a.right, y),
                &format!(
                    r#"data-series="{}" stroke="{colour}" stroke-width="1.2"{}"#,
                    escape(&format!("{label}: target {rate}/s")),
                    dash_attr(TARGET_DASH)
                ),
            );
        }
    }
    d.legend(a, &legend);
    d.raw("</g>\n");
    a.bottom + PANEL_FOOT
}

/// Panel 2, from `top` (px); returns its bottom.
fn cdf_panel(d: &mut Doc, runs: &[Run], top: f64) -> f64 {
    let several = runs.len() > 1;
    // (run index, step) for every series, with its legend entry.
    let mut series = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        for s in &r.steps {
            let rank = step_rank(&s.key);
            let entry = if several {
                Entry {
                    text: format!("{}: {}", r.label, s.name),
                    colour: PALETTE[i % PALETTE.len()],
                    dash: DASHES[rank % DASHES.len()],
                }
            } else {
                Entry {
                    text: s.name.clone(),
                    colour: PALETTE[rank % PALETTE.len()],
                    dash: "",
                }
            };
            series.push((s, entry));
        }
    }
    let a = Area {
        left: PLOT_LEFT,
        right: PLOT_RIGHT,
        top: top + PANEL_HEAD,
        bottom: top + PANEL_HEAD + plot_height(series.len()),
    };
    let x_axis = Log::new(series.iter().flat_map(|(s, _)| s.cdf.iter()));
    let y_axis = Linear {
        top: 1.0,
        step: 0.1,
    };

    d.raw("<g id=\"latency-cdf\" class=\"panel\">\n");
    for exp in x_axis.lo..=x_axis.hi {
        let decade = 10f64.powi(exp);
        d.x_tick(a, x_axis.pos(decade), &fmt_decade(exp));
        if exp < x_axis.hi {
            for m in 2..=9 {
                d.x_tick(a, x_axis.pos(decade * f64::from(m)), "");
            }
        }
    }
    for v in y_axis.ticks() {
        d.y_tick(a, y_axis.pos(v), &y_axis.label(v));
    }
    d.frame(
        a,
        "Latency CDF per exchange step",
        "latency (log scale), from the first transmission of a request to its reply",
        "fraction of exchanges at or below",
    );
    for (s, e) in &series {
        let mut points = Vec::with_capacity(2 * s.cdf.len());
        let mut level = 0.0;
        for &[x, f] in &s.cdf {
            let px = a.x(x_axis.pos(x));
            points.push((px, a.y(y_axis.pos(level))));
            points.push((px, a.y(y_axis.pos(f))));
            level = f;
        }
        d.polyline(&e.text, e.colour, e.dash, &points);
    }
    let entries: Vec<Entry> = series.into_iter().map(|(_, e)| e).collect();
    d.legend(a, &entries);
    d.raw("</g>\n");
    a.bottom + PANEL_FOOT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dora::{Counters, LatencySummaries};
    use crate::latency::Latency;
    use crate::report::Params;

    // ---- A small XML reader: well-formedness plus a tree to query. ----

    #[derive(Debug)]
    struct Node {
        name: String,
        attrs: Vec<(String, String)>,
        children: Vec<Node>,
        text: String,
    }

    impl Node {
        fn attr(&self, k: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        }

        fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a Node>) {
            for c in &self.children {
                if c.name == name {
                    out.push(c);
                }
                c.all(name, out);
            }
        }

        fn descendants(&self, name: &str) -> Vec<&Node> {
            let mut v = Vec::new();
            self.all(name, &mut v);
            v
        }

        fn by_id(&self, id: &str) -> Option<&Node> {
            if self.attr("id") == Some(id) {
                return Some(self);
            }
            self.children.iter().find_map(|c| c.by_id(id))
        }

        fn with_class(&self, name: &str, class: &str) -> Vec<&Node> {
            self.descendants(name)
                .into_iter()
                .filter(|n| n.attr("class") == Some(class))
                .collect()
        }

        fn texts(&self) -> Vec<String> {
            self.descendants("text")
                .iter()
                .map(|n| n.text.clone())
                .collect()
        }
    }

    fn xml_char(c: char) -> bool {
        matches!(c, '\t' | '\n' | '\r' | ' '..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
    }

    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let r = &rest[i + 1..];
            let e = r
                .find(';')
                .ok_or_else(|| format!("unterminated entity in {s:?}"))?;
            let c = match &r[..e] {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                "apos" => '\'',
                n => {
                    let code = if let Some(h) = n.strip_prefix("#x") {
                        u32::from_str_radix(h, 16).ok()
                    } else if let Some(d) = n.strip_prefix('#') {
                        d.parse().ok()
                    } else {
                        None
                    };
                    code.and_then(char::from_u32)
                        .filter(|c| xml_char(*c))
                        .ok_or_else(|| format!("bad entity &{n}; in {s:?}"))?
                }
            };
            out.push(c);
            rest = &r[e + 1..];
        }
        out.push_str(rest);
        match out.chars().find(|c| !xml_char(*c)) {
            Some(c) => Err(format!("character {c:?} not allowed in XML")),
            None => Ok(out),
        }
    }

    fn take_name(s: &str) -> Result<(String, &str), String> {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || "-_:.".contains(c)))
            .unwrap_or(s.len());
        if end == 0 {
            return Err(format!("name expected at {:?}", &s[..s.len().min(20)]));
        }
        Ok((s[..end].to_string(), &s[end..]))
    }

    fn attach(node: Node, stack: &mut [Node], root: &mut Option<Node>) -> Result<(), String> {
        if let Some(p) = stack.last_mut() {
            p.children.push(node);
        } else if root.is_some() {
            return Err(format!("second root element <{}>", node.name));
        } else {
            *root = Some(node);
        }
        Ok(())
    }

    /// Parse `s`, failing on anything that is not well-formed XML.
    fn parse_xml(s: &str) -> Result<Node, String> {
        let mut rest = s;
        if let Some(r) = rest.strip_prefix("<?xml") {
            let e = r.find("?>").ok_or("unterminated XML declaration")?;
            rest = &r[e + 2..];
        }
        let mut stack: Vec<Node> = Vec::new();
        let mut root = None;
        loop {
            let i = rest.find('<').unwrap_or(rest.len());
            if rest[..i].contains("]]>") {
                return Err("]]> in text".into());
            }
            let text = unescape(&rest[..i])?;
            match stack.last_mut() {
                Some(n) => n.text.push_str(&text),
                None if text.trim().is_empty() => {}
                None => return Err(format!("text outside the root element: {text:?}")),
            }
            rest = &rest[i..];
            if rest.is_empty() {
                break;
            }
            if let Some(r) = rest.strip_prefix("<!--") {
                let e = r.find("-->").ok_or("unterminated comment")?;
                rest = &r[e + 3..];
            } else if let Some(r) = rest.strip_prefix("</") {
                let (name, r) = take_name(r)?;
                let r = r.trim_start().strip_prefix('>').ok_or("> expected")?;
                let node = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if node.name != name {
                    return Err(format!("</{name}> closes <{}>", node.name));
                }
                attach(node, &mut stack, &mut root)?;
                rest = r;
            } else {
                let (name, mut r) = take_name(&rest[1..])?;
                let mut node = Node {
                    name,
                    attrs: Vec::new(),
                    children: Vec::new(),
                    text: String::new(),
                };
                loop {
                    let spaced = r.starts_with(char::is_whitespace);
                    r = r.trim_start();
                    if let Some(x) = r.strip_prefix("/>") {
                        attach(node, &mut stack, &mut root)?;
                        rest = x;
                        break;
                    }
                    if let Some(x) = r.strip_prefix('>') {
                        stack.push(node);
                        rest = x;
                        break;
                    }
                    if !spaced {
                        return Err(format!("no space before an attribute of <{}>", node.name));
                    }
                    let (key, x) = take_name(r)?;
                    let x = x.trim_start().strip_prefix('=').ok_or("= expected")?;
                    let x = x.trim_start();
                    let q = x.chars().next().filter(|q| *q == '"' || *q == '\'');
                    let q = q.ok_or(format!("quote expected for {key}"))?;
                    let x = &x[1..];
                    let e = x.find(q).ok_or("unterminated attribute value")?;
                    if x[..e].contains('<') {
                        return Err(format!("< in the value of {key}"));
                    }
                    if node.attr(&key).is_some() {
                        return Err(format!("{key} twice on <{}>", node.name));
                    }
                    node.attrs.push((key, unescape(&x[..e])?));
                    r = &x[e + 1..];
                }
            }
        }
        if let Some(n) = stack.last() {
            return Err(format!("<{}> is never closed", n.name));
        }
        root.ok_or_else(|| "no root element".into())
    }

    fn points(n: &Node) -> Vec<(f64, f64)> {
        let p = n.attr("points").expect("a polyline has points");
        p.split_whitespace()
            .map(|xy| {
                let (x, y) = xy.split_once(',').expect("x,y");
                (x.parse().expect("x"), y.parse().expect("y"))
            })
            .collect()
    }

    #[test]
    fn the_xml_reader_rejects_what_is_not_well_formed() {
        assert!(parse_xml("<a><b/></a>").is_ok());
        assert!(parse_xml("<a><b></a>").is_err());
        assert!(parse_xml("<a x=\"1\" x=\"2\"/>").is_err());
        assert!(parse_xml("<a>x < y</a>").is_err());
        assert!(parse_xml("<a>x & y</a>").is_err());
        assert!(parse_xml("<a x=\"<\"/>").is_err());
        assert!(parse_xml("<a/><b/>").is_err());
        assert!(parse_xml("<a>\u{1}</a>").is_err());
        assert_eq!(parse_xml("<a>&lt;&amp;&#65;</a>").unwrap().text, "<&A");
    }

    // ---- Samples. ----

    fn latency(values_us: impl IntoIterator<Item = u64>) -> Latency {
        let mut l = Latency::new();
        for v in values_us {
            l.record(v * 1000);
        }
        l
    }

    fn step(key: &str, lat: &Latency) -> Step {
        Step {
            key: key.to_string(),
            name: STEPS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(key.to_string(), |(_, n)| n.to_string()),
            count: lat.count(),
            cdf: lat.cdf(),
        }
    }

    fn run(label: &str, timeline: Vec<u64>, rate: Option<u64>) -> Run {
        Run {
            label: label.to_string(),
            command: "dora".to_string(),
            server: "10.77.0.1:67".to_string(),
            mix: "dora".to_string(),
            rate,
            clients: 5000,
            timeline,
            steps: vec![
                step("discover_offer", &latency(100..=2_000)),
                step("request_ack", &latency((5..=500).map(|v| v * 40))),
            ],
        }
    }

    /// A report with two steps measured (DISCOVER→OFFER, REQUEST→ACK), the others empty.
    fn report() -> Report {
        let counts = Counters {
            started: 3000,
            completed: 3000,
            leases: 3000,
            ..Counters::default()
        };
        Report {
            tool: "tandem-bench",
            version: "0.1.0",
            command: "dora",
            params: Params {
                server: "10.77.0.1:67".into(),
                path: "relay",
                relay: "10.77.0.2:67".into(),
                clients: 3000,
                rate: Some(1000),
                window: 100,
                duration_s: 3.0,
                max_exchanges: None,
                mix: "dora".into(),
                timeout_ms: 1000,
                retries: 2,
                client_id: false,
                seed: 0,
            },
            elapsed_s: 3.01,
            sending_s: 3.0,
            offered_per_s: 1000.0,
            leases_per_s: 1000.0,
            loss_pct: 0.0,
            counts,
            malformed_by_reason: BTreeMap::new(),
            missed_slots: 0,
            other_source: 0,
            recv_errors: 0,
            latency_us: LatencySummaries {
                discover_offer: latency((0..3000).map(|i| 50 + i % 700)).summary(),
                request_ack: latency((0..3000).map(|i| 80 + (i * 7) % 5000)).summary(),
                ..LatencySummaries::default()
            },
            server_cpu: None,
            generator_cpu_pct: 5.0,
            host_busy_pct: None,
            host_cpus: 2,
            leases_timeline: vec![998, 1000, 1002],
        }
    }

    // ---- The chart. ----

    #[test]
    fn the_svg_is_well_formed_with_two_panels_and_a_title() {
        let svg = svg(&[run("a", vec![900, 1000, 1010, 990], Some(1000))]);
        let root = parse_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(root.name, "svg");
        assert_eq!(root.attr("xmlns"), Some("http://www.w3.org/2000/svg"));
        let panels: Vec<_> = root.with_class("g", "panel");
        let ids: Vec<_> = panels.iter().filter_map(|p| p.attr("id")).collect();
        assert_eq!(ids, ["leases-per-second", "latency-cdf"]);
        let title = &root.descendants("title")[0].text;
        assert_eq!(
            title,
            "tandem-bench dora: server 10.77.0.1:67, mix dora, rate 1000/s, 5000 clients"
        );
        for p in panels {
            assert_eq!(p.with_class("rect", "frame").len(), 1);
            assert_eq!(p.with_class("text", "axis-label").len(), 2);
            assert!(!p.with_class("g", "legend").is_empty());
        }
        let texts = root.texts();
        for t in [
            "leases/s",
            "target 1000/s",
            "DISCOVER→OFFER",
            "REQUEST→ACK",
            "1 ms",
        ] {
            assert!(texts.iter().any(|x| x == t), "{t} missing: {texts:?}");
        }
        assert!(!texts.iter().any(|x| x.contains("RENEW")), "{texts:?}");
    }

    #[test]
    fn one_polyline_per_run_with_a_point_per_second() {
        let runs = [
            run("fast", vec![100, 2000, 2100, 2050, 300], Some(2000)),
            run("flat", vec![500, 2600, 2700, 2650, 2700, 2600, 40], None),
        ];
        let root = parse_xml(&svg(&runs)).unwrap();
        let panel = root.by_id("leases-per-second").unwrap();
        let lines = panel.with_class("polyline", "series");
        assert_eq!(lines.len(), 2);
        for (line, r) in lines.iter().zip(&runs) {
            assert_eq!(line.attr("data-series"), Some(r.label.as_str()));
            let p = points(line);
            assert_eq!(p.len(), r.timeline.len());
            // One second apart, left to right; a higher count is drawn higher (smaller y).
            for (w, t) in p.windows(2).zip(r.timeline.windows(2)) {
                assert!(w[1].0 > w[0].0);
                assert_eq!(w[1].1 < w[0].1, t[1] > t[0], "{w:?} {t:?}");
            }
        }
        let dx0 = points(lines[0])[1].0 - points(lines[0])[0].0;
        let dx1 = points(lines[1])[1].0 - points(lines[1])[0].0;
        assert!((dx0 - dx1).abs() < 0.11, "same time axis: {dx0} {dx1}");
        // One dashed target line, for the run with a rate, at 2000/s: between 1 (100/s) and the
        // peak (2700/s).
        let targets = panel.with_class("line", "target");
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].attr("stroke-dasharray"), Some(TARGET_DASH));
        let ty: f64 = targets[0].attr("y1").unwrap().parse().unwrap();
        let fast = points(lines[0]);
        assert!(ty > points(lines[1])[2].1 && ty < fast[0].1, "{ty}");
        assert!(
            (ty - fast[1].1).abs() < 0.11,
            "2000/s sits on the target line"
        );
        // Several runs: subtitles name each one.
        let subs: Vec<_> = root
            .with_class("text", "subtitle")
            .iter()
            .map(|n| n.text.clone())
            .collect();
        assert_eq!(
            subs,
            [
                "fast: server 10.77.0.1:67, mix dora, rate 2000/s, 5000 clients",
                "flat: server 10.77.0.1:67, mix dora, flat out, 5000 clients"
            ]
        );
    }

    #[test]
    fn cdf_series_rise_left_to_right_and_reach_the_top() {
        let r = run("a", vec![10], None);
        let root = parse_xml(&svg(std::slice::from_ref(&r))).unwrap();
        let panel = root.by_id("latency-cdf").unwrap();
        let frame = &panel.with_class("rect", "frame")[0];
        let top: f64 = frame.attr("y").unwrap().parse().unwrap();
        let bottom = top + frame.attr("height").unwrap().parse::<f64>().unwrap();
        let lines = panel.with_class("polyline", "series");
        assert_eq!(lines.len(), r.steps.len());
        for (line, s) in lines.iter().zip(&r.steps) {
            assert_eq!(line.attr("data-series"), Some(s.name.as_str()));
            let p = points(line);
            assert_eq!(p.len(), 2 * s.cdf.len(), "steps: two points per CDF point");
            // Latencies increase (the CDF's own test checks strictly; two can round to one px).
            assert!(p.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 <= w[0].1));
            assert!(p.last().unwrap().0 > p[0].0);
            // Steps: a rise at each point's latency, a flat run to the next.
            for (i, w) in p.windows(2).enumerate() {
                if i % 2 == 0 {
                    assert_eq!(w[0].0, w[1].0, "rise at one latency");
                } else {
                    assert_eq!(w[0].1, w[1].1, "flat to the next latency");
                }
            }
            assert!((p[0].1 - bottom).abs() < 0.11, "starts from fraction 0");
            assert!(
                (p.last().unwrap().1 - top).abs() < 0.11,
                "ends at fraction 1"
            );
        }
        // 100 µs .. 20 ms of data: decades 100 µs .. 100 ms.
        let ticks: Vec<_> = panel
            .with_class("text", "tick")
            .iter()
            .map(|n| n.text.clone())
            .collect();
        for t in ["100 µs", "1 ms", "10 ms", "100 ms", "0", "0.5", "1.0"] {
            assert!(ticks.iter().any(|x| x == t), "{t} missing: {ticks:?}");
        }
        assert!(
            !ticks.iter().any(|x| x == "10 µs" || x == "1 s"),
            "{ticks:?}"
        );
    }

    #[test]
    fn labels_and_names_are_escaped() {
        let mut a = run("<script>alert('x')</script> & co", vec![1, 2], Some(2));
        a.server = "\"evil\" <b>".to_string();
        a.mix = "dora\u{1}".to_string();
        let b = run("b", vec![3], None);
        let svg = svg(&[a.clone(), b]);
        assert!(svg.contains("&lt;script&gt;alert(&apos;x&apos;)&lt;/script&gt; &amp; co"));
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("<b>"));
        assert!(!svg.contains('\u{1}'));
        let root = parse_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        let subs = root.with_class("text", "subtitle");
        assert_eq!(
            subs[0].text,
            "<script>alert('x')</script> & co: server \"evil\" <b>, mix dora\u{fffd}, rate 2/s, 5000 clients"
        );
        let lines = root
            .by_id("leases-per-second")
            .unwrap()
            .with_class("polyline", "series");
        assert_eq!(lines[0].attr("data-series"), Some(a.label.as_str()));
    }

    #[test]
    fn escape_covers_markup_and_forbidden_characters() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(
            escape("t\tn\nx\u{0}\u{1b}\u{ffff}é→"),
            "t\tn\nx\u{fffd}\u{fffd}\u{fffd}é→"
        );
    }

    #[test]
    fn long_legend_texts_are_cut() {
        assert_eq!(shorten("short", 36), "short");
        let long = "é".repeat(50);
        let s = shorten(&long, 36);
        assert_eq!(s.chars().count(), 36);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn a_report_and_its_json_draw_the_same_chart() {
        let rep = report();
        let text = serde_json::to_string_pretty(&rep).unwrap();
        let from_json = Run::from_json(&text, "r").unwrap();
        let from_report = Run::from_report(&rep, "r").unwrap();
        assert_eq!(from_json, from_report);
        let keys: Vec<_> = from_json.steps.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["discover_offer", "request_ack"]);
        // JSON keeps the points (to serde_json's float parsing, within an ulp or so).
        let want = &rep.latency_us.discover_offer.cdf;
        assert_eq!(from_json.steps[0].cdf.len(), want.len());
        for (g, w) in from_json.steps[0].cdf.iter().zip(want) {
            assert!((g[0] - w[0]).abs() <= w[0] * 1e-12 && (g[1] - w[1]).abs() <= 1e-12);
        }
        assert_eq!(from_json.timeline, [998, 1000, 1002]);
        assert_eq!(from_json.rate, Some(1000));

        let svg = svg(&[from_json]);
        assert_eq!(svg, super::svg(&[from_report]));
        let root = parse_xml(&svg).unwrap();
        let cdf = root.by_id("latency-cdf").unwrap();
        let lines = cdf.with_class("polyline", "series");
        let names: Vec<_> = lines.iter().filter_map(|l| l.attr("data-series")).collect();
        assert_eq!(names, ["DISCOVER→OFFER", "REQUEST→ACK"]);
        assert_eq!(
            points(lines[0]).len(),
            2 * rep.latency_us.discover_offer.cdf.len()
        );
        assert_eq!(
            points(lines[1]).len(),
            2 * rep.latency_us.request_ack.cdf.len()
        );
        let leases = root.by_id("leases-per-second").unwrap();
        assert_eq!(points(leases.with_class("polyline", "series")[0]).len(), 3);
    }

    #[test]
    fn several_reports_share_one_chart() {
        let a = Run::from_report(&report(), "before").unwrap();
        let mut second = report();
        second.params.rate = None;
        second.leases_timeline = vec![1500, 1600];
        let b = Run::from_json(&serde_json::to_string(&second).unwrap(), "after").unwrap();
        let root = parse_xml(&svg(&[a, b])).unwrap();
        let cdf = root.by_id("latency-cdf").unwrap();
        let lines = cdf.with_class("polyline", "series");
        let names: Vec<_> = lines.iter().filter_map(|l| l.attr("data-series")).collect();
        assert_eq!(
            names,
            [
                "before: DISCOVER→OFFER",
                "before: REQUEST→ACK",
                "after: DISCOVER→OFFER",
                "after: REQUEST→ACK"
            ]
        );
        // A run keeps its colour; the steps differ by dash.
        assert_eq!(lines[0].attr("stroke"), lines[1].attr("stroke"));
        assert_ne!(lines[0].attr("stroke"), lines[2].attr("stroke"));
        assert_eq!(lines[0].attr("stroke-dasharray"), None);
        assert_eq!(lines[1].attr("stroke-dasharray"), Some(DASHES[1]));
        let leases = root.by_id("leases-per-second").unwrap();
        let lens: Vec<_> = leases
            .with_class("polyline", "series")
            .iter()
            .map(|l| points(l).len())
            .collect();
        assert_eq!(lens, [3, 2]);
        assert_eq!(leases.with_class("line", "target").len(), 1);
    }

    #[test]
    fn bad_json_gets_a_precise_error() {
        let err = Run::from_json("{}", "x").unwrap_err();
        assert!(matches!(err, ChartError::Json(_)), "{err}");
        assert!(err.to_string().contains("missing field `tool`"), "{err}");
        let err = Run::from_json("not json", "x").unwrap_err();
        assert!(matches!(err, ChartError::Json(_)), "{err}");

        let mut v = serde_json::to_value(report()).unwrap();
        v["tool"] = "perfdhcp".into();
        let err = Run::from_json(&v.to_string(), "x").unwrap_err();
        assert!(
            matches!(&err, ChartError::OtherTool(t) if t == "perfdhcp"),
            "{err}"
        );
        // The tool is checked before the rest of the shape.
        let err = Run::from_json(r#"{"tool": "kea", "x": 1}"#, "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"not a tandem-bench report ("tool" is "kea")"#
        );
        let err = Run::from_json(r#"{"tool": "tandem-bench"}"#, "x").unwrap_err();
        assert!(err.to_string().contains("missing field `command`"), "{err}");

        let bad = |cdf: serde_json::Value| {
            let mut v = serde_json::to_value(report()).unwrap();
            v["latency_us"]["request_ack"]["cdf"] = cdf;
            Run::from_json(&v.to_string(), "x").unwrap_err()
        };
        let err = bad(serde_json::json!([[10.0, 0.5], [20.0, 1.5]]));
        assert!(
            matches!(&err, ChartError::BadCdf { step, index: 1, .. } if step == "request_ack"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "latency_us.request_ack.cdf[1] = [20, 1.5]: the fraction is not within 0..=1"
        );
        let err = bad(serde_json::json!([[10.0, 0.5], [5.0, 0.6]]));
        assert!(err.to_string().contains("latency is below"), "{err}");
        let err = bad(serde_json::json!([[10.0, 0.5], [20.0, 0.4]]));
        assert!(err.to_string().contains("fraction is below"), "{err}");
        let err = bad(serde_json::json!([[-1.0, 0.5]]));
        assert!(err.to_string().contains("finite number"), "{err}");
        let err = bad(serde_json::json!([[1.0, 0.5, 3.0]]));
        assert!(matches!(err, ChartError::Json(_)), "{err}");
    }

    #[test]
    fn a_report_without_cdfs_still_draws_its_timeline() {
        let mut v = serde_json::to_value(report()).unwrap();
        for k in ["discover_offer", "request_ack", "dora", "renew"] {
            v["latency_us"][k].as_object_mut().unwrap().remove("cdf");
        }
        let r = Run::from_json(&v.to_string(), "old").unwrap();
        assert!(r.steps.is_empty());
        let root = parse_xml(&svg(&[r])).unwrap();
        let cdf = root.by_id("latency-cdf").unwrap();
        assert!(cdf.with_class("polyline", "series").is_empty());
        let leases = root.by_id("leases-per-second").unwrap();
        assert_eq!(points(leases.with_class("polyline", "series")[0]).len(), 3);
    }

    #[test]
    fn empty_inputs_still_make_a_valid_chart() {
        let mut r = run("empty", Vec::new(), None);
        r.steps.clear();
        for runs in [vec![], vec![r]] {
            let svg = svg(&runs);
            let root = parse_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
            assert!(root.by_id("leases-per-second").is_some());
            assert!(root.by_id("latency-cdf").is_some());
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn axes_pick_round_ticks() {
        assert_eq!(
            Linear::new(2100.0, 5.0, 1.0),
            Linear {
                top: 2500.0,
                step: 500.0
            }
        );
        assert_eq!(
            Linear::new(7.0, 8.0, 1.0),
            Linear {
                top: 7.0,
                step: 1.0
            }
        );
        assert_eq!(
            Linear::new(0.0, 5.0, 1.0),
            Linear {
                top: 1.0,
                step: 1.0
            }
        );
        assert_eq!(fmt_tick(25_000.0, 5000.0), "25k");
        assert_eq!(fmt_tick(0.0, 5000.0), "0");
        assert_eq!(fmt_tick(0.3, 0.1), "0.3");
        assert_eq!(fmt_tick(300.0, 100.0), "300");
        let pts = [[0.0, 0.0], [0.05, 0.5], [12_000.0, 1.0]];
        assert_eq!(Log::new(pts.iter()), Log { lo: -2, hi: 5 });
        assert_eq!(Log::new([].iter()), Log { lo: 0, hi: 1 });
        let labels: Vec<_> = (-3..=7).map(fmt_decade).collect();
        assert_eq!(
            labels,
            [
                "1 ns", "10 ns", "100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms",
                "1 s", "10 s"
            ]
        );
    }

    #[test]
    fn labels_come_from_file_stems() {
        assert_eq!(label_for(Path::new("/tmp/runs/kea-4t.json")), "kea-4t");
        assert_eq!(label_for(Path::new("plain")), "plain");
    }
}
