//! The program layer: what the kernel will execute for this job, and the
//! binary pin.
//!
//! The program is opened once. If the policy pins its sha256, the open file
//! is hashed and — for an ELF program — executed through that very
//! descriptor (`execveat`), so a file swapped after the check is never run.
//! A `#!` script cannot be executed from a close-on-exec descriptor, so it
//! runs by path: that is reported as partial. The layer also works out what
//! else the kernel executes (the ELF loader, a script's interpreter and its
//! loader, the helpers' loaders) for the Landlock layer's execute rules.

use super::elf::{self, Interpreter};
use super::spec::{Spec, above_stdio};
use crate::decision::PlanPath;
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::pin::check_pin;
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use std::fs::File;
use std::os::fd::OwnedFd;

pub(crate) struct Program;

/// How the program will be executed.
pub(crate) struct Outcome {
    /// A `#!` script (run by path).
    is_script: bool,
    /// Executed through the descriptor whose contents were hashed.
    through_hashed_fd: bool,
}

impl Program {
    /// Records what the kernel executes besides the program, from the open
    /// program file; returns whether it is a script.
    fn find_interpreters(job: &mut Job<'_>, program: Option<&File>) -> bool {
        let interpreter = program
            .and_then(|f| elf::interpreter_of_file(f).ok())
            .unwrap_or(Interpreter::None);
        let exec = &mut job.facts.exec;
        let is_script = matches!(interpreter, Interpreter::Script(_));
        match interpreter {
            Interpreter::ElfLoader(loader) => exec.push(PlanPath {
                path: loader,
                key: "ELF loader of the program".into(),
            }),
            Interpreter::Script(interp) => {
                let loader = elf::interpreter_of(&interp);
                exec.push(PlanPath {
                    path: interp,
                    key: "interpreter of the script".into(),
                });
                if let Ok(Interpreter::ElfLoader(loader)) = loader {
                    exec.push(PlanPath {
                        path: loader,
                        key: "ELF loader of the script's interpreter".into(),
                    });
                }
            }
            Interpreter::None => {}
        }
        // Helpers are dynamically linked too; their loader is almost always
        // the same, but add whatever they name.
        for helper in &job.plan.filesystem.execute {
            if helper.path.is_file()
                && let Ok(Interpreter::ElfLoader(loader)) = elf::interpreter_of(&helper.path)
                && !exec.iter().any(|p| p.path == loader)
            {
                exec.push(PlanPath {
                    path: loader,
                    key: format!("ELF loader of {}", helper.path.display()),
                });
            }
        }
        is_script
    }
}

impl Layer for Program {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        let program = File::open(&job.plan.program).ok();
        let is_script = Self::find_interpreters(job, program.as_ref());
        Outcome {
            is_script,
            through_hashed_fd: job.plan.sha256.is_some() && !is_script,
        }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let program =
            File::open(&job.plan.program).map_err(|source| PrepareError::OpenProgram {
                path: job.plan.program.clone(),
                source,
            })?;
        let is_script = Self::find_interpreters(job, Some(&program));
        let mut through_hashed_fd = false;
        if let Some(pin) = &job.plan.sha256 {
            check_pin(job.plan, pin, &program, job.hashes)?;
            if !is_script {
                spec.exec_fd = Some(above_stdio(OwnedFd::from(program))?);
                through_hashed_fd = true;
            }
        }
        Ok(Outcome {
            is_script,
            through_hashed_fd,
        })
    }

    fn report(&self, job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        let Some(pin) = &job.plan.sha256 else {
            return;
        };
        report.push(if outcome.through_hashed_fd {
            Item::enforced(
                ItemKind::BinaryPin,
                "sha256 pinned",
                format!(
                    "the file executed is the descriptor whose sha256 was checked ({})",
                    pin.key
                ),
            )
        } else {
            Item::new(
                ItemKind::BinaryPin,
                Status::Partial,
                "sha256 checked",
                if outcome.is_script {
                    "checked before the exec, but a script runs by path: a swap in between is not detected"
                } else {
                    "checked before the exec"
                },
                // The hash was checked; what is weaker is only the window
                // between check and exec, which the detail names.
                Requirement::Advisory,
            )
        });
    }
}
