//! A target's sources: the crate root and every file its `mod` declarations name (`foo.rs`,
//! `foo/mod.rs`, `#[path = ".."]`), parsed with `syn`, with the line ranges that
//! `#[mp::allow(..)]` exempts from lints.

use std::path::{Path, PathBuf};

use syn::spanned::Spanned;

use crate::diagnostic::{Diagnostic, Span};
use crate::lints::Level;

/// One parsed file.
pub struct SourceFile {
    /// The path to read.
    pub path: PathBuf,
    /// The path shown in diagnostics (relative to the workspace root).
    pub display: String,
    /// The text.
    pub text: String,
    /// The syntax tree the lints read: as parsed, except that `mp::main! { fn main() { .. } }`
    /// is replaced by the function it wraps, so the lints see `main`'s body.
    pub syntax: syn::File,
    /// The name of a module-level `fn main` that is *not* wrapped by `mp::main!`.
    pub unguarded_main: Option<syn::Ident>,
    /// Line ranges under `#[mp::allow(lints)]`: `(first, last, lints)`.
    pub allowed: Vec<(usize, usize, Vec<String>)>,
}

impl SourceFile {
    /// Parses `text` (read from `path`, shown as `display`); a syntax error comes back as a
    /// diagnostic.
    pub fn parse(
        path: PathBuf,
        display: String,
        text: String,
    ) -> Result<SourceFile, Box<Diagnostic>> {
        let syntax = syn::parse_file(&text).map_err(|e| {
            let span = e.span();
            let (start, end) = (span.start(), span.end());
            Box::new(Diagnostic {
                lint: None,
                level: Level::Deny,
                message: format!("cannot parse this file: {e}"),
                file: display.clone(),
                span: Span {
                    line: start.line.max(1),
                    column: start.column + 1,
                    end_line: end.line.max(1),
                    end_column: end.column + 1,
                    bytes: (span.byte_range().start, span.byte_range().end),
                },
                label: "syntax error".to_owned(),
                help: None,
            })
        })?;
        let mut allowed = Vec::new();
        collect_allows(&syntax.items, &mut allowed);
        let unguarded_main = syntax.items.iter().find_map(|item| match item {
            syn::Item::Fn(f) if f.sig.ident == "main" => Some(f.sig.ident.clone()),
            _ => None,
        });
        let mut syntax = syntax;
        for item in &mut syntax.items {
            if let syn::Item::Macro(m) = item
                && is_main_macro(&m.mac.path)
                && let Ok(func) = syn::parse2::<syn::ItemFn>(m.mac.tokens.clone())
            {
                *item = syn::Item::Fn(func);
            }
        }
        Ok(SourceFile {
            path,
            display,
            text,
            syntax,
            unguarded_main,
            allowed,
        })
    }

    /// Whether `lint` is allowed at `line` by an `#[mp::allow(..)]`.
    pub fn is_allowed(&self, lint: &str, line: usize) -> bool {
        self.allowed.iter().any(|(first, last, lints)| {
            (*first..=*last).contains(&line) && lints.iter().any(|l| l == lint)
        })
    }
}

/// `mp::main` (the guard macro); a bare `main!` is too ambiguous to count.
fn is_main_macro(path: &syn::Path) -> bool {
    path.segments.len() == 2 && path.segments[0].ident == "mp" && path.segments[1].ident == "main"
}

/// The lints named by an `#[mp::allow(a, b-c)]` attribute (`mp::allow` or a bare `allow`
/// imported from mp is not told apart from rustc's; only the `mp::` path counts).
pub fn allowed_lints(attr: &syn::Attribute) -> Option<Vec<String>> {
    let path = attr.path();
    let is_mp_allow = path.segments.len() == 2
        && path.segments[0].ident == "mp"
        && path.segments[1].ident == "allow";
    if !is_mp_allow {
        return None;
    }
    let syn::Meta::List(list) = &attr.meta else {
        return Some(Vec::new());
    };
    // Lint names have hyphens, which are separate tokens: join everything between commas.
    let mut names = vec![String::new()];
    for token in list.tokens.clone() {
        match token {
            proc_macro2::TokenTree::Punct(p) if p.as_char() == ',' => names.push(String::new()),
            other => names
                .last_mut()
                .expect("one name")
                .push_str(&other.to_string()),
        }
    }
    Some(
        names
            .into_iter()
            .map(|n| n.replace('_', "-"))
            .filter(|n| !n.is_empty())
            .collect(),
    )
}

fn collect_allows(items: &[syn::Item], out: &mut Vec<(usize, usize, Vec<String>)>) {
    for item in items {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            _ => &[],
        };
        for attr in attrs {
            if let Some(lints) = allowed_lints(attr) {
                let span = item.span();
                out.push((span.start().line, span.end().line, lints));
            }
        }
        if let syn::Item::Mod(m) = item
            && let Some((_, inner)) = &m.content
        {
            collect_allows(inner, out);
        }
        if let syn::Item::Impl(i) = item {
            for impl_item in &i.items {
                if let syn::ImplItem::Fn(f) = impl_item {
                    for attr in &f.attrs {
                        if let Some(lints) = allowed_lints(attr) {
                            out.push((f.span().start().line, f.span().end().line, lints));
                        }
                    }
                }
            }
        }
    }
}

/// Loads a target: its root file and every module file it declares. Files that cannot be
/// read or parsed come back as diagnostics, each with the file's text; the others are still
/// checked.
pub fn load_target(root: &Path, workspace: &Path) -> (Vec<SourceFile>, Vec<(Diagnostic, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    load(root, dir, workspace, &mut files, &mut errors, 0);
    (files, errors)
}

fn display_path(path: &Path, workspace: &Path) -> String {
    path.strip_prefix(workspace)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn load(
    path: &Path,
    module_dir: PathBuf,
    workspace: &Path,
    files: &mut Vec<SourceFile>,
    errors: &mut Vec<(Diagnostic, String)>,
    depth: usize,
) {
    // A `#[path]` cycle cannot recurse forever.
    if depth > 64 || files.iter().any(|f| f.path == path) {
        return;
    }
    let display = display_path(path, workspace);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push((
                Diagnostic {
                    lint: None,
                    level: Level::Deny,
                    message: format!("cannot read this file: {e}"),
                    file: display,
                    span: Span {
                        line: 1,
                        column: 1,
                        end_line: 1,
                        end_column: 1,
                        bytes: (0, 0),
                    },
                    label: "declared here as a module".to_owned(),
                    help: None,
                },
                String::new(),
            ));
            return;
        }
    };
    let file = match SourceFile::parse(path.to_path_buf(), display, text.clone()) {
        Ok(f) => f,
        Err(e) => {
            errors.push((*e, text));
            return;
        }
    };
    let mut children = Vec::new();
    declared_modules(&file.syntax.items, &module_dir, path, &mut children);
    files.push(file);
    for (child, child_dir) in children {
        load(&child, child_dir, workspace, files, errors, depth + 1);
    }
}

/// The files `mod name;` declarations in `items` refer to, each with the directory its own
/// submodules live in.
fn declared_modules(
    items: &[syn::Item],
    module_dir: &Path,
    file: &Path,
    out: &mut Vec<(PathBuf, PathBuf)>,
) {
    for item in items {
        let syn::Item::Mod(m) = item else { continue };
        let explicit = m.attrs.iter().find_map(path_attribute);
        let name = m.ident.to_string();
        match &m.content {
            Some((_, inner)) => {
                let dir = match &explicit {
                    Some(p) => module_dir.join(p),
                    None => module_dir.join(&name),
                };
                declared_modules(inner, &dir, file, out);
            }
            None => {
                if let Some(p) = explicit {
                    let target = file.parent().unwrap_or(Path::new(".")).join(p);
                    let dir = target.parent().unwrap_or(Path::new(".")).to_path_buf();
                    out.push((target, dir));
                    continue;
                }
                let flat = module_dir.join(format!("{name}.rs"));
                let nested = module_dir.join(&name).join("mod.rs");
                let target = if flat.exists() || !nested.exists() {
                    flat
                } else {
                    nested
                };
                out.push((target, module_dir.join(&name)));
            }
        }
    }
}

fn path_attribute(attr: &syn::Attribute) -> Option<String> {
    if !attr.path().is_ident("path") {
        return None;
    }
    match &attr.meta {
        syn::Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    }
}
