use action_cache::cached_action;

#[cached_action(fresh = 60)]
async fn lookup(ids: &mut Vec<u64>) -> usize {
    ids.push(1);
    ids.len()
}

fn main() {}
