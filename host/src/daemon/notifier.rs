//! Delivers the outbox's webhook events (see [`crate::notify`] and `queue/outbox.rs`).
//!
//! Apart from rounds and the API by construction: rounds only write events (in their end's
//! transaction) and wake this loop; every HTTP call happens here, at most
//! `notify.concurrency` at once, each bounded by `notify.timeout_ms`. A slow or dead receiver
//! therefore costs this loop's slots, never a round's or a request's time.
//!
//! At least once: an event is marked delivered only after a 2xx; a failed attempt is retried
//! with doubling delays (`retry_base_ms` .. `retry_max_ms`) until the event is older than
//! `max_age_secs`, then kept as expired. Redirects are not followed: a 3xx could lead past
//! `notify.allowed_hosts`.

use super::{Daemon, now_ms};
use crate::notify::{EVENT_ID_HEADER, SIGNATURE_HEADER, signature};
use crate::queue::outbox::Outgoing;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// The notifier's share of the daemon: its key, and the wake-up rounds give it.
pub struct Notifier {
    /// `None`: `[notify]` is off, nothing is ever written to the outbox for delivery.
    secret: Option<Vec<u8>>,
    /// A round's end wrote events.
    pub wake: Notify,
}

impl Notifier {
    pub fn new(secret: Option<Vec<u8>>) -> Notifier {
        Notifier {
            secret,
            wake: Notify::new(),
        }
    }
}

/// Runs until `stop` says so. Deliveries in flight then are dropped (their events stay
/// leased and are delivered again after the lease, a restart included); the delivery marks
/// waiting are written before it returns.
pub async fn run(daemon: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(secret) = daemon.notifier.secret.clone() else {
        return;
    };
    let settings = daemon.config.notify.clone();
    crate::install_crypto_provider();
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pinwarden/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks: cannot build the HTTP client: {e}; no events are sent");
            return;
        }
    };
    let secret: Arc<[u8]> = secret.into();
    // An attempt ends within its timeout; past that the event is due again.
    let lease_ms = settings.timeout_ms as i64 + 5_000;
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    // Delivery marks are written in batches by one flusher: a burst of rounds costs a few
    // outbox transactions, not one per event.
    let (marks, marked) = tokio::sync::mpsc::unbounded_channel::<String>();
    let flusher = tokio::spawn(flush_marks(Arc::clone(&daemon), marked));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let first = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        while tasks.try_join_next().is_some() {}
        // One claim for as many events as there are free slots.
        let mut permits = vec![first];
        while let Ok(p) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(p);
        }
        let limit = permits.len();
        let next = daemon
            .queue
            .run(move |q| {
                let events = q.claim_events(now_ms(), lease_ms, limit)?;
                let due = if events.is_empty() {
                    q.next_event_due_ms()?
                } else {
                    None
                };
                Ok((events, due))
            })
            .await;
        match next {
            Ok((events, due)) if events.is_empty() => {
                drop(permits);
                let wait = due.map_or(1_000, |at| (at - now_ms()).clamp(5, 1_000)) as u64;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    () = daemon.notifier.wake.notified() => {}
                    _ = stop.changed() => break,
                }
            }
            Ok((events, _)) => {
                for (event, permit) in events.into_iter().zip(permits) {
                    let (d, http, secret) =
                        (Arc::clone(&daemon), http.clone(), Arc::clone(&secret));
                    let marks = marks.clone();
                    tasks.spawn(async move {
                        deliver(&d, &http, &secret, event, &marks).await;
                        drop(permit);
                    });
                }
            }
            Err(e) => {
                drop(permits);
                tracing::error!("webhooks: outbox: {e}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // The last marks are written before the daemon exits (their events are not sent again).
    drop(marks);
    let _ = flusher.await;
}

/// Writes delivery marks as they come, every one waiting in one transaction; ends when every
/// sender is gone, after writing what is left.
async fn flush_marks(
    daemon: Arc<Daemon>,
    mut marked: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    const BATCH: usize = 512;
    while let Some(first) = marked.recv().await {
        let mut ids = vec![first];
        while ids.len() < BATCH {
            match marked.try_recv() {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
        let n = ids.len();
        // Not recorded (a full disk): the leases run out and the events are sent again, with
        // the same ids, which receivers de-duplicate.
        if let Err(e) = daemon
            .queue
            .run(move |q| q.events_delivered(&ids, now_ms()))
            .await
        {
            tracing::error!("webhooks: {n} deliveries not recorded ({e}); they will be repeated");
        }
    }
}

/// One attempt: POST the signed body, then record what came of it.
async fn deliver(
    daemon: &Daemon,
    http: &reqwest::Client,
    secret: &[u8],
    event: Outgoing,
    marks: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    let settings = &daemon.config.notify;
    // The allow-list as configured now: a host removed since the event was written is not
    // called. The event is kept, expired, with the reason.
    if let Err(why) = settings.check_callback(&event.url) {
        let id = event.event_id.clone();
        let error = why.clone();
        let now = now_ms();
        let recorded = daemon
            .queue
            .run(move |q| q.event_failed(&id, &error, now, now, 0))
            .await;
        tracing::error!(event = %event.event_id, "webhook event not sent ({why}); kept as expired");
        if let Err(e) = recorded {
            tracing::error!(event = %event.event_id, "webhook: cannot record it: {e}");
        }
        return;
    }
    let t = now_ms() / 1_000;
    let sent = http
        .post(&event.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(secret, t, event.body.as_bytes()),
        )
        .header(EVENT_ID_HEADER, &event.event_id)
        .body(event.body.clone())
        .send()
        .await;
    let outcome = match sent {
        Ok(reply) if reply.status().is_success() => Ok(()),
        Ok(reply) => Err(format!("answered HTTP {}", reply.status())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {} ms", settings.timeout_ms)),
        Err(e) if e.is_connect() => Err(format!("cannot connect: {}", root_cause(&e))),
        Err(e) => Err(root_cause(&e)),
    };
    daemon.metrics.webhook_attempt(outcome.is_ok());
    let host = reqwest::Url::parse(&event.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let id = event.event_id.clone();
    match outcome {
        Ok(()) => {
            tracing::debug!(event = %id, host = %host, "webhook delivered");
            let _ = marks.send(id);
        }
        Err(why) => {
            let factor = 1u64.checked_shl(event.attempts.min(32)).unwrap_or(u64::MAX);
            let delay = settings
                .retry_base_ms
                .saturating_mul(factor)
                .min(settings.retry_max_ms);
            let now = now_ms();
            let max_age = (settings.max_age_secs as i64).saturating_mul(1_000);
            let error = why.clone();
            let expired = daemon
                .queue
                .run(move |q| q.event_failed(&id, &error, now, now + delay as i64, max_age))
                .await;
            match expired {
                Ok(true) => tracing::error!(
                    event = %event.event_id,
                    host = %host,
                    attempts = event.attempts + 1,
                    "webhook event expired undelivered after notify.max_age_secs ({why}); kept in the outbox"
                ),
                Ok(false) => tracing::warn!(
                    event = %event.event_id,
                    host = %host,
                    "webhook delivery failed ({why}); retrying in {} ms",
                    delay
                ),
                Err(e) => {
                    tracing::error!(event = %event.event_id, "webhook: cannot record a failed attempt: {e}")
                }
            }
        }
    }
}

/// The innermost error's text (reqwest's own says only "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
