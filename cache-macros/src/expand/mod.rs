//! Code generation for `#[cached_action]`, on `proc_macro2` types so it can be unit-tested.
//!
//! One pass parses both token streams and builds a [`Model`] of the function (every check runs
//! there); [`wrapper`] and the companions are generated from it.

mod model;
mod tokens;
mod wrapper;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, ItemFn, Type};

use self::model::{Model, Param, ReturnKind};
use self::tokens::{first_span, generics_for, respan};
use self::wrapper::{key_expr, policy_static};
use crate::attr::{CachedArgs, Returns};

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
        companions(&model)
    } else {
        TokenStream::new()
    };
    Ok(quote! {
        #wrapper
        #companions
    })
}

/// `<fn>_key`, `<fn>_invalidate` and `<fn>_put`.
fn companions(model: &Model) -> TokenStream {
    let private = &model.private;
    let site = &model.site;
    let key_expr = key_expr(model);
    let policy_static = policy_static(model);
    let keyed_generics: Vec<Ident> = model
        .keyed_generics
        .iter()
        .map(|g| g.ident.clone())
        .collect();
    let vis = &model.func.vis;
    let fn_name = &model.func.sig.ident;
    let span = fn_name.span();
    let key_fn = format_ident!("{}_key", fn_name, span = span);
    let inv_fn = format_ident!("{}_invalidate", fn_name, span = span);
    let put_fn = format_ident!("{}_put", fn_name, span = span);
    let fn_name_str = fn_name.to_string();

    let key_params: Vec<&Param> = model.key_params().collect();
    let receiver = key_params.iter().find(|p| p.receiver).map(|p| p.ty.clone());
    let recv_tokens = match (&receiver, model.cache_uses_self) {
        (Some(ty), _) => Some(quote!(self: #ty,)),
        (None, true) => Some(quote!(&self,)),
        (None, false) => None,
    };
    let plain_params: Vec<TokenStream> = key_params
        .iter()
        .filter(|p| !p.receiver)
        .map(|p| {
            let id = &p.ident;
            let ty = &p.ty;
            quote!(#id: #ty)
        })
        .collect();
    let key_types: Vec<&Type> = key_params
        .iter()
        .filter(|p| !p.receiver)
        .map(|p| &p.ty)
        .collect();

    let ret = &model.ret_ty;
    let returns = quote!(#private::returns);
    let value_ty = put_value_ty(model);

    // The value parameter is `value` unless a key argument already has that name.
    let value_ident = if key_params.iter().any(|p| p.ident == "value") {
        format_ident!("cached_value")
    } else {
        format_ident!("value")
    };
    let (value_param, put_call) = match &value_ty {
        Some(value_ty) => {
            let value_span = first_span(value_ty);
            let private_at_value = respan(private.clone(), value_span);
            (
                quote!(#value_ident: &#value_ty),
                quote_spanned! {value_span=>
                    #private_at_value::put::<#value_ty>(__ac_c, &__ac_key, &*__AC_POLICY, #value_ident).await
                },
            )
        }
        None => (
            quote!(#value_ident: &(impl #returns::StoredValue<#ret>)),
            quote!(__ac_c.put(&__ac_key, &*__AC_POLICY, #value_ident).await),
        ),
    };

    let key_generics = generics_for(&model.func.sig.generics, &key_types, &keyed_generics);
    let (kg_impl, _, kg_where) = key_generics.split_for_impl();
    let mut put_types = key_types.clone();
    put_types.push(value_ty.as_ref().unwrap_or(ret));
    let put_generics = generics_for(&model.func.sig.generics, &put_types, &keyed_generics);
    let (pg_impl, _, pg_where) = put_generics.split_for_impl();

    let cache_opt = match &model.cache {
        Some(expr) => quote!(::core::option::Option::Some::<&#private::Cache>(&(#expr))),
        None => quote!(#private::global()),
    };
    let doc_key = format!(
        "The full cache key a call to `{fn_name_str}` with these key arguments uses (generated by `#[cached_action]`).\n\n# Panics\n\nIf an argument cannot be serialized into a key (for example a NaN float); such calls are never cached."
    );
    let doc_inv = format!(
        "Removes the entry a call to `{fn_name_str}` with these key arguments would use; `Ok(false)` when there was none or no cache is configured (generated by `#[cached_action]`)."
    );
    let doc_put = format!(
        "Writes `value` as the entry a call to `{fn_name_str}` with these key arguments would read, with the function's tags and policy (generated by `#[cached_action]`)."
    );

    quote! {
        #[doc = #doc_key]
        #[allow(dead_code)]
        #vis fn #key_fn #kg_impl (#recv_tokens #(#plain_params),*) -> ::std::string::String #kg_where {
            let __ac_key = match #key_expr {
                ::core::result::Result::Ok(__ac_k) => __ac_k,
                ::core::result::Result::Err(__ac_e) => #private::key_error_panic(#site, &__ac_e),
            };
            match #cache_opt {
                ::core::option::Option::Some(__ac_c) => __ac_c.full_key(&__ac_key),
                ::core::option::Option::None => #private::default_full_key(&__ac_key),
            }
        }

        #[doc = #doc_inv]
        #[allow(dead_code)]
        #vis async fn #inv_fn #kg_impl (#recv_tokens #(#plain_params),*) -> ::core::result::Result<bool, #private::CacheError> #kg_where {
            let __ac_key = match #key_expr {
                ::core::result::Result::Ok(__ac_k) => __ac_k,
                // Calls whose arguments cannot form a key never touch the cache.
                ::core::result::Result::Err(_) => return ::core::result::Result::Ok(false),
            };
            match #cache_opt {
                ::core::option::Option::Some(__ac_c) => __ac_c.invalidate(&__ac_key).await,
                ::core::option::Option::None => ::core::result::Result::Ok(false),
            }
        }

        #[doc = #doc_put]
        #[allow(dead_code)]
        #vis async fn #put_fn #pg_impl (#recv_tokens #(#plain_params,)* #value_param) -> ::core::result::Result<(), #private::CacheError> #pg_where {
            let __ac_key = match #key_expr {
                ::core::result::Result::Ok(__ac_k) => __ac_k,
                ::core::result::Result::Err(__ac_e) => {
                    #private::warn_key_error(#site, &__ac_e);
                    return ::core::result::Result::Ok(());
                }
            };
            #policy_static
            match #cache_opt {
                ::core::option::Option::Some(__ac_c) => #put_call,
                ::core::option::Option::None => ::core::result::Result::Ok(()),
            }
        }
    }
}

/// The value `_put` takes: what the wrapper stores. Spelled out where the spelling tells;
/// `None` (a path that may be an alias: whatever `StoredValue<Ret>` accepts) otherwise.
fn put_value_ty(model: &Model) -> Option<Type> {
    let ret = &model.ret_ty;
    let cache_none = model.cache_none;
    match (model.returns.map(|(k, _)| k), &model.ret_kind) {
        (Some(Returns::Value), _) => Some(ret.clone()),
        (None | Some(Returns::Option), ReturnKind::Option(t)) if cache_none => {
            Some(syn::parse_quote!(::core::option::Option<#t>))
        }
        (None | Some(Returns::Option), ReturnKind::Option(t)) => Some(t.clone()),
        (Some(Returns::Option), _) if cache_none => Some(ret.clone()),
        (None | Some(Returns::Result), ReturnKind::Result { ok, .. }) => Some(ok.clone()),
        (None, ReturnKind::Plain(t)) => Some(t.clone()),
        // An alias (or a mismatch, which the wrapper reports once).
        (Some(Returns::Option | Returns::Result), _) | (None, ReturnKind::Unknown) => None,
    }
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
