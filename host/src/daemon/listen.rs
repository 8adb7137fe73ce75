//! How the daemon listens: a Unix socket no one but its owner can reach (not even for a
//! moment), a cap on open connections, connections that must speak within a few seconds, and
//! a Host check on TCP (a web page cannot reach a loopback listener through DNS rebinding).

use anyhow::Context;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// A connection that has sent nothing this long after connecting is closed.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the Unix socket at `path` with `mode` (0600, or 0660 to let the daemon's group in)
/// from its first moment: it is created inside a fresh 0700 directory beside `path`,
/// restricted, then renamed into place. A stale socket is replaced; a live daemon's never is.
pub fn bind_private_socket(path: &Path, mode: u32) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use: another pinwarden daemon is running",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    let private = dir.join(format!(".pinwarden-bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("create {}", private.display()))?;
    let staged = private.join("sock");
    let bound = tokio::net::UnixListener::bind(&staged)
        .with_context(|| format!("cannot bind {}", path.display()))
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
            std::fs::rename(&staged, path)
                .with_context(|| format!("move the socket to {}", path.display()))?;
            Ok(listener)
        });
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// A listener that holds at most `permits` connections open; the next waits for one to close.
pub struct Capped<L> {
    inner: L,
    permits: Arc<Semaphore>,
    first_byte: Duration,
}

impl<L> Capped<L> {
    pub fn new(inner: L, max: usize) -> Self {
        Capped {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
            first_byte: FIRST_BYTE_TIMEOUT,
        }
    }

    /// Another first-byte timeout (tests).
    pub fn with_first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte = timeout;
        self
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for Capped<L> {
    type Io = Guarded<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring only waits.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        let (io, addr) = self.inner.accept().await;
        let io = Guarded {
            io,
            _permit: permit,
            first_byte: Some(Box::pin(tokio::time::sleep(self.first_byte))),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its place under the cap, closed if it says nothing at first.
pub struct Guarded<T> {
    io: T,
    _permit: Option<OwnedSemaphorePermit>,
    /// Until the first byte arrives.
    first_byte: Option<Pin<Box<Sleep>>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.first_byte = None;
        }
        if polled.is_pending()
            && let Some(deadline) = self.first_byte.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the first-byte timeout",
            )));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The Host names a TCP listener answers to: its own address, the loopback names on its port,
/// and those the operator allows. Anything else is refused (403) before authentication.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    pub fn for_listener(addr: std::net::SocketAddr, extra: &[String]) -> AllowedHosts {
        let port = addr.port();
        let mut hosts = vec![
            addr.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        hosts.extend(extra.iter().cloned());
        AllowedHosts(Arc::new(
            hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        ))
    }

    pub fn allows(&self, host: &str) -> bool {
        self.0.iter().any(|h| *h == host.to_ascii_lowercase())
    }
}

/// How an API words an error: each API keeps its own body (`/v1`'s `{"error": "..."}`, the
/// PSA's `Failure`) for the answers the shared layers give.
pub type RenderError = fn(StatusCode, String) -> Response;

/// Middleware: refuses a request whose Host header is not allowed, in the API's own words.
pub async fn check_host(
    hosts: AllowedHosts,
    render: RenderError,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if hosts.allows(host) {
        next.run(req).await
    } else {
        let message = format!(
            "Host '{host}' is not allowed on this listener (add it to daemon.allowed_hosts)"
        );
        render(StatusCode::FORBIDDEN, message)
    }
}

/// Binds a TCP listener for an API: capped at `max` connections, answering only to the
/// Host names `extra` and its own address allow.
pub async fn bind_tcp(
    addr: &str,
    what: &str,
    max: usize,
    extra: &[String],
) -> anyhow::Result<(Capped<tokio::net::TcpListener>, AllowedHosts)> {
    let parsed: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("{what} {addr}: expected IP:PORT"))?;
    let listener = tokio::net::TcpListener::bind(parsed)
        .await
        .with_context(|| format!("{what}: cannot listen on {addr}"))?;
    // The port the OS chose for ":0" is the one clients name in Host.
    let hosts = AllowedHosts::for_listener(listener.local_addr().unwrap_or(parsed), extra);
    Ok((Capped::new(listener, max), hosts))
}

/// Serves `router` on `listener` with the Host check, until `stopped` resolves.
pub fn spawn_tcp(
    listener: Capped<tokio::net::TcpListener>,
    hosts: AllowedHosts,
    render: RenderError,
    router: axum::Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<io::Result<()>> {
    let router = router.layer(axum::middleware::from_fn(move |req, next| {
        check_host(hosts.clone(), render, req, next)
    }));
    tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .into_future(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_the_listener_and_loopback_names_and_nothing_else() {
        let addr: std::net::SocketAddr = "127.0.0.1:7070".parse().expect("addr");
        let hosts = AllowedHosts::for_listener(addr, &["pinwarden.internal:7070".into()]);
        for ok in [
            "127.0.0.1:7070",
            "LOCALHOST:7070",
            "[::1]:7070",
            "pinwarden.internal:7070",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for no in ["evil.example:7070", "localhost:80", "", "127.0.0.1"] {
            assert!(!hosts.allows(no), "{no}");
        }
    }

    /// With room for one connection, a client that connects and says nothing holds the only
    /// place until the first-byte timeout closes it; then the waiting request is served.
    #[tokio::test]
    async fn silent_connections_are_cut_and_the_cap_holds() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let capped = Capped::new(listener, 1).with_first_byte_timeout(Duration::from_millis(300));
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(axum::serve(capped, app).into_future());
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let body = raw_get(addr).await;
        assert_eq!(body.as_deref(), Some("ok"));
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "the request waited for the silent connection's place"
        );
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("the silent connection was closed");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        server.abort();
    }

    /// A minimal HTTP/1.1 GET over a raw socket (no client library in the host's dependencies
    /// for tests of this module).
    async fn raw_get(addr: std::net::SocketAddr) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut reply))
            .await
            .ok()?
            .ok()?;
        reply.split("\r\n\r\n").nth(1).map(str::to_string)
    }

    #[tokio::test]
    async fn the_socket_is_private_from_its_first_moment() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pinwarden.sock");
        let _listener = bind_private_socket(&path, 0o600).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing left behind but the socket.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, ["pinwarden.sock"]);
        // A live socket is never replaced.
        assert!(bind_private_socket(&path, 0o600).is_err());
    }

    #[tokio::test]
    async fn group_access_is_0660_and_nothing_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pinwarden.sock");
        let _listener = bind_private_socket(&path, 0o660).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
        let mut config = crate::config::DaemonConfig::default();
        assert_eq!(config.socket_mode_bits(), Some(0o600));
        config.socket_mode = "0666".into();
        assert_eq!(config.socket_mode_bits(), None);
    }
}
