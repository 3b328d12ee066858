//! macOS: the same policy and host, with the confinement macOS lets an
//! unprivileged library apply — a new session and process group, rlimits,
//! the policy's environment, working directory and binary, stdin
//! `/dev/null` and no inherited descriptors — and an honest report of the
//! rest. There is no Landlock, no cgroup, no parent-death signal and no
//! `no_new_privs` here, so filesystem, network, signal scoping, memory, and
//! survival of a killed host are reported "not enforced on macOS" (and a
//! `required` policy refuses the job, naming them).
//!
//! Spawning uses `std::process::Command` with a `pre_exec` hook, so it
//! forks: its cost grows with the host's memory, unlike Linux's `CLONE_VM`
//! spawner. Exits are found by polling `wait4` every 10 ms (no pidfd).

mod program;
mod spawn;
mod tree;

pub(crate) use crate::sandbox::unix::io;
pub(crate) use crate::sandbox::unreaped::{HostProcess, Reaper, Snapshot};
pub(crate) use spawn::{Spawner, Spec};
pub(crate) use tree::Tree;

use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Enforce, Job, Layer};
use crate::sandbox::report::{EnforcementReport, ItemKind, Status};
use crate::sandbox::support::{SupportOptions, TreeMechanism};
use crate::sandbox::unix::report_session;
use crate::sandbox::unix::rlimits::Rlimits;
use crate::sandbox::unsupported::{Gap, Unsupported};

/// The platform's name in reports.
pub(crate) const PLATFORM: &str = "macos";

/// The enforcement layers, in the order they prepare a job.
pub(crate) static LAYERS: &[&dyn Enforce] = &[
    &program::Program,
    &Rlimits {
        address_space_fallback: false,
        no_memory_limit: "not enforced on macOS, which ignores RLIMIT_AS and RLIMIT_DATA and has no cgroups",
        no_process_limit: "no cgroups on macOS",
    },
    &Session,
    &Unsupported(&[
        Gap {
            kind: ItemKind::Filesystem,
            status: Status::NotEnforced,
            short: "filesystem",
            why: "not enforced on macOS: jobwarden has no filesystem sandbox there (Landlock is Linux's)",
        },
        Gap {
            kind: ItemKind::Network,
            status: Status::NotEnforced,
            short: "network",
            why: "not enforced on macOS: jobwarden has no network sandbox there",
        },
        Gap {
            kind: ItemKind::WriteXorExecute,
            status: Status::NotEnforced,
            short: "writable not executable",
            why: "not enforced on macOS: what a job writes in the repository can be executed",
        },
        Gap {
            kind: ItemKind::ProtectedPaths,
            status: Status::NotEnforced,
            short: "protected paths",
            why: "not enforced on macOS: .git hooks and config, .vscode and the like stay writable inside a writable repository",
        },
        Gap {
            kind: ItemKind::Sockets,
            status: Status::NotEnforced,
            short: "sockets",
            why: "not enforced on macOS: a job may create any socket (UDP, raw, …)",
        },
        Gap {
            kind: ItemKind::UnixSockets,
            status: Status::NotEnforced,
            short: "unix sockets",
            why: "not enforced on macOS: a job may connect to any UNIX socket it can reach",
        },
        Gap {
            kind: ItemKind::SetuidBits,
            status: Status::NotEnforced,
            short: "no setuid bits",
            why: "not enforced on macOS: a job may set setuid or setgid bits on files it owns",
        },
        Gap {
            kind: ItemKind::Scopes,
            status: Status::NotEnforced,
            short: "scopes",
            why: "not enforced on macOS: a job may signal other processes of the same user",
        },
        Gap {
            kind: ItemKind::ParentDeath,
            status: Status::NotEnforced,
            short: "dies with host",
            why: "not enforced on macOS (no parent-death signal): if the host is killed, its jobs run on",
        },
        Gap {
            kind: ItemKind::NoNewPrivs,
            status: Status::NotEnforced,
            short: "no_new_privs",
            why: "not enforced on macOS: a setuid program run by the job still gains its owner's rights",
        },
        Gap {
            kind: ItemKind::TreeCleanup,
            status: Status::Partial,
            short: "tree cleanup (process group)",
            why: "process group only: a process that leaves it (setsid, setpgid) outlives the job",
        },
        Gap {
            kind: ItemKind::Seccomp,
            status: Status::NotEnforced,
            short: "seccomp",
            why: "not enforced on macOS: seccomp is Linux's",
        },
    ]),
];

/// What this machine lets jobwarden enforce.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Support {
    /// Whether the host runs as root (RLIMIT_NPROC is then ignored).
    pub is_root: bool,
}

impl Support {
    pub fn detect(_options: &SupportOptions) -> Self {
        Self {
            // SAFETY: geteuid has no preconditions.
            is_root: unsafe { libc::geteuid() } == 0,
        }
    }

    pub fn is_root(&self) -> bool {
        self.is_root
    }

    pub fn landlock_abi(&self) -> Option<u32> {
        None
    }

    pub fn tree_mechanism(&self, _what: TreeMechanism) -> Option<&'static str> {
        None
    }

    pub fn subreaper(&self) -> bool {
        false
    }

    pub fn mount_namespace(&self) -> Result<&'static str, String> {
        Err(format!("no mount namespace on {PLATFORM}"))
    }

    /// What was detected, as labelled lines for `jobwarden doctor`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "user",
                if self.is_root { "root" } else { "not root" }.to_string(),
            ),
            (
                "confinement",
                "session, rlimits, environment, working directory; no filesystem or network sandbox on macOS".into(),
            ),
        ]
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        vec!["on macOS only `enforcement = \"best_effort\"` policies can run jobs: filesystem and network confinement are not available".into()]
    }

    /// Nothing to clean up from earlier hosts: macOS jobs leave no kernel objects.
    pub fn clean_stale(&self, _host: HostProcess) {}
}

/// The session layer: `setsid` and only stdio inherited, done by the
/// `pre_exec` hook (see `spawn.rs`), which always runs.
struct Session;

impl Layer for Session {
    type Outcome = ();

    fn predict(&self, _job: &mut Job<'_>) {}

    fn apply(&self, _job: &mut Job<'_>, _spec: &mut Spec) -> Result<(), PrepareError> {
        Ok(())
    }

    fn report(&self, _job: &Job<'_>, _: &(), report: &mut EnforcementReport) {
        report_session(report);
    }
}
