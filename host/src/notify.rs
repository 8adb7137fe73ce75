//! Completion webhooks: what the gateway is told when a job ends, and how it can trust it.
//!
//! A round's end writes one event per job id that asked for events (its own `notify` URL, or
//! the daemon-wide `[notify] url`) into the queue's outbox, in the transaction that records
//! the end (`queue/outbox.rs`). The daemon's notifier (`daemon/notifier.rs`) delivers them at
//! least once, signed: `Pinwarden-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<raw body>">`, the scheme of Stripe's and GitHub's webhooks. Receivers de-duplicate by
//! the event's `id` (also sent as `Pinwarden-Event-Id`).

use serde::{Deserialize, Serialize};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Pinwarden-Signature";
/// The header that repeats the event's id (the body has it too).
pub const EVENT_ID_HEADER: &str = "Pinwarden-Event-Id";
/// The secret's variable when `notify.secret_env` is not set.
pub const DEFAULT_SECRET_ENV: &str = "PINWARDEN_NOTIFY_SECRET";
/// The shortest secret accepted: an HMAC key should not be guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// `[notify]`: completion webhooks (off while neither `url` nor `allowed_hosts` is set).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Where every job's events go when its submit names no URL (PSA requests included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The hosts a submit's `notify` URL may name ("host" or "host:port"; the default `url`'s
    /// host is always allowed). A submitter cannot make the daemon call anything else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// The variable holding the HMAC key (default PINWARDEN_NOTIFY_SECRET), read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// An event not delivered after this long is no longer retried; it is kept and shown.
    pub max_age_secs: u64,
    /// Delay before the first retry; doubles per attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// One delivery attempt's limit (connect, send, answer).
    pub timeout_ms: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            url: None,
            allowed_hosts: Vec::new(),
            secret_env: None,
            max_age_secs: 3 * 86_400,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            timeout_ms: 10_000,
            concurrency: 8,
        }
    }
}

impl NotifyConfig {
    /// Whether webhooks are configured at all.
    pub fn enabled(&self) -> bool {
        self.url.is_some() || !self.allowed_hosts.is_empty()
    }

    pub fn secret_var(&self) -> &str {
        self.secret_env.as_deref().unwrap_or(DEFAULT_SECRET_ENV)
    }

    /// The keys' values, checked; `Err` starts with the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            parse_url(url).map_err(|e| format!("notify.url: {e}"))?;
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            let h = host.trim();
            if h.is_empty() || h.contains('/') || h.contains('@') || h.contains(char::is_whitespace)
            {
                return Err(format!(
                    "notify.allowed_hosts[{i}]: '{host}' is not a host name or host:port"
                ));
            }
        }
        if self.max_age_secs == 0 {
            return Err("notify.max_age_secs: must be at least 1".into());
        }
        if self.retry_base_ms == 0 || self.retry_base_ms > self.retry_max_ms {
            return Err(
                "notify.retry_base_ms: must be at least 1 and not exceed notify.retry_max_ms"
                    .into(),
            );
        }
        if self.timeout_ms < 100 || self.timeout_ms > 600_000 {
            return Err("notify.timeout_ms: must be from 100 to 600000".into());
        }
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err("notify.concurrency: must be from 1 to 256".into());
        }
        Ok(())
    }

    /// A submit's callback URL, if the allow-list lets the daemon call it; `Err` says why not
    /// (answered 400).
    pub fn check_callback(&self, url: &str) -> Result<String, String> {
        if !self.enabled() {
            return Err(
                "notify: this daemon has no [notify] section, so it sends no events".into(),
            );
        }
        let parsed = parse_url(url).map_err(|e| format!("notify: {e}"))?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port_or_known_default().unwrap_or(0);
        let default_host = self
            .url
            .as_deref()
            .and_then(|u| parse_url(u).ok())
            .map(|u| {
                (
                    u.host_str().unwrap_or_default().to_ascii_lowercase(),
                    u.port_or_known_default(),
                )
            });
        let allowed = self.allowed_hosts.iter().any(|entry| {
            let entry = entry.trim().to_ascii_lowercase();
            match entry
                .rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
            {
                Some((h, p)) => {
                    h.trim_start_matches('[').trim_end_matches(']') == host
                        && p.parse::<u16>().ok() == Some(port)
                }
                None => entry.trim_start_matches('[').trim_end_matches(']') == host,
            }
        }) || default_host.is_some_and(|(h, p)| {
            h.trim_start_matches('[').trim_end_matches(']') == host && p == Some(port)
        });
        if !allowed {
            return Err(format!(
                "notify: host '{host}' of '{url}' is not in notify.allowed_hosts"
            ));
        }
        Ok(parsed.to_string())
    }
}

/// An http(s) URL without credentials (they would be logged and shown with the job).
fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("'{url}' is not an http(s) URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{url}' names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "'{url}' carries credentials: the signature authenticates the daemon, so leave them out"
        ));
    }
    Ok(parsed)
}

/// The kinds of event, as the body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// Pinned, verified and proved retrievable (the persistence gate passed).
    Pinned,
    /// Pinned on the local node and journaled for migration.
    LocalFallback,
    /// A round failed; `will_retry` says whether the queue tries again.
    Failed,
    /// The job was cancelled.
    Cancelled,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Pinned => "pinned",
            EventType::LocalFallback => "local-fallback",
            EventType::Failed => "failed",
            EventType::Cancelled => "cancelled",
        }
    }
}

/// One event's body (`host/openapi.json`'s `webhooks`). Fields a type does not use are left
/// out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event; a repeated delivery carries the same id.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub job_id: String,
    /// This job's events in the order they happened (1, 2, ...): a receiver keeps the highest
    /// it has seen, since deliveries (retried, concurrent) arrive in any order.
    pub seq: u32,
    /// The CID as this job's caller sent it.
    pub cid: String,
    /// When the event happened: RFC 3339, UTC, milliseconds.
    pub created: String,
    /// pinned, local-fallback: the nodes that pinned, verified and proved it retrievable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// pinned, local-fallback: from the job's submission to this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The policy that decided the round's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// failed, cancelled: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// failed: whether the queue tries again (a lazy job), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will_retry: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// failed: rounds failed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_rounds: Option<u32>,
    /// local-fallback: the journal record, as written to `local-fallback-pins.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<crate::journal::Entry>,
}

impl Event {
    /// An event of `kind` for a job, with a fresh id and `created` = `at_ms`.
    pub fn new(kind: EventType, job_id: &str, cid: &str, at_ms: i64) -> Event {
        Event {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            kind,
            job_id: job_id.to_string(),
            seq: 0,
            cid: cid.to_string(),
            created: rfc3339_ms(at_ms),
            nodes: Vec::new(),
            duration_ms: None,
            decided_by: None,
            reason: None,
            will_retry: None,
            next_attempt_at: None,
            failed_rounds: None,
            journal: None,
        }
    }
}

/// `at_ms` (Unix milliseconds) as RFC 3339, UTC, milliseconds, `Z`.
pub fn rfc3339_ms(at_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms.max(0) as u64);
    crate::journal::timestamp(at)
}

/// The `Pinwarden-Signature` value of `body` sent at `t` (Unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Whether `header` is a valid signature of `body` under `secret`, made within `tolerance` of
/// `now` (Unix seconds). The receiver's side, for tests and Rust receivers.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance_secs.unsigned_abs() {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let signed = [t.to_string().as_bytes(), b".", body].concat();
    sigs.iter().any(|hex| {
        decode_hex(hex).is_some_and(|tag| ring::hmac::verify(&key, &signed, &tag).is_ok())
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_t_dot_body() {
        // RFC 4231 does not cover the "t." prefix; this is the value of
        // `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret-key-0123456789`.
        let sig = signature(b"secret-key-0123456789", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=95a94f8e9919abdf552708a6c1d5604116ad2a78af755c3113cf47afa01d92f2"
        );
        assert!(verify(
            b"secret-key-0123456789",
            &sig,
            br#"{"a":1}"#,
            1_700_000_010,
            300
        ));
    }

    #[test]
    fn verify_refuses_tampering_staleness_and_the_wrong_key() {
        let body = br#"{"id":"evt_1","type":"pinned"}"#;
        let sig = signature(b"secret-key-0123456789", 1_000, body);
        assert!(verify(b"secret-key-0123456789", &sig, body, 1_000, 300));
        assert!(!verify(
            b"secret-key-0123456789",
            &sig,
            br#"{"id":"evt_1","type":"failed"}"#,
            1_000,
            300
        ));
        assert!(!verify(b"secret-key-0123456789", &sig, body, 1_301, 300));
        assert!(!verify(b"another-key-0123456789", &sig, body, 1_000, 300));
        assert!(!verify(
            b"secret-key-0123456789",
            "t=1000",
            body,
            1_000,
            300
        ));
        assert!(!verify(b"secret-key-0123456789", "v1=00", body, 1_000, 300));
        // Hostile headers are refused, never a panic.
        let min = format!("t={},v1=00", i64::MIN);
        assert!(!verify(b"secret-key-0123456789", &min, body, i64::MAX, 300));
        let plus = sig.replacen("v1=", "v1=+", 1);
        assert!(!verify(b"secret-key-0123456789", &plus, body, 1_000, 300));
    }

    fn config(allowed: &[&str], url: Option<&str>) -> NotifyConfig {
        NotifyConfig {
            url: url.map(str::to_string),
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            ..NotifyConfig::default()
        }
    }

    #[test]
    fn callbacks_outside_the_allow_list_are_refused_with_the_host_named() {
        let c = config(&["gateway.example", "127.0.0.1:8080"], None);
        assert!(c.check_callback("https://gateway.example/hooks").is_ok());
        assert!(c.check_callback("https://GATEWAY.example:8443/h").is_ok());
        assert!(c.check_callback("http://127.0.0.1:8080/h").is_ok());
        let e = c.check_callback("http://127.0.0.1:8081/h").unwrap_err();
        assert!(
            e.contains("127.0.0.1") && e.contains("allowed_hosts"),
            "{e}"
        );
        let e = c
            .check_callback("http://169.254.169.254/latest")
            .unwrap_err();
        assert!(e.contains("169.254.169.254"), "{e}");
        assert!(
            c.check_callback("https://gateway.example.evil.test/")
                .is_err()
        );
        assert!(
            c.check_callback("file:///etc/passwd")
                .unwrap_err()
                .contains("http(s)")
        );
        assert!(
            c.check_callback("https://u:p@gateway.example/")
                .unwrap_err()
                .contains("credentials")
        );
        // The default URL's host and port are allowed without a list entry.
        let d = config(&[], Some("http://10.0.0.9:9000/hooks"));
        assert!(d.check_callback("http://10.0.0.9:9000/other").is_ok());
        assert!(d.check_callback("http://10.0.0.9:9001/other").is_err());
        // No [notify]: no events, said so.
        let off = NotifyConfig::default();
        assert!(
            off.check_callback("https://gateway.example/")
                .unwrap_err()
                .contains("[notify]")
        );
    }

    #[test]
    fn validate_names_the_key() {
        let mut c = config(&["bad host"], None);
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("notify.allowed_hosts[0]")
        );
        c = config(&[], Some("ftp://x/"));
        assert!(c.validate().unwrap_err().starts_with("notify.url"));
        c = NotifyConfig {
            retry_base_ms: 10,
            retry_max_ms: 5,
            ..NotifyConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("notify.retry_base_ms")
        );
    }
}
