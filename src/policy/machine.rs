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
