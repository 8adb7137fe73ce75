//! `rollout`: round records, replay and shadow, in this process (no node: the rounds run on
//! the simulator's scripted nodes, the same executor as a daemon's).
//!
//! * record size: `--jobs` rounds (default in this part: 10,000) of the built-in scenarios'
//!   nodes under tank-mode, written through the daemon's `Recorder`; bytes on disk per round;
//! * replay: the same records replayed under tank-mode (zero divergences) and single-backup
//!   (divergences predicted in the simulator): wall time, and per decision;
//! * shadow: the live rounds' decision time (the executor's own measure of each `decide`)
//!   with no shadow and with single-backup in shadow, in pairs on the same nodes (which goes
//!   first alternating), in five blocks: each block's ratio and their median.

use anyhow::{Context, Result, ensure};
use pinwarden::executor::RoundLimits;
use pinwarden::policy::contract::Job;
use pinwarden::policy::{Policy, PolicyEngine, Registry};
use pinwarden::rounds::shadow::Shadow;
use pinwarden::rounds::store::{self, Limits, Recorder};
use pinwarden::rounds::{RoundRecord, replay};
use pinwarden::sim::Scenario;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn job(i: usize) -> Job {
    Job {
        cid: format!("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzd{i}"),
        job_id: format!("bench-{i}"),
        size_bytes: 25 << 20,
        lazy: false,
        failed_rounds: 0,
    }
}

/// One round on the `i`-th scenario's nodes (cycling), and how long its decisions took.
fn round(
    live: &Policy,
    fallback: &Policy,
    scenarios: &[Scenario],
    i: usize,
    shadow: Option<&Arc<Shadow>>,
) -> Result<(RoundRecord, u64)> {
    let s = &scenarios[i % scenarios.len()];
    let job = job(i);
    let mut link = shadow.map(|s| s.round());
    let result = pinwarden::sim::run_round_shadowed_on(
        live,
        fallback,
        &job,
        s.nodes.clone(),
        &RoundLimits::default(),
        link.as_mut(),
    )
    .map_err(anyhow::Error::msg)?;
    let nanos = result.decision_nanos.iter().sum();
    Ok((
        RoundRecord::new("bench", 0, &job, live, fallback, &result),
        nanos,
    ))
}

pub fn rollout(rounds: usize) -> Result<()> {
    println!("\n== rollout: round records, replay, shadow ({rounds} rounds)");
    let registry = Registry::new(PolicyEngine::new(Default::default(), None)?);
    let builtin = |name: &str| -> Result<Arc<Policy>> {
        registry
            .builtin(name, &[])
            .context("built-in")?
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let (tank, single) = (builtin("tank-mode")?, builtin("single-backup")?);
    let scenarios: Vec<Scenario> = Scenario::builtin()
        .into_iter()
        .filter(|s| s.jobs.is_none())
        .collect();

    // Records, written as the daemon writes them.
    let dir = tempfile::tempdir()?;
    let recorder = Recorder::with_limits(
        dir.path(),
        Limits {
            segment_bytes: 8 << 20,
            max_bytes: 1 << 40,
            max_age: Duration::from_secs(86_400),
        },
    );
    let mut records = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let (r, _) = round(&tank, &tank, &scenarios, i, None)?;
        recorder.record(r.clone());
        records.push(r);
    }
    recorder.close();
    let read = store::read(dir.path(), None, None)?;
    ensure!(
        read.records.len() == rounds,
        "{} records read",
        read.records.len()
    );
    let decisions: usize = records.iter().map(|r| r.points.len()).sum();
    println!(
        "records: {rounds} rounds, {decisions} decisions, {} bytes on disk: {:.0} bytes per round ({} dropped)",
        read.bytes,
        read.bytes as f64 / rounds as f64,
        recorder.dropped()
    );

    // Replay.
    for (name, candidate) in [("tank-mode", &tank), ("single-backup", &single)] {
        let t = Instant::now();
        let (_, summary) = replay::replay(&records, candidate, &tank, &RoundLimits::default());
        let took = t.elapsed();
        println!(
            "replay {name}: {} rounds in {:.2} s ({:.1} µs per decision asked); {} agree, {} diverge, {} predicted to end the same",
            summary.rounds,
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / summary.decisions.max(1) as f64,
            summary.agree,
            summary.diverge,
            summary.predicted_same_end
        );
    }

    // Shadow: alternate rounds with and without, so drift hits both alike; five blocks, as
    // one block's ratio moves by a few per cent from run to run.
    let shadow = Shadow::start(
        Arc::clone(&single),
        "single-backup",
        RoundLimits::default(),
        None,
        None,
    )?;
    const BLOCKS: usize = 5;
    let n = rounds.min(2000);
    let mut ratios = Vec::with_capacity(BLOCKS);
    let (mut all_off, mut all_on) = (0u64, 0u64);
    for _ in 0..BLOCKS {
        let (mut off, mut on) = (0u64, 0u64);
        // Pairs of rounds on the same nodes, one with the shadow and one without; which goes
        // first alternates, as the second of a pair finds the caches warm.
        for pair in 0..n / 2 {
            let shadow_first = pair % 2 == 1;
            for with in [shadow_first, !shadow_first] {
                let took = round(&tank, &tank, &scenarios, pair, with.then_some(&shadow))?.1;
                if with {
                    on += took;
                } else {
                    off += took;
                }
            }
        }
        ratios.push(on as f64 / off.max(1) as f64);
        all_off += off;
        all_on += on;
    }
    shadow.stop();
    let report = shadow.report();
    let per = |total: u64| total as f64 / (BLOCKS * n / 2) as f64 / 1e3;
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}x")).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "shadow: live decision time per round {:.1} µs with single-backup in shadow, {:.1} µs without; blocks of {n} rounds: {}; median {:.3}x; the shadow compared {} decisions ({} agree), skipped {}",
        per(all_on),
        per(all_off),
        shown.join(", "),
        ratios[BLOCKS / 2],
        report.decisions,
        report.agree,
        report.skipped
    );
    Ok(())
}
