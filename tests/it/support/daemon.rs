//! The one `pinwarden serve` fixture. [`Serve`] says how to start it (a [`Pinwarden`] command
//! line, where it answers, where it logs); [`Daemon`] is the running process: its API, its log,
//! signals, restarts, and waits that fail with its log. Killed (SIGKILL) and reaped on drop.

use super::cli::Pinwarden;
use super::wait;
use pinwarden::client::DaemonClient;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

/// How long a daemon may take to answer on its socket after it is started.
pub const READY_LIMIT: Duration = Duration::from_secs(15);

/// One health check while waiting for a daemon (its socket may accept before it serves).
const HEALTH_CHECK_LIMIT: Duration = Duration::from_secs(2);

/// Log lines shown in a failure message (the whole log stays in its file).
const LOG_LINES_SHOWN: usize = 200;

/// How to start `pinwarden serve`.
#[derive(Clone, Debug)]
pub struct Serve {
    cli: Pinwarden,
    socket: PathBuf,
    log: PathBuf,
}

impl Serve {
    /// `cli` (its arguments start with `serve`) answering on the Unix socket `socket`, its
    /// stdout and stderr appended to `log`.
    pub fn new(cli: Pinwarden, socket: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Serve {
        Serve {
            cli,
            socket: socket.into(),
            log: log.into(),
        }
    }

    /// `pinwarden serve --config <dir>/pinwarden.toml` (the file `support::config::write`
    /// writes, whose data directory is `dir`) with `RUST_LOG=info`, answering on
    /// `<dir>/pinwarden.sock`, logging to `<dir>/serve.log`.
    pub fn config(dir: &Path) -> Serve {
        let cli = Pinwarden::new()
            .arg("serve")
            .arg("--config")
            .arg(dir.join("pinwarden.toml"))
            .env("RUST_LOG", "info");
        Serve::new(cli, dir.join("pinwarden.sock"), dir.join("serve.log"))
    }

    pub fn args<I, S>(mut self, args: I) -> Serve
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cli = self.cli.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Serve {
        self.cli = self.cli.env(key, value);
        self
    }

    /// Starts the process; see [`Daemon::ready`] to wait until it answers.
    pub fn spawn(self) -> Daemon {
        let child = self.cli.spawn(&self.log);
        Daemon {
            serve: self,
            child: Some(child),
        }
    }

    /// Starts the process and waits until it answers on its socket.
    pub async fn start(self) -> Daemon {
        let mut daemon = self.spawn();
        daemon.ready().await;
        daemon
    }
}

/// A running (or killed) `pinwarden serve`.
pub struct Daemon {
    serve: Serve,
    child: Option<Child>,
}

impl Daemon {
    pub fn socket(&self) -> &Path {
        &self.serve.socket
    }

    /// The typed client on its socket.
    pub fn api(&self) -> DaemonClient {
        DaemonClient::unix(&self.serve.socket).expect("daemon client")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the daemon runs")
    }

    /// The whole log, every start of this daemon included.
    pub fn log(&self) -> String {
        read_log(&self.serve.log)
    }

    /// The log's last `lines` lines.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Waits until it answers on its socket; fails with its log when it does not within
    /// [`READY_LIMIT`], and at once when it exits instead.
    pub async fn ready(&mut self) {
        let client = self.api();
        let api = &client;
        let log = self.serve.log.clone();
        let child = &mut self.child;
        let mut exited = None;
        wait::until(
            "pinwarden serve answers on its socket",
            READY_LIMIT,
            || log_report(&log),
            || {
                exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                let gone = exited.is_some();
                async move {
                    gone || matches!(
                        tokio::time::timeout(HEALTH_CHECK_LIMIT, api.health()).await,
                        Ok(Ok(_))
                    )
                }
            },
        )
        .await;
        if let Some(status) = exited {
            panic!(
                "pinwarden serve exited ({status}) instead of answering on {}\n{}",
                self.serve.socket.display(),
                log_report(&log)
            );
        }
    }

    /// [`wait::until`] with this daemon's log as the failure's context.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        wait::until(what, timeout, || log_report(&self.serve.log), condition).await;
    }

    /// Sends `sig` (as `kill` spells it: `-TERM`, `-HUP`).
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {}", self.pid());
    }

    /// Waits (bounded) until the process exits by itself; its exit status. Fails with its log
    /// when it still runs after `limit` (and is killed on drop, as ever).
    pub async fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let log = self.serve.log.clone();
        let child = self.child.as_mut().expect("the daemon runs");
        let mut status = None;
        wait::until(
            "pinwarden serve exits",
            limit,
            || log_report(&log),
            || {
                status = child.try_wait().ok().flatten();
                std::future::ready(status.is_some())
            },
        )
        .await;
        self.child = None;
        status.expect("exited")
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it (if it runs) and starts it again, same command, same log; see [`Daemon::ready`].
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(self.serve.cli.spawn(&self.serve.log));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The daemon's log, for a failure message.
fn log_report(path: &Path) -> String {
    let text = read_log(path);
    let total = text.lines().count();
    let shown = if total > LOG_LINES_SHOWN {
        format!("last {LOG_LINES_SHOWN} of {total} lines")
    } else {
        format!("{total} lines")
    };
    format!(
        "--- pinwarden serve's log ({}, {shown}) ---\n{}",
        path.display(),
        tail(&text, LOG_LINES_SHOWN)
    )
}
