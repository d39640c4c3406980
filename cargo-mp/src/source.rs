//! A target's sources: the crate root and every file its `mod` declarations name (`foo.rs`,
//! `foo/mod.rs`, `#[path = ".."]`, raw names such as `r#async`, declarations inside macro
//! invocations whose body parses as items, `include!("literal.rs")`), each parsed once with
//! `syn`, with its imports (`names`), the line ranges that `#[mp::allow(..)]` exempts from
//! lints, and the line ranges of `#[cfg(test)]` code. A declaration that cannot be followed is
//! recorded, never dropped silently.

use std::path::{Path, PathBuf};

use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;

use crate::diagnostic::{Diagnostic, Kind, Span};
use crate::lints::Level;
use crate::names::{Crate, Names};

/// One parsed file.
pub struct SourceFile {
    /// The path to read.
    pub path: PathBuf,
    /// The path shown in diagnostics (relative to the workspace root).
    pub display: String,
    /// The text.
    pub text: String,
    /// The syntax tree the lints read: as parsed, except that `mp::main! { fn main() { .. } }`
    /// is replaced by the function it wraps, and a macro call whose input is a list of
    /// expressions (`println!("{}", p.join()?)`, `vec![..]`, `assert_eq!(..)`) by the tuple
    /// of those expressions, so every lint sees its arguments without parsing them again.
    pub syntax: syn::File,
    /// The file's imports.
    pub names: Names,
    /// The name of a module-level `fn main` that is *not* wrapped by `mp::main!`.
    pub unguarded_main: Option<syn::Ident>,
    /// Line ranges under `#[mp::allow(lints)]`: `(first, last, lints)`.
    pub allowed: Vec<(usize, usize, Vec<String>)>,
    /// Names in `#[mp::allow(..)]` that are not lints, with where they are.
    pub unknown_allows: Vec<(String, Span)>,
    /// Line ranges of `#[cfg(test)]` items.
    pub test_code: Vec<(usize, usize)>,
    /// Names bound to a small integer literal (`let workers = 4;`).
    pub small_constants: std::collections::HashSet<String>,
    /// The file's workers, and whether each writes to a channel it is given.
    pub writing_workers: std::collections::HashMap<String, bool>,
}

/// A module declaration that was not followed, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NotFollowed {
    /// `file:line`.
    pub at: String,
    /// Why (`inside my_macro!`, `file not found: src/x.rs`, `include! of a computed path`).
    pub why: String,
}

impl std::fmt::Display for NotFollowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.at, self.why)
    }
}

fn syntax_error(
    display: &str,
    message: String,
    start: (usize, usize),
    bytes: (usize, usize),
) -> Box<Diagnostic> {
    Box::new(Diagnostic {
        kind: Kind::Syntax,
        lint: None,
        level: Level::Deny,
        message,
        file: display.to_owned(),
        span: Span {
            line: start.0.max(1),
            column: start.1 + 1,
            end_line: start.0.max(1),
            end_column: start.1 + 2,
            bytes,
        },
        label: "syntax error".to_owned(),
        help: None,
        notes: Vec::new(),
        pending: None,
    })
}

impl SourceFile {
    /// Parses `text` (read from `path`, shown as `display`) for a crate that calls mp `mp`; a
    /// syntax error comes back as a diagnostic.
    pub fn parse(
        path: PathBuf,
        display: String,
        text: String,
    ) -> Result<SourceFile, Box<Diagnostic>> {
        SourceFile::parse_in(path, display, text, &Crate::default())
    }

    /// Parses `text` as a file of `krate`.
    pub fn parse_in(
        path: PathBuf,
        display: String,
        text: String,
        krate: &Crate,
    ) -> Result<SourceFile, Box<Diagnostic>> {
        let mut body = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut offset = text.len() - body.len();
        // A shebang line (`#!` not followed by `[`) is not Rust.
        if body.starts_with("#!") && !body[2..].trim_start().starts_with('[') {
            let end = body.find('\n').unwrap_or(body.len());
            offset += end;
            body = &body[end..];
        }
        let padded;
        let source = if offset > 0 {
            // Keep lines and columns: blank the skipped bytes' line instead of cutting them.
            padded = format!("{}{body}", " ".repeat(text[..offset].chars().count()));
            padded.as_str()
        } else {
            body
        };
        let tokens: proc_macro2::TokenStream =
            source.parse().map_err(|e: proc_macro2::LexError| {
                let span = e.span();
                let start = span.start();
                syntax_error(
                    &display,
                    format!(
                        "cannot parse this file: {}",
                        lex_problem(source, span.byte_range().start)
                    ),
                    (start.line, start.column),
                    (span.byte_range().start, span.byte_range().start),
                )
            })?;
        let syntax: syn::File = syn::parse2(tokens).map_err(|e| {
            let span = e.span();
            let start = span.start();
            let range = span.byte_range();
            let mut d = syntax_error(
                &display,
                format!("cannot parse this file: {e}"),
                (start.line, start.column),
                (range.start, range.end),
            );
            let end = span.end();
            if end.line == start.line && end.column > start.column {
                d.span.end_column = end.column + 1;
            }
            d
        })?;
        let names = Names::of(&syntax, krate);
        let mut attrs = Attrs {
            names: &names,
            allowed: Vec::new(),
            unknown: Vec::new(),
            test_code: Vec::new(),
        };
        attrs.visit_file(&syntax);
        let (allowed, unknown_allows, test_code) = (attrs.allowed, attrs.unknown, attrs.test_code);
        let unguarded_main = syntax.items.iter().find_map(|item| match item {
            syn::Item::Fn(f) if f.sig.ident == "main" => Some(f.sig.ident.clone()),
            _ => None,
        });
        let mut syntax = syntax;
        for item in &mut syntax.items {
            if let syn::Item::Macro(m) = item
                && names.is_mp(&m.mac.path, &["main"])
                && let Ok(func) = syn::parse2::<syn::ItemFn>(m.mac.tokens.clone())
            {
                *item = syn::Item::Fn(func);
            }
        }
        MacroArgs.visit_file_mut(&mut syntax);
        let small_constants = crate::syntax::small_constants(&syntax);
        let writing_workers = crate::syntax::writing_workers(&names, &syntax);
        Ok(SourceFile {
            small_constants,
            writing_workers,
            path,
            display,
            text,
            syntax,
            names,
            unguarded_main,
            allowed,
            unknown_allows,
            test_code,
        })
    }

    /// Whether `lint` is allowed at `line` by an `#[mp::allow(..)]`.
    pub fn is_allowed(&self, lint: &str, line: usize) -> bool {
        self.allowed.iter().any(|(first, last, lints)| {
            (*first..=*last).contains(&line) && lints.iter().any(|l| l == lint)
        })
    }

    /// Whether `line` is inside `#[cfg(test)]` code.
    pub fn is_test_code(&self, line: usize) -> bool {
        self.test_code
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&line))
    }
}

/// A plain description of what stops the lexer at `at`.
fn lex_problem(text: &str, at: usize) -> String {
    let rest = &text[at.min(text.len())..];
    match rest.chars().next() {
        Some(c @ (')' | ']' | '}')) => format!("unexpected closing delimiter `{c}`"),
        Some(c @ ('(' | '[' | '{')) => format!("this `{c}` is never closed"),
        Some('"') => "unterminated string literal".to_owned(),
        Some('\'') => "unterminated character literal".to_owned(),
        Some('/') if rest.starts_with("/*") => "unterminated block comment".to_owned(),
        Some(c) => format!("unknown start of token `{}`", c.escape_debug()),
        None => "unexpected end of file (an unclosed delimiter)".to_owned(),
    }
}

/// Replaces every macro call whose input parses as comma-separated expressions with the tuple
/// of those expressions (their spans are the original text's).
struct MacroArgs;

fn macro_exprs(mac: &syn::Macro) -> Option<syn::Expr> {
    use syn::parse::Parser;
    if mac.tokens.is_empty() {
        return None;
    }
    let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
    let mut elems = parser.parse2(mac.tokens.clone()).ok()?;
    if !elems.trailing_punct() {
        elems.push_punct(syn::Token![,](proc_macro2::Span::call_site()));
    }
    Some(syn::Expr::Tuple(syn::ExprTuple {
        attrs: Vec::new(),
        paren_token: syn::token::Paren::default(),
        elems,
    }))
}

impl VisitMut for MacroArgs {
    fn visit_expr_mut(&mut self, expr: &mut syn::Expr) {
        if let syn::Expr::Macro(m) = expr
            && let Some(tuple) = macro_exprs(&m.mac)
        {
            *expr = tuple;
        }
        syn::visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut syn::Stmt) {
        if let syn::Stmt::Macro(m) = stmt
            && let Some(tuple) = macro_exprs(&m.mac)
        {
            *stmt = syn::Stmt::Expr(tuple, m.semi_token);
        }
        syn::visit_mut::visit_stmt_mut(self, stmt);
    }
}

/// The lints named by an `#[mp::allow(a, b-c)]` attribute (`mp::allow`, or `allow` reached
/// through an import of mp's; a bare `allow` is rustc's), each with its span.
pub fn allowed_lints(names: &Names, attr: &syn::Attribute) -> Option<Vec<(String, Span)>> {
    // A bare `#[allow]` is rustc's attribute.
    if attr.path().is_ident("allow") || !names.is_mp(attr.path(), &["allow"]) {
        return None;
    }
    let syn::Meta::List(list) = &attr.meta else {
        return Some(Vec::new());
    };
    // Lint names have hyphens, which are separate tokens: join everything between commas.
    let mut names: Vec<(String, Option<Span>)> = vec![(String::new(), None)];
    for token in list.tokens.clone() {
        match token {
            proc_macro2::TokenTree::Punct(p) if p.as_char() == ',' => {
                names.push((String::new(), None))
            }
            other => {
                let last = names.last_mut().expect("one name");
                last.0.push_str(&other.to_string());
                let here = Span::of(&other);
                last.1 = Some(match last.1 {
                    None => here,
                    Some(first) => Span {
                        end_line: here.end_line,
                        end_column: here.end_column,
                        bytes: (first.bytes.0, here.bytes.1),
                        ..first
                    },
                });
            }
        }
    }
    Some(
        names
            .into_iter()
            .filter_map(|(n, span)| Some((n.replace('_', "-"), span?)))
            .filter(|(n, _)| !n.is_empty())
            .collect(),
    )
}

/// Collects `#[mp::allow]` on every node that takes attributes, and `#[cfg(test)]` items.
struct Attrs<'n> {
    names: &'n Names,
    allowed: Vec<(usize, usize, Vec<String>)>,
    unknown: Vec<(String, Span)>,
    test_code: Vec<(usize, usize)>,
}

impl Attrs<'_> {
    fn node(&mut self, attrs: &[syn::Attribute], node: &impl Spanned) {
        let span = node.span();
        let range = (span.start().line, span.end().line);
        for attr in attrs {
            if let Some(lints) = allowed_lints(self.names, attr) {
                for (name, span) in &lints {
                    if crate::lints::find(name).is_none() {
                        self.unknown.push((name.clone(), *span));
                    }
                }
                self.allowed.push((
                    range.0,
                    range.1,
                    lints.into_iter().map(|(n, _)| n).collect(),
                ));
            }
            if is_cfg_test(attr) {
                self.test_code.push(range);
            }
        }
    }
}

fn is_cfg_test(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("cfg")
        && matches!(&attr.meta, syn::Meta::List(l) if l.tokens.to_string() == "test")
}

impl<'a> Visit<'a> for Attrs<'_> {
    fn visit_item(&mut self, i: &'a syn::Item) {
        let attrs: &[syn::Attribute] = match i {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::ExternCrate(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::ForeignMod(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::TraitAlias(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Union(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => &[],
        };
        self.node(attrs, i);
        syn::visit::visit_item(self, i);
    }
    fn visit_impl_item(&mut self, i: &'a syn::ImplItem) {
        let attrs: &[syn::Attribute] = match i {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        self.node(attrs, i);
        syn::visit::visit_impl_item(self, i);
    }
    fn visit_trait_item(&mut self, i: &'a syn::TraitItem) {
        let attrs: &[syn::Attribute] = match i {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        self.node(attrs, i);
        syn::visit::visit_trait_item(self, i);
    }
    fn visit_local(&mut self, l: &'a syn::Local) {
        self.node(&l.attrs, l);
        syn::visit::visit_local(self, l);
    }
    fn visit_stmt_macro(&mut self, m: &'a syn::StmtMacro) {
        self.node(&m.attrs, m);
        syn::visit::visit_stmt_macro(self, m);
    }
    fn visit_arm(&mut self, a: &'a syn::Arm) {
        self.node(&a.attrs, a);
        syn::visit::visit_arm(self, a);
    }
    fn visit_field_value(&mut self, f: &'a syn::FieldValue) {
        self.node(&f.attrs, f);
        syn::visit::visit_field_value(self, f);
    }
    fn visit_expr(&mut self, e: &'a syn::Expr) {
        let attrs: &[syn::Attribute] = match e {
            syn::Expr::Array(x) => &x.attrs,
            syn::Expr::Assign(x) => &x.attrs,
            syn::Expr::Async(x) => &x.attrs,
            syn::Expr::Await(x) => &x.attrs,
            syn::Expr::Binary(x) => &x.attrs,
            syn::Expr::Block(x) => &x.attrs,
            syn::Expr::Break(x) => &x.attrs,
            syn::Expr::Call(x) => &x.attrs,
            syn::Expr::Cast(x) => &x.attrs,
            syn::Expr::Closure(x) => &x.attrs,
            syn::Expr::Const(x) => &x.attrs,
            syn::Expr::Continue(x) => &x.attrs,
            syn::Expr::Field(x) => &x.attrs,
            syn::Expr::ForLoop(x) => &x.attrs,
            syn::Expr::If(x) => &x.attrs,
            syn::Expr::Index(x) => &x.attrs,
            syn::Expr::Let(x) => &x.attrs,
            syn::Expr::Loop(x) => &x.attrs,
            syn::Expr::Macro(x) => &x.attrs,
            syn::Expr::Match(x) => &x.attrs,
            syn::Expr::MethodCall(x) => &x.attrs,
            syn::Expr::Paren(x) => &x.attrs,
            syn::Expr::Path(x) => &x.attrs,
            syn::Expr::Range(x) => &x.attrs,
            syn::Expr::Reference(x) => &x.attrs,
            syn::Expr::Return(x) => &x.attrs,
            syn::Expr::Struct(x) => &x.attrs,
            syn::Expr::Try(x) => &x.attrs,
            syn::Expr::Tuple(x) => &x.attrs,
            syn::Expr::Unary(x) => &x.attrs,
            syn::Expr::Unsafe(x) => &x.attrs,
            syn::Expr::While(x) => &x.attrs,
            _ => &[],
        };
        if !attrs.is_empty() {
            self.node(attrs, e);
        }
        syn::visit::visit_expr(self, e);
    }
}

/// A target's files, what could not be read or parsed, and what was not followed.
#[derive(Default)]
pub struct Loaded {
    /// The parsed files, the crate root first.
    pub files: Vec<SourceFile>,
    /// Files that cannot be read or parsed, each with the file's text.
    pub errors: Vec<(Diagnostic, String)>,
    /// Module declarations not followed.
    pub not_followed: Vec<NotFollowed>,
}

/// Loads a target: its root file and every module file it declares. Files that cannot be
/// read or parsed come back as diagnostics, each with the file's text; the others are still
/// checked.
pub fn load_target(root: &Path, workspace: &Path) -> (Vec<SourceFile>, Vec<(Diagnostic, String)>) {
    let loaded = load_crate(root, workspace, &Crate::default());
    (loaded.files, loaded.errors)
}

/// Loads a target of `krate` (see [`load_target`]), with the declarations not followed.
pub fn load_crate(root: &Path, workspace: &Path, krate: &Crate) -> Loaded {
    let mut loaded = Loaded::default();
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut queue = vec![(root.to_path_buf(), dir, None::<String>)];
    let mut seen = std::collections::HashSet::new();
    while let Some((path, module_dir, declared_at)) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        match load_file(&path, workspace, krate) {
            Ok(file) => {
                let mut found = Modules {
                    file: &path,
                    display: &file.display,
                    children: Vec::new(),
                    not_followed: Vec::new(),
                };
                found.items(&file.syntax.items, &module_dir, &file.names);
                for (child, dir, at) in found.children {
                    queue.push((child, dir, Some(at)));
                }
                loaded.not_followed.extend(found.not_followed);
                loaded.files.push(file);
            }
            Err(Missing(display)) => loaded.not_followed.push(NotFollowed {
                at: declared_at.unwrap_or_else(|| display.clone()),
                why: format!("file not found: {display}"),
            }),
            Err(Failed(d, text)) => loaded.errors.push((*d, text)),
        }
    }
    // The crate root first, then in the order of paths (stable output).
    if loaded.files.len() > 1 {
        loaded.files[1..].sort_by(|a, b| a.path.cmp(&b.path));
    }
    loaded.not_followed.sort();
    loaded
}

/// What [`load_parallel`] gives: each file's result (by path), the files that cannot be read or
/// parsed (with their text), and the declarations not followed.
pub type Parallel<R> = (
    Vec<(PathBuf, R)>,
    Vec<(Diagnostic, String)>,
    Vec<NotFollowed>,
);

/// Loads a target of `krate` in parallel (rayon): every file is read, parsed and handed to
/// `each` on one thread (a syntax tree is not `Send`), and only what `each` returns travels.
/// The crate root's result comes first, the others in the order of their paths.
pub fn load_parallel<R: Send>(
    root: &Path,
    workspace: &Path,
    krate: &Crate,
    each: &(dyn Fn(&SourceFile, bool) -> R + Sync),
) -> Parallel<R> {
    use std::sync::Mutex;
    struct Shared<'s, R> {
        workspace: &'s Path,
        krate: &'s Crate,
        each: &'s (dyn Fn(&SourceFile, bool) -> R + Sync),
        seen: Mutex<std::collections::HashSet<PathBuf>>,
        results: Mutex<Vec<(PathBuf, R)>>,
        errors: Mutex<Vec<(Diagnostic, String)>>,
        not_followed: Mutex<Vec<NotFollowed>>,
    }
    fn visit<'s, R: Send>(
        scope: &rayon::Scope<'s>,
        shared: &'s Shared<'s, R>,
        path: PathBuf,
        module_dir: PathBuf,
        declared_at: Option<String>,
        depth: usize,
    ) {
        // A `#[path]` cycle cannot recurse forever.
        if depth > 64
            || !shared
                .seen
                .lock()
                .expect("not poisoned")
                .insert(path.clone())
        {
            return;
        }
        match load_file(&path, shared.workspace, shared.krate) {
            Ok(file) => {
                let mut found = Modules {
                    file: &path,
                    display: &file.display,
                    children: Vec::new(),
                    not_followed: Vec::new(),
                };
                found.items(&file.syntax.items, &module_dir, &file.names);
                let (children, not_followed) = (found.children, found.not_followed);
                for (child, dir, at) in children {
                    scope.spawn(move |s| visit(s, shared, child, dir, Some(at), depth + 1));
                }
                shared
                    .not_followed
                    .lock()
                    .expect("not poisoned")
                    .extend(not_followed);
                let result = (shared.each)(&file, depth == 0);
                shared
                    .results
                    .lock()
                    .expect("not poisoned")
                    .push((path, result));
            }
            Err(Missing(display)) => {
                shared
                    .not_followed
                    .lock()
                    .expect("not poisoned")
                    .push(NotFollowed {
                        at: declared_at.unwrap_or_else(|| display.clone()),
                        why: format!("file not found: {display}"),
                    })
            }
            Err(Failed(d, text)) => shared.errors.lock().expect("not poisoned").push((*d, text)),
        }
    }
    let shared = Shared {
        workspace,
        krate,
        each,
        seen: Mutex::new(std::collections::HashSet::new()),
        results: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        not_followed: Mutex::new(Vec::new()),
    };
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    rayon::scope(|s| visit(s, &shared, root.to_path_buf(), dir, None, 0));
    let mut results = shared.results.into_inner().expect("not poisoned");
    results.sort_by(|a, b| (a.0 != root, &a.0).cmp(&(b.0 != root, &b.0)));
    let mut not_followed = shared.not_followed.into_inner().expect("not poisoned");
    not_followed.sort();
    (
        results,
        shared.errors.into_inner().expect("not poisoned"),
        not_followed,
    )
}

enum LoadError {
    Missing(String),
    Failed(Box<Diagnostic>, String),
}
use LoadError::{Failed, Missing};

fn display_path(path: &Path, workspace: &Path) -> String {
    path.strip_prefix(workspace)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn load_file(path: &Path, workspace: &Path, krate: &Crate) -> Result<SourceFile, LoadError> {
    let display = display_path(path, workspace);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Missing(display)),
        Err(e) => {
            return Err(Failed(
                Box::new(Diagnostic {
                    kind: Kind::Syntax,
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
                    notes: Vec::new(),
                    pending: None,
                }),
                String::new(),
            ));
        }
    };
    SourceFile::parse_in(path.to_path_buf(), display, text.clone(), krate)
        .map_err(|e| Failed(e, text))
}

/// Finds the files a file's module declarations and `include!`s refer to.
struct Modules<'a> {
    file: &'a Path,
    display: &'a str,
    children: Vec<(PathBuf, PathBuf, String)>,
    not_followed: Vec<NotFollowed>,
}

impl Modules<'_> {
    fn here(&self, node: &impl Spanned) -> String {
        format!("{}:{}", self.display, node.span().start().line)
    }

    fn items(&mut self, items: &[syn::Item], module_dir: &Path, names: &Names) {
        for item in items {
            match item {
                syn::Item::Mod(m) => self.module(m, module_dir, names),
                syn::Item::Macro(m) => self.mac(&m.mac, module_dir, names),
                _ => {}
            }
        }
    }

    fn module(&mut self, m: &syn::ItemMod, module_dir: &Path, names: &Names) {
        let explicit = m.attrs.iter().find_map(path_attribute);
        let name = m.ident.unraw().to_string();
        match &m.content {
            Some((_, inner)) => {
                let dir = match &explicit {
                    Some(p) => module_dir.join(p),
                    None => module_dir.join(&name),
                };
                self.items(inner, &dir, names);
            }
            None => {
                if let Some(p) = explicit {
                    let target = self.file.parent().unwrap_or(Path::new(".")).join(p);
                    let dir = target.parent().unwrap_or(Path::new(".")).to_path_buf();
                    self.children.push((target, dir, self.here(m)));
                    return;
                }
                let flat = module_dir.join(format!("{name}.rs"));
                let nested = module_dir.join(&name).join("mod.rs");
                let target = if flat.exists() || !nested.exists() {
                    flat
                } else {
                    nested
                };
                self.children
                    .push((target, module_dir.join(&name), self.here(m)));
            }
        }
    }

    /// A macro invocation among items: `include!("x.rs")`, or a macro whose body (or a braced
    /// group inside it, as in `cfg_if!`) parses as items.
    fn mac(&mut self, mac: &syn::Macro, module_dir: &Path, names: &Names) {
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if name == "include" {
            match syn::parse2::<syn::LitStr>(mac.tokens.clone()) {
                Ok(lit) => {
                    let target = self
                        .file
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join(lit.value());
                    self.children
                        .push((target, module_dir.to_path_buf(), self.here(mac)));
                }
                Err(_) => self.not_followed.push(NotFollowed {
                    at: self.here(mac),
                    why: "include! of a path that is not a literal".to_owned(),
                }),
            }
            return;
        }
        if !declares_module(mac.tokens.clone()) {
            return;
        }
        let before = self.children.len();
        let followed = self.groups(mac.tokens.clone(), module_dir, names);
        if !followed || self.children.len() == before {
            self.not_followed.push(NotFollowed {
                at: self.here(mac),
                why: format!("inside {name}!"),
            });
        }
    }

    /// Parses `tokens` as items, or else each braced group in it; whether every group that
    /// declares a module was read.
    fn groups(
        &mut self,
        tokens: proc_macro2::TokenStream,
        module_dir: &Path,
        names: &Names,
    ) -> bool {
        if let Ok(file) = syn::parse2::<syn::File>(tokens.clone()) {
            self.items(&file.items, module_dir, names);
            return true;
        }
        let mut all = true;
        for tree in tokens {
            if let proc_macro2::TokenTree::Group(g) = tree
                && declares_module(g.stream())
            {
                all &= self.groups(g.stream(), module_dir, names);
            }
        }
        all
    }
}

/// Whether `mod <name>` appears in `tokens` (at any depth).
fn declares_module(tokens: proc_macro2::TokenStream) -> bool {
    let mut previous_mod = false;
    for tree in tokens {
        match tree {
            proc_macro2::TokenTree::Ident(i) => {
                if previous_mod {
                    return true;
                }
                previous_mod = i == "mod";
            }
            proc_macro2::TokenTree::Group(g) => {
                if declares_module(g.stream()) {
                    return true;
                }
                previous_mod = false;
            }
            _ => previous_mod = false,
        }
    }
    false
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
