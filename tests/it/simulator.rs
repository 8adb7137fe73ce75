//! The simulator: built-in scenarios through the real executor on virtual time.

use crate::support::policies::registry;
use pinwarden::executor::Status;
use pinwarden::sim::{self, Mode, Scenario};

/// Runs an inline scenario under built-in tank-mode.
fn run_inline(text: &str) -> sim::Report {
    let scenario = Scenario::parse(text, "inline").expect("parses");
    let registry = registry();
    let policy = registry.resolve("tank-mode", &[]).expect("loads");
    let fallback = registry.fallback_for(&[]).expect("fallback");
    sim::run(&policy, &fallback, &scenario, Mode::Expect).expect("runs")
}

fn run_builtin(policy_name: &str) -> Vec<sim::Report> {
    let registry = registry();
    let policy = registry.resolve(policy_name, &[]).expect("built-in loads");
    let fallback = registry.fallback_for(&[]).expect("fallback");
    Scenario::builtin()
        .iter()
        .map(|s| sim::run(&policy, &fallback, s, Mode::Expect).expect("scenario runs"))
        .collect()
}

#[test]
fn tank_mode_passes_every_builtin_scenario() {
    let reports = run_builtin("tank-mode");
    assert_eq!(reports.len(), 7);
    for r in &reports {
        assert!(r.passed(), "{}: {:?}", r.scenario, r.failures);
    }
}

#[test]
fn single_backup_passes_all_but_the_quorum_scenario() {
    let reports = run_builtin("single-backup");
    for r in &reports {
        if r.scenario == "quorum-2-of-3" {
            let why = r.not_applicable.as_deref().unwrap_or_default();
            assert!(why.contains("no parameter 'quorum'"), "{why}");
        } else {
            assert!(r.passed(), "{}: {:?}", r.scenario, r.failures);
        }
    }
}

#[test]
fn waits_and_timeouts_cost_virtual_time_only() {
    let reports = run_builtin("tank-mode");
    let recovers = reports
        .iter()
        .find(|r| r.scenario == "primary-recovers")
        .expect("scenario");
    // Two 300 s pin timeouts and 2 s + 4 s of backoff happened on the virtual clock.
    assert!(
        recovers.virtual_ms() >= 606_000,
        "{}",
        recovers.virtual_ms()
    );
    let trace: Vec<String> = recovers.rounds[0]
        .trace
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert!(
        trace.iter().any(|l| l.contains("waiting 4.000s")),
        "{trace:#?}"
    );
    assert!(
        trace.iter().any(|l| l.contains("pin attempt 3/5")),
        "{trace:#?}"
    );
}

#[test]
fn runs_are_deterministic() {
    let a = run_builtin("tank-mode");
    let b = run_builtin("tank-mode");
    for (x, y) in a.iter().zip(&b) {
        let tx: Vec<_> = x.rounds.iter().flat_map(|r| r.trace.clone()).collect();
        let ty: Vec<_> = y.rounds.iter().flat_map(|r| r.trace.clone()).collect();
        assert_eq!(tx, ty, "{}", x.scenario);
    }
}

#[test]
fn a_wrong_expectation_fails_with_the_difference() {
    let text = r#"
        name = "expects-backup"
        [[node]]
        name = "primary"
        role = "primary"
        [[node]]
        name = "backup-1"
        role = "backup"
        [expect]
        status = "pinned"
        nodes = ["backup-1"]
    "#;
    let report = run_inline(text);
    assert!(!report.passed());
    assert!(
        report.failures[0].contains("expected [\"backup-1\"]"),
        "{:?}",
        report.failures
    );
}

#[test]
fn scenario_files_are_validated() {
    let bad_field = "name = \"x\"\n[[node]]\nname = \"p\"\nrole = \"primary\"\nflavour = 1\n[expect]\nstatus = \"pinned\"\n";
    let err = Scenario::parse(bad_field, "bad.toml").unwrap_err();
    assert!(err.contains("bad.toml") && err.contains("flavour"), "{err}");

    let bad_status =
        "name = \"x\"\n[[node]]\nname = \"p\"\nrole = \"primary\"\n[expect]\nstatus = \"done\"\n";
    let err = Scenario::parse(bad_status, "s.toml").unwrap_err();
    assert!(err.contains("unknown status 'done'"), "{err}");

    let unknown_node = "name = \"x\"\n[[node]]\nname = \"p\"\nrole = \"primary\"\n[expect]\nstatus = \"pinned\"\nnodes = [\"q\"]\n";
    let err = Scenario::parse(unknown_node, "s.toml").unwrap_err();
    assert!(err.contains("unknown node 'q'"), "{err}");
}

#[test]
fn contract_mode_ignores_policy_specific_expectations() {
    // single-backup never tries backup-2, so an expectation written for tank-mode would fail,
    // but the contract (end without incidents, pin when everything works) holds.
    let registry = registry();
    let policy = registry.resolve("single-backup", &[]).expect("loads");
    let fallback = registry.fallback_for(&[]).expect("fallback");
    for scenario in Scenario::builtin() {
        let report = sim::run(&policy, &fallback, &scenario, Mode::Contract).expect("runs");
        assert!(
            report.not_applicable.is_some() || report.passed(),
            "{}: {:?}",
            scenario.name,
            report.failures
        );
    }
    let happy = Scenario::builtin()
        .into_iter()
        .find(|s| s.name == "happy-path")
        .expect("happy path");
    let report = sim::run(&policy, &fallback, &happy, Mode::Contract).expect("runs");
    assert_eq!(report.final_round().map(|r| r.status), Some(Status::Pinned));
}

#[test]
fn a_lazy_job_whose_local_fallback_fails_stays_retryable() {
    let text = r#"
        name = "local-down-too"
        [job]
        lazy = true
        max_rounds = 5
        [params]
        attempts = 1
        local_fallback_after = 2
        [[node]]
        name = "primary"
        role = "primary"
        offline = true
        [[node]]
        name = "local"
        role = "local"
        pin = ["refused"]
        [expect]
        status = "failed"
        reason_starts_with = "CRITICAL: local fallback pin failed"
        rounds = 5
    "#;
    let report = run_inline(text);
    assert!(report.passed(), "{:?}", report.failures);
    // From round 2 on, every round asks for the local fallback again (the queue keeps the job).
    let asked = report
        .rounds
        .iter()
        .filter(|r| r.trace.iter().any(|l| l.text.contains("LAZY PIN FALLBACK")))
        .count();
    assert_eq!(asked, 4);
}

/// A backup's every attempt starts with a provider hint (the kit's default); the executor
/// renews the connection for every hint after the first, and the trace says so.
#[test]
fn every_backup_attempt_gets_a_hint_and_repeated_hints_renew_the_connection() {
    let text = r#"
name = "backup-retries"
description = "the primary refuses; the backup stalls twice, then pins"

[[node]]
name = "primary"
role = "primary"
pin = ["refused"]

[[node]]
name = "backup-1"
role = "backup"
pin = ["stall", "stall", "ok"]

[expect]
status = "pinned"
nodes = ["backup-1"]
pins = { primary = 5, backup-1 = 3 }
"#;
    let report = run_inline(text);
    assert!(report.passed(), "{:?}", report.failures);
    let round = report.final_round().expect("a round");
    let hints: Vec<&str> = round
        .trace
        .iter()
        .filter(|l| l.node.as_deref() == Some("backup-1") && l.text.starts_with("connect to"))
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(
        hints,
        [
            "connect to primary (provider hint)",
            "connect to primary (provider hint), renewing the connection",
            "connect to primary (provider hint), renewing the connection",
        ]
    );
}
