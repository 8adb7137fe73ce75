//! `pinwarden policy list|check|test|encode` (`replay` is in `rounds_cmd`).

use super::context::{CliError, CliResult, Context, exit};
use super::output::outln;
use crate::executor::{RoundEnd, RoundResult};
use crate::policy::engine::SandboxLimits;
use crate::policy::{BUILTIN_FALLBACK, Policy, PolicyEngine, Registry, Source};
use crate::sim::{self, Mode, Report, Scenario};
use crate::trace::format_ms;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show every built-in policy: source, content hash, parameters and defaults.
    List {
        /// One JSON object per policy instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a policy component: is it a component, does it implement the policy world,
    /// does `configure` accept the parameters, does it behave in the built-in scenarios.
    /// Exit 0 valid, 2 invalid.
    Check {
        /// The policy component (.wasm).
        file: PathBuf,
        /// A policy parameter, key=value (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
        params: Vec<(String, String)>,
    },
    /// Run a policy through scenarios in the simulator: the real executor with scripted nodes
    /// and a virtual clock. Prints the decision trace and PASS/FAIL per scenario; exit 0 only
    /// if every scenario passes.
    #[command(after_long_help = TEST_HELP)]
    Test {
        /// A built-in policy name (tank-mode, single-backup) or a component file.
        policy: String,
        /// A scenario file (TOML, see docs/policies/simulator.md); repeatable. Given, only these files run;
        /// without it, the built-in scenarios.
        #[arg(long = "scenario", value_name = "FILE")]
        scenarios: Vec<PathBuf>,
        /// Run the built-in scenarios too, besides the --scenario files.
        #[arg(long)]
        builtins: bool,
        /// A policy parameter, key=value (repeatable); a scenario's own parameters win.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
        params: Vec<(String, String)>,
        /// Only the PASS/FAIL lines (and a job stream's figures), no traces.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Ask the running daemon to re-load its policy (or switch to another), validated like
    /// `policy check` before an atomic swap; a broken file is refused and the old policy stays.
    Reload {
        /// A built-in name or component path to switch to (default: the configured one).
        policy: Option<String>,
        /// Unix socket of the daemon.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Replay the recorded rounds (data/rounds) against a candidate policy: at every recorded
    /// decision point it is given what the live policy was given (job, nodes and health,
    /// history, now). Reports, per round, the first point where it answers otherwise, and
    /// the kind of difference; the diverging rounds are re-run in the simulator, with each
    /// node scripted from what it did in the record, to predict how they would have ended.
    /// Exit 0 with the report, 2 if the candidate does not load.
    #[command(after_long_help = REPLAY_HELP)]
    Replay {
        /// A built-in policy name or a component file.
        policy: String,
        /// Only rounds that began within this long ago (e.g. 24h, 7d); default: every record.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// One JSON object per replayed round, then a summary object.
        #[arg(long)]
        json: bool,
        /// A candidate parameter, key=value (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
        params: Vec<(String, String)>,
        /// Start each round's candidate from the parameters the live policy ran that round
        /// with (those the candidate declares), then apply --param: "the live policy, with
        /// one thing changed". Without it: the candidate's defaults and --param.
        #[arg(long)]
        live_params: bool,
    },
    /// Ask a candidate policy beside the live one at every decision of the running daemon:
    /// its answers are compared with the live answers (counted by divergence class, in
    /// /metrics too) and never executed. Validated like a reload. With --report, print the
    /// running shadow's figures; with --off, stop it. `policy promote` makes it live.
    Shadow {
        /// A built-in name or a component file (other files than the configured policy only
        /// from daemon.policy_dir).
        #[arg(required_unless_present_any = ["report", "off"])]
        policy: Option<String>,
        /// A candidate parameter, key=value (repeatable); default: the configured parameters
        /// it declares.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
        params: Vec<(String, String)>,
        /// Print the running shadow's report.
        #[arg(long, conflicts_with_all = ["policy", "off"])]
        report: bool,
        /// Stop the shadow, printing its last report.
        #[arg(long, conflicts_with = "policy")]
        off: bool,
        /// The report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Unix socket of the daemon.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Make the running shadow the live policy, validated like a reload (and counted as
    /// one); the shadow stops. Exit 0 promoted, 2 refused (the live policy keeps serving),
    /// 1 the daemon could not be asked.
    Promote {
        /// Unix socket of the daemon.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Encode a core wasm module built with wit-bindgen (e.g. for wasm32-unknown-unknown) into
    /// the component pinwarden loads.
    Encode {
        /// The core module (.wasm) with its component-type metadata.
        input: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
}

const REPLAY_HELP: &str = "\
Divergence classes: other-node, longer-wait, shorter-wait, gives-up-earlier, falls-back,
succeeds-sooner, keeps-going (goes on where the live policy ended the round), other-action
(same nodes and waits, other actions or timeouts), incident (the candidate's answer is refused
where the live one was not), avoids-incident.

A prediction scripts each node from the record: its pin answers in order (the last repeats),
its typical pin time, whether it refused every call, whether its blocks were retrievable. A
node the live round never asked cannot be known: it is scripted as healthy, and the
prediction says so. The simulated round starts from clean node health.";

const TEST_HELP: &str = "\
`policy test` checks each scenario's [expect] table: what a scenario's author expects of the
policy under test. The built-in scenarios expect tank-mode's choices (which node, how many
attempts), so a policy with another strategy fails some of them by design. What every policy
must do is checked by `policy check` (no incident, and each built-in scenario's [contract]);
test your own strategy with scenario files whose [expect] describes it.";

fn bad_input(e: impl std::fmt::Display) -> CliError {
    CliError::bad_input(e)
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::failed(e)
}

pub fn run(cx: &Context, cmd: PolicyCommand) -> CliResult {
    let engine = PolicyEngine::new(SandboxLimits::default(), cx.policy_cache()?)
        .map_err(|e| failed(format!("cannot start the WebAssembly engine: {e:#}")))?;
    let registry = Registry::new(engine);
    match cmd {
        PolicyCommand::List { json } => list(&registry, json),
        PolicyCommand::Check { file, params } => check(&registry, &file, &params),
        PolicyCommand::Test {
            policy,
            scenarios,
            builtins,
            params,
            quiet,
        } => test(&registry, &policy, &scenarios, builtins, &params, quiet),
        PolicyCommand::Encode { input, output } => encode(&registry, &input, &output),
        PolicyCommand::Replay {
            policy,
            since,
            json,
            params,
            live_params,
        } => {
            super::rounds_cmd::replay_cmd(cx, &registry, &policy, &params, since, json, live_params)
        }
        // Dispatched to the daemon client before we get here.
        PolicyCommand::Reload { .. }
        | PolicyCommand::Shadow { .. }
        | PolicyCommand::Promote { .. } => Err(bad_input("this policy command needs the daemon")),
    }
}

fn list(registry: &Registry, json: bool) -> CliResult {
    for name in Registry::builtin_names() {
        let policy = registry.resolve(name, &[]).map_err(failed)?;
        if json {
            let params: Vec<serde_json::Value> = policy
                .info
                .params
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.name, "default": p.default_value, "description": p.description
                    })
                })
                .collect();
            let line = serde_json::json!({
                "name": policy.name,
                "source": policy.source.to_string(),
                "hash": policy.hash,
                "description": policy.info.description,
                "params": params,
            });
            outln!("{line}");
        } else {
            outln!(
                "{}  ({}, {})",
                policy.name,
                policy.source,
                short_hash(&policy.hash)
            );
            outln!("  {}", policy.info.description);
            for p in &policy.info.params {
                outln!(
                    "    {:<22} {:>8}  {}",
                    p.name,
                    p.default_value,
                    p.description
                );
            }
            outln!();
        }
    }
    Ok(exit::OK)
}

fn check(registry: &Registry, file: &Path, params: &[(String, String)]) -> CliResult {
    let policy = Policy::from_file(registry.engine(), file, params).map_err(bad_input)?;
    let fallback = registry.fallback_for(params).map_err(failed)?;
    // A slow policy's check takes minutes: past the first second, say where it is.
    let started = std::time::Instant::now();
    let (ran, skipped) = sim::check_contract_with(&policy, &fallback, &mut |step| {
        if started.elapsed() >= sim::QUIET_CHECK {
            eprintln!(
                "{}",
                step.line(&file.display().to_string(), started.elapsed())
            );
        }
    })
    .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
    outln!(
        "ok: {} is a valid policy '{}' ({}); {} parameters; behaved in {ran} built-in scenarios{}",
        file.display(),
        policy.name,
        short_hash(&policy.hash),
        policy.info.params.len(),
        if skipped > 0 {
            format!(" ({skipped} not applicable)")
        } else {
            String::new()
        }
    );
    Ok(exit::OK)
}

fn test(
    registry: &Registry,
    spec: &str,
    files: &[PathBuf],
    builtins: bool,
    params: &[(String, String)],
    quiet: bool,
) -> CliResult {
    let policy = registry.resolve(spec, params).map_err(bad_input)?;
    let mut scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::from_file(f))
        .collect::<Result<_, _>>()
        .map_err(bad_input)?;
    let with_builtins = builtins || files.is_empty();
    let own = scenarios.len();
    if with_builtins {
        scenarios.extend(Scenario::builtin());
    }
    let fallback = registry.fallback_for(params).map_err(failed)?;
    outln!(
        "policy {} ({}, {})",
        policy.name,
        policy.source,
        short_hash(&policy.hash)
    );
    let started = Instant::now();
    let (mut passed, mut failures, mut skipped, mut builtin_failures) = (0, 0, 0, 0);
    for (i, scenario) in scenarios.iter().enumerate() {
        let report = sim::run(&policy, &fallback, scenario, Mode::Expect).map_err(failed)?;
        print_report(&report, quiet);
        match (&report.not_applicable, report.passed()) {
            (Some(_), _) => skipped += 1,
            (None, true) => passed += 1,
            (None, false) => {
                failures += 1;
                builtin_failures += usize::from(i >= own);
            }
        }
    }
    let na = if skipped > 0 {
        format!(", {skipped} not applicable")
    } else {
        String::new()
    };
    outln!(
        "\n{passed} passed, {failures} failed{na} ({} ms wall time)",
        started.elapsed().as_millis()
    );
    if !with_builtins {
        outln!("(only the --scenario files ran; --builtins adds the built-in scenarios)");
    } else if builtin_failures > 0
        && !(policy.source == Source::Builtin && policy.name == BUILTIN_FALLBACK)
    {
        outln!(
            "note: the built-in scenarios' [expect] describe tank-mode's choices; a policy with \
             another strategy may fail them by design. `pinwarden policy check` checks what every \
             policy must do. See `pinwarden policy test --help`."
        );
    }
    Ok(if failures == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn print_report(report: &Report, quiet: bool) {
    if let Some(why) = &report.not_applicable {
        outln!("\nN/A   {}: {why}", report.scenario);
        return;
    }
    if report.stream.is_some() {
        // A stream's traces would run to thousands of lines: one line per job, then its figures.
        outln!("\n== {}: {}", report.scenario, report.description);
        if !quiet {
            print_jobs(report);
        }
        print_figures(report);
    } else if !quiet {
        outln!("\n== {}: {}", report.scenario, report.description);
        let several = report.rounds.len() > 1;
        for (i, round) in report.rounds.iter().enumerate() {
            if several {
                outln!("  -- round {} --", i + 1);
            }
            for line in &round.trace {
                outln!("  {line}");
            }
        }
    }
    let summary = if report.stream.is_some() {
        let counts: Vec<String> = [RoundEnd::Pinned, RoundEnd::LocalFallback, RoundEnd::Failed]
            .into_iter()
            .map(|s| (s, report.ended(s)))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        format!("{} jobs, {}", report.jobs.len(), counts.join(", "))
    } else {
        report.final_round().map(ended_as).unwrap_or_default()
    };
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    outln!(
        "{verdict}  {}: {summary} after {} virtual",
        report.scenario,
        format_ms(report.virtual_ms())
    );
    for failure in &report.failures {
        outln!("      - {failure}");
    }
}

fn ended_as(r: &RoundResult) -> String {
    match r.status {
        RoundEnd::Pinned | RoundEnd::LocalFallback => {
            format!("{} on {}", r.status, r.confirmed.join(", "))
        }
        RoundEnd::Failed => format!("failed: {}", r.reason.as_deref().unwrap_or("?")),
    }
}

/// One line per job of a stream: when it came, how long it took, where it ended.
fn print_jobs(report: &Report) {
    outln!(
        "  {:<16} {:>12} {:>12}  result (pin attempts)",
        "job",
        "submitted",
        "latency"
    );
    for job in &report.jobs {
        let rounds = report.job_rounds(job);
        let Some(end) = rounds.last() else {
            continue;
        };
        let attempts: Vec<String> = rounds
            .iter()
            .flat_map(|r| r.attempts())
            .map(|(node, n)| format!("{node} {n}"))
            .collect();
        let lazy = if rounds.len() > 1 {
            format!(", {} rounds", rounds.len())
        } else {
            String::new()
        };
        outln!(
            "  {:<16} {:>12} {:>12}  {} ({}{lazy})",
            job.job_id,
            format_ms(job.submitted_ms),
            format_ms(job.latency_ms()),
            ended_as(end),
            attempts.join(", ")
        );
    }
}

/// A stream's figures: latency percentiles, outcomes, the drain rate, calls per node.
fn print_figures(report: &Report) {
    let l = report.latency();
    outln!(
        "  latency      p50 {}  p90 {}  p99 {}  max {}",
        format_ms(l.p50),
        format_ms(l.p90),
        format_ms(l.p99),
        format_ms(l.max)
    );
    outln!(
        "  outcomes     {} pinned, {} local-fallback, {} failed; the last ended at {}",
        report.ended(RoundEnd::Pinned),
        report.ended(RoundEnd::LocalFallback),
        report.ended(RoundEnd::Failed),
        format_ms(report.virtual_ms())
    );
    if let Some((pinned, window)) = report.pinned_while_arriving() {
        // Jobs per virtual minute, to one decimal, in integers.
        let per_min_x10 = (pinned as u64 * 600_000 + window / 2) / window.max(1);
        outln!(
            "  drain        {pinned} pinned while jobs arrived (first {}): {}.{}/min",
            format_ms(window),
            per_min_x10 / 10,
            per_min_x10 % 10
        );
    }
    for node in &report.nodes {
        outln!(
            "  {:<12} {} pin calls ({} while its breaker was open, {} cancelled); confirmed {} jobs",
            node.name,
            node.pins.len(),
            node.pins_while_open(),
            node.pins_cancelled(),
            report.confirmed_on(&node.name)
        );
    }
}

fn encode(registry: &Registry, input: &Path, output: &Path) -> CliResult {
    let module = std::fs::read(input)
        .map_err(|e| bad_input(format!("{}: cannot read: {e}", input.display())))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|enc| enc.validate(true).encode())
        .map_err(|e| {
            bad_input(format!(
                "{}: cannot encode as a component (built with wit-bindgen against wit/policy.wit?): {e:#}",
                input.display()
            ))
        })?;
    // Only a component that loads as a policy is worth writing.
    let label = input.display().to_string();
    let source = crate::policy::Source::File(input.to_path_buf());
    Policy::from_bytes(registry.engine(), &label, source, &component, &[]).map_err(|e| {
        bad_input(format!(
            "{} encodes, but not as a policy: {e}; nothing written to {}",
            input.display(),
            output.display()
        ))
    })?;
    crate::atomic_file::write(output, &component)
        .map_err(|e| failed(format!("{}: cannot write: {e}", output.display())))?;
    outln!("wrote {} ({} bytes)", output.display(), component.len());
    Ok(exit::OK)
}

fn short_hash(hash: &str) -> String {
    hash.chars().take("sha256:".len() + 16).collect()
}
