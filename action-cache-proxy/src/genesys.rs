//! Genesys Cloud Data Action definitions for the configured routes, in the JSON that a Web
//! Services Data Actions integration imports (the same shape Genesys exports as
//! `*.custom.json`: `integrationType` `custom-rest-actions`, `actionType` `custom`,
//! `config.request` / `config.response`, `contract.input.inputSchema` and
//! `contract.output.successSchema` as JSON Schema draft-04).
//!
//! Each route becomes a `GET` of the proxy's public URL. Its input contract lists the path
//! parameters, key query parameters and key headers, all required strings (an absent value
//! would be a different cache entry). Values are URL-encoded in the request URL template with
//! `$esc.url(…)`. The output contract comes from the route's `sample_response` when it has one,
//! else it is an open object. The response passes through as `${rawResult}`.

use crate::config::{Config, RouteConfig};
use serde_json::{json, Map, Value};

const SCHEMA: &str = "http://json-schema.org/draft-04/schema#";

/// The Velocity-safe input name of a header (`x-tenant` becomes `x_tenant`).
fn input_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One action definition per route, with each route's file name (`<route>.custom.json`).
///
/// # Errors
///
/// When `public_url` is not an absolute `https://` URL (Genesys calls only HTTPS endpoints).
pub fn actions(config: &Config, public_url: &str) -> Result<Vec<(String, Value)>, String> {
    let base =
        url::Url::parse(public_url).map_err(|e| format!("--public-url `{public_url}`: {e}"))?;
    if base.scheme() != "https" || base.cannot_be_a_base() || base.query().is_some() {
        return Err(format!(
            "--public-url `{public_url}` must be an https:// URL without a query: Genesys Cloud calls only HTTPS endpoints"
        ));
    }
    let base = public_url.trim_end_matches('/');
    Ok(config
        .routes
        .iter()
        .map(|r| (format!("{}.custom.json", r.name), action(r, base)))
        .collect())
}

fn action(route: &RouteConfig, base: &str) -> Value {
    let mut url = base.to_owned();
    let mut properties = Map::new();
    let mut required = Vec::new();
    for segment in route.path.segments() {
        url.push('/');
        match segment {
            crate::template::Segment::Literal(text) => url.push_str(text),
            crate::template::Segment::Param(name) => {
                url.push_str(&format!("$esc.url(${{input.{name}}})"));
                properties.insert(
                    name.clone(),
                    json!({ "type": "string", "description": format!("Path parameter `{name}`.") }),
                );
                required.push(name.clone());
            }
        }
    }
    if route.path.segments().is_empty() {
        url.push('/');
    }
    for (i, q) in route.key_query.iter().enumerate() {
        let input = input_name(q);
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&format!("{q}=$esc.url(${{input.{input}}})"));
        properties.insert(
            input.clone(),
            json!({ "type": "string", "description": format!("Query parameter `{q}`.") }),
        );
        required.push(input);
    }
    let mut headers = Map::new();
    for h in &route.key_headers {
        let input = input_name(h.as_str());
        headers.insert(h.as_str().to_owned(), json!(format!("${{input.{input}}}")));
        properties.insert(
            input.clone(),
            json!({ "type": "string", "description": format!("Header `{h}`.") }),
        );
        required.push(input);
    }
    let output = match &route.sample_response {
        Some(sample) => {
            let mut schema = schema_of(sample);
            if let Value::Object(m) = &mut schema {
                m.insert("$schema".into(), json!(SCHEMA));
                m.insert("title".into(), json!(format!("{} response", route.name)));
            }
            schema
        }
        None => json!({
            "$schema": SCHEMA,
            "title": format!("{} response", route.name),
            "type": "object",
            "properties": {},
            "additionalProperties": true
        }),
    };
    let description = route.description.clone().unwrap_or_else(|| {
        format!(
            "GET {} through action-cache-proxy (cached: fresh {} s).",
            route.path,
            route.fresh.as_secs()
        )
    });
    json!({
        "name": route.name,
        "integrationType": "custom-rest-actions",
        "actionType": "custom",
        "config": {
            "request": {
                "requestUrlTemplate": url,
                "requestType": "GET",
                "headers": headers,
                "requestTemplate": "${input.rawRequest}"
            },
            "response": {
                "translationMap": {},
                "translationMapDefaults": {},
                "successTemplate": "${rawResult}"
            }
        },
        "contract": {
            "input": {
                "inputSchema": {
                    "$schema": SCHEMA,
                    "title": format!("{} request", route.name),
                    "description": description,
                    "type": "object",
                    "required": required,
                    "properties": properties,
                    "additionalProperties": true
                }
            },
            "output": { "successSchema": output }
        },
        "secure": false
    })
}

/// A JSON Schema (draft-04) describing `sample`'s shape.
fn schema_of(sample: &Value) -> Value {
    match sample {
        Value::Null => json!({}),
        Value::Bool(_) => json!({ "type": "boolean" }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "type": "integer" }),
        Value::Number(_) => json!({ "type": "number" }),
        Value::String(_) => json!({ "type": "string" }),
        Value::Array(items) => match items.first() {
            Some(first) => json!({ "type": "array", "items": schema_of(first) }),
            None => json!({ "type": "array", "items": {} }),
        },
        Value::Object(map) => {
            let properties: Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect();
            json!({ "type": "object", "properties": properties, "additionalProperties": true })
        }
    }
}
