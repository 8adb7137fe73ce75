//! `cluster` (not in the default set): time to replication-min on an IPFS Cluster tier, next to
//! `ipfs-cluster-ctl pin add --wait` on the same cluster in the same run.
//!
//! Four Kubo nodes (0: pinwarden's primary, 1–3: the peers of a 3-peer IPFS Cluster 1.1.6),
//! every cluster Kubo connected to the primary beforehand (the ctl sends no origins, and the
//! nodes have no routing: both ways fetch over the same bitswap links). Per run, two fresh
//! videos of `--size-kb` are uploaded to the primary; one is pinned by
//! `ipfs-cluster-ctl pin add --rmin 2 --rmax 2 --wait`, the other by `pinwarden pin` with the
//! primary's pins failing (a fault proxy), so the round goes to the cluster tier (rmin 2, rmax 2,
//! the default 500 ms status poll). pinwarden's figure is the cluster step of its trace: from
//! the pin attempt on the cluster to its `pin -> ok` (replication-min peers `pinned`); the
//! proof after it (status again, the peer walk) is reported beside. The order alternates.
//! The ctl polls once a second, pinwarden every 500 ms: each as shipped.
//!
//! The whole benchmark re-executes itself in a private network namespace when this part is
//! asked for (`ipfs-cluster-service` starts NAT port mapping, see pinwarden_testkit).

use super::{Args, Series, met};

use anyhow::{Context, Result, anyhow, ensure};
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden_testkit::{ClusterPeers, FaultProxy, IpfsCluster, Mode, ipfs_cluster, make_hls_dir};
use serde_json::Value;
use std::time::{Duration, Instant};

const RUNS: usize = 10;

pub(super) async fn cluster(args: &Args) -> Result<()> {
    let kubo = IpfsCluster::start_with(4, |_, c| ipfs_cluster::listen_on_private(c))
        .await
        .context("starting Kubo (run scripts/setup.sh first)")?;
    let peers = ClusterPeers::start(&kubo, &[1, 2, 3]).await?;
    let primary = KuboClient::new("primary", &kubo.api_url(0), None)?;
    let addrs = primary
        .swarm_addrs()
        .await
        .map_err(|o| anyhow!("primary addrs: {o:?}"))?;
    for k in 1..=3 {
        let c = KuboClient::new("peer", &kubo.api_url(k), None)?;
        ensure!(
            c.connect(&addrs).await == pinwarden::Outcome::Ok,
            "connect {k}"
        );
    }
    let proxy = FaultProxy::start(&kubo.api_url(0)).await?;
    proxy
        .set_mode(Mode::PinStreamError("overloaded".into()))
        .await;
    let dir = tempfile::tempdir()?;
    let walkers: Vec<String> = (1..=3)
        .map(|k| format!("\"{}\"", kubo.api_url(k)))
        .collect();
    let config = dir.path().join("pinwarden.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n\n[[node]]\nname = \"primary\"\nrole = \"primary\"\nurl = \"{}\"\n\n\
             [[node]]\nname = \"cluster\"\nrole = \"backup\"\napi = \"cluster\"\nurl = \"{}\"\n\
             replication_min = 2\nreplication_max = 2\npeer_kubo_urls = [{}]\n\n\
             [policy]\nname = \"tank-mode\"\nparams = {{ attempts = 1, base_delay_ms = 100, max_delay_ms = 100, \
             breaker_failures = 0, hedge_after_ms = 0 }}\n",
            dir.path().display(),
            proxy.url(),
            peers.rest_url(0),
            walkers.join(", ")
        ),
    )?;
    let size = args.size_kb * 1024;
    println!(
        "\n== cluster: time to replication-min 2 of 3 peers, {RUNS} videos of {} KiB each way ==",
        args.size_kb
    );
    let (mut ctl, mut tier, mut proven) = (Series::default(), Series::default(), Series::default());
    for run in 0..RUNS {
        let mut cids = Vec::new();
        for which in ["ctl", "pinwarden"] {
            let (_tmp, d) = make_hls_dir(&format!("cluster-{run}-{which}"), size, 4)?;
            cids.push(primary.add_dir(&d).await?);
        }
        let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for way in order {
            if way == 0 {
                let started = Instant::now();
                let out = peers
                    .ctl(0)
                    .args([
                        "pin",
                        "add",
                        "--rmin",
                        "2",
                        "--rmax",
                        "2",
                        "--wait",
                        "--wait-timeout",
                        "120s",
                        "--no-status",
                    ])
                    .arg(&cids[0])
                    .output()
                    .context("ipfs-cluster-ctl")?;
                ensure!(
                    out.status.success(),
                    "ctl pin add: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                ctl.push(started.elapsed());
            } else {
                let out = std::process::Command::new(&args.bin)
                    .args(["pin", &cids[1], "--json", "--config"])
                    .arg(&config)
                    .output()
                    .context("pinwarden pin")?;
                let v: Value = serde_json::from_slice(&out.stdout)
                    .with_context(|| String::from_utf8_lossy(&out.stderr).to_string())?;
                ensure!(v["status"] == "pinned", "pinwarden: {v}");
                let (start, ok, end) = cluster_steps(&v)?;
                tier.push(Duration::from_millis(ok - start));
                proven.push(Duration::from_millis(end - start));
            }
        }
    }
    println!(
        "{}",
        ctl.row("ipfs-cluster-ctl pin add --wait (baseline)", None)
    );
    println!(
        "{}",
        tier.row("pinwarden cluster tier: request to rmin pinned", Some(&ctl))
    );
    println!(
        "{}",
        proven.row(
            "pinwarden cluster tier: to proven (status + walk)",
            Some(&ctl)
        )
    );
    let ratio = tier.median() / ctl.median();
    println!(
        "target: pinwarden's time to replication-min <= 1.2x the ctl's (median): {ratio:.2}x, {}",
        met(ratio <= 1.2)
    );
    drop(peers);
    Ok(())
}

/// From a `pin --json` trace: when the cluster's pin attempt started, when it answered ok, and
/// when the round ended (ms).
fn cluster_steps(v: &Value) -> Result<(u64, u64, u64)> {
    let trace = v["trace"]
        .as_array()
        .ok_or_else(|| anyhow!("no trace: {v}"))?;
    let at = |pred: &dyn Fn(&Value) -> bool| {
        trace
            .iter()
            .find(|e| pred(e))
            .and_then(|e| e["t_ms"].as_u64())
    };
    let on = |e: &Value, text: &str| {
        e["node"] == "cluster" && e["text"].as_str().is_some_and(|t| t.starts_with(text))
    };
    let start = at(&|e| on(e, "pin attempt")).ok_or_else(|| anyhow!("no cluster pin: {v}"))?;
    let ok = at(&|e| on(e, "pin -> ok")).ok_or_else(|| anyhow!("no cluster pin ok: {v}"))?;
    let end = trace
        .last()
        .and_then(|e| e["t_ms"].as_u64())
        .ok_or_else(|| anyhow!("empty trace"))?;
    Ok((start, ok, end))
}

/// Videos per side of the drill, and the window they must be verified in.
const DRILL_VIDEOS: usize = 50;
const DRILL_WINDOW: Duration = Duration::from_secs(60);
/// Both sides give up on a stalled pin after this long (the cluster's `pin_timeout`, the
/// policy's `stall_timeout_ms`).
const DRILL_STALL: &str = "15s";

/// The outage drill side by side: the same three Kubo nodes, the second of them stalling every
/// pin (a fault proxy that answers `pin/add` with one progress line, then nothing). 50 fresh
/// videos (held by the uploader, Kubo 0, which every node is connected to) go, all at once,
/// (a) through IPFS Cluster alone, `ipfs-cluster-ctl pin add --rmin 2 --rmax 2 --wait`, and
/// (b) through `pinwarden serve` with the three nodes as backups (quorum 2; the primary, Kubo 0,
/// refuses its pins). For each: videos verified (`pin ls` on the nodes themselves) on 2 nodes
/// within 60 s, the median and p99 time to that, and the `pin/add` calls the sick node got.
pub(super) async fn drill(args: &Args) -> Result<()> {
    let kubo = IpfsCluster::start_with(4, |_, c| ipfs_cluster::listen_on_private(c))
        .await
        .context("starting Kubo")?;
    let uploader = KuboClient::new("uploader", &kubo.api_url(0), None)?;
    let addrs = uploader
        .swarm_addrs()
        .await
        .map_err(|o| anyhow!("uploader addrs: {o:?}"))?;
    let nodes: Vec<KuboClient> = (1..=3)
        .map(|k| KuboClient::new(format!("kubo-{k}"), &kubo.api_url(k), None))
        .collect::<Result<_, _>>()?;
    for n in &nodes {
        ensure!(n.connect(&addrs).await == pinwarden::Outcome::Ok, "connect");
    }
    let sick = FaultProxy::start(&kubo.api_url(2)).await?;
    sick.set_mode(Mode::StallMidStream).await;
    let size = args.size_kb * 1024;
    let videos = |side: &'static str| {
        let uploader = &uploader;
        async move {
            let mut cids = Vec::new();
            for i in 0..DRILL_VIDEOS {
                let (_tmp, d) = make_hls_dir(&format!("drill-{side}-{i}"), size, 4)?;
                cids.push(uploader.add_dir(&d).await?);
            }
            anyhow::Ok(cids)
        }
    };
    println!(
        "\n== outage drill: {DRILL_VIDEOS} videos of {} KiB at once, 3 nodes, the second stalling every pin, stall limit {DRILL_STALL} ==",
        args.size_kb
    );
    println!(
        "| path | verified on 2 nodes within 60 s | median s | p99 s | pin/add calls to the sick node |\n|---|---|---|---|---|"
    );

    // (a) IPFS Cluster alone.
    let cids = videos("cluster").await?;
    let apis = vec![(1, kubo.api_url(1)), (2, sick.url()), (3, kubo.api_url(3))];
    let peers = ClusterPeers::start_on(&apis, Some(DRILL_STALL)).await?;
    sick.reset_counts();
    let started = Instant::now();
    let mut waits = Vec::new();
    for cid in &cids {
        let mut cmd = tokio::process::Command::from(peers.ctl(0));
        cmd.args([
            "pin",
            "add",
            "--rmin",
            "2",
            "--rmax",
            "2",
            "--wait",
            "--wait-timeout",
            "60s",
            "--no-status",
        ])
        .arg(cid)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
        waits.push(cmd.spawn()?);
    }
    let times = verified_times(&nodes, &cids, started).await;
    for mut w in waits {
        let _ = w.kill().await;
    }
    report(
        "IPFS Cluster alone (ctl pin add --wait, replication 2)",
        &times,
        sick.count("/api/v0/pin/add"),
    );
    drop(peers);

    // (b) pinwarden over the same nodes.
    let cids = videos("pinwarden").await?;
    let primary = FaultProxy::start(&kubo.api_url(0)).await?;
    primary
        .set_mode(Mode::PinStreamError("overloaded".into()))
        .await;
    let dir = tempfile::tempdir()?;
    let config = format!(
        "data_dir = \"{}\"\n\n[[node]]\nname = \"primary\"\nrole = \"primary\"\nurl = \"{}\"\n\n\
         [[node]]\nname = \"backup-1\"\nrole = \"backup\"\nurl = \"{}\"\n\n\
         [[node]]\nname = \"backup-2\"\nrole = \"backup\"\nurl = \"{}\"\n\n\
         [[node]]\nname = \"backup-3\"\nrole = \"backup\"\nurl = \"{}\"\n\n\
         [policy]\nname = \"tank-mode\"\nparams = {{ quorum = 2, attempts = 1, stall_timeout_ms = 15000, \
         pin_timeout_ms = 60000, base_delay_ms = 100, max_delay_ms = 200 }}\n\n\
         [daemon]\nconcurrent_pins = {DRILL_VIDEOS}\n",
        dir.path().display(),
        primary.url(),
        kubo.api_url(1),
        sick.url(),
        kubo.api_url(3),
    );
    let _served = super::Served::start(&args.bin, dir.path(), &config)?;
    let client = pinwarden::client::DaemonClient::unix(&dir.path().join("pinwarden.sock"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.health().await.is_err() {
        ensure!(Instant::now() < deadline, "pinwarden serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sick.reset_counts();
    let started = Instant::now();
    for (i, cid) in cids.iter().enumerate() {
        client
            .submit(&pinwarden::daemon::wire::SubmitRequest {
                cid: cid.clone(),
                job_id: format!("drill-{i}"),
                size_bytes: size as u64,
                wait: false,
                timeout_ms: None,
                notify: None,
            })
            .await?;
    }
    let times = verified_times(&nodes, &cids, started).await;
    report(
        "pinwarden (tank-mode, quorum 2, the same 3 nodes)",
        &times,
        sick.count("/api/v0/pin/add"),
    );
    Ok(())
}

/// For each CID, when `pin ls` on 2 of `nodes` first listed it (polled every 250 ms), within
/// [`DRILL_WINDOW`] of `started`.
async fn verified_times(
    nodes: &[KuboClient],
    cids: &[String],
    started: Instant,
) -> Vec<Option<Duration>> {
    let mut times = vec![None; cids.len()];
    while started.elapsed() < DRILL_WINDOW && times.iter().any(Option::is_none) {
        for (i, cid) in cids.iter().enumerate() {
            if times[i].is_some() {
                continue;
            }
            let mut on = 0;
            for n in nodes {
                if n.verify(cid).await == pinwarden::Outcome::Ok {
                    on += 1;
                }
            }
            if on >= 2 {
                times[i] = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    times
}

fn report(path: &str, times: &[Option<Duration>], sick_calls: usize) {
    let mut done: Vec<f64> = times.iter().flatten().map(Duration::as_secs_f64).collect();
    done.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if done.len() < times.len() {
            // Some never made it: the percentile is past the window.
            let rank = ((times.len() - 1) as f64 * p).round() as usize;
            return done
                .get(rank)
                .map_or("> 60".to_string(), |s| format!("{s:.1}"));
        }
        format!(
            "{:.1}",
            done[((done.len() - 1) as f64 * p).round() as usize]
        )
    };
    println!(
        "| {path} | {} of {} | {} | {} | {sick_calls} |",
        done.len(),
        times.len(),
        at(0.5),
        at(0.99)
    );
}
