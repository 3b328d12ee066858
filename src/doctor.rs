//! `jobwarden doctor`: what this machine can really enforce.
//!
//! Facts are probed, not guessed from versions: each check runs
//! `jobwarden-probe` as a real job under a purpose-made policy and looks at
//! what the kernel answered (a refused read, connect or signal; a fork
//! stopped at a pids limit; an allocation killed by a memory limit; an
//! escaped process killed with its job). Without the probe binary the
//! detected support is shown, marked unverified.

use crate::contract::{JobEvent, JobSpawnRequest};
use crate::decision::{DecisionContext, decide};
use crate::host::{JobEnd, PluginHandle, PolicyJobHost};
use crate::policy::{Enforcement, Policy};
use crate::sandbox::os::{HostSupport, SupportOptions, assess};
use crate::sandbox::{Item, Status};
use serde::Serialize;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The kernel refused as it should.
    Works,
    /// The job was able to do what it should not.
    Fails,
    /// Detected, not probed (no probe binary).
    Unverified,
    /// This machine does not offer it.
    Unavailable,
}

/// One checked capability.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

/// What this machine can enforce.
#[derive(Debug, Clone, Serialize)]
pub struct MachineReport {
    pub platform: String,
    pub root: bool,
    pub support: HostSupport,
    /// `dev.tty.legacy_tiocsti`, when the kernel has it.
    pub legacy_tiocsti: Option<bool>,
    pub checks: Vec<Check>,
}

/// What one plugin × binary of a policy would get here.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyCheck {
    pub plugin: String,
    pub binary: String,
    /// `None` when the binary is not installed here (the reason in `note`).
    pub items: Option<Vec<Item>>,
    pub note: Option<String>,
}

/// A policy's needs against this machine.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub enforcement: Enforcement,
    pub checks: Vec<PolicyCheck>,
    /// True when `enforcement = "required"` and some job would be refused here.
    pub would_refuse: bool,
}

/// Probes the machine. `probe` is the `jobwarden-probe` binary, if found.
pub fn probe_machine(probe: Option<&Path>, options: &SupportOptions) -> MachineReport {
    let support = HostSupport::detect(options);
    // SAFETY: uname into a local struct.
    let platform = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) == 0 {
            let field = |f: &[libc::c_char]| {
                std::ffi::CStr::from_ptr(f.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            };
            format!(
                "{} {} {}",
                field(&uts.sysname),
                field(&uts.release),
                field(&uts.machine)
            )
        } else {
            "linux".into()
        }
    };
    let legacy_tiocsti = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .ok()
        .map(|v| v.trim() == "1");
    let mut checks = Vec::new();
    match probe {
        Some(probe) => checks.extend(live_checks(probe, options, &support)),
        None => checks.extend(detected_checks(&support)),
    }
    checks.push(Check {
        name: "subreaper",
        verdict: if support.subreaper {
            Verdict::Works
        } else {
            Verdict::Unavailable
        },
        detail: if support.subreaper {
            "PR_SET_CHILD_SUBREAPER is set: orphans of jobs come back to the host to be reaped"
                .into()
        } else {
            "PR_SET_CHILD_SUBREAPER failed: orphans of jobs go to PID 1".into()
        },
    });
    MachineReport {
        platform,
        root: support.is_root,
        support,
        legacy_tiocsti,
        checks,
    }
}

fn detected_checks(support: &HostSupport) -> Vec<Check> {
    let abi = support.landlock.abi;
    let landlock = |name, min: u32, what: &str| Check {
        name,
        verdict: if support.landlock.unavailable.is_none() && abi >= min {
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
            verdict: if support.cgroups.pids().is_some() {
                Verdict::Unverified
            } else {
                Verdict::Unavailable
            },
            detail: support
                .cgroups
                .pids()
                .unwrap_or("no pids cgroup")
                .to_string(),
        },
        Check {
            name: "memory_limit",
            verdict: if support.cgroups.memory().is_some() {
                Verdict::Unverified
            } else {
                Verdict::Unavailable
            },
            detail: support
                .cgroups
                .memory()
                .unwrap_or("no memory cgroup")
                .to_string(),
        },
        Check {
            name: "tree_kill",
            verdict: if support.cgroups.tree_kill().is_some() {
                Verdict::Unverified
            } else {
                Verdict::Unavailable
            },
            detail: support
                .cgroups
                .tree_kill()
                .unwrap_or("no job cgroups")
                .to_string(),
        },
    ]
}

fn doctor_policy(probe: &Path, extra: &str) -> String {
    let probe_dir = probe.parent().unwrap_or(Path::new("/")).display();
    format!(
        r#"
version = 1
enforcement = "best_effort"
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "{probe_dir}"]
read_write = ["{{tmp}}"]
[limits]
timeout_secs = 30
kill_grace_secs = 0.2
[binaries.probe]
path = "{}"
[plugins.doctor]
binaries = ["probe"]
{extra}
"#,
        probe.display()
    )
}

/// Runs one probe job under a policy with `extra` appended; returns the
/// end, the probe's stdout and the enforcement report items.
fn probe_job(
    probe: &Path,
    options: &SupportOptions,
    extra: &str,
    args: &[String],
    timeout: u64,
) -> Option<(JobEnd, String, Vec<Item>)> {
    let policy = Policy::from_toml("<doctor>", &doctor_policy(probe, extra))
        .ok()?
        .policy;
    let dir = tempfile::tempdir().ok()?;
    let mut builder = PolicyJobHost::builder(policy, dir.path()).tmp_dir(dir.path());
    if let Some(abi) = options.landlock_abi_max {
        builder = builder.landlock_abi_max(abi);
    }
    if options.no_cgroups {
        builder = builder.without_cgroups();
    }
    let host = builder.build().ok()?;
    let plugin = host.plugin("doctor");
    let request = JobSpawnRequest::new("probe", args.iter().cloned()).with_timeout_secs(timeout);
    let (id, end, output) = run(&plugin, request)?;
    let items = host.enforcement(&id).map(|r| r.items).unwrap_or_default();
    Some((end, output, items))
}

/// Runs one job to its end; returns its id, how it ended and its stdout.
fn run(plugin: &PluginHandle, request: JobSpawnRequest) -> Option<(String, JobEnd, String)> {
    use crate::JobHost;
    let id = plugin.spawn(request);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut output = String::new();
    loop {
        for event in plugin.wait_events(Duration::from_millis(100)) {
            match event {
                JobEvent::JobLogLine { data, .. } if data.stream == "stdout" => {
                    output.push_str(&data.line);
                    output.push('\n');
                }
                e if e.is_terminal() => return Some((id.clone(), plugin.end(&id)?, output)),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

fn live_checks(probe: &Path, options: &SupportOptions, support: &HostSupport) -> Vec<Check> {
    let mut checks = Vec::new();
    let refused = |name: &'static str,
                   what: &str,
                   errno: i32,
                   result: Option<(JobEnd, String, Vec<Item>)>| {
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
    };
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
    if support.landlock.abi >= 4 && support.landlock.unavailable.is_none() {
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
                support.landlock.abi
            ),
        });
    }
    if support.landlock.abi >= 6 && support.landlock.unavailable.is_none() {
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
                support.landlock.abi
            ),
        });
    }
    checks.push(match support.cgroups.pids() {
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
    checks.push(match support.cgroups.memory() {
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
        .cgroups
        .tree_kill()
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
    checks
}

fn denial(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.split_once(": denied: ").map(|(_, why)| why.to_string()))
        .unwrap_or_else(|| output.trim().to_string())
}

/// For each plugin and each binary it may run: what the job would get here.
pub fn assess_policy(policy: &Policy, support: &HostSupport, repo: &Path) -> PolicyReport {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let env: Vec<(String, String)> = Vec::new();
    let tmp = std::env::temp_dir().join("jobwarden-doctor-job");
    let ctx = DecisionContext {
        repo,
        home: home.as_deref(),
        job_tmp: &tmp,
        host_env: &env,
    };
    let mut checks = Vec::new();
    let mut would_refuse = false;
    for plugin in policy.plugins.values().chain(policy.catch_all.iter()) {
        for binary in &plugin.binaries {
            let request = JobSpawnRequest::new(binary.value.clone(), Vec::<String>::new());
            let (items, note) = match decide(policy, &plugin.name, &request, &ctx) {
                Ok(plan) => {
                    let report = assess(&plan, support);
                    if policy.enforcement == Enforcement::Required
                        && !report.missing_required().is_empty()
                    {
                        would_refuse = true;
                    }
                    (Some(report.items), None)
                }
                Err(denial) => (None, Some(denial.reason)),
            };
            checks.push(PolicyCheck {
                plugin: plugin.name.clone(),
                binary: binary.value.clone(),
                items,
                note,
            });
        }
    }
    PolicyReport {
        policy: policy.origin.name.clone(),
        enforcement: policy.enforcement,
        checks,
        would_refuse,
    }
}

/// True when an item is weaker than asked.
pub fn weaker(item: &Item) -> bool {
    matches!(item.status, Status::Partial | Status::NotEnforced)
}
