//! A job's output pipes and exit notification, as the host's poller sees
//! them: readable pipes and, where the kernel has pidfds, a readable pidfd,
//! all in one poll set. Without a pidfd (macOS) the exit is polled.

use crate::sandbox::ExitInfo;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// How often a job's exit is looked for when there is no pidfd to watch.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Sources that became ready outside the poller. Every source here is
/// pollable, so it is always empty; the type exists so the host is the same
/// on every platform.
#[derive(Debug, Default)]
pub(crate) struct ReadyList;

impl ReadyList {
    pub fn new(_waker: std::sync::Arc<mio::Waker>) -> Self {
        Self
    }

    /// Moves the tokens made ready since the last call into `ready`.
    pub fn drain_into(&self, _ready: &mut HashSet<Token>) {}
}

/// The read end of a job's stdout or stderr (non-blocking).
#[derive(Debug)]
pub(crate) struct Pipe {
    file: File,
}

impl Pipe {
    pub fn new(fd: OwnedFd) -> Self {
        Self {
            file: File::from(fd),
        }
    }

    /// Watches the pipe for readability under `token`.
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        _ready: &ReadyList,
    ) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.file.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Stops watching.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.file.as_raw_fd()));
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

/// Notices the exit of a job's first process: its pidfd becomes readable,
/// or, without one, a periodic non-blocking wait finds it.
#[derive(Debug)]
pub(crate) struct ExitWatch {
    pid: i32,
    pidfd: Option<OwnedFd>,
}

impl ExitWatch {
    pub(crate) fn new(pid: i32, pidfd: Option<OwnedFd>) -> Self {
        Self { pid, pidfd }
    }

    /// Watches for the exit under `token`.
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        _ready: &ReadyList,
    ) -> io::Result<()> {
        match &self.pidfd {
            Some(fd) => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
            }
            None => Ok(()),
        }
    }

    /// Stops watching.
    pub fn deregister(&mut self, registry: &Registry) {
        if let Some(fd) = &self.pidfd {
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
    }

    /// How often to call [`ExitWatch::try_wait`] without an event: never
    /// with a pidfd.
    pub fn poll_every(&self) -> Option<Duration> {
        self.pidfd.is_none().then_some(EXIT_POLL)
    }

    /// Reaps the process if it has exited; never blocks.
    pub fn try_wait(&mut self) -> Option<ExitInfo> {
        self.wait4(libc::WNOHANG)
    }

    /// Waits for the process to exit and reaps it.
    pub fn wait(&mut self) -> ExitInfo {
        loop {
            if let Some(info) = self.wait4(0) {
                return info;
            }
        }
    }

    fn wait4(&mut self, options: libc::c_int) -> Option<ExitInfo> {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to overwrite.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child; outputs are locals.
        let ret = unsafe { libc::wait4(self.pid, &mut status, options, &mut rusage) };
        if ret < 0 && std::io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            return None;
        }
        let timeval = |tv: libc::timeval| {
            Duration::from_secs(tv.tv_sec.max(0) as u64)
                + Duration::from_micros(tv.tv_usec.max(0) as u64)
        };
        match ret {
            0 => None,
            r if r == self.pid => Some(ExitInfo {
                code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
                signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
                user: timeval(rusage.ru_utime),
                system: timeval(rusage.ru_stime),
                max_rss: max_rss_bytes(rusage.ru_maxrss),
                lost: false,
            }),
            // ECHILD: another part of this program reaped it.
            _ => Some(ExitInfo {
                lost: true,
                ..ExitInfo::default()
            }),
        }
    }
}

/// `ru_maxrss` in bytes: Linux counts KiB, macOS bytes.
fn max_rss_bytes(ru_maxrss: libc::c_long) -> u64 {
    let value = ru_maxrss.max(0) as u64;
    if cfg!(target_os = "linux") {
        value * 1024
    } else {
        value
    }
}
