//! Invariant 4 (signals, tty): a job cannot signal the host, and holds no
//! terminal it could inject keystrokes into.

use crate::harness::*;

#[test]
fn killing_the_host_is_refused() {
    let fx = Fixture::new("");
    let host = std::process::id().to_string();
    // Signal 0 only checks permission: the probe would otherwise kill the test.
    let out = fx.probe(&["kill", &host, "0"]);
    out.assert_denied("EPERM");
    let out = fx.probe(&["kill", &host, "15"]);
    out.assert_denied("EPERM");
}

#[test]
fn a_job_has_no_terminal_to_inject_into() {
    let fx = Fixture::new("");
    let out = fx.probe(&["tty"]);
    let line = out.stdout().join(" ");
    for fd in 0..3 {
        assert!(line.contains(&format!("fd{fd}_isatty=0")), "{line}");
        assert!(!line.contains(&format!("fd{fd}_tiocsti=ok")), "{line}");
    }
    // No controlling terminal after setsid: /dev/tty cannot be opened.
    assert!(!line.contains("dev_tty=opened"), "{line}");
}
