//! The real node client: the Kubo RPC API over HTTP (reqwest), as spoken by Kubo and by js-ipfs.
//!
//! Differences between Kubo and js-ipfs that shape this client (checked against js-ipfs 0.66.1
//! and the Kubo sources):
//! - `pin/add?progress=true`: Kubo streams progress, js-ipfs answers once, at the end (see
//!   `pin_stream` for what a stall is on each).
//! - `offline=true` is honoured by Kubo and silently dropped by js-ipfs, so local presence of
//!   blocks is checked differently on each (see `presence`).
//! - js-ipfs prints CIDv1 in base58btc (`zdj7…`) unless asked otherwise; CIDs are compared
//!   parsed, never as strings.
//!
//! One file per concern:
//! - `transport`: requests, credentials ([`Auth`]), timeouts, errors ([`KuboError`]);
//! - `ndjson`: streamed replies read line by line, errors reported inside a stream;
//! - `pin_stream`: `pin/add` with progress and stall detection;
//! - `presence`: the retrievability walk (are all of a DAG's blocks local?);
//! - `flavour`: Kubo or js-ipfs;
//! - `upload`: `add` of a directory as a multipart body;
//! - `addr`: node URLs and multiaddrs ([`api_url`]), swarm addresses.
//!
//! This file holds the client itself, the plain request/reply calls, and the [`Node`] impl that
//! delegates to the pieces.

pub mod addr;
mod flavour;
mod ndjson;
mod pin_stream;
mod presence;
#[cfg(test)]
mod recorded;
#[cfg(test)]
mod replay;
mod transport;
mod upload;

pub use addr::api_url;
pub use flavour::Flavour;
pub use transport::{Auth, KuboError};

use crate::Outcome;
use crate::health::Progress;
use crate::node::Node;
use addr::normalise_swarm_addrs;
use async_trait::async_trait;
use flavour::FlavourCache;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;
use transport::Rpc;

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
    /// The retrievability check (the node's own walk of the DAG, streamed, see `presence`) ends
    /// as a timeout when it learns of no new block for this long. It has no overall limit of its
    /// own, since a bigger DAG takes longer; the executor's safety bound still applies.
    pub check_idle_timeout: Duration,
    /// How long the swarm addresses `id` gave are reused (provider hints) before `id` is asked
    /// again; see [`Node::swarm_addrs`].
    pub swarm_addrs_ttl: Duration,
    /// Where to remember across processes whether the node is Kubo or js-ipfs
    /// (`node-flavours.json`). `None`: each client asks `id` when it first needs to know.
    pub data_dir: Option<PathBuf>,
}

impl Default for KuboConfig {
    fn default() -> Self {
        KuboConfig {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            slow_call_timeout: Duration::from_secs(3600),
            pool_idle_timeout: Duration::from_secs(4),
            check_idle_timeout: Duration::from_secs(30),
            swarm_addrs_ttl: Duration::from_secs(60),
            data_dir: None,
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

/// What `version` says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    /// `0.32.1` (Kubo) or `0.18.1` (js-ipfs: the version of ipfs-core).
    pub version: String,
    /// The repository format version.
    pub repo: String,
    /// `amd64/linux` (Kubo only).
    pub system: Option<String>,
}

/// What `repo/stat` says of a node's repository, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoStat {
    pub repo_size: u64,
    /// The configured limit (Kubo's `Datastore.StorageMax`); `None` when there is none (js-ipfs
    /// reports 2^53 - 1).
    pub storage_max: Option<u64>,
    pub num_objects: u64,
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

/// A Kubo RPC client for one node.
pub struct KuboClient {
    name: String,
    rpc: Rpc,
    cfg: KuboConfig,
    flavour: OnceCell<Flavour>,
    flavour_cache: Option<FlavourCache>,
    /// The swarm addresses `id` last gave, and until when they are used without asking again:
    /// see [`Node::swarm_addrs`].
    swarm_addrs: std::sync::Mutex<Option<KnownAddrs>>,
}

#[derive(Debug, Clone)]
struct KnownAddrs {
    until: tokio::time::Instant,
    addrs: Vec<String>,
}

/// How long `id` may take to refresh addresses already known before the known ones are used.
/// Shorter than the executor's bound on a hint's addresses (2 s), so a slow refresh ends in
/// the known addresses, not in a failed hint.
const SWARM_ADDRS_REFRESH: Duration = Duration::from_secs(1);
/// After a failed refresh, how long the known addresses are used before `id` is tried again:
/// a hung node costs one refresh bound per this long, not one per hint.
const SWARM_ADDRS_RETRY: Duration = Duration::from_secs(10);

impl fmt::Debug for KuboClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KuboClient")
            .field("name", &self.name)
            .field("api", &self.rpc.api().as_str())
            .field("auth", &self.rpc.auth())
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
        let rpc = Rpc::new(base_url, auth, &cfg)?;
        let flavour_cache = cfg
            .data_dir
            .as_deref()
            .map(|dir| FlavourCache::new(dir, rpc.api()));
        Ok(KuboClient {
            name: name.into(),
            rpc,
            cfg,
            flavour: OnceCell::new(),
            flavour_cache,
            swarm_addrs: std::sync::Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `f` on the known swarm addresses (a poisoned lock is taken over: the cache is advisory).
    fn known_addrs<T>(&self, f: impl FnOnce(&mut Option<KnownAddrs>) -> T) -> T {
        f(&mut self
            .swarm_addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Uses `addrs` for provider hints for `ttl` without asking `id` again.
    fn keep_addrs(&self, addrs: Vec<String>, ttl: Duration) {
        let until = tokio::time::Instant::now() + ttl;
        self.known_addrs(|k| *k = Some(KnownAddrs { until, addrs }));
    }

    /// `{base}/api/v0/`.
    pub fn api_url(&self) -> &str {
        self.rpc.api().as_str()
    }

    pub fn config(&self) -> &KuboConfig {
        &self.cfg
    }

    /// `id`: peer id, swarm addresses (with `/p2p/<id>`), agent version. The addresses are
    /// kept for provider hints (see `swarm_addrs`), so the `id` that told a client its node's
    /// flavour also spares the first hint a call.
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
        let reply: IdReply = self.rpc.call_json("id", &[]).await?;
        let addresses = normalise_swarm_addrs(reply.addresses.unwrap_or_default(), &reply.id);
        if !addresses.is_empty() {
            self.keep_addrs(addresses.clone(), self.cfg.swarm_addrs_ttl);
        }
        Ok(PeerInfo {
            id: reply.id,
            addresses,
            agent_version: reply.agent_version,
        })
    }

    /// `version`: the implementation's version and its repository format.
    pub async fn version(&self) -> Result<NodeVersion, KuboError> {
        #[derive(Deserialize)]
        struct VersionReply {
            #[serde(rename = "Version")]
            version: String,
            #[serde(rename = "Repo", default)]
            repo: String,
            #[serde(rename = "System", default)]
            system: Option<String>,
        }
        let reply: VersionReply = self.rpc.call_json("version", &[]).await?;
        Ok(NodeVersion {
            version: reply.version,
            repo: reply.repo,
            system: reply.system.filter(|s| !s.is_empty()),
        })
    }

    /// `swarm/peers`: the peer ids this node is connected to now.
    pub async fn peers(&self) -> Result<Vec<String>, KuboError> {
        #[derive(Deserialize)]
        struct PeersReply {
            #[serde(rename = "Peers", default)]
            peers: Option<Vec<PeerEntry>>,
        }
        #[derive(Deserialize)]
        struct PeerEntry {
            #[serde(rename = "Peer")]
            peer: String,
        }
        let reply: PeersReply = self.rpc.call_json("swarm/peers", &[]).await?;
        Ok(reply
            .peers
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.peer)
            .collect())
    }

    /// `repo/stat?size-only=true`: repository size against its limit. Kubo answers numbers,
    /// js-ipfs decimal strings; both are read.
    pub async fn repo_stat(&self) -> Result<RepoStat, KuboError> {
        #[derive(Deserialize)]
        struct RepoStatReply {
            #[serde(rename = "RepoSize", deserialize_with = "lenient_u64")]
            repo_size: u64,
            #[serde(rename = "StorageMax", default, deserialize_with = "lenient_u64")]
            storage_max: u64,
            #[serde(rename = "NumObjects", default, deserialize_with = "lenient_u64")]
            num_objects: u64,
        }
        /// js-ipfs's "no limit": `Number.MAX_SAFE_INTEGER`.
        const NO_LIMIT: u64 = (1 << 53) - 1;
        let reply: RepoStatReply = self
            .rpc
            .call_json("repo/stat", &[("size-only", "true")])
            .await?;
        Ok(RepoStat {
            repo_size: reply.repo_size,
            storage_max: Some(reply.storage_max).filter(|&m| m > 0 && m < NO_LIMIT),
            num_objects: reply.num_objects,
        })
    }

    /// Kubo's `Datastore.StorageGCWatermark`: the percentage of `StorageMax` from which a
    /// daemon run with `--enable-gc` collects every unpinned block (an upload not yet pinned
    /// included). `None` when the node does not say (js-ipfs, a token not allowed `config`).
    pub async fn gc_watermark(&self) -> Option<u8> {
        #[derive(Deserialize)]
        struct ConfigReply {
            #[serde(rename = "Value")]
            value: u64,
        }
        let reply: ConfigReply = self
            .rpc
            .call_json("config", &[("arg", "Datastore.StorageGCWatermark")])
            .await
            .ok()?;
        u8::try_from(reply.value)
            .ok()
            .filter(|w| (1..=100).contains(w))
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
        upload::add_dir(&self.rpc, dir, self.cfg.slow_call_timeout).await
    }

    /// `pin/rm` (recursive).
    pub async fn pin_rm(&self, cid: &str) -> Result<(), KuboError> {
        let _: Value = self
            .rpc
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
        let stat: Stat = self.rpc.call_json("files/stat", &[("arg", &path)]).await?;
        Ok(match stat.kind.as_str() {
            "file" => ObjectKind::File,
            "directory" => ObjectKind::Directory,
            other => ObjectKind::Other(other.to_string()),
        })
    }

    /// `repo/gc`: returns how many blocks were removed.
    pub async fn repo_gc(&self) -> Result<usize, KuboError> {
        let request = self.rpc.post("repo/gc", &[]);
        let lines = self
            .rpc
            .call_lines(request, self.cfg.slow_call_timeout)
            .await?;
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

    /// Kubo or js-ipfs, for the presence walk (the only caller): learned once per client, from
    /// the data dir's cache when it has a fresh answer, else from `id` (then cached). See
    /// `flavour` for why.
    async fn flavour(&self) -> Result<Flavour, KuboError> {
        self.flavour
            .get_or_try_init(|| async {
                let Some(cache) = &self.flavour_cache else {
                    return Ok(Flavour::from_agent(&self.id().await?.agent_version));
                };
                if let Some(known) = cache.load().await {
                    return Ok(known);
                }
                let learned = Flavour::from_agent(&self.id().await?.agent_version);
                cache.store(learned).await;
                Ok(learned)
            })
            .await
            .copied()
    }

    async fn verify_inner(&self, cid: &str) -> Result<Outcome, KuboError> {
        #[derive(Deserialize)]
        struct PinLs {
            #[serde(rename = "Keys", default)]
            keys: Option<serde_json::Map<String, Value>>,
        }
        let reply: Result<PinLs, KuboError> = self
            .rpc
            .call_json("pin/ls", &[("arg", cid), ("type", "recursive")])
            .await;
        match reply {
            Ok(PinLs { keys }) => {
                let listed = keys.unwrap_or_default().iter().any(|(key, info)| {
                    crate::cid_identity::same(key, cid)
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

    /// Every block of `cid` present on this node or fetched by it from the network (its
    /// peers, over bitswap): the proof that content a remote provider pins can be retrieved
    /// from it, once this node has dialled the provider's delegates. Bounded like
    /// `check_retrievable`: no new block for `check_idle_timeout` is a `Timeout`.
    pub async fn fetch_all(&self, cid: &str) -> Outcome {
        let fetched = async {
            let root = presence::parse_root(cid)?;
            presence::fetch(&self.rpc, &self.name, root, self.cfg.check_idle_timeout).await
        };
        fetched.await.unwrap_or_else(Outcome::from)
    }

    async fn check_inner(&self, cid: &str) -> Result<Outcome, KuboError> {
        // Parsed first: a bad CID costs no call.
        let root = presence::parse_root(cid)?;
        let flavour = self.flavour().await?;
        presence::check(
            &self.rpc,
            &self.name,
            flavour,
            root,
            self.cfg.check_idle_timeout,
        )
        .await
    }
}

#[async_trait]
impl Node for KuboClient {
    /// `pin/add?recursive=true&progress=true`, read line by line (see `pin_stream`). `Stalled`
    /// when nothing has shown progress for `stall`: the stream's counters (Kubo), or the node's
    /// bitswap counters while no reply has arrived (js-ipfs answers only at the end).
    /// A CID the node already pins recursively is not pinned again: Kubo (boxo's
    /// `doPinRecursive`) drops the existing recursive pin before it walks the DAG again and
    /// does not restore it when that walk fails or is cancelled, so a re-pin cut short by a
    /// stall or a timeout would leave the content unpinned for the next GC (seen on Kubo
    /// 0.43.1). Whether its blocks are all there is `check_retrievable`'s to say.
    async fn pin(&self, cid: &str, stall: Duration) -> Outcome {
        self.pin_watched(cid, stall, &Progress::none()).await
    }

    /// Kubo's stream reports the block count every 500 ms while the pin runs, so its pins
    /// report progress; js-ipfs's answer arrives only at the end, and its bitswap counters
    /// stay flat for a pin of local blocks, so its pins report none.
    /// The pin is watched from its first call: a node too overloaded to say what it is, or to
    /// answer the `pin/ls` guard, is as quiet as one whose fetch stopped.
    async fn pin_watched(&self, cid: &str, stall: Duration, progress: &Progress) -> Outcome {
        let none = Progress::none();
        progress.watching();
        // A flavour not learned (the node did not answer `id`) is almost always Kubo's, and
        // the pin stays watched: a node that answers nothing stays quiet.
        let progress = match self.flavour().await {
            Ok(Flavour::JsIpfs) => {
                progress.unwatched();
                &none
            }
            Ok(Flavour::Kubo) | Err(_) => progress,
        };
        if self.verify(cid).await == Outcome::Ok {
            tracing::debug!(node = %self.name, cid, "already pinned recursively: not pinned again");
            return Outcome::Ok;
        }
        pin_stream::pin(&self.rpc, &self.name, cid, stall, progress)
            .await
            .unwrap_or_else(Outcome::from)
    }

    /// `pin/ls?arg=CID&type=recursive` (never `type=all`, which can walk every DAG).
    async fn verify(&self, cid: &str) -> Outcome {
        self.verify_inner(cid).await.unwrap_or_else(Outcome::from)
    }

    /// One streamed walk of the DAG by the node, without ever fetching a block (see
    /// `presence`); the node's flavour decides how. `Timeout` when the walk learns of no new
    /// block for `check_idle_timeout`.
    async fn check_retrievable(&self, cid: &str) -> Outcome {
        self.check_inner(cid).await.unwrap_or_else(Outcome::from)
    }

    /// `id`'s addresses, loopback ones first, each ending in `/p2p/<peer id>`, as the last `id`
    /// answer gave them for `KuboConfig::swarm_addrs_ttl` (a minute); past it, while `id` fails
    /// or takes over [`SWARM_ADDRS_REFRESH`], still those (tried again every
    /// [`SWARM_ADDRS_RETRY`]): each backup pin's provider hint asks for the primary's
    /// addresses, and a primary too overloaded to answer is the usual reason a backup pins.
    async fn swarm_addrs(&self) -> Result<Vec<String>, Outcome> {
        let known = self.known_addrs(|k| k.clone());
        let Some(known) = known else {
            // `id` keeps what it finds.
            let info = self.id().await.map_err(Outcome::from)?;
            if info.addresses.is_empty() {
                return Err(Outcome::Error(format!(
                    "{} reports no swarm addresses",
                    self.name
                )));
            }
            return Ok(info.addresses);
        };
        if tokio::time::Instant::now() < known.until {
            return Ok(known.addrs);
        }
        match tokio::time::timeout(SWARM_ADDRS_REFRESH, self.id()).await {
            Ok(Ok(info)) if !info.addresses.is_empty() => Ok(info.addresses),
            failed => {
                tracing::debug!(node = %self.name, ?failed, "swarm addresses not refreshed: using the known ones");
                self.keep_addrs(known.addrs.clone(), SWARM_ADDRS_RETRY);
                Ok(known.addrs)
            }
        }
    }

    /// The known addresses are due for a refresh, and kept for as long as it fails.
    fn swarm_addrs_failed(&self) {
        let now = tokio::time::Instant::now();
        self.known_addrs(|k| {
            if let Some(k) = k {
                k.until = k.until.min(now);
            }
        });
    }

    /// `pin/rm?recursive=true`; "not pinned" is done already.
    async fn unpin(&self, cid: &str) -> Outcome {
        match self.pin_rm(cid).await {
            Ok(()) => Outcome::Ok,
            Err(KuboError::Http { message, .. }) if is_not_pinned(&message) => Outcome::Ok,
            Err(e) => e.into(),
        }
    }

    /// `swarm/connect?arg=ADDR`, one address after the other until one succeeds.
    async fn connect(&self, addrs: &[String]) -> Outcome {
        let mut last = Outcome::Error("no address to dial".into());
        for addr in addrs {
            let reply: Result<Value, KuboError> =
                self.rpc.call_json("swarm/connect", &[("arg", addr)]).await;
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

    /// `swarm/disconnect?arg=/p2p/<peer>` (an error, such as "not connected", is ignored), then
    /// [`connect`](Node::connect).
    ///
    /// Why: dialling a peer already connected does nothing, and a connection can be up yet
    /// useless. Under load, js-ipfs 0.66 runs out of streams on a connection ("Too many open
    /// streams" in its muxer): bitswap messages are dropped and never sent again, so a transfer
    /// stops for good while both sides stay connected (measured: 600 MB stops after 200–250 MB,
    /// until the connection is replaced). A new connection makes both sides exchange their
    /// whole wantlists again. The cost: other transfers between the same two nodes lose what
    /// was in flight on the old connection, which is why only a repeated hint does this.
    async fn reconnect(&self, addrs: &[String]) -> Outcome {
        if let Some(peer) = addrs.iter().find_map(|a| addr::peer_id(a)) {
            let target = format!("/p2p/{peer}");
            let dropped: Result<Value, KuboError> = self
                .rpc
                .call_json("swarm/disconnect", &[("arg", &target)])
                .await;
            if let Err(e) = dropped {
                tracing::debug!(node = %self.name, %target, error = %e, "swarm/disconnect failed");
            }
        }
        self.connect(addrs).await
    }
}

/// A count that arrives as a JSON number (Kubo) or a decimal string (js-ipfs).
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(u64),
        Text(String),
    }
    match Count::deserialize(d)? {
        Count::Number(n) => Ok(n),
        Count::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not a count: '{t}'"))),
    }
}

/// js-ipfs: `path '<cid>' is not pinned` (pin/ls) or `<cid> is not pinned` (pin/rm);
/// Kubo: `path '<cid>' is not pinned`, `... is not pinned recursively`.
fn is_not_pinned(message: &str) -> bool {
    message.contains("not pinned")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const V1: &str = "bafybeibdjhavaqzfimtkey4h5yikxe3y4k3efygimktbyy52aku4sofwfq";
    /// The same CID as js-ipfs prints it (base58btc).
    pub(super) const V1_B58: &str = "zdj7WXoeaUHDdpgxdu2bSLnmaRk6mDZSfafsNAzdYV8bpK8if";

    /// A loopback URL nobody listens on: any call to it is refused.
    fn closed_port_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        format!("http://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn a_fresh_cached_flavour_needs_no_id_call() {
        let dir = tempfile::tempdir().unwrap();
        let url = closed_port_url();
        let cfg = KuboConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..KuboConfig::default()
        };
        let client = KuboClient::with_config("n", &url, None, cfg.clone()).unwrap();
        // Nothing cached: `id` is asked, and the node is down.
        assert!(matches!(
            client.flavour().await,
            Err(KuboError::Unreachable(_))
        ));
        // Another process learned it: no call at all.
        FlavourCache::new(dir.path(), client.rpc.api())
            .store(Flavour::JsIpfs)
            .await;
        let client = KuboClient::with_config("n", &url, None, cfg).unwrap();
        assert_eq!(client.flavour().await, Ok(Flavour::JsIpfs));
        // Without a data dir there is no cache to consult.
        let client = KuboClient::new("n", &url, None).unwrap();
        assert!(client.flavour().await.is_err());
    }

    #[tokio::test]
    async fn version_and_repo_stat_read_both_implementations() {
        use super::recorded::*;
        use super::replay::{Replay, Reply};
        let js = Replay::start(|path, _| match path.split('?').next() {
            Some("/api/v0/version") => Reply::whole(JS_JSON_HEAD, JS_VERSION),
            _ => Reply::whole(JS_JSON_HEAD, JS_REPO_STAT),
        })
        .await;
        let client = KuboClient::new("js", js.url(), None).unwrap();
        let v = client.version().await.unwrap();
        assert_eq!((v.version.as_str(), v.repo.as_str()), ("0.18.1", "12"));
        assert_eq!(v.system, None);
        let stat = client.repo_stat().await.unwrap();
        assert_eq!((stat.repo_size, stat.storage_max), (1710, None));
        assert!(js.calls().iter().any(|c| c.contains("size-only=true")));

        let kubo = Replay::start(|path, _| match path.split('?').next() {
            Some("/api/v0/version") => Reply::whole(JS_JSON_HEAD, KUBO_VERSION),
            _ => Reply::whole(JS_JSON_HEAD, KUBO_REPO_STAT),
        })
        .await;
        let client = KuboClient::new("kubo", kubo.url(), None).unwrap();
        let v = client.version().await.unwrap();
        assert_eq!(v.system.as_deref(), Some("amd64/linux"));
        let stat = client.repo_stat().await.unwrap();
        assert_eq!(stat.storage_max, Some(10_000_000_000));
        assert_eq!(stat.num_objects, 48_210);
    }

    #[tokio::test]
    async fn swarm_peers_lists_connected_peer_ids_or_none() {
        use super::recorded::*;
        use super::replay::{Replay, Reply};
        let one = Replay::start(|_, _| Reply::whole(JS_JSON_HEAD, JS_SWARM_PEERS)).await;
        let client = KuboClient::new("js", one.url(), None).unwrap();
        assert_eq!(
            client.peers().await.unwrap(),
            ["12D3KooWB7bD9fNKzeywxFXz7sTnbYY3ySmV6v5GcpNNCQtbZB39"]
        );
        let none = Replay::start(|_, _| Reply::whole(JS_JSON_HEAD, KUBO_NO_PEERS)).await;
        let client = KuboClient::new("kubo", none.url(), None).unwrap();
        assert!(client.peers().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_token_is_an_http_403_with_kubos_text() {
        use super::recorded::*;
        use super::replay::{Replay, Reply};
        let kubo = Replay::start(|_, _| Reply::whole(KUBO_FORBIDDEN_HEAD, KUBO_FORBIDDEN)).await;
        let client =
            KuboClient::new("kubo", kubo.url(), Some(Auth::Bearer("wrong".into()))).unwrap();
        match client.version().await {
            Err(KuboError::Http {
                status: 403,
                message,
            }) => {
                assert!(message.contains("Access Denied"), "{message}")
            }
            other => panic!("expected HTTP 403, got {other:?}"),
        }
    }

    #[test]
    fn not_pinned_messages() {
        assert!(is_not_pinned(&format!("path '{V1}' is not pinned")));
        assert!(is_not_pinned("bafy... is not pinned"));
        assert!(!is_not_pinned(
            "Failed to get block stats: request timed out"
        ));
    }
}
