//! Real IPFS daemons for integration tests: js-ipfs (Kubo RPC compatible) from
//! `tests/ipfs-node/node_modules`, each with its own temporary repo, on loopback ports, isolated
//! from any network (no bootstrap, no delegates, no MDNS, no webRTCStar, no routing).
//!
//! A missing install or a daemon that does not come up is an error that says how to fix it:
//! these tests fail loudly, they never skip.

use anyhow::{Context, Result, anyhow, bail};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// How long a daemon gets to print `Daemon is ready` (it takes ~5–10 s on these machines).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `ipfs init` gets.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
const FIX: &str = "install js-ipfs with: cd tests/ipfs-node && npm ci --before=2024-12-14";

/// `tests/ipfs-node`, where `package.json`, the lockfile and `node_modules` live.
fn ipfs_node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ipfs-node")
}

/// The js-ipfs CLI entry point, or an error saying how to install it.
fn ipfs_cli() -> Result<PathBuf> {
    let cli = ipfs_node_dir().join("node_modules/ipfs/src/cli.js");
    if !cli.is_file() {
        bail!(
            "js-ipfs is not installed ({} is missing); {FIX}",
            cli.display()
        );
    }
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => Ok(cli),
        Ok(out) => bail!(
            "`node --version` failed ({}): js-ipfs needs Node.js 20 on PATH",
            out.status
        ),
        Err(e) => bail!("cannot run `node` ({e}): js-ipfs needs Node.js 20 on PATH"),
    }
}

/// The ports of one daemon.
#[derive(Debug, Clone, Copy)]
struct Ports {
    api: u16,
    gateway: u16,
    rpc: u16,
    swarm: u16,
}

/// One running js-ipfs daemon. Killed (by pid) and reaped on drop; its repo is deleted after.
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
    daemons: Vec<IpfsDaemon>,
}

impl IpfsCluster {
    /// Initialises and starts `n` daemons concurrently, each waiting for `Daemon is ready`
    /// (bounded by [`READY_TIMEOUT`]). Any failure kills the daemons already started.
    pub async fn start(n: usize) -> Result<IpfsCluster> {
        let cli = ipfs_cli()?;
        let ports = free_ports(4 * n)?;
        let starts = (0..n).map(|i| {
            let cli = cli.clone();
            let p = Ports {
                api: ports[4 * i],
                gateway: ports[4 * i + 1],
                rpc: ports[4 * i + 2],
                swarm: ports[4 * i + 3],
            };
            async move {
                start_daemon(&cli, p)
                    .await
                    .with_context(|| format!("starting js-ipfs daemon #{i}"))
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
            bail!("{}\n({FIX})", errors.join("\n"));
        }
        Ok(IpfsCluster { daemons })
    }

    /// `http://127.0.0.1:<api port>` of daemon `i`.
    pub fn api_url(&self, i: usize) -> String {
        self.daemons[i].api_url()
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

    /// Kills every daemon now (also done on drop).
    pub fn shutdown(&mut self) {
        for d in &mut self.daemons {
            d.kill();
        }
    }
}

async fn start_daemon(cli: &Path, ports: Ports) -> Result<IpfsDaemon> {
    let dir = tempfile::Builder::new()
        .prefix("pinwarden-ipfs-")
        .tempdir()
        .context("creating a temporary directory")?;
    let repo = dir.path().join("repo");

    // init: a fresh repo with a new identity and no default content.
    let out = std::fs::File::create(dir.path().join("init.log"))?;
    let mut init = Command::new("node")
        .arg(cli)
        .args(["init", "--empty-repo"])
        .env("IPFS_PATH", &repo)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawning `node cli.js init`")?;
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !status.success() {
        let log = std::fs::read_to_string(dir.path().join("init.log")).unwrap_or_default();
        bail!("`ipfs init` failed ({status}):\n{log}");
    }
    configure(&repo.join("config"), ports)?;

    let stdout = std::fs::File::create(dir.path().join("daemon.out"))?;
    let stderr = std::fs::File::create(dir.path().join("daemon.err"))?;
    let child = Command::new("node")
        .arg(cli)
        .arg("daemon")
        .env("IPFS_PATH", &repo)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("spawning `node cli.js daemon`")?;
    let mut daemon = IpfsDaemon {
        child: Some(child),
        ports,
        dir,
    };

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let out = std::fs::read_to_string(daemon.dir.path().join("daemon.out")).unwrap_or_default();
        if out.contains("Daemon is ready") {
            return Ok(daemon);
        }
        if let Some(child) = daemon.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            daemon.child = None;
            bail!(
                "the daemon exited ({status}) before it was ready:\n{}",
                daemon.logs()
            );
        }
        if Instant::now() > deadline {
            let logs = daemon.logs();
            daemon.kill();
            bail!("the daemon was not ready within {READY_TIMEOUT:?}:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Edits the repo's config: every listener on 127.0.0.1 with our ports, and no way to reach
/// (or be found by) anything outside this test.
fn configure(config_path: &Path, p: Ports) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let root = config
        .as_object_mut()
        .ok_or_else(|| anyhow!("{} is not a JSON object", config_path.display()))?;
    let ip4 = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
    let addresses = object(root, "Addresses")?;
    addresses.insert("API".into(), ip4(p.api).into());
    addresses.insert("Gateway".into(), ip4(p.gateway).into());
    addresses.insert("RPC".into(), ip4(p.rpc).into());
    addresses.insert("Swarm".into(), serde_json::json!([ip4(p.swarm)]));
    addresses.insert("Delegates".into(), serde_json::json!([]));
    root.insert("Bootstrap".into(), serde_json::json!([]));
    let discovery = object(root, "Discovery")?;
    object(discovery, "MDNS")?.insert("Enabled".into(), false.into());
    object(discovery, "webRTCStar")?.insert("Enabled".into(), false.into());
    object(root, "Routing")?.insert("Type".into(), "none".into());
    std::fs::write(config_path, serde_json::to_string_pretty(&config)?)
        .with_context(|| format!("writing {}", config_path.display()))?;
    Ok(())
}

/// `parent[key]` as an object, created when absent.
fn object<'a>(
    parent: &'a mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<&'a mut serde_json::Map<String, serde_json::Value>> {
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

/// An HLS-like directory: `<tmp>/<name>/index.m3u8` and `segNNN.ts` segments of random bytes,
/// about `total_bytes` in all. The bytes differ on every call, so every call yields a new CID.
pub fn make_hls_dir(name: &str, total_bytes: usize, segments: usize) -> Result<(TempDir, PathBuf)> {
    let tmp = tempfile::Builder::new()
        .prefix("pinwarden-hls-")
        .tempdir()
        .context("creating a temporary directory")?;
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir)?;
    let segments = segments.max(1);
    let per_segment = total_bytes / segments;
    let mut rng = XorShift::seeded();
    let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n");
    for i in 0..segments {
        let name = format!("seg{i:03}.ts");
        let mut data = vec![0u8; per_segment];
        rng.fill(&mut data);
        std::fs::write(dir.join(&name), &data)?;
        let _ = write!(playlist, "#EXTINF:4.000,\n{name}\n");
    }
    playlist.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(dir.join("index.m3u8"), playlist)?;
    Ok((tmp, dir))
}

/// A real-size HLS rendition set: `<tmp>/<name>/master.m3u8` and one directory per rendition
/// (`1080p`, `720p`, `480p`: half, 30 % and 20 % of `total_bytes`), each with its `index.m3u8`
/// and `segNNN.ts` segments of `segment_bytes` (the last one shorter) of random bytes. Written
/// through a 1 MiB buffer, so a set of several GB never sits in memory. New bytes (and so a new
/// CID) on every call.
pub fn make_hls_set(
    name: &str,
    total_bytes: u64,
    segment_bytes: u64,
) -> Result<(TempDir, PathBuf)> {
    use std::io::Write as _;
    const RENDITIONS: [(&str, u64); 3] = [("1080p", 50), ("720p", 30), ("480p", 20)];
    let tmp = tempfile::Builder::new()
        .prefix("pinwarden-hls-set-")
        .tempdir()
        .context("creating a temporary directory")?;
    let root = tmp.path().join(name);
    std::fs::create_dir(&root)?;
    let segment_bytes = segment_bytes.max(1);
    let mut rng = XorShift::seeded();
    let mut buffer = vec![0u8; 1 << 20];
    let mut master = String::from("#EXTM3U\n");
    for (rendition, percent) in RENDITIONS {
        let dir = root.join(rendition);
        std::fs::create_dir(&dir)?;
        let mut left = total_bytes * percent / 100;
        let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n");
        // Bounded: every segment takes at least one byte off `left`.
        for i in 0.. {
            if left == 0 {
                break;
            }
            let size = left.min(segment_bytes);
            let segment = format!("seg{i:03}.ts");
            let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(&segment))?);
            let mut written = 0u64;
            while written < size {
                let n = (size - written).min(buffer.len() as u64) as usize;
                rng.fill(&mut buffer[..n]);
                out.write_all(&buffer[..n])?;
                written += n as u64;
            }
            out.flush()?;
            left -= size;
            let _ = write!(playlist, "#EXTINF:4.000,\n{segment}\n");
        }
        playlist.push_str("#EXT-X-ENDLIST\n");
        std::fs::write(dir.join("index.m3u8"), playlist)?;
        let _ = write!(
            master,
            "#EXT-X-STREAM-INF:NAME={rendition}\n{rendition}/index.m3u8\n"
        );
    }
    std::fs::write(root.join("master.m3u8"), master)?;
    Ok((tmp, root))
}

/// Random enough for test data, without a dependency.
pub struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock, the pid and a counter: distinct across calls and processes.
    pub fn seeded() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        XorShift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}
