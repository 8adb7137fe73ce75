//! `pinwarden doctor`: checks a topology before the first video does.
//!
//! Every configured node: does it answer, does it accept the credentials, what is it (Kubo or
//! js-ipfs, which version), how full is its repository. Every backup: can it connect to the
//! primary (the provider hint the policies rely on: a backup fetches the video from the primary
//! over bitswap). Then the local node when the local fallback needs it, the data directory and
//! the policy with its parameters. Each check ends OK, WARN (works, but look) or FAIL (pins
//! will fail), with the reason and a hint. The checks only read, but for two: the provider
//! check opens the swarm connection a job's first backup attempt would (when none is open),
//! and the data-directory check writes and removes a probe file.

use crate::Outcome;
use crate::Role;
use crate::app::{client_with, load_policies};
use crate::config::{Config, NodeConfig};
use crate::kubo::{KuboClient, KuboConfig, KuboError, PeerInfo, RepoStat};
use crate::node::Node;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A node's name, `data-dir` or `policy`.
    pub subject: String,
    /// `reachable`, `auth`, `version`, `disk`, `provider`, `writable`, `loadable`, `present`.
    pub check: &'static str,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: checks.iter().all(|c| c.level != Level::Fail),
            checks,
        }
    }

    pub fn count(&self, level: Level) -> usize {
        self.checks.iter().filter(|c| c.level == level).count()
    }
}

/// Thresholds of the checks.
#[derive(Debug, Clone)]
pub struct Options {
    /// Warn when a node's repository uses more than this share of its `StorageMax`.
    pub disk_warn_percent: u8,
    /// Bound of each call to a node.
    pub timeout: Duration,
    /// Warn when the data directory's file system has less free space than this.
    pub min_free_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            disk_warn_percent: 90,
            timeout: Duration::from_secs(10),
            min_free_bytes: 512 << 20,
        }
    }
}

/// Runs every check of `config`.
pub async fn examine(config: &Config, opts: &Options) -> Report {
    let nodes = futures::future::join_all(config.nodes.iter().map(|n| node_checks(n, opts))).await;
    let primary_info = config.nodes.iter().zip(&nodes).find_map(|(n, seen)| {
        (n.role == Role::Primary)
            .then(|| seen.info.clone())
            .flatten()
    });
    let mut checks = Vec::new();
    let mut provider_checks = Vec::new();
    for (node, seen) in config.nodes.iter().zip(nodes) {
        checks.extend(seen.checks);
        if node.role == Role::Backup
            && let Some(client) = seen.client
        {
            provider_checks.push(provider_check(
                node,
                client,
                primary_info.clone(),
                opts.timeout,
            ));
        }
    }
    checks.extend(futures::future::join_all(provider_checks).await);
    if config.local_fallback.enabled && !config.nodes.iter().any(|n| n.role == Role::Local) {
        checks.push(Check {
            subject: "local".into(),
            check: "present",
            level: Level::Fail,
            detail: "the local fallback is enabled but no node has role = \"local\"".into(),
            hint: Some(
                "add the encoder's own node (IPFS_LOCAL_API) or disable the fallback \
                 (ENABLE_LOCAL_FALLBACK=false)"
                    .into(),
            ),
        });
    }
    checks.push(data_dir_check(&config.data_dir, opts.min_free_bytes));
    checks.push(policy_check(config));
    Report::new(checks)
}

/// What the checks of one node learned.
struct NodeSeen {
    checks: Vec<Check>,
    /// Set when the node answered with accepted credentials.
    client: Option<KuboClient>,
    info: Option<PeerInfo>,
}

async fn node_checks(node: &NodeConfig, opts: &Options) -> NodeSeen {
    if node.api != crate::node::NodeKind::Kubo {
        return NodeSeen {
            checks: remote_checks(node, opts).await,
            client: None,
            info: None,
        };
    }
    let subject = node.name.clone();
    let check = |check, level, detail: String, hint: Option<String>| Check {
        subject: subject.clone(),
        check,
        level,
        detail,
        hint,
    };
    let cfg = KuboConfig {
        connect_timeout: opts.timeout.min(Duration::from_secs(5)),
        call_timeout: opts.timeout,
        ..KuboConfig::default()
    };
    let client = match client_with(node, cfg) {
        Ok(c) => c,
        Err(e) => {
            return NodeSeen {
                checks: vec![check(
                    "reachable",
                    Level::Fail,
                    e.to_string(),
                    Some("fix the node's entry in the configuration".into()),
                )],
                client: None,
                info: None,
            };
        }
    };
    let mut checks = Vec::new();
    let info = match client.id().await {
        Ok(info) => info,
        Err(KuboError::Http { status, message }) if status == 401 || status == 403 => {
            checks.push(check(
                "reachable",
                Level::Ok,
                format!("{} answers", client.api_url()),
                None,
            ));
            checks.push(refused_check(&client, node, status, &message, &check).await);
            return NodeSeen {
                checks,
                client: None,
                info: None,
            };
        }
        Err(e) => {
            let hint = match e {
                KuboError::Unreachable(_) | KuboError::Timeout => format!(
                    "is the node running, its API listening at {}? Check `url` of node '{}'",
                    node.url, node.name
                ),
                _ => format!("{} does not answer like a Kubo RPC API", node.url),
            };
            checks.push(check("reachable", Level::Fail, e.to_string(), Some(hint)));
            return NodeSeen {
                checks,
                client: None,
                info: None,
            };
        }
    };
    checks.push(check(
        "reachable",
        Level::Ok,
        format!(
            "{} answers (peer {})",
            client.api_url(),
            short_peer(&info.id)
        ),
        None,
    ));
    let auth = if has_credentials(node) {
        "credentials accepted"
    } else {
        "no credentials configured; none asked"
    };
    checks.push(check("auth", Level::Ok, auth.into(), None));
    checks.push(version_check(&client, &info, &check).await);
    checks.push(disk_check(&client, opts.disk_warn_percent, &check).await);
    NodeSeen {
        checks,
        client: Some(client),
        info: Some(info),
    }
}

/// `id` was refused. Kubo answers 403 both to a token it does not know and to a known token
/// whose `AllowedPaths` do not cover the call, and lets any known token call `version`: so
/// `version` tells a wrong token from one that is only too narrow.
async fn refused_check(
    client: &KuboClient,
    node: &NodeConfig,
    status: u16,
    message: &str,
    check: &impl Fn(&'static str, Level, String, Option<String>) -> Check,
) -> Check {
    if has_credentials(node) && client.version().await.is_ok() {
        return check(
            "auth",
            Level::Fail,
            format!(
                "credentials accepted, but not for /api/v0/id (HTTP {status}: {})",
                first_line(message)
            ),
            Some(format!(
                "the token of node '{}' is valid, but its AllowedPaths in the node's \
                 API.Authorizations do not cover the calls pinwarden makes: allow \"/api/v0\"",
                node.name
            )),
        );
    }
    check(
        "auth",
        Level::Fail,
        format!(
            "credentials refused (HTTP {status}: {})",
            first_line(message)
        ),
        Some(credentials_hint(node)),
    )
}

async fn version_check(
    client: &KuboClient,
    info: &PeerInfo,
    check: &impl Fn(&'static str, Level, String, Option<String>) -> Check,
) -> Check {
    let agent = info.agent_version.as_str();
    let implementation = crate::kubo::Flavour::recognise(agent).map(crate::kubo::Flavour::name);
    match (client.version().await, implementation) {
        (Ok(v), Some(name)) => {
            let system = v.system.map(|s| format!(", {s}")).unwrap_or_default();
            check(
                "version",
                Level::Ok,
                format!(
                    "{name} {} (agent {agent}, repo {}{system})",
                    v.version, v.repo
                ),
                None,
            )
        }
        (Ok(v), None) => check(
            "version",
            Level::Warn,
            format!(
                "unknown implementation: agent '{agent}', version {}",
                v.version
            ),
            Some("pinwarden speaks the Kubo RPC API and is tested with Kubo and js-ipfs".into()),
        ),
        (Err(e), _) => check(
            "version",
            Level::Fail,
            format!("`version` failed: {e}"),
            Some("the node answers `id` but not `version`: is this a Kubo RPC API?".into()),
        ),
    }
}

async fn disk_check(
    client: &KuboClient,
    warn_percent: u8,
    check: &impl Fn(&'static str, Level, String, Option<String>) -> Check,
) -> Check {
    let stat = match client.repo_stat().await {
        Ok(s) => s,
        Err(e) => {
            return check(
                "disk",
                Level::Warn,
                format!("`repo/stat` failed: {e}"),
                Some("repository usage unknown: watch the node's disk by other means".into()),
            );
        }
    };
    let (level, detail, hint) = disk_verdict(&stat, warn_percent, client.gc_watermark().await);
    // Kubo's StorageMax is the garbage collector's watermark, not a hard limit: the point of
    // the warning is a node filling up, which pins then fail on.
    check("disk", level, detail, hint)
}

/// Usage against `StorageMax`, warned from `warn_percent` or from Kubo's GC watermark when that
/// is lower: past the watermark, a daemon run with `--enable-gc` collects unpinned blocks, and
/// an upload that pinwarden has not pinned yet is among them (whether GC is enabled is a daemon
/// flag, which the RPC API does not show).
fn disk_verdict(
    stat: &RepoStat,
    warn_percent: u8,
    gc_watermark: Option<u8>,
) -> (Level, String, Option<String>) {
    let used = format_bytes(stat.repo_size);
    let Some(max) = stat.storage_max else {
        return (
            Level::Ok,
            format!("{used} used, no storage limit configured"),
            None,
        );
    };
    let percent = stat.repo_size.saturating_mul(100) / max.max(1);
    let detail = format!(
        "{used} of {} StorageMax used ({percent}%)",
        format_bytes(max)
    );
    let gc_first = gc_watermark.filter(|&w| w < warn_percent);
    let threshold = gc_first.unwrap_or(warn_percent);
    if percent < u64::from(threshold) {
        return (Level::Ok, detail, None);
    }
    let (above, hint) = match gc_first {
        Some(w) => (
            format!("at or above Kubo's GC watermark ({w}%, Datastore.StorageGCWatermark)"),
            "a daemon run with --enable-gc now collects unpinned blocks, an upload not yet \
             pinned included: pin promptly, add disk, or raise Datastore.StorageMax",
        ),
        None => (
            format!("above {warn_percent}%"),
            "StorageMax is Kubo's garbage-collection watermark: above it, check the node's \
             disk (a node that runs out of disk fails pins); run `ipfs repo gc`, add disk, \
             or raise Datastore.StorageMax",
        ),
    };
    (Level::Warn, format!("{detail}, {above}"), Some(hint.into()))
}

async fn provider_check(
    backup: &NodeConfig,
    client: KuboClient,
    primary: Option<PeerInfo>,
    timeout: Duration,
) -> Check {
    let check = |level, detail: String, hint: Option<String>| Check {
        subject: backup.name.clone(),
        check: "provider",
        level,
        detail,
        hint,
    };
    let Some(primary) = primary else {
        return check(
            Level::Warn,
            "not checked: the primary did not answer".into(),
            Some("fix the primary first, then run doctor again".into()),
        );
    };
    if primary.addresses.is_empty() {
        return check(
            Level::Fail,
            "the primary reports no swarm address to connect to".into(),
            Some("give the primary a swarm listener (Addresses.Swarm)".into()),
        );
    }
    // Dialling a peer already connected returns the open connection without a dial (libp2p,
    // Kubo alike), so say which it was rather than claim a dial that did not happen.
    if let Ok(peers) = client.peers().await
        && peers.iter().any(|p| p == &primary.id)
    {
        return check(
            Level::Ok,
            format!(
                "connected to the primary (peer {}): an open connection, not dialled again",
                short_peer(&primary.id)
            ),
            None,
        );
    }
    // Each address is bounded by the call timeout; bound them all together too.
    let dialled = tokio::time::timeout(
        timeout.saturating_mul(2),
        client.connect(&primary.addresses),
    )
    .await
    .unwrap_or(Outcome::Timeout);
    match dialled {
        Outcome::Ok => check(
            Level::Ok,
            format!("dials the primary (peer {})", short_peer(&primary.id)),
            None,
        ),
        outcome => check(
            Level::Fail,
            format!(
                "cannot connect to the primary at {}: {}",
                primary.addresses.join(", "),
                outcome_text(&outcome)
            ),
            Some(
                "a backup fetches the video from the primary over bitswap: let it reach one of \
                 the primary's swarm addresses (firewall, Addresses.Announce)"
                    .into(),
            ),
        ),
    }
}

fn data_dir_check(dir: &Path, min_free: u64) -> Check {
    let check = |level, detail: String, hint: Option<String>| Check {
        subject: "data-dir".into(),
        check: "writable",
        level,
        detail,
        hint,
    };
    let hint = Some(format!(
        "pinwarden keeps its queue, journal and node health in {}: make it writable by the \
         service's user, or set data_dir / --data-dir",
        dir.display()
    ));
    // The directory itself when it exists, else the first ancestor that does (it will be
    // created there). A relative path is the working directory's.
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Some(existing) = absolute.ancestors().find(|a| a.exists()) else {
        return check(
            Level::Fail,
            format!("{}: no such path", dir.display()),
            hint,
        );
    };
    let probe = existing.join(format!(".pinwarden-doctor-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| {
            // Created by us: ours to remove, whatever the write does.
            let wrote = std::io::Write::write_all(&mut f, b"probe");
            let _ = std::fs::remove_file(&probe);
            wrote
        });
    if let Err(e) = written {
        return check(
            Level::Fail,
            format!("cannot write in {}: {e}", existing.display()),
            hint,
        );
    }
    let place = if existing == absolute {
        format!("{} is writable", dir.display())
    } else {
        format!(
            "{} does not exist yet; it will be created in {}",
            dir.display(),
            existing.display()
        )
    };
    match free_bytes(existing) {
        Some(free) if free < min_free => check(
            Level::Warn,
            format!("{place}, but only {} free", format_bytes(free)),
            Some("a full disk stops the queue and the local-fallback journal: free space".into()),
        ),
        Some(free) => check(
            Level::Ok,
            format!("{place}, {} free", format_bytes(free)),
            None,
        ),
        None => check(Level::Ok, place, None),
    }
}

fn free_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn policy_check(config: &Config) -> Check {
    let check = |level, detail: String, hint: Option<String>| Check {
        subject: "policy".into(),
        check: "loadable",
        level,
        detail,
        hint,
    };
    // No compiled-policy cache: doctor must not write into the data directory it checks.
    match load_policies(config, None) {
        Ok((_, policy, _)) => {
            let params = if policy.params.is_empty() {
                "default parameters".to_string()
            } else {
                let list: Vec<String> = policy
                    .params
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                list.join(", ")
            };
            check(
                Level::Ok,
                format!("{} ({}), {params}", policy.name, policy.source),
                None,
            )
        }
        Err(e) => check(
            Level::Fail,
            e.to_string(),
            Some(format!(
                "try `pinwarden policy check {}` and its parameter table (`pinwarden policy list`)",
                config.policy.name
            )),
        ),
    }
}

fn has_credentials(node: &NodeConfig) -> bool {
    node.bearer_token.is_some() || node.bearer_token_env.is_some() || node.basic_user.is_some()
}

fn credentials_hint(node: &NodeConfig) -> String {
    if has_credentials(node) {
        format!(
            "check the token of node '{}' (bearer_token / bearer_token_env / basic_*) against \
             the node's API.Authorizations",
            node.name
        )
    } else {
        format!(
            "the node wants credentials: set bearer_token_env (or basic_user and \
             basic_password_env) for node '{}'",
            node.name
        )
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Unreachable(m) => format!("unreachable: {m}"),
        Outcome::HttpError(e) => format!("HTTP {}: {}", e.status, first_line(&e.message)),
        Outcome::Error(m) | Outcome::Unretrievable(m) => first_line(m).to_string(),
        Outcome::Timeout => "timed out".into(),
        other => format!("{other:?}"),
    }
}

/// `1.7 KiB`, `9.3 GiB`.
fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

fn short_peer(id: &str) -> String {
    match id.char_indices().nth(12) {
        Some((i, _)) => format!("{}…", &id[..i]),
        None => id.to_string(),
    }
}

/// The report as text: one line per check, then a summary line.
pub fn render(report: &Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.subject.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in &report.checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {:<9}  {}",
            c.level.label(),
            c.subject,
            c.check,
            c.detail
        ));
        if let Some(hint) = &c.hint {
            out.push_str(&format!(" (hint: {hint})"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "{} OK, {} WARN, {} FAIL\n",
        report.count(Level::Ok),
        report.count(Level::Warn),
        report.count(Level::Fail)
    ));
    out
}

/// A cluster or PSA tier: reachable, token or password accepted, what it can prove; a cluster's
/// peers and the Kubo RPC of each peer configured for the walk.
async fn remote_checks(node: &NodeConfig, opts: &Options) -> Vec<Check> {
    use crate::node::NodeKind;
    use crate::remote::http::Http;
    let check = |check, level, detail: String, hint: Option<String>| Check {
        subject: node.name.clone(),
        check,
        level,
        detail,
        hint,
    };
    let http = node
        .credentials()
        .and_then(|auth| Http::new(&node.url, auth, opts.timeout));
    let http = match http {
        Ok(h) => h,
        Err(e) => return vec![check("reachable", Level::Fail, e, None)],
    };
    let kind = node.api.as_str();
    let answer = match node.api {
        NodeKind::Cluster => {
            let cluster = crate::remote::cluster::Cluster::new(http, 1, 1, Vec::new());
            match (cluster.id().await, cluster.peers().await) {
                (Ok(id), Ok(peers)) => {
                    let errors: Vec<String> = peers
                        .iter()
                        .filter_map(|p| {
                            let e = p.get("error").and_then(serde_json::Value::as_str)?;
                            (!e.is_empty()).then(|| e.to_string())
                        })
                        .collect();
                    let peer = id.get("peername").and_then(serde_json::Value::as_str);
                    Ok(format!(
                        "IPFS Cluster {} answers (peer {}), {} peers{}",
                        id.get("version")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("?"),
                        peer.unwrap_or("?"),
                        peers.len(),
                        if errors.is_empty() {
                            String::new()
                        } else {
                            format!(", errors: {}", errors.join("; "))
                        }
                    ))
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        NodeKind::Psa | NodeKind::Kubo => {
            let psa = crate::remote::psa::Psa::new(http, None);
            psa.count()
                .await
                .map(|n| format!("PSA endpoint answers; the token sees {n} requests"))
        }
    };
    let mut checks = Vec::new();
    match answer {
        Ok(detail) => {
            checks.push(check("reachable", Level::Ok, detail, None));
            checks.push(check(
                "auth",
                Level::Ok,
                "credentials accepted".into(),
                None,
            ));
        }
        Err(crate::Outcome::HttpError(e)) if e.status == 401 || e.status == 403 => {
            checks.push(check(
                "reachable",
                Level::Ok,
                format!("{} answers", node.url),
                None,
            ));
            checks.push(check(
                "auth",
                Level::Fail,
                format!("HTTP {}: {}", e.status, e.message),
                Some(format!(
                    "check the {} credentials of node '{}' (bearer_token* for a PSA provider, \
                     basic_* for a cluster)",
                    kind, node.name
                )),
            ));
            return checks;
        }
        Err(e) => {
            checks.push(check(
                "reachable",
                Level::Fail,
                format!("{e:?}"),
                Some(format!(
                    "is {} an {} endpoint? Check `url` and `api` of node '{}'",
                    node.url,
                    if node.api == NodeKind::Cluster {
                        "IPFS Cluster REST API"
                    } else {
                        "IPFS Pinning Services API"
                    },
                    node.name
                )),
            ));
            return checks;
        }
    }
    let walkers: Vec<&String> = match node.api {
        NodeKind::Cluster => node.peer_kubo_urls.iter().collect(),
        _ => Vec::new(),
    };
    for url in walkers {
        let kubo = crate::kubo::KuboClient::new("peer", url, None);
        let seen = match kubo {
            Ok(k) => k.id().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        checks.push(match seen {
            Ok(info) => check(
                "proof",
                Level::Ok,
                format!(
                    "peer Kubo {url} answers (peer {}) for the walk",
                    short_peer(&info.id)
                ),
                None,
            ),
            Err(e) => check(
                "proof",
                Level::Warn,
                format!("peer Kubo {url}: {e}"),
                Some("the walk skips this peer; fix peer_kubo_urls".into()),
            ),
        });
    }
    let unproven = match node.api {
        NodeKind::Cluster => node.peer_kubo_urls.is_empty(),
        _ => node.check_via.is_none(),
    };
    if unproven {
        checks.push(check(
            "proof",
            Level::Warn,
            "status only: no round can prove a pin retrievable here, so none succeeds on it".into(),
            Some(match node.api {
                NodeKind::Cluster => {
                    "set peer_kubo_urls to the Kubo RPC of the cluster's peers".into()
                }
                _ => {
                    "set check_via to one of your Kubo nodes that does not keep this content".into()
                }
            }),
        ));
    } else if let Some(via) = &node.check_via {
        checks.push(check(
            "proof",
            Level::Ok,
            format!("{via} fetches every block from the provider's delegates"),
            None,
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1710), "1.7 KiB");
        assert_eq!(format_bytes(9_321_000_000), "8.7 GiB");
    }

    #[test]
    fn a_report_fails_on_any_fail_and_renders_one_line_per_check() {
        let line = |level| Check {
            subject: "primary".into(),
            check: "disk",
            level,
            detail: "d".into(),
            hint: Some("h".into()),
        };
        let report = Report::new(vec![line(Level::Ok), line(Level::Warn)]);
        assert!(report.ok);
        let report = Report::new(vec![line(Level::Ok), line(Level::Fail)]);
        assert!(!report.ok);
        let text = render(&report);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.starts_with("OK    primary  disk       d (hint: h)"),
            "{text}"
        );
        assert!(text.ends_with("1 OK, 0 WARN, 1 FAIL\n"), "{text}");
    }

    #[test]
    fn disk_usage_warns_above_the_threshold_of_the_limit() {
        // Kubo's recorded `repo/stat`: 9.3 GB of a 10 GB StorageMax.
        let kubo = RepoStat {
            repo_size: 9_321_000_000,
            storage_max: Some(10_000_000_000),
            num_objects: 48_210,
        };
        let (level, detail, hint) = disk_verdict(&kubo, 90, None);
        assert_eq!(level, Level::Warn, "{detail}");
        assert!(detail.contains("(93%)"), "{detail}");
        assert!(hint.is_some_and(|h| h.contains("StorageMax")));
        assert_eq!(disk_verdict(&kubo, 95, None).0, Level::Ok);
        // A lower GC watermark warns first, and says why.
        let (level, detail, hint) = disk_verdict(&kubo, 95, Some(80));
        assert_eq!(level, Level::Warn, "{detail}");
        assert!(detail.contains("GC watermark (80%"), "{detail}");
        assert!(hint.is_some_and(|h| h.contains("--enable-gc")));
        assert_eq!(disk_verdict(&kubo, 95, Some(93)).0, Level::Warn);
        assert_eq!(disk_verdict(&kubo, 95, Some(94)).0, Level::Ok);
        let js = RepoStat {
            storage_max: None,
            ..kubo
        };
        let (level, detail, _) = disk_verdict(&js, 1, Some(90));
        assert_eq!(level, Level::Ok);
        assert!(detail.contains("no storage limit"), "{detail}");
    }

    #[test]
    fn a_relative_data_dir_is_the_working_directorys() {
        let c = data_dir_check(Path::new("no-such-dir-here/data"), 0);
        assert_eq!(c.level, Level::Ok, "{c:?}");
        assert!(c.detail.contains("will be created"), "{c:?}");
    }

    #[test]
    fn a_missing_data_dir_is_checked_where_it_will_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let c = data_dir_check(&dir.path().join("a/b"), 0);
        assert_eq!(c.level, Level::Ok, "{c:?}");
        assert!(c.detail.contains("will be created"), "{c:?}");
        assert!(
            !dir.path().join("a").exists(),
            "doctor created the directory"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probe left behind"
        );
        let c = data_dir_check(dir.path(), u64::MAX);
        assert_eq!(c.level, Level::Warn, "{c:?}");
    }
}
