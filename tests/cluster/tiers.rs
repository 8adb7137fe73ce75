//! The tests of `main.rs`, on one shared [`World`].

use crate::support::cli::{Pinwarden, stdout_json};
use crate::support::daemon::{Daemon, Serve};
use crate::support::wait::until;
use pinwarden::Outcome;
use pinwarden::client::DaemonClient;
use pinwarden::daemon::wire::SubmitRequest;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden_testkit::{ClusterPeers, FaultProxy, IpfsCluster, Mode, ipfs_cluster, make_hls_dir};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Kubo 0: pinwarden's primary.
const PRIMARY: usize = 0;
/// Kubo 1–3: the cluster peers' nodes.
const CLUSTER_KUBOS: [usize; 3] = [1, 2, 3];
/// Kubo 4: a plain backup, or the second pinwarden's node.
const SPARE: usize = 4;
/// Kubo 5: the PSA check node (never pins).
const CHECKER: usize = 5;
/// A bound for any one round here (a retried cluster tier included).
const ROUND: Duration = Duration::from_secs(120);
const PSA_TOKEN: &str = "tier-token-0123456789abcdef";
/// The primary's pins fail as an overloaded supernode's do: its RPC answers, its swarm serves
/// the uploaded blocks, `pin/add` ends in an error.
fn overloaded() -> Mode {
    Mode::PinStreamError("pin: context deadline exceeded (overloaded)".into())
}

pub struct World {
    kubo: IpfsCluster,
    cluster: ClusterPeers,
    /// In front of the primary's RPC.
    primary: FaultProxy,
    http: reqwest::Client,
}

/// The world, started by the first test that asks.
async fn world(slot: &Mutex<Option<World>>) -> tokio::sync::MutexGuard<'_, Option<World>> {
    let mut w = slot.lock().await;
    if w.is_none() {
        pinwarden::install_crypto_provider();
        // Every node also listens on the namespace's private address: the cluster reports only
        // such addresses as its peers' (its PSA's delegates), and origins may carry them.
        let kubo = IpfsCluster::start_with(6, |_, c| ipfs_cluster::listen_on_private(c))
            .await
            .unwrap_or_else(|e| panic!("Kubo daemons are required: {e:#}"));
        let cluster = ClusterPeers::start(&kubo, &CLUSTER_KUBOS)
            .await
            .unwrap_or_else(|e| panic!("IPFS Cluster is required: {e:#}\n{}", kubo.logs()));
        let primary = FaultProxy::start(&kubo.api_url(PRIMARY))
            .await
            .expect("proxy");
        *w = Some(World {
            kubo,
            cluster,
            primary,
            http: reqwest::Client::new(),
        });
    }
    w
}

impl World {
    fn kubo(&self, i: usize) -> KuboClient {
        KuboClient::new(format!("kubo-{i}"), &self.kubo.api_url(i), None).expect("client")
    }

    /// Fresh content on the primary (through the passing proxy's node directly).
    async fn upload(&self, name: &str, bytes: usize) -> String {
        let (_tmp, dir) = make_hls_dir(name, bytes, 4).expect("hls dir");
        self.kubo(PRIMARY).add_dir(&dir).await.expect("upload")
    }

    /// The cluster's `[[node]]`.
    fn cluster_node(&self, name: &str, min: u32, max: i32) -> String {
        let walkers: Vec<String> = CLUSTER_KUBOS
            .iter()
            .map(|&k| format!("\"{}\"", self.kubo.api_url(k)))
            .collect();
        format!(
            "[[node]]\nname = \"{name}\"\nrole = \"backup\"\napi = \"cluster\"\nurl = \"{}\"\n\
             replication_min = {min}\nreplication_max = {max}\npeer_kubo_urls = [{}]\npoll_ms = 100\n\n",
            self.cluster.rest_url(0),
            walkers.join(", ")
        )
    }

    /// A PSA `[[node]]` at `url`, proven through the check node.
    fn psa_node(&self, name: &str, url: &str, token: Option<&str>) -> String {
        let mut text = format!(
            "[[node]]\nname = \"{name}\"\nrole = \"backup\"\napi = \"psa\"\nurl = \"{url}\"\n\
             check_via = \"checker\"\npoll_ms = 100\n"
        );
        if let Some(t) = token {
            let _ = writeln!(text, "bearer_token = \"{t}\"");
        }
        let _ = write!(
            text,
            "\n[[node]]\nname = \"checker\"\nrole = \"local\"\nurl = \"{}\"\n\n",
            self.kubo.api_url(CHECKER)
        );
        text
    }

    /// `<dir>/pinwarden.toml`: the primary (proxied), then `nodes`, tank-mode with quick
    /// retries, the local fallback off.
    fn config(&self, dir: &Path, nodes: &str, stall_ms: u64) -> std::path::PathBuf {
        let text = format!(
            "data_dir = \"{}\"\nnode_name = \"encoder-node-1\"\n\n\
             [[node]]\nname = \"primary\"\nrole = \"primary\"\nurl = \"{}\"\n\n{nodes}\
             [policy]\nname = \"tank-mode\"\nparams = {{ attempts = 2, base_delay_ms = 100, \
             max_delay_ms = 200, pin_timeout_ms = 60000, stall_timeout_ms = {stall_ms}, \
             hedge_after_ms = 0, breaker_failures = 0 }}\n\n\
             [local_fallback]\nenabled = false\n",
            dir.display(),
            self.primary.url()
        );
        let path = dir.join("pinwarden.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    async fn pin(&self, config: &Path, cid: &str) -> Value {
        let out = Pinwarden::new()
            .args(["pin", cid, "--json", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .run_async()
            .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "pin failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_json(&out)
    }

    async fn get(&self, url: &str) -> (u16, Value) {
        let reply = self.http.get(url).send().await.expect("GET");
        let status = reply.status().as_u16();
        let body = reply.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Peers of the cluster whose status for `cid` is `pinned`.
    async fn cluster_pinned(&self, cid: &str) -> usize {
        let (_, info) = self
            .get(&format!("{}/pins/{cid}", self.cluster.rest_url(0)))
            .await;
        info["peer_map"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, p)| p["status"] == "pinned")
            .count()
    }
}

fn confirmed(v: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = v["confirmed_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

/// The dead-supernode flow on a real cluster: the primary's pins fail, tank-mode hints the
/// cluster to the primary (which becomes the pin's `origins`), the cluster pins on
/// replication-min = 2 of its 3 peers, and the round succeeds only after a walk of every block
/// on one of those peers' Kubo.
pub async fn cluster_tier_pins_from_the_primary_through_origins(slot: Arc<Mutex<Option<World>>>) {
    let guard = world(&slot).await;
    let w = guard.as_ref().expect("world");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = w.config(dir.path(), &w.cluster_node("cluster", 2, 2), 30_000);
    let cid = w.upload("cluster-origins", 2 << 20).await;
    w.primary.set_mode(overloaded()).await;
    let v = w.pin(&config, &cid).await;
    w.primary.set_mode(Mode::Pass).await;
    assert_eq!(confirmed(&v), ["cluster"], "{v}");
    assert_eq!(
        w.cluster_pinned(&cid).await,
        2,
        "replication-min peers pinned"
    );
    // Fetched from the primary via origins: the cluster's pin carries the primary's addresses,
    // and no cluster Kubo was ever told of the primary otherwise.
    let (status, alloc) = w
        .get(&format!("{}/allocations/{cid}", w.cluster.rest_url(0)))
        .await;
    assert_eq!(status, 200, "{alloc}");
    let primary_id = w.kubo(PRIMARY).id().await.expect("id").id;
    let origins = alloc["origins"].to_string();
    assert!(
        origins.contains(&primary_id),
        "origins {origins} name the primary {primary_id}"
    );
    assert_eq!(alloc["name"], format!("pinwarden:{cid}"), "{alloc}");
    assert_eq!(alloc["replication_factor_min"], 2, "{alloc}");
    // Two of the peers' Kubo nodes really pin it.
    let mut pinning = 0;
    for k in CLUSTER_KUBOS {
        if w.kubo(k).verify(&cid).await == Outcome::Ok {
            pinning += 1;
        }
    }
    assert_eq!(pinning, 2);
    // The trace shows the walk that proved it.
    let trace = v["trace"].to_string();
    assert!(
        trace.contains("check-retrievable") || trace.contains("retrievable"),
        "{trace}"
    );
}

/// replication-min 3 of 3, and one peer killed as the cluster starts pinning: the cluster can
/// no longer reach replication-min (the killed peer is a `cluster_error`), the policy's second
/// attempt on the cluster is a `recover` of the same pin (never a second POST), and the round
/// ends on the next tier, a plain Kubo backup. Restarted, the peer catches up, and a later
/// round finds the cluster pin complete.
pub async fn a_cluster_peer_killed_mid_pin_ends_on_the_next_tier(slot: Arc<Mutex<Option<World>>>) {
    let mut guard = world(&slot).await;
    let w = guard.as_mut().expect("world");
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = format!(
        "{}[[node]]\nname = \"backup-2\"\nrole = \"backup\"\nurl = \"{}\"\n\n",
        w.cluster_node("cluster", 3, 3),
        w.kubo.api_url(SPARE)
    );
    let config = w.config(dir.path(), &nodes, 30_000);
    let cid = w.upload("cluster-killed", 8 << 20).await;
    w.primary.set_mode(overloaded()).await;
    let pin = {
        let (config, cid) = (config.clone(), cid.clone());
        tokio::spawn(async move {
            Pinwarden::new()
                .args(["pin", &cid, "--json", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .run_async()
                .await
        })
    };
    let alloc_url = format!("{}/allocations/{cid}", w.cluster.rest_url(0));
    let deadline = std::time::Instant::now() + ROUND;
    while w.get(&alloc_url).await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster never got the pin"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.cluster.kill(2);
    let out = tokio::time::timeout(ROUND, pin)
        .await
        .expect("the round ends")
        .expect("join");
    w.primary.set_mode(Mode::Pass).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(confirmed(&v), ["backup-2"], "{v}");
    // The second attempt recovered the cluster's pin in place (POST /pins/{cid}/recover).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another attempt on it"), "{stderr}");
    assert_eq!(v["attempts"]["cluster"], 2, "{v}");
    let trace = v["trace"].to_string();
    assert!(
        trace.contains("cluster_error") || trace.contains("pin_error"),
        "{trace}"
    );
    assert_eq!(w.kubo(SPARE).verify(&cid).await, Outcome::Ok);

    w.cluster
        .restart(2)
        .await
        .unwrap_or_else(|e| panic!("restart peer 2: {e:#}"));
    until(
        "the restarted peer catches up on the pin",
        ROUND,
        || w.cluster.logs(),
        || async { w.cluster_pinned(&cid).await == 3 },
    )
    .await;
    w.primary.set_mode(overloaded()).await;
    let v = w.pin(&config, &cid).await;
    w.primary.set_mode(Mode::Pass).await;
    assert!(confirmed(&v).contains(&"cluster".to_string()), "{v}");
}

/// The `psa` kind against two real PSA servers: IPFS Cluster's `pinsvcapi` (the request id is
/// the CID there) and a second pinwarden's PSA (real ids, bearer token). Each pin is proven by
/// the check node fetching every block from the provider's delegates.
pub async fn psa_tier_on_cluster_pinsvcapi_and_on_pinwarden(slot: Arc<Mutex<Option<World>>>) {
    let guard = world(&slot).await;
    let w = guard.as_ref().expect("world");

    // 1. IPFS Cluster's pinsvcapi.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = w.config(
        dir.path(),
        &w.psa_node("psa", &w.cluster.pinsvc_url(0), None),
        30_000,
    );
    let cid = w.upload("psa-cluster", 1 << 20).await;
    w.primary.set_mode(overloaded()).await;
    let v = w.pin(&config, &cid).await;
    w.primary.set_mode(Mode::Pass).await;
    assert_eq!(confirmed(&v), ["psa"], "{v}");
    assert!(w.cluster_pinned(&cid).await >= 1);
    assert_eq!(
        w.kubo(CHECKER).verify(&cid).await,
        Outcome::NotPinned,
        "the check node only fetched"
    );

    // 2. A second pinwarden serving the PSA, over Kubo 4.
    let (b, b_port) = second_pinwarden(w).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{b_port}");
    let config = w.config(
        dir.path(),
        &w.psa_node("psa", &url, Some(PSA_TOKEN)),
        30_000,
    );
    let cid = w.upload("psa-pinwarden", 1 << 20).await;
    w.primary.set_mode(overloaded()).await;
    let v = w.pin(&config, &cid).await;
    w.primary.set_mode(Mode::Pass).await;
    assert_eq!(confirmed(&v), ["psa"], "{v}\n{}", b.1.log_tail(40));
    assert_eq!(
        w.kubo(SPARE).verify(&cid).await,
        Outcome::Ok,
        "pinned on B's node"
    );
    let list = psa_list(w, b_port, &cid).await;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["results"][0]["status"], "pinned", "{list}");
    assert_eq!(
        list["results"][0]["pin"]["name"],
        format!("pinwarden:{cid}")
    );
    // A wrong token is the provider's 401, reported as such (no retry storm, no success).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = w.config(
        dir.path(),
        &w.psa_node("psa", &url, Some("wrong-token-0123456789")),
        30_000,
    );
    let cid = w.upload("psa-wrong-token", 64 << 10).await;
    w.primary.set_mode(overloaded()).await;
    let out = Pinwarden::new()
        .args(["pin", &cid, "--json", "--config"])
        .arg(&config)
        .run_async()
        .await;
    w.primary.set_mode(Mode::Pass).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("401"),
        "{:?}",
        out
    );
}

/// pinwarden A, with the second pinwarden's PSA as its tier, is killed -9 after its lazy round
/// made the remote request and before that request is pinned (B's node answers slowly, behind
/// a delaying proxy). Restarted, A resumes the job, finds its request by name and follows it:
/// B holds exactly one request for the CID, pinned.
pub async fn a_restart_mid_round_makes_no_second_remote_request(slot: Arc<Mutex<Option<World>>>) {
    let guard = world(&slot).await;
    let w = guard.as_ref().expect("world");
    let slow = FaultProxy::start(&w.kubo.api_url(SPARE))
        .await
        .expect("proxy");
    let (b, b_port) = second_pinwarden_over(w, &slow.url()).await;
    slow.set_mode(Mode::Delay(Duration::from_secs(3))).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{b_port}");
    w.config(
        dir.path(),
        &w.psa_node("psa", &url, Some(PSA_TOKEN)),
        60_000,
    );
    let cid = w.upload("psa-restart", 256 << 10).await;
    w.primary.set_mode(overloaded()).await;
    let mut a = Serve::config(dir.path()).start().await;
    let api = a.api();
    api.submit(&SubmitRequest {
        cid: cid.clone(),
        job_id: "enc-restart".into(),
        size_bytes: 0,
        wait: false,
        timeout_ms: None,
        notify: None,
    })
    .await
    .expect("submit");
    until(
        "A's round makes its request on B",
        ROUND,
        || a.log_tail(40),
        || async { psa_list(w, b_port, &cid).await["count"] == 1 },
    )
    .await;
    let before = psa_list(w, b_port, &cid).await;
    assert_ne!(
        before["results"][0]["status"], "pinned",
        "still in flight: {before}"
    );
    a.kill();
    a.restart();
    a.ready().await;
    let api = DaemonClient::unix(a.socket()).expect("client");
    until(
        "A's job ends pinned after the restart",
        ROUND,
        || format!("{}\n--- B ---\n{}", a.log_tail(60), b.1.log_tail(30)),
        || async {
            api.status("enc-restart")
                .await
                .is_ok_and(|j| j.state.to_string() == "pinned")
        },
    )
    .await;
    slow.set_mode(Mode::Pass).await;
    w.primary.set_mode(Mode::Pass).await;
    let after = psa_list(w, b_port, &cid).await;
    assert_eq!(after["count"], 1, "one request, never a second: {after}");
    assert_eq!(
        after["results"][0]["requestid"],
        before["results"][0]["requestid"]
    );
    assert_eq!(after["results"][0]["status"], "pinned");
    drop(b);
}

/// B's requests for `cid`, every status, as the tier's user.
async fn psa_list(w: &World, port: u16, cid: &str) -> Value {
    let reply = w
        .http
        .get(format!(
            "http://127.0.0.1:{port}/pins?cid={cid}&status=queued,pinning,pinned,failed"
        ))
        .bearer_auth(PSA_TOKEN)
        .send()
        .await
        .expect("PSA list");
    let body = reply.bytes().await.expect("body");
    serde_json::from_slice(&body).expect("PSA list JSON")
}

async fn second_pinwarden(w: &World) -> ((tempfile::TempDir, Daemon), u16) {
    second_pinwarden_over(w, &w.kubo.api_url(SPARE)).await
}

/// `pinwarden serve` B: one Kubo node (`node_url`) as its primary, the PSA on a free port for
/// one user, quick rounds.
async fn second_pinwarden_over(w: &World, node_url: &str) -> ((tempfile::TempDir, Daemon), u16) {
    let _ = w;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let tokens = dir.path().join("psa-tokens");
    std::fs::write(&tokens, format!("tier {PSA_TOKEN}\n")).expect("tokens");
    let text = format!(
        "data_dir = \"{}\"\nnode_name = \"pinning-service\"\n\n\
         [[node]]\nname = \"b-node\"\nrole = \"primary\"\nurl = \"{node_url}\"\n\n\
         [psa]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"{}\"\n\n\
         [policy]\nname = \"tank-mode\"\nparams = {{ attempts = 3, base_delay_ms = 100, \
         max_delay_ms = 200, pin_timeout_ms = 60000, stall_timeout_ms = 30000 }}\n",
        dir.path().display(),
        tokens.display()
    );
    std::fs::write(dir.path().join("pinwarden.toml"), text).expect("config");
    let daemon = Serve::config(dir.path()).start().await;
    ((dir, daemon), port)
}

/// The check of `subject` named `check` in a `doctor --json` report: (level, detail, hint).
fn doctor_check(report: &Value, subject: &str, check: &str) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["subject"] == subject && c["check"] == check)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("level"), s("detail"), s("hint"))
        })
        .collect()
}

/// `pinwarden doctor` on each kind: a cluster with its peers and their Kubo nodes, a cluster
/// that can only give status (a warning that says no round will succeed there), the cluster's
/// PSA with a check node, and a PSA token the provider refuses (a failure, exit 1).
pub async fn doctor_checks_each_kind(slot: Arc<Mutex<Option<World>>>) {
    let guard = world(&slot).await;
    let w = guard.as_ref().expect("world");
    let (b, b_port) = second_pinwarden(w).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = format!(
        "[[node]]\nname = \"bare-cluster\"\nrole = \"backup\"\napi = \"cluster\"\nurl = \"{}\"\n\n",
        w.cluster.rest_url(1)
    );
    let refused = format!(
        "[[node]]\nname = \"refused\"\nrole = \"backup\"\napi = \"psa\"\nurl = \"http://127.0.0.1:{b_port}\"\n\
         bearer_token = \"wrong-token-0123456789\"\n\n"
    );
    let nodes = format!(
        "{}{bare}{refused}{}",
        w.cluster_node("cluster", 2, 2),
        w.psa_node("psa", &w.cluster.pinsvc_url(0), None)
    );
    let config = w.config(dir.path(), &nodes, 30_000);
    let out = Pinwarden::new()
        .args(["doctor", "--json", "--config"])
        .arg(&config)
        .run_async()
        .await;
    let report: Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the refused token fails: {report:#}"
    );
    let one = |subject: &str, check: &str| {
        let found = doctor_check(&report, subject, check);
        assert!(!found.is_empty(), "no {subject} {check} in {report:#}");
        found
    };
    let (level, detail, _) = one("cluster", "reachable").remove(0);
    assert_eq!(level, "ok", "{detail}");
    assert!(
        detail.contains("IPFS Cluster") && detail.contains("3 peers"),
        "{detail}"
    );
    let walks = one("cluster", "proof");
    assert_eq!(walks.len(), 3, "one check per peer Kubo: {walks:?}");
    assert!(walks.iter().all(|(l, _, _)| l == "ok"), "{walks:?}");
    let (level, detail, hint) = one("bare-cluster", "proof").remove(0);
    assert_eq!(level, "warn");
    assert!(
        detail.contains("status only") && hint.contains("peer_kubo_urls"),
        "{detail} / {hint}"
    );
    let (level, detail, _) = one("psa", "reachable").remove(0);
    assert_eq!(level, "ok", "{detail}");
    assert!(detail.contains("PSA endpoint answers"), "{detail}");
    let (level, detail, _) = one("psa", "proof").remove(0);
    assert_eq!(level, "ok", "{detail}");
    let (level, detail, hint) = one("refused", "auth").remove(0);
    assert_eq!(level, "fail", "{detail}");
    assert!(
        detail.contains("401") && hint.contains("bearer_token"),
        "{detail} / {hint}"
    );
    drop(b);
}

/// `fallback migrate --to NODE` with the cluster tier as the permanent node: the journal's CID,
/// held by the local node only, lands on replication-min peers (fetched from the local node
/// through origins), is proven as a cluster pin, and is recorded as migrated to that node.
pub async fn fallback_migrate_to_the_cluster(slot: Arc<Mutex<Option<World>>>) {
    use pinwarden::journal::{ContentKind, Entry, Journal, journal_path, migrated_path};
    let guard = world(&slot).await;
    let w = guard.as_ref().expect("world");
    let dir = tempfile::tempdir().expect("tempdir");
    let local = format!(
        "[[node]]\nname = \"local\"\nrole = \"local\"\nurl = \"{}\"\n\n",
        w.kubo.api_url(SPARE)
    );
    let nodes = format!("{}{local}", w.cluster_node("vault", 2, 2));
    let config = w.config(dir.path(), &nodes, 30_000);
    let (_tmp, video) = make_hls_dir("migrate-to-cluster", 1 << 20, 4).expect("hls dir");
    let cid = w
        .kubo(SPARE)
        .add_dir(&video)
        .await
        .expect("upload to the local node");
    let journal = Journal::open(journal_path(dir.path())).expect("journal");
    journal
        .append(&Entry::new(
            cid.as_str(),
            "job-migrate",
            1 << 20,
            ContentKind::Directory,
            3,
            "encoder-node-1",
            std::time::SystemTime::now(),
        ))
        .expect("append");
    let out = Pinwarden::new()
        .args(["fallback", "migrate", "--to", "vault", "--json", "--config"])
        .arg(&config)
        .run_async()
        .await;
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&report).expect("report JSON");
    assert_eq!(v["migrated"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        w.cluster_pinned(&cid).await,
        2,
        "replication-min peers pinned"
    );
    let records =
        std::fs::read_to_string(migrated_path(&journal_path(dir.path()))).expect("records");
    assert!(
        records.contains(&cid) && records.contains("vault"),
        "{records}"
    );
}
