//! A built-in CRM for running the proxy without one: `GET /accounts/{id}` answers every id after
//! a fixed latency, counts its calls, and can be switched down (503) to show stale-if-error.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug)]
struct Shared {
    latency: Duration,
    calls: AtomicUsize,
    down: AtomicBool,
}

/// The fake CRM, serving on 127.0.0.1 until dropped.
#[derive(Debug)]
pub(crate) struct FakeCrm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeCrm {
    /// Starts the fake on a free port; every call takes `latency`.
    pub(crate) async fn start(latency: Duration) -> std::io::Result<FakeCrm> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            latency,
            calls: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/accounts/{id}", get(account))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the fake CRM stopped");
            }
        });
        Ok(FakeCrm {
            addr,
            shared,
            server,
        })
    }

    /// The base URL to give the proxy as `CRM_BASE_URL`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many account reads reached the fake.
    #[cfg_attr(not(test), allow(dead_code))] // the example's tests count and switch
    pub(crate) fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Makes every call fail with 503 (`true`) or succeed again (`false`).
    #[cfg_attr(not(test), allow(dead_code))] // the example's tests count and switch
    pub(crate) fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for FakeCrm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn account(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(shared.latency).await;
    if shared.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "the fake CRM is down").into_response();
    }
    Json(json!({
        "id": id,
        "name": format!("Account {id}"),
        "tier": "gold",
        "open_cases": id.len() % 4,
    }))
    .into_response()
}
