//! Secrets never show in `Debug`, `Display`, errors or logs.

mod common;

use std::time::Duration;

use base64::Engine as _;
use genesys_client::fake::{FakeGenesys, Fault};
use genesys_client::{ClientSecret, Credentials, ListActionsQuery};

const SECRET: &str = "s3cr3t-Zebra-0451";

#[test]
fn debug_and_display_print_stars() {
    let secret = ClientSecret::new(SECRET);
    assert_eq!(format!("{secret:?}"), "ClientSecret(***)");
    assert_eq!(format!("{secret}"), "***");
    let credentials = Credentials::new("id-1", secret.clone());
    assert!(!format!("{credentials:?}").contains(SECRET));
    let builder = genesys_client::Client::builder().credentials("id-1", secret);
    assert!(!format!("{builder:?}").contains(SECRET));
    let client = builder
        .region(genesys_client::Region::UsEast1)
        .build()
        .unwrap();
    let debug = format!("{client:?}");
    assert!(debug.contains("id-1") && !debug.contains(SECRET), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn secrets_and_tokens_never_reach_logs_errors_or_debug_output() {
    let (logs, _guard) = common::capture_logs();
    let fake = FakeGenesys::builder()
        .credentials("log-test-client", ClientSecret::new(SECRET))
        .token_lifetime(Duration::from_secs(300))
        .start()
        .await
        .unwrap();
    let client = fake
        .client_builder()
        .retry_policy(common::seeded_policy(1))
        .build()
        .unwrap();
    let query = ListActionsQuery::new();

    // A token, a retry, a 401 and refresh, an expiry and refresh, and an error.
    let token = client.access_token().await.unwrap();
    assert_eq!(format!("{token:?}"), "AccessToken(***)");
    fake.push_token_fault(Fault::server_error(503));
    fake.push_fault(Fault::server_error(503));
    client.list_actions(&query).await.unwrap();
    fake.revoke_tokens();
    client.list_actions(&query).await.unwrap();
    tokio::time::advance(Duration::from_secs(400)).await;
    client.list_actions(&query).await.unwrap();
    fake.push_fault(Fault::server_error(400));
    let api_err = client.list_actions(&query).await.unwrap_err();

    let wrong = fake
        .client_builder()
        .credentials("log-test-client", ClientSecret::new("another-secret-77"))
        .build()
        .unwrap();
    let auth_err = wrong.list_actions(&query).await.unwrap_err();

    let tokens = fake.issued_tokens();
    assert!(tokens.len() >= 3, "{tokens:?}");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("log-test-client:{SECRET}"));
    let logs = logs.contents();
    assert!(logs.contains("retrying"), "the capture works: {logs}");
    let texts = [
        logs,
        api_err.to_string(),
        format!("{api_err:?}"),
        auth_err.to_string(),
        format!("{auth_err:?}"),
        format!("{client:?}"),
        format!("{fake:?}"),
    ];
    for text in &texts {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(!text.contains("another-secret-77"), "secret leaked: {text}");
        assert!(!text.contains(&basic), "basic credentials leaked: {text}");
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "token leaked: {text}");
        }
    }
    assert!(auth_err.to_string().contains("log-test-client"));
}
