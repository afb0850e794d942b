//! Routes with `cache_control = "honour"` over real HTTP with a real Redis: each directive of
//! the upstream's `Cache-Control` changes what is stored and served, counted in upstream
//! calls. The local upstream answers `GET /api/items/{id}` with the `Cache-Control` (and
//! `Age`) the test set for that id.

mod support;

use action_cache_testing::eventually;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Logs, Running};

/// The `Cache-Control` lines and `Age` of one id's answers.
type Headers = (Vec<String>, Option<u64>);

#[derive(Default)]
struct Upstream {
    headers: Mutex<HashMap<String, Headers>>,
    calls: Mutex<HashMap<String, usize>>,
    down: AtomicBool,
}

async fn item(State(u): State<Arc<Upstream>>, Path(id): Path<String>) -> Response {
    let n = {
        let mut calls = u.calls.lock().unwrap();
        let n = calls.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    if u.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let (lines, age) = u
        .headers
        .lock()
        .unwrap()
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let mut response = (
        [("content-type", "application/json")],
        format!(r#"{{"id":"{id}","call":{n}}}"#),
    )
        .into_response();
    for l in lines {
        response
            .headers_mut()
            .append("cache-control", l.parse().unwrap());
    }
    if let Some(age) = age {
        response.headers_mut().insert("age", age.into());
    }
    response
}

/// `/h/{id}`: honours, no stale_if_error of its own; `/hs/{id}`: honours, stale_if_error 1h;
/// `/off/{id}`: the default (ignores Cache-Control). All: fresh 5 min, stale 15 min.
const CONFIG: &str = r#"
[upstreams.crm]
base_url = "${UPSTREAM}"

[[routes]]
name = "honour"
path = "/h/{id}"
upstream = "crm"
upstream_path = "/items/{id}"
fresh = "5m"
stale = "15m"
jitter = 0.0
cache_control = "honour"

[[routes]]
name = "honour_sie"
path = "/hs/{id}"
upstream = "crm"
upstream_path = "/items/{id}"
fresh = "5m"
stale = "15m"
jitter = 0.0
stale_if_error = "1h"
cache_control = "honour"

[[routes]]
name = "off"
path = "/off/{id}"
upstream = "crm"
upstream_path = "/items/{id}"
fresh = "5m"
stale = "15m"
jitter = 0.0
"#;

async fn start() -> Running<Arc<Upstream>> {
    let upstream = Arc::new(Upstream::default());
    let fake = support::serve(
        Router::new()
            .route("/api/items/{id}", get(item))
            .with_state(upstream.clone()),
    )
    .await;
    let config = support::config(CONFIG, &format!("http://{}/api", fake.addr));
    support::start_fake(config, upstream, fake).await
}

/// What these tests read of the proxy and of their upstream.
impl Running<Arc<Upstream>> {
    /// `GET path` → (status, X-Cache).
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.raw(&format!("GET {path} HTTP/1.1"), b"").await;
        (r.status, r.cache().to_owned())
    }

    fn answer(&self, id: &str, cache_control: &[&str], age: Option<u64>) {
        self.upstream.headers.lock().unwrap().insert(
            id.to_owned(),
            (cache_control.iter().map(|s| (*s).to_owned()).collect(), age),
        );
    }

    fn calls(&self, id: &str) -> usize {
        self.upstream
            .calls
            .lock()
            .unwrap()
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn max_age_sets_the_fresh_window_and_s_maxage_wins() {
    let p = start().await;
    p.answer("ma", &["max-age=60"], None);
    p.answer("sm", &["max-age=600", "s-maxage=10"], None);
    p.answer("none", &[], None);
    for id in ["ma", "sm", "none"] {
        assert_eq!(p.get(&format!("/h/{id}")).await, (200, "MISS".into()));
        assert_eq!(p.get(&format!("/h/{id}")).await, (200, "HIT".into()));
    }
    p.advance(11);
    assert_eq!(
        p.get("/h/sm").await,
        (200, "MISS".into()),
        "s-maxage=10 is over"
    );
    assert_eq!(p.get("/h/ma").await, (200, "HIT".into()));
    p.advance(50);
    // max-age=60 is over and gave no stale window: asked again, although the route says 5 min.
    assert_eq!(p.get("/h/ma").await, (200, "MISS".into()));
    assert_eq!(p.calls("ma"), 2);
    // No Cache-Control: the route's own windows.
    assert_eq!(p.get("/h/none").await, (200, "HIT".into()));
    assert_eq!(p.calls("none"), 1);
}

#[tokio::test]
async fn age_is_taken_off_the_lifetime() {
    let p = start().await;
    p.answer("aged", &["max-age=60"], Some(50));
    assert_eq!(p.get("/h/aged").await, (200, "MISS".into()));
    assert_eq!(p.get("/h/aged").await, (200, "HIT".into()));
    p.advance(11);
    assert_eq!(p.get("/h/aged").await, (200, "MISS".into()));
    assert_eq!(p.calls("aged"), 2);
}

#[tokio::test]
async fn stale_while_revalidate_sets_the_stale_window() {
    let (logs, _guard) = Logs::capture();
    let p = start().await;
    p.answer("swr", &["max-age=10, stale-while-revalidate=100"], None);
    assert_eq!(p.get("/h/swr").await, (200, "MISS".into()));
    p.advance(11);
    assert_eq!(p.get("/h/swr").await, (200, "STALE".into()));
    eventually("the background refresh", Duration::from_secs(10), || {
        p.calls("swr") == 2
    })
    .await;
    // The cache stores the refreshed copy with the answer's windows itself: no "failed" refresh.
    eventually(
        "the refresh's end is logged",
        Duration::from_secs(10),
        || {
            let text = logs.text();
            text.contains("refreshed") || text.contains("refresh failed")
        },
    )
    .await;
    let text = logs.text();
    assert!(!text.contains("refresh failed"), "{text}");
    // The refreshed copy is stored with its own windows: fresh again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.get("/h/swr").await.1 != "HIT" {
        assert!(
            std::time::Instant::now() < deadline,
            "the refreshed copy was never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p.calls("swr"), 2);
    // Past fresh + stale of the newest copy: a miss.
    p.advance(200);
    assert_eq!(p.get("/h/swr").await, (200, "MISS".into()));
    assert_eq!(p.calls("swr"), 3);
    // must-revalidate forbids the stale window.
    p.answer(
        "mr",
        &["max-age=10, stale-while-revalidate=100, must-revalidate"],
        None,
    );
    assert_eq!(p.get("/h/mr").await, (200, "MISS".into()));
    p.advance(11);
    assert_eq!(p.get("/h/mr").await, (200, "MISS".into()));
    assert_eq!(p.calls("mr"), 2);
}

#[tokio::test]
async fn stale_if_error_sets_the_error_window() {
    let p = start().await;
    // The route keeps no last good copy of its own; the upstream asks for 100 s.
    p.answer("sie", &["max-age=10, stale-if-error=100"], None);
    p.answer("plain", &["max-age=10"], None);
    assert_eq!(p.get("/h/sie").await, (200, "MISS".into()));
    assert_eq!(p.get("/h/plain").await, (200, "MISS".into()));
    p.upstream.down.store(true, Ordering::SeqCst);
    p.advance(50);
    assert_eq!(p.get("/h/sie").await, (200, "STALE-IF-ERROR".into()));
    assert_eq!(
        p.get("/h/plain").await.0,
        502,
        "no error window: nothing to serve"
    );
    p.advance(100);
    assert_eq!(p.get("/h/sie").await.0, 502, "past the error window");
}

#[tokio::test]
async fn no_store_and_private_are_served_but_never_stored() {
    let p = start().await;
    p.answer("ns", &["no-store"], None);
    p.answer("pr", &["private, max-age=600"], None);
    for id in ["ns", "pr"] {
        // On the route with its own stale_if_error: not even a last good copy is kept.
        for _ in 0..3 {
            assert_eq!(p.get(&format!("/hs/{id}")).await, (200, "MISS".into()));
        }
        assert_eq!(p.calls(id), 3, "{id}: every read asks the upstream");
    }
    p.upstream.down.store(true, Ordering::SeqCst);
    assert_eq!(p.get("/hs/ns").await.0, 502);
    assert_eq!(p.get("/hs/pr").await.0, 502);
    // The default (ignore) route caches the same answers.
    p.upstream.down.store(false, Ordering::SeqCst);
    assert_eq!(p.get("/off/ns").await, (200, "MISS".into()));
    assert_eq!(p.get("/off/ns").await, (200, "HIT".into()));
}

#[tokio::test]
async fn no_cache_is_stored_for_errors_but_always_asked_again() {
    let p = start().await;
    p.answer("nc", &["no-cache, stale-if-error=600"], None);
    assert_eq!(p.get("/h/nc").await, (200, "MISS".into()));
    assert_eq!(p.get("/h/nc").await, (200, "MISS".into()));
    assert_eq!(
        p.calls("nc"),
        2,
        "never served from the cache while the upstream answers"
    );
    p.upstream.down.store(true, Ordering::SeqCst);
    assert_eq!(p.get("/h/nc").await, (200, "STALE-IF-ERROR".into()));
}

#[tokio::test]
async fn a_refresh_answered_with_no_store_drops_the_stale_copy() {
    let (logs, _guard) = Logs::capture();
    let p = start().await;
    p.answer("flip", &["max-age=10, stale-while-revalidate=100"], None);
    assert_eq!(p.get("/h/flip").await, (200, "MISS".into()));
    // The upstream now forbids keeping the answer: the refresh drops the stale copy, so the
    // next read asks the upstream instead of being served it again.
    p.answer("flip", &["no-store"], None);
    p.advance(11);
    assert_eq!(p.get("/h/flip").await, (200, "STALE".into()));
    eventually(
        "the refresh's end is logged",
        Duration::from_secs(10),
        || {
            let text = logs.text();
            text.contains("refreshed") || text.contains("refresh failed")
        },
    )
    .await;
    let text = logs.text();
    assert!(!text.contains("refresh failed"), "{text}");
    assert!(text.contains("the stale entry was removed"), "{text}");
    assert_eq!(p.calls("flip"), 2);
    assert_eq!(p.get("/h/flip").await, (200, "MISS".into()));
    assert_eq!(p.get("/h/flip").await, (200, "MISS".into()));
    assert_eq!(p.calls("flip"), 4, "no-store: every read asks the upstream");
}
