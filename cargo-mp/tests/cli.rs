//! `cargo mp` as cargo runs it (`cargo-mp mp ...`) on small fixture crates: levels from
//! `[workspace.metadata.mp.lints]` and `[package.metadata.mp.lints]`, `-A/-W/-D` flags, exit
//! codes, JSON and SARIF on stdout, a module and an example target, a file that does not parse.

use std::path::Path;
use std::process::{Command, Output};

fn cargo_mp(fixture: &str, args: &[&str]) -> Output {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(fixture)
        .join("Cargo.toml");
    Command::new(env!("CARGO_BIN_EXE_cargo-mp"))
        .arg("mp")
        .arg("check")
        .arg("--manifest-path")
        .arg(manifest)
        .args(args)
        .output()
        .unwrap()
}

/// `(code, level, file, line)` of every diagnostic in cargo's JSON stream on stdout (which
/// ends with a `build-finished` line).
fn json(out: &Output) -> Vec<(String, String, String, u64)> {
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().expect("a build-finished line");
    assert_eq!(last["reason"], "build-finished");
    assert_eq!(last["success"], out.status.code() == Some(0));
    lines[..lines.len() - 1]
        .iter()
        .map(|line| {
            assert_eq!(line["reason"], "compiler-message");
            for key in ["package_id", "manifest_path", "target"] {
                assert!(!line[key].is_null(), "{key}");
            }
            let v = &line["message"];
            (
                v["code"]["code"].as_str().unwrap().to_owned(),
                v["level"].as_str().unwrap().to_owned(),
                v["spans"][0]["file_name"].as_str().unwrap().to_owned(),
                v["spans"][0]["line_start"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn entry(code: &str, level: &str, file: &str, line: u64) -> (String, String, String, u64) {
    (code.to_owned(), level.to_owned(), file.to_owned(), line)
}

#[test]
fn config_levels_modules_and_examples() {
    let out = cargo_mp("fixture-crate", &["--message-format", "json"]);
    assert_eq!(out.status.code(), Some(cargo_mp::EXIT_DENIED));
    assert_eq!(
        json(&out),
        [
            entry(
                "mp::missing-main-guard",
                "error",
                "examples/unguarded.rs",
                4
            ),
            entry("mp::exit-in-worker", "warning", "src/jobs.rs", 4),
            // `spawn-in-loop` is warn by default and deny by the package's table;
            // `hardcoded-pool-size` at line 5 is allowed by the workspace's.
            entry("mp::spawn-in-loop", "error", "src/main.rs", 7),
        ]
    );
}

#[test]
fn flags_override_the_config_and_decide_the_exit_code() {
    let quiet = [
        "-A",
        "spawn-in-loop",
        "-A",
        "missing-main-guard",
        "--message-format",
        "json",
    ];
    let out = cargo_mp("fixture-crate", &quiet);
    assert_eq!(out.status.code(), Some(cargo_mp::EXIT_OK));
    assert_eq!(
        json(&out),
        [entry("mp::exit-in-worker", "warning", "src/jobs.rs", 4)]
    );

    let mut strict = quiet.to_vec();
    strict.extend(["-D", "warnings"]);
    let out = cargo_mp("fixture-crate", &strict);
    assert_eq!(out.status.code(), Some(cargo_mp::EXIT_DENIED));
    assert_eq!(
        json(&out),
        [entry("mp::exit-in-worker", "error", "src/jobs.rs", 4)]
    );

    let out = cargo_mp(
        "fixture-crate",
        &["-W", "hardcoded-pool-size", "--message-format", "json"],
    );
    assert!(json(&out).contains(&entry(
        "mp::hardcoded-pool-size",
        "warning",
        "src/main.rs",
        5
    )));
}

#[test]
fn usage_errors_exit_with_2() {
    let out = cargo_mp("fixture-crate", &["-D", "no-such-lint"]);
    assert_eq!(out.status.code(), Some(cargo_mp::EXIT_USAGE));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown lint `no-such-lint`"), "{stderr}");
    assert!(
        stderr.contains("spawn-in-loop"),
        "the message lists the lints"
    );

    let out = cargo_mp("fixture-crate", &["-p", "not-a-member"]);
    assert_eq!(out.status.code(), Some(cargo_mp::EXIT_USAGE));
    let out = cargo_mp("fixture-crate", &["--message-format", "xml"]);
    assert_eq!(out.status.code(), Some(cargo_mp::EXIT_USAGE));
}

#[test]
fn a_file_that_does_not_parse_is_reported_and_the_others_still_checked() {
    let out = cargo_mp("fixture-broken", &["--color", "never"]);
    assert_eq!(out.status.code(), Some(cargo_mp::EXIT_USAGE));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[syntax-error]: cannot parse this file"),
        "{stderr}"
    );
    assert!(stderr.contains("--> src/bad.rs:1:"), "{stderr}");
    assert!(stderr.contains("error[mp::missing-main-guard]"), "{stderr}");
    assert!(stderr.contains("1 file that does not parse"), "{stderr}");
}

#[test]
fn sarif_and_human_output() {
    let out = cargo_mp("fixture-crate", &["--message-format", "sarif"]);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 3);

    let out = cargo_mp("fixture-crate", &["--color", "never"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[mp::spawn-in-loop]: a process is started for every item of a loop\n --> src/main.rs:7:13"), "{stderr}");
    assert!(
        stderr.ends_with("cargo mp check: 3 files, 2 denied, 1 warning\n"),
        "{stderr}"
    );
    let out = cargo_mp("fixture-crate", &["--color", "always"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\x1b[1;31merror"));
}

#[test]
fn lints_command_and_both_invocations() {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-mp"))
        .args(["lints"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for lint in cargo_mp::lints::LINTS {
        assert!(text.contains(lint.name));
    }
    let help = Command::new(env!("CARGO_BIN_EXE_cargo-mp"))
        .args(["mp", "check", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--message-format"));
}

fn short(fixture: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["--message-format", "short"];
    all.extend(args);
    let out = cargo_mp(fixture, &all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_way_to_declare_a_module_is_followed_or_listed() {
    let (code, stderr) = short("fixture-modules", &[]);
    assert_eq!(code, Some(cargo_mp::EXIT_OK), "{stderr}");
    // `mod r#async;`, `#[path]`, both branches of `cfg_if!`, `my_macro! { mod x; }`, and
    // `include!("literal")`: each of those files holds one finding.
    for file in [
        "src/async.rs",
        "src/other/renamed.rs",
        "src/unix_only.rs",
        "src/windows_only.rs",
        "src/in_macro.rs",
        "src/included.rs",
    ] {
        assert!(
            stderr.contains(&format!("{file}:3:17: warning[mp::spawn-in-loop]")),
            "{file} not read:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("cargo mp check: 7 files, 0 denied, 6 warnings"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "2 module declarations not followed: src/main.rs:18 (include! of a path that is \
             not a literal), src/main.rs:20 (inside odd_macro!)"
        ),
        "{stderr}"
    );
}

#[test]
fn only_packages_that_depend_on_mp_are_checked_as_cargo_selects_them() {
    let ws = "fixture-workspace";
    // The default members; `no-mp` does not depend on mp.
    let (code, stderr) = short(ws, &[]);
    assert_eq!(code, Some(cargo_mp::EXIT_DENIED));
    assert!(
        stderr.starts_with("uses-mp/src/main.rs:1:4: error[mp::missing-main-guard]"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("renamed/"),
        "not a default member:\n{stderr}"
    );
    assert!(
        stderr.contains("1 package skipped: no mp dependency (no-mp;"),
        "{stderr}"
    );
    // `--workspace`: every member; `renamed` calls mp `multi`.
    let (_, stderr) = short(ws, &["--workspace"]);
    assert!(
        stderr.contains("renamed/src/main.rs:2:4: error[mp::missing-main-guard]"),
        "{stderr}"
    );
    // `--all-packages`: `no-mp` too.
    let (_, stderr) = short(ws, &["--all-packages"]);
    assert!(stderr.contains("no-mp/src/main.rs:2:4"), "{stderr}");
    assert!(!stderr.contains("skipped"), "{stderr}");
    // A member's manifest: only that member.
    let (_, stderr) = short("fixture-workspace/renamed", &[]);
    assert!(stderr.starts_with("renamed/src/main.rs:2:4"), "{stderr}");
    assert!(
        stderr.contains("cargo mp check: 1 file, 1 denied"),
        "{stderr}"
    );
}
