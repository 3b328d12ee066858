//! What every platform's `os` module shares: detection knobs, the errors of
//! preparing a job, the binary hash cache, and how a process ended.

use crate::decision::{Denial, Plan};
use crate::policy::Sourced;
use crate::sandbox::report::EnforcementReport;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::time::Duration;

/// Knobs for detection, mostly for tests that simulate weaker machines.
#[derive(Debug, Clone, Default)]
pub struct SupportOptions {
    /// Pretend the kernel's Landlock ABI is at most this (Linux).
    pub landlock_abi_max: Option<u32>,
    /// Do not use cgroups (Linux).
    pub no_cgroups: bool,
}

impl SupportOptions {
    /// Reads the testing aids `JOBWARDEN_LANDLOCK_ABI_MAX` and `JOBWARDEN_CGROUP=off`.
    pub fn from_env() -> Self {
        Self {
            landlock_abi_max: std::env::var("JOBWARDEN_LANDLOCK_ABI_MAX")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            no_cgroups: std::env::var("JOBWARDEN_CGROUP").is_ok_and(|v| v.trim() == "off"),
        }
    }
}

/// Why a job could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    /// A policy rule refused it at start time (a binary hash mismatch).
    #[error("{0}")]
    Denied(Denial),
    /// `enforcement = "required"` and something cannot be enforced here.
    #[error("{reason}")]
    EnforcementRequired {
        reason: String,
        report: Box<EnforcementReport>,
    },
    /// A system call failed while preparing.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl From<io::Error> for PrepareError {
    fn from(source: io::Error) -> Self {
        PrepareError::Io {
            what: "preparing the job".into(),
            source,
        }
    }
}

/// An error constructor naming what failed.
pub fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PrepareError {
    let what = what.into();
    move |source| PrepareError::Io { what, source }
}

/// Hashes of binaries, keyed by file identity, so a pinned binary is hashed
/// once per change rather than once per job.
#[derive(Debug, Default)]
pub struct HashCache {
    entries: HashMap<super::os::FileIdentity, [u8; 32]>,
}

impl HashCache {
    /// The sha256 of `file`, from the cache while its identity is unchanged.
    pub fn get_or_hash(&mut self, file: &File) -> io::Result<[u8; 32]> {
        let Some(key) = super::os::file_identity(&file.metadata()?) else {
            return sha256_of(file);
        };
        if let Some(hash) = self.entries.get(&key) {
            return Ok(*hash);
        }
        let hash = sha256_of(file)?;
        if self.entries.len() > 256 {
            self.entries.clear();
        }
        self.entries.insert(key, hash);
        Ok(hash)
    }
}

/// Refuses the job when `file` (the program, open) does not hash to the
/// policy's pin.
pub fn check_pin(
    plan: &Plan,
    pin: &Sourced<[u8; 32]>,
    file: &File,
    hashes: &mut HashCache,
) -> Result<(), PrepareError> {
    let actual = hashes
        .get_or_hash(file)
        .map_err(io_err(format!("cannot hash {}", plan.program.display())))?;
    if actual == pin.value {
        return Ok(());
    }
    Err(PrepareError::Denied(Denial::new(
        pin.key.clone(),
        format!(
            "{} has sha256 {}, but the policy pins {}",
            plan.program.display(),
            crate::policy::hex(&actual),
            crate::policy::hex(&pin.value)
        ),
        format!("check the new file, then update `{}`", pin.key),
    )))
}

/// sha256 of an open file, streamed.
pub fn sha256_of(mut file: &File) -> io::Result<[u8; 32]> {
    use sha2::Digest;
    use std::io::Read;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// How a job's first process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it (Unix).
    pub signal: Option<i32>,
    /// CPU time in user mode (of it and the children it waited for).
    pub user: Duration,
    /// CPU time in kernel mode.
    pub system: Duration,
    /// Peak resident memory, when the platform reports it.
    pub max_rss: u64,
    /// Another part of the program collected the status (`waitpid(-1)`).
    pub lost: bool,
}

/// Signals whose meaning jobwarden explains, where the platform has them.
#[derive(Debug, Clone, Copy)]
pub struct Signals {
    pub kill: Option<i32>,
    pub cpu_limit: Option<i32>,
    pub file_size_limit: Option<i32>,
}
