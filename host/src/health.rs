//! The node-health ledger: what this process (and, through the data directory, the processes
//! before it) has seen of each node across jobs. The executor feeds it every action's outcome
//! the moment the action ends; each decision gets a snapshot ([`Ledger::snapshot`]) as part
//! of the node record, so a policy can open a circuit breaker or hedge sooner, and a decision
//! stays a pure function of its arguments. Observers (metrics, alerts) hear the same events.
//!
//! Time is tokio's clock, so the simulator's virtual time drives the same code. The file
//! (`node-health.json`) is advisory: a missing, stale or corrupt file means starting
//! uninformed, and concurrent processes may overwrite each other's last words.

use crate::policy::contract::NodeHealth;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The ledger's file in the data directory.
pub const FILE: &str = "node-health.json";
/// Outcomes kept per node for the success rate.
const WINDOW: usize = 20;
/// Successful pin durations kept per node for the latency median.
const LATENCIES: usize = 9;
/// The failure name of a pin that lost the race to another node ([`Running::abandon`]).
pub const ABANDONED: &str = "abandoned";

/// What an action was, for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pin,
    Verify,
    CheckRetrievable,
    Connect,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pin => "pin",
            Kind::Verify => "verify",
            Kind::CheckRetrievable => "check-retrievable",
            Kind::Connect => "connect",
        }
    }
}

/// A node as operators read it (`pinwarden nodes`, `GET /v1/nodes`): its health and the
/// breaker state the active policy's thresholds give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: String,
    /// closed, half-open or open.
    pub breaker: String,
    pub consecutive_failures: u32,
    pub since_last_ok_ms: Option<u64>,
    pub since_last_failure_ms: Option<u64>,
    pub recent_ok: u32,
    pub recent_total: u32,
    pub pin_latency_ms: Option<u64>,
    pub in_flight: u32,
    /// How long the node's running pins that report progress have shown none (contract 0.5.0's
    /// `since-last-progress-ms`, what tank-mode's `hedge_quiet_ms` reads); None when no such pin
    /// runs. Absent from a daemon older than the field.
    #[serde(default)]
    pub since_last_progress_ms: Option<u64>,
}

/// The breaker thresholds of a policy (its `breaker_failures` and `breaker_cooldown_ms`, else
/// the kit's defaults), so the host shows what the policy acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failures: u32,
    pub cooldown_ms: u64,
}

impl Default for Thresholds {
    /// The kit's defaults, for a policy without breaker parameters.
    fn default() -> Self {
        Thresholds {
            failures: host_rules::BREAKER_FAILURES,
            cooldown_ms: host_rules::BREAKER_COOLDOWN_MS,
        }
    }
}

impl Thresholds {
    /// The policy's values (configured, else its declared defaults); the kit's defaults for a
    /// parameter it does not declare or that does not parse.
    pub fn of(policy: &crate::policy::Policy) -> Thresholds {
        let param = |name: &str| policy.param(name).and_then(|v| v.parse::<u64>().ok());
        Thresholds {
            failures: param("breaker_failures")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(host_rules::BREAKER_FAILURES),
            cooldown_ms: param("breaker_cooldown_ms").unwrap_or(host_rules::BREAKER_COOLDOWN_MS),
        }
    }

    pub fn breaker(&self, h: &NodeHealth) -> host_rules::Breaker {
        host_rules::breaker(&view(h), self.failures, self.cooldown_ms)
    }
}

host_rules::view_of_health!(fn view(NodeHealth));

/// Every node of `nodes` (name, role) with its status now.
pub fn statuses(
    nodes: &[(String, crate::Role)],
    ledger: &Ledger,
    thresholds: Thresholds,
) -> Vec<NodeStatus> {
    nodes
        .iter()
        .map(|(name, role)| {
            let h = ledger.health(name);
            NodeStatus {
                name: name.clone(),
                role: crate::policy::contract::role_name::as_str(*role).to_string(),
                breaker: thresholds.breaker(&h).as_str().to_string(),
                consecutive_failures: h.consecutive_failures,
                since_last_ok_ms: h.since_last_ok_ms,
                since_last_failure_ms: h.since_last_failure_ms,
                recent_ok: h.recent_ok,
                recent_total: h.recent_total,
                pin_latency_ms: h.pin_latency_ms,
                in_flight: h.in_flight,
                since_last_progress_ms: h.since_last_progress_ms,
            }
        })
        .collect()
}

/// The health of a node nothing is known about.
pub fn unknown() -> NodeHealth {
    Entry::default().health(Instant::now())
}

/// One ended action, as observers hear it.
#[derive(Debug, Clone)]
pub struct Ended<'a> {
    pub node: &'a str,
    pub kind: Kind,
    pub ok: bool,
    /// Set for failures: the outcome's short name (`timeout`, `not-pinned`, `abandoned`…).
    pub failure: Option<&'a str>,
    pub took: Duration,
    /// The node's health as this action started, before it counted as in flight (what the
    /// decision that started it saw): tells a failed half-open probe from a plain failure.
    pub before: &'a NodeHealth,
    /// The node's health right after this outcome.
    pub health: &'a NodeHealth,
}

/// Hears every action as it ends (metrics, alert signals).
pub trait Observer: Send + Sync {
    fn ended(&self, event: &Ended<'_>);
}

/// A running pin's progress: when it began to report (`None`: it reports none) and when it
/// last moved. Its [`Running`] guard owns it; the ledger and the node client ([`Progress`])
/// hold it weakly, so a pin that has ended stops counting without any bookkeeping.
type ProgressCell = Mutex<Reported>;

#[derive(Debug, Default, Clone, Copy)]
struct Reported {
    since: Option<Instant>,
    moved: Option<Instant>,
}

/// Where a running pin reports that it moves, for the node's `since-last-progress-ms`. A node
/// client whose pins report progress calls [`Progress::watching`] as the pin starts, then
/// [`Progress::moved`] each time it moves; one that reports none never calls it, or calls
/// [`Progress::unwatched`] once it learns so (the Kubo client, for a js-ipfs node).
#[derive(Debug, Clone, Default)]
pub struct Progress(Weak<ProgressCell>);

impl Progress {
    /// A pin nobody watches (the host's own pins, tests).
    pub fn none() -> Progress {
        Progress::default()
    }

    /// The pin reports progress: from now on it counts.
    pub fn watching(&self) {
        self.update(|r| r.since = r.since.or(Some(Instant::now())));
    }

    /// The pin turned out not to report progress (js-ipfs answers `pin/add` only at the end):
    /// it no longer counts.
    pub fn unwatched(&self) {
        self.update(|r| *r = Reported::default());
    }

    /// The pin moved (Kubo: its block count rose).
    pub fn moved(&self) {
        self.update(|r| {
            let now = Instant::now();
            r.since = r.since.or(Some(now));
            r.moved = Some(now);
        });
    }

    fn update(&self, f: impl FnOnce(&mut Reported)) {
        if let Some(cell) = self.0.upgrade() {
            f(&mut cell.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Entry {
    consecutive_failures: u32,
    last_ok: Option<Instant>,
    last_failure: Option<Instant>,
    last_start: Option<Instant>,
    window: VecDeque<bool>,
    pin_ms: VecDeque<u64>,
    in_flight: u32,
    /// The running pins' progress (dead once a pin ends; pruned as pins start).
    progress: Vec<Weak<ProgressCell>>,
    /// A pin last succeeded (a sign of life, like a pin's move).
    last_pin_ok: Option<Instant>,
}

impl Entry {
    fn health(&self, now: Instant) -> NodeHealth {
        let ago = |t: Option<Instant>| t.map(|t| ms(now.saturating_duration_since(t)));
        let mut sorted: Vec<u64> = self.pin_ms.iter().copied().collect();
        sorted.sort_unstable();
        NodeHealth {
            consecutive_failures: self.consecutive_failures,
            since_last_ok_ms: ago(self.last_ok),
            since_last_failure_ms: ago(self.last_failure),
            since_last_start_ms: ago(self.last_start),
            recent_ok: count(self.window.iter().filter(|ok| **ok).count()),
            recent_total: count(self.window.len()),
            pin_latency_ms: sorted.get(sorted.len() / 2).copied(),
            in_flight: self.in_flight,
            since_last_progress_ms: ago(self.quiet_since()),
        }
    }

    /// Since when the node has shown no progress while pins that report it run
    /// ([`host_rules::quiet_since`]); `None` when none of its running pins reports progress.
    fn quiet_since(&self) -> Option<Instant> {
        let (mut oldest, mut moved) = (None::<Instant>, None::<Instant>);
        for cell in self.progress.iter().filter_map(Weak::upgrade) {
            let r = *cell.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(since) = r.since {
                oldest = Some(oldest.map_or(since, |o| o.min(since)));
            }
            moved = moved.max(r.moved);
        }
        Some(host_rules::quiet_since(oldest?, moved, self.last_pin_ok))
    }
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Entry>,
    dirty: bool,
}

pub struct Ledger {
    state: Mutex<State>,
    file: Option<PathBuf>,
    observers: Mutex<Vec<Arc<dyn Observer>>>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::in_memory()
    }
}

impl Ledger {
    /// A ledger that forgets at exit (the simulator, tests).
    pub fn in_memory() -> Ledger {
        Ledger {
            state: Mutex::new(State::default()),
            file: None,
            observers: Mutex::new(Vec::new()),
        }
    }

    /// The ledger of a data directory, read from its file when there is a usable one.
    pub fn open(data_dir: &Path) -> Ledger {
        let path = data_dir.join(FILE);
        let nodes = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) => saved.restore(),
                Err(e) => {
                    tracing::warn!(file = %path.display(), "ignoring unreadable node health: {e}");
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        Ledger {
            state: Mutex::new(State {
                nodes,
                dirty: false,
            }),
            file: Some(path),
            observers: Mutex::new(Vec::new()),
        }
    }

    pub fn observe(&self, observer: Arc<dyn Observer>) {
        if let Ok(mut all) = self.observers.lock() {
            all.push(observer);
        }
    }

    /// The health of `node` now (unknown nodes read as healthy and unknown).
    pub fn health(&self, node: &str) -> NodeHealth {
        let now = Instant::now();
        self.with(|s| s.nodes.get(node).cloned().unwrap_or_default().health(now))
    }

    /// Every known node's health now, by name.
    pub fn snapshot(&self) -> BTreeMap<String, NodeHealth> {
        let now = Instant::now();
        self.with(|s| {
            s.nodes
                .iter()
                .map(|(name, e)| (name.clone(), e.health(now)))
                .collect()
        })
    }

    /// An action starts on `node`; the guard ends it (as failed and abandoned, if dropped).
    pub fn start(self: &Arc<Self>, node: &str, kind: Kind) -> Running {
        let now = Instant::now();
        let progress = (kind == Kind::Pin).then(|| Arc::new(ProgressCell::default()));
        let before = self.with(|s| {
            let e = s.nodes.entry(node.to_string()).or_default();
            let before = e.health(now);
            e.in_flight += 1;
            e.last_start = Some(now);
            if let Some(cell) = &progress {
                e.progress.retain(|w| w.strong_count() > 0);
                e.progress.push(Arc::downgrade(cell));
            }
            s.dirty = true;
            before
        });
        Running {
            ledger: Arc::clone(self),
            node: node.to_string(),
            kind,
            started: now,
            before,
            done: false,
            progress,
        }
    }

    fn end(&self, run: &Running, failure: Option<&str>) {
        let (node, kind, took) = (run.node.as_str(), run.kind, run.started.elapsed());
        let now = Instant::now();
        let health = self.with(|s| {
            let e = s.nodes.entry(node.to_string()).or_default();
            e.in_flight = e.in_flight.saturating_sub(1);
            let ok = failure.is_none();
            if ok {
                e.consecutive_failures = 0;
                e.last_ok = Some(now);
                if kind == Kind::Pin {
                    push_bounded(&mut e.pin_ms, ms(took), LATENCIES);
                    e.last_pin_ok = Some(now);
                }
            } else if kind != Kind::Connect {
                // A failed provider hint may be the provider's fault (a dead primary), not the
                // dialer's: it stays in the window but does not push the node to its breaker.
                e.consecutive_failures = e.consecutive_failures.saturating_add(1);
                e.last_failure = Some(now);
            }
            push_bounded(&mut e.window, ok, WINDOW);
            s.dirty = true;
            e.health(now)
        });
        let event = Ended {
            node,
            kind,
            ok: failure.is_none(),
            failure,
            took,
            before: &run.before,
            health: &health,
        };
        let observers = self.observers.lock().map(|o| o.clone()).unwrap_or_default();
        for observer in observers {
            observer.ended(&event);
        }
    }

    /// Writes the ledger to its file if it changed (temporary file and rename: a reader never
    /// sees half of it). Advisory: failures are logged, never fatal.
    pub fn flush(&self) {
        let Some(path) = &self.file else {
            return;
        };
        let saved = self.with(|s| {
            let was = std::mem::replace(&mut s.dirty, false);
            was.then(|| Saved::of(&s.nodes))
        });
        let Some(saved) = saved else {
            return;
        };
        let result = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::atomic_file::write(path, &bytes));
        if let Err(e) = result {
            tracing::debug!(file = %path.display(), "cannot save node health: {e}");
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave the counters half-updated in a way that
        // matters more than losing them: keep going with whatever is there.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// An action in flight on a node. [`Running::ended`] records its outcome; dropped unended (the
/// round ended without it: another node won, or the round was cancelled) it only leaves the
/// in-flight count, unless [`Running::abandon`] marks it as a failure.
pub struct Running {
    ledger: Arc<Ledger>,
    node: String,
    kind: Kind,
    started: Instant,
    before: NodeHealth,
    done: bool,
    /// A pin's progress, which ends with it.
    progress: Option<Arc<ProgressCell>>,
}

impl Running {
    /// Where the action reports its progress (a pin's; any other action's goes nowhere).
    pub fn progress(&self) -> Progress {
        self.progress
            .as_ref()
            .map_or_else(Progress::none, |cell| Progress(Arc::downgrade(cell)))
    }

    /// Records the outcome: `failure` is `None` for ok, else the outcome's short name.
    pub fn ended(mut self, failure: Option<&str>) {
        self.done = true;
        self.progress = None;
        self.ledger.end(&self, failure);
    }

    /// The action lost: another node confirmed first while this one still ran.
    pub fn abandon(self) {
        self.ended(Some(ABANDONED));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            self.ledger.with(|s| {
                if let Some(e) = s.nodes.get_mut(&self.node) {
                    e.in_flight = e.in_flight.saturating_sub(1);
                }
            });
        }
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, cap: usize) {
    if queue.len() == cap {
        queue.pop_front();
    }
    queue.push_back(value);
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The file's form: wall-clock times (Unix ms), since `Instant`s mean nothing in another
/// process. Bounded: the windows are capped, and only nodes ever seen are kept.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    nodes: BTreeMap<String, SavedEntry>,
}

#[derive(Serialize, Deserialize)]
struct SavedEntry {
    consecutive_failures: u32,
    last_ok_unix_ms: Option<u64>,
    last_failure_unix_ms: Option<u64>,
    last_start_unix_ms: Option<u64>,
    window: Vec<bool>,
    pin_ms: Vec<u64>,
}

impl Saved {
    fn of(nodes: &BTreeMap<String, Entry>) -> Saved {
        let (now, wall) = (Instant::now(), unix_ms(SystemTime::now()));
        let wall_of = |t: Option<Instant>| t.map(|t| wall.saturating_sub(ms(now - t)));
        Saved {
            version: 1,
            nodes: nodes
                .iter()
                .map(|(name, e)| {
                    let saved = SavedEntry {
                        consecutive_failures: e.consecutive_failures,
                        last_ok_unix_ms: wall_of(e.last_ok),
                        last_failure_unix_ms: wall_of(e.last_failure),
                        last_start_unix_ms: wall_of(e.last_start),
                        window: e.window.iter().copied().collect(),
                        pin_ms: e.pin_ms.iter().copied().collect(),
                    };
                    (name.clone(), saved)
                })
                .collect(),
        }
    }

    fn restore(self) -> BTreeMap<String, Entry> {
        let (now, wall) = (Instant::now(), unix_ms(SystemTime::now()));
        // A time in the future (the clock went back) reads as "just now".
        let instant = |t: Option<u64>| {
            t.map(|t| {
                now.checked_sub(Duration::from_millis(wall.saturating_sub(t)))
                    .unwrap_or(now)
            })
        };
        self.nodes
            .into_iter()
            .map(|(name, s)| {
                let mut window: VecDeque<bool> = s.window.into_iter().collect();
                let mut pin_ms: VecDeque<u64> = s.pin_ms.into_iter().collect();
                while window.len() > WINDOW {
                    window.pop_front();
                }
                while pin_ms.len() > LATENCIES {
                    pin_ms.pop_front();
                }
                let entry = Entry {
                    consecutive_failures: s.consecutive_failures,
                    last_ok: instant(s.last_ok_unix_ms),
                    last_failure: instant(s.last_failure_unix_ms),
                    last_start: instant(s.last_start_unix_ms),
                    window,
                    pin_ms,
                    in_flight: 0,
                    progress: Vec::new(),
                    last_pin_ok: None,
                };
                (name, entry)
            })
            .collect()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_count_until_a_success_and_time_moves_on() {
        let ledger = Arc::new(Ledger::in_memory());
        for _ in 0..3 {
            ledger.start("primary", Kind::Pin).ended(Some("timeout"));
        }
        let h = ledger.health("primary");
        assert_eq!(
            (h.consecutive_failures, h.recent_ok, h.recent_total),
            (3, 0, 3)
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        let h = ledger.health("primary");
        assert_eq!(h.since_last_failure_ms, Some(61_000));
        let running = ledger.start("primary", Kind::Pin);
        assert_eq!(ledger.health("primary").in_flight, 1);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        running.ended(None);
        let h = ledger.health("primary");
        assert_eq!(h.consecutive_failures, 0);
        assert_eq!(h.in_flight, 0);
        assert_eq!(h.pin_latency_ms, Some(1_500));
        assert_eq!((h.recent_ok, h.recent_total), (1, 4));
    }

    #[tokio::test]
    async fn a_failed_provider_hint_is_not_the_dialers_failure() {
        let ledger = Arc::new(Ledger::in_memory());
        ledger
            .start("backup-1", Kind::Connect)
            .ended(Some("unreachable"));
        let h = ledger.health("backup-1");
        assert_eq!((h.consecutive_failures, h.recent_total), (0, 1));
    }

    #[tokio::test]
    async fn dropped_actions_leave_the_count_abandoned_ones_fail() {
        let ledger = Arc::new(Ledger::in_memory());
        drop(ledger.start("primary", Kind::Pin));
        let h = ledger.health("primary");
        assert_eq!((h.in_flight, h.consecutive_failures), (0, 0));
        ledger.start("primary", Kind::Pin).abandon();
        assert_eq!(ledger.health("primary").consecutive_failures, 1);
    }

    #[tokio::test]
    async fn the_file_carries_health_to_the_next_process() {
        let root = tempfile::tempdir().expect("tempdir");
        // A data directory that does not exist yet is created by the first flush.
        let dir = root.path().join("data");
        let dir = dir.as_path();
        let ledger = Arc::new(Ledger::open(dir));
        ledger.start("primary", Kind::Pin).ended(Some("stalled"));
        ledger.start("backup-1", Kind::Pin).ended(None);
        ledger.flush();
        let next = Ledger::open(dir);
        let h = next.health("primary");
        assert_eq!(h.consecutive_failures, 1);
        assert!(h.since_last_failure_ms.is_some_and(|ms| ms < 5_000));
        assert_eq!(next.health("backup-1").recent_ok, 1);
        // A corrupt file means starting uninformed, not failing.
        std::fs::write(dir.join(FILE), b"{not json").expect("write");
        assert_eq!(Ledger::open(dir).health("primary").recent_total, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn observers_hear_the_health_before_and_after_each_action() {
        /// (failures before, in flight before, failures after, failure) per event.
        type Event = (u32, u32, u32, Option<String>);
        struct Heard(Mutex<Vec<Event>>);
        impl Observer for Heard {
            fn ended(&self, e: &Ended<'_>) {
                if let Ok(mut all) = self.0.lock() {
                    all.push((
                        e.before.consecutive_failures,
                        e.before.in_flight,
                        e.health.consecutive_failures,
                        e.failure.map(str::to_string),
                    ));
                }
            }
        }
        let ledger = Arc::new(Ledger::in_memory());
        let heard = Arc::new(Heard(Mutex::new(Vec::new())));
        ledger.observe(heard.clone());
        ledger.start("primary", Kind::Pin).ended(Some("timeout"));
        let (a, b) = (
            ledger.start("primary", Kind::Pin),
            ledger.start("primary", Kind::Verify),
        );
        a.ended(Some("unreachable"));
        b.abandon();
        let heard = heard.0.lock().map(|h| h.clone()).unwrap_or_default();
        let failed = |s: &str| Some(s.to_string());
        assert_eq!(
            heard,
            [
                (0, 0, 1, failed("timeout")),
                (1, 0, 2, failed("unreachable")),
                // Started while the other ran, before either failed.
                (1, 1, 3, failed(ABANDONED)),
            ]
        );
    }

    /// Operators see what the policy sees: `pinwarden nodes` and `GET /v1/nodes` show a node's
    /// quiet time while its pins run, and nothing once none does.
    #[tokio::test(start_paused = true)]
    async fn node_statuses_show_the_quiet_time_of_running_pins() {
        let ledger = Arc::new(Ledger::in_memory());
        let nodes = [("primary".to_string(), crate::Role::Primary)];
        let quiet = || statuses(&nodes, &ledger, Thresholds::default())[0].since_last_progress_ms;
        let pin = ledger.start("primary", Kind::Pin);
        pin.progress().watching();
        tokio::time::advance(Duration::from_millis(1_250)).await;
        assert_eq!(quiet(), Some(1_250));
        pin.ended(Some("stalled"));
        assert_eq!(quiet(), None);
    }

    /// `since-last-progress-ms`: the node's last sign of life (a running pin's move, a pin's
    /// success), counted at most from the oldest running pin that reports progress; a pin that
    /// starts does not reset it; gone when no such pin runs.
    #[tokio::test(start_paused = true)]
    async fn progress_is_the_nodes_last_sign_of_life_while_pins_report_it() {
        let ledger = Arc::new(Ledger::in_memory());
        let quiet = || ledger.health("primary").since_last_progress_ms;
        let step = |ms| tokio::time::advance(Duration::from_millis(ms));
        // A pin whose node reports no progress (a cluster, a PSA provider) shows none.
        let silent = ledger.start("primary", Kind::Pin);
        assert_eq!(quiet(), None);
        let a = ledger.start("primary", Kind::Pin);
        a.progress().watching();
        step(700).await;
        assert_eq!(quiet(), Some(700));
        // Another pin starting on a quiet node does not make it less quiet.
        let b = ledger.start("primary", Kind::Pin);
        b.progress().watching();
        step(300).await;
        assert_eq!(quiet(), Some(1_000));
        // A move of either pin is a sign of life.
        b.progress().moved();
        step(200).await;
        assert_eq!(quiet(), Some(200));
        // A pin that ended no longer counts, even if its client still holds the handle; its
        // success is a sign of life.
        let late = b.progress();
        b.ended(None);
        assert_eq!(quiet(), Some(0));
        step(400).await;
        late.moved();
        assert_eq!(quiet(), Some(400));
        // A failure is not; once the oldest pin is gone, the next counts from its own start.
        let c = ledger.start("primary", Kind::Pin);
        c.progress().watching();
        step(100).await;
        a.ended(Some("stalled"));
        assert_eq!(quiet(), Some(100), "c started after the last success");
        drop(c);
        assert_eq!(quiet(), None);
        // Other actions never report progress.
        let verify = ledger.start("primary", Kind::Verify);
        verify.progress().watching();
        assert_eq!(quiet(), None);
        drop(silent);
    }

    /// A pin watched from its first call that turns out to report none (js-ipfs) stops
    /// counting.
    #[tokio::test(start_paused = true)]
    async fn an_unwatched_pin_stops_counting() {
        let ledger = Arc::new(Ledger::in_memory());
        let quiet = || ledger.health("primary").since_last_progress_ms;
        let js = ledger.start("primary", Kind::Pin);
        js.progress().watching();
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(quiet(), Some(50));
        js.progress().unwatched();
        assert_eq!(quiet(), None);
    }

    #[test]
    fn windows_are_bounded() {
        let mut q = VecDeque::new();
        for i in 0..100 {
            push_bounded(&mut q, i, WINDOW);
        }
        assert_eq!(q.len(), WINDOW);
        assert_eq!(q.front(), Some(&80));
    }
}
