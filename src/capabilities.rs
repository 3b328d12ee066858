//! What a plugin's handle lets it do besides spawning and watching its own
//! jobs. A handle's capabilities are fixed when the embedding host makes it:
//! nothing a plugin sends can widen them.
//!
//! # From the ProGit manifest
//!
//! A ProGit plugin declares `capabilities.jobs` and `capabilities.jobs_cancel`
//! in its manifest (`progit-plugin-sdk` 0.4 declares both but enforces
//! neither: the host does). jobwarden maps them so:
//!
//! | manifest | what the embedding host does |
//! |---|---|
//! | no `capabilities` block, or `jobs` false or absent | gives the plugin **no handle**: it cannot ask for jobs at all |
//! | `jobs = true`, `jobs_cancel` false or absent | `host.plugin_with(name, JobCapabilities::SPAWN_ONLY)`: it may spawn, watch and drain; `cancel` returns `false` and the job runs on to its end or its timeout |
//! | `jobs = true`, `jobs_cancel = true` | `host.plugin(name)` (the same as [`JobCapabilities::ALL`]) |
//!
//! [`JobCapabilities::from_manifest_flags`] is that table; with the `progit`
//! feature, `PolicyJobHost::plugin_for_manifest` reads it from the SDK's
//! manifest type. A missing `capabilities` block yields no handle because the
//! SDK's own legacy default for such manifests grants `jobs = false`.
//!
//! The manifest says which calls a plugin may make; the trust policy's
//! `[plugins.NAME]` section says what its jobs may run. Both apply: a plugin
//! with a handle whose name the policy does not list has every request
//! refused with a `JobFailed` naming the rule.

/// What a plugin handle may do beyond spawning, watching and draining its
/// own jobs. Made with [`JobCapabilities::ALL`], [`JobCapabilities::SPAWN_ONLY`]
/// or [`JobCapabilities::from_manifest_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCapabilities {
    /// May cancel its own jobs (the manifest's `jobs_cancel`). Without it,
    /// `cancel` returns `false`, the job keeps running, and the host's
    /// warning sink hears about the refused call.
    pub cancel: bool,
}

impl JobCapabilities {
    /// Everything: what `PolicyJobHost::plugin` gives.
    pub const ALL: Self = Self { cancel: true };

    /// Spawn, watch and drain, but not cancel (`jobs_cancel = false`).
    pub const SPAWN_ONLY: Self = Self { cancel: false };

    /// The capabilities a plugin's manifest flags grant, or `None` when the
    /// plugin must get no handle at all (`jobs` is false). `jobs_cancel`
    /// without `jobs` grants nothing: cancelling needs jobs to cancel.
    pub fn from_manifest_flags(jobs: bool, jobs_cancel: bool) -> Option<Self> {
        jobs.then_some(Self {
            cancel: jobs_cancel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::JobCapabilities;

    #[test]
    fn manifest_flags_map_to_a_handle_or_none() {
        assert_eq!(JobCapabilities::from_manifest_flags(false, false), None);
        assert_eq!(JobCapabilities::from_manifest_flags(false, true), None);
        assert_eq!(
            JobCapabilities::from_manifest_flags(true, false),
            Some(JobCapabilities::SPAWN_ONLY)
        );
        assert_eq!(
            JobCapabilities::from_manifest_flags(true, true),
            Some(JobCapabilities::ALL)
        );
    }
}
