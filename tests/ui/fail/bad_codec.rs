use action_cache::cached_action;

#[cached_action(fresh = 60, codec = "xml")]
async fn lookup(id: u64) -> u64 {
    id
}

fn main() {}
