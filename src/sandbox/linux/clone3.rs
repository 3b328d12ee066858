//! The spawner's `clone3`: the child is born in the job's cgroup v2
//! (`CLONE_INTO_CGROUP`), so it never writes `cgroup.procs` there.
//!
//! Joining a cgroup by writing migrates the process, which takes the
//! cgroup threadgroup lock for writing: whenever that lock went unused for
//! a few milliseconds, the writer waits for an RCU grace period (8–21 ms
//! measured here after a 20 ms pause). A child born in its cgroup takes the
//! lock only for reading, as every fork does. On a pure cgroup-v2 host
//! that removes every join; on a hybrid one the v1 hierarchies are still
//! joined by writing (`spawn.rs`).
//!
//! glibc has no public `clone3` wrapper, and the child must start on its
//! own stack before any compiled code runs in it, so the call is written
//! out in assembly for x86_64; elsewhere it reports ENOSYS and the spawner
//! uses `clone`, as it does when the kernel or a filter around the host
//! refuses `clone3`.

use std::os::fd::RawFd;
#[cfg(target_arch = "x86_64")]
use std::sync::atomic::{AtomicBool, Ordering};

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[cfg(target_arch = "x86_64")]
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

#[cfg(target_arch = "x86_64")]
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Whether `clone3` with `CLONE_INTO_CGROUP` failed in a way that will not
/// change (an old kernel, or a seccomp filter around the host refusing
/// `clone3`): then every spawn goes straight to `clone`.
#[cfg(target_arch = "x86_64")]
pub(super) static CLONE3_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_INTO_CGROUP)`
/// running `child(arg)` on `stack`; the pid, or -1 with errno set (and
/// nothing started), after which the caller uses `clone`. glibc has no
/// public `clone3` wrapper, and the child must start on its own stack
/// before any compiled code runs, so the call is written out here, for
/// x86_64; elsewhere it reports ENOSYS and `clone` is used.
///
/// # Safety
/// The caller's frame must keep `arg` and everything it points to alive
/// until this returns (`CLONE_VFORK` suspends the calling thread until the
/// child has exec'd or exited); `stack` must be a mapping of `stack_size`
/// bytes used by nobody else, its top 16-byte aligned.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn clone3_into(
    cgroup: RawFd,
    stack: *mut libc::c_void,
    stack_size: usize,
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    pidfd: &mut libc::c_int,
) -> libc::pid_t {
    if CLONE3_UNAVAILABLE.load(Ordering::Relaxed) {
        // SAFETY: writes this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    let mut clone_args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64 | CLONE_INTO_CGROUP,
        pidfd: pidfd as *mut libc::c_int as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: stack_size as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup as u64,
    };
    let ret: i64;
    // SAFETY: the system call returns twice. In this thread it returns the
    // pid or -errno, having only written the pidfd through `clone_args`.
    // The child resumes at the same instruction with the same registers on
    // the new stack (rsp = stack + stack_size, aligned), where no compiled
    // code's frame exists: it clears the frame pointer, calls `child(arg)`
    // (r12, r13 survive the system call), and exits with its result should
    // it ever return (the spawner's child execs or `_exit`s).
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &mut clone_args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") child,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        let errno = (-ret) as i32;
        // ENOSYS: no clone3 (or a filter refusing it); E2BIG or EINVAL: no
        // CLONE_INTO_CGROUP in this kernel. Anything else (a full pid
        // table, no permission on the cgroup) may be this spawn's alone.
        if matches!(errno, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
            CLONE3_UNAVAILABLE.store(true, Ordering::Relaxed);
        }
        // SAFETY: writes this thread's errno.
        unsafe { *libc::__errno_location() = errno };
        return -1;
    }
    ret as libc::pid_t
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn clone3_into(
    _cgroup: RawFd,
    _stack: *mut libc::c_void,
    _stack_size: usize,
    _child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
    _pidfd: &mut libc::c_int,
) -> libc::pid_t {
    // SAFETY: writes this thread's errno.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

#[cfg(test)]
mod tests {
    use super::super::spawn::Spawner;
    use super::super::spec::{Spec, above_stdio};
    use super::super::test_skip as skip;
    #[cfg(target_arch = "x86_64")]
    use super::*;
    use crate::sandbox::{HashCache, HostSupport, SpawnError, SupportOptions};
    use std::os::fd::OwnedFd;

    /// A prepared `sleep 5` with the host's cgroups, the `cgroup.procs` of
    /// its v2 cgroup replaced by a read-only descriptor: a child that writes
    /// to it fails with EBADF. `None` (and a note) without a v2 hierarchy
    /// jobwarden can create cgroups in.
    fn sleeper(dir: &std::path::Path, name: &str) -> Option<Spec> {
        let support = HostSupport::detect(&SupportOptions::default());
        if support.os().cgroups.v2.is_none() {
            skip(
                "cgroup-v2-usable",
                "no cgroup2 hierarchy jobwarden can create job cgroups in",
            );
            return None;
        }
        let text = r#"
version = 1
enforcement = "best_effort"
[filesystem]
read = ["/usr", "/lib", "/lib64", "/bin"]
read_write = ["{repo}", "{tmp}"]
[binaries.sleep]
path = "/bin/sleep"
[plugins.t]
binaries = ["sleep"]
"#;
        let plan = super::super::test_plan(dir, text, "sleep", &["5"]);
        let mut spec = crate::sandbox::prepare(&plan, &support, name, &mut HashCache::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .spec;
        assert!(
            spec.cgroup_v2_dir.is_some(),
            "the v2 cgroup has a directory"
        );
        let read_only = std::fs::File::open("/dev/null").unwrap();
        spec.cgroup_procs[0] = above_stdio(OwnedFd::from(read_only)).unwrap();
        Some(spec)
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_child_is_born_in_its_v2_cgroup_without_writing_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("jobwarden-{}-born-test", std::process::id());
        let Some(spec) = sleeper(dir.path(), &name) else {
            return;
        };
        // The job's cgroups (the pool's, not named after the job).
        let cgroup = spec.cgroup.as_ref().unwrap();
        let name_of = |dir: Option<&std::path::Path>| {
            dir.and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        };
        let v2_name = name_of(cgroup.v2_dir()).unwrap();
        let pids_name = name_of(cgroup.pids_dir());
        // A v1 cgroup is joined through `tasks` (no global lock).
        if let Some(pids) = cgroup.pids_dir() {
            use std::os::fd::AsRawFd;
            let fd = spec.cgroup_procs[1].as_raw_fd();
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            assert_eq!(target, pids.join("tasks"));
        }
        let mut spawned = match Spawner::new().unwrap().spawn(spec) {
            Ok(spawned) => spawned,
            // An old kernel, or a seccomp filter around these tests
            // (Docker's default answers ENOSYS): the fallback wrote.
            Err(_) if CLONE3_UNAVAILABLE.load(Ordering::Relaxed) => {
                skip(
                    "clone3-into-cgroup",
                    "clone3 with CLONE_INTO_CGROUP is refused here",
                );
                return;
            }
            Err(e) => panic!("born into the cgroup, the child writes nothing: {e}"),
        };
        let membership = std::fs::read_to_string(format!("/proc/{}/cgroup", spawned.pid)).unwrap();
        let v2_line = membership.lines().find(|l| l.starts_with("0::")).unwrap();
        assert!(v2_line.ends_with(&format!("/{v2_name}")), "{membership}");
        // The v1 pids cgroup (a hybrid host) was joined through `tasks`.
        if let Some(pids_name) = pids_name {
            let pids = membership
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|c| c == "pids"))
                })
                .unwrap();
            assert!(pids.ends_with(&format!("/{pids_name}")), "{membership}");
        }
        spawned.tree.kill_all(
            super::super::tree::HostProcess::current(),
            &Default::default(),
        );
        spawned.exit.wait();
        spawned.tree.dismantle().unwrap();
    }

    /// The control: without the directory, the child joins by writing, and
    /// the read-only `cgroup.procs` refuses it.
    #[test]
    fn without_the_directory_the_child_writes_and_the_write_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("jobwarden-{}-written-test", std::process::id());
        let Some(mut spec) = sleeper(dir.path(), &name) else {
            return;
        };
        spec.cgroup_v2_dir = None;
        match Spawner::new().unwrap().spawn(spec) {
            Err(SpawnError::Confine { call, source }) => {
                assert_eq!(call, "write(cgroup.procs or tasks)");
                assert_eq!(source.raw_os_error(), Some(libc::EBADF));
            }
            Err(e) => panic!("failed elsewhere: {e}"),
            Ok(_) => panic!("the child did not write to cgroup.procs"),
        }
    }
}
