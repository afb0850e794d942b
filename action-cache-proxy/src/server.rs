//! The assembled service: one `axum` route per configured route, the purge webhook,
//! `/healthz`, `/readyz` and `/metrics`, request logging, and graceful shutdown.

use crate::access_log::{AccessLog, Line};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::purge::Webhook;
use crate::read::RouteHandler;
use crate::stored::plain_error;
use crate::upstream::Upstream;
use action_cache::store::{MemoryStore, RedisStore, Store};
use action_cache::{Cache, Clock, SystemClock};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Why the proxy could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The cache could not be configured (an unparsable Redis URL, for instance).
    #[error("redis: {0}")]
    Cache(String),
    /// An upstream's HTTP client could not be built.
    #[error("{0}")]
    Upstream(String),
}

/// Builds a [`Proxy`]; tests inject the cache and its clock.
#[derive(Debug)]
pub struct ProxyBuilder {
    config: Config,
    cache: Option<Cache>,
    clock: Arc<dyn Clock>,
    guard: Option<Arc<dyn Store>>,
    access_log: AccessLog,
}

impl ProxyBuilder {
    /// Where request log lines go (default [`AccessLog::Tracing`]; the binary writes them to
    /// standard output directly). `[server] access_log = false` turns them off either way.
    pub fn access_log(mut self, access_log: AccessLog) -> Self {
        self.access_log = access_log;
        self
    }

    /// Uses `cache` instead of the one `[redis]` describes. Give its clock to
    /// [`ProxyBuilder::clock`] too, so ages and windows agree.
    pub fn cache(mut self, cache: Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The clock the cache uses (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where the webhook replay guard lives (default: the `[redis]` URL, or memory).
    pub fn replay_guard(mut self, store: Arc<dyn Store>) -> Self {
        self.guard = Some(store);
        self
    }

    /// Builds the service. Nothing connects yet: with Redis down it serves fail-open.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when the cache or an upstream client cannot be built.
    pub fn build(self) -> Result<Proxy, BuildError> {
        let config = self.config;
        let redis_url = config.redis.url.as_ref().map(|u| u.expose().to_owned());
        let cache = match self.cache {
            Some(c) => c,
            None => {
                let mut b = Cache::builder().clock(self.clock.clone());
                if let Some(url) = &redis_url {
                    b = b.redis_url(url);
                    if let Some(n) = config.redis.near_cache {
                        b = b.near_cache(n);
                    }
                }
                if let Some(p) = &config.redis.prefix {
                    b = b.prefix(p);
                }
                if let Some(t) = config.redis.op_timeout {
                    b = b.op_timeout(t);
                }
                b.build().map_err(|e| BuildError::Cache(e.to_string()))?
            }
        };
        let guard: Arc<dyn Store> = match (self.guard, &redis_url) {
            (Some(g), _) => g,
            (None, Some(url)) => Arc::new(
                RedisStore::open(url)
                    .map_err(|_| BuildError::Cache("invalid Redis URL".to_owned()))?,
            ),
            (None, None) => Arc::new(MemoryStore::with_clock(100_000, self.clock.clone())),
        };
        let metrics = Metrics::new(&cache);
        let mut upstreams = BTreeMap::new();
        for (name, up) in &config.upstreams {
            upstreams.insert(
                name.clone(),
                Upstream::new(up.clone()).map_err(BuildError::Upstream)?,
            );
        }
        let routes: Vec<Arc<RouteHandler>> = config
            .routes
            .iter()
            .map(|r| {
                Arc::new(RouteHandler::new(
                    r.clone(),
                    upstreams[&r.upstream].clone(),
                    cache.clone(),
                    self.clock.clone(),
                    metrics.clone(),
                    config.server.max_param_bytes,
                ))
            })
            .collect();
        let webhook = config.webhook.clone().map(|w| Webhook {
            config: w,
            guard,
            guard_prefix: cache.prefix().to_owned(),
            clock: self.clock.clone(),
            routes: routes.clone(),
            cache: cache.clone(),
            metrics: metrics.clone(),
        });
        Ok(Proxy {
            inner: Arc::new(Inner {
                config,
                cache,
                routes,
                webhook,
                metrics,
                upstreams,
                access_log: self.access_log,
            }),
        })
    }
}

/// The caching proxy. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    cache: Cache,
    routes: Vec<Arc<RouteHandler>>,
    webhook: Option<Webhook>,
    metrics: Metrics,
    upstreams: BTreeMap<String, Upstream>,
    access_log: AccessLog,
}

impl Proxy {
    /// Starts building the proxy for a validated `config`.
    pub fn builder(config: Config) -> ProxyBuilder {
        ProxyBuilder {
            config,
            cache: None,
            clock: Arc::new(SystemClock),
            guard: None,
            access_log: AccessLog::default(),
        }
    }

    /// The configuration it serves.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The cache it reads through.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// The metrics text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// The `axum` router.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for handler in &self.inner.routes {
            let h = handler.clone();
            router = router.route(
                handler.route.path.as_str(),
                // The whole request, so that its headers and URI are read in place, not cloned.
                get(move |request: Request| {
                    let h = h.clone();
                    async move {
                        let (mut parts, _body) = request.into_parts();
                        let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await
                        else {
                            return plain_error(
                                StatusCode::BAD_REQUEST,
                                "unreadable path parameters",
                            );
                        };
                        let raw: Vec<(&str, &str)> = params.iter().collect();
                        h.serve(&raw, parts.uri.query(), &parts.headers).await
                    }
                }),
            );
        }
        if let Some(w) = &self.inner.webhook {
            router = router.route(
                &w.config.path,
                post(webhook).layer(DefaultBodyLimit::max(w.config.max_body_bytes)),
            );
        }
        router
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .fallback(|| async { plain_error(StatusCode::NOT_FOUND, "no such route") })
            .layer(middleware::from_fn_with_state(self.clone(), observe))
            .layer(DefaultBodyLimit::max(
                self.inner.config.server.max_request_bytes,
            ))
            .with_state(self.clone())
    }

    /// Warns when Redis does not answer (the proxy then serves fail-open), listens on
    /// `[server] listen`, and serves until Ctrl-C or SIGTERM, letting in-flight requests finish.
    ///
    /// # Errors
    ///
    /// A one-line message when the address cannot be bound or the server fails.
    pub async fn run(self) -> Result<(), String> {
        let listen = self.inner.config.server.listen;
        if let Err(e) = self.inner.cache.ping().await {
            tracing::warn!(error = %e, "Redis is unreachable; serving fail-open (every read goes upstream)");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(addr = %addr, routes = self.inner.routes.len(), "action-cache-proxy listening");
        self.serve(listener, shutdown_signal())
            .await
            .map_err(|e| format!("server error: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish.
    ///
    /// # Errors
    ///
    /// When the server fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn webhook(State(proxy): State<Proxy>, headers: HeaderMap, body: Bytes) -> Response {
    match &proxy.inner.webhook {
        Some(w) => w.handle(&headers, &body).await,
        None => plain_error(StatusCode::NOT_FOUND, "no webhook"),
    }
}

/// 200 while the process serves, Redis up or not (fail-open); the body says which.
async fn healthz(State(proxy): State<Proxy>) -> Response {
    let store = match proxy.inner.cache.ping().await {
        Ok(()) => json!({ "status": "up" }),
        Err(e) => json!({ "status": "unreachable", "error": e.to_string(), "mode": "fail-open" }),
    };
    let upstreams: serde_json::Map<_, _> = proxy
        .inner
        .upstreams
        .iter()
        .map(|(n, u)| {
            (
                n.clone(),
                json!({ "in_flight": u.in_flight(), "max_concurrency": u.config().max_concurrency }),
            )
        })
        .collect();
    Json(json!({ "status": "ok", "store": store, "upstreams": upstreams })).into_response()
}

/// 200 when the cache's store answers; 503 otherwise, so a load balancer prefers instances
/// whose Redis is reachable (they still serve fail-open if all are sent traffic).
async fn readyz(State(proxy): State<Proxy>) -> Response {
    match proxy.inner.cache.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics(State(proxy): State<Proxy>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        proxy.inner.metrics.render(),
    )
        .into_response()
}

/// Refuses oversized declared bodies, and logs every request as one JSON line.
async fn observe(State(proxy): State<Proxy>, request: Request, next: Next) -> Response {
    let max = proxy.inner.config.server.max_request_bytes as u64;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let webhook_path = proxy.inner.webhook.as_ref().map(|w| w.config.path.as_str());
    if declared.is_some_and(|n| n > max) && Some(request.uri().path()) != webhook_path {
        return plain_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    if !proxy.inner.config.server.access_log {
        return next.run(request).await;
    }
    let method = request.method().clone();
    // A clone of the URI shares its bytes: no copy of the path.
    let uri = request.uri().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    proxy.inner.access_log.log(&Line {
        method: &method,
        path: uri.path(),
        status: response.status().as_u16(),
        latency: started.elapsed(),
        cache,
    });
    response
}

/// Resolves on Ctrl-C or SIGTERM; in-flight requests then finish before [`Proxy::serve`]
/// returns.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
