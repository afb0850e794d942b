use action_cache::cached_action;

pub struct Client;

// A background refresh needs an owned copy of every argument, skipped ones included.
#[cached_action(fresh = 60, skip(client))]
async fn lookup(client: &Client, id: u64) -> u64 {
    let _ = client;
    id
}

fn main() {}
