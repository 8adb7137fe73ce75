//! The Node.js client (`clients/node`) against a real `pinwarden serve`: the daemon on the
//! shared Kubo cluster (primary and backup-1 from its mesh), two small contents uploaded to
//! the primary, then `node --test clients/node/test/client.test.js` with the daemon's socket,
//! its TCP listener and token, and the two CIDs in its environment. Node's output (and the
//! daemon's log) is shown on failure. Needs Node.js on PATH, like every real-node module.

use crate::support::daemon::Serve;
use crate::support::nodes::{MESH, shared_cluster, step, upload_tiny};
use pinwarden::kubo::KuboClient;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PRIMARY: usize = MESH[0];
const BACKUP: usize = MESH[1];

/// The bearer token of the daemon's TCP listener (at least 16 characters).
const TOKEN: &str = "node-client-test-token-0123456789";

/// Bound on node's whole run (a few seconds here: the slowest case waits for content no node
/// has to fail on both nodes).
const NODE_LIMIT: Duration = Duration::from_secs(300);

/// Primary and backup, no local node (so no local fallback), and budgets short enough that
/// content no node has fails a waiting submit within seconds. Breakers and hedging are off:
/// the failing pins must not steer the others away from the primary.
fn config(dir: &Path, primary: &str, backup: &str) {
    let rest = r#"[policy]
name = "tank-mode"
params = { attempts = 2, base_delay_ms = 50, max_delay_ms = 100, pin_timeout_ms = 5000, stall_timeout_ms = 2000, breaker_failures = 0, hedge_after_ms = 0 }

[daemon]
retry_base_ms = 100
retry_max_ms = 400
"#;
    let nodes = [
        ("primary", "primary", primary),
        ("backup-1", "backup", backup),
    ];
    crate::support::config::write(dir, &nodes, rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_against_a_real_daemon() {
    let t0 = Instant::now();
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/node");
    let test_file = package.join("test/client.test.js");
    assert!(test_file.is_file(), "{} is missing", test_file.display());
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`node --version` failed ({}): the Node.js client tests need Node.js 18+ on PATH",
            out.status
        ),
        Err(e) => {
            panic!("cannot run `node` ({e}): the Node.js client tests need Node.js 18+ on PATH")
        }
    }

    let cluster = shared_cluster().await;
    step(t0, "shared Kubo nodes up");
    let primary = KuboClient::new("primary", &cluster.api_url(PRIMARY), None).expect("client");
    let cid = upload_tiny(&primary, "node-client-1").await;
    let cid_2 = upload_tiny(&primary, "node-client-2").await;
    assert_ne!(cid, cid_2, "two distinct contents");
    step(t0, "two contents uploaded to the primary");

    let dir = tempfile::tempdir().expect("tempdir");
    config(
        dir.path(),
        &cluster.api_url(PRIMARY),
        &cluster.api_url(BACKUP),
    );
    let socket = dir.path().join("pinwarden.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let tcp = format!("127.0.0.1:{port}");
    // Up once it answers on its socket (both listeners are bound before either serves).
    let served = Serve::config(dir.path())
        .args(["--log-format", "json", "--listen", &tcp])
        .env("PINWARDEN_TOKEN", TOKEN)
        .start()
        .await;
    step(t0, "daemon up");

    let mut node = tokio::process::Command::new("node");
    node.arg("--test")
        .arg(&test_file)
        .current_dir(package)
        .env("PINWARDEN_SOCKET", socket)
        .env("PINWARDEN_TEST_CID", cid)
        .env("PINWARDEN_TEST_CID_2", cid_2)
        .env("PINWARDEN_TCP", tcp)
        .env("PINWARDEN_TOKEN", TOKEN)
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(NODE_LIMIT, node.output()).await {
        Ok(out) => out.expect("run node --test"),
        Err(_) => panic!(
            "node --test did not finish within {NODE_LIMIT:?}\n--- daemon log ---\n{}",
            served.log_tail(80)
        ),
    };
    assert!(
        out.status.success(),
        "node --test {} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- daemon log ---\n{}",
        test_file.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        served.log_tail(80)
    );
    step(t0, "Node.js client tests passed");
    drop(served);
    drop(cluster);
}
