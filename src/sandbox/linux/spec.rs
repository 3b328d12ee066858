//! Everything the child needs, prepared by the parent: the base (program,
//! arguments, environment, working directory, stdio) from the plan, and one
//! part per layer. Every descriptor here is close-on-exec and numbered 3 or
//! above, so the child's `dup2` onto 0–2 cannot clobber another of them.

use super::cgroup::JobCgroup;
use super::filter::{Programs, Rule};
use super::holds::Hold;
use super::io::Pipe;
use super::mounts::Namespace;
use super::observe::ObserveSpec;
use crate::decision::Plan;
use crate::sandbox::unix::rlimits::Rlimit;
use crate::sandbox::unix::{pipe, set_nonblocking};
use crate::sandbox::{JobDir, PrepareError};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Capacity asked for a job's stdout pipe (the kernel default is 64 KiB).
const STDOUT_PIPE_BYTES: libc::c_int = 256 * 1024;

/// The child's instructions. Dropping an unspawned spec undoes what the
/// layers created (the job's cgroups, its directory).
pub(crate) struct Spec {
    /// Path executed (canonical).
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The working directory, opened beneath the repository.
    pub cwd: OwnedFd,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The read ends of stdout and stderr, for the host.
    pub output: (Pipe, Pipe),
    /// The job's `{tmp}`.
    pub dir: JobDir,

    /// Program layer: when set, the child executes this descriptor
    /// (`execveat`), binding the exec to the very file whose hash was checked.
    pub exec_fd: Option<OwnedFd>,
    /// Containment layer: the job's cgroups, and the files the child
    /// writes "0" to to join them (`cgroup.procs` in v2, `tasks` in v1).
    pub cgroup: Option<JobCgroup>,
    pub cgroup_procs: Vec<OwnedFd>,
    /// The job's v2 cgroup directory, when it has one; `cgroup_procs[0]` is
    /// then its `cgroup.procs`. The child is born into it where the kernel
    /// lets it (`CLONE_INTO_CGROUP`) and skips that write.
    pub cgroup_v2_dir: Option<OwnedFd>,
    /// Rlimits layer.
    pub rlimits: Vec<Rlimit>,
    /// Mount layer: the job's own mount namespace, and the protected
    /// directories held for its read-only mounts (placeholders made for
    /// it, locks keeping other hosts from removing theirs; released with
    /// the job's tree).
    pub namespace: Option<Namespace>,
    pub holds: Vec<Hold>,
    /// Session layer: `setsid`, the parent-death signal, and closing every
    /// descriptor beyond stdio at exec.
    pub new_session: bool,
    pub parent_death_signal: Option<libc::c_int>,
    pub only_stdio: bool,
    /// Privileges layer: drop every capability up to this number.
    pub drop_capabilities_to: Option<u32>,
    pub no_new_privs: bool,
    /// Rules the layers want in the seccomp filter; the seccomp layer
    /// compiles them into `seccomp`.
    pub seccomp_rules: Vec<Rule>,
    /// Seccomp layer: BPF programs installed, in order, after `no_new_privs`.
    pub seccomp: Option<Arc<Programs>>,
    /// Landlock layer: the ruleset, restricted last.
    pub landlock: Option<OwnedFd>,
    /// Observation layer: the notify filter, installed after everything.
    pub observe: Option<ObserveSpec>,
}

impl Spec {
    /// The base of a spec: everything the plan says about the process
    /// itself. The layers add the rest.
    pub fn new(plan: &Plan, dir: JobDir) -> Result<Self, PrepareError> {
        let cstring = |what: &'static str, bytes: &[u8]| {
            CString::new(bytes).map_err(|_| PrepareError::NulByte { what })
        };
        let argv = std::iter::once(plan.argv0.as_str())
            .chain(plan.args.iter().map(String::as_str))
            .map(|a| cstring("argument", a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = plan
            .env
            .iter()
            .map(|(k, v)| cstring("environment", format!("{k}={v}").as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let program = cstring("program path", plan.program.as_os_str().as_bytes())?;

        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        // A larger stdout pipe lets a chatty job write more per wake-up of
        // the host thread. Its pages are charged to the writer (the job's
        // memory cgroup); failure (a lower pipe-max-size) keeps the default.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(stdout_w.as_raw_fd(), libc::F_SETPIPE_SZ, STDOUT_PIPE_BYTES) };
        set_nonblocking(&stdout_r)?;
        set_nonblocking(&stderr_r)?;
        let stdin = File::open("/dev/null").map_err(PrepareError::syscall("open(/dev/null)"))?;
        let cwd = open_beneath(&plan.repo, &plan.cwd)?;
        Ok(Self {
            program,
            argv,
            envp,
            cwd: above_stdio(cwd)?,
            stdin: above_stdio(OwnedFd::from(stdin))?,
            stdout: above_stdio(stdout_w)?,
            stderr: above_stdio(stderr_w)?,
            output: (Pipe::new(stdout_r), Pipe::new(stderr_r)),
            dir,
            exec_fd: None,
            cgroup: None,
            cgroup_procs: Vec::new(),
            cgroup_v2_dir: None,
            rlimits: Vec::new(),
            namespace: None,
            holds: Vec::new(),
            new_session: false,
            parent_death_signal: None,
            only_stdio: false,
            drop_capabilities_to: None,
            no_new_privs: false,
            seccomp_rules: Vec::new(),
            seccomp: None,
            landlock: None,
            observe: None,
        })
    }
}

fn set_cloexec(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Makes sure `fd` is numbered 3 or above (so the child's dup2 onto 0–2
/// cannot clobber another of its descriptors) and close-on-exec.
pub(crate) fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, PrepareError> {
    if fd.as_raw_fd() > 2 {
        set_cloexec(&fd);
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; the result is checked.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(PrepareError::last_os_error("fcntl(F_DUPFD_CLOEXEC)"));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// Opens `dir` (canonical, inside `repo`) so that the kernel guarantees the
/// result is beneath `repo`, even if a directory on the way was swapped for
/// a symlink since the decision.
fn open_beneath(repo: &Path, dir: &Path) -> Result<OwnedFd, PrepareError> {
    let cwd_error = |source: io::Error| PrepareError::OpenWorkingDir {
        path: dir.to_path_buf(),
        source,
    };
    let relative = dir
        .strip_prefix(repo)
        .map_err(|_| cwd_error(io::Error::from_raw_os_error(libc::EXDEV)))?;
    let repo_c = CString::new(repo.as_os_str().as_bytes()).map_err(|_| PrepareError::NulByte {
        what: "repository path",
    })?;
    // SAFETY: open of a NUL-terminated path; checked.
    let repo_fd = unsafe {
        libc::open(
            repo_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if repo_fd < 0 {
        return Err(cwd_error(io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor we own.
    let repo_fd = unsafe { OwnedFd::from_raw_fd(repo_fd) };
    if relative.as_os_str().is_empty() {
        return Ok(repo_fd);
    }
    let rel_c =
        CString::new(relative.as_os_str().as_bytes()).map_err(|_| PrepareError::NulByte {
            what: "working directory",
        })?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd, path and open_how of the right size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            repo_fd.as_raw_fd(),
            rel_c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(cwd_error(io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
