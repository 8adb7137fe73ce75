//! The smaller js-ipfs smoke set: the Kubo RPC client against two real js-ipfs 0.66 daemons.
//! Every other real-node module runs on Kubo; this one keeps the code that only js-ipfs needs
//! tested on a real js-ipfs node: the flavour read from `id`, the presence walk through
//! `refs/local` (js-ipfs ignores `offline`), and the `bitswap/stat` watch of a pin that streams
//! nothing until it is done.
//!
//! Needs js-ipfs installed: `cd tests/ipfs-node && npm ci --before=2024-12-14`.

use crate::support::nodes::{assert_missing_without_fetching, ghost_cid, step};
use crate::support::{JsIpfsCluster, make_hls_dir};
use pinwarden::Outcome;
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use std::time::{Duration, Instant};

const PIN_STALL: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_client_against_js_ipfs() {
    let t0 = Instant::now();
    pinwarden::install_crypto_provider();
    let cluster = JsIpfsCluster::start(2)
        .await
        .unwrap_or_else(|e| panic!("js-ipfs nodes are required and could not start: {e:#}"));
    step(t0, "2 js-ipfs daemons ready");
    let primary = KuboClient::new("primary", &cluster.api_url(0), None).expect("client");
    let bystander = KuboClient::new("bystander", &cluster.api_url(1), None).expect("client");

    let info = primary.id().await.expect("id");
    assert!(info.agent_version.starts_with("js-ipfs/"), "{info:?}");
    let (_tmp, dir) = make_hls_dir("hls", 1 << 20, 3).expect("test data");
    let root = primary.add_dir(&dir).await.expect("add_dir");
    assert_eq!(primary.verify(&root).await, Outcome::NotPinned);
    assert_eq!(primary.pin(&root, PIN_STALL).await, Outcome::Ok);
    assert_eq!(primary.verify(&root).await, Outcome::Ok);
    assert_eq!(primary.check_retrievable(&root).await, Outcome::Ok);
    step(t0, "primary: pin, verify, check_retrievable ok");

    // Connected to the provider but without the content: the walk through `refs/local`
    // reports it missing without fetching it (js-ipfs' `refs` would).
    let addrs = primary.swarm_addrs().await.expect("swarm_addrs");
    assert_eq!(bystander.connect(&addrs).await, Outcome::Ok);
    assert_missing_without_fetching(&bystander, &root).await;
    assert_eq!(bystander.verify(&root).await, Outcome::NotPinned);
    step(t0, "bystander: Unretrievable without fetching");

    // A pin nobody can serve: js-ipfs sends nothing until done, so the `bitswap/stat` watch
    // is what calls it stalled, within a poll interval of the stall timeout.
    let stall = Duration::from_millis(1500);
    let started = Instant::now();
    assert_eq!(bystander.pin(&ghost_cid(), stall).await, Outcome::Stalled);
    let took = started.elapsed();
    assert!(
        took >= stall && took < stall + Duration::from_secs(2),
        "{took:?}"
    );
    step(t0, "bystander: pin of unavailable content stalled");
}
