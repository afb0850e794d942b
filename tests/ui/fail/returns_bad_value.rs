use action_cache::cached_action;

#[cached_action(fresh = 1, returns = "results")]
async fn f(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cached_action(fresh = 1, returns = "result", cache_none = true)]
async fn g(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
