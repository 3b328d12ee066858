//! A job's output pipes and exit notification, as the host's poller sees
//! them: readable pipes and a readable pidfd, all in one epoll set.

use crate::sandbox::common::ExitInfo;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// Tokens of sources that became ready outside the poller (unused on Linux:
/// every source here is pollable).
pub type ReadyList = std::sync::Arc<std::sync::Mutex<Vec<Token>>>;

/// The read end of a job's stdout or stderr (non-blocking).
#[derive(Debug)]
pub struct Pipe {
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

/// Notices the exit of a job's first process: its pidfd becomes readable.
#[derive(Debug)]
pub struct ExitWatch {
    pid: i32,
    pidfd: OwnedFd,
}

impl ExitWatch {
    pub(crate) fn new(pid: i32, pidfd: OwnedFd) -> Self {
        Self { pid, pidfd }
    }

    /// Watches for the exit under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.pidfd.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Stops watching.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.pidfd.as_raw_fd()));
    }

    /// How often to call [`ExitWatch::try_wait`] without an event: never here.
    pub fn poll_every(&self) -> Option<Duration> {
        None
    }

    /// Reaps the process if it has exited; never blocks.
    pub fn try_wait(&mut self) -> Option<ExitInfo> {
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to overwrite.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with WNOHANG; outputs are locals.
        let ret = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut rusage) };
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
                max_rss: rusage.ru_maxrss.max(0) as u64 * 1024,
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
