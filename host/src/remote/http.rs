//! The HTTP side of a remote backend: JSON calls to a base URL, with credentials and a bound,
//! whose failures are already [`Outcome`]s (a refused connection is information for the policy).

use crate::Outcome;
use crate::kubo::Auth;
use crate::policy::contract::HttpError;
use reqwest::{Method, Url};
use serde_json::Value;
use std::time::Duration;

/// How much of an error body goes into a message.
const SNIPPET: usize = 300;

pub struct Http {
    base: Url,
    auth: Option<Auth>,
    client: reqwest::Client,
    call_timeout: Duration,
}

/// A 2xx reply: its status and JSON body (`Null` when empty).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Http {
    /// `base` must be an http(s) URL; a path in it (a PSA endpoint may have one) is kept.
    pub fn new(base: &str, auth: Option<Auth>, call_timeout: Duration) -> Result<Http, String> {
        let mut base =
            Url::parse(base.trim()).map_err(|e| format!("'{base}' is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("'{base}' is not an http(s) URL"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("pinwarden/", env!("CARGO_PKG_VERSION")));
        if base.scheme() == "http" {
            // As for Kubo nodes: a plain-http endpoint needs no trust store (and a host may
            // have none).
            builder = builder.tls_certs_only([]);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Http {
            base,
            auth,
            client,
            call_timeout,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `path` is relative to the base (no leading `/`); `query` pairs are URL-encoded.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, Outcome> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| Outcome::Error(format!("bad path {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .client
            .request(method, url.clone())
            .timeout(self.call_timeout);
        request = match &self.auth {
            None => request,
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
        };
        if let Some(b) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let response = request.send().await.map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| classify(&e))?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&bytes);
            return Err(Outcome::HttpError(HttpError {
                status,
                message: snippet(&text),
            }));
        }
        let body = parse(&bytes).map_err(|e| {
            Outcome::Error(format!(
                "garbage reply from {url}: {e}: {}",
                snippet(&String::from_utf8_lossy(&bytes))
            ))
        })?;
        Ok(Reply { status, body })
    }
}

/// One JSON value, `Null` for an empty body, or an array of the values of a stream of them
/// (IPFS Cluster streams lists such as `GET /peers` as one JSON object per line).
fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut values = serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match values.len() {
        0 => Value::Null,
        1 => values.remove(0),
        _ => Value::Array(values),
    })
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(SNIPPET) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_connect() {
        Outcome::Unreachable(chain(e))
    } else {
        Outcome::Error(chain(e))
    }
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

/// Is this the "it does not exist" answer?
pub fn is_not_found(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::HttpError(HttpError { status: 404, .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_one_value_a_stream_of_them_or_nothing() {
        assert_eq!(parse(b"  \n").expect("empty"), Value::Null);
        assert_eq!(parse(br#"{"a":1}"#).expect("one")["a"], 1);
        let list = parse(b"{\"id\":\"p1\"}\n{\"id\":\"p2\"}\n").expect("stream");
        assert_eq!(list.as_array().map(Vec::len), Some(2));
        assert!(parse(b"{\"a\":").is_err());
    }
}
