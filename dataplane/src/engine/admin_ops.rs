//! Operator actions on the engine's bindings (the admin API's lease deletion).
