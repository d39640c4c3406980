//! `#[mp::allow(lint, ...)]`: parses the lint names (hyphenated, or with underscores),
//! validates them against the lint list of `cargo mp check`, and emits the item unchanged
//! (with a `compile_error!` naming the lints after an unknown name).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote_spanned;

/// The lints of `cargo mp check` (`cargo-mp/src/lints/mod.rs`, `LINTS`; a test of cargo-mp
/// checks that the two lists agree).
pub(crate) const LINT_NAMES: &[&str] = &[
    "missing-main-guard",
    "unregistered-worker",
    "join-before-drain",
    "spawn-in-loop",
    "hardcoded-pool-size",
    "pool-in-loop",
    "unbounded-recv",
    "exit-in-worker",
    "fork-with-threads",
    "result-unwrap-in-worker",
];

/// A name as written, with the span from its first to its last token.
struct Name {
    text: String,
    first: Span,
    last: Span,
}

/// Parse: names between commas; a name's tokens (`hardcoded`, `-`, `pool`, ...) are joined.
fn parse(attr: TokenStream) -> Vec<Name> {
    let mut names: Vec<Name> = Vec::new();
    let mut current: Option<Name> = None;
    for token in attr {
        match token {
            TokenTree::Punct(p) if p.as_char() == ',' => names.extend(current.take()),
            other => {
                let span = other.span();
                let text = other.to_string();
                match &mut current {
                    Some(name) => {
                        name.text.push_str(&text);
                        name.last = span;
                    }
                    None => {
                        current = Some(Name {
                            text,
                            first: span,
                            last: span,
                        })
                    }
                }
            }
        }
    }
    names.extend(current);
    names
}

/// Validate: every name must be a lint (underscores count as hyphens).
fn validate(names: &[Name]) -> Option<syn::Error> {
    let mut errors: Option<syn::Error> = None;
    for name in names {
        if LINT_NAMES.contains(&name.text.replace('_', "-").as_str()) {
            continue;
        }
        let span = name.first.join(name.last).unwrap_or(name.first);
        let e = syn::Error::new(
            span,
            format!(
                "unknown lint `{}`; the lints of `cargo mp check` are: {}",
                name.text,
                LINT_NAMES.join(", ")
            ),
        );
        match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        }
    }
    errors
}

/// Expand: the item unchanged, plus the errors.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let names = parse(attr);
    match validate(&names) {
        None => item,
        Some(e) => {
            let error = e.to_compile_error();
            quote_spanned! {Span::call_site()=> #error #item}
        }
    }
}
