//! Real IPFS daemons for integration tests, each with its own temporary repo, on loopback ports,
//! isolated from any network (no bootstrap, no mDNS, no routing): Kubo ([`IpfsCluster`], see
//! `kubo`) or, for the smaller js-ipfs smoke set, js-ipfs (`js_ipfs::JsIpfsCluster`).
//!
//! A missing install or a daemon that does not come up is an error that says how to fix it:
//! these tests fail loudly, they never skip.

use crate::{js_ipfs, kubo};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a daemon gets to print `Daemon is ready` (Kubo takes ~1–2 s on these machines,
/// js-ipfs ~5–10 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `ipfs init` gets.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Which node runs, and the program that runs it.
#[derive(Debug, Clone)]
pub(crate) enum Implementation {
    /// Kubo's `ipfs` binary.
    Kubo(PathBuf),
    /// js-ipfs' `cli.js`, run by `node`.
    JsIpfs(PathBuf),
}

impl Implementation {
    fn name(&self) -> &'static str {
        match self {
            Implementation::Kubo(_) => "Kubo",
            Implementation::JsIpfs(_) => "js-ipfs",
        }
    }

    fn fix(&self) -> &'static str {
        match self {
            Implementation::Kubo(_) => kubo::FIX,
            Implementation::JsIpfs(_) => js_ipfs::FIX,
        }
    }

    /// The CLI on `repo`. Kubo's telemetry plugin would report to the Internet: off.
    fn command(&self, repo: &Path) -> Command {
        let mut command = match self {
            Implementation::Kubo(bin) => Command::new(bin),
            Implementation::JsIpfs(cli) => {
                let mut c = Command::new("node");
                c.arg(cli);
                c
            }
        };
        command
            .env("IPFS_PATH", repo)
            .env("IPFS_TELEMETRY", "off")
            .stdin(Stdio::null());
        command
    }

    /// A fresh repo with a new identity and no default content.
    fn init_args(&self) -> &'static [&'static str] {
        match self {
            Implementation::Kubo(_) => &["init", "--profile=test"],
            Implementation::JsIpfs(_) => &["init", "--empty-repo"],
        }
    }

    fn configure(&self, root: &mut Map<String, Value>, p: Ports) -> Result<()> {
        match self {
            Implementation::Kubo(_) => kubo::configure(
                root,
                kubo::KuboPorts {
                    api: p.api,
                    gateway: p.gateway,
                    swarm: p.swarm,
                },
            ),
            Implementation::JsIpfs(_) => js_ipfs::configure(
                root,
                js_ipfs::JsPorts {
                    api: p.api,
                    gateway: p.gateway,
                    rpc: p.rpc,
                    swarm: p.swarm,
                },
            ),
        }
    }
}

/// The ports of one daemon (Kubo has no separate `rpc` listener).
#[derive(Debug, Clone, Copy)]
struct Ports {
    api: u16,
    gateway: u16,
    rpc: u16,
    swarm: u16,
}

/// One running daemon. Killed (by pid) and reaped on drop; its repo is deleted after.
struct IpfsDaemon {
    child: Option<Child>,
    ports: Ports,
    /// Declared after `child` so the repo outlives the process.
    dir: TempDir,
}

impl IpfsDaemon {
    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.api)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's stdout and stderr so far (for failure messages).
    fn logs(&self) -> String {
        read_logs(self.dir.path())
    }

    /// Kills the daemon now (idempotent).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL by pid; `wait` reaps it so no zombie or orphan is left behind.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for IpfsDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` daemons, not connected to each other (tests connect them through the client under test).
pub struct IpfsCluster {
    implementation: Implementation,
    daemons: Vec<IpfsDaemon>,
}

impl IpfsCluster {
    /// Initialises and starts `n` Kubo daemons concurrently, each waiting for `Daemon is ready`
    /// (bounded by [`READY_TIMEOUT`]). Any failure kills the daemons already started.
    pub async fn start(n: usize) -> Result<IpfsCluster> {
        Self::start_with(n, |_, _| Ok(())).await
    }

    /// Like [`start`](Self::start), with `configure(i, config)` applied to daemon `i`'s config
    /// after the test defaults and before it starts (API.Authorizations, Datastore limits...).
    pub async fn start_with(
        n: usize,
        configure: impl Fn(usize, &mut Map<String, Value>) -> Result<()> + Sync,
    ) -> Result<IpfsCluster> {
        Self::start_impl(Implementation::Kubo(kubo::kubo_bin()?), n, configure).await
    }

    pub(crate) async fn start_impl(
        implementation: Implementation,
        n: usize,
        configure: impl Fn(usize, &mut Map<String, Value>) -> Result<()> + Sync,
    ) -> Result<IpfsCluster> {
        let ports = free_ports(4 * n)?;
        let (implementation, configure) = (&implementation, &configure);
        let starts = (0..n).map(|i| {
            let p = Ports {
                api: ports[4 * i],
                gateway: ports[4 * i + 1],
                rpc: ports[4 * i + 2],
                swarm: ports[4 * i + 3],
            };
            async move {
                start_daemon(implementation, p, |config| configure(i, config))
                    .await
                    .with_context(|| format!("starting {} daemon #{i}", implementation.name()))
            }
        });
        // Every start runs to completion (so each daemon is owned, and dropped, here).
        let results = futures::future::join_all(starts).await;
        let mut daemons = Vec::with_capacity(n);
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(d) => daemons.push(d),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() {
            drop(daemons);
            bail!("{}\n({})", errors.join("\n"), implementation.fix());
        }
        Ok(IpfsCluster {
            implementation: implementation.clone(),
            daemons,
        })
    }

    /// `http://127.0.0.1:<api port>` of daemon `i`.
    pub fn api_url(&self, i: usize) -> String {
        self.daemons[i].api_url()
    }

    /// Daemon `i`'s repo (its `IPFS_PATH`).
    pub fn repo_path(&self, i: usize) -> PathBuf {
        self.daemons[i].dir.path().join("repo")
    }

    /// The node's own CLI on daemon `i`'s repo (`ipfs config ...`, `ipfs repo stat`...): it talks
    /// to the running daemon through the repo's `api` file.
    pub fn cli(&self, i: usize) -> Command {
        self.implementation.command(&self.repo_path(i))
    }

    pub fn pids(&self) -> Vec<u32> {
        self.daemons.iter().filter_map(IpfsDaemon::pid).collect()
    }

    /// Every daemon's logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, d) in self.daemons.iter().enumerate() {
            let _ = writeln!(out, "--- daemon #{i} ({}) ---\n{}", d.api_url(), d.logs());
        }
        out
    }

    /// Kills daemon `i` now with SIGKILL, as a crash would (its repo stays).
    pub fn kill(&mut self, i: usize) {
        self.daemons[i].kill();
    }

    /// Starts daemon `i` again on the same repo and ports (after [`kill`](Self::kill), or after
    /// a test moved its repo), waiting for `Daemon is ready`. A running daemon is killed first.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let daemon = &mut self.daemons[i];
        daemon.kill();
        daemon
            .launch(&self.implementation)
            .await
            .with_context(|| format!("restarting {} daemon #{i}", self.implementation.name()))
    }

    /// Kills every daemon now (also done on drop).
    pub fn shutdown(&mut self) {
        for d in &mut self.daemons {
            d.kill();
        }
    }
}

/// Runs `ipfs init` in a fresh temporary directory, bounded by [`INIT_TIMEOUT`].
async fn init_repo(implementation: &Implementation, dir: &Path) -> Result<()> {
    let out = std::fs::File::create(dir.join("init.log"))?;
    let mut init = implementation
        .command(&dir.join("repo"))
        .args(implementation.init_args())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawning `ipfs init`")?;
    let deadline = Instant::now() + INIT_TIMEOUT;
    let status = loop {
        if let Some(status) = init.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = init.kill();
            let _ = init.wait();
            bail!("`ipfs init` did not finish within {INIT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("init.log")).unwrap_or_default();
        bail!("`ipfs init` failed ({status}):\n{log}");
    }
    Ok(())
}

async fn start_daemon(
    implementation: &Implementation,
    ports: Ports,
    configure: impl Fn(&mut Map<String, Value>) -> Result<()>,
) -> Result<IpfsDaemon> {
    let dir = tempfile::Builder::new()
        .prefix("pinwarden-ipfs-")
        .tempdir()
        .context("creating a temporary directory")?;
    let repo = dir.path().join("repo");
    init_repo(implementation, dir.path()).await?;
    edit_config(&repo.join("config"), |root| {
        implementation.configure(root, ports)?;
        configure(root)
    })?;

    let mut daemon = IpfsDaemon {
        child: None,
        ports,
        dir,
    };
    daemon.launch(implementation).await?;
    Ok(daemon)
}

impl IpfsDaemon {
    /// Runs `ipfs daemon` on this repo and waits for `Daemon is ready` (bounded by
    /// [`READY_TIMEOUT`]); a daemon that is not ready in time is killed.
    async fn launch(&mut self, implementation: &Implementation) -> Result<()> {
        let repo = self.dir.path().join("repo");
        let stdout = std::fs::File::create(self.dir.path().join("daemon.out"))?;
        let stderr = std::fs::File::create(self.dir.path().join("daemon.err"))?;
        let child = implementation
            .command(&repo)
            .arg("daemon")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .context("spawning `ipfs daemon`")?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out =
                std::fs::read_to_string(self.dir.path().join("daemon.out")).unwrap_or_default();
            if out.contains("Daemon is ready") {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "the daemon exited ({status}) before it was ready:\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                let logs = self.logs();
                self.kill();
                bail!("the daemon was not ready within {READY_TIMEOUT:?}:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads the repo's JSON config, applies `edit` to it, writes it back.
fn edit_config(
    config_path: &Path,
    edit: impl FnOnce(&mut Map<String, Value>) -> Result<()>,
) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let mut config: Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let root = config
        .as_object_mut()
        .ok_or_else(|| anyhow!("{} is not a JSON object", config_path.display()))?;
    edit(root)?;
    std::fs::write(config_path, serde_json::to_string_pretty(&config)?)
        .with_context(|| format!("writing {}", config_path.display()))?;
    Ok(())
}

/// `parent[key]` as an object, created when absent.
pub(crate) fn object<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>> {
    parent
        .entry(key)
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| anyhow!("config key {key} is not an object"))
}

/// `count` distinct free loopback ports (all bound at once, then released).
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn read_logs(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!(
        "[stdout]\n{}\n[stderr]\n{}",
        tail(&read("daemon.out")),
        tail(&read("daemon.err"))
    )
}

/// The last 40 lines.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
