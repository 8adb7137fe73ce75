//! A real IPFS Cluster (`ipfs-cluster-service` v1.1.6, built by `scripts/setup.sh`), one peer
//! per Kubo daemon of an [`IpfsCluster`], CRDT consensus with every peer trusted, on loopback.
//!
//! **Run it only inside a private network namespace** ([`netns`]): the cluster's libp2p host
//! always turns on NAT port mapping (`libp2p.NATPortMap()` in its `clusterhost.go`, no setting
//! turns it off), which sends UPnP multicast and NAT-PMP to the default gateway at start. In a
//! namespace with only `lo` up there is neither a LAN nor a gateway.

use crate::ipfs::IpfsCluster;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The release `scripts/setup.sh` builds (its `CLUSTER_VERSION`; keep the two in step).
pub const CLUSTER_VERSION: &str = "v1.1.6";
/// Overrides the directory holding `ipfs-cluster-service` and `ipfs-cluster-ctl`.
pub const CLUSTER_DIR_ENV: &str = "PINWARDEN_CLUSTER_DIR";
/// How long a peer may take to answer on its REST API, and all peers to see each other.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A shared secret: the peers of one test cluster only.
const SECRET: &str = "9a1c3f7e5b2d4a6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d";

/// The directory of the two cluster commands.
pub fn cluster_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os(CLUSTER_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => PathBuf::from(
                    std::env::var_os("HOME").ok_or_else(|| anyhow!("$HOME is not set"))?,
                )
                .join(".cache"),
            };
            cache.join(format!("pinwarden/ipfs-cluster-{CLUSTER_VERSION}"))
        }
    };
    for b in ["ipfs-cluster-service", "ipfs-cluster-ctl"] {
        if !dir.join(b).is_file() {
            bail!(
                "IPFS Cluster {CLUSTER_VERSION} is not installed ({} is missing); build it with: \
                 bash scripts/setup.sh",
                dir.join(b).display()
            );
        }
    }
    Ok(dir)
}

struct Peer {
    child: Option<Child>,
    dir: TempDir,
    rest: u16,
    pinsvc: u16,
    swarm: u16,
    id: String,
    kubo: usize,
}

impl Peer {
    fn config(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cluster's peers; killed and reaped on drop.
pub struct ClusterPeers {
    bin: PathBuf,
    peers: Vec<Peer>,
}

impl ClusterPeers {
    /// One peer over each of `kubo`'s daemons `nodes`, the first started alone, the others
    /// bootstrapping to it; ready when every peer's REST API lists all peers.
    pub async fn start(kubo: &IpfsCluster, nodes: &[usize]) -> Result<ClusterPeers> {
        let apis: Vec<(usize, String)> = nodes.iter().map(|&k| (k, kubo.api_url(k))).collect();
        Self::start_on(&apis, None).await
    }

    /// [`start`](Self::start) over explicit Kubo RPC URLs (a fault proxy in front of one, say),
    /// each with its index in the Kubo set; `pin_timeout` overrides the cluster's pin stall
    /// timeout (`ipfshttp.pin_timeout`, default 2m0s), e.g. `"15s"`.
    pub async fn start_on(
        apis: &[(usize, String)],
        pin_timeout: Option<&str>,
    ) -> Result<ClusterPeers> {
        let bin = cluster_dir()?;
        let ports = free_ports(3 * apis.len())?;
        let mut peers = Vec::new();
        for (i, (k, api)) in apis.iter().enumerate() {
            let k = *k;
            let dir = tempfile::Builder::new()
                .prefix("pinwarden-cluster-")
                .tempdir()?;
            let cfg = dir.path().join("cfg");
            let out = Command::new(bin.join("ipfs-cluster-service"))
                .args(["--config"])
                .arg(&cfg)
                .args(["init", "--consensus", "crdt"])
                .stdin(Stdio::null())
                .output()
                .context("ipfs-cluster-service init")?;
            if !out.status.success() {
                bail!(
                    "ipfs-cluster-service init: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let identity: Value =
                serde_json::from_str(&std::fs::read_to_string(cfg.join("identity.json"))?)?;
            let id = identity["id"]
                .as_str()
                .ok_or_else(|| anyhow!("identity.json has no id"))?
                .to_string();
            let peer = Peer {
                child: None,
                dir,
                rest: ports[3 * i],
                pinsvc: ports[3 * i + 1],
                swarm: ports[3 * i + 2],
                id,
                kubo: k,
            };
            configure(&peer, i, api, pin_timeout)?;
            peers.push(peer);
        }
        let mut cluster = ClusterPeers { bin, peers };
        for i in 0..cluster.peers.len() {
            cluster.launch(i)?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Starts peer `i` (again, after [`kill`](Self::kill)); peers after the first bootstrap to
    /// peer 0, and peer 0 to peer 1 when it restarts.
    fn launch(&mut self, i: usize) -> Result<()> {
        let bootstrap = match i {
            0 if self.peers.len() > 1 && self.peers[1].child.is_some() => Some(self.addr(1)),
            0 => None,
            _ => Some(self.addr(0)),
        };
        let peer = &mut self.peers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(peer.dir.path().join("daemon.log"))?;
        let mut cmd = Command::new(self.bin.join("ipfs-cluster-service"));
        cmd.arg("--config").arg(peer.config()).arg("daemon");
        if let Some(b) = bootstrap {
            cmd.args(["--bootstrap", &b]);
        }
        peer.child = Some(
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("spawning ipfs-cluster-service daemon")?,
        );
        Ok(())
    }

    fn addr(&self, i: usize) -> String {
        format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            self.peers[i].swarm, self.peers[i].id
        )
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        let want = self.peers.len();
        for i in 0..want {
            loop {
                if let Some(status) = self.peers[i]
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    bail!(
                        "cluster peer {i} exited ({status}):\n{}",
                        self.peers[i].logs()
                    );
                }
                let seen = async {
                    let body = http
                        .get(format!("{}/id", self.rest_url(i)))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .ok()?
                        .bytes()
                        .await
                        .ok()?;
                    let id: Value = serde_json::from_slice(&body).ok()?;
                    let peers = id["cluster_peers"].as_array().map_or(0, Vec::len);
                    // Every peer's free-space metric is in: the allocator can use them all.
                    let body = http
                        .get(format!("{}/monitor/metrics/freespace", self.rest_url(i)))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .ok()?
                        .bytes()
                        .await
                        .ok()?;
                    let metrics = match serde_json::from_slice::<Value>(&body).ok()? {
                        Value::Array(list) => list.len(),
                        _ => 0,
                    };
                    Some(peers.min(metrics))
                };
                if seen.await.is_some_and(|n| n >= want) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "cluster peer {i} did not see {want} peers within {READY_TIMEOUT:?}:\n{}",
                        self.logs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// `http://127.0.0.1:<port>` of peer `i`'s REST API.
    pub fn rest_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.peers[i].rest)
    }

    /// `http://127.0.0.1:<port>` of peer `i`'s Pinning Services API.
    pub fn pinsvc_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.peers[i].pinsvc)
    }

    /// The index, in the Kubo set, of peer `i`'s Kubo daemon.
    pub fn kubo_of(&self, i: usize) -> usize {
        self.peers[i].kubo
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// `ipfs-cluster-ctl --host <peer i's REST API> ARGS...`.
    pub fn ctl(&self, i: usize) -> Command {
        let mut cmd = Command::new(self.bin.join("ipfs-cluster-ctl"));
        cmd.args([
            "--host",
            &format!("/ip4/127.0.0.1/tcp/{}", self.peers[i].rest),
        ]);
        cmd
    }

    /// Kills peer `i` now with SIGKILL (its state stays).
    pub fn kill(&mut self, i: usize) {
        self.peers[i].kill();
    }

    /// Starts peer `i` again on its state, and waits until every peer sees the others.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.peers[i].kill();
        self.launch(i)?;
        self.wait_ready().await
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.peers.iter().enumerate() {
            let _ = writeln!(out, "--- cluster peer {i} ---\n{}", p.logs());
        }
        out
    }
}

/// The peer's service.json: loopback only, fixed ports, this test's secret, no mDNS, no relay,
/// quick peer monitoring (a killed peer is noticed in seconds, not the default 30 s).
fn configure(peer: &Peer, i: usize, kubo_api: &str, pin_timeout: Option<&str>) -> Result<()> {
    let path = peer.config().join("service.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let tcp = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
    let kubo_port = kubo_api
        .rsplit(':')
        .next()
        .ok_or_else(|| anyhow!("no port in {kubo_api}"))?;
    let cluster = &mut c["cluster"];
    cluster["peername"] = format!("peer{i}").into();
    cluster["secret"] = SECRET.into();
    cluster["listen_multiaddress"] = serde_json::json!([tcp(peer.swarm)]);
    cluster["enable_relay_hop"] = false.into();
    cluster["mdns_interval"] = "0s".into();
    cluster["monitor_ping_interval"] = "2s".into();
    cluster["peer_watch_interval"] = "2s".into();
    // A restarted peer re-pins what it lost only when it recovers its failed pins: every 12
    // minutes by default, so a peer killed after the pin reached it (its status then reads
    // `unexpectedly_unpinned`) caught up within a test's deadline only when the kill came first
    // (the flaky `a_cluster_peer_killed_mid_pin_ends_on_the_next_tier`). 20 s: well inside it.
    cluster["pin_recover_interval"] = "20s".into();
    // Metrics every second or so (default 30 s): the allocator counts a peer as a candidate
    // only while its metrics are fresh, so a new cluster can allocate at once.
    for informer in ["disk", "pinqueue", "tags"] {
        c["informer"][informer]["metric_ttl"] = "2s".into();
    }
    c["monitor"]["pubsubmon"]["check_interval"] = "2s".into();
    c["consensus"]["crdt"]["trusted_peers"] = serde_json::json!(["*"]);
    // A peer killed before the pin's CRDT delta reached it learns of it only when a peer
    // rebroadcasts its heads. go-ds-crdt (v0.6.8, `rebroadcastHeads`) skips heads it saw
    // broadcast in the last interval, and pubsub delivers a peer's own broadcasts to itself, so
    // after one rebroadcast every peer skips the next: a head goes out every second interval,
    // 84-156 s at the 1 min default, past a test's deadline (the CI failure of
    // `a_cluster_peer_killed_mid_pin_ends_on_the_next_tier` with `heads: 0` on restart).
    c["consensus"]["crdt"]["rebroadcast_interval"] = "5s".into();
    c["consensus"]["crdt"]["batching"]["max_batch_size"] = 0.into();
    c["api"]["restapi"]["http_listen_multiaddress"] = tcp(peer.rest).into();
    c["api"]["pinsvcapi"]["http_listen_multiaddress"] = tcp(peer.pinsvc).into();
    // The IPFS proxy is not used; its default port (9095) would collide between peers.
    c["api"]["ipfsproxy"]["listen_multiaddress"] = "/ip4/127.0.0.1/tcp/0".into();
    c["api"]["ipfsproxy"]["node_multiaddress"] = format!("/ip4/127.0.0.1/tcp/{kubo_port}").into();
    let ipfs = &mut c["ipfs_connector"]["ipfshttp"];
    ipfs["node_multiaddress"] = format!("/ip4/127.0.0.1/tcp/{kubo_port}").into();
    ipfs["connect_swarms_delay"] = "1s".into();
    if let Some(t) = pin_timeout {
        ipfs["pin_timeout"] = t.into();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&c)?)?;
    Ok(())
}

fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The private address of [`reexec_in_private_netns`]'s private interface. IPFS Cluster reports
/// only global-unicast IPFS addresses of its peers (`publicIPFSAddresses` in its `util.go`:
/// loopback is dropped), so the `delegates` of its PSA would be empty on loopback alone. Kubo
/// nodes that should appear there listen on this address too ([`listen_on_private`]).
pub const PRIVATE_IP: &str = "10.77.0.1";

/// `lo` up, and [`PRIVATE_IP`] on one end of a veth pair whose both ends stay in the
/// namespace (this kernel has no `dummy` links): a local address like loopback (nothing leaves
/// the namespace, which has no link out), but one the cluster reports.
const NETNS_SETUP: &str = "ip link set lo up && ip link add pw0 type veth peer name pw1 && \
     ip addr add 10.77.0.1/24 dev pw0 && ip link set pw0 up && ip link set pw1 up && \
     exec \"$0\" \"$@\"";

/// Adds a swarm listener on [`PRIVATE_IP`] (any free port) to a Kubo config, for
/// [`IpfsCluster::start_with`].
pub fn listen_on_private(config: &mut serde_json::Map<String, Value>) -> Result<()> {
    let swarm = config
        .get_mut("Addresses")
        .and_then(|a| a.get_mut("Swarm"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| anyhow!("no Addresses.Swarm in the Kubo config"))?;
    swarm.push(format!("/ip4/{PRIVATE_IP}/tcp/0").into());
    Ok(())
}

/// Running inside a private network namespace: [`reexec_in_private_netns`] puts a test binary
/// there and sets this.
pub const NETNS_ENV: &str = "PINWARDEN_PRIVATE_NETNS";

/// Whether this process runs in the private namespace [`reexec_in_private_netns`] made.
pub fn in_private_netns() -> bool {
    std::env::var_os(NETNS_ENV).is_some()
}

/// Runs this binary again, with the same arguments, in a new network namespace where only
/// `lo` is up (`unshare --net`, as root, or with `--map-root-user` otherwise), and exits with
/// its status. Returns only inside the namespace.
pub fn reexec_in_private_netns() -> Result<()> {
    if in_private_netns() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--net", "--", "sh", "-c", NETNS_SETUP])
        .arg(&exe)
        .args(&args)
        .env(NETNS_ENV, "1");
    let status = cmd
        .status()
        .context("running unshare --net (util-linux) for a private network namespace")?;
    std::process::exit(status.code().unwrap_or(1));
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
