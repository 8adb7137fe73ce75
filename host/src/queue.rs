//! The durable pin queue, in SQLite (WAL).
//!
//! The unit of work is a CID (`pins`); any number of job ids point at it (`jobs`), so a CID
//! submitted twice is pinned once and every job id is answered. States:
//! `queued` → `pinning` → `pinned` | `local-fallback` | `failed`; a lazy pin whose round fails
//! goes back to `queued` with a later `next_attempt_at`, so it is never dropped. On open, pins
//! left `pinning` by a crash are queued again.
//!
//! Pins are keyed by the content, not the spelling: CIDv0 and CIDv1 of the same content are one
//! pin (`key`, the CIDv1 form), pinned as the first caller wrote it (`cid`); each job id keeps
//! the form its caller sent.
//!
//! A pin is lazy while any of its job ids was submitted lazily (`jobs.lazy`): a blocking
//! submission of the same CID gets the next round's answer (`urgent` moves the pin to the front)
//! but never turns the pin into one that can end `failed` under its lazy jobs. Cancelling one
//! job id detaches it; the pin goes on for the others, and ends only with its last job id.
//!
//! Durability: WAL with `synchronous = FULL`: a commit is on disk (fsynced) before it returns,
//! so an acknowledged submission (202) survives a power loss, not only a killed process.
//! Submissions are group-committed: one writer thread takes every submission waiting and
//! commits them in one fsynced transaction (a savepoint each, so one conflict fails alone),
//! which keeps enqueue throughput with an fsync per commit.

mod group_commit;
pub mod outbox;
pub mod requests;
mod rows;
mod schema;
mod state;

pub use state::State;

use group_commit::{Request, Write, Written, spawn_writer};
use rows::{COLUMNS, by_job_in, fetch, job_ids, read_row};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use schema::{SCHEMA, connect, migrate_columns};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// One CID's pin and the job ids waiting on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PinRow {
    pub cid: String,
    pub state: State,
    pub lazy: bool,
    pub size_bytes: u64,
    /// Rounds that ended in failure so far (the policy sees this as `failed-rounds`).
    pub failed_rounds: u32,
    pub next_attempt_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub confirmed: Vec<String>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub job_ids: Vec<String>,
    /// The CID as this job id's caller sent it, when that is another form (CIDv0 or CIDv1) of
    /// the content than `cid`, the form being pinned (set on lookups by job id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_cid: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Submission {
    pub cid: String,
    pub job_id: String,
    pub size_bytes: u64,
    pub lazy: bool,
    /// Where this job's events go (already checked against `notify.allowed_hosts`); `None`:
    /// the daemon's default, if any.
    pub notify_url: Option<String>,
}

/// How a round ended, for [`Queue::finish`].
#[derive(Debug, Clone)]
pub enum Finish {
    Pinned {
        confirmed: Vec<String>,
        decided_by: String,
    },
    LocalFallback {
        confirmed: Vec<String>,
        decided_by: String,
        /// The journal line written for it, for the `local-fallback` event.
        journal: Option<crate::journal::Entry>,
    },
    /// `retry_at_ms`: when to try again if the pin is still lazy (any lazy job id on it); a pin
    /// with only blocking job ids has failed whatever it says.
    Failed {
        reason: String,
        decided_by: String,
        retry_at_ms: Option<i64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job id '{job_id}' already belongs to CID {cid}")]
    JobConflict { job_id: String, cid: String },
    #[error("queue database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("queue database lock poisoned")]
    Poisoned,
    #[error("the queue's writer has stopped")]
    WriterGone,
    /// A group commit that failed, for every submission of the group.
    #[error("queue database: {0}")]
    Commit(String),
    /// A row that does not decode: said, never read as something else.
    #[error("queue row of CID {cid} is unreadable: column {column} holds {value}: {why}")]
    Corrupt {
        cid: String,
        column: String,
        value: String,
        why: String,
    },
    #[error("cannot start the queue's writer thread: {0}")]
    Spawn(std::io::Error),
    /// A queue call on the blocking pool that panicked or was cancelled (the daemon's door).
    #[error("queue task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl QueueError {
    fn from_db(e: &rusqlite::Error) -> QueueError {
        QueueError::Commit(e.to_string())
    }
}

pub struct Queue {
    conn: Mutex<Connection>,
    /// The group-commit writer's inbox (see [`Queue::submit`]).
    writer: Mutex<std::sync::mpsc::Sender<Request>>,
    /// Where events go (`[notify]`); shared with the group-commit writer, whose submissions
    /// to an already ended pin are told at once.
    notify: std::sync::Arc<std::sync::RwLock<outbox::Target>>,
    /// The notifier's own connection (see [`outbox`]): its claims and delivery marks never wait
    /// on the worker's connection, and commit with `synchronous = NORMAL` (no fsync each). A
    /// mark lost to a power cut only repeats a delivery, which at-least-once allows; the event
    /// itself is written by the round's end, fsynced, on the worker's connection.
    outbox_conn: Mutex<Connection>,
}
impl Queue {
    /// Opens (or creates) the queue and re-queues pins a crash left in `pinning`.
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        if let Some(dir) = path.parent() {
            // A missing directory would surface as an opaque SQLite error.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = connect(path)?;
        conn.execute_batch(SCHEMA)?;
        migrate_columns(&conn)?;
        let notify = std::sync::Arc::new(std::sync::RwLock::new(outbox::Target::default()));
        let writer = spawn_writer(connect(path)?, std::sync::Arc::clone(&notify))?;
        let outbox_conn = connect(path)?;
        outbox_conn.pragma_update(None, "synchronous", "NORMAL")?;
        let resumed = conn.execute(
            "UPDATE pins SET state = ?1 WHERE state = ?2",
            [State::Queued, State::Pinning],
        )?;
        if resumed > 0 {
            tracing::info!(resumed, "re-queued pins interrupted by a restart");
        }
        Ok(Queue {
            conn: Mutex::new(conn),
            writer: Mutex::new(writer),
            notify,
            outbox_conn: Mutex::new(outbox_conn),
        })
    }

    /// Turns events on (`[notify]` configured) or off, with where the events of jobs without
    /// a URL of their own go (`notify.url`).
    pub fn set_notify(&self, on: bool, default: Option<String>) {
        if let Ok(mut t) = self.notify.write() {
            *t = outbox::Target { on, default };
        }
    }

    /// [`Queue::set_notify`] on, with `url` as the default.
    pub fn set_notify_default(&self, url: Option<String>) {
        self.set_notify(true, url);
    }

    fn notify_target(&self) -> outbox::Target {
        outbox::Target::current(&self.notify)
    }

    /// Reads on the notifier's connection.
    fn with_outbox<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        let mut conn = self.outbox_conn.lock().map_err(|_| QueueError::Poisoned)?;
        f(&mut conn)
    }

    /// Writes on the notifier's connection, taken in turn with the worker's: two connections
    /// writing at once meet SQLite's lock, and the loser sleeps in its busy handler (1 ms and
    /// up), which cost rounds a fifth of their rate in a burst. Without an fsync, the turn
    /// lasts microseconds.
    /// The outbox connection is taken first: a long read on it (a scrape) then delays only
    /// the notifier, never a round waiting on the worker's connection.
    fn with_outbox_write<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        let mut conn = self.outbox_conn.lock().map_err(|_| QueueError::Poisoned)?;
        let _turn = self.conn.lock().map_err(|_| QueueError::Poisoned)?;
        f(&mut conn)
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        let mut conn = self.conn.lock().map_err(|_| QueueError::Poisoned)?;
        f(&mut conn)
    }

    /// Queues `s` (or attaches its job id to the CID's existing pin) and returns the pin.
    /// A CID that failed before is queued again; a blocking submission makes a queued lazy
    /// pin blocking (it gets picked first).
    pub fn submit(&self, s: &Submission, now_ms: i64) -> Result<PinRow, QueueError> {
        match self.write(Write::Job(s.clone()), now_ms)? {
            Written::Pin(row) => Ok(row),
            Written::Request(_) => Err(QueueError::WriterGone),
        }
    }

    /// Hands `write` to the group-commit writer and waits for its commit.
    fn write(&self, write: Write, now_ms: i64) -> Result<Written, QueueError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let request = Request {
            write,
            now_ms,
            reply,
        };
        self.writer
            .lock()
            .map_err(|_| QueueError::Poisoned)?
            .send(request)
            .map_err(|_| QueueError::WriterGone)?;
        answer.recv().map_err(|_| QueueError::WriterGone)?
    }

    /// Takes the next due pin (blocking before lazy, oldest first) and marks it `pinning`.
    ///
    /// The only commit without an fsync (`synchronous = NORMAL` for it): a claim lost to a
    /// power cut leaves the pin `queued`, which is what opening the queue makes of a `pinning`
    /// one anyway, and the unpin it cancelled is cancelled again by the next claim. The next
    /// fsynced commit (the round's end, at the latest) makes it durable with itself, since the
    /// WAL is written in order. A killed process loses nothing: the commit is in the OS's cache.
    pub fn claim_due(&self, now_ms: i64) -> Result<Option<PinRow>, QueueError> {
        self.with(|conn| {
            let level = |conn: &Connection, sql: &str| conn.prepare_cached(sql)?.execute([]);
            level(conn, "PRAGMA synchronous = NORMAL")?;
            let claimed = claim_in(conn, now_ms);
            // Back to FULL whatever the claim did: every other commit is fsynced. Should that
            // fail, the claim is not handed out (its pin is re-queued by the next start) and
            // the error names why.
            if let Err(e) = level(conn, "PRAGMA synchronous = FULL") {
                tracing::error!("queue: cannot set synchronous = FULL again after a claim: {e}");
                return Err(e.into());
            }
            claimed
        })
    }

    /// When the next queued pin becomes due, if any is queued.
    pub fn next_due_ms(&self) -> Result<Option<i64>, QueueError> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached("SELECT MIN(next_attempt_at) FROM pins WHERE state = ?1")?
                .query_row([State::Queued], |r| r.get(0))?)
        })
    }

    /// Records how a round ended. Only a pin still `pinning` is changed (a cancelled one is not
    /// resurrected by a worker that finishes late).
    /// The webhook events of the end are written in the same transaction (none when the pin
    /// was no longer `pinning`).
    /// Returns the pin as the end left it (`None`: no such pin).
    pub fn finish(
        &self,
        cid: &str,
        finish: &Finish,
        now_ms: i64,
    ) -> Result<Option<PinRow>, QueueError> {
        let target = self.notify_target();
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let conn = &tx;
            let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
            let changed = match finish {
                Finish::Pinned {
                    confirmed,
                    decided_by,
                }
                | Finish::LocalFallback {
                    confirmed,
                    decided_by,
                    ..
                } => {
                    let (state, journal) = match finish {
                        Finish::LocalFallback { journal, .. } => (
                            State::LocalFallback,
                            journal.as_ref().and_then(|e| serde_json::to_string(e).ok()),
                        ),
                        _ => (State::Pinned, None),
                    };
                    conn.prepare_cached(
                        "UPDATE pins SET state = ?2, confirmed = ?3, decided_by = ?4, reason = NULL,
                         urgent = 0, updated_at = ?5, journal = ?7 WHERE cid = ?1 AND state = ?6",
                    )?
                    .execute(params![
                            cid,
                            state,
                            json(confirmed),
                            decided_by,
                            now_ms,
                            State::Pinning,
                            journal
                        ])?
                }
                Finish::Failed {
                    reason,
                    decided_by,
                    retry_at_ms,
                } => {
                    // Lazy now (any lazy job id, whatever the round was started as): queued
                    // again at `retry_at_ms`. Otherwise the pin has failed.
                    conn.prepare_cached(
                        "UPDATE pins SET
                           state = CASE WHEN lazy = 1 THEN ?6 ELSE ?7 END,
                           next_attempt_at = CASE WHEN lazy = 1 THEN COALESCE(?4, ?5) ELSE ?5 END,
                           failed_rounds = failed_rounds + 1, reason = ?2, decided_by = ?3,
                           urgent = 0, updated_at = ?5
                         WHERE cid = ?1 AND state = ?8",
                    )?
                    .execute(params![
                        cid,
                        reason,
                        decided_by,
                        retry_at_ms,
                        now_ms,
                        State::Queued,
                        State::Failed,
                        State::Pinning
                    ])?
                }
            };
            if changed > 0 {
                outbox::record_end(conn, cid, finish, now_ms, &target)?;
            }
            let after = fetch(conn, cid)?;
            tx.commit()?;
            Ok(after)
        })
    }

    /// The pin a job id points at.
    pub fn by_job(&self, job_id: &str) -> Result<Option<PinRow>, QueueError> {
        self.with(|conn| by_job_in(conn, job_id))
    }

    /// The pin of `cid`'s content, whichever form (CIDv0 or CIDv1) it is written in.
    pub fn by_cid(&self, cid: &str) -> Result<Option<PinRow>, QueueError> {
        self.with(|conn| {
            let pinned: Option<String> = conn
                .prepare_cached("SELECT cid FROM pins WHERE key = ?1 OR cid = ?2")?
                .query_row(params![crate::cid_identity::key(cid), cid], |r| r.get(0))
                .optional()?;
            match pinned {
                Some(pinned) => fetch(conn, &pinned),
                None => Ok(None),
            }
        })
    }

    /// Pins in `state` (all when `None`), most recently updated first.
    pub fn list(&self, state: Option<State>, limit: u32) -> Result<Vec<PinRow>, QueueError> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM pins WHERE (?1 IS NULL OR state = ?1)
                 ORDER BY updated_at DESC LIMIT ?2"
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(params![state, limit])?;
            let mut pins = Vec::new();
            while let Some(r) = rows.next()? {
                pins.push(read_row(r)?);
            }
            drop(rows);
            drop(stmt);
            pins.into_iter()
                .map(|mut row| {
                    row.job_ids = job_ids(conn, &row.cid)?;
                    Ok(row)
                })
                .collect()
        })
    }

    /// Cancels one job id. With other job ids on the same CID it is only detached and the pin
    /// goes on for them; the last job id cancels the pin itself, which ends `failed`
    /// ("cancelled by operator"). The pin is read and changed in one write transaction, so a
    /// job id attached meanwhile is either seen (detach) or attached after (the pin re-queued).
    pub fn cancel(&self, job_id: &str, now_ms: i64) -> Result<Cancelled, QueueError> {
        let target = self.notify_target();
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(row) = by_job_in(&tx, job_id)? else {
                return Ok(Cancelled::NoSuchJob);
            };
            if row.state.is_final() {
                return Ok(Cancelled::AlreadyEnded(row));
            }
            let detach = row.job_ids.iter().any(|j| j != job_id);
            outbox::record_cancel(
                &tx,
                &row.cid,
                job_id,
                "cancelled by operator",
                now_ms,
                &target,
            )?;
            if detach {
                tx.execute("DELETE FROM jobs WHERE job_id = ?1", [job_id])?;
                recompute_lazy(&tx, &row.cid)?;
            } else {
                tx.execute(
                    "UPDATE pins SET state = ?3, reason = 'cancelled by operator',
                     urgent = 0, updated_at = ?2 WHERE cid = ?1 AND state IN (?4, ?5)",
                    params![
                        row.cid,
                        now_ms,
                        State::Failed,
                        State::Queued,
                        State::Pinning
                    ],
                )?;
                tx.execute("UPDATE jobs SET lazy = 0 WHERE job_id = ?1", [job_id])?;
            }
            let after = fetch(&tx, &row.cid)?.unwrap_or(row);
            tx.commit()?;
            Ok(if detach {
                Cancelled::Detached(after)
            } else {
                Cancelled::Pin(after)
            })
        })
    }

    /// Number of pins per state (every state present, zero included). One grouped query: it
    /// runs on every `/metrics` scrape and `/v1/health` call.
    pub fn counts(&self) -> Result<Vec<(State, u64)>, QueueError> {
        self.with(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT state, COUNT(*) FROM pins GROUP BY state")?;
            let found = stmt
                .query_map([], |r| Ok((r.get::<_, State>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(State::ALL
                .into_iter()
                .map(|st| {
                    let n = found.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
                    (st, u64::try_from(n).unwrap_or(0))
                })
                .collect())
        })
    }

    /// Deletes finished pins (and their job ids) last updated before `cutoff_ms`, except those a
    /// Pinning Services API request still holds: a request lives until its user deletes it.
    pub fn prune_finished(&self, cutoff_ms: i64) -> Result<usize, QueueError> {
        self.with(|conn| {
            let finals: Vec<State> = State::ALL.into_iter().filter(|s| s.is_final()).collect();
            let marks: Vec<String> = (2..finals.len() + 2).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "DELETE FROM pins WHERE updated_at < ?1 AND state IN ({})
                 AND NOT EXISTS (SELECT 1 FROM requests WHERE requests.cid = pins.cid)",
                marks.join(", ")
            );
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&cutoff_ms];
            args.extend(finals.iter().map(|s| s as &dyn rusqlite::ToSql));
            let pruned = conn.execute(&sql, rusqlite::params_from_iter(args))?;
            outbox::prune_delivered(conn, cutoff_ms)?;
            Ok(pruned)
        })
    }

    /// Takes up to `limit` due webhook events, leased for `lease_ms` (see [`outbox`]).
    pub fn claim_events(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<outbox::Outgoing>, QueueError> {
        self.with_outbox_write(|conn| outbox::claim(conn, now_ms, lease_ms, limit))
    }

    /// [`Queue::claim_events`] for one event.
    pub fn claim_event(
        &self,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<outbox::Outgoing>, QueueError> {
        Ok(self.claim_events(now_ms, lease_ms, 1)?.pop())
    }

    /// When the next undelivered event is due, if any is.
    pub fn next_event_due_ms(&self) -> Result<Option<i64>, QueueError> {
        self.with_outbox(|conn| outbox::next_due(conn))
    }

    pub fn event_delivered(&self, event_id: &str, now_ms: i64) -> Result<(), QueueError> {
        self.events_delivered(&[event_id.to_string()], now_ms)
    }

    /// Marks several events delivered in one transaction.
    pub fn events_delivered(&self, event_ids: &[String], now_ms: i64) -> Result<(), QueueError> {
        self.with_outbox_write(|conn| outbox::delivered(conn, event_ids, now_ms))
    }

    /// A failed delivery attempt; `Ok(true)`: the event is now too old and has expired.
    pub fn event_failed(
        &self,
        event_id: &str,
        error: &str,
        now_ms: i64,
        retry_at_ms: i64,
        max_age_ms: i64,
    ) -> Result<bool, QueueError> {
        self.with_outbox_write(|conn| {
            outbox::attempt_failed(conn, event_id, error, now_ms, retry_at_ms, max_age_ms)
        })
    }

    /// Events by delivery state: one pin's (`Some(cid)`) or the whole outbox's.
    pub fn event_counts(&self, cid: Option<&str>) -> Result<outbox::OutboxCounts, QueueError> {
        self.with_outbox(|conn| outbox::counts(conn, cid))
    }

    /// The newest delivery error among a pin's undelivered events.
    pub fn event_error(&self, cid: &str) -> Result<Option<String>, QueueError> {
        self.with_outbox(|conn| outbox::last_error(conn, cid))
    }
}
/// Queues `s` (or attaches its job id to the CID's existing pin) inside `tx`.
/// A job id attached to a pin that has already ended gets its event here (`target`).
fn submit_in(
    tx: &Connection,
    s: &Submission,
    now_ms: i64,
    target: &outbox::Target,
) -> Result<PinRow, QueueError> {
    let key = crate::cid_identity::key(&s.cid);
    let owner: Option<String> = tx
        .query_row("SELECT cid FROM jobs WHERE job_id = ?1", [&s.job_id], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(cid) = owner.filter(|c| crate::cid_identity::key(c) != key) {
        return Err(QueueError::JobConflict {
            job_id: s.job_id.clone(),
            cid,
        });
    }
    // The same content in another spelling (CIDv0 vs CIDv1) is the same pin, pinned in the
    // form its first caller sent.
    let found: Option<String> = tx
        .query_row(
            "SELECT cid FROM pins WHERE key = ?1 OR cid = ?2",
            params![key, s.cid],
            |r| r.get(0),
        )
        .optional()?;
    let existing = match &found {
        Some(cid) => fetch(tx, cid)?,
        None => None,
    };
    let cid = found.unwrap_or_else(|| s.cid.clone());
    match existing.as_ref().map(|row| row.state) {
        None => {
            tx.execute(
                "INSERT INTO pins (cid, key, state, lazy, urgent, size_bytes, next_attempt_at,
                   created_at, updated_at)
                 VALUES (?1, ?2, ?7, ?3, ?4, ?5, ?6, ?6, ?6)",
                params![
                    cid,
                    key,
                    s.lazy,
                    !s.lazy,
                    s.size_bytes as i64,
                    now_ms,
                    State::Queued
                ],
            )?;
        }
        Some(State::Failed) => {
            tx.execute(
                "UPDATE pins SET state = ?4, urgent = ?2, next_attempt_at = ?3,
                 updated_at = ?3, reason = NULL WHERE cid = ?1",
                params![cid, !s.lazy, now_ms, State::Queued],
            )?;
        }
        // A blocking caller wants the next round's answer now, lazy jobs or not.
        Some(State::Queued | State::Pinning) if !s.lazy => {
            tx.execute(
                "UPDATE pins SET urgent = 1, next_attempt_at = MIN(next_attempt_at, ?2),
                 updated_at = ?2 WHERE cid = ?1",
                params![cid, now_ms],
            )?;
        }
        Some(_) => {}
    }
    let attached = tx.execute(
        "INSERT OR IGNORE INTO jobs (job_id, cid, created_at, lazy, sent_cid, notify_url)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![s.job_id, cid, now_ms, s.lazy, s.cid, s.notify_url],
    )? == 1;
    if let Some(pin) = existing.filter(|_| attached) {
        outbox::record_attached(tx, &pin, &s.job_id, now_ms, target)?;
    }
    recompute_lazy(tx, &cid)?;
    let row = fetch(tx, &cid)?;
    row.ok_or(QueueError::Db(rusqlite::Error::QueryReturnedNoRows))
}

/// What [`Queue::cancel`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    NoSuchJob,
    /// The pin had ended already (nothing changed).
    AlreadyEnded(PinRow),
    /// Other job ids want the CID: this one was detached and the pin goes on.
    Detached(PinRow),
    /// The last job id: the pin itself is cancelled (its round, if running, must stop).
    Pin(PinRow),
}

/// [`Queue::claim_due`]'s transaction.
fn claim_in(conn: &mut Connection, now_ms: i64) -> Result<Option<PinRow>, QueueError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let cid: Option<String> = tx
        .prepare_cached(
            "SELECT cid FROM pins WHERE state = ?2 AND (next_attempt_at <= ?1 OR urgent = 1)
             ORDER BY urgent DESC, lazy, next_attempt_at, created_at LIMIT 1",
        )?
        .query_row(params![now_ms, State::Queued], |r| r.get(0))
        .optional()?;
    let Some(cid) = cid else {
        return Ok(None);
    };
    tx.prepare_cached("UPDATE pins SET state = ?3, updated_at = ?2 WHERE cid = ?1")?
        .execute(params![cid, now_ms, State::Pinning])?;
    // The content is wanted again: a delete's unpin of it must not run.
    tx.prepare_cached("DELETE FROM unpins WHERE key = (SELECT key FROM pins WHERE cid = ?1)")?
        .execute([&cid])?;
    let row = fetch(&tx, &cid)?;
    tx.commit()?;
    Ok(row)
}

/// A pin is lazy while any job id on it was submitted lazily.
fn recompute_lazy(conn: &Connection, cid: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE pins SET lazy = (SELECT COALESCE(MAX(lazy), 0) FROM jobs WHERE jobs.cid = ?1)
         WHERE cid = ?1 AND EXISTS (SELECT 1 FROM jobs WHERE jobs.cid = ?1)",
        [cid],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
