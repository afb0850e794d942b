use action_cache::cached_action;

#[cached_action(fresh = 60, skip(client))]
async fn lookup(clinet: &str, id: u64) -> u64 {
    let _ = clinet;
    id
}

fn main() {}
