//! Prometheus metrics for `/metrics` (OpenMetrics text), and the signals spike alerts watch.
//!
//! What a node did is counted the moment each action ends ([`Metrics::action_ended`], fed by
//! the daemon's ledger observer, `super::observe`), so a long round shows up while it runs.
//! What only a whole round knows stays round-level ([`Metrics::observe_round`]): how rounds
//! ended, fallbacks, policy incidents and decision latency. Gauges (jobs by state, queue depth,
//! journal backlog, node breakers) are read fresh at scrape time.
//!
//! Every family is exposed from the start, with zero-valued series for the configured nodes and
//! every label value known up front: a rule's `increase()` over a series that first appears at
//! 1 reads 0, and a dashboard should show "none yet" rather than nothing.

use crate::executor::{RoundEnd, RoundResult};
use crate::health::{self, Ended};
use crate::policy::IncidentKind;
use crate::queue::State;
use host_rules::Breaker;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::Mutex;

/// A pin attempt's `outcome` label values: `ok`, the failure names of
/// [`crate::executor::failure_name`], and a pin abandoned because another node confirmed first.
pub const PIN_OUTCOMES: &[&str] = &[
    "ok",
    "not-pinned",
    "timeout",
    "stalled",
    "unreachable",
    "http-error",
    "unretrievable",
    "error",
    health::ABANDONED,
];

/// The `check` label of verification failures: `verify` is `pin ls`, then the block check.
const CHECKS: [(health::Kind, &str); 2] = [
    (health::Kind::Verify, "pin-ls"),
    (health::Kind::CheckRetrievable, "retrievable"),
];

const INCIDENT_KINDS: [IncidentKind; 6] = [
    IncidentKind::Trap,
    IncidentKind::Timeout,
    IncidentKind::Memory,
    IncidentKind::InvalidAction,
    IncidentKind::Rejected,
    IncidentKind::Budget,
];

/// The value of `pinwarden_node_breaker_state`: 0 closed, 1 half-open, 2 open.
pub fn breaker_value(breaker: Breaker) -> i64 {
    match breaker {
        Breaker::Closed => 0,
        Breaker::HalfOpen => 1,
        Breaker::Open => 2,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

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

/// Events for the alert signals (see `config::ALERT_SIGNALS`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// Pin attempts that failed (each means another try: on that node, another one, or the
    /// local node). A pin abandoned because another node confirmed first is no retry.
    pub pin_retries: u64,
    /// `pin ls` or retrievability checks that failed.
    pub verification_failures: u64,
    pub local_fallbacks: u64,
    pub policy_incidents: u64,
    /// A node's circuit breaker opened (from closed, or again after a failed half-open probe).
    pub breaker_opened: u64,
}

type HistogramFamily = Family<NodeLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Mutex<Registry>,
    nodes: Vec<String>,
    pin_attempts: Family<NodeOutcome, Counter>,
    verification_failures: Family<NodeCheck, Counter>,
    node_breaker: Family<NodeLabel, Gauge>,
    node_openings: Family<NodeLabel, Counter>,
    node_failures: Family<NodeLabel, Gauge>,
    node_pin_seconds: HistogramFamily,
    fallbacks: Family<Kind, Counter>,
    rounds: Family<StateLabel, Counter>,
    decision_seconds: Histogram,
    incidents: Family<PolicyKind, Counter>,
    reloads: Family<ResultLabel, Counter>,
    jobs: Family<StateLabel, Gauge>,
    queue_depth: Gauge,
    journal_pending: Gauge,
    journal_cache: Mutex<Option<(JournalStamp, i64)>>,
    webhook_events: Family<StateLabel, Gauge>,
    webhook_attempts: Family<ResultLabel, Counter>,
    shadow_decisions: Family<ResultLabel, Gauge>,
    round_records: Family<ResultLabel, Gauge>,
}

/// Size and mtime of the journal and of the migration records.
type FileStamp = Option<(u64, Option<std::time::SystemTime>)>;
type JournalStamp = (FileStamp, FileStamp);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new::<&str>(&[])
    }
}

/// Buckets of successful pin durations: 0.1 s .. ~55 min, doubling.
fn pin_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

impl Metrics {
    /// Every family, with zero-valued series for `nodes` (the topology's node names).
    pub fn new<S: AsRef<str>>(nodes: &[S]) -> Metrics {
        let mut registry = Registry::with_prefix("pinwarden");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            nodes: nodes.iter().map(|n| n.as_ref().to_string()).collect(),
            pin_attempts: Family::default(),
            verification_failures: Family::default(),
            node_breaker: Family::default(),
            node_openings: Family::default(),
            node_failures: Family::default(),
            node_pin_seconds: Family::new_with_constructor(pin_histogram),
            fallbacks: Family::default(),
            rounds: Family::default(),
            // 1 µs .. ~1 s, doubling.
            decision_seconds: Histogram::new(exponential_buckets(1e-6, 2.0, 20)),
            incidents: Family::default(),
            reloads: Family::default(),
            jobs: Family::default(),
            queue_depth: Gauge::default(),
            journal_pending: Gauge::default(),
            journal_cache: Mutex::new(None),
            webhook_events: Family::default(),
            webhook_attempts: Family::default(),
            shadow_decisions: Family::default(),
            round_records: Family::default(),
        };
        registry.register(
            "pin_attempts",
            "pin/add attempts by node and outcome, counted as each ends",
            m.pin_attempts.clone(),
        );
        registry.register(
            "verification_failures",
            "claimed pins that pin ls did not list, or whose blocks were missing",
            m.verification_failures.clone(),
        );
        registry.register(
            "node_breaker_state",
            "circuit breaker of a node as the active policy's parameters define it: 0 closed, 1 half-open, 2 open",
            m.node_breaker.clone(),
        );
        registry.register(
            "node_breaker_openings",
            "times a node's breaker opened (from closed, or again after a failed half-open probe): openings between scrapes the state gauge would miss",
            m.node_openings.clone(),
        );
        registry.register(
            "node_consecutive_failures",
            "actions that failed on a node since its last success",
            m.node_failures.clone(),
        );
        registry.register(
            "node_pin_duration_seconds",
            "wall time of successful pin/add calls, by node",
            m.node_pin_seconds.clone(),
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
        registry.register(
            "webhook_events",
            "completion webhook events in the outbox by delivery state: pending (the backlog), delivered, expired (given up after notify.max_age_secs, kept)",
            m.webhook_events.clone(),
        );
        registry.register(
            "webhook_attempts",
            "webhook delivery attempts by result: ok (2xx), failed (anything else, retried)",
            m.webhook_attempts.clone(),
        );
        registry.register(
            "shadow_decisions",
            "decisions of the shadow policy since it started, by result: agree, a divergence class (other-node, longer-wait, gives-up-earlier...), incident (contained), skipped (not compared)",
            m.shadow_decisions.clone(),
        );
        registry.register(
            "round_records",
            "round records since start, by result: written, dropped (the records' disk was behind; rounds are never slowed)",
            m.round_records.clone(),
        );
        m.zero_series();
        if let Ok(mut slot) = m.registry.lock() {
            *slot = registry;
        }
        m
    }

    /// Creates the series known up front, at zero.
    fn zero_series(&self) {
        for node in &self.nodes {
            for outcome in PIN_OUTCOMES {
                self.pin_attempts.get_or_create_owned(&NodeOutcome {
                    node: node.clone(),
                    outcome: (*outcome).into(),
                });
            }
            for (_, check) in CHECKS {
                self.verification_failures.get_or_create_owned(&NodeCheck {
                    node: node.clone(),
                    check: check.into(),
                });
            }
            let label = NodeLabel { node: node.clone() };
            self.node_breaker.get_or_create_owned(&label);
            self.node_openings.get_or_create_owned(&label);
            self.node_failures.get_or_create_owned(&label);
            self.node_pin_seconds.get_or_create_owned(&label);
        }
        for kind in ["backup", "local"] {
            self.fallbacks
                .get_or_create_owned(&Kind { kind: kind.into() });
        }
        for status in [RoundEnd::Pinned, RoundEnd::Failed, RoundEnd::LocalFallback] {
            self.rounds.get_or_create_owned(&StateLabel {
                state: status.to_string(),
            });
        }
        for result in ["ok", "rejected"] {
            self.reloads.get_or_create_owned(&ResultLabel {
                result: result.into(),
            });
        }
        for state in State::ALL {
            self.jobs.get_or_create_owned(&StateLabel {
                state: state.to_string(),
            });
        }
        for state in ["pending", "delivered", "expired"] {
            self.webhook_events.get_or_create_owned(&StateLabel {
                state: state.into(),
            });
        }
        for result in ["ok", "failed"] {
            self.webhook_attempts.get_or_create_owned(&ResultLabel {
                result: result.into(),
            });
        }
        for result in ["written", "dropped"] {
            self.round_records.get_or_create_owned(&ResultLabel {
                result: result.into(),
            });
        }
    }

    /// Sets the outbox gauges from its counts (at scrape time).
    pub fn observe_outbox(&self, counts: &crate::queue::outbox::OutboxCounts) {
        for (state, n) in [
            ("pending", counts.pending),
            ("delivered", counts.delivered),
            ("expired", counts.expired),
        ] {
            self.webhook_events
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n as i64);
        }
    }

    /// Sets the shadow gauges from its report (at scrape time); `None`: no shadow runs.
    pub fn observe_shadow(&self, report: Option<&crate::rounds::shadow::Report>) {
        self.shadow_decisions.clear();
        let Some(r) = report else { return };
        let set = |result: &str, n: u64| {
            self.shadow_decisions
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .set(n as i64);
        };
        set("agree", r.agree);
        set("incident", r.incidents);
        set("skipped", r.skipped);
        for (class, n) in &r.by_class {
            set(class, *n);
        }
    }

    /// Sets the round-record gauges (at scrape time).
    pub fn observe_records(&self, written: u64, dropped: u64) {
        for (result, n) in [("written", written), ("dropped", dropped)] {
            self.round_records
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .set(n as i64);
        }
    }

    /// One webhook delivery attempt ended.
    pub fn webhook_attempt(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.webhook_attempts
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Zero-valued incident series for a policy (the configured one and its fallback, at start
    /// and after each reload): incidents are what the rules must not miss.
    pub fn expect_policy(&self, policy: &str) {
        for kind in INCIDENT_KINDS {
            self.incidents.get_or_create_owned(&PolicyKind {
                policy: policy.into(),
                kind: kind.to_string(),
            });
        }
    }

    /// The node names the per-node series were created for.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Counts one ended node action: pin attempts by outcome (and the duration of successful
    /// ones), failed verifications.
    pub fn action_ended(&self, e: &Ended<'_>) {
        match e.kind {
            health::Kind::Pin => {
                self.pin_attempts
                    .get_or_create(&NodeOutcome {
                        node: e.node.into(),
                        outcome: e.failure.unwrap_or("ok").into(),
                    })
                    .inc();
                if e.ok {
                    self.node_pin_seconds
                        .get_or_create(&NodeLabel {
                            node: e.node.into(),
                        })
                        .observe(e.took.as_secs_f64());
                }
            }
            kind if !e.ok => {
                if let Some((_, check)) = CHECKS.iter().find(|(k, _)| *k == kind) {
                    self.verification_failures
                        .get_or_create(&NodeCheck {
                            node: e.node.into(),
                            check: (*check).into(),
                        })
                        .inc();
                }
            }
            _ => {}
        }
    }

    /// Sets a node's breaker and failure-streak gauges.
    pub fn set_node(&self, node: &str, breaker: Breaker, consecutive_failures: u32) {
        let label = NodeLabel { node: node.into() };
        self.node_breaker
            .get_or_create(&label)
            .set(breaker_value(breaker));
        self.node_failures
            .get_or_create(&label)
            .set(i64::from(consecutive_failures));
    }

    /// Counts a breaker opening (see `super::observe`).
    pub fn breaker_opened(&self, node: &str) {
        self.node_openings
            .get_or_create(&NodeLabel { node: node.into() })
            .inc();
    }

    /// Counts what a round as a whole did (`primary`: the primary node's name); returns its
    /// contribution to the alert signals. Node actions were counted as they ended.
    pub fn observe_round(&self, result: &RoundResult, primary: Option<&str>) -> Signals {
        let mut signals = Signals::default();
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
            RoundEnd::LocalFallback => Some("local"),
            // Pinned without the primary among the confirmed nodes: the backups carried it.
            RoundEnd::Pinned if !result.confirmed.iter().any(|n| Some(n.as_str()) == primary) => {
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

    /// Sets the queue gauges (pins by state, queue depth) from the queue's counts.
    pub fn observe_queue(&self, counts: &[(State, u64)]) {
        let mut depth = 0;
        for &(state, n) in counts {
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

    /// The exposition text, with the journal gauge refreshed (queue gauges are set by
    /// [`Metrics::observe_queue`], node gauges by `super::observe::Live::refresh`).
    pub fn render(&self, journal: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Queue;

    /// Every family `/metrics` must list from the start.
    const FAMILIES: &[&str] = &[
        "pinwarden_pin_attempts",
        "pinwarden_verification_failures",
        "pinwarden_node_breaker_state",
        "pinwarden_node_breaker_openings",
        "pinwarden_node_consecutive_failures",
        "pinwarden_node_pin_duration_seconds",
        "pinwarden_fallbacks",
        "pinwarden_rounds",
        "pinwarden_policy_decision_seconds",
        "pinwarden_policy_incidents",
        "pinwarden_policy_reloads",
        "pinwarden_jobs",
        "pinwarden_queue_depth",
        "pinwarden_journal_pending",
        "pinwarden_webhook_events",
        "pinwarden_webhook_attempts",
        "pinwarden_round_records",
    ];

    fn render(m: &Metrics) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(&dir.path().join("q.db")).expect("queue");
        m.observe_queue(&queue.counts().expect("counts"));
        m.render(&dir.path().join("journal.jsonl"))
    }

    #[test]
    fn a_fresh_instance_exposes_every_family_with_zeros() {
        let m = Metrics::new(&["primary", "backup-1"]);
        m.expect_policy("tank-mode");
        let text = render(&m);
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(declared.len(), FAMILIES.len(), "{text}");
        for family in FAMILIES {
            assert!(declared.contains(family), "{family} not declared:\n{text}");
            // A sample, not just the header: rules see a zero before the first event.
            let samples = text
                .lines()
                .filter(|l| !l.starts_with('#') && l.starts_with(family))
                .count();
            assert!(samples > 0, "{family} has no series:\n{text}");
        }
        for line in [
            "pinwarden_pin_attempts_total{node=\"backup-1\",outcome=\"ok\"} 0",
            "pinwarden_pin_attempts_total{node=\"primary\",outcome=\"abandoned\"} 0",
            "pinwarden_verification_failures_total{node=\"primary\",check=\"retrievable\"} 0",
            "pinwarden_node_breaker_state{node=\"primary\"} 0",
            "pinwarden_node_breaker_openings_total{node=\"backup-1\"} 0",
            "pinwarden_node_consecutive_failures{node=\"backup-1\"} 0",
            "pinwarden_node_pin_duration_seconds_count{node=\"primary\"} 0",
            "pinwarden_fallbacks_total{kind=\"local\"} 0",
            "pinwarden_rounds_total{state=\"local-fallback\"} 0",
            "pinwarden_policy_incidents_total{policy=\"tank-mode\",kind=\"trap\"} 0",
            "pinwarden_policy_reloads_total{result=\"rejected\"} 0",
            "pinwarden_jobs{state=\"pinning\"} 0",
            "pinwarden_queue_depth 0",
            "pinwarden_journal_pending 0",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn pin_outcomes_name_every_failure() {
        use crate::policy::contract::{HttpError, Outcome};
        let outcomes = [
            Outcome::Ok,
            Outcome::NotPinned,
            Outcome::Timeout,
            Outcome::Stalled,
            Outcome::Unreachable(String::new()),
            Outcome::HttpError(HttpError {
                status: 500,
                message: String::new(),
            }),
            Outcome::Unretrievable(String::new()),
            Outcome::Error(String::new()),
        ];
        // Stops compiling when `Outcome` gains a variant: list it above and in PIN_OUTCOMES.
        for outcome in &outcomes {
            match outcome {
                Outcome::Ok
                | Outcome::NotPinned
                | Outcome::Timeout
                | Outcome::Stalled
                | Outcome::Unreachable(_)
                | Outcome::HttpError(_)
                | Outcome::Unretrievable(_)
                | Outcome::Error(_) => {}
            }
            let name = crate::executor::failure_name(outcome).unwrap_or("ok");
            assert!(PIN_OUTCOMES.contains(&name), "{name}");
        }
        assert_eq!(PIN_OUTCOMES.len(), outcomes.len() + 1, "and abandoned");
    }
}
