//! `pool-in-loop`: a `Pool` created inside a loop.

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "pool-in-loop",
    default: Level::Warn,
    summary: "a `Pool` is created inside a loop",
    doc: r#"
### What it does
Finds `mp::Pool::new` or `mp::Pool::builder` inside a loop: `for`, `while`, `while let`,
`loop`, or the closure of an iterator adapter (`for_each`, `map`, ...).

### Why is this bad
Every pool starts its processes anew, so a pool per iteration pays the start-up of all its
workers every time, for work one pool created before the loop would do.

### Example
```rust,ignore
for batch in batches {
    let pool = mp::Pool::new(mp::cpu_count())?;
    results.extend(pool.map(work, batch)?);
}
```
Use instead:
```rust,ignore
let pool = mp::Pool::new(mp::cpu_count())?;
for batch in batches {
    results.extend(pool.map(work, batch)?);
}
```

### Known limits
A pool made in a function that a loop calls is not seen. A `for` over a range with a literal
bound of at most 64 (or `mp::cpu_count()`, or a `CONSTANT`) is a fixed number of rounds and is
not reported.
"#,
    check,
};

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    syntax::with_loops(file, |expr, loops, _| {
        if let syn::Expr::Call(call) = expr
            && syntax::makes_a_pool(&file.names, call)
            && loops.contains(&syntax::Loop::PerItem)
        {
            found.push(
                Diagnostic::new(
                    LINT.name,
                    file,
                    &call.func,
                    "a pool is created on every iteration of a loop",
                    "new worker processes every time",
                )
                .help("create the pool once, before the loop, and reuse it"),
            );
        }
    });
    found
}
