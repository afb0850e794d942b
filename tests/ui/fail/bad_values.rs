use action_cache::cached_action;

#[cached_action(stale = 60)]
async fn missing_fresh(id: u64) -> u64 {
    id
}

#[cached_action(fresh = 60, refresh = "later")]
async fn bad_refresh(id: u64) -> u64 {
    id
}

#[cached_action(fresh = 60, jitter = 1.5)]
async fn bad_jitter(id: u64) -> u64 {
    id
}

#[cached_action(fresh = 60, include_self = true)]
async fn no_receiver(id: u64) -> u64 {
    id
}

#[cached_action(fresh = 60)]
async fn pattern((a, b): (u64, u64)) -> u64 {
    a + b
}

#[cached_action(fresh = 60, skip(id, id))]
async fn skipped_twice(id: u64) -> u64 {
    id
}

fn main() {}
