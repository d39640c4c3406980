//! `exit-in-worker`: `std::process::exit` or `abort` inside a `#[mp::worker]` fn.

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "exit-in-worker",
    default: Level::Warn,
    summary: "a worker calls `std::process::exit` or `abort` instead of returning",
    doc: r#"
### What it does
Finds calls of `std::process::exit` and `std::process::abort` (also as `process::exit`, or
`exit` imported with `use std::process::exit`) inside a function annotated with `#[mp::worker]`.

### Why is this bad
A worker that exits takes its process with it: a pool worker that also held the next task
loses it (the pool reports `Error::WorkerDied` and starts a new process), and the parent
learns an exit code instead of a reason. A returned `mp::Result` or a panic travels to the
parent with its message.

### Example
```rust,ignore
#[mp::worker]
fn load(path: String) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|_| std::process::exit(1))
}
```
Use instead:
```rust,ignore
#[mp::worker]
fn load(path: String) -> mp::Result<Vec<u8>> {
    std::fs::read(&path).map_err(|e| mp::Error::InvalidArgument(format!("{path}: {e}")))
}
```

### Known limits
Only direct calls are seen, not calls made by functions the worker calls.
"#,
    check,
};

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    syntax::in_workers(file, |expr| {
        let syn::Expr::Call(call) = expr else { return };
        let Some(path) = syntax::call_path(&file.names, call) else {
            return;
        };
        let what = match path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [.., "process", "exit"] => "exit",
            [.., "process", "abort"] => "abort",
            _ => return,
        };
        found.push(
            Diagnostic::new(
                LINT.name,
                file,
                &call.func,
                format!("a worker calls `process::{what}`"),
                "ends the worker's process",
            )
            .help("return an error (a worker may return `mp::Result<T>`) or panic; both reach the parent with their message"),
        );
    });
    found
}
