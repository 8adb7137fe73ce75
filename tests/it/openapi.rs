//! The OpenAPI document (`host/openapi.json`) against the daemon that serves it.
//!
//! One `pinwarden serve` process, on its Unix socket and a TCP listener with a bearer token,
//! with a single node that accepts connections and never answers (a listener nobody accepts
//! from): rounds stall, so every status of the API can be provoked without IPFS, the slow ones
//! (504, 503) deterministically. The test checks that
//!
//! 1. `GET /v1/openapi.json` serves the repository's file byte for byte;
//! 2. the document lists exactly the served methods of its paths: each documented method is
//!    routed (not axum's empty 404 or 405), every other one is 405 with an `Allow` header naming
//!    exactly the documented ones (HEAD comes with GET), and paths around them are 404;
//! 3. every answer provoked here has a documented status, content type and schema (the checker
//!    below, strict: a property the schema does not list is an error), and the requests sent
//!    agree with the request schemas (accepted ones validate, structurally refused ones do not);
//! 4. every documented status is provoked here, or listed in [`NOT_PROVOKED`] with the reason,
//!    so a status added to the document without a way to see it fails.
//!
//! Generated requests are schemathesis's job (`tests/it/fuzz.rs`). This test keeps what a
//! fuzzer cannot reach: the slow statuses (409, 413, 503, 504), the framework's own refusals,
//! every method on every path, and the document served byte for byte.

use crate::support::daemon::{Daemon, Serve};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The document as shipped (and as the daemon embeds it).
const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

const TOKEN: &str = "openapi-test-token-0123456789";

/// Methods probed on every documented path.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

/// Documented statuses this test cannot provoke, each with the reason. Every other documented
/// status must be provoked below; an entry here must be documented and must not be provoked.
const NOT_PROVOKED: &[(&str, u16, &str)] = &[
    (
        "submitPin",
        500,
        "the queue database failing (SQLite I/O error, the group-commit writer gone): not \
         reachable from outside the process",
    ),
    ("listJobs", 500, "the queue database failing"),
    ("getJob", 500, "the queue database failing"),
    ("cancelJob", 500, "the queue database failing"),
    (
        "getHealth",
        500,
        "the queue database failing (the pin counts)",
    ),
    (
        "reloadPolicy",
        500,
        "the blocking reload task panicking (a JoinError), a bug by definition",
    ),
    (
        "startShadow",
        409,
        "another request stopping the shadow between its start and its first report: a race \
         this test cannot time",
    ),
    (
        "startShadow",
        500,
        "the blocking validation task panicking (a JoinError), a bug by definition",
    ),
    ("stopShadow", 500, "the blocking stop task panicking"),
    ("promoteShadow", 500, "the blocking promote task panicking"),
];

/// Distinct CIDv1 (raw, sha256) that no node has: one per submission scenario.
const CIDS: [&str; 6] = [
    "bafkreid72wrgxvqw64loy6hpnqf7sqd5y4wupmhkv5jdccjza6io32dynu",
    "bafkreiesdiyikoibqhqbcib7wk3p4tfmg2t4zsw2ei7zgayftgavbgarmy",
    "bafkreicvmiduanszywzs2gnj255amhhviinlcaa7ccffmse6eltfmnggt4",
    "bafkreifi6ashbt4q3yy5b3vck5ekxfg7bn4uh2muq6hey4gqedk7aa3hdu",
    "bafkreia4qkz2dhcmocno4oopbkb7dbizhajyikzcv6d2hsobww2lkvsltu",
    "bafkreifnqq7q3mj6gvtnokvszx3ds463sdjsek3ch7jsmrbnt2uxlfeiga",
];

// ---------------------------------------------------------------------------------------------
// The daemon and HTTP.

/// `pinwarden serve` on `dir`'s config, its socket and a TCP listener on `port` with [`TOKEN`].
async fn start(dir: &Path, port: u16) -> Daemon {
    Serve::config(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PINWARDEN_TOKEN", TOKEN)
        .start()
        .await
}

/// SIGTERM; fails with the log unless the daemon exits within 10 s.
async fn terminate(daemon: &mut Daemon) {
    daemon.signal("-TERM");
    daemon.wait_for_exit(Duration::from_secs(10)).await;
}

/// One answer, as the checks read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    allow: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The router's own "no such route" answer (a routed 404 names the job instead).
    fn unrouted(&self) -> bool {
        self.status == 405 || (self.status == 404 && self.no_route())
    }

    /// The fallback's 404: `{"error": "no route METHOD PATH: ..."}`.
    fn no_route(&self) -> bool {
        self.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no route "))
    }
}

/// A request body: none, JSON (with its content type), or raw bytes with an optional type.
enum Body {
    None,
    Json(Value),
    Raw(Option<&'static str>, Vec<u8>),
}

/// The daemon over one listener.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn unix(socket: &Path) -> Api {
        Api {
            http: reqwest::Client::builder()
                .unix_socket(socket)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            base: "http://pinwarden".into(),
        }
    }

    fn tcp(port: u16) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Body) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req
                .header("content-type", "application/json")
                .body(v.to_string()),
            Body::Raw(Some(ct), bytes) => req.header("content-type", ct).body(bytes),
            Body::Raw(None, bytes) => req.body(bytes),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (content_type, allow) = (header("content-type"), header("allow"));
        let status = resp.status().as_u16();
        let body = resp.bytes().await.expect("body").to_vec();
        Reply {
            status,
            content_type,
            allow,
            body,
        }
    }
}

/// `POST path` with a body over the 2 MiB limit, over a raw connection to the socket: the
/// daemon answers before reading it all and closes, which can fail an HTTP client still
/// writing it; here the writing may fail, the answer is read anyway.
async fn oversized(socket: &Path, path: &str, body: Vec<u8>) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: pinwarden\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(&body).await;
        write
    });
    // Read until the daemon closes. Closing with the rest of the body unread resets the
    // connection (ECONNRESET) once what it sent has been read: an answer read whole is enough.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.read(&mut chunk)).await {
            Err(_) => panic!("POST {path}: no answer within 30 s"),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if raw.windows(4).any(|w| w == b"\r\n\r\n") => {
                eprintln!("POST {path}: {e} after the answer");
                break;
            }
            Ok(Err(e)) => panic!("POST {path}: {e}"),
        }
    }
    writer.abort();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("POST {path}: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("POST {path}: {head}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.truncate(len);
    }
    Reply {
        status,
        content_type: header("content-type"),
        allow: header("allow"),
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// The document and the schema checker.

/// Schema keywords the checker enforces.
const ENFORCED: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "items",
    "minimum",
    "maximum",
    "minLength",
];

/// Schema keywords that only annotate.
const ANNOTATIONS: &[&str] = &["description", "default", "format", "examples", "title"];

/// HTTP methods as OpenAPI path items spell them.
const OPERATION_KEYS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

struct Doc {
    root: Value,
    /// (operationId, status) answered so far.
    seen: BTreeSet<(String, u16)>,
}

impl Doc {
    fn load() -> Doc {
        let text = std::fs::read_to_string(DOC_PATH).expect("host/openapi.json");
        Doc {
            root: serde_json::from_str(&text).expect("host/openapi.json is JSON"),
            seen: BTreeSet::new(),
        }
    }

    /// `#/a/b` in the document.
    fn pointer(&self, reference: &str) -> &Value {
        reference
            .strip_prefix('#')
            .and_then(|p| self.root.pointer(p))
            .unwrap_or_else(|| panic!("$ref {reference} does not resolve"))
    }

    /// `v`, or what its `$ref` (chain) points at.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => v = self.pointer(r),
                None => return v,
            }
        }
        panic!("$ref chain too long at {v}");
    }

    /// Every (path, METHOD, operationId) of the document.
    fn operations(&self) -> Vec<(String, String, String)> {
        let mut ops = Vec::new();
        for (path, item) in self.root["paths"].as_object().expect("paths") {
            for (key, op) in item.as_object().expect("path item") {
                if OPERATION_KEYS.contains(&key.as_str()) {
                    let id = op["operationId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{key} {path}: no operationId"));
                    ops.push((path.clone(), key.to_ascii_uppercase(), id.to_string()));
                }
            }
        }
        ops
    }

    fn operation(&self, id: &str) -> &Value {
        for item in self.root["paths"].as_object().expect("paths").values() {
            for (key, op) in item.as_object().expect("path item") {
                if OPERATION_KEYS.contains(&key.as_str()) && op["operationId"] == id {
                    return op;
                }
            }
        }
        panic!("no operation {id} in the document");
    }

    /// The documented statuses of an operation.
    fn statuses(&self, id: &str) -> Vec<u16> {
        self.operation(id)["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .map(|k| {
                k.parse()
                    .unwrap_or_else(|_| panic!("{id}: response key {k} is not a status"))
            })
            .collect()
    }

    /// Checks `reply` against what operation `id` documents for its status, and records it.
    fn check(&mut self, id: &str, reply: &Reply) {
        let op = self.operation(id);
        let response = op["responses"]
            .get(reply.status.to_string())
            .map(|r| self.resolve(r))
            .unwrap_or_else(|| {
                panic!(
                    "{id} answered {}, which the document does not list: {}",
                    reply.status,
                    reply.text()
                )
            });
        match response.get("content").and_then(Value::as_object) {
            None => assert!(
                reply.body.is_empty(),
                "{id} {}: no content documented, got {}",
                reply.status,
                reply.text()
            ),
            Some(content) => {
                let actual = reply
                    .content_type
                    .as_deref()
                    .unwrap_or_else(|| panic!("{id} {}: no Content-Type", reply.status));
                let (media, entry) = content
                    .iter()
                    .find(|(media, _)| media_matches(media, actual))
                    .unwrap_or_else(|| {
                        panic!(
                            "{id} {}: Content-Type {actual} is not documented ({:?})",
                            reply.status,
                            content.keys().collect::<Vec<_>>()
                        )
                    });
                let value = if essence(media) == "application/json" {
                    serde_json::from_slice(&reply.body).unwrap_or_else(|e| {
                        panic!("{id} {}: not JSON ({e}): {}", reply.status, reply.text())
                    })
                } else {
                    Value::String(
                        String::from_utf8(reply.body.clone())
                            .unwrap_or_else(|_| panic!("{id} {}: not UTF-8", reply.status)),
                    )
                };
                let errors = self.validate(&entry["schema"], &value, true);
                assert!(
                    errors.is_empty(),
                    "{id} {}: the body does not match the documented schema:\n  {}\nbody: {}",
                    reply.status,
                    errors.join("\n  "),
                    reply.text()
                );
            }
        }
        self.seen.insert((id.to_string(), reply.status));
    }

    /// Checks a request body against operation `id`'s request schema: `valid` says whether it
    /// must validate (an accepted request) or must not (one refused for its structure).
    fn request(&self, id: &str, body: &Value, valid: bool) {
        let schema = &self.resolve(&self.operation(id)["requestBody"])["content"]["application/json"]
            ["schema"];
        let errors = self.validate(schema, body, false);
        assert_eq!(
            errors.is_empty(),
            valid,
            "{id}: request {body} {} the documented schema: {errors:?}",
            if valid {
                "must match"
            } else {
                "must not match"
            }
        );
    }

    /// `strict` (answers): a property the schema's `properties` does not list is an error even
    /// where `additionalProperties` is absent, so a field the daemon adds must be documented.
    /// Requests are checked as JSON Schema says (only `additionalProperties: false` refuses
    /// one), so the document's `additionalProperties: false` must match serde's
    /// `deny_unknown_fields`.
    fn validate(&self, schema: &Value, value: &Value, strict: bool) -> Vec<String> {
        let mut errors = Vec::new();
        self.validate_at(schema, value, "$", strict, &mut errors);
        errors
    }

    /// The subset of JSON Schema the document uses ([`ENFORCED`]); any other keyword is an
    /// error, so the document cannot use one this test would silently ignore. `strict`: see
    /// [`Doc::validate`] (an object schema without `properties` stays free-form).
    fn validate_at(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        strict: bool,
        errors: &mut Vec<String>,
    ) {
        let Some(s) = schema.as_object() else {
            errors.push(format!("{at}: the schema is not an object: {schema}"));
            return;
        };
        for key in s.keys() {
            if !ENFORCED.contains(&key.as_str()) && !ANNOTATIONS.contains(&key.as_str()) {
                errors.push(format!(
                    "{at}: schema keyword `{key}` is unknown to the checker"
                ));
            }
        }
        if let Some(reference) = s.get("$ref").and_then(Value::as_str) {
            self.validate_at(self.pointer(reference), value, at, strict, errors);
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{at}: {value} is not of type {t}"));
                return;
            }
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {options:?}"));
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errors.push(format!("{at}: {value} < minimum {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errors.push(format!("{at}: {value} > maximum {max}"));
            }
        }
        if let (Some(text), Some(min)) =
            (value.as_str(), s.get("minLength").and_then(Value::as_u64))
            && (text.chars().count() as u64) < min
        {
            errors.push(format!("{at}: {value} is shorter than {min}"));
        }
        if let Some(object) = value.as_object() {
            let properties = s.get("properties").and_then(Value::as_object);
            for name in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    errors.push(format!("{at}: required property `{name}` is missing"));
                }
            }
            for (name, v) in object {
                let here = format!("{at}.{name}");
                match (
                    properties.and_then(|p| p.get(name)),
                    s.get("additionalProperties"),
                ) {
                    (Some(p), _) => self.validate_at(p, v, &here, strict, errors),
                    (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{here}: not allowed (additionalProperties: false)"));
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(extra)) => self.validate_at(extra, v, &here, strict, errors),
                    (None, None) if strict && properties.is_some() => {
                        errors.push(format!("{here}: a property the document does not list"));
                    }
                    (None, None) => {}
                }
            }
        }
        if let (Some(items), Some(schema)) = (value.as_array(), s.get("items")) {
            for (i, item) in items.iter().enumerate() {
                self.validate_at(schema, item, &format!("{at}[{i}]"), strict, errors);
            }
        }
    }

    /// Every `$ref` of the document resolves.
    fn check_refs(&self) {
        fn walk(doc: &Doc, v: &Value, count: &mut usize) {
            match v {
                Value::Object(map) => {
                    if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                        doc.pointer(r);
                        *count += 1;
                    }
                    map.values().for_each(|x| walk(doc, x, count));
                }
                Value::Array(items) => items.iter().for_each(|x| walk(doc, x, count)),
                _ => {}
            }
        }
        let mut count = 0;
        walk(self, &self.root, &mut count);
        assert!(count > 10, "{count} $refs");
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        other => panic!("unknown type {other} in the document"),
    }
}

/// A media type without its parameters, lower case.
fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A documented media type with parameters must be the header exactly; one without, its essence.
fn media_matches(documented: &str, actual: &str) -> bool {
    if documented.contains(';') {
        documented.eq_ignore_ascii_case(actual.trim())
    } else {
        essence(documented) == essence(actual)
    }
}

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{key}", "no-such-job")
}

// ---------------------------------------------------------------------------------------------
// The test.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_the_served_api() {
    let t0 = Instant::now();
    pinwarden::install_crypto_provider();
    let mut doc = Doc::load();
    assert_eq!(doc.root["openapi"], "3.1.0");
    assert_eq!(doc.root["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc.root["security"], json!([{}, { "bearerAuth": [] }]));
    let bearer_scheme = &doc.root["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(
        (&bearer_scheme["type"], &bearer_scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    doc.check_refs();

    // A node that accepts connections and never answers: every pin/add stalls until
    // stall_timeout_ms, so a round lasts 3 s. The breaker never opens (a round must not end
    // early because earlier ones failed), and lazy pins are not retried during the test.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("black hole");
    let node_addr = black_hole.local_addr().expect("addr");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://{node_addr}");
    crate::support::config::write(
        dir.path(),
        &[("primary", "primary", &url)],
        &format!(
            r#"[policy]
name = "tank-mode"
params = {{ attempts = 1, pin_timeout_ms = 6000, stall_timeout_ms = 3000, breaker_failures = 0 }}

[daemon]
retry_base_ms = 600000
retry_max_ms = 600000
watch_ms = 0
policy_dir = "{}"
"#,
            dir.path().join("policies").display()
        ),
    );
    std::fs::create_dir_all(dir.path().join("policies")).expect("policy dir");
    let mut daemon = start(dir.path(), port).await;
    let socket = dir.path().join("pinwarden.sock");
    let api = Api::unix(&socket);
    let tcp = Api::tcp(port);

    // 1. The served document is the file.
    let r = api.call("GET", "/v1/openapi.json", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.body == std::fs::read(DOC_PATH).expect("doc"),
        "GET /v1/openapi.json differs from host/openapi.json"
    );
    doc.check("getOpenApi", &r);

    // 2. Exactly the documented methods are routed on each documented path.
    let operations = doc.operations();
    let paths: BTreeSet<String> = operations.iter().map(|(p, _, _)| p.clone()).collect();
    for path in &paths {
        let mut documented: BTreeSet<String> = operations
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, m, _)| m.clone())
            .collect();
        if documented.contains("GET") {
            // axum answers HEAD with every GET route.
            documented.insert("HEAD".into());
        }
        let url = concrete(path);
        let get = api.call("GET", &url, Body::None).await;
        for method in METHODS {
            // A body that no route accepts, so a probe never changes anything.
            let body = match method {
                "POST" | "PUT" | "PATCH" => {
                    Body::Raw(Some("application/json"), b"not json".to_vec())
                }
                _ => Body::None,
            };
            let r = api.call(method, &url, body).await;
            if method == "HEAD" && documented.contains(method) {
                // No body to tell a routed 404 by: HEAD answers as the (routed) GET does.
                assert_eq!(
                    (r.status, &r.content_type),
                    (get.status, &get.content_type),
                    "HEAD {path} answers as GET"
                );
            } else if documented.contains(method) {
                assert!(
                    !r.unrouted(),
                    "{method} {path} is documented but not routed: {r:?}"
                );
                let id = &operations
                    .iter()
                    .find(|(p, m, _)| p == path && m == method)
                    .expect("operation")
                    .2;
                doc.check(id, &r);
            } else {
                assert_eq!(r.status, 405, "{method} {path} is not documented: {r:?}");
                if method != "HEAD" {
                    let error = r.json()["error"].as_str().map(str::to_string);
                    assert!(
                        error.is_some_and(|e| e.contains("not served on")),
                        "{method} {path}: {}",
                        r.text()
                    );
                }
                let allowed: BTreeSet<String> = r
                    .allow
                    .as_deref()
                    .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"))
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .collect();
                assert_eq!(
                    allowed, documented,
                    "{path}: served methods (Allow) vs documented"
                );
            }
        }
    }
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v1/pins/x",
        "/v1/jobs/a/b",
        "/v1/policy",
        "/v1/openapi",
        "/metrics/x",
        "/openapi.json",
    ] {
        assert!(!paths.contains(path), "{path}");
        for method in ["GET", "POST", "DELETE"] {
            let r = api.call(method, path, Body::None).await;
            assert!(
                r.status == 404 && r.no_route(),
                "{method} {path} is not documented, yet routed: {r:?}"
            );
        }
    }
    crate::support::nodes::step(t0, "routes");

    // 3. Each operation's statuses.
    let pin = |cid: &str, job: &str| json!({ "cid": cid, "job_id": job });

    // submitPin: refused requests (400), lazy (202), conflict (409), wait (504, 200).
    let refused = [
        (json!({ "job_id": "a" }), false, "cid"),
        (json!({ "cid": CIDS[0] }), false, "job_id"),
        (
            json!({ "cid": CIDS[0], "job_id": "a", "colour": 1 }),
            false,
            "colour",
        ),
        (
            json!({ "cid": CIDS[0], "job_id": "a", "wait": "yes" }),
            false,
            "wait",
        ),
        (json!({ "cid": CIDS[0], "job_id": "" }), false, "job_id"),
        (json!({ "cid": "nope", "job_id": "a" }), true, "invalid CID"),
        (json!({ "cid": CIDS[0], "job_id": "   " }), true, "job_id"),
        (
            json!({ "cid": CIDS[0], "job_id": "j".repeat(257) }),
            true,
            "job_id",
        ),
    ];
    for (body, schema_valid, needle) in refused {
        doc.request("submitPin", &body, schema_valid);
        let r = api.call("POST", "/v1/pins", Body::Json(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{body}: {}",
            r.text()
        );
        doc.check("submitPin", &r);
    }
    let valid = pin(CIDS[0], "lazy-a").to_string().into_bytes();
    let too_big = format!(
        "{{\"cid\":\"{}\",\"job_id\":\"{}\"}}",
        CIDS[0],
        "j".repeat(3 << 20)
    )
    .into_bytes();
    for body in [
        Body::Raw(None, valid.clone()),
        Body::Raw(Some("text/plain"), valid),
        Body::Raw(Some("application/json"), b"{\"cid\":".to_vec()),
        Body::None,
    ] {
        let r = api.call("POST", "/v1/pins", body).await;
        assert_eq!(r.status, 400, "{}", r.text());
        doc.check("submitPin", &r);
    }
    let r = oversized(&socket, "/v1/pins", too_big).await;
    assert_eq!(r.status, 400, "{}", r.text());
    doc.check("submitPin", &r);

    let lazy = json!({ "cid": CIDS[0], "job_id": "lazy-a", "size_bytes": 4096 });
    doc.request("submitPin", &lazy, true);
    let r = api.call("POST", "/v1/pins", Body::Json(lazy)).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["job"]["job_ids"], json!(["lazy-a"]));
    doc.check("submitPin", &r);
    let r = api
        .call("POST", "/v1/pins", Body::Json(pin(CIDS[1], "lazy-a")))
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    doc.check("submitPin", &r);

    let timed =
        json!({ "cid": CIDS[2], "job_id": "wait-timeout", "wait": true, "timeout_ms": 200 });
    doc.request("submitPin", &timed, true);
    let r = api.call("POST", "/v1/pins", Body::Json(timed)).await;
    assert_eq!(r.status, 504, "{}", r.text());
    doc.check("submitPin", &r);
    let waited = json!({ "cid": CIDS[3], "job_id": "wait-end", "wait": true });
    doc.request("submitPin", &waited, true);
    let r = api.call("POST", "/v1/pins", Body::Json(waited)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["job"]["state"], "failed", "{}", r.text());
    doc.check("submitPin", &r);
    crate::support::nodes::step(t0, "submit");

    // listJobs
    for query in [
        "",
        "?state=queued",
        "?state=local-fallback&limit=1",
        "?limit=0",
        "?limit=20000",
    ] {
        let r = api
            .call("GET", &format!("/v1/jobs{query}"), Body::None)
            .await;
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        doc.check("listJobs", &r);
    }
    let r = api.call("GET", "/v1/jobs?state=failed", Body::None).await;
    assert!(
        r.json()["jobs"].as_array().is_some_and(|j| !j.is_empty()),
        "{}",
        r.text()
    );
    for query in ["?state=lost", "?limit=abc", "?limit=-1", "?colour=blue"] {
        let r = api
            .call("GET", &format!("/v1/jobs{query}"), Body::None)
            .await;
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        doc.check("listJobs", &r);
    }

    // getJob: by job id, by CID, unknown (404), a key that is not UTF-8 (axum's 400).
    for key in ["lazy-a", CIDS[0], "wait-end"] {
        let r = api
            .call("GET", &format!("/v1/jobs/{key}"), Body::None)
            .await;
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        doc.check("getJob", &r);
    }
    let r = api.call("GET", "/v1/jobs/no-such-job", Body::None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    doc.check("getJob", &r);
    let r = api.call("GET", "/v1/jobs/%FF", Body::None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    doc.check("getJob", &r);

    // cancelJob: unknown (404), the lazy job (200, its pin ends failed), again (409).
    let r = api.call("DELETE", "/v1/jobs/no-such-job", Body::None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    doc.check("cancelJob", &r);
    let r = api.call("DELETE", "/v1/jobs/lazy-a", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["job"]["state"], "failed", "{}", r.text());
    doc.check("cancelJob", &r);
    let r = api.call("DELETE", "/v1/jobs/lazy-a", Body::None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    doc.check("cancelJob", &r);
    let r = api.call("DELETE", "/v1/jobs/%FF", Body::None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    doc.check("cancelJob", &r);

    // getHealth, listNodes, getMetrics
    let r = api.call("GET", "/v1/health", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["node_name"], "encoder-node-1");
    doc.check("getHealth", &r);
    let r = api.call("GET", "/v1/nodes", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["nodes"][0]["name"], "primary", "{}", r.text());
    doc.check("listNodes", &r);
    let r = api.call("GET", "/metrics", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("pinwarden_queue_depth") && r.text().ends_with("# EOF\n"));
    doc.check("getMetrics", &r);

    // reloadPolicy: the configured policy again (200), refused swaps (422), bad bodies (400),
    // a body over axum's 2 MiB limit (413).
    let r = api.call("POST", "/v1/policy/reload", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["policy"]["name"], "tank-mode");
    doc.check("reloadPolicy", &r);
    for (body, status) in [
        (json!({}), 200),
        (json!({ "policy": "tank-mode" }), 200),
        (json!({ "policy": "no-such-policy" }), 422),
        (
            json!({ "policy": "single-backup", "params": { "quorum": 2 } }),
            422,
        ),
    ] {
        doc.request("reloadPolicy", &body, true);
        let r = api
            .call("POST", "/v1/policy/reload", Body::Json(body.clone()))
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        doc.check("reloadPolicy", &r);
    }
    for body in [
        json!({ "colour": 1 }),
        json!({ "policy": 7 }),
        json!({ "params": [1] }),
    ] {
        doc.request("reloadPolicy", &body, false);
        let r = api
            .call("POST", "/v1/policy/reload", Body::Json(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        doc.check("reloadPolicy", &r);
    }
    for body in [
        Body::Raw(Some("application/json"), b"{".to_vec()),
        Body::Raw(Some("text/plain"), b"{}".to_vec()),
    ] {
        let r = api.call("POST", "/v1/policy/reload", body).await;
        assert_eq!(r.status, 400, "{}", r.text());
        doc.check("reloadPolicy", &r);
    }
    let big = format!("{{\"policy\":\"{}\"}}", "p".repeat(3 << 20)).into_bytes();
    let r = oversized(&socket, "/v1/policy/reload", big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    doc.check("reloadPolicy", &r);
    crate::support::nodes::step(t0, "jobs, cancel, health, nodes, metrics, reload");

    // The shadow: none yet (404, 409), started (200), refused (422), bad or oversized bodies (400),
    // a candidate failing the scenarios watched but not promoted (422), one promoted (200).
    let r = api.call("GET", "/v1/policy/shadow", Body::None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    doc.check("shadowReport", &r);
    let r = api.call("DELETE", "/v1/policy/shadow", Body::None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    doc.check("stopShadow", &r);
    let r = api.call("POST", "/v1/policy/promote", Body::None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    doc.check("promoteShadow", &r);
    let hostile = dir.path().join("policies").join("hostile.wasm");
    std::fs::write(&hostile, crate::support::policies::HOSTILE).expect("hostile guest");
    let hostile = hostile.display().to_string();
    for (body, status) in [
        (json!({ "policy": "no-such-policy" }), 422),
        (
            json!({ "policy": "single-backup", "params": { "quorum": 2 } }),
            422,
        ),
        (json!({ "policy": "/etc/passwd" }), 422),
        (json!({ "policy": "single-backup" }), 200),
        (
            json!({ "policy": hostile, "params": { "mode": "loop", "after": "2" } }),
            200,
        ),
    ] {
        doc.request("startShadow", &body, true);
        let r = api
            .call("POST", "/v1/policy/shadow", Body::Json(body.clone()))
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        doc.check("startShadow", &r);
    }
    for body in [
        json!({ "policy": "" }),
        json!({ "colour": 1 }),
        json!({ "policy": 7 }),
        json!({}),
    ] {
        doc.request("startShadow", &body, false);
        let r = api
            .call("POST", "/v1/policy/shadow", Body::Json(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        doc.check("startShadow", &r);
    }
    let r = api
        .call(
            "POST",
            "/v1/policy/shadow",
            Body::Raw(Some("application/json"), b"{".to_vec()),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    doc.check("startShadow", &r);
    let big = format!("{{\"policy\":\"{}\"}}", "p".repeat(3 << 20)).into_bytes();
    let r = oversized(&socket, "/v1/policy/shadow", big).await;
    assert_eq!(r.status, 400, "{}", r.text());
    doc.check("startShadow", &r);
    let r = api.call("GET", "/v1/policy/shadow", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["shadow"]["check_failed"].is_string(),
        "{}",
        r.text()
    );
    doc.check("shadowReport", &r);
    let r = api.call("POST", "/v1/policy/promote", Body::None).await;
    assert_eq!(r.status, 422, "{}", r.text());
    doc.check("promoteShadow", &r);
    let r = api
        .call(
            "POST",
            "/v1/policy/shadow",
            Body::Json(json!({ "policy": "tank-mode" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api.call("POST", "/v1/policy/promote", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["policy"]["name"], "tank-mode", "{}", r.text());
    doc.check("promoteShadow", &r);
    let r = api
        .call(
            "POST",
            "/v1/policy/shadow",
            Body::Json(json!({ "policy": "single-backup" })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api.call("DELETE", "/v1/policy/shadow", Body::None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    doc.check("stopShadow", &r);
    crate::support::nodes::step(t0, "shadow, promote");

    // TCP: a foreign Host (403, before the token), no or a wrong token (401), on every
    // operation; with the token, every GET answers as on the socket.
    let host = format!("evil.example:{port}");
    let bearer = format!("Bearer {TOKEN}");
    for (path, method, id) in &operations {
        let url = concrete(path);
        let r = tcp
            .call_with(
                method,
                &url,
                Body::None,
                &[("host", host.as_str()), ("authorization", bearer.as_str())],
            )
            .await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        doc.check(id, &r);
        for auth in [
            None,
            Some("Bearer wrong-token-of-the-same-len"),
            Some(TOKEN),
        ] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
            let r = tcp.call_with(method, &url, Body::None, &headers).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.text());
            doc.check(id, &r);
        }
        if method == "GET" {
            let on_tcp = tcp
                .call_with(
                    method,
                    &url,
                    Body::None,
                    &[("authorization", bearer.as_str())],
                )
                .await;
            let on_socket = api.call(method, &url, Body::None).await;
            assert_eq!(on_tcp.status, on_socket.status, "{method} {path}");
            doc.check(id, &on_tcp);
        }
    }
    crate::support::nodes::step(t0, "TCP");

    // submitPin 503: a waiting submission is answered at once when the daemon stops.
    let stopping = json!({ "cid": CIDS[4], "job_id": "wait-stop", "wait": true });
    doc.request("submitPin", &stopping, true);
    let waiting =
        tokio::spawn(async move { api.call("POST", "/v1/pins", Body::Json(stopping)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the waiting submission answered early"
    );
    terminate(&mut daemon).await;
    let r = waiting.await.expect("the waiting submission");
    assert_eq!(r.status, 503, "{}", r.text());
    doc.check("submitPin", &r);
    drop(black_hole);

    // 4. Every documented status was seen here, or is listed with the reason it cannot be.
    let mut missing = Vec::new();
    for (_, _, id) in &operations {
        for status in doc.statuses(id) {
            let seen = doc.seen.contains(&(id.clone(), status));
            let listed = NOT_PROVOKED
                .iter()
                .find(|(o, s, _)| o == id && *s == status);
            match (seen, listed) {
                (true, Some(_)) => missing.push(format!(
                    "{id} {status} was provoked: remove it from NOT_PROVOKED"
                )),
                (false, None) => missing.push(format!(
                    "{id} documents {status}, which this test neither provokes nor lists in \
                     NOT_PROVOKED with a reason"
                )),
                (false, Some((_, _, why))) => assert!(!why.is_empty()),
                (true, None) => {}
            }
        }
    }
    for (id, status, _) in NOT_PROVOKED {
        if !doc.statuses(id).contains(status) {
            missing.push(format!(
                "NOT_PROVOKED lists {id} {status}, which is not documented"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    crate::support::nodes::step(t0, "every documented status accounted for");
}
