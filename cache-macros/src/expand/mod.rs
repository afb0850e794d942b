//! Code generation for `#[cached_action]`, on `proc_macro2` types so it can be unit-tested.

mod tokens;

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    FnArg, GenericArgument, GenericParam, Generics, Ident, ItemFn, Pat, PathArguments, ReturnType,
    Type,
};

use self::tokens::{
    borrows, elide, err, first_span, generics_for, idents_in, impl_trait_span, mentions_ident,
    pretty, replace_self, respan, single_arg,
};
use crate::attr::{CachedArgs, Refresh, Returns};

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

/// How an argument reaches the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Passing {
    /// `&T`: passed by (copied) reference; a background refresh takes `ToOwned::to_owned`.
    Ref,
    /// `T`: moved into the call; a background refresh clones it first.
    Owned,
}

/// One parameter of the function (the receiver included).
#[derive(Debug)]
struct Param {
    /// The name used in generated code (`self` for the receiver).
    ident: Ident,
    /// The name the body sees inside the wrapped closure (`__ac_self` for the receiver).
    inner_ident: Ident,
    /// Whether the binding was declared `mut`.
    mutable: bool,
    /// The declared type (`&Self` / `Self` / `T` for receivers).
    ty: Type,
    /// For `Passing::Ref`, the type behind the reference.
    referent: Option<Type>,
    passing: Passing,
    receiver: bool,
}

impl Param {
    /// How a background refresh copies this argument (receivers are `Self` or `&Self`).
    fn refresh_copy(&self) -> syn::Result<RefreshCopy> {
        match (&self.passing, &self.referent) {
            (Passing::Ref, Some(referent)) if self.receiver => {
                Ok(RefreshCopy::ToOwned(referent.clone()))
            }
            _ if self.receiver => Ok(RefreshCopy::Clone),
            _ => refresh_copy(&self.ty),
        }
    }
}

/// What the return type looks like as spelled. The wrapper decides by the type (through
/// `returns::Probe`), so this only types the `_put` companion's value and places error spans.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per expansion
enum ReturnKind {
    /// `Result<T, E>`, or a `Result` alias such as `io::Result<T>` (`err` unknown).
    Result { ok: Type, err: Option<Type> },
    /// `Option<T>`.
    Option(Type),
    /// A type that cannot be a `Result` or an `Option`: `()`, a tuple, a reference, a generic
    /// parameter, a well-known standard type.
    Plain(Type),
    /// Any other path: a plain value, or an alias of a `Result` or an `Option`.
    Unknown,
}

/// Standard types that are neither a `Result` nor an `Option` whatever their arguments.
const PLAIN_STD_TYPES: &[&str] = &[
    "String", "Vec", "VecDeque", "HashMap", "BTreeMap", "HashSet", "BTreeSet", "Box", "Arc",
    "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
    "isize", "f32", "f64",
];

fn check_arg_type(ty: &Type) -> syn::Result<()> {
    if let Type::Reference(r) = ty {
        if r.mutability.is_some() {
            return err(
                ty,
                "`&mut` arguments are not supported by `#[cached_action]`: a cached call may not run the function at all, so it cannot promise to mutate the argument",
            );
        }
    }
    if let Some(span) = impl_trait_span(ty) {
        return Err(syn::Error::new(
            span,
            "`impl Trait` arguments are not supported by `#[cached_action]`; use a named generic parameter instead",
        ));
    }
    Ok(())
}

/// `&U` with a non-borrowing `U`: the `U`.
fn plain_referent(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(r) if !borrows(&r.elem) => Some(&r.elem),
        _ => None,
    }
}

/// How a background refresh takes an owned copy of an argument.
#[derive(Debug, Clone)]
enum RefreshCopy {
    /// An owned, non-borrowing `T`: `Clone`.
    Clone,
    /// `&U`: `U::to_owned`.
    ToOwned(Type),
    /// `Option<&U>`: `Option<U::Owned>`.
    OptionOfRef(Type),
    /// `&[&U]`: `Vec<U::Owned>`.
    SliceOfRefs(Type),
    /// `Vec<&U>`: `Vec<U::Owned>`.
    VecOfRefs(Type),
}

/// Picks the owned copy a background refresh takes of an argument of type `ty`, or explains
/// what to write instead.
fn refresh_copy(ty: &Type) -> syn::Result<RefreshCopy> {
    if let Type::Reference(r) = ty {
        if !borrows(&r.elem) {
            return Ok(RefreshCopy::ToOwned((*r.elem).clone()));
        }
        if let Type::Slice(sl) = &*r.elem {
            if let Some(u) = plain_referent(&sl.elem) {
                return Ok(RefreshCopy::SliceOfRefs(u.clone()));
            }
        }
    } else if !borrows(ty) {
        return Ok(RefreshCopy::Clone);
    } else if let Some(u) = single_arg(ty, "Option").and_then(plain_referent) {
        return Ok(RefreshCopy::OptionOfRef(u.clone()));
    } else if let Some(u) = single_arg(ty, "Vec").and_then(plain_referent) {
        return Ok(RefreshCopy::VecOfRefs(u.clone()));
    }
    err(
        ty,
        format!(
            "a background refresh outlives the call, so it needs an owned copy of every argument, and `{}` borrows in a way `#[cached_action]` cannot copy (it copies `&T`, `Option<&T>`, `&[&T]` and `Vec<&T>`); take an owned type here (`String`, `Option<String>`, `Vec<String>`...), or use `refresh = \"inline\"`, which needs no copies",
            pretty(ty)
        ),
    )
}

fn collect_params(func: &ItemFn) -> syn::Result<Vec<Param>> {
    let mut params = Vec::new();
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                if r.reference.is_some() && r.mutability.is_some() {
                    return err(
                        r,
                        "`&mut self` is not supported by `#[cached_action]`: a cached call may not run the method at all",
                    );
                }
                let ty = (*r.ty).clone();
                check_arg_type(&ty)?;
                let (passing, referent) = match &ty {
                    Type::Reference(tr) => (Passing::Ref, Some((*tr.elem).clone())),
                    _ => (Passing::Owned, None),
                };
                params.push(Param {
                    ident: Ident::new("self", r.self_token.span),
                    inner_ident: Ident::new("__ac_self", r.self_token.span),
                    mutable: r.reference.is_none() && r.mutability.is_some(),
                    ty,
                    referent,
                    passing,
                    receiver: true,
                });
            }
            FnArg::Typed(pt) => {
                let (ident, mutable) = match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                        (pi.ident.clone(), pi.mutability.is_some())
                    }
                    other => {
                        return err(
                            other,
                            "`#[cached_action]` arguments must be plain names (they become part of the cache key); destructure inside the function",
                        )
                    }
                };
                let ty = (*pt.ty).clone();
                check_arg_type(&ty)?;
                let (passing, referent) = match &ty {
                    Type::Reference(tr) => (Passing::Ref, Some((*tr.elem).clone())),
                    _ => (Passing::Owned, None),
                };
                params.push(Param {
                    inner_ident: ident.clone(),
                    ident,
                    mutable,
                    ty,
                    referent,
                    passing,
                    receiver: false,
                });
            }
        }
    }
    Ok(params)
}

fn classify_return(output: &ReturnType, generics: &Generics) -> syn::Result<ReturnKind> {
    let ty = match output {
        ReturnType::Default => return Ok(ReturnKind::Plain(syn::parse_quote!(()))),
        ReturnType::Type(_, ty) => &**ty,
    };
    if let Some(span) = impl_trait_span(ty) {
        return Err(syn::Error::new(
            span,
            "`#[cached_action]` needs a concrete return type to deserialize cached values into; `impl Trait` cannot be cached",
        ));
    }
    let Type::Path(tp) = ty else {
        return Ok(ReturnKind::Plain(ty.clone()));
    };
    let Some(last) = tp.path.segments.last().filter(|_| tp.qself.is_none()) else {
        return Ok(ReturnKind::Unknown);
    };
    let generic_types: Vec<Type> = match &last.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let is_type_param =
        tp.path.segments.len() == 1 && generics.type_params().any(|p| p.ident == last.ident);
    Ok(
        match (last.ident.to_string().as_str(), generic_types.len()) {
            ("Result", 2) => ReturnKind::Result {
                ok: generic_types[0].clone(),
                err: Some(generic_types[1].clone()),
            },
            ("Result", 1) => ReturnKind::Result {
                ok: generic_types[0].clone(),
                err: None,
            },
            ("Option", 1) => ReturnKind::Option(generic_types[0].clone()),
            (name, _) if is_type_param || PLAIN_STD_TYPES.contains(&name) => {
                ReturnKind::Plain(ty.clone())
            }
            _ => ReturnKind::Unknown,
        },
    )
}

/// The function's type and const parameters that are part of the key: all of them except those
/// that only the types of skipped arguments mention (a client's type says nothing about the
/// value). A parameter that only the return type or the body names is what tells
/// `get::<User>` from `get::<Queue>`.
fn keyed_generics(
    func: &ItemFn,
    params: &[Param],
    is_key: impl Fn(&Param) -> bool,
) -> Vec<(Ident, bool)> {
    let mut elsewhere = HashSet::new();
    let mut in_skipped = HashSet::new();
    for p in params.iter().filter(|p| !p.receiver) {
        let set = if is_key(p) {
            &mut elsewhere
        } else {
            &mut in_skipped
        };
        idents_in(p.ty.to_token_stream(), set);
    }
    idents_in(func.sig.output.to_token_stream(), &mut elsewhere);
    func.sig
        .generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some((t.ident.clone(), false)),
            GenericParam::Const(c) => Some((c.ident.clone(), true)),
            GenericParam::Lifetime(_) => None,
        })
        .filter(|(id, _)| {
            let name = id.to_string();
            elsewhere.contains(&name) || !in_skipped.contains(&name)
        })
        .collect()
}

/// Finds the `Self` type in a function body, outside nested items (whose `Self` is their own).
struct SelfTypeFinder(bool);
impl<'ast> Visit<'ast> for SelfTypeFinder {
    fn visit_item(&mut self, _: &'ast syn::Item) {}
    fn visit_ident(&mut self, i: &'ast Ident) {
        self.0 |= i == "Self";
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.0 |= mentions_ident(m.tokens.clone(), "Self");
        syn::visit::visit_macro(self, m);
    }
}

/// Whether generated code may name `Self`: the function has a receiver, or its signature, body
/// or `cache` expression names `Self` (so it sits in an `impl` or a trait).
fn self_in_scope(func: &ItemFn, args: &CachedArgs) -> bool {
    let sig = &func.sig;
    if sig.receiver().is_some()
        || mentions_ident(sig.inputs.to_token_stream(), "Self")
        || mentions_ident(sig.output.to_token_stream(), "Self")
        || mentions_ident(sig.generics.to_token_stream(), "Self")
        || mentions_ident(sig.generics.where_clause.to_token_stream(), "Self")
        || args
            .cache
            .as_ref()
            .is_some_and(|e| mentions_ident(e.to_token_stream(), "Self"))
    {
        return true;
    }
    let mut finder = SelfTypeFinder(false);
    finder.visit_block(&func.block);
    finder.0
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

fn duration_millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Expands a parsed function.
pub(crate) fn expand(args: &CachedArgs, func: ItemFn) -> syn::Result<TokenStream> {
    if func.sig.asyncness.is_none() {
        return err(
            func.sig.fn_token,
            "`#[cached_action]` can only be applied to an `async fn`",
        );
    }
    if let Some(v) = &func.sig.variadic {
        return err(v, "variadic functions cannot be cached");
    }
    let krate = args.krate();
    let private = quote!(#krate::__private);
    let params = collect_params(&func)?;
    let ret_kind = classify_return(&func.sig.output, &func.sig.generics)?;
    let has_receiver = params.iter().any(|p| p.receiver);

    // `skip(...)` must name arguments.
    for s in &args.skip {
        if s == "self" {
            continue;
        }
        if !params.iter().any(|p| !p.receiver && p.ident == *s) {
            return err(
                s,
                format!("`skip({s})` names no argument of `{}`", func.sig.ident),
            );
        }
    }
    let is_key = |p: &Param| {
        if p.receiver {
            args.include_self() && !args.skip.iter().any(|s| s == "self")
        } else {
            !args.skip.contains(&p.ident)
        }
    };
    let key_params: Vec<&Param> = params.iter().filter(|p| is_key(p)).collect();
    if args.include_self() && !has_receiver {
        return err(
            &func.sig.ident,
            "`include_self = true` needs a method with a `self` receiver",
        );
    }

    // Tag placeholders must name key arguments.
    for tag in &args.tags {
        for a in &tag.args {
            match params.iter().find(|p| !p.receiver && p.ident == *a) {
                None => {
                    return err(
                        &tag.lit,
                        format!(
                            "tag placeholder `{{{a}}}` names no argument of `{}`",
                            func.sig.ident
                        ),
                    )
                }
                Some(p) if !is_key(p) => {
                    return err(
                        &tag.lit,
                        format!(
                        "tag placeholder `{{{a}}}` names an argument left out of the key by `skip`"
                    ),
                    )
                }
                Some(_) => {}
            }
        }
    }

    let fn_name = &func.sig.ident;
    let fn_name_str = fn_name.to_string();
    let site = quote!(::core::concat!(::core::module_path!(), "::", #fn_name_str));
    let key_name = match &args.name {
        Some(lit) => quote!(#lit),
        None => site.clone(),
    };

    // ---- the key expression (shared by the wrapper and the companions) ----
    let version = args.version.map(|v| quote!(__ac_b.version(#v);));
    let key_args = key_params.iter().map(|p| {
        let ident = &p.ident;
        let name = ident.to_string();
        let ty = &p.ty;
        quote_spanned! {ty.span()=>
            #private::key_arg::<#ty>(&mut __ac_b, #name, &#ident)?;
        }
    });
    // Type and const parameters, under names no argument can have.
    let keyed_generics = keyed_generics(&func, &params, is_key);
    let generic_args = keyed_generics.iter().map(|(ident, is_const)| {
        let name = format!("<{}>", ident.unraw());
        if *is_const {
            quote!(#private::key_arg(&mut __ac_b, #name, &#ident)?;)
        } else {
            quote!(#private::key_arg::<str>(&mut __ac_b, #name, ::core::any::type_name::<#ident>())?;)
        }
    });
    // An explicit `name` is the function's identity as given; the default one is told apart
    // from same-named functions of other types or scopes.
    let scope_args = args
        .name
        .is_none()
        .then(|| scope_key_args(&private, self_in_scope(&func, args)));
    let tag_stmts = args.tags.iter().map(|t| {
        let fmt = &t.format;
        let targs = &t.args;
        quote!(__ac_b.tag(::std::format!(#fmt #(, #targs)*));)
    });
    let key_expr = quote! {
        (|| -> ::core::result::Result<#private::CacheKey, #private::KeyError> {
            let mut __ac_b = #private::KeyBuilder::new(#key_name);
            #version
            #(#key_args)*
            #(#generic_args)*
            #scope_args
            #(#tag_stmts)*
            ::core::result::Result::Ok(__ac_b.build())
        })()
    };

    // ---- the policy ----
    let fresh_ms = duration_millis(args.fresh.as_ref().map(|f| f.value).unwrap_or_default());
    let stale_ms = args
        .stale
        .as_ref()
        .map(|s| duration_millis(s.value))
        .unwrap_or(fresh_ms);
    let jitter = args.jitter.map(|(j, _)| quote!(.jitter(#j)));
    let mode = match args.refresh() {
        Refresh::Background => quote!(#private::RefreshMode::Background),
        Refresh::Inline => quote!(#private::RefreshMode::Inline),
    };
    let policy_static = quote! {
        static __AC_POLICY: ::std::sync::LazyLock<#private::Policy> = ::std::sync::LazyLock::new(|| {
            #private::Policy::builder()
                .fresh(::core::time::Duration::from_millis(#fresh_ms))
                .stale(::core::time::Duration::from_millis(#stale_ms))
                #jitter
                .refresh_mode(#mode)
                .build()
                .expect("`#[cached_action]` checked this policy at compile time")
        });
    };

    // ---- the body as a Copy async closure ----
    let ret_ty: Type = match &func.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let body_tokens = func.block.to_token_stream();
    let body_tokens = if has_receiver {
        replace_self(body_tokens)
    } else {
        body_tokens
    };
    let closure_params = params.iter().map(|p| {
        let id = &p.inner_ident;
        let ty = elide(&p.ty);
        let m = p.mutable.then(|| quote!(mut));
        quote!(#m #id: #ty)
    });
    let call_args: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let body_closure = quote! {
        #[allow(unused_mut, clippy::needless_return, clippy::let_and_return)]
        let __ac_call = async move |#(#closure_params),*| -> #ret_ty #body_tokens;
    };
    let uncached = quote!(return __ac_call(#(#call_args),*).await;);

    // ---- cache selection ----
    let select_cache = match &args.cache {
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
    let ret_sp = first_span(&ret_ty);
    let shape_expr = match args.returns.as_ref().map(|(kind, _)| *kind) {
        None => {
            let method = if args.cache_none() {
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
        Some(kind) => {
            let lit_sp = args.returns.as_ref().map_or(ret_sp, |(_, lit)| lit.span());
            let at_ret = respan(returns.clone(), ret_sp);
            match kind {
                Returns::Result => quote_spanned!(ret_sp=> #at_ret::result_shape::<#ret_ty>()),
                Returns::Option if args.cache_none() => {
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
    };
    let shape_stmt = quote!(let __ac_shape = #shape_expr;);
    // The engine's T and E where the spelling tells (they agree with the shape then), so that
    // unmet bounds point at the user's types; `_` (inferred from the shape) otherwise.
    let infer = || (quote!(_), quote!(_));
    let (t_ty, e_ty): (TokenStream, TokenStream) =
        match (args.returns.as_ref().map(|(k, _)| *k), &ret_kind) {
            (None | Some(Returns::Result), ReturnKind::Result { ok, err: Some(err) }) => {
                (ok.to_token_stream(), err.to_token_stream())
            }
            (None | Some(Returns::Option), ReturnKind::Option(inner)) if args.cache_none() => (
                quote_spanned!(inner.span()=> ::core::option::Option<#inner>),
                quote!(::core::convert::Infallible),
            ),
            (None | Some(Returns::Option), ReturnKind::Option(inner)) => {
                (inner.to_token_stream(), quote!(#returns::NotCached))
            }
            (None, ReturnKind::Plain(t)) => {
                (t.to_token_stream(), quote!(::core::convert::Infallible))
            }
            _ => infer(),
        };
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
    let background = args.refresh() == Refresh::Background;
    let slot = |i: usize| format_ident!("__ac_slot_{}", i);
    let own = |i: usize| format_ident!("__ac_own_{}", i);
    let (slots, loader, refresh) = if background {
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
        let plans = params
            .iter()
            .map(Param::refresh_copy)
            .collect::<syn::Result<Vec<_>>>()?;
        let mut copies = Vec::new();
        let mut reborrows = Vec::new();
        let mut pass = Vec::new();
        for (i, (p, plan)) in params.iter().zip(&plans).enumerate() {
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
    } else {
        let load_call = to_result(quote!(__ac_call(#(#call_args),*)));
        (
            TokenStream::new(),
            quote!(move || #load_call),
            quote!(#private::no_refresh),
        )
    };
    let load_fn = if args.coalesce() {
        format_ident!("load_coalesced")
    } else {
        format_ident!("load_uncoalesced")
    };
    // Span the helper's type arguments at the user's types so unmet bounds point there.
    // ... and span the call itself (whose result and `.await` repeat those bounds) at the type
    // most likely to be wrong, so rustc reports each unmet bound once.
    let call_span = match &ret_kind {
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

    let mut wrapper = func.clone();
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

    let companions = if args.companions() {
        companions(
            args,
            &func,
            &Shared {
                key_params: &key_params,
                keyed_generics: &keyed_generics,
                ret_kind: &ret_kind,
                key_expr: &key_expr,
                policy_static: &policy_static,
                private: &private,
            },
        )
    } else {
        TokenStream::new()
    };

    Ok(quote! {
        #wrapper
        #companions
    })
}

/// What the wrapper and the companions share.
struct Shared<'a> {
    /// The arguments that are part of the key, in declaration order.
    key_params: &'a [&'a Param],
    /// The type and const parameters that are part of the key (`bool`: const).
    keyed_generics: &'a [(Ident, bool)],
    ret_kind: &'a ReturnKind,
    /// Builds the `CacheKey` (or a `KeyError`).
    key_expr: &'a TokenStream,
    /// Declares `__AC_POLICY`.
    policy_static: &'a TokenStream,
    /// The path to the runtime support module.
    private: &'a TokenStream,
}

/// `<fn>_key`, `<fn>_invalidate` and `<fn>_put`.
fn companions(args: &CachedArgs, func: &ItemFn, shared: &Shared<'_>) -> TokenStream {
    let Shared {
        key_params,
        keyed_generics,
        ret_kind,
        key_expr,
        policy_static,
        private,
    } = *shared;
    let keyed_generics: Vec<Ident> = keyed_generics.iter().map(|(i, _)| i.clone()).collect();
    let vis = &func.vis;
    let fn_name = &func.sig.ident;
    let span = fn_name.span();
    let key_fn = format_ident!("{}_key", fn_name, span = span);
    let inv_fn = format_ident!("{}_invalidate", fn_name, span = span);
    let put_fn = format_ident!("{}_put", fn_name, span = span);
    let fn_name_str = fn_name.to_string();
    let site = quote!(::core::concat!(::core::module_path!(), "::", #fn_name_str));

    let cache_uses_self = args
        .cache
        .as_ref()
        .is_some_and(|e| mentions_ident(e.to_token_stream(), "self"));
    let receiver = key_params.iter().find(|p| p.receiver).map(|p| p.ty.clone());
    let recv_tokens = match (&receiver, cache_uses_self) {
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

    let ret: Type = match &func.sig.output {
        ReturnType::Type(_, t) => (**t).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    let returns = quote!(#private::returns);
    // The value `_put` takes: what the wrapper stores. Spelled out where the spelling tells;
    // otherwise (a path that may be an alias) whatever `StoredValue<Ret>` accepts.
    let cache_none = args.cache_none();
    let value_ty: Option<Type> = match (args.returns.as_ref().map(|(k, _)| *k), ret_kind) {
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
    };

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

    let key_generics = generics_for(&func.sig.generics, &key_types, &keyed_generics);
    let (kg_impl, _, kg_where) = key_generics.split_for_impl();
    let mut put_types = key_types.clone();
    put_types.push(value_ty.as_ref().unwrap_or(&ret));
    let put_generics = generics_for(&func.sig.generics, &put_types, &keyed_generics);
    let (pg_impl, _, pg_where) = put_generics.split_for_impl();

    let cache_opt = match &args.cache {
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

    #[test]
    fn refresh_copies_of_borrowed_arguments() {
        let plan = |t: &str| refresh_copy(&syn::parse_str(t).unwrap()).map(|p| format!("{p:?}"));
        assert!(plan("u32").unwrap().starts_with("Clone"));
        assert!(plan("Option<&'static str>").unwrap().starts_with("Clone"));
        assert!(plan("&str").unwrap().starts_with("ToOwned"));
        assert!(plan("&[String]").unwrap().starts_with("ToOwned"));
        assert!(plan("Option<&str>").unwrap().starts_with("OptionOfRef"));
        assert!(plan("Option<&'a [u8]>").unwrap().starts_with("OptionOfRef"));
        assert!(plan("&[&str]").unwrap().starts_with("SliceOfRefs"));
        assert!(plan("Vec<&T>").unwrap().starts_with("VecOfRefs"));
        let e = plan("Option<Option<&str>>").unwrap_err().to_string();
        assert!(
            e.contains("`Option<Option<&str>>` borrows") && e.contains("inline"),
            "{e}"
        );
        assert!(plan("Cow<'a, str>").is_err());
        assert!(plan("&Vec<&str>").is_err());
    }
}
