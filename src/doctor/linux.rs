//! Doctor checks on Linux: Landlock classes, cgroup limits and tree kill,
//! each proven by a probe job the kernel must refuse or stop.

use super::{Check, Verdict, probe_job};
use crate::host::JobEnd;
use crate::sandbox::Item;
use crate::sandbox::{HostSupport, SupportOptions, TreeMechanism};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `dev.tty.legacy_tiocsti`, when the kernel has the switch.
pub fn legacy_tiocsti() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .ok()
        .map(|v| v.trim() == "1")
}

/// Every check: probed with real jobs when the probe binary is there,
/// else what detection says, unverified.
pub fn machine_checks(
    probe: Option<&Path>,
    options: &SupportOptions,
    support: &HostSupport,
) -> Vec<Check> {
    let mut checks = match probe {
        Some(probe) => live_checks(probe, options, support),
        None => detected_checks(support),
    };
    checks.extend(super::observation::checks(probe, options, support));
    checks.push(Check {
        name: "subreaper",
        verdict: if support.subreaper() {
            Verdict::Works
        } else {
            Verdict::Unavailable
        },
        detail: if support.subreaper() {
            "PR_SET_CHILD_SUBREAPER is set: orphans of jobs come back to the host to be reaped"
                .into()
        } else {
            "PR_SET_CHILD_SUBREAPER failed: orphans of jobs go to PID 1".into()
        },
    });
    checks
}

fn detected_checks(support: &HostSupport) -> Vec<Check> {
    let abi = support.landlock_abi().unwrap_or(0);
    let landlock = |name, min: u32, what: &str| Check {
        name,
        verdict: if abi >= min {
            Verdict::Unverified
        } else {
            Verdict::Unavailable
        },
        detail: format!(
            "{what} needs Landlock ABI {min}; this kernel has {abi} (not probed: jobwarden-probe not found)"
        ),
    };
    vec![
        landlock("filesystem", 1, "filesystem rules"),
        landlock("tcp", 4, "TCP rules"),
        landlock("scopes", 6, "signal and socket scopes"),
        Check {
            name: "pids_limit",
            verdict: if support.tree_mechanism(TreeMechanism::Processes).is_some() {
                Verdict::Unverified
            } else {
                Verdict::Unavailable
            },
            detail: support
                .tree_mechanism(TreeMechanism::Processes)
                .unwrap_or("no pids cgroup")
                .to_string(),
        },
        Check {
            name: "memory_limit",
            verdict: if support.tree_mechanism(TreeMechanism::Memory).is_some() {
                Verdict::Unverified
            } else {
                Verdict::Unavailable
            },
            detail: support
                .tree_mechanism(TreeMechanism::Memory)
                .unwrap_or("no memory cgroup")
                .to_string(),
        },
        Check {
            name: "tree_kill",
            verdict: if support.tree_mechanism(TreeMechanism::Kill).is_some() {
                Verdict::Unverified
            } else {
                Verdict::Unavailable
            },
            detail: support
                .tree_mechanism(TreeMechanism::Kill)
                .unwrap_or("no job cgroups")
                .to_string(),
        },
    ]
}

fn live_checks(probe: &Path, options: &SupportOptions, support: &HostSupport) -> Vec<Check> {
    let mut checks = Vec::new();
    let target = ["/etc/hostname", "/etc/passwd", "/etc/os-release"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/etc/passwd");
    checks.push(refused(
        "filesystem",
        &format!("reading {target}"),
        libc::EACCES,
        probe_job(probe, options, "", &["read".into(), target.into()], 10),
    ));
    if support.landlock_abi().unwrap_or(0) >= 4 {
        let listener = TcpListener::bind("127.0.0.1:0").ok();
        let port = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or(9, |a| a.port());
        checks.push(refused(
            "tcp",
            &format!("connecting to 127.0.0.1:{port}"),
            libc::EACCES,
            probe_job(
                probe,
                options,
                "",
                &["connect".into(), format!("127.0.0.1:{port}")],
                10,
            ),
        ));
    } else {
        checks.push(Check {
            name: "tcp",
            verdict: Verdict::Unavailable,
            detail: format!(
                "Landlock ABI {} < 4 cannot restrict TCP",
                support.landlock_abi().unwrap_or(0)
            ),
        });
    }
    if support.landlock_abi().unwrap_or(0) >= 6 {
        checks.push(refused(
            "scopes",
            "signalling the host",
            libc::EPERM,
            probe_job(
                probe,
                options,
                "",
                &["kill".into(), std::process::id().to_string(), "0".into()],
                10,
            ),
        ));
    } else {
        checks.push(Check {
            name: "scopes",
            verdict: Verdict::Unavailable,
            detail: format!(
                "Landlock ABI {} < 6 cannot keep jobs from signalling the host",
                support.landlock_abi().unwrap_or(0)
            ),
        });
    }
    checks.push(match support.tree_mechanism(TreeMechanism::Processes) {
        Some(how) => refused(
            "pids_limit",
            &format!("forking past a limit of 4 processes ({how})"),
            libc::EAGAIN,
            probe_job(
                probe,
                options,
                "[plugins.doctor.limits]\nprocesses = 4\n",
                &["fork".into(), "20".into()],
                10,
            ),
        ),
        None => Check {
            name: "pids_limit",
            verdict: Verdict::Unavailable,
            detail: "no writable pids cgroup: process limits fall back to RLIMIT_NPROC".into(),
        },
    });
    checks.push(match support.tree_mechanism(TreeMechanism::Memory) {
        Some(how) => {
            let result = probe_job(
                probe,
                options,
                "[plugins.doctor.limits]\nmemory = \"32 MiB\"\n",
                &["alloc".into(), "512".into()],
                20,
            );
            match result {
                Some((JobEnd::Signaled { signal }, _, _)) if signal == libc::SIGKILL => Check {
                    name: "memory_limit",
                    verdict: Verdict::Works,
                    detail: format!(
                        "a probe allocating 512 MiB under a 32 MiB limit was killed ({how})"
                    ),
                },
                other => Check {
                    name: "memory_limit",
                    verdict: Verdict::Fails,
                    detail: format!(
                        "a probe allocating 512 MiB under a 32 MiB limit was not killed: {:?}",
                        other.map(|o| o.0)
                    ),
                },
            }
        }
        None => Check {
            name: "memory_limit",
            verdict: Verdict::Unavailable,
            detail: "no writable memory cgroup: memory limits fall back to RLIMIT_AS per process"
                .into(),
        },
    });
    // Tree kill: a setsid-escaped grandchild must die with its job.
    let result = probe_job(probe, options, "", &["escape".into(), "30".into()], 1);
    let escaped = result.as_ref().and_then(|(_, out, _)| {
        out.lines().find_map(|l| {
            l.strip_prefix("probe: escaped pid ")?
                .trim()
                .parse::<i32>()
                .ok()
        })
    });
    let how = support
        .tree_mechanism(TreeMechanism::Kill)
        .unwrap_or("process group and /proc scan (no job cgroup)");
    checks.push(match escaped {
        Some(pid) => {
            let gone = (0..100).any(|_| {
                std::thread::sleep(Duration::from_millis(20));
                !PathBuf::from(format!("/proc/{pid}")).exists()
            });
            Check {
                name: "tree_kill",
                verdict: if gone { Verdict::Works } else { Verdict::Fails },
                detail: if gone {
                    format!("a setsid-escaped process died with its job ({how})")
                } else {
                    format!("a setsid-escaped process (pid {pid}) survived its job ({how})")
                },
            }
        }
        None => Check {
            name: "tree_kill",
            verdict: Verdict::Unverified,
            detail: "the escape probe did not run".into(),
        },
    });
    checks.extend(super::baseline::checks(probe, options, support));
    checks
}

/// A check that passes when the probe job was refused with `errno`.
pub(super) fn refused(
    name: &'static str,
    what: &str,
    errno: i32,
    result: Option<(JobEnd, String, Vec<Item>)>,
) -> Check {
    let (verdict, detail) = match result {
        Some((JobEnd::Exited { code }, out, _)) if code == errno => (
            Verdict::Works,
            format!("a probe job was refused {what}: {}", denial(&out)),
        ),
        Some((JobEnd::Exited { code: 0 }, _, _)) => {
            (Verdict::Fails, format!("a probe job succeeded {what}"))
        }
        Some((end, out, _)) => (
            Verdict::Fails,
            format!("unexpected result {what}: {end:?} {}", out.trim()),
        ),
        None => (
            Verdict::Unverified,
            "the probe job could not run".to_string(),
        ),
    };
    Check {
        name,
        verdict,
        detail,
    }
}

fn denial(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.split_once(": denied: ").map(|(_, why)| why.to_string()))
        .unwrap_or_else(|| output.trim().to_string())
}
