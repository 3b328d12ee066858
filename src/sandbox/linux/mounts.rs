//! The mount layer: the job gets its own mount namespace, in which
//!
//! - **nothing it can write can be executed**: every writable root (`{repo}`,
//!   `{tmp}`, each `read_write` directory or file) is mounted `noexec`,
//!   `nosuid`, `nodev`, so the kernel refuses `execve`, the ELF loader
//!   (`ld.so ./file`), `dlopen` and `mmap(PROT_EXEC)` of those files — what
//!   Landlock's Execute right alone does not cover. A `filesystem.execute`
//!   entry at or beneath a writable root is mounted executable again (still
//!   `nosuid`, `nodev`): the policy chose it, and the report names it;
//! - **protected paths stay read-only** inside writable roots: the
//!   repository's `.git` (all of it, or with `filesystem.git = "commit"`
//!   only what runs code or changes configuration: `hooks`, `config`,
//!   `info`, the same in `modules/*`), the hooks directory `core.hooksPath`
//!   names, nested repositories' `.git`, and `.gitmodules`, `.vscode`,
//!   `.idea`, `.envrc`, plus `filesystem.protected`. A protected directory
//!   that does not exist yet gets an empty placeholder for the job's
//!   lifetime, so it cannot be created either (a hook that appears later);
//!   the placeholder is removed when the last job holding it ends, in this
//!   host or any other (`holds.rs`: removing a directory detaches every
//!   mount on it in every namespace, so another host's job would lose its
//!   protection).
//!
//! The namespace is made with `unshare(CLONE_NEWNS)` when the host holds
//! `CAP_SYS_ADMIN`, else inside an unprivileged user namespace mapping the
//! host's uid and gid to themselves. Mounts are done in the child with the
//! new mount API on descriptors opened with `RESOLVE_NO_SYMLINKS`, so a
//! path swapped for a symlink after this layer looked at it fails the spawn
//! instead of redirecting a mount; the job then cannot undo them (no
//! capabilities, and the namespaces layer refuses the mount API). The
//! working directory is opened again inside the new namespace.

use super::holds::{CannotCreate, Hold, MAX_HOLDS};
use super::protected::{Presence, Protected, protected_paths};
use super::spec::Spec;
use super::support::MountNamespace;
use crate::decision::{GitAccess, PlanPath};
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use crate::sandbox::{BaselineLayer, PrepareError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(crate) struct Mounts;

/// `MOUNT_ATTR_*` of `<linux/mount.h>`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

const WRITABLE: u64 = MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
const PROTECTED: u64 = WRITABLE | MOUNT_ATTR_RDONLY;

/// One mount the child makes: a recursive bind of `path` onto itself with
/// `set` and `clear` attributes.
#[derive(Debug)]
pub(crate) struct MountOp {
    pub path: CString,
    /// The path must be a directory (else a regular file).
    pub dir: bool,
    pub set: u64,
    pub clear: u64,
}

/// The child's namespace instructions.
#[derive(Debug)]
pub(crate) struct Namespace {
    /// `CLONE_NEWNS`, with `CLONE_NEWUSER` when unprivileged.
    pub unshare_flags: libc::c_int,
    /// `uid_map` and `gid_map` contents, when in a user namespace.
    pub maps: Option<(CString, CString)>,
    pub ops: Vec<MountOp>,
    /// The repository and the working directory relative to it, opened
    /// again inside the namespace.
    pub repo: CString,
    pub cwd: Option<CString>,
}

/// What the layer does or would do.
pub(crate) struct Outcome {
    namespace: Result<MountNamespace, String>,
    writable: Vec<PathBuf>,
    executable: Vec<PlanPath>,
    protected: Vec<Protected>,
    git: GitAccess,
    git_key: String,
    /// Learn mode: protected paths only, nothing mounted `noexec`.
    learning: bool,
}

impl Mounts {
    fn outcome(job: &Job<'_>) -> Outcome {
        let plan = job.plan;
        let namespace = match job.support.switched_off(BaselineLayer::Mounts) {
            Some(why) => Err(why),
            None => job.support.mount_namespace.clone(),
        };
        let learning = job.support.learning();
        let mut writable = writable_roots(&plan.filesystem.read_write);
        // Learn mode lifts Landlock, so the repository is writable whatever
        // the plan says: its protected paths are kept read-only all the
        // same (a learn run plants no hook), but nothing is made `noexec`,
        // so what the job executes from a writable root is seen, not refused.
        let protect_in = if learning {
            let mut roots = writable.clone();
            roots.push(plan.repo.clone());
            writable.clear();
            roots
        } else {
            writable.clone()
        };
        let executable = plan
            .filesystem
            .execute
            .iter()
            .chain(&job.facts.exec)
            .filter_map(|entry| {
                let path = entry.path.canonicalize().ok()?;
                beneath_any(&path, &writable).then(|| PlanPath {
                    path,
                    key: entry.key.clone(),
                })
            })
            .filter(|entry| !already_noexec(&entry.path))
            .collect();
        let protected = protected_paths(job, &protect_in);
        Outcome {
            namespace,
            writable,
            executable,
            protected,
            git: plan.filesystem.git.value,
            git_key: plan.filesystem.git.key.clone(),
            learning,
        }
    }

    /// Tells the layers after this one (observation) which paths the job
    /// finds read-only.
    fn record_protected(job: &mut Job<'_>, outcome: &Outcome) {
        if outcome.namespace.is_err() {
            return;
        }
        job.facts.protected = outcome
            .protected
            .iter()
            .filter(|p| matches!(p.state, Presence::Present | Presence::Placeholder))
            .map(|p| PlanPath {
                path: p.path.clone(),
                // `.git` falls under `filesystem.git`; unset, its key says
                // only "built-in default", which names nothing to change.
                key: if p.key == crate::policy::BUILTIN {
                    format!("`filesystem.git` is \"{}\" by default", outcome.git.name())
                } else {
                    p.key.clone()
                },
            })
            .collect();
    }
}

impl Layer for Mounts {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        let outcome = Self::outcome(job);
        Self::record_protected(job, &outcome);
        outcome
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let mut outcome = Self::outcome(job);
        let Ok(namespace) = outcome.namespace else {
            return Ok(outcome);
        };
        let cstring = |path: &Path| {
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| PrepareError::NulByte { what: "mount path" })
        };
        let mut ops = Vec::new();
        for root in &outcome.writable {
            ops.push(MountOp {
                path: cstring(root)?,
                dir: root.is_dir(),
                set: WRITABLE,
                clear: 0,
            });
        }
        for entry in &outcome.executable {
            ops.push(MountOp {
                path: cstring(&entry.path)?,
                dir: entry.path.is_dir(),
                set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                clear: MOUNT_ATTR_NOEXEC,
            });
        }
        for protected in &mut outcome.protected {
            // A missing directory gets a placeholder, and a placeholder
            // (made here or by another host) is held for the job, so that
            // no host removes it under the job's mount.
            let holdable = protected.placeholder
                && (protected.state == Presence::Placeholder
                    || protected.state == Presence::Present && protected.dir);
            if holdable {
                match Hold::take(&protected.path) {
                    Ok(Some(hold)) => {
                        if spec.holds.len() == MAX_HOLDS {
                            return Err(PrepareError::TooManyPlaceholders {
                                max: MAX_HOLDS,
                                path: protected.path.clone(),
                            });
                        }
                        spec.holds.push(hold);
                        protected.dir = true;
                        protected.state = Presence::Placeholder;
                    }
                    // The user's: protect it as it is.
                    Ok(None) => protected.state = Presence::Present,
                    // The host cannot create it, so neither can the job.
                    Err(CannotCreate) => protected.state = Presence::Absent,
                }
            }
            if matches!(protected.state, Presence::Present | Presence::Placeholder) {
                ops.push(MountOp {
                    path: cstring(&protected.path)?,
                    dir: protected.dir,
                    set: PROTECTED,
                    clear: 0,
                });
            }
        }
        let (uid, gid) = job.support.ids;
        let (unshare_flags, maps) = match namespace {
            MountNamespace::Privileged => (libc::CLONE_NEWNS, None),
            MountNamespace::UserNamespace => {
                // Inside its own user namespace the child holds every
                // capability until exec: drop them all before.
                spec.drop_capabilities_to = Some(job.support.cap_last);
                let map =
                    |id: u32| CString::new(format!("{id} {id} 1\n")).expect("digits hold no NUL");
                (
                    libc::CLONE_NEWUSER | libc::CLONE_NEWNS,
                    Some((map(uid), map(gid))),
                )
            }
        };
        Self::record_protected(job, &outcome);
        let plan = job.plan;
        let cwd = plan
            .cwd
            .strip_prefix(&plan.repo)
            .ok()
            .filter(|rel| !rel.as_os_str().is_empty())
            .map(cstring)
            .transpose()?;
        spec.namespace = Some(Namespace {
            unshare_flags,
            maps,
            ops,
            repo: cstring(&plan.repo)?,
            cwd,
        });
        Ok(outcome)
    }

    fn report(&self, _job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        let how = match &outcome.namespace {
            Ok(MountNamespace::Privileged) => "own mount namespace",
            Ok(MountNamespace::UserNamespace) => "own user and mount namespace",
            Err(why) => {
                let why = format!("no mount namespace for the job: {why}");
                report.push(Item::not_enforced(ItemKind::WriteXorExecute, why.clone()));
                report.push(Item::not_enforced(ItemKind::ProtectedPaths, why));
                return;
            }
        };
        let list = |paths: &mut dyn Iterator<Item = String>| paths.collect::<Vec<_>>().join(", ");
        if outcome.learning {
            report.push(Item::not_enforced(
                ItemKind::WriteXorExecute,
                super::support::LEARN_MODE,
            ));
        }
        let mut detail = format!(
            "{} mounted noexec,nosuid,nodev ({how})",
            if outcome.writable.is_empty() {
                "no writable root".to_string()
            } else {
                list(&mut outcome.writable.iter().map(|p| p.display().to_string()))
            }
        );
        if !outcome.executable.is_empty() {
            detail.push_str(&format!(
                "; executable by the policy's choice: {}",
                list(&mut outcome.executable.iter().map(|e| format!(
                    "{} ({})",
                    e.path.display(),
                    e.key
                )))
            ));
        }
        if !outcome.learning {
            report.push(Item::enforced(
                ItemKind::WriteXorExecute,
                if outcome.executable.is_empty() {
                    "writable not executable".to_string()
                } else {
                    "writable not executable (with exceptions)".to_string()
                },
                detail,
            ));
        }

        let of = |state: fn(&Presence) -> bool| {
            list(
                &mut outcome
                    .protected
                    .iter()
                    .filter(|p| state(&p.state))
                    .map(|p| p.path.display().to_string()),
            )
        };
        let mut parts = vec![format!("read-only: {}", of(|s| *s == Presence::Present))];
        let held = of(|s| *s == Presence::Placeholder);
        if !held.is_empty() {
            parts.push(format!(
                "held by an empty placeholder while the job runs: {held}"
            ));
        }
        let absent = of(|s| *s == Presence::Absent);
        if !absent.is_empty() {
            parts.push(format!(
                "not present (nothing runs them by itself): {absent}"
            ));
        }
        parts.push(format!(
            ".git {} (`{}`)",
            match outcome.git {
                GitAccess::ReadOnly => "read-only",
                GitAccess::Commit => "writable but for hooks, config and info",
                GitAccess::Writable => "writable",
            },
            outcome.git_key
        ));
        let unprotectable: Vec<String> = outcome
            .protected
            .iter()
            .filter_map(|p| match &p.state {
                Presence::Unprotectable(why) => Some(format!("{} ({why})", p.path.display())),
                _ => None,
            })
            .collect();
        report.push(if unprotectable.is_empty() {
            Item::enforced(
                ItemKind::ProtectedPaths,
                "protected paths",
                parts.join("; "),
            )
        } else {
            Item::new(
                ItemKind::ProtectedPaths,
                Status::Partial,
                "protected paths",
                format!(
                    "cannot protect {}; {}",
                    unprotectable.join(", "),
                    parts.join("; ")
                ),
                Requirement::Required,
            )
        });
    }
}

/// The plan's writable directories and regular files, canonical, without
/// those beneath another (a recursive mount covers them).
fn writable_roots(entries: &[PlanPath]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = entries
        .iter()
        .filter_map(|e| {
            let meta = std::fs::metadata(&e.path).ok()?;
            (meta.is_dir() || meta.is_file())
                .then(|| e.path.canonicalize().ok())
                .flatten()
        })
        .collect();
    roots.sort();
    roots.dedup();
    let all = roots.clone();
    roots.retain(|r| !all.iter().any(|other| other != r && r.starts_with(other)));
    roots
}

pub(crate) fn beneath_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// Whether `path` is on a filesystem mounted `noexec` already (the kernel
/// would refuse executing it anyway, and the flag cannot be cleared).
fn already_noexec(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs into a zeroed local with a NUL-terminated path.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statvfs(c.as_ptr(), &mut vfs) == 0 && vfs.f_flag & libc::ST_NOEXEC != 0 }
}
