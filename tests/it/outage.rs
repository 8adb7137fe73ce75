//! Outage mode on real nodes: a supernode that accepts `pin/add` and then goes silent (the
//! encoder project's 11-hour incident), one healthy backup, default parameters. Consecutive
//! blocking `pinwarden pin` processes learn from each other through the data directory's
//! node-health ledger; a daemon drains lazy jobs past the sick primary; a recovered primary gets
//! its traffic back; the happy path touches no backup.
//!
//! Latencies are printed (see the closing notes and BENCHMARKS.md), never asserted.

use crate::support::cli::{Pinwarden, stdout_json};
use crate::support::daemon::Serve;
use crate::support::nodes::{MESH, shared_cluster, step};
use crate::support::{FaultProxy, IpfsCluster, Mode, make_hls_dir};
use pinwarden::daemon::wire::SubmitRequest;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden::queue::State;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Outage {
    cluster: Arc<IpfsCluster>,
    primary: FaultProxy,
    backup: FaultProxy,
    data: tempfile::TempDir,
}

impl Outage {
    async fn new() -> Outage {
        let cluster = shared_cluster().await;
        let primary = FaultProxy::start(&cluster.api_url(MESH[0]))
            .await
            .expect("primary proxy");
        let backup = FaultProxy::start(&cluster.api_url(MESH[1]))
            .await
            .expect("backup proxy");
        Outage {
            cluster,
            primary,
            backup,
            data: tempfile::tempdir().expect("data dir"),
        }
    }

    /// `pinwarden ARGS` on this topology and data directory (no config file).
    fn command(&self, args: &[&str]) -> Pinwarden {
        Pinwarden::new()
            .args(args)
            .current_dir(self.data.path())
            .env("IPFS_PRIMARY_API", self.primary.url())
            .env("IPFS_BACKUP_APIS", self.backup.url())
            .env("PINWARDEN_DATA_DIR", self.data.path())
    }

    /// Fresh content, uploaded to the primary node itself (not through its proxy).
    async fn upload(&self, name: &str) -> String {
        let (_tmp, dir) = make_hls_dir(name, 1 << 20, 4).expect("hls dir");
        let node = KuboClient::new("uploader", &self.cluster.api_url(MESH[0]), None).expect("c");
        node.add_dir(&dir).await.expect("upload")
    }

    /// A blocking `pinwarden pin`, its JSON result.
    async fn pin(&self, cid: &str, params: &[&str]) -> Value {
        let mut args = vec!["pin", cid, "--json"];
        for p in params {
            args.extend(["--param", p]);
        }
        stdout_json(&self.command(&args).run_async().await)
    }

    async fn breaker(&self, node: &str) -> String {
        stdout_json(&self.command(&["nodes", "--json"]).run_async().await)
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["name"] == node).cloned())
            .and_then(|n| n["breaker"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

fn confirmed(v: &Value) -> Vec<&str> {
    v["confirmed_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn calls(proxy: &FaultProxy) -> usize {
    proxy.counts().values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pins_learn_from_each_other_and_the_primary_gets_traffic_back() {
    let t0 = Instant::now();
    let w = Outage::new().await;

    // Happy path: the primary pins; the backup hears nothing at all.
    let cid = w.upload("happy").await;
    let v = w.pin(&cid, &[]).await;
    assert_eq!(confirmed(&v), ["primary"], "{v}");
    assert_eq!(
        calls(&w.backup),
        0,
        "backup touched: {:?}",
        w.backup.counts()
    );
    step(t0, "happy path: pinned on the primary, zero backup calls");

    // The supernode accepts pin/add and never finishes it.
    w.primary.set_mode(Mode::StallMidStream).await;
    for job in 1..=3 {
        let cid = w.upload(&format!("stall{job}")).await;
        let v = w.pin(&cid, &[]).await;
        assert_eq!(v["status"], "pinned", "{v}");
        assert_eq!(confirmed(&v), ["backup-1"], "{v}");
        // Hedged, not retried: one pin on the primary, which lost the race.
        assert_eq!(v["attempts"]["primary"], 1, "{v}");
        step(
            t0,
            &format!(
                "job {job}: pinned on backup-1 in {} ms (hedged)",
                v["duration_ms"]
            ),
        );
    }
    // Three lost races, three processes: the ledger file carried them.
    assert_eq!(w.breaker("primary").await, "open");
    let primary_pins = w.primary.count("/api/v0/pin/add");
    let cid = w.upload("open").await;
    let v = w.pin(&cid, &[]).await;
    assert_eq!(confirmed(&v), ["backup-1"], "{v}");
    assert!(v["attempts"].get("primary").is_none(), "{v}");
    assert_eq!(w.primary.count("/api/v0/pin/add"), primary_pins);
    step(
        t0,
        &format!(
            "job 4, breaker open: backup-1 directly in {} ms",
            v["duration_ms"]
        ),
    );

    // The primary recovers: after the cool-down one job probes it and it gets traffic again.
    // (A short cool-down keeps the test short; a long hedge delay keeps the probe from racing.)
    w.primary.set_mode(Mode::Pass).await;
    let recovery = ["breaker_cooldown_ms=2000", "hedge_after_ms=60000"];
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let cid = w.upload("recovered").await;
    let v = w.pin(&cid, &recovery).await;
    assert_eq!(confirmed(&v), ["primary"], "{v}");
    assert_eq!(w.breaker("primary").await, "closed");
    let cid = w.upload("after").await;
    let v = w.pin(&cid, &[]).await;
    assert_eq!(confirmed(&v), ["primary"], "{v}");
    step(t0, "primary recovered: probed, closed, pinning again");
}

/// The supernode overloaded outright: every call to it hangs, the `pin/ls` guard before its
/// pin, the `id` that tells a new process what it is, and the `id` a backup's provider hint
/// asks of it. tank-mode's defaults: the primary reads as quiet from the pin's first call, so the
/// backup races it after `hedge_quiet_ms`, not `hedge_after_ms` (10 s); and the hint gives up on
/// the primary's addresses after 2 s instead of holding the backup's pin for the 30 s call
/// timeout (10 + 30 s before these fixes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_hangs_every_call_is_passed_by_the_backup_within_seconds() {
    let t0 = Instant::now();
    let w = Outage::new().await;
    let cid = w.upload("hung").await;
    w.primary
        .set_mode(Mode::Delay(Duration::from_secs(120)))
        .await;
    let v = w.pin(&cid, &[]).await;
    assert_eq!(confirmed(&v), ["backup-1"], "{v}");
    let backup_pin = v["trace"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| {
            l["node"] == "backup-1"
                && l["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("pin attempt 1"))
        })
        .and_then(|l| l["t_ms"].as_u64())
        .unwrap_or_else(|| panic!("the backup's first pin attempt is in the trace: {v}"));
    assert!(
        backup_pin < 10_000,
        "the backup's pin started at {backup_pin} ms, not after hedge_after_ms: {v}"
    );
    let backup = KuboClient::new("backup", &w.cluster.api_url(MESH[1]), None).expect("client");
    assert_eq!(backup.verify(&cid).await, pinwarden::Outcome::Ok);
    step(
        t0,
        &format!(
            "every call to the primary hanging: the backup's pin started at {backup_pin} ms, pinned in {} ms",
            v["duration_ms"]
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_drains_lazy_jobs_past_a_silent_primary() {
    let t0 = Instant::now();
    let w = Outage::new().await;
    w.primary.set_mode(Mode::StallMidStream).await;
    // `pinwarden serve` with the outage's topology and default parameters.
    let served = Serve::new(
        w.command(&["serve"]),
        w.data.path().join("pinwarden.sock"),
        w.data.path().join("serve.log"),
    )
    .start()
    .await;
    let api = served.api();
    let submit = |cid: String, job: String| {
        let api = &api;
        async move {
            let request = SubmitRequest {
                cid,
                job_id: job,
                size_bytes: 1 << 20,
                wait: false,
                timeout_ms: None,
                notify: None,
            };
            let s = api.submit(&request).await.expect("submit");
            assert!(s.accepted_only, "lazy jobs are queued: {:?}", s.job);
        }
    };
    let settle = |jobs: Vec<String>| {
        let (api, served) = (&api, &served);
        async move {
            let jobs = &jobs;
            let what = format!("lazy jobs are pinned: {jobs:?}");
            let all_pinned = move || async move {
                let mut done = true;
                for job in jobs {
                    let row = api.status(job).await.expect("status");
                    done &= row.state == State::Pinned;
                }
                done
            };
            served
                .wait_until(&what, Duration::from_secs(120), all_pinned)
                .await;
        }
    };

    // Wave 1: three lazy jobs, one a second, meet the silent primary and are hedged.
    let mut wave1 = Vec::new();
    for i in 0..3 {
        let cid = w.upload(&format!("lazy{i}")).await;
        submit(cid, format!("wave1-{i}")).await;
        wave1.push(format!("wave1-{i}"));
        let next = tokio::time::Instant::now() + Duration::from_secs(1);
        if i == 0 {
            // While the first job's pin hangs on the primary, the daemon's node view shows the
            // primary's quiet time growing: what tank-mode's `hedge_quiet_ms` reads.
            let mut quiet = None;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while quiet.is_none_or(|ms| ms < 300) && tokio::time::Instant::now() < deadline {
                let nodes = api.nodes().await.expect("nodes");
                let primary = nodes.iter().find(|n| n.name == "primary").expect("primary");
                quiet = quiet.max(primary.since_last_progress_ms);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                quiet.is_some_and(|ms| ms >= 300),
                "GET /v1/nodes shows the hanging primary quiet: {quiet:?}"
            );
            step(
                t0,
                &format!("GET /v1/nodes: primary quiet for {quiet:?} ms"),
            );
        }
        tokio::time::sleep_until(next).await;
    }
    settle(wave1.clone()).await;
    step(t0, "wave 1 (3 lazy jobs) pinned, hedged past the primary");
    let nodes = api.nodes().await.expect("nodes");
    let primary = nodes.iter().find(|n| n.name == "primary").expect("primary");
    assert_ne!(primary.breaker, "closed", "{primary:?}");

    // Wave 2: the breaker is open, so five more jobs go straight to the backup.
    let primary_pins = w.primary.count("/api/v0/pin/add");
    let mut wave2 = Vec::new();
    for i in 0..5 {
        let cid = w.upload(&format!("lazy2-{i}")).await;
        submit(cid, format!("wave2-{i}")).await;
        wave2.push(format!("wave2-{i}"));
    }
    settle(wave2.clone()).await;
    step(t0, "wave 2 (5 lazy jobs) pinned, primary untouched");
    for job in wave1.iter().chain(&wave2) {
        let row = api.status(job).await.expect("status");
        assert_eq!(row.confirmed, ["backup-1"], "{row:?}");
        step(
            t0,
            &format!(
                "{job}: submitted -> pinned in {} ms",
                row.updated_at_ms - row.created_at_ms
            ),
        );
    }
    assert_eq!(
        w.primary.count("/api/v0/pin/add"),
        primary_pins,
        "no pin/add to the sick primary while its breaker is open"
    );
}
