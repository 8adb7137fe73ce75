//! End-to-end benchmarks on real local Kubo nodes and the release `pinwarden` binary, run by
//! `scripts/bench.sh` (which builds both with `cargo build --release`). Not a `[[bench]]`:
//! `cargo test` only compiles it. Figures and targets are recorded in BENCHMARKS.md.
//!
//! * `e2e`: N pins of fresh content each way, side by side: the same calls made directly with a
//!   plain HTTP client (baseline), the library path (`executor::run_round` with the built-in
//!   tank-mode policy, in this process), and the CLI path (`pinwarden pin CID`, one process per
//!   pin). The order cycles through all six permutations; each timed pin starts on an idle
//!   node; after each round of three the pins are removed and the repo garbage-collected
//!   (untimed). Ratios are also paired per round, because the node's time drifts.
//! * `cold`: `pinwarden pin` on an already-pinned CID with and without the precompiled policy
//!   cache, minus the node's own time for the same calls (made by a fresh plain client); then
//!   the same start-up against a refused node, which isolates pinwarden's own time.
//! * `daemon`: `pinwarden serve` on a Unix socket; concurrent clients POST lazy `/v1/pins` with
//!   distinct CIDv1s; enqueue throughput and the daemon's resident memory (VmRSS) with the
//!   queue full. Its primary is a closed loopback port and its policy backs off for an hour,
//!   so queued jobs stay queued. Needs no IPFS node.
//! * `check` (diagnostic, not run by default): the retrievability check alone, pinwarden's
//!   client against the plain one.
//! * `drain` (not run by default): the outage drain on real Kubo nodes, against the backup's
//!   direct pin rate (see `bench_e2e/drain.rs`); `drain-calls`: what each of pinwarden's calls
//!   on the backup costs it, in direct drains.
//! * `psa` (not run by default): the Pinning Services API: durable `POST /pins` throughput
//!   against `/v1` submissions, filtered `GET /pins` over 100,000 requests, and `ipfs pin remote
//!   add` against a direct `ipfs pin add` (see `bench_e2e/psa.rs`).
//! * `notify` (not run by default): completion webhooks off, on (receiver 200) and on (receiver
//!   hanging), `--drain-jobs` lazy jobs at once each (see `bench_e2e/notify.rs`).
//! * `rollout` (not run by default): 10,000 simulated rounds recorded, replayed under two
//!   candidates, and the live decision time with a shadow beside it (see `bench_e2e/rollout.rs`).
//! * `policy-load` (not run by default): `/v1/health` latency while 20 lazy jobs drain under a
//!   clean, a slow, a slow-shadowed and a shadowed policy, and the live decision time
//!   with a shadow (see `bench_e2e/policy_load.rs`).
//! * `cluster` (not run by default): time to replication-min on an IPFS Cluster tier against
//!   `ipfs-cluster-ctl pin add --wait` on the same cluster (see `bench_e2e/cluster.rs`); the run
//!   moves to a private network namespace.
//! * `size` (not run by default: about 25 minutes, a few GB of temporary space): pin + verify +
//!   check against the content's size, locally, at `--rtt-ms` and over bitswap, next to a direct
//!   baseline (see `bench_e2e/size.rs`).
//!
//! Each part that needs a node starts Kubo nodes of its own (`pinwarden-testkit`), stopped
//! when the part ends.
//!
//! Usage: `bench_e2e [--bin PATH] [--only e2e,cold,daemon,check,size,drain,drain-calls,psa,notify,policy-load,rollout,cluster] [--pins N] [--size-kb K]
//! [--segments S] [--cold-runs N] [--jobs N] [--clients N] [--raw] [--sizes MB,MB,..]
//! [--rtt-ms MS] [--transfer-timeout-s S] [--cidv0] [--drain-jobs N] [--drain-reps R]
//! [--drain-against PATH] [--busy M]`

use anyhow::{Context, Result, anyhow, bail, ensure};
use pinwarden::executor::{RoundEnd, RoundLimits, Topology, run_round};
use pinwarden::kubo::KuboClient;
use pinwarden::policy::contract::Job;
use pinwarden::policy::{PolicyEngine, Registry};
use pinwarden::{Action, Role};
use pinwarden_testkit::{IpfsCluster, make_hls_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "bench_e2e/cluster.rs"]
mod cluster;
#[path = "bench_e2e/drain.rs"]
mod drain;
#[path = "bench_e2e/notify.rs"]
mod notify;
#[path = "bench_e2e/policy_load.rs"]
mod policy_load;
#[path = "bench_e2e/psa.rs"]
mod psa;
#[path = "bench_e2e/rollout.rs"]
mod rollout;
#[path = "bench_e2e/size.rs"]
mod size;

/// Multicodec of raw blocks (leaves: no links to follow).
const RAW: u64 = 0x55;

struct Args {
    bin: PathBuf,
    only: Vec<String>,
    pins: usize,
    size_kb: usize,
    segments: usize,
    cold_runs: usize,
    jobs: u64,
    clients: usize,
    /// Print every sample, in run order.
    raw: bool,
    /// `size`: the sets' sizes, in MB (10^6 bytes).
    sizes: Vec<u64>,
    /// `size`: the delay the proxies add to every request.
    rtt_ms: u64,
    /// `size`: the bound on the baseline's `pin/add` (pinwarden's default pin timeout).
    transfer_timeout_s: u64,
    /// `size`: CIDv0 sets (Kubo's CLI), local rows only.
    cidv0: bool,
    /// `drain`: lazy jobs drained behind a stalling primary (and as many pinned directly);
    /// `notify`, `policy-load`: lazy jobs at once. Absent: each part's own default.
    drain_jobs: Option<usize>,
    /// `drain`: repetitions of bare, pinwarden and gated drains.
    drain_reps: usize,
    /// `drain`: another pinwarden binary (an earlier commit's, say) drained right after `bin`
    /// in every repetition, for an A/B on the same nodes.
    drain_against: Option<PathBuf>,
    /// `policy-load`: the slow policy's busy work per decision (millions of steps).
    busy: u64,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            bin: default_bin()?,
            only: vec!["e2e".into(), "cold".into(), "daemon".into()],
            pins: 30,
            size_kb: 4096,
            segments: 8,
            cold_runs: 20,
            jobs: 100_000,
            clients: 8,
            raw: false,
            sizes: vec![100, 600, 2500],
            rtt_ms: 30,
            transfer_timeout_s: 300,
            cidv0: false,
            drain_jobs: None,
            drain_reps: 3,
            drain_against: None,
            busy: 30,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
            match flag.as_str() {
                "--bin" => args.bin = PathBuf::from(value()?),
                "--only" => args.only = value()?.split(',').map(str::to_string).collect(),
                "--pins" => args.pins = value()?.parse()?,
                "--size-kb" => args.size_kb = value()?.parse()?,
                "--segments" => args.segments = value()?.parse()?,
                "--cold-runs" => args.cold_runs = value()?.parse()?,
                "--jobs" => args.jobs = value()?.parse()?,
                "--clients" => args.clients = value()?.parse()?,
                "--raw" => args.raw = true,
                "--sizes" => {
                    args.sizes = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--rtt-ms" => args.rtt_ms = value()?.parse()?,
                "--transfer-timeout-s" => args.transfer_timeout_s = value()?.parse()?,
                "--cidv0" => args.cidv0 = true,
                "--drain-jobs" => args.drain_jobs = Some(value()?.parse()?),
                "--drain-reps" => args.drain_reps = value()?.parse()?,
                "--drain-against" => {
                    let path = PathBuf::from(value()?);
                    args.drain_against = Some(std::fs::canonicalize(&path).with_context(|| {
                        format!("--drain-against: {} not found", path.display())
                    })?)
                }
                "--busy" => args.busy = value()?.parse()?,
                other => {
                    bail!("unknown argument {other} (see the comment at the top of bench_e2e.rs)")
                }
            }
        }
        // Absolute: the CLI runs with its data directory as working directory.
        args.bin = std::fs::canonicalize(&args.bin).with_context(|| {
            format!(
                "{} not found: build it with `cargo build --release -p pinwarden`",
                args.bin.display()
            )
        })?;
        Ok(args)
    }

    fn wants(&self, part: &str) -> bool {
        self.only.iter().any(|p| p == part)
    }

    fn transfer_timeout(&self) -> Duration {
        Duration::from_secs(self.transfer_timeout_s)
    }
}

/// The `pinwarden` binary next to `examples/` (the same profile this example was built with).
fn default_bin() -> Result<PathBuf> {
    std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("pinwarden"))
        .ok_or_else(|| anyhow!("cannot locate the pinwarden binary"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse()?;
    if args.wants("cluster") || args.wants("cluster-drill") {
        // IPFS Cluster starts NAT port mapping: the whole run moves to a private namespace.
        pinwarden_testkit::ipfs_cluster::reexec_in_private_netns()?;
    }
    println!("pinwarden binary: {}", args.bin.display());
    println!("load before: {}", loadavg());
    // Each part gets a Kubo node of its own, with a fresh repo.
    for part in ["e2e", "cold", "check"] {
        if !args.wants(part) {
            continue;
        }
        let cluster = IpfsCluster::start(1)
            .await
            .context("starting a Kubo node (run scripts/setup.sh first)")?;
        let api = cluster.api_url(0);
        println!("\nKubo node up for {part}: {api} (load {})", loadavg());
        match part {
            "e2e" => e2e(&args, &api).await?,
            "cold" => cold_start(&args, &api).await?,
            _ => check_breakdown(&args, &api).await?,
        }
        drop(cluster);
    }
    if args.wants("daemon") {
        daemon(&args).await?;
    }
    if args.wants("size") {
        size::size(&args).await?;
    }
    if args.wants("drain-calls") {
        drain::calls(&args).await?;
    }
    if args.wants("drain") {
        drain::drain(&args).await?;
    }
    if args.wants("psa") {
        psa::psa(&args).await?;
    }
    if args.wants("notify") {
        notify::notify(&args).await?;
    }
    if args.wants("policy-load") {
        policy_load::policy_load(&args).await?;
    }
    if args.wants("rollout") {
        // Simulated rounds start runtimes of their own: not inside this one.
        std::thread::spawn(|| rollout::rollout(10_000))
            .join()
            .map_err(|_| anyhow!("the rollout part panicked"))??;
    }
    if args.wants("cluster") {
        cluster::cluster(&args).await?;
        cluster::drill(&args).await?;
    } else if args.wants("cluster-drill") {
        cluster::drill(&args).await?;
    }
    println!("\nload after: {}", loadavg());
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// A plain HTTP client making the same Kubo RPC calls pinwarden makes: the baseline.

/// The baselines' HTTP client. js-ipfs closes idle keep-alive connections after 5 s; stay
/// below, as pinwarden does.
fn rpc_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(4))
        .build()?)
}

/// `{api}/api/v0/{path}?{args}`.
fn rpc_url(api: &str, path: &str, args: &[(&str, &str)]) -> Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(&format!("{}/api/v0/{path}", api.trim_end_matches('/')))?;
    if !args.is_empty() {
        url.query_pairs_mut().extend_pairs(args);
    }
    Ok(url)
}

struct Direct {
    http: reqwest::Client,
    api: String,
    /// Per-call wall times of the last operations, by call name (for the breakdown).
    phases: std::sync::Mutex<Vec<(&'static str, Duration)>>,
}

impl Direct {
    fn new(api: &str) -> Result<Direct> {
        Ok(Direct {
            http: rpc_client()?,
            api: api.to_string(),
            phases: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn call(&self, path: &str, args: &[(&str, &str)]) -> Result<bytes::Bytes> {
        let response = self
            .http
            .post(rpc_url(&self.api, path, args)?)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status.is_success(),
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }

    fn phase(&self, name: &'static str, took: Duration) {
        if let Ok(mut p) = self.phases.lock() {
            p.push((name, took));
        }
    }

    fn take_phases(&self) -> Vec<(&'static str, Duration)> {
        self.phases
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// `pin/add` then `pin/ls`; fails unless the CID is listed as a recursive pin.
    async fn pin_and_verify(&self, cid: &str) -> Result<()> {
        let t0 = Instant::now();
        self.call(
            "pin/add",
            &[("arg", cid), ("recursive", "true"), ("progress", "true")],
        )
        .await?;
        self.phase("pin", t0.elapsed());
        let t0 = Instant::now();
        let body = self
            .call("pin/ls", &[("arg", cid), ("type", "recursive")])
            .await?;
        self.phase("verify", t0.elapsed());
        let v: Value = serde_json::from_slice(&body)?;
        ensure!(
            v["Keys"].as_object().is_some_and(|k| !k.is_empty()),
            "{cid} not listed by pin/ls"
        );
        Ok(())
    }

    /// The retrievability check a script would make on Kubo: one streamed
    /// `refs?recursive&unique&offline` of the root, which walks the node's own blocks and
    /// reports a missing one as a line with an `Err` (the root's own absence fails the call).
    async fn check_retrievable(&self, cid: &str) -> Result<()> {
        let t0 = Instant::now();
        let body = self
            .call(
                "refs",
                &[
                    ("arg", cid),
                    ("recursive", "true"),
                    ("unique", "true"),
                    ("offline", "true"),
                ],
            )
            .await?;
        for line in body.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value = serde_json::from_slice(line)?;
            if let Some(err) = v["Err"].as_str().filter(|e| !e.is_empty()) {
                bail!("{cid}: a block is missing: {err}");
            }
        }
        self.phase("refs walk", t0.elapsed());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics.

#[derive(Default)]
struct Series(Vec<f64>);

impl Series {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }

    fn pct(&self, p: f64) -> f64 {
        let v = self.sorted();
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    fn row(&self, name: &str, baseline: Option<&Series>) -> String {
        let ratio = |mine: f64, base: f64| format!("{:.3}x", mine / base);
        let (rm, ra) = match baseline {
            Some(b) => (
                ratio(self.median(), b.median()),
                ratio(self.mean(), b.mean()),
            ),
            None => ("1 (baseline)".into(), "1 (baseline)".into()),
        };
        format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {rm} | {ra} |",
            self.median(),
            self.mean(),
            self.pct(0.1),
            self.pct(0.9),
        )
    }
}

const TABLE_HEAD: &str = "| path | median ms | mean ms | p10 ms | p90 ms | ratio (median) | ratio (mean) |\n|---|---|---|---|---|---|---|";

// ---------------------------------------------------------------------------------------------
// e2e: host overhead per pin.

#[derive(Clone, Copy, Debug)]
enum Way {
    Direct,
    Library,
    Cli,
}

/// Everything the three ways need, built once.
struct Ways {
    direct: Direct,
    policy: Arc<pinwarden::policy::Policy>,
    fallback: Arc<pinwarden::policy::Policy>,
    topology: Topology,
    limits: RoundLimits,
    bin: PathBuf,
    api: String,
    data: tempfile::TempDir,
    /// Action times of the library path's last rounds, from the executor's history.
    lib_phases: std::sync::Mutex<Vec<(&'static str, Duration)>>,
}

impl Ways {
    fn new(args: &Args, api: &str) -> Result<Ways> {
        let data = tempfile::tempdir()?;
        // The library path as a long-running process has it: one engine, policy and client.
        let engine = PolicyEngine::new(
            pinwarden::policy::engine::SandboxLimits::default(),
            Some(data.path().join("lib-policy-cache")),
        )?;
        let registry = Registry::new(engine);
        let policy = registry.resolve("tank-mode", &[])?;
        let fallback = registry.fallback_for(&[])?;
        let mut topology = Topology::new();
        topology.add(
            "primary",
            Role::Primary,
            Arc::new(KuboClient::new("primary", api, None)?),
        );
        Ok(Ways {
            direct: Direct::new(api)?,
            policy,
            fallback,
            topology,
            limits: RoundLimits::default(),
            bin: args.bin.clone(),
            api: api.to_string(),
            data,
            lib_phases: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// `pinwarden ARGS` with only the environment it needs (primary node, data directory).
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("IPFS_PRIMARY_API", &self.api)
            .env("PINWARDEN_DATA_DIR", self.data.path())
            .current_dir(self.data.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Pins `cid` one way; returns (time to the end of `pin ls`, total) for the baseline and
    /// (total, total) for the others.
    async fn pin(&self, way: Way, cid: &str) -> Result<(Duration, Duration)> {
        let t0 = Instant::now();
        match way {
            Way::Direct => {
                self.direct.pin_and_verify(cid).await?;
                let pinned = t0.elapsed();
                self.direct.check_retrievable(cid).await?;
                Ok((pinned, t0.elapsed()))
            }
            Way::Library => {
                let job = Job {
                    cid: cid.to_string(),
                    job_id: format!("bench-{cid}"),
                    size_bytes: 0,
                    lazy: false,
                    failed_rounds: 0,
                };
                let result = run_round(
                    &self.policy,
                    &self.fallback,
                    &job,
                    &[],
                    &self.topology,
                    &self.limits,
                )
                .await;
                let took = t0.elapsed();
                let mut actions = Duration::ZERO;
                let mut phases = Vec::new();
                for e in &result.history {
                    let ms = e.ended_ms.unwrap_or(e.started_ms) - e.started_ms;
                    let d = Duration::from_millis(ms);
                    actions += d;
                    phases.push((
                        match e.action {
                            Action::Pin(_) => "pin",
                            Action::Verify(_) => "verify",
                            Action::CheckRetrievable(_) => "check-retrievable",
                            _ => "other actions",
                        },
                        d,
                    ));
                }
                phases.push(("outside actions", took.saturating_sub(actions)));
                if let Ok(mut p) = self.lib_phases.lock() {
                    p.extend(phases);
                }
                ensure!(
                    result.status == RoundEnd::Pinned,
                    "library pin of {cid} ended {}: {:?}",
                    result.status,
                    result.reason
                );
                Ok((took, took))
            }
            Way::Cli => {
                let took = run_cli(self.cli(&["pin", cid])).await?;
                Ok((took, took))
            }
        }
    }
}

/// Runs a `pinwarden` command to completion; its wall time, or an error with its stderr.
async fn run_cli(cmd: Command) -> Result<Duration> {
    run_cli_expecting(cmd, 0).await
}

/// Runs a `pinwarden` command to completion, expecting exit status `code`; its wall time.
async fn run_cli_expecting(mut cmd: Command, code: i32) -> Result<Duration> {
    tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let out = cmd.output()?;
        let took = t0.elapsed();
        ensure!(
            out.status.code() == Some(code),
            "{cmd:?}: {} (expected exit {code})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(took)
    })
    .await?
}

/// The six orders of the three ways.
const PERMUTATIONS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [1, 2, 0],
    [2, 0, 1],
    [0, 2, 1],
    [2, 1, 0],
    [1, 0, 2],
];

/// Pause before each timed operation, so the node starts each one idle.
const SETTLE: Duration = Duration::from_millis(100);

/// Unpins `cids` and collects garbage, untimed: the node's repo stays the same size from one
/// iteration to the next (a node's walks and listings slow down as its repo grows: without this
/// the drift would drown the figures).
async fn forget(node: &KuboClient, cids: &[String]) -> Result<()> {
    for cid in cids {
        node.pin_rm(cid).await?;
    }
    node.repo_gc().await?;
    Ok(())
}

async fn fresh(uploader: &KuboClient, args: &Args) -> Result<String> {
    let (_tmp, dir) = make_hls_dir("rendition", args.size_kb << 10, args.segments)?;
    Ok(uploader.add_dir(&dir).await?)
}

async fn e2e(args: &Args, api: &str) -> Result<()> {
    println!(
        "\n== e2e: {} pins of fresh {} KiB HLS directories ({} segments) each way, interleaved",
        args.pins, args.size_kb, args.segments
    );
    let uploader = KuboClient::new("uploader", api, None)?;
    let ways = Ways::new(args, api)?;
    let order = [Way::Direct, Way::Library, Way::Cli];
    // Warm-up, not measured: fills the CLI's policy cache, opens pooled connections, lets
    // pinwarden's client learn the node's flavour.
    let mut warm_up = Vec::new();
    for way in order {
        let cid = fresh(&uploader, args).await?;
        ways.pin(way, &cid).await?;
        warm_up.push(cid);
    }
    forget(&uploader, &warm_up).await?;

    let mut base_min = Series::default();
    let mut base_full = Series::default();
    let mut lib = Series::default();
    let mut cli = Series::default();
    let mut direct_phases: BTreeMap<&str, Series> = BTreeMap::new();
    let mut lib_phases: BTreeMap<&str, Series> = BTreeMap::new();
    ways.direct.take_phases();
    ways.lib_phases.lock().map(|mut p| p.clear()).ok();
    for i in 0..args.pins {
        // Fresh content for each way, uploaded (not pinned) before anything is timed.
        let mut cids = Vec::new();
        for _ in 0..3 {
            cids.push(fresh(&uploader, args).await?);
        }
        // Every order in turn, so each way runs first, second and third, and after each other
        // way, equally often (the node may still be busy with what the previous one did).
        let permutation = PERMUTATIONS[i % PERMUTATIONS.len()];
        for (k, cid) in cids.iter().enumerate() {
            let way = order[permutation[k]];
            tokio::time::sleep(SETTLE).await;
            let (pinned, total) = ways.pin(way, cid).await?;
            match way {
                Way::Direct => {
                    base_min.push(pinned);
                    base_full.push(total);
                }
                Way::Library => lib.push(total),
                Way::Cli => cli.push(total),
            }
        }
        forget(&uploader, &cids).await?;
        for (name, d) in ways.direct.take_phases() {
            direct_phases.entry(name).or_default().push(d);
        }
        if let Ok(mut p) = ways.lib_phases.lock() {
            for (name, d) in p.drain(..) {
                lib_phases.entry(name).or_default().push(d);
            }
        }
    }
    println!(
        "\nbaseline: the same calls made directly with a plain HTTP client (pin/add, pin/ls, and the \
         retrievability walk: one offline recursive refs)"
    );
    println!("{TABLE_HEAD}");
    println!(
        "{}",
        base_full.row("direct: pin/add + pin/ls + retrievability", None)
    );
    println!(
        "{}",
        lib.row("pinwarden library (run_round)", Some(&base_full))
    );
    println!(
        "{}",
        cli.row("pinwarden CLI (pinwarden pin CID)", Some(&base_full))
    );
    println!("\nbaseline: pin/add + pin/ls only");
    println!("{TABLE_HEAD}");
    println!("{}", base_min.row("direct: pin/add + pin/ls", None));
    println!(
        "{}",
        lib.row("pinwarden library (run_round)", Some(&base_min))
    );
    println!(
        "{}",
        cli.row("pinwarden CLI (pinwarden pin CID)", Some(&base_min))
    );
    if args.raw {
        println!("\nraw samples (ms, run order):");
        for (name, series) in [("direct", &base_full), ("library", &lib), ("cli", &cli)]
            .into_iter()
            .chain(direct_phases.iter().map(|(n, s)| (*n, s)))
        {
            let v: Vec<String> = series.0.iter().map(|x| format!("{x:.0}")).collect();
            println!("{name}: {}", v.join(" "));
        }
    }
    println!(
        "\nwhere the time goes (medians, ms; the library's from its round history, in whole ms)"
    );
    println!("| step | direct | library |\n|---|---|---|");
    for (name, series) in &direct_phases {
        println!("| direct {name} | {:.2} | |", series.median());
    }
    for (name, series) in &lib_phases {
        println!("| library {name} | | {:.2} |", series.median());
    }
    // The node's time drifts as its repo changes, so the headline ratio pairs each pin with the
    // baseline pin of the same iteration.
    let (lib_ratio, lib_diff, lib_iqr) = paired(&lib, &base_full);
    let (cli_ratio, cli_diff, cli_iqr) = paired(&cli, &base_full);
    println!(
        "\npaired per iteration (median of ratios [interquartile range], median of differences): \
         library/direct {lib_ratio:.3}x [{:.3}-{:.3}] ({lib_diff:+.2} ms), CLI/direct \
         {cli_ratio:.3}x [{:.3}-{:.3}] ({cli_diff:+.2} ms)",
        lib_iqr.0, lib_iqr.1, cli_iqr.0, cli_iqr.1,
    );
    println!(
        "\nsummary e2e (paired medians, same calls): library/direct {lib_ratio:.3}x [target <= \
         1.05x: {}]; CLI/direct {cli_ratio:.3}x [{}]; library - direct = {lib_diff:+.2} ms/pin, \
         CLI - direct = {cli_diff:+.2} ms/pin",
        met(lib_ratio <= 1.05),
        met(cli_ratio <= 1.05),
    );
    Ok(())
}

/// Median of the per-iteration ratios and differences of `a` against `base`, with the
/// interquartile range of the ratios.
fn paired(a: &Series, base: &Series) -> (f64, f64, (f64, f64)) {
    let ratios = Series(a.0.iter().zip(&base.0).map(|(x, b)| x / b).collect());
    let diffs = Series(a.0.iter().zip(&base.0).map(|(x, b)| x - b).collect());
    (
        ratios.median(),
        diffs.median(),
        (ratios.pct(0.25), ratios.pct(0.75)),
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Diagnostic (`--only check`, not in the default set): the retrievability check alone, on
/// one pinned CID, by pinwarden's client and by the plain one, interleaved.
async fn check_breakdown(args: &Args, api: &str) -> Result<()> {
    use pinwarden::node::Node;
    println!(
        "\n== check: {} retrievability checks each way",
        args.cold_runs
    );
    let uploader = KuboClient::new("uploader", api, None)?;
    let ways = Ways::new(args, api)?;
    let cid = fresh(&uploader, args).await?;
    ways.pin(Way::Direct, &cid).await?;
    let client = KuboClient::new("primary", api, None)?;
    client.check_retrievable(&cid).await;
    let (mut mine, mut plain) = (Series::default(), Series::default());
    for i in 0..args.cold_runs {
        for k in 0..2 {
            tokio::time::sleep(SETTLE).await;
            let t0 = Instant::now();
            if (i + k) % 2 == 0 {
                let outcome = client.check_retrievable(&cid).await;
                ensure!(outcome == pinwarden::Outcome::Ok, "{outcome:?}");
                mine.push(t0.elapsed());
            } else {
                ways.direct.check_retrievable(&cid).await?;
                plain.push(t0.elapsed());
            }
        }
    }
    println!("{TABLE_HEAD}");
    println!("{}", plain.row("plain client: offline refs walk", None));
    println!(
        "{}",
        mine.row("KuboClient::check_retrievable", Some(&plain))
    );
    let phases = ways.direct.take_phases();
    for name in ["refs walk"] {
        let mut s = Series::default();
        for (_, d) in phases.iter().filter(|(n, _)| *n == name) {
            s.push(*d);
        }
        println!("plain {name}: median {:.2} ms", s.median());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// cold: CLI start-up with and without the policy cache.

async fn cold_start(args: &Args, api: &str) -> Result<()> {
    println!(
        "\n== cold start: {} runs of each on an already-pinned CID, interleaved",
        args.cold_runs
    );
    let uploader = KuboClient::new("uploader", api, None)?;
    let ways = Ways::new(args, api)?;
    let cid = fresh(&uploader, args).await?;
    // Pinned once (the node's flavour remembered in the data dir) before anything is timed.
    // Built-ins ship precompiled, so there is no policy cache to fill.
    ways.pin(Way::Cli, &cid).await?;
    let remembered = [
        ways.data.path().join("policy-cache"),
        ways.data.path().join("node-flavours.json"),
    ];
    // A fresh install: nothing remembered in the data dir.
    let forget = || -> Result<()> {
        for path in &remembered {
            if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else if path.exists() {
                std::fs::remove_file(path)
            } else {
                Ok(())
            }
            .with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    };

    let mut node = Series::default();
    let mut id = Series::default();
    let mut floor = Series::default();
    let mut warm = Series::default();
    let mut cold = Series::default();
    for i in 0..args.cold_runs {
        for k in 0..4 {
            tokio::time::sleep(SETTLE).await;
            match (i + k) % 4 {
                0 => {
                    // The node's own time: the same calls on a new connection. (`id` is timed
                    // apart: pinwarden asks it only when its data dir does not know the node.)
                    let t0 = Instant::now();
                    let direct = Direct::new(api)?;
                    let asked = Instant::now();
                    direct.call("id", &[]).await?;
                    id.push(asked.elapsed());
                    let t0 = t0 + asked.elapsed();
                    direct.pin_and_verify(&cid).await?;
                    direct.check_retrievable(&cid).await?;
                    node.push(t0.elapsed());
                }
                1 => floor.push(run_cli(ways.cli(&["config", "show"])).await?),
                2 => warm.push(run_cli(ways.cli(&["pin", &cid])).await?),
                _ => {
                    forget()?;
                    cold.push(run_cli(ways.cli(&["pin", &cid])).await?);
                }
            }
        }
    }
    println!(
        "\nbaseline: the node's own time for the same calls (new client: pin/add, pin/ls, \
         offline refs)"
    );
    println!("{TABLE_HEAD}");
    println!(
        "{}",
        node.row("node's own time (direct, new connection)", None)
    );
    println!(
        "{}",
        floor.row(
            "`pinwarden config show` (process, config; no policy, no node)",
            Some(&node)
        )
    );
    println!(
        "{}",
        warm.row("`pinwarden pin`, data dir knows the node", Some(&node))
    );
    println!(
        "{}",
        cold.row("`pinwarden pin`, fresh data dir (asks `id`)", Some(&node))
    );
    println!(
        "`id` on a new connection (pinwarden asks it only with a fresh data dir, to tell js-ipfs \
         from Kubo): median {:.2} ms",
        id.median()
    );

    // The same start-up with no node to wait for: the primary is a closed loopback port, one
    // attempt, refused at once (exit 1). What is left is pinwarden's own time.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let refused = |cmd: &mut Command| {
        cmd.env("IPFS_PRIMARY_API", format!("http://127.0.0.1:{closed}"))
            .args(["--param", "attempts=1"]);
    };
    let (mut alone_warm, mut alone_cold) = (Series::default(), Series::default());
    for i in 0..args.cold_runs {
        for k in 0..2 {
            let mut cmd = ways.cli(&["pin", &cid]);
            refused(&mut cmd);
            if (i + k) % 2 == 0 {
                alone_warm.push(run_cli_expecting(cmd, 1).await?);
            } else {
                forget()?;
                alone_cold.push(run_cli_expecting(cmd, 1).await?);
            }
        }
    }
    println!(
        "\nwithout a node (primary refused at once; pinwarden's own start-up, policy loading, one \
         decision round)"
    );
    println!("{TABLE_HEAD}");
    println!("{}", floor.row("`pinwarden config show`", None));
    println!(
        "{}",
        alone_warm.row(
            "`pinwarden pin`, node refused, data dir knows the node",
            Some(&floor)
        )
    );
    println!(
        "{}",
        alone_cold.row(
            "`pinwarden pin`, node refused, fresh data dir",
            Some(&floor)
        )
    );
    println!(
        "compiling the policy (without minus with the cache): {:.2} ms",
        alone_cold.median() - alone_warm.median()
    );

    let above = |s: &Series| s.median() - node.median();
    println!(
        "\nsummary cold start (medians above the node's own time): with cache {:+.2} ms \
         [target <= 30 ms: {}]; without cache {:+.2} ms [{}]; process floor (config show) {:.2} ms",
        above(&warm),
        met(above(&warm) <= 30.0),
        above(&cold),
        met(above(&cold) <= 30.0),
        floor.median(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// daemon: enqueue throughput and resident memory.

/// A valid CIDv1 (raw, sha2-256) for `i`.
fn cid_for(i: u64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("pinwarden-bench-{i}"));
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).expect("sha2-256 digest");
    cid::Cid::new_v1(RAW, hash).to_string()
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kb(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The `pinwarden serve` under test; stopped (SIGTERM, then SIGKILL) on drop.
struct Served {
    child: std::process::Child,
}

impl Served {
    /// `pinwarden serve` with `config` written to `dir/pinwarden.toml`, in `dir`, with an empty
    /// environment (but PATH), its output in `dir/serve.log`.
    fn start(bin: &std::path::Path, dir: &std::path::Path, config: &str) -> Result<Served> {
        Served::start_with(bin, dir, config, &[])
    }

    /// [`Served::start`] with `env` set too.
    fn start_with(
        bin: &std::path::Path,
        dir: &std::path::Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<Served> {
        let config_path = dir.join("pinwarden.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("serve.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting pinwarden serve")?;
        Ok(Served { child })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn daemon(args: &Args) -> Result<()> {
    println!(
        "\n== daemon: {} lazy submissions of distinct CIDs by {} concurrent clients",
        args.jobs, args.clients
    );
    let dir = tempfile::tempdir()?;
    // A loopback port nobody listens on: every pin attempt is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = format!(
        r#"data_dir = "{data}"

[[node]]
name = "primary"
url = "http://127.0.0.1:{closed}"
role = "primary"

[policy]
name = "tank-mode"
# One attempt refused, then an hour of backoff: the single running round just waits.
params = {{ attempts = 100, base_delay_ms = 3600000, max_delay_ms = 3600000 }}

[daemon]
concurrent_pins = 1
retention_days = 0
retry_base_ms = 3600000
retry_max_ms = 3600000
watch_ms = 0
"#,
        data = dir.path().display(),
    );
    let served = Served::start(&args.bin, dir.path(), &config)?;
    let pid = served.child.id();
    let socket = dir.path().join("pinwarden.sock");
    let client = || pinwarden::client::DaemonClient::unix(&socket);
    let probe = client()?;
    let mut up = false;
    for _ in 0..200 {
        if probe.health().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        bail!("pinwarden serve did not come up:\n{log}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = memory_kb(pid)?;
    println!(
        "daemon pid {pid}: idle VmRSS {:.1} MiB",
        idle_rss as f64 / 1024.0
    );

    // Cheap to generate, but not free: make the CIDs before the clock starts.
    let cids: Arc<Vec<String>> = Arc::new((0..args.jobs).map(cid_for).collect());
    let next = Arc::new(AtomicU64::new(0));
    // Completion time of every 10,000th submission, to see whether throughput falls as the
    // queue grows.
    let marks = Arc::new(std::sync::Mutex::new(Vec::<(u64, Duration)>::new()));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients.max(1) {
        let daemon = client()?;
        let (cids, next, marks) = (Arc::clone(&cids), Arc::clone(&next), Arc::clone(&marks));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(cid) = cids.get(i as usize) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let request = pinwarden::daemon::wire::SubmitRequest {
                    cid: cid.clone(),
                    job_id: format!("bench-{i}"),
                    size_bytes: 26_214_400,
                    wait: false,
                    timeout_ms: None,
                    notify: None,
                };
                let submitted = daemon.submit(&request).await?;
                ensure!(submitted.accepted_only, "submit {i}: not queued (202)");
                if (i + 1) % 10_000 == 0
                    && let Ok(mut m) = marks.lock()
                {
                    m.push((i + 1, t0.elapsed()));
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let total = t0.elapsed();
    let rate = args.jobs as f64 / total.as_secs_f64();

    let health = serde_json::to_value(probe.health().await?)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, hwm) = memory_kb(pid)?;
    let db_bytes: u64 = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("queue.db"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();

    let mut marks = marks.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    marks.sort();
    let mut previous = (0u64, Duration::ZERO);
    let windows: Vec<String> = marks
        .iter()
        .map(|&(n, at)| {
            let r = (n - previous.0) as f64 / (at - previous.1).as_secs_f64();
            previous = (n, at);
            format!("{}k: {r:.0}/s", n / 1_000)
        })
        .collect();
    println!(
        "| figure | value | target | met |\n|---|---|---|---|\n\
         | enqueue throughput ({} jobs, {} clients) | {rate:.0} jobs/s ({:.3} s in all, {:.1} µs/job) | >= 2,000 jobs/s | {} |\n\
         | resident memory with {} queued | VmRSS {:.1} MiB (peak VmHWM {:.1} MiB; idle {:.1} MiB) | <= 64 MB | {} |",
        args.jobs,
        args.clients,
        total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / args.jobs as f64,
        met(rate >= 2_000.0),
        args.jobs,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        idle_rss as f64 / 1024.0,
        met(rss * 1024 <= 64_000_000),
    );
    println!(
        "throughput per 10,000 (cumulative windows): {}",
        windows.join(", ")
    );
    println!(
        "queue.db + WAL on disk: {:.1} MiB",
        db_bytes as f64 / (1 << 20) as f64
    );
    println!("health after: {}", health["queue"]);
    println!(
        "\nsummary daemon: {rate:.0} jobs/s [target >= 2,000/s: {}]; VmRSS {:.1} MiB with {} queued [target <= 64 MB: {}]",
        met(rate >= 2_000.0),
        rss as f64 / 1024.0,
        args.jobs,
        met(rss * 1024 <= 64_000_000),
    );
    drop(served);
    Ok(())
}
