//! A webhook receiver for alert tests.

/// An HTTP endpoint on loopback that receives alert webhooks: its address, the JSON bodies
/// it receives, and the server task (abort it when done).
pub async fn webhook_receiver() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<serde_json::Value>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<serde_json::Value>(8);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook receiver");
    let addr = listener.local_addr().expect("webhook address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx, server)
}

/// How a [`Receiver`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Ok,
    /// 500 to the first delivery of each event id, 200 to its repeats.
    FailFirst,
    /// 500 to everything.
    Http500,
    /// Reads the request, then never answers.
    Hang,
}

/// One request a [`Receiver`] got: the raw body and the headers that sign it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: bytes::Bytes,
    pub signature: Option<String>,
    pub event_id: Option<String>,
    /// What the receiver answered (0: nothing, it hung).
    pub status: u16,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the event body is JSON")
    }
}

#[derive(Default)]
struct Log {
    deliveries: Vec<Delivery>,
}

/// A real HTTP receiver of pinwarden's completion webhooks on a fixed loopback port: it can be
/// taken down (nothing listens: connection refused) and brought up again on the same port,
/// and told how to answer. Everything it received is kept, in order.
pub struct Receiver {
    addr: std::net::SocketAddr,
    answer: std::sync::Arc<std::sync::Mutex<Answer>>,
    log: std::sync::Arc<std::sync::Mutex<Log>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Listening, answering 200.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("receiver address");
        let mut r = Receiver {
            addr,
            answer: std::sync::Arc::new(std::sync::Mutex::new(Answer::Ok)),
            log: std::sync::Arc::default(),
            server: None,
        };
        r.serve(listener);
        r
    }

    /// `http://127.0.0.1:PORT/hooks/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/hooks/{path}", self.addr)
    }

    /// The host:port entry for `notify.allowed_hosts`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn set_answer(&self, answer: Answer) {
        if let Ok(mut a) = self.answer.lock() {
            *a = answer;
        }
    }

    /// Stops listening and drops open connections.
    pub fn down(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        self.down();
        // The aborted server's listener closes as its task is dropped: retry the bind briefly.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind the webhook receiver on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log
            .lock()
            .map(|l| l.deliveries.clone())
            .unwrap_or_default()
    }

    /// Deliveries answered 2xx, by event id (the receiver's de-duplication).
    pub fn delivered(&self) -> std::collections::BTreeMap<String, Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.status))
            .filter_map(|d| d.event_id.clone().map(|id| (id, d)))
            .collect()
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (answer, log) = (self.answer.clone(), self.log.clone());
        let app = axum::Router::new().route(
            "/hooks/{*path}",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let (answer, log) = (answer.clone(), log.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let event_id = header("pinwarden-event-id");
                    let mode = answer.lock().map(|a| *a).unwrap_or(Answer::Ok);
                    let status = match mode {
                        Answer::Ok => 200,
                        Answer::Http500 => 500,
                        Answer::Hang => 0,
                        Answer::FailFirst => {
                            let seen = log
                                .lock()
                                .is_ok_and(|l| l.deliveries.iter().any(|d| d.event_id == event_id));
                            if seen { 200 } else { 500 }
                        }
                    };
                    if let Ok(mut l) = log.lock() {
                        l.deliveries.push(Delivery {
                            body,
                            signature: header("pinwarden-signature"),
                            event_id,
                            status,
                        });
                    }
                    if status == 0 {
                        std::future::pending::<()>().await;
                    }
                    // No keep-alive: once `down`, nothing may still reach this server.
                    (
                        [(axum::http::header::CONNECTION, "close")],
                        axum::http::StatusCode::from_u16(status)
                            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                    )
                }
            }),
        );
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}
