//! The job's seccomp filter, assembled from the rules every layer adds.
//!
//! Layers do not write BPF: each adds [`Rule`]s ("`socket` with family
//! `AF_PACKET` fails with EACCES") to the spec, and the seccomp layer
//! compiles them here, once per distinct rule set (cached), into one
//! classic-BPF program.
//!
//! # Why one small program
//!
//! The kernel pays for a filter when the child installs it, on every job:
//! it converts the program to eBPF, JIT-compiles it, and emulates it for
//! every system call number to find the calls it always allows (those then
//! skip the filter). That work grows with the program's length. The first
//! compiler here (seccompiler, one program per errno since it gives every
//! rule of a filter the same action) made three programs of 1,007
//! instructions for the default policy, whose installation took ~0.58 ms
//! of each spawn; this one makes one program of 382 instructions, installed
//! in ~0.10 ms (BENCHMARKS.md).
//!
//! The program: the prelude, a binary search on the system call number
//! leading to each filtered call's block, and in the block the call's rules
//! in order, each a chain of argument comparisons that falls through to its
//! errno or jumps to the next rule; a call no rule matches is allowed.
//!
//! The filter is a deny list on top of Landlock. Three details make a deny
//! list hold, and live in the prelude:
//! - a system call of another architecture (`int 0x80`) kills the process;
//! - on x86_64, x32 system calls (numbers with bit 30 set) would not match
//!   the 64-bit numbers in the rules, so every x32 call fails with EPERM;
//! - `clone3` passes its flags in memory a filter cannot read, so it fails
//!   with ENOSYS: libc then falls back to `clone`, whose namespace flags
//!   are checked.
//!
//! Arguments are compared on their low 32 bits, as the kernel reads the
//! `int` arguments the rules look at (families, flags, modes, `ioctl`
//! requests), so high garbage bits cannot slip past a rule; a rule whose
//! value or mask does not fit in 32 bits is refused when compiled.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// How an argument is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Op {
    Eq,
    Ne,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
    /// `(arg & mask) != value`.
    MaskedNe(u64),
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

    /// `(arg & mask) == value`.
    pub fn masked(arg: u8, mask: u64, value: u64) -> Self {
        Self {
            arg,
            op: Op::MaskedEq(mask),
            value,
        }
    }

    /// `(arg & mask) != value`.
    pub fn masked_ne(arg: u8, mask: u64, value: u64) -> Self {
        Self {
            arg,
            op: Op::MaskedNe(mask),
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
    let mut calls: BTreeMap<i64, Vec<&Rule>> = BTreeMap::new();
    for rule in rules {
        calls.entry(rule.syscall).or_default().push(rule);
    }
    let mut asm = Asm::default();
    prelude(&mut asm);
    let blocks: Vec<(u32, Label)> = calls
        .keys()
        .map(|nr| {
            u32::try_from(*nr)
                .map(|nr| (nr, asm.label()))
                .map_err(|_| format!("no system call has the number {nr}"))
        })
        .collect::<Result<_, _>>()?;
    // The dispatch; the number is still in A.
    dispatch(&mut asm, &blocks);
    for ((_, block), rules) in blocks.into_iter().zip(calls.values()) {
        asm.bind(block);
        // An unconditional rule wins over any condition on the same call.
        if let Some(rule) = rules.iter().find(|r| r.conds.is_empty()) {
            asm.ret(errno(rule.errno));
            continue;
        }
        for rule in rules {
            let next = asm.label();
            let mut loaded = None;
            for cond in &rule.conds {
                let value = low_word(cond.value)?;
                if cond.arg >= 6 {
                    return Err(format!(
                        "system calls have 6 arguments, not {}",
                        cond.arg + 1
                    ));
                }
                if loaded != Some(cond.arg) {
                    asm.stmt(BPF_LD_W_ABS, arg_offset(cond.arg));
                    loaded = Some(cond.arg);
                }
                match cond.op {
                    Op::Eq => asm.jump(BPF_JEQ_K, value, Target::Next, Target::Label(next)),
                    Op::Ne => asm.jump(BPF_JEQ_K, value, Target::Label(next), Target::Next),
                    Op::MaskedEq(mask) | Op::MaskedNe(mask) => {
                        asm.stmt(BPF_ALU_AND_K, low_word(mask)?);
                        // A now holds the masked word, not the argument.
                        loaded = None;
                        let (equal, differ) = if matches!(cond.op, Op::MaskedEq(_)) {
                            (Target::Next, Target::Label(next))
                        } else {
                            (Target::Label(next), Target::Next)
                        };
                        asm.jump(BPF_JEQ_K, value, equal, differ);
                    }
                }
            }
            asm.ret(errno(rule.errno));
            asm.bind(next);
        }
        asm.ret(libc::SECCOMP_RET_ALLOW);
    }
    let program = asm.finish()?;
    if program.len() > BPF_MAXINSNS {
        return Err(format!(
            "the seccomp program has {} instructions; the kernel takes at most {BPF_MAXINSNS}",
            program.len()
        ));
    }
    Ok(vec![program])
}

/// A binary search of the filtered calls' numbers (in A, sorted in
/// `blocks`), jumping to each call's block; any other number is allowed.
/// The kernel emulates the program for every system call number when the
/// filter is installed (to let the calls it always allows skip it), so a
/// search instead of a scan keeps that work small too.
fn dispatch(asm: &mut Asm, blocks: &[(u32, Label)]) {
    if blocks.len() <= 3 {
        for (nr, block) in blocks {
            asm.jump(BPF_JEQ_K, *nr, Target::Next, Target::Skip(1));
            asm.always(*block);
        }
        asm.ret(libc::SECCOMP_RET_ALLOW);
        return;
    }
    let (low, high) = blocks.split_at(blocks.len() / 2);
    let upper = asm.label();
    asm.jump(BPF_JGE_K, high[0].0, Target::Next, Target::Skip(1));
    asm.always(upper);
    dispatch(asm, low);
    asm.bind(upper);
    dispatch(asm, high);
}

/// A rule's value or mask as the 32-bit word the filter compares.
fn low_word(value: u64) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| {
        format!("the filter compares the low 32 bits of an argument; {value:#x} does not fit")
    })
}

/// Where the low 32 bits of argument `arg` lie in `struct seccomp_data`
/// (nr, arch, instruction_pointer, args[6]).
fn arg_offset(arg: u8) -> u32 {
    let low = if cfg!(target_endian = "little") { 0 } else { 4 };
    16 + 8 * u32::from(arg) + low
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
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// The longest classic-BPF program the kernel loads.
const BPF_MAXINSNS: usize = 4096;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// A place in the program, bound once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The next instruction.
    Next,
    /// `n` instructions further.
    Skip(u8),
    /// A label bound later (classic BPF only jumps forward).
    Label(Label),
}

/// A tiny assembler: instructions with forward jumps to labels, resolved by
/// `finish`. Conditional jumps reach 255 instructions at most, which the
/// rules' short chains never exceed; `JA` reaches anywhere.
#[derive(Default)]
struct Asm {
    code: Vec<libc::sock_filter>,
    /// Each label's position, once bound.
    labels: Vec<Option<usize>>,
    /// Jumps to patch: instruction, label, and which offset (jt, jf, or
    /// `k` for `JA`).
    fixups: Vec<(usize, Label, Field)>,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    True,
    False,
    Always,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.code.len());
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.code.push(libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }

    fn ret(&mut self, k: u32) {
        self.stmt(BPF_RET_K, k);
    }

    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        let at = self.code.len();
        let mut offset = |target, field| match target {
            Target::Next => 0,
            Target::Skip(n) => n,
            Target::Label(label) => {
                self.fixups.push((at, label, field));
                0
            }
        };
        let (jt, jf) = (offset(jt, Field::True), offset(jf, Field::False));
        self.code.push(libc::sock_filter { code, jt, jf, k });
    }

    fn always(&mut self, label: Label) {
        self.fixups.push((self.code.len(), label, Field::Always));
        self.stmt(BPF_JA, 0);
    }

    fn finish(mut self) -> Result<Vec<libc::sock_filter>, String> {
        for (at, label, field) in self.fixups {
            let to = self.labels[label.0].ok_or("a jump to a label never bound")?;
            // Offsets count from the instruction after the jump.
            let offset = to
                .checked_sub(at + 1)
                .ok_or("a backward jump (classic BPF only jumps forward)")?;
            let insn = &mut self.code[at];
            match field {
                Field::Always => insn.k = u32::try_from(offset).map_err(|e| e.to_string())?,
                Field::True | Field::False => {
                    let short = u8::try_from(offset).map_err(|_| {
                        format!("a rule too long for a conditional jump ({offset})")
                    })?;
                    if matches!(field, Field::True) {
                        insn.jt = short;
                    } else {
                        insn.jf = short;
                    }
                }
            }
        }
        Ok(self.code)
    }
}

/// The start of the program: a foreign architecture kills the process, x32
/// calls fail with EPERM and `clone3` with ENOSYS; the system call number
/// is left in A for the dispatch.
fn prelude(asm: &mut Asm) {
    let x32 = if cfg!(target_arch = "x86_64") {
        X32_SYSCALL_BIT
    } else {
        // No number reaches it.
        u32::MAX
    };
    // 0: the architecture; ours → 3, else 2: kill.
    asm.stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH);
    asm.jump(BPF_JEQ_K, AUDIT_ARCH, Target::Skip(1), Target::Next);
    asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
    // 3: the number; x32 → 6: EPERM.
    asm.stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR);
    asm.jump(BPF_JGE_K, x32, Target::Skip(1), Target::Next);
    // 5: clone3 → 7: ENOSYS, else on to 8.
    asm.jump(
        BPF_JEQ_K,
        libc::SYS_clone3 as u32,
        Target::Skip(1),
        Target::Skip(2),
    );
    asm.ret(errno(libc::EPERM));
    asm.ret(errno(libc::ENOSYS));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every jump lands inside the program.
    fn jumps_land_inside(program: &[libc::sock_filter]) {
        for (i, insn) in program.iter().enumerate() {
            if insn.code == BPF_JA {
                assert!(i + 1 + (insn.k as usize) < program.len(), "JA at {i}");
            } else if insn.code & 0x07 == 0x05 {
                assert!(i + 1 + (insn.jt.max(insn.jf) as usize) < program.len());
            }
        }
    }

    #[test]
    fn rules_compile_into_one_program_with_the_prelude_first() {
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
        assert_eq!(programs.len(), 1);
        assert_eq!(programs[0][2].k, libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(programs[0][6].k, errno(libc::EPERM));
        assert_eq!(programs[0][7].k, errno(libc::ENOSYS));
        // The same set, in another order, is the cached compile.
        let mut reversed = rules;
        reversed.reverse();
        assert!(Arc::ptr_eq(&programs, &compile(reversed).unwrap()));
        jumps_land_inside(&programs[0]);
    }

    #[test]
    fn no_rules_still_install_the_prelude() {
        let programs = compile(Vec::new()).unwrap();
        assert_eq!(programs.len(), 1);
        // The prelude and "allow".
        assert_eq!(programs[0].len(), 9);
        assert_eq!(programs[0][8].k, libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn values_beyond_32_bits_and_a_seventh_argument_are_refused() {
        let wide = Rule::when(libc::SYS_socket, libc::EACCES, vec![Cond::eq(0, 1 << 32)]);
        assert!(compile(vec![wide]).unwrap_err().contains("low 32 bits"));
        let mask = Rule::when(
            libc::SYS_socket,
            libc::EACCES,
            vec![Cond::masked(1, u64::MAX, 1)],
        );
        assert!(compile(vec![mask]).unwrap_err().contains("low 32 bits"));
        let seventh = Rule::when(libc::SYS_socket, libc::EACCES, vec![Cond::eq(6, 1)]);
        assert!(compile(vec![seventh]).unwrap_err().contains("6 arguments"));
    }

    #[test]
    fn far_blocks_are_reached_through_ja() {
        // Enough filtered calls that the last block lies more than 255
        // instructions past the dispatch's conditional jumps.
        let rules: Vec<Rule> = (0..200)
            .map(|nr| Rule::when(nr, libc::EPERM, vec![Cond::eq(0, 7), Cond::ne(1, 3)]))
            .collect();
        let program = &compile(rules).unwrap()[0];
        assert!(program.len() > 600);
        jumps_land_inside(program);
        assert!(program.iter().any(|i| i.code == BPF_JA && i.k > 255));
    }
}

// The compiled programs, run by a small classic-BPF interpreter against
// the rules of real jobs' filters.
#[cfg(test)]
#[path = "filter_tests.rs"]
mod interpreted;
