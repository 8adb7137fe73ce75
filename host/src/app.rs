//! Everything a command needs to run jobs: the configuration, the policy (and its fallback),
//! and the topology of real node clients. Built once per process.

use crate::Role;
use crate::config::{Config, ConfigError, NodeConfig};
use crate::executor::Topology;
use crate::kubo::{KuboClient, KuboConfig};
use crate::node::{Node, NodeKind};
use crate::policy::engine::SandboxLimits;
use crate::policy::{BUILTIN_FALLBACK, Policy, PolicyEngine, Registry, Source};
use crate::remote::{RemoteNode, cluster::Cluster, http::Http, psa::Psa};
use std::sync::Arc;

pub struct App {
    pub config: Config,
    pub registry: Registry,
    pub policy: Arc<Policy>,
    pub fallback: Arc<Policy>,
    /// The nodes jobs use (the local node only when the local fallback is enabled).
    pub topology: Topology,
    pub primary: Arc<KuboClient>,
    /// The local node, when configured (enabled or not: migration reads from it).
    pub local: Option<Arc<KuboClient>>,
}

impl App {
    /// Loads the policy and builds the node clients; every error names what is wrong (exit 2).
    pub fn new(config: Config) -> Result<App, ConfigError> {
        let cache = config.data_dir.join("policy-cache");
        let (registry, policy, fallback) = load_policies(&config, Some(cache))?;

        // One node-health ledger per process, remembered in the data directory so consecutive
        // one-shot `pinwarden pin` processes learn from each other.
        let ledger = Arc::new(crate::health::Ledger::open(&config.data_dir));
        let mut topology = Topology::with_ledger(ledger);
        let mut primary = None;
        let mut local = None;
        for node in &config.nodes {
            let client: Arc<dyn Node> = match node.role {
                // Config validation keeps these two Kubo: the upload and the fallback pins
                // need its RPC.
                Role::Primary | Role::Local => {
                    let kubo = Arc::new(client_for(node, Some(&config.data_dir))?);
                    if node.role == Role::Primary {
                        primary = Some(Arc::clone(&kubo));
                    } else {
                        local = Some(Arc::clone(&kubo));
                    }
                    kubo
                }
                Role::Backup => node_for(&config, node)?,
            };
            if config.job_uses(node) {
                topology.add(&node.name, node.role, client);
            }
        }
        let primary = primary.ok_or_else(|| ConfigError("no primary node configured".into()))?;
        Ok(App {
            config,
            registry,
            policy,
            fallback,
            topology,
            primary,
            local,
        })
    }
}

/// The configured policy with its parameters, and the built-in fallback a contained job moves
/// to, loaded the way every command loads them (`cache`: where compiled components are kept).
/// Errors name the key at fault (exit 2).
pub fn load_policies(
    config: &Config,
    cache: Option<std::path::PathBuf>,
) -> Result<(Registry, Arc<Policy>, Arc<Policy>), ConfigError> {
    let engine = PolicyEngine::new(SandboxLimits::default(), cache)
        .map_err(|e| ConfigError(format!("cannot start the WebAssembly engine: {e:#}")))?;
    let registry = Registry::new(engine);
    let policy_err = |e: &dyn std::fmt::Display| {
        ConfigError(format!("policy.name '{}': {e}", config.policy.name))
    };
    let bare = registry
        .resolve(&config.policy.name, &[])
        .map_err(|e| policy_err(&e))?;
    let params = config.policy_params(|k| bare.declares(k));
    let policy = Arc::new(
        bare.with_params(&params)
            .map_err(|e| ConfigError(format!("policy.params ({}): {}", bare.name, e.message)))?,
    );
    // When the policy is the built-in fallback itself, one compiled copy serves as both.
    let fallback = if policy.source == Source::Builtin && policy.name == BUILTIN_FALLBACK {
        Arc::clone(&policy)
    } else {
        // Every configured parameter the fallback understands, not only those the custom
        // policy declares (the local-fallback threshold, say): a contained job keeps them.
        let configured = config.policy_params(|_| true);
        registry
            .fallback_for(&configured)
            .map_err(|e| policy_err(&e))?
    };
    Ok((registry, policy, fallback))
}

/// The RPC client of a configured node, with its credentials. With the data dir, one-shot
/// processes remember the node's flavour there (see `kubo::KuboConfig::data_dir`).
pub fn client_for(
    node: &NodeConfig,
    data_dir: Option<&std::path::Path>,
) -> Result<KuboClient, ConfigError> {
    let config = KuboConfig {
        data_dir: data_dir.map(std::path::Path::to_path_buf),
        ..KuboConfig::default()
    };
    client_with(node, config)
}

/// [`client_for`] with explicit time bounds (`pinwarden doctor` asks with short ones).
pub fn client_with(node: &NodeConfig, config: KuboConfig) -> Result<KuboClient, ConfigError> {
    let auth = node
        .credentials()
        .map_err(|m| ConfigError(format!("node {}: {m}", node.name)))?;
    KuboClient::with_config(node.name.clone(), &node.url, auth, config)
        .map_err(|e| ConfigError(format!("node {}.url: {e}", node.name)))
}

/// Default poll of a remote request's status.
const DEFAULT_POLL_MS: u64 = 500;
/// One status call to a remote backend.
const REMOTE_CALL: std::time::Duration = std::time::Duration::from_secs(10);

/// The backend behind a configured node, of its kind (`api`), with its credentials.
pub fn node_for(config: &Config, node: &NodeConfig) -> Result<Arc<dyn Node>, ConfigError> {
    let data_dir = Some(config.data_dir.as_path());
    let at = |e: String| ConfigError(format!("node {}: {e}", node.name));
    let http = || {
        let auth = node.credentials().map_err(at)?;
        Http::new(&node.url, auth, REMOTE_CALL).map_err(|e| at(format!("url: {e}")))
    };
    let poll = std::time::Duration::from_millis(node.poll_ms.unwrap_or(DEFAULT_POLL_MS));
    Ok(match node.api {
        NodeKind::Kubo => Arc::new(client_for(node, data_dir)?),
        NodeKind::Cluster => {
            let peers = node
                .peer_kubo_urls
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    KuboClient::new(format!("{}/peer-{i}", node.name), url, None)
                        .map(Arc::new)
                        .map_err(|e| at(format!("peer_kubo_urls: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (min, max) = node.replication();
            let cluster = Cluster::new(http()?, min, max, peers);
            Arc::new(RemoteNode::new(&node.name, Arc::new(cluster), poll))
        }
        NodeKind::Psa => {
            let check_via = match &node.check_via {
                None => None,
                Some(name) => {
                    let via = config
                        .nodes
                        .iter()
                        .find(|n| &n.name == name)
                        .ok_or_else(|| at(format!("check_via: no node is named '{name}'")))?;
                    Some(Arc::new(client_for(via, data_dir)?))
                }
            };
            let psa = Psa::new(http()?, check_via);
            Arc::new(RemoteNode::new(&node.name, Arc::new(psa), poll))
        }
    })
}
