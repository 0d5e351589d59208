//! The optional `[dataplane]` table: which packet backend the daemon runs (kernel UDP sockets or
//! AF_XDP behind the XDP steering program) and the AF_XDP sizes.

use std::ops::Range;

use toml::de::DeTable;

use super::reader::{self, Ctx, Val};

/// Keys of `[dataplane]`.
pub(crate) const DATAPLANE_KEYS: &[&str] = &[
    "backend",
    "xdp_mode",
    "queue",
    "frame_count",
    "ring_size",
    "cores",
    "busy_poll",
];

/// Which packet backend serves DHCP.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Kernel UDP sockets on port 67 (default).
    #[default]
    Udp,
    /// AF_XDP sockets fed by the XDP steering program; start-up fails if XDP cannot run.
    Xdp,
    /// AF_XDP if it can run here, else UDP (the reason is logged).
    Auto,
}

/// How the XDP program attaches to the interfaces.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum XdpModeSetting {
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
    /// Native, else generic (default).
    #[default]
    Auto,
}

/// Settings of the `[dataplane]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneSettings {
    /// The backend (default [`Backend::Udp`]).
    pub backend: Backend,
    /// XDP attach mode (default [`XdpModeSetting::Auto`]).
    pub xdp_mode: XdpModeSetting,
    /// The receive queue the AF_XDP socket binds to on every interface (default 0).
    pub queue: u32,
    /// UMEM chunks (2048 bytes each) per interface (default 4096).
    pub frame_count: u32,
    /// Entries of each AF_XDP ring (fill, completion, RX, TX), a power of two (default 2048).
    pub ring_size: u32,
    /// CPU ids, one AF_XDP worker pinned to each, worker `k` serving receive queue `queue + k`
    /// of every interface (default: empty, `[server] workers` unpinned workers).
    pub cores: Vec<usize>,
    /// AF_XDP workers spin over their rings instead of sleeping in `poll(2)` (default false).
    pub busy_poll: bool,
}

impl Default for DataplaneSettings {
    fn default() -> Self {
        DataplaneSettings {
            backend: Backend::Udp,
            xdp_mode: XdpModeSetting::Auto,
            queue: 0,
            frame_count: 4096,
            ring_size: 2048,
            cores: Vec::new(),
            busy_poll: false,
        }
    }
}

fn choice<T: Copy>(ctx: &mut Ctx<'_>, v: &Val<'_>, path: &str, choices: &[(&str, T)]) -> Option<T> {
    let s = reader::string(ctx, v, path)?;
    if let Some((_, t)) = choices.iter().find(|(n, _)| *n == s) {
        return Some(*t);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let mut m = format!("`{s}` is not one of: {}", names.join(", "));
    if let Some(g) = reader::suggest(s, &names) {
        m.push_str(&format!("; did you mean `{g}`?"));
    }
    ctx.error(v.span(), path, m);
    None
}

/// Read `[dataplane]` (`span` is the table's); every mistake goes to `ctx`, and the setting it
/// concerns keeps its default.
pub(crate) fn read(ctx: &mut Ctx<'_>, span: Range<usize>, t: &DeTable<'_>) -> DataplaneSettings {
    let hint = |k: &str| {
        matches!(k, "workers" | "batch_size" | "interfaces")
            .then(|| format!("`{k}` belongs in the [server] table"))
    };
    reader::check_keys(ctx, t, "dataplane", DATAPLANE_KEYS, &hint);
    let p = |k: &str| reader::join("dataplane", k);
    let mut d = DataplaneSettings::default();
    if let Some(v) = reader::get(t, "backend") {
        let c = [
            ("udp", Backend::Udp),
            ("xdp", Backend::Xdp),
            ("auto", Backend::Auto),
        ];
        if let Some(x) = choice(ctx, v, &p("backend"), &c) {
            d.backend = x;
        }
    }
    if let Some(v) = reader::get(t, "xdp_mode") {
        let c = [
            ("native", XdpModeSetting::Native),
            ("generic", XdpModeSetting::Generic),
            ("auto", XdpModeSetting::Auto),
        ];
        if let Some(x) = choice(ctx, v, &p("xdp_mode"), &c) {
            d.xdp_mode = x;
        }
    }
    if let Some(v) = reader::get(t, "queue") {
        if let Some(n) = reader::integer_in(ctx, v, &p("queue"), 0, 1023) {
            d.queue = n as u32;
        }
    }
    if let Some(v) = reader::get(t, "cores") {
        if let Some(a) = reader::array(ctx, v, &p("cores")) {
            let mut cores = Vec::new();
            for (i, c) in a.iter().enumerate() {
                let path = format!("{}[{i}]", p("cores"));
                if let Some(n) = reader::integer_in(ctx, c, &path, 0, 1023) {
                    let n = n as usize;
                    if cores.contains(&n) {
                        ctx.error(
                            c.span(),
                            &path,
                            format!("core {n} is listed twice (one worker per core)"),
                        );
                    } else {
                        cores.push(n);
                    }
                }
            }
            if a.is_empty() {
                ctx.error(
                    v.span(),
                    p("cores"),
                    "list at least one core, or leave `cores` out".to_string(),
                );
            }
            d.cores = cores;
        }
    }
    if let Some(v) = reader::get(t, "busy_poll") {
        if let Some(b) = reader::boolean(ctx, v, &p("busy_poll")) {
            d.busy_poll = b;
        }
    }
    let mut ring_at = None;
    if let Some(v) = reader::get(t, "ring_size") {
        if let Some(n) = reader::integer_in(ctx, v, &p("ring_size"), 64, 16_384) {
            if (n as u32).is_power_of_two() {
                d.ring_size = n as u32;
                ring_at = Some(v.span());
            } else {
                ctx.error(
                    v.span(),
                    p("ring_size"),
                    format!("{n} is not a power of two (64, 128, ..., 16384)"),
                );
            }
        }
    }
    if let Some(v) = reader::get(t, "frame_count") {
        if let Some(n) = reader::integer_in(ctx, v, &p("frame_count"), 128, 1 << 20) {
            let n = n as u32;
            if n < 2 * d.ring_size {
                ctx.error(
                    v.span(),
                    p("frame_count"),
                    format!(
                        "{n} chunks cannot fill a {}-entry fill ring and leave as many for \
                         replies in flight; use at least {} (2 × ring_size)",
                        d.ring_size,
                        2 * d.ring_size
                    ),
                );
            } else {
                d.frame_count = n;
            }
        }
    } else if d.frame_count < 2 * d.ring_size {
        let at = ring_at.unwrap_or(span);
        ctx.error(
            at,
            p("ring_size"),
            format!(
                "ring_size {} needs frame_count of at least {} (the default is {}); set \
                 frame_count too",
                d.ring_size,
                2 * d.ring_size,
                d.frame_count
            ),
        );
    }
    d
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    /// Lines 1-3 `[server]`, lines 4-7 a scope, then `rest` from line 8.
    fn doc(rest: &str) -> String {
        format!(
            "[server]\nserver_id = \"10.0.0.1\"\ninterfaces = [\"eth0\"]\n[[scope]]\nname = \
             \"lan\"\nsubnet = \"10.0.0.0/24\"\nranges = [\"10.0.0.100-10.0.0.200\"]\n{rest}"
        )
    }

    fn errors(text: &str) -> Vec<(usize, String, String)> {
        match parse(text, "t.toml") {
            Ok(_) => panic!("expected errors, the configuration parsed"),
            Err(e) => {
                e.0.into_iter()
                    .map(|e| (e.line, e.key, e.message))
                    .collect()
            }
        }
    }

    #[test]
    fn absent_table_means_udp_and_defaults() {
        let c = parse(&doc(""), "t.toml").expect("valid");
        assert_eq!(c.dataplane, DataplaneSettings::default());
        assert_eq!(c.dataplane.backend, Backend::Udp);
        assert_eq!(c.dataplane.xdp_mode, XdpModeSetting::Auto);
        assert_eq!(
            (
                c.dataplane.queue,
                c.dataplane.frame_count,
                c.dataplane.ring_size
            ),
            (0, 4096, 2048)
        );
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            &doc(
                "[dataplane]\nbackend = \"xdp\"\nxdp_mode = \"native\"\nqueue = 3\n\
                  frame_count = 1024\nring_size = 512\n",
            ),
            "t.toml",
        )
        .expect("valid");
        assert_eq!(
            c.dataplane,
            DataplaneSettings {
                backend: Backend::Xdp,
                xdp_mode: XdpModeSetting::Native,
                queue: 3,
                frame_count: 1024,
                ring_size: 512,
                cores: Vec::new(),
                busy_poll: false,
            }
        );
        let c = parse(
            &doc("[dataplane]\nbackend = \"xdp\"\ncores = [1, 0]\nbusy_poll = true\n"),
            "t",
        )
        .expect("valid");
        assert_eq!(
            (c.dataplane.cores.clone(), c.dataplane.busy_poll),
            (vec![1, 0], true)
        );
        let c = parse(
            &doc("[dataplane]\nbackend = \"auto\"\nxdp_mode = \"generic\"\n"),
            "t",
        )
        .expect("valid");
        assert_eq!(
            (c.dataplane.backend, c.dataplane.xdp_mode),
            (Backend::Auto, XdpModeSetting::Generic)
        );
    }

    #[test]
    fn cores_must_be_distinct_cpu_ids() {
        let e = errors(&doc("[dataplane]\ncores = [0, 0]\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1.as_str()), (9, "dataplane.cores[1]"));
        assert!(e[0].2.contains("listed twice"), "{}", e[0].2);
        let e = errors(&doc("[dataplane]\ncores = []\nbusy_poll = 1\n"));
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].1, "dataplane.cores");
        assert_eq!(e[1].1, "dataplane.busy_poll");
        let e = errors(&doc("[dataplane]\ncores = [2048]\n"));
        assert!(e[0].2.contains("out of range 0..=1023"), "{e:?}");
    }

    #[test]
    fn mistakes_are_reported_by_line_and_key() {
        let e = errors(&doc("[dataplane]\nbackend = \"xpd\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1.as_str()), (9, "dataplane.backend"));
        assert!(e[0].2.contains("not one of: udp, xdp, auto"), "{}", e[0].2);

        let e = errors(&doc(
            "[dataplane]\nxdp_mode = \"driver\"\nring_size = 1000\nqueue = -1\nworkers = 2\n",
        ));
        let at: Vec<(usize, &str)> = e.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(
            at,
            vec![
                (9, "dataplane.xdp_mode"),
                (10, "dataplane.ring_size"),
                (11, "dataplane.queue"),
                (12, "dataplane.workers"),
            ],
            "{e:?}"
        );
        assert!(e[1].2.contains("power of two"), "{}", e[1].2);
        assert!(e[3].2.contains("[server]"), "{}", e[3].2);

        let e = errors(&doc("[dataplane]\nring_size = 4096\nframe_count = 4096\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1.as_str()), (10, "dataplane.frame_count"));
        assert!(e[0].2.contains("at least 8192"), "{}", e[0].2);

        let e = errors(&doc("[dataplane]\nring_size = 4096\n"));
        assert_eq!(
            (e[0].0, e[0].1.as_str()),
            (9, "dataplane.ring_size"),
            "{e:?}"
        );
    }
}
