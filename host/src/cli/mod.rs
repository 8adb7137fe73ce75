//! The command line. Exit status: 0 success; 1 the operation failed (a pin, a scenario);
//! 2 bad input or configuration.

//!
//! This layer only parses and prints: [`context`] resolves configuration the same way for
//! every command and maps one error type to the exit statuses; `output` prints, and ends a
//! command quietly when its reader has gone; the work is the library's.

pub mod context;
mod daemon_cmd;
mod doctor_cmd;
mod fallback_cmd;
mod nodes_cmd;
mod output;
mod package_cmd;
mod pin_cmd;
mod policy_cmd;
mod rounds_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use context::Context;
pub use context::exit;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pinwarden",
    version,
    about = "Bulletproof IPFS pinning: sandboxed WebAssembly policies decide, pinwarden pins and verifies.",
    after_help = "Exit status: 0 success, 1 the operation failed (retryable), 2 bad input or configuration."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(clap::Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML). Default: ./pinwarden.toml when present. The seeds' variables
    /// (IPFS_PRIMARY_API, IPFS_BACKUP_APIS, IPFS_LOCAL_API, ENABLE_LOCAL_FALLBACK,
    /// LOCAL_FALLBACK_THRESHOLD, NODE_NAME) override it; a command's --param overrides both.
    #[arg(long, global = true, env = "PINWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// State directory (queue database, journal, compiled-policy cache). Default: the config's
    /// data_dir, else ./data.
    #[arg(long, global = true, env = "PINWARDEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (-v: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Upload a directory once to the primary and print its root CID (--pin: then pin it).
    Add(pin_cmd::AddArgs),
    /// Pin a CID under the configured policy and wait for the verdict.
    /// Exit 0 pinned and verified on the required nodes, 1 failed (CRITICAL, retryable), 2 bad input.
    Pin(pin_cmd::PinArgs),
    /// Run the daemon: HTTP/JSON on a Unix socket, the durable lazy-pin queue, live policy swaps
    /// (SIGHUP, `policy reload`, or an edit of the policy file).
    Serve(daemon_cmd::ServeArgs),
    /// Hand a CID to the daemon: queued at once (lazy), or --wait for the verdict.
    Submit(daemon_cmd::SubmitArgs),
    /// A job's state, by job id or CID, from the daemon.
    Status(daemon_cmd::StatusArgs),
    /// List the daemon's jobs, optionally by state.
    Jobs(daemon_cmd::JobsArgs),
    /// Each node's health as the ledger remembers it: failures in a row, last success and
    /// failure, recent success rate, pin time, and its circuit breaker.
    #[command(after_long_help = nodes_cmd::after_help())]
    Nodes(nodes_cmd::NodesArgs),
    /// Check the configured topology before the first video: each node reachable, credentials
    /// accepted, version, disk usage; each backup able to reach the primary; the local node,
    /// data directory and policy. Exit 0 all OK or WARN, 1 a check failed.
    Doctor(doctor_cmd::DoctorArgs),
    /// Show the effective configuration (file, environment, defaults), secrets masked.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List, validate, simulate and encode pinning policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Inspect and migrate the local-fallback journal (data/local-fallback-pins.jsonl).
    #[command(subcommand)]
    Fallback(fallback_cmd::FallbackCommand),
    /// The round records (data/rounds): what every decision of every round saw and answered.
    /// `policy replay` asks a candidate policy the same questions.
    #[command(subcommand)]
    Rounds(rounds_cmd::RoundsCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(package_cmd::CompletionsArgs),
    /// Print the man page (roff), or write one per command with --out-dir.
    Man(package_cmd::ManArgs),
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML.
    Show,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::install_crypto_provider();
    let g = &cli.global;
    // Pins report progress (node, attempt n/N, waits, verification) on stderr by default.
    let chatty = matches!(
        cli.command,
        Command::Add(_) | Command::Pin(_) | Command::Serve(_)
    );
    init_logging(g.log_format, g.verbose, chatty);
    let cx = Context::new(g);
    let result = match cli.command {
        Command::Add(args) => pin_cmd::add(&cx, args),
        Command::Pin(args) => pin_cmd::pin(&cx, args),
        Command::Config(ConfigCommand::Show) => pin_cmd::config_show(&cx),
        Command::Serve(args) => daemon_cmd::serve(&cx, args),
        Command::Submit(args) => daemon_cmd::submit(&cx, args),
        Command::Status(args) => daemon_cmd::status(&cx, args),
        Command::Jobs(args) => daemon_cmd::jobs(&cx, args),
        Command::Nodes(args) => nodes_cmd::run(&cx, &args),
        Command::Doctor(args) => doctor_cmd::run(&cx, &args),
        Command::Policy(policy_cmd::PolicyCommand::Reload { policy, socket }) => {
            daemon_cmd::reload(&cx, policy, socket.as_deref())
        }
        Command::Policy(policy_cmd::PolicyCommand::Shadow {
            policy,
            params,
            report,
            off,
            json,
            socket,
        }) => daemon_cmd::shadow(
            &cx,
            daemon_cmd::ShadowAsk {
                policy,
                params,
                report,
                off,
                json,
            },
            socket.as_deref(),
        ),
        Command::Policy(policy_cmd::PolicyCommand::Promote { socket }) => {
            daemon_cmd::promote(&cx, socket.as_deref())
        }
        Command::Fallback(cmd) => fallback_cmd::run(&cx, cmd),
        Command::Rounds(cmd) => rounds_cmd::run(&cx, cmd),
        Command::Completions(args) => package_cmd::completions(&args),
        Command::Man(args) => package_cmd::man(&args),
        Command::Policy(cmd) => policy_cmd::run(&cx, cmd),
    };
    ExitCode::from(result.unwrap_or_else(|e| {
        eprintln!("error: {}", e.message);
        e.code
    }))
}

fn init_logging(format: LogFormat, verbose: u8, chatty: bool) {
    let default = match (verbose, chatty) {
        (0, false) => "warn",
        (0, true) => "warn,pinwarden=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // Humans read this: no module paths, colour only on a terminal.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `key=value` for `--param`.
pub fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}
