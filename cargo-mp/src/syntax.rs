//! Syntax facts several lints need: which paths start processes or pools, which functions are
//! registered workers, which are defined without `#[mp::worker]`, and which calls take a worker.

use std::collections::HashSet;

use syn::visit::Visit;

use crate::source::SourceFile;

/// A path's segments, as strings (`std::process::exit` → `["std", "process", "exit"]`).
pub(crate) fn segments(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// The last `n` segments of a path, as strings.
fn tail(path: &syn::Path, n: usize) -> Vec<String> {
    let segs = segments(path);
    segs[segs.len().saturating_sub(n)..].to_vec()
}

fn ends_with(path: &syn::Path, names: &[&str]) -> bool {
    tail(path, names.len()) == names
}

/// `mp::spawn(..)` or `Process::new(..)`: starts one process.
pub(crate) fn starts_a_process(call: &syn::ExprCall) -> bool {
    let syn::Expr::Path(p) = &*call.func else {
        return false;
    };
    ends_with(&p.path, &["mp", "spawn"]) || ends_with(&p.path, &["Process", "new"])
}

/// `Pool::new(..)` or `Pool::builder()`: makes a pool.
pub(crate) fn makes_a_pool(call: &syn::ExprCall) -> bool {
    let syn::Expr::Path(p) = &*call.func else {
        return false;
    };
    ends_with(&p.path, &["Pool", "new"]) || ends_with(&p.path, &["Pool", "builder"])
}

/// Any use of `mp`'s process-starting API: processes, pools, executors, managers.
pub(crate) fn uses_spawning_api(call: &syn::ExprCall) -> bool {
    let syn::Expr::Path(p) = &*call.func else {
        return false;
    };
    starts_a_process(call)
        || makes_a_pool(call)
        || ends_with(&p.path, &["Executor", "new"])
        || ends_with(&p.path, &["Manager", "new"])
        || ends_with(&p.path, &["Manager", "builder"])
}

/// Whether an attribute is `#[mp::worker]` (or `#[worker]`, imported).
pub(crate) fn is_worker_attr(attr: &syn::Attribute) -> bool {
    ends_with(attr.path(), &["worker"])
}

/// Methods of `Pool`, `Executor` and `PoolBuilder` whose first argument is a worker, called
/// with two arguments (which sets them apart from `Iterator::map` and friends).
const WORKER_METHODS: &[&str] = &[
    "map",
    "starmap",
    "imap",
    "imap_unordered",
    "map_async",
    "apply",
    "apply_async",
    "submit",
    "initializer",
];

/// The expression passed where a worker is expected, if `expr` is such a call.
pub(crate) fn worker_argument(expr: &syn::Expr) -> Option<&syn::Expr> {
    match expr {
        syn::Expr::Call(call) if starts_a_process(call) => call.args.first(),
        syn::Expr::MethodCall(m)
            if m.args.len() == 2 && WORKER_METHODS.contains(&m.method.to_string().as_str()) =>
        {
            m.args.first()
        }
        _ => None,
    }
}

/// The functions of a target: registered workers, other module-level functions, and
/// functions defined inside function bodies.
#[derive(Default)]
pub(crate) struct Functions {
    pub(crate) workers: HashSet<String>,
    pub(crate) plain: HashSet<String>,
    pub(crate) local: HashSet<String>,
}

impl Functions {
    pub(crate) fn of(files: &[SourceFile]) -> Functions {
        let mut f = Functions::default();
        for file in files {
            f.items(&file.syntax.items, false);
        }
        f
    }

    fn items(&mut self, items: &[syn::Item], local: bool) {
        for item in items {
            match item {
                syn::Item::Fn(func) => {
                    let name = func.sig.ident.to_string();
                    if func.attrs.iter().any(is_worker_attr) {
                        self.workers.insert(name);
                    } else if local {
                        self.local.insert(name);
                    } else {
                        self.plain.insert(name);
                    }
                    let mut inner = LocalFns(Vec::new());
                    inner.visit_block(&func.block);
                    for body_items in inner.0 {
                        self.items(&body_items, true);
                    }
                }
                syn::Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        self.items(inner, local);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Items declared in statements of a block (local fns), one level deep.
struct LocalFns(Vec<Vec<syn::Item>>);

impl<'ast> Visit<'ast> for LocalFns {
    fn visit_stmt(&mut self, stmt: &'ast syn::Stmt) {
        if let syn::Stmt::Item(item) = stmt {
            self.0.push(vec![item.clone()]);
            return;
        }
        syn::visit::visit_stmt(self, stmt);
    }
}

/// Calls `f` on every expression inside a `#[mp::worker]` function of `file` (arguments of
/// expression-list macros such as `println!` included).
pub(crate) fn in_workers(file: &SourceFile, mut f: impl FnMut(&syn::Expr)) {
    with_loops(file, |expr, _, in_worker| {
        if in_worker {
            f(expr);
        }
    });
}

/// The loops around an expression (innermost last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loop {
    /// `for _ in a..b`: a fixed number of rounds (of workers, say).
    OverRange,
    /// `for item in collection`: a round per data item.
    OverItems,
    /// `while` or `loop`.
    Other,
}

/// Calls `f` on every expression of `file` with the loops around it and whether it is inside
/// a `#[mp::worker]` function; arguments of expression-list macros (`println!`, `assert!`,
/// `vec![..]`) are visited as expressions too.
pub(crate) fn with_loops(file: &SourceFile, mut f: impl FnMut(&syn::Expr, &[Loop], bool)) {
    let mut walker = Walker {
        f: &mut f,
        loops: Vec::new(),
        in_worker: false,
    };
    walker.visit_file(&file.syntax);
}

struct Walker<'f, F> {
    f: &'f mut F,
    loops: Vec<Loop>,
    in_worker: bool,
}

impl<'a, F: FnMut(&syn::Expr, &[Loop], bool)> Visit<'a> for Walker<'_, F> {
    fn visit_expr(&mut self, expr: &'a syn::Expr) {
        (self.f)(expr, &self.loops, self.in_worker);
        match expr {
            syn::Expr::ForLoop(l) => {
                self.visit_expr(&l.expr);
                let kind = if is_range(&l.expr) {
                    Loop::OverRange
                } else {
                    Loop::OverItems
                };
                self.loops.push(kind);
                self.visit_block(&l.body);
                self.loops.pop();
            }
            syn::Expr::While(l) => {
                self.visit_expr(&l.cond);
                self.loops.push(Loop::Other);
                self.visit_block(&l.body);
                self.loops.pop();
            }
            syn::Expr::Loop(l) => {
                self.loops.push(Loop::Other);
                self.visit_block(&l.body);
                self.loops.pop();
            }
            // A closure is a new context: whether its body runs per iteration of a loop
            // around it is not something a lint can rely on.
            syn::Expr::Closure(c) => {
                let saved = std::mem::take(&mut self.loops);
                self.visit_expr(&c.body);
                self.loops = saved;
            }
            _ => syn::visit::visit_expr(self, expr),
        }
    }

    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        let args = macro_args(mac);
        let mut inner = Walker {
            f: &mut *self.f,
            loops: self.loops.clone(),
            in_worker: self.in_worker,
        };
        for arg in &args {
            inner.visit_expr(arg);
        }
    }

    fn visit_item_fn(&mut self, func: &'a syn::ItemFn) {
        let saved = (std::mem::take(&mut self.loops), self.in_worker);
        self.in_worker = func.attrs.iter().any(is_worker_attr);
        syn::visit::visit_item_fn(self, func);
        (self.loops, self.in_worker) = saved;
    }
}

/// The arguments of a macro whose input is comma-separated expressions (`println!`,
/// `assert_eq!`, `format!`, `vec![..]`, ...); nothing for other macros.
pub(crate) fn macro_args(mac: &syn::Macro) -> Vec<syn::Expr> {
    use syn::parse::Parser;
    let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
    parser
        .parse2(mac.tokens.clone())
        .map(|args| args.into_iter().collect())
        .unwrap_or_default()
}

/// Whether an expression is a range (`0..n`, `(1..=k)`): a loop over a number of workers,
/// not over data items.
pub(crate) fn is_range(expr: &syn::Expr) -> bool {
    match expr {
        syn::Expr::Range(_) => true,
        syn::Expr::Paren(p) => is_range(&p.expr),
        syn::Expr::MethodCall(m) if m.method == "rev" || m.method == "step_by" => {
            is_range(&m.receiver)
        }
        _ => false,
    }
}

/// Calls `f` on every call expression inside `expr`.
pub(crate) fn visit_calls<'a>(expr: &'a syn::Expr, f: impl FnMut(&'a syn::ExprCall)) {
    struct Calls<F>(F);
    impl<'a, F: FnMut(&'a syn::ExprCall)> Visit<'a> for Calls<F> {
        fn visit_expr_call(&mut self, call: &'a syn::ExprCall) {
            (self.0)(call);
            syn::visit::visit_expr_call(self, call);
        }
    }
    Calls(f).visit_expr(expr);
}

/// Adds every single-segment path (a variable) inside `expr` to `out`.
pub(crate) fn idents_in(expr: &syn::Expr, out: &mut HashSet<String>) {
    struct Idents<'o>(&'o mut HashSet<String>);
    impl<'a> Visit<'a> for Idents<'_> {
        fn visit_expr_path(&mut self, p: &'a syn::ExprPath) {
            if p.path.segments.len() == 1 {
                self.0.insert(p.path.segments[0].ident.to_string());
            }
        }
    }
    Idents(out).visit_expr(expr);
}

/// A function's attributes, signature and body.
pub(crate) struct FnBody<'a> {
    pub(crate) attrs: &'a [syn::Attribute],
    pub(crate) sig: &'a syn::Signature,
    pub(crate) block: &'a syn::Block,
}

/// Every function of `file`, nested ones and methods included, for lints that look at one
/// body at a time (a body's visitor should skip nested `fn` items: they come on their own).
pub(crate) fn function_bodies(file: &SourceFile) -> Vec<FnBody<'_>> {
    struct Collect<'a>(Vec<FnBody<'a>>);
    impl<'a> Visit<'a> for Collect<'a> {
        fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
            self.0.push(FnBody {
                attrs: &f.attrs,
                sig: &f.sig,
                block: &f.block,
            });
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
            self.0.push(FnBody {
                attrs: &f.attrs,
                sig: &f.sig,
                block: &f.block,
            });
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    let mut c = Collect(Vec::new());
    c.visit_file(&file.syntax);
    c.0
}
