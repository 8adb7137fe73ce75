//! Shadow mode: a candidate policy asked at every live decision, on a thread of its own, its
//! answer compared with the live one and never executed.
//!
//! The round hands each decision over (what changed in the history, the nodes when they
//! changed, the live answer) through a bounded channel and goes on: the candidate's time is
//! never the round's. The shadow thread keeps one instance of the candidate per round, under
//! the same sandbox limits and a decision-time budget of its own; a candidate that traps,
//! loops, grows without bound or answers what the host's rules refuse is contained there (its
//! round's instance is dropped, the incident counted) and cannot reach the live round. Should
//! the candidate fall so far behind that the channel fills, the round's later decisions are
//! not compared (counted as skipped), rather than waited for.
//!
//! Points after the live policy was contained are the fallback's and are not compared
//! (as in `policy replay`).
//!
//! When the round ends, its record is handed to the shadow behind its last decision
//! ([`ShadowRound::finish`]): once the shadow has caught up, it adds its answers
//! ([`super::ShadowVerdict`]) and writes the record, so a round's record says what the
//! shadow would have done at each decision. A shadow too far behind to take the record
//! hands it back, and it is written without.

use super::replay::{Answer, Class, classify};
use super::store::Recorder;
use super::{PolicyRef, RoundRecord, ShadowAnswer, ShadowVerdict};
use crate::executor::RoundLimits;
use crate::executor::in_charge::{InCharge, Rank};
use crate::policy::Policy;
use crate::policy::contract::{Event, HistoryChange, Job, Node as NodeInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Decisions waiting for the shadow thread, at most.
const BACKLOG: usize = 8192;
/// How often an idle shadow looks for decisions to compare.
const POLL: std::time::Duration = std::time::Duration::from_millis(5);
/// How long the shadow waits, at most, for live decisions under way to end before it asks
/// its candidate. Two policies deciding at once on two cores slow each other down (by 13 to
/// 20 % here, measured in BENCHMARKS.md §13); a live decision takes tens of µs.
const YIELD_TO_LIVE: std::time::Duration = std::time::Duration::from_millis(1);
/// Divergences kept for the report.
const RECENT: usize = 20;

/// One live decision, as the shadow needs it.
enum Msg {
    Decide(Decision),
    /// The round ended; its record, to complete and write (absent: nothing to write).
    End {
        round: u64,
        record: Option<Box<RoundRecord>>,
    },
}

/// One live decision, as the shadow needs it: what changed since the round's last one.
struct Decision {
    round: u64,
    /// The decision's index in the round's record.
    k: u32,
    /// The job, with the round's first decision.
    job: Option<Box<Job>>,
    changes: Vec<HistoryChange>,
    /// Absent: as at the round's previous decision.
    nodes: Option<Vec<NodeInfo>>,
    now_ms: u64,
    live: Answer,
}

/// A divergence, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    pub job_id: String,
    pub cid: String,
    pub t_ms: u64,
    pub class: Class,
    pub live: Answer,
    pub shadow: Answer,
}

/// What the shadow has answered so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub policy: String,
    pub hash: String,
    pub params: Vec<(String, String)>,
    /// Why the candidate failed the built-in scenarios (`promote` refuses it); absent: passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_failed: Option<String>,
    /// Since the shadow started (s).
    pub running_s: u64,
    pub rounds: u64,
    /// Rounds with at least one divergence.
    pub rounds_diverged: u64,
    pub decisions: u64,
    pub agree: u64,
    pub by_class: BTreeMap<String, u64>,
    /// Incidents the shadow had (contained; its round's instance dropped).
    pub incidents: u64,
    /// Decisions not compared: the shadow was behind, or its instance was gone.
    pub skipped: u64,
    /// CPU time the shadow spent deciding, in all (ms).
    pub decide_ms: u64,
    pub recent: Vec<Seen>,
}

#[derive(Default)]
struct Tally {
    rounds: AtomicU64,
    rounds_diverged: AtomicU64,
    decisions: AtomicU64,
    agree: AtomicU64,
    incidents: AtomicU64,
    skipped: AtomicU64,
    decide_nanos: AtomicU64,
    /// Live decisions under way now (the shadow yields to them).
    live_deciding: std::sync::atomic::AtomicU32,
    by_class: Mutex<BTreeMap<Class, u64>>,
    recent: Mutex<VecDeque<Seen>>,
}

/// A running shadow: the candidate and its thread. Dropping it stops the thread.
pub struct Shadow {
    pub policy: Arc<Policy>,
    /// How it was asked for (a built-in name or a file), for `promote`.
    pub spec: String,
    /// Why it failed the built-in scenarios, if it did (`promote` would refuse it).
    pub check: Option<String>,
    sender: Mutex<Option<SyncSender<Msg>>>,
    tally: Arc<Tally>,
    /// Where the shadow writes the records of the rounds it saw.
    recorder: Option<Arc<Recorder>>,
    next_round: AtomicU64,
    started: Instant,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Shadow {
    /// Starts the shadow thread for `policy` (already validated, as a reload validates).
    /// `check`: why the candidate failed the built-in scenarios, if it did (shown in reports).
    /// `recorder`: where the records of finished rounds go, with the shadow's answers.
    pub fn start(
        policy: Arc<Policy>,
        spec: &str,
        limits: RoundLimits,
        check: Option<String>,
        recorder: Option<Arc<Recorder>>,
    ) -> std::io::Result<Arc<Shadow>> {
        let (sender, receiver) = sync_channel(BACKLOG);
        let tally = Arc::new(Tally::default());
        let worker = Worker {
            limits,
            tally: Arc::clone(&tally),
            recorder: recorder.clone(),
        };
        let candidate = Arc::clone(&policy);
        let thread = std::thread::Builder::new()
            .name("pinwarden-shadow".into())
            .spawn(move || worker.run(&candidate, receiver))?;
        Ok(Arc::new(Shadow {
            policy,
            check,
            spec: spec.to_string(),
            sender: Mutex::new(Some(sender)),
            tally,
            recorder,
            next_round: AtomicU64::new(1),
            started: Instant::now(),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// What the shadow has answered so far.
    pub fn report(&self) -> Report {
        let t = &self.tally;
        let by_class = t
            .by_class
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(c, n)| (c.as_str().to_string(), *n))
                    .collect()
            })
            .unwrap_or_default();
        let recent = t
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        Report {
            policy: self.policy.name.clone(),
            hash: self.policy.hash.clone(),
            params: self.policy.params.clone(),
            check_failed: self.check.clone(),
            running_s: self.started.elapsed().as_secs(),
            rounds: t.rounds.load(Ordering::Relaxed),
            rounds_diverged: t.rounds_diverged.load(Ordering::Relaxed),
            decisions: t.decisions.load(Ordering::Relaxed),
            agree: t.agree.load(Ordering::Relaxed),
            by_class,
            incidents: t.incidents.load(Ordering::Relaxed),
            skipped: t.skipped.load(Ordering::Relaxed),
            decide_ms: t.decide_nanos.load(Ordering::Relaxed) / 1_000_000,
            recent,
        }
    }

    /// A round's link to the shadow.
    pub fn round(self: &Arc<Self>) -> ShadowRound {
        ShadowRound {
            shadow: Arc::clone(self),
            id: self.next_round.fetch_add(1, Ordering::Relaxed),
            told_len: 0,
            told_job: false,
            ended: false,
            last_nodes: None,
            off: false,
        }
    }

    /// Hands `msg` to the shadow thread without waiting; `Err` gives it back when the thread
    /// is behind (a full backlog) or gone.
    fn send(&self, msg: Msg) -> Result<(), Msg> {
        let Ok(guard) = self.sender.lock() else {
            return Err(msg);
        };
        match guard.as_ref() {
            Some(sender) => sender.try_send(msg).map_err(|e| match e {
                TrySendError::Full(m) | TrySendError::Disconnected(m) => m,
            }),
            None => Err(msg),
        }
    }

    /// Stops the thread after what is waiting (a later round's decisions are not compared).
    pub fn stop(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
    }
}

/// One round's side of the shadow: what it has told the shadow so far.
pub struct ShadowRound {
    shadow: Arc<Shadow>,
    id: u64,
    told_len: usize,
    told_job: bool,
    /// `finish` told the shadow the round ended.
    ended: bool,
    last_nodes: Option<Vec<NodeInfo>>,
    /// The live policy was contained, or the shadow fell behind: no more comparisons.
    off: bool,
}

/// A live decision under way (see [`ShadowRound::live_decision`]); ends when dropped.
pub struct LiveDecision<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for LiveDecision<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl ShadowRound {
    /// Marks a live decision under way, for as long as the guard lives: the shadow does not
    /// start asking its candidate meanwhile (for up to 1 ms), so the two do not run at once.
    pub fn live_decision(&self) -> LiveDecision<'_> {
        let live = &self.shadow.tally.live_deciding;
        live.fetch_add(1, Ordering::Release);
        LiveDecision(live)
    }

    /// The live policy was contained: the fallback decides the rest, which is not compared.
    pub fn live_contained(&mut self) {
        self.off = true;
    }

    /// Hands over live decision `k` (its index in the round's record). `ended`: history
    /// indices whose outcome arrived since the previous decision (the round's record computes
    /// them anyway). Never waits.
    #[allow(clippy::too_many_arguments)] // one decision as the executor has it, in parts
    pub fn decided(
        &mut self,
        k: u32,
        job: &Job,
        nodes: &[NodeInfo],
        history: &[Event],
        ended: &[u32],
        now_ms: u64,
        live: Answer,
    ) {
        if self.off {
            return;
        }
        // New events, and earlier ones that ended: exactly what changed since last time.
        let mut changes: Vec<HistoryChange> = ended
            .iter()
            .filter(|&&i| (i as usize) < self.told_len)
            .filter_map(|&i| {
                Some(HistoryChange {
                    index: i,
                    event: history.get(i as usize)?.clone(),
                })
            })
            .collect();
        changes.extend(
            history
                .iter()
                .enumerate()
                .skip(self.told_len)
                .map(|(i, e)| HistoryChange {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    event: e.clone(),
                }),
        );
        let nodes = if self.last_nodes.as_deref() == Some(nodes) {
            None
        } else {
            self.last_nodes = Some(nodes.to_vec());
            Some(nodes.to_vec())
        };
        let msg = Msg::Decide(Decision {
            round: self.id,
            k,
            job: (!self.told_job).then(|| Box::new(job.clone())),
            changes,
            nodes,
            now_ms,
            live,
        });
        if self.shadow.send(msg).is_ok() {
            self.told_job = true;
            self.told_len = history.len();
        } else {
            // Behind (or stopped): this round is not compared any further.
            self.shadow.tally.skipped.fetch_add(1, Ordering::Relaxed);
            self.off = true;
        }
    }
}

impl ShadowRound {
    /// The round ended with `record`: the shadow adds its answers and writes it, once it has
    /// caught up. `Err` hands the record back, to be written without them: the shadow never
    /// saw the round, is too far behind, or has no recorder.
    pub fn finish(mut self, record: RoundRecord) -> Result<(), Box<RoundRecord>> {
        let record = Box::new(record);
        if !self.told_job || self.shadow.recorder.is_none() {
            return Err(record);
        }
        let msg = Msg::End {
            round: self.id,
            record: Some(record),
        };
        match self.shadow.send(msg) {
            Ok(()) => {
                self.ended = true;
                Ok(())
            }
            Err(Msg::End {
                record: Some(record),
                ..
            }) => Err(record),
            Err(_) => unreachable!("send gives back the message it was given"),
        }
    }
}

impl Drop for ShadowRound {
    fn drop(&mut self) {
        if self.told_job && !self.ended {
            // Best effort: a full channel leaves the state to be dropped with the thread.
            let _ = self.shadow.send(Msg::End {
                round: self.id,
                record: None,
            });
        }
    }
}

/// The shadow's own copy of a round, and the candidate in charge of it (`None`: contained, or
/// out of step with the round: not compared any further).
struct RoundState<'p> {
    job: Job,
    nodes: Vec<NodeInfo>,
    history: Vec<Event>,
    charge: Option<InCharge<'p>>,
    diverged: bool,
    /// This round's decisions compared and agreed on, and the divergences.
    compared: u32,
    agree: u32,
    answers: Vec<ShadowAnswer>,
}

struct Worker {
    limits: RoundLimits,
    tally: Arc<Tally>,
    recorder: Option<Arc<Recorder>>,
}

impl Worker {
    fn run(self, policy: &Policy, receiver: Receiver<Msg>) {
        let mut rounds: HashMap<u64, RoundState<'_>> = HashMap::new();
        loop {
            // Polled, not waited on: a send to a receiver that is not blocked wakes no thread,
            // and waking this one at every live decision (an interrupt to the other core)
            // slowed the live decisions by some 20 % (BENCHMARKS.md §13).
            let msg = match receiver.try_recv() {
                Ok(msg) => msg,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            };
            match msg {
                Msg::End { round, record } => {
                    let state = rounds.remove(&round);
                    if let (Some(mut record), Some(recorder)) = (record, &self.recorder) {
                        record.shadow = state.map(|s| ShadowVerdict {
                            policy: PolicyRef::of(policy),
                            compared: s.compared,
                            agree: s.agree,
                            diverged: s.answers,
                        });
                        recorder.record(*record);
                    }
                }
                Msg::Decide(d) => self.decide(policy, &mut rounds, d),
            }
        }
    }

    fn decide<'p>(
        &self,
        policy: &'p Policy,
        rounds: &mut HashMap<u64, RoundState<'p>>,
        d: Decision,
    ) {
        let t = &self.tally;
        if let Some(job) = d.job {
            t.rounds.fetch_add(1, Ordering::Relaxed);
            let charge = match InCharge::open(policy, Rank::Chosen) {
                Ok(c) => Some(c),
                Err(incident) => {
                    t.incidents.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(policy = %policy.name, "shadow policy contained: {incident}");
                    None
                }
            };
            rounds.insert(
                d.round,
                RoundState {
                    job: *job,
                    nodes: Vec::new(),
                    history: Vec::new(),
                    charge,
                    diverged: false,
                    compared: 0,
                    agree: 0,
                    answers: Vec::new(),
                },
            );
        }
        let Some(state) = rounds.get_mut(&d.round) else {
            t.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        for change in d.changes {
            let i = change.index as usize;
            let len = state.history.len();
            if i < len {
                state.history[i] = change.event;
            } else if i == len {
                state.history.push(change.event);
            } else {
                // Out of step with the round: stop comparing it.
                state.charge = None;
            }
        }
        if let Some(nodes) = d.nodes {
            state.nodes = nodes;
        }
        let Some(charge) = state.charge.as_mut() else {
            t.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.yield_to_live();
        let cpu = crate::policy::session::thread_cpu_time();
        let answer = super::replay::ask(
            charge,
            &state.job,
            &state.nodes,
            &state.history,
            d.now_ms,
            &self.limits,
        );
        t.decide_nanos.fetch_add(
            u64::try_from(
                crate::policy::session::thread_cpu_time()
                    .saturating_sub(cpu)
                    .as_nanos(),
            )
            .unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        t.decisions.fetch_add(1, Ordering::Relaxed);
        state.compared += 1;
        let live = d.live;
        match &answer {
            Answer::Incident(why) => {
                // Contained: this round's instance is never entered again.
                t.incidents.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(policy = %policy.name, job_id = %state.job.job_id, "shadow policy contained: {why}");
                state.charge = None;
            }
            // The live round performed the live answer: that is what the shadow saw start.
            Answer::Actions(_) => {
                if let Answer::Actions(performed) = &live {
                    charge.started(performed);
                }
            }
        }
        if live.same_as(&answer) {
            t.agree.fetch_add(1, Ordering::Relaxed);
            state.agree += 1;
            return;
        }
        self.diverged(state, d.k, d.now_ms, live, answer);
    }

    /// Waits (a bounded spin) while live decisions are under way.
    fn yield_to_live(&self) {
        let live = &self.tally.live_deciding;
        if live.load(Ordering::Acquire) == 0 {
            return;
        }
        let since = Instant::now();
        while live.load(Ordering::Acquire) > 0 && since.elapsed() < YIELD_TO_LIVE {
            std::hint::spin_loop();
        }
    }

    /// Counts a divergence and keeps it among the recent ones.
    fn diverged(
        &self,
        state: &mut RoundState<'_>,
        k: u32,
        now_ms: u64,
        live: Answer,
        answer: Answer,
    ) {
        let t = &self.tally;
        let class = classify(&live, &answer);
        state.answers.push(ShadowAnswer {
            k,
            class,
            answer: answer.clone(),
        });
        if let Ok(mut by) = t.by_class.lock() {
            *by.entry(class).or_default() += 1;
        }
        if !state.diverged {
            state.diverged = true;
            t.rounds_diverged.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut recent) = t.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(Seen {
                job_id: state.job.job_id.clone(),
                cid: state.job.cid.clone(),
                t_ms: now_ms,
                class,
                live,
                shadow: answer,
            });
        }
    }
}
