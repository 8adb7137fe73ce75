//! Micro-benchmarks of the policy engine and the queue (criterion): `cargo bench -p pinwarden
//! --bench policy`. Results and targets are recorded in BENCHMARKS.md.
//!
//! * `decide/*`: one `decide` call of the built-in tank-mode policy through wasm (a round's
//!   [`Session`], which sends the guest only the event that changed since its previous call)
//!   versus the same Rust code compiled natively (`tank_mode::TankMode`), on the same data:
//!   the first decision (no history), a mid-job history of 6 events, a long one of 17 events
//!   and the worst case of the default budget (44 events: every attempt on three nodes
//!   refuted). `wasm-whole-history` is a new instance's first decision (the whole history
//!   sent: after a policy swap or a containment). `native-owned-args` is the native call as
//!   the guest's WIT glue makes it (owned copies of the arguments, the kit keeping the
//!   history, settings read back from `configure`).
//! * `session/instantiate+configure`: what every job pays before its first decision;
//!   `session/call-floor-configure-empty`: the fixed cost of any call into the sandbox.
//! * `simulate/all-builtin-scenarios`: the simulator over every built-in scenario.
//! * `queue/submit`: durable enqueue of distinct CIDs into the SQLite queue (WAL).
//!
//! Under `cargo test --all-targets` this binary runs each benchmark once (criterion's test
//! mode): no IPFS node is needed and it takes a few seconds.

use criterion::{Criterion, Throughput};
use pinwarden::policy::engine::SandboxLimits;
use pinwarden::policy::{Policy, PolicyEngine, Registry, Session};
use pinwarden::queue::{Queue, Submission};
use pinwarden::sim::{self, Mode, Scenario};
use policy_kit::Policy as _;
use std::hint::black_box;
use std::time::Duration;
use tank_mode::TankMode;

/// Decision time at which every history below is asked about (ms since the round started).
const NOW_MS: u64 = 7_000;
const CID: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

/// Builds the benchmark inputs with the types of one side of the WIT contract. The host's
/// bindgen types and the guest's are distinct Rust types with the same names and fields, so
/// the same expressions produce the same data on both sides.
macro_rules! inputs {
    ($t:path) => {{
        use $t as t;
        let job = t::Job {
            cid: CID.to_string(),
            job_id: "encoder-job-42".to_string(),
            size_bytes: 26_214_400,
            lazy: false,
            failed_rounds: 0,
        };
        // Every health field set: the largest node record a decision receives.
        let health = |failures: u32| t::NodeHealth {
            consecutive_failures: failures,
            since_last_ok_ms: Some(120_000),
            since_last_failure_ms: Some(4_000),
            since_last_start_ms: Some(3_000),
            recent_ok: 20 - failures.min(20),
            recent_total: 20,
            pin_latency_ms: Some(1_800),
            in_flight: 1,
            since_last_progress_ms: Some(400),
        };
        let node = |name: &str, role: t::Role, failures: u32| t::Node {
            name: name.to_string(),
            role,
            health: health(failures),
            kind: t::NodeKind::Kubo,
            replication: 1,
        };
        let nodes = vec![
            node("primary", t::Role::Primary, 2),
            node("backup-1", t::Role::Backup, 0),
            node("backup-2", t::Role::Backup, 0),
        ];
        let ev = |action: t::Action, outcome: t::Outcome, start: u64, end: u64| t::Event {
            action,
            outcome: Some(outcome),
            started_ms: start,
            ended_ms: Some(end),
        };
        let pin = |node: &str| {
            t::Action::Pin(t::PinRequest {
                node: node.to_string(),
                timeout_ms: 300_000,
                stall_timeout_ms: 60_000,
            })
        };
        let verify = |node: &str| t::Action::Verify(node.to_string());
        let wait = |ms: u64, node: &str| {
            t::Action::Wait(t::WaitRequest {
                ms,
                node: Some(node.to_string()),
            })
        };
        // Mid-job: the primary claimed a pin that `pin ls` did not show, backed off, pinned
        // again, and this time verification and the retrievability check passed. The decision
        // is `succeed(["primary"])`.
        let mid = vec![
            ev(pin("primary"), t::Outcome::Ok, 0, 800),
            ev(verify("primary"), t::Outcome::NotPinned, 800, 820),
            ev(wait(2_000, "primary"), t::Outcome::Ok, 820, 2_820),
            ev(pin("primary"), t::Outcome::Ok, 2_820, 3_620),
            ev(verify("primary"), t::Outcome::Ok, 3_620, 3_640),
            ev(
                t::Action::CheckRetrievable("primary".to_string()),
                t::Outcome::Ok,
                3_640,
                3_660,
            ),
        ];
        // Long: the primary lied five times (pin ok, verify not-pinned, backoff), then
        // backup-1 got its provider hint, pinned and verified. The decision is
        // `check-retrievable("backup-1")`.
        // Every attempt on `node` claimed ok and was refuted by `pin ls`, with the backoffs in
        // between; a backup first gets its provider hint.
        let exhaust = |history: &mut Vec<t::Event>, node: &str, mut at: u64| -> u64 {
            if node != "primary" {
                history.push(ev(
                    t::Action::Connect(t::ConnectRequest {
                        node: node.to_string(),
                        provider: "primary".to_string(),
                    }),
                    t::Outcome::Ok,
                    at,
                    at + 5,
                ));
                at += 5;
            }
            for attempt in 1..=5u64 {
                history.push(ev(pin(node), t::Outcome::Ok, at, at + 800));
                history.push(ev(verify(node), t::Outcome::NotPinned, at + 800, at + 820));
                at += 820;
                if attempt < 5 {
                    let ms = (2_000u64 << (attempt - 1)).min(30_000);
                    history.push(ev(wait(ms, node), t::Outcome::Ok, at, at + ms));
                    at += ms;
                }
            }
            at
        };
        // Long: the primary lied five times, then backup-1 got its provider hint, pinned and
        // verified. The decision is `check-retrievable("backup-1")`.
        let mut long = Vec::new();
        let at = exhaust(&mut long, "primary", 0);
        long.push(ev(
            t::Action::Connect(t::ConnectRequest {
                node: "backup-1".to_string(),
                provider: "primary".to_string(),
            }),
            t::Outcome::Ok,
            at,
            at + 5,
        ));
        long.push(ev(pin("backup-1"), t::Outcome::Ok, at + 5, at + 805));
        long.push(ev(verify("backup-1"), t::Outcome::Ok, at + 805, at + 825));
        // Worst case of the default budget: every attempt on all three nodes refuted. The
        // decision is `fail("CRITICAL: ...")`.
        let mut worst = Vec::new();
        let mut at = 0;
        for node in ["primary", "backup-1", "backup-2"] {
            at = exhaust(&mut worst, node, at);
        }
        (job, nodes, mid, long, worst)
    }};
}

fn registry() -> Registry {
    Registry::new(PolicyEngine::new(SandboxLimits::default(), None).expect("wasmtime engine"))
}

fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// `history` with its last event's end moved by `ms`: the same decision, but one event that
/// differs from what a session holds (one action ended since the previous call).
macro_rules! nudged {
    ($history:expr, $ms:expr) => {{
        let mut h = $history.clone();
        if let Some(last) = h.last_mut() {
            last.ended_ms = last.ended_ms.map(|e| e + $ms);
        }
        h
    }};
}

fn bench_decide(c: &mut Criterion, policy: &Policy) {
    let (job, nodes, mid, long, worst) = inputs!(pinwarden::policy::contract);
    let (n_job, n_nodes, n_mid, n_long, n_worst) = inputs!(policy_kit::bindings);
    let settings = policy_kit::Settings::defaults(TankMode::PARAMS);

    let (empty, n_empty) = (Vec::new(), Vec::new());
    for (label, history, n_history) in [
        ("first-0-events", &empty, &n_empty),
        ("mid-job-6-events", &mid, &n_mid),
        ("long-17-events", &long, &n_long),
        ("worst-44-events", &worst, &n_worst),
    ] {
        // A round's session, as the executor has it: it holds the history up to the previous
        // decision, and the last event has just ended. Each iteration sends one changed event
        // (alternating between two ends of the last event, 1 ms apart).
        let mut session: Session = policy.session().expect("session");
        let (a, b) = (nudged!(history, 0), nudged!(history, 1));
        // Both sides must take the same decision, or the comparison means nothing.
        let wasm = session.decide(&job, &nodes, &a, NOW_MS).expect("decide");
        let again = session.decide(&job, &nodes, &b, NOW_MS).expect("decide");
        let native = TankMode::decide(&settings, &n_job, &n_nodes, n_history, NOW_MS);
        assert_eq!(format!("{wasm:?}"), format!("{native:?}"), "{label}");
        assert_eq!(
            wasm, again,
            "{label}: a 1 ms later end changes the decision"
        );

        let mut group = c.benchmark_group(format!("decide/{label}"));
        let mut flip = false;
        group.bench_function("wasm", |bench| {
            bench.iter(|| {
                flip = !flip;
                let h = if flip { &a } else { &b };
                session
                    .decide(black_box(&job), black_box(&nodes), black_box(h), NOW_MS)
                    .expect("decide")
            })
        });
        // A new instance's first decision: the whole history crosses into the sandbox (after
        // a live policy swap or a containment; a round's first decision has no history).
        group.bench_function("wasm-whole-history", |bench| {
            bench.iter_batched(
                || policy.session().expect("session"),
                |mut fresh| {
                    let decided = fresh
                        .decide(
                            black_box(&job),
                            black_box(&nodes),
                            black_box(history),
                            NOW_MS,
                        )
                        .expect("decide");
                    // Returned, so the instance is dropped outside the measurement.
                    (fresh, decided)
                },
                criterion::BatchSize::SmallInput,
            )
        });
        group.bench_function("native", |bench| {
            bench.iter(|| {
                TankMode::decide(
                    black_box(&settings),
                    black_box(&n_job),
                    black_box(&n_nodes),
                    black_box(n_history),
                    NOW_MS,
                )
            })
        });
        // The native call as the WIT glue makes it inside the guest: owned arguments (what
        // the canonical ABI lifts into guest memory: the job, the nodes, one changed event),
        // the kit keeping the history, and the settings read from `configure`.
        let last = n_history.len().saturating_sub(1);
        let change = |ms: u64| -> Vec<policy_kit::HistoryChange> {
            nudged!(n_history, ms)
                .into_iter()
                .enumerate()
                .skip(last)
                .map(|(i, event)| policy_kit::HistoryChange {
                    index: i as u32,
                    event,
                })
                .collect()
        };
        let whole: Vec<policy_kit::HistoryChange> = n_history
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, event)| policy_kit::HistoryChange {
                index: i as u32,
                event,
            })
            .collect();
        policy_kit::with_history(whole, |_| ());
        let (ca, cb) = (change(0), change(1));
        let mut flip = false;
        group.bench_function("native-owned-args", |bench| {
            bench.iter(|| {
                flip = !flip;
                <TankMode as policy_kit::bindings::Guest>::decide(
                    black_box(n_job.clone()),
                    black_box(n_nodes.clone()),
                    black_box(if flip { ca.clone() } else { cb.clone() }),
                    NOW_MS,
                )
            })
        });
        group.finish();
    }
}

fn bench_session(c: &mut Criterion, policy: &Policy) {
    c.bench_function("session/instantiate+configure", |b| {
        b.iter(|| policy.session().expect("session"))
    });
    // The floor of any call into the sandbox: `configure` with no parameters (an empty list in,
    // `ok` out) on a live instance: deadline, entry and exit, post-return.
    let mut session = policy.session().expect("session");
    c.bench_function("session/call-floor-configure-empty", |b| {
        b.iter(|| session.configure(black_box(&[])).expect("configure"))
    });
}

fn bench_simulate(c: &mut Criterion, policy: &Policy, fallback: &Policy) {
    let scenarios = Scenario::builtin();
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    println!(
        "simulate: {} built-in scenarios per iteration",
        scenarios.len()
    );
    group.bench_function("all-builtin-scenarios", |b| {
        b.iter(|| {
            for scenario in &scenarios {
                let report = sim::run(policy, fallback, scenario, Mode::Expect).expect("simulate");
                assert!(
                    report.passed(),
                    "{}: {:?}",
                    report.scenario,
                    report.failures
                );
            }
        })
    });
    group.finish();
}

/// A valid-looking CIDv1 (raw, sha2-256) for `i`; the queue only needs distinct strings.
fn cid_for(i: u64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(i.to_le_bytes());
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).expect("sha2-256 digest");
    cid::Cid::new_v1(0x55, hash).to_string()
}

fn bench_queue(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(&dir.path().join("queue.db")).expect("queue");
    let mut next = 0u64;
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("submit", |b| {
        b.iter(|| {
            next += 1;
            let submission = Submission {
                cid: cid_for(next),
                job_id: format!("job-{next}"),
                size_bytes: 26_214_400,
                lazy: true,
                notify_url: None,
            };
            queue
                .submit(&submission, 1_700_000_000_000)
                .expect("submit")
        })
    });
    group.finish();
}

fn main() {
    let mut c = criterion();
    let registry = registry();
    let policy = registry.resolve("tank-mode", &[]).expect("tank-mode");
    let fallback = registry.fallback_for(&[]).expect("fallback");

    bench_decide(&mut c, &policy);
    bench_session(&mut c, &policy);
    bench_simulate(&mut c, &policy, &fallback);
    bench_queue(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}

/// Prints the figures BENCHMARKS.md records (ratios against their baselines, targets), read
/// back from criterion's estimates of this run.
fn summary() {
    let Some(dir) = criterion_dir() else {
        return;
    };
    let mean_ns = |id: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        // The slope of time over iterations where criterion fitted one (what it prints), else
        // the mean.
        v["slope"]["point_estimate"]
            .as_f64()
            .or_else(|| v["mean"]["point_estimate"].as_f64())
    };
    println!("\n== summary (criterion's estimates; targets from issue 5)");
    for label in [
        "first-0-events",
        "mid-job-6-events",
        "long-17-events",
        "worst-44-events",
    ] {
        let group = format!("decide_{label}");
        if let (Some(w), Some(n), Some(o), Some(whole)) = (
            mean_ns(&format!("{group}/wasm")),
            mean_ns(&format!("{group}/native")),
            mean_ns(&format!("{group}/native-owned-args")),
            mean_ns(&format!("{group}/wasm-whole-history")),
        ) {
            println!(
                "decide {label}: wasm {:.2} µs, native {:.2} µs, native with owned args {:.2} µs; \
                 wasm/native {:.2}x [target <= 5 µs: {}; <= 3x native: {}]; \
                 a new instance's first decision (whole history) {:.2} µs",
                w / 1e3,
                n / 1e3,
                o / 1e3,
                w / n,
                verdict(w <= 5_000.0),
                verdict(w / n <= 3.0),
                whole / 1e3,
            );
        }
    }
    if let Some(s) = mean_ns("session_instantiate+configure") {
        println!("session instantiate+configure: {:.2} µs", s / 1e3);
    }
    if let Some(s) = mean_ns("session_call-floor-configure-empty") {
        println!(
            "floor of a call into the sandbox (configure, no params): {:.2} µs",
            s / 1e3
        );
    }
    if let Some(s) = mean_ns("simulate/all-builtin-scenarios") {
        println!(
            "simulate all {} built-in scenarios: {:.2} ms [target <= 100 ms: {}]",
            Scenario::builtin().len(),
            s / 1e6,
            verdict(s <= 100e6)
        );
    }
    if let Some(q) = mean_ns("queue/submit") {
        let per_s = 1e9 / q;
        println!(
            "queue submit: {:.1} µs/job = {per_s:.0} jobs/s [target >= 2,000/s: {}]",
            q / 1e3,
            verdict(per_s >= 2_000.0)
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// `<target>/criterion`, where criterion keeps its estimates (`CARGO_TARGET_DIR` if set, else
/// the target directory this bench binary was built into).
fn criterion_dir() -> Option<std::path::PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => std::path::PathBuf::from(t),
        // <target>/release/deps/policy-<hash>
        None => std::env::current_exe()
            .ok()?
            .parent()?
            .parent()?
            .parent()?
            .to_path_buf(),
    };
    let dir = target.join("criterion");
    dir.is_dir().then_some(dir)
}
