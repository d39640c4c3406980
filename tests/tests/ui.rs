//! Compile-error snapshots: every user-facing macro error and the `Worker` bound's message.
//! Regenerate with `TRYBUILD=overwrite cargo test -p mp-tests --test ui` and review the diff.

#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
