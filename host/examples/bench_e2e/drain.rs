//! `drain` (not in the default set): the outage drain on real Kubo nodes. Two nodes, A (the
//! supernode) and B (a backup, connected to A). `--drain-jobs` fresh HLS directories of
//! `--size-kb` each are uploaded to A unpinned for each of the three drains, so B fetches
//! every one over bitswap:
//!
//! * **baseline**: B's own direct pin rate: `pin/add` of each CID on B, 10 at a time (the
//!   daemon's default `concurrent_pins`), with a plain HTTP client, once before pinwarden's
//!   drain and once after it (the mean rate is compared);
//! * **pinwarden**: `pinwarden serve` with A as the primary behind a proxy whose `pin/add`
//!   accepts and then stalls forever (`StallMidStream`: the Oct 2025 supernode), B the backup,
//!   tank-mode with default parameters; every job submitted lazily at once over the socket; the
//!   clock stops when the queue counts every pin `pinned`.
//!
//! Reported: both rates and their ratio, overall and after the first wave (the first jobs wait
//! for the policy's hedge, 10 s by default, before the breaker opens on the primary).

use super::notify::{cpu_seconds, pct};
use super::{Args, rpc_client, rpc_url};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden_testkit::{FaultProxy, IpfsCluster, Mode, make_hls_dir};
use std::time::{Duration, Instant};

/// Concurrency of the baseline, the daemon's default `concurrent_pins`.
const CONCURRENCY: usize = 10;
/// A bound on the whole drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);

pub(super) async fn drain(args: &Args) -> Result<()> {
    let n = args.drain_jobs.unwrap_or(100).max(1);
    println!(
        "\n== drain: {n} lazy jobs of {} KiB behind a Kubo primary whose pin/add stalls, against the backup's direct pin rate",
        args.size_kb
    );
    let cluster = IpfsCluster::start(2)
        .await
        .context("starting two Kubo nodes (run scripts/setup.sh first)")?;
    let a = KuboClient::new("a", &cluster.api_url(0), None)?;
    let b = KuboClient::new("b", &cluster.api_url(1), None)?;
    let addrs = a
        .swarm_addrs()
        .await
        .map_err(|o| anyhow::anyhow!("A's addresses: {o:?}"))?;
    b.connect(&addrs).await;
    let mut cids = Vec::with_capacity(5 * n);
    for i in 0..5 * n {
        let (_tmp, dir) = make_hls_dir(&format!("drain-{i}"), args.size_kb << 10, 4)?;
        cids.push(a.add_dir(&dir).await?);
    }
    // The baseline runs before and after pinwarden, on fresh content each time, and the mean of
    // the two rates is the one compared: the nodes' speed drifts as their repos grow. After it,
    // the same direct pins with the persistence gate pinwarden adds to each (`pin/ls`, then an
    // offline `refs` walk): what a careful script would pay.
    // First an unmeasured direct drain: a cold backup pinned 1,000 jobs 1.5x faster at the end
    // of a run than at its start, which made the mean of before and after a moving target.
    let sets: Vec<&[String]> = cids.chunks(n).collect();
    let api_b = cluster.api_url(1);
    let warmup = direct_drain(&api_b, sets[4], false).await?;
    println!(
        "warm-up: B pins {n} directly (not compared): {:.2} s, {:.2} pins/s",
        warmup.as_secs_f64(),
        n as f64 / warmup.as_secs_f64()
    );
    let before = direct_drain(&api_b, sets[0], false).await?;

    let stalling = FaultProxy::start(&cluster.api_url(0)).await?;
    stalling.set_mode(Mode::StallMidStream).await;
    let (total, first_wave) = pinwarden_drain(args, &stalling.url(), &api_b, sets[1]).await?;

    let after = direct_drain(&api_b, sets[2], false).await?;
    let gated = direct_drain(&api_b, sets[3], true).await?;
    let rates = [before, after].map(|d| n as f64 / d.as_secs_f64());
    let direct_rate = (rates[0] + rates[1]) / 2.0;
    let gated_rate = n as f64 / gated.as_secs_f64();
    println!(
        "baseline: B pins {n} directly, {CONCURRENCY} at a time: {:.2} s before pinwarden, {:.2} s after ({:.2} and {:.2} pins/s, mean {direct_rate:.2}); with pin/ls and refs after each: {:.2} s ({gated_rate:.2} pins/s, {:.3}x the plain rate)",
        before.as_secs_f64(),
        after.as_secs_f64(),
        rates[0],
        rates[1],
        gated.as_secs_f64(),
        gated_rate / direct_rate,
    );
    let rate = n as f64 / total.as_secs_f64();
    println!(
        "pinwarden: {n} lazy jobs drained to B in {:.2} s ({rate:.2} pins/s): {:.3}x the direct rate",
        total.as_secs_f64(),
        rate / direct_rate
    );
    if let Some((t, done)) = first_wave
        && done < n
    {
        let steady = (n - done) as f64 / (total - t).as_secs_f64();
        println!(
            "after the first wave ({done} pinned at {:.2} s): {steady:.2} pins/s, {:.3}x the direct rate, {:.3}x the gated direct rate",
            t.as_secs_f64(),
            steady / direct_rate,
            steady / gated_rate,
        );
    }
    Ok(())
}

/// B pins every CID with a plain client, [`CONCURRENCY`] at a time; `gated`: each pin then
/// checked as pinwarden checks it (`pin/ls` of the CID, one offline recursive `refs`).
async fn direct_drain(api: &str, cids: &[String], gated: bool) -> Result<Duration> {
    let http = rpc_client()?;
    let call = |path: &'static str, args: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = http.post(rpc_url(api, path, &args)?).send().await?;
            if !reply.status().is_success() {
                bail!("{path}: HTTP {}", reply.status());
            }
            reply.bytes().await?;
            Ok(())
        }
    };
    let t0 = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(cids)
        .map(|cid| async move {
            let arg = || ("arg", cid.clone());
            call("pin/add", vec![arg(), ("recursive", "true".into())]).await?;
            if gated {
                call("pin/ls", vec![arg(), ("type", "recursive".into())]).await?;
                let walk = [
                    ("recursive", "true"),
                    ("unique", "true"),
                    ("offline", "true"),
                ];
                let mut args = vec![arg()];
                args.extend(walk.map(|(k, v)| (k, v.to_string())));
                call("refs", args).await?;
            }
            Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    Ok(t0.elapsed())
}

/// Submits every CID lazily to a fresh `pinwarden serve` and waits until all are pinned.
/// Returns the total time, and when the first wave (the first [`CONCURRENCY`] pins) was done.
async fn pinwarden_drain(
    args: &Args,
    primary: &str,
    backup: &str,
    cids: &[String],
) -> Result<(Duration, Option<(Duration, usize)>)> {
    let dir = tempfile::tempdir()?;
    let config = format!(
        "data_dir = \"{data}\"\n\n[[node]]\nname = \"primary\"\nurl = \"{primary}\"\nrole = \"primary\"\n\n\
         [[node]]\nname = \"backup-1\"\nurl = \"{backup}\"\nrole = \"backup\"\n",
        data = dir.path().display(),
    );
    let served = super::Served::start(&args.bin, dir.path(), &config)?;
    let log_path = dir.path().join("serve.log");
    let client = pinwarden::client::DaemonClient::unix(&dir.path().join("pinwarden.sock"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.health().await.is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("pinwarden serve did not come up:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = Instant::now();
    for (i, cid) in cids.iter().enumerate() {
        let request = pinwarden::daemon::wire::SubmitRequest {
            cid: cid.clone(),
            job_id: format!("drain-{i}"),
            size_bytes: (args.size_kb as u64) << 10,
            wait: false,
            timeout_ms: None,
            notify: None,
        };
        client.submit(&request).await?;
    }
    let mut first_wave = None;
    loop {
        let health = client.health().await?;
        let pinned = health.queue.get("pinned").copied().unwrap_or(0) as usize;
        if first_wave.is_none() && pinned >= CONCURRENCY.min(cids.len()) {
            first_wave = Some((t0.elapsed(), pinned));
        }
        if pinned >= cids.len() {
            let took = t0.elapsed();
            if let Some(cpu) = cpu_seconds(served.child.id()) {
                println!(
                    "pinwarden serve used {cpu:.2} s of CPU (user + system) over the {:.2} s drain",
                    took.as_secs_f64()
                );
            }
            // Stopped first: the records still in the recorder's backlog are written on the
            // way out.
            drop(served);
            breakdown(dir.path())?;
            return Ok((took, first_wave));
        }
        if t0.elapsed() > DRAIN_LIMIT {
            bail!("{pinned} of {} pinned after {DRAIN_LIMIT:?}", cids.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where the drain's time went, from the daemon's round records: each round's length from its
/// first action to its end, and the time its actions took, by action and node (medians over the
/// rounds that took them, in ms). What is left of a round is the host's and the policy's.
fn breakdown(data_dir: &std::path::Path) -> Result<()> {
    use pinwarden::rounds::RoundRecord;
    use std::collections::BTreeMap;
    let mut rounds: Vec<RoundRecord> = Vec::new();
    for path in pinwarden::rounds::store::segments(&pinwarden::rounds::store::dir(data_dir))? {
        for line in std::fs::read_to_string(&path)?.lines() {
            rounds.push(serde_json::from_str(line).context("a round record")?);
        }
    }
    let mut lengths = Vec::new();
    let mut by_action: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut first_start = Vec::new();
    for r in &rounds {
        lengths.push(r.end.elapsed_ms);
        let mut per_round: BTreeMap<String, u64> = BTreeMap::new();
        for e in &r.history {
            let key = format!("{} {}", e.action.name(), e.action.node().unwrap_or("-"));
            let took = e.ended_ms.unwrap_or(r.end.elapsed_ms) - e.started_ms;
            *per_round.entry(key).or_default() += took;
        }
        for (k, v) in per_round {
            by_action.entry(k).or_default().push(v);
        }
        if let Some(e) = r.history.first() {
            first_start.push(e.started_ms);
        }
    }
    println!(
        "where the time went ({} rounds recorded): round p50 {:.0} ms, p90 {:.0} ms; first action after {:.0} ms (p50)",
        rounds.len(),
        percentile(&lengths, 0.5),
        percentile(&lengths, 0.9),
        percentile(&first_start, 0.5),
    );
    // Rounds in flight, every 500 ms from the first round's start: how well the slots were used.
    if let Some(t0) = rounds.iter().map(|r| r.at_ms).min() {
        let end = rounds
            .iter()
            .map(|r| r.at_ms + r.end.elapsed_ms as i64)
            .max()
            .unwrap_or(t0);
        let mut line = String::new();
        let mut t = t0;
        while t <= end {
            let n = rounds
                .iter()
                .filter(|r| r.at_ms <= t && t < r.at_ms + r.end.elapsed_ms as i64)
                .count();
            line.push_str(&format!(" {n}"));
            t += 500;
        }
        println!("  rounds in flight every 500 ms:{line}");
        let mut hedged: Vec<String> = rounds
            .iter()
            .filter(|r| r.history.iter().any(|e| e.action.node() == Some("primary")))
            .map(|r| format!("{}+{}", r.at_ms - t0, r.end.elapsed_ms))
            .collect();
        hedged.sort();
        println!(
            "  rounds that asked the primary (start+length ms): {}",
            hedged.join(" ")
        );
    }
    for (action, took) in by_action {
        println!(
            "  {action:<28} in {:>4} rounds: p50 {:>6.0} ms, p90 {:>6.0} ms",
            took.len(),
            percentile(&took, 0.5),
            percentile(&took, 0.9),
        );
    }
    Ok(())
}

/// The `q` quantile of `values` (ms), by the benchmarks' one rule ([`pct`]).
fn percentile(values: &[u64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    sorted.sort_by(f64::total_cmp);
    pct(&sorted, q)
}
