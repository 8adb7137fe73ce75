//! `drain` (not in the default set): the outage drain on real Kubo nodes. Two nodes, A (the
//! supernode) and B (a backup, connected to A). `--drain-jobs` HLS directories of `--size-kb`
//! each are uploaded to A unpinned once; every drain pins all of them on B, which fetches every
//! one over bitswap, and B is emptied after each (`pin/rm`, `repo/gc`, untimed), so every drain
//! starts from the same B and moves the same blocks:
//!
//! * **bare**: B's own direct pin rate: `pin/add` of each CID on B, 10 at a time (the daemon's
//!   default `concurrent_pins`), with a plain HTTP client;
//! * **pinwarden**: a fresh `pinwarden serve` with A as the primary behind a proxy whose
//!   `pin/add` accepts and then stalls forever (`StallMidStream`: the Oct 2025 supernode), B the
//!   backup, tank-mode with default parameters; every job submitted lazily at once over the
//!   socket; the clock stops when the queue counts every pin `pinned`;
//! * **gated**: the bare pins with the persistence gate a careful script adds (`pin/ls`, one
//!   offline `refs` walk).
//!
//! After one unmeasured bare drain (a cold backup pinned 1.5x faster at the end of a long run
//! than at its start), `--drain-reps` repetitions of bare, pinwarden, gated, and a last bare.
//! Each repetition's pinwarden and gated drains are compared with the mean rate of the bare
//! drain that opens the repetition and the one that opens the next (or the last), so a
//! drifting node moves both sides of a ratio.
//! Reported: each repetition's ratios, overall and after the first wave (the first jobs wait
//! for the policy's hedge of the quiet primary), and their medians; the CPU each Kubo node
//! spent per pin in each drain (on a 2-core machine the three processes share the cores, so
//! what the backup or pinwarden spends more per pin, the drain loses in rate). With
//! `--drain-against PATH`, every repetition also drains with that binary, before or after
//! `--bin` in turn, and the two are compared.

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
/// How long a direct `pin/add` may take before the drain gives up on it and asks again.
const DIRECT_PIN_BOUND: Duration = Duration::from_secs(60);
/// CIDs per `pin/rm` when B is emptied.
const RM_BATCH: usize = 100;

/// One repetition's drains.
struct Rep {
    bare: Duration,
    pinwarden: Duration,
    first_wave: Option<(Duration, usize)>,
    gated: Duration,
    /// The two Kubo nodes' CPU (user + system, s) during each drain: bare, pinwarden, gated.
    kubo_cpu: [[f64; 2]; 3],
    /// `--drain-against`'s drain, right after pinwarden's: its time and first wave.
    against: Option<(Duration, Option<(Duration, usize)>)>,
}

/// CPU seconds each of `pids` has used so far (NaN where it cannot be read).
fn cpu_now(pids: &[u32]) -> [f64; 2] {
    let read = |i: usize| {
        pids.get(i)
            .and_then(|&pid| cpu_seconds(pid))
            .unwrap_or(f64::NAN)
    };
    [read(0), read(1)]
}

/// CPU the nodes used from `before` to now.
fn cpu_since(pids: &[u32], before: [f64; 2]) -> [f64; 2] {
    let now = cpu_now(pids);
    [now[0] - before[0], now[1] - before[1]]
}

/// A with `n` HLS directories uploaded unpinned, B connected to it.
struct Nodes {
    cluster: IpfsCluster,
    /// A's and B's daemons, for their CPU.
    pids: Vec<u32>,
    b: KuboClient,
    /// A's swarm addresses.
    addrs: Vec<String>,
    cids: Vec<String>,
    api_b: String,
}

impl Nodes {
    async fn start(args: &Args, n: usize) -> Result<Nodes> {
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
        let mut cids = Vec::with_capacity(n);
        for i in 0..n {
            let (_tmp, dir) = make_hls_dir(&format!("drain-{i}"), args.size_kb << 10, 4)?;
            cids.push(a.add_dir(&dir).await?);
        }
        let api_b = cluster.api_url(1);
        Ok(Nodes {
            pids: cluster.pids(),
            cluster,
            b,
            addrs,
            cids,
            api_b,
        })
    }

    async fn empty_b(&self) -> Result<()> {
        empty(&self.b, &self.addrs, &self.api_b, &self.cids).await
    }

    /// B pins every CID directly, making `calls` around each `pin/add` (see [`direct_drain`]).
    async fn direct(&self, calls: Calls) -> Result<Duration> {
        direct_drain(&self.api_b, &self.cids, calls, &self.addrs).await
    }

    /// `drain`, then B emptied for the next one: what it returned, and the CPU the two nodes
    /// used during it (not while B was emptied).
    async fn measured<T>(&self, drain: impl Future<Output = Result<T>>) -> Result<(T, [f64; 2])> {
        let before = cpu_now(&self.pids);
        let drained = drain.await?;
        let cpu = cpu_since(&self.pids, before);
        self.empty_b().await?;
        Ok((drained, cpu))
    }
}

/// `drain-calls` (not in the default set): what each of the calls pinwarden makes on a Kubo
/// backup costs it, without pinwarden: direct drains of B (as in `drain`) with one more call
/// each, then all of them, in `--drain-reps` repetitions; the rate against the bare drains of
/// the same repetition (each repetition starts one profile later), and the CPU each node spent
/// per pin.
pub(super) async fn calls(args: &Args) -> Result<()> {
    let n = args.drain_jobs.unwrap_or(100).max(1);
    let reps = args.drain_reps.max(1);
    println!(
        "\n== drain-calls: {n} pins of {} KiB on B, bare and with each of pinwarden's calls ({reps} repetitions)",
        args.size_kb
    );
    let nodes = Nodes::start(args, n).await?;
    let one = |f: fn(&mut Calls)| {
        let mut c = Calls::BARE;
        f(&mut c);
        c
    };
    let profiles = [
        Calls::BARE,
        one(|c| c.hint = true),
        one(|c| c.guard = true),
        one(|c| c.progress = true),
        Calls::GATED,
        Calls::PINWARDEN,
    ];
    let (warmup, _) = nodes.measured(nodes.direct(Calls::BARE)).await?;
    println!("warm-up (not compared): {:.2} s", warmup.as_secs_f64());
    // Per profile: the rate against the repetition's bare drain, and A's and B's CPU per pin.
    let mut seen: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); profiles.len()];
    for rep in 1..=reps {
        // Each repetition starts one profile later, so none always drains on the warmest node.
        let mut rates = vec![f64::NAN; profiles.len()];
        for k in 0..profiles.len() {
            let i = (k + rep - 1) % profiles.len();
            let calls = profiles[i];
            let (took, cpu) = nodes.measured(nodes.direct(calls)).await?;
            rates[i] = n as f64 / took.as_secs_f64();
            println!(
                "repetition {rep}: {:<45} {:.2}/s, A {:.1} ms / B {:.1} ms of CPU per pin",
                calls.name(),
                rates[i],
                cpu[0] * 1e3 / n as f64,
                cpu[1] * 1e3 / n as f64
            );
            seen[i].1.push(cpu[0] * 1e3 / n as f64);
            seen[i].2.push(cpu[1] * 1e3 / n as f64);
        }
        for (i, rate) in rates.iter().enumerate() {
            seen[i].0.push(rate / rates[0]);
        }
    }
    println!(
        "\n| calls on B per pin | rate, x bare (median) | A CPU ms per pin | B CPU ms per pin |"
    );
    println!("|---|---|---|---|");
    for (calls, (x, a, b)) in profiles.iter().zip(&seen) {
        println!(
            "| {} | {:.3}x | {:.1} | {:.1} |",
            calls.name(),
            median(x),
            median(a),
            median(b)
        );
    }
    Ok(())
}

pub(super) async fn drain(args: &Args) -> Result<()> {
    let n = args.drain_jobs.unwrap_or(100).max(1);
    let reps = args.drain_reps.max(1);
    println!(
        "\n== drain: {n} lazy jobs of {} KiB behind a Kubo primary whose pin/add stalls, against the backup's direct pin rate ({reps} repetitions)",
        args.size_kb
    );
    let nodes = Nodes::start(args, n).await?;
    let stalling = FaultProxy::start(&nodes.cluster.api_url(0)).await?;
    stalling.set_mode(Mode::StallMidStream).await;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let primary = stalling.url();
    let pinwarden = async |bin: &std::path::Path| {
        pinwarden_drain(args, bin, &primary, &nodes.api_b, &nodes.cids).await
    };

    let (warmup, _) = nodes.measured(nodes.direct(Calls::BARE)).await?;
    println!(
        "warm-up: B pins {n} directly (not compared): {:.2} s, {:.2} pins/s",
        warmup.as_secs_f64(),
        rate(warmup)
    );
    let mut runs = Vec::with_capacity(reps);
    for rep in 1..=reps {
        let (bare, bare_cpu) = nodes.measured(nodes.direct(Calls::BARE)).await?;
        // The other binary goes first in every second repetition, so neither always drains
        // on the nodes the other has just worked.
        let mut against = None;
        let other_first = rep % 2 == 0;
        let other = async || -> Result<_> {
            let Some(bin) = &args.drain_against else {
                return Ok(None);
            };
            println!("the same drain with {}:", bin.display());
            Ok(Some(nodes.measured(pinwarden(bin)).await?.0))
        };
        if other_first {
            against = other().await?;
        }
        let ((drained, first_wave), pinwarden_cpu) = nodes.measured(pinwarden(&args.bin)).await?;
        if !other_first {
            against = other().await?;
        }
        let (gated, gated_cpu) = nodes.measured(nodes.direct(Calls::GATED)).await?;
        println!(
            "repetition {rep}: bare {:.2} s ({:.2}/s), pinwarden {:.2} s ({:.2}/s), gated {:.2} s ({:.2}/s)",
            bare.as_secs_f64(),
            rate(bare),
            drained.as_secs_f64(),
            rate(drained),
            gated.as_secs_f64(),
            rate(gated)
        );
        runs.push(Rep {
            bare,
            pinwarden: drained,
            first_wave,
            gated,
            kubo_cpu: [bare_cpu, pinwarden_cpu, gated_cpu],
            against,
        });
    }
    let last = nodes.direct(Calls::BARE).await?;
    println!(
        "last bare drain: {:.2} s ({:.2}/s)",
        last.as_secs_f64(),
        rate(last)
    );

    report(n, &runs, last);
    Ok(())
}

/// The table of repetitions for BENCHMARKS.md, and the medians of its ratios: each repetition
/// against the mean of the bare drain that opens it and the one that opens the next (or `last`).
fn report(n: usize, runs: &[Rep], last: Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "\n| rep | bare before / after pins/s | gated, x bare | pinwarden whole, x bare | first wave | after it, x bare | after it, x gated |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (mut whole, mut steady_bare, mut steady_gated, mut gated_x) =
        (vec![], vec![], vec![], vec![]);
    for (i, r) in runs.iter().enumerate() {
        let after = runs.get(i + 1).map_or(last, |next| next.bare);
        let bare_rate = (rate(r.bare) + rate(after)) / 2.0;
        let gated_rate = rate(r.gated);
        whole.push(rate(r.pinwarden) / bare_rate);
        gated_x.push(gated_rate / bare_rate);
        let mut wave = "-".to_string();
        let mut steady_cells = "- | -".to_string();
        if let Some((t, done)) = r.first_wave
            && done < n
        {
            let steady = (n - done) as f64 / (r.pinwarden - t).as_secs_f64();
            steady_bare.push(steady / bare_rate);
            steady_gated.push(steady / gated_rate);
            wave = format!("{done} at {:.2} s", t.as_secs_f64());
            steady_cells = format!(
                "{steady:.2}/s, {:.3}x | {:.3}x",
                steady / bare_rate,
                steady / gated_rate
            );
        }
        println!(
            "| {} | {:.2} / {:.2} | {gated_rate:.2}/s, {:.3}x | {:.2} s, {:.2}/s, **{:.3}x** | {wave} | {steady_cells} |",
            i + 1,
            rate(r.bare),
            rate(after),
            gated_rate / bare_rate,
            r.pinwarden.as_secs_f64(),
            rate(r.pinwarden),
            rate(r.pinwarden) / bare_rate,
        );
    }
    // What each way of pinning cost the nodes: a backup that works harder per pin under
    // pinwarden (its extra calls) pins slower on a shared machine, whatever pinwarden's own CPU.
    println!("\n| rep | A / B CPU ms per pin: bare | pinwarden | gated |");
    println!("|---|---|---|---|");
    let per_pin = |c: [f64; 2]| {
        format!(
            "{:.1} / {:.1}",
            c[0] * 1e3 / n as f64,
            c[1] * 1e3 / n as f64
        )
    };
    for (i, r) in runs.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} |",
            i + 1,
            per_pin(r.kubo_cpu[0]),
            per_pin(r.kubo_cpu[1]),
            per_pin(r.kubo_cpu[2])
        );
    }
    against(n, runs);
    println!(
        "medians over {} repetitions: pinwarden whole drain {:.3}x bare; after the first wave {:.3}x bare, {:.3}x gated; gated {:.3}x bare",
        runs.len(),
        median(&whole),
        median(&steady_bare),
        median(&steady_gated),
        median(&gated_x),
    );
}

/// With `--drain-against`: each repetition's pinwarden drain against the other binary's, run
/// next to it on the same nodes (above 1: `--bin` drained faster).
fn against(n: usize, runs: &[Rep]) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let steady = |total: Duration, wave: Option<(Duration, usize)>| {
        wave.filter(|&(_, done)| done < n)
            .map(|(t, done)| (n - done) as f64 / (total - t).as_secs_f64())
    };
    let (mut whole, mut after) = (vec![], vec![]);
    for (i, r) in runs.iter().enumerate() {
        let Some((other, other_wave)) = r.against else {
            continue;
        };
        whole.push(rate(r.pinwarden) / rate(other));
        let ratio = steady(r.pinwarden, r.first_wave)
            .zip(steady(other, other_wave))
            .map(|(a, b)| a / b);
        after.extend(ratio);
        println!(
            "repetition {}: --bin {:.2}/s, --drain-against {:.2}/s: whole {:.3}x, after the first wave {}",
            i + 1,
            rate(r.pinwarden),
            rate(other),
            rate(r.pinwarden) / rate(other),
            ratio.map_or("-".to_string(), |x| format!("{x:.3}x")),
        );
    }
    if !whole.is_empty() {
        println!(
            "--bin against --drain-against, medians: whole {:.3}x, after the first wave {:.3}x",
            median(&whole),
            median(&after)
        );
    }
}

/// The median of ratios (NaN when there are none).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    pct(&sorted, 0.5)
}

/// Empties B for the next drain: unpins every CID, then collects their blocks, so the next
/// drain fetches all of them again from A, over a new connection to A (`a_addrs`). Over the old
/// connection a drain after a `repo/gc` can hang: one of 300 pins waited for good on wants that
/// never reached A (Kubo 0.43.1; seen 2026-12-07 and reproduced 2026-12-08), while a small
/// case goes through (`kubo_daemon::a_backup_fetches_over_its_connection_after_a_repo_gc`).
async fn empty(b: &KuboClient, a_addrs: &[String], api: &str, cids: &[String]) -> Result<()> {
    let http = rpc_client()?;
    for batch in cids.chunks(RM_BATCH) {
        let mut args: Vec<(&str, &str)> = batch.iter().map(|c| ("arg", c.as_str())).collect();
        args.push(("recursive", "true"));
        let reply = http.post(rpc_url(api, "pin/rm", &args)?).send().await?;
        // Every drain pinned every CID (an unfinished drain is an error before this).
        let status = reply.status();
        if !status.is_success() {
            bail!("pin/rm on B: HTTP {status}: {}", reply.text().await?);
        }
    }
    b.repo_gc().await.context("repo/gc on B")?;
    match b.reconnect(a_addrs).await {
        pinwarden::Outcome::Ok => Ok(()),
        other => bail!("B cannot reconnect to A: {other:?}"),
    }
}

/// Which of pinwarden's calls a direct drain makes around each `pin/add`.
#[derive(Clone, Copy, Default)]
struct Calls {
    /// `swarm/connect` to A first (pinwarden's provider hint).
    hint: bool,
    /// `pin/ls` first (pinwarden's re-pin guard).
    guard: bool,
    /// `pin/add` with `progress=true`, read to the end.
    progress: bool,
    /// `pin/ls` after (the verify of the persistence gate).
    verify: bool,
    /// One offline recursive `refs` after (the gate's block check).
    check: bool,
}

impl Calls {
    const BARE: Calls = Calls {
        hint: false,
        guard: false,
        progress: false,
        verify: false,
        check: false,
    };
    /// The persistence gate a careful script adds.
    const GATED: Calls = Calls {
        verify: true,
        check: true,
        ..Calls::BARE
    };
    /// Every call pinwarden makes on a Kubo backup in a round.
    const PINWARDEN: Calls = Calls {
        hint: true,
        guard: true,
        progress: true,
        verify: true,
        check: true,
    };

    fn name(self) -> String {
        let parts: Vec<&str> = [
            (self.hint, "hint"),
            (self.guard, "guard"),
            (self.progress, "progress"),
            (self.verify, "verify"),
            (self.check, "check"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        if parts.is_empty() {
            "bare pin/add".into()
        } else {
            format!("pin/add + {}", parts.join(" + "))
        }
    }
}

/// B pins every CID with a plain client, [`CONCURRENCY`] at a time, making `calls` around each
/// `pin/add` (`a_addrs`: A's addresses, for the hint).
async fn direct_drain(
    api: &str,
    cids: &[String],
    calls: Calls,
    a_addrs: &[String],
) -> Result<Duration> {
    let http = rpc_client()?;
    // `guard`: the re-pin guard's `pin/ls`, whose 500 ("not pinned") is the expected answer.
    let call = |path: &'static str, args: Vec<(&'static str, String)>, guard: bool| {
        let http = http.clone();
        async move {
            let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = http.post(rpc_url(api, path, &args)?).send().await?;
            let status = reply.status();
            let body = reply.text().await?;
            let not_pinned = status.as_u16() == 500 && body.contains("not pinned");
            if !(status.is_success() || guard && not_pinned) {
                bail!("{path}: HTTP {status}: {body}");
            }
            Ok(())
        }
    };
    let hint = a_addrs.first().cloned().unwrap_or_default();
    let hung = std::sync::atomic::AtomicUsize::new(0);
    let hung = &hung;
    let t0 = Instant::now();
    let results: Vec<Result<u64>> = futures::stream::iter(cids)
        .map(|cid| {
            let hint = hint.clone();
            async move {
                let arg = || ("arg", cid.clone());
                if calls.hint {
                    call("swarm/connect", vec![("arg", hint)], false).await?;
                }
                if calls.guard {
                    call("pin/ls", vec![arg(), ("type", "recursive".into())], true).await?;
                }
                let mut pin = vec![arg(), ("recursive", "true".into())];
                if calls.progress {
                    pin.push(("progress", "true".into()));
                }
                let pin_started = Instant::now();
                // A plain client's pin can hang for good: Kubo 0.43.1 was seen holding a
                // `pin/add` 14 min on wants for blocks already in its blockstore. A careful
                // script gives up and asks again (the blocks are there by then), as a
                // pinwarden stall timeout does; the drain counts it.
                let bounded =
                    tokio::time::timeout(DIRECT_PIN_BOUND, call("pin/add", pin.clone(), false));
                if bounded.await.is_err() {
                    hung.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("  {cid}: pin/add on B hung for {DIRECT_PIN_BOUND:?}; asking again");
                    call("pin/add", pin, false).await?;
                }
                let pin_ms = pin_started.elapsed().as_millis() as u64;
                if calls.verify {
                    call("pin/ls", vec![arg(), ("type", "recursive".into())], false).await?;
                }
                if calls.check {
                    let walk = [
                        ("recursive", "true"),
                        ("unique", "true"),
                        ("offline", "true"),
                    ];
                    let mut args = vec![arg()];
                    args.extend(walk.map(|(k, v)| (k, v.to_string())));
                    call("refs", args, false).await?;
                }
                Ok(pin_ms)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let took = t0.elapsed();
    let pins: Vec<u64> = results.into_iter().collect::<Result<_>>()?;
    // The same figures as the pinwarden drain's `pin backup-1` row, to compare the pins.
    println!(
        "  {}: pin/add p50 {:.0} ms, p90 {:.0} ms, {:.2} s{}",
        calls.name(),
        percentile(&pins, 0.5),
        percentile(&pins, 0.9),
        took.as_secs_f64(),
        match hung.load(std::sync::atomic::Ordering::Relaxed) {
            0 => String::new(),
            k => format!(", {k} pin/add hung and asked again (not comparable)"),
        }
    );
    Ok(took)
}

/// Submits every CID lazily to a fresh `pinwarden serve` and waits until all are pinned.
/// Returns the total time, and when the first wave (the first [`CONCURRENCY`] pins) was done.
async fn pinwarden_drain(
    args: &Args,
    bin: &std::path::Path,
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
    let served = super::Served::start(bin, dir.path(), &config)?;
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
                    "pinwarden serve used {cpu:.2} s of CPU (user + system) over the {:.2} s drain, {:.2} ms per job",
                    took.as_secs_f64(),
                    cpu * 1e3 / cids.len() as f64
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
        // The share of the slots' time spent inside rounds: what is left is the worker's own
        // (claiming the next pin, recording the end) and waiting for work.
        let busy: u64 = lengths.iter().sum();
        let span = (end - t0).max(1) as f64;
        println!(
            "  slots busy {:.1} % of the {:.2} s from the first round's start to the last one's end",
            100.0 * busy as f64 / (CONCURRENCY as f64 * span),
            span / 1000.0
        );
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
