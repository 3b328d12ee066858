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

use crate::decision::{Plan, PlanPath};
use crate::sandbox::report::{EnforcementReport, Status};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, make_bitflags,
};
use std::os::fd::OwnedFd;
use std::path::Path;

/// Landlock as this host sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LandlockSupport {
    /// The ABI the kernel reports, or `None` when Landlock is unavailable.
    pub kernel_abi: Option<u32>,
    /// The ABI jobwarden uses: the kernel's, lowered by a test cap.
    pub abi: u32,
    /// The cap from `JOBWARDEN_LANDLOCK_ABI_MAX` or the builder, if any.
    pub capped_at: Option<u32>,
    /// Why Landlock is unavailable, when it is.
    pub unavailable: Option<String>,
}

const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

impl LandlockSupport {
    /// Asks the kernel which ABI it supports, then applies `cap`.
    pub fn detect(cap: Option<u32>) -> Self {
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
                "Landlock is switched off by JOBWARDEN_LANDLOCK_ABI_MAX=0 (a testing aid)"
                    .to_string(),
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

    fn abi_text(&self) -> String {
        match (self.kernel_abi, self.capped_at) {
            (Some(k), Some(c)) if c < k => {
                format!("Landlock ABI {} (kernel {k}, capped for testing)", self.abi)
            }
            _ => format!("Landlock ABI {}", self.abi),
        }
    }
}

/// A ruleset ready for `landlock_restrict_self` in the child.
#[derive(Debug)]
pub struct Built {
    /// The ruleset descriptor; `None` when Landlock is not used.
    pub fd: Option<OwnedFd>,
}

/// Why a ruleset could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the Landlock ruleset failed: {0}")]
pub struct BuildError(String);

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

/// Records in `report` what Landlock enforces for `plan` on this host.
pub fn describe(support: &LandlockSupport, plan: &Plan, report: &mut EnforcementReport) {
    let wants_network = !plan.network.unrestricted;
    if let Some(why) = &support.unavailable {
        report.add(
            "filesystem",
            Status::NotEnforced,
            "filesystem",
            why.clone(),
            true,
        );
        if wants_network {
            report.add("network", Status::NotEnforced, "network", why.clone(), true);
        } else {
            report.network_unrestricted();
        }
        report.add("scopes", Status::NotEnforced, "scopes", why.clone(), true);
        return;
    }
    let abi = ABI::from(support.abi as i32);
    let tcp = abi >= ABI::V4 && wants_network;
    let scoped = abi >= ABI::V6;
    let abi_text = support.abi_text();
    if abi >= ABI::V3 {
        let devices = if abi >= ABI::V5 {
            ""
        } else {
            "; device ioctls not restrictable below ABI 5"
        };
        report.add(
            "filesystem",
            Status::Enforced,
            format!("filesystem ({abi_text})"),
            format!("{abi_text}{devices}"),
            true,
        );
    } else {
        report.add(
            "filesystem",
            Status::Partial,
            "filesystem",
            format!("{abi_text}: truncating files is not restrictable below ABI 3"),
            true,
        );
    }
    if !wants_network {
        report.network_unrestricted();
    } else if tcp {
        let list = |ports: &[crate::policy::Sourced<u16>]| {
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
        report.add(
            "network",
            Status::Enforced,
            format!("tcp (connect {connect}, bind {bind})"),
            format!("TCP connect {connect}, bind {bind}; UDP not covered"),
            true,
        );
    } else {
        report.add(
            "network",
            Status::NotEnforced,
            "network",
            format!("{abi_text} < 4 cannot restrict TCP"),
            true,
        );
    }
    if scoped {
        report.add(
            "scopes",
            Status::Enforced,
            "signal and socket scopes",
            "signals and abstract UNIX sockets confined to the job",
            true,
        );
    } else {
        report.add(
            "scopes",
            Status::NotEnforced,
            "scopes",
            format!("{abi_text} < 6 cannot keep the job from signalling the host"),
            true,
        );
    }
}

/// Builds the ruleset for `plan`, with `extra_exec` (the loader, a script's
/// interpreter) executable too; paths that do not exist are listed in
/// `report.skipped_paths`.
pub fn build(
    support: &LandlockSupport,
    plan: &Plan,
    extra_exec: &[PlanPath],
    report: &mut EnforcementReport,
) -> Result<Built, BuildError> {
    let wants_network = !plan.network.unrestricted;
    if support.unavailable.is_some() {
        return Ok(Built { fd: None });
    }
    let abi = ABI::from(support.abi as i32);
    let fail = |e: landlock::RulesetError| BuildError(e.to_string());

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?;
    let tcp = abi >= ABI::V4 && wants_network;
    if tcp {
        ruleset = ruleset
            .handle_access(make_bitflags!(AccessNet::{BindTcp | ConnectTcp}))
            .map_err(fail)?;
    }
    let scoped = abi >= ABI::V6;
    if scoped {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(fail)?;
    }
    let mut created = ruleset.create().map_err(fail)?;

    let grants: [(&[PlanPath], BitFlags<AccessFs>); 4] = [
        (&plan.filesystem.read, read_rights()),
        (&plan.filesystem.read_write, write_rights(abi)),
        (&plan.filesystem.execute, exec_rights()),
        (extra_exec, exec_rights()),
    ];
    for (paths, rights) in grants {
        for entry in paths {
            match open_path(&entry.path) {
                Ok((fd, is_dir)) => {
                    let access = if is_dir {
                        rights
                    } else {
                        rights & AccessFs::from_file(abi)
                    };
                    created = created
                        .add_rule(PathBeneath::new(fd, access))
                        .map_err(fail)?;
                }
                Err(why) => {
                    let item = format!("{} ({}: {why})", entry.path.display(), entry.key);
                    if !report.skipped_paths.contains(&item) {
                        report.skipped_paths.push(item);
                    }
                }
            }
        }
    }
    if tcp {
        for port in &plan.network.connect {
            created = created
                .add_rule(NetPort::new(port.value, AccessNet::ConnectTcp))
                .map_err(fail)?;
        }
        for port in &plan.network.bind {
            created = created
                .add_rule(NetPort::new(port.value, AccessNet::BindTcp))
                .map_err(fail)?;
        }
    }

    let fd: Option<OwnedFd> = created.into();
    Ok(Built { fd })
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
