//! The value codec, on a real Redis: MessagePack entries carry their own format tag, values
//! with serde attributes round-trip, and an entry written with another codec is a miss that its
//! load overwrites, never a value decoded from the wrong format.

use action_cache_core::{Cache, CacheKey, Codec, Policy};
use action_cache_testing::RedisServer;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Contact {
    Phone { phone: String },
    Email { email: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    contact: Contact,
    extra: serde_json::Value,
}

fn account(id: u32) -> Account {
    Account {
        id,
        nickname: None,
        region: Some("eu".into()),
        contact: Contact::Email {
            email: format!("{id}@example.com"),
        },
        extra: serde_json::json!({"score": 1.5, "flags": [true, null]}),
    }
}

fn key(id: u32) -> CacheKey {
    let mut b = CacheKey::builder("codec");
    b.arg("id", &id).unwrap();
    b.build()
}

fn policy() -> Policy {
    Policy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

fn cache(server: &RedisServer, codec: Codec) -> Cache {
    Cache::builder()
        .redis_url(server.url())
        .op_timeout(Duration::from_secs(2))
        .codec(codec)
        .build()
        .unwrap()
}

async fn get(cache: &Cache, policy: &Policy, id: u32, loaded: Account) -> Account {
    cache
        .get_or_load(
            &key(id),
            policy,
            move || async move { Ok::<_, String>(loaded) },
        )
        .await
        .unwrap()
}

/// The first four bytes of the entry: its format tag.
fn tag(server: &RedisServer, cache: &Cache, id: u32) -> String {
    server.cli(&["GETRANGE", &cache.full_key(&key(id)), "0", "3"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_pack_entries_round_trip_values_with_serde_attributes() {
    let server = RedisServer::start();
    let mp = cache(&server, Codec::MessagePack);
    let mut other = account(1);
    other.nickname = Some("ada".into());
    other.contact = Contact::Phone {
        phone: "+44".into(),
    };
    for (id, value) in [(1, account(1)), (2, other)] {
        assert_eq!(get(&mp, &policy(), id, value.clone()).await, value);
        assert_eq!(tag(&server, &mp, id), "AM2:");
        let hit = get(&mp, &policy(), id, account(99)).await;
        assert_eq!(hit, value, "a hit returns what was stored");
    }
    let stats = mp.stats();
    assert_eq!((stats.loads, stats.fresh_hits), (2, 2));
    assert_eq!((stats.unstorable_values, stats.corrupt_entries), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_another_codec_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    let (json, mp) = (
        cache(&server, Codec::Json),
        cache(&server, Codec::MessagePack),
    );
    let mut first = account(1);
    first.region = Some("written as JSON".into());
    assert_eq!(get(&json, &policy(), 1, first.clone()).await, first);
    assert_eq!(tag(&server, &json, 1), "AC1:");

    // The MessagePack cache does not read the JSON entry: it loads and overwrites it.
    let mut second = account(1);
    second.region = Some("written as MessagePack".into());
    assert_eq!(get(&mp, &policy(), 1, second.clone()).await, second);
    assert_eq!(mp.stats().loads, 1);
    assert_eq!(mp.stats().corrupt_entries, 1);
    assert_eq!(tag(&server, &mp, 1), "AM2:");
    assert_eq!(
        get(&mp, &policy(), 1, account(99)).await,
        second,
        "now a hit"
    );

    // And back: the JSON cache misses on the MessagePack entry and rewrites it as JSON.
    assert_eq!(get(&json, &policy(), 1, first.clone()).await, first);
    assert_eq!(json.stats().loads, 2);
    assert_eq!(tag(&server, &json, 1), "AC1:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_codec_overrides_the_cache_codec() {
    let server = RedisServer::start();
    let json = cache(&server, Codec::Json);
    let mp_policy = Policy::builder()
        .fresh(Duration::from_secs(60))
        .stale(Duration::from_secs(120))
        .codec(Codec::MessagePack)
        .build()
        .unwrap();
    assert_eq!(mp_policy.codec(), Some(Codec::MessagePack));
    assert_eq!(get(&json, &mp_policy, 3, account(3)).await, account(3));
    assert_eq!(tag(&server, &json, 3), "AM2:");
    assert_eq!(get(&json, &mp_policy, 3, account(99)).await, account(3));
    assert_eq!(json.stats().fresh_hits, 1);
    // A put through the policy writes its codec too.
    json.put(&key(4), &mp_policy, &account(4)).await.unwrap();
    assert_eq!(tag(&server, &json, 4), "AM2:");
    assert_eq!(get(&json, &mp_policy, 4, account(99)).await, account(4));
}

#[tokio::test]
async fn the_memory_store_honours_the_codec() {
    let mp = Cache::builder()
        .in_memory()
        .codec(Codec::MessagePack)
        .build()
        .unwrap();
    assert_eq!(get(&mp, &policy(), 1, account(1)).await, account(1));
    assert_eq!(get(&mp, &policy(), 1, account(99)).await, account(1));
    assert_eq!(mp.stats().loads, 1);
}
