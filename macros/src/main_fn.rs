//! `mp::main!`: parse `fn main` (or a path to the real main), validate, expand into a `main`
//! that enters the runtime first (a child never reaches user code) and, when the body returns,
//! waits for non-daemon children.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{ItemFn, Path};

enum Input {
    Fn(Box<ItemFn>),
    Path(Path),
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let fork = input.fork();
        if fork.parse::<ItemFn>().is_ok() {
            return Ok(Input::Fn(Box::new(input.parse()?)));
        }
        let path: Path = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "mp::main! expects `fn main() { .. }` or a path to a function: `mp::main!(run);`",
            )
        })?;
        let _ = input.parse::<Option<syn::Token![;]>>()?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the path in mp::main!"));
        }
        Ok(Input::Path(path))
    }
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let parsed: Input = match syn::parse2(input.clone()) {
        Ok(p) => p,
        Err(e) => return e.to_compile_error(),
    };
    match parsed {
        Input::Path(path) => quote! {
            fn main() -> impl ::std::process::Termination {
                ::mp::__private::enter_main();
                let result = #path();
                ::mp::__private::leave_main();
                result
            }
        },
        Input::Fn(func) => {
            if let Err(err) = validate(&func) {
                let err = err.to_compile_error();
                return quote!(#func #err);
            }
            let mut user = (*func).clone();
            user.sig.ident = syn::Ident::new("__mp_user_main", func.sig.ident.span());
            user.vis = syn::Visibility::Inherited;
            let output = &func.sig.output;
            quote! {
                fn main() #output {
                    ::mp::__private::enter_main();
                    #user
                    let result = __mp_user_main();
                    ::mp::__private::leave_main();
                    result
                }
            }
        }
    }
}

fn validate(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if sig.ident != "main" {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!(
                "mp::main! wraps `fn main`, found `fn {}`; to use another function write `mp::main!({});`",
                sig.ident, sig.ident
            ),
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "`main` takes no arguments; read them with `std::env::args()`",
        ));
    }
    if let Some(param) = sig.generics.params.first() {
        return Err(syn::Error::new(param.span(), "`main` cannot be generic"));
    }
    if sig.asyncness.is_some() && func.attrs.is_empty() {
        return Err(syn::Error::new(
            sig.asyncness.span(),
            "`async fn main` needs a runtime attribute inside mp::main!, e.g. `#[tokio::main]`",
        ));
    }
    Ok(())
}
