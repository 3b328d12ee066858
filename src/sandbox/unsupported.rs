//! The layer of what a platform cannot enforce: each item the plan asks
//! for is reported with the platform's reason, so a `required` policy
//! refuses the job naming it and a `best_effort` one runs with the gap
//! stated. Items the plan did not ask for (an unrestricted network, the
//! opt-in seccomp filter when off) are not reported as missing.

use super::PrepareError;
use super::layer::{Job, Layer};
use super::os::Spec;
use super::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use crate::policy::{Limit, Sourced};

/// One thing the platform does not enforce, and why.
pub(crate) struct Gap {
    pub kind: ItemKind,
    /// `NotEnforced`, or `Partial` when something weaker stands in.
    pub status: Status,
    pub short: &'static str,
    pub why: &'static str,
}

/// Reports the platform's gaps.
pub(crate) struct Unsupported(pub &'static [Gap]);

impl Layer for Unsupported {
    type Outcome = ();

    fn predict(&self, _job: &mut Job<'_>) {}

    fn apply(&self, _job: &mut Job<'_>, _spec: &mut Spec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn report(&self, job: &Job<'_>, _: &(), report: &mut EnforcementReport) {
        for gap in self.0 {
            let limits = &job.plan.limits;
            let unlimited = |limit: &Sourced<Limit>| {
                (limit.value == Limit::Unlimited).then(|| Item::unlimited(gap.kind, &limit.key))
            };
            let instead = match gap.kind {
                ItemKind::Network if job.plan.network.unrestricted => {
                    Some(Item::network_unrestricted())
                }
                ItemKind::Sockets | ItemKind::UnixSockets if job.plan.network.unrestricted => {
                    continue;
                }
                ItemKind::Seccomp if !job.plan.seccomp.value => continue,
                ItemKind::OpenFiles => unlimited(&limits.open_files),
                ItemKind::FileSize => unlimited(&limits.file_size),
                _ => None,
            };
            report.push(instead.unwrap_or_else(|| {
                Item::new(
                    gap.kind,
                    gap.status,
                    gap.short,
                    gap.why,
                    Requirement::Required,
                )
            }));
        }
    }
}
