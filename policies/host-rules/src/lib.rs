//! The rules the pinwarden host enforces on every decision a policy returns.
//!
//! One implementation, two users: the host's executor (a decision that breaks a rule is a
//! policy incident and is never executed) and `policy-kit`'s test player (a policy's unit test
//! fails on the same decision). Both map their own generated WIT types onto the neutral
//! [`Act`] view, so this crate needs neither wasmtime nor wit-bindgen.

use std::collections::HashSet;

/// An action as the rules see it: a borrowed view of the WIT `action` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act<'a> {
    Pin {
        node: &'a str,
        timeout_ms: u64,
        stall_timeout_ms: u64,
    },
    Verify(&'a str),
    CheckRetrievable(&'a str),
    Connect {
        node: &'a str,
        provider: &'a str,
    },
    Wait {
        ms: u64,
        node: Option<&'a str>,
    },
    LocalFallback,
    Succeed(&'a [String]),
    Fail(&'a str),
}

impl<'a> Act<'a> {
    /// The action's name as the WIT file spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Act::Pin { .. } => "pin",
            Act::Verify(_) => "verify",
            Act::CheckRetrievable(_) => "check-retrievable",
            Act::Connect { .. } => "connect",
            Act::Wait { .. } => "wait",
            Act::LocalFallback => "local-fallback",
            Act::Succeed(_) => "succeed",
            Act::Fail(_) => "fail",
        }
    }

    /// The node the action concerns (a wait's, when it names one).
    pub fn node(&self) -> Option<&'a str> {
        match *self {
            Act::Pin { node, .. } | Act::Verify(node) | Act::CheckRetrievable(node) => Some(node),
            Act::Connect { node, .. } => Some(node),
            Act::Wait { node, .. } => node,
            Act::LocalFallback | Act::Succeed(_) | Act::Fail(_) => None,
        }
    }

    /// `succeed`, `fail` and `local-fallback` end the round.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Act::Succeed(_) | Act::Fail(_) | Act::LocalFallback)
    }
}

/// `fn act(action: &$Action) -> Act<'_>` for a generated `action` type of `wit/policy.wit`.
/// The host (wasmtime bindings) and policy-kit (wit-bindgen bindings) each generate their own
/// types of the same shape; this one mapping serves both.
#[macro_export]
macro_rules! view_of_action {
    ($vis:vis fn $fn:ident($action:ty)) => {
        /// The view [`host_rules`] reads of an action.
        $vis fn $fn(action: &$action) -> $crate::Act<'_> {
            use $crate::Act;
            type A = $action;
            match action {
                A::Pin(p) => Act::Pin {
                    node: &p.node,
                    timeout_ms: p.timeout_ms,
                    stall_timeout_ms: p.stall_timeout_ms,
                },
                A::Verify(n) => Act::Verify(n),
                A::CheckRetrievable(n) => Act::CheckRetrievable(n),
                A::Connect(c) => Act::Connect {
                    node: &c.node,
                    provider: &c.provider,
                },
                A::Wait(w) => Act::Wait {
                    ms: w.ms,
                    node: w.node.as_deref(),
                },
                A::LocalFallback => Act::LocalFallback,
                A::Succeed(nodes) => Act::Succeed(nodes),
                A::Fail(reason) => Act::Fail(reason),
            }
        }
    };
}

/// The node-health facts a circuit breaker reads (a view of the WIT `node-health`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub consecutive_failures: u32,
    pub since_last_failure_ms: Option<u64>,
    pub since_last_start_ms: Option<u64>,
    pub in_flight: u32,
}

/// A node's circuit breaker, as in Envoy's outlier detection: closed (normal traffic), open
/// (ejected after consecutive failures), half-open (cooled down: one probe may test it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Breaker {
    Closed,
    HalfOpen,
    Open,
}

impl Breaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Breaker::Closed => "closed",
            Breaker::HalfOpen => "half-open",
            Breaker::Open => "open",
        }
    }
}

/// Default of the `breaker_failures` parameter: consecutive failures that open the breaker.
pub const BREAKER_FAILURES: u32 = 3;
/// Default of the `breaker_cooldown_ms` parameter: how long an open breaker waits for a probe.
pub const BREAKER_COOLDOWN_MS: u64 = 60_000;

/// The breaker of a node with `health`: open after `failures` consecutive failures (0 never
/// opens); half-open once nothing has started or failed on it for `cooldown_ms` and nothing
/// runs there, so at most one probe goes out per cool-down (the probe's start re-opens it
/// for everyone else). A success closes it (the failure count starts again).
pub fn breaker(health: &Health, failures: u32, cooldown_ms: u64) -> Breaker {
    if failures == 0 || health.consecutive_failures < failures {
        return Breaker::Closed;
    }
    let cooled = |since: Option<u64>| since.is_none_or(|ms| ms >= cooldown_ms);
    if health.in_flight == 0
        && cooled(health.since_last_failure_ms)
        && cooled(health.since_last_start_ms)
    {
        Breaker::HalfOpen
    } else {
        Breaker::Open
    }
}

/// Since when a node has been quiet (WIT `since-last-progress-ms`), given what it shows while
/// pins that report progress run on it: the oldest of those pins' start, their latest move and
/// its latest pin success. Its last sign of life, but never before the oldest of those pins
/// started, which is all it had the chance to show; a pin that starts later does not count,
/// so a node that stopped moving stays quiet however many pins arrive. The host's ledger and
/// `policy-kit`'s scripted world both read it here, in their own clocks.
pub fn quiet_since<T: Ord>(oldest_start: T, last_move: Option<T>, last_pin_ok: Option<T>) -> T {
    [last_move, last_pin_ok]
        .into_iter()
        .flatten()
        .fold(oldest_start, Ord::max)
}

/// `fn health(h: &$NodeHealth) -> Health` for a generated `node-health` type (see
/// [`view_of_action!`]).
#[macro_export]
macro_rules! view_of_health {
    ($vis:vis fn $fn:ident($health:ty)) => {
        /// The view [`host_rules::breaker`] reads of a node's health.
        $vis fn $fn(h: &$health) -> $crate::Health {
            $crate::Health {
                consecutive_failures: h.consecutive_failures,
                since_last_failure_ms: h.since_last_failure_ms,
                since_last_start_ms: h.since_last_start_ms,
                in_flight: h.in_flight,
            }
        }
    };
}

/// One entry of the round's history as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'a> {
    pub act: Act<'a>,
    /// `None` while running; `Some(true)` for the `ok` outcome, `Some(false)` for any other.
    pub ok: Option<bool>,
}

/// Bounds no policy can lift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_wait_ms: u64,
    pub max_pin_timeout_ms: u64,
    /// Actions one policy may start in a round before it is considered runaway.
    pub max_actions: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_wait_ms: 3_600_000,
            max_pin_timeout_ms: 24 * 3_600_000,
            max_actions: 2_000,
        }
    }
}

/// What the rules need to know about the round besides its history.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// Names of the nodes in the topology.
    pub nodes: &'a [&'a str],
    /// Whether the topology has a local node (the local fallback needs one).
    pub has_local: bool,
    pub bounds: Bounds,
    /// Actions the current policy has started so far in this round.
    pub started: usize,
}

/// Checks one decision (`decided`) against the round's history; `Err` names the broken rule.
pub fn validate(round: &Round, history: &[Step], decided: &[Act]) -> Result<(), String> {
    let idle = history.iter().all(|s| s.ok.is_some());
    if decided.is_empty() {
        return if idle {
            Err("returned no action while nothing is running".into())
        } else {
            Ok(())
        };
    }
    if round.started + decided.len() > round.bounds.max_actions {
        return Err(format!(
            "started more than {} actions in one round",
            round.bounds.max_actions
        ));
    }
    if decided.len() > 1 && decided.iter().any(Act::is_terminal) {
        return Err("succeed, fail and local-fallback must be returned alone".into());
    }
    let known = |name: &str| -> Result<(), String> {
        if round.nodes.contains(&name) {
            Ok(())
        } else {
            Err(format!("unknown node '{name}'"))
        }
    };
    // (action, node) pairs running now: the same action twice on one node is refused.
    let mut busy: HashSet<(&str, &str)> = history
        .iter()
        .filter(|s| s.ok.is_none())
        .filter_map(|s| s.act.node().map(|n| (s.act.name(), n)))
        .collect();
    for act in decided {
        match *act {
            Act::Pin {
                node,
                timeout_ms,
                stall_timeout_ms,
            } => {
                known(node)?;
                if timeout_ms == 0 || timeout_ms > round.bounds.max_pin_timeout_ms {
                    return Err(format!("pin timeout of {timeout_ms} ms is out of range"));
                }
                if stall_timeout_ms == 0 || stall_timeout_ms > timeout_ms {
                    return Err(format!(
                        "stall timeout of {stall_timeout_ms} ms is out of range"
                    ));
                }
            }
            Act::Verify(node) | Act::CheckRetrievable(node) => known(node)?,
            Act::Connect { node, provider } => {
                known(node)?;
                known(provider)?;
            }
            Act::Wait { ms, node } => {
                if ms > round.bounds.max_wait_ms {
                    return Err(format!("a wait of {ms} ms is absurd"));
                }
                if let Some(n) = node {
                    known(n)?;
                }
            }
            Act::Succeed(nodes) => check_evidence(round, history, nodes)?,
            Act::LocalFallback => {
                if !round.has_local {
                    return Err("local fallback without a local node".into());
                }
            }
            Act::Fail(_) => {}
        }
        if let Some(node) = act.node()
            && !matches!(act, Act::Wait { .. })
            && !busy.insert((act.name(), node))
        {
            return Err(format!(
                "{} on '{node}' while one is already running",
                act.name()
            ));
        }
    }
    Ok(())
}

/// The proof of a pin, in order: the pin succeeded, then `pin ls` listed it, then every block
/// was found on the node. The host's own pins (local fallback, migration) follow these steps
/// too; `succeed` is accepted only with this evidence in the history for every node it names.
pub const PROOF: [&str; 3] = ["pin", "verify", "check-retrievable"];

/// What the three [`PROOF`] steps establish on each kind of node (the config's `api`), and why
/// that is enough to call the content pinned and retrievable there. The host performs them;
/// the rules above only see that each step succeeded.
///
/// | kind | `pin` | `verify` | `check-retrievable` |
/// |---|---|---|---|
/// | `kubo` | `pin/add` ended without error | `pin ls --type=recursive` lists the CID | every block of the DAG is in the node's own blockstore (offline `refs -r`): nothing needs the network to serve it |
/// | `cluster` | the cluster's pin reached replication-min peers `pinned` (`GET /pins/{cid}` `peer_map`) | the same, asked again | every block present on the Kubo node of one of the cluster's peers (offline walk through its RPC, `peer_kubo_urls`): the cluster's own status says the others pin it, and one copy is seen whole |
/// | `psa` | the provider's request reached `pinned` | the request found again by its name, `pinned` | one of pinwarden's own Kubo nodes (`check_via`) that did not hold the content dials the provider's `delegates` and fetches every block: the provider serves the whole DAG, not just claims it |
///
/// A `cluster` without `peer_kubo_urls`, or a `psa` without `check_via`, cannot take the third
/// step: its `check-retrievable` is always `unretrievable` ("not proven"), so no `succeed` can
/// name it. Status alone is never reported as verified.
pub const PROOF_BY_KIND: [(&str, &str); 3] = [
    ("kubo", "pin ls, then every block in the node's blockstore"),
    (
        "cluster",
        "replication-min peers pinned, then every block on one peer's Kubo",
    ),
    (
        "psa",
        "status pinned, then every block fetched from its delegates by a Kubo node of ours",
    ),
];

/// Success needs, per node: the last pin ok, then `pin ls` ok, then retrievable ok.
pub fn check_evidence(round: &Round, history: &[Step], nodes: &[String]) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("succeed without any node".into());
    }
    if nodes.len() > round.nodes.len() {
        return Err(format!(
            "succeed on {} nodes but the topology has {}",
            nodes.len(),
            round.nodes.len()
        ));
    }
    let mut seen = HashSet::new();
    for node in nodes {
        let node = node.as_str();
        if !seen.insert(node) {
            return Err(format!("succeed names '{node}' twice"));
        }
        if !round.nodes.contains(&node) {
            return Err(format!("succeed on unknown node '{node}'"));
        }
        if !proven_on(history, node) {
            return Err(format!(
                "succeed on '{node}' without a verified, retrievable pin there"
            ));
        }
    }
    Ok(())
}

/// Whether the history holds the [`PROOF`] steps, in order and ok, after the last pin on `node`.
pub fn proven_on(history: &[Step], node: &str) -> bool {
    let on_node = |s: &&Step| s.act.node() == Some(node) && !matches!(s.act, Act::Wait { .. });
    let Some(last_pin) = history
        .iter()
        .rposition(|s| matches!(s.act, Act::Pin { node: n, .. } if n == node))
    else {
        return false;
    };
    let mut want = PROOF.iter();
    let mut next = want.next();
    for step in history[last_pin..].iter().filter(on_node) {
        if next == Some(&step.act.name()) && step.ok == Some(true) {
            next = want.next();
        }
        if next.is_none() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &[&str] = &["primary", "backup-1"];

    fn round(started: usize) -> Round<'static> {
        Round {
            nodes: NODES,
            has_local: false,
            bounds: Bounds::default(),
            started,
        }
    }

    fn pin(node: &str) -> Act<'_> {
        Act::Pin {
            node,
            timeout_ms: 60_000,
            stall_timeout_ms: 30_000,
        }
    }

    fn done(act: Act<'_>, ok: bool) -> Step<'_> {
        Step { act, ok: Some(ok) }
    }

    #[test]
    fn nothing_to_do_while_idle_is_refused() {
        assert!(validate(&round(0), &[], &[]).is_err());
        let running = [Step {
            act: pin("primary"),
            ok: None,
        }];
        assert_eq!(validate(&round(1), &running, &[]), Ok(()));
    }

    #[test]
    fn unknown_nodes_and_absurd_bounds_are_refused() {
        let r = round(0);
        assert!(
            validate(&r, &[], &[pin("nowhere")])
                .unwrap_err()
                .contains("unknown node")
        );
        let wait = Act::Wait {
            ms: 3_600_001,
            node: None,
        };
        assert!(validate(&r, &[], &[wait]).unwrap_err().contains("absurd"));
        let stall = Act::Pin {
            node: "primary",
            timeout_ms: 10,
            stall_timeout_ms: 20,
        };
        assert!(validate(&r, &[], &[stall]).unwrap_err().contains("stall"));
        assert!(
            validate(&r, &[], &[Act::LocalFallback])
                .unwrap_err()
                .contains("local")
        );
    }

    #[test]
    fn the_same_action_twice_on_one_node_is_refused() {
        let running = [Step {
            act: pin("primary"),
            ok: None,
        }];
        let err = validate(&round(1), &running, &[pin("primary")]).unwrap_err();
        assert!(err.contains("already running"), "{err}");
        assert_eq!(validate(&round(1), &running, &[pin("backup-1")]), Ok(()));
    }

    #[test]
    fn terminal_actions_come_alone_and_runaways_stop() {
        let both = [Act::Fail("x"), pin("primary")];
        assert!(validate(&round(0), &[], &both).is_err());
        assert!(
            validate(&round(2_000), &[], &[pin("primary")])
                .unwrap_err()
                .contains("2000")
        );
    }

    #[test]
    fn the_breaker_opens_cools_down_and_lets_one_probe_through() {
        let sick = Health {
            consecutive_failures: 3,
            since_last_failure_ms: Some(1_000),
            since_last_start_ms: Some(2_000),
            in_flight: 0,
        };
        assert_eq!(breaker(&sick, 3, 60_000), Breaker::Open);
        assert_eq!(breaker(&sick, 4, 60_000), Breaker::Closed);
        assert_eq!(breaker(&sick, 0, 60_000), Breaker::Closed, "0 never opens");
        let cooled = Health {
            since_last_failure_ms: Some(60_000),
            since_last_start_ms: Some(61_000),
            ..sick
        };
        assert_eq!(breaker(&cooled, 3, 60_000), Breaker::HalfOpen);
        // A probe just started (here or, through the ledger file, in another process).
        let probing = Health {
            since_last_start_ms: Some(5),
            ..cooled
        };
        assert_eq!(breaker(&probing, 3, 60_000), Breaker::Open);
        let running = Health {
            in_flight: 1,
            ..cooled
        };
        assert_eq!(breaker(&running, 3, 60_000), Breaker::Open);
        assert_eq!(breaker(&Health::default(), 3, 60_000), Breaker::Closed);
    }

    #[test]
    fn success_needs_pin_verify_check_after_the_last_pin() {
        let names = ["primary".to_string()];
        let proven = [
            done(pin("primary"), true),
            done(Act::Verify("primary"), true),
            done(Act::CheckRetrievable("primary"), true),
        ];
        assert_eq!(
            validate(&round(3), &proven, &[Act::Succeed(&names)]),
            Ok(())
        );
        // Verified, then pinned again (and that pin failed): the old proof does not count.
        let mut stale = proven.to_vec();
        stale.push(done(pin("primary"), false));
        assert!(validate(&round(4), &stale, &[Act::Succeed(&names)]).is_err());
        // Out of order: checked before verified.
        let unordered = [proven[0], proven[2], proven[1]];
        assert!(validate(&round(3), &unordered, &[Act::Succeed(&names)]).is_err());
        // A failed verify is no proof.
        let lied = [proven[0], done(Act::Verify("primary"), false), proven[2]];
        assert!(validate(&round(3), &lied, &[Act::Succeed(&names)]).is_err());
        // Evidence on another node proves nothing here.
        let other = ["backup-1".to_string()];
        assert!(validate(&round(3), &proven, &[Act::Succeed(&other)]).is_err());
        let twice = ["primary".to_string(), "primary".to_string()];
        assert!(validate(&round(3), &proven, &[Act::Succeed(&twice)]).is_err());
        assert!(validate(&round(3), &proven, &[Act::Succeed(&[])]).is_err());
    }
}
