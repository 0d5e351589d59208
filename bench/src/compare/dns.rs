//! The DNS side of `tandem-xdp-ddns` ([`super::Target::TandemXdpDdns`]): BIND 9 in the server
//! namespace with a forward zone ([`DOMAIN`]) and the reverse zone of the bench's scope, both
//! taking updates signed with a key from `tsig-keygen`; the `[[ddns]]` table tandemd gets; and
//! the figures read after the load: the updater's counters (`GET /v1/ddns`), how long its queue
//! took to drain, BIND's CPU, the records BIND holds (zone transfers) and a sample of clients
//! looked up by name and by address with `dig`.
//!
//! BIND's files live on tmpfs (`/dev/shm`, else the work directory): BIND writes its journal
//! synchronously on every update, and on the disk that holds tandemd's journal those writes
//! would compete with tandemd's `fdatasync`, which a DNS server on its own host does not.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::cgroup::CpuCap;
use super::{curl, sh, which, Lab, LabError, Role};
use crate::cpu;

/// The forward zone: clients are `c<index>.bench.test`.
pub const DOMAIN: &str = "bench.test";
/// The TSIG key's name (`tsig-keygen -a hmac-sha256 tandem-bench`).
pub const KEY_NAME: &str = "tandem-bench";
/// Where BIND listens, in the server's namespace.
pub const LISTEN: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Longest wait after the load for the updater's queue to drain.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Give up waiting for the drain when nothing moved for this long.
pub const DRAIN_STALL: Duration = Duration::from_secs(10);
/// Clients looked up one by one with `dig` after the drain.
pub const SAMPLE: u32 = 20;

/// What `tandem-xdp-ddns` needs beyond tandemd, if something is missing.
pub fn missing() -> Option<String> {
    for (prog, pkg) in [
        ("named", "bind9"),
        ("tsig-keygen", "bind9"),
        ("dig", "bind9-dnsutils"),
        ("nsenter", "util-linux"),
        ("curl", "curl"),
    ] {
        if which(prog).is_none() {
            return Some(format!("{prog} is not installed ({pkg})"));
        }
    }
    None
}

/// The name and subnet (`network`, prefix length) of the first `[[scope]]` of a tandemd
/// configuration template.
pub fn scope_of(template: &str) -> Option<(String, Ipv4Addr, u8)> {
    let at = template.find("[[scope]]")?;
    let block = &template[at + "[[scope]]".len()..];
    let block = &block[..block.find("\n[").unwrap_or(block.len())];
    let value = |key: &str| {
        block.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let name = value("name")?;
    let (net, len) = value("subnet")?
        .split_once('/')
        .map(|(a, b)| (a.parse::<Ipv4Addr>().ok(), b.parse::<u8>().ok()))?;
    Some((name, net?, len.filter(|l| *l <= 32)?))
}

/// The reverse zone tandemd derives for a scope's subnet (docs/config.md, `reverse_zone`):
/// `C.B.A.in-addr.arpa` for a /24 or narrower, `B.A.in-addr.arpa` for /16 to /23,
/// `A.in-addr.arpa` for /8 to /15; none for wider subnets.
pub fn reverse_zone(net: Ipv4Addr, prefix: u8) -> Option<String> {
    let o = net.octets();
    match prefix {
        24..=32 => Some(format!("{}.{}.{}.in-addr.arpa", o[2], o[1], o[0])),
        16..=23 => Some(format!("{}.{}.in-addr.arpa", o[1], o[0])),
        8..=15 => Some(format!("{}.in-addr.arpa", o[0])),
        _ => None,
    }
}

/// A zone file with only the SOA, the NS and (forward zone) the name server's address: BIND
/// starts at once and the updates make the rest.
pub fn zone_file(forward: bool, listen: Ipv4Addr) -> String {
    let mut z = format!(
        "$TTL 300\n@ IN SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 300\n\
         @ IN NS ns.{DOMAIN}.\n"
    );
    if forward {
        z.push_str(&format!("ns IN A {listen}\n"));
    }
    z
}

/// `named.conf` for the bench: the two zones updatable with the key of `key_file`, no
/// recursion, no NOTIFY, no control channel, a large journal (tens of thousands of updates),
/// transfers to the listening address only (the bench's record count), notices and worse to
/// `named.log` in `dir`.
pub fn named_conf(dir: &Path, key_file: &Path, listen: Ipv4Addr, reverse: &str) -> String {
    let d = dir.display();
    let zone = |name: &str, file: &str| {
        format!(
            "zone \"{name}\" {{\n  type primary;\n  file \"{d}/{file}\";\n  \
             allow-update {{ key \"{KEY_NAME}\"; }};\n}};\n"
        )
    };
    format!(
        "include \"{k}\";\n\
         options {{\n  directory \"{d}\";\n  pid-file none;\n  session-keyfile none;\n  \
         managed-keys-directory \"{d}\";\n  listen-on port 53 {{ {listen}; }};\n  \
         listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n  notify no;\n  \
         max-journal-size 256M;\n  allow-transfer {{ {listen}; }};\n  allow-query {{ any; }};\n\
         }};\n\
         controls {{ }};\n\
         logging {{\n  channel bench {{ file \"{d}/named.log\" versions 1 size 20m; \
         severity notice; print-time yes; }};\n  category default {{ bench; }};\n  \
         category lame-servers {{ null; }};\n}};\n{}{}",
        zone(DOMAIN, "forward.zone"),
        zone(reverse, "reverse.zone"),
        k = key_file.display(),
    )
}

/// The `[[ddns]]` table of tandemd for `scope`: names in [`DOMAIN`], updates to `server`,
/// signed with `key_file`; the reverse zone is the one tandemd derives from the subnet.
pub fn ddns_table(scope: &str, server: Ipv4Addr, key_file: &Path) -> String {
    format!(
        "\n[[ddns]]\nscopes = [\"{scope}\"]\ndomain = \"{DOMAIN}\"\nservers = [\"{server}\"]\n\
         key_file = \"{}\"\n",
        key_file.display()
    )
}

/// BIND 9 started for a target.
pub struct Dns {
    name: String,
    pid: u32,
    dir: PathBuf,
    ns: String,
    listen: Ipv4Addr,
    reverse: String,
    key_file: PathBuf,
    nice: u8,
    cap: Option<CpuCap>,
}

/// How `named` is held back (`compare --named-nice`, `--named-cpu`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NamedLimits {
    /// Its nice value (0: the servers').
    pub nice: u8,
    /// Its share of one CPU, % (0: no cap).
    pub cpu_pct: u8,
}

/// `dig @server ARGS` in network namespace `ns` (through `nsenter`): the answer lines, without
/// comments and empty lines.
fn dig(ns: &str, server: Ipv4Addr, args: &[&str]) -> Vec<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["--", "dig", &format!("@{server}"), "+time=1", "+tries=1"])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

/// Records by type in `dig +noall +answer` lines (`owner ttl class type data`), the SOA, the
/// NS and the name server's own address left out.
pub fn count_types(lines: &[String]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let (owner, ty) = (f[0], f[3]);
        if ty == "SOA" || ty == "NS" || owner.eq_ignore_ascii_case(&format!("ns.{DOMAIN}.")) {
            continue;
        }
        *m.entry(ty.to_string()).or_insert(0) += 1;
    }
    m
}

/// `k` client indices spread evenly over `0..n` (all of them when `n <= k`).
pub fn sample_indices(n: u32, k: u32) -> Vec<u32> {
    if n <= k {
        return (0..n).collect();
    }
    let mut v: Vec<u32> = (0..k)
        .map(|j| (u64::from(j) * u64::from(n - 1) / u64::from(k.max(2) - 1)) as u32)
        .collect();
    v.dedup();
    v
}

impl Dns {
    /// Write the key (mode 600), the zones and `named.conf` into a fresh directory on tmpfs,
    /// start `named` in `role`'s namespace (one worker thread, foreground, IPv4) and wait until
    /// it answers the forward zone's SOA.
    pub fn start(lab: &mut Lab, role: Role, tag: &str, reverse: &str) -> Result<Dns, LabError> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            lab.work().to_path_buf()
        };
        let dir = lab.scratch_dir(&base, &format!("bind-{tag}"))?;
        let file_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LabError::File { path, source }
        };
        let key = sh(&["tsig-keygen", "-a", "hmac-sha256", KEY_NAME])?;
        let key_file = dir.join(format!("{KEY_NAME}.key"));
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_file)
            .and_then(|mut f| f.write_all(key.as_bytes()))
            .map_err(file_err(&key_file))?;
        for (file, forward) in [("forward.zone", true), ("reverse.zone", false)] {
            let p = dir.join(file);
            fs::write(&p, zone_file(forward, LISTEN)).map_err(file_err(&p))?;
        }
        let conf = dir.join("named.conf");
        fs::write(&conf, named_conf(&dir, &key_file, LISTEN, reverse)).map_err(file_err(&conf))?;
        let c = conf.display().to_string();
        if which("named-checkconf").is_some() {
            sh(&["named-checkconf", "-z", &c])?;
        }
        let name = format!("named-{tag}");
        let pid = lab.spawn(
            &name,
            role,
            &["named", "-f", "-4", "-n", "1", "-u", "root", "-c", &c],
            &[],
        )?;
        let dns = Dns {
            name: name.clone(),
            pid,
            dir,
            ns: lab.ns(role),
            listen: LISTEN,
            reverse: reverse.to_string(),
            key_file,
            nice: 0,
            cap: None,
        };
        let (ns, listen) = (dns.ns.clone(), dns.listen);
        lab.wait_ready(&name, 20, |_| {
            !dig(&ns, listen, &["+short", "+norecurse", DOMAIN, "SOA"]).is_empty()
        })
        .map_err(|e| LabError::NotReady(format!("BIND: {e} | named.log: {}", dns.log_tail())))?;
        Ok(dns)
    }

    /// The address tandemd sends its updates to.
    pub fn listen(&self) -> Ipv4Addr {
        self.listen
    }

    /// The TSIG key file (mode 600), for tandemd's `key_file`.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// BIND's directory (zones, journal, key, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of BIND's process in the lab.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the nice value of every thread of `named` to `nice` (`renice`; Linux nice is per
    /// thread, and named's threads are all started by now).
    pub fn renice(&mut self, nice: u8) -> Result<(), LabError> {
        let task = format!("/proc/{}/task", self.pid);
        let tids: Vec<String> = fs::read_dir(&task)
            .map_err(|source| LabError::File {
                path: PathBuf::from(&task),
                source,
            })?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        let n = nice.to_string();
        let mut cmd = vec!["renice", "-n", &n, "-p"];
        cmd.extend(tids.iter().map(String::as_str));
        sh(&cmd)?;
        self.nice = nice;
        Ok(())
    }

    /// Holds `named` to `pct` % of one CPU until it stops ([`CpuCap`]).
    pub fn cap_cpu(&mut self, pct: u8) -> Result<(), LabError> {
        self.cap = Some(CpuCap::apply(self.pid, pct, &self.name)?);
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("named.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(4)..].join(" | ")
    }

    fn dig(&self, args: &[&str]) -> Vec<String> {
        dig(&self.ns, self.listen, args)
    }

    /// Records by type in both zones (zone transfers).
    pub fn records(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for zone in [DOMAIN, self.reverse.as_str()] {
            let lines = self.dig(&["+noall", "+answer", "+time=10", zone, "AXFR"]);
            for (k, v) in count_types(&lines) {
                *m.entry(k).or_insert(0) += v;
            }
        }
        m
    }

    /// For each host name (in [`DOMAIN`]): whether it has an A record, and whether that
    /// address's PTR names it back. Returns (names with an A, names whose PTR matches).
    pub fn check_names(&self, names: &[String]) -> (u32, u32) {
        let (mut a, mut ptr) = (0, 0);
        for n in names {
            let fqdn = format!("{n}.{DOMAIN}");
            let addr = self
                .dig(&["+short", "+norecurse", &fqdn, "A"])
                .iter()
                .find_map(|l| l.parse::<Ipv4Addr>().ok());
            let Some(addr) = addr else { continue };
            a += 1;
            let back = self.dig(&["+short", "+norecurse", "-x", &addr.to_string()]);
            if back
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&format!("{fqdn}.")))
            {
                ptr += 1;
            }
        }
        (a, ptr)
    }

    /// What the figures start from: the updater's counters and BIND's CPU before the load.
    pub fn before(&self, lab: &Lab) -> Before {
        Before {
            counters: status(lab, Role::Srv),
            named_ticks: cpu::process_ticks(self.pid).unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// The DNS figures of a run: counters at the end of the load (`load_s` seconds, `leases`
    /// ACKs), then waiting for the updater's queue to drain (at most [`DRAIN_LIMIT`]), then the
    /// final counters, BIND's CPU since `before`, its records, and `names` looked up one by
    /// one; `clients` is how many clients started an exchange.
    pub fn figures(
        &self,
        lab: &Lab,
        before: &Before,
        load_s: f64,
        leases: f64,
        clients: u64,
        names: &[String],
    ) -> DdnsFigures {
        let mut f = DdnsFigures {
            clients,
            named_nice: self.nice,
            named_cpu_cap: self.cap.as_ref().map_or(0, CpuCap::pct),
            sample: names.len() as u32,
            ..DdnsFigures::default()
        };
        let end = status(lab, Role::Srv);
        match (&before.counters, &end) {
            (Ok(b), Ok(e)) => {
                f.updates_during_load = e.updates_total().saturating_sub(b.updates_total());
                f.updates_per_s_during_load = f.updates_during_load as f64 / load_s.max(1e-9);
                f.failures_during_load = e.failures_total().saturating_sub(b.failures_total());
                f.queue_at_end_of_load = e.queue_depth;
            }
            (Err(e), _) | (_, Err(e)) => f.error = Some(e.clone()),
        }
        if let Ok(first) = end {
            let t = Instant::now();
            let mut moved_at = t;
            let mut prev = first.clone();
            let mut cur = Ok(first);
            while let Ok(c) = cur {
                if c.idle() {
                    f.drain_s = Some(t.elapsed().as_secs_f64());
                    break;
                }
                if c.progress() != prev.progress() {
                    moved_at = Instant::now();
                }
                prev = c;
                if t.elapsed() >= DRAIN_LIMIT || moved_at.elapsed() >= DRAIN_STALL {
                    break;
                }
                if lab.sleep(Duration::from_millis(200)).is_err() {
                    break;
                }
                cur = status(lab, Role::Srv);
            }
            f.drain_waited_s = t.elapsed().as_secs_f64();
        }
        match status(lab, Role::Srv) {
            Ok(c) => {
                f.updates = c.updates.clone();
                f.failures = c.failures.iter().filter(|(_, n)| *n > 0).cloned().collect();
                f.conflicts = c.conflicts;
                f.queue_left = c.queue_depth;
                f.pending_left = c.pending;
                f.retries = c.retries;
                f.dropped = c.dropped;
                f.published = c.published;
                if let Ok(b) = &before.counters {
                    let done = c.updates_total().saturating_sub(b.updates_total());
                    let secs = cpu::process_ticks(self.pid)
                        .unwrap_or(0)
                        .saturating_sub(before.named_ticks) as f64
                        / cpu::clock_ticks_per_sec() as f64;
                    f.named_cpu_us_per_update = (done > 0).then(|| secs * 1e6 / done as f64);
                    f.named_cpu_us_per_lease = (leases > 0.0).then(|| secs * 1e6 / leases);
                    f.named_cpu_pct =
                        Some(100.0 * secs / before.at.elapsed().as_secs_f64().max(1e-9));
                }
            }
            Err(e) => {
                f.error.get_or_insert(e);
            }
        }
        f.records = self.records();
        (f.sample_a, f.sample_ptr) = self.check_names(names);
        f
    }
}

/// The updater's counters and BIND's CPU before the load.
pub struct Before {
    counters: Result<DdnsCounters, String>,
    named_ticks: u64,
    at: Instant,
}

/// The DNS updater's counters from `GET /v1/ddns`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DdnsCounters {
    /// Updates done, by kind as the server names them.
    pub updates: Vec<(String, u64)>,
    /// Failed attempts, by reason.
    pub failures: Vec<(String, u64)>,
    /// Names left alone because another client holds them (RFC 4703).
    pub conflicts: u64,
    /// Updates queued, not yet sent.
    pub queue_depth: u64,
    /// Updates waiting for a retry.
    pub pending: u64,
    /// Retries after a failure.
    pub retries: u64,
    /// Names never queued: the updater's queue or channel was full.
    pub dropped: u64,
    /// Names published (A and PTR in DNS), summed over the scopes.
    pub published: u64,
}

/// A count: a number, the sum of an object's counts, an array's length.
fn count(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
            .unwrap_or(0),
        Value::Object(m) => m.values().map(count).sum(),
        Value::Array(a) => a.len() as u64,
        _ => 0,
    }
}

/// Counts by kind: an object's members (`("", n)` for a plain number).
fn by_kind(v: &Value) -> Vec<(String, u64)> {
    match v {
        Value::Object(m) => m.iter().map(|(k, x)| (k.clone(), count(x))).collect(),
        Value::Number(_) => vec![(String::new(), count(v))],
        _ => Vec::new(),
    }
}

fn merge(into: &mut Vec<(String, u64)>, from: Vec<(String, u64)>) {
    for (k, n) in from {
        match into.iter_mut().find(|(x, _)| *x == k) {
            Some((_, m)) => *m += n,
            None => into.push((k, n)),
        }
    }
}

impl DdnsCounters {
    /// Read `GET /v1/ddns`: `updates` and `failures` (numbers or objects of counts by kind),
    /// `conflicts`, `queue_depth` (or `queue`), `pending`, `retries`, `dropped`; at the top
    /// level, or summed over `scopes` when the top level has none of them; `published` from
    /// the top level or summed over `scopes`. An `error` answer is the error.
    pub fn from_json(v: &Value) -> Result<DdnsCounters, String> {
        const KEYS: [&str; 6] = [
            "updates",
            "failures",
            "conflicts",
            "queue_depth",
            "queue",
            "pending",
        ];
        let has = |x: &Value| KEYS.iter().any(|k| x.get(*k).is_some());
        let parts: Vec<&Value> = if has(v) {
            vec![v]
        } else {
            match v.get("scopes") {
                Some(Value::Array(a)) => a.iter().filter(|x| has(x)).collect(),
                Some(Value::Object(m)) => m.values().filter(|x| has(x)).collect(),
                _ => Vec::new(),
            }
        };
        if parts.is_empty() {
            return Err(match v.get("error").and_then(Value::as_str) {
                Some(e) => format!("GET /v1/ddns: {e}"),
                None => format!("GET /v1/ddns: no updater counters in {v}"),
            });
        }
        let mut c = DdnsCounters::default();
        for p in parts {
            merge(&mut c.updates, by_kind(&p["updates"]));
            merge(&mut c.failures, by_kind(&p["failures"]));
            c.conflicts += count(&p["conflicts"]);
            c.queue_depth += match p.get("queue_depth") {
                Some(q) => count(q),
                None => match p.get("queue") {
                    Some(Value::Object(q)) => {
                        count(q.get("depth").or(q.get("len")).unwrap_or(&Value::Null))
                    }
                    Some(q) => count(q),
                    None => 0,
                },
            };
            c.pending += count(&p["pending"]);
            c.retries += count(&p["retries"]);
            c.dropped += count(&p["dropped"]);
        }
        c.published = match v.get("published") {
            Some(x) => count(x),
            None => match v.get("scopes") {
                Some(Value::Array(a)) => a.iter().map(|x| count(&x["published"])).sum(),
                Some(Value::Object(m)) => m.values().map(|x| count(&x["published"])).sum(),
                _ => 0,
            },
        };
        Ok(c)
    }

    /// Every update done.
    pub fn updates_total(&self) -> u64 {
        self.updates.iter().map(|(_, n)| n).sum()
    }

    /// Every failed attempt.
    pub fn failures_total(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    /// Nothing queued or waiting for a retry.
    fn idle(&self) -> bool {
        self.queue_depth == 0 && self.pending == 0
    }

    /// Changes while the updater works.
    fn progress(&self) -> (u64, u64, u64, u64) {
        (
            self.updates_total(),
            self.failures_total(),
            self.conflicts,
            self.queue_depth,
        )
    }
}

/// The updater's counters of the server in `role`.
fn status(lab: &Lab, role: Role) -> Result<DdnsCounters, String> {
    let v = curl(lab, role, "http://127.0.0.1:9167/v1/ddns", None)
        .ok_or("GET /v1/ddns: no JSON answer")?;
    DdnsCounters::from_json(&v)
}

/// The DNS side of a run with dynamic DNS.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DdnsFigures {
    /// Why the updater's counters could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Updates done during the load.
    pub updates_during_load: u64,
    /// Of those, per second of load.
    pub updates_per_s_during_load: f64,
    /// Failed attempts during the load.
    pub failures_during_load: u64,
    /// Updates still queued when the load ended.
    pub queue_at_end_of_load: u64,
    /// Seconds after the load until nothing was queued or waiting (`None`: not within the
    /// wait).
    pub drain_s: Option<f64>,
    /// How long the bench waited for that.
    pub drain_waited_s: f64,
    /// Updates done in all, by kind (after the wait).
    pub updates: Vec<(String, u64)>,
    /// Failed attempts in all, by reason (non-zero ones).
    pub failures: Vec<(String, u64)>,
    /// Conflicts (a name held by another client) in all.
    pub conflicts: u64,
    /// Updates still queued after the wait.
    pub queue_left: u64,
    /// Updates waiting for a retry after the wait.
    pub pending_left: u64,
    /// Retries after failures, in all.
    pub retries: u64,
    /// Names never queued (the updater's queue or channel full), in all.
    pub dropped: u64,
    /// Names published after the wait (the updater's count).
    pub published: u64,
    /// BIND's CPU (from the start of the load to the end of the wait) per update, µs.
    pub named_cpu_us_per_update: Option<f64>,
    /// The same per lease of the load, µs.
    pub named_cpu_us_per_lease: Option<f64>,
    /// BIND's CPU use over that time, % of one core.
    pub named_cpu_pct: Option<f64>,
    /// BIND's nice value (`--named-nice`).
    pub named_nice: u8,
    /// BIND's CPU cap, % of one CPU (`--named-cpu`; 0: none).
    pub named_cpu_cap: u8,
    /// Records BIND holds after the wait, by type (both zones; SOA, NS and the name server's
    /// own address left out).
    pub records: BTreeMap<String, u64>,
    /// Clients that started an exchange (each sent its own host name).
    pub clients: u64,
    /// Clients looked up one by one.
    pub sample: u32,
    /// Of those, with an A record.
    pub sample_a: u32,
    /// Of those, whose address's PTR names them back.
    pub sample_ptr: u32,
}

fn kinds_text(v: &[(String, u64)]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|(k, n)| {
            if k.is_empty() {
                n.to_string()
            } else {
                format!("{k} {n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl DdnsFigures {
    /// The lines printed with the target's result.
    pub fn lines(&self, target: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.error {
            out.push(format!("{target} DNS: no updater figures: {e}"));
        }
        if self.error.is_none() || !self.updates.is_empty() {
            let drain = match self.drain_s {
                Some(s) => format!("drained {s:.1} s after it"),
                None => format!("not drained {:.0} s after it", self.drain_waited_s),
            };
            out.push(format!(
                "{target} DNS: {} updates during the load ({:.0}/s), {} failed; queue {} at its end, {drain}",
                self.updates_during_load,
                self.updates_per_s_during_load,
                self.failures_during_load,
                self.queue_at_end_of_load,
            ));
            out.push(format!(
                "{target} DNS: in all updates [{}], failures [{}], retries {}, dropped {}, conflicts {}, queue left {}, pending {}, names published {}",
                kinds_text(&self.updates),
                kinds_text(&self.failures),
                self.retries,
                self.dropped,
                self.conflicts,
                self.queue_left,
                self.pending_left,
                self.published,
            ));
        }
        let rec = |t: &str| self.records.get(t).copied().unwrap_or(0);
        let cpu = match (
            self.named_cpu_us_per_update,
            self.named_cpu_us_per_lease,
            self.named_cpu_pct,
        ) {
            (u, Some(l), Some(p)) => format!(
                "; named CPU {} µs/update, {l:.1} µs/lease ({p:.0} % of a core){}{}",
                u.map_or("-".into(), |u| format!("{u:.1}")),
                if self.named_nice > 0 {
                    format!(", at nice {}", self.named_nice)
                } else {
                    String::new()
                },
                if self.named_cpu_cap > 0 {
                    format!(", capped at {} % of a CPU", self.named_cpu_cap)
                } else {
                    String::new()
                }
            ),
            _ => String::new(),
        };
        out.push(format!(
            "{target} DNS: BIND holds {} A, {} PTR, {} DHCID for {} clients; sample of {}: {} with A, {} with matching PTR{cpu}",
            rec("A"),
            rec("PTR"),
            rec("DHCID"),
            self.clients,
            self.sample,
            self.sample_a,
            self.sample_ptr,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_scope_and_its_reverse_zone_come_from_the_template() {
        let (name, net, len) = scope_of(super::super::TANDEM_SINGLE).expect("a scope");
        assert_eq!(
            (name.as_str(), net, len),
            ("kb", Ipv4Addr::new(10, 77, 0, 0), 16)
        );
        assert_eq!(
            reverse_zone(net, len).as_deref(),
            Some("77.10.in-addr.arpa")
        );
        let n = Ipv4Addr::new(192, 168, 5, 0);
        assert_eq!(
            reverse_zone(n, 24).as_deref(),
            Some("5.168.192.in-addr.arpa")
        );
        assert_eq!(reverse_zone(n, 23).as_deref(), Some("168.192.in-addr.arpa"));
        assert_eq!(reverse_zone(n, 8).as_deref(), Some("192.in-addr.arpa"));
        assert_eq!(reverse_zone(n, 7), None);
        assert_eq!(scope_of("[server]\nname = \"x\"\n"), None);
        let t = "[[scope]]\nname = \"a\"\nsubnet = \"10.1.0.0/20\"\n[[scope]]\nname = \"b\"\n";
        assert_eq!(
            scope_of(t),
            Some(("a".into(), Ipv4Addr::new(10, 1, 0, 0), 20))
        );
    }

    #[test]
    fn bind_configuration_has_both_zones_the_key_and_the_limits() {
        let dir = Path::new("/dev/shm/tdm-x-bind");
        let key = dir.join("tandem-bench.key");
        let c = named_conf(dir, &key, LISTEN, "77.10.in-addr.arpa");
        assert!(
            c.starts_with("include \"/dev/shm/tdm-x-bind/tandem-bench.key\";\n"),
            "{c}"
        );
        for want in [
            "zone \"bench.test\" {\n  type primary;\n  file \"/dev/shm/tdm-x-bind/forward.zone\";\n  allow-update { key \"tandem-bench\"; };\n};",
            "zone \"77.10.in-addr.arpa\" {\n  type primary;\n  file \"/dev/shm/tdm-x-bind/reverse.zone\";\n  allow-update { key \"tandem-bench\"; };\n};",
            "listen-on port 53 { 127.0.0.1; };",
            "recursion no;",
            "notify no;",
            "max-journal-size 256M;",
            "allow-transfer { 127.0.0.1; };",
            "controls { };",
            "pid-file none;",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
        // balanced braces: BIND would refuse the file otherwise
        assert_eq!(c.matches('{').count(), c.matches('}').count());
        let f = zone_file(true, LISTEN);
        assert!(
            f.contains("@ IN SOA ns.bench.test. hostmaster.bench.test. 1 "),
            "{f}"
        );
        assert!(f.contains("ns IN A 127.0.0.1\n"), "{f}");
        let r = zone_file(false, LISTEN);
        assert!(
            r.contains("@ IN NS ns.bench.test.\n") && !r.contains(" A "),
            "{r}"
        );
    }

    #[test]
    fn ddns_table_names_the_scope_zone_server_and_key() {
        let t = ddns_table("kb", LISTEN, Path::new("/dev/shm/k.key"));
        assert_eq!(
            t,
            "\n[[ddns]]\nscopes = [\"kb\"]\ndomain = \"bench.test\"\nservers = [\"127.0.0.1\"]\n\
             key_file = \"/dev/shm/k.key\"\n"
        );
    }

    #[test]
    fn updater_counters_are_read_whatever_their_nesting() {
        let v = json!({
            "updates": {"add": 40, "remove": 2},
            "failures": {"timeout": 3, "badsig": 0, "refused": 1},
            "conflicts": 5,
            "queue_depth": 7,
            "pending": 2,
            "entries": [{"addr": "10.77.0.10", "state": "pending"}]
        });
        let c = DdnsCounters::from_json(&v).unwrap();
        assert_eq!(c.updates, vec![("add".into(), 40), ("remove".into(), 2)]);
        assert_eq!((c.updates_total(), c.failures_total()), (42, 4));
        assert_eq!((c.conflicts, c.queue_depth, c.pending), (5, 7, 2));
        assert!(!c.idle());
        // per scope, plain numbers, a queue object, pending as a list
        let v = json!({"scopes": [
            {"name": "a", "updates": 10, "failures": 1, "queue": {"depth": 3}, "pending": [1, 2]},
            {"name": "b", "updates": 5, "queue": 1}
        ]});
        let c = DdnsCounters::from_json(&v).unwrap();
        assert_eq!(c.updates, vec![(String::new(), 15)]);
        assert_eq!((c.failures_total(), c.queue_depth, c.pending), (1, 4, 2));
        // the server's error answer
        let e = DdnsCounters::from_json(&json!({"error": "the DNS updater is not running"}));
        assert_eq!(
            e,
            Err("GET /v1/ddns: the DNS updater is not running".to_string())
        );
        let idle = DdnsCounters::from_json(&json!({"updates": {"add": 1}, "queue_depth": 0}));
        assert!(idle.unwrap().idle());
        // tandemd's own answer (controlplane/src/ddns_updater.rs)
        let v = json!({
            "queue_depth": 12,
            "updates": {"add": 300, "remove": 4},
            "conflicts": 1,
            "retries": 6,
            "dropped": 2,
            "failures": {"timeout": 5, "network": 0, "refused": 0, "servfail": 1, "notauth": 0,
                         "badkey": 0, "badsig": 0, "badtime": 0, "not_in_zone": 0, "other": 0},
            "scopes": [{"scope": "kb", "forward_zone": "bench.test.", "published": 290,
                        "pending": 12, "conflicts": 1}],
            "entries": [{"addr": "10.77.0.10", "state": "adding", "attempts": 1}]
        });
        let c = DdnsCounters::from_json(&v).unwrap();
        assert_eq!((c.updates_total(), c.failures_total()), (304, 6));
        assert_eq!(
            (
                c.queue_depth,
                c.pending,
                c.conflicts,
                c.retries,
                c.dropped,
                c.published
            ),
            (12, 0, 1, 6, 2, 290)
        );
    }

    #[test]
    fn records_are_counted_by_type_without_the_zone_s_own() {
        let lines: Vec<String> = [
            "bench.test.\t300\tIN\tSOA\tns.bench.test. hostmaster.bench.test. 9 3600 600 86400 300",
            "bench.test.\t300\tIN\tNS\tns.bench.test.",
            "c0.bench.test.\t1200\tIN\tA\t10.77.0.10",
            "c0.bench.test.\t1200\tIN\tDHCID\tAAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
            "c1.bench.test.\t1200\tIN\tA\t10.77.0.11",
            "ns.bench.test.\t300\tIN\tA\t127.0.0.1",
            "bench.test.\t300\tIN\tSOA\tns.bench.test. hostmaster.bench.test. 9 3600 600 86400 300",
            "10.0.77.10.in-addr.arpa. 1200 IN PTR c0.bench.test.",
            "garbage",
        ]
        .map(String::from)
        .to_vec();
        let m = count_types(&lines);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![("A".into(), 2), ("DHCID".into(), 1), ("PTR".into(), 1)]
        );
    }

    #[test]
    fn samples_spread_over_the_clients() {
        assert_eq!(sample_indices(5, 20), vec![0, 1, 2, 3, 4]);
        let s = sample_indices(20_000, 20);
        assert_eq!(s.len(), 20);
        assert_eq!((s[0], s[19]), (0, 19_999));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_indices(0, 20), Vec::<u32>::new());
        assert_eq!(sample_indices(30, 1), vec![0]);
    }

    #[test]
    fn figures_print_the_updater_and_bind_lines() {
        let mut f = DdnsFigures {
            updates_during_load: 49_000,
            updates_per_s_during_load: 9800.0,
            failures_during_load: 0,
            queue_at_end_of_load: 1200,
            drain_s: Some(0.6),
            drain_waited_s: 0.6,
            updates: vec![("add".into(), 50_000)],
            failures: Vec::new(),
            conflicts: 0,
            queue_left: 0,
            pending_left: 0,
            retries: 0,
            dropped: 0,
            published: 20_000,
            named_cpu_us_per_update: Some(40.0),
            named_cpu_us_per_lease: Some(80.0),
            named_cpu_pct: Some(55.0),
            named_nice: 0,
            named_cpu_cap: 0,
            records: [("A".to_string(), 20_000), ("PTR".to_string(), 20_000)]
                .into_iter()
                .collect(),
            clients: 20_000,
            sample: 20,
            sample_a: 20,
            sample_ptr: 19,
            error: None,
        };
        let l = f.lines("tandem-xdp-ddns");
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(
            l[0],
            "tandem-xdp-ddns DNS: 49000 updates during the load (9800/s), 0 failed; queue 1200 at its end, drained 0.6 s after it"
        );
        assert!(
            l[1].contains(
                "updates [add 50000], failures [none], retries 0, dropped 0, conflicts 0"
            ),
            "{}",
            l[1]
        );
        assert!(l[1].ends_with("names published 20000"), "{}", l[1]);
        assert!(
            l[2].contains("BIND holds 20000 A, 20000 PTR, 0 DHCID for 20000 clients; sample of 20: 20 with A, 19 with matching PTR; named CPU 40.0 µs/update, 80.0 µs/lease (55 % of a core)"),
            "{}",
            l[2]
        );
        assert!(l[2].ends_with("(55 % of a core)"), "{}", l[2]);
        f.named_nice = 10;
        assert!(
            f.lines("t")[2].ends_with("(55 % of a core), at nice 10"),
            "{:?}",
            f.lines("t")
        );
        f.named_cpu_cap = 10;
        assert!(
            f.lines("t")[2].ends_with("(55 % of a core), at nice 10, capped at 10 % of a CPU"),
            "{:?}",
            f.lines("t")
        );
        f.drain_s = None;
        f.drain_waited_s = 60.0;
        assert!(f.lines("t")[0].ends_with("not drained 60 s after it"));
        let none = DdnsFigures {
            error: Some("GET /v1/ddns: no JSON answer".into()),
            ..DdnsFigures::default()
        };
        let l = none.lines("t");
        assert_eq!(
            l[0],
            "t DNS: no updater figures: GET /v1/ddns: no JSON answer"
        );
        assert_eq!(l.len(), 2, "{l:?}");
    }
}
