//! Token and type utilities shared by the expansion modules: spanned errors, `self` renaming,
//! respanning, lifetime elision, and the identifier scans behind generics filtering.
//!
//! Nothing here knows what `#[cached_action]` generates; it only reads and rewrites tokens.

use std::collections::HashSet;

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{
    GenericArgument, GenericParam, Generics, Ident, Lifetime, PathArguments, Type, WherePredicate,
};

/// An error spanned at `tokens`.
pub(super) fn err<T>(tokens: impl ToTokens, msg: impl std::fmt::Display) -> syn::Result<T> {
    Err(syn::Error::new_spanned(tokens, msg))
}

/// The span of the first `impl Trait` anywhere in a type.
pub(super) fn impl_trait_span(ty: &Type) -> Option<Span> {
    struct ImplTraitFinder(Option<Span>);
    impl<'ast> Visit<'ast> for ImplTraitFinder {
        fn visit_type_impl_trait(&mut self, i: &'ast syn::TypeImplTrait) {
            if self.0.is_none() {
                self.0 = Some(i.span());
            }
        }
    }
    let mut finder = ImplTraitFinder(None);
    finder.visit_type(ty);
    finder.0
}

/// Replaces every named lifetime except `'static` with `'_` (closure parameters must be
/// higher-ranked so a background refresh can call the body with references to its own copies).
pub(super) struct ElideLifetimes;
impl VisitMut for ElideLifetimes {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident != "static" && l.ident != "_" {
            *l = Lifetime::new("'_", l.span());
        }
    }
}

/// `ty` with its named lifetimes elided (see [`ElideLifetimes`]).
pub(super) fn elide(ty: &Type) -> Type {
    let mut ty = ty.clone();
    ElideLifetimes.visit_type_mut(&mut ty);
    ty
}

/// Whether a type borrows: holds a reference or a lifetime other than `'static`.
pub(super) fn borrows(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            if r.lifetime.as_ref().is_none_or(|l| l.ident != "static") {
                self.0 = true;
            }
            syn::visit::visit_type_reference(self, r);
        }
        fn visit_lifetime(&mut self, l: &'ast Lifetime) {
            self.0 |= l.ident != "static";
        }
    }
    let mut f = Finder(false);
    f.visit_type(ty);
    f.0
}

/// The `T` of `Name<T>` when `ty` is a path ending in `Name` with one type argument.
pub(super) fn single_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last().filter(|_| tp.qself.is_none())?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(a) = &last.arguments else {
        return None;
    };
    match a.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(t)] => Some(t),
        _ => None,
    }
}

/// A type as a user would write it (`Option<&str>`, not `Option < & str >`).
pub(super) fn pretty(ty: &Type) -> String {
    let mut out = ty.to_token_stream().to_string();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" :: ", "::"),
        (":: ", "::"),
        ("& ", "&"),
        (" ,", ","),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// Replaces the `self` keyword (not `self::path`) with `__ac_self` throughout a token stream.
pub(super) fn replace_self(tokens: TokenStream) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(trees.len());
    for (i, tt) in trees.iter().enumerate() {
        match tt {
            TokenTree::Ident(id) if id == "self" => {
                let path_follows = matches!(
                    (trees.get(i + 1), trees.get(i + 2)),
                    (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                        if a.as_char() == ':' && b.as_char() == ':'
                );
                if path_follows {
                    out.push(tt.clone());
                } else {
                    out.push(TokenTree::Ident(Ident::new("__ac_self", id.span())));
                }
            }
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), replace_self(g.stream()));
                ng.set_span(g.span());
                out.push(TokenTree::Group(ng));
            }
            other => out.push(other.clone()),
        }
    }
    out.into_iter().collect()
}

/// Gives every token (recursively) the span `span`.
pub(super) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), respan(g.stream(), span));
                ng.set_span(span);
                TokenTree::Group(ng)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// The span of a type's first token (stable proc macros cannot join spans).
pub(super) fn first_span(ty: &Type) -> Span {
    ty.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |tt| tt.span())
}

/// Whether `name` occurs as an identifier anywhere in a token stream (`"self"`, `"Self"`).
pub(super) fn mentions_ident(tokens: TokenStream, name: &str) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(id) => id == name,
        TokenTree::Group(g) => mentions_ident(g.stream(), name),
        _ => false,
    })
}

/// Every identifier and lifetime name in a token stream.
pub(super) fn idents_in(tokens: TokenStream, out: &mut HashSet<String>) {
    for tt in tokens {
        match tt {
            TokenTree::Ident(id) => {
                out.insert(id.to_string());
            }
            TokenTree::Group(g) => idents_in(g.stream(), out),
            _ => {}
        }
    }
}

/// The generics of `generics` that the given types mention or `also` names (plus the
/// where-predicates over them).
pub(super) fn generics_for(generics: &Generics, types: &[&Type], also: &[Ident]) -> Generics {
    let mut used: HashSet<String> = also.iter().map(Ident::to_string).collect();
    for ty in types {
        idents_in(ty.to_token_stream(), &mut used);
    }
    let param_name = |p: &GenericParam| match p {
        GenericParam::Lifetime(l) => l.lifetime.ident.to_string(),
        GenericParam::Type(t) => t.ident.to_string(),
        GenericParam::Const(c) => c.ident.to_string(),
    };
    let all: HashSet<String> = generics.params.iter().map(param_name).collect();
    let kept: HashSet<String> = all.iter().filter(|n| used.contains(*n)).cloned().collect();
    let mut out = generics.clone();
    out.params = generics
        .params
        .iter()
        .filter(|p| kept.contains(&param_name(p)))
        .cloned()
        .collect();
    if let Some(wc) = &mut out.where_clause {
        wc.predicates = wc
            .predicates
            .iter()
            .filter(|pred: &&WherePredicate| {
                let mut mentioned = HashSet::new();
                idents_in(pred.to_token_stream(), &mut mentioned);
                mentioned
                    .iter()
                    .all(|n| !all.contains(n) || kept.contains(n))
            })
            .cloned()
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::ItemFn;

    #[test]
    fn self_is_renamed_in_the_body_but_not_in_paths() {
        let ts: TokenStream = "{ self.x + self::CONST + f(self) }".parse().unwrap();
        let out = replace_self(ts).to_string();
        assert_eq!(out, "{ __ac_self . x + self :: CONST + f (__ac_self) }");
    }

    #[test]
    fn companion_generics_keep_only_what_key_args_use() {
        let item: ItemFn = syn::parse_str(
            "async fn f<'a, C: Client, K: Serialize>(c: &C, k: &'a K) -> u32 where C: Send, K: Sync { 1 }",
        )
        .unwrap();
        let k: Type = syn::parse_str("&'a K").unwrap();
        let g = generics_for(&item.sig.generics, &[&k], &[]);
        let s = g.to_token_stream().to_string();
        assert!(
            s.contains("'a") && s.contains("K : Serialize") && !s.contains("Client"),
            "{s}"
        );
        let w = g.where_clause.to_token_stream().to_string();
        assert!(w.contains("K : Sync") && !w.contains("C : Send"), "{w}");
    }

    #[test]
    fn lifetimes_are_elided_in_closure_params() {
        let ty: Type = syn::parse_str("&'a Foo<'b, 'static>").unwrap();
        assert_eq!(
            elide(&ty).to_token_stream().to_string(),
            "& '_ Foo < '_ , 'static >"
        );
    }
}
