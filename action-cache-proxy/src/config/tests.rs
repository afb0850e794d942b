use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "CRM_KEY" => Some("k3y".to_owned()),
        "HOOK_SECRET" => Some("s3cret".to_owned()),
        "CRM_HOST" => Some("127.0.0.1:9".to_owned()),
        _ => None,
    }
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"

[upstreams.crm]
base_url = "http://${CRM_HOST}/api"
timeout = "2s"
max_response_bytes = 4096
auth = { type = "header", name = "X-Api-Key", value_env = "CRM_KEY" }

[[routes]]
name = "account"
path = "/accounts/{id}"
upstream = "crm"
upstream_path = "/v1/accounts/{id}"
key_query = ["fields"]
key_headers = ["X-Tenant"]
fresh = 300
stale = "15m"
tags = ["account:{id}"]
stale_if_error = "24h"
negative = { statuses = [404], ttl = "30s" }

[[routes]]
name = "order_lines"
path = "/orders/{order_id}/lines"
upstream = "crm"
fresh = "30s"

[webhook]
secret = "${HOOK_SECRET}"
"#;

#[test]
fn a_multi_route_file_is_read_with_defaults_and_environment() {
    let c = Config::from_toml(GOOD, "proxy.toml", &env).unwrap();
    assert_eq!(c.routes.len(), 2);
    let a = c.route("account").unwrap();
    assert_eq!(a.fresh, Duration::from_secs(300));
    assert_eq!(a.stale, Duration::from_secs(900));
    assert_eq!(a.key_headers[0].as_str(), "x-tenant");
    assert_eq!(
        a.negative,
        Some(Negative {
            statuses: vec![404],
            ttl: Duration::from_secs(30)
        })
    );
    let lines = c.route("order_lines").unwrap();
    assert_eq!(lines.stale, lines.fresh, "stale defaults to fresh");
    assert_eq!(lines.upstream_path.as_str(), "/orders/{order_id}/lines");
    let crm = &c.upstreams["crm"];
    assert_eq!(crm.base_url.as_str(), "http://127.0.0.1:9/api");
    assert_eq!(crm.max_concurrency, 50);
    assert_eq!(
        crm.auth,
        Auth::Header {
            name: HeaderName::from_static("x-api-key"),
            value: Secret::new("k3y")
        }
    );
    let hook = c.webhook.unwrap();
    assert_eq!(hook.secret.expose(), "s3cret");
    assert_eq!(hook.scheme, SignatureScheme::Timestamped);
    assert_eq!(hook.tolerance, Duration::from_secs(300));
    assert!(
        !format!("{:?}", crm.auth).contains("k3y"),
        "secrets never print"
    );
}

#[test]
fn every_mistake_is_one_line_with_its_place() {
    let bad = r#"
[upstreams.crm]
base_url = "ftp://crm"
timeout = "90s"

[[routes]]
name = "account"
path = "/accounts/{id}"
upstream = "crm"
upstream_path = "/v1/{account}"
fresh = "10m"
stale = "1m"
jitter = 2.0
tags = ["account:{nope}"]

[[routes]]
name = "account"
path = "/accounts/{id}"
upstream = "erp"
fresh = "soon"
negative = { statuses = [503], ttl = "30s" }

[webhook]
secret = "literal-secret"
"#;
    let err = Config::from_toml(bad, "proxy.toml", &env).unwrap_err();
    let text = err.to_string();
    let expect = [
        ("proxy.toml:3:12:", "base_url"),
        ("proxy.toml:4:11:", "below Genesys's 60 s"),
        ("proxy.toml:10:17:", "`{account}`"),
        ("proxy.toml:12:9:", "stale (1m) is shorter than fresh (10m)"),
        ("proxy.toml:13:10:", "jitter 2"),
        ("proxy.toml:14:9:", "{nope}"),
        ("proxy.toml:17:8:", "name is used by another route"),
        ("proxy.toml:18:8:", "path is used by another route"),
        (
            "proxy.toml:19:12:",
            "upstream `erp` is not defined (defined: crm)",
        ),
        ("proxy.toml:20:9:", "`soon` is not a duration"),
        ("proxy.toml:21:26:", "503 is not a 4xx"),
        ("proxy.toml:24:10:", "secrets are not written in the file"),
    ];
    assert_eq!(err.problems.len(), expect.len(), "{text}");
    for ((place, words), line) in expect.iter().zip(text.lines()) {
        assert!(
            line.starts_with(place) && line.contains(words),
            "want {place} … {words}, got {line}\n{text}"
        );
    }
}

#[test]
fn syntax_errors_and_unknown_keys_name_their_place() {
    let err =
        Config::from_toml("[[routes]]\nname = \"a\"\nfrsh = 3\n", "p.toml", &env).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].place.starts_with("p.toml:3:"), "{err}");
    assert!(err.problems[0].message.contains("frsh"), "{err}");
    let err = Config::from_toml("[server\n", "p.toml", &env).unwrap_err();
    assert!(err.problems[0].place.starts_with("p.toml:1:"), "{err}");
}

#[test]
fn unset_variables_are_named() {
    let text = GOOD.replace("CRM_KEY", "NOT_SET_ANYWHERE");
    let err = Config::from_toml(&text, "proxy.toml", &env).unwrap_err();
    assert!(
        err.to_string().contains("NOT_SET_ANYWHERE is not set"),
        "{err}"
    );
}

#[test]
fn paths_that_would_match_the_same_requests_are_refused() {
    let text = format!(
        "{GOOD}\n[[routes]]\nname = \"other\"\npath = \"/accounts/{{account}}\"\nupstream = \"crm\"\nfresh = 1\n\n[[routes]]\nname = \"health\"\npath = \"/healthz\"\nupstream = \"crm\"\nfresh = 1\n"
    );
    let err = Config::from_toml(&text, "proxy.toml", &env).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 2, "{text}");
    assert!(
        text.contains("\"other\": path is used by another route"),
        "{text}"
    );
    assert!(text.contains("path /healthz is the proxy's own"), "{text}");
}

#[test]
fn oauth2_auth_is_read_and_its_mistakes_named() {
    let text = GOOD.replace(
        r#"auth = { type = "header", name = "X-Api-Key", value_env = "CRM_KEY" }"#,
        r#"auth = { type = "oauth2", token_url = "https://login.crm/oauth2/token", client_id = "proxy", client_secret_env = "CRM_KEY", scope = "accounts.read", refresh_before = "2m" }"#,
    );
    let c = Config::from_toml(&text, "proxy.toml", &env).unwrap();
    let Auth::OAuth2(o) = &c.upstreams["crm"].auth else {
        panic!("{:?}", c.upstreams["crm"].auth)
    };
    assert_eq!(o.token_url.as_str(), "https://login.crm/oauth2/token");
    assert_eq!(o.client_secret.expose(), "k3y");
    assert_eq!(o.scope.as_deref(), Some("accounts.read"));
    assert_eq!(o.refresh_before, Duration::from_secs(120));
    assert!(!o.secret_in_body);
    assert!(!format!("{o:?}").contains("k3y"), "secrets never print");

    let bad = GOOD.replace(
        r#"auth = { type = "header", name = "X-Api-Key", value_env = "CRM_KEY" }"#,
        r#"auth = { type = "oauth2", token_url = "ftp://x", client_id = "", client_secret = "literal", client_auth = "jwt" }"#,
    );
    let text = Config::from_toml(&bad, "proxy.toml", &env)
        .unwrap_err()
        .to_string();
    for words in [
        "auth.token_url",
        "auth.client_id",
        "secrets are not written in the file",
        "client_auth: `jwt`",
    ] {
        assert!(text.contains(words), "want {words}: {text}");
    }
    assert!(!text.contains("literal"), "{text}");
}

#[test]
fn cache_control_is_honour_or_ignore() {
    let on = GOOD.replace(
        "fresh = \"30s\"",
        "fresh = \"30s\"\ncache_control = \"honour\"",
    );
    let c = Config::from_toml(&on, "proxy.toml", &env).unwrap();
    assert!(c.route("order_lines").unwrap().honour_cache_control);
    assert!(
        !c.route("account").unwrap().honour_cache_control,
        "off by default"
    );
    let bad = GOOD.replace(
        "fresh = \"30s\"",
        "fresh = \"30s\"\ncache_control = \"obey\"",
    );
    let err = Config::from_toml(&bad, "proxy.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache_control `obey`"), "{err}");
}
