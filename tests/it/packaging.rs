//! What an operator installs beside the binary (issue 13): shell completions and man pages
//! generated from the clap definitions, the systemd unit (checked by `systemd-analyze verify`)
//! and the Grafana dashboard (every query names a metric the daemon exposes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn pinwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinwarden"))
        .args(args)
        .env_remove("PINWARDEN_CONFIG")
        .env_remove("PINWARDEN_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run pinwarden")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every top-level command of the CLI's definition.
fn commands() -> Vec<String> {
    use clap::CommandFactory;
    let commands: Vec<String> = pinwarden::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(commands.len() > 10, "{commands:?}");
    commands
}

#[test]
fn completions_cover_every_command_and_bash_parses_them() {
    let commands = commands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = pinwarden(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        for command in &commands {
            assert!(script.contains(command.as_str()), "{shell} lacks {command}");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pinwarden.bash");
    std::fs::write(&file, pinwarden(&["completions", "bash"]).stdout).expect("write");
    let parsed = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(parsed.status.success(), "{parsed:?}");
    // Loaded into a shell, it completes `pinwarden do` to `doctor`.
    let script = format!(
        "source {}; COMP_WORDS=(pinwarden do); COMP_CWORD=1; _pinwarden pinwarden do pinwarden; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let completed = Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash");
    assert_eq!(String::from_utf8_lossy(&completed.stdout).trim(), "doctor");
    let bad = pinwarden(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tcsh"));
}

#[test]
fn man_pages_render_for_every_command() {
    let page = pinwarden(&["man"]);
    assert!(page.status.success());
    let roff = String::from_utf8_lossy(&page.stdout);
    assert!(roff.contains(".TH pinwarden 1"), "{roff}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pinwarden(&["man", "--out-dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    for command in commands() {
        let file = dir.path().join(format!("pinwarden-{command}.1"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(".TH pinwarden-"), "{}", file.display());
    }
    // groff reads the doctor page without a warning and shows its after-help.
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(dir.path().join("pinwarden-doctor.1"))
        .output()
        .expect("groff");
    assert!(rendered.status.success(), "{rendered:?}");
    assert!(
        String::from_utf8_lossy(&rendered.stderr).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(text.contains("provider"), "{text}");
}
