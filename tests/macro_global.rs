//! With `set_global`, cached functions use the global cache (here on a real Redis).

use std::sync::atomic::{AtomicUsize, Ordering};

use action_cache::{cached_action, Cache};
use action_cache_testing::RedisServer;

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached_action(fresh = 60, stale = "5m", tags = ["user:{user}"])]
async fn greeting(user: &str, punctuation: char) -> Result<String, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("hello {user}{punctuation}"))
}

#[tokio::test]
async fn uses_the_global_cache() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        // Generous: under load a timed-out read fails open into a miss; these tests count.
        .op_timeout(std::time::Duration::from_secs(2))
        .prefix("glob")
        .build()
        .unwrap();
    action_cache::set_global(cache.clone()).unwrap();

    assert_eq!(greeting("ada", '!').await.unwrap(), "hello ada!");
    assert_eq!(greeting("ada", '!').await.unwrap(), "hello ada!");
    assert_eq!(greeting("ada", '?').await.unwrap(), "hello ada?");
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);

    // The key uses the global cache's prefix, and the entry really is in Redis.
    let key = greeting_key("ada", '!');
    assert!(key.starts_with("glob:"), "{key}");
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "1");

    assert_eq!(cache.invalidate_tag("user:ada").await.unwrap(), 2);
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    assert_eq!(greeting("ada", '!').await.unwrap(), "hello ada!");
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().misses, 3);
}
