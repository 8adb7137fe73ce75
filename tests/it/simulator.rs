//! The simulator: built-in scenarios through the real executor on virtual time.

use crate::support::policies::registry;
use pinwarden::executor::RoundEnd;
use pinwarden::sim::{self, Mode, Scenario};
use std::time::Instant;

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
    assert_eq!(reports.len(), 10);
    for r in &reports {
        assert!(r.passed(), "{}: {:?}", r.scenario, r.failures);
    }
}

#[test]
fn single_backup_passes_all_but_the_quorum_scenarios() {
    let reports = run_builtin("single-backup");
    for r in &reports {
        if ["quorum-2-of-3", "cluster-quorum"].contains(&r.scenario.as_str()) {
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

    let node = "name = \"x\"\n[[node]]\nname = \"p\"\nrole = \"primary\"\n";
    let cases = [
        (
            "[jobs]\ncount = 0\n",
            "[expect]\nstatus = \"pinned\"\n",
            "jobs.count must be from 1",
        ),
        (
            "",
            "[[node.phase]]\nfrom_ms = 10\nuntil_ms = 5\n[expect]\nstatus = \"pinned\"\n",
            "phase 1 ends before it starts",
        ),
        (
            "",
            "[expect]\nstatus = \"pinned\"\nmax_pins_while_open = { q = 1 }\n",
            "unknown node 'q'",
        ),
        (
            "",
            "[expect]\nstatus = \"pinned\"\nall_pinned_on_backups_between = [0, 10]\n",
            "no backup node",
        ),
        (
            "",
            "[expect]\nstatus = \"pinned\"\nlatency_ms = { p42 = 1 }\n",
            "p42",
        ),
    ];
    for (jobs, rest, needle) in cases {
        let text = format!("{node}{jobs}{rest}");
        let err = Scenario::parse(&text, "s.toml").unwrap_err();
        assert!(err.contains(needle), "{text}: {err}");
    }
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
    assert_eq!(
        report.final_round().map(|r| r.status),
        Some(RoundEnd::Pinned)
    );
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

fn outage_report(policy_name: &str, params: &[(String, String)]) -> (sim::Report, u128) {
    let registry = registry();
    let policy = registry.resolve(policy_name, params).expect("loads");
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let scenario = Scenario::builtin()
        .into_iter()
        .find(|s| s.name == "supernode-outage")
        .expect("built-in outage scenario");
    let started = Instant::now();
    let report = sim::run(&policy, &fallback, &scenario, Mode::Expect).expect("runs");
    (report, started.elapsed().as_millis())
}

#[test]
fn the_supernode_outage_drill_passes_under_tank_mode_defaults() {
    let (report, wall_ms) = outage_report("tank-mode", &[]);
    // Reported, not asserted: timing targets belong in the benchmarks.
    println!(
        "supernode-outage: {} jobs over {} ms of virtual time in {wall_ms} ms of wall time",
        report.jobs.len(),
        report.virtual_ms()
    );
    assert!(report.passed(), "{:?}", report.failures);
    assert_eq!(report.jobs.len(), 60);
    assert_eq!(report.ended(RoundEnd::Pinned), 60);
    // One ledger across the jobs: the first jobs race the backup against the stalling
    // primary (hedging) and abandon the primary's pin; later ones skip the open breaker.
    let first = report.job_rounds(&report.jobs[0]);
    assert!(
        first[0]
            .trace
            .iter()
            .any(|l| l.text.contains("pin abandoned")),
        "{:#?}",
        first[0].trace
    );
    // Hedged once the primary's pin had shown no progress for 1 s (`hedge_quiet_ms`), then
    // the backup's pin (800 ms) and its proof (`pin ls` and the block check together, 20 ms).
    assert_eq!(
        report.jobs[0].latency_ms(),
        1_820,
        "hedged when quiet for 1 s"
    );
    let primary = report.node("primary").expect("primary");
    let open = primary.pins_while_open();
    assert!((1..=41).contains(&open), "{open} pins while open");
    assert!(
        primary.pins_cancelled() >= 3,
        "the lost races were cancelled"
    );
    // Job 41 comes at minute 40, when the primary has recovered.
    let after = report.job_end(&report.jobs[40]).expect("job 41 ended");
    assert_eq!(after.confirmed, ["primary"]);
}

#[test]
fn without_breaker_and_hedging_the_outage_expectations_fail_with_the_difference() {
    let params = [
        ("breaker_failures".to_string(), "0".to_string()),
        ("hedge_after_ms".to_string(), "0".to_string()),
    ];
    let (report, _) = outage_report("tank-mode", &params);
    assert!(!report.passed());
    let failures = report.failures.join("\n");
    // Every job waits out five stalls of the primary (5 × 60 s and the backoffs) first.
    assert!(
        failures.contains("max latency 330.820s (330820 ms), expected at most 11000 ms"),
        "{failures}"
    );
    assert!(
        failures.contains("p50 latency 330.820s (330820 ms), expected at most 2000 ms"),
        "{failures}"
    );
    // The last jobs of the outage were still retrying the primary when it recovered.
    assert!(
        failures.contains("4 of 40 jobs submitted in [0, 2400000) ms not pinned on backups only; first: sim-job-37 (submitted at 2160.000s) (pinned on primary)"),
        "{failures}"
    );
    // No breaker: nothing counts as sent through an open one.
    assert_eq!(report.failures.len(), 3, "{failures}");
}

#[test]
fn wrong_stream_expectations_fail_with_the_difference() {
    let text = r#"
        name = "short-outage"
        [jobs]
        count = 6
        interval_ms = 60_000
        [[node]]
        name = "primary"
        role = "primary"
        [[node.phase]]
        until_ms = 240_000
        pin = ["stall"]
        [[node]]
        name = "backup-1"
        role = "backup"
        [expect]
        status = "pinned"
        latency_ms = { p90 = 1_000 }
        all_pinned_on_backups_between = [0, 360_000]
        max_pins_while_open = { primary = 0 }
        confirmed_after = { primary = { from_ms = 0, min_jobs = 6 } }
        nodes = ["backup-1"]
    "#;
    let report = run_inline(text);
    let failures = report.failures.join("\n");
    for needle in [
        "p90 latency 1.820s (1820 ms), expected at most 1000 ms",
        "2 of 6 jobs submitted in [0, 360000) ms not pinned on backups only; first: sim-job-5 (submitted at 240.000s) (pinned on primary)",
        "1 pins on primary while its breaker was open, expected at most 0",
        "2 jobs submitted from 0 ms on confirmed on primary, expected at least 6",
        "2 of 6 jobs: first, sim-job-5 (submitted at 240.000s): confirmed on [\"primary\"], expected [\"backup-1\"]",
    ] {
        assert!(
            failures.contains(needle),
            "missing {needle:?} in:\n{failures}"
        );
    }
    assert_eq!(report.failures.len(), 5, "{failures}");
}

/// The outage drain benchmark's scenario (BENCHMARKS.md): behind an hour-long stall, the
/// breaker and hedging keep up with the arrivals; without them the jobs pile up.
#[test]
fn the_outage_drain_scenario_drains_faster_with_breaker_and_hedging() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios/outage-drain.toml"
    );
    let scenario = Scenario::from_file(std::path::Path::new(path)).expect("parses");
    let registry = registry();
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let drain = |params: &[(&str, &str)]| {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let policy = registry.resolve("tank-mode", &params).expect("loads");
        let started = Instant::now();
        let report = sim::run(&policy, &fallback, &scenario, Mode::Expect).expect("runs");
        let wall_ms = started.elapsed().as_millis();
        assert!(report.passed(), "{:?}", report.failures);
        let (pinned, window) = report.pinned_while_arriving().expect("a stream");
        println!(
            "outage-drain {params:?}: {pinned} pinned in {window} ms, latency {:?}, {wall_ms} ms wall",
            report.latency()
        );
        pinned
    };
    let before = drain(&[("breaker_failures", "0"), ("hedge_after_ms", "0")]);
    let after = drain(&[]);
    assert!(before < 200, "{before}");
    assert_eq!(after, 720, "the drain keeps up with a job every 5 s");
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

/// The nodes and expectation of the outage-backlog scenarios: a primary whose every pin stalls,
/// one healthy backup, every job pinned.
const STALLING_PRIMARY_AND_A_BACKUP: &str = r#"[[node]]
name = "primary"
role = "primary"
pin = ["stall"]
[[node]]
name = "backup-1"
role = "backup"
[expect]
status = "pinned"
"#;

/// A backlog behind a supernode that stalls: the first wave waits out the hedge delay, but the
/// jobs that start as it ends, before the breaker has counted three failures, see the primary's
/// other pins stuck past their delay and are hedged after the floor (1 s), not after a full
/// delay of their own (5 s, then 2.5 s: the tail of the drain measured on Kubo). The quiet rule
/// is off here: it would hedge the first wave at 1 s and hide this one.
#[test]
fn jobs_behind_a_stuck_first_wave_are_hedged_at_the_floor() {
    let jobs = r#"
name = "outage-backlog"
description = "30 lazy jobs 100 ms apart, 10 at a time, behind a primary that stalls"
params = { hedge_quiet_ms = 0 }
[job]
lazy = true
[jobs]
count = 30
interval_ms = 100
concurrency = 10
"#;
    let report = run_inline(&format!("{jobs}{STALLING_PRIMARY_AND_A_BACKUP}"));
    assert!(report.passed(), "{:?}", report.failures);
    // The first wave (submitted 100 ms apart) ends one by one from 10.84 s; the others wait
    // for its slots.
    let ends: Vec<u64> = report.jobs.iter().map(|j| j.ended_ms).collect();
    println!("outage-backlog: jobs end at (ms) {ends:?}");
    assert!(ends[..10].iter().all(|&t| t >= 10_000), "{ends:?}");
    // The last job ends within a couple of backup pins of the first wave's end: no job after
    // the first wave waits out a hedge delay longer than the floor.
    let (first_wave, last) = (ends[9], ends.iter().copied().max().unwrap_or(0));
    assert!(
        last <= first_wave + 3_000,
        "the second wave is hedged at the floor, not after 5 s or 2.5 s: {ends:?}"
    );
}

/// Jobs arriving every 100 ms, none waiting for a slot, behind a Kubo primary whose pins stall
/// without progress: each new pin must not make the node look less quiet (it has not moved
/// since the first one started), so every job is hedged about a second after the first pin,
/// never at the 10 s hedge delay. With the quiet rule off, the first jobs wait out that delay.
#[test]
fn pins_arriving_on_a_quiet_primary_do_not_reset_its_quiet_time() {
    let scenario = |quiet_ms: u64| {
        format!(
            r#"
name = "quiet-arrivals"
description = "40 jobs 100 ms apart behind a primary that stalls"
params = {{ hedge_quiet_ms = {quiet_ms} }}
[jobs]
count = 40
interval_ms = 100
{STALLING_PRIMARY_AND_A_BACKUP}"#
        )
    };
    let report = run_inline(&scenario(1_000));
    assert!(report.passed(), "{:?}", report.failures);
    let latencies: Vec<u64> = report.jobs.iter().map(|j| j.latency_ms()).collect();
    println!("quiet-arrivals: latencies (ms) {latencies:?}");
    // Hedged within a second of the primary going quiet, plus the backup's pin (800 ms) and
    // its proof: no job waits for the pins that arrived after it.
    let worst = latencies.iter().copied().max().unwrap_or(u64::MAX);
    assert!(worst <= 1_000 + 840, "{latencies:?}");
    let off = run_inline(&scenario(0));
    let first = off.jobs[0].latency_ms();
    assert!(first >= 10_000, "without the quiet rule: {first} ms");
}
