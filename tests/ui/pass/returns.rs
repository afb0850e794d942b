//! Return types the macro reads by their type: aliases of `Result` and `Option`, errors that are
//! not `Serialize`, and explicit `returns` overrides.
#![deny(warnings)]

use action_cache::cached_action;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    id: u64,
}

/// Neither `Serialize` nor `Deserialize`: an `Err` is never stored, so it need not be.
#[derive(Debug, Clone)]
pub struct ApiError;

pub type ApiResult<T> = Result<T, ApiError>;
pub type Maybe<T> = Option<T>;

mod api {
    pub type Result<T, E = super::ApiError> = std::result::Result<T, E>;
}

#[cached_action(fresh = 1)]
async fn alias(id: u64) -> ApiResult<Order> {
    Ok(Order { id })
}

#[cached_action(fresh = 1)]
async fn path_alias_with_default(id: u64) -> api::Result<Order> {
    Ok(Order { id })
}

#[cached_action(fresh = 1, coalesce = false)]
async fn io(id: u64) -> std::io::Result<Order> {
    Ok(Order { id })
}

#[cached_action(fresh = 1)]
async fn option_alias(id: u64) -> Maybe<Order> {
    Some(Order { id })
}

#[cached_action(fresh = 1, cache_none = true)]
async fn option_alias_cache_none(id: u64) -> Maybe<Order> {
    Some(Order { id })
}

#[cached_action(fresh = 1, returns = "result")]
async fn explicit_result(id: u64) -> ApiResult<Order> {
    Ok(Order { id })
}

#[cached_action(fresh = 1, returns = "option", cache_none = true)]
async fn explicit_option(id: u64) -> Maybe<Order> {
    Some(Order { id })
}

#[cached_action(fresh = 1, returns = "value")]
async fn explicit_value(id: u64) -> Maybe<Order> {
    Some(Order { id })
}

#[cached_action(fresh = 1)]
async fn plain(id: u64) -> Order {
    Order { id }
}

fn is_send<T: Send>(_: &T) {}

fn main() {
    is_send(&alias(1));
    is_send(&path_alias_with_default(1));
    is_send(&io(1));
    is_send(&option_alias(1));
    is_send(&explicit_value(1));
    let order = Order { id: 1 };
    // `_put` takes what is stored: the `Ok` / `Some` value, or the whole value.
    let _ = alias_put(1, &order);
    let _ = path_alias_with_default_put(1, &order);
    let _ = io_put(1, &order);
    let _ = option_alias_put(1, &order);
    let _ = option_alias_cache_none_put(1, &Some(order.clone()));
    let _ = explicit_result_put(1, &order);
    let _ = explicit_option_put(1, &None);
    let _ = explicit_value_put(1, &None);
    let _ = plain_put(1, &order);
}
