//! The simulator: the real executor, with scripted nodes and virtual time.
//!
//! Each scenario runs on its own single-threaded tokio runtime with a paused clock: when every
//! task is waiting on a timer, time jumps to the next one, so a 30 s backoff or a 5 minute pin
//! timeout costs no wall time and the run is deterministic.
//!
//! A scenario runs one job, or a stream of them (`[jobs]`): each job is submitted at its time
//! on the virtual clock and runs its rounds through [`run_round`] on one shared [`Topology`],
//! so every job reads and feeds the same node-health ledger, concurrently when they overlap
//! (up to `concurrency` rounds at once, like the daemon's `concurrent_pins`).

pub mod node;
pub mod scenario;

use crate::Role;
use crate::executor::{RoundEnd, RoundLimits, RoundResult, Topology, run_round};
use crate::policy::Policy;
use crate::policy::contract::Job;
use crate::trace::format_ms;
use futures::stream::{FuturesUnordered, StreamExt};
use node::{BreakerWatch, PinCall, SimNode};
pub use scenario::Scenario;
use scenario::{JobSpec, Stream};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until};

/// `policy test` checks a scenario's `[expect]`; `policy check` only its `[contract]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Expect,
    Contract,
}

pub struct Report {
    pub scenario: String,
    pub description: String,
    /// Set when the policy lacks a parameter the scenario needs; the scenario did not run.
    pub not_applicable: Option<String>,
    pub failures: Vec<String>,
    /// Every round, job after job in submission order (one job: its rounds).
    pub rounds: Vec<RoundResult>,
    /// The jobs in submission order: one, unless the scenario has a `[jobs]` stream.
    pub jobs: Vec<JobRun>,
    /// What each node was asked, in topology order.
    pub nodes: Vec<NodeCalls>,
    /// The scenario's `[jobs]` stream, if it has one.
    pub stream: Option<Stream>,
}

/// One job of a scenario. Times are virtual, since the scenario began.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub job_id: String,
    pub submitted_ms: u64,
    pub ended_ms: u64,
    /// Its rounds, as indices into [`Report::rounds`].
    pub rounds: Range<usize>,
}

impl JobRun {
    /// Submitted to ended, waiting for a free slot included.
    pub fn latency_ms(&self) -> u64 {
        self.ended_ms.saturating_sub(self.submitted_ms)
    }
}

/// The pin calls one node received.
#[derive(Debug, Clone)]
pub struct NodeCalls {
    pub name: String,
    pub role: Role,
    pub pins: Vec<PinCall>,
}

impl NodeCalls {
    /// Pins started while the node's circuit breaker was open (probes included).
    pub fn pins_while_open(&self) -> usize {
        self.pins.iter().filter(|c| c.breaker_open).count()
    }

    /// Pins dropped before the node answered (they lost a race, or their round ended).
    pub fn pins_cancelled(&self) -> usize {
        self.pins.iter().filter(|c| c.cancelled).count()
    }
}

/// Per-job latency percentiles (nearest rank), in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(mut ms: Vec<u64>) -> Latency {
        ms.sort_unstable();
        let at = |p: usize| {
            // Nearest rank: the smallest value with at least p% of the values at or below it.
            let rank = (p * ms.len()).div_ceil(100).max(1);
            ms.get(rank - 1).copied().unwrap_or(0)
        };
        Latency {
            p50: at(50),
            p90: at(90),
            p99: at(99),
            max: ms.last().copied().unwrap_or(0),
        }
    }
}

impl Report {
    pub fn passed(&self) -> bool {
        self.not_applicable.is_none() && self.failures.is_empty()
    }

    /// The last round of the last job.
    pub fn final_round(&self) -> Option<&RoundResult> {
        self.rounds.last()
    }

    /// Virtual time until the last job ended.
    pub fn virtual_ms(&self) -> u64 {
        self.jobs.iter().map(|j| j.ended_ms).max().unwrap_or(0)
    }

    pub fn job_rounds(&self, job: &JobRun) -> &[RoundResult] {
        self.rounds.get(job.rounds.clone()).unwrap_or_default()
    }

    /// How `job` ended: its last round.
    pub fn job_end(&self, job: &JobRun) -> Option<&RoundResult> {
        self.job_rounds(job).last()
    }

    pub fn latency(&self) -> Latency {
        Latency::of(self.jobs.iter().map(JobRun::latency_ms).collect())
    }

    /// Jobs that ended with `status`.
    pub fn ended(&self, status: RoundEnd) -> usize {
        self.jobs
            .iter()
            .filter(|j| self.job_end(j).is_some_and(|r| r.status == status))
            .count()
    }

    /// Jobs that ended confirmed on `node`.
    pub fn confirmed_on(&self, node: &str) -> usize {
        self.jobs
            .iter()
            .filter(|j| {
                self.job_end(j)
                    .is_some_and(|r| r.confirmed.iter().any(|n| n == node))
            })
            .count()
    }

    /// The stream's arrival window (`count` × `interval_ms`) and the jobs pinned within it:
    /// the drain rate while jobs keep coming.
    pub fn pinned_while_arriving(&self) -> Option<(usize, u64)> {
        let stream = self.stream?;
        let window = u64::from(stream.count).saturating_mul(stream.interval_ms);
        let pinned = self
            .jobs
            .iter()
            .filter(|j| j.ended_ms <= window)
            .filter(|j| {
                self.job_end(j)
                    .is_some_and(|r| r.status == RoundEnd::Pinned)
            })
            .count();
        (window > 0).then_some((pinned, window))
    }

    pub fn node(&self, name: &str) -> Option<&NodeCalls> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Runs `scenario` under `policy` (whose own parameters are overridden by the scenario's),
/// with `fallback` standing by for incidents.
pub fn run(
    policy: &Policy,
    fallback: &Policy,
    scenario: &Scenario,
    mode: Mode,
) -> Result<Report, String> {
    let mut report = Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        not_applicable: None,
        failures: Vec::new(),
        rounds: Vec::new(),
        jobs: Vec::new(),
        nodes: Vec::new(),
        stream: scenario.jobs,
    };
    let scenario_params = scenario.param_pairs();
    if let Some((missing, _)) = scenario_params.iter().find(|(k, _)| !policy.declares(k)) {
        report.not_applicable = Some(format!("{} has no parameter '{missing}'", policy.name));
        return Ok(report);
    }
    let mut params = policy.params.clone();
    params.retain(|(k, _)| !scenario_params.iter().any(|(s, _)| s == k));
    params.extend(scenario_params.iter().cloned());
    // The fallback runs with the scenario's parameters it understands, as a contained job would.
    let mut fallback_params = fallback.params.clone();
    fallback_params.retain(|(k, _)| !scenario_params.iter().any(|(s, _)| s == k));
    fallback_params.extend(
        scenario_params
            .iter()
            .filter(|(k, _)| fallback.declares(k))
            .cloned(),
    );
    let adapted = fallback.with_params(&fallback_params).ok();
    let fallback = adapted.as_ref().unwrap_or(fallback);
    let policy = match policy.with_params(&params) {
        Ok(p) => p,
        Err(incident) => {
            report
                .failures
                .push(format!("cannot configure: {incident}"));
            return Ok(report);
        }
    };

    let (jobs, nodes) = on_virtual_time(simulate(&policy, fallback, scenario))?;
    for (submitted_ms, ended_ms, job_id, rounds) in jobs {
        let first = report.rounds.len();
        report.rounds.extend(rounds);
        report.jobs.push(JobRun {
            job_id,
            submitted_ms,
            ended_ms,
            rounds: first..report.rounds.len(),
        });
    }
    report.nodes = nodes;
    report.failures = judge(scenario, &report, mode);
    Ok(report)
}

/// One round of `job` on nodes scripted by `scripts`, on virtual time: what `policy replay`
/// predicts a diverging round with (the same executor as every simulation).
pub fn run_round_on(
    policy: &Policy,
    fallback: &Policy,
    job: &Job,
    scripts: Vec<node::NodeScript>,
    limits: &RoundLimits,
) -> Result<RoundResult, String> {
    run_round_shadowed_on(policy, fallback, job, scripts, limits, None)
}

/// [`run_round_on`] with a shadow asked beside the policy (a round's link to it, which the
/// caller keeps to hand the shadow the round's record).
pub fn run_round_shadowed_on(
    policy: &Policy,
    fallback: &Policy,
    job: &Job,
    scripts: Vec<node::NodeScript>,
    limits: &RoundLimits,
    shadow: Option<&mut crate::rounds::shadow::ShadowRound>,
) -> Result<RoundResult, String> {
    on_virtual_time(async {
        let epoch = Instant::now();
        let mut topology = Topology::new();
        for script in scripts {
            script.check()?;
            let node = Arc::new(SimNode::starting_at(script, epoch, None));
            let (name, role) = (node.name().to_string(), node.role());
            topology.add(&name, role, node as _);
        }
        Ok(crate::executor::run_round_shadowed(
            policy,
            fallback,
            job,
            &[],
            &topology,
            limits,
            shadow,
        )
        .await)
    })?
}

/// Runs `work` on a single-threaded runtime with a paused clock (time jumps to the next timer
/// when every task waits), with the live job log silenced: simulated rounds report through
/// their trace.
fn on_virtual_time<R>(work: impl std::future::Future<Output = R>) -> Result<R, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the simulation runtime: {e}"))?;
    let quiet = tracing::subscriber::NoSubscriber::default();
    let _silenced = tracing::subscriber::set_default(quiet);
    Ok(runtime.block_on(work))
}

/// A finished job: submitted and ended (virtual ms), its id and its rounds.
type Finished = (u64, u64, String, Vec<RoundResult>);

/// Submits the scenario's jobs on the virtual clock and runs them to their end.
async fn simulate(
    policy: &Policy,
    fallback: &Policy,
    scenario: &Scenario,
) -> (Vec<Finished>, Vec<NodeCalls>) {
    let epoch = Instant::now();
    let mut topology = Topology::new();
    // The breaker as the policy configures it (host defaults for a policy without one), so
    // "pins while open" means what the policy's own breaker means.
    let watch = BreakerWatch {
        ledger: Arc::clone(topology.ledger()),
        thresholds: crate::health::Thresholds::of(policy),
    };
    let nodes: Vec<Arc<SimNode>> = scenario
        .nodes
        .iter()
        .map(|script| {
            let node = SimNode::starting_at(script.clone(), epoch, Some(watch.clone()));
            Arc::new(node)
        })
        .collect();
    for node in &nodes {
        topology.add(node.name(), node.role(), Arc::clone(node) as _);
    }

    let stream = scenario.stream();
    let several = scenario.jobs.is_some();
    let (topology, slots, limits) = (
        &topology,
        &Semaphore::new(stream.concurrency),
        &RoundLimits::default(),
    );
    // One future per job, polled together on this thread (not spawned: they borrow the policy
    // and topology), so jobs overlap as a daemon's would, deterministically.
    let mut running: FuturesUnordered<_> = (0..stream.count)
        .map(|i| {
            let job = job_of(&scenario.job, several.then_some(i + 1));
            let submitted_ms = u64::from(i).saturating_mul(stream.interval_ms);
            async move {
                sleep_until(epoch + Duration::from_millis(submitted_ms)).await;
                let job_id = job.job_id.clone();
                let rounds = run_job(
                    policy,
                    fallback,
                    &scenario.job,
                    job,
                    topology,
                    slots,
                    limits,
                )
                .await;
                let ended_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                (i, (submitted_ms, ended_ms, job_id, rounds))
            }
        })
        .collect();
    let mut finished = Vec::new();
    while let Some(job) = running.next().await {
        finished.push(job);
    }
    finished.sort_by_key(|(i, _)| *i);
    let finished = finished.into_iter().map(|(_, job)| job).collect();
    let calls = nodes
        .iter()
        .map(|n| NodeCalls {
            name: n.name().to_string(),
            role: n.role(),
            pins: n.pin_calls(),
        })
        .collect();
    (finished, calls)
}

/// The scenario's job, or job `n` of its stream (its own CID and id: the nodes pin per CID).
fn job_of(spec: &JobSpec, n: Option<u32>) -> Job {
    let suffix = n.map(|n| format!("-{n}")).unwrap_or_default();
    Job {
        cid: format!("{}{suffix}", spec.cid),
        job_id: format!("{}{suffix}", spec.job_id),
        size_bytes: spec.size_bytes,
        lazy: spec.lazy,
        failed_rounds: 0,
    }
}

/// A job's rounds: one, or for a lazy job, again while it fails (up to `max_rounds`).
async fn run_job(
    policy: &Policy,
    fallback: &Policy,
    spec: &JobSpec,
    job: Job,
    topology: &Topology,
    slots: &Semaphore,
    limits: &RoundLimits,
) -> Vec<RoundResult> {
    let mut rounds = Vec::new();
    for round in 0..spec.max_rounds {
        let job = Job {
            failed_rounds: round,
            ..job.clone()
        };
        // A round holds a slot, as in the daemon; the semaphore is never closed.
        let _slot = slots.acquire().await.ok();
        let result = run_round(policy, fallback, &job, &[], topology, limits).await;
        let again = spec.lazy && result.status == RoundEnd::Failed;
        rounds.push(result);
        if !again {
            break;
        }
    }
    rounds
}

/// At most this many lines for one kind of failure; the rest are counted.
const SHOWN: usize = 5;

fn judge(scenario: &Scenario, report: &Report, mode: Mode) -> Vec<String> {
    let mut failures = Vec::new();
    if report.rounds.is_empty() {
        return vec!["no round ran".into()];
    }
    let incidents: Vec<String> = report
        .rounds
        .iter()
        .flat_map(|r| &r.incidents)
        .map(|i| format!("policy incident: {i}"))
        .collect();
    let more = incidents.len().saturating_sub(SHOWN);
    failures.extend(incidents.into_iter().take(SHOWN));
    if more > 0 {
        failures.push(format!("... and {more} more policy incidents"));
    }
    if mode == Mode::Contract {
        if let Some(status) = scenario.contract.status {
            per_job(report, &mut failures, |last, _| {
                (last.status != status)
                    .then(|| format!("ended {}, any policy must end {status}", last.status))
            });
        }
        return failures;
    }
    let expect = &scenario.expect;
    per_job(report, &mut failures, |last, _| {
        (last.status != expect.status).then(|| {
            let why = last
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("ended {}{why}, expected {}", last.status, expect.status)
        })
    });
    if let Some(nodes) = &expect.nodes {
        let mut want = nodes.clone();
        want.sort();
        per_job(report, &mut failures, |last, _| {
            let mut got = last.confirmed.clone();
            got.sort();
            (want != got).then(|| format!("confirmed on {got:?}, expected {want:?}"))
        });
    }
    if let Some(prefix) = &expect.reason_starts_with {
        per_job(report, &mut failures, |last, _| match &last.reason {
            Some(reason) if reason.starts_with(prefix.as_str()) => None,
            other => Some(format!("reason {other:?} does not start with '{prefix}'")),
        });
    }
    for (node, want) in &expect.pins {
        let got: usize = report
            .rounds
            .iter()
            .flat_map(|r| r.attempts())
            .filter(|(n, _)| n == node)
            .map(|(_, c)| c)
            .sum();
        if got != *want {
            failures.push(format!("{got} pin attempts on {node}, expected {want}"));
        }
    }
    if let Some(want) = expect.rounds {
        per_job(report, &mut failures, |_, rounds| {
            (rounds.len() != want).then(|| format!("{} rounds, expected {want}", rounds.len()))
        });
    }
    judge_stream(scenario, report, &mut failures);
    failures
}

/// The expectations on a stream's figures: latency, where jobs went, what sick nodes were asked.
fn judge_stream(scenario: &Scenario, report: &Report, failures: &mut Vec<String>) {
    let expect = &scenario.expect;
    let latency = report.latency();
    let bounds = &expect.latency_ms;
    for (name, got, bound) in [
        ("p50", latency.p50, bounds.p50),
        ("p90", latency.p90, bounds.p90),
        ("p99", latency.p99, bounds.p99),
        ("max", latency.max, bounds.max),
    ] {
        if let Some(bound) = bound
            && got > bound
        {
            failures.push(format!(
                "{name} latency {} ({got} ms), expected at most {bound} ms",
                format_ms(got)
            ));
        }
    }
    if let Some([from, until]) = expect.all_pinned_on_backups_between {
        let is_backup = |name: &String| {
            scenario
                .nodes
                .iter()
                .any(|n| &n.name == name && n.role == Role::Backup)
        };
        let window: Vec<&JobRun> = report
            .jobs
            .iter()
            .filter(|j| (from..until).contains(&j.submitted_ms))
            .collect();
        let off: Vec<(&JobRun, String)> = window
            .iter()
            .filter_map(|j| {
                let end = report.job_end(j)?;
                let on_backups = end.status == RoundEnd::Pinned
                    && !end.confirmed.is_empty()
                    && end.confirmed.iter().all(is_backup);
                (!on_backups).then(|| (*j, ended_as(end)))
            })
            .collect();
        if window.is_empty() {
            failures.push(format!("no job was submitted in [{from}, {until}) ms"));
        } else if let Some((job, how)) = off.first() {
            failures.push(format!(
                "{} of {} jobs submitted in [{from}, {until}) ms not pinned on backups only; first: {} ({how})",
                off.len(),
                window.len(),
                describe_job(job)
            ));
        }
    }
    for (node, max) in &expect.max_pins_while_open {
        let got = report.node(node).map_or(0, NodeCalls::pins_while_open);
        if got > *max {
            failures.push(format!(
                "{got} pins on {node} while its breaker was open, expected at most {max}"
            ));
        }
    }
    for (node, want) in &expect.confirmed_after {
        let got = report
            .jobs
            .iter()
            .filter(|j| j.submitted_ms >= want.from_ms)
            .filter(|j| {
                report
                    .job_end(j)
                    .is_some_and(|r| r.confirmed.iter().any(|n| n == node))
            })
            .count();
        if got < want.min_jobs {
            failures.push(format!(
                "{got} jobs submitted from {} ms on confirmed on {node}, expected at least {}",
                want.from_ms, want.min_jobs
            ));
        }
    }
}

/// Checks every job with `check(last round, all rounds)`: one job's failure reads as before
/// streams existed; a stream's names how many jobs failed it and the first.
fn per_job(
    report: &Report,
    failures: &mut Vec<String>,
    mut check: impl FnMut(&RoundResult, &[RoundResult]) -> Option<String>,
) {
    let mut failed = report.jobs.iter().filter_map(|job| {
        let rounds = report.job_rounds(job);
        let message = check(rounds.last()?, rounds)?;
        Some((job, message))
    });
    let Some((first, message)) = failed.next() else {
        return;
    };
    if report.stream.is_none() {
        failures.push(message);
        return;
    }
    let count = 1 + failed.count();
    failures.push(format!(
        "{count} of {} jobs: first, {}: {message}",
        report.jobs.len(),
        describe_job(first)
    ));
}

fn describe_job(job: &JobRun) -> String {
    format!(
        "{} (submitted at {})",
        job.job_id,
        format_ms(job.submitted_ms)
    )
}

fn ended_as(round: &RoundResult) -> String {
    match round.status {
        RoundEnd::Failed => format!("failed: {}", round.reason.as_deref().unwrap_or("?")),
        status => format!("{status} on {}", round.confirmed.join(", ")),
    }
}

/// What `policy check` (and a live policy swap) demands: in every applicable built-in
/// scenario the policy ends without an incident and reaches the scenario's contract.
/// Returns (scenarios run, not applicable), or the first failure.
pub fn check_contract(policy: &Policy, fallback: &Policy) -> Result<(usize, usize), String> {
    check_contract_with(policy, fallback, &mut |_| {})
}

/// A check quicker than this is not worth a progress line.
pub const QUIET_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The built-in scenario a check is about to run: a slow policy's check takes minutes, and
/// whoever waits on it is told where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckStep<'a> {
    pub scenario: &'a str,
    /// 1-based.
    pub index: usize,
    pub total: usize,
}

impl CheckStep<'_> {
    /// The progress line a waiting operator is shown (by `policy check`, and by the CLI
    /// while the daemon checks a candidate).
    pub fn line(&self, policy: &str, elapsed: std::time::Duration) -> String {
        format!(
            "checking {policy}: built-in scenario {} of {} ({}), {:.0} s so far",
            self.index,
            self.total,
            self.scenario,
            elapsed.as_secs_f64()
        )
    }
}

/// [`check_contract`], calling `on_step` before each scenario.
pub fn check_contract_with(
    policy: &Policy,
    fallback: &Policy,
    on_step: &mut dyn FnMut(CheckStep<'_>),
) -> Result<(usize, usize), String> {
    let (mut ran, mut skipped) = (0, 0);
    let scenarios = Scenario::builtin();
    for (i, scenario) in scenarios.iter().enumerate() {
        on_step(CheckStep {
            scenario: &scenario.name,
            index: i + 1,
            total: scenarios.len(),
        });
        let report = run(policy, fallback, scenario, Mode::Contract)?;
        if report.not_applicable.is_some() {
            skipped += 1;
            continue;
        }
        if let Some(failure) = report.failures.first() {
            return Err(format!(
                "fails built-in scenario '{}': {failure}",
                scenario.name
            ));
        }
        ran += 1;
    }
    Ok((ran, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latency::of((1..=100).rev().collect());
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50, 90, 99, 100));
        let l = Latency::of(vec![7, 3]);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (3, 7, 7, 7));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }
}
