//! `pinwarden rounds export|show` and `pinwarden policy replay`: the round records in
//! `data/rounds` (see [`crate::rounds`]).

use super::context::{CliError, CliResult, Context, exit};
use super::output::outln;
use crate::executor::RoundLimits;
use crate::policy::{Policy, Registry};
use crate::rounds::replay::{self, Answer, RoundReplay, Summary};
use crate::rounds::{RoundRecord, store};
use crate::trace::format_ms;
use clap::Subcommand;
use std::time::Duration;

#[derive(Subcommand)]
pub enum RoundsCommand {
    /// Print the recorded rounds as JSON lines (one round per line, oldest segment first):
    /// the job, the policy (name, hash, parameters), every decision point with what it saw
    /// and answered, the history and the end.
    Export {
        /// Only rounds that began within this long ago (e.g. 24h, 7d).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Only the rounds of this job id.
        #[arg(long = "job")]
        job_id: Option<String>,
    },
    /// Show the recorded rounds of one job: each decision, what the policy answered, and how
    /// the round ended.
    Show {
        /// The job id.
        job_id: String,
        /// The rounds as JSON lines (as `rounds export --job`).
        #[arg(long)]
        json: bool,
    },
}

/// The records asked for, with a warning for unreadable lines.
fn records(
    cx: &Context,
    since: Option<Duration>,
    job_id: Option<&str>,
) -> Result<Vec<RoundRecord>, CliError> {
    let dir = store::dir(&cx.data_dir()?);
    let since_ms = since.map(|d| crate::daemon::now_ms() - d.as_millis() as i64);
    let read = store::read(&dir, since_ms, job_id)
        .map_err(|e| CliError::failed(format!("cannot read {}: {e}", dir.display())))?;
    if read.skipped > 0 {
        eprintln!(
            "warning: {} unreadable lines skipped in {} (a torn last line after a kill, or another version)",
            read.skipped,
            dir.display()
        );
    }
    Ok(read.records)
}

pub fn run(cx: &Context, cmd: RoundsCommand) -> CliResult {
    match cmd {
        RoundsCommand::Export { since, job_id } => {
            for r in records(cx, since, job_id.as_deref())? {
                outln!("{}", json_line(&r)?);
            }
            Ok(exit::OK)
        }
        RoundsCommand::Show { job_id, json } => {
            let found = records(cx, None, Some(&job_id))?;
            if found.is_empty() {
                return Err(CliError::failed(format!(
                    "no recorded rounds of job '{job_id}' in {}",
                    store::dir(&cx.data_dir()?).display()
                )));
            }
            for r in &found {
                if json {
                    outln!("{}", json_line(r)?);
                } else {
                    show(r);
                }
            }
            Ok(exit::OK)
        }
    }
}

fn json_line(r: &RoundRecord) -> Result<String, CliError> {
    serde_json::to_string(r).map_err(|e| CliError::failed(format!("cannot encode a record: {e}")))
}

fn show(r: &RoundRecord) {
    let at = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(r.at_ms.max(0) as u64),
    );
    outln!(
        "round of {} ({}) at {at} by {}: policy {} {} (fallback {})",
        r.job.job_id,
        r.job.cid,
        r.by,
        r.policy.name,
        short(&r.policy.hash),
        r.fallback.name
    );
    for (k, p) in r.points.iter().enumerate() {
        let who = if p.fallback { " [fallback]" } else { "" };
        let answer = match &p.incident {
            Some(i) => format!("INCIDENT {i}"),
            None => describe(&p.actions),
        };
        outln!(
            "  {:>8}  decision {k}{who}: {answer}   (saw {} events, {} ended since)",
            format_ms(p.t),
            p.len,
            p.ended.len()
        );
        let shadow_differs = r
            .shadow
            .iter()
            .flat_map(|v| &v.diverged)
            .filter(|d| d.k as usize == k);
        for d in shadow_differs {
            outln!(
                "            shadow {}: {}",
                d.class.as_str(),
                describe_answer(&d.answer)
            );
        }
    }
    if let Some(v) = &r.shadow {
        outln!(
            "  shadow {} {}: {} of {} decisions compared agree",
            v.policy.name,
            short(&v.policy.hash),
            v.agree,
            v.compared
        );
    }
    let on = if r.end.confirmed.is_empty() {
        String::new()
    } else {
        format!(" on {}", r.end.confirmed.join(", "))
    };
    let why = r
        .end
        .reason
        .as_deref()
        .map(|w| format!(": {w}"))
        .unwrap_or_default();
    outln!(
        "  ended {}{on} after {}{why} (decided by {})",
        r.end.status,
        format_ms(r.end.elapsed_ms),
        r.end.decided_by
    );
}

fn describe(actions: &[crate::Action]) -> String {
    use crate::Action;
    let one = |a: &Action| match a {
        Action::Pin(p) => format!("pin {}", p.node),
        Action::Verify(n) => format!("verify {n}"),
        Action::CheckRetrievable(n) => format!("check-retrievable {n}"),
        Action::Connect(c) => format!("connect {} to {}", c.node, c.provider),
        Action::Wait(w) => format!("wait {}", format_ms(w.ms)),
        Action::LocalFallback => "local-fallback".into(),
        Action::Succeed(n) => format!("succeed on {}", n.join(", ")),
        Action::Fail(r) => format!("fail: {r}"),
    };
    actions.iter().map(one).collect::<Vec<_>>().join(" + ")
}

fn describe_answer(a: &Answer) -> String {
    match a {
        Answer::Actions(actions) => describe(actions),
        Answer::Incident(i) => format!("INCIDENT {i}"),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `policy replay`: the candidate against the recorded rounds. Exit 0 (the report is the
/// answer: divergences are not an error), 2 when the candidate does not load.
pub fn replay_cmd(
    cx: &Context,
    registry: &Registry,
    candidate: &str,
    params: &[(String, String)],
    since: Option<Duration>,
    json: bool,
    live_params: bool,
) -> CliResult {
    let policy: std::sync::Arc<Policy> = registry
        .resolve(candidate, params)
        .map_err(CliError::bad_input)?;
    let fallback = registry
        .fallback_for(&[])
        .map_err(|e| CliError::failed(format!("the built-in fallback: {e}")))?;
    let records = records(cx, since, None)?;
    let started = std::time::Instant::now();
    let limits = RoundLimits::default();
    let (rounds, summary) = if live_params {
        // Each round's candidate: the live parameters it declares, then --param on top.
        let mut tuned: std::collections::HashMap<Vec<(String, String)>, Policy> =
            std::collections::HashMap::new();
        let mut rounds = Vec::with_capacity(records.len());
        for r in &records {
            let mut merged: Vec<(String, String)> = r
                .policy
                .params
                .iter()
                .filter(|(k, _)| policy.declares(k) && !params.iter().any(|(p, _)| p == k))
                .cloned()
                .collect();
            merged.extend(params.iter().cloned());
            if !tuned.contains_key(&merged) {
                let p = policy.with_params(&merged).map_err(|i| {
                    CliError::bad_input(format!(
                        "{}: the live parameters of a recorded round are refused: {i}",
                        policy.name
                    ))
                })?;
                tuned.insert(merged.clone(), p);
            }
            if let Some(p) = tuned.get(&merged) {
                rounds.push(replay::replay_round(r, p, &fallback, &limits));
            }
        }
        let summary = replay::summarise(&rounds);
        (rounds, summary)
    } else {
        replay::replay(&records, &policy, &fallback, &limits)
    };
    let took = started.elapsed();
    if json {
        for r in &rounds {
            let line = serde_json::to_string(r)
                .map_err(|e| CliError::failed(format!("cannot encode: {e}")))?;
            outln!("{line}");
        }
        let summary = serde_json::json!({
            "summary": summary,
            "candidate": { "name": policy.name, "hash": policy.hash },
            "wall_ms": took.as_millis() as u64,
        });
        outln!("{summary}");
        return Ok(exit::OK);
    }
    for r in rounds
        .iter()
        .filter(|r| r.divergence.is_some() || r.unreplayable.is_some())
    {
        print_round(r);
    }
    print_summary(&policy, &summary, took);
    Ok(exit::OK)
}

fn print_round(r: &RoundReplay) {
    if let Some(why) = &r.unreplayable {
        outln!("{} ({}): not replayable: {why}", r.job_id, r.cid);
        return;
    }
    let Some(d) = &r.divergence else { return };
    outln!(
        "{} ({}): diverges at decision {} ({} into the round): {}",
        r.job_id,
        r.cid,
        d.point,
        format_ms(d.t_ms),
        d.class.as_str()
    );
    outln!("    live:      {}", describe_answer(&d.live));
    outln!("    candidate: {}", describe_answer(&d.candidate));
    let live_on = if r.live_confirmed.is_empty() {
        String::new()
    } else {
        format!(" on {}", r.live_confirmed.join(", "))
    };
    outln!(
        "    recorded:  {}{live_on} after {}",
        r.live_end,
        format_ms(r.live_elapsed_ms)
    );
    if let Some(p) = &r.prediction {
        let on = if p.confirmed.is_empty() {
            String::new()
        } else {
            format!(" on {}", p.confirmed.join(", "))
        };
        let sign = if p.delta_ms < 0 { "sooner" } else { "later" };
        outln!(
            "    predicted: {}{on} after {} ({} {sign}){}",
            p.status,
            format_ms(p.elapsed_ms),
            format_ms(p.delta_ms.unsigned_abs()),
            p.reason
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        );
        if !p.assumed.is_empty() {
            outln!(
                "    assumes:   {} (never asked in the live round) answers like a healthy node",
                p.assumed.join(", ")
            );
        }
    }
}

fn print_summary(policy: &Policy, s: &Summary, took: Duration) {
    outln!(
        "{} ({}) replayed against {} recorded rounds ({} decisions) in {}",
        policy.name,
        short(&policy.hash),
        s.rounds,
        s.decisions,
        format_ms(took.as_millis() as u64)
    );
    outln!(
        "  {} of {} rounds decided the same at every point; {} diverge{}",
        s.agree,
        s.rounds,
        s.diverge,
        if s.unreplayable > 0 {
            format!(", {} not replayable", s.unreplayable)
        } else {
            String::new()
        }
    );
    for (class, n) in &s.by_class {
        outln!("    {n:>6}  {class}");
    }
    if s.diverge > 0 {
        outln!(
            "  predicted: {} of {} diverging rounds end the same{}",
            s.predicted_same_end,
            s.diverge,
            s.mean_delta_ms
                .map(|d| format!(
                    " ({} {} on average)",
                    format_ms(d.unsigned_abs()),
                    if d < 0 { "sooner" } else { "later" }
                ))
                .unwrap_or_default()
        );
        for (nodes, n) in &s.predicted_elsewhere {
            outln!("    {n:>6}  would end on {nodes}");
        }
        outln!(
            "    {:>6}  would fail where the live round pinned; {} would pin where it failed",
            s.predicted_newly_failed,
            s.predicted_newly_pinned
        );
        if s.predictions_with_assumptions > 0 {
            outln!(
                "  {} predictions rest on nodes the live round never asked (scripted as healthy)",
                s.predictions_with_assumptions
            );
        }
    }
}
