//! The lines a ProGit host adds to give its plugins jobwarden as their
//! `JobHost` (`progit_plugin_sdk::traits::jobs::JobHost`, SDK 0.4).
//!
//! `cargo run --example progit_host --features progit` loads a plugin
//! manifest, hands the plugin a handle only if the manifest asks for jobs,
//! and then does what the plugin would do through the SDK's trait: spawn
//! `git log` in this repo and drain its events every frame, printing each
//! in the SDK's wire format.

use jobwarden::{Policy, PolicyJobHost};
use progit_plugin_sdk::manifest::PluginManifest;
use progit_plugin_sdk::traits::jobs::{JobEvent, JobHost, JobSpawnRequest};
use std::collections::HashMap;
use std::time::Duration;

/// A plugin's `.progit-plugin.json`: it asks for jobs but not to cancel them.
const MANIFEST: &str = r#"{
    "name": "citadel",
    "version": "0.1.0",
    "description": "Infrastructure cockpit",
    "author": "example",
    "license": "MIT",
    "capabilities": { "jobs": true, "jobs_cancel": false }
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // At start-up, once: the admin's trust policy and the repository.
    // ProGit would load its own file: Policy::load(path)?.policy.
    let policy = Policy::embedded_default();
    let host = PolicyJobHost::new(policy, ".")?;

    // When loading a plugin: a handle only if its manifest grants
    // `capabilities.jobs`, without cancel unless it grants `jobs_cancel`.
    // (`Box::new(host.plugin("citadel"))` gives one with every capability.)
    let manifest: PluginManifest = serde_json::from_str(MANIFEST)?;
    let Some(handle) = host.plugin_for_manifest(&manifest) else {
        eprintln!(
            "{} does not ask for jobs: it gets no JobHost",
            manifest.name
        );
        return Ok(());
    };
    let jobs: Box<dyn JobHost> = Box::new(handle);

    // From here on, only the SDK's trait: what the plugin itself calls.
    let id = jobs.spawn(JobSpawnRequest {
        label: "recent commits".into(),
        binary: "git".into(),
        args: vec!["log".into(), "--oneline".into(), "-n".into(), "3".into()],
        cwd: None,
        env: HashMap::new(),
        timeout_secs: 0,
    });
    eprintln!("spawned {id}; cancel allowed: {}", jobs.cancel(&id));

    // The render loop: drain once per frame, never wait.
    loop {
        for event in jobs.drain_events() {
            println!("{}", serde_json::to_string(&event)?);
            if matches!(
                event,
                JobEvent::JobCompleted { .. }
                    | JobEvent::JobFailed { .. }
                    | JobEvent::JobCancelled { .. }
            ) {
                eprintln!("status: {:?}", jobs.status(&id));
                return Ok(()); // dropping the host reaps everything
            }
        }
        std::thread::sleep(Duration::from_millis(16));
    }
}
