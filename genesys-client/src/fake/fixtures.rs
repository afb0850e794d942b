//! The fake's default data: 29 data actions, four orders and 23 external contacts.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::actions::{Action, ActionConfig, ActionContract, RequestConfig, ResponseConfig};

const ACTIONS_ROUTE: &str = "/api/v2/integrations/actions";

/// The fake's default data actions: 29 actions in 12 categories, five of them order lookups
/// whose names contain `order_lookup` in different cases and positions, and a few near misses
/// (`orders.list_recent`, `order-lookup.deprecated`, `lookup_order.v0`).
pub fn default_actions() -> Vec<Action> {
    let specs: [(&str, &str, bool); 29] = [
        ("crm.customer_lookup", "CRM", false),
        ("crm.order_lookup.v1", "CRM", false),
        ("billing.balance_get", "Billing", false),
        ("Order_Lookup - Legacy SOAP", "Legacy", false),
        ("crm.case_create", "CRM", false),
        ("erp.invoice_fetch", "ERP", false),
        ("crm.order_lookup.v2", "CRM", false),
        ("billing.payment_create", "Billing", true),
        ("erp.stock_check", "ERP", false),
        ("orders.list_recent", "Shop", false),
        ("erp.order_lookup_by_email", "ERP", false),
        ("identity.verify_pin", "Identity", true),
        ("crm.case_update", "CRM", false),
        ("shop.returns.order_lookup", "Shop", false),
        ("erp.shipment_track", "ERP", false),
        ("order-lookup.deprecated", "Legacy", false),
        ("crm.contact_search", "CRM", false),
        ("billing.refund_create", "Billing", true),
        ("shop.cart_get", "Shop", false),
        ("lookup_order.v0", "Legacy", false),
        ("shop.coupon_validate", "Shop", false),
        ("sms.send", "Messaging", false),
        ("email.send", "Messaging", false),
        ("weather.current", "Web Services Data Actions", false),
        ("zendesk.ticket_create", "Zendesk", false),
        ("salesforce.account_get", "Salesforce", false),
        ("salesforce.opportunity_list", "Salesforce", false),
        ("servicenow.incident_create", "ServiceNow", false),
        ("servicenow.incident_get", "ServiceNow", false),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, (name, category, secure))| {
            let id = format!("custom_-_{:08x}-4a1c-4f0e-9b7d-{:012x}", 0x5e1f_0000 + i, i + 1);
            let integration = format!(
                "{:08x}-77c1-4e2b-8d0a-{:012x}",
                category.bytes().map(u32::from).sum::<u32>(),
                category.len()
            );
            let is_order_lookup = name.to_lowercase().contains("order_lookup");
            let (input_schema, url) = if is_order_lookup {
                (
                    json!({"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}}}),
                    "https://erp.example.com/api/orders/${input.orderId}",
                )
            } else {
                (
                    json!({"type": "object", "properties": {}}),
                    "https://backend.example.com/api/${input.resource}",
                )
            };
            Action::new(id.clone(), *name)
                .with_category(*category)
                .with_integration_id(integration)
                .with_secure(*secure)
                .with_version(1 + (i as u32 % 3))
                .with_self_uri(format!("{ACTIONS_ROUTE}/{id}"))
                .with_contract(ActionContract::new(
                    input_schema,
                    json!({"type": "object", "properties": {"orderId": {"type": "string"}, "status": {"type": "string"}}}),
                ))
                .with_config(ActionConfig {
                    request: Some(RequestConfig {
                        request_url_template: Some(url.to_owned()),
                        request_type: Some("GET".to_owned()),
                        headers: Some(BTreeMap::from([(
                            "Accept".to_owned(),
                            "application/json".to_owned(),
                        )])),
                        request_template: Some("${input.rawRequest}".to_owned()),
                    }),
                    response: Some(ResponseConfig {
                        translation_map: None,
                        translation_map_defaults: None,
                        success_template: Some("${rawResult}".to_owned()),
                    }),
                })
        })
        .collect()
}

/// The fake's default orders, looked up by `orderId`: `A-1001`, `A-1002`, `A-1003`, `B-2001`.
pub fn default_orders() -> BTreeMap<String, Value> {
    let order = |id: &str, status: &str, name: &str, email: &str, total: f64, items: Value| {
        (
            id.to_owned(),
            json!({
                "orderId": id,
                "status": status,
                "customer": {"name": name, "email": email},
                "total": total,
                "currency": "EUR",
                "items": items,
                "updatedAt": "2026-11-20T09:14:03Z",
            }),
        )
    };
    BTreeMap::from([
        order(
            "A-1001",
            "SHIPPED",
            "Ada Lovelace",
            "ada@example.com",
            129.95,
            json!([{"sku": "KB-101", "quantity": 1, "price": 99.95}, {"sku": "MS-7", "quantity": 1, "price": 30.0}]),
        ),
        order(
            "A-1002",
            "PROCESSING",
            "Grace Hopper",
            "grace@example.com",
            42.5,
            json!([{"sku": "CB-3", "quantity": 5, "price": 8.5}]),
        ),
        order(
            "A-1003",
            "CANCELLED",
            "Alan Turing",
            "alan@example.com",
            0.0,
            json!([]),
        ),
        order(
            "B-2001",
            "DELIVERED",
            "Katherine Johnson",
            "katherine@example.com",
            310.0,
            json!([{"sku": "MON-27", "quantity": 1, "price": 310.0}]),
        ),
    ])
}

/// The fake's default external contacts: 23 of them, so that the cursor-paged scan
/// (`GET /api/v2/externalcontacts/scan/contacts`) takes three pages at its default limit of 10.
pub fn default_contacts() -> Vec<Value> {
    const NAMES: [(&str, &str); 23] = [
        ("Ada", "Lovelace"),
        ("Grace", "Hopper"),
        ("Alan", "Turing"),
        ("Katherine", "Johnson"),
        ("Edsger", "Dijkstra"),
        ("Barbara", "Liskov"),
        ("Donald", "Knuth"),
        ("Frances", "Allen"),
        ("John", "Backus"),
        ("Margaret", "Hamilton"),
        ("Ken", "Thompson"),
        ("Radia", "Perlman"),
        ("Dennis", "Ritchie"),
        ("Hedy", "Lamarr"),
        ("Tony", "Hoare"),
        ("Shafi", "Goldwasser"),
        ("Leslie", "Lamport"),
        ("Annie", "Easley"),
        ("Niklaus", "Wirth"),
        ("Sophie", "Wilson"),
        ("Robin", "Milner"),
        ("Mary", "Kenneth Keller"),
        ("Butler", "Lampson"),
    ];
    NAMES
        .iter()
        .enumerate()
        .map(|(i, (first, last))| {
            let id = format!("0c0a{:04x}-5e7d-4c1b-9f2e-{:012x}", i + 1, i + 1);
            let email = format!(
                "{}.{}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace(' ', "-")
            );
            json!({
                "id": id,
                "firstName": first,
                "lastName": last,
                "workEmail": email,
                "type": "Curated",
                "selfUri": format!("/api/v2/externalcontacts/contacts/{id}"),
            })
        })
        .collect()
}
