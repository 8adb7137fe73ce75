//! Every command resolves the data directory, socket and paths the same way (issue 9): client
//! commands honour --data-dir / PINWARDEN_DATA_DIR without a config file, read-only policy
//! commands create no ./data, `policy reload FILE` means the caller's FILE, and every reload
//! is counted in /metrics.

use crate::support::cli::Pinwarden;
use crate::support::daemon::{Daemon, Serve};
use crate::support::policies::TANK_MODE;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn pinwarden(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Pinwarden::new()
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .run()
}

/// `pinwarden serve --data-dir DATA` started in `cwd`, with no config file but the one `cwd`
/// holds and `node` as its primary; its log is `cwd/serve.log`.
fn serve(cwd: &Path, data: &Path, node: &str) -> Serve {
    let cli = Pinwarden::new()
        .current_dir(cwd)
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .env("IPFS_PRIMARY_API", node);
    Serve::new(cli, data.join("pinwarden.sock"), cwd.join("serve.log"))
}

/// [`serve`] with a primary that refuses connections (no job is submitted), up.
async fn start(cwd: &Path, data: &Path) -> Daemon {
    serve(cwd, data, "http://127.0.0.1:9").start().await
}

/// A temporary root with two working directories: `daemon` (where the daemon is started) and
/// `caller` (where a client command runs).
fn two_places() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let (served_from, caller) = (root.path().join("daemon"), root.path().join("caller"));
    for dir in [&served_from, &caller] {
        std::fs::create_dir(dir).expect("mkdir");
    }
    (root, served_from, caller)
}

#[tokio::test]
async fn client_commands_find_the_daemon_through_the_data_dir() {
    let (root, served_from, caller) = two_places();
    let data = root.path().join("state");
    let daemon = start(&served_from, &data).await;
    let data_arg = data.display().to_string();

    // No pinwarden.toml where the caller stands: --data-dir alone must lead to the socket.
    let out = pinwarden(&caller, &["jobs", "--data-dir", &data_arg], &[]);
    assert!(
        out.status.success(),
        "jobs --data-dir: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and so must the environment variable.
    let out = pinwarden(
        &caller,
        &["status", "nope"],
        &[("PINWARDEN_DATA_DIR", &data_arg)],
    );
    assert_eq!(out.status.code(), Some(2), "404 is the caller's mistake");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no job or CID 'nope'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without either, the caller's ./data is asked (and nothing answers there).
    let out = pinwarden(&caller, &["jobs"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"));
    drop(daemon);
}

#[tokio::test]
async fn reload_reads_the_callers_relative_path_and_is_counted() {
    let (root, served_from, caller) = two_places();
    // The file exists only relative to the caller, not to the daemon's working directory, and
    // the daemon loads policy files from the caller's directory only (daemon.policy_dir).
    std::fs::write(caller.join("mine.wasm"), TANK_MODE).expect("write policy");
    std::fs::write(served_from.join("elsewhere.wasm"), TANK_MODE).expect("write policy");
    std::fs::write(
        served_from.join("pinwarden.toml"),
        format!("[daemon]\npolicy_dir = \"{}\"\n", caller.display()),
    )
    .expect("config");
    let data = root.path().join("state");
    let daemon = start(&served_from, &data).await;
    let socket = daemon.socket().display().to_string();

    let out = pinwarden(
        &caller,
        &["policy", "reload", "mine.wasm", "--socket", &socket],
        &[],
    );
    assert!(
        out.status.success(),
        "policy reload mine.wasm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("reloaded: tank-mode"));
    let health = daemon.api().health().await.expect("health");
    assert!(
        health.policy.source.ends_with("caller/mine.wasm"),
        "{}",
        health.policy.source
    );
    // A component outside daemon.policy_dir is refused, however it is named.
    let outside = served_from.join("elsewhere.wasm").display().to_string();
    let out = pinwarden(
        &caller,
        &["policy", "reload", &outside, "--socket", &socket],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "refused as bad input");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("daemon.policy_dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The CLI's reload goes through the daemon's counted path, like SIGHUP does.
    let metrics = daemon.api().metrics().await.expect("metrics");
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("pinwarden_policy_reloads_total{") && l.contains("ok"))
        .unwrap_or_else(|| panic!("no reload counter in:\n{metrics}"));
    assert!(counted.ends_with(" 1"), "{counted}");
    assert!(
        metrics.contains("pinwarden_policy_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );
}

#[test]
fn read_only_policy_commands_create_no_data_dir() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = pinwarden(cwd.path(), &["policy", "list"], &[]);
    assert!(out.status.success());
    let out = pinwarden(cwd.path(), &["policy", "test", "tank-mode", "--quiet"], &[]);
    assert!(out.status.success());
    assert!(
        !cwd.path().join("data").exists(),
        "policy list/test created ./data"
    );
}

/// A reader that stops early (`pinwarden completions bash | head -c 16`) ends the command
/// quietly: exit status 0 and no panic on stderr, for every command that prints. Each runs
/// twice: into a pipe closed after a few bytes were read, and into one closed before the
/// command starts (its first write fails, every time: `println!` used to panic there).
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let commands: &[&[&str]] = &[
        &["completions", "bash"],
        &["man"],
        &["policy", "list"],
        &["policy", "test", "tank-mode"],
        &["fallback", "stats"],
        &["config", "show"],
    ];
    for args in commands {
        for read_first in [true, false] {
            let stderr_file = cwd.path().join("stderr");
            let stderr = std::fs::File::create(&stderr_file).expect("stderr file");
            let (mut reader, writer) = std::io::pipe().expect("pipe");
            let pinwarden = Pinwarden::new()
                .current_dir(cwd.path())
                .args(*args)
                .env("IPFS_PRIMARY_API", "http://127.0.0.1:9");
            if !read_first {
                drop(reader);
                let child = pinwarden.spawn_with(writer, stderr);
                assert_quiet(args, "closed before it started", child, &stderr_file);
                continue;
            }
            // The child then holds the only write end.
            let child = pinwarden.spawn_with(writer, stderr);
            let mut first = [0u8; 16];
            std::io::Read::read_exact(&mut reader, &mut first).expect("the first bytes");
            drop(reader);
            assert_quiet(args, "closed after 16 bytes", child, &stderr_file);
        }
    }
}

/// Waits (bounded) for `child`, then asserts it exited 0 without a panic.
fn assert_quiet(args: &[&str], how: &str, mut child: std::process::Child, stderr_file: &Path) {
    let mut status = None;
    for _ in 0..600 {
        status = child.try_wait().expect("wait");
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("pinwarden {args:?}, stdout {how}: still running after 30 s");
    };
    let stderr = std::fs::read_to_string(stderr_file).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(0),
        "pinwarden {args:?}, stdout {how}: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "pinwarden {args:?}, stdout {how}: {stderr}"
    );
}

/// Two daemons on one data directory: the second is refused (exit 2) before it touches the
/// queue, naming the directory and the first one's pid; the first keeps serving.
#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("state");
    let first = start(root.path(), &data).await;
    let out = Pinwarden::new()
        .current_dir(root.path())
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .arg("--socket")
        .arg(root.path().join("other.sock"))
        .env("IPFS_PRIMARY_API", "http://127.0.0.1:9")
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&data.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert!(!root.path().join("other.sock").exists());
    first
        .api()
        .health()
        .await
        .expect("the first daemon still serves");
}

/// Issue 12, item 1, as reported: a lazy job, then a blocking one, on one CID whose only node
/// refuses. The blocking caller gets the failed round (exit 1); the pin stays queued for the
/// lazy job and is retried, never `failed` for good.
#[tokio::test]
async fn a_blocking_submit_does_not_end_a_lazy_pin() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("state");
    // One attempt per round, lazy retries 50 ms apart, no local fallback.
    std::fs::write(
        root.path().join("pinwarden.toml"),
        "[policy]\nparams = { attempts = 1 }\n[daemon]\nretry_base_ms = 50\nretry_max_ms = 100\n",
    )
    .expect("config");
    let daemon = start(root.path(), &data).await;
    let socket = daemon.socket().display().to_string();
    let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let submit = |job: &str, wait: bool| {
        let mut args = vec!["submit", cid, "--job-id", job, "--socket", &socket];
        if wait {
            args.push("--wait");
        }
        pinwarden(root.path(), &args, &[])
    };
    assert!(submit("lazy-A", false).status.success());
    let out = submit("block-B", true);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the blocking caller hears the failed round: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("job json");
    assert_eq!(answer["state"], "queued", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("CRITICAL"))
    );
    // The lazy job's pin goes on being retried.
    let api = daemon.api();
    let mut rounds = 0;
    for _ in 0..100 {
        let row = api.status("lazy-A").await.expect("status");
        assert_ne!(row.state, pinwarden::queue::State::Failed, "{row:?}");
        rounds = row.failed_rounds;
        if rounds >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rounds >= 3,
        "still retried after the blocking answer ({rounds} rounds)"
    );
    // Cancelling the blocking job id leaves the lazy job's pin alone.
    let row = api.cancel("block-B").await.expect("cancel");
    assert_eq!(row.state, pinwarden::queue::State::Queued, "{row:?}");
    assert_eq!(row.job_ids, ["lazy-A"]);
}

/// Issue 12, item 4: SIGTERM while a client waits on a pin that cannot finish. The client is
/// answered 503 (the job is still queued), the daemon exits within its grace period, and the
/// interrupted pin is there again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_waiting_clients_and_exits_promptly() {
    // A "node" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = format!("http://{}", silent.local_addr().expect("addr"));
    silent.set_nonblocking(true).expect("nonblocking");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((stream, _)) = silent.accept() {
                    held.push(stream);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("state");
    let mut daemon = serve(root.path(), &data, &node).start().await;
    let api = daemon.api();
    let waiting = tokio::spawn(async move {
        let request = pinwarden::daemon::wire::SubmitRequest {
            cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
            job_id: "enc-waiting".into(),
            size_bytes: 0,
            wait: true,
            timeout_ms: None,
            notify: None,
        };
        api.submit(&request).await
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    daemon.signal("-TERM");
    let answer = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting client is answered, not left hanging")
        .expect("task");
    match answer {
        Err(pinwarden::client::ClientError::Api { status, message }) => {
            assert_eq!(status.as_u16(), 503, "{message}");
            assert!(message.contains("still queued"), "{message}");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let exited = daemon.wait_for_exit(Duration::from_secs(30)).await;
    assert_eq!(exited.code(), Some(0), "exited by itself");
    // The interrupted pin is queued again on the next start.
    daemon.restart();
    let api = daemon.api();
    daemon
        .wait_until(
            "the restarted daemon answers for enc-waiting",
            Duration::from_secs(10),
            || {
                let api = &api;
                async move { api.status("enc-waiting").await.is_ok() }
            },
        )
        .await;
    let row = api
        .status("enc-waiting")
        .await
        .expect("the job survived the restart");
    assert!(!row.state.is_final(), "{row:?}");
    drop(daemon);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    holder.join().expect("holder");
}

/// A small tmpfs, unmounted when dropped (CI runs as root, as the brief's machines do).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI and the dev machines run as root)"
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the file system; returns the filler to delete to free it again.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        for _ in 0..100_000 {
            if file
                .write_all(&chunk)
                .and_then(|()| file.sync_all())
                .is_err()
            {
                break;
            }
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Issue 12, item 3: the disk fills up while a round runs. Recording its end fails; the daemon
/// says so and keeps trying instead of leaving the pin `pinning` until a restart; submissions
/// meanwhile get a clear error; when space returns, the round's end is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_a_rounds_record_but_loses_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("state");
    let disk = Tmpfs::mount(&data, "4m");
    // A node that accepts and never answers, so the round is still running when the disk fills.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = format!("http://{}", silent.local_addr().expect("addr"));
    std::fs::write(
        root.path().join("pinwarden.toml"),
        "[policy]\nparams = { attempts = 1, pin_timeout_ms = 2000, stall_timeout_ms = 2000 }\n",
    )
    .expect("config");
    let daemon = serve(root.path(), &data, &node).start().await;
    let api = daemon.api();
    let submit = |job: &str| pinwarden::daemon::wire::SubmitRequest {
        cid: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        job_id: job.into(),
        size_bytes: 0,
        wait: false,
        timeout_ms: None,
        notify: None,
    };
    api.submit(&submit("enc-1")).await.expect("submit");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let filler = disk.fill();
    // While full: a submission is refused with a clear error (nothing half-written).
    let refused = api.submit(&submit("enc-2")).await;
    match refused {
        Err(pinwarden::client::ClientError::Api { status, message }) => {
            assert_eq!(status.as_u16(), 500, "{message}");
            assert!(message.to_lowercase().contains("full"), "{message}");
        }
        other => panic!("expected a clear error on a full disk, got {other:?}"),
    }
    // The round ends (2 s pin timeout) but cannot be recorded: the daemon says so and waits.
    daemon
        .wait_until(
            "the daemon says it cannot record the end of a round",
            Duration::from_secs(10),
            || std::future::ready(daemon.log().contains("cannot record the end of a round")),
        )
        .await;
    assert_eq!(
        api.status("enc-1").await.expect("status").state,
        pinwarden::queue::State::Pinning
    );
    // Space returns: the end of the round is recorded (lazy: queued again, one failed round).
    std::fs::remove_file(&filler).expect("free space");
    let mut row = None;
    for _ in 0..200 {
        let r = api.status("enc-1").await.expect("status");
        if r.failed_rounds >= 1 {
            row = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = row.expect("the round's end was recorded once space returned");
    assert_eq!(row.state, pinwarden::queue::State::Queued, "{row:?}");
    assert!(
        api.submit(&submit("enc-2")).await.is_ok(),
        "submissions work again"
    );
    drop(daemon);
    drop(silent);
    drop(disk);
}
