//! The queue's tables, how a connection to them is opened, and the columns added since the
//! first release.

use super::QueueError;
use rusqlite::{Connection, params};
use std::path::Path;

pub(super) const SCHEMA: &str = "
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
    key             TEXT,
    -- A local-fallback end's journal line (JSON), told to job ids that attach later.
    journal         TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS pins_due ON pins(state, lazy, next_attempt_at);
CREATE TABLE IF NOT EXISTS jobs (
    job_id     TEXT PRIMARY KEY,
    cid        TEXT NOT NULL REFERENCES pins(cid) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    lazy       INTEGER NOT NULL DEFAULT 0,
    sent_cid   TEXT,
    notify_url TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS jobs_cid ON jobs(cid);
-- Pinning Services API requests: one job each (see queue/requests.rs).
CREATE TABLE IF NOT EXISTS requests (
    requestid TEXT PRIMARY KEY,
    user      TEXT NOT NULL,
    job_id    TEXT NOT NULL UNIQUE REFERENCES jobs(job_id) ON DELETE CASCADE,
    cid       TEXT NOT NULL,
    key       TEXT NOT NULL,
    sent_cid  TEXT NOT NULL,
    name      TEXT,
    origins   TEXT NOT NULL DEFAULT '[]',
    meta      TEXT NOT NULL DEFAULT '{}',
    created   INTEGER NOT NULL UNIQUE,
    state     TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS requests_user_state ON requests(user, state, created);
CREATE INDEX IF NOT EXISTS requests_user_created ON requests(user, created);
CREATE INDEX IF NOT EXISTS requests_user_key ON requests(user, key);
CREATE INDEX IF NOT EXISTS requests_user_name ON requests(user, name, created);
CREATE INDEX IF NOT EXISTS requests_cid ON requests(cid);
CREATE TRIGGER IF NOT EXISTS requests_follow_pin AFTER UPDATE OF state ON pins
BEGIN
    UPDATE requests SET state = NEW.state WHERE cid = NEW.cid;
END;
-- Webhook events, written with the round's end they report (see queue/outbox.rs). No
-- foreign key: an event outlives a pruned or cancelled job until it is delivered.
CREATE TABLE IF NOT EXISTS outbox (
    event_id        TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    cid             TEXT NOT NULL,
    kind            TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    expired         INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(delivered_at, expired, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_cid ON outbox(cid);
CREATE INDEX IF NOT EXISTS outbox_job ON outbox(job_id, seq);
-- Content a deleted request leaves pinned on nodes, to unpin (unless wanted again).
CREATE TABLE IF NOT EXISTS unpins (
    key        TEXT PRIMARY KEY,
    cid        TEXT NOT NULL,
    nodes      TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
";

pub(super) fn connect(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Room for every statement a round's path runs (claim, origins, end, reads): none is
    // parsed again per round.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Columns added after the first release, for queues created before them.
pub(super) fn migrate_columns(conn: &Connection) -> rusqlite::Result<()> {
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
            params![cid, crate::cid_identity::key(&cid)],
        )?;
    }
    conn.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS pins_key ON pins(key);")?;
    if !has("jobs", "notify_url")? {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN notify_url TEXT;")?;
    }
    if !has("pins", "journal")? {
        conn.execute_batch("ALTER TABLE pins ADD COLUMN journal TEXT;")?;
    }
    if !has("jobs", "lazy")? {
        // Until now a pin's laziness was the pin's own flag: give it to each of its job ids.
        conn.execute_batch(
            "ALTER TABLE jobs ADD COLUMN lazy INTEGER NOT NULL DEFAULT 0;
             UPDATE jobs SET lazy = (SELECT lazy FROM pins WHERE pins.cid = jobs.cid);",
        )?;
    }
    Ok(())
}
