//! The timing and size settings the engine runs by (see [`CacheBuilder`](crate::CacheBuilder)
//! for what each means and its default).

use std::time::Duration;

use crate::codec::Codec;

/// Checked by the builder; read by the engine, the miss path, the lock and the refresher.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) op_timeout: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) refresh_capacity: usize,
    pub(crate) refresh_timeout: Duration,
    pub(crate) max_entry_bytes: usize,
    /// The codec of policies that name none.
    pub(crate) codec: Codec,
}
