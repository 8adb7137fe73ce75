//! Migrating the local-fallback journal to a permanent node: backlog → pin and prove on the
//! permanent node → (optionally) unpin locally → record.
//!
//! The journal (`local-fallback-pins.jsonl`) is only ever read here; each migrated CID gets one
//! line in `local-fallback-migrated.jsonl`, appended (and fsynced) only after the CID was
//! pinned, listed and found complete on the permanent node ([`crate::prove`]). A CID that fails
//! stays pending, so a run can be repeated or interrupted safely. Callers get a typed
//! [`Report`]; the CLI prints it, and the daemon could offer the same call.

use crate::Outcome;
use crate::journal::{self, Entry, JournalRead, Migration, MigrationLog, MigrationsRead, Problem};
use crate::kubo::KuboClient;
use crate::node::Node;
use crate::prove::{self, PinBounds};
use crate::trace::describe_outcome;
use futures::StreamExt;
use serde::Serialize;
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

/// Why a migration cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A node does not answer (retry later).
    Unreachable(String),
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

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct Report {
    /// Where to (the URL, any password dropped).
    pub to: String,
    /// CIDs pending when the run started.
    pub pending: usize,
    /// CIDs already migrated by earlier runs (skipped).
    pub skipped: usize,
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
    pub fn not_started(&self) -> usize {
        self.pending - self.items.len()
    }
    /// Nothing failed and nothing was left undone.
    pub fn complete(&self) -> bool {
        self.failed().next().is_none() && !self.interrupted
    }
}

/// One migration: what to move, where, and how.
pub struct Plan<'a> {
    pub pending: Vec<&'a Entry>,
    /// CIDs already migrated by earlier runs (skipped).
    pub skipped: usize,
    pub to: &'a KuboClient,
    /// How `to` is named in records and output (as the operator gave it, password dropped).
    pub to_label: String,
    /// The local node: the provider to connect `to` to, and where to unpin from.
    pub local: Option<&'a KuboClient>,
    pub options: Options,
}

impl Plan<'_> {
    /// Before the first pin: refuse to unpin from the node we migrate to, and give `to` a
    /// provider to fetch from (the local node, which holds every pending CID). Connection
    /// trouble is only warned about (`warn`): the permanent node may find the content itself.
    pub async fn prepare(&self, warn: impl Fn(String)) -> Result<(), Refusal> {
        let Some(local) = self.local else {
            return Ok(());
        };
        if self.options.unpin_local {
            let (to_id, local_id) = match (self.to.id().await, local.id().await) {
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
        Report {
            to: self.to_label.clone(),
            pending: self.pending.len(),
            skipped: self.skipped,
            items,
            interrupted,
        }
    }
}

/// Pin and prove on `to`; then (optionally) unpin locally; then record. Nothing is recorded
/// unless the proof succeeded, and a failure leaves the CID pending.
async fn migrate_one(
    entry: &Entry,
    to: &KuboClient,
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
