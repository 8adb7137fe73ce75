//! Scenario files: scripted nodes, a job, policy parameters and the expected end.
//! The format is documented in the README; the built-in scenarios are examples of it.

use super::node::NodeScript;
use crate::executor::Status;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in scenarios: the seed's five flows, quorum 2-of-3 and the lazy local fallback.
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
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub job: JobSpec,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Status,
    /// Confirmed nodes (any order).
    pub nodes: Option<Vec<String>>,
    pub reason_starts_with: Option<String>,
    /// Pin attempts per node, over all rounds.
    #[serde(default)]
    pub pins: BTreeMap<String, usize>,
    /// Rounds run (lazy jobs).
    pub rounds: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// The end any sensible policy must reach here (e.g. pinned, when every node works).
    pub status: Option<Status>,
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "pinned" => Ok(Status::Pinned),
            "failed" => Ok(Status::Failed),
            "local-fallback" => Ok(Status::LocalFallback),
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
        }
        for name in self
            .expect
            .nodes
            .iter()
            .flatten()
            .chain(self.expect.pins.keys())
        {
            if !names.contains(name) {
                return Err(format!("[expect] names unknown node '{name}'"));
            }
        }
        if self.job.max_rounds == 0 || self.job.max_rounds > 100 {
            return Err("job.max_rounds must be from 1 to 100".into());
        }
        Ok(())
    }
}
