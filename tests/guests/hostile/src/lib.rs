//! A deliberately hostile policy, used by the host's tests to prove the sandbox.
//!
//! It behaves like tank mode until the history holds `after` events, then misbehaves as `mode`
//! says: `trap`, `loop` (never returns), `oom` (grows memory without bound), `unknown-node`,
//! `absurd-wait`, `bogus-succeed` (claims nodes it never pinned), `over-quorum` (claims more
//! nodes than exist), `nothing` (returns no action while nothing runs). `configure-trap` traps
//! in `configure` itself. `huge-reason` fails with a 10 MB reason; `slow` spends a few
//! milliseconds of busy work on every decision and only ever waits (a round-budget eater).
//! `sluggish` is sound but slow: from the first decision on, `busy` million steps of busy
//! work (about a millisecond each here), then the kit's plan: it passes `policy check`, slowly.

use policy_kit::bindings::{Guest, PinRequest, WaitRequest};
use policy_kit::plan::{nodes_with, plan};
use policy_kit::{Action, Event, HistoryChange, Job, Node, PolicyInfo, Role, Settings};
use std::sync::Mutex;

const MODES: &[&str] = &[
    "none",
    "trap",
    "loop",
    "oom",
    "unknown-node",
    "absurd-wait",
    "bogus-succeed",
    "over-quorum",
    "nothing",
    "configure-trap",
    "huge-reason",
    "slow",
    "recurse",
    "sluggish",
];

/// Recursion with no end, each frame holding a buffer on the shadow stack (in linear memory).
#[inline(never)]
#[allow(unconditional_recursion)] // the point: it overflows the stack
fn deeper(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    deeper(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

struct Hostile;

static STATE: Mutex<(usize, usize)> = Mutex::new((0, 0)); // (mode index, after)
/// `sluggish`: millions of busy steps per decision.
static BUSY: Mutex<u64> = Mutex::new(150);
/// The kit's standard parameters, which it accepts like a real custom policy would.
static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);

impl Guest for Hostile {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "hostile".into(),
            description: format!("misbehaves on purpose; modes: {}", MODES.join(", ")),
            params: policy_kit::params::describe(policy_kit::params::ALL),
        }
    }

    fn configure(params: Vec<(String, String)>) -> Result<(), String> {
        let mut mode = 0;
        let mut after = 0;
        let mut standard = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "mode" => {
                    mode = MODES
                        .iter()
                        .position(|m| *m == v)
                        .ok_or_else(|| format!("parameter 'mode': unknown mode '{v}'"))?
                }
                "busy" => {
                    let busy = v
                        .parse()
                        .map_err(|_| format!("parameter 'busy': bad '{v}'"))?;
                    if let Ok(mut b) = BUSY.lock() {
                        *b = busy;
                    }
                }
                "after" => {
                    after = v
                        .parse()
                        .map_err(|_| format!("parameter 'after': bad '{v}'"))?
                }
                _ => standard.push((k, v)),
            }
        }
        let settings = Settings::parse("hostile", policy_kit::params::ALL, &standard)?;
        if let Ok(mut s) = SETTINGS.lock() {
            *s = Some(settings);
        }
        if MODES[mode] == "configure-trap" {
            panic!("hostile policy traps in configure");
        }
        if let Ok(mut s) = STATE.lock() {
            *s = (mode, after);
        }
        Ok(())
    }

    fn decide(job: Job, nodes: Vec<Node>, changes: Vec<HistoryChange>, now_ms: u64) -> Vec<Action> {
        policy_kit::with_history(changes, |history| misbehave(job, nodes, history, now_ms))
    }
}

/// The decision, on the whole history: the kit's plan until `after` events, then the mode.
fn misbehave(job: Job, nodes: Vec<Node>, history: &[Event], now_ms: u64) -> Vec<Action> {
    let (mode, after) = STATE.lock().map(|s| *s).unwrap_or((0, 0));
    if MODES[mode] == "sluggish" {
        let busy = BUSY.lock().map(|b| *b).unwrap_or(0);
        let mut x = now_ms;
        for i in 0..busy.saturating_mul(1_000_000) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        std::hint::black_box(x);
    }
    if history.len() < after || mode == 0 || MODES[mode] == "sluggish" {
        let s = SETTINGS
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| Settings::defaults(policy_kit::params::ALL));
        let candidates: Vec<&str> = nodes_with(&nodes, Role::Primary)
            .chain(nodes_with(&nodes, Role::Backup))
            .collect();
        return plan(&job, &nodes, history, now_ms, &s, &candidates);
    }
    match MODES[mode] {
        "trap" => panic!("hostile policy traps at {now_ms} ms"),
        "loop" => loop {
            std::hint::black_box(now_ms);
        },
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "unknown-node" => vec![Action::Pin(PinRequest {
            node: "nowhere".into(),
            timeout_ms: 1_000,
            stall_timeout_ms: 1_000,
        })],
        "absurd-wait" => vec![Action::Wait(WaitRequest {
            ms: 10 * 365 * 24 * 3_600_000,
            node: None,
        })],
        "bogus-succeed" => vec![Action::Succeed(vec![nodes[0].name.clone()])],
        "over-quorum" => {
            let mut all: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
            all.push(nodes[0].name.clone());
            vec![Action::Succeed(all)]
        }
        "huge-reason" => vec![Action::Fail("x".repeat(10 << 20))],
        "slow" => {
            let mut x = now_ms;
            for i in 0..3_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            vec![Action::Wait(WaitRequest {
                ms: 1 + x % 2,
                node: None,
            })]
        }
        "recurse" => vec![Action::Fail(deeper(now_ms).to_string())],
        _ => Vec::new(),
    }
}

policy_kit::export_policy!(Hostile);
