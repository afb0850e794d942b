//! The `#[cached_action]` attribute macro of action-cache.
//!
//! Use it through the `action-cache` crate (`use action_cache::cached_action;`); the generated
//! code refers to `::action_cache::__private`, so depending on this crate alone is not enough.
//! See [`macro@cached_action`] for every option.
//!
//! ```
//! use action_cache::{cached_action, Cache};
//!
//! #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Summary {
//!     account_id: String,
//!     open_orders: u32,
//! }
//!
//! // A fresh hit for 5 minutes, served stale (and refreshed in the background) up to 15 minutes.
//! #[cached_action(fresh = 300, stale = "15m", tags = ["account:{account_id}"])]
//! async fn account_summary(account_id: &str) -> Result<Summary, String> {
//!     // ... an expensive backend call ...
//!     Ok(Summary { account_id: account_id.to_owned(), open_orders: 3 })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Once at start-up; without a global cache the function runs uncached (with one warning).
//! action_cache::set_global(Cache::in_memory()).unwrap();
//!
//! let first = account_summary("acme").await.unwrap();   // miss: runs the body, stores the value
//! let second = account_summary("acme").await.unwrap();  // fresh hit: the body does not run
//! assert_eq!(first, second);
//!
//! // Companion items address exactly the entry a call uses.
//! let key = account_summary_key("acme");
//! assert!(key.starts_with("ac:") && key.contains("account_summary"));
//! assert!(account_summary_invalidate("acme").await.unwrap());
//! # }
//! ```

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Caches the result of an `async fn` in action-cache's fresh / stale / miss scheme.
///
/// ```
/// # use action_cache::cached_action;
/// # #[derive(Clone)] struct Crm;
/// # impl Crm { async fn summary(&self, _id: &str) -> Result<Summary, CrmError> { Ok(Summary) } }
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Summary;
/// # #[derive(Debug, Clone)] struct CrmError;
/// #[cached_action(fresh = 300, stale = 900, skip(client), tags = ["account:{account_id}"])]
/// async fn account_summary(client: &Crm, account_id: &str) -> Result<Summary, CrmError> {
///     client.summary(account_id).await
/// }
/// ```
///
/// The function keeps its signature, attributes, docs, visibility, generics and `where` clause.
/// A call builds a key from the function's name, `version` and its (non-skipped) arguments, then:
///
/// * **fresh hit** (younger than `fresh`): returns the stored value, the body does not run;
/// * **stale hit** (older than `fresh`, younger than `stale`): returns the stored value and
///   refreshes it — in the background (default) or inline, see `refresh`;
/// * **miss**: runs the body and stores its value. Concurrent misses of one key share one run
///   of the body (see `coalesce`).
///
/// It works on free functions, inherent methods and trait-impl methods (set
/// `companions = false` in a trait impl, see below), and composes with
/// `#[tracing::instrument]` in either order.
///
/// # Options
///
/// | option | meaning |
/// |---|---|
/// | `fresh = 300` / `fresh = "5m"` | **Required.** How long a value is served without refreshing it. Integer seconds or a string with unit `ms`, `s`, `m`, `h`, `d` (`"250ms"`, `"5m"`, `"1h"`). |
/// | `stale = 900` / `stale = "15m"` | How long, counted from the write, a value may still be served while it is refreshed. Must not be shorter than `fresh`; defaults to `fresh` (no stale window). |
/// | `jitter = 0.2` | Stretches each entry's windows by a random fraction up to this (0.0 – 1.0) so entries written together do not expire together. Default: the core's `Policy::DEFAULT_JITTER` (0.1); `jitter = 0.0` makes windows exact. |
/// | `name = "orders.lookup"` | The stable key name, used as given. Default: `module_path!()::fn_name`, so **moving or renaming the function changes its keys** (old entries are simply not found again); for methods, associated functions and functions nested in other functions the default also hashes the `Self` type and the enclosing item, so same-named methods of different types never share a key (see [Keys](#keys)). |
/// | `version = 2` | Part of the key: bump it to retire values stored with an old schema. |
/// | `skip(client, conn)` | Arguments left out of the key (clients, connections, loggers). A method's receiver is always left out unless `include_self = true`. |
/// | `include_self = true` | Put the receiver (`Serialize`) into the key. |
/// | `tags = ["account:{account_id}"]` | Tags stored with the entry, for `Cache::invalidate_tag`. A `{placeholder}` names a key argument and is formatted with `Display`; `{{` / `}}` are literal braces. |
/// | `cache = expr` | Which `Cache` to use: any expression of type `Cache`, `&Cache`, `Arc<Cache>`, `&LazyLock<Cache>`… (it may use `self`). Default: the global one (`action_cache::set_global`); when none is set the function runs uncached and one warning is logged per process. |
/// | `refresh = "background"` / `"inline"` | How a stale hit is refreshed. `background` (default) returns the stale value at once and reloads on a spawned task; `inline` reloads before returning. |
/// | `coalesce = false` | Do not share one load among concurrent misses. Coalescing (the default) hands the waiters a clone of the leader's error, so it requires `E: Clone`. |
/// | `cache_none = true` | For `Option<T>` returns: also cache `None` (default: `None` is returned but not stored). |
/// | `codec = "json"` / `"messagepack"` | How this function's values are stored; default: the cache's codec (`CacheBuilder::codec`, JSON unless set). An entry in the other codec reads as a miss. |
/// | `returns = "result"` / `"option"` / `"value"` | States how the return type is stored (see [Return types](#return-types)); without it the type decides. |
/// | `companions = false` | Do not generate the companion items (needed in trait impls, which cannot gain extra items). |
/// | `crate = "::path::to::action_cache"` | Where generated code finds the runtime, when `action_cache` is renamed or re-exported. |
///
/// # Keys
///
/// A call's key hashes the name, `version`, every key argument and every type or const
/// parameter of the function: `std::any::type_name::<T>()` for a type parameter, the value for a
/// const one. So `get::<User>("42")` and `get::<Queue>("42")` never share an entry, with no
/// annotation. Only parameters that nothing but skipped arguments mention (a client's type) are
/// left out. With the default name, methods and associated functions also hash
/// `type_name::<Self>()` (with its type arguments, when the function takes `self` or names
/// `Self`) and the item they are defined in (the `impl` or trait impl, or the enclosing function),
/// so `UserRepo::by_id(7)` and `QueueRepo::by_id(7)` in one module are distinct; a free function
/// at module level hashes neither, and an explicit `name` never hashes them.
///
/// These extra arguments are named `<T>`, `<N>`, `<Self>` and `<scope>`, names no argument can
/// have. Like `module_path!`, `type_name` is the compiler's text and can change across compiler
/// versions (or when a type moves): keys that hash it then change too, and old entries are
/// simply not found again, never read as another call's value. The companion items take the
/// keyed type parameters as well: `get_key::<User>("42")`.
///
/// # Return types
///
/// The return type decides what is stored, by its type after aliases are resolved, not by how
/// it is spelled: `type ApiResult<T> = Result<T, ApiError>`, `anyhow::Result<T>` and
/// `io::Result<T>` are `Result`s, and an `Option` alias is an `Option`.
///
/// * `Result<T, E>`: only `Ok` values are stored; an `Err` is returned and never cached (a
///   failed background refresh keeps the old value). `E` need not be `Serialize`. If the body
///   panics, the panic is re-raised in the caller.
/// * `Option<T>`: `Some` is stored; `None` only with `cache_none = true`.
/// * any other `T` (including `()` and a generic `T`, whatever it is instantiated with): always
///   stored.
///
/// `returns = "result"`, `"option"` or `"value"` states it explicitly: a return type that does
/// not match is a compile error, and `"value"` stores an `Option` whole (`None` included) but is
/// refused on a `Result`, whose `Err`s would be stored.
///
/// `T` must be `Serialize + DeserializeOwned + Send + Sync + 'static`; with coalescing, `E` must be
/// `Clone + Debug + Send + Sync + 'static` (use `coalesce = false`, or wrap the error in an
/// `Arc`, when it is not `Clone`).
///
/// # Arguments
///
/// Owned (`u64`, `String`, `Vec<T>`, generic `T`) and borrowed (`&str`, `&T`, `&[T]`,
/// `Option<&str>`, `Option<&T>`, `&[&str]`, `Vec<&T>`) arguments work; every key argument must
/// be `Serialize`. `&mut` and `impl Trait` arguments are rejected (use a named generic instead),
/// and arguments must be plain names, not patterns.
///
/// A background refresh outlives the call, so it needs owned copies of **all** arguments,
/// skipped ones and the receiver included: `&T` is copied with `ToOwned::to_owned` (`&str` to a
/// `String`, `&[T]` to a `Vec<T>`), `Option<&T>` to an `Option<T::Owned>`, `&[&T]` and
/// `Vec<&T>` to a `Vec<T::Owned>`, and owned arguments with `Clone`; the refresh then calls the
/// body with references to its copies. The copies must be `Send + 'static` (so are generic
/// parameters that appear in argument types). They are taken only when a refresh is actually
/// spawned: the hit path clones nothing. For a method with `&self` this means `Self: Clone +
/// Send + Sync + 'static` (cheap when `Self` holds its clients in `Arc`s). Other borrowing
/// types (`Option<Option<&str>>`, `Cow<'a, str>`, a struct with a lifetime) are a compile error
/// that says what to write instead: an owned type, or `refresh = "inline"`, which needs no
/// copies.
///
/// If an argument cannot be turned into a key (a NaN or infinite float, a value nested deeper
/// than 128 levels), the call runs uncached and a warning is logged.
///
/// # Companion items
///
/// Next to the function (as associated functions, for methods) the macro generates, taking the
/// key arguments in declaration order with their declared types:
///
/// * `fn <name>_key(key args) -> String`: the full store key a call uses (the default prefix
///   `ac` when no cache is configured). Panics if the arguments cannot form a key.
/// * `async fn <name>_invalidate(key args) -> Result<bool, CacheError>`: removes that entry.
/// * `async fn <name>_put(key args, value: &T) -> Result<(), CacheError>`: writes that entry
///   (with the function's tags and policy). `T` is what is stored: the `Ok` value of a
///   `Result`, the `Some` value of an `Option` (the `Option` with `cache_none`), the whole value
///   otherwise. When the return type is spelled through an alias the parameter is generic
///   (`&impl StoredValue<Ret>`) and accepts the same types.
///
/// They take `&self` when `include_self = true` or when the `cache` expression uses `self`.
///
/// # Limits
///
/// The body moves into an `async` closure, so inside a method `self` is renamed; a nested
/// `impl` block or `fn` item inside the body that uses its own `self` is not supported.
/// Explicit lifetimes of argument types are kept in the signature but erased inside the
/// wrapped body, so the body must not name them.
#[proc_macro_attribute]
pub fn cached_action(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached_action(args.into(), item.into()).into()
}
