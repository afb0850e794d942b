//! Data actions: the models and the `/api/v2/integrations/actions` endpoints.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{to_json, Client, Kind};
use crate::error::{Error, ErrorBody, Result};
use crate::meta::ApiResponse;
use crate::paging::{EntityListing, PageRequest, Paginator};

/// The listing endpoint's path.
pub const ACTIONS_PATH: &str = "/api/v2/integrations/actions";

/// The page size [`Client::actions`] uses when the query sets none (Genesys's default is 25).
pub const DEFAULT_WALK_PAGE_SIZE: u32 = 100;

/// A data action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Action {
    /// The action id, such as `custom_-_3ee1fa5b-…`.
    pub id: String,
    /// The action's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The category (usually the integration's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The integration the action belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    /// Whether input and output are secure (kept out of logs and flows' traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// The request and response configuration (`includeConfig=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ActionConfig>,
    /// The input and output schemas (`expand=contract`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ActionContract>,
    /// The action's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The action's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

impl Action {
    /// An action with an id and a name, everything else unset.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: Some(name.into()),
            category: None,
            integration_id: None,
            secure: None,
            config: None,
            contract: None,
            version: None,
            self_uri: None,
        }
    }

    /// Sets the category.
    pub fn with_category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Sets the integration id.
    pub fn with_integration_id(mut self, integration_id: impl Into<String>) -> Self {
        self.integration_id = Some(integration_id.into());
        self
    }

    /// Sets whether the action is secure.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = Some(secure);
        self
    }

    /// Sets the configuration.
    pub fn with_config(mut self, config: ActionConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Sets the contract.
    pub fn with_contract(mut self, contract: ActionContract) -> Self {
        self.contract = Some(contract);
        self
    }

    /// Sets the version.
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the self URI.
    pub fn with_self_uri(mut self, uri: impl Into<String>) -> Self {
        self.self_uri = Some(uri.into());
        self
    }
}

/// How an action calls its remote endpoint and maps the response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ActionConfig {
    /// The outgoing request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestConfig>,
    /// The response mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseConfig>,
}

/// The outgoing request of an action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RequestConfig {
    /// The URL template, such as `https://crm.example.com/orders/${input.orderId}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_url_template: Option<String>,
    /// The HTTP method (`GET`, `POST`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_type: Option<String>,
    /// Headers to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The body template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_template: Option<String>,
}

/// The response mapping of an action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResponseConfig {
    /// JSONPath expressions by output name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation_map: Option<BTreeMap<String, String>>,
    /// Defaults for the translation map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation_map_defaults: Option<BTreeMap<String, String>>,
    /// The success template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_template: Option<String>,
}

/// An action's input and output schemas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ActionContract {
    /// The input side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<ContractInput>,
    /// The output side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ContractOutput>,
}

impl ActionContract {
    /// A contract with these JSON schemas.
    pub fn new(input_schema: Value, success_schema: Value) -> Self {
        Self {
            input: Some(ContractInput {
                input_schema: Some(input_schema),
            }),
            output: Some(ContractOutput {
                success_schema: Some(success_schema),
            }),
        }
    }
}

/// The input side of a contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ContractInput {
    /// The JSON schema of the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
}

/// The output side of a contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ContractOutput {
    /// The JSON schema of a successful output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_schema: Option<Value>,
}

/// The result of `POST /api/v2/integrations/actions/{id}/test`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ActionTestResult {
    /// Each step the test ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<TestOperation>>,
    /// The error, if the test failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// The final output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_result: Option<Value>,
    /// Whether the test succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
}

/// One step of an action test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TestOperation {
    /// The step number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The step's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the step succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// The step's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// `ASC`.
    Ascending,
    /// `DESC`.
    Descending,
}

impl SortOrder {
    /// The wire value, `ASC` or `DESC`.
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Ascending => "ASC",
            SortOrder::Descending => "DESC",
        }
    }
}

/// The query of `GET /api/v2/integrations/actions`. Unset fields are not sent.
///
/// ```
/// use genesys_client::{ListActionsQuery, SortOrder};
///
/// let query = ListActionsQuery::new()
///     .page_size(50)
///     .sort_by("name")
///     .sort_order(SortOrder::Ascending)
///     .category("CRM");
/// # let _ = query;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct ListActionsQuery {
    page_size: Option<u32>,
    page_number: Option<u32>,
    sort_by: Option<String>,
    sort_order: Option<SortOrder>,
    category: Option<String>,
    name: Option<String>,
    secure: Option<bool>,
    include_auth_actions: Option<bool>,
}

impl ListActionsQuery {
    /// An empty query (Genesys defaults: page 1 of 25).
    pub fn new() -> Self {
        Self::default()
    }

    /// `pageSize` (at least 1).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// `pageNumber` (from 1).
    pub fn page_number(mut self, number: u32) -> Self {
        self.page_number = Some(number);
        self
    }

    /// `sortBy`, a root-level field such as `name`.
    pub fn sort_by(mut self, field: impl Into<String>) -> Self {
        self.sort_by = Some(field.into());
        self
    }

    /// `sortOrder`.
    pub fn sort_order(mut self, order: SortOrder) -> Self {
        self.sort_order = Some(order);
        self
    }

    /// `category`: only actions of this category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// `name`: Genesys matches names that *start with* this.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `secure`: only secure (or only non-secure) actions.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = Some(secure);
        self
    }

    /// `includeAuthActions`: include the integrations' authentication actions.
    pub fn include_auth_actions(mut self, include: bool) -> Self {
        self.include_auth_actions = Some(include);
        self
    }

    /// The query parameters, in a fixed order; [`Error::InvalidInput`] for a page size or page
    /// number of 0.
    pub(crate) fn to_pairs(&self) -> Result<Vec<(&'static str, String)>> {
        let mut pairs = Vec::new();
        if let Some(size) = self.page_size {
            if size == 0 {
                return Err(Error::InvalidInput {
                    message: "pageSize must be at least 1".to_owned(),
                });
            }
            pairs.push(("pageSize", size.to_string()));
        }
        if let Some(number) = self.page_number {
            if number == 0 {
                return Err(Error::InvalidInput {
                    message: "pageNumber starts at 1".to_owned(),
                });
            }
            pairs.push(("pageNumber", number.to_string()));
        }
        let mut push = |key: &'static str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        push("sortBy", self.sort_by.clone());
        push("sortOrder", self.sort_order.map(|o| o.as_str().to_owned()));
        push("category", self.category.clone());
        push("name", self.name.clone());
        push("secure", self.secure.map(|b| b.to_string()));
        push(
            "includeAuthActions",
            self.include_auth_actions.map(|b| b.to_string()),
        );
        Ok(pairs)
    }
}

/// What `GET /api/v2/integrations/actions/{id}` should include.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetActionOptions {
    /// `expand=contract`: include the input and output schemas.
    pub expand_contract: bool,
    /// `includeConfig=true`: include the request and response configuration.
    pub include_config: bool,
}

impl GetActionOptions {
    /// Everything: contract and configuration.
    pub fn full() -> Self {
        Self {
            expand_contract: true,
            include_config: true,
        }
    }
}

/// Options of `POST /api/v2/integrations/actions/{id}/execute`.
///
/// An execution runs the customer's data action, which may write (create a case, send an
/// SMS). By default it is sent again only when Genesys cannot have run it: after a 429, a 503,
/// or a connection that failed before the request was written. After anything that leaves
/// it open (a 500, 502 or 504, a timeout, a connection lost after sending, a response cut off)
/// the call ends with [`Error::MaybeExecuted`] saying which case it was. Mark an action that
/// is safe to run twice (a lookup) with [`ExecuteOptions::idempotent`] to have it retried
/// like a `GET`.
///
/// ```
/// use genesys_client::ExecuteOptions;
///
/// let lookup = ExecuteOptions::idempotent();
/// assert!(lookup.idempotent && !lookup.flatten);
/// let mut flat_lookup = ExecuteOptions::idempotent();
/// flat_lookup.flatten = true;
/// assert!(!ExecuteOptions::default().idempotent);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecuteOptions {
    /// `flatten=true`: flatten the output (nested keys joined with `.`).
    pub flatten: bool,
    /// The action is safe to run more than once (it only reads), so any transient failure may
    /// be retried. Default `false`: resent only when Genesys cannot have run it.
    pub idempotent: bool,
}

impl ExecuteOptions {
    /// With `flatten=true`.
    pub fn flattened() -> Self {
        Self {
            flatten: true,
            ..Self::default()
        }
    }

    /// For an action that is safe to run more than once: retried after any transient failure.
    pub fn idempotent() -> Self {
        Self {
            idempotent: true,
            ..Self::default()
        }
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.trim().is_empty() || id == "." || id == ".." {
        return Err(Error::InvalidInput {
            message: format!("{id:?} is not a data action id"),
        });
    }
    Ok(())
}

fn borrow_pairs<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

impl Client {
    /// One page of `GET /api/v2/integrations/actions`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad query; [`Error::Forbidden`] (likely missing
    /// `integrations:action:view`) and the other errors of [`Client::get_json`].
    pub async fn list_actions(
        &self,
        query: &ListActionsQuery,
    ) -> Result<ApiResponse<EntityListing<Action>>> {
        let pairs = query.to_pairs()?;
        self.get_json(ACTIONS_PATH, &borrow_pairs(&pairs)).await
    }

    /// Every action matching `query`, walking all pages from `query`'s page number (default 1)
    /// with its page size (default [`DEFAULT_WALK_PAGE_SIZE`]).
    pub fn actions(&self, query: ListActionsQuery) -> Paginator<'static, Action> {
        let first = query.page_number.unwrap_or(1);
        let query = if query.page_size.is_none() {
            query.page_size(DEFAULT_WALK_PAGE_SIZE)
        } else {
            query
        };
        let client = self.clone();
        Paginator::new(
            PageRequest::Number(first),
            self.max_pages(),
            move |request| {
                let client = client.clone();
                let query = query.clone();
                async move {
                    let PageRequest::Number(number) = request else {
                        return Err(Error::Paging {
                            message: "the actions listing is paged by number".to_owned(),
                        });
                    };
                    let listing = client.list_actions(&query.page_number(number)).await?;
                    Ok(listing.into_body().into_page(number))
                }
            },
        )
    }

    /// Every action whose name contains `needle` (ignoring case), sorted by name ascending.
    ///
    /// Genesys's `name` filter matches prefixes only, so this walks every page (sorted by name
    /// on the server) and filters on the client.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty needle, and the errors of walking the listing.
    pub async fn actions_with_name_containing(&self, needle: &str) -> Result<Vec<Action>> {
        if needle.is_empty() {
            return Err(Error::InvalidInput {
                message: "the name to search for is empty".to_owned(),
            });
        }
        let needle = needle.to_lowercase();
        let query = ListActionsQuery::new()
            .sort_by("name")
            .sort_order(SortOrder::Ascending);
        let mut found: Vec<Action> = self
            .actions(query)
            .collect_all()
            .await?
            .into_iter()
            .filter(|a| {
                a.name
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase().contains(&needle))
            })
            .collect();
        // The server sorted already; sort again so the order holds whatever its collation.
        found.sort_by(|a, b| {
            let key = |x: &Action| x.name.as_deref().map(str::to_lowercase);
            key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
        });
        Ok(found)
    }

    /// `GET /api/v2/integrations/actions/{id}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty id; [`Error::Api`] with status 404 for an unknown
    /// action, and the other errors of [`Client::get_json`].
    pub async fn get_action(
        &self,
        id: &str,
        options: &GetActionOptions,
    ) -> Result<ApiResponse<Action>> {
        check_id(id)?;
        let mut query = Vec::new();
        if options.expand_contract {
            query.push(("expand", "contract"));
        }
        if options.include_config {
            query.push(("includeConfig", "true"));
        }
        let url = self.api_url_segments(&["api", "v2", "integrations", "actions", id], &query)?;
        self.send_json(Method::GET, url, None, Kind::Read, "data action")
            .await
    }

    /// `POST /api/v2/integrations/actions/{id}/execute` with free-form JSON input; returns the
    /// action's output as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty id or input that does not serialize;
    /// [`Error::Api`] carrying the data-action error (see [`Error::action_error_code`]) when the
    /// action fails; [`Error::Forbidden`] (likely missing `integrations:action:execute`);
    /// [`Error::MaybeExecuted`] when the request failed after Genesys may have run the action
    /// and it is not marked [idempotent](ExecuteOptions::idempotent); and the other errors of
    /// [`Client::get_json`].
    pub async fn execute_action<I: Serialize + ?Sized>(
        &self,
        id: &str,
        input: &I,
        options: &ExecuteOptions,
    ) -> Result<ApiResponse<Value>> {
        self.execute_action_as(id, input, options).await
    }

    /// Like [`Client::execute_action`], decoding the output as `O`.
    ///
    /// # Errors
    ///
    /// As for [`Client::execute_action`], plus [`Error::Decode`] when the output is not an `O`.
    pub async fn execute_action_as<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        id: &str,
        input: &I,
        options: &ExecuteOptions,
    ) -> Result<ApiResponse<O>> {
        check_id(id)?;
        let body = to_json(input)?;
        let query: &[(&str, &str)] = if options.flatten {
            &[("flatten", "true")]
        } else {
            &[]
        };
        let url = self.api_url_segments(
            &["api", "v2", "integrations", "actions", id, "execute"],
            query,
        )?;
        let kind = Kind::Execution {
            idempotent: options.idempotent,
        };
        self.send_json(Method::POST, url, Some(&body), kind, "data action output")
            .await
    }

    /// `POST /api/v2/integrations/actions/{id}/test`: runs the action and reports each step.
    ///
    /// # Errors
    ///
    /// As for [`Client::execute_action`].
    pub async fn test_action<I: Serialize + ?Sized>(
        &self,
        id: &str,
        input: &I,
    ) -> Result<ApiResponse<ActionTestResult>> {
        check_id(id)?;
        let body = to_json(input)?;
        let url =
            self.api_url_segments(&["api", "v2", "integrations", "actions", id, "test"], &[])?;
        // A test runs the action too, so it is resent only when it cannot have run.
        self.send_json(
            Method::POST,
            url,
            Some(&body),
            Kind::Execution { idempotent: false },
            "action test result",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ignores_unknown_fields_and_round_trips() {
        let json = r#"{"id":"a1","name":"crm.order_lookup.v1","category":"CRM",
            "integrationId":"i1","secure":false,"version":3,"selfUri":"/api/v2/integrations/actions/a1",
            "contract":{"input":{"inputSchema":{"type":"object"}},"output":{"successSchema":{"type":"object"}}},
            "config":{"request":{"requestUrlTemplate":"https://x/${input.orderId}","requestType":"GET",
            "headers":{"Accept":"application/json"},"requestTemplate":"${input.rawRequest}"},
            "response":{"translationMap":{"status":"$.status"},"successTemplate":"${rawResult}"}},
            "somethingNew":42}"#;
        let action: Action = serde_json::from_str(json).unwrap();
        assert_eq!(action.name.as_deref(), Some("crm.order_lookup.v1"));
        assert_eq!(action.version, Some(3));
        assert_eq!(
            action
                .config
                .as_ref()
                .and_then(|c| c.request.as_ref())
                .and_then(|r| r.request_type.as_deref()),
            Some("GET")
        );
        let again: Action = serde_json::from_value(serde_json::to_value(&action).unwrap()).unwrap();
        assert_eq!(again, action);
        let minimal: Action = serde_json::from_str(r#"{"id":"x"}"#).unwrap();
        assert_eq!(minimal.name, None);
    }

    #[test]
    fn query_pairs_come_in_a_fixed_order() {
        let query = ListActionsQuery::new()
            .page_size(50)
            .sort_by("name")
            .sort_order(SortOrder::Ascending)
            .category("CRM");
        assert_eq!(
            query.to_pairs().unwrap(),
            [
                ("pageSize", "50".to_string()),
                ("sortBy", "name".into()),
                ("sortOrder", "ASC".into()),
                ("category", "CRM".into())
            ]
        );
    }

    #[test]
    fn zero_page_size_is_rejected() {
        assert!(ListActionsQuery::new().page_size(0).to_pairs().is_err());
        assert!(ListActionsQuery::new().page_number(0).to_pairs().is_err());
    }

    #[test]
    fn empty_ids_are_rejected() {
        assert!(check_id("").is_err());
        assert!(check_id("..").is_err());
        assert!(check_id("custom_-_1").is_ok());
    }
}
