//! Spike alerts: sliding-window rules over the alert signals (pin retries, verification
//! failures and breaker openings, heard as each node action ends; local fallbacks and policy
//! incidents, as each round ends). A rule fires when more than `threshold` events fall within
//! `window_secs`: a WARN line, and a JSON POST to its webhook if it has one. It then stays quiet
//! for one window, so a sustained spike alerts once a window.

use super::metrics::Signals;
use crate::config::AlertRule;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Events remembered per rule, at most (a rule only needs to see `threshold + 1` of them).
const MAX_EVENTS: usize = 100_000;

pub struct Alerts {
    rules: Vec<Mutex<Window>>,
    http: reqwest::Client,
}

struct Window {
    rule: AlertRule,
    events: VecDeque<Instant>,
    quiet_until: Option<Instant>,
}

/// A fired alert, as logged and posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub rule: String,
    pub signal: String,
    pub count: usize,
    /// The node whose event tripped the rule (node signals only).
    pub node: Option<String>,
}

impl Alerts {
    pub fn new(rules: &[AlertRule]) -> Alerts {
        crate::install_crypto_provider();
        Alerts {
            rules: rules
                .iter()
                .map(|r| {
                    Mutex::new(Window {
                        rule: r.clone(),
                        events: VecDeque::new(),
                        quiet_until: None,
                    })
                })
                .collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Feeds signals to every rule; fires (and returns) the rules that tripped.
    pub fn record(&self, signals: &Signals, now: Instant) -> Vec<Fired> {
        self.record_on(None, signals, now)
    }

    /// [`Alerts::record`] for the signals of one node's action: a rule it trips names the node.
    pub fn record_node(&self, node: &str, signals: &Signals, now: Instant) -> Vec<Fired> {
        self.record_on(Some(node), signals, now)
    }

    fn record_on(&self, node: Option<&str>, signals: &Signals, now: Instant) -> Vec<Fired> {
        let mut fired = Vec::new();
        for window in &self.rules {
            let Ok(mut w) = window.lock() else { continue };
            let n = match w.rule.signal.as_str() {
                "pin_retries" => signals.pin_retries,
                "verification_failures" => signals.verification_failures,
                "local_fallbacks" => signals.local_fallbacks,
                "policy_incidents" => signals.policy_incidents,
                "breaker_opened" => signals.breaker_opened,
                _ => 0,
            };
            if n == 0 {
                continue;
            }
            for _ in 0..n.min(MAX_EVENTS as u64) {
                if w.events.len() == MAX_EVENTS {
                    w.events.pop_front();
                }
                w.events.push_back(now);
            }
            let span = Duration::from_secs(w.rule.window_secs);
            while w
                .events
                .front()
                .is_some_and(|t| now.duration_since(*t) > span)
            {
                w.events.pop_front();
            }
            let count = w.events.len();
            let quiet = w.quiet_until.is_some_and(|until| now < until);
            if count as u64 > w.rule.threshold && !quiet {
                w.quiet_until = Some(now + span);
                let f = Fired {
                    rule: w.rule.name.clone(),
                    signal: w.rule.signal.clone(),
                    count,
                    node: node.map(str::to_string),
                };
                let on = node.map(|n| format!(", last on {n}")).unwrap_or_default();
                tracing::warn!(
                    alert = %f.rule,
                    signal = %f.signal,
                    count,
                    node = node.unwrap_or("-"),
                    "ALERT {}: {count} {} in the last {} s (threshold {}){on}",
                    f.rule,
                    f.signal,
                    w.rule.window_secs,
                    w.rule.threshold
                );
                if let Some(url) = w.rule.webhook.clone() {
                    self.post(url, &w.rule, count, node);
                }
                fired.push(f);
            }
        }
        fired
    }

    fn post(&self, url: String, rule: &AlertRule, count: usize, node: Option<&str>) {
        let mut body = json!({
            "alert": rule.name,
            "signal": rule.signal,
            "count": count,
            "window_secs": rule.window_secs,
            "threshold": rule.threshold,
            "at": crate::journal::timestamp(std::time::SystemTime::now()),
        });
        if let Some(node) = node {
            body["node"] = json!(node);
        }
        // Signals may come from any thread that ends a node action; without a runtime there is
        // nothing to send on (the WARN line is still written).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(%url, "alert webhook not called: no async runtime on this thread");
            return;
        };
        let http = self.http.clone();
        runtime.spawn(async move {
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::error!(%url, status = %r.status(), "alert webhook refused the alert")
                }
                Err(e) => tracing::error!(%url, "alert webhook unreachable: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(threshold: u64) -> AlertRule {
        AlertRule {
            name: "verify-spike".into(),
            signal: "verification_failures".into(),
            window_secs: 60,
            threshold,
            webhook: None,
        }
    }

    fn failures(n: u64) -> Signals {
        Signals {
            verification_failures: n,
            ..Signals::default()
        }
    }

    #[test]
    fn fires_once_above_the_threshold_within_the_window() {
        let alerts = Alerts::new(&[rule(3)]);
        let t0 = Instant::now();
        assert!(alerts.record(&failures(2), t0).is_empty());
        assert!(
            alerts
                .record(&failures(1), t0 + Duration::from_secs(10))
                .is_empty(),
            "3 is not above 3"
        );
        let fired = alerts.record(&failures(1), t0 + Duration::from_secs(20));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].count, 4);
        assert!(
            alerts
                .record(&failures(5), t0 + Duration::from_secs(30))
                .is_empty(),
            "quiet for a window"
        );
        assert_eq!(
            alerts
                .record(&failures(1), t0 + Duration::from_secs(81))
                .len(),
            1,
            "fires again after the window"
        );
    }

    #[test]
    fn old_events_slide_out() {
        let alerts = Alerts::new(&[rule(3)]);
        let t0 = Instant::now();
        alerts.record(&failures(3), t0);
        assert!(
            alerts
                .record(&failures(1), t0 + Duration::from_secs(61))
                .is_empty()
        );
    }

    #[test]
    fn other_signals_do_not_count() {
        let alerts = Alerts::new(&[rule(0)]);
        let retries = Signals {
            pin_retries: 10,
            ..Signals::default()
        };
        assert!(alerts.record(&retries, Instant::now()).is_empty());
    }

    #[test]
    fn a_node_signal_names_its_node() {
        let alerts = Alerts::new(&[AlertRule {
            name: "node-down".into(),
            signal: "breaker_opened".into(),
            window_secs: 600,
            threshold: 0,
            webhook: None,
        }]);
        let opened = Signals {
            breaker_opened: 1,
            ..Signals::default()
        };
        let fired = alerts.record_node("backup-1", &opened, Instant::now());
        assert_eq!(
            fired,
            [Fired {
                rule: "node-down".into(),
                signal: "breaker_opened".into(),
                count: 1,
                node: Some("backup-1".into()),
            }]
        );
    }
}
