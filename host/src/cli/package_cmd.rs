//! `pinwarden completions SHELL` and `pinwarden man`: generated from the clap definitions, so
//! they never drift from `--help`.

use super::Cli;
use super::context::{CliError, CliResult, exit};
use super::output;
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_long_help = "\
Install, for example:
  bash: pinwarden completions bash > /etc/bash_completion.d/pinwarden
  zsh:  pinwarden completions zsh > \"${fpath[1]}/_pinwarden\"
  fish: pinwarden completions fish > ~/.config/fish/completions/pinwarden.fish")]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

#[derive(Args)]
#[command(after_long_help = "\
Install, for example: pinwarden man --out-dir /usr/local/share/man/man1 && mandb")]
pub struct ManArgs {
    /// Write pinwarden.1 and one page per command (pinwarden-pin.1, ...) into this directory
    /// instead of printing pinwarden.1 on stdout.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> CliResult {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pinwarden", &mut out);
    output::write(&out);
    Ok(exit::OK)
}

pub fn man(args: &ManArgs) -> CliResult {
    let cmd = Cli::command();
    let Some(dir) = &args.out_dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(CliError::failed)?;
        output::write(&out);
        return Ok(exit::OK);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::bad_input(format!("--out-dir {}: {e}", dir.display())))?;
    clap_mangen::generate_to(cmd, dir)
        .map_err(|e| CliError::failed(format!("writing man pages to {}: {e}", dir.display())))?;
    Ok(exit::OK)
}
