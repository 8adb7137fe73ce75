//! The group-commit writer: one thread commits every submission waiting in one fsynced
//! transaction.

use super::requests::{NewRequest, RequestRow, add_in};
use super::{PinRow, QueueError, Submission, submit_in};
use rusqlite::{Connection, TransactionBehavior};

/// What a submission writes: a `/v1` job, or a Pinning Services API request.
#[derive(Debug, Clone)]
pub(super) enum Write {
    Job(Submission),
    Request(NewRequest),
}

/// What it wrote.
#[derive(Debug, Clone)]
pub(super) enum Written {
    Pin(PinRow),
    Request(RequestRow),
}

/// A submission waiting for the writer, and where to send its result.
pub(super) struct Request {
    pub(super) write: Write,
    pub(super) now_ms: i64,
    pub(super) reply: std::sync::mpsc::SyncSender<Result<Written, QueueError>>,
}

/// Submissions committed together at most.
const MAX_GROUP: usize = 512;

/// The group-commit writer: takes a submission, then every one waiting behind it (up to
/// [`MAX_GROUP`]), commits them in one transaction and answers each. It ends with the queue.
pub(super) fn spawn_writer(
    mut conn: Connection,
    notify: std::sync::Arc<std::sync::RwLock<super::outbox::Target>>,
) -> Result<std::sync::mpsc::Sender<Request>, QueueError> {
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
                let target = super::outbox::Target::current(&notify);
                let results = commit_group(&mut conn, &group, &target);
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
fn commit_group(
    conn: &mut Connection,
    group: &[Request],
    target: &super::outbox::Target,
) -> Vec<Result<Written, QueueError>> {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return group.iter().map(|_| Err(QueueError::from_db(&e))).collect(),
    };
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        let result = tx.savepoint().map_err(QueueError::Db).and_then(|sp| {
            let written = match &request.write {
                Write::Job(s) => Written::Pin(submit_in(&sp, s, request.now_ms, target)?),
                Write::Request(r) => Written::Request(add_in(&sp, r, request.now_ms, target)?),
            };
            sp.commit()?;
            Ok(written)
        });
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => group.iter().map(|_| Err(QueueError::from_db(&e))).collect(),
    }
}
