//! Renders types and patterns as a person writes them (`mp::Queue<Job>`, `&'a mut [u8]`), not
//! as `TokenStream::to_string` spaces them (`mp :: Queue < Job >`): the worker's signature that
//! `cargo mp workers` prints, and the parameter names in diagnostics.
//!
//! Tokens become atoms (`::` and `->` joined, a lifetime's `'` joined to its name, a delimited
//! group rendered recursively); a space goes between two atoms unless the pair is one Rust's own
//! printer writes without one.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// `tokens` as written: no spaces around `::`, after `<`, `&` and `?`, before `<` (after a
/// name), `>`, `,` and `;`, between a name and its `(..)` (`Fn(u32)`, `fn(u32)`).
pub(crate) fn tokens(tokens: TokenStream) -> String {
    let atoms = atoms(tokens);
    let mut out = String::new();
    for (i, atom) in atoms.iter().enumerate() {
        if i > 0 && space_between(&atoms[i - 1], atom) {
            out.push(' ');
        }
        out.push_str(atom.text());
    }
    out
}

enum Atom {
    /// A name or keyword.
    Ident(String),
    /// A lifetime (`'a`) or a literal.
    Word(String),
    /// An operator: one punctuation character, or `::`, `->`, `=>`.
    Op(String),
    /// A delimited group, already rendered.
    Group(Delimiter, String),
}

impl Atom {
    fn text(&self) -> &str {
        match self {
            Atom::Ident(s) | Atom::Word(s) | Atom::Op(s) | Atom::Group(_, s) => s,
        }
    }

    fn is_op(&self, ops: &[&str]) -> bool {
        matches!(self, Atom::Op(s) if ops.contains(&s.as_str()))
    }
}

fn atoms(stream: TokenStream) -> Vec<Atom> {
    let mut out = Vec::new();
    let mut iter = stream.into_iter().peekable();
    while let Some(tree) = iter.next() {
        let atom = match tree {
            TokenTree::Ident(i) => Atom::Ident(i.to_string()),
            TokenTree::Literal(l) => Atom::Word(l.to_string()),
            TokenTree::Group(g) => {
                let inner = tokens(g.stream());
                let text = match g.delimiter() {
                    Delimiter::Parenthesis => format!("({inner})"),
                    Delimiter::Bracket => format!("[{inner}]"),
                    Delimiter::Brace if inner.is_empty() => "{}".to_owned(),
                    Delimiter::Brace => format!("{{ {inner} }}"),
                    Delimiter::None => inner,
                };
                Atom::Group(g.delimiter(), text)
            }
            TokenTree::Punct(p) => {
                let c = p.as_char();
                let next = match iter.peek() {
                    Some(TokenTree::Punct(n)) if p.spacing() == Spacing::Joint => Some(n.as_char()),
                    _ => None,
                };
                match (c, next) {
                    ('\'', _) => match iter.peek() {
                        Some(TokenTree::Ident(name)) => {
                            let word = format!("'{name}");
                            iter.next();
                            Atom::Word(word)
                        }
                        _ => Atom::Op("'".to_owned()),
                    },
                    (':', Some(':')) | ('-', Some('>')) | ('=', Some('>')) => {
                        let op = format!("{c}{}", next.unwrap_or_default());
                        iter.next();
                        Atom::Op(op)
                    }
                    _ => Atom::Op(c.to_string()),
                }
            }
        };
        out.push(atom);
    }
    out
}

/// Keywords after which a `(..)` group keeps its space (`&mut (u8, u8)`, `dyn (Trait)`).
const SPACED_KEYWORDS: &[&str] = &["mut", "const", "dyn", "impl", "as", "in", "where"];

fn space_between(prev: &Atom, next: &Atom) -> bool {
    if prev.is_op(&["&", "<", "::", "?", "*", "!", "#", "$", "'"]) {
        return false;
    }
    if next.is_op(&[",", ";", ">", "::", ":", "."]) {
        return false;
    }
    match (prev, next) {
        // `Vec<u8>`, `for<'a>`
        (Atom::Ident(_), Atom::Op(op)) if op == "<" => false,
        // `fn(u32)`, `Fn(u32) -> u32`
        (Atom::Ident(name), Atom::Group(Delimiter::Parenthesis, _)) => {
            SPACED_KEYWORDS.contains(&name.as_str())
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::tokens;
    use quote::quote;
    use syn::parse::Parser;

    fn ty(text: &str) -> String {
        let t: syn::Type = syn::parse_str(text).unwrap();
        tokens(quote!(#t))
    }

    #[test]
    fn types_print_as_written() {
        for written in [
            "mp::Queue<Job>",
            "u32",
            "Vec<Vec<u8>>",
            "std::collections::HashMap<String, Vec<(u32, f64)>>",
            "&'static str",
            "&'a mut [u8]",
            "&mut (u8, u8)",
            "[u8; 4]",
            "(u32,)",
            "()",
            "(u32, String)",
            "<T as Iterator>::Item",
            "Vec<<T as Iterator>::Item>",
            "Box<dyn Fn(u32) -> u32 + Send>",
            "fn(u32, u8) -> u32",
            "for<'a> fn(&'a u8) -> &'a u8",
            "Option<Box<dyn Iterator<Item = u32>>>",
            "*const u8",
            "::std::string::String",
            "mp::Result<Result<u64, String>>",
            "Wrapper<{ N }>",
            "impl Iterator<Item = u32>",
        ] {
            assert_eq!(ty(written), written);
        }
    }

    #[test]
    fn spacing_of_the_input_does_not_matter() {
        assert_eq!(ty("mp :: Queue < Job >"), "mp::Queue<Job>");
        assert_eq!(ty("Vec < ( u32 , u8 ) >"), "Vec<(u32, u8)>");
    }

    #[test]
    fn patterns_print_as_written() {
        let p: syn::Pat = syn::Pat::parse_single.parse_str("(a, mut b)").unwrap();
        assert_eq!(tokens(quote!(#p)), "(a, mut b)");
    }
}
