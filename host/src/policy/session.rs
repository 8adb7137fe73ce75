//! A policy instance for one job: a fresh `Store`, a deadline and a memory cap on every call.
//!
//! Anything that goes wrong inside the guest comes back as an [`Incident`]; the caller decides
//! what to do (the executor continues the job under the built-in tank-mode policy). A store
//! whose instance trapped is never entered again.

use super::contract::{Action, Event, HistoryChange, Job, Node, PolicyBindings, PolicyInfo};
use super::engine::{EPOCH_TICK, SandboxLimits};
use std::fmt;
use std::time::{Duration, Instant};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};

/// What went wrong in a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentKind {
    /// The guest trapped (panic, unreachable, bad memory access).
    Trap,
    /// The call ran past its deadline (an endless loop, say).
    Timeout,
    /// The guest tried to grow its memory past the cap.
    Memory,
    /// The guest returned an action the host refuses to perform.
    InvalidAction,
    /// `configure` refused the parameters.
    Rejected,
    /// The round's total decision time ran out (each call was under its deadline).
    Budget,
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IncidentKind::Trap => "trap",
            IncidentKind::Timeout => "timeout",
            IncidentKind::Memory => "memory",
            IncidentKind::InvalidAction => "invalid-action",
            IncidentKind::Rejected => "rejected",
            IncidentKind::Budget => "budget",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("policy '{policy}' {kind}: {message}")]
pub struct Incident {
    pub policy: String,
    pub kind: IncidentKind,
    pub message: String,
}

/// Per-store state: only the limiter, since policies import nothing.
pub struct HostState {
    limiter: CallLimiter,
}

struct CallLimiter {
    max_memory: usize,
    /// Set when the guest hit the memory cap, so the trap that follows is classified right.
    hit: Option<usize>,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = Some(desired);
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded (asked for {desired})",
                self.max_memory
            ));
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000 && maximum.is_none_or(|m| desired <= m))
    }
}

pub struct Session {
    policy: String,
    store: Store<HostState>,
    bindings: PolicyBindings,
    limits: SandboxLimits,
    /// After a trap the instance is in an undefined state and must not be entered again.
    poisoned: bool,
    /// The history as the instance holds it: `decide` sends only what differs.
    sent: Vec<Event>,
}

impl Session {
    /// A new instance of `pre`, not yet configured.
    pub(super) fn instantiate(
        policy: &str,
        engine: &wasmtime::Engine,
        pre: &super::contract::PolicyBindingsPre<HostState>,
        limits: SandboxLimits,
    ) -> Result<Session, Incident> {
        let mut store = Store::new(
            engine,
            HostState {
                limiter: CallLimiter {
                    max_memory: limits.memory_bytes,
                    hit: None,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        let mut session_store = store;
        arm_deadline(&mut session_store, limits);
        let bindings = pre
            .instantiate(&mut session_store)
            .map_err(|e| classify(policy, &session_store, e))?;
        Ok(Session {
            policy: policy.to_string(),
            store: session_store,
            bindings,
            limits,
            poisoned: false,
            sent: Vec::new(),
        })
    }

    pub fn policy_name(&self) -> &str {
        &self.policy
    }

    pub fn describe(&mut self) -> Result<PolicyInfo, Incident> {
        let mut info = self.call("describe", |b, s| b.call_describe(s))?;
        bound(&mut info.name);
        bound(&mut info.description);
        for p in &mut info.params {
            bound(&mut p.name);
            bound(&mut p.default_value);
            bound(&mut p.description);
        }
        Ok(info)
    }

    pub fn configure(&mut self, params: &[(String, String)]) -> Result<(), Incident> {
        let policy = self.policy.clone();
        self.call("configure", |b, s| b.call_configure(s, params))?
            .map_err(|mut message| {
                bound(&mut message);
                Incident {
                    policy,
                    kind: IncidentKind::Rejected,
                    message,
                }
            })
    }

    /// The policy's next actions for `history` (the round's, whole). The guest receives only
    /// the events that changed since this instance's previous call (the contract's
    /// `history-change`s): copying the whole history into the sandbox on every call made a
    /// decision's cost grow with it (about 0.14 µs per event).
    pub fn decide(
        &mut self,
        job: &Job,
        nodes: &[Node],
        history: &[Event],
        now_ms: u64,
    ) -> Result<Vec<Action>, Incident> {
        if self.sent.len() > history.len() {
            // A session serves one round, whose history only grows: the instance would keep
            // events the host no longer has. Never entered again.
            self.poisoned = true;
            return Err(Incident {
                policy: self.policy.clone(),
                kind: IncidentKind::InvalidAction,
                message: "host error: a round's history shrank under its policy instance".into(),
            });
        }
        let changes = changes_since(&self.sent, history);
        let mut actions = self.call("decide", |b, s| {
            b.call_decide(s, job, nodes, &changes, now_ms)
        })?;
        for change in changes {
            match self.sent.get_mut(change.index as usize) {
                Some(slot) => *slot = change.event,
                None => self.sent.push(change.event),
            }
        }
        for action in &mut actions {
            bound_action(action);
        }
        Ok(actions)
    }

    /// Calls the guest's `what` (named in an incident's message: a trap in `configure` reads
    /// otherwise like one in `decide`).
    fn call<R>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&PolicyBindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, Incident> {
        if self.poisoned {
            return Err(Incident {
                policy: self.policy.clone(),
                kind: IncidentKind::Trap,
                message: "instance already trapped".into(),
            });
        }
        arm_deadline(&mut self.store, self.limits);
        f(&self.bindings, &mut self.store).map_err(|e| {
            self.poisoned = true;
            let mut incident = classify(&self.policy, &self.store, e);
            incident.message = format!("in {what}: {}", incident.message);
            incident
        })
    }
}

/// What turns `sent` into `history`: each event that is new or differs, by index. (A session
/// serves one round, whose history only grows and whose events only gain an outcome.)
fn changes_since(sent: &[Event], history: &[Event]) -> Vec<HistoryChange> {
    history
        .iter()
        .enumerate()
        .filter(|(i, event)| sent.get(*i) != Some(event))
        .map(|(i, event)| HistoryChange {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            event: event.clone(),
        })
        .collect()
}

/// The most text a policy can hand the host in one string (a reason, a node name, a
/// description): what it returns goes to the queue, logs and status replies, so a policy must
/// not be able to fill them. Longer strings are cut, with a marker saying so.
pub const MAX_POLICY_TEXT: usize = 1024;

fn bound(text: &mut String) {
    if text.len() <= MAX_POLICY_TEXT {
        return;
    }
    let cut = text.len();
    let mut end = MAX_POLICY_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… [{} bytes cut by the host]", cut - end));
}

fn bound_action(action: &mut Action) {
    match action {
        Action::Pin(p) => bound(&mut p.node),
        Action::Verify(n) | Action::CheckRetrievable(n) => bound(n),
        Action::Connect(c) => {
            bound(&mut c.node);
            bound(&mut c.provider);
        }
        Action::Wait(w) => {
            if let Some(n) = &mut w.node {
                bound(n);
            }
        }
        Action::Succeed(nodes) => nodes.iter_mut().for_each(bound),
        Action::Fail(reason) => bound(reason),
        Action::LocalFallback => {}
    }
}

/// A call's deadline counts the CPU time the call itself used, not wall time: on a busy
/// machine a policy that is merely slow is descheduled, not at fault. The epoch fires first at
/// the deadline in wall time; from there, every tick checks the calling thread's CPU clock and
/// interrupts once the call has used `call_deadline` of it. A policy imports nothing, so it
/// cannot wait: its wall time is its CPU time plus the machine's load. `WALL_CAP` times the
/// deadline in wall time ends a call whatever the clock says.
fn arm_deadline(store: &mut Store<HostState>, limits: SandboxLimits) {
    let tick = EPOCH_TICK.as_nanos().max(1);
    let ticks = move |d: Duration| {
        u64::try_from(d.as_nanos() / tick)
            .unwrap_or(u64::MAX)
            .max(1)
    };
    let budget = limits.call_deadline;
    let cap = budget.saturating_mul(WALL_CAP);
    let (cpu_start, wall_start) = (thread_cpu_time(), Instant::now());
    store.set_epoch_deadline(ticks(budget));
    store.epoch_deadline_callback(move |_| {
        let used = thread_cpu_time().saturating_sub(cpu_start);
        if used >= budget || wall_start.elapsed() >= cap {
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Continue(ticks(budget - used)))
    });
}

/// A call ends after this many times its deadline in wall time, however little CPU it used.
const WALL_CAP: u32 = 10;

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn classify(policy: &str, store: &Store<HostState>, error: wasmtime::Error) -> Incident {
    let (kind, message) = if let Some(asked) = store.data().limiter.hit {
        (
            IncidentKind::Memory,
            format!("tried to grow memory to {asked} bytes, past the cap"),
        )
    } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        (
            IncidentKind::Timeout,
            "call ran past its deadline (CPU time, or 10 times it in wall time)".to_string(),
        )
    } else {
        // The root cause reads best ("wasm `unreachable` instruction executed"); the guest
        // backtrace that wasmtime attaches goes to the debug log, not into one-line messages.
        tracing::debug!(policy, "policy trap: {error:?}");
        let root = error.root_cause().to_string();
        let fault = error
            .chain()
            .find_map(|cause| fault_address(&cause.to_string()));
        let message = match (error.downcast_ref::<Trap>(), fault) {
            (Some(Trap::StackOverflow), _) => {
                "stack overflow: the call stack is exhausted (recursion too deep)".to_string()
            }
            // A Rust guest keeps its stack at the bottom of linear memory, growing down: an
            // overflow wraps the stack pointer below address 0, and the first access lands just
            // under (or past) 4 GiB. wasmtime calls that an out-of-bounds access.
            (Some(Trap::MemoryOutOfBounds), Some(address)) if address >= 0xFFFF_0000 => format!(
                "stack overflow: the guest's stack ran below address 0 (recursion too deep or \
                 unbounded; wasmtime reports a memory fault at wasm address {address:#x})"
            ),
            _ => root.lines().next().unwrap_or("trap").to_string(),
        };
        (IncidentKind::Trap, message)
    };
    Incident {
        policy: policy.to_string(),
        kind,
        message,
    }
}

/// The address in wasmtime's "memory fault at wasm address 0x… in linear memory of size 0x…",
/// read from the error chain's text: the type behind it (`vm::WasmFault`) is not public.
fn fault_address(text: &str) -> Option<u64> {
    let hex = text
        .split("memory fault at wasm address 0x")
        .nth(1)?
        .split(|c: char| !c.is_ascii_hexdigit())
        .next()?;
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_and_ended_events_are_sent() {
        use super::super::contract::{Outcome, WaitRequest};
        let event = |ms, outcome| Event {
            action: Action::Wait(WaitRequest { ms, node: None }),
            outcome,
            started_ms: 0,
            ended_ms: None,
        };
        let sent = vec![event(1, Some(Outcome::Ok)), event(2, None)];
        let history = vec![
            event(1, Some(Outcome::Ok)),
            event(2, Some(Outcome::Ok)),
            event(3, None),
        ];
        let changes = changes_since(&sent, &history);
        let indices: Vec<u32> = changes.iter().map(|c| c.index).collect();
        assert_eq!(indices, [1, 2]);
        assert_eq!(changes[0].event, history[1]);
        assert!(changes_since(&history, &history).is_empty());
        assert_eq!(changes_since(&[], &history).len(), 3);
    }

    #[test]
    fn fault_addresses_are_read_from_wasmtimes_message() {
        let text = "memory fault at wasm address 0x100000138 in linear memory of size 0x120000";
        assert_eq!(fault_address(text), Some(0x1_0000_0138));
        assert_eq!(
            fault_address("wasm trap: out of bounds memory access"),
            None
        );
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_marker() {
        let mut short = "fine".to_string();
        bound(&mut short);
        assert_eq!(short, "fine");
        let mut long = "é".repeat(MAX_POLICY_TEXT);
        bound(&mut long);
        assert!(long.len() < MAX_POLICY_TEXT + 64, "{}", long.len());
        assert!(long.ends_with("bytes cut by the host]"), "{long}");
    }
}
