//! `pin/add?recursive=true&progress=true`, read line by line, with stall detection.
//!
//! A stall is "no progress for `stall`", and a pin that is making progress must never be called
//! stalled, whichever node answers. What shows progress differs:
//! - Kubo streams `{"Progress":n}` every 500 ms *whether or not anything moved* (`{}` while n is
//!   0), then `{"Pins":[..]}`, and reports a late failure only in the `X-Stream-Error` trailer.
//!   Progress is an *increase* of the counters (silence is not the test).
//! - js-ipfs ignores `progress` and sends nothing, not even headers, until the pin is complete.
//!   While no reply has arrived, the node's `bitswap/stat` is polled instead (see [`Watch`]):
//!   more blocks or bytes received than at the previous poll is progress, and so is an empty
//!   wantlist (the node is not waiting for the network: it is walking blocks it already has).
//!   A pin whose blocks nobody serves keeps wanting them with flat counters, and stalls.
//!
//! So on js-ipfs a stall is detected at most one poll interval (a tenth of `stall`, at most 5 s)
//! after `stall`; a pin that ends within a second costs no poll. The bitswap counters are the
//! node's, not the pin's: a transfer for another pin on the same node counts as progress too.
//! The call has no timeout of its own: the executor bounds it with the pin's overall timeout.

use super::ndjson::{Chunk, Lines, error_message, stream_error_header};
use super::transport::{KuboError, Rpc, classify, garbage, status_error};
use crate::Outcome;
use crate::health::Progress;
use serde_json::Value;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

/// Polls of the node while no reply has arrived: this fraction of the stall timeout...
const POLLS_PER_STALL: u32 = 10;
/// ... within these bounds.
const MIN_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(5);
/// The first poll, at most this long after the request (sooner if the interval is shorter): a
/// pin still running by then is worth watching, and its counters are a baseline for the next
/// poll. Quicker pins cost no poll, and neither does Kubo, whose reply starts within 500 ms.
const FIRST_POLL: Duration = Duration::from_secs(1);

/// Pins `cid` on the node behind `rpc` (`node` names it in logs). `Ok` only when the final
/// `{"Pins":[..]}` names this CID and no stream error was reported; `Stalled` when nothing has
/// shown progress for `stall`. Each sign of progress is also told to `progress`.
pub(super) async fn pin(
    rpc: &Rpc,
    node: &str,
    cid: &str,
    stall: Duration,
    progress: &Progress,
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
    let mut watch = Watch::new(rpc, poll_interval(stall), stall);
    let mut sent = std::pin::pin!(request.send());
    // Until the reply's headers arrive (at the end, on js-ipfs), the node is polled.
    let response = loop {
        tokio::select! {
            response = &mut sent => break response.map_err(|e| classify(&e))?,
            seen = watch.next() => {
                if seen == Seen::Progress {
                    last_progress = Instant::now();
                    progress.moved();
                }
            }
            () = sleep_until(last_progress + stall) => {
                tracing::debug!(node = %node, polls = watch.polls, "pin/add stalled before any reply");
                return Ok(Outcome::Stalled);
            }
        }
    };
    if !response.status().is_success() {
        return Err(status_error(response, rpc.call_timeout()).await);
    }
    if let Some(err) = stream_error_header(response.headers()) {
        return Ok(Outcome::Error(err));
    }
    // The node answered; from now on its stream's own counters tell (Kubo).
    last_progress = Instant::now();
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
                LineEffect::Progressed => {
                    last_progress = Instant::now();
                    progress.moved();
                }
                LineEffect::Nothing => {}
                LineEffect::Failed(message) => return Ok(Outcome::Error(message)),
            },
            Chunk::StreamError(err) => return Ok(Outcome::Error(err)),
        }
    }
    Ok(state.outcome(cid))
}

/// How often the node is polled while a pin has no reply yet.
fn poll_interval(stall: Duration) -> Duration {
    (stall / POLLS_PER_STALL).clamp(MIN_POLL, MAX_POLL)
}

/// What a poll of the node showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Progress,
    /// Flat counters while wanting blocks, the first poll (a baseline), or no answer.
    Nothing,
}

/// The node's `bitswap/stat`, polled every `interval` while a pin has no reply.
struct Watch<'a> {
    rpc: &'a Rpc,
    interval: Duration,
    /// How long one poll may take: a node busy pinning answers late, which is no stall.
    bound: Duration,
    next_poll: Instant,
    last: Option<Bitswap>,
    /// Polls made (for logs).
    polls: u32,
}

impl<'a> Watch<'a> {
    fn new(rpc: &'a Rpc, interval: Duration, bound: Duration) -> Self {
        Watch {
            rpc,
            interval,
            bound,
            next_poll: Instant::now() + interval.min(FIRST_POLL),
            last: None,
            polls: 0,
        }
    }

    /// Waits for the next poll time, then polls. Cancel-safe: the schedule is kept in `self`,
    /// and a poll cut short only loses its answer.
    async fn next(&mut self) -> Seen {
        sleep_until(self.next_poll).await;
        self.next_poll = Instant::now() + self.interval;
        self.polls += 1;
        // A poll that has not answered within the stall timeout shows nothing.
        let reply = timeout(self.bound, self.rpc.call_json::<Value>("bitswap/stat", &[])).await;
        let Some(now) = reply
            .ok()
            .and_then(Result::ok)
            .as_ref()
            .and_then(Bitswap::parse)
        else {
            return Seen::Nothing;
        };
        let seen = now.progress_since(self.last.as_ref());
        self.last = Some(now);
        seen
    }
}

/// The parts of `bitswap/stat` that show a transfer moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bitswap {
    blocks: u64,
    bytes: u64,
    /// The wantlist is not empty: the node is waiting for blocks from the network.
    wanting: bool,
}

impl Bitswap {
    /// Kubo answers numbers, js-ipfs decimal strings (its counters are BigInts); an empty
    /// wantlist is `[]` or `null`.
    fn parse(v: &Value) -> Option<Bitswap> {
        let counter = |key: &str| match v.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let wanting = match v.get("Wantlist") {
            Some(Value::Array(wants)) => !wants.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => return None,
        };
        Some(Bitswap {
            blocks: counter("BlocksReceived")?,
            bytes: counter("DataReceived")?,
            wanting,
        })
    }

    fn progress_since(&self, before: Option<&Bitswap>) -> Seen {
        let received = before.is_some_and(|b| self.blocks > b.blocks || self.bytes > b.bytes);
        if received || !self.wanting {
            Seen::Progress
        } else {
            Seen::Nothing
        }
    }
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
            Some(pins) if pins.iter().any(|p| crate::cid_identity::same(p, cid)) => Outcome::Ok,
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

    use crate::kubo::recorded::*;
    use crate::kubo::replay::{Replay, Reply};
    use std::time::Instant as StdInstant;

    /// js-ipfs' answer to `pin/add`: nothing, then `{"Pins":[..]}` after `after`.
    fn js_pin_after(after: Duration) -> Reply {
        Reply::whole(JS_JSON_HEAD, &js_pins(V1_B58)).after(after)
    }

    fn js_bitswap(polls: &'static [&'static str], then: &'static str) -> impl Fn(usize) -> Reply {
        move |nth| Reply::whole(JS_JSON_HEAD, polls.get(nth).copied().unwrap_or(then))
    }

    /// A transfer moving, as js-ipfs shows it: counters rising at every poll.
    fn js_bitswap_rising(nth: usize) -> Reply {
        let moving = JS_BITSWAP_MOVING[0].replace(
            r#""BlocksReceived":"804""#,
            &format!(r#""BlocksReceived":"{}""#, 804 + nth * 7),
        );
        Reply::whole(JS_JSON_HEAD, &moving)
    }

    async fn pin_via(replay: &Replay, stall: Duration) -> (Outcome, Duration) {
        let rpc = replay.rpc();
        let started = StdInstant::now();
        let outcome = pin(&rpc, "node", V1, stall, &Progress::none())
            .await
            .unwrap_or_else(Outcome::from);
        (outcome, started.elapsed())
    }

    const STALL: Duration = Duration::from_millis(600);

    /// js-ipfs answers at the end: a pin three times longer than the stall timeout, with blocks
    /// arriving, is not stalled.
    #[tokio::test]
    async fn js_ipfs_pin_longer_than_the_stall_timeout_while_blocks_arrive() {
        let replay = Replay::start(|path, nth| match path.split('?').next() {
            Some("/api/v0/pin/add") => js_pin_after(STALL * 3),
            _ => js_bitswap_rising(nth),
        })
        .await;
        let (outcome, took) = pin_via(&replay, STALL).await;
        assert_eq!(outcome, Outcome::Ok, "after {took:?}");
        assert!(took >= STALL * 3, "{took:?}");
        assert!(replay.count("bitswap/stat") >= 10, "{:?}", replay.calls());
    }

    /// The recorded transfer that stopped: progress while the counters rise, then flat counters
    /// with a wantlist: stalled, one stall timeout (and at most one poll) after the last rise.
    #[tokio::test]
    async fn js_ipfs_transfer_that_stops_is_stalled() {
        static POLLS: [&str; 3] = JS_BITSWAP_MOVING;
        let stats = js_bitswap(&POLLS, JS_BITSWAP_STOPPED);
        let replay = Replay::start(move |path, nth| match path.split('?').next() {
            Some("/api/v0/pin/add") => Reply::hang(JS_JSON_HEAD).after(Duration::from_secs(3600)),
            _ => stats(nth),
        })
        .await;
        let (outcome, took) = pin_via(&replay, STALL).await;
        assert_eq!(outcome, Outcome::Stalled);
        // Polls every 100 ms: rises seen at polls 2, 3 and 4 (the first is a baseline).
        let last_rise = poll_interval(STALL) * 4;
        assert!(took >= last_rise + STALL, "{took:?}");
        assert!(
            took < last_rise + STALL + poll_interval(STALL) * 2 + Duration::from_millis(300),
            "{took:?}"
        );
    }

    /// Nobody serves the blocks: flat counters, a wantlist: stalled on time.
    #[tokio::test]
    async fn js_ipfs_pin_nobody_serves_is_stalled_on_time() {
        let replay = Replay::start(|path, _| match path.split('?').next() {
            Some("/api/v0/pin/add") => Reply::hang(JS_JSON_HEAD).after(Duration::from_secs(3600)),
            _ => Reply::whole(JS_JSON_HEAD, JS_BITSWAP_STOPPED),
        })
        .await;
        let (outcome, took) = pin_via(&replay, STALL).await;
        assert_eq!(outcome, Outcome::Stalled);
        assert!(
            took >= STALL && took < STALL + Duration::from_millis(400),
            "{took:?}"
        );
    }

    /// Pinning blocks it already has, js-ipfs wants nothing from the network: not stalled.
    #[tokio::test]
    async fn js_ipfs_pin_of_local_blocks_is_not_stalled() {
        let replay = Replay::start(|path, _| match path.split('?').next() {
            Some("/api/v0/pin/add") => js_pin_after(STALL * 2),
            _ => Reply::whole(JS_JSON_HEAD, JS_BITSWAP_IDLE),
        })
        .await;
        assert_eq!(pin_via(&replay, STALL).await.0, Outcome::Ok);
    }

    /// A node that does not answer its polls shows no progress.
    #[tokio::test]
    async fn unanswered_polls_are_no_progress() {
        let replay = Replay::start(|path, _| match path.split('?').next() {
            Some("/api/v0/pin/add") => js_pin_after(STALL * 3),
            _ => Reply::whole(JS_JSON_HEAD, JS_BITSWAP_IDLE).after(Duration::from_secs(3600)),
        })
        .await;
        let (outcome, took) = pin_via(&replay, STALL).await;
        assert_eq!(outcome, Outcome::Stalled);
        assert!(took < STALL * 2, "{took:?}");
    }

    /// Kubo streams its counters: they are the signal, and the node is never polled.
    #[tokio::test]
    async fn kubo_progress_stream_longer_than_the_stall_timeout() {
        let mut lines: Vec<String> = (0..25).map(|n| kubo_progress(n * 3)).collect();
        lines.push(js_pins(V1));
        let replay = Replay::start(move |path, _| match path.split('?').next() {
            Some("/api/v0/pin/add") => {
                Reply::stream(KUBO_STREAM_HEAD, &lines, Duration::from_millis(50))
            }
            _ => Reply::whole(JS_JSON_HEAD, JS_BITSWAP_STOPPED),
        })
        .await;
        let (outcome, took) = pin_via(&replay, STALL).await;
        assert_eq!(outcome, Outcome::Ok);
        assert!(took > STALL * 2, "{took:?}");
        assert_eq!(replay.count("bitswap/stat"), 0, "{:?}", replay.calls());
    }

    /// Kubo repeats the same count every 500 ms while stuck: stalled, although lines arrive.
    #[tokio::test]
    async fn kubo_repeated_counters_are_a_stall() {
        let lines: Vec<String> = [0, 0, 4, 9]
            .into_iter()
            .chain(std::iter::repeat_n(9, 40))
            .map(kubo_progress)
            .collect();
        let replay = Replay::start(move |_, _| {
            Reply::stream(KUBO_STREAM_HEAD, &lines, Duration::from_millis(50)).then_hang()
        })
        .await;
        let (outcome, took) = pin_via(&replay, STALL).await;
        assert_eq!(outcome, Outcome::Stalled);
        // The last rise came with the 4th line, at 200 ms.
        let last_rise = Duration::from_millis(200);
        assert!(took >= last_rise + STALL, "{took:?}");
        assert!(
            took < last_rise + STALL + Duration::from_millis(300),
            "{took:?}"
        );
    }

    /// Kubo reports a failure after the 200 only in the `X-Stream-Error` trailer.
    #[tokio::test]
    async fn kubo_late_failure_in_the_trailer() {
        let lines = vec![kubo_progress(0), kubo_progress(12)];
        let replay = Replay::start(move |_, _| {
            Reply::stream(KUBO_STREAM_HEAD, &lines, Duration::from_millis(20))
                .with_trailer(&kubo_error("merkledag: not found"))
        })
        .await;
        let (outcome, _) = pin_via(&replay, STALL).await;
        assert!(
            matches!(&outcome, Outcome::Error(m) if m.contains("merkledag: not found")),
            "{outcome:?}"
        );
    }

    #[test]
    fn bitswap_stat_of_both_kinds() {
        let js = Value::from_str_checked(JS_BITSWAP_MOVING[0]);
        assert_eq!(
            Bitswap::parse(&js),
            Some(Bitswap {
                blocks: 804,
                bytes: 171_047_704,
                wanting: true
            })
        );
        let kubo = Value::from_str_checked(
            r#"{"BlocksReceived":12,"DataReceived":3000,"Wantlist":null,"Peers":[]}"#,
        );
        let kubo = Bitswap::parse(&kubo).unwrap();
        assert!(!kubo.wanting);
        // An empty wantlist is progress even on the first poll; a wanting node needs a rise.
        assert_eq!(kubo.progress_since(None), Seen::Progress);
        let stopped = Bitswap::parse(&Value::from_str_checked(JS_BITSWAP_STOPPED)).unwrap();
        assert_eq!(stopped.progress_since(None), Seen::Nothing);
        assert_eq!(stopped.progress_since(Some(&stopped)), Seen::Nothing);
        let before = Bitswap::parse(&js).unwrap();
        assert_eq!(stopped.progress_since(Some(&before)), Seen::Progress);
        assert_eq!(
            Bitswap::parse(&Value::from_str_checked(r#"{"Wantlist":[]}"#)),
            None
        );
    }

    /// `serde_json::from_str` for test constants.
    trait FromStrChecked {
        fn from_str_checked(s: &str) -> Value;
    }
    impl FromStrChecked for Value {
        fn from_str_checked(s: &str) -> Value {
            serde_json::from_str(s).expect("test JSON")
        }
    }

    #[test]
    fn poll_interval_follows_the_stall_timeout() {
        assert_eq!(
            poll_interval(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(20)),
            Duration::from_secs(2)
        );
        assert_eq!(poll_interval(Duration::from_millis(300)), MIN_POLL);
    }
}
