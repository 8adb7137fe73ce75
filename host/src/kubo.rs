//! The real node client: the Kubo RPC API over HTTP (reqwest), as spoken by Kubo and by js-ipfs.
//!
//! Every call is a POST to `{base}/api/v0/...`, carries the configured credentials (production
//! nodes sit behind a reverse proxy) and is bounded in time: a connect timeout plus a per-call
//! timeout, except `pin/add`, which is bounded by its stall timeout here and by the pin's overall
//! timeout in the executor.
//!
//! Differences between Kubo and js-ipfs that shape this client (checked against js-ipfs 0.66.1
//! and the Kubo sources):
//! - `pin/add?progress=true`: Kubo streams `{"Progress":n,"Bytes":b}` every 500 ms *whether or
//!   not anything moved*, then `{"Pins":[..]}`, and reports a late failure only in the
//!   `X-Stream-Error` trailer. js-ipfs ignores `progress` and answers once, at the end, with a
//!   plain JSON body. So a stall is "no *increase* of progress for `stall`", counted from the
//!   request; on js-ipfs any pin longer than `stall` therefore reads as stalled.
//! - `offline=true` is honoured by Kubo and silently dropped by js-ipfs: there, `block/stat` and
//!   `refs` on a missing block ask bitswap and hang (or fetch it from a connected peer). See
//!   [`KuboClient::check_retrievable`](Node::check_retrievable) for how presence is checked on
//!   each.
//! - js-ipfs prints CIDv1 in base58btc (`zdj7…`) unless asked otherwise; CIDs are compared
//!   parsed, never as strings.

use crate::Outcome;
use crate::node::Node;
use crate::policy::contract::HttpError;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use reqwest::multipart::{Form, Part};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::{Instant, timeout, timeout_at};

/// Multicodec of raw blocks: leaves without links.
const RAW_CODEC: u64 = 0x55;
/// Multihash code of identity hashes: the data is inline in the CID, never stored as a block.
const IDENTITY_HASH: u64 = 0x00;
/// How much of an unparseable or non-JSON reply goes into an error message.
const SNIPPET: usize = 200;

/// Credentials sent on every request.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic authentication.
    Basic { user: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            Auth::Bearer(_) => write!(f, "Bearer(***)"),
        }
    }
}

/// Time bounds and limits of a [`KuboClient`].
#[derive(Debug, Clone)]
pub struct KuboConfig {
    /// TCP (and TLS) connection establishment.
    pub connect_timeout: Duration,
    /// Whole request, body included, for every call except `pin/add`, `add` and `repo/gc`.
    pub call_timeout: Duration,
    /// Whole request for the calls whose duration grows with the data: `add`, `repo/gc`.
    pub slow_call_timeout: Duration,
    /// Idle pooled connections are dropped after this. js-ipfs (Node's http server) closes idle
    /// keep-alive connections after 5 s; reusing one at that instant fails the request, so the
    /// default stays below it.
    pub pool_idle_timeout: Duration,
    /// Concurrent requests while checking that a DAG's blocks are present.
    pub check_concurrency: usize,
}

impl Default for KuboConfig {
    fn default() -> Self {
        KuboConfig {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            slow_call_timeout: Duration::from_secs(3600),
            pool_idle_timeout: Duration::from_secs(4),
            check_concurrency: 8,
        }
    }
}

/// Why an RPC call failed; [`Outcome`] is the policy-facing form (`Outcome::from`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KuboError {
    /// Connection refused or reset, DNS failure, connect timeout.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The call did not finish within its timeout.
    #[error("timed out")]
    Timeout,
    /// The node (or the proxy in front of it) answered with a non-2xx status.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// A 2xx answer that does not parse as the expected reply.
    #[error("garbage reply: {0}")]
    Garbage(String),
    /// Anything else: bad input, an error reported inside a stream, a local I/O error.
    #[error("{0}")]
    Other(String),
}

impl From<KuboError> for Outcome {
    fn from(e: KuboError) -> Outcome {
        match e {
            KuboError::Unreachable(m) => Outcome::Unreachable(m),
            KuboError::Timeout => Outcome::Timeout,
            KuboError::Http { status, message } => {
                Outcome::HttpError(HttpError { status, message })
            }
            e @ KuboError::Garbage(_) => Outcome::Error(e.to_string()),
            KuboError::Other(m) => Outcome::Error(m),
        }
    }
}

/// What `id` says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: String,
    /// Swarm addresses, each ending in `/p2p/<id>`.
    pub addresses: Vec<String>,
    /// `kubo/0.x.y/...` or `js-ipfs/0.x.y`.
    pub agent_version: String,
}

/// The UnixFS type of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    File,
    Directory,
    /// Anything else the node reports (`symlink`, ...).
    Other(String),
}

impl ObjectKind {
    pub fn as_str(&self) -> &str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::Directory => "directory",
            ObjectKind::Other(s) => s,
        }
    }
}

/// Which implementation answers: decides how local presence of blocks is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// Honours `offline=true` (Kubo, and anything that is not js-ipfs).
    Kubo,
    /// Ignores `offline`: presence comes from `refs/local`.
    JsIpfs,
}

/// A Kubo RPC client for one node.
pub struct KuboClient {
    name: String,
    /// `{base}/api/v0/`, ready for `join`.
    api: Url,
    auth: Option<Auth>,
    http: reqwest::Client,
    cfg: KuboConfig,
    flavour: OnceCell<Flavour>,
}

impl fmt::Debug for KuboClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KuboClient")
            .field("name", &self.name)
            .field("api", &self.api.as_str())
            .field("auth", &self.auth)
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl KuboClient {
    /// A client with the default [`KuboConfig`]. `base_url` is `http(s)://host:port` (a trailing
    /// `/` or `/api/v0` is accepted) or a multiaddr such as `/ip4/127.0.0.1/tcp/5001`.
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        auth: Option<Auth>,
    ) -> Result<Self, KuboError> {
        Self::with_config(name, base_url, auth, KuboConfig::default())
    }

    pub fn with_config(
        name: impl Into<String>,
        base_url: &str,
        auth: Option<Auth>,
        cfg: KuboConfig,
    ) -> Result<Self, KuboError> {
        crate::install_crypto_provider();
        let api = api_url(base_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .user_agent(concat!("pinwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                KuboError::Other(format!("cannot build the HTTP client: {}", chain(&e)))
            })?;
        Ok(KuboClient {
            name: name.into(),
            api,
            auth,
            http,
            cfg,
            flavour: OnceCell::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `{base}/api/v0/`.
    pub fn api_url(&self) -> &str {
        self.api.as_str()
    }

    pub fn config(&self) -> &KuboConfig {
        &self.cfg
    }

    /// `id`: peer id, swarm addresses (with `/p2p/<id>`), agent version.
    pub async fn id(&self) -> Result<PeerInfo, KuboError> {
        #[derive(Deserialize)]
        struct IdReply {
            #[serde(rename = "ID")]
            id: String,
            #[serde(rename = "Addresses", default)]
            addresses: Option<Vec<String>>,
            #[serde(rename = "AgentVersion", default)]
            agent_version: String,
        }
        let reply: IdReply = self.call_json("id", &[]).await?;
        let addresses = normalise_swarm_addrs(reply.addresses.unwrap_or_default(), &reply.id);
        Ok(PeerInfo {
            id: reply.id,
            addresses,
            agent_version: reply.agent_version,
        })
    }

    /// Uploads a directory (recursively) without pinning it: `add` with `cid-version=1`,
    /// `raw-leaves=true`, `pin=false`. Pinning is the policy's job, with verification: an
    /// upload that pinned as a side effect would hide a node that lies about `pin/add`. The
    /// multipart body holds the directory itself (named after its last path component) followed
    /// by its entries in depth-first order, each file streamed from disk. Returns the CID of the
    /// directory.
    ///
    /// Every regular file and subdirectory is included, hidden ones too; symlinks and special
    /// files are refused.
    pub async fn add_dir(&self, dir: &Path) -> Result<String, KuboError> {
        let dir = dir.to_path_buf();
        let (root_name, entries) = tokio::task::spawn_blocking(move || walk_dir(&dir))
            .await
            .map_err(|e| KuboError::Other(format!("directory walk failed: {e}")))??;

        let mut form = Form::new().percent_encode_noop();
        for entry in entries {
            let name = encode_filename(&entry.rel);
            let part = match entry.source {
                None => Part::bytes(Vec::new()).mime_str("application/x-directory"),
                Some(path) => Part::stream_with_length(lazy_file_body(path), entry.len)
                    .mime_str("application/octet-stream"),
            }
            .map_err(|e| KuboError::Other(format!("multipart: {e}")))?
            .file_name(name);
            form = form.part("file", part);
        }

        let args = [
            ("cid-version", "1"),
            ("raw-leaves", "true"),
            ("pin", "false"),
            ("wrap-with-directory", "false"),
            ("progress", "false"),
            ("cid-base", "base32"),
        ];
        let request = self.post("add", &args).multipart(form);
        let lines = self.call_lines(request, self.cfg.slow_call_timeout).await?;
        root_of_add(&lines, &root_name)
    }

    /// `pin/rm` (recursive).
    pub async fn pin_rm(&self, cid: &str) -> Result<(), KuboError> {
        let _: Value = self
            .call_json("pin/rm", &[("arg", cid), ("recursive", "true")])
            .await?;
        Ok(())
    }

    /// `files/stat` on `/ipfs/<cid>` (a path is accepted too): file or directory. Works on Kubo
    /// and js-ipfs. The node fetches the root block if it does not have it, within the call
    /// timeout.
    pub async fn object_type(&self, cid_or_path: &str) -> Result<ObjectKind, KuboError> {
        #[derive(Deserialize)]
        struct Stat {
            #[serde(rename = "Type")]
            kind: String,
        }
        let path = if cid_or_path.starts_with('/') {
            cid_or_path.to_string()
        } else {
            format!("/ipfs/{cid_or_path}")
        };
        let stat: Stat = self.call_json("files/stat", &[("arg", &path)]).await?;
        Ok(match stat.kind.as_str() {
            "file" => ObjectKind::File,
            "directory" => ObjectKind::Directory,
            other => ObjectKind::Other(other.to_string()),
        })
    }

    /// `repo/gc`: returns how many blocks were removed.
    pub async fn repo_gc(&self) -> Result<usize, KuboError> {
        let request = self.post("repo/gc", &[]);
        let lines = self.call_lines(request, self.cfg.slow_call_timeout).await?;
        let mut removed = 0;
        for line in &lines {
            if let Some(err) = line
                .get("Error")
                .or_else(|| line.get("Err"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                return Err(KuboError::Other(format!("repo/gc: {err}")));
            }
            if line.get("Key").is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    // ----- plumbing -----

    fn url(&self, path: &str, args: &[(&str, &str)]) -> Url {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map(|mut segs| {
                segs.pop_if_empty().extend(path.split('/'));
            })
            .ok();
        if !args.is_empty() {
            url.query_pairs_mut().extend_pairs(args);
        }
        url
    }

    fn post(&self, path: &str, args: &[(&str, &str)]) -> RequestBuilder {
        let request = self.http.post(self.url(path, args));
        match &self.auth {
            None => request,
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
        }
    }

    /// Sends with a whole-request timeout and turns a non-2xx answer into [`KuboError::Http`].
    async fn send(&self, request: RequestBuilder, limit: Duration) -> Result<Response, KuboError> {
        let response = request
            .timeout(limit)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(status_error(response, limit).await)
        }
    }

    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        args: &[(&str, &str)],
    ) -> Result<T, KuboError> {
        let response = self
            .send(self.post(path, args), self.cfg.call_timeout)
            .await?;
        let body = response.bytes().await.map_err(|e| classify(&e))?;
        serde_json::from_slice(&body).map_err(|e| garbage(&body, &e))
    }

    /// A streamed (NDJSON) reply, read to the end: one JSON value per line. An error reported in
    /// the stream (an `X-Stream-Error` header or trailer, or a `{"Type":"error"}` line) fails the
    /// call.
    async fn call_lines(
        &self,
        request: RequestBuilder,
        limit: Duration,
    ) -> Result<Vec<Value>, KuboError> {
        let response = self
            .send(request.header(http::header::TE, "trailers"), limit)
            .await?;
        if let Some(err) = stream_error_header(response.headers()) {
            return Err(KuboError::Other(err));
        }
        let mut body = http::Response::from(response).into_body();
        let mut buffer = LineBuffer::default();
        let mut values = Vec::new();
        let mut take = |line: &[u8]| -> Result<(), KuboError> {
            let value: Value = serde_json::from_slice(line).map_err(|e| garbage(line, &e))?;
            if let Some(message) = error_message(&value) {
                return Err(KuboError::Other(message));
            }
            values.push(value);
            Ok(())
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| classify(&e))?;
            match frame.into_data() {
                Ok(data) => {
                    for line in buffer.push(&data) {
                        take(&line)?;
                    }
                }
                Err(frame) => {
                    if let Some(err) = frame.trailers_ref().and_then(stream_error_header) {
                        return Err(KuboError::Other(err));
                    }
                }
            }
        }
        if let Some(line) = buffer.finish() {
            take(&line)?;
        }
        Ok(values)
    }

    async fn flavour(&self) -> Result<Flavour, KuboError> {
        self.flavour
            .get_or_try_init(|| async {
                let info = self.id().await?;
                Ok(if info.agent_version.starts_with("js-ipfs") {
                    Flavour::JsIpfs
                } else {
                    Flavour::Kubo
                })
            })
            .await
            .copied()
    }

    async fn pin_stream(&self, cid: &str, stall: Duration) -> Result<Outcome, KuboError> {
        // `TE: trailers` invites the `X-Stream-Error` trailer through proxies that ask first
        // (Kubo and js-ipfs send it regardless).
        let request = self
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
            return Err(status_error(response, self.cfg.call_timeout).await);
        }
        if let Some(err) = stream_error_header(response.headers()) {
            return Ok(Outcome::Error(err));
        }
        let mut body = http::Response::from(response).into_body();
        let mut buffer = LineBuffer::default();
        let mut state = PinProgress::default();
        loop {
            let frame = match timeout_at(last_progress + stall, body.frame()).await {
                Err(_) if state.pins.is_some() => {
                    // The answer is in; only the end of the stream is late. `verify` will tell.
                    tracing::warn!(node = %self.name, "pin/add: Pins received, then the stream stalled");
                    break;
                }
                Err(_) => return Ok(Outcome::Stalled),
                Ok(None) => break,
                Ok(Some(frame)) => frame.map_err(|e| classify(&e))?,
            };
            match frame.into_data() {
                Ok(data) => {
                    for line in buffer.push(&data) {
                        match state.apply(&line)? {
                            LineEffect::Progressed => last_progress = Instant::now(),
                            LineEffect::Nothing => {}
                            LineEffect::Failed(message) => return Ok(Outcome::Error(message)),
                        }
                    }
                }
                Err(frame) => {
                    if let Some(err) = frame.trailers_ref().and_then(stream_error_header) {
                        return Ok(Outcome::Error(err));
                    }
                }
            }
        }
        if let Some(line) = buffer.finish()
            && let LineEffect::Failed(message) = state.apply(&line)?
        {
            return Ok(Outcome::Error(message));
        }
        Ok(state.outcome(cid))
    }

    async fn verify_inner(&self, cid: &str) -> Result<Outcome, KuboError> {
        #[derive(Deserialize)]
        struct PinLs {
            #[serde(rename = "Keys", default)]
            keys: Option<serde_json::Map<String, Value>>,
        }
        let reply: Result<PinLs, KuboError> = self
            .call_json("pin/ls", &[("arg", cid), ("type", "recursive")])
            .await;
        match reply {
            Ok(PinLs { keys }) => {
                let listed = keys.unwrap_or_default().iter().any(|(key, info)| {
                    same_cid(key, cid)
                        && info.get("Type").and_then(Value::as_str) == Some("recursive")
                });
                Ok(if listed {
                    Outcome::Ok
                } else {
                    Outcome::NotPinned
                })
            }
            Err(KuboError::Http {
                status: 500,
                message,
            }) if is_not_pinned(&message) => Ok(Outcome::NotPinned),
            Err(e) => Err(e),
        }
    }

    /// Is this block in the local store? Never asks the network (see [`Presence`]).
    async fn is_present(&self, presence: &Presence, cid: &Cid) -> Result<bool, KuboError> {
        if cid.hash().code() == IDENTITY_HASH {
            return Ok(true);
        }
        match presence {
            Presence::LocalSet(set) => Ok(set.contains(cid)),
            Presence::Offline => {
                let cid_text = cid.to_string();
                let stat: Result<Value, KuboError> = self
                    .call_json("block/stat", &[("arg", &cid_text), ("offline", "true")])
                    .await;
                match stat {
                    Ok(_) => Ok(true),
                    Err(KuboError::Http {
                        status: 500,
                        message,
                    }) if is_missing_block(&message) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Direct links of a block known to be present (so the node reads it locally).
    async fn links(&self, cid: &Cid) -> Result<Vec<Cid>, KuboError> {
        let cid_text = cid.to_string();
        let request = self.post("refs", &[("arg", &cid_text), ("offline", "true")]);
        let lines = self.call_lines(request, self.cfg.call_timeout).await?;
        parse_refs(&lines)
    }

    /// Present (with its direct links) or missing.
    async fn examine(&self, presence: &Presence, c: Cid) -> Result<Block, KuboError> {
        if !self.is_present(presence, &c).await? {
            return Ok(Block::Missing(c));
        }
        if c.codec() == RAW_CODEC || c.hash().code() == IDENTITY_HASH {
            return Ok(Block::Present(Vec::new()));
        }
        Ok(Block::Present(self.links(&c).await?))
    }

    async fn check_inner(&self, cid: &str) -> Result<Outcome, KuboError> {
        let root =
            Cid::try_from(cid).map_err(|e| KuboError::Other(format!("bad CID {cid}: {e}")))?;
        let presence = match self.flavour().await? {
            Flavour::Kubo => Presence::Offline,
            Flavour::JsIpfs => {
                let request = self.post("refs/local", &[]);
                let lines = self.call_lines(request, self.cfg.call_timeout).await?;
                Presence::LocalSet(LocalBlocks::from_refs(&parse_refs(&lines)?))
            }
        };
        let mut seen = HashSet::new();
        seen.insert(root.hash().to_bytes());
        let mut frontier = vec![root];
        let mut checked = 0usize;
        while !frontier.is_empty() {
            let results: Vec<Result<Block, KuboError>> = futures::stream::iter(frontier.drain(..))
                .map(|c| self.examine(&presence, c))
                .buffer_unordered(self.cfg.check_concurrency.max(1))
                .collect()
                .await;
            for result in results {
                match result? {
                    Block::Missing(block) => {
                        return Ok(Outcome::Unretrievable(format!("block {block} missing")));
                    }
                    Block::Present(links) => {
                        checked += 1;
                        for link in links {
                            if seen.insert(link.hash().to_bytes()) {
                                frontier.push(link);
                            }
                        }
                    }
                }
            }
        }
        tracing::debug!(node = %self.name, %cid, blocks = checked, "all blocks present");
        Ok(Outcome::Ok)
    }
}

#[async_trait]
impl Node for KuboClient {
    /// `pin/add?recursive=true&progress=true`, read line by line. `Stalled` when the progress
    /// counters (`Progress`, `Bytes`) have not increased for `stall` since the request was sent
    /// (Kubo repeats the same counters every 500 ms while stuck, so silence is not the test).
    /// `Ok` only when the final `{"Pins":[..]}` names this CID and no stream error was reported.
    async fn pin(&self, cid: &str, stall: Duration) -> Outcome {
        self.pin_stream(cid, stall)
            .await
            .unwrap_or_else(Outcome::from)
    }

    /// `pin/ls?arg=CID&type=recursive` (never `type=all`, which can walk every DAG).
    async fn verify(&self, cid: &str) -> Outcome {
        self.verify_inner(cid).await.unwrap_or_else(Outcome::from)
    }

    /// Walks the DAG breadth-first, `check_concurrency` requests at a time: every block must be
    /// in the local store; the links of each present non-raw block come from `refs?arg=<block>`
    /// (direct links only, which reads just that block, already known to be local).
    ///
    /// Presence must never trigger a fetch, or a node connected to the provider would "pass" by
    /// downloading the content during the check:
    /// - Kubo honours `offline=true`: `block/stat?offline=true` per block.
    /// - js-ipfs ignores `offline` (its HTTP layer strips unknown query parameters) and
    ///   `block/stat`/`refs` on a missing block go to bitswap: they hang without a provider and
    ///   fetch with one. A short per-call `timeout` would still fetch from a connected peer, so
    ///   instead the client takes one `refs/local` listing (every block in the repo, keyed by
    ///   multihash) and checks membership. That listing grows with the repo, which is acceptable
    ///   for js-ipfs (test nodes); Kubo never takes this path. The implementation is recognised
    ///   once per client by `id`'s `AgentVersion` (`js-ipfs/...`).
    async fn check_retrievable(&self, cid: &str) -> Outcome {
        self.check_inner(cid).await.unwrap_or_else(Outcome::from)
    }

    /// `id`'s addresses, loopback ones first, each ending in `/p2p/<peer id>`.
    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome> {
        let info = self.id().await.map_err(Outcome::from)?;
        if info.addresses.is_empty() {
            return Err(Outcome::Error(format!(
                "{} reports no swarm addresses",
                self.name
            )));
        }
        Ok(info.addresses)
    }

    /// `swarm/connect?arg=ADDR`, one address after the other until one succeeds.
    async fn connect(&self, addrs: &[String]) -> Outcome {
        let mut last = Outcome::Error("no address to dial".into());
        for addr in addrs {
            let reply: Result<Value, KuboError> =
                self.call_json("swarm/connect", &[("arg", addr)]).await;
            match reply {
                Ok(_) => return Outcome::Ok,
                Err(e) => {
                    tracing::debug!(node = %self.name, %addr, error = %e, "swarm/connect failed");
                    last = e.into();
                }
            }
        }
        last
    }
}

// ----- presence of blocks -----

/// How [`KuboClient::is_present`] knows a block is local.
enum Presence {
    /// `block/stat?offline=true` (Kubo).
    Offline,
    /// A `refs/local` snapshot (js-ipfs).
    LocalSet(LocalBlocks),
}

/// One block of the walk.
enum Block {
    Missing(Cid),
    /// Present, with its direct links.
    Present(Vec<Cid>),
}

/// The multihashes of the blocks in a repo. Blockstores are keyed by multihash, so a block
/// stored as `bafkrei…` (raw) is the same block as `bafybei…` (dag-pb) with the same hash.
#[derive(Debug, Default)]
struct LocalBlocks {
    /// Multihashes, as bytes.
    multihashes: HashSet<Vec<u8>>,
}

impl LocalBlocks {
    fn from_refs(cids: &[Cid]) -> Self {
        LocalBlocks {
            multihashes: cids.iter().map(|c| c.hash().to_bytes()).collect(),
        }
    }

    fn contains(&self, cid: &Cid) -> bool {
        self.multihashes.contains(&cid.hash().to_bytes())
    }
}

// ----- pure helpers (unit-tested below) -----

/// `{base}/api/v0/` from a URL (with or without `/api/v0`) or a multiaddr.
/// `{base}/api/v0/` from a node's configured address (http(s) URL, or API multiaddr).
pub fn api_url(base: &str) -> Result<Url, KuboError> {
    let base = base.trim();
    let http = if base.starts_with('/') {
        multiaddr_to_http(base)?
    } else {
        base.to_string()
    };
    let trimmed = http.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/api/v0").unwrap_or(trimmed);
    let url = Url::parse(&format!("{trimmed}/api/v0/"))
        .map_err(|e| KuboError::Other(format!("bad node URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(KuboError::Other(format!(
            "bad node URL {base:?}: expected http(s)://host:port"
        )));
    }
    Ok(url)
}

/// `/ip4/127.0.0.1/tcp/5001` → `http://127.0.0.1:5001`; `/dns4/h/tcp/443/https` → `https://h:443`.
fn multiaddr_to_http(addr: &str) -> Result<String, KuboError> {
    let bad = || KuboError::Other(format!("unsupported API multiaddr {addr:?}"));
    let parts: Vec<&str> = addr.trim_matches('/').split('/').collect();
    let [proto, host, "tcp", port, rest @ ..] = parts.as_slice() else {
        return Err(bad());
    };
    let host = match *proto {
        "ip4" | "dns" | "dns4" | "dns6" => host.to_string(),
        "ip6" => format!("[{host}]"),
        _ => return Err(bad()),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let scheme = match rest {
        [] | ["http"] => "http",
        ["https"] | ["tls", "http"] => "https",
        _ => return Err(bad()),
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

/// Addresses with the peer id appended where missing, deduplicated, loopback first.
fn normalise_swarm_addrs(addrs: Vec<String>, peer_id: &str) -> Vec<String> {
    let suffix = format!("/p2p/{peer_id}");
    let mut out: Vec<String> = Vec::new();
    for addr in addrs {
        let addr = if addr.contains("/p2p/") || addr.contains("/ipfs/") {
            addr
        } else {
            format!("{addr}{suffix}")
        };
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    // Stable: the node's own order is kept within each group.
    out.sort_by_key(|a| !is_loopback(a));
    out
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("/ip4/127.") || addr.starts_with("/ip6/::1/")
}

/// Percent-encodes a multipart file name: everything but unreserved characters, so `/` becomes
/// `%2F` and `+` becomes `%2B` (Kubo decodes with `url.QueryUnescape`, js-ipfs with
/// `decodeURIComponent`; both agree on this form).
fn encode_filename(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Splits a byte stream into lines (without the `\n`; blank lines dropped).
#[derive(Debug, Default)]
struct LineBuffer {
    partial: BytesMut,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.partial.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line = self.partial.split_to(pos + 1).freeze();
            let line = line.slice(..pos);
            if !line.trim_ascii().is_empty() {
                lines.push(line);
            }
        }
        lines
    }

    /// The last line, if the stream did not end with a newline.
    fn finish(&mut self) -> Option<Bytes> {
        let rest = std::mem::take(&mut self.partial).freeze();
        (!rest.trim_ascii().is_empty()).then_some(rest)
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
            Some(pins) if pins.iter().any(|p| same_cid(p, cid)) => Outcome::Ok,
            Some(pins) => Outcome::Error(format!(
                "pin/add answered with pins {pins:?}, which do not include {cid}"
            )),
            None => Outcome::Error("pin/add stream ended without a Pins line".into()),
        }
    }
}

/// `{"Message": "...", "Type": "error"}` (the Kubo/js-ipfs error shape) → the message.
fn error_message(value: &Value) -> Option<String> {
    if value.get("Type").and_then(Value::as_str) != Some("error") {
        return None;
    }
    Some(
        value
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or("error without a message")
            .to_string(),
    )
}

/// The `X-Stream-Error` header or trailer, with the `Message` extracted when it is JSON.
fn stream_error_header(headers: &http::HeaderMap) -> Option<String> {
    let raw = headers.get("x-stream-error")?;
    let text = String::from_utf8_lossy(raw.as_bytes()).trim().to_string();
    if text.is_empty() {
        return None;
    }
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("Message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(text);
    Some(format!("stream error: {message}"))
}

/// The message of a non-2xx body: the JSON `Message` when there is one, else the text.
fn http_error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(message) = value.get("Message").and_then(Value::as_str)
    {
        return message.to_string();
    }
    let text = snippet(body);
    if text.is_empty() {
        status.canonical_reason().unwrap_or("").to_string()
    } else {
        text
    }
}

/// js-ipfs: `path '<cid>' is not pinned` (pin/ls) or `<cid> is not pinned` (pin/rm);
/// Kubo: `path '<cid>' is not pinned`, `... is not pinned recursively`.
fn is_not_pinned(message: &str) -> bool {
    message.contains("not pinned")
}

/// Kubo's `block/stat?offline=true` on an absent block: `block was not found locally
/// (offline): ipld: could not find <cid>` (wording varies across versions).
fn is_missing_block(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not found") || m.contains("could not find")
}

/// Two CID strings name the same content: equal codec and multihash, whatever the version or
/// base (js-ipfs answers `zdj7…` for a `bafy…` request). Unparseable ones compare as text.
fn same_cid(a: &str, b: &str) -> bool {
    match (Cid::try_from(a), Cid::try_from(b)) {
        (Ok(x), Ok(y)) => x.codec() == y.codec() && x.hash() == y.hash(),
        _ => a == b,
    }
}

/// `refs` / `refs/local` lines (`{"Ref": "...", "Err": ""}`) → CIDs.
fn parse_refs(lines: &[Value]) -> Result<Vec<Cid>, KuboError> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        if let Some(err) = line
            .get("Err")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            return Err(KuboError::Other(format!("refs: {err}")));
        }
        let text = line
            .get("Ref")
            .and_then(Value::as_str)
            .ok_or_else(|| KuboError::Garbage(format!("refs line without Ref: {line}")))?;
        let cid = Cid::try_from(text)
            .map_err(|e| KuboError::Garbage(format!("refs: bad CID {text:?}: {e}")))?;
        out.push(cid);
    }
    Ok(out)
}

/// The directory's CID in `add`'s output: the line whose `Name` is the directory's own name.
fn root_of_add(lines: &[Value], root_name: &str) -> Result<String, KuboError> {
    lines
        .iter()
        .find(|l| l.get("Name").and_then(Value::as_str) == Some(root_name))
        .and_then(|l| l.get("Hash").and_then(Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| {
            KuboError::Garbage(format!(
                "add: no entry named {root_name:?} among {} lines",
                lines.len()
            ))
        })
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(SNIPPET) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn garbage(body: &[u8], why: &dyn fmt::Display) -> KuboError {
    KuboError::Garbage(format!("{why}: {}", snippet(body)))
}

/// The error and its sources, `: `-joined (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// "Connection refused (os error 111) at 127.0.0.1:5001": the root cause and the address, which
/// is what an operator reading a trace needs (reqwest's full chain repeats the whole URL).
fn unreachable_message(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let at = e
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| "the node".into());
    format!("{root} at {at}")
}

/// A dropped connection rather than a protocol error: reset, closed before the answer, EOF.
fn is_connection_drop(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        let text = s.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// reqwest error → [`KuboError`]: connect failures (refused, DNS, connect timeout) and dropped
/// connections are `Unreachable`, the request timeout is `Timeout`.
fn classify(e: &reqwest::Error) -> KuboError {
    if e.is_connect() || (!e.is_timeout() && is_connection_drop(e)) {
        KuboError::Unreachable(unreachable_message(e))
    } else if e.is_timeout() {
        KuboError::Timeout
    } else {
        KuboError::Other(chain(e))
    }
}

/// A non-2xx response → [`KuboError::Http`], reading (a bounded time for) the body's message.
async fn status_error(response: Response, limit: Duration) -> KuboError {
    let status = response.status();
    let body = match timeout(limit, response.bytes()).await {
        Ok(Ok(body)) => body,
        _ => Bytes::new(),
    };
    KuboError::Http {
        status: status.as_u16(),
        message: http_error_message(status, &body),
    }
}

// ----- add: the directory walk -----

/// One multipart entry: a directory (`source: None`) or a file streamed from `source`.
#[derive(Debug)]
struct AddEntry {
    /// Path relative to the directory's parent, `/`-separated, starting with the root's name.
    rel: String,
    source: Option<PathBuf>,
    len: u64,
}

/// The directory's name and its entries, each directory before its contents (Kubo's multipart
/// reader and js-ipfs both build the tree from this order).
fn walk_dir(dir: &Path) -> Result<(String, Vec<AddEntry>), KuboError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        KuboError::Other(format!("{what} {}: {e}", path.display()))
    };
    let dir = dir.canonicalize().map_err(|e| io("cannot read", dir, e))?;
    if !dir.is_dir() {
        return Err(KuboError::Other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let root_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            KuboError::Other(format!(
                "{}: the directory needs a UTF-8 name",
                dir.display()
            ))
        })?
        .to_string();
    let mut entries = vec![AddEntry {
        rel: root_name.clone(),
        source: None,
        len: 0,
    }];
    fn visit(
        dir: &Path,
        rel: &str,
        entries: &mut Vec<AddEntry>,
        io: &dyn Fn(&str, &Path, std::io::Error) -> KuboError,
    ) -> Result<(), KuboError> {
        let mut children: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io("cannot list", dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io("cannot list", dir, e))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let path = child.path();
            let name = child.file_name();
            let name = name.to_str().ok_or_else(|| {
                KuboError::Other(format!("{}: file names must be UTF-8", path.display()))
            })?;
            let child_rel = format!("{rel}/{name}");
            // `symlink_metadata`: a symlink is refused, never followed (no loops, no escapes).
            let meta = std::fs::symlink_metadata(&path).map_err(|e| io("cannot stat", &path, e))?;
            if meta.is_dir() {
                entries.push(AddEntry {
                    rel: child_rel.clone(),
                    source: None,
                    len: 0,
                });
                visit(&path, &child_rel, entries, io)?;
            } else if meta.is_file() {
                entries.push(AddEntry {
                    rel: child_rel,
                    source: Some(path),
                    len: meta.len(),
                });
            } else {
                return Err(KuboError::Other(format!(
                    "{}: only regular files and directories can be added",
                    path.display()
                )));
            }
        }
        Ok(())
    }
    visit(&dir, &root_name, &mut entries, &io)?;
    Ok((root_name, entries))
}

/// A file's content, opened only when the upload reaches it (a directory of thousands of
/// segments must not hold thousands of descriptors).
fn lazy_file_body(path: PathBuf) -> reqwest::Body {
    let stream = futures::stream::once(async move {
        tokio::fs::File::open(&path)
            .await
            .map(tokio_util::io::ReaderStream::new)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    })
    .try_flatten();
    reqwest::Body::wrap_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_and_multiaddrs() {
        let url = |s| api_url(s).map(|u| u.to_string());
        assert_eq!(
            url("http://127.0.0.1:5001").unwrap(),
            "http://127.0.0.1:5001/api/v0/"
        );
        assert_eq!(url("http://h:5001/").unwrap(), "http://h:5001/api/v0/");
        assert_eq!(url("https://h/api/v0/").unwrap(), "https://h/api/v0/");
        assert_eq!(
            url("https://h/ipfs-proxy").unwrap(),
            "https://h/ipfs-proxy/api/v0/"
        );
        assert_eq!(
            url("/ip4/127.0.0.1/tcp/5001").unwrap(),
            "http://127.0.0.1:5001/api/v0/"
        );
        assert_eq!(
            url("/ip6/::1/tcp/5001").unwrap(),
            "http://[::1]:5001/api/v0/"
        );
        assert_eq!(
            url("/dns4/node.example/tcp/443/https").unwrap(),
            "https://node.example/api/v0/"
        );
        assert!(url("/ip4/127.0.0.1/udp/5001").is_err());
        assert!(url("ftp://h").is_err());
        assert!(url("not a url").is_err());
    }

    #[test]
    fn rpc_paths_and_queries_are_encoded() {
        let client = KuboClient::new("n", "http://127.0.0.1:5001/", None).unwrap();
        let url = client.url(
            "swarm/connect",
            &[("arg", "/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5001/api/v0/swarm/connect?arg=%2Fip4%2F127.0.0.1%2Ftcp%2F4001%2Fp2p%2F12D3Koo"
        );
    }

    #[test]
    fn swarm_addrs_get_the_peer_id_and_loopback_first() {
        let addrs = normalise_swarm_addrs(
            vec![
                "/ip4/10.0.0.5/tcp/4001".into(),
                "/ip4/127.0.0.1/tcp/4001/p2p/PEER".into(),
                "/ip4/10.0.0.5/tcp/4001/p2p/PEER".into(),
                "/ip6/::1/tcp/4001".into(),
            ],
            "PEER",
        );
        assert_eq!(
            addrs,
            vec![
                "/ip4/127.0.0.1/tcp/4001/p2p/PEER",
                "/ip6/::1/tcp/4001/p2p/PEER",
                "/ip4/10.0.0.5/tcp/4001/p2p/PEER",
            ]
        );
    }

    #[test]
    fn line_buffer_splits_across_chunks() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"{\"Progress\":").is_empty());
        let lines = b.push(b"1}\n\n{\"Progress\":2}\n{\"Pi");
        assert_eq!(
            lines,
            vec![
                Bytes::from_static(b"{\"Progress\":1}"),
                Bytes::from_static(b"{\"Progress\":2}")
            ]
        );
        assert!(b.push(b"ns\":[]}").is_empty());
        assert_eq!(b.finish(), Some(Bytes::from_static(b"{\"Pins\":[]}")));
        assert_eq!(b.finish(), None);
    }

    const V1: &str = "bafybeibdjhavaqzfimtkey4h5yikxe3y4k3efygimktbyy52aku4sofwfq";
    /// The same CID as js-ipfs prints it (base58btc).
    const V1_B58: &str = "zdj7WXoeaUHDdpgxdu2bSLnmaRk6mDZSfafsNAzdYV8bpK8if";

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

    #[test]
    fn cids_compare_by_content_not_text() {
        assert!(same_cid(V1, V1_B58));
        assert!(!same_cid(
            V1,
            "bafkreiauizm3jdzufublskmja6vtf7hqi6nmtsm2buuty7box6g7ge65ci"
        ));
        assert!(same_cid("not-a-cid", "not-a-cid"));
    }

    #[test]
    fn stream_error_trailer_and_http_messages() {
        let mut h = http::HeaderMap::new();
        assert_eq!(stream_error_header(&h), None);
        h.insert(
            "X-Stream-Error",
            r#"{"Message":"merkledag: not found","Code":0}"#.parse().unwrap(),
        );
        assert_eq!(
            stream_error_header(&h).unwrap(),
            "stream error: merkledag: not found"
        );
        h.insert("X-Stream-Error", "plain text".parse().unwrap());
        assert_eq!(stream_error_header(&h).unwrap(), "stream error: plain text");

        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let js = format!(r#"{{"Message":"path '{V1}' is not pinned","Code":0,"Type":"error"}}"#);
        assert!(is_not_pinned(&http_error_message(status, js.as_bytes())));
        assert!(is_not_pinned("bafy... is not pinned"));
        assert!(!is_not_pinned(
            "Failed to get block stats: request timed out"
        ));
        assert_eq!(
            http_error_message(StatusCode::BAD_GATEWAY, b""),
            "Bad Gateway"
        );
        assert_eq!(
            http_error_message(StatusCode::BAD_GATEWAY, b"<h1>bad gateway</h1>"),
            "<h1>bad gateway</h1>"
        );
        assert!(is_missing_block(
            "block was not found locally (offline): ipld: could not find bafy"
        ));
    }

    #[test]
    fn refs_and_add_output() {
        let lines: Vec<Value> = [
            r#"{"Ref":"bafkreiauizm3jdzufublskmja6vtf7hqi6nmtsm2buuty7box6g7ge65ci","Err":""}"#,
            &format!(r#"{{"Ref":"{V1_B58}"}}"#),
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let cids = parse_refs(&lines).unwrap();
        assert_eq!(cids.len(), 2);
        let set = LocalBlocks::from_refs(&cids);
        // A raw-codec listing of the directory's block still counts for the dag-pb CID.
        let raw_form = Cid::new_v1(RAW_CODEC, *Cid::try_from(V1).unwrap().hash());
        assert!(set.contains(&raw_form));
        assert!(set.contains(&Cid::try_from(V1).unwrap()));
        let err: Vec<Value> = vec![serde_json::json!({"Ref": "", "Err": "merkledag: not found"})];
        assert!(matches!(parse_refs(&err), Err(KuboError::Other(_))));

        let add: Vec<Value> = [
            r#"{"Name":"hls/index.m3u8","Hash":"bafkreiauizm3jdzufublskmja6vtf7hqi6nmtsm2buuty7box6g7ge65ci","Size":8}"#,
            &format!(r#"{{"Name":"hls","Hash":"{V1}","Size":900491,"Mode":"0755"}}"#),
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        assert_eq!(root_of_add(&add, "hls").unwrap(), V1);
        assert!(root_of_add(&add, "other").is_err());
    }

    #[test]
    fn filenames_are_fully_percent_encoded() {
        assert_eq!(encode_filename("hls/seg 1+2.ts"), "hls%2Fseg%201%2B2.ts");
        assert_eq!(encode_filename("é"), "%C3%A9");
    }

    #[test]
    fn auth_is_redacted_in_debug() {
        let basic = Auth::Basic {
            user: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{basic:?}").contains("secret"));
        assert!(!format!("{:?}", Auth::Bearer("tok".into())).contains("tok"));
    }

    #[test]
    fn errors_map_to_outcomes() {
        assert_eq!(Outcome::from(KuboError::Timeout), Outcome::Timeout);
        assert_eq!(
            Outcome::from(KuboError::Http {
                status: 502,
                message: "m".into()
            }),
            Outcome::HttpError(HttpError {
                status: 502,
                message: "m".into()
            })
        );
        assert_eq!(
            Outcome::from(KuboError::Garbage("x".into())),
            Outcome::Error("garbage reply: x".into())
        );
    }
}
