//! Measures what an entry costs in memory: 100,000 entries of the benchmark value (the
//! many-keys value of 25 small structs, `bench-support`'s catalog) and of a small value (a
//! 15-byte string) go into (a) the memory store and (b) the near cache in front of Redis, and
//! the process's RSS before and after, divided by the entries, is printed beside the value's
//! size, as a markdown table; then the same fill against a count bound and a byte bound, to
//! show where RSS levels off and how many entries are kept.
//!
//! ```text
//! cargo run --release --example memory_report
//! ```
//!
//! It starts its own `redis-server` (which must be installed), and runs each case in a fresh
//! child process of itself, so that one case's freed memory is not the next one's RSS.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use action_cache::store::{MemoryStore, Store};
use action_cache::{Cache, CacheKey, Policy};
use action_cache_bench_support as support;
use action_cache_testing::RedisServer;
use support::Item;

/// Entries each case fills in.
const ENTRIES: usize = 100_000;
/// The count bound of the bound cases.
const COUNT_BOUND: usize = 10_000;
/// The byte bound of the bound cases.
const BYTE_BOUND: usize = 32 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tier {
    /// The memory store alone (`MemoryStore`, no `Cache`): what its own bookkeeping costs.
    Store,
    /// The memory store and the typed tier in front of it.
    Memory,
    /// The near cache in front of Redis.
    Near,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    /// 25 small structs (about 2.5 KB of JSON).
    Catalog,
    /// A 15-byte string.
    Small,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bound {
    /// Room for every entry (a count bound of twice [`ENTRIES`]).
    Roomy,
    /// [`COUNT_BOUND`] entries.
    Count,
    /// [`BYTE_BOUND`] bytes.
    Bytes,
}

const CASES: [(Tier, Value, Bound); 12] = [
    (Tier::Store, Value::Catalog, Bound::Roomy),
    (Tier::Store, Value::Small, Bound::Roomy),
    (Tier::Memory, Value::Catalog, Bound::Roomy),
    (Tier::Memory, Value::Small, Bound::Roomy),
    (Tier::Near, Value::Catalog, Bound::Roomy),
    (Tier::Near, Value::Small, Bound::Roomy),
    (Tier::Store, Value::Catalog, Bound::Count),
    (Tier::Store, Value::Catalog, Bound::Bytes),
    (Tier::Memory, Value::Catalog, Bound::Count),
    (Tier::Memory, Value::Catalog, Bound::Bytes),
    (Tier::Near, Value::Catalog, Bound::Count),
    (Tier::Near, Value::Catalog, Bound::Bytes),
];

/// What one case measured (printed by the child, one line, read by the parent).
#[derive(Debug, Default)]
struct Measured {
    /// RSS (KiB) before the fill, after half of it, after all of it.
    rss_kib: [u64; 3],
    /// Fresh hits and in-process (typed tier / near) hits of a read-back of every key, newest
    /// first, whose loader fails (so that a miss stores nothing).
    kept: (u64, u64),
    took: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--case" {
        let case = CASES[args[2].parse::<usize>().expect("case index")];
        let m = run_case(case, &args[3]);
        println!(
            "MEASURED {} {} {} {} {} {}",
            m.rss_kib[0],
            m.rss_kib[1],
            m.rss_kib[2],
            m.kept.0,
            m.kept.1,
            m.took.as_millis()
        );
        return;
    }
    let started = Instant::now();
    let server = RedisServer::start();
    let sizes = entry_sizes(&server.url());
    let exe = std::env::current_exe().expect("this example's path");
    let mut results = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        server.cli(&["FLUSHALL"]);
        let out = Command::new(&exe)
            .args(["--case", &i.to_string(), &server.url()])
            .output()
            .expect("run a case");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("MEASURED "))
            .unwrap_or_else(|| {
                panic!(
                    "case {case:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let n: Vec<u64> = line
            .split(' ')
            .map(|w| w.parse().expect("a figure"))
            .collect();
        let m = Measured {
            rss_kib: [n[0], n[1], n[2]],
            kept: (n[3], n[4]),
            took: Duration::from_millis(n[5]),
        };
        eprintln!("{case:?}: {m:?}");
        results.push((*case, m));
    }
    print_report(&results, sizes);
    println!();
    println!(
        "Machine: {} cores, Linux {}, glibc malloc; {ENTRIES} entries per case, each case in its own process; run took {:.0} s.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
}

/// The encoded entry sizes (bytes the store holds for one entry) of the two values, as Redis
/// holds them.
fn entry_sizes(url: &str) -> [usize; 2] {
    let rt = support::runtime();
    [
        (Value::Catalog, "sizes_catalog"),
        (Value::Small, "sizes_small"),
    ]
    .map(|(value, prefix)| {
        rt.block_on(async {
            let (_cache, entries) = cache_entries(url, prefix, value, 1).await;
            entries[0].len()
        })
    })
}

/// The cache's own entries of `value` for ids `0..n`, loaded under `prefix` and read back from
/// Redis, with the cache (whose full keys name them).
async fn cache_entries(url: &str, prefix: &str, value: Value, n: usize) -> (Cache, Vec<Vec<u8>>) {
    let cache = Cache::builder()
        .redis_url(url)
        .prefix(prefix)
        .build()
        .expect("cache");
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut entries = Vec::new();
    for i in 0..n {
        load(&cache, value, i).await;
        let bytes: Vec<u8> = redis::AsyncCommands::get(&mut conn, cache.full_key(&key(i)))
            .await
            .expect("GET");
        entries.push(bytes);
    }
    (cache, entries)
}

fn key(i: usize) -> CacheKey {
    let mut b = CacheKey::builder("memory_report");
    b.arg("i", &i).expect("a valid key");
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(3600), Duration::from_secs(7200)).expect("policy")
}

/// Reads (loading on a miss) entry `i` of `value`'s kind.
async fn load(cache: &Cache, value: Value, i: usize) {
    match value {
        Value::Catalog => {
            let v: Vec<Item> = cache
                .get_or_load(&key(i), &policy(), move || async move {
                    Ok::<_, String>(support::backend_catalog(i as u32))
                })
                .await
                .expect("catalog");
            black_box(v);
        }
        Value::Small => {
            let v: String = cache
                .get_or_load(&key(i), &policy(), move || async move {
                    Ok::<_, String>(format!("account {i:07}"))
                })
                .await
                .expect("small");
            black_box(v);
        }
    }
}

/// Whether entry `i` is answered without loading (a loader that fails stores nothing).
async fn held(cache: &Cache, value: Value, i: usize) -> bool {
    let (key, policy) = (key(i), policy());
    match value {
        Value::Catalog => cache
            .get_or_load(&key, &policy, || async {
                Err::<Vec<Item>, _>("not held".to_string())
            })
            .await
            .is_ok(),
        Value::Small => cache
            .get_or_load(&key, &policy, || async {
                Err::<String, _>("not held".to_string())
            })
            .await
            .is_ok(),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The store alone: [`ENTRIES`] `set`s of the encoded entry (the same bytes and key shape the
/// cache writes); `kept` is its `len()` and its `bytes()` (weight).
fn run_store_case(value: Value, bound: Bound, url: &str) -> Measured {
    let rt = support::runtime();
    let store = MemoryStore::new(match bound {
        Bound::Count => COUNT_BOUND,
        _ => 2 * ENTRIES,
    });
    let store = match bound {
        Bound::Bytes => store.max_bytes(BYTE_BOUND),
        _ => store,
    };
    // The cache's own entries for this value, read back from Redis: the bytes to store.
    let (keys, entries) = rt.block_on(async {
        let (cache, entries) = cache_entries(url, "memory_report", value, 2).await;
        let keys: Vec<String> = (0..ENTRIES).map(|i| cache.full_key(&key(i))).collect();
        (keys, entries)
    });
    let started = Instant::now();
    let ttl = Duration::from_secs(3600);
    let mut rss = [rss_kib(), 0, 0];
    rt.block_on(async {
        for (half, range) in [(1, 0..ENTRIES / 2), (2, ENTRIES / 2..ENTRIES)] {
            for i in range {
                let entry = &entries[i % 2];
                store.set(&keys[i], entry, ttl, &[]).await.expect("set");
            }
            rss[half] = rss_kib();
        }
    });
    Measured {
        rss_kib: rss,
        kept: (store.len() as u64, store.bytes() as u64),
        took: started.elapsed(),
    }
}

fn run_case((tier, value, bound): (Tier, Value, Bound), url: &str) -> Measured {
    if tier == Tier::Store {
        return run_store_case(value, bound, url);
    }
    let rt = support::runtime();
    let b = match tier {
        Tier::Store => unreachable!("handled above"),
        Tier::Memory => Cache::builder().memory_capacity(match bound {
            Bound::Count => COUNT_BOUND,
            _ => 2 * ENTRIES,
        }),
        Tier::Near => Cache::builder()
            .redis_url(url)
            .op_timeout(Duration::from_secs(2))
            .near_cache(match bound {
                Bound::Count => COUNT_BOUND,
                _ => 2 * ENTRIES,
            }),
    };
    let b = match (bound, tier) {
        (Bound::Bytes, Tier::Memory) => b.memory_max_bytes(BYTE_BOUND),
        (Bound::Bytes, Tier::Near) => b.near_cache_max_bytes(BYTE_BOUND),
        _ => b,
    };
    let cache = b.prefix("memory_report").build().expect("cache");
    let started = Instant::now();
    rt.block_on(async {
        // Connections up, the near cache subscribed and trusted, buffers grown: all before the
        // first figure.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.stats().near_hits == 0 {
            assert!(
                Instant::now() < deadline,
                "the in-process tier never answered"
            );
            load(&cache, value, usize::MAX).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut rss = [rss_kib(), 0, 0];
        for (half, range) in [(1, 0..ENTRIES / 2), (2, ENTRIES / 2..ENTRIES)] {
            // Loaded (bytes kept near), then read again (the decoded value kept beside them).
            fill(&cache, value, tier, range.clone()).await;
            fill(&cache, value, tier, range).await;
            rss[half] = rss_kib();
        }
        let before = cache.stats();
        for i in (0..ENTRIES).rev() {
            held(&cache, value, i).await;
        }
        let after = cache.stats();
        Measured {
            rss_kib: rss,
            kept: (
                after.fresh_hits - before.fresh_hits,
                after.near_hits - before.near_hits,
            ),
            took: started.elapsed(),
        }
    })
}

/// Reads every entry of `range`, 64 at a time in front of Redis, one by one in memory.
async fn fill(cache: &Cache, value: Value, tier: Tier, range: std::ops::Range<usize>) {
    match tier {
        Tier::Store | Tier::Memory => {
            for i in range {
                load(cache, value, i).await;
            }
        }
        Tier::Near => {
            let ids: Vec<usize> = range.collect();
            for chunk in ids.chunks(64) {
                let mut set = tokio::task::JoinSet::new();
                for &i in chunk {
                    let cache = cache.clone();
                    set.spawn(async move { load(&cache, value, i).await });
                }
                while let Some(r) = set.join_next().await {
                    r.expect("a read");
                }
            }
        }
    }
}

/// The decoded value's heap size, as the allocator is asked for it (its headers not counted).
fn decoded_bytes(value: Value) -> usize {
    match value {
        Value::Catalog => {
            let v = support::backend_catalog(1);
            v.capacity() * std::mem::size_of::<Item>()
                + v.iter()
                    .map(|item| item.sku.capacity() + item.name.capacity())
                    .sum::<usize>()
        }
        Value::Small => format!("account {:07}", 1).capacity(),
    }
}

fn print_report(results: &[((Tier, Value, Bound), Measured)], sizes: [usize; 2]) {
    let size = |v: Value| match v {
        Value::Catalog => sizes[0],
        Value::Small => sizes[1],
    };
    let tier_name = |t: Tier| match t {
        Tier::Store => "memory store alone (`MemoryStore`)",
        Tier::Memory => "memory store + its typed tier (`Cache`)",
        Tier::Near => "near cache in front of Redis (`Cache`)",
    };
    let value_name = |v: Value| match v {
        Value::Catalog => "25 structs",
        Value::Small => "15-byte string",
    };
    // What each tier holds per entry by design: the encoded entry (in a memory `Cache` one
    // allocation, shared by the store and its typed tier) and the decoded value.
    let held = |t: Tier, v: Value| match t {
        Tier::Store => size(v),
        Tier::Memory | Tier::Near => size(v) + decoded_bytes(v),
    };
    let held_name = |t: Tier| match t {
        Tier::Store => "entry",
        Tier::Memory => "entry (shared) + decoded",
        Tier::Near => "entry + decoded",
    };
    println!("| Where | Value | Entry (encoded) | Decoded value (heap) | Held by design | RSS per entry | Beyond what is held | Target: ≤ held + 200 B | Met? |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for ((tier, value, bound), m) in results {
        if *bound != Bound::Roomy {
            continue;
        }
        let per = (m.rss_kib[2] - m.rss_kib[0]) as f64 * 1024.0 / ENTRIES as f64;
        let held = held(*tier, *value);
        println!(
            "| {} | {} | {} B | {} B | {} B ({}) | {:.0} B | {:.0} B | ≤ {} B | {} |",
            tier_name(*tier),
            value_name(*value),
            size(*value),
            decoded_bytes(*value),
            held,
            held_name(*tier),
            per,
            per - held as f64,
            held + 200,
            if per <= (held + 200) as f64 {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    println!();
    println!("| Where, 25-struct value, {ENTRIES} entries | Bound | RSS after 50,000 | RSS after 100,000 | Kept |");
    println!("|---|---|---|---|---|");
    for ((tier, value, bound), m) in results {
        if *value != Value::Catalog {
            continue;
        }
        let bound = match bound {
            Bound::Roomy => format!("{} entries (room for all)", 2 * ENTRIES),
            Bound::Count => format!("{COUNT_BOUND} entries"),
            Bound::Bytes => format!("{} MiB", BYTE_BOUND >> 20),
        };
        let mib = |kib: u64| format!("+{:.1} MiB", kib as f64 / 1024.0);
        let kept = match tier {
            Tier::Store => format!(
                "{} entries, weighing {:.1} MiB",
                m.kept.0,
                m.kept.1 as f64 / f64::from(1 << 20)
            ),
            _ => format!(
                "{} read back without a load ({} of them in process)",
                m.kept.0, m.kept.1
            ),
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            tier_name(*tier),
            bound,
            mib(m.rss_kib[1] - m.rss_kib[0]),
            mib(m.rss_kib[2] - m.rss_kib[0]),
            kept
        );
    }
}
