//! RFC 4703 conflict resolution: the UPDATE transactions a DHCP server sends for a client's
//! forward name (A + DHCID) and reverse name (PTR + DHCID), and the order they are sent in.
//!
//! [`Binding`] builds each step's message; [`Plan`] is the sans-IO state machine that says which
//! step comes next from the response code of the previous one:
//!
//! * adding: (a) add A + DHCID if the name is not in use; (b) on YXDOMAIN, replace the A only if
//!   the name's DHCID RRset is ours (NXRRSET: another client's name, stop, reverse untouched);
//!   then the reverse name: delete PTR and DHCID RRsets, add PTR + DHCID.
//! * removing: delete our A only if our DHCID is there; then delete the DHCID if no A / AAAA
//!   remains; then the reverse name's PTR and DHCID, if its DHCID is ours.
//!
//! [`ConflictMode::NoCheckWithDhcid`] and [`ConflictMode::NoCheckWithoutDhcid`] drop the DHCID
//! prerequisites (the server simply overwrites), the latter writing no DHCID records at all.

use std::net::Ipv4Addr;

use crate::dhcid::{Dhcid, Identity};
use crate::name::Name;
use crate::update::{Prerequisite, Update};
use crate::wire::{Message, RData, Rcode, RrType};

/// How names held by another client are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConflictMode {
    /// RFC 4703: DHCID prerequisites; never take over another client's name.
    #[default]
    Rfc4703,
    /// No prerequisites: overwrite A / PTR, and keep the DHCID records up to date.
    NoCheckWithDhcid,
    /// No prerequisites and no DHCID records.
    NoCheckWithoutDhcid,
}

impl ConflictMode {
    fn with_dhcid(self) -> bool {
        self != ConflictMode::NoCheckWithoutDhcid
    }
}

/// One UPDATE transaction of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// (a) Forward zone: add A + DHCID; RFC 4703 mode requires the name not to be in use.
    ForwardAdd,
    /// (b) Forward zone: replace the A RRset, only if the DHCID RRset is ours.
    ForwardReplace,
    /// (c1) Forward zone: delete our A RR (RFC 4703 mode: only if our DHCID is there).
    ForwardRemoveAddress,
    /// (c2) Forward zone: delete the DHCID RRset if no A or AAAA RRset remains.
    ForwardRemoveDhcid,
    /// Reverse zone: delete the PTR (and DHCID) RRsets, add PTR (+ DHCID).
    ReverseAdd,
    /// Reverse zone: delete the PTR and DHCID RRsets (RFC 4703 mode: only if the DHCID is
    /// ours).
    ReverseRemove,
}

impl Step {
    /// True for the steps sent to the reverse zone.
    pub fn is_reverse(self) -> bool {
        matches!(self, Step::ReverseAdd | Step::ReverseRemove)
    }
}

/// Why a binding could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The name does not lie in the zone it is to be updated in.
    #[error("{name} is not in zone {zone}")]
    NotInZone {
        /// The name.
        name: Name,
        /// The zone.
        zone: Name,
    },
}

/// A client's name-to-address binding, and everything needed to publish or withdraw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    fqdn: Name,
    forward_zone: Name,
    address: Ipv4Addr,
    reverse_name: Name,
    reverse_zone: Name,
    dhcid: Dhcid,
    ttl: u32,
    mode: ConflictMode,
}

impl Binding {
    /// A binding of `fqdn` (in `forward_zone`) to `address` (whose `in-addr.arpa` name must
    /// lie in `reverse_zone`) for the client `identity`, published with `ttl`.
    pub fn new(
        fqdn: Name,
        forward_zone: Name,
        address: Ipv4Addr,
        reverse_zone: Name,
        identity: &Identity,
        ttl: u32,
        mode: ConflictMode,
    ) -> Result<Binding, BindingError> {
        if !fqdn.is_subdomain_of(&forward_zone) {
            return Err(BindingError::NotInZone {
                name: fqdn,
                zone: forward_zone,
            });
        }
        let reverse_name = Name::reverse_ipv4(address);
        if !reverse_name.is_subdomain_of(&reverse_zone) {
            return Err(BindingError::NotInZone {
                name: reverse_name,
                zone: reverse_zone,
            });
        }
        let dhcid = Dhcid::compute(identity, &fqdn);
        Ok(Binding {
            fqdn,
            forward_zone,
            address,
            reverse_name,
            reverse_zone,
            dhcid,
            ttl,
            mode,
        })
    }

    /// The forward name.
    pub fn fqdn(&self) -> &Name {
        &self.fqdn
    }

    /// The address.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The reverse name `d.c.b.a.in-addr.arpa.`.
    pub fn reverse_name(&self) -> &Name {
        &self.reverse_name
    }

    /// The client's DHCID for this name.
    pub fn dhcid(&self) -> &Dhcid {
        &self.dhcid
    }

    /// The conflict mode.
    pub fn mode(&self) -> ConflictMode {
        self.mode
    }

    /// The zone a step is sent to.
    pub fn zone_of(&self, step: Step) -> &Name {
        if step.is_reverse() {
            &self.reverse_zone
        } else {
            &self.forward_zone
        }
    }

    fn our_dhcid(&self, name: &Name) -> Prerequisite {
        Prerequisite::RrsetEquals {
            name: name.clone(),
            rtype: RrType::DHCID,
            rdata: vec![RData::Dhcid(self.dhcid.clone())],
        }
    }

    fn add(&self, name: &Name, rdata: RData) -> Update {
        Update::Add {
            name: name.clone(),
            ttl: self.ttl,
            rdata,
        }
    }

    fn delete(name: &Name, rtype: RrType) -> Update {
        Update::DeleteRrset {
            name: name.clone(),
            rtype,
        }
    }

    /// The UPDATE message of `step`, with transaction ID `id`.
    pub fn message(&self, step: Step, id: u16) -> Message {
        let mut m = Message::update(id, self.zone_of(step).clone());
        let (pre, upd) = self.sections(step);
        for p in &pre {
            m.push_prerequisite(p);
        }
        for u in &upd {
            m.push_update(u);
        }
        m
    }

    /// The prerequisites and updates of `step`.
    pub fn sections(&self, step: Step) -> (Vec<Prerequisite>, Vec<Update>) {
        let f = &self.fqdn;
        let r = &self.reverse_name;
        let a = RData::A(self.address);
        let dhcid = RData::Dhcid(self.dhcid.clone());
        let checked = self.mode == ConflictMode::Rfc4703;
        let with_dhcid = self.mode.with_dhcid();
        let mut pre = Vec::new();
        let mut upd = Vec::new();
        match step {
            Step::ForwardAdd => {
                if checked {
                    pre.push(Prerequisite::NameNotInUse(f.clone()));
                } else {
                    upd.push(Binding::delete(f, RrType::A));
                    if with_dhcid {
                        upd.push(Binding::delete(f, RrType::DHCID));
                    }
                }
                upd.push(self.add(f, a));
                if with_dhcid {
                    upd.push(self.add(f, dhcid));
                }
            }
            Step::ForwardReplace => {
                if checked {
                    pre.push(self.our_dhcid(f));
                }
                upd.push(Binding::delete(f, RrType::A));
                upd.push(self.add(f, a));
            }
            Step::ForwardRemoveAddress => {
                if checked {
                    pre.push(self.our_dhcid(f));
                }
                upd.push(Update::DeleteRr {
                    name: f.clone(),
                    rdata: a,
                });
            }
            Step::ForwardRemoveDhcid => {
                if checked {
                    pre.push(self.our_dhcid(f));
                }
                for t in [RrType::A, RrType::AAAA] {
                    pre.push(Prerequisite::RrsetNotExists {
                        name: f.clone(),
                        rtype: t,
                    });
                }
                upd.push(Binding::delete(f, RrType::DHCID));
            }
            Step::ReverseAdd => {
                upd.push(Binding::delete(r, RrType::PTR));
                if with_dhcid {
                    upd.push(Binding::delete(r, RrType::DHCID));
                }
                upd.push(self.add(r, RData::Ptr(f.clone())));
                if with_dhcid {
                    upd.push(self.add(r, dhcid));
                }
            }
            Step::ReverseRemove => {
                if checked {
                    pre.push(self.our_dhcid(r));
                }
                upd.push(Binding::delete(r, RrType::PTR));
                if with_dhcid {
                    upd.push(Binding::delete(r, RrType::DHCID));
                }
            }
        }
        (pre, upd)
    }
}

/// What a plan is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Publishing a binding (lease granted or renewed).
    Add,
    /// Withdrawing it (lease released or expired).
    Remove,
}

/// How a plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlanResult {
    /// Every step ran; for a removal this includes names found not to be ours (left alone),
    /// which [`Plan::history`] shows as NXRRSET.
    Completed,
    /// Adding: the forward name belongs to another client (its DHCID differs); nothing was
    /// changed, and the reverse name was left alone (RFC 4703 §5.3.1).
    Conflict,
    /// A step got a response code the procedure has no continuation for.
    Failed {
        /// The step.
        step: Step,
        /// Its response code.
        rcode: Rcode,
    },
}

/// The RFC 4703 procedure for one binding as a state machine: [`Plan::next_message`] gives the
/// message to send, [`Plan::advance`] takes the response code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    binding: Binding,
    operation: Operation,
    current: Option<Step>,
    result: Option<PlanResult>,
    history: Vec<(Step, Rcode)>,
}

impl Plan {
    /// Publishing `binding`.
    pub fn add(binding: Binding) -> Plan {
        Plan {
            binding,
            operation: Operation::Add,
            current: Some(Step::ForwardAdd),
            result: None,
            history: Vec::new(),
        }
    }

    /// Withdrawing `binding`.
    pub fn remove(binding: Binding) -> Plan {
        Plan {
            binding,
            operation: Operation::Remove,
            current: Some(Step::ForwardRemoveAddress),
            result: None,
            history: Vec::new(),
        }
    }

    /// Publishing only the PTR (and its DHCID) of `binding`: the client updates its own A
    /// record (RFC 4702 flag S clear).
    pub fn add_reverse_only(binding: Binding) -> Plan {
        Plan {
            binding,
            operation: Operation::Add,
            current: Some(Step::ReverseAdd),
            result: None,
            history: Vec::new(),
        }
    }

    /// Withdrawing only the PTR of `binding` (the client owns its A record).
    pub fn remove_reverse_only(binding: Binding) -> Plan {
        Plan {
            binding,
            operation: Operation::Remove,
            current: Some(Step::ReverseRemove),
            result: None,
            history: Vec::new(),
        }
    }

    /// The binding.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// Add or remove.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The step waiting for its response, `None` once the plan has ended.
    pub fn current_step(&self) -> Option<Step> {
        self.current
    }

    /// The current step's message with transaction ID `id`, `None` once the plan has ended.
    pub fn next_message(&self, id: u16) -> Option<Message> {
        self.current.map(|s| self.binding.message(s, id))
    }

    /// Every step sent so far with its response code.
    pub fn history(&self) -> &[(Step, Rcode)] {
        &self.history
    }

    /// How the plan ended, `None` while it runs.
    pub fn result(&self) -> Option<PlanResult> {
        self.result
    }

    /// Feeds the current step's response code; returns the next step, or `None` when the plan
    /// has ended (see [`Plan::result`]). Does nothing once ended.
    pub fn advance(&mut self, rcode: Rcode) -> Option<Step> {
        let step = self.current?;
        self.history.push((step, rcode));
        let checked = self.binding.mode == ConflictMode::Rfc4703;
        let with_dhcid = self.binding.mode.with_dhcid();
        let next = match (step, rcode) {
            (Step::ForwardAdd, Rcode::NOERROR) => Ok(Step::ReverseAdd),
            (Step::ForwardAdd, Rcode::YXDOMAIN) if checked => Ok(Step::ForwardReplace),
            (Step::ForwardReplace, Rcode::NOERROR) => Ok(Step::ReverseAdd),
            (Step::ForwardReplace, Rcode::NXRRSET) => Err(PlanResult::Conflict),
            (Step::ReverseAdd, Rcode::NOERROR) => Err(PlanResult::Completed),
            // Not our name (NXRRSET): leave the forward name, still clean up the reverse.
            (Step::ForwardRemoveAddress, Rcode::NOERROR) if with_dhcid => {
                Ok(Step::ForwardRemoveDhcid)
            }
            (Step::ForwardRemoveAddress, Rcode::NOERROR) => Ok(Step::ReverseRemove),
            (Step::ForwardRemoveAddress, Rcode::NXRRSET) if checked => Ok(Step::ReverseRemove),
            // YXRRSET: other addresses remain at the name; NXRRSET: the DHCID changed hands.
            (Step::ForwardRemoveDhcid, Rcode::NOERROR | Rcode::YXRRSET | Rcode::NXRRSET) => {
                Ok(Step::ReverseRemove)
            }
            (Step::ReverseRemove, Rcode::NOERROR) => Err(PlanResult::Completed),
            (Step::ReverseRemove, Rcode::NXRRSET) if checked => Err(PlanResult::Completed),
            (step, rcode) => Err(PlanResult::Failed { step, rcode }),
        };
        match next {
            Ok(s) => self.current = Some(s),
            Err(r) => {
                self.current = None;
                self.result = Some(r);
            }
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_only_plans_touch_only_the_reverse_zone() {
        let mut p = Plan::add_reverse_only(binding(ConflictMode::Rfc4703));
        assert_eq!(p.current_step(), Some(Step::ReverseAdd));
        assert_eq!(p.advance(Rcode::NOERROR), None);
        assert_eq!(p.result(), Some(PlanResult::Completed));
        let mut p = Plan::remove_reverse_only(binding(ConflictMode::Rfc4703));
        assert_eq!(p.current_step(), Some(Step::ReverseRemove));
        assert!(p.current_step().unwrap().is_reverse());
        assert_eq!(p.advance(Rcode::NXRRSET), None, "not ours: left alone");
        assert_eq!(p.result(), Some(PlanResult::Completed));
    }
    use crate::wire::{Class, Record};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn binding(mode: ConflictMode) -> Binding {
        Binding::new(
            n("host.tdm.test"),
            n("tdm.test"),
            Ipv4Addr::new(10, 77, 0, 5),
            n("77.10.in-addr.arpa"),
            &Identity::ClientIdentifier(vec![1, 2, 3, 4, 5, 6, 7]),
            300,
            mode,
        )
        .unwrap()
    }

    fn shape(records: &[Record]) -> Vec<(String, RrType, Class, bool)> {
        records
            .iter()
            .map(|r| {
                (
                    r.name.to_string(),
                    r.rtype,
                    r.class,
                    r.rdata != RData::Empty,
                )
            })
            .collect()
    }

    #[test]
    fn forward_add_requires_name_not_in_use() {
        let b = binding(ConflictMode::Rfc4703);
        let m = b.message(Step::ForwardAdd, 7);
        assert_eq!(m.zone(), Some(&n("tdm.test")));
        assert_eq!(
            shape(m.prerequisites()),
            [("host.tdm.test.".into(), RrType::ANY, Class::NONE, false)]
        );
        assert_eq!(
            shape(m.updates()),
            [
                ("host.tdm.test.".into(), RrType::A, Class::IN, true),
                ("host.tdm.test.".into(), RrType::DHCID, Class::IN, true)
            ]
        );
        assert_eq!(m.updates()[0].ttl, 300);
        assert_eq!(m.updates()[1].rdata, RData::Dhcid(b.dhcid().clone()));
    }

    #[test]
    fn replace_and_remove_check_our_dhcid() {
        let b = binding(ConflictMode::Rfc4703);
        let ours = ("host.tdm.test.".to_string(), RrType::DHCID, Class::IN, true);
        let m = b.message(Step::ForwardReplace, 1);
        assert_eq!(shape(m.prerequisites()), std::slice::from_ref(&ours));
        assert_eq!(m.prerequisites()[0].rdata, RData::Dhcid(b.dhcid().clone()));
        assert_eq!(
            shape(m.updates()),
            [
                ("host.tdm.test.".into(), RrType::A, Class::ANY, false),
                ("host.tdm.test.".into(), RrType::A, Class::IN, true)
            ]
        );
        let m = b.message(Step::ForwardRemoveAddress, 1);
        assert_eq!(shape(m.prerequisites()), std::slice::from_ref(&ours));
        assert_eq!(
            shape(m.updates()),
            [("host.tdm.test.".into(), RrType::A, Class::NONE, true)]
        );
        let m = b.message(Step::ForwardRemoveDhcid, 1);
        assert_eq!(
            shape(m.prerequisites()),
            [
                ours,
                ("host.tdm.test.".into(), RrType::A, Class::NONE, false),
                ("host.tdm.test.".into(), RrType::AAAA, Class::NONE, false)
            ]
        );
        assert_eq!(
            shape(m.updates()),
            [("host.tdm.test.".into(), RrType::DHCID, Class::ANY, false)]
        );
    }

    #[test]
    fn reverse_steps() {
        let b = binding(ConflictMode::Rfc4703);
        let rev = "5.0.77.10.in-addr.arpa.".to_string();
        let m = b.message(Step::ReverseAdd, 1);
        assert_eq!(m.zone(), Some(&n("77.10.in-addr.arpa")));
        assert!(m.prerequisites().is_empty());
        assert_eq!(
            shape(m.updates()),
            [
                (rev.clone(), RrType::PTR, Class::ANY, false),
                (rev.clone(), RrType::DHCID, Class::ANY, false),
                (rev.clone(), RrType::PTR, Class::IN, true),
                (rev.clone(), RrType::DHCID, Class::IN, true)
            ]
        );
        assert_eq!(m.updates()[2].rdata, RData::Ptr(n("host.tdm.test")));
        let m = b.message(Step::ReverseRemove, 1);
        assert_eq!(
            shape(m.prerequisites()),
            [(rev.clone(), RrType::DHCID, Class::IN, true)]
        );
        assert_eq!(
            shape(m.updates()),
            [
                (rev.clone(), RrType::PTR, Class::ANY, false),
                (rev, RrType::DHCID, Class::ANY, false)
            ]
        );
    }

    #[test]
    fn no_check_modes_have_no_dhcid_prerequisites() {
        for mode in [
            ConflictMode::NoCheckWithDhcid,
            ConflictMode::NoCheckWithoutDhcid,
        ] {
            let b = binding(mode);
            for step in [
                Step::ForwardAdd,
                Step::ForwardRemoveAddress,
                Step::ForwardRemoveDhcid,
                Step::ReverseAdd,
                Step::ReverseRemove,
            ] {
                if step == Step::ForwardRemoveDhcid && mode == ConflictMode::NoCheckWithoutDhcid {
                    // Never sent in this mode (the removal plan skips it).
                    continue;
                }
                let m = b.message(step, 1);
                assert!(
                    m.prerequisites().iter().all(|r| r.rtype != RrType::DHCID),
                    "{mode:?} {step:?}"
                );
                let writes_dhcid = m.updates().iter().any(|r| r.rtype == RrType::DHCID);
                if mode == ConflictMode::NoCheckWithoutDhcid {
                    assert!(!writes_dhcid, "{step:?}");
                }
            }
            let m = b.message(Step::ForwardAdd, 1);
            assert!(m.prerequisites().is_empty());
            assert_eq!(
                m.updates()[0].class,
                Class::ANY,
                "deletes the old A RRset first"
            );
        }
    }

    #[test]
    fn add_plan_paths() {
        let mut p = Plan::add(binding(ConflictMode::Rfc4703));
        assert_eq!(p.current_step(), Some(Step::ForwardAdd));
        assert_eq!(p.advance(Rcode::NOERROR), Some(Step::ReverseAdd));
        assert_eq!(p.advance(Rcode::NOERROR), None);
        assert_eq!(p.result(), Some(PlanResult::Completed));
        assert_eq!(p.advance(Rcode::NOERROR), None, "ended plans stay ended");

        let mut p = Plan::add(binding(ConflictMode::Rfc4703));
        assert_eq!(p.advance(Rcode::YXDOMAIN), Some(Step::ForwardReplace));
        assert_eq!(p.advance(Rcode::NXRRSET), None);
        assert_eq!(p.result(), Some(PlanResult::Conflict));
        assert_eq!(
            p.history(),
            [
                (Step::ForwardAdd, Rcode::YXDOMAIN),
                (Step::ForwardReplace, Rcode::NXRRSET)
            ]
        );

        let mut p = Plan::add(binding(ConflictMode::Rfc4703));
        p.advance(Rcode::YXDOMAIN);
        assert_eq!(p.advance(Rcode::NOERROR), Some(Step::ReverseAdd));
        p.advance(Rcode::SERVFAIL);
        assert_eq!(
            p.result(),
            Some(PlanResult::Failed {
                step: Step::ReverseAdd,
                rcode: Rcode::SERVFAIL
            })
        );
        assert_eq!(p.next_message(1), None);

        // Without checks YXDOMAIN cannot happen; if it does, it is a failure.
        let mut p = Plan::add(binding(ConflictMode::NoCheckWithDhcid));
        p.advance(Rcode::YXDOMAIN);
        assert!(matches!(p.result(), Some(PlanResult::Failed { .. })));
    }

    #[test]
    fn remove_plan_paths() {
        let mut p = Plan::remove(binding(ConflictMode::Rfc4703));
        assert_eq!(p.advance(Rcode::NOERROR), Some(Step::ForwardRemoveDhcid));
        assert_eq!(p.advance(Rcode::NOERROR), Some(Step::ReverseRemove));
        assert_eq!(p.advance(Rcode::NOERROR), None);
        assert_eq!(p.result(), Some(PlanResult::Completed));

        // The forward name is not ours: skip to the reverse; its DHCID is not ours either.
        let mut p = Plan::remove(binding(ConflictMode::Rfc4703));
        assert_eq!(p.advance(Rcode::NXRRSET), Some(Step::ReverseRemove));
        assert_eq!(p.advance(Rcode::NXRRSET), None);
        assert_eq!(p.result(), Some(PlanResult::Completed));

        // Other addresses remain at the name.
        let mut p = Plan::remove(binding(ConflictMode::Rfc4703));
        p.advance(Rcode::NOERROR);
        assert_eq!(p.advance(Rcode::YXRRSET), Some(Step::ReverseRemove));

        let mut p = Plan::remove(binding(ConflictMode::NoCheckWithoutDhcid));
        assert_eq!(p.advance(Rcode::NOERROR), Some(Step::ReverseRemove));

        let mut p = Plan::remove(binding(ConflictMode::Rfc4703));
        p.advance(Rcode::REFUSED);
        assert_eq!(
            p.result(),
            Some(PlanResult::Failed {
                step: Step::ForwardRemoveAddress,
                rcode: Rcode::REFUSED
            })
        );
    }

    #[test]
    fn binding_checks_zones() {
        let id = Identity::ClientIdentifier(vec![1]);
        assert_eq!(
            Binding::new(
                n("host.other.test"),
                n("tdm.test"),
                Ipv4Addr::new(10, 77, 0, 5),
                n("77.10.in-addr.arpa"),
                &id,
                300,
                ConflictMode::Rfc4703
            ),
            Err(BindingError::NotInZone {
                name: n("host.other.test"),
                zone: n("tdm.test")
            })
        );
        assert!(matches!(
            Binding::new(
                n("host.tdm.test"),
                n("tdm.test"),
                Ipv4Addr::new(10, 78, 0, 5),
                n("77.10.in-addr.arpa"),
                &id,
                300,
                ConflictMode::Rfc4703
            ),
            Err(BindingError::NotInZone { .. })
        ));
    }
}
