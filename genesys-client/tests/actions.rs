//! The data-action endpoints against the fake.

use genesys_client::fake::FakeGenesys;
use genesys_client::{ActionTestResult, SortOrder};
use genesys_client::{ExecuteOptions, GetActionOptions, ListActionsQuery, StatusCode};
use serde::Deserialize;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn list_returns_the_entity_listing() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let page = client.list_actions(&ListActionsQuery::new()).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let listing = page.body();
    assert_eq!(listing.entities.len(), 25);
    assert_eq!(listing.page_size, Some(25));
    assert_eq!(listing.page_number, Some(1));
    assert_eq!(listing.total, Some(fake.actions().len() as u64));
    assert_eq!(listing.page_count, Some(2));
    assert_eq!(
        listing.next_uri.as_deref(),
        Some("/api/v2/integrations/actions?pageSize=25&pageNumber=2")
    );
    assert!(listing
        .entities
        .iter()
        .all(|a| a.config.is_none() && a.contract.is_none()));

    let last = client
        .list_actions(&ListActionsQuery::new().page_number(2))
        .await
        .unwrap()
        .into_body();
    assert_eq!(last.entities.len(), fake.actions().len() - 25);
    assert_eq!(last.next_uri, None);
}

#[tokio::test(start_paused = true)]
async fn list_filters_sort_and_match_name_prefixes() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let names = |listing: genesys_client::EntityListing<genesys_client::Action>| -> Vec<String> {
        listing
            .entities
            .into_iter()
            .filter_map(|a| a.name)
            .collect()
    };
    let crm = client
        .list_actions(
            &ListActionsQuery::new()
                .name("crm.")
                .sort_by("name")
                .sort_order(SortOrder::Descending),
        )
        .await
        .unwrap()
        .into_body();
    assert_eq!(
        names(crm),
        [
            "crm.order_lookup.v2",
            "crm.order_lookup.v1",
            "crm.customer_lookup",
            "crm.contact_search",
            "crm.case_update",
            "crm.case_create"
        ]
    );
    // The name filter is a prefix match: "order_lookup" only finds names that start with it.
    let prefix = client
        .list_actions(&ListActionsQuery::new().name("order_lookup"))
        .await
        .unwrap()
        .into_body();
    assert_eq!(names(prefix), ["Order_Lookup - Legacy SOAP"]);
    let secure = client
        .list_actions(&ListActionsQuery::new().secure(true).category("Billing"))
        .await
        .unwrap()
        .into_body();
    assert_eq!(secure.total, Some(2));
}

#[tokio::test(start_paused = true)]
async fn get_includes_contract_and_config_only_when_asked() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let id = &fake.actions()[1].id;
    let plain = client
        .get_action(id, &GetActionOptions::default())
        .await
        .unwrap()
        .into_body();
    assert_eq!(plain.name.as_deref(), Some("crm.order_lookup.v1"));
    assert!(plain.contract.is_none() && plain.config.is_none());
    let full = client
        .get_action(id, &GetActionOptions::full())
        .await
        .unwrap()
        .into_body();
    assert_eq!(&full, &fake.actions()[1]);
    let schema = full.contract.unwrap().input.unwrap().input_schema.unwrap();
    assert_eq!(schema["required"], json!(["orderId"]));
}

#[tokio::test(start_paused = true)]
async fn execute_returns_the_order_record() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let id = &fake.actions()[1].id;
    let output = client
        .execute_action(
            id,
            &json!({"orderId": "A-1001"}),
            &ExecuteOptions::default(),
        )
        .await
        .unwrap();
    assert!(output.correlation_id().is_some());
    let order = output.into_body();
    assert_eq!(order["orderId"], "A-1001");
    assert_eq!(order["status"], "SHIPPED");
    assert_eq!(order["customer"]["name"], "Ada Lovelace");

    let flat = client
        .execute_action(
            id,
            &json!({"orderId": "A-1001"}),
            &ExecuteOptions::flattened(),
        )
        .await
        .unwrap()
        .into_body();
    assert_eq!(flat["customer.name"], "Ada Lovelace");

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Order {
        order_id: String,
        total: f64,
    }
    let typed = client
        .execute_action_as::<_, Order>(
            id,
            &json!({"orderId": "A-1002"}),
            &ExecuteOptions::default(),
        )
        .await
        .unwrap()
        .into_body();
    assert_eq!(typed.order_id, "A-1002");
    assert!((typed.total - 42.5).abs() < f64::EPSILON);
    assert_eq!(
        fake.api_requests(&format!("/api/v2/integrations/actions/{id}/execute")),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn test_reports_each_step() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let id = &fake.actions()[1].id;
    let ok: ActionTestResult = client
        .test_action(id, &json!({"orderId": "B-2001"}))
        .await
        .unwrap()
        .into_body();
    assert_eq!(ok.success, Some(true));
    assert_eq!(ok.operations.as_ref().map(Vec::len), Some(3));
    assert_eq!(ok.final_result.unwrap()["status"], "DELIVERED");
    let failed = client
        .test_action(id, &json!({"orderId": "nope"}))
        .await
        .unwrap()
        .into_body();
    assert_eq!(failed.success, Some(false));
    assert_eq!(
        failed.error.unwrap().error_code.as_deref(),
        Some("ACTION.REMOTE_ENDPOINT")
    );
}

#[tokio::test(start_paused = true)]
async fn ids_are_percent_encoded_in_paths() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let err = client
        .get_action("a/../b", &GetActionOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(
        fake.api_requests("/api/v2/integrations/actions/a%2F..%2Fb"),
        1
    );
}
