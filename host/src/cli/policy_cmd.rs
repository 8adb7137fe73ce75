//! `pinwarden policy list|check|test|encode`.

use super::exit;
use crate::executor::Status;
use crate::policy::engine::Limits;
use crate::policy::{Policy, PolicyEngine, Registry};
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
    Test {
        /// A built-in policy name (tank-mode, single-backup) or a component file.
        policy: String,
        /// A scenario file (TOML, see the README); repeatable. Default: the built-in scenarios.
        #[arg(long = "scenario", value_name = "FILE")]
        scenarios: Vec<PathBuf>,
        /// A policy parameter, key=value (repeatable); a scenario's own parameters win.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
        params: Vec<(String, String)>,
        /// Only the PASS/FAIL lines, no traces.
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

pub fn run(cmd: PolicyCommand, data_dir: &Path) -> u8 {
    let registry = match PolicyEngine::new(Limits::default(), Some(data_dir.join("policy-cache"))) {
        Ok(engine) => Registry::new(engine),
        Err(e) => {
            eprintln!("error: cannot start the WebAssembly engine: {e:#}");
            return exit::FAILED;
        }
    };
    match cmd {
        PolicyCommand::List { json } => list(&registry, json),
        PolicyCommand::Check { file, params } => check(&registry, &file, &params),
        PolicyCommand::Test {
            policy,
            scenarios,
            params,
            quiet,
        } => test(&registry, &policy, &scenarios, &params, quiet),
        PolicyCommand::Encode { input, output } => encode(&registry, &input, &output),
        // Dispatched to the daemon client before we get here.
        PolicyCommand::Reload { .. } => exit::BAD_INPUT,
    }
}

fn list(registry: &Registry, json: bool) -> u8 {
    for name in Registry::builtin_names() {
        let policy = match registry.resolve(name, &[]) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        };
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
            println!("{line}");
        } else {
            println!(
                "{}  ({}, {})",
                policy.name,
                policy.source,
                short_hash(&policy.hash)
            );
            println!("  {}", policy.info.description);
            for p in &policy.info.params {
                println!(
                    "    {:<22} {:>8}  {}",
                    p.name, p.default_value, p.description
                );
            }
            println!();
        }
    }
    exit::OK
}

fn check(registry: &Registry, file: &Path, params: &[(String, String)]) -> u8 {
    let policy = match Policy::from_file(registry.engine(), file, params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let fallback = match registry.fallback_for(params) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    let (ran, skipped) = match sim::check_contract(&policy, &fallback) {
        Ok(counts) => counts,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return exit::BAD_INPUT;
        }
    };
    println!(
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
    exit::OK
}

fn test(
    registry: &Registry,
    spec: &str,
    files: &[PathBuf],
    params: &[(String, String)],
    quiet: bool,
) -> u8 {
    let policy = match registry.resolve(spec, params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let scenarios = if files.is_empty() {
        Scenario::builtin()
    } else {
        match files.iter().map(|f| Scenario::from_file(f)).collect() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    };
    let fallback = match registry.fallback_for(params) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
    println!(
        "policy {} ({}, {})",
        policy.name,
        policy.source,
        short_hash(&policy.hash)
    );
    let started = Instant::now();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for scenario in &scenarios {
        let report = match sim::run(&policy, &fallback, scenario, Mode::Expect) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILED;
            }
        };
        print_report(&report, quiet);
        match (&report.not_applicable, report.passed()) {
            (Some(_), _) => skipped += 1,
            (None, true) => passed += 1,
            (None, false) => failed += 1,
        }
    }
    let na = if skipped > 0 {
        format!(", {skipped} not applicable")
    } else {
        String::new()
    };
    println!(
        "\n{passed} passed, {failed} failed{na} ({} ms wall time)",
        started.elapsed().as_millis()
    );
    if failed == 0 { exit::OK } else { exit::FAILED }
}

fn print_report(report: &Report, quiet: bool) {
    if let Some(why) = &report.not_applicable {
        println!("\nN/A   {}: {why}", report.scenario);
        return;
    }
    if !quiet {
        println!("\n== {}: {}", report.scenario, report.description);
        let several = report.rounds.len() > 1;
        for (i, round) in report.rounds.iter().enumerate() {
            if several {
                println!("  -- round {} --", i + 1);
            }
            for line in &round.trace {
                println!("  {line}");
            }
        }
    }
    let summary = report
        .final_round()
        .map(|r| match r.status {
            Status::Pinned | Status::LocalFallback => {
                format!("{} on {}", r.status, r.confirmed.join(", "))
            }
            Status::Failed => format!("failed: {}", r.reason.as_deref().unwrap_or("?")),
        })
        .unwrap_or_default();
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    println!(
        "{verdict}  {}: {summary} after {} virtual",
        report.scenario,
        format_ms(report.virtual_ms())
    );
    for failure in &report.failures {
        println!("      - {failure}");
    }
}

fn encode(registry: &Registry, input: &Path, output: &Path) -> u8 {
    let module = match std::fs::read(input) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {}: cannot read: {e}", input.display());
            return exit::BAD_INPUT;
        }
    };
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|enc| enc.validate(true).encode());
    let component = match component {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: {}: cannot encode as a component (built with wit-bindgen against wit/policy.wit?): {e:#}",
                input.display()
            );
            return exit::BAD_INPUT;
        }
    };
    // Only a component that loads as a policy is worth writing.
    let label = output.display().to_string();
    let source = crate::policy::Source::File(output.to_path_buf());
    if let Err(e) = Policy::from_bytes(registry.engine(), &label, source, &component, &[]) {
        eprintln!(
            "error: {} encodes, but not as a policy: {e}",
            input.display()
        );
        return exit::BAD_INPUT;
    }
    let tmp = output.with_extension("wasm.tmp");
    if let Err(e) = std::fs::write(&tmp, &component).and_then(|()| std::fs::rename(&tmp, output)) {
        eprintln!("error: {}: cannot write: {e}", output.display());
        return exit::FAILED;
    }
    println!("wrote {} ({} bytes)", output.display(), component.len());
    exit::OK
}

fn short_hash(hash: &str) -> String {
    hash.chars().take("sha256:".len() + 16).collect()
}
