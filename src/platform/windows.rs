//! Platform facts on Windows.

use super::Signals;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Environment variable names are case-insensitive on Windows.
pub const ENV_IGNORE_CASE: bool = true;

/// Windows has no signals to explain.
pub const SIGNALS: Signals = Signals {
    kill: None,
    cpu_limit: None,
    file_size_limit: None,
};

/// There are no signal numbers on Windows.
pub fn signal_name(_signal: i32) -> &'static str {
    "unknown signal"
}

/// Windows offers no file identity a user cannot forge (times can be set
/// back with `SetFileTime`), so pinned binaries are hashed every time.
pub type FileIdentity = ();

/// None: nothing is cached (see [`FileIdentity`]).
pub fn file_identity(_: &std::fs::Metadata) -> Option<FileIdentity> {
    None
}

/// A regular file. Windows has no execute bit, and `PATHEXT` is not
/// consulted: a policy names the file exactly (`git.exe`).
pub fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Creates a directory (its ACL is inherited from the parent: keep the
/// host's temporary directory private to its user).
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir(path)
}

/// Opens (creating if needed) a file for appending.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What kind of file `metadata` describes (Windows tells files from
/// directories; pipes and devices are not reached through paths here).
pub(super) fn file_kind(metadata: &std::fs::Metadata) -> super::FileKind {
    if metadata.is_file() {
        super::FileKind::Regular
    } else if metadata.is_dir() {
        super::FileKind::Directory
    } else {
        super::FileKind::Other
    }
}

/// Opens `path` for reading.
pub(super) fn open_without_blocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// When a process started: not known here.
pub fn process_start(_pid: u32) -> Option<u64> {
    None
}

/// Whether a process is still running: assumed so here, so nothing of a
/// live process is ever taken for stale.
pub fn process_is_running(_pid: u32, _start: Option<u64>) -> bool {
    true
}

/// Whether `metadata` is a directory this user may treat as its own.
pub fn is_own_directory(metadata: &std::fs::Metadata) -> bool {
    metadata.is_dir()
}

/// Recreates the symlink `from` at `to`, or copies what it points to when
/// this user may not create symlinks.
pub fn copy_symlink(from: &Path, to: &Path) -> io::Result<()> {
    let target = std::fs::read_link(from)?;
    let linked = if from.is_dir() {
        std::os::windows::fs::symlink_dir(&target, to)
    } else {
        std::os::windows::fs::symlink_file(&target, to)
    };
    match linked {
        Ok(()) => Ok(()),
        Err(_) if from.is_file() => std::fs::copy(from, to).map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Whether this process runs as root; Windows has none (an elevated token
/// is still refused by file ACLs that name other users).
pub fn is_superuser() -> bool {
    false
}

/// `Windows <arch>`.
pub fn platform_description() -> String {
    format!("Windows {}", std::env::consts::ARCH)
}
