//! Metrics, spike alerts and structured logs.

use crate::support::policies::{hostile, job, registry, round, script, topology};
use crate::support::webhook::webhook_receiver;
use pinwarden::config::AlertRule;
use pinwarden::daemon::alerts::Alerts;
use pinwarden::daemon::metrics::Metrics;
use pinwarden::queue::{Queue, Submission};

use pinwarden::Role;
use pinwarden::sim::node::{PinAnswer, SimNode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Instant;

fn rendered(metrics: &Metrics) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(&dir.path().join("q.db")).expect("queue");
    queue
        .submit(
            &Submission {
                cid: "c1".into(),
                job_id: "j1".into(),
                size_bytes: 1,
                lazy: true,
            },
            1,
        )
        .expect("submit");
    metrics.render(&queue, &dir.path().join("local-fallback-pins.jsonl"))
}

/// Metrics after rounds that exercise every family: a lying primary under a trapping policy,
/// a dead primary (backup fallback), a lazy local fallback, and two reloads.
fn busy_metrics() -> Metrics {
    let registry = registry();
    let metrics = Metrics::new();
    let hostile = hostile(&registry, &[("mode", "trap"), ("after", "3")]);
    let tank = registry
        .fallback_for(&[("attempts".into(), "1".into())])
        .expect("fallback");
    let rounds = [
        round(
            &hostile,
            &tank,
            &topology(&[PinAnswer::Lie, PinAnswer::Ok]),
            &job(false),
        ),
        round(&tank, &tank, &topology(&[PinAnswer::Refused]), &job(false)),
    ];
    for r in &rounds {
        metrics.observe_round(r, Some("primary"));
    }
    let mut lazy = job(true);
    lazy.failed_rounds = 5;
    let mut local = pinwarden::executor::Topology::new();
    let nodes: [(&str, Role, &[PinAnswer]); 2] = [
        ("primary", Role::Primary, &[PinAnswer::Refused]),
        ("local", Role::Local, &[]),
    ];
    for (name, role, pin) in nodes {
        let node = SimNode::new(script(name, role, pin, false));
        local.add(name, role, std::sync::Arc::new(node));
    }
    let r = round(&tank, &tank, &local, &lazy);
    assert_eq!(r.status, pinwarden::executor::Status::LocalFallback);
    metrics.observe_round(&r, Some("primary"));
    metrics.observe_reload(true);
    metrics.observe_reload(false);
    metrics
}

#[test]
fn metrics_count_attempts_outcomes_incidents_and_latency() {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", "trap"), ("after", "3")]);
    let fallback = registry.fallback_for(&[]).expect("fallback");
    // The primary lies once (a verification failure), then pins.
    let result = round(
        &policy,
        &fallback,
        &topology(&[PinAnswer::Lie, PinAnswer::Ok]),
        &job(false),
    );
    let metrics = Metrics::new();
    let signals = metrics.observe_round(&result, Some("primary"));
    assert_eq!(signals.pin_retries, 1);
    assert_eq!(signals.verification_failures, 1);
    assert_eq!(signals.policy_incidents, 1);
    let text = rendered(&metrics);
    for line in [
        "pinwarden_pin_attempts_total{node=\"primary\",outcome=\"ok\"} 2",
        "pinwarden_verification_failures_total{node=\"primary\",check=\"pin-ls\"} 1",
        "pinwarden_policy_incidents_total{policy=\"hostile\",kind=\"trap\"} 1",
        "pinwarden_rounds_total{state=\"pinned\"} 1",
        "pinwarden_jobs{state=\"queued\"} 1",
        "pinwarden_queue_depth 1",
        "pinwarden_journal_pending 0",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    let decisions = text
        .lines()
        .find(|l| l.starts_with("pinwarden_policy_decision_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("histogram count");
    assert_eq!(decisions as usize, result.decision_nanos.len());
    metrics.observe_reload(true);
    metrics.observe_reload(false);
    let text = rendered(&metrics);
    assert!(
        text.contains("pinwarden_policy_reloads_total{result=\"rejected\"} 1"),
        "{text}"
    );
}

#[test]
fn example_alert_rules_name_only_exposed_metrics() {
    #[derive(serde::Deserialize)]
    struct File {
        groups: Vec<Group>,
    }
    #[derive(serde::Deserialize)]
    struct Group {
        name: String,
        rules: Vec<Rule>,
    }
    #[derive(serde::Deserialize)]
    struct Rule {
        alert: String,
        expr: String,
        #[serde(rename = "for")]
        for_: Option<String>,
        labels: std::collections::BTreeMap<String, String>,
        annotations: std::collections::BTreeMap<String, String>,
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/pinwarden-alerts.yml"
    );
    let text = std::fs::read_to_string(path).expect("rules file");
    let file: File = serde_yaml_ng::from_str(&text).expect("valid rules YAML");
    // Families pinwarden exposes once each has happened at least once.
    let exposed: BTreeSet<String> = rendered(&busy_metrics())
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(!file.groups.is_empty());
    let mut checked = 0;
    for group in &file.groups {
        assert!(!group.name.is_empty());
        for rule in &group.rules {
            assert!(rule.alert.starts_with("Pinwarden"), "{}", rule.alert);
            assert!(rule.labels.contains_key("severity"), "{}", rule.alert);
            assert!(rule.annotations.contains_key("summary"), "{}", rule.alert);
            if let Some(f) = &rule.for_ {
                assert!(
                    f.ends_with('m') || f.ends_with('s'),
                    "{}: for {f}",
                    rule.alert
                );
            }
            let names: Vec<&str> = rule
                .expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("pinwarden_"))
                .collect();
            assert!(!names.is_empty(), "{}: no pinwarden metric", rule.alert);
            for name in names {
                let family = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    exposed.contains(family),
                    "{}: {name} is not exposed ({exposed:?})",
                    rule.alert
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 6);
}

#[tokio::test]
async fn a_spike_logs_and_posts_to_the_webhook() {
    // A real webhook receiver on loopback.
    let (addr, mut rx, server) = webhook_receiver().await;

    let alerts = Alerts::new(&[AlertRule {
        name: "retries-spike".into(),
        signal: "pin_retries".into(),
        window_secs: 60,
        threshold: 4,
        webhook: Some(format!("http://{addr}/hook")),
    }]);
    let retries = |n| pinwarden::daemon::metrics::Signals {
        pin_retries: n,
        ..Default::default()
    };
    let now = Instant::now();
    assert!(alerts.record(&retries(4), now).is_empty());
    let fired = alerts.record(&retries(2), now);
    assert_eq!(fired.len(), 1);
    let posted = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("webhook called")
        .expect("body");
    assert_eq!(posted["alert"], "retries-spike");
    assert_eq!(posted["signal"], "pin_retries");
    assert_eq!(posted["count"], 6);
    assert_eq!(posted["threshold"], 4);
    server.abort();
}

#[test]
fn json_logs_carry_cid_and_job_id_on_every_job_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pinwarden"))
        .args([
            "pin",
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "--job-id",
            "job-log",
            "--log-format",
            "json",
            "--param",
            "attempts=2",
            "--param",
            "base_delay_ms=10",
        ])
        .env("IPFS_PRIMARY_API", "http://127.0.0.1:1")
        .env("IPFS_BACKUP_APIS", "http://127.0.0.1:2")
        .env("PINWARDEN_DATA_DIR", dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut job_lines = 0;
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let fields = &v["fields"];
        let has_cid = fields["cid"].is_string();
        assert_eq!(has_cid, fields["job_id"].is_string(), "{line}");
        if has_cid {
            assert_eq!(fields["job_id"], "job-log");
            job_lines += 1;
        }
    }
    assert!(job_lines >= 5, "{stderr}");
}
