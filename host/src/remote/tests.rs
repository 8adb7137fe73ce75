//! [`RemoteNode`] over an in-memory backend: the four steps, without a network.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// A backend that pins after `polls_to_pin` status calls (never when `None`), and counts calls.
#[derive(Default)]
struct Fake {
    requests: Mutex<Vec<(String, RemoteState, u32)>>,
    polls_to_pin: Option<u32>,
    fail_first: bool,
    creates: AtomicU32,
    retries: AtomicU32,
    cancels: AtomicU32,
    origins: Mutex<Vec<String>>,
}

impl Fake {
    fn status_of(&self, id: &str) -> RemoteStatus {
        let requests = self.requests.lock().expect("lock");
        let (_, state, _) = requests
            .iter()
            .find(|(i, _, _)| i == id)
            .cloned()
            .unwrap_or((String::new(), RemoteState::Failed, 0));
        RemoteStatus {
            state,
            progress: format!("{state:?}"),
            detail: String::new(),
            delegates: vec!["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWFake".into()],
        }
    }
}

#[async_trait]
impl RemotePins for Fake {
    fn kind(&self) -> NodeKind {
        NodeKind::Psa
    }
    fn proof(&self) -> Proof {
        Proof::StatusOnly
    }
    async fn find(&self, cid: &str) -> Result<Option<RemoteRequest>, Outcome> {
        let found = self
            .requests
            .lock()
            .expect("lock")
            .iter()
            .any(|(id, _, _)| id == cid);
        Ok(found.then(|| RemoteRequest {
            id: cid.into(),
            cid: cid.into(),
            status: self.status_of(cid),
        }))
    }
    async fn create(&self, cid: &str, origins: &[String]) -> Result<RemoteRequest, Outcome> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        *self.origins.lock().expect("lock") = origins.to_vec();
        let state = if self.fail_first {
            RemoteState::Failed
        } else {
            RemoteState::Pending
        };
        // A slow POST: another caller's `find` runs before the request exists.
        tokio::task::yield_now().await;
        self.requests
            .lock()
            .expect("lock")
            .push((cid.into(), state, 0));
        Ok(RemoteRequest {
            id: cid.into(),
            cid: cid.into(),
            status: self.status_of(cid),
        })
    }
    async fn retry(&self, r: &RemoteRequest, _: &[String]) -> Result<RemoteRequest, Outcome> {
        self.retries.fetch_add(1, Ordering::SeqCst);
        for req in self.requests.lock().expect("lock").iter_mut() {
            if req.0 == r.id {
                req.1 = RemoteState::Pending;
            }
        }
        Ok(RemoteRequest {
            status: self.status_of(&r.id),
            ..r.clone()
        })
    }
    async fn status(&self, r: &RemoteRequest) -> Result<RemoteStatus, Outcome> {
        let mut requests = self.requests.lock().expect("lock");
        for req in requests.iter_mut() {
            if req.0 == r.id && req.1 == RemoteState::Pending {
                req.2 += 1;
                if self.polls_to_pin.is_some_and(|n| req.2 >= n) {
                    req.1 = RemoteState::Pinned;
                }
            }
        }
        drop(requests);
        Ok(self.status_of(&r.id))
    }
    async fn cancel(&self, r: &RemoteRequest) -> Outcome {
        self.cancels.fetch_add(1, Ordering::SeqCst);
        self.requests
            .lock()
            .expect("lock")
            .retain(|(id, _, _)| *id != r.id);
        Outcome::Ok
    }
    async fn check_retrievable(&self, _: &str, _: &RemoteRequest) -> Outcome {
        Outcome::Unretrievable("not proven".into())
    }
    async fn delegates(&self) -> Result<Vec<String>, Outcome> {
        Ok(Vec::new())
    }
}

fn node(fake: Fake) -> (Arc<Fake>, RemoteNode) {
    let fake = Arc::new(fake);
    let backend: Arc<dyn RemotePins> = fake.clone();
    (
        fake,
        RemoteNode::new("remote", backend, Duration::from_millis(10)),
    )
}

const CID: &str = "bafkqaaa";

#[tokio::test(start_paused = true)]
async fn a_second_attempt_follows_the_first_request_instead_of_making_another() {
    let (fake, node) = node(Fake {
        polls_to_pin: None,
        ..Fake::default()
    });
    assert_eq!(
        node.pin(CID, Duration::from_millis(100)).await,
        Outcome::Stalled
    );
    assert_eq!(
        node.pin(CID, Duration::from_millis(100)).await,
        Outcome::Stalled
    );
    assert_eq!(fake.creates.load(Ordering::SeqCst), 1);
    assert_eq!(
        fake.cancels.load(Ordering::SeqCst),
        0,
        "a stall leaves it for the next attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn two_rounds_at_once_on_one_cid_make_one_request() {
    let (fake, node) = node(Fake {
        polls_to_pin: Some(3),
        ..Fake::default()
    });
    let stall = Duration::from_secs(5);
    let (a, b) = tokio::join!(node.pin(CID, stall), node.pin(CID, stall));
    assert_eq!((a, b), (Outcome::Ok, Outcome::Ok));
    assert_eq!(fake.creates.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_request_is_retried_in_place() {
    let (fake, node) = node(Fake {
        polls_to_pin: Some(1),
        fail_first: true,
        ..Fake::default()
    });
    let first = node.pin(CID, Duration::from_secs(1)).await;
    assert!(matches!(first, Outcome::Error(_)), "{first:?}");
    assert_eq!(node.pin(CID, Duration::from_secs(1)).await, Outcome::Ok);
    assert_eq!(fake.creates.load(Ordering::SeqCst), 1);
    assert_eq!(fake.retries.load(Ordering::SeqCst), 1);
    assert_eq!(node.verify(CID).await, Outcome::Ok);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_pin_cancels_its_pending_request() {
    let (fake, node) = node(Fake {
        polls_to_pin: None,
        ..Fake::default()
    });
    let pin = node.pin(CID, Duration::from_secs(60));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), pin)
            .await
            .is_err()
    );
    // The cancel runs on a spawned task.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(fake.cancels.load(Ordering::SeqCst), 1);
    assert_eq!(node.verify(CID).await, Outcome::NotPinned);
}

#[tokio::test(start_paused = true)]
async fn hints_become_origins_and_the_walk_is_never_faked() {
    let (fake, node) = node(Fake {
        polls_to_pin: Some(1),
        ..Fake::default()
    });
    let addrs = vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWPrimary".to_string()];
    assert_eq!(node.connect(&addrs).await, Outcome::Ok);
    assert_eq!(node.pin(CID, Duration::from_secs(1)).await, Outcome::Ok);
    assert_eq!(*fake.origins.lock().expect("lock"), addrs);
    assert!(matches!(
        node.check_retrievable(CID).await,
        Outcome::Unretrievable(_)
    ));
    assert_eq!(node.capabilities().proof, Proof::StatusOnly);
}
