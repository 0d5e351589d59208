//! The DHCP failover protocol (draft-ietf-dhc-failover-12 as ISC dhcpd 4.4 implements it).
//!
//! [`message`] holds the typed messages, [`codec`] turns them into bytes and back (with TCP stream
//! framing and the message digest), and [`peer`] is the per-relationship state machine, driven
//! with `now` passed in: those three are pure (no sockets, no threads, no clock). [`link`] is the
//! I/O layer: one TCP connection per relationship (port 647), reconnection, framing and timers
//! around a `Peer`, with the clock read there and nowhere else.

pub mod codec;
pub mod filestore;
pub mod link;
pub mod manager;
pub mod message;
pub mod peer;
pub mod service;
pub mod tls;
pub mod workers;

pub use codec::{Codec, CodecError, Decoded, Dialect, DigestStatus, FrameDecoder};
pub use message::{
    BindingAck, BindingStatus, BindingUpdate, Body, BucketMap, Message, MessageType, RejectReason,
    ServerFlags, ServerState,
};
pub use peer::{
    Event, Judgement, OwnershipSnapshot, Peer, PeerConfig, PeerState, PersistedState, Start,
    StateStore,
};
