//! The setuid layer: a job leaves no privilege behind. On a root host a
//! job without capabilities still owns what it creates as root, so a
//! `chmod 6755` on a copy of a shell would leave local root for anyone who
//! can reach the file later (the job's own mount namespace mounts writable
//! roots `nosuid`, but the host's does not). Setting a setuid or setgid bit
//! fails with EPERM however it is attempted: the `chmod` family, and
//! creating a file (`open`, `openat`, `creat`, `O_TMPFILE`) or a node
//! (`mknod`) with such a mode. `openat2` keeps its flags in memory a filter
//! cannot read, so it fails with ENOSYS (libc and tools fall back to
//! `openat`); io_uring, which opens files without these calls, too.

use super::filter::{self, Cond, Rule};
use super::sockets::io_uring_rules;
use super::spec::Spec;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind};
use crate::sandbox::{BaselineLayer, PrepareError};

pub(crate) struct Setuid;

const SET_ID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];
/// `__O_TMPFILE`: the bit of `O_TMPFILE` that is not `O_DIRECTORY`.
const O_TMPFILE_BIT: u64 = (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64;

/// `fchmodat2` (Linux 6.6): 452 in every architecture's table; the `libc`
/// crate names it for x86_64 only, and jobwarden's filter also covers
/// aarch64.
const SYS_FCHMODAT2: libc::c_long = 452;

pub(crate) fn rules() -> Vec<Rule> {
    let mut rules = io_uring_rules();
    rules.push(Rule::always(libc::SYS_openat2, libc::ENOSYS));
    let deny = |syscall, conds| Rule::when(syscall, libc::EPERM, conds);
    for bit in SET_ID_BITS {
        // (system call, index of its mode argument)
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut modes = vec![
            (libc::SYS_fchmod, 1),
            (libc::SYS_fchmodat, 2),
            (SYS_FCHMODAT2, 2),
            (libc::SYS_mknodat, 2),
        ];
        #[cfg(target_arch = "x86_64")]
        modes.extend([
            (libc::SYS_chmod, 1),
            (libc::SYS_creat, 1),
            (libc::SYS_mknod, 1),
        ]);
        for (syscall, arg) in modes {
            rules.push(deny(syscall, vec![Cond::has(arg, bit)]));
        }
        // Creating files: (system call, flags argument, mode argument).
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut opens = vec![(libc::SYS_openat, 2, 3)];
        #[cfg(target_arch = "x86_64")]
        opens.push((libc::SYS_open, 1, 2));
        for (syscall, flags, mode) in opens {
            for creating in [libc::O_CREAT as u64, O_TMPFILE_BIT] {
                rules.push(deny(
                    syscall,
                    vec![Cond::has(flags, creating), Cond::has(mode, bit)],
                ));
            }
        }
    }
    rules
}

impl Layer for Setuid {
    type Outcome = Result<(), String>;

    fn predict(&self, job: &mut Job<'_>) -> Result<(), String> {
        filter::usable(job.support, BaselineLayer::Setuid)
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Self::Outcome, PrepareError> {
        let outcome = self.predict(job);
        if outcome.is_ok() {
            spec.seccomp_rules.extend(rules());
        }
        Ok(outcome)
    }

    fn report(&self, _job: &Job<'_>, outcome: &Self::Outcome, report: &mut EnforcementReport) {
        report.push(match outcome {
            Ok(()) => Item::enforced(
                ItemKind::SetuidBits,
                "no setuid bits",
                "setting setuid or setgid bits refused (chmod family, open/creat/mknod modes; openat2 and io_uring ENOSYS)",
            ),
            Err(why) => Item::not_enforced(ItemKind::SetuidBits, why.clone()),
        });
    }
}
