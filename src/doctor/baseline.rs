//! Doctor checks of the Linux kernel baseline, each a real attempt by a
//! probe job that the kernel must refuse: a UDP datagram, a pathname UNIX
//! socket outside the job's grants, an executable memfd, a writable file
//! through the ELF loader, a write into `.git`, a setuid bit, a user
//! namespace.

use super::checks::refused;
use super::{Check, Verdict, probe_job};
use crate::host::JobEnd;
use crate::sandbox::{HostSupport, SupportOptions};
use std::path::Path;

pub(super) fn checks(probe: &Path, options: &SupportOptions, support: &HostSupport) -> Vec<Check> {
    let job = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        probe_job(probe, options, "", &args, 10)
    };
    let mut checks = Vec::new();

    let listener = std::net::UdpSocket::bind("127.0.0.1:0").ok();
    let target = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or_else(|| "127.0.0.1:9".to_string(), |a| a.to_string());
    checks.push(refused(
        "sockets",
        &format!("sending a UDP datagram to {target} (seccomp on socket families)"),
        libc::EACCES,
        job(&["udp-send", &target]),
    ));

    let dir = tempfile::tempdir().ok();
    let socket = dir.as_ref().map(|d| d.path().join("doctor.sock"));
    let unix = socket
        .as_ref()
        .and_then(|p| std::os::unix::net::UnixListener::bind(p).ok());
    checks.push(match (&socket, unix) {
        (Some(path), Some(_listener)) => refused(
            "unix_sockets",
            &format!(
                "connecting to {} in a directory it was granted nothing in",
                path.display()
            ),
            libc::EACCES,
            job(&["unix-connect", &path.display().to_string()]),
        ),
        _ => Check {
            name: "unix_sockets",
            verdict: Verdict::Unverified,
            detail: "cannot make a UNIX socket to try".into(),
        },
    });

    checks.push(refused(
        "memfd_exec",
        "creating an executable memfd",
        libc::EACCES,
        job(&["memfd-exec", "0"]),
    ));

    match support.mount_namespace() {
        Ok(how) => {
            // The probe copies itself into its repository and runs the copy
            // through the ELF loader: the kernel must refuse the mapping.
            checks.push(match job(&["load-copy", "."]) {
                Some((JobEnd::Exited { code: 127 }, _, _)) => Check {
                    name: "write_xor_execute",
                    verdict: Verdict::Works,
                    detail: format!(
                        "a copy the job wrote could not be run through the ELF loader (noexec mount in {how})"
                    ),
                },
                Some((end, out, _)) => Check {
                    name: "write_xor_execute",
                    verdict: Verdict::Fails,
                    detail: format!(
                        "a copy the job wrote ran through the ELF loader: {end:?} {}",
                        out.trim()
                    ),
                },
                None => Check {
                    name: "write_xor_execute",
                    verdict: Verdict::Unverified,
                    detail: "the probe job could not run".into(),
                },
            });
            checks.push(refused(
                "protected_paths",
                "writing .git/config in its repository",
                libc::EROFS,
                job(&["write", ".git/config"]),
            ));
        }
        Err(why) => {
            for name in ["write_xor_execute", "protected_paths"] {
                checks.push(Check {
                    name,
                    verdict: Verdict::Unavailable,
                    detail: format!("jobs get no mount namespace here: {why}"),
                });
            }
        }
    }

    checks.push(refused(
        "setuid_bits",
        "creating a setuid file",
        libc::EPERM,
        job(&["create", "./doctor-setuid", "4755"]),
    ));
    checks.push(refused(
        "namespaces",
        "creating a user namespace",
        libc::EPERM,
        job(&["unshare"]),
    ));
    checks
}
