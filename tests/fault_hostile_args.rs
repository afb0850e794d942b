//! Hostile arguments to a `#[cached_action]` function: very long strings, unicode tricks, NUL
//! bytes, protocol and glob characters, cluster hash-tag braces, NaN, and maps nested deeper
//! than any parser allows. Every one hashes to a safe, bounded key (or, when it cannot be keyed,
//! the call runs uncached), and none panics or overflows the stack.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use action_cache::{cached_action, Cache, KeyBuilder};
use action_cache_testing::RedisServer;
use serde::ser::{Serialize, SerializeMap, Serializer};

const LOADED: Duration = Duration::from_secs(2);

/// Asserts `key` is `{prefix}:{name}:{64 lowercase hex}`: bounded, printable ASCII, no spaces,
/// no braces (which would make a Redis Cluster hash tag), whatever the arguments were.
fn assert_safe_key(key: &str, prefix: &str, name: &str) {
    let digest = key
        .strip_prefix(&format!("{prefix}:{name}:"))
        .unwrap_or_else(|| panic!("unexpected key shape: {key:.200}"));
    assert_eq!(digest.len(), 64, "{key}");
    assert!(
        digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{key}"
    );
    assert!(key.len() <= prefix.len() + name.len() + 66, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key}");
    assert!(!key.contains(['{', '}']), "{key}");
}

/// Every key in `server`, byte for byte (redis-cli would split keys holding newlines).
async fn all_keys(server: &RedisServer) -> Vec<Vec<u8>> {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A map nested `depth` levels deep (`{"k":{"k":…{"k":0}}}`), produced on the fly so the test
/// itself holds nothing deep.
#[derive(Clone, Copy, Debug)]
struct Deep(usize);

impl Serialize for Deep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        if self.0 <= 1 {
            map.serialize_entry("k", &0)?;
        } else {
            map.serialize_entry("k", &Deep(self.0 - 1))?;
        }
        map.end()
    }
}

static CACHE: OnceLock<Cache> = OnceLock::new();
static TEXT_CALLS: AtomicUsize = AtomicUsize::new(0);
static DEEP_CALLS: AtomicUsize = AtomicUsize::new(0);
static FLOAT_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Returns a digest of its argument that the test can check.
#[cached_action(fresh = 300, name = "hostile.text", cache = CACHE.get().unwrap())]
async fn text(s: String) -> Result<(usize, usize), String> {
    TEXT_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok((s.len(), s.chars().count()))
}

#[cached_action(fresh = 300, name = "hostile.deep", cache = CACHE.get().unwrap())]
async fn deep(d: Deep) -> Result<usize, String> {
    DEEP_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(d.0)
}

#[cached_action(fresh = 300, name = "hostile.float", cache = CACHE.get().unwrap())]
async fn float(x: f64, labels: BTreeMap<String, f64>) -> Result<String, String> {
    FLOAT_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("{x}/{}", labels.len()))
}

fn cache_for(server: &RedisServer) -> &'static Cache {
    CACHE.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    })
}

/// Injects: a 1 MB string, emoji and combining marks, an RTL override, NUL bytes, CR/LF (a RESP
/// injection attempt), glob characters, cluster hash-tag braces, a colon-laden fake key, and
/// near-duplicates (NFC vs NFD, a trailing NUL).
/// Proves: every key is `ac:hostile.text:<64 hex>` (bounded, ASCII, brace-free); distinct
/// arguments get distinct keys and equal ones the same; the values are correct and cached (a
/// second call is a hit); and Redis holds only keys of that shape — no argument reached a key
/// name, so none can inject into the protocol, a `SCAN MATCH` pattern or a hash slot.
///
/// (The test functions share one cache, so the three kinds of hostile input run in one test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_arguments_hash_to_safe_bounded_keys() {
    let server = RedisServer::start();
    let cache = cache_for(&server);
    let inputs: Vec<String> = vec![
        "x".repeat(1 << 20),
        "🦀👩‍👩‍👧‍👦 Z̷̢̛a̵l̴g̸o̶".to_string(),
        "abc\u{202E}fdp.exe".to_string(),
        "nul\0inside\0".to_string(),
        "nul\0inside".to_string(),
        "\r\n*3\r\n$3\r\nDEL\r\n$1\r\n*\r\n".to_string(),
        "*?[a-z]\\".to_string(),
        "{slot}".to_string(),
        "ac:hostile.text:0000000000000000000000000000000000000000000000000000000000000000"
            .to_string(),
        "\u{e9}".to_string(),   // é, composed (NFC)
        "e\u{301}".to_string(), // é, decomposed (NFD): a different string, a different key
        String::new(),
    ];
    let mut keys = HashSet::new();
    for s in &inputs {
        let key = text_key(s.clone());
        assert_safe_key(&key, "ac", "hostile.text");
        assert_eq!(key, text_key(s.clone()), "deterministic");
        assert!(keys.insert(key), "distinct inputs, distinct keys: {s:.40?}");
    }
    for s in &inputs {
        let expected = (s.len(), s.chars().count());
        assert_eq!(text(s.clone()).await, Ok(expected), "{s:.40?}");
        assert_eq!(text(s.clone()).await, Ok(expected), "{s:.40?}");
    }
    assert_eq!(
        TEXT_CALLS.load(Ordering::SeqCst),
        inputs.len(),
        "all cached"
    );

    // Deep maps, up to 1,000 levels (far past serde_json's parse limit of 128): a key, or the
    // call runs uncached; a correct value either way.
    for depth in [1, 100, 128, 129, 1_000] {
        assert_eq!(deep(Deep(depth)).await, Ok(depth), "depth {depth}");
        assert_eq!(deep(Deep(depth)).await, Ok(depth), "depth {depth}");
        // `_key` panics by design when the arguments cannot form a key.
        if let Ok(key) = std::panic::catch_unwind(|| deep_key(Deep(depth))) {
            assert_safe_key(&key, "ac", "hostile.deep");
        }
    }
    // Depths up to 128 are keyed and cached (one call each); deeper ones are not.
    let deep_calls = DEEP_CALLS.load(Ordering::SeqCst);
    assert!((3..=10).contains(&deep_calls), "{deep_calls} calls");

    // NaN / infinities cannot be keyed (JSON would write null): the call runs uncached with
    // the right value, and the companions say so instead of addressing a wrong entry.
    let labels = BTreeMap::from([("ok".to_string(), 1.0), ("bad".to_string(), f64::INFINITY)]);
    assert_eq!(float(f64::NAN, BTreeMap::new()).await, Ok("NaN/0".into()));
    assert_eq!(float(1.0, labels.clone()).await, Ok("1/2".into()));
    assert_eq!(float(1.0, labels.clone()).await, Ok("1/2".into()));
    assert_eq!(FLOAT_CALLS.load(Ordering::SeqCst), 3, "never cached");
    assert!(!float_invalidate(f64::NAN, BTreeMap::new()).await.unwrap());
    let key_of_nan = std::panic::catch_unwind(|| float_key(f64::NAN, BTreeMap::new()));
    assert!(key_of_nan.is_err(), "_key documents that it panics");

    // Everything in Redis has the safe shape.
    let stored = all_keys(&server).await;
    assert!(!stored.is_empty());
    for key in &stored {
        let key = std::str::from_utf8(key).expect("keys are UTF-8");
        let name = key.split(':').nth(1).unwrap_or_default();
        assert!(
            ["hostile.text", "hostile.deep"].contains(&name),
            "unexpected key in Redis: {key:.200}"
        );
        assert_safe_key(key, "ac", name);
    }
    assert_eq!(cache.stats().store_errors, 0);
}

#[cached_action(fresh = 300, name = "hostile.deep", cache = MEMORY.get_or_init(Cache::in_memory))]
async fn deep_in_memory(d: Deep) -> Result<usize, String> {
    Ok(d.0)
}
static MEMORY: OnceLock<Cache> = OnceLock::new();

/// What [`deeper_than_the_stack_in_a_child_process`] runs in a child process: keys a map nested
/// `FAULT_HOSTILE_DEPTH` levels deep, with `KeyBuilder` and through a `#[cached_action]` call,
/// on a Tokio worker thread with its default stack. Without that variable (a normal test run)
/// it does the same at a shallow depth.
#[test]
fn deep_key_child() {
    let depth: usize = std::env::var("FAULT_HOSTILE_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let keyed = rt.block_on(async move {
        tokio::spawn(async move {
            let keyed = match KeyBuilder::new("hostile.deep").arg("d", &Deep(depth)) {
                Ok(_) => true,
                Err(e) => {
                    assert!(e.to_string().contains("nested deeper than"), "{e}");
                    false
                }
            };
            // Keyed or not, the call returns the body's value.
            assert_eq!(deep_in_memory(Deep(depth)).await, Ok(depth));
            keyed
        })
        .await
        .unwrap()
    });
    println!("depth {depth}: {}", if keyed { "keyed" } else { "refused" });
}

/// Injects: maps nested 10,000 and 100,000 levels deep, keyed on a Tokio worker thread.
/// Proves: deep nesting is refused or keyed, never a stack overflow, which would abort the
/// whole process (no panic handler can catch it), taking every request in flight with it. Runs
/// each depth in a child process so that an overflow fails this test instead of killing the
/// test binary.
#[test]
fn deeper_than_the_stack_in_a_child_process() {
    let exe = std::env::current_exe().unwrap();
    for depth in [10_000, 100_000] {
        let out = Command::new(&exe)
            .args([
                "--exact",
                "deep_key_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FAULT_HOSTILE_DEPTH", depth.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(&format!("depth {depth}:")),
            "keying a map nested {depth} deep killed the process ({}):\n{stdout}\n{stderr:.2000}",
            out.status
        );
    }
}

/// Injects: hostile values in an argument that a tag template formats
/// (`tags = ["account:{id}"]`): 1 MB, CR/LF, braces, glob characters, NUL, an RTL override.
/// Proves: tag sets are Redis keys too, and they are as safe and bounded as entry keys
/// (printable ASCII, no braces, at most a few hundred bytes), while `invalidate_tag` with the
/// same hostile tag still purges exactly its entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_arguments_in_tags_give_safe_bounded_tag_keys() {
    static TAGGED: OnceLock<Cache> = OnceLock::new();
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    #[cached_action(fresh = 300, name = "hostile.tagged", tags = ["account:{id}"], cache = TAGGED.get().unwrap())]
    async fn tagged(id: String) -> Result<usize, String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(id.len())
    }
    let server = RedisServer::start();
    let cache = TAGGED.get_or_init(|| {
        Cache::builder()
            .redis_url(server.url())
            .op_timeout(LOADED)
            .build()
            .unwrap()
    });
    let ids = [
        "y".repeat(1 << 20),
        "a\r\nDEL *\r\n".to_string(),
        "{slot}".to_string(),
        "*?[x]\\".to_string(),
        "nul\0".to_string(),
        "\u{202E}txt".to_string(),
        "plain-42".to_string(),
    ];
    for id in &ids {
        assert_eq!(tagged(id.clone()).await, Ok(id.len()));
    }
    let keys = all_keys(&server).await;
    assert_eq!(keys.len(), 2 * ids.len(), "an entry and a tag set per id");
    for key in &keys {
        let key = String::from_utf8_lossy(key);
        assert!(
            key.len() <= 200,
            "unbounded key: {:.120}… ({} bytes)",
            key,
            key.len()
        );
        assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key:.120}");
        assert!(!key.contains(['{', '}']), "{key:.120}");
    }
    for id in &ids {
        let tag = format!("account:{id}");
        assert_eq!(cache.invalidate_tag(&tag).await.unwrap(), 1, "{id:.40?}");
        assert_eq!(tagged(id.clone()).await, Ok(id.len()));
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 2 * ids.len());
}
