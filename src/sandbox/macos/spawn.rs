//! The spec and the spawner on macOS: `std::process::Command` with a
//! `pre_exec` hook that starts a session, sets the rlimits, changes into
//! the working directory opened (and checked) by the parent, and marks every
//! descriptor beyond stdio close-on-exec.

use super::io::{ExitWatch, Pipe};
use super::tree::Tree;
use crate::decision::Plan;
use crate::sandbox::unix::rlimits::{self, Rlimit};
use crate::sandbox::unix::{pipe, set_nonblocking};
use crate::sandbox::{JobDir, PrepareError, SpawnError, Spawned};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Everything the child needs, built in the parent.
pub(crate) struct Spec {
    program: PathBuf,
    argv0: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The working directory, open until the spawn (the hook uses its number).
    cwd: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    output: (Pipe, Pipe),
    dir: JobDir,
    /// Rlimits layer.
    pub rlimits: Vec<Rlimit>,
}

impl Spec {
    /// The base of a spec: everything the plan says about the process itself.
    pub fn new(plan: &Plan, dir: JobDir) -> Result<Self, PrepareError> {
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        set_nonblocking(&stdout_r)?;
        set_nonblocking(&stderr_r)?;
        Ok(Self {
            program: plan.program.clone(),
            argv0: plan.argv0.clone(),
            args: plan.args.clone(),
            env: plan
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: open_cwd(&plan.repo, &plan.cwd)?,
            stdout: stdout_w,
            stderr: stderr_w,
            output: (Pipe::new(stdout_r), Pipe::new(stderr_r)),
            dir,
            rlimits: Vec::new(),
        })
    }
}

/// Starts jobs (std's fork and exec).
pub(crate) struct Spawner;

impl Spawner {
    pub fn new() -> Result<Self, SpawnError> {
        Ok(Self)
    }

    pub fn spawn(&mut self, spec: Spec) -> Result<Spawned, SpawnError> {
        let Spec {
            program,
            argv0,
            args,
            env,
            cwd,
            stdout,
            stderr,
            output: (out, err),
            dir,
            rlimits,
        } = spec;
        // Filled in the child with its open descriptors (allocated here: the
        // child may not allocate).
        let mut fds: Vec<ProcFdInfo> = vec![ProcFdInfo::default(); FD_LIST_ROOM];
        // Used when the list does not fit: every number up to the limit.
        let max_fd = open_files_limit().min(1 << 20) as RawFd;
        let mut command = Command::new(&program);
        command
            .arg0(&argv0)
            .args(&args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let cwd_fd = cwd.as_raw_fd();
        // SAFETY: the hook runs in the forked child before exec and makes only
        // async-signal-safe system calls on data prepared here; it allocates
        // nothing and takes no locks.
        unsafe {
            command.pre_exec(move || child_setup(cwd_fd, &rlimits, &mut fds, max_fd));
        }
        let child = command.spawn().map_err(SpawnError::Exec)?;
        drop(command);
        drop(cwd);
        let pid = child.id() as i32;
        // The exit is collected with wait4 by pid, not through `Child`.
        drop(child);
        Ok(Spawned {
            pid,
            exit: ExitWatch::new(pid, None),
            tree: Tree::new(pid),
            stdout: out,
            stderr: err,
            dir,
            observer: None,
        })
    }
}

fn open_files_limit() -> u64 {
    // SAFETY: getrlimit writes into a local struct.
    let mut current: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return 4096;
    }
    current.rlim_cur as u64
}

/// `struct proc_fdinfo` of `<sys/proc_info.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProcFdInfo {
    fd: i32,
    kind: u32,
}

const PROC_PIDLISTFDS: libc::c_int = 1;
/// Descriptors listed at most; beyond that, every number is swept.
const FD_LIST_ROOM: usize = 4096;

/// In the child: own session, rlimits, working directory, and every
/// descriptor above stdio marked close-on-exec — the ones the kernel lists
/// as open, or, if they do not fit the list, every number up to the limit.
fn child_setup(
    cwd: RawFd,
    rlimits: &[Rlimit],
    fds: &mut [ProcFdInfo],
    max_fd: RawFd,
) -> io::Result<()> {
    // SAFETY: async-signal-safe calls with plain integers and locals.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        rlimits::apply_in_child(rlimits).map_err(io::Error::from_raw_os_error)?;
        if libc::fchdir(cwd) != 0 {
            return Err(io::Error::last_os_error());
        }
        let room = std::mem::size_of_val(fds) as libc::c_int;
        let bytes = libc::proc_pidinfo(
            libc::getpid(),
            PROC_PIDLISTFDS,
            0,
            fds.as_mut_ptr().cast(),
            room,
        );
        if bytes > 0 && bytes < room {
            let n = bytes as usize / std::mem::size_of::<ProcFdInfo>();
            for info in &fds[..n] {
                if info.fd > 2 {
                    libc::fcntl(info.fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
        } else {
            for fd in 3..max_fd {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Opens the working directory and checks, on the opened descriptor, that
/// it is still inside the repository (a directory on the way may have been
/// swapped for a symlink since the decision).
fn open_cwd(repo: &Path, dir: &Path) -> Result<OwnedFd, PrepareError> {
    let path =
        std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| PrepareError::NulByte {
            what: "working directory",
        })?;
    // SAFETY: open of a NUL-terminated path; checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(PrepareError::OpenWorkingDir {
            path: dir.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: F_GETPATH writes at most PATH_MAX bytes into the buffer.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) } < 0 {
        return Err(PrepareError::last_os_error("fcntl(F_GETPATH)"));
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let actual = PathBuf::from(std::ffi::OsStr::from_bytes(&buf[..len]));
    if !actual.starts_with(repo) {
        return Err(PrepareError::WorkingDirEscaped {
            path: dir.to_path_buf(),
            actual,
        });
    }
    Ok(fd)
}
