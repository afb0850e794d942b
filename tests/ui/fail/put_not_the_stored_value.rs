use action_cache::cached_action;

#[derive(Debug, Clone)]
pub struct ApiError;
pub type ApiResult<T> = Result<T, ApiError>;

#[cached_action(fresh = 1)]
async fn f(id: u64) -> ApiResult<u64> {
    Ok(id)
}

fn main() {
    // `_put` takes the `Ok` value, not a string.
    let _ = f_put(1, &"one");
}
