//! The example TUI, driven headless through tmux as a user would drive it:
//! start a job, watch its coloured output, start and cancel another, quit.

// Linux only: drives tmux.
#![cfg(target_os = "linux")]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(session: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(&["capture-pane", "-t", session, "-p"]);
        if screen.contains(needle) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "`{needle}` never appeared:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_tui_starts_shows_and_cancels_jobs() {
    if Command::new("tmux").arg("-V").output().is_err() {
        skip!("tmux", "tmux is not installed (CI installs it)");
    }
    // `cargo test` builds the examples beside this test's own binary
    // (<target dir>/<profile>/deps/): the TUI under test is the one built
    // with the same features in the same target directory.
    let exe = std::env::current_exe().expect("the test binary's path");
    let tui = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary sits in <profile>/deps")
        .join("examples")
        .join(format!("tui{}", std::env::consts::EXE_SUFFIX));
    if !tui.exists() {
        skip!("example-tui", "{} was not built", tui.display());
    }
    let tui = tui.to_str().expect("a UTF-8 target directory");
    let session = format!("jobwarden-tui-{}", std::process::id());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "24",
        tui,
    ]);
    wait_for(&session, "start (digit)");

    tmux(&["send-keys", "-t", &session, "7"]); // colours
    let screen = wait_for(&session, "green red no screen clear");
    assert!(
        !screen.contains("a title"),
        "the OSC title was removed:\n{screen}"
    );
    wait_for(&session, "done       job-1 colours");

    tmux(&["send-keys", "-t", &session, "8"]); // sleep 30
    wait_for(&session, "job-2 sleep 30");
    tmux(&["send-keys", "-t", &session, "c"]);
    wait_for(&session, "cancelled  job-2 sleep 30");

    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = || {
        Command::new("tmux")
            .args(["has-session", "-t", &session])
            .status()
            .is_ok_and(|s| s.success())
    };
    while running() {
        assert!(Instant::now() < deadline, "the TUI did not quit");
        std::thread::sleep(Duration::from_millis(100));
    }
}
