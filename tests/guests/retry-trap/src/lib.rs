//! A policy that is sound on a job's first round and traps on every retried one
//! (`failed_rounds > 0`). It declares the kit's parameters except `local_fallback_after`, so
//! the built-in `lazy-local-fallback` scenario does not apply to it: only a scenario that
//! retries a lazy job without parameters (`lazy-retries`) shows `policy check` the trap.

use policy_kit::bindings::Guest;
use policy_kit::params::{self, ParamSpec};
use policy_kit::plan::{nodes_with, plan};
use policy_kit::{Action, HistoryChange, Job, Node, PolicyInfo, Role, Settings};
use std::sync::Mutex;

/// The kit's parameters without the local fallback.
const PARAMS: &[ParamSpec] = &[
    params::ATTEMPTS,
    params::BASE_DELAY_MS,
    params::MAX_DELAY_MS,
    params::PIN_TIMEOUT_MS,
    params::STALL_TIMEOUT_MS,
    params::QUORUM,
    params::BREAKER_FAILURES,
    params::BREAKER_COOLDOWN_MS,
    params::HEDGE_AFTER_MS,
];

static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);

struct RetryTrap;

impl Guest for RetryTrap {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "retry-trap".into(),
            description: "tank mode on a first round; traps on every retried round".into(),
            params: params::describe(PARAMS),
        }
    }

    fn configure(pairs: Vec<(String, String)>) -> Result<(), String> {
        let settings = Settings::parse("retry-trap", PARAMS, &pairs)?;
        if let Ok(mut s) = SETTINGS.lock() {
            *s = Some(settings);
        }
        Ok(())
    }

    fn decide(job: Job, nodes: Vec<Node>, changes: Vec<HistoryChange>, now_ms: u64) -> Vec<Action> {
        if job.failed_rounds > 0 {
            panic!(
                "retry-trap traps on retried round {}",
                job.failed_rounds + 1
            );
        }
        policy_kit::with_history(changes, |history| {
            let s = SETTINGS
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or_else(|| Settings::defaults(PARAMS));
            let candidates: Vec<&str> = nodes_with(&nodes, Role::Primary)
                .chain(nodes_with(&nodes, Role::Backup))
                .collect();
            plan(&job, &nodes, history, now_ms, &s, &candidates)
        })
    }
}

policy_kit::export_policy!(RetryTrap);
