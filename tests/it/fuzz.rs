//! Both HTTP APIs fuzzed against their OpenAPI documents by schemathesis
//! (`scripts/fuzz-api.sh`, installed by `scripts/setup.sh`): examples, boundary cases, random
//! inputs and stateful sequences (a submit, then its get and cancel; a PSA add, then its get,
//! replace and delete). A run fails on any 5xx, an undocumented status or content type, an
//! answer outside its schema, a request outside the schema that was accepted, or one inside it
//! that was refused where the document does not say why (the `cid` that is any string in both
//! documents but must parse as a CID is relaxed by operation, with its reason).
//!
//! One `pinwarden serve` on the shared Kubo nodes, with `/v1` on TCP behind its token and the
//! PSA on its own listener. Rounds are short (one attempt of 2 s, a 1 s stall), so the
//! generated `wait: true` submissions of content nobody has end well inside a request timeout.
//! The seed is fixed: two runs send the same cases, and a failure names the check and a curl
//! line to replay it.

use crate::support::config;
use crate::support::daemon::Serve;
use crate::support::nodes::shared_cluster;
use std::path::Path;
use std::time::Duration;

const ADMIN: &str = "fuzz-admin-token-0123456789";
const USER: &str = "fuzz-user-token-0123456789ab";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `scripts/fuzz-api.sh DOC URL TOKEN`; fails with its output unless it exits 0.
async fn fuzz(doc: &str, url: &str, token: &str, out: &Path, extra: &[&str], config: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(root.join("scripts/fuzz-api.sh"))
        .args([root.join(doc).as_os_str(), url.as_ref(), token.as_ref()])
        .args(extra)
        .env("FUZZ_OUT", out)
        .env("FUZZ_TIMEOUT", "240")
        .env("FUZZ_REQUEST_TIMEOUT", "20")
        .env("FUZZ_MAX_EXAMPLES", "100")
        .env("FUZZ_CONFIG_EXTRA", config)
        // positive_data_acceptance stays on (the script's default skips it): each place where
        // a server is knowingly stricter than its document is relaxed below, by operation.
        .env("FUZZ_EXCLUDE_CHECKS", "use_after_free")
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("fuzz-api.sh ends within its own timeout")
        .expect("run scripts/fuzz-api.sh (scripts/setup.sh installs schemathesis)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!("{text}"); // shown with --nocapture: the cases sent and their outcome
    assert!(
        run.status.success(),
        "fuzzing {doc}: {}\n{text}",
        run.status
    );
    // A run that tested nothing (every answer 401) fails by the script's config; this makes
    // sure the cases did reach the operations.
    assert!(
        text.contains("passed"),
        "fuzzing {doc}: no passed operation\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_hold_to_their_documents() {
    let cluster = shared_cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (psa, tcp) = (free_port(), free_port());
    let tokens = dir.path().join("psa-tokens");
    std::fs::write(&tokens, format!("fuzzer {USER}\n")).expect("tokens");
    config::write(
        dir.path(),
        &[
            ("primary", "primary", &cluster.api_url(0)),
            ("backup-1", "backup", &cluster.api_url(1)),
        ],
        &format!(
            r#"[policy]
name = "tank-mode"
params = {{ attempts = 1, pin_timeout_ms = 2000, stall_timeout_ms = 1000 }}

[daemon]
watch_ms = 0

[psa]
listen = "127.0.0.1:{psa}"
tokens_file = "{}"
"#,
            tokens.display()
        ),
    );
    let daemon = Serve::config(dir.path())
        .args(["--listen", &format!("127.0.0.1:{tcp}")])
        .env("PINWARDEN_TOKEN", ADMIN)
        .start()
        .await;
    // Reloads last and on their own: a generated reload puts other parameters in charge (a
    // 300 s pin timeout, say), under which a generated `wait: true` submission would outlast
    // the request timeout.
    let v1 = format!("http://127.0.0.1:{tcp}");
    // A `wait: true` submission answers 504 when its `timeout_ms` passes before the round ends
    // ("the pin goes on"), as documented; every other 5xx is still a failure.
    // A `cid` the document allows (any string) that is not a CID is a 400, as documented.
    let v1_config = r#"[[operations]]
include-operation-id = "submitPin"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "504"]
"#;
    fuzz(
        "host/openapi.json",
        &v1,
        ADMIN,
        &dir.path().join("fuzz-v1"),
        &[
            "--exclude-operation-id",
            "reloadPolicy",
            "--exclude-operation-id",
            "startShadow",
            "--exclude-operation-id",
            "promoteShadow",
        ],
        v1_config,
    )
    .await;
    fuzz(
        "host/openapi.json",
        &v1,
        ADMIN,
        &dir.path().join("fuzz-v1-reload"),
        // Alone, it has no links to follow: no stateful phase.
        &[
            "--include-operation-id",
            "reloadPolicy",
            "--include-operation-id",
            "startShadow",
            "--include-operation-id",
            "promoteShadow",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        // A well-formed reload (or shadow) of a policy that does not exist, or of parameters
        // the policy refuses, is a documented 422: the daemon keeps its policy; a promote
        // without a shadow is a documented 409.
        r#"[[operations]]
include-operation-id = "reloadPolicy"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "422"]

[[operations]]
include-operation-id = "startShadow"
checks.positive_data_acceptance.expected-statuses = ["2xx", "409", "422"]

[[operations]]
include-operation-id = "promoteShadow"
checks.positive_data_acceptance.expected-statuses = ["2xx", "409", "422"]
"#,
    )
    .await;
    // The spec has no links and its cid is any string: the generated cases would meet only
    // 400s and 404s. Real requests (one pinned, one never pinnable) and real CIDs, bound to
    // the parameters most of the time, let them reach stored requests: get, replace, delete.
    let user = reqwest::Client::new();
    let pinned = crate::support::nodes::upload_tiny(
        &crate::support::nodes::client(&cluster, 0, "primary"),
        "fuzz",
    )
    .await;
    let ghost = crate::support::nodes::ghost_cid();
    let mut ids = Vec::new();
    for cid in [&pinned, &ghost] {
        let reply: serde_json::Value = user
            .post(format!("http://127.0.0.1:{psa}/pins"))
            .bearer_auth(USER)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(
                serde_json::json!({ "cid": cid, "name": "fuzz", "meta": { "app": "fuzz" } })
                    .to_string(),
            )
            .send()
            .await
            .expect("POST /pins")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap_or_default())
            .expect("body");
        ids.push(reply["requestid"].as_str().expect("requestid").to_string());
    }
    let config = format!(
        r#"[dictionaries]
cids = {{ values = ["{pinned}", "{ghost}"] }}
requestids = {{ values = ["{}", "{}"] }}

[parameters]
"body.cid" = {{ dictionary = "cids", probability = 0.7 }}
"path.requestid" = {{ dictionary = "requestids", probability = 0.8 }}

# The spec's cid is any string (its own examples are "QmCIDToBePinned" and "Qm1"): one that
# is not a CID is a 400 naming it, in a body or in the `cid` filter.
[[operations]]
include-name-regex = "^(GET /pins|POST /pins|POST /pins/\\{{requestid\\}})$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]
"#,
        ids[0], ids[1]
    );
    fuzz(
        "docs/psa/openapi.yaml",
        &format!("http://127.0.0.1:{psa}"),
        USER,
        &dir.path().join("fuzz-psa"),
        &[],
        &config,
    )
    .await;
    assert!(
        !daemon.log().contains("panicked"),
        "{}",
        daemon.log_tail(40)
    );
}
