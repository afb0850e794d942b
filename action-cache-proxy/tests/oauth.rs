//! OAuth 2.0 client-credentials upstream auth over real HTTP, with a real Redis: a local token
//! endpoint counts its token requests, and a local upstream accepts only the tokens it issued
//! (and not yet expired or revoked).
//!
//! - concurrent calls share one token request;
//! - a token is replaced `refresh_before` its expiry, before the upstream would refuse it;
//! - a 401 from the upstream drops the token, and the call is retried once with a new one;
//! - a token endpoint that fails or refuses the credentials gives a clear 502, no upstream
//!   call, and the secret appears in no response and no log line.

mod support;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Logs, Running};
use tokio::time::Instant;

const CLIENT_ID: &str = "proxy-client";
const SECRET: &str = "oauth-s3cret-never-printed";

/// What the token endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Issue,
    Down,
    Reject,
}

struct State_ {
    token_requests: AtomicUsize,
    /// Token requests wait here while `hold` is set.
    gate: tokio::sync::Semaphore,
    hold: AtomicBool,
    mode: Mutex<Mode>,
    expires_in: AtomicU64,
    /// Issued tokens: number → valid until.
    issued: Mutex<Vec<Instant>>,
    /// Tokens numbered up to this are refused with 401.
    revoked_up_to: AtomicU64,
    /// Every token is refused with 401.
    refuse_all: AtomicBool,
    /// Upstream calls: (account id, the token number sent, or 0).
    calls: Mutex<Vec<(String, u64)>>,
}

type Shared = Arc<State_>;

async fn token(State(s): State<Shared>, request: Request) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    if s.hold.load(Ordering::SeqCst) {
        s.gate.acquire().await.unwrap().forget();
    }
    let basic = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(request.into_body(), 4096)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mode = *s.mode.lock().unwrap();
    if mode == Mode::Down {
        return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
    }
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"))
    );
    let form_ok =
        body.contains("grant_type=client_credentials") && body.contains("scope=accounts.read");
    if mode == Mode::Reject || basic != expected || !form_ok {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        )
            .into_response();
    }
    let lifetime = s.expires_in.load(Ordering::SeqCst);
    let n = {
        let mut issued = s.issued.lock().unwrap();
        issued.push(Instant::now() + Duration::from_secs(lifetime));
        issued.len()
    };
    (
        [("content-type", "application/json")],
        format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":{lifetime}}}"#),
    )
        .into_response()
}

async fn account(State(s): State<Shared>, request: Request) -> Response {
    let id = request.uri().path().rsplit('/').next().unwrap().to_owned();
    let n: u64 = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer tok-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    s.calls.lock().unwrap().push((id.clone(), n));
    let valid = n > 0
        && !s.refuse_all.load(Ordering::SeqCst)
        && n > s.revoked_up_to.load(Ordering::SeqCst)
        && s.issued
            .lock()
            .unwrap()
            .get(n as usize - 1)
            .is_some_and(|until| Instant::now() < *until);
    if !valid {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_token"}"#).into_response();
    }
    (
        [("content-type", "application/json")],
        format!(r#"{{"id":"{id}","token":{n}}}"#),
    )
        .into_response()
}

const CONFIG: &str = r#"
[upstreams.crm]
base_url = "${UPSTREAM}"
timeout = "5s"
auth = { type = "oauth2", token_url = "${TOKEN_URL}", client_id = "proxy-client", client_secret_env = "CRM_OAUTH_SECRET", scope = "accounts.read" }

[[routes]]
name = "account"
path = "/accounts/{id}"
upstream = "crm"
upstream_path = "/v1/accounts/{id}"
fresh = "5m"
jitter = 0.0
"#;

async fn start(token_url: Option<&str>) -> Running<Shared> {
    let state: Shared = Arc::new(State_ {
        token_requests: AtomicUsize::new(0),
        gate: tokio::sync::Semaphore::new(0),
        hold: AtomicBool::new(false),
        mode: Mutex::new(Mode::Issue),
        expires_in: AtomicU64::new(3600),
        issued: Mutex::new(Vec::new()),
        revoked_up_to: AtomicU64::new(0),
        refuse_all: AtomicBool::new(false),
        calls: Mutex::new(Vec::new()),
    });
    let fake = support::serve(
        Router::new()
            .route("/oauth2/token", post(token))
            .route("/api/v1/accounts/{id}", get(account))
            .with_state(state.clone()),
    )
    .await;
    let token_url = token_url
        .map(str::to_owned)
        .unwrap_or_else(|| format!("http://{}/oauth2/token", fake.addr));
    let upstream = format!("http://{}/api", fake.addr);
    let config = support::config_with(
        CONFIG,
        &[
            ("UPSTREAM", &upstream),
            ("TOKEN_URL", &token_url),
            ("CRM_OAUTH_SECRET", SECRET),
        ],
    );
    assert!(
        !format!("{config:?}").contains(SECRET),
        "the secret never prints"
    );
    support::start_fake(config, state, fake).await
}

/// What these tests read of the proxy and of their fake.
impl Running<Shared> {
    /// `GET path` → (status, Cache-Status, body).
    async fn get(&self, path: &str) -> (u16, String, String) {
        let r = self.raw(&format!("GET {path} HTTP/1.1"), b"").await;
        let cache_status = r.header("cache-status").unwrap_or_default().to_owned();
        (r.status, cache_status, r.text())
    }

    fn token_requests(&self) -> usize {
        self.upstream.token_requests.load(Ordering::SeqCst)
    }

    fn calls(&self) -> Vec<(String, u64)> {
        self.upstream.calls.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn concurrent_calls_share_one_token_request() {
    let p = Arc::new(start(None).await);
    p.upstream.hold.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.get(&format!("/accounts/a{i}")).await
        }));
    }
    // All eight are inside the upstream's bulkhead, waiting for the one token request.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health: serde_json::Value = serde_json::from_str(&p.get("/healthz").await.2).unwrap();
        if health["upstreams"]["crm"]["in_flight"] == 8 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(p.token_requests(), 1);
    p.upstream.gate.add_permits(100);
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(p.token_requests(), 1, "one token request for eight calls");
    let calls = p.calls();
    assert_eq!(calls.len(), 8);
    assert!(calls.iter().all(|(_, n)| *n == 1), "{calls:?}");
}

#[tokio::test]
async fn a_token_is_replaced_before_it_expires() {
    let p = start(None).await;
    p.upstream.expires_in.store(120, Ordering::SeqCst);
    assert_eq!(p.get("/accounts/a").await.0, 200);
    assert_eq!(p.get("/accounts/b").await.0, 200);
    assert_eq!(p.token_requests(), 1, "the token is cached");
    // 61 s later the token still has 59 s to live, but it is inside the 60 s margin. Nothing
    // is in flight, so the tokio clock can jump.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::resume();
    let (status, _, body) = p.get("/accounts/c").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        p.token_requests(),
        2,
        "a new token before the old one expired"
    );
    assert_eq!(
        p.calls(),
        vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 2)],
        "no call was refused: the old token was never sent once it was due"
    );
}

#[tokio::test]
async fn a_401_drops_the_token_and_retries_once() {
    let p = start(None).await;
    assert_eq!(p.get("/accounts/a").await.0, 200);
    // The upstream revokes token 1 (a key rotation, say).
    p.upstream.revoked_up_to.store(1, Ordering::SeqCst);
    let (status, cache_status, body) = p.get("/accounts/b").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""token":2"#), "{body}");
    assert!(cache_status.contains("stored"), "{cache_status}");
    assert_eq!(p.token_requests(), 2);
    assert_eq!(
        p.calls(),
        vec![("a".into(), 1), ("b".into(), 1), ("b".into(), 2)]
    );
    // An upstream that refuses every token: one refresh and one retry, then its 401 is passed
    // on and not cached.
    p.upstream.refuse_all.store(true, Ordering::SeqCst);
    let (status, _, _) = p.get("/accounts/c").await;
    assert_eq!(status, 401);
    assert_eq!(p.token_requests(), 3);
    let c: Vec<_> = p.calls().into_iter().filter(|(id, _)| id == "c").collect();
    assert_eq!(
        c,
        vec![("c".into(), 2), ("c".into(), 3)],
        "retried once only"
    );
    p.upstream.refuse_all.store(false, Ordering::SeqCst);
    assert_eq!(p.get("/accounts/c").await.0, 200, "the 401 was not cached");
}

#[tokio::test]
async fn a_failing_token_endpoint_is_a_clear_502_without_the_secret() {
    let (logs, _guard) = Logs::capture();
    let p = start(None).await;
    *p.upstream.mode.lock().unwrap() = Mode::Down;
    let (status, cache_status, body) = p.get("/accounts/a").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("no access token for the upstream")
            && body.contains("token endpoint")
            && body.contains("503"),
        "{body}"
    );
    assert!(
        cache_status.contains("detail=upstream-auth"),
        "{cache_status}"
    );
    // Credentials refused: the OAuth error code is named, with the client id.
    *p.upstream.mode.lock().unwrap() = Mode::Reject;
    let (status, _, body) = p.get("/accounts/a").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("invalid_client") && body.contains(CLIENT_ID),
        "{body}"
    );
    assert_eq!(p.token_requests(), 2, "a failed refresh is not cached");
    assert!(p.calls().is_empty(), "no upstream call without a token");
    // Back up: the next call gets a token and its answer.
    *p.upstream.mode.lock().unwrap() = Mode::Issue;
    assert_eq!(p.get("/accounts/a").await.0, 200);
    let logs = logs.text();
    assert!(
        logs.contains("no access token"),
        "the failures are logged: {logs}"
    );
    assert!(!logs.contains(SECRET), "{logs}");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));
    assert!(!logs.contains(&basic), "{logs}");
    assert!(
        !logs.contains("tok-1"),
        "tokens are not logged either: {logs}"
    );
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_a_502() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", closed.local_addr().unwrap());
    drop(closed);
    let p = start(Some(&url)).await;
    let (status, _, body) = p.get("/accounts/a").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("could not be reached"), "{body}");
    assert!(!body.contains(SECRET));
    assert!(p.calls().is_empty());
}
