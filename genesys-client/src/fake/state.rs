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
    pub(super) window_start: Option<Instant>,
    pub(super) window_count: u64,
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
            let now = Instant::now();
            let start = *state.window_start.get_or_insert(now);
            let window = Duration::from_secs(60);
            let start = if now.duration_since(start) >= window {
                state.window_count = 0;
                state.window_start = Some(now);
                now
            } else {
                start
            };
            state.window_count += 1;
            let reset = (window - now.duration_since(start)).as_secs().max(1);
            let correlation_id = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                (salt >> 32) as u32,
                (salt >> 16) as u16,
                salt & 0xfff,
                (salt >> 12) & 0xfff,
                id
            );
            (correlation_id, state.window_count, reset)
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
        set("inin-ratelimit-allowed", RATE_LIMIT_ALLOWED.to_string());
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
        let fault = {
            let mut state = self.lock();
            *state.api_requests.entry(uri.path().to_owned()).or_default() += 1;
            state.api_uris.push(uri.to_string());
            state.faults.pop_front()
        };
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

    pub(super) fn find(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }
}
