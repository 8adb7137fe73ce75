//! Single backup: the seed's `pinToNode(primary).catch(() => pinToNode(backup))`.
//!
//! The primary with `attempts` tries and backoff, then only the first backup with the same
//! budget; the same verification (`pin ls`) and retrievability gates as tank mode. No quorum.

use policy_kit::params::{
    ATTEMPTS, BASE_DELAY_MS, BREAKER_COOLDOWN_MS, BREAKER_FAILURES, HEDGE_AFTER_MS, HEDGE_QUIET_MS,
    LOCAL_FALLBACK_AFTER, MAX_DELAY_MS, PIN_TIMEOUT_MS, STALL_TIMEOUT_MS,
};
use policy_kit::plan::nodes_with;
use policy_kit::{Node, ParamSpec, Policy, Role};

pub struct SingleBackup;

impl Policy for SingleBackup {
    const NAME: &'static str = "single-backup";
    const DESCRIPTION: &'static str =
        "primary with retries and verification, then the first backup only";
    const PARAMS: &'static [ParamSpec] = &[
        ATTEMPTS,
        BASE_DELAY_MS,
        MAX_DELAY_MS,
        PIN_TIMEOUT_MS,
        STALL_TIMEOUT_MS,
        LOCAL_FALLBACK_AFTER,
        BREAKER_FAILURES,
        BREAKER_COOLDOWN_MS,
        HEDGE_AFTER_MS,
        HEDGE_QUIET_MS,
    ];

    fn candidates(nodes: &[Node]) -> Vec<&str> {
        nodes_with(nodes, Role::Primary)
            .take(1)
            .chain(nodes_with(nodes, Role::Backup).take(1))
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
policy_kit::export_policy!(SingleBackup);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_kit::Settings;
    use policy_kit::script::{End, job, topology};

    fn play(nodes: &[Node], scripts: &[(&str, &[&str])]) -> policy_kit::script::Run {
        let s = Settings::defaults(SingleBackup::PARAMS);
        policy_kit::script::play::<SingleBackup>(&s, &job(false, 0), nodes, scripts)
    }

    #[test]
    fn primary_first() {
        let r = play(&topology(2, false), &[]);
        assert_eq!(r.end, End::Succeeded(vec!["primary".into()]));
    }

    #[test]
    fn falls_back_to_the_first_backup_only() {
        let scripts: &[(&str, &[&str])] = &[("primary", &["lie"]), ("backup-1", &["refused"])];
        let r = play(&topology(2, false), scripts);
        assert!(
            matches!(&r.end, End::Failed(m) if m.starts_with("CRITICAL")),
            "{:?}",
            r.end
        );
        assert_eq!((r.pins_on("primary"), r.pins_on("backup-1")), (5, 5));
        assert_eq!(
            r.pins_on("backup-2"),
            0,
            "never goes past the single backup"
        );
    }

    #[test]
    fn backup_rescues_an_offline_primary() {
        let r = play(&topology(1, false), &[("primary", &["refused"])]);
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
    }

    #[test]
    fn has_no_quorum_parameter() {
        let err = Settings::parse(
            SingleBackup::NAME,
            SingleBackup::PARAMS,
            &[("quorum".into(), "2".into())],
        )
        .unwrap_err();
        assert!(err.contains("unknown parameter 'quorum'"), "{err}");
    }
}
