//! `lint` benchmark: `cargo mp check` on a generated workspace of about 50 000 lines (one
//! package, an example per 1 000 lines, each with workers, a guarded `main`, pools, loops and a
//! few findings), timed from `cargo metadata` to the last diagnostic. Target: under 2 s.

use std::fmt::Write as _;
use std::time::Instant;

use crate::Row;

/// One example program of about `lines` lines, with two findings.
fn program(i: usize, lines: usize) -> String {
    let mut s = String::new();
    let workers = lines / 12;
    for w in 0..workers {
        let _ = writeln!(
            s,
            "/// Worker {w}.\n#[mp::worker]\nfn work_{w}(x: u64) -> u64 {{\n    let y = x.wrapping_mul({w});\n    y ^ (y >> 3)\n}}\n"
        );
    }
    s.push_str("mp::main! {\n    fn main() -> mp::Result<()> {\n");
    s.push_str("        let pool = mp::Pool::new(mp::cpu_count())?;\n");
    for w in 0..workers {
        let _ = writeln!(s, "        let r{w} = pool.map(work_{w}, 0..10)?;");
        let _ = writeln!(s, "        assert_eq!(r{w}.len(), 10);");
    }
    let _ = writeln!(s, "        let items = vec![1u64, 2, 3];");
    let _ = writeln!(
        s,
        "        for item in items {{ mp::spawn(work_0, item)?.join()?; }}"
    );
    let _ = writeln!(s, "        let _ = pool.map(|x: u64| x + {i}, 0..3);");
    s.push_str("        Ok(())\n    }\n}\n");
    s
}

pub(crate) fn run(quick: bool) -> mp::Result<Vec<Row>> {
    let total_lines = if quick { 10_000 } else { 50_000 };
    let dir = std::env::temp_dir().join(format!("mp-lint-bench-{}", std::process::id()));
    let io =
        |e: std::io::Error| mp::Error::InvalidArgument(format!("cannot write the workspace: {e}"));
    std::fs::create_dir_all(dir.join("src")).map_err(io)?;
    std::fs::create_dir_all(dir.join("examples")).map_err(io)?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"generated\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .map_err(io)?;
    std::fs::write(dir.join("src/lib.rs"), "//! Generated.\n").map_err(io)?;
    let mut lines = 0;
    let mut i = 0;
    while lines < total_lines {
        let text = program(i, 1_000);
        lines += text.lines().count();
        std::fs::write(dir.join(format!("examples/ex{i}.rs")), text).map_err(io)?;
        i += 1;
    }
    let start = Instant::now();
    let (root, targets) = cargo_mp::check::targets(Some(&dir.join("Cargo.toml")), &[], &[])
        .map_err(mp::Error::InvalidArgument)?;
    let report = cargo_mp::check::check(&root, &targets);
    let took = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report.findings.len(), 2 * i, "two findings per program");
    println!(
        "checked {lines} lines in {} files: {} findings, {:.0} files/s, {:.0} lines/s",
        report.files,
        report.findings.len(),
        report.files as f64 / took,
        lines as f64 / took
    );
    Ok(vec![Row {
        what: "cargo mp check",
        unit: "s",
        mp: took,
        python: None,
        floor: Some(("target", 2.0)),
        lower_is_better: true,
    }])
}
