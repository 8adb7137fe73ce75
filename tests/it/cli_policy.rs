//! `pinwarden policy ...` as an operator runs it: exit statuses and messages.

use crate::support::cli::Pinwarden;
use crate::support::policies::{GUEST_MODULES, HOSTILE, RETRY_TRAP, TANK_MODE};
use std::path::Path;
use std::process::Output;

fn pinwarden(args: &[&str], data_dir: &Path) -> Output {
    Pinwarden::new()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .run()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_shows_builtins_with_hashes_and_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pinwarden(&["policy", "list"], dir.path());
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("tank-mode  (built-in, sha256:"), "{stdout}");
    assert!(
        stdout.contains("single-backup  (built-in, sha256:"),
        "{stdout}"
    );
    for param in [
        "attempts",
        "base_delay_ms",
        "max_delay_ms",
        "quorum",
        "local_fallback_after",
    ] {
        assert!(stdout.contains(param), "{param} missing:\n{stdout}");
    }

    let out = pinwarden(&["policy", "list", "--json"], dir.path());
    let (stdout, _) = text(&out);
    let first: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or_default()).expect("json line");
    assert_eq!(first["name"], "tank-mode");
    assert_eq!(first["source"], "built-in");
    let attempts = first["params"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "attempts"))
        .expect("attempts param");
    assert_eq!(attempts["default"], "5");
    // Built-ins ship precompiled: nothing is compiled, so nothing is written to the cache.
    assert!(
        !dir.path().join("policy-cache").exists(),
        "built-ins were compiled at run time"
    );
}

#[test]
fn test_runs_builtin_scenarios_with_traces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pinwarden(&["policy", "test", "tank-mode"], dir.path());
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("10 passed, 0 failed"), "{stdout}");
    // A job stream prints one line per job and its figures instead of every trace.
    assert!(
        stdout.contains("PASS  supernode-outage: 60 jobs, 60 pinned"),
        "{stdout}"
    );
    assert!(stdout.contains("latency      p50 "), "{stdout}");
    assert!(stdout.contains("while its breaker was open"), "{stdout}");
    assert!(
        stdout.contains("PASS  primary-lies: pinned on backup-1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("NOT PINNED (claimed ok, pin ls disagrees)"),
        "{stdout}"
    );
    assert!(stdout.contains("LAZY PIN FALLBACK"), "{stdout}");

    let out = pinwarden(&["policy", "test", "single-backup", "--quiet"], dir.path());
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("8 passed, 0 failed, 2 not applicable"),
        "{stdout}"
    );
}

#[test]
fn test_with_a_failing_scenario_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("wrong.toml");
    std::fs::write(
        &scenario,
        "name = \"wrong\"\n[[node]]\nname = \"primary\"\nrole = \"primary\"\n[expect]\nstatus = \"failed\"\n",
    )
    .expect("write");
    let s = scenario.to_string_lossy().into_owned();
    let out = pinwarden(
        &["policy", "test", "tank-mode", "--scenario", &s],
        dir.path(),
    );
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  wrong"), "{stdout}");
    assert!(stdout.contains("ended pinned, expected failed"), "{stdout}");
}

#[test]
fn bad_parameters_and_files_exit_2_with_the_problem_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (
            &["policy", "test", "tank-mode", "--param", "attempts=abc"],
            "'attempts'",
        ),
        (
            &["policy", "test", "tank-mode", "--param", "bogus=1"],
            "unknown parameter 'bogus'",
        ),
        (
            &["policy", "test", "single-backup", "--param", "quorum=2"],
            "unknown parameter 'quorum'",
        ),
        (
            &["policy", "test", "no-such-policy"],
            "no-such-policy: cannot read",
        ),
        (
            &[
                "policy",
                "test",
                "tank-mode",
                "--scenario",
                "/nonexistent.toml",
            ],
            "cannot read",
        ),
    ];
    for (args, needle) in cases {
        let out = pinwarden(args, dir.path());
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");
    }
}

#[test]
fn check_accepts_a_good_component_and_names_what_is_wrong_with_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p.to_string_lossy().into_owned()
    };
    let good = write("tank.wasm", TANK_MODE);
    let out = pinwarden(&["policy", "check", &good], dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("valid policy 'tank-mode'"), "{stdout}");

    let hostile = write("hostile.wasm", HOSTILE);
    let core = wat::parse_str("(module)").expect("wat");
    let empty = wat::parse_str("(component)").expect("wat");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![write("notes.txt", b"hello")], "not a WebAssembly file"),
        (
            vec![write("core.wasm", &core)],
            "a core WebAssembly module, not a component",
        ),
        (
            vec![write("empty.wasm", &empty)],
            "does not implement the pinwarden:policy world",
        ),
        (
            vec![
                hostile.clone(),
                "--param".into(),
                "mode=configure-trap".into(),
            ],
            "trap",
        ),
        (
            vec![hostile.clone(), "--param".into(), "mode=trap".into()],
            "fails built-in scenario 'happy-path'",
        ),
        (
            vec![hostile.clone(), "--param".into(), "mode=loop".into()],
            "timeout",
        ),
        (
            vec![good.clone(), "--param".into(), "quorum=0".into()],
            "'quorum'",
        ),
        // No local_fallback_after, so lazy-local-fallback does not apply: only lazy-retries
        // runs a retried round, where this policy traps.
        (
            vec![write("retry-trap.wasm", RETRY_TRAP)],
            "fails built-in scenario 'lazy-retries': policy incident",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["policy".to_string(), "check".to_string()];
        args.extend(extra);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pinwarden(&argv, dir.path());
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {stderr}");
        assert!(stderr.contains(needle), "{argv:?}: {stderr}");
        // A check slower than a second (a loaded machine) says where it is on the way.
        let error: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("checking "))
            .collect();
        assert_eq!(error.len(), 1, "one-line error: {stderr}");
    }

    // A slow but sound policy (5 ms of work per decision) passes, and its check, which takes
    // seconds, says on stderr which built-in scenario it has reached.
    let out = pinwarden(
        &[
            "policy",
            "check",
            &hostile,
            "--param",
            "mode=sluggish",
            "--param",
            "busy=5",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("valid policy 'hostile'"), "{stdout}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("checking ") && l.contains("built-in scenario"))
        .collect();
    assert!(
        progress
            .iter()
            .any(|l| l.contains("of 10 (") && l.ends_with("s so far")),
        "{stderr}"
    );
}

/// PASS, FAIL and N/A lines of a `policy test` run.
fn verdicts(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.starts_with("PASS  ") || l.starts_with("FAIL  ") || l.starts_with("N/A  "))
        .count()
}

#[test]
fn worked_example_encode_check_and_test_a_custom_policy() {
    // The worked example (docs/policies/worked-example.md), step for step (the build script already compiled the
    // example crate to a core module, as `cargo build --target wasm32-unknown-unknown` would).
    let dir = tempfile::tempdir().expect("tempdir");
    let module = Path::new(GUEST_MODULES).join("backups_first.wasm");
    let output = dir.path().join("backups-first.wasm");
    let (m, o) = (module.to_string_lossy(), output.to_string_lossy());
    let out = pinwarden(&["policy", "encode", &m, "-o", &o], dir.path());
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let out = pinwarden(
        &["policy", "check", &o, "--param", "attempts=3"],
        dir.path(),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("valid policy 'backups-first'"), "{stdout}");
    assert!(
        stdout.contains("not applicable"),
        "no quorum parameter: {stdout}"
    );

    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/backups-first/primary-busy.toml"
    );
    let out = pinwarden(&["policy", "test", &o, "--scenario", scenario], dir.path());
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("PASS  primary-busy: pinned on backup-1"),
        "{stdout}"
    );
    // Only the given file ran, and the output says so.
    assert_eq!(verdicts(&stdout), 1, "{stdout}");
    assert!(
        stdout.contains("--builtins adds the built-in scenarios"),
        "{stdout}"
    );
    // With --builtins the built-ins run too. Their [expect] is tank-mode's strategy, which
    // this policy does not follow: some fail, and the output says why `policy check` passed.
    let out = pinwarden(
        &["policy", "test", &o, "--scenario", scenario, "--builtins"],
        dir.path(),
    );
    let (stdout, _) = text(&out);
    assert!(verdicts(&stdout) > 1, "{stdout}");
    assert!(stdout.contains("PASS  primary-busy"), "{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("describe tank-mode's choices") && stdout.contains("policy check"),
        "{stdout}"
    );
    // The same scenario fails tank-mode, which pins on the primary: the expectation bites.
    let out = pinwarden(
        &["policy", "test", "tank-mode", "--scenario", scenario],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));

    let plain = dir.path().join("plain.wasm");
    std::fs::write(&plain, wat::parse_str("(module)").expect("wat")).expect("write");
    let p = plain.to_string_lossy();
    let refused = dir.path().join("refused.wasm");
    let r = refused.to_string_lossy();
    let out = pinwarden(&["policy", "encode", &p, "-o", &r], dir.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not as a policy"), "{stderr}");
    // The message names the input, and says nothing was written: not the file it never wrote
    // as the source of the problem.
    assert!(!refused.exists());
    assert!(
        stderr.contains(&format!("nothing written to {r}"))
            && stderr.matches(r.as_ref()).count() == 1,
        "{stderr}"
    );
}

#[test]
fn the_no_kit_example_policy_builds_checks_and_passes_its_own_scenario() {
    // examples/policies/no-kit: plain wit-bindgen, no policy-kit, built by the build script as
    // `cargo build --target wasm32-unknown-unknown` would (the no-kit path in docs/policies/worked-example.md).
    let dir = tempfile::tempdir().expect("tempdir");
    let module = Path::new(GUEST_MODULES).join("no_kit.wasm");
    let output = dir.path().join("no-kit.wasm");
    let (m, o) = (module.to_string_lossy(), output.to_string_lossy());
    let out = pinwarden(&["policy", "encode", &m, "-o", &o], dir.path());
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let out = pinwarden(&["policy", "check", &o], dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("valid policy 'no-kit'"), "{stdout}");
    // Its own parameter validation is what `configure` answers.
    let out = pinwarden(
        &["policy", "check", &o, "--param", "pin_timeout_ms=5"],
        dir.path(),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pin_timeout_ms: 5 is outside"), "{stderr}");

    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/no-kit/primary-lies.toml"
    );
    let out = pinwarden(&["policy", "test", &o, "--scenario", scenario], dir.path());
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("PASS  no-kit-primary-lies: pinned on backup-1"),
        "{stdout}"
    );
}

#[test]
fn config_show_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pinwarden.toml");
    std::fs::write(
        &file,
        "node_name = \"from-file\"\n[[node]]\nname = \"sn\"\nurl = \"https://supernode.example:5001\"\nrole = \"primary\"\nbasic_user = \"ops\"\nbasic_password = \"hunter2\"\n",
    )
    .expect("write");
    let out = Pinwarden::new()
        .args(["config", "show", "--config"])
        .arg(&file)
        .env(
            "IPFS_BACKUP_APIS",
            "http://127.0.0.1:5002,http://127.0.0.1:5003",
        )
        .env("NODE_NAME", "encoder-node-1")
        .env("LOCAL_FALLBACK_THRESHOLD", "4")
        .run();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("node_name = \"encoder-node-1\""),
        "{stdout}"
    );
    assert!(stdout.contains("backup-2"), "{stdout}");
    assert!(stdout.contains("threshold = 4"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && stdout.contains("***"),
        "{stdout}"
    );

    let out = Pinwarden::new()
        .args(["config", "show", "--config"])
        .arg(&file)
        .env("LOCAL_FALLBACK_THRESHOLD", "three")
        .run();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("LOCAL_FALLBACK_THRESHOLD"), "{stderr}");
}
