//! The signed purge webhook: verify, guard against replays, parse, purge.
//!
//! Bodies (JSON, at most `max_body_bytes`):
//!
//! - `{"tags": ["account:42", …]}`: every entry carrying any of the tags.
//! - `{"route": "account", "params": {"id": "42"}, "query": {"fields": "a,b"},
//!   "headers": {"x-tenant": "t1"}, "mode": "soft"}`: the one entry a read with these values
//!   would use; `query` and `headers` name key values (absent ones mean "not sent"). Values are
//!   checked exactly as reads check them, and never trimmed.
//! - `{"<purge_alias>": "42"}`: shorthand for a route that declares `purge_alias`.
//!
//! `mode` is `"hard"` (default: the entry and its last good copy are removed, the next read
//! asks the upstream) or `"soft"` (the entry, or every entry with the tags, is marked stale, so
//! the next read is served at once and refreshes it in the background; last good copies stay).

use crate::config::{SignatureScheme, WebhookConfig};
use crate::metrics::Metrics;
use crate::params::Params;
use crate::read::RouteHandler;
use crate::signature::{self, Refused};
use crate::stored::plain_error;
use action_cache::store::Store;
use action_cache::{Cache, Clock};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How hard a purge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Remove: the next read asks the upstream.
    Hard,
    /// Mark stale: the next read is served at once and refreshes.
    Soft,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    route: Option<String>,
    params: Option<BTreeMap<String, String>>,
    query: Option<BTreeMap<String, String>>,
    headers: Option<BTreeMap<String, String>>,
    tags: Option<Vec<String>>,
    mode: Option<Mode>,
}

/// A parsed purge.
#[derive(Debug, PartialEq, Eq)]
enum Purge {
    Tags(Vec<String>, Mode),
    Entry {
        route: usize,
        params: Params,
        mode: Mode,
    },
}

/// The webhook, ready to serve.
#[derive(Debug)]
pub(crate) struct Webhook {
    pub(crate) config: WebhookConfig,
    pub(crate) guard: Arc<dyn Store>,
    pub(crate) guard_prefix: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) routes: Vec<Arc<RouteHandler>>,
    pub(crate) cache: Cache,
    pub(crate) metrics: Metrics,
}

const USAGE: &str = "a purge body is {\"tags\": [\"…\"]} or {\"route\": \"…\", \"params\": {…}} (optionally \"query\", \"headers\", \"mode\": \"hard\"|\"soft\")";

impl Webhook {
    fn parse(&self, body: &[u8]) -> Result<Purge, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("malformed purge body: {e}"))?;
        let Value::Object(map) = value else {
            return Err(USAGE.to_owned());
        };
        if let Some(purge) = self.alias(&map)? {
            return Ok(purge);
        }
        let body: Body = serde_json::from_value(Value::Object(map))
            .map_err(|e| format!("malformed purge body: {e}; {USAGE}"))?;
        let mode = body.mode.unwrap_or(Mode::Hard);
        match body {
            Body {
                tags: Some(tags),
                route: None,
                params: None,
                query: None,
                headers: None,
                ..
            } => {
                if tags.is_empty()
                    || tags
                        .iter()
                        .any(|t| t.is_empty() || t.len() > 1024 || t.chars().any(char::is_control))
                {
                    return Err("tags must be a non-empty list of non-empty tags without control characters".to_owned());
                }
                Ok(Purge::Tags(tags, mode))
            }
            Body {
                route: Some(route),
                tags: None,
                params,
                query,
                headers,
                ..
            } => self.entry(&route, params, query, headers, mode),
            _ => Err(USAGE.to_owned()),
        }
    }

    fn alias(&self, map: &Map<String, Value>) -> Result<Option<Purge>, String> {
        if map.len() != 1 {
            return Ok(None);
        }
        let (field, value) = map.iter().next().expect("one entry");
        let Some(route) = self
            .routes
            .iter()
            .find(|r| r.route.purge_alias.as_deref() == Some(field.as_str()))
        else {
            return Ok(None);
        };
        let Value::String(value) = value else {
            return Err(format!("`{field}` must be a string"));
        };
        let param = route
            .route
            .path
            .params()
            .next()
            .expect("checked: one path parameter");
        let params = BTreeMap::from([(param.to_owned(), value.clone())]);
        let name = route.route.name.clone();
        self.entry(&name, Some(params), None, None, Mode::Hard)
            .map(Some)
    }

    fn entry(
        &self,
        route: &str,
        params: Option<BTreeMap<String, String>>,
        query: Option<BTreeMap<String, String>>,
        headers: Option<BTreeMap<String, String>>,
        mode: Mode,
    ) -> Result<Purge, String> {
        let index = self
            .routes
            .iter()
            .position(|r| r.route.name == route)
            .ok_or_else(|| format!("no route named `{route}`"))?;
        let handler = &self.routes[index];
        let list = |m: Option<BTreeMap<String, String>>| -> Vec<(String, String)> {
            m.unwrap_or_default().into_iter().collect()
        };
        let params = Params::from_values(
            &handler.route,
            &list(params),
            &list(query),
            &list(headers),
            handler.max_param_bytes(),
        )
        .map_err(|e| e.0)?;
        Ok(Purge::Entry {
            route: index,
            params,
            mode,
        })
    }

    /// Handles one webhook request.
    pub(crate) async fn handle(&self, headers: &HeaderMap, body: &Bytes) -> Response {
        let now_s = self.clock.now_ms() / 1000;
        let verified = match signature::verify(
            self.config.scheme,
            &self.config.secret,
            self.config.tolerance,
            headers,
            body,
            now_s,
        ) {
            Ok(v) => v,
            Err(refused) => {
                tracing::warn!(reason = refused.as_str(), "purge webhook refused");
                self.metrics.webhook(refused.as_str());
                let message = match refused {
                    Refused::Expired => "the signature's timestamp is outside the tolerance",
                    _ => "missing or invalid X-Signature-256",
                };
                return plain_error(StatusCode::UNAUTHORIZED, message);
            }
        };
        // Replay guard: one use per signature, across every instance sharing the store.
        let guard = if verified.timestamped && self.config.scheme == SignatureScheme::Timestamped {
            let key = format!(
                "{}:proxy:webhook-seen:{}",
                self.guard_prefix,
                hex::encode(Sha256::digest(&verified.digest))
            );
            let ttl = self.config.tolerance * 2;
            match self.guard.try_lock(&key, "1", ttl).await {
                Ok(true) => Some(key),
                Ok(false) => {
                    tracing::warn!("purge webhook refused: replayed signature");
                    self.metrics.webhook("replayed");
                    return plain_error(
                        StatusCode::UNAUTHORIZED,
                        "this signature was already used",
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot check the webhook replay guard");
                    self.metrics.webhook("unavailable");
                    return plain_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot check for replays now; retry",
                    );
                }
            }
        } else {
            None
        };
        let result = match self.parse(body) {
            Ok(purge) => self.execute(purge).await,
            Err(message) => Err((StatusCode::BAD_REQUEST, message)),
        };
        match result {
            Ok(answer) => {
                self.metrics.webhook("purged");
                tracing::info!(answer = %answer, "purged");
                Json(answer).into_response()
            }
            Err((status, message)) => {
                // Nothing was done: the sender may retry the same signed request.
                if let Some(key) = guard {
                    let _ = self.guard.unlock(&key, "1").await;
                }
                self.metrics.webhook(if status == StatusCode::BAD_REQUEST {
                    "bad_request"
                } else {
                    "failed"
                });
                plain_error(status, &message)
            }
        }
    }

    async fn execute(&self, purge: Purge) -> Result<Value, (StatusCode, String)> {
        let unavailable = |e: action_cache::CacheError| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("purge failed: {e}"),
            )
        };
        match purge {
            Purge::Tags(tags, Mode::Hard) => {
                let mut purged = 0;
                for tag in &tags {
                    purged += self.cache.invalidate_tag(tag).await.map_err(unavailable)?;
                    self.cache
                        .invalidate_tag(&format!("last-good:{tag}"))
                        .await
                        .map_err(unavailable)?;
                }
                Ok(json!({ "purged": purged, "mode": "hard", "tags": tags }))
            }
            // The entries stay, marked stale in the cache: the next read of each is served at
            // once and refreshes it. The last-good copies stay too (they are still the last
            // answer the upstream gave).
            Purge::Tags(tags, Mode::Soft) => {
                let mut marked = 0;
                for tag in &tags {
                    marked += self.cache.mark_stale_tag(tag).await.map_err(unavailable)?;
                }
                Ok(json!({ "purged": marked, "mode": "soft", "tags": tags }))
            }
            Purge::Entry {
                route,
                params,
                mode,
            } => {
                let handler = &self.routes[route];
                let purged = match mode {
                    Mode::Hard => {
                        let existed = self
                            .cache
                            .invalidate(&handler.key(&params))
                            .await
                            .map_err(unavailable)?;
                        self.cache
                            .invalidate(&handler.last_good_key(&params))
                            .await
                            .map_err(unavailable)?;
                        existed
                    }
                    Mode::Soft => handler.mark_stale(&params).await.map_err(unavailable)?,
                };
                Ok(json!({
                    "purged": u64::from(purged),
                    "mode": if mode == Mode::Soft { "soft" } else { "hard" },
                    "route": handler.route.name,
                }))
            }
        }
    }
}
