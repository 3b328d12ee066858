//! The job's seccomp filter, assembled from the rules every layer adds.
//!
//! Layers do not write BPF: each adds [`Rule`]s ("`socket` with family
//! `AF_PACKET` fails with EACCES") to the spec, and the seccomp layer
//! compiles them here, once per distinct rule set (cached), into one BPF
//! program per errno — seccompiler gives every rule of a filter the same
//! action, and the kernel evaluates every installed filter, so three small
//! filters (EACCES, EPERM, ENOSYS) behave as one.
//!
//! The filter is a deny list on top of Landlock. Three details make a deny
//! list hold, and live in the prelude of the first program:
//! - `clone3` passes its flags in memory a filter cannot read, so it fails
//!   with ENOSYS: libc then falls back to `clone`, whose namespace flags
//!   are checked;
//! - on x86_64, x32 system calls (numbers with bit 30 set) would not match
//!   the 64-bit numbers in the rules, so every x32 call fails with EPERM;
//! - a system call of another architecture (`int 0x80`) kills the process
//!   (seccompiler's own architecture check, in every program).
//!
//! Arguments are compared on their low 32 bits (`Dword`), as the kernel
//! reads the `int` arguments the rules look at (families, flags, modes,
//! `ioctl` requests), so high garbage bits cannot slip past a rule.

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// How an argument is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Op {
    Eq,
    Ne,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// A condition on one argument (0-based) of a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Cond {
    pub arg: u8,
    pub op: Op,
    pub value: u64,
}

impl Cond {
    pub fn eq(arg: u8, value: u64) -> Self {
        Self {
            arg,
            op: Op::Eq,
            value,
        }
    }

    pub fn ne(arg: u8, value: u64) -> Self {
        Self {
            arg,
            op: Op::Ne,
            value,
        }
    }

    pub fn ge(arg: u8, value: u64) -> Self {
        Self {
            arg,
            op: Op::Ge,
            value,
        }
    }

    /// `(arg & mask) == value`.
    pub fn masked(arg: u8, mask: u64, value: u64) -> Self {
        Self {
            arg,
            op: Op::MaskedEq(mask),
            value,
        }
    }

    /// Every bit of `bits` is set in the argument.
    pub fn has(arg: u8, bits: u64) -> Self {
        Self {
            arg,
            op: Op::MaskedEq(bits),
            value: bits,
        }
    }

    /// No bit of `bits` is set in the argument.
    pub fn lacks(arg: u8, bits: u64) -> Self {
        Self {
            arg,
            op: Op::MaskedEq(bits),
            value: 0,
        }
    }
}

/// A denied call: `syscall` fails with `errno` when every condition holds
/// (always, when there are none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Rule {
    pub syscall: i64,
    pub conds: Vec<Cond>,
    pub errno: i32,
}

impl Rule {
    pub fn always(syscall: libc::c_long, errno: i32) -> Self {
        Self::when(syscall, errno, Vec::new())
    }

    #[allow(clippy::useless_conversion)]
    pub fn when(syscall: libc::c_long, errno: i32, conds: Vec<Cond>) -> Self {
        Self {
            // `c_long` is 32 bits on 32-bit targets.
            syscall: i64::from(syscall),
            conds,
            errno,
        }
    }
}

/// The compiled programs, installed in order by the child.
pub(crate) type Programs = Vec<Vec<libc::sock_filter>>;

/// Whether this architecture gets a filter at all: the prelude knows
/// x86_64 and aarch64; elsewhere its clone3 and x32 checks would silently
/// not apply, so there is no filter and every item that needs one says so.
pub(crate) fn available() -> Result<(), String> {
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        Ok(())
    } else {
        Err(format!(
            "no seccomp filter for {} (jobwarden's filter covers x86_64 and aarch64)",
            std::env::consts::ARCH
        ))
    }
}

/// Whether a baseline layer's rules apply for this job: the filter exists
/// here and no testing aid switched the layer off.
pub(crate) fn usable(
    support: &super::Support,
    layer: crate::sandbox::BaselineLayer,
) -> Result<(), String> {
    match support.switched_off(layer) {
        Some(why) => Err(why),
        None => available(),
    }
}

/// The programs for `rules`, compiled once per distinct set.
pub(crate) fn compile(mut rules: Vec<Rule>) -> Result<Arc<Programs>, String> {
    available()?;
    rules.sort();
    rules.dedup();
    static CACHE: Mutex<Option<HashMap<Vec<Rule>, Arc<Programs>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(programs) = cache.get(&rules) {
        return Ok(programs.clone());
    }
    let programs = Arc::new(build(&rules)?);
    if cache.len() >= 64 {
        cache.clear();
    }
    cache.insert(rules, programs.clone());
    Ok(programs)
}

fn build(rules: &[Rule]) -> Result<Programs, String> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let mut grouped: BTreeMap<i32, BTreeMap<i64, Vec<&Rule>>> = BTreeMap::new();
    for rule in rules {
        grouped
            .entry(rule.errno)
            .or_default()
            .entry(rule.syscall)
            .or_default()
            .push(rule);
    }
    let condition = |c: &Cond| {
        let op = match c.op {
            Op::Eq => SeccompCmpOp::Eq,
            Op::Ne => SeccompCmpOp::Ne,
            Op::Ge => SeccompCmpOp::Ge,
            Op::MaskedEq(mask) => SeccompCmpOp::MaskedEq(mask),
        };
        SeccompCondition::new(c.arg, SeccompCmpArgLen::Dword, op, c.value)
            .map_err(|e| e.to_string())
    };
    let mut by_errno: BTreeMap<i32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for (errno, calls) in grouped {
        let map = by_errno.entry(errno).or_default();
        for (syscall, rules) in calls {
            // An unconditional rule (an empty chain list) wins over any
            // condition on the same call.
            let chains = if rules.iter().any(|r| r.conds.is_empty()) {
                Vec::new()
            } else {
                rules
                    .iter()
                    .map(|r| {
                        let conditions = r.conds.iter().map(condition).collect::<Result<_, _>>()?;
                        SeccompRule::new(conditions).map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, String>>()?
            };
            map.insert(syscall, chains);
        }
    }
    // The prelude (clone3, x32, the architecture) is needed even when no
    // layer added a rule, so an empty set still gets one program.
    if by_errno.is_empty() {
        by_errno.insert(libc::EPERM, BTreeMap::new());
    }
    let mut programs = Vec::new();
    for (errno, map) in by_errno {
        let filter = SeccompFilter::new(
            map,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        let compiled: seccompiler::BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?;
        let mut program: Vec<libc::sock_filter> = if programs.is_empty() {
            prelude()
        } else {
            Vec::new()
        };
        program.extend(compiled.iter().map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        }));
        if program.len() > u16::MAX as usize {
            return Err("the seccomp program is too long".into());
        }
        programs.push(program);
    }
    Ok(programs)
}

const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
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

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

/// Before seccompiler's program (which checks the architecture itself and
/// kills on a mismatch): on this architecture, x32 calls fail with EPERM and
/// `clone3` with ENOSYS.
fn prelude() -> Vec<libc::sock_filter> {
    let x32 = cfg!(target_arch = "x86_64");
    vec![
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
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_compile_into_one_program_per_errno_with_the_prelude_first() {
        let rules = vec![
            Rule::always(libc::SYS_io_uring_setup, libc::ENOSYS),
            Rule::when(
                libc::SYS_socket,
                libc::EACCES,
                vec![Cond::eq(0, libc::AF_PACKET as u64)],
            ),
            Rule::always(libc::SYS_unshare, libc::EPERM),
        ];
        let programs = compile(rules.clone()).unwrap();
        assert_eq!(programs.len(), 3);
        assert_eq!(programs[0][6].k, errno(libc::ENOSYS));
        // The same set, in another order, is the cached compile.
        let mut reversed = rules;
        reversed.reverse();
        assert!(Arc::ptr_eq(&programs, &compile(reversed).unwrap()));
        for program in programs.iter() {
            for (i, insn) in program.iter().enumerate() {
                if insn.code & 0x07 == 0x05 {
                    assert!(i + 1 + (insn.jt.max(insn.jf) as usize) < program.len());
                }
            }
        }
    }

    #[test]
    fn no_rules_still_install_the_prelude() {
        let programs = compile(Vec::new()).unwrap();
        assert_eq!(programs.len(), 1);
        assert!(programs[0].len() > 7);
    }
}

// The compiled programs, run by a small classic-BPF interpreter against
// the rules of real jobs' filters.
#[cfg(test)]
#[path = "filter_tests.rs"]
mod interpreted;
