//! `#[cached_action]` with the borrowed arguments users write (`Option<&str>` filters, `&[&str]`
//! lists), against a real Redis: a stale hit's background refresh outlives the call, so it runs
//! on owned copies taken only when it is spawned.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use action_cache::{cached_action, Cache, ManualClock};
use action_cache_testing::RedisServer;
use serde::Serialize;

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
        .op_timeout(Duration::from_secs(2))
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

impl Harness {
    /// Waits until `refreshes` background refreshes have stored their values.
    async fn refreshed(&self, refreshes: u64) {
        action_cache_testing::eventually("refresh stored", Duration::from_secs(5), || {
            self.cache.stats().refreshes_succeeded == refreshes
        })
        .await;
    }
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Filter {
    status: String,
}

#[tokio::test]
async fn option_of_a_reference_in_a_background_refresh() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 5, stale = 50, jitter = 0.0, cache = cache())]
    async fn search(account: &str, status: Option<&str>, filter: Option<&Filter>) -> String {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        let f = filter.map_or("-", |f| f.status.as_str());
        format!("{account}/{}/{f}#{n}", status.unwrap_or("any"))
    }

    let h = harness();
    let open = Filter {
        status: "open".into(),
    };
    assert_eq!(
        assert_send(search("a", Some("open"), Some(&open))).await,
        "a/open/open#0"
    );
    assert_eq!(search("a", None, None).await, "a/any/-#1");
    h.clock.advance(Duration::from_secs(6));
    {
        // The caller's borrows end with the call; the refresh owns its copies.
        let status = String::from("open");
        let filter = open.clone();
        assert_eq!(
            search("a", Some(&status), Some(&filter)).await,
            "a/open/open#0"
        );
    }
    h.refreshed(1).await;
    assert_eq!(
        search("a", Some("open"), Some(&open)).await,
        "a/open/open#2"
    );
    assert_eq!(search("a", None, None).await, "a/any/-#1", "stale");
    h.refreshed(2).await;
    assert_eq!(search("a", None, None).await, "a/any/-#3");
    assert_eq!(CALLS.load(Ordering::SeqCst), 4);
    // The companions take the declared types.
    assert_ne!(
        search_key("a", Some("open"), None),
        search_key("a", None, None)
    );
}

#[tokio::test]
async fn slices_and_vecs_of_references_in_a_background_refresh() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 5, stale = 50, jitter = 0.0, cache = cache())]
    async fn join(ids: &[&str], more: Vec<&str>, flags: Option<&[u8]>) -> String {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        format!("{}+{}+{:?}#{n}", ids.join(","), more.join(","), flags)
    }

    let h = harness();
    assert_eq!(
        assert_send(join(&["a", "b"], vec!["c"], Some(&[1]))).await,
        "a,b+c+Some([1])#0"
    );
    h.clock.advance(Duration::from_secs(6));
    {
        let a = String::from("a");
        let b = String::from("b");
        let c = String::from("c");
        let flags = vec![1u8];
        let ids = vec![a.as_str(), b.as_str()];
        assert_eq!(
            join(&ids, vec![&c], Some(&flags)).await,
            "a,b+c+Some([1])#0"
        );
    }
    h.refreshed(1).await;
    assert_eq!(
        join(&["a", "b"], vec!["c"], Some(&[1])).await,
        "a,b+c+Some([1])#1"
    );
}

#[derive(Debug, Clone)]
struct Crm {
    calls: Arc<AtomicUsize>,
}

impl Crm {
    #[cached_action(fresh = 5, stale = 50, jitter = 0.0, cache = cache())]
    async fn lookup(&self, name: Option<&str>, tags: &[&str]) -> String {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        format!("{}:{}#{n}", name.unwrap_or("?"), tags.join("|"))
    }
}

#[tokio::test]
async fn a_method_with_borrowed_filters_in_a_background_refresh() {
    let h = harness();
    let crm = Crm {
        calls: Arc::new(AtomicUsize::new(0)),
    };
    assert_eq!(
        assert_send(crm.lookup(Some("ada"), &["vip"])).await,
        "ada:vip#0"
    );
    h.clock.advance(Duration::from_secs(6));
    {
        let name = String::from("ada");
        let tag = String::from("vip");
        assert_eq!(crm.lookup(Some(&name), &[&tag]).await, "ada:vip#0");
    }
    h.refreshed(1).await;
    assert_eq!(crm.lookup(Some("ada"), &["vip"]).await, "ada:vip#1");
}
