//! Migrating the local-fallback journal to a permanent node: backlog → pin and prove on the
//! permanent node → (optionally) unpin locally → record.
//!
//! The journal (`local-fallback-pins.jsonl`) is only ever read here; each migrated CID gets one
//! line in `local-fallback-migrated.jsonl`, appended (and fsynced) only after the CID was
//! pinned, listed and found complete on the permanent node ([`crate::prove`]). A CID that fails
//! stays pending, so a run can be repeated or interrupted safely.
//!
//! The whole protocol is here, from the operator's [`Request`] (nodes and credentials resolved
//! by [`Request::nodes`]) to a typed [`Report`] that serializes itself: the CLI only parses its
//! flags and prints, and the daemon could offer the same call.

use crate::Outcome;
use crate::config::{self, Config, Env};
use crate::journal::{self, Entry, JournalRead, Migration, MigrationLog, MigrationsRead, Problem};
use crate::kubo::{Auth, KuboClient};
use crate::node::Node;
use crate::prove::{self, PinBounds};
use crate::trace::describe_outcome;
use futures::StreamExt;
use serde::{Serialize, Serializer};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// How far migration has come in a data directory: its journal and its migration records,
/// read. Not to be confused with [`crate::health::Ledger`], the nodes' health.
pub struct Progress {
    pub journal_path: PathBuf,
    pub migrated_path: PathBuf,
    pub journal: JournalRead,
    pub migrations: MigrationsRead,
}

/// A line of either file that could not be read (skipped, never fatal).
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl Progress {
    /// Reads both files of `data_dir` (missing files read as empty).
    pub fn load(data_dir: &Path) -> Result<Progress, String> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(format!(
                "data directory {}: not a directory",
                data_dir.display()
            ));
        }
        let journal_path = journal::journal_path(data_dir);
        let migrated_path = journal::migrated_path(&journal_path);
        let cannot =
            |path: &Path, e: std::io::Error| format!("cannot read {}: {e}", path.display());
        let journal = journal::read(&journal_path).map_err(|e| cannot(&journal_path, e))?;
        let migrations =
            journal::read_migrations(&migrated_path).map_err(|e| cannot(&migrated_path, e))?;
        Ok(Progress {
            journal_path,
            migrated_path,
            journal,
            migrations,
        })
    }

    /// Every unreadable line of both files.
    pub fn problems(&self) -> Vec<Unreadable> {
        [
            (&self.journal_path, &self.journal.problems),
            (&self.migrated_path, &self.migrations.problems),
        ]
        .into_iter()
        .flat_map(|(path, problems)| {
            problems.iter().map(|Problem { line, reason }| Unreadable {
                file: path.clone(),
                line: *line,
                reason: reason.clone(),
            })
        })
        .collect()
    }

    /// What is still to migrate, and what is done already.
    pub fn backlog(&self) -> journal::Backlog<'_> {
        journal::backlog(&self.journal.entries, &self.migrations.records)
    }

    pub fn stats(&self) -> Stats {
        let entries = &self.journal.entries;
        let backlog = self.backlog();
        let distinct: Vec<&Entry> = backlog
            .pending
            .iter()
            .chain(&backlog.migrated)
            .copied()
            .collect();
        let stamped = entries
            .iter()
            .filter_map(|e| journal::parse_timestamp(&e.local_pin_timestamp).map(|t| (t, e)));
        let oldest = stamped
            .clone()
            .min_by_key(|(t, _)| *t)
            .map(|(_, e)| e.local_pin_timestamp.clone());
        let newest = stamped
            .max_by_key(|(t, _)| *t)
            .map(|(_, e)| e.local_pin_timestamp.clone());
        Stats {
            journal: self.journal_path.clone(),
            migrated_file: self.migrated_path.clone(),
            entries: entries.len(),
            distinct_cids: backlog.distinct(),
            total_mb: total_mb(&distinct),
            pending: backlog.pending.len(),
            pending_mb: total_mb(&backlog.pending),
            migrated: backlog.migrated.len(),
            migration_records: self.migrations.records.len(),
            oldest,
            newest,
            problems: self.problems(),
        }
    }
}

/// `pinwarden fallback stats`, as data (its `--json` field names).
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub journal: PathBuf,
    pub migrated_file: PathBuf,
    pub entries: usize,
    pub distinct_cids: usize,
    pub total_mb: f64,
    pub pending: usize,
    pub pending_mb: f64,
    pub migrated: usize,
    pub migration_records: usize,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub problems: Vec<Unreadable>,
}

fn total_mb(entries: &[&Entry]) -> f64 {
    // A fold from +0.0 (an empty f64 `sum()` is -0.0), rounded to 0.1 MB.
    let mb = entries.iter().fold(0.0, |total, e| total + e.size_mb);
    (mb * 10.0).round() / 10.0
}

/// How a migration runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// CIDs migrated at the same time.
    pub concurrency: usize,
    pub bounds: PinBounds,
    /// Remove the local pin once the CID is proven on the permanent node.
    pub unpin_local: bool,
    /// Connect the permanent node to the local node first (a provider to fetch from).
    pub connect: bool,
}

/// A migration as the operator asked for it (`pinwarden fallback migrate`'s flags, as data).
#[derive(Debug, Clone)]
pub struct Request {
    /// The permanent node's RPC API: a URL or a multiaddr.
    pub to: String,
    /// A bearer token for `to`.
    pub to_token: Option<String>,
    /// Basic authentication for `to`: the user, and the variable that holds the password.
    pub to_basic: Option<(String, String)>,
    /// The local node's RPC API; default: IPFS_LOCAL_API, else the config's node with
    /// role = "local".
    pub local: Option<String>,
    pub options: Options,
}

/// `--to` resolved: the node, the same as a Kubo client when it is one, its label.
type Target = (Arc<dyn Node>, Option<Arc<KuboClient>>, String);

/// The nodes of a migration, as [`Request::nodes`] resolved them.
pub struct Nodes {
    /// The permanent node: a Kubo RPC, or a configured node of any kind (a cluster, a PSA
    /// provider), proven as its kind proves a pin.
    pub to: Arc<dyn Node>,
    /// `to` as a Kubo client, when it is one: the check that it is not the local node itself.
    pub to_kubo: Option<Arc<KuboClient>>,
    /// How `to` is named in records and output (as the operator gave it, password dropped).
    pub to_label: String,
    /// The local node: the provider to connect `to` to, and where to unpin from.
    pub local: Option<Arc<KuboClient>>,
}

impl Request {
    /// The clients of the permanent node (with its credentials; a basic password read from
    /// `env`) and of the local node: [`Request::local`], else IPFS_LOCAL_API, else `config`'s
    /// local node (`config`: the config file, if it could be read). A local node that cannot
    /// be built is only warned about (`warn`), unless `unpin_local` needs it.
    pub fn nodes(
        &self,
        config: Result<Option<&Config>, String>,
        data_dir: Option<&Path>,
        env: Env,
        warn: impl Fn(String),
    ) -> Result<Nodes, Refusal> {
        let (to, to_kubo, to_label) =
            self.target(config.as_ref().ok().copied().flatten(), data_dir, env)?;
        let local = match self.local_node(config, data_dir, env) {
            Ok(local) => local,
            Err(e) if self.options.unpin_local => {
                return Err(Refusal::BadInput(format!("the local node: {e}")));
            }
            Err(e) => {
                warn(format!("the local node: {e} (continuing without it)"));
                None
            }
        };
        if self.options.unpin_local && local.is_none() {
            return Err(Refusal::BadInput(
                "--unpin-local needs the local node: pass --local URL, set IPFS_LOCAL_API, or \
                 configure a node with role = \"local\""
                    .into(),
            ));
        }
        Ok(Nodes {
            to,
            to_kubo,
            to_label,
            local,
        })
    }

    /// `--to`: a URL or multiaddr is a Kubo RPC; a bare name is a node of the config file, of
    /// any kind (`api`), with its own credentials.
    fn target(
        &self,
        config: Option<&Config>,
        data_dir: Option<&Path>,
        env: Env,
    ) -> Result<Target, Refusal> {
        let is_address = self.to.contains("://") || self.to.starts_with('/');
        if !is_address {
            let Some(config) = config else {
                return Err(Refusal::BadInput(format!(
                    "--to {}: not a URL or multiaddr, and no config file names nodes",
                    self.to
                )));
            };
            let Some(node) = config.nodes.iter().find(|n| n.name == self.to) else {
                let names: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
                return Err(Refusal::BadInput(format!(
                    "--to {}: not a URL or multiaddr, and no configured node has that name ({})",
                    self.to,
                    names.join(", ")
                )));
            };
            if self.to_token.is_some() || self.to_basic.is_some() {
                return Err(Refusal::BadInput(format!(
                    "--to {}: a configured node brings its own credentials; drop --to-token / --to-user",
                    self.to
                )));
            }
            let mut node = node.clone();
            node.read_env(env);
            if node.api == crate::node::NodeKind::Kubo {
                let kubo = Arc::new(
                    crate::app::client_for(&node, data_dir).map_err(|e| Refusal::BadInput(e.0))?,
                );
                return Ok((kubo.clone(), Some(kubo), node.name.clone()));
            }
            let remote = crate::app::node_for(config, &node).map_err(|e| Refusal::BadInput(e.0))?;
            return Ok((remote, None, node.name.clone()));
        }
        let kubo = Arc::new(
            KuboClient::new("permanent", &self.to, self.to_auth(env)?)
                .map_err(|e| Refusal::BadInput(format!("--to {}: {e}", self.to)))?,
        );
        Ok((kubo.clone(), Some(kubo), redact(&self.to)))
    }

    fn to_auth(&self, env: Env) -> Result<Option<Auth>, Refusal> {
        if let Some(token) = self.to_token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Auth::Bearer(token.to_string())));
        }
        let Some((user, var)) = &self.to_basic else {
            return Ok(None);
        };
        match env(var) {
            Some(password) => Ok(Some(Auth::Basic {
                user: user.clone(),
                password,
            })),
            None => Err(Refusal::BadInput(format!(
                "--to-password-env: environment variable {var} is not set"
            ))),
        }
    }

    fn local_node(
        &self,
        config: Result<Option<&Config>, String>,
        data_dir: Option<&Path>,
        env: Env,
    ) -> Result<Option<Arc<KuboClient>>, String> {
        if let Some(url) = self.local.clone().or_else(|| config::local_api(env)) {
            let client =
                KuboClient::new("local", url.trim(), None).map_err(|e| format!("{url}: {e}"))?;
            return Ok(Some(Arc::new(client)));
        }
        let Some(mut node) = config?.and_then(Config::local).cloned() else {
            return Ok(None);
        };
        node.read_env(env);
        crate::app::client_for(&node, data_dir)
            .map(|c| Some(Arc::new(c)))
            .map_err(|e| e.0)
    }
}

/// Why a migration cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A node does not answer (retry later).
    Unreachable(String),
    /// Another migration of the same journal is running (retry once it is done).
    Busy(String),
    /// The request makes no sense (e.g. unpinning from the node we migrate to).
    BadInput(String),
}

/// How one CID's migration ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Done {
    Migrated {
        unpinned_local: bool,
        /// `unpin_local` was asked and `pin rm` failed.
        unpin_error: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// One CID of the backlog and how it ended.
#[derive(Debug, Clone)]
pub struct Item {
    pub entry: Entry,
    pub done: Done,
}

/// What a migration did, or would do: the result of [`Plan::migrate`], [`Plan::run`] and
/// [`Plan::dry_run`]. It serializes to one JSON shape in every case (`fallback migrate
/// --json`): see [`Report`]'s `Serialize`.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where to (the URL, any password dropped).
    pub to: String,
    pub journal: PathBuf,
    pub migrated_file: PathBuf,
    /// Nothing was done: [`Report::would_migrate`] lists what would have been.
    pub dry_run: bool,
    /// CIDs pending when the run started.
    pub pending: usize,
    /// CIDs already migrated by earlier runs (skipped).
    pub skipped: usize,
    /// Lines of either file that could not be read (skipped).
    pub problems: Vec<Unreadable>,
    /// A dry run's pending CIDs (empty otherwise).
    pub would_migrate: Vec<Entry>,
    /// The CIDs that ended, in the order they ended.
    pub items: Vec<Item>,
    /// Stopped early (Ctrl-C): the CIDs not in `items` stay pending.
    pub interrupted: bool,
}

impl Report {
    pub fn migrated(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|i| matches!(i.done, Done::Migrated { .. }))
    }
    pub fn failed(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|i| matches!(i.done, Done::Failed { .. }))
    }
    /// The failed CIDs with their reasons.
    pub fn failures(&self) -> impl Iterator<Item = (&Entry, &str)> {
        self.items.iter().filter_map(|i| match &i.done {
            Done::Failed { reason } => Some((&i.entry, reason.as_str())),
            Done::Migrated { .. } => None,
        })
    }
    /// The migrated CIDs whose local pin could not be removed, with the reason.
    pub fn unpin_failures(&self) -> impl Iterator<Item = (&Entry, &str)> {
        self.items.iter().filter_map(|i| match &i.done {
            Done::Migrated {
                unpin_error: Some(reason),
                ..
            } => Some((&i.entry, reason.as_str())),
            _ => None,
        })
    }
    /// Pending CIDs this run did not finish (all of them in a dry run): `pending` is always
    /// migrated + failed + not started.
    pub fn not_started(&self) -> usize {
        self.pending - self.items.len()
    }
    /// Nothing failed and nothing was left undone.
    pub fn complete(&self) -> bool {
        self.failed().next().is_none() && !self.interrupted
    }
}

/// A CID in a report: the journal entry's identifying fields.
#[derive(Serialize)]
struct CidOut<'a> {
    hash: &'a str,
    job_id: &'a str,
    size_mb: f64,
    #[serde(rename = "type")]
    kind: journal::ContentKind,
}

impl<'a> From<&'a Entry> for CidOut<'a> {
    fn from(e: &'a Entry) -> Self {
        CidOut {
            hash: &e.hash,
            job_id: &e.job_id,
            size_mb: e.size_mb,
            kind: e.kind,
        }
    }
}

/// `fallback migrate --json`, the same keys for a migration, a dry run and nothing to do:
///
/// - `to`, `journal`, `migrated_file`: the permanent node (password dropped) and both files
/// - `dry_run`: true when nothing was done
/// - `pending`: CIDs pending at the start; `skipped_already_migrated`: CIDs migrated before
/// - `problems`: `[{file, line, reason}]`, unreadable lines (skipped)
/// - `would_migrate`: `[{hash, job_id, size_mb, type}]`, a dry run's pending CIDs (else `[]`)
/// - `migrated`: `[{hash, job_id, size_mb, type, unpinned_local}]`
/// - `failed`: `[{hash, job_id, size_mb, type, reason}]` (still pending)
/// - `unpin_failures`: `[{hash, reason}]`, migrated but the local pin is still there
/// - `interrupted`, `not_started`: stopped early, and how many pending CIDs it did not finish
impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Migrated<'a> {
            #[serde(flatten)]
            cid: CidOut<'a>,
            unpinned_local: bool,
        }
        #[derive(Serialize)]
        struct Failed<'a> {
            #[serde(flatten)]
            cid: CidOut<'a>,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct UnpinFailure<'a> {
            hash: &'a str,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Shape<'a> {
            to: &'a str,
            journal: &'a Path,
            migrated_file: &'a Path,
            dry_run: bool,
            pending: usize,
            skipped_already_migrated: usize,
            problems: &'a [Unreadable],
            would_migrate: Vec<CidOut<'a>>,
            migrated: Vec<Migrated<'a>>,
            failed: Vec<Failed<'a>>,
            unpin_failures: Vec<UnpinFailure<'a>>,
            interrupted: bool,
            not_started: usize,
        }
        let migrated = self.items.iter().filter_map(|i| match &i.done {
            Done::Migrated { unpinned_local, .. } => Some(Migrated {
                cid: (&i.entry).into(),
                unpinned_local: *unpinned_local,
            }),
            Done::Failed { .. } => None,
        });
        Shape {
            to: &self.to,
            journal: &self.journal,
            migrated_file: &self.migrated_file,
            dry_run: self.dry_run,
            pending: self.pending,
            skipped_already_migrated: self.skipped,
            problems: &self.problems,
            would_migrate: self.would_migrate.iter().map(CidOut::from).collect(),
            migrated: migrated.collect(),
            failed: self
                .failures()
                .map(|(e, reason)| Failed {
                    cid: e.into(),
                    reason,
                })
                .collect(),
            unpin_failures: self
                .unpin_failures()
                .map(|(e, reason)| UnpinFailure {
                    hash: &e.hash,
                    reason,
                })
                .collect(),
            interrupted: self.interrupted,
            not_started: self.not_started(),
        }
        .serialize(serializer)
    }
}

/// One migration: what to move, where, and how.
pub struct Plan<'a> {
    pub pending: Vec<&'a Entry>,
    /// CIDs already migrated by earlier runs (skipped).
    pub skipped: usize,
    pub to: &'a dyn Node,
    pub to_kubo: Option<&'a KuboClient>,
    /// How `to` is named in records and output (as the operator gave it, password dropped).
    pub to_label: String,
    /// The local node: the provider to connect `to` to, and where to unpin from.
    pub local: Option<&'a KuboClient>,
    pub options: Options,
    /// The files the pending CIDs come from, for the lock, the records and the report.
    progress: &'a Progress,
}

impl<'a> Plan<'a> {
    /// Migrates `progress`'s pending CIDs to `nodes.to`.
    pub fn new(progress: &'a Progress, nodes: &'a Nodes, options: Options) -> Plan<'a> {
        let backlog = progress.backlog();
        Plan {
            pending: backlog.pending,
            skipped: backlog.migrated.len(),
            to: nodes.to.as_ref(),
            to_kubo: nodes.to_kubo.as_deref(),
            to_label: nodes.to_label.clone(),
            local: nodes.local.as_deref(),
            options,
            progress,
        }
    }

    /// What a run would migrate, without a pin, a record or a network call.
    pub fn dry_run(&self) -> Report {
        Report {
            dry_run: true,
            would_migrate: self.pending.iter().map(|&e| e.clone()).collect(),
            ..self.report(Vec::new(), false)
        }
    }

    fn report(&self, items: Vec<Item>, interrupted: bool) -> Report {
        Report {
            to: self.to_label.clone(),
            journal: self.progress.journal_path.clone(),
            migrated_file: self.progress.migrated_path.clone(),
            dry_run: false,
            pending: self.pending.len(),
            skipped: self.skipped,
            problems: self.progress.problems(),
            would_migrate: Vec::new(),
            items,
            interrupted,
        }
    }

    /// The whole migration: [`Plan::prepare`], then [`Plan::run`] with the records appended
    /// beside the journal. One migration at a time per data directory (a running daemon is
    /// fine: it only appends to the journal, which migration only reads; migration alone
    /// appends to its records). Nothing pending: nothing is locked, asked or written.
    pub async fn migrate(
        &self,
        warn: impl Fn(String),
        progress: impl Fn(&Item),
        stop: impl Future<Output = ()>,
    ) -> Result<Report, Refusal> {
        if self.pending.is_empty() {
            return Ok(self.report(Vec::new(), false));
        }
        let records = &self.progress.migrated_path;
        let _migrating = crate::lock::try_acquire(&records.with_extension("jsonl.lock")).map_err(
            |e| match e {
                crate::lock::LockError::Busy { pid, .. } => Refusal::Busy(format!(
                    "another `pinwarden fallback migrate` (pid {}) is migrating this journal; \
                     let it finish, then run again",
                    pid.as_deref().unwrap_or("?")
                )),
                other => Refusal::BadInput(other.to_string()),
            },
        )?;
        let log = MigrationLog::open(records)
            .map_err(|e| Refusal::BadInput(format!("cannot open {}: {e}", records.display())))?;
        self.prepare(warn).await?;
        Ok(self.run(Arc::new(log), progress, stop).await)
    }
    /// Before the first pin: refuse to unpin from the node we migrate to, and give `to` a
    /// provider to fetch from (the local node, which holds every pending CID). Connection
    /// trouble is only warned about (`warn`): the permanent node may find the content itself.
    pub async fn prepare(&self, warn: impl Fn(String)) -> Result<(), Refusal> {
        let Some(local) = self.local else {
            return Ok(());
        };
        // A cluster or a PSA provider is never the local Kubo node itself.
        if self.options.unpin_local
            && let Some(to) = self.to_kubo
        {
            let (to_id, local_id) = match (to.id().await, local.id().await) {
                (Ok(a), Ok(b)) => (a.id, b.id),
                (Err(e), _) => {
                    return Err(Refusal::Unreachable(format!(
                        "the permanent node {} does not answer: {e}",
                        self.to_label
                    )));
                }
                (_, Err(e)) => {
                    return Err(Refusal::Unreachable(format!(
                        "the local node {} does not answer (needed to unpin locally): {e}",
                        redact(local.api_url())
                    )));
                }
            };
            if to_id == local_id {
                return Err(Refusal::BadInput(format!(
                    "the permanent node is the local node itself (peer {to_id}): unpinning \
                     locally would remove the only pin"
                )));
            }
        }
        if self.options.connect {
            match local.swarm_addrs().await {
                Ok(addrs) => match self.to.connect(&addrs).await {
                    Outcome::Ok => {
                        tracing::debug!("connected the permanent node to the local node")
                    }
                    other => warn(format!(
                        "could not connect the permanent node to the local node ({}); it must \
                         find the content by itself",
                        describe_outcome(&other)
                    )),
                },
                Err(o) => warn(format!(
                    "the local node's addresses are unknown ({}); the permanent node must find \
                     the content by itself",
                    describe_outcome(&o)
                )),
            }
        }
        Ok(())
    }

    /// Migrates the pending CIDs, `options.concurrency` at a time, until done or `stop`
    /// resolves. `progress` hears each CID as it ends.
    pub async fn run(
        &self,
        log: Arc<MigrationLog>,
        progress: impl Fn(&Item),
        stop: impl Future<Output = ()>,
    ) -> Report {
        let unpin_from = self.local.filter(|_| self.options.unpin_local);
        let progress = &progress;
        let work = futures::stream::iter(self.pending.iter().copied())
            .map(|entry| {
                let log = Arc::clone(&log);
                async move {
                    let done = migrate_one(
                        entry,
                        self.to,
                        unpin_from,
                        log,
                        &self.to_label,
                        self.options.bounds,
                    )
                    .await;
                    let item = Item {
                        entry: entry.clone(),
                        done,
                    };
                    progress(&item);
                    item
                }
            })
            .buffer_unordered(self.options.concurrency.max(1));
        let mut work = std::pin::pin!(work);
        let mut stop = std::pin::pin!(stop);
        let mut items = Vec::new();
        let mut interrupted = false;
        loop {
            tokio::select! {
                next = work.next() => match next {
                    Some(item) => items.push(item),
                    None => break,
                },
                () = &mut stop => {
                    interrupted = true;
                    break;
                }
            }
        }
        self.report(items, interrupted)
    }
}

/// Pin and prove on `to`; then (optionally) unpin locally; then record. Nothing is recorded
/// unless the proof succeeded, and a failure leaves the CID pending.
async fn migrate_one(
    entry: &Entry,
    to: &dyn Node,
    unpin_from: Option<&KuboClient>,
    log: Arc<MigrationLog>,
    target: &str,
    bounds: PinBounds,
) -> Done {
    let failed = |reason: String| Done::Failed { reason };
    let cid = entry.hash.trim();
    if let Err(e) = cid::Cid::try_from(cid) {
        return failed(format!("not a valid CID: {e}"));
    }
    if let Err(unproven) = prove::pin_and_prove(to, cid, bounds, |_, _| {}).await {
        let outcome = describe_outcome(&unproven.outcome);
        return failed(match (unproven.step, &unproven.outcome) {
            ("pin", Outcome::Timeout) => format!(
                "pin: not done within the pin timeout {}",
                humantime::format_duration(bounds.pin)
            ),
            ("pin", _) => format!("pin: {outcome}"),
            ("verify", _) => format!("verify (pin ls): {outcome}"),
            _ => format!("pinned but not complete: {outcome}"),
        });
    }
    let (unpinned_local, unpin_error) = match unpin_from {
        None => (false, None),
        Some(local) => match local.pin_rm(cid).await {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        },
    };
    let record = Migration::new(
        entry.hash.clone(),
        target,
        unpinned_local,
        SystemTime::now(),
    );
    let path = log.path().to_path_buf();
    if let Err(e) = log.append_async(record).await {
        return failed(format!(
            "pinned and verified, but the record could not be written to {}: {e}",
            path.display()
        ));
    }
    Done::Migrated {
        unpinned_local,
        unpin_error,
    }
}

/// A URL fit for records and output: any password in it is dropped.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_records() {
        assert_eq!(redact("http://u:secret@h:5001"), "http://u@h:5001/");
        assert_eq!(redact("http://h:5001"), "http://h:5001");
        assert_eq!(redact("/ip4/127.0.0.1/tcp/5001"), "/ip4/127.0.0.1/tcp/5001");
    }

    /// `fallback migrate` beside a running daemon: the daemon appends journal lines (one write
    /// each) while migration reads the journal. A read racing a write may see part of a line:
    /// the fragment is reported and skipped, never taken for an entry, so every entry a read
    /// returns is a real one, in order. A skipped line is simply still pending for the next run
    /// (migration records only what it proved), and once the writer is done nothing is missing.
    #[test]
    fn reading_the_journal_while_a_daemon_appends_never_misreads_an_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = journal::journal_path(dir.path());
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                let journal = journal::Journal::open(&path).expect("journal");
                for i in 0..400 {
                    let entry = Entry::new(
                        format!("bafy{i:06}"),
                        format!("job-{i}"),
                        1 << 20,
                        journal::ContentKind::Directory,
                        3,
                        "encoder-node-1",
                        SystemTime::now(),
                    );
                    journal.append(&entry).expect("append");
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() {
            let progress = Progress::load(dir.path()).expect("reads");
            let mut last = None;
            for e in &progress.journal.entries {
                let i: usize = e
                    .hash
                    .strip_prefix("bafy")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("misread entry {e:?}"));
                assert_eq!(e.job_id, format!("job-{i}"), "misread entry {e:?}");
                assert!(last < Some(i), "entries in order");
                last = Some(i);
            }
            reads += 1;
        }
        writer.join().expect("writer");
        let done = Progress::load(dir.path()).expect("reads");
        assert_eq!(
            done.journal.entries.len(),
            400,
            "after {reads} concurrent reads"
        );
        assert!(done.problems().is_empty());
    }

    fn request(to: &str) -> Request {
        Request {
            to: to.into(),
            to_token: None,
            to_basic: None,
            local: None,
            options: Options {
                concurrency: 1,
                bounds: PinBounds {
                    pin: std::time::Duration::from_secs(1),
                    stall: std::time::Duration::from_secs(1),
                    call: std::time::Duration::from_secs(1),
                    check: std::time::Duration::from_secs(1),
                },
                unpin_local: false,
                connect: true,
            },
        }
    }

    #[test]
    fn a_request_resolves_its_nodes_from_the_given_environment() {
        let env = |k: &str| match k {
            "IPFS_LOCAL_API" => Some("http://127.0.0.1:5004".to_string()),
            "TO_PASSWORD" => Some("pw".to_string()),
            _ => None,
        };
        let mut r = request("http://u:secret@127.0.0.1:5001");
        r.to_basic = Some(("ops".into(), "TO_PASSWORD".into()));
        let nodes = r
            .nodes(Ok(None), None, &env, |w| panic!("{w}"))
            .expect("nodes");
        assert_eq!(nodes.to_label, "http://u@127.0.0.1:5001/");
        assert!(nodes.local.is_some(), "IPFS_LOCAL_API");

        let refused = r.nodes(Ok(None), None, &|_| None, |_| {}).err();
        assert_eq!(
            refused,
            Some(Refusal::BadInput(
                "--to-password-env: environment variable TO_PASSWORD is not set".into()
            ))
        );
        let mut r = request("http://127.0.0.1:5001");
        r.options.unpin_local = true;
        let refused = r.nodes(Err("unreadable".into()), None, &|_| None, |_| {});
        assert!(
            matches!(refused, Err(Refusal::BadInput(m)) if m.contains("unreadable")),
            "an unpin needs the local node"
        );
    }

    #[test]
    fn a_configured_node_of_any_kind_can_be_the_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pinwarden.toml");
        std::fs::write(
            &file,
            "[[node]]\nname = \"primary\"\nrole = \"primary\"\nurl = \"http://127.0.0.1:5001\"\n\n\
             [[node]]\nname = \"vault\"\nrole = \"backup\"\napi = \"cluster\"\n\
             url = \"http://127.0.0.1:9094\"\nreplication_min = 2\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), &|_| None, &[]).expect("config");
        let nodes = request("vault")
            .nodes(Ok(Some(&config)), None, &|_| None, |_| {})
            .expect("nodes");
        assert_eq!(nodes.to_label, "vault");
        assert_eq!(nodes.to.capabilities().kind, crate::node::NodeKind::Cluster);
        assert_eq!(nodes.to.capabilities().replication, 2);
        assert!(nodes.to_kubo.is_none());
        let kubo = request("primary")
            .nodes(Ok(Some(&config)), None, &|_| None, |_| {})
            .expect("nodes");
        assert!(kubo.to_kubo.is_some());

        let unknown = request("nowhere")
            .nodes(Ok(Some(&config)), None, &|_| None, |_| {})
            .err();
        assert!(
            matches!(&unknown, Some(Refusal::BadInput(m)) if m.contains("primary, vault")),
            "{unknown:?}"
        );
        let mut with_token = request("vault");
        with_token.to_token = Some("t".into());
        let refused = with_token
            .nodes(Ok(Some(&config)), None, &|_| None, |_| {})
            .err();
        assert!(
            matches!(&refused, Some(Refusal::BadInput(m)) if m.contains("its own credentials")),
            "{refused:?}"
        );
    }

    /// A migration, a dry run and nothing to do serialize to the same documented keys.
    #[test]
    fn every_report_has_one_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = journal::Journal::open(journal::journal_path(dir.path())).expect("open");
        for (hash, job) in [("bafy-a", "job-a"), ("bafy-b", "job-b")] {
            let e = Entry::new(
                hash,
                job,
                1 << 20,
                journal::ContentKind::File,
                3,
                "encoder-node-1",
                SystemTime::now(),
            );
            journal.append(&e).expect("append");
        }
        let progress = Progress::load(dir.path()).expect("reads");
        let r = request("http://127.0.0.1:5001");
        let nodes = r.nodes(Ok(None), None, &|_| None, |_| {}).expect("nodes");
        let plan = Plan::new(&progress, &nodes, r.options);
        let entry = |i: usize| plan.pending[i].clone();
        let ran = plan.report(
            vec![
                Item {
                    entry: entry(0),
                    done: Done::Migrated {
                        unpinned_local: false,
                        unpin_error: Some("not pinned".into()),
                    },
                },
                Item {
                    entry: entry(1),
                    done: Done::Failed {
                        reason: "pin: stalled".into(),
                    },
                },
            ],
            false,
        );
        let json = |r: &Report| serde_json::to_value(r).expect("serializes");
        let (dry, ran) = (json(&plan.dry_run()), json(&ran));
        let nothing = json(&Plan::new(&progress, &nodes, r.options).report(Vec::new(), false));
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().expect("an object").keys().cloned().collect()
        };
        assert_eq!(keys(&dry), keys(&ran));
        assert_eq!(keys(&nothing), keys(&ran));
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["would_migrate"][1]["job_id"], "job-b", "{dry}");
        assert_eq!(dry["not_started"], 2, "{dry}");
        assert_eq!(ran["migrated"][0]["unpinned_local"], false, "{ran}");
        assert_eq!(ran["migrated"][0]["type"], "file", "{ran}");
        assert_eq!(ran["unpin_failures"][0]["reason"], "not pinned", "{ran}");
        assert_eq!(ran["failed"][0]["reason"], "pin: stalled", "{ran}");
        assert_eq!(ran["skipped_already_migrated"], 0, "{ran}");
        assert_eq!(ran["not_started"], 0, "{ran}");
    }

    #[test]
    fn stats_of_an_empty_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Progress::load(dir.path()).expect("loads").stats();
        assert_eq!((stats.entries, stats.pending, stats.migrated), (0, 0, 0));
        assert_eq!(stats.total_mb.to_string(), "0", "not -0");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        assert!(Progress::load(&file).is_err());
    }
}
