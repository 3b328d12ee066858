//! What Linux and macOS share: pipes and exit watching for the poller
//! (`io`), the rlimits layer, and the session's report items.

pub(crate) mod io;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub(crate) mod rlimits;

use crate::sandbox::PrepareError;
use crate::sandbox::report::{EnforcementReport, Item, ItemKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), PrepareError> {
    let mut fds = [0; 2];
    // Linux creates both ends close-on-exec atomically; elsewhere there is
    // a window in which a fork on another thread of the embedding program
    // could inherit them (it would only delay the end of the job's output).
    #[cfg(target_os = "linux")]
    // SAFETY: pipe2 writes two descriptors into the local array.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: pipe writes two descriptors into the local array.
    let ret = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if ret != 0 {
        return Err(PrepareError::last_os_error("pipe"));
    }
    // SAFETY: fresh descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if !cfg!(target_os = "linux") {
        for fd in [&r, &w] {
            // SAFETY: fcntl on a descriptor we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok((r, w))
}

/// Makes reads from `fd` return `WouldBlock` instead of waiting.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> Result<(), PrepareError> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(PrepareError::last_os_error("fcntl(O_NONBLOCK)"));
    }
    Ok(())
}

/// Reports the new session and the descriptors the job inherits; the child
/// makes both happen (`setsid`, `close_range` on Linux; `setsid` and marking
/// every listed descriptor close-on-exec on macOS).
pub(crate) fn report_session(report: &mut EnforcementReport) {
    report.push(Item::enforced(
        ItemKind::Session,
        "own session",
        "own session and process group, no controlling terminal, stdin /dev/null",
    ));
    report.push(Item::enforced(
        ItemKind::Descriptors,
        "stdio only",
        "only stdin, stdout and stderr are inherited",
    ));
}
