//! The Kubo RPC client against real Kubo daemons, directly and through a fault-injecting
//! proxy. A dedicated cluster of three daemons, not the shared one: the cases collect garbage
//! and remove blocks on its nodes, and the test checks that the daemons are gone once it has
//! stopped them. A single test runs the cases in order.
//!
//! Needs Kubo built by `scripts/setup.sh`.

use crate::support::nodes::{
    assert_missing_without_fetching, client, ghost_cid, required_cluster, step,
};
use crate::support::{FaultProxy, IpfsCluster, Mode, make_hls_dir};
use futures::FutureExt;
use pinwarden::Outcome;
use pinwarden::kubo::{Auth, KuboClient, KuboConfig, KuboError, ObjectKind};
use pinwarden::node::Node;
use pinwarden::policy::contract::HttpError;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

const PIN_STALL: Duration = Duration::from_secs(15);

/// A client with short bounds, for the fault cases.
fn quick_client(url: &str, auth: Option<Auth>) -> KuboClient {
    let cfg = KuboConfig {
        connect_timeout: Duration::from_secs(1),
        call_timeout: Duration::from_secs(1),
        ..KuboConfig::default()
    };
    KuboClient::with_config("via-proxy", url, auth, cfg).expect("client")
}

/// Is the block in the node's repo? Asked with a raw `refs/local`, independently of the client.
async fn has_block_locally(api: &str, cid: &str) -> bool {
    let wanted = cid::Cid::try_from(cid).expect("cid").hash().to_bytes();
    let body = reqwest::Client::new()
        .post(format!("{api}/api/v0/refs/local"))
        .send()
        .await
        .expect("refs/local")
        .text()
        .await
        .expect("refs/local body");
    body.lines().any(|line| {
        let v: serde_json::Value = serde_json::from_str(line).expect("refs/local line");
        v["Ref"]
            .as_str()
            .and_then(|r| cid::Cid::try_from(r).ok())
            .is_some_and(|c| c.hash().to_bytes() == wanted)
    })
}

/// A raw RPC call, independent of the client under test: the NDJSON lines of the answer.
async fn raw_lines(api: &str, call: &str) -> Vec<serde_json::Value> {
    let response = reqwest::Client::new()
        .post(format!("{api}/api/v0/{call}"))
        .send()
        .await
        .expect(call);
    assert!(
        response.status().is_success(),
        "{call}: {}",
        response.status()
    );
    let body = response.text().await.expect(call);
    body.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_client_against_kubo() {
    let t0 = Instant::now();
    let mut cluster = required_cluster(3).await;
    step(t0, "3 Kubo daemons ready");
    let pids = cluster.pids();
    assert_eq!(pids.len(), 3);

    let result = AssertUnwindSafe(cases(&cluster, t0)).catch_unwind().await;
    if result.is_err() {
        eprintln!("{}", cluster.logs());
    }
    cluster.shutdown();
    for pid in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "daemon {pid} still running after shutdown"
        );
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    step(t0, "daemons stopped");
}

async fn cases(cluster: &IpfsCluster, t0: Instant) {
    let primary = client(cluster, 0, "primary");
    let backup = client(cluster, 1, "backup");
    let bystander = client(cluster, 2, "bystander");

    // --- id, add, object type ---
    let info = primary.id().await.expect("id");
    assert!(info.agent_version.starts_with("kubo/"), "{info:?}");
    let (_tmp, dir) = make_hls_dir("hls", 3 << 20, 6).expect("test data");
    let root = primary.add_dir(&dir).await.expect("add_dir");
    step(t0, &format!("added {} as {root}", dir.display()));
    assert!(
        root.starts_with("bafybei"),
        "a CIDv1 dag-pb directory: {root}"
    );
    assert_eq!(primary.object_type(&root).await, Ok(ObjectKind::Directory));
    let playlist = format!("/ipfs/{root}/index.m3u8");
    assert_eq!(primary.object_type(&playlist).await, Ok(ObjectKind::File));

    // --- pin, verify, retrievable on the primary (`add` uploads without pinning) ---
    assert_eq!(primary.verify(&root).await, Outcome::NotPinned);
    assert_eq!(primary.pin(&root, PIN_STALL).await, Outcome::Ok);
    assert_eq!(primary.verify(&root).await, Outcome::Ok);
    assert_eq!(primary.check_retrievable(&root).await, Outcome::Ok);
    step(t0, "primary: pin, verify, check_retrievable ok");

    // --- swarm addresses and connect ---
    let addrs = primary.swarm_addrs().await.expect("swarm_addrs");
    assert!(
        addrs[0].starts_with("/ip4/127.0.0.1/") && addrs[0].ends_with(&format!("/p2p/{}", info.id)),
        "{addrs:?}"
    );
    assert_eq!(bystander.connect(&addrs).await, Outcome::Ok);

    // --- a node connected to the provider but without the content: not pinned, and the
    //     retrievability check neither hangs nor fetches ---
    assert_eq!(bystander.verify(&root).await, Outcome::NotPinned);
    assert_missing_without_fetching(&bystander, &root).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !has_block_locally(&cluster.api_url(2), &root).await,
        "check_retrievable fetched the root block"
    );
    step(t0, "bystander: NotPinned, Unretrievable without fetching");

    // --- a backup connected to the primary pins over bitswap ---
    assert_eq!(backup.connect(&addrs).await, Outcome::Ok);
    assert_eq!(backup.pin(&root, PIN_STALL).await, Outcome::Ok);
    assert_eq!(backup.verify(&root).await, Outcome::Ok);
    assert_eq!(backup.check_retrievable(&root).await, Outcome::Ok);
    step(t0, "backup: pinned over bitswap, verified, retrievable");

    // --- a pin nobody can serve stalls (Kubo's progress lines stay flat) ---
    let ghost = ghost_cid();
    let started = Instant::now();
    let stall = Duration::from_millis(1500);
    assert_eq!(bystander.pin(&ghost, stall).await, Outcome::Stalled);
    let took = started.elapsed();
    assert!(
        took >= stall && took < stall + Duration::from_secs(2),
        "{took:?}"
    );
    step(t0, "bystander: pin of unavailable content stalled");

    proxy_cases(cluster, &root, t0).await;

    // --- unpin and collect garbage on the backup: the blocks go, and the check (on a node
    //     still connected to the primary) reports it rather than fetching them back ---
    backup.pin_rm(&root).await.expect("pin_rm");
    assert_eq!(backup.verify(&root).await, Outcome::NotPinned);
    let removed = backup.repo_gc().await.expect("repo_gc");
    assert!(
        removed >= 7,
        "6 segments and a playlist at least: {removed}"
    );
    let outcome = backup.check_retrievable(&root).await;
    assert!(matches!(outcome, Outcome::Unretrievable(_)), "{outcome:?}");
    assert!(!has_block_locally(&cluster.api_url(1), &root).await);
    match backup.pin_rm(&root).await {
        Err(KuboError::Http {
            status: 500,
            message,
        }) => {
            assert!(message.contains("not pinned"), "{message}")
        }
        other => panic!("second pin_rm: {other:?}"),
    }
    step(t0, "backup: pin_rm, repo_gc, Unretrievable");

    // --- a DAG with its root present but one leaf deleted: the walk reaches the leaf ---
    let (_tmp2, dir2) = make_hls_dir("damaged", 1 << 20, 3).expect("test data");
    let root2 = bystander.add_dir(&dir2).await.expect("add_dir");
    let refs = raw_lines(
        &cluster.api_url(2),
        &format!("refs?arg={root2}&recursive=true"),
    )
    .await;
    let leaf = refs
        .last()
        .and_then(|l| l["Ref"].as_str())
        .expect("a leaf")
        .to_string();
    assert!(leaf.starts_with("bafkrei"), "a raw leaf: {leaf}");
    assert_eq!(bystander.check_retrievable(&root2).await, Outcome::Ok);
    // `add` does not pin (pinning is the policy's job), so the leaf can be deleted as it is.
    assert_eq!(bystander.verify(&root2).await, Outcome::NotPinned);
    raw_lines(&cluster.api_url(2), &format!("block/rm?arg={leaf}")).await;
    let outcome = bystander.check_retrievable(&root2).await;
    assert_eq!(
        outcome,
        Outcome::Unretrievable(format!("block {leaf} missing"))
    );
    step(t0, "bystander: a missing leaf deep in the DAG is found");

    // --- nothing listening ---
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let nowhere = quick_client(&format!("http://127.0.0.1:{closed}"), None);
    assert!(matches!(
        nowhere.verify(&root).await,
        Outcome::Unreachable(_)
    ));
    assert!(matches!(
        nowhere.pin(&root, stall).await,
        Outcome::Unreachable(_)
    ));
}

/// Every proxy mode in front of the bystander (which has not pinned `root`).
async fn proxy_cases(cluster: &IpfsCluster, root: &str, t0: Instant) {
    let proxy = FaultProxy::start(&cluster.api_url(2)).await.expect("proxy");
    let via = quick_client(&proxy.url(), Some(Auth::Bearer("s3cret".into())));
    let short_stall = Duration::from_secs(1);

    // Pass: the node's own answers, and the credentials on every request.
    assert_eq!(via.verify(root).await, Outcome::NotPinned);
    assert_eq!(proxy.count("/api/v0/pin/ls"), 1);
    assert_eq!(
        proxy.authorizations().last().cloned().flatten().as_deref(),
        Some("Bearer s3cret")
    );
    let basic = quick_client(
        &proxy.url(),
        Some(Auth::Basic {
            user: "ops".into(),
            password: "pw".into(),
        }),
    );
    assert_eq!(basic.verify(root).await, Outcome::NotPinned);
    assert_eq!(
        proxy.authorizations().last().cloned().flatten().as_deref(),
        Some("Basic b3BzOnB3")
    );

    // Refuse → Unreachable, for every kind of call.
    proxy.set_mode(Mode::Refuse).await;
    assert!(matches!(via.verify(root).await, Outcome::Unreachable(_)));
    assert!(matches!(
        via.pin(root, short_stall).await,
        Outcome::Unreachable(_)
    ));
    assert!(matches!(
        via.check_retrievable(root).await,
        Outcome::Unreachable(_)
    ));
    assert!(matches!(
        via.swarm_addrs().await,
        Err(Outcome::Unreachable(_))
    ));

    // Back to Pass: the listener is up again.
    proxy.set_mode(Mode::Pass).await;
    assert_eq!(via.verify(root).await, Outcome::NotPinned);

    // Http500 → HttpError with the node-style message.
    proxy.set_mode(Mode::Http500).await;
    let injected = Outcome::HttpError(HttpError {
        status: 500,
        message: "injected failure (fault proxy)".into(),
    });
    assert_eq!(via.verify(root).await, injected);
    assert_eq!(via.pin(root, short_stall).await, injected);
    assert_eq!(
        via.connect(&["/ip4/127.0.0.1/tcp/1/p2p/x".into()]).await,
        injected
    );

    // StallMidStream → Stalled after the stall timeout, although headers and a first progress
    // line arrived.
    proxy.set_mode(Mode::StallMidStream).await;
    let started = Instant::now();
    assert_eq!(via.pin(root, short_stall).await, Outcome::Stalled);
    let took = started.elapsed();
    assert!(
        took >= short_stall && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        via.verify(root).await,
        Outcome::NotPinned,
        "other calls pass"
    );

    // A late failure in the X-Stream-Error trailer → Error.
    proxy
        .set_mode(Mode::PinStreamError("merkledag: not found".into()))
        .await;
    let outcome = via.pin(root, short_stall).await;
    assert!(
        matches!(&outcome, Outcome::Error(m) if m.contains("merkledag: not found")),
        "{outcome:?}"
    );

    // LiePinOk → the pin "succeeds", verify tells the truth.
    proxy.set_mode(Mode::LiePinOk).await;
    let pin_adds = proxy.count("/api/v0/pin/add");
    assert_eq!(via.pin(root, short_stall).await, Outcome::Ok);
    assert_eq!(proxy.count("/api/v0/pin/add"), pin_adds + 1);
    assert_eq!(via.verify(root).await, Outcome::NotPinned);

    // Delay beyond the call timeout → Timeout, on time.
    proxy.set_mode(Mode::Delay(Duration::from_secs(3))).await;
    let started = Instant::now();
    assert_eq!(via.verify(root).await, Outcome::Timeout);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // ... and a pin (bounded by its stall timeout only) stalls.
    assert_eq!(via.pin(root, short_stall).await, Outcome::Stalled);

    proxy.set_mode(Mode::Pass).await;
    assert_eq!(via.verify(root).await, Outcome::NotPinned);

    // A provider hint's addresses: those of the client's last `id`, whatever asked it (here,
    // as for a first pin, to learn the node's flavour), reused even while the node hangs.
    let asked = via.id().await.expect("id");
    let ids = proxy.count("/api/v0/id");
    let addrs = via.swarm_addrs().await.expect("swarm addresses");
    assert_eq!(addrs, asked.addresses);
    assert_eq!(proxy.count("/api/v0/id"), ids, "no id for the first hint");
    proxy.set_mode(Mode::Delay(Duration::from_secs(3))).await;
    assert_eq!(via.swarm_addrs().await, Ok(addrs.clone()));
    assert_eq!(proxy.count("/api/v0/id"), ids, "no id while the node hangs");
    // Past their time, a refresh that hangs ends in the known addresses (after its 1 s bound),
    // and the next hints use them without asking again for a while.
    let short = KuboClient::with_config(
        "short-ttl",
        &proxy.url(),
        None,
        KuboConfig {
            swarm_addrs_ttl: Duration::from_millis(100),
            ..KuboConfig::default()
        },
    )
    .expect("client");
    proxy.set_mode(Mode::Pass).await;
    assert_eq!(short.swarm_addrs().await, Ok(addrs.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.set_mode(Mode::Delay(Duration::from_secs(3))).await;
    let ids = proxy.count("/api/v0/id");
    assert_eq!(
        short.swarm_addrs().await,
        Ok(addrs.clone()),
        "the known ones"
    );
    assert_eq!(
        short.swarm_addrs().await,
        Ok(addrs),
        "not refreshed again at once"
    );
    assert_eq!(proxy.count("/api/v0/id"), ids + 1, "one refresh tried");
    // A failed dial to them makes the next hint ask again.
    proxy.set_mode(Mode::Pass).await;
    via.swarm_addrs_failed();
    let ids = proxy.count("/api/v0/id");
    assert!(via.swarm_addrs().await.is_ok());
    assert_eq!(
        proxy.count("/api/v0/id"),
        ids + 1,
        "asked again after a failed dial"
    );

    proxy.set_mode(Mode::Pass).await;
    step(
        t0,
        &format!("proxy modes ok; requests seen: {:?}", proxy.counts()),
    );
}
