//! The Pinning Services API's JSON bodies (spec v1.0.0, `docs/psa/openapi.yaml`), and the one
//! mapping from the queue's states to its four statuses. Converted at the edge: nothing
//! outside `psa` sees these types.

use crate::queue::State;
use crate::queue::requests::RequestRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A pin request's status, as the spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Pinning,
    Pinned,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Queued,
        Status::Pinning,
        Status::Pinned,
        Status::Failed,
    ];

    /// The one mapping. A local fallback is `pinned`: the content is pinned, verified and
    /// retrievable on the local node (journaled for migration), and `info` says so.
    pub fn of(state: State) -> Status {
        match state {
            State::Queued => Status::Queued,
            State::Pinning => Status::Pinning,
            State::Pinned | State::LocalFallback => Status::Pinned,
            State::Failed => Status::Failed,
        }
    }

    /// The queue states shown as `self`.
    pub fn states(self) -> impl Iterator<Item = State> {
        State::ALL
            .into_iter()
            .filter(move |s| Status::of(*s) == self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Pinning => "pinning",
            Status::Pinned => "pinned",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// `Pin`: what a client asks to be pinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub cid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// `PinStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinStatus {
    pub requestid: String,
    pub status: Status,
    /// RFC 3339 with microseconds, UTC.
    pub created: String,
    pub pin: Pin,
    pub delegates: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, String>,
}

/// `PinResults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinResults {
    pub count: u64,
    pub results: Vec<PinStatus>,
}

/// `Failure`: every error answer, 401 included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub error: FailureError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureError {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl PinStatus {
    /// A stored request as the spec shows it, with the delegates its pin has now.
    pub fn of(row: RequestRow, delegates: Vec<String>) -> PinStatus {
        let status = Status::of(row.state);
        let mut info = BTreeMap::new();
        info.insert("state".to_string(), row.state.as_str().to_string());
        if !row.confirmed.is_empty() {
            // Where the pin is: the nodes that pinned it, verified it with `pin ls` and found
            // every block present (the host's proof of success).
            info.insert("verified_on".into(), row.confirmed.join(","));
        }
        if row.state == State::LocalFallback {
            info.insert(
                "status_details".into(),
                "pinned on the local node after the pinning nodes failed; journaled for \
                 migration to a permanent node"
                    .into(),
            );
        }
        if let Some(reason) = row.reason.filter(|_| status != Status::Pinned) {
            info.insert("last_failure".into(), reason);
        }
        if row.failed_rounds > 0 && status != Status::Pinned {
            info.insert("failed_rounds".into(), row.failed_rounds.to_string());
        }
        PinStatus {
            requestid: row.requestid,
            status,
            created: format_created(row.created_us),
            pin: Pin {
                cid: row.cid,
                name: row.name,
                origins: row.origins,
                meta: row.meta,
            },
            delegates,
            info,
        }
    }
}

/// Microseconds since the epoch as RFC 3339 UTC with microseconds: exact, so a client that
/// pages with `before = last.created` lands exactly between two requests.
pub fn format_created(us: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_micros(t).to_string()
}

/// An RFC 3339 timestamp (`Z` or a `±HH:MM` offset, any fraction) as microseconds since the
/// epoch.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let at = time::OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|e| format!("'{text}' is not an RFC 3339 timestamp: {e}"))?;
    // Any year from 0000 to 9999 fits in i64 microseconds: before 1970 is only negative.
    i64::try_from(at.unix_timestamp_nanos() / 1_000)
        .map_err(|_| format!("'{text}' is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_one_status_and_statuses_cover_every_state() {
        let covered: Vec<State> = Status::ALL.into_iter().flat_map(Status::states).collect();
        let mut all = State::ALL.to_vec();
        all.sort();
        let mut covered_sorted = covered.clone();
        covered_sorted.sort();
        assert_eq!(covered_sorted, all);
        assert_eq!(Status::of(State::LocalFallback), Status::Pinned);
        assert_eq!(
            Status::Pinned.states().collect::<Vec<_>>(),
            [State::Pinned, State::LocalFallback]
        );
    }

    #[test]
    fn created_round_trips_exactly_and_offsets_are_read() {
        let us = 1_764_989_000_123_456;
        let text = format_created(us);
        assert_eq!(text, "2025-12-06T02:43:20.123456Z");
        assert_eq!(parse_timestamp(&text), Ok(us));
        assert_eq!(parse_timestamp("2025-12-06T02:43:20Z"), Ok(us - 123_456));
        assert_eq!(
            parse_timestamp("2025-12-06T03:43:20.123456+01:00"),
            Ok(us),
            "an offset is moved into the value"
        );
        assert_eq!(parse_timestamp("2025-12-06T02:43:20.123Z"), Ok(us - 456));
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2025-13-06T02:43:20Z").is_err());
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Ok(-1_000_000));
        // What a fuzzer sent: multi-byte characters where an offset would be (this used to
        // slice a string off a char boundary, a panic that dropped the connection).
        for junk in ["Þ𞕀ë􏌤\u{6}\u{94}󇄯t\u{1d}Â򑏭󦝿O򵾆򛣋", "ééé+01:00", "€€€€€€", ""]
        {
            assert!(parse_timestamp(junk).is_err(), "{junk:?}");
        }
    }
}
