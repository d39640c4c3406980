//! Procedural macros of `mp`: `#[mp::worker]`, `mp::main!`, `#[derive(mp::Plain)]` and
//! `#[mp::allow(..)]` (which only checks its lint names). Use them through the `mp` crate.
//!
//! Each macro parses, validates, then expands (`worker.rs`, `main_fn.rs`, `plain.rs`). On an error the
//! original item is still emitted next to the `compile_error!`, so one mistake does not bury
//! the rest of the crate in follow-up errors.

use proc_macro::TokenStream;

mod allow;
mod main_fn;
mod plain;
mod render;
mod worker;

/// Registers a function as a worker child processes can run. See `mp::worker`.
#[proc_macro_attribute]
pub fn worker(attr: TokenStream, item: TokenStream) -> TokenStream {
    worker::expand(attr.into(), item.into()).into()
}

/// Wraps `main` as the guarded entry point. See `mp::main`.
#[proc_macro]
pub fn main(input: TokenStream) -> TokenStream {
    main_fn::expand(input.into()).into()
}

/// Exempts an item from `cargo mp check` lints: the item is emitted unchanged; an unknown
/// lint name is a compile error listing the lints. See `mp::allow`.
#[proc_macro_attribute]
pub fn allow(lints: TokenStream, item: TokenStream) -> TokenStream {
    allow::expand(lints.into(), item.into()).into()
}

/// Derives `mp::Plain` for a `#[repr(C)]` struct of `Plain` fields without padding. See
/// `mp::Plain`.
#[proc_macro_derive(Plain)]
pub fn derive_plain(input: TokenStream) -> TokenStream {
    plain::expand(input.into()).into()
}
