//! `policy replay`: a candidate policy asked at every recorded decision point of every round,
//! given what the live policy was given (the same job, nodes and health, history prefix and
//! `now`). A round agrees while the candidate answers what the record says; its first
//! different answer is the round's divergence, classified ([`Class`]).
//!
//! A diverging round is then re-run in the simulator (the real executor on scripted nodes and
//! virtual time) under the candidate, each node scripted from what it did in the record: its
//! pin answers in order, their duration, whether its blocks were retrievable. A node the live
//! round never asked cannot be known from the record: it is scripted to answer `ok`, and a
//! prediction that relied on it says so ([`Prediction::assumed`]).

use super::RoundRecord;
use crate::executor::in_charge::{InCharge, Rank};
use crate::executor::{RoundEnd, RoundLimits};
use crate::policy::Policy;
use crate::policy::contract::{Action, Event, Node as NodeInfo, Outcome};
use crate::sim::node::{NodeScript, PinAnswer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How a candidate's first different answer differs from the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Acts on other nodes (another backup, say).
    OtherNode,
    /// Waits longer (or waits where the live policy acted).
    LongerWait,
    /// Waits less (or acts where the live policy waited).
    ShorterWait,
    /// Fails the round where the live policy went on.
    GivesUpEarlier,
    /// Falls back to the local node where the live policy did not.
    FallsBack,
    /// Declares success where the live policy went on.
    SucceedsSooner,
    /// Goes on where the live policy ended the round.
    KeepsGoing,
    /// Same nodes and waits, other actions or timeouts.
    OtherAction,
    /// The candidate's answer is refused (trap, timeout, an action the host's rules refuse)
    /// where the live answer was not.
    Incident,
    /// The live answer was refused; the candidate's is not.
    AvoidsIncident,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::OtherNode => "other-node",
            Class::LongerWait => "longer-wait",
            Class::ShorterWait => "shorter-wait",
            Class::GivesUpEarlier => "gives-up-earlier",
            Class::FallsBack => "falls-back",
            Class::SucceedsSooner => "succeeds-sooner",
            Class::KeepsGoing => "keeps-going",
            Class::OtherAction => "other-action",
            Class::Incident => "incident",
            Class::AvoidsIncident => "avoids-incident",
        }
    }
}

/// What one side answered at a decision point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    Actions(Vec<Action>),
    Incident(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// The decision point (0-based) and its `now` in the round.
    pub point: usize,
    pub t_ms: u64,
    pub class: Class,
    pub live: Answer,
    pub candidate: Answer,
}

/// The simulator's prediction of how a diverging round would have ended under the candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub status: RoundEnd,
    pub confirmed: Vec<String>,
    pub elapsed_ms: u64,
    /// Predicted minus recorded duration (negative: sooner).
    pub delta_ms: i64,
    /// Ends as the record did: same status on the same nodes.
    pub same_end: bool,
    /// Nodes the candidate used that the live round never asked: scripted to answer `ok`,
    /// which the record cannot confirm.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assumed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One recorded round, replayed.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReplay {
    pub job_id: String,
    pub cid: String,
    pub at_ms: i64,
    pub live_end: RoundEnd,
    pub live_confirmed: Vec<String>,
    pub live_elapsed_ms: u64,
    /// Decision points the candidate was asked (up to and including the divergence).
    pub asked: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// Why the round could not be replayed (an inconsistent record), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreplayable: Option<String>,
}

/// Over all rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rounds: usize,
    pub decisions: usize,
    pub agree: usize,
    pub diverge: usize,
    pub unreplayable: usize,
    pub by_class: BTreeMap<String, usize>,
    /// Diverging rounds predicted to end as recorded.
    pub predicted_same_end: usize,
    /// Diverging rounds predicted to end pinned on other nodes, by the nodes.
    pub predicted_elsewhere: BTreeMap<String, usize>,
    /// Rounds recorded pinned (or in local fallback) that are predicted to fail.
    pub predicted_newly_failed: usize,
    /// Rounds recorded failed that are predicted to pin.
    pub predicted_newly_pinned: usize,
    /// Mean predicted-minus-recorded duration of the diverging rounds that end the same way.
    pub mean_delta_ms: Option<i64>,
    /// Predictions that relied on a node the live round never asked.
    pub predictions_with_assumptions: usize,
}

/// Replays every record under `candidate` (its own fresh instance per round, as live).
pub fn replay(
    records: &[RoundRecord],
    candidate: &Policy,
    fallback: &Policy,
    limits: &RoundLimits,
) -> (Vec<RoundReplay>, Summary) {
    let rounds: Vec<RoundReplay> = records
        .iter()
        .map(|r| replay_round(r, candidate, fallback, limits))
        .collect();
    let summary = summarise(&rounds);
    (rounds, summary)
}

/// One record under `candidate`.
pub fn replay_round(
    record: &RoundRecord,
    candidate: &Policy,
    fallback: &Policy,
    limits: &RoundLimits,
) -> RoundReplay {
    let mut out = RoundReplay {
        job_id: record.job.job_id.clone(),
        cid: record.job.cid.clone(),
        at_ms: record.at_ms,
        live_end: record.end.status,
        live_confirmed: record.end.confirmed.clone(),
        live_elapsed_ms: record.end.elapsed_ms,
        asked: 0,
        divergence: None,
        prediction: None,
        unreplayable: None,
    };
    match first_divergence(record, candidate, limits) {
        Ok((asked, divergence)) => {
            out.asked = asked;
            if let Some(d) = divergence {
                out.prediction = Some(predict(record, candidate, fallback, limits));
                out.divergence = Some(d);
            }
        }
        Err(why) => out.unreplayable = Some(why),
    }
    out
}

/// Asks the candidate at each point, in order, while it agrees. Returns how many points were
/// asked and the first divergence, if any. Points after the live policy was contained were
/// the fallback's: a candidate contained at the same point agrees with the rest by
/// construction (the same fallback takes over).
fn first_divergence(
    record: &RoundRecord,
    candidate: &Policy,
    limits: &RoundLimits,
) -> Result<(usize, Option<Divergence>), String> {
    let mut charge: Option<InCharge<'_>> = None;
    for (k, point) in record.points.iter().enumerate() {
        if point.fallback {
            // The live policy was contained before this point, and so was the candidate.
            return Ok((k, None));
        }
        let history = record
            .history_at(k)
            .ok_or_else(|| format!("decision {k} refers past the history"))?;
        let nodes = record
            .nodes_at(k)
            .ok_or_else(|| format!("decision {k} has no nodes"))?;
        if charge.is_none() {
            match InCharge::open(candidate, Rank::Chosen) {
                Ok(c) => charge = Some(c),
                Err(i) => {
                    let live = live_answer(point);
                    let asked = Answer::Incident(i.to_string());
                    return Ok((k + 1, divergence(k, point.t, live, asked)));
                }
            }
        }
        let Some(c) = charge.as_mut() else {
            return Err("no instance".into());
        };
        let asked = ask(c, &record.job, nodes, &history, point.t, limits);
        let live = live_answer(point);
        if !live.same_as(&asked) {
            return Ok((k + 1, divergence(k, point.t, live, asked)));
        }
        match &asked {
            // Both contained here: the fallback decides the rest for either.
            Answer::Incident(_) => return Ok((k + 1, None)),
            Answer::Actions(actions) => c.started(actions),
        }
    }
    Ok((record.points.len(), None))
}

fn live_answer(point: &crate::executor::DecisionPoint) -> Answer {
    match &point.incident {
        Some(i) => Answer::Incident(i.clone()),
        None => Answer::Actions(point.actions.clone()),
    }
}

fn divergence(point: usize, t_ms: u64, live: Answer, candidate: Answer) -> Option<Divergence> {
    Some(Divergence {
        point,
        t_ms,
        class: classify(&live, &candidate),
        live,
        candidate,
    })
}

/// The candidate's answer through the same [`InCharge`] a live round uses: the host's rules
/// and the round's decision budget apply as they do live.
pub(crate) fn ask(
    charge: &mut InCharge<'_>,
    job: &crate::policy::contract::Job,
    nodes: &[NodeInfo],
    history: &[Event],
    now: u64,
    limits: &RoundLimits,
) -> Answer {
    match charge.decide(job, nodes, history, now, limits).actions {
        Ok(actions) => Answer::Actions(actions),
        Err(incident) => Answer::Incident(incident.to_string()),
    }
}

impl Answer {
    /// The same answer: the same actions, or an incident on both sides (whatever its text).
    pub fn same_as(&self, other: &Answer) -> bool {
        match (self, other) {
            (Answer::Actions(a), Answer::Actions(b)) => a == b,
            (Answer::Incident(_), Answer::Incident(_)) => true,
            _ => false,
        }
    }
}

fn terminal(actions: &[Action]) -> Option<&Action> {
    actions.iter().find(|a| {
        matches!(
            a,
            Action::Succeed(_) | Action::Fail(_) | Action::LocalFallback
        )
    })
}

fn waits_ms(actions: &[Action]) -> u64 {
    actions
        .iter()
        .map(|a| match a {
            Action::Wait(w) => w.ms,
            _ => 0,
        })
        .sum()
}

/// The nodes the non-wait actions concern.
fn acted_on(actions: &[Action]) -> BTreeSet<String> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Wait(_)))
        .filter_map(|a| match a {
            Action::Succeed(nodes) => Some(nodes.join(",")),
            other => other.node().map(str::to_string),
        })
        .collect()
}

/// The divergence's class (the two answers differ).
pub fn classify(live: &Answer, candidate: &Answer) -> Class {
    let (live, cand) = match (live, candidate) {
        (Answer::Actions(_), Answer::Incident(_)) => return Class::Incident,
        (Answer::Incident(_), _) => return Class::AvoidsIncident,
        (Answer::Actions(l), Answer::Actions(c)) => (l, c),
    };
    match (terminal(live), terminal(cand)) {
        (l, Some(Action::Succeed(_))) if !matches!(l, Some(Action::Succeed(_))) => {
            return Class::SucceedsSooner;
        }
        (l, Some(Action::Fail(_))) if !matches!(l, Some(Action::Fail(_))) => {
            return Class::GivesUpEarlier;
        }
        (l, Some(Action::LocalFallback)) if !matches!(l, Some(Action::LocalFallback)) => {
            return Class::FallsBack;
        }
        (Some(_), None) => return Class::KeepsGoing,
        (Some(Action::Succeed(a)), Some(Action::Succeed(b))) if a != b => {
            return Class::OtherNode;
        }
        _ => {}
    }
    let (on_live, on_cand) = (acted_on(live), acted_on(cand));
    if on_live != on_cand && !on_live.is_empty() && !on_cand.is_empty() {
        return Class::OtherNode;
    }
    if on_cand.is_empty() && !on_live.is_empty() {
        return Class::LongerWait;
    }
    if on_live.is_empty() && !on_cand.is_empty() {
        return Class::ShorterWait;
    }
    match waits_ms(cand).cmp(&waits_ms(live)) {
        std::cmp::Ordering::Greater => Class::LongerWait,
        std::cmp::Ordering::Less => Class::ShorterWait,
        std::cmp::Ordering::Equal => Class::OtherAction,
    }
}

/// Each node of the record, scripted from what it did; and the nodes it never did anything.
pub fn scripts_of(record: &RoundRecord) -> (Vec<NodeScript>, Vec<String>) {
    let nodes = record.nodes_at(0).unwrap_or(&[]);
    let ok_pin_ms = |name: &str| -> Vec<u64> {
        record
            .history
            .iter()
            .filter(|e| matches!(&e.action, Action::Pin(p) if p.node == name))
            .filter(|e| e.outcome == Some(Outcome::Ok))
            .filter_map(|e| Some(e.ended_ms?.saturating_sub(e.started_ms)))
            .collect()
    };
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let all_ok: Vec<u64> = nodes.iter().flat_map(|n| ok_pin_ms(&n.name)).collect();
    let typical = median(all_ok).unwrap_or(800);
    let mut unasked = Vec::new();
    let scripts = nodes
        .iter()
        .map(|n| {
            let events: Vec<&Event> = record
                .history
                .iter()
                .filter(|e| e.action.node() == Some(n.name.as_str()))
                .filter(|e| !matches!(e.action, Action::Wait(_)))
                .collect();
            if events.is_empty() {
                unasked.push(n.name.clone());
            }
            let pins: Vec<PinAnswer> = record
                .history
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(&e.action, Action::Pin(p) if p.node == n.name))
                .map(|(i, e)| pin_answer(record, i, e, &n.name))
                .collect();
            let outcomes: Vec<&Outcome> =
                events.iter().filter_map(|e| e.outcome.as_ref()).collect();
            let offline = !outcomes.is_empty()
                && outcomes
                    .iter()
                    .all(|o| matches!(o, Outcome::Unreachable(_)));
            let retrievable = !events.iter().any(|e| {
                matches!(e.action, Action::CheckRetrievable(_))
                    && matches!(e.outcome, Some(Outcome::Unretrievable(_)))
            });
            NodeScript {
                name: n.name.clone(),
                role: n.role,
                pin: pins,
                pin_ms: median(ok_pin_ms(&n.name)).unwrap_or(typical),
                offline,
                retrievable,
                phases: Vec::new(),
                kind: n.kind.into(),
                replication: n.replication,
            }
        })
        .collect();
    (scripts, unasked)
}

/// What a recorded pin stands for in a script: a claimed pin that `pin ls` then denied on the
/// same node is a lie; a pin still running at the round's end (abandoned) never finished.
fn pin_answer(record: &RoundRecord, index: usize, event: &Event, node: &str) -> PinAnswer {
    match &event.outcome {
        Some(Outcome::Ok) => {
            let denied = record.history[index + 1..].iter().any(|e| {
                matches!(&e.action, Action::Verify(n) if n == node)
                    && e.outcome == Some(Outcome::NotPinned)
            });
            if denied {
                PinAnswer::Lie
            } else {
                PinAnswer::Ok
            }
        }
        Some(Outcome::Stalled) => PinAnswer::Stall,
        Some(Outcome::Unreachable(_)) => PinAnswer::Refused,
        Some(Outcome::Timeout) | None => PinAnswer::Timeout,
        Some(_) => PinAnswer::Http500,
    }
}

fn predict(
    record: &RoundRecord,
    candidate: &Policy,
    fallback: &Policy,
    limits: &RoundLimits,
) -> Prediction {
    let (scripts, unasked) = scripts_of(record);
    match crate::sim::run_round_on(candidate, fallback, &record.job, scripts, limits) {
        Ok(result) => {
            let mut assumed: Vec<String> = unasked
                .into_iter()
                .filter(|n| result.history.iter().any(|e| e.action.node() == Some(n)))
                .collect();
            assumed.sort();
            let mut a = result.confirmed.clone();
            let mut b = record.end.confirmed.clone();
            a.sort();
            b.sort();
            Prediction {
                status: result.status,
                same_end: result.status == record.end.status && a == b,
                confirmed: result.confirmed,
                elapsed_ms: result.elapsed_ms,
                delta_ms: result.elapsed_ms as i64 - record.end.elapsed_ms as i64,
                assumed,
                reason: result.reason,
            }
        }
        Err(e) => Prediction {
            status: RoundEnd::Failed,
            confirmed: Vec::new(),
            elapsed_ms: 0,
            delta_ms: 0,
            same_end: false,
            assumed: Vec::new(),
            reason: Some(format!("not simulated: {e}")),
        },
    }
}

/// The summary over replayed rounds.
pub fn summarise(rounds: &[RoundReplay]) -> Summary {
    let mut s = Summary {
        rounds: rounds.len(),
        ..Summary::default()
    };
    let mut deltas = Vec::new();
    for r in rounds {
        s.decisions += r.asked;
        if r.unreplayable.is_some() {
            s.unreplayable += 1;
            continue;
        }
        let Some(d) = &r.divergence else {
            s.agree += 1;
            continue;
        };
        s.diverge += 1;
        *s.by_class.entry(d.class.as_str().to_string()).or_default() += 1;
        let Some(p) = &r.prediction else { continue };
        if !p.assumed.is_empty() {
            s.predictions_with_assumptions += 1;
        }
        let live_ok = r.live_end != RoundEnd::Failed;
        let pred_ok = p.status != RoundEnd::Failed;
        if p.same_end {
            s.predicted_same_end += 1;
            deltas.push(p.delta_ms);
        } else if pred_ok {
            *s.predicted_elsewhere
                .entry(p.confirmed.join(","))
                .or_default() += 1;
        }
        if live_ok && !pred_ok {
            s.predicted_newly_failed += 1;
        }
        if !live_ok && pred_ok {
            s.predicted_newly_pinned += 1;
        }
    }
    if !deltas.is_empty() {
        s.mean_delta_ms = Some(deltas.iter().sum::<i64>() / deltas.len() as i64);
    }
    s
}
