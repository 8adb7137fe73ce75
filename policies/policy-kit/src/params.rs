//! Operator parameters. The names are a public interface: operators' configs and scripts use
//! them, so they never change meaning. Every value is an integer checked against a range.

use crate::bindings::ParamInfo;

/// One operator parameter: name, default, accepted range and what it does.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
    pub description: &'static str,
}

const HOUR_MS: u64 = 3_600_000;

pub const ATTEMPTS: ParamSpec = ParamSpec {
    name: "attempts",
    default: 5,
    min: 1,
    max: 100,
    description: "pin attempts per node (each verified with pin ls) before moving on",
};
pub const BASE_DELAY_MS: ParamSpec = ParamSpec {
    name: "base_delay_ms",
    default: 2_000,
    min: 0,
    max: HOUR_MS,
    description: "backoff after failed attempt n is base_delay_ms * 2^(n-1)",
};
pub const MAX_DELAY_MS: ParamSpec = ParamSpec {
    name: "max_delay_ms",
    default: 30_000,
    min: 0,
    max: HOUR_MS,
    description: "cap on a single backoff",
};
pub const PIN_TIMEOUT_MS: ParamSpec = ParamSpec {
    name: "pin_timeout_ms",
    default: 300_000,
    min: 1,
    max: 24 * HOUR_MS,
    description: "overall bound for one pin/add, progress or not",
};
pub const STALL_TIMEOUT_MS: ParamSpec = ParamSpec {
    name: "stall_timeout_ms",
    default: 60_000,
    min: 1,
    max: 24 * HOUR_MS,
    description: "abandon a pin/add that reports no progress for this long",
};
pub const QUORUM: ParamSpec = ParamSpec {
    name: "quorum",
    default: 1,
    min: 1,
    max: 64,
    description: "distinct nodes that must confirm (pinned, verified, retrievable)",
};
pub const LOCAL_FALLBACK_AFTER: ParamSpec = ParamSpec {
    name: "local_fallback_after",
    default: 3,
    min: 0,
    max: 1_000,
    description: "failed rounds of a lazy job before the local fallback (0: never)",
};

pub const BREAKER_FAILURES: ParamSpec = ParamSpec {
    name: "breaker_failures",
    default: host_rules::BREAKER_FAILURES as u64,
    min: 0,
    max: 1_000,
    description: "consecutive failures of a node, across jobs, that open its circuit breaker: the node is skipped but for one probe per cool-down (0: never)",
};
pub const BREAKER_COOLDOWN_MS: ParamSpec = ParamSpec {
    name: "breaker_cooldown_ms",
    default: host_rules::BREAKER_COOLDOWN_MS,
    min: 1_000,
    max: 24 * HOUR_MS,
    description: "how long an open breaker waits before one job probes the node again",
};
pub const HEDGE_AFTER_MS: ParamSpec = ParamSpec {
    name: "hedge_after_ms",
    default: 10_000,
    min: 0,
    max: 24 * HOUR_MS,
    description: "start the next node beside a primary pin still running after this long; halved per consecutive primary failure, at least twice its recent pin time, 1 s while its running pins are stuck (0: never)",
};

pub const HEDGE_QUIET_MS: ParamSpec = ParamSpec {
    name: "hedge_quiet_ms",
    default: 1_000,
    min: 0,
    max: 24 * HOUR_MS,
    description: "start the next node beside a primary pin sooner than hedge_after_ms once the primary's running pins have shown no progress for this long (Kubo reports its block count every 500 ms; a pin that moves, however slowly, keeps hedge_after_ms; nodes that report no progress are unaffected; 0: never)",
};

/// Every parameter the kit knows, in the order policies list them.
pub const ALL: &[ParamSpec] = &[
    ATTEMPTS,
    BASE_DELAY_MS,
    MAX_DELAY_MS,
    PIN_TIMEOUT_MS,
    STALL_TIMEOUT_MS,
    QUORUM,
    LOCAL_FALLBACK_AFTER,
    BREAKER_FAILURES,
    BREAKER_COOLDOWN_MS,
    HEDGE_AFTER_MS,
    HEDGE_QUIET_MS,
];

/// Validated settings. Parameters a policy does not declare keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub pin_timeout_ms: u64,
    pub stall_timeout_ms: u64,
    pub quorum: u32,
    pub local_fallback_after: u32,
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub hedge_after_ms: u64,
    pub hedge_quiet_ms: u64,
}

impl Settings {
    /// The defaults of every parameter (those outside `specs` too).
    pub fn defaults(specs: &[ParamSpec]) -> Settings {
        let mut s = Settings {
            attempts: ATTEMPTS.default as u32,
            base_delay_ms: BASE_DELAY_MS.default,
            max_delay_ms: MAX_DELAY_MS.default,
            pin_timeout_ms: PIN_TIMEOUT_MS.default,
            stall_timeout_ms: STALL_TIMEOUT_MS.default,
            quorum: QUORUM.default as u32,
            local_fallback_after: LOCAL_FALLBACK_AFTER.default as u32,
            breaker_failures: BREAKER_FAILURES.default as u32,
            breaker_cooldown_ms: BREAKER_COOLDOWN_MS.default,
            hedge_after_ms: HEDGE_AFTER_MS.default,
            hedge_quiet_ms: HEDGE_QUIET_MS.default,
        };
        for spec in specs {
            s.set(spec.name, spec.default);
        }
        s
    }

    /// Parses operator parameters against `specs`; the error names the parameter.
    pub fn parse(
        policy: &str,
        specs: &[ParamSpec],
        given: &[(String, String)],
    ) -> Result<Settings, String> {
        let mut s = Settings::defaults(specs);
        for (name, raw) in given {
            let Some(spec) = specs.iter().find(|p| p.name == name) else {
                let known: Vec<&str> = specs.iter().map(|p| p.name).collect();
                return Err(format!(
                    "unknown parameter '{name}' ({policy} accepts: {})",
                    known.join(", ")
                ));
            };
            let value = raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|v| (spec.min..=spec.max).contains(v))
                .ok_or_else(|| {
                    format!(
                        "parameter '{name}': expected an integer from {} to {}, got '{raw}'",
                        spec.min, spec.max
                    )
                })?;
            s.set(spec.name, value);
        }
        if s.stall_timeout_ms > s.pin_timeout_ms {
            return Err(format!(
                "parameter 'stall_timeout_ms' ({}) must not exceed 'pin_timeout_ms' ({})",
                s.stall_timeout_ms, s.pin_timeout_ms
            ));
        }
        if s.base_delay_ms > s.max_delay_ms {
            return Err(format!(
                "parameter 'base_delay_ms' ({}) must not exceed 'max_delay_ms' ({})",
                s.base_delay_ms, s.max_delay_ms
            ));
        }
        Ok(s)
    }

    fn set(&mut self, name: &str, value: u64) {
        // Ranges are checked before `set`; the u32 fields have ranges far below u32::MAX.
        let small = u32::try_from(value).unwrap_or(u32::MAX);
        match name {
            "attempts" => self.attempts = small,
            "base_delay_ms" => self.base_delay_ms = value,
            "max_delay_ms" => self.max_delay_ms = value,
            "pin_timeout_ms" => self.pin_timeout_ms = value,
            "stall_timeout_ms" => self.stall_timeout_ms = value,
            "quorum" => self.quorum = small,
            "local_fallback_after" => self.local_fallback_after = small,
            "breaker_failures" => self.breaker_failures = small,
            "breaker_cooldown_ms" => self.breaker_cooldown_ms = value,
            "hedge_after_ms" => self.hedge_after_ms = value,
            "hedge_quiet_ms" => self.hedge_quiet_ms = value,
            _ => {}
        }
    }

    /// Backoff after failed attempt `n` (1-based): `base * 2^(n-1)`, capped at `max_delay_ms`.
    pub fn backoff_ms(&self, n: u32) -> u64 {
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        self.base_delay_ms
            .saturating_mul(factor)
            .min(self.max_delay_ms)
    }
}

/// The WIT description of `specs`, for `describe`.
pub fn describe(specs: &[ParamSpec]) -> Vec<ParamInfo> {
    specs
        .iter()
        .map(|p| ParamInfo {
            name: p.name.to_string(),
            default_value: p.default.to_string(),
            description: p.description.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn backoff_doubles_from_base_and_caps() {
        let s = Settings::defaults(ALL);
        let waits: Vec<u64> = (1..=6).map(|n| s.backoff_ms(n)).collect();
        assert_eq!(waits, [2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(s.backoff_ms(200), 30_000, "huge attempt numbers saturate");
    }

    #[test]
    fn parses_values_and_names_the_bad_parameter() {
        let s = Settings::parse("t", ALL, &given(&[("attempts", "3"), ("quorum", "2")])).unwrap();
        assert_eq!((s.attempts, s.quorum), (3, 2));

        let err = Settings::parse("t", ALL, &given(&[("attempts", "many")])).unwrap_err();
        assert!(err.contains("'attempts'") && err.contains("many"), "{err}");
        let err = Settings::parse("t", ALL, &given(&[("attempts", "0")])).unwrap_err();
        assert!(err.contains("from 1 to 100"), "{err}");
        let err = Settings::parse("t", ALL, &given(&[("atempts", "3")])).unwrap_err();
        assert!(err.contains("unknown parameter 'atempts'"), "{err}");
    }

    #[test]
    fn rejects_inconsistent_timeouts() {
        let err = Settings::parse(
            "t",
            ALL,
            &given(&[("pin_timeout_ms", "1000"), ("stall_timeout_ms", "2000")]),
        )
        .unwrap_err();
        assert!(err.contains("stall_timeout_ms"), "{err}");
    }

    #[test]
    fn undeclared_parameters_are_unknown() {
        let err =
            Settings::parse("single-backup", &[ATTEMPTS], &given(&[("quorum", "2")])).unwrap_err();
        assert!(
            err.contains("'quorum'") && err.contains("single-backup"),
            "{err}"
        );
    }
}
