//! The memfd layer: nothing the job writes can be executed, and an
//! anonymous memory file is something it writes. Landlock does not mediate
//! files on internal filesystems, and `vm.memfd_noexec` is 0 by default, so
//! an ELF written to a memfd would run through `fexecve`/`execveat` or
//! `/proc/self/fd/N`. `memfd_create` therefore succeeds only with
//! `MFD_NOEXEC_SEAL` (Linux ≥ 6.3): such a memfd can never be made
//! executable. The dev tools jobwarden runs do not create memfds; a program
//! that does gets EACCES and should ask for a sealed one.

use super::filter::{self, Cond, Rule};
use super::spec::Spec;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind};
use crate::sandbox::{BaselineLayer, PrepareError};

pub(crate) struct Memfd;

/// `MFD_NOEXEC_SEAL` of `<linux/memfd.h>`.
pub(crate) const MFD_NOEXEC_SEAL: u64 = 0x0008;

pub(crate) fn rules() -> Vec<Rule> {
    vec![Rule::when(
        libc::SYS_memfd_create,
        libc::EACCES,
        vec![Cond::lacks(1, MFD_NOEXEC_SEAL)],
    )]
}

impl Layer for Memfd {
    type Outcome = Result<(), String>;

    fn predict(&self, job: &mut Job<'_>) -> Result<(), String> {
        filter::usable(job.support, BaselineLayer::Memfd)
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
                ItemKind::MemfdExec,
                "no memfd exec",
                "memfd_create only with MFD_NOEXEC_SEAL (EACCES otherwise)",
            ),
            Err(why) => Item::not_enforced(ItemKind::MemfdExec, why.clone()),
        });
    }
}
