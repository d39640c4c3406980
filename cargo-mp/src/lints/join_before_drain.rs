//! `join-before-drain`: a process is joined before the queue or pipe it writes to is read.

use std::collections::HashSet;

use super::{Context, Level, Lint};
use crate::diagnostic::{Diagnostic, Span};
use crate::flow::{self, Event, Flow, Holds, Id};
use crate::source::SourceFile;
use crate::syntax;

pub(super) const LINT: Lint = Lint {
    name: "join-before-drain",
    default: Level::Warn,
    summary: "a process is joined before the queue or pipe it writes to is read",
    doc: r#"
### What it does
Within one function: a process is started with a queue or a pipe end among its arguments,
joined, and only after the join is that queue (or the pipe's other end) read.

### Why is this bad
A writer whose channel is full waits for a reader, and a `join` waits for the writer: if
the reader only reads after the join, both wait forever (the tutorial's section 3.1). Python
hangs as soon as the data outgrows its pipe buffer. An `mp::Queue` holds 64 MiB before its
writers wait, and a pipe only what a socket buffer holds (a few hundred small messages), so the
same code works in tests and hangs on real data.

### Example
```rust,ignore
let q = mp::Queue::new()?;
let mut p = mp::spawn(produce, q.clone())?;
p.join()??;
let data = q.get()?;
```
Use instead:
```rust,ignore
let q = mp::Queue::new()?;
let mut p = mp::spawn(produce, q.clone())?;
let data = q.get()?;
p.join()??;
```

### Known limits
Only channels made and processes started in the same function body are followed (through
nested blocks, `if`, `match`, loops, closures, macro arguments, clones, and `Vec`s of processes
filled with `push` or `collect` and joined in a loop); a read before the join (of any amount)
counts as draining. Queues are `Queue`, `SimpleQueue` and `JoinableQueue` (also a manager's);
pipes are `mp::pipe()` pairs.
"#,
    check,
};

fn check(_: &Context<'_>, file: &SourceFile) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for f in syntax::function_bodies(file) {
        let flow = flow::of(&file.names, f.sig, f.block);
        check_flow(file, &flow, &mut found);
    }
    found
}

fn check_flow(file: &SourceFile, flow: &Flow<'_>, found: &mut Vec<Diagnostic>) {
    let mut reported = HashSet::new();
    for (spawned_at, event) in flow.events.iter().enumerate() {
        let Event::Spawn {
            holder,
            args,
            worker,
        } = event
        else {
            continue;
        };
        // A worker of this file that never writes to a channel it is given only reads.
        if worker
            .as_ref()
            .and_then(|w| file.writing_workers.get(w))
            .is_some_and(|writes| !writes)
        {
            continue;
        }
        let process = flow.root(*holder);
        // What the parent reads from: a queue passed along, or the partner of a pipe end.
        let mut watched: Vec<Id> = args
            .iter()
            .filter_map(|a| match flow.holds(*a) {
                Holds::Queue => Some(flow.root(*a)),
                Holds::Pipe(Some(partner)) => Some(flow.root(partner)),
                _ => None,
            })
            .collect();
        watched.dedup();
        let Some((joined_at, join)) = flow
            .events
            .iter()
            .enumerate()
            .skip(spawned_at + 1)
            .find_map(|(at, e)| match e {
                Event::Join { target, call } if flow.root(*target) == process => Some((at, *call)),
                _ => None,
            })
        else {
            continue;
        };
        let reads = |events: &[Event<'_>], channel: Id| {
            events
                .iter()
                .any(|e| matches!(e, Event::Read { target, .. } if flow.root(*target) == channel))
        };
        for channel in watched {
            let before = reads(&flow.events[spawned_at + 1..joined_at], channel);
            let after = reads(&flow.events[joined_at + 1..], channel);
            if after && !before && reported.insert(Span::of(join)) {
                let name = flow.name(process).to_owned();
                let channel = flow.name(channel).to_owned();
                found.push(
                    Diagnostic::new(
                        LINT.name,
                        file,
                        join,
                        format!(
                            "`{name}` is joined before the data it sends is read from `{channel}`"
                        ),
                        "waits for a writer that may be waiting for a reader",
                    )
                    .help(format!("read from `{channel}` first, then join `{name}`")),
                );
            }
        }
    }
}
