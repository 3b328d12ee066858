//! Which paths inside writable roots a job must find read-only, and what
//! is there now: the repository's `.git` as `filesystem.git` says, the
//! hooks directory `core.hooksPath` names, nested repositories, and the
//! plan's protected list. A missing protected directory gets a
//! placeholder (`holds.rs`).

use super::mounts::beneath_any;
use crate::decision::GitAccess;
use crate::sandbox::layer::Job;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Protected names a missing one of which gets a placeholder directory.
const PLACEHOLDER_DIRS: &[&str] = &[".git", ".vscode", ".idea", "hooks", "info"];

/// How deep and how wide nested repositories are looked for.
const NESTED_DEPTH: usize = 4;
const NESTED_DIRS: usize = 2048;
/// Directories never searched for nested repositories (build output).
const NESTED_SKIP: &[&str] = &[".git", "target", "node_modules"];
/// How long a search for nested repositories is reused.
const NESTED_TTL: Duration = Duration::from_secs(10);

/// A protected path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protected {
    pub path: PathBuf,
    pub key: String,
    pub dir: bool,
    pub state: Presence,
    /// A missing one gets an empty placeholder directory.
    pub placeholder: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Presence {
    Present,
    /// Missing: held by an empty placeholder directory.
    Placeholder,
    /// Missing, and nothing would be created there by itself.
    Absent,
    /// Cannot be protected by a mount (a symlink, a special file).
    Unprotectable(String),
}

/// Every protected path beneath a writable root, with what is there now.
pub(crate) fn protected_paths(job: &Job<'_>, writable: &[PathBuf]) -> Vec<Protected> {
    let plan = job.plan;
    let git = plan.filesystem.git.value;
    let mut wanted: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut git_dirs = vec![(plan.repo.join(".git"), plan.filesystem.git.key.clone())];
    for entry in &plan.filesystem.protected {
        let name = entry
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if name == ".git" {
            if entry.path != plan.repo.join(".git") {
                git_dirs.push((entry.path.clone(), entry.key.clone()));
            }
            continue;
        }
        // The built-in files (`.gitmodules`, `.envrc`) run nothing by being
        // created; everything else a missing entry names is held.
        let placeholder =
            PLACEHOLDER_DIRS.contains(&name) || entry.key != crate::decision::PROTECTED_KEY;
        wanted.push((entry.path.clone(), entry.key.clone(), placeholder));
    }
    if git != GitAccess::Writable {
        for nested in nested_repositories(&plan.repo) {
            git_dirs.push((nested, "nested repository".into()));
        }
        if let Some(hooks) = configured_hooks(&plan.repo) {
            wanted.push((hooks, "core.hooksPath of the repository".into(), true));
        }
        for (dir, key) in git_dirs {
            wanted.extend(
                git_parts(&dir, git)
                    .into_iter()
                    .map(|(p, placeholder)| (p, key.clone(), placeholder)),
            );
        }
    }
    let mut out: Vec<Protected> = Vec::new();
    for (path, key, placeholder) in wanted {
        if !beneath_any(&path, writable) || out.iter().any(|p| p.path == path) {
            continue;
        }
        let (dir, state) = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => (true, Presence::Present),
            Ok(m) if m.is_file() => (false, Presence::Present),
            Ok(m) if m.file_type().is_symlink() => (
                false,
                Presence::Unprotectable("a symlink: a mount would follow it".into()),
            ),
            Ok(_) => (
                false,
                Presence::Unprotectable("not a file or directory".into()),
            ),
            Err(_) if placeholder && path.parent().is_some_and(Path::is_dir) => {
                (true, Presence::Placeholder)
            }
            Err(_) => (false, Presence::Absent),
        };
        out.push(Protected {
            path,
            key,
            dir,
            state,
            placeholder,
        });
    }
    out
}

/// What of a `.git` (a directory, or a gitlink file) stays read-only.
fn git_parts(git: &Path, access: GitAccess) -> Vec<(PathBuf, bool)> {
    match access {
        GitAccess::Writable => Vec::new(),
        GitAccess::ReadOnly => vec![(git.to_path_buf(), true)],
        GitAccess::Commit if !git.is_dir() => vec![(git.to_path_buf(), false)],
        GitAccess::Commit => {
            let mut parts = Vec::new();
            let mut dirs = vec![git.to_path_buf()];
            // Submodules' git directories live in modules/, nested.
            let mut stack = vec![(git.join("modules"), 0)];
            while let Some((dir, depth)) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if !path.is_dir() || depth > 6 {
                        continue;
                    }
                    if path.join("HEAD").is_file() {
                        dirs.push(path.clone());
                        stack.push((path.join("modules"), depth + 1));
                    } else {
                        stack.push((path, depth + 1));
                    }
                }
            }
            for dir in dirs {
                parts.push((dir.join("hooks"), true));
                parts.push((dir.join("config"), false));
                parts.push((dir.join("info"), true));
            }
            parts
        }
    }
}

/// The hooks directory `core.hooksPath` in the repository's own config
/// names, when it names one (a plain scan: hooks live at one path).
fn configured_hooks(repo: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(repo.join(".git/config")).ok()?;
    let mut in_core = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_core = line.to_ascii_lowercase().starts_with("[core");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if in_core && key.trim().eq_ignore_ascii_case("hookspath") {
            let value = value.trim().trim_matches('"');
            let path = Path::new(value);
            return Some(if path.is_absolute() {
                path.to_path_buf()
            } else {
                repo.join(path)
            });
        }
    }
    None
}

/// `.git` entries of repositories nested in `repo` (bounded search, reused
/// for a few seconds: a job start must stay cheap).
fn nested_repositories(repo: &Path) -> Vec<PathBuf> {
    type Searches = HashMap<PathBuf, (Instant, Vec<PathBuf>)>;
    static CACHE: Mutex<Option<Searches>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some((at, found)) = cache.get(repo)
        && at.elapsed() < NESTED_TTL
    {
        return found.clone();
    }
    let mut found = Vec::new();
    let mut queue = std::collections::VecDeque::from([(repo.to_path_buf(), 0usize)]);
    let mut read = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        if read >= NESTED_DIRS {
            break;
        }
        read += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if name == ".git" && dir != repo {
                found.push(entry.path());
                continue;
            }
            if kind.is_dir() && depth < NESTED_DEPTH && !NESTED_SKIP.iter().any(|s| name == *s) {
                queue.push_back((entry.path(), depth + 1));
            }
        }
    }
    if cache.len() > 64 {
        cache.clear();
    }
    cache.insert(repo.to_path_buf(), (Instant::now(), found.clone()));
    found
}
