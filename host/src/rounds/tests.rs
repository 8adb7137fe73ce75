//! Round records: what a decision saw is rebuilt exactly, the live policy agrees with its own
//! records, another policy's divergences are classified and predicted, and the files on disk
//! stay within their bounds and survive a torn line.

use super::replay::{self, Answer, Class};
use super::store::{self, Limits, Recorder};
use super::*;
use crate::executor::RoundLimits;
use crate::policy::contract::{Action, PinRequest, WaitRequest};
use crate::policy::{PolicyEngine, Registry};
use crate::sim::scenario::Scenario;
use std::sync::Arc;
use std::time::Duration;

fn registry() -> Registry {
    Registry::new(PolicyEngine::new(Default::default(), None).expect("engine"))
}

fn builtin(r: &Registry, name: &str) -> Arc<Policy> {
    r.builtin(name, &[]).expect("a built-in").expect("loads")
}

/// Rounds of the built-in scenarios' jobs under `policy`, on their scripted nodes, as records.
fn records_of(policy: &Policy, fallback: &Policy) -> Vec<RoundRecord> {
    Scenario::builtin()
        .iter()
        .filter(|s| s.jobs.is_none())
        .map(|s| {
            let job = Job {
                cid: s.job.cid.clone(),
                job_id: s.name.clone(),
                size_bytes: s.job.size_bytes,
                lazy: s.job.lazy,
                failed_rounds: 0,
            };
            let result = crate::sim::run_round_on(
                policy,
                fallback,
                &job,
                s.nodes.clone(),
                &RoundLimits::default(),
            )
            .expect("simulated");
            RoundRecord::new("sim", 0, &job, policy, fallback, &result)
        })
        .collect()
}

#[test]
fn the_live_policy_agrees_with_its_own_records() {
    let r = registry();
    let tank = builtin(&r, "tank-mode");
    let records = records_of(&tank, &tank);
    assert!(records.len() >= 7, "{}", records.len());
    let (rounds, summary) = replay::replay(&records, &tank, &tank, &RoundLimits::default());
    for round in &rounds {
        assert!(
            round.divergence.is_none() && round.unreplayable.is_none(),
            "{}: {round:?}",
            round.job_id
        );
    }
    assert_eq!(summary.agree, records.len());
    let points: usize = records.iter().map(|r| r.points.len()).sum();
    assert_eq!(summary.decisions, points, "every point was asked");
    assert!(points > 3 * records.len(), "{points}");
}

#[test]
fn a_record_survives_its_json_line() {
    let r = registry();
    let tank = builtin(&r, "tank-mode");
    for record in records_of(&tank, &tank) {
        let line = serde_json::to_string(&record).expect("encodes");
        let back: RoundRecord = serde_json::from_str(&line).expect("decodes");
        assert_eq!(back, record);
    }
}

#[test]
fn the_history_a_decision_saw_is_rebuilt() {
    let r = registry();
    let tank = builtin(&r, "tank-mode");
    let records = records_of(&tank, &tank);
    let record = records
        .iter()
        .find(|r| r.job.job_id == "primary-lies")
        .expect("primary-lies");
    // The first decision saw nothing; every later one saw a longer or more complete history.
    assert_eq!(record.history_at(0).map(|h| h.len()), Some(0));
    let mut done_before = 0;
    for k in 0..record.points.len() {
        let h = record.history_at(k).expect("consistent");
        assert_eq!(h.len(), record.points[k].len as usize);
        let done = h.iter().filter(|e| e.outcome.is_some()).count();
        assert!(done >= done_before);
        // An event still running at the decision carries no end.
        assert!(
            h.iter()
                .all(|e| e.outcome.is_some() == e.ended_ms.is_some())
        );
        done_before = done;
    }
    assert!(record.history_at(record.points.len()).is_none());
}

/// Nodes scripted in the scenario format (`[[node]]` tables).
fn nodes(toml_text: &str) -> Vec<crate::sim::node::NodeScript> {
    #[derive(serde::Deserialize)]
    struct Nodes {
        node: Vec<crate::sim::node::NodeScript>,
    }
    toml::from_str::<Nodes>(toml_text).expect("nodes").node
}

/// One round of `job_id` under `policy` on `scripts`, as a record.
fn record_on(
    policy: &Policy,
    fallback: &Policy,
    job_id: &str,
    scripts: Vec<crate::sim::node::NodeScript>,
) -> RoundRecord {
    let job = Job {
        cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        job_id: job_id.into(),
        size_bytes: 1 << 20,
        lazy: false,
        failed_rounds: 0,
    };
    let result = crate::sim::run_round_on(policy, fallback, &job, scripts, &RoundLimits::default())
        .expect("simulated");
    RoundRecord::new("sim", 0, &job, policy, fallback, &result)
}

/// A dead primary and two backups, the first of them failing: tank-mode goes on to the
/// second backup, single-backup never does.
const SECOND_BACKUP_SAVES: &str = r#"
[[node]]
name = "primary"
role = "primary"
offline = true
[[node]]
name = "backup-1"
role = "backup"
pin = ["http500"]
[[node]]
name = "backup-2"
role = "backup"
pin_ms = 2000
"#;

#[test]
fn single_backup_against_tank_mode_records_diverges_as_expected() {
    let r = registry();
    let (tank, single) = (builtin(&r, "tank-mode"), builtin(&r, "single-backup"));
    let mut records = records_of(&tank, &tank);
    records.push(record_on(
        &tank,
        &tank,
        "second-backup-saves",
        nodes(SECOND_BACKUP_SAVES),
    ));
    let saved = records.last().expect("pushed");
    assert_eq!(
        (saved.end.status, saved.end.confirmed.clone()),
        (RoundEnd::Pinned, vec!["backup-2".to_string()]),
        "the live round ended on backup-2"
    );
    let (rounds, summary) = replay::replay(&records, &single, &tank, &RoundLimits::default());
    let by = |job: &str| {
        rounds
            .iter()
            .find(|r| r.job_id == job)
            .unwrap_or_else(|| panic!("{job}"))
    };
    // With one backup (every built-in scenario but the quorum ones), both policies do the same.
    for job in [
        "happy-path",
        "primary-recovers",
        "primary-lies",
        "primary-offline",
        "all-fail",
    ] {
        assert!(by(job).divergence.is_none(), "{job}: {:?}", by(job));
    }
    // Where tank-mode goes on to backup-2, single-backup gives up instead, and the simulator
    // predicts the round fails where it pinned.
    let saves = by("second-backup-saves");
    let d = saves.divergence.as_ref().expect("diverges");
    assert_eq!(d.class, Class::GivesUpEarlier, "{d:?}");
    assert!(
        matches!(&d.live, Answer::Actions(a) if a.iter().any(|a| a.node() == Some("backup-2"))),
        "{d:?}"
    );
    let p = saves.prediction.as_ref().expect("predicted");
    assert_eq!(p.status, RoundEnd::Failed, "{p:?}");
    assert!(!p.same_end);
    assert!(
        p.assumed.is_empty(),
        "every node it used was asked live: {p:?}"
    );
    assert!(summary.predicted_newly_failed >= 1, "{summary:?}");
    assert_eq!(summary.agree + summary.diverge, records.len());
    assert_eq!(summary.by_class.values().sum::<usize>(), summary.diverge);
}

#[test]
fn a_node_the_live_round_never_asked_is_an_assumption() {
    let r = registry();
    let (tank, single) = (builtin(&r, "tank-mode"), builtin(&r, "single-backup"));
    // Recorded under single-backup, which fails: backup-2 is never asked, nothing is known of it.
    let record = record_on(&single, &tank, "gave-up", nodes(SECOND_BACKUP_SAVES));
    assert_eq!(record.end.status, RoundEnd::Failed);
    let (scripts, unasked) = replay::scripts_of(&record);
    assert_eq!(scripts.len(), 3);
    assert_eq!(unasked, ["backup-2"]);
    assert!(scripts[0].offline, "the primary refused every call");
    assert!(
        scripts[1]
            .pin
            .iter()
            .all(|a| *a == crate::sim::node::PinAnswer::Http500),
        "{:?}",
        scripts[1].pin
    );
    // tank-mode goes on where single-backup failed, and would have pinned on backup-2: a
    // prediction that rests on a node the record knows nothing about, and says so.
    let (rounds, summary) = replay::replay(&[record], &tank, &tank, &RoundLimits::default());
    let d = rounds[0].divergence.as_ref().expect("diverges");
    assert_eq!(d.class, Class::KeepsGoing, "{d:?}");
    let p = rounds[0].prediction.as_ref().expect("predicted");
    assert_eq!(
        (p.status, p.confirmed.clone()),
        (RoundEnd::Pinned, vec!["backup-2".to_string()])
    );
    assert_eq!(p.assumed, ["backup-2"], "{p:?}");
    assert_eq!(
        (
            summary.predicted_newly_pinned,
            summary.predictions_with_assumptions
        ),
        (1, 1)
    );
}

fn pin(node: &str) -> Action {
    Action::Pin(PinRequest {
        node: node.into(),
        timeout_ms: 1_000,
        stall_timeout_ms: 500,
    })
}

fn wait(ms: u64) -> Action {
    Action::Wait(WaitRequest { ms, node: None })
}

#[test]
fn divergences_are_classified() {
    let a = |v: Vec<Action>| Answer::Actions(v);
    let cases = [
        (
            vec![pin("primary")],
            vec![pin("backup-1")],
            Class::OtherNode,
        ),
        (vec![wait(100)], vec![wait(400)], Class::LongerWait),
        (vec![wait(400)], vec![wait(100)], Class::ShorterWait),
        (vec![pin("primary")], vec![wait(100)], Class::LongerWait),
        (vec![wait(100)], vec![pin("primary")], Class::ShorterWait),
        (
            vec![pin("primary")],
            vec![Action::Fail("x".into())],
            Class::GivesUpEarlier,
        ),
        (
            vec![pin("primary")],
            vec![Action::LocalFallback],
            Class::FallsBack,
        ),
        (
            vec![pin("primary")],
            vec![Action::Succeed(vec!["primary".into()])],
            Class::SucceedsSooner,
        ),
        (
            vec![Action::Fail("x".into())],
            vec![pin("backup-1")],
            Class::KeepsGoing,
        ),
    ];
    for (live, candidate, class) in cases {
        assert_eq!(
            replay::classify(&a(live.clone()), &a(candidate.clone())),
            class,
            "{live:?} vs {candidate:?}"
        );
    }
    assert_eq!(
        replay::classify(&a(vec![wait(1)]), &Answer::Incident("trap".into())),
        Class::Incident
    );
}

fn small(segment_bytes: u64, max_bytes: u64) -> Limits {
    Limits {
        segment_bytes,
        max_bytes,
        max_age: Duration::from_secs(3600),
    }
}

#[test]
fn records_stay_within_their_bound_and_a_torn_line_is_skipped() {
    let r = registry();
    let tank = builtin(&r, "tank-mode");
    let record = records_of(&tank, &tank).remove(0);
    let size = serde_json::to_vec(&record).expect("encodes").len() as u64 + 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let rounds = dir.path().join("rounds");
    let recorder = Recorder::with_limits(&rounds, small(size * 10, size * 30));
    for i in 0..200 {
        let mut r = record.clone();
        r.at_ms = i;
        recorder.record(r);
    }
    recorder.close();
    assert_eq!(recorder.written(), 200);
    let read = store::read(&rounds, None, None).expect("reads");
    // Pruned to the bound (one segment over, at most, while the newest fills).
    assert!(read.bytes <= size * 40, "{} bytes", read.bytes);
    // At least the bound less one segment.
    assert!(read.records.len() >= 20, "{}", read.records.len());
    let newest = read.records.last().expect("some").at_ms;
    assert_eq!(newest, 199, "the newest are kept");
    // A kill -9 mid-line: the torn line is skipped, the rest read.
    let last = store::segments(&rounds).expect("list").pop().expect("one");
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .expect("open");
    std::io::Write::write_all(&mut torn, b"{\"v\":1,\"at_ms\":5,\"by\":\"dae").expect("write");
    let again = store::read(&rounds, None, None).expect("reads");
    assert_eq!(again.skipped, 1);
    assert_eq!(again.records.len(), read.records.len());
    // Filters.
    let since = store::read(&rounds, Some(190), None).expect("reads");
    assert_eq!(since.records.len(), 10);
    let none = store::read(&rounds, None, Some("no-such-job")).expect("reads");
    assert!(none.records.is_empty());
}

#[test]
fn two_processes_write_their_own_segments() {
    let r = registry();
    let tank = builtin(&r, "tank-mode");
    let record = records_of(&tank, &tank).remove(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = small(1 << 20, 8 << 20);
    let (a, b) = (
        Recorder::with_limits(dir.path(), limits),
        Recorder::with_limits(dir.path(), limits),
    );
    for _ in 0..50 {
        a.record(record.clone());
        b.record(record.clone());
    }
    a.close();
    b.close();
    assert_eq!(store::segments(dir.path()).expect("list").len(), 2);
    let read = store::read(dir.path(), None, None).expect("reads");
    assert_eq!((read.records.len(), read.skipped), (100, 0));
}

#[test]
fn a_recorder_that_is_off_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = store::RoundsConfig {
        enabled: false,
        ..Default::default()
    };
    let r = registry();
    let tank = builtin(&r, "tank-mode");
    let recorder = Recorder::open(dir.path(), &config);
    recorder.record(records_of(&tank, &tank).remove(0));
    recorder.close();
    assert!(!store::dir(dir.path()).exists());
}

/// One simulated round under `live`, with `shadow` asked beside it; the round's record is
/// handed to the shadow as the daemon hands it (written by the shadow when it has a recorder).
fn shadowed(
    live: &Policy,
    fallback: &Policy,
    shadow: Option<&Arc<super::shadow::Shadow>>,
    scripts: Vec<crate::sim::node::NodeScript>,
) -> crate::executor::RoundResult {
    let job = Job {
        cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        job_id: "shadowed".into(),
        size_bytes: 1 << 20,
        lazy: false,
        failed_rounds: 0,
    };
    let mut link = shadow.map(|s| s.round());
    let result = crate::sim::run_round_shadowed_on(
        live,
        fallback,
        &job,
        scripts,
        &RoundLimits::default(),
        link.as_mut(),
    )
    .expect("simulated");
    if let Some(link) = link {
        let record = RoundRecord::new("sim", 0, &job, live, fallback, &result);
        let _ = link.finish(record);
    }
    result
}

#[test]
fn a_shadows_answers_are_written_into_the_rounds_record() {
    let r = registry();
    let (tank, single) = (builtin(&r, "tank-mode"), builtin(&r, "single-backup"));
    let dir = tempfile::tempdir().expect("tempdir");
    let recorder = Arc::new(Recorder::with_limits(dir.path(), small(1 << 20, 1 << 30)));
    let shadow = super::shadow::Shadow::start(
        Arc::clone(&single),
        "single-backup",
        RoundLimits::default(),
        None,
        Some(Arc::clone(&recorder)),
    )
    .expect("shadow thread");
    let live = shadowed(&tank, &tank, Some(&shadow), nodes(SECOND_BACKUP_SAVES));
    shadow.stop();
    recorder.close();
    let read = store::read(dir.path(), None, None).expect("reads");
    assert_eq!(read.records.len(), 1, "one record, written once");
    let record = &read.records[0];
    assert_eq!(
        record.points, live.decisions,
        "the live round's record as it was"
    );
    let verdict = record.shadow.as_ref().expect("the shadow's answers");
    assert_eq!(verdict.policy.name, "single-backup");
    assert_eq!(verdict.compared as usize, live.decisions.len());
    assert_eq!(
        verdict.agree as usize + verdict.diverged.len(),
        verdict.compared as usize
    );
    // single-backup gives up where tank-mode goes on to backup-2: that decision is kept,
    // with its index into the record's points and what the shadow answered.
    let gave_up = verdict
        .diverged
        .iter()
        .find(|d| d.class == Class::GivesUpEarlier)
        .unwrap_or_else(|| panic!("no gives-up-earlier in {verdict:?}"));
    assert!((gave_up.k as usize) < record.points.len());
    assert!(
        matches!(&gave_up.answer, Answer::Actions(a) if a.iter().any(|x| matches!(x, Action::Fail(_)))),
        "{gave_up:?}"
    );
    // Without a shadow, the record carries none.
    let alone = records_of(&tank, &tank).remove(0);
    assert!(alone.shadow.is_none());
    assert!(
        !serde_json::to_string(&alone)
            .expect("encodes")
            .contains("\"shadow\"")
    );
}

#[test]
fn a_shadow_changes_nothing_the_live_round_does_and_is_compared() {
    let r = registry();
    let (tank, single) = (builtin(&r, "tank-mode"), builtin(&r, "single-backup"));
    let alone = shadowed(&tank, &tank, None, nodes(SECOND_BACKUP_SAVES));
    let shadow = super::shadow::Shadow::start(
        Arc::clone(&single),
        "single-backup",
        RoundLimits::default(),
        None,
        None,
    )
    .expect("shadow thread");
    let beside = shadowed(&tank, &tank, Some(&shadow), nodes(SECOND_BACKUP_SAVES));
    shadow.stop();
    // The same node calls, in the same order, at the same (virtual) times.
    assert_eq!(
        serde_json::to_string(&beside.trace).expect("trace"),
        serde_json::to_string(&alone.trace).expect("trace")
    );
    assert_eq!(beside.history, alone.history);
    assert_eq!(beside.decisions, alone.decisions);
    let report = shadow.report();
    assert_eq!(report.rounds, 1);
    assert_eq!(report.decisions as usize, beside.decisions.len());
    assert_eq!(
        report.agree + report.by_class.values().sum::<u64>(),
        report.decisions
    );
    // single-backup gives up where tank-mode goes on to backup-2.
    assert_eq!(report.rounds_diverged, 1);
    assert!(
        report.by_class.contains_key("gives-up-earlier"),
        "{report:?}"
    );
    assert_eq!((report.incidents, report.skipped), (0, 0));
    assert!(!report.recent.is_empty());
}

#[test]
fn the_live_policy_as_its_own_shadow_always_agrees() {
    let r = registry();
    let tank = builtin(&r, "tank-mode");
    let shadow = super::shadow::Shadow::start(
        Arc::clone(&tank),
        "tank-mode",
        RoundLimits::default(),
        None,
        None,
    )
    .expect("shadow thread");
    let mut decisions = 0;
    for s in Scenario::builtin().iter().filter(|s| s.jobs.is_none()) {
        decisions += shadowed(&tank, &tank, Some(&shadow), s.nodes.clone())
            .decisions
            .len();
    }
    shadow.stop();
    let report = shadow.report();
    assert_eq!(report.decisions as usize, decisions);
    assert_eq!(report.agree, report.decisions, "{report:?}");
    assert_eq!(report.rounds_diverged, 0);
}
