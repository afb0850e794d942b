//! The signed purge webhook over real HTTP, on a real Redis: timestamped signatures, the
//! replay guard across two proxy instances, hard and soft purges, and the body-only form.

mod support;

use action_cache_proxy::config::Secret;
use action_cache_proxy::signature::{sign_body, sign_timestamped};
use std::sync::Arc;
use std::time::Duration;
use support::{start, start_on, start_with, CONFIG, SECRET};

#[tokio::test]
async fn a_signed_purge_by_tag_or_route_sends_the_next_read_upstream() {
    let p = start().await;
    p.get("/accounts/42", &[]).await;
    p.get("/accounts/7", &[]).await;
    p.get("/orders/A-1/lines", &[]).await;
    let body = br#"{"tags":["account:42","order:A-1"]}"#;
    let r = p.purge(body, &[p.sign(body)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["purged"], 2);
    assert_eq!(p.get("/accounts/42", &[]).await.cache(), "MISS");
    assert_eq!(p.get("/orders/A-1/lines", &[]).await.cache(), "MISS");
    assert_eq!(p.get("/accounts/7", &[]).await.cache(), "HIT");

    let body = br#"{"account_id":"7"}"#;
    let r = p.purge(body, &[p.sign(body)]).await;
    assert_eq!(
        (r.status, r.json()["purged"].clone()),
        (200, serde_json::json!(1))
    );
    assert_eq!(p.get("/accounts/7", &[]).await.cache(), "MISS");
}

#[tokio::test]
async fn a_hard_purge_also_removes_the_last_good_copy() {
    let p = start().await;
    p.get("/accounts/42", &[]).await;
    let body = br#"{"tags":["account:42"]}"#;
    assert_eq!(p.purge(body, &[p.sign(body)]).await.status, 200);
    p.upstream
        .state
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = p.get("/accounts/42", &[]).await;
    assert_eq!(
        (r.status, r.cache()),
        (502, "ERROR"),
        "a purged value is never served again"
    );
}

#[tokio::test]
async fn a_soft_purge_serves_the_old_copy_once_more_and_refreshes_it() {
    let p = start().await;
    let first = p.get("/accounts/42", &[]).await;
    let body = br#"{"route":"account","params":{"id":"42"},"mode":"soft"}"#;
    let r = p.purge(body, &[p.sign(body)]).await;
    assert_eq!(
        (r.status, r.json()["purged"].clone()),
        (200, serde_json::json!(1)),
        "{}",
        r.text()
    );
    p.clock.advance(Duration::from_millis(5));
    let stale = p.get("/accounts/42", &[]).await;
    assert_eq!(stale.cache(), "STALE");
    assert_eq!(stale.body, first.body);
    action_cache_testing::eventually("the refresh", Duration::from_secs(10), || {
        p.upstream.calls() == 2
    })
    .await;
}

#[tokio::test]
async fn a_soft_purge_by_tag_serves_the_old_copy_once_more_and_refreshes_it() {
    let p = start().await;
    let first = p.get("/accounts/42", &[]).await;
    assert_eq!(p.get("/accounts/42", &[]).await.cache(), "HIT");
    let body = br#"{"tags":["account:42"],"mode":"soft"}"#;
    let r = p.purge(body, &[p.sign(body)]).await;
    assert_eq!(
        (
            r.status,
            r.json()["purged"].clone(),
            r.json()["mode"].clone()
        ),
        (200, serde_json::json!(1), serde_json::json!("soft")),
        "{}",
        r.text()
    );
    let stale = p.get("/accounts/42", &[]).await;
    assert_eq!(stale.cache(), "STALE", "marked stale, served at once");
    assert_eq!(stale.body, first.body);
    action_cache_testing::eventually("the refresh", Duration::from_secs(10), || {
        p.upstream.calls() == 2
    })
    .await;
    let other = br#"{"tags":["account:43"],"mode":"soft"}"#;
    let r = p.purge(other, &[p.sign(other)]).await;
    assert_eq!(
        r.json()["purged"],
        serde_json::json!(0),
        "nothing carries that tag"
    );
}

#[tokio::test]
async fn forged_stale_replayed_or_duplicated_signatures_purge_nothing() {
    let p = start().await;
    p.get("/accounts/42", &[]).await;
    let body = br#"{"tags":["account:42"]}"#;
    let now = p.now_s();
    let secret = Secret::new(SECRET);
    let attempts = [
        vec![],
        vec![sign_timestamped(&Secret::new("not-the-secret"), now, body)],
        vec![sign_timestamped(
            &secret,
            now,
            br#"{"tags":["account:43"]}"#,
        )],
        vec![sign_timestamped(&secret, now - 301, body)],
        vec![sign_timestamped(&secret, now + 301, body)],
        vec![sign_body(&secret, body)],
        vec![p.sign(body), p.sign(body)],
        vec![format!("{},v1=00", p.sign(body))],
        vec!["t=,v1=".to_owned()],
    ];
    for signatures in attempts {
        let r = p.purge(body, &signatures).await;
        assert_eq!(r.status, 401, "{signatures:?}: {}", r.text());
    }
    assert_eq!(
        p.get("/accounts/42", &[]).await.cache(),
        "HIT",
        "nothing was purged"
    );

    // A valid signature works once; its replay, on this or another instance, is refused.
    let signed = p.sign(body);
    assert_eq!(
        p.purge(body, std::slice::from_ref(&signed)).await.status,
        200
    );
    p.get("/accounts/42", &[]).await;
    assert_eq!(
        p.purge(body, std::slice::from_ref(&signed)).await.status,
        401
    );
    let other = start_on(CONFIG, Arc::clone(&p.redis), p.clock.clone()).await;
    assert_eq!(
        other.purge(body, &[signed]).await.status,
        401,
        "the guard is shared through Redis"
    );
    assert_eq!(p.get("/accounts/42", &[]).await.cache(), "HIT");
}

#[tokio::test]
async fn a_rejected_body_does_not_use_up_its_signature() {
    let p = start().await;
    let bad = br#"{"tags":[]}"#;
    let signed = p.sign(bad);
    assert_eq!(
        p.purge(bad, std::slice::from_ref(&signed)).await.status,
        400
    );
    assert_eq!(
        p.purge(bad, &[signed]).await.status,
        400,
        "still 400, not 401 replay"
    );
}

#[tokio::test]
async fn the_body_only_form_works_only_when_configured() {
    let config = CONFIG.replace(
        "secret_env = \"HOOK_SECRET\"",
        "secret_env = \"HOOK_SECRET\"\nsignature = \"body-only\"",
    );
    let p = start_with(&config).await;
    p.get("/accounts/42", &[]).await;
    let body = br#"{"account_id":"42"}"#;
    let secret = Secret::new(SECRET);
    assert_eq!(p.purge(body, &[p.sign(body)]).await.status, 401);
    assert_eq!(
        p.purge(body, &[sign_body(&Secret::new("x"), body)])
            .await
            .status,
        401
    );
    assert_eq!(p.purge(body, &[sign_body(&secret, body)]).await.status, 200);
    assert_eq!(p.get("/accounts/42", &[]).await.cache(), "MISS");
}
