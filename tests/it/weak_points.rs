//! The seed's weak points on real Kubo, each on its own small cluster: content garbage collected
//! before it was pinned, a backup killed (SIGKILL) in the middle of a transfer and restarted,
//! and a backup whose repo sits on a tmpfs too small for the content. In each, the primary's RPC
//! lies ("pin OK", nothing pinned) or has lost the blocks, so the round reaches the backups, and
//! `pinwarden pin --json` must never report a pin that is not there.

use crate::support::cli::{pin_once_per_node, stdout_json};
use crate::support::nodes::{client, required_cluster, step};
use crate::support::wait::until;
use pinwarden_testkit::{FaultProxy, IpfsCluster, Mode, make_hls_dir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Kubo: `add` with `pin=false`, then `repo gc` on the primary, before pinwarden ran; no other
/// node ever had the blocks. The primary's `pin/add` and the backup's (hinted to the primary)
/// both search for a root no one has, with no progress. pinwarden: each attempt ends `stalled`
/// after `stall_timeout_ms`, the round fails (exit 1, status failed, no confirmed node), and no
/// node has a pin left behind by the cancelled calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_garbage_collected_before_the_pin_is_never_reported_pinned() {
    let t0 = Instant::now();
    pinwarden::install_crypto_provider();
    let cluster = required_cluster(2).await;
    let primary = client(&cluster, 0, "n0");
    let (_content, dir) = make_hls_dir("collected", 1 << 20, 4).expect("content");
    let cid = primary.add_dir(&dir).await.expect("upload");
    assert!(
        has_block_offline(&cluster, 0, &cid).await,
        "the upload stored the root"
    );
    let removed = primary.repo_gc().await.expect("repo gc");
    assert!(
        !has_block_offline(&cluster, 0, &cid).await,
        "repo gc must remove the unpinned root ({removed} blocks removed)"
    );
    step(
        t0,
        &format!("uploaded unpinned, then gc removed {removed} blocks"),
    );

    let data = tempfile::tempdir().expect("data dir");
    let out = pin_once_per_node(
        &cid,
        &cluster.api_url(0),
        &[cluster.api_url(1)],
        data.path(),
    )
    .await;
    let v = stdout_json(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "collected content cannot pin: {v}"
    );
    assert_eq!(v["status"], json!("failed"), "{v}");
    assert_eq!(v["confirmed_nodes"], json!([]), "{v}");
    let trace = v["trace"].to_string();
    assert!(
        trace.contains("stalled") || trace.contains("unretrievable"),
        "{trace}"
    );
    for i in 0..2 {
        assert!(
            !pinned_per_cli(&cluster, i, &cid).await,
            "node {i} must hold no pin of the collected CID"
        );
    }
    step(
        t0,
        &format!("the round failed, no node holds a pin: {trace}"),
    );
}

/// Kubo: a backup killed with SIGKILL while `pin/add` fetches 128 MiB from the primary over
/// bitswap keeps the blocks it had written (flatfs), and restarts on the same repo. pinwarden:
/// the round in flight ends failed (the backup's `pin/add` connection drops: "unreachable:
/// connection closed before message completed"), a pin run while the backup is down fails at
/// once (connection refused: unreachable), and after the restart the same CID is pinned and
/// verified on the backup, whose bitswap fetches only the blocks it did not have yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_mid_transfer_fails_the_round_and_pins_after_restart() {
    const CONTENT: usize = 128 << 20;
    let t0 = Instant::now();
    pinwarden::install_crypto_provider();
    let mut cluster = required_cluster(2).await;
    let primary = client(&cluster, 0, "n0");
    let (_content, dir) = make_hls_dir("crash", CONTENT, 16).expect("content");
    let cid = primary.add_dir(&dir).await.expect("upload");
    let lying = FaultProxy::start(&cluster.api_url(0)).await.expect("proxy");
    lying.set_mode(Mode::LiePinOk).await;
    let blocks = cluster.repo_path(1).join("blocks");
    let empty = data_bytes(&blocks);
    step(t0, "128 MiB on the primary (RPC lying), backup empty");

    let data = tempfile::tempdir().expect("data dir");
    let backups = [cluster.api_url(1)];
    let round = {
        let (cid, primary, data) = (cid.clone(), lying.url(), data.path().to_path_buf());
        let backups = backups.clone();
        tokio::spawn(async move { pin_once_per_node(&cid, &primary, &backups, &data).await })
    };
    // Kill once the backup has written some of the content, well before all of it.
    until(
        "the backup to store 2 MiB of the content",
        Duration::from_secs(60),
        || format!("{} bytes stored", data_bytes(&blocks)),
        || async { data_bytes(&blocks) >= empty + (2 << 20) || round.is_finished() },
    )
    .await;
    assert!(!round.is_finished(), "the pin ended before the kill");
    cluster.kill(1);
    let at_kill = data_bytes(&blocks);
    step(t0, &format!("backup SIGKILLed with {at_kill} bytes stored"));

    let out = round.await.expect("pin task");
    let v = stdout_json(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the round in flight cannot pin: {v}"
    );
    assert_eq!(v["status"], json!("failed"), "{v}");
    assert_eq!(v["confirmed_nodes"], json!([]), "{v}");
    assert!(v["trace"].to_string().contains("unreachable"), "{v}");
    step(t0, &format!("the round failed: {}", v["trace"]));

    let out = pin_once_per_node(&cid, &lying.url(), &backups, data.path()).await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(1), "the backup is down: {v}");
    assert_eq!(v["confirmed_nodes"], json!([]), "{v}");
    assert!(v["trace"].to_string().contains("unreachable"), "{v}");
    step(t0, "a pin while the backup is down fails");

    cluster.restart(1).await.expect("restart the backup");
    let kept = data_bytes(&blocks);
    assert!(
        kept >= at_kill && kept > empty,
        "the blocks written before the crash survive it: {kept} bytes after restart, {at_kill} at the kill"
    );
    step(t0, &format!("backup restarted with {kept} bytes kept"));

    let out = pin_once_per_node(&cid, &lying.url(), &backups, data.path()).await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["confirmed_nodes"], json!(["backup-1"]), "{v}");
    assert!(
        pinned_per_cli(&cluster, 1, &cid).await,
        "pin ls on the backup"
    );
    // Bitswap's counters start at zero with the restart: what it received is what was missing.
    let stored = data_bytes(&blocks);
    let received = bitswap_received(&cluster, 1).await;
    assert!(
        received + (kept - empty) <= stored + (1 << 20),
        "the blocks kept through the crash are not fetched again: {received} bytes received, \
         {kept} kept, {stored} stored"
    );
    step(
        t0,
        &format!("pinned on the restarted backup ({stored} bytes stored, {received} received)"),
    );
}

/// Kubo: a backup whose repo sits on a 32 MiB tmpfs runs out of space while `pin/add` fetches
/// 48 MiB: `pin/add` answers HTTP 500 "pin: write …/blocks/.temp/…: no space left on device"
/// and the daemon stays up. pinwarden: that backup's attempt fails with the node's reason in
/// the trace, and the round goes on to the next backup, which has room: the round ends pinned
/// there only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_out_of_disk_fails_its_pin_and_the_next_backup_pins() {
    const CONTENT: usize = 48 << 20;
    let t0 = Instant::now();
    pinwarden::install_crypto_provider();
    let mut cluster = required_cluster(3).await;
    let _small = Tmpfs::move_repo(&mut cluster, 1, "32m").await;
    let primary = client(&cluster, 0, "n0");
    let (_content, dir) = make_hls_dir("full", CONTENT, 12).expect("content");
    let cid = primary.add_dir(&dir).await.expect("upload");
    let lying = FaultProxy::start(&cluster.api_url(0)).await.expect("proxy");
    lying.set_mode(Mode::LiePinOk).await;
    step(
        t0,
        "48 MiB on the primary (RPC lying); backup-1 on a 32 MiB tmpfs",
    );

    let data = tempfile::tempdir().expect("data dir");
    let backups = [cluster.api_url(1), cluster.api_url(2)];
    let out = pin_once_per_node(&cid, &lying.url(), &backups, data.path()).await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}\n{}", cluster.logs());
    assert_eq!(v["confirmed_nodes"], json!(["backup-2"]), "{v}");
    let trace = v["trace"].to_string();
    assert!(
        trace.contains("no space left on device"),
        "backup-1's failure must say why: {trace}"
    );
    assert!(
        !pinned_per_cli(&cluster, 1, &cid).await,
        "backup-1 holds no pin"
    );
    assert!(
        pinned_per_cli(&cluster, 2, &cid).await,
        "backup-2 holds the pin"
    );
    step(t0, &format!("backup-1 failed, pinned on backup-2: {trace}"));
}

/// Kubo's own CLI on node `i`, bounded; whether it exited 0.
async fn cli_ok(cluster: &IpfsCluster, i: usize, args: &[&str]) -> bool {
    let mut cmd = tokio::process::Command::from(cluster.cli(i));
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ipfs {args:?} on node {i} did not end"))
        .unwrap_or_else(|e| panic!("running ipfs {args:?} on node {i}: {e}"));
    out.status.success()
}

/// `stats bitswap`'s `DataReceived` on node `i` (block bytes received since the daemon started).
async fn bitswap_received(cluster: &IpfsCluster, i: usize) -> u64 {
    let mut cmd = tokio::process::Command::from(cluster.cli(i));
    cmd.args(["stats", "bitswap", "--enc=json"])
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ipfs stats bitswap on node {i} did not end"))
        .unwrap_or_else(|e| panic!("running ipfs stats bitswap on node {i}: {e}"));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stats bitswap printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    stats["DataReceived"]
        .as_u64()
        .unwrap_or_else(|| panic!("no DataReceived in {stats}"))
}

/// `block stat --offline`: the node has the block itself (no network lookup).
async fn has_block_offline(cluster: &IpfsCluster, i: usize, cid: &str) -> bool {
    cli_ok(cluster, i, &["--offline", "block", "stat", cid]).await
}

/// `pin ls --type=recursive CID` on node `i`, by Kubo's CLI (not pinwarden's client).
async fn pinned_per_cli(cluster: &IpfsCluster, i: usize, cid: &str) -> bool {
    cli_ok(cluster, i, &["pin", "ls", "--type=recursive", cid]).await
}

/// Bytes in the flatfs block files (`*.data`) under `dir`: what a node has stored.
fn data_bytes(dir: &Path) -> u64 {
    walkdir(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A node's whole repo on a small tmpfs, unmounted (lazily: the daemon may still hold files)
/// when dropped. Declare it after the cluster, so it is dropped first. Needs root, as the CI
/// and dev machines run (see `cli_context`'s full-disk test).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Stops node `i`, mounts a tmpfs of `size` on its repo with the repo's files copied in,
    /// and starts the node again on it.
    async fn move_repo(cluster: &mut IpfsCluster, i: usize, size: &str) -> Tmpfs {
        cluster.kill(i);
        let repo = cluster.repo_path(i);
        let saved = repo.with_extension("saved");
        std::fs::rename(&repo, &saved).expect("set the repo aside");
        std::fs::create_dir(&repo).expect("mount point");
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&repo));
        let guard = Tmpfs(repo.clone());
        run(Command::new("cp").arg("-a").arg(saved.join(".")).arg(&repo));
        cluster.restart(i).await.expect("restart on the tmpfs");
        guard
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        status.success(),
        "{cmd:?} failed ({status}); mounting a tmpfs needs root"
    );
}
