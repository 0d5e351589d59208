//! The DHCP failover protocol (draft-ietf-dhc-failover-12 as ISC dhcpd 4.4 implements it).
//!
//! Pure library: no sockets, no threads, no clock. [`message`] holds the typed messages,
//! [`codec`] turns them into bytes and back (with TCP stream framing and the message digest),
//! and [`peer`] is the per-relationship state machine, driven with `now` passed in.

pub mod codec;
pub mod message;
pub mod peer;

pub use codec::{Codec, CodecError, Decoded, Dialect, DigestStatus, FrameDecoder};
pub use message::{
    BindingAck, BindingStatus, BindingUpdate, Body, BucketMap, Message, MessageType, RejectReason,
    ServerFlags, ServerState,
};
pub use peer::{
    Event, Judgement, OwnershipSnapshot, Peer, PeerConfig, PeerState, PersistedState, Start,
    StateStore,
};
