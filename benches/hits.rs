//! Hit latency, side by side: a raw `GET` of the stored bytes (the floor), `#[cached_action]` on
//! Redis, the `cached` crate on Redis, the near cache, the in-memory store, and key building
//! beside SHA-256 of the same canonical bytes (its floor).
//!
//! `cargo bench --bench hits` (one `redis-server` is started for the run).

use action_cache_bench_support as support;

use std::hint::black_box;

use action_cache_testing::RedisServer;
use criterion::{Criterion, Throughput};
use sha2::{Digest, Sha256};
use support::{RawRedis, ORDERS};

fn redis_hits(c: &mut Criterion, rt: &tokio::runtime::Runtime, raw: &RawRedis) {
    let ids = support::order_ids();
    let mut g = c.benchmark_group("redis_hit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_get", |b| {
        let mut i = 0;
        b.to_async(rt).iter(|| {
            i += 1;
            let raw = raw.clone();
            async move { black_box(raw.get(i).await) }
        });
    });
    // The floor plus the 50 ms `tokio::time::timeout` the cache puts around every store
    // operation: isolates what the timer costs.
    g.bench_function("raw_get_in_timeout", |b| {
        let mut i = 0;
        b.to_async(rt).iter(|| {
            i += 1;
            let raw = raw.clone();
            async move {
                let get = raw.get(i);
                black_box(
                    tokio::time::timeout(std::time::Duration::from_millis(50), get)
                        .await
                        .expect("in time"),
                )
            }
        });
    });
    g.bench_function("cached_action", |b| {
        let mut i = 0;
        b.to_async(rt).iter(|| {
            i += 1;
            let id = &ids[i % ORDERS];
            async move { black_box(support::order(id).await.expect("hit")) }
        });
    });
    g.bench_function("cached_crate", |b| {
        let mut i = 0;
        b.to_async(rt).iter(|| {
            i += 1;
            let id = &ids[i % ORDERS];
            async move { black_box(support::cached_crate_order(id).await.expect("hit")) }
        });
    });
    g.finish();
}

fn in_process_hits(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let ids = support::order_ids();
    let keys: Vec<_> = ids.iter().map(|id| support::engine_key(id)).collect();
    let policy = support::policy();
    let memory = support::memory_cache();
    rt.block_on(async {
        for (key, id) in keys.iter().zip(&ids) {
            let order = support::backend_order(id);
            memory.put(key, &policy, &order).await.expect("put");
        }
    });
    let mut g = c.benchmark_group("in_process_hit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("near_cache", |b| {
        let mut i = 0;
        b.to_async(rt).iter(|| {
            i += 1;
            let id = &ids[i % ORDERS];
            async move { black_box(support::order_near(id).await.expect("hit")) }
        });
    });
    g.bench_function("memory_cached_action", |b| {
        let mut i = 0;
        b.to_async(rt).iter(|| {
            i += 1;
            let id = &ids[i % ORDERS];
            async move { black_box(support::order_memory(id).await.expect("hit")) }
        });
    });
    g.bench_function("memory_get_or_load", |b| {
        let mut i = 0;
        b.to_async(rt).iter(|| {
            i += 1;
            let key = &keys[i % ORDERS];
            let policy = &policy;
            async move {
                let v: support::Order = memory
                    .get_or_load(key, policy, || async {
                        Err::<support::Order, _>("a hit never loads".to_string())
                    })
                    .await
                    .expect("hit");
                black_box(v)
            }
        });
    });
    g.bench_function("key_build", |b| {
        b.iter(|| black_box(memory.full_key(&support::typical_key())));
    });
    g.finish();
}

/// Key building for the typical argument set (three strings, a number, a 2-entry map) beside
/// its floor: SHA-256 of the same canonical bytes, already laid out. Issue 16's figure is
/// `typical_set / sha256_of_canonical_bytes` (target <= 2.0x, and <= 0.4 us).
fn key_building(c: &mut Criterion) {
    let bytes = support::typical_key_builder().canonical_bytes();
    let mut g = c.benchmark_group("key_build");
    g.throughput(Throughput::Elements(1));
    g.bench_function("typical_set", |b| {
        b.iter(|| black_box(support::typical_key()));
    });
    g.bench_function("sha256_of_canonical_bytes", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&bytes))));
    });
    g.finish();
}

fn main() {
    let server = RedisServer::start();
    support::install(&server.url());
    let rt = support::runtime();
    let raw = rt.block_on(async {
        support::warm().await;
        RawRedis::connect().await
    });
    let mut c = Criterion::default().configure_from_args();
    redis_hits(&mut c, &rt, &raw);
    in_process_hits(&mut c, &rt);
    key_building(&mut c);
    c.final_summary();
    let loads = support::LOADS.load(std::sync::atomic::Ordering::Relaxed);
    // Warming loads each order once per cache; anything more means a measured call missed.
    println!(
        "loader calls: {loads} (warm-up: {}); redis cache stats: {:?}",
        4 * ORDERS,
        support::redis_cache().stats()
    );
}
