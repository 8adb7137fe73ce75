//! `pinwarden add`, `pinwarden pin` and `pinwarden config show`.

use super::{GlobalArgs, exit};
use crate::app::App;
use crate::config::Config;
use crate::executor::{RoundLimits, RoundResult, Status, run_round};
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

pub fn config_show(global: &GlobalArgs) -> u8 {
    match load_config(global, &[]) {
        Ok(config) => {
            print!("{}", config.show());
            exit::OK
        }
        Err(code) => code,
    }
}

pub fn pin(global: &GlobalArgs, args: PinArgs) -> u8 {
    if let Err(e) = cid::Cid::try_from(args.cid.as_str()) {
        eprintln!("error: invalid CID '{}': {e}", args.cid);
        return exit::BAD_INPUT;
    }
    let Ok(app) = load_app(global, &args.job.params) else {
        return exit::BAD_INPUT;
    };
    with_runtime(|| async { pin_with(&app, &args.cid, &args.job).await })
}

pub fn add(global: &GlobalArgs, args: AddArgs) -> u8 {
    if !args.dir.is_dir() {
        eprintln!("error: {}: not a directory", args.dir.display());
        return exit::BAD_INPUT;
    }
    let Ok(app) = load_app(global, &args.job.params) else {
        return exit::BAD_INPUT;
    };
    with_runtime(|| async {
        eprintln!("uploading {} to {}", args.dir.display(), app.primary.name());
        let cid = match app.primary.add_dir(&args.dir).await {
            Ok(cid) => cid,
            Err(e) => {
                eprintln!("error: upload to {} failed: {e}", app.primary.name());
                return exit::FAILED;
            }
        };
        if !args.pin {
            if args.job.json {
                println!("{}", serde_json::json!({ "cid": cid }));
            } else {
                println!("{cid}");
            }
            return exit::OK;
        }
        eprintln!("uploaded: {cid}");
        pin_with(&app, &cid, &args.job).await
    })
}

async fn pin_with(app: &App, cid: &str, args: &JobArgs) -> u8 {
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
    let result = run_round(
        &app.policy,
        &app.fallback,
        &job,
        &app.topology,
        &RoundLimits::default(),
    )
    .await;
    if args.json {
        println!("{}", result_json(app, &job, &result));
    } else {
        match result.status {
            Status::Pinned | Status::LocalFallback => println!(
                "{} {cid} on {} (verified, retrievable) in {}",
                result.status,
                result.confirmed.join(", "),
                format_ms(result.elapsed_ms)
            ),
            Status::Failed => println!(
                "failed {cid}: {}",
                result.reason.as_deref().unwrap_or("no reason given")
            ),
        }
    }
    match result.status {
        Status::Pinned => exit::OK,
        // A blocking pin never ends in the local fallback (that is for lazy jobs), but if a
        // policy chose it, the content is not where it was asked to be: retry later.
        Status::Failed | Status::LocalFallback => exit::FAILED,
    }
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
        "trace": result.trace,
    })
}

/// The effective config (file, env, `params`, `--data-dir`); errors are printed (exit 2).
pub fn load_config(global: &GlobalArgs, params: &[(String, String)]) -> Result<Config, u8> {
    effective_config(global, params).map_err(|e| {
        eprintln!("error: {e}");
        exit::BAD_INPUT
    })
}

/// The config if it loads, for commands that only need the socket path.
pub fn load_config_lenient(global: &GlobalArgs) -> Option<Config> {
    effective_config(global, &[]).ok()
}

fn effective_config(
    global: &GlobalArgs,
    params: &[(String, String)],
) -> Result<Config, crate::config::ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    let mut config = Config::load(global.config.as_deref(), &env, params)?;
    if let Some(dir) = &global.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

fn load_app(global: &GlobalArgs, params: &[(String, String)]) -> Result<App, u8> {
    let config = load_config(global, params)?;
    App::new(config).map_err(|e| {
        eprintln!("error: {e}");
        exit::BAD_INPUT
    })
}

fn with_runtime<F, Fut>(f: F) -> u8
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::FAILED
        }
    }
}
