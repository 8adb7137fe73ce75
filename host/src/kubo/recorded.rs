//! Test support: node replies as recorded, for the replay server (`replay`).
//!
//! js-ipfs: captured with `curl -i --raw` from js-ipfs 0.66.1 daemons on this machine, during a
//! 600 MB transfer from one node to another (`Date` headers dropped, wantlists trimmed to their
//! first two entries: they held 1,146 to 1,600 CIDs).
//!
//! Kubo: captured from Kubo 0.43.1 daemons on this machine by `scripts/capture-kubo-replies.sh`
//! (rerun it to re-capture: it starts its own loopback daemons and writes one file per reply):
//! `pin/add?progress=true` streams `{"Progress":n,"Bytes":b}` every 500 ms (`{}` while nothing is
//! counted), `refs` lines are `{"Ref":…,"Err":…}`, errors before output are HTTP 500 with Kubo's
//! error object, errors after output start come in the `X-Stream-Error` trailer.

/// js-ipfs: every JSON answer (`pin/add` at the end, `bitswap/stat`, `swarm/*`).
pub(super) const JS_JSON_HEAD: &str = "HTTP/1.1 200 OK
content-type: application/json; charset=utf-8
cache-control: no-cache
Connection: keep-alive
Keep-Alive: timeout=5";

/// js-ipfs: streamed answers (`refs`, `refs/local`).
pub(super) const JS_STREAM_HEAD: &str = "HTTP/1.1 200 OK
x-chunked-output: 1
content-type: application/json; charset=utf-8
trailer: X-Stream-Error
cache-control: no-cache
Connection: keep-alive
Keep-Alive: timeout=5
Transfer-Encoding: chunked";

/// js-ipfs `bitswap/stat` while a pin fetches: three polls one to two seconds apart, blocks
/// arriving between them ...
pub(super) const JS_BITSWAP_MOVING: [&str; 3] = [
    r#"{"ProvideBufLen":0,"BlocksReceived":"804","Wantlist":[{"/":"zb2rhgz59csBBwzkWUcyc3hM7crMpozsZRyUqv7UK7crKCZXJ"},{"/":"zb2rhgQY87uSgpaigjjAuG1w2SxrMU1XTmDp7tmfty7XwkdVA"}],"Peers":["12D3KooWQr2vB2Pp1pxc3fRyiskHtZ4szzeTvUNtdQJjy1VZegMm"],"DupBlksReceived":"0","DupDataReceived":"0","DataReceived":"171047704","BlocksSent":"0","DataSent":"0"}"#,
    r#"{"ProvideBufLen":0,"BlocksReceived":"1087","Wantlist":[{"/":"zb2rhjeiBnAZxQactgBJssC6R1bMp2VoLhD2TSW7DvmayHxXg"},{"/":"zb2rhnAccY3T2rFLvwfxoVK9Uo7468cNM8L7HvkmWUxyqYk1S"}],"Peers":["12D3KooWQr2vB2Pp1pxc3fRyiskHtZ4szzeTvUNtdQJjy1VZegMm"],"DupBlksReceived":"0","DupDataReceived":"0","DataReceived":"245234456","BlocksSent":"0","DataSent":"0"}"#,
    r#"{"ProvideBufLen":0,"BlocksReceived":"1266","Wantlist":[{"/":"zb2rhaLD9qZS8pLTcu6uHN7QuMoZXf9xP29oKiZ8muZr3zsry"},{"/":"zb2rhmPZmSLX4LyuUd1Rb94mRRA9ihLC4SJHCUZb7TM78Xc5v"}],"Peers":["12D3KooWQr2vB2Pp1pxc3fRyiskHtZ4szzeTvUNtdQJjy1VZegMm"],"DupBlksReceived":"0","DupDataReceived":"0","DataReceived":"292158232","BlocksSent":"0","DataSent":"0"}"#,
];
/// ... and three seconds later: the transfer has stopped (it stayed so), wanting more.
pub(super) const JS_BITSWAP_STOPPED: &str = r#"{"ProvideBufLen":0,"BlocksReceived":"1406","Wantlist":[{"/":"zb2rhmYwoBoVAk4cvBzHFnMiGTvZER3NiZFvtwLrKwv6A3L1B"},{"/":"zb2rhYP912FooFZZJqPSniht6NSi5jqDRPZ2Wzv1ug7xUfBY4"}],"Peers":["12D3KooWQr2vB2Pp1pxc3fRyiskHtZ4szzeTvUNtdQJjy1VZegMm"],"DupBlksReceived":"0","DupDataReceived":"0","DataReceived":"328858392","BlocksSent":"0","DataSent":"0"}"#;

/// js-ipfs `bitswap/stat` of a node that wants nothing (while it pins blocks it already has).
pub(super) const JS_BITSWAP_IDLE: &str = r#"{"ProvideBufLen":0,"BlocksReceived":"0","Wantlist":[],"Peers":["12D3KooWBih7MSCguato3UQU9Y59bZ6xgZLLZDDhkbJi7kPGaFfb"],"DupBlksReceived":"0","DupDataReceived":"0","DataReceived":"0","BlocksSent":"11115","DataSent":"2754866272"}"#;

/// js-ipfs `pin/add?...&progress=true`: one answer, once the pin is complete.
pub(super) fn js_pins(cid: &str) -> String {
    format!(r#"{{"Pins":["{cid}"]}}"#)
}

/// Kubo: streamed answers (`pin/add?progress=true`, `refs`).
pub(super) const KUBO_STREAM_HEAD: &str = "HTTP/1.1 200 OK
Access-Control-Allow-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length
Access-Control-Expose-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length
Content-Type: application/json
Server: kubo/0.43.1
Trailer: X-Stream-Error
Vary: Origin
X-Chunked-Output: 1
Transfer-Encoding: chunked";

/// Kubo 0.43.1 `dag/get`: the node as dag-json, streamed as text (captured here).
pub(super) const KUBO_DAG_GET_HEAD: &str = "HTTP/1.1 200 OK
Access-Control-Allow-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length
Access-Control-Expose-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length
Content-Type: text/plain
Server: kubo/0.43.1
Trailer: X-Stream-Error
Vary: Origin
X-Stream-Output: 1
Transfer-Encoding: chunked";

/// Kubo: an error before any output (HTTP 500; Kubo sends the body chunked, the replay with a
/// content-length, which a client reads the same).
pub(super) const KUBO_ERROR_HEAD: &str = "HTTP/1.1 500 Internal Server Error
Access-Control-Allow-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length
Access-Control-Expose-Headers: X-Stream-Output, X-Chunked-Output, X-Content-Length
Content-Type: application/json
Server: kubo/0.43.1
Trailer: X-Stream-Error
Vary: Origin";

/// Kubo's error object.
pub(super) fn kubo_error(message: &str) -> String {
    format!(r#"{{"Message":"{message}","Code":0,"Type":"error"}}"#)
}

/// Kubo's offline blockservice, for a block it does not have.
pub(super) fn kubo_offline_missing(cid: &str) -> String {
    format!("block was not found locally (offline): ipld: could not find {cid}")
}

/// Kubo `pin/add` progress lines: `{}` while nothing is counted (`omitempty`), then the count of
/// blocks and their bytes (0.43.1: `{"Progress":110,"Bytes":27284840}`, about 248 KB a block).
pub(super) fn kubo_progress(n: u64) -> String {
    if n == 0 {
        "{}".to_string()
    } else {
        format!(r#"{{"Progress":{n},"Bytes":{}}}"#, n * 248_044)
    }
}

/// One js-ipfs `refs` / `refs/local` line.
pub(super) fn js_ref(cid: &str) -> String {
    format!(r#"{{"Ref":"{cid}"}}"#)
}

/// One Kubo `refs` line.
pub(super) fn kubo_ref(cid: &str) -> String {
    format!(r#"{{"Ref":"{cid}","Err":""}}"#)
}

/// Kubo 0.43.1's offline `refs` `Err` for a block missing below the root, captured on a daemon
/// here: the line is `{"Ref":"","Err":"failed to fetch all nodes"}`, naming no block.
pub(super) const KUBO_REFS_UNNAMED_MISSING: &str = "failed to fetch all nodes";

/// Kubo's `refs` line for a walk that failed there.
pub(super) fn ref_error(message: &str) -> String {
    format!(r#"{{"Ref":"","Err":"{message}"}}"#)
}

/// js-ipfs 0.66.1 (ipfs-core 0.18.1) `version` and `repo/stat`, captured on this machine: numbers
/// as decimal strings, and `Number.MAX_SAFE_INTEGER` for "no storage limit".
pub(super) const JS_VERSION: &str = r#"{"Version":"0.18.1","Commit":"","Repo":"12","ipfs-core":"0.18.1","interface-ipfs-core":"^0.158.1","ipfs-http-client":"^60.0.1"}"#;
pub(super) const JS_REPO_STAT: &str = r#"{"NumObjects":"1","RepoSize":"1710","RepoPath":"/tmp/jsn/repo","Version":"12","StorageMax":"9007199254740991"}"#;

/// js-ipfs `swarm/peers` of a node with one connection (the shape Kubo answers too:
/// `core/commands/swarm.go`, `connInfos{Peers []connInfo{Addr, Peer, ...}}`), and of one with
/// none (Kubo: `{"Peers":null}`).
pub(super) const JS_SWARM_PEERS: &str = r#"{"Peers":[{"Addr":"/ip4/127.0.0.1/tcp/45004","Peer":"12D3KooWB7bD9fNKzeywxFXz7sTnbYY3ySmV6v5GcpNNCQtbZB39"}]}"#;
pub(super) const KUBO_NO_PEERS: &str = r#"{"Peers":null}"#;

/// Kubo `version` (`core/commands/version.go`: `VersionOutput{Version, Commit, Repo, System,
/// Golang}`) and `repo/stat` (`corerepo.Stat`: `SizeStat{RepoSize, StorageMax}`, `NumObjects`,
/// `RepoPath`, `Version`, numbers as JSON numbers; `StorageMax` from `Datastore.StorageMax`,
/// 10 GB by default).
pub(super) const KUBO_VERSION: &str =
    r#"{"Version":"0.32.1","Commit":"","Repo":"16","System":"amd64/linux","Golang":"go1.23.3"}"#;
pub(super) const KUBO_REPO_STAT: &str = r#"{"RepoSize":9321000000,"StorageMax":10000000000,"NumObjects":48210,"RepoPath":"/data/ipfs","Version":"fs-repo@16"}"#;

/// Kubo with `API.Authorizations` set, asked without the right `Authorization` header
/// (`core/corehttp/commands.go`, `withAuthSecrets`).
pub(super) const KUBO_FORBIDDEN_HEAD: &str = "HTTP/1.1 403 Forbidden
Content-Type: text/plain; charset=utf-8
X-Content-Type-Options: nosniff";
pub(super) const KUBO_FORBIDDEN: &str = "Kubo RPC Access Denied: Please provide a valid authorization token as defined in the API.Authorizations configuration.";
