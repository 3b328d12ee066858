//! `jobwarden doctor`: probes with real jobs and reports what this machine
//! enforces, matching what the host really uses.

// Linux only: probes Landlock and cgroups.
#![cfg(target_os = "linux")]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::process::Command;

fn doctor(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .arg("doctor")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn kernel_abi() -> u32 {
    // SAFETY: the version query of landlock_create_ruleset reads nothing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    ret.max(0) as u32
}

#[test]
fn doctor_probes_landlock_and_cgroups_for_real() {
    let (code, json) = doctor(&["--json"], &[]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let machine = &report["machine"];
    let abi = kernel_abi();
    assert_eq!(machine["support"]["landlock"]["abi"], abi);
    let verdict = |name: &str| {
        machine["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["verdict"].as_str().unwrap().to_string())
            .unwrap()
    };
    if abi >= 6 {
        assert_eq!(verdict("filesystem"), "works", "{json}");
        assert_eq!(verdict("tcp"), "works", "{json}");
        assert_eq!(verdict("scopes"), "works", "{json}");
    } else {
        skipped_part!(
            "landlock-abi-6",
            "this kernel has Landlock ABI {abi}: the filesystem, TCP and scope probes were not checked"
        );
    }
    // The cgroup facts match what a job's report says it got.
    let support = &machine["support"]["cgroups"];
    let has_pids = !support["v1_pids"].is_null()
        || support["v2_controllers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "pids");
    assert_eq!(verdict("pids_limit") == "works", has_pids, "{json}");
    // Verdicts are lower-case words: works, fails, unverified, unavailable.
    assert_eq!(verdict("tree_kill"), "works", "{json}");
    assert!(
        !json.contains("\"fails\""),
        "no probe may show confinement failing: {json}"
    );
    assert_eq!(code, Some(0));
}

#[test]
fn doctor_refuses_a_required_policy_the_machine_cannot_honour() {
    let (code, out) = doctor(
        &[
            "--policy",
            "policy/strict-ci.toml",
            "--simulate-landlock-abi",
            "3",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("network NOT enforced: Landlock ABI 3"),
        "{out}"
    );
    assert!(out.contains("such jobs would be refused"), "{out}");
}

#[test]
fn doctor_accepts_a_policy_this_machine_honours() {
    if kernel_abi() < 6 {
        skip!(
            "landlock-abi-6",
            "this kernel has Landlock ABI {}: the default policy requires scopes",
            kernel_abi()
        );
    }
    let (code, out) = doctor(&["--policy", "policy/default.toml"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cli → git                    everything it asks is enforced here"),
        "{out}"
    );
}
