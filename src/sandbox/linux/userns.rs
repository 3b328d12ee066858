//! How a job gets its own mount namespace, found out by doing what a job's
//! child does, and why it cannot when it cannot.
//!
//! The invariant: `MountNamespace::detect` answers yes only when a
//! throwaway child has done what every job's child will do: entered a new
//! (user and) mount namespace, written its one-line id maps and changed
//! the propagation of `/`. Creating a user namespace is not enough: under
//! Ubuntu's AppArmor restriction (`kernel.apparmor_restrict_unprivileged_userns
//! = 1`) an unconfined program may create one but holds no capability in
//! it, so its first mount fails. `packaging/apparmor/jobwarden` is the
//! profile that lifts the restriction for jobwarden's binary.

use std::ffi::{CStr, CString};

/// How a job gets its own mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MountNamespace {
    /// The host holds `CAP_SYS_ADMIN`: `unshare(CLONE_NEWNS)`.
    Privileged,
    /// An unprivileged user namespace owns it: `unshare(CLONE_NEWUSER |
    /// CLONE_NEWNS)` with the host's uid and gid mapped to themselves.
    UserNamespace,
}

impl MountNamespace {
    /// Finds out by trying: the new mount API must exist (Linux ≥ 5.12 for
    /// `mount_setattr`), and without `CAP_SYS_ADMIN` a throwaway child must
    /// be able to do in a new user namespace what a job's child does
    /// (distributions restrict unprivileged user namespaces: a sysctl,
    /// AppArmor).
    pub fn detect(has_sys_admin: bool, ids: (libc::uid_t, libc::gid_t)) -> Result<Self, String> {
        // SAFETY: mount_setattr with an invalid descriptor and no attribute
        // only validates its arguments; it touches no memory.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                c"".as_ptr(),
                0,
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
        if ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            return Err("this kernel has no mount_setattr (Linux 5.12 or newer is needed)".into());
        }
        if has_sys_admin {
            return Ok(Self::Privileged);
        }
        match probe_user_namespace(ids) {
            Ok(()) => Ok(Self::UserNamespace),
            Err(e) => Err(format!(
                "the host is not root and cannot use a user namespace ({e}){}",
                userns_hint()
            )),
        }
    }
}

/// Whether AppArmor restricts unprivileged user namespaces (Ubuntu 23.10
/// and later): only programs whose profile has the `userns` permission get
/// capabilities in one.
pub(crate) fn apparmor_restricts_userns() -> bool {
    read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
}

/// What `doctor` says when AppArmor keeps jobs from their mount namespace.
pub(crate) fn apparmor_tip(why: &str) -> String {
    let program = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/bin/jobwarden".into());
    format!(
        "jobs get no mount namespace here ({why}), so write_xor_execute and protected_paths are NOT enforced and `required` confinement refuses every job.\n                \
         AppArmor allows user namespaces only to programs whose profile grants `userns`; jobwarden ships one (packaging/apparmor/jobwarden). For this binary:\n                \
         `jobwarden doctor --apparmor-profile | sudo tee /etc/apparmor.d/jobwarden && sudo apparmor_parser -r /etc/apparmor.d/jobwarden`\n                \
         (it names {program}; a program embedding jobwarden needs the same profile with its own path)"
    )
}

/// Why unprivileged user namespaces may be off, from the usual switches.
fn userns_hint() -> String {
    if apparmor_restricts_userns() {
        "; AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): install jobwarden's AppArmor profile (packaging/apparmor/jobwarden; `jobwarden doctor` shows how)".into()
    } else if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        "; kernel.unprivileged_userns_clone=0".into()
    } else if read_sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        "; user.max_user_namespaces=0".into()
    } else {
        String::new()
    }
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|v| v.trim().to_string())
}

/// What the probe child needs, prepared by the parent, and what it found.
struct Probe {
    uid_map: CString,
    gid_map: CString,
    /// The step that failed (0: none) and its errno, written by the child.
    failed: (libc::c_int, libc::c_int),
}

const STEPS: [&str; 4] = [
    "",
    "writing /proc/self/setgroups",
    "writing its uid_map or gid_map",
    "making / a slave mount",
];

/// Runs a child in a new user and mount namespace that does what a job's
/// child does there: deny setgroups, map its ids, change `/`'s propagation.
fn probe_user_namespace(ids: (libc::uid_t, libc::gid_t)) -> std::io::Result<()> {
    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the parent's `Probe`, alive and not touched by
        // the parent while it is suspended (CLONE_VFORK); only raw system
        // calls on its prepared strings run here.
        unsafe {
            let probe = &mut *(arg as *mut Probe);
            let step = if write_file(c"/proc/self/setgroups", b"deny").is_err() {
                1
            } else if write_file(c"/proc/self/uid_map", probe.uid_map.as_bytes()).is_err()
                || write_file(c"/proc/self/gid_map", probe.gid_map.as_bytes()).is_err()
            {
                2
            } else if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) != 0
            {
                3
            } else {
                0
            };
            if step != 0 {
                probe.failed = (step, *libc::__errno_location());
            }
            0
        }
    }
    let map = |id: u32| CString::new(format!("{id} {id} 1\n")).expect("digits hold no NUL");
    let mut probe = Probe {
        uid_map: map(ids.0),
        gid_map: map(ids.1),
        failed: (0, 0),
    };
    let mut stack = vec![0u8; 16 * 1024];
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: CLONE_VM | CLONE_VFORK suspends this thread until the child
    // has exited; the stack and `probe` outlive it.
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM
                | libc::CLONE_VFORK
                | libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::SIGCHLD,
            &mut probe as *mut Probe as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: reaps the child just created.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match probe.failed {
        (0, _) => Ok(()),
        (step, errno) => Err(std::io::Error::other(format!(
            "a child in a new user namespace failed {}: {}",
            STEPS[step as usize],
            std::io::Error::from_raw_os_error(errno)
        ))),
    }
}

/// Writes `text` to `path` with raw system calls (the probe child).
unsafe fn write_file(path: &CStr, text: &[u8]) -> Result<(), ()> {
    // SAFETY: open/write/close with a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(());
        }
        let written = libc::write(fd, text.as_ptr() as *const libc::c_void, text.len());
        libc::close(fd);
        if written == text.len() as isize {
            Ok(())
        } else {
            Err(())
        }
    }
}
