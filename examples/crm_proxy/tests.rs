//! `examples/crm_proxy` (its configuration, served by `action-cache-proxy`) driven over real
//! HTTP, on a real Redis, against its built-in fake CRM (which counts the calls that reach it).
//! Time is a manual clock, so windows are exact.

use super::fake_crm::FakeCrm;
use super::settings::{config, Settings};
use action_cache::{Cache, ManualClock};
use action_cache_proxy::Proxy;
use action_cache_testing::{eventually, free_port, RedisServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "test-webhook-secret";

/// The `X-Signature-256` value the CRM sends for `body` (body-only form).
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Running {
    base: String,
    http: reqwest::Client,
    crm: FakeCrm,
    clock: ManualClock,
    _redis: RedisServer,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start() -> Running {
    let redis = RedisServer::start();
    let url = redis.url();
    start_on(redis, &url).await
}

/// The proxy with its cache on `redis_url` (which may point elsewhere than `redis`).
async fn start_on(redis: RedisServer, redis_url: &str) -> Running {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .redis_url(redis_url)
        // Generous: under load a timed-out read fails open into a miss; these tests count.
        .op_timeout(Duration::from_secs(2))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let crm = FakeCrm::start(Duration::from_millis(5)).await.unwrap();
    let config = config(&Settings {
        listen_addr: "127.0.0.1:0".into(),
        crm_base_url: crm.base_url(),
        crm_timeout: Duration::from_secs(5),
        redis_url: Some(redis_url.to_owned()),
        webhook_secret: Some(SECRET.into()),
    })
    .unwrap();
    let proxy = Proxy::builder(config)
        .cache(cache)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let app = proxy.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Running {
        base,
        http: reqwest::Client::new(),
        crm,
        clock,
        _redis: redis,
        server,
    }
}

impl Running {
    /// `GET /accounts/{id}`: status, `X-Cache`, body.
    async fn account(&self, id: &str) -> (StatusCode, String, Value) {
        let response = self
            .http
            .get(format!("{}/accounts/{id}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let cache = response
            .headers()
            .get("x-cache")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, cache, response.json().await.unwrap())
    }

    /// `POST /webhooks/crm` with `signature` as `X-Signature-256` (none when `None`).
    async fn purge(&self, body: &[u8], signature: Option<String>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/webhooks/crm", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("x-signature-256", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

#[tokio::test]
async fn second_read_is_a_hit_and_the_crm_is_called_once() {
    let proxy = start().await;
    let (status, cache, body) = proxy.account("42").await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "MISS"));
    assert_eq!(body["id"], "42");
    let (status, cache, again) = proxy.account("42").await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "HIT"));
    assert_eq!(again, body);
    assert_eq!(proxy.crm.calls(), 1);
}

#[tokio::test]
async fn a_stale_read_is_served_at_once_and_refreshed_once_in_the_background() {
    let proxy = start().await;
    proxy.account("42").await;
    // Past the fresh window (300 s, up to 10 % jitter), inside the stale one (900 s).
    proxy.clock.advance(Duration::from_secs(400));
    let (status, cache, _) = proxy.account("42").await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "STALE"));
    eventually(
        "the background refresh reaches the CRM",
        Duration::from_secs(10),
        || proxy.crm.calls() == 2,
    )
    .await;
    // The refreshed copy is served as a hit once stored; no further CRM calls.
    let mut cache = String::new();
    for _ in 0..500 {
        cache = proxy.account("42").await.1;
        if cache == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cache, "HIT");
    assert_eq!(proxy.crm.calls(), 2);
}

#[tokio::test]
async fn a_signed_purge_sends_the_next_read_to_the_crm() {
    let proxy = start().await;
    proxy.account("42").await;
    proxy.account("7").await;
    let body = br#"{"account_id":"42"}"#;
    let (status, answer) = proxy.purge(body, Some(sign(SECRET, body))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["purged"], 1);

    assert_eq!(proxy.account("42").await.1, "MISS");
    assert_eq!(
        proxy.account("7").await.1,
        "HIT",
        "other accounts stay cached"
    );
    assert_eq!(proxy.crm.calls(), 3);

    let body = br#"{"tags":["account:7","account:42"]}"#;
    let (status, answer) = proxy.purge(body, Some(sign(SECRET, body))).await;
    assert_eq!(
        (status, answer["purged"].clone()),
        (StatusCode::OK, json!(2))
    );
    assert_eq!(proxy.account("7").await.1, "MISS");
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_purges_are_refused_and_purge_nothing() {
    let proxy = start().await;
    proxy.account("42").await;
    let body = br#"{"account_id":"42"}"#;
    let tampered = sign(SECRET, br#"{"account_id":"43"}"#);
    let attempts = [
        None,
        Some(sign("not-the-secret", body)),
        Some(tampered),
        Some("sha256=".to_owned()),
        Some("sha256=zz".to_owned()),
        Some(sign(SECRET, body).replace("sha256=", "sha1=")),
    ];
    for signature in attempts {
        let (status, answer) = proxy.purge(body, signature.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{signature:?}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(proxy.account("42").await.1, "HIT", "nothing was purged");
    assert_eq!(proxy.crm.calls(), 1);
}

#[tokio::test]
async fn malformed_and_oversized_purges_are_rejected() {
    let proxy = start().await;
    for body in [
        &b"not json"[..],
        br#"{}"#,
        br#"{"account_id":""}"#,
        br#"{"tags":[]}"#,
        br#"{"account_id":"1","tags":["a"]}"#,
        br#"{"account":"1"}"#,
    ] {
        let (status, _) = proxy.purge(body, Some(sign(SECRET, body))).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let huge = format!(r#"{{"tags":["{}"]}}"#, "x".repeat(100 * 1024));
    let (status, _) = proxy
        .purge(huge.as_bytes(), Some(sign(SECRET, huge.as_bytes())))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn crm_down_serves_the_last_good_copy_or_502() {
    let proxy = start().await;
    let (_, _, good) = proxy.account("42").await;
    proxy.crm.set_down(true);
    // Past the stale window (900 s + up to 10 % jitter): the served entry is gone.
    proxy.clock.advance(Duration::from_secs(1000));

    let response = proxy
        .http
        .get(format!("{}/accounts/42", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-cache"], "STALE-IF-ERROR");
    assert_eq!(response.headers()["age"], "1000");
    assert!(response.headers().contains_key("warning"));
    assert_eq!(response.json::<Value>().await.unwrap(), good);
    assert_eq!(proxy.crm.calls(), 2, "the CRM was asked first");

    let (status, cache, body) = proxy.account("never-seen").await;
    assert_eq!((status, cache.as_str()), (StatusCode::BAD_GATEWAY, "ERROR"));
    assert!(body["error"].as_str().unwrap().contains("503"), "{body}");

    // Back up: the next read is a plain miss again.
    proxy.crm.set_down(false);
    assert_eq!(proxy.account("42").await.1, "MISS");
}

#[tokio::test]
async fn health_and_metrics() {
    let proxy = start().await;
    proxy.account("42").await;
    proxy.account("42").await;
    let (status, health) = proxy.get_text("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&health).unwrap()["store"]["status"],
        "up"
    );

    let (status, metrics) = proxy.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "action_cache_fresh_hits_total 1",
        "action_cache_misses_total 1",
        "action_cache_refreshes_started_total 0",
        "proxy_responses_total{route=\"account\",cache=\"HIT\"} 1",
        "proxy_responses_total{route=\"account\",cache=\"MISS\"} 1",
        "proxy_request_duration_seconds_count{route=\"account\"} 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn with_redis_unreachable_it_is_healthy_and_serves_fail_open() {
    let redis = RedisServer::start();
    let proxy = start_on(redis, &format!("redis://127.0.0.1:{}", free_port())).await;
    let (status, health) = proxy.get_text("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["store"]["status"], "unreachable", "{health}");
    assert_eq!(
        proxy.get_text("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let (status, _, body) = proxy.account("42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "42");
    let (status, _, _) = proxy.account("42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        proxy.crm.calls(),
        2,
        "nothing cached: every read reaches the CRM"
    );
}

#[tokio::test]
async fn its_settings_are_checked_by_the_proxy_configuration() {
    let base = Settings {
        listen_addr: "127.0.0.1:0".into(),
        crm_base_url: "http://127.0.0.1:1".into(),
        crm_timeout: Duration::from_secs(5),
        redis_url: None,
        webhook_secret: None,
    };
    assert!(config(&base).unwrap().webhook.is_none());
    let slow = Settings {
        crm_timeout: Duration::from_secs(60),
        ..base.clone()
    };
    assert!(config(&slow).unwrap_err().contains("60 s"));
    let bad = Settings {
        crm_base_url: "ftp://crm".into(),
        ..base
    };
    assert!(config(&bad).unwrap_err().contains("not an http(s) URL"));
}
