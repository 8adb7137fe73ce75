//! The harness itself: a wait that runs out fails, naming what it waited for and showing the
//! daemon's log; a daemon that never comes up fails its start the same way.

use crate::support::cli::Pinwarden;
use crate::support::daemon::Serve;
use crate::support::wait;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// What `pinwarden serve` says when it has no primary node (config.rs, `validate`).
const NO_PRIMARY: &str = "exactly one node must have role = \"primary\"";

/// Runs `test` as its own task; the message it panicked with (it must panic).
async fn panic_message(test: impl Future<Output = ()> + Send + 'static) -> String {
    let Err(failed) = tokio::spawn(test).await else {
        panic!("the wait returned instead of failing");
    };
    let payload = failed.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// `pinwarden serve` with no config file and no node: it exits at once (status 2), saying why
/// in its log.
fn never_up(dir: &Path) -> Serve {
    let cli = Pinwarden::new()
        .current_dir(dir)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"));
    Serve::new(cli, dir.join("data/pinwarden.sock"), dir.join("serve.log"))
}

#[tokio::test]
async fn a_wait_that_runs_out_fails_with_what_it_waited_for_and_the_context() {
    let started = Instant::now();
    let message = panic_message(wait::until(
        "pigs fly",
        Duration::from_millis(300),
        || "the context".to_string(),
        || std::future::ready(false),
    ))
    .await;
    assert!(message.contains("waiting until pigs fly"), "{message}");
    assert!(message.contains("the context"), "{message}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A check that hangs is cut off at the deadline: the wait still ends.
    let message = panic_message(wait::until(
        "a hung check answers",
        Duration::from_millis(300),
        String::new,
        std::future::pending::<bool>,
    ))
    .await;
    assert!(message.contains("a hung check answers"), "{message}");
}

#[tokio::test]
async fn a_daemon_that_never_comes_up_fails_the_wait_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = never_up(dir.path()).spawn();
    let message = panic_message(async move {
        let api = daemon.api();
        let api = &api;
        daemon
            .wait_until(
                "it answers on its socket",
                Duration::from_secs(2),
                move || async move { api.health().await.is_ok() },
            )
            .await;
    })
    .await;
    assert!(
        message.contains("waiting until it answers on its socket"),
        "{message}"
    );
    assert!(message.contains("pinwarden serve's log"), "{message}");
    assert!(message.contains(NO_PRIMARY), "the daemon's log: {message}");
}

#[tokio::test]
async fn starting_a_daemon_that_exits_fails_at_once_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = never_up(dir.path());
    let started = Instant::now();
    let message = panic_message(async move {
        serve.start().await;
    })
    .await;
    assert!(message.contains("exited (exit status: 2)"), "{message}");
    assert!(message.contains(NO_PRIMARY), "the daemon's log: {message}");
    assert!(
        started.elapsed() < crate::support::daemon::READY_LIMIT,
        "noticed the exit, not the timeout"
    );
}
