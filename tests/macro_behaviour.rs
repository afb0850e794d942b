//! `#[cached_action]` against a real Redis, through the root crate alone.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use action_cache::{cached_action, Cache, ManualClock};
use action_cache_testing::RedisServer;
use serde::{Deserialize, Serialize};

thread_local! {
    static CURRENT: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// The cache of the running test (tests use current-thread runtimes, one per test thread).
fn cache() -> Cache {
    CURRENT.with(|c| c.borrow().clone().expect("test cache installed"))
}

struct Harness {
    _server: RedisServer,
    clock: ManualClock,
    cache: Cache,
}

fn harness() -> Harness {
    let server = RedisServer::start();
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .redis_url(server.url())
        // Generous: under load a timed-out read fails open into a miss; these tests count.
        .op_timeout(std::time::Duration::from_secs(2))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("cache");
    CURRENT.with(|c| *c.borrow_mut() = Some(cache.clone()));
    Harness {
        _server: server,
        clock,
        cache,
    }
}

/// Polls until `done()` or a 5 s deadline, yielding to spawned refreshes in between.
async fn eventually(what: &str, done: impl FnMut() -> bool) {
    action_cache_testing::eventually(what, Duration::from_secs(5), done).await;
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

fn assert_send<F: Future + Send>(f: F) -> F {
    f
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    account_id: String,
    calls: usize,
}

#[derive(Debug)]
struct Crm {
    calls: AtomicUsize,
}

impl Clone for Crm {
    fn clone(&self) -> Self {
        Crm {
            calls: AtomicUsize::new(count(&self.calls)),
        }
    }
}

#[tokio::test]
async fn fresh_stale_and_expired_windows() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 10, stale = "30s", jitter = 0.0, cache = cache())]
    async fn windows(id: u32) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst) as u64 * 100 + u64::from(id)
    }

    let h = harness();
    assert_eq!(windows(1).await, 1, "miss runs the body");
    assert_eq!(windows(1).await, 1, "fresh hit");
    assert_eq!(count(&CALLS), 1);

    h.clock.advance(Duration::from_secs(15));
    assert_eq!(windows(1).await, 1, "stale hit returns the old value");
    eventually("background refresh", || count(&CALLS) == 2).await;
    eventually("refresh stored", || {
        h.cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(windows(1).await, 101, "refreshed value");
    assert_eq!(count(&CALLS), 2);

    h.clock.advance(Duration::from_secs(31));
    assert_eq!(windows(1).await, 201, "expired: a miss");
    assert_eq!(count(&CALLS), 3);
    assert_eq!(windows(2).await, 302, "another key is a miss");
}

#[tokio::test]
async fn skip_tags_and_companions() {
    #[cached_action(
        fresh = 300,
        stale = 900,
        skip(client),
        tags = ["account:{account_id}"],
        cache = cache()
    )]
    async fn account_summary(client: &Crm, account_id: &str) -> Result<Summary, String> {
        let calls = client.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Summary {
            account_id: account_id.to_owned(),
            calls,
        })
    }

    let h = harness();
    let crm = Crm {
        calls: AtomicUsize::new(0),
    };
    let other = Crm {
        calls: AtomicUsize::new(100),
    };
    let first = assert_send(account_summary(&crm, "acme")).await.unwrap();
    assert_eq!(first.calls, 1);
    // `client` is not in the key: another client hits the same entry.
    assert_eq!(account_summary(&other, "acme").await.unwrap(), first);
    assert_eq!(count(&other.calls), 100);

    // _key is the full store key, present in Redis.
    let key = account_summary_key("acme");
    assert!(key.starts_with("ac:"), "{key}");
    assert!(key.contains("account_summary"), "{key}");
    assert_ne!(key, account_summary_key("other"));

    // invalidate_tag purges it.
    assert_eq!(h.cache.invalidate_tag("account:acme").await.unwrap(), 1);
    assert_eq!(account_summary(&crm, "acme").await.unwrap().calls, 2);

    // _invalidate purges exactly this entry.
    assert!(account_summary_invalidate("acme").await.unwrap());
    assert!(!account_summary_invalidate("acme").await.unwrap());
    assert_eq!(account_summary(&crm, "acme").await.unwrap().calls, 3);

    // _put writes the entry a call reads (with its tags).
    let planted = Summary {
        account_id: "acme".into(),
        calls: 42,
    };
    account_summary_put("acme", &planted).await.unwrap();
    assert_eq!(account_summary(&crm, "acme").await.unwrap(), planted);
    assert_eq!(count(&crm.calls), 3);
    assert_eq!(h.cache.invalidate_tag("account:acme").await.unwrap(), 1);
}

#[tokio::test]
async fn errors_are_not_cached() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn flaky(id: u64) -> Result<u64, String> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        if n < 2 {
            Err(format!("attempt {n} failed"))
        } else {
            Ok(id * 10)
        }
    }

    let _h = harness();
    assert_eq!(flaky(4).await, Err("attempt 0 failed".to_string()));
    assert_eq!(flaky(4).await, Err("attempt 1 failed".to_string()));
    assert_eq!(flaky(4).await, Ok(40));
    assert_eq!(flaky(4).await, Ok(40));
    assert_eq!(count(&CALLS), 3);
}

#[tokio::test]
async fn option_returns_cache_some_but_not_none_by_default() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static CALLS_NONE: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn find(id: u32) -> Option<String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        id.is_multiple_of(2).then(|| format!("even {id}"))
    }
    #[cached_action(fresh = 60, cache_none = true, cache = cache())]
    async fn find_cache_none(id: u32) -> Option<String> {
        CALLS_NONE.fetch_add(1, Ordering::SeqCst);
        id.is_multiple_of(2).then(|| format!("even {id}"))
    }

    let _h = harness();
    assert_eq!(find(2).await.as_deref(), Some("even 2"));
    assert_eq!(find(2).await.as_deref(), Some("even 2"));
    assert_eq!(count(&CALLS), 1);
    assert_eq!(find(3).await, None);
    assert_eq!(find(3).await, None);
    assert_eq!(count(&CALLS), 3, "None is not cached");

    assert_eq!(find_cache_none(3).await, None);
    assert_eq!(find_cache_none(3).await, None);
    assert_eq!(count(&CALLS_NONE), 1, "None is cached with cache_none");
    find_cache_none_put(5, &Some("planted".into()))
        .await
        .unwrap();
    assert_eq!(find_cache_none(5).await.as_deref(), Some("planted"));
}

#[tokio::test]
async fn plain_returns_and_unit() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn plain(words: Vec<String>) -> usize {
        CALLS.fetch_add(1, Ordering::SeqCst);
        words.len()
    }
    #[cached_action(fresh = 60, cache = cache())]
    async fn unit(id: u8) {
        let _ = id;
        CALLS.fetch_add(10, Ordering::SeqCst);
    }

    let _h = harness();
    assert_eq!(plain(vec!["a".into(), "b".into()]).await, 2);
    assert_eq!(plain(vec!["a".into(), "b".into()]).await, 2);
    assert_eq!(plain(vec!["a".into()]).await, 1);
    assert_eq!(count(&CALLS), 2);
    unit(1).await;
    unit(1).await;
    assert_eq!(count(&CALLS), 12);
}

trait Backend: Send + Sync + 'static {
    fn fetch(&self, id: &str) -> String;
}

#[derive(Clone)]
struct Upper;
impl Backend for Upper {
    fn fetch(&self, id: &str) -> String {
        id.to_uppercase()
    }
}

#[tokio::test]
async fn generic_functions_and_where_clauses() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, skip(backend), cache = cache())]
    async fn via<B, K>(backend: &B, keys: &[K]) -> Vec<String>
    where
        B: Backend + Clone,
        K: Serialize + std::fmt::Display + Clone + Send + Sync + 'static,
    {
        CALLS.fetch_add(1, Ordering::SeqCst);
        keys.iter().map(|k| backend.fetch(&k.to_string())).collect()
    }

    let _h = harness();
    assert_eq!(via(&Upper, &["a", "b"]).await, vec!["A", "B"]);
    assert_eq!(via(&Upper, &["a", "b"]).await, vec!["A", "B"]);
    assert_eq!(via(&Upper, &[1, 2]).await, vec!["1", "2"]);
    assert_eq!(count(&CALLS), 2);
    // The companion only takes the generic the key uses.
    assert!(via_key(&["a", "b"][..]).contains("via"));
}

#[derive(Debug, Clone)]
struct Service {
    calls: Arc<AtomicUsize>,
    tenant: String,
}

impl Service {
    /// Docs and attributes are preserved.
    #[cached_action(fresh = 10, stale = 60, jitter = 0.0, cache = cache())]
    pub async fn lookup(&self, id: &str) -> Result<String, String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("{}:{id}:{n}", self.tenant))
    }

    #[cached_action(fresh = 10, include_self = true, refresh = "inline", cache = cache())]
    async fn lookup_per_tenant(&self, id: u32) -> String
    where
        Self: Serialize,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        format!("{}:{id}", self.tenant)
    }
}

impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tenant.serialize(s)
    }
}

#[tokio::test]
async fn methods_with_self() {
    let h = harness();
    let svc = Service {
        calls: Arc::new(AtomicUsize::new(0)),
        tenant: "t1".into(),
    };
    assert_eq!(assert_send(svc.lookup("x")).await.unwrap(), "t1:x:1");
    assert_eq!(svc.lookup("x").await.unwrap(), "t1:x:1");
    // The receiver is not part of the key by default.
    let other = Service {
        calls: Arc::new(AtomicUsize::new(0)),
        tenant: "t2".into(),
    };
    assert_eq!(other.lookup("x").await.unwrap(), "t1:x:1");

    // A stale hit refreshes in the background with an owned copy of `self` and of `id`.
    h.clock.advance(Duration::from_secs(11));
    assert_eq!(svc.lookup("x").await.unwrap(), "t1:x:1");
    eventually("background refresh", || {
        h.cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(svc.lookup("x").await.unwrap(), "t1:x:2");

    // Associated companions.
    assert!(Service::lookup_invalidate("x").await.unwrap());
    assert_eq!(svc.lookup("x").await.unwrap(), "t1:x:3");

    // include_self puts the receiver in the key; companions then take `&self`.
    assert_eq!(svc.lookup_per_tenant(1).await, "t1:1");
    assert_eq!(other.lookup_per_tenant(1).await, "t2:1");
    assert_ne!(svc.lookup_per_tenant_key(1), other.lookup_per_tenant_key(1));
    assert!(svc.lookup_per_tenant_invalidate(1).await.unwrap());
}

#[tokio::test]
async fn borrowed_arguments_are_refreshed_in_the_background() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 5, stale = 50, jitter = 0.0, cache = cache())]
    async fn join(sep: &str, parts: &[String], owned: String, n: &u32) -> String {
        let c = CALLS.fetch_add(1, Ordering::SeqCst);
        format!("{}{sep}{owned}{n}#{c}", parts.join(sep))
    }

    let h = harness();
    let parts = vec!["a".to_string(), "b".to_string()];
    assert_eq!(
        assert_send(join("-", &parts, "o".into(), &7)).await,
        "a-b-o7#0"
    );
    h.clock.advance(Duration::from_secs(6));
    {
        // The caller's borrows end with the call; the refresh owns its copies.
        let sep = String::from("-");
        let parts = parts.clone();
        assert_eq!(join(&sep, &parts, "o".into(), &7).await, "a-b-o7#0");
    }
    eventually("background refresh", || {
        h.cache.stats().refreshes_succeeded == 1
    })
    .await;
    assert_eq!(join("-", &parts, "o".into(), &7).await, "a-b-o7#1");
    assert_eq!(count(&CALLS), 2);
}

#[tokio::test]
async fn inline_refresh_and_uncoalesced() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug)]
    struct NotClone(String);
    #[cached_action(fresh = 5, stale = 50, jitter = 0.0, refresh = "inline", coalesce = false, cache = cache())]
    async fn inline(id: u32) -> Result<u32, NotClone> {
        if id == 0 {
            return Err(NotClone("zero".into()));
        }
        Ok(id + CALLS.fetch_add(1, Ordering::SeqCst) as u32)
    }

    let h = harness();
    assert_eq!(inline(1).await.unwrap(), 1);
    h.clock.advance(Duration::from_secs(6));
    assert_eq!(
        inline(1).await.unwrap(),
        2,
        "inline refresh returns the new value"
    );
    assert_eq!(inline(0).await.unwrap_err().0, "zero");
}

#[tokio::test]
async fn named_versioned_keys_and_unkeyable_arguments() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, name = "orders.lookup", version = 2, cache = cache())]
    async fn lookup_v2(x: f64) -> f64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x * 2.0
    }
    #[cached_action(fresh = 60, name = "orders.lookup", cache = cache())]
    async fn lookup_v1(x: f64) -> f64 {
        x * 3.0
    }

    let _h = harness();
    assert!(lookup_v2_key(1.5).starts_with("ac:orders.lookup:"));
    assert_ne!(
        lookup_v2_key(1.5),
        lookup_v1_key(1.5),
        "version is part of the key"
    );
    assert_eq!(lookup_v2(1.5).await, 3.0);
    assert_eq!(lookup_v2(1.5).await, 3.0);
    assert_eq!(count(&CALLS), 1);
    // NaN cannot be keyed: the call runs uncached.
    assert!(lookup_v2(f64::NAN).await.is_nan());
    assert!(lookup_v2(f64::NAN).await.is_nan());
    assert_eq!(count(&CALLS), 3);
    assert!(!lookup_v2_invalidate(f64::NAN).await.unwrap());
}

#[tokio::test]
async fn coalesced_misses_share_one_load() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn slow(id: u32) -> Result<u32, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(id)
    }

    let _h = harness();
    let (a, b, c) = tokio::join!(slow(9), slow(9), slow(9));
    assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (9, 9, 9));
    assert_eq!(count(&CALLS), 1);
}

#[tokio::test]
async fn composes_with_tracing_instrument() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[tracing::instrument]
    #[cached_action(fresh = 60, cache = cache())]
    async fn traced_outer(id: u32) -> u32 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        id
    }
    #[cached_action(fresh = 60, cache = cache())]
    #[tracing::instrument(skip(id))]
    async fn traced_inner(id: u32) -> u32 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        id
    }

    let _h = harness();
    assert_eq!(traced_outer(1).await + traced_outer(1).await, 2);
    assert_eq!(traced_inner(2).await + traced_inner(2).await, 4);
    assert_eq!(count(&CALLS), 2);
}

#[tokio::test]
async fn a_panicking_body_panics_in_the_caller_and_the_key_stays_usable() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 60, cache = cache())]
    async fn boom(id: u32) -> Result<u32, String> {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("backend exploded");
        }
        Ok(id)
    }

    let _h = harness();
    // A current-thread runtime: the task runs on this thread and sees this test's cache.
    let result = tokio::spawn(boom(1)).await;
    assert!(result.unwrap_err().is_panic());
    assert_eq!(boom(1).await, Ok(1));
    assert_eq!(boom(1).await, Ok(1));
    assert_eq!(count(&CALLS), 2);
}

#[tokio::test]
async fn argument_names_do_not_clash_with_generated_code() {
    #[cached_action(fresh = 60, cache = cache())]
    async fn clash(e: f64, c: u8, v: u8, k: u8, value: u8) -> String {
        format!("{e}{c}{v}{k}{value}")
    }

    let _h = harness();
    // A NaN argument makes the key fail: the uncached call must still get the caller's `e`.
    assert_eq!(clash(f64::NAN, 1, 2, 3, 4).await, "NaN1234");
    assert_eq!(clash(0.5, 1, 2, 3, 4).await, "0.51234");
    clash_put(0.5, 1, 2, 3, 4, &"planted".to_string())
        .await
        .unwrap();
    assert_eq!(clash(0.5, 1, 2, 3, 4).await, "planted");
}

/// A value JSON cannot carry faithfully (NaN is written as `null`): not stored, but every
/// coalesced caller gets it from the one body call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstorable_value_still_reaches_every_coalesced_caller() {
    use action_cache_testing::until_coalesced;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Reading {
        value: f64,
    }

    #[cached_action(fresh = 60, cache = CACHE.get().unwrap())]
    async fn reading(id: u32) -> Result<Reading, String> {
        CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        until_coalesced(CACHE.get().unwrap(), 49, std::time::Duration::from_secs(10)).await;
        let _ = id;
        Ok(Reading { value: f64::NAN })
    }

    let server = RedisServer::start();
    CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap()
    });
    let tasks: Vec<_> = (0..50).map(|_| tokio::spawn(reading(1))).collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().value.is_nan());
    }
    assert_eq!(
        CALLS.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "every waiter ran the body"
    );
    assert_eq!(CACHE.get().unwrap().stats().unstorable_values, 1);
}
