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
//! * `GET /api/v2/externalcontacts/scan/contacts` (`limit`, `cursor`): a cursor listing
//!   (`CursorContactListing`) whose only link to the next page is `nextUri`.
//! * Every response has an `ININ-Correlation-Id` and `inin-ratelimit-*` headers; API calls without
//!   a valid (unexpired) bearer token get 401 `bad.credentials`.
//! * The per-org limits Genesys documents ([`OrgLimits::documented`]: 50 executions at once,
//!   2,500 executions and 300 API requests a minute, in fixed one-minute windows) are enforced
//!   with 429s; [`FakeGenesysBuilder::org_limits`] changes or lifts them.
//! * [`FakeGenesysBuilder::latency`] makes every API request take that long (80 ms is a
//!   realistic data-action round trip).
//! * [`Fault`]s scripted with [`FakeGenesys::push_fault`] answer the next API requests instead:
//!   429 with `Retry-After`, 5xx, malformed bodies, bodies cut off mid-transfer, 401, delays.
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

mod faults;
mod fixtures;
mod routes;
mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use faults::Fault;
pub use fixtures::{default_actions, default_contacts, default_orders};
pub use state::OrgLimits;

use crate::actions::Action;
use crate::builder::ClientBuilder;
use crate::secret::ClientSecret;
use state::{Mutable, Shared};
/// The client id the fake accepts unless configured otherwise.
pub const DEFAULT_CLIENT_ID: &str = "fake-client-id";
/// The client secret the fake accepts unless configured otherwise.
pub const DEFAULT_CLIENT_SECRET: &str = "fake-client-secret";
/// The requests per rate-limit window the fake reports in `inin-ratelimit-allowed`.
pub const RATE_LIMIT_ALLOWED: u64 = 300;

/// Configures a [`FakeGenesys`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FakeGenesysBuilder {
    client_id: String,
    client_secret: ClientSecret,
    token_lifetime: Duration,
    actions: Vec<Action>,
    orders: BTreeMap<String, Value>,
    contacts: Vec<Value>,
    max_page_size: u32,
    limits: OrgLimits,
    latency: Duration,
}

impl Default for FakeGenesysBuilder {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: ClientSecret::new(DEFAULT_CLIENT_SECRET),
            token_lifetime: Duration::from_secs(24 * 60 * 60),
            actions: default_actions(),
            orders: default_orders(),
            contacts: default_contacts(),
            max_page_size: 500,
            limits: OrgLimits::documented(),
            latency: Duration::ZERO,
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

    /// Replaces the external contacts that the cursor-paged scan endpoint walks (default
    /// [`default_contacts`]).
    pub fn contacts(mut self, contacts: Vec<Value>) -> Self {
        self.contacts = contacts;
        self
    }

    /// The org limits enforced with 429s (default [`OrgLimits::documented`]: 50 concurrent
    /// executions, 2,500 executions and 300 API requests per minute, in fixed one-minute
    /// windows from the start).
    pub fn org_limits(mut self, limits: OrgLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How long every API request takes before it is answered (default none; on tokio's
    /// clock). 80 ms is a realistic data-action round trip.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
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
            contacts: self.contacts,
            max_page_size: self.max_page_size,
            limits: self.limits,
            latency: self.latency,
            state: Mutex::new(Mutable {
                salt: rand::random(),
                ..Mutable::default()
            }),
        });
        let router = routes::router(shared.clone());
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

    /// The most data-action executions that ever ran at once.
    pub fn peak_executions_in_flight(&self) -> usize {
        self.shared.lock().peak_executing
    }

    /// How many requests the org limits answered with 429 (scripted faults not included).
    pub fn rate_limited(&self) -> usize {
        self.shared.lock().limited
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
