//! `unbounded-recv`: a blocking receive or join with no timeout where waiting forever is likely.

use std::collections::HashSet;

use super::{Context, Level, Lint};
use crate::diagnostic::Diagnostic;
use crate::flow::{self, Event, Holds, Id};
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "unbounded-recv",
    default: Level::Warn,
    summary: "a blocking `get` on a worker's queue, or a `join` after `terminate`, without a timeout",
    doc: r#"
### What it does
Finds `get()` without a timeout on a queue that a `#[mp::worker]` takes as a parameter (or a
binding of it: a clone, a reference), and `join()` without a timeout on a process that the same
function told to stop with `terminate()` (and did not `kill()` since). Blocks nest as in Rust: a
later `let` of the same name is a new value, and calls inside `if`, `match`, loops, closures and
macro arguments (`println!("{:?}", p.join())`) count.

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
A worker's queues are recognised by the parameter's type (`Queue`, `SimpleQueue`,
`JoinableQueue`, `QueueProxy`, resolved to mp's through the file's imports). `kill()` (SIGKILL,
which cannot be ignored) makes a later `join()` bounded, so a join after `kill()` is not
reported. Pipes are not reported: `recv` on a `Connection` ends with
`Disconnected` once the other end is dropped, so the usual `while let Ok(m) = conn.recv()`
loop does not hang.
"#,
    check,
};

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for f in syntax::function_bodies(file) {
        let is_worker = f
            .attrs
            .iter()
            .any(|a| syntax::is_worker_attr(&file.names, a));
        let flow = flow::of(&file.names, f.sig, f.block);
        // The queues a worker takes: nothing tells a `get` on them that the writers are gone.
        let channels: HashSet<Id> = if is_worker {
            flow.params
                .iter()
                .copied()
                .filter(|p| flow.holds(*p) == Holds::Queue)
                .collect()
        } else {
            HashSet::new()
        };
        // Processes told to stop with `terminate()` (SIGTERM, which a child may handle or
        // ignore) and not killed since.
        let mut terminated: HashSet<Id> = HashSet::new();
        for event in &flow.events {
            match event {
                Event::Read {
                    target,
                    bounded: false,
                    call,
                } if call.method == "get" && channels.contains(&flow.root(*target)) => {
                    let name = flow.name(*target);
                    found.push(
                        Diagnostic::new(
                            LINT.name,
                            file,
                            &call.method,
                            format!("a worker waits on `{name}.get()` with no timeout"),
                            "may wait forever",
                        )
                        .help(format!(
                            "use `{name}.get_timeout(..)` and handle `Error::Timeout`"
                        )),
                    );
                }
                Event::Stop { target, kill } => {
                    if *kill {
                        terminated.remove(&flow.root(*target));
                    } else {
                        terminated.insert(flow.root(*target));
                    }
                }
                Event::Join { target, call } if terminated.contains(&flow.root(*target)) => {
                    let name = flow.name(*target);
                    found.push(
                        Diagnostic::new(
                            LINT.name,
                            file,
                            &call.method,
                            format!(
                                "`{name}.join()` without a timeout after `{name}` was told to stop"
                            ),
                            "hangs if the process ignores the signal",
                        )
                        .help("use `join_timeout(..)`, or `kill()` (which cannot be ignored) before `join()`"),
                    );
                }
                _ => {}
            }
        }
    }
    found
}
