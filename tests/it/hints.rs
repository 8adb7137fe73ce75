//! Provider hints in an executor round, on simulated nodes: when a hint starts beside its pin,
//! and what a failed dial tells the provider's client.

use crate::support::policies::{job, params, registry, round, script};
use async_trait::async_trait;
use pinwarden::executor::{RoundEnd, Topology};
use pinwarden::health::Progress;
use pinwarden::node::{Capabilities, Node, NodeKind};
use pinwarden::sim::node::{PinAnswer, SimNode};
use pinwarden::{Action, Outcome, Role};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a dial takes (virtual time), so a pin started beside it starts first.
const DIAL: Duration = Duration::from_millis(50);

/// A simulated node whose dials take `dial` and fail if `dial_fails`, counting the failed dials
/// it is told of.
struct Hinted {
    inner: SimNode,
    dial: Duration,
    dial_fails: bool,
    told_failed: AtomicUsize,
}

impl Hinted {
    fn new(inner: SimNode, dial_fails: bool) -> Arc<Hinted> {
        Hinted::dialling(inner, DIAL, dial_fails)
    }

    fn dialling(inner: SimNode, dial: Duration, dial_fails: bool) -> Arc<Hinted> {
        Arc::new(Hinted {
            inner,
            dial,
            dial_fails,
            told_failed: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Node for Hinted {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn pin(&self, cid: &str, stall: Duration) -> Outcome {
        self.inner.pin(cid, stall).await
    }
    async fn pin_watched(&self, cid: &str, stall: Duration, progress: &Progress) -> Outcome {
        self.inner.pin_watched(cid, stall, progress).await
    }
    async fn verify(&self, cid: &str) -> Outcome {
        self.inner.verify(cid).await
    }
    async fn check_retrievable(&self, cid: &str) -> Outcome {
        self.inner.check_retrievable(cid).await
    }
    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome> {
        self.inner.swarm_addrs().await
    }
    fn swarm_addrs_failed(&self) {
        self.told_failed.fetch_add(1, Ordering::SeqCst);
    }
    async fn unpin(&self, cid: &str) -> Outcome {
        self.inner.unpin(cid).await
    }
    async fn connect(&self, addrs: &[String]) -> Outcome {
        tokio::time::sleep(self.dial).await;
        if self.dial_fails {
            return Outcome::Unreachable("dial refused".into());
        }
        self.inner.connect(addrs).await
    }
}

/// A primary that refuses every pin, and a backup of `kind` whose dials fail if `dial_fails`.
fn nodes(kind: NodeKind, dial_fails: bool) -> (Topology, Arc<Hinted>) {
    let primary = Hinted::new(
        SimNode::new(script(
            "primary",
            Role::Primary,
            &[PinAnswer::Refused],
            false,
        )),
        false,
    );
    let mut backup = script("backup-1", Role::Backup, &[], false);
    backup.kind = kind;
    let mut topology = Topology::new();
    topology.add(
        "primary",
        Role::Primary,
        Arc::clone(&primary) as Arc<dyn Node>,
    );
    topology.add(
        "backup-1",
        Role::Backup,
        Hinted::new(SimNode::new(backup), dial_fails),
    );
    (topology, primary)
}

/// Tank-mode with one attempt per node and no breaker.
fn tank_mode(registry: &pinwarden::policy::Registry) -> Arc<pinwarden::policy::Policy> {
    registry
        .builtin(
            "tank-mode",
            &params(&[("attempts", "1"), ("breaker_failures", "0")]),
        )
        .expect("a built-in")
        .expect("tank-mode loads")
}

/// When the backup's first pin started, and when its hint ended (ms into the round).
fn hint_and_pin(history: &[pinwarden::Event]) -> (u64, u64) {
    let on_backup = |want: fn(&Action) -> bool| {
        history
            .iter()
            .find(|e| e.action.node() == Some("backup-1") && want(&e.action))
            .expect("the backup's hint and pin")
    };
    let hint = on_backup(|a| matches!(a, Action::Connect(_)));
    let pin = on_backup(|a| matches!(a, Action::Pin(_)));
    (hint.ended_ms.expect("the hint ended"), pin.started_ms)
}

/// A hint whose dial fails tells the provider's client, which then asks the provider for its
/// addresses again (the primary may have restarted on other ports); the pin goes ahead.
#[test]
fn a_failed_dial_tells_the_provider_and_the_pin_goes_ahead() {
    let registry = registry();
    let tank = tank_mode(&registry);
    let (topology, primary) = nodes(NodeKind::Kubo, true);
    let result = round(&tank, &tank, &topology, &job(false));
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
    assert_eq!(result.confirmed, ["backup-1"]);
    assert_eq!(primary.told_failed.load(Ordering::SeqCst), 1);
    // A dial that works tells nothing.
    let (topology, primary) = nodes(NodeKind::Kubo, false);
    let result = round(&tank, &tank, &topology, &job(false));
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
    assert_eq!(primary.told_failed.load(Ordering::SeqCst), 0);
}

/// A Kubo backup's first pin starts with its hint, not after it; a cluster's waits for the hint,
/// whose addresses are its request's origins.
#[test]
fn a_kubo_backup_pins_beside_its_hint_and_a_cluster_after_it() {
    let registry = registry();
    let tank = tank_mode(&registry);
    let (topology, _) = nodes(NodeKind::Kubo, false);
    let result = round(&tank, &tank, &topology, &job(false));
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
    let (hint_ended, pin_started) = hint_and_pin(&result.history);
    assert!(
        pin_started < hint_ended,
        "the pin started at {pin_started} ms, the hint ended at {hint_ended} ms"
    );
    let (topology, _) = nodes(NodeKind::Cluster, false);
    let result = round(&tank, &tank, &topology, &job(false));
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
    let (hint_ended, pin_started) = hint_and_pin(&result.history);
    assert!(
        pin_started >= hint_ended,
        "the pin started at {pin_started} ms, the hint ended at {hint_ended} ms"
    );
}

/// A backup whose first pin fails at once, with a backoff shorter than its dial: the retry's hint
/// waits for the first dial to end (the host refuses a second connect on a node while one runs),
/// then renews the connection, and the retry pins.
#[test]
fn a_retry_waits_for_a_first_hint_still_dialling() {
    let registry = registry();
    let tank = registry
        .builtin(
            "tank-mode",
            &params(&[
                ("attempts", "2"),
                ("breaker_failures", "0"),
                ("base_delay_ms", "100"),
            ]),
        )
        .expect("a built-in")
        .expect("tank-mode loads");
    let primary = SimNode::new(script(
        "primary",
        Role::Primary,
        &[PinAnswer::Refused],
        false,
    ));
    let backup = SimNode::new(script(
        "backup-1",
        Role::Backup,
        &[PinAnswer::Refused, PinAnswer::Ok],
        false,
    ));
    let mut topology = Topology::new();
    topology.add("primary", Role::Primary, Arc::new(primary));
    topology.add(
        "backup-1",
        Role::Backup,
        Hinted::dialling(backup, Duration::from_secs(5), false),
    );
    let result = round(&tank, &tank, &topology, &job(false));
    assert!(result.incidents.is_empty(), "{:?}", result.incidents);
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
    let hints: Vec<(u64, Option<u64>)> = result
        .history
        .iter()
        .filter(|e| matches!(&e.action, Action::Connect(_)))
        .map(|e| (e.started_ms, e.ended_ms))
        .collect();
    assert_eq!(hints.len(), 2, "{hints:?}");
    assert!(
        hints[1].0 >= hints[0].1.expect("the first dial ended"),
        "the second hint started before the first ended: {hints:?}"
    );
}
