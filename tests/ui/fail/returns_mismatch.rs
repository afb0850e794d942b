use action_cache::cached_action;

#[cached_action(fresh = 1, returns = "result")]
async fn not_a_result(id: u64) -> u64 {
    id
}

#[cached_action(fresh = 1, returns = "option")]
async fn not_an_option(id: u64) -> Vec<u64> {
    vec![id]
}

fn main() {}
