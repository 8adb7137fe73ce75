//! A typed client of the daemon's API ([`crate::daemon::wire`]), over its Unix socket or TCP.
//! The CLI's `submit`, `status`, `jobs` and `policy reload` use it, and so do the tests and the
//! end-to-end benchmark.

use crate::daemon::wire::Job;
use crate::daemon::wire::{
    ErrorReply, Health, JobReply, JobsReply, PolicyView, ReloadReply, ReloadRequest, SubmitRequest,
};
use crate::queue::State;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers there.
    #[error("cannot reach the daemon at {endpoint}: {message} (is `pinwarden serve` running?)")]
    Unreachable { endpoint: String, message: String },
    /// The daemon answered with an error status and message.
    #[error("{message} ({status})")]
    Api { status: StatusCode, message: String },
    /// The daemon's answer is not what the API describes.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The caller's mistake (4xx), as opposed to a failure worth retrying.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if status.is_client_error())
    }
}

/// What a submit returned: the pin, and whether it was only queued (202) or has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub accepted_only: bool,
    pub job: Job,
}

#[derive(Clone)]
pub struct DaemonClient {
    http: reqwest::Client,
    /// `http://host[:port]` (a dummy host over the Unix socket).
    base: String,
    /// Where the daemon is, for messages.
    endpoint: String,
    token: Option<String>,
}

impl DaemonClient {
    /// The daemon on a Unix socket.
    pub fn unix(socket: &Path) -> Result<DaemonClient, ClientError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .unix_socket(socket)
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(DaemonClient {
            http,
            base: "http://pinwarden".into(),
            endpoint: socket.display().to_string(),
            token: None,
        })
    }

    /// The daemon's TCP listener (`host:port`), with its bearer token.
    pub fn tcp(addr: &str, token: Option<String>) -> Result<DaemonClient, ClientError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(DaemonClient {
            http,
            base: format!("http://{addr}"),
            endpoint: addr.to_string(),
            token,
        })
    }

    pub async fn submit(&self, request: &SubmitRequest) -> Result<Submitted, ClientError> {
        let (status, reply): (_, JobReply) = self
            .call(Method::POST, &["v1", "pins"], &[], Some(request))
            .await?;
        Ok(Submitted {
            accepted_only: status == StatusCode::ACCEPTED,
            job: reply.job,
        })
    }

    /// A pin by job id or CID.
    pub async fn status(&self, key: &str) -> Result<Job, ClientError> {
        let (_, reply): (_, JobReply) = self
            .call::<(), _>(Method::GET, &["v1", "jobs", key], &[], None)
            .await?;
        Ok(reply.job)
    }

    pub async fn jobs(&self, state: Option<State>, limit: u32) -> Result<Vec<Job>, ClientError> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(s) = state {
            query.push(("state", s.as_str()));
        }
        let (_, reply): (_, JobsReply) = self
            .call::<(), _>(Method::GET, &["v1", "jobs"], &query, None)
            .await?;
        Ok(reply.jobs)
    }

    /// Cancels one job id; the pin goes on while other job ids want it.
    pub async fn cancel(&self, job_id: &str) -> Result<Job, ClientError> {
        let (_, reply): (_, JobReply) = self
            .call::<(), _>(Method::DELETE, &["v1", "jobs", job_id], &[], None)
            .await?;
        Ok(reply.job)
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        let (_, health) = self
            .call::<(), _>(Method::GET, &["v1", "health"], &[], None)
            .await?;
        Ok(health)
    }

    pub async fn reload(&self, request: &ReloadRequest) -> Result<PolicyView, ClientError> {
        let (_, reply): (_, ReloadReply) = self
            .call(
                Method::POST,
                &["v1", "policy", "reload"],
                &[],
                Some(request),
            )
            .await?;
        Ok(reply.policy)
    }

    /// Puts `request`'s policy in shadow (validated as a reload is); its first report.
    pub async fn shadow_start(
        &self,
        request: &crate::daemon::wire::ShadowRequest,
    ) -> Result<crate::rounds::shadow::Report, ClientError> {
        let (_, reply): (_, crate::daemon::wire::ShadowReply) = self
            .call(
                Method::POST,
                &["v1", "policy", "shadow"],
                &[],
                Some(request),
            )
            .await?;
        Ok(reply.shadow)
    }

    /// The running shadow's report (404 when none runs).
    pub async fn shadow_report(&self) -> Result<crate::rounds::shadow::Report, ClientError> {
        let (_, reply): (_, crate::daemon::wire::ShadowReply) = self
            .call::<(), _>(Method::GET, &["v1", "policy", "shadow"], &[], None)
            .await?;
        Ok(reply.shadow)
    }

    /// Stops the shadow; its last report.
    pub async fn shadow_stop(&self) -> Result<crate::rounds::shadow::Report, ClientError> {
        let (_, reply): (_, crate::daemon::wire::ShadowReply) = self
            .call::<(), _>(Method::DELETE, &["v1", "policy", "shadow"], &[], None)
            .await?;
        Ok(reply.shadow)
    }

    /// Makes the shadow the live policy.
    pub async fn promote(&self) -> Result<crate::daemon::wire::PromoteReply, ClientError> {
        let (_, reply): (_, crate::daemon::wire::PromoteReply) = self
            .call::<(), _>(Method::POST, &["v1", "policy", "promote"], &[], None)
            .await?;
        Ok(reply)
    }

    /// Every node's health and breaker, live.
    pub async fn nodes(&self) -> Result<Vec<crate::health::NodeStatus>, ClientError> {
        let (_, reply): (_, crate::daemon::wire::NodesReply) = self
            .call::<(), _>(Method::GET, &["v1", "nodes"], &[], None)
            .await?;
        Ok(reply.nodes)
    }

    /// The OpenMetrics text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self
            .send::<()>(Method::GET, &["metrics"], &[], None)
            .await?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(api_error(status, &text))
        }
    }

    async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<(StatusCode, T), ClientError> {
        let response = self.send(method, segments, query, body).await?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(api_error(status, &String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes)
            .map(|value| (status, value))
            .map_err(|e| ClientError::Protocol(format!("{e} in {}", snippet(&bytes))))
    }

    async fn send<B: serde::Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, self.url(segments, query)?);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            let json =
                serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        request.send().await.map_err(|e| self.unreachable(e))
    }

    /// Every path segment and query value percent-encoded (a job id may hold anything).
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<reqwest::Url, ClientError> {
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|e| ClientError::Protocol(format!("{}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|()| ClientError::Protocol(format!("{}: not a base URL", self.base)))?
            .clear()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            message: chain(&e),
        }
    }
}

fn api_error(status: StatusCode, body: &str) -> ClientError {
    let message = serde_json::from_str::<ErrorReply>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body.trim().to_string());
    let message = if message.is_empty() {
        "the daemon gave no reason".to_string()
    } else {
        message
    };
    ClientError::Api { status, message }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_percent_encoded() {
        let client = DaemonClient::tcp("127.0.0.1:1", None).expect("client");
        let url = client.url(&["v1", "jobs", "enc/1 a"], &[]).expect("url");
        assert_eq!(url.path(), "/v1/jobs/enc%2F1%20a");
        let url = client
            .url(
                &["v1", "jobs"],
                &[("limit", "5"), ("state", "local-fallback")],
            )
            .expect("url");
        assert_eq!(url.query(), Some("limit=5&state=local-fallback"));
    }

    #[test]
    fn error_bodies_become_typed_errors() {
        let e = api_error(StatusCode::NOT_FOUND, r#"{"error":"no job or CID 'x'"}"#);
        assert!(e.is_bad_request());
        assert_eq!(e.to_string(), "no job or CID 'x' (404 Not Found)");
        let e = api_error(StatusCode::BAD_GATEWAY, "");
        assert!(!e.is_bad_request());
        assert!(e.to_string().contains("no reason"));
    }
}
