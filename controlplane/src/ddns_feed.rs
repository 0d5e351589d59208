//! What feeds the DNS updater ([`crate::ddns::Ddns`]) in a running server, and what it feeds
//! back into failover:
//!
//! - **names**: each worker's engine sends a [`NameNote`] when it ACKs a client of a scope with
//!   `[[ddns]]` (never blocking; a full channel is counted). [`spawn_name_feed`] turns them
//!   into [`Event::Granted`] on a thread of its own.
//! - **committed bindings**: [`tap`] wraps each worker's commit hook; for a committed binding
//!   of a DNS scope it sends [`Event::Renewed`] (ACTIVE) or [`Event::Ended`] (released,
//!   expired, reset, abandoned, freed). Cheap when no scope has DNS: one atomic load per batch.
//! - **failover**: [`Names`] puts the published name into our BNDUPDs (the DDNS option) and
//!   passes the partner's to the updater as its grants; [`takeover`] tells the updater when it
//!   must also act for the partner's grants (PARTNER-DOWN, or a scope with no partner).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use tandem_dataplane::binding::{Binding, BindingState};
use tandem_dataplane::engine::fqdn::NameNote;
use tandem_dataplane::scope::Subnet;
use tandem_dataplane::worker::CommitHook;

use crate::config::Config;
use crate::ddns::{Ddns, DdnsConfig, Event, Granter, Identity, ScopeDns};
use crate::failover::link::NameExchange;
use crate::failover::manager::FailoverManager;
use crate::failover::message::{BindingUpdate, DdnsFlags};

/// Capacity of the engines' name channel (shared by every worker).
pub const NAME_CHANNEL: usize = 65_536;

/// The updater's settings from a configuration: every scope named in `[[ddns]]`.
pub fn ddns_config(cfg: &Config) -> DdnsConfig {
    let scopes = cfg
        .ddns
        .iter()
        .filter_map(|d| {
            let forward_zone = tandem_ddns::Name::from_ascii(&d.forward_zone).ok()?;
            let reverse_zone = tandem_ddns::Name::from_ascii(&d.reverse_zone).ok()?;
            Some(ScopeDns {
                scope: d.scope.clone(),
                subnet: d.subnet,
                forward_zone,
                reverse_zone,
                servers: d.servers.clone(),
                key: d.key.clone(),
                ttl: d.ttl,
                conflict: d.conflict,
            })
        })
        .collect();
    DdnsConfig::new(scopes, cfg.daemon.state_dir.clone())
}

/// The subnets of the scopes with dynamic DNS, as the commit taps see them: replaced on reload
/// (a generation number tells each tap to take the new list; no lock on the workers' path
/// otherwise).
#[derive(Default)]
pub struct DnsSubnets {
    gen: AtomicU64,
    list: Mutex<Vec<Subnet>>,
}

impl DnsSubnets {
    /// The subnets of `cfg`'s DNS scopes.
    pub fn new(cfg: &Config) -> Arc<DnsSubnets> {
        let s = Arc::new(DnsSubnets::default());
        s.set(cfg);
        s
    }

    /// Take `cfg`'s DNS scopes (after a reload).
    pub fn set(&self, cfg: &Config) {
        let list: Vec<Subnet> = cfg.ddns.iter().map(|d| d.subnet).collect();
        *self.list.lock().unwrap_or_else(|e| e.into_inner()) = list;
        self.gen.fetch_add(1, Ordering::Release);
    }
}

/// Wrap a worker's commit hook: committed bindings of DNS scopes go to the updater as
/// [`Event::Renewed`] / [`Event::Ended`] (a full channel is counted by the updater, never waited
/// for), then to `inner`.
pub fn tap(
    mut inner: CommitHook,
    tx: Sender<Event>,
    ddns: Arc<Ddns>,
    subnets: Arc<DnsSubnets>,
) -> CommitHook {
    let mut seen_gen = u64::MAX;
    let mut mine: Vec<Subnet> = Vec::new();
    Box::new(move |bs: &[Binding]| {
        let gen = subnets.gen.load(Ordering::Acquire);
        if gen != seen_gen {
            mine = subnets
                .list
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            seen_gen = gen;
        }
        if !mine.is_empty() {
            let mut dropped = 0;
            for b in bs {
                if !mine.iter().any(|s| s.contains(b.addr)) {
                    continue;
                }
                let ev = match b.state {
                    BindingState::Active => Event::Renewed {
                        addr: b.addr,
                        expires: b.expires,
                        by: granter(b),
                    },
                    BindingState::Offered => continue,
                    _ => Event::Ended { addr: b.addr },
                };
                if tx.try_send(ev).is_err() {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                ddns.note_dropped(dropped);
            }
        }
        inner(bs)
    })
}

fn granter(b: &Binding) -> Granter {
    if b.from_partner {
        Granter::Partner
    } else {
        Granter::Local
    }
}

/// The client identity of a binding, as the DHCID is computed over it (RFC 4701: the client
/// identifier when the client sent one, else the hardware address).
fn identity(b: &Binding) -> Identity {
    Identity {
        htype: b.htype,
        hw: b.hw().to_vec(),
        client_id: b.client_id.then(|| b.client.as_bytes().to_vec()),
    }
}

/// Start the thread that turns the engines' [`NameNote`]s into [`Event::Granted`]; returns the
/// engines' end of the channel.
pub fn spawn_name_feed(ddns: Arc<Ddns>) -> std::io::Result<Sender<NameNote>> {
    let (tx, rx): (Sender<NameNote>, Receiver<NameNote>) = crossbeam_channel::bounded(NAME_CHANNEL);
    let out = ddns.sender();
    std::thread::Builder::new()
        .name("tandem-ddns-feed".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                // Take what is queued, then let the next notes gather (one wake-up for many
                // under load, as the updater thread does).
                for note in std::iter::once(first).chain(rx.try_iter()) {
                    let Ok(fqdn) = tandem_ddns::Name::from_ascii(note.name.as_str()) else {
                        continue; // the engine builds only valid names
                    };
                    let b = note.binding;
                    let ev = Event::Granted {
                        addr: b.addr,
                        fqdn,
                        identity: identity(&b),
                        expires: b.expires,
                        forward: note.forward,
                        by: Granter::Local,
                    };
                    if out.send(ev).is_err() {
                        return; // the updater stopped
                    }
                }
                std::thread::sleep(crate::ddns::GATHER);
            }
        })?;
    Ok(tx)
}

/// Dynamic DNS's side of the failover links.
pub struct Names {
    ddns: Arc<Ddns>,
    tx: Sender<Event>,
}

impl Names {
    /// Names exchanged through `ddns`.
    pub fn new(ddns: Arc<Ddns>) -> Names {
        let tx = ddns.sender();
        Names { ddns, tx }
    }
}

impl NameExchange for Names {
    fn name_of(&self, addr: Ipv4Addr) -> Option<(String, u16)> {
        self.ddns.name_of(addr)
    }

    fn partner_named(&self, u: &BindingUpdate) {
        let Some(d) = &u.ddns else {
            return;
        };
        if u.binding_status != crate::failover::message::BindingStatus::Active {
            return;
        }
        let Some(fqdn) = std::str::from_utf8(&d.name)
            .ok()
            .filter(|n| !n.is_empty())
            .and_then(|n| tandem_ddns::Name::from_ascii(n).ok())
        else {
            return;
        };
        let (htype, hw) = u
            .chaddr
            .as_ref()
            .map_or((0, Vec::new()), |h| (h.htype, h.addr.clone()));
        let ev = Event::Granted {
            addr: u.assigned_ip,
            fqdn,
            identity: Identity {
                htype,
                hw,
                client_id: u.client_id.clone(),
            },
            expires: u.lease_expiration.unwrap_or(0),
            // Flag C: the client updates its own A record.
            forward: d.flags.0 & DdnsFlags::C.0 == 0,
            by: Granter::Partner,
        };
        if self.tx.try_send(ev).is_err() {
            self.ddns.note_dropped(1);
        }
    }
}

/// Whether this server must act for the names its partner granted in a scope: yes in
/// PARTNER-DOWN, and for a scope no relationship shares; no until the failover threads run
/// (`fo` is set once they do).
pub fn takeover(
    fo: Arc<OnceLock<Arc<FailoverManager>>>,
) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    Arc::new(move |scope: &str| {
        let Some(fo) = fo.get() else {
            return false;
        };
        match fo
            .statuses()
            .into_iter()
            .find(|s| s.scopes.iter().any(|n| n == scope))
        {
            Some(s) => s.state == "PARTNER-DOWN",
            None => true,
        }
    })
}
