//! The policy in charge of a round: the instance that decides, what it has started and how long
//! it has spent deciding. A replay and a shadow ask their candidate through it too, so a
//! candidate is held to exactly the rules and budget a live policy is. A policy that misbehaves is contained by handing the round to the
//! built-in fallback, which starts afresh (its own instance, count and time budget) on the same
//! history.

use super::{RoundLimits, rules};
use crate::policy::contract::{Action, Event, Job, Node as NodeInfo};
use crate::policy::session::thread_cpu_time;
use crate::policy::{Incident, IncidentKind, Policy, Session};
use std::time::{Duration, Instant};

/// Which of the round's two policies is in charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rank {
    /// The policy the round was started with.
    Chosen,
    /// The built-in fallback, after the chosen policy was contained. Nothing replaces it.
    Fallback,
}

pub(crate) struct InCharge<'p> {
    pub policy: &'p Policy,
    pub rank: Rank,
    session: Session,
    /// The policy's `attempts` parameter, shown in the trace as "attempt n/N" (fixed while the
    /// policy is in charge, so read once).
    attempts: Option<u32>,
    /// Actions this policy has started in this round (the rules bound them per policy).
    started: usize,
    /// Decision CPU time this policy has spent in this round.
    spent: Duration,
}

/// One decision: the actions (or why they are refused) and the wall time the call took.
pub(crate) struct Decision {
    pub actions: Result<Vec<Action>, Incident>,
    pub took: Duration,
}

impl<'p> InCharge<'p> {
    /// A fresh, configured instance of `policy`.
    pub fn open(policy: &'p Policy, rank: Rank) -> Result<InCharge<'p>, Incident> {
        Ok(InCharge {
            policy,
            rank,
            session: policy.session()?,
            attempts: policy.param("attempts").and_then(|v| v.parse().ok()),
            started: 0,
            spent: Duration::ZERO,
        })
    }

    pub fn attempts(&self) -> Option<u32> {
        self.attempts
    }

    /// Asks the policy what to do next and holds the answer to the host's rules and to the
    /// round's decision-time budget: an `Err` is an incident that ends this policy's charge.
    pub fn decide(
        &mut self,
        job: &Job,
        nodes: &[NodeInfo],
        history: &[Event],
        now_ms: u64,
        limits: &RoundLimits,
    ) -> Decision {
        let (asked, cpu) = (Instant::now(), thread_cpu_time());
        let decided = self.session.decide(job, nodes, history, now_ms);
        let took = asked.elapsed();
        // The budget counts the policy's own CPU time (as each call's deadline does): a busy
        // machine must not spend a slow-but-sound policy's budget for it.
        self.spent += thread_cpu_time().saturating_sub(cpu);
        let actions = decided
            .and_then(|actions| self.within_budget(limits).map(|()| actions))
            .and_then(|actions| {
                rules::check(&actions, history, nodes, limits.bounds, self.started)
                    .map_err(|message| self.incident(IncidentKind::InvalidAction, message))
                    .map(|()| actions)
            });
        Decision { actions, took }
    }

    /// Counts an action this policy started.
    pub fn started_one(&mut self) {
        self.started += 1;
    }

    /// Counts what a decision of this policy started (all but a terminal action): for a
    /// replay or a shadow, whose decisions the live round performed.
    pub fn started(&mut self, actions: &[Action]) {
        self.started += actions
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    Action::Succeed(_) | Action::Fail(_) | Action::LocalFallback
                )
            })
            .count();
    }

    fn within_budget(&self, limits: &RoundLimits) -> Result<(), Incident> {
        if self.spent <= limits.policy_time {
            return Ok(());
        }
        Err(self.incident(
            IncidentKind::Budget,
            format!(
                "spent {} ms deciding in this round (budget {} ms)",
                self.spent.as_millis(),
                limits.policy_time.as_millis()
            ),
        ))
    }

    fn incident(&self, kind: IncidentKind, message: String) -> Incident {
        Incident {
            policy: self.policy.name.clone(),
            kind,
            message,
        }
    }
}
