//! `cargo mp check`: finds the packages and targets to check with `cargo metadata` (as cargo
//! selects them, and only packages that depend on `mp`), loads every target's sources, runs the
//! lints at their configured levels and collects findings. Targets and files are checked in
//! parallel (rayon); each file is parsed once, on the thread that lints it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::diagnostic::{Diagnostic, Kind, Pending, TargetInfo};
use crate::lints::{self, Context, LINTS, Level};
use crate::names::Crate;
use crate::source::{self, NotFollowed, SourceFile};
use crate::syntax::Functions;

/// Levels per lint, from defaults, `[workspace.metadata.mp.lints]`,
/// `[package.metadata.mp.lints]` and command-line flags, in that order.
#[derive(Debug, Clone)]
pub struct Levels(BTreeMap<&'static str, Level>);

impl Default for Levels {
    fn default() -> Levels {
        Levels(LINTS.iter().map(|l| (l.name, l.default)).collect())
    }
}

/// The lints whose level is lowered in test code by default (`tests/`, `benches/`,
/// `#[cfg(test)]`), and to what.
pub const TEST_DEFAULTS: &[(&str, Level)] = &[("hardcoded-pool-size", Level::Allow)];

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
        self.apply_named(table, "lints", origin)
    }

    /// Applies the table `metadata.mp.<key>`.
    fn apply_named(
        &mut self,
        table: &serde_json::Value,
        key: &str,
        origin: &str,
    ) -> Result<(), String> {
        let Some(entries) = table.get("mp").and_then(|mp| mp.get(key)) else {
            return Ok(());
        };
        let entries = entries
            .as_object()
            .ok_or_else(|| format!("{origin}: `metadata.mp.{key}` must be a table"))?;
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
    /// A test or a bench target: all of it is test code.
    pub is_test: bool,
    /// The levels in force for its package.
    pub levels: Levels,
    /// The levels in force in its test code.
    pub test_levels: Levels,
    /// The package's directory (files under its `tests/` and `benches/` are test code).
    pub package_dir: PathBuf,
    /// How the package calls mp.
    pub krate: Crate,
    /// How cargo's JSON messages name the target.
    pub info: TargetInfo,
}

impl Target {
    /// A target with default levels, rooted at `root` (for tests and tools).
    pub fn new(root: PathBuf, is_program: bool) -> Target {
        let levels = Levels::default();
        let mut test_levels = levels.clone();
        for (lint, level) in TEST_DEFAULTS {
            let _ = test_levels.set(lint, *level);
        }
        Target {
            package_dir: root.parent().unwrap_or(Path::new(".")).to_path_buf(),
            root,
            is_program,
            is_test: false,
            levels,
            test_levels,
            krate: Crate::default(),
            info: TargetInfo::default(),
        }
    }
}

/// The targets to check and what was left out.
pub struct Selection {
    /// The workspace root.
    pub root: PathBuf,
    /// The targets.
    pub targets: Vec<Target>,
    /// Packages left out because they do not depend on mp.
    pub skipped: Vec<String>,
}

/// What a check found.
#[derive(Default)]
pub struct Report {
    /// Findings, sorted by file and position, each with its file's text and its target (an
    /// index into the checked targets).
    pub findings: Vec<(Diagnostic, String)>,
    /// The target of each finding (same order as `findings`).
    pub finding_targets: Vec<usize>,
    /// Files checked.
    pub files: usize,
    /// Module declarations not followed.
    pub not_followed: Vec<NotFollowed>,
}

impl Report {
    /// Whether a file could not be read or parsed.
    pub fn has_syntax_errors(&self) -> bool {
        self.findings.iter().any(|(d, _)| d.kind == Kind::Syntax)
    }

    /// Whether a deny-level lint fired (or an `#[mp::allow]` names an unknown lint).
    pub fn has_denied(&self) -> bool {
        self.findings
            .iter()
            .any(|(d, _)| d.kind != Kind::Syntax && d.level == Level::Deny)
    }
}

/// What to check, as cargo selects packages.
#[derive(Debug, Default, Clone)]
pub struct Select<'a> {
    /// `--manifest-path`.
    pub manifest: Option<&'a Path>,
    /// `-p` (repeatable).
    pub packages: &'a [String],
    /// `--workspace`: every member.
    pub workspace: bool,
    /// `--all-packages`: also packages that do not depend on mp.
    pub all_packages: bool,
}

/// The targets of the workspace at `manifest` (or of the listed `packages`), with their levels
/// after `flags` (applied last, in order). Every member is selected; see [`select`] for cargo's
/// selection and the packages that use mp.
pub fn targets(
    manifest: Option<&Path>,
    packages: &[String],
    flags: &[(Level, String)],
) -> Result<(PathBuf, Vec<Target>), String> {
    let s = select(
        &Select {
            manifest,
            packages,
            workspace: true,
            all_packages: true,
        },
        flags,
    )?;
    Ok((s.root, s.targets))
}

/// The `Cargo.toml` cargo would use: `manifest`, or the nearest one from the current directory up.
fn manifest_in_use(manifest: Option<&Path>) -> Option<PathBuf> {
    if let Some(m) = manifest {
        return std::fs::canonicalize(m).ok();
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join("Cargo.toml");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// The targets to check, selected as cargo selects packages (`-p`, `--workspace`, the
/// `default-members` of a workspace root, the one member whose manifest is given), without
/// the packages that do not depend on mp (unless `all_packages`).
pub fn select(select: &Select<'_>, flags: &[(Level, String)]) -> Result<Selection, String> {
    let mut cmd = cargo_metadata::MetadataCommand::new();
    cmd.no_deps();
    if let Some(m) = select.manifest {
        cmd.manifest_path(m);
    }
    let meta = cmd
        .exec()
        .map_err(|e| format!("cannot read the workspace: {e}"))?;
    let root = meta.workspace_root.clone().into_std_path_buf();
    let mut base = Levels::default();
    base.apply_table(&meta.workspace_metadata, "[workspace.metadata]")?;
    let mut test_base = base.clone();
    for (lint, level) in TEST_DEFAULTS {
        test_base.set(lint, *level)?;
    }
    test_base.apply_named(
        &meta.workspace_metadata,
        "test-lints",
        "[workspace.metadata]",
    )?;
    let members: BTreeSet<_> = meta.workspace_members.iter().collect();
    for name in select.packages {
        if !meta
            .packages
            .iter()
            .any(|p| &p.name == name && members.contains(&p.id))
        {
            return Err(format!("no package `{name}` in this workspace"));
        }
    }
    // Which members cargo would build.
    let manifest = manifest_in_use(select.manifest);
    let root_manifest = std::fs::canonicalize(root.join("Cargo.toml")).ok();
    let chosen: HashSet<&cargo_metadata::PackageId> = if !select.packages.is_empty() {
        meta.packages
            .iter()
            .filter(|p| select.packages.contains(&p.name))
            .map(|p| &p.id)
            .collect()
    } else if select.workspace {
        members.iter().copied().collect()
    } else if manifest.is_some() && manifest != root_manifest {
        // The manifest of one member: only that member.
        meta.packages
            .iter()
            .filter(|p| std::fs::canonicalize(&p.manifest_path).ok() == manifest)
            .map(|p| &p.id)
            .collect()
    } else if meta.workspace_default_members.is_available() {
        meta.workspace_default_members.iter().collect()
    } else {
        members.iter().copied().collect()
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for package in meta.packages.iter().filter(|p| members.contains(&p.id)) {
        if !chosen.contains(&package.id) {
            continue;
        }
        let mp_names: Vec<String> = package
            .dependencies
            .iter()
            .filter(|d| d.name == "mp")
            .map(|d| {
                d.rename
                    .clone()
                    .unwrap_or_else(|| "mp".to_owned())
                    .replace('-', "_")
            })
            .collect();
        let is_mp = package.name == "mp";
        if mp_names.is_empty() && !select.all_packages {
            skipped.push(package.name.to_string());
            continue;
        }
        let krate = Crate {
            mp_names: if mp_names.is_empty() {
                vec!["mp".to_owned()]
            } else {
                mp_names
            },
            is_mp,
        };
        let origin = format!("package `{}`", package.name);
        let mut levels = base.clone();
        levels.apply_table(&package.metadata, &origin)?;
        let mut test_levels = test_base.clone();
        test_levels.apply_table(&package.metadata, &origin)?;
        for (lint, level) in TEST_DEFAULTS {
            // A package's own `lints` table does not undo the test default...
            if levels.get(lint) != Level::Allow {
                test_levels.set(lint, *level)?;
            }
        }
        // ...but its `test-lints` table does.
        test_levels.apply_named(&package.metadata, "test-lints", &origin)?;
        for (level, name) in flags {
            levels.set(name, *level)?;
            test_levels.set(name, *level)?;
        }
        let package_dir = package
            .manifest_path
            .parent()
            .map(|p| p.as_std_path().to_path_buf())
            .unwrap_or_default();
        for target in &package.targets {
            let kinds: Vec<String> = target.kind.iter().map(|k| k.to_string()).collect();
            if kinds.iter().any(|k| k == "custom-build") {
                continue;
            }
            out.push(Target {
                root: target.src_path.clone().into_std_path_buf(),
                is_program: kinds.iter().any(|k| k == "bin" || k == "example"),
                is_test: kinds.iter().any(|k| k == "test" || k == "bench"),
                levels: levels.clone(),
                test_levels: test_levels.clone(),
                package_dir: package_dir.clone(),
                krate: krate.clone(),
                info: TargetInfo {
                    package_id: package.id.repr.clone(),
                    manifest_path: package.manifest_path.to_string(),
                    target: serde_json::to_value(target).unwrap_or_default(),
                },
            });
        }
    }
    Ok(Selection {
        root,
        targets: out,
        skipped,
    })
}

/// What one file gave: its findings (some pending on the target), and its facts.
struct FileResult {
    display: String,
    text: String,
    findings: Vec<Diagnostic>,
    functions: Functions,
    uses_processes: bool,
}

/// Checks `targets`, showing paths relative to `workspace`.
pub fn check(workspace: &Path, targets: &[Target]) -> Report {
    let per_target: Vec<_> = targets
        .par_iter()
        .map(|target| check_target(workspace, target))
        .collect();
    let mut report = Report::default();
    let mut seen = HashSet::new();
    let mut files = BTreeSet::new();
    let mut all: Vec<(Diagnostic, String, usize)> = Vec::new();
    for (index, (found, checked, not_followed)) in per_target.into_iter().enumerate() {
        for (d, text) in found {
            if seen.insert((d.file.clone(), d.span, d.lint, d.kind)) {
                all.push((d, text, index));
            }
        }
        files.extend(checked);
        report.not_followed.extend(not_followed);
    }
    all.sort_by(|a, b| (&a.0.file, a.0.span).cmp(&(&b.0.file, b.0.span)));
    report.not_followed.sort();
    report.not_followed.dedup();
    report.files = files.len();
    for (d, text, index) in all {
        report.findings.push((d, text));
        report.finding_targets.push(index);
    }
    report
}

type TargetResult = (Vec<(Diagnostic, String)>, Vec<PathBuf>, Vec<NotFollowed>);

fn check_target(workspace: &Path, target: &Target) -> TargetResult {
    let each = |file: &SourceFile, is_root: bool| -> FileResult {
        let test_file = target.is_test || is_test_path(&file.path, &target.package_dir);
        FileResult {
            display: file.display.clone(),
            text: file.text.clone(),
            findings: lint_file(target, file, is_root, test_file),
            functions: Functions::of(file),
            uses_processes: lints::missing_main_guard_uses_processes(file),
        }
    };
    let (results, errors, not_followed) =
        source::load_parallel(&target.root, workspace, &target.krate, &each);
    let mut functions = Functions::default();
    let mut uses_processes = false;
    for (_, r) in &results {
        functions.extend(r.functions.clone());
        uses_processes |= r.uses_processes;
    }
    let mut out = errors;
    let mut paths = Vec::new();
    for (path, r) in results {
        paths.push(path);
        for mut d in r.findings {
            match d.pending.take() {
                None => {}
                Some(Pending::StartsProcesses) if uses_processes => {}
                Some(Pending::Unregistered(name)) => {
                    match lints::unregistered_why(&functions, &name) {
                        Some(why) => d.message = why,
                        None => continue,
                    }
                }
                Some(_) => continue,
            }
            out.push((d, r.text.clone()));
        }
        let _ = r.display;
    }
    (out, paths, not_followed)
}

/// Whether `path` is under the package's `tests/` or `benches/` directory.
fn is_test_path(path: &Path, package_dir: &Path) -> bool {
    path.strip_prefix(package_dir)
        .ok()
        .and_then(|rel| rel.components().next())
        .is_some_and(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
}

/// Runs every lint not at `allow` over one file of `target`; findings that depend on the whole
/// target come back with their pending condition.
fn lint_file(
    target: &Target,
    file: &SourceFile,
    is_root: bool,
    test_file: bool,
) -> Vec<Diagnostic> {
    let cx = Context::new(target.is_program, is_root, file);
    let mut out = Vec::new();
    for (name, span) in &file.unknown_allows {
        out.push(unknown_allow(file, name, *span));
    }
    for lint in LINTS {
        let level = target.levels.get(lint.name);
        let test_level = target.test_levels.get(lint.name);
        if level == Level::Allow && test_level == Level::Allow {
            continue;
        }
        for mut d in (lint.check)(&cx, file) {
            if file.is_allowed(lint.name, d.span.line) {
                continue;
            }
            d.level = if test_file || file.is_test_code(d.span.line) {
                test_level
            } else {
                level
            };
            if d.level != Level::Allow {
                out.push(d);
            }
        }
    }
    out
}

fn unknown_allow(file: &SourceFile, name: &str, span: crate::diagnostic::Span) -> Diagnostic {
    let known: Vec<&str> = LINTS.iter().map(|l| l.name).collect();
    Diagnostic {
        kind: Kind::UnknownLint,
        lint: None,
        level: Level::Deny,
        message: format!("unknown lint `{name}` in `#[mp::allow(..)]`"),
        file: file.display.clone(),
        span,
        label: "not a lint of `cargo mp check`".to_owned(),
        help: Some(format!("the lints are: {}", known.join(", "))),
        notes: Vec::new(),
        pending: None,
    }
}

/// Runs every lint not at `allow` over the files of one target (already loaded), the crate
/// root first, resolving the findings that depend on the whole target.
pub fn check_files(
    is_program: bool,
    files: &[SourceFile],
    levels: &Levels,
) -> Vec<(Diagnostic, String)> {
    let mut target = Target::new(
        files.first().map(|f| f.path.clone()).unwrap_or_default(),
        is_program,
    );
    target.levels = levels.clone();
    target.test_levels = levels.clone();
    for (lint, level) in TEST_DEFAULTS {
        let _ = target.test_levels.set(lint, *level);
    }
    let mut functions = Functions::default();
    let mut uses_processes = false;
    let mut found = Vec::new();
    for (i, file) in files.iter().enumerate() {
        functions.extend(Functions::of(file));
        uses_processes |= lints::missing_main_guard_uses_processes(file);
        for d in lint_file(&target, file, i == 0, false) {
            found.push((d, file.text.clone()));
        }
    }
    found
        .into_iter()
        .filter_map(|(mut d, text)| {
            match d.pending.take() {
                None => {}
                Some(Pending::StartsProcesses) if uses_processes => {}
                Some(Pending::Unregistered(name)) => {
                    d.message = lints::unregistered_why(&functions, &name)?;
                }
                Some(_) => return None,
            }
            Some((d, text))
        })
        .collect()
}
