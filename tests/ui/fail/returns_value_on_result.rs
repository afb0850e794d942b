use action_cache::cached_action;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiError;
pub type ApiResult<T> = Result<T, ApiError>;

// Storing the whole `Result` would store its `Err`s.
#[cached_action(fresh = 1, returns = "value")]
async fn f(id: u64) -> ApiResult<u64> {
    Ok(id)
}

fn main() {}
