//! Real-size content on real Kubo nodes: an HLS rendition set of 256 MiB (1,000+ blocks)
//! pinned on a backup that fetches it over bitswap from the primary, behind a proxy adding 30 ms
//! to every request, with the built-in tank-mode policy and its default parameters.
//!
//! The primary is a supernode that accepts `pin/add` and never finishes (proxy mode
//! `StallMidStream`) but serves its blocks: the hedge starts the backup after 10 s. What each
//! part guards:
//! - a pin over bitswap of the whole set completes (js-ipfs 0.66 stopped after 200–250 MB);
//! - every attempt on the backup starts with a provider hint, and each hint after the first
//!   replaces the connection (`swarm/disconnect`, then `swarm/connect`);
//! - the retrievability check is one offline `refs` walk, not a call per block (and no fetch).
//!
//! Cost, on the 2-core machines here: about 30 s on Kubo (10 s of hedge delay; the rest is
//! adding and moving 256 MiB), 256 MiB of temporary files (deleted once added) and 512 MiB of
//! node repos (a dedicated cluster of two nodes, dropped at the end). Timings are printed,
//! never asserted.

use crate::support::nodes::{required_cluster, step};
use crate::support::policies::registry;
use crate::support::{FaultProxy, IpfsCluster, Mode, make_hls_set};
use futures::FutureExt;
use pinwarden::executor::{RoundEnd, RoundLimits, Topology, run_round};
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden::policy::contract::Job;
use pinwarden::{Action, Outcome, Role};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZE: u64 = 256 << 20;
const SEGMENT: u64 = 4 << 20;
const RTT: Duration = Duration::from_millis(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_size_rendition_set_pins_on_a_backup_over_bitswap_at_30ms() {
    let t0 = Instant::now();
    let mut cluster = required_cluster(2).await;
    step(t0, "2 Kubo daemons ready");
    let result = AssertUnwindSafe(cases(&cluster, t0)).catch_unwind().await;
    if result.is_err() {
        eprintln!("{}", cluster.logs());
    }
    cluster.shutdown();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    step(t0, "done; cluster stopped and its repos deleted");
}

async fn cases(cluster: &IpfsCluster, t0: Instant) {
    let a = KuboClient::new("a", &cluster.api_url(0), None).expect("client");

    // --- 256 MiB of renditions, on node A ---
    let root = {
        let (_tmp, dir) = make_hls_set("show", SIZE, SEGMENT).expect("test data");
        step(
            t0,
            &format!("wrote {} MiB to {}", SIZE >> 20, dir.display()),
        );
        a.add_dir(&dir).await.expect("add_dir")
        // The files go here: the node has the blocks.
    };
    step(t0, &format!("added to A as {root}"));

    // --- a pin over bitswap with a 10 s stall timeout ---
    let b = KuboClient::new("b", &cluster.api_url(1), None).expect("client");
    let addrs = a.swarm_addrs().await.expect("swarm_addrs");
    assert_eq!(b.connect(&addrs).await, Outcome::Ok);
    let stall = Duration::from_secs(10);
    let started = Instant::now();
    let outcome = b.pin(&root, stall).await;
    let took = started.elapsed();
    step(
        t0,
        &format!(
            "B: pin over bitswap, {stall:?} stall timeout: {outcome:?} after {took:?}; {}",
            bitswap(&cluster.api_url(1)).await
        ),
    );
    // Kubo moves the whole set (js-ipfs stopped after 200–250 MB and could only stall late;
    // a transfer that outlasts the stall timeout is `kubo_daemon`'s, through a slow relay).
    assert_eq!(outcome, Outcome::Ok, "after {took:?}");
    // B starts the round empty again, and not connected to A (the round's first hint dials).
    if outcome == Outcome::Ok {
        b.pin_rm(&root).await.expect("pin_rm");
    }
    let peer = addrs[0]
        .rsplit_once("/p2p/")
        .map(|(_, p)| p)
        .expect("peer id");
    let disconnect = format!(
        "{}/api/v0/swarm/disconnect?arg=/p2p/{peer}",
        cluster.api_url(1)
    );
    reqwest::Client::new()
        .post(disconnect)
        .send()
        .await
        .expect("swarm/disconnect");
    let removed = b.repo_gc().await.expect("repo_gc");
    step(t0, &format!("B: unpinned, {removed} blocks collected"));

    // --- the round: primary A never finishes a pin; backup B fetches over bitswap ---
    let primary = FaultProxy::start(&cluster.api_url(0)).await.expect("proxy");
    primary.set_mode(Mode::StallMidStream).await;
    let backup = FaultProxy::start(&cluster.api_url(1)).await.expect("proxy");
    backup.set_mode(Mode::Delay(RTT)).await;
    let mut topology = Topology::new();
    let client = |name: &str, url: &str| -> Arc<dyn Node> {
        Arc::new(KuboClient::new(name, url, None).expect("client"))
    };
    topology.add("primary", Role::Primary, client("primary", &primary.url()));
    topology.add("backup-1", Role::Backup, client("backup-1", &backup.url()));
    let registry = registry();
    let policy = registry.resolve("tank-mode", &[]).expect("tank-mode");
    let fallback = registry.fallback_for(&[]).expect("fallback");
    let job = Job {
        cid: root.clone(),
        job_id: "real-size".into(),
        size_bytes: SIZE,
        lazy: false,
        failed_rounds: 0,
    };
    let started = Instant::now();
    let result = run_round(
        &policy,
        &fallback,
        &job,
        &[],
        &topology,
        &RoundLimits::default(),
    )
    .await;
    let took = started.elapsed();
    for line in &result.trace {
        eprintln!(
            "    {:>9.3}s  {:<9} {}",
            line.t_ms as f64 / 1e3,
            line.node.as_deref().unwrap_or("-"),
            line.text
        );
    }
    step(
        t0,
        &format!(
            "round: {} in {took:?}; attempts {:?}; RPCs to the backup {:?}",
            result.status,
            result.attempts(),
            backup.counts()
        ),
    );
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.reason);
    assert_eq!(result.confirmed, ["backup-1"]);

    // Every attempt on the backup came right after a fresh provider hint.
    let lane: Vec<&Action> = result
        .history
        .iter()
        .map(|e| &e.action)
        .filter(|a| a.node() == Some("backup-1"))
        .collect();
    let attempts: Vec<usize> = (0..lane.len())
        .filter(|&i| matches!(lane[i], Action::Pin(_)))
        .collect();
    assert!(!attempts.is_empty());
    assert_eq!(
        backup.count("/api/v0/swarm/disconnect"),
        attempts.len() - 1,
        "{:?}",
        backup.counts()
    );
    for i in attempts {
        assert!(
            i > 0 && matches!(lane[i - 1], Action::Connect(c) if c.provider == "primary"),
            "backup attempt without a provider hint just before: {lane:?}"
        );
    }
    // One check on the backup: on Kubo, one offline `refs` walk per check, never a call per
    // block (and no `refs/local` listing: that is js-ipfs' walk).
    let checks = result
        .history
        .iter()
        .filter(|e| matches!(&e.action, Action::CheckRetrievable(n) if n == "backup-1"))
        .count();
    assert_eq!(backup.count("/api/v0/refs/local"), 0);
    assert_eq!(
        backup.count("/api/v0/refs"),
        checks,
        "{:?}",
        backup.counts()
    );

    // --- the check alone, at 30 ms: its cost ---
    backup.reset_counts();
    let b = KuboClient::new("backup-1", &backup.url(), None).expect("client");
    let started = Instant::now();
    assert_eq!(b.check_retrievable(&root).await, Outcome::Ok);
    step(
        t0,
        &format!(
            "B: check-retrievable of {} MiB at {RTT:?}: {:?}, RPCs {:?}",
            SIZE >> 20,
            started.elapsed(),
            backup.counts()
        ),
    );
}

/// Blocks and bytes received over bitswap, and the wantlist's length, as the node reports them.
async fn bitswap(api: &str) -> String {
    let reply = reqwest::Client::new()
        .post(format!("{api}/api/v0/bitswap/stat"))
        .send()
        .await;
    let body = match reply {
        Ok(r) => r.bytes().await.ok(),
        Err(_) => None,
    };
    let Some(v) = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) else {
        return "bitswap/stat failed".into();
    };
    format!(
        "bitswap: {} blocks, {} bytes received, {} wanted",
        v["BlocksReceived"],
        v["DataReceived"],
        v["Wantlist"].as_array().map_or(0, Vec::len)
    )
}
