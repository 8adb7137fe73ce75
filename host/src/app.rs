//! Everything a command needs to run jobs: the configuration, the policy (and its fallback),
//! and the topology of real node clients. Built once per process.

use crate::config::{Config, ConfigError, RoleConfig};
use crate::executor::Topology;
use crate::kubo::{KuboClient, KuboConfig};
use crate::policy::engine::Limits;
use crate::policy::{BUILTIN_FALLBACK, Policy, PolicyEngine, Registry, Source};
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
        let engine = PolicyEngine::new(
            Limits::default(),
            Some(config.data_dir.join("policy-cache")),
        )
        .map_err(|e| ConfigError(format!("cannot start the WebAssembly engine: {e:#}")))?;
        let registry = Registry::new(engine);
        let policy_err = |e: &dyn std::fmt::Display| {
            ConfigError(format!("policy.name '{}': {e}", config.policy.name))
        };
        let bare = registry
            .resolve(&config.policy.name, &[])
            .map_err(|e| policy_err(&e))?;
        let params = config.policy_params(|k| bare.declares(k));
        let policy =
            Arc::new(bare.with_params(&params).map_err(|e| {
                ConfigError(format!("policy.params ({}): {}", bare.name, e.message))
            })?);
        // When the policy is the built-in fallback itself, one compiled copy serves as both.
        let fallback = if policy.source == Source::Builtin && policy.name == BUILTIN_FALLBACK {
            Arc::clone(&policy)
        } else {
            registry.fallback_for(&params).map_err(|e| policy_err(&e))?
        };

        let mut topology = Topology::new();
        let mut primary = None;
        let mut local = None;
        // The data dir lets one-shot processes skip `id` (see `kubo::KuboConfig::data_dir`).
        let kubo_cfg = KuboConfig {
            data_dir: Some(config.data_dir.clone()),
            ..KuboConfig::default()
        };
        for node in &config.nodes {
            let auth = node
                .credentials()
                .map_err(|m| ConfigError(format!("node {}: {m}", node.name)))?;
            let client = Arc::new(
                KuboClient::with_config(node.name.clone(), &node.url, auth, kubo_cfg.clone())
                    .map_err(|e| ConfigError(format!("node {}.url: {e}", node.name)))?,
            );
            match node.role {
                RoleConfig::Primary => primary = Some(Arc::clone(&client)),
                RoleConfig::Local => local = Some(Arc::clone(&client)),
                RoleConfig::Backup => {}
            }
            if node.role != RoleConfig::Local || config.local_fallback.enabled {
                topology.add(&node.name, node.role.into(), client);
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
