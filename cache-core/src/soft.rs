//! Soft purges: an entry is marked stale instead of removed, so the next read is served at once
//! and refreshes it (`Cache::mark_stale`, `Cache::mark_stale_tag`).

use std::time::Duration;

use crate::engine::Engine;
use crate::entry::{self, Meta};
use crate::error::StoreError;

/// How often an entry that keeps changing under the rewrite is read again before it is removed.
const ATTEMPTS: usize = 3;

/// Marks the entry under `full` stale: same value, same stale deadline, a fresh window that
/// has just ended and a new write token (so a refresh that read the old entry cannot write over
/// it). Returns whether there was a live entry. An entry this cannot rewrite (a foreign layout,
/// or one that keeps changing) is removed instead, which is always safe.
pub(crate) async fn mark_stale(s: &Engine, full: &str) -> Result<bool, StoreError> {
    for _ in 0..ATTEMPTS {
        let Some(bytes) = s.store_op("get", s.store().get(full)).await? else {
            return Ok(false);
        };
        let now = s.clock().now_ms();
        let Some(meta) = entry::meta(&bytes) else {
            return s.store_op("delete", s.store().delete(full)).await;
        };
        let end = meta.at.saturating_add(meta.stale);
        if end <= now {
            return Ok(false);
        }
        if meta.at.saturating_add(meta.fresh) <= now {
            return Ok(true); // already stale
        }
        let stale_now = Meta {
            fresh: now.saturating_sub(meta.at),
            ..meta
        };
        let Some(new) = entry::restamp(&bytes, stale_now, s.random_token()) else {
            return s.store_op("delete", s.store().delete(full)).await;
        };
        let ttl = Duration::from_millis(end - now);
        let replace = s
            .store()
            .replace_if(full, entry::token(&bytes), &new, ttl, &[]);
        if s.store_op("replace_if", replace).await? {
            return Ok(true);
        }
        // Written or refreshed meanwhile: look again.
    }
    s.store_op("delete", s.store().delete(full)).await
}
