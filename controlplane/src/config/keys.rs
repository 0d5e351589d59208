//! The keys of the configuration's tables that more than one reader names (for "belongs in
//! another table" hints): a leaf every table reader may use.

/// Keys of the top level.
pub(crate) const TOP_KEYS: &[&str] = &[
    "server",
    "dataplane",
    "options",
    "option",
    "scope",
    "failover",
];
/// Keys of `[server]`.
pub(crate) const SERVER_KEYS: &[&str] = &[
    "server_id",
    "interfaces",
    "state_dir",
    "durability",
    "admin_listen",
    "admin_token_file",
    "admin_readonly_token_file",
    "server_port",
    "client_port",
    "workers",
    "batch_size",
    "log_format",
    "compact_after_records",
    "offer_hold_time",
    "decline_probation_time",
    "duplicate_window_ms",
    "strict_client_identity",
    "discover_rate_limit",
    "relay_circuit_rate_limit",
    "trusted_relays",
];
/// Keys of `[[scope]]`.
pub(crate) const SCOPE_KEYS: &[&str] = &[
    "name",
    "description",
    "subnet",
    "interface",
    "ranges",
    "exclusions",
    "lease_time",
    "renew_time",
    "rebind_time",
    "authoritative",
    "options",
    "option",
    "reservation",
    "policy",
];
/// Keys of `[[failover]]`.
pub(crate) const FAILOVER_KEYS: &[&str] = &[
    "name",
    "role",
    "partner",
    "partner_port",
    "listen",
    "listen_port",
    "mode",
    "load_balance_percent",
    "hot_standby_role",
    "reserve_percent",
    "mclt",
    "state_switchover_interval",
    "shared_secret",
    "shared_secret_file",
    "scopes",
    "max_clock_skew",
    "max_response_delay",
    "startup_wait",
    "max_unacked_updates",
    "partner_admin",
    "comm_interrupted_alarm",
    "pool_low_water_percent",
];
