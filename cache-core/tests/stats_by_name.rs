//! Counters per key name (function or route), beside the cache-wide ones.

use action_cache_core::{Cache, CacheKey, ManualClock, Policy};
use std::sync::Arc;
use std::time::Duration;

fn key(name: &str, id: u32) -> CacheKey {
    let mut b = CacheKey::builder(name);
    b.arg("id", &id).unwrap();
    b.build()
}

#[tokio::test]
async fn each_name_counts_its_own_hits_misses_loads_and_errors() {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .in_memory()
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let policy = Policy::builder()
        .fresh(Duration::from_secs(10))
        .stale(Duration::from_secs(100))
        .jitter(0.0)
        .build()
        .unwrap();
    let ok = || async { Ok::<_, String>("v".to_string()) };
    for id in 0..3 {
        let _: String = cache
            .get_or_load(&key("crm.account", id), &policy, ok)
            .await
            .unwrap();
    }
    let _: String = cache
        .get_or_load(&key("crm.account", 0), &policy, ok)
        .await
        .unwrap();
    let failed: Result<String, _> = cache
        .get_or_load(&key("crm.orders", 1), &policy, || async {
            Err::<String, _>("down")
        })
        .await;
    assert!(failed.is_err());
    clock.advance(Duration::from_secs(10));
    let _: String = cache
        .get_or_load(&key("crm.account", 1), &policy, ok)
        .await
        .unwrap();

    let account = cache.stats_for("crm.account").unwrap();
    assert_eq!(
        (
            account.misses,
            account.loads,
            account.fresh_hits,
            account.stale_hits
        ),
        (3, 3, 1, 1)
    );
    assert_eq!(account.load_errors, 0);
    let orders = cache.stats_for("crm.orders").unwrap();
    assert_eq!((orders.misses, orders.loads, orders.load_errors), (1, 1, 1));
    assert!(cache.stats_for("never.called").is_none());
    let names: Vec<String> = cache.stats_by_name().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["crm.account", "crm.orders"]);
    let all = cache.stats();
    assert_eq!(all.misses, account.misses + orders.misses);
}
