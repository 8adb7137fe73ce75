//! Real bitswap latency and a backup cut off from the primary, on Kubo: the primary announces
//! only a relay's address ([`DelayRelay`], 15 ms each way), so every byte a backup fetches from
//! it crosses the slow link, and the provider hint pinwarden gives (the primary's addresses
//! from `id`) points at the relay. The primary's RPC lies ("pin OK", nothing pinned), so the
//! round must fall back to the backup.

use crate::support::cli::{pin_once_per_node, stdout_json};
use crate::support::nodes::step;
use pinwarden::kubo::KuboClient;
use pinwarden_testkit::{DelayRelay, FaultProxy, IpfsCluster, Mode, make_hls_dir};
use serde_json::json;
use std::time::{Duration, Instant};

const ONE_WAY: Duration = Duration::from_millis(15);
const CONTENT: usize = 24 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_fetches_through_a_slow_link_and_one_cut_off_fails_until_the_link_returns() {
    let t0 = Instant::now();
    pinwarden::install_crypto_provider();
    let relay = DelayRelay::bind(ONE_WAY).await.expect("relay");
    let announced = relay.multiaddr();
    let cluster = IpfsCluster::start_with(
        2,
        |i, config| {
            if i == 0 { relay.front(config) } else { Ok(()) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("Kubo nodes are required and could not start: {e:#}"));
    step(
        t0,
        "primary (announcing only the relay) and a backup are up",
    );

    let primary = KuboClient::new("primary", &cluster.api_url(0), None).expect("client");
    let addrs = pinwarden::node::Node::swarm_addrs(&primary)
        .await
        .expect("the primary's addresses");
    assert_eq!(
        addrs
            .iter()
            .map(|a| a.split("/p2p/").next().unwrap_or(a))
            .collect::<Vec<_>>(),
        [announced.as_str()],
        "the primary must be reachable only through the relay: {addrs:?}"
    );
    let lying = FaultProxy::start(&cluster.api_url(0)).await.expect("proxy");
    lying.set_mode(Mode::LiePinOk).await;
    let data = tempfile::tempdir().expect("data dir");
    let (primary_api, backups) = (lying.url(), [cluster.api_url(1)]);

    // Cut off: the backup cannot reach the only node that has the blocks.
    let cid = upload(&primary, "cut-off").await;
    relay.cut();
    let out = pin_once_per_node(&cid, &primary_api, &backups, data.path()).await;
    let v = stdout_json(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cut-off backup cannot pin: {v}"
    );
    assert_eq!(v["confirmed_nodes"], json!([]), "{v}");
    let trace = v["trace"].to_string();
    assert!(
        trace.contains("stalled") || trace.contains("unreachable"),
        "{trace}"
    );
    step(t0, "cut off: the round failed, nothing reported pinned");

    // The link returns: the same CID is pinned on the backup, every block through the relay.
    relay.restore();
    let before = relay.relayed_bytes();
    let out = pin_once_per_node(&cid, &primary_api, &backups, data.path()).await;
    let v = stdout_json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["confirmed_nodes"], json!(["backup-1"]), "{v}");
    let crossed = relay.relayed_bytes() - before;
    assert!(
        crossed >= CONTENT as u64,
        "the blocks must cross the slow link: {crossed} bytes relayed for {CONTENT}"
    );
    step(
        t0,
        &format!("pinned on the backup over 15 ms each way ({crossed} bytes relayed)"),
    );
}

async fn upload(primary: &KuboClient, name: &str) -> String {
    let (_tmp, dir) = make_hls_dir(name, CONTENT, 8).expect("content");
    primary.add_dir(&dir).await.expect("upload")
}
