//! Stampede: many concurrent callers on one cold key. The figure that matters is how many times
//! the loader ran (counted, printed at the end, and expected to be 1 per stampede); criterion
//! times how long the whole stampede takes to settle (the loader itself takes 50 ms).
//!
//! * one process: 10,000 callers on one `Cache`;
//! * four processes: four `Cache` values (nothing shared but Redis) × 2,500 callers.
//!
//! `cargo bench --bench stampede` (one `redis-server` is started for the run).

use action_cache_bench_support as support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use action_cache::Cache;
use action_cache_testing::RedisServer;
use criterion::{BenchmarkId, Criterion, Throughput};

/// Loader calls of every stampede run in one case: `(runs, total calls, most calls in a run)`.
#[derive(Default)]
struct Tally {
    runs: AtomicUsize,
    calls: AtomicUsize,
    most: AtomicUsize,
}

impl Tally {
    fn add(&self, calls: usize) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(calls, Ordering::Relaxed);
        self.most.fetch_max(calls, Ordering::Relaxed);
    }

    fn report(&self, case: &str) {
        println!(
            "{case}: {} stampedes, loader calls per stampede: mean {:.2}, max {}",
            self.runs.load(Ordering::Relaxed),
            self.calls.load(Ordering::Relaxed) as f64
                / self.runs.load(Ordering::Relaxed).max(1) as f64,
            self.most.load(Ordering::Relaxed)
        );
    }
}

fn main() {
    let server = RedisServer::start();
    let rt = support::runtime();
    let one = support::processes(&server.url(), 1);
    let four = support::processes(&server.url(), 4);
    // Connected before the stampede, as in a running service.
    rt.block_on(async {
        for cache in one.iter().chain(&four) {
            cache.ping().await.expect("ping");
        }
    });
    let round = AtomicU64::new(0);
    let cases: [(&str, &[Cache], usize, Tally); 2] = [
        ("one_process_10000", &one, 10_000, Tally::default()),
        ("four_processes_2500_each", &four, 2_500, Tally::default()),
    ];

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("stampede");
    g.sample_size(10);
    for (name, caches, callers, tally) in &cases {
        g.throughput(Throughput::Elements((caches.len() * callers) as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(&rt).iter(|| async {
                let r = round.fetch_add(1, Ordering::Relaxed);
                tally.add(support::stampede(caches, *callers, r).await);
            });
        });
    }
    g.finish();
    c.final_summary();
    for (name, caches, _, tally) in &cases {
        tally.report(name);
        for (i, cache) in caches.iter().enumerate() {
            let s = cache.stats();
            println!(
                "  cache {i}: misses {}, loads {}, coalesced waits {}, store errors {}, skipped by the breaker {}",
                s.misses, s.loads, s.coalesced_waits, s.store_errors, s.store_skipped
            );
        }
    }
}
