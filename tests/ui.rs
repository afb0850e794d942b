//! Compile-time behaviour of `#[cached_action]`: accepted forms and misuse diagnostics.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
