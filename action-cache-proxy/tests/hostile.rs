//! Hostile input over real HTTP, on a real Redis: every case is refused with 400 before the
//! upstream is called, and a purge names exactly the entry a read would use.

mod support;

use support::start;

#[tokio::test]
async fn dot_segments_raw_or_encoded_are_refused_without_an_upstream_call() {
    let p = start().await;
    for path in [
        "/accounts/..",
        "/accounts/.",
        "/accounts/%2e%2e",
        "/accounts/%2E%2E",
        "/accounts/.%2e",
        "/accounts/%2e",
        "/orders/../lines",
        "/orders/%2e%2e/lines",
    ] {
        let r = p.get(path, &[]).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(
            r.json()["error"].as_str().unwrap().contains("`.` or `..`"),
            "{path}: {}",
            r.text()
        );
    }
    assert_eq!(p.upstream.calls(), 0, "{:?}", p.upstream.seen());
}

#[tokio::test]
async fn control_characters_invalid_utf8_and_long_values_are_refused() {
    let p = start().await;
    let long = "x".repeat(65);
    for path in [
        "/accounts/a%00b".to_owned(),
        "/accounts/a%0d%0aSet-Cookie:%20x".to_owned(),
        "/accounts/a%0A".to_owned(),
        "/accounts/a%09".to_owned(),
        "/accounts/%ff%fe".to_owned(),
        "/accounts/%c3".to_owned(),
        format!("/accounts/{long}"),
        "/accounts/1?fields=a%00".to_owned(),
        "/accounts/1?fields=%ff".to_owned(),
        format!("/accounts/1?fields={long}"),
        "/accounts/1?fields=a&fields=b".to_owned(),
    ] {
        let r = p.get(&path, &[]).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    let r = p.get("/accounts/1", &["X-Tenant: a", "X-Tenant: b"]).await;
    assert_eq!(r.status, 400, "a key header given twice");
    let r = p.get("/accounts/1", &[&format!("X-Tenant: {long}")]).await;
    assert_eq!(r.status, 400, "an over-long key header");
    assert_eq!(p.upstream.calls(), 0, "{:?}", p.upstream.seen());
    // The exact limit is fine.
    assert_eq!(
        p.get(&format!("/accounts/{}", "x".repeat(64)), &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_encoded_slash_stays_inside_its_segment() {
    let p = start().await;
    let r = p.get("/accounts/a%2Fb%3Fc", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(p.upstream.seen(), ["/api/v1/accounts/a%2Fb%3Fc"]);
}

#[tokio::test]
async fn a_purge_normalises_identifiers_exactly_as_reads_do() {
    let p = start().await;
    // Two different accounts whose ids differ only by spaces.
    assert_eq!(p.get("/accounts/42", &[]).await.cache(), "MISS");
    assert_eq!(p.get("/accounts/%2042%20", &[]).await.cache(), "MISS");
    let body = br#"{"route":"account","params":{"id":" 42 "}}"#;
    let r = p.purge(body, &[p.sign(body)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["purged"], 1);
    assert_eq!(
        p.get("/accounts/%2042%20", &[]).await.cache(),
        "MISS",
        "the spaced id was purged"
    );
    assert_eq!(
        p.get("/accounts/42", &[]).await.cache(),
        "HIT",
        "and only it"
    );

    for body in [
        &br#"{"route":"account","params":{"id":".."}}"#[..],
        br#"{"route":"account","params":{"id":"a\u0000b"}}"#,
        br#"{"route":"account","params":{"id":"a\r\nb"}}"#,
        br#"{"route":"account","params":{}}"#,
        br#"{"route":"account","params":{"id":"1","other":"2"}}"#,
        br#"{"route":"nope","params":{"id":"1"}}"#,
        br#"{"account_id":""}"#,
    ] {
        let r = p.purge(body, &[p.sign(body)]).await;
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
    }
    assert_eq!(p.get("/accounts/42", &[]).await.cache(), "HIT");
}

#[tokio::test]
async fn oversized_request_bodies_are_refused() {
    let p = start().await;
    let big = vec![b'x'; 2048];
    let r = p.raw("GET /accounts/1 HTTP/1.1", &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    let huge = format!(r#"{{"tags":["{}"]}}"#, "x".repeat(100 * 1024));
    let r = p.purge(huge.as_bytes(), &[p.sign(huge.as_bytes())]).await;
    assert_eq!(r.status, 413);
    assert_eq!(p.upstream.calls(), 0);
}
