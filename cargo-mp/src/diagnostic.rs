//! A finding and its three renderings: rustc-like text, rustc's JSON diagnostic schema (one
//! object per line, as `cargo --message-format json` prints them, for editors and review
//! bots), and one SARIF 2.1.0 log (for code-scanning services).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::lints::{LINTS, Level};
use crate::source::SourceFile;

/// Where a finding is: 1-based lines, 1-based character columns (end exclusive), bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// One finding of one lint (or a file that does not parse: `lint` is `None`).
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The lint, `None` for a syntax error.
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
            lint: Some(lint),
            level: Level::Warn,
            message: message.into(),
            file: file.display.clone(),
            span: Span::of(node),
            label: label.into(),
            help: None,
        }
    }

    /// Adds how to fix it.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    fn rustc_level(&self) -> &'static str {
        match self.level {
            Level::Deny => "error",
            _ => "warning",
        }
    }

    fn code(&self) -> String {
        match self.lint {
            Some(name) => format!("mp::{name}"),
            None => "syntax-error".to_owned(),
        }
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
        let line = source.lines().nth(self.span.line - 1).unwrap_or("");
        let width = if self.span.end_line == self.span.line {
            self.span.end_column.saturating_sub(self.span.column).max(1)
        } else {
            line.chars()
                .count()
                .saturating_sub(self.span.column - 1)
                .max(1)
        };
        let _ = writeln!(out, "{pad} {blue}|{reset}");
        let _ = writeln!(out, "{blue}{number} |{reset} {line}");
        let _ = writeln!(
            out,
            "{pad} {blue}|{reset} {}{level_color}{} {}{reset}",
            " ".repeat(self.span.column - 1),
            "^".repeat(width),
            self.label
        );
        let _ = writeln!(out, "{pad} {blue}|{reset}");
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} {blue}={reset} {bold}help{reset}: {help}");
        }
        if let Some(name) = self.lint {
            let _ = writeln!(
                out,
                "{pad} {blue}={reset} {bold}note{reset}: `mp::{name}` is {}; see `cargo mp lints`",
                self.level.name()
            );
        }
        out
    }

    /// One object of rustc's JSON diagnostic schema.
    pub fn to_json(&self, source: &str) -> Value {
        let line = source.lines().nth(self.span.line - 1).unwrap_or("");
        let children: Vec<Value> = self
            .help
            .iter()
            .map(|h| {
                json!({"message": h, "code": null, "level": "help", "spans": [],
                       "children": [], "rendered": null})
            })
            .collect();
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

fn sarif_level(level: Level) -> &'static str {
    match level {
        Level::Allow => "none",
        Level::Warn => "warning",
        Level::Deny => "error",
    }
}

/// One SARIF 2.1.0 log holding every finding, with every lint as a rule.
pub fn sarif(diagnostics: &[Diagnostic]) -> Value {
    let rules: Vec<Value> = LINTS
        .iter()
        .map(|lint| {
            json!({
                "id": format!("mp::{}", lint.name),
                "name": lint.name,
                "shortDescription": {"text": lint.summary},
                "fullDescription": {"text": lint.summary},
                "help": {"text": lint.doc.trim(), "markdown": lint.doc.trim()},
                "defaultConfiguration": {"level": sarif_level(lint.default)},
            })
        })
        .collect();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let rule_index = d.lint.and_then(|n| LINTS.iter().position(|l| l.name == n));
            let mut text = d.message.clone();
            if let Some(help) = &d.help {
                text.push_str(&format!(" (help: {help})"));
            }
            let mut result = json!({
                "ruleId": d.code(),
                "level": sarif_level(d.level),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": d.file, "uriBaseId": "%SRCROOT%"},
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
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "cargo-mp",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
