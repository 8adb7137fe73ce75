//! Prometheus metrics for `/metrics` (OpenMetrics text), and the signals spike alerts watch.
//!
//! Counters are fed from each round's result (its history says every attempt and outcome);
//! gauges (jobs by state, queue depth, journal backlog) are read fresh at scrape time.

use crate::executor::{RoundResult, Status};
use crate::policy::contract::{Action, Outcome};
use crate::queue::{Queue, State};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeOutcome {
    node: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeCheck {
    node: String,
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyKind {
    policy: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// What one round contributes to the alert signals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// Pin attempts beyond the first on a node.
    pub pin_retries: u64,
    /// `pin ls` or retrievability checks that failed.
    pub verification_failures: u64,
    pub local_fallbacks: u64,
    pub policy_incidents: u64,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pin_attempts: Family<NodeOutcome, Counter>,
    verification_failures: Family<NodeCheck, Counter>,
    fallbacks: Family<Kind, Counter>,
    rounds: Family<StateLabel, Counter>,
    decision_seconds: Histogram,
    incidents: Family<PolicyKind, Counter>,
    reloads: Family<ResultLabel, Counter>,
    jobs: Family<StateLabel, Gauge>,
    queue_depth: Gauge,
    journal_pending: Gauge,
    journal_cache: Mutex<Option<(JournalStamp, i64)>>,
}

/// Size and mtime of the journal and of the migration records.
type FileStamp = Option<(u64, Option<std::time::SystemTime>)>;
type JournalStamp = (FileStamp, FileStamp);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pinwarden");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            pin_attempts: Family::default(),
            verification_failures: Family::default(),
            fallbacks: Family::default(),
            rounds: Family::default(),
            // 1 µs .. ~1 s, doubling.
            decision_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1e-6, 2.0, 20),
            ),
            incidents: Family::default(),
            reloads: Family::default(),
            jobs: Family::default(),
            queue_depth: Gauge::default(),
            journal_pending: Gauge::default(),
            journal_cache: Mutex::new(None),
        };
        registry.register(
            "pin_attempts",
            "pin/add attempts by node and outcome",
            m.pin_attempts.clone(),
        );
        registry.register(
            "verification_failures",
            "claimed pins that pin ls did not list, or whose blocks were missing",
            m.verification_failures.clone(),
        );
        registry.register(
            "fallbacks",
            "rounds that ended on a backup instead of the primary, or on the local node",
            m.fallbacks.clone(),
        );
        registry.register("rounds", "rounds by how they ended", m.rounds.clone());
        registry.register(
            "policy_decision_seconds",
            "wall time of one policy decide call",
            m.decision_seconds.clone(),
        );
        registry.register(
            "policy_incidents",
            "policy traps, timeouts, memory-cap hits and invalid actions, by policy",
            m.incidents.clone(),
        );
        registry.register(
            "policy_reloads",
            "live policy swaps, by result",
            m.reloads.clone(),
        );
        registry.register("jobs", "pins in the queue by state", m.jobs.clone());
        registry.register(
            "queue_depth",
            "pins queued or pinning",
            m.queue_depth.clone(),
        );
        registry.register(
            "journal_pending",
            "local-fallback journal entries not yet migrated",
            m.journal_pending.clone(),
        );
        if let Ok(mut slot) = m.registry.lock() {
            *slot = registry;
        }
        m
    }

    /// Counts what a round did (`primary`: the primary node's name); returns its contribution
    /// to the alert signals.
    pub fn observe_round(&self, result: &RoundResult, primary: Option<&str>) -> Signals {
        let mut signals = Signals::default();
        let mut pins_per_node: std::collections::HashMap<&str, u64> = Default::default();
        for event in &result.history {
            let Some(outcome) = &event.outcome else {
                continue;
            };
            match &event.action {
                Action::Pin(p) => {
                    let n = pins_per_node.entry(p.node.as_str()).or_default();
                    *n += 1;
                    if *n > 1 {
                        signals.pin_retries += 1;
                    }
                    self.pin_attempts
                        .get_or_create(&NodeOutcome {
                            node: p.node.clone(),
                            outcome: outcome_label(outcome).into(),
                        })
                        .inc();
                }
                Action::Verify(node) | Action::CheckRetrievable(node)
                    if *outcome != Outcome::Ok =>
                {
                    let check = if matches!(event.action, Action::Verify(_)) {
                        "pin-ls"
                    } else {
                        "retrievable"
                    };
                    signals.verification_failures += 1;
                    self.verification_failures
                        .get_or_create(&NodeCheck {
                            node: node.clone(),
                            check: check.into(),
                        })
                        .inc();
                }
                _ => {}
            }
        }
        for ns in &result.decision_nanos {
            self.decision_seconds.observe(*ns as f64 / 1e9);
        }
        for incident in &result.incidents {
            signals.policy_incidents += 1;
            self.incidents
                .get_or_create(&PolicyKind {
                    policy: incident.policy.clone(),
                    kind: incident.kind.to_string(),
                })
                .inc();
        }
        self.rounds
            .get_or_create(&StateLabel {
                state: result.status.to_string(),
            })
            .inc();
        let fallback = match result.status {
            Status::LocalFallback => Some("local"),
            // Pinned without the primary among the confirmed nodes: the backups carried it.
            Status::Pinned if !result.confirmed.iter().any(|n| Some(n.as_str()) == primary) => {
                Some("backup")
            }
            _ => None,
        };
        if let Some(kind) = fallback {
            if kind == "local" {
                signals.local_fallbacks += 1;
            }
            self.fallbacks
                .get_or_create(&Kind { kind: kind.into() })
                .inc();
        }
        signals
    }

    pub fn observe_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// The exposition text, with the gauges refreshed from the queue and the journal.
    pub fn render(&self, queue: &Queue, journal: &Path) -> String {
        if let Ok(counts) = queue.counts() {
            let mut depth = 0;
            for (state, n) in counts {
                if matches!(state, State::Queued | State::Pinning) {
                    depth += n;
                }
                self.jobs
                    .get_or_create(&StateLabel {
                        state: state.to_string(),
                    })
                    .set(n as i64);
            }
            self.queue_depth.set(depth as i64);
        }
        if let Some(pending) = self.journal_backlog(journal) {
            self.journal_pending.set(pending);
        }
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock()
            && let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry)
        {
            tracing::error!("cannot encode metrics: {e}");
        }
        text
    }
}

impl Metrics {
    /// Pending journal entries, re-read only when the journal or the migration records
    /// changed (size or mtime): scrapes come every few seconds, fallbacks rarely.
    fn journal_backlog(&self, journal: &Path) -> Option<i64> {
        let migrated = crate::journal::migrated_path(journal);
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        let key = (stamp(journal), stamp(&migrated));
        let mut cache = self.journal_cache.lock().ok()?;
        if let Some((k, pending)) = &*cache
            && *k == key
        {
            return Some(*pending);
        }
        let read = crate::journal::read(journal).ok()?;
        let migrations = crate::journal::read_migrations(&migrated)
            .map(|m| m.records)
            .unwrap_or_default();
        let pending = crate::journal::pending(&read.entries, &migrations).len() as i64;
        *cache = Some((key, pending));
        Some(pending)
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::NotPinned => "not-pinned",
        Outcome::Timeout => "timeout",
        Outcome::Stalled => "stalled",
        Outcome::Unreachable(_) => "unreachable",
        Outcome::HttpError(_) => "http-error",
        Outcome::Unretrievable(_) => "unretrievable",
        Outcome::Error(_) => "error",
    }
}
