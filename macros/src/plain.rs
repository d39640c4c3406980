//! `#[derive(mp::Plain)]`: parse the struct, validate that it can live in shared memory
//! (`#[repr(C)]` or `#[repr(transparent)]`, a struct, no generics), then expand to compile-time
//! checks (every field is `Plain`; no padding) and the marker impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error};

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    match validate(&input) {
        Ok(fields) => generate(&input, &fields),
        Err(e) => e.to_compile_error(),
    }
}

fn validate(input: &DeriveInput) -> syn::Result<Vec<syn::Type>> {
    let fields = match &input.data {
        Data::Struct(s) => s.fields.iter().map(|f| f.ty.clone()).collect(),
        Data::Enum(e) => {
            return Err(Error::new(
                e.enum_token.span,
                "`mp::Plain` cannot be derived for enums: not every bit pattern is a valid \
                 variant; store the discriminant as an integer field instead",
            ));
        }
        Data::Union(u) => {
            return Err(Error::new(
                u.union_token.span,
                "`mp::Plain` cannot be derived for unions",
            ));
        }
    };
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "`mp::Plain` cannot be derived for generic structs; derive it for a concrete struct",
        ));
    }
    let mut repr_ok = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                repr_ok = true;
            } else if meta.path.is_ident("packed") || meta.path.is_ident("align") {
                // Allowed next to `C`; the size check below catches any padding.
                if meta.input.peek(syn::token::Paren) {
                    let _content;
                    syn::parenthesized!(_content in meta.input);
                }
            }
            Ok(())
        })?;
    }
    if !repr_ok {
        return Err(Error::new(
            input.ident.span(),
            format!(
                "`mp::Plain` needs a fixed layout: add `#[repr(C)]` to `{}`",
                input.ident
            ),
        ));
    }
    Ok(fields)
}

fn generate(input: &DeriveInput, fields: &[syn::Type]) -> TokenStream {
    let name = &input.ident;
    let field_checks = fields.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            ::mp::__private::assert_plain::<#ty>();
        }
    });
    let sizes = fields
        .iter()
        .map(|ty| quote!(::core::mem::size_of::<#ty>()));
    let message = format!(
        "`{name}` has padding bytes, so it cannot be `mp::Plain`: reorder its fields from the \
         largest alignment to the smallest, or add explicit padding fields"
    );
    quote! {
        const _: () = {
            #[allow(clippy::all)]
            const fn __mp_fields_are_plain() {
                #(#field_checks)*
            }
            ::core::assert!(
                ::core::mem::size_of::<#name>() == 0 #(+ #sizes)*,
                #message
            );
            // SAFETY (checked above): a `#[repr(C)]` struct without padding whose fields are
            // all `Plain` is itself `Plain`.
            unsafe impl ::mp::__private::Plain for #name {}
        };
    }
}
