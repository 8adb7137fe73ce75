//! The live policy: swapped atomically, validated before it may serve.
//!
//! A job takes a snapshot (`current`) when its round starts and keeps it to the end, so a
//! swap never changes the rules under a running round. A new component must load, accept the
//! configured parameters and pass the built-in scenarios (as `policy check` demands) before it
//! replaces the old one; a broken file never does.

use crate::daemon::wire::CheckProgress;
use crate::policy::{Policy, Registry};
use crate::sim;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct PolicySlot {
    registry: Registry,
    /// What the operator configured: built-in name or file path. A reload without an explicit
    /// policy (SIGHUP, the file watch, `policy reload`) goes back to it.
    spec: String,
    /// Every configured parameter; each policy gets those it declares.
    params: Vec<(String, String)>,
    /// The only directory a reload may load other component files from.
    policy_dir: Option<std::path::PathBuf>,
    active: ArcSwap<Policy>,
    fallback: ArcSwap<Policy>,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// The check a reload, shadow or promote runs now (`/v1/health` shows it, and the CLI
    /// while it waits): a slow policy's check takes minutes.
    checking: Mutex<Option<Checking>>,
    checks: AtomicU64,
}

struct Checking {
    id: u64,
    policy: String,
    scenario: String,
    index: usize,
    total: usize,
    started: Instant,
}

impl PolicySlot {
    pub fn new(
        registry: Registry,
        spec: String,
        params: Vec<(String, String)>,
        active: Arc<Policy>,
        fallback: Arc<Policy>,
        policy_dir: Option<std::path::PathBuf>,
    ) -> Self {
        PolicySlot {
            registry,
            spec,
            params,
            policy_dir,
            active: ArcSwap::new(active),
            fallback: ArcSwap::new(fallback),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            checking: Mutex::new(None),
            checks: AtomicU64::new(0),
        }
    }

    /// Where the running check is (the most recently started, when several run).
    pub fn checking(&self) -> Option<CheckProgress> {
        let guard = self.checking.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|c| CheckProgress {
            policy: c.policy.clone(),
            scenario: c.scenario.clone(),
            index: c.index,
            total: c.total,
            elapsed_ms: u64::try_from(c.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Runs the built-in scenarios on `policy`, published as [`checking`](Self::checking)
    /// and logged once the check is slow.
    pub fn check(&self, spec: &str, policy: &Policy, fallback: &Policy) -> Result<(), String> {
        let id = self.checks.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let publish = |checking: Option<Checking>| {
            let mut guard = self.checking.lock().unwrap_or_else(|p| p.into_inner());
            match checking {
                Some(c) => *guard = Some(c),
                // Another check started since: leave its progress up.
                None if guard.as_ref().is_some_and(|c| c.id == id) => *guard = None,
                None => {}
            }
        };
        let result = sim::check_contract_with(policy, fallback, &mut |step| {
            if started.elapsed() >= sim::QUIET_CHECK {
                tracing::info!("{}", step.line(spec, started.elapsed()));
            }
            publish(Some(Checking {
                id,
                policy: spec.to_string(),
                scenario: step.scenario.to_string(),
                index: step.index,
                total: step.total,
                started,
            }));
        });
        publish(None);
        result.map(|_| ()).map_err(|e| format!("{spec}: {e}"))
    }

    /// The policy and fallback a new round runs under.
    pub fn current(&self) -> (Arc<Policy>, Arc<Policy>) {
        (self.active.load_full(), self.fallback.load_full())
    }

    /// The configured spec (name or path).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Compiles and validates `spec` (default: the configured one, re-read from disk) and
    /// swaps it in. Blocking: it compiles and simulates, so call it off the async runtime.
    ///
    /// `params`, when given, are the new policy's parameters exactly (an unknown one is an
    /// error); otherwise it gets those of the configured parameters it declares.
    pub fn reload(
        &self,
        spec: Option<&str>,
        params: Option<&[(String, String)]>,
    ) -> Result<Arc<Policy>, String> {
        let result = self.try_reload(spec, params);
        match &result {
            Ok(p) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(policy = %p.name, hash = %p.hash, "policy swapped in");
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("policy reload rejected, the old policy keeps serving: {e}");
            }
        }
        result
    }

    /// Built-in names and the configured policy may always be loaded; another file only from
    /// `daemon.policy_dir`, so whoever can reach the API cannot run any `.wasm` on the disk.
    fn may_load(&self, spec: &str) -> Result<(), String> {
        if spec == self.spec || Registry::builtin_names().any(|n| n == spec) {
            return Ok(());
        }
        let Some(dir) = &self.policy_dir else {
            return Err(format!(
                "{spec}: policy files other than the configured one are loaded only from \
                 daemon.policy_dir, and none is configured"
            ));
        };
        let inside = std::fs::canonicalize(spec)
            .ok()
            .zip(std::fs::canonicalize(dir).ok())
            .is_some_and(|(file, dir)| file.starts_with(dir));
        if inside {
            Ok(())
        } else {
            Err(format!(
                "{spec}: policy files are loaded only from daemon.policy_dir ({})",
                dir.display()
            ))
        }
    }

    fn try_reload(
        &self,
        spec: Option<&str>,
        params: Option<&[(String, String)]>,
    ) -> Result<Arc<Policy>, String> {
        let (policy, fallback) = self.prepare(spec, params)?;
        self.active.store(Arc::clone(&policy));
        self.fallback.store(fallback);
        Ok(policy)
    }

    /// Everything a reload checks, without the swap: the policy `spec` (default: the
    /// configured one) with its parameters, and the fallback to go with it. A shadow is
    /// validated with this, so that `promote` cannot fail on what a reload would refuse.
    /// Blocking (it compiles and simulates).
    pub fn prepare(
        &self,
        spec: Option<&str>,
        params: Option<&[(String, String)]>,
    ) -> Result<(Arc<Policy>, Arc<Policy>), String> {
        let (policy, fallback) = self.load(spec, params)?;
        self.check(spec.unwrap_or(&self.spec), &policy, &fallback)?;
        Ok((policy, fallback))
    }

    /// [`prepare`](Self::prepare) without the built-in scenarios: the component may be loaded
    /// from there, it is a policy, and it accepts its parameters.
    pub fn load(
        &self,
        spec: Option<&str>,
        params: Option<&[(String, String)]>,
    ) -> Result<(Arc<Policy>, Arc<Policy>), String> {
        let spec = spec.unwrap_or(&self.spec);
        self.may_load(spec)?;
        let bare = self
            .registry
            .resolve(spec, &[])
            .map_err(|e| e.to_string())?;
        let params: Vec<(String, String)> = match params {
            Some(given) => given.to_vec(),
            None => self
                .params
                .iter()
                .filter(|(k, _)| bare.declares(k))
                .cloned()
                .collect(),
        };
        let policy = bare
            .with_params(&params)
            .map_err(|e| format!("{spec}: {}", e.message))?;
        // The fallback gets every configured parameter it understands (the new policy's own
        // values winning), not only those the new policy declares.
        let mut configured = self.params.clone();
        configured.retain(|(k, _)| !params.iter().any(|(p, _)| p == k));
        configured.extend(params.iter().cloned());
        let fallback = self
            .registry
            .fallback_for(&configured)
            .map_err(|e| e.to_string())?;
        Ok((Arc::new(policy), fallback))
    }
}
