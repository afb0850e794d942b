//! What `#[cached_action]` learns from its attribute and its function, computed once into a
//! [`Model`]: the parameters (how each is passed, whether it is keyed, how a background refresh
//! copies it), the return type as spelled, the keyed type and const parameters, the call site
//! and key name, the policy values and the options. Building the model runs every check that can
//! reject the input, in the order the errors are reported; the generators only read it.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::visit::Visit;
use syn::{
    Expr, FnArg, GenericArgument, GenericParam, Generics, Ident, ItemFn, Pat, PathArguments,
    ReturnType, Type,
};

use super::tokens::{borrows, err, idents_in, impl_trait_span, mentions_ident, pretty, single_arg};
use crate::attr::{CachedArgs, Codec, Refresh, Returns, TagTemplate};

/// Every fact about one `#[cached_action]` function that the generators need.
pub(super) struct Model {
    /// The function as written.
    pub(super) func: ItemFn,
    /// The path to the runtime support module: `<crate>::__private`.
    pub(super) private: TokenStream,
    /// `concat!(module_path!(), "::", "<fn>")`: the function's path, named in warnings and the
    /// default key name.
    pub(super) site: TokenStream,
    /// The key's name: the `name` option as given, or `site`.
    pub(super) key_name: TokenStream,
    /// Every parameter, the receiver included, in declaration order.
    pub(super) params: Vec<Param>,
    /// Whether the function takes `self`.
    pub(super) has_receiver: bool,
    /// The type and const parameters that are part of the key, in declaration order.
    pub(super) keyed_generics: Vec<KeyedGeneric>,
    /// With the default name, the key also hashes the enclosing item (and `Self`, see
    /// [`ScopeKey`]); `None` with an explicit `name`.
    pub(super) scope_key: Option<ScopeKey>,
    /// The return type; `()` when none is written.
    pub(super) ret_ty: Type,
    /// The return type's spelling.
    pub(super) ret_kind: ReturnKind,
    /// An explicit `returns = "..."`, with the span of its literal.
    pub(super) returns: Option<(Returns, Span)>,
    /// `cache_none = true`.
    pub(super) cache_none: bool,
    /// The `version` option.
    pub(super) version: Option<u32>,
    /// The `tags` templates.
    pub(super) tags: Vec<TagTemplate>,
    /// The `cache` expression; the global cache when `None`.
    pub(super) cache: Option<Expr>,
    /// Whether the `cache` expression uses `self` (the companions then take `&self`).
    pub(super) cache_uses_self: bool,
    /// The policy's windows and jitter.
    pub(super) policy: PolicyValues,
    /// How a stale hit is refreshed, and what a background refresh copies.
    pub(super) refresh: RefreshPlan,
    /// Whether concurrent misses share one load.
    pub(super) coalesce: bool,
    /// Whether the companion items are generated.
    pub(super) companions: bool,
}

/// A type or const parameter that is part of the key.
#[derive(Debug)]
pub(super) struct KeyedGeneric {
    /// The parameter's name.
    pub(super) ident: Ident,
    /// A const parameter (keyed by value) rather than a type one (keyed by `type_name`).
    pub(super) is_const: bool,
}

/// What the default key name adds to tell same-named functions apart.
#[derive(Clone, Copy, Debug)]
pub(super) struct ScopeKey {
    /// `Self` is in scope, so `type_name::<Self>()` is keyed as well.
    pub(super) with_self: bool,
}

/// The policy's values, as the generated `Policy::builder()` call takes them.
#[derive(Clone, Copy, Debug)]
pub(super) struct PolicyValues {
    /// The fresh window in milliseconds.
    pub(super) fresh_ms: u64,
    /// The stale window in milliseconds (the fresh one when not given).
    pub(super) stale_ms: u64,
    /// An explicit `jitter`.
    pub(super) jitter: Option<f64>,
    /// An explicit `codec`.
    pub(super) codec: Option<Codec>,
}

/// How a stale hit is refreshed.
#[derive(Debug)]
pub(super) enum RefreshPlan {
    /// `refresh = "inline"`: the call reloads before returning, so nothing is copied.
    Inline,
    /// A spawned refresh, with the owned copy it takes of each parameter, in order.
    Background(Vec<RefreshCopy>),
}

impl Model {
    /// Checks the function against the attribute and gathers every fact, or returns the first
    /// error.
    pub(super) fn new(args: &CachedArgs, func: ItemFn) -> syn::Result<Model> {
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
        let params = collect_params(&func, args)?;
        let ret_kind = classify_return(&func.sig.output, &func.sig.generics)?;
        let has_receiver = params.iter().any(|p| p.receiver);
        check_skip(args, &func, &params)?;
        if args.include_self() && !has_receiver {
            return err(
                &func.sig.ident,
                "`include_self = true` needs a method with a `self` receiver",
            );
        }
        check_tags(args, &func, &params)?;
        let refresh = match args.refresh() {
            Refresh::Background => RefreshPlan::Background(
                params
                    .iter()
                    .map(Param::refresh_copy)
                    .collect::<syn::Result<Vec<_>>>()?,
            ),
            Refresh::Inline => RefreshPlan::Inline,
        };

        let fn_name_str = func.sig.ident.to_string();
        let site = quote!(::core::concat!(::core::module_path!(), "::", #fn_name_str));
        let key_name = match &args.name {
            Some(lit) => quote!(#lit),
            None => site.clone(),
        };
        // An explicit `name` is the function's identity as given; the default one is told apart
        // from same-named functions of other types or scopes.
        let scope_key = args.name.is_none().then(|| ScopeKey {
            with_self: self_in_scope(&func, args),
        });
        let ret_ty: Type = match &func.sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        let fresh_ms = duration_millis(args.fresh.as_ref().map(|f| f.value).unwrap_or_default());
        let stale_ms = args
            .stale
            .as_ref()
            .map(|s| duration_millis(s.value))
            .unwrap_or(fresh_ms);
        Ok(Model {
            keyed_generics: keyed_generics(&func, &params),
            private,
            site,
            key_name,
            params,
            has_receiver,
            scope_key,
            ret_ty,
            ret_kind,
            returns: args.returns.as_ref().map(|(kind, lit)| (*kind, lit.span())),
            cache_none: args.cache_none(),
            version: args.version,
            tags: args.tags.clone(),
            cache_uses_self: args
                .cache
                .as_ref()
                .is_some_and(|e| mentions_ident(e.to_token_stream(), "self")),
            cache: args.cache.clone(),
            policy: PolicyValues {
                fresh_ms,
                stale_ms,
                jitter: args.jitter.map(|(j, _)| j),
                codec: args.codec,
            },
            refresh,
            coalesce: args.coalesce(),
            companions: args.companions(),
            func,
        })
    }

    /// The parameters that are part of the key, in declaration order.
    pub(super) fn key_params(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| p.in_key)
    }
}

/// How an argument reaches the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Passing {
    /// `&T`: passed by (copied) reference; a background refresh takes `ToOwned::to_owned`.
    Ref,
    /// `T`: moved into the call; a background refresh clones it first.
    Owned,
}

/// One parameter of the function (the receiver included).
#[derive(Debug)]
pub(super) struct Param {
    /// The name used in generated code (`self` for the receiver).
    pub(super) ident: Ident,
    /// The name the body sees inside the wrapped closure (`__ac_self` for the receiver).
    pub(super) inner_ident: Ident,
    /// Whether the binding was declared `mut`.
    pub(super) mutable: bool,
    /// The declared type (`&Self` / `Self` / `T` for receivers).
    pub(super) ty: Type,
    /// For `Passing::Ref`, the type behind the reference.
    pub(super) referent: Option<Type>,
    /// How the argument reaches the function.
    pub(super) passing: Passing,
    /// Whether this is the `self` receiver.
    pub(super) receiver: bool,
    /// Whether the argument is part of the key (not `skip`ped; the receiver only with
    /// `include_self = true`).
    pub(super) in_key: bool,
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
pub(super) enum ReturnKind {
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

/// Rejects argument types a cached call cannot honour: `&mut` and `impl Trait`.
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
pub(super) enum RefreshCopy {
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

/// The function's parameters, each checked (no `&mut`, no `impl Trait`, no pattern).
fn collect_params(func: &ItemFn, args: &CachedArgs) -> syn::Result<Vec<Param>> {
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
                    in_key: args.include_self() && !args.skip.iter().any(|s| s == "self"),
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
                    in_key: !args.skip.contains(&ident),
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

/// The return type as spelled (an `impl Trait` return is an error).
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
fn keyed_generics(func: &ItemFn, params: &[Param]) -> Vec<KeyedGeneric> {
    let mut elsewhere = HashSet::new();
    let mut in_skipped = HashSet::new();
    for p in params.iter().filter(|p| !p.receiver) {
        let set = if p.in_key {
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
            GenericParam::Type(t) => Some(KeyedGeneric {
                ident: t.ident.clone(),
                is_const: false,
            }),
            GenericParam::Const(c) => Some(KeyedGeneric {
                ident: c.ident.clone(),
                is_const: true,
            }),
            GenericParam::Lifetime(_) => None,
        })
        .filter(|g| {
            let name = g.ident.to_string();
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

/// A duration in whole milliseconds, saturating.
fn duration_millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `skip(...)` must name arguments.
fn check_skip(args: &CachedArgs, func: &ItemFn, params: &[Param]) -> syn::Result<()> {
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
    Ok(())
}

/// Tag placeholders must name key arguments.
fn check_tags(args: &CachedArgs, func: &ItemFn, params: &[Param]) -> syn::Result<()> {
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
                Some(p) if !p.in_key => {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
