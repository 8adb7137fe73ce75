//! `notify` (not in the default set): what completion webhooks cost a round. One Kubo node as
//! the primary; for each variant a fresh `pinwarden serve` gets `--drain-jobs` lazy jobs at
//! once (fresh HLS directories of `--size-kb`, uploaded unpinned beforehand), and the clock
//! stops when every one is pinned:
//!
//! * **off**: no `[notify]` (the baseline);
//! * **on, receiver 200**: every job's `pinned` event delivered to a local receiver, while
//!   the rounds run;
//! * **on, receiver hangs**: a receiver that accepts and never answers (every attempt runs
//!   into `timeout_ms`, the backlog grows).
//!
//! Jobs are submitted 16 at a time, so the drain (the rounds) is what is timed. Five
//! repetitions, the variants' order rotated each time. Reported per variant: the drain's
//! wall time and the median and p99 of each job's submission-to-pinned time (its row's
//! `updated_at - created_at`), each as a ratio to "off" of the same repetition; for the 200
//! receiver also the delivery delay (the event's arrival minus the pin's `updated_at`).

use super::Args;
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use pinwarden::kubo::KuboClient;
use pinwarden_testkit::{IpfsCluster, make_hls_dir};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPETITIONS: usize = 5;
const DRAIN_LIMIT: Duration = Duration::from_secs(600);
const SECRET: &str = "bench-notify-secret-0123456789";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Off,
    Ok,
    Hang,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Off => "off (baseline)",
            Variant::Ok => "on, receiver 200",
            Variant::Hang => "on, receiver hangs",
        }
    }
}

struct Run {
    wall: Duration,
    /// CPU time the daemon used from its start to the end of the drain (user + system), s.
    cpu: f64,
    /// Submission to pinned, per job, ms.
    per_job: Vec<f64>,
    /// Pinned to delivered, per event, ms (receiver 200 only).
    delivery: Vec<f64>,
}

pub(super) async fn notify(args: &Args) -> Result<()> {
    let n = args.drain_jobs.unwrap_or(100).max(1);
    println!(
        "\n== notify: {n} lazy jobs of {} KiB at once, webhooks off / on (200) / on (hanging receiver), {REPETITIONS} repetitions",
        args.size_kb
    );
    let cluster = IpfsCluster::start(1)
        .await
        .context("starting a Kubo node (run scripts/setup.sh first)")?;
    let api = cluster.api_url(0);
    let node = KuboClient::new("primary", &api, None)?;
    let (ok_addr, arrivals) = ok_receiver().await?;
    let hang_addr = hanging_receiver().await?;
    let mut runs: Vec<(Variant, Run)> = Vec::new();
    let order = [Variant::Off, Variant::Ok, Variant::Hang];
    for rep in 0..REPETITIONS {
        for k in 0..order.len() {
            let variant = order[(k + rep) % order.len()];
            let mut cids = Vec::with_capacity(n);
            for i in 0..n {
                let (_tmp, dir) =
                    make_hls_dir(&format!("notify-{rep}-{k}-{i}"), args.size_kb << 10, 4)?;
                cids.push(node.add_dir(&dir).await?);
            }
            let url = match variant {
                Variant::Off => None,
                Variant::Ok => Some(format!("http://{ok_addr}/hooks")),
                Variant::Hang => Some(format!("http://{hang_addr}/hang")),
            };
            if let Ok(mut a) = arrivals.lock() {
                a.clear();
            }
            let run = drain(args, &api, &cids, url.as_deref(), &arrivals).await?;
            println!(
                "rep {rep} {:<20} wall {:>7.2} s, daemon CPU {:>5.2} s, per job p50 {:>7.1} ms p99 {:>7.1} ms{}",
                variant.label(),
                run.wall.as_secs_f64(),
                run.cpu,
                pct(&run.per_job, 0.5),
                pct(&run.per_job, 0.99),
                if run.delivery.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", delivered {} events, delay p50 {:.1} ms p99 {:.1} ms",
                        run.delivery.len(),
                        pct(&run.delivery, 0.5),
                        pct(&run.delivery, 0.99)
                    )
                }
            );
            runs.push((variant, run));
        }
    }
    println!(
        "\n| variant | wall s (median of {REPETITIONS}) | ratio | per-job p50 ms | ratio | per-job p99 ms | ratio | daemon CPU s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let med = |v: Variant, f: &dyn Fn(&Run) -> f64| {
        let mut xs: Vec<f64> = runs
            .iter()
            .filter(|(x, _)| *x == v)
            .map(|(_, r)| f(r))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let wall = |r: &Run| r.wall.as_secs_f64();
    let p50 = |r: &Run| pct(&r.per_job, 0.5);
    let p99 = |r: &Run| pct(&r.per_job, 0.99);
    let cpu = |r: &Run| r.cpu;
    let base = [
        med(Variant::Off, &wall),
        med(Variant::Off, &p50),
        med(Variant::Off, &p99),
        med(Variant::Off, &cpu),
    ];
    for v in order {
        let m = [med(v, &wall), med(v, &p50), med(v, &p99), med(v, &cpu)];
        println!(
            "| {} | {:.2} | {:.3}x | {:.1} | {:.3}x | {:.1} | {:.3}x | {:.2} | {:.3}x |",
            v.label(),
            m[0],
            m[0] / base[0],
            m[1],
            m[1] / base[1],
            m[2],
            m[2] / base[2],
            m[3],
            m[3] / base[3]
        );
    }
    let mut delays: Vec<f64> = runs
        .iter()
        .filter(|(v, _)| *v == Variant::Ok)
        .flat_map(|(_, r)| r.delivery.iter().copied())
        .collect();
    delays.sort_by(f64::total_cmp);
    println!(
        "receiver 200: {} events delivered, pinned-to-delivered p50 {:.1} ms, p99 {:.1} ms",
        delays.len(),
        pct(&delays, 0.5),
        pct(&delays, 0.99)
    );
    Ok(())
}

/// One drain on a fresh daemon; `url`: the `[notify]` default URL (none: off).
async fn drain(
    args: &Args,
    api: &str,
    cids: &[String],
    url: Option<&str>,
    arrivals: &Arc<Mutex<Vec<(String, i64)>>>,
) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let notify = url.map_or_else(String::new, |u| {
        format!("\n[notify]\nurl = \"{u}\"\ntimeout_ms = 2000\n")
    });
    let config = format!(
        "data_dir = \"{data}\"\n\n[[node]]\nname = \"primary\"\nurl = \"{api}\"\nrole = \"primary\"\n{notify}",
        data = dir.path().display(),
    );
    let served = super::Served::start_with(
        &args.bin,
        dir.path(),
        &config,
        &[("PINWARDEN_NOTIFY_SECRET", SECRET)],
    )?;
    let client = pinwarden::client::DaemonClient::unix(&dir.path().join("pinwarden.sock"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.health().await.is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
            bail!("pinwarden serve did not come up:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Submitted 16 at a time (group-committed): the drain, not the submissions, is timed.
    let t0 = Instant::now();
    let client = &client;
    let submitted: Vec<Result<(), pinwarden::client::ClientError>> =
        futures::stream::iter(cids.iter().enumerate())
            .map(|(i, cid)| async move {
                client
                    .submit(&pinwarden::daemon::wire::SubmitRequest {
                        cid: cid.clone(),
                        job_id: format!("notify-{i}"),
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
    submitted.into_iter().collect::<Result<(), _>>()?;
    loop {
        let health = client.health().await?;
        if health.queue.get("pinned").copied().unwrap_or(0) as usize >= cids.len() {
            break;
        }
        if t0.elapsed() > DRAIN_LIMIT {
            bail!("not drained after {DRAIN_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = t0.elapsed();
    let cpu = cpu_seconds(served.child.id()).unwrap_or(f64::NAN);
    let jobs = client
        .jobs(Some(pinwarden::queue::State::Pinned), cids.len() as u32)
        .await?;
    let mut per_job: Vec<f64> = jobs
        .iter()
        .map(|j| (j.updated_at_ms - j.created_at_ms) as f64)
        .collect();
    per_job.sort_by(f64::total_cmp);
    let mut delivery = Vec::new();
    if url.is_some_and(|u| u.contains("/hooks")) {
        // Give the 200 receiver its events (bounded), then match them to the pins.
        let pinned_at: std::collections::HashMap<String, i64> = jobs
            .iter()
            .flat_map(|j| {
                j.job_ids
                    .iter()
                    .map(move |id| (id.clone(), j.updated_at_ms))
            })
            .collect();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let got = arrivals.lock().map(|a| a.len()).unwrap_or(0);
            if got >= cids.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Ok(a) = arrivals.lock() {
            for (job, at) in a.iter() {
                if let Some(p) = pinned_at.get(job) {
                    delivery.push((at - p) as f64);
                }
            }
        }
        delivery.sort_by(f64::total_cmp);
    }
    Ok(Run {
        wall,
        cpu,
        per_job,
        delivery,
    })
}

/// A receiver answering 200, recording (job id, arrival ms) of each event.
async fn ok_receiver() -> Result<(std::net::SocketAddr, Arc<Mutex<Vec<(String, i64)>>>)> {
    let arrivals: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let log = Arc::clone(&arrivals);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let log = Arc::clone(&log);
            async move {
                if let Ok(mut a) = log.lock() {
                    let job = v["job_id"].as_str().unwrap_or_default().to_string();
                    a.push((job, pinwarden::daemon::now_ms()));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, arrivals))
}

/// A receiver that accepts connections and never reads or answers.
async fn hanging_receiver() -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(addr)
}

/// User + system CPU seconds of process `pid` so far (`/proc/PID/stat`, clock ticks of 10 ms).
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

pub(super) fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
