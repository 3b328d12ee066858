//! The rlimits layer (Linux and macOS): CPU time, open files, file size
//! and core dumps for every process of the job, and — only where no
//! whole-tree mechanism (a cgroup) covers them — the per-process or
//! per-user stand-ins for memory and processes, reported as weaker than
//! asked. Limits are never set above the host's own hard limits (raising
//! them would fail the whole spawn).

use crate::policy::{Limit, units::format_size};
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::os::Spec;
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};

/// The resource argument of `setrlimit`, as this libc types it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) type Resource = libc::c_int;

/// A limit the child sets with `setrlimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The rlimits layer. What the platform can fall back to differs: Linux
/// honours RLIMIT_AS, macOS ignores it.
pub(crate) struct Rlimits {
    /// RLIMIT_AS stands in for a memory limit without a memory cgroup.
    pub address_space_fallback: bool,
    /// Why memory has no whole-tree limit here, for the report.
    pub no_memory_limit: &'static str,
    /// Why processes have no whole-tree limit here, for the report.
    pub no_process_limit: &'static str,
}

/// What the layer sets, and what it left to a whole-tree mechanism.
pub(crate) struct Outcome {
    rlimits: Vec<Rlimit>,
    memory_by: Option<&'static str>,
    processes_by: Option<&'static str>,
}

impl Layer for Rlimits {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        let plan = job.plan;
        let l = &plan.limits;
        let mut rlimits = Vec::new();
        let mut push = |resource, soft: u64, hard: u64| {
            let host_hard = hard_limit(resource);
            rlimits.push(Rlimit {
                resource,
                soft: soft.min(host_hard),
                hard: hard.min(host_hard),
            });
        };
        if let Limit::Value(secs) = l.cpu_secs.value {
            // SIGXCPU at the limit, SIGKILL two seconds of CPU later.
            push(libc::RLIMIT_CPU as Resource, secs, secs.saturating_add(2));
        }
        if let Limit::Value(n) = l.open_files.value {
            push(libc::RLIMIT_NOFILE as Resource, n, n);
        }
        if let Limit::Value(n) = l.file_size.value {
            push(libc::RLIMIT_FSIZE as Resource, n, n);
        }
        if !l.core_dumps.value {
            push(libc::RLIMIT_CORE as Resource, 0, 0);
        }
        if let (Limit::Value(n), None, true) = (
            l.memory.value,
            job.facts.memory_by,
            self.address_space_fallback,
        ) {
            push(libc::RLIMIT_AS as Resource, n, n);
        }
        if let (Limit::Value(n), None, false) = (
            l.processes.value,
            job.facts.processes_by,
            job.support.is_root(),
        ) {
            push(libc::RLIMIT_NPROC as Resource, n, n);
        }
        Outcome {
            rlimits,
            memory_by: job.facts.memory_by,
            processes_by: job.facts.processes_by,
        }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let outcome = self.predict(job);
        spec.rlimits.clone_from(&outcome.rlimits);
        Ok(outcome)
    }

    fn report(&self, job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        let l = &job.plan.limits;
        let set = |resource| {
            outcome
                .rlimits
                .iter()
                .any(|r| r.resource == resource as Resource)
        };
        report.push(match l.cpu_secs.value {
            Limit::Value(secs) if set(libc::RLIMIT_CPU) => Item::enforced(
                ItemKind::Cpu,
                format!("cpu {secs} s"),
                format!("{secs} s per process (RLIMIT_CPU)"),
            ),
            Limit::Value(secs) => Item::not_enforced(ItemKind::Cpu, format!("{secs} s: not set")),
            Limit::Unlimited => Item::unlimited(ItemKind::Cpu, &l.cpu_secs.key),
        });
        match (l.memory.value, outcome.memory_by) {
            // The whole-tree mechanism reports it.
            (Limit::Value(_), Some(_)) => {}
            (Limit::Value(n), None) if set(libc::RLIMIT_AS) => report.push(Item::new(
                ItemKind::Memory,
                Status::Partial,
                format!("memory {} (address space)", format_size(n)),
                format!(
                    "{} of address space per process (RLIMIT_AS): {}",
                    format_size(n),
                    self.no_memory_limit
                ),
                Requirement::Required,
            )),
            (Limit::Value(n), None) => report.push(Item::not_enforced(
                ItemKind::Memory,
                format!("{}: {}", format_size(n), self.no_memory_limit),
            )),
            (Limit::Unlimited, _) => report.push(Item::unlimited(ItemKind::Memory, &l.memory.key)),
        }
        match (l.processes.value, outcome.processes_by) {
            (Limit::Value(_), Some(_)) => {}
            (Limit::Value(n), None) if set(libc::RLIMIT_NPROC) => report.push(Item::new(
                ItemKind::Processes,
                Status::Partial,
                format!("processes {n} (per user)"),
                format!(
                    "{n} via RLIMIT_NPROC, which counts every process of the user: {}",
                    self.no_process_limit
                ),
                Requirement::Required,
            )),
            (Limit::Value(n), None) => report.push(Item::not_enforced(
                ItemKind::Processes,
                format!(
                    "{n}: {}, and RLIMIT_NPROC is ignored for root",
                    self.no_process_limit
                ),
            )),
            (Limit::Unlimited, _) => {
                report.push(Item::unlimited(ItemKind::Processes, &l.processes.key))
            }
        }
        report.push(match l.open_files.value {
            Limit::Value(n) => Item::enforced(
                ItemKind::OpenFiles,
                format!("open files {n}"),
                format!("{n} per process (RLIMIT_NOFILE)"),
            ),
            Limit::Unlimited => Item::unlimited(ItemKind::OpenFiles, &l.open_files.key),
        });
        report.push(match l.file_size.value {
            Limit::Value(n) => Item::enforced(
                ItemKind::FileSize,
                format!("file size {}", format_size(n)),
                format!("{} per file (RLIMIT_FSIZE)", format_size(n)),
            ),
            Limit::Unlimited => Item::unlimited(ItemKind::FileSize, &l.file_size.key),
        });
        report.push(if l.core_dumps.value {
            Item::new(
                ItemKind::CoreDumps,
                Status::NotRequested,
                "core dumps allowed",
                "allowed by the policy",
                Requirement::Advisory,
            )
        } else {
            Item::enforced(ItemKind::CoreDumps, "no core dumps", "off (RLIMIT_CORE 0)")
        });
    }
}

/// The host's own hard limit for `resource` (unlimited if unknown).
fn hard_limit(resource: Resource) -> u64 {
    // SAFETY: getrlimit writes into a local struct.
    let mut current: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return u64::MAX;
    }
    if current.rlim_max == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        current.rlim_max as u64
    }
}

/// Sets `limits` in the calling process with raw `setrlimit`, which cannot
/// allocate: safe in a `CLONE_VM` or forked child. Returns the errno of the
/// first failure.
///
/// # Safety
/// Only async-signal-safe calls are made; the caller must only ensure that
/// `limits` stays valid for the duration of the call.
pub(crate) unsafe fn apply_in_child(limits: &[Rlimit]) -> Result<(), i32> {
    for limit in limits {
        let value = libc::rlimit {
            rlim_cur: limit.soft as libc::rlim_t,
            rlim_max: limit.hard as libc::rlim_t,
        };
        // SAFETY: setrlimit with a valid pointer to a local.
        if unsafe { libc::setrlimit(limit.resource, &value) } != 0 {
            // SAFETY: reads the calling thread's errno.
            return Err(unsafe { *errno_location() });
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: glibc and musl return the calling thread's errno slot.
    unsafe { libc::__errno_location() }
}

#[cfg(not(target_os = "linux"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: the BSDs' and macOS's errno slot of the calling thread.
    unsafe { libc::__error() }
}
