use action_cache::cached_action;

#[derive(Debug)]
pub struct CrmError;

#[cached_action(fresh = 60)]
async fn lookup(id: u64) -> Result<u64, CrmError> {
    Ok(id)
}

fn main() {}
