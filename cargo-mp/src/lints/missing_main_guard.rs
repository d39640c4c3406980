//! `missing-main-guard`: a program starts processes but its `main` is not wrapped by `mp::main!`.

use syn::visit::Visit;

use super::{Context, Level, Lint};
use crate::diagnostic::{Diagnostic, Pending};
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "missing-main-guard",
    default: Level::Deny,
    summary: "a binary or example starts processes, but its `main` is not wrapped by `mp::main!`",
    doc: r#"
### What it does
Finds a program (a binary or an example) that uses `mp`'s process API (`mp::spawn`,
`Process::new`, `Pool`, `Executor`, `Manager`, resolved through the file's imports: another
crate's `Pool::new` or `Process::new(pid)` is not mp's) and defines a plain `fn main` that is not
wrapped by `mp::main!`.

### Why is this bad
`mp::main!` is the `if __name__ == "__main__":` guard. `mp` routes children before `main`
runs, so no fork bomb can happen, but an unguarded program fails at its first spawn with
`Error::MissingGuard`: at run time, on the first code path that starts a process. This lint
says so in CI.

### Example
```rust,ignore
fn main() {
    mp::spawn(work, ()).unwrap().join().unwrap();
}
```
Use instead:
```rust,ignore
mp::main! {
    fn main() {
        mp::spawn(work, ()).unwrap().join().unwrap();
    }
}
```

### Known limits
A program that reaches the process API only through another crate's functions is not seen.
"#,
    check,
};

fn check(cx: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    if !cx.is_program || !cx.is_root {
        return Vec::new();
    }
    let Some(main) = &file.unguarded_main else {
        return Vec::new();
    };
    vec![
        Diagnostic::new(
            LINT.name,
            file,
            main,
            "`main` starts processes but is not guarded by `mp::main!`",
            "not wrapped in `mp::main!`",
        )
        .pending(Pending::StartsProcesses)
        .help(
            "wrap it: `mp::main! { fn main() { .. } }` (Python's `if __name__ == \
             \"__main__\":`); without it the first spawn fails with `Error::MissingGuard`",
        ),
    ]
}

/// Whether `file` calls mp's process API (resolved through its imports).
pub(crate) fn uses_processes(file: &SourceFile) -> bool {
    struct Finder<'n>(bool, &'n crate::names::Names);
    impl<'a> Visit<'a> for Finder<'_> {
        fn visit_expr_call(&mut self, call: &'a syn::ExprCall) {
            self.0 |= syntax::uses_spawning_api(self.1, call);
            syn::visit::visit_expr_call(self, call);
        }
    }
    let mut finder = Finder(false, &file.names);
    finder.visit_file(&file.syntax);
    finder.0
}
