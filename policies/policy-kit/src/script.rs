//! A scripted world for native unit tests of policy logic: no wasm, no IPFS, no clock.
//!
//! Each node answers pins from a script (`"ok"`, `"lie"`, `"timeout"`, `"refused"`; the last
//! entry repeats); `pin ls` and retrievability follow from what really got pinned. Actions run
//! one after another and finish at once; only waits move the (virtual) time. This is an
//! in-memory fake for unit tests; the host's simulator runs the real executor.

use crate::bindings::{Action, Event, HttpError, Job, Node, Outcome, Role};
use std::collections::{HashMap, HashSet};

/// How a run of the decision function ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Succeeded(Vec<String>),
    Failed(String),
    LocalFallback,
}

pub struct Run {
    pub end: End,
    pub history: Vec<Event>,
    pub now_ms: u64,
}

impl Run {
    /// Pin attempts per node, in history order.
    pub fn pins_on(&self, node: &str) -> usize {
        self.history
            .iter()
            .filter(|e| matches!(&e.action, Action::Pin(p) if p.node == node))
            .count()
    }
    /// The waits, in order.
    pub fn waits(&self) -> Vec<u64> {
        self.history
            .iter()
            .filter_map(|e| match &e.action {
                Action::Wait(w) => Some(w.ms),
                _ => None,
            })
            .collect()
    }
}

pub fn node(name: &str, role: Role) -> Node {
    Node {
        name: name.into(),
        role,
    }
}

pub fn job(lazy: bool, failed_rounds: u32) -> Job {
    Job {
        cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        job_id: "job-1".into(),
        size_bytes: 1 << 20,
        lazy,
        failed_rounds,
    }
}

/// Plays `decide` against scripted nodes until it ends the job (at most 10,000 decisions).
pub fn run(
    mut decide: impl FnMut(&Job, &[Node], &[Event], u64) -> Vec<Action>,
    job: &Job,
    nodes: &[Node],
    scripts: &[(&str, &[&str])],
) -> Run {
    let scripts: HashMap<&str, &[&str]> = scripts.iter().copied().collect();
    let mut pins: HashMap<String, usize> = HashMap::new();
    let mut pinned: HashSet<String> = HashSet::new();
    let mut history: Vec<Event> = Vec::new();
    let mut now_ms = 0u64;
    for _ in 0..10_000 {
        let actions = decide(job, nodes, &history, now_ms);
        assert!(
            !actions.is_empty(),
            "policy returned no action with nothing running"
        );
        for action in actions {
            let outcome = match &action {
                Action::Succeed(n) => return finish(End::Succeeded(n.clone()), history, now_ms),
                Action::Fail(r) => return finish(End::Failed(r.clone()), history, now_ms),
                Action::LocalFallback => return finish(End::LocalFallback, history, now_ms),
                Action::Wait(w) => {
                    now_ms += w.ms;
                    Outcome::Ok
                }
                Action::Connect(_) => Outcome::Ok,
                Action::Pin(p) => {
                    let n = pins.entry(p.node.clone()).or_default();
                    let script = scripts.get(p.node.as_str()).copied().unwrap_or(&["ok"]);
                    let answer = script.get(*n).or(script.last()).copied().unwrap_or("ok");
                    *n += 1;
                    match answer {
                        "ok" => {
                            pinned.insert(p.node.clone());
                            Outcome::Ok
                        }
                        "lie" => Outcome::Ok,
                        "timeout" => {
                            now_ms += p.timeout_ms;
                            Outcome::Timeout
                        }
                        "refused" => Outcome::Unreachable("connection refused".into()),
                        other => Outcome::HttpError(HttpError {
                            status: 500,
                            message: other.into(),
                        }),
                    }
                }
                Action::Verify(n) if pinned.contains(n) => Outcome::Ok,
                Action::Verify(_) => Outcome::NotPinned,
                Action::CheckRetrievable(n) if pinned.contains(n) => Outcome::Ok,
                Action::CheckRetrievable(_) => Outcome::Unretrievable("blocks missing".into()),
            };
            history.push(Event {
                action,
                outcome: Some(outcome),
                started_ms: now_ms,
                ended_ms: Some(now_ms),
            });
        }
    }
    panic!("policy did not end the job within 10,000 decisions");
}

fn finish(end: End, history: Vec<Event>, now_ms: u64) -> Run {
    Run {
        end,
        history,
        now_ms,
    }
}

/// Primary, `backups` backups and (optionally) a local node.
pub fn topology(backups: usize, local: bool) -> Vec<Node> {
    let mut nodes = vec![node("primary", Role::Primary)];
    nodes.extend((1..=backups).map(|i| node(&format!("backup-{i}"), Role::Backup)));
    if local {
        nodes.push(node("local", Role::Local));
    }
    nodes
}

/// Plays policy `P` (its plain `decide`, with settings `s`) against scripted nodes.
pub fn play<P: crate::Policy>(
    s: &crate::Settings,
    job: &Job,
    nodes: &[Node],
    scripts: &[(&str, &[&str])],
) -> Run {
    run(|j, n, h, t| P::decide(s, j, n, h, t), job, nodes, scripts)
}
