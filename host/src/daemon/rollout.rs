//! The daemon's side of a policy rollout: a shadow candidate started (validated as a reload
//! validates), reported on, stopped, or promoted to be the live policy.

use super::Daemon;
use crate::policy::Policy;
use crate::rounds::shadow::{Report, Shadow};
use std::sync::Arc;

impl Daemon {
    /// Loads `spec` with `params` (under the reload's limits on which files may be loaded)
    /// and puts it in shadow, replacing any shadow before it. The built-in scenarios are run
    /// too, and their verdict shown in the report: a candidate that fails them may still be
    /// watched in shadow (that is where it is safe to), but `promote` refuses it. Blocking.
    pub fn start_shadow(
        &self,
        spec: &str,
        params: Option<&[(String, String)]>,
    ) -> Result<Arc<Policy>, String> {
        let (policy, fallback) = self.policy.load(Some(spec), params)?;
        let check = self.policy.check(spec, &policy, &fallback).err();
        let recorder = Some(Arc::clone(&self.rounds));
        let shadow = Shadow::start(Arc::clone(&policy), spec, self.limits, check, recorder)
            .map_err(|e| format!("cannot start the shadow thread: {e}"))?;
        let old = self.shadow.swap(Some(shadow));
        if let Some(old) = old {
            old.stop();
        }
        tracing::info!(policy = %policy.name, hash = %policy.hash, "shadow policy started: asked at every decision, never executed");
        Ok(policy)
    }

    /// The running shadow's report, if one runs.
    pub fn shadow_report(&self) -> Option<Report> {
        self.shadow.load().as_ref().map(|s| s.report())
    }

    /// Stops the shadow; its last report. Blocking (it waits for the shadow's backlog).
    pub fn stop_shadow(&self) -> Option<Report> {
        let old = self.shadow.swap(None)?;
        old.stop();
        tracing::info!(policy = %old.policy.name, "shadow policy stopped");
        Some(old.report())
    }

    /// Makes the shadow the live policy, validated like any reload (and counted as one); the
    /// shadow stops when it takes charge. `Err` when none runs or the reload is refused (the
    /// shadow then keeps running). Blocking.
    pub fn promote(&self) -> Result<(Arc<Policy>, Report), String> {
        let Some(shadow) = self.shadow.load_full() else {
            return Err("no shadow policy is running: start one with `policy shadow`".into());
        };
        let params = shadow.policy.params.clone();
        let promoted = self.reload_policy(Some(&shadow.spec), Some(&params))?;
        // Only the shadow that was promoted is stopped (another may have replaced it since).
        let current = self.shadow.load_full();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &shadow)) {
            self.shadow.store(None);
        }
        shadow.stop();
        tracing::info!(policy = %promoted.name, hash = %promoted.hash, "shadow policy promoted: it is the live policy");
        Ok((promoted, shadow.report()))
    }
}
