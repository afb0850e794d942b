use action_cache::cached_action;

pub struct Client;

#[cached_action(fresh = 60)]
async fn lookup(client: &Client, id: u64) -> u64 {
    let _ = client;
    id
}

fn main() {}
