//! Linux: Landlock, rlimits, cgroups, a new session, no capabilities, the
//! opt-in seccomp filter, and a spawn that costs the same whatever the
//! host's size.
//!
//! The layers (`LAYERS`) prepare everything in the parent — every
//! allocation, path lookup, hash, ruleset and cgroup — into a [`Spec`]; the
//! child in `spawn.rs` only applies what was prepared, with raw system
//! calls, in a fixed order.

mod cgroup;
mod cgroup_pool;
mod clone3;
mod containment;
mod delegation;
mod elf;
mod enter;
mod filter;
mod holds;
mod landlock;
mod memfd;
mod mounts;
mod namespaces;
mod notify;
mod observe;
mod privileges;
mod procs;
mod program;
mod protected;
mod seccomp;
mod session;
mod setuid;
mod sockets;
mod spawn;
mod spec;
mod support;
mod systemd;
mod tree;
mod userns;

pub(crate) use crate::sandbox::unix::io;
pub(crate) use notify::{Observer, ObserverState};
pub(crate) use spawn::Spawner;
pub(crate) use spec::Spec;
pub(crate) use support::Support;
pub(crate) use tree::{HostProcess, Reaper, Tree};

use crate::sandbox::layer::Enforce;
use crate::sandbox::unix::rlimits::Rlimits;

/// The platform's name in reports.
pub(crate) const PLATFORM: &str = "linux";

/// The enforcement layers, in the order they prepare a job. The child
/// applies their parts in its own fixed order (see `spawn.rs`).
pub(crate) static LAYERS: &[&dyn Enforce] = &[
    &program::Program,
    &containment::Containment,
    &Rlimits {
        address_space_fallback: true,
        no_memory_limit: "no memory cgroup here",
        no_process_limit: "no pids cgroup here",
    },
    &session::Session,
    &privileges::Privileges,
    &mounts::Mounts,
    // The kernel baseline: each adds its rules to the seccomp filter.
    &sockets::Sockets,
    &memfd::Memfd,
    &setuid::Setuid,
    &namespaces::Namespaces,
    // Compiles every rule above (and the opt-in list): after them.
    &seccomp::Seccomp,
    &landlock::Landlock,
    // Explains refusals with what the layers above granted: last.
    &observe::Observe,
];

/// Prints a skip and counts it like the integration tests' skips
/// (tests/support/skip.rs), for `.ci/skips`.
#[cfg(test)]
pub(super) fn test_skip(requirement: &str, reason: &str) {
    let test = std::thread::current().name().unwrap_or("spawn").to_string();
    let line = format!("jobwarden::{test}\t{requirement}\t{reason}\n");
    eprint!("SKIPPED {line}");
    if let Some(log) = std::env::var_os("JOBWARDEN_SKIP_LOG") {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("the skip log is writable");
    }
}

/// A real job's plan, for the unit tests that prepare and start one:
/// `program args` for plugin `t` under `policy` (TOML), the repository a
/// fresh directory in `dir` and `{tmp}` beside it.
#[cfg(test)]
pub(super) fn test_plan(
    dir: &std::path::Path,
    policy: &str,
    program: &str,
    args: &[&str],
) -> crate::decision::Plan {
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let repo = repo.canonicalize().unwrap();
    let policy = crate::policy::Policy::from_toml("test.toml", policy)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy;
    let job_tmp = dir.join("job");
    let ctx = crate::decision::DecisionContext {
        repo: &repo,
        home: None,
        job_tmp: &job_tmp,
        host_env: &[],
    };
    let request = crate::contract::JobSpawnRequest::new(program, args.iter().copied());
    crate::decision::decide(&policy, "t", &request, &ctx).unwrap_or_else(|e| panic!("{e:?}"))
}
