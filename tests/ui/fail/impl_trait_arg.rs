use action_cache::cached_action;

#[cached_action(fresh = 60)]
async fn lookup(id: impl Into<u64>) -> u64 {
    id.into()
}

fn main() {}
