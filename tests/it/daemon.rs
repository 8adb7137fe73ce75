//! `pinwarden serve` against real Kubo nodes: the socket API, the durable lazy queue with
//! the local fallback and its journal, crash safety under SIGKILL, and live policy swaps.
//! On the shared cluster: primary and backup are two nodes of its mesh, the local node is its
//! isolated node (content uploaded there alone must end in the local fallback).

use crate::support::cli::Pinwarden;
use crate::support::daemon::{Daemon, Serve};
use crate::support::nodes::{ISOLATED, MESH, shared_cluster, step, upload_tiny};
use crate::support::policies::{GUEST_MODULES, HOSTILE, TANK_MODE};
use crate::support::webhook::webhook_receiver;
use crate::support::{FaultProxy, IpfsCluster, Mode, XorShift};
use pinwarden::Outcome;
use pinwarden::client::{ClientError, DaemonClient};
use pinwarden::daemon::wire::{ReloadRequest, SubmitRequest};
use pinwarden::journal;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden::queue::State;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const PRIMARY: usize = MESH[0];
const BACKUP: usize = MESH[1];
const LOCAL: usize = ISOLATED;

/// An API error as (status, body), the way the assertions read it.
fn failed(e: ClientError) -> (u16, Value) {
    match e {
        ClientError::Api { status, message } => (status.as_u16(), json!({ "error": message })),
        other => panic!("daemon unreachable: {other}"),
    }
}

/// The daemon fixture on a data directory, with the JSON-shaped calls this module asserts on.
struct Served {
    daemon: Daemon,
    client: reqwest::Client,
}

impl Served {
    /// `pinwarden serve --config DIR/pinwarden.toml --log-format json` with `env`.
    fn start(dir: &Path, env: &[(&str, String)]) -> Served {
        let serve = env.iter().fold(
            Serve::config(dir).args(["--log-format", "json"]),
            |serve, (k, v)| serve.env(k, v),
        );
        let client = reqwest::Client::builder()
            .unix_socket(dir.join("pinwarden.sock"))
            .build()
            .expect("client");
        Served {
            daemon: serve.spawn(),
            client,
        }
    }

    async fn ready(&mut self) {
        self.daemon.ready().await;
    }

    fn log(&self) -> String {
        self.daemon.log()
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self
            .client
            .request(method, format!("http://pinwarden{path}"));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// The typed client the encoder would use. (`request` stays for the malformed requests
    /// the API must refuse, which a typed client cannot even express.)
    fn api(&self) -> DaemonClient {
        self.daemon.api()
    }

    async fn submit(&self, cid: &str, job_id: &str) -> (u16, Value) {
        let request = SubmitRequest {
            cid: cid.into(),
            job_id: job_id.into(),
            size_bytes: 4096,
            wait: false,
            timeout_ms: None,
            notify: None,
        };
        match self.api().submit(&request).await {
            Ok(s) => (
                if s.accepted_only { 202 } else { 200 },
                json!({ "job": s.job }),
            ),
            Err(e) => failed(e),
        }
    }

    async fn state(&self, key: &str) -> String {
        match self.api().status(key).await {
            Ok(job) => job.state.to_string(),
            Err(e) => format!("? ({e})"),
        }
    }

    async fn health(&self) -> Value {
        serde_json::to_value(self.api().health().await.expect("health")).expect("json")
    }

    async fn reload(&self, policy: String, params: Option<Value>) -> (u16, Value) {
        let request = ReloadRequest {
            policy: Some(policy),
            params: params.map(|p| serde_json::from_value(p).expect("params object")),
        };
        match self.api().reload(&request).await {
            Ok(p) => (200, json!({ "policy": p })),
            Err(e) => failed(e),
        }
    }

    async fn cancel(&self, job_id: &str) -> (u16, Value) {
        match self.api().cancel(job_id).await {
            Ok(job) => (200, json!({ "job": job })),
            Err(e) => failed(e),
        }
    }

    /// Polls until every key is in a final state (bounded), returning the states.
    async fn settle(&self, keys: &[String], limit: Duration) -> BTreeMap<String, String> {
        let start = Instant::now();
        loop {
            let mut states = BTreeMap::new();
            for k in keys {
                states.insert(k.clone(), self.state(k).await);
            }
            let open = states
                .values()
                .filter(|s| !matches!(s.as_str(), "pinned" | "local-fallback" | "failed"))
                .count();
            if open == 0 || start.elapsed() > limit {
                return states;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn config(dir: &Path, primary: &str, backup: &str, local: &str, policy: &str) {
    config_with(dir, primary, backup, local, policy, "");
}

fn config_with(dir: &Path, primary: &str, backup: &str, local: &str, policy: &str, extra: &str) {
    let rest = format!(
        r#"[policy]
name = "{policy}"
params = {{ attempts = 1, base_delay_ms = 50, max_delay_ms = 100, pin_timeout_ms = 3000, stall_timeout_ms = 1200 }}

[local_fallback]
enabled = true
threshold = 2

[daemon]
concurrent_pins = 10
retry_base_ms = 100
retry_max_ms = 400
watch_ms = 200
policy_dir = "{data}"
{extra}
"#,
        data = dir.display(),
    );
    let nodes = [
        ("primary", "primary", primary),
        ("backup-1", "backup", backup),
        ("local", "local", local),
    ];
    crate::support::config::write(dir, &nodes, &rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_against_real_nodes() {
    let t0 = Instant::now();
    let cluster = shared_cluster().await;
    step(t0, "shared Kubo nodes up");
    let primary_proxy = FaultProxy::start(&cluster.api_url(PRIMARY))
        .await
        .expect("proxy");
    let backup_proxy = FaultProxy::start(&cluster.api_url(BACKUP))
        .await
        .expect("proxy");
    let node =
        |i: usize| KuboClient::new(format!("n{i}"), &cluster.api_url(i), None).expect("client");

    api_and_socket(&cluster, &primary_proxy, &backup_proxy).await;
    step(t0, "API, socket, idempotence, wait mode");
    lazy_local_fallback(&cluster, &primary_proxy, &backup_proxy).await;
    step(t0, "lazy local fallback and journal");
    crash_safety(&cluster, &node(PRIMARY), &node(LOCAL)).await;
    step(t0, "SIGKILL crash test");
    policy_swap(&cluster, &node(PRIMARY)).await;
    step(t0, "live policy swap");
}

async fn api_and_socket(cluster: &IpfsCluster, primary: &FaultProxy, backup: &FaultProxy) {
    primary.set_mode(Mode::Pass).await;
    backup.set_mode(Mode::Pass).await;
    let dir = tempfile::tempdir().expect("tempdir");
    config(
        dir.path(),
        &primary.url(),
        &backup.url(),
        &cluster.api_url(LOCAL),
        "tank-mode",
    );
    let mut d = Served::start(dir.path(), &[]);
    d.ready().await;

    let mode = std::fs::metadata(dir.path().join("pinwarden.sock"))
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket must be private");

    // Bad requests: 4xx with a message that names the problem.
    let cases = [
        (
            json!({ "cid": "nope", "job_id": "a" }),
            400,
            "invalid CID 'nope'",
        ),
        (json!({ "job_id": "a" }), 400, "cid"),
        (
            json!({ "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "job_id": "" }),
            400,
            "job_id",
        ),
        (
            json!({ "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "job_id": "x", "colour": 1 }),
            400,
            "colour",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = d
            .request(reqwest::Method::POST, "/v1/pins", Some(body.clone()))
            .await
            .expect("post");
        assert_eq!(s, status, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(needle),
            "{body}: {v}"
        );
    }
    let (s, v) = d
        .request(reqwest::Method::GET, "/v1/jobs/no-such-job", None)
        .await
        .expect("get");
    assert_eq!((s, v["error"].is_string()), (404, true), "{v}");
    let (s, v) = d
        .request(reqwest::Method::GET, "/v1/jobs?state=lost", None)
        .await
        .expect("get");
    assert_eq!(s, 400, "{v}");
    let (s, _) = d
        .request(reqwest::Method::POST, "/v1/pins", None)
        .await
        .expect("post");
    assert_eq!(s, 400, "empty body");

    // Idempotence: one CID, two job ids, one pin.
    let cid = upload_tiny(
        &KuboClient::new("p", &cluster.api_url(PRIMARY), None).expect("c"),
        "idem",
    )
    .await;
    primary.reset_counts();
    let (s, v) = d.submit(&cid, "enc-1").await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = d.submit(&cid, "enc-2").await;
    assert_eq!(s, 202, "{v}");
    let states = d
        .settle(&["enc-1".into(), "enc-2".into()], Duration::from_secs(30))
        .await;
    assert!(states.values().all(|s| s == "pinned"), "{states:?}");
    let job = d.api().status("enc-2").await.expect("status");
    assert_eq!(job.job_ids, ["enc-1", "enc-2"]);
    assert_eq!(
        primary.count("/api/v0/pin/add"),
        1,
        "one pin for both job ids"
    );
    // Same job id for another CID: conflict.
    let other = upload_tiny(
        &KuboClient::new("p", &cluster.api_url(PRIMARY), None).expect("c"),
        "other",
    )
    .await;
    let (s, v) = d.submit(&other, "enc-1").await;
    assert_eq!(s, 409, "{v}");
    // A finished CID submitted again is answered at once, without pinning again.
    let (s, v) = d.submit(&cid, "enc-3").await;
    assert_eq!(
        (s, v["job"]["state"].as_str()),
        (202, Some("pinned")),
        "{v}"
    );

    // Wait mode returns the verdict; the CLI client exits 0 for pinned.
    let out = Pinwarden::new()
        .args([
            "submit", &other, "--job-id", "enc-wait", "--wait", "--socket",
        ])
        .arg(dir.path().join("pinwarden.sock"))
        .run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["state"], "pinned");
    let out = Pinwarden::new()
        .args(["status", "enc-wait", "--socket"])
        .arg(dir.path().join("pinwarden.sock"))
        .run();
    assert!(String::from_utf8_lossy(&out.stdout).contains("pinned"));

    // Health shows the active policy and its hash; list filters by state.
    let h = d.health().await;
    assert_eq!(h["policy"]["name"], "tank-mode");
    assert!(
        h["policy"]["hash"]
            .as_str()
            .is_some_and(|x| x.starts_with("sha256:"))
    );
    let pinned = d.api().jobs(Some(State::Pinned), 100).await.expect("list");
    assert_eq!(pinned.len(), 2);

    // Cancel a job that cannot finish soon.
    primary.set_mode(Mode::Delay(Duration::from_secs(30))).await;
    backup.set_mode(Mode::Delay(Duration::from_secs(30))).await;
    let slow = upload_tiny(
        &KuboClient::new("p", &cluster.api_url(LOCAL), None).expect("c"),
        "slow",
    )
    .await;
    d.submit(&slow, "enc-slow").await;
    let (s, v) = d.cancel("enc-slow").await;
    assert_eq!(
        (s, v["job"]["state"].as_str()),
        (200, Some("failed")),
        "{v}"
    );
    let (s, _) = d.cancel("enc-slow").await;
    assert_eq!(s, 409, "already ended");
    primary.set_mode(Mode::Pass).await;
    backup.set_mode(Mode::Pass).await;
    drop(d);

    // TCP: a bearer token is required on every TCP listener, loopback included (unless the
    // operator opts out for loopback, loudly); a foreign Host header is refused before that.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let token = "s3cret-token-for-tests".to_string();
    let d = Served::start(dir.path(), &[("PINWARDEN_TOKEN", token.clone())]);
    drop(d);
    let out = Pinwarden::new()
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(dir.path().join("pinwarden.toml"))
        .run();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a bearer token"));
    let out = Pinwarden::new()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("pinwarden.toml"))
        .run();
    assert_eq!(out.status.code(), Some(2), "loopback needs a token too");
    let tcp = Serve::config(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PINWARDEN_TOKEN", &token)
        .start()
        .await;
    // Up on its socket, so on TCP too: both listeners are bound before either serves.
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/health");
    let status = |answer: reqwest::Result<reqwest::Response>| {
        answer
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", tcp.log()))
    };
    let anon = status(http.get(&url).send().await);
    let authed = status(http.get(&url).bearer_auth(&token).send().await);
    // A page served from evil.example resolving to 127.0.0.1 (DNS rebinding).
    let rebound = status(
        http.get(&url)
            .bearer_auth(&token)
            .header("host", format!("evil.example:{port}"))
            .send()
            .await,
    );
    let statuses = (anon, authed, rebound);
    drop(tcp);
    assert_eq!(statuses, (401, 200, 403));
}

async fn lazy_local_fallback(cluster: &IpfsCluster, primary: &FaultProxy, backup: &FaultProxy) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A webhook receiver on loopback for the spike alert.
    let (hook_addr, mut hook_rx, hook_server) = webhook_receiver().await;
    let alert = format!(
        "[[alert]]\nname = \"fallback-spike\"\nsignal = \"local_fallbacks\"\nwindow_secs = 60\nthreshold = 0\nwebhook = \"http://{hook_addr}/hook\"\n"
    );
    let local_api = cluster.api_url(LOCAL);
    config_with(
        dir.path(),
        &primary.url(),
        &backup.url(),
        &local_api,
        "tank-mode",
        &alert,
    );
    // A crash once tore the journal's last line: the next entry must still be whole.
    let journal_file = dir.path().join(journal::JOURNAL_FILE);
    std::fs::write(&journal_file, "{\"hash\":\"QmTorn").expect("torn");
    let mut d = Served::start(dir.path(), &[]);
    d.ready().await;
    // The content exists on the local node only; primary and backup are down.
    primary.set_mode(Mode::Refuse).await;
    backup.set_mode(Mode::Http500).await;
    let local = KuboClient::new("local", &cluster.api_url(LOCAL), None).expect("client");
    let cid = upload_tiny(&local, "fallback").await;
    let (s, _) = d.submit(&cid, "job-123").await;
    assert_eq!(s, 202);
    let states = d.settle(&["job-123".into()], Duration::from_secs(30)).await;
    assert_eq!(states["job-123"], "local-fallback", "{}", d.log());
    assert_eq!(
        local.verify(&cid).await,
        Outcome::Ok,
        "pinned on the local node"
    );

    let read = journal::read(&journal_file).expect("journal");
    assert_eq!(read.entries.len(), 1, "{:?}", read.problems);
    assert_eq!(
        read.problems.len(),
        1,
        "the torn line is reported, not fatal"
    );
    let raw = std::fs::read_to_string(&journal_file).expect("journal");
    let line = raw.lines().last().expect("a line");
    let v: Value = serde_json::from_str(line).expect("whole JSON line");
    // The seed's fields, in the seed's order (operators' jq scripts and eyes expect it).
    let order = [
        "hash",
        "job_id",
        "size_mb",
        "type",
        "failed_lazy_attempts",
        "local_pin_timestamp",
        "source",
        "node_id",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| {
            line.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing: {line}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(order.len()), "{line}");
    assert_eq!(v["hash"], cid.as_str());
    assert_eq!(v["job_id"], "job-123");
    assert_eq!(v["type"], "directory");
    assert_eq!(v["failed_lazy_attempts"], 2);
    assert_eq!(v["source"], "failed_lazy_pin_fallback");
    assert_eq!(v["node_id"], "encoder-node-1");
    let ts = v["local_pin_timestamp"].as_str().unwrap_or_default();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
    assert!(d.log().contains("LAZY PIN FALLBACK"), "{}", d.log());

    // Metrics say so too.
    let text = d.api().metrics().await.expect("metrics");
    for line in [
        "pinwarden_fallbacks_total{kind=\"local\"} 1",
        "pinwarden_journal_pending 1",
        "pinwarden_jobs{state=\"local-fallback\"} 1",
        "pinwarden_pin_attempts_total{node=\"primary\",outcome=\"unreachable\"} 2",
        // Fed live from the daemon's node-health ledger: two refused pins in a row, one
        // short of the default breaker_failures.
        "pinwarden_node_consecutive_failures{node=\"primary\"} 2",
        "pinwarden_node_breaker_state{node=\"primary\"} 0",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    // The spike alert fired: a WARN line and a POST to the webhook.
    let posted = tokio::time::timeout(Duration::from_secs(10), hook_rx.recv())
        .await
        .expect("webhook called")
        .expect("alert body");
    assert_eq!(posted["alert"], "fallback-spike");
    assert!(d.log().contains("ALERT fallback-spike"), "{}", d.log());
    hook_server.abort();
    // Structured logs: every line about a job names both its CID and its job id.
    let mut job_lines = 0;
    for line in d.log().lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let fields = &v["fields"];
        assert_eq!(
            fields["cid"].is_string(),
            fields["job_id"].is_string(),
            "{line}"
        );
        job_lines += usize::from(fields["cid"].is_string());
    }
    assert!(job_lines > 5, "{}", d.log());
    primary.set_mode(Mode::Pass).await;
    backup.set_mode(Mode::Pass).await;
}

/// The crash test is also the soak test: `PINWARDEN_SOAK_SCALE=15` runs 3,150 lazy jobs (150
/// and 60 per unit of scale) with proportionally more SIGKILLs; CI runs scale 1.
async fn crash_safety(cluster: &IpfsCluster, primary: &KuboClient, local: &KuboClient) {
    let scale: usize = std::env::var("PINWARDEN_SOAK_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .clamp(1, 100);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    // The primary and the local node themselves; the backup is a faulty node (HTTP 500 on every
    // call). Content on the primary pins normally; content on the (unconnected) local node only
    // can be found by nobody else, so it ends in the local fallback after two rounds.
    let faulty = FaultProxy::start(&cluster.api_url(BACKUP))
        .await
        .expect("proxy");
    faulty.set_mode(Mode::Http500).await;
    config(
        dir.path(),
        &cluster.api_url(PRIMARY),
        &faulty.url(),
        &cluster.api_url(LOCAL),
        "tank-mode",
    );
    let mut cids: Vec<(String, String)> = Vec::new();
    for i in 0..150 * scale {
        cids.push((
            format!("crash-a{i}"),
            upload_tiny(primary, &format!("a{i}")).await,
        ));
    }
    for i in 0..60 * scale {
        cids.push((
            format!("crash-b{i}"),
            upload_tiny(local, &format!("b{i}")).await,
        ));
    }
    let local_only: Vec<&String> = cids
        .iter()
        .filter(|(j, _)| j.contains("-b"))
        .map(|(_, c)| c)
        .collect();

    let mut d = Served::start(dir.path(), &[]);
    d.ready().await;
    // Submit everything, killing the daemon (SIGKILL) at pseudo-random moments; a submission
    // that hits a dead daemon is retried, as the encoder would.
    let mut rng = XorShift::seeded();
    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut kills = 0;
    let mut next_kill = 20 + (rng.next_u64() % 40) as usize;
    for (job, cid) in &cids {
        loop {
            let request = SubmitRequest {
                cid: cid.clone(),
                job_id: job.clone(),
                size_bytes: 0,
                wait: false,
                timeout_ms: None,
                notify: None,
            };
            match d.api().submit(&request).await {
                Ok(s) if s.accepted_only => break,
                Ok(s) => panic!("submit {job}: not queued: {:?}", s.job),
                Err(ClientError::Unreachable { .. }) => {
                    d.daemon.restart();
                    d.ready().await;
                }
                Err(e) => panic!("submit {job}: {e}"),
            }
        }
        accepted.insert(job.clone(), cid.clone());
        if accepted.len() == next_kill {
            tokio::time::sleep(Duration::from_millis(rng.next_u64() % 300)).await;
            d.daemon.restart(); // SIGKILL, then start again
            kills += 1;
            next_kill += 30 + (rng.next_u64() % 50) as usize;
            d.ready().await;
        }
    }
    // A few more kills while the rounds are running.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300 + rng.next_u64() % 1_200)).await;
        d.daemon.restart(); // SIGKILL, then start again
        kills += 1;
        d.ready().await;
    }
    let jobs: Vec<String> = accepted.keys().cloned().collect();
    let submitted = t0.elapsed();
    let states = d
        .settle(&jobs, Duration::from_secs(180 * scale as u64))
        .await;
    eprintln!(
        "crash/soak test: {} jobs, {kills} SIGKILLs, faulty backup ({} calls answered 500); \
         uploaded and submitted in {:.1} s, all ended after {:.1} s",
        jobs.len(),
        faulty.counts().values().sum::<usize>(),
        submitted.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for s in states.values() {
        *by_state.entry(s.as_str()).or_default() += 1;
    }
    assert_eq!(jobs.len(), 210 * scale, "every job was accepted");
    assert!(kills >= 5, "{kills}");
    for (job, state) in &states {
        let want = if job.contains("-b") {
            "local-fallback"
        } else {
            "pinned"
        };
        assert_eq!(
            state,
            want,
            "{job} ended {state}: {by_state:?}\n{}",
            d.log()
        );
    }
    // The journal parses, and names every local-only CID (a crash between the journal append
    // and the queue update may repeat a line; it never loses one).
    let read = journal::read(&dir.path().join(journal::JOURNAL_FILE)).expect("journal");
    assert!(
        read.problems.len() <= 1,
        "at most a torn last line: {:?}",
        read.problems
    );
    for cid in &local_only {
        assert!(
            read.entries.iter().any(|e| &&e.hash == cid),
            "{cid} missing from the journal"
        );
    }
    for (job, cid) in cids.iter().filter(|(j, _)| j.contains("-a")).take(20) {
        assert_eq!(
            primary.verify(cid).await,
            Outcome::Ok,
            "{job} really pinned"
        );
    }
}

async fn policy_swap(cluster: &IpfsCluster, primary: &KuboClient) {
    let dir = tempfile::tempdir().expect("tempdir");
    // The configured policy is a file, so edits to it are picked up by the watch.
    let policy_file = dir.path().join("policy.wasm");
    std::fs::write(&policy_file, TANK_MODE).expect("policy");
    config(
        dir.path(),
        &cluster.api_url(PRIMARY),
        &cluster.api_url(BACKUP),
        &cluster.api_url(LOCAL),
        &policy_file.display().to_string(),
    );
    let mut d = Served::start(dir.path(), &[]);
    d.ready().await;
    let hash = |v: &Value| v["policy"]["hash"].as_str().unwrap_or_default().to_string();
    let h = d.health().await;
    let tank_hash = hash(&h);

    // Load: jobs keep flowing while policies are swapped under them.
    let mut jobs = Vec::new();
    for i in 0..40 {
        let cid = upload_tiny(primary, &format!("swap{i}")).await;
        let job = format!("swap-{i}");
        d.submit(&cid, &job).await;
        jobs.push(job);
        if i == 10 {
            let (s, v) = d.reload("single-backup".into(), None).await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["policy"]["name"], "single-backup");
        }
        if i == 20 {
            // A broken file is refused; the old policy keeps serving.
            let broken = dir.path().join("broken.wasm");
            std::fs::write(&broken, b"\0asm garbage").expect("write");
            let (s, v) = d.reload(broken.display().to_string(), None).await;
            assert_eq!(s, 422, "{v}");
            let h = d.health().await;
            assert_eq!(h["policy"]["name"], "single-backup");
            // A component that traps fails validation too (its configure accepts the mode).
            let hostile = dir.path().join("hostile.wasm");
            std::fs::write(&hostile, HOSTILE).expect("write");
            let params = json!({ "mode": "trap" });
            let (s, v) = d.reload(hostile.display().to_string(), Some(params)).await;
            assert_eq!(s, 422, "{v}");
            assert!(
                v["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("fails built-in scenario"),
                "{v}"
            );
            // Unknown parameters for the new policy are named.
            let params = json!({ "quorum": 2 });
            let (s, v) = d.reload("single-backup".into(), Some(params)).await;
            assert_eq!(s, 422, "{v}");
            assert!(
                v["error"].as_str().unwrap_or_default().contains("'quorum'"),
                "{v}"
            );
        }
        if i == 30 {
            // SIGHUP: back to the configured policy file.
            d.daemon.signal("-HUP");
        }
    }
    let states = d.settle(&jobs, Duration::from_secs(60)).await;
    assert!(states.values().all(|s| s == "pinned"), "{states:?}");
    let h = d.health().await;
    assert_eq!(
        hash(&h),
        tank_hash,
        "SIGHUP re-loaded the configured file: {h}"
    );
    assert!(h["policy_reloads"].as_u64().unwrap_or(0) >= 2, "{h}");

    // The watch: replace the file with another policy; the daemon picks it up by itself.
    let single = Path::new(GUEST_MODULES).join("backups_first.wasm");
    let encoded = dir.path().join("bf.wasm");
    let out = Pinwarden::new()
        .args(["policy", "encode"])
        .arg(&single)
        .arg("-o")
        .arg(&encoded)
        .run();
    assert!(out.status.success());
    std::fs::copy(&encoded, &policy_file).expect("replace policy file");
    let served = &d;
    d.daemon
        .wait_until(
            "the watch swaps the policy to backups-first",
            Duration::from_secs(10),
            move || async move { served.health().await["policy"]["name"] == "backups-first" },
        )
        .await;
    d.daemon.kill();
}
