//! `pinwarden add`, `pinwarden pin` and `pinwarden config show`.

use super::context::{CliError, CliResult, Context, exit};
use super::output::{out, outln};
use crate::app::App;
use crate::executor::{RoundEnd, RoundLimits, RoundResult, run_round};
use crate::policy::contract::Job;
use crate::trace::format_ms;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PinArgs {
    /// The content to pin (CIDv0 or CIDv1).
    pub cid: String,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Args)]
pub struct AddArgs {
    /// The directory to upload (e.g. an HLS rendition: playlist and segments).
    pub dir: PathBuf,
    /// Continue with the policy, like `pinwarden pin`, once uploaded.
    #[arg(long)]
    pub pin: bool,
    #[command(flatten)]
    pub job: JobArgs,
}

#[derive(Args)]
pub struct JobArgs {
    /// The encoder's job id, carried into logs and results (default: derived from the CID).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Size of the content, for policies and the fallback journal.
    #[arg(long, default_value_t = 0)]
    pub size_bytes: u64,
    /// Print one JSON result object on stdout.
    #[arg(long)]
    pub json: bool,
    /// A policy parameter, key=value (repeatable); overrides the config file and environment.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
    pub params: Vec<(String, String)>,
}

pub fn config_show(cx: &Context) -> CliResult {
    out!("{}", cx.config(&[])?.show());
    Ok(exit::OK)
}

pub fn pin(cx: &Context, args: PinArgs) -> CliResult {
    cid::Cid::try_from(args.cid.as_str())
        .map_err(|e| CliError::bad_input(format!("invalid CID '{}': {e}", args.cid)))?;
    let app = cx.app(&args.job.params)?;
    cx.block_on(pin_with(&app, &args.cid, &args.job))?
}

pub fn add(cx: &Context, args: AddArgs) -> CliResult {
    if !args.dir.is_dir() {
        return Err(CliError::bad_input(format!(
            "{}: not a directory",
            args.dir.display()
        )));
    }
    let app = cx.app(&args.job.params)?;
    cx.block_on(async {
        eprintln!("uploading {} to {}", args.dir.display(), app.primary.name());
        let cid = app.primary.add_dir(&args.dir).await.map_err(|e| {
            CliError::failed(format!("upload to {} failed: {e}", app.primary.name()))
        })?;
        if !args.pin {
            if args.job.json {
                outln!("{}", serde_json::json!({ "cid": cid }));
            } else {
                outln!("{cid}");
            }
            return Ok(exit::OK);
        }
        eprintln!("uploaded: {cid}");
        pin_with(&app, &cid, &args.job).await
    })?
}

async fn pin_with(app: &App, cid: &str, args: &JobArgs) -> CliResult {
    let job = Job {
        cid: cid.to_string(),
        job_id: args
            .job_id
            .clone()
            .unwrap_or_else(|| format!("cli-{}", cid.chars().rev().take(8).collect::<String>())),
        size_bytes: args.size_bytes,
        lazy: false,
        failed_rounds: 0,
    };
    let began = crate::daemon::now_ms();
    let result = run_round(
        &app.policy,
        &app.fallback,
        &job,
        &[],
        &app.topology,
        &RoundLimits::default(),
    )
    .await;
    app.topology.ledger().flush();
    let recorder = crate::rounds::store::Recorder::open(&app.config.data_dir, &app.config.rounds);
    recorder.record(crate::rounds::RoundRecord::new(
        "cli",
        began,
        &job,
        &app.policy,
        &app.fallback,
        &result,
    ));
    // The process ends after this: the record is written before it does.
    recorder.close();
    if args.json {
        outln!("{}", result_json(app, &job, &result));
    } else {
        match result.status {
            RoundEnd::Pinned | RoundEnd::LocalFallback => outln!(
                "{} {cid} on {} (verified, retrievable) in {}",
                result.status,
                result.confirmed.join(", "),
                format_ms(result.elapsed_ms)
            ),
            RoundEnd::Failed => outln!(
                "failed {cid}: {}",
                result.reason.as_deref().unwrap_or("no reason given")
            ),
        }
    }
    Ok(match result.status {
        RoundEnd::Pinned => exit::OK,
        // A blocking pin never ends in the local fallback (that is for lazy jobs), but if a
        // policy chose it, the content is not where it was asked to be: retry later.
        RoundEnd::Failed | RoundEnd::LocalFallback => exit::FAILED,
    })
}

/// The `--json` result: one object, stable field names.
pub fn result_json(app: &App, job: &Job, result: &RoundResult) -> serde_json::Value {
    let attempts: serde_json::Map<String, serde_json::Value> = result
        .attempts()
        .into_iter()
        .map(|(node, n)| (node, n.into()))
        .collect();
    serde_json::json!({
        "cid": job.cid,
        "job_id": job.job_id,
        "status": result.status,
        "confirmed_nodes": result.confirmed,
        "attempts": attempts,
        "duration_ms": result.elapsed_ms,
        "reason": result.reason,
        "policy": app.policy.name,
        "policy_hash": app.policy.hash,
        "decided_by": result.decided_by,
        "incidents": result.incidents,
        "nodes_seen": result.nodes_seen,
        "trace": result.trace,
    })
}
