use action_cache::cached_action;

#[cached_action(fresh = "5 minutes")]
async fn lookup(id: u64) -> u64 {
    id
}

#[cached_action(fresh = 5.5)]
async fn lookup_float(id: u64) -> u64 {
    id
}

fn main() {}
