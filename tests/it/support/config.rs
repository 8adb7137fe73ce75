//! Configuration files for the daemons and commands the tests start.

use std::fmt::Write as _;
use std::path::Path;

/// Writes `<dir>/pinwarden.toml`: the data directory `dir`, node name `encoder-node-1`, one
/// `[[node]]` per (name, role, url), then `rest` (the `[policy]`, `[daemon]`... tables the
/// test needs, verbatim).
pub fn write(dir: &Path, nodes: &[(&str, &str, &str)], rest: &str) {
    let mut text = format!(
        "data_dir = \"{}\"\nnode_name = \"encoder-node-1\"\n",
        dir.display()
    );
    for (name, role, url) in nodes {
        let _ = write!(
            text,
            "\n[[node]]\nname = \"{name}\"\nurl = \"{url}\"\nrole = \"{role}\"\n"
        );
    }
    text.push('\n');
    text.push_str(rest);
    std::fs::write(dir.join("pinwarden.toml"), text).expect("write pinwarden.toml");
}

/// Variables pinwarden reads over its config file: none may leak in from the caller's shell.
pub const OVERRIDES: &[&str] = &[
    "IPFS_PRIMARY_API",
    "IPFS_BACKUP_APIS",
    "IPFS_LOCAL_API",
    "ENABLE_LOCAL_FALLBACK",
    "LOCAL_FALLBACK_THRESHOLD",
    "NODE_NAME",
    "PINWARDEN_POLICY",
    "PINWARDEN_CONFIG",
    "PINWARDEN_DATA_DIR",
];

/// Starts `pinwarden serve --config <dir>/pinwarden.toml` with `args` after it, none of the
/// [`OVERRIDES`] but those in `env`, `RUST_LOG=info`, and stdout and stderr appended to
/// `<dir>/serve.log` (kept across restarts).
pub fn spawn_serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .expect("serve.log");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_pinwarden"));
    serve
        .arg("serve")
        .arg("--config")
        .arg(dir.join("pinwarden.toml"))
        .args(args);
    for var in OVERRIDES {
        serve.env_remove(var);
    }
    serve
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("serve.log"))
        .stderr(log)
        .spawn()
        .expect("spawn pinwarden serve")
}
