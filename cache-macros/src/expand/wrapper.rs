//! The wrapper: the function's new body, generated from the [`Model`]. It moves the original
//! body into an async closure, picks the cache, builds the key, and hands the engine a loader
//! and a refresh (which takes owned copies of the arguments) for the policy's windows. The key
//! expression and the policy static are generated here too; the companions reuse them, so a
//! call and its companions address one entry.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, Type};

use super::model::{Model, Passing, RefreshCopy, RefreshPlan, ReturnKind};
use super::tokens::{elide, first_span, replace_self, respan};
use crate::attr::{Codec, Returns};

/// The function with its body replaced by the cached call.
pub(super) fn wrapper(model: &Model) -> syn::Result<ItemFn> {
    let private = &model.private;
    let site = &model.site;

    // ---- the body as a Copy async closure ----
    let ret_ty = &model.ret_ty;
    let body_tokens = model.func.block.to_token_stream();
    let body_tokens = if model.has_receiver {
        replace_self(body_tokens)
    } else {
        body_tokens
    };
    let closure_params = model.params.iter().map(|p| {
        let id = &p.inner_ident;
        let ty = elide(&p.ty);
        let m = p.mutable.then(|| quote!(mut));
        quote!(#m #id: #ty)
    });
    let call_args: Vec<&Ident> = model.params.iter().map(|p| &p.ident).collect();
    let body_closure = quote! {
        #[allow(unused_mut, clippy::needless_return, clippy::let_and_return)]
        let __ac_call = async move |#(#closure_params),*| -> #ret_ty #body_tokens;
    };
    let uncached = quote!(return __ac_call(#(#call_args),*).await;);

    // ---- cache selection ----
    let select_cache = match &model.cache {
        Some(expr) => quote!(let __ac_cache: &#private::Cache = &(#expr);),
        None => quote! {
            let __ac_cache: &#private::Cache = match #private::global_or_warn(#site) {
                ::core::option::Option::Some(__ac_c) => __ac_c,
                ::core::option::Option::None => { #uncached }
            };
        },
    };

    // ---- how the return type maps onto stored values: decided by the type ----
    let returns = quote!(#private::returns);
    let ret_sp = first_span(ret_ty);
    let shape_expr = shape_expr(model, &returns, ret_sp);
    let shape_stmt = quote!(let __ac_shape = #shape_expr;);
    let (t_ty, e_ty) = engine_types(model, &returns);
    // Turns a call of the body (evaluated before any `async move`, so the block captures only
    // the body's future) into a future of the engine's `Result<T, E>`.
    let to_result = |call: TokenStream| -> TokenStream {
        quote!({
            let __ac_fut = #call;
            async move { #returns::Shape::split(__ac_shape, __ac_fut.await) }
        })
    };
    let from_result = quote!(#returns::Shape::join(__ac_shape, __ac_result));

    // ---- loader and refresh ----
    let (slots, loader, refresh) = match &model.refresh {
        RefreshPlan::Background(copies) => background(model, copies, to_result),
        RefreshPlan::Inline => {
            let load_call = to_result(quote!(__ac_call(#(#call_args),*)));
            (
                TokenStream::new(),
                quote!(move || #load_call),
                quote!(#private::no_refresh),
            )
        }
    };
    let load_fn = if model.coalesce {
        format_ident!("load_coalesced")
    } else {
        format_ident!("load_uncoalesced")
    };
    // Span the helper's type arguments at the user's types so unmet bounds point there.
    // ... and span the call itself (whose result and `.await` repeat those bounds) at the type
    // most likely to be wrong, so rustc reports each unmet bound once.
    let call_span = match &model.ret_kind {
        ReturnKind::Result { err: Some(e), .. } => first_span(e),
        ReturnKind::Result { ok, err: None } => first_span(ok),
        ReturnKind::Option(t) => first_span(t),
        ReturnKind::Plain(_) | ReturnKind::Unknown => ret_sp,
    };
    let private_at_call = respan(private.clone(), call_span);
    // `Some(T::clone)` when the value type is `Clone` (autoref specialization, resolved at the
    // concrete type), so coalesced waiters get the leader's value even when it cannot be stored.
    let clone_value = quote! {
        {
            #[allow(unused_imports)]
            use #private::{ProbeClone as _, ProbeNoClone as _};
            (&#private::CloneProbe::<#t_ty>::new()).cloner()
        }
    };
    let load_call = quote_spanned! {call_span=>
        #private_at_call::#load_fn::<#t_ty, #e_ty, _, _, _>(__ac_cache, &__ac_key, &*__AC_POLICY, #loader, #refresh, #clone_value).await
    };

    let key_fail = quote! {
        ::core::result::Result::Err(__ac_e) => {
            #private::warn_key_error(#site, &__ac_e);
            #uncached
        }
    };

    let key_expr = key_expr(model);
    let policy_static = policy_static(model);
    let wrapper_body = quote! {
        {
            #body_closure
            #select_cache
            let __ac_key = match #key_expr {
                ::core::result::Result::Ok(__ac_k) => __ac_k,
                #key_fail
            };
            #policy_static
            #shape_stmt
            #slots
            let __ac_result = #load_call;
            #from_result
        }
    };

    let mut wrapper = model.func.clone();
    // `mut` on a parameter is not part of the signature; the closure keeps it.
    for input in wrapper.sig.inputs.iter_mut() {
        match input {
            FnArg::Typed(pt) => {
                if let Pat::Ident(pi) = &mut *pt.pat {
                    pi.mutability = None;
                }
            }
            FnArg::Receiver(r) => {
                if r.reference.is_none() {
                    r.mutability = None;
                }
            }
        }
    }
    wrapper.block = syn::parse2(wrapper_body)?;
    Ok(wrapper)
}

/// The expression that builds the call's `CacheKey` (or a `KeyError`): the key name, `version`,
/// the key arguments, the keyed type and const parameters, the scope and the tags.
pub(super) fn key_expr(model: &Model) -> TokenStream {
    let private = &model.private;
    let key_name = &model.key_name;
    let version = model.version.map(|v| quote!(__ac_b.version(#v);));
    // In name order, after the `<…>` names below (`<` sorts before any identifier): the order
    // the key's bytes take, so the builder appends each argument without moving any.
    let mut key_params: Vec<_> = model.key_params().collect();
    key_params.sort_by_key(|p| p.ident.to_string());
    let key_args = key_params.into_iter().map(|p| {
        let ident = &p.ident;
        let name = ident.to_string();
        let ty = &p.ty;
        quote_spanned! {ty.span()=>
            #private::key_arg::<#ty>(&mut __ac_b, #name, &#ident)?;
        }
    });
    // Type and const parameters, under names no argument can have.
    let generic_args = model.keyed_generics.iter().map(|g| {
        let ident = &g.ident;
        let name = format!("<{}>", ident.unraw());
        if g.is_const {
            quote!(#private::key_arg(&mut __ac_b, #name, &#ident)?;)
        } else {
            quote!(#private::key_arg::<str>(&mut __ac_b, #name, ::core::any::type_name::<#ident>())?;)
        }
    });
    let scope_args = model
        .scope_key
        .map(|scope| scope_key_args(private, scope.with_self));
    let tag_stmts = model.tags.iter().map(|t| {
        let fmt = &t.format;
        let targs = &t.args;
        quote!(__ac_b.tag(::std::format!(#fmt #(, #targs)*));)
    });
    quote! {
        (|| -> ::core::result::Result<#private::CacheKey, #private::KeyError> {
            let mut __ac_b = #private::KeyBuilder::from_static(#key_name);
            #version
            #scope_args
            #(#generic_args)*
            #(#key_args)*
            #(#tag_stmts)*
            ::core::result::Result::Ok(__ac_b.build())
        })()
    }
}

/// Statements adding the key arguments that tell apart functions of one default name: `Self`
/// (with its type arguments) when it is in scope, and the item the function is defined in
/// (an `impl` block, a trait impl, an enclosing function) when that is not the module itself.
///
/// The enclosing item is read from `type_name_of_val` of a marker `fn` declared inside the
/// generated code: `path::to::Type::method::{{closure}}::__ac_scope_marker`. Dropping the
/// marker, the closure segments and the host function's own name leaves the scope, the same
/// from the function and from each companion. Like `module_path!`, that text is the compiler's.
fn scope_key_args(private: &TokenStream, self_known: bool) -> TokenStream {
    let self_arg = self_known.then(|| {
        quote! {
            #private::key_arg::<str>(&mut __ac_b, "<Self>", ::core::any::type_name::<Self>())?;
        }
    });
    quote! {
        #self_arg
        {
            fn __ac_scope_marker() {}
            static __AC_SCOPE: ::std::sync::LazyLock<::core::option::Option<&'static str>> =
                ::std::sync::LazyLock::new(|| {
                    let mut __ac_p = ::core::any::type_name_of_val(&__ac_scope_marker)
                        .strip_suffix("::__ac_scope_marker")?;
                    loop {
                        let (__ac_head, __ac_last) = __ac_p.rsplit_once("::")?;
                        __ac_p = __ac_head;
                        if !__ac_last.starts_with('{') {
                            // `__ac_last` is the host function; `__ac_p` is where it lives.
                            break;
                        }
                    }
                    (__ac_p != ::core::module_path!()).then_some(__ac_p)
                });
            if let ::core::option::Option::Some(__ac_s) = *__AC_SCOPE {
                #private::key_arg::<str>(&mut __ac_b, "<scope>", __ac_s)?;
            }
        }
    }
}

/// The statement declaring `__AC_POLICY`, the function's `Policy`.
pub(super) fn policy_static(model: &Model) -> TokenStream {
    let private = &model.private;
    let fresh_ms = model.policy.fresh_ms;
    let stale_ms = model.policy.stale_ms;
    let jitter = model.policy.jitter.map(|j| quote!(.jitter(#j)));
    let codec = model.policy.codec.map(|c| match c {
        Codec::Json => quote!(.codec(#private::Codec::Json)),
        Codec::MessagePack => quote!(.codec(#private::Codec::MessagePack)),
    });
    let mode = match model.refresh {
        RefreshPlan::Background(_) => quote!(#private::RefreshMode::Background),
        RefreshPlan::Inline => quote!(#private::RefreshMode::Inline),
    };
    quote! {
        static __AC_POLICY: ::std::sync::LazyLock<#private::Policy> = ::std::sync::LazyLock::new(|| {
            #private::Policy::builder()
                .fresh(::core::time::Duration::from_millis(#fresh_ms))
                .stale(::core::time::Duration::from_millis(#stale_ms))
                #jitter
                #codec
                .refresh_mode(#mode)
                .build()
                .expect("`#[cached_action]` checked this policy at compile time")
        });
    }
}

/// The `returns::Shape` that maps the return type onto stored values: asked of the type (an
/// autoref probe) unless `returns = "..."` states it.
fn shape_expr(model: &Model, returns: &TokenStream, ret_sp: Span) -> TokenStream {
    let ret_ty = &model.ret_ty;
    match model.returns {
        None => {
            let method = if model.cache_none {
                format_ident!("__ac_shape_keep_none")
            } else {
                format_ident!("__ac_shape")
            };
            quote! {{
                #[allow(unused_imports)]
                use #returns::{ViaOption as _, ViaResult as _, ViaValue as _};
                #[allow(clippy::needless_borrow)]
                (&#returns::Probe::<#ret_ty>::new()).#method()
            }}
        }
        Some((kind, lit_sp)) => {
            let at_ret = respan(returns.clone(), ret_sp);
            match kind {
                Returns::Result => quote_spanned!(ret_sp=> #at_ret::result_shape::<#ret_ty>()),
                Returns::Option if model.cache_none => {
                    quote_spanned!(ret_sp=> #at_ret::option_keep_none_shape::<#ret_ty>())
                }
                Returns::Option => quote_spanned!(ret_sp=> #at_ret::option_shape::<#ret_ty>()),
                Returns::Value => {
                    let at_lit = respan(returns.clone(), lit_sp);
                    let check = quote! {{
                        #[allow(unused_imports)]
                        use #returns::{ViaOption as _, ViaResult as _, ViaValue as _};
                        #[allow(clippy::needless_borrow)]
                        (&#returns::Probe::<#ret_ty>::new()).__ac_value_check()
                    }};
                    quote_spanned!(lit_sp=> #at_lit::value_shape::<#ret_ty, _>(#check))
                }
            }
        }
    }
}

/// The engine's `T` and `E` where the spelling tells (they agree with the shape then), so that
/// unmet bounds point at the user's types; `_` (inferred from the shape) otherwise.
fn engine_types(model: &Model, returns: &TokenStream) -> (TokenStream, TokenStream) {
    let infer = || (quote!(_), quote!(_));
    match (model.returns.map(|(k, _)| k), &model.ret_kind) {
        (None | Some(Returns::Result), ReturnKind::Result { ok, err: Some(err) }) => {
            (ok.to_token_stream(), err.to_token_stream())
        }
        (None | Some(Returns::Option), ReturnKind::Option(inner)) if model.cache_none => (
            quote_spanned!(inner.span()=> ::core::option::Option<#inner>),
            quote!(::core::convert::Infallible),
        ),
        (None | Some(Returns::Option), ReturnKind::Option(inner)) => {
            (inner.to_token_stream(), quote!(#returns::NotCached))
        }
        (None, ReturnKind::Plain(t)) => (t.to_token_stream(), quote!(::core::convert::Infallible)),
        _ => infer(),
    }
}

/// For a background refresh: the slots owned arguments wait in (the loader takes them, a
/// refresh copies them), the loader, and the refresh that copies every argument and calls the
/// body with references to its copies.
fn background(
    model: &Model,
    plans: &[RefreshCopy],
    to_result: impl Fn(TokenStream) -> TokenStream,
) -> (TokenStream, TokenStream, TokenStream) {
    let private = &model.private;
    let params = &model.params;
    let slot = |i: usize| format_ident!("__ac_slot_{}", i);
    let own = |i: usize| format_ident!("__ac_own_{}", i);
    let slots = params
        .iter()
        .enumerate()
        .filter(|(_, p)| p.passing == Passing::Owned)
        .map(|(i, p)| {
            let s = slot(i);
            let id = &p.ident;
            quote!(let #s = ::std::sync::Mutex::new(::core::option::Option::Some(#id));)
        });
    let slots = quote!(#(#slots)*);
    let take = params.iter().enumerate().map(|(i, p)| {
        let id = &p.ident;
        let s = slot(i);
        match p.passing {
            Passing::Ref => quote!(#id),
            Passing::Owned => quote!(#private::take_slot(&#s)),
        }
    });
    let load_call = to_result(quote!(__ac_call(#(#take),*)));
    let loader = quote!(|| #load_call);
    let mut copies = Vec::new();
    let mut reborrows = Vec::new();
    let mut pass = Vec::new();
    for (i, (p, plan)) in params.iter().zip(plans).enumerate() {
        let o = own(i);
        let id = &p.ident;
        let s = slot(i);
        // The argument as the refresh copies it: owned ones wait in their slot.
        let read_slot = |sp: Span, copy: TokenStream| {
            quote_spanned! {sp=>
                let #o = {
                    let __ac_g = #s.lock().unwrap_or_else(::std::sync::PoisonError::into_inner);
                    let __ac_v = __ac_g.as_ref().expect("cached_action: an argument was used after the load");
                    #copy
                };
            }
        };
        // Function paths, not closures: clippy would lint a closure spanned at user code.
        let borrow_each =
            |u: &Type| quote_spanned!(first_span(u)=> ::core::borrow::Borrow::<#u>::borrow);
        let copy_each = |u: &Type| {
            let sp = first_span(u);
            let pr = respan(private.clone(), sp);
            quote_spanned!(sp=> #pr::owned_copy::<#u>)
        };
        match plan {
            RefreshCopy::Clone => {
                let ty = &p.ty;
                let sp = first_span(ty);
                let pr = respan(private.clone(), sp);
                copies.push(quote_spanned!(sp=> let #o = #pr::clone_slot::<#ty>(&#s);));
                pass.push(quote!(#o));
            }
            RefreshCopy::ToOwned(referent) => {
                let sp = first_span(referent);
                let pr = respan(private.clone(), sp);
                copies.push(quote_spanned!(sp=> let #o = #pr::owned_copy::<#referent>(#id);));
                pass.push(quote_spanned!(sp=> ::core::borrow::Borrow::borrow(&#o)));
            }
            RefreshCopy::OptionOfRef(u) => {
                let copy_each = copy_each(u);
                copies.push(read_slot(
                    first_span(u),
                    quote!(::core::option::Option::map(*__ac_v, #copy_each)),
                ));
                let borrow_each = borrow_each(u);
                pass.push(quote! {
                    ::core::option::Option::map(::core::option::Option::as_ref(&#o), #borrow_each)
                });
            }
            RefreshCopy::VecOfRefs(u) => {
                let copy_each = copy_each(u);
                copies.push(read_slot(
                    first_span(u),
                    quote!(__ac_v.iter().copied().map(#copy_each).collect::<::std::vec::Vec<_>>()),
                ));
                let borrow_each = borrow_each(u);
                pass.push(quote!(#o.iter().map(#borrow_each).collect::<::std::vec::Vec<_>>()));
            }
            RefreshCopy::SliceOfRefs(u) => {
                let copy_each = copy_each(u);
                copies.push(quote! {
                    let #o = #id.iter().copied().map(#copy_each).collect::<::std::vec::Vec<_>>();
                });
                let borrow_each = borrow_each(u);
                let r = format_ident!("__ac_reborrow_{}", i);
                reborrows.push(quote! {
                    let #r = #o.iter().map(#borrow_each).collect::<::std::vec::Vec<_>>();
                });
                pass.push(quote!(::core::ops::Deref::deref(&#r)));
            }
        }
    }
    let refresh_call = to_result(quote!(__ac_call(#(#pass),*)));
    let refresh = quote! {
        || {
            #(#copies)*
            let __ac_call = __ac_call;
            #private::boxed_refresh(async move {
                #(#reborrows)*
                (#refresh_call).await
            })
        }
    };
    (slots, loader, refresh)
}
