//! Typed failover messages (draft-ietf-dhc-failover-12, with ISC dhcpd 4.4's numbering).
//!
//! A [`Message`] is the 12-byte header's `time` and `xid` plus a [`Body`] that says which of the
//! twelve message types it is and carries that type's options as typed fields. The byte layout
//! lives in [`super::codec`]; this module has no I/O and no wire logic beyond the code tables.
//!
//! Conventions:
//! - Times are absolute `u32` seconds since the Unix epoch, as on the wire.
//! - Options a message type may omit are `Option<_>`; `None` means "not on the wire". An option
//!   that the codec requires for a type (see [`super::codec`]) is a plain field.
//! - Byte strings (relationship name, vendor class, message text) stay `Vec<u8>`: ISC sends
//!   ASCII, Windows UTF-16LE, and the codec must round-trip both unchanged.
//! - Every enumeration keeps codes it does not know in an `Other(code)` variant, so a peer can
//!   answer an unexpected value the way the protocol says (for example, ISC moves to SHUTDOWN on
//!   an unknown partner state) instead of the decoder dropping the link. `Other` never holds a
//!   listed code: `from_code` always picks the named variant.
//!
//! Message type numbering follows ISC (7 = UPDREQALL, 9 = UPDREQ); current Wireshark labels those
//! two the other way round.

use std::net::Ipv4Addr;

pub use tandem_dataplane::hash::BucketMap;

/// The failover protocol version this implementation speaks (option 20).
pub const PROTOCOL_VERSION: u8 = 1;

/// One failover message: the header's time and transaction id, and the typed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender's clock when it sent the message, seconds since the Unix epoch. Used for the
    /// clock-skew check on CONNECT and CONNECTACK.
    pub time: u32,
    /// Transaction id. A request takes the next value of a per-link counter; its answer echoes it
    /// (CONNECTACK ← CONNECT, BNDACK ← BNDUPD, POOLRESP ← POOLREQ, UPDDONE ← UPDREQ/UPDREQALL).
    /// ISC never uses 0 for a BNDUPD.
    pub xid: u32,
    /// The message type and its options.
    pub body: Body,
}

impl Message {
    /// A message with the given header fields and body.
    pub fn new(time: u32, xid: u32, body: Body) -> Message {
        Message { time, xid, body }
    }

    /// The message type of the body.
    pub fn message_type(&self) -> MessageType {
        self.body.message_type()
    }
}

/// The type-specific part of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// POOLREQ (1): the secondary asks the primary for BACKUP addresses. No options.
    PoolReq,
    /// POOLRESP (2): the answer to POOLREQ.
    PoolResp(PoolResp),
    /// BNDUPD (3): one or more binding updates.
    BndUpd(BndUpd),
    /// BNDACK (4): the acknowledgement (or rejection) of a BNDUPD's bindings.
    BndAck(BndAck),
    /// CONNECT (5): the primary opens the relationship on a new link.
    Connect(Connect),
    /// CONNECTACK (6): the secondary's answer to CONNECT.
    ConnectAck(ConnectAck),
    /// UPDREQALL (7): "send me every binding" (the sender lost its database). No options.
    UpdReqAll,
    /// UPDDONE (8): every binding asked for by UPDREQ/UPDREQALL was sent and acknowledged.
    /// No options; the xid echoes the request's.
    UpdDone,
    /// UPDREQ (9): "send me every binding I have not acknowledged". No options.
    UpdReq,
    /// STATE (10): the sender's failover state.
    State(State),
    /// CONTACT (11): keepalive. No options.
    Contact,
    /// DISCONNECT (12): the sender closes the link, with a reason.
    Disconnect(Disconnect),
}

impl Body {
    /// The message type of this body.
    pub fn message_type(&self) -> MessageType {
        match self {
            Body::PoolReq => MessageType::PoolReq,
            Body::PoolResp(_) => MessageType::PoolResp,
            Body::BndUpd(_) => MessageType::BndUpd,
            Body::BndAck(_) => MessageType::BndAck,
            Body::Connect(_) => MessageType::Connect,
            Body::ConnectAck(_) => MessageType::ConnectAck,
            Body::UpdReqAll => MessageType::UpdReqAll,
            Body::UpdDone => MessageType::UpdDone,
            Body::UpdReq => MessageType::UpdReq,
            Body::State(_) => MessageType::State,
            Body::Contact => MessageType::Contact,
            Body::Disconnect(_) => MessageType::Disconnect,
        }
    }
}

/// POOLRESP body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolResp {
    /// addresses-transferred (option 1, required): how many addresses the primary moved to
    /// BACKUP for the secondary.
    pub addresses_transferred: u32,
}

/// BNDUPD body: one or more bindings.
///
/// ISC sends and accepts exactly one binding per message; Tandem↔Tandem links may batch several
/// (the codec delimits them by the assigned-IP-address option, which starts each binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BndUpd {
    /// The bindings, in wire order. Never empty on a decoded message; encoding an empty list is
    /// an error.
    pub bindings: Vec<BindingUpdate>,
}

/// BNDACK body: one acknowledgement per binding of the BNDUPD it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BndAck {
    /// The acknowledgements, in wire order. Never empty on a decoded message.
    pub acks: Vec<BindingAck>,
}

/// What a server tells its partner about one address (the binding fields of BNDUPD/BNDACK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingUpdate {
    /// assigned-IP-address (option 2, required): the address this binding is about.
    pub assigned_ip: Ipv4Addr,
    /// binding-status (option 3, required): the state the sender wants the address to have.
    pub binding_status: BindingStatus,
    /// client-identifier (option 4): the client's DHCP option 61 value, if it sent one.
    pub client_id: Option<Vec<u8>>,
    /// client-hardware-address (option 5): hardware type and address.
    pub chaddr: Option<HardwareAddr>,
    /// lease-expiration-time (option 13): when the client's lease ends.
    pub lease_expiration: Option<u32>,
    /// potential-expiration-time (option 18): the expiry the sender asks the partner to accept
    /// (the MCLT rule's "tstp").
    pub potential_expiration: Option<u32>,
    /// start-time-of-state (option 25). ISC puts the lease's start time here.
    pub start_time_of_state: Option<u32>,
    /// client-last-transaction-time (option 6): when the client last talked to a server.
    pub cltt: Option<u32>,
    /// IP-flags (option 12, 2 bytes as ISC sends it): reserved / BOOTP.
    pub ip_flags: Option<IpFlags>,
    /// DDNS (option 9): DDNS flags and the client's host name. ISC never sends it and **drops
    /// the link** if it receives it with any data, so the codec only emits it on Tandem links.
    pub ddns: Option<Ddns>,
    /// client-request-options (option 8): raw DHCP options from the client's request.
    pub client_request_options: Option<Vec<u8>>,
    /// client-reply-options (option 7): raw DHCP options from the server's reply.
    pub client_reply_options: Option<Vec<u8>>,
}

impl BindingUpdate {
    /// A binding update with only the two required fields set.
    pub fn new(assigned_ip: Ipv4Addr, binding_status: BindingStatus) -> BindingUpdate {
        BindingUpdate {
            assigned_ip,
            binding_status,
            client_id: None,
            chaddr: None,
            lease_expiration: None,
            potential_expiration: None,
            start_time_of_state: None,
            cltt: None,
            ip_flags: None,
            ddns: None,
            client_request_options: None,
            client_reply_options: None,
        }
    }

    /// The client's host name, if the update carries one (in the DDNS option).
    pub fn client_hostname(&self) -> Option<&[u8]> {
        self.ddns.as_ref().map(|d| d.name.as_slice())
    }
}

/// The acknowledgement of one binding in a BNDACK.
///
/// ISC echoes every binding field of the BNDUPD it answers and adds reject-reason and message
/// when it refuses the update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingAck {
    /// The binding fields, echoed from the update (assigned IP and binding status required).
    pub binding: BindingUpdate,
    /// reject-reason (option 21): present if the update was refused.
    pub reject_reason: Option<RejectReason>,
    /// message (option 16): human-readable text explaining a refusal.
    pub message: Option<Vec<u8>>,
}

impl BindingAck {
    /// An acceptance of `update`, echoing its fields.
    pub fn accept(update: &BindingUpdate) -> BindingAck {
        BindingAck {
            binding: update.clone(),
            reject_reason: None,
            message: None,
        }
    }

    /// A refusal of `update` with `reason` and optional explanation.
    pub fn reject(
        update: &BindingUpdate,
        reason: RejectReason,
        message: Option<Vec<u8>>,
    ) -> BindingAck {
        BindingAck {
            binding: update.clone(),
            reject_reason: Some(reason),
            message,
        }
    }

    /// True if the partner accepted the update (no reject-reason).
    pub fn is_accepted(&self) -> bool {
        self.reject_reason.is_none()
    }
}

/// CONNECT body (sent by the primary only).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Connect {
    /// relationship-name (option 22, required): names the failover relationship. ASCII from ISC,
    /// UTF-16LE from Windows.
    pub relationship_name: Vec<u8>,
    /// max-unacked-bndupd (option 14): how many BNDUPDs the sender can have unacknowledged, i.e.
    /// the receiver's send window.
    pub max_unacked_bndupd: Option<u32>,
    /// receive-timer (option 19): seconds the sender waits without hearing from its partner
    /// before dropping the link; the receiver sends CONTACT after a third of it.
    pub receive_timer: Option<u32>,
    /// vendor-class-identifier (option 28): ISC sends `isc-<version>`.
    pub vendor_class: Option<Vec<u8>>,
    /// protocol-version (option 20): [`PROTOCOL_VERSION`].
    pub protocol_version: Option<u8>,
    /// TLS-request (option 27): ISC always sends "no TLS".
    pub tls_request: Option<TlsRequest>,
    /// MCLT (option 15): maximum client lead time in seconds. The secondary adopts it; ISC
    /// refuses a CONNECT without it (reject reason 5).
    pub mclt: Option<u32>,
    /// hash-bucket-assignment (option 11): the buckets the primary serves. ISC refuses a CONNECT
    /// without it (reject reason 18); a value that is not exactly 32 bytes is a decode error
    /// mapping to the same reason.
    pub hba: Option<BucketMap>,
    /// delayed-service-parameter (option 10).
    pub delayed_service: Option<u8>,
    /// vendor-specific-options (option 29): opaque.
    pub vendor_options: Option<Vec<u8>>,
}

/// CONNECTACK body.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConnectAck {
    /// relationship-name (option 22). ISC omits it when it refuses a CONNECT that had none, and
    /// answers a CONNECTACK without it with DISCONNECT (reason 8).
    pub relationship_name: Option<Vec<u8>>,
    /// max-unacked-bndupd (option 14): see [`Connect::max_unacked_bndupd`].
    pub max_unacked_bndupd: Option<u32>,
    /// receive-timer (option 19): see [`Connect::receive_timer`].
    pub receive_timer: Option<u32>,
    /// vendor-class-identifier (option 28).
    pub vendor_class: Option<Vec<u8>>,
    /// protocol-version (option 20).
    pub protocol_version: Option<u8>,
    /// TLS-reply (option 26): ISC sends it (as "none") only if the CONNECT had TLS-request.
    pub tls_reply: Option<TlsReply>,
    /// reject-reason (option 21): present when the CONNECT is refused.
    pub reject_reason: Option<RejectReason>,
    /// message (option 16): text explaining a refusal.
    pub message: Option<Vec<u8>>,
    /// vendor-specific-options (option 29): opaque.
    pub vendor_options: Option<Vec<u8>>,
}

/// STATE body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// server-state (option 24, required). While in STARTUP, ISC reports its saved state here
    /// and sets [`ServerFlags::STARTUP`].
    pub server_state: ServerState,
    /// server-flags (option 23).
    pub server_flags: Option<ServerFlags>,
    /// start-time-of-state (option 25): when the sender entered `server_state`.
    pub start_time_of_state: Option<u32>,
}

/// DISCONNECT body.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// reject-reason (option 21): why the link is closed (ISC always sends one).
    pub reject_reason: Option<RejectReason>,
    /// message (option 16): text explaining it.
    pub message: Option<Vec<u8>>,
}

/// A client hardware address as the failover client-hardware-address option carries it: the
/// hardware type byte, then the address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HardwareAddr {
    /// Hardware type (1 = Ethernet), as in the DHCP `htype` field.
    pub htype: u8,
    /// The address bytes (`chaddr[..hlen]`). ISC keeps at most 16.
    pub addr: Vec<u8>,
}

impl HardwareAddr {
    /// An Ethernet (htype 1) address.
    pub fn ethernet(mac: [u8; 6]) -> HardwareAddr {
        HardwareAddr {
            htype: 1,
            addr: mac.to_vec(),
        }
    }
}

/// The DDNS option (9): flags and the client's host name.
///
/// Wire form: a 2-byte flag word, then the name bytes (the rest of the option).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ddns {
    /// DDNS flags.
    pub flags: DdnsFlags,
    /// The host name (or FQDN) the client registered, as bytes.
    pub name: Vec<u8>,
}

/// The failover message types (ISC numbering).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MessageType {
    /// POOLREQ: ask for BACKUP addresses.
    PoolReq = 1,
    /// POOLRESP: answer to POOLREQ.
    PoolResp = 2,
    /// BNDUPD: binding update.
    BndUpd = 3,
    /// BNDACK: binding acknowledgement.
    BndAck = 4,
    /// CONNECT: open the relationship.
    Connect = 5,
    /// CONNECTACK: answer to CONNECT.
    ConnectAck = 6,
    /// UPDREQALL: send every binding.
    UpdReqAll = 7,
    /// UPDDONE: update request finished.
    UpdDone = 8,
    /// UPDREQ: send unacknowledged bindings.
    UpdReq = 9,
    /// STATE: failover state report.
    State = 10,
    /// CONTACT: keepalive.
    Contact = 11,
    /// DISCONNECT: close the link.
    Disconnect = 12,
}

impl MessageType {
    /// Every message type, in code order.
    pub const ALL: [MessageType; 12] = [
        MessageType::PoolReq,
        MessageType::PoolResp,
        MessageType::BndUpd,
        MessageType::BndAck,
        MessageType::Connect,
        MessageType::ConnectAck,
        MessageType::UpdReqAll,
        MessageType::UpdDone,
        MessageType::UpdReq,
        MessageType::State,
        MessageType::Contact,
        MessageType::Disconnect,
    ];

    /// The type for a wire code, `None` for an unknown code.
    pub const fn from_code(code: u8) -> Option<MessageType> {
        Some(match code {
            1 => MessageType::PoolReq,
            2 => MessageType::PoolResp,
            3 => MessageType::BndUpd,
            4 => MessageType::BndAck,
            5 => MessageType::Connect,
            6 => MessageType::ConnectAck,
            7 => MessageType::UpdReqAll,
            8 => MessageType::UpdDone,
            9 => MessageType::UpdReq,
            10 => MessageType::State,
            11 => MessageType::Contact,
            12 => MessageType::Disconnect,
            _ => return None,
        })
    }

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The protocol's name for the type ("BNDUPD", ...).
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::PoolReq => "POOLREQ",
            MessageType::PoolResp => "POOLRESP",
            MessageType::BndUpd => "BNDUPD",
            MessageType::BndAck => "BNDACK",
            MessageType::Connect => "CONNECT",
            MessageType::ConnectAck => "CONNECTACK",
            MessageType::UpdReqAll => "UPDREQALL",
            MessageType::UpdDone => "UPDDONE",
            MessageType::UpdReq => "UPDREQ",
            MessageType::State => "STATE",
            MessageType::Contact => "CONTACT",
            MessageType::Disconnect => "DISCONNECT",
        }
    }
}

/// Failover option codes: draft-12's 1..=29 and Microsoft's MS-DHCPF extensions 30..=41.
///
/// The codec interprets 1..=29; it skips the Microsoft codes like any unknown option (as ISC
/// does), since their layouts are unverified.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum OptionCode {
    /// 1: addresses-transferred (u32).
    AddressesTransferred = 1,
    /// 2: assigned-IP-address (4 bytes).
    AssignedIpAddress = 2,
    /// 3: binding-status (u8).
    BindingStatus = 3,
    /// 4: client-identifier (bytes).
    ClientIdentifier = 4,
    /// 5: client-hardware-address (htype + address).
    ClientHardwareAddress = 5,
    /// 6: client-last-transaction-time (u32).
    ClientLastTransactionTime = 6,
    /// 7: client-reply-options (bytes).
    ClientReplyOptions = 7,
    /// 8: client-request-options (bytes).
    ClientRequestOptions = 8,
    /// 9: DDNS (u16 flags + name).
    Ddns = 9,
    /// 10: delayed-service-parameter (u8).
    DelayedServiceParameter = 10,
    /// 11: hash-bucket-assignment (32 bytes).
    HashBucketAssignment = 11,
    /// 12: IP-flags (u16).
    IpFlags = 12,
    /// 13: lease-expiration-time (u32).
    LeaseExpirationTime = 13,
    /// 14: max-unacked-bndupd (u32).
    MaxUnackedBndupd = 14,
    /// 15: MCLT (u32).
    Mclt = 15,
    /// 16: message (text).
    Message = 16,
    /// 17: message-digest (type byte + digest).
    MessageDigest = 17,
    /// 18: potential-expiration-time (u32).
    PotentialExpirationTime = 18,
    /// 19: receive-timer (u32).
    ReceiveTimer = 19,
    /// 20: protocol-version (u8).
    ProtocolVersion = 20,
    /// 21: reject-reason (u8).
    RejectReason = 21,
    /// 22: relationship-name (bytes).
    RelationshipName = 22,
    /// 23: server-flags (u8).
    ServerFlags = 23,
    /// 24: server-state (u8).
    ServerState = 24,
    /// 25: start-time-of-state (u32).
    StartTimeOfState = 25,
    /// 26: TLS-reply (u8).
    TlsReply = 26,
    /// 27: TLS-request (u8).
    TlsRequest = 27,
    /// 28: vendor-class-identifier (bytes).
    VendorClassIdentifier = 28,
    /// 29: vendor-specific-options (bytes).
    VendorSpecificOptions = 29,
    /// 30: MS scope-ID list (u32 LE each). Skipped by the codec.
    MsScopeIdList = 30,
    /// 31: MS client name (UTF-16LE). Skipped by the codec.
    MsClientName = 31,
    /// 32: MS client description (UTF-16LE). Skipped by the codec.
    MsClientDescription = 32,
    /// 33: MS client subnet mask. Skipped by the codec.
    MsClientSubnetMask = 33,
    /// 34: MS server IP. Skipped by the codec.
    MsServerIp = 34,
    /// 35: MS server name. Skipped by the codec.
    MsServerName = 35,
    /// 36: MS client type. Skipped by the codec.
    MsClientType = 36,
    /// 37: MS NAP status. Skipped by the codec.
    MsNapStatus = 37,
    /// 38: MS NAP probation. Skipped by the codec.
    MsNapProbation = 38,
    /// 39: MS NAP capable. Skipped by the codec.
    MsNapCapable = 39,
    /// 40: MS matched policy name. Skipped by the codec.
    MsMatchedPolicyName = 40,
    /// 41: MS extended address state (u32). Skipped by the codec.
    MsExtendedAddressState = 41,
}

impl OptionCode {
    /// The option for a wire code, `None` for codes outside 1..=41.
    pub const fn from_code(code: u16) -> Option<OptionCode> {
        use OptionCode::*;
        Some(match code {
            1 => AddressesTransferred,
            2 => AssignedIpAddress,
            3 => BindingStatus,
            4 => ClientIdentifier,
            5 => ClientHardwareAddress,
            6 => ClientLastTransactionTime,
            7 => ClientReplyOptions,
            8 => ClientRequestOptions,
            9 => Ddns,
            10 => DelayedServiceParameter,
            11 => HashBucketAssignment,
            12 => IpFlags,
            13 => LeaseExpirationTime,
            14 => MaxUnackedBndupd,
            15 => Mclt,
            16 => Message,
            17 => MessageDigest,
            18 => PotentialExpirationTime,
            19 => ReceiveTimer,
            20 => ProtocolVersion,
            21 => RejectReason,
            22 => RelationshipName,
            23 => ServerFlags,
            24 => ServerState,
            25 => StartTimeOfState,
            26 => TlsReply,
            27 => TlsRequest,
            28 => VendorClassIdentifier,
            29 => VendorSpecificOptions,
            30 => MsScopeIdList,
            31 => MsClientName,
            32 => MsClientDescription,
            33 => MsClientSubnetMask,
            34 => MsServerIp,
            35 => MsServerName,
            36 => MsClientType,
            37 => MsNapStatus,
            38 => MsNapProbation,
            39 => MsNapCapable,
            40 => MsMatchedPolicyName,
            41 => MsExtendedAddressState,
            _ => return None,
        })
    }

    /// The wire code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// True for the Microsoft extension codes (30..=41), which the codec skips.
    pub const fn is_microsoft(self) -> bool {
        self.code() >= 30
    }
}

/// Defines a one-byte wire enumeration with named codes and an `Other` catch-all.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A code not listed above (never one of the listed codes).
            Other(u8),
        }

        impl $name {
            /// The value for a wire code (a listed code always gives its named variant).
            pub const fn from_code(code: u8) -> $name {
                match code {
                    $( $code => $name::$variant, )*
                    other => $name::Other(other),
                }
            }

            /// The wire code.
            pub const fn code(self) -> u8 {
                match self {
                    $( $name::$variant => $code, )*
                    $name::Other(code) => code,
                }
            }
        }

        impl From<u8> for $name {
            fn from(code: u8) -> $name {
                $name::from_code(code)
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                value.code()
            }
        }
    };
}

wire_enum! {
    /// A failover server state (server-state option 24).
    ///
    /// ISC's numbering; RECOVER-WAIT has no code in draft-12 and ISC sends 254 for it.
    ServerState {
        /// 1: STARTUP.
        Startup = 1,
        /// 2: NORMAL.
        Normal = 2,
        /// 3: COMMUNICATIONS-INTERRUPTED.
        CommunicationsInterrupted = 3,
        /// 4: PARTNER-DOWN.
        PartnerDown = 4,
        /// 5: POTENTIAL-CONFLICT.
        PotentialConflict = 5,
        /// 6: RECOVER.
        Recover = 6,
        /// 7: PAUSED.
        Paused = 7,
        /// 8: SHUTDOWN.
        Shutdown = 8,
        /// 9: RECOVER-DONE.
        RecoverDone = 9,
        /// 10: RESOLUTION-INTERRUPTED.
        ResolutionInterrupted = 10,
        /// 11: CONFLICT-DONE.
        ConflictDone = 11,
        /// 254: RECOVER-WAIT (ISC's code).
        RecoverWait = 254,
    }
}

wire_enum! {
    /// The state of one address (binding-status option 3).
    ///
    /// FREE addresses may be allocated only by the primary, BACKUP addresses only by the
    /// secondary.
    BindingStatus {
        /// 1: FREE (the primary's to allocate).
        Free = 1,
        /// 2: ACTIVE (leased to a client).
        Active = 2,
        /// 3: EXPIRED.
        Expired = 3,
        /// 4: RELEASED.
        Released = 4,
        /// 5: ABANDONED (declined or found in use).
        Abandoned = 5,
        /// 6: RESET (freed by an administrator).
        Reset = 6,
        /// 7: BACKUP (the secondary's to allocate).
        Backup = 7,
    }
}

wire_enum! {
    /// Why a message was refused (reject-reason option 21).
    RejectReason {
        /// 1: the address is in no pool of the relationship.
        IllegalIpAddress = 1,
        /// 2: fatal conflict: the address is used by another client.
        FatalConflict = 2,
        /// 3: binding information missing.
        MissingBindingInfo = 3,
        /// 4: the clocks differ too much.
        TimeMismatch = 4,
        /// 5: invalid or missing MCLT.
        InvalidMclt = 5,
        /// 6: unknown or miscellaneous reason.
        Miscellaneous = 6,
        /// 7: a link to this partner already exists.
        DuplicateConnection = 7,
        /// 8: unknown partner (relationship name).
        InvalidPartner = 8,
        /// 9: TLS not supported.
        TlsNotSupported = 9,
        /// 10: TLS supported but not configured.
        TlsNotConfigured = 10,
        /// 11: TLS required but the partner lacks it.
        TlsRequired = 11,
        /// 12: message digest not supported.
        DigestNotSupported = 12,
        /// 13: message digest not configured.
        DigestNotConfigured = 13,
        /// 14: protocol version mismatch.
        ProtocolVersionMismatch = 14,
        /// 15: outdated binding information.
        OutdatedBindingInfo = 15,
        /// 16: less critical binding information.
        LessCriticalBindingInfo = 16,
        /// 17: no traffic within a sufficient time.
        NoTrafficWithinSufficientTime = 17,
        /// 18: hash bucket assignment conflict (or missing/invalid HBA).
        HbaConflict = 18,
        /// 19: the address is not reserved on this server.
        IpNotReserved = 19,
        /// 20: message digest did not match.
        DigestCompareFailed = 20,
        /// 21: message digest missing.
        DigestMissing = 21,
        /// 254: unknown error.
        UnknownError = 254,
    }
}

wire_enum! {
    /// TLS-request option (27).
    TlsRequest {
        /// 0: no TLS (all ISC sends).
        None = 0,
        /// 1: TLS desired.
        Desired = 1,
        /// 2: TLS required.
        Required = 2,
    }
}

wire_enum! {
    /// TLS-reply option (26).
    TlsReply {
        /// 0: no TLS.
        None = 0,
        /// 1: TLS required.
        Required = 1,
    }
}

wire_enum! {
    /// Algorithm of the message-digest option (17).
    DigestType {
        /// 1: HMAC-MD5 (draft-12). Not supported by Tandem.
        HmacMd5 = 1,
        /// 2: HMAC-SHA256 (Microsoft). What Tandem produces and checks.
        HmacSha256 = 2,
    }
}

/// server-flags option (23): a bit set.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServerFlags(pub u8);

impl ServerFlags {
    /// No flag set.
    pub const NONE: ServerFlags = ServerFlags(0);
    /// 0x01: the sender is in STARTUP (and the state it reports is its saved state).
    pub const STARTUP: ServerFlags = ServerFlags(0x01);

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: ServerFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// IP-flags option (12): a 16-bit set, as ISC sends it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct IpFlags(pub u16);

impl IpFlags {
    /// No flag set.
    pub const NONE: IpFlags = IpFlags(0);
    /// 0x0001: the address is reserved for the client named in the update.
    pub const RESERVED: IpFlags = IpFlags(0x0001);
    /// 0x0002: the lease is a BOOTP lease.
    pub const BOOTP: IpFlags = IpFlags(0x0002);

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: IpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Flags of the DDNS option (9).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct DdnsFlags(pub u16);

impl DdnsFlags {
    /// No flag set.
    pub const NONE: DdnsFlags = DdnsFlags(0);
    /// 0x0001 (C): the client asked to update its own A record.
    pub const C: DdnsFlags = DdnsFlags(0x0001);
    /// 0x0002 (A): the A record was updated.
    pub const A: DdnsFlags = DdnsFlags(0x0002);
    /// 0x0004 (D): the PTR record was updated.
    pub const D: DdnsFlags = DdnsFlags(0x0004);
    /// 0x0008 (P): an update is pending.
    pub const P: DdnsFlags = DdnsFlags(0x0008);

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: DdnsFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_codes_follow_isc() {
        for (i, t) in MessageType::ALL.iter().enumerate() {
            assert_eq!(usize::from(t.code()), i + 1);
            assert_eq!(MessageType::from_code(t.code()), Some(*t));
        }
        assert_eq!(MessageType::UpdReqAll.code(), 7);
        assert_eq!(MessageType::UpdReq.code(), 9);
        assert_eq!(MessageType::from_code(0), None);
        assert_eq!(MessageType::from_code(13), None);
        assert_eq!(MessageType::UpdReqAll.name(), "UPDREQALL");
    }

    #[test]
    fn option_codes_round_trip() {
        for code in 1..=41u16 {
            let o = OptionCode::from_code(code).expect("listed");
            assert_eq!(o.code(), code);
            assert_eq!(o.is_microsoft(), code >= 30);
        }
        assert_eq!(OptionCode::from_code(0), None);
        assert_eq!(OptionCode::from_code(42), None);
    }

    #[test]
    fn enums_keep_unknown_codes_and_never_shadow_listed_ones() {
        for code in 0..=255u8 {
            assert_eq!(ServerState::from_code(code).code(), code);
            assert_eq!(BindingStatus::from_code(code).code(), code);
            assert_eq!(RejectReason::from_code(code).code(), code);
            assert_eq!(TlsRequest::from_code(code).code(), code);
            assert_eq!(TlsReply::from_code(code).code(), code);
            assert_eq!(DigestType::from_code(code).code(), code);
        }
        assert_eq!(ServerState::from_code(254), ServerState::RecoverWait);
        assert_eq!(ServerState::from_code(0), ServerState::Other(0));
        assert_eq!(ServerState::from_code(11), ServerState::ConflictDone);
        assert_eq!(BindingStatus::from_code(7), BindingStatus::Backup);
        assert_eq!(BindingStatus::from_code(8), BindingStatus::Other(8));
        assert_eq!(RejectReason::from_code(21), RejectReason::DigestMissing);
        assert_eq!(RejectReason::from_code(254), RejectReason::UnknownError);
        assert_eq!(RejectReason::from_code(22), RejectReason::Other(22));
        assert_eq!(u8::from(RejectReason::HbaConflict), 18);
        assert_eq!(RejectReason::from(20), RejectReason::DigestCompareFailed);
    }

    #[test]
    fn flag_sets() {
        assert!(ServerFlags(0x01).contains(ServerFlags::STARTUP));
        assert!(!ServerFlags::NONE.contains(ServerFlags::STARTUP));
        let f = IpFlags(IpFlags::RESERVED.0 | IpFlags::BOOTP.0);
        assert!(f.contains(IpFlags::RESERVED) && f.contains(IpFlags::BOOTP));
        assert!(DdnsFlags(0x000f).contains(DdnsFlags::P));
        assert!(!DdnsFlags(0x0007).contains(DdnsFlags::P));
    }

    #[test]
    fn binding_ack_helpers() {
        let mut u = BindingUpdate::new(Ipv4Addr::new(10, 0, 0, 1), BindingStatus::Active);
        u.ddns = Some(Ddns {
            flags: DdnsFlags::NONE,
            name: b"host".to_vec(),
        });
        assert_eq!(u.client_hostname(), Some(&b"host"[..]));
        let a = BindingAck::accept(&u);
        assert!(a.is_accepted());
        assert_eq!(a.binding, u);
        let r = BindingAck::reject(&u, RejectReason::FatalConflict, None);
        assert!(!r.is_accepted());
        assert_eq!(r.reject_reason, Some(RejectReason::FatalConflict));
    }

    #[test]
    fn body_reports_its_type() {
        let m = Message::new(1, 2, Body::UpdReqAll);
        assert_eq!(m.message_type(), MessageType::UpdReqAll);
        let s = Body::State(State {
            server_state: ServerState::RecoverWait,
            server_flags: None,
            start_time_of_state: None,
        });
        assert_eq!(s.message_type().code(), 10);
    }
}
