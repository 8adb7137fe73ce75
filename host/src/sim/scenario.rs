//! Scenario files: scripted nodes, a job (or a stream of them), policy parameters and the
//! expected end. The format is documented in docs/policies/simulator.md; the built-in scenarios are examples.

use super::node::NodeScript;
use crate::executor::RoundEnd;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in scenarios: the seed's five flows, quorum 2-of-3, the lazy local fallback,
/// lazy retries that every policy must survive, the supernode-outage drill and a quorum met by one cluster pin of replication 2.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "happy-path",
        include_str!("../../scenarios/happy-path.toml"),
    ),
    (
        "primary-recovers",
        include_str!("../../scenarios/primary-recovers.toml"),
    ),
    (
        "primary-lies",
        include_str!("../../scenarios/primary-lies.toml"),
    ),
    (
        "primary-offline",
        include_str!("../../scenarios/primary-offline.toml"),
    ),
    ("all-fail", include_str!("../../scenarios/all-fail.toml")),
    (
        "quorum-2-of-3",
        include_str!("../../scenarios/quorum-2-of-3.toml"),
    ),
    (
        "lazy-local-fallback",
        include_str!("../../scenarios/lazy-local-fallback.toml"),
    ),
    (
        "lazy-retries",
        include_str!("../../scenarios/lazy-retries.toml"),
    ),
    (
        "supernode-outage",
        include_str!("../../scenarios/supernode-outage.toml"),
    ),
    (
        "cluster-quorum",
        include_str!("../../scenarios/cluster-quorum.toml"),
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub job: JobSpec,
    /// A stream of such jobs on virtual time; absent: the one job.
    pub jobs: Option<Stream>,
    /// Policy parameters this scenario needs (they win over `--param`).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(rename = "node")]
    pub nodes: Vec<NodeScript>,
    pub expect: Expect,
    /// What `policy check` demands of any policy in this scenario.
    #[serde(default)]
    pub contract: Contract,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSpec {
    pub cid: String,
    pub job_id: String,
    pub size_bytes: u64,
    pub lazy: bool,
    /// Rounds the simulated queue runs a lazy job at most.
    pub max_rounds: u32,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
            job_id: "sim-job".into(),
            size_bytes: 25 << 20,
            lazy: false,
            max_rounds: 10,
        }
    }
}

/// Jobs submitted one every `interval_ms` (the first at 0), each a separate job of its own
/// rounds, all on one topology and so one node-health ledger, as a daemon runs them.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    pub count: u32,
    #[serde(default)]
    pub interval_ms: u64,
    /// Rounds running at once (the daemon's `concurrent_pins`); later jobs wait for a slot.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    crate::config::DaemonConfig::default().concurrent_pins
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            count: 1,
            interval_ms: 0,
            concurrency: default_concurrency(),
        }
    }
}

/// Jobs beyond this make a benchmark, not a scenario.
pub const MAX_JOBS: u32 = 10_000;
/// Submissions span at most this much virtual time.
const MAX_SPAN_MS: u64 = 30 * 24 * 3_600_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How every job ends.
    pub status: RoundEnd,
    /// Confirmed nodes of every job (any order).
    pub nodes: Option<Vec<String>>,
    pub reason_starts_with: Option<String>,
    /// Pin attempts per node, over all rounds of all jobs.
    #[serde(default)]
    pub pins: BTreeMap<String, usize>,
    /// Rounds run by every job (lazy jobs).
    pub rounds: Option<usize>,
    /// Upper bounds on per-job latency (submitted to ended), in ms.
    #[serde(default)]
    pub latency_ms: LatencyBounds,
    /// Every job submitted in `[from_ms, until_ms)` ends pinned on backup nodes only.
    pub all_pinned_on_backups_between: Option<[u64; 2]>,
    /// Pin calls per node started while its circuit breaker was open, at most.
    #[serde(default)]
    pub max_pins_while_open: BTreeMap<String, usize>,
    /// Per node: at least `min_jobs` of the jobs submitted from `from_ms` on are confirmed there.
    #[serde(default)]
    pub confirmed_after: BTreeMap<String, ConfirmedAfter>,
}

/// Percentiles are nearest-rank over the jobs.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyBounds {
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmedAfter {
    pub from_ms: u64,
    pub min_jobs: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// The end any sensible policy must reach here (e.g. pinned, when every node works).
    pub status: Option<RoundEnd>,
}

impl<'de> Deserialize<'de> for RoundEnd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "pinned" => Ok(RoundEnd::Pinned),
            "failed" => Ok(RoundEnd::Failed),
            "local-fallback" => Ok(RoundEnd::LocalFallback),
            other => Err(serde::de::Error::custom(format!(
                "unknown status '{other}' (expected pinned, failed or local-fallback)"
            ))),
        }
    }
}

impl Scenario {
    pub fn parse(text: &str, label: &str) -> Result<Scenario, String> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| format!("{label}: {}", e.to_string().trim()))?;
        scenario.check().map_err(|e| format!("{label}: {e}"))?;
        Ok(scenario)
    }

    pub fn from_file(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string())
    }

    pub fn builtin() -> Vec<Scenario> {
        BUILTIN
            .iter()
            .map(|(name, text)| {
                Scenario::parse(text, name)
                    .unwrap_or_else(|e| panic!("built-in scenario is broken (a build bug): {e}"))
            })
            .collect()
    }

    /// The jobs to run: the `[jobs]` stream, or the one job.
    pub fn stream(&self) -> Stream {
        self.jobs.unwrap_or_default()
    }

    /// Parameters as the strings `configure` takes.
    pub fn param_pairs(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }

    fn check(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("a scenario needs at least one [[node]]".into());
        }
        let mut names = std::collections::HashSet::new();
        for node in &self.nodes {
            if !names.insert(&node.name) {
                return Err(format!("node '{}' is defined twice", node.name));
            }
            node.check()?;
        }
        let expect = &self.expect;
        for name in expect
            .nodes
            .iter()
            .flatten()
            .chain(expect.pins.keys())
            .chain(expect.max_pins_while_open.keys())
            .chain(expect.confirmed_after.keys())
        {
            if !names.contains(name) {
                return Err(format!("[expect] names unknown node '{name}'"));
            }
        }
        if self.job.max_rounds == 0 || self.job.max_rounds > 100 {
            return Err("job.max_rounds must be from 1 to 100".into());
        }
        if let Some(stream) = &self.jobs {
            if stream.count == 0 || stream.count > MAX_JOBS {
                return Err(format!("jobs.count must be from 1 to {MAX_JOBS}"));
            }
            if stream.concurrency == 0 || stream.concurrency > 1_000 {
                return Err("jobs.concurrency must be from 1 to 1000".into());
            }
            if u64::from(stream.count).saturating_mul(stream.interval_ms) > MAX_SPAN_MS {
                return Err("jobs: count × interval_ms must stay within 30 days".into());
            }
        }
        if let Some([from, until]) = expect.all_pinned_on_backups_between {
            if from >= until {
                return Err("expect.all_pinned_on_backups_between: [from_ms, until_ms] must have from_ms < until_ms".into());
            }
            if !self.nodes.iter().any(|n| n.role == crate::Role::Backup) {
                return Err(
                    "expect.all_pinned_on_backups_between: the scenario has no backup node".into(),
                );
            }
        }
        Ok(())
    }
}
