//! The simulator: the real executor, with scripted nodes and virtual time.
//!
//! Each scenario runs on its own single-threaded tokio runtime with a paused clock: when every
//! task is waiting on a timer, time jumps to the next one, so a 30 s backoff or a 5 minute pin
//! timeout costs no wall time and the run is deterministic.

pub mod node;
pub mod scenario;

use crate::executor::{RoundLimits, RoundResult, Status, Topology, run_round};
use crate::policy::Policy;
use crate::policy::contract::Job;
use node::SimNode;
pub use scenario::Scenario;
use std::sync::Arc;

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
    pub rounds: Vec<RoundResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.not_applicable.is_none() && self.failures.is_empty()
    }

    pub fn final_round(&self) -> Option<&RoundResult> {
        self.rounds.last()
    }

    /// Virtual time over all rounds.
    pub fn virtual_ms(&self) -> u64 {
        self.rounds.iter().map(|r| r.elapsed_ms).sum()
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

    let mut topology = Topology::new();
    for script in &scenario.nodes {
        topology.add(
            &script.name,
            script.role,
            Arc::new(SimNode::new(script.clone())),
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the simulation runtime: {e}"))?;
    let limits = RoundLimits::default();
    // Simulated rounds report through their trace; the live job log would only repeat it.
    let quiet = tracing::subscriber::NoSubscriber::default();
    let _silenced = tracing::subscriber::set_default(quiet);
    runtime.block_on(async {
        for round in 0..scenario.job.max_rounds {
            let job = Job {
                cid: scenario.job.cid.clone(),
                job_id: scenario.job.job_id.clone(),
                size_bytes: scenario.job.size_bytes,
                lazy: scenario.job.lazy,
                failed_rounds: round,
            };
            let result = run_round(&policy, fallback, &job, &topology, &limits).await;
            let again = scenario.job.lazy && result.status == Status::Failed;
            report.rounds.push(result);
            if !again {
                break;
            }
        }
    });
    report.failures = judge(scenario, &report.rounds, mode);
    Ok(report)
}

fn judge(scenario: &Scenario, rounds: &[RoundResult], mode: Mode) -> Vec<String> {
    let mut failures = Vec::new();
    let Some(last) = rounds.last() else {
        return vec!["no round ran".into()];
    };
    for incident in rounds.iter().flat_map(|r| &r.incidents) {
        failures.push(format!("policy incident: {incident}"));
    }
    if mode == Mode::Contract {
        if let Some(status) = scenario.contract.status
            && last.status != status
        {
            failures.push(format!(
                "ended {}, any policy must end {status}",
                last.status
            ));
        }
        return failures;
    }
    let expect = &scenario.expect;
    if last.status != expect.status {
        let why = last
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        failures.push(format!(
            "ended {}{why}, expected {}",
            last.status, expect.status
        ));
    }
    if let Some(nodes) = &expect.nodes {
        let mut want = nodes.clone();
        let mut got = last.confirmed.clone();
        want.sort();
        got.sort();
        if want != got {
            failures.push(format!("confirmed on {got:?}, expected {want:?}"));
        }
    }
    if let Some(prefix) = &expect.reason_starts_with {
        match &last.reason {
            Some(reason) if reason.starts_with(prefix.as_str()) => {}
            other => failures.push(format!("reason {other:?} does not start with '{prefix}'")),
        }
    }
    for (node, want) in &expect.pins {
        let got: usize = rounds
            .iter()
            .flat_map(|r| r.attempts())
            .filter(|(n, _)| n == node)
            .map(|(_, c)| c)
            .sum();
        if got != *want {
            failures.push(format!("{got} pin attempts on {node}, expected {want}"));
        }
    }
    if let Some(want) = expect.rounds
        && rounds.len() != want
    {
        failures.push(format!("{} rounds, expected {want}", rounds.len()));
    }
    failures
}

/// What `policy check` (and a live policy swap) demands: in every applicable built-in
/// scenario the policy ends without an incident and reaches the scenario's contract.
/// Returns (scenarios run, not applicable), or the first failure.
pub fn check_contract(policy: &Policy, fallback: &Policy) -> Result<(usize, usize), String> {
    let (mut ran, mut skipped) = (0, 0);
    for scenario in Scenario::builtin() {
        let report = run(policy, fallback, &scenario, Mode::Contract)?;
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
