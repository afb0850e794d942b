//! Paging: walking every page by number and by cursor, and refusing to loop.

use std::sync::{Arc, Mutex};

use futures_util::future::ready;
use futures_util::StreamExt;
use genesys_client::fake::FakeGenesys;
use genesys_client::{Action, Error, ListActionsQuery, SortOrder};
use genesys_client::{CursorListing, EntityListing, Page, PageRequest, Paginator};

const ORDER_LOOKUPS: [&str; 5] = [
    "crm.order_lookup.v1",
    "crm.order_lookup.v2",
    "erp.order_lookup_by_email",
    "Order_Lookup - Legacy SOAP",
    "shop.returns.order_lookup",
];

async fn small_pages_fake(max_page_size: u32) -> FakeGenesys {
    FakeGenesys::builder()
        .max_page_size(max_page_size)
        .start()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_actions_stream_walks_every_page_by_number() {
    let fake = small_pages_fake(4).await;
    let client = fake.client_builder().build().unwrap();
    let all = client
        .actions(ListActionsQuery::new())
        .collect_all()
        .await
        .unwrap();
    let expected: Vec<&str> = fake.actions().iter().map(|a| a.id.as_str()).collect();
    let got: Vec<&str> = all.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(got, expected);
    assert_eq!(fake.requested_pages(), (1..=8).collect::<Vec<u32>>());
}

#[tokio::test(start_paused = true)]
async fn the_stream_is_lazy() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let first_seven: Vec<Action> = client
        .actions(ListActionsQuery::new().page_size(5))
        .take(7)
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(first_seven.len(), 7);
    assert_eq!(fake.requested_pages(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn order_lookups_are_found_on_every_page_and_sorted_by_name() {
    let fake = small_pages_fake(4).await;
    let client = fake.client_builder().build().unwrap();
    let found = client
        .actions_with_name_containing("order_lookup")
        .await
        .unwrap();
    let names: Vec<&str> = found.iter().filter_map(|a| a.name.as_deref()).collect();
    assert_eq!(names, ORDER_LOOKUPS);
    assert_eq!(fake.requested_pages(), (1..=8).collect::<Vec<u32>>());
    assert!(matches!(
        client.actions_with_name_containing("").await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_generic_numbered_paginator_works_against_the_listing() {
    let fake = small_pages_fake(3).await;
    let client = fake.client_builder().build().unwrap();
    let all: Vec<Action> = client
        .paginate(
            "/api/v2/integrations/actions",
            &[("sortBy", "name"), ("sortOrder", "DESC")],
            3,
        )
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), fake.actions().len());
    let names: Vec<String> = all
        .iter()
        .map(|a| a.name.clone().unwrap().to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(names, sorted);
    assert_eq!(fake.requested_pages().len(), 10);
}

#[tokio::test(start_paused = true)]
async fn the_client_page_limit_ends_a_long_listing() {
    let fake = small_pages_fake(2).await;
    let client = fake.client_builder().max_pages(3).build().unwrap();
    let err = client
        .actions(ListActionsQuery::new().sort_order(SortOrder::Ascending))
        .collect_all()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Paging { .. }), "{err:?}");
    assert!(err.to_string().contains("more than 3 pages"), "{err}");
    assert_eq!(fake.requested_pages(), [1, 2, 3]);
}

/// Cursor pages `0..pages` of `per_page` numbers, in the JSON style given by `field`.
fn cursor_page(field: &str, page: u32, pages: u32, per_page: u32) -> CursorListing<u32> {
    let entities: Vec<u32> = (page * per_page..(page + 1) * per_page).collect();
    let mut body = serde_json::json!({ "entities": entities });
    if page + 1 < pages {
        let token = format!("tok-{}", page + 1);
        match field {
            "cursors.after" => body["cursors"] = serde_json::json!({ "after": token }),
            other => body[other] = serde_json::json!(token),
        }
    }
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn cursor_paging_walks_many_pages_in_every_style() {
    for field in ["cursor", "after", "nextPageToken", "cursors.after"] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let all = Paginator::cursor(move |request| {
            log.lock().unwrap().push(request.clone());
            let page = match request {
                PageRequest::Cursor(None) => 0,
                PageRequest::Cursor(Some(token)) => token["tok-".len()..].parse().unwrap(),
                _ => unreachable!(),
            };
            ready(cursor_page(field, page, 12, 3).into_page())
        })
        .collect_all()
        .await
        .unwrap();
        assert_eq!(all, (0..36).collect::<Vec<u32>>(), "{field}");
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 12);
        assert_eq!(requests[0], PageRequest::Cursor(None));
        assert_eq!(requests[11], PageRequest::Cursor(Some("tok-11".into())));
    }
}

#[tokio::test]
async fn a_repeated_cursor_is_an_error_not_a_loop() {
    let mut calls = 0;
    let mut stream = Paginator::cursor(move |_| {
        calls += 1;
        assert!(calls <= 3, "kept fetching");
        let listing: CursorListing<u32> =
            serde_json::from_value(serde_json::json!({"entities": [calls], "cursor": "same"}))
                .unwrap();
        ready(listing.into_page())
    });
    let mut items = Vec::new();
    let err = loop {
        match stream.next().await {
            Some(Ok(item)) => items.push(item),
            Some(Err(err)) => break err,
            None => panic!("the stream ended without an error"),
        }
    };
    assert_eq!(items, [1, 2]);
    assert!(matches!(err, Error::Paging { .. }));
    assert!(err.to_string().contains("cursor \"same\""), "{err}");
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn a_server_that_ignores_page_numbers_is_caught() {
    // Always answers page 1 of 3, whatever was asked.
    let err = Paginator::numbered(|_| {
        let listing: EntityListing<u32> = serde_json::from_value(
            serde_json::json!({"entities": [1, 2], "pageNumber": 1, "pageCount": 3}),
        )
        .unwrap();
        ready(Ok(listing.into_page(1)))
    })
    .collect_all()
    .await
    .unwrap_err();
    assert!(err.to_string().contains("page number 2"), "{err}");
}

#[tokio::test]
async fn the_page_limit_of_the_generic_paginator() {
    let err = Paginator::new(PageRequest::Number(1), 5, |request| {
        let PageRequest::Number(n) = request else {
            unreachable!()
        };
        ready(Ok(Page {
            entities: vec![n],
            next: genesys_client::NextPage::Number(n + 1),
        }))
    })
    .collect_all()
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Paging { .. }));
}

#[tokio::test]
async fn a_failing_page_ends_the_stream_with_its_error() {
    let err = Paginator::numbered(|request| {
        let PageRequest::Number(n) = request else {
            unreachable!()
        };
        ready(if n < 3 {
            Ok(Page {
                entities: vec![n],
                next: genesys_client::NextPage::Number(n + 1),
            })
        } else {
            Err(Error::InvalidInput {
                message: "boom".into(),
            })
        })
    })
    .collect_all()
    .await
    .unwrap_err();
    assert!(err.to_string().contains("boom"));
}

#[tokio::test(start_paused = true)]
async fn the_client_cursor_paginator_sends_each_cursor_back() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    // Three scripted cursor pages, as an endpoint that pages by cursor answers.
    fake.push_faults([
        genesys_client::fake::Fault::json(
            200,
            serde_json::json!({"entities": [1, 2], "cursor": "c/2"}),
        ),
        genesys_client::fake::Fault::json(
            200,
            serde_json::json!({"entities": [3], "cursor": "c3"}),
        ),
        genesys_client::fake::Fault::json(200, serde_json::json!({"entities": [4]})),
    ]);
    let all: Vec<u32> = client
        .paginate_cursor(
            "/api/v2/integrations/actions",
            &[("pageSize", "2")],
            "after",
        )
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all, [1, 2, 3, 4]);
    assert_eq!(
        fake.api_request_uris(),
        [
            "/api/v2/integrations/actions?pageSize=2",
            "/api/v2/integrations/actions?pageSize=2&after=c%2F2",
            "/api/v2/integrations/actions?pageSize=2&after=c3",
        ]
    );
}

const SCAN: &str = "/api/v2/externalcontacts/scan/contacts";

#[tokio::test(start_paused = true)]
async fn a_cursor_listing_linked_only_by_next_uri_is_walked_to_its_end() {
    // Genesys's CursorContactListing: `entities`, `nextUri`, `selfUri`, `previousUri`; no
    // cursor field in the body.
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let all: Vec<serde_json::Value> = client
        .paginate_cursor(SCAN, &[("limit", "10")], "cursor")
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all, genesys_client::fake::default_contacts());
    assert_eq!(fake.api_requests(SCAN), 3);
    let uris = fake.api_request_uris();
    assert_eq!(uris[0], "/api/v2/externalcontacts/scan/contacts?limit=10");
    assert!(
        uris[1].starts_with("/api/v2/externalcontacts/scan/contacts?limit=10&cursor="),
        "{uris:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_next_uri_on_another_host_is_an_error_and_is_not_fetched() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    for next in [
        "https://elsewhere.example.com/api/v2/externalcontacts/scan/contacts?cursor=x",
        "//elsewhere.example.com/api/v2/externalcontacts/scan/contacts?cursor=x",
        "http://127.0.0.1:1/api/v2/externalcontacts/scan/contacts?cursor=x",
    ] {
        let before = fake.api_requests_total();
        fake.push_fault(genesys_client::fake::Fault::json(
            200,
            serde_json::json!({"entities": [1, 2], "nextUri": next}),
        ));
        let mut stream = client.paginate_cursor::<u32>(SCAN, &[], "cursor");
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert_eq!(stream.next().await.unwrap().unwrap(), 2);
        let err = stream.next().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Paging { .. }), "{next}: {err:?}");
        assert!(err.to_string().contains("nextUri"), "{err}");
        assert!(stream.next().await.is_none());
        assert_eq!(fake.api_requests_total(), before + 1, "{next} not followed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_next_uri_on_the_api_host_itself_is_followed() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    let next = format!(
        "{}api/v2/externalcontacts/scan/contacts?limit=20",
        fake.base_url()
    );
    fake.push_fault(genesys_client::fake::Fault::json(
        200,
        serde_json::json!({"entities": [], "nextUri": next}),
    ));
    let all: Vec<serde_json::Value> = client
        .paginate_cursor(SCAN, &[], "cursor")
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all, genesys_client::fake::default_contacts());
    assert_eq!(fake.api_requests(SCAN), 3);
}

#[tokio::test(start_paused = true)]
async fn a_listing_shape_the_paginator_does_not_understand_is_an_error() {
    let fake = FakeGenesys::start().await.unwrap();
    let client = fake.client_builder().build().unwrap();
    for body in [
        // No `entities`: not a listing at all.
        serde_json::json!({"items": [1, 2], "next": "abc"}),
        // A continuation field the paginator does not read.
        serde_json::json!({"entities": [1, 2], "continuationToken": "abc"}),
        serde_json::json!({"entities": [1, 2], "nextCursor": "abc"}),
        // `entities` that is not a list.
        serde_json::json!({"entities": {"a": 1}}),
    ] {
        fake.push_fault(genesys_client::fake::Fault::json(200, body.clone()));
        let result = client
            .paginate_cursor::<u32>(SCAN, &[], "cursor")
            .collect_all()
            .await;
        let err = result.expect_err(&body.to_string());
        assert!(
            matches!(err, Error::Paging { .. } | Error::Decode { .. }),
            "{body}: {err:?}"
        );
    }
    // The last page of a listing says nothing about a next one: that is the end, not an error.
    fake.push_fault(genesys_client::fake::Fault::json(
        200,
        serde_json::json!({"entities": [7], "selfUri": SCAN, "previousUri": SCAN}),
    ));
    let last: Vec<u32> = client
        .paginate_cursor(SCAN, &[], "cursor")
        .collect_all()
        .await
        .unwrap();
    assert_eq!(last, [7]);
}
