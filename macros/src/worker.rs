//! `#[mp::worker]`: parse the `fn`, validate that a child process can call it, expand into a
//! unit struct of the function's name (callable through `Deref` to the `fn`), an `mp::Worker`
//! impl and a registry entry.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

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
        return with_error(item, err);
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

    let types: Vec<&Type> = func
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(p) => Some(&*p.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let output: Type = match &func.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let vars: Vec<_> = (0..types.len())
        .map(|i| format_ident!("__mp_arg{}", i))
        .collect();
    let (args_ty, destructure) = match types.len() {
        1 => {
            let t = types[0];
            let v = &vars[0];
            (quote!(#t), quote!(let #v = args;))
        }
        _ => (quote!((#(#types,)*)), quote!(let (#(#vars,)*) = args;)),
    };
    let signature = format!(
        "fn({}){}",
        types
            .iter()
            .map(|t| quote!(#t).to_string())
            .collect::<Vec<_>>()
            .join(", "),
        match &func.sig.output {
            ReturnType::Default => String::new(),
            ReturnType::Type(_, ty) => format!(" -> {}", quote!(#ty)),
        }
    );
    // Type errors (not serializable, not Send) are reported by rustc at the user's type.
    let checks = types
        .iter()
        .copied()
        .chain(std::iter::once(&output))
        .map(|t| {
            quote_spanned! {t.span()=>
                ::mp::__private::assert_transferable::<#t>();
            }
        });
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

        const _: () = {
            const _: () = { #(#checks)* };

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
                type Output = #output;
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
