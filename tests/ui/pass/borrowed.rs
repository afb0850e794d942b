//! Borrowed arguments with a background refresh (the default): the refresh takes owned copies.
#![deny(warnings)]

use action_cache::cached_action;
use serde::Serialize;

#[cached_action(fresh = 1, stale = 10)]
async fn filters(account: &str, status: Option<&str>, tags: &[&str], more: Vec<&str>) -> String {
    format!("{account}{status:?}{tags:?}{more:?}")
}

#[cached_action(fresh = 1, stale = 10)]
async fn generic<'a, T>(one: Option<&'a T>, many: &'a [&'a T], bytes: Option<&[u8]>) -> usize
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    usize::from(one.is_some()) + many.len() + bytes.map_or(0, <[u8]>::len)
}

#[cached_action(fresh = 1, stale = 10)]
async fn statics(label: Option<&'static str>, owned: Vec<String>) -> usize {
    label.map_or(0, str::len) + owned.len()
}

// Inline refresh takes no copies, so any borrow works.
#[cached_action(fresh = 1, stale = 10, refresh = "inline")]
async fn inline(nested: Option<Option<&str>>, cow: std::borrow::Cow<'_, str>) -> String {
    format!("{nested:?}{cow}")
}

fn is_send<T: Send>(_: &T) {}

fn main() {
    let owned = String::from("x");
    is_send(&filters("a", Some(&owned), &[&owned], vec![&owned]));
    is_send(&generic(Some(&1u8), &[&2u8], None));
    is_send(&statics(Some("l"), vec![]));
    is_send(&inline(Some(None), owned.as_str().into()));
    let _: String = filters_key("a", None, &[], vec![]);
    let _ = generic_put(Some(&1u8), &[], None, &3);
}
