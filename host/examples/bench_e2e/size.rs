//! `size` (not in the default set: about 25 minutes for 100 MB, 600 MB and 2.5 GB, and a few
//! GB of temporary space): pin + verify + check against the content's size, on a real-size HLS
//! rendition set (`make_hls_set`, 4 MiB segments), two Kubo nodes A and B.
//!
//! For each size: `pinwarden add` of the set to A (time, peak RSS), then
//! * **local** (A has every block, unpinned), through a proxy that passes requests as they are,
//!   then one adding `--rtt-ms`: `pinwarden pin` (A the only node) against the direct baseline
//!   made in the same run with a plain client through the same proxy: `pin/add`, `pin/ls`, one
//!   streamed `refs?recursive&unique`;
//! * **bitswap** (B fetches from A through a relay that delays their swarm connection by
//!   `--rtt-ms` per round trip: A announces only the relay), B's RPC behind the delaying proxy: the direct baseline (B freshly
//!   connected to A, `pin/add` bounded by `--transfer-timeout-s`, the default pin timeout; then
//!   `pin/ls`, `refs`), and `pinwarden pin` with tank-mode's defaults, A the primary (its
//!   `pin/add` never finishes: proxy mode `StallMidStream`, so the hedge starts B after 10 s) and
//!   B the backup. B is emptied (`pin/rm`, `repo/gc`) and disconnected from A before each.
//!
//! With `--cidv0`, each set is added with Kubo's own CLI instead (CIDv0, dag-pb leaves: every
//! block has to be read to learn it has no links) and only the local rows are made.
//!
//! RPC counts are the requests the proxies saw; peak RSS is the `pinwarden` process's VmHWM,
//! read every 20 ms while it runs. Each pinwarden run gets a fresh data directory (so the
//! node-health ledger of one run does not steer the next, and the node's flavour is asked once).

use super::{Args, loadavg, memory_kb};
use anyhow::{Context, Result, anyhow, ensure};
use pinwarden_testkit::{
    DelayRelay, FaultProxy, IpfsCluster, Mode, add_with_kubo_cli, make_hls_set,
};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One row of the results.
struct Row {
    size: String,
    place: String,
    way: &'static str,
    result: String,
    total: Option<Duration>,
    /// pin, verify, check (pinwarden: from its trace; baseline: per call).
    phases: [Option<Duration>; 3],
    rpcs: String,
    rss_mib: Option<f64>,
}

impl Row {
    fn print(&self) -> String {
        let s = |d: Option<Duration>| d.map_or("—".into(), |d| format!("{:.2}", d.as_secs_f64()));
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.size,
            self.place,
            self.way,
            self.result,
            s(self.total),
            s(self.phases[0]),
            s(self.phases[1]),
            s(self.phases[2]),
            self.rpcs,
            self.rss_mib.map_or("—".into(), |m| format!("{m:.1}")),
        )
    }
}

const HEAD: &str = "| size | where | way | result | total s | pin s | verify s | check s | RPCs | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|";

pub(super) async fn size(args: &Args) -> Result<()> {
    println!(
        "\n== size: pin + verify + check of {:?} MB rendition sets; local, at {} ms, over bitswap",
        args.sizes, args.rtt_ms
    );
    // Between the nodes too: A announces only a relay that delays its swarm traffic by half the
    // round trip each way, so B's blocks (and the provider hint) cross it.
    let relay = DelayRelay::bind(Duration::from_millis(args.rtt_ms) / 2).await?;
    let cluster = IpfsCluster::start_with(
        2,
        |i, config| {
            if i == 0 { relay.front(config) } else { Ok(()) }
        },
    )
    .await
    .context("starting two Kubo nodes (run scripts/setup.sh first)")?;
    let (a, b) = (cluster.api_url(0), cluster.api_url(1));
    let rtt = Duration::from_millis(args.rtt_ms);
    let mut rows = Vec::new();
    for &mb in &args.sizes {
        let label = if mb >= 1000 {
            format!("{:.1} GB", mb as f64 / 1000.0)
        } else {
            format!("{mb} MB")
        };
        let (cid, blocks) = if args.cidv0 {
            add_v0(&a, mb, &label, &mut rows).await?
        } else {
            add(args, &a, mb, &label, &mut rows).await?
        };
        println!("{label}: {cid}, {blocks} blocks (load {})", loadavg());
        for delay in [None, Some(rtt)] {
            local(args, &a, &cid, &label, delay, &mut rows).await?;
        }
        if !args.cidv0 {
            bitswap(args, &a, &b, &cid, &label, rtt, &mut rows).await?;
        }
        // A is emptied for the next size (its repo would otherwise hold every set).
        let node = Node::new(&a)?;
        let _ = node.call("pin/rm", &[("arg", &cid)]).await;
        node.call("repo/gc", &[]).await?;
        println!("{HEAD}");
        for row in &rows {
            println!("{}", row.print());
        }
    }
    println!("\nsize, all rows:\n{HEAD}");
    for row in &rows {
        println!("{}", row.print());
    }
    drop(cluster);
    Ok(())
}

/// `pinwarden add` of a fresh set of `mb` MB to A (through a counting proxy); the set's CID and
/// its number of blocks.
async fn add(
    args: &Args,
    a: &str,
    mb: u64,
    label: &str,
    rows: &mut Vec<Row>,
) -> Result<(String, u64)> {
    let (_tmp, dir) = make_hls_set("show", mb * 1_000_000, 4 << 20)?;
    let proxy = FaultProxy::start(a).await?;
    let data = tempfile::tempdir()?;
    let run = pinwarden(
        args,
        &data,
        &[("IPFS_PRIMARY_API", &proxy.url())],
        &["add", &dir.to_string_lossy(), "--json"],
    )
    .await?;
    let cid = run.json["cid"]
        .as_str()
        .ok_or_else(|| anyhow!("pinwarden add: {}", run.stderr))?
        .to_string();
    let blocks = count_blocks(a, &cid).await?;
    rows.push(Row {
        size: label.to_string(),
        place: format!("add to A ({blocks} blocks)"),
        way: "pinwarden add",
        result: "✓".into(),
        total: Some(run.took),
        phases: [None; 3],
        rpcs: calls(&proxy),
        rss_mib: Some(run.peak_mib),
    });
    Ok((cid, blocks))
}

/// The blocks of `cid`'s DAG on node `api`: its unique refs and the root.
async fn count_blocks(api: &str, cid: &str) -> Result<u64> {
    let refs = Node::new(api)?
        .count_lines(
            "refs",
            &[("arg", cid), ("recursive", "true"), ("unique", "true")],
        )
        .await?;
    Ok(refs + 1)
}

/// A fresh set of `mb` MB added to A with Kubo's CLI (CIDv0, dag-pb leaves); its CID and
/// number of blocks.
async fn add_v0(a: &str, mb: u64, label: &str, rows: &mut Vec<Row>) -> Result<(String, u64)> {
    let (tmp, dir) = make_hls_set("show", mb * 1_000_000, 4 << 20)?;
    let api = a.to_string();
    let started = Instant::now();
    let cid = tokio::task::spawn_blocking(move || add_with_kubo_cli(&api, &dir)).await??;
    let took = started.elapsed();
    drop(tmp);
    let blocks = count_blocks(a, &cid).await?;
    rows.push(Row {
        size: label.to_string(),
        place: format!("add to A, CIDv0 ({blocks} blocks)"),
        way: "Kubo CLI add",
        result: "✓".into(),
        total: Some(took),
        phases: [None; 3],
        rpcs: "—".into(),
        rss_mib: None,
    });
    Ok((cid, blocks))
}

/// A has every block: `pinwarden pin` and the direct baseline, through a proxy adding `delay`.
async fn local(
    args: &Args,
    a: &str,
    cid: &str,
    label: &str,
    delay: Option<Duration>,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let mut place = match delay {
        None => "local".to_string(),
        Some(d) => format!("local, {} ms", d.as_millis()),
    };
    if args.cidv0 {
        place.push_str(", CIDv0");
    }
    let proxy = FaultProxy::start(a).await?;
    if let Some(d) = delay {
        proxy.set_mode(Mode::Delay(d)).await;
    }
    let node = Node::new(a)?;
    // Baseline first, then pinwarden; unpinned after each (untimed).
    let via = Node::new(&proxy.url())?;
    proxy.reset_counts();
    let base = via.pin_verify_refs(cid, args.transfer_timeout()).await;
    rows.push(base.row(label, &place, calls(&proxy)));
    let _ = node.call("pin/rm", &[("arg", cid)]).await;

    proxy.reset_counts();
    let data = tempfile::tempdir()?;
    let run = pinwarden(
        args,
        &data,
        &[("IPFS_PRIMARY_API", &proxy.url())],
        &["pin", cid, "--json"],
    )
    .await?;
    rows.push(run.row(label, &place, "primary", calls(&proxy)));
    let _ = node.call("pin/rm", &[("arg", cid)]).await;
    Ok(())
}

/// B fetches from A over bitswap, B behind a proxy adding `rtt`.
async fn bitswap(
    args: &Args,
    a: &str,
    b: &str,
    cid: &str,
    label: &str,
    rtt: Duration,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let place = format!("bitswap A→B, {} ms", rtt.as_millis());
    let (node_a, node_b) = (Node::new(a)?, Node::new(b)?);
    let a_addr = node_a.swarm_addr().await?;
    let a_peer = a_addr
        .rsplit_once("/p2p/")
        .map(|(_, p)| p.to_string())
        .ok_or_else(|| anyhow!("no peer id in {a_addr}"))?;
    let backup = FaultProxy::start(b).await?;
    backup.set_mode(Mode::Delay(rtt)).await;

    // Baseline: a fresh connection, then a plain pin/add.
    empty(&node_b, cid).await?;
    let _ = node_b
        .call("swarm/disconnect", &[("arg", &format!("/p2p/{a_peer}"))])
        .await;
    node_b.call("swarm/connect", &[("arg", &a_addr)]).await?;
    let before = node_b.received().await?;
    let via = Node::new(&backup.url())?;
    backup.reset_counts();
    let mut base = via.pin_verify_refs(cid, args.transfer_timeout()).await;
    let moved = node_b.received().await?.saturating_sub(before);
    if base.failed.is_some() {
        base.note = format!(", B received {} MB", moved / 1_000_000);
    }
    rows.push(base.row(label, &place, calls(&backup)));
    println!(
        "{label} baseline over bitswap: {}",
        rows.last().map(Row::print).unwrap_or_default()
    );

    // pinwarden: A the primary that never finishes a pin, B the backup, not connected to A (its
    // first hint dials; the baseline's connection may have stopped carrying blocks).
    empty(&node_b, cid).await?;
    let _ = node_b
        .call("swarm/disconnect", &[("arg", &format!("/p2p/{a_peer}"))])
        .await;
    let primary = FaultProxy::start(a).await?;
    primary.set_mode(Mode::StallMidStream).await;
    backup.reset_counts();
    let before = node_b.received().await?;
    let data = tempfile::tempdir()?;
    let run = pinwarden(
        args,
        &data,
        &[
            ("IPFS_PRIMARY_API", &primary.url()),
            ("IPFS_BACKUP_APIS", &backup.url()),
        ],
        &["pin", cid, "--json"],
    )
    .await?;
    let moved = node_b.received().await?.saturating_sub(before);
    let mut row = run.row(label, &place, "backup-1", calls(&backup));
    let attempts = run.json["attempts"]["backup-1"].as_u64().unwrap_or(0);
    row.result.push_str(&format!(
        " ({attempts} attempts on B, B received {} MB)",
        moved / 1_000_000
    ));
    rows.push(row);
    println!(
        "{label} pinwarden over bitswap: {}",
        rows.last().map(Row::print).unwrap_or_default()
    );
    if let Some(trace) = run.json["trace"].as_array() {
        for line in trace {
            println!(
                "    {:>9.3}s  {:<9} {}",
                line["t_ms"].as_f64().unwrap_or(0.0) / 1e3,
                line["node"].as_str().unwrap_or("-"),
                line["text"].as_str().unwrap_or("")
            );
        }
    }
    empty(&node_b, cid).await?;
    Ok(())
}

/// Unpins `cid` on the node (if pinned) and collects garbage: the node holds none of it.
async fn empty(node: &Node, cid: &str) -> Result<()> {
    let _ = node.call("pin/rm", &[("arg", cid)]).await;
    node.call("repo/gc", &[]).await?;
    Ok(())
}

fn calls(proxy: &FaultProxy) -> String {
    let counts = proxy.counts();
    let total: usize = counts.values().sum();
    let mut parts: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(path, n)| (path.trim_start_matches("/api/v0/").to_string(), n))
        .collect();
    parts.sort();
    let detail: Vec<String> = parts.iter().map(|(p, n)| format!("{p} {n}")).collect();
    format!("{total} ({})", detail.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The direct baseline: a plain HTTP client.

struct Node {
    http: reqwest::Client,
    api: String,
}

/// What the baseline did.
struct Baseline {
    phases: [Option<Duration>; 3],
    total: Duration,
    failed: Option<String>,
    note: String,
}

impl Baseline {
    fn row(&self, label: &str, place: &str, rpcs: String) -> Row {
        Row {
            size: label.to_string(),
            place: place.to_string(),
            way: "direct: pin/add + pin/ls + refs -r",
            result: match &self.failed {
                None => "✓".into(),
                Some(why) => format!("✗ {why}{}", self.note),
            },
            total: self.failed.is_none().then_some(self.total),
            phases: self.phases,
            rpcs,
            rss_mib: None,
        }
    }
}

impl Node {
    fn new(api: &str) -> Result<Node> {
        Ok(Node {
            http: super::rpc_client()?,
            api: api.to_string(),
        })
    }

    fn post(&self, path: &str, args: &[(&str, &str)]) -> Result<reqwest::RequestBuilder> {
        Ok(self.http.post(super::rpc_url(&self.api, path, args)?))
    }

    async fn call(&self, path: &str, args: &[(&str, &str)]) -> Result<Value> {
        let response = self
            .post(path, args)?
            .timeout(Duration::from_secs(600))
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status.is_success(),
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        // Streamed replies (repo/gc): the last line is enough here.
        let last = body
            .split(|b| *b == b'\n')
            .rev()
            .find(|l| !l.iter().all(u8::is_ascii_whitespace))
            .unwrap_or_default();
        Ok(serde_json::from_slice(last).unwrap_or(Value::Null))
    }

    /// Lines of a streamed reply, counted as they arrive (never held whole).
    async fn count_lines(&self, path: &str, args: &[(&str, &str)]) -> Result<u64> {
        let mut response = self.post(path, args)?.send().await?;
        ensure!(
            response.status().is_success(),
            "{path}: HTTP {}",
            response.status()
        );
        let mut lines = 0u64;
        while let Some(chunk) = response.chunk().await? {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        Ok(lines)
    }

    /// A loopback swarm address of the node, with its peer id.
    async fn swarm_addr(&self) -> Result<String> {
        let id = self.call("id", &[]).await?;
        let peer = id["ID"].as_str().ok_or_else(|| anyhow!("id without ID"))?;
        id["Addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with("/ip4/127.0.0.1/"))
            .map(|a| {
                if a.contains("/p2p/") {
                    a.to_string()
                } else {
                    format!("{a}/p2p/{peer}")
                }
            })
            .ok_or_else(|| anyhow!("no loopback swarm address"))
    }

    /// Bytes received over bitswap so far.
    async fn received(&self) -> Result<u64> {
        let stat = self.call("bitswap/stat", &[]).await?;
        Ok(match &stat["DataReceived"] {
            Value::String(s) => s.parse()?,
            v => v.as_u64().unwrap_or(0),
        })
    }

    /// The baseline: `pin/add` (bounded by `limit`), `pin/ls`, one streamed recursive `refs`.
    async fn pin_verify_refs(&self, cid: &str, limit: Duration) -> Baseline {
        let started = Instant::now();
        let mut phases = [None; 3];
        let failed = async {
            let t = Instant::now();
            let request = self.post(
                "pin/add",
                &[("arg", cid), ("recursive", "true"), ("progress", "true")],
            )?;
            match request.timeout(limit).send().await {
                Ok(r) => {
                    let status = r.status();
                    let body = r.bytes().await?;
                    ensure!(status.is_success(), "pin/add: HTTP {status}");
                    ensure!(
                        String::from_utf8_lossy(&body).contains("Pins"),
                        "pin/add: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Err(e) if e.is_timeout() => {
                    return Err(anyhow!("pin/add unanswered after {} s", limit.as_secs()));
                }
                Err(e) => return Err(e.into()),
            }
            phases[0] = Some(t.elapsed());
            let t = Instant::now();
            let ls = self
                .call("pin/ls", &[("arg", cid), ("type", "recursive")])
                .await?;
            ensure!(
                ls["Keys"].as_object().is_some_and(|k| !k.is_empty()),
                "pin/ls: {ls}"
            );
            phases[1] = Some(t.elapsed());
            let t = Instant::now();
            self.count_lines(
                "refs",
                &[("arg", cid), ("recursive", "true"), ("unique", "true")],
            )
            .await?;
            phases[2] = Some(t.elapsed());
            Ok(())
        }
        .await
        .err()
        .map(|e| e.to_string());
        Baseline {
            phases,
            total: started.elapsed(),
            failed,
            note: String::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pinwarden itself: the release binary, one process per command.

struct Run {
    json: Value,
    stderr: String,
    took: Duration,
    peak_mib: f64,
}

impl Run {
    /// Its row; `node` is the one whose pin, verification and check are broken down.
    fn row(&self, label: &str, place: &str, node: &str, rpcs: String) -> Row {
        let status = self.json["status"].as_str().unwrap_or("?");
        let result = if status == "pinned" {
            format!(
                "✓ on {}",
                self.json["confirmed_nodes"][0].as_str().unwrap_or("?")
            )
        } else {
            let reason = self.json["reason"].as_str().unwrap_or(&self.stderr);
            format!("✗ {}", reason.chars().take(120).collect::<String>())
        };
        Row {
            size: label.to_string(),
            place: place.to_string(),
            way: "pinwarden pin",
            result,
            total: Some(self.took),
            phases: phases(&self.json, node),
            rpcs,
            rss_mib: Some(self.peak_mib),
        }
    }
}

/// From a `--json` trace, for `node`: its last pin (from the start of its first attempt, hints
/// and backoffs included), its verification and its check.
fn phases(json: &Value, node: &str) -> [Option<Duration>; 3] {
    let lines: Vec<(u64, &str)> = json["trace"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["node"].as_str() == Some(node))
        .filter_map(|l| Some((l["t_ms"].as_u64()?, l["text"].as_str()?)))
        .collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .rev()
            .find(|(_, t)| t.starts_with(prefix))
            .map(|(ms, _)| *ms)
    };
    let first = lines.first().map(|(ms, _)| *ms);
    let span = |from: Option<u64>, to: Option<u64>| match (from, to) {
        (Some(a), Some(b)) if b >= a => Some(Duration::from_millis(b - a)),
        _ => None,
    };
    [
        span(first, at("pin -> ok")),
        span(at("verify (pin ls)"), at("verify -> ok")),
        span(at("check retrievable"), at("check-retrievable -> ok")),
    ]
}

/// Runs the release `pinwarden` with `env`, its data directory `data`, watching its peak RSS.
async fn pinwarden(
    args: &Args,
    data: &tempfile::TempDir,
    env: &[(&str, &str)],
    argv: &[&str],
) -> Result<Run> {
    let mut cmd = tokio::process::Command::new(&args.bin);
    cmd.args(argv)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PINWARDEN_DATA_DIR", data.path())
        .current_dir(data.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("running {}", args.bin.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("pinwarden exited at once"))?;
    let output = child.wait_with_output();
    tokio::pin!(output);
    let mut peak_kb = 0u64;
    let output = loop {
        tokio::select! {
            out = &mut output => break out?,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if let Ok((_, hwm)) = memory_kb(pid) {
                    peak_kb = peak_kb.max(hwm);
                }
            }
        }
    };
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    Ok(Run {
        json,
        stderr,
        took,
        peak_mib: peak_kb as f64 / 1024.0,
    })
}
