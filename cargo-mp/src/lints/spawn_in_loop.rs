//! `spawn-in-loop`: a process started for every item of a collection, where a `Pool` fits.

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "spawn-in-loop",
    default: Level::Warn,
    summary: "a process is started for every item of a collection, where a `Pool` fits",
    doc: r#"
### What it does
Finds `mp::spawn` or `Process::new` inside a `for` loop over a collection (any iterable that
is not a range of numbers).

### Why is this bad
One process per item starts as many processes as there are items: a thousand items, a
thousand processes competing for a few cores, each paying the start-up cost (the tutorial's
section 4.2). A `Pool` of `mp::cpu_count()` processes runs the same work with a fixed number
of processes.

### Example
```rust,ignore
for path in paths {
    children.push(mp::spawn(checksum, path)?);
}
```
Use instead:
```rust,ignore
let pool = mp::Pool::new(mp::cpu_count())?;
let sums = pool.map(checksum, paths)?;
```

### Known limits
A loop over a range (`for i in 0..workers`) is taken to start a fixed number of workers and is
not reported; neither are `while` and `loop` loops, or iterator adapters such as `for_each`.
"#,
    check,
};

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    syntax::with_loops(file, |expr, loops, _| {
        let syn::Expr::Call(call) = expr else { return };
        let per_item = loops.contains(&syntax::Loop::OverItems);
        if syntax::starts_a_process(call) && per_item {
            found.push(
                Diagnostic::new(
                    LINT.name,
                    file,
                    &call.func,
                    "a process is started for every item of a loop",
                    "one process per item",
                )
                .help("use a `Pool`: `mp::Pool::new(mp::cpu_count())?.map(worker, items)`"),
            );
        }
    });
    found
}
