//! The CRM caching proxy as a library, so that `examples/crm_proxy.rs` and the integration test
//! `tests/example_crm_proxy.rs` build the same service.
//!
//! - [`app`]: the `axum` router: account reads through the cache, the signed purge webhook,
//!   health and metrics.
//! - [`crm`]: the HTTP client of the CRM (`GET {base}/accounts/{id}` with a bounded timeout).
//! - [`fake_crm`]: a built-in CRM for running without one (50 ms per call, switchable down).
//! - [`metrics`]: Prometheus text exposition of the cache counters and a latency histogram.
//! - [`webhook`]: the purge request and its `X-Signature-256` HMAC check.

pub(crate) mod app;
pub(crate) mod crm;
pub(crate) mod fake_crm;
pub(crate) mod metrics;
pub(crate) mod webhook;
