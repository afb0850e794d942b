//! OAuth client credentials: token caching, shared refresh, the margin, and 401 handling.

mod common;

use std::time::Duration;

use futures_util::future::join_all;
use genesys_client::fake::{FakeGenesys, Fault};
use genesys_client::{ClientSecret, Error, ListActionsQuery, StatusCode};
use tokio::time::advance;

const LIST: &str = "/api/v2/integrations/actions";

#[tokio::test(start_paused = true)]
async fn a_hundred_calls_need_one_token_request() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    for _ in 0..100 {
        client.list_actions(&ListActionsQuery::new()).await.unwrap();
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.api_requests(LIST), 100);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_refresh_also_after_expiry() {
    let fake = FakeGenesys::builder()
        .token_lifetime(Duration::from_secs(300))
        .start()
        .await
        .unwrap();
    let client = fake.client_builder().build().unwrap();
    let query = ListActionsQuery::new();

    let first = join_all((0..20).map(|_| client.list_actions(&query))).await;
    assert!(first.iter().all(Result::is_ok));
    assert_eq!(fake.token_requests(), 1);

    // Past the lifetime the token has expired on the server too; 20 callers at once still
    // cause one refresh.
    advance(Duration::from_secs(301)).await;
    let second = join_all((0..20).map(|_| client.list_actions(&query))).await;
    assert!(second.iter().all(Result::is_ok));
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(fake.api_requests(LIST), 40, "no call hit a 401 and retried");
}

#[tokio::test(start_paused = true)]
async fn token_is_replaced_inside_the_margin_before_it_expires() {
    let fake = FakeGenesys::builder()
        .token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .unwrap();
    let client = fake
        .client_builder()
        .token_margin(Duration::from_secs(60))
        .build()
        .unwrap();
    let query = ListActionsQuery::new();
    client.list_actions(&query).await.unwrap();
    let first = client.access_token().await.unwrap();

    advance(Duration::from_secs(539)).await; // 61 s left: outside the margin
    client.list_actions(&query).await.unwrap();
    assert_eq!(fake.token_requests(), 1);

    advance(Duration::from_secs(2)).await; // 59 s left: inside the margin
    client.list_actions(&query).await.unwrap();
    assert_eq!(fake.token_requests(), 2);
    assert_ne!(client.access_token().await.unwrap(), first);
    // The old token was still valid on the server: the refresh was proactive, not a 401.
    assert_eq!(fake.api_requests(LIST), 3);
}

#[tokio::test(start_paused = true)]
async fn fake_rejects_expired_tokens_with_401_bad_credentials() {
    let fake = FakeGenesys::builder()
        .token_lifetime(Duration::from_secs(300))
        .start()
        .await
        .unwrap();
    let client = fake.client_builder().build().unwrap();
    let token = client.access_token().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}api/v2/integrations/actions", fake.base_url());

    let ok = http
        .get(&url)
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    advance(Duration::from_secs(300)).await;
    let expired = http
        .get(&url)
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert!(expired.headers().contains_key("inin-correlation-id"));
    let body: serde_json::Value = expired.json().await.unwrap();
    assert_eq!(body["code"], "bad.credentials");
    assert_eq!(body["status"], 401);

    let missing = http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn a_401_drops_the_token_and_retries_the_call_once() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let query = ListActionsQuery::new();
    client.list_actions(&query).await.unwrap();

    fake.revoke_tokens();
    let page = client.list_actions(&query).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(fake.token_requests(), 2, "one refresh");
    assert_eq!(fake.api_requests(LIST), 3, "ok, 401, retried ok");
}

#[tokio::test(start_paused = true)]
async fn a_401_that_persists_is_returned_not_looped() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    fake.push_faults([
        Fault::unauthorized(),
        Fault::unauthorized(),
        Fault::unauthorized(),
    ]);
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(err.is_auth());
    assert_eq!(err.body().unwrap().code.as_deref(), Some("bad.credentials"));
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(fake.api_requests(LIST), 2);
    assert_eq!(fake.pending_faults(), 1);
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_name_the_client_id_and_are_not_retried() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake
        .client_builder()
        .credentials(fake.client_id(), ClientSecret::new("wrong-secret-4711"))
        .build()
        .unwrap();
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    let Error::Auth {
        client_id,
        status,
        error,
        description,
        ..
    } = &err
    else {
        panic!("expected an auth error, got {err:?}");
    };
    assert_eq!(client_id, fake.client_id());
    assert_eq!(*status, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(error.as_deref(), Some("invalid_client"));
    assert_eq!(description.as_deref(), Some("client not found"));
    let text = err.to_string();
    assert!(
        text.contains(fake.client_id()) && text.contains("invalid_client"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-4711") && !format!("{err:?}").contains("wrong-secret"));
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.api_requests_total(), 0);
}

#[tokio::test(start_paused = true)]
async fn token_endpoint_outages_are_retried() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake
        .client_builder()
        .retry_policy(common::seeded_policy(3))
        .build()
        .unwrap();
    fake.push_token_fault(Fault::server_error(503));
    fake.push_token_fault(Fault::too_many_requests(Duration::from_secs(2)));
    client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert_eq!(fake.token_requests(), 3);
    assert_eq!(fake.api_requests(LIST), 1);
}

#[tokio::test(start_paused = true)]
async fn clear_token_forces_a_new_token() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let first = client.access_token().await.unwrap();
    client.clear_token().await;
    let second = client.access_token().await.unwrap();
    assert_ne!(first, second);
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_one_attempt_whose_error_reaches_every_waiter() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake
        .client_builder()
        .retry_policy(common::seeded_policy(3).with_max_attempts(3))
        .build()
        .unwrap();
    // A login-host outage long enough for one refresh with its retries.
    for _ in 0..3 {
        fake.push_token_fault(Fault::server_error(503));
    }
    let query = ListActionsQuery::new();
    let start = tokio::time::Instant::now();
    let results = join_all((0..10).map(|_| async {
        let result = client.list_actions(&query).await;
        (result, start.elapsed())
    }))
    .await;
    assert_eq!(fake.token_requests(), 3, "one refresh with its retries");
    assert_eq!(fake.api_requests_total(), 0);
    let waited = results[0].1;
    for (result, elapsed) in &results {
        let err = result.as_ref().unwrap_err();
        assert_eq!(err.attempts(), Some(3), "{err:?}");
        assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            *elapsed, waited,
            "every waiter waits for the same one refresh"
        );
    }
    // The next call after the outage starts a new refresh.
    client.list_actions(&query).await.unwrap();
    assert_eq!(fake.token_requests(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_survives_the_caller_that_started_it_going_away() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    fake.push_token_fault(Fault::Delay(Duration::from_secs(2)));
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.access_token().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = tokio::spawn({
        let client = client.clone();
        async move { client.access_token().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.abort();
    let token = second.await.unwrap().unwrap();
    assert_eq!(fake.token_requests(), 1, "the waiter took the refresh over");
    assert_eq!(client.access_token().await.unwrap(), token);
    assert_eq!(fake.token_requests(), 1);
}
