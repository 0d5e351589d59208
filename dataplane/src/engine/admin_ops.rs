//! Operator actions on the engine's bindings (the admin API's lease deletion).

use std::net::Ipv4Addr;

use super::Engine;
use crate::binding::Binding;
use crate::time::Time;

impl Engine {
    /// End the ACTIVE lease on `addr` at `now`, exactly as a DHCPRELEASE from its client would:
    /// the binding turns RELEASED and is queued for the journal (and so for the failover partner);
    /// the address is FREE at once in a scope this server serves alone, and in a replicated scope
    /// only once the partner has acknowledged the release. Returns the binding as it was before
    /// (ACTIVE); `None`, with nothing changed, if no scope covers `addr` or it has no ACTIVE lease
    /// (no binding, free, backup, expired, released, abandoned, or only an offer hold).
    pub fn end_lease(&mut self, addr: Ipv4Addr, now: Time) -> Option<Binding> {
        let si = self.scope_of(addr)?;
        let before = self.scopes.get(si)?.bindings.get(&addr).copied()?;
        let ended = self.end_active(now, si, addr)?;
        tracing::info!(%addr, client = %ended.client, "lease ended by an operator");
        Some(before)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{ip, send_at, updates, Req, SID, T0};
    use crate::authority::Standalone;
    use crate::binding::BindingState;
    use crate::engine::{Engine, Stats};
    use crate::scope::{AddrRange, OptionSet, Scope, ServerSettings, Subnet};
    use crate::wire::MessageType;

    /// An engine with one scope "lan" (10.0.0.0/24, range .100 to .101) on interface 0, shared
    /// with a failover partner if `replicated`.
    fn engine(replicated: bool) -> Engine {
        let lan = Scope {
            name: "lan".into(),
            subnet: Subnet {
                network: ip("10.0.0.0"),
                prefix: 24,
            },
            ranges: vec![AddrRange::new(ip("10.0.0.100"), ip("10.0.0.101"))],
            exclusions: vec![],
            reservations: vec![],
            lease_time: 3600,
            renew_time: None,
            rebind_time: None,
            options: OptionSet::new(),
            policies: vec![],
            authoritative: true,
            ddns: None,
        };
        let settings = ServerSettings {
            server_id: SID,
            global_options: OptionSet::new(),
            scopes: vec![lan],
            offer_hold_secs: 30,
            decline_probation_secs: 600,
            duplicate_window_ms: 2000,
        };
        let mut e = Engine::new(
            Arc::new(settings),
            vec![vec![0]],
            0,
            1,
            Arc::new(Stats::default()),
        );
        if replicated {
            e.set_replicated(vec!["lan".into()]);
        }
        e
    }

    /// DISCOVER then REQUEST from test client `mac_last` at `T0`; the ACKed address.
    fn lease(e: &mut Engine, mac_last: u8) -> std::net::Ipv4Addr {
        let offer = send_at(
            e,
            T0,
            &Req::new(MessageType::Discover, mac_last),
            &Standalone,
        );
        assert_eq!(offer.msg(), Some(MessageType::Offer), "{:?}", offer.outcome);
        let ack = send_at(
            e,
            T0,
            &Req::new(MessageType::Request, mac_last)
                .xid(0x9000 + u32::from(mac_last))
                .sid(SID)
                .requested(offer.yiaddr()),
            &Standalone,
        );
        assert_eq!(ack.msg(), Some(MessageType::Ack), "{:?}", ack.outcome);
        ack.yiaddr()
    }

    #[test]
    fn ended_lease_is_released_journaled_and_free_again_in_a_standalone_scope() {
        let mut e = engine(false);
        let a = lease(&mut e, 1);
        let b = lease(&mut e, 2);
        updates(&mut e);
        assert_eq!(e.pool_counts(0), (0, 0), "both addresses leased");
        let active = *e.binding(a).expect("binding");

        let now = T0.plus_secs(60);
        let before = e.end_lease(a, now).expect("an active lease ends");
        assert_eq!(before, active, "the binding as it was is returned");
        assert_eq!(before.state, BindingState::Active);

        let u = updates(&mut e);
        assert_eq!(u.len(), 1, "one journal record: {u:?}");
        assert_eq!(u[0].addr, a);
        assert_eq!(u[0].state, BindingState::Released);
        assert_eq!(
            u[0].client, active.client,
            "the client is kept, as a release keeps it"
        );
        assert_eq!(u[0].expires, now.secs() as u32);
        assert_eq!(u[0].cltt, now.secs() as u32);
        assert_eq!(e.binding(a).map(|x| x.state), Some(BindingState::Released));
        assert_eq!(
            e.pool_counts(0),
            (1, 0),
            "the address is back in the pool at once"
        );
        assert_eq!(
            e.binding(b).map(|x| x.state),
            Some(BindingState::Active),
            "the other lease is untouched"
        );

        // Ending it again changes nothing; a new client gets the address.
        assert_eq!(e.end_lease(a, now), None);
        assert!(updates(&mut e).is_empty());
        assert_eq!(lease(&mut e, 3), a);
    }

    #[test]
    fn ended_lease_in_a_replicated_scope_waits_for_the_partner() {
        let mut e = engine(true);
        let a = lease(&mut e, 1);
        updates(&mut e);
        assert_eq!(e.pool_counts(0), (1, 0));

        let before = e
            .end_lease(a, T0.plus_secs(5))
            .expect("an active lease ends");
        assert_eq!(before.addr, a);
        let u = updates(&mut e);
        assert_eq!(
            u.iter().map(|x| (x.addr, x.state)).collect::<Vec<_>>(),
            vec![(a, BindingState::Released)],
            "journaled, hence replicated to the partner"
        );
        assert_eq!(
            e.pool_counts(0),
            (1, 0),
            "kept out of the pool until the partner acknowledges"
        );

        // The partner's acknowledgement installs the FREE binding: the address is usable again.
        e.install(crate::binding::Binding::empty(a, BindingState::Free));
        assert_eq!(e.pool_counts(0), (2, 0));
        assert_eq!(e.binding(a).map(|x| x.state), Some(BindingState::Free));
    }

    #[test]
    fn ending_an_unknown_or_unleased_address_changes_nothing() {
        let mut e = engine(false);
        // In no scope, in the scope without a binding, and a free address.
        assert_eq!(e.end_lease(ip("192.168.1.1"), T0), None);
        assert_eq!(e.end_lease(ip("10.0.0.100"), T0), None);
        e.install(crate::binding::Binding::empty(
            ip("10.0.0.100"),
            BindingState::Free,
        ));
        updates(&mut e);
        assert_eq!(e.end_lease(ip("10.0.0.100"), T0), None);
        // An address only held by an offer has no lease to end.
        let offer = send_at(&mut e, T0, &Req::new(MessageType::Discover, 7), &Standalone);
        assert_eq!(offer.msg(), Some(MessageType::Offer));
        assert_eq!(e.end_lease(offer.yiaddr(), T0), None);
        assert!(updates(&mut e).is_empty());
        assert_eq!(e.pool_counts(0), (1, 0), "the offer hold is still in place");
    }
}
