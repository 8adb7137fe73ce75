//! Provider hints in an executor round, on simulated nodes: when a hint starts beside its pin,
//! and what a failed dial tells the provider's client.

use crate::support::policies::{job, params, registry, round, script};
use async_trait::async_trait;
use pinwarden::executor::{RoundEnd, RoundResult, Topology};
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
    fn new(inner: SimNode, dial: Duration, dial_fails: bool) -> Arc<Hinted> {
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

/// The backup of a round: its kind, its pins' answers, how long its dials take and whether
/// they fail.
struct Backup {
    kind: NodeKind,
    pins: &'static [PinAnswer],
    dial: Duration,
    dial_fails: bool,
}

impl Backup {
    /// A Kubo backup whose pins work and whose dials take [`DIAL`].
    const KUBO: Backup = Backup {
        kind: NodeKind::Kubo,
        pins: &[],
        dial: DIAL,
        dial_fails: false,
    };
}

/// A primary that refuses every pin, and `backup`. Returns the primary, to read what it was told.
fn nodes(backup: Backup) -> (Topology, Arc<Hinted>) {
    let primary = Hinted::new(
        SimNode::new(script(
            "primary",
            Role::Primary,
            &[PinAnswer::Refused],
            false,
        )),
        DIAL,
        false,
    );
    let mut script = script("backup-1", Role::Backup, backup.pins, false);
    script.kind = backup.kind;
    let mut topology = Topology::new();
    topology.add(
        "primary",
        Role::Primary,
        Arc::clone(&primary) as Arc<dyn Node>,
    );
    topology.add(
        "backup-1",
        Role::Backup,
        Hinted::new(SimNode::new(script), backup.dial, backup.dial_fails),
    );
    (topology, primary)
}

/// One attempt per node, no breaker.
const ONE_TRY: &[(&str, &str)] = &[("attempts", "1"), ("breaker_failures", "0")];

/// One round of tank-mode with `pairs` on `topology`.
fn tank_round(pairs: &[(&str, &str)], topology: &Topology) -> RoundResult {
    let registry = registry();
    let tank = registry
        .builtin("tank-mode", &params(pairs))
        .expect("a built-in")
        .expect("tank-mode loads");
    round(&tank, &tank, topology, &job(false))
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
    let (topology, primary) = nodes(Backup {
        dial_fails: true,
        ..Backup::KUBO
    });
    let result = tank_round(ONE_TRY, &topology);
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
    assert_eq!(result.confirmed, ["backup-1"]);
    assert_eq!(primary.told_failed.load(Ordering::SeqCst), 1);
    // A dial that works tells nothing.
    let (topology, primary) = nodes(Backup::KUBO);
    let result = tank_round(ONE_TRY, &topology);
    assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
    assert_eq!(primary.told_failed.load(Ordering::SeqCst), 0);
}

/// A Kubo backup's first pin starts with its hint, not after it; a cluster's waits for the hint,
/// whose addresses are its request's origins.
#[test]
fn a_kubo_backup_pins_beside_its_hint_and_a_cluster_after_it() {
    for kind in [NodeKind::Kubo, NodeKind::Cluster] {
        let (topology, _) = nodes(Backup {
            kind,
            ..Backup::KUBO
        });
        let result = tank_round(ONE_TRY, &topology);
        assert_eq!(result.status, RoundEnd::Pinned, "{:?}", result.trace);
        let (hint_ended, pin_started) = hint_and_pin(&result.history);
        assert_eq!(
            pin_started < hint_ended,
            kind == NodeKind::Kubo,
            "{kind:?}: the pin started at {pin_started} ms, the hint ended at {hint_ended} ms"
        );
    }
}

/// A backup whose first pin fails at once, with a backoff shorter than its dial: the retry's hint
/// waits for the first dial to end (the host refuses a second connect on a node while one runs),
/// then renews the connection, and the retry pins.
#[test]
fn a_retry_waits_for_a_first_hint_still_dialling() {
    let (topology, _) = nodes(Backup {
        pins: &[PinAnswer::Refused, PinAnswer::Ok],
        dial: Duration::from_secs(5),
        ..Backup::KUBO
    });
    let quick_retry = [
        ("attempts", "2"),
        ("breaker_failures", "0"),
        ("base_delay_ms", "100"),
    ];
    let result = tank_round(&quick_retry, &topology);
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
