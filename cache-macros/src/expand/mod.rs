//! Code generation for `#[cached_action]`, on `proc_macro2` types so it can be unit-tested.
//!
//! Like `tracing-attributes`, one pass parses both token streams and builds a [`Model`] of the
//! function (every check runs there), then the generators read it: [`wrapper`] replaces the
//! body with the cached call, [`companions`] adds `<fn>_key`, `<fn>_invalidate` and `<fn>_put`.
//! Imports run one way, down this list: this module, `companions` (which reuses the wrapper's
//! key expression and policy), `wrapper`, `model`, `tokens`; nothing imports back up.

mod companions;
mod model;
mod tokens;
mod wrapper;

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use self::model::Model;
use crate::attr::CachedArgs;

/// Entry point: parses both token streams and expands, or returns the original item plus the error.
pub(crate) fn cached_action(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => return token_stream_with_error(item, e),
    };
    let args: CachedArgs = match syn::parse2(args) {
        Ok(a) => a,
        Err(e) => return token_stream_with_error(item, e),
    };
    match expand(&args, func) {
        Ok(ts) => ts,
        Err(e) => token_stream_with_error(item, e),
    }
}

/// The original item unchanged plus the error, so IDEs keep seeing the function.
fn token_stream_with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}

/// Expands a parsed function: the wrapper, then (unless `companions = false`) its companions.
fn expand(args: &CachedArgs, func: ItemFn) -> syn::Result<TokenStream> {
    let model = Model::new(args, func)?;
    let wrapper = wrapper::wrapper(&model)?;
    let companions = if model.companions {
        companions::companions(&model)
    } else {
        TokenStream::new()
    };
    Ok(quote! {
        #wrapper
        #companions
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> String {
        cached_action(attr.parse().unwrap(), item.parse().unwrap()).to_string()
    }

    #[test]
    fn non_async_fn_keeps_the_item_and_adds_an_error() {
        let out = expand_str("fresh = 1", "fn f(x: u32) -> u32 { x }");
        assert!(out.starts_with("fn f"), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("async fn"), "{out}");
    }

    #[test]
    fn bad_attribute_keeps_the_item() {
        let out = expand_str("fresh = 1, bogus = 2", "async fn f(x: u32) -> u32 { x }");
        assert!(out.starts_with("async fn f"), "{out}");
        assert!(
            out.contains("unknown `cached_action` option `bogus`"),
            "{out}"
        );
    }

    #[test]
    fn skip_and_tags_must_name_arguments() {
        let out = expand_str("fresh = 1, skip(nope)", "async fn f(x: u32) -> u32 { x }");
        assert!(out.contains("`skip(nope)` names no argument"), "{out}");
        let out = expand_str(
            r#"fresh = 1, tags = ["t:{nope}"]"#,
            "async fn f(x: u32) -> u32 { x }",
        );
        assert!(out.contains("names no argument"), "{out}");
        let out = expand_str(
            r#"fresh = 1, skip(x), tags = ["t:{x}"]"#,
            "async fn f(x: u32) -> u32 { x }",
        );
        assert!(out.contains("left out of the key"), "{out}");
    }

    #[test]
    fn rejects_mut_refs_and_impl_trait() {
        let out = expand_str("fresh = 1", "async fn f(x: &mut u32) -> u32 { *x }");
        assert!(out.contains("`&mut` arguments are not supported"), "{out}");
        let out = expand_str(
            "fresh = 1",
            "async fn f(x: impl Into<u32>) -> u32 { x.into() }",
        );
        assert!(out.contains("`impl Trait` arguments"), "{out}");
        let out = expand_str("fresh = 1", "async fn f(&mut self) -> u32 { 1 }");
        assert!(out.contains("`&mut self`"), "{out}");
    }

    #[test]
    fn generates_wrapper_and_companions() {
        let out = expand_str(
            r#"fresh = 300, stale = 900, skip(client), tags = ["account:{account_id}"]"#,
            "pub async fn account_summary(client: &Crm, account_id: &str) -> Result<Summary, CrmError> { client.get(account_id).await }",
        );
        assert!(out.contains("pub async fn account_summary"), "{out}");
        assert!(out.contains("fn account_summary_key"), "{out}");
        assert!(out.contains("fn account_summary_invalidate"), "{out}");
        assert!(out.contains("fn account_summary_put"), "{out}");
        assert!(out.contains("load_coalesced"), "{out}");
        assert!(out.contains("owned_copy"), "{out}");
        assert!(out.contains(":: action_cache :: __private"), "{out}");
        // the skipped client is not in the key and not a companion parameter
        assert!(!out.contains("\"client\""), "{out}");
        assert!(
            out.contains("account_summary_key (account_id : & str)"),
            "{out}"
        );
    }

    #[test]
    fn crate_override_and_options() {
        let out = expand_str(
            r#"fresh = "250ms", refresh = "inline", coalesce = false, crate = "my::ac", companions = false"#,
            "async fn f(x: u32) -> Option<u32> { Some(x) }",
        );
        assert!(out.contains("my :: ac :: __private"), "{out}");
        assert!(!out.contains(":: action_cache"), "{out}");
        assert!(out.contains("load_uncoalesced"), "{out}");
        assert!(out.contains("no_refresh"), "{out}");
        assert!(out.contains("NotCached"), "{out}");
        assert!(out.contains("from_millis (250u64)"), "{out}");
        assert!(!out.contains("f_key"), "{out}");
    }

    #[test]
    fn type_parameters_are_keyed_unless_only_skipped_arguments_name_them() {
        let out = expand_str(
            "fresh = 1, skip(client)",
            "async fn get<'a, C: Client, T, K, const N: usize>(client: &'a C, k: K) -> Result<T, E> { todo!() }",
        );
        assert!(out.contains("\"<T>\""), "{out}");
        assert!(out.contains("\"<K>\""), "{out}");
        assert!(out.contains("\"<N>\""), "{out}");
        assert!(!out.contains("\"<C>\""), "{out}");
        assert!(!out.contains("\"<'a>\""), "{out}");
        // no receiver and no `Self`: the scope marker, but no `type_name::<Self>`
        assert!(out.contains("__ac_scope_marker"), "{out}");
        assert!(!out.contains("\"<Self>\""), "{out}");
        // the companions take the keyed parameters
        assert!(
            out.contains("fn get_key < T , K , const N : usize >"),
            "{out}"
        );
    }

    #[test]
    fn self_is_keyed_when_in_scope_and_the_default_name_is_used() {
        let out = expand_str("fresh = 1", "async fn f(&self) -> u32 { 1 }");
        assert!(out.contains("\"<Self>\""), "{out}");
        let out = expand_str("fresh = 1", "async fn f() -> u32 { Self::g() }");
        assert!(out.contains("\"<Self>\""), "{out}");
        // a nested item's own `Self` does not count
        let out = expand_str(
            "fresh = 1",
            "async fn f() -> u32 { struct S; impl S { fn g() -> Self { S } } 1 }",
        );
        assert!(!out.contains("\"<Self>\""), "{out}");
        let out = expand_str(r#"fresh = 1, name = "n""#, "async fn f(&self) -> u32 { 1 }");
        assert!(
            !out.contains("\"<Self>\"") && !out.contains("__ac_scope_marker"),
            "{out}"
        );
    }

    #[test]
    fn the_wrapper_asks_the_type_and_put_types_follow_the_spelling() {
        let out = expand_str("fresh = 1", "async fn f() -> ApiResult<Order> { todo!() }");
        assert!(out.contains("Probe :: < ApiResult < Order > >"), "{out}");
        assert!(out.contains("StoredValue < ApiResult < Order > >"), "{out}");
        let out = expand_str("fresh = 1", "async fn f() -> Result<Order, E> { todo!() }");
        assert!(out.contains("value : & Order"), "{out}");
        let out = expand_str("fresh = 1", "async fn f() -> io::Result<Order> { todo!() }");
        assert!(out.contains("value : & Order"), "{out}");
        let out = expand_str("fresh = 1", "async fn f<T>() -> T { todo!() }");
        assert!(out.contains("value : & T"), "{out}");
        let out = expand_str(
            "fresh = 1, cache_none = true",
            "async fn f() -> Option<u8> { None }",
        );
        assert!(out.contains("__ac_shape_keep_none"), "{out}");
        assert!(
            out.contains("value : & :: core :: option :: Option < u8 >"),
            "{out}"
        );
        let out = expand_str(
            r#"fresh = 1, returns = "result""#,
            "async fn f() -> Res { todo!() }",
        );
        assert!(out.contains("result_shape :: < Res >"), "{out}");
    }
}
