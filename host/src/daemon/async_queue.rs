//! The daemon's one door to the queue. Every queue call blocks (SQLite, an fsync, the
//! group-commit writer's answer), so each runs on tokio's blocking pool, never on a runtime
//! worker thread where it would stall every request and round sharing that thread.

use crate::queue::{Queue, QueueError};
use std::sync::Arc;

/// The queue, for async callers. Cheap to clone.
#[derive(Clone)]
pub struct AsyncQueue(Arc<Queue>);

impl AsyncQueue {
    pub fn new(queue: Queue) -> AsyncQueue {
        AsyncQueue(Arc::new(queue))
    }

    /// Runs `f` on the queue on the blocking pool. A task that panicked or was cancelled (the
    /// runtime shutting down) is a [`QueueError::Task`].
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Queue) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        let queue = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(&queue)).await?
    }
}
