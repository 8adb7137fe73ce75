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
