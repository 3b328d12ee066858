//! The enforcement layers on Windows: the program (only `.exe`, a pinned
//! binary held without write sharing from its hash to its start), the job
//! object (limits, kill-on-close, whole-tree end), the session, and the
//! gaps Windows leaves.

use super::job::JobObject;
use super::{Limits, Spec, WINE};
use crate::decision::Denial;
use crate::policy::{Limit, units::format_size};
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Enforce, Job, Layer};
use crate::sandbox::pin::check_pin;
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use crate::sandbox::unsupported::{Gap, Unsupported};
use std::fs::OpenOptions;
use std::os::windows::fs::OpenOptionsExt;

/// The enforcement layers, in the order they prepare a job.
pub(crate) static LAYERS: &[&dyn Enforce] = &[
    &Program,
    &JobObjectLayer,
    &Session,
    &Unsupported(&[
        Gap {
            kind: ItemKind::Filesystem,
            status: Status::NotEnforced,
            short: "filesystem",
            why: "not enforced on Windows: jobwarden has no filesystem sandbox there",
        },
        Gap {
            kind: ItemKind::Network,
            status: Status::NotEnforced,
            short: "network",
            why: "not enforced on Windows: jobwarden has no network sandbox there",
        },
        Gap {
            kind: ItemKind::WriteXorExecute,
            status: Status::NotEnforced,
            short: "writable not executable",
            why: "not enforced on Windows: what a job writes in the repository can be executed",
        },
        Gap {
            kind: ItemKind::ProtectedPaths,
            status: Status::NotEnforced,
            short: "protected paths",
            why: "not enforced on Windows: .git hooks and config, .vscode and the like stay writable inside a writable repository",
        },
        Gap {
            kind: ItemKind::Sockets,
            status: Status::NotEnforced,
            short: "sockets",
            why: "not enforced on Windows: a job may create any socket (UDP, raw, …)",
        },
        Gap {
            kind: ItemKind::UnixSockets,
            status: Status::NotEnforced,
            short: "unix sockets",
            why: "not enforced on Windows: a job may connect to any UNIX socket it can reach",
        },
        Gap {
            kind: ItemKind::Scopes,
            status: Status::NotEnforced,
            short: "scopes",
            why: "not enforced on Windows: a job may open and end other processes of the same user",
        },
        Gap {
            kind: ItemKind::OpenFiles,
            status: Status::NotEnforced,
            short: "open_files",
            why: "not enforced on Windows: Windows has no per-process handle limit",
        },
        Gap {
            kind: ItemKind::FileSize,
            status: Status::NotEnforced,
            short: "file_size",
            why: "not enforced on Windows: Windows has no file size limit",
        },
        Gap {
            kind: ItemKind::NoNewPrivs,
            status: Status::NotEnforced,
            short: "no_new_privs",
            why: "not enforced on Windows: the job runs with the host's token",
        },
        Gap {
            kind: ItemKind::Seccomp,
            status: Status::NotEnforced,
            short: "seccomp",
            why: "not enforced on Windows: seccomp is Linux's",
        },
    ]),
];

/// The program: std runs `<path>.exe` for a path without that suffix, so
/// anything else would run a file other than the one the policy names; a
/// pinned program is opened without write or delete sharing, hashed, and
/// held so until the process has started.
struct Program;

impl Layer for Program {
    type Outcome = ();

    fn predict(&self, _job: &mut Job<'_>) {}

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<(), PrepareError> {
        let plan = job.plan;
        if let Some(pin) = &plan.sha256 {
            // FILE_SHARE_READ only: nobody may write, rename or delete the
            // file while we hold it.
            const FILE_SHARE_READ: u32 = 1;
            let file = OpenOptions::new()
                .read(true)
                .share_mode(FILE_SHARE_READ)
                .open(&plan.program)
                .map_err(|source| PrepareError::OpenProgram {
                    path: plan.program.clone(),
                    source,
                })?;
            check_pin(plan, pin, &file, job.hashes)?;
            spec.program_file = Some(file);
        }
        let is_exe = plan
            .program
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("exe"));
        if !is_exe {
            return Err(PrepareError::Denied(Denial::new(
                plan.program_key.clone(),
                format!(
                    "{} is not an .exe: on Windows only .exe programs are run (a script runs through its interpreter's .exe)",
                    plan.program.display()
                ),
                format!("point `{}` at the .exe", plan.program_key),
            )));
        }
        Ok(())
    }

    fn report(&self, job: &Job<'_>, _: &(), report: &mut EnforcementReport) {
        if job.plan.sha256.is_some() {
            report.push(Item::enforced(
                ItemKind::BinaryPin,
                "sha256 pinned",
                "the hashed file is held open without write or delete sharing until the process has started",
            ));
        }
    }
}

/// The job object: created with the plan's limits and kill-on-close, then
/// reopened through a handle that cannot change them.
struct JobObjectLayer;

impl Layer for JobObjectLayer {
    type Outcome = Limits;

    fn predict(&self, job: &mut Job<'_>) -> Limits {
        let limits = Limits {
            kill_on_close: true,
            enforced: if job.support.wine { Err(WINE) } else { Ok(()) },
            problem: None,
        };
        share(job, &limits);
        limits
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Limits, PrepareError> {
        let object = JobObject::new().map_err(|source| PrepareError::JobObject {
            action: "create",
            source,
        })?;
        let limits = object.set_limits(job.plan, job.support);
        let object = object
            .restrict()
            .map_err(|source| PrepareError::JobObject {
                action: "restrict the handle of",
                source,
            })?;
        spec.job = Some(object);
        share(job, &limits);
        Ok(limits)
    }

    fn report(&self, job: &Job<'_>, limits: &Limits, report: &mut EnforcementReport) {
        let l = &job.plan.limits;
        let not = |kind: ItemKind, detail: String| {
            Item::not_enforced(kind, format!("not enforced on Windows: {detail}"))
        };
        report.push(match (l.cpu_secs.value, limits.enforced) {
            (Limit::Value(secs), Ok(())) => Item::enforced(
                ItemKind::Cpu,
                format!("cpu {secs} s"),
                format!("{secs} s of user time per process (job object)"),
            ),
            (Limit::Value(secs), Err(why)) => not(ItemKind::Cpu, format!("{secs} s: {why}")),
            (Limit::Unlimited, _) => Item::unlimited(ItemKind::Cpu, &l.cpu_secs.key),
        });
        report.push(match (l.memory.value, limits.enforced) {
            (Limit::Value(n), Ok(())) => Item::enforced(
                ItemKind::Memory,
                format!("memory {} (job object)", format_size(n)),
                format!(
                    "{} committed by the whole tree (job object)",
                    format_size(n)
                ),
            ),
            (Limit::Value(n), Err(why)) => {
                not(ItemKind::Memory, format!("{}: {why}", format_size(n)))
            }
            (Limit::Unlimited, _) => Item::unlimited(ItemKind::Memory, &l.memory.key),
        });
        report.push(match (l.processes.value, limits.enforced) {
            (Limit::Value(n), Ok(())) => Item::enforced(
                ItemKind::Processes,
                format!("processes {n} (job object)"),
                format!("{n} at once in the whole tree (job object)"),
            ),
            (Limit::Value(n), Err(why)) => not(ItemKind::Processes, format!("{n}: {why}")),
            (Limit::Unlimited, _) => Item::unlimited(ItemKind::Processes, &l.processes.key),
        });
        report.push(if l.core_dumps.value {
            Item::new(
                ItemKind::CoreDumps,
                Status::NotRequested,
                "crash dumps allowed",
                "allowed by the policy",
                Requirement::Advisory,
            )
        } else {
            Item::new(
                ItemKind::CoreDumps,
                Status::Partial,
                "no crash dialog",
                "an unhandled exception ends the process at once (job object); Windows Error Reporting may still keep a dump if LocalDumps is configured",
                Requirement::Advisory,
            )
        });
        report.push(if limits.kill_on_close {
            Item::enforced(
                ItemKind::ParentDeath,
                "dies with host",
                "the job object is killed when the host's last handle to it closes (KILL_ON_JOB_CLOSE)",
            )
        } else {
            not(
                ItemKind::ParentDeath,
                "the job object refused KILL_ON_JOB_CLOSE".into(),
            )
        });
        report.push(Item::new(
            ItemKind::TreeCleanup,
            Status::Partial,
            "tree cleanup (job object)",
            "the whole job object is terminated and its processes cannot break away, but a job running as the host's user can still have a system service (WMI, Task Scheduler) start a process outside it",
            Requirement::Required,
        ));
        if let Some(problem) = &limits.problem {
            report.push(Item::new(
                ItemKind::JobObject,
                Status::Partial,
                "job object",
                problem.clone(),
                Requirement::Advisory,
            ));
        }
    }
}

/// The job object limits memory and processes for the whole tree.
fn share(job: &mut Job<'_>, limits: &Limits) {
    if limits.enforced.is_ok() {
        job.facts.memory_by = Some("job object");
        job.facts.processes_by = Some("job object");
    }
}

/// The session: its own job object, no console window, stdin `NUL`.
struct Session;

impl Layer for Session {
    type Outcome = ();

    fn predict(&self, _job: &mut Job<'_>) {}

    fn apply(&self, _job: &mut Job<'_>, _spec: &mut Spec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn report(&self, _job: &Job<'_>, _: &(), report: &mut EnforcementReport) {
        report.push(Item::enforced(
            ItemKind::Session,
            "own job object",
            "own job object, no console window, stdin NUL",
        ));
        report.push(Item::new(
            ItemKind::Descriptors,
            Status::Partial,
            "stdio handles",
            "stdin, stdout and stderr, plus any handle the embedding program itself made inheritable (jobwarden makes none)",
            Requirement::Required,
        ));
    }
}
