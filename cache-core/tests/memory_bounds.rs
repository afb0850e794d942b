//! Byte bounds of the memory store and of the typed tier in front of it: the weight held stays
//! under the bound, a read only ever answers with its own key's value, and an entry heavier
//! than the whole bound is returned to its caller but not kept. No Redis needed.

use action_cache_core::store::{MemoryStore, Store};
use action_cache_core::{Cache, CacheKey, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);

fn value_of(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("value of {i}:").into_bytes();
    v.resize(len, b'.');
    v
}

#[tokio::test]
async fn filling_past_the_byte_bound_keeps_the_weight_under_it_and_values_their_own() {
    let max = 50_000;
    let store = MemoryStore::new(1_000_000).max_bytes(max);
    for i in 0..5_000 {
        // Sizes vary so that evicting one entry is not always enough room for the next.
        store
            .set(&format!("k{i}"), &value_of(i, 100 + i % 900), TTL, &[])
            .await
            .unwrap();
        assert!(store.bytes() <= max, "after {i}: {}", store.bytes());
    }
    assert!(!store.is_empty());
    let mut kept = 0;
    for i in 0..5_000 {
        if let Some(v) = store.get(&format!("k{i}")).await.unwrap() {
            assert_eq!(v, value_of(i, 100 + i % 900), "k{i}");
            kept += 1;
        }
    }
    assert_eq!(kept, store.len());
    // Equal TTLs: the oldest writes were the first evicted.
    let held: usize = (5_000 - kept..5_000)
        .map(|i| MemoryStore::weight(&format!("k{i}"), &value_of(i, 100 + i % 900)))
        .sum();
    assert_eq!(store.bytes(), held, "the newest entries, weighed");
}

#[tokio::test]
async fn an_entry_heavier_than_the_bound_is_not_kept_nor_is_the_value_it_replaced() {
    let store = MemoryStore::new(100).max_bytes(10_000);
    store.set("small", b"a", TTL, &[]).await.unwrap();
    store.set("k", b"old", TTL, &["t".into()]).await.unwrap();
    store
        .set("k", &value_of(0, 10_000), TTL, &["t".into()])
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap(), None, "neither new nor old");
    assert_eq!(store.get("small").await.unwrap(), Some(b"a".to_vec()));
    assert_eq!(store.bytes(), MemoryStore::weight("small", b"a"));
    // A lock is always taken, however long its key.
    let long = "l".repeat(20_000);
    assert!(store.try_lock(&long, "token", TTL).await.unwrap());
    assert!(!store.try_lock(&long, "other", TTL).await.unwrap());
}

#[tokio::test]
async fn the_count_bound_still_holds_beside_the_byte_bound() {
    let store = MemoryStore::new(10).max_bytes(1 << 20);
    for i in 0..100 {
        store.set(&format!("k{i}"), b"v", TTL, &[]).await.unwrap();
    }
    assert_eq!(store.len(), 10);
    assert_eq!(store.bytes(), 10 * MemoryStore::weight("k10", b"v"));
}

fn policy() -> Policy {
    Policy::builder()
        .fresh(Duration::from_secs(60))
        .jitter(0.0)
        .build()
        .unwrap()
}

fn key(i: usize) -> CacheKey {
    let mut b = CacheKey::builder("bounded");
    b.arg("i", &i).unwrap();
    b.build()
}

#[tokio::test]
async fn a_byte_bounded_memory_cache_answers_every_key_with_its_own_value() {
    let cache = Cache::builder().memory_max_bytes(200_000).build().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    for round in 0..2 {
        for i in 0..2_000 {
            let loads = Arc::clone(&loads);
            let v: String = cache
                .get_or_load(&key(i), &policy(), move || async move {
                    loads.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, String>(format!("{i}:{}", "x".repeat(i % 500)))
                })
                .await
                .unwrap();
            assert_eq!(v, format!("{i}:{}", "x".repeat(i % 500)), "round {round}");
        }
    }
    // 2,000 entries of about 1 KB do not fit in 200 KB: some were loaded again.
    assert!(loads.load(Ordering::Relaxed) > 2_000);
}

#[tokio::test]
async fn an_over_sized_value_is_returned_every_time_but_not_kept() {
    let cache = Cache::builder().memory_max_bytes(4_096).build().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let loads = Arc::clone(&loads);
        let v: String = cache
            .get_or_load(&key(1), &policy(), move || async move {
                loads.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>("y".repeat(8_192))
            })
            .await
            .unwrap();
        assert_eq!(v.len(), 8_192);
    }
    assert_eq!(
        loads.load(Ordering::Relaxed),
        3,
        "never kept, so never a hit"
    );
    assert_eq!(cache.stats().fresh_hits, 0);
    // A small one still is.
    for _ in 0..2 {
        let v: String = cache
            .get_or_load(&key(2), &policy(), || async {
                Ok::<_, String>("small".into())
            })
            .await
            .unwrap();
        assert_eq!(v, "small");
    }
    assert_eq!(cache.stats().fresh_hits, 1);
}

#[test]
fn a_zero_byte_bound_is_refused() {
    assert!(Cache::builder().memory_max_bytes(0).build().is_err());
    assert!(Cache::builder()
        .redis_url("redis://127.0.0.1:1")
        .near_cache_max_bytes(0)
        .build()
        .is_err());
}
