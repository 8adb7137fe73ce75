//! The one way the tests run the `pinwarden` binary: none of the variables pinwarden reads is
//! inherited from the shell that runs `cargo test`; the test sets its own.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_pinwarden");

/// Every environment variable pinwarden reads (host/src), removed before the test's own are
/// set. Any other `PINWARDEN_*` variable of the caller is removed too (see
/// [`Pinwarden::command`]), so a variable added to pinwarden before this list cannot leak in.
pub const CLEARED: &[&str] = &[
    // The seeds' variables, over the config file (config.rs, `apply_env`).
    "IPFS_PRIMARY_API",
    "IPFS_BACKUP_APIS",
    "IPFS_LOCAL_API",
    "ENABLE_LOCAL_FALLBACK",
    "LOCAL_FALLBACK_THRESHOLD",
    "NODE_NAME",
    "PINWARDEN_POLICY",
    // clap's `env =` (cli/mod.rs, cli/fallback_cmd.rs).
    "PINWARDEN_CONFIG",
    "PINWARDEN_DATA_DIR",
    "PINWARDEN_TO_TOKEN",
    // The daemon's bearer token when daemon.token_env names none (cli/daemon_cmd.rs).
    "PINWARDEN_TOKEN",
    // The default node name (config.rs, `default_node_name`).
    "HOSTNAME",
    // The log filter (tracing's EnvFilter, cli/mod.rs).
    "RUST_LOG",
    // reqwest's proxies: one would stand between pinwarden and the loopback nodes.
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A `pinwarden` command line: arguments, the test's variables, a working directory.
/// `Pinwarden::new().arg("jobs").env("PINWARDEN_DATA_DIR", dir).run()`.
#[derive(Clone, Debug, Default)]
pub struct Pinwarden {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
}

impl Pinwarden {
    pub fn new() -> Pinwarden {
        Pinwarden::default()
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Pinwarden {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Pinwarden
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets a variable for this run (after the [`CLEARED`] ones are removed).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Pinwarden {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(self, vars: I) -> Pinwarden
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        vars.into_iter().fold(self, |cli, (k, v)| cli.env(k, v))
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Pinwarden {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The process to start: the caller's environment without what pinwarden reads, then the
    /// test's variables; stdin empty (no command reads it, and none may wait on a terminal).
    fn command(&self) -> Command {
        let mut cmd = Command::new(BINARY);
        cmd.args(&self.args);
        for var in CLEARED {
            cmd.env_remove(var);
        }
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("PINWARDEN_") {
                cmd.env_remove(var);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs to the end; its exit status, stdout and stderr.
    pub fn run(self) -> Output {
        self.command()
            .output()
            .unwrap_or_else(|e| panic!("cannot run {self}: {e}"))
    }

    /// [`Pinwarden::run`] without blocking the test's runtime (which may serve the fault proxies
    /// the process talks to). Killed if the future is dropped, e.g. by a timeout around it.
    pub async fn run_async(self) -> Output {
        let mut cmd = tokio::process::Command::from(self.command());
        cmd.kill_on_drop(true);
        cmd.output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {self}: {e}"))
    }

    /// Starts a long-lived process, its stdout and stderr appended to `log` (kept across
    /// restarts). The caller kills and reaps it: see `support::daemon` for `pinwarden serve`.
    pub fn spawn(&self, log: &Path) -> Child {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()))
        };
        self.command()
            .stdout(open())
            .stderr(open())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {self}: {e}"))
    }

    /// Starts the process with the caller's own stdout and stderr (a pipe the test closes,
    /// say). The caller waits for it.
    pub fn spawn_with(&self, stdout: impl Into<Stdio>, stderr: impl Into<Stdio>) -> Child {
        self.command()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {self}: {e}"))
    }
}

/// `pinwarden ARGS...`, for messages.
impl fmt::Display for Pinwarden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pinwarden")?;
        for arg in &self.args {
            write!(f, " {}", arg.to_string_lossy())?;
        }
        Ok(())
    }
}

/// The JSON a `--json` command printed, or a panic showing what it printed instead.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON on stdout ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `pinwarden pin CID --json` for one bounded real-node round (one attempt per node, see
/// `support::policies::ONE_ATTEMPT_PER_NODE`) with the seeds' variables naming the nodes; a
/// run that outlives two minutes fails the test.
pub async fn pin_once_per_node(
    cid: &str,
    primary: &str,
    backups: &[String],
    data: &Path,
) -> Output {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
    let run = Pinwarden::new()
        .args(["pin", cid, "--json"])
        .args(crate::support::policies::ONE_ATTEMPT_PER_NODE)
        .env("IPFS_PRIMARY_API", primary)
        .env("IPFS_BACKUP_APIS", backups.join(","))
        .env("PINWARDEN_DATA_DIR", data)
        .run_async();
    tokio::time::timeout(LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("pinwarden pin {cid} did not end within {LIMIT:?}"))
}
