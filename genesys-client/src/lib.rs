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
//! use genesys_client::{Client, ClientSecret, Region};
//! use genesys_client::actions::ListActionsQuery;
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
//! * [`region`]: the regions and their hosts.
//! * [`auth`] and [`secret`]: credentials, the shared token, secrets that print as `***`.
//! * [`retry`]: whether to retry (a classifier) and when (a policy with backoff).
//! * [`paging`]: the entity listing and a paginator for page numbers and cursors.
//! * [`actions`]: data-action models and endpoints.
//! * [`error`]: the one [`Error`] type.
//! * `fake` (feature `fake`): an in-process fake Genesys server.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod actions;
pub mod auth;
pub mod budget;
mod builder;
pub mod client;
pub mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod limit;
mod meta;
pub mod paging;
pub mod region;
pub mod retry;
pub mod secret;
mod transfer;

pub use actions::{Action, ExecuteOptions, GetActionOptions, ListActionsQuery, SortOrder};
pub use auth::Credentials;
pub use budget::RetryBudget;
pub use builder::{
    ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, ENV_CLIENT_ID,
    ENV_CLIENT_SECRET, ENV_REGION,
};
pub use client::Client;
pub use error::{
    default_classifier, default_classify_status, default_classify_transport, Classification,
    Classifier, Doubt, Error, ErrorBody, Result,
};
pub use limit::Limits;
pub use meta::{
    ApiResponse, RateLimit, ResponseMeta, CORRELATION_ID_HEADER, RATE_LIMIT_ALLOWED_HEADER,
    RATE_LIMIT_COUNT_HEADER, RATE_LIMIT_RESET_HEADER,
};
pub use paging::{EntityListing, Paginator};
pub use region::Region;
pub use reqwest::StatusCode;
pub use retry::{ExponentialBackoff, InvalidRetryPolicy, RetryPolicy};
pub use secret::{AccessToken, ClientSecret};
