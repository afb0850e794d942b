use action_cache::cached_action;

#[cached_action(fresh = 0)]
async fn lookup(id: u64) -> u64 {
    id
}

#[cached_action(fresh = "0ms")]
async fn lookup_str(id: u64) -> u64 {
    id
}

fn main() {}
