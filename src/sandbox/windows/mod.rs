//! Windows: the same policy and host, with what Windows offers a library
//! without a driver — a Job Object per job, created with its limits before
//! the job's first instruction runs:
//!
//! - the process is created suspended, put into the job object, then
//!   resumed, so nothing it starts escapes the job (breakaway is not
//!   allowed);
//! - `KILL_ON_JOB_CLOSE`: when the host exits, however it exits, the kernel
//!   ends every job's whole tree;
//! - the policy's process, memory (whole tree, committed) and CPU
//!   (per-process user time) limits are job-object limits;
//! - cancel and timeout end the tree with `TerminateJobObject`; Windows has
//!   no polite stop for a console program without a console, so the grace
//!   period does not apply.
//!
//! Filesystem, network and signal confinement, the open-files and
//! file-size limits, and privilege reduction are reported "not enforced on
//! Windows" (a `required` policy refuses the job, naming them).
//!
//! process-wrap's `JobObject` wrapper is not used: it keeps the job handle
//! private, and the limits, membership list and accounting need it. Pipes
//! are read by one thread per pipe (Windows anonymous pipes cannot join a
//! poller), each handing ready tokens to the host thread through a
//! [`ReadyList`] and its waker; exits are polled every 10 ms.

mod job;
mod pipe;

pub use crate::sandbox::common::{HashCache, PrepareError, SupportOptions};
use crate::sandbox::common::{Signals, check_pin, io_err};
pub use crate::sandbox::unreaped::{
    ProcessId, Reaper, Snapshot, forget_leader, register_leader, snapshot,
};
pub use job::{JobObject, Tree};
pub use pipe::{ExitWatch, Pipe, ReadyList};

use crate::decision::{Denial, Plan};
use crate::policy::{Enforcement, Limit, units::format_size};
use crate::sandbox::report::{EnforcementReport, Status};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use windows_sys::Win32::System::Threading::{CREATE_NO_WINDOW, CREATE_SUSPENDED};

/// The platform's name in reports.
pub const PLATFORM: &str = "windows";

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

/// The facts about the host that jobs need.
#[derive(Debug, Clone, Copy)]
pub struct HostProcess {
    pub pid: i32,
}

impl HostProcess {
    pub fn current() -> Self {
        Self {
            pid: std::process::id() as i32,
        }
    }
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

/// Columns of the console on stderr, if it is one.
pub fn terminal_columns() -> Option<usize> {
    use windows_sys::Win32::System::Console::{
        CONSOLE_SCREEN_BUFFER_INFO, GetConsoleScreenBufferInfo, GetStdHandle, STD_ERROR_HANDLE,
    };
    // SAFETY: queries into a local struct; a failure leaves it unused.
    unsafe {
        let mut info: CONSOLE_SCREEN_BUFFER_INFO = std::mem::zeroed();
        let ok = GetConsoleScreenBufferInfo(GetStdHandle(STD_ERROR_HANDLE), &mut info) != 0;
        let width = info.srWindow.Right as i32 - info.srWindow.Left as i32 + 1;
        (ok && width > 0).then_some(width as usize)
    }
}

/// `Windows <arch>`.
pub fn platform_description() -> String {
    format!("Windows {}", std::env::consts::ARCH)
}

/// What this machine lets jobwarden enforce.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostSupport {
    /// Always false: Windows has no root (an administrator is not special
    /// to anything jobwarden applies).
    pub is_root: bool,
    /// Running under Wine, which accepts job object limits but does not
    /// enforce them.
    pub wine: bool,
}

impl HostSupport {
    pub fn detect(_options: &SupportOptions) -> Self {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
        // SAFETY: looks up an export by NUL-terminated names; nothing is called.
        let wine = unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        };
        Self {
            is_root: false,
            wine,
        }
    }

    /// What was detected, as labelled lines for `jobwarden doctor`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![(
            "confinement",
            "a job object per job (limits, kill-on-close); no filesystem or network sandbox on Windows".into(),
        )];
        if self.wine {
            lines.push((
                "wine",
                "running under Wine: job object limits are accepted but not enforced".into(),
            ));
        }
        lines
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        vec!["on Windows only `enforcement = \"best_effort\"` policies can run jobs: filesystem and network confinement are not available".into()]
    }
}

/// Nothing to clean up from earlier hosts: their job objects died with them.
pub fn clean_stale(_support: &HostSupport, _host: HostProcess) {}

/// Everything the spawn needs, built in the parent.
pub struct SpawnSpec {
    command: RefCell<Command>,
    /// The job object the process joins before it runs.
    job: JobObject,
    /// A pinned program, held open without write or delete sharing from the
    /// hash until the process has started.
    _program: Option<File>,
}

/// A job ready to start.
pub struct Prepared {
    pub spec: SpawnSpec,
    pub stdout: Pipe,
    pub stderr: Pipe,
    pub containment: Containment,
    pub report: EnforcementReport,
}

/// The job object, once the spawn has put the process in it.
pub struct Containment(Option<JobObject>);

impl Containment {
    /// Ends whatever entered the job object (a spawn that failed half-way).
    pub fn abandon(&self) {
        if let Some(job) = &self.0 {
            job.terminate();
        }
    }
}

/// How the job object's limits came out.
struct Limits {
    kill_on_close: bool,
    /// The job object enforces the plan's process, memory and CPU limits,
    /// or why not.
    enforced: Result<(), &'static str>,
    problem: Option<String>,
}

const WINE: &str = "accepted, but Wine does not enforce job object limits";
const REFUSED: &str = "the job object refused the limit";

/// Prepares `plan`: checks the binary's pin (and keeps it from changing
/// until the spawn), creates the job object with its limits, makes the
/// pipes and the report.
pub fn prepare(
    plan: &Plan,
    support: &HostSupport,
    _job_name: &str,
    hashes: &mut HashCache,
) -> Result<Prepared, PrepareError> {
    let mut report = EnforcementReport::new(PLATFORM);
    let program = match &plan.sha256 {
        Some(pin) => {
            // FILE_SHARE_READ only: nobody may write, rename or delete the
            // file while we hold it.
            const FILE_SHARE_READ: u32 = 1;
            let file = OpenOptions::new()
                .read(true)
                .share_mode(FILE_SHARE_READ)
                .open(&plan.program)
                .map_err(io_err(format!(
                    "cannot open {} without write sharing",
                    plan.program.display()
                )))?;
            check_pin(plan, pin, &file, hashes)?;
            Some(file)
        }
        None => None,
    };
    // std runs `<path>.exe` for a path without that suffix, so anything
    // else would run a file other than the one the policy names.
    let is_exe = plan
        .program
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("exe"));
    if !is_exe {
        return Err(PrepareError::Denied(Denial::new(
            plan.program_key.clone(),
            format!(
                "{} is not an .exe: on Windows only .exe programs are run (a script runs through its interpreter's .exe)",
                plan.program.display()
            ),
            format!("point `{}` at the .exe", plan.program_key),
        )));
    }
    let job = JobObject::new().map_err(io_err("cannot create a job object"))?;
    let limits = job.set_limits(plan, support);
    let job = job
        .restrict()
        .map_err(io_err("cannot restrict the job object handle"))?;
    describe(plan, &limits, &mut report);
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
    let result = build(plan, job, program, report);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&plan.job_tmp);
    }
    result
}

fn build(
    plan: &Plan,
    job: JobObject,
    program: Option<File>,
    report: EnforcementReport,
) -> Result<Prepared, PrepareError> {
    let (stdout_r, stdout_w) = io::pipe().map_err(io_err("cannot create a pipe"))?;
    let (stderr_r, stderr_w) = io::pipe().map_err(io_err("cannot create a pipe"))?;
    let cwd = checked_cwd(&plan.repo, &plan.cwd)?;
    let mut command = Command::new(&plan.program);
    command
        .args(&plan.args)
        .env_clear()
        .envs(&plan.env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_w))
        .stderr(Stdio::from(stderr_w))
        .creation_flags(CREATE_SUSPENDED | CREATE_NO_WINDOW);
    Ok(Prepared {
        spec: SpawnSpec {
            command: RefCell::new(command),
            job: job.clone(),
            _program: program,
        },
        stdout: Pipe::new(stdout_r),
        stderr: Pipe::new(stderr_r),
        containment: Containment(Some(job)),
        report,
    })
}

/// The working directory, resolved again and checked to still be inside
/// the repository (a directory on the way may have been replaced by a link
/// since the decision), without the `\\?\` prefix `CreateProcess` dislikes.
fn checked_cwd(repo: &Path, dir: &Path) -> Result<PathBuf, PrepareError> {
    let resolve = |p: &Path| {
        std::fs::canonicalize(p).map_err(io_err(format!("cannot resolve {}", p.display())))
    };
    let (repo, actual) = (resolve(repo)?, resolve(dir)?);
    if !actual.starts_with(&repo) {
        return Err(PrepareError::Io {
            what: format!(
                "the working directory {} now resolves to {}, outside the repository",
                dir.display(),
                actual.display()
            ),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
    }
    let text = actual.to_string_lossy();
    Ok(match text.strip_prefix(r"\\?\") {
        Some(rest) if rest.as_bytes().get(1) == Some(&b':') => PathBuf::from(rest),
        _ => actual,
    })
}

/// What this host would enforce for `plan`, without creating anything.
pub fn assess(plan: &Plan, support: &HostSupport) -> EnforcementReport {
    let mut report = EnforcementReport::new(PLATFORM);
    let limits = Limits {
        kill_on_close: true,
        enforced: if support.wine { Err(WINE) } else { Ok(()) },
        problem: None,
    };
    describe(plan, &limits, &mut report);
    report
}

fn not_on_windows(report: &mut EnforcementReport, name: &'static str, detail: &str) {
    report.add(
        name,
        Status::NotEnforced,
        name,
        format!("not enforced on Windows: {detail}"),
        true,
    );
}

fn describe(plan: &Plan, limits: &Limits, report: &mut EnforcementReport) {
    let l = &plan.limits;
    not_on_windows(
        report,
        "filesystem",
        "jobwarden has no filesystem sandbox there",
    );
    if plan.network.unrestricted {
        report.network_unrestricted();
    } else {
        not_on_windows(report, "network", "jobwarden has no network sandbox there");
    }
    not_on_windows(
        report,
        "scopes",
        "a job may open and end other processes of the same user",
    );
    match (l.cpu_secs.value, limits.enforced) {
        (Limit::Value(secs), Ok(())) => report.add(
            "cpu",
            Status::Enforced,
            format!("cpu {secs} s"),
            format!("{secs} s of user time per process (job object)"),
            true,
        ),
        (Limit::Value(secs), Err(why)) => {
            not_on_windows(report, "cpu", &format!("{secs} s: {why}"))
        }
        (Limit::Unlimited, _) => report.unlimited("cpu", &l.cpu_secs.key),
    }
    match (l.memory.value, limits.enforced) {
        (Limit::Value(n), Ok(())) => report.add(
            "memory",
            Status::Enforced,
            format!("memory {} (job object)", format_size(n)),
            format!(
                "{} committed by the whole tree (job object)",
                format_size(n)
            ),
            true,
        ),
        (Limit::Value(n), Err(why)) => {
            not_on_windows(report, "memory", &format!("{}: {why}", format_size(n)))
        }
        (Limit::Unlimited, _) => report.unlimited("memory", &l.memory.key),
    }
    match (l.processes.value, limits.enforced) {
        (Limit::Value(n), Ok(())) => report.add(
            "processes",
            Status::Enforced,
            format!("processes {n} (job object)"),
            format!("{n} at once in the whole tree (job object)"),
            true,
        ),
        (Limit::Value(n), Err(why)) => not_on_windows(report, "processes", &format!("{n}: {why}")),
        (Limit::Unlimited, _) => report.unlimited("processes", &l.processes.key),
    }
    match l.open_files.value {
        Limit::Value(n) => not_on_windows(
            report,
            "open_files",
            &format!("{n}: Windows has no per-process handle limit"),
        ),
        Limit::Unlimited => report.unlimited("open_files", &l.open_files.key),
    }
    match l.file_size.value {
        Limit::Value(n) => not_on_windows(
            report,
            "file_size",
            &format!("{}: Windows has no file size limit", format_size(n)),
        ),
        Limit::Unlimited => report.unlimited("file_size", &l.file_size.key),
    }
    if l.core_dumps.value {
        report.add(
            "core_dumps",
            Status::NotRequested,
            "crash dumps allowed",
            "allowed by the policy",
            false,
        );
    } else {
        report.add(
            "core_dumps",
            Status::Partial,
            "no crash dialog",
            "an unhandled exception ends the process at once (job object); Windows Error Reporting may still keep a dump if LocalDumps is configured",
            false,
        );
    }
    report.add(
        "session",
        Status::Enforced,
        "own job object",
        "own job object, no console window, stdin NUL",
        true,
    );
    report.add(
        "descriptors",
        Status::Partial,
        "stdio handles",
        "stdin, stdout and stderr, plus any handle the embedding program itself made inheritable (jobwarden makes none)",
        true,
    );
    if limits.kill_on_close {
        report.add(
            "parent_death",
            Status::Enforced,
            "dies with host",
            "the job object is killed when the host's last handle to it closes (KILL_ON_JOB_CLOSE)",
            true,
        );
    } else {
        not_on_windows(
            report,
            "parent_death",
            "the job object refused KILL_ON_JOB_CLOSE",
        );
    }
    not_on_windows(report, "no_new_privs", "the job runs with the host's token");
    report.add(
        "tree_cleanup",
        Status::Partial,
        "tree cleanup (job object)",
        "the whole job object is terminated and its processes cannot break away, but a job running as the host's user can still have a system service (WMI, Task Scheduler) start a process outside it",
        true,
    );
    if plan.seccomp.value {
        not_on_windows(report, "seccomp", "seccomp is Linux's");
    }
    if plan.sha256.is_some() {
        report.add(
            "binary_pin",
            Status::Enforced,
            "sha256 pinned",
            "the hashed file is held open without write or delete sharing until the process has started",
            true,
        );
    }
    if let Some(problem) = &limits.problem {
        report.add(
            "job_object",
            Status::Partial,
            "job object",
            problem.clone(),
            false,
        );
    }
}

/// Why a spawn failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    #[error("{0}")]
    Spawn(#[source] io::Error),
    #[error("cannot put the job's process in its job object: {0}")]
    Assign(#[source] io::Error),
    #[error("cannot resume the job's process: {0}")]
    Resume(#[source] io::Error),
    #[error("spawning is unavailable on this host")]
    Unavailable,
}

impl SpawnError {
    /// The error of creating the process (the program is missing or not
    /// executable), if that is what failed.
    pub fn exec_failure(&self) -> Option<&io::Error> {
        match self {
            SpawnError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// A started job's first process.
pub struct Spawned {
    pub pid: i32,
    pub exit: ExitWatch,
}

/// Starts jobs: suspended, into their job object, then resumed.
pub struct Spawner;

impl Spawner {
    pub fn new() -> Result<Self, SpawnError> {
        Ok(Self)
    }

    pub fn spawn(&mut self, spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        let mut child = spec
            .command
            .borrow_mut()
            .spawn()
            .map_err(SpawnError::Spawn)?;
        let fail = |child: &mut std::process::Child, error: SpawnError| {
            let _ = child.kill();
            let _ = child.wait();
            Err(error)
        };
        if let Err(e) = spec.job.assign(&child) {
            return fail(&mut child, SpawnError::Assign(e));
        }
        if let Err(e) = job::resume(child.id()) {
            return fail(&mut child, SpawnError::Resume(e));
        }
        Ok(Spawned {
            pid: child.id() as i32,
            exit: ExitWatch::new(child),
        })
    }
}
