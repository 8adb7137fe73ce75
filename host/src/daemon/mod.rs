//! `pinwarden serve`: the daemon. HTTP/JSON on a Unix socket (and optionally TCP with a bearer
//! token), a durable queue worked by a bounded pool, the local-fallback journal, live policy
//! swaps (socket, SIGHUP, file watch).
//!
//! * [`api`]: the HTTP endpoints.
//! * [`async_queue`]: the queue, called off the runtime's threads.
//! * [`worker`]: claims due pins from the queue and runs their rounds.
//! * [`policy_slot`]: the atomically swappable policy.
//! * [`metrics`], [`alerts`]: `/metrics` and sliding-window spike alerts; [`observe`] feeds
//!   both as each node action ends.

pub mod alerts;
pub mod api;
pub mod async_queue;
pub mod delegates;
pub mod json_body;
pub mod listen;
pub mod metrics;
pub mod notifier;
pub mod observe;
pub mod policy_slot;
mod rollout;
mod shadow_api;
pub mod unpinner;
pub mod wire;
pub mod worker;

use crate::app::App;
use crate::config::Config;
use crate::executor::{RoundLimits, Topology};
use crate::journal::Journal;
use crate::kubo::KuboClient;
use crate::queue::{PinRow, Queue};
use async_queue::AsyncQueue;
use policy_slot::PolicySlot;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio::task::AbortHandle;

/// Everything the endpoints and the worker share.
pub struct Daemon {
    pub config: Config,
    pub queue: AsyncQueue,
    pub journal: Arc<Journal>,
    pub policy: PolicySlot,
    pub topology: Topology,
    pub local: Option<Arc<KuboClient>>,
    pub limits: RoundLimits,
    /// Every pin state change, for `wait` submissions.
    pub events: broadcast::Sender<PinRow>,
    /// Wakes the worker when something was queued.
    pub wake: Notify,
    /// Rounds in flight, by CID, so a cancel can stop them.
    pub running: Mutex<HashMap<String, AbortHandle>>,
    pub metrics: Arc<metrics::Metrics>,
    pub alerts: Arc<alerts::Alerts>,
    /// The ledger observer behind the node metrics and signals.
    pub live: Arc<observe::Live>,
    /// The primary node's name (metrics tell backup takeovers by it).
    pub primary: Option<String>,
    /// This daemon's exclusive hold on the data directory (released at exit, even kill -9).
    pub lock: crate::lock::Held,
    /// Set when the daemon stops: waiting clients are answered at once, rounds end.
    pub stop: tokio::sync::watch::Sender<bool>,
    /// The nodes' swarm addresses, for PSA answers.
    pub delegates: delegates::Delegates,
    /// Unpins of deleted PSA requests under way.
    pub unpinning: unpinner::Unpinning,
    /// Delivers the outbox's webhook events.
    pub notifier: notifier::Notifier,
    /// Keeps every round's record (`data/rounds`), off the rounds' way.
    pub rounds: Arc<crate::rounds::store::Recorder>,
    /// A candidate policy asked beside the live one (`policy shadow`), if any.
    pub shadow: arc_swap::ArcSwapOption<crate::rounds::shadow::Shadow>,
}

impl Daemon {
    pub fn new(app: App) -> anyhow::Result<Arc<Daemon>> {
        let App {
            config,
            registry,
            policy,
            fallback,
            topology,
            local,
            ..
        } = app;
        // Before touching the queue: a second daemon on this directory would re-queue the
        // first one's in-flight pins and run them twice.
        let lock =
            crate::lock::try_acquire(&config.data_dir.join(LOCK_FILE)).map_err(|e| match e {
                crate::lock::LockError::Busy { pid, .. } => anyhow::anyhow!(
                    "data directory {} is in use by another pinwarden daemon (pid {}): stop it, \
                     or give this one another --data-dir",
                    config.data_dir.display(),
                    pid.as_deref().unwrap_or("?")
                ),
                other => anyhow::anyhow!("{other}"),
            })?;
        // Refused before anything starts: events would be written and never signed.
        let secret = config.notify_secret().map_err(anyhow::Error::msg)?;
        let queue = Queue::open(&config.data_dir.join("queue.db"))?;
        queue.set_notify(config.notify.enabled(), config.notify.url.clone());
        let queue = AsyncQueue::new(queue);
        let journal = Arc::new(Journal::open(crate::journal::journal_path(
            &config.data_dir,
        ))?);
        let params = config.policy_params(|_| true);
        let slot = PolicySlot::new(
            registry,
            config.policy.name.clone(),
            params,
            policy,
            fallback,
            config.daemon.policy_dir.clone(),
        );
        let (events, _) = broadcast::channel(1024);
        let nodes = topology.infos();
        let primary = nodes
            .iter()
            .find(|n| n.role == crate::Role::Primary)
            .map(|n| n.name.clone());
        let names: Vec<String> = nodes.into_iter().map(|n| n.name).collect();
        let metrics = Arc::new(metrics::Metrics::new(&names));
        let alerts = Arc::new(alerts::Alerts::new(&config.alerts));
        let (active, fallback) = slot.current();
        // The checks a reload runs, before anything is served: a policy that never returns or
        // fails the built-in scenarios must not start a daemon silently. (On a thread of its
        // own: the scenarios run on a runtime of their own.)
        let checked = std::thread::scope(|s| {
            s.spawn(|| crate::sim::check_contract(&active, &fallback))
                .join()
                .unwrap_or_else(|_| Err("the checks panicked".into()))
        });
        if let Err(e) = checked {
            anyhow::bail!(
                "policy '{}' ({}): {e}; the daemon does not start with a policy a reload would refuse",
                config.policy.name,
                active.source
            );
        }
        metrics.expect_policy(&active.name);
        metrics.expect_policy(&fallback.name);
        let live = observe::Live::attach(
            topology.ledger(),
            Arc::clone(&metrics),
            Arc::clone(&alerts),
            crate::health::Thresholds::of(&active),
        );
        let (config_dir, rounds) = (config.data_dir.clone(), config.rounds);
        let daemon = Arc::new(Daemon {
            stop: tokio::sync::watch::Sender::new(false),
            lock,
            primary,
            alerts,
            metrics,
            live,
            config,
            queue,
            journal,
            policy: slot,
            topology,
            local,
            limits: RoundLimits::default(),
            events,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            delegates: delegates::Delegates::default(),
            unpinning: unpinner::Unpinning::default(),
            notifier: notifier::Notifier::new(secret),
            rounds: Arc::new(crate::rounds::store::Recorder::open(&config_dir, &rounds)),
            shadow: arc_swap::ArcSwapOption::empty(),
        });
        if let Some(spec) = daemon.config.policy.shadow.clone() {
            let params = daemon.config.shadow_params();
            let params = (!params.is_empty()).then_some(params.as_slice());
            // On a thread of its own: the built-in scenarios run on a runtime of their own,
            // which cannot start inside the daemon's.
            std::thread::scope(|s| {
                s.spawn(|| daemon.start_shadow(&spec, params))
                    .join()
                    .unwrap_or_else(|_| Err("the shadow's checks panicked".into()))
            })
            .map_err(|e| anyhow::anyhow!("policy.shadow: {e}"))?;
        }
        Ok(daemon)
    }
}

impl Daemon {
    /// Swaps the policy (see [`PolicySlot::reload`]) and counts the attempt. Blocking.
    pub fn reload_policy(
        &self,
        spec: Option<&str>,
        params: Option<&[(String, String)]>,
    ) -> Result<Arc<crate::policy::Policy>, String> {
        let result = self.policy.reload(spec, params);
        self.metrics.observe_reload(result.is_ok());
        if let Ok(policy) = &result {
            self.live.set_params(crate::health::Thresholds::of(policy));
            self.metrics.expect_policy(&policy.name);
            self.metrics.expect_policy(&self.policy.current().1.name);
        }
        result
    }

    /// The `/metrics` text, node gauges refreshed from the ledger and queue gauges from the
    /// queue as of now (if the queue cannot be read, its gauges keep their last values).
    pub async fn metrics_text(&self) -> String {
        self.live.refresh(self.topology.ledger());
        match self.queue.run(|q| q.counts()).await {
            Ok(counts) => self.metrics.observe_queue(&counts),
            Err(e) => tracing::error!("metrics: queue counts: {e}"),
        }
        match self.queue.run(|q| q.event_counts(None)).await {
            Ok(counts) => self.metrics.observe_outbox(&counts),
            Err(e) => tracing::error!("metrics: outbox counts: {e}"),
        }
        self.metrics.observe_shadow(self.shadow_report().as_ref());
        self.metrics
            .observe_records(self.rounds.written(), self.rounds.dropped());
        let journal = crate::journal::journal_path(&self.config.data_dir);
        self.metrics.render(&journal)
    }
}

/// How long open requests get to finish once the daemon stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The daemon's lock file in the data directory.
pub const LOCK_FILE: &str = "pinwarden.lock";

/// Milliseconds since the Unix epoch (the queue's clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where and how to listen.
pub struct Listeners {
    pub socket: std::path::PathBuf,
    pub tcp: Option<String>,
    pub token: Option<String>,
    /// The Pinning Services API: its address and users.
    pub psa: Option<(String, crate::psa::tokens::Tokens)>,
}

/// The rounds' runtime, shut down without blocking when dropped (on any way out of
/// [`serve`], which runs inside another runtime, where a blocking drop would panic).
struct RoundsRuntime(Option<tokio::runtime::Runtime>);

impl RoundsRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for RoundsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves until SIGTERM or SIGINT. SIGHUP reloads the policy.
pub async fn serve(daemon: Arc<Daemon>, listen: Listeners) -> anyhow::Result<()> {
    use anyhow::Context;

    let settings = &daemon.config.daemon;
    let unix = listen::Capped::new(
        listen::bind_private_socket(&listen.socket, settings.socket_mode_bits().unwrap_or(0o600))?,
        settings.max_connections,
    );
    let tcp = match &listen.tcp {
        None => None,
        Some(addr) => {
            let parsed: std::net::SocketAddr = addr
                .parse()
                .with_context(|| format!("--listen {addr}: expected IP:PORT"))?;
            if listen.token.is_none() {
                if !(parsed.ip().is_loopback() && settings.insecure_loopback_tcp) {
                    anyhow::bail!(
                        "--listen {addr}: a TCP listener needs a bearer token (daemon.token_env, \
                         default PINWARDEN_TOKEN); any local user or web page could reach it \
                         otherwise. On loopback only, daemon.insecure_loopback_tcp = true opts out"
                    );
                }
                tracing::warn!(
                    listen = %addr,
                    "TCP listener WITHOUT a bearer token (daemon.insecure_loopback_tcp): every \
                     local user can submit, cancel and switch the policy"
                );
            }
            let bound = listen::bind_tcp(
                addr,
                "--listen",
                settings.max_connections,
                &settings.allowed_hosts,
            );
            Some(bound.await?)
        }
    };
    let psa = match &listen.psa {
        None => None,
        Some((addr, tokens)) => {
            let bound = listen::bind_tcp(
                addr,
                "psa.listen",
                settings.max_connections,
                &settings.allowed_hosts,
            )
            .await?;
            Some((bound, tokens.clone()))
        }
    };

    let stop_rx = daemon.stop.subscribe();
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Before the first answer: PSA replies carry the nodes' addresses.
    if psa.is_some() {
        daemon
            .delegates
            .refresh(
                &daemon.topology,
                daemon.limits.call_timeout.min(Duration::from_secs(5)),
            )
            .await;
    }
    // Rounds run on a runtime of their own: a policy decision is a synchronous call into
    // wasm (up to its deadline), and on the threads that answer the API a slow policy made
    // /v1/health wait behind it. The OS shares the cores between the two thread pools.
    let rounds = RoundsRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("pinwarden-rounds")
            .enable_all()
            .build()
            .context("cannot start the rounds' runtime")?,
    ));
    let worker = tokio::spawn(worker::run(
        Arc::clone(&daemon),
        rounds.handle(),
        stopped(stop_rx.clone()),
    ));
    let unpinner = tokio::spawn(unpinner::run(Arc::clone(&daemon), stop_rx.clone()));
    let notifier = tokio::spawn(notifier::run(Arc::clone(&daemon), stop_rx.clone()));
    let unix_server = tokio::spawn(
        axum::serve(unix, api::router(Arc::clone(&daemon), None))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let tcp_server = tcp.map(|(listener, hosts)| {
        let router = api::router(Arc::clone(&daemon), listen.token.clone());
        listen::spawn_tcp(
            listener,
            hosts,
            api::render_error,
            router,
            stopped(stop_rx.clone()),
        )
    });
    let psa_server = psa.map(|((listener, hosts), tokens)| {
        let router = crate::psa::api::router(Arc::clone(&daemon), tokens);
        listen::spawn_tcp(
            listener,
            hosts,
            crate::psa::api::render_error,
            router,
            stopped(stop_rx.clone()),
        )
    });
    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&daemon), stop_rx.clone()));
    tracing::info!(
        socket = %listen.socket.display(),
        tcp = listen.tcp.as_deref().unwrap_or("-"),
        psa = listen.psa.as_ref().map_or("-", |(a, _)| a.as_str()),
        policy = %daemon.policy.current().0.name,
        "pinwarden daemon ready"
    );

    wait_for_stop(&daemon).await?;
    tracing::info!("shutting down: in-flight pins resume on the next start");
    let _ = daemon.stop.send(true);
    let _ = worker.await;
    // Every round was aborted and awaited by the worker: nothing of them is left to run.
    drop(rounds);
    // Waiting clients were answered 503 when the stop was signalled; a request that still has
    // not finished after the grace period is cut off rather than holding the exit.
    let servers = async {
        let _ = unix_server.await;
        for server in [tcp_server, psa_server].into_iter().flatten() {
            let _ = server.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, servers).await.is_err() {
        tracing::warn!(
            "requests still open after {} s: closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    housekeeping.abort();
    unpinner.abort();
    // It saw the stop: deliveries in flight are dropped (their events stay leased and are sent
    // again after the restart), the delivery marks waiting are written. Bounded all the same.
    if tokio::time::timeout(Duration::from_secs(2), notifier)
        .await
        .is_err()
    {
        tracing::warn!(
            "webhooks: delivery marks not all written at exit; those events will be repeated"
        );
    }
    daemon.topology.ledger().flush();
    // The shadow writes the records of the rounds it is behind on before the recorder closes.
    if let Some(shadow) = daemon.shadow.swap(None) {
        shadow.stop();
    }
    daemon.rounds.close();
    let _ = std::fs::remove_file(&listen.socket);
    Ok(())
}

/// SIGHUP reloads the policy; SIGTERM or SIGINT returns.
async fn wait_for_stop(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the policy");
                let d = Arc::clone(daemon);
                // The outcome is logged by the slot.
                let _ = tokio::task::spawn_blocking(move || d.reload_policy(None, None)).await;
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

/// Watches the policy file (if the policy is a file) and prunes finished jobs.
async fn housekeeping(daemon: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let watch_ms = daemon.config.daemon.watch_ms;
    // Often enough to keep the node-health file current for `pinwarden nodes` and the next start.
    let tick = Duration::from_millis(if watch_ms == 0 {
        5_000
    } else {
        watch_ms.min(5_000)
    });
    let stamp = |spec: &str| {
        std::fs::metadata(spec)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(daemon.policy.spec());
    let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
    let mut last_delegates = std::time::Instant::now();
    let psa_on = daemon.config.psa.listen.is_some();
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        let ledger = Arc::clone(daemon.topology.ledger());
        let _ = tokio::task::spawn_blocking(move || ledger.flush()).await;
        let due = if daemon.delegates.is_empty() {
            delegates::RETRY_EMPTY_EVERY
        } else {
            delegates::REFRESH_EVERY
        };
        if psa_on && last_delegates.elapsed() >= due {
            last_delegates = std::time::Instant::now();
            let bound = daemon.limits.call_timeout.min(Duration::from_secs(5));
            daemon.delegates.refresh(&daemon.topology, bound).await;
        }
        if watch_ms > 0 {
            let spec = daemon.policy.spec();
            let now = stamp(spec);
            if now.is_some() && now != seen {
                seen = now;
                tracing::info!(file = %spec, "policy file changed: reloading");
                let d = Arc::clone(&daemon);
                let _ = tokio::task::spawn_blocking(move || d.reload_policy(None, None)).await;
            }
        }
        let days = daemon.config.daemon.retention_days;
        if days > 0 && last_prune.elapsed() >= Duration::from_secs(3600) {
            last_prune = std::time::Instant::now();
            let cutoff = now_ms() - i64::from(days) * 86_400_000;
            match daemon.queue.run(move |q| q.prune_finished(cutoff)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "forgot finished jobs past retention"),
                Err(e) => tracing::error!("retention: {e}"),
            }
        }
    }
}
