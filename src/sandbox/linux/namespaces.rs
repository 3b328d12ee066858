//! The namespaces layer: a job cannot create user, mount, network or any
//! other namespaces (a user namespace holds every capability inside it —
//! kernel attack surface), join one (`setns`), or mount and unmount (which
//! would undo the mounts of its own mount namespace). `unshare`, `setns`
//! and the mount API fail with EPERM, as do namespace flags of `clone`;
//! `clone3` fails with ENOSYS in every filter (its flags are in memory), so
//! libc falls back to `clone`.

use super::filter::{self, Cond, Rule};
use super::spec::Spec;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind};
use crate::sandbox::{BaselineLayer, PrepareError};

pub(crate) struct Namespaces;

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

/// Calls refused whatever their arguments.
const ALWAYS: &[libc::c_long] = &[
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
];

pub(crate) fn rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = ALWAYS
        .iter()
        .map(|n| Rule::always(*n, libc::EPERM))
        .collect();
    for flag in NAMESPACE_FLAGS {
        let flag = *flag as u32 as u64;
        rules.push(Rule::when(
            libc::SYS_clone,
            libc::EPERM,
            vec![Cond::has(0, flag)],
        ));
    }
    rules
}

impl Layer for Namespaces {
    type Outcome = Result<(), String>;

    fn predict(&self, job: &mut Job<'_>) -> Result<(), String> {
        filter::usable(job.support, BaselineLayer::Namespaces)
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
                ItemKind::Namespaces,
                "no namespaces",
                "unshare, setns, namespace flags of clone and the mount API refused (EPERM); clone3 ENOSYS",
            ),
            Err(why) => Item::not_enforced(ItemKind::Namespaces, why.clone()),
        });
    }
}
