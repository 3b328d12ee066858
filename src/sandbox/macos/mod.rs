//! macOS: the same policy and host, with the confinement macOS lets an
//! unprivileged library apply — a new session and process group, rlimits,
//! the policy's environment, working directory and binary, stdin
//! `/dev/null` and no inherited descriptors — and an honest report of the
//! rest. There is no Landlock, no cgroup, no parent-death signal and no
//! `no_new_privs` here, so filesystem, network, signal scoping, memory, and
//! survival of a killed host are reported "not enforced on macOS" (and a
//! `required` policy refuses the job, naming them).
//!
//! Spawning uses `std::process::Command` with a `pre_exec` hook, so it
//! forks: its cost grows with the host's memory, unlike Linux's `CLONE_VM`
//! spawner. Exits are found by polling `wait4` every 10 ms (no pidfd).

use crate::decision::Plan;
use crate::policy::{Enforcement, Limit, units::format_size};
pub use crate::sandbox::common::{HashCache, PrepareError, SupportOptions};
use crate::sandbox::common::{check_pin, io_err};
use crate::sandbox::report::{EnforcementReport, Status};
pub use crate::sandbox::unix::{
    ENV_IGNORE_CASE, ExitWatch, FileIdentity, HostProcess, Pipe, ReadyList, SIGNALS, copy_symlink,
    create_private_dir, file_identity, is_executable_file, open_private_append,
    platform_description, signal_name, terminal_columns,
};
use crate::sandbox::unix::{
    Rlimit, common_rlimits, describe_cpu, describe_files, describe_nproc, describe_session, pipe,
    push_rlimit, set_nonblocking,
};
pub use crate::sandbox::unreaped::{
    ProcessId, Reaper, Snapshot, forget_leader, register_leader, snapshot,
};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The platform's name in reports.
pub const PLATFORM: &str = "macos";

/// What this machine lets jobwarden enforce.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostSupport {
    /// Whether the host runs as root (RLIMIT_NPROC is then ignored).
    pub is_root: bool,
}

impl HostSupport {
    pub fn detect(_options: &SupportOptions) -> Self {
        Self {
            // SAFETY: geteuid has no preconditions.
            is_root: unsafe { libc::geteuid() } == 0,
        }
    }

    /// What was detected, as labelled lines for `jobwarden doctor`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "user",
                if self.is_root { "root" } else { "not root" }.to_string(),
            ),
            (
                "confinement",
                "session, rlimits, environment, working directory; no filesystem or network sandbox on macOS".into(),
            ),
        ]
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        vec!["on macOS only `enforcement = \"best_effort\"` policies can run jobs: filesystem and network confinement are not available".into()]
    }
}

/// Nothing to clean up from earlier hosts: macOS jobs leave no kernel objects.
pub fn clean_stale(_support: &HostSupport, _host: HostProcess) {}

/// Everything the child needs, built in the parent.
pub struct SpawnSpec {
    command: RefCell<Command>,
    /// The working directory, open until the spawn (the hook uses its number).
    _cwd: OwnedFd,
}

/// A job ready to start.
pub struct Prepared {
    pub spec: SpawnSpec,
    pub stdout: Pipe,
    pub stderr: Pipe,
    pub containment: Containment,
    pub report: EnforcementReport,
}

/// What holds a job's processes together before it has a [`Tree`]: its
/// process group, which exists only once it runs.
pub struct Containment;

impl Containment {
    /// Nothing was created before the spawn.
    pub fn abandon(&self) {}
}

/// Prepares `plan`: checks the binary's pin, opens the working directory,
/// makes the pipes, computes rlimits and the report.
pub fn prepare(
    plan: &Plan,
    support: &HostSupport,
    _job_name: &str,
    hashes: &mut HashCache,
) -> Result<Prepared, PrepareError> {
    let mut report = EnforcementReport::new(PLATFORM);
    if let Some(pin) = &plan.sha256 {
        let program = File::open(&plan.program)
            .map_err(io_err(format!("cannot open {}", plan.program.display())))?;
        check_pin(plan, pin, &program, hashes)?;
    }
    describe(plan, support, &mut report);
    if plan.enforcement == Enforcement::Required
        && let Some(reason) = report.refusal()
    {
        return Err(PrepareError::EnforcementRequired {
            reason,
            report: Box::new(report),
        });
    }

    create_private_dir(&plan.job_tmp).map_err(io_err(format!(
        "cannot create the job directory {}",
        plan.job_tmp.display()
    )))?;
    let result = build(plan, support, report);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&plan.job_tmp);
    }
    result
}

fn build(
    plan: &Plan,
    support: &HostSupport,
    report: EnforcementReport,
) -> Result<Prepared, PrepareError> {
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    set_nonblocking(&stdout_r)?;
    set_nonblocking(&stderr_r)?;
    let cwd = open_cwd(&plan.repo, &plan.cwd)?;
    let rlimits = rlimits_for(plan, support);
    // Filled in the child with its open descriptors (allocated here: the
    // child may not allocate).
    let mut fds: Vec<ProcFdInfo> = vec![ProcFdInfo::default(); FD_LIST_ROOM];
    // Used when the list does not fit: every number up to the limit.
    let max_fd = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_or(4096, |(soft, _)| soft)
        .min(1 << 20) as RawFd;

    let mut command = Command::new(&plan.program);
    command
        .arg0(&plan.argv0)
        .args(&plan.args)
        .env_clear()
        .envs(&plan.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_w))
        .stderr(Stdio::from(stderr_w));
    let cwd_fd = cwd.as_raw_fd();
    // SAFETY: the hook runs in the forked child before exec and makes only
    // async-signal-safe system calls on data prepared here; it allocates
    // nothing and takes no locks.
    unsafe {
        command.pre_exec(move || child_setup(cwd_fd, &rlimits, &mut fds, max_fd));
    }
    Ok(Prepared {
        spec: SpawnSpec {
            command: RefCell::new(command),
            _cwd: cwd,
        },
        stdout: Pipe::new(stdout_r),
        stderr: Pipe::new(stderr_r),
        containment: Containment,
        report,
    })
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
        for &(resource, soft, hard) in rlimits {
            rlimit::setrlimit(resource, soft, hard)?;
        }
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
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io_err("cwd")(io::Error::other("contains NUL")))?;
    // SAFETY: open of a NUL-terminated path; checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io_err(format!(
            "cannot open the working directory {}",
            dir.display()
        ))(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: F_GETPATH writes at most PATH_MAX bytes into the buffer.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) } < 0 {
        return Err(io_err("fcntl(F_GETPATH)")(io::Error::last_os_error()));
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let actual = PathBuf::from(std::ffi::OsStr::from_bytes(&buf[..len]));
    if !actual.starts_with(repo) {
        return Err(PrepareError::Io {
            what: format!(
                "the working directory {} now resolves to {}, outside the repository",
                dir.display(),
                actual.display()
            ),
            source: io::Error::from_raw_os_error(libc::EXDEV),
        });
    }
    Ok(fd)
}

/// The rlimits the child sets.
fn rlimits_for(plan: &Plan, support: &HostSupport) -> Vec<Rlimit> {
    let mut rlimits = common_rlimits(plan);
    if let (Limit::Value(n), false) = (plan.limits.processes.value, support.is_root) {
        push_rlimit(&mut rlimits, rlimit::Resource::NPROC, n, n);
    }
    rlimits
}

/// What this host would enforce for `plan`, without creating anything.
pub fn assess(plan: &Plan, support: &HostSupport) -> EnforcementReport {
    let mut report = EnforcementReport::new(PLATFORM);
    describe(plan, support, &mut report);
    report
}

fn describe(plan: &Plan, support: &HostSupport, report: &mut EnforcementReport) {
    let l = &plan.limits;
    report.add(
        "filesystem",
        Status::NotEnforced,
        "filesystem",
        "not enforced on macOS: jobwarden has no filesystem sandbox there (Landlock is Linux's)",
        true,
    );
    if plan.network.unrestricted {
        report.network_unrestricted();
    } else {
        report.add(
            "network",
            Status::NotEnforced,
            "network",
            "not enforced on macOS: jobwarden has no network sandbox there",
            true,
        );
    }
    report.add(
        "scopes",
        Status::NotEnforced,
        "scopes",
        "not enforced on macOS: a job may signal other processes of the same user",
        true,
    );
    describe_cpu(plan, report);
    match l.memory.value {
        Limit::Value(n) => report.add(
            "memory",
            Status::NotEnforced,
            "memory",
            format!(
                "{}: not enforced on macOS, which ignores RLIMIT_AS and RLIMIT_DATA and has no cgroups",
                format_size(n)
            ),
            true,
        ),
        Limit::Unlimited => report.unlimited("memory", &l.memory.key),
    }
    match l.processes.value {
        Limit::Value(n) => describe_nproc(n, support.is_root, "no cgroups on macOS", report),
        Limit::Unlimited => report.unlimited("processes", &l.processes.key),
    }
    describe_files(plan, report);
    describe_session(report);
    report.add(
        "parent_death",
        Status::NotEnforced,
        "dies with host",
        "not enforced on macOS (no parent-death signal): if the host is killed, its jobs run on",
        true,
    );
    report.add(
        "no_new_privs",
        Status::NotEnforced,
        "no_new_privs",
        "not enforced on macOS: a setuid program run by the job still gains its owner's rights",
        true,
    );
    report.add(
        "tree_cleanup",
        Status::Partial,
        "tree cleanup (process group)",
        "process group only: a process that leaves it (setsid, setpgid) outlives the job",
        true,
    );
    if plan.seccomp.value {
        report.add(
            "seccomp",
            Status::NotEnforced,
            "seccomp",
            "not enforced on macOS: seccomp is Linux's",
            true,
        );
    }
    if plan.sha256.is_some() {
        report.add(
            "binary_pin",
            Status::Partial,
            "sha256 checked",
            "checked before the exec, which is by path (macOS has no fexecve): a swap in between is not detected",
            true,
        );
    }
}

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    #[error("{0}")]
    Spawn(#[source] io::Error),
    #[error("spawning is unavailable on this host")]
    Unavailable,
}

impl SpawnError {
    /// The error of the exec or of the child's setup before it.
    pub fn exec_failure(&self) -> Option<&io::Error> {
        match self {
            SpawnError::Spawn(e) => Some(e),
            SpawnError::Unavailable => None,
        }
    }
}

/// A started job's first process.
pub struct Spawned {
    pub pid: i32,
    pub exit: ExitWatch,
}

/// Starts jobs (std's fork and exec).
pub struct Spawner;

impl Spawner {
    pub fn new() -> Result<Self, SpawnError> {
        Ok(Self)
    }

    pub fn spawn(&mut self, spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        let child = spec
            .command
            .borrow_mut()
            .spawn()
            .map_err(SpawnError::Spawn)?;
        let pid = child.id() as i32;
        // The exit is collected with wait4 by pid, not through `Child`.
        drop(child);
        Ok(Spawned {
            pid,
            exit: ExitWatch::new(pid, None),
        })
    }
}

const PGRP_PIDS_MAX: usize = 4096;

/// One job's process tree: its process group.
pub struct Tree {
    pub leader: i32,
    pub leader_start: u64,
    pub next_scan: Instant,
}

impl Tree {
    pub fn new(leader: i32, _containment: Containment) -> Self {
        Self {
            leader,
            leader_start: 0,
            next_scan: Instant::now(),
        }
    }

    /// Membership is the process group, read from the kernel when needed.
    pub fn exact(&self) -> bool {
        true
    }

    /// Nothing to track between samples.
    pub fn track(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) {}

    /// Pids in the job's process group.
    pub fn member_pids(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) -> Vec<i32> {
        let mut pids = vec![0 as libc::pid_t; PGRP_PIDS_MAX];
        // SAFETY: the buffer holds PGRP_PIDS_MAX pids; the size is in bytes.
        let bytes = unsafe {
            libc::proc_listpgrppids(
                self.leader,
                pids.as_mut_ptr() as *mut libc::c_void,
                (pids.len() * std::mem::size_of::<libc::pid_t>()) as libc::c_int,
            )
        };
        let n = (bytes.max(0) as usize / std::mem::size_of::<libc::pid_t>()).min(pids.len());
        pids.truncate(n);
        pids.retain(|p| *p > 0);
        pids
    }

    /// Sends SIGTERM to the process group; true, as Unix has a polite stop.
    pub fn terminate(&mut self, _: HostProcess, _: &HashSet<i32>) -> bool {
        // SAFETY: kill(2) of the job's own process group.
        unsafe { libc::kill(-self.leader, libc::SIGTERM) };
        true
    }

    /// SIGKILLs the process group; returns what was in it.
    pub fn kill_all(&mut self, host: HostProcess, leaders: &HashSet<i32>) -> Vec<ProcessId> {
        let members = self.member_pids(&Snapshot::default(), host, leaders);
        // SAFETY: kill(2) of the job's own process group.
        unsafe { libc::kill(-self.leader, libc::SIGKILL) };
        members.into_iter().map(|p| (p, 0)).collect()
    }

    pub fn oom_kills(&self) -> u64 {
        0
    }

    pub fn memory_peak(&self) -> Option<u64> {
        None
    }

    /// Nothing was created for the job.
    pub fn dismantle(&self) -> Result<(), String> {
        Ok(())
    }

    /// Unknown here, so yes.
    pub fn ever_forked(&self) -> bool {
        true
    }
}
