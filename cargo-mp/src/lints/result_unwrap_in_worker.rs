//! `result-unwrap-in-worker` (allow by default): `unwrap` or `expect` inside a worker.

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "result-unwrap-in-worker",
    default: Level::Allow,
    summary: "a worker calls `unwrap` or `expect`, where a returned `Result` would travel as an error",
    doc: r#"
### What it does
Finds `.unwrap()` and `.expect(..)` inside a function annotated with `#[mp::worker]`.

### Why is this bad
A panic in a worker does reach the parent (as `Error::WorkerPanicked`, with its message and
location), so this is allowed by default. A worker that returns `mp::Result<T>` (or its own
error type) lets the caller tell expected failures from bugs by type.

### Example
```rust,ignore
#[mp::worker]
fn parse(line: String) -> u64 {
    line.trim().parse().unwrap()
}
```
Use instead:
```rust,ignore
#[mp::worker]
fn parse(line: String) -> Result<u64, String> {
    line.trim().parse().map_err(|e| format!("{line:?}: {e}"))
}
```

### Known limits
`unwrap` on an `Option` is reported too.
"#,
    check,
};

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    syntax::in_workers(file, |expr| {
        if let syn::Expr::MethodCall(m) = expr
            && (m.method == "unwrap" || m.method == "expect")
        {
            found.push(
                Diagnostic::new(
                    LINT.name,
                    file,
                    &m.method,
                    format!("a worker calls `{}`", m.method),
                    "panics in the child",
                )
                .help("return a `Result`: it travels to the parent as a value"),
            );
        }
    });
    found
}
