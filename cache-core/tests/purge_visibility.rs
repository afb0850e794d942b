//! What a call begun after an acknowledged purge or put sees, at the moments the randomized
//! model (`purge_model.rs`) found it seeing the replaced value. Each test holds one store call
//! of the cache under test at a gate, so the race the model hit by chance happens every time;
//! each failed before its fix.

mod support;

use action_cache_core::store::Store;
use action_cache_core::{Cache, CacheKey, Outcome, Policy, StoreError};
use action_cache_testing::RedisServer;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::hooked::{Hooked, Hooks};
use tokio::sync::Notify;

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("visibility");
    b.arg("id", &id).unwrap().tag(format!("t:{id}"));
    b.build()
}

fn policy() -> Policy {
    support::windows(60, 120)
}

/// Holds the next `get` or `set` of one chosen key at a gate: a held `get` has already read
/// Redis (its answer is what Redis held when the read reached it); a held `set` is not sent yet.
#[derive(Debug, Default)]
struct Gate {
    /// (operation, full key) to hold once.
    armed: Mutex<Option<(&'static str, String)>>,
    reached: Notify,
    release: Notify,
    gets: AtomicUsize,
}

impl Gate {
    fn arm(&self, op: &'static str, full: String) {
        *self.armed.lock().unwrap() = Some((op, full));
    }

    /// Holds this call if it is the armed one.
    async fn hold_if_armed(&self, op: &str, key: &str) {
        let armed = {
            let mut armed = self.armed.lock().unwrap();
            let hit = armed.as_ref().is_some_and(|(o, k)| *o == op && k == key);
            if hit {
                *armed = None;
            }
            hit
        };
        if armed {
            let released = self.release.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            self.reached.notify_one();
            released.await;
        }
    }
}

#[async_trait]
impl Hooks for Gate {
    async fn before_get(&self, _key: &str) -> Option<Result<Option<Vec<u8>>, StoreError>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        None
    }
    async fn after_get(&self, key: &str) {
        self.hold_if_armed("get", key).await;
    }
    async fn before_set(&self, key: &str) {
        self.hold_if_armed("set", key).await;
    }
}

type Gated = Hooked<Gate>;

fn gated_cache(store: &Arc<Gated>, near: bool) -> Cache {
    let b = Cache::builder()
        .store(Arc::clone(store) as Arc<dyn Store>)
        .op_timeout(Duration::from_secs(2));
    if near { b.near_cache(100) } else { b }.build().unwrap()
}

async fn get(cache: &Cache, k: &CacheKey, loaded: u64) -> (u64, Outcome) {
    let load = move || async move { Ok::<_, String>(loaded) };
    cache
        .get_or_load_with_outcome(k, &policy(), load, move || Box::pin(load()))
        .await
        .unwrap()
}

/// Reads `other` on `cache` until its near cache answers: the subscription is up and trusted.
async fn until_near_trusted(cache: &Cache, other: &CacheKey) {
    for _ in 0..2_000 {
        let before = cache.stats().near_hits;
        get(cache, other, 0).await;
        if cache.stats().near_hits > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the near cache never answered");
}

/// Lets every other task of this (current-thread) runtime run until it waits.
async fn let_others_run() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A read begun after a purge never takes the answer of another caller's store read already
/// in flight, which may predate the purge (it shares only a read sent after it arrived); with a
/// near cache, nor does it keep that value near.
#[tokio::test(flavor = "current_thread")]
async fn a_read_begun_after_its_own_purge_takes_no_older_read_and_keeps_none_near() {
    let server = RedisServer::start();
    let store = Arc::new(Gated::new(&server, Gate::default()));
    let a = gated_cache(&store, true);
    let writer = support::on_redis(&server).build().unwrap();
    let (k, other) = (key(1), key(2));
    until_near_trusted(&a, &other).await;
    writer.put(&k, &policy(), &1u64).await.unwrap(); // Redis holds version 1

    // Call 1 reads k; its GET has reached Redis (version 1) and is held on the way back.
    store.hooks.arm("get", a.full_key(&k));
    let first = tokio::spawn({
        let (a, k) = (a.clone(), k.clone());
        async move { get(&a, &k, 99).await }
    });
    store.hooks.reached.notified().await;

    // Version 2 is the backend's now; this process purges k and the purge is acknowledged.
    assert!(a.invalidate(&k).await.unwrap());
    assert_eq!(server.cli(&["EXISTS", &a.full_key(&k)]), "0");

    // Call 2 begins after the acknowledged purge.
    let gets = store.hooks.gets.load(Ordering::SeqCst);
    let second = tokio::spawn({
        let (a, k) = (a.clone(), k.clone());
        async move { get(&a, &k, 2).await }
    });
    let_others_run().await;
    assert_eq!(
        store.hooks.gets.load(Ordering::SeqCst),
        gets,
        "call 2 joined call 1's read"
    );
    store.hooks.release.notify_one();
    assert_eq!(
        first.await.unwrap(),
        (1, Outcome::Fresh),
        "call 1 predates the purge"
    );
    let second = second.await.unwrap();
    // A later call, long after the purge, is answered from the near cache.
    let near_before = a.stats().near_hits;
    let third = get(&a, &k, 3).await;
    let near_hit = a.stats().near_hits > near_before;
    assert!(
        second.0 >= 2 && third.0 >= 2,
        "calls that began after the acknowledged purge got {second:?} and {third:?}: the \
         purged version (third answered by the near cache: {near_hit}); Redis holds k: {}",
        server.cli(&["EXISTS", &a.full_key(&k)])
    );
}

/// The same without a near cache, the purge made by another process: the call that began after
/// the acknowledged purge gets post-purge data.
#[tokio::test(flavor = "current_thread")]
async fn a_read_begun_after_another_process_purge_takes_no_older_read() {
    let server = RedisServer::start();
    let store = Arc::new(Gated::new(&server, Gate::default()));
    let b = gated_cache(&store, false);
    let a = support::on_redis(&server).build().unwrap();
    let k = key(1);
    a.put(&k, &policy(), &1u64).await.unwrap();

    store.hooks.arm("get", b.full_key(&k));
    let first = tokio::spawn({
        let (b, k) = (b.clone(), k.clone());
        async move { get(&b, &k, 99).await }
    });
    store.hooks.reached.notified().await;
    assert!(a.invalidate(&k).await.unwrap());

    let second = tokio::spawn({
        let (b, k) = (b.clone(), k.clone());
        async move { get(&b, &k, 2).await }
    });
    let_others_run().await;
    store.hooks.release.notify_one();
    assert_eq!(first.await.unwrap(), (1, Outcome::Fresh));
    let second = second.await.unwrap();
    assert_eq!(
        second,
        (2, Outcome::Miss),
        "the call that began after the acknowledged purge got the purged version"
    );
}

/// A put on a near-cached process drops the value that process held near even when an
/// invalidation event (here: a purge of an unrelated key, from this process) lands while the
/// put's write is in flight, which keeps the put's own value out of the tier: after the
/// acknowledged put the process never answers the value the put replaced.
#[tokio::test(flavor = "current_thread")]
async fn a_put_that_raced_an_unrelated_purge_leaves_no_old_value_near() {
    let server = RedisServer::start();
    let store = Arc::new(Gated::new(&server, Gate::default()));
    let a = gated_cache(&store, true);
    let (k, unrelated) = (key(1), key(2));
    until_near_trusted(&a, &unrelated).await;
    assert_eq!(get(&a, &k, 1).await, (1, Outcome::Miss));
    assert_eq!(get(&a, &k, 99).await, (1, Outcome::Fresh)); // held near

    store.hooks.arm("set", a.full_key(&k));
    let put = tokio::spawn({
        let (a, k) = (a.clone(), k.clone());
        async move { a.put(&k, &policy(), &2u64).await }
    });
    store.hooks.reached.notified().await;
    a.invalidate(&unrelated).await.unwrap();
    store.hooks.release.notify_one();
    put.await.unwrap().unwrap();

    let stored = writer_read(&server, &k).await;
    let near_before = a.stats().near_hits;
    let after = get(&a, &k, 99).await;
    assert_eq!(
        after.0,
        2,
        "after its own acknowledged put of version 2 the process answered the old version \
         {after:?} (near hit: {}); Redis holds version {stored}",
        a.stats().near_hits > near_before
    );
}

/// What a cache without a near cache reads for `k` (Redis's view).
async fn writer_read(server: &RedisServer, k: &CacheKey) -> u64 {
    let plain = support::on_redis(server).build().unwrap();
    get(&plain, k, 0).await.0
}

/// A read of the entry a put replaced, in flight in the same near-cached process while the put
/// runs, does not keep that replaced value near once the put has returned: the process's own
/// writes move its near epoch, so the late fill is refused instead of overwriting the put's
/// copy.
#[tokio::test(flavor = "current_thread")]
async fn a_read_that_raced_its_own_process_put_does_not_keep_the_replaced_value_near() {
    let server = RedisServer::start();
    let store = Arc::new(Gated::new(&server, Gate::default()));
    let a = gated_cache(&store, true);
    let writer = support::on_redis(&server).build().unwrap();
    let (k, other) = (key(1), key(2));
    until_near_trusted(&a, &other).await;
    writer.put(&k, &policy(), &1u64).await.unwrap(); // Redis holds version 1; A holds nothing

    store.hooks.arm("get", a.full_key(&k));
    let first = tokio::spawn({
        let (a, k) = (a.clone(), k.clone());
        async move { get(&a, &k, 99).await }
    });
    store.hooks.reached.notified().await; // its GET found version 1
    a.put(&k, &policy(), &2u64).await.unwrap();
    store.hooks.release.notify_one();
    assert_eq!(
        first.await.unwrap(),
        (1, Outcome::Fresh),
        "it began before the put"
    );

    let stored = writer_read(&server, &k).await;
    let near_before = a.stats().near_hits;
    let after = get(&a, &k, 99).await;
    assert_eq!(
        after.0,
        2,
        "after its own acknowledged put of version 2 the process answered {after:?} (near hit: \
         {}); Redis holds version {stored}",
        a.stats().near_hits > near_before
    );
}

/// Two purges of one tag at once: the second finds the tag set emptied by the first, which has
/// not yet deleted what it took off it, and still returns only once the tagged entry is gone,
/// so a read (any process, no near cache) gets post-purge data. The first purge is played here
/// with `redis-cli`, the same commands `RedisStore::delete_tagged` sends: bump the tag's
/// generation, move the members to `{tag set}:purging`, and (later) `UNLINK` them. Before the
/// fix, the second purge returned with the entry still in Redis.
#[tokio::test(flavor = "current_thread")]
async fn a_tag_purge_racing_another_purge_of_the_tag_returns_only_once_the_entry_is_gone() {
    let server = RedisServer::start();
    let cache = |_: ()| support::on_redis(&server).build().unwrap();
    let (a, b) = (cache(()), cache(()));
    let k = key(1);
    a.put(&k, &policy(), &1u64).await.unwrap();
    let full = a.full_key(&k);
    let tag_set = format!("{}#tag:t:1", a.prefix());

    // Another process's `invalidate_tag("t:1")`, halfway: generation bumped, members popped.
    server.cli(&["INCR", &format!("{{{tag_set}}}:gen")]);
    assert_eq!(server.cli(&["SPOP", &tag_set, "500"]), full);
    server.cli(&["SADD", &format!("{{{tag_set}}}:purging"), &full]);

    // This process's purge of the same tag (version 2 is the backend's now) is acknowledged...
    let purged = a.invalidate_tag("t:1").await.unwrap();
    let still_there = server.cli(&["EXISTS", &full]);
    // ...and a call that begins after it gets the purged value.
    let got = get(&b, &k, 2).await;
    server.cli(&["UNLINK", &full]); // the other purge finishes
    assert_eq!(
        got.0, 2,
        "after an acknowledged invalidate_tag (it reported {purged} removed; the entry still \
         exists: {still_there}) a call got {got:?}"
    );
}
