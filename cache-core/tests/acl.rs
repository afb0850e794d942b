//! Redis ACL users (`redis://user:password@host`) on a real server: a user with the
//! permissions README lists works; a wrong password or a missing permission is reported once,
//! clearly, never with the password, while callers keep getting their values (fail-open).

use action_cache_core::{Cache, CacheKey, Policy};
use action_cache_testing::logs::Logs;
use action_cache_testing::RedisServer;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "s3cret-Pw-4f9a";

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("acl");
    b.arg("id", &id).unwrap().tag("acl-tag");
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

/// Creates the ACL user `name` with these rules, and returns a URL that logs in as it.
fn user(server: &RedisServer, name: &str, rules: &[&str]) -> String {
    let pass = format!(">{PASSWORD}");
    let mut args = vec!["ACL", "SETUSER", name, "reset", "on", &pass];
    args.extend_from_slice(rules);
    assert_eq!(server.cli(&args), "OK", "ACL SETUSER {rules:?}");
    format!("redis://{name}:{PASSWORD}@127.0.0.1:{}/", server.port())
}

/// The permissions README documents for the cache's user (default prefix `ac`).
const DOCUMENTED: &[&str] = &[
    "~ac:*",
    "~ac#*",
    "~{ac:*",
    "~{ac#*",
    "&ac:__near",
    "+get",
    "+set",
    "+mget",
    "+del",
    "+unlink",
    "+incr",
    "+pexpire",
    "+pttl",
    "+sadd",
    "+spop",
    "+srem",
    "+smembers",
    "+scan",
    "+eval",
    "+evalsha",
    "+script|load",
    "+publish",
    "+subscribe",
    "+ping",
];

fn cache(url: String) -> Cache {
    Cache::builder()
        .redis_url(url)
        .op_timeout(Duration::from_secs(2))
        .circuit_breaker(1_000, Duration::from_millis(100))
        .build()
        .unwrap()
}

async fn get(cache: &Cache, id: u32, calls: &Arc<AtomicU32>) -> String {
    let calls = Arc::clone(calls);
    cache
        .get_or_load(&key(id), &policy(), move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(format!("value-{id}"))
        })
        .await
        .expect("fail-open: never an error")
}

#[tokio::test]
async fn a_user_with_the_documented_permissions_caches_and_purges() {
    let server = RedisServer::start();
    let (logs, _guard) = Logs::capture();
    // With a near cache, so its PUBLISH and SUBSCRIBE are covered too.
    let cache = Cache::builder()
        .redis_url(user(&server, "cache", DOCUMENTED))
        .op_timeout(Duration::from_secs(2))
        .near_cache(100)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(get(&cache, 1, &calls).await, "value-1");
    assert_eq!(get(&cache, 1, &calls).await, "value-1");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "{:?}\n{}",
        cache.stats(),
        logs.text()
    );
    assert_eq!(cache.stats().store_errors, 0, "{:?}", cache.stats());
    assert_eq!(cache.invalidate_tag("acl-tag").await.unwrap(), 1);
    assert_eq!(get(&cache, 1, &calls).await, "value-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "purged, so loaded again");
    assert_eq!(cache.mark_stale_tag("acl-tag").await.unwrap(), 1);
    cache.invalidate_prefix("acl").await.unwrap();
    cache.ping().await.unwrap();
    assert_eq!(cache.stats().store_errors, 0, "{:?}", cache.stats());
    let subscribed = || logs.text().contains("near cache subscribed");
    action_cache_testing::eventually("near cache subscribed", Duration::from_secs(10), subscribed)
        .await;
    let text = logs.text();
    assert!(
        !text.contains("NOPERM") && !text.contains("NoPerm"),
        "{text}"
    );
    assert!(!text.contains("subscription failed"), "{text}");
}

#[tokio::test]
async fn a_wrong_password_is_reported_once_without_the_password() {
    let server = RedisServer::start();
    let good = user(&server, "cache", &["~*", "&*", "+@all"]);
    let (logs, _guard) = Logs::capture();
    let cache = cache(good.replace(PASSWORD, "wrong-Pw-77e1"));
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..5 {
        assert_eq!(get(&cache, 2, &calls).await, "value-2");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "nothing cached");
    let err = cache.ping().await.unwrap_err();
    let shown = format!("{err} {err:?} {cache:?}");
    assert!(shown.contains("authentication failed"), "{shown}");
    assert!(!shown.contains("wrong-Pw-77e1"), "{shown}");
    let text = logs.text();
    assert_eq!(
        text.matches("Redis refused the credentials").count(),
        1,
        "reported once:\n{text}"
    );
    assert!(!text.contains("wrong-Pw-77e1"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[tokio::test]
async fn a_user_without_write_permissions_is_reported_once_and_fails_open() {
    let server = RedisServer::start();
    let read_only = user(&server, "reader", &["~*", "&*", "+get", "+mget", "+ping"]);
    let (logs, _guard) = Logs::capture();
    let cache = cache(read_only);
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..5 {
        assert_eq!(get(&cache, 3, &calls).await, "value-3");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "nothing cached");
    assert_eq!(server.entry_count(), 0);
    let err = cache.invalidate(&key(3)).await.unwrap_err().to_string();
    assert!(err.to_uppercase().contains("NOPERM"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    let text = logs.text();
    assert_eq!(
        text.matches("lacks a permission the cache needs").count(),
        1,
        "reported once:\n{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_whose_near_cache_announcement_fails_is_not_acknowledged() {
    let server = RedisServer::start();
    // Everything the cache needs except PUBLISH: the delete lands, the announcement cannot.
    let rules: Vec<&str> = DOCUMENTED
        .iter()
        .copied()
        .filter(|r| *r != "+publish")
        .collect();
    let url = user(&server, "nopublish", &rules);
    let cache = Cache::builder()
        .redis_url(url)
        .op_timeout(Duration::from_secs(2))
        .near_cache(100)
        .build()
        .unwrap();
    assert!(
        cache.invalidate(&key(1)).await.is_err(),
        "a purge other near caches never heard of was acknowledged"
    );
    assert!(cache.invalidate_tag("acl-tag").await.is_err());
    assert!(cache.put(&key(2), &policy(), "v").await.is_err());
}
