//! `pinwarden serve`, and the commands that talk to it over its Unix socket:
//! `submit`, `status`, `jobs`, `policy reload`.

use super::context::{CliError, CliResult, Context, exit};
use super::output::outln;
use crate::app::App;
use crate::client::DaemonClient;
use crate::daemon::wire::{Health, ReloadRequest, SubmitRequest};
use crate::daemon::{self, Daemon, Listeners};
use crate::queue::State;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ServeArgs {
    /// Unix socket to serve on (mode daemon.socket_mode: 0600, or 0660 for the daemon's group).
    /// Default: daemon.socket, else <data_dir>/pinwarden.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also serve on TCP, e.g. 127.0.0.1:7070. Requires a bearer token of at least 16
    /// characters (PINWARDEN_TOKEN, or the variable daemon.token_env names), on loopback too
    /// unless daemon.insecure_loopback_tcp is set.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The CID to pin.
    pub cid: String,
    /// The encoder's job id (a job id names one CID; submitting it again is idempotent).
    #[arg(long)]
    pub job_id: String,
    #[arg(long, default_value_t = 0)]
    pub size_bytes: u64,
    /// Wait for the pin to end (exit 0 pinned, 1 not). Default: queue it and return at once.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: stop waiting after this long (the pin goes on).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// POST this job's signed events (pinned, local-fallback, failed, cancelled) to URL. Its
    /// host must be in the daemon's notify.allowed_hosts (else exit 2); default: notify.url.
    #[arg(long, value_name = "URL")]
    pub notify: Option<String>,
    /// Unix socket of the daemon.
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// A job id or a CID.
    pub key: String,
    /// Print the JSON the daemon returned.
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub struct JobsArgs {
    /// Only jobs in this state: queued, pinning, pinned, failed, local-fallback.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<State>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

pub fn serve(cx: &Context, args: ServeArgs) -> CliResult {
    let config = cx.config(&[])?;
    let token = config.daemon.token().map_err(CliError::bad_input)?;
    let psa = match (&config.psa.listen, &config.psa.tokens_file) {
        (Some(addr), Some(file)) => Some((
            addr.clone(),
            crate::psa::tokens::Tokens::load(file, token.as_deref())
                .map_err(CliError::bad_input)?,
        )),
        _ => None,
    };
    let listen = Listeners {
        socket: args.socket.unwrap_or_else(|| config.socket_path()),
        tcp: args.listen.or_else(|| config.daemon.listen.clone()),
        token,
        psa,
    };
    let app = App::new(config)?;
    cx.block_on(async {
        let daemon = Daemon::new(app).map_err(|e| CliError::bad_input(format!("{e:#}")))?;
        daemon::serve(daemon, listen)
            .await
            .map_err(|e| CliError::bad_input(format!("{e:#}")))?;
        Ok(exit::OK)
    })?
}

pub fn submit(cx: &Context, args: SubmitArgs) -> CliResult {
    cid::Cid::try_from(args.cid.as_str())
        .map_err(|e| CliError::bad_input(format!("invalid CID '{}': {e}", args.cid)))?;
    let client = cx.daemon(args.socket.as_deref())?;
    let request = SubmitRequest {
        cid: args.cid,
        job_id: args.job_id,
        size_bytes: args.size_bytes,
        wait: args.wait,
        timeout_ms: args.timeout_ms,
        notify: args.notify,
    };
    let submitted = cx.block_on(client.submit(&request))??;
    outln!("{}", json_line(&submitted.job)?);
    Ok(match submitted.job.state {
        State::Pinned => exit::OK,
        _ if !args.wait => exit::OK,
        _ => exit::FAILED,
    })
}

pub fn status(cx: &Context, args: StatusArgs) -> CliResult {
    let client = cx.daemon(args.socket.as_deref())?;
    let job = cx.block_on(client.status(&args.key))??;
    if args.json {
        outln!("{}", json_line(&job)?);
    } else {
        outln!(
            "{}  {}  jobs: {}  rounds failed: {}{}",
            job.cid,
            job.state,
            json_line(&job.job_ids)?,
            job.failed_rounds,
            job.reason
                .as_deref()
                .map(|r| format!("  last: {r}"))
                .unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

pub fn jobs(cx: &Context, args: JobsArgs) -> CliResult {
    let client = cx.daemon(args.socket.as_deref())?;
    for job in cx.block_on(client.jobs(args.state, args.limit))?? {
        outln!("{}", json_line(&job)?);
    }
    Ok(exit::OK)
}

pub fn reload(cx: &Context, policy: Option<String>, socket: Option<&Path>) -> CliResult {
    let client = cx.daemon(socket)?;
    // The daemon reads a policy path in its own working directory: send the caller's meaning.
    let policy = policy.map(|spec| absolute_if_file(&spec));
    let request = ReloadRequest {
        policy,
        params: None,
    };
    let policy = cx.block_on(with_check_progress(&client, client.reload(&request)))??;
    outln!("reloaded: {} ({})", policy.name, policy.hash);
    Ok(exit::OK)
}

/// What `policy shadow` was asked.
pub struct ShadowAsk {
    pub policy: Option<String>,
    pub params: Vec<(String, String)>,
    pub report: bool,
    pub off: bool,
    pub json: bool,
}

pub fn shadow(cx: &Context, ask: ShadowAsk, socket: Option<&Path>) -> CliResult {
    let client = cx.daemon(socket)?;
    let report = if ask.report {
        cx.block_on(client.shadow_report())??
    } else if ask.off {
        cx.block_on(client.shadow_stop())??
    } else {
        let policy = ask
            .policy
            .map(|spec| absolute_if_file(&spec))
            .ok_or_else(|| CliError::bad_input("name the candidate policy"))?;
        let params = (!ask.params.is_empty()).then(|| {
            ask.params
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect()
        });
        let request = crate::daemon::wire::ShadowRequest { policy, params };
        let report = cx.block_on(with_check_progress(&client, client.shadow_start(&request)))??;
        if !ask.json {
            outln!(
                "shadow: {} ({}) is asked at every decision, never executed",
                report.policy,
                report.hash
            );
            return Ok(exit::OK);
        }
        report
    };
    if ask.json {
        outln!("{}", json_line(&report)?);
    } else {
        print_shadow(&report, ask.off);
    }
    Ok(exit::OK)
}

fn print_shadow(r: &crate::rounds::shadow::Report, stopped: bool) {
    let state = if stopped { "stopped" } else { "running" };
    outln!(
        "shadow {} ({}), {state}, {} s: {} rounds, {} decisions",
        r.policy,
        r.hash,
        r.running_s,
        r.rounds,
        r.decisions
    );
    let pct = |n: u64| {
        if r.decisions == 0 {
            0.0
        } else {
            100.0 * n as f64 / r.decisions as f64
        }
    };
    outln!("  {:>8}  agree ({:.1} %)", r.agree, pct(r.agree));
    for (class, n) in &r.by_class {
        outln!("  {n:>8}  {class} ({:.1} %)", pct(*n));
    }
    outln!(
        "  {} rounds with a divergence; {} incidents (contained); {} decisions not compared; {} ms spent deciding",
        r.rounds_diverged,
        r.incidents,
        r.skipped,
        r.decide_ms
    );
    for seen in &r.recent {
        outln!(
            "  recent: {} at {} ms: {} (live {:?}, shadow {:?})",
            seen.job_id,
            seen.t_ms,
            seen.class.as_str(),
            seen.live,
            seen.shadow
        );
    }
}

pub fn promote(cx: &Context, socket: Option<&Path>) -> CliResult {
    let client = cx.daemon(socket)?;
    let reply = cx.block_on(with_check_progress(&client, client.promote()))??;
    outln!(
        "promoted: {} ({}) is the live policy, after {} decisions in shadow ({} agreed)",
        reply.policy.name,
        reply.policy.hash,
        reply.shadow.decisions,
        reply.shadow.agree
    );
    Ok(exit::OK)
}

/// Awaits `request` (a reload, shadow or promote: the daemon checks the candidate in the
/// built-in scenarios first, which takes minutes for a slow policy), printing on stderr,
/// once a second, which scenario the daemon's check has reached.
async fn with_check_progress<T>(
    client: &DaemonClient,
    request: impl std::future::Future<Output = T>,
) -> T {
    let mut request = std::pin::pin!(request);
    let mut tick = tokio::time::interval(crate::sim::QUIET_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: a quick check prints nothing
    let mut shown = None;
    loop {
        tokio::select! {
            done = &mut request => return done,
            _ = tick.tick() => {
                let asked = tokio::time::timeout(crate::sim::QUIET_CHECK, client.health());
                if let Ok(Ok(Health { checking: Some(c), .. })) = asked.await {
                    let at = (c.policy.clone(), c.index);
                    if shown.as_ref() != Some(&at) {
                        let step = crate::sim::CheckStep {
                            scenario: &c.scenario,
                            index: c.index,
                            total: c.total,
                        };
                        let elapsed = std::time::Duration::from_millis(c.elapsed_ms);
                        eprintln!("{}", step.line(&c.policy, elapsed));
                        shown = Some(at);
                    }
                }
            }
        }
    }
}

/// A policy spec as the daemon must read it: a path that exists here, made absolute; a
/// built-in name (or a path that does not exist, which the daemon will report) unchanged.
fn absolute_if_file(spec: &str) -> String {
    let path = Path::new(spec);
    if path.is_relative()
        && path.exists()
        && let Ok(absolute) = std::fs::canonicalize(path)
    {
        return absolute.display().to_string();
    }
    spec.to_string()
}

fn parse_state(s: &str) -> Result<State, String> {
    State::parse(s).ok_or_else(|| {
        format!("unknown state '{s}' (queued, pinning, pinned, failed, local-fallback)")
    })
}

fn json_line(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string(value).map_err(CliError::failed)
}

#[cfg(test)]
mod tests {
    use super::absolute_if_file;

    #[test]
    fn relative_policy_paths_are_sent_absolute() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"x").expect("write");
        let cwd = std::env::current_dir().expect("cwd");
        let relative = pathdiff(&file, &cwd);
        let canonical = std::fs::canonicalize(&file).expect("canonical");
        assert_eq!(absolute_if_file(&relative), canonical.display().to_string());
        assert_eq!(absolute_if_file("tank-mode"), "tank-mode");
        assert_eq!(absolute_if_file("/nowhere/p.wasm"), "/nowhere/p.wasm");
    }

    /// `file` relative to `base` (both absolute), by climbing to their common ancestor.
    fn pathdiff(file: &std::path::Path, base: &std::path::Path) -> String {
        let common = base
            .ancestors()
            .find(|a| file.starts_with(a))
            .expect("a common ancestor");
        let ups = base
            .strip_prefix(common)
            .expect("prefix")
            .components()
            .count();
        let down = file.strip_prefix(common).expect("prefix");
        let mut rel = std::path::PathBuf::new();
        for _ in 0..ups {
            rel.push("..");
        }
        rel.push(down);
        rel.display().to_string()
    }
}
