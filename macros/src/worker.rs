//! `#[mp::worker]`: parse the `fn`, validate that a child process can call it, expand into a
//! unit struct of the function's name (callable through `Deref` to the `fn`), an `mp::Worker`
//! impl and a registry entry.
//!
//! A rejected function (generic, `async`, a reference argument, ...) still gets its unit struct
//! and a stub `Worker` impl whose `Args` is `[u8; compile_error!(..)]`: the one error is the
//! reason, and since the stub's types are rustc's error type, call sites (`mp::spawn(f, x)`,
//! `f(x)`) add no follow-up errors. The function itself is kept under another name, so its
//! body is still checked.
//!
//! Each argument and the result are checked in a chain of constants (`Serialize`, then
//! `DeserializeOwned`, then `Send`), each through a local trait whose
//! `#[diagnostic::on_unimplemented]` names the parameter and says what to derive. A check that
//! fails makes its constant an error, and every later check, and the `Worker` impl's `Args`, is
//! written as `<T as mp::__private::Gate<{ CONST }>>::Ty`: a type that refers to a failed
//! constant is rustc's error type, so one missing derive is one error at the parameter's type,
//! not six. (`Gate` is public: the projection is part of the impl, and a `pub` worker's impl
//! may not name a private trait; the checking traits appear only in constants' bodies.)

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::render;

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "#[mp::worker] goes on a function: `#[mp::worker] fn name(arg: Type) -> Type { .. }`",
            );
            return with_error(item, err);
        }
    };
    if let Err(err) = validate(&attr, &func) {
        let method = func
            .sig
            .inputs
            .iter()
            .any(|a| matches!(a, FnArg::Receiver(_)));
        if method {
            // In an `impl` block: no unit struct can stand there.
            return with_error(item, err);
        }
        return stub(&func, err);
    }
    generate(&func)
}

fn with_error(item: TokenStream, err: syn::Error) -> TokenStream {
    let err = err.to_compile_error();
    quote!(#item #err)
}

fn validate(attr: &TokenStream, func: &ItemFn) -> syn::Result<()> {
    if !attr.is_empty() {
        return Err(syn::Error::new(
            attr.span(),
            "#[mp::worker] takes no arguments",
        ));
    }
    let sig = &func.sig;
    if let Some(asyncness) = sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "a worker cannot be `async`: a child process runs it to completion synchronously; \
             make it a plain `fn` (start a runtime inside it if it needs one)",
        ));
    }
    if let Some(param) = sig.generics.params.first() {
        return Err(syn::Error::new(
            param.span(),
            "a worker cannot be generic: the child process finds it by name and cannot name a \
             generic instance; write a non-generic `fn` for each type you need",
        ));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        return Err(syn::Error::new(
            where_clause.span(),
            "a worker cannot have a `where` clause",
        ));
    }
    if let Some(unsafety) = sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span(),
            "a worker cannot be `unsafe fn`",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(
            abi.span(),
            "a worker cannot have an `extern` ABI",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "a worker cannot be variadic",
        ));
    }
    if let Some(constness) = sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "a worker cannot be `const fn`",
        ));
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    "a worker cannot take `self`: a child process cannot receive the object it \
                     would be called on; make it a free function and pass the data as an argument",
                ));
            }
            FnArg::Typed(pat) => check_owned(&pat.ty, "argument")?,
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        check_owned(ty, "return type")?;
    }
    Ok(())
}

/// Borrowed and `impl Trait` types cannot cross a process boundary; say so at the type.
fn check_owned(ty: &Type, what: &str) -> syn::Result<()> {
    match ty {
        Type::Reference(r) => Err(syn::Error::new(
            r.span(),
            format!(
                "a worker's {what} cannot be a reference: values are copied to another process; \
                 use an owned type (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`)"
            ),
        )),
        Type::ImplTrait(t) => Err(syn::Error::new(
            t.span(),
            format!("a worker's {what} must be a concrete type, not `impl Trait`"),
        )),
        Type::Paren(p) => check_owned(&p.elem, what),
        Type::Tuple(t) => t.elems.iter().try_for_each(|e| check_owned(e, what)),
        _ => Ok(()),
    }
}

/// The unit struct and a `Worker` impl whose types are rustc's error type, next to the one
/// error; the function is kept under its inner name so its body is still checked.
fn stub(func: &ItemFn, err: syn::Error) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    let docs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let mut kept = func.clone();
    kept.sig.ident = format_ident!("__mp_worker_{}", name);
    kept.attrs.retain(|a| !a.path().is_ident("doc"));
    let err = err.to_compile_error();
    let name_str = name.to_string();
    quote! {
        #(#docs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        #vis struct #name;

        #[doc(hidden)]
        #[allow(dead_code, non_snake_case)]
        #kept

        const _: () = {
            impl ::core::ops::Deref for #name {
                type Target = fn(<#name as ::mp::Worker>::Args) -> <#name as ::mp::Worker>::Output;
                fn deref(&self) -> &Self::Target {
                    ::core::unreachable!()
                }
            }

            impl ::mp::__private::SealedWorker for #name {}

            impl ::mp::Worker for #name {
                type Args = [u8; #err];
                type Output = <Self as ::mp::Worker>::Args;
                const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name_str);
                const SIGNATURE: &'static str = "";
                const INSTANCE: Self = #name;
                fn call(self, _: Self::Args) -> Self::Output {
                    ::core::unreachable!()
                }
                fn __entry(self) -> &'static ::mp::__private::WorkerEntry {
                    ::core::unreachable!()
                }
            }
        };
    }
}

/// How a parameter is named in messages: its name, or its pattern as written.
fn param_name(pat: &Pat) -> String {
    match pat {
        Pat::Ident(p) => p.ident.to_string(),
        other => render::tokens(other.to_token_stream()),
    }
}

/// The checks that `ty` (described by `what`, e.g. "the argument `config` of worker `run`")
/// can cross between processes, as items for the impl's `const _` block, and the type to use
/// in its place: `ty` itself when the checks pass, rustc's error type when one fails.
fn checked(ty: &Type, what: &str, tag: &str) -> (TokenStream, TokenStream) {
    // `{` and `}` are placeholders in `on_unimplemented`; a pattern may contain them.
    let what = what.replace('{', "{{").replace('}', "}}");
    let derive =
        "add `#[derive(serde::Serialize, serde::Deserialize)]` to the definition of `{Self}`";
    let foreign = "for a type from another crate, enable that crate's `serde` feature, or wrap \
                   the value in a type of your own that derives them";
    let checks: [(&str, TokenStream, String, String, Vec<&str>); 3] = [
        (
            "Ser",
            quote!(::mp::__private::serde::Serialize),
            format!(
                "{what} has type `{{Self}}`, which cannot be sent to another process: it does \
                 not implement `serde::Serialize`"
            ),
            "does not implement `serde::Serialize`".to_owned(),
            vec![derive, foreign],
        ),
        (
            "De",
            quote!(::mp::__private::serde::de::DeserializeOwned),
            format!(
                "{what} has type `{{Self}}`, which cannot be received from another process: it \
                 does not implement `serde::Deserialize`"
            ),
            "does not implement `serde::Deserialize`".to_owned(),
            vec![derive, foreign],
        ),
        (
            "Send",
            quote!(::core::marker::Send),
            format!("{what} has type `{{Self}}`, which is not `Send`"),
            "not `Send`".to_owned(),
            vec![
                "arguments and results move between threads of the parent (a pool's feeder \
                 and collector threads) on their way to and from a child",
                "use a `Send` type: `Arc` for `Rc`, the owned value for a lock guard or a raw \
                 pointer",
            ],
        ),
    ];
    let mut items = TokenStream::new();
    let mut current = ty.to_token_stream();
    for (kind, bound, message, label, notes) in checks {
        let trait_name = format_ident!("__Mp{}{}", kind, tag);
        let fn_name = format_ident!("__mp_{}_{}", kind.to_lowercase(), tag);
        let const_name = format_ident!("__MP_{}_{}", kind.to_uppercase(), tag);
        items.extend(quote! {
            #[diagnostic::on_unimplemented(
                message = #message,
                label = #label,
                #(note = #notes),*
            )]
            trait #trait_name {}
            impl<T: ?::core::marker::Sized + #bound> #trait_name for T {}
            const fn #fn_name<T: ?::core::marker::Sized + #trait_name>() -> usize {
                0
            }
            const #const_name: usize = #fn_name::<#current>();
        });
        current = gated(ty, &const_name);
    }
    (items, current)
}

/// `<ty as mp::__private::Gate<{ gate }>>::Ty`, spanned like `ty` (its first `<` on the type's first token,
/// its last name on the type's last), so an error about it points at the type as written.
fn gated(ty: &Type, gate: &Ident) -> TokenStream {
    let tokens: Vec<TokenTree> = ty.to_token_stream().into_iter().collect();
    let first = tokens.first().map_or_else(Span::call_site, TokenTree::span);
    let last = tokens.last().map_or_else(Span::call_site, TokenTree::span);
    let open = quote_spanned!(first=> <);
    let assoc = Ident::new("Ty", last);
    quote!(#open #ty as ::mp::__private::Gate<{ #gate }> >::#assoc)
}

fn generate(func: &ItemFn) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    let inner = format_ident!("__mp_worker_{}", name);
    let attrs = &func.attrs;
    let docs: Vec<_> = attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    let other_attrs: Vec<_> = attrs.iter().filter(|a| !a.path().is_ident("doc")).collect();
    let block = &func.block;
    let mut inner_sig = func.sig.clone();
    inner_sig.ident = inner.clone();

    let params: Vec<(&Pat, &Type)> = func
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(p) => Some((&*p.pat, &*p.ty)),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let types: Vec<&Type> = params.iter().map(|(_, t)| *t).collect();
    let output: Type = match &func.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };

    // Serialize, then DeserializeOwned, then Send: one error for the first that fails.
    let mut checks = TokenStream::new();
    let mut checked_args = Vec::new();
    for (i, (pat, ty)) in params.iter().enumerate() {
        let what = format!("the argument `{}` of worker `{name}`", param_name(pat));
        let (items, ty) = checked(ty, &what, &format!("Arg{i}"));
        checks.extend(items);
        checked_args.push(ty);
    }
    let (items, checked_output) = checked(
        &output,
        &format!("the return type of worker `{name}`"),
        "Out",
    );
    checks.extend(items);

    let vars: Vec<_> = (0..types.len())
        .map(|i| format_ident!("__mp_arg{}", i))
        .collect();
    let (args_ty, destructure) = match types.len() {
        1 => {
            let t = &checked_args[0];
            let v = &vars[0];
            (quote!(#t), quote!(let #v = args;))
        }
        _ => (
            quote!((#(#checked_args,)*)),
            quote!(let (#(#vars,)*) = args;),
        ),
    };
    let signature = format!(
        "fn({}){}",
        types
            .iter()
            .map(|t| render::tokens(t.to_token_stream()))
            .collect::<Vec<_>>()
            .join(", "),
        match &func.sig.output {
            ReturnType::Default => String::new(),
            ReturnType::Type(_, ty) => format!(" -> {}", render::tokens(ty.to_token_stream())),
        }
    );
    let name_str = name.to_string();

    quote! {
        #(#docs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        #vis struct #name;

        #(#other_attrs)*
        #[doc(hidden)]
        #[allow(non_snake_case)]
        #inner_sig #block

        #[allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]
        const _: () = {
            #checks

            impl ::core::ops::Deref for #name {
                type Target = fn(#(#types),*) -> #output;
                fn deref(&self) -> &Self::Target {
                    const F: fn(#(#types),*) -> #output = #inner;
                    &F
                }
            }

            impl ::mp::__private::SealedWorker for #name {}

            impl ::mp::Worker for #name {
                type Args = #args_ty;
                type Output = #checked_output;
                const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name_str);
                const SIGNATURE: &'static str = #signature;
                const INSTANCE: Self = #name;
                fn call(self, args: Self::Args) -> Self::Output {
                    #destructure
                    #inner(#(#vars),*)
                }
                fn __entry(self) -> &'static ::mp::__private::WorkerEntry {
                    &ENTRY
                }
            }

            #[::mp::__private::linkme::distributed_slice(::mp::__private::WORKERS)]
            #[linkme(crate = ::mp::__private::linkme)]
            static ENTRY: ::mp::__private::WorkerEntry = ::mp::__private::WorkerEntry::new::<#name>(
                ::core::concat!(::core::file!(), ":", ::core::line!()),
            );
        };
    }
}
