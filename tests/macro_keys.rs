//! `#[cached_action]` key identity against a real Redis: distinct calls never share a key, even
//! when only a type parameter or the `Self` type tells them apart.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use action_cache::{cached_action, Cache, CacheKey};
use action_cache_testing::RedisServer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

thread_local! {
    static CURRENT: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// The cache of the running test (tests use current-thread runtimes, one per test thread).
fn cache() -> Cache {
    CURRENT.with(|c| c.borrow().clone().expect("test cache installed"))
}

fn harness() -> (RedisServer, Cache) {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis_url(server.url())
        .op_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("cache");
    CURRENT.with(|c| *c.borrow_mut() = Some(cache.clone()));
    (server, cache)
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// Two record types with the same shape: one's JSON deserializes as the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: String,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Queue {
    id: String,
    name: String,
}

trait Record: Serialize + DeserializeOwned + Send + Sync + 'static {
    fn load(id: &str) -> Self;
}

impl Record for User {
    fn load(id: &str) -> Self {
        User {
            id: id.into(),
            name: format!("user {id}"),
        }
    }
}

impl Record for Queue {
    fn load(id: &str) -> Self {
        Queue {
            id: id.into(),
            name: format!("queue {id}"),
        }
    }
}

static GET_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Only the type parameter tells `get::<User>` from `get::<Queue>`.
#[cached_action(fresh = 60, cache = cache())]
async fn get<T: Record>(id: &str) -> Result<T, String> {
    GET_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(T::load(id))
}

#[tokio::test]
async fn type_parameters_are_part_of_the_key() {
    let _h = harness();
    let user: User = get("42").await.unwrap();
    assert_eq!(user.name, "user 42");
    let queue: Queue = get("42").await.unwrap();
    assert_eq!(queue.name, "queue 42", "a Queue, not the cached User");
    assert_eq!(count(&GET_CALLS), 2);
    // Each is cached under its own key.
    assert_eq!(get::<User>("42").await.unwrap(), user);
    assert_eq!(get::<Queue>("42").await.unwrap(), queue);
    assert_eq!(count(&GET_CALLS), 2);

    // The companions take the type parameter too and address exactly that entry.
    assert_ne!(get_key::<User>("42"), get_key::<Queue>("42"));
    assert!(get_invalidate::<Queue>("42").await.unwrap());
    assert_eq!(get::<User>("42").await.unwrap(), user, "the User stays");
    assert_eq!(count(&GET_CALLS), 2);
    assert_eq!(get::<Queue>("42").await.unwrap(), queue);
    assert_eq!(count(&GET_CALLS), 3);
}

/// A type parameter that also appears in a key argument is still part of the key: `1u8` and
/// `1u64` serialize alike.
#[tokio::test]
async fn type_parameters_of_key_arguments_are_part_of_the_key() {
    #[cached_action(fresh = 60, cache = cache())]
    async fn width<N: Serialize + Clone + Send + Sync + 'static>(n: N) -> usize {
        let _ = n;
        std::mem::size_of::<N>()
    }

    let _h = harness();
    assert_eq!(width(1u8).await, 1);
    assert_eq!(width(1u64).await, 8);
    assert_eq!(width(1u8).await, 1);
}

/// Const parameters too.
#[tokio::test]
async fn const_parameters_are_part_of_the_key() {
    #[cached_action(fresh = 60, cache = cache())]
    async fn repeat<const N: usize>(s: &str) -> String {
        s.repeat(N)
    }

    let _h = harness();
    assert_eq!(repeat::<2>("ab").await, "abab");
    assert_eq!(repeat::<3>("ab").await, "ababab");
    assert_ne!(repeat_key::<2>("ab"), repeat_key::<3>("ab"));
}

static REPO_CALLS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
struct UserRepo;
#[derive(Clone)]
struct QueueRepo;

impl UserRepo {
    #[cached_action(fresh = 60, cache = cache())]
    async fn by_id(id: u32) -> Result<User, String> {
        REPO_CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(User::load(&id.to_string()))
    }

    #[cached_action(fresh = 60, cache = cache())]
    async fn count(&self) -> u32 {
        REPO_CALLS.fetch_add(1, Ordering::SeqCst);
        1
    }
}

impl QueueRepo {
    #[cached_action(fresh = 60, cache = cache())]
    async fn by_id(id: u32) -> Result<Queue, String> {
        REPO_CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(Queue::load(&id.to_string()))
    }

    #[cached_action(fresh = 60, cache = cache())]
    async fn count(&self) -> u32 {
        REPO_CALLS.fetch_add(1, Ordering::SeqCst);
        2
    }
}

#[tokio::test]
async fn same_named_methods_of_different_types_do_not_share_a_key() {
    let _h = harness();
    assert_eq!(UserRepo::by_id(7).await.unwrap().name, "user 7");
    assert_eq!(QueueRepo::by_id(7).await.unwrap().name, "queue 7");
    assert_eq!(UserRepo.count().await, 1);
    assert_eq!(QueueRepo.count().await, 2);
    assert_eq!(count(&REPO_CALLS), 4);
    assert_eq!(UserRepo::by_id(7).await.unwrap().name, "user 7");
    assert_eq!(QueueRepo.count().await, 2);
    assert_eq!(count(&REPO_CALLS), 4, "each is cached");

    assert_ne!(UserRepo::by_id_key(7), QueueRepo::by_id_key(7));
    assert_ne!(UserRepo::count_key(), QueueRepo::count_key());
    assert!(UserRepo::by_id_key(7).contains("by_id"));
    assert!(QueueRepo::by_id_invalidate(7).await.unwrap());
    assert!(!QueueRepo::by_id_invalidate(7).await.unwrap());
    assert!(UserRepo::by_id_invalidate(7).await.unwrap());
}

/// A generic `Self`: `Repo<User>` and `Repo<Queue>` are different types.
struct Repo<T>(std::marker::PhantomData<T>);

impl<T> Clone for Repo<T> {
    fn clone(&self) -> Self {
        Repo(std::marker::PhantomData)
    }
}

impl<T: Record> Repo<T> {
    #[cached_action(fresh = 60, cache = cache())]
    async fn fetch(&self, id: &str) -> Result<T, String> {
        Ok(T::load(id))
    }
}

#[tokio::test]
async fn a_generic_self_type_is_part_of_the_key() {
    let _h = harness();
    let users = Repo::<User>(std::marker::PhantomData);
    let queues = Repo::<Queue>(std::marker::PhantomData);
    assert_eq!(users.fetch("1").await.unwrap().name, "user 1");
    assert_eq!(queues.fetch("1").await.unwrap().name, "queue 1");
}

trait Describe {
    async fn describe(&self) -> String;
}
trait Summarize {
    async fn describe(&self) -> String;
}

impl Describe for UserRepo {
    #[cached_action(fresh = 60, cache = cache(), companions = false)]
    async fn describe(&self) -> String {
        "described".into()
    }
}
impl Summarize for UserRepo {
    #[cached_action(fresh = 60, cache = cache(), companions = false)]
    async fn describe(&self) -> String {
        "summarized".into()
    }
}

#[tokio::test]
async fn one_method_name_in_two_trait_impls_of_one_type() {
    let _h = harness();
    assert_eq!(Describe::describe(&UserRepo).await, "described");
    assert_eq!(Summarize::describe(&UserRepo).await, "summarized");
}

#[tokio::test]
async fn same_named_functions_nested_in_two_functions() {
    async fn first() -> u32 {
        #[cached_action(fresh = 60, cache = cache())]
        async fn inner() -> u32 {
            1
        }
        inner().await
    }
    async fn second() -> u32 {
        #[cached_action(fresh = 60, cache = cache())]
        async fn inner() -> u32 {
            2
        }
        inner().await
    }

    let _h = harness();
    assert_eq!(first().await, 1);
    assert_eq!(second().await, 2);
}

/// A function's key is its name and arguments: a free, non-generic function with a `name` gets
/// exactly the key its name and arguments give through `CacheKey::builder`.
#[cached_action(fresh = 60, name = "orders.by_id", cache = cache())]
async fn named(order_id: &str, line: u32) -> String {
    format!("{order_id}/{line}")
}

#[tokio::test]
async fn a_named_function_key_is_its_name_and_arguments() {
    let (_server, cache) = harness();
    let mut b = CacheKey::builder("orders.by_id");
    b.arg("order_id", "A-1")
        .unwrap()
        .arg("line", &3u32)
        .unwrap();
    assert_eq!(named_key("A-1", 3), cache.full_key(&b.build()));
    assert_eq!(named("A-1", 3).await, "A-1/3");
}

/// Free functions at module level keep the `module_path!()::fn_name` default name, with no
/// hidden arguments.
#[cached_action(fresh = 60, cache = cache())]
async fn top_level(id: u32) -> u32 {
    id
}

#[tokio::test]
async fn a_top_level_function_key_is_its_path_and_arguments() {
    let (_server, cache) = harness();
    let mut b = CacheKey::builder(concat!(module_path!(), "::top_level"));
    b.arg("id", &5u32).unwrap();
    assert_eq!(top_level_key(5), cache.full_key(&b.build()));
    assert_eq!(top_level(5).await, 5);
}
