//! The webhook outbox: events written in the transaction that records a job's end (so an
//! event exists exactly when the end does, kill -9 or not), delivered later by the daemon's
//! notifier. A claimed event is leased (its `next_attempt_at` moves past the attempt's time
//! limit), so a crash mid-delivery leaves it due again, never lost; a delivery whose answer
//! was lost is repeated with the same id, and receivers de-duplicate by it.

use super::{Finish, QueueError, State};
use crate::notify::{Event, EventType, rfc3339_ms};
use rusqlite::{Connection, OptionalExtension, params};

/// Where events go, as the daemon configured it: nowhere while `[notify]` is off (a job's
/// stored URL included), else the job's own URL or `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub on: bool,
    pub default: Option<String>,
}

impl Target {
    /// The target as set now (a poisoned lock reads as off).
    pub(super) fn current(shared: &std::sync::RwLock<Target>) -> Target {
        shared.read().map(|t| t.clone()).unwrap_or_default()
    }
}

/// One event waiting to be delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub event_id: String,
    pub url: String,
    /// The exact JSON body: signed and sent as is at every attempt.
    pub body: String,
    pub attempts: u32,
    pub created_at_ms: i64,
}

/// Events by delivery state (for a pin, or the whole outbox).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxCounts {
    /// Not yet answered 2xx, still retried.
    pub pending: u64,
    pub delivered: u64,
    /// Not delivered within `notify.max_age_secs`: no longer retried, kept to be seen.
    pub expired: u64,
}

/// A job id that wants events, as the end of its pin's round sees it.
struct Subscriber {
    job_id: String,
    sent_cid: String,
    created_at: i64,
    url: String,
}

/// The job ids of `cid`'s pin that want events (`only`: just that job id), with the URL each
/// goes to: its own, else the default. A cancelled job's URL is '' (it wants no more).
fn subscribers(
    tx: &Connection,
    cid: &str,
    only: Option<&str>,
    target: &Target,
) -> Result<Vec<Subscriber>, QueueError> {
    if !target.on {
        return Ok(Vec::new());
    }
    let default = target.default.as_deref();
    let mut stmt = tx.prepare_cached(
        "SELECT job_id, COALESCE(sent_cid, cid), created_at, COALESCE(notify_url, ?3)
         FROM jobs WHERE cid = ?1 AND (?2 IS NULL OR job_id = ?2)
         ORDER BY created_at, job_id",
    )?;
    let rows = stmt.query_map(params![cid, only, default], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (job_id, sent_cid, created_at, url) = row?;
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            out.push(Subscriber {
                job_id,
                sent_cid,
                created_at,
                url,
            });
        }
    }
    Ok(out)
}

/// Stores `event` for `url`, numbered after the job's earlier events (`seq`).
fn insert(
    tx: &Connection,
    pin_cid: &str,
    url: &str,
    mut event: Event,
    now_ms: i64,
) -> Result<(), QueueError> {
    event.seq = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox WHERE job_id = ?1")?
        .query_row([&event.job_id], |r| r.get(0))?;
    let body = serde_json::to_string(&event).map_err(|e| QueueError::Commit(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO outbox (event_id, job_id, seq, cid, kind, url, body, created_at,
           next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![
        event.id,
        event.job_id,
        event.seq,
        pin_cid,
        event.kind.as_str(),
        url,
        body,
        now_ms
    ])?;
    Ok(())
}

/// The events of a round's end, inside the transaction that recorded it (`tx`, after the pin's
/// row was updated). Returns how many were written.
pub(super) fn record_end(
    tx: &Connection,
    cid: &str,
    finish: &Finish,
    now_ms: i64,
    target: &Target,
) -> Result<usize, QueueError> {
    let subs = subscribers(tx, cid, None, target)?;
    if subs.is_empty() {
        return Ok(0);
    }
    // The pin as the end left it: a failed lazy pin is queued again.
    let (state, next_at, failed_rounds): (State, i64, u32) = tx.query_row(
        "SELECT state, next_attempt_at, failed_rounds FROM pins WHERE cid = ?1",
        [cid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    for sub in &subs {
        let mut event = match finish {
            Finish::Pinned { .. } => {
                Event::new(EventType::Pinned, &sub.job_id, &sub.sent_cid, now_ms)
            }
            Finish::LocalFallback { .. } => {
                Event::new(EventType::LocalFallback, &sub.job_id, &sub.sent_cid, now_ms)
            }
            Finish::Failed { .. } => {
                Event::new(EventType::Failed, &sub.job_id, &sub.sent_cid, now_ms)
            }
        };
        match finish {
            Finish::Pinned {
                confirmed,
                decided_by,
            } => {
                event.nodes = confirmed.clone();
                event.decided_by = Some(decided_by.clone());
                event.duration_ms = Some((now_ms - sub.created_at).max(0) as u64);
            }
            Finish::LocalFallback {
                confirmed,
                decided_by,
                journal,
            } => {
                event.nodes = confirmed.clone();
                event.decided_by = Some(decided_by.clone());
                event.duration_ms = Some((now_ms - sub.created_at).max(0) as u64);
                event.journal = journal.clone();
            }
            Finish::Failed {
                reason, decided_by, ..
            } => {
                let again = state == State::Queued;
                event.reason = Some(reason.clone());
                event.decided_by = Some(decided_by.clone());
                event.will_retry = Some(again);
                event.next_attempt_at = again.then(|| rfc3339_ms(next_at));
                event.failed_rounds = Some(failed_rounds);
            }
        }
        insert(tx, cid, &sub.url, event, now_ms)?;
    }
    Ok(subs.len())
}

/// The event of a job id just attached to `pin` (as it was before the submission), inside the
/// submission's transaction. Only a pin that had ended (`pinned`, `local-fallback`) has one:
/// no round will end for this job, so its end is now.
pub(super) fn record_attached(
    tx: &Connection,
    pin: &super::PinRow,
    job_id: &str,
    now_ms: i64,
    target: &Target,
) -> Result<(), QueueError> {
    let kind = match pin.state {
        State::Pinned => EventType::Pinned,
        State::LocalFallback => EventType::LocalFallback,
        _ => return Ok(()),
    };
    for sub in subscribers(tx, &pin.cid, Some(job_id), target)? {
        let mut event = Event::new(kind, &sub.job_id, &sub.sent_cid, now_ms);
        event.nodes = pin.confirmed.clone();
        event.decided_by = pin.decided_by.clone();
        event.duration_ms = Some(0);
        if kind == EventType::LocalFallback {
            event.journal = stored_journal(tx, &pin.cid)?;
        }
        insert(tx, &pin.cid, &sub.url, event, now_ms)?;
    }
    Ok(())
}

/// The journal line a pin's local-fallback end stored (none for a pin that ended before
/// the column existed, or whose line failed to parse: the event then goes without it).
fn stored_journal(tx: &Connection, cid: &str) -> Result<Option<crate::journal::Entry>, QueueError> {
    let text: Option<String> =
        tx.query_row("SELECT journal FROM pins WHERE cid = ?1", [cid], |r| {
            r.get(0)
        })?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// A `cancelled` event for `job_id` (before its row is detached), inside the cancel's
/// transaction.
pub(super) fn record_cancel(
    tx: &Connection,
    cid: &str,
    job_id: &str,
    reason: &str,
    now_ms: i64,
    target: &Target,
) -> Result<(), QueueError> {
    for sub in subscribers(tx, cid, Some(job_id), target)? {
        let mut event = Event::new(EventType::Cancelled, &sub.job_id, &sub.sent_cid, now_ms);
        event.reason = Some(reason.to_string());
        insert(tx, cid, &sub.url, event, now_ms)?;
    }
    // Its last word: should the pin be wanted again by others, this job id hears no more.
    tx.execute(
        "UPDATE jobs SET notify_url = '' WHERE job_id = ?1",
        [job_id],
    )?;
    Ok(())
}

/// Takes up to `limit` due events (oldest due first) and leases them until
/// `now_ms + lease_ms`, in one transaction.
pub(super) fn claim(
    conn: &mut Connection,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Outgoing>, QueueError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = {
        let mut stmt = tx.prepare_cached(
            "SELECT event_id, url, body, attempts, created_at FROM outbox
             WHERE delivered_at IS NULL AND expired = 0 AND next_attempt_at <= ?1
             ORDER BY next_attempt_at LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
            Ok(Outgoing {
                event_id: r.get(0)?,
                url: r.get(1)?,
                body: r.get(2)?,
                attempts: r.get(3)?,
                created_at_ms: r.get(4)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    {
        let mut lease =
            tx.prepare_cached("UPDATE outbox SET next_attempt_at = ?2 WHERE event_id = ?1")?;
        for e in &found {
            lease.execute(params![e.event_id, now_ms + lease_ms])?;
        }
    }
    tx.commit()?;
    Ok(found)
}

/// When the next undelivered event becomes due, if any.
pub(super) fn next_due(conn: &Connection) -> Result<Option<i64>, QueueError> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt_at) FROM outbox WHERE delivered_at IS NULL AND expired = 0",
        [],
        |r| r.get(0),
    )?)
}

/// Marks `event_ids` delivered, in one transaction.
pub(super) fn delivered(
    conn: &mut Connection,
    event_ids: &[String],
    now_ms: i64,
) -> Result<(), QueueError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut mark = tx.prepare_cached(
            "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL
             WHERE event_id = ?1",
        )?;
        for id in event_ids {
            mark.execute(params![id, now_ms])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// A failed attempt: due again at `retry_at_ms`, or expired once the event is older than
/// `max_age_ms` (kept, no longer retried). Returns whether it expired.
pub(super) fn attempt_failed(
    conn: &Connection,
    event_id: &str,
    error: &str,
    now_ms: i64,
    retry_at_ms: i64,
    max_age_ms: i64,
) -> Result<bool, QueueError> {
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
         expired = CASE WHEN ?4 - created_at >= ?5 THEN 1 ELSE 0 END
         WHERE event_id = ?1",
        params![event_id, error, retry_at_ms, now_ms, max_age_ms],
    )?;
    Ok(conn.query_row(
        "SELECT expired FROM outbox WHERE event_id = ?1",
        [event_id],
        |r| r.get::<_, bool>(0),
    )?)
}

/// Counts by delivery state, of one pin's events or (`cid` `None`) of all; each count reads
/// an index (`outbox_cid`, or `outbox_due` for all), never the whole table.
pub(super) fn counts(conn: &Connection, cid: Option<&str>) -> Result<OutboxCounts, QueueError> {
    let read = |r: &rusqlite::Row<'_>| {
        Ok(OutboxCounts {
            pending: r.get::<_, i64>(0)?.max(0) as u64,
            delivered: r.get::<_, i64>(1)?.max(0) as u64,
            expired: r.get::<_, i64>(2)?.max(0) as u64,
        })
    };
    Ok(match cid {
        Some(cid) => conn
            .prepare_cached(
                "SELECT COALESCE(SUM(delivered_at IS NULL AND expired = 0), 0),
                        COALESCE(SUM(delivered_at IS NOT NULL), 0),
                        COALESCE(SUM(delivered_at IS NULL AND expired = 1), 0)
                 FROM outbox WHERE cid = ?1",
            )?
            .query_row([cid], read)?,
        None => conn
            .prepare_cached(
                "SELECT (SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND expired = 0),
                        (SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL),
                        (SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND expired = 1)",
            )?
            .query_row([], read)?,
    })
}

/// The last delivery error of one pin's undelivered events, if any.
pub(super) fn last_error(conn: &Connection, cid: &str) -> Result<Option<String>, QueueError> {
    Ok(conn
        .query_row(
            "SELECT last_error FROM outbox WHERE cid = ?1 AND delivered_at IS NULL
             AND last_error IS NOT NULL ORDER BY next_attempt_at DESC LIMIT 1",
            [cid],
            |r| r.get(0),
        )
        .optional()?)
}

/// Forgets delivered events older than `cutoff_ms` (undelivered ones are kept).
pub(super) fn prune_delivered(conn: &Connection, cutoff_ms: i64) -> Result<usize, QueueError> {
    Ok(conn.execute(
        "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?1",
        [cutoff_ms],
    )?)
}
