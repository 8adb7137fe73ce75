//! Addresses: a node's configured API address (URL or multiaddr) → the RPC base URL, and the
//! swarm addresses `id` reports → addresses another node can dial.

use super::KuboError;
use reqwest::Url;

/// `{base}/api/v0/` from a node's configured address: an http(s) URL (with or without
/// `/api/v0`) or an API multiaddr.
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
pub(super) fn normalise_swarm_addrs(addrs: Vec<String>, peer_id: &str) -> Vec<String> {
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

/// The peer id at the end of a multiaddr (`.../p2p/<id>`), if any.
pub fn peer_id(addr: &str) -> Option<&str> {
    let (_, id) = addr
        .rsplit_once("/p2p/")
        .or_else(|| addr.rsplit_once("/ipfs/"))?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("/ip4/127.") || addr.starts_with("/ip6/::1/")
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
    fn peer_ids_of_multiaddrs() {
        assert_eq!(peer_id("/ip4/127.0.0.1/tcp/4001/p2p/PEER"), Some("PEER"));
        assert_eq!(peer_id("/ip4/127.0.0.1/tcp/4001/ipfs/PEER"), Some("PEER"));
        assert_eq!(peer_id("/ip4/127.0.0.1/tcp/4001"), None);
        assert_eq!(peer_id("/ip4/127.0.0.1/tcp/4001/p2p/"), None);
        assert_eq!(peer_id("/p2p/PEER/p2p-circuit"), None);
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
}
