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
Finds `mp::spawn` or `mp::Process::new` (through imports and renames: `use mp::spawn as go`)
started once per item: inside a `for` over a collection or over a range whose bound is not a
small literal (`0..n`, `0..items.len()`), a `while`, `while let` or `loop`, or the closure of an
iterator adapter (`items.iter().for_each(|x| ..)`, `.map(|x| mp::spawn(..)).collect()`).

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
A `for` over a range with a literal bound of at most 64 (`for _ in 0..4`), with
`mp::cpu_count()` as its bound, or with a `CONSTANT` is taken to start a fixed number of workers
and is not reported. A closure is taken to run per item only when it is an iterator adapter's
argument on something known to be an iterator (a range, or a chain through `iter`,
`into_iter`, `drain`, ...): `option.map(|x| mp::spawn(..))` is not a loop.
"#,
    check,
};

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    syntax::with_loops(file, |expr, loops, _| {
        let syn::Expr::Call(call) = expr else { return };
        let per_item = loops.contains(&syntax::Loop::PerItem);
        if syntax::starts_a_process(&file.names, call) && per_item {
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
