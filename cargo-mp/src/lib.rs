//! `cargo mp`: a linter for unsafe spawn patterns in programs that use `mp`, made for CI.
//!
//! Cargo runs an external subcommand as `cargo-mp mp <args>`; `cargo-mp <args>` works too.
//!
//! * `cargo mp check` lints the workspace's binaries, examples, libraries and tests, printing
//!   rustc-style diagnostics, rustc's JSON diagnostics (`--message-format json`) or a SARIF
//!   2.1.0 log (`--message-format sarif`). Exit codes: [`EXIT_OK`], [`EXIT_DENIED`],
//!   [`EXIT_USAGE`].
//! * `cargo mp run` builds a binary or example and runs it with every child's output prefixed
//!   with the child's name, ending with a summary (processes started and failed, peak resident
//!   memory, wall time); it exits with the program's exit code.
//! * `cargo mp workers` lists the workers registered in a binary, read from the binary itself.
//! * `cargo mp lints` lists the lints (`--markdown`: the lints page, `docs/LINTS.md`).
//!
//! The lints and their documentation live in `src/lints/`, one file each.

pub mod check;
pub mod diagnostic;
mod flow;
pub mod lints;
pub mod mpirun;
pub mod names;
pub mod rank_output;
pub mod run;
pub mod source;
mod syntax;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::lints::Level;

/// Nothing at deny level was found.
pub const EXIT_OK: i32 = 0;
/// A deny-level lint fired (with `-D warnings`: any lint).
pub const EXIT_DENIED: i32 = 1;
/// The command line, the configuration, or a source file could not be used.
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser)]
#[command(
    name = "cargo mp",
    bin_name = "cargo mp",
    version,
    about = "Run and check programs that use mp"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint the workspace for unsafe spawn patterns (exit 1 if a deny-level lint fires).
    Check(CheckArgs),
    /// Build and run a binary or example; children's output is prefixed with their names.
    Run {
        #[command(flatten)]
        build: run::BuildArgs,
        /// Do not prefix children's output with their names.
        #[arg(long)]
        no_prefix: bool,
        #[command(flatten)]
        mpi: mpirun::MpiArgs,
        /// Arguments for the program (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// List the workers registered in a binary or example (name, signature, definition).
    Workers {
        #[command(flatten)]
        build: run::BuildArgs,
    },
    /// List the lints, their default levels and what they find.
    Lints {
        /// Print the lints page (Markdown) instead.
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
    /// Check only this package (repeatable).
    #[arg(short, long = "package", value_name = "SPEC")]
    packages: Vec<String>,
    /// Check every workspace member (without it: cargo's selection, the `default-members` of a
    /// workspace root or the member whose manifest is used).
    #[arg(long)]
    workspace: bool,
    /// Also check packages that do not depend on mp (skipped by default).
    #[arg(long)]
    all_packages: bool,
    /// Output: human-readable text, one line per finding (`short`), cargo's JSON message
    /// stream (rustc diagnostics in `compiler-message` lines), or SARIF 2.1.0.
    #[arg(long, alias = "format", value_enum, default_value = "human")]
    message_format: Format,
    /// Allow a lint (repeatable; `warnings` for every warning).
    #[arg(short = 'A', long = "allow", value_name = "LINT")]
    allow: Vec<String>,
    /// Warn on a lint (repeatable).
    #[arg(short = 'W', long = "warn", value_name = "LINT")]
    warn: Vec<String>,
    /// Deny a lint (repeatable; `-D warnings` makes every warning fail the check).
    #[arg(short = 'D', long = "deny", value_name = "LINT")]
    deny: Vec<String>,
    /// Colours in human output.
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
    /// No summary line.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Short,
    Json,
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

/// Runs `cargo mp` with `args` (the program name first); returns the exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    // `cargo mp run --mpi` (unless `--no-recovery`) starts every rank through this wrapper.
    if args.get(1).is_some_and(|a| a == mpirun::RANK0_WRAPPER) {
        return mpirun::rank0_wrapper(&args[2..]);
    }
    // Cargo calls `cargo-mp mp check ...`.
    if args.get(1).is_some_and(|a| a == "mp") {
        args.remove(1);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    match cli.command {
        Command::Lints { markdown: true } => {
            print!("{}", lints::markdown());
            EXIT_OK
        }
        Command::Lints { markdown: false } => {
            for lint in lints::LINTS {
                println!(
                    "{:<26} {:<6} {}",
                    lint.name,
                    lint.default.name(),
                    lint.summary
                );
            }
            EXIT_OK
        }
        Command::Check(args) => run_check(args),
        Command::Run {
            build,
            no_prefix,
            mpi,
            args,
        } => match run::run(&build, &mpi, &args, !no_prefix) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
        },
        Command::Workers { build } => match run::workers(&build) {
            Ok(workers) if workers.is_empty() => {
                println!("no workers are registered in this binary");
                EXIT_OK
            }
            Ok(workers) => {
                let width = workers.iter().map(|w| w.name.len()).max().unwrap_or(0);
                for w in workers {
                    println!("{:<width$}  {}  ({})", w.name, w.signature, w.location);
                }
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
        },
    }
}

fn run_check(args: CheckArgs) -> i32 {
    // Flags apply in the order rustc applies them: allow, then warn, then deny.
    let flags: Vec<(Level, String)> = args
        .allow
        .iter()
        .map(|l| (Level::Allow, l.clone()))
        .chain(args.warn.iter().map(|l| (Level::Warn, l.clone())))
        .chain(args.deny.iter().map(|l| (Level::Deny, l.clone())))
        .collect();
    let selection = match check::select(
        &check::Select {
            manifest: args.manifest_path.as_deref(),
            packages: &args.packages,
            workspace: args.workspace,
            all_packages: args.all_packages,
        },
        &flags,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let report = check::check(&selection.root, &selection.targets);
    let code = if report.has_syntax_errors() {
        EXIT_USAGE
    } else if report.has_denied() {
        EXIT_DENIED
    } else {
        EXIT_OK
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.message_format {
        Format::Human | Format::Short => {
            let color = match args.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => std::io::stderr().is_terminal(),
            };
            for (d, text) in &report.findings {
                if matches!(args.message_format, Format::Short) {
                    eprintln!("{}", d.render_short());
                } else {
                    eprintln!("{}", d.render(text, color));
                }
            }
            if !args.quiet {
                eprintln!("{}", summary(&report, &selection.skipped));
            }
        }
        Format::Json => {
            for ((d, text), target) in report.findings.iter().zip(&report.finding_targets) {
                let info = &selection.targets[*target].info;
                let _ = writeln!(out, "{}", diagnostic::compiler_message(d, text, info));
            }
            let _ = writeln!(out, "{}", diagnostic::build_finished(code == EXIT_OK));
            if !args.quiet {
                eprintln!("{}", summary(&report, &selection.skipped));
            }
        }
        Format::Sarif => {
            let findings: Vec<_> = report.findings.iter().map(|(d, _)| d.clone()).collect();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&diagnostic::sarif(&findings, Some(&selection.root)))
                    .unwrap_or_default()
            );
        }
    }
    code
}

/// `1 warning`, `2 warnings`, `0 warnings`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn summary(report: &Report, skipped: &[String]) -> String {
    let count = |level: Level| {
        report
            .findings
            .iter()
            .filter(|(d, _)| d.kind == diagnostic::Kind::Lint && d.level == level)
            .count()
    };
    let of_kind = |kind| {
        report
            .findings
            .iter()
            .filter(|(d, _)| d.kind == kind)
            .count()
    };
    let mut s = format!(
        "cargo mp check: {}, {} denied, {}",
        plural(report.files, "file", "files"),
        count(Level::Deny),
        plural(count(Level::Warn), "warning", "warnings")
    );
    let syntax = of_kind(diagnostic::Kind::Syntax);
    if syntax > 0 {
        s.push_str(&format!(
            ", {} that {} not parse",
            plural(syntax, "file", "files"),
            if syntax == 1 { "does" } else { "do" }
        ));
    }
    let unknown = of_kind(diagnostic::Kind::UnknownLint);
    if unknown > 0 {
        s.push_str(&format!(
            ", {} in `#[mp::allow]`",
            plural(unknown, "unknown lint name", "unknown lint names")
        ));
    }
    if !skipped.is_empty() {
        s.push_str(&format!(
            "\n{} skipped: no mp dependency ({}; `--all-packages` checks them)",
            plural(skipped.len(), "package", "packages"),
            skipped.join(", ")
        ));
    }
    if !report.not_followed.is_empty() {
        let list: Vec<String> = report.not_followed.iter().map(|n| n.to_string()).collect();
        s.push_str(&format!(
            "\n{} not followed: {}",
            plural(list.len(), "module declaration", "module declarations"),
            list.join(", ")
        ));
    }
    s
}

use check::Report;

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(plural(0, "warning", "warnings"), "0 warnings");
        assert_eq!(plural(1, "warning", "warnings"), "1 warning");
        assert_eq!(plural(2, "file", "files"), "2 files");
        assert_eq!(plural(1, "file", "files"), "1 file");
    }
}
