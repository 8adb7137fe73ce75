//! `pinwarden fallback stats|migrate`: parsing and printing. The journal and the migration
//! protocol live in [`crate::journal`] and [`crate::migrate`].

use super::context::{CliError, CliResult, Context, exit};
use super::output::outln;
use crate::journal::{self, Entry};
use crate::migrate::{Done, Item, Options, Plan, Progress, Refusal, Report, Request, redact};
use crate::prove::PinBounds;
use clap::{Args, Subcommand};
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
    /// The permanent node: a Kubo RPC API, http(s)://host:port (a path prefix, for a reverse
    /// proxy, is kept) or a multiaddr such as /ip4/10.0.0.2/tcp/5001; or the name of a node of
    /// the config file, of any kind (an IPFS Cluster, a PSA provider), with its credentials.
    #[arg(long, value_name = "URL|NODE")]
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

/// The progress of the data directory's migration, read, with a note when there is no
/// journal yet.
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

/// The flags, as the library's request.
fn request(args: &MigrateArgs) -> Request {
    Request {
        to: args.to.clone(),
        to_token: args.to_token.clone(),
        to_basic: args.to_user.clone().zip(args.to_password_env.clone()),
        local: args.local.clone(),
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
    }
}

fn refused(refusal: Refusal) -> CliError {
    match refusal {
        Refusal::Unreachable(m) | Refusal::Busy(m) => CliError::failed(m),
        Refusal::BadInput(m) => CliError::bad_input(m),
    }
}

fn migrate(cx: &Context, args: &MigrateArgs) -> CliResult {
    let request = request(args);
    let warn = |w: String| eprintln!("warning: {w}");
    let config = cx.config_file().map_err(|e| e.message);
    let nodes = request
        .nodes(config, cx.data_dir().ok().as_deref(), cx.env(), warn)
        .map_err(refused)?;
    let progress = load(cx)?;
    for p in progress.problems() {
        warn(format!("{}:{}: {}", p.file.display(), p.line, p.reason));
    }
    let plan = Plan::new(&progress, &nodes, request.options);
    // With --json, stdout holds the report alone: the lines go to stderr.
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            outln!("{line}");
        }
    };
    let report = if args.dry_run {
        say_dry_run(&plan, say);
        plan.dry_run()
    } else {
        if plan.pending.is_empty() {
            say(format!(
                "nothing to do: all {} CIDs of the journal are already migrated",
                plan.skipped
            ));
        }
        let stop = async {
            // Without a signal handler, Ctrl-C would kill the run mid-record; with one, records
            // already written stand and the rest stays pending.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let report = cx
            .block_on(plan.migrate(warn, |item| say(item_line(item)), stop))?
            .map_err(refused)?;
        if !args.json && !plan.pending.is_empty() {
            print_summary(&report);
        }
        report
    };
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&report).map_err(CliError::failed)?
        );
    }
    if report.interrupted {
        eprintln!(
            "interrupted: {} CIDs not finished stay pending (nothing recorded for them)",
            report.not_started()
        );
    }
    Ok(if report.complete() {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn say_dry_run(plan: &Plan, say: impl Fn(String)) {
    let steps = match plan.local {
        Some(l) if plan.options.unpin_local => format!(
            "pin, verify, check every block, unpin from the local node {}, record",
            redact(l.api_url())
        ),
        _ => "pin, verify, check every block, record".into(),
    };
    say(format!(
        "dry run: would migrate {} CIDs to {} ({steps}); {} already migrated",
        plan.pending.len(),
        plan.to_label,
        plan.skipped
    ));
    for e in &plan.pending {
        say(format!(
            "  would migrate {}  ({}, {}, {:.1} MB)",
            e.hash,
            e.job_id,
            kind_str(e),
            e.size_mb
        ));
    }
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

fn print_summary(report: &Report) {
    outln!(
        "migrated {}, failed {}, skipped {} already migrated (to {})",
        report.migrated().count(),
        report.failed().count(),
        report.skipped,
        report.to
    );
    if report.failed().next().is_some() {
        outln!("failed (still pending: run the same command again to retry):");
        for (e, reason) in report.failures() {
            outln!("  {} ({}): {reason}", e.hash, e.job_id);
        }
    }
    if report.unpin_failures().next().is_some() {
        outln!(
            "local pin NOT removed (migrated; recorded as unpinned_local=false, remove it by hand):"
        );
        for (e, reason) in report.unpin_failures() {
            outln!("  {}: {reason}", e.hash);
        }
    }
}

fn kind_str(e: &Entry) -> &'static str {
    match e.kind {
        journal::ContentKind::File => "file",
        journal::ContentKind::Directory => "directory",
    }
}
