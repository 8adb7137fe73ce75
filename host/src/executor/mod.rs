//! The executor: one round of one job. It asks the policy what to do, performs the actions
//! (concurrently when the policy returns several), records every outcome in the history, and
//! asks again, until the policy ends the round.
//!
//! Written once against two seams: the [`Node`] trait (real Kubo RPC client or simulated node)
//! and tokio's clock (real time, or virtual time under a paused runtime in the simulator).
//! The host, not the policy, guarantees the safety rules: every action is bounded in time,
//! impossible actions are refused, and success is only ever reported with evidence (a pin that
//! `pin ls` confirmed and whose blocks are present). A misbehaving policy is contained: the
//! round continues under the built-in fallback policy, which reads the same history.

pub(crate) mod in_charge;
pub mod rules;

use crate::health::{self, Ledger, Progress};
use crate::node::Node;
use crate::policy::contract::{Action, Event, Job, Node as NodeInfo, Outcome, Role};
use crate::policy::{Incident, Policy};
use crate::prove::{self, PinBounds};
use crate::trace::{TraceLine, describe_outcome, describe_start, format_ms};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use in_charge::{InCharge, Rank};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// The nodes a job may use, with their clients and the ledger of their health.
#[derive(Clone, Default)]
pub struct Topology {
    nodes: Vec<(String, Role, Arc<dyn Node>)>,
    ledger: Arc<Ledger>,
}

impl Topology {
    /// A topology whose health is remembered only in memory.
    pub fn new() -> Self {
        Topology::default()
    }

    /// A topology sharing `ledger` (one per process, persisted in the data directory).
    pub fn with_ledger(ledger: Arc<Ledger>) -> Self {
        Topology {
            nodes: Vec::new(),
            ledger,
        }
    }

    pub fn add(&mut self, name: &str, role: Role, client: Arc<dyn Node>) {
        self.nodes.push((name.to_string(), role, client));
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The nodes' names and roles, in topology order.
    pub fn roles(&self) -> Vec<(String, Role)> {
        self.nodes
            .iter()
            .map(|(name, role, _)| (name.clone(), *role))
            .collect()
    }

    /// The nodes with their health as of now: what a decision sees.
    pub fn infos(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|(name, role, client)| {
                let caps = client.capabilities();
                NodeInfo {
                    name: name.clone(),
                    role: *role,
                    health: self.ledger.health(name),
                    kind: caps.kind.into(),
                    replication: caps.replication,
                }
            })
            .collect()
    }

    /// The client of node `name`.
    pub fn client(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.nodes
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, c)| c)
    }

    fn local(&self) -> Option<(&str, &Arc<dyn Node>)> {
        self.nodes
            .iter()
            .find(|(_, role, _)| *role == Role::Local)
            .map(|(name, _, c)| (name.as_str(), c))
    }
}

/// Host-side bounds of a round that no policy can lift.
#[derive(Debug, Clone, Copy)]
pub struct RoundLimits {
    /// Bound for `verify` and `connect`.
    pub call_timeout: Duration,
    /// Safety bound for `check-retrievable`. The walk's length follows the DAG's size (a few
    /// seconds per GB), and the node client ends a walk that stops making progress
    /// (`KuboConfig::check_idle_timeout`), so this only catches a client that never returns.
    pub check_timeout: Duration,
    /// Bounds on what a decision may ask for (see [`rules`]).
    pub bounds: host_rules::Bounds,
    /// Total CPU time one policy may spend deciding in a round (each call also has its own
    /// deadline): a policy that takes 150 ms per decision must not hold a slot for minutes.
    pub policy_time: Duration,
    /// Timeouts of the local-fallback pin (the action carries none).
    pub local_pin_timeout: Duration,
    pub local_stall_timeout: Duration,
}

impl Default for RoundLimits {
    fn default() -> Self {
        RoundLimits {
            call_timeout: Duration::from_secs(30),
            check_timeout: Duration::from_secs(3600),
            bounds: host_rules::Bounds::default(),
            policy_time: Duration::from_secs(2),
            local_pin_timeout: Duration::from_secs(300),
            local_stall_timeout: Duration::from_secs(60),
        }
    }
}

/// How a round ended: one of the queue's final states ([`crate::queue::State`]), which is
/// what a pin becomes when its round ends this way (a failed lazy pin is queued again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundEnd {
    /// Pinned, verified and retrievable on the confirmed nodes.
    Pinned,
    /// The round failed; the job stays retryable.
    Failed,
    /// Pinned on the local node, to be migrated later.
    LocalFallback,
}

impl From<RoundEnd> for crate::queue::State {
    fn from(ended: RoundEnd) -> Self {
        match ended {
            RoundEnd::Pinned => crate::queue::State::Pinned,
            RoundEnd::Failed => crate::queue::State::Failed,
            RoundEnd::LocalFallback => crate::queue::State::LocalFallback,
        }
    }
}

impl std::fmt::Display for RoundEnd {
    /// The queue state's name: one spelling for both.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::queue::State::from(*self).as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    pub status: RoundEnd,
    pub confirmed: Vec<String>,
    /// Why the round failed (starts with `CRITICAL` when every option was exhausted).
    pub reason: Option<String>,
    /// The policy that made the last decision (the fallback, after an incident).
    pub decided_by: String,
    pub incidents: Vec<Incident>,
    /// The nodes, with their health, as the round's first decision saw them.
    pub nodes_seen: Vec<NodeInfo>,
    pub history: Vec<Event>,
    pub trace: Vec<TraceLine>,
    pub elapsed_ms: u64,
    /// Wall time of each `decide` call, in nanoseconds (for the latency histogram).
    #[serde(skip)]
    pub decision_nanos: Vec<u64>,
    /// What each decision saw and answered, for the round's record ([`crate::rounds`]).
    #[serde(skip)]
    pub decisions: Vec<DecisionPoint>,
}

/// One decision as the policy in charge saw it, relative to the round's final history: the
/// first `len` events, of which those in `ended` (and earlier points' `ended`) had their
/// outcome. That is exactly what the policy was given, so a replay can give a candidate the
/// same (see [`crate::rounds::replay`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DecisionPoint {
    /// The decision's `now-ms` (since the round began).
    pub t: u64,
    /// The history's length at the decision.
    pub len: u32,
    /// Events whose outcome arrived since the previous decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<u32>,
    /// The nodes with their health; absent: as at the previous decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeInfo>>,
    /// Decided by the fallback policy (after an incident), not the round's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
    /// What it answered (empty when the answer was an incident).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Why the answer was refused (a trap, a timeout, an action the rules refuse…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

impl RoundResult {
    /// Pin attempts per node, in topology order of first use.
    pub fn attempts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for e in &self.history {
            if let Action::Pin(p) = &e.action {
                match counts.iter_mut().find(|(n, _)| *n == p.node) {
                    Some((_, c)) => *c += 1,
                    None => counts.push((p.node.clone(), 1)),
                }
            }
        }
        counts
    }
}

/// The node actions under way, each answering with its history index and outcome.
type Performing = FuturesUnordered<BoxFuture<'static, (usize, Outcome)>>;

/// Runs one round of `job` under `policy`, falling back to `fallback` if `policy` misbehaves.
/// `origins`: peers known to hold the content (a PSA client's, say), dialled by a node before
/// each pin on it, as Kubo and IPFS Cluster do; the policy's provider hints come on top.
pub async fn run_round(
    policy: &Policy,
    fallback: &Policy,
    job: &Job,
    origins: &[String],
    topology: &Topology,
    limits: &RoundLimits,
) -> RoundResult {
    run_round_shadowed(policy, fallback, job, origins, topology, limits, None).await
}

/// [`run_round`], with every decision also handed to `shadow` (a round's link to a candidate
/// policy asked beside the live one, on its own thread, never executed: see
/// [`crate::rounds::shadow`]). The caller keeps the link, to hand the shadow the round's
/// record when it ends.
pub async fn run_round_shadowed(
    policy: &Policy,
    fallback: &Policy,
    job: &Job,
    origins: &[String],
    topology: &Topology,
    limits: &RoundLimits,
    shadow: Option<&mut crate::rounds::shadow::ShadowRound>,
) -> RoundResult {
    Round {
        shadow,
        job,
        origins: Arc::new(origins.to_vec()),
        topology,
        limits,
        infos: topology.infos(),
        nodes_seen: Vec::new(),
        in_flight: HashMap::new(),
        start: Instant::now(),
        history: Vec::new(),
        trace: Vec::new(),
        incidents: Vec::new(),
        decision_nanos: Vec::new(),
        decisions: Vec::new(),
        told_ended: Vec::new(),
    }
    .run(policy, fallback)
    .await
}

struct Round<'a> {
    job: &'a Job,
    origins: Arc<Vec<String>>,
    topology: &'a Topology,
    limits: &'a RoundLimits,
    infos: Vec<NodeInfo>,
    nodes_seen: Vec<NodeInfo>,
    /// The ledger's record of each running node action, by history index.
    in_flight: HashMap<usize, health::Running>,
    start: Instant,
    history: Vec<Event>,
    trace: Vec<TraceLine>,
    incidents: Vec<Incident>,
    decision_nanos: Vec<u64>,
    decisions: Vec<DecisionPoint>,
    /// Per history index: whether an earlier decision point already saw its outcome.
    told_ended: Vec<bool>,
    shadow: Option<&'a mut crate::rounds::shadow::ShadowRound>,
}

impl Round<'_> {
    /// The round's story: the policy in charge decides; a terminal decision ends the round,
    /// anything else is started and the round waits for the next outcome before asking again.
    /// A policy that misbehaves hands the round to the fallback.
    async fn run<'p>(mut self, policy: &'p Policy, fallback: &'p Policy) -> RoundResult {
        let mut charge = match InCharge::open(policy, Rank::Chosen) {
            Ok(charge) => charge,
            Err(incident) => match self.contain(incident, fallback) {
                Ok(charge) => charge,
                Err(reason) => {
                    return self.finish(RoundEnd::Failed, vec![], Some(reason), fallback);
                }
            },
        };
        let mut performing = Performing::new();
        self.note_health();
        loop {
            let now = self.now_ms();
            let actions = match self.decide(&mut charge, now) {
                Ok(actions) => actions,
                Err(incident) => match self.hand_over(&charge, incident, fallback) {
                    Ok(next) => {
                        charge = next;
                        continue;
                    }
                    Err(reason) => {
                        return self.finish(RoundEnd::Failed, vec![], Some(reason), fallback);
                    }
                },
            };
            match actions.as_slice() {
                [Action::Succeed(nodes)] => return self.succeed(nodes.clone(), charge.policy),
                [Action::Fail(reason)] => return self.fail(reason.clone(), charge.policy),
                [Action::LocalFallback] => return self.local_fallback(charge.policy).await,
                _ => {}
            }
            self.start_all(actions, now, &mut charge, &mut performing);
            self.record_next(&mut performing).await;
        }
    }

    /// The policy in charge's next actions for the round as it stands (`Err`: an incident).
    fn decide(&mut self, charge: &mut InCharge<'_>, now: u64) -> Result<Vec<Action>, Incident> {
        self.infos = self.topology.infos();
        if self.nodes_seen.is_empty() {
            self.nodes_seen = self.infos.clone();
        }
        let live = self.shadow.as_deref().map(|s| s.live_decision());
        let decision = charge.decide(self.job, &self.infos, &self.history, now, self.limits);
        drop(live);
        self.decision_nanos
            .push(u64::try_from(decision.took.as_nanos()).unwrap_or(u64::MAX));
        self.note_decision(now, charge.rank == Rank::Fallback, &decision.actions);
        decision.actions
    }

    /// Keeps what this decision saw and answered, in the record's compact form.
    fn note_decision(&mut self, now: u64, fallback: bool, answer: &Result<Vec<Action>, Incident>) {
        self.told_ended.resize(self.history.len(), false);
        let mut ended = Vec::new();
        for (i, event) in self.history.iter().enumerate() {
            if event.outcome.is_some() && !self.told_ended[i] {
                self.told_ended[i] = true;
                ended.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        let unchanged = self
            .decisions
            .iter()
            .rev()
            .find_map(|p| p.nodes.as_ref())
            .is_some_and(|last| *last == self.infos);
        let (actions, incident) = match answer {
            Ok(actions) => (actions.clone(), None),
            Err(i) => (Vec::new(), Some(i.to_string())),
        };
        let k = u32::try_from(self.decisions.len()).unwrap_or(u32::MAX);
        if let Some(shadow) = self.shadow.as_deref_mut() {
            let live = match &incident {
                Some(i) => crate::rounds::replay::Answer::Incident(i.clone()),
                None => crate::rounds::replay::Answer::Actions(actions.clone()),
            };
            if fallback {
                shadow.live_contained();
            } else {
                shadow.decided(k, self.job, &self.infos, &self.history, &ended, now, live);
            }
        }
        self.decisions.push(DecisionPoint {
            t: now,
            len: u32::try_from(self.history.len()).unwrap_or(u32::MAX),
            ended,
            nodes: (!unchanged).then(|| self.infos.clone()),
            fallback,
            actions,
            incident,
        });
    }

    /// After `incident`, the fallback takes the round over; if the fallback itself misbehaved,
    /// nothing can, and the round ends (`Err` with the reason).
    fn hand_over<'p>(
        &mut self,
        from: &InCharge<'p>,
        incident: Incident,
        fallback: &'p Policy,
    ) -> Result<InCharge<'p>, String> {
        if from.rank == Rank::Fallback {
            let reason = format!("CRITICAL: the fallback policy failed too: {incident}");
            self.incidents.push(incident);
            return Err(reason);
        }
        self.contain(incident, fallback)
    }

    /// Starts `actions` together, each recorded in the history as it starts.
    fn start_all(
        &mut self,
        actions: Vec<Action>,
        now: u64,
        charge: &mut InCharge<'_>,
        performing: &mut Performing,
    ) {
        let budget = charge.attempts();
        for action in actions {
            let index = self.history.len();
            let node = action.node().map(str::to_string);
            let attempt = match &action {
                Action::Pin(p) => self.pins_on(&p.node) + 1,
                _ => 0,
            };
            let mut started = describe_start(&action, attempt, budget);
            if self.renews(&action) {
                started.push_str(", renewing the connection");
            }
            self.note(node, started);
            let mut progress = Progress::none();
            if let Some((name, kind)) = ledger_kind(&action) {
                let guard = self.topology.ledger().start(name, kind);
                progress = guard.progress();
                self.in_flight.insert(index, guard);
            }
            performing.push(self.perform(index, &action, progress));
            self.history.push(Event {
                action,
                outcome: None,
                started_ms: now,
                ended_ms: None,
            });
            charge.started_one();
        }
    }

    /// Waits for the next action under way to end and records its outcome.
    async fn record_next(&mut self, performing: &mut Performing) {
        // The rules refused an empty decision with nothing running, so this resolves.
        let Some((index, outcome)) = performing.next().await else {
            return;
        };
        let now = self.now_ms();
        if let Some(guard) = self.in_flight.remove(&index) {
            guard.ended(failure_name(&outcome));
        }
        let event = &mut self.history[index];
        event.outcome = Some(outcome.clone());
        event.ended_ms = Some(now);
        // A finished backoff says nothing new; the next start line shows time moved on.
        if !matches!(event.action, Action::Wait(_)) {
            let node = event.action.node().map(str::to_string);
            let what = event.action.name();
            self.note(node, format!("{what} -> {}", describe_outcome(&outcome)));
        }
    }

    fn succeed(mut self, nodes: Vec<String>, by: &Policy) -> RoundResult {
        self.abandon_running_pins(&nodes);
        self.note(None, format!("pinned and verified on {}", nodes.join(", ")));
        self.finish(RoundEnd::Pinned, nodes, None, by)
    }

    fn fail(mut self, reason: String, by: &Policy) -> RoundResult {
        self.note(None, format!("round failed: {reason}"));
        self.finish(RoundEnd::Failed, Vec::new(), Some(reason), by)
    }

    /// Logs and records an incident and puts the fallback policy in charge (`Err`: it cannot
    /// start, and the round ends with that reason).
    fn contain<'p>(
        &mut self,
        incident: Incident,
        fallback: &'p Policy,
    ) -> Result<InCharge<'p>, String> {
        tracing::warn!(
            policy = %incident.policy,
            kind = %incident.kind,
            cid = %self.job.cid,
            job_id = %self.job.job_id,
            "policy incident: {}; continuing under built-in {}",
            incident.message,
            fallback.name
        );
        let params: Vec<String> = fallback
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let with = if params.is_empty() {
            "its defaults".to_string()
        } else {
            params.join(", ")
        };
        self.note(
            None,
            format!(
                "POLICY INCIDENT ({}) in '{}': {}; continuing under {} with {with}",
                incident.kind, incident.policy, incident.message, fallback.name
            ),
        );
        self.incidents.push(incident);
        InCharge::open(fallback, Rank::Fallback).map_err(|i| {
            let reason = format!("CRITICAL: the fallback policy cannot start: {i}");
            self.incidents.push(i);
            reason
        })
    }

    /// A provider hint this round has already given the same node: the connection it made may
    /// have stopped carrying blocks, so it is replaced rather than kept (see
    /// [`Node::reconnect`]). A first hint leaves a working connection, which other jobs' transfers
    /// may be using, alone.
    fn renews(&self, action: &Action) -> bool {
        let Action::Connect(c) = action else {
            return false;
        };
        self.history
            .iter()
            .any(|e| matches!(&e.action, Action::Connect(earlier) if earlier.node == c.node))
    }

    /// The future of one action; a pin reports its progress to `progress` (the ledger's).
    fn perform(
        &self,
        index: usize,
        action: &Action,
        progress: Progress,
    ) -> BoxFuture<'static, (usize, Outcome)> {
        let cid = self.job.cid.clone();
        let client = |name: &str| self.topology.client(name).cloned();
        let (call, check) = (self.limits.call_timeout, self.limits.check_timeout);
        // The rules refused unknown nodes, so a missing client cannot happen; report it anyway.
        let unknown = || Outcome::Error("unknown node".into());
        match action.clone() {
            Action::Pin(p) => {
                let node = client(&p.node);
                let (bound, stall) = (
                    Duration::from_millis(p.timeout_ms),
                    Duration::from_millis(p.stall_timeout_ms),
                );
                let origins = Arc::clone(&self.origins);
                Box::pin(async move {
                    let Some(node) = node else {
                        return (index, unknown());
                    };
                    dial_origins(node.as_ref(), &origins, call).await;
                    let outcome = prove::pin(node.as_ref(), &cid, bound, stall, &progress).await;
                    (index, outcome)
                })
            }
            Action::Verify(n) => {
                let node = client(&n);
                Box::pin(async move {
                    let Some(node) = node else {
                        return (index, unknown());
                    };
                    (index, prove::verify(node.as_ref(), &cid, call).await)
                })
            }
            Action::CheckRetrievable(n) => {
                let node = client(&n);
                Box::pin(async move {
                    let Some(node) = node else {
                        return (index, unknown());
                    };
                    (
                        index,
                        prove::check_retrievable(node.as_ref(), &cid, check).await,
                    )
                })
            }
            Action::Connect(c) => {
                let (node, provider) = (client(&c.node), client(&c.provider));
                let renew = self.renews(action);
                Box::pin(async move {
                    let (Some(node), Some(provider)) = (node, provider) else {
                        return (index, unknown());
                    };
                    let slow = || {
                        Outcome::Error(format!(
                            "{} gave no swarm addresses within {} s",
                            c.provider,
                            HINT_ADDRS_BOUND.as_secs()
                        ))
                    };
                    let dial = async {
                        let addrs = timeout(HINT_ADDRS_BOUND, provider.swarm_addrs()).await;
                        let dialled = match addrs.unwrap_or_else(|_| Err(slow())) {
                            Ok(addrs) if renew => node.reconnect(&addrs).await,
                            Ok(addrs) => node.connect(&addrs).await,
                            Err(outcome) => return outcome,
                        };
                        if dialled != Outcome::Ok {
                            provider.swarm_addrs_failed();
                        }
                        dialled
                    };
                    (index, timeout(call, dial).await.unwrap_or(Outcome::Timeout))
                })
            }
            Action::Wait(w) => Box::pin(async move {
                sleep(Duration::from_millis(w.ms)).await;
                (index, Outcome::Ok)
            }),
            // Terminal actions never reach `perform`.
            Action::LocalFallback | Action::Succeed(_) | Action::Fail(_) => {
                Box::pin(async move { (index, Outcome::Error("not an action to run".into())) })
            }
        }
    }

    /// Pin on the local node and prove it: the round ends either way.
    async fn local_fallback(mut self, decided_by: &Policy) -> RoundResult {
        let Some((name, node)) = self.topology.local() else {
            let reason = "CRITICAL: local fallback without a local node".to_string();
            return self.finish(RoundEnd::Failed, Vec::new(), Some(reason), decided_by);
        };
        let (name, node) = (name.to_string(), Arc::clone(node));
        self.note(
            Some(name.clone()),
            "LAZY PIN FALLBACK: pinning on the local node".into(),
        );
        let bounds = PinBounds {
            pin: self.limits.local_pin_timeout,
            stall: self.limits.local_stall_timeout,
            call: self.limits.call_timeout,
            check: self.limits.check_timeout,
        };
        let started = self.now_ms();
        let cid = self.job.cid.clone();
        let proof = prove::pin_and_prove(node.as_ref(), &cid, bounds, |step, outcome| {
            let line = format!("local {step} -> {}", describe_outcome(outcome));
            self.note(Some(name.clone()), line);
        })
        .await;
        let ended = self.now_ms();
        self.history.push(Event {
            action: Action::LocalFallback,
            outcome: Some(match &proof {
                Ok(()) => Outcome::Ok,
                Err(unproven) => unproven.outcome.clone(),
            }),
            started_ms: started,
            ended_ms: Some(ended),
        });
        match proof {
            Ok(()) => self.finish(RoundEnd::LocalFallback, vec![name], None, decided_by),
            Err(unproven) => {
                let reason = format!(
                    "CRITICAL: local fallback {} failed on {name}: {}",
                    unproven.step,
                    describe_outcome(&unproven.outcome)
                );
                self.finish(RoundEnd::Failed, Vec::new(), Some(reason), decided_by)
            }
        }
    }

    /// Pins still running when other nodes confirmed lost the race: the ledger counts them as
    /// failed (a primary that cannot finish while a backup fetched and pinned is sick).
    fn abandon_running_pins(&mut self, winners: &[String]) {
        let lost: Vec<usize> = self
            .history
            .iter()
            .enumerate()
            .filter(|(_, e)| e.outcome.is_none() && matches!(e.action, Action::Pin(_)))
            .map(|(i, _)| i)
            .collect();
        for index in lost {
            let node = self.history[index].action.node().map(str::to_string);
            if let Some(guard) = self.in_flight.remove(&index) {
                guard.abandon();
            }
            self.note(
                node,
                format!("pin abandoned: {} confirmed first", winners.join(", ")),
            );
        }
    }

    /// What the ledger knew of troubled nodes when the round started.
    fn note_health(&mut self) {
        for info in self.topology.infos() {
            let h = &info.health;
            if h.consecutive_failures == 0 {
                continue;
            }
            let last = h
                .since_last_failure_ms
                .map(|ms| format!(", last {} ago", format_ms(ms)))
                .unwrap_or_default();
            self.note(
                Some(info.name.clone()),
                format!(
                    "health: {} failures in a row{last}; {} of the last {} actions ok",
                    h.consecutive_failures, h.recent_ok, h.recent_total
                ),
            );
        }
    }

    fn pins_on(&self, node: &str) -> usize {
        self.history
            .iter()
            .filter(|e| matches!(&e.action, Action::Pin(p) if p.node == node))
            .count()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn note(&mut self, node: Option<String>, text: String) {
        tracing::info!(
            cid = %self.job.cid,
            job_id = %self.job.job_id,
            node = node.as_deref().unwrap_or("-"),
            "{text}"
        );
        self.trace.push(TraceLine {
            t_ms: self.now_ms(),
            node,
            text,
        });
    }

    fn finish(
        self,
        status: RoundEnd,
        confirmed: Vec<String>,
        reason: Option<String>,
        decided_by: &Policy,
    ) -> RoundResult {
        let elapsed_ms = self.now_ms();
        RoundResult {
            status,
            confirmed,
            reason,
            decided_by: decided_by.name.clone(),
            incidents: self.incidents,
            nodes_seen: self.nodes_seen,
            history: self.history,
            trace: self.trace,
            elapsed_ms,
            decision_nanos: self.decision_nanos,
            decisions: self.decisions,
        }
    }
}

/// How long a provider hint waits for the provider to say where it listens. A hint is best
/// effort, and its provider is usually the primary a backup pins for because it is too
/// overloaded to answer: past this the hint fails and the pin goes ahead without it.
const HINT_ADDRS_BOUND: Duration = Duration::from_secs(2);

/// Dials each origin peer (its addresses grouped by peer id), best effort within `bound`:
/// a failed dial is only a lost hint, and the pin goes ahead either way.
async fn dial_origins(node: &dyn Node, origins: &[String], bound: Duration) {
    if origins.is_empty() {
        return;
    }
    let mut peers: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for addr in origins {
        let peer = crate::kubo::addr::peer_id(addr).map(str::to_string);
        match peers.iter_mut().find(|(p, _)| p.is_some() && *p == peer) {
            Some((_, addrs)) => addrs.push(addr.clone()),
            None => peers.push((peer, vec![addr.clone()])),
        }
    }
    let dials = peers
        .iter()
        .map(|(_, addrs)| node.connect(addrs))
        .collect::<FuturesUnordered<_>>()
        .collect::<Vec<_>>();
    if timeout(bound, dials).await.is_err() {
        tracing::debug!("origins not all dialled within {} ms", bound.as_millis());
    }
}

/// The node and kind of a node action the ledger tracks (waits and terminal actions are none).
fn ledger_kind(action: &Action) -> Option<(&str, health::Kind)> {
    match action {
        Action::Pin(p) => Some((&p.node, health::Kind::Pin)),
        Action::Verify(n) => Some((n, health::Kind::Verify)),
        Action::CheckRetrievable(n) => Some((n, health::Kind::CheckRetrievable)),
        Action::Connect(c) => Some((&c.node, health::Kind::Connect)),
        Action::Wait(_) | Action::LocalFallback | Action::Succeed(_) | Action::Fail(_) => None,
    }
}

/// `None` for ok, else the outcome's short name (metrics labels, the ledger).
pub fn failure_name(outcome: &Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Ok => None,
        Outcome::NotPinned => Some("not-pinned"),
        Outcome::Timeout => Some("timeout"),
        Outcome::Stalled => Some("stalled"),
        Outcome::Unreachable(_) => Some("unreachable"),
        Outcome::HttpError(_) => Some("http-error"),
        Outcome::Unretrievable(_) => Some("unretrievable"),
        Outcome::Error(_) => Some("error"),
    }
}
