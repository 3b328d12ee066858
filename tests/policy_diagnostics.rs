//! Snapshot tests of the full rendered diagnostics for broken policies.
//!
//! Each fixture in `tests/fixtures/broken/` is a policy an admin might write
//! by mistake. The snapshot is exactly what `jobwarden check` prints: every
//! problem at once, `file:line:col`, the line, a marker, and the notes.

use jobwarden::policy::{LoadError, Policy, Severity};

fn render(name: &str) -> String {
    let path = format!("tests/fixtures/broken/{name}.toml");
    match Policy::load(&path) {
        Ok(_) => panic!("{path} loaded, but it is meant to be broken"),
        Err(LoadError::Invalid(report)) => {
            assert!(
                report
                    .diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error),
                "an invalid policy must carry at least one error"
            );
            for d in &report.diagnostics {
                assert!(d.span.is_some(), "every diagnostic points at text: {d:?}");
            }
            report.render()
        }
        Err(other) => panic!("{path}: {other}"),
    }
}

macro_rules! broken {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), render(stringify!($name)));
        }
    )*};
}

broken!(
    typo_key,
    wrong_type,
    bad_glob,
    unknown_placeholder,
    relative_path,
    zero_limit,
    duplicate,
    unknown_version,
    undefined_binary,
    toml_syntax,
    missing_version,
    contradictory_timeout,
    many_problems,
);

#[test]
fn every_error_is_reported_at_once() {
    let report = match Policy::load("tests/fixtures/broken/many_problems.toml") {
        Err(LoadError::Invalid(report)) => report,
        _ => panic!("expected an invalid policy"),
    };
    assert!(report.error_count() >= 10, "{}", report.render());
}

#[test]
fn an_unreadable_file_names_the_path() {
    let err = Policy::load("tests/fixtures/does-not-exist.toml").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("does-not-exist.toml"), "{text}");
}

#[test]
fn a_file_that_is_not_utf8_names_the_path_and_keeps_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, b"version = 1\n# caf\xe9\n").unwrap();
    let err = Policy::load(&path).unwrap_err();
    assert!(matches!(err, LoadError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("latin1.toml"), "{err}");
    let cause = std::error::Error::source(&err).expect("the UTF-8 error is kept");
    assert!(cause.to_string().contains("utf-8"), "{cause}");
}

/// A TOML error at the very end of the text points at one byte past it, so
/// the marker, `--json` consumers and editors have something to point at.
#[test]
fn a_syntax_error_at_the_end_points_at_one_byte() {
    for (text, at) in [("version = 1\nname = ", 19), ("version = 1\nx = [1,", 19)] {
        let report = match Policy::from_toml("eof.toml", text) {
            Err(LoadError::Invalid(report)) => report,
            other => panic!("{text:?}: {:?}", other.map(|_| ())),
        };
        let spans: Vec<_> = report.diagnostics.iter().map(|d| d.span.clone()).collect();
        assert_eq!(spans, [Some(at..at + 1)], "{text:?}: {}", report.render());
    }
}
