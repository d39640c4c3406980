//! A finding and its renderings: rustc-like text (tabs and wide characters aligned as rustc
//! aligns them), cargo's `short` line, rustc's JSON diagnostic inside cargo's
//! `compiler-message` stream (for tools that filter cargo's output on `reason`), and one SARIF
//! 2.1.0 log (for code-scanning services).

use std::fmt::Write as _;

use serde_json::{Value, json};
use unicode_width::UnicodeWidthChar;

use crate::lints::{LINTS, Level};
use crate::source::SourceFile;

/// Where a finding is: 1-based lines, 1-based character columns (end exclusive), bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First line.
    pub line: usize,
    /// First column.
    pub column: usize,
    /// Last line.
    pub end_line: usize,
    /// The column after the last character.
    pub end_column: usize,
    /// Byte offsets in the file.
    pub bytes: (usize, usize),
}

impl Span {
    /// The span of a syntax node.
    pub fn of(node: &impl syn::spanned::Spanned) -> Span {
        let span = node.span();
        let (start, end) = (span.start(), span.end());
        let range = span.byte_range();
        Span {
            line: start.line,
            column: start.column + 1,
            end_line: end.line,
            end_column: end.column + 1,
            bytes: (range.start, range.end),
        }
    }
}

/// What a diagnostic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A lint's finding.
    Lint,
    /// A file that cannot be read or parsed.
    Syntax,
    /// A name in `#[mp::allow(..)]` that is not a lint.
    UnknownLint,
}

/// The code of a file that cannot be parsed.
pub const SYNTAX_ERROR: &str = "syntax-error";
/// The code of an unknown name in `#[mp::allow(..)]`.
pub const UNKNOWN_LINT: &str = "mp::unknown-lint";

/// A condition a finding waits for until every file of its target is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A function passed as a worker: reported if the target defines it as a local fn or a
    /// fn without `#[mp::worker]`.
    Unregistered(String),
    /// Reported if some file of the target uses mp's process API.
    StartsProcesses,
}

/// One finding of one lint (or a file that does not parse, or an unknown lint name).
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// What kind of diagnostic.
    pub kind: Kind,
    /// The lint, `None` unless `kind` is [`Kind::Lint`].
    pub lint: Option<&'static str>,
    /// The level it is reported at.
    pub level: Level,
    /// What is wrong, one sentence, lowercase.
    pub message: String,
    /// The file, relative to the workspace root.
    pub file: String,
    /// Where.
    pub span: Span,
    /// The text under the carets.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
    /// Further notes (the lint's level, where it was set).
    pub notes: Vec<String>,
    /// A condition on the whole target, resolved before the finding is reported.
    pub pending: Option<Pending>,
}

impl Diagnostic {
    /// A finding of `lint` at `node` in `file` (its level is set later, from the config).
    pub fn new(
        lint: &'static str,
        file: &SourceFile,
        node: &impl syn::spanned::Spanned,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            kind: Kind::Lint,
            lint: Some(lint),
            level: Level::Warn,
            message: message.into(),
            file: file.display.clone(),
            span: Span::of(node),
            label: label.into(),
            help: None,
            notes: Vec::new(),
            pending: None,
        }
    }

    /// Adds how to fix it.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Reports it only once `pending` holds for the target.
    pub(crate) fn pending(mut self, pending: Pending) -> Diagnostic {
        self.pending = Some(pending);
        self
    }

    fn rustc_level(&self) -> &'static str {
        match self.level {
            Level::Deny => "error",
            _ => "warning",
        }
    }

    /// `mp::<lint>`, `mp::unknown-lint` or `syntax-error`.
    pub fn code(&self) -> String {
        match (self.kind, self.lint) {
            (Kind::Lint, Some(name)) => format!("mp::{name}"),
            (Kind::UnknownLint, _) => UNKNOWN_LINT.to_owned(),
            _ => SYNTAX_ERROR.to_owned(),
        }
    }

    /// The notes shown under the finding: the given ones, then the lint's level.
    fn all_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        if let Some(name) = self.lint {
            notes.push(format!(
                "`mp::{name}` is {}; see `cargo mp lints`",
                self.level.name()
            ));
        }
        notes
    }

    /// rustc-style text with the source line and carets. `source` is the file's text.
    pub fn render(&self, source: &str, color: bool) -> String {
        let (bold, red, yellow, blue, reset) = if color {
            (
                "\x1b[1m",
                "\x1b[1;31m",
                "\x1b[1;33m",
                "\x1b[1;34m",
                "\x1b[0m",
            )
        } else {
            ("", "", "", "", "")
        };
        let level_color = if self.level == Level::Deny {
            red
        } else {
            yellow
        };
        let number = self.span.line.to_string();
        let pad = " ".repeat(number.len());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{level_color}{}[{}]{reset}{bold}: {}{reset}",
            self.rustc_level(),
            self.code(),
            self.message
        );
        let _ = writeln!(
            out,
            "{pad}{blue}-->{reset} {}:{}:{}",
            self.file, self.span.line, self.span.column
        );
        let line = source
            .lines()
            .nth(self.span.line.saturating_sub(1))
            .unwrap_or("");
        let chars: Vec<char> = line.chars().collect();
        let start = (self.span.column - 1).min(chars.len());
        let end = if self.span.end_line == self.span.line {
            (self.span.end_column - 1).clamp(start, chars.len())
        } else {
            chars.len()
        };
        let indent: usize = chars[..start].iter().map(|c| display_width(*c)).sum();
        let width: usize = chars[start..end]
            .iter()
            .map(|c| display_width(*c))
            .sum::<usize>()
            .max(1);
        let shown: String = line.replace('\t', "    ");
        let _ = writeln!(out, "{pad} {blue}|{reset}");
        let _ = writeln!(out, "{blue}{number} |{reset} {shown}");
        let _ = writeln!(
            out,
            "{pad} {blue}|{reset} {}{level_color}{} {}{reset}",
            " ".repeat(indent),
            "^".repeat(width),
            self.label
        );
        let _ = writeln!(out, "{pad} {blue}|{reset}");
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}help{reset}: {help}");
        }
        for note in self.all_notes() {
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}note{reset}: {note}");
        }
        out
    }

    /// One line, as `cargo --message-format short` prints it:
    /// `src/main.rs:7:13: warning[mp::spawn-in-loop]: message`.
    pub fn render_short(&self) -> String {
        format!(
            "{}:{}:{}: {}[{}]: {}",
            self.file,
            self.span.line,
            self.span.column,
            self.rustc_level(),
            self.code(),
            self.message
        )
    }

    /// One object of rustc's JSON diagnostic schema (help and notes are its `children`).
    pub fn to_json(&self, source: &str) -> Value {
        let line = source
            .lines()
            .nth(self.span.line.saturating_sub(1))
            .unwrap_or("");
        let child = |level: &str, message: &str| {
            json!({"message": message, "code": null, "level": level, "spans": [],
                   "children": [], "rendered": null})
        };
        let mut children: Vec<Value> = self.help.iter().map(|h| child("help", h)).collect();
        children.extend(self.all_notes().iter().map(|n| child("note", n)));
        json!({
            "$message_type": "diagnostic",
            "message": self.message,
            "code": {"code": self.code(), "explanation": null},
            "level": self.rustc_level(),
            "spans": [{
                "file_name": self.file,
                "byte_start": self.span.bytes.0,
                "byte_end": self.span.bytes.1,
                "line_start": self.span.line,
                "line_end": self.span.end_line,
                "column_start": self.span.column,
                "column_end": self.span.end_column,
                "is_primary": true,
                "text": [{"text": line, "highlight_start": self.span.column,
                          "highlight_end": if self.span.end_line == self.span.line {
                              self.span.end_column } else { line.chars().count() + 1 }}],
                "label": self.label,
                "suggested_replacement": null,
                "suggestion_applicability": null,
                "expansion": null,
            }],
            "children": children,
            "rendered": self.render(source, false),
        })
    }
}

/// The columns a character takes in a terminal, as rustc counts them (a tab is 4).
fn display_width(c: char) -> usize {
    if c == '\t' { 4 } else { c.width().unwrap_or(0) }
}

/// The target a finding belongs to, as cargo's JSON messages name it.
#[derive(Debug, Clone, Default)]
pub struct TargetInfo {
    /// The package id (`cargo metadata`'s).
    pub package_id: String,
    /// The package's `Cargo.toml`.
    pub manifest_path: String,
    /// cargo's target object (`kind`, `crate_types`, `name`, `src_path`, `edition`, ...).
    pub target: Value,
}

/// One line of cargo's JSON stream: `{"reason":"compiler-message", .., "message": {..}}`.
pub fn compiler_message(d: &Diagnostic, source: &str, target: &TargetInfo) -> Value {
    json!({
        "reason": "compiler-message",
        "package_id": target.package_id,
        "manifest_path": target.manifest_path,
        "target": target.target,
        "message": d.to_json(source),
    })
}

/// The line that ends cargo's JSON stream.
pub fn build_finished(success: bool) -> Value {
    json!({"reason": "build-finished", "success": success})
}

fn sarif_level(level: Level) -> &'static str {
    match level {
        Level::Allow => "none",
        Level::Warn => "warning",
        Level::Deny => "error",
    }
}

/// Where a lint is documented: its section of `docs/LINTS.md` in the repository.
pub fn help_uri(anchor: &str) -> String {
    format!(
        "{}/blob/main/docs/LINTS.md#{anchor}",
        env!("CARGO_PKG_REPOSITORY")
    )
}

/// Percent-encodes a relative path for a URI (RFC 3986: unreserved characters and `/` stay).
pub fn percent_encode(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            b'\\' => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// One SARIF 2.1.0 log holding every finding, with every lint as a rule (and the two
/// diagnostics that are not lints: a file that does not parse, an unknown lint name).
/// `root` is the workspace root, `%SRCROOT%` of the artifact locations.
pub fn sarif(diagnostics: &[Diagnostic], root: Option<&std::path::Path>) -> Value {
    let mut rules: Vec<Value> = LINTS
        .iter()
        .map(|lint| {
            json!({
                "id": format!("mp::{}", lint.name),
                "name": lint.name,
                "shortDescription": {"text": lint.summary},
                "fullDescription": {"text": lint.summary},
                "help": {"text": lint.doc.trim(), "markdown": lint.doc.trim()},
                "helpUri": help_uri(lint.name),
                "defaultConfiguration": {"level": sarif_level(lint.default)},
            })
        })
        .collect();
    rules.push(json!({
        "id": SYNTAX_ERROR,
        "name": SYNTAX_ERROR,
        "shortDescription": {"text": "a source file cannot be read or parsed, so it was not checked"},
        "fullDescription": {"text": "a source file cannot be read or parsed, so it was not checked"},
        "helpUri": help_uri("files-that-are-read"),
        "defaultConfiguration": {"level": "error"},
    }));
    rules.push(json!({
        "id": UNKNOWN_LINT,
        "name": "unknown-lint",
        "shortDescription": {"text": "`#[mp::allow(..)]` names a lint that does not exist"},
        "fullDescription": {"text": "`#[mp::allow(..)]` names a lint that does not exist; the attribute macro refuses it too"},
        "helpUri": help_uri("suppressing-a-finding"),
        "defaultConfiguration": {"level": "error"},
    }));
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let code = d.code();
            let rule_index = rules.iter().position(|r| r["id"] == code.as_str());
            let mut text = d.message.clone();
            if let Some(help) = &d.help {
                text.push_str(&format!(" (help: {help})"));
            }
            let mut result = json!({
                "ruleId": code,
                "level": sarif_level(d.level),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": percent_encode(&d.file), "uriBaseId": "%SRCROOT%"},
                        "region": {
                            "startLine": d.span.line,
                            "startColumn": d.span.column,
                            "endLine": d.span.end_line,
                            "endColumn": d.span.end_column,
                        },
                    },
                }],
            });
            if let Some(i) = rule_index {
                result["ruleIndex"] = json!(i);
            }
            result
        })
        .collect();
    let mut run = json!({
        "tool": {"driver": {
            "name": "cargo-mp",
            "version": env!("CARGO_PKG_VERSION"),
            "informationUri": env!("CARGO_PKG_REPOSITORY"),
            "rules": rules,
        }},
        "columnKind": "unicodeCodePoints",
        "results": results,
    });
    if let Some(root) = root {
        let mut uri = format!("file://{}", percent_encode(&root.display().to_string()));
        if !uri.ends_with('/') {
            uri.push('/');
        }
        run["originalUriBaseIds"] = json!({"%SRCROOT%": {"uri": uri}});
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}
