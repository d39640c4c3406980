//! `lint-corpus`: `cargo mp check --all-packages` on the published sources of popular crates
//! that spawn processes or threads or define `Pool`/`Manager`/`Process`/`Executor` types of
//! their own. A temporary crate depends on them; `cargo metadata` downloads their sources; each
//! source tree is checked. None of them depends on mp, so every finding is a false alarm to
//! explain. Downloads: not part of `.ci/run`.

use std::time::Instant;

/// The corpus: `(crate, version requirement)`.
const CRATES: &[(&str, &str)] = &[
    ("threadpool", "1"),
    ("rayon", "1"),
    ("rayon-core", "1"),
    ("tokio", "1"),
    ("async-executor", "1"),
    ("async-std", "1"),
    ("smol", "2"),
    ("futures-executor", "0.3"),
    ("r2d2", "0.8"),
    ("deadpool", "0.12"),
    ("bb8", "0.9"),
    ("mobc", "0.8"),
    ("object-pool", "0.6"),
    ("crossbeam", "0.8"),
    ("nix", "0.29"),
    ("sysinfo", "0.33"),
    ("procfs", "0.17"),
    ("duct", "0.13"),
    ("subprocess", "0.2"),
    ("command-group", "5"),
    ("process-wrap", "8"),
    ("shared_child", "1"),
    ("wait-timeout", "0.2"),
    ("scheduled-thread-pool", "0.2"),
    ("cargo-util", "0.2"),
];

pub(crate) fn run() -> mp::Result<()> {
    let fail = |e: String| mp::Error::InvalidArgument(e);
    let dir = std::env::temp_dir().join(format!("mp-lint-corpus-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src")).map_err(|e| fail(e.to_string()))?;
    let mut manifest = String::from(
        "[package]\nname = \"corpus\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\n",
    );
    for (name, version) in CRATES {
        manifest.push_str(&format!("{name} = \"{version}\"\n"));
    }
    std::fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| fail(e.to_string()))?;
    std::fs::write(dir.join("src/lib.rs"), "").map_err(|e| fail(e.to_string()))?;
    // `cargo metadata` (with dependencies) downloads every source.
    let meta = cargo_metadata::MetadataCommand::new()
        .manifest_path(dir.join("Cargo.toml"))
        .exec()
        .map_err(|e| fail(format!("cannot fetch the corpus: {e}")))?;
    println!(
        "{:<24} {:>6} {:>13} {:>9} {:>9}",
        "crate", "files", "not followed", "findings", "time"
    );
    let (mut files, mut not_followed, mut findings) = (0, 0, 0);
    let all = Instant::now();
    let mut notes = Vec::new();
    for (name, _) in CRATES {
        let Some(package) = meta.packages.iter().find(|p| p.name.as_str() == *name) else {
            println!("{name:<24} (not resolved)");
            continue;
        };
        let start = Instant::now();
        let selection = cargo_mp::check::select(
            &cargo_mp::check::Select {
                manifest: Some(package.manifest_path.as_std_path()),
                packages: &[],
                workspace: false,
                all_packages: true,
            },
            &[],
        );
        let selection = match selection {
            Ok(s) => s,
            Err(e) => {
                println!("{name:<24} error: {e}");
                continue;
            }
        };
        let report = cargo_mp::check::check(&selection.root, &selection.targets);
        let took = start.elapsed();
        println!(
            "{:<24} {:>6} {:>13} {:>9} {:>8.0?}",
            format!("{name} {}", package.version),
            report.files,
            report.not_followed.len(),
            report.findings.len(),
            took
        );
        files += report.files;
        not_followed += report.not_followed.len();
        findings += report.findings.len();
        for (d, _) in &report.findings {
            notes.push(format!(
                "{name}: {}:{}:{}: {}: {}",
                d.file,
                d.span.line,
                d.span.column,
                d.code(),
                d.message
            ));
        }
        for n in &report.not_followed {
            notes.push(format!("{name}: not followed: {n}"));
        }
    }
    println!(
        "{:<24} {files:>6} {not_followed:>13} {findings:>9} {:>8.0?}",
        format!("total ({} crates)", CRATES.len()),
        all.elapsed()
    );
    for n in notes {
        println!("  {n}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
