//! The client-side limiter and the shared retry budget, against a fake that enforces
//! Genesys's per-org limits with 429s. Counts and tokio's paused clock, never wall time.

use std::time::Duration;

use futures_util::future::join_all;
use genesys_client::fake::{FakeGenesys, OrgLimits};
use genesys_client::{
    Client, Error, ExecuteOptions, Limits, ListActionsQuery, RetryBudget, RetryPolicy,
};
use serde_json::json;

fn execute_path(fake: &FakeGenesys) -> String {
    format!(
        "/api/v2/integrations/actions/{}/execute",
        fake.actions()[1].id
    )
}

/// Starts `calls` executions at once and waits for every one of them.
async fn burst(
    client: &Client,
    fake: &FakeGenesys,
    calls: usize,
) -> Vec<genesys_client::Result<()>> {
    let id = fake.actions()[1].id.clone();
    let tasks = (0..calls).map(|_| {
        let client = client.clone();
        let id = id.clone();
        tokio::spawn(async move {
            client
                .execute_action(
                    &id,
                    &json!({"orderId": "A-1001"}),
                    &ExecuteOptions::default(),
                )
                .await
                .map(|_| ())
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("no call panics"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_executions_stay_inside_the_org_limits() {
    // Genesys's documented limits (50 at once, 2,500 executions and 300 requests a minute),
    // and 80 ms per execution.
    let fake = FakeGenesys::builder()
        .org_limits(OrgLimits::documented())
        .latency(Duration::from_millis(80))
        .start()
        .await
        .unwrap();
    let client = fake.client_builder().build().unwrap();
    let results = burst(&client, &fake, 1_000).await;
    assert_eq!(results.len(), 1_000, "every call answered");
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let peak = fake.peak_executions_in_flight();
    assert!(peak <= 50, "{peak} executions in flight");
    assert_eq!(peak, 50, "the cap is used, not undercut");
    assert_eq!(
        fake.rate_limited(),
        0,
        "no 429s: the client waited in line instead"
    );
    assert_eq!(
        fake.api_requests(&execute_path(&fake)),
        1_000,
        "no retries needed"
    );
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_tighter_org_than_configured_costs_a_bounded_number_of_429s() {
    // The org allows 100 executions a minute, the client believes the documented 2,500; it
    // learns from the 429s' Retry-After and holds everyone back, not only the refused call.
    let fake = FakeGenesys::builder()
        .org_limits(OrgLimits {
            executions_per_minute: Some(100),
            ..OrgLimits::documented()
        })
        .latency(Duration::from_millis(80))
        .start()
        .await
        .unwrap();
    let client = fake
        .client_builder()
        .retry_policy(
            RetryPolicy::default()
                .with_max_attempts(10)
                .with_max_total_time(Duration::from_secs(600)),
        )
        .build()
        .unwrap();
    let results = burst(&client, &fake, 300).await;
    assert_eq!(results.len(), 300, "every call answered");
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    assert!(fake.peak_executions_in_flight() <= 50);
    let limited = fake.rate_limited();
    // Each window's first refusals hold every caller until the window resets: a few 429s per
    // window, not one per caller per retry.
    assert!(limited <= 50 * 3, "{limited} 429s");
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_keeps_a_429_storm_a_bounded_share_of_traffic() {
    // No client limiter: 200 executions at once against an org that runs 50 at a time.
    async fn storm(budget: RetryBudget) -> (usize, Vec<genesys_client::Result<()>>) {
        let fake = FakeGenesys::builder()
            .org_limits(OrgLimits {
                max_concurrent_executions: Some(50),
                ..OrgLimits::none()
            })
            .latency(Duration::from_millis(80))
            .start()
            .await
            .unwrap();
        let client = fake
            .client_builder()
            .limits(Limits::off())
            .retry_budget(budget)
            .build()
            .unwrap();
        client.access_token().await.unwrap();
        let results = burst(&client, &fake, 200).await;
        (fake.api_requests(&execute_path(&fake)), results)
    }
    let (sent, results) = storm(
        RetryBudget::default()
            .with_min_per_second(0)
            .with_ratio(0.2),
    )
    .await;
    assert_eq!(results.len(), 200, "every call answered");
    assert!(sent <= 200 + 40, "{sent} requests for 200 calls");
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::RetryBudgetExhausted { .. })))
        .count();
    assert!(refused > 0, "the budget ran out");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(err.is_rate_limited(), "{err}");
        assert!(err.to_string().contains("retry budget"), "{err}");
    }

    let (unbudgeted, _) = storm(RetryBudget::off()).await;
    assert!(
        unbudgeted > sent + 100,
        "without the budget: {unbudgeted} requests"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_headers_slow_the_client_down_before_the_429s() {
    async fn run(limits: Limits) -> (usize, usize, Duration) {
        let fake = FakeGenesys::builder()
            .org_limits(OrgLimits {
                requests_per_minute: Some(20),
                ..OrgLimits::none()
            })
            .start()
            .await
            .unwrap();
        let client = fake.client_builder().limits(limits).build().unwrap();
        client.access_token().await.unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..50 {
            client.list_actions(&ListActionsQuery::new()).await.unwrap();
        }
        (
            fake.rate_limited(),
            fake.api_requests("/api/v2/integrations/actions"),
            start.elapsed(),
        )
    }
    // No request budget of its own: only the inin-ratelimit-* headers tell the client.
    let (limited, sent, took) = run(Limits::default().with_requests_per_minute(None)).await;
    assert_eq!(limited, 0, "held back before Genesys refused");
    assert_eq!(sent, 50);
    assert!(took >= Duration::from_secs(120), "three windows: {took:?}");
    // Ignoring the headers, the same calls meet 429s (and still succeed after Retry-After).
    let (limited, sent, _) = run(Limits::off()).await;
    assert!(limited > 0);
    assert_eq!(sent, 50 + limited);
}

#[test]
fn zero_limits_are_a_configuration_error() {
    let err = Client::builder()
        .region(genesys_client::Region::UsEast1)
        .credentials("id", genesys_client::ClientSecret::new("s"))
        .limits(Limits::default().with_max_concurrent_executions(0))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}
