//! The sandbox, proven with a real hostile guest component (tests/guests/hostile): every kind
//! of misbehaviour is contained, logged with the policy's name, and the job still ends right
//! under the built-in tank-mode policy.

use crate::support::policies::{
    HOSTILE, LEGACY_V01, hostile, job, params, registry, round, round_with, script, topology,
};
use pinwarden::Action;
use pinwarden::Role;
use pinwarden::executor::{RoundEnd, RoundLimits};
use pinwarden::policy::{IncidentKind, LoadError, Policy, Source};
use pinwarden::sim::node::{PinAnswer, SimNode};

fn contained(mode: &str, after: &str, kind: IncidentKind) {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", mode), ("after", after)]);
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let result = round(&policy, &fallback, &topology(&[]), &job(false));

    assert_eq!(
        result.status,
        RoundEnd::Pinned,
        "{mode}: {:?}",
        result.reason
    );
    assert_eq!(result.confirmed, ["primary"], "{mode}");
    assert_eq!(result.decided_by, "tank-mode", "{mode}");
    assert_eq!(result.incidents.len(), 1, "{mode}: {:?}", result.incidents);
    let incident = &result.incidents[0];
    assert_eq!(incident.kind, kind, "{mode}: {incident}");
    assert_eq!(incident.policy, "hostile", "{mode}");
    if matches!(
        kind,
        IncidentKind::Trap | IncidentKind::Timeout | IncidentKind::Memory
    ) {
        assert!(
            incident.message.starts_with("in decide: "),
            "{mode}: the message names the function: {}",
            incident.message
        );
    }
    assert!(
        result
            .trace
            .iter()
            .any(|l| l.text.contains("POLICY INCIDENT") && l.text.contains("'hostile'")),
        "{mode}: the trace names the incident and the policy"
    );
    // Exactly one verified, retrievable pin: the fallback did not redo work from scratch
    // beyond what the history required.
    let pins = result
        .history
        .iter()
        .filter(|e| matches!(&e.action, Action::Pin(_)))
        .count();
    assert_eq!(pins, 1, "{mode}");
}

#[test]
fn trap_is_contained() {
    contained("trap", "0", IncidentKind::Trap);
}

#[test]
fn trap_mid_job_hands_over_the_history() {
    // Two events in (pin, verify) the policy traps; tank-mode picks up at check-retrievable.
    contained("trap", "2", IncidentKind::Trap);
}

#[test]
fn stack_overflow_is_contained_and_called_so() {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", "recurse"), ("after", "0")]);
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let result = round(&policy, &fallback, &topology(&[]), &job(false));
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.reason);
    let incident = &result.incidents[0];
    assert_eq!(incident.kind, IncidentKind::Trap, "{incident}");
    assert!(incident.message.contains("stack overflow"), "{incident}");
}

#[test]
fn endless_loop_hits_the_deadline() {
    contained("loop", "0", IncidentKind::Timeout);
}

#[test]
fn memory_growth_hits_the_cap() {
    contained("oom", "1", IncidentKind::Memory);
}

#[test]
fn unknown_node_is_refused() {
    contained("unknown-node", "0", IncidentKind::InvalidAction);
}

#[test]
fn absurd_wait_is_refused() {
    contained("absurd-wait", "0", IncidentKind::InvalidAction);
}

#[test]
fn success_without_evidence_is_refused() {
    contained("bogus-succeed", "0", IncidentKind::InvalidAction);
}

#[test]
fn success_on_more_nodes_than_exist_is_refused() {
    contained("over-quorum", "0", IncidentKind::InvalidAction);
}

#[test]
fn doing_nothing_is_refused() {
    contained("nothing", "0", IncidentKind::InvalidAction);
}

#[test]
fn a_failing_job_still_fails_properly_after_an_incident() {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", "trap"), ("after", "0")]);
    let fallback = registry
        .fallback_for(&params(&[("attempts", "2")]))
        .expect("fallback");
    let mut t = pinwarden::executor::Topology::new();
    for (name, role) in [("primary", Role::Primary), ("backup-1", Role::Backup)] {
        let s = script(name, role, &[PinAnswer::Refused], false);
        t.add(name, s.role, std::sync::Arc::new(SimNode::new(s)));
    }
    let result = round(&policy, &fallback, &t, &job(false));
    assert_eq!(result.status, RoundEnd::Failed);
    let reason = result.reason.unwrap_or_default();
    assert!(reason.starts_with("CRITICAL"), "{reason}");
    assert!(
        reason.contains("2 attempts"),
        "operator's attempts=2 survives the fallback: {reason}"
    );
}

#[test]
fn trap_in_configure_is_a_load_error() {
    let registry = registry();
    let err = Policy::from_bytes(
        registry.engine(),
        "hostile",
        Source::Builtin,
        HOSTILE,
        &params(&[("mode", "configure-trap")]),
    )
    .err()
    .expect("must not load");
    match err {
        LoadError::Incident(_, incident) => {
            assert_eq!(incident.kind, IncidentKind::Trap);
            // The message names the function that trapped.
            assert!(
                incident.message.starts_with("in configure: "),
                "{}",
                incident.message
            );
        }
        other => panic!("expected a trap incident, got {other}"),
    }
}

#[test]
fn rejected_parameter_names_the_parameter() {
    let registry = registry();
    let err = registry
        .resolve("tank-mode", &params(&[("attempts", "lots")]))
        .err()
        .expect("must not load");
    let text = err.to_string();
    assert!(
        text.contains("'attempts'") && text.contains("lots"),
        "{text}"
    );
}

#[test]
fn files_that_are_not_policy_components_are_refused() {
    let registry = registry();
    let load = |bytes: &[u8]| {
        Policy::from_bytes(registry.engine(), "f", Source::Builtin, bytes, &[])
            .err()
            .expect("must not load")
    };
    assert!(matches!(
        load(b"#!/bin/sh\necho hi\n"),
        LoadError::NotWasm(_)
    ));
    let core = wat::parse_str("(module)").expect("wat");
    assert!(matches!(load(&core), LoadError::CoreModule(_)));
    let empty = wat::parse_str("(component)").expect("wat");
    assert!(matches!(load(&empty), LoadError::WrongWorld(..)));
    // A component that imports a function: policies may import nothing.
    let importing =
        wat::parse_str(r#"(component (import "clock" (func (result u64))))"#).expect("wat");
    let err = load(&importing);
    assert!(matches!(err, LoadError::WrongWorld(..)), "{err}");
    assert!(err.to_string().contains("import nothing"), "{err}");
}

#[test]
fn a_policy_built_for_contract_0_1_is_refused_naming_both_versions() {
    let registry = registry();
    let err = Policy::from_bytes(
        registry.engine(),
        "old.wasm",
        Source::Builtin,
        LEGACY_V01,
        &[],
    )
    .err()
    .expect("a 0.1.0 component is refused");
    assert!(matches!(err, LoadError::WrongVersion(..)), "{err}");
    let message = err.to_string();
    for needle in [
        "pinwarden:policy@0.1.0",
        "pinwarden:policy@0.5.0",
        "rebuild",
    ] {
        assert!(message.contains(needle), "{needle} missing: {message}");
    }
}

/// A contained job keeps the parameters it was configured with that the fallback understands:
/// a scenario that needs two nodes still gets two after its policy traps.
#[test]
fn containment_keeps_the_jobs_parameters() {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", "trap"), ("after", "0")]);
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let scenario = pinwarden::sim::Scenario::parse(
        r#"
name = "quorum-under-containment"
[params]
quorum = 2
[[node]]
name = "primary"
role = "primary"
[[node]]
name = "backup-1"
role = "backup"
[[node]]
name = "backup-2"
role = "backup"
[expect]
status = "pinned"
"#,
        "inline",
    )
    .expect("scenario");
    let report = pinwarden::sim::run(&policy, &fallback, &scenario, pinwarden::sim::Mode::Expect)
        .expect("runs");
    let round = report.final_round().expect("a round");
    assert_eq!(round.status, RoundEnd::Pinned, "{:?}", round.reason);
    assert_eq!(
        round.confirmed.len(),
        2,
        "quorum 2 kept: {:?}",
        round.confirmed
    );
    assert!(
        round
            .trace
            .iter()
            .any(|l| l.text.contains("continuing under tank-mode with")
                && l.text.contains("quorum=2")),
        "the trace says which parameters: {:#?}",
        round.trace
    );
}

/// What a policy returns is bounded: a 10 MB failure reason reaches the result, the trace (and,
/// in the daemon, the queue and the logs) as a kilobyte and a marker.
#[test]
fn a_huge_reason_is_cut_before_it_is_stored() {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", "huge-reason"), ("after", "0")]);
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let result = round(&policy, &fallback, &topology(&[]), &job(false));
    assert_eq!(result.status, RoundEnd::Failed);
    let reason = result.reason.as_deref().unwrap_or_default();
    assert!(reason.len() < 2048, "{} bytes", reason.len());
    assert!(reason.ends_with("bytes cut by the host]"), "{reason}");
    assert!(result.trace.iter().all(|l| l.text.len() < 4096));
}

/// A policy that is never too slow for one call's deadline but slow on every call is stopped
/// by the round's policy-time budget, and the job goes on under the fallback.
#[test]
fn a_slow_policy_is_stopped_by_the_rounds_time_budget() {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", "slow"), ("after", "0")]);
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let limits = RoundLimits {
        policy_time: std::time::Duration::from_millis(50),
        ..RoundLimits::default()
    };
    let result = round_with(&policy, &fallback, &topology(&[]), &job(false), &limits);
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.reason);
    assert_eq!(result.decided_by, "tank-mode");
    assert_eq!(result.incidents.len(), 1, "{:?}", result.incidents);
    assert_eq!(result.incidents[0].kind, IncidentKind::Budget);
    assert!(result.incidents[0].message.contains("budget 50 ms"));
}

/// A policy that is merely slow keeps its deadline on a machine busy with other work: the
/// deadline counts the call's CPU time, and the machine's load only stretches its wall time.
#[test]
fn a_slow_policy_on_a_busy_machine_keeps_its_deadline() {
    use pinwarden::policy::engine::SandboxLimits;
    use pinwarden::policy::session::thread_cpu_time;
    use pinwarden::policy::{PolicyEngine, Registry};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let job = crate::support::policies::job(false);
    let nodes = crate::support::policies::topology(&[]).infos();
    // The slow mode's CPU time per decision, on an idle machine.
    let plain = crate::support::policies::registry();
    let mut session = hostile(&plain, &[("mode", "slow")])
        .session()
        .expect("session");
    let mut cpu = Vec::new();
    for _ in 0..5 {
        let t = thread_cpu_time();
        session.decide(&job, &nodes, &[], 0).expect("decides");
        cpu.push(thread_cpu_time() - t);
    }
    cpu.sort();
    let deadline = (cpu[2] * 3).max(Duration::from_millis(2));
    let limits = SandboxLimits {
        call_deadline: deadline,
        ..SandboxLimits::default()
    };
    let tight = Registry::new(PolicyEngine::new(limits, None).expect("engine"));
    let mut session = hostile(&tight, &[("mode", "slow")])
        .session()
        .expect("session");
    // Many more busy threads than cores: each decision gets a fraction of a core.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..cores * 8)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        outcomes.push(session.decide(&job, &nodes, &[], 0).map(|_| ()));
        slowest = slowest.max(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    assert!(
        slowest > deadline,
        "the machine was not busy enough to test this: slowest decision {slowest:?}, deadline {deadline:?}"
    );
    for o in outcomes {
        o.unwrap_or_else(|i| {
            panic!(
                "slow (CPU {:?}, deadline {deadline:?}) but sound: {i}",
                cpu[2]
            )
        });
    }
    // The deadline still ends a call that uses its CPU time up.
    let looping = hostile(&tight, &[("mode", "loop")]);
    let err = looping
        .session()
        .expect("session")
        .decide(&job, &nodes, &[], 0)
        .expect_err("a loop is interrupted");
    assert_eq!(err.kind, IncidentKind::Timeout);
}
