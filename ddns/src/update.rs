//! RFC 2136 prerequisites (§2.4) and updates (§2.5) as types, and their record encodings.

use crate::name::Name;
use crate::wire::{Class, Message, RData, Record, RrType};

/// A prerequisite (RFC 2136 §2.4). `Exists` / `NotExists` forms carry no RDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prerequisite {
    /// §2.4.1: an RRset of this type exists at the name, whatever its value (class ANY).
    RrsetExists {
        /// Owner.
        name: Name,
        /// Type.
        rtype: RrType,
    },
    /// §2.4.2: an RRset of this type exists and holds exactly these RRs (class of the zone).
    RrsetEquals {
        /// Owner.
        name: Name,
        /// Type.
        rtype: RrType,
        /// The whole RRset.
        rdata: Vec<RData>,
    },
    /// §2.4.3: no RRset of this type exists at the name (class NONE).
    RrsetNotExists {
        /// Owner.
        name: Name,
        /// Type.
        rtype: RrType,
    },
    /// §2.4.4: the name owns at least one RR (type ANY, class ANY).
    NameInUse(Name),
    /// §2.4.5: the name owns no RR at all (type ANY, class NONE).
    NameNotInUse(Name),
}

/// An update (RFC 2136 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// §2.5.1: add an RR (class of the zone).
    Add {
        /// Owner.
        name: Name,
        /// TTL in seconds.
        ttl: u32,
        /// Data; its variant gives the type (`RData::Raw` has none and goes out as TYPE0:
        /// use the typed variants).
        rdata: RData,
    },
    /// §2.5.2: delete the RRset of a type (class ANY).
    DeleteRrset {
        /// Owner.
        name: Name,
        /// Type.
        rtype: RrType,
    },
    /// §2.5.3: delete every RRset at a name (type ANY, class ANY).
    DeleteName(Name),
    /// §2.5.4: delete one RR from an RRset (class NONE).
    DeleteRr {
        /// Owner.
        name: Name,
        /// Data; its variant gives the type (`RData::Raw` has none and goes out as TYPE0:
        /// use the typed variants).
        rdata: RData,
    },
}

/// The type a piece of typed RDATA belongs to (`Raw` and `Empty` have none).
pub fn rdata_type(rdata: &RData) -> Option<RrType> {
    match rdata {
        RData::A(_) => Some(RrType::A),
        RData::Ptr(_) => Some(RrType::PTR),
        RData::Dhcid(_) => Some(RrType::DHCID),
        RData::Tsig(_) => Some(RrType::TSIG),
        RData::Empty | RData::Raw(_) => None,
    }
}

fn rec(name: &Name, rtype: RrType, class: Class, ttl: u32, rdata: RData) -> Record {
    Record {
        name: name.clone(),
        rtype,
        class,
        ttl,
        rdata,
    }
}

/// Raw RDATA has no type of its own: `rdata_type` is `None`, and the builders below use the
/// type 0 — callers use the typed variants for everything this crate builds.
fn type_of(rdata: &RData) -> RrType {
    rdata_type(rdata).unwrap_or(RrType(0))
}

impl Prerequisite {
    /// The records encoding this prerequisite (several for `RrsetEquals`), for zone class
    /// `zclass`.
    pub fn records(&self, zclass: Class) -> Vec<Record> {
        match self {
            Prerequisite::RrsetExists { name, rtype } => {
                vec![rec(name, *rtype, Class::ANY, 0, RData::Empty)]
            }
            Prerequisite::RrsetEquals { name, rtype, rdata } => rdata
                .iter()
                .map(|d| rec(name, *rtype, zclass, 0, d.clone()))
                .collect(),
            Prerequisite::RrsetNotExists { name, rtype } => {
                vec![rec(name, *rtype, Class::NONE, 0, RData::Empty)]
            }
            Prerequisite::NameInUse(name) => {
                vec![rec(name, RrType::ANY, Class::ANY, 0, RData::Empty)]
            }
            Prerequisite::NameNotInUse(name) => {
                vec![rec(name, RrType::ANY, Class::NONE, 0, RData::Empty)]
            }
        }
    }
}

impl Update {
    /// The record encoding this update, for zone class `zclass`.
    pub fn record(&self, zclass: Class) -> Record {
        match self {
            Update::Add { name, ttl, rdata } => {
                rec(name, type_of(rdata), zclass, *ttl, rdata.clone())
            }
            Update::DeleteRrset { name, rtype } => rec(name, *rtype, Class::ANY, 0, RData::Empty),
            Update::DeleteName(name) => rec(name, RrType::ANY, Class::ANY, 0, RData::Empty),
            Update::DeleteRr { name, rdata } => {
                rec(name, type_of(rdata), Class::NONE, 0, rdata.clone())
            }
        }
    }

    /// Reads an update-section record back (RFC 2136 §3.4.2 classification); `None` for a
    /// record that is no valid update in a zone of class `zclass`.
    pub fn from_record(r: &Record, zclass: Class) -> Option<Update> {
        let empty = r.rdata == RData::Empty;
        match r.class {
            c if c == zclass && !empty && r.rtype != RrType::ANY => Some(Update::Add {
                name: r.name.clone(),
                ttl: r.ttl,
                rdata: r.rdata.clone(),
            }),
            Class::ANY if empty && r.ttl == 0 && r.rtype == RrType::ANY => {
                Some(Update::DeleteName(r.name.clone()))
            }
            Class::ANY if empty && r.ttl == 0 => Some(Update::DeleteRrset {
                name: r.name.clone(),
                rtype: r.rtype,
            }),
            Class::NONE if !empty && r.ttl == 0 && r.rtype != RrType::ANY => {
                Some(Update::DeleteRr {
                    name: r.name.clone(),
                    rdata: r.rdata.clone(),
                })
            }
            _ => None,
        }
    }
}

impl Message {
    /// Appends a prerequisite (zone class IN).
    pub fn push_prerequisite(&mut self, p: &Prerequisite) {
        self.answers.extend(p.records(Class::IN));
    }

    /// Appends an update (zone class IN).
    pub fn push_update(&mut self, u: &Update) {
        self.authority.push(u.record(Class::IN));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn prerequisite_encodings_follow_rfc2136() {
        let name = n("h.tdm.test");
        let cases = [
            (
                Prerequisite::RrsetExists {
                    name: name.clone(),
                    rtype: RrType::A,
                },
                (RrType::A, Class::ANY),
            ),
            (
                Prerequisite::RrsetNotExists {
                    name: name.clone(),
                    rtype: RrType::A,
                },
                (RrType::A, Class::NONE),
            ),
            (
                Prerequisite::NameInUse(name.clone()),
                (RrType::ANY, Class::ANY),
            ),
            (
                Prerequisite::NameNotInUse(name.clone()),
                (RrType::ANY, Class::NONE),
            ),
        ];
        for (p, (t, c)) in cases {
            let r = p.records(Class::IN);
            assert_eq!(r.len(), 1);
            assert_eq!(
                (r[0].rtype, r[0].class, r[0].ttl, &r[0].rdata),
                (t, c, 0, &RData::Empty)
            );
        }
        let eq = Prerequisite::RrsetEquals {
            name: name.clone(),
            rtype: RrType::A,
            rdata: vec![
                RData::A(Ipv4Addr::new(10, 0, 0, 1)),
                RData::A(Ipv4Addr::new(10, 0, 0, 2)),
            ],
        };
        let r = eq.records(Class::IN);
        assert_eq!(r.len(), 2);
        assert!(r
            .iter()
            .all(|r| r.class == Class::IN && r.ttl == 0 && r.rtype == RrType::A));
    }

    #[test]
    fn update_encodings_round_trip() {
        let name = n("h.tdm.test");
        let a = RData::A(Ipv4Addr::new(10, 77, 0, 9));
        let all = [
            Update::Add {
                name: name.clone(),
                ttl: 300,
                rdata: a.clone(),
            },
            Update::DeleteRrset {
                name: name.clone(),
                rtype: RrType::A,
            },
            Update::DeleteName(name.clone()),
            Update::DeleteRr {
                name: name.clone(),
                rdata: a.clone(),
            },
        ];
        let classes = [Class::IN, Class::ANY, Class::ANY, Class::NONE];
        for (u, c) in all.iter().zip(classes) {
            let r = u.record(Class::IN);
            assert_eq!(r.class, c, "{u:?}");
            assert_eq!(Update::from_record(&r, Class::IN).as_ref(), Some(u));
        }
        // Not an update: class NONE with empty RDATA.
        let bad = Record {
            name,
            rtype: RrType::A,
            class: Class::NONE,
            ttl: 0,
            rdata: RData::Empty,
        };
        assert_eq!(Update::from_record(&bad, Class::IN), None);
    }
}
