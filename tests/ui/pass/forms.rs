//! Forms the macro accepts: signatures, return types, options and call sites.
#![deny(warnings)]

use std::sync::{Arc, LazyLock};

use action_cache::{cached_action, Cache};
use serde::{Deserialize, Serialize};

mod reexport {
    pub use ::action_cache;
}

static CACHE: LazyLock<Cache> = LazyLock::new(Cache::in_memory);

fn shared() -> Arc<Cache> {
    Arc::new(Cache::in_memory())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    id: u64,
}

#[derive(Debug)]
pub struct NotClone;

/// Docs stay on the function.
#[cached_action(
    fresh = "250ms",
    stale = "1h",
    jitter = 0.2,
    name = "orders.lookup",
    version = 2
)]
pub(crate) async fn durations_and_names(id: u64) -> Result<Order, String> {
    Ok(Order { id })
}

#[cached_action(fresh = 1, cache = &*CACHE, coalesce = false)]
async fn uncoalesced_error_need_not_be_clone(id: u64) -> Result<Order, NotClone> {
    Ok(Order { id })
}

#[cached_action(fresh = 1, cache = shared())]
async fn arc_error(id: u64) -> Result<Order, Arc<NotClone>> {
    Ok(Order { id })
}

#[cached_action(
    fresh = 1,
    crate = "crate::reexport::action_cache",
    refresh = "inline",
    coalesce = false
)]
async fn lifetimes<'a, T>(
    name: &'a str,
    items: &'a [T],
    _unused: Option<&'a T>,
) -> std::io::Result<Vec<String>>
where
    T: Serialize + std::fmt::Debug + Sync,
{
    Ok(items.iter().map(|i| format!("{name}{i:?}")).collect())
}

#[cached_action(fresh = 1, tags = ["user:{user}", "all-users", "{{literal}}"])]
async fn mut_binding(mut user: String) -> String {
    user.push('!');
    user
}

pub trait Lookup {
    fn get(&self, id: u64) -> impl std::future::Future<Output = Option<Order>> + Send;
}

#[derive(Clone)]
pub struct Repo {
    cache: Cache,
}

impl Lookup for Repo {
    #[cached_action(fresh = 1, cache = self.cache.clone(), companions = false)]
    async fn get(&self, id: u64) -> Option<Order> {
        Some(Order { id })
    }
}

impl Repo {
    #[cached_action(fresh = 1, cache = &self.cache)]
    pub async fn by_self_cache(&self, id: u64) -> Option<Order> {
        let _ = self;
        Some(Order { id })
    }

    #[cached_action(fresh = 1)]
    async fn by_value(self, ids: Vec<u64>) -> Vec<Order> {
        let _keep = self;
        ids.into_iter().map(|id| Order { id }).collect()
    }

    #[cached_action(fresh = 1)]
    async fn no_receiver(id: u64) -> Self {
        let _ = id;
        Repo {
            cache: Cache::in_memory(),
        }
    }
}

impl Serialize for Repo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}
impl<'de> Deserialize<'de> for Repo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Ok(Repo {
            cache: Cache::in_memory(),
        })
    }
}

fn is_send<T: Send>(_: &T) {}

fn main() {
    let repo = Repo {
        cache: Cache::in_memory(),
    };
    is_send(&durations_and_names(1));
    is_send(&uncoalesced_error_need_not_be_clone(1));
    is_send(&arc_error(1));
    is_send(&lifetimes("x", &[1u8], None));
    is_send(&mut_binding("u".into()));
    is_send(&repo.get(1));
    is_send(&repo.by_self_cache(1));
    is_send(&repo.clone().by_value(vec![1]));
    is_send(&Repo::no_receiver(1));
    let _: String = durations_and_names_key(1);
    let _: String = repo.by_self_cache_key(1);
    let _: String = Repo::by_value_key(vec![1]);
    let _ = lifetimes_put::<u8>("x", &[1u8][..], None, &vec![String::new()]);
    let _ = mut_binding_invalidate("u".into());
    let _ = arc_error_put(1, &Order { id: 1 });
}
