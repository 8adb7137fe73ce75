//! What an operator installs beside the binary (issue 13): shell completions and man pages
//! generated from the clap definitions, the systemd unit (checked by `systemd-analyze verify`)
//! and the Grafana dashboard (every query names a metric the daemon exposes).

use crate::support::cli::{BINARY, Pinwarden};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pinwarden(args: &[&str]) -> Output {
    Pinwarden::new().args(args).run()
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

#[test]
fn the_systemd_unit_verifies_and_its_command_line_parses() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/pinwarden.service"))
        .expect("deploy/systemd/pinwarden.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/pinwarden "))
        .expect("ExecStart=/usr/local/bin/pinwarden ...");
    for line in [
        "User=pinwarden",
        "Restart=on-failure",
        "RuntimeDirectory=pinwarden",
        "StateDirectory=pinwarden",
        "EnvironmentFile=-/etc/pinwarden/pinwarden.env",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    // wasmtime maps compiled policies executable: this setting would stop every policy.
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("MemoryDenyWriteExecute=yes"))
    );
    // The unit as installed, pointing at the binary under test (verify wants it executable).
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("pinwarden.service");
    std::fs::write(
        &local,
        unit.replace(
            "ExecStart=/usr/local/bin/pinwarden ",
            &format!("ExecStart={BINARY} "),
        ),
    )
    .expect("write unit");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .expect("systemd-analyze is required (Debian: apt-get install systemd)");
    assert!(verify.status.success(), "{verify:?}");
    // verify exits 0 on an unknown key or a bad value, and says so on stderr.
    assert_eq!(
        String::from_utf8_lossy(&verify.stderr).trim(),
        "",
        "{verify:?}"
    );
    // ExecStart's arguments are ones `pinwarden serve` accepts.
    let mut args: Vec<&str> = exec.split_whitespace().collect();
    args.push("--help");
    let parsed = pinwarden(&args);
    assert!(parsed.status.success(), "{exec}: {parsed:?}");
}

#[test]
fn the_environment_file_names_variables_pinwarden_reads() {
    let env = std::fs::read_to_string(repo().join("deploy/systemd/pinwarden.env"))
        .expect("deploy/systemd/pinwarden.env");
    let mut vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for seed in [
        "IPFS_PRIMARY_API",
        "IPFS_BACKUP_APIS",
        "ENABLE_LOCAL_FALLBACK",
        "LOCAL_FALLBACK_THRESHOLD",
    ] {
        assert!(
            vars.iter().any(|(k, _)| k == seed),
            "the env file lacks {seed}"
        );
    }
    // Every example, uncommented, is read: `config show` reflects each one.
    // Secrets are never shown (the webhook key is checked when `serve` starts).
    vars.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "RUST_LOG" | "PINWARDEN_TOKEN" | "SUPERNODE_TOKEN" | "PINWARDEN_NOTIFY_SECRET"
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Pinwarden::new()
        .current_dir(dir.path())
        .args(["config", "show"])
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .run();
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    for (key, value) in &vars {
        // What each variable sets, as `config show` prints it.
        let first = value.split(',').next().unwrap_or(value);
        let expected = match key.as_str() {
            "IPFS_PRIMARY_API" | "IPFS_BACKUP_APIS" | "IPFS_LOCAL_API" => {
                format!("url = \"{first}\"")
            }
            "ENABLE_LOCAL_FALLBACK" => format!("enabled = {value}"),
            "LOCAL_FALLBACK_THRESHOLD" => format!("threshold = {value}"),
            "NODE_NAME" => format!("node_name = \"{value}\""),
            "PINWARDEN_POLICY" => format!("name = \"{value}\""),
            other => panic!("the env file names {other}: add what it sets to this test"),
        };
        assert!(
            shown.lines().any(|l| l.trim() == expected),
            "{key}={value}: no line `{expected}` in the effective configuration:\n{shown}"
        );
    }
    // The policy's example value is the default: prove the variable is read at all.
    let out = Pinwarden::new()
        .current_dir(dir.path())
        .args(["config", "show"])
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PINWARDEN_POLICY", "single-backup")
        .run();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown
            .lines()
            .any(|l| l.trim() == "name = \"single-backup\""),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
