//! Tandem's control plane.
//!
//! The failover protocol ([`failover`]: the draft-12 message codec as ISC dhcpd 4.4 speaks it and
//! the sans-IO partner state machine), configuration ([`config`]: TOML to validated
//! [`tandem_dataplane::scope::ServerSettings`] with line-and-key errors), the admin endpoint
//! ([`admin`], with Prometheus [`metrics`]), systemd readiness notification ([`notify`]) and the
//! daemon wiring ([`daemon`]) behind the `tandemd` and `tandemctl` binaries.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alarms;
pub mod config;
pub mod daemon;
pub mod ddns;
pub mod ddns_feed;
pub mod failover;
pub mod import;
pub mod manpage;
pub mod metrics;
pub mod notify;
pub mod udp_backend;
pub mod xdp_backend;
