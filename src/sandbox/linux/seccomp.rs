//! The seccomp layer: compiles every rule the other layers added (the
//! kernel baseline: sockets, memfd execution, setuid bits, namespaces) and,
//! when the policy asks for it (`[seccomp] deny_dangerous = true`), the
//! system calls a build or a linter has no business making — tracing or
//! reading other processes, keyrings, BPF, `perf_event_open`, pushing
//! keystrokes into a terminal — into the job's filter (see `filter.rs`),
//! installed by the child after `no_new_privs` and before Landlock.

use super::filter::{self, Cond, Rule};
use super::spec::Spec;
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};

/// What the opt-in list denies, for reports and docs.
pub(crate) const DENIED: &str = "ptrace, process_vm_readv/writev, process_madvise, pidfd_getfd, perf_event_open, bpf, userfaultfd, keyctl, add_key, request_key, TIOCSTI and TIOCLINUX";

/// System calls the opt-in list denies whatever their arguments.
pub(crate) const DANGEROUS: &[libc::c_long] = &[
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
];

/// Pushes a byte into a terminal's input queue.
pub(crate) const TIOCSTI: u64 = 0x5412;
/// Console tricks, among them pasting the selection as input.
pub(crate) const TIOCLINUX: u64 = 0x541C;

/// The opt-in rules.
pub(crate) fn dangerous_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = DANGEROUS
        .iter()
        .map(|n| Rule::always(*n, libc::EPERM))
        .collect();
    for request in [TIOCSTI, TIOCLINUX] {
        rules.push(Rule::when(
            libc::SYS_ioctl,
            libc::EPERM,
            vec![Cond::eq(1, request)],
        ));
    }
    rules
}

/// The seccomp layer. It must come after every layer that adds rules.
pub(crate) struct Seccomp;

/// The opt-in list's state.
pub(crate) enum Outcome {
    NotAsked,
    Installed,
    Unavailable(String),
}

impl Layer for Seccomp {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        match (job.plan.seccomp.value, filter::available()) {
            (false, _) => Outcome::NotAsked,
            (true, Ok(())) => Outcome::Installed,
            (true, Err(why)) => Outcome::Unavailable(why),
        }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let outcome = self.predict(job);
        let mut rules = std::mem::take(&mut spec.seccomp_rules);
        if matches!(outcome, Outcome::Installed) {
            rules.extend(dangerous_rules());
        }
        // Without a rule there is no filter at all (a test's control with
        // every baseline layer switched off).
        if filter::available().is_ok() && !rules.is_empty() {
            let programs = filter::compile(rules.clone())
                .map_err(|why| PrepareError::Seccomp { source: why.into() })?;
            spec.seccomp = Some(programs);
        }
        // Kept beside the programs: the unit tests check one against the
        // other (`filter_tests.rs`).
        spec.seccomp_rules = rules;
        Ok(outcome)
    }

    fn report(&self, _job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        report.push(match outcome {
            Outcome::NotAsked => Item::new(
                ItemKind::Seccomp,
                Status::NotRequested,
                "no seccomp",
                "no extra system call filter (`seccomp.deny_dangerous` is off)",
                Requirement::Advisory,
            ),
            Outcome::Installed => Item::enforced(
                ItemKind::Seccomp,
                "seccomp",
                format!("EPERM for {DENIED}; x32 and foreign-architecture calls refused"),
            ),
            Outcome::Unavailable(why) => Item::not_enforced(ItemKind::Seccomp, why.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_in_rules_compile() {
        let programs = filter::compile(dangerous_rules()).unwrap();
        // The prelude, a dispatch entry and an answer per call.
        assert!(programs[0].len() > 9 + 2 * DANGEROUS.len());
    }
}
