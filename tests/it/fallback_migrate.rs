//! `pinwarden fallback stats|migrate` as an operator runs it: the real binary against two real
//! Kubo daemons, a local node holding fallback pins and a permanent node: two nodes of the
//! shared cluster's mesh (never its isolated node: `migrate` connects the permanent node to
//! the local one). A single test runs the cases in order, on fresh content.
//!
//! Needs Kubo built by `scripts/setup.sh`.

use crate::support::cli::Pinwarden;
use crate::support::nodes::{MESH, ghost_cid, shared_cluster, step};
use crate::support::{IpfsCluster, XorShift, make_hls_dir};
use futures::FutureExt;
use pinwarden::Outcome;
use pinwarden::journal::{self, ContentKind, Entry, Journal};
use pinwarden::kubo::KuboClient;
use pinwarden::node::Node;
use serde_json::Value;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Any single run of the binary.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Adds one file (chunked: several blocks) to a node and pins it; returns its CID.
async fn add_file(api: &str, len: usize) -> String {
    let mut data = vec![0u8; len];
    XorShift::seeded().fill(&mut data);
    let part = reqwest::multipart::Part::bytes(data)
        .file_name("clip.mp4")
        .mime_str("application/octet-stream")
        .expect("mime");
    let form = reqwest::multipart::Form::new().part("file", part);
    let body = reqwest::Client::new()
        .post(format!(
            "{api}/api/v0/add?cid-version=1&raw-leaves=true&pin=true&cid-base=base32"
        ))
        .multipart(form)
        .send()
        .await
        .expect("add")
        .text()
        .await
        .expect("add reply");
    let reply: Value = serde_json::from_str(body.trim()).expect("add reply is JSON");
    match reply["Hash"].as_str() {
        Some(hash) => hash.to_string(),
        None => panic!("add: no Hash in the reply: {body}"),
    }
}

/// The operator's shell: the binary, a data directory, nothing inherited that could change the
/// outcome (config, data dir, local node, token, log filter), run from an empty directory.
struct Shell {
    cwd: tempfile::TempDir,
    data_dir: PathBuf,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Shell {
    fn new() -> Shell {
        let cwd = tempfile::tempdir().expect("tempdir");
        let data_dir = cwd.path().join("data");
        Shell { cwd, data_dir }
    }

    fn journal(&self) -> PathBuf {
        journal::journal_path(&self.data_dir)
    }

    fn migrated(&self) -> PathBuf {
        journal::migrated_path(&self.journal())
    }

    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let cli = Pinwarden::new()
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .current_dir(self.cwd.path())
            .envs(env.iter().copied());
        let out = tokio::time::timeout(RUN_LIMIT, cli.run_async())
            .await
            .unwrap_or_else(|_| panic!("pinwarden {args:?} ran longer than {RUN_LIMIT:?}"));
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        // Shown with --nocapture, and by the harness when the test fails.
        eprintln!("$ pinwarden {}\n{run}", args.join(" "));
        run
    }
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_stats_and_migrate_against_js_ipfs() {
    let t0 = Instant::now();
    let cluster = shared_cluster().await;
    step(t0, "shared Kubo nodes ready");
    let result = AssertUnwindSafe(cases(&cluster, t0)).catch_unwind().await;
    if let Err(panic) = result {
        eprintln!("{}", cluster.logs());
        std::panic::resume_unwind(panic);
    }
}

async fn cases(cluster: &IpfsCluster, t0: Instant) {
    let local_url = cluster.api_url(MESH[1]);
    let permanent_url = cluster.api_url(MESH[2]);
    let local = KuboClient::new("local", &local_url, None).expect("client");
    let permanent = KuboClient::new("permanent", &permanent_url, None).expect("client");
    let with_local = [("IPFS_LOCAL_API", local_url.as_str())];

    // --- content that fell back: two HLS directories and a file, pinned on the local node ---
    let (_a_tmp, a_dir) = make_hls_dir("hls-a", 1 << 20, 4).expect("test data");
    let (_b_tmp, b_dir) = make_hls_dir("hls-b", 512 << 10, 3).expect("test data");
    let a = local.add_dir(&a_dir).await.expect("add a");
    let b = local.add_dir(&b_dir).await.expect("add b");
    let c = add_file(&local_url, 600 << 10).await;
    let cids = [a.clone(), b.clone(), c.clone()];
    for cid in &cids {
        // `add` pins on Kubo; pin explicitly, as the local fallback does.
        assert_eq!(
            local.pin(cid, Duration::from_secs(30)).await,
            Outcome::Ok,
            "{cid}"
        );
        assert_eq!(local.verify(cid).await, Outcome::Ok, "{cid} pinned locally");
    }
    step(t0, "content added and pinned on the local node");

    // --- the journal, as the daemon writes it, with a crash's torn line at the end ---
    let sh = Shell::new();
    let journal_file = sh.journal();
    {
        let journal = Journal::open(&journal_file).expect("open journal");
        let now = SystemTime::now();
        let entries = [
            (&a, "job-1", 1 << 20, ContentKind::Directory),
            (&b, "job-2", 512 << 10, ContentKind::Directory),
            (&c, "job-3", 600 << 10, ContentKind::File),
            // The same content falling back twice is one CID to migrate.
            (&a, "job-1-again", 1 << 20, ContentKind::Directory),
        ];
        for (cid, job, size, kind) in entries {
            let e = Entry::new(cid.as_str(), job, size, kind, 3, "encoder-node-1", now);
            journal.append(&e).expect("append");
        }
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal_file)
        .expect("journal")
        .write_all(br#"{"hash":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","job_id":"jo"#)
        .expect("torn line");
    let journal_bytes = read_bytes(&journal_file);

    // --- stats ---
    let run = sh.run(&["fallback", "stats", "--json"], &[]).await;
    assert_eq!(run.code, 0, "{run}");
    let s = run.json();
    assert_eq!(s["entries"], 4, "{s}");
    assert_eq!(s["distinct_cids"], 3, "{s}");
    assert_eq!(s["pending"], 3, "{s}");
    assert_eq!(s["migrated"], 0, "{s}");
    assert_eq!(s["total_mb"], 2.1, "1.0 + 0.5 + 0.6 MB: {s}");
    assert_eq!(s["problems"].as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s["problems"][0]["line"], 5, "{s}");
    let run = sh.run(&["fallback", "stats"], &[]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("entries:   4 (3 distinct CIDs"),
        "{run}"
    );
    assert!(run.stdout.contains("torn last line"), "{run}");
    step(t0, "stats: 4 entries, 3 CIDs, 1 torn line");

    // --- dry run: says what it would do, changes nothing ---
    let migrate_args = [
        "fallback",
        "migrate",
        "--to",
        &permanent_url,
        "--unpin-local",
        "--stall-timeout",
        "30s",
    ];
    let dry: Vec<&str> = migrate_args
        .iter()
        .copied()
        .chain(["--dry-run", "--json"])
        .collect();
    let run = sh.run(&dry, &with_local).await;
    assert_eq!(run.code, 0, "{run}");
    let d = run.json();
    assert_eq!(d["would_migrate"].as_array().map(Vec::len), Some(3), "{d}");
    assert!(!sh.migrated().exists(), "a dry run writes no record");
    assert_eq!(read_bytes(&journal_file), journal_bytes);
    assert_eq!(permanent.verify(&a).await, Outcome::NotPinned);
    assert_eq!(local.verify(&a).await, Outcome::Ok);
    step(t0, "dry run changed nothing");

    // --- migrate: pinned, verified and complete on the permanent node, unpinned locally ---
    let json_run: Vec<&str> = migrate_args.iter().copied().chain(["--json"]).collect();
    let run = sh.run(&json_run, &with_local).await;
    assert_eq!(run.code, 0, "{run}");
    let m = run.json();
    assert_eq!(m["migrated"].as_array().map(Vec::len), Some(3), "{m}");
    assert_eq!(m["failed"].as_array().map(Vec::len), Some(0), "{m}");
    assert_eq!(m["skipped_already_migrated"], 0, "{m}");
    for cid in &cids {
        assert_eq!(
            permanent.verify(cid).await,
            Outcome::Ok,
            "{cid} on permanent"
        );
        assert_eq!(
            permanent.check_retrievable(cid).await,
            Outcome::Ok,
            "{cid} complete on permanent"
        );
        assert_eq!(
            local.verify(cid).await,
            Outcome::NotPinned,
            "{cid} unpinned locally"
        );
    }
    let records = journal::read_migrations(&sh.migrated()).expect("records");
    assert!(records.problems.is_empty(), "{:?}", records.problems);
    let mut hashes: Vec<&str> = records.records.iter().map(|r| r.hash.as_str()).collect();
    hashes.sort_unstable();
    let mut expected: Vec<&str> = cids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(hashes, expected);
    for r in &records.records {
        assert!(r.verified && r.unpinned_local, "{r:?}");
        assert_eq!(r.migrated_to, permanent_url);
        assert!(journal::parse_timestamp(&r.migrated_at).is_some(), "{r:?}");
    }
    assert_eq!(
        read_bytes(&journal_file),
        journal_bytes,
        "the journal is never rewritten"
    );
    step(t0, "migrated 3 CIDs, local pins removed");

    // --- re-run: nothing to do ---
    let migrated_bytes = read_bytes(&sh.migrated());
    let run = sh.run(&migrate_args, &with_local).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("nothing to do"), "{run}");
    assert_eq!(read_bytes(&sh.migrated()), migrated_bytes);
    let s = sh.run(&["fallback", "stats", "--json"], &[]).await.json();
    assert_eq!(
        (s["pending"].clone(), s["migrated"].clone()),
        (0.into(), 3.into()),
        "{s}"
    );
    assert_eq!(s["pending_mb"].to_string(), "0.0", "{s}");
    step(t0, "re-run: nothing to do");

    // --- a local pin that cannot be removed (the local node holds the blocks but no pin): the
    //     CID is still migrated, and the record says the local pin was not removed ---
    let d = add_file(&local_url, 300 << 10).await;
    if local.verify(&d).await == Outcome::Ok {
        local.pin_rm(&d).await.expect("pin_rm");
    }
    assert_eq!(local.verify(&d).await, Outcome::NotPinned);
    Journal::open(&journal_file)
        .expect("open journal")
        .append(&Entry::new(
            d.as_str(),
            "job-4",
            300 << 10,
            ContentKind::File,
            3,
            "encoder-node-1",
            SystemTime::now(),
        ))
        .expect("append after a torn line");
    let run = sh.run(&json_run, &with_local).await;
    assert_eq!(run.code, 0, "an unpin failure does not fail the run: {run}");
    let m = run.json();
    assert_eq!(m["migrated"][0]["hash"], d.as_str(), "{m}");
    assert_eq!(m["migrated"][0]["unpinned_local"], false, "{m}");
    assert_eq!(m["unpin_failures"][0]["hash"], d.as_str(), "{m}");
    assert!(
        m["unpin_failures"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not pinned")),
        "{m}"
    );
    assert_eq!(m["skipped_already_migrated"], 3, "{m}");
    assert_eq!(permanent.verify(&d).await, Outcome::Ok);
    let records = journal::read_migrations(&sh.migrated()).expect("records");
    let last = records.records.last().expect("a record");
    assert_eq!(
        (last.hash.as_str(), last.unpinned_local),
        (d.as_str(), false)
    );
    let migrated_bytes = read_bytes(&sh.migrated());
    step(t0, "unpin failure: migrated, recorded unpinned_local=false");

    // --- content nobody has: fails fast, is listed, stays pending ---
    let ghost = ghost_cid();
    Journal::open(&journal_file)
        .expect("open journal")
        .append(&Entry::new(
            ghost.as_str(),
            "job-ghost",
            1 << 20,
            ContentKind::Directory,
            3,
            "encoder-node-1",
            SystemTime::now(),
        ))
        .expect("append");
    let started = Instant::now();
    let run = sh
        .run(
            &[
                "fallback",
                "migrate",
                "--to",
                &permanent_url,
                "--stall-timeout",
                "2s",
                "--pin-timeout",
                "5s",
            ],
            &with_local,
        )
        .await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.stdout.contains("migrated 0, failed 1, skipped 4"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("{ghost} (job-ghost): pin: stalled")),
        "{run}"
    );
    assert_eq!(
        read_bytes(&sh.migrated()),
        migrated_bytes,
        "no record for a failure"
    );
    let s = sh.run(&["fallback", "stats", "--json"], &[]).await.json();
    assert_eq!(s["entries"], 6, "{s}");
    assert_eq!(s["pending"], 1, "{s}");
    assert_eq!(s["migrated"], 4, "{s}");
    // The torn line was closed by the next append: now a bad line in the middle, still reported.
    assert_eq!(s["problems"].as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s["problems"][0]["line"], 5, "{s}");
    step(t0, "unavailable CID: failed fast, still pending");

    // --- dry run with a pending failure: lists it, changes nothing ---
    let run = sh.run(&dry, &with_local).await;
    assert_eq!(run.code, 0, "{run}");
    let d = run.json();
    assert_eq!(d["would_migrate"][0]["hash"], ghost.as_str(), "{d}");
    assert_eq!(d["skipped_already_migrated"], 4, "{d}");
    assert_eq!(read_bytes(&sh.migrated()), migrated_bytes);

    // --- bad input: exit 2, nothing touched ---
    let run = sh
        .run(&["fallback", "migrate", "--to", "ftp://nowhere"], &[])
        .await;
    assert_eq!(run.code, 2, "{run}");
    let run = sh
        .run(
            &["fallback", "migrate", "--to", &local_url, "--unpin-local"],
            &with_local,
        )
        .await;
    assert_eq!(run.code, 2, "migrating to the local node itself: {run}");
    assert!(run.stderr.contains("the local node itself"), "{run}");
    let run = sh
        .run(
            &[
                "fallback",
                "migrate",
                "--to",
                &permanent_url,
                "--unpin-local",
            ],
            &[],
        )
        .await;
    assert_eq!(run.code, 2, "--unpin-local without a local node: {run}");
    let not_a_dir = sh.cwd.path().join("file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let run = Shell {
        cwd: tempfile::tempdir().expect("tempdir"),
        data_dir: not_a_dir,
    }
    .run(&["fallback", "stats"], &[])
    .await;
    assert_eq!(run.code, 2, "{run}");
    assert_eq!(read_bytes(&sh.migrated()), migrated_bytes);
    step(t0, "bad input: exit 2");
}
