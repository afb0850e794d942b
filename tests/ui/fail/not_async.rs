use action_cache::cached_action;

#[cached_action(fresh = 60)]
fn lookup(id: u64) -> u64 {
    id
}

fn main() {
    // The function is still emitted, so callers keep compiling.
    let _ = lookup(1);
}
