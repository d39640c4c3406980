//! Snapshot tests of the lints: every fixture in `tests/fixtures/` is checked and its
//! rustc-style output compared with the `.stderr` file beside it; one fixture also as rustc
//! JSON and as SARIF. `MP_BLESS=1 cargo test -p cargo-mp` rewrites the snapshots.

use std::path::{Path, PathBuf};

use cargo_mp::check::{Levels, check_files};
use cargo_mp::diagnostic::{Diagnostic, sarif};
use cargo_mp::lints::{self, LINTS, Level};
use cargo_mp::source::SourceFile;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every lint on, `result-unwrap-in-worker` (allow by default) included.
fn levels() -> Levels {
    let mut levels = Levels::default();
    levels.set("result-unwrap-in-worker", Level::Warn).unwrap();
    levels
}

fn findings(name: &str) -> (Vec<(Diagnostic, String)>, String) {
    let path = fixtures().join(format!("{name}.rs"));
    let text = std::fs::read_to_string(&path).unwrap();
    let display = format!("fixtures/{name}.rs");
    match SourceFile::parse(path, display, text.clone()) {
        Err(e) => (vec![(*e, text.clone())], text),
        Ok(file) => (check_files(true, &[file], &levels()), text),
    }
}

fn snapshot(file: &Path, actual: &str) {
    if std::env::var_os("MP_BLESS").is_some() {
        std::fs::write(file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs (MP_BLESS=1 rewrites it); actual output:\n{actual}",
        file.display()
    );
}

#[test]
fn every_fixture_matches_its_snapshot() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "rs").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 8);
    for name in names {
        let (found, _) = findings(&name);
        let rendered: Vec<String> = found.iter().map(|(d, t)| d.render(t, false)).collect();
        snapshot(
            &fixtures().join(format!("{name}.stderr")),
            &rendered.join("\n"),
        );
    }
}

#[test]
fn every_lint_fires_on_some_fixture_and_clean_code_on_none() {
    let all = [
        "missing_guard",
        "lambda_to_pool",
        "process_per_item",
        "pools",
        "worker_exits",
        "join_before_drain",
        "threads_and_waits",
    ];
    let fired: Vec<&str> = all
        .iter()
        .flat_map(|n| findings(n).0)
        .filter_map(|(d, _)| d.lint)
        .collect();
    for lint in LINTS {
        assert!(
            fired.contains(&lint.name),
            "no fixture fires `{}`",
            lint.name
        );
    }
    assert!(findings("clean").0.is_empty());
    assert!(
        findings("suppressed").0.is_empty(),
        "#[mp::allow] suppresses"
    );
}

#[test]
fn seed_pitfalls_are_found_at_the_right_lines() {
    let at = |name: &str| -> Vec<(&'static str, usize, usize)> {
        findings(name)
            .0
            .iter()
            .map(|(d, _)| (d.lint.unwrap(), d.span.line, d.span.column))
            .collect()
    };
    assert_eq!(at("missing_guard"), [("missing-main-guard", 7, 4)]);
    assert_eq!(
        at("lambda_to_pool"),
        [
            ("unregistered-worker", 9, 32),
            ("unregistered-worker", 13, 29),
            ("unregistered-worker", 14, 32),
        ]
    );
    assert_eq!(at("process_per_item"), [("spawn-in-loop", 12, 27)]);
    assert_eq!(
        at("join_before_drain"),
        [("join-before-drain", 16, 9), ("join-before-drain", 21, 9)]
    );
}

#[test]
fn json_follows_rustcs_diagnostic_schema() {
    let (found, _) = findings("lambda_to_pool");
    let lines: Vec<serde_json::Value> = found.iter().map(|(d, t)| d.to_json(t)).collect();
    for v in &lines {
        assert_eq!(v["$message_type"], "diagnostic");
        assert_eq!(v["level"], "error");
        assert_eq!(v["code"]["code"], "mp::unregistered-worker");
        let span = &v["spans"][0];
        for key in [
            "file_name",
            "byte_start",
            "byte_end",
            "line_start",
            "line_end",
            "column_start",
            "column_end",
            "is_primary",
            "text",
            "label",
        ] {
            assert!(!span[key].is_null(), "span has `{key}`");
        }
        assert!(
            v["rendered"]
                .as_str()
                .unwrap()
                .starts_with("error[mp::unregistered-worker]")
        );
        // Byte offsets point at the text the columns point at.
        let text = std::fs::read_to_string(fixtures().join("lambda_to_pool.rs")).unwrap();
        let (a, b) = (
            span["byte_start"].as_u64().unwrap() as usize,
            span["byte_end"].as_u64().unwrap() as usize,
        );
        assert!(text[a..b].starts_with(['|', 'l', 'd']), "{}", &text[a..b]);
    }
    let jsonl: Vec<String> = lines.iter().map(|v| v.to_string()).collect();
    snapshot(
        &fixtures().join("lambda_to_pool.json"),
        &(jsonl.join("\n") + "\n"),
    );
}

#[test]
fn sarif_has_what_code_scanning_requires() {
    let mut found: Vec<Diagnostic> = findings("lambda_to_pool")
        .0
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    found.extend(findings("process_per_item").0.into_iter().map(|(d, _)| d));
    let log = sarif(&found, Some(Path::new("/checkouts/my repo")));
    assert_eq!(log["version"], "2.1.0");
    assert!(log["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &log["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "cargo-mp");
    let rules = driver["rules"].as_array().unwrap();
    // Every lint, and the two diagnostics that are not lints.
    assert_eq!(rules.len(), LINTS.len() + 2);
    assert_eq!(
        run["originalUriBaseIds"]["%SRCROOT%"]["uri"],
        "file:///checkouts/my%20repo/"
    );
    assert_eq!(run["columnKind"], "unicodeCodePoints");
    for rule in rules {
        let id = rule["id"].as_str().unwrap();
        assert!(id.starts_with("mp::") || id == "syntax-error", "{id}");
        assert!(rule["helpUri"].as_str().unwrap().contains("docs/LINTS.md#"));
        assert!(
            !rule["shortDescription"]["text"]
                .as_str()
                .unwrap()
                .is_empty()
        );
        assert!(
            ["none", "warning", "error"]
                .contains(&rule["defaultConfiguration"]["level"].as_str().unwrap())
        );
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(r["ruleId"], rules[i]["id"]);
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(
            loc["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .starts_with("fixtures/")
        );
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(loc["region"]["startColumn"].as_u64().unwrap() >= 1);
    }
    snapshot(
        &fixtures().join("two_pitfalls.sarif"),
        &(serde_json::to_string_pretty(&log).unwrap() + "\n"),
    );
}

#[test]
fn the_lints_page_is_generated_from_the_lints() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/LINTS.md");
    snapshot(&page, &lints::markdown());
    for lint in LINTS {
        for section in [
            "### What it does",
            "### Why is this bad",
            "### Example",
            "### Known limits",
        ] {
            assert!(
                lint.doc.contains(section),
                "`{}` has no `{section}`",
                lint.name
            );
        }
    }
}

#[test]
fn the_allow_attribute_knows_every_lint() {
    // `#[mp::allow]` (in mp-macros, which cannot depend on this crate) keeps its own list.
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../macros/src/allow.rs"),
    )
    .unwrap();
    let start = source.find("LINT_NAMES: &[&str] = &[").unwrap();
    let end = start + source[start..].find("];").unwrap();
    let listed: Vec<&str> = source[start..end]
        .lines()
        .skip(1)
        .map(|l| l.trim().trim_end_matches(',').trim_matches('"'))
        .collect();
    let lints: Vec<&str> = LINTS.iter().map(|l| l.name).collect();
    assert_eq!(listed, lints);
}

#[test]
fn look_alikes_are_quiet() {
    assert!(findings("names_foreign_types").0.is_empty());
}
