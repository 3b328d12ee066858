//! The smallest correct embedding of jobwarden in a host's event loop:
//! load a policy, hand a plugin its handle, spawn, drain every frame.
//!
//! `cargo run --example embed` prints the events of `git log` in this repo.

use jobwarden::{JobHost, JobSpawnRequest, Policy, PolicyJobHost};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The embedded default policy; a TUI would use Policy::load(path)?.policy.
    let policy = Policy::embedded_default();
    let host = PolicyJobHost::new(policy, ".")?;
    let plugin = host.plugin("cli"); // one handle per plugin

    // Never blocks: decides, records, returns the id.
    let id = plugin.spawn(JobSpawnRequest::new("git", ["log", "--oneline", "-n", "5"]));
    eprintln!("spawned {id}");

    // The render loop: drain once per frame, never wait.
    loop {
        for event in plugin.drain_events() {
            println!("{}", serde_json::to_string(&event)?);
            if event.is_terminal() {
                return Ok(()); // dropping the host reaps everything
            }
        }
        std::thread::sleep(Duration::from_millis(16)); // ~60 frames a second
    }
}
