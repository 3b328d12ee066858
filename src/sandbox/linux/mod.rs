//! Linux confinement: Landlock, rlimits, cgroups, a new session, no
//! capabilities, and a spawn that costs the same whatever the host's size.
//!
//! `prepare` turns a plan into a [`SpawnSpec`] plus an enforcement report,
//! doing every allocation, path lookup and hash in the parent; the child in
//! `spawn.rs` only applies what was prepared.

pub mod cgroup;
pub mod elf;
pub mod landlock;
pub mod procs;
pub mod seccomp;
pub mod spawn;
pub mod tree;

use self::cgroup::{CgroupSupport, JobCgroup};
use self::landlock::LandlockSupport;
use self::spawn::{SpawnSpec, above_stdio};
use crate::decision::{Plan, PlanPath};
use crate::policy::{Enforcement, Limit, units::format_size};
use crate::sandbox::report::{EnforcementReport, Status};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use crate::sandbox::unix::{
    ENV_IGNORE_CASE, ExitWatch, FileIdentity, HostProcess, Pipe, ReadyList, SIGNALS, copy_symlink,
    create_private_dir, file_identity, is_executable_file, open_private_append,
    platform_description, signal_name, terminal_columns,
};
use crate::sandbox::unix::{
    Rlimit, common_rlimits, describe_cpu, describe_files, describe_nproc, describe_session, pipe,
    push_rlimit, set_nonblocking,
};
pub use spawn::{SpawnError, Spawned, Spawner};
pub use tree::{ProcessId, Reaper, Tree, forget_leader, register_leader};

/// All of `/proc`, for tracking trees of jobs without a cgroup.
pub type Snapshot = Vec<procs::Stat>;

/// Reads all of `/proc` (only called when a job lacks a cgroup).
pub fn snapshot() -> Snapshot {
    procs::all()
}
pub use crate::sandbox::common::{HashCache, PrepareError, SupportOptions};
use crate::sandbox::common::{check_pin, io_err};

/// Capacity asked for a job's stdout pipe (the kernel default is 64 KiB).
const STDOUT_PIPE_BYTES: libc::c_int = 256 * 1024;

/// What this machine lets jobwarden enforce, detected once per host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostSupport {
    pub landlock: LandlockSupport,
    pub cgroups: CgroupSupport,
    /// Whether the host could become a child subreaper.
    pub subreaper: bool,
    /// Whether the host runs as root (RLIMIT_NPROC is then ignored).
    pub is_root: bool,
    /// Whether the host holds capabilities (to drop for jobs).
    pub has_capabilities: bool,
    /// Highest capability number.
    pub cap_last: u32,
}

impl HostSupport {
    pub fn detect(options: &SupportOptions) -> Self {
        // SAFETY: geteuid has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        let cap_eff = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        let cap_bnd_nonzero = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .is_some_and(|b| b != 0);
        Self {
            landlock: LandlockSupport::detect(options.landlock_abi_max),
            cgroups: CgroupSupport::detect(!options.no_cgroups),
            subreaper: procs::become_subreaper(),
            is_root,
            has_capabilities: cap_eff != 0 || (is_root && cap_bnd_nonzero),
            cap_last: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(40),
        }
    }
}

impl HostSupport {
    /// What was detected, as labelled lines for `jobwarden doctor`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![(
            "user",
            if self.is_root {
                "root: RLIMIT_NPROC is ignored for root, only a pids cgroup limits processes"
            } else {
                "not root"
            }
            .to_string(),
        )];
        let ll = &self.landlock;
        lines.push((
            "landlock",
            match (&ll.unavailable, ll.kernel_abi) {
                (None, Some(k)) if k != ll.abi => format!(
                    "ABI {} (kernel {k}, capped by JOBWARDEN_LANDLOCK_ABI_MAX)",
                    ll.abi
                ),
                (None, _) => format!("ABI {}", ll.abi),
                (Some(why), _) => format!("unavailable: {why}"),
            },
        ));
        let cg = &self.cgroups;
        let mut groups = Vec::new();
        if let Some(v2) = &cg.v2 {
            let kill = if cg.v2_kill { ", cgroup.kill" } else { "" };
            let controllers = if cg.v2_controllers.is_empty() {
                " (no controllers delegated)".to_string()
            } else {
                format!(" (controllers: {})", cg.v2_controllers.join(" "))
            };
            groups.push(format!("v2 {}{kill}{controllers}", v2.display()));
        }
        if let Some(p) = &cg.v1_pids {
            groups.push(format!("v1 pids {}", p.display()));
        }
        if let Some(m) = &cg.v1_memory {
            groups.push(format!("v1 memory {}", m.display()));
        }
        lines.push((
            "cgroups",
            match &cg.unavailable {
                Some(why) => format!("none usable: {why}"),
                None => groups.join("; "),
            },
        ));
        lines
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        let cg = &self.cgroups;
        let mut tips = Vec::new();
        if cg.unavailable.is_none() && !cg.favordynmods {
            tips.push(format!(
                "every job start waits for an RCU grace period to join its cgroups (a few ms);\n                mounting a cgroup hierarchy with favordynmods removes the wait, e.g.\n                `mount -o remount,favordynmods {}` (forks become slightly slower system-wide)",
                cg.v2
                    .as_deref()
                    .or(cg.v1_pids.as_deref())
                    .map_or("/sys/fs/cgroup".into(), |p| p.display().to_string())
            ));
        }
        tips
    }
}

/// A job ready to start.
pub struct Prepared {
    pub spec: SpawnSpec,
    /// Read ends of the job's stdout and stderr (non-blocking, close-on-exec).
    pub stdout: Pipe,
    pub stderr: Pipe,
    /// The job's cgroups, if any.
    pub containment: Containment,
    pub report: EnforcementReport,
}

/// What holds a job's processes together before it has a [`Tree`]: its
/// cgroups, if this machine has them.
pub struct Containment(pub Option<JobCgroup>);

impl Containment {
    /// Kills whatever entered the job's cgroups and removes them (a spawn
    /// that failed half-way).
    pub fn abandon(&self) {
        if let Some(cg) = &self.0 {
            cg.kill_all();
            cg.remove();
        }
    }
}

/// The platform's name in reports.
pub const PLATFORM: &str = "linux";

/// Removes job cgroups left by hosts that died without cleaning up,
/// killing whatever is still in them.
pub fn clean_stale(support: &HostSupport, host: HostProcess) {
    let cg = &support.cgroups;
    for dir in [&cg.v2, &cg.v1_pids, &cg.v1_memory].into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("jobwarden-")) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            if pid == host.pid || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let path = entry.path();
            if let Ok(procs) = std::fs::read_to_string(path.join("cgroup.procs")) {
                for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) of a process left in a stale job cgroup of ours.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
            let _ = std::fs::remove_dir(&path);
        }
    }
}

/// Prepares `plan` for spawning: opens, hashes, builds the Landlock ruleset,
/// creates cgroups, computes rlimits and the report. `job_name` names the
/// job's cgroups.
pub fn prepare(
    plan: &Plan,
    support: &HostSupport,
    job_name: &str,
    hashes: &mut HashCache,
) -> Result<Prepared, PrepareError> {
    let report = EnforcementReport::new("linux");

    // The program: open it once, check its pin, find its interpreter.
    let program = File::open(&plan.program)
        .map_err(io_err(format!("cannot open {}", plan.program.display())))?;
    let mut extra_exec: Vec<PlanPath> = Vec::new();
    let interpreter = elf::interpreter_of_file(&program).unwrap_or(elf::Interpreter::None);
    let is_script = matches!(interpreter, elf::Interpreter::Script(_));
    match &interpreter {
        elf::Interpreter::ElfLoader(loader) => extra_exec.push(PlanPath {
            path: loader.clone(),
            key: "ELF loader of the program".into(),
        }),
        elf::Interpreter::Script(interp) => {
            extra_exec.push(PlanPath {
                path: interp.clone(),
                key: "interpreter of the script".into(),
            });
            if let Ok(elf::Interpreter::ElfLoader(loader)) = elf::interpreter_of(interp) {
                extra_exec.push(PlanPath {
                    path: loader,
                    key: "ELF loader of the script's interpreter".into(),
                });
            }
        }
        elf::Interpreter::None => {}
    }
    // Helpers are dynamically linked too; their loader is almost always the
    // same, but add whatever they name.
    for helper in &plan.filesystem.execute {
        if helper.path.is_file()
            && let Ok(elf::Interpreter::ElfLoader(loader)) = elf::interpreter_of(&helper.path)
            && !extra_exec.iter().any(|p| p.path == loader)
        {
            extra_exec.push(PlanPath {
                path: loader,
                key: format!("ELF loader of {}", helper.path.display()),
            });
        }
    }
    let exec_fd = match &plan.sha256 {
        Some(pin) => {
            check_pin(plan, pin, &program, hashes)?;
            // Execute the very file that was hashed. A script cannot be run
            // from a close-on-exec descriptor, so it is run by path.
            if is_script {
                None
            } else {
                Some(above_stdio(OwnedFd::from(program))?)
            }
        }
        None => None,
    };

    // The job's private directory must exist before the rules name it.
    create_private_dir(&plan.job_tmp).map_err(io_err(format!(
        "cannot create the job directory {}",
        plan.job_tmp.display()
    )))?;
    let result = prepare_with_tmp(plan, support, job_name, report, extra_exec, exec_fd);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&plan.job_tmp);
    }
    result
}

fn prepare_with_tmp(
    plan: &Plan,
    support: &HostSupport,
    job_name: &str,
    mut report: EnforcementReport,
    extra_exec: Vec<PlanPath>,
    exec_fd: Option<OwnedFd>,
) -> Result<Prepared, PrepareError> {
    // Landlock.
    let built =
        landlock::build(&support.landlock, plan, &extra_exec, &mut report).map_err(|e| {
            PrepareError::Io {
                what: "Landlock".into(),
                source: io::Error::other(e.to_string()),
            }
        })?;

    // Pipes and stdin.
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    // A larger stdout pipe lets a chatty job write more per wake-up of the
    // host thread. Its pages are charged to the writer (the job's memory
    // cgroup); failure (a lower pipe-max-size) just keeps the default.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(stdout_w.as_raw_fd(), libc::F_SETPIPE_SZ, STDOUT_PIPE_BYTES) };
    set_nonblocking(&stdout_r)?;
    set_nonblocking(&stderr_r)?;
    let stdin = OwnedFd::from(File::open("/dev/null").map_err(io_err("cannot open /dev/null"))?);

    let cwd = open_beneath(&plan.repo, &plan.cwd)?;

    let argv = std::iter::once(plan.argv0.as_str())
        .chain(plan.args.iter().map(String::as_str))
        .map(|a| CString::new(a).map_err(|_| io_err("argument")(io::Error::other("contains NUL"))))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = plan
        .env
        .iter()
        .map(|(k, v)| {
            CString::new(format!("{k}={v}"))
                .map_err(|_| io_err("environment")(io::Error::other("contains NUL")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let program_c = CString::new(plan.program.as_os_str().as_bytes())
        .map_err(|_| io_err("program path")(io::Error::other("contains NUL")))?;

    // Cgroups and limits.
    let processes = limit_value(&plan.limits.processes.value);
    let memory = limit_value(&plan.limits.memory.value);
    let cgroup = if support.cgroups.unavailable.is_none() {
        let (cg, fds) =
            JobCgroup::create(&support.cgroups, job_name.to_string(), processes, memory);
        Some((cg, fds))
    } else {
        None
    };
    let outcome = match &cgroup {
        Some((cg, _)) => CgroupOutcome {
            memory: cg.memory_limit,
            pids: cg.pids_limit,
            kill: cg.kill_method(),
            problems: cg.problems.clone(),
        },
        None => CgroupOutcome::default(),
    };
    let rlimits = rlimits_for(plan, support, &outcome);
    landlock::describe(&support.landlock, plan, &mut report);
    describe(plan, support, &outcome, &mut report);

    if plan.enforcement == Enforcement::Required
        && let Some(reason) = report.refusal()
    {
        if let Some((cg, _)) = &cgroup {
            cg.remove();
        }
        return Err(PrepareError::EnforcementRequired {
            reason,
            report: Box::new(report),
        });
    }

    let (cgroup, cgroup_procs) = match cgroup {
        Some((cg, fds)) => (
            Some(cg),
            fds.into_iter()
                .map(above_stdio)
                .collect::<io::Result<Vec<_>>>()?,
        ),
        None => (None, Vec::new()),
    };
    let landlock = built.fd.map(above_stdio).transpose()?;

    let spec = SpawnSpec {
        program: program_c,
        exec_fd,
        argv,
        envp,
        cwd: above_stdio(cwd)?,
        stdin: above_stdio(stdin)?,
        stdout: above_stdio(stdout_w)?,
        stderr: above_stdio(stderr_w)?,
        rlimits,
        cgroup_procs,
        landlock,
        drop_capabilities: support.has_capabilities,
        cap_last: support.cap_last,
        seccomp: plan
            .seccomp
            .value
            .then(seccomp::program)
            .and_then(Result::ok)
            .map(<[libc::sock_filter]>::to_vec),
    };
    Ok(Prepared {
        spec,
        stdout: Pipe::new(stdout_r),
        stderr: Pipe::new(stderr_r),
        containment: Containment(cgroup),
        report,
    })
}

/// What a job's cgroups give: actual, after creating them, or predicted.
#[derive(Debug, Clone, Default)]
pub struct CgroupOutcome {
    /// Where the memory limit is enforced, if in a cgroup.
    pub memory: Option<&'static str>,
    /// Where the process limit is enforced, if in a cgroup.
    pub pids: Option<&'static str>,
    /// How the whole tree is killed, if by a cgroup.
    pub kill: Option<&'static str>,
    /// Problems met while creating them.
    pub problems: Vec<String>,
}

impl CgroupOutcome {
    /// What creating the cgroups would give on this host.
    fn predict(support: &HostSupport, plan: &Plan) -> Self {
        let cg = &support.cgroups;
        if cg.unavailable.is_some() {
            return Self::default();
        }
        Self {
            memory: limit_value(&plan.limits.memory.value).and(cg.memory()),
            pids: limit_value(&plan.limits.processes.value).and(cg.pids()),
            kill: cg.tree_kill(),
            problems: Vec::new(),
        }
    }
}

/// What this host would enforce for `plan`, without creating anything:
/// the same report a job would get (for `doctor` and `explain`).
pub fn assess(plan: &Plan, support: &HostSupport) -> EnforcementReport {
    let mut report = EnforcementReport::new("linux");
    landlock::describe(&support.landlock, plan, &mut report);
    describe(
        plan,
        support,
        &CgroupOutcome::predict(support, plan),
        &mut report,
    );
    report
}

/// The rlimits the child sets: those of the plan that no cgroup covers,
/// never above the host's own hard limits.
fn rlimits_for(plan: &Plan, support: &HostSupport, cg: &CgroupOutcome) -> Vec<Rlimit> {
    let mut rlimits = common_rlimits(plan);
    let l = &plan.limits;
    if let (Limit::Value(n), None) = (l.memory.value, cg.memory) {
        push_rlimit(&mut rlimits, rlimit::Resource::AS, n, n);
    }
    if let (Limit::Value(n), None, false) = (l.processes.value, cg.pids, support.is_root) {
        push_rlimit(&mut rlimits, rlimit::Resource::NPROC, n, n);
    }
    rlimits
}

/// Records every item that is not Landlock's.
fn describe(
    plan: &Plan,
    support: &HostSupport,
    cg: &CgroupOutcome,
    report: &mut EnforcementReport,
) {
    let l = &plan.limits;
    describe_cpu(plan, report);
    match (l.memory.value, cg.memory) {
        (Limit::Value(n), Some(how)) => report.add(
            "memory",
            Status::Enforced,
            format!("memory {} (cgroup)", format_size(n)),
            format!("{} for the whole tree ({how})", format_size(n)),
            true,
        ),
        (Limit::Value(n), None) => report.add(
            "memory",
            Status::Partial,
            format!("memory {} (address space)", format_size(n)),
            format!(
                "{} of address space per process (RLIMIT_AS): no memory cgroup here",
                format_size(n)
            ),
            true,
        ),
        (Limit::Unlimited, _) => report.unlimited("memory", &l.memory.key),
    }
    match (l.processes.value, cg.pids) {
        (Limit::Value(n), Some(how)) => report.add(
            "processes",
            Status::Enforced,
            format!("processes {n} (cgroup)"),
            format!("{n} in the whole tree ({how})"),
            true,
        ),
        (Limit::Value(n), None) => {
            describe_nproc(n, support.is_root, "no pids cgroup here", report)
        }
        (Limit::Unlimited, _) => report.unlimited("processes", &l.processes.key),
    }
    describe_files(plan, report);
    describe_session(report);
    report.add(
        "parent_death",
        Status::Enforced,
        "dies with host",
        "SIGKILL if the host dies",
        true,
    );
    if support.has_capabilities {
        report.add(
            "capabilities",
            Status::Enforced,
            "no capabilities",
            "all dropped, bounding set emptied",
            true,
        );
    } else {
        report.add(
            "capabilities",
            Status::NotRequested,
            "no capabilities",
            "the host holds none",
            false,
        );
    }
    report.add(
        "no_new_privs",
        Status::Enforced,
        "no_new_privs",
        "set",
        true,
    );
    match cg.kill {
        Some(how) => report.add(
            "tree_cleanup",
            Status::Enforced,
            format!("tree cleanup ({})", how.trim_start_matches("cgroup ")),
            format!("{how}, with a child subreaper"),
            true,
        ),
        None => report.add(
            "tree_cleanup",
            Status::Partial,
            "tree cleanup (process group)",
            if support.subreaper {
                "process group and session scan with a child subreaper: no job cgroup here"
            } else {
                "process group only: no job cgroup and no subreaper"
            },
            true,
        ),
    }
    describe_seccomp(plan, report);
    if !cg.problems.is_empty() {
        report.add(
            "cgroup",
            Status::Partial,
            "cgroup",
            cg.problems.join("; "),
            false,
        );
    }
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
    let relative = dir.strip_prefix(repo).map_err(|_| PrepareError::Io {
        what: format!(
            "the working directory {} is outside the repository",
            dir.display()
        ),
        source: io::Error::from_raw_os_error(libc::EXDEV),
    })?;
    let repo_c = CString::new(repo.as_os_str().as_bytes())
        .map_err(|_| io_err("repo path")(io::Error::other("NUL")))?;
    // SAFETY: open of a NUL-terminated path; checked.
    let repo_fd = unsafe {
        libc::open(
            repo_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if repo_fd < 0 {
        return Err(io_err(format!(
            "cannot open the repository {}",
            repo.display()
        ))(io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor we own.
    let repo_fd = unsafe { OwnedFd::from_raw_fd(repo_fd) };
    if relative.as_os_str().is_empty() {
        return Ok(repo_fd);
    }
    let rel_c = CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| io_err("cwd")(io::Error::other("NUL")))?;
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
        return Err(io_err(format!(
            "the working directory {} cannot be opened beneath the repository",
            dir.display()
        ))(io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `Some(n)` for a limit, `None` for unlimited.
/// Reports the opt-in system call filter.
fn describe_seccomp(plan: &Plan, report: &mut EnforcementReport) {
    if !plan.seccomp.value {
        report.add(
            "seccomp",
            Status::NotRequested,
            "no seccomp",
            "no system call filter (`seccomp.deny_dangerous` is off)",
            false,
        );
        return;
    }
    match seccomp::program() {
        Ok(_) => report.add(
            "seccomp",
            Status::Enforced,
            "seccomp",
            format!(
                "EPERM for {}; clone3 ENOSYS; x32 and foreign-architecture calls refused",
                seccomp::DENIED
            ),
            true,
        ),
        Err(why) => report.add("seccomp", Status::NotEnforced, "seccomp", why, true),
    }
}

fn limit_value(limit: &Limit) -> Option<u64> {
    match limit {
        Limit::Value(n) => Some(*n),
        Limit::Unlimited => None,
    }
}
