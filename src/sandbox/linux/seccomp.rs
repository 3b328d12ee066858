//! The opt-in seccomp layer (`[seccomp] deny_dangerous = true`): system
//! calls a build or a linter has no business making fail with EPERM.
//!
//! The filter is a deny list on top of Landlock, not an allow list: it
//! closes kernel attack surface and the ways out of a job that Landlock
//! does not cover (tracing or reading other processes, keyrings, BPF,
//! mounts, new namespaces, pushing keystrokes into a terminal). It is
//! compiled once, in the parent, by `seccompiler`, and installed by the
//! child after `no_new_privs` and before Landlock.
//!
//! Three details make a deny list hold:
//! - `clone3` passes its flags in memory a filter cannot read, so it fails
//!   with ENOSYS: libc then falls back to `clone`, whose namespace flags
//!   are checked;
//! - on x86_64, x32 system calls (numbers with bit 30 set) would not match
//!   the 64-bit numbers in the list, so every x32 call fails with EPERM; a
//!   system call of another architecture (`int 0x80`) kills the process;
//! - `ioctl` requests are matched on their low 32 bits, as the kernel reads
//!   them, so `TIOCSTI | 1 << 32` is caught too.

use super::spec::Spec;
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What the filter denies, for reports and docs.
pub(crate) const DENIED: &str = "ptrace, process_vm_readv/writev, process_madvise, pidfd_getfd, perf_event_open, bpf, userfaultfd, keyctl, add_key, request_key, mount and the mount API, unshare, setns, namespace flags of clone, TIOCSTI and TIOCLINUX";

/// System calls denied whatever their arguments.
const ALWAYS: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_pidfd_getfd,
    libc::SYS_perf_event_open,
    libc::SYS_bpf,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
];

/// `clone` flags that create namespaces.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// Pushes a byte into a terminal's input queue.
const TIOCSTI: u64 = 0x5412;
/// Console tricks, among them pasting the selection as input.
const TIOCLINUX: u64 = 0x541C;

const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// Other architectures get no filter (`compile` says so), and `required`
/// policies that ask for one refuse.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A system call number as seccompiler keys it (`c_long` is 32 bits on
/// 32-bit targets).
#[allow(clippy::useless_conversion)]
fn nr(n: libc::c_long) -> i64 {
    i64::from(n)
}

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

/// The compiled filter, built on first use.
pub(crate) fn program() -> Result<&'static [libc::sock_filter], String> {
    static PROGRAM: OnceLock<Result<Vec<libc::sock_filter>, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(compile)
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

fn compile() -> Result<Vec<libc::sock_filter>, String> {
    // The prelude below knows these two; elsewhere its clone3 and x32
    // checks would silently not apply, so there is no filter at all.
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err(format!(
            "no seccomp filter for {} (jobwarden's filter covers x86_64 and aarch64)",
            std::env::consts::ARCH
        ));
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let condition = |arg, op, value| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
    };
    let rule = |conditions| SeccompRule::new(conditions).map_err(|e| e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALWAYS.iter().map(|n| (nr(*n), Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|flag| {
            let flag = *flag as u32 as u64;
            rule(vec![condition(0, SeccompCmpOp::MaskedEq(flag), flag)?])
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(nr(libc::SYS_clone), clone_rules);
    let ioctl_rules = [TIOCSTI, TIOCLINUX]
        .into_iter()
        .map(|request| rule(vec![condition(1, SeccompCmpOp::Eq, request)?]))
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(nr(libc::SYS_ioctl), ioctl_rules);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let compiled: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;

    // Before seccompiler's program (which checks the architecture itself
    // and kills on a mismatch): on this architecture, x32 calls fail and
    // clone3 fails with ENOSYS.
    let x32 = cfg!(target_arch = "x86_64");
    let mut program = vec![
        // 0: arch; not ours → seccompiler's program (jf to 7).
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 0, 5),
        // 2: the system call number.
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR),
        // 3: x32 → EPERM (at 5); elsewhere no number reaches the bit.
        jump(
            BPF_JGE_K,
            if x32 { X32_SYSCALL_BIT } else { u32::MAX },
            1,
            0,
        ),
        // 4: clone3 → ENOSYS (at 6), else seccompiler's program (at 7).
        jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 1, 2),
        stmt(BPF_RET_K, errno(libc::EPERM)),
        stmt(BPF_RET_K, errno(libc::ENOSYS)),
    ];
    program.extend(compiled.iter().map(|i| libc::sock_filter {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    }));
    if program.len() > u16::MAX as usize {
        return Err("the seccomp program is too long".into());
    }
    Ok(program)
}

/// The seccomp layer: installs the filter when the plan asks for it.
pub(crate) struct Seccomp;

/// The filter to install, or why there is none although the plan asked.
pub(crate) enum Outcome {
    NotAsked,
    Filter(&'static [libc::sock_filter]),
    Unavailable(String),
}

impl Layer for Seccomp {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        if !job.plan.seccomp.value {
            return Outcome::NotAsked;
        }
        match program() {
            Ok(filter) => Outcome::Filter(filter),
            Err(why) => Outcome::Unavailable(why),
        }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let outcome = self.predict(job);
        if let Outcome::Filter(filter) = outcome {
            spec.seccomp = Some(filter);
        }
        Ok(outcome)
    }

    fn report(&self, _job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        report.push(match outcome {
            Outcome::NotAsked => Item::new(
                ItemKind::Seccomp,
                Status::NotRequested,
                "no seccomp",
                "no system call filter (`seccomp.deny_dangerous` is off)",
                Requirement::Advisory,
            ),
            Outcome::Filter(_) => Item::enforced(
                ItemKind::Seccomp,
                "seccomp",
                format!(
                    "EPERM for {DENIED}; clone3 ENOSYS; x32 and foreign-architecture calls refused"
                ),
            ),
            Outcome::Unavailable(why) => Item::not_enforced(ItemKind::Seccomp, why.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_with_its_prelude() {
        let program = program().unwrap();
        assert!(program.len() > 7 + ALWAYS.len());
        assert_eq!(program[6].k, errno(libc::ENOSYS));
        // Every jump stays inside the program.
        for (i, insn) in program.iter().enumerate() {
            if insn.code & 0x07 == 0x05 {
                assert!(i + 1 + (insn.jt.max(insn.jf) as usize) < program.len());
            }
        }
    }
}
