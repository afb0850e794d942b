//! The fake's routes: the token endpoint and the data-action endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::faults::{platform_error, Fault};
use super::state::Shared;
use crate::actions::Action;

const ACTIONS_ROUTE: &str = "/api/v2/integrations/actions";
const CONTACTS_SCAN_ROUTE: &str = "/api/v2/externalcontacts/scan/contacts";
/// The scan's page size when the request sets no `limit`, and the largest it serves.
const CONTACTS_DEFAULT_LIMIT: usize = 10;
const CONTACTS_MAX_LIMIT: usize = 200;

/// Every route of the fake, on `shared`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route(ACTIONS_ROUTE, get(list_actions))
        .route("/api/v2/integrations/actions/{id}", get(get_action))
        .route(
            "/api/v2/integrations/actions/{id}/execute",
            post(execute_action),
        )
        .route("/api/v2/integrations/actions/{id}/test", post(test_action))
        .route(CONTACTS_SCAN_ROUTE, get(scan_contacts))
        .fallback(not_found)
        .with_state(shared)
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = {
        let mut state = shared.lock();
        state.token_requests += 1;
        state.token_faults.pop_front()
    };
    if let Some(fault) = fault {
        if let Fault::Delay(wait) = fault {
            tokio::time::sleep(wait).await;
        } else if let Some(response) = shared.fault(&fault) {
            return response;
        }
    }
    let oauth_error = |status: u16, error: &str, description: &str| {
        shared.json(
            status,
            &json!({"error": error, "description": description, "error_description": description}),
        )
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let authorized = basic
        .as_deref()
        .and_then(|b| b.split_once(':'))
        .is_some_and(|(id, secret)| {
            id == shared.client_id && secret == shared.client_secret.expose()
        });
    if !authorized {
        return oauth_error(401, "invalid_client", "client not found");
    }
    let form_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let grant = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.into_owned());
    if !form_ok || grant.as_deref() != Some("client_credentials") {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant type must be client_credentials",
        );
    }
    let token = {
        let mut state = shared.lock();
        state.next_id += 1;
        let token = format!(
            "fake-token-{:016x}{:04}",
            rand::random::<u64>(),
            state.next_id
        );
        state
            .tokens
            .insert(token.clone(), Instant::now() + shared.token_lifetime);
        token
    };
    shared.json(
        200,
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": shared.token_lifetime.as_secs(),
        }),
    )
}

fn listing_action(action: &Action) -> Action {
    let mut action = action.clone();
    action.config = None;
    action.contract = None;
    action
}

async fn list_actions(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    shared.work().await;
    let number = |key: &str, default: u32| match query.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(key.to_owned()),
    };
    let (page_size, page_number) = match (number("pageSize", 25), number("pageNumber", 1)) {
        (Ok(size), Ok(page)) => (size.min(shared.max_page_size), page),
        (Err(key), _) | (_, Err(key)) => {
            return shared.error(
                400,
                "bad.request",
                &format!("The value for {key} is invalid"),
            )
        }
    };
    shared.lock().requested_pages.push(page_number);
    let mut matching: Vec<&Action> = shared
        .actions
        .iter()
        .filter(|a| {
            query
                .get("category")
                .is_none_or(|c| a.category.as_deref() == Some(c.as_str()))
        })
        .filter(|a| {
            query.get("name").is_none_or(|prefix| {
                a.name
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase().starts_with(&prefix.to_lowercase()))
            })
        })
        .filter(|a| {
            query
                .get("secure")
                .is_none_or(|s| a.secure.unwrap_or(false).to_string() == s.to_lowercase())
        })
        .collect();
    let descending = match query.get("sortOrder").map(|s| s.to_uppercase()) {
        None => false,
        Some(order) if order == "ASC" => false,
        Some(order) if order == "DESC" => true,
        Some(_) => return shared.error(400, "bad.request", "The value for sortOrder is invalid"),
    };
    if let Some(field) = query.get("sortBy") {
        let key = |a: &Action| -> String {
            match field.as_str() {
                "name" => a.name.clone().unwrap_or_default().to_lowercase(),
                "category" => a.category.clone().unwrap_or_default().to_lowercase(),
                _ => a.id.clone(),
            }
        };
        matching.sort_by_key(|a| key(a));
        if descending {
            matching.reverse();
        }
    }
    let total = matching.len() as u64;
    let page_count = u32::try_from(total.div_ceil(u64::from(page_size))).unwrap_or(u32::MAX);
    let start =
        usize::try_from(u64::from(page_number - 1) * u64::from(page_size)).unwrap_or(usize::MAX);
    let entities: Vec<Action> = matching
        .iter()
        .skip(start)
        .take(page_size as usize)
        .map(|a| listing_action(a))
        .collect();
    let filters: String = [
        "sortBy",
        "sortOrder",
        "category",
        "name",
        "secure",
        "includeAuthActions",
    ]
    .iter()
    .filter_map(|k| query.get(*k).map(|v| (k, v)))
    .map(|(k, v)| {
        format!(
            "&{k}={}",
            url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
        )
    })
    .collect();
    let page_uri = |n: u32| format!("{ACTIONS_ROUTE}?pageSize={page_size}&pageNumber={n}{filters}");
    let mut body = json!({
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": page_count,
        "firstUri": page_uri(1),
        "selfUri": page_uri(page_number),
        "lastUri": page_uri(page_count.max(1)),
    });
    if page_number < page_count {
        body["nextUri"] = json!(page_uri(page_number + 1));
    }
    if page_number > 1 {
        body["previousUri"] = json!(page_uri(page_number - 1));
    }
    shared.json(200, &body)
}

async fn get_action(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    shared.work().await;
    let Some(action) = shared.find(&id) else {
        return shared.error(404, "not.found", &format!("Action {id} not found"));
    };
    let mut action = action.clone();
    if query.get("expand").map(String::as_str) != Some("contract") {
        action.contract = None;
    }
    if query.get("includeConfig").map(String::as_str) != Some("true") {
        action.config = None;
    }
    shared.json(200, &json!(action))
}

/// Runs an action on `input`: the output, or the status and data-action error body.
fn run_action(shared: &Shared, input: &Value) -> Result<Value, (u16, Value)> {
    let Some(object) = input.as_object() else {
        return Err((
            400,
            platform_error(400, "bad.request", "The request body must be a JSON object"),
        ));
    };
    let Some(order_id) = object.get("orderId") else {
        return Ok(json!({"received": input, "status": "OK"}));
    };
    let Some(order_id) = order_id.as_str() else {
        return Err((
            400,
            platform_error(400, "bad.request", "Input orderId must be a string"),
        ));
    };
    match shared.orders.get(order_id) {
        Some(order) => Ok(order.clone()),
        None => {
            let mut body = platform_error(
                400,
                "bad.request",
                &format!(
                    "REST call for action execute failed. Message: Request to backend service \
                     failed. Response from web service: {{\"error\":\"order {order_id} not found\"}} \
                     [404 Not Found]"
                ),
            );
            body["details"] = json!([{"errorCode": "ACTION.REMOTE_ENDPOINT", "fieldName": "", "entityId": "", "entityName": ""}]);
            body["errorCode"] = json!("ACTION.REMOTE_ENDPOINT");
            body["userMessage"] = json!(format!("The order {order_id} was not found."));
            Err((400, body))
        }
    }
}

fn flatten_into(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(&key, value, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

async fn execute_action(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    if shared.find(&id).is_none() {
        return shared.error(404, "not.found", &format!("Action {id} not found"));
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return shared.error(400, "bad.request", "The request body is not valid JSON");
    };
    let running = match shared.begin_execution() {
        Ok(running) => running,
        Err(refused) => return *refused,
    };
    shared.work().await;
    let outcome = run_action(&shared, &input);
    drop(running);
    match outcome {
        Ok(output) => {
            let output = if query.get("flatten").map(String::as_str) == Some("true") {
                let mut flat = Map::new();
                flatten_into("", &output, &mut flat);
                Value::Object(flat)
            } else {
                output
            };
            shared.json(200, &output)
        }
        Err((status, mut error)) => {
            let correlation_id = format!("action-{id}");
            error["correlationId"] = json!(correlation_id);
            shared.json(status, &error)
        }
    }
}

async fn test_action(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    shared.work().await;
    if shared.find(&id).is_none() {
        return shared.error(404, "not.found", &format!("Action {id} not found"));
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return shared.error(400, "bad.request", "The request body is not valid JSON");
    };
    let result = match run_action(&shared, &input) {
        Ok(output) => json!({
            "operations": [
                {"step": 1, "name": "Resolve request configuration templates", "success": true, "result": input},
                {"step": 2, "name": "Execute request", "success": true, "result": output},
                {"step": 3, "name": "Resolve translation map", "success": true, "result": output},
            ],
            "finalResult": output,
            "success": true,
        }),
        Err((_, error)) => json!({
            "operations": [
                {"step": 1, "name": "Resolve request configuration templates", "success": true, "result": input},
                {"step": 2, "name": "Execute request", "success": false},
            ],
            "error": error,
            "success": false,
        }),
    };
    shared.json(200, &result)
}

/// `GET /api/v2/externalcontacts/scan/contacts?limit=&cursor=`: a `CursorContactListing`, whose
/// only way to the next page is `nextUri` (no `cursor` field in the body), as Genesys's SDK
/// models describe it: `entities`, `nextUri`, `selfUri`, `previousUri`.
async fn scan_contacts(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(response) = shared.api_prelude(&uri, &headers).await {
        return response;
    }
    shared.work().await;
    let limit = match query.get("limit") {
        None => CONTACTS_DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=CONTACTS_MAX_LIMIT).contains(&n) => n,
            _ => {
                return shared.error(
                    400,
                    "bad.request",
                    &format!("The value for limit must be between 1 and {CONTACTS_MAX_LIMIT}"),
                )
            }
        },
    };
    let salt = shared.lock().salt;
    let start = match query.get("cursor") {
        None => 0,
        Some(cursor) => match decode_cursor(cursor, salt) {
            Some(offset) if offset <= shared.contacts.len() => offset,
            _ => return shared.error(400, "bad.request", "The cursor is invalid or expired"),
        },
    };
    let end = (start + limit).min(shared.contacts.len());
    let page_uri = |offset: usize| {
        let mut uri = format!("{CONTACTS_SCAN_ROUTE}?limit={limit}");
        if offset > 0 {
            uri.push_str("&cursor=");
            uri.push_str(&encode_cursor(offset, salt));
        }
        uri
    };
    let mut body = json!({
        "entities": &shared.contacts[start..end],
        "selfUri": page_uri(start),
    });
    if end < shared.contacts.len() {
        body["nextUri"] = json!(page_uri(end));
    }
    if start > 0 {
        body["previousUri"] = json!(page_uri(start.saturating_sub(limit)));
    }
    shared.json(200, &body)
}

/// An opaque cursor for `offset`, valid for this server only.
fn encode_cursor(offset: usize, salt: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{salt:x}:{offset}"))
}

fn decode_cursor(cursor: &str, salt: u64) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (got_salt, offset) = text.split_once(':')?;
    (got_salt == format!("{salt:x}")).then_some(())?;
    offset.parse().ok()
}

async fn not_found(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    shared.error(
        404,
        "not.found",
        &format!("The requested resource {} was not found", uri.path()),
    )
}
