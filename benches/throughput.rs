//! Hit throughput at 1, 64 and 256 concurrent tasks on one `Cache` (one multiplexed
//! connection), against raw `GET`s and the `cached` crate at the same concurrency, on a 2-worker
//! tokio runtime. Each iteration runs a fixed batch of hits spread over the tasks; criterion
//! reports hits per second.
//!
//! `cargo bench --bench throughput` (one `redis-server` is started for the run).

use action_cache_bench_support as support;

use std::hint::black_box;
use std::sync::Arc;

use action_cache_testing::RedisServer;
use criterion::{BenchmarkId, Criterion, Throughput};
use support::{RawRedis, ORDERS};

/// Hits per iteration, divisible by every concurrency level.
const BATCH: usize = 2_560;
const CONCURRENCY: [usize; 3] = [1, 64, 256];

fn throughput(c: &mut Criterion, rt: &tokio::runtime::Runtime, raw: &RawRedis) {
    let ids = Arc::new(support::order_ids());
    let mut g = c.benchmark_group("hit_throughput");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    for n in CONCURRENCY {
        g.bench_with_input(BenchmarkId::new("raw_get", n), &n, |b, &n| {
            b.to_async(rt).iter(|| {
                let raw = raw.clone();
                support::spread(n, BATCH, move |i| {
                    let raw = raw.clone();
                    async move {
                        black_box(raw.get(i).await);
                    }
                })
            });
        });
        g.bench_with_input(BenchmarkId::new("cached_action", n), &n, |b, &n| {
            b.to_async(rt).iter(|| {
                let ids = Arc::clone(&ids);
                support::spread(n, BATCH, move |i| {
                    let ids = Arc::clone(&ids);
                    async move {
                        black_box(support::order(&ids[i % ORDERS]).await.expect("hit"));
                    }
                })
            });
        });
        g.bench_with_input(BenchmarkId::new("cached_crate", n), &n, |b, &n| {
            b.to_async(rt).iter(|| {
                let ids = Arc::clone(&ids);
                support::spread(n, BATCH, move |i| {
                    let ids = Arc::clone(&ids);
                    async move {
                        black_box(
                            support::cached_crate_order(&ids[i % ORDERS])
                                .await
                                .expect("hit"),
                        );
                    }
                })
            });
        });
    }
    g.finish();
}

/// 10,000 distinct keys of a 2.1 KB value at 256 tasks: JSON and MessagePack entries through
/// the macro beside the raw `GET` plus the same codec's decode, and the typed near cache beside
/// the raw `GET` alone.
fn many_keys(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let (raw_json, raw_mp) = rt.block_on(async {
        support::warm_catalogs().await;
        (
            RawRedis::catalogs(support::catalog_key).await,
            RawRedis::catalogs(support::catalog_mp_key).await,
        )
    });
    let n = 256;
    let page = support::catalog_page;
    let mut g = c.benchmark_group("many_keys_256_tasks");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.bench_function("raw_get", |b| {
        b.to_async(rt).iter(|| {
            let raw = raw_json.clone();
            support::spread(n, BATCH, move |i| {
                let raw = raw.clone();
                async move {
                    black_box(raw.get_nth(i).await);
                }
            })
        });
    });
    g.bench_function("raw_get_json_decode", |b| {
        b.to_async(rt).iter(|| {
            let raw = raw_json.clone();
            support::spread(n, BATCH, move |i| {
                let raw = raw.clone();
                async move {
                    black_box(support::decode_json_entry(&raw.get_nth(i).await));
                }
            })
        });
    });
    g.bench_function("cached_action_json", |b| {
        b.to_async(rt).iter(|| {
            support::spread(n, BATCH, move |i| async move {
                black_box(support::catalog(page(i)).await.expect("hit"));
            })
        });
    });
    g.bench_function("raw_get_message_pack_decode", |b| {
        b.to_async(rt).iter(|| {
            let raw = raw_mp.clone();
            support::spread(n, BATCH, move |i| {
                let raw = raw.clone();
                async move {
                    black_box(support::decode_message_pack_entry(&raw.get_nth(i).await));
                }
            })
        });
    });
    g.bench_function("cached_action_message_pack", |b| {
        b.to_async(rt).iter(|| {
            support::spread(n, BATCH, move |i| async move {
                black_box(support::catalog_mp(page(i)).await.expect("hit"));
            })
        });
    });
    g.bench_function("cached_action_near_typed", |b| {
        b.to_async(rt).iter(|| {
            support::spread(n, BATCH, move |i| async move {
                black_box(support::catalog_near(page(i)).await.expect("hit"));
            })
        });
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
    throughput(&mut c, &rt, &raw);
    many_keys(&mut c, &rt);
    c.final_summary();
    let stats = support::redis_cache().stats();
    // Warming loads each order once per cache; anything more means a measured call missed.
    println!(
        "loader calls: {} (warm-up: {}); redis cache: fresh hits {}, store errors {}",
        support::LOADS.load(std::sync::atomic::Ordering::Relaxed),
        4 * ORDERS + 3 * support::CATALOGS,
        stats.fresh_hits,
        stats.store_errors
    );
}
