//! `#[cached_action]` return types against a real Redis: an `Err` (or a `None`) is never cached,
//! however the `Result` (or `Option`) is spelled, because the macro decides by the type.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use action_cache::{cached_action, Cache};
use action_cache_testing::RedisServer;
use serde::{Deserialize, Serialize};

thread_local! {
    static CURRENT: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// The cache of the running test (tests use current-thread runtimes, one per test thread).
fn cache() -> Cache {
    CURRENT.with(|c| c.borrow().clone().expect("test cache installed"))
}

fn harness() -> RedisServer {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("cache");
    CURRENT.with(|c| *c.borrow_mut() = Some(cache));
    server
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    load: usize,
}

/// An error that serde could store: nothing but the type keeps it out of the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ApiError(String);

type ApiResult<T> = Result<T, ApiError>;

/// An error that is neither `Serialize` nor `Deserialize`, as most are.
#[derive(Debug, Clone, PartialEq)]
struct PlainError(String);

type PlainResult<T> = Result<T, PlainError>;

/// How `anyhow` spells it: `anyhow::Result<T>` is `Result<T, anyhow::Error>` with a default.
mod anyhow_like {
    pub(super) type Error = std::sync::Arc<str>;
    pub(super) type Result<T, E = Error> = std::result::Result<T, E>;
}

type Maybe<T> = Option<T>;

/// Fails the first `failures` calls, then succeeds; returns what a load returned.
fn attempt(calls: &AtomicUsize, failures: usize, id: u32) -> Result<Order, String> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    if n < failures {
        Err(format!("attempt {n} failed"))
    } else {
        Ok(Order { id, load: n })
    }
}

#[tokio::test]
async fn an_err_through_a_type_alias_is_not_cached() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn order(id: u32) -> ApiResult<Order> {
        attempt(&CALLS, 2, id).map_err(ApiError)
    }

    let _server = harness();
    assert_eq!(order(1).await, Err(ApiError("attempt 0 failed".into())));
    assert_eq!(order(1).await, Err(ApiError("attempt 1 failed".into())));
    let ok = order(1).await.unwrap();
    assert_eq!(ok.load, 2);
    assert_eq!(order(1).await, Ok(ok.clone()), "the Ok is cached");
    assert_eq!(count(&CALLS), 3);
    // The companion writes the value type, as for a spelled-out `Result`.
    let planted = Order { id: 1, load: 99 };
    order_put(1, &planted).await.unwrap();
    assert_eq!(order(1).await, Ok(planted));
}

#[tokio::test]
async fn an_alias_whose_error_is_not_serialize() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn order(id: u32) -> PlainResult<Order> {
        attempt(&CALLS, 1, id).map_err(PlainError)
    }

    let _server = harness();
    assert_eq!(order(2).await, Err(PlainError("attempt 0 failed".into())));
    assert_eq!(order(2).await.unwrap().load, 1);
    assert_eq!(order(2).await.unwrap().load, 1);
    assert_eq!(count(&CALLS), 2);
}

#[tokio::test]
async fn a_path_result_with_a_default_error_type() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn order(id: u32) -> anyhow_like::Result<Order> {
        attempt(&CALLS, 1, id).map_err(Arc::from)
    }

    let _server = harness();
    assert_eq!(&*order(3).await.unwrap_err(), "attempt 0 failed");
    assert_eq!(order(3).await.unwrap().load, 1);
    assert_eq!(order(3).await.unwrap().load, 1);
    assert_eq!(count(&CALLS), 2);
}

#[tokio::test]
async fn io_result_is_a_result() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    // `io::Error` is not `Clone`, so it cannot be shared among coalesced callers.
    #[cached_action(fresh = 60, coalesce = false, cache = cache())]
    async fn read(id: u32) -> std::io::Result<Order> {
        attempt(&CALLS, 1, id).map_err(std::io::Error::other)
    }

    let _server = harness();
    assert_eq!(read(4).await.unwrap_err().to_string(), "attempt 0 failed");
    assert_eq!(read(4).await.unwrap().load, 1);
    assert_eq!(read(4).await.unwrap().load, 1);
    assert_eq!(count(&CALLS), 2);
}

#[tokio::test]
async fn a_none_through_an_option_alias_is_not_cached() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn find(id: u32) -> Maybe<Order> {
        attempt(&CALLS, 2, id).ok()
    }

    let _server = harness();
    assert_eq!(find(5).await, None);
    assert_eq!(find(5).await, None);
    assert_eq!(find(5).await.unwrap().load, 2);
    assert_eq!(find(5).await.unwrap().load, 2);
    assert_eq!(count(&CALLS), 3);
    find_put(6, &Order { id: 6, load: 7 }).await.unwrap();
    assert_eq!(find(6).await.unwrap().load, 7);
}

#[tokio::test]
async fn an_option_alias_with_cache_none() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache_none = true, cache = cache())]
    async fn find(id: u32) -> Maybe<Order> {
        attempt(&CALLS, 2, id).ok()
    }

    let _server = harness();
    assert_eq!(find(7).await, None);
    assert_eq!(find(7).await, None, "None is cached");
    assert_eq!(count(&CALLS), 1);
    find_put(7, &Some(Order { id: 7, load: 9 })).await.unwrap();
    assert_eq!(find(7).await.unwrap().load, 9);
}

/// A generic return type is a plain value: the whole of it is stored.
#[tokio::test]
async fn a_generic_return_type_is_a_value() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn make<T: Default + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
        id: u32,
    ) -> T {
        let _ = id;
        CALLS.fetch_add(1, Ordering::SeqCst);
        T::default()
    }

    let _server = harness();
    assert_eq!(make::<u32>(1).await, 0);
    assert_eq!(make::<String>(1).await, "");
    assert_eq!(make::<u32>(1).await, 0);
    assert_eq!(count(&CALLS), 2);
}

#[tokio::test]
async fn explicit_returns_overrides() {
    static RESULT_CALLS: AtomicUsize = AtomicUsize::new(0);
    static OPTION_CALLS: AtomicUsize = AtomicUsize::new(0);
    static VALUE_CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, returns = "result", cache = cache())]
    async fn as_result(id: u32) -> ApiResult<Order> {
        attempt(&RESULT_CALLS, 1, id).map_err(ApiError)
    }
    #[cached_action(fresh = 60, returns = "option", cache = cache())]
    async fn as_option(id: u32) -> Maybe<Order> {
        attempt(&OPTION_CALLS, 1, id).ok()
    }
    // `value` stores the whole value, so an `Option`'s `None` too.
    #[cached_action(fresh = 60, returns = "value", cache = cache())]
    async fn as_value(id: u32) -> Maybe<Order> {
        attempt(&VALUE_CALLS, 1, id).ok()
    }

    let _server = harness();
    assert!(as_result(1).await.is_err());
    assert!(as_result(1).await.is_ok());
    assert!(as_result(1).await.is_ok());
    assert_eq!(count(&RESULT_CALLS), 2);
    assert!(as_option(1).await.is_none());
    assert!(as_option(1).await.is_some());
    assert!(as_option(1).await.is_some());
    assert_eq!(count(&OPTION_CALLS), 2);
    assert!(as_value(1).await.is_none());
    assert!(as_value(1).await.is_none(), "None is stored as a value");
    assert_eq!(count(&VALUE_CALLS), 1);
    as_value_put(1, &Some(Order { id: 1, load: 5 }))
        .await
        .unwrap();
    assert_eq!(as_value(1).await.unwrap().load, 5);
}

/// A stale hit's background refresh follows the same rule: a failed refresh keeps the old value.
#[tokio::test]
async fn a_failed_background_refresh_through_an_alias_keeps_the_value() {
    use action_cache::ManualClock;
    use std::time::Duration;

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static FAIL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    #[cached_action(fresh = 10, stale = 100, jitter = 0.0, cache = cache())]
    async fn order(id: u32) -> ApiResult<Order> {
        let load = CALLS.fetch_add(1, Ordering::SeqCst);
        if FAIL.load(Ordering::SeqCst) {
            return Err(ApiError("down".into()));
        }
        Ok(Order { id, load })
    }

    let server = RedisServer::start();
    let clock = ManualClock::new();
    let c = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    CURRENT.with(|cur| *cur.borrow_mut() = Some(c.clone()));

    assert_eq!(order(1).await.unwrap().load, 0);
    FAIL.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(11));
    assert_eq!(order(1).await.unwrap().load, 0, "stale hit");
    action_cache_testing::eventually("the refresh fails", Duration::from_secs(5), || {
        c.stats().refreshes_failed == 1
    })
    .await;
    assert_eq!(order(1).await.unwrap().load, 0, "the Err was not stored");
}
