//! The values of one function body and what happens to them, in source order: which bindings
//! hold channels (queues made here or taken as parameters, pipe ends and their partners) and
//! processes (one, or a `Vec` of them filled by `push` or `collect`), and the calls on them
//! (`join`, reads, `terminate`, `kill`). Blocks nest as Rust scopes them, so a later `let` of
//! the same name is a new value; a `for` variable or an iterator adapter's closure parameter
//! stands for the collection it walks; nested blocks (`if`, `match`, loops, closures) are
//! followed in order; nested `fn` items are bodies of their own.

use std::collections::HashMap;

use syn::visit::Visit;

use crate::names::Names;
use crate::syntax;

/// A binding's index in [`Flow::bindings`].
pub(crate) type Id = usize;

/// What a binding holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holds {
    /// Nothing the lints follow.
    Other,
    /// A queue (`Queue`, `SimpleQueue`, `JoinableQueue`, a manager's queue).
    Queue,
    /// A pipe end, with its partner.
    Pipe(Option<Id>),
    /// One process or a collection of processes.
    Processes,
}

/// One binding: its name, what it holds, and the binding it is another name for.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub(crate) name: String,
    pub(crate) holds: Holds,
    pub(crate) alias_of: Option<Id>,
}

/// Something done to a binding, at a position of the body's order.
#[derive(Clone)]
pub(crate) enum Event<'a> {
    /// A process started into `holder`, with the bindings among its arguments and the
    /// worker's name (if a plain name).
    Spawn {
        holder: Id,
        args: Vec<Id>,
        worker: Option<String>,
    },
    /// `holder.join()` (no timeout).
    Join {
        target: Id,
        call: &'a syn::ExprMethodCall,
    },
    /// A read of a channel; `bounded` for `_timeout`/`try_` variants.
    Read {
        target: Id,
        bounded: bool,
        call: &'a syn::ExprMethodCall,
    },
    /// `terminate()` (`kill: false`) or `kill()`.
    Stop { target: Id, kill: bool },
}

/// A function body's bindings and events, in order.
#[derive(Default)]
pub(crate) struct Flow<'a> {
    pub(crate) bindings: Vec<Binding>,
    pub(crate) events: Vec<Event<'a>>,
    /// Parameters (their bindings), in order.
    pub(crate) params: Vec<Id>,
}

impl Flow<'_> {
    /// The binding `id` stands for (following aliases).
    pub(crate) fn root(&self, mut id: Id) -> Id {
        while let Some(next) = self.bindings[id].alias_of {
            id = next;
        }
        id
    }

    /// What the binding `id` (or what it stands for) holds.
    pub(crate) fn holds(&self, id: Id) -> Holds {
        self.bindings[self.root(id)].holds
    }

    /// The name of `id` as written.
    pub(crate) fn name(&self, id: Id) -> &str {
        &self.bindings[id].name
    }
}

/// Reads that wait for data.
const READS: &[&str] = &[
    "get",
    "get_timeout",
    "try_get",
    "get_nowait",
    "get_many",
    "recv",
    "recv_timeout",
    "try_recv",
    "recv_bytes",
];

/// Types whose values are queues.
pub(crate) const QUEUE_TYPES: &[&str] = &["Queue", "SimpleQueue", "JoinableQueue", "QueueProxy"];

/// The flow of a function with signature `sig` and body `block` in a file with `names`.
pub(crate) fn of<'a>(names: &'a Names, sig: &'a syn::Signature, block: &'a syn::Block) -> Flow<'a> {
    let mut w = Walk {
        names,
        flow: Flow::default(),
        scopes: vec![HashMap::new()],
        holder: None,
    };
    for input in &sig.inputs {
        let syn::FnArg::Typed(t) = input else {
            continue;
        };
        let holds = type_holds(names, &t.ty);
        for (name, _) in pat_idents(&t.pat) {
            let id = w.bind(name, holds, None);
            w.flow.params.push(id);
        }
    }
    w.visit_block(block);
    w.flow
}

/// What a value of type `ty` is (`mp::Queue<T>`, `&Queue<T>`, `mp::Connection<T>`).
fn type_holds(names: &Names, ty: &syn::Type) -> Holds {
    match ty {
        syn::Type::Reference(r) => type_holds(names, &r.elem),
        syn::Type::Paren(p) => type_holds(names, &p.elem),
        syn::Type::Path(p) => {
            if QUEUE_TYPES.iter().any(|q| names.is_mp_type(&p.path, q)) {
                Holds::Queue
            } else if names.is_mp_type(&p.path, "Connection")
                || names.is_mp_type(&p.path, "PipeReader")
            {
                Holds::Pipe(None)
            } else if names.is_mp_type(&p.path, "Process") {
                Holds::Processes
            } else {
                Holds::Other
            }
        }
        _ => Holds::Other,
    }
}

/// The identifiers a pattern binds, with their position in a two-element tuple (for pipes).
fn pat_idents(pat: &syn::Pat) -> Vec<(String, Option<usize>)> {
    let mut out = Vec::new();
    fn go(pat: &syn::Pat, pos: Option<usize>, out: &mut Vec<(String, Option<usize>)>) {
        match pat {
            syn::Pat::Ident(i) => {
                out.push((i.ident.to_string(), pos));
                if let Some((_, sub)) = &i.subpat {
                    go(sub, pos, out);
                }
            }
            syn::Pat::Type(t) => go(&t.pat, pos, out),
            syn::Pat::Reference(r) => go(&r.pat, pos, out),
            syn::Pat::Paren(p) => go(&p.pat, pos, out),
            syn::Pat::Tuple(t) => {
                for (i, p) in t.elems.iter().enumerate() {
                    go(p, if t.elems.len() == 2 { Some(i) } else { None }, out);
                }
            }
            syn::Pat::TupleStruct(t) => t.elems.iter().for_each(|p| go(p, None, out)),
            syn::Pat::Struct(s) => s.fields.iter().for_each(|f| go(&f.pat, None, out)),
            syn::Pat::Slice(s) => s.elems.iter().for_each(|p| go(p, None, out)),
            syn::Pat::Or(o) => {
                if let Some(first) = o.cases.first() {
                    go(first, pos, out);
                }
            }
            _ => {}
        }
    }
    go(pat, None, &mut out);
    out
}

/// The expression under `?`, `.unwrap()`, `.expect(..)`, parentheses, `&`, `*`, `.clone()`.
fn strip(mut e: &syn::Expr) -> &syn::Expr {
    loop {
        e = match e {
            syn::Expr::Try(t) => &t.expr,
            syn::Expr::Paren(p) => &p.expr,
            syn::Expr::Reference(r) => &r.expr,
            syn::Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => &u.expr,
            syn::Expr::Group(g) => &g.expr,
            syn::Expr::MethodCall(m)
                if m.method == "unwrap"
                    || m.method == "expect"
                    || m.method == "clone"
                    || m.method == "as_ref"
                    || m.method == "as_mut"
                    || m.method == "borrow"
                    || m.method == "borrow_mut" =>
            {
                &m.receiver
            }
            _ => return e,
        }
    }
}

struct Walk<'a> {
    names: &'a Names,
    flow: Flow<'a>,
    scopes: Vec<HashMap<String, Id>>,
    /// The binding a process started now goes into (a `let`'s, a `push`'s receiver's).
    holder: Option<Id>,
}

impl<'a> Walk<'a> {
    fn bind(&mut self, name: String, holds: Holds, alias_of: Option<Id>) -> Id {
        let id = self.flow.bindings.len();
        self.flow.bindings.push(Binding {
            name: name.clone(),
            holds,
            alias_of,
        });
        self.scopes.last_mut().expect("a scope").insert(name, id);
        id
    }

    fn lookup(&self, name: &str) -> Option<Id> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    /// The binding an expression names (`q`, `q.clone()`, `&q`, `children[i]`, `self.q`
    /// is not followed).
    fn target(&self, e: &syn::Expr) -> Option<Id> {
        match strip(e) {
            syn::Expr::Path(p) if p.path.segments.len() == 1 && p.qself.is_none() => {
                self.lookup(&p.path.segments[0].ident.to_string())
            }
            syn::Expr::Index(i) => self.target(&i.expr),
            syn::Expr::MethodCall(m)
                if matches!(
                    m.method.to_string().as_str(),
                    "iter"
                        | "iter_mut"
                        | "into_iter"
                        | "drain"
                        | "last_mut"
                        | "first_mut"
                        | "get_mut"
                        | "last"
                        | "first"
                        | "enumerate"
                        | "rev"
                ) =>
            {
                self.target(&m.receiver)
            }
            _ => None,
        }
    }

    /// What a `let`'s initializer makes: a queue, a pipe (its pair), or another binding.
    fn init_holds(&self, init: &syn::Expr) -> (Holds, Option<Id>, bool) {
        let e = strip(init);
        if let syn::Expr::Call(c) = e
            && let syn::Expr::Path(p) = &*c.func
        {
            let queue = QUEUE_TYPES.iter().any(|q| {
                ["new", "with_maxsize", "with_capacity", "bounded"]
                    .iter()
                    .any(|f| self.names.is_mp(&p.path, &[q, f]))
            });
            if queue {
                return (Holds::Queue, None, false);
            }
            if self.names.is_mp(&p.path, &["pipe"]) || self.names.is_mp(&p.path, &["pipe_one_way"])
            {
                return (Holds::Pipe(None), None, true);
            }
        }
        if let syn::Expr::MethodCall(m) = e
            && matches!(m.method.to_string().as_str(), "Queue" | "JoinableQueue")
        {
            return (Holds::Queue, None, false);
        }
        (Holds::Other, self.target(init), false)
    }

    fn spawn_args(&self, call: &'a syn::ExprCall) -> Vec<Id> {
        let mut out = Vec::new();
        for arg in call.args.iter().skip(1) {
            let mut idents = Idents(Vec::new());
            idents.visit_expr(arg);
            out.extend(idents.0.iter().filter_map(|n| self.lookup(n)));
        }
        out
    }
}

struct Idents(Vec<String>);

impl<'a> Visit<'a> for Idents {
    fn visit_expr_path(&mut self, p: &'a syn::ExprPath) {
        if p.path.segments.len() == 1 {
            self.0.push(p.path.segments[0].ident.to_string());
        }
    }
}

impl<'a> Visit<'a> for Walk<'a> {
    fn visit_block(&mut self, b: &'a syn::Block) {
        self.scopes.push(HashMap::new());
        syn::visit::visit_block(self, b);
        self.scopes.pop();
    }

    fn visit_local(&mut self, local: &'a syn::Local) {
        let idents = pat_idents(&local.pat);
        let (mut holds, alias, pair) = match &local.init {
            Some(init) => self.init_holds(&init.expr),
            None => (Holds::Other, None, false),
        };
        if let syn::Pat::Type(t) = &local.pat {
            let typed = type_holds(self.names, &t.ty);
            if typed != Holds::Other {
                holds = typed;
            }
        }
        // The binding a process started in the initializer goes into, if one.
        let holder = if idents.len() == 1 && !pair {
            let id = self.flow.bindings.len();
            self.flow.bindings.push(Binding {
                name: idents[0].0.clone(),
                holds,
                alias_of: if holds == Holds::Other { alias } else { None },
            });
            Some(id)
        } else {
            None
        };
        if let Some(init) = &local.init {
            let saved = std::mem::replace(&mut self.holder, holder);
            self.visit_expr(&init.expr);
            self.holder = saved;
            if let Some((_, diverge)) = &init.diverge {
                self.visit_expr(diverge);
            }
        }
        if let Some(id) = holder {
            self.scopes
                .last_mut()
                .expect("a scope")
                .insert(idents[0].0.clone(), id);
        } else if pair {
            let ids: Vec<Id> = idents
                .iter()
                .map(|(n, _)| self.bind(n.clone(), Holds::Pipe(None), None))
                .collect();
            if let [a, b] = ids[..] {
                self.flow.bindings[a].holds = Holds::Pipe(Some(b));
                self.flow.bindings[b].holds = Holds::Pipe(Some(a));
            }
        } else {
            for (name, _) in idents {
                self.bind(name, Holds::Other, None);
            }
        }
    }

    fn visit_expr_call(&mut self, call: &'a syn::ExprCall) {
        if syntax::starts_a_process(self.names, call) {
            let holder = match self.holder {
                Some(h) => h,
                None => {
                    let id = self.flow.bindings.len();
                    self.flow.bindings.push(Binding {
                        name: "_".to_owned(),
                        holds: Holds::Processes,
                        alias_of: None,
                    });
                    id
                }
            };
            let root = self.flow.root(holder);
            self.flow.bindings[root].holds = Holds::Processes;
            let args = self.spawn_args(call);
            let worker = match call.args.first() {
                Some(syn::Expr::Path(p)) => p.path.get_ident().map(|i| i.to_string()),
                _ => None,
            };
            self.flow.events.push(Event::Spawn {
                holder,
                args,
                worker,
            });
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
        let method = m.method.to_string();
        let target = self.target(&m.receiver);
        // Arguments and the receiver come first (`q.get()` inside `p.join()` ... order).
        self.visit_expr(&m.receiver);
        let into = if matches!(method.as_str(), "push" | "push_back" | "insert" | "extend") {
            target
        } else {
            None
        };
        let adapter = matches!(
            method.as_str(),
            "for_each"
                | "try_for_each"
                | "map"
                | "filter_map"
                | "flat_map"
                | "inspect"
                | "all"
                | "any"
        );
        for arg in &m.args {
            let holder = into.or(self.holder);
            let saved = std::mem::replace(&mut self.holder, holder);
            match (arg, adapter) {
                (syn::Expr::Closure(c), true) => {
                    // The closure's parameters stand for the items it is called with.
                    self.scopes.push(HashMap::new());
                    for input in &c.inputs {
                        for (name, _) in pat_idents(input) {
                            self.bind(name, Holds::Other, target);
                        }
                    }
                    self.visit_expr(&c.body);
                    self.scopes.pop();
                }
                _ => self.visit_expr(arg),
            }
            self.holder = saved;
        }
        let Some(target) = target else { return };
        match method.as_str() {
            "join" if m.args.is_empty() => self.flow.events.push(Event::Join { target, call: m }),
            "terminate" => self.flow.events.push(Event::Stop {
                target,
                kill: false,
            }),
            "kill" => self.flow.events.push(Event::Stop { target, kill: true }),
            name if READS.contains(&name) => {
                let bounded = name.ends_with("_timeout")
                    || name.starts_with("try_")
                    || name == "get_nowait"
                    || (name == "get" && !m.args.is_empty());
                self.flow.events.push(Event::Read {
                    target,
                    bounded,
                    call: m,
                });
            }
            _ => {}
        }
    }

    fn visit_expr_for_loop(&mut self, l: &'a syn::ExprForLoop) {
        self.visit_expr(&l.expr);
        let walked = self.target(&l.expr);
        self.scopes.push(HashMap::new());
        for (name, _) in pat_idents(&l.pat) {
            self.bind(name, Holds::Other, walked);
        }
        self.visit_block(&l.body);
        self.scopes.pop();
    }

    fn visit_expr_closure(&mut self, c: &'a syn::ExprClosure) {
        self.scopes.push(HashMap::new());
        for input in &c.inputs {
            for (name, _) in pat_idents(input) {
                self.bind(name, Holds::Other, None);
            }
        }
        self.visit_expr(&c.body);
        self.scopes.pop();
    }

    fn visit_expr_if(&mut self, i: &'a syn::ExprIf) {
        self.scopes.push(HashMap::new());
        self.visit_expr(&i.cond);
        self.visit_block(&i.then_branch);
        self.scopes.pop();
        if let Some((_, e)) = &i.else_branch {
            self.visit_expr(e);
        }
    }

    fn visit_expr_while(&mut self, w: &'a syn::ExprWhile) {
        self.scopes.push(HashMap::new());
        self.visit_expr(&w.cond);
        self.visit_block(&w.body);
        self.scopes.pop();
    }

    fn visit_expr_let(&mut self, l: &'a syn::ExprLet) {
        self.visit_expr(&l.expr);
        let walked = self.target(&l.expr);
        for (name, _) in pat_idents(&l.pat) {
            // `while let Some(p) = children.pop()`: `p` is one of `children`.
            self.bind(name, Holds::Other, walked);
        }
    }

    fn visit_arm(&mut self, a: &'a syn::Arm) {
        self.scopes.push(HashMap::new());
        for (name, _) in pat_idents(&a.pat) {
            self.bind(name, Holds::Other, None);
        }
        if let Some((_, g)) = &a.guard {
            self.visit_expr(g);
        }
        self.visit_expr(&a.body);
        self.scopes.pop();
    }

    // Items inside a body are bodies of their own.
    fn visit_item(&mut self, _: &'a syn::Item) {}
}
