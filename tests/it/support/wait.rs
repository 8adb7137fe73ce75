//! The one wait: poll a condition until it holds, and fail, loudly, when it never does.

use std::future::Future;
use std::time::{Duration, Instant};

/// Time between two checks.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` every [`POLL`] until it holds. When `timeout` runs out first, panics
/// naming `what` was awaited, followed by `context()` (for a daemon, its log). A check that
/// hangs counts as "not yet" and is cut off at the deadline, so the wait always ends.
pub async fn until<F, Fut>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    condition: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut condition = condition;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, condition())
            .await
            .unwrap_or(false)
        {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "gave up after {timeout:?} waiting until {what}\n{}",
                context()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
