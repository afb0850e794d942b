//! The workload every benchmark binary and `examples/bench_report.rs` measure, defined once so
//! the criterion figures and the report table describe the same calls.
//!
//! One `redis-server` (started by the binary through `RedisServer`) holds every entry. On it:
//!
//! * [`order`]: a `#[cached_action]` function on a Redis `Cache` (one multiplexed
//!   `ConnectionManager` connection);
//! * [`order_near`]: the same function on a Redis `Cache` with a near cache;
//! * [`order_memory`]: the same function on an in-memory `Cache`;
//! * [`cached_crate_order`]: the same function through the `cached` crate's
//!   `#[concurrent_cached]` (the 4.x name of `#[io_cached]`) with its async Redis store, also on a
//!   `ConnectionManager`;
//! * [`RawRedis`]: a plain `GET` of the bytes [`order`] stored, on its own `ConnectionManager`:
//!   the floor.
//!
//! And a many-keys workload: [`CATALOGS`] distinct keys of a 2.1 KB value (25 small structs),
//! through [`catalog`] (JSON), [`catalog_mp`] (MessagePack) and [`catalog_near`] (JSON, near
//! cache), with [`RawRedis::catalogs`] the raw `GET` of the same entries.
//!
//! A `publish = false` crate of the workspace, shared by the criterion benches and
//! `examples/bench_report.rs` (each uses part of it).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use action_cache::{cached_action, Cache, CacheKey, Codec, KeyBuilder, Policy};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

/// Distinct orders the hit workloads cycle through (all warmed before measuring).
pub const ORDERS: usize = 64;

/// A typical cached backend answer (about 300 bytes of JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order id.
    pub id: String,
    /// Who placed it.
    pub customer: String,
    /// Where it is.
    pub status: String,
    /// Total in cents.
    pub total_cents: u64,
    /// Its lines.
    pub lines: Vec<Line>,
}

/// One line of an [`Order`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Stock keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Unit price in cents.
    pub unit_cents: u64,
}

/// The order the "backend" returns for `id`.
pub fn backend_order(id: &str) -> Order {
    Order {
        id: id.to_string(),
        customer: "Ada Lovelace <ada@example.com>".into(),
        status: "shipped".into(),
        total_cents: 12_990,
        lines: (1..=3)
            .map(|n| Line {
                sku: format!("SKU-{n:05}"),
                quantity: n,
                unit_cents: 1_000 * u64::from(n) + 330,
            })
            .collect(),
    }
}

/// Distinct keys of the many-keys workload (all warmed before measuring).
pub const CATALOGS: usize = 10_000;

/// The many-keys page the `i`-th operation reads: uniform over [`CATALOGS`] and scattered, so
/// that concurrent tasks do not walk the keys in step. (`i % CATALOGS` put the tasks `t` and
/// `t + 125` of a 256-task run on the same key at the same moment, which flattered read
/// sharing.)
pub fn catalog_page(i: usize) -> u32 {
    // splitmix64: every bit of `i` reaches every bit of the result.
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % CATALOGS as u64) as u32
}

/// One of the many-keys value's 25 small structs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Stock keeping unit.
    pub sku: String,
    /// Shown name.
    pub name: String,
    /// How many.
    pub quantity: u32,
    /// Unit price in cents.
    pub unit_cents: u64,
    /// Whether it can be shipped now.
    pub in_stock: bool,
}

/// The many-keys value for `page`: 25 items, about 2.1 KB of JSON.
pub fn backend_catalog(page: u32) -> Vec<Item> {
    (1..=25u32)
        .map(|n| Item {
            sku: format!("SKU-{page:05}-{n:02}"),
            name: format!("Widget number {n}"),
            quantity: n,
            unit_cents: 1_000 * u64::from(n) + 330,
            in_stock: n % 3 != 0,
        })
        .collect()
}

/// The ids of the warmed orders.
pub fn order_ids() -> Vec<String> {
    (0..ORDERS).map(|i| format!("A-{:04}", 1000 + i)).collect()
}

/// Loader (function body) runs, across every cached function of this module.
pub static LOADS: AtomicUsize = AtomicUsize::new(0);

static REDIS_CACHE: OnceLock<Cache> = OnceLock::new();
static NEAR_CACHE: OnceLock<Cache> = OnceLock::new();
static MEMORY_CACHE: OnceLock<Cache> = OnceLock::new();
static REDIS_URL: OnceLock<String> = OnceLock::new();
static CATALOG_CACHE: OnceLock<Cache> = OnceLock::new();
static CATALOG_MP_CACHE: OnceLock<Cache> = OnceLock::new();
static CATALOG_NEAR_CACHE: OnceLock<Cache> = OnceLock::new();

/// The Redis cache (JSON) [`catalog`] uses.
pub fn catalog_cache() -> &'static Cache {
    CATALOG_CACHE.get().expect("support::install ran")
}

/// The Redis cache (MessagePack) [`catalog_mp`] uses.
pub fn catalog_mp_cache() -> &'static Cache {
    CATALOG_MP_CACHE.get().expect("support::install ran")
}

/// The near-cached Redis cache [`catalog_near`] uses.
pub fn catalog_near_cache() -> &'static Cache {
    CATALOG_NEAR_CACHE.get().expect("support::install ran")
}

/// The Redis cache [`order`] uses.
pub fn redis_cache() -> &'static Cache {
    REDIS_CACHE.get().expect("support::install ran")
}

/// The near-cached Redis cache [`order_near`] uses.
pub fn near_cache() -> &'static Cache {
    NEAR_CACHE.get().expect("support::install ran")
}

/// The in-memory cache [`order_memory`] uses.
pub fn memory_cache() -> &'static Cache {
    MEMORY_CACHE.get().expect("support::install ran")
}

/// The Redis URL, for the `cached` crate's store (built inside its macro on first use).
pub fn redis_url() -> &'static str {
    REDIS_URL.get().expect("support::install ran")
}

/// Builds the caches on the server at `url`. Call once, before any cached function.
pub fn install(url: &str) {
    REDIS_URL.set(url.to_string()).expect("install once");
    let redis = Cache::builder()
        .redis_url(url)
        .prefix("bench")
        .build()
        .expect("redis cache");
    let near = Cache::builder()
        .redis_url(url)
        .prefix("bench_near")
        .near_cache(1_000)
        .build()
        .expect("near cache");
    let memory = Cache::builder().in_memory().build().expect("memory cache");
    let catalog = |prefix: &str, codec: Codec, near: bool| {
        let b = Cache::builder().redis_url(url).prefix(prefix).codec(codec);
        if near { b.near_cache(4 * CATALOGS) } else { b }
            .build()
            .expect("catalog cache")
    };
    let _ = CATALOG_CACHE.set(catalog("bench_cat", Codec::Json, false));
    let _ = CATALOG_MP_CACHE.set(catalog("bench_cat_mp", Codec::MessagePack, false));
    let _ = CATALOG_NEAR_CACHE.set(catalog("bench_cat_near", Codec::Json, true));
    let _ = REDIS_CACHE.set(redis);
    let _ = NEAR_CACHE.set(near);
    let _ = MEMORY_CACHE.set(memory);
}

/// The cached function, on Redis.
#[cached_action(fresh = 3600, stale = 7200, name = "bench.order", cache = redis_cache())]
pub async fn order(order_id: &str) -> Result<Order, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(backend_order(order_id))
}

/// The cached function, on Redis with a near cache.
#[cached_action(fresh = 3600, stale = 7200, name = "bench.order", cache = near_cache())]
pub async fn order_near(order_id: &str) -> Result<Order, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(backend_order(order_id))
}

/// The cached function, in memory.
#[cached_action(fresh = 3600, stale = 7200, name = "bench.order", cache = memory_cache())]
pub async fn order_memory(order_id: &str) -> Result<Order, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(backend_order(order_id))
}

/// The many-keys function, on Redis, JSON.
#[cached_action(fresh = 3600, stale = 7200, name = "bench.catalog", cache = catalog_cache())]
pub async fn catalog(page: u32) -> Result<Vec<Item>, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(backend_catalog(page))
}

/// The many-keys function, on Redis, MessagePack.
#[cached_action(fresh = 3600, stale = 7200, name = "bench.catalog", cache = catalog_mp_cache())]
pub async fn catalog_mp(page: u32) -> Result<Vec<Item>, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(backend_catalog(page))
}

/// The many-keys function, on Redis with a near cache.
#[cached_action(fresh = 3600, stale = 7200, name = "bench.catalog", cache = catalog_near_cache())]
pub async fn catalog_near(page: u32) -> Result<Vec<Item>, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(backend_catalog(page))
}

/// [`catalog_near`] returning the value in an `Arc`: a near-cache hit then clones the `Arc`, not
/// the 25 structs, which is what a caller with a large value should do.
#[cached_action(
    fresh = 3600,
    stale = 7200,
    name = "bench.catalog.shared",
    cache = catalog_near_cache()
)]
pub async fn catalog_near_shared(page: u32) -> Result<Arc<Vec<Item>>, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(Arc::new(backend_catalog(page)))
}

/// Loads every page of the many-keys workload into its three caches (250 tasks: `spread`
/// needs a divisor of [`CATALOGS`] to cover them all) and
/// reads each near-cached page until the near cache holds it decoded.
///
/// # Panics
///
/// When a call fails.
pub async fn warm_catalogs() {
    spread(250, CATALOGS, |i| async move {
        let page = i as u32;
        catalog(page).await.expect("catalog");
        catalog_mp(page).await.expect("catalog_mp");
        catalog_near(page).await.expect("catalog_near");
        catalog_near_shared(page)
            .await
            .expect("catalog_near_shared");
    })
    .await;
    // A load whose write timed out under the warm-up's load was returned but not stored: load
    // those again until every entry is in Redis (the floors read them all).
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = ConnectionManager::new(client).await.expect("connect");
    for _ in 0..10 {
        let mut missing = Vec::new();
        for page in 0..CATALOGS as u32 {
            for key in [
                catalog_key(page),
                catalog_mp_key(page),
                catalog_near_key(page),
            ] {
                let there: bool = redis::AsyncCommands::exists(&mut conn, &key)
                    .await
                    .expect("EXISTS");
                if !there {
                    missing.push(page);
                    break;
                }
            }
        }
        if missing.is_empty() {
            break;
        }
        for page in missing {
            catalog(page).await.expect("catalog");
            catalog_mp(page).await.expect("catalog_mp");
            catalog_near(page).await.expect("catalog_near");
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while catalog_near_cache().stats().near_hits == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "near cache never answered"
        );
        catalog_near(0).await.expect("catalog_near");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Twice: the first near hit of a loaded entry decodes it and keeps the value.
    for _ in 0..2 {
        spread(250, CATALOGS, |i| async move {
            catalog_near(i as u32).await.expect("catalog_near");
            catalog_near_shared(i as u32)
                .await
                .expect("catalog_near_shared");
        })
        .await;
    }
}

/// The cached function through the `cached` crate, on Redis through a `ConnectionManager`.
#[cached::macros::concurrent_cached(
    map_error = r##"|e| format!("cached store: {e}")"##,
    ty = "cached::AsyncRedisCache<String, Order>",
    create = r##"{
        cached::AsyncRedisCache::builder("bench_cached")
            .ttl(Duration::from_secs(3600))
            .connection_string(redis_url())
            .connection_manager(true)
            .build()
            .await
            .expect("cached crate redis store")
    }"##,
    convert = r##"{ order_id.to_string() }"##
)]
/// [`order`] through the `cached` crate's `#[concurrent_cached]` with its async Redis store.
pub async fn cached_crate_order(order_id: &str) -> Result<Order, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(backend_order(order_id))
}

/// Fills every cache with every order, so the measured calls are all hits, and waits until the
/// near cache answers (its subscription must be up before it is trusted).
///
/// # Panics
///
/// When a call fails or the near cache does not start answering within 10 s.
pub async fn warm() {
    for id in order_ids() {
        order(&id).await.expect("order");
        order_near(&id).await.expect("order_near");
        order_memory(&id).await.expect("order_memory");
        cached_crate_order(&id).await.expect("cached_crate_order");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let before = near_cache().stats().near_hits;
    while near_cache().stats().near_hits == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "near cache never answered"
        );
        for id in order_ids() {
            order_near(&id).await.expect("order_near");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for id in order_ids() {
        order_near(&id).await.expect("order_near");
    }
}

/// A plain `GET` on its own `ConnectionManager`: the floor for a Redis hit.
#[derive(Clone, Debug)]
pub struct RawRedis {
    conn: ConnectionManager,
    keys: Arc<Vec<String>>,
}

impl RawRedis {
    /// Connects to the server the caches use; reads the keys [`order`] stored.
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    pub async fn connect() -> RawRedis {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let conn = ConnectionManager::new(client).await.expect("connect");
        let keys = order_ids().iter().map(|id| order_key(id)).collect();
        RawRedis {
            conn,
            keys: Arc::new(keys),
        }
    }

    /// The raw `GET` of the many-keys entries `cache` stored for `key(page)` (one of
    /// [`catalog_key`], [`catalog_mp_key`]).
    pub async fn catalogs(key: fn(u32) -> String) -> RawRedis {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let conn = ConnectionManager::new(client).await.expect("connect");
        let keys = (0..CATALOGS as u32).map(key).collect();
        RawRedis {
            conn,
            keys: Arc::new(keys),
        }
    }

    /// `GET` of the entry of the `i`-th operation's page ([`catalog_page`]).
    ///
    /// # Panics
    ///
    /// When the key is missing or the command fails.
    pub async fn get_nth(&self, i: usize) -> Vec<u8> {
        let mut conn = self.conn.clone();
        let key = &self.keys[catalog_page(i) as usize % self.keys.len()];
        let bytes: Option<Vec<u8>> = redis::AsyncCommands::get(&mut conn, key)
            .await
            .expect("GET");
        bytes.expect("warmed entry")
    }

    /// `GET` of the `i`-th order's entry (the bytes the cache stored).
    ///
    /// # Panics
    ///
    /// When the key is missing or the command fails.
    pub async fn get(&self, i: usize) -> Vec<u8> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = redis::AsyncCommands::get(&mut conn, &self.keys[i % ORDERS])
            .await
            .expect("GET");
        bytes.expect("warmed entry")
    }
}

/// Decodes the value of a JSON entry as the cache stores it (`AC1:` token, then the envelope),
/// the way a hand-written cache would: the floor's decode.
pub fn decode_json_entry(bytes: &[u8]) -> Vec<Item> {
    #[derive(Deserialize)]
    struct Envelope {
        v: Vec<Item>,
    }
    serde_json::from_slice::<Envelope>(&bytes[21..])
        .expect("a JSON entry")
        .v
}

/// Decodes the value of a MessagePack entry (`AM2:` token, 36-byte header whose last four bytes
/// are the tag block's length, the tag block, then the value).
pub fn decode_message_pack_entry(bytes: &[u8]) -> Vec<Item> {
    let block = u32::from_be_bytes(bytes[21 + 32..21 + 36].try_into().expect("4 bytes"));
    rmp_serde::from_slice(&bytes[21 + 36 + block as usize..]).expect("a MessagePack entry")
}

/// The argument set of a typical call: a few strings, a number and a small map.
pub fn typical_key() -> CacheKey {
    typical_key_builder().build()
}

/// [`typical_key`] before hashing, for the bytes it hashes. The name is a literal, as the
/// macro's always is, and the map argument already exists, as a caller's would: what is measured
/// is building the key, not the arguments.
pub fn typical_key_builder() -> KeyBuilder {
    static FILTERS: std::sync::LazyLock<BTreeMap<&str, &str>> =
        std::sync::LazyLock::new(|| BTreeMap::from([("status", "open"), ("channel", "voice")]));
    let filters = &*FILTERS;
    // In name order, as `#[cached_action]` emits its arguments (added out of order, the same
    // bytes are hashed span by span, about 40 ns more for this set).
    let mut b = KeyBuilder::from_static("crm.search");
    b.arg("filters", filters)
        .and_then(|b| b.arg("limit", &50u32))
        .and_then(|b| b.arg("query", "open orders for account"))
        .and_then(|b| b.arg("region", "eu-west-1"))
        .and_then(|b| b.arg("tenant", "acme-eu"))
        .expect("a valid key");
    b
}

/// A key for the engine-level benchmarks (no key building in the measured call).
pub fn engine_key(id: &str) -> CacheKey {
    let mut b = KeyBuilder::new("bench.engine");
    b.arg("order_id", id).expect("a valid key");
    b.build()
}

/// The policy of the engine-level benchmarks.
pub fn policy() -> Policy {
    Policy::new(Duration::from_secs(3600), Duration::from_secs(7200)).expect("policy")
}

/// Runs `total` operations spread evenly over `tasks` spawned tasks, `op(i)` for each `i`.
///
/// # Panics
///
/// When a task panics.
pub async fn spread<F, Fut>(tasks: usize, total: usize, op: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per = total / tasks;
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let op = op.clone();
        set.spawn(async move {
            for i in 0..per {
                op(t * per + i).await;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
}

/// How long the stampede loader takes: long enough that every caller arrives while it runs.
pub const STAMPEDE_LOAD: Duration = Duration::from_millis(50);

/// `callers` concurrent calls on one cold key for each of `caches` (sharing one store); returns
/// how many times the loader ran.
///
/// # Panics
///
/// When a call fails or returns the wrong value.
pub async fn stampede(caches: &[Cache], callers: usize, round: u64) -> usize {
    let loads = Arc::new(AtomicUsize::new(0));
    let key = {
        let mut b = KeyBuilder::new("bench.stampede");
        b.arg("round", &round).expect("a valid key");
        b.build()
    };
    let policy = policy();
    let mut set = JoinSet::new();
    for cache in caches {
        for _ in 0..callers {
            let (cache, key, policy, loads) = (
                cache.clone(),
                key.clone(),
                policy.clone(),
                Arc::clone(&loads),
            );
            set.spawn(async move {
                let v: u64 = cache
                    .get_or_load(&key, &policy, move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(STAMPEDE_LOAD).await;
                        Ok::<_, String>(round)
                    })
                    .await
                    .expect("stampede call");
                assert_eq!(v, round);
            });
        }
    }
    while let Some(r) = set.join_next().await {
        r.expect("caller");
    }
    loads.load(Ordering::SeqCst)
}

/// `n` caches on the server at `url` sharing one prefix, as `n` processes would.
pub fn processes(url: &str, n: usize) -> Vec<Cache> {
    (0..n)
        .map(|_| {
            Cache::builder()
                .redis_url(url)
                .prefix("bench_stampede")
                .build()
                .expect("cache")
        })
        .collect()
}

/// The runtime every bench and report measures on: tokio's multi-thread runtime with 2 workers
/// (the one [`machine`] names).
///
/// # Panics
///
/// When the runtime cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The machine a report ran on: cores, CPU model, kernel, redis-server version, and the runtime
/// the reports use.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let redis = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .and_then(|v| {
            v.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{cores} cores ({cpu}), Linux {kernel}, redis-server {redis}, tokio multi-thread runtime with 2 workers"
    )
}

/// The 1, 5 and 15 minute load averages, e.g. `1.73 2.24 2.50`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
