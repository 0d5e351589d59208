//! Dynamic DNS updates for Tandem's DHCP clients (issue #16).
//!
//! The protocol core is sans-IO:
//!
//! * [`wire`]: DNS messages (RFC 1035) as far as UPDATE (RFC 2136) and its responses need;
//!   decoding never panics and reports precise errors.
//! * [`update`]: RFC 2136 prerequisites and updates as types.
//! * [`dhcid`]: DHCID RDATA (RFC 4701): SHA-256 of the client identity and its name.
//! * [`tsig`]: TSIG (RFC 8945) signing and verification with HMAC-SHA1/224/256/384/512, and
//!   BIND key files.
//! * [`rfc4703`]: the conflict-resolution transactions for a forward and a reverse name, and
//!   the state machine that orders them.
//!
//! [`client`] is the one module that does I/O: a blocking UDP/TCP sender with timeout and
//! retransmission, for a background updater thread.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use tandem_ddns::{Binding, ConflictMode, Identity, Name, Plan, Rcode, Step};
//!
//! let binding = Binding::new(
//!     Name::from_ascii("host.tdm.test").unwrap(),
//!     Name::from_ascii("tdm.test").unwrap(),
//!     Ipv4Addr::new(10, 77, 0, 5),
//!     Name::from_ascii("77.10.in-addr.arpa").unwrap(),
//!     &Identity::for_dhcpv4(1, &[0x52, 0x54, 0, 1, 2, 3], None),
//!     300,
//!     ConflictMode::Rfc4703,
//! )
//! .unwrap();
//! let mut plan = Plan::add(binding);
//! let first = plan.next_message(0x1234).unwrap().encode().unwrap();
//! assert_eq!(first[2] >> 3, 5, "opcode UPDATE");
//! // The name was taken: next, replace the A only if the DHCID is ours.
//! assert_eq!(plan.advance(Rcode::YXDOMAIN), Some(Step::ForwardReplace));
//! ```

#![forbid(unsafe_code)]

pub mod base64;
pub mod client;
pub mod dhcid;
pub mod name;
pub mod rfc4703;
pub mod tsig;
pub mod update;
pub mod wire;

pub use client::{Client, ClientConfig, Exchange, Failure, Outcome, StepFailure};
pub use dhcid::{Dhcid, Identity};
pub use name::Name;
pub use rfc4703::{Binding, ConflictMode, Operation, Plan, PlanResult, Step};
pub use tsig::{Algorithm, TsigKey};
pub use update::{Prerequisite, Update};
pub use wire::{Class, Message, RData, Rcode, Record, RrType};
