//! `policy-load` (not in the default set): what the live policy, slow or shadowed, costs the
//! daemon that runs it. One Kubo node as the primary; for each variant a fresh `pinwarden
//! serve` gets `--drain-jobs` lazy jobs (default in this part: 20) at once, fresh HLS
//! directories uploaded unpinned beforehand, while a prober asks `GET /v1/health` every 10 ms
//! from submission until every job is pinned, and for 10 s at least:
//!
//! * **clean**: tank-mode (the baseline);
//! * **slow**: the hostile test guest in `sluggish` mode, sound but slow (`--busy`, default
//!   30: about 50 ms of CPU per decision; the mean is measured and printed), about the slowest
//!   the checks let in: a round may spend 2 s of CPU deciding, and `all-fail` asks for dozens
//!   of decisions. Issue 18's 150 ms policy, which pushed `/v1/health` to p99 1,148 ms when
//!   decisions ran on the API's threads, no longer passes `check`, nor starts a daemon;
//! * **slow shadow**: tank-mode, with that 150 ms policy (`busy` 115) in shadow, which may be
//!   watched though it fails the checks: a thread deciding without a pause beside the API;
//! * **shadowed**: tank-mode with single-backup in shadow, asked at every decision.
//!
//! Three repetitions, the order rotated. Reported per variant (medians): `/v1/health` p50,
//! p99 and max; the mean live decision time (`pinwarden_policy_decision_seconds` sum/count
//! from `/metrics`); per-job submission-to-pinned p50; the drain's wall time; each as a
//! ratio to clean of the same run. Targets (BENCHMARKS.md §13): the slow variants' health p99
//! within 2× clean's; shadowed's decision time within 1.05× clean's.

use super::Args;
use super::notify::pct;
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use pinwarden::kubo::KuboClient;
use pinwarden_testkit::{IpfsCluster, make_hls_dir};
use std::path::Path;
use std::time::{Duration, Instant};

const REPETITIONS: usize = 3;
/// Probed for at least this long from the first submission, drained or not: the same
/// number of probes under each policy (a clean drain is over in a fraction of it).
const WINDOW: Duration = Duration::from_secs(10);
const DRAIN_LIMIT: Duration = Duration::from_secs(900);
/// A slow policy's start-up check runs every built-in scenario at its pace.
const START_LIMIT: Duration = Duration::from_secs(600);
const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile-policy.wasm"));

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Clean,
    Slow,
    SlowShadow,
    Shadowed,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Clean,
        Variant::Slow,
        Variant::SlowShadow,
        Variant::Shadowed,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Clean => "clean (tank-mode)",
            Variant::Slow => "slow (~50 ms/decision)",
            Variant::SlowShadow => "150 ms policy in shadow",
            Variant::Shadowed => "tank-mode + shadow",
        }
    }
}

struct Run {
    /// `/v1/health` latencies over the window, ms, sorted.
    health: Vec<f64>,
    /// Those asked before the last job was pinned, ms, sorted.
    draining: Vec<f64>,
    /// Mean live decision time, µs.
    decide_us: f64,
    /// Submission to pinned, per job, ms, sorted.
    per_job: Vec<f64>,
    wall: Duration,
    startup: Duration,
}

pub(super) async fn policy_load(args: &Args) -> Result<()> {
    let n = args.drain_jobs.unwrap_or(20).max(1);
    println!(
        "\n== policy-load: {n} lazy jobs of {} KiB at once under a clean, a slow (busy {}), a clean one with a 150 ms policy in shadow, and one shadowed by single-backup; /v1/health probed every 10 ms; {REPETITIONS} repetitions",
        args.size_kb, args.busy
    );
    let cluster = IpfsCluster::start(1)
        .await
        .context("starting a Kubo node (run scripts/setup.sh first)")?;
    let api = cluster.api_url(0);
    let node = KuboClient::new("primary", &api, None)?;
    let policies = tempfile::tempdir()?;
    let hostile = policies.path().join("hostile.wasm");
    std::fs::write(&hostile, HOSTILE)?;
    let mut runs: Vec<(Variant, Run)> = Vec::new();
    for rep in 0..REPETITIONS {
        for k in 0..Variant::ALL.len() {
            let variant = Variant::ALL[(k + rep) % Variant::ALL.len()];
            let mut cids = Vec::with_capacity(n);
            for i in 0..n {
                let (_tmp, dir) =
                    make_hls_dir(&format!("load-{rep}-{k}-{i}"), args.size_kb << 10, 4)?;
                cids.push(node.add_dir(&dir).await?);
            }
            let policy = match variant {
                Variant::Clean => "name = \"tank-mode\"\n".to_string(),
                Variant::Shadowed => "name = \"tank-mode\"\nshadow = \"single-backup\"\n".into(),
                Variant::Slow => format!(
                    "name = \"{}\"\nparams = {{ mode = \"sluggish\", busy = \"{}\" }}\n",
                    hostile.display(),
                    args.busy
                ),
                Variant::SlowShadow => format!(
                    "name = \"tank-mode\"\nshadow = \"{}\"\nshadow_params = {{ mode = \"sluggish\", busy = \"115\" }}\n",
                    hostile.display()
                ),
            };
            let run = drain(args, &api, &cids, &policy, policies.path()).await?;
            println!(
                "rep {rep} {:<24} health p50 {:>6.1} ms p99 {:>7.1} ms max {:>7.1} ms ({} probes; while draining: {} probes, p99 {:.1} ms), decision {:>9.1} µs, per job p50 {:>7.0} ms, wall {:>6.2} s (start-up {:.1} s)",
                variant.label(),
                pct(&run.health, 0.5),
                pct(&run.health, 0.99),
                pct(&run.health, 1.0),
                run.health.len(),
                run.draining.len(),
                pct(&run.draining, 0.99),
                run.decide_us,
                pct(&run.per_job, 0.5),
                run.wall.as_secs_f64(),
                run.startup.as_secs_f64()
            );
            runs.push((variant, run));
        }
    }
    println!(
        "\n| variant | health p50 ms | health p99 ms | ratio | health max ms | decision µs | ratio | per-job p50 ms | ratio | wall s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let med = |v: Variant, f: &dyn Fn(&Run) -> f64| {
        let mut xs: Vec<f64> = runs
            .iter()
            .filter(|(x, _)| *x == v)
            .map(|(_, r)| f(r))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let p50 = |r: &Run| pct(&r.health, 0.5);
    let p99 = |r: &Run| pct(&r.health, 0.99);
    let max = |r: &Run| pct(&r.health, 1.0);
    let decide = |r: &Run| r.decide_us;
    let job = |r: &Run| pct(&r.per_job, 0.5);
    let wall = |r: &Run| r.wall.as_secs_f64();
    let base = (
        med(Variant::Clean, &p99),
        med(Variant::Clean, &decide),
        med(Variant::Clean, &job),
    );
    for v in Variant::ALL {
        println!(
            "| {} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.1} | {:.3}x | {:.0} | {:.2}x | {:.2} |",
            v.label(),
            med(v, &p50),
            med(v, &p99),
            med(v, &p99) / base.0,
            med(v, &max),
            med(v, &decide),
            med(v, &decide) / base.1,
            med(v, &job),
            med(v, &job) / base.2,
            med(v, &wall)
        );
    }
    Ok(())
}

/// One drain on a fresh daemon under the `[policy]` table `policy` (a shadow's file is
/// loaded from `policy_dir`).
async fn drain(
    args: &Args,
    api: &str,
    cids: &[String],
    policy: &str,
    policy_dir: &Path,
) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let config = format!(
        "data_dir = \"{data}\"\n\n[policy]\n{policy}\n[daemon]\npolicy_dir = \"{policies}\"\n\n[[node]]\nname = \"primary\"\nurl = \"{api}\"\nrole = \"primary\"\n",
        data = dir.path().display(),
        policies = policy_dir.display(),
    );
    let mut served = super::Served::start(&args.bin, dir.path(), &config)?;
    let client = pinwarden::client::DaemonClient::unix(&dir.path().join("pinwarden.sock"))?;
    let started = Instant::now();
    while client.health().await.is_err() {
        if started.elapsed() > START_LIMIT || served.child.try_wait()?.is_some() {
            bail!("pinwarden serve did not come up:\n{}", log(dir.path()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let startup = started.elapsed();
    let t0 = Instant::now();
    let client = &client;
    let prober = async {
        let mut latencies = Vec::new();
        let mut drained = None;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            let asked = Instant::now();
            let health = client.health().await?;
            latencies.push((asked.elapsed().as_secs_f64() * 1e3, drained.is_none()));
            let pinned = health.queue.get("pinned").copied().unwrap_or(0) as usize;
            if pinned >= cids.len() && drained.is_none() {
                drained = Some(t0.elapsed());
            }
            if let Some(drained) = drained
                && t0.elapsed() >= WINDOW
            {
                return Ok::<_, anyhow::Error>((latencies, drained));
            }
            if t0.elapsed() > DRAIN_LIMIT {
                bail!("not drained after {DRAIN_LIMIT:?}:\n{}", log(dir.path()));
            }
        }
    };
    let submit = async {
        let submitted: Vec<Result<(), pinwarden::client::ClientError>> =
            futures::stream::iter(cids.iter().enumerate())
                .map(|(i, cid)| async move {
                    client
                        .submit(&pinwarden::daemon::wire::SubmitRequest {
                            cid: cid.clone(),
                            job_id: format!("load-{i}"),
                            size_bytes: (args.size_kb as u64) << 10,
                            wait: false,
                            timeout_ms: None,
                            notify: None,
                        })
                        .await
                        .map(|_| ())
                })
                .buffer_unordered(16)
                .collect()
                .await;
        submitted.into_iter().collect::<Result<(), _>>()
    };
    let (health, submitted) = tokio::join!(prober, submit);
    submitted?;
    let (probes, wall) = health?;
    let mut health: Vec<f64> = probes.iter().map(|(ms, _)| *ms).collect();
    health.sort_by(f64::total_cmp);
    let mut draining: Vec<f64> = probes.iter().filter(|p| p.1).map(|(ms, _)| *ms).collect();
    draining.sort_by(f64::total_cmp);
    let jobs = client
        .jobs(Some(pinwarden::queue::State::Pinned), cids.len() as u32)
        .await?;
    let mut per_job: Vec<f64> = jobs
        .iter()
        .map(|j| (j.updated_at_ms - j.created_at_ms) as f64)
        .collect();
    per_job.sort_by(f64::total_cmp);
    let metrics = client.metrics().await?;
    let read = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let decide_us = read("pinwarden_policy_decision_seconds_sum ") * 1e6
        / read("pinwarden_policy_decision_seconds_count ");
    Ok(Run {
        health,
        draining,
        decide_us,
        per_job,
        wall,
        startup,
    })
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
}
