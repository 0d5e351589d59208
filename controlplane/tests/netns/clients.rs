//! Real DHCP clients (ISC dhclient, dhcpcd, busybox udhcpc) and ISC dhcrelay, run inside test
//! namespaces with scripts that do no harm: they only log the client's events to a file in the
//! test's scratch directory and set the address (and a default route) on the client's own
//! interface inside its namespace. None of them touches /etc/resolv.conf, runs distribution
//! hooks, or keeps state outside the scratch directory.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{poll, Lab, Netns, Proc};

/// Which client program.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ISC dhclient 4.4 (isc-dhcp-client).
    Dhclient,
    /// dhcpcd 9 (dhcpcd-base).
    Dhcpcd,
    /// busybox udhcpc (udhcpc).
    Udhcpc,
}

impl Kind {
    /// Program name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dhclient => "dhclient",
            Kind::Dhcpcd => "dhcpcd",
            Kind::Udhcpc => "udhcpc",
        }
    }
}

/// Optional things a client sends.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Vendor class identifier (option 60).
    pub vendor_class: Option<String>,
    /// More options dhclient asks for (dhclient.conf names, like `domain-name`).
    pub request: Vec<String>,
    /// Host name to send (option 12; dhclient and udhcpc).
    pub host_name: Option<String>,
    /// Fully qualified name to send in the client FQDN option (81, canonical encoding, flag S
    /// set: the server updates A and PTR; dhclient only).
    pub fqdn: Option<String>,
}

/// One client event as logged by its script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Unix seconds.
    pub t: u64,
    /// The client's reason, uppercased (BOUND, RENEW, REBIND, REBOOT, DECONFIG, ...).
    pub reason: String,
    /// The address the event carries, if any.
    pub ip: Option<Ipv4Addr>,
}

impl Event {
    /// True for "got a lease" events (first binding or init-reboot).
    pub fn is_bound(&self) -> bool {
        matches!(self.reason.as_str(), "BOUND" | "REBOOT") && self.ip.is_some()
    }

    /// True for "extended the lease" events.
    pub fn is_renew(&self) -> bool {
        matches!(self.reason.as_str(), "RENEW" | "REBIND") && self.ip.is_some()
    }
}

/// A running client in a namespace; stopped (without release) when dropped.
pub struct Client {
    /// Which program.
    pub kind: Kind,
    /// Its interface.
    pub iface: String,
    /// Its MAC address (lowercase).
    pub mac: String,
    name: String,
    dir: PathBuf,
    events: PathBuf,
    proc: Proc,
}

impl Client {
    /// dhclient's lease file (dhclient only).
    #[allow(dead_code)] // not every test binary reads lease files
    pub fn lease_file(&self) -> PathBuf {
        self.dir.join("dhclient.leases")
    }
}

const PATH_LINE: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n";

impl Client {
    /// Start `kind` on `iface` in `ns`; `name` must be unique within the test.
    pub fn start(
        lab: &Lab,
        ns: &Netns,
        iface: &str,
        kind: Kind,
        name: &str,
        opts: &Opts,
    ) -> Client {
        let dir = lab.path(name);
        fs::create_dir_all(&dir).expect("client dir");
        let events = lab.path(&format!("{name}.events"));
        fs::write(&events, "").expect("events file");
        let ev = events.display().to_string();
        let d = dir.display().to_string();
        let proc = match kind {
            Kind::Dhclient => {
                let script = lab.script(
                    &format!("{name}/script"),
                    &format!(
                        "#!/bin/sh\n{PATH_LINE}\
                         echo \"$(date +%s) $reason ${{new_ip_address:--}}\" >> {ev}\n\
                         case $reason in\n\
                         BOUND|RENEW|REBIND|REBOOT)\n\
                         \x20 if [ -n \"$old_ip_address\" ] && [ \"$old_ip_address\" != \"$new_ip_address\" ]; then ip -4 addr flush dev \"$interface\"; fi\n\
                         \x20 ip addr replace \"$new_ip_address/$new_subnet_mask\" dev \"$interface\"\n\
                         \x20 if [ -n \"$new_routers\" ]; then set -- $new_routers; ip route replace default via \"$1\" dev \"$interface\"; fi ;;\n\
                         EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev \"$interface\" ;;\n\
                         esac\nexit 0\n"
                    ),
                );
                let mut asked = vec!["subnet-mask", "broadcast-address", "routers"];
                asked.extend(opts.request.iter().map(String::as_str));
                let mut conf = format!("request {};\n", asked.join(", "));
                if let Some(vc) = &opts.vendor_class {
                    conf.push_str(&format!("send vendor-class-identifier \"{vc}\";\n"));
                }
                if let Some(h) = &opts.host_name {
                    conf.push_str(&format!("send host-name \"{h}\";\n"));
                }
                if let Some(f) = &opts.fqdn {
                    conf.push_str(&format!(
                        "send fqdn.fqdn \"{f}\";\nsend fqdn.encoded on;\nsend fqdn.server-update on;\n"
                    ));
                }
                lab.write(&format!("{name}/dhclient.conf"), &conf);
                let args = dhclient_args(&d, &script.display().to_string());
                let mut argv: Vec<&str> = vec!["dhclient", "-4", "-d", "-v"];
                argv.extend(args.iter().map(String::as_str));
                argv.push(iface);
                ns.spawn(lab, name, &argv)
            }
            Kind::Udhcpc => {
                let script = lab.script(
                    &format!("{name}/script"),
                    &format!(
                        "#!/bin/sh\n{PATH_LINE}\
                         echo \"$(date +%s) $1 ${{ip:--}}\" >> {ev}\n\
                         case $1 in\n\
                         deconfig) ip -4 addr flush dev \"$interface\" ;;\n\
                         bound|renew)\n\
                         \x20 ip addr replace \"$ip/${{mask:-24}}\" dev \"$interface\"\n\
                         \x20 if [ -n \"$router\" ]; then set -- $router; ip route replace default via \"$1\" dev \"$interface\"; fi ;;\n\
                         esac\nexit 0\n"
                    ),
                );
                let s = script.display().to_string();
                let pidf = format!("{d}/udhcpc.pid");
                let host_opt = opts.host_name.as_ref().map(|h| format!("hostname:{h}"));
                // -f foreground, -R release on SIGTERM, bounded retries
                let mut argv: Vec<&str> = vec![
                    "udhcpc", "-f", "-R", "-i", iface, "-s", &s, "-p", &pidf, "-t", "10", "-T",
                    "2", "-A", "2",
                ];
                if let Some(vc) = &opts.vendor_class {
                    argv.extend(["-V", vc.as_str()]);
                }
                if let Some(h) = &host_opt {
                    argv.extend(["-x", h.as_str()]);
                }
                ns.spawn(lab, name, &argv)
            }
            Kind::Dhcpcd => {
                let script = lab.script(
                    &format!("{name}/script"),
                    &format!("#!/bin/sh\n{PATH_LINE}echo \"$(date +%s) $reason ${{new_ip_address:--}}\" >> {ev}\nexit 0\n"),
                );
                // no hooks (our script replaces dhcpcd-run-hooks), IPv4 only, no IPv4LL/ARP probing
                let mut conf =
                    String::from("ipv4only\nnoipv4ll\nnoarp\noption subnet_mask, routers\n");
                if let Some(vc) = &opts.vendor_class {
                    conf.push_str(&format!("vendorclassid {vc}\n"));
                }
                let conf_path = lab.write(&format!("{name}/dhcpcd.conf"), &conf);
                let db = format!("{d}/db");
                fs::create_dir_all(&db).expect("dhcpcd db dir");
                // dhcpcd keeps its control socket, pid file and leases in /run/dhcpcd and
                // /var/lib/dhcpcd (compiled in). `ip netns exec` runs it in a private mount
                // namespace, so these mounts give it private copies and never touch the host's.
                let sh = format!(
                    "mount -t tmpfs -o size=4m,mode=0755 tdmrun /run && mount --bind {db} /var/lib/dhcpcd && \
                     exec dhcpcd -f {} -c {} -B -4 -d {iface}",
                    conf_path.display(),
                    script.display()
                );
                ns.spawn(lab, name, &["sh", "-c", &sh])
            }
        };
        Client {
            kind,
            iface: iface.to_string(),
            mac: ns.mac(iface),
            name: name.to_string(),
            dir,
            events,
            proc,
        }
    }

    /// Events logged so far.
    pub fn events(&self) -> Vec<Event> {
        fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let t = w.next()?.parse().ok()?;
                let reason = w.next()?.to_ascii_uppercase();
                let ip = w.next().and_then(|s| s.parse().ok());
                Some(Event { t, reason, ip })
            })
            .collect()
    }

    fn context(&self) -> String {
        format!(
            "{} ({}) events: {:?}\nlog:\n{}",
            self.name,
            self.kind.name(),
            self.events(),
            self.proc.log_text()
        )
    }

    /// Wait for the first lease; returns its address.
    pub fn wait_bound(&mut self, timeout: Duration) -> Ipv4Addr {
        let got = poll(timeout, || {
            self.events()
                .iter()
                .find(|e| e.is_bound())
                .and_then(|e| e.ip)
        });
        got.unwrap_or_else(|| {
            panic!(
                "{} got no lease within {timeout:?}\n{}",
                self.name,
                self.context()
            )
        })
    }

    /// Wait for a renewal (RENEW/REBIND event); returns the event.
    pub fn wait_renewed(&mut self, timeout: Duration) -> Event {
        let got = poll(timeout, || self.events().into_iter().find(|e| e.is_renew()));
        got.unwrap_or_else(|| {
            panic!(
                "{} did not renew within {timeout:?}\n{}",
                self.name,
                self.context()
            )
        })
    }

    /// Release the lease the way each client does it, and wait for the client to exit.
    pub fn release(&mut self, ns: &Netns, lab: &Lab) {
        match self.kind {
            Kind::Dhclient => {
                // `dhclient -r` sends DHCPRELEASE and stops the running dhclient through its
                // pid file (in our scratch directory).
                let d = self.dir.display().to_string();
                let script = format!("{d}/script");
                let args = dhclient_args(&d, &script);
                let mut argv: Vec<&str> = vec!["dhclient", "-4", "-r", "-v"];
                argv.extend(args.iter().map(String::as_str));
                argv.push(&self.iface);
                let mut r = ns.spawn(lab, &format!("{}-release", self.name), &argv);
                let st = r.wait_exit(Duration::from_secs(20));
                assert!(
                    st.is_some_and(|s| s.success()),
                    "dhclient -r failed: {st:?}\n{}",
                    r.log_text()
                );
            }
            // -R: udhcpc releases on SIGTERM
            Kind::Udhcpc => self.proc.signal("TERM"),
            // SIGALRM: dhcpcd releases its lease and exits
            Kind::Dhcpcd => self.proc.signal("ALRM"),
        }
        let st = self.proc.wait_exit(Duration::from_secs(15));
        assert!(
            st.is_some(),
            "{} did not exit after release\n{}",
            self.name,
            self.context()
        );
    }
}

fn dhclient_args(dir: &str, script: &str) -> Vec<String> {
    vec![
        "-cf".into(),
        format!("{dir}/dhclient.conf"),
        "-sf".into(),
        script.into(),
        "-lf".into(),
        format!("{dir}/dhclient.leases"),
        "-pf".into(),
        format!("{dir}/dhclient.pid"),
    ]
}

/// ISC dhcrelay in a router namespace: downstream `down`, upstream `up`, forwarding to `server`.
pub fn dhcrelay(lab: &Lab, ns: &Netns, name: &str, down: &str, up: &str, server: &str) -> Proc {
    let pidf = lab.path(&format!("{name}.pid")).display().to_string();
    let p = ns.spawn(
        lab,
        name,
        &[
            "dhcrelay", "-4", "-d", "-pf", &pidf, "-id", down, "-iu", up, server,
        ],
    );
    // it is ready once it has opened its sockets on both interfaces
    let ready = poll(Duration::from_secs(10), || {
        let log = p.log_text();
        (log.contains(&format!("Listening on LPF/{down}/"))
            && log.contains(&format!("Listening on LPF/{up}/")))
        .then_some(())
    });
    assert!(
        ready.is_some(),
        "dhcrelay {name} not ready:\n{}",
        p.log_text()
    );
    p
}
