//! `codec = "messagepack"` on a function: its entries are stored in MessagePack (on a real
//! Redis), read back as hits, and a JSON-cache function beside it keeps JSON entries.

use std::sync::atomic::{AtomicUsize, Ordering};

use action_cache::{cached_action, Cache};
use action_cache_testing::RedisServer;
use serde::{Deserialize, Serialize};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u32,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
}

#[cached_action(fresh = 60, codec = "messagepack")]
async fn account_mp(id: u32) -> Result<Account, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(Account {
        id,
        name: format!("n{id}"),
        note: None,
    })
}

#[cached_action(fresh = 60)]
async fn account_json(id: u32) -> Result<Account, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(Account {
        id,
        name: format!("n{id}"),
        note: Some("x".into()),
    })
}

#[tokio::test]
async fn a_function_with_a_codec_stores_its_entries_in_it() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    action_cache::set_global(cache.clone()).unwrap();

    let first = account_mp(7).await.unwrap();
    assert_eq!(account_mp(7).await.unwrap(), first);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the second call was a hit");
    let raw = server.cli(&["GETRANGE", &account_mp_key(7), "0", "3"]);
    assert_eq!(raw.trim(), "AM2:", "a MessagePack entry");

    account_json(7).await.unwrap();
    assert_eq!(account_json(7).await.unwrap().note.as_deref(), Some("x"));
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    let raw = server.cli(&["GETRANGE", &account_json_key(7), "0", "3"]);
    assert_eq!(raw.trim(), "AC1:", "the cache's default codec, JSON");
}
