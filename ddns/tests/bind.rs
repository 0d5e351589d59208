//! The UPDATE client, TSIG and the RFC 4703 procedure against a real BIND 9.
//!
//! Each test makes its own network namespace (`tdm-ddns-<pid>-<seq>`, loopback only, deleted
//! on drop) and, where it needs one, runs `named -g` inside it on 127.0.0.1:53 with a forward
//! zone `tdm.test.` and a reverse zone `77.10.in-addr.arpa.` that accept updates signed with
//! keys made by `tsig-keygen`. The zones are checked with `dig` inside the namespace and with
//! this crate's own decoder. The host's network is never touched.
//!
//! Needs root (network namespaces, port 53) and the Debian packages bind9 (named,
//! tsig-keygen), bind9-dnsutils (dig), iproute2 (ip), util-linux (nsenter) and procps (kill): a
//! test fails with the package's name when a tool is missing; none is skipped. The namespace
//! and named come from `support/named.rs`, shared with the control plane's updater tests.
//! Run with `sudo -E cargo test -p tandem-ddns --test bind`.

use std::fs::File;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tandem_ddns::client::Failure;
use tandem_ddns::tsig::VerifyError;
use tandem_ddns::{
    Binding, Client, ClientConfig, ConflictMode, Identity, Message, Name, Outcome, Plan,
    PlanResult, RData, Rcode, RrType, Step, TsigKey, Update,
};

#[path = "support/named.rs"]
mod named;

use named::{server, Named, Netns, FORWARD, REVERSE};

/// Runs `f` on a thread that has joined the namespace.
fn enter<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let path = ns.path();
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn client(key: &TsigKey) -> Client {
    let mut cfg = ClientConfig::new(server()).with_key(key.clone());
    cfg.timeout = Duration::from_secs(2);
    cfg.attempts = 2;
    Client::new(cfg)
}

fn binding(host: &str, addr: Ipv4Addr, identity: &Identity) -> Binding {
    Binding::new(
        name(&format!("{host}.{FORWARD}")),
        name(FORWARD),
        addr,
        name(REVERSE),
        identity,
        300,
        ConflictMode::Rfc4703,
    )
    .unwrap()
}

/// Runs a plan inside the namespace; panics on a transport / TSIG failure.
fn run_plan(ns: &Netns, c: &Client, plan: &mut Plan) -> PlanResult {
    let r = enter(ns, || c.run(plan));
    println!(
        "{:?} {}: {:?} -> {r:?}",
        plan.operation(),
        plan.binding().fqdn(),
        plan.history()
    );
    r.unwrap_or_else(|e| panic!("plan for {} stopped: {e}", plan.binding().fqdn()))
}

fn mac(last: u8) -> Identity {
    Identity::for_dhcpv4(1, &[0x52, 0x54, 0x00, 0x12, 0x34, last], None)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn add_conflict_and_removal_follow_rfc4703() {
    let ns = Netns::new("ddns");
    let named = Named::start(&ns);
    let c = client(&named.key256);
    let fqdn = "host.tdm.test.";

    // Client A: not in use, so A + DHCID and then PTR + DHCID are added.
    let a_id = Identity::for_dhcpv4(
        1,
        &[0; 6],
        Some(&[0x01, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01]),
    );
    let a = binding("host", Ipv4Addr::new(10, 77, 0, 5), &a_id);
    let mut plan = Plan::add(a.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::NOERROR),
            (Step::ReverseAdd, Rcode::NOERROR)
        ]
    );
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.5"]);
    assert_eq!(ns.dig(fqdn, "DHCID"), [a.dhcid().to_base64()]);
    assert_eq!(ns.dig("5.0.77.10.in-addr.arpa.", "PTR"), [fqdn]);
    assert_eq!(
        ns.dig("5.0.77.10.in-addr.arpa.", "DHCID"),
        [a.dhcid().to_base64()]
    );
    // The same, read with this crate's decoder (BIND compresses the answer's names).
    let q = Message::query(0, name(fqdn), RrType::DHCID);
    let x = enter(&ns, || c.exchange(&q)).expect("DHCID query");
    assert!(!x.over_tcp);
    assert_eq!(x.response.answers.len(), 1);
    assert_eq!(x.response.answers[0].name, name(fqdn));
    assert_eq!(x.response.answers[0].rdata, RData::Dhcid(a.dhcid().clone()));
    assert!(
        x.response.tsig().is_some(),
        "BIND signed the answer and it verified"
    );

    // Client B (another identity) claims the same name: YXDOMAIN, then NXRRSET on the DHCID
    // check; nothing changes, and B's reverse name is not written.
    let b = binding("host", Ipv4Addr::new(10, 77, 0, 6), &mac(0x06));
    assert_ne!(a.dhcid(), b.dhcid());
    let mut plan = Plan::add(b.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Conflict);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::YXDOMAIN),
            (Step::ForwardReplace, Rcode::NXRRSET)
        ]
    );
    assert_eq!(
        ns.dig(fqdn, "A"),
        ["10.77.0.5"],
        "the A still points to client A"
    );
    assert_eq!(ns.dig(fqdn, "DHCID"), [a.dhcid().to_base64()]);
    assert!(ns.dig("6.0.77.10.in-addr.arpa.", "PTR").is_empty());

    // B releasing "its" binding removes nothing of A's: the DHCID prerequisite fails.
    let mut plan = Plan::remove(b.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardRemoveAddress, Rcode::NXRRSET),
            (Step::ReverseRemove, Rcode::NXRRSET)
        ]
    );
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.5"]);

    // A moves to another address: YXDOMAIN, then the replace is allowed (our DHCID).
    let a2 = binding("host", Ipv4Addr::new(10, 77, 0, 7), &a_id);
    assert_eq!(
        a2.dhcid(),
        a.dhcid(),
        "the DHCID depends on identity and name only"
    );
    let mut plan = Plan::add(a2.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::YXDOMAIN),
            (Step::ForwardReplace, Rcode::NOERROR),
            (Step::ReverseAdd, Rcode::NOERROR)
        ]
    );
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.7"]);
    assert_eq!(ns.dig("7.0.77.10.in-addr.arpa.", "PTR"), [fqdn]);

    // Release: A, DHCID and PTR (+ its DHCID) go.
    let mut plan = Plan::remove(a2.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardRemoveAddress, Rcode::NOERROR),
            (Step::ForwardRemoveDhcid, Rcode::NOERROR),
            (Step::ReverseRemove, Rcode::NOERROR)
        ]
    );
    assert!(ns.dig(fqdn, "A").is_empty());
    assert!(ns.dig(fqdn, "DHCID").is_empty());
    assert!(ns.dig("7.0.77.10.in-addr.arpa.", "PTR").is_empty());
    assert!(ns.dig("7.0.77.10.in-addr.arpa.", "DHCID").is_empty());
    // The old PTR of .5 is still there: A's first lease was never released in this story.
    assert_eq!(ns.dig("5.0.77.10.in-addr.arpa.", "PTR"), [fqdn]);
    // The name is free now, so B gets it at the first step.
    let mut plan = Plan::add(b);
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(plan.history()[0], (Step::ForwardAdd, Rcode::NOERROR));
    assert_eq!(ns.dig(fqdn, "A"), ["10.77.0.6"]);
    drop(named);
}

#[test]
fn wrong_tsig_keys_are_tsig_failures_and_change_nothing() {
    let ns = Netns::new("ddns");
    let named = Named::start(&ns);
    let good = &named.key256;
    let b = binding("victim", Ipv4Addr::new(10, 77, 1, 1), &mac(0x11));

    // The right key name with another secret: BIND answers NOTAUTH + BADSIG, unsigned.
    let wrong_secret = TsigKey::new(good.name().clone(), good.algorithm(), vec![0x5a; 32]);
    let o = enter(&ns, || {
        client(&wrong_secret).update(&b.message(Step::ForwardAdd, 0))
    });
    println!("wrong secret: {o}");
    assert_eq!(
        o,
        Outcome::Failed(Failure::Tsig(VerifyError::ServerError {
            error: Rcode::BADSIG,
            rcode: Rcode::NOTAUTH,
            signed: false
        }))
    );
    // A key BIND does not know: NOTAUTH + BADKEY.
    let unknown = TsigKey::new(name("nobody-key"), good.algorithm(), good.secret().to_vec());
    let o = enter(&ns, || {
        client(&unknown).update(&b.message(Step::ForwardAdd, 0))
    });
    println!("unknown key: {o}");
    assert_eq!(
        o,
        Outcome::Failed(Failure::Tsig(VerifyError::ServerError {
            error: Rcode::BADKEY,
            rcode: Rcode::NOTAUTH,
            signed: false
        }))
    );
    // The plan stops at its first step with that failure.
    let mut plan = Plan::add(b.clone());
    let r = enter(&ns, || client(&wrong_secret).run(&mut plan));
    assert!(
        matches!(&r, Err(e) if e.step == Step::ForwardAdd && matches!(e.failure, Failure::Tsig(_))),
        "{r:?}"
    );
    assert!(plan.history().is_empty());
    // Nothing was written.
    assert!(ns.dig("victim.tdm.test.", "ANY").is_empty());
    assert!(ns.dig("1.1.77.10.in-addr.arpa.", "PTR").is_empty());
    // Unsigned updates are refused by policy.
    let mut cfg = ClientConfig::new(server());
    cfg.timeout = Duration::from_secs(2);
    let o = enter(&ns, || {
        Client::new(cfg).update(&b.message(Step::ForwardAdd, 0))
    });
    assert_eq!(
        o,
        Outcome::Refused {
            rcode: Rcode::REFUSED
        }
    );
    assert!(ns.dig("victim.tdm.test.", "A").is_empty());
    // And the good key works on the same server.
    let mut plan = Plan::add(b);
    assert_eq!(
        run_plan(&ns, &client(good), &mut plan),
        PlanResult::Completed
    );
    assert_eq!(ns.dig("victim.tdm.test.", "A"), ["10.77.1.1"]);
    drop(named);
}

#[test]
fn hmac_sha512_and_tcp_fallback() {
    let ns = Netns::new("ddns");
    let named = Named::start(&ns);
    let key = &named.key512;
    assert_eq!(key.algorithm(), tandem_ddns::Algorithm::HmacSha512);
    let c = client(key);
    let b = binding("big", Ipv4Addr::new(10, 77, 2, 1), &mac(0x21));
    let mut plan = Plan::add(b.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(ns.dig("big.tdm.test.", "A"), ["10.77.2.1"]);
    assert_eq!(ns.dig("1.2.77.10.in-addr.arpa.", "PTR"), ["big.tdm.test."]);

    // Grow the A RRset to 60 addresses (a plain RFC 2136 update), so that the answer no
    // longer fits 512 octets of UDP: BIND sets TC and the client retries over TCP.
    let mut m = Message::update(0, name(FORWARD));
    for i in 2..=61u8 {
        m.push_update(&Update::Add {
            name: name("big.tdm.test"),
            ttl: 300,
            rdata: RData::A(Ipv4Addr::new(10, 77, 2, i)),
        });
    }
    assert_eq!(enter(&ns, || c.update(&m)), Outcome::Success);
    let q = Message::query(0, name("big.tdm.test"), RrType::A);
    let x = enter(&ns, || c.exchange(&q)).expect("A query");
    assert!(x.over_tcp, "61 A records do not fit a 512-octet UDP answer");
    assert_eq!(x.response.answers.len(), 61);
    let mut got: Vec<Ipv4Addr> = x
        .response
        .answers
        .iter()
        .map(|r| match r.rdata {
            RData::A(a) => a,
            ref other => panic!("not an A: {other:?}"),
        })
        .collect();
    got.sort();
    let want: Vec<Ipv4Addr> = (1..=61u8).map(|i| Ipv4Addr::new(10, 77, 2, i)).collect();
    assert_eq!(got, want);
    assert_eq!(ns.dig("big.tdm.test.", "A").len(), 61);

    // Removal with other addresses left: our A goes, the DHCID stays (YXRRSET), PTR goes.
    let mut plan = Plan::remove(b);
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardRemoveAddress, Rcode::NOERROR),
            (Step::ForwardRemoveDhcid, Rcode::YXRRSET),
            (Step::ReverseRemove, Rcode::NOERROR)
        ]
    );
    let left = ns.dig("big.tdm.test.", "A");
    assert_eq!(left.len(), 60);
    assert!(!left.contains(&"10.77.2.1".to_string()));
    assert_eq!(ns.dig("big.tdm.test.", "DHCID").len(), 1);
    assert!(ns.dig("1.2.77.10.in-addr.arpa.", "PTR").is_empty());
    drop(named);
}

#[test]
fn no_check_mode_overwrites_another_clients_name() {
    let ns = Netns::new("ddns");
    let named = Named::start(&ns);
    let c = client(&named.key256);
    let first = binding("shared", Ipv4Addr::new(10, 77, 3, 1), &mac(0x31));
    assert_eq!(
        run_plan(&ns, &c, &mut Plan::add(first.clone())),
        PlanResult::Completed
    );
    let second = Binding::new(
        name("shared.tdm.test"),
        name(FORWARD),
        Ipv4Addr::new(10, 77, 3, 2),
        name(REVERSE),
        &mac(0x32),
        300,
        ConflictMode::NoCheckWithDhcid,
    )
    .unwrap();
    let mut plan = Plan::add(second.clone());
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history(),
        [
            (Step::ForwardAdd, Rcode::NOERROR),
            (Step::ReverseAdd, Rcode::NOERROR)
        ]
    );
    assert_eq!(ns.dig("shared.tdm.test.", "A"), ["10.77.3.2"]);
    assert_eq!(
        ns.dig("shared.tdm.test.", "DHCID"),
        [second.dhcid().to_base64()]
    );
    // The first client's RFC 4703 removal now finds a DHCID that is not its own.
    let mut plan = Plan::remove(first);
    assert_eq!(run_plan(&ns, &c, &mut plan), PlanResult::Completed);
    assert_eq!(
        plan.history()[0],
        (Step::ForwardRemoveAddress, Rcode::NXRRSET)
    );
    assert_eq!(ns.dig("shared.tdm.test.", "A"), ["10.77.3.2"]);
    drop(named);
}

#[test]
fn server_down_is_a_timeout_within_the_configured_time() {
    // A namespace with nothing listening on port 53.
    let ns = Netns::new("ddns");
    let key = TsigKey::new(
        name("tdm-key"),
        tandem_ddns::Algorithm::HmacSha256,
        vec![1; 32],
    );
    let mut cfg = ClientConfig::new(server()).with_key(key);
    cfg.timeout = Duration::from_millis(400);
    cfg.attempts = 2;
    let b = binding("down", Ipv4Addr::new(10, 77, 4, 1), &mac(0x41));
    let start = Instant::now();
    let o = enter(&ns, || {
        Client::new(cfg).update(&b.message(Step::ForwardAdd, 0))
    });
    let took = start.elapsed();
    println!("server down: {o} (call took {took:?})");
    match o {
        Outcome::Failed(Failure::Timeout { attempts, elapsed }) => {
            assert_eq!(attempts, 2);
            assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        took < Duration::from_millis(800 + 500),
        "2 attempts x 400 ms took {took:?}"
    );
}
