//! `pinwarden fallback stats|migrate`: the local-fallback journal
//! (`<data_dir>/local-fallback-pins.jsonl`, see [`crate::journal`]) and its migration to a
//! permanent node. The journal is only ever read here; migration is recorded beside it in
//! `local-fallback-migrated.jsonl`, one line per CID, appended only after the CID was pinned,
//! listed and found complete on the permanent node.

use super::{GlobalArgs, exit};
use crate::Outcome;
use crate::config::{Config, DEFAULT_FILE, RoleConfig};
use crate::journal::{self, Entry, JournalRead, Migration, MigrationLog, MigrationsRead, Problem};
use crate::kubo::{Auth, KuboClient};
use crate::node::Node;
use crate::trace::describe_outcome;
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const STATS_AFTER_HELP: &str = "\
Files, in the data directory (--data-dir, else the config's data_dir, else ./data):
  local-fallback-pins.jsonl      the journal: one line per local fallback (the encoder's format)
  local-fallback-migrated.jsonl  one line per CID migrated by `pinwarden fallback migrate`

Pending = the journal's CIDs without a migration record; a CID journaled twice counts once.
Lines that do not parse (a torn last line after a crash) are listed and skipped, never fatal.

Neither file is ever rewritten, only appended to, so the jq workflow keeps working:
  wc -l data/local-fallback-pins.jsonl
  jq '.size_mb' data/local-fallback-pins.jsonl | awk '{s+=$1} END {print s \" MB total\"}'
  # pending CIDs (fromjson? skips a torn line):
  jq -rR 'fromjson? | .hash' data/local-fallback-pins.jsonl | sort -u \\
    | comm -23 - <(jq -rR 'fromjson? | .hash' data/local-fallback-migrated.jsonl | sort -u)";

const MIGRATE_ABOUT: &str = "\
Pin every pending CID of the local-fallback journal on a permanent node, and record each one \
that is verified there.

For each pending CID (--concurrency at a time): pin/add on --to (given up after --stall-timeout \
without progress, or --pin-timeout in all), then pin/ls on --to, then a check that every block is \
present there. Only when all three succeed is a line appended (and fsynced) to \
local-fallback-migrated.jsonl. With --unpin-local, the local pin is removed just before that, \
never before the verification, and the record says whether it was (unpinned_local).

A CID that fails is listed with its reason and stays pending: run the same command again to \
retry. Re-running is always safe (migrated CIDs are skipped), and so is interrupting it (a record \
is written only after verification). The journal itself is never modified.";

const MIGRATE_AFTER_HELP: &str = "\
The local node (for --unpin-local, and to connect --to to it so it can fetch the content): \
--local, else IPFS_LOCAL_API, else the config's node with role = \"local\".

Exit status: 0 nothing failed (or nothing to do); 1 at least one CID failed (it stays pending: \
retry later); 2 bad input (a bad URL or flag, an unreadable journal or data directory, no local \
node with --unpin-local, --to being the local node itself). A local pin that could not be \
removed does not fail the run: it is reported and recorded as unpinned_local=false.

Examples:
  pinwarden fallback migrate --to http://permanent-server:5001 --dry-run
  export PINWARDEN_TO_TOKEN=...    # a bearer token, kept off the command line
  pinwarden fallback migrate --to https://permanent.example/ipfs --unpin-local

The journal is never rewritten, so the jq workflow keeps working (see `fallback stats --help`);
the records are JSON lines too. Local pins still to remove by hand:
  jq -r 'select(.unpinned_local == false) | .hash' data/local-fallback-migrated.jsonl";

#[derive(Subcommand)]
pub enum FallbackCommand {
    /// Summarise the journal: entries, distinct CIDs, size, oldest and newest entry, pending vs
    /// migrated, and lines that could not be read.
    #[command(after_long_help = STATS_AFTER_HELP)]
    Stats(StatsArgs),
    /// Pin the pending CIDs on a permanent node, verify them there and record them (and
    /// optionally unpin them locally). Safe to re-run and to interrupt.
    #[command(long_about = MIGRATE_ABOUT, after_long_help = MIGRATE_AFTER_HELP)]
    Migrate(MigrateArgs),
}

#[derive(Args)]
pub struct StatsArgs {
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// The permanent node's RPC API: http(s)://host:port (a path prefix, for a reverse proxy, is
    /// kept) or a multiaddr such as /ip4/10.0.0.2/tcp/5001.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// How many CIDs are migrated at the same time.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Once a CID is pinned and verified on --to, remove its pin from the local node (its disk
    /// space comes back at the local node's next garbage collection).
    #[arg(long)]
    pub unpin_local: bool,
    /// Print what would be migrated and stop: no pin, no record, no network call.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object on stdout at the end (progress lines go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Give up on one CID's pin after this long in all (e.g. 90s, 10m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "10m",
          value_parser = humantime::parse_duration)]
    pub pin_timeout: Duration,
    /// Give up on one CID's pin when it makes no progress for this long. js-ipfs reports no
    /// progress at all, so there this bounds the whole pin.
    #[arg(long, value_name = "DURATION", default_value = "2m",
          value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
    /// The local node's RPC API (default: IPFS_LOCAL_API, else the config's node with
    /// role = "local").
    #[arg(long, value_name = "URL")]
    pub local: Option<String>,
    /// Do not ask --to to connect to the local node first (it must then find a provider itself).
    #[arg(long)]
    pub no_connect: bool,
    /// Bearer token for --to. Prefer the environment variable: a command line is visible to
    /// other users of the machine.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PINWARDEN_TO_TOKEN",
        hide_env_values = true,
        conflicts_with = "to_user"
    )]
    pub to_token: Option<String>,
    /// Basic-auth user for --to (the password comes from --to-password-env).
    #[arg(long, value_name = "USER", requires = "to_password_env")]
    pub to_user: Option<String>,
    /// The environment variable that holds the basic-auth password for --to.
    #[arg(long, value_name = "VAR", requires = "to_user")]
    pub to_password_env: Option<String>,
}

pub fn run(global: &GlobalArgs, cmd: FallbackCommand) -> u8 {
    let mut setup = Setup {
        global,
        config: None,
    };
    match cmd {
        FallbackCommand::Stats(args) => stats(&mut setup, &args),
        FallbackCommand::Migrate(args) => migrate(&mut setup, &args),
    }
}

/// The config file (read only when needed, and without requiring a primary node: these commands
/// only need the data directory and, sometimes, the local node) and the files it points to.
struct Setup<'a> {
    global: &'a GlobalArgs,
    config: Option<Option<Config>>,
}

impl Setup<'_> {
    fn config(&mut self) -> Result<Option<&Config>, String> {
        if self.config.is_none() {
            let path = self.global.config.clone().or_else(|| {
                Path::new(DEFAULT_FILE)
                    .exists()
                    .then(|| PathBuf::from(DEFAULT_FILE))
            });
            let config = match path {
                Some(p) => Some(Config::from_file(&p).map_err(|e| e.0)?),
                None => None,
            };
            self.config = Some(config);
        }
        Ok(self.config.as_ref().and_then(Option::as_ref))
    }

    fn data_dir(&mut self) -> Result<PathBuf, String> {
        if let Some(dir) = &self.global.data_dir {
            return Ok(dir.clone());
        }
        Ok(self
            .config()?
            .map(|c| c.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("data")))
    }

    /// Both files, read; exit 2 when they cannot be.
    fn load(&mut self) -> Result<Loaded, u8> {
        let data_dir = self.data_dir().map_err(|e| {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        })?;
        if data_dir.exists() && !data_dir.is_dir() {
            eprintln!(
                "error: data directory {}: not a directory",
                data_dir.display()
            );
            return Err(exit::BAD_INPUT);
        }
        let journal_path = journal::journal_path(&data_dir);
        let migrated_path = journal::migrated_path(&journal_path);
        let cannot = |path: &Path, e: std::io::Error| {
            eprintln!("error: cannot read {}: {e}", path.display());
            exit::BAD_INPUT
        };
        let journal = journal::read(&journal_path).map_err(|e| cannot(&journal_path, e))?;
        let migrations =
            journal::read_migrations(&migrated_path).map_err(|e| cannot(&migrated_path, e))?;
        if !journal_path.exists() {
            eprintln!(
                "note: no journal at {} (nothing has fallen back to the local node yet?)",
                journal_path.display()
            );
        }
        Ok(Loaded {
            journal_path,
            migrated_path,
            journal,
            migrations,
        })
    }
}

struct Loaded {
    journal_path: PathBuf,
    migrated_path: PathBuf,
    journal: JournalRead,
    migrations: MigrationsRead,
}

impl Loaded {
    /// Every unreadable line of both files, warned about on stderr, as JSON.
    fn problems(&self, warn: bool) -> Vec<Value> {
        let mut all = Vec::new();
        for (path, problems) in [
            (&self.journal_path, &self.journal.problems),
            (&self.migrated_path, &self.migrations.problems),
        ] {
            for Problem { line, reason } in problems {
                if warn {
                    eprintln!("warning: {}:{line}: {reason}", path.display());
                }
                all.push(json!({ "file": path, "line": line, "reason": reason }));
            }
        }
        all
    }
}

fn round1(mb: f64) -> f64 {
    (mb * 10.0).round() / 10.0
}

fn total_mb(entries: &[&Entry]) -> f64 {
    // A fold from +0.0: an empty f64 `sum()` is -0.0.
    round1(entries.iter().fold(0.0, |total, e| total + e.size_mb))
}

fn stats(setup: &mut Setup, args: &StatsArgs) -> u8 {
    let loaded = match setup.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    let entries = &loaded.journal.entries;
    let backlog = journal::backlog(entries, &loaded.migrations.records);
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
    let problems = loaded.problems(false);

    if args.json {
        let out = json!({
            "journal": loaded.journal_path,
            "migrated_file": loaded.migrated_path,
            "entries": entries.len(),
            "distinct_cids": backlog.distinct(),
            "total_mb": total_mb(&distinct),
            "pending": backlog.pending.len(),
            "pending_mb": total_mb(&backlog.pending),
            "migrated": backlog.migrated.len(),
            "migration_records": loaded.migrations.records.len(),
            "oldest": oldest,
            "newest": newest,
            "problems": problems,
        });
        println!("{out}");
        return exit::OK;
    }
    println!("journal:   {}", loaded.journal_path.display());
    println!(
        "entries:   {} ({} distinct CIDs, {:.1} MB)",
        entries.len(),
        backlog.distinct(),
        total_mb(&distinct)
    );
    println!(
        "pending:   {} CIDs ({:.1} MB) to migrate",
        backlog.pending.len(),
        total_mb(&backlog.pending)
    );
    println!(
        "migrated:  {} CIDs (records: {})",
        backlog.migrated.len(),
        loaded.migrated_path.display()
    );
    println!("oldest:    {}", oldest.as_deref().unwrap_or("-"));
    println!("newest:    {}", newest.as_deref().unwrap_or("-"));
    println!("problems:  {} unreadable lines (skipped)", problems.len());
    for p in &problems {
        println!(
            "  {}:{}: {}",
            p["file"].as_str().unwrap_or_default(),
            p["line"],
            p["reason"].as_str().unwrap_or_default()
        );
    }
    exit::OK
}

/// How one CID's migration ended.
enum Done {
    Migrated {
        unpinned_local: bool,
        /// `--unpin-local` was asked and `pin rm` failed.
        unpin_error: Option<String>,
    },
    Failed(String),
}

fn migrate(setup: &mut Setup, args: &MigrateArgs) -> u8 {
    let auth = match to_auth(args) {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let to = match KuboClient::new("permanent", &args.to, auth) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            eprintln!("error: --to {}: {e}", args.to);
            return exit::BAD_INPUT;
        }
    };
    let target = redact(&args.to);
    let local = match local_node(setup, args) {
        Ok(local) => local,
        Err(e) if args.unpin_local => {
            eprintln!("error: the local node: {e}");
            return exit::BAD_INPUT;
        }
        Err(e) => {
            eprintln!("warning: the local node: {e} (continuing without it)");
            None
        }
    };
    if args.unpin_local && local.is_none() {
        eprintln!(
            "error: --unpin-local needs the local node: pass --local URL, set IPFS_LOCAL_API, \
             or configure a node with role = \"local\""
        );
        return exit::BAD_INPUT;
    }
    let loaded = match setup.load() {
        Ok(l) => l,
        Err(code) => return code,
    };
    let problems = loaded.problems(true);
    let backlog = journal::backlog(&loaded.journal.entries, &loaded.migrations.records);
    let skipped = backlog.migrated.len();
    let pending = backlog.pending;
    let progress = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let base = json!({
        "to": target,
        "journal": loaded.journal_path,
        "migrated_file": loaded.migrated_path,
        "dry_run": args.dry_run,
        "pending": pending.len(),
        "skipped_already_migrated": skipped,
        "problems": problems,
    });

    if args.dry_run {
        let steps = match &local {
            Some(l) if args.unpin_local => format!(
                "pin, verify, check every block, unpin from the local node {}, record",
                redact(l.api_url())
            ),
            _ => "pin, verify, check every block, record".into(),
        };
        progress(format!(
            "dry run: would migrate {} CIDs to {target} ({steps}); {skipped} already migrated",
            pending.len()
        ));
        for e in &pending {
            progress(format!(
                "  would migrate {}  ({}, {}, {:.1} MB)",
                e.hash,
                e.job_id,
                kind_str(e),
                e.size_mb
            ));
        }
        if args.json {
            let mut out = base;
            out["would_migrate"] = pending.iter().map(|e| entry_json(e)).collect();
            out["migrated"] = json!([]);
            out["failed"] = json!([]);
            println!("{out}");
        }
        return exit::OK;
    }

    if pending.is_empty() {
        progress(format!(
            "nothing to do: all {skipped} CIDs of the journal are already migrated"
        ));
        if args.json {
            let mut out = base;
            out["migrated"] = json!([]);
            out["failed"] = json!([]);
            out["unpin_failures"] = json!([]);
            out["interrupted"] = json!(false);
            println!("{out}");
        }
        return exit::OK;
    }

    let log = match MigrationLog::open(&loaded.migrated_path) {
        Ok(log) => Arc::new(log),
        Err(e) => {
            eprintln!("error: cannot open {}: {e}", loaded.migrated_path.display());
            return exit::BAD_INPUT;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(async {
        if let Some(local) = &local
            && let Err(code) = prepare(&to, local, args).await
        {
            return code;
        }
        let unpin_from = if args.unpin_local {
            local.as_deref()
        } else {
            None
        };
        let work = futures::stream::iter(pending.iter().copied())
            .map(|entry| {
                let (to, log, target) = (&to, &log, &target);
                async move {
                    let done = migrate_one(entry, to, unpin_from, log, target, args).await;
                    progress(match &done {
                        Done::Migrated {
                            unpinned_local,
                            unpin_error,
                        } => format!(
                            "migrated  {}  ({}, {:.1} MB){}",
                            entry.hash,
                            entry.job_id,
                            entry.size_mb,
                            match (unpinned_local, unpin_error) {
                                (true, _) => " — local pin removed".to_string(),
                                (false, Some(e)) => format!(" — local pin NOT removed: {e}"),
                                (false, None) => String::new(),
                            }
                        ),
                        Done::Failed(reason) => {
                            format!("FAILED    {}  ({}): {reason}", entry.hash, entry.job_id)
                        }
                    });
                    (entry, done)
                }
            })
            .buffer_unordered(usize::from(args.concurrency));
        let mut work = std::pin::pin!(work);
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        let mut results = Vec::new();
        let mut interrupted = false;
        loop {
            tokio::select! {
                next = work.next() => match next {
                    Some(result) => results.push(result),
                    None => break,
                },
                _ = &mut ctrl_c => {
                    interrupted = true;
                    break;
                }
            }
        }
        summary(
            base,
            &results,
            skipped,
            pending.len(),
            interrupted,
            &target,
            args,
        )
    })
}

/// Before the first pin: refuse to unpin from the node we migrate to, and give `to` a provider
/// to fetch from (the local node, which holds every pending CID).
async fn prepare(to: &KuboClient, local: &KuboClient, args: &MigrateArgs) -> Result<(), u8> {
    if args.unpin_local {
        let (to_id, local_id) = match (to.id().await, local.id().await) {
            (Ok(a), Ok(b)) => (a.id, b.id),
            (Err(e), _) => {
                eprintln!(
                    "error: the permanent node {} does not answer: {e}",
                    redact(&args.to)
                );
                return Err(exit::FAILED);
            }
            (_, Err(e)) => {
                eprintln!(
                    "error: the local node {} does not answer (needed for --unpin-local): {e}",
                    redact(local.api_url())
                );
                return Err(exit::FAILED);
            }
        };
        if to_id == local_id {
            eprintln!(
                "error: --to is the local node itself (peer {to_id}): with --unpin-local that \
                 would remove the only pin"
            );
            return Err(exit::BAD_INPUT);
        }
    }
    if !args.no_connect {
        match local.swarm_addrs().await {
            Ok(addrs) => match to.connect(&addrs).await {
                Outcome::Ok => tracing::debug!("connected the permanent node to the local node"),
                other => eprintln!(
                    "warning: could not connect the permanent node to the local node ({}); \
                     it must find the content by itself",
                    describe_outcome(&other)
                ),
            },
            Err(o) => eprintln!(
                "warning: the local node's addresses are unknown ({}); the permanent node must \
                 find the content by itself",
                describe_outcome(&o)
            ),
        }
    }
    Ok(())
}

/// Pin, verify, check on `to`; then (optionally) unpin locally; then record. Nothing is recorded
/// unless the first three succeeded, and a failure leaves the CID pending.
async fn migrate_one(
    entry: &Entry,
    to: &KuboClient,
    unpin_from: Option<&KuboClient>,
    log: &Arc<MigrationLog>,
    target: &str,
    args: &MigrateArgs,
) -> Done {
    let cid = entry.hash.trim();
    if let Err(e) = cid::Cid::try_from(cid) {
        return Done::Failed(format!("not a valid CID: {e}"));
    }
    match tokio::time::timeout(args.pin_timeout, to.pin(cid, args.stall_timeout)).await {
        Err(_) => {
            return Done::Failed(format!(
                "pin: not done within --pin-timeout {}",
                humantime::format_duration(args.pin_timeout)
            ));
        }
        Ok(Outcome::Ok) => {}
        Ok(other) => return Done::Failed(format!("pin: {}", describe_outcome(&other))),
    }
    match to.verify(cid).await {
        Outcome::Ok => {}
        other => return Done::Failed(format!("verify (pin ls): {}", describe_outcome(&other))),
    }
    match to.check_retrievable(cid).await {
        Outcome::Ok => {}
        other => {
            return Done::Failed(format!(
                "pinned but not complete: {}",
                describe_outcome(&other)
            ));
        }
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
    if let Err(e) = Arc::clone(log).append_async(record).await {
        return Done::Failed(format!(
            "pinned and verified, but the record could not be written to {}: {e}",
            log.path().display()
        ));
    }
    Done::Migrated {
        unpinned_local,
        unpin_error,
    }
}

fn summary(
    mut out: Value,
    results: &[(&Entry, Done)],
    skipped: usize,
    pending: usize,
    interrupted: bool,
    target: &str,
    args: &MigrateArgs,
) -> u8 {
    let mut migrated = Vec::new();
    let mut failed = Vec::new();
    let mut unpin_failures = Vec::new();
    for (entry, done) in results {
        match done {
            Done::Migrated {
                unpinned_local,
                unpin_error,
            } => {
                let mut item = entry_json(entry);
                item["unpinned_local"] = json!(unpinned_local);
                migrated.push(item);
                if let Some(reason) = unpin_error {
                    unpin_failures.push(json!({ "hash": entry.hash, "reason": reason }));
                }
            }
            Done::Failed(reason) => {
                let mut item = entry_json(entry);
                item["reason"] = json!(reason);
                failed.push(item);
            }
        }
    }
    let not_started = pending - results.len();
    if args.json {
        out["migrated"] = json!(migrated);
        out["failed"] = json!(failed);
        out["unpin_failures"] = json!(unpin_failures);
        out["interrupted"] = json!(interrupted);
        out["not_started"] = json!(not_started);
        println!("{out}");
    } else {
        println!(
            "migrated {}, failed {}, skipped {skipped} already migrated (to {target})",
            migrated.len(),
            failed.len()
        );
        if !failed.is_empty() {
            println!("failed (still pending: run the same command again to retry):");
            for f in &failed {
                println!(
                    "  {} ({}): {}",
                    f["hash"].as_str().unwrap_or_default(),
                    f["job_id"].as_str().unwrap_or_default(),
                    f["reason"].as_str().unwrap_or_default()
                );
            }
        }
        if !unpin_failures.is_empty() {
            println!(
                "local pin NOT removed (migrated; recorded as unpinned_local=false, remove it by hand):"
            );
            for u in &unpin_failures {
                println!(
                    "  {}: {}",
                    u["hash"].as_str().unwrap_or_default(),
                    u["reason"].as_str().unwrap_or_default()
                );
            }
        }
    }
    if interrupted {
        eprintln!(
            "interrupted: {not_started} CIDs not finished stay pending (nothing recorded for them)"
        );
    }
    if failed.is_empty() && !interrupted {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn kind_str(e: &Entry) -> &'static str {
    match e.kind {
        journal::ContentKind::File => "file",
        journal::ContentKind::Directory => "directory",
    }
}

fn entry_json(e: &Entry) -> Value {
    json!({ "hash": e.hash, "job_id": e.job_id, "size_mb": e.size_mb, "type": e.kind })
}

fn to_auth(args: &MigrateArgs) -> Result<Option<Auth>, String> {
    if let Some(token) = args.to_token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Auth::Bearer(token.to_string())));
    }
    match (&args.to_user, &args.to_password_env) {
        (Some(user), Some(var)) => match std::env::var(var) {
            Ok(password) => Ok(Some(Auth::Basic {
                user: user.clone(),
                password,
            })),
            Err(_) => Err(format!(
                "--to-password-env: environment variable {var} is not set"
            )),
        },
        _ => Ok(None),
    }
}

/// The local node: `--local`, else `IPFS_LOCAL_API`, else the config's node with role local.
fn local_node(setup: &mut Setup, args: &MigrateArgs) -> Result<Option<Arc<KuboClient>>, String> {
    let env_url = std::env::var("IPFS_LOCAL_API")
        .ok()
        .filter(|v| !v.trim().is_empty());
    if let Some(url) = args.local.clone().or(env_url) {
        let client =
            KuboClient::new("local", url.trim(), None).map_err(|e| format!("{url}: {e}"))?;
        return Ok(Some(Arc::new(client)));
    }
    let Some(config) = setup.config()? else {
        return Ok(None);
    };
    let Some(node) = config.nodes.iter().find(|n| n.role == RoleConfig::Local) else {
        return Ok(None);
    };
    let auth = node
        .credentials()
        .map_err(|e| format!("node {}: {e}", node.name))?;
    let client = KuboClient::new(node.name.clone(), &node.url, auth)
        .map_err(|e| format!("node {}.url: {e}", node.name))?;
    Ok(Some(Arc::new(client)))
}

/// A URL fit for records and output: any password in it is dropped.
fn redact(url: &str) -> String {
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
}
