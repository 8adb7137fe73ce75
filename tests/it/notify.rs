//! Completion webhooks (`[notify]`) on a real `pinwarden serve` over real Kubo, told to a real
//! HTTP receiver on loopback (`support::webhook::Receiver`) that can be down, answer 500, or
//! hang. One test, in phases, on the shared Kubo nodes:
//!
//! 1. start-up refuses a `[notify]` without its secret; a callback outside the allow-list is
//!    a 400 (API) and exit 2 (CLI), and creates no job;
//! 2. `pinned` arrives after the persistence gate, signed, with where it is pinned; a job on
//!    content already pinned is told too;
//! 3. the receiver down for a while, then answering 500 once per event: every event arrives,
//!    and the repeat carries the same id and body;
//! 4. kill -9 between a round's end and its delivery: the event arrives after the restart;
//! 5. a receiver that answers 500, then hangs: 20 rounds all end while the hung attempts
//!    are still open, the API answers, and metrics show the backlog;
//! 6. `failed` (will retry), `local-fallback` (with the journal record) and `cancelled`;
//! 7. the Node.js client's `verifyWebhook` on a real delivery: accepted, and refused tampered,
//!    stale, or under another key;
//! 8. a host taken off `notify.allowed_hosts` (by a restart) while its event waits is never
//!    called: the event is kept as expired, with the reason.

use crate::support::cli::Pinwarden;
use crate::support::daemon::{Daemon, Serve};
use crate::support::nodes::{ISOLATED, MESH, ghost_cid, shared_cluster, step, upload_tiny};
use crate::support::webhook::{Answer, Delivery, Receiver};
use crate::support::{FaultProxy, Mode};
use pinwarden::Outcome;
use pinwarden::client::ClientError;
use pinwarden::daemon::wire::SubmitRequest;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "webhook-test-secret-0123456789";
/// How long any one wait in this test may take.
const LIMIT: Duration = Duration::from_secs(60);
/// `notify.timeout_ms`: a hung delivery attempt ends after this long. Phase 5's rounds must
/// all end well inside it.
const HANG_MS: u64 = 20_000;

fn config(dir: &Path, primary: &str, local: &str, receiver: &Receiver, also: &[String]) {
    let allowed: Vec<String> = std::iter::once(receiver.host_port())
        .chain(also.iter().cloned())
        .map(|h| format!("{h:?}"))
        .collect();
    let rest = format!(
        r#"[policy]
name = "tank-mode"
params = {{ attempts = 1, base_delay_ms = 50, max_delay_ms = 100, pin_timeout_ms = 3000, stall_timeout_ms = 1200 }}

[local_fallback]
enabled = true
threshold = 2

[daemon]
concurrent_pins = 10
retry_base_ms = 100
retry_max_ms = 400

[notify]
url = "{default}"
allowed_hosts = [{allowed}]
retry_base_ms = 200
retry_max_ms = 1000
timeout_ms = {HANG_MS}
"#,
        default = receiver.url("default"),
        allowed = allowed.join(", "),
    );
    let nodes = [("primary", "primary", primary), ("local", "local", local)];
    crate::support::config::write(dir, &nodes, &rest);
}

fn serve(dir: &Path) -> Serve {
    Serve::config(dir).env("PINWARDEN_NOTIFY_SECRET", SECRET)
}

fn submit(cid: &str, job: &str, notify: Option<String>) -> SubmitRequest {
    SubmitRequest {
        cid: cid.into(),
        job_id: job.into(),
        size_bytes: 4096,
        wait: false,
        timeout_ms: None,
        notify,
    }
}

/// Waits until the receiver has 2xx'd an event of `job` of `kind`; that delivery.
async fn delivered(d: &Daemon, r: &Receiver, job: &str, kind: &str) -> Delivery {
    let found = || {
        r.delivered()
            .into_values()
            .find(|x| x.json()["job_id"] == job && x.json()["type"] == kind)
    };
    d.wait_until(
        &format!("a {kind} event of {job} is delivered"),
        LIMIT,
        || std::future::ready(found().is_some()),
    )
    .await;
    found().expect("delivered")
}

/// Waits until every job in `jobs` is in `state`.
async fn settle(d: &Daemon, jobs: &[String], state: &str) {
    let api = d.api();
    d.wait_until(&format!("{jobs:?} are {state}"), LIMIT, || {
        let api = api.clone();
        let jobs = jobs.to_vec();
        async move {
            for j in &jobs {
                match api.status(j).await {
                    Ok(row) if row.state.to_string() == state => {}
                    _ => return false,
                }
            }
            true
        }
    })
    .await;
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn signed_ok(d: &Delivery) -> bool {
    let now = pinwarden::daemon::now_ms() / 1_000;
    pinwarden::notify::verify(
        SECRET.as_bytes(),
        d.signature.as_deref().unwrap_or_default(),
        &d.body,
        now,
        300,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_against_real_nodes() {
    let t0 = Instant::now();
    let cluster = shared_cluster().await;
    let primary_proxy = FaultProxy::start(&cluster.api_url(MESH[0]))
        .await
        .expect("proxy");
    let primary = KuboClient::new("primary", &cluster.api_url(MESH[0]), None).expect("client");
    let local = KuboClient::new("local", &cluster.api_url(ISOLATED), None).expect("client");
    let mut r = Receiver::start().await;
    // A second receiver, allowed until phase 8 takes it off the list.
    let mut other = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    config(
        dir.path(),
        &primary_proxy.url(),
        &cluster.api_url(ISOLATED),
        &r,
        &[other.host_port()],
    );

    // 1. No secret, no daemon: events would be written and never signed.
    let out = Pinwarden::new()
        .args(["serve", "--config"])
        .arg(dir.path().join("pinwarden.toml"))
        .run_async()
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("PINWARDEN_NOTIFY_SECRET"), "{stderr}");

    let mut d = serve(dir.path()).start().await;
    let api = d.api();
    step(t0, "daemon up");
    let cid = upload_tiny(&primary, "notify-allow").await;
    for bad in [
        "http://127.0.0.1:1/hooks/x".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!("ftp://{}/x", r.host_port()),
    ] {
        match api
            .submit(&submit(&cid, "job-bad-url", Some(bad.clone())))
            .await
        {
            Err(ClientError::Api { status, message }) => {
                assert_eq!(status.as_u16(), 400, "{bad}: {message}");
                assert!(message.starts_with("notify:"), "{bad}: {message}");
            }
            other => panic!("{bad} was not refused: {other:?}"),
        }
    }
    assert!(
        matches!(api.status("job-bad-url").await, Err(ClientError::Api { status, .. }) if status.as_u16() == 404),
        "a refused submit leaves no job"
    );
    let out = Pinwarden::new()
        .args(["submit", &cid, "--job-id", "job-bad-cli", "--notify"])
        .arg("http://10.9.9.9/hooks")
        .arg("--socket")
        .arg(d.socket())
        .run_async()
        .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowed_hosts"));

    // 2. pinned, after the gate: the node it names has it pinned; signed; its own URL.
    api.submit(&submit(&cid, "job-own-url", Some(r.url("own"))))
        .await
        .expect("submit");
    let e = delivered(&d, &r, "job-own-url", "pinned").await;
    let v = e.json();
    assert!(signed_ok(&e), "signature of {v}");
    assert_eq!(v["cid"], cid.as_str());
    assert_eq!(v["nodes"], serde_json::json!(["primary"]));
    assert_eq!(
        Some(v["id"].as_str().unwrap_or_default()),
        e.event_id.as_deref()
    );
    assert!(
        v["duration_ms"].is_u64() && v["decided_by"].is_string(),
        "{v}"
    );
    assert_eq!(
        primary.verify(&cid).await,
        Outcome::Ok,
        "pinned where it says"
    );
    let own = r
        .deliveries()
        .iter()
        .any(|x| x.json()["job_id"] == "job-own-url" && x.event_id == e.event_id);
    assert!(own);
    let job = api.status("job-own-url").await.expect("status");
    let n = job.notifications.expect("delivery state shown");
    assert_eq!((n.pending, n.delivered, n.expired), (0, 1, 0));
    // A second job on the same content after it was pinned: no round runs, it is told anyway.
    let again = api
        .submit(&submit(&cid, "job-same-content", None))
        .await
        .expect("submit");
    assert_eq!(again.job.state.to_string(), "pinned");
    let e = delivered(&d, &r, "job-same-content", "pinned").await;
    assert_eq!(e.json()["seq"], 1);
    step(
        t0,
        "allow-list, pinned event, a job on already pinned content",
    );

    // 3. Down for a while, then 500 once per event: every event, the repeat the same.
    r.down();
    let mut jobs = Vec::new();
    for i in 0..5 {
        let cid = upload_tiny(&primary, &format!("notify-down-{i}")).await;
        let job = format!("job-down-{i}");
        api.submit(&submit(&cid, &job, None)).await.expect("submit");
        jobs.push(job);
    }
    settle(&d, &jobs, "pinned").await;
    // Retried while down, and shown as a backlog.
    d.wait_until("failed attempts while the receiver is down", LIMIT, || {
        let api = api.clone();
        async move {
            let text = api.metrics().await.unwrap_or_default();
            text.contains("pinwarden_webhook_attempts_total{result=\"failed\"}")
                && metric(&text, "pinwarden_webhook_attempts_total{result=\"failed\"}") >= 5.0
        }
    })
    .await;
    let text = api.metrics().await.expect("metrics");
    assert!(
        metric(&text, "pinwarden_webhook_events{state=\"pending\"}") >= 5.0,
        "{text}"
    );
    let down = api.status("job-down-0").await.expect("status");
    let n = down.notifications.expect("shown");
    assert_eq!(n.pending, 1);
    assert!(
        n.last_error
            .as_deref()
            .is_some_and(|m| m.contains("connect")),
        "{n:?}"
    );
    r.set_answer(Answer::FailFirst);
    r.up().await;
    for job in &jobs {
        let e = delivered(&d, &r, job, "pinned").await;
        let tries: Vec<Delivery> = r
            .deliveries()
            .into_iter()
            .filter(|x| x.event_id == e.event_id)
            .collect();
        assert!(tries.len() >= 2, "{job}: the 500 was retried");
        assert!(
            tries.iter().all(|x| x.body == e.body),
            "{job}: same body every time"
        );
        assert!(e.json()["id"] == e.event_id.clone().unwrap_or_default());
        assert!(tries.iter().all(signed_ok));
    }
    r.set_answer(Answer::Ok);
    step(
        t0,
        "receiver down, then 500 once: all delivered, repeats identical",
    );

    // 4. kill -9 after the round's end, before its delivery.
    r.down();
    let cid = upload_tiny(&primary, "notify-kill").await;
    api.submit(&submit(&cid, "job-kill", None))
        .await
        .expect("submit");
    settle(&d, &["job-kill".into()], "pinned").await;
    let n = api.status("job-kill").await.expect("status").notifications;
    assert_eq!(
        n.map(|n| n.delivered),
        Some(0),
        "not delivered before the kill"
    );
    d.kill();
    r.up().await;
    d.restart();
    d.ready().await;
    let e = delivered(&d, &r, "job-kill", "pinned").await;
    assert!(signed_ok(&e));
    step(t0, "kill -9 before delivery: delivered after the restart");

    // 5. 500, then hanging: rounds and the API go on; the backlog shows.
    let failures = |text: &str| metric(text, "pinwarden_webhook_attempts_total{result=\"failed\"}");
    let before = failures(&api.metrics().await.expect("metrics"));
    r.set_answer(Answer::Http500);
    let cid = upload_tiny(&primary, "notify-500").await;
    api.submit(&submit(&cid, "job-500", None))
        .await
        .expect("submit");
    d.wait_until("a delivery answered 500", LIMIT, || {
        let api = api.clone();
        async move { failures(&api.metrics().await.unwrap_or_default()) > before }
    })
    .await;
    r.set_answer(Answer::Hang);
    d.wait_until("a delivery hangs", LIMIT, || {
        std::future::ready(r.deliveries().iter().any(|x| x.status == 0))
    })
    .await;
    let hung_at = failures(&api.metrics().await.expect("metrics"));
    let mut jobs = Vec::new();
    for i in 0..20 {
        let cid = upload_tiny(&primary, &format!("notify-hang-{i}")).await;
        let job = format!("job-hang-{i}");
        api.submit(&submit(&cid, &job, None)).await.expect("submit");
        jobs.push(job);
    }
    settle(&d, &jobs, "pinned").await;
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), api.health())
            .await
            .expect("/v1/health answers while the receiver hangs")
            .expect("health");
    }
    let text = api.metrics().await.expect("metrics");
    // Every round ended while deliveries hung: none of those attempts has ended yet (they
    // last HANG_MS), so rounds never waited on one.
    assert_eq!(
        failures(&text),
        hung_at,
        "a hung attempt ended before the rounds did"
    );
    assert!(
        metric(&text, "pinwarden_webhook_events{state=\"pending\"}") >= 21.0,
        "{text}"
    );
    r.set_answer(Answer::Ok);
    for job in jobs.iter().chain(std::iter::once(&"job-500".to_string())) {
        delivered(&d, &r, job, "pinned").await;
    }
    step(
        t0,
        "500 then hang: 20 rounds ended while deliveries hung, API answered, backlog drained",
    );

    // 6. failed (will retry) and local-fallback: content on the local node only, primary down.
    primary_proxy.set_mode(Mode::Refuse).await;
    let cid = upload_tiny(&local, "notify-fallback").await;
    api.submit(&submit(&cid, "job-fallback", None))
        .await
        .expect("submit");
    let failed = delivered(&d, &r, "job-fallback", "failed").await.json();
    assert_eq!(failed["will_retry"], true, "{failed}");
    assert!(
        failed["next_attempt_at"].is_string() && failed["reason"].is_string(),
        "{failed}"
    );
    let fell = delivered(&d, &r, "job-fallback", "local-fallback")
        .await
        .json();
    assert_eq!(fell["nodes"], serde_json::json!(["local"]), "{fell}");
    let journal = std::fs::read_to_string(dir.path().join(pinwarden::journal::JOURNAL_FILE))
        .expect("journal");
    let line: Value = serde_json::from_str(journal.lines().last().expect("a line")).expect("JSON");
    assert_eq!(
        fell["journal"], line,
        "the event carries the journal record as written"
    );
    // cancelled: a CID nobody has, cancelled while it waits.
    api.submit(&submit(&ghost_cid(), "job-cancel", None))
        .await
        .expect("submit");
    api.cancel("job-cancel").await.expect("cancel");
    let c = delivered(&d, &r, "job-cancel", "cancelled").await.json();
    assert_eq!(c["reason"], "cancelled by operator");
    primary_proxy.set_mode(Mode::Pass).await;
    step(t0, "failed, local-fallback, cancelled");

    // 7. The Node.js client verifies a real delivery, and refuses forgeries.
    let sample = dir.path().join("webhook-sample.json");
    // A fresh one: its signed timestamp is within the default tolerance.
    let e = delivered(&d, &r, "job-cancel", "cancelled").await;
    std::fs::write(
        &sample,
        serde_json::json!({
            "secret": SECRET,
            "body": String::from_utf8_lossy(&e.body),
            "signature": e.signature,
            "event_id": e.event_id,
        })
        .to_string(),
    )
    .expect("sample");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../clients/node/test/webhook.test.js"
    );
    let node = tokio::process::Command::new("node")
        .args(["--test", script])
        .env("PINWARDEN_WEBHOOK_SAMPLE", &sample)
        .output();
    let out = tokio::time::timeout(LIMIT, node)
        .await
        .expect("node --test finishes")
        .expect("run node");
    assert!(
        out.status.success(),
        "node --test webhook.test.js:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    step(t0, "verifyWebhook");

    // 8. The allow-list narrowed while an event waits: the event is expired, never sent.
    other.down();
    let cid = upload_tiny(&primary, "notify-narrowed").await;
    api.submit(&submit(&cid, "job-narrowed", Some(other.url("narrowed"))))
        .await
        .expect("submit");
    settle(&d, &["job-narrowed".into()], "pinned").await;
    d.kill();
    config(
        dir.path(),
        &primary_proxy.url(),
        &cluster.api_url(ISOLATED),
        &r,
        &[],
    );
    other.up().await;
    d.restart();
    d.ready().await;
    let api = d.api();
    d.wait_until("the narrowed host's event expires", LIMIT, || {
        let api = api.clone();
        async move {
            api.status("job-narrowed")
                .await
                .ok()
                .and_then(|row| row.notifications)
                .is_some_and(|n| n.expired == 1 && n.pending == 0)
        }
    })
    .await;
    let n = api
        .status("job-narrowed")
        .await
        .expect("status")
        .notifications
        .expect("notifications");
    assert!(
        n.last_error
            .as_deref()
            .is_some_and(|e| e.contains("not in notify.allowed_hosts")),
        "{n:?}"
    );
    assert!(
        other.deliveries().is_empty(),
        "a host off the allow-list was called"
    );
    step(t0, "a host taken off the allow-list is not called");
}
