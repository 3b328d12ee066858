//! Editing the policy while the host runs: new requests use the new policy
//! once it validates; a broken edit keeps the old one and says why; running
//! jobs keep the plan they started with.

use crate::harness::*;
use jobwarden::contract::JobEvent;
use jobwarden::{HostWarning, JobHost, JobSpawnRequest, Policy, PolicyJobHost};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn the_policy_file_is_reloaded_only_when_it_validates() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let file = dir.path().join("policy.toml");
    let allowing = policy_text("");
    std::fs::write(&file, &allowing).unwrap();
    let warnings: Arc<Mutex<Vec<HostWarning>>> = Arc::default();
    let sink = warnings.clone();
    let host = PolicyJobHost::builder(Policy::load(&file).unwrap().policy, &repo)
        .tmp_dir(dir.path())
        .watch_policy(&file)
        .on_warning(move |w| sink.lock().unwrap().push(w))
        .build()
        .unwrap();
    let plugin = host.plugin("tests");

    // A job started under the first policy.
    let long = plugin.spawn(JobSpawnRequest::new("probe", ["sleep", "1.5"]));

    // An edit that does not validate: the old policy stays, and says why.
    std::fs::write(
        &file,
        allowing.replace("version = 1", "version = 1\ntimeout_sec = 3"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || warnings
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.message.contains("was not reloaded")
                && w.message.contains("unknown key `timeout_sec`"))),
        "{:?}",
        warnings.lock().unwrap()
    );
    let still = plugin.try_spawn(JobSpawnRequest::new("probe", ["print", "still allowed"]));
    assert!(still.is_ok(), "{still:?}");

    // A valid edit that refuses the probe: new requests are refused.
    std::fs::write(
        &file,
        allowing.replace("binaries = [\"probe\", \"sh\"]", "binaries = [\"sh\"]"),
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || warnings
        .lock()
        .unwrap()
        .iter()
        .any(|w| w.message.contains("policy reloaded"))));
    let denial = plugin
        .try_spawn(JobSpawnRequest::new("probe", ["print", "now refused"]))
        .unwrap_err();
    assert_eq!(denial.rule, "plugins.tests.binaries");

    // The job that started under the old policy finishes as planned.
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e: &JobEvent| e.is_terminal() && e.job_id() == &long)
    {
        events.extend(plugin.wait_events(Duration::from_millis(100)));
    }
    let end = events
        .iter()
        .find(|e| e.is_terminal() && e.job_id() == &long)
        .unwrap();
    assert!(matches!(end, JobEvent::JobCompleted { .. }), "{end:?}");
}
