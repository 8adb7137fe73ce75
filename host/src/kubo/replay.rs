//! Test support: a loopback HTTP server that plays recorded node replies back, on a schedule,
//! so the client's reading of both node kinds (Kubo streams, js-ipfs answers at the end) is
//! unit-tested without a node. See `recorded` for the replies themselves.

use super::KuboConfig;
use super::transport::Rpc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One reply: a head (status line and headers, `\n`-separated as recorded), then a body.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    head: String,
    body: Body,
    /// Before anything is written.
    delay: Duration,
}

#[derive(Debug, Clone)]
enum Body {
    /// With `content-length` (js-ipfs' single JSON answers).
    Whole(String),
    /// Chunked: each piece after its delay, then the trailer if any (Kubo and js-ipfs streams).
    Chunked {
        pieces: Vec<(Duration, String)>,
        trailer: Option<String>,
    },
    /// The head is written; the body never comes.
    Hang,
}

impl Reply {
    /// A whole reply: `head` ends before the blank line; `content-length` is added.
    pub(super) fn whole(head: &str, body: &str) -> Reply {
        Reply {
            head: format!("{}\ncontent-length: {}", head.trim_end(), body.len()),
            body: Body::Whole(body.to_string()),
            delay: Duration::ZERO,
        }
    }

    /// A chunked stream of `lines`, each sent `every` after the previous one.
    pub(super) fn stream(head: &str, lines: &[String], every: Duration) -> Reply {
        Reply {
            head: head.trim_end().to_string(),
            body: Body::Chunked {
                pieces: lines.iter().map(|l| (every, format!("{l}\n"))).collect(),
                trailer: None,
            },
            delay: Duration::ZERO,
        }
    }

    /// ... ending with an `X-Stream-Error` trailer.
    pub(super) fn with_trailer(mut self, error: &str) -> Reply {
        if let Body::Chunked { trailer, .. } = &mut self.body {
            *trailer = Some(format!("X-Stream-Error: {error}"));
        }
        self
    }

    /// ... whose stream then stops without ending.
    pub(super) fn then_hang(mut self) -> Reply {
        if let Body::Chunked { pieces, .. } = &mut self.body {
            pieces.push((Duration::from_secs(3600), String::new()));
        }
        self
    }

    /// Headers, and no body ever.
    pub(super) fn hang(head: &str) -> Reply {
        Reply {
            head: head.trim_end().to_string(),
            body: Body::Hang,
            delay: Duration::ZERO,
        }
    }

    /// Nothing at all (not even headers) for `delay` first.
    pub(super) fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = Box<dyn Fn(&str, usize) -> Reply + Send + Sync>;

/// The running server; stops when dropped.
pub(super) struct Replay {
    url: String,
    calls: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Replay {
    /// `handler(path_and_query, nth call of that path)` gives each reply.
    pub(super) async fn start(
        handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
    ) -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(Box::new(handler));
        let seen = Arc::clone(&calls);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&handler), Arc::clone(&seen)));
            }
        });
        Replay { url, calls, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// An [`Rpc`] to this server with the default configuration.
    pub(super) fn rpc(&self) -> Rpc {
        crate::install_crypto_provider();
        Rpc::new(&self.url, None, &KuboConfig::default()).expect("rpc")
    }

    /// Every request's path and query, in arrival order.
    pub(super) fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests to one RPC (`"bitswap/stat"`).
    pub(super) fn count(&self, rpc: &str) -> usize {
        let path = format!("/api/v0/{rpc}");
        self.calls()
            .iter()
            .filter(|c| c.split('?').next() == Some(path.as_str()))
            .count()
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests on one connection, one after the other (keep-alive, as the nodes do).
async fn serve(mut socket: TcpStream, handler: Arc<Handler>, calls: Arc<Mutex<Vec<String>>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(target) = read_request(&mut socket, &mut buffer).await else {
            return;
        };
        let nth = {
            let Ok(mut seen) = calls.lock() else { return };
            let path = target.split('?').next().unwrap_or_default().to_string();
            let nth = seen
                .iter()
                .filter(|c| c.split('?').next() == Some(path.as_str()))
                .count();
            seen.push(target.clone());
            nth
        };
        let reply = handler(&target, nth);
        if write_reply(&mut socket, reply).await.is_err() {
            return;
        }
    }
}

/// The request target of the next request (its head read and dropped; requests here have no
/// body); `None` when the client closed the connection.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            buffer.drain(..end + 4);
            return head.split_whitespace().nth(1).map(str::to_string);
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn write_reply(socket: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    tokio::time::sleep(reply.delay).await;
    let head = format!("{}\r\n\r\n", reply.head.replace('\n', "\r\n"));
    socket.write_all(head.as_bytes()).await?;
    match reply.body {
        Body::Whole(body) => socket.write_all(body.as_bytes()).await?,
        Body::Chunked { pieces, trailer } => {
            for (delay, piece) in pieces {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if !piece.is_empty() {
                    let chunk = format!("{:x}\r\n{piece}\r\n", piece.len());
                    socket.write_all(chunk.as_bytes()).await?;
                }
            }
            let end = match trailer {
                Some(t) => format!("0\r\n{t}\r\n\r\n"),
                None => "0\r\n\r\n".to_string(),
            };
            socket.write_all(end.as_bytes()).await?;
        }
        Body::Hang => std::future::pending::<()>().await,
    }
    socket.flush().await
}
