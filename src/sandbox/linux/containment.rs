//! The containment layer: one cgroup per job in each hierarchy the host
//! may use (see `cgroup.rs`), giving whole-tree limits for memory and
//! processes, an exact member list and a whole-tree kill that also catches
//! processes that left the job's session. Without cgroups, the tree is held
//! together by its session and process group and a subreaper's scan, which
//! is reported as partial.

use super::cgroup::JobCgroup;
use super::spec::{Spec, above_stdio};
use crate::policy::{Limit, units::format_size};
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};

pub(crate) struct Containment;

/// What a job's cgroups give: actual, after creating them, or predicted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Where the memory limit is enforced, if in a cgroup.
    memory: Option<&'static str>,
    /// Where the process limit is enforced, if in a cgroup.
    pids: Option<&'static str>,
    /// How the whole tree is killed, if by a cgroup.
    kill: Option<&'static str>,
    /// Problems met while creating them.
    problems: Vec<String>,
}

fn limit(limit: &Limit) -> Option<u64> {
    match limit {
        Limit::Value(n) => Some(*n),
        Limit::Unlimited => None,
    }
}

impl Containment {
    fn share(job: &mut Job<'_>, outcome: &Outcome) {
        job.facts.memory_by = outcome.memory;
        job.facts.processes_by = outcome.pids;
    }
}

impl Layer for Containment {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        let cg = &job.support.cgroups;
        let outcome = if cg.unavailable.is_some() {
            Outcome::default()
        } else {
            let l = &job.plan.limits;
            Outcome {
                memory: limit(&l.memory.value).and(cg.memory()),
                pids: limit(&l.processes.value).and(cg.pids()),
                kill: cg.tree_kill(),
                problems: Vec::new(),
            }
        };
        Self::share(job, &outcome);
        outcome
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let support = &job.support.cgroups;
        if support.unavailable.is_some() {
            return Ok(Outcome::default());
        }
        let l = &job.plan.limits;
        let (cgroup, join) = JobCgroup::create(
            support,
            Some(&job.support.cgroup_pool),
            job.name.to_string(),
            limit(&l.processes.value),
            limit(&l.memory.value),
        );
        let outcome = Outcome {
            memory: cgroup.memory_limit,
            pids: cgroup.pids_limit,
            kill: cgroup.kill_method(),
            problems: cgroup.problems.clone(),
        };
        // Owned by the spec from here: an unspawned spec removes it.
        spec.cgroup = Some(cgroup);
        for fd in join.procs {
            spec.cgroup_procs.push(above_stdio(fd)?);
        }
        spec.cgroup_v2_dir = join.v2_dir.map(above_stdio).transpose()?;
        Self::share(job, &outcome);
        Ok(outcome)
    }

    fn report(&self, job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        let l = &job.plan.limits;
        // Without a cgroup, the rlimits layer reports what stands in.
        if let (Limit::Value(n), Some(how)) = (l.memory.value, outcome.memory) {
            report.push(Item::enforced(
                ItemKind::Memory,
                format!("memory {} (cgroup)", format_size(n)),
                format!("{} for the whole tree ({how})", format_size(n)),
            ));
        }
        if let (Limit::Value(n), Some(how)) = (l.processes.value, outcome.pids) {
            report.push(Item::enforced(
                ItemKind::Processes,
                format!("processes {n} (cgroup)"),
                format!("{n} in the whole tree ({how})"),
            ));
        }
        report.push(match outcome.kill {
            Some(how) => Item::enforced(
                ItemKind::TreeCleanup,
                format!("tree cleanup ({})", how.trim_start_matches("cgroup ")),
                format!("{how}, with a child subreaper"),
            ),
            None => Item::new(
                ItemKind::TreeCleanup,
                Status::Partial,
                "tree cleanup (process group)",
                if job.support.subreaper {
                    "process group and session scan with a child subreaper: no job cgroup here"
                } else {
                    "process group only: no job cgroup and no subreaper"
                },
                Requirement::Required,
            ),
        });
        if !outcome.problems.is_empty() {
            report.push(Item::new(
                ItemKind::Cgroup,
                Status::Partial,
                "cgroup",
                outcome.problems.join("; "),
                Requirement::Advisory,
            ));
        }
    }
}
