//! Tandem's DHCPv4 data plane.
//!
//! Everything a worker core needs to answer DHCP clients: zero-copy wire views of DHCP messages
//! ([`wire`]), the RFC 3074 load-balancing hash ([`hash`]), scope and policy definitions
//! ([`scope`]), per-worker address shards ([`pool`]), the per-core DHCP logic ([`engine`]), the
//! durable per-worker lease journal ([`journal`]), and the UDP-socket backend ([`udp`], [`worker`]).
//!
//! The pure parts (`wire`, `hash`, `engine`, `pool`) take no sockets, no threads and no clock:
//! the current [`time::Time`] is passed in. The failover control plane plugs in through
//! [`authority::Authority`] (who answers which client, from which pool, for how long) and reads the
//! binding updates the engine emits.
//!
//! Entry type: [`engine::Engine`].
#![deny(unsafe_code)]

pub mod authority;
pub mod binding;
pub mod engine;
pub mod frame;
pub mod hash;
pub mod journal;
pub mod pool;
pub mod scope;
pub mod shards;
pub mod time;
pub mod udp;
pub mod wire;
pub mod worker;
pub mod xdp_worker;
#[allow(unsafe_code)]
pub mod xsk;
