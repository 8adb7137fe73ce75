//! The README's main command (`scripts/demo.sh`): three real IPFS nodes on loopback, an HLS
//! upload, a primary that lies about `pin/add` and then dies, and pinwarden falling back,
//! verifying and reporting. Everything it starts is stopped and removed when it ends.
//!
//! Usage: `demo [PATH-TO-pinwarden]` (default: the `pinwarden` binary next to `examples/`).

use pinwarden::Outcome;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden_testkit::{FaultProxy, IpfsCluster, Mode, make_hls_dir};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn banner(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pinwarden = match std::env::args().nth(1) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("pinwarden"))
            .ok_or_else(|| anyhow::anyhow!("cannot locate the pinwarden binary"))?,
    };
    anyhow::ensure!(
        pinwarden.exists(),
        "{} not found: build it first",
        pinwarden.display()
    );

    banner("starting three Kubo nodes on 127.0.0.1: primary (supernode), backup-1, backup-2");
    let cluster = IpfsCluster::start(3).await?;
    let clients: Vec<KuboClient> = (0..3)
        .map(|i| KuboClient::new(format!("node-{i}"), &cluster.api_url(i), None))
        .collect::<Result<_, _>>()?;
    for i in 1..3 {
        // Backups peer with the supernode, as in production.
        let addrs = clients[0]
            .swarm_addrs()
            .await
            .map_err(|o| anyhow::anyhow!("{o:?}"))?;
        clients[i].connect(&addrs).await;
    }
    // The supernode's API goes through a proxy we can make misbehave.
    let primary = FaultProxy::start(&cluster.api_url(0)).await?;
    for i in 0..3 {
        println!("  node {i}: API {}", cluster.api_url(i));
    }
    println!("  primary as seen by pinwarden: {}", primary.url());

    let data_dir = tempfile::tempdir()?;
    let env = [
        ("IPFS_PRIMARY_API", primary.url()),
        (
            "IPFS_BACKUP_APIS",
            format!("{},{}", cluster.api_url(1), cluster.api_url(2)),
        ),
        ("PINWARDEN_DATA_DIR", data_dir.path().display().to_string()),
    ];

    banner("before the first video: $ pinwarden doctor");
    let doctor = |env: [(&'static str, String); 3]| {
        let pinwarden = pinwarden.clone();
        async move {
            tokio::process::Command::new(&pinwarden)
                .args(["doctor", "--timeout", "3s"])
                .envs(env)
                .status()
                .await
        }
    };
    let healthy = doctor(env.clone()).await?;
    anyhow::ensure!(
        healthy.success(),
        "pinwarden doctor found a problem ({healthy})"
    );

    banner("encoding done: uploading a 4 MB HLS rendition once, to the primary");
    let (_tmp, dir) = make_hls_dir("rendition-720p", 4 << 20, 8)?;
    let add = tokio::process::Command::new(&pinwarden)
        .arg("add")
        .arg(&dir)
        .envs(env.clone())
        .output()
        .await?;
    anyhow::ensure!(
        add.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&add.stderr)
    );
    let cid = String::from_utf8_lossy(&add.stdout).trim().to_string();
    println!("  $ pinwarden add {}\n  {cid}", dir.display());

    banner("the supernode now lies: \"pin OK\" without pinning; after two lies it dies");
    primary.set_mode(Mode::LiePinOk).await;
    let saboteur = async {
        for _ in 0..1_200 {
            if primary.count("/api/v0/pin/add") >= 2 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                primary.set_mode(Mode::Refuse).await;
                println!("\n  *** supernode API is dead (connection refused) ***\n");
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    banner(&format!(
        "$ pinwarden pin {cid}   (tank-mode, 3 attempts per node, 1 s base backoff)"
    ));
    let pin = tokio::process::Command::new(&pinwarden)
        .args(["pin", &cid, "--job-id", "demo-720p"])
        .args(["--param", "attempts=3", "--param", "base_delay_ms=1000"])
        .args([
            "--param",
            "pin_timeout_ms=20000",
            "--param",
            "stall_timeout_ms=20000",
        ])
        .envs(env.clone())
        .env("RUST_LOG", "warn,pinwarden::executor=info")
        .status();
    let (status, ()) = tokio::join!(pin, saboteur);
    let status = status?;

    banner("checking for ourselves, on each node directly (pin ls)");
    for (i, name) in ["primary", "backup-1", "backup-2"].iter().enumerate() {
        let verdict = match clients[i].verify(&cid).await {
            Outcome::Ok => "pinned".to_string(),
            Outcome::NotPinned => "not pinned".to_string(),
            other => format!("{other:?}"),
        };
        println!("  {name:<9} {verdict}");
    }
    anyhow::ensure!(status.success(), "pinwarden pin exited with {status}");
    anyhow::ensure!(
        clients[1].verify(&cid).await == Outcome::Ok,
        "backup-1 should hold the pin"
    );
    banner("$ pinwarden doctor   (what an operator would see now)");
    let after = doctor(env.clone()).await?;
    anyhow::ensure!(
        after.code() == Some(1),
        "doctor should FAIL on the dead supernode (exit 1), got {after}"
    );
    banner("done: the video survived a lying, then dead, supernode. Stopping the nodes.");
    drop(primary);
    drop(cluster);
    Ok(())
}
