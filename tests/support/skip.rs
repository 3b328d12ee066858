//! Skips that are counted, never silent.
//!
//! A test may skip only when the machine truly lacks what it needs, and
//! then it says which requirement was missing. [`skip!`] records the skip
//! and returns from the test; [`skipped_part!`] records that one part of a
//! test could not run and carries on. Each record is printed and, when
//! `JOBWARDEN_SKIP_LOG` names a file, appended to it as one line:
//! `test<TAB>requirement<TAB>reason`. `.ci/run` counts those lines, prints
//! them, and fails when a test skipped for a requirement the CI machine
//! has (it checks each requirement itself, independently of jobwarden's
//! own detection).
//!
//! Requirements, as `.ci/skips` knows them (checked for the user and the
//! cgroups the tests ran as):
//! - `root`, `non-root`: the user the tests run as;
//! - `landlock-abi-N`: a kernel with Landlock ABI N or later;
//! - `cgroup-pids`, `cgroup-memory`: a cgroup controller the tests' own
//!   cgroup offers;
//! - `user-namespaces`: an unprivileged process may create a user namespace;
//! - `legacy-tiocsti`: `dev.tty.legacy_tiocsti = 1` (or a kernel without
//!   the switch);
//! - `tmux`, `example-tui`: tools the TUI test drives;
//! - `user-xattrs`: the temporary directory's file system keeps user
//!   extended attributes (placeholders' marks);
//! - `ia32-emulation`: the kernel runs 32-bit system calls (x86_64);
//! - `cgroups`: any cgroup hierarchy jobwarden can create job cgroups in;
//! - `cgroup-v2-usable`: a cgroup2 cgroup the tests may create children in
//!   (the spawner's unit tests in `src/sandbox/linux/spawn.rs`, which
//!   record their skips the same way);
//! - `clone3-into-cgroup`: x86_64 and Linux 5.7 or later (`clone3` with
//!   `CLONE_INTO_CGROUP`);
//! - `cgroup-v2`: a cgroup2 hierarchy is mounted; `cgroup-v2-hugetlb`: a
//!   spare controller (`hugetlb`) a child of the tests' cgroup2 cgroup can
//!   get, standing in for pids and memory in the delegation tests;
//! - `dbus-daemon`: installed (the delegation tests' private bus);
//! - `windows-job-limits`: a Windows that enforces job object limits
//!   (Wine does not); `macos-limits`: macOS limits for a whole tree (none).

#![allow(dead_code, unused_macros)]

use std::io::Write;

/// The variable naming the file skips are appended to.
pub const LOG_VARIABLE: &str = "JOBWARDEN_SKIP_LOG";

/// Prints a skip and appends it to the skip log, if there is one.
pub fn record(module: &str, requirement: &str, reason: &str) {
    // libtest runs each test on a thread named after the test.
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.to_string(),
        _ => module.to_string(),
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| stem.split('-').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let reason = reason.replace(['\t', '\n'], " ");
    eprintln!("SKIPPED {binary}::{test}: needs {requirement}: {reason}");
    if let Some(path) = std::env::var_os(LOG_VARIABLE) {
        // One write of one line with O_APPEND: lines from parallel tests
        // and test binaries do not interleave.
        let line = format!("{binary}::{test}\t{requirement}\t{reason}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot record a skip in {}: {e}", path.to_string_lossy());
        }
    }
}

/// Skips the rest of the test: `skip!("requirement", "why {}", detail)`.
macro_rules! skip {
    ($requirement:expr, $($reason:tt)+) => {{
        $crate::skip::record(module_path!(), $requirement, &format!($($reason)+));
        return;
    }};
}

/// Records that one part of a test could not run here, and carries on.
macro_rules! skipped_part {
    ($requirement:expr, $($reason:tt)+) => {{
        $crate::skip::record(module_path!(), $requirement, &format!($($reason)+));
    }};
}
