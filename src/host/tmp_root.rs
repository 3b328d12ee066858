//! The host's directory of per-job directories, and the clean-up of those
//! that hosts killed without warning (SIGKILL, a power cut) left behind.
//!
//! The directory is named `jobwarden-PID-START-RANDOM` in the temporary
//! directory: PID and START (when the process started, in clock ticks after
//! boot; 0 where the platform cannot tell) say which host made it, so a
//! later host removes it only once that host is gone, and never a live
//! host's even when the pid has been reused. Only directories of this
//! user are considered, never followed through a symlink.

use std::io;
use std::path::{Path, PathBuf};

/// Creates this host's directory in `base`.
pub(super) fn create(base: &Path) -> io::Result<tempfile::TempDir> {
    let pid = std::process::id();
    let start = crate::platform::process_start(pid).unwrap_or(0);
    tempfile::Builder::new()
        .prefix(&format!("jobwarden-{pid}-{start}-"))
        .tempdir_in(base)
}

/// The host a directory name says made it: its pid and start time.
fn owner(name: &str) -> Option<(u32, Option<u64>)> {
    let mut parts = name.strip_prefix("jobwarden-")?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start: u64 = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    if random.is_empty() {
        return None;
    }
    Some((pid, (start != 0).then_some(start)))
}

/// Removes the directories in `base` of hosts that no longer run, and
/// says which could not be removed.
pub(super) fn remove_stale(base: &Path) -> Vec<(PathBuf, io::Error)> {
    let mut failed = Vec::new();
    let Ok(entries) = std::fs::read_dir(base) else {
        return failed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = name.to_str().and_then(owner) else {
            continue;
        };
        if crate::platform::process_is_running(pid, start) {
            continue;
        }
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if crate::platform::is_own_directory(&m) => {}
            _ => continue,
        }
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => failed.push((path, e)),
            _ => {}
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_which_host_made_them() {
        assert_eq!(owner("jobwarden-12-345-abc"), Some((12, Some(345))));
        assert_eq!(owner("jobwarden-12-0-abc"), Some((12, None)));
        assert_eq!(owner("jobwarden-12-abc"), None, "no start time");
        assert_eq!(owner("jobwarden-12-345-"), None);
        assert_eq!(owner("jobwarden-doctor-job"), None);
        assert_eq!(owner("other-12-345-abc"), None);
    }
}
