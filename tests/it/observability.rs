//! Metrics, spike alerts and structured logs.

use crate::support::policies::{hostile, job, params, registry, round, script, topology};
use crate::support::webhook::webhook_receiver;
use pinwarden::config::{AlertRule, Config};
use pinwarden::daemon::alerts::Alerts;
use pinwarden::daemon::metrics::Metrics;
use pinwarden::daemon::observe::Live;
use pinwarden::executor::{RoundLimits, Topology, run_round};
use pinwarden::health::Kind;
use pinwarden::health::Thresholds;
use pinwarden::queue::{Queue, Submission};

use pinwarden::Role;
use pinwarden::sim::node::{PinAnswer, SimNode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The nodes of `support::policies::topology`.
const NODES: [&str; 3] = ["primary", "backup-1", "local"];

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
                notify_url: None,
            },
            1,
        )
        .expect("submit");
    metrics.observe_queue(&queue.counts().expect("counts"));
    metrics.render(&dir.path().join("local-fallback-pins.jsonl"))
}

/// Feeds `metrics` (and `rules`) from `topology`'s ledger, as the daemon does from its own.
fn observe(topology: &Topology, metrics: &Arc<Metrics>, rules: &[AlertRule]) -> Arc<Live> {
    Live::attach(
        topology.ledger(),
        Arc::clone(metrics),
        Arc::new(Alerts::new(rules)),
        Thresholds::default(),
    )
}

/// The value of the sample `series` (exact name and labels) in an exposition.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series}:\n{text}"))
}

#[test]
fn metrics_count_attempts_outcomes_incidents_and_latency() {
    let registry = registry();
    let policy = hostile(&registry, &[("mode", "trap"), ("after", "3")]);
    let fallback = registry.fallback_for(&[]).expect("fallback");
    // The primary lies once (a verification failure), then pins.
    let topology = topology(&[PinAnswer::Lie, PinAnswer::Ok]);
    let metrics = Arc::new(Metrics::new(&NODES));
    observe(&topology, &metrics, &[]);
    let result = round(&policy, &fallback, &topology, &job(false));
    // The round adds what only it knows; its actions were counted as they ended, once.
    let signals = metrics.observe_round(&result, Some("primary"));
    assert_eq!(signals.pin_retries, 0, "counted by the observer");
    assert_eq!(signals.verification_failures, 0, "counted by the observer");
    assert_eq!(signals.policy_incidents, 1);
    let text = rendered(&metrics);
    for line in [
        "pinwarden_pin_attempts_total{node=\"primary\",outcome=\"ok\"} 2",
        "pinwarden_verification_failures_total{node=\"primary\",check=\"pin-ls\"} 1",
        "pinwarden_node_pin_duration_seconds_count{node=\"primary\"} 2",
        "pinwarden_policy_incidents_total{policy=\"hostile\",kind=\"trap\"} 1",
        "pinwarden_rounds_total{state=\"pinned\"} 1",
        "pinwarden_jobs{state=\"queued\"} 1",
        "pinwarden_queue_depth 1",
        "pinwarden_journal_pending 0",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    // Two simulated pins of 500 ms each (virtual time).
    let pin_seconds = "pinwarden_node_pin_duration_seconds_sum{node=\"primary\"}";
    assert_eq!(value(&text, pin_seconds), 1.0);
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
fn actions_count_while_their_round_still_runs() {
    let registry = registry();
    let tank = registry.resolve("tank-mode", &[]).expect("tank-mode");
    // The primary refuses at once; the backup hangs until its pin times out, minutes later.
    let mut topology = Topology::new();
    let nodes: [(&str, Role, &[PinAnswer]); 2] = [
        ("primary", Role::Primary, &[PinAnswer::Refused]),
        ("backup-1", Role::Backup, &[PinAnswer::Timeout]),
    ];
    for (name, role, pin) in nodes {
        topology.add(
            name,
            role,
            Arc::new(SimNode::new(script(name, role, pin, false))),
        );
    }
    let metrics = Arc::new(Metrics::new(&["primary", "backup-1"]));
    let live = observe(&topology, &metrics, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    // Cut the round off after 20 s of virtual time: it never ends, so nothing round-level runs.
    let cut = rt.block_on(async {
        let (job, limits) = (job(false), RoundLimits::default());
        let round = run_round(&tank, &tank, &job, &[], &topology, &limits);
        tokio::time::timeout(Duration::from_secs(20), round).await
    });
    assert!(cut.is_err(), "the round should still run: {cut:?}");
    let _enter = rt.enter();
    live.refresh(topology.ledger());
    let text = rendered(&metrics);
    let refused = "pinwarden_pin_attempts_total{node=\"primary\",outcome=\"unreachable\"}";
    assert!(value(&text, refused) >= 1.0, "{text}");
    assert!(
        value(
            &text,
            "pinwarden_node_consecutive_failures{node=\"primary\"}"
        ) >= 1.0
    );
    for state in ["pinned", "failed", "local-fallback"] {
        let rounds = format!("pinwarden_rounds_total{{state=\"{state}\"}}");
        assert_eq!(value(&text, &rounds), 0.0, "{state}");
    }
}

/// A daemon as `pinwarden serve` builds it, on nodes nobody listens on (it never calls them).
fn idle_daemon(dir: &std::path::Path) -> Arc<pinwarden::daemon::Daemon> {
    let text = format!(
        "data_dir = \"{}\"\n\
         [[node]]\nname = \"primary\"\nurl = \"http://127.0.0.1:1\"\nrole = \"primary\"\n\
         [[node]]\nname = \"backup-1\"\nurl = \"http://127.0.0.1:2\"\nrole = \"backup\"\n",
        dir.display()
    );
    let path = dir.join("pinwarden.toml");
    std::fs::write(&path, text).expect("config");
    let config = Config::load(Some(&path), &|_| None, &[]).expect("valid config");
    let app = pinwarden::app::App::new(config).expect("app");
    pinwarden::daemon::Daemon::new(app).expect("daemon")
}

/// The families of an exposition (`# TYPE` lines), each checked to have a sample.
fn families(text: &str) -> BTreeSet<String> {
    let declared: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    for family in &declared {
        assert!(
            text.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(family.as_str())),
            "{family} has no series:\n{text}"
        );
    }
    declared
}

#[test]
fn an_idle_daemon_exposes_every_family_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = idle_daemon(dir.path());
    // The daemon reads the queue on its runtime's blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let text = rt.block_on(daemon.metrics_text());
    let exposed = families(&text);
    // Everything a busy instance declares, an idle one declares too, with a zero.
    let busy = Arc::new(Metrics::new(&NODES));
    busy.expect_policy("tank-mode");
    let topology = topology(&[PinAnswer::Lie, PinAnswer::Ok]);
    observe(&topology, &busy, &[]);
    let registry = registry();
    let tank = registry.fallback_for(&[]).expect("tank-mode");
    let r = round(&tank, &tank, &topology, &job(false));
    busy.observe_round(&r, Some("primary"));
    assert_eq!(exposed, families(&rendered(&busy)));
    assert!(exposed.len() >= 14, "{exposed:?}");
    for line in [
        "pinwarden_pin_attempts_total{node=\"backup-1\",outcome=\"timeout\"} 0",
        "pinwarden_verification_failures_total{node=\"primary\",check=\"pin-ls\"} 0",
        "pinwarden_node_breaker_state{node=\"primary\"} 0",
        "pinwarden_node_breaker_openings_total{node=\"backup-1\"} 0",
        "pinwarden_node_consecutive_failures{node=\"backup-1\"} 0",
        "pinwarden_node_pin_duration_seconds_count{node=\"primary\"} 0",
        "pinwarden_fallbacks_total{kind=\"backup\"} 0",
        "pinwarden_rounds_total{state=\"failed\"} 0",
        "pinwarden_policy_incidents_total{policy=\"tank-mode\",kind=\"trap\"} 0",
        "pinwarden_policy_incidents_total{policy=\"tank-mode\",kind=\"budget\"} 0",
        "pinwarden_policy_reloads_total{result=\"ok\"} 0",
        "pinwarden_jobs{state=\"queued\"} 0",
        "pinwarden_queue_depth 0",
        "pinwarden_journal_pending 0",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    // The local node is not in the topology (the local fallback is off): no series for it.
    assert!(!text.contains("node=\"local\""), "{text}");
}

#[derive(serde::Deserialize)]
struct RulesFile {
    groups: Vec<RuleGroup>,
}

#[derive(serde::Deserialize)]
struct RuleGroup {
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

fn shipped_rules() -> RulesFile {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/pinwarden-alerts.yml"
    );
    let text = std::fs::read_to_string(path).expect("rules file");
    serde_yaml_ng::from_str(&text).expect("valid rules YAML")
}

#[test]
fn example_alert_rules_name_only_exposed_metrics() {
    let file = shipped_rules();
    // Every family is exposed from the start, so a fresh instance declares them all.
    let fresh = Metrics::new(&NODES);
    fresh.expect_policy("tank-mode");
    let exposed = families(&rendered(&fresh));
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
            checked += assert_exposed(&rule.expr, &exposed, &rule.alert);
        }
    }
    assert!(checked >= 7);
}

/// The metric families a PromQL expression names.
fn families_in(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("pinwarden_"))
        .map(|name| {
            ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
        })
        .collect()
}

/// Asserts every family `expr` names is exposed; returns how many it names.
fn assert_exposed(expr: &str, exposed: &BTreeSet<String>, what: &str) -> usize {
    let names = families_in(expr);
    assert!(!names.is_empty(), "{what}: no pinwarden metric in {expr}");
    for family in &names {
        assert!(
            exposed.contains(*family),
            "{what}: {family} is not exposed ({exposed:?})"
        );
    }
    names.len()
}

#[test]
fn the_grafana_dashboard_queries_only_exposed_metrics_and_labels() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/pinwarden.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let busy = Metrics::new(&NODES);
    busy.expect_policy("tank-mode");
    let text = rendered(&busy);
    let exposed = families(&text);
    // Every query: panel targets and the templating variables' PromQL.
    let mut queries: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel '{title}' has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("targets[].expr").to_string();
            queries.push((title.clone(), expr));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if var["type"] == "query" {
            let q = &var["query"];
            let expr = q.as_str().or_else(|| q["query"].as_str()).expect("query");
            queries.push((format!("variable {}", var["name"]), expr.to_string()));
        }
    }
    let mut used = BTreeSet::new();
    for (what, expr) in &queries {
        assert_exposed(expr, &exposed, what);
        used.extend(families_in(expr).into_iter().map(str::to_string));
        // Every label a selector or a `by (...)` names exists on the families the query reads.
        let labels = expr
            .split(['{', ','])
            .skip(1)
            .filter_map(|part| part.split(['=', '!']).next())
            .chain(
                expr.split("by (")
                    .skip(1)
                    .flat_map(|p| p.split(')').next().unwrap_or("").split(',')),
            )
            .map(str::trim)
            .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        for label in labels {
            // `instance` and `job` are added by Prometheus when it scrapes; `le` is a bucket's.
            let known = ["le", "instance", "job"].contains(&label)
                || families_in(expr).iter().any(|f| {
                    text.lines()
                        .any(|l| l.starts_with(f) && l.contains(&format!("{label}=\"")))
                });
            assert!(known, "{what}: label '{label}' is on no series of {expr}");
        }
    }
    // The list: queue, jobs by state, attempts by node and outcome, verification
    // failures, fallbacks, policy incidents, decision latency.
    for family in [
        "pinwarden_queue_depth",
        "pinwarden_jobs",
        "pinwarden_pin_attempts",
        "pinwarden_verification_failures",
        "pinwarden_fallbacks",
        "pinwarden_policy_incidents",
        "pinwarden_policy_decision_seconds",
    ] {
        assert!(used.contains(family), "the dashboard shows no {family}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_node_down_rule_holds_for_a_node_whose_breaker_is_not_closed() {
    let file = shipped_rules();
    let rule = file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .find(|r| r.alert == "PinwardenNodeDown")
        .expect("a node-down rule");
    // The rule is `<gauge> > <n>`: evaluate it on the exposition the way Prometheus would.
    let parts: Vec<&str> = rule.expr.split_whitespace().collect();
    let [gauge, ">", threshold] = parts[..] else {
        panic!("expected `<gauge> > <n>`: {}", rule.expr);
    };
    let threshold: f64 = threshold.parse().expect("a number");
    assert!(rule.for_.is_some(), "down for a while, not one failed call");
    let topology = topology(&[]);
    let metrics = Arc::new(Metrics::new(&NODES));
    let live = observe(&topology, &metrics, &[]);
    let ledger = topology.ledger();
    let down =
        |text: &str, node: &str| value(text, &format!("{gauge}{{node=\"{node}\"}}")) > threshold;
    for _ in 0..host_rules::BREAKER_FAILURES {
        ledger
            .start("primary", Kind::Pin)
            .ended(Some("unreachable"));
    }
    ledger.start("backup-1", Kind::Pin).ended(Some("timeout"));
    live.refresh(ledger);
    let text = rendered(&metrics);
    assert!(down(&text, "primary"), "open:\n{text}");
    assert!(
        !down(&text, "backup-1"),
        "one failure is no outage:\n{text}"
    );
    // Cooled down but not yet proven healthy: still down.
    tokio::time::advance(Duration::from_millis(host_rules::BREAKER_COOLDOWN_MS)).await;
    live.refresh(ledger);
    assert!(down(&rendered(&metrics), "primary"), "half-open");
    ledger.start("primary", Kind::Pin).ended(None);
    live.refresh(ledger);
    assert!(!down(&rendered(&metrics), "primary"), "a success closes it");
}

/// Log lines written on this thread while the subscriber is the default.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut all) = self.0.lock() {
            all.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Sends this thread's log lines here until the returned pair drops.
    fn install(&self) -> (tracing::dispatcher::DefaultGuard, tracing::Dispatch) {
        // tracing caches each callsite's interest process-wide; while only one scoped
        // dispatcher is alive it asks just the registering thread's, so a concurrent test with
        // none (the spike test fires the same ALERT line) could disable it for everyone. With
        // a second one alive, every registration asks them all.
        let second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (tracing::subscriber::set_default(subscriber), second)
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|all| String::from_utf8_lossy(&all).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn a_breaker_opening_logs_and_posts_the_node_to_the_webhook() {
    let (addr, mut rx, server) = webhook_receiver().await;
    let logs = Captured::default();
    let _capturing = logs.install();
    let rule = AlertRule {
        name: "node-down".into(),
        signal: "breaker_opened".into(),
        window_secs: 600,
        threshold: 0,
        webhook: Some(format!("http://{addr}/hook")),
    };
    // A real round on this runtime (so the webhook call can go out): the primary refuses
    // every pin, and the job's three attempts open its breaker.
    let mut topology = Topology::new();
    let nodes: [(&str, Role, &[PinAnswer]); 2] = [
        ("primary", Role::Primary, &[PinAnswer::Refused]),
        ("backup-1", Role::Backup, &[]),
    ];
    for (name, role, pin) in nodes {
        let mut s = script(name, role, pin, false);
        s.pin_ms = 10;
        topology.add(name, role, Arc::new(SimNode::new(s)));
    }
    let metrics = Arc::new(Metrics::new(&["primary", "backup-1"]));
    observe(&topology, &metrics, &[rule]);
    let registry = registry();
    let tank = registry
        .resolve(
            "tank-mode",
            &params(&[
                ("attempts", "3"),
                ("base_delay_ms", "1"),
                ("max_delay_ms", "1"),
            ]),
        )
        .expect("tank-mode");
    let result = run_round(
        &tank,
        &tank,
        &job(false),
        &[],
        &topology,
        &RoundLimits::default(),
    )
    .await;
    assert_eq!(
        result.status,
        pinwarden::executor::RoundEnd::Pinned,
        "{:?}",
        result.trace
    );
    let posted = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("webhook called")
        .expect("body");
    assert_eq!(posted["alert"], "node-down");
    assert_eq!(posted["signal"], "breaker_opened");
    assert_eq!(posted["node"], "primary");
    assert_eq!(posted["count"], 1);
    let text = logs.text();
    assert!(
        text.contains("ALERT node-down") && text.contains("primary"),
        "{text}"
    );
    assert!(text.contains("circuit breaker of primary opened"), "{text}");
    let openings = "pinwarden_node_breaker_openings_total{node=\"primary\"}";
    assert_eq!(value(&rendered(&metrics), openings), 1.0);
    server.abort();
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
    let out = crate::support::cli::Pinwarden::new()
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
        .run();
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
