//! `hardcoded-pool-size`: a literal process count instead of `mp::cpu_count()`.

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "hardcoded-pool-size",
    default: Level::Warn,
    summary: "a pool's size is a number literal instead of `mp::cpu_count()`",
    doc: r#"
### What it does
Finds `mp::Pool::new(4)` and `mp::Pool::builder().processes(4)` with an integer literal
(`Pool` resolved through the file's imports: another crate's `Pool`, a database pool say, is
not mp's).

### Why is this bad
The right number of processes depends on the machine the program runs on: a literal
oversubscribes a small container and leaves a large machine idle (the tutorial's section
3.2). `mp::cpu_count()` honours the CPU affinity mask and a container's CPU quota.

### Example
```rust,ignore
let pool = mp::Pool::new(8)?;
```
Use instead:
```rust,ignore
let pool = mp::Pool::new(mp::cpu_count())?;
```

### Known limits
A literal bound to a variable first is not seen. A deliberate size (a demo on two
processes) can be kept with `#[mp::allow(hardcoded-pool-size)]`. In tests (`tests/`,
`benches/`, `#[cfg(test)]` code) the lint is `allow` by default: a test pins its pool size
because its assertions depend on it (`[workspace.metadata.mp.test-lints]` changes that).
"#,
    check,
};

fn literal(expr: &syn::Expr) -> Option<&syn::LitInt> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => Some(i),
        _ => None,
    }
}

/// Whether a method chain starts at `mp::Pool::builder()`.
fn builds_a_pool(names: &crate::names::Names, mut expr: &syn::Expr) -> bool {
    while let syn::Expr::MethodCall(m) = expr {
        expr = &m.receiver;
    }
    matches!(expr, syn::Expr::Call(c) if syntax::makes_a_pool(names, c))
}

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    syntax::with_loops(file, |expr, _, _| {
        let lit = match expr {
            syn::Expr::Call(call) if syntax::makes_a_pool(&file.names, call) => {
                call.args.first().and_then(literal)
            }
            syn::Expr::MethodCall(m)
                if m.method == "processes"
                    && m.args.len() == 1
                    && builds_a_pool(&file.names, &m.receiver) =>
            {
                m.args.first().and_then(literal)
            }
            _ => None,
        };
        if let Some(lit) = lit {
            found.push(
                Diagnostic::new(
                    LINT.name,
                    file,
                    lit,
                    format!("the pool's size is hard-coded to {}", lit.base10_digits()),
                    "a fixed number of processes",
                )
                .help("use `mp::cpu_count()`, which follows CPU affinity and container quotas"),
            );
        }
    });
    found
}
