//! `unbounded-recv`: a blocking receive or join with no timeout where waiting forever is likely.

use std::collections::HashSet;

use syn::visit::Visit;

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "unbounded-recv",
    default: Level::Warn,
    summary: "a blocking `get` on a worker's queue, or a `join` after `terminate`/`kill`, without a timeout",
    doc: r#"
### What it does
Finds `get()` without a timeout on a queue that a `#[mp::worker]` takes as a parameter, and
`join()` without a timeout on a process that the same function terminated or killed before.

### Why is this bad
A worker that waits for a message nobody will send never returns, and its pool slot (or
its parent's `join`) waits with it. A process that is being terminated may ignore the signal;
an unbounded `join` then hangs the caller. The `_timeout` variants turn both into an error the
program can handle.

### Example
```rust,ignore
#[mp::worker]
fn consume(jobs: mp::Queue<Job>) -> mp::Result<()> {
    loop {
        let job = jobs.get()?; // waits forever once the producer is gone
        run(job);
    }
}
```
Use instead:
```rust,ignore
#[mp::worker]
fn consume(jobs: mp::Queue<Job>) -> mp::Result<()> {
    while let Ok(job) = jobs.get_timeout(Duration::from_secs(30)) {
        run(job);
    }
    Ok(())
}
```

### Known limits
A worker's queues are recognised by the parameter's type name (`Queue`, `SimpleQueue`,
`JoinableQueue`, `QueueProxy`). Pipes are not reported: `recv` on a `Connection` ends with
`Disconnected` once the other end is dropped, so the usual `while let Ok(m) = conn.recv()`
loop does not hang.
"#,
    check,
};

/// Queues: a `get` waits for a writer, and nothing tells it the writers are gone. (A pipe's
/// `recv` ends with `Disconnected` when the other end is dropped, so it is not listed.)
const CHANNEL_TYPES: &[&str] = &["Queue", "SimpleQueue", "JoinableQueue", "QueueProxy"];

fn channel_params(sig: &syn::Signature) -> HashSet<String> {
    sig.inputs
        .iter()
        .filter_map(|arg| {
            let syn::FnArg::Typed(t) = arg else {
                return None;
            };
            let syn::Type::Path(ty) = &*t.ty else {
                return None;
            };
            let last = ty.path.segments.last()?.ident.to_string();
            let syn::Pat::Ident(name) = &*t.pat else {
                return None;
            };
            CHANNEL_TYPES
                .contains(&last.as_str())
                .then(|| name.ident.to_string())
        })
        .collect()
}

struct Calls<'f> {
    file: &'f SourceFile,
    channels: HashSet<String>,
    /// Receivers of `terminate()`/`kill()`, with where the call is.
    stopped: Vec<(String, (usize, usize))>,
    /// `join()` calls without arguments, with their receiver.
    joins: Vec<(String, syn::ExprMethodCall)>,
    found: Vec<Diagnostic>,
}

/// `p`, `self.pool`, `children[i]`: a receiver written the same way twice names the same
/// process (as far as syntax can tell).
fn receiver_key(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Path(p) => Some(syntax::segments(&p.path).join("::")),
        syn::Expr::Field(f) => {
            let member = match &f.member {
                syn::Member::Named(n) => n.to_string(),
                syn::Member::Unnamed(i) => i.index.to_string(),
            };
            Some(format!("{}.{member}", receiver_key(&f.base)?))
        }
        syn::Expr::Paren(p) => receiver_key(&p.expr),
        _ => None,
    }
}

fn position(m: &syn::ExprMethodCall) -> (usize, usize) {
    let start = m.method.span().start();
    (start.line, start.column)
}

impl<'a> Visit<'a> for Calls<'_> {
    fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
        syn::visit::visit_expr_method_call(self, m);
        if let Some(key) = receiver_key(&m.receiver) {
            if m.method == "terminate" || m.method == "kill" {
                self.stopped.push((key, position(m)));
            } else if m.method == "join" && m.args.is_empty() {
                self.joins.push((key, m.clone()));
            }
        }
        let receiver = match &*m.receiver {
            syn::Expr::Path(p) if p.path.segments.len() == 1 => {
                p.path.segments[0].ident.to_string()
            }
            _ => return,
        };
        if m.method == "get" && m.args.is_empty() && self.channels.contains(&receiver) {
            self.found.push(
                Diagnostic::new(
                    LINT.name,
                    self.file,
                    &m.method,
                    format!(
                        "a worker waits on `{receiver}.{}()` with no timeout",
                        m.method
                    ),
                    "may wait forever",
                )
                .help(format!(
                    "use `{receiver}.{}_timeout(..)` and handle `Error::Timeout`",
                    m.method
                )),
            );
        }
    }

    fn visit_item_fn(&mut self, _: &'a syn::ItemFn) {}
}

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for f in syntax::function_bodies(file) {
        let is_worker = f.attrs.iter().any(syntax::is_worker_attr);
        let mut calls = Calls {
            file,
            channels: if is_worker {
                channel_params(f.sig)
            } else {
                HashSet::new()
            },
            stopped: Vec::new(),
            joins: Vec::new(),
            found: Vec::new(),
        };
        calls.visit_block(f.block);
        for (key, join) in &calls.joins {
            let after_stop = calls
                .stopped
                .iter()
                .any(|(k, at)| k == key && *at < position(join));
            if after_stop {
                calls.found.push(
                    Diagnostic::new(
                        LINT.name,
                        file,
                        &join.method,
                        format!("`{key}.join()` without a timeout after `{key}` was told to stop"),
                        "hangs if the process ignores the signal",
                    )
                    .help("use `join_timeout(..)`, then `kill()` what is still running"),
                );
            }
        }
        found.append(&mut calls.found);
    }
    found
}
