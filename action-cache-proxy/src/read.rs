//! The read path of one cached route: check the request, look the entry up, ask the upstream
//! on a miss or for a refresh, and answer with the stored bytes and cache headers.

use crate::cache_control::Decision;
use crate::config::RouteConfig;
use crate::metrics::{Event, Metrics, RouteMetrics};
use crate::params::Params;
use crate::stored::{error, plain_error, Outcome, Stored};
use crate::upstream::{Upstream, UpstreamError};
use action_cache::{
    Cache, CacheError, CacheKey, Clock, LoadError, Loaded, Outcome as Found, Policy, PurgeMark,
    RefreshFuture,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a load produced no answer to serve from the cache. A pass-through answer is an answer,
/// not a failure: it is served, and not stored (and a background refresh that gets one keeps
/// the old entry).
#[derive(Clone)]
pub(crate) enum Failure {
    /// A 4xx that is not configured as negative: served as is, not stored.
    PassThrough(Arc<Stored>),
    /// The upstream failed.
    Upstream(UpstreamError),
}

/// Short, without the body: the cache logs a refresh's `Err` with `Debug`.
impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::PassThrough(s) => write!(f, "answer {} passed on, not stored", s.status()),
            Failure::Upstream(e) => write!(f, "{e}"),
        }
    }
}

/// One route, ready to serve. Shared by all its requests.
#[derive(Debug)]
pub(crate) struct RouteHandler {
    pub(crate) route: RouteConfig,
    upstream: Upstream,
    cache: Cache,
    clock: Arc<dyn Clock>,
    metrics: RouteMetrics,
    max_param_bytes: usize,
    /// `proxy.<route>.<hash of the upstream mapping>`: a changed mapping never serves entries
    /// written under the old one.
    key_name: String,
    last_good_name: String,
    negative_policy: Option<Policy>,
    last_good_policy: Option<Policy>,
    /// The key's argument names (`p.<path param>`, `q.<query>`, `h.<header>`), made once.
    arg_names: ArgNames,
}

#[derive(Debug)]
struct ArgNames {
    path: Vec<String>,
    query: Vec<String>,
    headers: Vec<String>,
}

fn fixed_policy(window: Duration) -> Policy {
    Policy::builder()
        .fresh(window)
        .stale(window)
        .jitter(0.0)
        .build()
        .expect("windows are validated above 0 when the configuration is read")
}

impl RouteHandler {
    pub(crate) fn new(
        route: RouteConfig,
        upstream: Upstream,
        cache: Cache,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        max_param_bytes: usize,
    ) -> RouteHandler {
        let mut mapping = Sha256::new();
        mapping.update(upstream.config().base_url.as_str());
        mapping.update([0]);
        mapping.update(route.upstream_path.as_str());
        let hash = hex::encode(&mapping.finalize()[..4]);
        let key_name = format!("proxy.{}.{hash}", route.name);
        let last_good_name = format!("{key_name}.last_good");
        let arg_names = ArgNames {
            path: route.path.params().map(|n| format!("p.{n}")).collect(),
            query: route.key_query.iter().map(|n| format!("q.{n}")).collect(),
            headers: route.key_headers.iter().map(|n| format!("h.{n}")).collect(),
        };
        RouteHandler {
            arg_names,
            negative_policy: route.negative.as_ref().map(|n| fixed_policy(n.ttl)),
            // Honouring routes may keep a last good copy for the upstream's stale-if-error.
            last_good_policy: match route.stale_if_error {
                Some(s) => Some(fixed_policy(route.stale + s)),
                None if route.honour_cache_control => Some(fixed_policy(route.stale)),
                None => None,
            },
            metrics: metrics.route(&route.name),
            route,
            upstream,
            cache,
            clock,
            max_param_bytes,
            key_name,
            last_good_name,
        }
    }

    /// The longest parameter accepted.
    pub(crate) fn max_param_bytes(&self) -> usize {
        self.max_param_bytes
    }

    fn tags(&self, params: &Params, prefix: &str) -> Vec<String> {
        self.route
            .tags
            .iter()
            .map(|t| format!("{prefix}{}", t.render(|n| params.value(n))))
            .collect()
    }

    fn build_key(&self, name: &str, params: &Params, tag_prefix: &str) -> CacheKey {
        let mut key = CacheKey::builder(name);
        // Strings and options of strings always serialize; names are unique by construction.
        // Params hold the route's parameters in the order the names were made.
        for ((_, v), n) in params.path.iter().zip(&self.arg_names.path) {
            let _ = key.arg(n, v);
        }
        for ((_, v), n) in params.query.iter().zip(&self.arg_names.query) {
            let _ = key.arg(n, v);
        }
        for ((_, v), n) in params.headers.iter().zip(&self.arg_names.headers) {
            let _ = key.arg(n, v);
        }
        for tag in self.tags(params, tag_prefix) {
            key.tag(tag);
        }
        key.build()
    }

    /// The key of the served entry for `params`.
    pub(crate) fn key(&self, params: &Params) -> CacheKey {
        self.build_key(&self.key_name, params, "")
    }

    /// The key of the last good copy (stale-if-error); its tags are the route's, prefixed with
    /// `last-good:`, so a tag purge can remove it without counting it.
    pub(crate) fn last_good_key(&self, params: &Params) -> CacheKey {
        self.build_key(&self.last_good_name, params, "last-good:")
    }

    /// This read's windows: jitter is drawn here rather than in the cache, so the stored copy
    /// knows its own fresh window (the `ttl` of its `Cache-Status`).
    fn draw_policy(&self) -> (Policy, u64) {
        let r = &self.route;
        let (u1, u2): (f64, f64) = if r.jitter > 0.0 {
            let mut rng = rand::rng();
            (rng.random(), rng.random())
        } else {
            (0.0, 0.0)
        };
        let fresh = r.fresh.mul_f64(1.0 + r.jitter * u1);
        let stale = r.stale.mul_f64(1.0 + r.jitter * u2).max(fresh);
        let fresh = fresh.max(Duration::from_millis(1));
        let policy = Policy::builder()
            .fresh(fresh)
            .stale(stale)
            .jitter(0.0)
            .build()
            .expect("fresh > 0 and stale >= fresh");
        (policy, fresh.as_millis() as u64)
    }

    /// Answers one request.
    pub(crate) async fn serve(
        self: Arc<Self>,
        raw_path: &[(&str, &str)],
        raw_query: Option<&str>,
        headers: &HeaderMap,
    ) -> Response {
        let started = Instant::now();
        let name = self.route.name.as_str();
        let params = match Params::from_request(
            &self.route,
            raw_path,
            raw_query,
            headers,
            self.max_param_bytes,
        ) {
            Ok(p) => p,
            Err(invalid) => {
                self.metrics.event(Event::Rejected);
                let response = plain_error(StatusCode::BAD_REQUEST, &invalid.0);
                self.metrics.response("REJECTED", started.elapsed());
                return response;
            }
        };
        let params = Arc::new(params);
        let key = self.key(&params);
        let (policy, fresh_ms) = self.draw_policy();
        let result = self
            .cache
            .get_or_load_with_loader_policy(
                &key,
                &policy,
                || {
                    self.metrics.event(Event::Load);
                    self.clone().fetch(params.clone(), policy.clone(), fresh_ms)
                },
                || -> RefreshFuture<Loaded<Stored>, Failure> {
                    self.metrics.event(Event::Refresh);
                    Box::pin(self.clone().fetch(params.clone(), policy.clone(), fresh_ms))
                },
            )
            .await;
        let now = self.clock.now_ms();
        let response = match result {
            Ok((stored, found)) => {
                // As the cache decided: an entry a soft purge marked stale is STALE although
                // its own copy says fresh.
                let outcome = match found {
                    Found::Fresh => Outcome::Hit,
                    Found::Stale | Found::StaleIfError => Outcome::Stale,
                    Found::Coalesced => Outcome::Collapsed,
                    _ => Outcome::Miss,
                };
                self.count_lookup(outcome);
                stored.respond(outcome, now, None)
            }
            Err(LoadError::Loader(Failure::PassThrough(stored))) => {
                self.count_lookup(Outcome::Miss);
                Arc::unwrap_or_clone(stored).respond(Outcome::Miss, now, None)
            }
            Err(LoadError::Loader(Failure::Upstream(e))) => {
                self.count_lookup(Outcome::Miss);
                self.failed(&params, &e, now).await
            }
            Err(e) => {
                self.count_lookup(Outcome::Miss);
                tracing::error!(route = name, error = %e, "load failed");
                self.failed(
                    &params,
                    &UpstreamError::Unavailable("the load failed".into()),
                    now,
                )
                .await
            }
        };
        let outcome = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        self.metrics.response(outcome, started.elapsed());
        response
    }

    /// Counts what the lookup found; a collapsed request (a miss whose load another caller
    /// made) counts as a miss too.
    fn count_lookup(&self, outcome: Outcome) {
        match outcome {
            Outcome::Hit => self.metrics.event(Event::Fresh),
            Outcome::Stale => self.metrics.event(Event::Stale),
            _ => self.metrics.event(Event::Miss),
        }
    }

    /// The upstream failed: the last good copy if the route keeps one, else an error.
    async fn failed(&self, params: &Params, e: &UpstreamError, now: u64) -> Response {
        let detail = match e {
            UpstreamError::Timeout => "upstream-timeout".to_owned(),
            UpstreamError::Shed => "upstream-busy".to_owned(),
            UpstreamError::TooLarge(_) => "upstream-too-large".to_owned(),
            UpstreamError::Token(_) => "upstream-auth".to_owned(),
            UpstreamError::Status(s) => format!("upstream-{s}"),
            _ => "upstream-unavailable".to_owned(),
        };
        if let Some(stored) = self.last_good(params).await {
            tracing::warn!(route = %self.route.name, error = %e, "upstream failed; serving the last good copy");
            return stored.respond(Outcome::StaleIfError, now, Some(&detail));
        }
        let status = match e {
            UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Shed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        let mut response = error(status, &e.to_string(), Outcome::Error, Some(&detail));
        if matches!(e, UpstreamError::Shed) {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }

    /// The last good copy, if the route keeps one and it is there.
    async fn last_good(&self, params: &Params) -> Option<Stored> {
        let policy = self.last_good_policy.as_ref()?;
        // The cache has no plain read: a loader that always fails turns a miss into `None`.
        self.cache
            .get_or_load(&self.last_good_key(params), policy, || async {
                Err::<Stored, &'static str>("no last good copy")
            })
            .await
            .ok()
    }

    /// One upstream call for `params`, with the answer classified, how the cache is to keep it
    /// (the route's windows, a negative answer's TTL, the upstream's `Cache-Control`, or not at
    /// all), and the side copies written.
    async fn fetch(
        self: Arc<Self>,
        params: Arc<Params>,
        policy: Policy,
        fresh_ms: u64,
    ) -> Result<Loaded<Stored>, Failure> {
        let name = self.route.name.as_str();
        let mut url = self.upstream.url();
        self.route
            .upstream_path
            .append_to(&mut url, |n| params.value(n).unwrap_or(""));
        if params.query.iter().any(|(_, v)| v.is_some()) {
            let mut pairs = url.query_pairs_mut();
            for (n, v) in &params.query {
                if let Some(v) = v {
                    pairs.append_pair(n, v);
                }
            }
        }
        let forward: Vec<_> = params
            .headers
            .iter()
            .filter_map(|(n, v)| {
                let v = HeaderValue::from_str(v.as_deref()?).ok()?;
                Some((n.clone(), v))
            })
            .collect();
        // Side copies are written like a load writes: only if no purge of theirs happened
        // since before the upstream call (a purge in between must not be undone by them).
        let last_good_mark = match &self.last_good_policy {
            Some(_) => self
                .cache
                .purge_mark(&self.last_good_key(&params))
                .await
                .ok(),
            None => None,
        };
        let answer = match self.upstream.get(url, &forward).await {
            Ok(a) => a,
            Err(e) => {
                self.metrics.event(if e == UpstreamError::Shed {
                    Event::Shed
                } else {
                    Event::Error
                });
                tracing::warn!(route = name, error = %e, "upstream call failed");
                return Err(Failure::Upstream(e));
            }
        };
        let now = self.clock.now_ms();
        let status = answer.status;
        if (200..300).contains(&status) && self.route.honour_cache_control {
            return Ok(self
                .keep_as_told(&params, answer, now, &policy, last_good_mark.as_ref())
                .await);
        }
        if (200..300).contains(&status) {
            let stored = answer.into_stored(now, fresh_ms);
            if let (Some(policy), Some(mark)) = (&self.last_good_policy, &last_good_mark) {
                let key = self.last_good_key(&params);
                match self
                    .cache
                    .put_unless_purged(&key, policy, &stored, mark)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(
                            route = name,
                            "purged while fetching; no last good copy kept"
                        )
                    }
                    Err(e) => {
                        tracing::warn!(route = name, error = %e, "could not keep the last good copy")
                    }
                }
            }
            return Ok(Loaded::new(stored));
        }
        if let (Some(neg), Some(policy)) = (&self.route.negative, &self.negative_policy) {
            if neg.statuses.contains(&status) {
                let stored = answer.into_stored(now, neg.ttl.as_millis() as u64);
                self.drop_last_good(&params).await;
                return Ok(Loaded::with_policy(stored, policy.clone()));
            }
        }
        if (400..500).contains(&status) {
            return Err(Failure::PassThrough(Arc::new(answer.into_stored(now, 0))));
        }
        self.metrics.event(Event::Error);
        Err(Failure::Upstream(UpstreamError::Status(status)))
    }

    /// Keeps a 2xx as its `Cache-Control` says (route `cache_control = "honour"`): not at all
    /// for `no-store` / `private`; else the served entry for its fresh and stale windows (the
    /// cache writes it, guarded against purges like any load), and the last good copy for its
    /// error window, skipped when that key was purged since its mark (taken before the upstream
    /// call) or no mark could be taken.
    async fn keep_as_told(
        &self,
        params: &Params,
        answer: crate::upstream::Answer,
        now: u64,
        policy: &Policy,
        last_good_mark: Option<&PurgeMark>,
    ) -> Loaded<Stored> {
        let name = self.route.name.as_str();
        let route_stale = policy.stale().saturating_sub(policy.fresh());
        let decision = answer.cache_control.decide(
            answer.age,
            policy.fresh(),
            route_stale,
            self.route.stale_if_error,
        );
        let Decision::Keep {
            fresh,
            stale,
            error,
        } = decision
        else {
            return Loaded::no_store(answer.into_stored(now, 0));
        };
        let stored = answer.into_stored(now, fresh.as_millis() as u64);
        let total = fresh + stale;
        if let (Some(error), Some(mark)) = (error, last_good_mark) {
            let key = self.last_good_key(params);
            if let Err(e) = self
                .cache
                .put_unless_purged(&key, &fixed_policy(total + error), &stored, mark)
                .await
            {
                tracing::warn!(route = name, error = %e, "could not keep the last good copy");
            }
        }
        if total.is_zero() {
            // Nothing to serve from the cache (`no-cache`): at most a last good copy.
            return Loaded::no_store(stored);
        }
        let ms = Duration::from_millis(1);
        let windows = Policy::builder()
            .fresh(fresh.max(ms))
            .stale(total.max(ms))
            .jitter(0.0)
            .build()
            .expect("1 ms <= fresh <= stale");
        Loaded::with_policy(stored, windows)
    }

    /// Drops the last good copy on a negative answer: the upstream says the thing is gone, so
    /// it must not come back on an outage. (The negative answer itself is stored by the cache,
    /// with its own TTL, like any load.)
    async fn drop_last_good(&self, params: &Params) {
        if self.last_good_policy.is_some() {
            if let Err(e) = self.cache.invalidate(&self.last_good_key(params)).await {
                tracing::warn!(route = %self.route.name, error = %e, "could not drop the last good copy");
            }
        }
    }

    /// Soft purge: the entry stays, but is no longer fresh, so the next read is served at once
    /// and refreshes it (`Cache::mark_stale`). Returns whether there was an entry.
    pub(crate) async fn mark_stale(&self, params: &Params) -> Result<bool, CacheError> {
        self.cache.mark_stale(&self.key(params)).await
    }
}
