//! `cargo mp check`: finds the workspace's packages and targets with `cargo metadata`, loads
//! every target's sources, runs the lints at their configured levels and collects findings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diagnostic::Diagnostic;
use crate::lints::{self, Context, LINTS, Level};
use crate::source::{self, SourceFile};

/// Levels per lint, from defaults, `[workspace.metadata.mp.lints]`,
/// `[package.metadata.mp.lints]` and command-line flags, in that order.
#[derive(Debug, Clone)]
pub struct Levels(BTreeMap<&'static str, Level>);

impl Default for Levels {
    fn default() -> Levels {
        Levels(LINTS.iter().map(|l| (l.name, l.default)).collect())
    }
}

impl Levels {
    /// The level of `lint`.
    pub fn get(&self, lint: &str) -> Level {
        self.0.get(lint).copied().unwrap_or(Level::Allow)
    }

    /// Sets `name` (a lint, or `warnings`: every lint now at warn) to `level`.
    pub fn set(&mut self, name: &str, level: Level) -> Result<(), String> {
        if name == "warnings" {
            for l in self.0.values_mut() {
                if *l == Level::Warn {
                    *l = level;
                }
            }
            return Ok(());
        }
        let lint = lints::find(name).ok_or_else(|| unknown_lint(name))?;
        self.0.insert(lint.name, level);
        Ok(())
    }

    /// Applies a `lints` table from a manifest's `metadata.mp` (`name = "level"`).
    pub fn apply_table(&mut self, table: &serde_json::Value, origin: &str) -> Result<(), String> {
        let Some(entries) = table.get("mp").and_then(|mp| mp.get("lints")) else {
            return Ok(());
        };
        let entries = entries
            .as_object()
            .ok_or_else(|| format!("{origin}: `metadata.mp.lints` must be a table"))?;
        for (name, level) in entries {
            let level = level.as_str().and_then(Level::parse).ok_or_else(|| {
                format!("{origin}: the level of `{name}` must be \"allow\", \"warn\" or \"deny\"")
            })?;
            self.set(name, level)
                .map_err(|e| format!("{origin}: {e}"))?;
        }
        Ok(())
    }
}

fn unknown_lint(name: &str) -> String {
    let known: Vec<&str> = LINTS.iter().map(|l| l.name).collect();
    format!("unknown lint `{name}`; the lints are: {}", known.join(", "))
}

/// One target to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its root source file.
    pub root: PathBuf,
    /// A binary or an example (not a library or a test).
    pub is_program: bool,
    /// The levels in force for its package.
    pub levels: Levels,
}

/// What a check found.
pub struct Report {
    /// Findings, sorted by file and position, each with its file's text.
    pub findings: Vec<(Diagnostic, String)>,
    /// Files checked.
    pub files: usize,
}

impl Report {
    /// Whether a file could not be read or parsed.
    pub fn has_syntax_errors(&self) -> bool {
        self.findings.iter().any(|(d, _)| d.lint.is_none())
    }

    /// Whether a deny-level lint fired.
    pub fn has_denied(&self) -> bool {
        self.findings
            .iter()
            .any(|(d, _)| d.lint.is_some() && d.level == Level::Deny)
    }
}

/// The targets of the workspace at `manifest` (or of the listed `packages`), with their levels
/// after `flags` (applied last, in order).
pub fn targets(
    manifest: Option<&Path>,
    packages: &[String],
    flags: &[(Level, String)],
) -> Result<(PathBuf, Vec<Target>), String> {
    let mut cmd = cargo_metadata::MetadataCommand::new();
    cmd.no_deps();
    if let Some(m) = manifest {
        cmd.manifest_path(m);
    }
    let meta = cmd
        .exec()
        .map_err(|e| format!("cannot read the workspace: {e}"))?;
    let root = meta.workspace_root.clone().into_std_path_buf();
    let mut base = Levels::default();
    base.apply_table(&meta.workspace_metadata, "[workspace.metadata]")?;
    let members: BTreeSet<_> = meta.workspace_members.iter().collect();
    for name in packages {
        if !meta
            .packages
            .iter()
            .any(|p| &p.name == name && members.contains(&p.id))
        {
            return Err(format!("no package `{name}` in this workspace"));
        }
    }
    let mut out = Vec::new();
    for package in meta.packages.iter().filter(|p| members.contains(&p.id)) {
        if !packages.is_empty() && !packages.contains(&package.name) {
            continue;
        }
        let mut levels = base.clone();
        levels.apply_table(&package.metadata, &format!("package `{}`", package.name))?;
        for (level, name) in flags {
            levels.set(name, *level)?;
        }
        for target in &package.targets {
            let kinds: Vec<String> = target.kind.iter().map(|k| k.to_string()).collect();
            if kinds.iter().any(|k| k == "custom-build") {
                continue;
            }
            out.push(Target {
                root: target.src_path.clone().into_std_path_buf(),
                is_program: kinds.iter().any(|k| k == "bin" || k == "example"),
                levels: levels.clone(),
            });
        }
    }
    Ok((root, out))
}

/// Checks `targets`, showing paths relative to `workspace`.
pub fn check(workspace: &Path, targets: &[Target]) -> Report {
    let mut findings: Vec<(Diagnostic, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut files_checked = BTreeSet::new();
    for target in targets {
        let (files, errors) = source::load_target(&target.root, workspace);
        for (e, text) in errors {
            if seen.insert((e.file.clone(), e.span, None)) {
                findings.push((e, text));
            }
        }
        for (diagnostic, text) in check_files(target.is_program, &files, &target.levels) {
            if seen.insert((diagnostic.file.clone(), diagnostic.span, diagnostic.lint)) {
                findings.push((diagnostic, text));
            }
        }
        files_checked.extend(files.iter().map(|f| f.path.clone()));
    }
    findings.sort_by(|a, b| (&a.0.file, a.0.span).cmp(&(&b.0.file, b.0.span)));
    Report {
        findings,
        files: files_checked.len(),
    }
}

/// Runs every lint not at `allow` over the files of one target.
pub fn check_files(
    is_program: bool,
    files: &[SourceFile],
    levels: &Levels,
) -> Vec<(Diagnostic, String)> {
    let cx = Context::new(is_program, files);
    let mut out = Vec::new();
    for lint in LINTS {
        let level = levels.get(lint.name);
        if level == Level::Allow {
            continue;
        }
        for file in files {
            for mut d in (lint.check)(&cx, file) {
                if file.is_allowed(lint.name, d.span.line) {
                    continue;
                }
                d.level = level;
                out.push((d, file.text.clone()));
            }
        }
    }
    out
}
