//! Invariant 3 at start time: the working directory is checked when the
//! request is decided, and opened with `openat2(RESOLVE_BENEATH)` from the
//! repository when the job starts, so a directory swapped for a symlink in
//! between cannot lead the job outside.

use crate::harness::*;
use jobwarden::JobSpawnRequest;
use jobwarden::sandbox::PrepareError;

/// Replaces `repo/sub` by a symlink to `target` (the swap an attacker with
/// write access to the repository would make after the decision).
fn swap(fx: &Fixture, target: &std::path::Path) {
    let sub = fx.repo.join("sub");
    std::fs::rename(&sub, fx.repo.join("sub-decided")).unwrap();
    std::os::unix::fs::symlink(target, &sub).unwrap();
}

#[test]
fn a_directory_swapped_for_a_symlink_outside_after_the_decision_is_refused() {
    // Both an absolute link and a relative one climbing out with `..`.
    for link in ["ABSOLUTE", "../outside"] {
        let fx = Fixture::new("");
        std::fs::create_dir(fx.repo.join("sub")).unwrap();
        let outside = fx.dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let plan = fx.plan(
            "tests",
            &JobSpawnRequest::new("probe", ["cwd"]).with_cwd("sub"),
        );
        assert_eq!(
            plan.cwd,
            fx.repo.join("sub"),
            "decided inside the repository"
        );

        let target = if link == "ABSOLUTE" {
            outside.clone()
        } else {
            link.into()
        };
        swap(&fx, &target);
        // Control: the decided path, opened the ordinary way, now leads
        // outside.
        assert_eq!(
            std::fs::canonicalize(&plan.cwd).unwrap(),
            outside.canonicalize().unwrap()
        );
        match prepare(&plan) {
            Err(PrepareError::OpenWorkingDir { path, source }) => {
                assert_eq!(path, plan.cwd);
                assert_eq!(source.raw_os_error(), Some(libc::EXDEV), "{source}");
            }
            Err(other) => panic!("{link}: refused for another reason: {other}"),
            Ok(_) => panic!(
                "{link}: the job would have started in {}",
                outside.display()
            ),
        }
    }
}

#[test]
fn control_a_swap_that_stays_inside_the_repository_is_followed() {
    // RESOLVE_BENEATH refuses only what leaves the repository: the same
    // swap to a directory inside it prepares fine.
    let fx = Fixture::new("");
    std::fs::create_dir(fx.repo.join("sub")).unwrap();
    std::fs::create_dir(fx.repo.join("elsewhere")).unwrap();
    let plan = fx.plan(
        "tests",
        &JobSpawnRequest::new("probe", ["cwd"]).with_cwd("sub"),
    );
    swap(&fx, std::path::Path::new("elsewhere"));
    // (Dropping the unspawned job removes what preparing created.)
    if let Err(e) = prepare(&plan) {
        panic!("{e}");
    }
}
