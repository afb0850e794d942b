//! Retries: what is retried, how long each wait is, and how retrying ends.

mod common;

use std::time::{Duration, SystemTime};

use genesys_client::fake::{FakeGenesys, Fault};
use genesys_client::{Error, ListActionsQuery, StatusCode};
use genesys_client::{ExponentialBackoff, RetryPolicy};
use tokio::time::Instant;

const LIST: &str = "/api/v2/integrations/actions";

async fn fake_and_client(policy: RetryPolicy) -> (FakeGenesys, genesys_client::Client) {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().retry_policy(policy).build().unwrap();
    // Fetch the token first, so the timings below measure API calls only.
    client.access_token().await.unwrap();
    (fake, client)
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_is_honoured_exactly() {
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    fake.push_fault(Fault::too_many_requests(Duration::from_secs(7)));
    let start = Instant::now();
    client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(fake.api_requests(LIST), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_503_is_honoured_too() {
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    fake.push_fault(Fault::unavailable(Duration::from_secs(3)));
    let start = Instant::now();
    client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    fake.push_fault(Fault::too_many_requests_until(
        SystemTime::now() + Duration::from_secs(5),
    ));
    let start = Instant::now();
    client.list_actions(&ListActionsQuery::new()).await.unwrap();
    // HTTP dates have whole seconds, so the wait is between 4 and 5 seconds.
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_secs(4) && waited <= Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_over_the_cap_ends_with_a_rate_limited_error() {
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    fake.push_fault(Fault::too_many_requests(Duration::from_secs(600)));
    let start = Instant::now();
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after, cap, .. }
            if retry_after == Duration::from_secs(600) && cap == Duration::from_secs(180)),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
    assert!(err.is_rate_limited());
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert!(err.correlation_id().is_some());
    assert_eq!(err.rate_limit().unwrap().allowed, Some(300));
    assert_eq!(start.elapsed(), Duration::ZERO, "did not wait");
    assert_eq!(fake.api_requests(LIST), 1);
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_the_seeded_backoff_then_succeed() {
    let (fake, client) = fake_and_client(common::seeded_policy(42)).await;
    fake.push_faults([500, 502, 503, 504].map(Fault::server_error));
    let start = Instant::now();
    let page = client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(fake.api_requests(LIST), 5);
    // The waits are exactly the first four of the same seeded backoff.
    let expected: Duration = ExponentialBackoff::default()
        .with_seed(42)
        .build()
        .take(4)
        .sum();
    assert_eq!(start.elapsed(), expected);
}

#[tokio::test(start_paused = true)]
async fn bad_request_and_not_implemented_are_not_retried() {
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    for status in [400, 404, 409, 501] {
        let before = fake.api_requests(LIST);
        fake.push_fault(Fault::server_error(status));
        let err = client
            .list_actions(&ListActionsQuery::new())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::from_u16(status).unwrap()));
        assert!(matches!(err, Error::Api { .. }), "{err:?}");
        assert_eq!(fake.api_requests(LIST), before + 1, "{status} sent once");
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_report_the_count_and_last_status() {
    let policy = common::seeded_policy(9).with_max_attempts(3);
    let (fake, client) = fake_and_client(policy).await;
    fake.push_faults([
        Fault::server_error(500),
        Fault::server_error(502),
        Fault::server_error(503),
        Fault::server_error(503),
    ]);
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.attempts(), Some(3));
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    let text = err.to_string();
    assert!(text.contains("3 attempt") && text.contains("503"), "{text}");
    assert_eq!(fake.api_requests(LIST), 3);
    assert_eq!(fake.pending_faults(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_total_time_budget_stops_retrying() {
    let policy = common::seeded_policy(1)
        .with_max_attempts(10)
        .with_max_total_time(Duration::from_secs(10));
    let (fake, client) = fake_and_client(policy).await;
    fake.push_faults([
        Fault::too_many_requests(Duration::from_secs(6)),
        Fault::too_many_requests(Duration::from_secs(6)),
    ]);
    let start = Instant::now();
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), Some(2));
    assert_eq!(start.elapsed(), Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried_and_reported_as_timeouts() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake
        .client_builder()
        .request_timeout(Duration::from_secs(5))
        .retry_policy(common::seeded_policy(5).with_max_attempts(2))
        .build()
        .unwrap();
    client.access_token().await.unwrap();

    // One slow answer, then a normal one: the call succeeds on the second attempt.
    fake.push_fault(Fault::Delay(Duration::from_secs(60)));
    let start = Instant::now();
    client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(5));
    assert_eq!(fake.api_requests(LIST), 2);

    // Only slow answers: the error says it timed out.
    fake.push_faults([
        Fault::Delay(Duration::from_secs(60)),
        Fault::Delay(Duration::from_secs(60)),
    ]);
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.attempts(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_retried_then_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = genesys_client::Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/"))
        .allow_http(true)
        .credentials("id", genesys_client::ClientSecret::new("secret"))
        .retry_policy(common::seeded_policy(2).with_max_attempts(3))
        .build()
        .unwrap();
    let err = client.access_token().await.unwrap_err();
    assert_eq!(err.attempts(), Some(3), "{err:?}");
    assert!(matches!(
        err,
        Error::RetriesExhausted { ref last, .. } if matches!(**last, Error::Transport { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn retries_are_logged_at_warn_with_status_attempt_and_wait() {
    let (logs, _guard) = common::capture_logs();
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    fake.push_fault(Fault::too_many_requests(Duration::from_secs(4)));
    client.list_actions(&ListActionsQuery::new()).await.unwrap();
    let logs = logs.contents();
    let line = logs
        .lines()
        .find(|l| l.contains("retrying"))
        .unwrap_or_else(|| panic!("no retry line in {logs}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("status=429"), "{line}");
    assert!(line.contains("attempt=1"), "{line}");
    assert!(line.contains("wait_ms=4000"), "{line}");
    assert!(line.contains("correlation_id="), "{line}");
}

#[tokio::test(start_paused = true)]
async fn connections_closed_without_an_answer_are_retried() {
    // A server that reads the request and hangs up without answering, like a reset.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            drop(stream);
        }
    });
    let client = genesys_client::Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/"))
        .allow_http(true)
        .credentials("id", genesys_client::ClientSecret::new("secret"))
        .retry_policy(common::seeded_policy(4).with_max_attempts(3))
        .build()
        .unwrap();
    let err = client.access_token().await.unwrap_err();
    assert_eq!(err.attempts(), Some(3), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_body_cut_off_mid_transfer_is_retried_for_a_get() {
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    fake.push_fault(Fault::cut_off(200, r#"{"entities":[{"id":"custom_-_"#));
    let page = client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert_eq!(page.body().entities.len(), 25);
    assert_eq!(fake.api_requests(LIST), 2, "cut off once, then resent");
}

#[tokio::test(start_paused = true)]
async fn a_body_cut_off_every_time_says_it_was_cut_off_not_unreachable() {
    let (fake, client) = fake_and_client(common::seeded_policy(1).with_max_attempts(2)).await;
    fake.push_faults([
        Fault::cut_off(200, r#"{"entities":["#),
        Fault::cut_off(200, r#"{"entities":["#),
    ]);
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), Some(2), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    let Error::RetriesExhausted { last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(**last, Error::BodyCutOff { .. }), "{last:?}");
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert!(err.correlation_id().is_some(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("cut off"), "{text}");
    assert!(!text.contains("could not reach"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_whole_body_that_is_not_json_is_not_retried() {
    let (fake, client) = fake_and_client(common::seeded_policy(1)).await;
    fake.push_fault(Fault::malformed(200, r#"{"entities":["#));
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(fake.api_requests(LIST), 1);
}

#[tokio::test(start_paused = true)]
async fn a_token_response_cut_off_mid_body_is_retried() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake
        .client_builder()
        .retry_policy(common::seeded_policy(1))
        .build()
        .unwrap();
    fake.push_token_fault(Fault::cut_off(200, r#"{"access_token":"#));
    client.access_token().await.unwrap();
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn transport_errors_say_whether_the_connection_was_made() {
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = genesys_client::Client::builder()
        .base_url(format!("http://127.0.0.1:{refused}/"))
        .allow_http(true)
        .credentials("id", genesys_client::ClientSecret::new("secret"))
        .retry_policy(RetryPolicy::never())
        .build()
        .unwrap();
    let err = client.access_token().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("could not connect to Genesys Cloud"),
        "{err}"
    );
}
