//! Requests to the RPC API and what their failures mean.
//!
//! Every call is a POST to `{base}/api/v0/<path>`, carries the configured credentials
//! (production nodes sit behind a reverse proxy) and is bounded in time: a connect timeout plus a
//! per-call timeout. `pin/add` is the exception: see `pin_stream`.

use super::KuboConfig;
use super::addr::api_url;
use super::ndjson::{Chunk, Lines, error_message, stream_error_header};
use crate::Outcome;
use crate::policy::contract::HttpError;
use bytes::Bytes;
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use tokio::time::timeout;

/// How much of an unparseable or non-JSON reply goes into an error message.
const SNIPPET: usize = 200;

/// Credentials sent on every request; `None` where one is optional means no authentication.
/// The single credentials type: the config's `bearer_token*` / `basic_*` keys resolve to it
/// ([`NodeConfig::credentials`](crate::config::NodeConfig::credentials)), and so do the CLI's flags.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic authentication.
    Basic { user: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            Auth::Bearer(_) => write!(f, "Bearer(***)"),
        }
    }
}

/// Why an RPC call failed; [`Outcome`] is the policy-facing form (`Outcome::from`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KuboError {
    /// Connection refused or reset, DNS failure, connect timeout.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The call did not finish within its timeout.
    #[error("timed out")]
    Timeout,
    /// The node (or the proxy in front of it) answered with a non-2xx status.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// A 2xx answer that does not parse as the expected reply.
    #[error("garbage reply: {0}")]
    Garbage(String),
    /// Anything else: bad input, an error reported inside a stream, a local I/O error.
    #[error("{0}")]
    Other(String),
}

impl From<KuboError> for Outcome {
    fn from(e: KuboError) -> Outcome {
        match e {
            KuboError::Unreachable(m) => Outcome::Unreachable(m),
            KuboError::Timeout => Outcome::Timeout,
            KuboError::Http { status, message } => {
                Outcome::HttpError(HttpError { status, message })
            }
            e @ KuboError::Garbage(_) => Outcome::Error(e.to_string()),
            KuboError::Other(m) => Outcome::Error(m),
        }
    }
}

/// The HTTP side of one node's client: where its API is, how to authenticate, how long a call
/// may take.
pub(super) struct Rpc {
    /// `{base}/api/v0/`, ready for `join`.
    api: Url,
    auth: Option<Auth>,
    http: reqwest::Client,
    call_timeout: Duration,
}

impl Rpc {
    pub(super) fn new(
        base_url: &str,
        auth: Option<Auth>,
        cfg: &KuboConfig,
    ) -> Result<Self, KuboError> {
        let api = api_url(base_url)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .user_agent(concat!("pinwarden/", env!("CARGO_PKG_VERSION")));
        if !needs_trust_store(&api) {
            // By default every client loads and parses the system's root certificates
            // (rustls-platform-verifier reads all of /etc/ssl/certs), and fails to build on a
            // host that has none. A plain-http node never shakes hands, so it trusts no root:
            // an https redirect from it would fail instead of being followed.
            builder = builder.tls_certs_only([]);
        }
        let http = builder.build().map_err(|e| {
            KuboError::Other(format!("cannot build the HTTP client: {}", chain(&e)))
        })?;
        Ok(Rpc {
            api,
            auth,
            http,
            call_timeout: cfg.call_timeout,
        })
    }

    /// `{base}/api/v0/`.
    pub(super) fn api(&self) -> &Url {
        &self.api
    }

    pub(super) fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    /// The per-call timeout ([`KuboConfig::call_timeout`]).
    pub(super) fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    fn url(&self, path: &str, args: &[(&str, &str)]) -> Url {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map(|mut segs| {
                segs.pop_if_empty().extend(path.split('/'));
            })
            .ok();
        if !args.is_empty() {
            url.query_pairs_mut().extend_pairs(args);
        }
        url
    }

    /// A POST to `path` with `args` as the query and the credentials, not sent yet.
    pub(super) fn post(&self, path: &str, args: &[(&str, &str)]) -> RequestBuilder {
        let request = self.http.post(self.url(path, args));
        match &self.auth {
            None => request,
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
        }
    }

    /// Sends with a whole-request timeout and turns a non-2xx answer into [`KuboError::Http`].
    pub(super) async fn send(
        &self,
        request: RequestBuilder,
        limit: Duration,
    ) -> Result<Response, KuboError> {
        let response = request
            .timeout(limit)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(status_error(response, limit).await)
        }
    }

    /// A call with a single JSON reply, within the per-call timeout.
    pub(super) async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        args: &[(&str, &str)],
    ) -> Result<T, KuboError> {
        let response = self.send(self.post(path, args), self.call_timeout).await?;
        let body = response.bytes().await.map_err(|e| classify(&e))?;
        serde_json::from_slice(&body).map_err(|e| garbage(&body, &e))
    }

    /// A streamed (NDJSON) reply, read to the end: one JSON value per line. An error reported in
    /// the stream (an `X-Stream-Error` header or trailer, or a `{"Type":"error"}` line) fails the
    /// call.
    pub(super) async fn call_lines(
        &self,
        request: RequestBuilder,
        limit: Duration,
    ) -> Result<Vec<Value>, KuboError> {
        let response = self
            .send(request.header(http::header::TE, "trailers"), limit)
            .await?;
        if let Some(err) = stream_error_header(response.headers()) {
            return Err(KuboError::Other(err));
        }
        let mut lines = Lines::new(response);
        let mut values = Vec::new();
        while let Some(chunk) = lines.next().await {
            match chunk? {
                Chunk::Line(line) => {
                    let value: Value =
                        serde_json::from_slice(&line).map_err(|e| garbage(&line, &e))?;
                    if let Some(message) = error_message(&value) {
                        return Err(KuboError::Other(message));
                    }
                    values.push(value);
                }
                Chunk::StreamError(err) => return Err(KuboError::Other(err)),
            }
        }
        Ok(values)
    }
}

/// Only https nodes need the system's root certificates.
fn needs_trust_store(api: &Url) -> bool {
    api.scheme() == "https"
}

/// reqwest error → [`KuboError`]: connect failures (refused, DNS, connect timeout) and dropped
/// connections are `Unreachable`, the request timeout is `Timeout`.
pub(super) fn classify(e: &reqwest::Error) -> KuboError {
    if e.is_connect() || (!e.is_timeout() && is_connection_drop(e)) {
        KuboError::Unreachable(unreachable_message(e))
    } else if e.is_timeout() {
        KuboError::Timeout
    } else {
        KuboError::Other(chain(e))
    }
}

/// A non-2xx response → [`KuboError::Http`], reading (a bounded time for) the body's message.
pub(super) async fn status_error(response: Response, limit: Duration) -> KuboError {
    let status = response.status();
    let body = match timeout(limit, response.bytes()).await {
        Ok(Ok(body)) => body,
        _ => Bytes::new(),
    };
    KuboError::Http {
        status: status.as_u16(),
        message: http_error_message(status, &body),
    }
}

/// A 2xx reply that is not what was expected: why, and the start of what came instead.
pub(super) fn garbage(body: &[u8], why: &dyn fmt::Display) -> KuboError {
    KuboError::Garbage(format!("{why}: {}", snippet(body)))
}

/// The message of a non-2xx body: the JSON `Message` when there is one, else the text.
fn http_error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(message) = value.get("Message").and_then(Value::as_str)
    {
        return message.to_string();
    }
    let text = snippet(body);
    if text.is_empty() {
        status.canonical_reason().unwrap_or("").to_string()
    } else {
        text
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(SNIPPET) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The error and its sources, `: `-joined (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// "Connection refused (os error 111) at 127.0.0.1:5001": the root cause and the address, which
/// is what an operator reading a trace needs (reqwest's full chain repeats the whole URL).
fn unreachable_message(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let at = e
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| "the node".into());
    format!("{root} at {at}")
}

/// A dropped connection rather than a protocol error: reset, closed before the answer, EOF.
fn is_connection_drop(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        let text = s.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubo::tests::V1;

    fn rpc(base: &str) -> Rpc {
        crate::install_crypto_provider();
        Rpc::new(base, None, &KuboConfig::default()).unwrap()
    }

    #[test]
    fn rpc_paths_and_queries_are_encoded() {
        let url = rpc("http://127.0.0.1:5001/").url(
            "swarm/connect",
            &[("arg", "/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5001/api/v0/swarm/connect?arg=%2Fip4%2F127.0.0.1%2Ftcp%2F4001%2Fp2p%2F12D3Koo"
        );
    }

    #[test]
    fn only_https_nodes_load_the_trust_store() {
        let api = |base| api_url(base).unwrap();
        assert!(!needs_trust_store(&api("http://127.0.0.1:5001")));
        assert!(!needs_trust_store(&api("/ip4/127.0.0.1/tcp/5001")));
        assert!(needs_trust_store(&api("https://node.example")));
        assert!(needs_trust_store(&api("/dns4/node.example/tcp/443/https")));
        // Both kinds of client build (the https one with the system's roots).
        assert_eq!(rpc("http://127.0.0.1:5001").api().scheme(), "http");
        assert_eq!(rpc("https://node.example").api().scheme(), "https");
    }

    #[test]
    fn http_error_messages() {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let js = format!(r#"{{"Message":"path '{V1}' is not pinned","Code":0,"Type":"error"}}"#);
        assert_eq!(
            http_error_message(status, js.as_bytes()),
            format!("path '{V1}' is not pinned")
        );
        assert_eq!(
            http_error_message(StatusCode::BAD_GATEWAY, b""),
            "Bad Gateway"
        );
        assert_eq!(
            http_error_message(StatusCode::BAD_GATEWAY, b"<h1>bad gateway</h1>"),
            "<h1>bad gateway</h1>"
        );
    }

    #[test]
    fn auth_is_redacted_in_debug() {
        let basic = Auth::Basic {
            user: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{basic:?}").contains("secret"));
        assert!(!format!("{:?}", Auth::Bearer("tok".into())).contains("tok"));
    }

    #[test]
    fn errors_map_to_outcomes() {
        assert_eq!(Outcome::from(KuboError::Timeout), Outcome::Timeout);
        assert_eq!(
            Outcome::from(KuboError::Http {
                status: 502,
                message: "m".into()
            }),
            Outcome::HttpError(HttpError {
                status: 502,
                message: "m".into()
            })
        );
        assert_eq!(
            Outcome::from(KuboError::Garbage("x".into())),
            Outcome::Error("garbage reply: x".into())
        );
    }
}
