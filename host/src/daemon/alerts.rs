//! Spike alerts: sliding-window rules over the signals rounds produce (pin retries,
//! verification failures, local fallbacks, policy incidents). A rule fires when more than
//! `threshold` events fall within `window_secs`: a WARN line, and a JSON POST to its webhook
//! if it has one. It then stays quiet for one window, so a sustained spike alerts once a window.

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

    /// Feeds a round's signals to every rule; fires (and returns) the rules that tripped.
    pub fn record(&self, signals: &Signals, now: Instant) -> Vec<Fired> {
        let mut fired = Vec::new();
        for window in &self.rules {
            let Ok(mut w) = window.lock() else { continue };
            let n = match w.rule.signal.as_str() {
                "pin_retries" => signals.pin_retries,
                "verification_failures" => signals.verification_failures,
                "local_fallbacks" => signals.local_fallbacks,
                "policy_incidents" => signals.policy_incidents,
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
                };
                tracing::warn!(
                    alert = %f.rule,
                    signal = %f.signal,
                    count,
                    "ALERT {}: {count} {} in the last {} s (threshold {})",
                    f.rule,
                    f.signal,
                    w.rule.window_secs,
                    w.rule.threshold
                );
                if let Some(url) = w.rule.webhook.clone() {
                    self.post(url, &w.rule, count);
                }
                fired.push(f);
            }
        }
        fired
    }

    fn post(&self, url: String, rule: &AlertRule, count: usize) {
        let body = json!({
            "alert": rule.name,
            "signal": rule.signal,
            "count": count,
            "window_secs": rule.window_secs,
            "threshold": rule.threshold,
            "at": crate::journal::timestamp(std::time::SystemTime::now()),
        });
        let http = self.http.clone();
        tokio::spawn(async move {
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
}
