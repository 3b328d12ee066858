//! Nothing a job can write can be executed: not a repository file through
//! the ELF loader, not a `.so` through `dlopen`, not a program copied into
//! the repository, not an ELF written to a memfd. Each attempt is made for
//! real, then again with the responsible layer switched off (the job's
//! mount namespace, the memfd filter) to show that layer is what refused.
//! A `filesystem.execute` entry inside the repository stays executable.

use crate::harness::*;
use jobwarden::sandbox::{BaselineLayer, Status};
use std::path::{Path, PathBuf};

/// The ELF loader this machine's programs name.
fn loader() -> &'static str {
    ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a known ELF loader")
}

/// A shared library of the system, to copy into the repository.
fn some_library() -> PathBuf {
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib64",
        "/usr/lib",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("libz.so.") || name.starts_with("libm.so.") {
                return entry.path();
            }
        }
    }
    panic!("no libz or libm to copy");
}

/// Copies the probe into `dir` as `name`, executable.
fn plant_probe(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let target = dir.join(name);
    std::fs::copy(PROBE, &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    target
}

#[test]
fn the_elf_loader_cannot_run_a_repository_file() {
    let fx = Fixture::new("");
    let planted = plant_probe(&fx.repo, "planted");
    let args = [
        "exec",
        loader(),
        planted.to_str().unwrap(),
        "print",
        "escaped",
    ];
    let out = fx.probe(&args);
    assert_eq!(out.code(), 127, "{out:#?}");
    assert!(
        out.stderr().join("\n").contains("failed to map segment"),
        "the kernel refused the executable mapping: {out:#?}"
    );
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("write_xor_execute")
        .unwrap();
    assert_eq!(item.status, Status::Enforced, "{item:?}");

    // Without the mount namespace, Landlock lets the loader map the file
    // (it needs only the read right) and the planted program runs.
    let off = Fixture::without("", &[BaselineLayer::Mounts]);
    let planted = plant_probe(&off.repo, "planted");
    let out = off.probe(&[
        "exec",
        loader(),
        planted.to_str().unwrap(),
        "print",
        "escaped",
    ]);
    assert!(
        out.stdout().iter().any(|l| l.contains("print escaped: ok")),
        "{out:#?}"
    );
}

#[test]
fn dlopen_of_a_repository_library_fails() {
    let library = some_library();
    let fx = Fixture::new("");
    let planted = fx.repo.join("planted.so");
    std::fs::copy(&library, &planted).unwrap();
    let out = fx.probe(&["dlopen", planted.to_str().unwrap()]);
    assert_ne!(out.code(), 0, "{out:#?}");
    assert!(
        out.stderr().join("\n").contains("failed to map segment"),
        "{out:#?}"
    );

    let off = Fixture::without("", &[BaselineLayer::Mounts]);
    let planted = off.repo.join("planted.so");
    std::fs::copy(&library, &planted).unwrap();
    off.probe(&["dlopen", planted.to_str().unwrap()])
        .assert_ok();
}

#[test]
fn a_memfd_cannot_be_executed() {
    let fx = Fixture::new("");
    // An executable memfd cannot be made at all.
    fx.probe(&["memfd-exec", "0"]).assert_denied("EACCES");
    // A sealed one can, and the kernel refuses to execute it.
    fx.probe(&["memfd-exec", "8"]).assert_denied("EACCES");
    let out = fx.probe(&["memfd-exec", "0"]);
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("memfd_exec")
        .unwrap();
    assert_eq!(item.status, Status::Enforced, "{item:?}");

    // Without the filter the copy runs: Landlock does not mediate memfds.
    let out = Fixture::without("", &[BaselineLayer::Memfd]).probe(&["memfd-exec", "0"]);
    assert!(
        out.stdout()
            .iter()
            .any(|l| l.contains("print memfd ran: ok")),
        "{out:#?}"
    );
}

#[test]
fn writable_roots_are_mounted_noexec_nosuid_nodev_in_the_job() {
    let fx = Fixture::new("");
    let out = fx.probe(&["mounts"]);
    let text = out.stdout().join("\n");
    let repo = fx.repo.to_str().unwrap();
    let mount = text
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(repo))
        .unwrap_or_else(|| panic!("no mount at {repo}:\n{text}"));
    let options = mount.split(' ').nth(5).unwrap();
    for flag in ["noexec", "nosuid", "nodev"] {
        assert!(options.split(',').any(|o| o == flag), "{mount}");
    }
    // The host's own view is untouched.
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host.lines().any(|l| l.split(' ').nth(4) == Some(repo)));
}

#[test]
fn an_execute_entry_inside_the_repository_stays_executable() {
    let fx = Fixture::new("\n[plugins.tests.filesystem]\nexecute = [\"{repo}/bin\"]\n");
    let tool = plant_probe(&fx.repo.join("bin"), "tool");
    let elsewhere = plant_probe(&fx.repo, "elsewhere");
    // The probe execs the planted copy: allowed where the policy said so.
    let out = fx.probe(&["exec", tool.to_str().unwrap(), "print", "from bin"]);
    assert!(
        out.stdout()
            .iter()
            .any(|l| l.contains("print from bin: ok")),
        "{out:#?}"
    );
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("write_xor_execute")
        .unwrap();
    assert!(item.detail.contains("bin"), "{item:?}");
    // Next to it, outside the entry, nothing runs.
    fx.probe(&["exec", elsewhere.to_str().unwrap(), "print", "no"])
        .assert_denied("EACCES");
}
