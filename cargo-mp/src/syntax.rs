//! Syntax facts several lints need: which paths start processes or pools (resolved through the
//! file's imports), which functions are registered workers, which are defined without
//! `#[mp::worker]`, which calls take a worker, and the loops around an expression (`for`,
//! `while`, `loop`, and iterator adapters such as `for_each` or `map` taking a closure).

use std::collections::HashSet;

use syn::visit::Visit;

use crate::names::Names;
use crate::source::SourceFile;

/// `mp::spawn(..)` or `mp::Process::new(..)` (through imports and renames): starts one process.
pub(crate) fn starts_a_process(names: &Names, call: &syn::ExprCall) -> bool {
    let syn::Expr::Path(p) = &*call.func else {
        return false;
    };
    names.is_mp(&p.path, &["spawn"]) || names.is_mp(&p.path, &["Process", "new"])
}

/// `mp::Pool::new(..)` or `mp::Pool::builder()`: makes a pool.
pub(crate) fn makes_a_pool(names: &Names, call: &syn::ExprCall) -> bool {
    let syn::Expr::Path(p) = &*call.func else {
        return false;
    };
    names.is_mp(&p.path, &["Pool", "new"]) || names.is_mp(&p.path, &["Pool", "builder"])
}

/// Any use of `mp`'s process-starting API: processes, pools, executors, managers.
pub(crate) fn uses_spawning_api(names: &Names, call: &syn::ExprCall) -> bool {
    let syn::Expr::Path(p) = &*call.func else {
        return false;
    };
    starts_a_process(names, call)
        || makes_a_pool(names, call)
        || names.is_mp(&p.path, &["Executor", "new"])
        || names.is_mp(&p.path, &["Manager", "new"])
        || names.is_mp(&p.path, &["Manager", "builder"])
}

/// Whether an attribute is `#[mp::worker]` (or `#[worker]` imported from mp).
pub(crate) fn is_worker_attr(names: &Names, attr: &syn::Attribute) -> bool {
    names.is_mp(attr.path(), &["worker"])
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

/// The expression passed where a worker is expected, if `expr` is such a call. A pool method
/// counts only in a file that uses mp's process API (`pool_file`).
pub(crate) fn worker_argument<'a>(
    names: &Names,
    pool_file: bool,
    expr: &'a syn::Expr,
) -> Option<&'a syn::Expr> {
    match expr {
        syn::Expr::Call(call) if starts_a_process(names, call) => call.args.first(),
        syn::Expr::MethodCall(m)
            if pool_file
                && m.args.len() == 2
                && WORKER_METHODS.contains(&m.method.to_string().as_str()) =>
        {
            m.args.first()
        }
        _ => None,
    }
}

/// The functions of a target: registered workers, other module-level functions, and
/// functions defined inside function bodies.
#[derive(Default, Debug, Clone)]
pub(crate) struct Functions {
    pub(crate) workers: HashSet<String>,
    pub(crate) plain: HashSet<String>,
    pub(crate) local: HashSet<String>,
}

impl Functions {
    /// The functions of one file.
    pub(crate) fn of(file: &SourceFile) -> Functions {
        let mut f = Functions::default();
        f.items(&file.names, &file.syntax.items, false);
        f
    }

    /// Adds another file's functions.
    pub(crate) fn extend(&mut self, other: Functions) {
        self.workers.extend(other.workers);
        self.plain.extend(other.plain);
        self.local.extend(other.local);
    }

    fn items(&mut self, names: &Names, items: &[syn::Item], local: bool) {
        for item in items {
            match item {
                syn::Item::Fn(func) => {
                    let name = func.sig.ident.to_string();
                    if func.attrs.iter().any(|a| is_worker_attr(names, a)) {
                        self.workers.insert(name);
                    } else if local {
                        self.local.insert(name);
                    } else {
                        self.plain.insert(name);
                    }
                    let mut inner = LocalFns(Vec::new());
                    inner.visit_block(&func.block);
                    for body_items in inner.0 {
                        self.items(names, &body_items, true);
                    }
                }
                syn::Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        self.items(names, inner, local);
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
    /// `for _ in 0..4`, `for _ in 0..mp::cpu_count()`: a small, fixed number of rounds (of
    /// workers, say).
    Fixed,
    /// A round per data item: `for item in items`, `for i in 0..items.len()`, `while`,
    /// `while let`, `loop`, `items.iter().for_each(|x| ..)`, `.map(|x| ..)`.
    PerItem,
}

/// A `for` over a range with a literal bound up to this many rounds is a fixed number of
/// workers, not a loop over data.
pub(crate) const SMALL_RANGE: u128 = 64;

/// Iterator adapters whose closure runs once per item.
const ADAPTERS: &[&str] = &[
    "for_each",
    "try_for_each",
    "map",
    "filter_map",
    "flat_map",
    "filter",
    "fold",
    "try_fold",
    "inspect",
    "find_map",
    "map_while",
    "scan",
    "any",
    "all",
    "for_each_init",
    "for_each_with",
    "map_init",
    "map_with",
];

/// Methods that turn something into an iterator (a chain through one of them is a loop).
const ITERATORS: &[&str] = &[
    "iter",
    "iter_mut",
    "into_iter",
    "par_iter",
    "par_iter_mut",
    "into_par_iter",
    "drain",
    "chunks",
    "chunks_exact",
    "windows",
    "lines",
    "chars",
    "bytes",
    "keys",
    "values",
    "values_mut",
    "enumerate",
    "zip",
    "split",
    "split_whitespace",
    "incoming",
    "read_dir",
    "rev",
    "skip",
    "take",
    "step_by",
    "cycle",
    "flatten",
];

/// Calls `f` on every expression of `file` with the loops around it and whether it is inside
/// a `#[mp::worker]` function; arguments of expression-list macros (`println!`, `assert!`,
/// `vec![..]`) are expressions of the tree (see `SourceFile`), so they are visited too.
pub(crate) fn with_loops(file: &SourceFile, mut f: impl FnMut(&syn::Expr, &[Loop], bool)) {
    let mut walker = Walker {
        names: &file.names,
        small: &file.small_constants,
        f: &mut f,
        loops: Vec::new(),
        in_worker: false,
    };
    walker.visit_file(&file.syntax);
}

struct Walker<'f, F> {
    names: &'f Names,
    small: &'f HashSet<String>,
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
                self.loops
                    .push(range_kind(self.small, &l.expr).unwrap_or(Loop::PerItem));
                self.visit_block(&l.body);
                self.loops.pop();
            }
            syn::Expr::While(l) => {
                self.visit_expr(&l.cond);
                self.loops.push(Loop::PerItem);
                self.visit_block(&l.body);
                self.loops.pop();
            }
            syn::Expr::Loop(l) => {
                self.loops.push(Loop::PerItem);
                self.visit_block(&l.body);
                self.loops.pop();
            }
            syn::Expr::MethodCall(m) if ADAPTERS.contains(&m.method.to_string().as_str()) => {
                self.visit_expr(&m.receiver);
                let kind = iterator_kind(self.small, &m.receiver);
                for arg in &m.args {
                    match (arg, kind) {
                        (syn::Expr::Closure(c), Some(kind)) => {
                            (self.f)(arg, &self.loops, self.in_worker);
                            self.loops.push(kind);
                            self.visit_expr(&c.body);
                            self.loops.pop();
                        }
                        _ => self.visit_expr(arg),
                    }
                }
            }
            // Any other closure is a new context: whether its body runs per iteration of a
            // loop around it is not something a lint can rely on.
            syn::Expr::Closure(c) => {
                let saved = std::mem::take(&mut self.loops);
                self.visit_expr(&c.body);
                self.loops = saved;
            }
            _ => syn::visit::visit_expr(self, expr),
        }
    }

    fn visit_item_fn(&mut self, func: &'a syn::ItemFn) {
        let saved = (std::mem::take(&mut self.loops), self.in_worker);
        self.in_worker = func.attrs.iter().any(|a| is_worker_attr(self.names, a));
        syn::visit::visit_item_fn(self, func);
        (self.loops, self.in_worker) = saved;
    }

    fn visit_impl_item_fn(&mut self, func: &'a syn::ImplItemFn) {
        let saved = (std::mem::take(&mut self.loops), self.in_worker);
        self.in_worker = false;
        syn::visit::visit_impl_item_fn(self, func);
        (self.loops, self.in_worker) = saved;
    }
}

/// The kind of loop a `for` over `expr` is, if `expr` is a range (`0..n`, `(1..=k).rev()`): a
/// literal bound up to [`SMALL_RANGE`], `mp::cpu_count()` or a constant is a fixed number of
/// rounds; any other bound (`0..n`, `0..items.len()`) counts items.
pub(crate) fn range_kind(small: &HashSet<String>, expr: &syn::Expr) -> Option<Loop> {
    let fixed = |e: &syn::Expr| is_fixed_bound(small, e);
    match expr {
        syn::Expr::Range(r) => {
            let is_small =
                r.start.as_deref().is_none_or(fixed) && r.end.as_deref().is_some_and(fixed);
            Some(if is_small { Loop::Fixed } else { Loop::PerItem })
        }
        // `for fd in [a, b]`: a few rounds written out.
        syn::Expr::Array(a) if a.elems.len() as u128 <= SMALL_RANGE => Some(Loop::Fixed),
        syn::Expr::Reference(r) => match &*r.expr {
            syn::Expr::Array(a) if a.elems.len() as u128 <= SMALL_RANGE => Some(Loop::Fixed),
            _ => None,
        },
        syn::Expr::Paren(p) => range_kind(small, &p.expr),
        syn::Expr::MethodCall(m)
            if matches!(
                m.method.to_string().as_str(),
                "rev" | "step_by" | "into_iter" | "enumerate" | "skip" | "take"
            ) =>
        {
            range_kind(small, &m.receiver)
        }
        _ => None,
    }
}

/// A small literal, a call of `cpu_count()` (one round per CPU), a `CONSTANT`, or a variable
/// bound to a small literal (`let workers = 4;`).
fn is_fixed_bound(small: &HashSet<String>, expr: &syn::Expr) -> bool {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse::<u128>().is_ok_and(|n| n <= SMALL_RANGE),
        syn::Expr::Paren(p) => is_fixed_bound(small, &p.expr),
        syn::Expr::Call(c) => matches!(&*c.func, syn::Expr::Path(p)
            if p.path.segments.last().is_some_and(|s| s.ident == "cpu_count")),
        syn::Expr::Path(p) => p.path.segments.last().is_some_and(|s| {
            let name = s.ident.to_string();
            small.contains(&name)
                || (name.len() > 1
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
        }),
        syn::Expr::Binary(b) => is_fixed_bound(small, &b.left) && is_fixed_bound(small, &b.right),
        _ => false,
    }
}

/// The loop kind of an iterator adapter's receiver: a range as for `for`, any chain through an
/// iterator-making method (`iter`, `into_iter`, `drain`, ...) per item; `None` if the receiver
/// is not known to be an iterator (`Option::map`, `Result::map`).
fn iterator_kind(small: &HashSet<String>, receiver: &syn::Expr) -> Option<Loop> {
    let mut e = receiver;
    let mut through_iterator = false;
    loop {
        if let Some(kind) = range_kind(small, e) {
            return Some(kind);
        }
        match e {
            syn::Expr::MethodCall(m) => {
                let name = m.method.to_string();
                through_iterator |=
                    ITERATORS.contains(&name.as_str()) || ADAPTERS.contains(&name.as_str());
                e = &m.receiver;
            }
            syn::Expr::Paren(p) => e = &p.expr,
            syn::Expr::Reference(r) => e = &r.expr,
            _ => return through_iterator.then_some(Loop::PerItem),
        }
    }
}

/// A function's attributes, signature and body.
pub(crate) struct FnBody<'a> {
    pub(crate) attrs: &'a [syn::Attribute],
    pub(crate) sig: &'a syn::Signature,
    pub(crate) block: &'a syn::Block,
}

/// Every function of `file`, nested ones, methods and trait methods with a default body
/// included, for lints that look at one body at a time (a body's visitor should skip nested
/// items: they come on their own).
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
        fn visit_trait_item_fn(&mut self, f: &'a syn::TraitItemFn) {
            if let Some(block) = &f.default {
                self.0.push(FnBody {
                    attrs: &f.attrs,
                    sig: &f.sig,
                    block,
                });
            }
            syn::visit::visit_trait_item_fn(self, f);
        }
    }
    let mut c = Collect(Vec::new());
    c.visit_file(&file.syntax);
    c.0
}

/// The path of a plain call's function, after the file's imports (`use std::process::exit;
/// exit(1)` → `std::process::exit`).
pub(crate) fn call_path(names: &Names, call: &syn::ExprCall) -> Option<Vec<String>> {
    let syn::Expr::Path(p) = &*call.func else {
        return None;
    };
    Some(names.expand(&p.path))
}

/// The names bound to a small integer literal anywhere in `file` (`let workers = 4;`), for
/// ranges such as `0..workers`.
pub(crate) fn small_constants(file: &syn::File) -> HashSet<String> {
    struct Lets(HashSet<String>);
    impl<'a> Visit<'a> for Lets {
        fn visit_local(&mut self, l: &'a syn::Local) {
            if let (syn::Pat::Ident(name), Some(init)) = (&l.pat, &l.init)
                && let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Int(i),
                    ..
                }) = &*init.expr
                && i.base10_parse::<u128>().is_ok_and(|n| n <= SMALL_RANGE)
            {
                self.0.insert(name.ident.to_string());
            }
            syn::visit::visit_local(self, l);
        }
    }
    let mut lets = Lets(HashSet::new());
    lets.visit_file(file);
    lets.0
}

/// The registered workers of `file` that write to a channel (`put`, `send`, ...) given as a
/// parameter, and those that do not: a process that only reads cannot block on a full channel.
pub(crate) fn writing_workers(
    names: &Names,
    file: &syn::File,
) -> std::collections::HashMap<String, bool> {
    struct Writes<'p>(&'p HashSet<String>, bool);
    impl<'a> Visit<'a> for Writes<'_> {
        fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
            let name = m.method.to_string();
            if name.starts_with("put") || name.starts_with("send") || name == "task_done" {
                let mut root = &*m.receiver;
                while let syn::Expr::MethodCall(inner) = root {
                    root = &inner.receiver;
                }
                if let syn::Expr::Path(p) = root
                    && p.path
                        .get_ident()
                        .is_some_and(|i| self.0.contains(&i.to_string()))
                {
                    self.1 = true;
                }
            }
            syn::visit::visit_expr_method_call(self, m);
        }
    }
    struct Workers<'n>(&'n Names, std::collections::HashMap<String, bool>);
    impl<'a> Visit<'a> for Workers<'_> {
        fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
            if f.attrs.iter().any(|a| is_worker_attr(self.0, a)) {
                let mut params = HashSet::new();
                for input in &f.sig.inputs {
                    if let syn::FnArg::Typed(t) = input {
                        let mut idents = PatIdents(&mut params);
                        idents.visit_pat(&t.pat);
                    }
                }
                let mut w = Writes(&params, false);
                w.visit_block(&f.block);
                self.1.insert(f.sig.ident.to_string(), w.1);
            }
            syn::visit::visit_item_fn(self, f);
        }
    }
    struct PatIdents<'o>(&'o mut HashSet<String>);
    impl<'a> Visit<'a> for PatIdents<'_> {
        fn visit_pat_ident(&mut self, p: &'a syn::PatIdent) {
            self.0.insert(p.ident.to_string());
        }
    }
    let mut w = Workers(names, std::collections::HashMap::new());
    w.visit_file(file);
    w.1
}
