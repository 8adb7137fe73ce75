//! Unpins what deleted PSA requests leave behind: the queue records each as a durable
//! `unpins` row in the delete's own transaction; this loop unpins it from the nodes that had
//! confirmed it, unless the content is wanted again meanwhile.
//!
//! The race with a new round of the same content is closed in two places: a round's claim
//! drops a pending unpin of its content (in the claim's transaction), and a round waits for
//! an unpin already past that check ([`Unpinning`]) before its first node call.

use super::Daemon;
use crate::Outcome;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often pending unpins are retried when nothing wakes the loop.
const RETRY_EVERY: Duration = Duration::from_secs(30);

/// Content keys being unpinned right now.
#[derive(Default)]
pub struct Unpinning {
    keys: Mutex<HashSet<String>>,
    cleared: Notify,
    /// Wakes the loop: a delete recorded an unpin.
    pub wake: Notify,
}

impl Unpinning {
    fn hold(&self, key: &str) -> bool {
        self.keys
            .lock()
            .map(|mut k| k.insert(key.to_string()))
            .unwrap_or(false)
    }

    fn release(&self, key: &str) {
        if let Ok(mut k) = self.keys.lock() {
            k.remove(key);
        }
        self.cleared.notify_waiters();
    }

    fn holds(&self, key: &str) -> bool {
        self.keys.lock().map(|k| k.contains(key)).unwrap_or(false)
    }

    /// Returns once no unpin of `key` is under way.
    pub async fn wait_until_clear(&self, key: &str) {
        loop {
            let cleared = self.cleared.notified();
            if !self.holds(key) {
                return;
            }
            // Bounded: the notification could come between the check and the wait.
            let _ = tokio::time::timeout(Duration::from_millis(100), cleared).await;
        }
    }
}

/// Runs until `stop` says so.
pub async fn run(daemon: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let pending = daemon.queue.run(|q| q.unpins(100)).await;
        match pending {
            Ok(unpins) => {
                for unpin in unpins {
                    unpin_one(&daemon, unpin).await;
                }
            }
            Err(e) => tracing::error!("unpins: {e}"),
        }
        tokio::select! {
            () = daemon.unpinning.wake.notified() => {}
            () = tokio::time::sleep(RETRY_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn unpin_one(daemon: &Daemon, unpin: crate::queue::requests::Unpin) {
    let key = unpin.key.clone();
    if !daemon.unpinning.hold(&key) {
        return;
    }
    let k = key.clone();
    let taken = daemon.queue.run(move |q| q.take_unpin(&k)).await;
    if matches!(taken, Ok(true)) {
        let mut left = Vec::new();
        for name in &unpin.nodes {
            let Some(node) = daemon.topology.client(name) else {
                tracing::warn!(cid = %unpin.cid, node = %name, "unpin: no such node any more; skipped");
                continue;
            };
            let call = daemon.limits.call_timeout;
            let outcome = tokio::time::timeout(call, node.unpin(&unpin.cid))
                .await
                .unwrap_or(Outcome::Timeout);
            match outcome {
                Outcome::Ok => {
                    tracing::info!(cid = %unpin.cid, node = %name, "unpinned (its last PSA request was deleted)")
                }
                other => {
                    tracing::warn!(cid = %unpin.cid, node = %name, "unpin failed: {other:?}; retrying later");
                    left.push(name.clone());
                }
            }
        }
        if !left.is_empty() {
            let again = crate::queue::requests::Unpin {
                nodes: left,
                ..unpin.clone()
            };
            if let Err(e) = daemon
                .queue
                .run(move |q| q.retry_unpin(&again, super::now_ms()))
                .await
            {
                tracing::error!(cid = %unpin.cid, "cannot keep the unpin for later: {e}");
            }
        }
    } else if let Err(e) = taken {
        tracing::error!(cid = %unpin.cid, "unpin: {e}");
    }
    daemon.unpinning.release(&key);
}
