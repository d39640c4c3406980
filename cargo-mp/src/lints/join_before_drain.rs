//! `join-before-drain`: a process is joined before the queue or pipe it writes to is read.

use std::collections::{HashMap, HashSet};

use syn::visit::Visit;

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "join-before-drain",
    default: Level::Warn,
    summary: "a process is joined before the queue or pipe it writes to is read",
    doc: r#"
### What it does
Within one function: a process is started with a queue or a pipe end among its arguments,
joined, and only after the join is that queue (or the pipe's other end) read.

### Why is this bad
A writer whose channel is full waits for a reader, and a `join` waits for the writer: if
the reader only reads after the join, both wait forever (the tutorial's section 3.1). Python
hangs as soon as the data outgrows its pipe buffer. An `mp::Queue` holds 64 MiB before its
writers wait, and a pipe only what a socket buffer holds (a few hundred small messages), so the
same code works in tests and hangs on real data.

### Example
```rust,ignore
let q = mp::Queue::new()?;
let mut p = mp::spawn(produce, q.clone())?;
p.join()??;
let data = q.get()?;
```
Use instead:
```rust,ignore
let q = mp::Queue::new()?;
let mut p = mp::spawn(produce, q.clone())?;
let data = q.get()?;
p.join()??;
```

### Known limits
Only channels made and processes started in the same function body are followed; a read
before the join (of any amount) counts as draining.
"#,
    check,
};

#[derive(Default)]
struct Events {
    /// Queues made in this body.
    queues: HashSet<String>,
    /// Pipe ends made in this body, with their partners.
    partners: HashMap<String, String>,
    /// `(statement, process, identifiers among its arguments)`.
    spawns: Vec<(usize, String, HashSet<String>)>,
    /// `(statement, process, the join call)`.
    joins: Vec<(usize, String, syn::ExprMethodCall)>,
    /// `(statement, channel)`.
    reads: Vec<(usize, String)>,
}

const READS: &[&str] = &[
    "get",
    "get_timeout",
    "try_get",
    "get_many",
    "recv",
    "recv_timeout",
    "try_recv",
];

fn ident_of(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Path(p) if p.path.segments.len() == 1 => {
            Some(p.path.segments[0].ident.to_string())
        }
        syn::Expr::MethodCall(m) if m.method == "clone" => ident_of(&m.receiver),
        syn::Expr::Reference(r) => ident_of(&r.expr),
        _ => None,
    }
}

fn pat_ident(pat: &syn::Pat) -> Option<String> {
    match pat {
        syn::Pat::Ident(i) => Some(i.ident.to_string()),
        syn::Pat::Type(t) => pat_ident(&t.pat),
        _ => None,
    }
}

/// Whether `expr` calls a function whose path ends with one of `names` (`Queue::new`).
fn calls_path(expr: &syn::Expr, names: &[&str]) -> bool {
    let mut found = false;
    syntax::visit_calls(expr, |call| {
        if let syn::Expr::Path(p) = &*call.func {
            let segs: Vec<String> = syntax::segments(&p.path);
            let path = segs.join("::");
            found |= names
                .iter()
                .any(|n| path == *n || path.ends_with(&format!("::{n}")));
        }
    });
    found
}

struct Collector<'e> {
    events: &'e mut Events,
    stmt: usize,
}

impl<'a> Visit<'a> for Collector<'_> {
    fn visit_local(&mut self, local: &'a syn::Local) {
        if let Some(init) = &local.init {
            let expr = &init.expr;
            if calls_path(
                expr,
                &["Queue::new", "Queue::with_maxsize", "Queue::with_capacity"],
            ) {
                if let Some(name) = pat_ident(&local.pat) {
                    self.events.queues.insert(name);
                }
            } else if calls_path(expr, &["mp::pipe", "mp::pipe_one_way"])
                && let syn::Pat::Tuple(t) = &local.pat
                && t.elems.len() == 2
                && let (Some(a), Some(b)) = (pat_ident(&t.elems[0]), pat_ident(&t.elems[1]))
            {
                self.events.partners.insert(a.clone(), b.clone());
                self.events.partners.insert(b, a);
            }
            if let Some(name) = pat_ident(&local.pat) {
                let mut spawn = None;
                syntax::visit_calls(expr, |call| {
                    if syntax::starts_a_process(call) {
                        let mut args = HashSet::new();
                        for arg in call.args.iter().skip(1) {
                            syntax::idents_in(arg, &mut args);
                        }
                        spawn = Some(args);
                    }
                });
                if let Some(args) = spawn {
                    self.events.spawns.push((self.stmt, name, args));
                }
            }
        }
        syn::visit::visit_local(self, local);
    }

    fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
        if let Some(recv) = ident_of(&m.receiver) {
            if m.method == "join" && m.args.is_empty() {
                self.events.joins.push((self.stmt, recv, m.clone()));
            } else if READS.contains(&m.method.to_string().as_str()) {
                self.events.reads.push((self.stmt, recv));
            }
        }
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        for arg in syntax::macro_args(mac) {
            let mut inner = Collector {
                events: &mut *self.events,
                stmt: self.stmt,
            };
            inner.visit_expr(&arg);
        }
    }

    // Nested functions are checked on their own.
    fn visit_item_fn(&mut self, _: &'a syn::ItemFn) {}
}

fn check_block(file: &SourceFile, block: &syn::Block, found: &mut Vec<Diagnostic>) {
    let mut events = Events::default();
    for (i, stmt) in block.stmts.iter().enumerate() {
        let mut c = Collector {
            events: &mut events,
            stmt: i,
        };
        c.visit_stmt(stmt);
    }
    for (spawned_at, process, args) in &events.spawns {
        // What the parent reads from: a queue passed along, or the partner of a pipe end.
        let watched: HashSet<String> = args
            .iter()
            .filter_map(|a| {
                if events.queues.contains(a) {
                    Some(a.clone())
                } else {
                    events.partners.get(a).cloned()
                }
            })
            .collect();
        let Some((joined_at, _, join)) = events
            .joins
            .iter()
            .find(|(at, p, _)| at > spawned_at && p == process)
        else {
            continue;
        };
        for channel in &watched {
            let read_before = events
                .reads
                .iter()
                .any(|(at, c)| c == channel && at > spawned_at && at < joined_at);
            let read_after = events
                .reads
                .iter()
                .any(|(at, c)| c == channel && at > joined_at);
            if read_after && !read_before {
                found.push(
                    Diagnostic::new(
                        LINT.name,
                        file,
                        join,
                        format!("`{process}` is joined before the data it sends is read from `{channel}`"),
                        "waits for a writer that may be waiting for a reader",
                    )
                    .help(format!(
                        "read from `{channel}` first, then join `{process}`"
                    )),
                );
            }
        }
    }
}

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for f in syntax::function_bodies(file) {
        check_block(file, f.block, &mut found);
    }
    found
}
