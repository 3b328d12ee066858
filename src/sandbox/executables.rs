//! Everything a job may execute, and what its program will try to
//! execute that the plan does not allow, for `explain`.
//!
//! The invariant: the list is the one the layers build for the kernel
//! (the plan's `execute` entries — the program, `filesystem.execute`, the
//! binary's `helpers` — and what the program layer adds: the ELF loader, a
//! `#!` script's interpreter and its loader, the helpers' loaders), folded
//! by the same code as [`super::assess`], so what `explain` shows cannot
//! drift from what Landlock is given. One entry is added for the admin and
//! granted nothing: the program an `env` indirection (`#!/usr/bin/env
//! node`) will run, resolved as `env` would resolve it in the job (through
//! the job's `PATH`), and whether the plan lets it run.

use super::HostSupport;
use crate::decision::{Plan, PlanPath};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a file may be executed, or why it is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutableKind {
    /// The binary the request names.
    Program,
    /// A `filesystem.execute` entry or one of the binary's `helpers`.
    Granted,
    /// What the kernel executes to run a file: an ELF loader, a script's
    /// interpreter. Granted with the program (or helper) it serves.
    Interpreter,
    /// What a `#!/usr/bin/env NAME` script asks `env` to run. Not granted
    /// by this: it runs only if `allowed` says an entry covers it.
    EnvTarget,
}

/// One file or tree the job may execute (or, for
/// [`ExecutableKind::EnvTarget`], will try to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executable {
    /// The file or tree; for an `env` target not found in the job's PATH, only
    /// its name.
    pub path: PathBuf,
    /// Why it is listed.
    pub kind: ExecutableKind,
    /// The policy key behind it (`binaries.npm.helpers[0]`), or what the
    /// program layer says it is (`ELF loader of the program`).
    pub key: String,
    /// For an `env` target: whether an execute entry covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    /// For an `env` target: how it was found, and what to do when it is
    /// not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What `plan`'s job may execute on this host, in the order the kernel
/// meets them: the program, what runs it, then the other grants.
pub fn executables(plan: &Plan, support: &HostSupport) -> Vec<Executable> {
    let facts = super::assess_facts(plan, support);
    let mut out = Vec::new();
    let entry = |p: &PlanPath, kind| Executable {
        path: p.path.clone(),
        kind,
        key: p.key.clone(),
        allowed: None,
        note: None,
    };
    let (program, granted) = match plan.filesystem.execute.split_first() {
        Some((program, rest)) => (Some(program), rest),
        None => (None, &[][..]),
    };
    out.extend(program.map(|p| entry(p, ExecutableKind::Program)));
    out.extend(facts.iter().map(|p| entry(p, ExecutableKind::Interpreter)));
    if let Some(target) = env_target(plan, &facts) {
        out.push(target);
    }
    out.extend(granted.iter().map(|p| entry(p, ExecutableKind::Granted)));
    out
}

/// The program `#!/usr/bin/env NAME` will have `env` run, when the program
/// is such a script.
fn env_target(plan: &Plan, facts: &[PlanPath]) -> Option<Executable> {
    let (interpreter, argument) = shebang(&plan.program)?;
    if Path::new(&interpreter).file_name()? != "env" {
        return None;
    }
    let name = env_command(argument.as_deref()?)?;
    let (path_value, path_key) = match plan.env.get("PATH") {
        Some(value) => (
            value.clone(),
            plan.env_keys
                .get("PATH")
                .cloned()
                .unwrap_or_else(|| "env".into()),
        ),
        // env runs the command with execvp, which searches libc's default
        // path when PATH is unset.
        None => (
            "/bin:/usr/bin".to_string(),
            "no PATH: libc's default".to_string(),
        ),
    };
    let found = if name.contains('/') {
        Some(PathBuf::from(&name))
    } else {
        path_value
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(dir).join(&name))
            .find(|candidate| crate::platform::is_executable_file(candidate))
    };
    let shebang_text = format!("#!{interpreter} {}", argument.unwrap_or_default());
    let Some(found) = found else {
        return Some(Executable {
            path: PathBuf::from(&name),
            kind: ExecutableKind::EnvTarget,
            key: format!("{shebang_text} (the program's first line)"),
            allowed: Some(false),
            note: Some(format!(
                "`{name}` is not in the job's PATH ({path_value}, from {path_key}): the script cannot start; set PATH in `env.set` to a directory holding it"
            )),
        });
    };
    let real = found.canonicalize().unwrap_or_else(|_| found.clone());
    let grants = plan.filesystem.execute.iter().chain(facts);
    let allowed = grants.clone().any(|grant| covers(&grant.path, &real));
    let helper_key = format!("binaries.{}.helpers", plan.binary);
    let note = if allowed {
        let by = grants
            .filter(|grant| covers(&grant.path, &real))
            .map(|grant| grant.key.as_str())
            .next()
            .unwrap_or_default();
        format!("found in PATH ({path_key}); executable through `{by}`")
    } else {
        format!(
            "found in PATH ({path_key}), but NOT executable in this job: the script fails with EACCES; add \"{}\" to `{helper_key}` if it is trusted",
            found.display()
        )
    };
    Some(Executable {
        path: found,
        kind: ExecutableKind::EnvTarget,
        key: format!("{shebang_text} (the program's first line)"),
        allowed: Some(allowed),
        note: Some(note),
    })
}

/// Whether an execute grant on `grant` lets the kernel execute `real` (a
/// canonical path): the same file, or a file beneath a granted directory.
fn covers(grant: &Path, real: &Path) -> bool {
    let grant = grant.canonicalize().unwrap_or_else(|_| grant.to_path_buf());
    real == grant || (grant.is_dir() && real.starts_with(&grant))
}

/// The interpreter and the one argument of a `#!` line, as the kernel
/// splits it (Linux passes everything after the interpreter as a single
/// argument). The program layer reads the same line for what it grants;
/// this reads the argument too.
fn shebang(program: &Path) -> Option<(String, Option<String>)> {
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(program).ok()?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(read) => n += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    let (interpreter, argument) = match line.split_once([' ', '\t']) {
        Some((interpreter, rest)) => (interpreter, Some(rest.trim().to_string())),
        None => (line, None),
    };
    Some((interpreter.to_string(), argument.filter(|a| !a.is_empty())))
}

/// The command `env` runs for the argument of a `#!/usr/bin/env` line: the
/// argument itself, or with `-S` (split) the first word that is neither an
/// option nor a `NAME=VALUE` assignment.
fn env_command(argument: &str) -> Option<String> {
    let split = argument
        .strip_prefix("-S")
        .or_else(|| argument.strip_prefix("--split-string="))
        .or_else(|| argument.strip_prefix("--split-string"));
    let Some(words) = split else {
        // Without -S, env gets one argument: the whole rest of the line.
        return Some(argument.to_string());
    };
    let mut words = words.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            // Options that take a value as the next word.
            "-u" | "--unset" | "-C" | "--chdir" => {
                words.next();
            }
            w if w.starts_with('-') || w.contains('=') => {}
            w => return Some(w.to_string()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_name_their_command() {
        assert_eq!(env_command("node").as_deref(), Some("node"));
        assert_eq!(env_command("-S node --harmony").as_deref(), Some("node"));
        assert_eq!(
            env_command("-S -i NODE_ENV=ci -u HOME node").as_deref(),
            Some("node")
        );
        // Without -S the kernel hands env one argument, spaces and all.
        assert_eq!(env_command("python3 -u").as_deref(), Some("python3 -u"));
        assert_eq!(env_command("-S -i"), None);
    }

    #[test]
    fn a_shebang_splits_into_interpreter_and_one_argument() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/usr/bin/env -S node --x\nrest\n").unwrap();
        assert_eq!(
            shebang(&script),
            Some(("/usr/bin/env".into(), Some("-S node --x".into())))
        );
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(shebang(&script), Some(("/bin/sh".into(), None)));
        std::fs::write(&script, "\x7fELF").unwrap();
        assert_eq!(shebang(&script), None);
    }
}
