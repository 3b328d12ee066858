//! The job's seccomp filter, proven without the kernel's help.
//!
//! A job on this machine is refused many of the denied calls anyway (no
//! capabilities), so the live tests in `tests/sandbox/` cannot show on
//! their own that each rule is in the filter. Here a small classic-BPF
//! interpreter runs the compiled programs, combined as the kernel combines
//! installed filters, on `seccomp_data` built from the rules themselves
//! (matching and near-miss arguments) and for every system call number,
//! and compares the verdict with what the rules say.
//!
//! The rules are read, not copied: they are those the layers put into the
//! spec of real jobs prepared here (`crate::sandbox::prepare`, strict and
//! permissive network grants, the opt-in list on), so a rule or a layer
//! added later is covered without touching this file. A separate,
//! hand-written list holds what SECURITY.md promises, so a rule removed from
//! a layer fails too.

use super::*;
use crate::sandbox::{HashCache, HostSupport, SupportOptions};

/// `struct seccomp_data`: nr, arch, instruction_pointer, args[6].
#[derive(Debug, Clone, Copy)]
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl Data {
    fn call(nr: impl Into<i64>, args: [u64; 6]) -> Self {
        Self {
            nr: nr.into() as u32,
            arch: AUDIT_ARCH,
            args,
        }
    }

    /// The 32-bit word at `offset`, as `BPF_LD | BPF_W | BPF_ABS` reads it
    /// (the kernel lays the structure out in native byte order).
    fn word(&self, offset: u32) -> u32 {
        let mut bytes = [0u8; 64];
        bytes[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        let at = offset as usize;
        assert!(
            at.is_multiple_of(4) && at + 4 <= bytes.len(),
            "bad load at {at}"
        );
        u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
    }
}

/// Runs one classic BPF program as seccomp does. Every instruction class
/// seccomp accepts is implemented; one it would reject fails the test.
fn run(program: &[libc::sock_filter], data: &Data) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut scratch = [0u32; 16];
    let mut pc = 0usize;
    loop {
        let insn = program
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the end at {pc}"));
        let (code, k) = (insn.code, insn.k);
        pc += 1;
        match code & 0x07 {
            // BPF_LD: W|ABS, IMM, W|LEN, MEM.
            0x00 => match code {
                0x20 => a = data.word(k),
                0x00 => a = k,
                0x80 => a = 64,
                0x60 => a = scratch[k as usize],
                _ => panic!("load {code:#x} is not allowed in seccomp"),
            },
            // BPF_LDX: IMM, W|LEN, MEM.
            0x01 => match code {
                0x01 => x = k,
                0x81 => x = 64,
                0x61 => x = scratch[k as usize],
                _ => panic!("ldx {code:#x} is not allowed in seccomp"),
            },
            0x02 => scratch[k as usize] = a,
            0x03 => scratch[k as usize] = x,
            // BPF_ALU, with K or X.
            0x04 => {
                let operand = if code & 0x08 != 0 { x } else { k };
                a = match code & 0xf0 {
                    0x00 => a.wrapping_add(operand),
                    0x10 => a.wrapping_sub(operand),
                    0x20 => a.wrapping_mul(operand),
                    0x30 => a.checked_div(operand).expect("division by zero"),
                    0x40 => a | operand,
                    0x50 => a & operand,
                    0x60 => a.wrapping_shl(operand),
                    0x70 => a.wrapping_shr(operand),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(operand).expect("modulo by zero"),
                    0xa0 => a ^ operand,
                    op => panic!("alu {op:#x}"),
                };
            }
            // BPF_JMP: JA, JEQ, JGT, JGE, JSET.
            0x05 => {
                let operand = if code & 0x08 != 0 { x } else { k };
                let taken = match code & 0xf0 {
                    0x00 => {
                        pc += k as usize;
                        continue;
                    }
                    0x10 => a == operand,
                    0x20 => a > operand,
                    0x30 => a >= operand,
                    0x40 => a & operand != 0,
                    op => panic!("jump {op:#x}"),
                };
                pc += if taken { insn.jt } else { insn.jf } as usize;
            }
            // BPF_RET: K or A.
            0x06 => return if code & 0x18 == 0x10 { a } else { k },
            // BPF_MISC: TAX, TXA.
            _ => {
                if code & 0xf8 == 0x00 {
                    x = a;
                } else {
                    a = x;
                }
            }
        }
    }
}

/// All programs as the kernel runs installed filters: the most recently
/// installed first, the action of highest precedence (lowest as a signed
/// number) winning, and among equal actions the first evaluated.
fn run_all(programs: &Programs, data: &Data) -> u32 {
    let action = |v: u32| (v & libc::SECCOMP_RET_ACTION_FULL) as i32;
    let mut verdict = libc::SECCOMP_RET_ALLOW;
    for program in programs.iter().rev() {
        let current = run(program, data);
        if action(current) < action(verdict) {
            verdict = current;
        }
    }
    verdict
}

/// A verdict in words, for messages.
fn name(verdict: u32) -> String {
    match verdict {
        libc::SECCOMP_RET_ALLOW => "allow".into(),
        libc::SECCOMP_RET_KILL_PROCESS => "kill".into(),
        v if v & libc::SECCOMP_RET_ACTION_FULL == libc::SECCOMP_RET_ERRNO => {
            format!("errno {}", v & libc::SECCOMP_RET_DATA)
        }
        v => format!("{v:#x}"),
    }
}

/// Whether `cond` holds, reading the rule directly: arguments and values
/// compared on their low 32 bits, as the filter does.
fn holds(cond: &Cond, data: &Data) -> bool {
    let arg = data.args[cond.arg as usize] as u32;
    let value = cond.value as u32;
    match cond.op {
        Op::Eq => arg == value,
        Op::Ne => arg != value,
        Op::MaskedEq(mask) => arg & mask as u32 == value,
        Op::MaskedNe(mask) => arg & mask as u32 != value,
    }
}

/// What the rules (and the prelude) say: `None` to allow, else the errnos
/// of the matching rules (any of them may be the answer when several do),
/// or `Some(vec![])` for a killed process.
fn expected(rules: &[Rule], data: &Data) -> Option<Vec<i32>> {
    if data.arch != AUDIT_ARCH {
        return Some(Vec::new());
    }
    if cfg!(target_arch = "x86_64") && data.nr >= X32_SYSCALL_BIT {
        return Some(vec![libc::EPERM]);
    }
    if data.nr == libc::SYS_clone3 as u32 {
        return Some(vec![libc::ENOSYS]);
    }
    let errnos: Vec<i32> = rules
        .iter()
        .filter(|r| r.syscall == i64::from(data.nr) && r.conds.iter().all(|c| holds(c, data)))
        .map(|r| r.errno)
        .collect();
    (!errnos.is_empty()).then_some(errnos)
}

/// Checks the programs against the rules for one input; returns whether
/// some rule denied it.
fn check(rules: &[Rule], programs: &Programs, data: &Data) -> bool {
    let got = run_all(programs, data);
    match expected(rules, data) {
        None => assert_eq!(name(got), "allow", "{data:x?} should be allowed"),
        Some(errnos) if errnos.is_empty() => assert_eq!(name(got), "kill", "{data:x?}"),
        Some(errnos) => assert!(
            errnos
                .iter()
                .any(|e| got == libc::SECCOMP_RET_ERRNO | *e as u32),
            "{data:x?}: the rules say errno {errnos:?}, the program says {}",
            name(got)
        ),
    }
    got != libc::SECCOMP_RET_ALLOW
}

/// Values worth trying for argument `arg` of `syscall`: every value and
/// mask the rules compare it with, their neighbours, and the same with
/// the high half of the register set (which the filter must ignore).
fn candidates(rules: &[Rule], syscall: i64, arg: u8) -> Vec<u64> {
    let mut values = vec![0u64, 1, u32::MAX as u64];
    for cond in rules
        .iter()
        .filter(|r| r.syscall == syscall)
        .flat_map(|r| &r.conds)
        .filter(|c| c.arg == arg)
    {
        let v = cond.value;
        values.extend([v, v ^ 1, v.wrapping_add(1), v.wrapping_sub(1)]);
        if let Op::MaskedEq(mask) | Op::MaskedNe(mask) = cond.op {
            values.extend([mask, v | !mask & 0xffff_ffff, !mask & 0xffff_ffff]);
            // The value with one of its bits missing.
            values.extend((0..32).filter(|b| v & 1 << b != 0).map(|b| v & !(1 << b)));
        }
    }
    let high: Vec<u64> = values.iter().map(|v| v | 0xdead_beef_0000_0000).collect();
    values.extend(high);
    values.sort_unstable();
    values.dedup();
    values
}

/// Every combination of candidate values for the arguments the rules of
/// `syscall` look at.
fn inputs(rules: &[Rule], syscall: i64) -> Vec<[u64; 6]> {
    let mut args: Vec<u8> = rules
        .iter()
        .filter(|r| r.syscall == syscall)
        .flat_map(|r| r.conds.iter().map(|c| c.arg))
        .collect();
    args.sort_unstable();
    args.dedup();
    let mut combos = vec![[0u64; 6]];
    for arg in args {
        let values = candidates(rules, syscall, arg);
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c;
                    c[arg as usize] = *v;
                    c
                })
            })
            .collect();
    }
    combos
}

/// The rules and programs of a real job's filter, prepared on this host
/// with the opt-in list on; `grant` widens the plan's network first.
fn job_filter(grant: impl FnOnce(&mut crate::decision::Plan)) -> (Vec<Rule>, Arc<Programs>) {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
version = 1
enforcement = "best_effort"
[filesystem]
read = ["/usr", "/lib", "/lib64", "/bin"]
read_write = ["{repo}", "{tmp}"]
[seccomp]
deny_dangerous = true
[binaries.sh]
path = "/bin/sh"
[plugins.t]
binaries = ["sh"]
"#;
    let mut plan = super::super::test_plan(dir.path(), text, "sh", &["-c", "true"]);
    grant(&mut plan);
    let support = HostSupport::detect(&SupportOptions::default());
    let name = format!("jobwarden-{}-filter-test", std::process::id());
    let prepared = crate::sandbox::prepare(&plan, &support, &name, &mut HashCache::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = prepared.spec.seccomp_rules.clone();
    let programs = prepared.spec.seccomp.clone().expect("a filter");
    (rules, programs)
}

fn strict() -> (Vec<Rule>, Arc<Programs>) {
    job_filter(|_| {})
}

/// Every socket family the layer may open, granted.
fn permissive() -> (Vec<Rule>, Arc<Programs>) {
    job_filter(|plan| {
        plan.network.udp = crate::policy::Sourced::builtin(true);
        plan.network.netlink_route = crate::policy::Sourced::builtin(true);
        plan.network.unix = vec![crate::decision::PlanPath {
            path: "*".into(),
            key: "test".into(),
        }];
    })
}

#[test]
fn every_rule_of_a_jobs_filter_is_enforced_by_its_programs() {
    for (what, (rules, programs)) in [("strict", strict()), ("permissive", permissive())] {
        assert!(!rules.is_empty(), "{what}: the layers added no rule");
        let mut syscalls: Vec<i64> = rules.iter().map(|r| r.syscall).collect();
        syscalls.sort_unstable();
        syscalls.dedup();
        let mut hit = vec![false; rules.len()];
        for syscall in syscalls {
            for args in inputs(&rules, syscall) {
                let data = Data::call(syscall, args);
                if check(&rules, &programs, &data) {
                    for (i, rule) in rules.iter().enumerate() {
                        if rule.syscall == syscall && rule.conds.iter().all(|c| holds(c, &data)) {
                            hit[i] = true;
                        }
                    }
                }
            }
        }
        // Each rule was seen denying at least one input.
        for (rule, hit) in rules.iter().zip(hit) {
            assert!(hit, "{what}: no input exercised {rule:?}");
        }
    }
}

#[test]
fn the_programs_agree_with_the_rules_for_every_system_call_number() {
    for (rules, programs) in [strict(), permissive()] {
        let mut allowed = 0;
        for nr in 0..1024 {
            for args in [[0u64; 6], [u64::MAX; 6]] {
                allowed += usize::from(!check(&rules, &programs, &Data::call(nr, args)));
            }
        }
        // A deny list: most of the system call table stays allowed.
        assert!(allowed > 1500, "{allowed}");
    }
}

/// What SECURITY.md promises, written out independently of the layers'
/// rules: a rule removed from a layer fails this test.
#[test]
fn everything_security_md_promises_is_denied() {
    let (_, programs) = strict();
    let verdict =
        |nr: libc::c_long, args: [u64; 6]| name(run_all(&programs, &Data::call(nr, args)));
    let eperm = format!("errno {}", libc::EPERM);
    let eacces = format!("errno {}", libc::EACCES);
    let enosys = format!("errno {}", libc::ENOSYS);
    // The opt-in list: tracing and reading other processes, kernel attack
    // surface, keyrings.
    for nr in [
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
    ] {
        assert_eq!(verdict(nr, [0; 6]), eperm, "opt-in nr {nr}");
    }
    // Terminal injection, also with high bits the kernel ignores.
    for request in [0x5412u64, 0x541C, 0x5412 | 1 << 32] {
        assert_eq!(
            verdict(libc::SYS_ioctl, [1, request, 0, 0, 0, 0]),
            eperm,
            "ioctl {request:#x}"
        );
    }
    // Namespaces and mounts.
    for nr in [
        libc::SYS_unshare,
        libc::SYS_setns,
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
    ] {
        assert_eq!(verdict(nr, [0; 6]), eperm, "namespaces nr {nr}");
    }
    for flag in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ] {
        let flags = (flag | libc::SIGCHLD) as u64;
        assert_eq!(
            verdict(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]),
            eperm,
            "clone {flag:#x}"
        );
    }
    // Setuid and setgid bits.
    for bit in [libc::S_ISUID, libc::S_ISGID] {
        let mode = (bit | 0o755) as u64;
        assert_eq!(verdict(libc::SYS_fchmodat, [0, 0, mode, 0, 0, 0]), eperm);
        assert_eq!(verdict(libc::SYS_fchmod, [3, mode, 0, 0, 0, 0]), eperm);
        let create = (libc::O_CREAT | libc::O_WRONLY) as u64;
        assert_eq!(verdict(libc::SYS_openat, [0, 0, create, mode, 0, 0]), eperm);
    }
    // Executable memfds; sockets of other families, and UDP not granted.
    assert_eq!(verdict(libc::SYS_memfd_create, [0; 6]), eacces);
    for family in [
        libc::AF_PACKET,
        libc::AF_NETLINK,
        libc::AF_VSOCK,
        libc::AF_UNIX,
    ] {
        assert_eq!(
            verdict(
                libc::SYS_socket,
                [family as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0]
            ),
            eacces,
            "family {family}"
        );
    }
    let udp = [libc::AF_INET as u64, libc::SOCK_DGRAM as u64, 0, 0, 0, 0];
    assert_eq!(verdict(libc::SYS_socket, udp), eacces);
    // Calls whose arguments a filter cannot read.
    assert_eq!(verdict(libc::SYS_clone3, [0; 6]), enosys);
    assert_eq!(verdict(libc::SYS_openat2, [0; 6]), enosys);
    assert_eq!(verdict(libc::SYS_io_uring_setup, [0; 6]), enosys);
    // x32 numbers on x86_64; any other architecture is killed.
    if cfg!(target_arch = "x86_64") {
        let x32 = libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long;
        assert_eq!(name(run_all(&programs, &Data::call(x32, [0; 6]))), eperm);
    }
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    let foreign = Data {
        nr: 20,
        arch: AUDIT_ARCH_I386,
        args: [0; 6],
    };
    assert_eq!(name(run_all(&programs, &foreign)), "kill");
}

#[test]
fn ordinary_work_is_allowed() {
    let (_, programs) = strict();
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    let tcp = [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0];
    let sealed_memfd = [0, super::super::memfd::MFD_NOEXEC_SEAL, 0, 0, 0, 0];
    for (what, nr, args) in [
        ("read", libc::SYS_read, [0; 6]),
        ("write", libc::SYS_write, [1, 0, 0, 0, 0, 0]),
        ("execve", libc::SYS_execve, [0; 6]),
        (
            "openat",
            libc::SYS_openat,
            [0, 0, libc::O_RDONLY as u64, 0, 0, 0],
        ),
        ("chmod 0755", libc::SYS_fchmodat, [0, 0, 0o755, 0, 0, 0]),
        (
            "fork-like clone",
            libc::SYS_clone,
            [libc::SIGCHLD as u64, 0, 0, 0, 0, 0],
        ),
        ("thread clone", libc::SYS_clone, [thread, 0, 0, 0, 0, 0]),
        ("ioctl TCGETS", libc::SYS_ioctl, [1, 0x5401, 0, 0, 0, 0]),
        ("TCP socket", libc::SYS_socket, tcp),
        ("sealed memfd", libc::SYS_memfd_create, sealed_memfd),
    ] {
        assert_eq!(
            name(run_all(&programs, &Data::call(nr, args))),
            "allow",
            "{what}"
        );
    }
}
