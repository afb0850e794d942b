//! The proxy serving a multi-route configuration over real HTTP, on a real Redis, in front of a
//! local fake upstream that counts its calls. Time is a manual clock, so windows are exact.

mod support;

use action_cache_testing::{eventually, until_coalesced};
use std::sync::Arc;
use std::time::Duration;
use support::start;

#[tokio::test]
async fn a_second_read_is_a_hit_served_byte_for_byte_with_cache_headers() {
    let p = start().await;
    let first = p.get("/accounts/42", &[]).await;
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    let text = first.text();
    assert!(
        text.starts_with(r#"{"z":1E2,"id":"42","big":123456789012345678901234567890,"#),
        "the upstream's bytes, not re-serialised JSON: {text}"
    );
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(
        first.header("cache-status"),
        Some("action-cache-proxy; fwd=uri-miss; fwd-status=200; stored")
    );

    p.clock.advance(Duration::from_secs(7));
    let again = p.get("/accounts/42", &[]).await;
    assert_eq!((again.status, again.cache()), (200, "HIT"));
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("age"), Some("7"));
    assert_eq!(
        again.header("cache-status"),
        Some("action-cache-proxy; hit; ttl=293")
    );
    assert_eq!(p.upstream.calls(), 1);
    assert_eq!(p.upstream.seen(), ["/api/v1/accounts/42"]);
}

#[tokio::test]
async fn routes_map_to_their_upstream_paths_and_are_cached_apart() {
    let p = start().await;
    let lines = p.get("/orders/A-1/lines", &[]).await;
    assert_eq!((lines.status, lines.cache()), (200, "MISS"));
    assert_eq!(lines.text(), r#"[{"sku":"A","qty":1}]"#);
    assert_eq!(p.get("/orders/A-1/lines", &[]).await.cache(), "HIT");
    assert_eq!(p.get("/accounts/A-1", &[]).await.cache(), "MISS");
    assert_eq!(
        p.upstream.seen(),
        ["/api/v1/orders/A-1/lines", "/api/v1/accounts/A-1"]
    );
    assert_eq!(p.get("/nowhere", &[]).await.status, 404);
}

#[tokio::test]
async fn key_query_and_headers_are_forwarded_and_keyed_and_others_are_dropped() {
    let p = start().await;
    let a = p
        .get("/accounts/7?fields=name&utm=x", &["X-Tenant: t1"])
        .await;
    assert_eq!(a.cache(), "MISS");
    assert_eq!(
        p.get("/accounts/7?utm=other&fields=name", &["x-tenant: t1"])
            .await
            .cache(),
        "HIT"
    );
    assert_eq!(
        p.get("/accounts/7?fields=name", &["X-Tenant: t2"])
            .await
            .cache(),
        "MISS"
    );
    assert_eq!(
        p.get("/accounts/7?fields=id", &["X-Tenant: t1"])
            .await
            .cache(),
        "MISS"
    );
    assert_eq!(
        p.get("/accounts/7", &["X-Tenant: t1"]).await.cache(),
        "MISS"
    );
    assert_eq!(
        p.get("/accounts/7?fields=", &["X-Tenant: t1"])
            .await
            .cache(),
        "MISS",
        "empty is not absent"
    );
    let seen = p.upstream.seen();
    assert_eq!(seen[0], "/api/v1/accounts/7?fields=name");
    assert_eq!(seen[3], "/api/v1/accounts/7");
    assert_eq!(seen[4], "/api/v1/accounts/7?fields=");
    let tenants = p.upstream.state.headers.lock().unwrap().clone();
    assert_eq!(tenants[0].as_deref(), Some("t1"));
    assert_eq!(tenants[1].as_deref(), Some("t2"));
}

#[tokio::test]
async fn a_stale_read_is_served_at_once_and_refreshed_once() {
    let p = start().await;
    p.get("/accounts/42", &[]).await;
    p.clock.advance(Duration::from_secs(400));
    let stale = p.get("/accounts/42", &[]).await;
    assert_eq!((stale.status, stale.cache()), (200, "STALE"));
    assert_eq!(
        stale.header("cache-status"),
        Some("action-cache-proxy; hit; ttl=-100")
    );
    eventually(
        "the refresh reaches the upstream",
        Duration::from_secs(10),
        || p.upstream.calls() == 2,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = p.get("/accounts/42", &[]).await;
        if r.cache() == "HIT" {
            assert_eq!(r.header("age"), Some("0"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refreshed copy was never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p.upstream.calls(), 2);
}

#[tokio::test]
async fn a_configured_404_is_cached_for_its_own_ttl_and_other_4xx_are_not() {
    let p = start().await;
    let miss = p.get("/accounts/missing", &[]).await;
    assert_eq!((miss.status, miss.cache()), (404, "MISS"));
    assert_eq!(miss.text(), r#"{"error":"no such account"}"#);
    p.clock.advance(Duration::from_secs(29));
    let hit = p.get("/accounts/missing", &[]).await;
    assert_eq!((hit.status, hit.cache()), (404, "HIT"));
    assert_eq!(p.upstream.calls(), 1);
    p.clock.advance(Duration::from_secs(2));
    assert_eq!(
        p.get("/accounts/missing", &[]).await.cache(),
        "MISS",
        "30 s, not the route's 5 min"
    );
    assert_eq!(p.upstream.calls(), 2);

    for _ in 0..2 {
        let gone = p.get("/accounts/gone", &[]).await;
        assert_eq!((gone.status, gone.cache()), (410, "MISS"));
    }
    assert_eq!(p.upstream.calls(), 4, "410 is not configured as negative");
}

#[tokio::test]
async fn upstream_failure_serves_the_last_good_copy_or_a_502() {
    let p = start().await;
    let good = p.get("/accounts/42", &[]).await;
    p.upstream
        .state
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    p.clock.advance(Duration::from_secs(1000));
    let r = p.get("/accounts/42", &[]).await;
    assert_eq!((r.status, r.cache()), (200, "STALE-IF-ERROR"));
    assert_eq!(r.body, good.body);
    assert_eq!(r.header("age"), Some("1000"));
    assert!(r.header("warning").is_some());
    assert!(
        r.header("cache-status")
            .unwrap()
            .contains("detail=upstream-503"),
        "{:?}",
        r.header("cache-status")
    );

    let none = p.get("/accounts/never-seen", &[]).await;
    assert_eq!((none.status, none.cache()), (502, "ERROR"));
    assert!(none.json()["error"].as_str().unwrap().contains("503"));
    p.upstream
        .state
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(p.get("/accounts/42", &[]).await.cache(), "MISS");
}

#[tokio::test]
async fn an_oversized_upstream_answer_is_cut_off_and_not_cached() {
    let p = start().await;
    for _ in 0..2 {
        let r = p.get("/accounts/big", &[]).await;
        assert_eq!((r.status, r.cache()), (502, "ERROR"));
        assert!(
            r.json()["error"].as_str().unwrap().contains("4096"),
            "{}",
            r.text()
        );
    }
    assert_eq!(p.upstream.calls(), 2);
}

#[tokio::test]
async fn health_readiness_and_per_route_metrics() {
    let p = start().await;
    p.get("/accounts/42", &[]).await;
    p.get("/accounts/42", &[]).await;
    p.get("/accounts/..", &[]).await;
    assert_eq!(p.get("/healthz", &[]).await.json()["store"]["status"], "up");
    assert_eq!(p.get("/readyz", &[]).await.status, 200);
    let metrics = p.get("/metrics", &[]).await.text();
    for line in [
        r#"proxy_responses_total{route="account",cache="HIT"} 1"#,
        r#"proxy_responses_total{route="account",cache="MISS"} 1"#,
        r#"proxy_responses_total{route="account",cache="REJECTED"} 1"#,
        r#"proxy_cache_events_total{route="account",event="fresh"} 1"#,
        r#"proxy_cache_events_total{route="account",event="miss"} 1"#,
        r#"proxy_cache_events_total{route="account",event="load"} 1"#,
        r#"proxy_cache_events_total{route="account",event="rejected"} 1"#,
        r#"proxy_request_duration_seconds_count{route="account"} 3"#,
        "action_cache_fresh_hits_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_request_that_waited_for_another_ones_upstream_call_is_a_collapsed_miss() {
    let p = Arc::new(start().await);
    let first = {
        let p = p.clone();
        tokio::spawn(async move { p.get("/accounts/hold-1", &[]).await })
    };
    eventually(
        "the first request is at the upstream",
        Duration::from_secs(10),
        || p.upstream.calls() == 1,
    )
    .await;
    let second = {
        let p = p.clone();
        tokio::spawn(async move { p.get("/accounts/hold-1", &[]).await })
    };
    until_coalesced(&p.cache, 1, Duration::from_secs(10)).await;
    p.upstream.state.gate.add_permits(1);
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    assert_eq!(
        first.header("cache-status"),
        Some("action-cache-proxy; fwd=uri-miss; fwd-status=200; stored")
    );
    // Not a HIT: nothing was in the cache when it asked; it shared the first one's call.
    assert_eq!((second.status, second.cache()), (200, "MISS"));
    assert_eq!(
        second.header("cache-status"),
        Some("action-cache-proxy; fwd=uri-miss; collapsed; fwd-status=200")
    );
    assert_eq!(second.body, first.body);
    assert_eq!(p.upstream.calls(), 1);
    assert_eq!(p.get("/accounts/hold-1", &[]).await.cache(), "HIT");
}
