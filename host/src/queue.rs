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

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Queued,
    Pinning,
    Pinned,
    Failed,
    LocalFallback,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Pinning,
        State::Pinned,
        State::Failed,
        State::LocalFallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Pinning => "pinning",
            State::Pinned => "pinned",
            State::Failed => "failed",
            State::LocalFallback => "local-fallback",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Every state's name, for messages: "queued, pinning, ...".
    pub fn names() -> String {
        State::ALL.map(State::as_str).join(", ")
    }

    /// A state no worker will change any more.
    pub fn is_final(self) -> bool {
        matches!(self, State::Pinned | State::Failed | State::LocalFallback)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one mapping between states and the `state` column: every query binds a `State`, so no
/// state name is written in SQL.
impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for State {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        State::parse(value.as_str()?).ok_or_else(|| FromSqlError::Other(Box::new(UnknownState)))
    }
}

/// A `state` column holding no state's name.
#[derive(Debug)]
struct UnknownState;

impl std::fmt::Display for UnknownState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a queue state ({})", State::names())
    }
}

impl std::error::Error for UnknownState {}

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
}

/// A submission waiting for the writer, and where to send its result.
struct Request {
    submission: Submission,
    now_ms: i64,
    reply: std::sync::mpsc::SyncSender<Result<PinRow, QueueError>>,
}

/// Submissions committed together at most.
const MAX_GROUP: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pins (
    cid             TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    lazy            INTEGER NOT NULL,
    size_bytes      INTEGER NOT NULL,
    failed_rounds   INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    confirmed       TEXT NOT NULL DEFAULT '[]',
    reason          TEXT,
    decided_by      TEXT,
    urgent          INTEGER NOT NULL DEFAULT 0,
    key             TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS pins_due ON pins(state, lazy, next_attempt_at);
CREATE TABLE IF NOT EXISTS jobs (
    job_id     TEXT PRIMARY KEY,
    cid        TEXT NOT NULL REFERENCES pins(cid) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    lazy       INTEGER NOT NULL DEFAULT 0,
    sent_cid   TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS jobs_cid ON jobs(cid);
";

const COLUMNS: &str = "cid, state, lazy, size_bytes, failed_rounds, next_attempt_at, created_at, \
                       updated_at, confirmed, reason, decided_by";

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
        let writer = spawn_writer(connect(path)?)?;
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
        })
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
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let request = Request {
            submission: s.clone(),
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
    pub fn claim_due(&self, now_ms: i64) -> Result<Option<PinRow>, QueueError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cid: Option<String> = tx
                .query_row(
                    "SELECT cid FROM pins WHERE state = ?2 AND (next_attempt_at <= ?1 OR urgent = 1)
                     ORDER BY urgent DESC, lazy, next_attempt_at, created_at LIMIT 1",
                    params![now_ms, State::Queued],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(cid) = cid else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE pins SET state = ?3, updated_at = ?2 WHERE cid = ?1",
                params![cid, now_ms, State::Pinning],
            )?;
            let row = fetch(&tx, &cid)?;
            tx.commit()?;
            Ok(row)
        })
    }

    /// When the next queued pin becomes due, if any is queued.
    pub fn next_due_ms(&self) -> Result<Option<i64>, QueueError> {
        self.with(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(next_attempt_at) FROM pins WHERE state = ?1",
                [State::Queued],
                |r| r.get(0),
            )?)
        })
    }

    /// Records how a round ended. Only a pin still `pinning` is changed (a cancelled one is not
    /// resurrected by a worker that finishes late).
    pub fn finish(&self, cid: &str, finish: &Finish, now_ms: i64) -> Result<(), QueueError> {
        self.with(|conn| {
            let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
            match finish {
                Finish::Pinned {
                    confirmed,
                    decided_by,
                }
                | Finish::LocalFallback {
                    confirmed,
                    decided_by,
                } => {
                    let state = if matches!(finish, Finish::Pinned { .. }) {
                        State::Pinned
                    } else {
                        State::LocalFallback
                    };
                    conn.execute(
                        "UPDATE pins SET state = ?2, confirmed = ?3, decided_by = ?4, reason = NULL,
                         urgent = 0, updated_at = ?5 WHERE cid = ?1 AND state = ?6",
                        params![
                            cid,
                            state,
                            json(confirmed),
                            decided_by,
                            now_ms,
                            State::Pinning
                        ],
                    )?;
                }
                Finish::Failed {
                    reason,
                    decided_by,
                    retry_at_ms,
                } => {
                    // Lazy now (any lazy job id, whatever the round was started as): queued
                    // again at `retry_at_ms`. Otherwise the pin has failed.
                    conn.execute(
                        "UPDATE pins SET
                           state = CASE WHEN lazy = 1 THEN ?6 ELSE ?7 END,
                           next_attempt_at = CASE WHEN lazy = 1 THEN COALESCE(?4, ?5) ELSE ?5 END,
                           failed_rounds = failed_rounds + 1, reason = ?2, decided_by = ?3,
                           urgent = 0, updated_at = ?5
                         WHERE cid = ?1 AND state = ?8",
                        params![
                            cid,
                            reason,
                            decided_by,
                            retry_at_ms,
                            now_ms,
                            State::Queued,
                            State::Failed,
                            State::Pinning
                        ],
                    )?;
                }
            }
            Ok(())
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
                .query_row(
                    "SELECT cid FROM pins WHERE key = ?1 OR cid = ?2",
                    params![crate::journal::cid_key(cid), cid],
                    |r| r.get(0),
                )
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
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(row) = by_job_in(&tx, job_id)? else {
                return Ok(Cancelled::NoSuchJob);
            };
            if row.state.is_final() {
                return Ok(Cancelled::AlreadyEnded(row));
            }
            let detach = row.job_ids.iter().any(|j| j != job_id);
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

    /// Number of pins per state (every state present, zero included).
    pub fn counts(&self) -> Result<Vec<(State, u64)>, QueueError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached("SELECT COUNT(*) FROM pins WHERE state = ?1")?;
            State::ALL
                .into_iter()
                .map(|st| {
                    let n: i64 = stmt.query_row([st], |r| r.get(0))?;
                    Ok((st, n as u64))
                })
                .collect()
        })
    }

    /// Deletes finished pins (and their job ids) last updated before `cutoff_ms`.
    pub fn prune_finished(&self, cutoff_ms: i64) -> Result<usize, QueueError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut pruned = 0;
            for state in State::ALL.into_iter().filter(|s| s.is_final()) {
                pruned += tx.execute(
                    "DELETE FROM pins WHERE state = ?1 AND updated_at < ?2",
                    params![state, cutoff_ms],
                )?;
            }
            tx.commit()?;
            Ok(pruned)
        })
    }
}

/// The pin a job id points at, with the CID as that job id's caller sent it.
fn by_job_in(conn: &Connection, job_id: &str) -> Result<Option<PinRow>, QueueError> {
    let found: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT cid, sent_cid FROM jobs WHERE job_id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((cid, sent)) = found else {
        return Ok(None);
    };
    Ok(fetch(conn, &cid)?.map(|mut row| {
        row.requested_cid = sent.filter(|s| *s != row.cid);
        row
    }))
}

/// Queues `s` (or attaches its job id to the CID's existing pin) inside `tx`.
fn submit_in(tx: &Connection, s: &Submission, now_ms: i64) -> Result<PinRow, QueueError> {
    let key = crate::journal::cid_key(&s.cid);
    let owner: Option<String> = tx
        .query_row("SELECT cid FROM jobs WHERE job_id = ?1", [&s.job_id], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(cid) = owner.filter(|c| crate::journal::cid_key(c) != key) {
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
    match existing.map(|row| row.state) {
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
    tx.execute(
        "INSERT OR IGNORE INTO jobs (job_id, cid, created_at, lazy, sent_cid)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![s.job_id, cid, now_ms, s.lazy, s.cid],
    )?;
    recompute_lazy(tx, &cid)?;
    let row = fetch(tx, &cid)?;
    row.ok_or(QueueError::Db(rusqlite::Error::QueryReturnedNoRows))
}

fn connect(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The group-commit writer: takes a submission, then every one waiting behind it (up to
/// [`MAX_GROUP`]), commits them in one transaction and answers each. It ends with the queue.
fn spawn_writer(mut conn: Connection) -> Result<std::sync::mpsc::Sender<Request>, QueueError> {
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("queue-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let results = commit_group(&mut conn, &group);
                for (request, result) in group.into_iter().zip(results) {
                    // The caller may have gone (a cancelled request): nothing to tell.
                    let _ = request.reply.send(result);
                }
            }
        })
        .map_err(QueueError::Spawn)?;
    Ok(tx)
}

/// One transaction for the group; a savepoint per submission, so a conflict fails only its
/// own. If the commit fails, every submission of the group fails (none was acknowledged).
/// Write transactions here begin IMMEDIATE: two connections write this database (this writer
/// and the worker's), and a deferred one that reads first can fail to upgrade to a write with
/// SQLITE_BUSY, which the busy timeout does not cover.
fn commit_group(conn: &mut Connection, group: &[Request]) -> Vec<Result<PinRow, QueueError>> {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return group.iter().map(|_| Err(QueueError::from_db(&e))).collect(),
    };
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        let result = tx.savepoint().map_err(QueueError::Db).and_then(|sp| {
            let row = submit_in(&sp, &request.submission, request.now_ms)?;
            sp.commit()?;
            Ok(row)
        });
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => group.iter().map(|_| Err(QueueError::from_db(&e))).collect(),
    }
}

fn fetch(conn: &Connection, cid: &str) -> Result<Option<PinRow>, QueueError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM pins WHERE cid = ?1"))?;
    let mut rows = stmt.query([cid])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let mut row = read_row(r)?;
    row.job_ids = job_ids(conn, cid)?;
    Ok(Some(row))
}

fn job_ids(conn: &Connection, cid: &str) -> Result<Vec<String>, QueueError> {
    let mut stmt =
        conn.prepare_cached("SELECT job_id FROM jobs WHERE cid = ?1 ORDER BY created_at, job_id")?;
    let ids = stmt
        .query_map([cid], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// A `pins` row (in [`COLUMNS`] order), without its job ids. A column that does not decode
/// is [`QueueError::Corrupt`], naming the row, the column and what it holds.
fn read_row(r: &Row<'_>) -> Result<PinRow, QueueError> {
    let cid: String = r.get(0)?;
    let confirmed: String = field(r, &cid, 8)?;
    let confirmed = serde_json::from_str(&confirmed)
        .map_err(|e| corrupt(r, &cid, 8, format!("not a JSON list of node names: {e}")))?;
    Ok(PinRow {
        state: field(r, &cid, 1)?,
        lazy: field(r, &cid, 2)?,
        size_bytes: field::<i64>(r, &cid, 3)?.max(0) as u64,
        failed_rounds: field(r, &cid, 4)?,
        next_attempt_at_ms: field(r, &cid, 5)?,
        created_at_ms: field(r, &cid, 6)?,
        updated_at_ms: field(r, &cid, 7)?,
        confirmed,
        reason: field(r, &cid, 9)?,
        decided_by: field(r, &cid, 10)?,
        job_ids: Vec::new(),
        requested_cid: None,
        cid,
    })
}

/// Column `idx` of the row of `cid`, decoded as a `T`.
fn field<T: FromSql>(r: &Row<'_>, cid: &str, idx: usize) -> Result<T, QueueError> {
    r.get(idx).map_err(|e| {
        let why = match e {
            rusqlite::Error::FromSqlConversionFailure(_, _, why) => why.to_string(),
            other => other.to_string(),
        };
        corrupt(r, cid, idx, why)
    })
}

/// [`QueueError::Corrupt`] for column `idx` of the row of `cid`, with the value it holds.
fn corrupt(r: &Row<'_>, cid: &str, idx: usize, why: String) -> QueueError {
    let value = match r.get_ref(idx) {
        Ok(ValueRef::Null) => "NULL".to_string(),
        Ok(ValueRef::Integer(n)) => n.to_string(),
        Ok(ValueRef::Real(x)) => x.to_string(),
        Ok(ValueRef::Text(t)) => format!("'{}'", String::from_utf8_lossy(t)),
        Ok(ValueRef::Blob(b)) => format!("a {}-byte blob", b.len()),
        Err(e) => format!("(unreadable: {e})"),
    };
    let column = r.as_ref().column_name(idx).unwrap_or("?").to_string();
    QueueError::Corrupt {
        cid: cid.to_string(),
        column,
        value,
        why,
    }
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

/// A pin is lazy while any job id on it was submitted lazily.
fn recompute_lazy(conn: &Connection, cid: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE pins SET lazy = (SELECT COALESCE(MAX(lazy), 0) FROM jobs WHERE jobs.cid = ?1)
         WHERE cid = ?1 AND EXISTS (SELECT 1 FROM jobs WHERE jobs.cid = ?1)",
        [cid],
    )?;
    Ok(())
}

/// Columns added after the first release, for queues created before them.
fn migrate_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<_, _>>()?;
        Ok(names.iter().any(|n| n == column))
    };
    if !has("pins", "urgent")? {
        conn.execute_batch("ALTER TABLE pins ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0;")?;
    }
    if !has("pins", "key")? {
        conn.execute_batch("ALTER TABLE pins ADD COLUMN key TEXT;")?;
    }
    if !has("jobs", "sent_cid")? {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN sent_cid TEXT;")?;
    }
    // Pins from before the content key: key them now. Should an old queue hold the same
    // content twice, the later one keeps no key (it is still pinned, just not merged).
    let unkeyed: Vec<String> = {
        let mut stmt = conn.prepare("SELECT cid FROM pins WHERE key IS NULL")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for cid in unkeyed {
        conn.execute(
            "UPDATE pins SET key = ?2 WHERE cid = ?1
             AND NOT EXISTS (SELECT 1 FROM pins WHERE key = ?2)",
            params![cid, crate::journal::cid_key(&cid)],
        )?;
    }
    conn.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS pins_key ON pins(key);")?;
    if !has("jobs", "lazy")? {
        // Until now a pin's laziness was the pin's own flag: give it to each of its job ids.
        conn.execute_batch(
            "ALTER TABLE jobs ADD COLUMN lazy INTEGER NOT NULL DEFAULT 0;
             UPDATE jobs SET lazy = (SELECT lazy FROM pins WHERE pins.cid = jobs.cid);",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(cid: &str, job: &str, lazy: bool) -> Submission {
        Submission {
            cid: cid.into(),
            job_id: job.into(),
            size_bytes: 10,
            lazy,
        }
    }

    fn open() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(&dir.path().join("queue.db")).expect("open");
        (dir, q)
    }

    #[test]
    fn same_cid_twice_is_one_pin_with_both_job_ids() {
        let (_d, q) = open();
        q.submit(&sub("c1", "j1", true), 1).expect("submit");
        let row = q.submit(&sub("c1", "j2", true), 2).expect("submit");
        assert_eq!(row.job_ids, ["j1", "j2"]);
        assert_eq!(q.list(None, 10).expect("list").len(), 1);
        // Resubmitting the same job id is a no-op; reusing it for another CID is a conflict.
        q.submit(&sub("c1", "j1", true), 3).expect("idempotent");
        let err = q.submit(&sub("c2", "j1", true), 4).unwrap_err();
        assert!(matches!(err, QueueError::JobConflict { .. }), "{err}");
    }

    #[test]
    fn claim_prefers_blocking_then_oldest_and_skips_future_retries() {
        let (_d, q) = open();
        q.submit(&sub("lazy", "a", true), 1).expect("submit");
        q.submit(&sub("wait", "b", false), 2).expect("submit");
        assert_eq!(
            q.claim_due(10).expect("claim").map(|r| r.cid),
            Some("wait".into())
        );
        let lazy = q.claim_due(10).expect("claim").expect("lazy due");
        q.finish(
            &lazy.cid,
            &Finish::Failed {
                reason: "CRITICAL".into(),
                decided_by: "tank-mode".into(),
                retry_at_ms: Some(1_000),
            },
            11,
        )
        .expect("finish");
        assert!(q.claim_due(500).expect("claim").is_none(), "not due yet");
        let again = q.claim_due(1_000).expect("claim").expect("due again");
        assert_eq!(again.failed_rounds, 1);
        assert_eq!(q.next_due_ms().expect("next"), None);
    }

    #[test]
    fn interrupted_pins_resume_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.db");
        {
            let q = Queue::open(&path).expect("open");
            q.submit(&sub("c1", "j1", true), 1).expect("submit");
            assert!(q.claim_due(5).expect("claim").is_some());
        }
        let q = Queue::open(&path).expect("reopen");
        assert_eq!(
            q.by_job("j1").expect("get").map(|r| r.state),
            Some(State::Queued)
        );
    }

    #[test]
    fn cancel_and_late_finish_do_not_resurrect() {
        let (_d, q) = open();
        q.submit(&sub("c1", "j1", true), 1).expect("submit");
        q.claim_due(2).expect("claim");
        q.cancel("j1", 3).expect("cancel");
        let done = Finish::Pinned {
            confirmed: vec!["primary".into()],
            decided_by: "tank-mode".into(),
        };
        q.finish("c1", &done, 4).expect("finish");
        let row = q.by_cid("c1").expect("get").expect("row");
        assert_eq!(row.state, State::Failed);
        assert_eq!(row.reason.as_deref(), Some("cancelled by operator"));
        // Submitting again re-queues it.
        let row = q.submit(&sub("c1", "j2", true), 5).expect("submit");
        assert_eq!(row.state, State::Queued);
    }

    fn failed_round(q: &Queue, cid: &str, at: i64) {
        let failed = Finish::Failed {
            reason: "CRITICAL".into(),
            decided_by: "tank-mode".into(),
            retry_at_ms: Some(at + 1_000),
        };
        q.finish(cid, &failed, at).expect("finish");
    }

    /// Issue 12, item 1: a blocking caller on a CID that lazy jobs want gets the round's answer,
    /// and the pin stays queued for the lazy jobs instead of ending `failed` under them.
    #[test]
    fn a_blocking_submit_never_ends_a_pin_that_lazy_jobs_want() {
        let (_d, q) = open();
        q.submit(&sub("c1", "lazy-A", true), 1).expect("submit");
        q.claim_due(1).expect("claim").expect("due");
        failed_round(&q, "c1", 2); // lazy round 1: queued again at 1002
        let row = q.submit(&sub("c1", "block-B", false), 3).expect("submit");
        assert!(row.lazy, "still lazy: {row:?}");
        // The blocking caller jumps the lazy backoff.
        let claimed = q.claim_due(4).expect("claim").expect("urgent");
        assert!(claimed.lazy);
        failed_round(&q, "c1", 5);
        let row = q.by_cid("c1").expect("get").expect("row");
        assert_eq!(row.state, State::Queued, "{row:?}");
        assert_eq!(row.failed_rounds, 2);
        assert!(
            q.claim_due(6).expect("claim").is_none(),
            "the urgency went with the answered round"
        );
        // A CID with only blocking job ids fails for good, as before.
        q.submit(&sub("c2", "block-C", false), 10).expect("submit");
        q.claim_due(10).expect("claim").expect("due");
        failed_round(&q, "c2", 11);
        assert_eq!(
            q.by_cid("c2").expect("get").expect("row").state,
            State::Failed
        );
    }

    #[test]
    fn cancelling_one_job_id_leaves_the_pin_to_the_others() {
        let (_d, q) = open();
        q.submit(&sub("c1", "a", true), 1).expect("submit");
        q.submit(&sub("c1", "b", false), 2).expect("submit");
        match q.cancel("b", 3).expect("cancel") {
            Cancelled::Detached(row) => {
                assert_eq!(row.state, State::Queued);
                assert_eq!(row.job_ids, ["a"]);
                assert!(row.lazy);
            }
            other => panic!("expected detach, got {other:?}"),
        }
        assert!(q.by_job("b").expect("get").is_none());
        match q.cancel("a", 4).expect("cancel") {
            Cancelled::Pin(row) => assert_eq!(row.state, State::Failed),
            other => panic!("expected the pin cancelled, got {other:?}"),
        }
        assert!(matches!(
            q.cancel("a", 5).expect("cancel"),
            Cancelled::AlreadyEnded(_)
        ));
        assert_eq!(q.cancel("nope", 6).expect("cancel"), Cancelled::NoSuchJob);
    }

    #[test]
    fn a_queue_from_before_the_new_columns_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE pins (cid TEXT PRIMARY KEY, state TEXT NOT NULL, lazy INTEGER NOT NULL,
                   size_bytes INTEGER NOT NULL, failed_rounds INTEGER NOT NULL DEFAULT 0,
                   next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
                   updated_at INTEGER NOT NULL, confirmed TEXT NOT NULL DEFAULT '[]', reason TEXT,
                   decided_by TEXT) STRICT;
                 CREATE TABLE jobs (job_id TEXT PRIMARY KEY, cid TEXT NOT NULL REFERENCES pins(cid)
                   ON DELETE CASCADE, created_at INTEGER NOT NULL) STRICT;",
            )
            .expect("old schema");
            conn.execute(
                "INSERT INTO pins VALUES ('c1', ?1, 1, 0, 0, 1, 1, 1, '[]', NULL, NULL)",
                [State::Queued],
            )
            .expect("old pin");
            conn.execute_batch("INSERT INTO jobs VALUES ('old-lazy', 'c1', 1);")
                .expect("old job");
        }
        let q = Queue::open(&path).expect("migrates");
        // The old lazy pin stays lazy when a blocking caller joins it.
        let row = q
            .submit(&sub("c1", "new-blocking", false), 2)
            .expect("submit");
        assert!(row.lazy, "{row:?}");
    }

    /// Submissions from many threads are group-committed; a conflict in a group fails alone.
    #[test]
    fn concurrent_submissions_are_committed_together_and_fail_alone() {
        let (_d, q) = open();
        q.submit(&sub("taken", "dup", true), 1).expect("submit");
        let q = std::sync::Arc::new(q);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let q = std::sync::Arc::clone(&q);
                std::thread::spawn(move || {
                    let mut conflicts = 0;
                    for i in 0..50 {
                        let job = if t == 3 && i == 7 {
                            "dup".to_string()
                        } else {
                            format!("j{t}-{i}")
                        };
                        match q.submit(&sub(&format!("c{t}-{i}"), &job, true), 2) {
                            Ok(_) => {}
                            Err(QueueError::JobConflict { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    conflicts
                })
            })
            .collect();
        // Meanwhile the worker's connection claims and finishes pins: two writers on one
        // database, which must wait for each other, never fail with "database is locked".
        let worker = {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || {
                let mut finished = 0;
                for _ in 0..2_000 {
                    match q.claim_due(10).expect("claim never fails") {
                        Some(row) => {
                            let done = Finish::Pinned {
                                confirmed: vec!["primary".into()],
                                decided_by: "tank-mode".into(),
                            };
                            q.finish(&row.cid, &done, 11).expect("finish never fails");
                            finished += 1;
                        }
                        None => std::thread::yield_now(),
                    }
                    if finished >= 100 {
                        break;
                    }
                }
                finished
            })
        };
        let conflicts: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert!(worker.join().expect("worker") > 0);
        assert_eq!(conflicts, 1);
        assert_eq!(q.list(None, 1_000).expect("list").len(), 400);
    }

    /// An acknowledged submission is fsynced: power loss does not take it back.
    #[test]
    fn commits_are_fully_synchronous() {
        let (_d, q) = open();
        let level: i64 = q
            .with(|c| Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?))
            .expect("pragma");
        assert_eq!(level, 2, "FULL");
    }

    /// Issue 12, item 7: CIDv0 and CIDv1 of the same content are one pin; each job id keeps the
    /// form its caller sent.
    #[test]
    fn cidv0_and_cidv1_of_the_same_content_are_one_pin() {
        let (_d, q) = open();
        let v0 = "QmcRD4wkPPi6dig81r5sLj9Zm1gDCL4zgpEj9CfuRrGbzF";
        let v1 = cid::Cid::try_from(v0)
            .and_then(|c| c.into_v1())
            .expect("v1")
            .to_string();
        q.submit(&sub(v0, "enc-v0", true), 1).expect("submit");
        let row = q.submit(&sub(&v1, "enc-v1", true), 2).expect("submit");
        assert_eq!(row.cid, v0, "pinned as the first caller wrote it");
        assert_eq!(row.job_ids, ["enc-v0", "enc-v1"]);
        assert_eq!(q.list(None, 10).expect("list").len(), 1);
        assert_eq!(
            q.by_cid(&v1).expect("get").map(|r| r.cid).as_deref(),
            Some(v0)
        );
        let seen = q.by_job("enc-v1").expect("get").expect("row");
        assert_eq!(seen.requested_cid.as_deref(), Some(v1.as_str()));
        assert_eq!(
            q.by_job("enc-v0").expect("get").expect("row").requested_cid,
            None
        );
    }

    /// Writes `sql` to the queue's database behind the queue's back.
    fn raw_sql(q: &Queue, sql: &str) {
        q.with(|c| Ok(c.execute_batch(sql)?)).expect("raw SQL");
    }

    #[test]
    fn an_unknown_state_is_an_error_naming_the_row() {
        let (_d, q) = open();
        q.submit(&sub("c1", "j1", true), 1).expect("submit");
        raw_sql(&q, "UPDATE pins SET state = 'done' WHERE cid = 'c1'");
        let err = q.by_job("j1").unwrap_err();
        assert!(matches!(err, QueueError::Corrupt { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "queue row of CID c1 is unreadable: column state holds 'done': not a queue state \
             (queued, pinning, pinned, failed, local-fallback)"
        );
        let listed = q.list(None, 10).unwrap_err().to_string();
        assert!(
            listed.contains("CID c1") && listed.contains("'done'"),
            "{listed}"
        );
    }

    #[test]
    fn bad_confirmed_json_is_an_error_naming_the_row() {
        let (_d, q) = open();
        q.submit(&sub("c1", "j1", true), 1).expect("submit");
        raw_sql(&q, "UPDATE pins SET confirmed = 'primary' WHERE cid = 'c1'");
        let err = q.by_cid("c1").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "queue row of CID c1 is unreadable: column confirmed holds 'primary': \
                 not a JSON list of node names: "
            ),
            "{err}"
        );
        // A submission onto the corrupt pin fails the same way instead of guessing.
        let err = q.submit(&sub("c1", "j2", true), 2).unwrap_err().to_string();
        assert!(err.contains("column confirmed holds 'primary'"), "{err}");
    }

    /// `cancel` reads the pin inside its write transaction: a job id attached while the cancel
    /// waits for the write lock is seen, so the pin is detached from, not cancelled under it.
    #[test]
    fn cancel_sees_a_job_id_attached_while_it_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue.db");
        let q = std::sync::Arc::new(Queue::open(&path).expect("open"));
        q.submit(&sub("c1", "a", true), 1).expect("submit");
        // Another writer holds the lock (as the group-commit writer would for a submission).
        let other = connect(&path).expect("connect");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let cancel = {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || q.cancel("a", 3))
        };
        // Lets the cancel reach its wait; it decides correctly whenever it gets there.
        std::thread::sleep(std::time::Duration::from_millis(200));
        other
            .execute_batch(
                "INSERT INTO jobs (job_id, cid, created_at, lazy, sent_cid)
                 VALUES ('b', 'c1', 2, 0, 'c1');
                 COMMIT;",
            )
            .expect("attach b");
        match cancel.join().expect("thread").expect("cancel") {
            Cancelled::Detached(row) => {
                assert_eq!(row.state, State::Queued);
                assert_eq!(row.job_ids, ["b"]);
            }
            other => panic!("expected a detach, got {other:?}"),
        }
    }

    #[test]
    fn counts_and_retention() {
        let (_d, q) = open();
        q.submit(&sub("c1", "j1", true), 1).expect("submit");
        q.submit(&sub("c2", "j2", true), 1).expect("submit");
        q.claim_due(2).expect("claim");
        let done = Finish::Pinned {
            confirmed: vec!["primary".into()],
            decided_by: "tank-mode".into(),
        };
        q.finish("c1", &done, 3).expect("finish");
        let counts = q.counts().expect("counts");
        assert!(counts.contains(&(State::Pinned, 1)) && counts.contains(&(State::Queued, 1)));
        assert_eq!(q.prune_finished(10).expect("prune"), 1);
        assert!(
            q.by_job("j1").expect("get").is_none(),
            "job ids go with the pin"
        );
        assert!(q.by_job("j2").expect("get").is_some());
    }
}
