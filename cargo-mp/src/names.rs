//! Name resolution, per file: a table of the file's `use` items (renames, nested groups, globs,
//! `self`/`super`/`crate` paths, `extern crate .. as`), so that a path is linted by what it refers
//! to (`mp::Pool`), not by how its last segment is spelled (any `Pool`).
//!
//! The table is one per file: a `use` inside an inline module or a function body counts for the
//! whole file. A name imported from `mp` in one place and from another crate in another is
//! resolved to `mp` only where nothing else is known about it, so the ambiguity never turns
//! another crate's type into `mp`'s.

use std::collections::{HashMap, HashSet};

use syn::visit::Visit;

/// How the crate being checked refers to `mp`.
#[derive(Debug, Clone)]
pub struct Crate {
    /// The names `mp` has in this crate: `mp`, or the key of a renamed dependency.
    pub mp_names: Vec<String>,
    /// This crate is `mp` itself: `crate::Pool` is `mp::Pool`.
    pub is_mp: bool,
}

impl Default for Crate {
    fn default() -> Crate {
        Crate {
            mp_names: vec!["mp".to_owned()],
            is_mp: false,
        }
    }
}

/// A file's imports.
#[derive(Debug, Default)]
pub struct Names {
    /// Local name → the full paths it was imported as (more than one if imported twice).
    imports: HashMap<String, Vec<Vec<String>>>,
    /// Names that mean the `mp` crate (`mp`, `extern crate mp as m`, a renamed dependency).
    mp: HashSet<String>,
    /// `use mp::*` (or a glob of one of mp's modules): a bare name may be mp's.
    mp_glob: bool,
    /// Names defined in this file (types, functions, modules): a bare one is not mp's.
    local: HashSet<String>,
    /// `crate::` means `mp::`.
    is_mp: bool,
}

impl Names {
    /// The table of `file`, for a crate that calls `mp` as `krate` says.
    pub fn of(file: &syn::File, krate: &Crate) -> Names {
        let mut names = Names {
            mp: krate.mp_names.iter().cloned().collect(),
            is_mp: krate.is_mp,
            ..Names::default()
        };
        let mut c = Collect {
            uses: Vec::new(),
            externs: Vec::new(),
            local: HashSet::new(),
        };
        c.visit_file(file);
        // A module of this crate called `mp` hides the crate.
        for m in &c.local {
            names.mp.remove(m);
        }
        for (name, alias) in c.externs {
            if name == "mp" || names.mp.contains(&name) {
                names.mp.insert(alias);
            } else {
                names.mp.remove(&alias);
            }
        }
        for tree in &c.uses {
            names.add_tree(tree, Vec::new());
        }
        // `use other::mp;` hides the crate too.
        if let Some(paths) = names.imports.get("mp")
            && paths.iter().any(|p| p.first().is_none_or(|f| f != "mp"))
        {
            names.mp.remove("mp");
        }
        names.local = c.local;
        names
    }

    fn add_tree(&mut self, tree: &syn::UseTree, mut prefix: Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.add_tree(&p.tree, prefix);
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                if name == "self" {
                    if let Some(last) = prefix.last().cloned() {
                        self.import(last, prefix);
                    }
                } else {
                    prefix.push(name.clone());
                    self.import(name, prefix);
                }
            }
            syn::UseTree::Rename(r) => {
                let name = r.ident.to_string();
                if name != "self" {
                    prefix.push(name);
                }
                if r.rename != "_" {
                    self.import(r.rename.to_string(), prefix);
                }
            }
            syn::UseTree::Glob(_) => {
                if self.normalize(prefix).first().is_some_and(|f| f == "mp") {
                    self.mp_glob = true;
                }
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.add_tree(t, prefix.clone());
                }
            }
        }
    }

    fn import(&mut self, name: String, path: Vec<String>) {
        let path = self.normalize(path);
        self.imports.entry(name).or_default().push(path);
    }

    /// Rewrites the first segment: a name of `mp` (or `crate` inside mp) becomes `mp`.
    fn normalize(&self, mut path: Vec<String>) -> Vec<String> {
        if let Some(first) = path.first_mut()
            && (self.mp.contains(first.as_str()) || (self.is_mp && first == "crate"))
        {
            "mp".clone_into(first);
        }
        path
    }

    /// The full path `path` refers to, as far as this file tells; `None` if it is not known
    /// to be `mp`'s (the lints only care about `mp`'s paths).
    pub fn resolve(&self, path: &syn::Path) -> Option<Vec<String>> {
        let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve_segments(&segs, path.leading_colon.is_some())
    }

    fn resolve_segments(&self, segs: &[String], absolute: bool) -> Option<Vec<String>> {
        let first = segs.first()?;
        if absolute {
            return (first == "mp" || self.mp.contains(first))
                .then(|| self.normalize(segs.to_vec()));
        }
        if let Some(paths) = self.imports.get(first) {
            // Every import of this name must be mp's, or it is not known to be.
            let mut resolved = None;
            for p in paths {
                if p.first().is_none_or(|f| f != "mp") {
                    return None;
                }
                resolved = Some(p);
            }
            let mut full = resolved?.clone();
            full.extend(segs[1..].iter().cloned());
            return Some(full);
        }
        if self.mp.contains(first) || (self.is_mp && first == "crate") {
            return Some(self.normalize(segs.to_vec()));
        }
        if self.mp_glob && !self.local.contains(first) && !is_keyword_root(first) {
            let mut full = vec!["mp".to_owned()];
            full.extend(segs.iter().cloned());
            return Some(full);
        }
        None
    }

    /// `path` with its first segment replaced by what it was imported as (any crate, not only
    /// mp): `use std::process::exit; exit(1)` → `std::process::exit`.
    pub fn expand(&self, path: &syn::Path) -> Vec<String> {
        let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if path.leading_colon.is_none()
            && let Some(first) = segs.first()
            && let Some([only]) = self.imports.get(first).map(Vec::as_slice)
        {
            let mut full = only.clone();
            full.extend(segs[1..].iter().cloned());
            return full;
        }
        self.normalize(segs)
    }

    /// Whether `path` is mp's item ending with `tail` (`["Pool", "new"]` matches `mp::Pool::new`
    /// and `mp::pool::Pool::new`, through imports and renames).
    pub fn is_mp(&self, path: &syn::Path, tail: &[&str]) -> bool {
        self.resolve(path).is_some_and(|full| {
            full.len() > tail.len() && full[full.len() - tail.len()..].iter().eq(tail.iter())
        })
    }

    /// Whether a type path names mp's type `name` (`mp::Queue<T>`, an imported `Queue`).
    pub fn is_mp_type(&self, path: &syn::Path, name: &str) -> bool {
        self.is_mp(path, &[name])
    }
}

fn is_keyword_root(s: &str) -> bool {
    matches!(
        s,
        "crate" | "self" | "super" | "Self" | "std" | "core" | "alloc"
    )
}

struct Collect<'a> {
    uses: Vec<&'a syn::UseTree>,
    externs: Vec<(String, String)>,
    local: HashSet<String>,
}

impl<'a> Visit<'a> for Collect<'a> {
    fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
        self.uses.push(&u.tree);
    }
    fn visit_item_extern_crate(&mut self, e: &'a syn::ItemExternCrate) {
        if let Some((_, alias)) = &e.rename {
            self.externs.push((e.ident.to_string(), alias.to_string()));
        }
    }
    fn visit_item_struct(&mut self, i: &'a syn::ItemStruct) {
        self.local.insert(i.ident.to_string());
    }
    fn visit_item_enum(&mut self, i: &'a syn::ItemEnum) {
        self.local.insert(i.ident.to_string());
    }
    fn visit_item_type(&mut self, i: &'a syn::ItemType) {
        self.local.insert(i.ident.to_string());
    }
    fn visit_item_trait(&mut self, i: &'a syn::ItemTrait) {
        self.local.insert(i.ident.to_string());
        syn::visit::visit_item_trait(self, i);
    }
    fn visit_item_mod(&mut self, i: &'a syn::ItemMod) {
        self.local.insert(i.ident.to_string());
        syn::visit::visit_item_mod(self, i);
    }
    fn visit_item_fn(&mut self, i: &'a syn::ItemFn) {
        self.local.insert(i.sig.ident.to_string());
        syn::visit::visit_item_fn(self, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Names {
        Names::of(&syn::parse_file(src).unwrap(), &Crate::default())
    }

    fn path(s: &str) -> syn::Path {
        syn::parse_str(s).unwrap()
    }

    #[test]
    fn renames_groups_globs_and_externs() {
        let n = names("use mp::spawn as go; use mp::{Pool as P, self as m2, queue::{Queue}};");
        assert!(n.is_mp(&path("go"), &["spawn"]));
        assert!(n.is_mp(&path("P::new"), &["Pool", "new"]));
        assert!(n.is_mp(&path("m2::Manager::new"), &["Manager", "new"]));
        assert!(n.is_mp(&path("Queue::new"), &["Queue", "new"]));
        assert!(!n.is_mp(&path("Pool::new"), &["Pool", "new"]));
        let n = names("extern crate mp as m; use r2d2::Pool;");
        assert!(n.is_mp(&path("m::spawn"), &["spawn"]));
        assert!(!n.is_mp(&path("Pool::new"), &["Pool", "new"]));
        let n = names("use mp::*; struct Executor;");
        assert!(n.is_mp(&path("Pool::new"), &["Pool", "new"]));
        assert!(!n.is_mp(&path("Executor::new"), &["Executor", "new"]));
        let n = names("mod mp { pub fn spawn() {} }");
        assert!(!n.is_mp(&path("mp::spawn"), &["spawn"]));
    }
}
