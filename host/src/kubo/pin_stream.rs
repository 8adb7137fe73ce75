//! `pin/add?recursive=true&progress=true`, read line by line, with stall detection.
//!
//! Kubo streams `{"Progress":n,"Bytes":b}` every 500 ms *whether or not anything moved*, then
//! `{"Pins":[..]}`, and reports a late failure only in the `X-Stream-Error` trailer. js-ipfs
//! ignores `progress` and answers once, at the end, with a plain JSON body. So a stall is "no
//! *increase* of the progress counters for `stall`", counted from the request (silence is not
//! the test); on js-ipfs any pin longer than `stall` therefore reads as stalled. The call has no
//! timeout of its own: the executor bounds it with the pin's overall timeout.

use super::ndjson::{Chunk, Lines, error_message, stream_error_header};
use super::same_cid;
use super::transport::{KuboError, Rpc, classify, garbage, status_error};
use crate::Outcome;
use serde_json::Value;
use std::time::Duration;
use tokio::time::{Instant, timeout, timeout_at};

/// Pins `cid` on the node behind `rpc` (`node` names it in logs). `Ok` only when the final
/// `{"Pins":[..]}` names this CID and no stream error was reported; `Stalled` when the counters
/// have not increased for `stall`.
pub(super) async fn pin(
    rpc: &Rpc,
    node: &str,
    cid: &str,
    stall: Duration,
) -> Result<Outcome, KuboError> {
    // `TE: trailers` invites the `X-Stream-Error` trailer through proxies that ask first
    // (Kubo and js-ipfs send it regardless).
    let request = rpc
        .post(
            "pin/add",
            &[("arg", cid), ("recursive", "true"), ("progress", "true")],
        )
        .header(http::header::TE, "trailers");
    let mut last_progress = Instant::now();
    // js-ipfs sends nothing, not even headers, until the pin is complete.
    let response = match timeout(stall, request.send()).await {
        Err(_) => return Ok(Outcome::Stalled),
        Ok(sent) => sent.map_err(|e| classify(&e))?,
    };
    if !response.status().is_success() {
        return Err(status_error(response, rpc.call_timeout()).await);
    }
    if let Some(err) = stream_error_header(response.headers()) {
        return Ok(Outcome::Error(err));
    }
    let mut lines = Lines::new(response);
    let mut state = PinProgress::default();
    loop {
        let chunk = match timeout_at(last_progress + stall, lines.next()).await {
            Err(_) if state.pins.is_some() => {
                // The answer is in; only the end of the stream is late. `verify` will tell.
                tracing::warn!(node = %node, "pin/add: Pins received, then the stream stalled");
                if let Some(line) = lines.partial()
                    && let LineEffect::Failed(message) = state.apply(&line)?
                {
                    return Ok(Outcome::Error(message));
                }
                break;
            }
            Err(_) => return Ok(Outcome::Stalled),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk?,
        };
        match chunk {
            Chunk::Line(line) => match state.apply(&line)? {
                LineEffect::Progressed => last_progress = Instant::now(),
                LineEffect::Nothing => {}
                LineEffect::Failed(message) => return Ok(Outcome::Error(message)),
            },
            Chunk::StreamError(err) => return Ok(Outcome::Error(err)),
        }
    }
    Ok(state.outcome(cid))
}

/// What one `pin/add` line did.
#[derive(Debug, PartialEq)]
enum LineEffect {
    Progressed,
    Nothing,
    Failed(String),
}

/// The state of a `pin/add` stream.
#[derive(Debug, Default)]
struct PinProgress {
    /// Highest (`Progress`, `Bytes`) seen.
    counters: (u64, u64),
    pins: Option<Vec<String>>,
}

impl PinProgress {
    fn apply(&mut self, line: &[u8]) -> Result<LineEffect, KuboError> {
        let value: Value = serde_json::from_slice(line).map_err(|e| garbage(line, &e))?;
        if let Some(message) = error_message(&value) {
            return Ok(LineEffect::Failed(message));
        }
        let Some(object) = value.as_object() else {
            return Err(garbage(line, &"not a JSON object"));
        };
        if let Some(pins) = object.get("Pins").filter(|p| !p.is_null()) {
            let pins = pins
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .ok_or_else(|| garbage(line, &"Pins is not a list"))?;
            self.pins = Some(pins);
            return Ok(LineEffect::Progressed);
        }
        let counter = |key: &str| object.get(key).and_then(Value::as_u64).unwrap_or(0);
        let counters = (counter("Progress"), counter("Bytes"));
        if counters.0 > self.counters.0 || counters.1 > self.counters.1 {
            self.counters = (
                counters.0.max(self.counters.0),
                counters.1.max(self.counters.1),
            );
            Ok(LineEffect::Progressed)
        } else {
            Ok(LineEffect::Nothing)
        }
    }

    fn outcome(&self, cid: &str) -> Outcome {
        match &self.pins {
            Some(pins) if pins.iter().any(|p| same_cid(p, cid)) => Outcome::Ok,
            Some(pins) => Outcome::Error(format!(
                "pin/add answered with pins {pins:?}, which do not include {cid}"
            )),
            None => Outcome::Error("pin/add stream ended without a Pins line".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubo::tests::{V1, V1_B58};

    #[test]
    fn pin_progress_counts_only_increases() {
        let mut p = PinProgress::default();
        assert_eq!(p.apply(b"{}").unwrap(), LineEffect::Nothing);
        assert_eq!(
            p.apply(br#"{"Progress":3,"Bytes":100}"#).unwrap(),
            LineEffect::Progressed
        );
        // Kubo repeats the counters every 500 ms while stuck.
        assert_eq!(
            p.apply(br#"{"Progress":3,"Bytes":100}"#).unwrap(),
            LineEffect::Nothing
        );
        assert_eq!(
            p.apply(br#"{"Progress":3,"Bytes":200}"#).unwrap(),
            LineEffect::Progressed
        );
        assert_eq!(
            p.outcome(V1),
            Outcome::Error("pin/add stream ended without a Pins line".into())
        );
        assert_eq!(
            p.apply(format!(r#"{{"Pins":["{V1_B58}"]}}"#).as_bytes())
                .unwrap(),
            LineEffect::Progressed
        );
        assert_eq!(p.outcome(V1), Outcome::Ok);
    }

    #[test]
    fn pin_stream_errors_and_garbage() {
        let mut p = PinProgress::default();
        assert_eq!(
            p.apply(br#"{"Message":"context canceled","Code":0,"Type":"error"}"#)
                .unwrap(),
            LineEffect::Failed("context canceled".into())
        );
        assert!(matches!(p.apply(b"<html>"), Err(KuboError::Garbage(_))));
        assert!(matches!(p.apply(b"[1]"), Err(KuboError::Garbage(_))));
        let mut other = PinProgress::default();
        other
            .apply(br#"{"Pins":["bafkreiauizm3jdzufublskmja6vtf7hqi6nmtsm2buuty7box6g7ge65ci"]}"#)
            .unwrap();
        assert!(matches!(other.outcome(V1), Outcome::Error(_)));
    }
}
