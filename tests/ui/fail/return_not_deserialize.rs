use action_cache::cached_action;

#[derive(serde::Serialize)]
pub struct Report {
    total: u64,
}

pub struct Opaque;

#[cached_action(fresh = 60)]
async fn report(id: u64) -> Result<Report, String> {
    Ok(Report { total: id })
}

#[cached_action(fresh = 60)]
async fn opaque(id: u64) -> Option<Opaque> {
    let _ = id;
    None
}

fn main() {}
