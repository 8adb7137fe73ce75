//! `pinwarden add` and `pinwarden pin` end to end: the real binary, real Kubo daemons on
//! loopback (the shared cluster's mesh: primary, backup-1, backup-2), a fault-injecting proxy
//! in front of each node's API. Each flow uploads fresh content, so no flow sees another's
//! pins, nor does any other module's test.
//!
//! The seed's five flows, quorum 2-of-3, the single-backup policy, a custom policy file and bad
//! input. Backoff and timeouts are shortened with `--param` so the suite stays fast.

use crate::support::cli::{Pinwarden, stdout_json};
use crate::support::nodes::{MESH, shared_cluster, step};
use crate::support::policies::GUEST_MODULES;
use crate::support::{FaultProxy, IpfsCluster, Mode, make_hls_dir};
use pinwarden::Outcome;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Short budgets: three attempts, 100 ms base backoff, and a stall timeout above a whole pin
/// of a few MB (set when js-ipfs reported no pin progress; harmless on Kubo, which does). Each flow is one job's sequence, while the
/// flows share a data dir (and so a node-health ledger): breakers and hedging, which act across
/// jobs, are off here and tested in `outage`.
const FAST: &[&str] = &[
    "--param",
    "breaker_failures=0",
    "--param",
    "hedge_after_ms=0",
    "--param",
    "attempts=3",
    "--param",
    "base_delay_ms=100",
    "--param",
    "max_delay_ms=400",
    "--param",
    "pin_timeout_ms=6000",
    "--param",
    "stall_timeout_ms=6000",
];

struct World {
    /// Nodes [`MESH`] of the shared cluster: primary, backup-1, backup-2.
    cluster: Arc<IpfsCluster>,
    /// One proxy per node: primary, backup-1, backup-2.
    proxies: Vec<FaultProxy>,
    data_dir: tempfile::TempDir,
}

impl World {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IPFS_PRIMARY_API", self.proxies[0].url()),
            (
                "IPFS_BACKUP_APIS",
                format!("{},{}", self.proxies[1].url(), self.proxies[2].url()),
            ),
            (
                "PINWARDEN_DATA_DIR",
                self.data_dir.path().display().to_string(),
            ),
        ]
    }

    async fn pinwarden(&self, args: &[&str], extra_env: &[(&str, String)]) -> Output {
        Pinwarden::new()
            .args(args)
            .current_dir(self.data_dir.path())
            .envs(self.env())
            .envs(extra_env.iter().cloned())
            .run_async()
            .await
    }

    async fn set_modes(&self, modes: [Mode; 3]) {
        for (proxy, mode) in self.proxies.iter().zip(modes) {
            proxy.set_mode(mode).await;
            proxy.reset_counts();
        }
    }

    /// Uploads fresh content through the (passing) primary proxy; returns its CID.
    async fn upload(&self, name: &str) -> String {
        self.set_modes([Mode::Pass, Mode::Pass, Mode::Pass]).await;
        let (_tmp, dir) = make_hls_dir(name, 3 << 20, 6).expect("hls dir");
        let d = dir.display().to_string();
        let out = self.pinwarden(&["add", &d], &[]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "add failed: {stderr}");
        let cid = stdout.trim().to_string();
        assert!(!cid.is_empty() && !cid.contains(' '), "{stdout}");
        cid
    }

    fn direct(&self, i: usize) -> KuboClient {
        KuboClient::new(format!("node-{i}"), &self.cluster.api_url(MESH[i]), None).expect("client")
    }

    /// Asks the node itself (not through its proxy) whether the CID is pinned.
    async fn pinned_on(&self, i: usize, cid: &str) -> bool {
        self.direct(i).verify(cid).await == Outcome::Ok
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

fn pin_args<'a>(cid: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["pin", cid, "--json"];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_flow_on_real_nodes() {
    let t0 = Instant::now();
    // Production backups peer with the supernode; so do ours (the shared mesh).
    let cluster = shared_cluster().await;
    step(t0, "shared Kubo nodes up");
    let mut proxies = Vec::new();
    for i in MESH {
        proxies.push(FaultProxy::start(&cluster.api_url(i)).await.expect("proxy"));
    }
    let world = World {
        cluster,
        proxies,
        data_dir: tempfile::tempdir().expect("tempdir"),
    };

    happy_path(&world).await;
    step(t0, "happy path");
    primary_recovers_at_attempt_three(&world).await;
    step(t0, "primary recovers");
    primary_lies(&world).await;
    step(t0, "primary lies");
    primary_offline(&world).await;
    step(t0, "primary offline");
    everything_fails(&world).await;
    step(t0, "everything fails");
    quorum_two_of_three(&world).await;
    step(t0, "quorum 2 of 3");
    single_backup_policy(&world).await;
    step(t0, "single-backup");
    custom_policy_file(&world).await;
    step(t0, "custom policy");
    bad_input(&world).await;
    step(t0, "bad input");
    add_and_pin(&world).await;
    step(t0, "add --pin");
}

async fn happy_path(w: &World) {
    let cid = w.upload("happy").await;
    let out = w
        .pinwarden(&pin_args(&cid, &["--job-id", "job-happy"]), &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["status"], "pinned");
    assert_eq!(v["job_id"], "job-happy");
    assert_eq!(confirmed(&v), ["primary"]);
    assert_eq!(v["attempts"]["primary"], 1);
    assert!(v["trace"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(w.pinned_on(0, &cid).await);
    assert_eq!(
        w.proxies[1].count("/api/v0/pin/add"),
        0,
        "backups untouched"
    );
    // Progress went to stderr, the result alone to stdout.
    let (_, stderr) = text(&out);
    assert!(stderr.contains("pin attempt 1/3"), "{stderr}");
}

async fn primary_recovers_at_attempt_three(w: &World) {
    let cid = w.upload("recovers").await;
    // Overloaded: every request hangs past the pin timeout, until two pins have timed out.
    w.proxies[0]
        .set_mode(Mode::Delay(Duration::from_secs(30)))
        .await;
    let proxy = &w.proxies[0];
    let args = pin_args(
        &cid,
        &[
            "--param",
            "pin_timeout_ms=1500",
            "--param",
            "stall_timeout_ms=1500",
        ],
    );
    let run = w.pinwarden(&args, &[]);
    // Each attempt starts with `pin/ls` (a CID the node already pins is not pinned again),
    // which the delay holds past the pin timeout.
    let asked = proxy.count("/api/v0/pin/ls");
    let heal = async {
        for _ in 0..600 {
            if proxy.count("/api/v0/pin/ls") >= asked + 2 {
                // The second attempt is in its timeout now; heal before the third.
                tokio::time::sleep(Duration::from_millis(300)).await;
                proxy.set_mode(Mode::Pass).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (out, ()) = tokio::join!(run, heal);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(confirmed(&v), ["primary"]);
    assert_eq!(v["attempts"]["primary"], 3, "{v}");
    let trace = v["trace"].to_string();
    assert!(trace.contains("timeout"), "{trace}");
    assert!(w.pinned_on(0, &cid).await);
}

async fn primary_lies(w: &World) {
    let cid = w.upload("lies").await;
    w.set_modes([Mode::LiePinOk, Mode::Pass, Mode::Pass]).await;
    let out = w.pinwarden(&pin_args(&cid, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(confirmed(&v), ["backup-1"]);
    assert_eq!(v["attempts"]["primary"], 3);
    assert!(v["trace"].to_string().contains("NOT PINNED"));
    assert!(
        !w.pinned_on(0, &cid).await,
        "the primary really never pinned"
    );
    assert!(
        w.pinned_on(1, &cid).await,
        "backup-1 fetched over bitswap and pinned"
    );
}

async fn primary_offline(w: &World) {
    let cid = w.upload("offline").await;
    // The primary's API dies right after the upload (its swarm still serves blocks).
    w.set_modes([Mode::Refuse, Mode::Pass, Mode::Pass]).await;
    let out = w.pinwarden(&pin_args(&cid, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(confirmed(&v), ["backup-1"]);
    assert!(v["trace"].to_string().contains("unreachable"));
    assert!(w.pinned_on(1, &cid).await);
}

async fn everything_fails(w: &World) {
    let cid = w.upload("fails").await;
    w.set_modes([Mode::Refuse, Mode::Http500, Mode::Http500])
        .await;
    let out = w.pinwarden(&pin_args(&cid, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["status"], "failed");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("CRITICAL"), "{reason}");
    assert_eq!(v["attempts"]["backup-2"], 3);
    // Retryable: once the infrastructure is back, the same command pins it.
    w.set_modes([Mode::Pass, Mode::Pass, Mode::Pass]).await;
    let out = w.pinwarden(&pin_args(&cid, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

async fn quorum_two_of_three(w: &World) {
    let cid = w.upload("quorum").await;
    w.set_modes([Mode::Pass, Mode::Refuse, Mode::Pass]).await;
    let out = w
        .pinwarden(&pin_args(&cid, &["--param", "quorum=2"]), &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(confirmed(&v), ["backup-2", "primary"]);
    assert!(w.pinned_on(0, &cid).await && w.pinned_on(2, &cid).await);
}

async fn single_backup_policy(w: &World) {
    let cid = w.upload("single").await;
    w.set_modes([Mode::LiePinOk, Mode::Http500, Mode::Pass])
        .await;
    let policy = [("PINWARDEN_POLICY", "single-backup".to_string())];
    let out = w.pinwarden(&pin_args(&cid, &[]), &policy).await;
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["policy"], "single-backup");
    assert_eq!(
        w.proxies[2].count("/api/v0/pin/add"),
        0,
        "never past the single backup"
    );
    // tank-mode, with the same faults, goes on to backup-2.
    w.set_modes([Mode::LiePinOk, Mode::Http500, Mode::Pass])
        .await;
    let out = w.pinwarden(&pin_args(&cid, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(confirmed(&stdout_json(&out)), ["backup-2"]);
}

async fn custom_policy_file(w: &World) {
    // The worked example's policy, encoded from the module the build script compiled.
    let module = Path::new(GUEST_MODULES).join("backups_first.wasm");
    let policy = w.data_dir.path().join("backups-first.wasm");
    let (m, p) = (module.display().to_string(), policy.display().to_string());
    let out = w.pinwarden(&["policy", "encode", &m, "-o", &p], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let cid = w.upload("custom").await;
    let env = [("PINWARDEN_POLICY", p.clone())];
    let out = w.pinwarden(&pin_args(&cid, &[]), &env).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["policy"], "backups-first");
    assert_eq!(confirmed(&v), ["backup-1"]);
    assert_eq!(
        w.proxies[0].count("/api/v0/pin/add"),
        0,
        "the primary was left alone"
    );
}

/// Arguments, extra environment, what stderr must say.
type BadCase<'a> = (Vec<&'a str>, Vec<(&'a str, String)>, &'a str);

async fn bad_input(w: &World) {
    w.set_modes([Mode::Pass, Mode::Pass, Mode::Pass]).await;
    let cases: Vec<BadCase> = vec![
        (vec!["pin", "not-a-cid"], vec![], "invalid CID 'not-a-cid'"),
        (vec!["pin", "QmTooShort"], vec![], "invalid CID"),
        (
            vec![
                "pin",
                "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
                "--param",
                "attempts=0",
            ],
            vec![],
            "'attempts'",
        ),
        (
            vec![
                "pin",
                "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            ],
            vec![("ENABLE_LOCAL_FALLBACK", "maybe".to_string())],
            "ENABLE_LOCAL_FALLBACK",
        ),
        (
            vec![
                "pin",
                "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            ],
            vec![("IPFS_BACKUP_APIS", "ftp://nope".to_string())],
            "backup-1",
        ),
        (vec!["add", "/nonexistent-dir"], vec![], "not a directory"),
    ];
    for (args, env, needle) in cases {
        let out = w.pinwarden(&args, &env).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    for proxy in &w.proxies {
        assert!(
            proxy.counts().is_empty(),
            "bad input never reaches a node: {:?}",
            proxy.counts()
        );
    }
}

async fn add_and_pin(w: &World) {
    w.set_modes([Mode::Pass, Mode::Pass, Mode::Pass]).await;
    let (_tmp, dir) = make_hls_dir("addpin", 1 << 20, 3).expect("hls dir");
    let d = dir.display().to_string();
    let mut args = vec!["add", &d, "--pin", "--json", "--job-id", "enc-42"];
    args.extend_from_slice(FAST);
    let out = w.pinwarden(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["job_id"], "enc-42");
    let cid = v["cid"].as_str().expect("cid").to_string();
    assert!(w.pinned_on(0, &cid).await);
    assert_eq!(
        w.direct(0)
            .object_type(&cid)
            .await
            .map(|k| k.as_str().to_string()),
        Ok("directory".into())
    );
}
