//! An in-process fake Genesys Cloud server (feature `fake`), so examples and tests run without
//! an org.
//!
//! It speaks the documented wire format on `127.0.0.1`:
//!
//! * `POST /oauth/token`: checks `Authorization: Basic …` and `grant_type=client_credentials`,
//!   issues bearer tokens with a configurable lifetime, answers `invalid_client` otherwise.
//! * `GET /api/v2/integrations/actions`: the entity listing with real paging (`pageSize`,
//!   `pageNumber`, `sortBy`, `sortOrder`, `category`, prefix `name`, `secure`).
//! * `GET /api/v2/integrations/actions/{id}` (`expand=contract`, `includeConfig=true`).
//! * `POST /api/v2/integrations/actions/{id}/execute` (`flatten=true`) and `…/test`: order
//!   lookups by `{"orderId":"A-1001"}`; an unknown order fails like a remote 404 does, with
//!   `ACTION.REMOTE_ENDPOINT`.
//! * Every response has an `ININ-Correlation-Id` and `inin-ratelimit-*` headers; API calls without
//!   a valid (unexpired) bearer token get 401 `bad.credentials`.
//! * [`Fault`]s scripted with [`FakeGenesys::push_fault`] answer the next API requests instead:
//!   429 with `Retry-After`, 5xx, malformed bodies, 401, delays.
//!
//! Time (token expiry, delays, rate-limit windows) follows tokio's clock, so tests with a paused
//! clock control it. The server runs on the runtime that started it and stops when the
//! [`FakeGenesys`] is dropped.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use genesys_client::fake::{Fault, FakeGenesys};
//!
//! let fake = FakeGenesys::builder()
//!     .token_lifetime(Duration::from_secs(300))
//!     .start()
//!     .await?;
//! fake.push_fault(Fault::too_many_requests(Duration::from_secs(1)));
//! let client = fake.client_builder().build()?;
//! let page = client.list_actions(&Default::default()).await?; // waits 1 s, then succeeds
//! assert_eq!(page.body().page_number, Some(1));
//! assert_eq!(fake.token_requests(), 1);
//! assert_eq!(fake.api_requests("/api/v2/integrations/actions"), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::actions::{Action, ActionConfig, ActionContract, RequestConfig, ResponseConfig};
use crate::client::ClientBuilder;
use crate::secret::ClientSecret;

/// The client id the fake accepts unless configured otherwise.
pub const DEFAULT_CLIENT_ID: &str = "fake-client-id";
/// The client secret the fake accepts unless configured otherwise.
pub const DEFAULT_CLIENT_SECRET: &str = "fake-client-secret";
/// The requests per rate-limit window the fake reports in `inin-ratelimit-allowed`.
pub const RATE_LIMIT_ALLOWED: u64 = 300;

const ACTIONS_ROUTE: &str = "/api/v2/integrations/actions";

/// A scripted answer to the next API request (not token requests, unless pushed with
/// [`FakeGenesys::push_token_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status, body and content type, and a `Retry-After` if given.
    Respond {
        /// The HTTP status.
        status: u16,
        /// The body, sent as is.
        body: String,
        /// The `Content-Type`.
        content_type: String,
        /// The `Retry-After` header value.
        retry_after: Option<String>,
    },
    /// Wait this long (on tokio's clock), then handle the request normally.
    Delay(Duration),
}

impl Fault {
    /// 429 `too.many.requests` with `Retry-After` in whole seconds.
    pub fn too_many_requests(retry_after: Duration) -> Self {
        Self::too_many_requests_raw(Some(retry_after.as_secs().to_string()))
    }

    /// 429 `too.many.requests` with `Retry-After` as an HTTP date.
    pub fn too_many_requests_until(at: SystemTime) -> Self {
        Self::too_many_requests_raw(Some(httpdate::fmt_http_date(at)))
    }

    /// 429 `too.many.requests` with this `Retry-After` value, or none.
    pub fn too_many_requests_raw(retry_after: Option<String>) -> Self {
        Fault::Respond {
            status: 429,
            body: platform_error(429, "too.many.requests", "Rate limit exceeded the maximum. [300] requests for [client_credentials] per minute").to_string(),
            content_type: "application/json".to_owned(),
            retry_after,
        }
    }

    /// A 5xx (or any status) with a Platform error body.
    pub fn server_error(status: u16) -> Self {
        let code = match status {
            501 => "not.implemented",
            502 => "bad.gateway",
            503 => "service.unavailable",
            504 => "gateway.timeout",
            _ => "internal.server.error",
        };
        Self::json(
            status,
            platform_error(status, code, "The server encountered an error"),
        )
    }

    /// 503 with a `Retry-After` in whole seconds.
    pub fn unavailable(retry_after: Duration) -> Self {
        Fault::Respond {
            status: 503,
            body: platform_error(503, "service.unavailable", "Service unavailable").to_string(),
            content_type: "application/json".to_owned(),
            retry_after: Some(retry_after.as_secs().to_string()),
        }
    }

    /// 401 `bad.credentials`, as for an expired or revoked token.
    pub fn unauthorized() -> Self {
        Self::json(
            401,
            platform_error(401, "bad.credentials", "Invalid login credentials."),
        )
    }

    /// Any status with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Fault::Respond {
            status,
            body: body.to_string(),
            content_type: "application/json".to_owned(),
            retry_after: None,
        }
    }

    /// Any status with a body that claims to be JSON but is not (or is truncated).
    pub fn malformed(status: u16, body: impl Into<String>) -> Self {
        Fault::Respond {
            status,
            body: body.into(),
            content_type: "application/json".to_owned(),
            retry_after: None,
        }
    }
}

fn platform_error(status: u16, code: &str, message: &str) -> Value {
    json!({"message": message, "code": code, "status": status, "messageParams": {}, "details": [], "errors": []})
}

/// Configures a [`FakeGenesys`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FakeGenesysBuilder {
    client_id: String,
    client_secret: ClientSecret,
    token_lifetime: Duration,
    actions: Vec<Action>,
    orders: BTreeMap<String, Value>,
    max_page_size: u32,
}

impl Default for FakeGenesysBuilder {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: ClientSecret::new(DEFAULT_CLIENT_SECRET),
            token_lifetime: Duration::from_secs(24 * 60 * 60),
            actions: default_actions(),
            orders: default_orders(),
            max_page_size: 500,
        }
    }
}

impl FakeGenesysBuilder {
    /// The client id and secret the token endpoint accepts (default
    /// [`DEFAULT_CLIENT_ID`] / [`DEFAULT_CLIENT_SECRET`]).
    pub fn credentials(mut self, client_id: impl Into<String>, secret: ClientSecret) -> Self {
        self.client_id = client_id.into();
        self.client_secret = secret;
        self
    }

    /// The lifetime of issued tokens, reported as `expires_in` (default 24 h; whole seconds).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Replaces the data actions (default [`default_actions`]).
    pub fn actions(mut self, actions: Vec<Action>) -> Self {
        self.actions = actions;
        self
    }

    /// Replaces the orders that executing an action looks up by `orderId` (default
    /// [`default_orders`]).
    pub fn orders(mut self, orders: BTreeMap<String, Value>) -> Self {
        self.orders = orders;
        self
    }

    /// The largest page the listing serves; a larger `pageSize` is clamped (default 500).
    pub fn max_page_size(mut self, size: u32) -> Self {
        self.max_page_size = size.max(1);
        self
    }

    /// Binds `127.0.0.1` on a free port and serves on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The I/O error when the port cannot be bound.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeGenesys> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            client_id: self.client_id,
            client_secret: self.client_secret,
            token_lifetime: self.token_lifetime,
            actions: self.actions,
            orders: self.orders,
            max_page_size: self.max_page_size,
            state: Mutex::new(Mutable {
                window_start: Some(Instant::now()),
                salt: rand::random(),
                ..Mutable::default()
            }),
        });
        let router = Router::new()
            .route("/oauth/token", post(token))
            .route(ACTIONS_ROUTE, get(list_actions))
            .route("/api/v2/integrations/actions/{id}", get(get_action))
            .route(
                "/api/v2/integrations/actions/{id}/execute",
                post(execute_action),
            )
            .route("/api/v2/integrations/actions/{id}/test", post(test_action))
            .fallback(not_found)
            .with_state(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeGenesys {
            shared,
            addr,
            _shutdown: shutdown,
        })
    }
}

/// A running fake Genesys Cloud server. Dropping it stops the server.
pub struct FakeGenesys {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl fmt::Debug for FakeGenesys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGenesys")
            .field("addr", &self.addr)
            .field("client_id", &self.shared.client_id)
            .field("client_secret", &self.shared.client_secret)
            .finish_non_exhaustive()
    }
}

impl FakeGenesys {
    /// A builder with the defaults: credentials [`DEFAULT_CLIENT_ID`] /
    /// [`DEFAULT_CLIENT_SECRET`], 24 h tokens, [`default_actions`], [`default_orders`].
    pub fn builder() -> FakeGenesysBuilder {
        FakeGenesysBuilder::default()
    }

    /// Starts a fake with the defaults.
    ///
    /// # Errors
    ///
    /// The I/O error when the port cannot be bound.
    pub async fn start() -> std::io::Result<FakeGenesys> {
        Self::builder().start().await
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}/`, the base URL of both the API and the login endpoints.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The client id the token endpoint accepts.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The client secret the token endpoint accepts.
    pub fn client_secret(&self) -> ClientSecret {
        self.shared.client_secret.clone()
    }

    /// A client builder pointed at this server (`base_url`, `allow_http`) with its credentials.
    pub fn client_builder(&self) -> ClientBuilder {
        ClientBuilder::default()
            .base_url(self.base_url())
            .allow_http(true)
            .credentials(self.client_id(), self.client_secret())
    }

    /// The data actions the server holds.
    pub fn actions(&self) -> &[Action] {
        &self.shared.actions
    }

    /// How many token requests arrived (including refused ones).
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }

    /// How many API requests arrived for this path (such as `/api/v2/integrations/actions`).
    pub fn api_requests(&self, path: &str) -> usize {
        self.shared
            .lock()
            .api_requests
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// How many API requests arrived, all paths together.
    pub fn api_requests_total(&self) -> usize {
        self.shared.lock().api_requests.values().sum()
    }

    /// The `pageNumber`s the listing was asked for, in order.
    pub fn requested_pages(&self) -> Vec<u32> {
        self.shared.lock().requested_pages.clone()
    }

    /// The path and query of every API request, in order.
    pub fn api_request_uris(&self) -> Vec<String> {
        self.shared.lock().api_uris.clone()
    }

    /// Every token issued so far (to check they never leak into logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    /// Queues a fault for the next API request; faults are used in order, one per request.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Queues several faults.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    /// Queues a fault for the next token request.
    pub fn push_token_fault(&self, fault: Fault) {
        self.shared.lock().token_faults.push_back(fault);
    }

    /// How many API faults are still queued.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Revokes every issued token: API calls with them get 401 from now on.
    pub fn revoke_tokens(&self) {
        for expiry in self.shared.lock().tokens.values_mut() {
            *expiry = Instant::now();
        }
    }
}

struct Shared {
    client_id: String,
    client_secret: ClientSecret,
    token_lifetime: Duration,
    actions: Vec<Action>,
    orders: BTreeMap<String, Value>,
    max_page_size: u32,
    state: Mutex<Mutable>,
}

#[derive(Default)]
struct Mutable {
    tokens: HashMap<String, Instant>,
    token_requests: usize,
    api_requests: BTreeMap<String, usize>,
    requested_pages: Vec<u32>,
    api_uris: Vec<String>,
    faults: VecDeque<Fault>,
    token_faults: VecDeque<Fault>,
    next_id: u64,
    salt: u64,
    window_start: Option<Instant>,
    window_count: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Mutable> {
        // A panic while holding the lock leaves plain counters behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A response with the headers every Genesys response has.
    fn respond(
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

    fn json(&self, status: u16, body: &Value) -> Response {
        self.respond(status, body.to_string(), "application/json", None)
    }

    fn error(&self, status: u16, code: &str, message: &str) -> Response {
        self.json(status, &platform_error(status, code, message))
    }

    fn fault(&self, fault: &Fault) -> Option<Response> {
        match fault {
            Fault::Respond {
                status,
                body,
                content_type,
                retry_after,
            } => Some(self.respond(*status, body.clone(), content_type, retry_after.as_deref())),
            Fault::Delay(_) => None,
        }
    }

    /// Counts the request, plays a queued fault, and checks the bearer token.
    async fn api_prelude(&self, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
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

    fn find(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = {
        let mut state = shared.lock();
        state.token_requests += 1;
        state.token_faults.pop_front()
    };
    if let Some(fault) = fault {
        if let Fault::Delay(wait) = fault {
            tokio::time::sleep(wait).await;
        } else if let Some(response) = shared.fault(&fault) {
            return response;
        }
    }
    let oauth_error = |status: u16, error: &str, description: &str| {
        shared.json(
            status,
            &json!({"error": error, "description": description, "error_description": description}),
        )
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let authorized = basic
        .as_deref()
        .and_then(|b| b.split_once(':'))
        .is_some_and(|(id, secret)| {
            id == shared.client_id && secret == shared.client_secret.expose()
        });
    if !authorized {
        return oauth_error(401, "invalid_client", "client not found");
    }
    let form_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let grant = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.into_owned());
    if !form_ok || grant.as_deref() != Some("client_credentials") {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant type must be client_credentials",
        );
    }
    let token = {
        let mut state = shared.lock();
        state.next_id += 1;
        let token = format!(
            "fake-token-{:016x}{:04}",
            rand::random::<u64>(),
            state.next_id
        );
        state
            .tokens
            .insert(token.clone(), Instant::now() + shared.token_lifetime);
        token
    };
    shared.json(
        200,
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": shared.token_lifetime.as_secs(),
        }),
    )
}

fn listing_action(action: &Action) -> Action {
    let mut action = action.clone();
    action.config = None;
    action.contract = None;
    action
}

async fn list_actions(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    let number = |key: &str, default: u32| match query.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(key.to_owned()),
    };
    let (page_size, page_number) = match (number("pageSize", 25), number("pageNumber", 1)) {
        (Ok(size), Ok(page)) => (size.min(shared.max_page_size), page),
        (Err(key), _) | (_, Err(key)) => {
            return shared.error(
                400,
                "bad.request",
                &format!("The value for {key} is invalid"),
            )
        }
    };
    shared.lock().requested_pages.push(page_number);
    let mut matching: Vec<&Action> = shared
        .actions
        .iter()
        .filter(|a| {
            query
                .get("category")
                .is_none_or(|c| a.category.as_deref() == Some(c.as_str()))
        })
        .filter(|a| {
            query.get("name").is_none_or(|prefix| {
                a.name
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase().starts_with(&prefix.to_lowercase()))
            })
        })
        .filter(|a| {
            query
                .get("secure")
                .is_none_or(|s| a.secure.unwrap_or(false).to_string() == s.to_lowercase())
        })
        .collect();
    let descending = match query.get("sortOrder").map(|s| s.to_uppercase()) {
        None => false,
        Some(order) if order == "ASC" => false,
        Some(order) if order == "DESC" => true,
        Some(_) => return shared.error(400, "bad.request", "The value for sortOrder is invalid"),
    };
    if let Some(field) = query.get("sortBy") {
        let key = |a: &Action| -> String {
            match field.as_str() {
                "name" => a.name.clone().unwrap_or_default().to_lowercase(),
                "category" => a.category.clone().unwrap_or_default().to_lowercase(),
                _ => a.id.clone(),
            }
        };
        matching.sort_by_key(|a| key(a));
        if descending {
            matching.reverse();
        }
    }
    let total = matching.len() as u64;
    let page_count = u32::try_from(total.div_ceil(u64::from(page_size))).unwrap_or(u32::MAX);
    let start =
        usize::try_from(u64::from(page_number - 1) * u64::from(page_size)).unwrap_or(usize::MAX);
    let entities: Vec<Action> = matching
        .iter()
        .skip(start)
        .take(page_size as usize)
        .map(|a| listing_action(a))
        .collect();
    let filters: String = [
        "sortBy",
        "sortOrder",
        "category",
        "name",
        "secure",
        "includeAuthActions",
    ]
    .iter()
    .filter_map(|k| query.get(*k).map(|v| (k, v)))
    .map(|(k, v)| {
        format!(
            "&{k}={}",
            url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
        )
    })
    .collect();
    let page_uri = |n: u32| format!("{ACTIONS_ROUTE}?pageSize={page_size}&pageNumber={n}{filters}");
    let mut body = json!({
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": page_count,
        "firstUri": page_uri(1),
        "selfUri": page_uri(page_number),
        "lastUri": page_uri(page_count.max(1)),
    });
    if page_number < page_count {
        body["nextUri"] = json!(page_uri(page_number + 1));
    }
    if page_number > 1 {
        body["previousUri"] = json!(page_uri(page_number - 1));
    }
    shared.json(200, &body)
}

async fn get_action(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    let Some(action) = shared.find(&id) else {
        return shared.error(404, "not.found", &format!("Action {id} not found"));
    };
    let mut action = action.clone();
    if query.get("expand").map(String::as_str) != Some("contract") {
        action.contract = None;
    }
    if query.get("includeConfig").map(String::as_str) != Some("true") {
        action.config = None;
    }
    shared.json(200, &json!(action))
}

/// Runs an action on `input`: the output, or the status and data-action error body.
fn run_action(shared: &Shared, input: &Value) -> Result<Value, (u16, Value)> {
    let Some(object) = input.as_object() else {
        return Err((
            400,
            platform_error(400, "bad.request", "The request body must be a JSON object"),
        ));
    };
    let Some(order_id) = object.get("orderId") else {
        return Ok(json!({"received": input, "status": "OK"}));
    };
    let Some(order_id) = order_id.as_str() else {
        return Err((
            400,
            platform_error(400, "bad.request", "Input orderId must be a string"),
        ));
    };
    match shared.orders.get(order_id) {
        Some(order) => Ok(order.clone()),
        None => {
            let mut body = platform_error(
                400,
                "bad.request",
                &format!(
                    "REST call for action execute failed. Message: Request to backend service \
                     failed. Response from web service: {{\"error\":\"order {order_id} not found\"}} \
                     [404 Not Found]"
                ),
            );
            body["details"] = json!([{"errorCode": "ACTION.REMOTE_ENDPOINT", "fieldName": "", "entityId": "", "entityName": ""}]);
            body["errorCode"] = json!("ACTION.REMOTE_ENDPOINT");
            body["userMessage"] = json!(format!("The order {order_id} was not found."));
            Err((400, body))
        }
    }
}

fn flatten_into(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(&key, value, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

async fn execute_action(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    if shared.find(&id).is_none() {
        return shared.error(404, "not.found", &format!("Action {id} not found"));
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return shared.error(400, "bad.request", "The request body is not valid JSON");
    };
    match run_action(&shared, &input) {
        Ok(output) => {
            let output = if query.get("flatten").map(String::as_str) == Some("true") {
                let mut flat = Map::new();
                flatten_into("", &output, &mut flat);
                Value::Object(flat)
            } else {
                output
            };
            shared.json(200, &output)
        }
        Err((status, mut error)) => {
            let correlation_id = format!("action-{id}");
            error["correlationId"] = json!(correlation_id);
            shared.json(status, &error)
        }
    }
}

async fn test_action(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    if shared.find(&id).is_none() {
        return shared.error(404, "not.found", &format!("Action {id} not found"));
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return shared.error(400, "bad.request", "The request body is not valid JSON");
    };
    let result = match run_action(&shared, &input) {
        Ok(output) => json!({
            "operations": [
                {"step": 1, "name": "Resolve request configuration templates", "success": true, "result": input},
                {"step": 2, "name": "Execute request", "success": true, "result": output},
                {"step": 3, "name": "Resolve translation map", "success": true, "result": output},
            ],
            "finalResult": output,
            "success": true,
        }),
        Err((_, error)) => json!({
            "operations": [
                {"step": 1, "name": "Resolve request configuration templates", "success": true, "result": input},
                {"step": 2, "name": "Execute request", "success": false},
            ],
            "error": error,
            "success": false,
        }),
    };
    shared.json(200, &result)
}

async fn not_found(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    shared.error(
        404,
        "not.found",
        &format!("The requested resource {} was not found", uri.path()),
    )
}

/// The fake's default data actions: 29 actions in 12 categories, five of them order lookups
/// whose names contain `order_lookup` in different cases and positions, and a few near misses
/// (`orders.list_recent`, `order-lookup.deprecated`, `lookup_order.v0`).
pub fn default_actions() -> Vec<Action> {
    let specs: [(&str, &str, bool); 29] = [
        ("crm.customer_lookup", "CRM", false),
        ("crm.order_lookup.v1", "CRM", false),
        ("billing.balance_get", "Billing", false),
        ("Order_Lookup - Legacy SOAP", "Legacy", false),
        ("crm.case_create", "CRM", false),
        ("erp.invoice_fetch", "ERP", false),
        ("crm.order_lookup.v2", "CRM", false),
        ("billing.payment_create", "Billing", true),
        ("erp.stock_check", "ERP", false),
        ("orders.list_recent", "Shop", false),
        ("erp.order_lookup_by_email", "ERP", false),
        ("identity.verify_pin", "Identity", true),
        ("crm.case_update", "CRM", false),
        ("shop.returns.order_lookup", "Shop", false),
        ("erp.shipment_track", "ERP", false),
        ("order-lookup.deprecated", "Legacy", false),
        ("crm.contact_search", "CRM", false),
        ("billing.refund_create", "Billing", true),
        ("shop.cart_get", "Shop", false),
        ("lookup_order.v0", "Legacy", false),
        ("shop.coupon_validate", "Shop", false),
        ("sms.send", "Messaging", false),
        ("email.send", "Messaging", false),
        ("weather.current", "Web Services Data Actions", false),
        ("zendesk.ticket_create", "Zendesk", false),
        ("salesforce.account_get", "Salesforce", false),
        ("salesforce.opportunity_list", "Salesforce", false),
        ("servicenow.incident_create", "ServiceNow", false),
        ("servicenow.incident_get", "ServiceNow", false),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, (name, category, secure))| {
            let id = format!("custom_-_{:08x}-4a1c-4f0e-9b7d-{:012x}", 0x5e1f_0000 + i, i + 1);
            let integration = format!(
                "{:08x}-77c1-4e2b-8d0a-{:012x}",
                category.bytes().map(u32::from).sum::<u32>(),
                category.len()
            );
            let is_order_lookup = name.to_lowercase().contains("order_lookup");
            let (input_schema, url) = if is_order_lookup {
                (
                    json!({"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}}}),
                    "https://erp.example.com/api/orders/${input.orderId}",
                )
            } else {
                (
                    json!({"type": "object", "properties": {}}),
                    "https://backend.example.com/api/${input.resource}",
                )
            };
            Action::new(id.clone(), *name)
                .with_category(*category)
                .with_integration_id(integration)
                .with_secure(*secure)
                .with_version(1 + (i as u32 % 3))
                .with_self_uri(format!("{ACTIONS_ROUTE}/{id}"))
                .with_contract(ActionContract::new(
                    input_schema,
                    json!({"type": "object", "properties": {"orderId": {"type": "string"}, "status": {"type": "string"}}}),
                ))
                .with_config(ActionConfig {
                    request: Some(RequestConfig {
                        request_url_template: Some(url.to_owned()),
                        request_type: Some("GET".to_owned()),
                        headers: Some(BTreeMap::from([(
                            "Accept".to_owned(),
                            "application/json".to_owned(),
                        )])),
                        request_template: Some("${input.rawRequest}".to_owned()),
                    }),
                    response: Some(ResponseConfig {
                        translation_map: None,
                        translation_map_defaults: None,
                        success_template: Some("${rawResult}".to_owned()),
                    }),
                })
        })
        .collect()
}

/// The fake's default orders, looked up by `orderId`: `A-1001`, `A-1002`, `A-1003`, `B-2001`.
pub fn default_orders() -> BTreeMap<String, Value> {
    let order = |id: &str, status: &str, name: &str, email: &str, total: f64, items: Value| {
        (
            id.to_owned(),
            json!({
                "orderId": id,
                "status": status,
                "customer": {"name": name, "email": email},
                "total": total,
                "currency": "EUR",
                "items": items,
                "updatedAt": "2026-11-20T09:14:03Z",
            }),
        )
    };
    BTreeMap::from([
        order(
            "A-1001",
            "SHIPPED",
            "Ada Lovelace",
            "ada@example.com",
            129.95,
            json!([{"sku": "KB-101", "quantity": 1, "price": 99.95}, {"sku": "MS-7", "quantity": 1, "price": 30.0}]),
        ),
        order(
            "A-1002",
            "PROCESSING",
            "Grace Hopper",
            "grace@example.com",
            42.5,
            json!([{"sku": "CB-3", "quantity": 5, "price": 8.5}]),
        ),
        order(
            "A-1003",
            "CANCELLED",
            "Alan Turing",
            "alan@example.com",
            0.0,
            json!([]),
        ),
        order(
            "B-2001",
            "DELIVERED",
            "Katherine Johnson",
            "katherine@example.com",
            310.0,
            json!([{"sku": "MON-27", "quantity": 1, "price": 310.0}]),
        ),
    ])
}
