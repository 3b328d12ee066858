//! Which paths inside writable roots a job must find read-only, and what
//! is there now: the repository's `.git` as `filesystem.git` says, the
//! hooks directory `core.hooksPath` names, nested repositories, and the
//! plan's protected list; plus the holds on protected directories: the
//! placeholders that keep a missing one from being created while a job
//! runs, and the locks that keep other hosts from removing theirs under it.

use super::mounts::beneath_any;
use crate::decision::GitAccess;
use crate::sandbox::layer::Job;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
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

/// The extended attribute marking a placeholder a jobwarden host made, so
/// that another host which finds it (its maker ended, or was killed) takes
/// it over and removes it once its own jobs are done. Best effort: on a
/// file system without user attributes there is no mark, and such a
/// placeholder found by another host stays (empty) until someone removes it.
const MARK: &std::ffi::CStr = c"user.jobwarden.placeholder";

/// How long a hold waits for another host to finish removing the directory
/// (it holds an exclusive lock only for a check and an `rmdir`).
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// A protected directory held for the jobs of this process.
struct Held {
    holders: usize,
    dev: u64,
    ino: u64,
    /// Open with a shared `flock`: a host removes a placeholder only under
    /// an exclusive one, so none removes it while another host's job
    /// relies on it (removing a directory detaches every mount on it in
    /// every other namespace: the job's read-only mount would vanish and
    /// the job could create the directory after all).
    dir: std::fs::File,
    /// Made by a jobwarden host (here, or marked by another): removed when
    /// the last job holding it ends, if no other host holds it and it is
    /// still the same empty directory.
    placeholder: bool,
}

/// Protected directories held by jobs of this process.
static HELD: Mutex<Option<HashMap<PathBuf, Held>>> = Mutex::new(None);

/// A protected directory held for one job: while a job of any jobwarden
/// host holds it, no host removes it. A missing one is first made as an
/// empty placeholder, so the job's read-only mount has something to cover
/// and the job cannot create it; the placeholder is removed when the last
/// job holding it, in any host, ends.
#[derive(Debug)]
pub(crate) struct Hold {
    path: PathBuf,
}

impl Hold {
    /// Holds the directory at `path`, making a placeholder there first when
    /// it is missing and `may_create`. `Ok(None)` when it is missing and may
    /// not be created, or when what is there is not a directory (protected
    /// as it is). The flag says whether it is a placeholder.
    pub(crate) fn take(path: &Path, may_create: bool) -> Result<Option<(Self, bool)>, HoldError> {
        let mut registry = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let registry = registry.get_or_insert_with(HashMap::new);
        if let Some(held) = registry.get_mut(path) {
            held.holders += 1;
            let hold = Self {
                path: path.to_path_buf(),
            };
            return Ok(Some((hold, held.placeholder)));
        }
        // Each turn ends with the directory held, or finds it removed or
        // replaced after it was opened (another host's placeholder going).
        for _ in 0..8 {
            let made = may_create
                && match std::fs::create_dir(path) {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                    Err(_) => return Err(HoldError::Create),
                };
            let dir = match open_dir(path) {
                Ok(dir) => dir,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if may_create {
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                    return Ok(None);
                }
                Err(e) => return Err(HoldError::Hold(e)),
            };
            if made {
                mark(&dir);
            }
            let meta = lock(&dir, libc::LOCK_SH).and_then(|()| dir.metadata());
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => {
                    if made {
                        let _ = std::fs::remove_dir(path);
                    }
                    return Err(HoldError::Hold(e));
                }
            };
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
                _ => continue,
            }
            let placeholder = made || marked(&dir);
            registry.insert(
                path.to_path_buf(),
                Held {
                    holders: 1,
                    dev: meta.dev(),
                    ino: meta.ino(),
                    dir,
                    placeholder,
                },
            );
            let hold = Self {
                path: path.to_path_buf(),
            };
            return Ok(Some((hold, placeholder)));
        }
        Err(HoldError::Hold(std::io::Error::other(
            "it was removed and made again too often while being held",
        )))
    }
}

/// Why a protected directory could not be held.
#[derive(Debug)]
pub(crate) enum HoldError {
    /// The placeholder could not be made (then the job cannot make it either).
    Create,
    /// It could not be opened or locked.
    Hold(std::io::Error),
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut registry = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let Some(registry) = registry.as_mut() else {
            return;
        };
        let Some(held) = registry.get_mut(&self.path) else {
            return;
        };
        held.holders -= 1;
        if held.holders > 0 {
            return;
        }
        let Some(held) = registry.remove(&self.path) else {
            return;
        };
        if !held.placeholder {
            return;
        }
        // Only without another host's job on it (its shared lock keeps this
        // exclusive one off; that host removes it when done), only the very
        // directory held, only while empty.
        if try_lock(&held.dir, libc::LOCK_EX)
            && std::fs::symlink_metadata(&self.path)
                .is_ok_and(|m| m.dev() == held.dev && m.ino() == held.ino)
        {
            let _ = std::fs::remove_dir(&self.path);
        }
        // Closing the directory releases the lock.
    }
}

fn open_dir(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

/// `flock(op | LOCK_NB)`, retried while another holder has it for up to
/// [`LOCK_WAIT`] (never blocking for good on a lock some other process
/// keeps).
fn lock(dir: &std::fs::File, op: libc::c_int) -> std::io::Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        if try_lock(dir, op) {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) || Instant::now() >= deadline {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn try_lock(dir: &std::fs::File, op: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(dir.as_raw_fd(), op | libc::LOCK_NB) == 0 }
}

fn mark(dir: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let value = b"1";
    // SAFETY: a descriptor we own; name and value outlive the call.
    unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            MARK.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        );
    }
}

fn marked(dir: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut value = [0u8; 8];
    // SAFETY: a descriptor we own; the buffer's length is passed.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            MARK.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'1'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Another host's job on the directory: a shared lock through a
    /// descriptor of its own (a separate open file description conflicts
    /// like another process's).
    fn other_host(path: &Path) -> std::fs::File {
        let dir = open_dir(path).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_SH) }, 0);
        dir
    }

    #[test]
    fn a_placeholder_stays_while_another_host_holds_it_and_is_taken_over() {
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().join(".vscode");
        let (hold, placeholder) = Hold::take(&path, true).unwrap().unwrap();
        assert!(placeholder && path.is_dir());
        let other = other_host(&path);
        drop(hold);
        assert!(path.is_dir(), "removed under another host's job");
        drop(other);
        // Found by a host that did not make it: taken over by its mark.
        let (hold, placeholder) = Hold::take(&path, true).unwrap().unwrap();
        assert!(placeholder, "the mark was not seen");
        drop(hold);
        assert!(!path.exists(), "the placeholder was left behind");
    }

    #[test]
    fn a_real_directory_or_a_file_is_never_removed() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join(".idea");
        std::fs::create_dir(&dir).unwrap();
        let (hold, placeholder) = Hold::take(&dir, true).unwrap().unwrap();
        assert!(!placeholder);
        drop(hold);
        assert!(dir.is_dir());
        let file = repo.path().join(".envrc");
        std::fs::write(&file, "").unwrap();
        assert!(Hold::take(&file, true).unwrap().is_none());
        assert!(file.is_file());
        // Missing and not to be made: nothing held, nothing made.
        let missing = repo.path().join("hooks");
        assert!(Hold::take(&missing, false).unwrap().is_none());
        assert!(!missing.exists());
    }

    #[test]
    fn jobs_of_one_host_share_a_placeholder_until_the_last_ends() {
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().join(".vscode");
        let (first, _) = Hold::take(&path, true).unwrap().unwrap();
        let (second, placeholder) = Hold::take(&path, true).unwrap().unwrap();
        assert!(placeholder);
        drop(first);
        assert!(path.is_dir());
        drop(second);
        assert!(!path.exists());
    }

    #[test]
    fn a_directory_locked_for_removal_by_some_process_refuses_the_hold() {
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().join(".vscode");
        std::fs::create_dir(&path).unwrap();
        let locker = open_dir(&path).unwrap();
        assert!(try_lock(&locker, libc::LOCK_EX));
        assert!(matches!(
            Hold::take(&path, true),
            Err(HoldError::Hold(e)) if e.raw_os_error() == Some(libc::EWOULDBLOCK)
        ));
    }
}
