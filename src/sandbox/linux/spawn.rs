//! Starting a confined job without `fork()`.
//!
//! # Why not `std::process::Command` with `pre_exec`
//!
//! Any `pre_exec` closure makes std fall back from `posix_spawn` to
//! `fork()`, and `fork()` copies the parent's page tables: measured here at
//! ~45 µs per MiB the host holds, so a 256 MiB TUI pays 10–13 ms per job.
//! A helper binary that confines itself and then execs (the JVM's
//! `jspawnhelper` design) keeps the cost flat but pays a second `execve`
//! (~1.6 ms here) and needs a binary installed next to every embedding
//! program.
//!
//! jobwarden does what glibc's `posix_spawn` does internally: `clone` with
//! `CLONE_VM | CLONE_VFORK`. The child shares the parent's memory (nothing
//! is copied, so the cost does not depend on the host's size) and the
//! calling thread is suspended until the child has called `execve` or died.
//! Between the two, the child runs [`child_main`], which applies the whole
//! confinement with raw system calls on data prepared here, then execs.
//!
//! # What makes the child sound
//!
//! The child runs on its own stack in the parent's address space, while the
//! parent's other threads keep running. It must therefore never take a lock,
//! allocate, unwind or touch state another thread may change. It:
//! - only reads `SpawnSpec` and `ChildArgs`, which the suspended calling
//!   thread keeps alive and unchanged until `clone` returns;
//! - only calls async-signal-safe functions and raw system calls; errors are
//!   reported by storing a stage and an errno into `ChildArgs` (atomics);
//! - runs with every signal blocked until it has reset every handler to the
//!   default, so no handler of the parent ever runs on the shared memory;
//! - contains no indexing or arithmetic that can panic.
//!
//! The order of the steps: signals, `setsid`, parent-death signal (+
//! `getppid` check), join the cgroups, the job's own mount namespace, stdio,
//! `fchdir`, rlimits (after everything that opens descriptors), mark every
//! other descriptor close-on-exec, drop capabilities, `no_new_privs`
//! (seccomp and Landlock need it without `CAP_SYS_ADMIN`), seccomp,
//! Landlock (so the filter and the ruleset never hinder the steps before
//! them), the observation filter when the host observes (it must observe
//! none of the steps before it; see `observe.rs`), exec. Each step runs
//! only if a layer asked for it in the [`Spec`].
//!
//! The pidfd comes from `clone` itself (`CLONE_PIDFD`), so the exit watch
//! refers to exactly the process created, never to a reused pid.

use super::clone3::clone3_into;
use super::enter::enter_namespace;
use super::io::ExitWatch;
use super::notify::Observer;
use super::observe::receive;
use super::spec::Spec;
use super::tree::Tree;
use crate::sandbox::unix::rlimits::{self, Rlimit};
use crate::sandbox::{SpawnError, Spawned};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// The step of the child's setup that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Stage {
    Signals = 1,
    Setsid,
    ParentDeathSignal,
    Rlimit,
    JoinCgroup,
    Unshare,
    UserMaps,
    Mounts,
    Stdio,
    Chdir,
    CloseDescriptors,
    DropCapabilities,
    Seccomp,
    NoNewPrivs,
    Landlock,
    Observe,
    Exec,
}

impl Stage {
    fn from_u32(n: u32) -> Option<Self> {
        use Stage::*;
        [
            Signals,
            Setsid,
            ParentDeathSignal,
            Rlimit,
            JoinCgroup,
            Unshare,
            UserMaps,
            Mounts,
            Stdio,
            Chdir,
            CloseDescriptors,
            DropCapabilities,
            Seccomp,
            NoNewPrivs,
            Landlock,
            Observe,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }

    /// The system call behind the stage, as error messages name it.
    fn syscall(self) -> &'static str {
        match self {
            Stage::Signals => "sigaction",
            Stage::Setsid => "setsid",
            Stage::ParentDeathSignal => "prctl(PR_SET_PDEATHSIG)",
            Stage::Rlimit => "setrlimit",
            Stage::JoinCgroup => "write(cgroup.procs or tasks)",
            Stage::Unshare => "unshare",
            Stage::UserMaps => "write(/proc/self/uid_map)",
            Stage::Mounts => "mount (the job's mount namespace)",
            Stage::Stdio => "dup2",
            Stage::Chdir => "fchdir",
            Stage::CloseDescriptors => "close_range",
            Stage::DropCapabilities => "capset",
            Stage::Seccomp => "seccomp",
            Stage::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)",
            Stage::Landlock => "landlock_restrict_self",
            Stage::Observe => "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)",
            Stage::Exec => "execve",
        }
    }
}

/// Shared between parent and child: the child writes, the parent reads
/// after the child has exec'd or exited.
struct ChildArgs {
    spec: *const Spec,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    parent: libc::pid_t,
    default_action: libc::sigaction,
    empty_mask: libc::sigset_t,
    rlimits: *const Rlimit,
    rlimits_len: usize,
    cgroups: *const OwnedFd,
    cgroups_len: usize,
    /// The seccomp programs, installed in order.
    seccomp: *const libc::sock_fprog,
    seccomp_len: usize,
    error_stage: AtomicU32,
    error_errno: AtomicI32,
}

/// Starts jobs. Holds the child stack, reused for every spawn; must be used
/// from one long-lived thread (the parent-death signal fires when the
/// thread that spawned exits).
pub(crate) struct Spawner {
    stack: *mut libc::c_void,
    stack_size: usize,
}

// The stack is only touched during `spawn`, which takes `&mut self`.
unsafe impl Send for Spawner {}

const STACK_SIZE: usize = 256 * 1024;

impl Spawner {
    pub fn new() -> Result<Self, SpawnError> {
        // SAFETY: an anonymous private mapping; checked for MAP_FAILED.
        let stack = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if stack == libc::MAP_FAILED {
            return Err(SpawnError::Stack(io::Error::last_os_error()));
        }
        let spawner = Self {
            stack,
            stack_size: STACK_SIZE,
        };
        // A guard page at the low end: an overflow faults instead of
        // silently writing into whatever lies below. Without it the child
        // could corrupt the host's memory, so its failure is an error.
        // SAFETY: the first page of the mapping we just made.
        if unsafe { libc::mprotect(stack, page_size(), libc::PROT_NONE) } != 0 {
            return Err(SpawnError::Stack(io::Error::last_os_error()));
        }
        Ok(spawner)
    }

    /// Starts the job described by `spec`. The spec is consumed: the
    /// parent's copies of the child's descriptors are closed before this
    /// returns (or the pipes would never reach end-of-file), and its
    /// containment moves into the job's [`Tree`].
    pub fn spawn(&mut self, spec: Spec) -> Result<Spawned, SpawnError> {
        // Until `Tree::new` has registered the leader, no host of this
        // process may read `/proc` for the no-cgroup attribution.
        let _gate = super::tree::spawn_gate();
        let spawned = self.clone_child(&spec);
        let Spec {
            output: (stdout, stderr),
            dir,
            cgroup,
            holds,
            observe,
            ..
        } = spec;
        let (pid, pidfd) = spawned?;
        let mut exit = ExitWatch::new(pid, Some(pidfd));
        // The child sent its observation listener before exec. Without it
        // the job's observed calls would fail (ENOSYS) once the message is
        // dropped, so a job whose listener is lost does not run on.
        let observer = match observe.as_ref().map(|o| (receive(o), o)) {
            None => None,
            Some((Ok(listener), o)) => Some(Observer::new(listener, o.context.clone())),
            Some((Err(source), _)) => {
                // SAFETY: kill(2) of the child we just started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                exit.wait();
                return Err(SpawnError::Confine {
                    call: "recvmsg (the observation listener)",
                    source,
                });
            }
        };
        Ok(Spawned {
            pid,
            exit,
            tree: Tree::new(pid, cgroup, holds),
            stdout,
            stderr,
            dir,
            observer,
        })
    }

    /// Clones the child and waits (suspended, `CLONE_VFORK`) until it has
    /// exec'd or failed; returns its pid and pidfd.
    fn clone_child(&mut self, spec: &Spec) -> Result<(i32, OwnedFd), SpawnError> {
        let argv: Vec<*const libc::c_char> = spec
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = spec
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // SAFETY: plain C structs, zero is a valid bit pattern for both.
        let mut default_action: libc::sigaction = unsafe { std::mem::zeroed() };
        default_action.sa_sigaction = libc::SIG_DFL;
        let mut empty_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: initialises the local set.
        unsafe { libc::sigemptyset(&mut empty_mask) };
        let seccomp: Vec<libc::sock_fprog> = spec
            .seccomp
            .iter()
            .flat_map(|programs| programs.iter())
            .map(|program| libc::sock_fprog {
                len: program.len() as libc::c_ushort,
                filter: program.as_ptr() as *mut libc::sock_filter,
            })
            .collect();
        let args = ChildArgs {
            spec,
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
            default_action,
            empty_mask,
            rlimits: spec.rlimits.as_ptr(),
            rlimits_len: spec.rlimits.len(),
            cgroups: spec.cgroup_procs.as_ptr(),
            cgroups_len: spec.cgroup_procs.len(),
            seccomp: seccomp.as_ptr(),
            seccomp_len: seccomp.len(),
            error_stage: AtomicU32::new(0),
            error_errno: AtomicI32::new(0),
        };

        // Block every signal in this thread; the child inherits the mask and
        // unblocks only after resetting handlers.
        // SAFETY: sigset_t locals initialised by sigfillset / written by the call.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        let mut args = args;
        let mut pidfd: libc::c_int = -1;
        // Born into the v2 cgroup where the kernel offers it: no write to
        // `cgroup.procs`, so no migration, which waits for an RCU grace
        // period whenever none ran in the last few milliseconds (8–21 ms
        // measured here after a pause). On a pure cgroup-v2 host that is
        // every join; the v1 ones (a hybrid host) are still written, to
        // `tasks`, which moves the one thread without that lock.
        let mut pid = -1;
        if let Some(dir) = &spec.cgroup_v2_dir
            && let Some(procs) = spec.cgroup_procs.get(1..)
        {
            args.cgroups = procs.as_ptr();
            args.cgroups_len = procs.len();
            // SAFETY: as for `clone` below; `clone3_into` runs `child_main`
            // on the stack given and never returns in the child.
            pid = unsafe {
                clone3_into(
                    dir.as_raw_fd(),
                    self.stack,
                    self.stack_size,
                    child_main,
                    &args as *const ChildArgs as *mut libc::c_void,
                    &mut pidfd,
                )
            };
            args.cgroups = spec.cgroup_procs.as_ptr();
            args.cgroups_len = spec.cgroup_procs.len();
        }
        let mut clone_error = io::Error::last_os_error();
        if pid < 0 {
            let top = (self.stack as usize + self.stack_size) & !15;
            // SAFETY: CLONE_VM | CLONE_VFORK suspends this thread until the
            // child execs or exits, so `args`, `argv`, `envp` and `spec`
            // outlive every use by the child; the stack is ours and unused
            // by anyone else. With CLONE_PIDFD the kernel stores the child's
            // pidfd (close-on-exec) through the parent-tid argument before
            // the child runs.
            pid = unsafe {
                libc::clone(
                    child_main,
                    top as *mut libc::c_void,
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
                    &args as *const ChildArgs as *mut libc::c_void,
                    &mut pidfd as *mut libc::c_int,
                )
            };
            clone_error = io::Error::last_os_error();
        }
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        if pid < 0 {
            return Err(SpawnError::Clone(clone_error));
        }
        // SAFETY: the kernel wrote a fresh descriptor we own (a successful
        // clone with CLONE_PIDFD always does).
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };

        let stage = args.error_stage.load(Ordering::Acquire);
        if stage != 0 {
            let errno = args.error_errno.load(Ordering::Acquire);
            let mut status = 0;
            // SAFETY: reaps the child that reported a failure and exited.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let source = io::Error::from_raw_os_error(errno);
            return Err(match Stage::from_u32(stage).unwrap_or(Stage::Exec) {
                Stage::Exec => SpawnError::Exec(source),
                stage => SpawnError::Confine {
                    call: stage.syscall(),
                    source,
                },
            });
        }
        Ok((pid, pidfd))
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.stack, self.stack_size) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

pub(super) fn errno() -> i32 {
    // SAFETY: reads the calling thread's errno. In the child this is the
    // suspended parent thread's TLS slot, which nobody else uses meanwhile.
    unsafe { *libc::__errno_location() }
}

/// Records the failed stage and ends the child.
fn fail(args: &ChildArgs, stage: Stage, errno: i32) -> libc::c_int {
    args.error_errno.store(errno, Ordering::Release);
    args.error_stage.store(stage as u32, Ordering::Release);
    // SAFETY: _exit is async-signal-safe and ends only this process.
    unsafe { libc::_exit(127) }
}

const LANDLOCK_RESTRICT_SELF_FLAGS: libc::c_uint = 0;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The child between `clone` and `execve`. See the module docs for what it
/// may and may not do.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` of the suspended parent frame, and
    // every pointer in it refers to data that frame keeps alive.
    let args = unsafe { &*(arg as *const ChildArgs) };
    let spec = unsafe { &*args.spec };
    unsafe {
        // 1. Default handlers for every signal, then an empty mask. Reset
        //    before unblocking, so no parent handler can run here. glibc
        //    refuses its two internal signals with EINVAL; that is fine.
        let mut sig = 1;
        while sig < 65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &args.default_action, std::ptr::null_mut());
            }
            sig += 1;
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &args.empty_mask, std::ptr::null_mut()) != 0 {
            return fail(args, Stage::Signals, errno());
        }

        // 2. A new session and process group, without a controlling terminal.
        if spec.new_session && libc::setsid() < 0 {
            return fail(args, Stage::Setsid, errno());
        }

        // 3. Die with the host; if the host is already gone, stop here.
        if let Some(signal) = spec.parent_death_signal {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return fail(args, Stage::ParentDeathSignal, errno());
            }
            if libc::getppid() != args.parent {
                return fail(args, Stage::ParentDeathSignal, libc::ESRCH);
            }
        }

        // 4. Join the job's cgroups ("0" means the writing process).
        let mut i = 0;
        while i < args.cgroups_len {
            let fd = (*args.cgroups.add(i)).as_raw_fd();
            if libc::write(fd, b"0".as_ptr() as *const libc::c_void, 1) != 1 {
                return fail(args, Stage::JoinCgroup, errno());
            }
            i += 1;
        }

        // 5. The job's own mount namespace: writable roots noexec,
        //    protected paths read-only (see mounts.rs).
        let mut cwd = spec.cwd.as_raw_fd();
        if let Some(ns) = &spec.namespace {
            match enter_namespace(ns) {
                Ok(reopened) => cwd = reopened,
                Err((stage, errno)) => return fail(args, stage, errno),
            }
        }

        // 6. stdin from /dev/null, stdout and stderr to our pipes. Every
        //    source descriptor is ≥ 3, so these cannot clobber each other.
        let stdio = [
            (spec.stdin.as_raw_fd(), 0),
            (spec.stdout.as_raw_fd(), 1),
            (spec.stderr.as_raw_fd(), 2),
        ];
        for (from, to) in stdio {
            if libc::dup2(from, to) < 0 {
                return fail(args, Stage::Stdio, errno());
            }
        }

        // 7. The working directory: opened beneath the repo by the parent,
        //    or again inside the new mount namespace (a descriptor from
        //    before would keep the old, executable mount).
        if libc::fchdir(cwd) != 0 {
            return fail(args, Stage::Chdir, errno());
        }

        // 8. Resource limits, with raw setrlimit (it cannot allocate); after
        //    the steps above, which need descriptors beyond a low
        //    RLIMIT_NOFILE (the child still holds the host's until exec).
        let limits = std::slice::from_raw_parts(args.rlimits, args.rlimits_len);
        if let Err(errno) = rlimits::apply_in_child(limits) {
            return fail(args, Stage::Rlimit, errno);
        }

        // 9. No inherited descriptor beyond stdio survives exec.
        if spec.only_stdio
            && libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0
        {
            return fail(args, Stage::CloseDescriptors, errno());
        }

        // 10. No capabilities, now or after exec (empty bounding set).
        if let Some(cap_last) = spec.drop_capabilities_to {
            let mut cap = 0;
            while cap <= cap_last {
                libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                cap += 1;
            }
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            );
            let header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let data = [CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            }; 2];
            if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) != 0 {
                return fail(args, Stage::DropCapabilities, errno());
            }
        }

        // 11. no_new_privs: required by seccomp and Landlock without
        //     CAP_SYS_ADMIN, and keeps setuid binaries from regaining privileges.
        if spec.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return fail(args, Stage::NoNewPrivs, errno());
        }

        // 12. seccomp, then Landlock.
        for program in std::slice::from_raw_parts(args.seccomp, args.seccomp_len) {
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                program as *const libc::sock_fprog as libc::c_ulong,
                0,
                0,
            ) != 0
            {
                return fail(args, Stage::Seccomp, errno());
            }
        }

        // 13. Landlock, last of the confinement.
        if let Some(ruleset) = &spec.landlock
            && libc::syscall(
                libc::SYS_landlock_restrict_self,
                ruleset.as_raw_fd(),
                LANDLOCK_RESTRICT_SELF_FLAGS,
            ) != 0
        {
            return fail(args, Stage::Landlock, errno());
        }

        // 14. Observation, after everything it must not observe: the notify
        //     filter, whose listener goes to the parent now (the parent
        //     cannot answer before this child has exec'd).
        let mut magic: u64 = 0;
        if let Some(observe) = &spec.observe {
            if let Err(errno) = super::observe::install(observe) {
                return fail(args, Stage::Observe, errno);
            }
            magic = observe.magic;
        }

        // 15. Exec. The sixth argument, which execve and execveat ignore,
        //     carries the value that lets this one exec pass the notify
        //     filter (0 without one).
        match &spec.exec_fd {
            Some(fd) => {
                libc::syscall(
                    libc::SYS_execveat,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    args.argv,
                    args.envp,
                    libc::AT_EMPTY_PATH,
                    magic,
                );
            }
            None => {
                libc::syscall(
                    libc::SYS_execve,
                    spec.program.as_ptr(),
                    args.argv,
                    args.envp,
                    0,
                    0,
                    magic,
                );
            }
        }
        fail(args, Stage::Exec, errno())
    }
}
