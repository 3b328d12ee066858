//! What Linux and macOS share: pipes and exit watching for the poller,
//! signal names, file identity, the rlimits both apply the same way, and
//! small filesystem and terminal helpers.

mod watch;

pub use watch::{ExitWatch, Pipe, ReadyList};

use crate::decision::Plan;
use crate::policy::{Limit, units::format_size};
use crate::sandbox::common::{PrepareError, Signals, io_err};
use crate::sandbox::report::{EnforcementReport, Status};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Environment variable names are case-sensitive here.
pub const ENV_IGNORE_CASE: bool = false;

/// The signals jobwarden explains.
pub const SIGNALS: Signals = Signals {
    kill: Some(libc::SIGKILL),
    cpu_limit: Some(libc::SIGXCPU),
    file_size_limit: Some(libc::SIGXFSZ),
};

/// The conventional name of a signal.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "unknown signal",
    }
}

/// Device, inode, size, and modification and change times: a file whose
/// identity is unchanged has unchanged contents.
pub type FileIdentity = (u64, u64, u64, i64, i64, i64, i64);

/// The identity of a file for the hash cache.
pub fn file_identity(m: &std::fs::Metadata) -> Option<FileIdentity> {
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// `ru_maxrss` in bytes: Linux counts KiB, macOS bytes.
pub(crate) fn max_rss_bytes(ru_maxrss: libc::c_long) -> u64 {
    let value = ru_maxrss.max(0) as u64;
    if cfg!(target_os = "linux") {
        value * 1024
    } else {
        value
    }
}

/// The facts about the host that attributing processes to jobs needs.
#[derive(Debug, Clone, Copy)]
pub struct HostProcess {
    pub pid: i32,
    pub session: i32,
}

impl HostProcess {
    pub fn current() -> Self {
        Self {
            pid: std::process::id() as i32,
            // SAFETY: getsid(0) has no preconditions.
            session: unsafe { libc::getsid(0) },
        }
    }
}

/// True for a regular file with an execute bit.
pub fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Creates a directory only its owner can enter.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Opens (creating if needed, mode 0600) a file for appending.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Recreates the symlink `from` at `to`.
pub fn copy_symlink(from: &Path, to: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
}

/// Columns of the terminal on stderr, if it is one.
pub fn terminal_columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes a winsize into the local.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut size) } == 0 && size.ws_col > 0)
        .then_some(size.ws_col as usize)
}

/// `sysname release machine`, from uname(2).
pub fn platform_description() -> String {
    // SAFETY: uname into a local struct; its fields are NUL-terminated.
    unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) != 0 {
            return std::env::consts::OS.to_string();
        }
        let field = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!(
            "{} {} {}",
            field(&uts.sysname),
            field(&uts.release),
            field(&uts.machine)
        )
    }
}

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
        return Err(io_err("pipe")(io::Error::last_os_error()));
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
        return Err(io_err("fcntl(O_NONBLOCK)")(io::Error::last_os_error()));
    }
    Ok(())
}

/// A resource limit to set in the child: (resource, soft, hard).
pub type Rlimit = (rlimit::Resource, u64, u64);

/// Appends `resource` at `soft`/`hard`, never above the host's own hard
/// limit (raising it would fail the whole spawn).
pub(crate) fn push_rlimit(
    rlimits: &mut Vec<Rlimit>,
    resource: rlimit::Resource,
    soft: u64,
    hard: u64,
) {
    let current_hard = rlimit::getrlimit(resource)
        .map(|(_, h)| h)
        .unwrap_or(u64::MAX);
    rlimits.push((resource, soft.min(current_hard), hard.min(current_hard)));
}

/// The rlimits every Unix applies the same way: CPU time, open files, file
/// size and core dumps.
pub(crate) fn common_rlimits(plan: &Plan) -> Vec<Rlimit> {
    let mut rlimits = Vec::new();
    let l = &plan.limits;
    if let Limit::Value(secs) = l.cpu_secs.value {
        // SIGXCPU at the limit, SIGKILL two seconds of CPU later.
        push_rlimit(
            &mut rlimits,
            rlimit::Resource::CPU,
            secs,
            secs.saturating_add(2),
        );
    }
    if let Limit::Value(n) = l.open_files.value {
        push_rlimit(&mut rlimits, rlimit::Resource::NOFILE, n, n);
    }
    if let Limit::Value(n) = l.file_size.value {
        push_rlimit(&mut rlimits, rlimit::Resource::FSIZE, n, n);
    }
    if !l.core_dumps.value {
        push_rlimit(&mut rlimits, rlimit::Resource::CORE, 0, 0);
    }
    rlimits
}

/// Reports the CPU limit (RLIMIT_CPU).
pub(crate) fn describe_cpu(plan: &Plan, report: &mut EnforcementReport) {
    let l = &plan.limits;
    match l.cpu_secs.value {
        Limit::Value(secs) => report.add(
            "cpu",
            Status::Enforced,
            format!("cpu {secs} s"),
            format!("{secs} s per process (RLIMIT_CPU)"),
            true,
        ),
        Limit::Unlimited => report.unlimited("cpu", &l.cpu_secs.key),
    }
}

/// Reports open files, file size and core dumps (rlimits).
pub(crate) fn describe_files(plan: &Plan, report: &mut EnforcementReport) {
    let l = &plan.limits;
    match l.open_files.value {
        Limit::Value(n) => report.add(
            "open_files",
            Status::Enforced,
            format!("open files {n}"),
            format!("{n} per process (RLIMIT_NOFILE)"),
            true,
        ),
        Limit::Unlimited => report.unlimited("open_files", &l.open_files.key),
    }
    match l.file_size.value {
        Limit::Value(n) => report.add(
            "file_size",
            Status::Enforced,
            format!("file size {}", format_size(n)),
            format!("{} per file (RLIMIT_FSIZE)", format_size(n)),
            true,
        ),
        Limit::Unlimited => report.unlimited("file_size", &l.file_size.key),
    }
    if l.core_dumps.value {
        report.add(
            "core_dumps",
            Status::NotRequested,
            "core dumps allowed",
            "allowed by the policy",
            false,
        );
    } else {
        report.add(
            "core_dumps",
            Status::Enforced,
            "no core dumps",
            "off (RLIMIT_CORE 0)",
            true,
        );
    }
}

/// Reports the new session and the descriptors the job inherits.
pub(crate) fn describe_session(report: &mut EnforcementReport) {
    report.add(
        "session",
        Status::Enforced,
        "own session",
        "own session and process group, no controlling terminal, stdin /dev/null",
        true,
    );
    report.add(
        "descriptors",
        Status::Enforced,
        "stdio only",
        "only stdin, stdout and stderr are inherited",
        true,
    );
}

/// Reports the per-user process limit (RLIMIT_NPROC) used when no better
/// mechanism exists: partial for a normal user, nothing for root. Either
/// way it is less than the whole-tree limit asked, so `required` refuses.
pub(crate) fn describe_nproc(n: u64, is_root: bool, why: &str, report: &mut EnforcementReport) {
    if is_root {
        report.add(
            "processes",
            Status::NotEnforced,
            "processes",
            format!("{n}: {why}, and RLIMIT_NPROC is ignored for root"),
            true,
        );
    } else {
        report.add(
            "processes",
            Status::Partial,
            format!("processes {n} (per user)"),
            format!("{n} via RLIMIT_NPROC, which counts every process of the user: {why}"),
            true,
        );
    }
}
