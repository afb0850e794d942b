//! The fake's state: its configuration, counters, queued faults and issued tokens, and the
//! headers every response carries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::time::Instant;

use super::faults::{platform_error, Fault};
use super::RATE_LIMIT_ALLOWED;
use crate::actions::Action;
use crate::secret::ClientSecret;

pub(super) struct Shared {
    pub(super) client_id: String,
    pub(super) client_secret: ClientSecret,
    pub(super) token_lifetime: Duration,
    pub(super) actions: Vec<Action>,
    pub(super) orders: BTreeMap<String, Value>,
    pub(super) contacts: Vec<Value>,
    pub(super) max_page_size: u32,
    pub(super) limits: OrgLimits,
    pub(super) latency: Duration,
    pub(super) state: Mutex<Mutable>,
}

#[derive(Default)]
pub(super) struct Mutable {
    pub(super) tokens: HashMap<String, Instant>,
    pub(super) token_requests: usize,
    pub(super) api_requests: BTreeMap<String, usize>,
    pub(super) requested_pages: Vec<u32>,
    pub(super) api_uris: Vec<String>,
    pub(super) faults: VecDeque<Fault>,
    pub(super) token_faults: VecDeque<Fault>,
    pub(super) next_id: u64,
    pub(super) salt: u64,
    /// API requests in the current minute (the per-token limit and the headers).
    pub(super) requests: Window,
    /// Executions in the current minute.
    pub(super) executions: Window,
    /// Executions running now, and the most that ever ran at once.
    pub(super) executing: usize,
    pub(super) peak_executing: usize,
    /// 429s the org limits sent (not scripted faults).
    pub(super) limited: usize,
}

/// A fixed one-minute window of counted events, as Genesys counts per minute.
#[derive(Debug, Default)]
pub(super) struct Window {
    start: Option<Instant>,
    count: u64,
}

impl Window {
    const LENGTH: Duration = Duration::from_secs(60);

    /// Rolls over to a new window when a minute has passed; the count so far and the whole
    /// seconds until the window resets (at least 1).
    pub(super) fn current(&mut self) -> (u64, u64) {
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        let start = if now.duration_since(start) >= Self::LENGTH {
            self.count = 0;
            self.start = Some(now);
            now
        } else {
            start
        };
        let left = Self::LENGTH - now.duration_since(start);
        (self.count, left.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Counts one event; the count including it and the seconds until reset.
    pub(super) fn add(&mut self) -> (u64, u64) {
        let (_, reset) = self.current();
        self.count += 1;
        (self.count, reset)
    }
}

/// The per-org limits the fake enforces with 429s, as Genesys documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgLimits {
    /// Data-action executions running at once (`actions.concurrent.executions.max`, 50).
    pub max_concurrent_executions: Option<usize>,
    /// Data-action executions per minute (2,500).
    pub executions_per_minute: Option<u64>,
    /// Platform API requests per minute per token (300; reported in `inin-ratelimit-*`).
    pub requests_per_minute: Option<u64>,
}

impl OrgLimits {
    /// Genesys's documented defaults: 50 concurrent executions, 2,500 executions per minute,
    /// 300 API requests per minute.
    pub fn documented() -> Self {
        Self {
            max_concurrent_executions: Some(50),
            executions_per_minute: Some(2_500),
            requests_per_minute: Some(RATE_LIMIT_ALLOWED),
        }
    }

    /// No limits enforced (the headers still report 300 allowed).
    pub fn none() -> Self {
        Self {
            max_concurrent_executions: None,
            executions_per_minute: None,
            requests_per_minute: None,
        }
    }
}

impl Default for OrgLimits {
    fn default() -> Self {
        Self::documented()
    }
}

/// An execution counted as running until dropped.
pub(super) struct Running<'a> {
    shared: &'a Shared,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.executing = state.executing.saturating_sub(1);
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Mutable> {
        // A panic while holding the lock leaves plain counters behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A response with the headers every Genesys response has.
    pub(super) fn respond(
        &self,
        status: u16,
        body: String,
        content_type: &str,
        retry_after: Option<&str>,
    ) -> Response {
        let (correlation_id, count, reset) = {
            let mut state = self.lock();
            state.next_id += 1;
            let id = state.next_id;
            let salt = state.salt;
            let (count, reset) = state.requests.current();
            let correlation_id = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                (salt >> 32) as u32,
                (salt >> 16) as u16,
                salt & 0xfff,
                (salt >> 12) & 0xfff,
                id
            );
            (correlation_id, count, reset)
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        set("content-type", content_type.to_owned());
        set("inin-correlation-id", correlation_id);
        set("inin-ratelimit-count", count.to_string());
        set(
            "inin-ratelimit-allowed",
            self.limits
                .requests_per_minute
                .unwrap_or(RATE_LIMIT_ALLOWED)
                .to_string(),
        );
        set("inin-ratelimit-reset", reset.to_string());
        if let Some(retry_after) = retry_after {
            set("retry-after", retry_after.to_owned());
        }
        response
    }

    pub(super) fn json(&self, status: u16, body: &Value) -> Response {
        self.respond(status, body.to_string(), "application/json", None)
    }

    pub(super) fn error(&self, status: u16, code: &str, message: &str) -> Response {
        self.json(status, &platform_error(status, code, message))
    }

    pub(super) fn fault(&self, fault: &Fault) -> Option<Response> {
        match fault {
            Fault::Respond {
                status,
                body,
                content_type,
                retry_after,
            } => Some(self.respond(*status, body.clone(), content_type, retry_after.as_deref())),
            Fault::Delay(_) => None,
            Fault::CutOff {
                status,
                sent,
                declared,
            } => {
                let mut response = self.respond(*status, String::new(), "application/json", None);
                // The part, then a pause so that the status, headers and part are flushed,
                // then an error: hyper drops the connection mid-body.
                let sent = Bytes::from(sent.clone());
                let body = futures_util::stream::unfold(0u8, move |step| {
                    let sent = sent.clone();
                    async move {
                        match step {
                            0 => Some((Ok(sent), 1)),
                            1 => {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                Some((
                                    Err(std::io::Error::new(
                                        std::io::ErrorKind::ConnectionReset,
                                        "the fake cuts the body off",
                                    )),
                                    2,
                                ))
                            }
                            _ => None,
                        }
                    }
                });
                *response.body_mut() = Body::from_stream(body);
                if let Ok(length) = HeaderValue::from_str(&declared.to_string()) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_LENGTH, length);
                }
                Some(response)
            }
        }
    }

    /// Counts the request, plays a queued fault, and checks the bearer token.
    pub(super) async fn api_prelude(&self, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        let (fault, count, reset) = {
            let mut state = self.lock();
            *state.api_requests.entry(uri.path().to_owned()).or_default() += 1;
            state.api_uris.push(uri.to_string());
            let (count, reset) = state.requests.add();
            (state.faults.pop_front(), count, reset)
        };
        if self
            .limits
            .requests_per_minute
            .is_some_and(|max| count > max)
        {
            self.lock().limited += 1;
            let max = self.limits.requests_per_minute.unwrap_or_default();
            return Some(
                self.respond(
                    429,
                    platform_error(
                        429,
                        "too.many.requests",
                        &format!(
                            "Rate limit exceeded the maximum. [{max}] requests for \
                         [client_credentials] per minute"
                        ),
                    )
                    .to_string(),
                    "application/json",
                    Some(&reset.to_string()),
                ),
            );
        }
        if let Some(fault) = fault {
            if let Fault::Delay(wait) = fault {
                tokio::time::sleep(wait).await;
            } else {
                return self.fault(&fault);
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            });
        let Some(bearer) = bearer else {
            return Some(self.error(
                401,
                "bad.credentials",
                "No authentication bearer token specified in authorization header.",
            ));
        };
        let valid = self
            .lock()
            .tokens
            .get(&bearer)
            .is_some_and(|expiry| Instant::now() < *expiry);
        if valid {
            None
        } else {
            Some(self.error(401, "bad.credentials", "Invalid login credentials."))
        }
    }

    /// The configured per-request latency (on tokio's clock): the time Genesys and the remote
    /// endpoint take.
    pub(super) async fn work(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    /// Admits one data-action execution under the org limits, or the 429 that refuses it.
    pub(super) fn begin_execution(&self) -> Result<Running<'_>, Box<Response>> {
        let mut state = self.lock();
        let (count, reset) = state.executions.current();
        if self
            .limits
            .executions_per_minute
            .is_some_and(|max| count >= max)
        {
            state.limited += 1;
            drop(state);
            let max = self.limits.executions_per_minute.unwrap_or_default();
            return Err(Box::new(self.respond(
                429,
                platform_error(
                    429,
                    "too.many.requests",
                    &format!("Rate limit exceeded the maximum. [{max}] data action executions per minute"),
                )
                .to_string(),
                "application/json",
                Some(&reset.to_string()),
            )));
        }
        if self
            .limits
            .max_concurrent_executions
            .is_some_and(|max| state.executing >= max)
        {
            state.limited += 1;
            drop(state);
            let max = self.limits.max_concurrent_executions.unwrap_or_default();
            return Err(Box::new(self.error(
                429,
                "too.many.requests",
                &format!(
                    "Rate limit exceeded the maximum. [{max}] concurrent data action executions"
                ),
            )));
        }
        state.executions.add();
        state.executing += 1;
        state.peak_executing = state.peak_executing.max(state.executing);
        Ok(Running { shared: self })
    }

    pub(super) fn find(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }
}
