//! Platform facts on Unix (Linux and macOS).

use super::Signals;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// What kind of file `metadata` describes.
pub(super) fn file_kind(metadata: &std::fs::Metadata) -> super::FileKind {
    use super::FileKind;
    let t = metadata.file_type();
    if t.is_file() {
        FileKind::Regular
    } else if t.is_dir() {
        FileKind::Directory
    } else if t.is_fifo() {
        FileKind::Fifo
    } else if t.is_socket() {
        FileKind::Socket
    } else if t.is_char_device() {
        FileKind::CharDevice
    } else if t.is_block_device() {
        FileKind::BlockDevice
    } else {
        FileKind::Other
    }
}

/// Opens `path` for reading without waiting: a FIFO swapped in for a file
/// opens at once (and is then refused by its kind) instead of blocking
/// until a writer comes; never as a controlling terminal.
pub(super) fn open_without_blocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Who a process is: its pid and when it started, so a pid the kernel
/// has since given to another process is not mistaken for it.
pub fn process_start(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // Field 22 of /proc/PID/stat, in clock ticks after boot; the fields
        // after the command name (which may hold spaces) start at field 3.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_ascii_whitespace().nth(19)?.parse().ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Whether the process `pid`, started at `start` when that was known, is
/// still running.
pub fn process_is_running(pid: u32, start: Option<u64>) -> bool {
    if let (Some(start), Some(now)) = (start, process_start(pid)) {
        return start == now;
    }
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Whether `metadata` (of a path not followed through a symlink) is a
/// directory owned by this process's user.
pub fn is_own_directory(metadata: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    metadata.file_type().is_dir() && metadata.uid() == unsafe { libc::geteuid() }
}

/// Recreates the symlink `from` at `to`.
pub fn copy_symlink(from: &Path, to: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
}

/// Whether this process runs as root: file permissions do not refuse it.
pub fn is_superuser() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
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
