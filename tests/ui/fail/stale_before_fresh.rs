use action_cache::cached_action;

#[cached_action(fresh = "10m", stale = 300)]
async fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
