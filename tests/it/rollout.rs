//! Safe policy rollout: round records kept by a real daemon on real Kubo nodes, read back by
//! `rounds export|show`, and replayed by `policy replay` (the live policy agrees with its own
//! records; another policy diverges); a contained round replays too, and hostile candidates
//! are contained in a replay.

use crate::support::cli::Pinwarden;
use crate::support::daemon::{Daemon, Serve};
use crate::support::nodes::{ISOLATED, MESH, shared_cluster, step, upload_tiny};
use crate::support::policies::{hostile, registry, script};
use crate::support::{FaultProxy, Mode};
use pinwarden::executor::{RoundEnd, RoundLimits};
use pinwarden::kubo::KuboClient;
use pinwarden::rounds::RoundRecord;
use pinwarden::rounds::replay::{self, Class};
use pinwarden::sim::node::PinAnswer;
use pinwarden::{Job, Role};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn submit(cid: &str, job: &str) -> pinwarden::daemon::wire::SubmitRequest {
    pinwarden::daemon::wire::SubmitRequest {
        cid: cid.into(),
        job_id: job.into(),
        size_bytes: 4096,
        wait: false,
        timeout_ms: None,
        notify: None,
    }
}

async fn settle(d: &Daemon, jobs: &[String]) {
    let api = d.api();
    d.wait_until(&format!("{jobs:?} are pinned"), LIMIT, || {
        let api = api.clone();
        let jobs = jobs.to_vec();
        async move {
            for j in &jobs {
                match api.status(j).await {
                    Ok(row) if row.state.to_string() == "pinned" => {}
                    _ => return false,
                }
            }
            true
        }
    })
    .await;
}

fn cli(dir: &Path) -> Pinwarden {
    Pinwarden::new()
        .arg("--config")
        .arg(dir.join("pinwarden.toml"))
}

/// JSON lines on stdout.
fn lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_real_rounds_replay_and_survive_kill_9() {
    let t0 = Instant::now();
    let cluster = shared_cluster().await;
    let proxy = FaultProxy::start(&cluster.api_url(MESH[0]))
        .await
        .expect("proxy");
    let primary = KuboClient::new("primary", &cluster.api_url(MESH[0]), None).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = [
        ("primary", "primary", proxy.url()),
        ("backup-1", "backup", cluster.api_url(MESH[1])),
        ("local", "local", cluster.api_url(ISOLATED)),
    ];
    let nodes: Vec<(&str, &str, &str)> =
        nodes.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect();
    crate::support::config::write(
        dir.path(),
        &nodes,
        r#"[policy]
name = "tank-mode"
params = { attempts = 2, base_delay_ms = 50, max_delay_ms = 100, pin_timeout_ms = 5000, stall_timeout_ms = 2000 }

[daemon]
concurrent_pins = 4
"#,
    );
    let mut d = Serve::config(dir.path()).start().await;
    let api = d.api();
    let mut jobs = Vec::new();
    for i in 0..5 {
        let cid = upload_tiny(&primary, &format!("rollout-{i}")).await;
        let job = format!("job-{i}");
        api.submit(&submit(&cid, &job)).await.expect("submit");
        jobs.push(job);
    }
    settle(&d, &jobs).await;
    // The primary refuses: the rounds retry it, then pin on the backup.
    proxy.set_mode(Mode::Refuse).await;
    for i in 5..7 {
        let cid = upload_tiny(&primary, &format!("rollout-{i}")).await;
        let job = format!("job-{i}");
        api.submit(&submit(&cid, &job)).await.expect("submit");
        jobs.push(job);
    }
    settle(&d, &jobs).await;
    proxy.set_mode(Mode::Pass).await;
    step(t0, "7 rounds on real nodes, 2 of them on the backup");

    // kill -9: the records written survive it.
    d.kill();
    let out = cli(dir.path()).args(["rounds", "export"]).run_async().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = lines(&out);
    assert_eq!(records.len(), 7, "one record per round");
    for job in &jobs {
        let r = records
            .iter()
            .find(|r| r["job"]["job_id"] == job.as_str())
            .unwrap_or_else(|| panic!("no record of {job}"));
        assert_eq!(r["by"], "daemon");
        assert_eq!(r["end"]["status"], "pinned");
        assert_eq!(r["policy"]["name"], "tank-mode");
        assert!(
            r["policy"]["hash"]
                .as_str()
                .is_some_and(|h| h.starts_with("sha256:"))
        );
        let typed: RoundRecord = serde_json::from_value(r.clone()).expect("a record");
        assert!(
            typed.points.len() >= 3,
            "{job}: {} decisions",
            typed.points.len()
        );
    }
    let on_backup = records
        .iter()
        .filter(|r| r["end"]["confirmed"] == serde_json::json!(["backup-1"]))
        .count();
    assert_eq!(on_backup, 2);
    step(t0, "kill -9: every round's record is there");

    let out = cli(dir.path())
        .args(["rounds", "show", "job-6"])
        .run_async()
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ended pinned on backup-1"), "{text}");
    assert!(
        text.contains("pin primary") && text.contains("pin backup-1"),
        "{text}"
    );
    let out = cli(dir.path())
        .args(["rounds", "show", "no-such-job"])
        .run_async()
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no recorded rounds of job 'no-such-job'")
    );

    // The live policy, with its live parameters, agrees with every recorded decision.
    let out = cli(dir.path())
        .args(["policy", "replay", "tank-mode", "--live-params", "--json"])
        .run_async()
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = lines(&out);
    let summary = &replayed.last().expect("a summary")["summary"];
    assert_eq!(
        (
            summary["rounds"].as_u64(),
            summary["agree"].as_u64(),
            summary["diverge"].as_u64()
        ),
        (Some(7), Some(7), Some(0)),
        "{summary}"
    );
    // The same policy with another backoff waits otherwise where the primary refused.
    let out = cli(dir.path())
        .args([
            "policy",
            "replay",
            "tank-mode",
            "--live-params",
            "--param",
            "base_delay_ms=400",
            "--param",
            "max_delay_ms=800",
        ])
        .run_async()
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("5 of 7 rounds decided the same at every point; 2 diverge"),
        "{text}"
    );
    assert!(text.contains("longer-wait"), "{text}");
    assert!(
        text.contains("predicted: 2 of 2 diverging rounds end the same"),
        "{text}"
    );
    // --since: rounds older than that are left out.
    let out = cli(dir.path())
        .args(["rounds", "export", "--since", "1ms"])
        .run_async()
        .await;
    assert!(out.status.success());
    assert!(lines(&out).len() < 7);
    step(t0, "rounds show, export --since, policy replay");

    // The CLI's own rounds are recorded too.
    let cid = upload_tiny(&primary, "rollout-cli").await;
    let out = cli(dir.path())
        .args(["pin", &cid, "--job-id", "job-cli"])
        .run_async()
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(dir.path())
        .args(["rounds", "export", "--job", "job-cli"])
        .run_async()
        .await;
    let found = lines(&out);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["by"], "cli");
    step(t0, "pinwarden pin keeps its record");
}

fn job() -> Job {
    Job {
        cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        job_id: "job-contained".into(),
        size_bytes: 1 << 20,
        lazy: false,
        failed_rounds: 0,
    }
}

fn scripts() -> Vec<pinwarden::sim::node::NodeScript> {
    vec![
        script(
            "primary",
            Role::Primary,
            &[PinAnswer::Http500, PinAnswer::Ok],
            false,
        ),
        script("backup-1", Role::Backup, &[], false),
    ]
}

#[test]
fn a_contained_round_replays_and_hostile_candidates_are_contained() {
    let r = registry();
    let tank = r.fallback_for(&[]).expect("tank-mode");
    let limits = RoundLimits::default();
    // A round whose policy traps after two events: contained, the fallback finishes it.
    let trap = hostile(&r, &[("mode", "trap"), ("after", "2")]);
    let result =
        pinwarden::sim::run_round_on(&trap, &tank, &job(), scripts(), &limits).expect("simulated");
    assert_eq!(result.status, RoundEnd::Pinned);
    assert_eq!(result.incidents.len(), 1);
    let record = RoundRecord::new("sim", 0, &job(), &trap, &tank, &result);
    assert!(record.points.iter().any(|p| p.incident.is_some()));
    assert!(record.points.iter().any(|p| p.fallback));
    // The same policy agrees with its record, containment included.
    let (rounds, summary) = replay::replay(std::slice::from_ref(&record), &trap, &tank, &limits);
    assert!(rounds[0].divergence.is_none(), "{:?}", rounds[0]);
    assert_eq!(summary.agree, 1);
    // tank-mode answers where the hostile policy trapped.
    let (rounds, _) = replay::replay(std::slice::from_ref(&record), &tank, &tank, &limits);
    let d = rounds[0].divergence.as_ref().expect("diverges");
    assert_eq!(d.class, Class::AvoidsIncident);

    // Hostile candidates against a clean record: each contained, each an incident.
    let clean =
        pinwarden::sim::run_round_on(&tank, &tank, &job(), scripts(), &limits).expect("simulated");
    let clean = RoundRecord::new("sim", 0, &job(), &tank, &tank, &clean);
    for mode in [
        "trap",
        "loop",
        "oom",
        "unknown-node",
        "huge-reason",
        "recurse",
    ] {
        let candidate = hostile(&r, &[("mode", mode), ("after", "0")]);
        let started = Instant::now();
        let (rounds, summary) =
            replay::replay(std::slice::from_ref(&clean), &candidate, &tank, &limits);
        let d = rounds[0].divergence.as_ref().expect("diverges");
        assert!(
            matches!(d.class, Class::Incident | Class::GivesUpEarlier),
            "{mode}: {d:?}"
        );
        assert_eq!(summary.diverge, 1, "{mode}");
        // Bounded by the sandbox's deadline, not by the candidate.
        assert!(started.elapsed() < Duration::from_secs(30), "{mode}");
    }
}

/// `policy shadow ... --json` (and the other shadow commands) through the CLI.
async fn shadow_cli(dir: &Path, d: &Daemon, args: &[&str]) -> std::process::Output {
    cli(dir)
        .args(["policy"])
        .args(args)
        .arg("--socket")
        .arg(d.socket())
        .run_async()
        .await
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_on_a_live_daemon_is_compared_contained_and_promoted() {
    let t0 = Instant::now();
    let cluster = shared_cluster().await;
    let primary = std::sync::Arc::new(
        KuboClient::new("primary", &cluster.api_url(MESH[0]), None).expect("client"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("policy dir");
    let hostile_file = policies.join("hostile.wasm");
    std::fs::write(&hostile_file, crate::support::policies::HOSTILE).expect("hostile guest");
    let nodes = [
        ("primary", "primary", cluster.api_url(MESH[0])),
        ("backup-1", "backup", cluster.api_url(MESH[1])),
    ];
    let nodes: Vec<(&str, &str, &str)> =
        nodes.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect();
    crate::support::config::write(
        dir.path(),
        &nodes,
        &format!(
            r#"[policy]
name = "tank-mode"
shadow = "single-backup"

[daemon]
concurrent_pins = 4
policy_dir = "{}"
"#,
            policies.display()
        ),
    );
    let d = Serve::config(dir.path()).start().await;
    let api = d.api();
    let run = |from: usize, to: usize| {
        let (api, primary) = (api.clone(), std::sync::Arc::clone(&primary));
        async move {
            let mut jobs = Vec::new();
            for i in from..to {
                let cid = upload_tiny(&primary, &format!("shadow-{i}")).await;
                let job = format!("shadow-job-{i}");
                api.submit(&submit(&cid, &job)).await.expect("submit");
                jobs.push(job);
            }
            jobs
        }
    };
    // The shadow's answers come on its own thread, behind the rounds: wait for them.
    let report_when = |what: &'static str, done: fn(&Value) -> bool| {
        let api = api.clone();
        let d = &d;
        async move {
            d.wait_until(what, LIMIT, || {
                let api = api.clone();
                async move {
                    api.shadow_report()
                        .await
                        .ok()
                        .and_then(|r| serde_json::to_value(r).ok())
                        .is_some_and(|v| done(&v))
                }
            })
            .await;
        }
    };
    let jobs = run(0, 4).await;
    settle(&d, &jobs).await;
    report_when("the shadow saw 4 rounds", |r| {
        r["rounds"].as_u64() >= Some(4)
    })
    .await;
    // The configured shadow was asked at every decision; on a healthy primary it agrees.
    let report = json_of(&shadow_cli(dir.path(), &d, &["shadow", "--report", "--json"]).await);
    assert_eq!(report["policy"], "single-backup", "{report}");
    assert!(report["rounds"].as_u64() >= Some(4), "{report}");
    assert!(report["decisions"].as_u64() >= Some(12), "{report}");
    assert_eq!(report["agree"], report["decisions"], "{report}");
    assert!(report.get("check_failed").is_none(), "{report}");
    let metrics = api.metrics().await.expect("metrics");
    assert!(
        metrics.contains("pinwarden_shadow_decisions{result=\"agree\"}"),
        "{metrics}"
    );
    // Each round's record carries the shadow's answers, written once the shadow caught up.
    let shadowed_records = |policy: &'static str| {
        let dir = dir.path().to_path_buf();
        async move {
            let out = cli(&dir).args(["rounds", "export"]).run_async().await;
            lines(&out)
                .into_iter()
                .filter(|r| r["shadow"]["policy"]["name"] == policy)
                .collect::<Vec<Value>>()
        }
    };
    d.wait_until("4 records carry single-backup's answers", LIMIT, || async {
        shadowed_records("single-backup").await.len() >= 4
    })
    .await;
    for r in shadowed_records("single-backup").await {
        let shadow = &r["shadow"];
        assert_eq!(
            shadow["compared"].as_u64(),
            Some(r["points"].as_array().map_or(0, |p| p.len() as u64)),
            "{r}"
        );
        assert_eq!(shadow["agree"], shadow["compared"], "{r}");
        assert!(shadow.get("diverged").is_none(), "{r}");
    }
    let out = cli(dir.path())
        .args(["rounds", "show", "shadow-job-0"])
        .run_async()
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shadow single-backup"), "{text}");
    step(
        t0,
        "configured shadow: compared at every decision, agrees, recorded",
    );

    // A hostile candidate in shadow: it loops at its third decision of every round. The
    // scenarios fail (shown, and promote refuses it), yet it may be watched in shadow.
    let hostile = hostile_file.display().to_string();
    let out = shadow_cli(
        dir.path(),
        &d,
        &[
            "shadow",
            &hostile,
            "--param",
            "mode=loop",
            "--param",
            "after=2",
            "--json",
        ],
    )
    .await;
    let report = json_of(&out);
    assert!(report["check_failed"].is_string(), "{report}");
    let jobs = run(4, 8).await;
    let before = Instant::now();
    settle(&d, &jobs).await;
    for j in &jobs {
        let row = api.status(j).await.expect("status");
        assert_eq!(row.decided_by.as_deref(), Some("tank-mode"), "{row:?}");
    }
    tokio::time::timeout(Duration::from_secs(5), api.health())
        .await
        .expect("/v1/health answers")
        .expect("health");
    let settled_in = before.elapsed();
    report_when("the hostile shadow is contained", |r| {
        r["incidents"].as_u64() >= Some(1)
    })
    .await;
    let report = json_of(&shadow_cli(dir.path(), &d, &["shadow", "--report", "--json"]).await);
    assert!(report["incidents"].as_u64() >= Some(1), "{report}");
    assert!(
        report["by_class"]["incident"].as_u64() >= Some(1),
        "{report}"
    );
    // The containment is in the round's record: the shadow's answer at that decision.
    d.wait_until(
        "a record shows the hostile shadow's incident",
        LIMIT,
        || async {
            shadowed_records("hostile").await.iter().any(|r| {
                r["shadow"]["diverged"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x["class"] == "incident"))
            })
        },
    )
    .await;
    step(
        t0,
        &format!("hostile shadow contained and recorded; live rounds settled in {settled_in:?}"),
    );

    // promote refuses it: the live policy keeps serving, the shadow keeps running.
    let out = shadow_cli(dir.path(), &d, &["promote"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("fails built-in scenario"));
    assert_eq!(api.health().await.expect("health").policy.name, "tank-mode");
    assert!(api.shadow_report().await.is_ok());

    // A slow but sound candidate (5 ms of work per decision): the daemon's check takes
    // seconds, and while the CLI waits it says which built-in scenario the check has reached.
    let out = shadow_cli(
        dir.path(),
        &d,
        &[
            "shadow",
            &hostile,
            "--param",
            "mode=sluggish",
            "--param",
            "busy=5",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("checking ") && l.contains("built-in scenario")),
        "{stderr}"
    );
    let health = api.health().await.expect("health");
    assert_eq!(health.checking, None, "no check runs now");
    step(t0, "a slow candidate's check shows its progress");

    // A sound candidate promoted: it is the live policy, and the shadow is gone.
    let out = shadow_cli(dir.path(), &d, &["shadow", "single-backup"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = shadow_cli(dir.path(), &d, &["promote"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("promoted: single-backup"), "{text}");
    assert_eq!(
        api.health().await.expect("health").policy.name,
        "single-backup"
    );
    let out = shadow_cli(dir.path(), &d, &["shadow", "--report"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no shadow policy is running"));
    // A candidate that does not load is refused at once, naming it.
    let out = shadow_cli(dir.path(), &d, &["shadow", "/etc/passwd"]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy_dir"));
    step(
        t0,
        "promote: refused for the hostile one, done for a sound one",
    );
}

/// The checks a reload runs, at start-up: a daemon configured with a policy that loops at its
/// third decision refuses to start, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_does_not_start_with_a_policy_a_reload_would_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hostile.wasm");
    std::fs::write(&file, crate::support::policies::HOSTILE).expect("hostile guest");
    crate::support::config::write(
        dir.path(),
        &[("primary", "primary", "http://127.0.0.1:9")],
        &format!(
            "[policy]\nname = \"{}\"\nparams = {{ mode = \"loop\", after = \"2\" }}\n",
            file.display()
        ),
    );
    let out = cli(dir.path()).args(["serve"]).run_async().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fails built-in scenario") && stderr.contains("does not start"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("pinwarden.sock").exists(),
        "nothing was served"
    );
}
