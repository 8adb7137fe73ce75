//! js-ipfs 0.66 (archived in 2023), kept for a small smoke set: pinwarden still has code that
//! only js-ipfs needs (its presence walk through `refs/local`, the `bitswap/stat` watch of a pin
//! that streams nothing), and that code is tested on a real js-ipfs node by [`JsIpfsCluster`].
//! From `tests/ipfs-node/node_modules`, installed by `scripts/setup.sh`.

use crate::ipfs::{Implementation, IpfsCluster};
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) const FIX: &str =
    "install js-ipfs with: cd tests/ipfs-node && npm ci --before=2024-12-14";

/// `tests/ipfs-node`, where `package.json`, the lockfile and `node_modules` live.
fn ipfs_node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ipfs-node")
}

/// The js-ipfs CLI entry point, or an error saying how to install it.
pub(crate) fn ipfs_cli() -> Result<PathBuf> {
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

/// The ports of one js-ipfs daemon's listeners, all on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsPorts {
    pub api: u16,
    pub gateway: u16,
    pub rpc: u16,
    pub swarm: u16,
}

/// Edits a repo made by `init --empty-repo`: every listener on 127.0.0.1 with our ports, and no
/// way to reach (or be found by) anything outside this test.
pub(crate) fn configure(root: &mut Map<String, Value>, p: JsPorts) -> Result<()> {
    use crate::ipfs::object;
    let ip4 = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
    let addresses = object(root, "Addresses")?;
    addresses.insert("API".into(), ip4(p.api).into());
    addresses.insert("Gateway".into(), ip4(p.gateway).into());
    addresses.insert("RPC".into(), ip4(p.rpc).into());
    addresses.insert("Swarm".into(), json!([ip4(p.swarm)]));
    addresses.insert("Delegates".into(), json!([]));
    root.insert("Bootstrap".into(), json!([]));
    let discovery = object(root, "Discovery")?;
    object(discovery, "MDNS")?.insert("Enabled".into(), false.into());
    object(discovery, "webRTCStar")?.insert("Enabled".into(), false.into());
    object(root, "Routing")?.insert("Type".into(), "none".into());
    Ok(())
}

/// `n` js-ipfs daemons: an [`IpfsCluster`] in every way but the implementation.
pub struct JsIpfsCluster(IpfsCluster);

impl JsIpfsCluster {
    /// Like [`IpfsCluster::start`], with js-ipfs (each takes ~5–10 s to be ready).
    pub async fn start(n: usize) -> Result<JsIpfsCluster> {
        let implementation = Implementation::JsIpfs(ipfs_cli()?);
        Ok(JsIpfsCluster(
            IpfsCluster::start_impl(implementation, n, |_, _| Ok(())).await?,
        ))
    }
}

impl std::ops::Deref for JsIpfsCluster {
    type Target = IpfsCluster;
    fn deref(&self) -> &IpfsCluster {
        &self.0
    }
}

impl std::ops::DerefMut for JsIpfsCluster {
    fn deref_mut(&mut self) -> &mut IpfsCluster {
        &mut self.0
    }
}

/// Uploads `dir` to the node at `api` with js-ipfs' own CLI and its defaults: CIDv0, dag-pb
/// leaves (what `ipfs add -r` without options makes, unlike `pinwarden add`), not pinned.
/// Returns the root's CID.
pub fn add_with_js_ipfs_cli(api: &str, dir: &Path) -> Result<String> {
    let cli = ipfs_cli()?;
    let url = reqwest::Url::parse(api).context("node URL")?;
    let multiaddr = format!(
        "/ip4/{}/tcp/{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5001)
    );
    let out = Command::new("node")
        .arg(cli)
        .args(["--api", &multiaddr, "add", "-r", "-Q", "--pin=false"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("running js-ipfs' CLI")?;
    if !out.status.success() {
        bail!(
            "js-ipfs add failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
