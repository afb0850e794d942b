use action_cache::cached_action;

#[cached_action(fresh = 1, stale = 10)]
async fn nested(filter: Option<Option<&str>>) -> String {
    format!("{filter:?}")
}

#[cached_action(fresh = 1, stale = 10)]
async fn cow<'a>(name: std::borrow::Cow<'a, str>) -> String {
    name.into_owned()
}

#[cached_action(fresh = 1, stale = 10)]
async fn ref_to_vec_of_refs(ids: &Vec<&str>) -> usize {
    ids.len()
}

fn main() {}
