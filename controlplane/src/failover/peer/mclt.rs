//! The maximum-client-lead-time arithmetic (digest §2.3, draft-12 §5.2.1).
//!
//! Notation: `M` = MCLT, `D` = the desired (configured) lease time, `A` = the potential
//! expiration the partner has acknowledged for this client's binding (0 if none), `t` = now.
//! All values are whole seconds; times are seconds since the Unix epoch.
//!
//! The rule: a lease given to a client never ends later than `max(t, A) + M`. A new client
//! (`A` = 0) therefore gets at most `M`; once the partner has acknowledged a potential
//! expiration of `t + D + M/2`, the renewal at `T1` can get the full `D`.

/// The DHCP "infinite" lease time.
pub const INFINITE: u32 = u32::MAX;

/// The longest lease (seconds from `now`) the MCLT rule allows (ISC's and the draft's formula):
/// `D` if `D ≤ M`; otherwise `M` if `A ≤ t`; otherwise `min(D, A + M − t)`.
pub const fn allowed_lease(desired: u32, acked: u32, mclt: u32, now: u32) -> u32 {
    if desired <= mclt {
        desired
    } else if acked <= now {
        mclt
    } else {
        let room = acked.saturating_add(mclt) - now;
        if room < desired {
            room
        } else {
            desired
        }
    }
}

/// The potential expiration to send the partner for a lease of `granted` seconds given at
/// `now` when the desired lease time is `desired`: `now + D + granted/2`, so that by the
/// client's renewal at T1 the partner has pre-approved a full `D`. An infinite lease sends the
/// largest time.
pub const fn potential_expiry(now: u32, desired: u32, granted: u32) -> u32 {
    if desired == INFINITE || granted == INFINITE {
        return INFINITE;
    }
    now.saturating_add(desired).saturating_add(granted / 2)
}

/// The latest end the rule allows for a lease given at `now`: `max(now, A) + M`.
pub const fn latest_end(now: u32, acked: u32, mclt: u32) -> u32 {
    let base = if acked > now { acked } else { now };
    base.saturating_add(mclt)
}

/// When an address the partner could have leased becomes safe to reuse in PARTNER-DOWN:
/// `max(stos, A) + M` (draft-12 §5.3.4; ISC `lease_mine_to_reallocate`).
pub const fn takeover_time(partner_down_since: u32, acked: u32, mclt: u32) -> u32 {
    latest_end(partner_down_since, acked, mclt)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 3600;
    const D: u32 = 86_400;
    const T: u32 = 1_700_000_000;

    #[test]
    fn short_leases_are_never_capped() {
        assert_eq!(allowed_lease(600, 0, M, T), 600);
        assert_eq!(allowed_lease(M, 0, M, T), M);
    }

    #[test]
    fn new_client_gets_mclt() {
        assert_eq!(allowed_lease(D, 0, M, T), M);
        // An acknowledged expiry in the past counts as none.
        assert_eq!(allowed_lease(D, T - 1, M, T), M);
        assert_eq!(allowed_lease(D, T, M, T), M);
    }

    #[test]
    fn worked_example_of_the_digest() {
        // 1. A new client gets 1 h; the BNDUPD carries t + 24 h + 30 min.
        let g1 = allowed_lease(D, 0, M, T);
        assert_eq!(g1, 3600);
        let p1 = potential_expiry(T, D, g1);
        assert_eq!(p1, T + 86_400 + 1800);
        // 2. At the renewal 30 min later (the partner acked p1) the client gets the full day.
        let t2 = T + 1800;
        assert_eq!(allowed_lease(D, p1, M, t2), D);
        assert!(t2 + D <= latest_end(t2, p1, M));
    }

    #[test]
    fn partial_room_is_capped_at_acked_plus_mclt() {
        // A acknowledged 10 min from now: at most 10 min + M.
        let a = T + 600;
        assert_eq!(allowed_lease(D, a, M, T), 600 + M);
        assert_eq!(T + allowed_lease(D, a, M, T), a + M);
    }

    #[test]
    fn grant_never_exceeds_the_rule() {
        // Exhaustive over a small grid: t + granted <= max(t, A) + M, and granted <= D.
        for d in [1u32, 59, 60, 61, 3599, 3600, 3601, 86_400, INFINITE - 1] {
            for a_off in [-10_000i64, -1, 0, 1, 100, 3600, 100_000] {
                let a = if a_off == -10_000 {
                    0
                } else {
                    (T as i64 + a_off) as u32
                };
                let g = allowed_lease(d, a, M, T);
                assert!(g <= d, "d={d} a={a}");
                assert!(
                    u64::from(T) + u64::from(g) <= u64::from(latest_end(T, a, M)),
                    "d={d} a={a} g={g}"
                );
            }
        }
    }

    #[test]
    fn infinite_and_saturating() {
        assert_eq!(potential_expiry(T, INFINITE, M), INFINITE);
        assert_eq!(potential_expiry(u32::MAX - 5, 100, 100), u32::MAX);
        assert_eq!(latest_end(u32::MAX - 5, 0, M), u32::MAX);
        assert_eq!(allowed_lease(INFINITE, u32::MAX, M, T), u32::MAX - T);
    }

    #[test]
    fn takeover_is_the_later_of_stos_and_acked_plus_mclt() {
        assert_eq!(takeover_time(T, 0, M), T + M);
        assert_eq!(takeover_time(T, T + 500, M), T + 500 + M);
        assert_eq!(takeover_time(T, T - 500, M), T + M);
    }
}
