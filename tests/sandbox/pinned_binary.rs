//! Invariant 1 for pinned binaries (`sha256 = "…"`): the file executed is
//! the very file that was hashed (the child execs the open descriptor,
//! `execveat`), and a binary changed since the last job is hashed again and
//! refused, even when its size and modification time were kept.

use crate::harness::*;
use jobwarden::{JobEnd, JobSpawnRequest};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A policy with binary `pinned` at `path` (pinned to `sha` unless empty)
/// for plugin `pin`; the binaries' directory is executable, so Landlock
/// would allow whichever file the path names.
fn pin_policy(path: &Path, sha: &str) -> String {
    let dir = path.parent().unwrap().display();
    let pin = if sha.is_empty() {
        String::new()
    } else {
        format!("sha256 = \"{sha}\"\n")
    };
    format!(
        "\n[binaries.pinned]\npath = \"{}\"\n{pin}helpers = [\"{dir}\"]\n[plugins.pin]\nbinaries = [\"pinned\"]\n",
        path.display()
    )
}

/// Prepares the job, then renames another binary over the program's path
/// before starting it; returns the inodes of the running, the hashed and
/// the replacement file.
fn swap_between_hash_and_exec(pinned: bool) -> (u64, u64, u64) {
    // A freshly written binary may be briefly "busy" (ETXTBSY) while
    // another test's process start still holds a copy of the writer's
    // descriptor: then the whole attempt is made again.
    for _ in 0..50 {
        if let Some(inodes) = try_swap_between_hash_and_exec(pinned) {
            return inodes;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the binary stayed busy");
}

fn try_swap_between_hash_and_exec(pinned: bool) -> Option<(u64, u64, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("pinned");
    copy_probe(&program, b"");
    let hashed = std::fs::metadata(&program).unwrap().ino();
    let other = dir.path().join("other");
    copy_probe(&other, b"another binary");
    let replacement = std::fs::metadata(&other).unwrap().ino();
    let sha = if pinned {
        sha256_hex(&program)
    } else {
        String::new()
    };
    let fx = Fixture::new(&pin_policy(&program, &sha));
    let plan = fx.plan("pin", &JobSpawnRequest::new("pinned", ["sleep", "30"]));
    let prepared = prepare(&plan).unwrap_or_else(|e| panic!("{e}"));
    if pinned {
        let pin = prepared.report.item("binary_pin").unwrap();
        assert_eq!(pin.status, jobwarden::sandbox::Status::Enforced, "{pin:?}");
    }

    std::fs::rename(&other, &program).unwrap();
    let mut spawner = jobwarden::sandbox::Spawner::new().unwrap();
    let started = match spawner.spawn(prepared) {
        Ok(started) => started,
        Err(jobwarden::sandbox::SpawnError::Exec(e)) if e.raw_os_error() == Some(libc::ETXTBSY) => {
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    let running = std::fs::metadata(format!("/proc/{}/exe", started.pid()))
        .unwrap()
        .ino();
    // Dropping the started job kills it and removes its cgroups.
    drop(started);
    Some((running, hashed, replacement))
}

#[test]
fn a_pinned_binary_runs_the_file_that_was_hashed_even_if_the_path_is_swapped() {
    let (running, hashed, replacement) = swap_between_hash_and_exec(true);
    assert_ne!(hashed, replacement);
    assert_eq!(running, hashed, "the process runs the hashed file");
}

#[test]
fn control_an_unpinned_binary_runs_whatever_the_path_names_at_exec() {
    let (running, _, replacement) = swap_between_hash_and_exec(false);
    assert_eq!(
        running, replacement,
        "executed by path: the swap took effect"
    );
}

/// Runs the pinned binary through the host; `Err(rule)` when refused.
fn run_pinned(fx: &Fixture) -> Result<(), String> {
    for _ in 0..50 {
        let out = run_to_end(
            &fx.host.plugin("pin"),
            JobSpawnRequest::new("pinned", ["print", "pinned ok"]),
            std::time::Duration::from_secs(30),
        );
        match &out.end {
            Some(JobEnd::Exited { code: 0 }) => return Ok(()),
            Some(JobEnd::Denied { rule }) => return Err(rule.clone()),
            // See swap_between_hash_and_exec: a brief ETXTBSY.
            Some(JobEnd::StartFailed) if out.error().contains("Text file busy") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => panic!("{out:#?}"),
        }
    }
    panic!("the binary stayed busy")
}

#[test]
fn a_pinned_binary_changed_after_a_job_ran_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("pinned");
    copy_probe(&program, b"");
    let fx = Fixture::new(&pin_policy(&program, &sha256_hex(&program)));
    run_pinned(&fx).expect("the pinned binary runs");
    run_pinned(&fx).expect("and again, from the hash cache");

    // Appended to in place: same inode, new size.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&program)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    assert_eq!(run_pinned(&fx), Err("binaries.pinned.sha256".into()));
}

#[test]
fn a_change_that_keeps_size_and_modification_time_is_still_noticed() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("pinned");
    copy_probe(&program, b"0");
    let fx = Fixture::new(&pin_policy(&program, &sha256_hex(&program)));
    run_pinned(&fx).expect("the pinned binary runs");

    let before = std::fs::metadata(&program).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&program)
        .unwrap();
    (&file).seek(SeekFrom::End(-1)).unwrap();
    (&file).write_all(b"1").unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = std::fs::metadata(&program).unwrap();
    // Control: what a cache keyed on size and mtime would see is unchanged.
    assert_eq!(
        (after.ino(), after.len(), after.modified().unwrap()),
        (before.ino(), before.len(), before.modified().unwrap())
    );
    assert_eq!(run_pinned(&fx), Err("binaries.pinned.sha256".into()));
}
