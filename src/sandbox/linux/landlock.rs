//! Landlock rulesets for one job, built in the parent.
//!
//! The invariant: the ruleset handles every filesystem right the kernel's
//! (possibly capped) ABI knows, so anything not granted is denied; grants
//! follow the plan exactly — read paths get no Execute (the `landlock`
//! crate's `from_read` includes it, so rights are spelled out here),
//! read-write paths get neither Execute nor device creation nor device
//! ioctls, and only `execute` paths (the program, its loader, helpers) may be
//! executed. The child only calls `landlock_restrict_self` on the returned
//! descriptor.

use super::spec::{Spec, above_stdio};
use crate::decision::PlanPath;
use crate::policy::Sourced;
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, make_bitflags,
};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Landlock as this host sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct LandlockSupport {
    /// The ABI the kernel reports, or `None` when Landlock is unavailable.
    pub kernel_abi: Option<u32>,
    /// The ABI jobwarden uses: the kernel's, lowered by a test cap.
    pub abi: u32,
    /// The testing cap (`landlock_abi_max`), if any.
    pub capped_at: Option<u32>,
    /// Why Landlock is unavailable, when it is.
    pub unavailable: Option<String>,
}

const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

impl LandlockSupport {
    /// Asks the kernel which ABI it supports, then applies `cap`.
    pub(crate) fn detect(cap: Option<u32>) -> Self {
        // SAFETY: landlock_create_ruleset with a NULL attribute, size 0 and
        // the VERSION flag only returns the ABI version; it reads no memory.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        let (kernel_abi, unavailable) = if ret > 0 {
            (Some(ret as u32), None)
        } else {
            let err = std::io::Error::last_os_error();
            let why = match err.raw_os_error() {
                Some(libc::ENOSYS) => "this kernel is built without Landlock".to_string(),
                Some(libc::EOPNOTSUPP) => {
                    "Landlock is disabled at boot (add `landlock` to the lsm= kernel parameter)"
                        .to_string()
                }
                _ => format!("landlock_create_ruleset failed: {err}"),
            };
            (None, Some(why))
        };
        let mut abi = kernel_abi.unwrap_or(0);
        if let Some(cap) = cap {
            abi = abi.min(cap);
        }
        let unavailable = match (unavailable, cap) {
            (Some(why), _) => Some(why),
            (None, Some(0)) => Some(
                "Landlock is switched off by the testing aid `landlock_abi_max = 0`".to_string(),
            ),
            (None, _) => None,
        };
        Self {
            kernel_abi,
            abi,
            capped_at: cap,
            unavailable,
        }
    }

    pub(crate) fn abi_text(&self) -> String {
        match (self.kernel_abi, self.capped_at) {
            (Some(k), Some(c)) if c < k => {
                format!("Landlock ABI {} (kernel {k}, capped for testing)", self.abi)
            }
            _ => format!("Landlock ABI {}", self.abi),
        }
    }
}

fn read_rights() -> BitFlags<AccessFs> {
    make_bitflags!(AccessFs::{ReadFile | ReadDir})
}

fn write_rights(abi: ABI) -> BitFlags<AccessFs> {
    let mut rights = read_rights()
        | make_bitflags!(AccessFs::{WriteFile | RemoveDir | RemoveFile | MakeDir | MakeReg | MakeSock | MakeFifo | MakeSym});
    if abi >= ABI::V2 {
        rights |= AccessFs::Refer;
    }
    if abi >= ABI::V3 {
        rights |= AccessFs::Truncate;
    }
    rights
}

fn exec_rights() -> BitFlags<AccessFs> {
    make_bitflags!(AccessFs::{Execute | ReadFile | ReadDir})
}

/// The Landlock layer.
pub(crate) struct Landlock;

/// What the ruleset handles (and so denies unless granted), decided once
/// from the plan and the ABI for both building and reporting.
#[derive(Debug, Clone, Copy)]
struct Handled {
    abi: ABI,
    /// Filesystem rights (all but in learn mode, which keeps only the
    /// scopes: a learning job still cannot signal the host).
    fs: bool,
    /// TCP bind and connect (ABI ≥ 4, and the plan restricts the network).
    tcp: bool,
    /// Signal and abstract UNIX socket scopes (ABI ≥ 6).
    scoped: bool,
}

impl Handled {
    fn for_job(job: &Job<'_>) -> Result<Self, String> {
        let support = &job.support.landlock;
        if let Some(why) = &support.unavailable {
            return Err(why.clone());
        }
        let abi = ABI::from(support.abi as i32);
        let learning = job.support.learning();
        Ok(Self {
            abi,
            fs: !learning,
            tcp: abi >= ABI::V4 && !job.plan.network.unrestricted && !learning,
            scoped: abi >= ABI::V6,
        })
    }
}

/// What the layer did or would do.
pub(crate) struct Outcome {
    /// What the ruleset handles, or why there is none.
    handled: Result<Handled, String>,
    /// Plan paths that grant nothing because they do not exist.
    skipped: Vec<String>,
}

/// The plan's grants, with the execute list the program layer found.
fn grants<'a>(job: &'a Job<'_>, abi: ABI) -> [(&'a [PlanPath], BitFlags<AccessFs>); 4] {
    let fs = &job.plan.filesystem;
    [
        (&fs.read, read_rights()),
        (&fs.read_write, write_rights(abi)),
        (&fs.execute, exec_rights()),
        (&job.facts.exec, exec_rights()),
    ]
}

fn skipped_item(entry: &PlanPath, why: &str) -> String {
    format!("{} ({}: {why})", entry.path.display(), entry.key)
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl Layer for Landlock {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        let handled = Handled::for_job(job);
        let mut skipped = Vec::new();
        if let Some(h) = handled.as_ref().ok().filter(|h| h.fs) {
            for (paths, _) in grants(job, h.abi) {
                for entry in paths {
                    if let Err(e) = std::fs::metadata(&entry.path) {
                        push_unique(&mut skipped, skipped_item(entry, &short_io(&e)));
                    }
                }
            }
        }
        Outcome { handled, skipped }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let h = match Handled::for_job(job) {
            Ok(h) => h,
            Err(why) => {
                return Ok(Outcome {
                    handled: Err(why),
                    skipped: Vec::new(),
                });
            }
        };
        let fail = |e: landlock::RulesetError| PrepareError::Landlock {
            source: Box::new(e),
        };
        if !h.fs && !h.scoped {
            // Learn mode below ABI 6: nothing left to restrict.
            return Ok(Outcome {
                handled: Ok(h),
                skipped: Vec::new(),
            });
        }
        let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        if h.fs {
            ruleset = ruleset
                .handle_access(AccessFs::from_all(h.abi))
                .map_err(fail)?;
        }
        if h.tcp {
            ruleset = ruleset
                .handle_access(make_bitflags!(AccessNet::{BindTcp | ConnectTcp}))
                .map_err(fail)?;
        }
        if h.scoped {
            ruleset = ruleset.scope(Scope::from_all(h.abi)).map_err(fail)?;
        }
        let mut created = ruleset.create().map_err(fail)?;
        let mut skipped = Vec::new();
        for (paths, rights) in grants(job, h.abi).into_iter().filter(|_| h.fs) {
            for entry in paths {
                match open_path(&entry.path) {
                    Ok((fd, is_dir)) => {
                        let access = if is_dir {
                            rights
                        } else {
                            rights & AccessFs::from_file(h.abi)
                        };
                        created = created
                            .add_rule(PathBeneath::new(fd, access))
                            .map_err(fail)?;
                    }
                    Err(why) => push_unique(&mut skipped, skipped_item(entry, &why)),
                }
            }
        }
        if h.tcp {
            for port in &job.plan.network.connect {
                created = created
                    .add_rule(NetPort::new(port.value, AccessNet::ConnectTcp))
                    .map_err(fail)?;
            }
            for port in &job.plan.network.bind {
                created = created
                    .add_rule(NetPort::new(port.value, AccessNet::BindTcp))
                    .map_err(fail)?;
            }
        }
        let fd: Option<OwnedFd> = created.into();
        spec.landlock = fd.map(above_stdio).transpose()?;
        Ok(Outcome {
            handled: Ok(h),
            skipped,
        })
    }

    fn report(&self, job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        let plan = job.plan;
        let wants_network = !plan.network.unrestricted;
        for item in &outcome.skipped {
            push_unique(&mut report.skipped_paths, item.clone());
        }
        let h = match &outcome.handled {
            Ok(h) => *h,
            Err(why) => {
                report.push(Item::not_enforced(ItemKind::Filesystem, why.clone()));
                report.push(if wants_network {
                    Item::not_enforced(ItemKind::Network, why.clone())
                } else {
                    Item::network_unrestricted()
                });
                report.push(Item::not_enforced(ItemKind::Scopes, why.clone()));
                return;
            }
        };
        let abi_text = job.support.landlock.abi_text();
        let learning = super::support::LEARN_MODE;
        report.push(if !h.fs {
            Item::not_enforced(ItemKind::Filesystem, learning)
        } else if h.abi >= ABI::V3 {
            let devices = if h.abi >= ABI::V5 {
                ""
            } else {
                "; device ioctls not restrictable below ABI 5"
            };
            Item::enforced(
                ItemKind::Filesystem,
                format!("filesystem ({abi_text})"),
                format!("{abi_text}{devices}"),
            )
        } else {
            Item::new(
                ItemKind::Filesystem,
                Status::Partial,
                "filesystem",
                format!("{abi_text}: truncating files is not restrictable below ABI 3"),
                Requirement::Required,
            )
        });
        report.push(if !wants_network {
            Item::network_unrestricted()
        } else if !h.fs {
            Item::not_enforced(ItemKind::Network, learning)
        } else if h.tcp {
            let list = |ports: &[Sourced<u16>]| {
                if ports.is_empty() {
                    "none".to_string()
                } else {
                    ports
                        .iter()
                        .map(|p| p.value.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                }
            };
            let (connect, bind) = (list(&plan.network.connect), list(&plan.network.bind));
            Item::enforced(
                ItemKind::Network,
                format!("tcp (connect {connect}, bind {bind})"),
                format!("TCP connect {connect}, bind {bind}; UDP not covered"),
            )
        } else {
            Item::not_enforced(
                ItemKind::Network,
                format!("{abi_text} < 4 cannot restrict TCP"),
            )
        });
        report.push(if h.scoped {
            Item::enforced(
                ItemKind::Scopes,
                "signal and socket scopes",
                "signals and abstract UNIX sockets confined to the job",
            )
        } else {
            Item::not_enforced(
                ItemKind::Scopes,
                format!("{abi_text} < 6 cannot keep the job from signalling the host"),
            )
        });
    }
}

/// Opens `path` for a rule; returns the descriptor and whether it is a
/// directory (one path lookup: the type comes from the open descriptor).
fn open_path(path: &Path) -> Result<(PathFd, bool), String> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = PathFd::new(path).map_err(|e| match e {
        landlock::PathFdError::OpenCall { source, .. } => short_io(&source),
        other => other.to_string(),
    })?;
    // SAFETY: fstat on a descriptor we own, into a zeroed local.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_fd().as_raw_fd(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok((fd, stat.st_mode & libc::S_IFMT == libc::S_IFDIR))
}

fn short_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        _ => err.to_string(),
    }
}
