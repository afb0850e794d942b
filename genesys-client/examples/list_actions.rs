//! Finds every data action whose name contains `order_lookup` and runs the first one.
//!
//! Against a real org: set `GENESYS_CLIENT_ID`, `GENESYS_CLIENT_SECRET` and `GENESYS_REGION`
//! (and optionally `ORDER_ID`). Without them it starts the in-process fake server:
//!
//! ```sh
//! cargo run -p action-cache-genesys --features fake --example list_actions
//! ```

use genesys_client::fake::FakeGenesys;
use genesys_client::{Client, ExecuteOptions};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the fake alive for as long as the client talks to it.
    let (client, _fake) = if std::env::var_os("GENESYS_CLIENT_ID").is_some() {
        (Client::from_env()?, None)
    } else {
        let fake = FakeGenesys::start().await?;
        println!(
            "no GENESYS_CLIENT_ID set: using the fake server at {}",
            fake.base_url()
        );
        (fake.client_builder().build()?, Some(fake))
    };

    let actions = client.actions_with_name_containing("order_lookup").await?;
    for action in &actions {
        println!(
            "{:<40} {:<10} {}",
            action.name.as_deref().unwrap_or("?"),
            action.category.as_deref().unwrap_or("-"),
            action.id
        );
    }
    let Some(first) = actions.first() else {
        println!("no order_lookup actions found");
        return Ok(());
    };

    let order_id = std::env::var("ORDER_ID").unwrap_or_else(|_| "A-1001".to_owned());
    match client
        .execute_action(
            &first.id,
            &json!({ "orderId": order_id }),
            &ExecuteOptions::default(),
        )
        .await
    {
        Ok(output) => println!(
            "{} -> {} (correlation id {})",
            first.name.as_deref().unwrap_or("?"),
            output.body(),
            output.correlation_id().unwrap_or("-")
        ),
        Err(err) => println!(
            "{} failed: {err} (error code {:?})",
            first.name.as_deref().unwrap_or("?"),
            err.action_error_code()
        ),
    }
    Ok(())
}
