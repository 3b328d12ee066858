//! The privileges layer: no capabilities, now or after exec (the bounding
//! and ambient sets are emptied too), and `no_new_privs`, which keeps a
//! setuid program from gaining its owner's rights and is what lets an
//! unprivileged process install seccomp and Landlock.

use super::spec::Spec;
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};

pub(crate) struct Privileges;

/// Whether there were capabilities to drop.
pub(crate) struct Outcome {
    drops_capabilities: bool,
}

impl Layer for Privileges {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        Outcome {
            drops_capabilities: job.support.has_capabilities,
        }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let outcome = self.predict(job);
        if outcome.drops_capabilities {
            spec.drop_capabilities_to = Some(job.support.cap_last);
        }
        spec.no_new_privs = true;
        Ok(outcome)
    }

    fn report(&self, _job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        report.push(if outcome.drops_capabilities {
            Item::enforced(
                ItemKind::Capabilities,
                "no capabilities",
                "all dropped, bounding set emptied",
            )
        } else {
            Item::new(
                ItemKind::Capabilities,
                Status::NotRequested,
                "no capabilities",
                "the host holds none",
                Requirement::Advisory,
            )
        });
        report.push(Item::enforced(ItemKind::NoNewPrivs, "no_new_privs", "set"));
    }
}
