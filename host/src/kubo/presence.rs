//! Are all of a DAG's blocks in a node's local store? The retrievability check.
//!
//! The node walks the DAG itself and streams what it finds: the cost is the node's own walk plus
//! a round trip or a few, not a round trip per block (which made a 600 MB CIDv0 DAG cost 2,468
//! calls, and time out at 30 ms per call).
//!
//! Presence must never trigger a fetch, or a node connected to the provider would "pass" by
//! downloading the content during the check:
//! - Kubo honours `offline=true`: one `refs?recursive&unique&offline` walks the local blocks
//!   only. A missing root is an HTTP 500 naming it; a block missing below it ends the walk with
//!   `{"Ref":"","Err":"failed to fetch all nodes"}` (Kubo 0.43), which names nothing, so the
//!   walk then finds the block from what was listed ([`Walk::locate_missing`]).
//! - js-ipfs ignores `offline` (its HTTP layer strips unknown query parameters): its `refs`
//!   fetches a missing block over bitswap, or hangs without a provider. So the walk first takes
//!   one `refs/local` listing (every block in the repo, keyed by multihash; it grows with the
//!   repo, which is acceptable for js-ipfs, test nodes), then walks the DAG level by level with
//!   `refs?arg=A&arg=B…` ([`BATCH`] blocks a call, [`CONCURRENT_BATCHES`] calls at once), each
//!   reply streamed and every link checked against the listing as it arrives. Only blocks in
//!   the listing are ever asked about, so the node only reads what it has. Raw blocks (leaves)
//!   have no links: the node never reads them, where a recursive `refs` reads every one (2.5 GB:
//!   1.3–1.6 s instead of 5.3 s, on js-ipfs here). A CIDv0 DAG has dag-pb leaves, which must all
//!   be read anyway: there, one streamed recursive `refs`, checked the same way, is cheaper
//!   ([`Walk::streamed_against`]).
//!
//! Time: the walk has no fixed limit, since its length follows the DAG's size. It ends as a
//! timeout ([`KuboError::Timeout`], reported as `Timeout`, never as a missing block) when it
//! learns of no new block for `idle`.
//!
//! Which of the two a node is comes from the caller ([`Flavour`]).

use super::flavour::Flavour;
use super::ndjson::{Chunk, Lines, error_message, stream_error_header};
use super::transport::{KuboError, Rpc, classify, garbage, status_error};
use crate::Outcome;
use cid::Cid;
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::timeout;

/// Multihash code of identity hashes: the data is inline in the CID, never stored as a block.
const IDENTITY_HASH: u64 = 0x00;
/// Multicodec of raw blocks: leaves, without links.
const RAW_CODEC: u64 = 0x55;
/// Blocks asked about in one `refs` call on js-ipfs: about 7 KB of query string, well below
/// Node's 16 KB limit on request headers.
const BATCH: usize = 100;
/// `refs` calls running at once on js-ipfs: overlaps round trips with the node's reads.
const CONCURRENT_BATCHES: usize = 4;
/// How many listed nodes (those with links), last first, are read to name a block Kubo reported
/// missing without naming it. One is enough with raw leaves; CIDv0 leaves are dag-pb nodes and
/// each costs a call, so a CIDv0 file's missing leaf far from its end may stay unnamed.
const LOCATE_CANDIDATES: usize = 256;

/// The walk's root, parsed before anything is asked of the node.
pub(super) fn parse_root(cid: &str) -> Result<Cid, KuboError> {
    Cid::try_from(cid).map_err(|e| KuboError::Other(format!("bad CID {cid}: {e}")))
}

/// `Ok` when every block under `root` is local, `Unretrievable` naming a missing one otherwise;
/// `Err(Timeout)` when the walk learns of no new block for `idle`. `node` names it in logs.
pub(super) async fn check(
    rpc: &Rpc,
    node: &str,
    flavour: Flavour,
    root: Cid,
    idle: Duration,
) -> Result<Outcome, KuboError> {
    let mut walk = Walk {
        rpc,
        idle,
        blocks: 0,
    };
    let outcome = match flavour {
        Flavour::Kubo => walk.offline(&root).await,
        Flavour::JsIpfs => walk.against_local_set(&root).await,
    };
    match &outcome {
        Ok(Outcome::Ok) => {
            tracing::debug!(node = %node, cid = %root, blocks = walk.blocks, "all blocks present");
        }
        Err(KuboError::Timeout) => {
            tracing::warn!(node = %node, cid = %root, blocks = walk.blocks, idle = ?idle,
                "retrievability walk: no new block for the idle limit");
        }
        _ => {}
    }
    outcome
}

/// `Ok` when the node has, or fetches from the network, every block under `root`: Kubo's `refs`
/// without `offline`, which asks bitswap for each block it lacks. `Err(Timeout)` when no new
/// block arrives for `idle` (nobody serves the next one). Kubo only: js-ipfs is never asked.
pub(super) async fn fetch(
    rpc: &Rpc,
    node: &str,
    root: Cid,
    idle: Duration,
) -> Result<Outcome, KuboError> {
    let mut walk = Walk {
        rpc,
        idle,
        blocks: 0,
    };
    let root_text = root.to_string();
    let args = [
        ("arg", root_text.as_str()),
        ("recursive", "true"),
        ("unique", "true"),
    ];
    let mut refs = walk.open("refs", &args).await?;
    walk.blocks = 1;
    while let Some(line) = walk.next(&mut refs).await? {
        match line {
            RefLine::Ref(_) => walk.blocks += 1,
            RefLine::Err(m) => return Ok(Outcome::Unretrievable(format!("fetch walk: {m}"))),
        }
    }
    tracing::debug!(node = %node, cid = %root, blocks = walk.blocks, "every block fetched or present");
    Ok(Outcome::Ok)
}

/// One walk, and how far it got.
struct Walk<'a> {
    rpc: &'a Rpc,
    idle: Duration,
    /// Blocks known present so far (root included).
    blocks: u64,
}

impl Walk<'_> {
    /// Kubo: the node walks its local blocks only.
    async fn offline(&mut self, root: &Cid) -> Result<Outcome, KuboError> {
        let root_text = root.to_string();
        let args = [
            ("arg", root_text.as_str()),
            ("recursive", "true"),
            ("unique", "true"),
            ("offline", "true"),
        ];
        let mut refs = match self.open("refs", &args).await {
            Err(KuboError::Http {
                status: 500,
                message,
            }) if is_missing_block(&message) => return Ok(missing(&message, Some(root))),
            opened => opened?,
        };
        self.blocks = 1;
        // The blocks listed so far, in Kubo's (depth-first) order: where to look for the
        // missing one when Kubo's message does not name it.
        let mut listed = Vec::new();
        while let Some(line) = self.next(&mut refs).await? {
            match line {
                RefLine::Ref(c) => {
                    self.blocks += 1;
                    listed.push(c);
                }
                RefLine::Err(m) if is_unnamed_missing_block(&m) => {
                    return self.locate_missing(root, &listed, &m).await;
                }
                RefLine::Err(m) if is_missing_block(&m) => return Ok(missing(&m, None)),
                RefLine::Err(m) => return Err(KuboError::Other(format!("refs: {m}"))),
            }
        }
        Ok(Outcome::Ok)
    }

    /// Kubo's offline walk stopped at a missing block without naming it. It walks depth first,
    /// each node's links in order, and lists a block once it has read it: so the missing block
    /// is the first unlisted link of the deepest node it was still in, which is the last listed
    /// node (or the root) that has an unlisted link. Their links come from `dag/get` (which
    /// reads only the node itself), at most [`LOCATE_CANDIDATES`] nodes back; past that, or if
    /// no candidate has an unlisted link, the block stays unnamed.
    async fn locate_missing(
        &self,
        root: &Cid,
        listed: &[Cid],
        message: &str,
    ) -> Result<Outcome, KuboError> {
        let seen: HashSet<Vec<u8>> = std::iter::once(root)
            .chain(listed)
            .map(|c| c.hash().to_bytes())
            .collect();
        let candidates: Vec<Cid> = std::iter::once(root)
            .chain(listed)
            .rev()
            .filter(|c| has_links(c))
            .take(LOCATE_CANDIDATES)
            .copied()
            .collect();
        // In order, deepest first, a few at once; the first hit ends it (dropping the rest).
        let mut links = futures::stream::iter(candidates)
            .map(|parent| self.links_in_node(parent))
            .buffered(CONCURRENT_BATCHES);
        while let Some(links) = links.next().await {
            if let Some(block) = links?
                .into_iter()
                .find(|link| !seen.contains(&link.hash().to_bytes()))
            {
                return Ok(Outcome::Unretrievable(format!("block {block} missing")));
            }
        }
        Ok(Outcome::Unretrievable(format!(
            "a block under {root} missing ({message})"
        )))
    }

    /// The links of a dag-pb node present locally, in order, from `dag/get` (dag-json:
    /// `{"Links":[{"Hash":{"/":"<cid>"},..}]}`); none for a node that is not dag-pb.
    async fn links_in_node(&self, node: Cid) -> Result<Vec<Cid>, KuboError> {
        let text = node.to_string();
        let args = [("arg", text.as_str()), ("offline", "true")];
        let reply = timeout(self.idle, self.rpc.call_json::<Value>("dag/get", &args))
            .await
            .map_err(|_| KuboError::Timeout)??;
        let links = reply.get("Links").and_then(Value::as_array);
        Ok(links
            .into_iter()
            .flatten()
            .filter_map(|link| link.pointer("/Hash/~1").and_then(Value::as_str))
            .filter_map(|c| Cid::try_from(c).ok())
            .collect())
    }

    /// js-ipfs: the node reads the DAG's blocks that have links, level by level, and every
    /// link is checked against its `refs/local` listing before it is asked about.
    async fn against_local_set(&mut self, root: &Cid) -> Result<Outcome, KuboError> {
        let mut local = LocalBlocks::default();
        let mut listing = self.open("refs/local", &[]).await?;
        while let Some(line) = self.next(&mut listing).await? {
            match line {
                RefLine::Ref(c) => local.insert(&c),
                RefLine::Err(m) => return Err(KuboError::Other(format!("refs/local: {m}"))),
            }
        }
        if !local.contains(root) {
            return Ok(Outcome::Unretrievable(format!("block {root} missing")));
        }
        self.blocks = 1;
        if root.version() == cid::Version::V0 {
            return self.streamed_against(root, &local).await;
        }
        let mut seen = HashSet::from([root.hash().to_bytes()]);
        let mut level: Vec<Cid> = has_links(root).then_some(*root).into_iter().collect();
        // Bounded: every block enters a level at most once (`seen`), and a DAG is finite.
        while !level.is_empty() {
            let mut next = Vec::new();
            let this = &*self;
            let local = &local;
            // Owned batches: a closure over borrowed chunks is not `Send` enough for the trait.
            let owned: Vec<Vec<Cid>> = level.chunks(BATCH).map(<[Cid]>::to_vec).collect();
            let mut batches = futures::stream::iter(owned)
                .map(|batch| this.links_of(batch, local))
                .buffer_unordered(CONCURRENT_BATCHES);
            let mut found = 0u64;
            while let Some(links) = batches.next().await {
                // Returning drops the other calls: the node stops reading.
                let links = match links? {
                    Links::Missing(outcome) => return Ok(outcome),
                    Links::Present(links) => links,
                };
                for link in links {
                    if seen.insert(link.hash().to_bytes()) {
                        found += 1;
                        if has_links(&link) {
                            next.push(link);
                        }
                    }
                }
            }
            drop(batches);
            self.blocks += found;
            level = next;
        }
        Ok(Outcome::Ok)
    }

    /// A CIDv0 DAG (dag-pb leaves: every block must be read to learn it has no links): one
    /// streamed `refs?recursive&unique`, every CID checked against the listing as it arrives.
    /// js-ipfs prints a link *before* reading its block, so the first block missing from the
    /// listing ends the check, and dropping the reply aborts the node's walk (it may already
    /// have asked its peers for that one block: the check has failed either way). One call
    /// reads each block once, where the level walk reads each asked block twice (js-ipfs
    /// resolves every `arg`, then reads it for its links): 600 MB took 2.8 s by levels, 1.2 s so.
    async fn streamed_against(
        &mut self,
        root: &Cid,
        local: &LocalBlocks,
    ) -> Result<Outcome, KuboError> {
        let root_text = root.to_string();
        let args = [
            ("arg", root_text.as_str()),
            ("recursive", "true"),
            ("unique", "true"),
        ];
        let mut refs = self.open("refs", &args).await?;
        while let Some(line) = self.next(&mut refs).await? {
            match line {
                RefLine::Ref(c) if !local.contains(&c) => {
                    return Ok(Outcome::Unretrievable(format!("block {c} missing")));
                }
                RefLine::Ref(_) => self.blocks += 1,
                // A block in the listing that the node cannot read after all.
                RefLine::Err(m) if is_missing_block(&m) => return Ok(missing(&m, None)),
                RefLine::Err(m) => return Err(KuboError::Other(format!("refs: {m}"))),
            }
        }
        Ok(Outcome::Ok)
    }

    /// The direct links of `blocks` (all in the listing, so the node reads them locally), or
    /// the first link missing from the listing.
    async fn links_of(&self, blocks: Vec<Cid>, local: &LocalBlocks) -> Result<Links, KuboError> {
        let texts: Vec<String> = blocks.iter().map(Cid::to_string).collect();
        let args: Vec<(&str, &str)> = texts.iter().map(|t| ("arg", t.as_str())).collect();
        let mut refs = self.open("refs", &args).await?;
        let mut links = Vec::new();
        while let Some(line) = self.next(&mut refs).await? {
            match line {
                RefLine::Ref(c) if !local.contains(&c) => {
                    let outcome = Outcome::Unretrievable(format!("block {c} missing"));
                    return Ok(Links::Missing(outcome));
                }
                RefLine::Ref(c) => links.push(c),
                // A block in the listing that the node cannot read after all.
                RefLine::Err(m) if is_missing_block(&m) => {
                    return Ok(Links::Missing(missing(&m, None)));
                }
                RefLine::Err(m) => return Err(KuboError::Other(format!("refs: {m}"))),
            }
        }
        Ok(Links::Present(links))
    }

    /// A streamed call whose headers must come within `idle`; the body is read by [`Walk::next`].
    async fn open(&self, path: &str, args: &[(&str, &str)]) -> Result<Lines, KuboError> {
        let request = self
            .rpc
            .post(path, args)
            .header(http::header::TE, "trailers");
        let response = timeout(self.idle, request.send())
            .await
            .map_err(|_| KuboError::Timeout)?
            .map_err(|e| classify(&e))?;
        if !response.status().is_success() {
            return Err(status_error(response, self.rpc.call_timeout()).await);
        }
        if let Some(err) = stream_error_header(response.headers()) {
            return Err(KuboError::Other(err));
        }
        Ok(Lines::new(response))
    }

    /// The next line of a `refs` stream, within `idle`; `None` at its end.
    async fn next(&self, lines: &mut Lines) -> Result<Option<RefLine>, KuboError> {
        match timeout(self.idle, lines.next()).await {
            Err(_) => Err(KuboError::Timeout),
            Ok(None) => Ok(None),
            Ok(Some(chunk)) => match chunk? {
                Chunk::StreamError(err) => Err(KuboError::Other(err)),
                Chunk::Line(line) => parse_ref_line(&line).map(Some),
            },
        }
    }
}

/// What one `refs` call on js-ipfs found.
enum Links {
    Present(Vec<Cid>),
    /// A block the node does not have (`Unretrievable`, naming it).
    Missing(Outcome),
}

/// Whether the node must read `cid`'s block to learn its links (raw blocks have none, identity
/// CIDs carry their data inline).
fn has_links(cid: &Cid) -> bool {
    cid.codec() != RAW_CODEC && cid.hash().code() != IDENTITY_HASH
}

/// One line of `refs` or `refs/local`.
#[derive(Debug, PartialEq)]
enum RefLine {
    Ref(Cid),
    /// The node's walk failed here (`{"Ref":"","Err":"..."}`, or an error object).
    Err(String),
}

/// `{"Ref": "<cid>", "Err": ""}` (Kubo and js-ipfs) → a CID or the error.
fn parse_ref_line(line: &[u8]) -> Result<RefLine, KuboError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| garbage(line, &e))?;
    if let Some(message) = error_message(&value) {
        return Ok(RefLine::Err(message));
    }
    if let Some(err) = value
        .get("Err")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        return Ok(RefLine::Err(err.to_string()));
    }
    let text = value
        .get("Ref")
        .and_then(Value::as_str)
        .ok_or_else(|| garbage(line, &"refs line without Ref"))?;
    Cid::try_from(text)
        .map(RefLine::Ref)
        .map_err(|e| garbage(line, &format!("bad CID {text:?}: {e}")))
}

/// The multihashes of the blocks in a repo. Blockstores are keyed by multihash, so a block
/// stored as `bafkrei…` (raw) is the same block as `bafybei…` (dag-pb) with the same hash.
#[derive(Debug, Default)]
struct LocalBlocks {
    /// Multihashes, as bytes.
    multihashes: HashSet<Vec<u8>>,
}

impl LocalBlocks {
    fn insert(&mut self, cid: &Cid) {
        self.multihashes.insert(cid.hash().to_bytes());
    }

    /// Identity CIDs carry their data inline: always "present".
    fn contains(&self, cid: &Cid) -> bool {
        cid.hash().code() == IDENTITY_HASH || self.multihashes.contains(&cid.hash().to_bytes())
    }
}

/// Kubo's message for an absent block, offline: `block was not found locally (offline): ipld:
/// could not find <cid>` (wording varies across versions: `merkledag: not found`); js-ipfs:
/// `Could not find object with CID: <cid>`.
fn is_missing_block(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not found") || m.contains("could not find")
}

/// Kubo's offline `refs` line for a block missing below the root, `{"Ref":"","Err":"failed to
/// fetch all nodes"}` (its DAG walker's word for "not in the local store", and it names no
/// block), or `ipld: could not find node`, the same without a CID.
fn is_unnamed_missing_block(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("failed to fetch all nodes") || m.ends_with("could not find node")
}

/// `Unretrievable` for a missing-block message, naming the block when the message does.
fn missing(message: &str, fallback: Option<&Cid>) -> Outcome {
    let named = message
        .split(|c: char| c.is_whitespace() || c == ':' || c == '"' || c == '\'')
        .rev()
        // The shortest CID text (CIDv0) has 46 characters: shorter words are never tried.
        .filter(|word| word.len() >= 46)
        .find_map(|word| Cid::try_from(word).ok());
    match named.as_ref().or(fallback) {
        Some(cid) => Outcome::Unretrievable(format!("block {cid} missing")),
        None => Outcome::Unretrievable(message.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubo::tests::{V1, V1_B58};

    const LEAF: &str = "bafkreiauizm3jdzufublskmja6vtf7hqi6nmtsm2buuty7box6g7ge65ci";

    #[test]
    fn ref_lines() {
        assert_eq!(
            parse_ref_line(format!(r#"{{"Ref":"{LEAF}","Err":""}}"#).as_bytes()).unwrap(),
            RefLine::Ref(Cid::try_from(LEAF).unwrap())
        );
        // js-ipfs prints CIDv1 in base58btc: the same CID.
        assert_eq!(
            parse_ref_line(format!(r#"{{"Ref":"{V1_B58}"}}"#).as_bytes()).unwrap(),
            RefLine::Ref(Cid::try_from(V1).unwrap())
        );
        assert_eq!(
            parse_ref_line(br#"{"Ref":"","Err":"merkledag: not found"}"#).unwrap(),
            RefLine::Err("merkledag: not found".into())
        );
        assert_eq!(
            parse_ref_line(br#"{"Message":"context canceled","Code":0,"Type":"error"}"#).unwrap(),
            RefLine::Err("context canceled".into())
        );
        assert!(matches!(
            parse_ref_line(br#"{"Ref":"nope"}"#),
            Err(KuboError::Garbage(_))
        ));
        assert!(matches!(
            parse_ref_line(b"<html>"),
            Err(KuboError::Garbage(_))
        ));
    }

    #[test]
    fn local_blocks_are_keyed_by_multihash() {
        let mut set = LocalBlocks::default();
        set.insert(&Cid::try_from(V1_B58).unwrap());
        // A raw-codec listing of the directory's block still counts for the dag-pb CID.
        let raw_form = Cid::new_v1(RAW_CODEC, *Cid::try_from(V1).unwrap().hash());
        assert!(set.contains(&raw_form));
        assert!(set.contains(&Cid::try_from(V1).unwrap()));
        assert!(!set.contains(&Cid::try_from(LEAF).unwrap()));
        // An identity CID is its own data.
        let inline = cid::multihash::Multihash::<64>::wrap(IDENTITY_HASH, b"hi").unwrap();
        assert!(set.contains(&Cid::new_v1(RAW_CODEC, inline)));
    }

    use crate::kubo::recorded::*;
    use crate::kubo::replay::{Replay, Reply};
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::sync::Arc;

    const DAG_PB: u64 = 0x70;
    const IDLE: Duration = Duration::from_millis(300);

    fn block(codec: u64, name: &str) -> Cid {
        let digest = Sha256::digest(name.as_bytes());
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap();
        if codec == 0 {
            Cid::new_v0(mh).unwrap()
        } else {
            Cid::new_v1(codec, mh)
        }
    }

    /// An HLS-like DAG: a directory of `files` files of `leaves` leaves each (raw leaves, or
    /// dag-pb CIDv0 ones as `ipfs add` without `--raw-leaves` makes).
    struct Dag {
        root: Cid,
        links: HashMap<Cid, Vec<Cid>>,
    }

    impl Dag {
        fn hls(files: usize, leaves: usize, v0: bool) -> Dag {
            let (node, leaf) = if v0 { (0, 0) } else { (DAG_PB, RAW_CODEC) };
            let root = block(node, "root");
            let mut links = HashMap::new();
            let mut children = Vec::new();
            for f in 0..files {
                let file = block(node, &format!("f{f}"));
                let parts: Vec<Cid> = (0..leaves)
                    .map(|l| block(leaf, &format!("f{f}l{l}")))
                    .collect();
                for part in &parts {
                    links.insert(*part, Vec::new());
                }
                links.insert(file, parts);
                children.push(file);
            }
            links.insert(root, children);
            Dag { root, links }
        }

        fn blocks(&self) -> impl Iterator<Item = &Cid> {
            self.links.keys()
        }

        fn a_leaf(&self) -> Cid {
            self.links[&self.root]
                .iter()
                .flat_map(|f| self.links[f].iter())
                .last()
                .copied()
                .unwrap()
        }
    }

    /// The `arg`s of a request target.
    fn args(target: &str) -> Vec<Cid> {
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("arg="))
            .map(|c| Cid::try_from(c).expect("a CID arg"))
            .collect()
    }

    /// js-ipfs with `dag` in its repo, but for `absent`: `refs/local` lists blocks as raw
    /// CIDv1s (as js-ipfs does), `refs?arg=..` prints the direct links of each arg. A block it
    /// lacks would be fetched: here it hangs, as without a provider.
    async fn js_ipfs(dag: Dag, absent: &[Cid]) -> (Replay, Arc<Dag>) {
        let dag = Arc::new(dag);
        let absent: Vec<Vec<u8>> = absent.iter().map(|c| c.hash().to_bytes()).collect();
        let node = Arc::clone(&dag);
        let replay = Replay::start(move |target, _| {
            let every = Duration::ZERO;
            let has = |c: &Cid| !absent.contains(&c.hash().to_bytes());
            if target.starts_with("/api/v0/refs/local") {
                let lines: Vec<String> = node
                    .blocks()
                    .filter(|c| has(c))
                    .map(|c| js_ref(&Cid::new_v1(RAW_CODEC, *c.hash()).to_string()))
                    .collect();
                return Reply::stream(JS_STREAM_HEAD, &lines, every);
            }
            let asked = args(target);
            if asked.iter().any(|c| !has(c)) {
                return Reply::hang(JS_STREAM_HEAD);
            }
            let lines: Vec<String> = asked
                .iter()
                .flat_map(|c| node.links[c].iter())
                .map(|c| js_ref(&c.to_string()))
                .collect();
            Reply::stream(JS_STREAM_HEAD, &lines, every)
        })
        .await;
        (replay, dag)
    }

    async fn check_via(replay: &Replay, flavour: Flavour, root: Cid) -> Outcome {
        check(&replay.rpc(), "node", flavour, root, IDLE)
            .await
            .unwrap_or_else(Outcome::from)
    }

    /// The `refs` calls made, and whether any asked about a raw block.
    fn refs_calls(replay: &Replay) -> (usize, bool) {
        let refs: Vec<String> = replay
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("/api/v0/refs?"))
            .collect();
        let raw = refs
            .iter()
            .flat_map(|c| args(c))
            .any(|c| c.codec() == RAW_CODEC);
        (refs.len(), raw)
    }

    #[tokio::test]
    async fn js_ipfs_walk_never_reads_raw_leaves() {
        // 250 files: the second level takes three batches.
        let (replay, dag) = js_ipfs(Dag::hls(250, 4, false), &[]).await;
        assert_eq!(
            check_via(&replay, Flavour::JsIpfs, dag.root).await,
            Outcome::Ok
        );
        assert_eq!(replay.count("refs/local"), 1);
        assert_eq!(refs_calls(&replay), (1 + 3, false), "{:?}", replay.calls());
    }

    /// A CIDv1 DAG with dag-pb leaves (`--raw-leaves=false`): the leaves are asked about too.
    #[tokio::test]
    async fn js_ipfs_level_walk_asks_about_dag_pb_leaves() {
        let mut dag = Dag::hls(30, 5, true);
        let v1 = |c: &Cid| Cid::new_v1(DAG_PB, *c.hash());
        dag.links = dag
            .links
            .iter()
            .map(|(k, v)| (v1(k), v.iter().map(v1).collect()))
            .collect();
        dag.root = v1(&dag.root);
        let (replay, dag) = js_ipfs(dag, &[]).await;
        assert_eq!(
            check_via(&replay, Flavour::JsIpfs, dag.root).await,
            Outcome::Ok
        );
        // Root, 30 files, 150 leaves: 1 + 1 + 2 batches.
        assert_eq!(refs_calls(&replay), (4, false));
    }

    /// js-ipfs' recursive `refs` from `root`, depth first: every link printed before its block
    /// is read; `true` when it reached a block it lacks (then it hangs, as without a provider).
    fn js_recursive(dag: &Dag, root: &Cid, absent: &[Cid]) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        let mut stack = vec![*root];
        while let Some(block) = stack.pop() {
            for link in dag.links[&block].iter().rev() {
                lines.push(js_ref(&link.to_string()));
                if absent.contains(link) {
                    return (lines, true);
                }
                stack.push(*link);
            }
        }
        (lines, false)
    }

    async fn js_ipfs_v0(dag: Dag, absent: Vec<Cid>) -> (Replay, Arc<Dag>) {
        let dag = Arc::new(dag);
        let node = Arc::clone(&dag);
        let replay = Replay::start(move |target, _| {
            if target.starts_with("/api/v0/refs/local") {
                let lines: Vec<String> = node
                    .blocks()
                    .filter(|c| !absent.contains(c))
                    .map(|c| js_ref(&Cid::new_v1(RAW_CODEC, *c.hash()).to_string()))
                    .collect();
                return Reply::stream(JS_STREAM_HEAD, &lines, Duration::ZERO);
            }
            assert!(target.contains("recursive=true"), "{target}");
            let (lines, hangs) = js_recursive(&node, &args(target)[0], &absent);
            let reply = Reply::stream(JS_STREAM_HEAD, &lines, Duration::ZERO);
            if hangs { reply.then_hang() } else { reply }
        })
        .await;
        (replay, dag)
    }

    /// CIDv0 (dag-pb leaves, every block read anyway): one streamed recursive walk.
    #[tokio::test]
    async fn js_ipfs_cidv0_dag_is_one_recursive_walk() {
        let (replay, dag) = js_ipfs_v0(Dag::hls(30, 5, true), Vec::new()).await;
        assert_eq!(
            check_via(&replay, Flavour::JsIpfs, dag.root).await,
            Outcome::Ok
        );
        assert_eq!(refs_calls(&replay).0, 1);
        let dag = Dag::hls(30, 5, true);
        let leaf = dag.a_leaf();
        let (replay, dag) = js_ipfs_v0(dag, vec![leaf]).await;
        // Named as soon as it was printed (the node then hangs on it: waiting would end in a
        // timeout).
        assert_eq!(
            check_via(&replay, Flavour::JsIpfs, dag.root).await,
            Outcome::Unretrievable(format!("block {leaf} missing"))
        );
    }

    #[tokio::test]
    async fn js_ipfs_missing_leaf_is_named_and_never_asked_about() {
        let dag = Dag::hls(3, 4, false);
        let leaf = dag.a_leaf();
        let (replay, dag) = js_ipfs(dag, &[leaf]).await;
        assert_eq!(
            check_via(&replay, Flavour::JsIpfs, dag.root).await,
            Outcome::Unretrievable(format!("block {leaf} missing"))
        );
        assert_eq!(refs_calls(&replay), (2, false));
    }

    #[tokio::test]
    async fn js_ipfs_missing_root_costs_no_walk() {
        let dag = Dag::hls(3, 4, false);
        let root = dag.root;
        let (replay, _) = js_ipfs(dag, &[root]).await;
        assert_eq!(
            check_via(&replay, Flavour::JsIpfs, root).await,
            Outcome::Unretrievable(format!("block {root} missing"))
        );
        assert_eq!(refs_calls(&replay).0, 0);
    }

    /// A block listed locally, yet the node's walk hangs on it (gone since the listing): a
    /// timeout, reported as such, not as a missing block.
    #[tokio::test]
    async fn js_ipfs_walk_that_hangs_is_a_timeout() {
        let dag = Dag::hls(3, 4, true);
        let root = dag.root;
        let listed: Vec<String> = dag.blocks().map(|c| js_ref(&c.to_string())).collect();
        let replay = Replay::start(move |target, _| {
            if target.starts_with("/api/v0/refs/local") {
                Reply::stream(JS_STREAM_HEAD, &listed, Duration::ZERO)
            } else {
                Reply::hang(JS_STREAM_HEAD)
            }
        })
        .await;
        let started = std::time::Instant::now();
        assert_eq!(
            check_via(&replay, Flavour::JsIpfs, root).await,
            Outcome::Timeout
        );
        assert!(started.elapsed() < IDLE * 3, "{:?}", started.elapsed());
    }

    /// Kubo: every block of the DAG listed in one streamed, offline call.
    fn kubo_walk(dag: &Dag) -> Vec<String> {
        dag.blocks()
            .filter(|c| **c != dag.root)
            .map(|c| kubo_ref(&c.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn kubo_walk_is_one_offline_call_however_long_it_takes() {
        let dag = Dag::hls(10, 8, true);
        let lines = kubo_walk(&dag);
        assert_eq!(lines.len(), 90);
        // 90 lines, 10 ms apart: the walk outlasts the idle limit three times over.
        let replay = Replay::start(move |_, _| {
            Reply::stream(KUBO_STREAM_HEAD, &lines, Duration::from_millis(10))
        })
        .await;
        assert_eq!(
            check_via(&replay, Flavour::Kubo, dag.root).await,
            Outcome::Ok
        );
        let calls = replay.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(
            calls[0],
            format!(
                "/api/v0/refs?arg={}&recursive=true&unique=true&offline=true",
                dag.root
            )
        );
    }

    #[tokio::test]
    async fn kubo_missing_block_ends_the_walk() {
        let dag = Dag::hls(4, 4, false);
        let leaf = dag.a_leaf();
        let mut lines: Vec<String> = kubo_walk(&dag).into_iter().take(6).collect();
        lines.push(ref_error(&kubo_offline_missing(&leaf.to_string())));
        let replay = Replay::start(move |_, _| {
            Reply::stream(KUBO_STREAM_HEAD, &lines, Duration::from_millis(1))
        })
        .await;
        assert_eq!(
            check_via(&replay, Flavour::Kubo, dag.root).await,
            Outcome::Unretrievable(format!("block {leaf} missing"))
        );
    }

    /// Kubo 0.43 lists depth first and names no block when one is missing below the root:
    /// the walk finds it from the listing and the links of the node it stopped in.
    #[tokio::test]
    async fn kubo_unnamed_missing_block_is_found_from_the_listing() {
        let dag = Arc::new(Dag::hls(4, 4, false));
        let files = dag.links[&dag.root].clone();
        let absent = dag.links[&files[2]][1];
        let mut lines = Vec::new();
        'walk: for file in &files {
            lines.push(kubo_ref(&file.to_string()));
            for leaf in &dag.links[file] {
                if *leaf == absent {
                    break 'walk;
                }
                lines.push(kubo_ref(&leaf.to_string()));
            }
        }
        lines.push(ref_error(KUBO_REFS_UNNAMED_MISSING));
        let node = Arc::clone(&dag);
        let replay = Replay::start(move |target, _| {
            if !target.starts_with("/api/v0/dag/get") {
                return Reply::stream(KUBO_STREAM_HEAD, &lines, Duration::from_millis(1));
            }
            let parent = args(target)[0];
            let links: Vec<Value> = node.links[&parent]
                .iter()
                .map(|c| serde_json::json!({"Hash": {"/": c.to_string()}, "Name": "", "Tsize": 1}))
                .collect();
            let body = serde_json::json!({"Data": {"/": {"bytes": "CAE"}}, "Links": links});
            Reply::stream(KUBO_DAG_GET_HEAD, &[body.to_string()], Duration::ZERO)
        })
        .await;
        assert_eq!(
            check_via(&replay, Flavour::Kubo, dag.root).await,
            Outcome::Unretrievable(format!("block {absent} missing"))
        );
        // The walk, then the node it stopped in (leaves are raw: never read); a few more may
        // have started alongside.
        let calls = replay.calls();
        assert_eq!(args(&calls[1]), vec![files[2]], "{calls:?}");
        assert!(
            calls[1..].iter().all(|c| c.starts_with("/api/v0/dag/get?")),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn kubo_missing_root_is_an_http_500() {
        let root = Dag::hls(1, 1, false).root;
        let body = kubo_error(&kubo_offline_missing(&root.to_string()));
        let replay = Replay::start(move |_, _| Reply::whole(KUBO_ERROR_HEAD, &body)).await;
        assert_eq!(
            check_via(&replay, Flavour::Kubo, root).await,
            Outcome::Unretrievable(format!("block {root} missing"))
        );
    }

    #[tokio::test]
    async fn kubo_walk_that_stops_is_a_timeout() {
        let dag = Dag::hls(4, 4, false);
        let lines: Vec<String> = kubo_walk(&dag).into_iter().take(5).collect();
        let replay = Replay::start(move |_, _| {
            Reply::stream(KUBO_STREAM_HEAD, &lines, Duration::from_millis(1)).then_hang()
        })
        .await;
        assert_eq!(
            check_via(&replay, Flavour::Kubo, dag.root).await,
            Outcome::Timeout
        );
    }

    #[test]
    fn missing_block_messages() {
        let kubo = format!("block was not found locally (offline): ipld: could not find {LEAF}");
        assert!(is_missing_block(&kubo));
        assert_eq!(
            missing(&kubo, None),
            Outcome::Unretrievable(format!("block {LEAF} missing"))
        );
        let js = format!("Could not find object with CID: {V1_B58}");
        assert!(is_missing_block(&js));
        assert_eq!(
            missing(&js, None),
            Outcome::Unretrievable(format!("block {V1} missing"))
        );
        let root = Cid::try_from(V1).unwrap();
        assert_eq!(
            missing("merkledag: not found", Some(&root)),
            Outcome::Unretrievable(format!("block {V1} missing"))
        );
        assert_eq!(
            missing("merkledag: not found", None),
            Outcome::Unretrievable("merkledag: not found".into())
        );
        assert!(!is_missing_block("context deadline exceeded"));
    }
}
