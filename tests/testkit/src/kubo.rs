//! Kubo, the node of the demo and the real-node tests: where its binary is, how a test repo is
//! set up, and its own CLI for uploads made the way an operator makes them.
//!
//! `scripts/setup.sh` builds the pinned release once into a per-user cache; a test run never
//! builds it (a missing binary is an error that says to run setup).

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Kubo release `scripts/setup.sh` builds (its `KUBO_VERSION`; keep the two in step).
pub const KUBO_VERSION: &str = "v0.43.1";
/// Overrides where the binary is looked for.
pub const KUBO_BIN_ENV: &str = "PINWARDEN_KUBO_BIN";
pub(crate) const FIX: &str = "build Kubo with: bash scripts/setup.sh";

/// The `ipfs` binary: `$PINWARDEN_KUBO_BIN`, else the one `scripts/setup.sh` cached at
/// `${XDG_CACHE_HOME:-$HOME/.cache}/pinwarden/kubo-<version>/ipfs`, else an error saying how to
/// get it.
pub fn kubo_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(KUBO_BIN_ENV) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("${KUBO_BIN_ENV} is {}, which is not a file", bin.display());
        }
        return Ok(bin);
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => bail!("neither ${KUBO_BIN_ENV}, $XDG_CACHE_HOME nor $HOME is set; {FIX}"),
        },
    };
    let bin = cache.join(format!("pinwarden/kubo-{KUBO_VERSION}/ipfs"));
    if !bin.is_file() {
        bail!(
            "Kubo {KUBO_VERSION} is not installed ({} is missing, and ${KUBO_BIN_ENV} is not \
             set); {FIX}",
            bin.display()
        );
    }
    Ok(bin)
}

/// The ports of one daemon's listeners, all on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KuboPorts {
    pub api: u16,
    pub gateway: u16,
    pub swarm: u16,
}

/// Edits a repo made by `ipfs init --profile=test` (already loopback-only, no bootstrap, no
/// mDNS, no AutoConf, no AutoTLS): fixed ports, and no routing, so a node finds content only
/// on peers it is connected to, and nothing asks the network for providers.
pub(crate) fn configure(root: &mut Map<String, Value>, p: KuboPorts) -> Result<()> {
    let ip4 = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
    let addresses = crate::ipfs::object(root, "Addresses")?;
    addresses.insert("API".into(), ip4(p.api).into());
    addresses.insert("Gateway".into(), ip4(p.gateway).into());
    addresses.insert("Swarm".into(), json!([ip4(p.swarm)]));
    root.insert("Bootstrap".into(), json!([]));
    let discovery = crate::ipfs::object(root, "Discovery")?;
    crate::ipfs::object(discovery, "MDNS")?.insert("Enabled".into(), false.into());
    crate::ipfs::object(root, "Routing")?.insert("Type".into(), "none".into());
    // Also off by environment (`IPFS_TELEMETRY`, see `ipfs::Implementation::command`); here
    // too, for anyone who starts the repo by hand.
    root.insert(
        "Plugins".into(),
        json!({"Plugins": {"telemetry": {"Config": {"Mode": "off"}}}}),
    );
    Ok(())
}

/// Uploads `dir` to the node at `api` with Kubo's own CLI and its defaults: CIDv0, dag-pb
/// leaves (what `ipfs add -r` without options makes, unlike `pinwarden add`), not pinned.
/// Returns the root's CID.
pub fn add_with_kubo_cli(api: &str, dir: &Path) -> Result<String> {
    let bin = kubo_bin()?;
    let url = reqwest::Url::parse(api).context("node URL")?;
    let multiaddr = format!(
        "/ip4/{}/tcp/{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5001)
    );
    let out = Command::new(bin)
        .args(["--api", &multiaddr, "add", "-r", "-Q", "--pin=false"])
        .arg(dir)
        .env("IPFS_TELEMETRY", "off")
        .stdin(Stdio::null())
        .output()
        .context("running Kubo's CLI")?;
    if !out.status.success() {
        bail!(
            "ipfs add failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
