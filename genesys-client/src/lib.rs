//! A Genesys Cloud Platform API client: OAuth client-credentials tokens, retries and paging,
//! with the data-action endpoints.
//!
//! ```
//! # #[cfg(feature = "fake")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use genesys_client::fake::FakeGenesys;
//! use genesys_client::ExecuteOptions;
//! use serde_json::json;
//!
//! // A local server that speaks the Genesys wire format (feature `fake`).
//! let fake = FakeGenesys::start().await?;
//! let client = fake.client_builder().build()?;
//!
//! let actions = client.actions_with_name_containing("order_lookup").await?;
//! assert!(actions.len() >= 3);
//!
//! let output = client
//!     .execute_action(&actions[0].id, &json!({"orderId": "A-1001"}), &ExecuteOptions::default())
//!     .await?;
//! assert_eq!(output.body()["orderId"], "A-1001");
//! assert!(output.correlation_id().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Against a real org, configure the region and credentials (or use [`Client::from_env`]):
//!
//! ```no_run
//! use genesys_client::{Client, ClientSecret, ListActionsQuery, Region};
//!
//! # async fn run() -> Result<(), genesys_client::Error> {
//! let client = Client::builder()
//!     .region(Region::EuWest1)
//!     .credentials("my-client-id", ClientSecret::new("my-client-secret"))
//!     .build()?;
//! let page = client.list_actions(&ListActionsQuery::new().page_size(25)).await?;
//! println!("{} actions, correlation id {:?}", page.body().total.unwrap_or(0), page.correlation_id());
//! # Ok(())
//! # }
//! ```
//!
//! # Executing data actions: when a call is sent again
//!
//! `POST /api/v2/integrations/actions/{id}/execute` runs the customer's data action, which may
//! write (create a case, send an SMS). So a failed execution is resent only when Genesys
//! cannot have run it:
//!
//! * **Resent:** HTTP 429 and 503 (Genesys refused it), and a connect error before anything
//!   was written; 429 and 503 wait as long as `Retry-After` says.
//! * **Not resent:** a 500, 502 or 504, a timeout, a connection lost after the request was
//!   sent, a response cut off in transit. The call ends with [`Error::MaybeExecuted`]; its
//!   [`Doubt`] says which case it was, and the action may or may not have run.
//! * **Opt in:** mark an action that is safe to run twice (a lookup) with
//!   [`ExecuteOptions::idempotent`] and it is retried after any transient failure, like a GET.
//!
//! GETs and token requests are retried after every transient failure (see
//! [`default_classifier`]): 429, 500, 502, 503, 504, connect errors, timeouts, resets, and a
//! body cut off in transit ([`Error::BodyCutOff`]); a whole body that is not valid JSON is not
//! retried. `POST`s made with [`Client::post_json`] follow the execution rule;
//! [`Client::post_json_idempotent`] is for read-only POSTs (queries).
//!
//! # Staying inside the org's limits
//!
//! Genesys documents per-org limits: 50 data-action executions running at once, 2,500
//! executions per minute, and 300 Platform API requests per minute per token. Each client has
//! a limiter ([`Limits`], on by default with exactly those numbers) so that a burst of callers
//! waits in line instead of becoming a storm of 429s:
//!
//! * at most 50 executions in flight; more wait, first come, first served;
//! * at most 2,500 executions and 300 API requests (executions included) in any 60 s, a
//!   sliding window, so no fixed minute of Genesys's sees more;
//! * a response whose `inin-ratelimit-count` reached `inin-ratelimit-allowed` holds every new
//!   request until `inin-ratelimit-reset` has passed, and so does a 429's `Retry-After`;
//! * every attempt passes the limiter (retries included; token requests do not), and time
//!   spent in line does not count against the [`RetryPolicy`]'s total time.
//!
//! Lower the numbers when several clients share an org, or turn the limiter off with
//! [`Limits::off`]. Retries of all calls of a client also share one [`RetryBudget`] (as
//! `tower`'s retry budget: retries stay within 20 % of the calls plus 10 per second), so a
//! failing Genesys gets about 1.2 times the traffic, not 5 times; a call refused a retry ends
//! with [`Error::RetryBudgetExhausted`]. [`RetryBudget::off`] turns it off.
//!
//! # What is where
//!
//! Every type is at the crate root:
//!
//! * [`Client`], [`ClientBuilder`], [`Region`], [`Credentials`], [`ClientSecret`],
//!   [`AccessToken`]: configuration, the shared OAuth token (one refresh per expiry, whose
//!   outcome, token or error, every waiting caller gets), secrets that print as `***`.
//! * [`oauth`]: the generic OAuth 2.0 client-credentials part that Genesys's login is built
//!   on, for any token endpoint: [`oauth::ClientCredentialsToken`] (a cached token, one
//!   shared refresh, an expiry margin, RFC 6749 error responses as [`oauth::TokenError`]).
//! * [`RetryPolicy`], [`ExponentialBackoff`], [`Classification`], [`RetryBudget`],
//!   [`Limits`]: when and whether to retry, and how fast to go.
//! * [`Paginator`], [`EntityListing`], [`CursorListing`]: listings by page number and by
//!   cursor, including cursor listings linked only by `nextUri` (which must stay on the API
//!   host); a listing the paginator does not understand is an error, never a short result.
//! * [`Action`], [`ListActionsQuery`], [`GetActionOptions`], [`ExecuteOptions`]: data actions.
//! * [`Error`], [`ErrorBody`], [`ResponseMeta`], [`ApiResponse`]: errors and responses, with
//!   the correlation id and rate-limit headers.
//! * `fake` (feature `fake`): an in-process fake Genesys server that enforces the org limits,
//!   with scripted faults and an optional latency.
//!
//! Setters: builders (`ClientBuilder`, `ListActionsQuery`, the fake's builder) take bare names
//! (`.region(..)`); values that also have getters (`RetryPolicy`, `ExponentialBackoff`,
//! `Limits`, `RetryBudget`, `Action`) take `with_*` setters.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod actions;
mod auth;
mod budget;
mod builder;
mod client;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
mod limit;
mod meta;
pub mod oauth;
mod paging;
mod region;
mod retry;
mod secret;
mod transfer;

pub use actions::{
    Action, ActionConfig, ActionContract, ActionTestResult, ContractInput, ContractOutput,
    ExecuteOptions, GetActionOptions, ListActionsQuery, RequestConfig, ResponseConfig, SortOrder,
    TestOperation, ACTIONS_PATH, DEFAULT_WALK_PAGE_SIZE,
};
pub use auth::{DEFAULT_TOKEN_LIFETIME, DEFAULT_TOKEN_MARGIN};
pub use budget::RetryBudget;
pub use builder::{
    ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, ENV_CLIENT_ID,
    ENV_CLIENT_SECRET, ENV_REGION,
};
pub use client::Client;
pub use error::{
    default_classifier, default_classify_status, default_classify_transport, Classification,
    Classifier, Doubt, Error, ErrorBody, ErrorDetail, Result, SNIPPET_CHARS,
};
pub use limit::{
    Limits, DEFAULT_EXECUTIONS_PER_MINUTE, DEFAULT_MAX_CONCURRENT_EXECUTIONS,
    DEFAULT_REQUESTS_PER_MINUTE,
};
pub use meta::{
    ApiResponse, RateLimit, ResponseMeta, CORRELATION_ID_HEADER, RATE_LIMIT_ALLOWED_HEADER,
    RATE_LIMIT_COUNT_HEADER, RATE_LIMIT_RESET_HEADER,
};
pub use oauth::Credentials;
pub use paging::{
    CursorListing, Cursors, EntityListing, NextPage, Page, PageRequest, Paginator,
    DEFAULT_MAX_PAGES,
};
pub use region::Region;
pub use reqwest::StatusCode;
pub use retry::{ExponentialBackoff, InvalidRetryPolicy, RetryPolicy};
pub use secret::{AccessToken, ClientSecret};
