//! A simulated IPFS node that answers from a script, on tokio's (virtual) clock.

use crate::Outcome;
use crate::node::Node;
use crate::policy::contract::HttpError;
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::sleep;

/// How a node answers one `pin/add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinAnswer {
    /// Pins for real after `pin_ms`.
    Ok,
    /// Answers OK after `pin_ms` but pins nothing (`pin ls` will disagree).
    Lie,
    /// Hangs, so the pin's overall timeout fires.
    Timeout,
    /// Stops reporting progress, so the stall timeout fires.
    Stall,
    /// Connection refused.
    Refused,
    /// HTTP 500 from the node.
    Http500,
}

/// One node of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeScript {
    pub name: String,
    #[serde(with = "crate::policy::contract::role_name")]
    pub role: crate::Role,
    /// Answer per pin attempt; the last one repeats. Empty: always `ok`.
    #[serde(default)]
    pub pin: Vec<PinAnswer>,
    /// How long a pin that answers takes.
    #[serde(default = "default_pin_ms")]
    pub pin_ms: u64,
    /// Refuses every connection.
    #[serde(default)]
    pub offline: bool,
    /// Whether pinned content is also retrievable (false models a corrupt blockstore).
    #[serde(default = "default_true")]
    pub retrievable: bool,
}

fn default_pin_ms() -> u64 {
    800
}
fn default_true() -> bool {
    true
}

/// Latency of pin ls and block checks on a simulated node.
const QUERY_MS: u64 = 20;

pub struct SimNode {
    script: NodeScript,
    state: Mutex<SimState>,
}

#[derive(Default)]
struct SimState {
    pins: usize,
    pinned: bool,
}

impl SimNode {
    pub fn new(script: NodeScript) -> Self {
        SimNode {
            script,
            state: Mutex::new(SimState::default()),
        }
    }

    fn refused() -> Outcome {
        Outcome::Unreachable("connection refused".into())
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        // A poisoned lock only means another simulated call panicked; the state is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

#[async_trait]
impl Node for SimNode {
    async fn pin(&self, _cid: &str, stall: Duration) -> Outcome {
        if self.script.offline {
            return Self::refused();
        }
        let answer = self.with_state(|s| {
            let answer = self
                .script
                .pin
                .get(s.pins)
                .or(self.script.pin.last())
                .copied()
                .unwrap_or(PinAnswer::Ok);
            s.pins += 1;
            answer
        });
        match answer {
            PinAnswer::Ok | PinAnswer::Lie => {
                sleep(Duration::from_millis(self.script.pin_ms)).await;
                if answer == PinAnswer::Ok {
                    self.with_state(|s| s.pinned = true);
                }
                Outcome::Ok
            }
            PinAnswer::Timeout => std::future::pending().await,
            PinAnswer::Stall => {
                sleep(stall).await;
                Outcome::Stalled
            }
            PinAnswer::Refused => Self::refused(),
            PinAnswer::Http500 => Outcome::HttpError(HttpError {
                status: 500,
                message: "internal server error".into(),
            }),
        }
    }

    async fn verify(&self, _cid: &str) -> Outcome {
        if self.script.offline {
            return Self::refused();
        }
        sleep(Duration::from_millis(QUERY_MS)).await;
        if self.with_state(|s| s.pinned) {
            Outcome::Ok
        } else {
            Outcome::NotPinned
        }
    }

    async fn check_retrievable(&self, _cid: &str) -> Outcome {
        if self.script.offline {
            return Self::refused();
        }
        sleep(Duration::from_millis(QUERY_MS)).await;
        if self.with_state(|s| s.pinned) && self.script.retrievable {
            Outcome::Ok
        } else {
            Outcome::Unretrievable("blocks missing".into())
        }
    }

    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome> {
        if self.script.offline {
            return Err(Self::refused());
        }
        Ok(vec![format!(
            "/ip4/127.0.0.1/tcp/4001/p2p/sim-{}",
            self.script.name
        )])
    }

    async fn connect(&self, _addrs: &[String]) -> Outcome {
        if self.script.offline {
            Self::refused()
        } else {
            Outcome::Ok
        }
    }
}
