//! Reading pins: a `pins` row decoded (or named as corrupt), with its job ids.

use super::{PinRow, QueueError};
use rusqlite::types::{FromSql, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row};

/// The `pins` columns [`read_row`] decodes, in its order.
pub(super) const COLUMNS: &str = "cid, state, lazy, size_bytes, failed_rounds, next_attempt_at, created_at, updated_at, \
     confirmed, reason, decided_by";

/// The pin a job id points at, with the CID as that job id's caller sent it.
pub(super) fn by_job_in(conn: &Connection, job_id: &str) -> Result<Option<PinRow>, QueueError> {
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

pub(super) fn fetch(conn: &Connection, cid: &str) -> Result<Option<PinRow>, QueueError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM pins WHERE cid = ?1"))?;
    let mut rows = stmt.query([cid])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let mut row = read_row(r)?;
    row.job_ids = job_ids(conn, cid)?;
    Ok(Some(row))
}

pub(super) fn job_ids(conn: &Connection, cid: &str) -> Result<Vec<String>, QueueError> {
    let mut stmt =
        conn.prepare_cached("SELECT job_id FROM jobs WHERE cid = ?1 ORDER BY created_at, job_id")?;
    let ids = stmt
        .query_map([cid], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// A `pins` row (in [`COLUMNS`] order), without its job ids. A column that does not decode
/// is [`QueueError::Corrupt`], naming the row, the column and what it holds.
pub(super) fn read_row(r: &Row<'_>) -> Result<PinRow, QueueError> {
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
