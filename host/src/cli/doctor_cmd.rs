//! `pinwarden doctor`: the effective configuration's topology, checked before the first video.

use super::context::{CliError, CliResult, Context, exit};
use super::output::{out, outln};
use crate::doctor::{self, Options};
use clap::Args;
use std::time::Duration;

#[derive(Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct DoctorArgs {
    /// One JSON object on stdout: {"ok": bool, "checks": [{subject, check, level, detail, hint}]}.
    #[arg(long)]
    pub json: bool,
    /// Warn when a node's repository uses more than this share of its StorageMax.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub disk_warn_percent: u8,
    /// Bound of each call to a node (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

const AFTER_HELP: &str = "\
Checks, one line each (OK, WARN, or FAIL with the reason and a hint):
  every node     reachable (its API answers), auth (credentials accepted), version (Kubo or
                 js-ipfs, which version), disk (repo/stat: usage against StorageMax)
  every backup   provider: it can connect to the primary's swarm addresses (backups fetch the
                 video from the primary over bitswap; this opens that connection)
  local          present when the local fallback is enabled
  data-dir       writable, and free space on its file system
  policy         loadable with its configured parameters

Exit status: 0 no check failed (warnings allowed), 1 a check failed, 2 the configuration
itself cannot be read.";

pub fn run(cx: &Context, args: &DoctorArgs) -> CliResult {
    let config = cx.config(&[])?;
    let opts = Options {
        disk_warn_percent: args.disk_warn_percent,
        timeout: args.timeout,
        ..Options::default()
    };
    let report = cx.block_on(doctor::examine(&config, &opts))?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&report).map_err(CliError::failed)?
        );
    } else {
        out!("{}", doctor::render(&report));
    }
    Ok(if report.ok { exit::OK } else { exit::FAILED })
}
