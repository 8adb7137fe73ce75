//! The queue worker: claims due pins with bounded concurrency and runs one round each.
//!
//! A round's end is written to the queue only after its effects are durable: the journal line
//! of a local fallback is appended (and fsynced) before the pin is marked `local-fallback`, so
//! a crash in between re-runs the round rather than losing the line.

use super::{Daemon, now_ms};
use crate::executor::{RoundEnd, RoundResult, run_round_shadowed};
use crate::journal::{ContentKind, Entry};
use crate::kubo::ObjectKind;
use crate::policy::contract::Job;
use crate::queue::{Finish, PinRow};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Origins dialled before a pin at most (as IPFS Cluster does).
const MAX_ORIGINS: usize = 10;

/// Runs until `shutdown` resolves; rounds still in flight are aborted (and resumed on restart,
/// because their pins are still `pinning` in the queue).
/// Rounds are spawned on `rounds` (the daemon's runtime for them, apart from the API's).
pub async fn run(
    daemon: Arc<Daemon>,
    rounds: tokio::runtime::Handle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(daemon.config.daemon.concurrent_pins));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        while tasks.try_join_next().is_some() {}
        // One trip to the blocking pool: the next due pin, or (none due) when one will be.
        let next = daemon
            .queue
            .run(|q| match q.claim_due(now_ms())? {
                Some(row) => Ok(Ok(row)),
                None => Ok(Err(q.next_due_ms().ok().flatten())),
            })
            .await;
        match next {
            Ok(Ok(row)) => {
                let d = Arc::clone(&daemon);
                let cid = row.cid.clone();
                let handle = tasks.spawn_on(
                    async move {
                        round(&d, row).await;
                        drop(permit);
                    },
                    &rounds,
                );
                if let Ok(mut running) = daemon.running.lock() {
                    running.insert(cid, handle);
                }
            }
            Ok(Err(due)) => {
                drop(permit);
                let wait = match due {
                    Some(at) => (at - now_ms()).clamp(5, 1_000) as u64,
                    None => 1_000,
                };
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    () = daemon.wake.notified() => {}
                    () = &mut shutdown => break,
                }
            }
            Err(e) => {
                drop(permit);
                tracing::error!("queue: {e}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn round(daemon: &Daemon, row: PinRow) {
    let (policy, fallback) = daemon.policy.current();
    let job = Job {
        cid: row.cid.clone(),
        job_id: row.job_ids.first().cloned().unwrap_or_default(),
        size_bytes: row.size_bytes,
        lazy: row.lazy,
        failed_rounds: row.failed_rounds,
    };
    // A deleted request's unpin of this content, if one is under way, ends first.
    daemon
        .unpinning
        .wait_until_clear(&crate::cid_identity::key(&job.cid))
        .await;
    let cid = job.cid.clone();
    let origins = match daemon
        .queue
        .run(move |q| q.origins(&cid, MAX_ORIGINS))
        .await
    {
        Ok(origins) => origins,
        Err(e) => {
            tracing::warn!(cid = %job.cid, "cannot read the requests' origins: {e}");
            Vec::new()
        }
    };
    let began = now_ms();
    let mut shadow = daemon.shadow.load_full().map(|s| s.round());
    let result = run_round_shadowed(
        &policy,
        &fallback,
        &job,
        &origins,
        &daemon.topology,
        &daemon.limits,
        shadow.as_mut(),
    )
    .await;
    // Handed to the records' own thread (through the shadow's, which adds its answers):
    // never waited for.
    let kept = crate::rounds::RoundRecord::new("daemon", began, &job, &policy, &fallback, &result);
    match shadow {
        Some(link) => {
            if let Err(back) = link.finish(kept) {
                daemon.rounds.record(*back);
            }
        }
        None => daemon.rounds.record(kept),
    }
    // Only what the round as a whole did: its node actions (pin attempts, verifications,
    // breakers) were counted and signalled as each ended, by `observe::Live`.
    let signals = daemon
        .metrics
        .observe_round(&result, daemon.primary.as_deref());
    daemon.alerts.record(&signals, std::time::Instant::now());
    let finish = match result.status {
        RoundEnd::Pinned => Finish::Pinned {
            confirmed: result.confirmed.clone(),
            decided_by: result.decided_by.clone(),
        },
        RoundEnd::LocalFallback => match journal(daemon, &job, &result).await {
            Ok(entry) => Finish::LocalFallback {
                confirmed: result.confirmed.clone(),
                decided_by: result.decided_by.clone(),
                journal: Some(entry),
            },
            Err(e) => failed(
                daemon,
                &job,
                format!("local fallback journal: {e}"),
                &result,
            ),
        },
        RoundEnd::Failed => {
            let reason = result.reason.clone().unwrap_or_else(|| "failed".into());
            failed(daemon, &job, reason, &result)
        }
    };
    let after = record(daemon, &job, &finish).await;
    // The end's events were written with it: the notifier takes them from here.
    daemon.notifier.wake.notify_one();
    if let Ok(mut running) = daemon.running.lock() {
        running.remove(&job.cid);
    }
    if let Some(row) = after {
        tracing::info!(cid = %row.cid, job_id = %job.job_id, state = %row.state, "round ended");
        let _ = daemon.events.send(row);
    }
}

/// Records the end of a round, retrying until the queue takes it (a busy or full disk): a
/// round left `pinning` would wait for a restart, and a journaled local fallback must be
/// recorded. The delay grows to 10 s; a daemon stopping meanwhile re-queues it on start.
/// Returns the pin as the end left it.
async fn record(daemon: &Daemon, job: &Job, finish: &Finish) -> Option<PinRow> {
    let mut delay = Duration::from_millis(100);
    loop {
        let (cid, ended) = (job.cid.clone(), finish.clone());
        match daemon
            .queue
            .run(move |q| q.finish(&cid, &ended, now_ms()))
            .await
        {
            Ok(after) => return after,
            Err(e) => tracing::error!(
                cid = %job.cid,
                job_id = %job.job_id,
                "cannot record the end of a round ({e}); retrying in {} ms",
                delay.as_millis()
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// A failed round: queued again after a growing delay while any job id on the pin is lazy
/// (decided by the queue when it records it), else the pin has failed.
fn failed(daemon: &Daemon, job: &Job, reason: String, result: &RoundResult) -> Finish {
    let retry_at_ms =
        Some(now_ms() + daemon.config.daemon.retry_delay_ms(job.failed_rounds) as i64);
    tracing::warn!(cid = %job.cid, job_id = %job.job_id, lazy = job.lazy, "round failed: {reason}");
    Finish::Failed {
        reason,
        decided_by: result.decided_by.clone(),
        retry_at_ms,
    }
}

/// Appends the seed's journal line for a local fallback (fsynced before returning).
async fn journal(daemon: &Daemon, job: &Job, result: &RoundResult) -> anyhow::Result<Entry> {
    // The seed's `type`, asked of the node that now holds the content.
    let kind = match &daemon.local {
        Some(local) => match local.object_type(&job.cid).await {
            Ok(ObjectKind::File) => ContentKind::File,
            Ok(_) => ContentKind::Directory,
            Err(e) => {
                tracing::warn!(cid = %job.cid, job_id = %job.job_id, "cannot ask the local node for the type: {e}; journaling as directory");
                ContentKind::Directory
            }
        },
        None => ContentKind::Directory,
    };
    let entry = Entry::new(
        &job.cid,
        &job.job_id,
        job.size_bytes,
        kind,
        job.failed_rounds + 1,
        &daemon.config.node_name,
        std::time::SystemTime::now(),
    );
    // The write and fsync run on the blocking pool, not on a runtime worker thread.
    Arc::clone(&daemon.journal)
        .append_async(entry.clone())
        .await?;
    tracing::warn!(
        cid = %job.cid,
        job_id = %job.job_id,
        node = %result.confirmed.join(","),
        "LAZY PIN FALLBACK: pinned on the local node after {} failed lazy rounds; journaled for migration",
        job.failed_rounds + 1
    );
    Ok(entry)
}
