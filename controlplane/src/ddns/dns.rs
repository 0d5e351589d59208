//! The DNS threads' side: run one [`Job`] (an RFC 4703 plan) against the scope's servers in
//! order with `tandem_ddns::Client`, and classify what happened.

use std::time::Duration;

use tandem_ddns::client::Failure;
use tandem_ddns::tsig::VerifyError;
use tandem_ddns::{Binding, Client, ClientConfig, Plan, PlanResult, Rcode};

use super::table::{Job, JobOutcome, JobResult, Op, Reason};

/// Runs `job`: each server in turn until one answers (whatever it answers).
pub(super) fn execute(job: Job) -> JobResult {
    let binding = match Binding::new(
        job.record.fqdn.clone(),
        job.scope.forward_zone.clone(),
        job.addr,
        job.scope.reverse_zone.clone(),
        &job.record.identity.dhcid_input(),
        job.scope.ttl,
        job.scope.conflict,
    ) {
        Ok(b) => b,
        Err(e) => {
            return JobResult {
                job,
                outcome: JobOutcome::BadBinding(e.to_string()),
                servers: Vec::new(),
                touched: false,
                history: Vec::new(),
            }
        }
    };
    let mut tried = Vec::new();
    let mut touched = false;
    let mut last = (
        Reason::Network,
        None,
        "no DNS server to send to".to_string(),
    );
    let mut history = Vec::new();
    for &server in &job.servers {
        let mut plan = match (job.op, job.record.forward) {
            (Op::Add, true) => Plan::add(binding.clone()),
            (Op::Add, false) => Plan::add_reverse_only(binding.clone()),
            (Op::Remove, true) => Plan::remove(binding.clone()),
            (Op::Remove, false) => Plan::remove_reverse_only(binding.clone()),
        };
        let mut cc = ClientConfig::new(server);
        // Two transmissions within the exchange's time.
        cc.attempts = 2;
        cc.timeout = (job.timeout / 2).max(Duration::from_millis(5));
        cc.key = job.scope.key.clone();
        let r = Client::new(cc).run(&mut plan);
        touched |= plan.history().iter().any(|(_, rc)| *rc == Rcode::NOERROR);
        history = plan.history().to_vec();
        let failed = |reason, text: String| JobOutcome::Failed {
            reason,
            server: Some(server),
            text,
        };
        let outcome = match r {
            Ok(PlanResult::Completed) => JobOutcome::Completed,
            Ok(PlanResult::Conflict) => JobOutcome::Conflict,
            Ok(PlanResult::Failed { step, rcode }) => {
                failed(rcode_reason(rcode), format!("{step:?} answered {rcode}"))
            }
            Err(f) => {
                let reason = failure_reason(&f.failure);
                let text = format!("{:?}: {}", f.step, f.failure);
                if reason == Reason::Timeout {
                    touched = true; // the server may have applied it and the answer got lost
                }
                if reason.is_unreachable() {
                    tried.push((server, Err((reason, text.clone()))));
                    last = (reason, Some(server), text);
                    continue;
                }
                failed(reason, text)
            }
        };
        tried.push((server, Ok(())));
        return JobResult {
            job,
            outcome,
            servers: tried,
            touched,
            history,
        };
    }
    let (reason, server, text) = last;
    JobResult {
        job,
        outcome: JobOutcome::Failed {
            reason,
            server,
            text,
        },
        servers: tried,
        touched,
        history,
    }
}

/// A job given back unsent.
pub(super) fn not_sent(job: Job, why: &str) -> JobResult {
    JobResult {
        job,
        outcome: JobOutcome::Failed {
            reason: Reason::Other,
            server: None,
            text: why.to_string(),
        },
        servers: Vec::new(),
        touched: false,
        history: Vec::new(),
    }
}

/// The failure reason of a response code a plan cannot go on with.
fn rcode_reason(rcode: Rcode) -> Reason {
    match rcode {
        Rcode::SERVFAIL => Reason::Servfail,
        Rcode::REFUSED => Reason::Refused,
        Rcode::NOTAUTH => Reason::Notauth,
        Rcode::BADSIG => Reason::Badsig,
        Rcode::BADKEY => Reason::Badkey,
        Rcode::BADTIME => Reason::Badtime,
        _ => Reason::Other,
    }
}

/// The failure reason of an exchange without a usable response.
fn failure_reason(f: &Failure) -> Reason {
    match f {
        Failure::Timeout { .. } => Reason::Timeout,
        Failure::Io { .. } => Reason::Network,
        Failure::Tsig(VerifyError::ServerError { error, rcode, .. }) => {
            match rcode_reason(*error) {
                Reason::Other => rcode_reason(*rcode),
                r => r,
            }
        }
        Failure::Tsig(VerifyError::Unsigned { rcode }) => match rcode_reason(*rcode) {
            // An unsigned error answer to a signed request: the server did not take the key.
            Reason::Other => Reason::Badsig,
            r => r,
        },
        Failure::Tsig(VerifyError::BadTime { .. }) => Reason::Badtime,
        Failure::Tsig(VerifyError::WrongKey { .. }) => Reason::Badkey,
        Failure::Tsig(VerifyError::Malformed(_)) => Reason::Other,
        Failure::Tsig(_) => Reason::Badsig,
        Failure::Malformed(_) | Failure::Encode(_) | Failure::Sign(_) => Reason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsig_failures_are_key_problems_by_name() {
        let server = |error, rcode| {
            failure_reason(&Failure::Tsig(VerifyError::ServerError {
                error,
                rcode,
                signed: false,
            }))
        };
        assert_eq!(server(Rcode::BADSIG, Rcode::NOTAUTH), Reason::Badsig);
        assert_eq!(server(Rcode::BADKEY, Rcode::NOTAUTH), Reason::Badkey);
        assert_eq!(server(Rcode::BADTIME, Rcode::NOTAUTH), Reason::Badtime);
        assert_eq!(server(Rcode(22), Rcode::NOTAUTH), Reason::Notauth);
        assert_eq!(
            failure_reason(&Failure::Tsig(VerifyError::BadMac)),
            Reason::Badsig
        );
        assert_eq!(
            failure_reason(&Failure::Tsig(VerifyError::Unsigned {
                rcode: Rcode::REFUSED
            })),
            Reason::Refused
        );
        assert_eq!(
            failure_reason(&Failure::Timeout {
                attempts: 2,
                elapsed: Duration::from_secs(2)
            }),
            Reason::Timeout
        );
        assert_eq!(rcode_reason(Rcode::SERVFAIL), Reason::Servfail);
        assert_eq!(rcode_reason(Rcode::NOTZONE), Reason::Other);
    }
}
