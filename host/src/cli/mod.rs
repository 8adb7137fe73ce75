//! The command line. Exit status: 0 success; 1 the operation failed (a pin, a scenario);
//! 2 bad input or configuration.

mod policy_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit statuses, documented in `--help` and the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
}

#[derive(Parser)]
#[command(
    name = "pinwarden",
    version,
    about = "Bulletproof IPFS pinning: sandboxed WebAssembly policies decide, pinwarden pins and verifies.",
    after_help = "Exit status: 0 success, 1 the operation failed (retryable), 2 bad input or configuration."
)]
pub struct Cli {
    /// State directory (queue database, journal, compiled-policy cache).
    #[arg(
        long,
        global = true,
        env = "PINWARDEN_DATA_DIR",
        default_value = "data"
    )]
    pub data_dir: PathBuf,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// List, validate, simulate and encode pinning policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.verbose);
    let code = match cli.command {
        Command::Policy(cmd) => policy_cmd::run(cmd, &cli.data_dir),
    };
    ExitCode::from(code)
}

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
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
