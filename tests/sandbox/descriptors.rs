//! Invariant 4f: a job inherits only stdin, stdout and stderr, whatever
//! descriptors the host (the embedding program) left inheritable.

use crate::harness::*;

#[test]
fn only_stdio_is_inherited_even_from_a_host_that_leaks_a_descriptor() {
    let fx = Fixture::new("");
    let canary = fx.dir.path().join("leaked-descriptor-canary");
    std::fs::write(&canary, "secret").unwrap();
    let path = std::ffi::CString::new(canary.to_str().unwrap()).unwrap();
    // A descriptor without close-on-exec, as a careless embedder might hold.
    // SAFETY: open of a NUL-terminated path; the result is checked and closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);

    // Control: an ordinary child of the host inherits it.
    let plain = std::process::Command::new(PROBE)
        .arg("fds")
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();

    let out = fx.probe(&["fds"]);
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };

    assert!(
        plain.contains(&format!("{fd}={}", canary.display())),
        "the control did not inherit the canary: {plain}"
    );
    out.assert_ok();
    let fds = out.stdout()[0].clone();
    let listed: Vec<&str> = fds
        .rsplit(": ok: ")
        .next()
        .unwrap()
        .split(' ')
        .map(|entry| entry.split('=').next().unwrap())
        .collect();
    assert_eq!(listed, ["0", "1", "2"], "{fds}");
    assert!(!fds.contains("canary"), "{fds}");
}
