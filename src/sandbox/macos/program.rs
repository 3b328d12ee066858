//! The program layer on macOS: a pinned binary's sha256 is checked before
//! the exec, which is by path (macOS has no `fexecve`): a swap in between is
//! not detected, and the report says so.

use super::Spec;
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::pin::check_pin;
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use std::fs::File;

pub(crate) struct Program;

impl Layer for Program {
    type Outcome = ();

    fn predict(&self, _job: &mut Job<'_>) {}

    fn apply(&self, job: &mut Job<'_>, _spec: &mut Spec) -> Result<(), PrepareError> {
        if let Some(pin) = &job.plan.sha256 {
            let program =
                File::open(&job.plan.program).map_err(|source| PrepareError::OpenProgram {
                    path: job.plan.program.clone(),
                    source,
                })?;
            check_pin(job.plan, pin, &program, job.hashes)?;
        }
        Ok(())
    }

    fn report(&self, job: &Job<'_>, _: &(), report: &mut EnforcementReport) {
        if job.plan.sha256.is_some() {
            report.push(Item::new(
                ItemKind::BinaryPin,
                Status::Partial,
                "sha256 checked",
                "checked before the exec, which is by path (macOS has no fexecve): a swap in between is not detected",
                Requirement::Required,
            ));
        }
    }
}
