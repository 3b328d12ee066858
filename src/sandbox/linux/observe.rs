//! The observation layer (`run --why`, learn mode): a seccomp filter that
//! asks the host about every system call worth recording — opening,
//! creating, removing, renaming, executing, mapping a file executable,
//! creating, connecting and binding sockets — and whose listener the host
//! polls (`notify.rs`).
//!
//! The invariant: observation never changes what a job may do. The filter
//! returns `SECCOMP_RET_USER_NOTIF` and the host always answers "continue"
//! (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), so the kernel then runs the call
//! through every other layer exactly as without it: the kernel baseline's
//! `SECCOMP_RET_ERRNO` takes precedence over a notification, and Landlock
//! and the mounts answer after it. (What the host reads of a call's
//! arguments can change between its read and the call; that matters to an
//! enforcer, not to a recorder.)
//!
//! The child installs the filter last, after Landlock, and must never wait
//! for the host before exec: the host thread is suspended in `clone`
//! (`CLONE_VFORK`) until then. So the child sends the listener to the host
//! over a socket pair (`sendmsg` is not observed) and executes with a
//! 64-bit value, random per job, in the sixth argument register, which
//! `execve` and `execveat` ignore and the filter lets pass unobserved.
//! The job never holds the listener (it is close-on-exec, and closed before
//! exec) and cannot read the value (its filter is not readable without
//! `CAP_SYS_ADMIN`), so only the spawner's own exec passes unobserved.

use super::filter;
use super::spec::{Spec, above_stdio};
use crate::observe::GrantContext;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use crate::sandbox::{Observation, PrepareError};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// The observation layer. It comes after every layer whose grants the
/// host explains refusals with (the program's, the mounts', Landlock's).
pub(crate) struct Observe;

/// What the child needs to observe the job, and what the host needs to
/// explain what it sees.
#[derive(Debug)]
pub(crate) struct ObserveSpec {
    pub program: Vec<libc::sock_filter>,
    /// Passed in the sixth argument of the spawner's own exec.
    pub magic: u64,
    /// The child sends the listener on this end.
    pub child_end: OwnedFd,
    /// The host receives it on this one.
    pub parent_end: OwnedFd,
    pub context: GrantContext,
}

/// The layer's outcome.
pub(crate) struct Outcome {
    mode: Observation,
    available: Result<(), String>,
}

/// Whether this kernel can notify and continue (Linux 5.5), detected once.
fn notification_available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE
        .get_or_init(|| {
            filter::available()?;
            let mut sizes: libc::seccomp_notif_sizes = unsafe { std::mem::zeroed() };
            // SAFETY: SECCOMP_GET_NOTIF_SIZES writes the structure we pass.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_GET_NOTIF_SIZES,
                    0,
                    &mut sizes as *mut libc::seccomp_notif_sizes,
                )
            };
            if ret != 0 {
                return Err(format!(
                    "this kernel has no seccomp user notification ({})",
                    std::io::Error::last_os_error()
                ));
            }
            // The host's structures must be at least as large as the
            // kernel's, or a notification would be cut short.
            if (sizes.seccomp_notif as usize) > std::mem::size_of::<libc::seccomp_notif>()
                || (sizes.seccomp_notif_resp as usize)
                    > std::mem::size_of::<libc::seccomp_notif_resp>()
            {
                return Err(
                    "this kernel's seccomp notifications are larger than jobwarden knows".into(),
                );
            }
            if kernel_below(5, 5) {
                return Err(
                    "seccomp notifications cannot let a call continue before Linux 5.5".into(),
                );
            }
            Ok(())
        })
        .clone()
}

/// Whether the running kernel is older than `major.minor`.
fn kernel_below(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

impl Layer for Observe {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        let mode = job.support.observation;
        Outcome {
            mode,
            available: if mode == Observation::Off {
                Ok(())
            } else {
                notification_available()
            },
        }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let outcome = self.predict(job);
        if outcome.mode == Observation::Off || outcome.available.is_err() {
            return Ok(outcome);
        }
        let magic = random_magic();
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into the array.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(PrepareError::last_os_error("socketpair (observation)"));
        }
        // SAFETY: fresh descriptors we own.
        let (parent_end, child_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        spec.observe = Some(ObserveSpec {
            program: program(magic),
            magic,
            child_end: above_stdio(child_end)?,
            parent_end,
            context: GrantContext {
                exec: job.facts.exec.clone(),
                protected: job.facts.protected.clone(),
            },
        });
        Ok(outcome)
    }

    fn report(&self, _job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        let what = match outcome.mode {
            Observation::Off => return,
            Observation::Denials => "refused accesses explained at the end (--why)",
            Observation::Learn => "learn mode: every access recorded",
        };
        report.push(match &outcome.available {
            Ok(()) => Item::new(
                ItemKind::Observation,
                Status::Enforced,
                "observed",
                format!("{what}; seccomp user notification, every call continues unchanged"),
                Requirement::Advisory,
            ),
            Err(why) => Item::new(
                ItemKind::Observation,
                Status::NotEnforced,
                "not observed",
                why.clone(),
                Requirement::Advisory,
            ),
        });
    }
}

/// A nonzero value no job can guess (the kernel's random source).
fn random_magic() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom fills the local buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr() as *mut libc::c_void, 8, 0) };
    let value = u64::from_ne_bytes(bytes);
    if n == 8 && value != 0 {
        value
    } else {
        // Without the kernel's randomness, the clock and the address of a
        // local still vary per job; a guess only hides one exec.
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        (clock ^ (&bytes as *const _ as u64).rotate_left(32)) | 1
    }
}

// ---- the notify program ------------------------------------------------

const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const SECCOMP_DATA_ARGS: u32 = 16;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

/// The offset of the low and high 32 bits of argument `i`.
fn arg(i: u32) -> (u32, u32) {
    let base = SECCOMP_DATA_ARGS + 8 * i;
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

/// When a call is observed.
#[derive(Debug, Clone, Copy)]
enum When {
    Always,
    /// Unless argument 5 is the job's value (the spawner's own exec).
    NotMagic,
    /// Unless the argument has any of these bits (`O_PATH` opens need no
    /// grant).
    Lacks(u32, u32),
    /// Unless the argument is NULL (`sendto` without an address).
    NotNull(u32),
    /// `mmap` of a file with `PROT_EXEC`.
    MapsFileExecutable,
}

/// The calls observed, and when.
fn observed_calls() -> Vec<(libc::c_long, When)> {
    use When::*;
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut calls = vec![
        (libc::SYS_openat, Lacks(2, libc::O_PATH as u32)),
        (libc::SYS_openat2, Always),
        (libc::SYS_execve, NotMagic),
        (libc::SYS_execveat, NotMagic),
        (libc::SYS_mkdirat, Always),
        (libc::SYS_unlinkat, Always),
        (libc::SYS_renameat, Always),
        (libc::SYS_renameat2, Always),
        (libc::SYS_linkat, Always),
        (libc::SYS_symlinkat, Always),
        (libc::SYS_mknodat, Always),
        (libc::SYS_truncate, Always),
        (libc::SYS_socket, Always),
        (libc::SYS_connect, Always),
        (libc::SYS_bind, Always),
        (libc::SYS_sendto, NotNull(4)),
        (libc::SYS_mmap, MapsFileExecutable),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (libc::SYS_open, Lacks(1, libc::O_PATH as u32)),
        (libc::SYS_creat, Always),
        (libc::SYS_mkdir, Always),
        (libc::SYS_rmdir, Always),
        (libc::SYS_unlink, Always),
        (libc::SYS_rename, Always),
        (libc::SYS_link, Always),
        (libc::SYS_symlink, Always),
        (libc::SYS_mknod, Always),
    ]);
    calls
}

/// A jump target while assembling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Allow,
    Notify,
    Block(usize),
}

/// One instruction before its jumps are resolved.
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn ld(offset: u32) -> Insn {
    Insn {
        code: BPF_LD_W_ABS,
        k: offset,
        jt: To::Next,
        jf: To::Next,
    }
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Insn {
    Insn { code, k, jt, jf }
}

/// The notify program for a job whose spawner execs with `magic`.
/// Foreign-architecture and x32 calls pass (the kernel baseline refuses
/// them); a call in [`observed_calls`] notifies when its condition holds.
pub(crate) fn program(magic: u64) -> Vec<libc::sock_filter> {
    let calls = observed_calls();
    let mut head: Vec<Insn> = vec![
        ld(SECCOMP_DATA_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, To::Next, To::Allow),
        ld(SECCOMP_DATA_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        head.push(jump(BPF_JGE_K, 0x4000_0000, To::Allow, To::Next));
    }
    // Each call: to its block, or straight to Notify when always observed.
    let mut blocks: Vec<Vec<Insn>> = Vec::new();
    for (nr, when) in &calls {
        let target = match when {
            When::Always => To::Notify,
            _ => {
                blocks.push(block(*when, magic));
                To::Block(blocks.len() - 1)
            }
        };
        head.push(jump(BPF_JEQ_K, *nr as u32, target, To::Next));
    }
    head.push(jump(BPF_JEQ_K, 0, To::Allow, To::Allow));
    assemble(head, blocks)
}

fn block(when: When, magic: u64) -> Vec<Insn> {
    match when {
        When::Always => Vec::new(),
        When::NotMagic => {
            let (lo, hi) = arg(5);
            vec![
                ld(lo),
                jump(BPF_JEQ_K, magic as u32, To::Next, To::Notify),
                ld(hi),
                jump(BPF_JEQ_K, (magic >> 32) as u32, To::Allow, To::Notify),
            ]
        }
        When::Lacks(i, bits) => vec![ld(arg(i).0), jump(BPF_JSET_K, bits, To::Allow, To::Notify)],
        When::NotNull(i) => {
            let (lo, hi) = arg(i);
            vec![
                ld(lo),
                jump(BPF_JEQ_K, 0, To::Next, To::Notify),
                ld(hi),
                jump(BPF_JEQ_K, 0, To::Allow, To::Notify),
            ]
        }
        When::MapsFileExecutable => vec![
            ld(arg(2).0),
            jump(BPF_JSET_K, libc::PROT_EXEC as u32, To::Next, To::Allow),
            ld(arg(3).0),
            jump(BPF_JSET_K, libc::MAP_ANONYMOUS as u32, To::Allow, To::Next),
            ld(arg(4).0),
            jump(BPF_JEQ_K, u32::MAX, To::Allow, To::Notify),
        ],
    }
}

/// Lays out `head`, the blocks, then the two returns, and resolves every
/// jump (all forward, as classic BPF requires).
fn assemble(head: Vec<Insn>, blocks: Vec<Vec<Insn>>) -> Vec<libc::sock_filter> {
    let mut starts = Vec::new();
    let mut at = head.len();
    for block in &blocks {
        starts.push(at);
        at += block.len();
    }
    let allow = at;
    let notify = at + 1;
    let all: Vec<Insn> = head
        .into_iter()
        .chain(blocks.into_iter().flatten())
        .collect();
    let resolve = |pc: usize, to: To| -> u8 {
        let target = match to {
            To::Next => pc + 1,
            To::Allow => allow,
            To::Notify => notify,
            To::Block(i) => starts[i],
        };
        let offset = target - (pc + 1);
        u8::try_from(offset).expect("the observation program's jumps fit in 8 bits")
    };
    let mut program: Vec<libc::sock_filter> = all
        .iter()
        .enumerate()
        .map(|(pc, insn)| libc::sock_filter {
            code: insn.code,
            k: insn.k,
            jt: if insn.code == BPF_LD_W_ABS {
                0
            } else {
                resolve(pc, insn.jt)
            },
            jf: if insn.code == BPF_LD_W_ABS {
                0
            } else {
                resolve(pc, insn.jf)
            },
        })
        .collect();
    program.push(libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    });
    program.push(libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_USER_NOTIF,
    });
    program
}

// ---- the child's step --------------------------------------------------

/// In the child, last before exec: installs the notify filter and sends
/// its listener to the host. Raw system calls on data the parent prepared;
/// nothing here allocates. Returns the errno of a failed call.
pub(super) unsafe fn install(observe: &ObserveSpec) -> Result<(), i32> {
    let program = libc::sock_fprog {
        len: observe.program.len() as libc::c_ushort,
        filter: observe.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: raw system calls on a live program, the socket the parent
    // made, and locals; `cmsg` is large and aligned enough for one
    // descriptor (CMSG_SPACE(4) is 24 bytes on every Linux target).
    unsafe {
        let listener = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &program as *const libc::sock_fprog,
        ) as libc::c_int;
        if listener < 0 {
            return Err(super::spawn::errno());
        }
        let mut cmsg = [0u64; 4];
        let mut byte = 0u8;
        let mut iov = libc::iovec {
            iov_base: &mut byte as *mut u8 as *mut libc::c_void,
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header) as *mut libc::c_int, listener);
        let sent = libc::sendmsg(observe.child_end.as_raw_fd(), &msg, libc::MSG_DONTWAIT);
        let error = super::spawn::errno();
        libc::close(listener);
        if sent != 1 {
            return Err(error);
        }
        Ok(())
    }
}

/// In the host, after the child exec'd: the listener it sent.
pub(super) fn receive(observe: &ObserveSpec) -> std::io::Result<OwnedFd> {
    let mut cmsg = [0u64; 4];
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: &mut byte as *mut u8 as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: recvmsg into locals sized for one descriptor; the result is
    // checked before the control message is read.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let n = libc::recvmsg(
            observe.parent_end.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        );
        if n != 1 {
            return Err(if n < 0 {
                std::io::Error::last_os_error()
            } else {
                std::io::Error::other("no listener arrived from the child")
            });
        }
        let header = libc::CMSG_FIRSTHDR(&msg);
        if header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(std::io::Error::other("the child sent no descriptor"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(header) as *const libc::c_int);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(nr: libc::c_long, args: [u64; 6]) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
        bytes[4..8].copy_from_slice(&AUDIT_ARCH.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        bytes
    }

    /// Runs the program on one call (it only loads, compares and returns).
    fn run(program: &[libc::sock_filter], bytes: &[u8; 64]) -> u32 {
        let mut a = 0u32;
        let mut pc = 0usize;
        loop {
            let insn = program[pc];
            pc += 1;
            match insn.code {
                BPF_LD_W_ABS => {
                    let at = insn.k as usize;
                    a = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
                }
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let taken = match insn.code {
                        BPF_JEQ_K => a == insn.k,
                        BPF_JGE_K => a >= insn.k,
                        _ => a & insn.k != 0,
                    };
                    pc += if taken { insn.jt } else { insn.jf } as usize;
                }
                BPF_RET_K => return insn.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    const MAGIC: u64 = 0x1234_5678_9abc_def0;

    #[test]
    fn the_spawners_exec_passes_and_every_other_exec_is_observed() {
        let p = program(MAGIC);
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let allow = libc::SECCOMP_RET_ALLOW;
        assert_eq!(
            run(&p, &data(libc::SYS_execve, [0, 0, 0, 0, 0, MAGIC])),
            allow
        );
        assert_eq!(
            run(&p, &data(libc::SYS_execveat, [0, 0, 0, 0, 0, MAGIC])),
            allow
        );
        // Half the value, or another one, is observed.
        for wrong in [MAGIC as u32 as u64, MAGIC & !0xffff_ffff, 0, MAGIC ^ 1] {
            assert_eq!(
                run(&p, &data(libc::SYS_execve, [0, 0, 0, 0, 0, wrong])),
                notify
            );
        }
        assert_eq!(
            run(&p, &data(libc::SYS_execve, [0, 0, 0, MAGIC, 0, 0])),
            notify
        );
    }

    #[test]
    fn opens_connects_and_executable_maps_are_observed_others_pass() {
        let p = program(MAGIC);
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let allow = libc::SECCOMP_RET_ALLOW;
        let o_path = libc::O_PATH as u64;
        assert_eq!(run(&p, &data(libc::SYS_openat, [0, 0, 0, 0, 0, 0])), notify);
        assert_eq!(
            run(&p, &data(libc::SYS_openat, [0, 0, o_path, 0, 0, 0])),
            allow
        );
        for nr in [
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_socket,
            libc::SYS_unlinkat,
        ] {
            assert_eq!(run(&p, &data(nr, [0; 6])), notify, "{nr}");
        }
        assert_eq!(run(&p, &data(libc::SYS_sendto, [3, 0, 0, 0, 0, 0])), allow);
        assert_eq!(
            run(&p, &data(libc::SYS_sendto, [3, 0, 0, 0, 1 << 33, 0])),
            notify
        );
        let exec = libc::PROT_EXEC as u64;
        let anon = libc::MAP_ANONYMOUS as u64;
        assert_eq!(
            run(&p, &data(libc::SYS_mmap, [0, 4096, exec, 0, 3, 0])),
            notify
        );
        assert_eq!(run(&p, &data(libc::SYS_mmap, [0, 4096, 1, 0, 3, 0])), allow);
        assert_eq!(
            run(
                &p,
                &data(libc::SYS_mmap, [0, 4096, exec, anon, u64::MAX, 0])
            ),
            allow
        );
        assert_eq!(
            run(&p, &data(libc::SYS_mmap, [0, 4096, exec, 0, u64::MAX, 0])),
            allow
        );
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_close,
            libc::SYS_newfstatat,
        ] {
            assert_eq!(run(&p, &data(nr, [0; 6])), allow, "{nr}");
        }
        // Another architecture's calls pass to the baseline, which kills.
        let mut foreign = data(libc::SYS_openat, [0; 6]);
        foreign[4..8].copy_from_slice(&0x4000_0003u32.to_ne_bytes());
        assert_eq!(run(&p, &foreign), allow);
    }
}
