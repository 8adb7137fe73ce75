//! The human-readable decision trace: what was started, what came back, at which (possibly
//! virtual) time. The same lines go to the log as they happen and into the job's result.

use crate::policy::contract::{Action, Outcome};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceLine {
    /// Milliseconds since the round started.
    pub t_ms: u64,
    /// The node concerned, if any.
    pub node: Option<String>,
    pub text: String,
}

impl std::fmt::Display for TraceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>10}  {:<12} {}",
            format_ms(self.t_ms),
            self.node.as_deref().unwrap_or("-"),
            self.text
        )
    }
}

/// `12.345s`, the way durations read in traces.
pub fn format_ms(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// What starting `action` looks like in the trace. `attempt` is the pin's number on its node,
/// `of` the policy's budget when it declares one.
pub fn describe_start(action: &Action, attempt: usize, of: Option<u32>) -> String {
    match action {
        Action::Pin(p) => {
            let budget = of.map(|n| format!("/{n}")).unwrap_or_default();
            format!(
                "pin attempt {attempt}{budget} (timeout {}, stall {})",
                format_ms(p.timeout_ms),
                format_ms(p.stall_timeout_ms)
            )
        }
        Action::Verify(_) => "verify (pin ls)".into(),
        Action::CheckRetrievable(_) => "check retrievable".into(),
        Action::Connect(c) => format!("connect to {} (provider hint)", c.provider),
        Action::Wait(w) if w.node.is_some() => format!("waiting {} (backoff)", format_ms(w.ms)),
        Action::Wait(w) => format!("asking again in {} (hedge)", format_ms(w.ms)),
        Action::LocalFallback => "local fallback".into(),
        Action::Succeed(nodes) => format!("succeed on {}", nodes.join(", ")),
        Action::Fail(reason) => format!("fail: {reason}"),
    }
}

pub fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".into(),
        Outcome::NotPinned => "NOT PINNED (claimed ok, pin ls disagrees)".into(),
        Outcome::Timeout => "timeout".into(),
        Outcome::Stalled => "stalled (no progress)".into(),
        Outcome::Unreachable(m) => format!("unreachable: {m}"),
        Outcome::HttpError(e) => format!("HTTP {}: {}", e.status, e.message),
        Outcome::Unretrievable(m) => format!("unretrievable: {m}"),
        Outcome::Error(m) => format!("error: {m}"),
    }
}
