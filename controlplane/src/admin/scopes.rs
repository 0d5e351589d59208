//! Scope and lease changes through the admin API (being written; every handler answers 501
//! until then).

use super::{error, AdminState, Resp};

/// `GET /v1/scopes`.
pub(super) fn list(_state: &AdminState) -> Resp {
    error(501, "not implemented yet")
}

/// `GET /v1/scopes/{name}`.
pub(super) fn show(_state: &AdminState, _name: &str) -> Resp {
    error(501, "not implemented yet")
}

/// `PUT /v1/scopes/{name}`.
pub(super) fn put(_state: &AdminState, _name: &str, _body: &[u8]) -> Resp {
    error(501, "not implemented yet")
}

/// `DELETE /v1/scopes/{name}`.
pub(super) fn delete(_state: &AdminState, _name: &str) -> Resp {
    error(501, "not implemented yet")
}

/// `DELETE /v1/leases/{address}`.
pub(super) fn lease_delete(_state: &AdminState, _addr: &str) -> Resp {
    error(501, "not implemented yet")
}
