//! Foreign data under the keys `#[cached_action]` uses: whatever another program (or an older
//! version of this one) left there, a call returns the correct value, counts the entry as
//! corrupt, and overwrites it with a good one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use action_cache::{cached_action, Cache, CacheError, StoreError};
use action_cache_testing::RedisServer;
use serde::{Deserialize, Serialize};

const LOADED: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u32,
    name: String,
}

fn account_of(id: u32) -> Account {
    Account {
        id,
        name: format!("account {id}"),
    }
}

/// Runs one raw command on `server` with binary-safe arguments.
async fn raw(server: &RedisServer, args: &[&[u8]]) -> redis::Value {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

async fn raw_get(server: &RedisServer, key: &str) -> Vec<u8> {
    match raw(server, &[b"GET", key.as_bytes()]).await {
        redis::Value::BulkString(b) => b,
        other => panic!("GET {key}: {other:?}"),
    }
}

/// Injects, each under the key of a different call: random binary bytes (invalid UTF-8, NUL),
/// an empty string, a list, a hash, a set, a sorted set, a stream, bare JSON of the right shape
/// without our envelope, our envelope holding JSON of another shape, our envelope without its
/// timing fields, an older format tag, and a truncated copy of a real entry.
/// Proves: every call returns the loader's (correct) value, never the foreign data; each
/// foreign entry is counted once as corrupt; each is overwritten by a good entry of ours (a
/// string in our format), so the next call is a fresh hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_is_a_counted_miss_that_gets_overwritten() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 300, cache = CACHE.get().unwrap())]
    async fn account(id: u32) -> Result<Account, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(account_of(id))
    }

    let server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    });

    // A real entry, truncated: written with `_put`, then cut short.
    account_put(12, &account_of(12)).await.unwrap();
    let good = raw_get(&server, &account_key(12)).await;
    assert!(good.starts_with(b"AC1:"));
    let truncated = good[..good.len() - 5].to_vec();

    let k = |id: u32| account_key(id);
    let cases: Vec<(u32, &str, Vec<Vec<u8>>)> = vec![
        (
            1,
            "binary",
            vec![b"SET".to_vec(), vec![0xff, 0x00, 0xfe, b'\n', 0x80, 0x00]],
        ),
        (2, "empty", vec![b"SET".to_vec(), Vec::new()]),
        (3, "list", vec![b"RPUSH".to_vec(), b"a".to_vec(), b"b".to_vec()]),
        (
            4,
            "hash",
            vec![b"HSET".to_vec(), b"id".to_vec(), b"4".to_vec()],
        ),
        (5, "set", vec![b"SADD".to_vec(), b"member".to_vec()]),
        (
            6,
            "sorted set",
            vec![b"ZADD".to_vec(), b"1".to_vec(), b"m".to_vec()],
        ),
        (
            7,
            "stream",
            vec![b"XADD".to_vec(), b"*".to_vec(), b"f".to_vec(), b"v".to_vec()],
        ),
        (
            8,
            "bare JSON of the right shape",
            vec![b"SET".to_vec(), br#"{"id":8,"name":"account 8"}"#.to_vec()],
        ),
        (
            9,
            "envelope, other shape",
            vec![
                b"SET".to_vec(),
                b"AC1:0000000000000001\n{\"at\":1,\"f\":999999999999999,\"s\":999999999999999,\"d\":0,\"v\":[1,2,3]}"
                    .to_vec(),
            ],
        ),
        (
            10,
            "envelope without timing",
            vec![
                b"SET".to_vec(),
                b"AC1:0000000000000001\n{\"v\":{\"id\":10,\"name\":\"forged\"}}".to_vec(),
            ],
        ),
        (
            11,
            "older format tag",
            vec![
                b"SET".to_vec(),
                b"AC0:0000000000000001\n{\"at\":1,\"f\":1,\"s\":1,\"d\":0,\"v\":{\"id\":11,\"name\":\"old\"}}"
                    .to_vec(),
            ],
        ),
        (12, "truncated entry", vec![b"SET".to_vec(), truncated]),
    ];
    for (id, what, cmd) in &cases {
        let key = k(*id);
        let mut args: Vec<&[u8]> = vec![&cmd[0], key.as_bytes()];
        args.extend(cmd[1..].iter().map(Vec::as_slice));
        raw(&server, &args).await;
        assert_eq!(server.cli(&["EXISTS", &key]), "1", "{what} planted");
    }

    for (id, what, _) in &cases {
        assert_eq!(account(*id).await, Ok(account_of(*id)), "{what}");
    }
    let s = cache.stats();
    let n = cases.len() as u64;
    assert_eq!(
        s.corrupt_entries, n,
        "each foreign entry counted once: {s:?}"
    );
    assert_eq!((s.misses, s.loads), (n, n), "{s:?}");
    assert_eq!(CALLS.load(Ordering::SeqCst), cases.len());

    for (id, what, _) in &cases {
        assert_eq!(server.cli(&["TYPE", &k(*id)]), "string", "{what}");
        let stored = raw_get(&server, &k(*id)).await;
        assert!(stored.starts_with(b"AC1:"), "{what} overwritten by ours");
        assert_eq!(account(*id).await, Ok(account_of(*id)), "{what}");
    }
    let s = cache.stats();
    assert_eq!(
        s.fresh_hits, n,
        "each overwritten entry is now a hit: {s:?}"
    );
    assert_eq!(s.corrupt_entries, n, "{s:?}");
    assert_eq!(
        s.store_errors, 0,
        "foreign data is not a store failure: {s:?}"
    );
}

/// Injects: a string where an entry's tag set belongs (the set `invalidate_tag` empties).
/// Proves: calls still return correct values and are cached (the entry is written even though
/// adding it to the tag set fails), `invalidate_tag` on that tag reports a clear wrong-type
/// error naming the key instead of panicking or pretending it purged, and the failing tag
/// update is not taken for a store failure (no store errors, the breaker stays closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_under_a_tag_set_keeps_values_correct_and_reports_the_purge() {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 300, tags = ["account:{id}"], cache = CACHE.get().unwrap())]
    async fn tagged(id: u32) -> Result<Account, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(account_of(id))
    }

    let server = RedisServer::start();
    let cache = CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    });
    let tag_key = format!("{}#tag:account:5", cache.prefix());
    server.cli(&["SET", &tag_key, "not a set"]);

    assert_eq!(tagged(5).await, Ok(account_of(5)));
    assert_eq!(tagged(5).await, Ok(account_of(5)));
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the entry was cached");
    assert_eq!(cache.stats().store_errors, 0);

    match cache.invalidate_tag("account:5").await {
        Err(CacheError::Store(StoreError::WrongType { key })) => assert_eq!(key, tag_key),
        other => panic!("expected a wrong-type error for {tag_key}, got {other:?}"),
    }
    // The entry itself can still be removed exactly, and rewritten, again and again: the
    // failing tag-set update is about one key, not the store's health, so it must never count
    // towards the circuit breaker (5 failures) and cut every other key off from Redis.
    for round in 0..8 {
        assert!(tagged_invalidate(5).await.unwrap(), "round {round}");
        assert_eq!(tagged(5).await, Ok(account_of(5)));
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 9);
    let s = cache.stats();
    assert_eq!((s.store_errors, s.store_skipped), (0, 0), "{s:?}");
    assert_eq!(tagged(5).await, Ok(account_of(5)));
    assert_eq!(cache.stats().fresh_hits, 2, "still served from Redis");
}
