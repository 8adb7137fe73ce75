//! pinwarden as a pinning service: the Pinning Services API on a real `pinwarden serve`, over
//! real Kubo daemons on loopback.
//!
//! One dedicated cluster for the module: node 0 is pinwarden's primary, node 1 its backup,
//! node 2 a PSA client's own Kubo node, which holds content no other node has until pinwarden
//! fetches it through the request's `origins`. Node 2 is never connected to the others by the
//! test: whatever reaches node 0 came by the origins hint (or Kubo's dial of the delegates).
//!
//! * `requests_end_to_end`: auth (PSA tokens, the `/v1` token refused, the PSA token refused on
//!   `/v1`), a pin fetched through origins and verified, users kept apart, every filter and
//!   `before` paging, replace, delete unpinning the node, and a delete that keeps content
//!   another job needs;
//! * `kill_after_202_and_replace_racing_delete`: a 202 survives kill -9; a replace and a delete
//!   of one request at once leave exactly one outcome;
//! * `kubo_pin_remote`: Kubo's own client, `ipfs pin remote ...`, against pinwarden;
//! * `the_guides_node_example_runs`: the Node.js example of docs/psa.md, with the generated PSA
//!   client;
//! * `compliance_suite_passes`: the official PSA compliance suite, 9 of 9, as two users at once.

use crate::support::config;
use crate::support::daemon::{Daemon, Serve};
use crate::support::nodes::{client, ghost_cid, required_cluster, upload_tiny};
use pinwarden::Outcome;
use pinwarden::node::Node;
use pinwarden_testkit::IpfsCluster;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef00";
const ADMIN: &str = "admin-token-0123456789abcdef";

/// Long enough for a small pin over loopback, bitswap included.
const PIN_LIMIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The daemon's config in `dir`: nodes 0 (primary) and 1 (backup), the PSA on `port` with
/// users alice and bob.
fn write_config(dir: &Path, cluster: &IpfsCluster, port: u16) {
    let tokens = dir.join("psa-tokens");
    std::fs::write(&tokens, format!("# users\nalice {ALICE}\nbob {BOB}\n")).expect("tokens");
    let rest = format!(
        "[psa]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"{}\"\n",
        tokens.display()
    );
    config::write(
        dir,
        &[
            ("primary", "primary", &cluster.api_url(0)),
            ("backup-1", "backup", &cluster.api_url(1)),
        ],
        &rest,
    );
}

async fn start(dir: &Path, tcp: u16) -> Daemon {
    Serve::config(dir)
        .args(["--listen", &format!("127.0.0.1:{tcp}")])
        .env("PINWARDEN_TOKEN", ADMIN)
        .start()
        .await
}

/// The PSA of one daemon, as one user.
#[derive(Clone)]
struct Psa {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Psa {
    fn new(port: u16, token: Option<&str>) -> Psa {
        Psa {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: format!("http://127.0.0.1:{port}"),
            token: token.map(str::to_string),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let reply = req.send().await.expect("PSA request");
        let status = reply.status().as_u16();
        let text = reply.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn add(&self, pin: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/pins", Some(pin)).await
    }

    async fn get(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/pins/{id}"), None)
            .await
    }

    async fn list(&self, query: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/pins?{query}"), None)
            .await
    }

    async fn delete(&self, id: &str) -> u16 {
        self.call(reqwest::Method::DELETE, &format!("/pins/{id}"), None)
            .await
            .0
    }

    async fn replace(&self, id: &str, pin: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, &format!("/pins/{id}"), Some(pin))
            .await
    }

    /// Waits (bounded) until request `id` is `status`; its answer then. Fails with the last
    /// answer and the daemon's log.
    async fn until_status(&self, daemon: &Daemon, id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + PIN_LIMIT;
        loop {
            let (_, body) = self.get(id).await;
            if body["status"] == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "request {id} is not {status} after {PIN_LIMIT:?}: {body}\n{}",
                daemon.log_tail(80)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The spec's error body: `{"error": {"reason": ..., "details": ...}}`.
fn assert_failure(body: &Value, reason: &str) {
    assert_eq!(body["error"]["reason"], reason, "{body}");
    assert!(body["error"]["details"].is_string(), "{body}");
}

/// Node `i`'s swarm addresses (each ending in /p2p/<peer id>).
async fn addrs(cluster: &IpfsCluster, i: usize) -> Vec<String> {
    client(cluster, i, "n")
        .swarm_addrs()
        .await
        .expect("swarm addrs")
}

fn ids(list: &Value) -> Vec<String> {
    list["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["requestid"].as_str().expect("requestid").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_end_to_end() {
    let cluster = required_cluster(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, tcp) = (free_port(), free_port());
    write_config(dir.path(), &cluster, port);
    let daemon = start(dir.path(), tcp).await;
    let alice = Psa::new(port, Some(ALICE));
    let bob = Psa::new(port, Some(BOB));

    // Access: no token, a wrong one, the /v1 admin token: 401 in the spec's body; a PSA token
    // does not open /v1.
    for who in [None, Some("wrong-token-0123456789"), Some(ADMIN)] {
        let (status, body) = Psa::new(port, who).list("").await;
        assert_eq!(status, 401, "{who:?}: {body}");
        assert_failure(&body, "UNAUTHORIZED");
    }
    let v1 = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{tcp}/v1/health"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("v1");
    assert_eq!(v1.status().as_u16(), 401, "a PSA token on /v1");
    let (status, body) = alice.call(reqwest::Method::GET, "/nowhere", None).await;
    assert_eq!(status, 404);
    assert_failure(&body, "NOT_FOUND");
    let (status, body) = alice.add(json!({"cid": "not-a-cid"})).await;
    assert_eq!(status, 400);
    assert_failure(&body, "BAD_REQUEST");

    // Content only on the client's node 2, pinned through origins: no upload to pinwarden.
    let node0 = client(&cluster, 0, "primary");
    let node2 = client(&cluster, 2, "client");
    let cid = upload_tiny(&node2, "psa-origins").await;
    let origins = addrs(&cluster, 2).await;
    let (status, created) = alice
        .add(json!({"cid": cid, "name": "Video.m3u8", "origins": origins, "meta": {"app": "enc"}}))
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["requestid"]
        .as_str()
        .expect("requestid")
        .to_string();
    assert!(
        ["queued", "pinning", "pinned"].contains(&created["status"].as_str().unwrap_or("")),
        "{created}"
    );
    let primary_addrs = addrs(&cluster, 0).await;
    let delegates: Vec<String> =
        serde_json::from_value(created["delegates"].clone()).expect("delegates");
    assert!(
        !delegates.is_empty() && delegates.iter().all(|d| d.contains("/p2p/")),
        "{delegates:?}"
    );
    assert!(
        delegates.iter().any(|d| primary_addrs.contains(d)),
        "{delegates:?} {primary_addrs:?}"
    );
    let pinned = alice.until_status(&daemon, &id, "pinned").await;
    assert_eq!(pinned["info"]["verified_on"], "primary", "{pinned}");
    assert_eq!(pinned["pin"]["meta"]["app"], "enc");
    assert_eq!(
        pinned["created"], created["created"],
        "created is immutable"
    );
    assert_eq!(
        node0.verify(&cid).await,
        Outcome::Ok,
        "Kubo itself lists the pin"
    );

    // Users apart: bob sees nothing of alice's.
    let (status, body) = bob.get(&id).await;
    assert_eq!(status, 404, "{body}");
    assert_failure(&body, "NOT_FOUND");
    assert_eq!(bob.delete(&id).await, 404);
    assert_eq!(
        bob.list("status=queued,pinning,pinned,failed").await.1["count"],
        0
    );
    assert_eq!(
        alice.list("").await.1["count"],
        1,
        "the default filter: pinned"
    );

    // Filters, on requests for content nobody has (they stay queued or pinning).
    let mut made = Vec::new();
    for i in 0..5 {
        let meta = if i == 3 {
            json!({"app": "enc", "tier": "hot"})
        } else {
            json!({"app": "enc"})
        };
        let (status, body) = alice
            .add(json!({"cid": ghost_cid(), "name": format!("Clip-{i}.ts"), "meta": meta}))
            .await;
        assert_eq!(status, 202, "{body}");
        made.push(body);
    }
    let open = "status=queued,pinning,failed";
    let count = |q: String| {
        let alice = alice.clone();
        async move {
            let (status, body) = alice.list(&q).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["count"].as_u64().expect("count")
        }
    };
    assert_eq!(count(open.to_string()).await, 5);
    assert_eq!(count(format!("{open}&name=Clip-2.ts")).await, 1);
    assert_eq!(
        count(format!("{open}&name=clip-2.TS&match=iexact")).await,
        1
    );
    assert_eq!(count(format!("{open}&name=lip-&match=partial")).await, 5);
    assert_eq!(count(format!("{open}&name=LIP-&match=partial")).await, 0);
    assert_eq!(count(format!("{open}&name=LIP-&match=ipartial")).await, 5);
    assert_eq!(
        count(format!("{open}&meta=%7B%22tier%22%3A%22hot%22%7D")).await,
        1
    );
    let ghost = made[1]["pin"]["cid"].as_str().expect("cid");
    assert_eq!(count(format!("{open}&cid={ghost},{cid}")).await, 1);
    assert_eq!(
        count(format!("status=pinned,queued,pinning&cid={ghost},{cid}")).await,
        2
    );
    // Pages of two, newest first, by `before`: every request once.
    let mut seen: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..10 {
        let q = match &before {
            Some(b) => format!("{open}&limit=2&before={}", urlencode(b)),
            None => format!("{open}&limit=2"),
        };
        let (_, page) = alice.list(&q).await;
        let page_ids = ids(&page);
        let Some(last) = page["results"].as_array().and_then(|r| r.last()) else {
            break;
        };
        before = last["created"].as_str().map(str::to_string);
        seen.extend(page_ids);
    }
    let expected: Vec<String> = made
        .iter()
        .rev()
        .map(|m| m["requestid"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(seen, expected);
    let after = made[2]["created"].as_str().expect("created");
    assert_eq!(count(format!("{open}&after={}", urlencode(after))).await, 2);
    let (status, body) = alice.list("limit=1001").await;
    assert_eq!(status, 400);
    assert_failure(&body, "BAD_REQUEST");

    // Replace: a new request id, the old one gone, one step.
    let old = made[0]["requestid"].as_str().expect("id").to_string();
    let (status, replaced) = alice
        .replace(&old, json!({"cid": ghost_cid(), "name": "Clip-0b.ts"}))
        .await;
    assert_eq!(status, 202, "{replaced}");
    assert_ne!(replaced["requestid"], old);
    assert_eq!(alice.get(&old).await.0, 404);
    assert_eq!(count(open.to_string()).await, 5);
    assert_eq!(
        alice
            .replace("no-such-request", json!({"cid": cid}))
            .await
            .0,
        404
    );

    // Delete keeps content that a /v1 job still needs...
    let (status, again) = alice.add(json!({"cid": cid})).await;
    assert_eq!(status, 202);
    let shared = again["requestid"].as_str().expect("id").to_string();
    alice.until_status(&daemon, &shared, "pinned").await;
    let client = daemon.api();
    let submitted = client
        .submit(&pinwarden::daemon::wire::SubmitRequest {
            cid: cid.clone(),
            job_id: "encoder-job-1".into(),
            size_bytes: 0,
            wait: false,
            timeout_ms: None,
            notify: None,
        })
        .await;
    assert!(submitted.is_ok(), "{submitted:?}");
    assert_eq!(alice.delete(&id).await, 202);
    assert_eq!(alice.delete(&shared).await, 202);
    assert_eq!(alice.get(&id).await.0, 404);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node0.verify(&cid).await,
        Outcome::Ok,
        "the /v1 job still holds it"
    );

    // ...and unpins content nobody needs any more, on the node that had pinned it.
    let lonely = upload_tiny(&node2, "psa-lonely").await;
    let (_, body) = alice.add(json!({"cid": lonely, "origins": origins})).await;
    let lonely_id = body["requestid"].as_str().expect("id").to_string();
    alice.until_status(&daemon, &lonely_id, "pinned").await;
    assert_eq!(node0.verify(&lonely).await, Outcome::Ok);
    assert_eq!(alice.delete(&lonely_id).await, 202);
    daemon
        .wait_until(
            "the deleted request's content is unpinned",
            PIN_LIMIT,
            || {
                let node0 = &node0;
                let lonely = &lonely;
                async move { node0.verify(lonely).await == Outcome::NotPinned }
            },
        )
        .await;
}

/// A timestamp in a query string.
fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_202_and_replace_racing_delete() {
    let cluster = required_cluster(2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, tcp) = (free_port(), free_port());
    write_config(dir.path(), &cluster, port);
    let mut daemon = start(dir.path(), tcp).await;
    let alice = Psa::new(port, Some(ALICE));

    // Acknowledged, then SIGKILL at once: the request is there after the restart.
    let (status, body) = alice
        .add(json!({"cid": ghost_cid(), "name": "durable"}))
        .await;
    assert_eq!(status, 202);
    let id = body["requestid"].as_str().expect("id").to_string();
    daemon.kill();
    daemon.restart();
    daemon.ready().await;
    // Ready on its socket; the PSA listener was bound before either served.
    let found = alice.get(&id).await;
    assert_eq!(found.0, 200, "{}", found.1);
    assert_eq!(found.1["pin"]["name"], "durable");

    // A replace and a delete of the same request at once: one of them wins, whole.
    for round in 0..20 {
        let (_, body) = alice.add(json!({"cid": ghost_cid()})).await;
        let id = body["requestid"].as_str().expect("id").to_string();
        let (a, b) = (alice.clone(), alice.clone());
        let (id_a, id_b) = (id.clone(), id.clone());
        let (replaced, deleted) = tokio::join!(
            async move {
                a.replace(&id_a, json!({"cid": ghost_cid(), "name": "new"}))
                    .await
            },
            async move { b.delete(&id_b).await }
        );
        assert_eq!(
            alice.get(&id).await.0,
            404,
            "round {round}: the old request is gone"
        );
        match (replaced.0, deleted) {
            (202, 404) => {
                let new = replaced.1["requestid"].as_str().expect("id");
                assert_eq!(
                    alice.get(new).await.0,
                    200,
                    "round {round}: the replacement exists"
                );
            }
            (404, 202) => {}
            other => panic!("round {round}: replace and delete both answered {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_pin_remote() {
    let cluster = required_cluster(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, tcp) = (free_port(), free_port());
    write_config(dir.path(), &cluster, port);
    let daemon = start(dir.path(), tcp).await;
    let node0 = client(&cluster, 0, "primary");
    let node2 = client(&cluster, 2, "client");
    let ipfs = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut cmd = tokio::process::Command::from(cluster.cli(2));
        cmd.args(&args).kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(PIN_LIMIT, cmd.output())
                .await
                .unwrap_or_else(|_| panic!("ipfs {args:?} did not return within {PIN_LIMIT:?}"))
                .expect("run ipfs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let (ok, out) = ipfs(&[
        "pin",
        "remote",
        "service",
        "add",
        "pinwarden",
        &endpoint,
        ALICE,
    ])
    .await;
    assert!(ok, "service add: {out}");

    // Blocking: returns once pinwarden reports pinned (verified on its primary).
    let cid = upload_tiny(&node2, "kubo-remote").await;
    let (ok, out) = ipfs(&[
        "pin",
        "remote",
        "add",
        "--service=pinwarden",
        "--name=video-1",
        &cid,
    ])
    .await;
    assert!(ok, "pin remote add: {out}\n{}", daemon.log_tail(60));
    assert!(out.contains("pinned"), "{out}");
    assert_eq!(
        node0.verify(&cid).await,
        Outcome::Ok,
        "pinned on pinwarden's node"
    );

    // --background: returns queued at once; pinned soon after.
    let later = upload_tiny(&node2, "kubo-remote-bg").await;
    let (ok, out) = ipfs(&[
        "pin",
        "remote",
        "add",
        "--service=pinwarden",
        "--name=video-2",
        "--background",
        &later,
    ])
    .await;
    assert!(ok, "pin remote add --background: {out}");
    daemon
        .wait_until("the background pin is pinned", PIN_LIMIT, || {
            let node0 = &node0;
            let later = &later;
            async move { node0.verify(later).await == Outcome::Ok }
        })
        .await;

    // ls with filters.
    let (ok, out) = ipfs(&[
        "pin",
        "remote",
        "ls",
        "--service=pinwarden",
        "--name=video-2",
    ])
    .await;
    assert!(
        ok && out.contains(&later) && !out.contains(&cid),
        "ls --name: {out}"
    );
    let (ok, out) = ipfs(&[
        "pin",
        "remote",
        "ls",
        "--service=pinwarden",
        "--status=pinned",
        &format!("--cid={cid}"),
    ])
    .await;
    assert!(
        ok && out.contains(&cid) && !out.contains(&later),
        "ls --cid: {out}"
    );
    let (ok, out) = ipfs(&[
        "pin",
        "remote",
        "ls",
        "--service=pinwarden",
        "--status=queued,pinning,failed",
    ])
    .await;
    assert!(ok && !out.contains(&cid), "nothing left open: {out}");

    // service ls --stat counts them.
    let (ok, out) = ipfs(&["pin", "remote", "service", "ls", "--stat"]).await;
    assert!(ok, "service ls --stat: {out}");
    assert!(
        // Kubo prints queued/pinning/pinned/failed.
        out.contains("pinwarden") && out.contains("0/0/2/0"),
        "{out}"
    );

    // rm: the request goes, and pinwarden unpins its node.
    let (ok, out) = ipfs(&[
        "pin",
        "remote",
        "rm",
        "--service=pinwarden",
        &format!("--cid={cid}"),
        "--force",
    ])
    .await;
    assert!(ok, "pin remote rm: {out}");
    let (_, out) = ipfs(&["pin", "remote", "ls", "--service=pinwarden"]).await;
    assert!(!out.contains(&cid) && out.contains(&later), "{out}");
    daemon
        .wait_until(
            "the removed pin is unpinned on pinwarden's node",
            PIN_LIMIT,
            || {
                let node0 = &node0;
                let cid = &cid;
                async move { node0.verify(cid).await == Outcome::NotPinned }
            },
        )
        .await;
}

/// The guide's Node.js example (docs/psa.md), as `tests/psa-compliance/client-example.mjs`
/// runs it with the spec authors' generated client: submit with origins and meta, poll until
/// pinned, list the job's open requests. Content only on the client's node 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_node_example_runs() {
    let cluster = required_cluster(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, tcp) = (free_port(), free_port());
    write_config(dir.path(), &cluster, port);
    let daemon = start(dir.path(), tcp).await;
    let cid = upload_tiny(&client(&cluster, 2, "client"), "psa-node-example").await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root.join("tests/psa-compliance/client-example.mjs"))
        .args([&format!("http://127.0.0.1:{port}"), ALICE, &cid, "job-7"])
        .args(addrs(&cluster, 2).await)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the example ends within its own 60 s")
        .expect("run node (scripts/setup.sh installs the client with the compliance suite)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example: {}\n{text}{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        daemon.log_tail(60)
    );
    let result: Value = serde_json::from_str(text.trim()).expect("the example prints JSON");
    let id = result["requestid"].as_str().expect("requestid");
    assert_eq!(result["pinned"]["status"], "pinned", "{result}");
    assert_eq!(result["pinned"]["pin"]["name"], "video-job-7", "{result}");
    assert_eq!(
        result["pinned"]["pin"]["meta"]["job_id"], "job-7",
        "{result}"
    );
    assert_eq!(result["open"], 0, "{result}");
    // The example's status is the daemon's: the same request, pinned, seen without the client.
    let (status, body) = Psa::new(port, Some(ALICE)).get(id).await;
    assert_eq!((status, &body["status"]), (200, &json!("pinned")), "{body}");
    assert_eq!(
        client(&cluster, 0, "primary").verify(&cid).await,
        Outcome::Ok,
        "the primary pins {cid}"
    );
}

/// The official compliance suite (`scripts/psa-compliance.sh`, which runs
/// @ipfs-shipyard/pinning-service-compliance 1.8.1 offline against the frozen spec): 9 of 9
/// checks, as two users at once, so one user's requests showing up in the other's listings or
/// counts fails both. The suite's pins are inline (identity) CIDs, so the shared cluster serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_suite_passes() {
    let cluster = crate::support::nodes::shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, tcp) = (free_port(), free_port());
    write_config(dir.path(), &cluster, port);
    let daemon = start(dir.path(), tcp).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = dir.path().join("compliance-reports");
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(root.join("scripts/psa-compliance.sh"))
        .args([&format!("http://127.0.0.1:{port}"), ALICE, BOB])
        .env("PSA_COMPLIANCE_OUT", &out_dir)
        .env("PSA_COMPLIANCE_TIMEOUT", "240")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the compliance suite ends within its own timeout")
        .expect("run scripts/psa-compliance.sh (needs bash and node; scripts/setup.sh installs the suite)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = |user: &str| {
        std::fs::read_dir(out_dir.join(user))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        out.status.success() && text.contains("psa-compliance: 18 passed, 0 failed"),
        "compliance suite: {}\n{text}\n--- first user's report ---\n{}\n--- daemon ---\n{}",
        out.status,
        reports("first"),
        daemon.log_tail(60)
    );
    // The suite deletes what it made: neither user has a request left in any state.
    for token in [ALICE, BOB] {
        let (status, body) = Psa::new(port, Some(token))
            .list("status=queued,pinning,pinned,failed")
            .await;
        assert_eq!((status, &body["count"]), (200, &json!(0)), "{body}");
    }
}
