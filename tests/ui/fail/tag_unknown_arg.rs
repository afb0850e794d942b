use action_cache::cached_action;

#[cached_action(fresh = 60, tags = ["account:{account}"])]
async fn lookup(account_id: &str) -> String {
    account_id.to_owned()
}

#[cached_action(fresh = 60, skip(account_id), tags = ["account:{account_id}"])]
async fn lookup_skipped(account_id: &str) -> String {
    account_id.to_owned()
}

fn main() {}
