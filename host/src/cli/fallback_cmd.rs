//! `pinwarden fallback stats|migrate`: parsing and printing. The journal and the migration
//! protocol live in [`crate::journal`] and [`crate::migrate`].

use super::context::{CliError, CliResult, Context, exit};
use super::output::outln;
use crate::app::client_for;
use crate::journal::{self, Entry, MigrationLog};
use crate::kubo::{Auth, KuboClient};
use crate::migrate::{Done, Item, Options, Plan, Progress, Refusal, Report, redact};
use crate::prove::PinBounds;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

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

pub fn run(cx: &Context, cmd: FallbackCommand) -> CliResult {
    match cmd {
        FallbackCommand::Stats(args) => stats(cx, &args),
        FallbackCommand::Migrate(args) => migrate(cx, &args),
    }
}

/// The migration progress (both files), read, with a note when there is no journal yet.
fn load(cx: &Context) -> Result<Progress, CliError> {
    let progress = Progress::load(&cx.data_dir()?).map_err(CliError::bad_input)?;
    if !progress.journal_path.exists() {
        eprintln!(
            "note: no journal at {} (nothing has fallen back to the local node yet?)",
            progress.journal_path.display()
        );
    }
    Ok(progress)
}

fn stats(cx: &Context, args: &StatsArgs) -> CliResult {
    let stats = load(cx)?.stats();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&stats).map_err(CliError::failed)?
        );
        return Ok(exit::OK);
    }
    outln!("journal:   {}", stats.journal.display());
    outln!(
        "entries:   {} ({} distinct CIDs, {:.1} MB)",
        stats.entries,
        stats.distinct_cids,
        stats.total_mb
    );
    outln!(
        "pending:   {} CIDs ({:.1} MB) to migrate",
        stats.pending,
        stats.pending_mb
    );
    outln!(
        "migrated:  {} CIDs (records: {})",
        stats.migrated,
        stats.migrated_file.display()
    );
    outln!("oldest:    {}", stats.oldest.as_deref().unwrap_or("-"));
    outln!("newest:    {}", stats.newest.as_deref().unwrap_or("-"));
    outln!(
        "problems:  {} unreadable lines (skipped)",
        stats.problems.len()
    );
    for p in &stats.problems {
        outln!("  {}:{}: {}", p.file.display(), p.line, p.reason);
    }
    Ok(exit::OK)
}

fn migrate(cx: &Context, args: &MigrateArgs) -> CliResult {
    let to = KuboClient::new("permanent", &args.to, to_auth(cx, args)?)
        .map_err(|e| CliError::bad_input(format!("--to {}: {e}", args.to)))?;
    let local = match local_node(cx, args) {
        Ok(local) => local,
        Err(e) if args.unpin_local => {
            return Err(CliError::bad_input(format!("the local node: {e}")));
        }
        Err(e) => {
            eprintln!("warning: the local node: {e} (continuing without it)");
            None
        }
    };
    if args.unpin_local && local.is_none() {
        return Err(CliError::bad_input(
            "--unpin-local needs the local node: pass --local URL, set IPFS_LOCAL_API, or \
             configure a node with role = \"local\"",
        ));
    }
    let journals = load(cx)?;
    let problems: Vec<Value> = journals
        .problems()
        .into_iter()
        .map(|p| {
            eprintln!("warning: {}:{}: {}", p.file.display(), p.line, p.reason);
            json!(p)
        })
        .collect();
    let backlog = journals.backlog();
    let plan = Plan {
        skipped: backlog.migrated.len(),
        pending: backlog.pending,
        to: &to,
        to_label: redact(&args.to),
        local: local.as_deref(),
        options: Options {
            concurrency: usize::from(args.concurrency),
            bounds: PinBounds {
                pin: args.pin_timeout,
                stall: args.stall_timeout,
                // pin ls and the block check may walk a large DAG: as long as a pin may take.
                call: args.pin_timeout,
                check: args.pin_timeout,
            },
            unpin_local: args.unpin_local,
            connect: !args.no_connect,
        },
    };
    let progress = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            outln!("{line}");
        }
    };
    let mut out = json!({
        "to": plan.to_label,
        "journal": journals.journal_path,
        "migrated_file": journals.migrated_path,
        "dry_run": args.dry_run,
        "pending": plan.pending.len(),
        "skipped_already_migrated": plan.skipped,
        "problems": problems,
    });

    if args.dry_run {
        let steps = match plan.local {
            Some(l) if args.unpin_local => format!(
                "pin, verify, check every block, unpin from the local node {}, record",
                redact(l.api_url())
            ),
            _ => "pin, verify, check every block, record".into(),
        };
        progress(format!(
            "dry run: would migrate {} CIDs to {} ({steps}); {} already migrated",
            plan.pending.len(),
            plan.to_label,
            plan.skipped
        ));
        for e in &plan.pending {
            progress(format!(
                "  would migrate {}  ({}, {}, {:.1} MB)",
                e.hash,
                e.job_id,
                kind_str(e),
                e.size_mb
            ));
        }
        if args.json {
            out["would_migrate"] = plan.pending.iter().map(|e| entry_json(e)).collect();
            out["migrated"] = json!([]);
            out["failed"] = json!([]);
            outln!("{out}");
        }
        return Ok(exit::OK);
    }

    if plan.pending.is_empty() {
        progress(format!(
            "nothing to do: all {} CIDs of the journal are already migrated",
            plan.skipped
        ));
        if args.json {
            out["migrated"] = json!([]);
            out["failed"] = json!([]);
            out["unpin_failures"] = json!([]);
            out["interrupted"] = json!(false);
            outln!("{out}");
        }
        return Ok(exit::OK);
    }

    // One migration at a time per data dir (a running daemon is fine: it only appends to the
    // journal, which migration only reads; migration alone appends to its records).
    let lock_path = journals.migrated_path.with_extension("jsonl.lock");
    let _migrating = crate::lock::try_acquire(&lock_path).map_err(|e| match e {
        crate::lock::LockError::Busy { pid, .. } => CliError::failed(format!(
            "another `pinwarden fallback migrate` (pid {}) is migrating this journal; let it \
             finish, then run again",
            pid.as_deref().unwrap_or("?")
        )),
        other => CliError::bad_input(other),
    })?;
    let log = MigrationLog::open(&journals.migrated_path).map_err(|e| {
        CliError::bad_input(format!(
            "cannot open {}: {e}",
            journals.migrated_path.display()
        ))
    })?;
    let report = cx.block_on(async {
        plan.prepare(|w| eprintln!("warning: {w}"))
            .await
            .map_err(|refusal| match refusal {
                Refusal::Unreachable(m) => CliError::failed(m),
                Refusal::BadInput(m) => CliError::bad_input(m),
            })?;
        let stop = async {
            // Without a signal handler, Ctrl-C would kill the run mid-record; with one, records
            // already written stand and the rest stays pending.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        Ok::<_, CliError>(
            plan.run(Arc::new(log), |item| progress(item_line(item)), stop)
                .await,
        )
    })??;
    print_summary(out, &report, args.json);
    Ok(if report.complete() {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn item_line(item: &Item) -> String {
    let e = &item.entry;
    match &item.done {
        Done::Migrated {
            unpinned_local,
            unpin_error,
        } => format!(
            "migrated  {}  ({}, {:.1} MB){}",
            e.hash,
            e.job_id,
            e.size_mb,
            match (unpinned_local, unpin_error) {
                (true, _) => " — local pin removed".to_string(),
                (false, Some(err)) => format!(" — local pin NOT removed: {err}"),
                (false, None) => String::new(),
            }
        ),
        Done::Failed { reason } => format!("FAILED    {}  ({}): {reason}", e.hash, e.job_id),
    }
}

fn print_summary(mut out: Value, report: &Report, json: bool) {
    let unpin_failures: Vec<(&Entry, &String)> = report
        .migrated()
        .filter_map(|i| match &i.done {
            Done::Migrated {
                unpin_error: Some(reason),
                ..
            } => Some((&i.entry, reason)),
            _ => None,
        })
        .collect();
    let failed: Vec<(&Entry, &str)> = report
        .failed()
        .filter_map(|i| match &i.done {
            Done::Failed { reason } => Some((&i.entry, reason.as_str())),
            Done::Migrated { .. } => None,
        })
        .collect();
    if json {
        out["migrated"] = report
            .migrated()
            .map(|i| {
                let mut item = entry_json(&i.entry);
                if let Done::Migrated { unpinned_local, .. } = &i.done {
                    item["unpinned_local"] = json!(unpinned_local);
                }
                item
            })
            .collect();
        out["failed"] = failed
            .iter()
            .map(|(e, reason)| {
                let mut item = entry_json(e);
                item["reason"] = json!(reason);
                item
            })
            .collect();
        out["unpin_failures"] = unpin_failures
            .iter()
            .map(|(e, reason)| json!({ "hash": e.hash, "reason": reason }))
            .collect();
        out["interrupted"] = json!(report.interrupted);
        out["not_started"] = json!(report.not_started());
        outln!("{out}");
    } else {
        outln!(
            "migrated {}, failed {}, skipped {} already migrated (to {})",
            report.migrated().count(),
            failed.len(),
            report.skipped,
            report.to
        );
        if !failed.is_empty() {
            outln!("failed (still pending: run the same command again to retry):");
            for (e, reason) in &failed {
                outln!("  {} ({}): {reason}", e.hash, e.job_id);
            }
        }
        if !unpin_failures.is_empty() {
            outln!(
                "local pin NOT removed (migrated; recorded as unpinned_local=false, remove it by hand):"
            );
            for (e, reason) in &unpin_failures {
                outln!("  {}: {reason}", e.hash);
            }
        }
    }
    if report.interrupted {
        eprintln!(
            "interrupted: {} CIDs not finished stay pending (nothing recorded for them)",
            report.not_started()
        );
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

fn to_auth(cx: &Context, args: &MigrateArgs) -> Result<Option<Auth>, CliError> {
    if let Some(token) = args.to_token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Auth::Bearer(token.to_string())));
    }
    match (&args.to_user, &args.to_password_env) {
        (Some(user), Some(var)) => match cx.env()(var) {
            Some(password) => Ok(Some(Auth::Basic {
                user: user.clone(),
                password,
            })),
            None => Err(CliError::bad_input(format!(
                "--to-password-env: environment variable {var} is not set"
            ))),
        },
        _ => Ok(None),
    }
}

/// The local node: `--local`, else `IPFS_LOCAL_API`, else the config's node with role local.
fn local_node(cx: &Context, args: &MigrateArgs) -> Result<Option<Arc<KuboClient>>, String> {
    if let Some(url) = args
        .local
        .clone()
        .or_else(|| crate::config::local_api(cx.env()))
    {
        let client =
            KuboClient::new("local", url.trim(), None).map_err(|e| format!("{url}: {e}"))?;
        return Ok(Some(Arc::new(client)));
    }
    let Some(config) = cx.config_file().map_err(|e| e.message)? else {
        return Ok(None);
    };
    let Some(mut node) = config.local().cloned() else {
        return Ok(None);
    };
    node.read_env(cx.env());
    client_for(&node, cx.data_dir().ok().as_deref())
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| e.0)
}
