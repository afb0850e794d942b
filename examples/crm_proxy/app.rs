//! The proxy's HTTP service: what a Genesys Data Action calls instead of the CRM.
//!
//! - `GET /accounts/{id}`: read through the cache (fresh 300 s, stale 900 s, jitter). The
//!   `X-Cache` header says `HIT`, `STALE` (served while one background refresh runs), `MISS`, or
//!   `STALE-IF-ERROR`: the CRM failed on a miss and the last good copy was served instead.
//! - `POST /webhooks/crm`: signed purge by account or tags.
//! - `GET /healthz`, `GET /metrics`.

use super::crm::{Crm, CrmError};
use super::metrics::Metrics;
use super::webhook::{Purge, WebhookSecret, MAX_BODY_BYTES};
use action_cache::{Cache, CacheKey, Clock, LoadError, Policy, RefreshFuture};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an account is served without asking the CRM.
pub(crate) const FRESH: Duration = Duration::from_secs(300);
/// How long, from the write, it is served while one background refresh asks the CRM.
pub(crate) const STALE: Duration = Duration::from_secs(900);
/// How long the last good copy is kept for serving when the CRM fails (stale-if-error).
pub(crate) const STALE_IF_ERROR: Duration = Duration::from_secs(24 * 3600);

/// The tag of every entry about account `id`; a purge of the account removes them.
pub(crate) fn account_tag(id: &str) -> String {
    format!("account:{id}")
}

/// What the cache holds for an account: the CRM's answer and when it was fetched, so that a
/// response can say how old it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    account: Value,
    fetched_at_ms: u64,
}

/// The service's shared state. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: Cache,
    crm: Crm,
    /// `None` only in insecure demo mode: webhooks are then accepted unsigned.
    secret: Option<WebhookSecret>,
    /// The clock the cache uses, to compute ages consistently with it.
    clock: Arc<dyn Clock>,
    policy: Policy,
    last_good: Policy,
    metrics: Metrics,
}

impl App {
    /// The service over `cache` and `crm`. `clock` must be the cache's clock (a `SystemClock`
    /// unless a test injects a manual one).
    pub(crate) fn new(
        cache: Cache,
        crm: Crm,
        secret: Option<WebhookSecret>,
        clock: Arc<dyn Clock>,
    ) -> App {
        let policy = Policy::builder()
            .fresh(FRESH)
            .stale(STALE)
            .jitter(0.1)
            .build()
            .expect("constant windows are valid");
        let last_good = Policy::builder()
            .fresh(STALE_IF_ERROR)
            .stale(STALE_IF_ERROR)
            .jitter(0.0)
            .build()
            .expect("constant windows are valid");
        App {
            inner: Arc::new(Inner {
                cache,
                crm,
                secret,
                clock,
                policy,
                last_good,
                metrics: Metrics::default(),
            }),
        }
    }

    /// The router, with request logging and metrics around every route.
    pub(crate) fn router(self) -> Router {
        Router::new()
            .route("/accounts/{id}", get(get_account))
            .route(
                "/webhooks/crm",
                post(purge).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
            )
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .layer(middleware::from_fn_with_state(self.clone(), observe))
            .with_state(self)
    }

    /// Asks the CRM; on success also keeps the copy that stale-if-error serves.
    async fn fetch(self, id: String) -> Result<Stored, CrmError> {
        let inner = &self.inner;
        let account = inner.crm.account(&id).await?;
        let stored = Stored {
            account,
            fetched_at_ms: inner.clock.now_ms(),
        };
        if let Err(e) = inner
            .cache
            .put(&last_good_key(&id), &inner.last_good, &stored)
            .await
        {
            tracing::warn!(account = %id, error = %e, "could not keep the last good copy");
        }
        Ok(stored)
    }

    /// The last good copy of an account, if one is kept.
    async fn last_good(&self, id: &str) -> Option<Stored> {
        let inner = &self.inner;
        // The cache has no plain read: a loader that always fails turns a miss into `None`.
        inner
            .cache
            .get_or_load(&last_good_key(id), &inner.last_good, || async {
                Err::<Stored, &'static str>("no last good copy")
            })
            .await
            .ok()
    }
}

fn account_key(id: &str) -> CacheKey {
    let mut key = CacheKey::builder("crm.account");
    key.arg("id", id).expect("a string is a valid key argument");
    key.tag(account_tag(id));
    key.build()
}

/// Deliberately untagged: a purge removes the served entry, while the last good copy stays
/// for stale-if-error until it expires.
fn last_good_key(id: &str) -> CacheKey {
    let mut key = CacheKey::builder("crm.account.last_good");
    key.arg("id", id).expect("a string is a valid key argument");
    key.build()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn served(stored: Stored, outcome: &'static str, now_ms: u64) -> Response {
    let age = now_ms.saturating_sub(stored.fetched_at_ms) / 1000;
    let mut response = Json(stored.account).into_response();
    let headers = response.headers_mut();
    headers.insert("x-cache", HeaderValue::from_static(outcome));
    headers.insert(header::AGE, HeaderValue::from(age));
    if outcome == "STALE-IF-ERROR" {
        headers.insert(
            header::WARNING,
            HeaderValue::from_static("110 - \"Response is Stale\""),
        );
    }
    response
}

async fn get_account(State(app): State<App>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return error(StatusCode::BAD_REQUEST, "invalid account id");
    }
    let inner = &app.inner;
    let key = account_key(&id);
    // Set when this request's own call reached the CRM (a miss); a background refresh of a
    // stale hit runs later, on another task, through `refresh`.
    let missed = AtomicBool::new(false);
    let result = inner
        .cache
        .get_or_load_with(
            &key,
            &inner.policy,
            || {
                missed.store(true, Ordering::Relaxed);
                app.clone().fetch(id.clone())
            },
            || -> RefreshFuture<Stored, CrmError> { Box::pin(app.clone().fetch(id.clone())) },
        )
        .await;
    let now = inner.clock.now_ms();
    match result {
        Ok(stored) => {
            let outcome = if missed.load(Ordering::Relaxed) {
                "MISS"
            } else if now.saturating_sub(stored.fetched_at_ms) < FRESH.as_millis() as u64 {
                "HIT"
            } else {
                "STALE"
            };
            served(stored, outcome, now)
        }
        Err(LoadError::Loader(CrmError::NotFound)) => {
            error(StatusCode::NOT_FOUND, format!("no account {id}"))
        }
        Err(e) => {
            let why = match e {
                LoadError::Loader(e) => e.to_string(),
                other => other.to_string(),
            };
            match app.last_good(&id).await {
                Some(stored) => {
                    tracing::warn!(account = %id, error = %why, "CRM failed; serving the last good copy");
                    served(stored, "STALE-IF-ERROR", now)
                }
                None => {
                    let mut response = error(StatusCode::BAD_GATEWAY, why);
                    response
                        .headers_mut()
                        .insert("x-cache", HeaderValue::from_static("ERROR"));
                    response
                }
            }
        }
    }
}

async fn purge(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let inner = &app.inner;
    match &inner.secret {
        Some(secret) if !secret.verify(&headers, &body) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid X-Signature-256",
            )
        }
        Some(_) => {}
        None => tracing::warn!("insecure demo mode: accepting an unsigned purge"),
    }
    let purge = match Purge::parse(&body) {
        Ok(purge) => purge,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let mut purged = 0;
    for tag in &purge.tags {
        match inner.cache.invalidate_tag(tag).await {
            Ok(n) => purged += n,
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("purge of {tag} failed: {e}"),
                )
            }
        }
    }
    tracing::info!(tags = ?purge.tags, purged, "purged");
    Json(json!({ "purged": purged, "tags": purge.tags })).into_response()
}

/// 200 while the process serves, Redis up or not (fail-open); the body says which.
async fn healthz(State(app): State<App>) -> Response {
    let store = match app.inner.cache.ping().await {
        Ok(()) => json!({ "status": "up" }),
        Err(e) => json!({ "status": "unreachable", "error": e.to_string(), "mode": "fail-open" }),
    };
    Json(json!({ "status": "ok", "store": store })).into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    let text = app.inner.metrics.render(&app.inner.cache.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Logs every request (method, path, status, latency, cache outcome) and records its metrics.
async fn observe(State(app): State<App>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let latency = started.elapsed();
    let outcome = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    app.inner.metrics.record(latency, outcome.as_deref());
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        cache = outcome.as_deref().unwrap_or("-"),
        "request"
    );
    response
}
