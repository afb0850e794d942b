//! What `examples/crm_proxy.rs` and `tests/example_crm_proxy.rs` share: the proxy's
//! configuration for the example's settings, and the built-in fake CRM.
//!
//! - [`settings`]: the example's flags and environment variables as an `action-cache-proxy`
//!   configuration (one route, `GET /accounts/{id}`, and the `/webhooks/crm` purge webhook).
//! - [`fake_crm`]: a built-in CRM for running without one (50 ms per call, switchable down).

pub(crate) mod fake_crm;
pub(crate) mod settings;
