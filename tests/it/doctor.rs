//! `pinwarden doctor` on real Kubo nodes (issue 13): a healthy topology is all OK (exit 0);
//! a refused node, a wrong token and a backup that cannot reach the primary each FAIL with a
//! hint (exit 1). Faults come from the fault proxy: a Kubo-style token check, and a primary
//! whose `id` announces swarm addresses nobody can dial.

use crate::support::cli::Pinwarden;
use crate::support::nodes::{ISOLATED, MESH, shared_cluster};
use crate::support::{FaultProxy, Mode};
use serde_json::Value;
use std::path::Path;

/// Runs `pinwarden doctor --json` on `config` (TOML); returns the exit code and the report.
async fn doctor(dir: &Path, config: &str, env: &[(&str, &str)]) -> (i32, Value, String) {
    let path = dir.join("pinwarden.toml");
    std::fs::write(&path, config).expect("write config");
    let run = |json: bool| {
        let cli = Pinwarden::new()
            .current_dir(dir)
            .arg("--config")
            .arg(&path)
            .arg("doctor")
            .args(["--timeout", "5s"])
            .envs(env.iter().copied());
        let cli = if json { cli.arg("--json") } else { cli };
        cli.run_async()
    };
    let json = run(true).await;
    let text = run(false).await;
    assert_eq!(
        json.status.code(),
        text.status.code(),
        "--json changes the exit"
    );
    let report: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&json.stdout),
            String::from_utf8_lossy(&json.stderr)
        )
    });
    let code = json.status.code().expect("exit code");
    (
        code,
        report,
        String::from_utf8_lossy(&text.stdout).into_owned(),
    )
}

/// The level of `subject`'s `check`, with its detail and hint.
fn level<'a>(report: &'a Value, subject: &str, check: &str) -> (&'a str, &'a str, &'a str) {
    let found = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["subject"] == subject && c["check"] == check)
        .unwrap_or_else(|| panic!("no {subject} {check} check in {report:#}"));
    (
        found["level"].as_str().unwrap_or_default(),
        found["detail"].as_str().unwrap_or_default(),
        found["hint"].as_str().unwrap_or_default(),
    )
}

fn node(name: &str, role: &str, url: &str, extra: &str) -> String {
    format!("[[node]]\nname = \"{name}\"\nrole = \"{role}\"\nurl = \"{url}\"\n{extra}\n")
}

#[tokio::test]
async fn a_healthy_topology_is_all_ok() {
    let cluster = shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // backup-1 sits behind a node that wants a token, and is given the right one.
    let guarded = FaultProxy::start(&cluster.api_url(MESH[1]))
        .await
        .expect("proxy");
    guarded.set_mode(Mode::RequireToken("s3cret".into())).await;
    let config = format!(
        "data_dir = \"data\"\n[local_fallback]\nenabled = true\n\n{}{}{}{}",
        node("primary", "primary", &cluster.api_url(MESH[0]), ""),
        node(
            "backup-1",
            "backup",
            &guarded.url(),
            "bearer_token_env = \"DOCTOR_TOKEN\""
        ),
        node("backup-2", "backup", &cluster.api_url(MESH[2]), ""),
        node("local", "local", &cluster.api_url(ISOLATED), ""),
    );
    let (code, report, text) = doctor(dir.path(), &config, &[("DOCTOR_TOKEN", "s3cret")]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["ok"], true, "{report:#}");
    for c in report["checks"].as_array().expect("checks") {
        assert_eq!(c["level"], "ok", "{c}\n{text}");
    }
    for name in ["primary", "backup-1", "backup-2", "local"] {
        for check in ["reachable", "auth", "version", "disk"] {
            level(&report, name, check);
        }
    }
    let (_, version, _) = level(&report, "primary", "version");
    assert!(
        version.starts_with("Kubo 0.43.1 (agent kubo/0.43.1"),
        "{version}"
    );
    let (_, auth, _) = level(&report, "backup-1", "auth");
    assert_eq!(auth, "credentials accepted");
    assert!(
        guarded
            .authorizations()
            .iter()
            .all(|a| a.as_deref() == Some("Bearer s3cret"))
    );
    // The shared nodes are a full mesh: the backups are connected already, and doctor says so
    // rather than claim a dial.
    let (_, provider, _) = level(&report, "backup-2", "provider");
    assert!(
        provider.starts_with("connected to the primary")
            || provider.starts_with("dials the primary"),
        "{provider}"
    );
    level(&report, "data-dir", "writable");
    let (_, policy, _) = level(&report, "policy", "loadable");
    assert!(policy.starts_with("tank-mode (built-in)"), "{policy}");
    // Doctor reads; it creates no data directory of its own.
    assert!(!dir.path().join("data").exists());
    // One line per check, then the summary.
    let checks = report["checks"].as_array().map_or(0, Vec::len);
    assert_eq!(text.lines().count(), checks + 1, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("OK ") || l.ends_with("0 FAIL")),
        "{text}"
    );
}

#[tokio::test]
async fn refused_wrong_token_and_an_unreachable_primary_each_fail_with_a_hint() {
    let cluster = shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The primary is the isolated node, announcing swarm addresses nobody can dial: backups
    // cannot connect to it (and the isolated node stays isolated).
    let walled = FaultProxy::start(&cluster.api_url(ISOLATED))
        .await
        .expect("proxy");
    walled.set_mode(Mode::UnreachableSwarm).await;
    let guarded = FaultProxy::start(&cluster.api_url(MESH[2]))
        .await
        .expect("proxy");
    guarded.set_mode(Mode::RequireToken("right".into())).await;
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let config = format!(
        "data_dir = \"data\"\n\n{}{}{}{}",
        node("primary", "primary", &walled.url(), ""),
        node("backup-1", "backup", &cluster.api_url(MESH[1]), ""),
        node(
            "backup-2",
            "backup",
            &guarded.url(),
            "bearer_token = \"wrong\""
        ),
        node("backup-3", "backup", &refused, ""),
    );
    let (code, report, text) = doctor(dir.path(), &config, &[]).await;
    assert_eq!(code, 1, "{text}");
    assert_eq!(report["ok"], false);

    let (lvl, detail, hint) = level(&report, "backup-1", "provider");
    assert_eq!(lvl, "fail", "{detail}");
    assert!(detail.contains("cannot connect to the primary"), "{detail}");
    assert!(hint.contains("swarm"), "{hint}");

    assert_eq!(level(&report, "backup-2", "reachable").0, "ok");
    let (lvl, detail, hint) = level(&report, "backup-2", "auth");
    assert_eq!(lvl, "fail", "{detail}");
    assert!(
        detail.contains("HTTP 403") && detail.contains("Access Denied"),
        "{detail}"
    );
    assert!(hint.contains("backup-2"), "{hint}");

    let (lvl, detail, hint) = level(&report, "backup-3", "reachable");
    assert_eq!(lvl, "fail", "{detail}");
    assert!(detail.contains("unreachable"), "{detail}");
    assert!(hint.contains(&refused), "{hint}");

    // The primary itself answers: its own checks pass.
    assert_eq!(level(&report, "primary", "reachable").0, "ok");
    assert_eq!(level(&report, "backup-1", "version").0, "ok");
    // Each failure is one line with its hint.
    let fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 3, "{text}");
    assert!(fails.iter().all(|l| l.contains("(hint: ")), "{text}");
    assert!(text.ends_with("3 FAIL\n"), "{text}");
}

#[tokio::test]
async fn a_bad_policy_parameter_and_an_unwritable_data_dir_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").expect("write");
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let config = format!(
        "data_dir = \"{}\"\n[policy]\nname = \"tank-mode\"\n[policy.params]\nattempts = \"zero\"\n\n{}",
        blocker.join("data").display(),
        node("primary", "primary", &refused, ""),
    );
    let (code, report, text) = doctor(dir.path(), &config, &[]).await;
    assert_eq!(code, 1, "{text}");
    let (lvl, detail, _) = level(&report, "policy", "loadable");
    assert_eq!(lvl, "fail");
    assert!(detail.contains("attempts"), "{detail}");
    let (lvl, detail, _) = level(&report, "data-dir", "writable");
    assert_eq!(lvl, "fail", "{detail}");
}
