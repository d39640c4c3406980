//! `unregistered-worker`: a closure, a local fn or a fn without `#[mp::worker]` passed where a
//! worker is expected.

use super::{Context, Level, Lint};
use crate::diagnostic::{Diagnostic, Pending};
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "unregistered-worker",
    default: Level::Deny,
    summary: "a closure, a local fn or a fn without `#[mp::worker]` is passed where a worker is expected",
    doc: r#"
### What it does
Finds `mp::spawn`, `Process::new` and the pool's `map`, `starmap`, `imap`,
`imap_unordered`, `map_async`, `apply`, `apply_async`, `submit` and `initializer` called with
a closure, a function defined inside another function, or a function of this crate that is not
annotated with `#[mp::worker]`.

### Why is this bad
A child process finds its function by name in a registry that `#[mp::worker]` fills; a closure
or an unregistered function is not in it (Python's `Can't pickle local object`). The compiler
rejects these calls too; this lint names the fix earlier, and in CI summaries.

### Example
```rust,ignore
pool.map(|x: u64| x * x, 0..100)?;
```
Use instead:
```rust,ignore
#[mp::worker]
fn square(x: u64) -> u64 { x * x }

pool.map(square, 0..100)?;
```

### Known limits
A pool method is recognised by its name and its two arguments, in a file that uses mp's
process API; a function imported from another crate is assumed to be registered.
"#,
    check,
};

fn check(cx: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let pool_file = cx.uses_processes;
    syntax::with_loops(file, |expr, _, _| {
        let Some(arg) = syntax::worker_argument(&file.names, pool_file, expr) else {
            return;
        };
        let help = "define the function as an item and annotate it with `#[mp::worker]`";
        match arg {
            syn::Expr::Closure(_) => found.push(
                Diagnostic::new(
                    LINT.name,
                    file,
                    arg,
                    "a closure cannot run in a child process",
                    "passed as a worker",
                )
                .help(help),
            ),
            syn::Expr::Path(p) if p.path.segments.len() == 1 && p.qself.is_none() => {
                let name = p.path.segments[0].ident.to_string();
                // Whether `name` is registered is known once every file is read.
                found.push(
                    Diagnostic::new(LINT.name, file, arg, String::new(), "passed as a worker")
                        .help(help)
                        .pending(Pending::Unregistered(name)),
                );
            }
            _ => {}
        }
    });
    found
}

/// The message of a pending finding about `name`, or `None` if `name` is a worker (or not a
/// function of this target).
pub(crate) fn why(functions: &crate::syntax::Functions, name: &str) -> Option<String> {
    if functions.workers.contains(name) {
        None
    } else if functions.local.contains(name) {
        Some(format!(
            "`{name}` is a local fn, which a child process cannot find"
        ))
    } else if functions.plain.contains(name) {
        Some(format!("`{name}` is not registered with `#[mp::worker]`"))
    } else {
        None
    }
}
