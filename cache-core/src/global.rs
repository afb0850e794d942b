//! The process-wide default cache, in the spirit of `tracing`'s global dispatcher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use crate::cache::Cache;

static GLOBAL: OnceLock<Cache> = OnceLock::new();
static WARNED: AtomicBool = AtomicBool::new(false);

/// Sets the process-wide cache that `#[cached_action]` functions use by default.
///
/// # Errors
///
/// Gives `cache` back when a global cache was already set (the first one stays).
///
/// ```
/// use action_cache_core::{global, set_global, Cache};
///
/// set_global(Cache::in_memory()).expect("first call");
/// assert!(set_global(Cache::in_memory()).is_err());
/// assert!(global().is_some());
/// ```
pub fn set_global(cache: Cache) -> Result<(), Cache> {
    let mut offered = Some(cache);
    GLOBAL.get_or_init(|| offered.take().expect("taken once"));
    match offered {
        None => Ok(()),
        Some(rejected) => Err(rejected),
    }
}

/// The process-wide cache, if one was set.
pub fn global() -> Option<&'static Cache> {
    GLOBAL.get()
}

/// The process-wide cache; when none is set, logs one warning per process (naming `site`, the
/// first function that ran uncached) and returns `None`, so the caller runs uncached.
pub fn global_or_warn(site: &'static str) -> Option<&'static Cache> {
    let cache = GLOBAL.get();
    if cache.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            function = site,
            "no global cache configured (action_cache::set_global); cached functions run uncached"
        );
    }
    cache
}
