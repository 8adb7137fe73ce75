//! Are all of a DAG's blocks in a node's local store? The retrievability check.
//!
//! The walk is breadth-first, `concurrency` requests at a time: every block must be present; the
//! links of each present non-raw block come from `refs?arg=<block>` (direct links only, which
//! reads just that block, already known to be local).
//!
//! Presence must never trigger a fetch, or a node connected to the provider would "pass" by
//! downloading the content during the check:
//! - Kubo honours `offline=true`: `block/stat?offline=true` per block.
//! - js-ipfs ignores `offline` (its HTTP layer strips unknown query parameters) and
//!   `block/stat`/`refs` on a missing block go to bitswap: they hang without a provider and fetch
//!   with one. A short per-call timeout would still fetch from a connected peer, so instead the
//!   walk takes one `refs/local` listing (every block in the repo, keyed by multihash) and checks
//!   membership. That listing grows with the repo, which is acceptable for js-ipfs (test nodes);
//!   Kubo never takes this path.
//!
//! Which of the two a node is comes from the caller ([`Flavour`]).

use super::flavour::Flavour;
use super::transport::{KuboError, Rpc};
use crate::Outcome;
use cid::Cid;
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashSet;

/// Multicodec of raw blocks: leaves without links.
const RAW_CODEC: u64 = 0x55;
/// Multihash code of identity hashes: the data is inline in the CID, never stored as a block.
const IDENTITY_HASH: u64 = 0x00;

/// The walk's root, parsed before anything is asked of the node.
pub(super) fn parse_root(cid: &str) -> Result<Cid, KuboError> {
    Cid::try_from(cid).map_err(|e| KuboError::Other(format!("bad CID {cid}: {e}")))
}

/// `Ok` when every block under `root` is local, `Unretrievable` naming a missing one otherwise.
/// `node` names the node in logs.
pub(super) async fn check(
    rpc: &Rpc,
    node: &str,
    flavour: Flavour,
    root: Cid,
    concurrency: usize,
) -> Result<Outcome, KuboError> {
    let presence = match flavour {
        Flavour::Kubo => Presence::Offline,
        Flavour::JsIpfs => {
            let request = rpc.post("refs/local", &[]);
            let lines = rpc.call_lines(request, rpc.call_timeout()).await?;
            Presence::LocalSet(LocalBlocks::from_refs(&parse_refs(&lines)?))
        }
    };
    let walk = Walk { rpc, presence };
    let mut seen = HashSet::new();
    seen.insert(root.hash().to_bytes());
    let mut frontier = vec![root];
    let mut checked = 0usize;
    while !frontier.is_empty() {
        let results: Vec<Result<Block, KuboError>> = futures::stream::iter(frontier.drain(..))
            .map(|c| walk.examine(c))
            .buffer_unordered(concurrency.max(1))
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
    tracing::debug!(node = %node, cid = %root, blocks = checked, "all blocks present");
    Ok(Outcome::Ok)
}

/// How [`Walk::is_present`] knows a block is local.
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

struct Walk<'a> {
    rpc: &'a Rpc,
    presence: Presence,
}

impl Walk<'_> {
    /// Present (with its direct links) or missing.
    async fn examine(&self, c: Cid) -> Result<Block, KuboError> {
        if !self.is_present(&c).await? {
            return Ok(Block::Missing(c));
        }
        if c.codec() == RAW_CODEC || c.hash().code() == IDENTITY_HASH {
            return Ok(Block::Present(Vec::new()));
        }
        Ok(Block::Present(self.links(&c).await?))
    }

    /// Is this block in the local store? Never asks the network (see [`Presence`]).
    async fn is_present(&self, cid: &Cid) -> Result<bool, KuboError> {
        if cid.hash().code() == IDENTITY_HASH {
            return Ok(true);
        }
        match &self.presence {
            Presence::LocalSet(set) => Ok(set.contains(cid)),
            Presence::Offline => {
                let cid_text = cid.to_string();
                let stat: Result<Value, KuboError> = self
                    .rpc
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
        let request = self
            .rpc
            .post("refs", &[("arg", &cid_text), ("offline", "true")]);
        let lines = self
            .rpc
            .call_lines(request, self.rpc.call_timeout())
            .await?;
        parse_refs(&lines)
    }
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

/// Kubo's `block/stat?offline=true` on an absent block: `block was not found locally
/// (offline): ipld: could not find <cid>` (wording varies across versions).
fn is_missing_block(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not found") || m.contains("could not find")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubo::tests::{V1, V1_B58};

    #[test]
    fn refs_output() {
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
    }

    #[test]
    fn missing_block_messages() {
        assert!(is_missing_block(
            "block was not found locally (offline): ipld: could not find bafy"
        ));
        assert!(!is_missing_block("context deadline exceeded"));
    }
}
