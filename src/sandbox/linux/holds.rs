//! Placeholders, held across hosts.
//!
//! A protected directory that is missing gets an empty placeholder for the
//! job's lifetime, so the job's read-only mount has something to cover and
//! the job cannot create it. Removing a directory detaches every mount on
//! it in every namespace, so no host may remove a placeholder while a job
//! of another host relies on it (two hosts in one repository: a TUI and
//! `jobwarden run`). Hence:
//!
//! - a placeholder is made under a temporary name, marked with the
//!   extended attribute `user.jobwarden.placeholder` = `held`, and renamed
//!   into place (`RENAME_NOREPLACE`): no host ever sees it unmarked;
//! - every job holds the placeholders its mounts cover — its own, and
//!   marked ones other hosts made — open with a shared `flock`;
//! - the host that made one removes it when its last job on it ends, only
//!   under an exclusive `flock` (none is to be had while another host's job
//!   holds it); when another host holds it, the maker marks it `released`,
//!   and whichever host holds it last removes it. A placeholder whose maker
//!   was killed stays `held` and is never removed by another host (the
//!   killed host's jobs may still run under it): an empty leftover.
//!
//! A directory that is not marked is the user's and is never removed, so it
//! is not held either (no descriptor, no lock). Where the file system keeps
//! no user attributes, placeholders are unmarked: other hosts then treat
//! them as the user's, and the race above stays open there.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MARK: &CStr = c"user.jobwarden.placeholder";
const HELD: &[u8] = b"held";
const RELEASED: &[u8] = b"released";

/// How long a hold waits for another host that is removing the directory
/// (it holds its exclusive lock for a check and an `rmdir`). A lock kept
/// longer is not a jobwarden host's: the directory is then protected by the
/// job's mount without being held.
const LOCK_WAIT: Duration = Duration::from_millis(200);

/// The most placeholders one job holds (a descriptor each, while it runs).
pub(crate) const MAX_HOLDS: usize = 64;

/// A directory the jobs of this process hold, by path and identity.
type Key = (PathBuf, u64, u64);

struct Held {
    holders: usize,
    /// Open, with a shared `flock`.
    dir: File,
    /// Made by this process (else another host's, found marked).
    made: bool,
}

static TABLE: Mutex<Option<HashMap<Key, Held>>> = Mutex::new(None);

/// A placeholder held for one job.
#[derive(Debug)]
pub(crate) struct Hold {
    key: Key,
}

/// A placeholder could not be made (so the job cannot make it either).
#[derive(Debug)]
pub(crate) struct CannotCreate;

impl Hold {
    /// Holds the placeholder at `path` for a job, making it when the path
    /// is missing. `Ok(None)`: something that is not a placeholder is there
    /// (the user's directory or file, protected as it is), or it could not
    /// be held (kept locked by some other process, kept changing).
    pub(crate) fn take(path: &Path) -> Result<Option<Self>, CannotCreate> {
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        let table = table.get_or_insert_with(HashMap::new);
        // Each turn ends with the placeholder held, or finds the path
        // changed meanwhile (another host's placeholder removed or made).
        for _ in 0..8 {
            let found = match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_dir() => meta,
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match make(path) {
                    Ok(Some((dir, dev, ino))) => {
                        let key = (path.to_path_buf(), dev, ino);
                        let held = Held {
                            holders: 1,
                            dir,
                            made: true,
                        };
                        table.insert(key.clone(), held);
                        return Ok(Some(Self { key }));
                    }
                    Ok(None) => continue,
                    Err(_) => return Err(CannotCreate),
                },
                Err(_) => return Ok(None),
            };
            let key = (path.to_path_buf(), found.dev(), found.ino());
            if let Some(held) = table.get_mut(&key) {
                held.holders += 1;
                return Ok(Some(Self { key }));
            }
            if !path_marked(path) {
                return Ok(None);
            }
            let Ok(dir) = open_dir(path) else {
                continue;
            };
            if !same(&dir, found.dev(), found.ino()) {
                continue;
            }
            if lock_shared(&dir).is_err() {
                return Ok(None);
            }
            // Still there after the lock: no host removes it now.
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == found.dev() && now.ino() == found.ino() => {}
                _ => continue,
            }
            let held = Held {
                holders: 1,
                dir,
                made: false,
            };
            table.insert(key.clone(), held);
            return Ok(Some(Self { key }));
        }
        Ok(None)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        let Some(table) = table.as_mut() else {
            return;
        };
        let Some(held) = table.get_mut(&self.key) else {
            return;
        };
        held.holders -= 1;
        if held.holders > 0 {
            return;
        }
        let Some(held) = table.remove(&self.key) else {
            return;
        };
        // Another host's that it still holds: that host removes it.
        if !held.made && mark(&held.dir).as_deref() != Some(RELEASED) {
            return;
        }
        let (path, dev, ino) = &self.key;
        // A failed conversion drops the shared lock too: the descriptor is
        // closed right after either way.
        if try_lock(&held.dir, libc::LOCK_EX) {
            // Only the very directory held, and only while empty; one
            // that is not (the user wrote into it meanwhile, outside any
            // job) is the user's now, and loses its mark.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino)
                && let Err(e) = std::fs::remove_dir(path)
                && e.raw_os_error() == Some(libc::ENOTEMPTY)
            {
                unmark(&held.dir);
            }
        } else if held.made {
            // Another host's job holds it: the last holder removes it.
            set_mark(&held.dir, RELEASED);
        }
    }
}

/// Makes a marked placeholder at `path`, held: its descriptor (shared
/// lock taken) and identity. `Ok(None)` when something appeared there
/// meanwhile.
fn make(path: &Path) -> io::Result<Option<(File, u64, u64)>> {
    let parent = path.parent().ok_or(io::ErrorKind::InvalidInput)?;
    // A random name (a few tries, then made in place): a job in the same
    // repository cannot take the names ahead of the host.
    let temp = tempfile::Builder::new()
        .prefix(".jobwarden-placeholder-")
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in(parent);
    let temp = match temp {
        Ok(temp) => temp.keep(),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return make_in_place(path),
        Err(e) => return Err(e),
    };
    let (dir, dev, ino) = match mark_and_lock(&temp) {
        Ok(made) => made,
        Err(e) => {
            let _ = std::fs::remove_dir(&temp);
            return Err(e);
        }
    };
    match rename_noreplace(&temp, path) {
        Ok(()) => Ok(Some((dir, dev, ino))),
        Err(e) => {
            let _ = std::fs::remove_dir(&temp);
            match e.raw_os_error() {
                Some(libc::EEXIST) => Ok(None),
                // A file system without RENAME_NOREPLACE: made in place,
                // marked a moment after it appears.
                Some(libc::EINVAL | libc::ENOSYS) => make_in_place(path),
                _ => Err(e),
            }
        }
    }
}

fn make_in_place(path: &Path) -> io::Result<Option<(File, u64, u64)>> {
    match std::fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    }
    let made = mark_and_lock(path);
    if made.is_err() {
        let _ = std::fs::remove_dir(path);
    }
    made.map(Some)
}

/// Opens the directory just made at `path`, marks it `held` and takes the
/// shared lock (nobody else knows it yet: the lock is immediate).
fn mark_and_lock(path: &Path) -> io::Result<(File, u64, u64)> {
    let dir = open_dir(path)?;
    set_mark(&dir, HELD);
    lock_shared(&dir)?;
    let meta = dir.metadata()?;
    Ok((dir, meta.dev(), meta.ino()))
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let cstring = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (from, to) = (cstring(from)?, cstring(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_dir(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

fn same(dir: &File, dev: u64, ino: u64) -> bool {
    dir.metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// A shared `flock`, retried while a host removing the directory has it
/// exclusively, for up to [`LOCK_WAIT`].
fn lock_shared(dir: &File) -> io::Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        if try_lock(dir, libc::LOCK_SH) {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) || Instant::now() >= deadline {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn try_lock(dir: &File, op: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(dir.as_raw_fd(), op | libc::LOCK_NB) == 0 }
}

fn set_mark(dir: &File, value: &[u8]) {
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

fn unmark(dir: &File) {
    // SAFETY: a descriptor we own; the name outlives the call.
    unsafe { libc::fremovexattr(dir.as_raw_fd(), MARK.as_ptr()) };
}

fn mark(dir: &File) -> Option<Vec<u8>> {
    let mut value = [0u8; 16];
    // SAFETY: a descriptor we own; the buffer's length is passed.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            MARK.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    (n >= 0).then(|| value[..n as usize].to_vec())
}

/// Whether the directory at `path` carries the mark (read without opening
/// it: a directory the host may not read is not a placeholder).
fn path_marked(path: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 16];
    // SAFETY: a NUL-terminated path and a buffer whose length is passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            MARK.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another host's job on the directory: a shared lock through a
    /// descriptor of its own (a separate open file description conflicts
    /// like another process's).
    fn other_host(path: &Path) -> File {
        let dir = open_dir(path).unwrap();
        assert!(try_lock(&dir, libc::LOCK_SH));
        dir
    }

    /// Whether the file system under `dir` keeps user extended attributes
    /// (marked on a directory of its own, not `dir`).
    fn xattrs_here(dir: &Path) -> bool {
        let trial = dir.join("xattr-trial");
        std::fs::create_dir(&trial).unwrap();
        let probe = open_dir(&trial).unwrap();
        set_mark(&probe, HELD);
        let here = mark(&probe).is_some();
        std::fs::remove_dir(&trial).unwrap();
        here
    }

    fn skip_unmarked(dir: &Path) {
        crate::sandbox::os::test_skip(
            "user-xattrs",
            &format!(
                "no user extended attributes in {}: placeholders are unmarked there",
                dir.display()
            ),
        );
    }

    #[test]
    fn a_placeholder_is_made_marked_and_removed_with_its_last_job() {
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().join(".vscode");
        let first = Hold::take(&path).unwrap().unwrap();
        let second = Hold::take(&path).unwrap().unwrap();
        assert!(path.is_dir());
        if xattrs_here(repo.path()) {
            assert_eq!(mark(&open_dir(&path).unwrap()).as_deref(), Some(HELD));
        }
        drop(first);
        assert!(path.is_dir(), "removed under the second job");
        drop(second);
        assert!(!path.exists(), "left behind");
        // No temporary name left either.
        assert_eq!(std::fs::read_dir(repo.path()).unwrap().count(), 0);
    }

    #[test]
    fn another_hosts_job_keeps_it_and_the_last_holder_removes_it() {
        let repo = tempfile::tempdir().unwrap();
        if !xattrs_here(repo.path()) {
            return skip_unmarked(repo.path());
        }
        let path = repo.path().join(".vscode");
        let hold = Hold::take(&path).unwrap().unwrap();
        let other = other_host(&path);
        drop(hold);
        assert!(path.is_dir(), "removed under another host's job");
        let dir = open_dir(&path).unwrap();
        assert_eq!(mark(&dir).as_deref(), Some(RELEASED));
        drop(other);
        // A host that finds it released takes it, and removes it after.
        let hold = Hold::take(&path).unwrap().unwrap();
        drop(hold);
        assert!(!path.exists(), "the released placeholder was left behind");
    }

    #[test]
    fn a_killed_hosts_placeholder_is_held_but_never_removed_by_another() {
        let repo = tempfile::tempdir().unwrap();
        if !xattrs_here(repo.path()) {
            return skip_unmarked(repo.path());
        }
        let path = repo.path().join(".idea");
        std::fs::create_dir(&path).unwrap();
        set_mark(&open_dir(&path).unwrap(), HELD);
        let hold = Hold::take(&path)
            .unwrap()
            .expect("a marked placeholder is held");
        drop(hold);
        assert!(path.is_dir(), "removed: its maker's jobs may still run");
    }

    #[test]
    fn a_placeholder_the_user_filled_stays_and_becomes_theirs() {
        let repo = tempfile::tempdir().unwrap();
        if !xattrs_here(repo.path()) {
            return skip_unmarked(repo.path());
        }
        let path = repo.path().join(".vscode");
        let hold = Hold::take(&path).unwrap().unwrap();
        std::fs::write(path.join("settings.json"), "{}").unwrap();
        drop(hold);
        assert!(path.join("settings.json").is_file());
        assert!(!path_marked(&path), "still marked as a placeholder");
        assert!(
            Hold::take(&path).unwrap().is_none(),
            "held as a placeholder"
        );
    }

    #[test]
    fn the_users_directories_and_files_are_neither_held_nor_removed() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join(".idea");
        std::fs::create_dir(&dir).unwrap();
        assert!(Hold::take(&dir).unwrap().is_none());
        assert!(dir.is_dir());
        let file = repo.path().join(".vscode");
        std::fs::write(&file, "").unwrap();
        assert!(Hold::take(&file).unwrap().is_none());
        assert!(file.is_file());
    }

    #[test]
    fn a_placeholder_replaced_under_a_held_entry_is_held_afresh() {
        // Something outside removes the held placeholder (`git clean`)
        // and another is made there: the next job holds the new one, not
        // the stale entry.
        let repo = tempfile::tempdir().unwrap();
        let path = repo.path().join(".vscode");
        let old = Hold::take(&path).unwrap().unwrap();
        std::fs::remove_dir(&path).unwrap();
        let new = Hold::take(&path).unwrap().unwrap();
        assert_ne!(old.key, new.key);
        assert!(path.is_dir());
        drop(old);
        assert!(path.is_dir(), "the new placeholder went with the old hold");
        drop(new);
        assert!(!path.exists());
    }

    #[test]
    fn a_placeholder_locked_by_some_other_process_is_left_unheld() {
        let repo = tempfile::tempdir().unwrap();
        if !xattrs_here(repo.path()) {
            return skip_unmarked(repo.path());
        }
        let path = repo.path().join(".vscode");
        std::fs::create_dir(&path).unwrap();
        let locker = open_dir(&path).unwrap();
        set_mark(&locker, HELD);
        assert!(try_lock(&locker, libc::LOCK_EX));
        assert!(Hold::take(&path).unwrap().is_none());
        assert!(path.is_dir());
    }
}
