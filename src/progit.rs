//! jobwarden as the `JobHost` of the published ProGit plugin SDK
//! (`progit-plugin-sdk` 0.4, `progit_plugin_sdk::traits::jobs`), behind the
//! `progit` feature.
//!
//! The invariant this module keeps: a value crossing between jobwarden's
//! contract types and the SDK's keeps every variant and every field. Every
//! conversion below destructures its struct or variant completely (no `..`)
//! and builds the other side with every field named, so a field or variant
//! added on either side stops this file compiling instead of being dropped.
//! The two sides also serialise to the same bytes; `tests/progit.rs` proves
//! both for every variant against the real crate.
//!
//! ProGit injects a plugin's handle where it holds the SDK's trait:
//!
//! ```ignore
//! let jobs: Box<dyn progit_plugin_sdk::traits::jobs::JobHost> =
//!     Box::new(host.plugin("citadel"));
//! ```
//!
//! [`PluginHandle`] implements both jobwarden's [`crate::JobHost`] and the
//! SDK's trait, whose methods have the same names: bring one of them into
//! scope, or call through the trait (`sdk::JobHost::spawn(&handle, req)`).

use crate::capabilities::JobCapabilities;
use crate::contract as ours;
use crate::host::{PluginHandle, PolicyJobHost};
use progit_plugin_sdk::manifest::PluginManifest;
use progit_plugin_sdk::traits::jobs as sdk;

/// The SDK API version this feature is written and tested against
/// (`progit_plugin_sdk::SDK_API_VERSION`).
pub const TARGET_SDK_API_VERSION: &str = "0.4";

impl sdk::JobHost for PluginHandle {
    fn spawn(&self, req: sdk::JobSpawnRequest) -> sdk::JobId {
        ours::JobHost::spawn(self, req.into())
    }

    fn cancel(&self, job_id: &sdk::JobId) -> bool {
        ours::JobHost::cancel(self, job_id)
    }

    fn status(&self, job_id: &sdk::JobId) -> Option<sdk::JobStatus> {
        ours::JobHost::status(self, job_id).map(Into::into)
    }

    fn drain_events(&self) -> Vec<sdk::JobEvent> {
        ours::JobHost::drain_events(self)
            .into_iter()
            .map(Into::into)
            .collect()
    }
}

impl PolicyJobHost {
    /// The handle a ProGit plugin gets under its manifest, named by the
    /// manifest's `name` (which the policy's `[plugins.NAME]` must list for
    /// its requests to be allowed), or `None` when the manifest does not
    /// grant `capabilities.jobs`. See [`crate::capabilities`] for the table.
    pub fn plugin_for_manifest(&self, manifest: &PluginManifest) -> Option<PluginHandle> {
        let capabilities = manifest_job_capabilities(manifest)?;
        Some(self.plugin_with(&manifest.name, capabilities))
    }
}

/// The job capabilities a ProGit manifest grants, or `None` when the plugin
/// must get no handle: no `capabilities` block (the SDK's legacy default for
/// such manifests has `jobs = false`), or `jobs` false.
pub fn manifest_job_capabilities(manifest: &PluginManifest) -> Option<JobCapabilities> {
    let declared = manifest.capabilities.as_ref()?;
    // Read the flags by their wire names. The SDK hides the Rust fields
    // (`jobs_unstable`, `jobs_cancel_unstable`) and says it will rename them
    // when the capability is promoted, while the wire names stay; this way a
    // rename keeps compiling and keeps reading the right flags, and a flag
    // that disappears reads as false, which grants less, not more.
    let wire = serde_json::to_value(declared).ok()?;
    let flag = |name: &str| {
        wire.get(name)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    JobCapabilities::from_manifest_flags(flag("jobs"), flag("jobs_cancel"))
}

/// Converts structs whose fields have the same names and types on both
/// sides, in both directions, naming every field.
macro_rules! same_fields {
    ($($name:ident { $($field:ident),+ $(,)? })+) => {$(
        impl From<ours::$name> for sdk::$name {
            fn from(value: ours::$name) -> Self {
                let ours::$name { $($field),+ } = value;
                sdk::$name { $($field),+ }
            }
        }

        impl From<sdk::$name> for ours::$name {
            fn from(value: sdk::$name) -> Self {
                let sdk::$name { $($field),+ } = value;
                ours::$name { $($field),+ }
            }
        }
    )+};
}

same_fields! {
    JobSpawnRequest { label, binary, args, cwd, env, timeout_secs }
    JobStartedData { pid, started_at }
    JobProgressData { percent, step }
    JobLogLineData { line, stream }
    JobOutputChunkData { bytes, stream }
    JobCancelledData { reason, cancelled_at }
    JobCompletedData { exit_code, completed_at, output_tail }
    JobFailedData { exit_code, error, failed_at }
}

/// Converts the events in both directions, one match arm per variant on
/// each side.
macro_rules! same_events {
    ($($variant:ident),+ $(,)?) => {
        impl From<ours::JobEvent> for sdk::JobEvent {
            fn from(event: ours::JobEvent) -> Self {
                match event {
                    $(ours::JobEvent::$variant { job_id, data } => sdk::JobEvent::$variant {
                        job_id,
                        data: data.into(),
                    },)+
                }
            }
        }

        impl From<sdk::JobEvent> for ours::JobEvent {
            fn from(event: sdk::JobEvent) -> Self {
                match event {
                    $(sdk::JobEvent::$variant { job_id, data } => ours::JobEvent::$variant {
                        job_id,
                        data: data.into(),
                    },)+
                }
            }
        }
    };
}

same_events!(
    JobStarted,
    JobProgress,
    JobLogLine,
    JobOutputChunk,
    JobCancelled,
    JobCompleted,
    JobFailed,
);

impl From<ours::JobStatus> for sdk::JobStatus {
    fn from(status: ours::JobStatus) -> Self {
        match status {
            ours::JobStatus::Pending => sdk::JobStatus::Pending,
            ours::JobStatus::Running {
                started_at,
                percent,
            } => sdk::JobStatus::Running {
                started_at,
                percent,
            },
            ours::JobStatus::Cancelled { reason } => sdk::JobStatus::Cancelled { reason },
            ours::JobStatus::Completed { exit_code } => sdk::JobStatus::Completed { exit_code },
            ours::JobStatus::Failed { exit_code, error } => {
                sdk::JobStatus::Failed { exit_code, error }
            }
        }
    }
}

impl From<sdk::JobStatus> for ours::JobStatus {
    fn from(status: sdk::JobStatus) -> Self {
        match status {
            sdk::JobStatus::Pending => ours::JobStatus::Pending,
            sdk::JobStatus::Running {
                started_at,
                percent,
            } => ours::JobStatus::Running {
                started_at,
                percent,
            },
            sdk::JobStatus::Cancelled { reason } => ours::JobStatus::Cancelled { reason },
            sdk::JobStatus::Completed { exit_code } => ours::JobStatus::Completed { exit_code },
            sdk::JobStatus::Failed { exit_code, error } => {
                ours::JobStatus::Failed { exit_code, error }
            }
        }
    }
}
