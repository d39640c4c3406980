//! `fork-with-threads`: `fork` called, or `mp`'s `fork` start method chosen, after the same
//! function started threads.

use syn::visit::Visit;

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "fork-with-threads",
    default: Level::Deny,
    summary: "a process is forked after the same function started threads",
    doc: r#"
### What it does
Finds a call of `fork` (`libc::fork`, `nix::unistd::fork`), or a choice of `mp`'s `fork` start
method (`mp::StartMethod::Fork`, given to `Process::with_start_method`,
`PoolBuilder::start_method` or `mp::set_start_method`), in a function that has already called
`std::thread::spawn`, `thread::scope` or a thread builder's `spawn`.

### Why is this bad
A forked child has only the thread that called `fork`; locks that other threads held (the
allocator's, stdout's, a logger's) stay locked forever in the child, which then hangs at its
first allocation or print. Python's `fork` start method has this problem, which is why `mp`
starts children by re-executing the binary (`spawn`) by default, and refuses
`StartMethod::Fork` at run time (`Error::ForkWithThreads`) while other threads run.

### Example
```rust,ignore
let handle = std::thread::spawn(background);
let pid = unsafe { libc::fork() };
```
```rust,ignore
let handle = std::thread::spawn(background);
let p = mp::Process::new(work, args).with_start_method(mp::StartMethod::Fork);
```
Use instead:
```rust,ignore
let handle = std::thread::spawn(background);
let child = mp::spawn(work, args)?; // a fresh process, not a copy of this one
// or, as fast and safe with threads: a child forked by a single-threaded server
let p = mp::Process::new(work, args).with_start_method(mp::StartMethod::ForkServer);
```

### Known limits
Only threads started earlier in the same function are seen, not threads started elsewhere.
"#,
    check,
};

fn path_of(names: &crate::names::Names, expr: &syn::Expr) -> Option<Vec<String>> {
    match expr {
        syn::Expr::Path(p) => Some(names.expand(&p.path)),
        _ => None,
    }
}

struct Body<'f> {
    file: &'f SourceFile,
    threads_started: bool,
    found: Vec<Diagnostic>,
}

impl<'a> Visit<'a> for Body<'_> {
    fn visit_expr_call(&mut self, call: &'a syn::ExprCall) {
        syn::visit::visit_expr_call(self, call);
        let Some(path) = path_of(&self.file.names, &call.func) else {
            return;
        };
        let tail: Vec<&str> = path.iter().map(String::as_str).collect();
        match tail[..] {
            [.., "thread", "spawn"] | [.., "thread", "scope"] => self.threads_started = true,
            ["libc" | "nix", .., "fork"] if self.threads_started => self.found.push(
                Diagnostic::new(
                    LINT.name,
                    self.file,
                    &call.func,
                    "a process is forked after this function started threads",
                    "the child gets only this thread; locks the others held stay locked",
                )
                .help("start the child with `mp::spawn` (a fresh process), or fork before starting threads"),
            ),
            _ => {}
        }
    }

    fn visit_expr_path(&mut self, p: &'a syn::ExprPath) {
        syn::visit::visit_expr_path(self, p);
        let path = self.file.names.expand(&p.path);
        let tail: Vec<&str> = path.iter().map(String::as_str).collect();
        if self.threads_started && matches!(tail[..], [.., "StartMethod", "Fork"]) {
            self.found.push(
                Diagnostic::new(
                    LINT.name,
                    self.file,
                    p,
                    "the `fork` start method is chosen after this function started threads",
                    "mp refuses to fork while other threads run (`Error::ForkWithThreads`)",
                )
                .help("use `StartMethod::ForkServer` (as fast, safe with threads), or fork before starting threads"),
            );
        }
    }

    fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
        syn::visit::visit_expr_method_call(self, m);
        // `std::thread::Builder::new().name(..).spawn(..)`
        if m.method == "spawn"
            && chain_root(&self.file.names, &m.receiver).ends_with("Builder::new")
        {
            self.threads_started = true;
        }
    }

    fn visit_item(&mut self, _: &'a syn::Item) {}
}

/// The path of the call a method chain starts from (`thread::Builder::new` in
/// `thread::Builder::new().name(..)`), or nothing.
fn chain_root(names: &crate::names::Names, expr: &syn::Expr) -> String {
    let mut root = expr;
    while let syn::Expr::MethodCall(m) = root {
        root = &m.receiver;
    }
    match root {
        syn::Expr::Call(c) => path_of(names, &c.func)
            .map(|p| p.join("::"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for f in syntax::function_bodies(file) {
        let mut body = Body {
            file,
            threads_started: false,
            found: Vec::new(),
        };
        body.visit_block(f.block);
        found.append(&mut body.found);
    }
    found
}
