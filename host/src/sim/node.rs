//! A simulated IPFS node that answers from a script, on tokio's (virtual) clock.
//!
//! A script may change over time (`[[node.phase]]`: e.g. the primary stalls from minute 0 to
//! 40), judged at each call's start against virtual time since the scenario began. Every pin
//! call is logged, with whether the node's circuit breaker was open in the ledger when it
//! started, so outage drills can count what a sick node was still asked to do.

use crate::Outcome;
use crate::health::{Ledger, Progress};
use crate::node::Node;
use crate::policy::contract::HttpError;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// How a node answers one `pin/add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinAnswer {
    /// Pins for real after `pin_ms`.
    Ok,
    /// Answers OK after `pin_ms` but pins nothing (`pin ls` will disagree).
    Lie,
    /// Hangs, so the pin's overall timeout fires.
    Timeout,
    /// Stops reporting progress, so the stall timeout fires.
    Stall,
    /// Connection refused.
    Refused,
    /// HTTP 500 from the node.
    Http500,
}

/// One node of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeScript {
    pub name: String,
    #[serde(with = "crate::policy::contract::role_name")]
    pub role: crate::Role,
    /// Answer per pin attempt; the last one repeats. Empty: always `ok`.
    #[serde(default)]
    pub pin: Vec<PinAnswer>,
    /// How long a pin that answers takes.
    #[serde(default = "default_pin_ms")]
    pub pin_ms: u64,
    /// Refuses every connection.
    #[serde(default)]
    pub offline: bool,
    /// Whether pinned content is also retrievable (false models a corrupt blockstore).
    #[serde(default = "default_true")]
    pub retrievable: bool,
    /// Behaviour that differs over virtual time (`[[node.phase]]`); outside every phase the
    /// fields above apply.
    #[serde(default, rename = "phase")]
    pub phases: Vec<Phase>,
    /// What the node stands for: `kubo` (default), `cluster` or `psa`; the policy sees it
    /// (contract 0.4.0). The scripted answers are the node's as a whole (for a cluster, the
    /// state of its pin across peers).
    #[serde(default)]
    pub kind: crate::node::NodeKind,
    /// The copies one confirmed pin stands for (a cluster's replication-min; default 1).
    #[serde(default = "default_replication")]
    pub replication: u32,
}

fn default_replication() -> u32 {
    1
}

/// The node's behaviour from `from_ms` until `until_ms` of virtual time (open-ended without
/// `until_ms`). Fields it leaves out keep the node's own values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    #[serde(default)]
    pub from_ms: u64,
    pub until_ms: Option<u64>,
    /// Answers per pin started in this phase (the last repeats); absent: the node's `pin`.
    pub pin: Option<Vec<PinAnswer>>,
    pub pin_ms: Option<u64>,
    pub offline: Option<bool>,
    pub retrievable: Option<bool>,
}

impl Phase {
    fn covers(&self, ms: u64) -> bool {
        self.from_ms <= ms && self.until_ms.is_none_or(|until| ms < until)
    }
}

impl NodeScript {
    /// Phases must be non-empty and in order without overlapping, so exactly one applies.
    pub fn check(&self) -> Result<(), String> {
        let mut previous_end = Some(0);
        for (i, phase) in self.phases.iter().enumerate() {
            let n = i + 1;
            if phase.until_ms.is_some_and(|until| until <= phase.from_ms) {
                return Err(format!(
                    "node '{}': phase {n} ends before it starts",
                    self.name
                ));
            }
            match previous_end {
                Some(end) if phase.from_ms >= end => {}
                _ => {
                    return Err(format!(
                        "node '{}': phase {n} overlaps the one before (phases go in time order)",
                        self.name
                    ));
                }
            }
            previous_end = phase.until_ms;
        }
        Ok(())
    }

    /// The phase in force `ms` into the scenario, as (index, phase).
    fn phase_at(&self, ms: u64) -> Option<(usize, &Phase)> {
        self.phases.iter().enumerate().find(|(_, p)| p.covers(ms))
    }
}

fn default_pin_ms() -> u64 {
    800
}
fn default_true() -> bool {
    true
}

/// Latency of pin ls and block checks on a simulated node.
const QUERY_MS: u64 = 20;
/// How often a running pin reports progress, as Kubo's `pin/add` stream does.
const PROGRESS_MS: u64 = 500;

/// Where a simulated node reads its circuit breaker: the topology's ledger, with the policy's
/// `breaker_failures` and `breaker_cooldown_ms`.
#[derive(Clone)]
pub struct BreakerWatch {
    pub ledger: Arc<Ledger>,
    pub thresholds: crate::health::Thresholds,
}

/// One `pin/add` the node was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinCall {
    /// Virtual time since the scenario began.
    pub at_ms: u64,
    /// The node's breaker was open (its consecutive failures had reached `breaker_failures`)
    /// when the pin started: a probe, or a policy ignoring the breaker.
    pub breaker_open: bool,
    /// Still running, or dropped before answering (the round ended without it: it lost a race).
    pub cancelled: bool,
}

pub struct SimNode {
    script: NodeScript,
    /// Virtual time zero of the scenario (phases count from here).
    epoch: Instant,
    watch: Option<BreakerWatch>,
    state: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    /// Pins started outside any phase, then per phase (each phase's answers count from 0).
    pins: Vec<usize>,
    pinned: HashSet<String>,
    calls: Vec<PinCall>,
    in_flight: usize,
}

/// What the node is like at one moment.
struct Now<'a> {
    pin: &'a [PinAnswer],
    pin_ms: u64,
    offline: bool,
    retrievable: bool,
    /// Which answer counter applies: 0 outside phases, phase index + 1 inside.
    counter: usize,
}

impl SimNode {
    /// A node whose virtual time starts now.
    pub fn new(script: NodeScript) -> Self {
        SimNode::starting_at(script, Instant::now(), None)
    }

    /// A node whose phases count from `epoch`, logging its breaker as `watch` reads it.
    pub fn starting_at(script: NodeScript, epoch: Instant, watch: Option<BreakerWatch>) -> Self {
        let counters = script.phases.len() + 1;
        SimNode {
            script,
            epoch,
            watch,
            state: Mutex::new(SimState {
                pins: vec![0; counters],
                ..SimState::default()
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.script.name
    }

    pub fn role(&self) -> crate::Role {
        self.script.role
    }

    /// Every pin call so far, in order.
    pub fn pin_calls(&self) -> Vec<PinCall> {
        self.with_state(|s| s.calls.clone())
    }

    /// Pin calls running now (a cancelled one stops counting the moment it is dropped).
    pub fn pins_in_flight(&self) -> usize {
        self.with_state(|s| s.in_flight)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn now(&self) -> Now<'_> {
        let s = &self.script;
        match s.phase_at(self.elapsed_ms()) {
            None => Now {
                pin: &s.pin,
                pin_ms: s.pin_ms,
                offline: s.offline,
                retrievable: s.retrievable,
                counter: 0,
            },
            Some((i, p)) => Now {
                pin: p.pin.as_deref().unwrap_or(&s.pin),
                pin_ms: p.pin_ms.unwrap_or(s.pin_ms),
                offline: p.offline.unwrap_or(s.offline),
                retrievable: p.retrievable.unwrap_or(s.retrievable),
                // A phase that keeps the node's answers keeps counting them too.
                counter: if p.pin.is_some() { i + 1 } else { 0 },
            },
        }
    }

    /// Whether the breaker is open as the ledger sees it now. The executor records a pin's
    /// start before calling the node, so an open breaker reads as open, never half-open, here.
    fn breaker_open(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| {
            let health = w.ledger.health(&self.script.name);
            w.thresholds.breaker(&health) != host_rules::Breaker::Closed
        })
    }

    fn refused() -> Outcome {
        Outcome::Unreachable("connection refused".into())
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        // A poisoned lock only means another simulated call panicked; the state is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

/// A pin call in progress: answered, it is no longer cancelled; dropped, it leaves the
/// in-flight count either way.
struct PinGuard<'a> {
    node: &'a SimNode,
    index: usize,
}

impl PinGuard<'_> {
    fn answered(self) {
        self.node
            .with_state(|s| s.calls[self.index].cancelled = false);
    }
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        self.node
            .with_state(|s| s.in_flight = s.in_flight.saturating_sub(1));
    }
}

#[async_trait]
impl Node for SimNode {
    fn capabilities(&self) -> crate::node::Capabilities {
        use crate::node::{NodeKind, Proof};
        crate::node::Capabilities {
            kind: self.script.kind,
            proof: match self.script.kind {
                NodeKind::Kubo => Proof::LocalWalk,
                NodeKind::Cluster => Proof::PeerWalk,
                NodeKind::Psa => Proof::FetchFromDelegates,
            },
            replication: self.script.replication.max(1),
        }
    }

    async fn pin(&self, cid: &str, stall: Duration) -> Outcome {
        self.pin_watched(cid, stall, &Progress::none()).await
    }

    /// A Kubo-kind node reports progress as Kubo does, every [`PROGRESS_MS`] while a pin that
    /// answers runs; a stalled or hanging pin reports none. Other kinds report none.
    async fn pin_watched(&self, cid: &str, stall: Duration, progress: &Progress) -> Outcome {
        let at_ms = self.elapsed_ms();
        let breaker_open = self.breaker_open();
        let now = self.now();
        let (answer, index) = self.with_state(|s| {
            // A refused connection consumes no scripted answer: the node never heard the pin.
            let answer = if now.offline {
                PinAnswer::Refused
            } else {
                let n = &mut s.pins[now.counter];
                let answer = now.pin.get(*n).or(now.pin.last()).copied();
                *n += 1;
                answer.unwrap_or(PinAnswer::Ok)
            };
            s.in_flight += 1;
            s.calls.push(PinCall {
                at_ms,
                breaker_open,
                cancelled: true,
            });
            (answer, s.calls.len() - 1)
        });
        let guard = PinGuard { node: self, index };
        // As the Kubo client: a node of another kind reports nothing, nor does a pin that is
        // answered at once.
        let none = Progress::none();
        let answered_at_once = matches!(answer, PinAnswer::Refused | PinAnswer::Http500);
        let progress = if self.script.kind == crate::node::NodeKind::Kubo && !answered_at_once {
            progress.watching();
            progress
        } else {
            &none
        };
        let outcome = match answer {
            PinAnswer::Ok | PinAnswer::Lie => {
                let mut left = now.pin_ms;
                while left > 0 {
                    let step = left.min(PROGRESS_MS);
                    sleep(Duration::from_millis(step)).await;
                    left -= step;
                    progress.moved();
                }
                if answer == PinAnswer::Ok {
                    self.with_state(|s| s.pinned.insert(cid.to_string()));
                }
                Outcome::Ok
            }
            PinAnswer::Timeout => std::future::pending().await,
            PinAnswer::Stall => {
                sleep(stall).await;
                Outcome::Stalled
            }
            PinAnswer::Refused => Self::refused(),
            PinAnswer::Http500 => Outcome::HttpError(HttpError {
                status: 500,
                message: "internal server error".into(),
            }),
        };
        guard.answered();
        outcome
    }

    async fn verify(&self, cid: &str) -> Outcome {
        if self.now().offline {
            return Self::refused();
        }
        sleep(Duration::from_millis(QUERY_MS)).await;
        if self.with_state(|s| s.pinned.contains(cid)) {
            Outcome::Ok
        } else {
            Outcome::NotPinned
        }
    }

    async fn check_retrievable(&self, cid: &str) -> Outcome {
        let now = self.now();
        if now.offline {
            return Self::refused();
        }
        sleep(Duration::from_millis(QUERY_MS)).await;
        if self.with_state(|s| s.pinned.contains(cid)) && now.retrievable {
            Outcome::Ok
        } else {
            Outcome::Unretrievable("blocks missing".into())
        }
    }

    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome> {
        if self.now().offline {
            return Err(Self::refused());
        }
        Ok(vec![format!(
            "/ip4/127.0.0.1/tcp/4001/p2p/sim-{}",
            self.script.name
        )])
    }

    async fn unpin(&self, cid: &str) -> Outcome {
        if self.now().offline {
            return Self::refused();
        }
        sleep(Duration::from_millis(QUERY_MS)).await;
        self.with_state(|s| s.pinned.remove(cid));
        Outcome::Ok
    }

    async fn connect(&self, _addrs: &[String]) -> Outcome {
        if self.now().offline {
            Self::refused()
        } else {
            Outcome::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn script(pin: &[PinAnswer], phases: Vec<Phase>) -> NodeScript {
        NodeScript {
            name: "primary".into(),
            role: Role::Primary,
            pin: pin.to_vec(),
            pin_ms: 800,
            offline: false,
            retrievable: true,
            phases,
            kind: crate::node::NodeKind::Kubo,
            replication: 1,
        }
    }

    const CID: &str = "bafy-test";

    #[tokio::test(start_paused = true)]
    async fn phases_change_the_answers_over_virtual_time() {
        let sick = Phase {
            from_ms: 0,
            until_ms: Some(60_000),
            pin: Some(vec![PinAnswer::Http500]),
            ..Phase::default()
        };
        let node = SimNode::new(script(&[PinAnswer::Ok], vec![sick]));
        let stall = Duration::from_secs(5);
        assert!(matches!(node.pin(CID, stall).await, Outcome::HttpError(_)));
        assert_eq!(node.verify(CID).await, Outcome::NotPinned);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(node.pin(CID, stall).await, Outcome::Ok);
        assert_eq!(node.verify(CID).await, Outcome::Ok);
        // Pinned content is per CID: jobs of a stream do not share it.
        assert_eq!(node.verify("bafy-other").await, Outcome::NotPinned);
        let at: Vec<u64> = node.pin_calls().iter().map(|c| c.at_ms).collect();
        assert_eq!(at, [0, 60_020]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_pin_hangs_until_dropped_and_then_stops_counting() {
        let node = SimNode::new(script(&[PinAnswer::Stall], Vec::new()));
        let stall = Duration::from_secs(60);
        let raced = tokio::time::timeout(Duration::from_secs(10), node.pin(CID, stall)).await;
        assert!(raced.is_err(), "still stalling after 10 s");
        assert_eq!(node.pins_in_flight(), 0);
        assert!(node.pin_calls()[0].cancelled);
        // Left alone, it reports the stall at the stall timeout.
        let started = Instant::now();
        assert_eq!(node.pin(CID, stall).await, Outcome::Stalled);
        assert_eq!(started.elapsed(), stall);
        assert!(!node.pin_calls()[1].cancelled);
        // An ok pin cancelled before it answered pins nothing.
        let ok = SimNode::new(script(&[PinAnswer::Ok], Vec::new()));
        let cut = tokio::time::timeout(Duration::from_millis(100), ok.pin(CID, stall)).await;
        assert!(cut.is_err());
        assert_eq!(ok.verify(CID).await, Outcome::NotPinned);
    }

    #[test]
    fn phases_must_be_ordered() {
        let p = |from_ms, until_ms| Phase {
            from_ms,
            until_ms,
            ..Phase::default()
        };
        assert!(
            script(&[], vec![p(0, Some(10)), p(10, None)])
                .check()
                .is_ok()
        );
        let err = script(&[], vec![p(0, Some(10)), p(5, None)])
            .check()
            .unwrap_err();
        assert!(err.contains("phase 2 overlaps"), "{err}");
        let err = script(&[], vec![p(0, None), p(5, Some(6))])
            .check()
            .unwrap_err();
        assert!(err.contains("phase 2 overlaps"), "{err}");
        let err = script(&[], vec![p(7, Some(7))]).check().unwrap_err();
        assert!(err.contains("phase 1 ends before it starts"), "{err}");
    }
}
