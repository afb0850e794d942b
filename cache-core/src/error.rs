//! The error types of the cache engine.

use std::sync::Arc;
use std::time::Duration;

/// What went wrong with the cache itself (configuration, or a store call made on purpose such as
/// an invalidation). Reads and loads never fail with this: they fail open to the loader.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache was configured wrongly; the message says what to change.
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// A policy could not be built.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A value could not be encoded for the store.
    #[error("cannot encode the value for key {key}: {source}")]
    Encode {
        /// The full store key.
        key: String,
        /// What serde said.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The entry is larger than the configured maximum entry size.
    #[error("entry for key {key} is {size} bytes, over the maximum of {max} bytes")]
    TooLarge {
        /// The full store key.
        key: String,
        /// The encoded size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The store failed or timed out.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failure of the backing store (Redis or memory).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The operation did not finish within the store's operation timeout.
    #[error("store operation `{op}` timed out after {timeout:?}")]
    Timeout {
        /// The operation, e.g. `get`.
        op: &'static str,
        /// The timeout in force.
        timeout: Duration,
    },
    /// Calls to the store are skipped for a cool-down after repeated failures.
    #[error("store skipped: circuit breaker open after repeated failures")]
    CircuitOpen,
    /// A key holds a value of another Redis type (e.g. a list where a string was expected).
    #[error("key {key} holds a value of the wrong type")]
    WrongType {
        /// The full store key.
        key: String,
    },
    /// No connection could be made.
    #[error("cannot connect to the store: {message}")]
    Connect {
        /// What the client said.
        message: String,
    },
    /// This store cannot do the operation (a custom store without it).
    #[error("the store does not support `{op}`")]
    Unsupported {
        /// The operation, e.g. `tag_members`.
        op: &'static str,
    },
    /// Redis answered with an error or the connection failed (feature `redis`).
    #[cfg(feature = "redis")]
    #[error("redis error during `{op}`: {source}")]
    Redis {
        /// The operation, e.g. `get`.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Arc<redis::RedisError>,
    },
}

impl StoreError {
    /// Whether this error says something about the store's health (and so counts towards the
    /// circuit breaker), as opposed to the data under one key.
    pub fn is_unavailable(&self) -> bool {
        !matches!(
            self,
            StoreError::WrongType { .. } | StoreError::Unsupported { .. }
        ) && !self.is_out_of_memory()
    }

    /// Whether the store refused a write because it is full (Redis `maxmemory` with
    /// `noeviction`). It still serves reads, so this does not count towards the circuit breaker.
    pub fn is_out_of_memory(&self) -> bool {
        #[cfg(feature = "redis")]
        if let StoreError::Redis { source, .. } = self {
            // A pipeline (an entry's `SET` with its tag sets) reports it inside a pipeline
            // failure.
            return source.code() == Some("OOM")
                || redis::RedisError::clone(source)
                    .into_server_errors()
                    .is_some_and(|errs| errs.iter().any(|(_, e)| e.code() == "OOM"));
        }
        false
    }

    /// Whether the operation timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, StoreError::Timeout { .. })
    }
}

/// A policy that cannot work, reported when the policy is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The fresh window is zero.
    #[error("the fresh window must be greater than zero")]
    ZeroFresh,
    /// The stale window ends before the fresh one.
    #[error("the stale window ({stale:?}) must not be shorter than the fresh window ({fresh:?})")]
    StaleBeforeFresh {
        /// The fresh window.
        fresh: Duration,
        /// The stale window.
        stale: Duration,
    },
    /// Jitter must be a finite number in `0.0..=1.0`.
    #[error("jitter must be within 0.0..=1.0, got {0}")]
    Jitter(f64),
    /// The XFetch `beta` must be finite and positive.
    #[error("early-refresh beta must be finite and > 0, got {0}")]
    Beta(f64),
}

/// An argument could not be turned into a key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A float argument is NaN or infinite: NaN has no stable identity (many bit patterns, never
    /// equal to itself), so such a call runs uncached rather than under a key that may not be its own.
    #[error("argument `{arg}` holds a non-finite float, which cannot be keyed without colliding with null")]
    NonFiniteFloat {
        /// The argument's name.
        arg: String,
    },
    /// The argument's `Serialize` implementation failed.
    #[error("argument `{arg}` cannot be serialized: {message}")]
    Serialize {
        /// The argument's name.
        arg: String,
        /// What serde said.
        message: String,
    },
    /// The same argument name was given twice.
    #[error("argument `{0}` was given twice")]
    DuplicateArg(String),
}

/// Why [`Cache::get_or_load`](crate::Cache::get_or_load) returned no value.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader returned an error (the leader's own, or a clone of it for a coalesced waiter).
    /// Errors are never cached.
    #[error("loader failed: {0:?}")]
    Loader(E),
    /// The loader panicked while this caller waited on it. The panicking caller itself sees the
    /// panic; the waiters see this, and the key is usable afterwards.
    #[error("the loader for key {key} panicked: {message}")]
    Panicked {
        /// The full store key.
        key: String,
        /// What is known of the panic.
        message: String,
    },
    /// Another caller's load of this key (in this process or another) was still running when
    /// this caller's patience, [`CacheBuilder::lock_wait`](crate::CacheBuilder::lock_wait), ran
    /// out. The caller did not load on its own: that is how a slow backend would get a herd.
    #[error("gave up on key {key} after it waited {waited:?} for another caller's load")]
    TimedOut {
        /// The full store key.
        key: String,
        /// How long this caller waited.
        waited: std::time::Duration,
    },
}

impl<E> LoadError<E> {
    /// Returns the loader's error.
    ///
    /// # Panics
    ///
    /// Re-raises the panic in this caller when the shared load panicked, so a panicking loader
    /// looks the same to every caller that waited on it; panics too for
    /// [`LoadError::TimedOut`], which has no loader error to return (match on it instead).
    pub fn into_loader_error(self) -> E {
        match self {
            LoadError::Loader(e) => e,
            LoadError::Panicked { key, message } => {
                panic!("the loader for key {key} panicked: {message}")
            }
            LoadError::TimedOut { key, waited } => {
                panic!("gave up on key {key} after it waited {waited:?} for another caller's load")
            }
        }
    }

    /// The loader's error, if that is what this is.
    pub fn loader_error(&self) -> Option<&E> {
        match self {
            LoadError::Loader(e) => Some(e),
            LoadError::Panicked { .. } | LoadError::TimedOut { .. } => None,
        }
    }
}
