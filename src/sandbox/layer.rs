//! Enforcement as layers (process-wrap's wrappers, rust-landlock's
//! `RestrictionStatus` as a value returned by the step that enforces).
//!
//! A layer is one mechanism. It can *predict* what it would do for a job on
//! this host (no side effects: `explain`, `doctor`), or *apply* itself (open,
//! create, compile in the parent, and put its part into the platform's
//! spawn `Spec` for the child to carry out). Both produce the layer's
//! `Outcome`, and the layer's one `report` function turns an outcome into
//! report items — so what a job's report says comes from what its layer
//! did, and the prediction cannot drift from it.
//!
//! Layers run in the order the platform lists them; a later layer may read
//! what an earlier one established through [`Facts`] (Landlock needs the
//! program's ELF loader; rlimits need to know what a cgroup already limits).
//! The child applies the spec in its own fixed order, whatever the order
//! here.

use super::os;
use super::report::EnforcementReport;
use super::{HashCache, PrepareError};
use crate::decision::{Plan, PlanPath};

/// What layers establish for the layers after them.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// Files the job may execute besides the plan's `execute` list: the
    /// program's ELF loader, a script's interpreter and its loader, the
    /// helpers' loaders. (Only Linux can restrict execution.)
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub exec: Vec<PlanPath>,
    /// Paths the job finds read-only whatever its grants (the mount layer's
    /// protected paths), with the key that protects each: observation
    /// explains refusals with them.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub protected: Vec<PlanPath>,
    /// The whole-tree mechanism that limits memory (a cgroup, a job
    /// object), if one does.
    pub memory_by: Option<&'static str>,
    /// The whole-tree mechanism that limits processes, if one does.
    pub processes_by: Option<&'static str>,
}

/// One job as the layers see it.
pub(crate) struct Job<'a> {
    pub plan: &'a Plan,
    pub support: &'a os::Support,
    /// Names the job's kernel objects (cgroups on Linux).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub name: &'a str,
    /// Hashes of pinned binaries (only applying reads them).
    pub hashes: &'a mut HashCache,
    pub facts: Facts,
}

impl<'a> Job<'a> {
    pub fn new(
        plan: &'a Plan,
        support: &'a os::Support,
        name: &'a str,
        hashes: &'a mut HashCache,
    ) -> Self {
        Self {
            plan,
            support,
            name,
            hashes,
            facts: Facts::default(),
        }
    }
}

/// One enforcement mechanism.
pub(crate) trait Layer: Sync {
    /// What the layer did, or would do.
    type Outcome;

    /// What applying would give for this job on this host, without side
    /// effects.
    fn predict(&self, job: &mut Job<'_>) -> Self::Outcome;

    /// Does the parent's part of the work and adds the child's part to `spec`.
    fn apply(&self, job: &mut Job<'_>, spec: &mut os::Spec) -> Result<Self::Outcome, PrepareError>;

    /// The report items for `outcome`: the only place this layer's items
    /// are written.
    fn report(&self, job: &Job<'_>, outcome: &Self::Outcome, report: &mut EnforcementReport);
}

/// A layer as the fold sees it (object-safe: the outcome stays inside).
pub(crate) trait Enforce: Sync {
    /// Predicts and reports.
    fn assess(&self, job: &mut Job<'_>, report: &mut EnforcementReport);
    /// Applies and reports.
    fn prepare(
        &self,
        job: &mut Job<'_>,
        spec: &mut os::Spec,
        report: &mut EnforcementReport,
    ) -> Result<(), PrepareError>;
}

impl<L: Layer> Enforce for L {
    fn assess(&self, job: &mut Job<'_>, report: &mut EnforcementReport) {
        let outcome = self.predict(job);
        self.report(job, &outcome, report);
    }

    fn prepare(
        &self,
        job: &mut Job<'_>,
        spec: &mut os::Spec,
        report: &mut EnforcementReport,
    ) -> Result<(), PrepareError> {
        let outcome = self.apply(job, spec)?;
        self.report(job, &outcome, report);
        Ok(())
    }
}
