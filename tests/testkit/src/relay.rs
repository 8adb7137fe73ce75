//! A TCP relay on 127.0.0.1 that delays the bytes in both directions, for latency between two
//! IPFS nodes' swarm connections (this kernel has no `netem`, so `tc` cannot add it), and that
//! can be cut, as a link that goes down in the middle of a transfer.
//!
//! Each direction is pipelined: a reader stamps every chunk with the time it arrived and a
//! writer sends it `one_way` later, so the relay adds latency without capping bandwidth at one
//! chunk per round trip.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Chunks in flight per direction: with 64 KiB reads, at most 16 MiB buffered.
const IN_FLIGHT: usize = 256;

pub struct DelayRelay {
    addr: SocketAddr,
    /// `true` while the link is cut: open connections are dropped and new ones refused.
    cut: watch::Sender<bool>,
    target: watch::Sender<Option<SocketAddr>>,
    relayed: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl DelayRelay {
    /// Listens on a free loopback port and relays every connection to `target`, `one_way`
    /// late in each direction (a round trip gains twice that).
    pub async fn start(target: SocketAddr, one_way: Duration) -> Result<DelayRelay> {
        let relay = DelayRelay::bind(one_way).await?;
        relay.forward_to(target);
        Ok(relay)
    }

    /// Listens now, and relays once [`forward_to`] names the target: a node's config can then
    /// announce the relay's address before the node (and so its swarm port) exists. Connections
    /// that arrive before are dropped.
    ///
    /// [`forward_to`]: DelayRelay::forward_to
    pub async fn bind(one_way: Duration) -> Result<DelayRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the relay")?;
        let addr = listener.local_addr()?;
        let (cut, _) = watch::channel(false);
        let (target_tx, target) = watch::channel(None::<SocketAddr>);
        let relayed = Arc::new(AtomicU64::new(0));
        let (cuts, counter) = (cut.clone(), Arc::clone(&relayed));
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let to = *target.borrow();
                // Cut, or nowhere to go yet: dropped, the dialer sees the connection closed.
                let Some(to) = to.filter(|_| !*cuts.borrow()) else {
                    continue;
                };
                let (cut_rx, counter) = (cuts.subscribe(), Arc::clone(&counter));
                tokio::spawn(relay(inbound, to, one_way, cut_rx, counter));
            }
        });
        Ok(DelayRelay {
            addr,
            cut,
            target: target_tx,
            relayed,
            accept,
        })
    }

    pub fn forward_to(&self, target: SocketAddr) {
        self.target.send_replace(Some(target));
    }

    /// Puts the relay in front of the node whose config this is (in an
    /// `IpfsCluster::start_with` hook): it forwards to the node's swarm port, and the node
    /// announces only the relay, so peers that learn its addresses (`id`, a provider hint)
    /// reach it through the relay.
    pub fn front(&self, config: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
        let swarm = config["Addresses"]["Swarm"][0]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .and_then(|port| port.parse::<u16>().ok())
            .ok_or_else(|| anyhow::anyhow!("no swarm port in {}", config["Addresses"]))?;
        self.forward_to(SocketAddr::from(([127, 0, 0, 1], swarm)));
        config["Addresses"]["Announce"] = serde_json::json!([self.multiaddr()]);
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `/ip4/127.0.0.1/tcp/<port>`: the relay as a swarm address.
    pub fn multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.addr.port())
    }

    /// Bytes relayed so far, both directions.
    pub fn relayed_bytes(&self) -> u64 {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Cuts the link: every open connection is dropped now, and new ones until [`restore`].
    ///
    /// [`restore`]: DelayRelay::restore
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accept.abort();
    }
}

async fn relay(
    inbound: TcpStream,
    target: SocketAddr,
    one_way: Duration,
    mut cut: watch::Receiver<bool>,
    relayed: Arc<AtomicU64>,
) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let there = delayed(in_read, out_write, one_way, Arc::clone(&relayed));
    let back = delayed(out_read, in_write, one_way, relayed);
    // Either direction ending (EOF or error) or the link being cut ends the connection.
    tokio::select! {
        _ = there => {}
        _ = back => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn delayed(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    relayed: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            relayed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let _ = to.shutdown().await;
    };
    // The writer drains what the reader queued before it ended.
    let (_, ()) = tokio::join!(reader, writer);
}
