//! Configuration: a TOML file, then the seeds' environment variables, then `--param`.
//!
//! The environment is read here and only here ([`process_env`]); everything else gets the
//! values: [`Config::load`] reads the seeds' variables and the ones `*_env` keys name, and the
//! rest of pinwarden takes an [`Env`] so tests can inject one.
//!
//! ```toml
//! data_dir = "data"                 # queue database, journal, compiled-policy cache
//! node_name = "encoder-node-1"      # journal's node_id (NODE_NAME)
//!
//! [[node]]
//! name = "supernode"
//! url = "https://supernode.example:5001"
//! role = "primary"                  # primary | backup | local
//! bearer_token_env = "SUPERNODE_TOKEN"   # or bearer_token, or basic_user + basic_password(_env)
//!
//! [policy]
//! name = "tank-mode"                # a built-in name or a .wasm path
//! params = { attempts = 5, quorum = 1 }
//!
//! [local_fallback]
//! enabled = false                   # ENABLE_LOCAL_FALLBACK
//! threshold = 3                     # LOCAL_FALLBACK_THRESHOLD: the policy's local_fallback_after
//! ```

use crate::Role;
use crate::kubo::Auth;
use crate::node::NodeKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default config file, used when present.
pub const DEFAULT_FILE: &str = "pinwarden.toml";

/// The data directory when neither `--data-dir` nor the config file names one.
pub const DEFAULT_DATA_DIR: &str = "data";

/// The environment as pinwarden reads it: a variable's value, if set.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process's environment: the one place pinwarden reads it. Commands pass it down as an
/// [`Env`]; tests pass their own.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A value read from a variable that a `*_env` key names; `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FromEnv(Option<String>);

impl std::fmt::Debug for FromEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "set" } else { "unset" })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Absent: `$HOSTNAME`, else the kernel's host name (filled in by [`Config::load`]).
    #[serde(default, deserialize_with = "non_blank_node_name")]
    pub node_name: String,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub local_fallback: LocalFallbackConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The Pinning Services API listener of `pinwarden serve` (off unless `psa.listen` is set).
    #[serde(default)]
    pub psa: PsaConfig,
    /// Completion webhooks (`[notify]`, off unless `url` or `allowed_hosts` is set).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// Round records in `data_dir/rounds` (`[rounds]`, on by default).
    #[serde(default)]
    pub rounds: crate::rounds::store::RoundsConfig,
    /// The HMAC key, read from `notify.secret_env`'s variable by [`Config::load`].
    #[serde(skip)]
    notify_secret: FromEnv,
    /// Spike alerts (`[[alert]]` tables).
    #[serde(default, rename = "alert", skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertRule>,
}

/// `[[alert]]`: fire when more than `threshold` `signal` events happen within `window_secs`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    /// pin_retries | verification_failures | local_fallbacks | policy_incidents | breaker_opened
    pub signal: String,
    #[serde(default = "default_window")]
    pub window_secs: u64,
    pub threshold: u64,
    /// Optional URL that receives a JSON POST when the rule fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// The signals an alert rule may watch.
pub const ALERT_SIGNALS: &[&str] = &[
    "pin_retries",
    "verification_failures",
    "local_fallbacks",
    "policy_incidents",
    "breaker_opened",
];

fn default_window() -> u64 {
    60
}

/// `[psa]`: pinwarden as a pinning service (IPFS Pinning Services API v1.0.0), on a listener
/// of its own; clients are given `http://<listen>` as the service endpoint.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PsaConfig {
    /// e.g. "127.0.0.1:5050". Host names and connection limits as on the `/v1` TCP listener
    /// (`daemon.allowed_hosts`, `daemon.max_connections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The users: one "NAME TOKEN" per line (tokens of at least 16 characters, none the `/v1`
    /// token). Required with `listen`; read when the daemon starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
}

/// `[daemon]`: the `pinwarden serve` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Unix socket. Default: `<data_dir>/pinwarden.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// The socket's permissions: "0600" (the daemon's user only) or "0660" (its group too:
    /// run the daemon with the encoder's group, see deploy/systemd). Nothing wider.
    pub socket_mode: String,
    /// Optional TCP listener, e.g. "127.0.0.1:7070"; a non-loopback one needs a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Environment variable holding the bearer token required on the TCP listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The token itself: `token_env`'s variable, else PINWARDEN_TOKEN, read by [`Config::load`].
    #[serde(skip)]
    token_from_env: FromEnv,
    /// Pins running at once.
    pub concurrent_pins: usize,
    /// Finished jobs are forgotten after this many days (0: keep forever).
    pub retention_days: u32,
    /// First delay before a failed lazy round is retried; doubles per round up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How often the configured policy file is checked for changes (0: no watch).
    pub watch_ms: u64,
    /// The only directory `policy reload FILE` may load component files from (besides the
    /// configured policy file). Unset: only built-in names and the configured file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_dir: Option<PathBuf>,
    /// More Host names the TCP listener answers to (its own address and the loopback names on
    /// its port always; anything else, a DNS-rebinding page say, gets 403).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Connections open at once, per listener; more wait for one to close.
    pub max_connections: usize,
    /// Let a loopback TCP listener run without a bearer token (logged loudly at start).
    pub insecure_loopback_tcp: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: None,
            socket_mode: "0600".into(),
            listen: None,
            token_env: None,
            token_from_env: FromEnv::default(),
            concurrent_pins: 10,
            retention_days: 7,
            retry_base_ms: 60_000,
            retry_max_ms: 3_600_000,
            watch_ms: 1_000,
            policy_dir: None,
            allowed_hosts: Vec::new(),
            max_connections: 256,
            insecure_loopback_tcp: false,
        }
    }
}

impl DaemonConfig {
    /// `socket_mode` as permission bits, if it is one of the two allowed.
    pub fn socket_mode_bits(&self) -> Option<u32> {
        match self.socket_mode.trim() {
            "0600" | "600" => Some(0o600),
            "0660" | "660" => Some(0o660),
            _ => None,
        }
    }

    /// The TCP listener's bearer token (`None`: no token configured). It must have at least 16
    /// characters, and a variable named by `token_env` must be set.
    pub fn token(&self) -> Result<Option<String>, String> {
        let var = self.token_var();
        match &self.token_from_env.0 {
            Some(t) if t.trim().len() >= 16 => Ok(Some(t.trim().to_string())),
            Some(_) => Err(format!(
                "{var}: the bearer token must be at least 16 characters"
            )),
            None if self.token_env.is_some() => Err(format!(
                "daemon.token_env: environment variable {var} is not set"
            )),
            None => Ok(None),
        }
    }

    fn token_var(&self) -> &str {
        self.token_env.as_deref().unwrap_or("PINWARDEN_TOKEN")
    }

    /// Delay before lazy round `failed_rounds + 1`.
    pub fn retry_delay_ms(&self, failed_rounds: u32) -> u64 {
        let factor = 1u64.checked_shl(failed_rounds.min(32)).unwrap_or(u64::MAX);
        self.retry_base_ms
            .saturating_mul(factor)
            .min(self.retry_max_ms)
    }
}

/// [`DEFAULT_DATA_DIR`] as a path.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

/// Where the daemon's socket is: `configured` (`daemon.socket`), else
/// `<data_dir>/pinwarden.sock`.
pub fn socket_in(data_dir: &Path, configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(|| data_dir.join("pinwarden.sock"), Path::to_path_buf)
}

/// The seeds' local node, IPFS_LOCAL_API, when set: it replaces the config's local node.
pub fn local_api(env: Env) -> Option<String> {
    env("IPFS_LOCAL_API").filter(|v| !v.trim().is_empty())
}

/// `$HOSTNAME`, else the kernel's host name (a systemd service has no `$HOSTNAME`).
fn default_node_name(env: Env) -> String {
    env("HOSTNAME")
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            let uname = rustix::system::uname();
            let name = uname.nodename().to_string_lossy().trim().to_string();
            (!name.is_empty()).then_some(name)
        })
        .unwrap_or_else(|| "pinwarden".into())
}

/// An explicit `node_name` must name something (absent, it defaults to the host name).
fn non_blank_node_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if name.trim().is_empty() {
        return Err(serde::de::Error::custom(
            "node_name: must not be empty (NODE_NAME)",
        ));
    }
    Ok(name)
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub url: String,
    #[serde(with = "crate::policy::contract::role_name")]
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_password_env: Option<String>,
    /// What `url` is: a Kubo RPC API (the default), an IPFS Cluster's REST API, or a Pinning
    /// Services API endpoint. Only a Kubo node can be the primary or the local node.
    #[serde(default, skip_serializing_if = "is_kubo")]
    pub api: NodeKind,
    /// Cluster: the peers that must pin (`replication-min`, default 1) and may (`-max`,
    /// default the same; -1 is every peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_max: Option<i32>,
    /// Cluster: the Kubo RPC URLs of its peers, for the retrievability walk. Without one, the
    /// tier cannot prove a pin retrievable, and a round never succeeds on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_kubo_urls: Vec<String>,
    /// PSA: the name of one of this config's Kubo nodes that proves a pin by fetching every
    /// block from the provider's delegates. Without one, never verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_via: Option<String>,
    /// Cluster and PSA: how often a request's status is polled (default 500 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_ms: Option<u64>,
    /// The values of the variables `bearer_token_env` and `basic_password_env` name, read by
    /// [`NodeConfig::read_env`].
    #[serde(skip)]
    bearer_token_from_env: FromEnv,
    #[serde(skip)]
    basic_password_from_env: FromEnv,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default = "default_policy")]
    pub name: String,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// A candidate asked beside the live policy at every decision, never executed (a built-in
    /// name or a component file, validated as a reload is): `pinwarden policy shadow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// The shadow's parameters, exactly these; absent: those of `params` it declares.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shadow_params: BTreeMap<String, toml::Value>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            shadow: None,
            shadow_params: BTreeMap::new(),
            name: default_policy(),
            params: BTreeMap::new(),
        }
    }
}

fn default_policy() -> String {
    "tank-mode".into()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFallbackConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

/// A configuration problem, naming the key or variable at fault. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `path` (or `./pinwarden.toml` when present and `path` is `None`), applies the
    /// environment (the seeds' variables, the host name, and the variables `*_env` keys name),
    /// then `params` from the command line, and validates the result.
    pub fn load(
        path: Option<&Path>,
        env: Env,
        params: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => Config::from_file(p)?,
            None if Path::new(DEFAULT_FILE).exists() => Config::from_file(Path::new(DEFAULT_FILE))?,
            None => Config::default_empty(),
        };
        config.apply_env(env)?;
        if config.node_name.is_empty() {
            config.node_name = default_node_name(env);
        }
        for node in &mut config.nodes {
            node.read_env(env);
        }
        config.daemon.token_from_env = FromEnv(env(config.daemon.token_var()));
        config.notify_secret = FromEnv(env(config.notify.secret_var()));
        for (k, v) in params {
            config
                .policy
                .params
                .insert(k.clone(), toml::Value::String(v.clone()));
        }
        config.validate()?;
        Ok(config)
    }

    fn default_empty() -> Config {
        Config {
            data_dir: default_data_dir(),
            ..Config::default()
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config {}: cannot read: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            // toml's message names the key and shows the line; keep it to one line.
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| format!(" (at byte {})", s.start))
                .unwrap_or_default();
            ConfigError(format!("config {}: {msg}{at}", path.display()))
        })
    }

    fn apply_env(&mut self, env: Env) -> Result<(), ConfigError> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = set("IPFS_PRIMARY_API") {
            self.nodes.retain(|n| n.role != Role::Primary);
            self.nodes
                .insert(0, NodeConfig::plain("primary", &url, Role::Primary));
        }
        if let Some(urls) = set("IPFS_BACKUP_APIS") {
            self.nodes.retain(|n| n.role != Role::Backup);
            for (i, url) in urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .enumerate()
            {
                let name = format!("backup-{}", i + 1);
                self.nodes.push(NodeConfig::plain(&name, url, Role::Backup));
            }
        }
        if let Some(url) = local_api(env) {
            self.nodes.retain(|n| n.role != Role::Local);
            self.nodes
                .push(NodeConfig::plain("local", &url, Role::Local));
        }
        if let Some(v) = set("ENABLE_LOCAL_FALLBACK") {
            self.local_fallback.enabled = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError(format!(
                        "ENABLE_LOCAL_FALLBACK: expected true or false, got '{v}'"
                    )));
                }
            };
        }
        if let Some(v) = set("LOCAL_FALLBACK_THRESHOLD") {
            let n = v.trim().parse::<u32>().map_err(|_| {
                ConfigError(format!(
                    "LOCAL_FALLBACK_THRESHOLD: expected a whole number, got '{v}'"
                ))
            })?;
            self.local_fallback.threshold = Some(n);
        }
        if let Some(v) = set("NODE_NAME") {
            self.node_name = v;
        }
        if let Some(v) = set("PINWARDEN_POLICY") {
            self.policy.name = v;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let primaries = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Primary)
            .count();
        if primaries != 1 {
            return err(format!(
                "node: exactly one node must have role = \"primary\" (found {primaries}); set one in the config file or IPFS_PRIMARY_API"
            ));
        }
        if self.nodes.iter().filter(|n| n.role == Role::Local).count() > 1 {
            return err("node: at most one node may have role = \"local\"".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let key = format!("node[{i}] ({})", node.name);
            if node.name.trim().is_empty() {
                return err(format!("node[{i}].name: must not be empty"));
            }
            if !names.insert(node.name.as_str()) {
                return err(format!("{key}.name: '{}' is used twice", node.name));
            }
            node.validate_kind(&self.nodes)
                .map_err(|m| ConfigError(format!("{key}.{m}")))?;
            node.credentials()
                .map_err(|m| ConfigError(format!("{key}: {m}")))?;
        }
        if self.daemon.socket_mode_bits().is_none() {
            return err(format!(
                "daemon.socket_mode: '{}' is not allowed: use \"0600\" (the daemon's user) or \
                 \"0660\" (its group too)",
                self.daemon.socket_mode
            ));
        }
        if self.daemon.concurrent_pins == 0 || self.daemon.concurrent_pins > 1_000 {
            return err("daemon.concurrent_pins: must be from 1 to 1000".into());
        }
        if self.daemon.max_connections == 0 || self.daemon.max_connections > 100_000 {
            return err("daemon.max_connections: must be from 1 to 100000".into());
        }
        if self.daemon.retry_base_ms > self.daemon.retry_max_ms {
            return err("daemon.retry_base_ms: must not exceed daemon.retry_max_ms".into());
        }
        for (i, rule) in self.alerts.iter().enumerate() {
            let key = format!("alert[{i}] ({})", rule.name);
            if !ALERT_SIGNALS.contains(&rule.signal.as_str()) {
                return err(format!(
                    "{key}.signal: unknown signal '{}' (one of: {})",
                    rule.signal,
                    ALERT_SIGNALS.join(", ")
                ));
            }
            if rule.window_secs == 0 || rule.window_secs > 86_400 {
                return err(format!("{key}.window_secs: must be from 1 to 86400"));
            }
            if let Some(url) = &rule.webhook
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return err(format!("{key}.webhook: '{url}' is not an http(s) URL"));
            }
        }
        if self.node_name.trim().is_empty() {
            return err("node_name: must not be empty (NODE_NAME)".into());
        }
        self.notify.validate().map_err(ConfigError)?;
        self.rounds.validate().map_err(ConfigError)?;
        if let Some(listen) = &self.psa.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return err(format!("psa.listen: '{listen}' is not IP:PORT"));
            }
            if self.psa.tokens_file.is_none() {
                return err(
                    "psa.tokens_file: required with psa.listen (one \"NAME TOKEN\" per line)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The webhook signing key: `None` while `[notify]` is off; an error names the variable
    /// when it is on but the key is missing or short (checked when the daemon starts).
    pub fn notify_secret(&self) -> Result<Option<Vec<u8>>, String> {
        if !self.notify.enabled() {
            return Ok(None);
        }
        let var = self.notify.secret_var();
        match &self.notify_secret.0 {
            // Not trimmed, refused: a receiver holding the exact bytes would see every
            // signature fail, and the events expire undelivered.
            Some(s) if s.trim() != s => Err(format!(
                "{var}: the webhook secret has leading or trailing whitespace; the receivers \
                 must hold the same bytes, so remove it"
            )),
            Some(s) if s.len() >= crate::notify::MIN_SECRET_LEN => Ok(Some(s.as_bytes().to_vec())),
            Some(_) => Err(format!(
                "{var}: the webhook secret must be at least {} characters",
                crate::notify::MIN_SECRET_LEN
            )),
            None => Err(format!(
                "[notify] is configured but {var} (notify.secret_env) is not set: every event is \
                 signed with it"
            )),
        }
    }

    /// Whether jobs use `node`: the local node only when the local fallback is enabled.
    pub fn job_uses(&self, node: &NodeConfig) -> bool {
        node.role != Role::Local || self.local_fallback.enabled
    }

    /// The nodes jobs use (see [`Config::job_uses`]).
    pub fn job_nodes(&self) -> impl Iterator<Item = &NodeConfig> {
        self.nodes.iter().filter(|n| self.job_uses(n))
    }

    pub fn socket_path(&self) -> PathBuf {
        socket_in(&self.data_dir, self.daemon.socket.as_deref())
    }

    /// The node with role local, if any.
    pub fn local(&self) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.role == Role::Local)
    }

    pub fn primary(&self) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.role == Role::Primary)
    }

    /// The policy's parameters: the file's and `--param`s, plus the local-fallback threshold
    /// when the policy declares `local_fallback_after` (checked by the caller with `declares`).
    pub fn policy_params(&self, declares: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = self
            .policy
            .params
            .iter()
            .map(|(k, v)| (k.clone(), value_string(v)))
            .collect();
        if let Some(t) = self.local_fallback.threshold
            && declares("local_fallback_after")
            && !self.policy.params.contains_key("local_fallback_after")
        {
            params.push(("local_fallback_after".into(), t.to_string()));
        }
        params
    }

    /// `[policy] shadow_params`, as `configure` takes them.
    pub fn shadow_params(&self) -> Vec<(String, String)> {
        self.policy
            .shadow_params
            .iter()
            .map(|(k, v)| (k.clone(), value_string(v)))
            .collect()
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn show(&self) -> String {
        let mut masked = self.clone();
        for node in &mut masked.nodes {
            for secret in [&mut node.bearer_token, &mut node.basic_password] {
                if secret.is_some() {
                    *secret = Some("***".into());
                }
            }
        }
        toml::to_string_pretty(&masked).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn is_kubo(kind: &NodeKind) -> bool {
    *kind == NodeKind::Kubo
}

impl NodeConfig {
    /// The keys of this node's kind, checked; `Err` starts with the key at fault.
    fn validate_kind(&self, nodes: &[NodeConfig]) -> Result<(), String> {
        let http_url = |key: &str, url: &str| {
            crate::remote::http::Http::new(url, None, std::time::Duration::from_secs(1))
                .map(|_| ())
                .map_err(|e| format!("{key}: {e}"))
        };
        let only = |key: &str, set: bool, kind: &str| {
            if set {
                Err(format!("{key}: only for api = \"{kind}\""))
            } else {
                Ok(())
            }
        };
        if self.api != NodeKind::Kubo && self.role != Role::Backup {
            return Err(format!(
                "api: a {} node can only be a backup (the primary takes the upload and the local \
                 node the fallback pins: both need Kubo's RPC)",
                self.api.as_str()
            ));
        }
        match self.api {
            NodeKind::Kubo => {
                crate::kubo::api_url(&self.url).map_err(|e| format!("url: {e}"))?;
            }
            NodeKind::Cluster | NodeKind::Psa => http_url("url", &self.url)?,
        }
        let cluster = self.api == NodeKind::Cluster;
        only(
            "replication_min",
            self.replication_min.is_some() && !cluster,
            "cluster",
        )?;
        only(
            "replication_max",
            self.replication_max.is_some() && !cluster,
            "cluster",
        )?;
        only(
            "peer_kubo_urls",
            !self.peer_kubo_urls.is_empty() && !cluster,
            "cluster",
        )?;
        only(
            "check_via",
            self.check_via.is_some() && self.api != NodeKind::Psa,
            "psa",
        )?;
        only(
            "poll_ms",
            self.poll_ms.is_some() && self.api == NodeKind::Kubo,
            "cluster or psa",
        )?;
        if self.replication_min == Some(0) {
            return Err("replication_min: must be at least 1".into());
        }
        let (min, max) = self.replication();
        if max != -1 && (max < 1 || i64::from(max) < i64::from(min)) {
            return Err(format!(
                "replication_max: must be -1 (every peer) or at least replication_min ({min})"
            ));
        }
        for url in &self.peer_kubo_urls {
            crate::kubo::api_url(url).map_err(|e| format!("peer_kubo_urls: {e}"))?;
        }
        if self.poll_ms.is_some_and(|ms| !(50..=60_000).contains(&ms)) {
            return Err("poll_ms: must be from 50 to 60000".into());
        }
        if let Some(via) = &self.check_via {
            match nodes.iter().find(|n| &n.name == via) {
                Some(n) if n.api == NodeKind::Kubo => {}
                Some(_) => return Err(format!("check_via: '{via}' is not a Kubo node")),
                None => return Err(format!("check_via: no node is named '{via}'")),
            }
        }
        Ok(())
    }

    /// A cluster's (replication-min, replication-max), defaults applied.
    pub fn replication(&self) -> (u32, i32) {
        let min = self.replication_min.unwrap_or(1);
        let max = self
            .replication_max
            .unwrap_or_else(|| i32::try_from(min).unwrap_or(i32::MAX));
        (min, max)
    }

    fn plain(name: &str, url: &str, role: Role) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            url: url.into(),
            role,
            bearer_token: None,
            bearer_token_env: None,
            basic_user: None,
            basic_password: None,
            basic_password_env: None,
            api: NodeKind::Kubo,
            replication_min: None,
            replication_max: None,
            peer_kubo_urls: Vec::new(),
            check_via: None,
            poll_ms: None,
            bearer_token_from_env: FromEnv::default(),
            basic_password_from_env: FromEnv::default(),
        }
    }

    /// Reads the variables this node's `bearer_token_env` and `basic_password_env` name.
    pub fn read_env(&mut self, env: Env) {
        self.bearer_token_from_env = FromEnv(self.bearer_token_env.as_deref().and_then(env));
        self.basic_password_from_env = FromEnv(self.basic_password_env.as_deref().and_then(env));
    }

    /// The node's credentials (`None`: no authentication), with the `*_env` variables as
    /// [`NodeConfig::read_env`] read them.
    pub fn credentials(&self) -> Result<Option<Auth>, String> {
        let from_env =
            |var: &Option<String>, value: &FromEnv, key: &str| -> Result<Option<String>, String> {
                match var {
                    None => Ok(None),
                    Some(name) => value
                        .0
                        .clone()
                        .map(Some)
                        .ok_or_else(|| format!("{key}: environment variable {name} is not set")),
                }
            };
        let bearer = match (
            &self.bearer_token,
            from_env(
                &self.bearer_token_env,
                &self.bearer_token_from_env,
                "bearer_token_env",
            )?,
        ) {
            (Some(_), Some(_)) => {
                return Err("set bearer_token or bearer_token_env, not both".into());
            }
            (Some(t), None) => Some(t.clone()),
            (None, t) => t,
        };
        let password = match (
            &self.basic_password,
            from_env(
                &self.basic_password_env,
                &self.basic_password_from_env,
                "basic_password_env",
            )?,
        ) {
            (Some(_), Some(_)) => {
                return Err("set basic_password or basic_password_env, not both".into());
            }
            (Some(p), None) => Some(p.clone()),
            (None, p) => p,
        };
        match (bearer, &self.basic_user, password) {
            (Some(_), Some(_), _) => Err("use bearer or basic authentication, not both".into()),
            (Some(token), None, None) => Ok(Some(Auth::Bearer(token))),
            (Some(_), None, Some(_)) => Err("basic_password without basic_user".into()),
            (None, Some(user), Some(password)) => Ok(Some(Auth::Basic {
                user: user.clone(),
                password,
            })),
            (None, Some(_), None) => {
                Err("basic_user needs basic_password or basic_password_env".into())
            }
            (None, None, Some(_)) => Err("basic_password without basic_user".into()),
            (None, None, None) => Ok(None),
        }
    }
}

fn value_string(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn env_variables_of_the_seeds_override_the_file() {
        let f = write(
            "node_name = \"file\"\n[[node]]\nname = \"sn\"\nurl = \"http://10.0.0.1:5001\"\nrole = \"primary\"\n",
        );
        let env = env_of(&[
            ("IPFS_PRIMARY_API", "http://127.0.0.1:5001"),
            (
                "IPFS_BACKUP_APIS",
                "http://127.0.0.1:5002, http://127.0.0.1:5003",
            ),
            ("IPFS_LOCAL_API", "http://127.0.0.1:5004"),
            ("ENABLE_LOCAL_FALLBACK", "true"),
            ("LOCAL_FALLBACK_THRESHOLD", "4"),
            ("NODE_NAME", "encoder-node-1"),
        ]);
        let c =
            Config::load(Some(f.path()), &env, &[("attempts".into(), "2".into())]).expect("valid");
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["primary", "backup-1", "backup-2", "local"]);
        assert_eq!(c.nodes[0].url, "http://127.0.0.1:5001");
        assert_eq!(c.node_name, "encoder-node-1");
        assert_eq!(c.job_nodes().count(), 4);
        let params = c.policy_params(|_| true);
        assert!(params.contains(&("attempts".into(), "2".into())));
        assert!(params.contains(&("local_fallback_after".into(), "4".into())));
        assert!(
            !c.policy_params(|_| false)
                .iter()
                .any(|(k, _)| k == "local_fallback_after")
        );
    }

    #[test]
    fn local_node_is_left_out_of_jobs_unless_enabled() {
        let env = env_of(&[
            ("IPFS_PRIMARY_API", "http://127.0.0.1:5001"),
            ("IPFS_LOCAL_API", "http://127.0.0.1:5004"),
        ]);
        let c = Config::load(None, &env, &[]).expect("valid");
        assert_eq!(c.job_nodes().count(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[[node]]\nname = \"a\"\nurl = \"ftp://x\"\nrole = \"primary\"\n",
                "node[0] (a).url",
            ),
            (
                "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"boss\"\n",
                "boss",
            ),
            (
                "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"backup\"\n",
                "exactly one node",
            ),
            ("colour = 1\n", "colour"),
            (
                "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"primary\"\n[[node]]\nname = \"a\"\nurl = \"http://y\"\nrole = \"backup\"\n",
                "used twice",
            ),
            (
                "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"primary\"\nbearer_token_env = \"PINWARDEN_TEST_UNSET_VAR\"\n",
                "PINWARDEN_TEST_UNSET_VAR is not set",
            ),
            (
                "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"primary\"\n[daemon]\nsocket_mode = \"0666\"\n",
                "daemon.socket_mode: '0666' is not allowed",
            ),
        ];
        for (text, needle) in cases {
            let f = write(text);
            let err = Config::load(Some(f.path()), &|_| None, &[]).expect_err(text);
            assert!(err.0.contains(needle), "{text}: {err}");
        }
        let env = env_of(&[
            ("IPFS_PRIMARY_API", "http://x"),
            ("ENABLE_LOCAL_FALLBACK", "maybe"),
        ]);
        let err = Config::load(None, &env, &[]).expect_err("bad bool");
        assert!(err.0.starts_with("ENABLE_LOCAL_FALLBACK"), "{err}");
    }

    #[test]
    fn alert_rules_may_watch_breaker_openings() {
        let node = "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"primary\"\n";
        let rule = |signal: &str| {
            format!("{node}[[alert]]\nname = \"down\"\nsignal = \"{signal}\"\nthreshold = 0\n")
        };
        let f = write(&rule("breaker_opened"));
        let c = Config::load(Some(f.path()), &|_| None, &[]).expect("valid");
        assert_eq!(c.alerts[0].signal, "breaker_opened");
        let f = write(&rule("breaker_open"));
        let err = Config::load(Some(f.path()), &|_| None, &[]).expect_err("unknown signal");
        assert!(
            err.0.contains("alert[0] (down).signal") && err.0.contains("breaker_opened"),
            "{err}"
        );
    }

    /// Every variable comes from the injected environment, read once by `load`: the seeds',
    /// the host name, the ones `*_env` keys name, and the daemon's token.
    #[test]
    fn load_reads_every_variable_from_the_given_environment() {
        let f = write(
            "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"primary\"\nbearer_token_env = \"A_TOKEN\"\n[daemon]\ntoken_env = \"D_TOKEN\"\n",
        );
        let env = env_of(&[
            ("A_TOKEN", "node-secret"),
            ("D_TOKEN", "sixteen-chars-at-least"),
            ("HOSTNAME", "encoder-7"),
        ]);
        let c = Config::load(Some(f.path()), &env, &[]).expect("valid");
        assert_eq!(c.node_name, "encoder-7");
        assert_eq!(
            c.nodes[0].credentials(),
            Ok(Some(Auth::Bearer("node-secret".into())))
        );
        assert_eq!(c.daemon.token(), Ok(Some("sixteen-chars-at-least".into())));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("node-secret") && !debug.contains("sixteen"),
            "Debug shows no secret: {debug}"
        );

        let c = Config::load(Some(f.path()), &env_of(&[("A_TOKEN", "t")]), &[]).expect("valid");
        let err = c.daemon.token().expect_err("named variable unset");
        assert!(err.contains("D_TOKEN is not set"), "{err}");
        let env = env_of(&[
            ("IPFS_PRIMARY_API", "http://x"),
            ("PINWARDEN_TOKEN", "short"),
        ]);
        let c = Config::load(None, &env, &[]).expect("valid");
        let err = c.daemon.token().expect_err("too short");
        assert!(err.starts_with("PINWARDEN_TOKEN: "), "{err}");
        let c = Config::load(None, &env_of(&[("IPFS_PRIMARY_API", "http://x")]), &[]);
        assert_eq!(c.expect("valid").daemon.token(), Ok(None));

        let f = write(
            "node_name = \" \"\n[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"primary\"\n",
        );
        let err = Config::load(Some(f.path()), &env, &[]).expect_err("blank node_name");
        assert!(err.0.contains("node_name: must not be empty"), "{err}");
    }

    #[test]
    fn the_socket_defaults_to_the_data_dir() {
        let env = env_of(&[("IPFS_PRIMARY_API", "http://x")]);
        let c = Config::load(None, &env, &[]).expect("valid");
        assert_eq!(c.data_dir, Path::new(DEFAULT_DATA_DIR));
        assert_eq!(c.socket_path(), Path::new("data/pinwarden.sock"));
        let explicit = Path::new("/run/pw.sock");
        assert_eq!(socket_in(&c.data_dir, Some(explicit)), explicit);
    }

    #[test]
    fn show_masks_secrets() {
        let f = write(
            "[[node]]\nname = \"a\"\nurl = \"http://x\"\nrole = \"primary\"\nbasic_user = \"u\"\nbasic_password = \"hunter2\"\n",
        );
        let c = Config::load(Some(f.path()), &|_| None, &[]).expect("valid");
        let shown = c.show();
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
        assert_eq!(
            c.nodes[0].credentials(),
            Ok(Some(Auth::Basic {
                user: "u".into(),
                password: "hunter2".into()
            }))
        );
    }
}
