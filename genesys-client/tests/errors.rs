//! Errors: parsed bodies, snippets of malformed ones, 403 hints, metadata, `Clone`.

use genesys_client::fake::{FakeGenesys, Fault};
use genesys_client::{
    Error, ExecuteOptions, GetActionOptions, ListActionsQuery, RetryPolicy, StatusCode,
};
use serde_json::json;

async fn setup() -> (FakeGenesys, genesys_client::Client) {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake
        .client_builder()
        .retry_policy(RetryPolicy::never())
        .build()
        .unwrap();
    (fake, client)
}

#[tokio::test(start_paused = true)]
async fn malformed_success_json_is_a_decode_error_with_a_snippet() {
    let (fake, client) = setup().await;
    fake.push_fault(Fault::malformed(
        200,
        r#"{"entities": [{"id": "a1", "name": "#,
    ));
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    let Error::Decode { snippet, what, .. } = &err else {
        panic!("expected a decode error, got {err:?}");
    };
    assert_eq!(snippet, r#"{"entities": [{"id": "a1", "name": "#);
    assert_eq!(*what, "response body");
    assert_eq!(err.status(), Some(StatusCode::OK));
    assert!(err.correlation_id().is_some());
    assert!(err.to_string().contains(r#"{\"entities\""#), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_non_json_error_body_keeps_the_status_and_a_short_snippet() {
    let (fake, client) = setup().await;
    let html = format!("<html><body>Bad request{}</body></html>", " ".repeat(500));
    fake.push_fault(Fault::malformed(400, html));
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    let snippet = err.body().unwrap().snippet.clone().unwrap();
    assert!(snippet.starts_with("<html><body>Bad request"), "{snippet}");
    assert!(snippet.chars().count() <= genesys_client::SNIPPET_CHARS + 1);
}

#[tokio::test(start_paused = true)]
async fn platform_error_bodies_are_parsed() {
    let (_fake, client) = setup().await;
    let err = client
        .get_action("no-such-action", &GetActionOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    let body = err.body().unwrap();
    assert_eq!(body.code.as_deref(), Some("not.found"));
    assert_eq!(body.status, Some(404));
    assert!(body.message.as_deref().unwrap().contains("no-such-action"));
    assert!(err.to_string().contains("not.found"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn data_action_errors_carry_their_error_code_and_correlation_id() {
    let (fake, client) = setup().await;
    let id = fake.actions()[1].id.clone();
    let err = client
        .execute_action(
            &id,
            &json!({"orderId": "Z-9999"}),
            &ExecuteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(err.action_error_code(), Some("ACTION.REMOTE_ENDPOINT"));
    let body = err.body().unwrap();
    assert_eq!(
        body.details.as_ref().unwrap()[0].error_code.as_deref(),
        Some("ACTION.REMOTE_ENDPOINT")
    );
    assert_eq!(
        body.user_message.as_deref(),
        Some("The order Z-9999 was not found.")
    );
    assert_eq!(
        body.correlation_id.as_deref(),
        Some(&*format!("action-{id}"))
    );
    // The header wins over the body for the correlation id.
    assert_ne!(err.correlation_id(), body.correlation_id.as_deref());
    assert!(err.to_string().contains("ACTION.REMOTE_ENDPOINT"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn forbidden_names_the_likely_permission_and_the_client_id() {
    let (fake, client) = setup().await;
    let forbidden = || {
        Fault::json(
            403,
            json!({"message": "You are not authorized to perform the requested action.",
                   "code": "missing.any.permissions", "status": 403}),
        )
    };
    fake.push_fault(forbidden());
    let err = client
        .execute_action(
            &fake.actions()[0].id,
            &json!({}),
            &ExecuteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Forbidden {
                missing_permission: Some("integrations:action:execute"),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("integrations:action:execute") && text.contains(fake.client_id()),
        "{text}"
    );

    fake.push_fault(forbidden());
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("integrations:action:view"),
        "{err}"
    );
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    assert_eq!(fake.api_requests_total(), 2, "403 is not retried");
}

#[tokio::test(start_paused = true)]
async fn responses_and_errors_expose_correlation_id_and_rate_limits() {
    let (fake, client) = setup().await;
    let page = client.list_actions(&ListActionsQuery::new()).await.unwrap();
    let id = page.correlation_id().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(page.rate_limit().allowed, Some(300));
    // Genesys counts the API requests made with the token; the token request goes to the
    // login host.
    assert_eq!(page.rate_limit().count, Some(1), "the listing");
    assert!(page.rate_limit().reset.is_some());

    fake.push_fault(Fault::server_error(500));
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(err.correlation_id().is_some());
    assert_ne!(err.correlation_id(), Some(id));
    assert_eq!(err.rate_limit().unwrap().count, Some(2));
}

#[tokio::test(start_paused = true)]
async fn errors_clone_for_shared_callers() {
    let (fake, client) = setup().await;
    fake.push_fault(Fault::server_error(502));
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    let copy = err.clone();
    assert_eq!(copy.to_string(), err.to_string());
    assert_eq!(copy.status(), Some(StatusCode::BAD_GATEWAY));
    let shared: std::sync::Arc<dyn std::error::Error + Send + Sync> = std::sync::Arc::new(copy);
    assert!(shared.to_string().contains("502"));
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_a_typed_error_before_any_request() {
    let (fake, client) = setup().await;
    let err = client
        .get_action("", &GetActionOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }));
    let err = client
        .list_actions(&ListActionsQuery::new().page_size(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }));
    let not_json = std::collections::HashMap::from([((1, 2), 3)]);
    let err = client
        .execute_action(&fake.actions()[0].id, &not_json, &ExecuteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(fake.api_requests_total(), 0);
}

#[tokio::test(start_paused = true)]
async fn transient_and_fatal_predicates() {
    let (fake, client) = setup().await;
    fake.push_fault(Fault::server_error(503));
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    fake.push_fault(Fault::server_error(400));
    let err = client
        .list_actions(&ListActionsQuery::new())
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert!(!err.is_timeout() && !err.is_auth() && !err.is_rate_limited());
}
