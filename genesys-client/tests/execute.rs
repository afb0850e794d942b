//! Data-action executions: resent only when Genesys cannot have run them, unless marked
//! idempotent; the error says which case it was. GETs keep every retry.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use genesys_client::fake::{FakeGenesys, Fault};
use genesys_client::{Client, Doubt, Error, ExecuteOptions, ListActionsQuery, StatusCode};
use serde_json::json;

async fn setup() -> (FakeGenesys, Client, String) {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake
        .client_builder()
        .retry_policy(common::seeded_policy(7))
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    let id = fake.actions()[1].id.clone();
    (fake, client, id)
}

fn execute_path(id: &str) -> String {
    format!("/api/v2/integrations/actions/{id}/execute")
}

async fn execute(
    client: &Client,
    id: &str,
    options: ExecuteOptions,
) -> genesys_client::Result<serde_json::Value> {
    client
        .execute_action(id, &json!({"orderId": "A-1001"}), &options)
        .await
        .map(|r| r.into_body())
}

#[tokio::test(start_paused = true)]
async fn server_errors_after_sending_are_not_resent_and_say_so() {
    let (fake, client, id) = setup().await;
    for status in [500, 502, 504] {
        let before = fake.api_requests(&execute_path(&id));
        fake.push_fault(Fault::server_error(status));
        let err = execute(&client, &id, ExecuteOptions::default())
            .await
            .unwrap_err();
        let code = StatusCode::from_u16(status).unwrap();
        assert!(
            matches!(err, Error::MaybeExecuted { doubt: Doubt::ServerError(s), attempts: 1, .. } if s == code),
            "{err:?}"
        );
        assert_eq!(err.doubt(), Some(Doubt::ServerError(code)));
        assert_eq!(err.status(), Some(code));
        assert!(err.correlation_id().is_some());
        let text = err.to_string();
        assert!(
            text.contains("not resent")
                && text.contains("idempotent")
                && text.contains(&status.to_string()),
            "{text}"
        );
        assert_eq!(
            fake.api_requests(&execute_path(&id)),
            before + 1,
            "{status}: sent once"
        );
    }
    assert_eq!(fake.pending_faults(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_429_or_503_proves_it_did_not_run_and_is_resent() {
    let (fake, client, id) = setup().await;
    fake.push_faults([
        Fault::too_many_requests(Duration::from_secs(2)),
        Fault::unavailable(Duration::from_secs(1)),
    ]);
    let order = execute(&client, &id, ExecuteOptions::default())
        .await
        .unwrap();
    assert_eq!(order["orderId"], "A-1001");
    assert_eq!(fake.api_requests(&execute_path(&id)), 3);
}

#[tokio::test(start_paused = true)]
async fn a_response_cut_off_or_a_timeout_is_not_resent() {
    let (fake, client, id) = setup().await;
    fake.push_fault(Fault::cut_off(200, r#"{"orderId":"A-10"#));
    let err = execute(&client, &id, ExecuteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.doubt(), Some(Doubt::ResponseLost), "{err:?}");
    assert!(err.to_string().contains("cut off"), "{err}");
    assert_eq!(fake.api_requests(&execute_path(&id)), 1);

    fake.push_fault(Fault::Delay(Duration::from_secs(60)));
    let err = execute(&client, &id, ExecuteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.doubt(), Some(Doubt::Timeout), "{err:?}");
    assert!(err.is_timeout());
    assert_eq!(fake.api_requests(&execute_path(&id)), 2);
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_execution_is_retried_like_a_get() {
    let (fake, client, id) = setup().await;
    fake.push_faults([
        Fault::server_error(500),
        Fault::cut_off(200, r#"{"orderId":"#),
        Fault::server_error(504),
    ]);
    let order = execute(&client, &id, ExecuteOptions::idempotent())
        .await
        .unwrap();
    assert_eq!(order["status"], "SHIPPED");
    assert_eq!(fake.api_requests(&execute_path(&id)), 4);
}

#[tokio::test(start_paused = true)]
async fn gets_keep_their_retries() {
    let (fake, client, _) = setup().await;
    fake.push_faults([500, 502, 504].map(Fault::server_error));
    client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert_eq!(fake.api_requests("/api/v2/integrations/actions"), 4);
}

#[tokio::test(start_paused = true)]
async fn the_test_endpoint_runs_the_action_too_and_is_not_resent() {
    let (fake, client, id) = setup().await;
    fake.push_fault(Fault::server_error(502));
    let err = client
        .test_action(&id, &json!({"orderId": "A-1001"}))
        .await
        .unwrap_err();
    assert_eq!(
        err.doubt(),
        Some(Doubt::ServerError(StatusCode::BAD_GATEWAY))
    );
    assert_eq!(
        fake.api_requests(&format!("/api/v2/integrations/actions/{id}/test")),
        1
    );
}

/// An API host that reads each request and hangs up without answering; counts connections.
async fn hang_up_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            drop(stream);
        }
    });
    (url, accepted)
}

#[tokio::test(start_paused = true)]
async fn a_connection_lost_after_sending_is_not_resent_but_a_failed_connect_is() {
    let fake = FakeGenesys::start().await.unwrap();
    let (api, accepted) = hang_up_server().await;
    let client = fake
        .client_builder()
        .base_urls(api, fake.base_url())
        .retry_policy(common::seeded_policy(3).with_max_attempts(3))
        .build()
        .unwrap();
    let err = execute(&client, "custom_-_x", ExecuteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.doubt(), Some(Doubt::ConnectionLost), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "sent once");

    // Nothing listens: the connect fails before anything is written, so resending is safe.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let client = fake
        .client_builder()
        .base_urls(closed, fake.base_url())
        .retry_policy(common::seeded_policy(3).with_max_attempts(3))
        .build()
        .unwrap();
    let err = execute(&client, "custom_-_x", ExecuteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), Some(3), "{err:?}");
    assert!(
        matches!(err, Error::RetriesExhausted { ref last, .. } if matches!(**last, Error::Transport { .. })),
        "{err:?}"
    );
}
