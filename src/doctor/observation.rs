//! Doctor checks for explaining denials: whether this machine could log
//! Landlock's denials itself (ABI 7 with the audit subsystem on and
//! readable), and whether jobwarden's own observation (seccomp user
//! notification, used by `run --why`, `learn` and `jobwarden test`) works,
//! proven by a probe job whose refused read must come back explained.

use super::{Check, Verdict, doctor_policy, run};
use crate::contract::JobSpawnRequest;
use crate::host::PolicyJobHost;
use crate::policy::Policy;
use crate::sandbox::{HostSupport, SupportOptions};
use std::path::Path;

/// Both checks.
pub(super) fn checks(
    probe: Option<&Path>,
    options: &SupportOptions,
    support: &HostSupport,
) -> Vec<Check> {
    vec![denial_log(support), observation(probe, options)]
}

/// Whether the kernel could log Landlock denials here. jobwarden never
/// turns the audit subsystem on (a system-wide switch no sandbox library
/// should flip) and does not read it: it says what the machine offers.
fn denial_log(support: &HostSupport) -> Check {
    let abi = support.landlock_abi().unwrap_or(0);
    let (verdict, state) = if abi < 7 {
        (
            Verdict::Unavailable,
            format!("Landlock ABI {abi} < 7 logs no denials"),
        )
    } else {
        match audit_enabled() {
            Ok(true) => (
                Verdict::Unverified,
                "Landlock ABI 7 with the audit subsystem on: denials reach the audit log (jobwarden does not read it)".to_string(),
            ),
            Ok(false) => (
                Verdict::Unavailable,
                "Landlock ABI 7, but the audit subsystem is off (audit_enabled=0): no denial is logged, and jobwarden will not turn audit on for the whole system".to_string(),
            ),
            Err(why) => (Verdict::Unavailable, format!("Landlock ABI 7; {why}")),
        }
    };
    Check {
        name: "denial_log",
        verdict,
        detail: format!(
            "{state}; `run --why` and `learn` observe jobs instead (see `observation`)"
        ),
    }
}

/// Runs a probe whose read the policy refuses, on a host that explains
/// denials: the refusal must come back, named with its key.
fn observation(probe: Option<&Path>, options: &SupportOptions) -> Check {
    let name = "observation";
    let Some(probe) = probe else {
        return Check {
            name,
            verdict: Verdict::Unverified,
            detail: "seccomp user notification (not probed: jobwarden-probe not found)".into(),
        };
    };
    let target = ["/etc/hostname", "/etc/passwd", "/etc/os-release"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/etc/passwd");
    let outcome = (|| {
        let policy = Policy::from_toml("<doctor>", &doctor_policy(probe, ""))
            .ok()?
            .policy;
        let dir = tempfile::tempdir().ok()?;
        let host = PolicyJobHost::builder(policy, dir.path())
            .tmp_dir(dir.path())
            .support_options(options.clone())
            .explain_denials()
            .build()
            .ok()?;
        let plugin = host.plugin("doctor");
        let (id, _, _) = run(&plugin, JobSpawnRequest::new("probe", ["read", target]))?;
        let item = host
            .enforcement(&id)?
            .item("observation")
            .map(|i| (i.status, i.detail.clone()));
        Some((plugin.observed(&id), item))
    })();
    let (verdict, detail) = match outcome {
        None => (Verdict::Fails, "the probe job could not be run".to_string()),
        Some((_, Some((status, why)))) if status.is_weaker() => (Verdict::Unavailable, why),
        Some((Some(observed), _)) => match observed.refusals.first() {
            Some(refusal) => (
                Verdict::Works,
                format!(
                    "seccomp user notification: a probe's refused read came back as \"{refusal}\""
                ),
            ),
            None => (
                Verdict::Fails,
                format!("a probe's read of {target} was refused, but observation did not see it"),
            ),
        },
        Some((None, _)) => (Verdict::Fails, "the probe job was not observed".to_string()),
    };
    Check {
        name,
        verdict,
        detail,
    }
}

/// Whether the audit subsystem is on, asked over netlink (`AUDIT_GET`,
/// which needs `CAP_AUDIT_CONTROL`), else from the kernel's command line.
fn audit_enabled() -> Result<bool, String> {
    match audit_get() {
        Ok(enabled) => Ok(enabled),
        Err(why) => {
            let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
            if cmdline.split_whitespace().any(|w| w == "audit=0") {
                Ok(false)
            } else if cmdline.split_whitespace().any(|w| w == "audit=1") {
                Ok(true)
            } else {
                Err(why)
            }
        }
    }
}

const NETLINK_AUDIT: libc::c_int = 9;
const AUDIT_GET: u16 = 1000;
const NLMSG_ERROR: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

fn audit_get() -> Result<bool, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2); the result is checked and owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_AUDIT,
        )
    };
    if fd < 0 {
        return Err(format!(
            "the kernel has no audit subsystem to ask ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    let request = NlMsgHdr {
        len: std::mem::size_of::<NlMsgHdr>() as u32,
        kind: AUDIT_GET,
        flags: libc::NLM_F_REQUEST as u16,
        seq: 1,
        pid: 0,
    };
    let mut reply = [0u8; 512];
    // SAFETY: setsockopt, send and recv on our socket with locals of the
    // stated sizes.
    let n = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        if libc::send(
            fd.as_raw_fd(),
            &request as *const NlMsgHdr as *const libc::c_void,
            std::mem::size_of::<NlMsgHdr>(),
            0,
        ) < 0
        {
            return Err(format!(
                "cannot ask the audit subsystem ({})",
                std::io::Error::last_os_error()
            ));
        }
        libc::recv(
            fd.as_raw_fd(),
            reply.as_mut_ptr() as *mut libc::c_void,
            reply.len(),
            0,
        )
    };
    let header = std::mem::size_of::<NlMsgHdr>();
    if n < (header + 8) as isize {
        return Err("the audit subsystem did not answer".into());
    }
    let word = |at: usize| u32::from_ne_bytes(reply[at..at + 4].try_into().unwrap_or([0; 4]));
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind == NLMSG_ERROR {
        let error = word(header) as i32;
        return Err(if error == -libc::EPERM {
            "whether audit is on cannot be asked without CAP_AUDIT_CONTROL".into()
        } else {
            format!(
                "the audit subsystem refused to answer ({})",
                std::io::Error::from_raw_os_error(-error)
            )
        });
    }
    // struct audit_status: mask, enabled, ...
    Ok(word(header + 4) != 0)
}
