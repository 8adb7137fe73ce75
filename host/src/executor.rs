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

use crate::node::Node;
use crate::policy::contract::{Action, Event, Job, Node as NodeInfo, Outcome, Role};
use crate::policy::{Incident, IncidentKind, Policy, Session};
use crate::trace::{TraceLine, action_name, action_node, describe_outcome, describe_start};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// The nodes a job may use, with their clients.
#[derive(Clone, Default)]
pub struct Topology {
    nodes: Vec<(NodeInfo, Arc<dyn Node>)>,
}

impl Topology {
    pub fn new() -> Self {
        Topology::default()
    }

    pub fn add(&mut self, name: &str, role: Role, client: Arc<dyn Node>) {
        self.nodes.push((
            NodeInfo {
                name: name.to_string(),
                role,
            },
            client,
        ));
    }

    pub fn infos(&self) -> Vec<NodeInfo> {
        self.nodes.iter().map(|(info, _)| info.clone()).collect()
    }

    fn client(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.nodes
            .iter()
            .find(|(info, _)| info.name == name)
            .map(|(_, c)| c)
    }

    fn local(&self) -> Option<(&str, &Arc<dyn Node>)> {
        self.nodes
            .iter()
            .find(|(info, _)| info.role == Role::Local)
            .map(|(info, c)| (info.name.as_str(), c))
    }
}

/// Host-side bounds that no policy can lift.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bound for `verify`, `check-retrievable` and `connect`.
    pub call_timeout: Duration,
    pub max_wait: Duration,
    pub max_pin_timeout: Duration,
    /// Actions one policy may start in a round before it is considered runaway.
    pub max_actions: usize,
    /// Timeouts of the local-fallback pin (the action carries none).
    pub local_pin_timeout: Duration,
    pub local_stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_secs(30),
            max_wait: Duration::from_secs(3600),
            max_pin_timeout: Duration::from_secs(24 * 3600),
            max_actions: 2_000,
            local_pin_timeout: Duration::from_secs(300),
            local_stall_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Pinned, verified and retrievable on the confirmed nodes.
    Pinned,
    /// The round failed; the job stays retryable.
    Failed,
    /// Pinned on the local node, to be migrated later.
    LocalFallback,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pinned => "pinned",
            Status::Failed => "failed",
            Status::LocalFallback => "local-fallback",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    pub status: Status,
    pub confirmed: Vec<String>,
    /// Why the round failed (starts with `CRITICAL` when every option was exhausted).
    pub reason: Option<String>,
    /// The policy that made the last decision (the fallback, after an incident).
    pub decided_by: String,
    pub incidents: Vec<Incident>,
    pub history: Vec<Event>,
    pub trace: Vec<TraceLine>,
    pub elapsed_ms: u64,
    /// Wall time of each `decide` call, in nanoseconds (for the latency histogram).
    #[serde(skip)]
    pub decision_nanos: Vec<u64>,
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

type Running = FuturesUnordered<BoxFuture<'static, (usize, Outcome)>>;

/// Runs one round of `job` under `policy`, falling back to `fallback` if `policy` misbehaves.
pub async fn run_round(
    policy: &Policy,
    fallback: &Policy,
    job: &Job,
    topology: &Topology,
    limits: &Limits,
) -> RoundResult {
    Round {
        job,
        topology,
        limits,
        infos: topology.infos(),
        start: Instant::now(),
        history: Vec::new(),
        trace: Vec::new(),
        incidents: Vec::new(),
        decision_nanos: Vec::new(),
    }
    .run(policy, fallback)
    .await
}

struct Round<'a> {
    job: &'a Job,
    topology: &'a Topology,
    limits: &'a Limits,
    infos: Vec<NodeInfo>,
    start: Instant,
    history: Vec<Event>,
    trace: Vec<TraceLine>,
    incidents: Vec<Incident>,
    decision_nanos: Vec<u64>,
}

impl Round<'_> {
    async fn run(mut self, policy: &Policy, fallback: &Policy) -> RoundResult {
        let mut running: Running = FuturesUnordered::new();
        let mut current = policy;
        let mut session = match policy.session() {
            Ok(s) => s,
            Err(incident) => match self.contain(incident, fallback) {
                Ok(s) => {
                    current = fallback;
                    s
                }
                Err(reason) => {
                    return self.finish(Status::Failed, Vec::new(), Some(reason), fallback);
                }
            },
        };
        let mut started_by_current = 0usize;
        let attempts_of = |p: &Policy| p.param("attempts").and_then(|v| v.parse::<u32>().ok());
        let mut budget = attempts_of(current);

        loop {
            let now = self.now_ms();
            let asked = std::time::Instant::now();
            let decided = session.decide(self.job, &self.infos, &self.history, now);
            self.decision_nanos
                .push(u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX));
            let decided = decided.and_then(|actions| {
                self.validate(&actions, running.is_empty(), started_by_current)
                    .map_err(|message| Incident {
                        policy: current.name.clone(),
                        kind: IncidentKind::InvalidAction,
                        message,
                    })
                    .map(|()| actions)
            });
            let actions = match decided {
                Ok(actions) => actions,
                Err(incident) => {
                    if std::ptr::eq(current, fallback) {
                        let reason =
                            format!("CRITICAL: the fallback policy failed too: {incident}");
                        self.incidents.push(incident);
                        return self.finish(Status::Failed, Vec::new(), Some(reason), current);
                    }
                    session = match self.contain(incident, fallback) {
                        Ok(s) => s,
                        Err(reason) => {
                            return self.finish(Status::Failed, Vec::new(), Some(reason), fallback);
                        }
                    };
                    current = fallback;
                    budget = attempts_of(current);
                    started_by_current = 0;
                    continue;
                }
            };

            match actions.as_slice() {
                [Action::Succeed(nodes)] => {
                    self.note(None, format!("pinned and verified on {}", nodes.join(", ")));
                    return self.finish(Status::Pinned, nodes.clone(), None, current);
                }
                [Action::Fail(reason)] => {
                    self.note(None, format!("round failed: {reason}"));
                    return self.finish(Status::Failed, Vec::new(), Some(reason.clone()), current);
                }
                [Action::LocalFallback] => return self.local_fallback(current).await,
                _ => {}
            }
            for action in actions {
                let index = self.history.len();
                let node = action_node(&action);
                let attempt = match &action {
                    Action::Pin(p) => self.pins_on(&p.node) + 1,
                    _ => 0,
                };
                self.note(node, describe_start(&action, attempt, budget));
                running.push(self.perform(index, &action));
                self.history.push(Event {
                    action,
                    outcome: None,
                    started_ms: now,
                    ended_ms: None,
                });
                started_by_current += 1;
            }

            // `validate` refused an empty decision with nothing running, so this resolves.
            let Some((index, outcome)) = running.next().await else {
                continue;
            };
            let now = self.now_ms();
            let event = &mut self.history[index];
            event.outcome = Some(outcome.clone());
            event.ended_ms = Some(now);
            // A finished backoff says nothing new; the next start line shows time moved on.
            if !matches!(event.action, Action::Wait(_)) {
                let node = action_node(&event.action);
                let what = action_name(&event.action);
                self.note(node, format!("{what} -> {}", describe_outcome(&outcome)));
            }
        }
    }

    /// Logs and records an incident and opens a session of the fallback policy.
    fn contain(&mut self, incident: Incident, fallback: &Policy) -> Result<Session, String> {
        tracing::warn!(
            policy = %incident.policy,
            kind = %incident.kind,
            cid = %self.job.cid,
            job_id = %self.job.job_id,
            "policy incident: {}; continuing under built-in {}",
            incident.message,
            fallback.name
        );
        self.note(
            None,
            format!(
                "POLICY INCIDENT ({}) in '{}': {}; continuing under {}",
                incident.kind, incident.policy, incident.message, fallback.name
            ),
        );
        self.incidents.push(incident);
        fallback.session().map_err(|i| {
            let reason = format!("CRITICAL: the fallback policy cannot start: {i}");
            self.incidents.push(i);
            reason
        })
    }

    /// The host's rules; a decision that breaks one is an incident, never executed.
    fn validate(&self, actions: &[Action], idle: bool, started: usize) -> Result<(), String> {
        if actions.is_empty() {
            return if idle {
                Err("returned no action while nothing is running".into())
            } else {
                Ok(())
            };
        }
        if started + actions.len() > self.limits.max_actions {
            return Err(format!(
                "started more than {} actions in one round",
                self.limits.max_actions
            ));
        }
        let terminal = actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Succeed(_) | Action::Fail(_) | Action::LocalFallback
                )
            })
            .count();
        if terminal > 0 && actions.len() > 1 {
            return Err("succeed, fail and local-fallback must be returned alone".into());
        }
        let known = |name: &str| -> Result<(), String> {
            if self.infos.iter().any(|n| n.name == name) {
                Ok(())
            } else {
                Err(format!("unknown node '{name}'"))
            }
        };
        let mut busy: HashSet<(&'static str, String)> = self
            .history
            .iter()
            .filter(|e| e.outcome.is_none())
            .filter_map(|e| action_node(&e.action).map(|n| (action_name(&e.action), n)))
            .collect();
        for action in actions {
            match action {
                Action::Pin(p) => {
                    known(&p.node)?;
                    let max = self.limits.max_pin_timeout.as_millis() as u64;
                    if p.timeout_ms == 0 || p.timeout_ms > max {
                        return Err(format!(
                            "pin timeout of {} ms is out of range",
                            p.timeout_ms
                        ));
                    }
                    if p.stall_timeout_ms == 0 || p.stall_timeout_ms > p.timeout_ms {
                        return Err(format!(
                            "stall timeout of {} ms is out of range",
                            p.stall_timeout_ms
                        ));
                    }
                }
                Action::Verify(n) | Action::CheckRetrievable(n) => known(n)?,
                Action::Connect(c) => {
                    known(&c.node)?;
                    known(&c.provider)?;
                }
                Action::Wait(w) => {
                    if w.ms > self.limits.max_wait.as_millis() as u64 {
                        return Err(format!("a wait of {} ms is absurd", w.ms));
                    }
                    if let Some(n) = &w.node {
                        known(n)?;
                    }
                }
                Action::Succeed(nodes) => self.check_evidence(nodes)?,
                Action::LocalFallback => {
                    if self.topology.local().is_none() {
                        return Err("local fallback without a local node".into());
                    }
                }
                Action::Fail(_) => {}
            }
            if let Some(node) = action_node(action)
                && !matches!(action, Action::Wait(_))
                && !busy.insert((action_name(action), node.clone()))
            {
                return Err(format!(
                    "{} on '{node}' while one is already running",
                    action_name(action)
                ));
            }
        }
        Ok(())
    }

    /// Success needs, per node: the last pin ok, then `pin ls` ok, then retrievable ok.
    fn check_evidence(&self, nodes: &[String]) -> Result<(), String> {
        if nodes.is_empty() {
            return Err("succeed without any node".into());
        }
        if nodes.len() > self.infos.len() {
            return Err(format!(
                "succeed on {} nodes but the topology has {}",
                nodes.len(),
                self.infos.len()
            ));
        }
        let mut seen = HashSet::new();
        for node in nodes {
            if !seen.insert(node) {
                return Err(format!("succeed names '{node}' twice"));
            }
            if !self.infos.iter().any(|n| &n.name == node) {
                return Err(format!("succeed on unknown node '{node}'"));
            }
            let ok = |e: &Event| e.outcome == Some(Outcome::Ok);
            let last_pin = self
                .history
                .iter()
                .rposition(|e| matches!(&e.action, Action::Pin(p) if &p.node == node));
            let evidence = last_pin.filter(|&i| ok(&self.history[i])).and_then(|i| {
                let after = &self.history[i + 1..];
                let v = after
                    .iter()
                    .position(|e| matches!(&e.action, Action::Verify(n) if n == node) && ok(e))?;
                after[v + 1..].iter().position(|e| {
                    matches!(&e.action, Action::CheckRetrievable(n) if n == node) && ok(e)
                })
            });
            if evidence.is_none() {
                return Err(format!(
                    "succeed on '{node}' without a verified, retrievable pin there"
                ));
            }
        }
        Ok(())
    }

    fn perform(&self, index: usize, action: &Action) -> BoxFuture<'static, (usize, Outcome)> {
        let cid = self.job.cid.clone();
        let client = |name: &str| self.topology.client(name).cloned();
        let call_timeout = self.limits.call_timeout;
        match action.clone() {
            Action::Pin(p) => {
                let node = client(&p.node);
                Box::pin(async move {
                    let Some(node) = node else {
                        return (index, Outcome::Error("unknown node".into()));
                    };
                    let stall = Duration::from_millis(p.stall_timeout_ms);
                    let bound = Duration::from_millis(p.timeout_ms);
                    let outcome = timeout(bound, node.pin(&cid, stall))
                        .await
                        .unwrap_or(Outcome::Timeout);
                    (index, outcome)
                })
            }
            Action::Verify(n) | Action::CheckRetrievable(n) => {
                let node = client(&n);
                let verify = matches!(action, Action::Verify(_));
                Box::pin(async move {
                    let Some(node) = node else {
                        return (index, Outcome::Error("unknown node".into()));
                    };
                    let call = async {
                        if verify {
                            node.verify(&cid).await
                        } else {
                            node.check_retrievable(&cid).await
                        }
                    };
                    let outcome = timeout(call_timeout, call)
                        .await
                        .unwrap_or(Outcome::Timeout);
                    (index, outcome)
                })
            }
            Action::Connect(c) => {
                let (node, provider) = (client(&c.node), client(&c.provider));
                Box::pin(async move {
                    let (Some(node), Some(provider)) = (node, provider) else {
                        return (index, Outcome::Error("unknown node".into()));
                    };
                    let call = async {
                        match provider.swarm_addrs().await {
                            Ok(addrs) => node.connect(&addrs).await,
                            Err(outcome) => outcome,
                        }
                    };
                    let outcome = timeout(call_timeout, call)
                        .await
                        .unwrap_or(Outcome::Timeout);
                    (index, outcome)
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

    /// Pin on the local node, verify, check the blocks: the round ends either way.
    async fn local_fallback(mut self, decided_by: &Policy) -> RoundResult {
        let Some((name, node)) = self.topology.local() else {
            let reason = "CRITICAL: local fallback without a local node".to_string();
            return self.finish(Status::Failed, Vec::new(), Some(reason), decided_by);
        };
        let (name, node) = (name.to_string(), Arc::clone(node));
        let cid = self.job.cid.clone();
        let limits = *self.limits;
        self.note(
            Some(name.clone()),
            "LAZY PIN FALLBACK: pinning on the local node".into(),
        );
        let steps: [(&str, BoxFuture<'_, Outcome>); 3] = [
            (
                "pin",
                Box::pin(async {
                    timeout(
                        limits.local_pin_timeout,
                        node.pin(&cid, limits.local_stall_timeout),
                    )
                    .await
                    .unwrap_or(Outcome::Timeout)
                }),
            ),
            (
                "verify",
                Box::pin(async {
                    timeout(limits.call_timeout, node.verify(&cid))
                        .await
                        .unwrap_or(Outcome::Timeout)
                }),
            ),
            (
                "check-retrievable",
                Box::pin(async {
                    timeout(limits.call_timeout, node.check_retrievable(&cid))
                        .await
                        .unwrap_or(Outcome::Timeout)
                }),
            ),
        ];
        let started = self.now_ms();
        let mut failure = None;
        for (step, call) in steps {
            let outcome = call.await;
            self.note(
                Some(name.clone()),
                format!("local {step} -> {}", describe_outcome(&outcome)),
            );
            if outcome != Outcome::Ok {
                failure = Some((step, outcome));
                break;
            }
        }
        let ended = self.now_ms();
        let outcome = failure
            .as_ref()
            .map(|(_, o)| o.clone())
            .unwrap_or(Outcome::Ok);
        self.history.push(Event {
            action: Action::LocalFallback,
            outcome: Some(outcome),
            started_ms: started,
            ended_ms: Some(ended),
        });
        match failure {
            None => self.finish(Status::LocalFallback, vec![name], None, decided_by),
            Some((step, outcome)) => {
                let reason = format!(
                    "CRITICAL: local fallback {step} failed on {name}: {}",
                    describe_outcome(&outcome)
                );
                self.finish(Status::Failed, Vec::new(), Some(reason), decided_by)
            }
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
        status: Status,
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
            history: self.history,
            trace: self.trace,
            elapsed_ms,
            decision_nanos: self.decision_nanos,
        }
    }
}
