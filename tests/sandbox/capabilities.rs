//! A handle's capabilities: a plugin whose manifest grants jobs but not
//! `jobs_cancel` may spawn and watch, and its cancel is refused while the
//! job runs on to its own end.

use crate::harness::*;
use jobwarden::contract::{JobEvent, JobStatus};
use jobwarden::{JobCapabilities, JobEnd, JobHost, JobSpawnRequest};
use std::time::Duration;

#[test]
fn a_spawn_only_handle_cannot_cancel_and_the_job_runs_to_completion() {
    let fx = Fixture::new("");
    let spawn_only = fx.host.plugin_with("tests", JobCapabilities::SPAWN_ONLY);
    assert_eq!(spawn_only.capabilities(), JobCapabilities::SPAWN_ONLY);
    let id = spawn_only.spawn(JobSpawnRequest::new("probe", ["sleep", "1"]));
    assert!(
        eventually(Duration::from_secs(10), || matches!(
            spawn_only.status(&id),
            Some(JobStatus::Running { .. })
        )),
        "the job never started: {:?}",
        spawn_only.status(&id)
    );

    assert!(!spawn_only.cancel(&id), "a spawn-only handle cancelled");
    assert!(matches!(
        spawn_only.status(&id),
        Some(JobStatus::Running { .. })
    ));
    let warnings = fx.host.take_warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("plugin tests may not cancel jobs")
                && w.message.contains(&id)),
        "{warnings:?}"
    );

    let events = collect(&spawn_only, &id, Duration::from_secs(30));
    assert!(
        matches!(events.last(), Some(JobEvent::JobCompleted { .. })),
        "the refused cancel must not end the job: {events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, JobEvent::JobCancelled { .. }))
    );
    assert_eq!(spawn_only.end(&id), Some(JobEnd::Exited { code: 0 }));
    assert_eq!(
        spawn_only.status(&id),
        Some(JobStatus::Completed { exit_code: 0 })
    );
}

#[test]
fn the_same_plugin_with_every_capability_can_cancel() {
    // The control for the test above: the same job, the same plugin name,
    // a handle made with every capability.
    let fx = Fixture::new("");
    let full = fx.host.plugin_with("tests", JobCapabilities::ALL);
    assert_eq!(fx.host.plugin("tests").capabilities(), JobCapabilities::ALL);
    let id = full.spawn(JobSpawnRequest::new("probe", ["sleep", "30"]));
    assert!(eventually(Duration::from_secs(10), || matches!(
        full.status(&id),
        Some(JobStatus::Running { .. })
    )));
    assert!(full.cancel(&id));
    let events = collect(&full, &id, Duration::from_secs(30));
    assert!(
        matches!(events.last(), Some(JobEvent::JobCancelled { .. })),
        "{events:#?}"
    );
}

#[test]
fn a_spawn_only_handle_sees_the_jobs_of_its_plugin_and_cannot_cancel_them_either() {
    // Capabilities belong to the handle, not the plugin name: a spawn-only
    // handle cannot cancel a job its plugin started through a full handle.
    let fx = Fixture::new("");
    let full = fx.plugin();
    let spawn_only = fx.host.plugin_with("tests", JobCapabilities::SPAWN_ONLY);
    let id = full.spawn(JobSpawnRequest::new("probe", ["sleep", "30"]));
    assert!(spawn_only.status(&id).is_some());
    assert!(!spawn_only.cancel(&id));
    assert!(full.cancel(&id));
    let events = collect(&full, &id, Duration::from_secs(30));
    assert!(matches!(events.last(), Some(JobEvent::JobCancelled { .. })));
}
