//! Judging a policy against the machine it is loaded on: whether each
//! binary it trusts is here, is a program, and is the file its `sha256`
//! pins.
//!
//! The invariant: what would make every job of a binary be refused at run
//! time is said when the policy is checked, at the key that causes it. How
//! loud depends on what the policy is for ([`ThisMachine`]): loading it to
//! run jobs warns (a policy shared between machines still loads, and the
//! job that meets the problem is refused naming it); `jobwarden check`
//! makes a path that is a directory or not executable, and a pin that does
//! not match the file here, errors; `check --portable` (a policy written
//! for other machines) keeps them warnings. A missing path is a warning
//! always. Only `check` hashes files: loading a policy stays cheap.

use super::diagnostic::Code;
use super::model::Policy;
use super::reader::Reader;
use super::sections::BinaryRule;
use super::template::{PathTemplate, Placeholder, Placeholders};
use std::path::{Path, PathBuf};

/// What a policy is being loaded for, which decides how its binaries are
/// judged against this machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThisMachine {
    /// To run jobs here: every problem with a binary here is a warning, and
    /// nothing is hashed.
    #[default]
    Load,
    /// `jobwarden check`: the policy is for this machine. A binary path
    /// that is a directory or not executable, and a `sha256` that does not
    /// match the file here, are errors.
    Check,
    /// `jobwarden check --portable`: the policy is for other machines; the
    /// same findings are warnings.
    Portable,
}

/// Judges every binary of `policy` on this machine.
pub(crate) fn binaries(reader: &mut Reader<'_>, policy: &Policy, mode: ThisMachine) {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for binary in policy.binaries.values() {
        let found = match &binary.path {
            Some(path) => {
                let Some(resolved) = resolve_static(&path.value, home.as_deref()) else {
                    continue;
                };
                if !judge_path(reader, &path.key, &resolved, mode) {
                    continue;
                }
                resolved
            }
            None if mode == ThisMachine::Load => continue,
            None => match in_search_path(policy, binary, home.as_deref()) {
                Some(found) => found,
                None => {
                    missing_from_search_path(reader, policy, binary);
                    continue;
                }
            },
        };
        if mode != ThisMachine::Load {
            check_pin(reader, binary, &found, mode);
        }
    }
}

/// Reports a binary path that is missing, a directory or not executable;
/// returns whether it is a program.
fn judge_path(reader: &mut Reader<'_>, key: &str, resolved: &Path, mode: ThisMachine) -> bool {
    let span = reader.span(key);
    let Ok(meta) = std::fs::metadata(resolved) else {
        reader
            .warning(
                Code::MissingOnThisMachine,
                span,
                format!(
                    "`{key}`: {} does not exist on this machine",
                    resolved.display()
                ),
            )
            .notes
            .push(
                "note: requests for this binary will be refused here until it is installed".into(),
            );
        return false;
    };
    let what = if meta.is_dir() {
        "is a directory, not a program"
    } else if !crate::platform::is_executable_file(resolved) {
        "is not executable"
    } else {
        return true;
    };
    let message = format!("`{key}`: {} {what}", resolved.display());
    let diagnostic = if mode == ThisMachine::Check {
        reader.error(Code::NotExecutable, span, message)
    } else {
        reader.warning(Code::NotExecutable, span, message)
    };
    diagnostic.notes.push(
        "note: every job of this binary would be refused here; point `path` at the program file itself".into(),
    );
    false
}

/// Where a binary path points without a job: absolute paths and `{home}`
/// ones; `{repo}` and `{tmp}` differ per job.
fn resolve_static(template: &PathTemplate, home: Option<&Path>) -> Option<PathBuf> {
    if template.base().is_some_and(|b| b != Placeholder::Home) {
        return None;
    }
    let values = Placeholders {
        repo: Path::new("/"),
        home,
        tmp: Path::new("/"),
    };
    template.resolve(&values).ok()
}

/// The file a binary without `path` resolves to here, as the decision finds it.
fn in_search_path(policy: &Policy, binary: &BinaryRule, home: Option<&Path>) -> Option<PathBuf> {
    policy
        .search_path
        .iter()
        .filter_map(|dir| resolve_static(&dir.value, home))
        .map(|dir| dir.join(&binary.name))
        .find(|candidate| crate::platform::is_executable_file(candidate))
}

fn missing_from_search_path(reader: &mut Reader<'_>, policy: &Policy, binary: &BinaryRule) {
    if policy.search_path.is_empty() {
        // Without a search path, the loader has already said it cannot be found.
        return;
    }
    let dirs: Vec<&str> = policy
        .search_path
        .iter()
        .map(|d| d.value.as_str())
        .collect();
    let span = reader.span(&binary.key);
    reader
        .warning(
            Code::MissingOnThisMachine,
            span,
            format!(
                "`[{}]`: `{}` is not in the search_path on this machine ({})",
                binary.key,
                binary.name,
                dirs.join(", ")
            ),
        )
        .notes
        .push("note: requests for this binary will be refused here until it is installed".into());
}

/// Hashes the file a pinned binary runs and reports a pin that does not
/// match it.
fn check_pin(reader: &mut Reader<'_>, binary: &BinaryRule, file: &Path, mode: ThisMachine) {
    let Some(pin) = &binary.sha256 else { return };
    let real = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let span = reader.span(&pin.key);
    let actual = match sha256_of(&real) {
        Ok(actual) => actual,
        Err(e) => {
            reader.warning(
                Code::Sha256Mismatch,
                span,
                format!(
                    "`{}`: cannot read {} to compare its sha256: {e}",
                    pin.key,
                    real.display()
                ),
            );
            return;
        }
    };
    if actual == pin.value {
        return;
    }
    let message = format!(
        "`{}` does not match {} on this machine, whose sha256 is {}",
        pin.key,
        real.display(),
        super::hex(&actual)
    );
    let diagnostic = if mode == ThisMachine::Check {
        reader.error(Code::Sha256Mismatch, span, message)
    } else {
        reader.warning(Code::Sha256Mismatch, span, message)
    };
    diagnostic
        .notes
        .push("note: every job of this binary would be refused here".into());
    if mode == ThisMachine::Check {
        diagnostic.notes.push(format!(
            "help: if the file changed on purpose, check it, then pin it with `sha256 = \"{}\"`; if the policy is for other machines, check it with `jobwarden check --portable`",
            super::hex(&actual)
        ));
    }
}

/// sha256 of a file, streamed.
fn sha256_of(path: &Path) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

// Unix only: the fixtures are told apart by their permission bits.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::policy::diagnostic::{Diagnostic, Severity};
    use crate::policy::{LoadError, Policy};
    use std::os::unix::fs::PermissionsExt;

    /// A directory holding `tool` (executable, its sha256 returned),
    /// `data` (a plain file) and `dir/`.
    fn machine() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("data"), "x").unwrap();
        std::fs::create_dir(dir.path().join("dir")).unwrap();
        let sha = crate::policy::hex(&sha256_of(&tool).unwrap());
        (dir, sha)
    }

    /// What loading `binaries` (TOML after `version = 1`) in `mode`
    /// reports, warnings and errors alike.
    fn judged(binaries: &str, mode: ThisMachine) -> Vec<Diagnostic> {
        let text = format!("version = 1\n{binaries}");
        match Policy::from_toml_for("<test>", &text, mode) {
            Ok(loaded) => loaded.warnings.diagnostics,
            Err(LoadError::Invalid(report)) => report.diagnostics,
            Err(other) => panic!("{other}"),
        }
    }

    fn codes(diagnostics: &[Diagnostic]) -> Vec<(Severity, Code)> {
        diagnostics.iter().map(|d| (d.severity, d.code)).collect()
    }

    #[test]
    fn sha256_of_is_the_files_digest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "abc").unwrap();
        assert_eq!(
            crate::policy::hex(&sha256_of(&file).unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_pin_is_checked_only_by_check_and_only_a_wrong_one_is_reported() {
        let (dir, sha) = machine();
        let root = dir.path().display();
        let wrong = "0".repeat(64);
        let pinned =
            |pin: &str| format!("[binaries.tool]\npath = \"{root}/tool\"\nsha256 = \"{pin}\"\n");
        // The right pin: nothing to say, in every mode.
        for mode in [ThisMachine::Load, ThisMachine::Check, ThisMachine::Portable] {
            assert_eq!(codes(&judged(&pinned(&sha), mode)), vec![], "{mode:?}");
        }
        // A wrong one: loading to run jobs hashes nothing, so says nothing.
        assert_eq!(codes(&judged(&pinned(&wrong), ThisMachine::Load)), vec![]);
        let check = judged(&pinned(&wrong), ThisMachine::Check);
        assert_eq!(codes(&check), vec![(Severity::Error, Code::Sha256Mismatch)]);
        assert!(check[0].message.contains(&sha), "{}", check[0].message);
        assert!(
            check[0]
                .notes
                .iter()
                .any(|n| n.starts_with("help:") && n.contains(&sha)),
            "{:?}",
            check[0].notes
        );
        // A policy for other machines: a warning, and no advice to re-pin.
        let portable = judged(&pinned(&wrong), ThisMachine::Portable);
        assert_eq!(
            codes(&portable),
            vec![(Severity::Warning, Code::Sha256Mismatch)]
        );
        assert!(
            !portable[0].notes.iter().any(|n| n.starts_with("help:")),
            "{:?}",
            portable[0].notes
        );
    }

    #[test]
    fn a_path_that_is_not_a_program_is_an_error_only_for_check() {
        let (dir, _) = machine();
        let root = dir.path().display();
        let wrong = "0".repeat(64);
        for (file, code) in [
            ("data", Code::NotExecutable),
            ("dir", Code::NotExecutable),
            ("absent", Code::MissingOnThisMachine),
        ] {
            // Pinned too: a path that is not a program is not hashed.
            let binaries =
                format!("[binaries.tool]\npath = \"{root}/{file}\"\nsha256 = \"{wrong}\"\n");
            let error_for_check = if code == Code::NotExecutable {
                Severity::Error
            } else {
                Severity::Warning
            };
            for (mode, severity) in [
                (ThisMachine::Load, Severity::Warning),
                (ThisMachine::Check, error_for_check),
                (ThisMachine::Portable, Severity::Warning),
            ] {
                assert_eq!(
                    codes(&judged(&binaries, mode)),
                    vec![(severity, code)],
                    "{file} {mode:?}"
                );
            }
        }
    }

    #[test]
    fn a_binary_without_a_path_is_looked_up_in_the_search_path_by_check() {
        let (dir, sha) = machine();
        let root = dir.path().display();
        let wrong = "0".repeat(64);
        let search = format!("search_path = [\"{root}/dir\", \"{root}\"]\n");
        // Found in the second directory, and its pin checked there.
        let found = |pin: &str| format!("{search}[binaries.tool]\nsha256 = \"{pin}\"\n");
        assert_eq!(codes(&judged(&found(&sha), ThisMachine::Check)), vec![]);
        assert_eq!(
            codes(&judged(&found(&wrong), ThisMachine::Check)),
            vec![(Severity::Error, Code::Sha256Mismatch)]
        );
        // Loading to run jobs looks nothing up.
        assert_eq!(codes(&judged(&found(&wrong), ThisMachine::Load)), vec![]);
        // Not there: said once, naming the directories searched.
        let missing = format!("{search}[binaries.absent]\n");
        assert_eq!(codes(&judged(&missing, ThisMachine::Load)), vec![]);
        let said = judged(&missing, ThisMachine::Check);
        assert_eq!(
            codes(&said),
            vec![(Severity::Warning, Code::MissingOnThisMachine)]
        );
        assert!(
            said[0].message.contains("is not in the search_path")
                && said[0].message.contains(&format!("{root}/dir")),
            "{}",
            said[0].message
        );
    }
}
