//! Invariant 4 (signals, tty): a job cannot signal the host, and cannot
//! inject keystrokes into the terminal the host (a TUI) runs in.

use crate::harness::*;
use std::os::fd::{FromRawFd, OwnedFd};

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
fn a_job_has_no_terminal_among_its_descriptors() {
    // stdin is /dev/null and the output goes to pipes, whatever the host
    // holds. (Whether it could reach the host's terminal another way is
    // what the pseudo-terminal test below shows.)
    let fx = Fixture::new("");
    let out = fx.probe(&["tty"]);
    let line = out.stdout().join(" ");
    for fd in 0..3 {
        assert!(line.contains(&format!("fd{fd}_isatty=0")), "{line}");
        assert!(!line.contains(&format!("fd{fd}_tiocsti=ok")), "{line}");
    }
}

#[test]
fn under_a_terminal_a_job_cannot_inject_keystrokes() {
    // A host that runs in a terminal, as a TUI does: a child process with
    // a pseudo-terminal as its controlling terminal and its stdin.
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the locals; no name,
    // termios or window size is passed.
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(ret, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors we own; close-on-exec so only the child's
    // stdin carries the terminal.
    let (master, slave) = unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    };
    let mut command = child_test("signals::terminal_host_child");
    command.stdin(slave);
    // SAFETY: setsid and ioctl are async-signal-safe; the closure touches
    // no memory of the parent.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    drop(master);
    assert_child_passed(&output);
}

/// What a job could push into the host's terminal, and what arrived.
struct Attempt {
    /// The probe's answer for `/dev/tty` and for the terminal's own path.
    via_dev_tty: String,
    via_path: String,
    /// Bytes that reached the host's terminal input.
    arrived: String,
}

fn attempt(fx: &Fixture, tty_path: &str) -> Attempt {
    let run = |path: &str| {
        let out = fx.probe(&["tty-inject", path, "jobwarden-injected"]);
        let answer = out
            .stdout()
            .into_iter()
            .rfind(|l| l.contains(": ok") || l.contains(": denied: "))
            .unwrap_or_else(|| format!("no answer: {out:#?}"));
        let opened = out.stdout().iter().any(|l| l.contains("opened"));
        let errno = answer
            .split_once(": denied: ")
            .map(|(_, e)| e.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| "ok".into());
        format!("{} {errno}", if opened { "opened" } else { "open" })
    };
    let via_dev_tty = run("/dev/tty");
    let via_path = run(tty_path);
    Attempt {
        via_dev_tty,
        via_path,
        arrived: drain_terminal_input(),
    }
}

/// Reads what is waiting on stdin (the terminal), without blocking long.
fn drain_terminal_input() -> String {
    let mut got = Vec::new();
    loop {
        let mut poll = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll and read on stdin into a local buffer.
        let ready = unsafe { libc::poll(&mut poll, 1, 300) };
        if ready <= 0 {
            break;
        }
        let mut buf = [0u8; 256];
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        got.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
#[ignore = "run with a terminal by under_a_terminal_a_job_cannot_inject_keystrokes"]
fn terminal_host_child() {
    child_role("signals::terminal_host_child");
    // SAFETY: ttyname of stdin returns a static buffer or NULL.
    let tty = unsafe {
        let name = libc::ttyname(0);
        assert!(!name.is_null(), "stdin is a terminal");
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    };
    // The policy even lets jobs open the terminal's device files.
    let grant = format!("\n[plugins.tests.filesystem]\nread_write = [\"/dev/tty\", \"{tty}\"]\n");
    let grant = grant.as_str();
    drain_terminal_input();

    // 1. As jobwarden runs jobs: no controlling terminal, and Landlock
    //    refuses ioctls on devices.
    let full = attempt(&Fixture::new(grant), &tty);
    assert_eq!(full.via_dev_tty, "open ENXIO", "no controlling terminal");
    assert_eq!(full.via_path, "opened EACCES", "Landlock: no device ioctls");
    assert_eq!(full.arrived, "");

    // 2. The session alone (Landlock below ABI 5 has no ioctl rule):
    //    TIOCSTI needs the terminal to be the caller's controlling one.
    let session_only = attempt(
        &Fixture::best_effort(grant, |b| b.landlock_abi_max(4)),
        &tty,
    );
    assert_eq!(session_only.via_dev_tty, "open ENXIO");
    assert_eq!(session_only.via_path, "opened EPERM");
    assert_eq!(session_only.arrived, "");

    // 3. Landlock's device rule alone, the session kept.
    let kept = Fixture::best_effort(grant, |b| b.without_session());
    let ioctl_only = attempt(&kept, &tty);
    assert_eq!(ioctl_only.via_dev_tty, "opened EACCES");
    assert_eq!(ioctl_only.arrived, "");
    let report = kept.probe(&["print", "x"]).enforcement.unwrap();
    assert_eq!(
        report.item("session").unwrap().status,
        jobwarden::sandbox::Status::NotEnforced,
        "{report}"
    );

    // 4. Control: neither. The keystrokes reach the host's terminal.
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim() == "1")
        .unwrap_or(true);
    let neither = attempt(
        &Fixture::best_effort(grant, |b| b.without_session().landlock_abi_max(4)),
        &tty,
    );
    if !legacy {
        skipped_part!(
            "legacy-tiocsti",
            "dev.tty.legacy_tiocsti = 0: the kernel itself refuses TIOCSTI, the control cannot inject ({})",
            neither.via_dev_tty
        );
        return;
    }
    assert_eq!(neither.via_dev_tty, "opened ok");
    assert!(
        neither.arrived.contains("jobwarden-injected"),
        "the control injected nothing: {:?}",
        neither.arrived
    );
}
