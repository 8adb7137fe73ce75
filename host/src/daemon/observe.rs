//! The daemon's live view of its nodes: a ledger observer that feeds the metrics and the alert
//! signals the moment each node action ends (not when its round ends), and refreshes the
//! per-node gauges at scrape time.
//!
//! The breaker it reports is the one the active policy runs ([`host_rules::breaker`] with the
//! policy's `breaker_failures` and `breaker_cooldown_ms`), so what the operator sees is what
//! the policy does.

use super::alerts::Alerts;
use super::metrics::{Metrics, Signals};
use crate::health::{self, Ended, Kind, Ledger, Observer, Thresholds};
use host_rules::Breaker;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The observer. One per daemon, on the topology's ledger.
pub struct Live {
    metrics: Arc<Metrics>,
    alerts: Arc<Alerts>,
    params: Mutex<Thresholds>,
    /// Each node's breaker right after its last ended action: an opening is a change to open.
    last: Mutex<HashMap<String, Breaker>>,
}

impl Live {
    /// Observes `ledger` from what it already knows, so a restart does not announce breakers
    /// that were open before it again.
    pub fn attach(
        ledger: &Ledger,
        metrics: Arc<Metrics>,
        alerts: Arc<Alerts>,
        params: Thresholds,
    ) -> Arc<Live> {
        let last = ledger
            .snapshot()
            .iter()
            .map(|(node, h)| (node.clone(), params.breaker(h)))
            .collect();
        let live = Arc::new(Live {
            metrics,
            alerts,
            params: Mutex::new(params),
            last: Mutex::new(last),
        });
        ledger.observe(Arc::clone(&live) as Arc<dyn Observer>);
        live.refresh(ledger);
        live
    }

    /// After a policy swap: the new policy's breaker is the one to report.
    pub fn set_params(&self, params: Thresholds) {
        if let Ok(mut p) = self.params.lock() {
            *p = params;
        }
    }

    fn params(&self) -> Thresholds {
        self.params.lock().map(|p| *p).unwrap_or_default()
    }

    /// Sets the node gauges from the ledger as of now: breakers follow time (an open one cools
    /// down to half-open with no new event), so this runs at every scrape.
    pub fn refresh(&self, ledger: &Ledger) {
        let params = self.params();
        let snapshot = ledger.snapshot();
        for node in self.metrics.nodes() {
            let h = snapshot.get(node).cloned().unwrap_or_else(health::unknown);
            self.metrics
                .set_node(node, params.breaker(&h), h.consecutive_failures);
        }
    }
}

impl Observer for Live {
    fn ended(&self, e: &Ended<'_>) {
        self.metrics.action_ended(e);
        let params = self.params();
        let now = params.breaker(e.health);
        self.metrics
            .set_node(e.node, now, e.health.consecutive_failures);
        // Opened: it was not open after the node's previous action (closed -> open), or this
        // action was the probe a half-open breaker let through and it failed (half-open ->
        // open; the probe's start had closed the door for everyone else meanwhile).
        let was = self
            .last
            .lock()
            .ok()
            .and_then(|mut last| last.insert(e.node.to_string(), now));
        let probe = params.breaker(e.before) == Breaker::HalfOpen;
        let opened = now == Breaker::Open && (was != Some(Breaker::Open) || probe);
        if opened {
            self.metrics.breaker_opened(e.node);
            tracing::warn!(
                node = e.node,
                consecutive_failures = e.health.consecutive_failures,
                "circuit breaker of {} opened after {} failures in a row",
                e.node,
                e.health.consecutive_failures
            );
        }
        // An abandoned pin lost a race another node won: nothing is retried after it.
        let pin_retry = e.kind == Kind::Pin && !e.ok && e.failure != Some(health::ABANDONED);
        let verification_failure = !e.ok && matches!(e.kind, Kind::Verify | Kind::CheckRetrievable);
        let signals = Signals {
            pin_retries: u64::from(pin_retry),
            verification_failures: u64::from(verification_failure),
            breaker_opened: u64::from(opened),
            ..Signals::default()
        };
        if signals != Signals::default() {
            self.alerts
                .record_node(e.node, &signals, std::time::Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertRule;
    use std::time::Duration;

    fn live(ledger: &Ledger, rules: &[AlertRule]) -> (Arc<Live>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(&["primary", "backup-1"]));
        let alerts = Arc::new(Alerts::new(rules));
        let live = Live::attach(ledger, Arc::clone(&metrics), alerts, Thresholds::default());
        (live, metrics)
    }

    /// The value of one sample line of the exposition, by its exact name and labels.
    fn sample(live: &Live, metrics: &Metrics, ledger: &Ledger, series: &str) -> f64 {
        live.refresh(ledger);
        let dir = tempfile::tempdir().expect("tempdir");
        let text = metrics.render(&dir.path().join("journal.jsonl"));
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series}:\n{text}"))
    }

    #[tokio::test(start_paused = true)]
    async fn actions_count_as_they_end() {
        let ledger = Arc::new(Ledger::in_memory());
        let (live, metrics) = live(&ledger, &[]);
        let value = |series: &str| sample(&live, &metrics, &ledger, series);
        let pin = ledger.start("primary", Kind::Pin);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        pin.ended(None);
        ledger
            .start("primary", Kind::Verify)
            .ended(Some("not-pinned"));
        ledger.start("backup-1", Kind::Pin).ended(Some("timeout"));
        ledger.start("backup-1", Kind::Pin).abandon();
        ledger
            .start("backup-1", Kind::CheckRetrievable)
            .ended(Some("unretrievable"));
        // A failed connect (provider hint) stays in the node's window, but it is not the
        // dialer's failure: no counter of its own and no step towards the breaker.
        ledger
            .start("primary", Kind::Connect)
            .ended(Some("unreachable"));
        let ok = "pinwarden_pin_attempts_total{node=\"primary\",outcome=\"ok\"}";
        assert_eq!(value(ok), 1.0);
        for (series, n) in [
            (
                "pinwarden_pin_attempts_total{node=\"backup-1\",outcome=\"timeout\"}",
                1.0,
            ),
            (
                "pinwarden_pin_attempts_total{node=\"backup-1\",outcome=\"abandoned\"}",
                1.0,
            ),
            (
                "pinwarden_verification_failures_total{node=\"primary\",check=\"pin-ls\"}",
                1.0,
            ),
            (
                "pinwarden_verification_failures_total{node=\"backup-1\",check=\"retrievable\"}",
                1.0,
            ),
            (
                "pinwarden_node_pin_duration_seconds_count{node=\"primary\"}",
                1.0,
            ),
            (
                "pinwarden_node_pin_duration_seconds_sum{node=\"primary\"}",
                1.5,
            ),
            (
                "pinwarden_node_pin_duration_seconds_count{node=\"backup-1\"}",
                0.0,
            ),
            ("pinwarden_node_consecutive_failures{node=\"primary\"}", 1.0),
            (
                "pinwarden_node_consecutive_failures{node=\"backup-1\"}",
                3.0,
            ),
            ("pinwarden_node_breaker_state{node=\"backup-1\"}", 2.0),
        ] {
            assert_eq!(value(series), n, "{series}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_breaker_opening_counts_once_and_again_after_a_failed_probe() {
        let ledger = Arc::new(Ledger::in_memory());
        let (live, metrics) = live(&ledger, &[]);
        let state = || {
            sample(
                &live,
                &metrics,
                &ledger,
                "pinwarden_node_breaker_state{node=\"primary\"}",
            )
        };
        let openings = || {
            sample(
                &live,
                &metrics,
                &ledger,
                "pinwarden_node_breaker_openings_total{node=\"primary\"}",
            )
        };
        let fail = || {
            ledger
                .start("primary", Kind::Pin)
                .ended(Some("unreachable"))
        };
        fail();
        fail();
        // Two actions that both started before the third failure: one opening, not two.
        let (a, b) = (
            ledger.start("primary", Kind::Pin),
            ledger.start("primary", Kind::Pin),
        );
        assert_eq!((state(), openings()), (0.0, 0.0));
        a.ended(Some("timeout"));
        assert_eq!((state(), openings()), (2.0, 1.0));
        b.ended(Some("timeout"));
        assert_eq!((state(), openings()), (2.0, 1.0));
        // Cooled down with no new event: the gauge follows time.
        tokio::time::advance(Duration::from_millis(host_rules::BREAKER_COOLDOWN_MS)).await;
        assert_eq!((state(), openings()), (1.0, 1.0));
        // The probe fails: it opens again.
        fail();
        assert_eq!((state(), openings()), (2.0, 2.0));
        tokio::time::advance(Duration::from_millis(host_rules::BREAKER_COOLDOWN_MS)).await;
        ledger.start("primary", Kind::Pin).ended(None);
        assert_eq!((state(), openings()), (0.0, 2.0));
        for _ in 0..3 {
            fail();
        }
        assert_eq!((state(), openings()), (2.0, 3.0));
        // The policy's parameters decide: a disabled breaker never reads open.
        live.set_params(Thresholds {
            failures: 0,
            cooldown_ms: 0,
        });
        assert_eq!(state(), 0.0);
    }

    #[tokio::test]
    async fn a_restart_does_not_announce_an_open_breaker_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Arc::new(Ledger::open(dir.path()));
        for _ in 0..3 {
            ledger.start("primary", Kind::Pin).ended(Some("stalled"));
        }
        ledger.flush();
        let next = Arc::new(Ledger::open(dir.path()));
        let (live, metrics) = live(&next, &[]);
        let value = |series: &str| sample(&live, &metrics, &next, series);
        let openings = "pinwarden_node_breaker_openings_total{node=\"primary\"}";
        // Restored open (the last failure was moments ago), and nothing said about it.
        assert_eq!(value("pinwarden_node_breaker_state{node=\"primary\"}"), 2.0);
        next.start("primary", Kind::Pin).ended(Some("stalled"));
        assert_eq!(value(openings), 0.0);
    }

    #[test]
    fn breaker_params_come_from_the_policy() {
        let registry = crate::policy::Registry::new(
            crate::policy::PolicyEngine::new(Default::default(), None).expect("engine"),
        );
        let tank = |params: &[(&str, &str)]| {
            let params: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            registry.fallback_for(&params).expect("tank-mode")
        };
        assert_eq!(Thresholds::of(&tank(&[])), Thresholds::default());
        assert_eq!(
            Thresholds::of(&tank(&[
                ("breaker_failures", "5"),
                ("breaker_cooldown_ms", "1000")
            ])),
            Thresholds {
                failures: 5,
                cooldown_ms: 1_000
            }
        );
    }
}
