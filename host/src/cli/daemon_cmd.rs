//! `pinwarden serve`, and the commands that talk to it over its Unix socket:
//! `submit`, `status`, `jobs`, `policy reload`.

use super::{GlobalArgs, exit};
use crate::app::App;
use crate::config::Config;
use crate::daemon::{self, Daemon, Listeners};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Unix socket to serve on (mode 0600). Default: daemon.socket, else <data_dir>/pinwarden.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also serve on TCP, e.g. 127.0.0.1:7070. Requires a bearer token (daemon.token_env or
    /// PINWARDEN_TOKEN) unless the address is loopback.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The CID to pin.
    pub cid: String,
    /// The encoder's job id (a job id names one CID; submitting it again is idempotent).
    #[arg(long)]
    pub job_id: String,
    #[arg(long, default_value_t = 0)]
    pub size_bytes: u64,
    /// Wait for the pin to end (exit 0 pinned, 1 not). Default: queue it and return at once.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: stop waiting after this long (the pin goes on).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Unix socket of the daemon.
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// A job id or a CID.
    pub key: String,
    /// Print the JSON the daemon returned.
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub struct JobsArgs {
    /// Only jobs in this state: queued, pinning, pinned, failed, local-fallback.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

pub fn serve(global: &GlobalArgs, args: ServeArgs) -> u8 {
    let Ok(config) = super::pin_cmd::load_config(global, &[]) else {
        return exit::BAD_INPUT;
    };
    let token = match token(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let listen = Listeners {
        socket: args.socket.unwrap_or_else(|| config.socket_path()),
        tcp: args.listen.or_else(|| config.daemon.listen.clone()),
        token,
    };
    let app = match App::new(config) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    rt.block_on(async {
        let daemon = match Daemon::new(app) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e:#}");
                return exit::BAD_INPUT;
            }
        };
        match daemon::serve(daemon, listen).await {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e:#}");
                exit::BAD_INPUT
            }
        }
    })
}

fn token(config: &Config) -> Result<Option<String>, String> {
    let var = config
        .daemon
        .token_env
        .clone()
        .unwrap_or_else(|| "PINWARDEN_TOKEN".into());
    match std::env::var(&var) {
        Ok(t) if t.trim().len() >= 16 => Ok(Some(t.trim().to_string())),
        Ok(_) => Err(format!(
            "{var}: the bearer token must be at least 16 characters"
        )),
        Err(_) if config.daemon.token_env.is_some() => Err(format!(
            "daemon.token_env: environment variable {var} is not set"
        )),
        Err(_) => Ok(None),
    }
}

pub fn submit(global: &GlobalArgs, args: SubmitArgs) -> u8 {
    if let Err(e) = cid::Cid::try_from(args.cid.as_str()) {
        eprintln!("error: invalid CID '{}': {e}", args.cid);
        return exit::BAD_INPUT;
    }
    let body = json!({
        "cid": args.cid, "job_id": args.job_id, "size_bytes": args.size_bytes,
        "wait": args.wait, "timeout_ms": args.timeout_ms,
    });
    let reply = call(
        global,
        args.socket,
        reqwest::Method::POST,
        "/v1/pins",
        Some(body),
    );
    let Ok((status, v)) = reply else {
        return exit::FAILED;
    };
    if !status.is_success() {
        return report_error(status, &v);
    }
    println!("{}", v["job"]);
    match v["job"]["state"].as_str() {
        Some("pinned") => exit::OK,
        Some(_) if !args.wait => exit::OK,
        _ => exit::FAILED,
    }
}

pub fn status(global: &GlobalArgs, args: StatusArgs) -> u8 {
    let path = api_path(&["v1", "jobs", &args.key], &[]);
    let Ok((status, v)) = call(global, args.socket, reqwest::Method::GET, &path, None) else {
        return exit::FAILED;
    };
    if !status.is_success() {
        return report_error(status, &v);
    }
    let job = &v["job"];
    if args.json {
        println!("{job}");
    } else {
        println!(
            "{}  {}  jobs: {}  rounds failed: {}{}",
            job["cid"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?"),
            job["job_ids"],
            job["failed_rounds"],
            job["reason"]
                .as_str()
                .map(|r| format!("  last: {r}"))
                .unwrap_or_default()
        );
    }
    exit::OK
}

pub fn jobs(global: &GlobalArgs, args: JobsArgs) -> u8 {
    let limit = args.limit.to_string();
    let mut query = vec![("limit", limit.as_str())];
    if let Some(s) = &args.state {
        query.push(("state", s));
    }
    let path = api_path(&["v1", "jobs"], &query);
    let Ok((status, v)) = call(global, args.socket, reqwest::Method::GET, &path, None) else {
        return exit::FAILED;
    };
    if !status.is_success() {
        return report_error(status, &v);
    }
    for job in v["jobs"].as_array().into_iter().flatten() {
        println!("{job}");
    }
    exit::OK
}

pub fn reload(global: &GlobalArgs, policy: Option<String>, socket: Option<PathBuf>) -> u8 {
    let body = json!({ "policy": policy });
    let Ok((status, v)) = call(
        global,
        socket,
        reqwest::Method::POST,
        "/v1/policy/reload",
        Some(body),
    ) else {
        return exit::FAILED;
    };
    if !status.is_success() {
        return report_error(status, &v);
    }
    println!(
        "reloaded: {} ({})",
        v["policy"]["name"].as_str().unwrap_or("?"),
        v["policy"]["hash"].as_str().unwrap_or("?")
    );
    exit::OK
}

fn report_error(status: reqwest::StatusCode, v: &Value) -> u8 {
    eprintln!(
        "error: {} ({status})",
        v["error"].as_str().unwrap_or("the daemon gave no reason")
    );
    if status.is_client_error() {
        exit::BAD_INPUT
    } else {
        exit::FAILED
    }
}

/// One request to the daemon's socket; errors are printed here.
fn call(
    global: &GlobalArgs,
    socket: Option<PathBuf>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(reqwest::StatusCode, Value), ()> {
    let socket = match socket {
        Some(s) => s,
        None => match super::pin_cmd::load_config_lenient(global) {
            Some(c) => c.socket_path(),
            None => PathBuf::from("data/pinwarden.sock"),
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("error: cannot start the async runtime: {e}"))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .unix_socket(socket.clone())
            .build()
            .map_err(|e| eprintln!("error: cannot build the HTTP client: {e}"))?;
        let mut req = client.request(method, format!("http://pinwarden{path}"));
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            eprintln!(
                "error: cannot reach the daemon at {}: {e} (is `pinwarden serve` running?)",
                socket.display()
            )
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| eprintln!("error: reading the daemon's reply: {e}"))?;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": text }));
        Ok((status, value))
    })
}

/// `/v1/...?k=v` with every segment and value percent-encoded (a job id may hold anything).
fn api_path(segments: &[&str], query: &[(&str, &str)]) -> String {
    let Ok(mut url) = reqwest::Url::parse("http://pinwarden/") else {
        return "/".into();
    };
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::api_path;

    #[test]
    fn paths_and_queries_are_percent_encoded() {
        assert_eq!(
            api_path(&["v1", "jobs", "enc/1 a"], &[]),
            "/v1/jobs/enc%2F1%20a"
        );
        assert_eq!(
            api_path(
                &["v1", "jobs"],
                &[("limit", "5"), ("state", "local-fallback")]
            ),
            "/v1/jobs?limit=5&state=local-fallback"
        );
    }
}
