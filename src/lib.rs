//! action-cache: stale-while-revalidate caching of expensive backend calls over Redis.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

pub use action_cache_core::*;
pub use action_cache_macros::*;
/// The Genesys Cloud Platform API client.
pub use genesys_client as genesys;
