//! Which implementation answers: Kubo or js-ipfs. It decides how the presence walk checks that
//! a block is local (see `presence`); nothing else depends on it.

/// Kubo or js-ipfs, as far as this client cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavour {
    /// Honours `offline=true` (Kubo, and anything that is not js-ipfs).
    Kubo,
    /// Ignores `offline`: presence comes from `refs/local`.
    JsIpfs,
}

impl Flavour {
    /// From `id`'s `AgentVersion` (`kubo/0.x.y/...`, `js-ipfs/0.x.y`).
    pub(super) fn from_agent(agent_version: &str) -> Flavour {
        if agent_version.starts_with("js-ipfs") {
            Flavour::JsIpfs
        } else {
            Flavour::Kubo
        }
    }
}
