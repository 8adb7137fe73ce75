//! A fault-injecting reverse proxy for a node's RPC API, on 127.0.0.1: requests pass through
//! (streamed both ways, trailers included) until the test switches it into a failure mode.

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// What the proxy does with the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Stop listening and drop every open connection: clients see "connection refused".
    Refuse,
    /// Wait this long before forwarding each request. A client that gives up first may still
    /// see its request reach the node later, as over a slow link.
    Delay(Duration),
    /// Answer every request with a Kubo-style HTTP 500 (`{"Message":...,"Type":"error"}`).
    Http500,
    /// `pin/add` answers 200 with streaming headers and one `{"Progress":1,"Bytes":1024}` line,
    /// then nothing, ever: a Kubo node whose fetch stopped. (Synthesised rather than forwarded
    /// because js-ipfs never streams pin progress: it answers once, at the end.) Other calls pass.
    StallMidStream,
    /// `pin/add` answers 200 `{"Pins":["<cid>"]}` without asking the node. Other calls pass.
    LiePinOk,
    /// `pin/add` answers 200, one progress line, then an `X-Stream-Error` trailer carrying this
    /// message (Kubo's way of reporting a late failure). Other calls pass.
    PinStreamError(String),
    /// A Kubo with `API.Authorizations`: requests without `Authorization: Bearer <token>` get
    /// its 403 (`core/corehttp/commands.go`, `withAuthSecrets`); the others pass.
    RequireToken(String),
    /// `id` answers with the node's swarm addresses replaced by one nobody listens on (same
    /// peer id): a node behind a firewall or NAT that its peers cannot dial. Other calls pass.
    UnreachableSwarm,
}

/// Kubo's answer to a request without the right token.
pub const KUBO_ACCESS_DENIED: &str = "Kubo RPC Access Denied: Please provide a valid authorization token as defined in the API.Authorizations configuration.";

/// The running proxy. Dropping it stops it (listener and connections).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    mode_tx: watch::Sender<(u64, Mode)>,
    applied_rx: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

struct Shared {
    /// `http://127.0.0.1:port` of the node.
    upstream: String,
    client: reqwest::Client,
    counts: Mutex<HashMap<String, usize>>,
    authorizations: Mutex<Vec<Option<String>>>,
    mode_rx: watch::Receiver<(u64, Mode)>,
}

impl FaultProxy {
    /// A proxy on a free 127.0.0.1 port in front of `upstream` (`http://host:port`), in `Pass`.
    pub async fn start(upstream: &str) -> Result<FaultProxy> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            // Below js-ipfs' 5 s keep-alive, so a pooled connection is never reused as it closes.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .context("building the proxy's HTTP client")?;
        let (mode_tx, mode_rx) = watch::channel((0u64, Mode::Pass));
        let (applied_tx, applied_rx) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            counts: Mutex::new(HashMap::new()),
            authorizations: Mutex::new(Vec::new()),
            mode_rx: mode_rx.clone(),
        });
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            Arc::clone(&shared),
            mode_rx,
            applied_tx,
        ));
        Ok(FaultProxy {
            addr,
            shared,
            mode_tx,
            applied_rx,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`: give this to the client instead of the node's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches mode; returns once the listener reflects it (closed for `Refuse`, listening
    /// again otherwise).
    pub async fn set_mode(&self, mode: Mode) {
        let generation = self.mode_tx.borrow().0 + 1;
        self.mode_tx.send_replace((generation, mode));
        let mut applied = self.applied_rx.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            applied.wait_for(|g| *g >= generation),
        )
        .await;
    }

    /// Requests seen per path (`/api/v0/pin/add` → 2), whatever the mode (refused connections
    /// never send one).
    pub fn counts(&self) -> HashMap<String, usize> {
        lock(&self.shared.counts).clone()
    }

    /// Requests seen for one path.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.shared.counts).get(path).copied().unwrap_or(0)
    }

    pub fn reset_counts(&self) {
        lock(&self.shared.counts).clear();
    }

    /// The `Authorization` header of every request seen, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        lock(&self.shared.authorizations).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut mode_rx: watch::Receiver<(u64, Mode)>,
    applied_tx: watch::Sender<u64>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        let (generation, refusing) = {
            let current = mode_rx.borrow_and_update();
            (current.0, current.1 == Mode::Refuse)
        };
        if refusing {
            listener = None;
            connections.abort_all();
        } else if listener.is_none() {
            // The port is ours to take back (SO_REUSEADDR is set by tokio on Unix).
            for _ in 0..50 {
                match TcpListener::bind(addr).await {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        applied_tx.send_replace(generation);
        while connections.try_join_next().is_some() {}

        match listener.as_ref() {
            None => {
                if mode_rx.changed().await.is_err() {
                    return;
                }
            }
            Some(l) => {
                tokio::select! {
                    accepted = l.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        // Kubo's own server (Go) writes without Nagle's delay; without this a
                        // streamed reply (headers, then body, then the last chunk) waits out
                        // the client's delayed ACK: about 40 ms a call, which no node adds.
                        let _ = stream.set_nodelay(true);
                        let shared = Arc::clone(&shared);
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let shared = Arc::clone(&shared);
                                async move { handle(shared, req).await }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    changed = mode_rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// An error from the service makes hyper drop the connection without an answer.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused by the fault proxy")
    }
}

impl std::error::Error for Refused {}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refused> {
    let path = req.uri().path().to_string();
    *lock(&shared.counts).entry(path.clone()).or_insert(0) += 1;
    lock(&shared.authorizations).push(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    let mode = shared.mode_rx.borrow().1.clone();
    let is_pin_add = path == "/api/v0/pin/add";
    match mode {
        Mode::Refuse => Err(Refused),
        Mode::Http500 => Ok(json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"Message":"injected failure (fault proxy)","Code":0,"Type":"error"}"#.into(),
        )),
        Mode::LiePinOk if is_pin_add => {
            let cid = query_arg(req.uri().query().unwrap_or(""));
            Ok(json(
                StatusCode::OK,
                serde_json::json!({ "Pins": [cid] }).to_string(),
            ))
        }
        Mode::StallMidStream if is_pin_add => {
            let first = futures::stream::once(async {
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(
                    b"{\"Progress\":1,\"Bytes\":1024}\n",
                )))
            });
            let body = StreamBody::new(first.chain(futures::stream::pending()));
            Ok(streaming(BodyExt::boxed(body)))
        }
        Mode::PinStreamError(message) if is_pin_add => {
            let mut trailers = HeaderMap::new();
            let value = serde_json::json!({ "Message": message, "Code": 0 }).to_string();
            if let Ok(value) = HeaderValue::from_str(&value) {
                trailers.insert(HeaderName::from_static("x-stream-error"), value);
            }
            let frames = vec![
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(
                    b"{\"Progress\":1,\"Bytes\":1024}\n",
                ))),
                Ok(Frame::trailers(trailers)),
            ];
            let body = StreamBody::new(futures::stream::iter(frames));
            Ok(streaming(BodyExt::boxed(body)))
        }
        Mode::Delay(d) => {
            tokio::time::sleep(d).await;
            Ok(forward(&shared, req).await)
        }
        Mode::RequireToken(token) => {
            let given = req.headers().get(header::AUTHORIZATION);
            if given.and_then(|v| v.to_str().ok()) == Some(format!("Bearer {token}").as_str()) {
                Ok(forward(&shared, req).await)
            } else {
                let mut denied = json(StatusCode::FORBIDDEN, KUBO_ACCESS_DENIED.into());
                denied.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Ok(denied)
            }
        }
        Mode::UnreachableSwarm if path == "/api/v0/id" => {
            let answer = forward(&shared, req).await;
            let body = answer.into_body().collect().await.map_err(|_| Refused)?;
            let mut id: serde_json::Value =
                serde_json::from_slice(&body.to_bytes()).map_err(|_| Refused)?;
            let peer = id["ID"].as_str().unwrap_or_default().to_string();
            // Port 1 on loopback: nothing listens there, a dial is refused at once.
            id["Addresses"] = serde_json::json!([format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}")]);
            Ok(json(StatusCode::OK, id.to_string()))
        }
        _ => Ok(forward(&shared, req).await),
    }
}

/// The first `arg=` of a query string, percent-decoded.
fn query_arg(query: &str) -> String {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "arg")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

fn json(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A 200 shaped like Kubo's streaming answers (chunked, `Trailer: X-Stream-Error`).
fn streaming(body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-chunked-output", HeaderValue::from_static("1"));
    headers.insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
    response
}

/// Hop-by-hop headers are the proxy's own business, not forwarded either way.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

async fn forward(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path_and_query}", shared.upstream);
    let mut request = shared
        .client
        .request(parts.method.clone(), &url)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    // Ask for trailers (X-Stream-Error) when the client does, so they can be relayed.
    if parts.headers.get(header::TE).is_some() {
        request = request.header(header::TE, "trailers");
    }
    match request.send().await {
        Err(e) => json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({
                "Message": format!("fault proxy: upstream failed: {e}"),
                "Code": 0,
                "Type": "error"
            })
            .to_string(),
        ),
        Ok(upstream) => {
            let upstream = http::Response::from(upstream);
            let (up_parts, up_body) = upstream.into_parts();
            let mut response = Response::new(up_body.map_err(|e| Box::new(e) as BoxError).boxed());
            *response.status_mut() = up_parts.status;
            for (name, value) in &up_parts.headers {
                if !is_hop_by_hop(name) {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
    }
}
