//! Invalidation by key, by tag across functions, and by prefix, against a real Redis.

use action_cache_core::{Cache, CacheKey, Policy};
use action_cache_testing::RedisServer;
use std::time::Duration;

fn key(name: &str, id: u32, tags: &[&str]) -> CacheKey {
    let mut b = CacheKey::builder(name);
    b.arg("id", &id).unwrap();
    for t in tags {
        b.tag(*t);
    }
    b.build()
}

async fn exists(server: &RedisServer, cache: &Cache, k: &CacheKey) -> bool {
    server.cli(&["EXISTS", &cache.full_key(k)]) == "1"
}

#[tokio::test]
async fn by_key_tag_and_prefix() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let p = Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap();
    let summary = key("crm.summary", 42, &["account:42"]);
    let orders = key("crm.orders", 42, &["account:42", "orders"]);
    let other = key("crm.summary", 7, &["account:7"]);
    let erp = key("erp.stock", 1, &[]);
    for k in [&summary, &orders, &other, &erp] {
        cache.put(k, &p, "v").await.unwrap();
    }

    assert_eq!(cache.invalidate_tag("account:42").await.unwrap(), 2);
    assert!(!exists(&server, &cache, &summary).await && !exists(&server, &cache, &orders).await);
    assert!(
        exists(&server, &cache, &other).await,
        "another account's entry stays"
    );
    assert_eq!(cache.invalidate_tag("account:42").await.unwrap(), 0);

    assert!(cache.invalidate(&other).await.unwrap());
    assert!(!cache.invalidate(&other).await.unwrap());

    for k in [&summary, &orders, &other] {
        cache.put(k, &p, "v").await.unwrap();
    }
    assert_eq!(cache.invalidate_prefix("crm.").await.unwrap(), 3);
    assert!(exists(&server, &cache, &erp).await, "other names stay");
    // Tag sets are not under the entry prefix and survive; purging them again is harmless.
    assert_eq!(cache.invalidate_tag("account:7").await.unwrap(), 0);
}

#[tokio::test]
async fn prefix_invalidation_scans_many_keys_and_treats_glob_characters_literally() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let p = Policy::default();
    for i in 0..2_500 {
        cache.put(&key("bulk", i, &[]), &p, &i).await.unwrap();
    }
    cache.put(&key("b*", 1, &[]), &p, "glob").await.unwrap();
    assert_eq!(
        cache.invalidate_prefix("b*").await.unwrap(),
        1,
        "'*' is literal"
    );
    assert_eq!(cache.invalidate_prefix("bulk").await.unwrap(), 2_500);
    assert_eq!(server.entry_count(), 0);
}

#[tokio::test]
async fn tags_work_on_the_memory_store_too() {
    let cache = Cache::in_memory();
    let p = Policy::default();
    let a = key("f", 1, &["t"]);
    let b = key("g", 2, &["t"]);
    cache.put(&a, &p, "a").await.unwrap();
    cache.put(&b, &p, "b").await.unwrap();
    assert_eq!(cache.invalidate_tag("t").await.unwrap(), 2);
    assert_eq!(cache.invalidate_prefix("f").await.unwrap(), 0);
}
