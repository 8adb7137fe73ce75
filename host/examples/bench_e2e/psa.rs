//! `psa` (not in the default set): the Pinning Services API.
//!
//! * **POST /pins throughput**: `--jobs` requests of distinct CIDs by `--clients` concurrent
//!   HTTP clients on the PSA listener, each answered 202 only once committed (fsynced), against
//!   the same number of `/v1` lazy submissions over TCP by as many clients to the same daemon,
//!   in the same run (the baseline: the same queue, the same group commit). The only node
//!   refuses at once and the policy then backs off for an hour, so rounds cost nothing.
//! * **filtered GET /pins over 100,000 requests** (the POSTs above, topped up to 100,000):
//!   p50/p99 of 500 calls per filter, beside `GET /v1/health` on the same daemon.
//! * **`ipfs pin remote add` to its return** on a small video held only by the client's Kubo
//!   node, against `ipfs pin add` of another such video on pinwarden's node itself (connected
//!   to the client), both through Kubo's CLI, 10 of each.

use super::{Args, Served, cid_for, met};
use anyhow::{Context, Result, anyhow, bail, ensure};
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use pinwarden_testkit::{IpfsCluster, make_hls_dir};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PSA_TOKEN: &str = "bench-psa-token-0123456789";
const V1_TOKEN: &str = "bench-v1-token-0123456789";
/// Requests in the store before the listing is timed.
const LISTED: u64 = 100_000;
const LIST_CALLS: usize = 500;
const REMOTE_RUNS: usize = 10;

fn port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) async fn psa(args: &Args) -> Result<()> {
    throughput_and_listing(args).await?;
    remote_add(args).await
}

async fn throughput_and_listing(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let closed = port()?;
    let (psa_port, v1_port) = (port()?, port()?);
    std::fs::write(dir.path().join("tokens"), format!("bench {PSA_TOKEN}\n"))?;
    let config = format!(
        r#"data_dir = "{data}"

[[node]]
name = "primary"
url = "http://127.0.0.1:{closed}"
role = "primary"

[policy]
name = "tank-mode"
params = {{ attempts = 100, base_delay_ms = 3600000, max_delay_ms = 3600000 }}

[daemon]
listen = "127.0.0.1:{v1_port}"
concurrent_pins = 1
retention_days = 0
retry_base_ms = 3600000
retry_max_ms = 3600000
watch_ms = 0

[psa]
listen = "127.0.0.1:{psa_port}"
tokens_file = "{data}/tokens"
"#,
        data = dir.path().display(),
    );
    let served = Served::start_with(
        &args.bin,
        dir.path(),
        &config,
        &[("PINWARDEN_TOKEN", V1_TOKEN)],
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let psa = format!("http://127.0.0.1:{psa_port}");
    let v1 = format!("http://127.0.0.1:{v1_port}");
    let mut up = false;
    for _ in 0..200 {
        let ok = http
            .get(format!("{psa}/pins"))
            .bearer_auth(PSA_TOKEN)
            .send()
            .await;
        if ok.is_ok_and(|r| r.status().is_success()) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        bail!("pinwarden serve did not come up:\n{log}");
    }

    let n = args.jobs.min(LISTED);
    println!(
        "\n== psa: {n} POST /pins by {} clients, against {n} /v1 lazy submissions over TCP",
        args.clients
    );
    // Alternating halves, so neither side gets the emptier queue: v1, psa, v1, psa.
    let half = n / 2;
    let mut psa_time = Duration::ZERO;
    let mut v1_time = Duration::ZERO;
    for (round, offset) in [(0u64, 0u64), (1, half)] {
        let _ = round;
        v1_time += post_all(
            &http,
            &v1,
            V1_TOKEN,
            true,
            1_000_000 + offset,
            half,
            args.clients,
        )
        .await?;
        psa_time += post_all(&http, &psa, PSA_TOKEN, false, offset, half, args.clients).await?;
    }
    let psa_rate = (2 * half) as f64 / psa_time.as_secs_f64();
    let v1_rate = (2 * half) as f64 / v1_time.as_secs_f64();
    // Top up to LISTED requests for the listing.
    if 2 * half < LISTED {
        post_all(
            &http,
            &psa,
            PSA_TOKEN,
            false,
            2 * half,
            LISTED - 2 * half,
            args.clients,
        )
        .await?;
    }

    println!("\nfiltered GET /pins over {LISTED} requests, {LIST_CALLS} calls each");
    let filters = [
        ("status=queued,pinning&limit=10", "newest 10 open"),
        (
            "status=queued,pinning&name=clip-777&match=ipartial",
            "name, ipartial",
        ),
        (
            "status=queued,pinning&meta=%7B%22app%22%3A%22enc-3%22%7D&limit=10",
            "meta containment",
        ),
        (
            "status=queued,pinning&name=clip-99999&limit=10",
            "name, exact",
        ),
        (
            "status=queued,pinning&before=2100-01-01T00:00:00Z&after=2000-01-01T00:00:00Z&limit=1000",
            "before/after, 1,000 results",
        ),
        ("status=pinned", "the default filter (none pinned)"),
    ];
    println!("| filter | count | p50 | p99 | target p99 <= 50 ms |\n|---|---|---|---|---|");
    let mut worst = Duration::ZERO;
    for (query, what) in filters {
        let (count, p50, p99) =
            timed_gets(&http, &format!("{psa}/pins?{query}"), PSA_TOKEN).await?;
        worst = worst.max(p99);
        println!(
            "| {what} (`{query}`) | {count} | {:.2} ms | {:.2} ms | {} |",
            ms(p50),
            ms(p99),
            met(p99 <= Duration::from_millis(50))
        );
    }
    let (_, h50, h99) = timed_gets(&http, &format!("{v1}/v1/health"), V1_TOKEN).await?;
    println!(
        "| baseline: GET /v1/health, same daemon | - | {:.2} ms | {:.2} ms | - |",
        ms(h50),
        ms(h99)
    );
    println!(
        "\nsummary psa: POST /pins {psa_rate:.0} req/s durable, /v1 submit {v1_rate:.0}/s in the same run ({:.2}x) [target >= 2,000/s: {}]; filtered list p99 at most {:.2} ms over {LISTED} [target <= 50 ms: {}]",
        psa_rate / v1_rate,
        met(psa_rate >= 2_000.0),
        ms(worst),
        met(worst <= Duration::from_millis(50)),
    );
    drop(served);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `count` POSTs (`/v1/pins` or `/pins`) of CIDs `first..first+count` by `clients` clients;
/// the time they took. Every answer must be 202.
async fn post_all(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    v1: bool,
    first: u64,
    count: u64,
    clients: usize,
) -> Result<Duration> {
    let next = Arc::new(AtomicU64::new(first));
    let end = first + count;
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (http, next) = (http.clone(), Arc::clone(&next));
        let (base, token) = (base.to_string(), token.to_string());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<(), anyhow::Error>(());
                }
                let (url, body) = if v1 {
                    (
                        format!("{base}/v1/pins"),
                        serde_json::json!({"cid": cid_for(i), "job_id": format!("bench-{i}")}),
                    )
                } else {
                    (
                        format!("{base}/pins"),
                        serde_json::json!({"cid": cid_for(i), "name": format!("clip-{i}"), "meta": {"app": format!("enc-{}", i % 10)}}),
                    )
                };
                let reply = http
                    .post(url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await?;
                ensure!(reply.status().as_u16() == 202, "POST {i}: {}", reply.status());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(t0.elapsed())
}

/// [`LIST_CALLS`] GETs of `url`, one at a time: the `count` answered, p50 and p99.
async fn timed_gets(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(String, Duration, Duration)> {
    let mut times = Vec::with_capacity(LIST_CALLS);
    let mut count = String::from("-");
    for _ in 0..LIST_CALLS {
        let t = Instant::now();
        let reply = http.get(url).bearer_auth(token).send().await?;
        ensure!(reply.status().is_success(), "GET {url}: {}", reply.status());
        let body: serde_json::Value = serde_json::from_slice(&reply.bytes().await?)?;
        times.push(t.elapsed());
        if let Some(c) = body.get("count") {
            count = c.to_string();
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok((count, at(0.5), at(0.99)))
}

/// `ipfs pin remote add` through pinwarden against a direct `ipfs pin add`, both on node A,
/// each of fresh content held only by node B.
async fn remote_add(args: &Args) -> Result<()> {
    println!(
        "\n== psa: `ipfs pin remote add` of a {} KiB video to its return, against `ipfs pin add` on the same node",
        args.size_kb
    );
    let cluster = IpfsCluster::start(2)
        .await
        .context("starting two Kubo nodes")?;
    let a = KuboClient::new("a", &cluster.api_url(0), None)?;
    let b = KuboClient::new("b", &cluster.api_url(1), None)?;
    let dir = tempfile::tempdir()?;
    let psa_port = port()?;
    std::fs::write(dir.path().join("tokens"), format!("bench {PSA_TOKEN}\n"))?;
    let config = format!(
        "data_dir = \"{data}\"\n\n[[node]]\nname = \"primary\"\nurl = \"{api}\"\nrole = \"primary\"\n\n\
         [psa]\nlisten = \"127.0.0.1:{psa_port}\"\ntokens_file = \"{data}/tokens\"\n",
        data = dir.path().display(),
        api = cluster.api_url(0),
    );
    let served = Served::start(&args.bin, dir.path(), &config)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ipfs = |i: usize, argv: Vec<String>| {
        let mut cmd = tokio::process::Command::from(cluster.cli(i));
        cmd.args(&argv).kill_on_drop(true);
        async move {
            let t = Instant::now();
            let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
                .await
                .map_err(|_| anyhow!("ipfs {argv:?} timed out"))??;
            ensure!(
                out.status.success(),
                "ipfs {argv:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok::<Duration, anyhow::Error>(t.elapsed())
        }
    };
    let endpoint = format!("http://127.0.0.1:{psa_port}");
    ipfs(
        1,
        [
            "pin", "remote", "service", "add", "pw", &endpoint, PSA_TOKEN,
        ]
        .map(String::from)
        .to_vec(),
    )
    .await?;
    let b_addrs = b
        .swarm_addrs()
        .await
        .map_err(|o| anyhow!("b's addresses: {o:?}"))?;
    let video = || -> Result<(tempfile::TempDir, std::path::PathBuf)> {
        make_hls_dir("remote", args.size_kb * 1024, args.segments)
    };
    let (mut remote, mut direct) = (Vec::new(), Vec::new());
    for i in 0..REMOTE_RUNS {
        // pinwarden: B asks, A fetches from B through the request's origins.
        let (_t1, d1) = video()?;
        let cid = b.add_dir(&d1).await?;
        remote.push(
            ipfs(
                1,
                vec![
                    "pin".into(),
                    "remote".into(),
                    "add".into(),
                    "--service=pw".into(),
                    format!("--name=v{i}"),
                    cid.clone(),
                ],
            )
            .await?,
        );
        ensure!(
            a.verify(&cid).await == pinwarden::Outcome::Ok,
            "run {i}: not pinned on A"
        );
        // Direct: A, connected to B, pins another fresh video itself.
        let (_t2, d2) = video()?;
        let cid = b.add_dir(&d2).await?;
        let _ = a.connect(&b_addrs).await;
        direct.push(ipfs(0, vec!["pin".into(), "add".into(), cid]).await?);
    }
    remote.sort();
    direct.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "| figure | pinwarden (`ipfs pin remote add`) | direct (`ipfs pin add` on A) | ratio |\n|---|---|---|---|\n\
         | median of {REMOTE_RUNS}, {} KiB | {:.0} ms | {:.0} ms | {:.2}x |\n| min | {:.0} ms | {:.0} ms | |\n| max | {:.0} ms | {:.0} ms | |",
        args.size_kb,
        ms(median(&remote)),
        ms(median(&direct)),
        median(&remote).as_secs_f64() / median(&direct).as_secs_f64(),
        ms(remote[0]),
        ms(direct[0]),
        ms(remote[remote.len() - 1]),
        ms(direct[direct.len() - 1]),
    );
    println!(
        "\nsummary psa remote add: {:.0} ms median against {:.0} ms direct ({:.2}x); Kubo's client polls every 500 ms",
        ms(median(&remote)),
        ms(median(&direct)),
        median(&remote).as_secs_f64() / median(&direct).as_secs_f64()
    );
    drop(served);
    Ok(())
}
