//! Example custom policy (see docs/policies/worked-example.md): the primary is busy serving
//! uploads, so pin on the backups first and use the primary only as the last resort.
//! Quorum, verification, backoff and the local fallback come from `policy-kit`.

use policy_kit::params::{
    ATTEMPTS, BASE_DELAY_MS, BREAKER_COOLDOWN_MS, BREAKER_FAILURES, HEDGE_AFTER_MS, MAX_DELAY_MS,
    PIN_TIMEOUT_MS, STALL_TIMEOUT_MS,
};
use policy_kit::plan::nodes_with;
use policy_kit::{Node, ParamSpec, Policy, Role};

pub struct BackupsFirst;

impl Policy for BackupsFirst {
    const NAME: &'static str = "backups-first";
    const DESCRIPTION: &'static str = "every backup in order, then the primary";
    const PARAMS: &'static [ParamSpec] = &[
        ATTEMPTS,
        BASE_DELAY_MS,
        MAX_DELAY_MS,
        PIN_TIMEOUT_MS,
        STALL_TIMEOUT_MS,
        // The kit's plan opens breakers and hedges: let operators tune both.
        BREAKER_FAILURES,
        BREAKER_COOLDOWN_MS,
        HEDGE_AFTER_MS,
    ];

    fn candidates(nodes: &[Node]) -> Vec<&str> {
        nodes_with(nodes, Role::Backup)
            .chain(nodes_with(nodes, Role::Primary))
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
policy_kit::export_policy!(BackupsFirst);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_kit::Settings;
    use policy_kit::script::{End, job, play, topology};

    #[test]
    fn backup_before_primary() {
        let s = Settings::defaults(BackupsFirst::PARAMS);
        let r = play::<BackupsFirst>(&s, &job(false, 0), &topology(1, false), &[]);
        assert_eq!(r.end, End::Succeeded(vec!["backup-1".into()]));
        assert_eq!(r.pins_on("primary"), 0);
    }

    #[test]
    fn primary_is_the_last_resort() {
        let s = Settings::defaults(BackupsFirst::PARAMS);
        let scripts: &[(&str, &[&str])] = &[("backup-1", &["refused"]), ("backup-2", &["lie"])];
        let r = play::<BackupsFirst>(&s, &job(false, 0), &topology(2, false), scripts);
        assert_eq!(r.end, End::Succeeded(vec!["primary".into()]));
    }
}
