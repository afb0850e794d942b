//! The per-upstream bulkhead over real HTTP: at most `max_concurrency` calls reach the
//! upstream at once, and with `shed_when_full` a call over the limit is not made: the last
//! good copy is served when there is one, else 503 with `Retry-After`.

mod support;

use action_cache_testing::eventually;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::{start_with, CONFIG};

fn loads(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(r#"proxy_cache_events_total{route="account",event="load"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn no_more_than_max_concurrency_calls_reach_the_upstream() {
    let config = CONFIG.replace(
        "max_response_bytes = 4096",
        "max_response_bytes = 4096\nmax_concurrency = 2",
    );
    let p = Arc::new(start_with(&config).await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.get(&format!("/accounts/hold-{i}"), &[]).await.status
        }));
    }
    // Every request has asked for an upstream call; two are at the upstream, four wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while loads(&p.proxy.metrics_text()) < 6
        || p.upstream.state.in_flight.load(Ordering::SeqCst) < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the requests never queued"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(p.upstream.calls(), 2, "the other four wait in the bulkhead");
    p.upstream.state.gate.add_permits(6);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(p.upstream.calls(), 6);
    assert_eq!(p.upstream.state.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn when_full_a_shedding_upstream_serves_the_last_good_copy_or_503() {
    let config = CONFIG.replace(
        "max_response_bytes = 4096",
        "max_response_bytes = 4096\nmax_concurrency = 1\nshed_when_full = true",
    );
    let p = Arc::new(start_with(&config).await);
    let good = p.get("/accounts/a", &[]).await;
    // Past the stale window: only the last good copy is left.
    p.clock.advance(Duration::from_secs(1000));
    let held = {
        let p = p.clone();
        tokio::spawn(async move { p.get("/accounts/hold-1", &[]).await.status })
    };
    eventually("the one slot is taken", Duration::from_secs(10), || {
        p.upstream.state.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let shed = p.get("/accounts/a", &[]).await;
    assert_eq!((shed.status, shed.cache()), (200, "STALE-IF-ERROR"));
    assert_eq!(shed.body, good.body);
    assert!(shed
        .header("cache-status")
        .unwrap()
        .contains("detail=upstream-busy"));
    let none = p.get("/accounts/b", &[]).await;
    assert_eq!((none.status, none.cache()), (503, "ERROR"));
    assert_eq!(none.header("retry-after"), Some("1"));
    assert_eq!(
        p.upstream.calls(),
        2,
        "shed calls never reached the upstream"
    );
    p.upstream.state.gate.add_permits(1);
    assert_eq!(held.await.unwrap(), 200);
    assert!(p
        .proxy
        .metrics_text()
        .contains(r#"proxy_cache_events_total{route="account",event="shed"} 2"#));
}
