//! Tank mode: the seed's bulletproof strategy.
//!
//! Primary first with `attempts` tries and exponential backoff, every claimed pin verified with
//! `pin ls`; then the backups in configured order with the same budget, each hinted to connect
//! to the primary first. Success needs `quorum` nodes pinned, verified and retrievable (with
//! quorum > 1 that many lanes run at once). Everything exhausted: a `CRITICAL` failure that
//! stays retryable, or, for a lazy job past `local_fallback_after` rounds, the local fallback.
//!
//! Across jobs (outage mode): a node that keeps failing gets its circuit breaker opened and is
//! skipped, but for one probe per cool-down; a primary pin still running after the hedge delay
//! gets the next node started beside it.

use policy_kit::plan::nodes_with;
use policy_kit::{Node, ParamSpec, Policy, Role};

pub struct TankMode;

impl Policy for TankMode {
    const NAME: &'static str = "tank-mode";
    const DESCRIPTION: &'static str = "primary with retries and verification, then every backup in order; quorum; local fallback for lazy jobs";
    const PARAMS: &'static [ParamSpec] = policy_kit::params::ALL;

    fn candidates(nodes: &[Node]) -> Vec<&str> {
        nodes_with(nodes, Role::Primary)
            .chain(nodes_with(nodes, Role::Backup))
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
policy_kit::export_policy!(TankMode);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_kit::script::{End, job, topology};
    use policy_kit::{Action, Settings};

    fn defaults(pairs: &[(&str, &str)]) -> Settings {
        let given: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(TankMode::NAME, TankMode::PARAMS, &given).expect("valid params")
    }

    /// The seed's flows are one job's retry sequence: without hedging, which would race the
    /// backup against a slow primary (see the outage tests below).
    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings {
            hedge_after_ms: 0,
            ..defaults(pairs)
        }
    }

    fn sick_primary(failures: u32, since_ms: u64) -> Vec<Node> {
        let mut nodes = topology(1, false);
        let h = &mut nodes[0].health;
        h.consecutive_failures = failures;
        h.since_last_failure_ms = Some(since_ms);
        h.since_last_start_ms = Some(since_ms);
        nodes
    }

    fn touches(r: &policy_kit::script::Run, node: &str) -> usize {
        r.history
            .iter()
            .filter(|e| policy_kit::lanes::action_node(&e.action) == Some(node))
            .count()
    }

    fn play(
        s: &Settings,
        lazy: bool,
        failed_rounds: u32,
        nodes: &[Node],
        scripts: &[(&str, &[&str])],
    ) -> policy_kit::script::Run {
        policy_kit::script::play::<TankMode>(s, &job(lazy, failed_rounds), nodes, scripts)
    }

    #[test]
    fn happy_path_pins_verifies_and_checks_primary_only() {
        let r = play(&settings(&[]), false, 0, &topology(1, false), &[]);
        assert_eq!(r.end, End::Succeeded(vec!["primary".into()]));
        assert_eq!(r.history.len(), 3, "pin, verify, check-retrievable");
        assert_eq!(r.pins_on("backup-1"), 0);
    }

    #[test]
    fn happy_path_with_defaults_touches_no_backup() {
        let r = play(&defaults(&[]), false, 0, &topology(2, false), &[]);
        assert_eq!(r.end, End::Succeeded(vec!["primary".into()]));
        assert_eq!(touches(&r, "backup-1") + touches(&r, "backup-2"), 0);
    }

    /// When the backup's lane starts (its provider hint).
    fn hedged_at(r: &policy_kit::script::Run) -> u64 {
        r.history
            .iter()
            .find(|e| matches!(&e.action, Action::Connect(c) if c.node == "backup-1"))
            .expect("the backup starts with a provider hint")
            .started_ms
    }

    /// A primary pin that hangs without progress is hedged once it has been quiet for
    /// `hedge_quiet_ms` (1 s), and the backup wins.
    #[test]
    fn a_hanging_primary_pin_is_hedged_when_quiet_and_the_backup_wins() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["timeout"])];
        let r = play(&defaults(&[]), false, 0, &topology(1, false), scripts);
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
        assert_eq!(r.pins_on("primary"), 1, "the primary's pin still runs");
        assert_eq!(hedged_at(&r), 1_000, "at the quiet delay");
        assert_eq!(r.now_ms, 1_000, "the backup confirmed at once");
        // Without the quiet rule: at the hedge delay.
        let r = play(
            &defaults(&[("hedge_quiet_ms", "0")]),
            false,
            0,
            &topology(1, false),
            scripts,
        );
        assert_eq!(hedged_at(&r), 10_000);
    }

    /// A job that starts while the primary is already quiet (other jobs' pins on it have not
    /// moved for 1.5 s) races the backup from its first decision: there is no quiet time of
    /// its own to wait out (seen on Kubo: without this, the job waited out a 60 s stall).
    #[test]
    fn a_job_starting_on_an_already_quiet_primary_races_the_backup_at_once() {
        let mut nodes = topology(1, false);
        let h = &mut nodes[0].health;
        (h.in_flight, h.since_last_start_ms, h.since_last_progress_ms) =
            (1, Some(1_500), Some(1_500));
        let first = TankMode::decide(&defaults(&[]), &job(true, 0), &nodes, &[], 0);
        assert!(
            matches!(first.as_slice(), [Action::Pin(p), Action::Connect(c), Action::Pin(b)] if p.node == "primary" && c.node == "backup-1" && b.node == "backup-1"),
            "{first:?}"
        );
        // Quiet for less: the primary alone, and a look again when it would be quiet enough.
        nodes[0].health.since_last_progress_ms = Some(400);
        let first = TankMode::decide(&defaults(&[]), &job(true, 0), &nodes, &[], 0);
        assert!(
            matches!(first.as_slice(), [Action::Pin(_), Action::Wait(w)] if w.ms == 600 && w.node.is_none()),
            "{first:?}"
        );
    }

    /// A primary pin that keeps moving, however long it takes, is hedged only at the hedge
    /// delay: the quiet rule looks again every second and leaves it alone.
    #[test]
    fn a_slow_primary_pin_that_moves_is_hedged_at_the_hedge_delay() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["slow"])];
        let r = play(&defaults(&[]), false, 0, &topology(1, false), scripts);
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
        assert_eq!(hedged_at(&r), 10_000);
        // Looked again each second, one look at a time.
        let looks: Vec<u64> = r.waits();
        assert_eq!(looks, [1_000; 10], "{looks:?}");
    }

    #[test]
    fn an_open_breaker_skips_the_primary_from_the_first_decision() {
        let nodes = sick_primary(3, 1_000);
        let r = play(
            &defaults(&[]),
            false,
            0,
            &nodes,
            &[("primary", &["timeout"])],
        );
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
        assert_eq!(touches(&r, "primary"), 0);
        let first = TankMode::decide(&defaults(&[]), &job(false, 0), &nodes, &[], 0);
        assert!(
            matches!(first.as_slice(), [Action::Connect(c), Action::Pin(p)] if c.node == "backup-1" && p.node == "backup-1"),
            "{first:?}"
        );
    }

    #[test]
    fn a_cooled_down_breaker_lets_one_probe_through() {
        let nodes = sick_primary(3, 61_000);
        let r = play(
            &settings(&[]),
            false,
            0,
            &nodes,
            &[("primary", &["refused"])],
        );
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
        assert_eq!(r.pins_on("primary"), 1, "a probe is one attempt");
        // A recovered node gets its traffic back on the probe.
        let r = play(&settings(&[]), false, 0, &nodes, &[]);
        assert_eq!(r.end, End::Succeeded(vec!["primary".into()]));
    }

    #[test]
    fn the_breaker_never_costs_a_job_its_own_retries() {
        // Two failures before this round, three more in it: the budget stays five attempts.
        let nodes = sick_primary(2, 1_000);
        let scripts: &[(&str, &[&str])] = &[("primary", &["refused", "refused", "ok"])];
        let r = play(&settings(&[]), false, 0, &nodes, scripts);
        assert_eq!(r.end, End::Succeeded(vec!["primary".into()]));
        assert_eq!(r.pins_on("primary"), 3);
    }

    #[test]
    fn overloaded_primary_recovers_at_attempt_three_with_backoff() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["timeout", "timeout", "ok"])];
        let r = play(&settings(&[]), false, 0, &topology(1, false), scripts);
        assert_eq!(r.end, End::Succeeded(vec!["primary".into()]));
        assert_eq!(r.pins_on("primary"), 3);
        assert_eq!(r.waits(), [2_000, 4_000]);
    }

    #[test]
    fn lying_primary_fails_over_to_a_hinted_backup() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["lie"])];
        let r = play(&settings(&[]), false, 0, &topology(1, false), scripts);
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
        assert_eq!(r.pins_on("primary"), 5);
        assert_eq!(r.waits(), [2_000, 4_000, 8_000, 16_000]);
        let connect = r
            .history
            .iter()
            .position(|e| matches!(&e.action, Action::Connect(c) if c.node == "backup-1" && c.provider == "primary"))
            .expect("provider hint before the backup pin");
        let first_backup_pin = r
            .history
            .iter()
            .position(|e| matches!(&e.action, Action::Pin(p) if p.node == "backup-1"))
            .expect("backup pinned");
        assert!(connect < first_backup_pin);
    }

    /// A connection to the provider that carried an earlier attempt may have stopped carrying
    /// blocks: every attempt on a backup is preceded by a fresh hint, not only the first.
    #[test]
    fn every_backup_attempt_is_preceded_by_a_provider_hint() {
        let scripts: &[(&str, &[&str])] = &[
            ("primary", &["refused"]),
            ("backup-1", &["timeout", "http500", "ok"]),
        ];
        let r = play(&settings(&[]), false, 0, &topology(1, false), scripts);
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
        let lane: Vec<&Action> = r
            .history
            .iter()
            .map(|e| &e.action)
            .filter(|a| policy_kit::lanes::action_node(a) == Some("backup-1"))
            .collect();
        let pins: Vec<usize> = (0..lane.len())
            .filter(|&i| matches!(lane[i], Action::Pin(_)))
            .collect();
        assert_eq!(pins.len(), 3);
        for i in pins {
            assert!(
                i > 0 && matches!(lane[i - 1], Action::Connect(c) if c.provider == "primary"),
                "attempt at {i} without a hint just before: {lane:?}"
            );
        }
        // The primary itself never gets one.
        assert!(!r.history.iter().any(|e| matches!(
            &e.action,
            Action::Connect(c) if c.node == "primary"
        )));
    }

    #[test]
    fn backoff_is_capped_at_max_delay() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["refused"])];
        let s = settings(&[("attempts", "7")]);
        let r = play(&s, false, 0, &topology(1, false), scripts);
        assert_eq!(
            r.waits()[..6],
            [2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
    }

    #[test]
    fn everything_down_is_a_critical_failure() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["refused"]), ("backup-1", &["timeout"])];
        let r = play(&settings(&[]), false, 0, &topology(1, true), scripts);
        let End::Failed(reason) = r.end.clone() else {
            panic!("expected failure, got {:?}", r.end)
        };
        assert!(reason.starts_with("CRITICAL"), "{reason}");
        assert!(reason.contains("primary: 5 attempts"), "{reason}");
        assert_eq!(r.pins_on("backup-1"), 5);
        assert_eq!(
            r.pins_on("local"),
            0,
            "blocking jobs never use the local node"
        );
    }

    #[test]
    fn quorum_two_of_three_runs_two_lanes_and_replaces_a_dead_one() {
        let scripts: &[(&str, &[&str])] = &[("backup-1", &["refused"])];
        let s = settings(&[("quorum", "2")]);
        let r = play(&s, false, 0, &topology(2, false), scripts);
        let End::Succeeded(mut nodes) = r.end.clone() else {
            panic!("expected success, got {:?}", r.end)
        };
        nodes.sort();
        assert_eq!(nodes, ["backup-2", "primary"]);
        // The first decision starts the primary and the first backup (its hint and its pin)
        // together.
        let first = TankMode::decide(&s, &job(false, 0), &topology(2, false), &[], 0);
        assert!(
            matches!(first.as_slice(), [Action::Pin(p), Action::Connect(c), Action::Pin(b)] if p.node == "primary" && c.node == "backup-1" && b.node == "backup-1"),
            "{first:?}"
        );
    }

    /// A Kubo backup's first hint starts beside its pin; a remote tier's ends first, since the
    /// addresses it gives are the pin request's origins (the cluster peers fetch from them).
    #[test]
    fn a_remote_tier_pins_only_after_its_hint() {
        let mut nodes = sick_primary(3, 1_000);
        nodes[1] = policy_kit::script::remote("backup-1", policy_kit::NodeKind::Cluster, 1);
        let first = TankMode::decide(&defaults(&[]), &job(false, 0), &nodes, &[], 0);
        assert!(
            matches!(first.as_slice(), [Action::Connect(c)] if c.node == "backup-1"),
            "{first:?}"
        );
        // The same node as a Kubo backup: both at once.
        let kubo = sick_primary(3, 1_000);
        let first = TankMode::decide(&defaults(&[]), &job(false, 0), &kubo, &[], 0);
        assert!(
            matches!(first.as_slice(), [Action::Connect(_), Action::Pin(_)]),
            "{first:?}"
        );
        let r = play(&defaults(&[]), false, 0, &nodes, &[]);
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
    }

    #[test]
    fn a_cluster_pin_with_replication_two_meets_a_quorum_of_two_alone() {
        // primary, then a cluster of replication-min 2, then a plain backup.
        let mut nodes = topology(2, false);
        nodes[1] = policy_kit::script::remote("backup-1", policy_kit::NodeKind::Cluster, 2);
        let s = settings(&[("quorum", "2"), ("attempts", "1")]);
        let scripts: &[(&str, &[&str])] = &[("primary", &["refused"])];
        let r = play(&s, false, 0, &nodes, scripts);
        assert_eq!(
            r.end,
            End::Succeeded(vec!["backup-1".into()]),
            "{:?}",
            r.end
        );
        assert_eq!(
            r.pins_on("backup-2"),
            0,
            "two copies already: no third lane"
        );
        // The same node counted as one copy (a Kubo backup) needs backup-2 too.
        let r = play(&s, false, 0, &topology(2, false), scripts);
        let End::Succeeded(mut two) = r.end.clone() else {
            panic!("expected success, got {:?}", r.end)
        };
        two.sort();
        assert_eq!(two, ["backup-1", "backup-2"]);
    }

    #[test]
    fn quorum_out_of_reach_fails_early() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["refused"]), ("backup-1", &["refused"])];
        let s = settings(&[("quorum", "2"), ("attempts", "1")]);
        let r = play(&s, false, 0, &topology(2, false), scripts);
        assert!(
            matches!(&r.end, End::Failed(m) if m.starts_with("CRITICAL: quorum 2")),
            "{:?}",
            r.end
        );
    }

    #[test]
    fn lazy_job_falls_back_locally_on_its_third_failed_round() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["refused"]), ("backup-1", &["refused"])];
        let s = settings(&[("attempts", "1")]);
        for round in 0..2 {
            let r = play(&s, true, round, &topology(1, true), scripts);
            assert!(
                matches!(&r.end, End::Failed(m) if m.contains("before local fallback")),
                "{:?}",
                r.end
            );
        }
        let r = play(&s, true, 2, &topology(1, true), scripts);
        assert_eq!(r.end, End::LocalFallback);
        // Without a local node in the topology (fallback disabled) it stays a failure.
        let r = play(&s, true, 2, &topology(1, false), scripts);
        assert!(matches!(r.end, End::Failed(_)));
    }
}
