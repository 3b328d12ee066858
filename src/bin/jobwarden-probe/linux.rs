//! Actions only Linux has: every system call the seccomp layer denies,
//! Landlock's scopes and device rules, inherited descriptors, terminals.
//!
//! The seccomp actions are chosen so that the kernel *without* the filter
//! gives a distinctive answer on a root-without-capabilities job (a bad
//! pointer's EFAULT, an invalid flag's EINVAL, or success on our own
//! process), wherever the kernel checks arguments before privileges: then
//! EPERM can only come from the filter. Calls the kernel refuses for lack
//! of privilege before looking at anything (`pivot_root`, `fsopen`,
//! `fsmount`, `fspick`, `move_mount`) are run under `in-userns`, which
//! first makes a user and mount namespace where the job holds
//! `CAP_SYS_ADMIN` — something the filter itself forbids.

use super::{cstr, error_name, last_error};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
/// A flag no mount call knows: the kernel answers EINVAL, after its
/// privilege check where it has one.
const BOGUS_FLAG: libc::c_uint = 0x8000_0000;
/// `landlock_create_ruleset` flag asking for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

pub fn action(name: &str, rest: &[String]) -> Option<io::Result<String>> {
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    // SAFETY (all calls below): raw system calls with integer arguments,
    // pointers to locals that outlive the call, or deliberately invalid
    // pointers the kernel checks and refuses with EFAULT.
    let ret = |r: libc::c_long| last_error(r as i32, String::new());
    let bad_pointer = std::ptr::dangling::<libc::c_char>();
    Some(match name {
        "ptrace-me" => ret(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }),
        "vm-read" => vm_copy(false),
        "vm-write" => vm_copy(true),
        "process-madvise" => process_madvise(),
        "pidfd-getfd" => {
            // A copy of our own stdin through a pidfd of ourselves.
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
            if pidfd < 0 {
                ret(pidfd)
            } else {
                ret(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) })
            }
        }
        "perf" => perf(),
        // BPF_MAP_CREATE with an attribute pointer the kernel cannot read:
        // EFAULT before any privilege check.
        "bpf" => ret(unsafe { libc::syscall(libc::SYS_bpf, 0, bad_pointer, 128) }),
        // UFFD_USER_MODE_ONLY: allowed for unprivileged users.
        "userfaultfd" => ret(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | 1) }),
        // An operation keyctl does not know: EOPNOTSUPP.
        "keyctl" => ret(unsafe { libc::syscall(libc::SYS_keyctl, 9999, 0, 0, 0, 0) }),
        // A key type the kernel cannot read: EFAULT.
        "add-key" => ret(unsafe {
            libc::syscall(
                libc::SYS_add_key,
                bad_pointer,
                bad_pointer,
                std::ptr::null::<u8>(),
                0,
                -2,
            )
        }),
        "request-key" => ret(unsafe {
            libc::syscall(
                libc::SYS_request_key,
                bad_pointer,
                bad_pointer,
                std::ptr::null::<u8>(),
                0,
            )
        }),
        // A file system type the kernel cannot read: EFAULT, copied before
        // the privilege check.
        "mount" => {
            let (src, target) = (cstr("none"), cstr(arg(0)));
            ret(unsafe {
                libc::syscall(
                    libc::SYS_mount,
                    src.as_ptr(),
                    target.as_ptr(),
                    bad_pointer,
                    0,
                    std::ptr::null::<u8>(),
                )
            })
        }
        // Flags are checked before the privilege: EINVAL.
        "umount2" => {
            let target = cstr("/nonexistent-jobwarden-probe");
            ret(unsafe { libc::syscall(libc::SYS_umount2, target.as_ptr(), BOGUS_FLAG) })
        }
        "pivot-root" => {
            let path = cstr("/nonexistent-jobwarden-probe");
            ret(unsafe { libc::syscall(libc::SYS_pivot_root, path.as_ptr(), path.as_ptr()) })
        }
        "fsopen" => {
            let fs = cstr("tmpfs");
            ret(unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), 0) })
        }
        // No privilege check at all: a negative descriptor is EINVAL.
        "fsconfig" => {
            let key = cstr("ro");
            ret(unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    -1,
                    FSCONFIG_SET_FLAG,
                    key.as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                )
            })
        }
        "fsmount" => ret(unsafe { libc::syscall(libc::SYS_fsmount, -1, 0, 0) }),
        "fspick" => {
            let root = cstr("/");
            ret(unsafe {
                libc::syscall(libc::SYS_fspick, libc::AT_FDCWD, root.as_ptr(), BOGUS_FLAG)
            })
        }
        "move-mount" => {
            let empty = cstr("");
            ret(unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    -1,
                    empty.as_ptr(),
                    -1,
                    empty.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH | BOGUS_FLAG,
                )
            })
        }
        // Without OPEN_TREE_CLONE this is an O_PATH open: no privilege needed.
        "open-tree" => {
            let root = cstr("/");
            ret(unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    root.as_ptr(),
                    libc::O_CLOEXEC,
                )
            })
        }
        // Flags and size are checked before the privilege: EINVAL.
        "mount-setattr" => {
            let root = cstr("/");
            ret(unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    root.as_ptr(),
                    BOGUS_FLAG,
                    std::ptr::null::<u8>(),
                    0,
                )
            })
        }
        // unshare FLAGS (default CLONE_NEWUSER); `unshare 0` is a no-op
        // the kernel always allows.
        "unshare" => {
            let flags = if rest.is_empty() {
                libc::CLONE_NEWUSER as u64
            } else {
                number(arg(0))
            };
            ret(unsafe { libc::unshare(flags as libc::c_int) } as libc::c_long)
        }
        // Sets a user extended attribute on PATH (whether the file system
        // there keeps them: .ci/skips asks for the temporary directory).
        "xattr" => match std::ffi::CString::new(arg(0)) {
            Ok(path) => ret(unsafe {
                libc::setxattr(
                    path.as_ptr(),
                    c"user.jobwarden.trial".as_ptr(),
                    b"1".as_ptr().cast(),
                    1,
                    0,
                )
            } as libc::c_long),
            Err(_) => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        },
        // stdin is /dev/null: no namespace, so EINVAL unless filtered.
        "setns" => ret(unsafe { libc::setns(0, 0) } as libc::c_long),
        // A fork-like clone with FLAGS (hex) added.
        "clone" => clone_with(number(arg(0))),
        "clone-newuser" => clone_with(libc::CLONE_NEWUSER as u64),
        // An empty clone_args: EINVAL unless filtered.
        "clone3" => ret(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) }),
        // getpid with the x32 bit: ENOSYS on a kernel without x32.
        #[cfg(target_arch = "x86_64")]
        "x32-getpid" => ret(unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) }),
        // getpid through the 32-bit entry (`int 0x80`): another
        // architecture as far as seccomp is concerned.
        #[cfg(target_arch = "x86_64")]
        "i386-getpid" => i386_getpid(),
        // ioctl REQUEST on stdin (/dev/null: ENOTTY unless filtered).
        "ioctl" => {
            let request = number(arg(0));
            ret(unsafe { libc::syscall(libc::SYS_ioctl, 0, request, 0) })
        }
        "seccomp-status" => std::fs::read_to_string("/proc/self/status").map(|s| {
            s.lines()
                .filter(|l| l.starts_with("Seccomp"))
                .collect::<Vec<_>>()
                .join(" ")
        }),
        // Runs the rest in a new user and mount namespace when one can be
        // made (saying whether it was), else where it is.
        "in-userns" => {
            let made = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
            let answer = if made == 0 {
                "ok".to_string()
            } else {
                error_name(io::Error::last_os_error().raw_os_error().unwrap_or(0)).to_string()
            };
            println!("probe: in-userns: unshare {answer}");
            let (inner, inner_rest) = rest.split_first()?;
            return action(inner, inner_rest);
        }
        "fds" => fds(),
        "exec-marked" => exec_marked(number(arg(0)), &rest[1.min(rest.len())..]),
        "abstract-connect" => abstract_connect(arg(0)),
        "truncate" => {
            let path = cstr(arg(0));
            ret(unsafe { libc::truncate(path.as_ptr(), 0) } as libc::c_long)
        }
        "dev-ioctl" => dev_ioctl(arg(0), number(arg(1))),
        "tty-inject" => tty_inject(arg(0), arg(1)),
        "landlock-abi" => {
            let abi = unsafe {
                libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    std::ptr::null::<u8>(),
                    0usize,
                    LANDLOCK_CREATE_RULESET_VERSION,
                )
            };
            last_error(abi as i32, abi.to_string())
        }
        // The kernel baseline's actions (sockets, memfd, setuid, mounts).
        other => return crate::baseline::action(other, rest),
    })
}

/// `execve(ARGV)` with `marker` in the sixth argument register, which
/// `execve` ignores: what a job would do to pass as the spawner's own exec
/// and skip observation (it cannot know the per-job value).
fn exec_marked(marker: u64, argv: &[String]) -> io::Result<String> {
    let args: Vec<std::ffi::CString> = argv.iter().map(|a| cstr(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    let _ = io::stdout().flush();
    // SAFETY: execve with NUL-terminated argv and envp; the extra
    // arguments are integers the kernel does not read. Returns only on
    // failure.
    unsafe {
        libc::syscall(
            libc::SYS_execve,
            ptrs[0],
            ptrs.as_ptr(),
            env.as_ptr(),
            0u64,
            0u64,
            marker,
        )
    };
    Err(io::Error::last_os_error())
}

fn number(text: &str) -> u64 {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap_or(0),
        None => text.parse().unwrap_or(0),
    }
}

/// Copies 16 bytes of our own memory with process_vm_readv or _writev.
fn vm_copy(write: bool) -> io::Result<String> {
    let source = [7u8; 16];
    let mut target = [0u8; 16];
    let local = libc::iovec {
        iov_base: if write {
            source.as_ptr() as *mut libc::c_void
        } else {
            target.as_mut_ptr().cast()
        },
        iov_len: 16,
    };
    let remote = libc::iovec {
        iov_base: if write {
            target.as_mut_ptr().cast()
        } else {
            source.as_ptr() as *mut libc::c_void
        },
        iov_len: 16,
    };
    // SAFETY: both vectors point at 16-byte locals of this process.
    let n = unsafe {
        if write {
            libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0)
        }
    };
    std::hint::black_box(&target);
    last_error(n as i32, format!("{n} bytes"))
}

/// MADV_COLD on one page of our own memory, through a pidfd of ourselves.
fn process_madvise() -> io::Result<String> {
    const MADV_COLD: libc::c_int = 20;
    let page = vec![1u8; 8192];
    let aligned = (page.as_ptr() as usize + 4095) & !4095;
    let iov = libc::iovec {
        iov_base: aligned as *mut libc::c_void,
        iov_len: 4096,
    };
    // SAFETY: pidfd_open of ourselves; the vector names a page inside `page`.
    let n = unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0);
        if pidfd < 0 {
            return last_error(-1, String::new());
        }
        libc::syscall(libc::SYS_process_madvise, pidfd, &iov, 1, MADV_COLD, 0)
    };
    std::hint::black_box(&page);
    last_error(n as i32, format!("{n} bytes"))
}

fn perf() -> io::Result<String> {
    // struct perf_event_attr: type, size, config, then flags at byte 40;
    // a software CPU clock of this process, user space only.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&0u64.to_ne_bytes()); // PERF_COUNT_SW_CPU_CLOCK
    attr[40..48].copy_from_slice(&((1u64 << 5) | (1 << 6)).to_ne_bytes()); // exclude kernel, hv
    // SAFETY: a local attribute block of the size it declares.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
    last_error(fd as i32, String::new())
}

fn clone_with(flags: u64) -> io::Result<String> {
    // SAFETY: a fork-like clone of a single-threaded process; the child
    // exits at once.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD as u64) as libc::c_ulong,
            0,
            0,
            0,
            0,
        )
    };
    if pid == 0 {
        // SAFETY: leave the child without running destructors.
        unsafe { libc::_exit(0) };
    }
    if pid > 0 {
        // SAFETY: reap our own child.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
    }
    last_error(pid as i32, String::new())
}

#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> io::Result<String> {
    const I386_GETPID: i64 = 20;
    let ret: i64;
    // SAFETY: the 32-bit system call entry with getpid's number; it reads
    // no memory. The kernel may not preserve r8–r11 on this path, so they
    // are declared clobbered.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") I386_GETPID => ret,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack)
        );
    }
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret as i32))
    } else {
        Ok(format!("pid {ret}"))
    }
}

/// Lists this process's open descriptors as `N=target` (the directory
/// being listed left out).
fn fds() -> io::Result<String> {
    let listing = format!("/proc/{}/fd", std::process::id());
    let mut fds: Vec<(u32, String)> = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(n) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let target = std::fs::read_link(entry.path())
            .map(|t| t.display().to_string())
            .unwrap_or_else(|e| format!("?{e}"));
        if target != listing {
            fds.push((n, target));
        }
    }
    fds.sort();
    Ok(fds
        .iter()
        .map(|(n, t)| format!("{n}={t}"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Connects to the abstract UNIX socket `@name`.
fn abstract_connect(name: &str) -> io::Result<String> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    std::os::unix::net::UnixStream::connect_addr(&addr).map(|_| String::new())
}

/// Opens the device `path` read-write and sends it ioctl `request`.
fn dev_ioctl(path: &str, request: u64) -> io::Result<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    println!("probe: dev-ioctl: opened {path}");
    let mut buf = [0u8; 256];
    // SAFETY: an ioctl whose argument points at a 256-byte local buffer,
    // larger than any structure the requests used here read or write.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            request as _,
            buf.as_mut_ptr(),
        )
    };
    last_error(r, String::new())
}

/// Pushes `text` into the input queue of the terminal at `path` (default
/// `/dev/tty`, the controlling terminal) with TIOCSTI, as keystrokes.
fn tty_inject(path: &str, text: &str) -> io::Result<String> {
    let path = if path.is_empty() { "/dev/tty" } else { path };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        // Opening a terminal must never make it our controlling one.
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    println!("probe: tty-inject: opened {path}");
    let _ = io::stdout().flush();
    for byte in text.bytes().chain(std::iter::once(b'\n')) {
        // SAFETY: TIOCSTI with a pointer to a local byte.
        let r =
            unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::TIOCSTI, &byte) };
        last_error(r, ())?;
    }
    Ok(format!("{} bytes pushed", text.len() + 1))
}
