//! `action-cache-proxy`: a caching proxy between Genesys Cloud Data Actions and a CRM (or any
//! HTTP JSON API), configured by a TOML file, on top of [`action_cache`].
//!
//! Each `[[routes]]` entry maps an incoming path template to an upstream path; answers are
//! cached in Redis with stale-while-revalidate windows, concurrent misses share one upstream
//! call, bodies are served back byte for byte with `Age`, `X-Cache` and `Cache-Status`
//! (RFC 9211), and a signed webhook purges by route or tag.
//!
//! ```
//! use action_cache_proxy::{Config, Proxy};
//!
//! let toml = r#"
//!     [upstreams.crm]
//!     base_url = "https://crm.internal/api"
//!     timeout = "5s"
//!
//!     [[routes]]
//!     name = "account"
//!     path = "/accounts/{id}"
//!     upstream = "crm"
//!     upstream_path = "/v1/accounts/{id}"
//!     fresh = "5m"
//!     stale = "15m"
//!     tags = ["account:{id}"]
//!     negative = { statuses = [404], ttl = "30s" }
//! "#;
//! let config = Config::from_toml(toml, "proxy.toml", &|var| std::env::var(var).ok())?;
//! assert_eq!(config.routes[0].upstream_path.as_str(), "/v1/accounts/{id}");
//!
//! // No [redis] url: an in-memory cache. `proxy.serve(listener, shutdown)` runs it.
//! let proxy = Proxy::builder(config).build()?;
//! let _router = proxy.router();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`config`] documents every key of the file and how mistakes are reported.
//! - [`cache_control`] is how a route with `cache_control = "honour"` reads the upstream's
//!   `Cache-Control` (RFC 9111, RFC 5861).
//! - [`params`] is what counts as a valid path parameter (hostile input is refused with 400
//!   before any lookup).
//! - [`signature`] is the purge webhook's signature scheme and replay guard.
//! - [`genesys`] exports the routes as Genesys Cloud Data Action definitions.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod access_log;
pub mod cache_control;
pub mod config;
pub mod genesys;
pub mod metrics;
pub mod params;
mod purge;
mod read;
pub mod server;
pub mod signature;
pub mod stored;
pub mod template;
pub mod upstream;

pub use config::Config;
pub use server::{BuildError, Proxy, ProxyBuilder};
