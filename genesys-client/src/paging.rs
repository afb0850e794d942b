//! Paging: the Genesys entity listing and a generic paginator for both styles the API uses.
//!
//! * Page numbers: `pageNumber` / `pageSize` in, `pageNumber` / `pageCount` / `nextUri` out
//!   ([`EntityListing`]).
//! * Cursors: a token out (`cursor`, `after`, `nextPageToken` or `cursors.after`, see
//!   [`CursorListing`]) that goes back in on the next request, or, when the body carries no
//!   token, a `nextUri` that is fetched as it is. A `nextUri` must be a path on the API host
//!   (or a URL of that host): one that points anywhere else is [`Error::Paging`], so a listing
//!   can never send the bearer token to another host.
//! * A body the paginator does not understand (no `entities` array, or a way to the next page
//!   it does not read) is an error, never a short listing.
//!
//! [`Paginator`] turns a page-fetching function into an async [`Stream`] of entities. A page
//! number or cursor that comes back twice, or more pages than the limit, ends the stream with
//! [`Error::Paging`] instead of looping forever.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::{stream, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default page limit of a [`Paginator`].
pub const DEFAULT_MAX_PAGES: u32 = 1_000;

/// The Genesys entity listing: one page of a page-numbered collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EntityListing<T> {
    /// This page's entities.
    #[serde(default = "Vec::new")]
    pub entities: Vec<T>,
    /// The page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// This page's number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_number: Option<u32>,
    /// The number of entities on all pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The number of pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_count: Option<u32>,
    /// The first page's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_uri: Option<String>,
    /// This page's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
    /// The next page's URI; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    /// The previous page's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_uri: Option<String>,
    /// The last page's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_uri: Option<String>,
}

impl<T> EntityListing<T> {
    /// Turns the listing into a [`Page`], given the page number that was asked for.
    ///
    /// There is a next page when `pageNumber < pageCount`, or, without a `pageCount`, when
    /// `nextUri` is present. An empty page always ends the listing.
    pub fn into_page(self, requested: u32) -> Page<T> {
        let current = self.page_number.unwrap_or(requested);
        let more = match self.page_count {
            Some(count) => current < count,
            None => self.next_uri.is_some(),
        };
        let next = if more && !self.entities.is_empty() {
            NextPage::Number(current.saturating_add(1))
        } else {
            NextPage::Done
        };
        Page {
            entities: self.entities,
            next,
        }
    }
}

/// One page of a cursor-paged collection. The next page is named by a cursor (`cursor`,
/// `after`, `nextPageToken` or `cursors.after`, depending on the endpoint) or, when the body
/// has none, by `nextUri` alone (Genesys's `CursorContactListing`).
///
/// `entities` is required: a body without it is not a listing, and decoding it fails instead of
/// yielding an empty page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CursorListing<T> {
    /// This page's entities.
    pub entities: Vec<T>,
    /// The next page's cursor (analytics and audit style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The next page's cursor (`after` style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The next page's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    /// Nested cursors (`{"cursors":{"after":…}}` style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursors: Option<Cursors>,
    /// The next page's URI: a path on the API host, such as
    /// `/api/v2/externalcontacts/scan/contacts?limit=100&cursor=…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    /// This page's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
    /// The previous page's URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_uri: Option<String>,
    /// Every other field of the body, kept so that a way to the next page that the paginator
    /// does not read is noticed instead of ending the listing early.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Nested cursors of a [`CursorListing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cursors {
    /// The cursor of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

impl<T> CursorListing<T> {
    /// The next cursor, whichever field carries it (empty strings count as none).
    pub fn next_cursor(&self) -> Option<&str> {
        [
            self.cursor.as_deref(),
            self.after.as_deref(),
            self.next_page_token.as_deref(),
            self.cursors.as_ref().and_then(|c| c.after.as_deref()),
        ]
        .into_iter()
        .flatten()
        .find(|c| !c.is_empty())
    }

    /// Turns the listing into a [`Page`]: the next page is the cursor's, else `nextUri`'s; with
    /// neither, the listing is done.
    ///
    /// # Errors
    ///
    /// [`Error::Paging`] when the body has a field that looks like a way to the next page
    /// (its name holds `cursor`, `next`, `after`, `token`, `continuation` or `more`) that the
    /// paginator does not read: ending there would drop the remaining pages silently.
    pub fn into_page(self) -> Result<Page<T>> {
        let next = if let Some(cursor) = self.next_cursor() {
            NextPage::Cursor(cursor.to_owned())
        } else if let Some(uri) = self
            .next_uri
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            NextPage::Uri(uri.to_owned())
        } else if let Some(key) = self
            .other
            .iter()
            .find(|(key, value)| looks_like_continuation(key) && !is_blank(value))
            .map(|(key, _)| key)
        {
            return Err(Error::Paging {
                message: format!(
                    "the listing names its next page by {key:?}, which the paginator does not \
                     read (it reads cursor, after, nextPageToken, cursors.after and nextUri); \
                     stopping instead of returning a partial listing"
                ),
            });
        } else {
            NextPage::Done
        };
        Ok(Page {
            entities: self.entities,
            next,
        })
    }
}

fn looks_like_continuation(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["cursor", "next", "after", "token", "continuation", "more"]
        .iter()
        .any(|word| key.contains(word))
}

fn is_blank(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null | serde_json::Value::Bool(false) => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::Bool(true) | serde_json::Value::Number(_) => false,
    }
}

/// What to ask for: a page number (from 1) or a cursor (`None` for the first page).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PageRequest {
    /// Page number `n`, from 1.
    Number(u32),
    /// The page after this cursor; `None` asks for the first page.
    Cursor(Option<String>),
    /// The page at this `nextUri` (a path on the API host).
    Uri(String),
}

/// One fetched page: its entities and where the next one is.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The page's entities.
    pub entities: Vec<T>,
    /// Where the next page is.
    pub next: NextPage,
}

/// Where the next page is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NextPage {
    /// Page number `n`.
    Number(u32),
    /// The page after this cursor.
    Cursor(String),
    /// The page at this `nextUri`.
    Uri(String),
    /// There is none.
    Done,
}

/// An async [`Stream`] of the entities of every page, fetched one page at a time as the stream
/// is polled.
///
/// ```
/// use futures_util::future::ready;
/// use genesys_client::{NextPage, Page, PageRequest, Paginator};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Three pages of two numbers each, by page number.
/// let all = Paginator::numbered(|request| {
///     let PageRequest::Number(n) = request else { unreachable!() };
///     ready(Ok(Page {
///         entities: vec![n * 10, n * 10 + 1],
///         next: if n < 3 { NextPage::Number(n + 1) } else { NextPage::Done },
///     }))
/// })
/// .collect_all()
/// .await?;
/// assert_eq!(all, [10, 11, 20, 21, 30, 31]);
/// # Ok::<(), genesys_client::Error>(())
/// # }).unwrap();
/// ```
#[must_use = "a paginator fetches nothing until it is polled"]
pub struct Paginator<'a, T> {
    inner: Pin<Box<dyn Stream<Item = Result<T>> + Send + 'a>>,
}

impl<T> fmt::Debug for Paginator<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paginator").finish_non_exhaustive()
    }
}

impl<'a, T: Send + 'a> Paginator<'a, T> {
    /// Pages by number from page 1, at most [`DEFAULT_MAX_PAGES`] pages.
    pub fn numbered<F, Fut>(fetch: F) -> Self
    where
        F: FnMut(PageRequest) -> Fut + Send + 'a,
        Fut: Future<Output = Result<Page<T>>> + Send + 'a,
    {
        Self::new(PageRequest::Number(1), DEFAULT_MAX_PAGES, fetch)
    }

    /// Pages by cursor from the first page, at most [`DEFAULT_MAX_PAGES`] pages.
    pub fn cursor<F, Fut>(fetch: F) -> Self
    where
        F: FnMut(PageRequest) -> Fut + Send + 'a,
        Fut: Future<Output = Result<Page<T>>> + Send + 'a,
    {
        Self::new(PageRequest::Cursor(None), DEFAULT_MAX_PAGES, fetch)
    }

    /// Pages from `first`, fetching at most `max_pages` pages; asking for more, or for a page or
    /// cursor a second time, yields [`Error::Paging`] and ends the stream.
    pub fn new<F, Fut>(first: PageRequest, max_pages: u32, fetch: F) -> Self
    where
        F: FnMut(PageRequest) -> Fut + Send + 'a,
        Fut: Future<Output = Result<Page<T>>> + Send + 'a,
    {
        struct State<F> {
            fetch: F,
            next: Option<PageRequest>,
            seen: HashSet<PageRequest>,
            fetched: u32,
            max_pages: u32,
        }
        let state = State {
            fetch,
            next: Some(first),
            seen: HashSet::new(),
            fetched: 0,
            max_pages,
        };
        let pages = stream::try_unfold(state, |mut state| async move {
            let Some(request) = state.next.take() else {
                return Ok(None);
            };
            if state.fetched >= state.max_pages {
                return Err(Error::Paging {
                    message: format!(
                        "more than {} pages; raise the page limit if this is expected",
                        state.max_pages
                    ),
                });
            }
            if !state.seen.insert(request.clone()) {
                return Err(Error::Paging {
                    message: format!("the server sent {} twice", describe(&request)),
                });
            }
            state.fetched += 1;
            let page = (state.fetch)(request).await?;
            state.next = match page.next {
                NextPage::Number(n) => Some(PageRequest::Number(n)),
                NextPage::Cursor(c) => Some(PageRequest::Cursor(Some(c))),
                NextPage::Uri(uri) => Some(PageRequest::Uri(uri)),
                NextPage::Done => None,
            };
            Ok(Some((page.entities, state)))
        });
        let entities = pages
            .map_ok(|entities| stream::iter(entities.into_iter().map(Ok)))
            .try_flatten();
        Self {
            inner: Box::pin(entities),
        }
    }

    /// Fetches every page and collects the entities in order.
    ///
    /// # Errors
    ///
    /// The first error of a page fetch, or [`Error::Paging`] for a repeated page or cursor or
    /// too many pages.
    pub async fn collect_all(self) -> Result<Vec<T>> {
        self.try_collect().await
    }
}

fn describe(request: &PageRequest) -> String {
    match request {
        PageRequest::Number(n) => format!("page number {n}"),
        PageRequest::Cursor(Some(c)) => format!("cursor {c:?}"),
        PageRequest::Cursor(None) => "the first page".to_owned(),
        PageRequest::Uri(uri) => format!("nextUri {uri:?}"),
    }
}

impl<T> Stream for Paginator<'_, T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_listing_next_page() {
        let listing: EntityListing<u32> = serde_json::from_str(
            r#"{"entities":[1,2],"pageSize":2,"pageNumber":1,"total":5,"pageCount":3}"#,
        )
        .unwrap();
        assert_eq!(listing.into_page(1).next, NextPage::Number(2));
        let last: EntityListing<u32> =
            serde_json::from_str(r#"{"entities":[5],"pageNumber":3,"pageCount":3}"#).unwrap();
        assert_eq!(last.into_page(3).next, NextPage::Done);
        let by_uri: EntityListing<u32> =
            serde_json::from_str(r#"{"entities":[5],"nextUri":"/x?pageNumber=3"}"#).unwrap();
        assert_eq!(by_uri.into_page(2).next, NextPage::Number(3));
        let empty: EntityListing<u32> =
            serde_json::from_str(r#"{"entities":[],"pageNumber":1,"pageCount":9}"#).unwrap();
        assert_eq!(empty.into_page(1).next, NextPage::Done);
    }

    #[test]
    fn cursor_listing_reads_every_style() {
        for body in [
            r#"{"entities":[1],"cursor":"c2"}"#,
            r#"{"entities":[1],"after":"c2"}"#,
            r#"{"entities":[1],"nextPageToken":"c2"}"#,
            r#"{"entities":[1],"cursors":{"after":"c2"}}"#,
        ] {
            let listing: CursorListing<u32> = serde_json::from_str(body).unwrap();
            assert_eq!(
                listing.into_page().unwrap().next,
                NextPage::Cursor("c2".into()),
                "{body}"
            );
        }
        let last: CursorListing<u32> =
            serde_json::from_str(r#"{"entities":[1],"cursor":""}"#).unwrap();
        assert_eq!(last.into_page().unwrap().next, NextPage::Done);
        let by_uri: CursorListing<u32> =
            serde_json::from_str(r#"{"entities":[1],"nextUri":"/api/v2/x?cursor=c2"}"#).unwrap();
        assert_eq!(
            by_uri.into_page().unwrap().next,
            NextPage::Uri("/api/v2/x?cursor=c2".into())
        );
        // An explicit cursor wins over nextUri.
        let both: CursorListing<u32> =
            serde_json::from_str(r#"{"entities":[1],"cursor":"c2","nextUri":"/other"}"#).unwrap();
        assert_eq!(
            both.into_page().unwrap().next,
            NextPage::Cursor("c2".into())
        );
    }

    #[test]
    fn cursor_listing_shapes_it_does_not_understand_are_errors() {
        assert!(serde_json::from_str::<CursorListing<u32>>(r#"{"items":[1]}"#).is_err());
        for body in [
            r#"{"entities":[1],"nextCursor":"x"}"#,
            r#"{"entities":[1],"continuationToken":"x"}"#,
            r#"{"entities":[1],"hasMore":true}"#,
        ] {
            let listing: CursorListing<u32> = serde_json::from_str(body).unwrap();
            assert!(
                matches!(listing.into_page(), Err(Error::Paging { .. })),
                "{body}"
            );
        }
        for body in [
            r#"{"entities":[1],"hasMore":false,"total":9}"#,
            r#"{"entities":[1],"nextPage":null}"#,
        ] {
            let listing: CursorListing<u32> = serde_json::from_str(body).unwrap();
            assert_eq!(listing.into_page().unwrap().next, NextPage::Done, "{body}");
        }
    }
}
